/*
 * rate_limits.h - the named limits counted across sessions (rate_limits in
 * msaproxy.conf(5); docs/LIMITS.md lists them with their defaults): rates
 * over sliding windows and concurrency caps, per authenticated identity,
 * per client address, and per IMAP URL (RFC 4468 section 8).
 *
 * Each limit is checked where its input arrives and, when it refuses,
 * logs one line naming it ("limit messages_per_identity exceeded by alice:
 * 100 of 100 per 3600 s") and gives its own reply: 451 4.7.1 for a rate,
 * 421 4.7.0 for a connection cap (then the session ends), 554 5.7.1 for a
 * URL resolved too often.
 *
 *   at connect (after a PROXY header)  connection_rate_per_address (counted
 *                                      before it is checked: refused
 *                                      attempts count), connections_per_address
 *   AUTH command                       auth_failures_per_address
 *   AUTH failed                        counts auth_failures_per_address and
 *                                      auth_failures_per_identity (the name
 *                                      the client tried, when known)
 *   AUTH succeeded                     auth_failures_per_identity (a locked
 *                                      identity is refused even with the
 *                                      right password), sessions_per_identity
 *   MAIL                               messages_, recipients_, bytes_per_identity
 *                                      (bytes with SIZE= when given)
 *   RCPT                               recipients_per_identity
 *   BURL                               url_reuse, burl_fetches_ and
 *                                      burl_bytes_per_identity; counts a fetch
 *   BURL content fetched               counts burl_bytes_per_identity
 *   the message's final 2xx            counts messages, recipients, bytes and
 *                                      each URL of the message: a
 *                                      transaction that did not complete
 *                                      (RSET, 4xx/5xx, lost connection)
 *                                      counts nothing
 *
 * Identity limits apply to authenticated sessions only.  A message that
 * crosses a volume limit is delivered; the next MAIL is refused.  Sessions
 * that run at the same time may each pass a check before either is
 * counted: a rate can be passed by the number of such sessions.
 *
 * Where the counters live: in memory shared by the instance's workers (a
 * region the master maps before it forks them, limits_store.h: a limit
 * holds once per instance, whatever the number of workers, and survives a
 * worker's restart), or in Redis (rate_limits.redis), shared by every
 * worker of every instance that uses the same Redis and prefix.
 * With Redis the checks are asynchronous: a command that waits for an
 * answer holds the commands pipelined behind it (limits_gate()), and the
 * answer resumes the session.  When Redis cannot answer (down, too slow),
 * each limit does what its on_redis_error says: "open" lets the action
 * pass uncounted, "closed" refuses it with 451 4.3.0 (421 4.3.0 at
 * connect).
 *
 * Ownership: the worker owns struct limits (limits_worker_new/free); a
 * session's state (s->lim) is made on first use and freed by
 * limits_session_end(), which also cancels a pending Redis request and
 * releases the session's concurrency entries.  No callback of this module
 * outlives its session.
 */
#ifndef MSA_LIMITS_H
#define MSA_LIMITS_H

#include <stdint.h>
#include <event2/event.h>

#include "smtp_parse.h"
#include "smtp_reply.h"

struct conf;
struct session;
struct limits;

/* Master, before the workers fork (and before privileges are dropped):
 * the URL hash key (rate_limits.url_key_file, or random), the Redis
 * password, and without Redis the shared counters, with room for the
 * concurrency entries of nslots worker slots (0 .. nslots - 1; a reload
 * may run two generations of workers at once).  -1 with *error_r on
 * failure. */
int limits_global_init(const struct conf *conf, unsigned nslots,
		       const char **error_r);
/* Master, at exit: unmaps its view of the counters. */
void limits_global_free(void);

/*
 * Master, once it has reaped the worker in `slot` and before it forks
 * another into that slot: the concurrency entries the dead worker's
 * sessions held (connections_per_address, sessions_per_identity) are to be
 * given back, so a worker killed with sessions counted does not leave them
 * counted.  The master only writes the request (it never reads the region
 * the workers write); the live workers carry it out at their next check,
 * the slot's next worker before it serves, and log how many.  Nothing to
 * do with Redis (entries there lapse).
 */
void limits_slot_reset(unsigned slot);

/* Worker in `slot` (< limits_global_init's nslots): the counters (and the
 * Redis client).  NULL with *error_r. */
struct limits *limits_worker_new(struct event_base *base,
				 const struct conf *conf, unsigned slot,
				 const char **error_r);
void limits_worker_free(struct limits **lp);

enum limits_result {
	LIMITS_GO,		/* go on */
	LIMITS_WAIT,		/* an answer is awaited: the session waits */
	LIMITS_REFUSED,		/* refused: the reply is given and logged */
};

/* The continuation of an asynchronous check: refused = 1 when the reply
 * was given (and, for a 421, the session is closing).  Called from the
 * event loop, never from inside the function that returned LIMITS_WAIT. */
typedef void (*limits_done_fn)(struct session *s, int refused);

/*
 * A new connection (after its PROXY header, before TLS and the greeting).
 * LIMITS_WAIT: done() follows; the session reads nothing meanwhile.
 */
enum limits_result limits_connect(struct session *s, limits_done_fn done);

/*
 * The gate in front of every command (session.c, run_commands): fetches
 * the counters the command will check (MAIL, BURL, AUTH) before it runs.
 * LIMITS_WAIT: the command line stays where it is and nothing after it is
 * read; the answer resumes the session (session_resume()), and the same
 * command then passes the gate.  What was fetched is valid for that one
 * command only.
 */
enum limits_result limits_gate(struct session *s, enum smtp_verb verb,
			       const char *args);

/* MAIL: 1 if refused (reply given, logged).  pa: for SIZE=. */
int limits_mail_refused(struct session *s, const struct smtp_path_args *pa);

/* RCPT (also asked by smtp_cmd_may_pipeline: no reply, no state but a
 * log line once per transaction): R_REPLY_COUNT, or the reply to give. */
enum smtp_reply_id limits_rcpt_check(struct session *s);

/* BURL, after the policy allowed url (the client's URL): 1 if refused
 * (reply given and logged, counted as a failed BURL).  Otherwise the
 * URL joins the transaction's list and the fetch is counted. */
int limits_burl_refused(struct session *s, const char *url);
/* A BURL fetch ended with `bytes` octets. */
void limits_burl_fetched(struct session *s, uint64_t bytes);

/* AUTH command: 1 if refused. */
int limits_auth_refused(struct session *s);
/* An AUTH exchange failed; attempted: the name the client tried (as the
 * mechanism gave it; NULL when unknown). */
void limits_auth_failed(struct session *s, const char *attempted);
/* AUTH succeeded as s->identity; s->auth is not set yet.  LIMITS_WAIT:
 * done() follows; LIMITS_REFUSED: the reply is given. */
enum limits_result limits_auth_admit(struct session *s, limits_done_fn done);

/* A final reply to the message came (one per recipient from an LMTP
 * backend); when the last one is in and any was 2xx, the message, its
 * recipients, bytes and URLs are counted. */
void limits_tx_final(struct session *s, int code);

/* The session ends (session_free). */
void limits_session_end(struct session *s);

#endif
