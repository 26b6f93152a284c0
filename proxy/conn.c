/*
 * conn.c - see conn.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/uio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "conn.h"

#define CONN_READ_SIZE_DEFAULT 65536

struct conn {
	struct event_base *base;
	evutil_socket_t fd;
	struct event *rev, *wev, *dev;
	struct evbuffer *in, *out;
	struct conn_cbs cbs;
	void *ctx;
	unsigned timeout;
	size_t max_input, read_size;
	int paused, rev_added, wev_added, connecting;
	int err, dead;
	int pending;			/* events for the deferred callback */
	int in_cb, free_pending;
	SSL *ssl;			/* TLS on top of fd, or NULL */
	int handshaking;		/* TLS handshake in progress */
	int write_wants_read;		/* SSL_write needs input first */
	int quickack;			/* re-arm TCP_QUICKACK after reads */
	char tls_error[160];
};

static void conn_tls_handshake(struct conn *c);
static int conn_tls_read(struct conn *c);

static void conn_update_read(struct conn *c);

/* Wait for the socket to become writable (with the conn's timeout). */
static void
arm_write(struct conn *c)
{
	struct timeval tv = { c->timeout, 0 };

	if (c->wev_added)
		return;
	event_add(c->wev, c->timeout ? &tv : NULL);
	c->wev_added = 1;
}

static void
set_nodelay(evutil_socket_t fd)
{
	int one = 1;

	/* Replies are small and latency-bound; on unix sockets it fails
	 * harmlessly. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Run the owner's callback; returns -1 if the conn was freed in it. */
static int
call_event(struct conn *c, int what)
{
	c->in_cb++;
	c->cbs.on_event(c->ctx, what);
	c->in_cb--;
	if (c->free_pending && c->in_cb == 0) {
		conn_free(&c);
		return -1;
	}
	return c->free_pending ? -1 : 0;
}

static void
fail(struct conn *c, int what)
{
	c->dead = 1;
	if (c->rev_added) {
		event_del(c->rev);
		c->rev_added = 0;
	}
	if (c->wev_added) {
		event_del(c->wev);
		c->wev_added = 0;
	}
	/* report from the loop, never from inside a conn_* call */
	c->pending |= what;
	event_active(c->dev, EV_TIMEOUT, 1);
}

static void
read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct evbuffer_iovec v[2];
	int nv;
	ssize_t n;

	if (what & EV_TIMEOUT) {
		call_event(c, CONN_TIMEOUT);
		return;
	}
	if (c->ssl != NULL) {
		if (c->handshaking) {
			conn_tls_handshake(c);
			return;
		}
		if (c->write_wants_read) {
			c->write_wants_read = 0;
			conn_flush(c);
		}
		if (conn_tls_read(c) <= 0)
			return;
		goto deliver;
	}
	nv = evbuffer_reserve_space(c->in, (ev_ssize_t)c->read_size, v, 2);
	if (nv < 1)
		return;
	if (nv == 2 && v[0].iov_len >= c->read_size)
		nv = 1;
	n = readv(fd, (struct iovec *)v, nv);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		c->err = errno;
		evbuffer_commit_space(c->in, v, 0);
		fail(c, CONN_ERROR);
		return;
	}
	if (n == 0) {
		evbuffer_commit_space(c->in, v, 0);
		fail(c, CONN_EOF);
		return;
	}
	if ((size_t)n <= v[0].iov_len) {
		v[0].iov_len = (size_t)n;
		nv = 1;
	} else {
		v[1].iov_len = (size_t)n - v[0].iov_len;
	}
	evbuffer_commit_space(c->in, v, nv);
deliver:
	if (c->quickack) {
		/* Linux turns quick ACKs off again by itself: re-arm after
		 * each read, so a peer that does not set TCP_NODELAY never
		 * waits for our delayed ACK to send its last small segment */
		int one = 1;

		setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
	}
	c->in_cb++;
	c->cbs.on_read(c->ctx);
	c->in_cb--;
	if (c->free_pending) {
		if (c->in_cb == 0)
			conn_free(&c);
		return;
	}
	conn_update_read(c);
}

static void
write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	if (what & EV_TIMEOUT) {
		call_event(c, CONN_TIMEOUT);
		return;
	}
	if (c->connecting) {
		int err = 0;
		socklen_t len = sizeof(err);

		c->connecting = 0;
		event_del(c->wev);
		c->wev_added = 0;
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err != 0) {
			c->err = err;
			fail(c, CONN_ERROR);
			return;
		}
		set_nodelay(c->fd);
		conn_update_read(c);
		if (call_event(c, CONN_CONNECTED) < 0)
			return;
		conn_flush(c);
		return;
	}
	if (c->handshaking) {
		conn_tls_handshake(c);
		return;
	}
	conn_flush(c);
	if (!c->dead && !c->wev_added)
		call_event(c, CONN_DRAINED);
}

static void
defer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	int pending = c->pending;

	(void)fd;
	(void)what;
	c->pending = 0;
	if (pending & CONN_TLS_KICK) {
		pending &= ~CONN_TLS_KICK;
		if (c->handshaking && !c->dead)
			conn_tls_handshake(c);
		if (c->free_pending)
			return;
	}
	if (pending)
		call_event(c, pending);
}

static struct conn *
conn_alloc(struct event_base *base, evutil_socket_t fd,
	   const struct conn_cbs *cbs, void *ctx)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->base = base;
	c->fd = fd;
	c->cbs = *cbs;
	c->ctx = ctx;
	c->read_size = CONN_READ_SIZE_DEFAULT;
	c->max_input = (size_t)-1;
	c->in = evbuffer_new();
	c->out = evbuffer_new();
	c->rev = event_new(base, fd, EV_READ | EV_PERSIST, read_cb, c);
	c->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, write_cb, c);
	c->dev = event_new(base, -1, 0, defer_cb, c);
	if (c->in == NULL || c->out == NULL || c->rev == NULL ||
	    c->wev == NULL || c->dev == NULL) {
		c->fd = -1;
		conn_free(&c);
		return NULL;
	}
	return c;
}

struct conn *
conn_new(struct event_base *base, evutil_socket_t fd,
	 const struct conn_cbs *cbs, void *ctx)
{
	struct conn *c;

	evutil_make_socket_nonblocking(fd);
	c = conn_alloc(base, fd, cbs, ctx);
	if (c == NULL)
		return NULL;
	set_nodelay(fd);
	conn_update_read(c);
	return c;
}

struct conn *
conn_connect(struct event_base *base, const struct sockaddr *sa,
	     socklen_t salen, unsigned timeout, const struct conn_cbs *cbs,
	     void *ctx)
{
	evutil_socket_t fd;
	struct conn *c;
	struct timeval tv = { timeout, 0 };

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	c = conn_alloc(base, fd, cbs, ctx);
	if (c == NULL) {
		close(fd);
		return NULL;
	}
	c->timeout = timeout;
	if (connect(fd, sa, salen) == 0) {
		set_nodelay(fd);
		c->pending |= CONN_CONNECTED;
		event_active(c->dev, EV_TIMEOUT, 1);
		conn_update_read(c);
		return c;
	}
	if (errno != EINPROGRESS) {
		c->err = errno;
		fail(c, CONN_ERROR);
		return c;
	}
	c->connecting = 1;
	event_add(c->wev, timeout ? &tv : NULL);
	c->wev_added = 1;
	return c;
}

void
conn_free(struct conn **cp)
{
	struct conn *c = *cp;

	if (c == NULL)
		return;
	*cp = NULL;
	if (c->in_cb > 0) {
		c->free_pending = 1;
		return;
	}
	if (c->rev != NULL)
		event_free(c->rev);
	if (c->wev != NULL)
		event_free(c->wev);
	if (c->dev != NULL)
		event_free(c->dev);
	if (c->in != NULL)
		evbuffer_free(c->in);
	if (c->out != NULL)
		evbuffer_free(c->out);
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

struct evbuffer *
conn_input(struct conn *c)
{
	return c->in;
}

struct evbuffer *
conn_output(struct conn *c)
{
	return c->out;
}

evutil_socket_t
conn_fd(const struct conn *c)
{
	return c->fd;
}

int
conn_errno(const struct conn *c)
{
	return c->err;
}

static void
conn_update_read(struct conn *c)
{
	int want = !c->dead && !c->connecting && (c->handshaking ||
	    (!c->paused && evbuffer_get_length(c->in) < c->max_input));

	if (want && !c->rev_added) {
		struct timeval tv = { c->timeout, 0 };

		event_add(c->rev, c->timeout ? &tv : NULL);
		c->rev_added = 1;
	} else if (!want && c->rev_added) {
		event_del(c->rev);
		c->rev_added = 0;
	}
	/* TLS may hold decrypted input that epoll cannot see */
	if (want && c->ssl != NULL && !c->handshaking && SSL_pending(c->ssl) > 0)
		event_active(c->rev, EV_READ, 1);
}

void
conn_flush(struct conn *c)
{
	int n;

	if (c->dead || c->connecting || c->free_pending || c->handshaking)
		return;
	while (c->ssl != NULL && evbuffer_get_length(c->out) > 0) {
		struct evbuffer_iovec v;
		int r, e;

		if (evbuffer_peek(c->out, -1, NULL, &v, 1) < 1)
			break;
		ERR_clear_error();
		r = SSL_write(c->ssl, v.iov_base, (int)(v.iov_len > 65536 ?
		    65536 : v.iov_len));
		if (r > 0) {
			evbuffer_drain(c->out, (size_t)r);
			continue;
		}
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_WRITE) {
			arm_write(c);
			return;
		}
		if (e == SSL_ERROR_WANT_READ) {
			c->write_wants_read = 1;
			return;
		}
		c->err = errno;
		ERR_error_string_n(ERR_peek_last_error(), c->tls_error,
		    sizeof(c->tls_error));
		fail(c, CONN_ERROR);
		return;
	}
	while (c->ssl == NULL && evbuffer_get_length(c->out) > 0) {
		n = evbuffer_write(c->out, c->fd);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				arm_write(c);
				return;
			}
			c->err = errno;
			fail(c, CONN_ERROR);
			return;
		}
		if (n == 0)
			break;
	}
	if (c->wev_added) {
		event_del(c->wev);
		c->wev_added = 0;
	}
}

void
conn_set_quickack(struct conn *c, int on)
{
	c->quickack = on != 0;
}

size_t
conn_pending_output(const struct conn *c)
{
	return evbuffer_get_length(c->out);
}

void
conn_pause_read(struct conn *c, int paused)
{
	c->paused = paused;
	conn_update_read(c);
}

void
conn_set_max_input(struct conn *c, size_t max_input)
{
	c->max_input = max_input;
	conn_update_read(c);
}

void
conn_set_read_size(struct conn *c, size_t n)
{
	c->read_size = n;
}

void
conn_set_timeout(struct conn *c, unsigned seconds)
{
	c->timeout = seconds;
	if (c->rev_added) {
		struct timeval tv = { seconds, 0 };

		event_add(c->rev, seconds ? &tv : NULL);
	}
	if (c->wev_added && !c->connecting) {
		struct timeval tv = { seconds, 0 };

		event_add(c->wev, seconds ? &tv : NULL);
	}
}

void
conn_defer(struct conn *c)
{
	c->pending |= CONN_DEFERRED;
	event_active(c->dev, EV_TIMEOUT, 1);
}

/* Read what TLS has for us: returns 1 if input was added, 0 if none yet,
 * -1 if the connection failed (reported from the loop). */
static int
conn_tls_read(struct conn *c)
{
	int got = 0;

	do {
		struct evbuffer_iovec v;
		int r, e;

		if (evbuffer_get_length(c->in) >= c->max_input)
			break;
		if (evbuffer_reserve_space(c->in, (ev_ssize_t)c->read_size, &v, 1) < 1)
			return -1;
		ERR_clear_error();
		r = SSL_read(c->ssl, v.iov_base, (int)(v.iov_len > c->read_size ?
		    c->read_size : v.iov_len));
		if (r > 0) {
			v.iov_len = (size_t)r;
			evbuffer_commit_space(c->in, &v, 1);
			got = 1;
			continue;	/* SSL may hold more than epoll can see */
		}
		evbuffer_commit_space(c->in, &v, 0);
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ)
			break;
		if (e == SSL_ERROR_WANT_WRITE) {
			/* renegotiation-like: wait until writable */
			arm_write(c);
			break;
		}
		if (e == SSL_ERROR_ZERO_RETURN) {
			if (got)
				break;	/* deliver first; EOF on the next read */
			fail(c, CONN_EOF);
			return -1;
		}
		if (got)
			break;
		c->err = errno;
		ERR_error_string_n(ERR_peek_last_error(), c->tls_error,
		    sizeof(c->tls_error));
		fail(c, e == SSL_ERROR_SYSCALL && r == 0 ? CONN_EOF : CONN_ERROR);
		return -1;
	} while (SSL_pending(c->ssl) > 0);
	return got;
}

static void
conn_tls_handshake(struct conn *c)
{
	int r, e;

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		c->handshaking = 0;
		if (c->wev_added) {
			event_del(c->wev);
			c->wev_added = 0;
		}
		conn_update_read(c);
		if (call_event(c, CONN_TLS_READY) < 0)
			return;
		conn_flush(c);
		return;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		if (c->wev_added) {
			event_del(c->wev);
			c->wev_added = 0;
		}
		conn_update_read(c);
		return;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		arm_write(c);
		return;
	}
	c->err = errno;
	ERR_error_string_n(ERR_peek_last_error(), c->tls_error,
	    sizeof(c->tls_error));
	if (SSL_get_verify_result(c->ssl) != X509_V_OK)
		snprintf(c->tls_error, sizeof(c->tls_error),
		    "certificate verification failed: %s",
		    X509_verify_cert_error_string(SSL_get_verify_result(c->ssl)));
	fail(c, CONN_ERROR);
}

int
conn_start_tls(struct conn *c, SSL *ssl)
{
	if (c->ssl != NULL || c->dead) {
		SSL_free(ssl);
		return -1;
	}
	/* Bytes the peer sent before the handshake were sent in the clear
	 * and must not be taken as protected (the STARTTLS injection class). */
	evbuffer_drain(c->in, evbuffer_get_length(c->in));
	if (SSL_set_fd(ssl, c->fd) != 1) {
		SSL_free(ssl);
		return -1;
	}
	/* RELEASE_BUFFERS: an idle TLS session keeps no 16 KB record
	 * buffers around */
	SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	c->ssl = ssl;
	c->handshaking = 1;
	conn_update_read(c);
	/* start now: a client sends its hello at once */
	c->pending |= CONN_TLS_KICK;
	event_active(c->dev, EV_TIMEOUT, 1);
	return 0;
}

SSL *
conn_ssl(const struct conn *c)
{
	return c->ssl;
}

const char *
conn_tls_error(const struct conn *c)
{
	return c->tls_error[0] ? c->tls_error : "TLS error";
}
