/*
 * mailhost_ldap.h - the LDAP side of the mailHost directory (mailhost.h):
 * one connection per worker to one LDAP server, driven entirely by the
 * worker's event loop.
 *
 * How the loop never waits for the server:
 *   - the TCP connection is made here (non-blocking connect() on each
 *     address the URI's host resolved to when the worker started, in turn)
 *     and only then handed to libldap with ldap_init_fd(), so libldap never
 *     connects or resolves by itself (referrals are not chased either);
 *   - TLS (ldaps://, or StartTLS per RFC 4513 section 3 with
 *     ldap_starttls) is OpenSSL driven from the loop too: the handshake
 *     runs on read/write events, and once done an lber Sockbuf I/O layer of
 *     ours carries libldap's bytes through the SSL object (libldap's own
 *     TLS handshake would poll inside the call);
 *   - the simple bind (RFC 4513 section 5.1), StartTLS and searches are
 *     libldap's asynchronous calls; answers are collected with
 *     ldap_result() and a zero timeout when the socket is readable.
 * The only blocking step is the name resolution of the URI's host, once,
 * when the worker starts (mailhost_ldap_new): numeric addresses and
 * /etc/hosts names cost nothing.
 *
 * Deadlines (burl.mailhost.timeout, T seconds): a connection attempt
 * (TCP, TLS, StartTLS, bind) has T seconds; each search has T seconds from
 * the lookup's start, also sent to the server as its time limit.  A failed
 * attempt fails every waiting search (UNAVAILABLE) and lookups in the next
 * MAILHOST_LDAP_RETRY_DELAY seconds fail at once instead of each waiting
 * for a timeout.  An established connection that breaks is re-made at
 * once, and the searches that were on it are sent once more.  A search
 * that times out ends the connection (a server that does not answer is not
 * reused).
 *
 * At most 64 searches are out on the connection at once; more wait their
 * turn in arrival order (mailhost_ldap.c says why).
 *
 * Answers: no entry, an entry without the attribute, more than one entry
 * (an ambiguous filter), a value that is not "host[:port]", a base DN that
 * does not exist: NOT_FOUND.  Anything that says the server cannot answer
 * now (down, busy, unwilling, time limit, bind refused): UNAVAILABLE.
 */
#ifndef MSA_MAILHOST_LDAP_H
#define MSA_MAILHOST_LDAP_H

#include <stddef.h>
#include <event2/event.h>

#include "mailhost.h"

struct conf_mailhost;

/* Seconds after a failed connection attempt during which lookups fail at
 * once rather than trying again. */
#define MAILHOST_LDAP_RETRY_DELAY 1

struct mailhost_ldap;
struct mailhost_ldap_search;

typedef void (*mailhost_ldap_cb)(void *ctx, enum mailhost_result r,
				 const char *host);

/*
 * password: the bind password (read by the master), "" for an anonymous
 * directory.  Resolves the URI's host (getaddrinfo) and sets up the TLS
 * context; connects later, at the first search.  NULL with *error_r
 * (static) set.
 */
struct mailhost_ldap *mailhost_ldap_new(struct event_base *base,
					const struct conf_mailhost *m,
					const char *password,
					const char **error_r);
/* Every search is forgotten without its callback; the connection closed
 * (an unbind is sent when it was up).  Sets *lp to NULL. */
void mailhost_ldap_free(struct mailhost_ldap **lp);

/* Search user's attribute.  The callback comes from the loop, never from
 * inside this call, within the timeout.  NULL when out of memory. */
struct mailhost_ldap_search *mailhost_ldap_search(struct mailhost_ldap *l,
						  const char *user,
						  mailhost_ldap_cb cb,
						  void *ctx);
/* No callback after this; a search the server has is abandoned. */
void mailhost_ldap_cancel(struct mailhost_ldap_search **sp);

void mailhost_ldap_stats(const struct mailhost_ldap *l,
			 unsigned long *searches_r, unsigned long *connects_r,
			 unsigned long *failures_r);

/*
 * The LDAP filter for user: tmpl with every "%u" replaced by user escaped
 * as RFC 4515 section 3 requires ("*" "(" ")" "\" NUL as \2a \28 \29 \5c
 * \00), and every other byte outside printable ASCII as \xx too; "%%"
 * becomes "%".  Returns the length, or -1 if it does not fit in outsize.
 * Pure (tests/unit/test_mailhost.c).
 */
int mailhost_ldap_filter(const char *tmpl, const char *user, char *out,
			 size_t outsize);

#endif
