/*
 * audit.h - the audit trail, worker side: one JSON record per event,
 * built here and sent to the audit writer (audit_writer.h), which numbers,
 * chains and writes them.  docs/AUDIT.md lists every record and field.
 *
 * Every record carries "ts" (UTC, ms, when the event happened), "type",
 * "host" (server_name), "session" (the session id, or null) and
 * "identity" (the authenticated identity, or null); the writer adds
 * "seq", "prev" and "hash".
 *
 * Durability.  Most records are sent and forgotten: the writer writes
 * them with the next batch.  A transaction's records are different: the
 * session waits for the writer's acknowledgement (after fdatasync), so
 * that nothing is delivered or acknowledged that the log does not show
 * (docs/AUDIT.md, "Durability"):
 *
 *   1. end of content from the client -> "tx_pending" on disk -> only then
 *      the final dot (or BDAT LAST) goes to the backend.  If it cannot be
 *      written, the backend transaction is aborted (nothing delivered) and
 *      the client gets 451 4.3.0.  With audit.pending_sync = before_reply,
 *      the end of data goes out as soon as "tx_pending" is in the channel,
 *      and the client's 250 (not the end of data) waits for it to be on
 *      disk; if it cannot be written, the client gets 451 4.3.0 instead
 *      of the backend's 250 (the backend may have the message: a resend
 *      is a duplicate).
 *   2. with audit.verdict_fsync only: the backend's verdict -> "tx" on
 *      disk -> only then the client sees the 250.  If it cannot be
 *      written, the client gets 451 4.3.0 instead of 250: the backend has
 *      the message and will deliver it, the client will send it again (a
 *      duplicate, never a loss), and "tx_pending" on disk accounts for
 *      the first copy.  Without verdict_fsync, "tx" is sent before the
 *      250 is relayed, and not waited for.
 *
 * While the writer reports the log unwritable, audit_accepting() is false
 * and MAIL is refused with 451 4.3.0 (R_AUDIT_UNAVAIL).
 *
 * Ownership and callbacks.  A durable request belongs to the transaction
 * (struct audit_tx, freed by tx_reset() through audit_tx_end()).  Its
 * callback runs from the worker's event loop, never from inside the call
 * that made the request, and may free the session.  audit_tx_end() cancels
 * a request still waiting: its callback is then never called (the
 * acknowledgement, when it comes, is dropped).  A request not acknowledged
 * within audit.timeout seconds fails with ETIMEDOUT.
 *
 * Cost when the audit trail is off: every entry point returns at once
 * (audit_enabled() is a load and a test); struct tx's audit pointer stays
 * NULL.
 */
#ifndef MSA_AUDIT_H
#define MSA_AUDIT_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>

#include "smtp_reply.h"

struct backend_reply;
struct conf;
struct evbuffer;
struct imapurl;
struct session;
struct sockaddr;

/* --- the worker's channel to the writer --- */

/* At worker start: fd is this worker's channel (audit_master_child_worker)
 * or -1 when the audit trail is off.  -1 with *error_r on failure. */
int audit_client_init(struct event_base *base, const struct conf *conf, int fd,
		      const char **error_r);
/* At worker exit: pending requests fail (their callbacks are not called:
 * their sessions are gone by then). */
void audit_client_free(void);

int audit_enabled(void);
/* May a new transaction start: the audit trail is off, or the writer last
 * said the log is writable and no request has failed since. */
int audit_accepting(void);

/* --- generic events (ETRN, BURL and what comes next) --- */

enum audit_ftype {
	AUDIT_T_END,
	AUDIT_T_STR,	/* const char *: sanitized (audit_clean_text); NULL -> null */
	AUDIT_T_INT,	/* long long */
	AUDIT_T_BOOL,	/* int */
};
#define AUDIT_STR(k, v) AUDIT_T_STR, (const char *)(k), (const char *)(v)
#define AUDIT_INT(k, v) AUDIT_T_INT, (const char *)(k), (long long)(v)
#define AUDIT_BOOL(k, v) AUDIT_T_BOOL, (const char *)(k), (int)(v)
#define AUDIT_END AUDIT_T_END

/*
 * One record of type `type` (a short lower-case word: "etrn",
 * "burl_fetch", ...) for session s (or NULL), with the common members and
 * the given key/value pairs, in order, e.g.
 *
 *   audit_event("etrn", s, AUDIT_STR("node", node), AUDIT_INT("code", 250),
 *       AUDIT_STR("result", "queued"), AUDIT_END);
 *
 * Keys are string literals of ours; string values may be anything (they
 * are made printable UTF-8 and cut at 1024 octets).  Sent and forgotten.
 */
void audit_event(const char *type, const struct session *s, ...);

/*
 * BURL (RFC 4468): one fetch from an IMAP server.  url[0..url_len) is the
 * URL as the client gave it: only its redacted form is recorded (the
 * URLAUTH token never is: imapurl_redact()).  u, when the URL parsed, gives
 * mailbox, UID, section and partial range.  result: "ok" or why not.
 */
void audit_burl_fetch(const struct session *s, const char *server,
		      const char *url, size_t url_len, const struct imapurl *u,
		      uint64_t bytes, const char *result, uint64_t ms);

/* --- the session --- */

/* The connection, once its real client address is known (after the PROXY
 * header, if any; lb_ip is then the load balancer's, else NULL). */
void audit_session_open(struct session *s, const char *lb_ip, int lb_port);
/* The TLS handshake completed (version, cipher, SNI, client certificate). */
void audit_session_tls(struct session *s);
/* The session ends (session_free): why, how long, how many messages. */
void audit_session_close(struct session *s);
/* Every reply of ours (session_reply): policy denials and limit hits
 * become records; 221 and 421 are remembered as the close reason. */
void audit_session_reply(struct session *s, enum smtp_reply_id id);
/* A policy denial with its subject (e.g. "sender_denied", "sender",
 * address): for denials the reply alone does not describe. */
void audit_policy(struct session *s, const char *rule, enum smtp_reply_id id,
		  const char *key, const char *value);

/* AUTH: result "success", "failure" or "temporary"; the mechanism; the
 * identities when known; the reason (static text from sasl.c) on failure.
 * For GSSAPI the Kerberos principal is recorded too. */
void audit_auth(struct session *s, const char *result, const char *mech,
		const char *authcid, const char *authzid, const char *reason);

/* A connection refused before it became a session (max_connections). */
void audit_refused_connection(const struct sockaddr *peer,
			      const char *listener, const char *limit,
			      unsigned long long value);

/* --- transactions --- */

typedef void (*audit_done_cb)(struct session *s, int error);

/* MAIL was accepted for the backend: the transaction's audit state. */
void audit_tx_start(struct session *s);
/* The backend's reply to MAIL (kind TAG_MAIL), RCPT n, DATA (its 354 or
 * refusal): for the record. */
void audit_tx_backend_reply(struct session *s, int kind, unsigned n,
			    const struct backend_reply *r);
/* Content began or continued by "DATA", "BDAT" or "BURL". */
void audit_tx_content(struct session *s, const char *how);
/* Content on its way to the backend (raw, dot-stuffing removed): the
 * header section is scanned for the Message-ID, the body is not looked
 * at. */
void audit_tx_scan(struct session *s, struct evbuffer *content);

/*
 * The end of content: send "tx_pending" and wait for it to be on disk.
 * Returns 1 if cb will be called (0: on disk; else an errno), 0 if the
 * audit trail is off (go on at once), -1 if the record could not even be
 * queued (treat as failed now, with 451 4.3.0).  With audit.pending_sync
 * = before_reply, 2: the record is in the channel already (a crash of
 * this worker cannot lose it), the end of data may go to the backend at
 * once, and cb will be called as for 1 (the client's 250 waits for it).
 * 1 then means the channel was full: wait, as with before_backend.
 */
int audit_tx_intent(struct session *s, audit_done_cb cb);

/*
 * The backend's verdict.  audit_tx_hold() keeps one final reply (one per
 * recipient from an LMTP backend: `expected` of them); 0, or -1 if it
 * could not be kept (then relay it at once, as if the record had failed:
 * no 250; once -1, always -1 for this transaction).  audit_tx_verdict(), once all are in, sends the "tx"
 * record: if any reply is 2xx, returns 1 and calls cb when it is on disk;
 * else returns 0 (the record is sent and forgotten: relay at once).  -1:
 * not even queued; treat as failed now.  The replies kept are read back
 * with audit_tx_held() until the transaction ends.  Without
 * audit.verdict_fsync, audit_tx_verdict() returns 0 (the record is sent,
 * not waited for).
 */
int audit_tx_hold(struct session *s, const struct backend_reply *r,
		  unsigned expected);
int audit_tx_verdict(struct session *s, audit_done_cb cb);
const struct backend_reply *audit_tx_held(const struct session *s,
					  unsigned i);

/* An outcome known without waiting (what log_tx logs): the "tx" record is
 * sent and forgotten, once per transaction. */
void audit_tx_outcome(struct session *s, int code, const char *what);

/* The transaction ends (tx_reset): a waiting request is cancelled, and a
 * transaction that never reached an outcome gets its "tx" record
 * ("aborted", or "abandoned" after the end of content). */
void audit_tx_end(struct session *s);

#endif
