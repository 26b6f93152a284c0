/*
 * imap_client.c - see imap_client.h.
 *
 * A connection (struct imap_conn) goes
 *
 *   CONNECTING -> [TLS] -> GREETING -> [CAPABILITY] -> [STARTTLS -> TLS ->
 *   CAPABILITY] -> AUTH -> READY <-> (EXAMINE ->) FETCH -> READY ... -> DEAD
 *
 * always under one of two clocks: the connect deadline (connect_timeout for
 * everything up to READY, as a whole) and conn.c's progress timeout
 * (connect_timeout per step while setting up, fetch_timeout during a fetch,
 * idle_timeout in the pool).  A connection is opened for a fetch that found
 * no idle one, but it is not owned by it: if that fetch is cancelled, the
 * connection still finishes setting up and goes to the pool.  Anything
 * doubtful (BYE, garbage, a literal we did not read to its end, a cancel in
 * mid-command) discards the connection; only a connection whose last command
 * ended with its tagged response goes back to the pool.
 *
 * The caller's callbacks: on_data runs from the read loop (the caller may
 * pause or cancel from inside it: both objects then guard against being
 * freed under us); on_done always runs from the fetch's own event, so no
 * callback ever runs inside imap_fetch_start() or in the middle of our own
 * bookkeeping.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "imap_client.h"
#include "imap_resp.h"
#include "imapurl.h"
#include "krb_creds.h"
#include "conn.h"
#include "tls.h"
#include "log.h"
#include "util.h"

#define IMAP_CLIENT_MAX_LINE	8192	/* response bytes outside content */
#define IMAP_IDLE_MAX_LITERAL	65536	/* content literals outside a fetch */
#define IMAP_MAX_INPUT		(256 * 1024)	/* buffered input while paused */
#define IMAP_SASL_MAX		16384	/* one decoded SASL challenge */

#define DEF_MAX_IDLE		4
#define DEF_MAX_CONNS		32
#define DEF_CONNECT_TIMEOUT	20
#define DEF_FETCH_TIMEOUT	60
#define DEF_IDLE_TIMEOUT	60

enum ic_state {
	IC_CONNECTING,
	IC_TLS,			/* handshake (implicit TLS or after STARTTLS) */
	IC_GREETING,
	IC_CAPABILITY,		/* CAPABILITY sent */
	IC_STARTTLS,		/* STARTTLS sent */
	IC_AUTH,		/* AUTHENTICATE in progress */
	IC_READY,		/* authenticated, no command in flight */
	IC_CONT,		/* waiting for "+" to send a literal */
	IC_EXAMINE,		/* EXAMINE sent */
	IC_FETCH,		/* URLFETCH / UID FETCH sent */
	IC_DEAD,
};

static const char *const ic_state_names[] = {
	"connect", "TLS handshake", "greeting", "CAPABILITY", "STARTTLS",
	"AUTHENTICATE", "ready", "literal", "EXAMINE", "fetch", "dead",
};

struct imap_server;
struct imap_conn;

struct imap_fetch {
	struct imap_pool *pool;
	struct imap_server *srv;
	TAILQ_ENTRY(imap_fetch) qlink;
	int queued;
	struct imap_conn *ic;		/* serving it (or being set up for it) */
	struct imap_fetch_cbs cbs;
	void *ctx;

	enum imap_fetch_mode mode;
	char *url;			/* URLAUTH */
	size_t url_len;
	size_t token_off, token_len;	/* the URLAUTH token inside url */
	char authzid[256];		/* PROXY_AUTH: the user; "" otherwise */
	char *mailbox;
	uint32_t uidvalidity, uid;
	char section[256];
	int has_partial;
	uint32_t partial_offset, partial_length;
	uint64_t max_size;
	char what[300];			/* what is fetched, for logs */

	struct evbuffer *data;		/* content handed to on_data */
	uint64_t total;
	uint64_t start_ms;
	int lit_done;			/* its literal was read to the end */
	int paused;
	int retried;			/* once, after a stale pooled connection */
	enum { ITEM_NONE, ITEM_NIL, ITEM_DATA } item;
	char server_text[200];		/* an untagged NO's text, scrubbed */

	struct event *done_ev;
	int done;
	enum imap_fetch_result result;
	char reason[300];
	int in_cb, cancelled;
};

struct imap_conn {
	struct imap_server *srv;
	TAILQ_ENTRY(imap_conn) link;
	struct conn *conn;
	struct imap_resp_parser *parser;
	struct event *deadline;
	enum ic_state state;
	enum ic_state after_cont;	/* IC_CONT: the state once it is sent */
	struct evbuffer *cont_out;	/* IC_CONT: what follows the "+" */
	int idle;
	unsigned caps;
	int caps_known;
	int tls;
	char authzid[256];
	struct imap_fetch *fetch;
	unsigned tagno;
	char tag[16];
	struct gssapi_client *gss;
	int sasl_started, sasl_done;
	uint32_t uidvalidity;		/* from EXAMINE */
	int lit_ours;			/* the literal in progress is the fetch's */
	int heard;			/* a response since the fetch's command */
	int resp_ours;			/* the current response carried it */
	uint64_t id;
	uint64_t opened_ms;
	unsigned served;
	int in_cb, free_pending;
	char log_id[96];
};

struct imap_server {
	struct imap_pool *pool;
	struct imap_server_cfg *cfg;
	int loopback;
	unsigned max_idle, max_conns;
	unsigned connect_timeout, fetch_timeout, idle_timeout;
	TAILQ_HEAD(, imap_conn) conns;
	unsigned nconns, nidle;
	TAILQ_HEAD(, imap_fetch) queue;
	unsigned nqueued;
	int kicking;
};

struct imap_pool {
	struct event_base *base;
	struct imap_server *servers;
	size_t count;
	uint64_t next_id;
	uint64_t connections_opened;
	uint64_t fetches;
};

static const char *const result_names[] = {
	"OK", "NODATA", "TOO_BIG", "UNAVAILABLE",
};

static void ic_destroy(struct imap_conn *ic, const char *why);
static void ic_release(struct imap_conn *ic);
static void ic_process(struct imap_conn *ic);
static void fetch_begin(struct imap_conn *ic);
static void server_kick(struct imap_server *srv);

/* ---- helpers ---- */

/* Where a password may go without TLS: loopback, or a unix socket. */
static int
is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_UNIX)
		return 1;
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr)
		    >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a =
		    &((const struct sockaddr_in6 *)sa)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) &&
		    a->s6_addr[12] == 127);
	}
	return 0;
}

static const char *
memmem_ci_token(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
	size_t i;

	if (nlen == 0 || nlen > hlen)
		return NULL;
	for (i = 0; i + nlen <= hlen; i++)
		if (util_strncaseeq(hay + i, needle, nlen))
			return hay + i;
	return NULL;
}

static int
token_delim(unsigned char c)
{
	return c <= ' ' || c >= 0x7f || c == '"' || c == '\'' || c == '<' ||
	    c == '>' || c == '(' || c == ')' || c == '[' || c == ']';
}

/*
 * Server text for a log line or a reason.  URLs in it keep everything but
 * their URLAUTH token (Dovecot's "Failed to fetch URLAUTH "<url>": why"
 * quotes ours, token and all), unprintable bytes are escaped, and the text
 * is withheld altogether if our token or our password still shows.
 */
static void
scrub_text(const struct imap_fetch *f, const struct imap_server_cfg *cfg,
	   const char *text, size_t len, char *out, size_t outsize)
{
	char tmp[1024];
	size_t i = 0, o = 0, olen;

	while (i < len && o + 16 < sizeof(tmp)) {
		if (i + 9 <= len && util_strncaseeq(text + i, ";urlauth=", 9)) {
			size_t j = i + 9, colons = 0;

			/* ";URLAUTH=" access ":" mech ":" token */
			while (j < len && colons < 2 &&
			    !token_delim((unsigned char)text[j]))
				if (text[j++] == ':')
					colons++;
			if (colons == 2 && o + (j - i) + 16 < sizeof(tmp)) {
				memcpy(tmp + o, text + i, j - i);
				o += j - i;
				memcpy(tmp + o, "<redacted>", 10);
				o += 10;
				while (j < len && !token_delim((unsigned char)text[j]))
					j++;
				i = j;
				continue;
			}
		}
		tmp[o++] = text[i++];
	}
	log_sanitize(out, outsize, tmp, o);
	olen = strlen(out);
	/* before and after escaping */
	if ((f != NULL && f->token_len >= 8 &&
	    (memmem_ci_token(tmp, o, f->url + f->token_off, f->token_len) ||
	    memmem_ci_token(out, olen, f->url + f->token_off, f->token_len))) ||
	    (cfg->password[0] != '\0' &&
	    (memmem_ci_token(tmp, o, cfg->password, strlen(cfg->password)) ||
	    memmem_ci_token(out, olen, cfg->password, strlen(cfg->password)))))
		snprintf(out, outsize, "(server text withheld: it held a secret)");
}

/* value must go as a literal (RFC 3501 4.3): CTL, 8-bit, too long */
static int
needs_literal(const char *s, size_t len)
{
	size_t i;

	if (len > 1024)
		return 1;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c >= 0x7f)
			return 1;
	}
	return 0;
}

static const char *
next_tag(struct imap_conn *ic)
{
	snprintf(ic->tag, sizeof(ic->tag), "M%u", ++ic->tagno);
	return ic->tag;
}

/* "<tag> <cmd>\r\n" */
static void
ic_send(struct imap_conn *ic, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
ic_send(struct imap_conn *ic, const char *fmt, ...)
{
	struct evbuffer *out = conn_output(ic->conn);
	va_list ap;

	evbuffer_add_printf(out, "%s ", next_tag(ic));
	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
	conn_flush(ic->conn);
}

/*
 * "<tag> <verb> <astring><rest>\r\n": a quoted string when it can be one, else
 * a literal: non-synchronizing with LITERAL+ (or LITERAL- up to 4096 octets,
 * RFC 7888), else synchronizing: the rest waits for the server's "+" (state
 * IC_CONT, then next_state).
 */
static void
ic_send_astring(struct imap_conn *ic, const char *verb, const char *value,
		size_t len, const char *rest, enum ic_state next_state)
{
	struct evbuffer *out = conn_output(ic->conn);
	size_t i;

	evbuffer_add_printf(out, "%s %s ", next_tag(ic), verb);
	if (!needs_literal(value, len)) {
		evbuffer_add(out, "\"", 1);
		for (i = 0; i < len; i++) {
			if (value[i] == '"' || value[i] == '\\')
				evbuffer_add(out, "\\", 1);
			evbuffer_add(out, value + i, 1);
		}
		evbuffer_add_printf(out, "\"%s\r\n", rest);
		ic->state = next_state;
	} else if ((ic->caps & IMAP_CAP_LITERAL_PLUS) ||
	    ((ic->caps & IMAP_CAP_LITERAL_MINUS) && len <= 4096)) {
		evbuffer_add_printf(out, "{%zu+}\r\n", len);
		evbuffer_add(out, value, len);
		evbuffer_add_printf(out, "%s\r\n", rest);
		ic->state = next_state;
	} else {
		evbuffer_add_printf(out, "{%zu}\r\n", len);
		evbuffer_drain(ic->cont_out, evbuffer_get_length(ic->cont_out));
		evbuffer_add(ic->cont_out, value, len);
		evbuffer_add_printf(ic->cont_out, "%s\r\n", rest);
		ic->after_cont = next_state;
		ic->state = IC_CONT;
	}
	conn_flush(ic->conn);
}

/* ---- fetch completion ---- */

static void
fetch_free(struct imap_fetch *f)
{
	if (f->done_ev != NULL)
		event_free(f->done_ev);
	if (f->data != NULL)
		evbuffer_free(f->data);
	if (f->url != NULL) {
		explicit_bzero(f->url, f->url_len);
		free(f->url);
	}
	free(f->mailbox);
	free(f);
}

static void
fetch_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct imap_fetch *f = arg;

	(void)fd;
	(void)what;
	f->in_cb++;
	f->cbs.on_done(f->ctx, f->result, f->reason, f->total);
	f->in_cb--;
	fetch_free(f);
}

static void
fetch_dequeue(struct imap_fetch *f)
{
	if (f->queued) {
		TAILQ_REMOVE(&f->srv->queue, f, qlink);
		f->srv->nqueued--;
		f->queued = 0;
	}
}

/*
 * The fetch ends with `result`: it lets go of its connection (back to the
 * pool when reuse is set, else discarded), the result is logged, and
 * on_done follows from the loop.
 */
static void
fetch_complete(struct imap_fetch *f, enum imap_fetch_result result,
	       int reuse, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
fetch_complete(struct imap_fetch *f, enum imap_fetch_result result,
	       int reuse, const char *fmt, ...)
{
	struct imap_conn *ic = f->ic;
	va_list ap;

	if (f->done)
		return;
	f->done = 1;
	f->result = result;
	va_start(ap, fmt);
	vsnprintf(f->reason, sizeof(f->reason), fmt, ap);
	va_end(ap);
	fetch_dequeue(f);
	/* a fetch that worked: the caller logs it (one line per BURL) */
	log_msg(result == IMAP_FETCH_OK ? LOG_DEBUG : result ==
	    IMAP_FETCH_UNAVAILABLE ? LOG_WARNING : LOG_NOTICE,
	    "%s: fetch %s: %s (%s), %llu bytes, %llu ms",
	    ic != NULL ? ic->log_id : f->srv->cfg->name, f->what,
	    result_names[result], f->reason, (unsigned long long)f->total,
	    (unsigned long long)(util_now_ms() - f->start_ms));
	if (ic != NULL) {
		f->ic = NULL;
		ic->fetch = NULL;
		ic->lit_ours = 0;
		if (reuse)
			ic_release(ic);
		else
			ic_destroy(ic, f->reason);
	}
	event_active(f->done_ev, EV_TIMEOUT, 1);
}

/* The caller's on_data with what is in f->data.  -1 if the fetch was
 * cancelled inside (then it is gone, and maybe the connection too). */
static int
fetch_deliver(struct imap_fetch *f)
{
	if (evbuffer_get_length(f->data) == 0)
		return 0;
	f->in_cb++;
	f->cbs.on_data(f->ctx, f->data);
	f->in_cb--;
	if (f->cancelled) {
		fetch_free(f);
		return -1;
	}
	/* the contract is to take it all; do not let it pile up */
	evbuffer_drain(f->data, evbuffer_get_length(f->data));
	return 0;
}

/* ---- connections ---- */

static void
ic_free(struct imap_conn *ic)
{
	if (ic->gss != NULL)
		gssapi_client_free(&ic->gss);
	imap_resp_parser_free(&ic->parser);
	if (ic->deadline != NULL)
		event_free(ic->deadline);
	if (ic->cont_out != NULL)
		evbuffer_free(ic->cont_out);
	conn_free(&ic->conn);
	free(ic);
}

/*
 * Close the connection.  A fetch on it fails UNAVAILABLE with `why` (the
 * callers with another result complete the fetch first).  The memory goes
 * when our callback returns, if we are inside one.
 */
static void
ic_destroy(struct imap_conn *ic, const char *why)
{
	struct imap_server *srv = ic->srv;

	if (ic->state == IC_DEAD)
		return;
	if (ic->fetch != NULL) {
		fetch_complete(ic->fetch, IMAP_FETCH_UNAVAILABLE, 0, "%s", why);
		return;		/* it came back here */
	}
	if (ic->idle && imap_resp_idle(ic->parser)) {
		/* best effort; nothing waits for the answer.  Mid-command
		 * there is no LOGOUT: the connection is just closed. */
		evbuffer_add_printf(conn_output(ic->conn), "%s LOGOUT\r\n",
		    next_tag(ic));
		conn_flush(ic->conn);
	}
	log_info("%s: connection closed (%s) after %u fetches, %llu s",
	    ic->log_id, why, ic->served,
	    (unsigned long long)((util_now_ms() - ic->opened_ms) / 1000));
	ic->state = IC_DEAD;
	if (ic->idle)
		srv->nidle--;
	ic->idle = 0;
	TAILQ_REMOVE(&srv->conns, ic, link);
	srv->nconns--;
	evtimer_del(ic->deadline);
	conn_free(&ic->conn);	/* deferred by conn.c if inside its callback */
	if (ic->in_cb > 0)
		ic->free_pending = 1;
	else
		ic_free(ic);
	/* room for a queued fetch */
	server_kick(srv);
}

/* A failure of the connection itself: the fetch on it (if any) fails
 * UNAVAILABLE, and the connection is discarded. */
static void
ic_fail(struct imap_conn *ic, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
ic_fail(struct imap_conn *ic, const char *fmt, ...)
{
	char why[300];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (ic->state < IC_READY)
		log_warn("%s: %s failed: %s", ic->log_id,
		    ic_state_names[ic->state], why);
	ic_destroy(ic, why);
}

/* The last command ended cleanly: serve the next fetch, pool, or close. */
static void
ic_release(struct imap_conn *ic)
{
	struct imap_server *srv = ic->srv;

	ic->state = IC_READY;
	imap_resp_set_max_literal(ic->parser, IMAP_IDLE_MAX_LITERAL);
	conn_pause_read(ic->conn, 0);
	conn_set_timeout(ic->conn, srv->idle_timeout);
	ic->idle = 1;
	srv->nidle++;
	server_kick(srv);
	/* (we are inside ic's callback: it may be DEAD, not freed) */
	if (ic->state != IC_DEAD && ic->idle && srv->nidle > srv->max_idle)
		ic_destroy(ic, "more idle connections than max_idle_conns");
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct imap_conn *ic = arg;

	(void)fd;
	(void)what;
	ic_fail(ic, "not ready within connect_timeout (%u s) (in %s)",
	    ic->srv->connect_timeout, ic_state_names[ic->state]);
}

/* Authenticated: the fetch it was opened for, or the pool. */
static void
ic_ready(struct imap_conn *ic)
{
	evtimer_del(ic->deadline);
	ic->state = IC_READY;
	if (ic->fetch != NULL) {
		fetch_begin(ic);
		return;
	}
	ic_release(ic);
}

static void ic_start_auth(struct imap_conn *ic);

static void
ic_start_tls(struct imap_conn *ic)
{
	const struct imap_server_cfg *cfg = ic->srv->cfg;
	SSL *ssl;

	if (cfg->ssl_ctx == NULL) {
		ic_fail(ic, "TLS configured without a TLS context");
		return;
	}
	ssl = tls_client_new(cfg->ssl_ctx, cfg->tls_name);
	if (ssl == NULL || conn_start_tls(ic->conn, ssl) < 0) {
		ic_fail(ic, "cannot start TLS");
		return;
	}
	/* nothing sent in the clear before the handshake counts */
	imap_resp_parser_reset(ic->parser);
	ic->caps = 0;
	ic->caps_known = 0;
	ic->state = IC_TLS;
}

/* After the greeting or a CAPABILITY: STARTTLS, CAPABILITY or AUTH. */
static void
ic_after_caps(struct imap_conn *ic)
{
	const struct imap_server_cfg *cfg = ic->srv->cfg;

	if (!ic->caps_known) {
		ic_send(ic, "CAPABILITY");
		ic->state = IC_CAPABILITY;
		return;
	}
	if (cfg->tls == IMAP_TLS_STARTTLS && !ic->tls) {
		if (!(ic->caps & IMAP_CAP_STARTTLS)) {
			ic_fail(ic, "server does not offer STARTTLS");
			return;
		}
		ic_send(ic, "STARTTLS");
		ic->state = IC_STARTTLS;
		return;
	}
	ic_start_auth(ic);
}

/* base64 of in into a new string (NULL on allocation failure) */
static char *
b64_new(const unsigned char *in, size_t len)
{
	size_t n = (len + 2) / 3 * 4 + 1;
	char *s = malloc(n);

	if (s != NULL && util_b64_encode(in, len, s, n) < 0) {
		free(s);
		s = NULL;
	}
	return s;
}

/* One GSSAPI step with the server's challenge (NULL for the first) and
 * the response sent.  -1 if the connection failed. */
static int
ic_gssapi_step(struct imap_conn *ic, const unsigned char *in, size_t inlen,
	       const char *cmd_prefix)
{
	unsigned char *out = NULL;
	size_t outlen = 0;
	const char *err = NULL;
	enum gssapi_step st;
	char *b64;

	if (ic->sasl_done) {
		ic_fail(ic, "GSSAPI: server asked for more after the last step");
		return -1;
	}
	st = gssapi_client_step(ic->gss, in, inlen, &out, &outlen, &err);
	if (st == GSSAPI_FAIL) {
		char e[200];

		log_sanitize(e, sizeof(e), err != NULL ? err : "?",
		    err != NULL ? strlen(err) : 1);
		free(out);
		ic_fail(ic, "GSSAPI: %s", e);
		return -1;
	}
	if (st == GSSAPI_DONE)
		ic->sasl_done = 1;
	b64 = b64_new(out != NULL ? out : (const unsigned char *)"", outlen);
	if (out != NULL) {
		explicit_bzero(out, outlen);
		free(out);
	}
	if (b64 == NULL) {
		ic_fail(ic, "out of memory");
		return -1;
	}
	if (cmd_prefix != NULL)
		/* SASL-IR (RFC 4959): "=" stands for an empty response */
		ic_send(ic, "%s %s", cmd_prefix, b64[0] != '\0' ? b64 : "=");
	else {
		evbuffer_add_printf(conn_output(ic->conn), "%s\r\n", b64);
		conn_flush(ic->conn);
	}
	free(b64);
	return 0;
}

/* The PLAIN message (RFC 4616): authzid NUL user NUL password, in base64. */
static char *
plain_b64(const struct imap_conn *ic)
{
	const struct imap_server_cfg *cfg = ic->srv->cfg;
	unsigned char msg[3 * 256 + 2];
	size_t a = strlen(ic->authzid), u = strnlen(cfg->user, sizeof(cfg->user)),
	    p = strnlen(cfg->password, sizeof(cfg->password));
	char *s;

	memcpy(msg, ic->authzid, a);
	msg[a] = '\0';
	memcpy(msg + a + 1, cfg->user, u);
	msg[a + 1 + u] = '\0';
	memcpy(msg + a + 2 + u, cfg->password, p);
	s = b64_new(msg, a + u + p + 2);
	explicit_bzero(msg, sizeof(msg));
	return s;
}

static void
ic_start_auth(struct imap_conn *ic)
{
	const struct imap_server_cfg *cfg = ic->srv->cfg;

	ic->state = IC_AUTH;
	ic->sasl_started = ic->sasl_done = 0;
	if (cfg->cred == IMAP_CRED_PASSWORD) {
		char *b64;

		/* The password crosses the wire: only under TLS, or to a
		 * loopback address (the tests' plaintext fake servers). */
		if (!ic->tls && !ic->srv->loopback) {
			ic_fail(ic, "not sending the password without TLS");
			return;
		}
		if (!(ic->caps & IMAP_CAP_AUTH_PLAIN)) {
			ic_fail(ic, "server does not offer AUTH=PLAIN");
			return;
		}
		if (!(ic->caps & IMAP_CAP_SASL_IR)) {
			ic_send(ic, "AUTHENTICATE PLAIN");
			return;	/* the response follows the "+" */
		}
		b64 = plain_b64(ic);
		if (b64 == NULL) {
			ic_fail(ic, "out of memory");
			return;
		}
		ic->sasl_started = 1;
		ic_send(ic, "AUTHENTICATE PLAIN %s", b64);
		explicit_bzero(b64, strlen(b64));
		free(b64);
		ic->sasl_done = 1;
		return;
	}
	{
		const char *err = NULL;

		if (!(ic->caps & IMAP_CAP_AUTH_GSSAPI)) {
			ic_fail(ic, "server does not offer AUTH=GSSAPI");
			return;
		}
		ic->gss = gssapi_client_new(cfg->krb, "imap", cfg->service_host,
		    ic->authzid, &err);
		if (ic->gss == NULL) {
			ic_fail(ic, "GSSAPI: %s", err != NULL ? err : "cannot start");
			return;
		}
		if (!(ic->caps & IMAP_CAP_SASL_IR)) {
			ic_send(ic, "AUTHENTICATE GSSAPI");
			return;
		}
		ic->sasl_started = 1;
		ic_gssapi_step(ic, NULL, 0, "AUTHENTICATE GSSAPI");
	}
}

/* A "+" during AUTHENTICATE. */
static void
ic_auth_continue(struct imap_conn *ic, const struct imap_resp *r)
{
	const struct imap_server_cfg *cfg = ic->srv->cfg;
	unsigned char *chal;
	long n;

	if (cfg->cred == IMAP_CRED_PASSWORD) {
		char *b64;

		if (ic->sasl_started) {
			ic_fail(ic, "PLAIN: unexpected challenge");
			return;
		}
		b64 = plain_b64(ic);
		if (b64 == NULL) {
			ic_fail(ic, "out of memory");
			return;
		}
		ic->sasl_started = ic->sasl_done = 1;
		evbuffer_add_printf(conn_output(ic->conn), "%s\r\n", b64);
		explicit_bzero(b64, strlen(b64));
		free(b64);
		conn_flush(ic->conn);
		return;
	}
	if (!ic->sasl_started) {
		/* no SASL-IR: the first "+" is empty, the first token ours */
		ic->sasl_started = 1;
		ic_gssapi_step(ic, NULL, 0, NULL);
		return;
	}
	if (r->text_len > IMAP_SASL_MAX * 4 / 3 + 4) {
		ic_fail(ic, "GSSAPI: challenge too long");
		return;
	}
	chal = malloc(r->text_len / 4 * 3 + 3);
	if (chal == NULL) {
		ic_fail(ic, "out of memory");
		return;
	}
	n = util_b64_decode(r->text, r->text_len, chal, r->text_len / 4 * 3 + 3);
	if (n < 0) {
		free(chal);
		ic_fail(ic, "GSSAPI: challenge is not base64");
		return;
	}
	ic_gssapi_step(ic, chal, (size_t)n, NULL);
	free(chal);
}

static void
ic_auth_done(struct imap_conn *ic, const struct imap_resp *r)
{
	const struct imap_server_cfg *cfg = ic->srv->cfg;
	const char *mech = cfg->cred == IMAP_CRED_PASSWORD ? "PLAIN" : "GSSAPI";
	char text[200];
	char tlsdesc[128] = "no TLS";

	scrub_text(ic->fetch, cfg, r->text, r->text_len, text, sizeof(text));
	if (r->cond != IMAP_COND_OK) {
		log_warn("%s: AUTHENTICATE %s as %s%s%s refused: %s %s",
		    ic->log_id, mech, cfg->cred == IMAP_CRED_PASSWORD ?
		    cfg->user : "our Kerberos principal",
		    ic->authzid[0] ? " for " : "", ic->authzid,
		    r->cond == IMAP_COND_NO ? "NO" : "BAD", text);
		ic_fail(ic, "authentication refused: %s", text);
		return;
	}
	/* GSSAPI: an OK before our last step means the server never proved
	 * who it is (RFC 4752 3.1: mutual authentication, then the layer
	 * negotiation) */
	if (!ic->sasl_done) {
		ic_fail(ic, "%s: server said OK before the exchange ended", mech);
		return;
	}
	if (ic->gss != NULL)
		gssapi_client_free(&ic->gss);
	if (r->code == IMAP_CODE_CAPABILITY)
		ic->caps = r->caps;
	if (ic->tls)
		tls_describe(conn_ssl(ic->conn), tlsdesc, sizeof(tlsdesc));
	log_info("%s: connected to %s (%s), authenticated with %s as %s%s%s",
	    ic->log_id, cfg->addr_text, tlsdesc, mech,
	    cfg->cred == IMAP_CRED_PASSWORD ? cfg->user : "our principal",
	    ic->authzid[0] ? " for " : "", ic->authzid);
	ic_ready(ic);
}

/* ---- fetches on a connection ---- */

static void
fetch_begin(struct imap_conn *ic)
{
	struct imap_fetch *f = ic->fetch;
	struct imap_server *srv = ic->srv;

	ic->served++;
	ic->lit_ours = ic->resp_ours = ic->heard = 0;
	f->item = ITEM_NONE;
	f->server_text[0] = '\0';
	imap_resp_set_max_literal(ic->parser, f->max_size);
	conn_set_timeout(ic->conn, srv->fetch_timeout);
	conn_pause_read(ic->conn, f->paused);
	if (f->mode == IMAP_MODE_URLAUTH) {
		ic_send_astring(ic, "URLFETCH", f->url, f->url_len, "", IC_FETCH);
		return;
	}
	ic->uidvalidity = 0;
	ic_send_astring(ic, "EXAMINE", f->mailbox, strlen(f->mailbox), "",
	    IC_EXAMINE);
}

static void
fetch_send_uid_fetch(struct imap_conn *ic)
{
	struct imap_fetch *f = ic->fetch;
	char partial[32] = "";

	if (f->has_partial)
		snprintf(partial, sizeof(partial), "<%u.%u>", f->partial_offset,
		    f->partial_length != 0 ? f->partial_length : UINT32_MAX);
	ic_send(ic, "UID FETCH %u (UID BODY.PEEK[%s]%s)", f->uid, f->section,
	    partial);
	ic->state = IC_FETCH;
}

/* The tagged response that ends our command (the tag was checked). */
static void
ic_tagged(struct imap_conn *ic, const struct imap_resp *r)
{
	struct imap_fetch *f = ic->fetch;
	const char *cond = r->cond == IMAP_COND_OK ? "OK" :
	    r->cond == IMAP_COND_NO ? "NO" : "BAD";
	char text[200];

	switch (ic->state) {
	case IC_CAPABILITY:
		if (r->cond != IMAP_COND_OK) {
			ic_fail(ic, "CAPABILITY answered %s", cond);
			return;
		}
		if (r->code == IMAP_CODE_CAPABILITY)
			ic->caps = r->caps;
		ic->caps_known = 1;
		ic_after_caps(ic);
		return;
	case IC_STARTTLS:
		if (r->cond != IMAP_COND_OK) {
			ic_fail(ic, "STARTTLS answered %s", cond);
			return;
		}
		ic_start_tls(ic);
		return;
	case IC_AUTH:
		ic_auth_done(ic, r);
		return;
	case IC_CONT:
	case IC_EXAMINE:
	case IC_FETCH:
		break;
	default:
		ic_fail(ic, "unexpected tagged response in %s",
		    ic_state_names[ic->state]);
		return;
	}
	if (f == NULL) {
		/* the fetch was cancelled before its command ended */
		ic_fail(ic, "command of a cancelled fetch");
		return;
	}
	scrub_text(f, ic->srv->cfg, r->text, r->text_len, text, sizeof(text));
	if (r->cond != IMAP_COND_OK) {
		/* NO: no such message/mailbox, URL refused, not permitted;
		 * BAD: the server will not take this command as it is.
		 * Neither gets better by retrying. */
		fetch_complete(f, IMAP_FETCH_NODATA, 1, "%s %s %s",
		    f->mode == IMAP_MODE_URLAUTH ? "URLFETCH" :
		    ic->state == IC_EXAMINE ? "EXAMINE" : "UID FETCH", cond,
		    f->server_text[0] ? f->server_text : text);
		return;
	}
	if (ic->state == IC_CONT) {
		ic_fail(ic, "OK where a continuation was expected");
		return;
	}
	if (ic->state == IC_EXAMINE) {
		if (f->uidvalidity != 0 && ic->uidvalidity != f->uidvalidity) {
			fetch_complete(f, IMAP_FETCH_NODATA, 1,
			    "UIDVALIDITY is %u, the URL has %u", ic->uidvalidity,
			    f->uidvalidity);
			return;
		}
		fetch_send_uid_fetch(ic);
		return;
	}
	/* the end of URLFETCH / UID FETCH */
	if (f->item == ITEM_DATA)
		fetch_complete(f, IMAP_FETCH_OK, 1, "complete");
	else if (f->item == ITEM_NIL)
		fetch_complete(f, IMAP_FETCH_NODATA, 1, "%s returned NIL%s%s",
		    f->mode == IMAP_MODE_URLAUTH ? "URLFETCH" : "FETCH",
		    f->server_text[0] ? ": " : "", f->server_text);
	else
		fetch_complete(f, IMAP_FETCH_NODATA, 1, "%s",
		    f->mode == IMAP_MODE_URLAUTH ? "URLFETCH returned nothing" :
		    "no such message");
}

/* Every complete response.  -1 if the connection must not be touched. */
static int
ic_response(struct imap_conn *ic, const struct imap_resp *r)
{
	struct imap_fetch *f = ic->fetch;
	char text[200];
	int ours = ic->resp_ours;

	ic->resp_ours = 0;
	if (r->kind == IMAP_RESP_UNTAGGED && r->cond == IMAP_COND_BYE) {
		scrub_text(f, ic->srv->cfg, r->text, r->text_len, text,
		    sizeof(text));
		if (ic->state == IC_READY && f == NULL)
			log_info("%s: server said BYE: %s", ic->log_id, text);
		ic_fail(ic, "server said BYE: %s", text);
		return -1;
	}
	if (ic->state == IC_GREETING) {
		if (r->kind != IMAP_RESP_UNTAGGED || r->cond == IMAP_COND_NONE) {
			ic_fail(ic, "not an IMAP greeting");
			return -1;
		}
		if (r->cond == IMAP_COND_PREAUTH) {
			/* someone else's session: we authenticate ourselves */
			ic_fail(ic, "server greeted with PREAUTH");
			return -1;
		}
		if (r->cond != IMAP_COND_OK) {
			ic_fail(ic, "server greeting is not OK");
			return -1;
		}
		if (r->code == IMAP_CODE_CAPABILITY) {
			ic->caps = r->caps;
			ic->caps_known = 1;
		}
		ic_after_caps(ic);
		return ic->state == IC_DEAD ? -1 : 0;
	}
	if (r->kind == IMAP_RESP_CONTINUE) {
		if (ic->state == IC_AUTH) {
			ic_auth_continue(ic, r);
		} else if (ic->state == IC_CONT) {
			evbuffer_add_buffer(conn_output(ic->conn), ic->cont_out);
			conn_flush(ic->conn);
			ic->state = ic->after_cont;
		} else {
			ic_fail(ic, "unexpected continuation in %s",
			    ic_state_names[ic->state]);
		}
		return ic->state == IC_DEAD ? -1 : 0;
	}
	if (r->kind == IMAP_RESP_TAGGED) {
		if (ic->state == IC_READY || ic->state == IC_TLS ||
		    strcmp(r->tag, ic->tag) != 0) {
			ic_fail(ic, "tagged response to a command we did not send");
			return -1;
		}
		ic_tagged(ic, r);
		return ic->state == IC_DEAD ? -1 : 0;
	}
	/* untagged data and status */
	if (r->data == IMAP_DATA_CAPABILITY) {
		ic->caps = r->caps;
		ic->caps_known = 1;
	} else if (r->cond == IMAP_COND_OK && r->code == IMAP_CODE_CAPABILITY) {
		ic->caps = r->caps;
		ic->caps_known = 1;
	}
	if (ic->state == IC_EXAMINE && r->cond == IMAP_COND_OK &&
	    r->code == IMAP_CODE_UIDVALIDITY)
		ic->uidvalidity = r->code_number;
	if (f != NULL && (ic->state == IC_FETCH || ic->state == IC_EXAMINE) &&
	    r->cond == IMAP_COND_NO && f->server_text[0] == '\0')
		/* Dovecot explains a NIL in an untagged NO */
		scrub_text(f, ic->srv->cfg, r->text, r->text_len,
		    f->server_text, sizeof(f->server_text));
	if (ours && r->data == IMAP_DATA_FETCH && r->has_uid &&
	    r->uid != f->uid) {
		ic_fail(ic, "FETCH content came for UID %u, not %u", r->uid,
		    f->uid);
		return -1;
	}
	return 0;
}

/* A content item.  Ours or not, a literal is read to its end. */
static int
ic_item(struct imap_conn *ic, const struct imap_resp_item *it)
{
	struct imap_fetch *f = ic->fetch;
	int ours = 0;

	ic->lit_ours = 0;
	if (f != NULL && ic->state == IC_FETCH) {
		if (f->mode == IMAP_MODE_URLAUTH)
			/* one URL asked for: the server echoes it */
			ours = it->kind == IMAP_ITEM_URLFETCH;
		else
			/* one body part asked for, by UID: any content for
			 * our UID (checked again at the end of the response
			 * if the UID comes after the content) */
			ours = it->kind == IMAP_ITEM_FETCH_BODY &&
			    (!it->has_uid || it->uid == f->uid);
	}
	if (!ours)
		return 0;
	if (f->item != ITEM_NONE) {
		ic_fail(ic, "more than one content item for one fetch");
		return -1;
	}
	ic->resp_ours = 1;
	switch (it->value) {
	case IMAP_VALUE_NIL:
		f->item = ITEM_NIL;
		return 0;
	case IMAP_VALUE_STRING:
		f->item = ITEM_DATA;
		evbuffer_add(f->data, it->data, it->data_len);
		f->total += it->data_len;
		return fetch_deliver(f) < 0 ? -1 : 0;
	case IMAP_VALUE_LITERAL:
		f->item = ITEM_DATA;
		ic->lit_ours = 1;
		return 0;
	}
	return 0;
}

static void
ic_parse_error(struct imap_conn *ic)
{
	enum imap_resp_error e = imap_resp_error(ic->parser);

	if (e == IMAP_RESP_ERR_TOO_BIG && ic->fetch != NULL &&
	    ic->state == IC_FETCH) {
		/* announced, not read: the connection goes, unread */
		fetch_complete(ic->fetch, IMAP_FETCH_TOO_BIG, 0,
		    "content larger than %llu bytes announced",
		    (unsigned long long)ic->fetch->max_size);
		return;
	}
	ic_fail(ic, "%s", imap_resp_strerror(e));
}

/* Take what input there is, unless paused in a literal of ours. */
static void
ic_process(struct imap_conn *ic)
{
	struct evbuffer *in;

	while (ic->state != IC_DEAD && ic->state != IC_TLS &&
	    ic->state != IC_CONNECTING) {
		struct imap_fetch *f = ic->fetch;
		uint64_t rem = imap_resp_literal_remaining(ic->parser);
		struct evbuffer_iovec v;
		enum imap_resp_event ev;
		size_t used = 0;

		in = conn_input(ic->conn);
		if (rem > 0) {
			size_t n = evbuffer_get_length(in);

			if (ic->lit_ours && f != NULL && f->paused)
				return;
			if (n == 0)
				break;
			if (n > rem)
				n = (size_t)rem;
			imap_resp_literal_consumed(ic->parser, n);
			if (!ic->lit_ours || f == NULL) {
				evbuffer_drain(in, n);
				continue;
			}
			evbuffer_remove_buffer(in, f->data, n);
			f->total += n;
			f->lit_done = n == rem;
			if (fetch_deliver(f) < 0)
				return;
			continue;
		}
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
			break;
		ev = imap_resp_parse(ic->parser, v.iov_base, v.iov_len, &used);
		evbuffer_drain(in, used);
		if (ev != IMAP_RESP_NEED_MORE)
			ic->heard = 1;
		switch (ev) {
		case IMAP_RESP_NEED_MORE:
		case IMAP_RESP_LITERAL_BYTES:	/* not while rem == 0 */
			break;
		case IMAP_RESP_RESPONSE:
			if (ic_response(ic, imap_resp_get(ic->parser)) < 0)
				return;
			break;
		case IMAP_RESP_DATA:
			if (ic_item(ic, imap_resp_item(ic->parser)) < 0)
				return;
			break;
		case IMAP_RESP_ERROR:
			ic_parse_error(ic);
			return;
		}
	}
}

static void
ic_read_cb(void *arg)
{
	struct imap_conn *ic = arg;

	/* conn.c stops reading by itself when IMAP_MAX_INPUT is buffered */
	ic->in_cb++;
	ic_process(ic);
	ic->in_cb--;
	if (ic->free_pending && ic->in_cb == 0)
		ic_free(ic);
}

static void
ic_event_cb(void *arg, int what)
{
	struct imap_conn *ic = arg;
	const struct imap_server_cfg *cfg = ic->srv->cfg;

	ic->in_cb++;
	if (what & CONN_CONNECTED) {
		if (cfg->tls == IMAP_TLS_IMPLICIT) {
			ic_start_tls(ic);
		} else {
			ic->state = IC_GREETING;
			if (evbuffer_get_length(conn_input(ic->conn)) > 0)
				ic_process(ic);
		}
	} else if (what & CONN_TLS_READY) {
		ic->tls = 1;
		if (cfg->tls == IMAP_TLS_IMPLICIT) {
			ic->state = IC_GREETING;
		} else {
			/* RFC 3501 6.2.1: capabilities anew after STARTTLS */
			ic_send(ic, "CAPABILITY");
			ic->state = IC_CAPABILITY;
		}
	} else if (what & CONN_DEFERRED) {
		/* resumed: what was buffered while paused, then reading again
		 * (conn.c re-checks its input limit only here) */
		ic_process(ic);
		if (ic->state != IC_DEAD)
			conn_pause_read(ic->conn, ic->fetch != NULL &&
			    ic->fetch->paused);
	} else if (what & CONN_TIMEOUT) {
		if (ic->idle)
			ic_destroy(ic, "idle_timeout");
		else if (ic->state < IC_READY)
			ic_fail(ic, "timeout (connect_timeout %u s)",
			    ic->srv->connect_timeout);
		else
			ic_fail(ic, "timeout: nothing from the server for %u s "
			    "(fetch_timeout)", ic->srv->fetch_timeout);
	} else if (what & (CONN_EOF | CONN_ERROR)) {
		struct imap_fetch *f = ic->fetch;

		if (f != NULL && ic->state > IC_READY && ic->served > 1 &&
		    !ic->heard && !f->retried) {
			/* A pooled connection the server had closed (autologout,
			 * restart) before we saw it: not an answer to this
			 * fetch.  Its commands only read (URLFETCH, EXAMINE,
			 * BODY.PEEK), so it goes again, once, first in line. */
			ic->fetch = NULL;
			f->ic = NULL;
			f->retried = 1;
			TAILQ_INSERT_HEAD(&ic->srv->queue, f, qlink);
			f->queued = 1;
			ic->srv->nqueued++;
			log_info("%s: reused connection lost before any answer; "
			    "fetch %s goes again on another", ic->log_id, f->what);
			ic_destroy(ic, "lost while reused");
		} else if (ic->idle && (what & CONN_EOF))
			ic_destroy(ic, "closed by the server while idle");
		else if (ic->state == IC_TLS || (ic->tls && (what & CONN_ERROR)))
			ic_fail(ic, "TLS: %s", conn_tls_error(ic->conn));
		else if (what & CONN_EOF)
			ic_fail(ic, "connection closed by the server in %s",
			    ic_state_names[ic->state]);
		else
			ic_fail(ic, "%s: %s", ic->state == IC_CONNECTING ?
			    "connect" : "connection",
			    strerror(conn_errno(ic->conn)));
	}
	ic->in_cb--;
	if (ic->free_pending && ic->in_cb == 0)
		ic_free(ic);
}

/* Open a connection for authzid; NULL (with *why) if it cannot even start. */
static struct imap_conn *
ic_new(struct imap_server *srv, const char *authzid, const char **why)
{
	static const struct conn_cbs cbs = { ic_read_cb, ic_event_cb };
	struct imap_pool *pool = srv->pool;
	const struct imap_server_cfg *cfg = srv->cfg;
	struct imap_resp_limits lim = { IMAP_CLIENT_MAX_LINE,
	    IMAP_IDLE_MAX_LITERAL, 0 };
	struct imap_conn *ic = calloc(1, sizeof(*ic));
	struct timeval tv = { srv->connect_timeout, 0 };

	*why = "out of memory";
	if (ic == NULL)
		return NULL;
	ic->srv = srv;
	ic->id = ++pool->next_id;
	ic->opened_ms = util_now_ms();
	snprintf(ic->authzid, sizeof(ic->authzid), "%s", authzid);
	snprintf(ic->log_id, sizeof(ic->log_id), "imap %s#%llu", cfg->name,
	    (unsigned long long)ic->id);
	ic->parser = imap_resp_parser_new(&lim);
	ic->deadline = evtimer_new(pool->base, deadline_cb, ic);
	ic->cont_out = evbuffer_new();
	if (ic->parser == NULL || ic->deadline == NULL || ic->cont_out == NULL) {
		ic_free(ic);
		return NULL;
	}
	ic->conn = conn_connect(pool->base, (const struct sockaddr *)&cfg->addr,
	    cfg->addrlen, srv->connect_timeout, &cbs, ic);
	if (ic->conn == NULL) {
		*why = strerror(errno);
		ic_free(ic);
		return NULL;
	}
	conn_set_max_input(ic->conn, IMAP_MAX_INPUT);
	/* IMAP servers (Cyrus) do not all set TCP_NODELAY: their tagged OK,
	 * a small last segment, would wait for our delayed ACK */
	conn_set_quickack(ic->conn, 1);
	evtimer_add(ic->deadline, &tv);
	ic->state = IC_CONNECTING;
	TAILQ_INSERT_TAIL(&srv->conns, ic, link);
	srv->nconns++;
	pool->connections_opened++;
	log_debug("%s: connecting to %s", ic->log_id, cfg->addr_text);
	return ic;
}

static struct imap_conn *
find_idle(struct imap_server *srv, const char *authzid)
{
	struct imap_conn *ic;

	TAILQ_FOREACH(ic, &srv->conns, link)
		if (ic->idle && (authzid == NULL ||
		    strcmp(ic->authzid, authzid) == 0))
			return ic;
	return NULL;
}

/*
 * Hand connections to queued fetches, oldest first: an idle one for the
 * same identity, else a new one while under max_conns, else a new one in
 * place of an idle one for another identity; else the queue waits for a
 * connection to come back or go away.
 */
static void
server_kick(struct imap_server *srv)
{
	struct imap_fetch *f;

	if (srv->kicking)
		return;
	srv->kicking = 1;
	while ((f = TAILQ_FIRST(&srv->queue)) != NULL) {
		struct imap_conn *ic = find_idle(srv, f->authzid);
		const char *why;

		if (ic == NULL && srv->nconns >= srv->max_conns) {
			struct imap_conn *other = find_idle(srv, NULL);

			if (other == NULL)
				break;
			ic_destroy(other, "room for another identity");
		}
		fetch_dequeue(f);
		if (ic != NULL) {
			srv->nidle--;
			ic->idle = 0;
			ic->fetch = f;
			f->ic = ic;
			fetch_begin(ic);
			continue;
		}
		ic = ic_new(srv, f->authzid, &why);
		if (ic == NULL) {
			fetch_complete(f, IMAP_FETCH_UNAVAILABLE, 0,
			    "cannot connect to %s: %s", srv->cfg->addr_text, why);
			continue;
		}
		ic->fetch = f;
		f->ic = ic;
	}
	srv->kicking = 0;
}

/* ---- the API ---- */

struct imap_pool *
imap_pool_new(struct event_base *base, struct imap_server_cfg *servers,
	      size_t count)
{
	struct imap_pool *pool = calloc(1, sizeof(*pool));
	size_t i;

	if (pool == NULL)
		return NULL;
	pool->base = base;
	pool->count = count;
	pool->servers = calloc(count ? count : 1, sizeof(*pool->servers));
	if (pool->servers == NULL) {
		free(pool);
		return NULL;
	}
	for (i = 0; i < count; i++) {
		struct imap_server *srv = &pool->servers[i];
		struct imap_server_cfg *cfg = &servers[i];

		srv->pool = pool;
		srv->cfg = cfg;
		srv->loopback = is_loopback((const struct sockaddr *)&cfg->addr);
		srv->max_idle = cfg->max_idle_conns ? cfg->max_idle_conns :
		    DEF_MAX_IDLE;
		srv->max_conns = cfg->max_conns ? cfg->max_conns : DEF_MAX_CONNS;
		srv->connect_timeout = cfg->connect_timeout ?
		    cfg->connect_timeout : DEF_CONNECT_TIMEOUT;
		srv->fetch_timeout = cfg->fetch_timeout ? cfg->fetch_timeout :
		    DEF_FETCH_TIMEOUT;
		srv->idle_timeout = cfg->idle_timeout ? cfg->idle_timeout :
		    DEF_IDLE_TIMEOUT;
		TAILQ_INIT(&srv->conns);
		TAILQ_INIT(&srv->queue);
	}
	return pool;
}

void
imap_pool_free(struct imap_pool **poolp)
{
	struct imap_pool *pool = *poolp;
	size_t i;

	if (pool == NULL)
		return;
	*poolp = NULL;
	for (i = 0; i < pool->count; i++) {
		struct imap_server *srv = &pool->servers[i];
		struct imap_conn *ic;
		struct imap_fetch *f;

		/* fetches should have been cancelled: drop any left, quietly */
		while ((f = TAILQ_FIRST(&srv->queue)) != NULL) {
			fetch_dequeue(f);
			fetch_free(f);
		}
		srv->kicking = 1;	/* nothing new while closing */
		while ((ic = TAILQ_FIRST(&srv->conns)) != NULL) {
			if (ic->fetch != NULL) {
				f = ic->fetch;
				ic->fetch = NULL;
				f->ic = NULL;
				if (!f->done)
					fetch_free(f);
			}
			ic_destroy(ic, "shutting down");
		}
	}
	free(pool->servers);
	free(pool);
}

void
imap_pool_stats(const struct imap_pool *pool, struct imap_pool_stats *st)
{
	size_t i;

	memset(st, 0, sizeof(*st));
	st->connections_opened = pool->connections_opened;
	st->fetches = pool->fetches;
	for (i = 0; i < pool->count; i++) {
		st->idle += pool->servers[i].nidle;
		st->busy += pool->servers[i].nconns - pool->servers[i].nidle;
		st->queued += pool->servers[i].nqueued;
	}
}

/* Where the URLAUTH token starts: after ";URLAUTH=access:mech:". */
static void
find_token(struct imap_fetch *f)
{
	const char *u = f->url, *e = f->url + f->url_len, *p;
	int colons = 0;

	for (p = u; p + 9 <= e; p++)
		if (util_strncaseeq(p, ";urlauth=", 9))
			break;
	if (p + 9 > e)
		return;
	for (p += 9; p < e && colons < 2; p++)
		if (*p == ':')
			colons++;
	if (colons == 2 && p < e) {
		f->token_off = (size_t)(p - u);
		f->token_len = (size_t)(e - p);
	}
}

static int
printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
			return 0;
	return 1;
}

/* BODY.PEEK[<section>]: what RFC 3501 section-spec can hold, nothing that
 * ends the brackets or starts a literal. */
static int
section_ok(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f ||
		    *s == '[' || *s == ']' || *s == '{' || *s == '}' ||
		    *s == '\\')
			return 0;
	return 1;
}

struct imap_fetch *
imap_fetch_start(struct imap_pool *pool, size_t server_index,
		 const struct imap_fetch_req *req,
		 const struct imap_fetch_cbs *cbs, void *ctx)
{
	struct imap_fetch *f = calloc(1, sizeof(*f));
	struct imap_server *srv;
	const struct imap_server_cfg *cfg;
	const char *bad = NULL;
	enum imap_fetch_result bad_result = IMAP_FETCH_NODATA;

	if (f == NULL)
		return NULL;
	f->pool = pool;
	f->cbs = *cbs;
	f->ctx = ctx;
	f->mode = req->mode;
	f->max_size = req->max_size;
	f->start_ms = util_now_ms();
	f->data = evbuffer_new();
	f->done_ev = event_new(pool->base, -1, 0, fetch_done_cb, f);
	if (f->data == NULL || f->done_ev == NULL) {
		fetch_free(f);
		return NULL;
	}
	pool->fetches++;
	if (server_index >= pool->count) {
		/* no server to log against: report from the loop */
		f->done = 1;
		f->result = IMAP_FETCH_UNAVAILABLE;
		snprintf(f->reason, sizeof(f->reason), "no such IMAP server");
		event_active(f->done_ev, EV_TIMEOUT, 1);
		return f;
	}
	srv = &pool->servers[server_index];
	cfg = srv->cfg;
	f->srv = srv;

	if (req->mode == IMAP_MODE_URLAUTH) {
		if (req->url == NULL || req->url_len == 0 ||
		    req->url_len > IMAPURL_MAX_LEN)
			bad = "no URL, or a URL too long";
		else if ((f->url = malloc(req->url_len + 1)) == NULL) {
			fetch_free(f);
			return NULL;
		} else {
			memcpy(f->url, req->url, req->url_len);
			f->url[req->url_len] = '\0';
			f->url_len = req->url_len;
			find_token(f);
			imapurl_redact(f->url, f->url_len, f->what,
			    sizeof(f->what));
		}
	} else {
		char mb[120];

		if (req->authzid == NULL || req->authzid[0] == '\0' ||
		    strlen(req->authzid) >= sizeof(f->authzid) ||
		    !printable(req->authzid))
			bad = "proxy authorization needs a user";
		else if (req->mailbox == NULL || req->mailbox[0] == '\0' ||
		    strlen(req->mailbox) > 1024 || req->uid == 0)
			bad = "no mailbox or no UID";
		else if (req->section != NULL &&
		    (strlen(req->section) >= sizeof(f->section) ||
		    !section_ok(req->section)))
			bad = "section not acceptable";
		else if ((f->mailbox = strdup(req->mailbox)) == NULL) {
			fetch_free(f);
			return NULL;
		} else {
			snprintf(f->authzid, sizeof(f->authzid), "%s", req->authzid);
			snprintf(f->section, sizeof(f->section), "%s",
			    req->section != NULL ? req->section : "");
			f->uidvalidity = req->uidvalidity;
			f->uid = req->uid;
			f->has_partial = req->has_partial;
			f->partial_offset = req->partial_offset;
			f->partial_length = req->partial_length;
			log_sanitize(mb, sizeof(mb), f->mailbox,
			    strlen(f->mailbox));
			snprintf(f->what, sizeof(f->what),
			    "%s UID %u [%.60s] for %.100s", mb, f->uid, f->section,
			    f->authzid);
		}
	}
	if (bad == NULL && req->require_tls && cfg->tls == IMAP_TLS_NONE) {
		bad = "TLS required, and the server is configured without";
		bad_result = IMAP_FETCH_UNAVAILABLE;
	}
	if (bad == NULL && cfg->cred == IMAP_CRED_PASSWORD &&
	    cfg->tls == IMAP_TLS_NONE && !srv->loopback) {
		bad = "not sending the password without TLS";
		bad_result = IMAP_FETCH_UNAVAILABLE;
	}
	if (bad != NULL) {
		if (f->what[0] == '\0')
			snprintf(f->what, sizeof(f->what), "(invalid request)");
		fetch_complete(f, bad_result, 0, "%s", bad);
		return f;
	}
	TAILQ_INSERT_TAIL(&srv->queue, f, qlink);
	f->queued = 1;
	srv->nqueued++;
	server_kick(srv);
	return f;
}

int
imap_fetch_content_done(const struct imap_fetch *f)
{
	return f->lit_done;
}

void
imap_fetch_pause(struct imap_fetch *f, int paused)
{
	struct imap_conn *ic = f->ic;

	paused = paused != 0;
	if (f->paused == paused)
		return;
	f->paused = paused;
	if (ic == NULL || ic->state == IC_DEAD || ic->state < IC_READY)
		return;
	if (paused) {
		conn_pause_read(ic->conn, 1);
		return;
	}
	conn_pause_read(ic->conn, 0);
	/* input may be waiting in the buffer: take it from the loop */
	conn_defer(ic->conn);
}

void
imap_fetch_cancel(struct imap_fetch **fp)
{
	struct imap_fetch *f = *fp;
	struct imap_conn *ic;

	if (f == NULL)
		return;
	*fp = NULL;
	if (f->cancelled)
		return;
	f->cancelled = 1;
	ic = f->ic;
	fetch_dequeue(f);
	if (ic != NULL) {
		f->ic = NULL;
		ic->fetch = NULL;
		ic->lit_ours = 0;
		if (ic->state >= IC_READY) {
			/* a command of ours is in flight (maybe in its
			 * literal): the connection cannot be trusted to be
			 * in step any more */
			log_info("%s: fetch %s cancelled after %llu bytes",
			    ic->log_id, f->what, (unsigned long long)f->total);
			ic_destroy(ic, "fetch cancelled mid-command");
		}
		/* else: still being set up; it goes to the pool when ready */
	}
	if (f->done)
		event_del(f->done_ev);
	if (f->in_cb == 0)
		fetch_free(f);
	/* else: inside on_data; freed when it returns */
}
