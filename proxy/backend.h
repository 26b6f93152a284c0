/*
 * backend.h - the connection from one session to the backend MTA.
 *
 * Ownership: a backend belongs to exactly one session (or to the worker's
 * capability probe).  The owner creates it with backend_new(), which starts
 * connecting at once, and destroys it with backend_free(), which cancels
 * everything: no callback is made after backend_free() returns, and none is
 * made from inside backend_new() or backend_send*().
 *
 * Commands are written with backend_send() together with a tag saying what
 * the reply is for; replies come back through on_reply in the same order
 * (the backend's reply FIFO).  Until the backend has greeted us and answered
 * our EHLO/LHLO, written commands are held back; the owner does not have to
 * wait for on_ready to queue MAIL.  Whether several commands may be in flight
 * at once (PIPELINING) is the owner's decision: see backend_can_pipeline().
 *
 * Failure: on_error is called once, with the reply id the client should see
 * (R_BACKEND_UNAVAIL when the connection could not be made, R_BACKEND_LOST,
 * R_BACKEND_TIMEOUT, R_BACKEND_GARBAGE); the outstanding tags are reported
 * back in it so the owner can fail each of them.  After on_error the backend
 * is dead and the owner must free it.
 */
#ifndef MSA_BACKEND_H
#define MSA_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>
#include <event2/buffer.h>

#include "backend_reply.h"

struct conf;

enum backend_cap {
	CAP_PIPELINING = 1 << 0,
	CAP_SIZE = 1 << 1,
	CAP_8BITMIME = 1 << 2,
	CAP_ENHANCEDSTATUSCODES = 1 << 3,
	CAP_CHUNKING = 1 << 4,
	CAP_BINARYMIME = 1 << 5,
	CAP_SMTPUTF8 = 1 << 6,
	CAP_DSN = 1 << 7,
	CAP_XCLIENT = 1 << 8,
	CAP_STARTTLS = 1 << 9,
	CAP_AUTH = 1 << 10,
	CAP_ETRN = 1 << 11,
	CAP_XFORWARD = 1 << 12,
};

struct backend_caps {
	unsigned flags;			/* enum backend_cap bits */
	uint64_t size;			/* SIZE limit; 0 = none advertised */
};

/* What the worker knows of the backend from its last EHLO (probe or session):
 * what client EHLO replies are built from.  valid = 0 until one succeeded. */
struct backend_known {
	struct backend_caps caps;
	int valid;
};
extern struct backend_known backend_known;

struct backend_cbs {
	/* A complete reply for the oldest outstanding tag. */
	void (*on_reply)(void *ctx, uint32_t tag, const struct backend_reply *r);
	/* Greeting and EHLO done; caps are known. */
	void (*on_ready)(void *ctx, const struct backend_caps *caps);
	/* The connection is unusable; tags[0..ntags) were outstanding, oldest
	 * first, and will get no reply. */
	void (*on_error)(void *ctx, enum smtp_reply_id why,
			 const uint32_t *tags, size_t ntags);
	/* The output buffer drained below the low-water mark (backpressure). */
	void (*on_drain)(void *ctx);
};

struct backend;

/* In the master, before the workers start, and again at a reload: the
 * TLS client context for backend.tls and backend.auth_password_file.
 * All or nothing: -1 with *error_r set leaves the previous ones. */
int backend_global_init(const struct conf *conf, const char **error_r);
void backend_global_deinit(void);

/* Before the backend is ready: attributes for Postfix's XCLIENT
 * ("LOGIN=alice NAME=... ADDR=... PORT=... HELO=... PROTO=ESMTP", values
 * xtext-encoded), sent after EHLO when the backend offers XCLIENT, and the
 * client's HELO name for the EHLO that must follow XCLIENT. */
void backend_set_xclient(struct backend *be, const char *attrs,
			 const char *helo);

/* Is the connection protected by TLS (backend.tls)? */
int backend_is_tls(const struct backend *be);

/* Start connecting to conf->backend.addr. */
struct backend *backend_new(struct event_base *base, const struct conf *conf,
			    const struct backend_cbs *cbs, void *ctx,
			    const char *log_id);
void backend_free(struct backend **bep);

int backend_is_ready(const struct backend *be);
const struct backend_caps *backend_caps(const struct backend *be);
int backend_can_pipeline(const struct backend *be);

/* Outstanding replies (tags sent and not yet answered). */
size_t backend_outstanding(const struct backend *be);

/* Write a command line (CRLF added) and expect a reply with `tag`. */
void backend_send(struct backend *be, uint32_t tag, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Move the first n bytes of data (message content; all of it if n is
 * larger) to the backend, no reply expected. */
void backend_send_buffer(struct backend *be, struct evbuffer *data, size_t n);

/* Expect one more reply with `tag` without writing anything (the final
 * reply after content, the per-recipient replies of LMTP). */
void backend_expect(struct backend *be, uint32_t tag);

/* Bytes queued for the backend and not yet written (backpressure). */
size_t backend_pending_output(const struct backend *be);

/* Write what was queued now (the end of each piece of work). */
void backend_flush(struct backend *be);

/* Send QUIT without waiting for the reply; the owner then frees it. */
void backend_quit(struct backend *be);

/* Which timeout applies to the replies now awaited. */
void backend_set_reply_timeout(struct backend *be, unsigned seconds);

#endif
