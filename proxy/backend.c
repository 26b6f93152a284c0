/*
 * backend.c - see backend.h.
 *
 * States: CONNECTING -> GREETING -> EHLO -> READY, and DEAD after an error.
 * Replies are read line by line with a bounded line length, parsed by
 * backend_reply.c, and matched to the FIFO of outstanding tags.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include "backend.h"
#include "conf.h"
#include "conn.h"
#include "tls.h"
#include "util.h"
#include "log.h"

struct backend_known backend_known;

/* Made once in the master (a bad CA file stops the start), inherited by the
 * workers. */
static SSL_CTX *backend_tls_ctx;
/* backend.auth_user's password, read once by the master (backend_global_init) */
static char backend_auth_secret[512];

enum backend_state {
	BS_CONNECTING, BS_GREETING, BS_EHLO, BS_STARTTLS, BS_TLS_HANDSHAKE,
	BS_XCLIENT, BS_AUTH, BS_READY, BS_DEAD,
};

struct backend {
	struct event_base *base;
	const struct conf *conf;
	struct conn *conn;
	struct event *defer_ev;		/* reports an error out of line */
	struct backend_cbs cbs;
	void *ctx;
	enum backend_state state;
	enum smtp_reply_id defer_why;
	struct backend_caps caps;
	struct evbuffer *held;		/* written before READY */
	uint32_t *fifo;			/* outstanding tags, ring buffer */
	size_t fifo_head, fifo_len, fifo_cap;
	struct backend_reply reply;
	int tls;			/* TLS is on */
	char *xclient;			/* XCLIENT attributes to send, or NULL */
	char *xclient_helo;		/* EHLO name after XCLIENT */
	int xclient_done;
	int authed;			/* our own AUTH succeeded */
	int in_callback;		/* a callback is running: defer free */
	int free_pending;
	char log_id[32];
};

static void backend_fail(struct backend *be, enum smtp_reply_id why);

static void
fifo_push(struct backend *be, uint32_t tag)
{
	if (be->fifo_len == be->fifo_cap) {
		size_t ncap = be->fifo_cap ? be->fifo_cap * 2 : 16, i;
		uint32_t *n = calloc(ncap, sizeof(*n));

		if (n == NULL)
			abort();	/* out of memory: nothing sane to do */
		for (i = 0; i < be->fifo_len; i++)
			n[i] = be->fifo[(be->fifo_head + i) % be->fifo_cap];
		free(be->fifo);
		be->fifo = n;
		be->fifo_cap = ncap;
		be->fifo_head = 0;
	}
	be->fifo[(be->fifo_head + be->fifo_len) % be->fifo_cap] = tag;
	be->fifo_len++;
}

static uint32_t
fifo_pop(struct backend *be)
{
	uint32_t tag = be->fifo[be->fifo_head];

	be->fifo_head = (be->fifo_head + 1) % be->fifo_cap;
	be->fifo_len--;
	return tag;
}

static struct evbuffer *
out_buffer(struct backend *be)
{
	return be->state == BS_READY ? conn_output(be->conn) : be->held;
}

static void
parse_caps(struct backend *be, const struct backend_reply *r)
{
	unsigned i;

	memset(&be->caps, 0, sizeof(be->caps));
	for (i = 1; i < r->line_count; i++) {
		size_t len, kw;
		const char *l = backend_reply_line(r, i, &len);
		static const struct { const char *name; unsigned flag; } names[] = {
			{"PIPELINING", CAP_PIPELINING}, {"SIZE", CAP_SIZE},
			{"8BITMIME", CAP_8BITMIME},
			{"ENHANCEDSTATUSCODES", CAP_ENHANCEDSTATUSCODES},
			{"CHUNKING", CAP_CHUNKING}, {"BINARYMIME", CAP_BINARYMIME},
			{"SMTPUTF8", CAP_SMTPUTF8}, {"DSN", CAP_DSN},
			{"XCLIENT", CAP_XCLIENT}, {"STARTTLS", CAP_STARTTLS},
			{"AUTH", CAP_AUTH}, {"ETRN", CAP_ETRN},
			{"XFORWARD", CAP_XFORWARD},
		};
		size_t k;

		if (l == NULL)
			break;
		for (kw = 0; kw < len && l[kw] != ' ' && l[kw] != '='; kw++)
			;
		for (k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
			if (strlen(names[k].name) == kw &&
			    strncasecmp(l, names[k].name, kw) == 0) {
				be->caps.flags |= names[k].flag;
				if (names[k].flag == CAP_SIZE && kw < len)
					be->caps.size = strtoull(l + kw + 1, NULL, 10);
			}
		}
	}
	backend_known.caps = be->caps;
	backend_known.valid = 1;
}

/* Greeting, EHLO (and TLS) done: release what was held back. */
static int
become_ready(struct backend *be)
{
	be->state = BS_READY;
	backend_set_reply_timeout(be, be->conf->timeouts.backend_command);
	evbuffer_add_buffer(conn_output(be->conn), be->held);
	conn_flush(be->conn);
	if (be->cbs.on_ready != NULL) {
		be->in_callback = 1;
		be->cbs.on_ready(be->ctx, &be->caps);
		be->in_callback = 0;
		if (be->free_pending) {
			backend_free(&be);
			return -1;
		}
	}
	return 0;
}

/*
 * The proxy's own AUTH PLAIN (RFC 4616) towards a backend that wants SMTP
 * AUTH from its relays.  The password crosses the wire: only under TLS, or
 * to a unix socket or loopback backend.
 */
static int
backend_auth(struct backend *be)
{
	const struct conf_backend *cb = &be->conf->backend;
	const struct sockaddr *sa = (const struct sockaddr *)&cb->addr.ss;
	int local = sa->sa_family == AF_UNIX ||
	    (sa->sa_family == AF_INET &&
	    (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127) ||
	    (sa->sa_family == AF_INET6 &&
	    IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr));
	unsigned char plain[1024];
	char b64[1400];
	size_t ul = strlen(cb->auth_user), pl = strlen(backend_auth_secret);

	if (!(be->caps.flags & CAP_AUTH)) {
		log_warn("%s: backend offers no AUTH; backend.auth_user is set",
		    be->log_id);
		return become_ready(be);
	}
	if (!be->tls && !local) {
		log_err("%s: not sending our password to %s without TLS "
		    "(backend.tls)", be->log_id, cb->addr.text);
		backend_fail(be, R_BACKEND_CONFIG);
		return -1;
	}
	if (ul + pl + 2 > sizeof(plain)) {
		backend_fail(be, R_BACKEND_CONFIG);
		return -1;
	}
	plain[0] = '\0';
	memcpy(plain + 1, cb->auth_user, ul);
	plain[1 + ul] = '\0';
	memcpy(plain + 2 + ul, backend_auth_secret, pl);
	util_b64_encode(plain, ul + pl + 2, b64, sizeof(b64));
	evbuffer_add_printf(conn_output(be->conn), "AUTH PLAIN %s\r\n", b64);
	explicit_bzero(plain, sizeof(plain));
	explicit_bzero(b64, sizeof(b64));
	conn_flush(be->conn);
	be->state = BS_AUTH;
	return 0;
}

/* Called with a complete reply.  Returns -1 if the backend must not be
 * touched any more (failed or freed by the owner). */
static int
handle_reply(struct backend *be)
{
	const struct backend_reply *r = &be->reply;

	switch (be->state) {
	case BS_GREETING:
		if (r->code != 220) {
			log_warn("%s: backend greeting: %d %s", be->log_id,
			    r->code, r->text);
			backend_fail(be, R_BACKEND_UNAVAIL);
			return -1;
		}
		evbuffer_add_printf(conn_output(be->conn), "%s %s\r\n",
		    be->conf->backend.proto == BACKEND_LMTP ? "LHLO" : "EHLO",
		    be->conf->backend.helo_name);
		conn_flush(be->conn);
		be->state = BS_EHLO;
		return 0;
	case BS_EHLO:
		if (r->code != 250) {
			log_warn("%s: backend EHLO: %d %s", be->log_id, r->code,
			    r->text);
			backend_fail(be, r->code == 421 ? R_BACKEND_UNAVAIL :
			    R_BACKEND_CONFIG);
			return -1;
		}
		parse_caps(be, r);
		if (!be->tls && be->conf->backend.tls != BACKEND_TLS_NONE) {
			if (be->caps.flags & CAP_STARTTLS) {
				evbuffer_add(conn_output(be->conn), "STARTTLS\r\n", 10);
				conn_flush(be->conn);
				be->state = BS_STARTTLS;
				return 0;
			}
			if (be->conf->backend.tls == BACKEND_TLS_VERIFY) {
				log_warn("%s: backend offers no STARTTLS, and "
				    "backend.tls is \"verify\"", be->log_id);
				backend_fail(be, R_BACKEND_UNAVAIL);
				return -1;
			}
		}
		if (be->xclient != NULL && !be->xclient_done &&
		    be->conf->backend.xclient && (be->caps.flags & CAP_XCLIENT)) {
			/* Postfix's XCLIENT: the real client, and who it
			 * authenticated as; answered with a new 220 */
			evbuffer_add_printf(conn_output(be->conn), "XCLIENT %s\r\n",
			    be->xclient);
			conn_flush(be->conn);
			be->xclient_done = 1;
			be->state = BS_XCLIENT;
			return 0;
		}
		/* our own AUTH only where XCLIENT does not carry the
		 * client's identity (after XCLIENT the session is the
		 * client's: an AUTH of ours would replace its login) */
		if (be->conf->backend.auth_user[0] != '\0' && !be->authed &&
		    !be->xclient_done && !(be->caps.flags & CAP_XCLIENT))
			return backend_auth(be);
		return become_ready(be);
	case BS_AUTH:
		if (r->code != 235) {
			log_warn("%s: backend refused our AUTH as %s: %d %s",
			    be->log_id, be->conf->backend.auth_user, r->code,
			    r->text);
			backend_fail(be, R_BACKEND_CONFIG);
			return -1;
		}
		be->authed = 1;
		return become_ready(be);
	case BS_XCLIENT:
		/* Postfix answers with a new 220 greeting; smtp-sink with 250 */
		if (r->code / 100 != 2) {
			/* not authorized for XCLIENT: go on without */
			log_warn("%s: backend refused XCLIENT: %d %s", be->log_id,
			    r->code, r->text);
			return become_ready(be);
		}
		/* The session starts anew: EHLO again (caps may change), with
		 * the client's own HELO name, which the new EHLO would
		 * otherwise overwrite in the backend's Received header. */
		evbuffer_add_printf(conn_output(be->conn), "%s %s\r\n",
		    be->conf->backend.proto == BACKEND_LMTP ? "LHLO" : "EHLO",
		    be->xclient_helo != NULL ? be->xclient_helo :
		    be->conf->backend.helo_name);
		conn_flush(be->conn);
		be->state = BS_EHLO;
		return 0;
	case BS_STARTTLS: {
		SSL *ssl;

		if (r->code != 220) {
			log_warn("%s: backend STARTTLS: %d %s", be->log_id,
			    r->code, r->text);
			if (be->conf->backend.tls == BACKEND_TLS_VERIFY) {
				backend_fail(be, R_BACKEND_UNAVAIL);
				return -1;
			}
			/* "may": go on in the clear */
			return become_ready(be);
		}
		ssl = tls_client_new(backend_tls_ctx,
		    be->conf->backend.tls == BACKEND_TLS_VERIFY ?
		    be->conf->backend.tls_verify_name : NULL);
		if (ssl == NULL || conn_start_tls(be->conn, ssl) < 0) {
			log_warn("%s: cannot start TLS", be->log_id);
			backend_fail(be, R_BACKEND_UNAVAIL);
			return -1;
		}
		be->state = BS_TLS_HANDSHAKE;
		return 0;
	}
	case BS_READY: {
		uint32_t tag;

		if (be->fifo_len == 0) {
			char line[200];
			log_warn("%s: unsolicited backend reply: %d %s", be->log_id,
			    r->code, log_sanitize(line, sizeof(line), r->text,
			    r->text_len));
			backend_fail(be, R_BACKEND_GARBAGE);
			return -1;
		}
		tag = fifo_pop(be);
		be->in_callback = 1;
		be->cbs.on_reply(be->ctx, tag, r);
		be->in_callback = 0;
		if (be->free_pending) {
			backend_free(&be);
			return -1;
		}
		return be->state == BS_DEAD ? -1 : 0;
	}
	default:
		return -1;
	}
}

static void
read_cb(void *arg)
{
	struct backend *be = arg;
	struct evbuffer *in = conn_input(be->conn);

	while (be->state != BS_DEAD) {
		struct evbuffer_ptr eol;
		size_t eol_len = 0, len;
		char line[BACKEND_LINE_MAX + 1];
		enum backend_reply_status st;

		eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
		if (eol.pos < 0) {
			if (evbuffer_get_length(in) > BACKEND_LINE_MAX) {
				log_warn("%s: backend line too long", be->log_id);
				backend_fail(be, R_BACKEND_GARBAGE);
			}
			return;
		}
		len = (size_t)eol.pos;
		if (len > BACKEND_LINE_MAX) {
			log_warn("%s: backend line too long", be->log_id);
			backend_fail(be, R_BACKEND_GARBAGE);
			return;
		}
		evbuffer_remove(in, line, len);
		evbuffer_drain(in, eol_len);
		line[len] = '\0';
		st = backend_reply_feed(&be->reply, line, len);
		if (st == BACKEND_REPLY_BAD) {
			char clean[200];
			log_warn("%s: malformed backend reply: %s", be->log_id,
			    log_sanitize(clean, sizeof(clean), line, len));
			backend_fail(be, R_BACKEND_GARBAGE);
			return;
		}
		if (st == BACKEND_REPLY_MORE)
			continue;
		if (handle_reply(be) < 0)
			return;
		backend_reply_reset(&be->reply);
	}
}

static void
event_cb(void *arg, int what)
{
	struct backend *be = arg;

	if (what & CONN_CONNECTED) {
		be->state = BS_GREETING;
		return;
	}
	if (what & CONN_TLS_READY) {
		char desc[128];

		tls_describe(conn_ssl(be->conn), desc, sizeof(desc));
		log_debug("%s: backend TLS: %s", be->log_id, desc);
		be->tls = 1;
		/* RFC 3207 4.2: forget what was learned before TLS */
		evbuffer_add_printf(conn_output(be->conn), "%s %s\r\n",
		    be->conf->backend.proto == BACKEND_LMTP ? "LHLO" : "EHLO",
		    be->conf->backend.helo_name);
		conn_flush(be->conn);
		be->state = BS_EHLO;
		return;
	}
	if (what & CONN_DRAINED) {
		if (be->cbs.on_drain != NULL && be->state == BS_READY) {
			be->in_callback = 1;
			be->cbs.on_drain(be->ctx);
			be->in_callback = 0;
			if (be->free_pending)
				backend_free(&be);
		}
		return;
	}
	if (what & CONN_TIMEOUT) {
		if (be->state == BS_READY && be->fifo_len == 0)
			log_debug("%s: idle backend connection timed out", be->log_id);
		else
			log_warn("%s: backend timeout (%s)", be->log_id,
			    be->state == BS_CONNECTING ? "connect" : "reply");
		backend_fail(be, be->state < BS_READY ? R_BACKEND_UNAVAIL :
		    R_BACKEND_TIMEOUT);
		return;
	}
	if (what & (CONN_EOF | CONN_ERROR)) {
		if (be->state == BS_READY && be->fifo_len == 0 && (what & CONN_EOF))
			log_debug("%s: backend closed idle connection", be->log_id);
		else
			log_warn("%s: backend %s %s: %s", be->log_id,
			    be->state == BS_CONNECTING ? "connect to" : "connection to",
			    be->conf->backend.addr.text, (what & CONN_EOF) ?
			    "closed" : be->state == BS_TLS_HANDSHAKE || be->tls ?
			    conn_tls_error(be->conn) : strerror(conn_errno(be->conn)));
		backend_fail(be, be->state < BS_READY ? R_BACKEND_UNAVAIL :
		    R_BACKEND_LOST);
	}
}

static void
defer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct backend *be = arg;

	(void)fd;
	(void)what;
	backend_fail(be, be->defer_why);
}

/* Report the failure once and go DEAD.  May run the owner's on_error, which
 * may free the backend: the caller must not touch be afterwards. */
static void
backend_fail(struct backend *be, enum smtp_reply_id why)
{
	uint32_t tags_small[64], *tags = tags_small;
	size_t n = 0;

	if (be->state == BS_DEAD)
		return;
	be->state = BS_DEAD;
	if (be->fifo_len > 64) {
		tags = calloc(be->fifo_len, sizeof(*tags));
		if (tags == NULL)
			abort();
	}
	while (be->fifo_len > 0)
		tags[n++] = fifo_pop(be);
	be->in_callback = 1;
	be->cbs.on_error(be->ctx, why, tags, n);
	be->in_callback = 0;
	if (tags != tags_small)
		free(tags);
	if (be->free_pending)
		backend_free(&be);
}

struct backend *
backend_new(struct event_base *base, const struct conf *conf,
	    const struct backend_cbs *cbs, void *ctx, const char *log_id)
{
	struct backend *be = calloc(1, sizeof(*be));

	if (be == NULL)
		return NULL;
	be->base = base;
	be->conf = conf;
	be->cbs = *cbs;
	be->ctx = ctx;
	be->state = BS_CONNECTING;
	snprintf(be->log_id, sizeof(be->log_id), "%s", log_id);
	backend_reply_reset(&be->reply);
	be->held = evbuffer_new();
	be->defer_ev = evtimer_new(base, defer_cb, be);
	if (be->held == NULL || be->defer_ev == NULL) {
		backend_free(&be);
		return NULL;
	}
	{
		static const struct conn_cbs io_cbs = { read_cb, event_cb };

		be->conn = conn_connect(base,
		    (const struct sockaddr *)&conf->backend.addr.ss,
		    conf->backend.addr.sslen, conf->timeouts.backend_connect,
		    &io_cbs, be);
	}
	if (be->conn == NULL) {
		struct timeval zero = { 0, 0 };

		log_warn("%s: cannot connect to backend %s: %s", be->log_id,
		    conf->backend.addr.text, strerror(errno));
		be->defer_why = R_BACKEND_UNAVAIL;
		evtimer_add(be->defer_ev, &zero);
		return be;
	}
	conn_set_max_input(be->conn, BACKEND_LINE_MAX * 4);
	return be;
}

void
backend_free(struct backend **bep)
{
	struct backend *be = *bep;

	if (be == NULL)
		return;
	*bep = NULL;
	if (be->in_callback) {
		/* Freed from inside one of our callbacks: finish there. */
		be->free_pending = 1;
		be->cbs.on_reply = NULL;
		return;
	}
	conn_free(&be->conn);
	if (be->defer_ev != NULL)
		event_free(be->defer_ev);
	if (be->held != NULL)
		evbuffer_free(be->held);
	free(be->xclient);
	free(be->xclient_helo);
	free(be->fifo);
	free(be);
}

int
backend_is_ready(const struct backend *be)
{
	return be->state == BS_READY;
}

const struct backend_caps *
backend_caps(const struct backend *be)
{
	return &be->caps;
}

int
backend_can_pipeline(const struct backend *be)
{
	/* Before EHLO we don't know yet; go by what the worker learned. */
	if (be->state == BS_READY)
		return (be->caps.flags & CAP_PIPELINING) != 0;
	return backend_known.valid && (backend_known.caps.flags & CAP_PIPELINING);
}

size_t
backend_outstanding(const struct backend *be)
{
	return be->fifo_len;
}

void
backend_send(struct backend *be, uint32_t tag, const char *fmt, ...)
{
	struct evbuffer *out;
	va_list ap;

	if (be->state == BS_DEAD)
		return;
	out = out_buffer(be);
	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
	fifo_push(be, tag);
}

void
backend_send_buffer(struct backend *be, struct evbuffer *data, size_t n)
{
	if (n > evbuffer_get_length(data))
		n = evbuffer_get_length(data);
	if (be->state == BS_DEAD) {
		evbuffer_drain(data, n);
		return;
	}
	if (n == evbuffer_get_length(data))
		evbuffer_add_buffer(out_buffer(be), data);
	else
		evbuffer_remove_buffer(data, out_buffer(be), n);
}

void
backend_expect(struct backend *be, uint32_t tag)
{
	if (be->state != BS_DEAD)
		fifo_push(be, tag);
}

size_t
backend_pending_output(const struct backend *be)
{
	return evbuffer_get_length(be->held) +
	    (be->conn != NULL ? conn_pending_output(be->conn) : 0);
}

void
backend_quit(struct backend *be)
{
	if (be->state == BS_READY) {
		evbuffer_add(conn_output(be->conn), "QUIT\r\n", 6);
		conn_flush(be->conn);
	}
}

void
backend_set_reply_timeout(struct backend *be, unsigned seconds)
{
	if (be->state >= BS_GREETING && be->state != BS_DEAD)
		conn_set_timeout(be->conn, seconds);
}

void
backend_flush(struct backend *be)
{
	if (be->state == BS_READY)
		conn_flush(be->conn);
}

int
backend_global_init(const struct conf *conf, const char **error_r)
{
	static char err[700];
	char secret[sizeof(backend_auth_secret)] = "";
	SSL_CTX *ctx = NULL;

	/* all or nothing: a reload that fails keeps what the master had */
	if (conf->backend.auth_password_file[0] != '\0' &&
	    util_read_secret(conf->backend.auth_password_file, secret,
	    sizeof(secret), NULL, 1, error_r) < 0) {
		snprintf(err, sizeof(err), "backend.auth_password_file %s",
		    *error_r);
		*error_r = err;
		return -1;
	}
	if (conf->backend.tls != BACKEND_TLS_NONE) {
		ctx = tls_client_ctx_new(conf->backend.tls ==
		    BACKEND_TLS_VERIFY ? conf->backend.tls_ca_file : NULL,
		    error_r);
		if (ctx == NULL) {
			OPENSSL_cleanse(secret, sizeof(secret));
			return -1;
		}
	}
	backend_global_deinit();
	backend_tls_ctx = ctx;
	memcpy(backend_auth_secret, secret, sizeof(secret));
	OPENSSL_cleanse(secret, sizeof(secret));
	return 0;
}

void
backend_global_deinit(void)
{
	SSL_CTX_free(backend_tls_ctx);
	backend_tls_ctx = NULL;
	OPENSSL_cleanse(backend_auth_secret, sizeof(backend_auth_secret));
}

int
backend_is_tls(const struct backend *be)
{
	return be->tls;
}

void
backend_set_xclient(struct backend *be, const char *attrs, const char *helo)
{
	free(be->xclient);
	free(be->xclient_helo);
	be->xclient = attrs != NULL ? strdup(attrs) : NULL;
	be->xclient_helo = helo != NULL && helo[0] != '\0' ? strdup(helo) : NULL;
}
