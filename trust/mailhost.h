/*
 * mailhost.h - the authenticated user's mailHost, for BURL_ACCESS's $M
 * ("replace the URL's IMAP host with the user's mailHost; fail if the user
 * has none").
 *
 * Where it comes from (conf: burl.mailhost, docs/msaproxy.conf.5):
 *   - a map file of "user  mailhost" lines, loaded once at start into a
 *     hash table (users compared case-blind);
 *   - an LDAP directory (trust/mailhost_ldap.h): a search under a base DN
 *     with a filter template such as "(uid=%u)" for one attribute
 *     (mailHost by default), asynchronous on the worker's event loop, with
 *     answers cached per worker (positive and negative, each with its TTL,
 *     the cache bounded in entries).
 * With both, the map file is consulted first (a site's overrides) and LDAP
 * for everyone else.
 *
 *   master:  mailhost_global_init(cb)   before the privilege drop: loads
 *                                       the map file, reads the LDAP bind
 *                                       password (mode 0600, never logged)
 *   worker:  d = mailhost_dir_new(base, cb)
 *            r = mailhost_lookup(d, user, cb, ctx)  ... callback, or
 *            mailhost_cancel(&r)
 *            mailhost_dir_free(&d)
 *
 * A mailHost is "host" or "host:port" (the form the URL authority takes);
 * anything else found in the directory is refused (logged, NOT_FOUND): the
 * directory is input like any other.  Whatever host comes back, the caller
 * still checks it against burl.imap_servers: a directory entry cannot make
 * msaproxy talk to an untrusted server.
 *
 * SECURITY: the user name comes from SASL and is put into an LDAP filter
 * only through RFC 4515 escaping (mailhost_ldap_filter), so "*", "(", ")"
 * and "\" in a name match themselves and nothing else.
 */
#ifndef MSA_MAILHOST_H
#define MSA_MAILHOST_H

#include <stddef.h>
#include <time.h>
#include <event2/event.h>

struct conf_burl;

enum mailhost_result {
	MAILHOST_FOUND,		/* host is the user's mailHost */
	MAILHOST_NOT_FOUND,	/* the user has none: $M fails (the BURL is
				 * refused) */
	MAILHOST_UNAVAILABLE,	/* the directory cannot answer now (LDAP
				 * down, timed out): the BURL gets 451 4.4.1 */
};

/* Longest user name looked up; longer ones are NOT_FOUND. */
#define MAILHOST_MAX_USER 255
/* "host" or "host:port" and its NUL. */
#define MAILHOST_MAX_HOST 262

/* "FOUND", "NOT_FOUND", "UNAVAILABLE". */
const char *mailhost_result_name(enum mailhost_result r);

/*
 * Master, once, before privileges are dropped: load cb->mailhost.map_file
 * and read the LDAP bind password file.  The workers inherit both.  Does
 * nothing without a mailhost group.  -1 with *error_r (static) set:
 * "FILE:LINE: problem" lines for a malformed map file.  Also what
 * `msaproxy -t` runs to check the map file.
 */
int mailhost_global_init(const struct conf_burl *cb, const char **error_r);
/* Frees what mailhost_global_init() loaded (tests, shutdown). */
void mailhost_global_deinit(void);

struct mailhost_dir;
struct mailhost_req;

/*
 * The directory of one worker.  NULL with *error_r NULL when no mailhost
 * group is configured (then $M always fails); NULL with *error_r set on a
 * real error (the LDAP server's name does not resolve, TLS context).
 * Calls mailhost_global_init() itself if the master did not.  No network
 * I/O happens here: the LDAP connection is made at the first lookup.
 */
struct mailhost_dir *mailhost_dir_new(struct event_base *base,
				      const struct conf_burl *cb,
				      const char **error_r);
/* Cancels every outstanding lookup (no callbacks) and closes the LDAP
 * connection.  Sets *dp to NULL. */
void mailhost_dir_free(struct mailhost_dir **dp);

/*
 * The answer.  host is "host" or "host:port" for MAILHOST_FOUND, "" else;
 * valid during the call only.  The request is finished when the callback
 * runs: it must not be cancelled afterwards (forget the pointer).  The
 * callback may start new lookups and may free other requests, but not the
 * directory.
 */
typedef void (*mailhost_cb)(void *ctx, enum mailhost_result r,
			    const char *host);

/*
 * Look user up.  The callback always comes from the event loop, never from
 * inside mailhost_lookup(), even for a map or cache hit.  It comes within
 * burl.mailhost.timeout seconds (then UNAVAILABLE) whatever the LDAP server
 * does.  Returns NULL only when out of memory (no callback then).
 */
struct mailhost_req *mailhost_lookup(struct mailhost_dir *d, const char *user,
				     mailhost_cb cb, void *ctx);
/* Forget a lookup: no callback after this.  Sets *rp to NULL; NULL is
 * fine. */
void mailhost_cancel(struct mailhost_req **rp);

/* Counters for logs and tests. */
struct mailhost_stats {
	unsigned long lookups;
	unsigned long map_hits;
	unsigned long cache_hits;	/* answered from the LDAP cache */
	unsigned long ldap_searches;	/* searches sent */
	unsigned long ldap_connects;	/* connections established */
	unsigned long ldap_failures;	/* UNAVAILABLE answers */
};
void mailhost_dir_stats(const struct mailhost_dir *d,
			struct mailhost_stats *st);

/* ------------------------------------------------------------------------
 * The pure pieces, exposed for tests/unit/test_mailhost.c.
 */

/* "host" or "host:port": a domain name, an IPv4 address or an [IPv6]
 * literal, and a port 1..65535.  1 if valid. */
int mailhost_valid_host(const char *host);

/*
 * The map file.  Format, one entry per line:
 *     user  mailhost      # comment
 * whitespace-separated; '#' starts a comment (whole line or after the
 * entry); blank lines ignored.  Problems (a line with one field or three, a
 * bad mailhost, a user given twice, a line over 1024 bytes, a user over
 * MAILHOST_MAX_USER) are reported as "FILE:LINE: problem", up to 10 of
 * them, one per line, in *error_r (static); the map is not loaded then.
 */
struct mailhost_map;
struct mailhost_map *mailhost_map_load(const char *path, const char **error_r);
/* user's mailHost or NULL; case-blind (ASCII). */
const char *mailhost_map_get(const struct mailhost_map *m, const char *user);
size_t mailhost_map_count(const struct mailhost_map *m);
void mailhost_map_free(struct mailhost_map **mp);

/*
 * The cache of LDAP answers: at most max entries (the least recently used
 * goes first), each valid until its expiry.  Keys are compared case-blind.
 * Only FOUND and NOT_FOUND are cached.  max 0: nothing is kept.  Times
 * are in any one unit (the directory uses monotonic milliseconds).
 */
struct mailhost_cache;
struct mailhost_cache *mailhost_cache_new(size_t max);
void mailhost_cache_free(struct mailhost_cache **cp);
/* 1 and the cached answer (host copied into host_r, size MAILHOST_MAX_HOST)
 * if user has an entry still valid at now; 0 otherwise (an expired entry
 * is dropped). */
int mailhost_cache_get(struct mailhost_cache *c, const char *user, time_t now,
		       enum mailhost_result *r_r, char *host_r);
/* Remember an answer until expires (replacing an older one). */
void mailhost_cache_put(struct mailhost_cache *c, const char *user,
			enum mailhost_result r, const char *host,
			time_t expires);
size_t mailhost_cache_count(const struct mailhost_cache *c);

#endif
