/*
 * rate_limits.c - see rate_limits.h.
 *
 * Every check or count is an operation (struct lim_op) on a few counters
 * (struct lim_item): add to a window and read its sum, admit into a
 * concurrency set, refresh or release an entry there.  The same operation
 * runs against the in-memory tables (limits_store.h), synchronously, or as
 * one EVALSHA of the script below against Redis (limits_redis.h),
 * asynchronously; what it means for the session -- refuse, go on -- is
 * decided afterwards from its results, the same way for both.
 *
 * SECURITY: the subjects counted come from the client (its address, the
 * identity it authenticated as or tried, the URLs it sent): identities are
 * printable without spaces (smtp_auth.c), a tried name is checked the same
 * way here, URLs are counted only as a keyed hash (limits_url.h).  Log
 * lines never hold a URLAUTH token (the redacted URL is logged).
 *
 * Redis key schema (prefix = rate_limits.redis.prefix, "msaproxy:"):
 *   <prefix>w:<limit>:<window>:<subject>   hash: field = slot number
 *       (server time / slot length), value = the count in that slot;
 *       expires (slots + 1) * slot length after the last addition
 *   <prefix>c:<limit>:<subject>            sorted set: member =
 *       <server_name>:<instance tag>:<session id>, score = when the entry
 *       lapses (ms, server time); refreshed every lease / 3 by its
 *       instance; the set expires a lease after its last change
 * where <limit> is the configuration name and <subject> an identity, an
 * address (IPv6: its /ipv6_prefix network) or the hex HMAC of a URL.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <openssl/rand.h>

#include "burl_policy.h"
#include "conf.h"
#include "rate_limits.h"
#include "limits_redis.h"
#include "limits_store.h"
#include "limits_url.h"
#include "log.h"
#include "sasl.h"
#include "session.h"
#include "util.h"
#include "worker.h"

#define LIM_OP_ITEMS 8		/* counters in one operation */
#define LIM_TX_URLS 16		/* URLs of one message awaiting its 250 */
#define LIM_SUBJECT_MAX 256
#define LIM_MEMBER_MAX 96
#define LIM_HEX (2 * LIMITS_URL_HASH_LEN + 1)

/*
 * The one script (Redis >= 5: redis.call('TIME') in a script that
 * writes).  KEYS[i] with ARGV[4i-3..4i] = op, a, b, c:
 *   "w", window, add, -      add to the window (add may be 0) and return
 *                            its sum; slots as limits_window_geometry()
 *   "a", max, member, lease  admit member if fewer than max unexpired
 *                            entries: count (> 0) if admitted, -count if not
 *   "r", -, member, lease    refresh member's entry if it is there
 *   "d", -, member, -        remove member's entry
 */
static const char lim_script[] =
"local t = redis.call('TIME')\n"
"local now = tonumber(t[1])\n"
"local nowms = now * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
"local out = {}\n"
"for i = 1, #KEYS do\n"
"  local k = KEYS[i]\n"
"  local b = (i - 1) * 4\n"
"  local op = ARGV[b + 1]\n"
"  if op == 'w' then\n"
"    local window = tonumber(ARGV[b + 2])\n"
"    local add = tonumber(ARGV[b + 3])\n"
"    local slot = math.floor((window + 15) / 16)\n"
"    local n = math.floor((window + slot - 1) / slot)\n"
"    local cur = math.floor(now / slot)\n"
"    if add > 0 then redis.call('HINCRBY', k, cur, ARGV[b + 3]) end\n"
"    local sum = 0\n"
"    local h = redis.call('HGETALL', k)\n"
"    for j = 1, #h, 2 do\n"
"      if tonumber(h[j]) > cur - n then\n"
"        sum = sum + tonumber(h[j + 1])\n"
"      else\n"
"        redis.call('HDEL', k, h[j])\n"
"      end\n"
"    end\n"
"    if add > 0 then redis.call('EXPIRE', k, (n + 1) * slot) end\n"
"    out[i] = sum\n"
"  elseif op == 'a' then\n"
"    local max = tonumber(ARGV[b + 2])\n"
"    local lease = tonumber(ARGV[b + 4])\n"
"    redis.call('ZREMRANGEBYSCORE', k, '-inf', nowms)\n"
"    local c = redis.call('ZCARD', k)\n"
"    if c < max then\n"
"      redis.call('ZADD', k, nowms + lease, ARGV[b + 3])\n"
"      redis.call('PEXPIRE', k, lease)\n"
"      out[i] = c + 1\n"
"    else\n"
"      out[i] = -c\n"
"    end\n"
"  elseif op == 'r' then\n"
"    local lease = tonumber(ARGV[b + 4])\n"
"    if redis.call('ZADD', k, 'XX', 'CH', nowms + lease, ARGV[b + 3]) > 0 then\n"
"      redis.call('PEXPIRE', k, lease)\n"
"    end\n"
"    out[i] = 0\n"
"  elseif op == 'd' then\n"
"    out[i] = redis.call('ZREM', k, ARGV[b + 3])\n"
"  else\n"
"    return redis.error_reply('msaproxy limits: unknown operation')\n"
"  end\n"
"end\n"
"return out\n";

enum lim_subject { SUBJ_IDENTITY, SUBJ_ADDRESS, SUBJ_URL };

static const struct lim_def {
	enum lim_subject subject;
	int gauge;			/* a concurrency cap */
	enum smtp_reply_id reply;	/* when exceeded */
	enum smtp_reply_id unavail;	/* when Redis cannot tell, and "closed" */
} lim_defs[CONF_LIMIT_COUNT] = {
	[CONF_LIMIT_MESSAGES] = { SUBJ_IDENTITY, 0, R_LIMIT_MESSAGES, R_LIMIT_UNAVAIL },
	[CONF_LIMIT_RECIPIENTS] = { SUBJ_IDENTITY, 0, R_LIMIT_RECIPIENTS, R_LIMIT_UNAVAIL },
	[CONF_LIMIT_BYTES] = { SUBJ_IDENTITY, 0, R_LIMIT_BYTES, R_LIMIT_UNAVAIL },
	[CONF_LIMIT_SESSIONS] = { SUBJ_IDENTITY, 1, R_LIMIT_SESSIONS, R_LIMIT_UNAVAIL },
	[CONF_LIMIT_AUTH_IDENTITY] = { SUBJ_IDENTITY, 0, R_LIMIT_AUTH_IDENTITY, R_LIMIT_UNAVAIL },
	[CONF_LIMIT_AUTH_ADDRESS] = { SUBJ_ADDRESS, 0, R_LIMIT_AUTH_ADDRESS, R_LIMIT_UNAVAIL },
	[CONF_LIMIT_BURL_FETCHES] = { SUBJ_IDENTITY, 0, R_LIMIT_BURL_FETCHES, R_LIMIT_UNAVAIL },
	[CONF_LIMIT_BURL_BYTES] = { SUBJ_IDENTITY, 0, R_LIMIT_BURL_BYTES, R_LIMIT_UNAVAIL },
	[CONF_LIMIT_CONNECTIONS] = { SUBJ_ADDRESS, 1, R_LIMIT_CONNECTIONS, R_LIMIT_UNAVAIL_421 },
	[CONF_LIMIT_CONNECTION_RATE] = { SUBJ_ADDRESS, 0, R_LIMIT_CONNECTION_RATE, R_LIMIT_UNAVAIL_421 },
	[CONF_LIMIT_URL_REUSE] = { SUBJ_URL, 0, R_LIMIT_URL_REUSE, R_LIMIT_UNAVAIL },
};

/* Set by the master (limits_global_init), inherited by the workers. */
static uint8_t url_key[1024];
static size_t url_key_len;
static char redis_password[512];
static char instance_tag[17];
/* Without Redis: the instance's counters, one table per limit that is on
 * (mem_index: its table in the store, -1 for none); the region is shared,
 * these handles are each process's copy. */
static struct lim_store *mem_store;
static int mem_index[CONF_LIMIT_COUNT];

enum lim_kind { LK_WINDOW, LK_ADMIT, LK_REFRESH, LK_RELEASE };

struct lim_item {
	enum conf_limit_id id;
	enum lim_kind kind;
	uint64_t add;			/* LK_WINDOW: 0 = read only */
	char subject[LIM_SUBJECT_MAX];
	char member[LIM_MEMBER_MAX];	/* the set entries (Redis) */
	/* results */
	uint64_t value;			/* window sum after add; entries counted */
	int admitted;
	int failed;			/* Redis could not tell */
};

enum op_kind { OP_FIRE, OP_GATE, OP_CONNECT, OP_AUTH };

struct lim_op {
	struct limits *lw;
	struct session *s;		/* NULL for OP_FIRE */
	enum op_kind kind;
	limits_done_fn done;
	struct limits_redis_req *req;
	enum smtp_verb verb;		/* OP_GATE */
	unsigned n;
	struct lim_item item[LIM_OP_ITEMS];
};

/* A concurrency entry a session holds. */
struct lim_lease {
	TAILQ_ENTRY(lim_lease) entry;
	enum conf_limit_id id;
	char subject[LIM_SUBJECT_MAX];
	char member[LIM_MEMBER_MAX];
};

struct limits {
	const struct conf *conf;
	struct event_base *base;
	struct lim_table *tables[CONF_LIMIT_COUNT];	/* memory store (shared) */
	uint64_t repairs[CONF_LIMIT_COUNT];		/* lim_table_repairs() seen */
	struct limits_redis *redis;			/* or Redis */
	struct event *heartbeat;
	TAILQ_HEAD(, lim_lease) leases;
};

/* What a gate fetched, for the one command behind it. */
struct lim_value {
	enum conf_limit_id id;
	uint64_t value;
	int failed;
};

struct limits_session {
	struct lim_op *pending;		/* at most one operation waits */
	int fresh;			/* the pending gate's answer is in */
	int has_ticket;
	enum smtp_verb ticket_verb;
	unsigned nticket;
	struct lim_value ticket[LIM_OP_ITEMS];
	char gate_url[LIM_HEX];		/* the URL hash the gate fetched */
	/* this transaction (s->tx.gen) */
	int mail_valid;
	uint8_t mail_gen;
	int rcpt_known, rcpt_logged;
	uint64_t rcpt_value;
	int final_valid;
	uint8_t final_gen;
	unsigned finals_ok;
	int url_valid;
	uint8_t url_gen;
	unsigned url_count;
	char (*urls)[LIM_HEX];		/* LIM_TX_URLS, made on first BURL */
	struct lim_lease *lease_addr;	/* connections_per_address */
	struct lim_lease *lease_id;	/* sessions_per_identity */
};

enum lim_verdict { V_OK, V_EXCEEDED, V_UNAVAIL };

/* ------------------------------------------------------------------ */
/* Helpers */

static const struct conf_rate_limit *
lim_conf(const struct limits *lw, enum conf_limit_id id)
{
	return &lw->conf->rate_limits.limit[id];
}

static int
conf_lim_on(const struct conf *conf, enum conf_limit_id id)
{
	if (conf->rate_limits.limit[id].max == 0)
		return 0;
	if (id == CONF_LIMIT_URL_REUSE || id == CONF_LIMIT_BURL_FETCHES ||
	    id == CONF_LIMIT_BURL_BYTES)
		return conf->burl.enabled;
	return 1;
}

static int
lim_on(const struct limits *lw, enum conf_limit_id id)
{
	return lw != NULL && conf_lim_on(lw->conf, id);
}

static uint64_t
now_s(void)
{
	return util_now_ms() / 1000;
}

/* The address as counted: IPv6 per /ipv6_prefix network (one client
 * holds a /64 or more), IPv4 as is. */
static void
address_subject(const struct session *s, unsigned prefix, char *out,
		size_t size)
{
	struct in6_addr a;
	char buf[INET6_ADDRSTRLEN];
	unsigned i;

	if (strchr(s->peer_ip, ':') == NULL || prefix >= 128 ||
	    inet_pton(AF_INET6, s->peer_ip, &a) != 1) {
		snprintf(out, size, "%s", s->peer_ip);
		return;
	}
	if (IN6_IS_ADDR_V4MAPPED(&a)) {
		/* an IPv4 client of a dual-stack socket: its own address */
		inet_ntop(AF_INET, &a.s6_addr[12], buf, sizeof(buf));
		snprintf(out, size, "%s", buf);
		return;
	}
	for (i = 0; i < 16; i++) {
		unsigned bits = prefix >= (i + 1) * 8 ? 8 :
		    prefix > i * 8 ? prefix - i * 8 : 0;

		a.s6_addr[i] &= (uint8_t)(0xff << (8 - bits));
	}
	inet_ntop(AF_INET6, &a, buf, sizeof(buf));
	snprintf(out, size, "%s/%u", buf, prefix);
}

/* Printable, no spaces: as smtp_auth.c requires of identities. */
static int
subject_ok(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 32 || *s == 127)
			return 0;
	return 1;
}

static struct limits_session *
ls_get(struct session *s)
{
	if (s->lim == NULL)
		s->lim = calloc(1, sizeof(*s->lim));
	return s->lim;
}

static struct lim_op *
op_new(struct limits *lw, struct session *s, enum op_kind kind)
{
	struct lim_op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return NULL;
	op->lw = lw;
	op->s = s;
	op->kind = kind;
	return op;
}

static struct lim_item *
op_add(struct lim_op *op, enum conf_limit_id id, enum lim_kind kind,
       uint64_t add, const char *subject, const char *member)
{
	struct lim_item *it;

	if (op->n >= LIM_OP_ITEMS)
		return NULL;
	it = &op->item[op->n++];
	it->id = id;
	it->kind = kind;
	it->add = add;
	snprintf(it->subject, sizeof(it->subject), "%s", subject);
	if (member != NULL)
		snprintf(it->member, sizeof(it->member), "%s", member);
	it->admitted = 1;
	return it;
}

static void
member_of(const struct session *s, char *out, size_t size)
{
	snprintf(out, size, "%.40s:%s:%s", s->conf->server_name, instance_tag,
	    s->id);
}

/* ------------------------------------------------------------------ */
/* Running an operation */

static void reset_report(unsigned slot, uint64_t n, void *arg);

static void
run_memory(struct lim_op *op)
{
	struct limits *lw = op->lw;
	uint64_t now = now_s();
	unsigned i;

	/* a worker that died with sessions counted: given back first */
	if (mem_store != NULL)
		lim_store_run_resets(mem_store, reset_report, NULL);

	for (i = 0; i < op->n; i++) {
		struct lim_item *it = &op->item[i];
		struct lim_table *t = lw->tables[it->id];
		size_t len = strlen(it->subject);

		if (t == NULL)
			continue;
		switch (it->kind) {
		case LK_WINDOW:
			it->value = lim_table_add(t, it->subject, len, it->add,
			    now);
			break;
		case LK_ADMIT:
			it->admitted = lim_table_admit(t, it->subject, len,
			    lim_conf(lw, it->id)->max, &it->value);
			break;
		case LK_RELEASE:
			lim_table_release(t, it->subject, len);
			break;
		case LK_REFRESH:
			break;
		}
		if (lim_table_repairs(t) != lw->repairs[it->id]) {
			lw->repairs[it->id] = lim_table_repairs(t);
			log_warn("rate_limits: the counters of %s were repaired: "
			    "a process died holding their lock (the operation "
			    "it was making is lost)", conf_limit_name(it->id));
		}
	}
}

static void op_finish(struct lim_op *op);

static void
op_redis_cb(void *ctx, const long long *values, size_t n, const char *error)
{
	struct lim_op *op = ctx;
	unsigned i;

	op->req = NULL;
	for (i = 0; i < op->n; i++) {
		struct lim_item *it = &op->item[i];

		if (values == NULL || n != op->n) {
			it->failed = 1;
			continue;
		}
		if (it->kind == LK_ADMIT) {
			it->admitted = values[i] > 0;
			it->value = (uint64_t)(values[i] > 0 ? values[i] : -values[i]);
		} else {
			it->value = values[i] > 0 ? (uint64_t)values[i] : 0;
		}
	}
	if (values == NULL && op->s != NULL)
		log_debug("%s: limits: Redis: %s", op->s->id,
		    error != NULL ? error : "no answer");
	op_finish(op);
}

/* 1 if sent (the answer comes later), 0 if Redis cannot be asked now. */
static int
run_redis(struct lim_op *op, int wait)
{
	const struct conf_rate_limits *rl = &op->lw->conf->rate_limits;
	const char *argv[LIM_OP_ITEMS * 5];
	size_t lens[LIM_OP_ITEMS * 5];
	char keys[LIM_OP_ITEMS][LIM_SUBJECT_MAX + 160];
	char nums[LIM_OP_ITEMS][3][24];
	unsigned i, lease_ms = rl->redis.lease * 1000;

	for (i = 0; i < op->n; i++) {
		const struct lim_item *it = &op->item[i];
		const char *name = conf_limit_name(it->id);
		const char **a = argv + op->n + 4 * i;
		size_t *l = lens + op->n + 4 * i;

		if (lim_defs[it->id].gauge)
			snprintf(keys[i], sizeof(keys[i]), "%sc:%s:%s",
			    rl->redis.prefix, name, it->subject);
		else
			snprintf(keys[i], sizeof(keys[i]), "%sw:%s:%u:%s",
			    rl->redis.prefix, name, rl->limit[it->id].window,
			    it->subject);
		argv[i] = keys[i];
		lens[i] = strlen(keys[i]);
		switch (it->kind) {
		case LK_WINDOW:
			a[0] = "w";
			snprintf(nums[i][0], sizeof(nums[i][0]), "%u",
			    rl->limit[it->id].window);
			snprintf(nums[i][1], sizeof(nums[i][1]), "%llu",
			    (unsigned long long)it->add);
			a[1] = nums[i][0];
			a[2] = nums[i][1];
			a[3] = "0";
			break;
		case LK_ADMIT:
			a[0] = "a";
			snprintf(nums[i][0], sizeof(nums[i][0]), "%llu",
			    (unsigned long long)rl->limit[it->id].max);
			a[1] = nums[i][0];
			a[2] = it->member;
			snprintf(nums[i][2], sizeof(nums[i][2]), "%u", lease_ms);
			a[3] = nums[i][2];
			break;
		case LK_REFRESH:
			a[0] = "r";
			a[1] = "0";
			a[2] = it->member;
			snprintf(nums[i][2], sizeof(nums[i][2]), "%u", lease_ms);
			a[3] = nums[i][2];
			break;
		case LK_RELEASE:
			a[0] = "d";
			a[1] = "0";
			a[2] = it->member;
			a[3] = "0";
			break;
		}
		l[0] = strlen(a[0]);
		l[1] = strlen(a[1]);
		l[2] = strlen(a[2]);
		l[3] = strlen(a[3]);
	}
	/* hiredis copies the command out at once: keys and nums may go */
	op->req = limits_redis_eval(op->lw->redis, (int)op->n, (int)(4 * op->n),
	    argv, lens, wait ? op_redis_cb : NULL, wait ? op : NULL);
	return op->req != NULL;
}

/* Run op.  1: finished now, results in op->item; 0: op_finish() follows. */
static int
op_run(struct lim_op *op)
{
	unsigned i;

	if (op->n == 0)
		return 1;
	if (op->lw->redis == NULL) {
		run_memory(op);
		return 1;
	}
	if (run_redis(op, op->kind != OP_FIRE)) {
		if (op->kind == OP_FIRE) {
			op->req = NULL;		/* nobody waits for it */
			return 1;
		}
		return 0;
	}
	for (i = 0; i < op->n; i++)
		op->item[i].failed = 1;
	return 1;
}

/* Count without waiting (op is freed). */
static void
fire(struct lim_op *op)
{
	if (op == NULL)
		return;
	op->kind = OP_FIRE;
	op->s = NULL;
	op_run(op);
	free(op);
}

/* ------------------------------------------------------------------ */
/* Verdicts */

static enum lim_verdict
verdict(const struct limits *lw, enum conf_limit_id id, int failed,
	int exceeded)
{
	if (failed)
		return lim_conf(lw, id)->on_redis_error == CONF_LIMIT_FAIL_CLOSED ?
		    V_UNAVAIL : V_OK;
	return exceeded ? V_EXCEEDED : V_OK;
}

/* The log line naming the limit, and why. */
static void
log_refusal(const struct session *s, enum conf_limit_id id,
	    enum lim_verdict v, const char *who, uint64_t value)
{
	const struct conf_rate_limit *c = &s->conf->rate_limits.limit[id];

	if (v == V_UNAVAIL)
		log_info("%s: limit %s for %s: counters unavailable (Redis), "
		    "on_redis_error is closed: refused", s->id,
		    conf_limit_name(id), who);
	else if (lim_defs[id].gauge)
		log_info("%s: limit %s exceeded by %s: %llu of %llu at once",
		    s->id, conf_limit_name(id), who, (unsigned long long)value,
		    (unsigned long long)c->max);
	else
		log_info("%s: limit %s exceeded by %s: %llu of %llu per %u s",
		    s->id, conf_limit_name(id), who, (unsigned long long)value,
		    (unsigned long long)c->max, c->window);
}

static void
refuse(struct session *s, enum conf_limit_id id, enum lim_verdict v,
       const char *who, uint64_t value)
{
	log_refusal(s, id, v, who, value);
	session_reply(s, v == V_UNAVAIL ? lim_defs[id].unavail :
	    lim_defs[id].reply);
}

static void
log_failed_open(const struct session *s, enum conf_limit_id id)
{
	log_debug("%s: limit %s: counters unavailable (Redis), on_redis_error "
	    "is open: not enforced", s->id, conf_limit_name(id));
}

/* ------------------------------------------------------------------ */
/* Concurrency entries */

static struct lim_lease *
lease_new(struct limits *lw, const struct lim_item *it)
{
	struct lim_lease *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return NULL;
	l->id = it->id;
	snprintf(l->subject, sizeof(l->subject), "%s", it->subject);
	snprintf(l->member, sizeof(l->member), "%s", it->member);
	TAILQ_INSERT_TAIL(&lw->leases, l, entry);
	return l;
}

static void
lease_release(struct limits *lw, struct lim_lease **lp)
{
	struct lim_lease *l = *lp;
	struct lim_op *op;

	if (l == NULL)
		return;
	*lp = NULL;
	TAILQ_REMOVE(&lw->leases, l, entry);
	op = op_new(lw, NULL, OP_FIRE);
	if (op != NULL) {
		op_add(op, l->id, LK_RELEASE, 0, l->subject, l->member);
		fire(op);
	}
	free(l);
}

/* An admitted entry of a refused action goes back at once. */
static void
item_release(struct limits *lw, const struct lim_item *it)
{
	struct lim_op *op = op_new(lw, NULL, OP_FIRE);

	if (op != NULL) {
		op_add(op, it->id, LK_RELEASE, 0, it->subject, it->member);
		fire(op);
	}
}

/* Redis only: the entries of live sessions must not lapse. */
static void
heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
	struct limits *lw = arg;
	struct lim_lease *l;
	struct lim_op *op = NULL;

	(void)fd;
	(void)what;
	TAILQ_FOREACH(l, &lw->leases, entry) {
		if (op == NULL && (op = op_new(lw, NULL, OP_FIRE)) == NULL)
			return;
		op_add(op, l->id, LK_REFRESH, 0, l->subject, l->member);
		if (op->n == LIM_OP_ITEMS) {
			fire(op);
			op = NULL;
		}
	}
	fire(op);
}

/* ------------------------------------------------------------------ */
/* Judging finished operations */

/*
 * A finished connect or AUTH operation: the first limit that refuses gives
 * its reply.  A window the action was added to is exceeded when it holds
 * more than max (the action counted); one only read, when it holds max
 * (the action would pass it).  An admission made for an action refused by
 * another limit goes back at once; one kept becomes the session's lease.
 */
static int
judge(struct session *s, struct lim_op *op)
{
	struct limits *lw = op->lw;
	struct limits_session *ls = s->lim;
	struct lim_item *admitted = NULL;
	int refused = 0, closing = s->state == S_CLOSING;
	unsigned i;

	for (i = 0; i < op->n; i++) {
		struct lim_item *it = &op->item[i];
		uint64_t max = lim_conf(lw, it->id)->max;
		enum lim_verdict v;

		if (it->kind == LK_ADMIT) {
			v = verdict(lw, it->id, it->failed, !it->admitted);
			if (!it->failed && it->admitted)
				admitted = it;
		} else {
			v = verdict(lw, it->id, it->failed, it->add > 0 ?
			    it->value > max : it->value >= max);
		}
		if (v == V_OK && it->failed)
			log_failed_open(s, it->id);
		if (v != V_OK && !refused && !closing) {
			refuse(s, it->id, v, it->subject, it->value);
			refused = 1;
		}
	}
	if (admitted != NULL) {
		if (refused || ls == NULL)
			item_release(lw, admitted);
		else if (admitted->id == CONF_LIMIT_CONNECTIONS)
			ls->lease_addr = lease_new(lw, admitted);
		else
			ls->lease_id = lease_new(lw, admitted);
	}
	return refused;
}

static void
ticket_store(struct limits_session *ls, const struct lim_op *op)
{
	unsigned i;

	ls->has_ticket = 1;
	ls->ticket_verb = op->verb;
	ls->nticket = op->n;
	for (i = 0; i < op->n; i++) {
		ls->ticket[i].id = op->item[i].id;
		ls->ticket[i].value = op->item[i].value;
		ls->ticket[i].failed = op->item[i].failed;
	}
}

static const struct lim_value *
ticket(const struct limits_session *ls, enum smtp_verb verb,
       enum conf_limit_id id)
{
	unsigned i;

	if (ls == NULL || !ls->has_ticket || ls->ticket_verb != verb)
		return NULL;
	for (i = 0; i < ls->nticket; i++)
		if (ls->ticket[i].id == id)
			return &ls->ticket[i];
	return NULL;
}

/* An asynchronous answer is in. */
static void
op_finish(struct lim_op *op)
{
	struct session *s = op->s;
	struct limits_session *ls;
	limits_done_fn done = op->done;
	int refused = 0;

	if (op->kind == OP_FIRE || s == NULL) {
		free(op);
		return;
	}
	ls = s->lim;
	if (ls != NULL && ls->pending == op)
		ls->pending = NULL;
	switch (op->kind) {
	case OP_GATE:
		if (ls != NULL) {
			ticket_store(ls, op);
			ls->fresh = 1;
		}
		free(op);
		if (s->state != S_CLOSING)
			session_resume(s);
		return;
	case OP_CONNECT:
	case OP_AUTH:
		refused = judge(s, op);
		break;
	default:
		break;
	}
	free(op);
	if (s->state != S_CLOSING || refused)
		done(s, refused);
}

/* Start a session's connect or AUTH operation: finished now (judged), or
 * pending (LIMITS_WAIT: op_finish() judges). */
static enum limits_result
op_start(struct session *s, struct lim_op *op, limits_done_fn done)
{
	struct limits_session *ls = ls_get(s);
	int refused;

	if (ls == NULL || ls->pending != NULL) {
		/* out of memory (or a bug): fail open */
		free(op);
		return LIMITS_GO;
	}
	op->done = done;
	if (op_run(op)) {
		refused = judge(s, op);
		free(op);
		return refused ? LIMITS_REFUSED : LIMITS_GO;
	}
	ls->pending = op;
	return LIMITS_WAIT;
}

/* ------------------------------------------------------------------ */
/* The session's checks */

enum limits_result
limits_connect(struct session *s, limits_done_fn done)
{
	struct limits *lw = s->worker->limits;
	struct lim_op *op;
	char addr[LIM_SUBJECT_MAX], member[LIM_MEMBER_MAX];

	if (!lim_on(lw, CONF_LIMIT_CONNECTION_RATE) &&
	    !lim_on(lw, CONF_LIMIT_CONNECTIONS))
		return LIMITS_GO;
	if ((op = op_new(lw, s, OP_CONNECT)) == NULL)
		return LIMITS_GO;
	address_subject(s, lw->conf->rate_limits.ipv6_prefix, addr, sizeof(addr));
	member_of(s, member, sizeof(member));
	if (lim_on(lw, CONF_LIMIT_CONNECTION_RATE))
		op_add(op, CONF_LIMIT_CONNECTION_RATE, LK_WINDOW, 1, addr, NULL);
	if (lim_on(lw, CONF_LIMIT_CONNECTIONS))
		op_add(op, CONF_LIMIT_CONNECTIONS, LK_ADMIT, 0, addr, member);
	return op_start(s, op, done);
}

/* What the command will check, fetched before it runs. */
static struct lim_op *
gate_op(struct session *s, struct limits *lw, enum smtp_verb verb,
	const char *args, char *url_hex)
{
	struct lim_op *op = NULL;
	static const enum conf_limit_id mail_ids[] = { CONF_LIMIT_MESSAGES,
	    CONF_LIMIT_RECIPIENTS, CONF_LIMIT_BYTES };
	static const enum conf_limit_id burl_ids[] = { CONF_LIMIT_BURL_FETCHES,
	    CONF_LIMIT_BURL_BYTES };
	unsigned i;

	url_hex[0] = '\0';
	switch (verb) {
	case V_MAIL:
		if (!s->auth)
			return NULL;
		for (i = 0; i < sizeof(mail_ids) / sizeof(mail_ids[0]); i++) {
			if (!lim_on(lw, mail_ids[i]))
				continue;
			if (op == NULL && (op = op_new(lw, s, OP_GATE)) == NULL)
				return NULL;
			op_add(op, mail_ids[i], LK_WINDOW, 0, s->identity, NULL);
		}
		break;
	case V_BURL:
		if (lim_on(lw, CONF_LIMIT_URL_REUSE)) {
			uint8_t h[LIMITS_URL_HASH_LEN];
			size_t len = strcspn(args, " ");

			if (limits_url_hash(args, len, url_key, url_key_len,
			    h) == 0) {
				limits_url_hex(h, url_hex);
				if ((op = op_new(lw, s, OP_GATE)) == NULL)
					return NULL;
				op_add(op, CONF_LIMIT_URL_REUSE, LK_WINDOW, 0,
				    url_hex, NULL);
			}
		}
		if (!s->auth)
			break;
		for (i = 0; i < sizeof(burl_ids) / sizeof(burl_ids[0]); i++) {
			if (!lim_on(lw, burl_ids[i]))
				continue;
			if (op == NULL && (op = op_new(lw, s, OP_GATE)) == NULL)
				return NULL;
			op_add(op, burl_ids[i], LK_WINDOW, 0, s->identity, NULL);
		}
		break;
	case V_AUTH:
		if (!s->auth && lim_on(lw, CONF_LIMIT_AUTH_ADDRESS)) {
			char addr[LIM_SUBJECT_MAX];

			address_subject(s, lw->conf->rate_limits.ipv6_prefix,
			    addr, sizeof(addr));
			if ((op = op_new(lw, s, OP_GATE)) == NULL)
				return NULL;
			op_add(op, CONF_LIMIT_AUTH_ADDRESS, LK_WINDOW, 0, addr,
			    NULL);
		}
		break;
	default:
		break;
	}
	if (op != NULL)
		op->verb = verb;
	return op;
}

enum limits_result
limits_gate(struct session *s, enum smtp_verb verb, const char *args)
{
	struct limits *lw = s->worker->limits;
	struct limits_session *ls = s->lim;
	struct lim_op *op;
	char url_hex[LIM_HEX];

	if (lw == NULL)
		return LIMITS_GO;
	if (ls != NULL) {
		if (ls->pending != NULL)
			return LIMITS_WAIT;
		if (ls->fresh) {
			/* the answer for this very line: it may run now */
			ls->fresh = 0;
			return LIMITS_GO;
		}
		ls->has_ticket = 0;
	}
	if (verb != V_MAIL && verb != V_BURL && verb != V_AUTH)
		return LIMITS_GO;
	op = gate_op(s, lw, verb, args, url_hex);
	if (op == NULL)
		return LIMITS_GO;
	if ((ls = ls_get(s)) == NULL) {
		free(op);
		return LIMITS_GO;
	}
	snprintf(ls->gate_url, sizeof(ls->gate_url), "%s", url_hex);
	if (op_run(op)) {
		ticket_store(ls, op);
		free(op);
		return LIMITS_GO;
	}
	ls->pending = op;
	return LIMITS_WAIT;
}

static uint64_t
mail_size(const struct smtp_path_args *pa)
{
	size_t i;

	for (i = 0; i < pa->param_count; i++)
		if (strcasecmp(pa->params[i].key, "SIZE") == 0 &&
		    pa->params[i].value != NULL)
			return strtoull(pa->params[i].value, NULL, 10);
	return 0;
}

int
limits_mail_refused(struct session *s, const struct smtp_path_args *pa)
{
	struct limits *lw = s->worker->limits;
	struct limits_session *ls = s->lim;
	const struct lim_value *t;
	uint64_t size = mail_size(pa);
	unsigned i;
	static const enum conf_limit_id ids[] = { CONF_LIMIT_MESSAGES,
	    CONF_LIMIT_BYTES, CONF_LIMIT_RECIPIENTS };

	if (ls == NULL || lw == NULL)
		return 0;
	ls->mail_valid = 0;
	if (!s->auth)
		return 0;
	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		uint64_t max = lim_conf(lw, ids[i])->max;
		enum lim_verdict v;
		int exceeded;

		if ((t = ticket(ls, V_MAIL, ids[i])) == NULL)
			continue;
		exceeded = t->value >= max;
		if (ids[i] == CONF_LIMIT_BYTES && size > 0 &&
		    t->value + size > max)
			exceeded = 1;
		v = verdict(lw, ids[i], t->failed, exceeded);
		if (v == V_OK && t->failed)
			log_failed_open(s, ids[i]);
		if (v != V_OK) {
			ls->has_ticket = 0;
			refuse(s, ids[i], v, s->identity, t->value);
			return 1;
		}
	}
	/* RCPT checks against the recipients counted when MAIL came */
	t = ticket(ls, V_MAIL, CONF_LIMIT_RECIPIENTS);
	ls->mail_valid = 1;
	ls->mail_gen = s->tx.gen;
	ls->rcpt_known = t != NULL && !t->failed;
	ls->rcpt_value = t != NULL ? t->value : 0;
	ls->rcpt_logged = 0;
	ls->has_ticket = 0;
	return 0;
}

enum smtp_reply_id
limits_rcpt_check(struct session *s)
{
	struct limits *lw = s->worker->limits;
	struct limits_session *ls = s->lim;
	uint64_t max;

	if (ls == NULL || lw == NULL || !s->auth || !ls->mail_valid ||
	    ls->mail_gen != s->tx.gen || !ls->rcpt_known)
		return R_REPLY_COUNT;
	max = lim_conf(lw, CONF_LIMIT_RECIPIENTS)->max;
	if (ls->rcpt_value + s->tx.rcpt_count < max)
		return R_REPLY_COUNT;
	if (!ls->rcpt_logged) {
		ls->rcpt_logged = 1;
		log_refusal(s, CONF_LIMIT_RECIPIENTS, V_EXCEEDED, s->identity,
		    ls->rcpt_value + s->tx.rcpt_count);
	}
	return R_LIMIT_RECIPIENTS;
}

static void
burl_refuse(struct session *s, enum conf_limit_id id, enum lim_verdict v,
	    uint64_t value)
{
	const struct conf_rate_limit *c = &s->conf->rate_limits.limit[id];
	struct burl_verdict bv;

	memset(&bv, 0, sizeof(bv));
	bv.tls = -1;
	bv.reply = v == V_UNAVAIL ? lim_defs[id].unavail : lim_defs[id].reply;
	if (v == V_UNAVAIL)
		snprintf(bv.reason, sizeof(bv.reason), "limit %s: counters "
		    "unavailable (Redis), on_redis_error is closed",
		    conf_limit_name(id));
	else
		snprintf(bv.reason, sizeof(bv.reason), "limit %s exceeded: %llu "
		    "of %llu per %u s", conf_limit_name(id),
		    (unsigned long long)value, (unsigned long long)c->max,
		    c->window);
	/* logged with the (redacted) URL, counted as a failed BURL */
	smtp_burl_refuse(s, &bv);
}

/* How many times this message already resolves the URL. */
static unsigned
tx_url_uses(struct limits_session *ls, const struct session *s,
	    const char *hex)
{
	unsigned i, n = 0;

	if (!ls->url_valid || ls->url_gen != s->tx.gen || ls->urls == NULL)
		return 0;
	for (i = 0; i < ls->url_count; i++)
		if (strcmp(ls->urls[i], hex) == 0)
			n++;
	return n;
}

static void
tx_url_add(struct limits *lw, struct limits_session *ls,
	   const struct session *s, const char *hex)
{
	struct lim_op *op;

	if (!ls->url_valid || ls->url_gen != s->tx.gen) {
		ls->url_valid = 1;
		ls->url_gen = s->tx.gen;
		ls->url_count = 0;
	}
	if (ls->urls == NULL)
		ls->urls = calloc(LIM_TX_URLS, sizeof(*ls->urls));
	if (ls->urls != NULL && ls->url_count < LIM_TX_URLS) {
		snprintf(ls->urls[ls->url_count++], LIM_HEX, "%s", hex);
		return;
	}
	/* no room to wait for the 250: counted now (the safe side) */
	if ((op = op_new(lw, NULL, OP_FIRE)) != NULL) {
		op_add(op, CONF_LIMIT_URL_REUSE, LK_WINDOW, 1, hex, NULL);
		fire(op);
	}
}

int
limits_burl_refused(struct session *s, const char *url)
{
	struct limits *lw = s->worker->limits;
	struct limits_session *ls = s->lim;
	const struct lim_value *t;
	char hex[LIM_HEX] = "";
	struct lim_op *op;
	unsigned i;
	static const enum conf_limit_id ids[] = { CONF_LIMIT_BURL_FETCHES,
	    CONF_LIMIT_BURL_BYTES };

	if (lw == NULL || ls == NULL)
		return 0;
	if (lim_on(lw, CONF_LIMIT_URL_REUSE)) {
		uint8_t h[LIMITS_URL_HASH_LEN];

		if (limits_url_hash(url, strlen(url), url_key, url_key_len,
		    h) == 0)
			limits_url_hex(h, hex);
		t = ticket(ls, V_BURL, CONF_LIMIT_URL_REUSE);
		if (t != NULL && hex[0] != '\0' &&
		    strcmp(hex, ls->gate_url) == 0) {
			uint64_t uses = t->value + tx_url_uses(ls, s, hex);
			enum lim_verdict v = verdict(lw, CONF_LIMIT_URL_REUSE,
			    t->failed, uses >= lim_conf(lw,
			    CONF_LIMIT_URL_REUSE)->max);

			if (v == V_OK && t->failed)
				log_failed_open(s, CONF_LIMIT_URL_REUSE);
			if (v != V_OK) {
				ls->has_ticket = 0;
				burl_refuse(s, CONF_LIMIT_URL_REUSE, v, uses);
				return 1;
			}
		}
	}
	for (i = 0; s->auth && i < sizeof(ids) / sizeof(ids[0]); i++) {
		enum lim_verdict v;

		if ((t = ticket(ls, V_BURL, ids[i])) == NULL)
			continue;
		v = verdict(lw, ids[i], t->failed,
		    t->value >= lim_conf(lw, ids[i])->max);
		if (v == V_OK && t->failed)
			log_failed_open(s, ids[i]);
		if (v != V_OK) {
			ls->has_ticket = 0;
			burl_refuse(s, ids[i], v, t->value);
			return 1;
		}
	}
	ls->has_ticket = 0;
	/* allowed: the URL counts if the message gets its 250; the fetch
	 * counts now */
	if (hex[0] != '\0')
		tx_url_add(lw, ls, s, hex);
	if (s->auth && lim_on(lw, CONF_LIMIT_BURL_FETCHES) &&
	    (op = op_new(lw, NULL, OP_FIRE)) != NULL) {
		op_add(op, CONF_LIMIT_BURL_FETCHES, LK_WINDOW, 1, s->identity,
		    NULL);
		fire(op);
	}
	return 0;
}

void
limits_burl_fetched(struct session *s, uint64_t bytes)
{
	struct limits *lw = s->worker->limits;
	struct lim_op *op;

	if (!s->auth || bytes == 0 || !lim_on(lw, CONF_LIMIT_BURL_BYTES) ||
	    (op = op_new(lw, NULL, OP_FIRE)) == NULL)
		return;
	op_add(op, CONF_LIMIT_BURL_BYTES, LK_WINDOW, bytes, s->identity, NULL);
	fire(op);
}

int
limits_auth_refused(struct session *s)
{
	struct limits *lw = s->worker->limits;
	const struct lim_value *t = ticket(s->lim, V_AUTH,
	    CONF_LIMIT_AUTH_ADDRESS);
	enum lim_verdict v;
	char addr[LIM_SUBJECT_MAX];

	if (lw == NULL || t == NULL)
		return 0;
	s->lim->has_ticket = 0;
	v = verdict(lw, CONF_LIMIT_AUTH_ADDRESS, t->failed,
	    t->value >= lim_conf(lw, CONF_LIMIT_AUTH_ADDRESS)->max);
	if (v == V_OK) {
		if (t->failed)
			log_failed_open(s, CONF_LIMIT_AUTH_ADDRESS);
		return 0;
	}
	address_subject(s, lw->conf->rate_limits.ipv6_prefix, addr,
	    sizeof(addr));
	refuse(s, CONF_LIMIT_AUTH_ADDRESS, v, addr, t->value);
	return 1;
}

void
limits_auth_failed(struct session *s, const char *attempted)
{
	struct limits *lw = s->worker->limits;
	struct lim_op *op;

	if ((!lim_on(lw, CONF_LIMIT_AUTH_ADDRESS) &&
	    !lim_on(lw, CONF_LIMIT_AUTH_IDENTITY)) ||
	    (op = op_new(lw, NULL, OP_FIRE)) == NULL)
		return;
	if (lim_on(lw, CONF_LIMIT_AUTH_ADDRESS)) {
		char addr[LIM_SUBJECT_MAX];

		address_subject(s, lw->conf->rate_limits.ipv6_prefix, addr,
		    sizeof(addr));
		op_add(op, CONF_LIMIT_AUTH_ADDRESS, LK_WINDOW, 1, addr, NULL);
	}
	if (lim_on(lw, CONF_LIMIT_AUTH_IDENTITY) && attempted != NULL) {
		char id[LIM_SUBJECT_MAX];

		/* the name as the identity it would have become */
		sasl_canonical_identity(attempted, s->conf->sasl.realm, id,
		    sizeof(id));
		if (subject_ok(id))
			op_add(op, CONF_LIMIT_AUTH_IDENTITY, LK_WINDOW, 1, id,
			    NULL);
	}
	fire(op);
}

enum limits_result
limits_auth_admit(struct session *s, limits_done_fn done)
{
	struct limits *lw = s->worker->limits;
	struct lim_op *op;
	char member[LIM_MEMBER_MAX];

	if (!lim_on(lw, CONF_LIMIT_AUTH_IDENTITY) &&
	    !lim_on(lw, CONF_LIMIT_SESSIONS))
		return LIMITS_GO;
	if (s->lim != NULL && s->lim->lease_id != NULL)
		lease_release(lw, &s->lim->lease_id);	/* AUTH again after STARTTLS */
	if ((op = op_new(lw, s, OP_AUTH)) == NULL)
		return LIMITS_GO;
	member_of(s, member, sizeof(member));
	if (lim_on(lw, CONF_LIMIT_AUTH_IDENTITY))
		op_add(op, CONF_LIMIT_AUTH_IDENTITY, LK_WINDOW, 0, s->identity,
		    NULL);
	if (lim_on(lw, CONF_LIMIT_SESSIONS))
		op_add(op, CONF_LIMIT_SESSIONS, LK_ADMIT, 0, s->identity, member);
	return op_start(s, op, done);
}

void
limits_tx_final(struct session *s, int code)
{
	struct limits *lw = s->worker->limits;
	struct limits_session *ls;
	struct lim_op *op;
	unsigned i, n;

	if (lw == NULL)
		return;
	if (s->lim == NULL && !(s->auth && (lim_on(lw, CONF_LIMIT_MESSAGES) ||
	    lim_on(lw, CONF_LIMIT_RECIPIENTS) || lim_on(lw, CONF_LIMIT_BYTES))))
		return;		/* nothing to count */
	if ((ls = ls_get(s)) == NULL)
		return;
	if (!ls->final_valid || ls->final_gen != s->tx.gen) {
		ls->final_valid = 1;
		ls->final_gen = s->tx.gen;
		ls->finals_ok = 0;
	}
	if (code / 100 == 2)
		ls->finals_ok++;
	if (s->tx.finals_seen < s->tx.finals_expected)
		return;
	ls->final_valid = 0;
	n = ls->url_valid && ls->url_gen == s->tx.gen ? ls->url_count : 0;
	ls->url_valid = 0;
	if (ls->finals_ok == 0)
		return;		/* not delivered: nothing counts */
	if ((op = op_new(lw, NULL, OP_FIRE)) == NULL)
		return;
	if (s->auth) {
		/* an LMTP backend's verdicts are per recipient */
		uint64_t rcpts = s->conf->backend.proto == BACKEND_LMTP ?
		    ls->finals_ok : s->tx.rcpt_accepted;

		if (lim_on(lw, CONF_LIMIT_MESSAGES))
			op_add(op, CONF_LIMIT_MESSAGES, LK_WINDOW, 1, s->identity,
			    NULL);
		if (lim_on(lw, CONF_LIMIT_RECIPIENTS) && rcpts > 0)
			op_add(op, CONF_LIMIT_RECIPIENTS, LK_WINDOW, rcpts,
			    s->identity, NULL);
		if (lim_on(lw, CONF_LIMIT_BYTES) && s->tx.filter.out_bytes > 0)
			op_add(op, CONF_LIMIT_BYTES, LK_WINDOW,
			    s->tx.filter.out_bytes, s->identity, NULL);
	}
	/* RFC 4468 8: each URL the delivered message resolved */
	for (i = 0; i < n && ls->urls != NULL; i++) {
		if (op->n == LIM_OP_ITEMS) {
			fire(op);
			if ((op = op_new(lw, NULL, OP_FIRE)) == NULL)
				return;
		}
		op_add(op, CONF_LIMIT_URL_REUSE, LK_WINDOW, 1, ls->urls[i], NULL);
	}
	fire(op);
}

void
limits_session_end(struct session *s)
{
	struct limits_session *ls = s->lim;
	struct limits *lw = s->worker != NULL ? s->worker->limits : NULL;

	if (ls == NULL)
		return;
	s->lim = NULL;
	if (ls->pending != NULL) {
		unsigned i;

		limits_redis_cancel(&ls->pending->req);
		/* an admission Redis may still make: undone after it (one
		 * connection, commands in order) */
		for (i = 0; lw != NULL && i < ls->pending->n; i++)
			if (ls->pending->item[i].kind == LK_ADMIT)
				item_release(lw, &ls->pending->item[i]);
		free(ls->pending);
	}
	if (lw != NULL) {
		lease_release(lw, &ls->lease_addr);
		lease_release(lw, &ls->lease_id);
	}
	free(ls->urls);
	free(ls);
}

/* ------------------------------------------------------------------ */
/* Set-up */

/*
 * Without Redis: one store for the instance, a table per limit that is on.
 * A gauge table keeps spare room for the entries its sessions hold (never
 * evicted): at most one per session, max_connections per worker slot.
 */
#define LIM_HELD_MAX ((size_t)1 << 22)

static int
mem_store_init(const struct conf *conf, unsigned nslots, const char **error_r)
{
	static char err[300];
	const struct conf_rate_limits *rl = &conf->rate_limits;
	struct lim_table_spec specs[CONF_LIMIT_COUNT];
	unsigned n = 0;
	int id;

	memset(specs, 0, sizeof(specs));
	for (id = 0; id < CONF_LIMIT_COUNT; id++) {
		struct lim_table_spec *sp = &specs[n];

		mem_index[id] = -1;
		if (!conf_lim_on(conf, (enum conf_limit_id)id))
			continue;
		sp->window = lim_defs[id].gauge ? 0 : rl->limit[id].window;
		sp->max_keys = rl->max_keys;
		if (lim_defs[id].gauge) {
			sp->held_max = (size_t)nslots *
			    conf->limits.max_connections;
			if (sp->held_max > LIM_HELD_MAX)
				sp->held_max = LIM_HELD_MAX;
		}
		if (RAND_bytes(sp->seed, sizeof(sp->seed)) != 1) {
			*error_r = "rate_limits: no random bytes";
			return -1;
		}
		mem_index[id] = (int)n++;
	}
	if (n == 0)
		return 0;
	mem_store = lim_store_new(specs, n, nslots);
	if (mem_store == NULL) {
		snprintf(err, sizeof(err), "rate_limits: cannot map %zu bytes "
		    "of shared memory for the counters: %s (lower "
		    "rate_limits.max_keys?)", lim_store_bytes(specs, n, nslots),
		    strerror(errno));
		*error_r = err;
		return -1;
	}
	log_info("rate_limits: counters in shared memory: %u limit(s), "
	    "%zu KiB at most, for %u worker slot(s)", n,
	    lim_store_size(mem_store) / 1024, nslots);
	return 0;
}

void
limits_global_free(void)
{
	lim_store_free(&mem_store);
}

/* The master only asks (it never reads the region the workers write);
 * the workers give the entries back (reset_report() logs it). */
void
limits_slot_reset(unsigned slot)
{
	if (mem_store != NULL)
		lim_store_request_reset(mem_store, slot);
}

static void
reset_report(unsigned slot, uint64_t n, void *arg)
{
	(void)arg;
	if (n > 0)
		log_info("rate_limits: worker slot %u: %llu concurrency "
		    "entr%s of its sessions given back", slot,
		    (unsigned long long)n, n == 1 ? "y" : "ies");
}

int
limits_global_init(const struct conf *conf, unsigned nslots,
		   const char **error_r)
{
	static char err[800];
	const struct conf_rate_limits *rl = &conf->rate_limits;
	uint8_t tag[8];
	size_t i, len;

	if (rl->url_key_file[0] != '\0') {
		if (util_read_secret(rl->url_key_file, url_key, sizeof(url_key),
		    &url_key_len, 0, error_r) < 0) {
			snprintf(err, sizeof(err), "rate_limits.url_key_file %s",
			    *error_r);
			*error_r = err;
			return -1;
		}
		if (url_key_len < 16) {
			*error_r = "rate_limits.url_key_file: the key needs at "
			    "least 16 bytes (e.g. openssl rand -hex 32)";
			return -1;
		}
	} else {
		/* per start: shared by this instance's workers only */
		if (RAND_bytes(url_key, 32) != 1) {
			*error_r = "rate_limits: no random bytes for the URL key";
			return -1;
		}
		url_key_len = 32;
		if (rl->redis.enabled && conf->burl.enabled &&
		    rl->limit[CONF_LIMIT_URL_REUSE].max > 0)
			log_warn("rate_limits: url_reuse is counted in Redis but "
			    "url_key_file is not set: every instance hashes URLs "
			    "with its own key, so reuse is counted per instance");
	}
	if (RAND_bytes(tag, sizeof(tag)) != 1) {
		*error_r = "rate_limits: no random bytes";
		return -1;
	}
	for (i = 0; i < sizeof(tag); i++)
		snprintf(instance_tag + 2 * i, 3, "%02x", tag[i]);
	if (rl->redis.enabled && rl->redis.password_file[0] != '\0') {
		if (util_read_secret(rl->redis.password_file, redis_password,
		    sizeof(redis_password), &len, 1, error_r) < 0) {
			snprintf(err, sizeof(err), "rate_limits.redis.password_file "
			    "%s", *error_r);
			*error_r = err;
			return -1;
		}
	}
	if (!rl->redis.enabled) {
		if (nslots == 0 || nslots > LIMITS_OWNERS_MAX) {
			*error_r = "rate_limits: too many worker slots";
			return -1;
		}
		limits_global_free();	/* called once, but be idempotent */
		return mem_store_init(conf, nslots, error_r);
	}
	return 0;
}

struct limits *
limits_worker_new(struct event_base *base, const struct conf *conf,
		  unsigned slot, const char **error_r)
{
	struct limits *lw = calloc(1, sizeof(*lw));
	const struct conf_rate_limits *rl = &conf->rate_limits;
	int id;

	if (lw == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	lw->conf = conf;
	lw->base = base;
	TAILQ_INIT(&lw->leases);
	if (rl->redis.enabled) {
		struct timeval tv = { rl->redis.lease / 3, 0 };

		lw->redis = limits_redis_new(base, &rl->redis, lim_script,
		    redis_password, error_r);
		lw->heartbeat = event_new(base, -1, EV_PERSIST, heartbeat_cb, lw);
		if (lw->redis == NULL || lw->heartbeat == NULL) {
			if (lw->heartbeat == NULL)
				*error_r = "out of memory";
			limits_worker_free(&lw);
			return NULL;
		}
		evtimer_add(lw->heartbeat, &tv);
		return lw;
	}
	if (mem_store == NULL)
		return lw;		/* no limit is on */
	/* the master's store, inherited by the fork: this worker's sessions
	 * hold their concurrency entries as its slot */
	if (lim_store_set_owner(mem_store, slot) < 0) {
		*error_r = "worker slot out of range of the shared counters";
		limits_worker_free(&lw);
		return NULL;
	}
	/* what the slot's previous worker left: gone before this one counts */
	lim_store_run_resets(mem_store, reset_report, NULL);
	for (id = 0; id < CONF_LIMIT_COUNT; id++) {
		if (mem_index[id] < 0)
			continue;
		lw->tables[id] = lim_store_table(mem_store,
		    (unsigned)mem_index[id]);
		lw->repairs[id] = lim_table_repairs(lw->tables[id]);
	}
	return lw;
}

void
limits_worker_free(struct limits **lp)
{
	struct limits *lw = *lp;
	struct lim_lease *l;
	int id;

	if (lw == NULL)
		return;
	*lp = NULL;
	/* sessions are gone by now (their leases with them) */
	while ((l = TAILQ_FIRST(&lw->leases)) != NULL) {
		TAILQ_REMOVE(&lw->leases, l, entry);
		free(l);
	}
	limits_redis_free(&lw->redis);
	if (lw->heartbeat != NULL)
		event_free(lw->heartbeat);
	/* the tables are the instance's: they stay */
	for (id = 0; id < CONF_LIMIT_COUNT; id++)
		lw->tables[id] = NULL;
	free(lw);
}
