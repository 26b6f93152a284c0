/*
 * conn.h - a non-blocking stream connection on the event loop: the I/O layer
 * under sessions and backend connections.
 *
 * Why not bufferevents: a socket bufferevent adds and removes its EPOLLOUT
 * registration around every write and asks FIONREAD before every read, which
 * costs three extra syscalls per SMTP reply.  Here the read event is
 * registered once; output is written directly at the end of each piece of
 * work (conn_flush), and EV_WRITE is armed only when the kernel's buffer is
 * full.  TLS (a later release) plugs in below conn_read/conn_flush.
 *
 * Ownership: the owner creates and frees the conn.  Callbacks run from the
 * event loop only, never from inside a conn_* call.  conn_free() may be
 * called from inside a callback; the conn is then released when the
 * callback returns.
 */
#ifndef MSA_CONN_H
#define MSA_CONN_H

#include <stddef.h>
#include <sys/socket.h>
#include <event2/event.h>
#include <event2/buffer.h>

enum conn_event {
	CONN_CONNECTED = 1 << 0,	/* an outgoing connect completed */
	CONN_EOF = 1 << 1,		/* the peer closed its side */
	CONN_ERROR = 1 << 2,		/* read/write/connect failed (errno kept) */
	CONN_TIMEOUT = 1 << 3,		/* no progress within the timeout */
	CONN_DEFERRED = 1 << 4,		/* conn_defer() asked for a callback */
	CONN_DRAINED = 1 << 5,		/* output that had to wait is all written */
	CONN_TLS_READY = 1 << 6,	/* the TLS handshake completed */
	CONN_TLS_KICK = 1 << 7,		/* internal: start the handshake */
};

struct conn_cbs {
	void (*on_read)(void *ctx);		/* new input in conn_input() */
	void (*on_event)(void *ctx, int what);	/* enum conn_event bits */
};

struct conn;

/* Wrap an accepted, connected socket (made non-blocking here). */
struct conn *conn_new(struct event_base *base, evutil_socket_t fd,
		      const struct conn_cbs *cbs, void *ctx);
/* Start connecting to sa; CONN_CONNECTED or CONN_ERROR/TIMEOUT follows. */
struct conn *conn_connect(struct event_base *base, const struct sockaddr *sa,
			  socklen_t salen, unsigned timeout,
			  const struct conn_cbs *cbs, void *ctx);
void conn_free(struct conn **cp);

struct evbuffer *conn_input(struct conn *c);
struct evbuffer *conn_output(struct conn *c);
evutil_socket_t conn_fd(const struct conn *c);
int conn_errno(const struct conn *c);

/* Write as much of the output as the kernel takes now; arm EV_WRITE for the
 * rest (CONN_DRAINED once it is all out). */
void conn_flush(struct conn *c);
size_t conn_pending_output(const struct conn *c);

/* Reading: on unless paused.  Also paused while the input buffer holds
 * max_input bytes or more (backpressure towards the peer). */
void conn_pause_read(struct conn *c, int paused);
void conn_set_max_input(struct conn *c, size_t max_input);
/* Acknowledge every read at once (Linux TCP_QUICKACK, re-armed after each
 * read): for request/response peers that do not set TCP_NODELAY, whose
 * last small segment would otherwise wait for our delayed ACK (40 ms). */
void conn_set_quickack(struct conn *c, int on);
/* Largest single read (default 64 KB). */
void conn_set_read_size(struct conn *c, size_t n);
/* Seconds without input (while reading) or without output progress (while
 * output waits) before CONN_TIMEOUT; 0 = none.  Restarts the clock. */
void conn_set_timeout(struct conn *c, unsigned seconds);

/*
 * Switch to TLS: ssl (set up for the client or server role, with SNI,
 * verification and so on) takes over the socket; the conn owns it from now
 * on.  Unread input is discarded first: whatever the peer sent in the clear
 * before the handshake must not be taken as protected (STARTTLS injection).
 * CONN_TLS_READY or CONN_ERROR follows.  Returns -1 if TLS cannot start.
 */
typedef struct ssl_st SSL;
int conn_start_tls(struct conn *c, SSL *ssl);
SSL *conn_ssl(const struct conn *c);
/* What went wrong in the TLS layer, for the log. */
const char *conn_tls_error(const struct conn *c);

/* Ask for one CONN_DEFERRED callback from the loop. */
void conn_defer(struct conn *c);

#endif
