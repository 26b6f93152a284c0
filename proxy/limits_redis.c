/*
 * limits_redis.c - see limits_redis.h.
 *
 * SECURITY: Redis is trusted to count, not to be well formed: an answer
 * that is not an array of at most LIMITS_REDIS_MAX_VALUES integers is an
 * error like a lost connection.  Nothing read from Redis reaches a client;
 * error texts are logged through log_sanitize().  The password (from
 * rate_limits.redis.password_file, read by the master before privileges are
 * dropped) is sent only in AUTH and never logged.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <openssl/evp.h>

#include "conf.h"
#include "limits_redis.h"
#include "log.h"
#include "util.h"

#define LIMITS_REDIS_MAX_VALUES 64

#ifdef HAVE_HIREDIS

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#include <hiredis/adapters/libevent.h>
#pragma GCC diagnostic pop

enum req_kind { Q_EVAL, Q_AUTH, Q_SCRIPT };

struct limits_redis_req {
	TAILQ_ENTRY(limits_redis_req) entry;
	struct limits_redis *r;
	struct event *timer;		/* command_timeout_ms */
	enum req_kind kind;
	limits_redis_cb cb;		/* NULL: nobody waits */
	void *ctx;
};

struct limits_redis {
	struct event_base *base;
	const struct conf_redis *conf;
	redisAsyncContext *ac;		/* NULL: not connected */
	int connected;			/* the TCP connection is up */
	int down;			/* "unreachable" was logged */
	int ever_up;
	struct event *connect_timer;
	uint64_t retry_at_ms;		/* no new connection before */
	char why[128];			/* the last failure, for callbacks */
	char *script;
	size_t script_len;
	char sha[41];
	const char *password;		/* "" = no AUTH */
	char host[64];
	int port;
	uint64_t last_error_log_ms;
	TAILQ_HEAD(, limits_redis_req) reqs;	/* every request hiredis holds */
};

static void
mark_down(struct limits_redis *r, const char *why)
{
	char clean[200];

	snprintf(r->why, sizeof(r->why), "%s", why);
	r->retry_at_ms = util_now_ms() + r->conf->retry_interval_ms;
	if (r->down)
		return;
	r->down = 1;
	log_warn("redis %s: unavailable (%s): until it is back, each limit "
	    "follows its on_redis_error", r->conf->addr.text,
	    log_sanitize(clean, sizeof(clean), why, strlen(why)));
}

static void
mark_up(struct limits_redis *r)
{
	if (r->down)
		log_warn("redis %s: available again", r->conf->addr.text);
	else if (!r->ever_up)
		log_info("redis %s: connected", r->conf->addr.text);
	r->down = 0;
	r->ever_up = 1;
}

/* End the connection: every request waiting on it fails (now, or right
 * after the hiredis callback we may be in returns). */
static void
drop(struct limits_redis *r, const char *why)
{
	redisAsyncContext *ac = r->ac;

	mark_down(r, why);
	if (ac == NULL)
		return;
	r->ac = NULL;
	r->connected = 0;
	evtimer_del(r->connect_timer);
	redisAsyncFree(ac);
}

static void
log_error_reply(struct limits_redis *r, const char *what, const char *text,
		size_t len)
{
	char clean[200];
	uint64_t now = util_now_ms();

	/* a misconfiguration answers every command alike: once a second */
	if (now - r->last_error_log_ms < 1000 && r->last_error_log_ms != 0)
		return;
	r->last_error_log_ms = now;
	log_warn("redis %s: %s: %s", r->conf->addr.text, what,
	    log_sanitize(clean, sizeof(clean), text, len));
}

static void
reply_cb(redisAsyncContext *ac, void *reply_, void *privdata)
{
	struct limits_redis_req *q = privdata;
	struct limits_redis *r = q->r;
	redisReply *reply = reply_;
	long long values[LIMITS_REDIS_MAX_VALUES];
	const char *err = NULL;
	size_t n = 0, i;

	(void)ac;
	TAILQ_REMOVE(&r->reqs, q, entry);
	if (q->timer != NULL)
		event_free(q->timer);
	if (reply == NULL) {
		err = r->why[0] ? r->why : "connection lost";
	} else if (reply->type == REDIS_REPLY_ERROR) {
		err = "error reply";
		log_error_reply(r, q->kind == Q_AUTH ? "AUTH refused" :
		    q->kind == Q_SCRIPT ? "SCRIPT LOAD refused" : "script failed",
		    reply->str, reply->len);
		/* without the script (or a login) this connection is of no
		 * use: the next one loads it again */
		if (q->kind != Q_EVAL || (reply->len >= 8 &&
		    strncmp(reply->str, "NOSCRIPT", 8) == 0))
			drop(r, q->kind == Q_AUTH ? "AUTH refused" :
			    "script not loaded");
	} else if (q->kind == Q_SCRIPT) {
		if (r->connected)
			mark_up(r);
	} else if (q->kind == Q_EVAL) {
		if (reply->type != REDIS_REPLY_ARRAY ||
		    reply->elements > LIMITS_REDIS_MAX_VALUES) {
			err = "unexpected reply";
		} else {
			for (i = 0; i < reply->elements; i++) {
				if (reply->element[i]->type != REDIS_REPLY_INTEGER) {
					err = "unexpected reply";
					break;
				}
				values[n++] = reply->element[i]->integer;
			}
		}
		if (err != NULL)
			log_error_reply(r, "script answer", err, strlen(err));
	}
	if (q->cb != NULL)
		q->cb(q->ctx, err == NULL ? values : NULL, err == NULL ? n : 0,
		    err);
	free(q);
}

static void
req_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct limits_redis_req *q = arg;

	(void)fd;
	(void)what;
	/* a Redis that does not answer in time is as good as down */
	drop(q->r, "command timeout");
}

static void
connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct limits_redis *r = arg;

	(void)fd;
	(void)what;
	if (r->ac != NULL && !r->connected)
		drop(r, "connect timeout");
}

static void
on_connect(const redisAsyncContext *ac, int status)
{
	struct limits_redis *r = ac->data;

	if (r == NULL || r->ac != ac)
		return;
	evtimer_del(r->connect_timer);
	if (status != REDIS_OK) {
		/* hiredis frees the context when we return */
		r->ac = NULL;
		r->connected = 0;
		mark_down(r, ac->errstr[0] ? ac->errstr : "cannot connect");
		return;
	}
	r->connected = 1;
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
	struct limits_redis *r = ac->data;

	if (r == NULL || r->ac != ac)
		return;
	r->ac = NULL;
	r->connected = 0;
	mark_down(r, status == REDIS_OK ? "connection closed" :
	    ac->errstr[0] ? ac->errstr : "connection lost");
}

static struct limits_redis_req *
send_argv(struct limits_redis *r, enum req_kind kind, int argc,
	  const char **argv, const size_t *lens, limits_redis_cb cb, void *ctx)
{
	struct limits_redis_req *q = calloc(1, sizeof(*q));
	struct timeval tv = { r->conf->command_timeout_ms / 1000,
	    (r->conf->command_timeout_ms % 1000) * 1000 };

	if (q == NULL)
		return NULL;
	q->r = r;
	q->kind = kind;
	q->cb = cb;
	q->ctx = ctx;
	q->timer = evtimer_new(r->base, req_timeout_cb, q);
	if (q->timer == NULL || redisAsyncCommandArgv(r->ac, reply_cb, q, argc,
	    argv, lens) != REDIS_OK) {
		if (q->timer != NULL)
			event_free(q->timer);
		free(q);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&r->reqs, q, entry);
	evtimer_add(q->timer, &tv);
	return q;
}

static int
start_connection(struct limits_redis *r)
{
	const struct conf_redis *c = r->conf;
	redisAsyncContext *ac;
	struct timeval tv = { c->connect_timeout_ms / 1000,
	    (c->connect_timeout_ms % 1000) * 1000 };

	if (c->addr.is_unix)
		ac = redisAsyncConnectUnix(c->addr.text);
	else
		ac = redisAsyncConnect(r->host, r->port);
	if (ac == NULL) {
		mark_down(r, "out of memory");
		return -1;
	}
	if (ac->err) {
		mark_down(r, ac->errstr);
		redisAsyncFree(ac);
		return -1;
	}
	ac->data = r;
	if (redisLibeventAttach(ac, r->base) != REDIS_OK) {
		mark_down(r, "cannot attach to the event loop");
		redisAsyncFree(ac);
		return -1;
	}
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	r->ac = ac;
	r->connected = 0;
	evtimer_add(r->connect_timer, &tv);
	/* sent as soon as the connection is up, before any command */
	if (r->password[0] != '\0') {
		const char *av[3] = { "AUTH", c->user, r->password };
		size_t al[3] = { 4, strlen(c->user), strlen(r->password) };

		if (c->user[0] == '\0') {
			av[1] = r->password;
			al[1] = al[2];
		}
		if (send_argv(r, Q_AUTH, c->user[0] ? 3 : 2, av, al, NULL,
		    NULL) == NULL) {
			drop(r, "cannot send AUTH");
			return -1;
		}
	}
	{
		const char *av[3] = { "SCRIPT", "LOAD", r->script };
		size_t al[3] = { 6, 4, r->script_len };

		if (send_argv(r, Q_SCRIPT, 3, av, al, NULL, NULL) == NULL) {
			drop(r, "cannot send SCRIPT LOAD");
			return -1;
		}
	}
	return 0;
}

struct limits_redis *
limits_redis_new(struct event_base *base, const struct conf_redis *conf,
		 const char *script, const char *password, const char **error_r)
{
	struct limits_redis *r = calloc(1, sizeof(*r));
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;

	if (r == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	TAILQ_INIT(&r->reqs);
	r->base = base;
	r->conf = conf;
	r->password = password != NULL ? password : "";
	r->script_len = strlen(script);
	r->script = strdup(script);
	r->connect_timer = evtimer_new(base, connect_timeout_cb, r);
	if (r->script == NULL || r->connect_timer == NULL ||
	    EVP_Digest(script, r->script_len, md, &mdlen, EVP_sha1(), NULL) != 1 ||
	    mdlen != 20) {
		*error_r = "out of memory";
		limits_redis_free(&r);
		return NULL;
	}
	for (i = 0; i < mdlen; i++)
		snprintf(r->sha + 2 * i, 3, "%02x", md[i]);
	if (!conf->addr.is_unix)
		util_sockaddr_ip((const struct sockaddr *)&conf->addr.ss, r->host,
		    sizeof(r->host), &r->port);
	return r;
}

void
limits_redis_free(struct limits_redis **rp)
{
	struct limits_redis *r = *rp;

	if (r == NULL)
		return;
	*rp = NULL;
	snprintf(r->why, sizeof(r->why), "shutting down");
	if (r->ac != NULL) {
		redisAsyncContext *ac = r->ac;

		r->ac = NULL;
		redisAsyncFree(ac);	/* fails what still waits */
	}
	if (r->connect_timer != NULL)
		event_free(r->connect_timer);
	free(r->script);
	free(r);
}

struct limits_redis_req *
limits_redis_eval(struct limits_redis *r, int nkeys, int nargs,
		  const char *const *argv, const size_t *lens,
		  limits_redis_cb cb, void *ctx)
{
	const char **av;
	size_t *al;
	char nk[16];
	int argc = 3 + nkeys + nargs, i;
	struct limits_redis_req *q;

	if (r->ac == NULL) {
		if (util_now_ms() < r->retry_at_ms)
			return NULL;	/* down: the caller decides now */
		if (start_connection(r) < 0)
			return NULL;
	}
	av = calloc((size_t)argc, sizeof(*av));
	al = calloc((size_t)argc, sizeof(*al));
	if (av == NULL || al == NULL) {
		free(av);
		free(al);
		return NULL;
	}
	snprintf(nk, sizeof(nk), "%d", nkeys);
	av[0] = "EVALSHA";
	al[0] = 7;
	av[1] = r->sha;
	al[1] = 40;
	av[2] = nk;
	al[2] = strlen(nk);
	for (i = 0; i < nkeys + nargs; i++) {
		av[3 + i] = argv[i];
		al[3 + i] = lens[i];
	}
	q = send_argv(r, Q_EVAL, argc, av, al, cb, ctx);
	free(av);
	free(al);
	return q;
}

void
limits_redis_cancel(struct limits_redis_req **reqp)
{
	struct limits_redis_req *q = *reqp;

	if (q == NULL)
		return;
	*reqp = NULL;
	/* hiredis still holds it: the answer (or the failure) frees it;
	 * the timer stays, so a hanging Redis is still noticed */
	q->cb = NULL;
	q->ctx = NULL;
}

#else /* !HAVE_HIREDIS */

struct limits_redis {
	int unused;
};

struct limits_redis *
limits_redis_new(struct event_base *base, const struct conf_redis *conf,
		 const char *script, const char *password, const char **error_r)
{
	(void)base;
	(void)conf;
	(void)script;
	(void)password;
	*error_r = "built without Redis support (configure --with-redis)";
	return NULL;
}

void
limits_redis_free(struct limits_redis **rp)
{
	*rp = NULL;
}

struct limits_redis_req *
limits_redis_eval(struct limits_redis *r, int nkeys, int nargs,
		  const char *const *argv, const size_t *lens,
		  limits_redis_cb cb, void *ctx)
{
	(void)r;
	(void)nkeys;
	(void)nargs;
	(void)argv;
	(void)lens;
	(void)cb;
	(void)ctx;
	return NULL;
}

void
limits_redis_cancel(struct limits_redis_req **reqp)
{
	*reqp = NULL;
}

#endif /* HAVE_HIREDIS */
