/*
 * test_imap_client.c - the asynchronous IMAP client (trust/imap_client.c)
 * on a real event loop, against scripted fake IMAP servers listening on
 * 127.0.0.1 in the same loop.
 *
 * Each fake connection follows a script: send this, expect that line from
 * the client ("%T" takes the client's tag and puts it back in what is sent
 * next; "%*" at the end accepts any rest), wait, drip bytes slowly, switch
 * to TLS, close, or hold the connection open doing nothing.  The server's
 * transcript, connection count and the closes it saw are checked along
 * with the fetch's results.
 *
 * GSSAPI: krb_creds.c (the real mechanism) is built in another branch;
 * this file defines gssapi_client_new/step/free itself as a scripted fake
 * mechanism (tokens "tok1", an empty answer to "chal1", then the RFC 4752
 * layer choice with the authzid), so the AUTHENTICATE GSSAPI driving is
 * tested here and the real Kerberos exchange in the integration suite.
 * Because these definitions come first on the link line, libmsa.a's
 * krb_creds.o is not pulled in even once it exists.
 *
 * Every log line of the client goes to a scratch file; the last test checks
 * that neither the URLAUTH token nor the password ever reached it.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "conf.h"
#include "imap_client.h"
#include "krb_creds.h"
#include "log.h"
#include "tls.h"
#include "util.h"

#define N_ELEMENTS(a)	(sizeof(a) / sizeof((a)[0]))

/* secrets that must never be logged */
#define PASSWORD	"Pw-8f2d1e-SeCrEt"
#define TOKEN		"00a70f6d5b46e4be69bfa31cd8837904045cf1b9bf"
#define CYRUS_URL \
	"imap://bob@localhost/INBOX;UIDVALIDITY=1795435218/;UID=2;" \
	"URLAUTH=submit+bob:internal:" TOKEN
#define DOVECOT_URL \
	"imap://alice@localhost:10143/INBOX;UIDVALIDITY=1795435210/;UID=26;" \
	"URLAUTH=submit+alice:internal:" TOKEN
#define MSG \
	"From: <bob@lab.test>\r\nSubject: cyrus\r\n\r\nHello from bob,\r\n" \
	"line two.\r\n.\r\nend\r\n"
#define CYRUS_GREETING \
	"* OK [CAPABILITY IMAP4rev1 LITERAL+ ID ENABLE STARTTLS AUTH=PLAIN " \
	"AUTH=LOGIN AUTH=GSSAPI SASL-IR] localhost Cyrus IMAP " \
	"3.6.1-Debian-3.6.1-4+deb12u5 server ready\r\n"
#define CYRUS_LOGGED_IN \
	"%T OK [CAPABILITY IMAP4rev1 LITERAL+ ID ENABLE ACL BINARY URLAUTH " \
	"URLAUTH=BINARY IDLE] User logged in SESSIONID=<lab-cyrus-1>\r\n"

static char log_path[] = "/tmp/test_imap_client_log.XXXXXX";

/* ------------------------------------------------------------------ */
/* The fake GSSAPI mechanism */

struct gssapi_client {
	int step;
	char authzid[256];
};

static int fake_gss_fail_new;		/* gssapi_client_new fails */
static char fake_gss_service[64], fake_gss_host[256];
static int fake_gss_freed, fake_gss_created;

struct gssapi_client *
gssapi_client_new(struct krb_creds *c, const char *service, const char *host,
		  const char *authzid, const char **error_r)
{
	struct gssapi_client *g;

	(void)c;
	if (fake_gss_fail_new) {
		*error_r = "no credentials (fake)";
		return NULL;
	}
	g = calloc(1, sizeof(*g));
	assert_non_null(g);
	snprintf(fake_gss_service, sizeof(fake_gss_service), "%s", service);
	snprintf(fake_gss_host, sizeof(fake_gss_host), "%s", host);
	snprintf(g->authzid, sizeof(g->authzid), "%s", authzid);
	fake_gss_created++;
	return g;
}

enum gssapi_step
gssapi_client_step(struct gssapi_client *g, const unsigned char *in,
		   size_t inlen, unsigned char **out, size_t *outlen,
		   const char **error_r)
{
	switch (g->step++) {
	case 0:
		if (in != NULL && inlen != 0)
			break;
		*out = (unsigned char *)strdup("tok1");
		*outlen = 4;
		return GSSAPI_CONTINUE;
	case 1:
		if (inlen != 5 || memcmp(in, "chal1", 5) != 0)
			break;
		*out = malloc(1);
		*outlen = 0;
		return GSSAPI_CONTINUE;
	case 2: {
		size_t a = strlen(g->authzid);

		/* the 4-octet layer offer: "no layer" must be in it */
		if (inlen != 4 || !(in[0] & 1))
			break;
		*out = malloc(4 + a);
		memcpy(*out, "\x01\x00\x00\x00", 4);
		memcpy(*out + 4, g->authzid, a);
		*outlen = 4 + a;
		return GSSAPI_DONE;
	}
	default:
		break;
	}
	*error_r = "unexpected challenge (fake)";
	return GSSAPI_FAIL;
}

void
gssapi_client_free(struct gssapi_client **gp)
{
	if (*gp != NULL)
		fake_gss_freed++;
	free(*gp);
	*gp = NULL;
}

/* ------------------------------------------------------------------ */
/* The scripted fake server */

enum op {
	OP_END = 0,	/* script done: record what else comes, never fail */
	OP_SEND,	/* text, "%T" = the last tag */
	OP_SENDN,	/* n bytes of "abc...z" */
	OP_EXPECT,	/* one line (without CRLF) matching the pattern */
	OP_CLOSE,
	OP_WAIT,	/* n ms */
	OP_DRIP,	/* text, one byte every n ms */
	OP_TLS,		/* become the TLS server side now */
	OP_HOLD,	/* do nothing more */
};

struct step {
	enum op op;
	const char *s;
	size_t n;
};

#define SEND(x)		{ OP_SEND, (x), 0 }
#define SENDN(k)	{ OP_SENDN, NULL, (k) }
#define EXPECT(x)	{ OP_EXPECT, (x), 0 }
#define CLOSE		{ OP_CLOSE, NULL, 0 }
#define WAIT(ms)	{ OP_WAIT, NULL, (ms) }
#define DRIP(x, ms)	{ OP_DRIP, (x), (ms) }
#define TLS_NOW		{ OP_TLS, NULL, 0 }
#define HOLD		{ OP_HOLD, NULL, 0 }
#define END		{ OP_END, NULL, 0 }

struct fake;

struct fconn {
	struct fake *fs;
	int idx;
	struct bufferevent *bev;
	const struct step *s;
	size_t i;
	char tag[64];
	struct event *timer;
	size_t drip_pos;
	int closed, eof, done;
};

struct fake {
	struct event_base *base;
	evutil_socket_t lfd;
	struct event *lev;
	int port;
	const struct step *const *scripts;
	size_t nscripts;
	size_t accepted;
	int implicit_tls;
	SSL_CTX *ssl_ctx;
	int errors;
	char errmsg[1024];
	char transcript[65536];
	size_t tlen;
	unsigned auth_lines, eofs;
	struct fconn *conns[16];
};

static void
fake_note(struct fake *fs, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
fake_note(struct fake *fs, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (fs->tlen >= sizeof(fs->transcript) - 1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(fs->transcript + fs->tlen, sizeof(fs->transcript) -
	    fs->tlen, fmt, ap);
	va_end(ap);
	if (n > 0)
		fs->tlen += (size_t)n;
	if (fs->tlen >= sizeof(fs->transcript))
		fs->tlen = sizeof(fs->transcript) - 1;
}

static int
match(const char *pat, const char *line, char *tag, size_t tagsize)
{
	while (*pat != '\0') {
		if (pat[0] == '%' && pat[1] == 'T') {
			size_t n = strcspn(line, " ");

			if (n == 0 || n >= tagsize)
				return 0;
			memcpy(tag, line, n);
			tag[n] = '\0';
			line += n;
			pat += 2;
		} else if (pat[0] == '%' && pat[1] == '*') {
			return 1;
		} else {
			if (*pat != *line)
				return 0;
			pat++;
			line++;
		}
	}
	return *line == '\0';
}

static void
fc_write_subst(struct fconn *fc, const char *s)
{
	const char *p;

	while ((p = strstr(s, "%T")) != NULL) {
		bufferevent_write(fc->bev, s, (size_t)(p - s));
		bufferevent_write(fc->bev, fc->tag, strlen(fc->tag));
		s = p + 2;
	}
	bufferevent_write(fc->bev, s, strlen(s));
}

static void fc_run(struct fconn *fc);
static void fc_set_cbs(struct fconn *fc);

static void
fc_close(struct fconn *fc)
{
	if (fc->bev != NULL) {
		bufferevent_free(fc->bev);
		fc->bev = NULL;
	}
	fc->closed = 1;
}

static void
fc_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	fc_run(arg);
}

/* Lines that come after the script ended (LOGOUT) are only recorded. */
static void
fc_record_rest(struct fconn *fc)
{
	char *line;
	size_t len;

	while (fc->bev != NULL && (line = evbuffer_readln(
	    bufferevent_get_input(fc->bev), &len, EVBUFFER_EOL_CRLF_STRICT)) != NULL) {
		fake_note(fc->fs, "C%d: %s\n", fc->idx, line);
		free(line);
	}
}

static void
fc_run(struct fconn *fc)
{
	struct fake *fs = fc->fs;

	while (fc->bev != NULL) {
		const struct step *st = &fc->s[fc->i];

		switch (st->op) {
		case OP_END:
			fc->done = 1;
			fc_record_rest(fc);
			return;
		case OP_HOLD:
			fc_record_rest(fc);
			return;
		case OP_SEND:
			fc_write_subst(fc, st->s);
			fc->i++;
			break;
		case OP_SENDN: {
			char buf[4096];
			size_t k, left = st->n;

			for (k = 0; k < sizeof(buf); k++)
				buf[k] = (char)('a' + k % 26);
			while (left > 0) {
				size_t n = left > sizeof(buf) ? sizeof(buf) : left;

				bufferevent_write(fc->bev, buf, n);
				left -= n;
			}
			fc->i++;
			break;
		}
		case OP_EXPECT: {
			size_t len;
			char *line = evbuffer_readln(bufferevent_get_input(fc->bev),
			    &len, EVBUFFER_EOL_CRLF_STRICT);

			if (line == NULL)
				return;
			fake_note(fs, "C%d: %s\n", fc->idx, line);
			if (strstr(line, "AUTHENTICATE") != NULL)
				fs->auth_lines++;
			if (!match(st->s, line, fc->tag, sizeof(fc->tag))) {
				fs->errors++;
				snprintf(fs->errmsg, sizeof(fs->errmsg),
				    "conn %d step %zu: expected \"%s\", got \"%s\"",
				    fc->idx, fc->i, st->s, line);
				free(line);
				fc_close(fc);
				return;
			}
			free(line);
			fc->i++;
			break;
		}
		case OP_CLOSE:		/* stays at this step: the last one */
			fc_close(fc);
			return;
		case OP_WAIT: {
			struct timeval tv = { (time_t)(st->n / 1000),
			    (suseconds_t)(st->n % 1000) * 1000 };

			fc->i++;
			evtimer_add(fc->timer, &tv);
			return;
		}
		case OP_DRIP: {
			struct timeval tv = { (time_t)(st->n / 1000),
			    (suseconds_t)(st->n % 1000) * 1000 };

			if (st->s[fc->drip_pos] == '\0') {
				fc->drip_pos = 0;
				fc->i++;
				break;
			}
			bufferevent_write(fc->bev, st->s + fc->drip_pos, 1);
			fc->drip_pos++;
			evtimer_add(fc->timer, &tv);
			return;
		}
		case OP_TLS: {
			SSL *ssl = SSL_new(fs->ssl_ctx);
			struct bufferevent *f;

			assert_non_null(ssl);
			/* cleartext after the command is not protected */
			evbuffer_drain(bufferevent_get_input(fc->bev),
			    evbuffer_get_length(bufferevent_get_input(fc->bev)));
			f = bufferevent_openssl_filter_new(fs->base, fc->bev, ssl,
			    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
			assert_non_null(f);
			fc->bev = f;
			fc->i++;
			fc_set_cbs(fc);
			break;
		}
		}
	}
}

static void
fc_read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	fc_run(arg);
}

static void
fc_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct fconn *fc = arg;

	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		fc_record_rest(fc);
		fc->eof = 1;
		fc->fs->eofs++;
		fake_note(fc->fs, "C%d: <closed>\n", fc->idx);
		fc_close(fc);
	}
}

static void
fc_set_cbs(struct fconn *fc)
{
	bufferevent_setcb(fc->bev, fc_read_cb, NULL, fc_event_cb, fc);
	bufferevent_enable(fc->bev, EV_READ | EV_WRITE);
}

static void
fake_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct fake *fs = arg;
	struct fconn *fc;
	evutil_socket_t fd;

	(void)what;
	fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		return;
	evutil_make_socket_nonblocking(fd);
	if (fs->accepted >= fs->nscripts || fs->accepted >= N_ELEMENTS(fs->conns)) {
		fs->errors++;
		snprintf(fs->errmsg, sizeof(fs->errmsg),
		    "connection %zu: no script for it", fs->accepted);
		fs->accepted++;
		close(fd);
		return;
	}
	fc = calloc(1, sizeof(*fc));
	assert_non_null(fc);
	fc->fs = fs;
	fc->idx = (int)fs->accepted;
	fc->s = fs->scripts[fs->accepted];
	fc->timer = evtimer_new(fs->base, fc_timer_cb, fc);
	fs->conns[fs->accepted++] = fc;
	if (fs->implicit_tls) {
		SSL *ssl = SSL_new(fs->ssl_ctx);

		fc->bev = bufferevent_openssl_socket_new(fs->base, fd, ssl,
		    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	} else {
		fc->bev = bufferevent_socket_new(fs->base, fd,
		    BEV_OPT_CLOSE_ON_FREE);
	}
	assert_non_null(fc->bev);
	fc_set_cbs(fc);
	fc_run(fc);
}

static struct fake *
fake_new(struct event_base *base, const struct step *const *scripts,
	 size_t nscripts)
{
	struct fake *fs = calloc(1, sizeof(*fs));
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int one = 1;

	assert_non_null(fs);
	fs->base = base;
	fs->scripts = scripts;
	fs->nscripts = nscripts;
	fs->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fs->lfd >= 0);
	setsockopt(fs->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fs->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fs->lfd, 16), 0);
	assert_int_equal(getsockname(fs->lfd, (struct sockaddr *)&sin, &len), 0);
	fs->port = ntohs(sin.sin_port);
	evutil_make_socket_nonblocking(fs->lfd);
	fs->lev = event_new(base, fs->lfd, EV_READ | EV_PERSIST, fake_accept_cb, fs);
	event_add(fs->lev, NULL);
	return fs;
}

static void
fake_free(struct fake *fs)
{
	size_t i;

	for (i = 0; i < N_ELEMENTS(fs->conns); i++) {
		struct fconn *fc = fs->conns[i];

		if (fc == NULL)
			continue;
		fc_close(fc);
		event_free(fc->timer);
		free(fc);
	}
	event_free(fs->lev);
	close(fs->lfd);
	free(fs);
}

/* No mismatch, and every connection reached the end of its script, a
 * step where it stops on purpose, or was closed by the client where that
 * is allowed. */
static void
fake_check(struct fake *fs)
{
	size_t i;

	if (fs->errors != 0) {
		print_error("fake server: %s\ntranscript:\n%s\n", fs->errmsg,
		    fs->transcript);
		fail();
	}
	for (i = 0; i < fs->accepted && i < N_ELEMENTS(fs->conns); i++) {
		struct fconn *fc = fs->conns[i];
		enum op at = fc->s[fc->i].op;

		/* stopped early: only where the client may hang up (not
		 * while a command of it is expected) */
		if (!fc->done && at != OP_HOLD && at != OP_END &&
		    at != OP_CLOSE && !(fc->eof && at != OP_EXPECT)) {
			print_error("fake server: connection %zu stopped at step "
			    "%zu\ntranscript:\n%s\n", i, fc->i, fs->transcript);
			fail();
		}
	}
}

/* ------------------------------------------------------------------ */
/* The client side */

struct res {
	int done;
	enum imap_fetch_result result;
	char reason[400];
	uint64_t total;
	struct evbuffer *data;
	unsigned on_data_calls;
	struct imap_fetch *f;
	int cancel_in_data;		/* cancel at the first on_data */
	int pause_in_data;		/* pause at the first on_data */
	int order;			/* when on_done came (1, 2, ...) */
};

static int done_counter;

static void
on_data(void *ctx, struct evbuffer *buf)
{
	struct res *r = ctx;

	assert_false(r->done);
	assert_true(evbuffer_get_length(buf) > 0);
	r->on_data_calls++;
	evbuffer_add_buffer(r->data, buf);
	if (r->cancel_in_data && r->f != NULL) {
		imap_fetch_cancel(&r->f);
		assert_null(r->f);
	}
	if (r->pause_in_data == 1 && r->f != NULL) {
		imap_fetch_pause(r->f, 1);
		r->pause_in_data = 2;
	}
}

static void
on_done(void *ctx, enum imap_fetch_result result, const char *reason,
	uint64_t total)
{
	struct res *r = ctx;

	assert_false(r->done);
	r->done = 1;
	r->order = ++done_counter;
	r->result = result;
	snprintf(r->reason, sizeof(r->reason), "%s", reason);
	r->total = total;
	r->f = NULL;
	assert_int_equal(total, evbuffer_get_length(r->data));
}

static const struct imap_fetch_cbs cbs = { on_data, on_done };

static void
res_init(struct res *r)
{
	memset(r, 0, sizeof(*r));
	r->data = evbuffer_new();
	assert_non_null(r->data);
}

static void
res_free(struct res *r)
{
	evbuffer_free(r->data);
	r->data = NULL;
}

static int
res_data_is(struct res *r, const char *s, size_t len)
{
	size_t n = evbuffer_get_length(r->data);

	return n == len && memcmp(evbuffer_pullup(r->data, -1), s, len) == 0;
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(int *)arg = 1;
}

/* Run the loop until *flag is set (flag NULL: for ms), or ms passed.
 * Returns the milliseconds it took. */
static uint64_t
run_until(struct event_base *base, const int *flag, unsigned ms)
{
	int timeout = 0;
	struct event *t = evtimer_new(base, stop_cb, &timeout);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	uint64_t start = util_now_ms();

	evtimer_add(t, &tv);
	while (!timeout && (flag == NULL || !*flag))
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
	return util_now_ms() - start;
}

static void
cfg_init(struct imap_server_cfg *c, int port, enum imap_cred_kind cred,
	 enum imap_tls_mode tls)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&c->addr;

	memset(c, 0, sizeof(*c));
	snprintf(c->name, sizeof(c->name), "fake");
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin->sin_port = htons((uint16_t)port);
	c->addrlen = sizeof(*sin);
	snprintf(c->addr_text, sizeof(c->addr_text), "127.0.0.1:%d", port);
	c->tls = tls;
	c->cred = cred;
	snprintf(c->service_host, sizeof(c->service_host), "localhost");
	snprintf(c->user, sizeof(c->user), "submit");
	snprintf(c->password, sizeof(c->password), "%s", PASSWORD);
	c->mode = IMAP_MODE_URLAUTH;
	c->max_idle_conns = 4;
	c->max_conns = 8;
	c->connect_timeout = 3;
	c->fetch_timeout = 3;
	c->idle_timeout = 10;
}

static void
req_url(struct imap_fetch_req *q, const char *url, uint64_t max_size)
{
	memset(q, 0, sizeof(*q));
	q->mode = IMAP_MODE_URLAUTH;
	q->url = url;
	q->url_len = strlen(url);
	q->max_size = max_size;
}

static void
req_proxy(struct imap_fetch_req *q, const char *user, const char *mailbox,
	  uint32_t uidvalidity, uint32_t uid, const char *section)
{
	memset(q, 0, sizeof(*q));
	q->mode = IMAP_MODE_PROXY_AUTH;
	q->authzid = user;
	q->mailbox = mailbox;
	q->uidvalidity = uidvalidity;
	q->uid = uid;
	q->section = section;
	q->max_size = 1 << 20;
}

/* base64 of PLAIN authzid NUL submit NUL password */
static void
plain_b64(const char *authzid, char *out, size_t outsize)
{
	unsigned char msg[512];
	size_t a = strlen(authzid), u = strlen("submit"), p = strlen(PASSWORD);

	memcpy(msg, authzid, a);
	msg[a] = 0;
	memcpy(msg + a + 1, "submit", u);
	msg[a + 1 + u] = 0;
	memcpy(msg + a + 2 + u, PASSWORD, p);
	assert_true(util_b64_encode(msg, a + u + p + 2, out, outsize) > 0);
}

static char plain_submit[200];		/* "\0submit\0password" */
static char expect_auth_submit[256];	/* "%T AUTHENTICATE PLAIN <b64>" */

/* A test's world: a loop, a fake server, a pool on one server. */
struct world {
	struct event_base *base;
	struct fake *fs;
	struct imap_server_cfg cfg;
	struct imap_pool *pool;
};

static void
world_new(struct world *w, const struct step *const *scripts, size_t n,
	  enum imap_cred_kind cred, enum imap_tls_mode tls)
{
	memset(w, 0, sizeof(*w));
	w->base = event_base_new();
	assert_non_null(w->base);
	w->fs = fake_new(w->base, scripts, n);
	cfg_init(&w->cfg, w->fs->port, cred, tls);
}

static void
world_pool(struct world *w)
{
	w->pool = imap_pool_new(w->base, &w->cfg, 1);
	assert_non_null(w->pool);
}

static void fake_check(struct fake *fs);

static void
world_free(struct world *w)
{
	imap_pool_free(&w->pool);
	assert_null(w->pool);
	/* let the fake see the closes and LOGOUTs */
	run_until(w->base, NULL, 30);
	fake_check(w->fs);
	fake_free(w->fs);
	event_base_free(w->base);
}

static struct imap_fetch *
start(struct world *w, const struct imap_fetch_req *q, struct res *r)
{
	r->f = imap_fetch_start(w->pool, 0, q, &cbs, r);
	assert_non_null(r->f);
	/* never a callback from inside imap_fetch_start() */
	assert_false(r->done);
	return r->f;
}

static void
stats(struct world *w, struct imap_pool_stats *st)
{
	imap_pool_stats(w->pool, st);
}

/* ------------------------------------------------------------------ */
/* URLFETCH */

static void
test_urlfetch_cyrus(void **state)
{
	static const struct step s0[] = {
		SEND(CYRUS_GREETING),
		EXPECT(expect_auth_submit),
		SEND(CYRUS_LOGGED_IN),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		SEND("* URLFETCH \"" CYRUS_URL "\" {76}\r\n" MSG "\r\n"
		    "%T OK Completed\r\n"),
		EXPECT("%T LOGOUT"),
		END,
	};
	static const struct step *const scripts[] = { s0 };
	struct world w;
	struct res r;
	struct imap_fetch_req q;
	struct imap_pool_stats st;

	(void)state;
	world_new(&w, scripts, 1, IMAP_CRED_PASSWORD, IMAP_TLS_NONE);
	world_pool(&w);
	res_init(&r);
	req_url(&q, CYRUS_URL, 1000);
	start(&w, &q, &r);
	run_until(w.base, &r.done, 3000);
	assert_true(r.done);
	assert_int_equal(r.result, IMAP_FETCH_OK);
	assert_int_equal(r.total, 76);
	assert_true(res_data_is(&r, MSG, 76));
	assert_null(strstr(r.reason, TOKEN));
	stats(&w, &st);
	assert_int_equal(st.connections_opened, 1);
	assert_int_equal(st.fetches, 1);
	assert_int_equal(st.idle, 1);
	assert_int_equal(st.busy, 0);
	world_free(&w);
	/* LOGOUT on close, and the close itself */
	res_free(&r);
}

static void
test_urlfetch_dovecot(void **state)
{
	char b64[200], line[256];
	const struct step s0[] = {
		SEND("* OK Dovecot (Debian) ready.\r\n"),
		EXPECT("%T CAPABILITY"),
		SEND("* CAPABILITY IMAP4rev1 LITERAL+ STARTTLS AUTH=PLAIN "
		    "AUTH=GSSAPI\r\n%T OK Pre-login capabilities listed.\r\n"),
		EXPECT("%T AUTHENTICATE PLAIN"),
		SEND("+ \r\n"),
		EXPECT(line),
		SEND("%T OK [CAPABILITY IMAP4rev1 URLAUTH URLAUTH=BINARY] "
		    "Logged in\r\n"),
		EXPECT("%T URLFETCH \"" DOVECOT_URL "\""),
		SEND("* URLFETCH " DOVECOT_URL " {5}\r\nab\r\nc\r\n"
		    "%T OK URLFETCH completed (0.001 + 0.000 secs).\r\n"),
		END,
	};
	const struct step *const scripts[] = { s0 };
	struct world w;
	struct res r;
	struct imap_fetch_req q;

	(void)state;
	plain_b64("", b64, sizeof(b64));
	snprintf(line, sizeof(line), "%s", b64);
	world_new(&w, scripts, 1, IMAP_CRED_PASSWORD, IMAP_TLS_NONE);
	world_pool(&w);
	res_init(&r);
	req_url(&q, DOVECOT_URL, 1000);
	start(&w, &q, &r);
	run_until(w.base, &r.done, 3000);
	fake_check(w.fs);
	assert_int_equal(r.result, IMAP_FETCH_OK);
	assert_true(res_data_is(&r, "ab\r\nc", 5));
	world_free(&w);
	res_free(&r);
}

/* NIL (Dovecot: with an untagged NO quoting the URL; Cyrus: bare), a
 * tagged NO, a quoted string; all on one pooled connection. */
static void
test_urlfetch_nodata(void **state)
{
	static const struct step s0[] = {
		SEND(CYRUS_GREETING),
		EXPECT(expect_auth_submit),
		SEND(CYRUS_LOGGED_IN),
		EXPECT("%T URLFETCH \"" DOVECOT_URL "\""),
		SEND("* URLFETCH " DOVECOT_URL " NIL\r\n"
		    "* NO Failed to fetch URLAUTH \"" DOVECOT_URL "\": No "
		    "'submit+alice' access allowed for user alice.\r\n"
		    "%T OK URLFETCH completed (0.001 + 0.000 secs).\r\n"),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		SEND("* URLFETCH \"" CYRUS_URL "\" NIL\r\n%T OK Completed\r\n"),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		SEND("%T NO Internal error occurred. Refer to server log for "
		    "more information. [2026-11-23 12:02:23]\r\n"),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		SEND("%T BAD Error in IMAP command URLFETCH: " CYRUS_URL "\r\n"),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		SEND("* URLFETCH \"" CYRUS_URL "\" \"short \\\"q\\\"\"\r\n"
		    "%T OK Completed\r\n"),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		SEND("%T OK Completed\r\n"),
		END,
	};
	static const struct step *const scripts[] = { s0 };
	struct world w;
	struct res r[6];
	struct imap_fetch_req q;
	struct imap_pool_stats st;
	size_t i;

	(void)state;
	world_new(&w, scripts, 1, IMAP_CRED_PASSWORD, IMAP_TLS_NONE);
	world_pool(&w);
	for (i = 0; i < N_ELEMENTS(r); i++) {
		res_init(&r[i]);
		req_url(&q, i == 0 ? DOVECOT_URL : CYRUS_URL, 1000);
		start(&w, &q, &r[i]);
		run_until(w.base, &r[i].done, 3000);
		assert_true(r[i].done);
		print_message("  %zu: %s\n", i, r[i].reason);
		assert_null(strstr(r[i].reason, TOKEN));
	}
	fake_check(w.fs);
	assert_int_equal(r[0].result, IMAP_FETCH_NODATA);
	assert_non_null(strstr(r[0].reason,
	    "No 'submit+alice' access allowed for user alice."));
	assert_non_null(strstr(r[0].reason, "<redacted>"));
	assert_int_equal(r[1].result, IMAP_FETCH_NODATA);
	assert_non_null(strstr(r[1].reason, "NIL"));
	assert_int_equal(r[2].result, IMAP_FETCH_NODATA);
	assert_non_null(strstr(r[2].reason, "Internal error occurred"));
	assert_int_equal(r[3].result, IMAP_FETCH_NODATA);
	assert_non_null(strstr(r[3].reason, "BAD"));
	assert_int_equal(r[4].result, IMAP_FETCH_OK);
	assert_true(res_data_is(&r[4], "short \"q\"", 9));
	assert_int_equal(r[5].result, IMAP_FETCH_NODATA);
	stats(&w, &st);
	assert_int_equal(st.connections_opened, 1);
	assert_int_equal(w.fs->auth_lines, 1);
	world_free(&w);
	for (i = 0; i < N_ELEMENTS(r); i++)
		res_free(&r[i]);
}

/* A literal announced over max_size: TOO_BIG at once, nothing of it read
 * or delivered, the connection dropped. */
static void
test_too_big(void **state)
{
	static const struct step s0[] = {
		SEND(CYRUS_GREETING),
		EXPECT(expect_auth_submit),
		SEND(CYRUS_LOGGED_IN),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		SEND("* URLFETCH \"" CYRUS_URL "\" {100000000}\r\n"),
		SENDN(5000),
		HOLD,
	};
	static const struct step *const scripts[] = { s0 };
	struct world w;
	struct res r;
	struct imap_fetch_req q;
	struct imap_pool_stats st;

	(void)state;
	world_new(&w, scripts, 1, IMAP_CRED_PASSWORD, IMAP_TLS_NONE);
	world_pool(&w);
	res_init(&r);
	req_url(&q, CYRUS_URL, 1000);
	start(&w, &q, &r);
	run_until(w.base, &r.done, 3000);
	assert_int_equal(r.result, IMAP_FETCH_TOO_BIG);
	assert_int_equal(r.total, 0);
	assert_int_equal(r.on_data_calls, 0);
	run_until(w.base, (const int *)&w.fs->eofs, 1000);
	assert_int_equal(w.fs->eofs, 1);
	stats(&w, &st);
	assert_int_equal(st.idle + st.busy, 0);
	fake_check(w.fs);
	world_free(&w);
	res_free(&r);
}

/* The server goes away in mid-literal; BYE in mid-fetch. */
static void
test_disconnect(void **state)
{
	static const struct step s0[] = {
		SEND(CYRUS_GREETING),
		EXPECT(expect_auth_submit),
		SEND(CYRUS_LOGGED_IN),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		SEND("* URLFETCH \"" CYRUS_URL "\" {100}\r\n"
		    "0123456789012345678901234567890123456789012345678\n"),
		WAIT(50),
		CLOSE,
	};
	static const struct step s1[] = {
		SEND(CYRUS_GREETING),
		EXPECT(expect_auth_submit),
		SEND(CYRUS_LOGGED_IN),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		SEND("* BYE Fatal error: shutting down\r\n"),
		WAIT(20),
		CLOSE,
	};
	static const struct step *const scripts[] = { s0, s1 };
	struct world w;
	struct res r, r2;
	struct imap_fetch_req q;

	(void)state;
	world_new(&w, scripts, 2, IMAP_CRED_PASSWORD, IMAP_TLS_NONE);
	world_pool(&w);
	res_init(&r);
	req_url(&q, CYRUS_URL, 1000);
	start(&w, &q, &r);
	run_until(w.base, &r.done, 3000);
	assert_int_equal(r.result, IMAP_FETCH_UNAVAILABLE);
	assert_int_equal(r.total, 50);
	assert_non_null(strstr(r.reason, "closed"));
	res_init(&r2);
	start(&w, &q, &r2);
	run_until(w.base, &r2.done, 3000);
	assert_int_equal(r2.result, IMAP_FETCH_UNAVAILABLE);
	assert_non_null(strstr(r2.reason, "BYE"));
	assert_non_null(strstr(r2.reason, "shutting down"));
	world_free(&w);
	res_free(&r);
	res_free(&r2);
}

/* Garbage: as a greeting, after a literal, a tagged response with a tag
 * we never sent, a PREAUTH greeting, an SMTP server. */
static void
test_garbage(void **state)
{
	static const struct step g0[] = {
		SEND("HTTP/1.1 400 Bad Request\r\n"), HOLD,
	};
	static const struct step g1[] = {
		SEND(CYRUS_GREETING),
		EXPECT(expect_auth_submit),
		SEND(CYRUS_LOGGED_IN),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		SEND("* URLFETCH \"" CYRUS_URL "\" {3}\r\nabcgarbage\r\n"),
		HOLD,
	};
	static const struct step g2[] = {
		SEND(CYRUS_GREETING),
		EXPECT(expect_auth_submit),
		SEND(CYRUS_LOGGED_IN),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		SEND("X99 OK Completed\r\n"),
		HOLD,
	};
	static const struct step g3[] = {
		SEND("* PREAUTH [CAPABILITY IMAP4rev1] logged in as root\r\n"),
		HOLD,
	};
	static const struct step g4[] = {
		SEND("220 mail.example ESMTP Postfix\r\n"), HOLD,
	};
	static const struct step g5[] = {
		SEND(CYRUS_GREETING),
		EXPECT(expect_auth_submit),
		SEND("+ \r\n"),
		HOLD,
	};
	static const struct step *const scripts[] = { g0, g1, g2, g3, g4, g5 };
	static const char *const why[] = {
		"malformed", "malformed", "did not send", "PREAUTH",
		"malformed", "unexpected challenge",
	};
	struct world w;
	struct res r;
	struct imap_fetch_req q;
	size_t i;

	(void)state;
	world_new(&w, scripts, N_ELEMENTS(scripts), IMAP_CRED_PASSWORD,
	    IMAP_TLS_NONE);
	world_pool(&w);
	req_url(&q, CYRUS_URL, 1000);
	for (i = 0; i < N_ELEMENTS(scripts); i++) {
		res_init(&r);
		start(&w, &q, &r);
		run_until(w.base, &r.done, 3000);
		print_message("  %zu: %s\n", i, r.reason);
		assert_int_equal(r.result, IMAP_FETCH_UNAVAILABLE);
		assert_non_null(strstr(r.reason, why[i]));
		res_free(&r);
	}
	run_until(w.base, NULL, 50);
	assert_int_equal(w.fs->eofs, N_ELEMENTS(scripts));
	fake_check(w.fs);
	world_free(&w);
}

/* connect_timeout per step and as a whole; fetch_timeout without
 * progress; a slow but steady drip is no timeout. */
static void
test_timeouts(void **state)
{
	static const struct step t0[] = { HOLD };
	static const struct step t1[] = {
		DRIP("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] slow\r\n", 100),
		HOLD,
	};
	static const struct step t2[] = {
		SEND(CYRUS_GREETING),
		EXPECT(expect_auth_submit),
		SEND(CYRUS_LOGGED_IN),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		SEND("* URLFETCH \"" CYRUS_URL "\" {100}\r\n0123456789"),
		HOLD,
	};
	static const struct step t3[] = {
		SEND(CYRUS_GREETING),
		EXPECT(expect_auth_submit),
		SEND(CYRUS_LOGGED_IN),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		SEND("* URLFETCH \"" CYRUS_URL "\" {8}\r\n"),
		DRIP("01234567\r\n", 250),
		SEND("%T OK Completed\r\n"),
		END,
	};
	static const struct step *const scripts[] = { t0, t1, t2, t3 };
	struct world w;
	struct res r;
	struct imap_fetch_req q;
	uint64_t ms;

	(void)state;
	world_new(&w, scripts, 4, IMAP_CRED_PASSWORD, IMAP_TLS_NONE);
	w.cfg.connect_timeout = 1;
	w.cfg.fetch_timeout = 1;
	world_pool(&w);
	req_url(&q, CYRUS_URL, 1000);

	/* no greeting at all */
	res_init(&r);
	start(&w, &q, &r);
	ms = run_until(w.base, &r.done, 4000);
	print_message("  silent: %llu ms: %s\n", (unsigned long long)ms, r.reason);
	assert_int_equal(r.result, IMAP_FETCH_UNAVAILABLE);
	assert_non_null(strstr(r.reason, "connect_timeout"));
	assert_true(ms >= 900 && ms < 2500);
	res_free(&r);

	/* a greeting that never ends, a byte every 100 ms: the whole
	 * set-up is bounded, not only each step */
	res_init(&r);
	start(&w, &q, &r);
	ms = run_until(w.base, &r.done, 4000);
	print_message("  drip greeting: %llu ms: %s\n", (unsigned long long)ms,
	    r.reason);
	assert_int_equal(r.result, IMAP_FETCH_UNAVAILABLE);
	assert_non_null(strstr(r.reason, "not ready within connect_timeout"));
	assert_true(ms >= 900 && ms < 2500);
	res_free(&r);

	/* content stops coming */
	res_init(&r);
	start(&w, &q, &r);
	ms = run_until(w.base, &r.done, 4000);
	print_message("  stalled: %llu ms: %s\n", (unsigned long long)ms, r.reason);
	assert_int_equal(r.result, IMAP_FETCH_UNAVAILABLE);
	assert_non_null(strstr(r.reason, "fetch_timeout"));
	assert_int_equal(r.total, 10);
	assert_true(ms >= 900 && ms < 2500);
	res_free(&r);

	/* 10 bytes 250 ms apart: 2.5 s, never 1 s without progress */
	res_init(&r);
	start(&w, &q, &r);
	ms = run_until(w.base, &r.done, 5000);
	print_message("  slow drip: %llu ms: %s\n", (unsigned long long)ms,
	    r.reason);
	assert_int_equal(r.result, IMAP_FETCH_OK);
	assert_true(res_data_is(&r, "01234567", 8));
	assert_true(ms >= 2000);
	res_free(&r);

	fake_check(w.fs);
	world_free(&w);
}

/* Two fetches in sequence: one connection, one AUTHENTICATE; then the
 * idle connection is closed (with LOGOUT) after idle_timeout. */
static void
test_pooling(void **state)
{
	static const struct step s0[] = {
		SEND(CYRUS_GREETING),
		EXPECT(expect_auth_submit),
		SEND(CYRUS_LOGGED_IN),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		SEND("* URLFETCH \"" CYRUS_URL "\" {3}\r\none\r\n%T OK Completed\r\n"),
		EXPECT("%T URLFETCH \"" DOVECOT_URL "\""),
		SEND("* URLFETCH \"" DOVECOT_URL "\" {3}\r\ntwo\r\n%T OK Completed\r\n"),
		EXPECT("%T LOGOUT"),
		SEND("* BYE LOGOUT received\r\n%T OK Completed\r\n"),
		END,
	};
	static const struct step *const scripts[] = { s0 };
	struct world w;
	struct res r1, r2;
	struct imap_fetch_req q;
	struct imap_pool_stats st;

	(void)state;
	world_new(&w, scripts, 1, IMAP_CRED_PASSWORD, IMAP_TLS_NONE);
	w.cfg.idle_timeout = 1;
	world_pool(&w);
	res_init(&r1);
	res_init(&r2);
	req_url(&q, CYRUS_URL, 1000);
	start(&w, &q, &r1);
	run_until(w.base, &r1.done, 3000);
	assert_int_equal(r1.result, IMAP_FETCH_OK);
	req_url(&q, DOVECOT_URL, 1000);
	start(&w, &q, &r2);
	run_until(w.base, &r2.done, 3000);
	assert_int_equal(r2.result, IMAP_FETCH_OK);
	assert_true(res_data_is(&r1, "one", 3));
	assert_true(res_data_is(&r2, "two", 3));
	stats(&w, &st);
	assert_int_equal(st.connections_opened, 1);
	assert_int_equal(st.fetches, 2);
	assert_int_equal(st.idle, 1);
	assert_int_equal(w.fs->accepted, 1);
	assert_int_equal(w.fs->auth_lines, 1);
	/* idle_timeout */
	run_until(w.base, (const int *)&w.fs->eofs, 2500);
	assert_int_equal(w.fs->eofs, 1);
	stats(&w, &st);
	assert_int_equal(st.idle, 0);
	fake_check(w.fs);
	assert_true(w.fs->conns[0]->done);
	world_free(&w);
	res_free(&r1);
	res_free(&r2);
}

/* A pooled connection the server dropped without our noticing: the fetch
 * goes again, once, on a new connection.  A server that drops every
 * connection: UNAVAILABLE, no endless retry.  Nothing listening. */
static void
test_stale_and_refused(void **state)
{
	static const struct step s0[] = {
		SEND(CYRUS_GREETING),
		EXPECT(expect_auth_submit),
		SEND(CYRUS_LOGGED_IN),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		SEND("* URLFETCH \"" CYRUS_URL "\" {3}\r\none\r\n%T OK Completed\r\n"),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		CLOSE,
	};
	static const struct step s1[] = {
		SEND(CYRUS_GREETING),
		EXPECT(expect_auth_submit),
		SEND(CYRUS_LOGGED_IN),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		SEND("* URLFETCH \"" CYRUS_URL "\" {3}\r\ntwo\r\n%T OK Completed\r\n"),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		CLOSE,
	};
	static const struct step s2[] = {
		SEND(CYRUS_GREETING),
		EXPECT(expect_auth_submit),
		SEND(CYRUS_LOGGED_IN),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		CLOSE,
	};
	static const struct step *const scripts[] = { s0, s1, s2 };
	struct world w;
	struct res r;
	struct imap_fetch_req q;
	struct imap_pool_stats st;
	evutil_socket_t fd;
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int port;

	(void)state;
	world_new(&w, scripts, 3, IMAP_CRED_PASSWORD, IMAP_TLS_NONE);
	world_pool(&w);
	req_url(&q, CYRUS_URL, 1000);
	res_init(&r);
	start(&w, &q, &r);
	run_until(w.base, &r.done, 3000);
	assert_int_equal(r.result, IMAP_FETCH_OK);
	res_free(&r);
	/* s0 drops the second command: again on s1 */
	res_init(&r);
	start(&w, &q, &r);
	run_until(w.base, &r.done, 3000);
	print_message("  retried: %s\n", r.reason);
	assert_int_equal(r.result, IMAP_FETCH_OK);
	assert_true(res_data_is(&r, "two", 3));
	res_free(&r);
	/* s1 drops it too; the retry on s2 as well: no third try */
	res_init(&r);
	start(&w, &q, &r);
	run_until(w.base, &r.done, 3000);
	print_message("  retried and lost: %s\n", r.reason);
	assert_int_equal(r.result, IMAP_FETCH_UNAVAILABLE);
	res_free(&r);
	stats(&w, &st);
	assert_int_equal(st.connections_opened, 3);
	world_free(&w);

	/* a port nobody listens on */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	port = ntohs(sin.sin_port);
	close(fd);
	world_new(&w, scripts, 0, IMAP_CRED_PASSWORD, IMAP_TLS_NONE);
	((struct sockaddr_in *)&w.cfg.addr)->sin_port = htons((uint16_t)port);
	world_pool(&w);
	res_init(&r);
	start(&w, &q, &r);
	run_until(w.base, &r.done, 3000);
	print_message("  refused: %s\n", r.reason);
	assert_int_equal(r.result, IMAP_FETCH_UNAVAILABLE);
	assert_non_null(strstr(r.reason, "refused"));
	res_free(&r);
	world_free(&w);
}

/* max_conns 1: the second fetch waits in the queue, FIFO, and gets the
 * first one's connection; then a third for another identity (PROXY_AUTH)
 * replaces the idle connection. */
static void
test_max_conns(void **state)
{
	char auth_alice[256], auth_bob[256], b64[200];
	const struct step s0[] = {
		SEND(CYRUS_GREETING),
		EXPECT(auth_alice),
		SEND(CYRUS_LOGGED_IN),
		EXPECT("%T EXAMINE \"INBOX\""),
		SEND("* OK [UIDVALIDITY 7] x\r\n%T OK [READ-ONLY] done\r\n"),
		EXPECT("%T UID FETCH 1 (UID BODY.PEEK[])"),
		SEND("* 1 FETCH (UID 1 BODY[] {2}\r\nA1)\r\n%T OK done\r\n"),
		EXPECT("%T EXAMINE \"INBOX\""),
		SEND("* OK [UIDVALIDITY 7] x\r\n%T OK [READ-ONLY] done\r\n"),
		EXPECT("%T UID FETCH 2 (UID BODY.PEEK[])"),
		SEND("* 2 FETCH (BODY[] {2}\r\nA2 UID 2)\r\n%T OK done\r\n"),
		EXPECT("%T LOGOUT"),
		END,
	};
	const struct step s1[] = {
		SEND(CYRUS_GREETING),
		EXPECT(auth_bob),
		SEND(CYRUS_LOGGED_IN),
		EXPECT("%T EXAMINE \"Sent\""),
		SEND("* OK [UIDVALIDITY 9] x\r\n%T OK [READ-ONLY] done\r\n"),
		EXPECT("%T UID FETCH 3 (UID BODY.PEEK[])"),
		SEND("* 1 FETCH (UID 3 BODY[] {2}\r\nB3)\r\n%T OK done\r\n"),
		END,
	};
	const struct step *const scripts[] = { s0, s1 };
	struct world w;
	struct res r[3];
	struct imap_fetch_req q;
	struct imap_pool_stats st;
	size_t i;

	(void)state;
	plain_b64("alice", b64, sizeof(b64));
	snprintf(auth_alice, sizeof(auth_alice), "%%T AUTHENTICATE PLAIN %s", b64);
	plain_b64("bob", b64, sizeof(b64));
	snprintf(auth_bob, sizeof(auth_bob), "%%T AUTHENTICATE PLAIN %s", b64);
	world_new(&w, scripts, 2, IMAP_CRED_PASSWORD, IMAP_TLS_NONE);
	w.cfg.max_conns = 1;
	world_pool(&w);
	done_counter = 0;
	for (i = 0; i < 3; i++)
		res_init(&r[i]);
	req_proxy(&q, "alice", "INBOX", 7, 1, "");
	start(&w, &q, &r[0]);
	req_proxy(&q, "alice", "INBOX", 7, 2, "");
	start(&w, &q, &r[1]);
	req_proxy(&q, "bob", "Sent", 9, 3, NULL);
	start(&w, &q, &r[2]);
	stats(&w, &st);
	assert_int_equal(st.busy, 1);
	assert_int_equal(st.queued, 2);
	run_until(w.base, &r[2].done, 5000);
	fake_check(w.fs);
	for (i = 0; i < 3; i++) {
		print_message("  %zu: %s\n", i, r[i].reason);
		assert_int_equal(r[i].result, IMAP_FETCH_OK);
		assert_int_equal(r[i].order, (int)i + 1);
	}
	assert_true(res_data_is(&r[0], "A1", 2));
	assert_true(res_data_is(&r[1], "A2", 2));
	assert_true(res_data_is(&r[2], "B3", 2));
	stats(&w, &st);
	assert_int_equal(st.connections_opened, 2);
	assert_int_equal(st.idle, 1);
	assert_int_equal(st.queued, 0);
	assert_int_equal(w.fs->auth_lines, 2);
	world_free(&w);
	for (i = 0; i < 3; i++)
		res_free(&r[i]);
}

/* PROXY_AUTH: AUTHENTICATE PLAIN with authzid = the user, EXAMINE, UID
 * FETCH with section and partial; UIDVALIDITY mismatch; no such message;
 * EXAMINE refused; FETCH content for another UID. */
static void
test_proxy_auth(void **state)
{
	char auth_alice[256], b64[200];
	const struct step s0[] = {
		SEND(CYRUS_GREETING),
		EXPECT(auth_alice),
		SEND(CYRUS_LOGGED_IN),
		EXPECT("%T EXAMINE \"INBOX\""),
		SEND("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
		    "* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n"
		    "* 4 EXISTS\r\n* 0 RECENT\r\n"
		    "* OK [UIDVALIDITY 1795435210] UIDs valid\r\n"
		    "* OK [UIDNEXT 5] Predicted next UID\r\n"
		    "%T OK [READ-ONLY] Examine completed (0.001 + 0.000 secs).\r\n"),
		EXPECT("%T UID FETCH 4 (UID BODY.PEEK[1.2]<0.100>)"),
		SEND("* 4 FETCH (UID 4 BODY[1.2]<0> {5}\r\nhello FLAGS (\\Seen))\r\n"
		    "%T OK Fetch completed (0.001 + 0.000 secs).\r\n"),
		EXPECT("%T EXAMINE \"INBOX\""),
		SEND("* OK [UIDVALIDITY 1795435211] UIDs valid\r\n"
		    "%T OK [READ-ONLY] Examine completed.\r\n"),
		EXPECT("%T EXAMINE \"INBOX\""),
		SEND("* OK [UIDVALIDITY 1795435210] UIDs valid\r\n"
		    "%T OK [READ-ONLY] Examine completed.\r\n"),
		EXPECT("%T UID FETCH 99 (UID BODY.PEEK[])"),
		SEND("%T OK Fetch completed.\r\n"),
		EXPECT("%T EXAMINE \"Nope \\\"x\\\"\""),
		SEND("%T NO Mailbox doesn't exist: Nope \"x\"\r\n"),
		EXPECT("%T EXAMINE \"INBOX\""),
		SEND("%T OK [READ-ONLY] Examine completed.\r\n"),
		EXPECT("%T UID FETCH 4 (UID BODY.PEEK[TEXT]<10.4294967295>)"),
		SEND("* 4 FETCH (BODY[TEXT]<10> {3}\r\nxyz UID 5)\r\n"
		    "%T OK Fetch completed.\r\n"),
		HOLD,
	};
	const struct step *const scripts[] = { s0 };
	struct world w;
	struct res r[5];
	struct imap_fetch_req q;
	size_t i;

	(void)state;
	plain_b64("alice", b64, sizeof(b64));
	snprintf(auth_alice, sizeof(auth_alice), "%%T AUTHENTICATE PLAIN %s", b64);
	world_new(&w, scripts, 1, IMAP_CRED_PASSWORD, IMAP_TLS_NONE);
	w.cfg.mode = IMAP_MODE_PROXY_AUTH;
	world_pool(&w);
	for (i = 0; i < N_ELEMENTS(r); i++) {
		res_init(&r[i]);
		switch (i) {
		case 0:
			req_proxy(&q, "alice", "INBOX", 1795435210, 4, "1.2");
			q.has_partial = 1;
			q.partial_offset = 0;
			q.partial_length = 100;
			break;
		case 1:
			req_proxy(&q, "alice", "INBOX", 1795435210, 4, "1.2");
			break;
		case 2:
			req_proxy(&q, "alice", "INBOX", 0, 99, "");
			break;
		case 3:
			req_proxy(&q, "alice", "Nope \"x\"", 0, 1, "");
			break;
		case 4:
			/* to the end from offset 10; the answer is UID 5's */
			req_proxy(&q, "alice", "INBOX", 0, 4, "TEXT");
			q.has_partial = 1;
			q.partial_offset = 10;
			break;
		}
		start(&w, &q, &r[i]);
		run_until(w.base, &r[i].done, 3000);
		assert_true(r[i].done);
		print_message("  %zu: %s\n", i, r[i].reason);
	}
	fake_check(w.fs);
	assert_int_equal(r[0].result, IMAP_FETCH_OK);
	assert_true(res_data_is(&r[0], "hello", 5));
	assert_int_equal(r[1].result, IMAP_FETCH_NODATA);
	assert_non_null(strstr(r[1].reason, "UIDVALIDITY"));
	assert_int_equal(r[2].result, IMAP_FETCH_NODATA);
	assert_non_null(strstr(r[2].reason, "no such message"));
	assert_int_equal(r[3].result, IMAP_FETCH_NODATA);
	assert_non_null(strstr(r[3].reason, "EXAMINE NO"));
	assert_int_equal(r[4].result, IMAP_FETCH_UNAVAILABLE);
	assert_non_null(strstr(r[4].reason, "UID 5"));
	assert_int_equal(w.fs->auth_lines, 1);
	world_free(&w);
	for (i = 0; i < N_ELEMENTS(r); i++)
		res_free(&r[i]);
}

/* Cancel in mid-literal (from on_data): no on_done, the connection is
 * dropped.  Cancel while the connection is being set up: it goes to the
 * pool.  Cancel while queued. */
static void
test_cancel(void **state)
{
	static const struct step s0[] = {
		SEND(CYRUS_GREETING),
		EXPECT(expect_auth_submit),
		SEND(CYRUS_LOGGED_IN),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		SEND("* URLFETCH \"" CYRUS_URL "\" {20}\r\n0123456789"),
		WAIT(100),
		SEND("0123456789\r\n%T OK Completed\r\n"),
		HOLD,
	};
	static const struct step s1[] = {
		SEND(CYRUS_GREETING),
		EXPECT(expect_auth_submit),
		SEND(CYRUS_LOGGED_IN),
		END,
	};
	static const struct step *const scripts[] = { s0, s1 };
	struct world w;
	struct res r, r2, r3;
	struct imap_fetch_req q;
	struct imap_pool_stats st;

	(void)state;
	world_new(&w, scripts, 2, IMAP_CRED_PASSWORD, IMAP_TLS_NONE);
	w.cfg.max_conns = 1;
	world_pool(&w);
	res_init(&r);
	r.cancel_in_data = 1;
	req_url(&q, CYRUS_URL, 1000);
	start(&w, &q, &r);
	run_until(w.base, (const int *)&w.fs->eofs, 3000);
	assert_int_equal(w.fs->eofs, 1);
	run_until(w.base, NULL, 200);
	assert_false(r.done);
	assert_int_equal(r.on_data_calls, 1);
	assert_true(res_data_is(&r, "0123456789", 10));
	stats(&w, &st);
	assert_int_equal(st.idle + st.busy, 0);

	/* cancelled at once: the connection set up for it is kept; a
	 * second fetch queued behind it (max_conns 1) is cancelled too */
	res_init(&r2);
	start(&w, &q, &r2);
	res_init(&r3);
	start(&w, &q, &r3);
	stats(&w, &st);
	assert_int_equal(st.queued, 1);
	imap_fetch_cancel(&r3.f);
	imap_fetch_cancel(&r2.f);
	assert_null(r2.f);
	stats(&w, &st);
	assert_int_equal(st.queued, 0);
	assert_int_equal(st.busy, 1);
	run_until(w.base, NULL, 300);
	stats(&w, &st);
	assert_int_equal(st.idle, 1);
	assert_int_equal(st.busy, 0);
	assert_false(r2.done);
	assert_false(r3.done);
	fake_check(w.fs);
	world_free(&w);
	res_free(&r);
	res_free(&r2);
	res_free(&r3);
}

/* Backpressure: paused in on_data, nothing more comes until resumed. */
static int resume_now;

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct res *r = arg;

	(void)fd;
	(void)what;
	assert_int_equal(r->on_data_calls, 1);
	resume_now = 1;
	imap_fetch_pause(r->f, 0);
}

static void
test_pause(void **state)
{
	static const struct step s0[] = {
		SEND(CYRUS_GREETING),
		EXPECT(expect_auth_submit),
		SEND(CYRUS_LOGGED_IN),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		SEND("* URLFETCH \"" CYRUS_URL "\" {30000}\r\n"),
		SENDN(10000),
		WAIT(50),
		SENDN(20000),
		SEND("\r\n%T OK Completed\r\n"),
		END,
	};
	static const struct step *const scripts[] = { s0 };
	struct world w;
	struct res r;
	struct imap_fetch_req q;
	struct event *t;
	struct timeval tv = { 0, 400000 };

	(void)state;
	world_new(&w, scripts, 1, IMAP_CRED_PASSWORD, IMAP_TLS_NONE);
	w.cfg.fetch_timeout = 1;
	world_pool(&w);
	res_init(&r);
	r.pause_in_data = 1;
	req_url(&q, CYRUS_URL, 100000);
	start(&w, &q, &r);
	t = evtimer_new(w.base, resume_cb, &r);
	resume_now = 0;
	/* the resume comes 0.4 s after the start: meanwhile one on_data */
	evtimer_add(t, &tv);
	run_until(w.base, &resume_now, 3000);
	assert_int_equal(r.on_data_calls, 1);
	assert_false(r.done);
	run_until(w.base, &r.done, 3000);
	assert_int_equal(r.result, IMAP_FETCH_OK);
	assert_int_equal(r.total, 30000);
	event_free(t);
	fake_check(w.fs);
	world_free(&w);
	res_free(&r);
}

/* AUTHENTICATE GSSAPI driven by the fake mechanism: with SASL-IR, without
 * it (the first "+" is empty), with an authzid (PROXY_AUTH); an OK before
 * the last step is refused; no credentials. */
static void
test_gssapi(void **state)
{
	static const struct step s0[] = {
		SEND(CYRUS_GREETING),
		EXPECT("%T AUTHENTICATE GSSAPI dG9rMQ=="),	/* tok1 */
		SEND("+ Y2hhbDE=\r\n"),				/* chal1 */
		EXPECT(""),
		SEND("+ AQAAAA==\r\n"),				/* layer offer */
		EXPECT("AQAAAA=="),				/* no layer, no authzid */
		SEND(CYRUS_LOGGED_IN),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		SEND("* URLFETCH \"" CYRUS_URL "\" {2}\r\nok\r\n%T OK Completed\r\n"),
		END,
	};
	static const struct step s1[] = {
		SEND("* OK [CAPABILITY IMAP4rev1 AUTH=GSSAPI] hi\r\n"),
		EXPECT("%T AUTHENTICATE GSSAPI"),
		SEND("+ \r\n"),
		EXPECT("dG9rMQ=="),
		SEND("+ Y2hhbDE=\r\n"),
		EXPECT(""),
		SEND("+ BwAQAA==\r\n"),
		EXPECT("AQAAAGFsaWNl"),				/* + "alice" */
		SEND("%T OK done\r\n"),
		EXPECT("%T EXAMINE \"INBOX\""),
		SEND("%T OK done\r\n"),
		EXPECT("%T UID FETCH 1 (UID BODY.PEEK[])"),
		SEND("* 1 FETCH (BODY[] \"x\" UID 1)\r\n%T OK done\r\n"),
		END,
	};
	static const struct step s2[] = {
		SEND(CYRUS_GREETING),
		EXPECT("%T AUTHENTICATE GSSAPI dG9rMQ=="),
		SEND("%T OK [CAPABILITY IMAP4rev1] whatever you say\r\n"),
		HOLD,
	};
	static const struct step s3[] = {
		SEND(CYRUS_GREETING),
		EXPECT("%T AUTHENTICATE GSSAPI dG9rMQ=="),
		SEND("+ bm90IGNoYWwx\r\n"),			/* "not chal1" */
		HOLD,
	};
	static const struct step s4[] = {
		SEND(CYRUS_GREETING),
		EXPECT("%T AUTHENTICATE GSSAPI dG9rMQ=="),
		SEND("%T NO [AUTHENTICATIONFAILED] Authentication failed\r\n"),
		HOLD,
	};
	static const struct step s5[] = {
		SEND(CYRUS_GREETING),
		HOLD,
	};
	static const struct step *const scripts[] = { s0, s1, s2, s3, s4, s5 };
	struct world w;
	struct res r;
	struct imap_fetch_req q;
	size_t i;

	(void)state;
	world_new(&w, scripts, N_ELEMENTS(scripts), IMAP_CRED_KERBEROS,
	    IMAP_TLS_NONE);
	w.cfg.password[0] = '\0';
	world_pool(&w);
	fake_gss_created = fake_gss_freed = 0;
	for (i = 0; i < N_ELEMENTS(scripts); i++) {
		res_init(&r);
		if (i == 1)
			req_proxy(&q, "alice", "INBOX", 0, 1, NULL);
		else
			req_url(&q, CYRUS_URL, 1000);
		fake_gss_fail_new = i == 5;
		/* a fresh pool: a connection each */
		imap_pool_free(&w.pool);
		world_pool(&w);
		start(&w, &q, &r);
		run_until(w.base, &r.done, 3000);
		print_message("  %zu: %s\n", i, r.reason);
		switch (i) {
		case 0:
			assert_int_equal(r.result, IMAP_FETCH_OK);
			assert_true(res_data_is(&r, "ok", 2));
			assert_string_equal(fake_gss_service, "imap");
			assert_string_equal(fake_gss_host, "localhost");
			break;
		case 1:
			assert_int_equal(r.result, IMAP_FETCH_OK);
			assert_true(res_data_is(&r, "x", 1));
			break;
		case 2:
			assert_int_equal(r.result, IMAP_FETCH_UNAVAILABLE);
			assert_non_null(strstr(r.reason, "before the exchange ended"));
			break;
		case 3:
			assert_int_equal(r.result, IMAP_FETCH_UNAVAILABLE);
			assert_non_null(strstr(r.reason, "unexpected challenge"));
			break;
		case 4:
			assert_int_equal(r.result, IMAP_FETCH_UNAVAILABLE);
			assert_non_null(strstr(r.reason, "authentication refused"));
			break;
		case 5:
			assert_int_equal(r.result, IMAP_FETCH_UNAVAILABLE);
			assert_non_null(strstr(r.reason, "no credentials"));
			break;
		}
		res_free(&r);
	}
	fake_gss_fail_new = 0;
	fake_check(w.fs);
	world_free(&w);
	assert_int_equal(fake_gss_created, 5);
	assert_int_equal(fake_gss_freed, 5);
}

/* Refused before any connection: a password to a non-loopback address
 * without TLS, TLS required on a plaintext server, unusable requests, no
 * such server.  on_done still comes from the loop. */
static void
test_refusals(void **state)
{
	static const struct step *const scripts[] = { NULL };
	struct world w;
	struct res r;
	struct imap_fetch_req q;
	struct imap_pool_stats st;
	struct imap_fetch *f;
	size_t i;

	(void)state;
	world_new(&w, scripts, 0, IMAP_CRED_PASSWORD, IMAP_TLS_NONE);
	for (i = 0; i < 6; i++) {
		res_init(&r);
		req_url(&q, CYRUS_URL, 1000);
		if (i == 0) {
			/* TEST-NET-1: never reached */
			((struct sockaddr_in *)&w.cfg.addr)->sin_addr.s_addr =
			    inet_addr("192.0.2.1");
		} else {
			((struct sockaddr_in *)&w.cfg.addr)->sin_addr.s_addr =
			    htonl(INADDR_LOOPBACK);
		}
		if (i == 1)
			q.require_tls = 1;
		if (i == 2)
			req_proxy(&q, "", "INBOX", 0, 1, NULL);
		if (i == 3)
			req_proxy(&q, "alice", "INBOX", 0, 1, "1]x");
		if (i == 4)
			q.url = NULL;
		world_pool(&w);
		f = imap_fetch_start(w.pool, i == 5 ? 7 : 0, &q, &cbs, &r);
		assert_non_null(f);
		r.f = f;
		assert_false(r.done);
		run_until(w.base, &r.done, 1000);
		print_message("  %zu: %s\n", i, r.reason);
		assert_true(r.done);
		assert_int_equal(r.result, i < 2 || i == 5 ?
		    IMAP_FETCH_UNAVAILABLE : IMAP_FETCH_NODATA);
		stats(&w, &st);
		assert_int_equal(st.connections_opened, 0);
		imap_pool_free(&w.pool);
		res_free(&r);
	}
	assert_int_equal(w.fs->accepted, 0);
	world_free(&w);
}

/* A URL that needs a literal: synchronizing without LITERAL+, non-
 * synchronizing with it. */
static void
test_literal_commands(void **state)
{
	static const char url8[] = "imap://h/INBOX/;UID=1;URLAUTH=anonymous:"
	    "internal:" TOKEN "\xc3\xa9";
	char sync[64], nonsync[64], lit[64];
	const struct step s0[] = {
		SEND("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] hi\r\n"),
		EXPECT(expect_auth_submit),
		SEND("%T OK done\r\n"),
		EXPECT(sync),
		SEND("+ go ahead\r\n"),
		EXPECT(url8),
		SEND(lit),
		SEND(url8),
		SEND(" {1}\r\nz\r\n%T OK done\r\n"),
		EXPECT(sync),
		SEND("%T NO literal refused\r\n"),
		EXPECT("%T LOGOUT"),
		END,
	};
	const struct step s1[] = {
		SEND("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR LITERAL-] hi\r\n"),
		EXPECT(expect_auth_submit),
		SEND("%T OK done\r\n"),
		EXPECT(nonsync),
		EXPECT(url8),
		SEND("* URLFETCH x NIL\r\n%T OK done\r\n"),
		END,
	};
	const struct step *const scripts[] = { s0, s1 };
	struct world w;
	struct res r;
	struct imap_fetch_req q;

	(void)state;
	snprintf(sync, sizeof(sync), "%%T URLFETCH {%zu}", strlen(url8));
	snprintf(nonsync, sizeof(nonsync), "%%T URLFETCH {%zu+}", strlen(url8));
	snprintf(lit, sizeof(lit), "* URLFETCH {%zu}\r\n", strlen(url8));
	world_new(&w, scripts, 2, IMAP_CRED_PASSWORD, IMAP_TLS_NONE);
	world_pool(&w);
	req_url(&q, url8, 1000);
	res_init(&r);
	start(&w, &q, &r);
	run_until(w.base, &r.done, 3000);
	assert_int_equal(r.result, IMAP_FETCH_OK);
	assert_true(res_data_is(&r, "z", 1));
	res_free(&r);
	res_init(&r);
	start(&w, &q, &r);
	run_until(w.base, &r.done, 3000);
	assert_int_equal(r.result, IMAP_FETCH_NODATA);
	res_free(&r);
	imap_pool_free(&w.pool);
	/* a fresh pool makes a fresh connection: the second script */
	world_pool(&w);
	res_init(&r);
	start(&w, &q, &r);
	run_until(w.base, &r.done, 3000);
	assert_int_equal(r.result, IMAP_FETCH_NODATA);
	res_free(&r);
	world_free(&w);
}

/* ------------------------------------------------------------------ */
/* TLS: a throw-away CA-less self-signed certificate for "localhost" */

static char cert_path[] = "/tmp/test_imap_client_cert.XXXXXX";
static SSL_CTX *server_ctx;

static void
make_cert(void)
{
	EVP_PKEY *pkey = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name;
	X509_EXTENSION *ext;
	X509V3_CTX v3;
	FILE *fp;
	int fd;

	assert_non_null(pkey);
	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, pkey);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)"localhost", -1, -1, 0);
	X509_set_issuer_name(x, name);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name,
	    "DNS:localhost");
	assert_non_null(ext);
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
	    "critical,CA:TRUE");
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	assert_true(X509_sign(x, pkey, EVP_sha256()) > 0);
	fd = mkstemp(cert_path);
	assert_true(fd >= 0);
	fp = fdopen(fd, "w");
	assert_non_null(fp);
	PEM_write_X509(fp, x);
	fclose(fp);
	server_ctx = SSL_CTX_new(TLS_server_method());
	assert_non_null(server_ctx);
	assert_int_equal(SSL_CTX_use_certificate(server_ctx, x), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(server_ctx, pkey), 1);
	X509_free(x);
	EVP_PKEY_free(pkey);
}

/* STARTTLS (with bytes injected after the OK, which must be ignored),
 * implicit TLS, a certificate for another name, no STARTTLS offered. */
static void
test_tls(void **state)
{
	static const struct step s0[] = {
		SEND(CYRUS_GREETING),
		EXPECT("%T STARTTLS"),
		/* the injected line must not be taken as a response */
		SEND("%T OK Begin TLS negotiation now\r\n"
		    "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"),
		TLS_NOW,
		EXPECT("%T CAPABILITY"),
		SEND("* CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=GSSAPI SASL-IR\r\n"
		    "%T OK Completed\r\n"),
		EXPECT(expect_auth_submit),
		SEND(CYRUS_LOGGED_IN),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		SEND("* URLFETCH \"" CYRUS_URL "\" {3}\r\ntls\r\n%T OK Completed\r\n"),
		END,
	};
	static const struct step s1[] = {
		SEND("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] no starttls\r\n"),
		HOLD,
	};
	static const struct step *const scripts[] = { s0, s1 };
	static const struct step i0[] = {
		SEND(CYRUS_GREETING),
		EXPECT(expect_auth_submit),
		SEND(CYRUS_LOGGED_IN),
		EXPECT("%T URLFETCH \"" CYRUS_URL "\""),
		SEND("* URLFETCH \"" CYRUS_URL "\" {8}\r\nimplicit\r\n%T OK Completed\r\n"),
		END,
	};
	static const struct step i1[] = { SEND(CYRUS_GREETING), HOLD };
	static const struct step *const iscripts[] = { i0, i1 };
	struct world w;
	struct res r;
	struct imap_fetch_req q;
	const char *err = NULL;
	SSL_CTX *client_ctx;

	(void)state;
	make_cert();
	client_ctx = tls_client_ctx_new(cert_path, &err);
	assert_non_null(client_ctx);

	world_new(&w, scripts, 2, IMAP_CRED_PASSWORD, IMAP_TLS_STARTTLS);
	w.fs->ssl_ctx = server_ctx;
	w.cfg.ssl_ctx = client_ctx;
	snprintf(w.cfg.tls_name, sizeof(w.cfg.tls_name), "localhost");
	world_pool(&w);
	req_url(&q, CYRUS_URL, 1000);
	q.require_tls = 1;
	res_init(&r);
	start(&w, &q, &r);
	run_until(w.base, &r.done, 3000);
	print_message("  starttls: %s\n", r.reason);
	assert_int_equal(r.result, IMAP_FETCH_OK);
	assert_true(res_data_is(&r, "tls", 3));
	res_free(&r);
	/* no STARTTLS offered: nothing is sent in the clear */
	imap_pool_free(&w.pool);
	world_pool(&w);
	res_init(&r);
	start(&w, &q, &r);
	run_until(w.base, &r.done, 3000);
	print_message("  no starttls: %s\n", r.reason);
	assert_int_equal(r.result, IMAP_FETCH_UNAVAILABLE);
	assert_non_null(strstr(r.reason, "STARTTLS"));
	res_free(&r);
	fake_check(w.fs);
	world_free(&w);

	world_new(&w, iscripts, 2, IMAP_CRED_PASSWORD, IMAP_TLS_IMPLICIT);
	w.fs->ssl_ctx = server_ctx;
	w.fs->implicit_tls = 1;
	w.cfg.ssl_ctx = client_ctx;
	snprintf(w.cfg.tls_name, sizeof(w.cfg.tls_name), "localhost");
	world_pool(&w);
	res_init(&r);
	start(&w, &q, &r);
	run_until(w.base, &r.done, 3000);
	print_message("  implicit: %s\n", r.reason);
	assert_int_equal(r.result, IMAP_FETCH_OK);
	assert_true(res_data_is(&r, "implicit", 8));
	res_free(&r);
	/* the certificate is not for this name */
	imap_pool_free(&w.pool);
	snprintf(w.cfg.tls_name, sizeof(w.cfg.tls_name), "imap.example.org");
	world_pool(&w);
	res_init(&r);
	start(&w, &q, &r);
	run_until(w.base, &r.done, 3000);
	print_message("  wrong name: %s\n", r.reason);
	assert_int_equal(r.result, IMAP_FETCH_UNAVAILABLE);
	assert_non_null(strstr(r.reason, "TLS"));
	res_free(&r);
	world_free(&w);

	SSL_CTX_free(client_ctx);
	SSL_CTX_free(server_ctx);
	unlink(cert_path);
}

/* Last: nothing secret in anything the client logged. */
static void
test_logs_hold_no_secret(void **state)
{
	FILE *fp = fopen(log_path, "r");
	char line[4096];
	size_t lines = 0;

	(void)state;
	assert_non_null(fp);
	while (fgets(line, sizeof(line), fp) != NULL) {
		lines++;
		if (strstr(line, TOKEN) != NULL || strstr(line, PASSWORD) != NULL ||
		    strstr(line, plain_submit) != NULL) {
			print_error("secret in the log: %s", line);
			fail();
		}
	}
	fclose(fp);
	print_message("  %zu log lines checked (%s)\n", lines, log_path);
	assert_true(lines > 20);
	if (getenv("KEEP_IMAP_CLIENT_LOG") == NULL)
		unlink(log_path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_urlfetch_cyrus),
		cmocka_unit_test(test_urlfetch_dovecot),
		cmocka_unit_test(test_urlfetch_nodata),
		cmocka_unit_test(test_too_big),
		cmocka_unit_test(test_disconnect),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_timeouts),
		cmocka_unit_test(test_pooling),
		cmocka_unit_test(test_stale_and_refused),
		cmocka_unit_test(test_max_conns),
		cmocka_unit_test(test_proxy_auth),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_pause),
		cmocka_unit_test(test_gssapi),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_literal_commands),
		cmocka_unit_test(test_tls),
		cmocka_unit_test(test_logs_hold_no_secret),
	};
	struct conf_log lc;
	int fd;

	fd = mkstemp(log_path);
	if (fd < 0)
		return 1;
	close(fd);
	memset(&lc, 0, sizeof(lc));
	lc.dest = LOG_DEST_FILE;
	lc.level = LOG_DEBUG;
	snprintf(lc.file, sizeof(lc.file), "%s", log_path);
	log_open(&lc, 1);
	{
		char b64[200];

		plain_b64("", b64, sizeof(b64));
		snprintf(plain_submit, sizeof(plain_submit), "%s", b64);
		snprintf(expect_auth_submit, sizeof(expect_auth_submit),
		    "%%T AUTHENTICATE PLAIN %s", b64);
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
