/*
 * burl.h - BURL's runtime in a worker: the trusted IMAP servers as the IMAP
 * client sees them (trust/imap_client.h), msaproxy's own credentials for
 * them (passwords read by the master, Kerberos from the client keytab), and
 * the connection pool.
 *
 *   master:  burl_global_init(conf)   reads password files (before the
 *                                     privilege drop; never logged), and
 *                                     mailhost_global_init(): the mailHost
 *                                     map file and LDAP bind password
 *   worker:  burl_worker_new(base, conf)  TLS contexts, Kerberos refresher
 *                                     threads, the pool, the mailHost
 *                                     directory
 *            burl_worker_free()
 */
#ifndef MSA_BURL_H
#define MSA_BURL_H

#include <stddef.h>
#include <event2/event.h>

struct conf;
struct imap_pool;
struct mailhost_dir;

struct burl_worker;

int burl_global_init(const struct conf *conf, const char **error_r);

struct burl_worker *burl_worker_new(struct event_base *base,
				    const struct conf *conf,
				    const char **error_r);
void burl_worker_free(struct burl_worker **bwp);

struct imap_pool *burl_worker_pool(struct burl_worker *bw);
/* The mailHost directory for BURL_ACCESS $M, or NULL if none. */
struct mailhost_dir *burl_worker_mailhost(struct burl_worker *bw);

/* BURL_ACCESS $M's directory (trust/mailhost.h); NULL without a
 * burl.mailhost group ($M then always fails). */
struct mailhost_dir;
struct mailhost_dir *burl_worker_mailhost(struct burl_worker *bw);

/* Can server i be used now (its credentials are in hand)?  What EHLO
 * advertises depends on it: nothing is offered that cannot work. */
int burl_worker_server_ready(struct burl_worker *bw, size_t i);
/* Is any server usable? */
int burl_worker_ready(struct burl_worker *bw);

#endif
