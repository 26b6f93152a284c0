/*
 * session.h - one client connection: an explicit state machine.
 *
 * States (only session_enter_state() assigns s->state, and logs the change):
 *
 *   PROXY_HDR --> [TLS] --> GREETING --> COMMAND <--> DATA / BDAT
 *   (PROXY header) (implicit) (rDNS)       |  ^
 *                                          |  +-- TLS (STARTTLS: state reset)
 *                                          +--> CLOSING (flush, then free)
 *
 * PIPELINING (RFC 2920): commands are taken from the input buffer one at a
 * time, in order.  A command that needs the backend (MAIL, RCPT, DATA, the
 * end of data) is forwarded and counted in s->outstanding; the next command
 * only starts once the replies before it are out, except RCPTs behind a
 * MAIL/RCPT when the backend itself pipelines, which are forwarded at once.
 * Replies are written to the output buffer in command order, so a pipelined
 * batch is answered in one write and costs no client round trips.
 *
 * Ownership: the worker owns sessions (session_new/session_free); a session
 * owns its connection (conn.h), its backend connection, its line buffer and its
 * transaction.  Every callback that can outlive a command (backend, DNS,
 * timers, the audit writer's acknowledgements) is cancelled by
 * session_free(); the transaction's audit request by tx_reset().
 *
 * With the audit trail on, a transaction waits twice for the audit writer
 * (auth/audit.h): TX_AUDIT_INTENT between the client's end of data and
 * the end of data to the backend, TX_AUDIT_VERDICT between the backend's
 * verdict and the client's reply.  s->outstanding covers both waits, so
 * pipelined commands wait behind them.  With audit.pending_sync =
 * before_reply there is no TX_AUDIT_INTENT: the end of data goes out at
 * once (tx.intent_wait), and TX_AUDIT_VERDICT also covers a verdict that
 * came before "tx_pending" was on disk.
 */
#ifndef MSA_SESSION_H
#define MSA_SESSION_H

#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <event2/event.h>

#include "backend.h"
#include "data_filter.h"
#include "smtp_parse.h"
#include "smtp_reply.h"

/* RFC 4954 4: AUTH command lines and responses up to 12288 octets. */
#define SMTP_AUTH_LINE_MAX 12288

struct audit_tx;
struct conf;
struct conf_listener;
struct sasl_session;
struct worker;
struct imap_fetch;
struct mailhost_req;
struct limits_session;

enum session_state {
	S_PROXY_HDR,	/* waiting for the load balancer's PROXY header */
	S_GREETING,	/* reverse DNS lookup before the 220 */
	S_COMMAND,	/* reading commands */
	S_DATA,		/* reading DATA content (dot-stuffed) */
	S_BDAT,		/* reading a BDAT chunk (raw, counted) */
	S_TLS,		/* TLS handshake (STARTTLS or implicit TLS) */
	S_AUTH,		/* AUTH: the next line answers our 334 */
	S_BURL,		/* a BURL URL is being fetched: input waits */
	S_CLOSING,	/* no more input; close once the output is flushed */
	S_STATE_COUNT
};

enum tx_state {
	TX_NONE,	/* no MAIL yet */
	TX_ENVELOPE,	/* MAIL sent; RCPTs may follow */
	TX_CONTENT,	/* DATA/BDAT content being read and forwarded */
	TX_FINAL,	/* end of content sent; awaiting the backend's verdict */
	TX_FAILED,	/* a BDAT transaction failed: only RSET clears it */
	/* audit trail on (auth/audit.h): */
	TX_AUDIT_INTENT,/* content read; the end of data waits until the
			 * "tx_pending" record is on disk */
	TX_AUDIT_VERDICT,/* the backend's verdict is held until the "tx"
			 * record is on disk (before_reply: or until
			 * "tx_pending" is) */
};

enum helo_kind { HELO_NONE, HELO_HELO, HELO_EHLO, HELO_LHLO };

/* What a backend reply is for: tag = kind << 24 | tx generation << 16 | n. */
enum tag_kind {
	TAG_MAIL = 1,
	TAG_RCPT,	/* n = recipient index */
	TAG_DATA_CMD,	/* the backend's 354 to our DATA */
	TAG_FINAL,	/* the verdict on the message (one per recipient on LMTP) */
	TAG_CHUNK,	/* a non-LAST BDAT chunk: internal */
	TAG_RSET,	/* internal RSET after an aborted transaction */
	TAG_ETRN,	/* ETRN relayed for the client (smtp_etrn.c) */
};
#define TAG(kind, gen, n) (((uint32_t)(kind) << 24) | (((uint32_t)(gen) & 0xff) << 16) | ((uint32_t)(n) & 0xffff))
#define TAG_KIND(t) ((enum tag_kind)((t) >> 24))
#define TAG_GEN(t) (((t) >> 16) & 0xff)
#define TAG_N(t) ((t) & 0xffff)

struct tx {
	enum tx_state state;
	uint8_t gen;			/* tells stale backend replies apart */
	char id[16];			/* for the Received header and logs */
	char *from;			/* reverse-path, malloc'd */
	int smtputf8;
	int binary;			/* BODY=BINARYMIME */
	int client_bdat;		/* the client uses BDAT (not DATA) */
	int backend_bdat;		/* we send BDAT to the backend */
	char **rcpts;			/* addresses as sent, malloc'd */
	uint8_t *rcpt_ok;
	unsigned rcpt_count, rcpt_accepted;
	/* content */
	struct data_filter filter;
	struct dot_encoder enc;
	uint64_t bdat_remaining;	/* bytes of the current client chunk */
	uint64_t bdat_chunk_size;
	int bdat_last;
	int discard;			/* read content but forward nothing */
	int chunk_quiet;		/* the BDAT reply was already sent */
	enum smtp_reply_id fail;	/* why the message fails (R_REPLY_COUNT: it doesn't) */
	struct backend_reply *fail_reply; /* a backend reply to give instead */
	unsigned finals_expected, finals_seen;
	uint64_t t_start_ms;
	char queue_id[64];
	/* BURL (RFC 4468): the fetch in progress, one at a time */
	struct imap_fetch *burl_fetch;
	struct mailhost_req *burl_mh;	/* $M: the mailHost lookup */
	char *burl_url;			/* the URL as sent (token inside: never log) */
	char burl_log_url[300];		/* redacted, for logs */
	char burl_why[400];		/* "by ID allowed (RULE)", for the fetch's log line */
	size_t burl_server;
	int burl_last;
	int burl_tls;			/* -1 burl.fetch_tls decides; 1 $T; 0 $X */
	int burl_awaiting_354;		/* a DATA backend's 354 comes first */
	int burl_8bit;			/* 8-bit octets seen in fetched content */
	unsigned burl_count;		/* BURLs in this transaction */
	uint64_t burl_bytes, burl_t0;
	enum smtp_reply_id burl_fail;	/* why the current fetch failed */
	struct audit_tx *audit;		/* audit state (audit.c); NULL if off */
	/* audit.pending_sync = before_reply: the end of data went out while
	 * "tx_pending" was on its way to disk */
	int intent_wait;		/* its acknowledgement is awaited */
	int intent_failed;		/* it failed: no 250 for this message */
};

struct session {
	struct worker *worker;
	const struct conf *conf;
	const struct conf_listener *lc;
	char id[16];
	enum session_state state;
	struct conn *conn;
	struct backend *be;
	struct evdns_request *dns_req;
	struct dns_wait *dns_wait;	/* the reverse lookup's callback argument */

	struct sockaddr_storage peer, local;
	char peer_ip[64], local_ip[64];
	int peer_port, local_port;
	char *rdns;

	enum helo_kind helo_kind;
	char helo[256];
	int lmtp;
	int tls, auth;			/* TLS is on; AUTH succeeded */
	int starttls_pending;		/* 220 sent: TLS starts once it is out */
	int greet_after_tls;		/* implicit TLS: greeting after handshake */
	char tls_desc[96];		/* "TLSv1.3 TLS_AES_256_GCM_SHA384" */
	char tls_subject[256];		/* verified client certificate, or "" */
	char tls_cn[256];		/* its common name: the EXTERNAL identity */
	struct sasl_session *sasl;	/* an AUTH exchange in progress */
	struct event *auth_timer;	/* the delay after a failed AUTH */
	int auth_waiting;		/* ... is running: input waits */
	unsigned auth_failures;
	enum smtp_reply_id auth_fail_reply;
	char auth_mech[32];
	char authcid[256];		/* as the mechanism gave it */
	char identity[256];		/* canonical: what policy keys on */

	char *line;			/* the next command, line_cap + 1 */
	char *scratch;			/* same size: a copy to parse */
	size_t line_cap;		/* max_line_length; AUTH lines grow it */
	size_t line_len;
	int have_line, line_too_long, skipping_line;

	unsigned outstanding;		/* client replies awaited from the backend */
	unsigned bad_commands;
	int input_paused;		/* backpressure from the backend */
	int await_data_go;		/* our DATA awaits the backend's 354 */
	int quit_after_tx;		/* shutting down: 421 once idle */

	/* the ETRN awaiting the backend's reply (smtp_etrn.c; never more
	 * than one: ETRN is not pipelined) */
	char etrn_node[SMTP_ETRN_ARG_MAX + 1];
	int etrn_rule;			/* the policy rule that allowed it */

	struct tx tx;
	struct evbuffer *content;	/* scratch: filtered content */
	struct evbuffer *chunk;		/* content awaiting the backend */

	struct limits_session *lim;	/* rate_limits state (rate_limits.h) */

	unsigned bad_burls;		/* failed BURL commands: max_bad_burl */
	struct event *burl_timer;	/* burl.fetch_deadline of the current fetch */
	struct event *phase_timer;	/* the deadline of the current phase */
	uint64_t phase_deadline_ms;	/* monotonic; 0 = none */
	size_t input_seen;		/* input octets already counted as progress */

	TAILQ_ENTRY(session) entry;
	unsigned messages;

	/* audit trail (auth/audit.h) */
	int audit_opened;		/* session_open was recorded */
	uint64_t audit_t_open;
	enum smtp_reply_id audit_close;	/* the 221 or 421 that ended it */
};

/* Take over an accepted connection fd (the worker checked the limits). */
struct session *session_new(struct worker *w, const struct conf_listener *lc,
			    evutil_socket_t fd, const struct sockaddr *peer,
			    socklen_t peerlen);
void session_free(struct session **sp);

/* Worker shutdown: idle sessions get 421 4.3.2 now, busy ones after their
 * transaction.  force = close everything now. */
void session_shutdown(struct session *s, int force);

/* --- internal API between session.c and smtp_cmds.c --- */

void session_enter_state(struct session *s, enum session_state st);
void session_reply(struct session *s, enum smtp_reply_id id, ...);
/* Count a client error; after max_bad_commands the session ends (421).
 * Returns 1 if the session is now closing. */
int session_bad_command(struct session *s, enum smtp_reply_id id, ...);
void session_close_after_reply(struct session *s);
/* Go on processing input (after a timer, e.g. the AUTH delay). */
void session_resume(struct session *s);
struct evbuffer *session_output(struct session *s);

/* Run one command line (s->line).  Defined in smtp_cmds.c. */
void smtp_cmd_dispatch(struct session *s, enum smtp_verb verb, char *args);
/* May `verb` start while replies are outstanding?  smtp_cmds.c. */
int smtp_cmd_may_pipeline(struct session *s, enum smtp_verb verb,
			  const char *args);

/* Transaction helpers (session.c). */
void tx_reset(struct session *s);
int session_backend(struct session *s);		/* connect if needed; 0/-1 */
const struct backend_caps *session_caps(const struct session *s);
void session_begin_content(struct session *s, enum session_state st);
void session_abort_backend_tx(struct session *s);
void session_bdat_start_chunk(struct session *s, uint64_t size, int last,
			      int discard);
/* BURL: the URL is authorized (trust/burl_policy.h) and tx->burl_* set;
 * fetch it into the message (session.c). */
void session_burl_start(struct session *s);
/* Is BURL offered to this session now (before BURL_ACCESS's EHLO probe)?
 * EHLO and the command agree. */
int session_burl_offered(const struct session *s);
/* BURL_ACCESS $M: look the user's mailHost up, then go on as
 * session_burl_start (or refuse). */
void session_burl_mailhost(struct session *s);
/* Refuse a BURL (reply, log, count towards burl.max_bad_burl). */
struct burl_verdict;
void smtp_burl_refuse(struct session *s, const struct burl_verdict *v);
/* EHLO: 1 and the URL types to advertise, or 0 (smtp_cmds.c). */
int smtp_burl_ehlo_types(const struct session *s, char *types, size_t size);

#endif
