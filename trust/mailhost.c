/*
 * mailhost.c - the mailHost directory for BURL_ACCESS's $M (mailhost.h):
 * the map file, the cache of LDAP answers, and the front that sends each
 * lookup to one of them (LDAP itself is mailhost_ldap.c).
 *
 * SECURITY: the map file and the bind password file are read by the master
 * as root, before the privilege drop; the password file must not be
 * readable by others (as burl.imap_servers' password files), only its first
 * line counts, and it is never logged.  Everything the map file says is
 * checked ("FILE:LINE: problem"); what LDAP says is checked in
 * mailhost_ldap.c with the same mailhost_valid_host().
 */
#include <sys/queue.h>
#include <sys/stat.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "conf.h"
#include "log.h"
#include "mailhost.h"
#include "mailhost_ldap.h"
#include "util.h"

/* Longest map file line, with its newline. */
#define MH_MAP_LINE_MAX 1024
/* Problems reported from one map file. */
#define MH_MAP_MAX_ERRORS 10

const char *
mailhost_result_name(enum mailhost_result r)
{
	switch (r) {
	case MAILHOST_FOUND:
		return "FOUND";
	case MAILHOST_NOT_FOUND:
		return "NOT_FOUND";
	case MAILHOST_UNAVAILABLE:
		return "UNAVAILABLE";
	}
	return "?";
}

/* FNV-1a over the ASCII-lowercased bytes: keys are case-blind. */
static uint32_t
mh_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++) {
		h ^= (uint32_t)(unsigned char)tolower((unsigned char)*s);
		h *= 16777619u;
	}
	return h;
}

/* ------------------------------------------------------------------------
 * host[:port]
 */

static int
mh_valid_port(const char *p)
{
	unsigned long v = 0;

	if (*p == '\0')
		return 0;
	for (; *p != '\0'; p++) {
		if (!isdigit((unsigned char)*p))
			return 0;
		v = v * 10 + (unsigned long)(*p - '0');
		if (v > 65535)
			return 0;
	}
	return v >= 1;
}

int
mailhost_valid_host(const char *host)
{
	const char *end, *p, *label;
	size_t len = strlen(host);

	if (len == 0 || len >= MAILHOST_MAX_HOST)
		return 0;
	if (host[0] == '[') {
		char lit[64];
		unsigned char buf[16];

		end = strchr(host, ']');
		if (end == NULL || (size_t)(end - host - 1) >= sizeof(lit))
			return 0;
		memcpy(lit, host + 1, (size_t)(end - host - 1));
		lit[end - host - 1] = '\0';
		if (inet_pton(AF_INET6, lit, buf) != 1)
			return 0;
		if (end[1] == '\0')
			return 1;
		return end[1] == ':' && mh_valid_port(end + 2);
	}
	end = strchr(host, ':');
	if (end != NULL && !mh_valid_port(end + 1))
		return 0;
	if (end == NULL)
		end = host + len;
	if (end == host || end - host > 253)
		return 0;
	/* a domain name or a dotted IPv4 address: LDH labels of 1..63 */
	for (p = label = host; p <= end; p++) {
		if (p == end || *p == '.') {
			if (p == label || p - label > 63 || *label == '-' ||
			    p[-1] == '-')
				return 0;
			label = p + 1;
		} else if (!isalnum((unsigned char)*p) && *p != '-') {
			return 0;
		}
	}
	return 1;
}

/* ------------------------------------------------------------------------
 * The map file
 */

struct mh_map_entry {
	struct mh_map_entry *next;
	char *host;
	char user[];			/* then host, after its NUL */
};

struct mailhost_map {
	struct mh_map_entry **buckets;
	size_t nbuckets;		/* a power of two */
	size_t count;
};

static struct mh_map_entry *
mh_map_find(const struct mailhost_map *m, const char *user)
{
	struct mh_map_entry *e;

	for (e = m->buckets[mh_hash(user) & (m->nbuckets - 1)]; e != NULL;
	    e = e->next)
		if (strcasecmp(e->user, user) == 0)
			return e;
	return NULL;
}

static int
mh_map_grow(struct mailhost_map *m)
{
	size_t n = m->nbuckets * 2, i;
	struct mh_map_entry **b = calloc(n, sizeof(*b)), *e, *next;

	if (b == NULL)
		return -1;
	for (i = 0; i < m->nbuckets; i++)
		for (e = m->buckets[i]; e != NULL; e = next) {
			size_t j = mh_hash(e->user) & (n - 1);

			next = e->next;
			e->next = b[j];
			b[j] = e;
		}
	free(m->buckets);
	m->buckets = b;
	m->nbuckets = n;
	return 0;
}

static int
mh_map_add(struct mailhost_map *m, const char *user, const char *host)
{
	size_t ul = strlen(user), hl = strlen(host), j;
	struct mh_map_entry *e;

	if (m->count >= m->nbuckets && mh_map_grow(m) < 0)
		return -1;
	e = malloc(sizeof(*e) + ul + hl + 2);
	if (e == NULL)
		return -1;
	memcpy(e->user, user, ul + 1);
	e->host = e->user + ul + 1;
	memcpy(e->host, host, hl + 1);
	j = mh_hash(user) & (m->nbuckets - 1);
	e->next = m->buckets[j];
	m->buckets[j] = e;
	m->count++;
	return 0;
}

void
mailhost_map_free(struct mailhost_map **mp)
{
	struct mailhost_map *m = *mp;
	struct mh_map_entry *e, *next;
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->nbuckets; i++)
		for (e = m->buckets[i]; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	free(m->buckets);
	free(m);
	*mp = NULL;
}

/* Append "FILE:LINE: problem" to the error text. */
static void
mh_map_error(char *err, size_t errsize, unsigned *nerr, const char *path,
	     unsigned line, const char *what)
{
	size_t len = strlen(err);

	if (*nerr < MH_MAP_MAX_ERRORS && len < errsize)
		snprintf(err + len, errsize - len, "%s%s:%u: %s",
		    len > 0 ? "\n" : "", path, line, what);
	(*nerr)++;
}

struct mailhost_map *
mailhost_map_load(const char *path, const char **error_r)
{
	static char err[2048];
	char line[MH_MAP_LINE_MAX + 2];
	struct mailhost_map *m;
	unsigned lineno = 0, nerr = 0;
	FILE *f;

	err[0] = '\0';
	m = calloc(1, sizeof(*m));
	if (m == NULL || (m->buckets = calloc(64, sizeof(*m->buckets))) ==
	    NULL) {
		free(m);
		*error_r = "out of memory";
		return NULL;
	}
	m->nbuckets = 64;
	f = fopen(path, "r");
	if (f == NULL) {
		snprintf(err, sizeof(err), "%.400s: %s", path, strerror(errno));
		*error_r = err;
		mailhost_map_free(&m);
		return NULL;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char *fields[3], *p, *save = NULL, *hash;
		size_t len = strlen(line), n = 0;
		char what[400];

		lineno++;
		if (len > 0 && line[len - 1] != '\n' && !feof(f)) {
			int c;

			mh_map_error(err, sizeof(err), &nerr, path, lineno,
			    "line longer than 1024 bytes");
			while ((c = fgetc(f)) != EOF && c != '\n')
				;
			continue;
		}
		if ((hash = strchr(line, '#')) != NULL)
			*hash = '\0';
		for (p = strtok_r(line, " \t\r\n", &save); p != NULL && n < 3;
		    p = strtok_r(NULL, " \t\r\n", &save))
			fields[n++] = p;
		if (n == 0)
			continue;
		if (n != 2) {
			mh_map_error(err, sizeof(err), &nerr, path, lineno,
			    n == 1 ? "a user without a mailhost" :
			    "more than two fields (user mailhost)");
			continue;
		}
		if (strlen(fields[0]) > MAILHOST_MAX_USER) {
			mh_map_error(err, sizeof(err), &nerr, path, lineno,
			    "user name longer than 255 bytes");
			continue;
		}
		for (p = fields[0]; *p != '\0'; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				break;
		if (*p != '\0') {
			mh_map_error(err, sizeof(err), &nerr, path, lineno,
			    "control character in the user name");
			continue;
		}
		if (!mailhost_valid_host(fields[1])) {
			char q[128];

			log_sanitize(q, sizeof(q), fields[1], strlen(fields[1]));
			snprintf(what, sizeof(what), "mailhost \"%s\" is not "
			    "host or host:port", q);
			mh_map_error(err, sizeof(err), &nerr, path, lineno,
			    what);
			continue;
		}
		if (mh_map_find(m, fields[0]) != NULL) {
			char q[128];

			log_sanitize(q, sizeof(q), fields[0], strlen(fields[0]));
			snprintf(what, sizeof(what), "user \"%s\" appears "
			    "twice", q);
			mh_map_error(err, sizeof(err), &nerr, path, lineno,
			    what);
			continue;
		}
		if (mh_map_add(m, fields[0], fields[1]) < 0) {
			mh_map_error(err, sizeof(err), &nerr, path, lineno,
			    "out of memory");
			break;
		}
	}
	if (ferror(f))
		mh_map_error(err, sizeof(err), &nerr, path, lineno,
		    strerror(errno));
	fclose(f);
	if (nerr > 0) {
		if (nerr > MH_MAP_MAX_ERRORS) {
			size_t len = strlen(err);

			snprintf(err + len, sizeof(err) - len, "\n%s: %u more "
			    "problems", path, nerr - MH_MAP_MAX_ERRORS);
		}
		*error_r = err;
		mailhost_map_free(&m);
		return NULL;
	}
	return m;
}

const char *
mailhost_map_get(const struct mailhost_map *m, const char *user)
{
	const struct mh_map_entry *e = mh_map_find(m, user);

	return e != NULL ? e->host : NULL;
}

size_t
mailhost_map_count(const struct mailhost_map *m)
{
	return m->count;
}

/* ------------------------------------------------------------------------
 * The cache
 */

struct mh_cache_entry {
	struct mh_cache_entry *hnext;	/* bucket chain */
	TAILQ_ENTRY(mh_cache_entry) lru;	/* head: most recently used */
	time_t expires;
	enum mailhost_result r;
	char host[MAILHOST_MAX_HOST];
	char user[MAILHOST_MAX_USER + 1];
};

struct mailhost_cache {
	size_t max, count;
	size_t nbuckets;		/* a power of two, grows with count */
	struct mh_cache_entry **buckets;
	TAILQ_HEAD(mh_cache_lru_head, mh_cache_entry) lru;
};

struct mailhost_cache *
mailhost_cache_new(size_t max)
{
	struct mailhost_cache *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->max = max;
	c->nbuckets = 64;
	c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
	if (c->buckets == NULL) {
		free(c);
		return NULL;
	}
	TAILQ_INIT(&c->lru);
	return c;
}

void
mailhost_cache_free(struct mailhost_cache **cp)
{
	struct mailhost_cache *c = *cp;
	struct mh_cache_entry *e;

	if (c == NULL)
		return;
	while ((e = TAILQ_FIRST(&c->lru)) != NULL) {
		TAILQ_REMOVE(&c->lru, e, lru);
		free(e);
	}
	free(c->buckets);
	free(c);
	*cp = NULL;
}

static struct mh_cache_entry **
mh_cache_slot(struct mailhost_cache *c, const char *user)
{
	struct mh_cache_entry **pp;

	for (pp = &c->buckets[mh_hash(user) & (c->nbuckets - 1)]; *pp != NULL;
	    pp = &(*pp)->hnext)
		if (strcasecmp((*pp)->user, user) == 0)
			break;
	return pp;		/* *pp NULL: not there */
}

static void
mh_cache_drop(struct mailhost_cache *c, struct mh_cache_entry **pp)
{
	struct mh_cache_entry *e = *pp;

	*pp = e->hnext;
	TAILQ_REMOVE(&c->lru, e, lru);
	free(e);
	c->count--;
}

static void
mh_cache_grow(struct mailhost_cache *c)
{
	size_t n = c->nbuckets * 2, i;
	struct mh_cache_entry **b = calloc(n, sizeof(*b)), *e, *next;

	if (b == NULL)
		return;			/* longer chains, still correct */
	for (i = 0; i < c->nbuckets; i++)
		for (e = c->buckets[i]; e != NULL; e = next) {
			size_t j = mh_hash(e->user) & (n - 1);

			next = e->hnext;
			e->hnext = b[j];
			b[j] = e;
		}
	free(c->buckets);
	c->buckets = b;
	c->nbuckets = n;
}

int
mailhost_cache_get(struct mailhost_cache *c, const char *user, time_t now,
		   enum mailhost_result *r_r, char *host_r)
{
	struct mh_cache_entry **pp = mh_cache_slot(c, user), *e = *pp;

	if (e == NULL)
		return 0;
	if (now >= e->expires) {
		mh_cache_drop(c, pp);
		return 0;
	}
	TAILQ_REMOVE(&c->lru, e, lru);
	TAILQ_INSERT_HEAD(&c->lru, e, lru);
	*r_r = e->r;
	memcpy(host_r, e->host, sizeof(e->host));
	return 1;
}

void
mailhost_cache_put(struct mailhost_cache *c, const char *user,
		   enum mailhost_result r, const char *host, time_t expires)
{
	struct mh_cache_entry **pp, *e;

	if (c->max == 0 || r == MAILHOST_UNAVAILABLE ||
	    strlen(user) > MAILHOST_MAX_USER)
		return;
	pp = mh_cache_slot(c, user);
	if ((e = *pp) != NULL) {
		TAILQ_REMOVE(&c->lru, e, lru);
	} else {
		if (c->count >= c->max) {
			/* the least recently used goes */
			struct mh_cache_entry *old = TAILQ_LAST(&c->lru,
			    mh_cache_lru_head);

			mh_cache_drop(c, mh_cache_slot(c, old->user));
		}
		if (c->count >= c->nbuckets)
			mh_cache_grow(c);
		e = calloc(1, sizeof(*e));
		if (e == NULL)
			return;
		snprintf(e->user, sizeof(e->user), "%s", user);
		pp = &c->buckets[mh_hash(user) & (c->nbuckets - 1)];
		e->hnext = *pp;
		*pp = e;
		c->count++;
	}
	e->r = r;
	e->expires = expires;
	snprintf(e->host, sizeof(e->host), "%s",
	    r == MAILHOST_FOUND ? host : "");
	TAILQ_INSERT_HEAD(&c->lru, e, lru);
}

size_t
mailhost_cache_count(const struct mailhost_cache *c)
{
	return c->count;
}

/* ------------------------------------------------------------------------
 * What the master loads
 */

static struct {
	int done;
	struct mailhost_map *map;
	char password[256];
} mh_global;

int
mailhost_global_init(const struct conf_burl *cb, const char **error_r)
{
	static char err[700];
	const struct conf_mailhost *m = &cb->mailhost;
	struct mailhost_map *map = NULL;
	char password[sizeof(mh_global.password)] = "";

	/* all or nothing: a reload that fails keeps the previous ones */
	if (m->enabled && m->map_file[0] != '\0') {
		const char *e = NULL;

		map = mailhost_map_load(m->map_file, &e);
		if (map == NULL) {
			*error_r = e;	/* "FILE:LINE: problem" lines */
			return -1;
		}
		log_info("mailhost: %zu users from %s",
		    mailhost_map_count(map), m->map_file);
	}
	if (m->enabled && m->ldap_bind_password_file[0] != '\0' &&
	    util_read_secret(m->ldap_bind_password_file, password,
	    sizeof(password), NULL, 1, error_r) < 0) {
		snprintf(err, sizeof(err), "burl.mailhost.ldap_bind_password_file "
		    "%s", *error_r);
		*error_r = err;
		mailhost_map_free(&map);
		return -1;
	}
	mailhost_global_deinit();
	mh_global.map = map;
	memcpy(mh_global.password, password, sizeof(password));
	OPENSSL_cleanse(password, sizeof(password));
	mh_global.done = 1;
	return 0;
}

void
mailhost_global_deinit(void)
{
	mailhost_map_free(&mh_global.map);
	OPENSSL_cleanse(mh_global.password, sizeof(mh_global.password));
	mh_global.done = 0;
}

/* ------------------------------------------------------------------------
 * The directory
 */

struct mailhost_req {
	struct mailhost_dir *d;
	TAILQ_ENTRY(mailhost_req) link;
	mailhost_cb cb;
	void *ctx;
	struct event *ev;		/* a deferred answer */
	struct mailhost_ldap_search *search;	/* or an LDAP search */
	enum mailhost_result r;
	char host[MAILHOST_MAX_HOST];
	char user[MAILHOST_MAX_USER + 1];
};

struct mailhost_dir {
	struct event_base *base;
	const struct mailhost_map *map;	/* mh_global's, or NULL */
	struct mailhost_ldap *ldap;	/* or NULL */
	struct mailhost_cache *cache;	/* with ldap */
	unsigned cache_ttl, negative_ttl;
	TAILQ_HEAD(, mailhost_req) reqs;
	struct mailhost_stats st;
};

/* Monotonic milliseconds: the cache's clock (whole seconds would end a
 * TTL up to a second early). */
static time_t
mh_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct mailhost_dir *
mailhost_dir_new(struct event_base *base, const struct conf_burl *cb,
		 const char **error_r)
{
	const struct conf_mailhost *m = &cb->mailhost;
	struct mailhost_dir *d;

	*error_r = NULL;
	if (!m->enabled)
		return NULL;
	if (!mh_global.done && mailhost_global_init(cb, error_r) < 0)
		return NULL;
	d = calloc(1, sizeof(*d));
	if (d == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	d->base = base;
	d->map = mh_global.map;
	d->cache_ttl = m->cache_ttl;
	d->negative_ttl = m->negative_ttl;
	TAILQ_INIT(&d->reqs);
	if (m->ldap_uri[0] != '\0') {
		d->ldap = mailhost_ldap_new(base, m, mh_global.password,
		    error_r);
		d->cache = mailhost_cache_new(m->cache_size);
		if (d->ldap == NULL || d->cache == NULL) {
			if (*error_r == NULL)
				*error_r = "out of memory";
			mailhost_dir_free(&d);
			return NULL;
		}
	}
	return d;
}

void
mailhost_dir_free(struct mailhost_dir **dp)
{
	struct mailhost_dir *d = *dp;
	struct mailhost_req *r;

	if (d == NULL)
		return;
	while ((r = TAILQ_FIRST(&d->reqs)) != NULL)
		mailhost_cancel(&r);
	mailhost_ldap_free(&d->ldap);
	mailhost_cache_free(&d->cache);
	free(d);
	*dp = NULL;
}

/* Answer req and forget it (freed before the callback). */
static void
mh_req_finish(struct mailhost_req *req, enum mailhost_result r,
	      const char *host)
{
	struct mailhost_dir *d = req->d;
	mailhost_cb cb = req->cb;
	void *ctx = req->ctx;
	char hostbuf[MAILHOST_MAX_HOST];

	snprintf(hostbuf, sizeof(hostbuf), "%s",
	    r == MAILHOST_FOUND ? host : "");
	TAILQ_REMOVE(&d->reqs, req, link);
	if (req->ev != NULL)
		event_free(req->ev);
	free(req);
	cb(ctx, r, hostbuf);
}

static void
mh_on_deferred(evutil_socket_t fd, short what, void *arg)
{
	struct mailhost_req *req = arg;

	(void)fd;
	(void)what;
	mh_req_finish(req, req->r, req->host);
}

static void
mh_on_ldap(void *arg, enum mailhost_result r, const char *host)
{
	struct mailhost_req *req = arg;
	struct mailhost_dir *d = req->d;
	time_t now = mh_now_ms();

	req->search = NULL;
	if (r == MAILHOST_FOUND && d->cache_ttl > 0)
		mailhost_cache_put(d->cache, req->user, r, host,
		    now + (time_t)d->cache_ttl * 1000);
	else if (r == MAILHOST_NOT_FOUND && d->negative_ttl > 0)
		mailhost_cache_put(d->cache, req->user, r, host,
		    now + (time_t)d->negative_ttl * 1000);
	mh_req_finish(req, r, host);
}

/* A user name worth asking about: 1..255 bytes, no control characters. */
static int
mh_valid_user(const char *user)
{
	size_t len = strlen(user), i;

	if (len == 0 || len > MAILHOST_MAX_USER)
		return 0;
	for (i = 0; i < len; i++)
		if ((unsigned char)user[i] < 0x20 || user[i] == 0x7f)
			return 0;
	return 1;
}

struct mailhost_req *
mailhost_lookup(struct mailhost_dir *d, const char *user, mailhost_cb cb,
		void *ctx)
{
	static const struct timeval zero = { 0, 0 };
	struct mailhost_req *req;
	const char *host;

	req = calloc(1, sizeof(*req));
	if (req == NULL)
		return NULL;
	req->d = d;
	req->cb = cb;
	req->ctx = ctx;
	d->st.lookups++;
	req->r = MAILHOST_NOT_FOUND;
	if (!mh_valid_user(user)) {
		/* answered below: NOT_FOUND */
	} else if (d->map != NULL &&
	    (host = mailhost_map_get(d->map, user)) != NULL) {
		req->r = MAILHOST_FOUND;
		snprintf(req->host, sizeof(req->host), "%s", host);
		d->st.map_hits++;
	} else if (d->ldap != NULL) {
		if (mailhost_cache_get(d->cache, user, mh_now_ms(), &req->r,
		    req->host)) {
			d->st.cache_hits++;
		} else {
			snprintf(req->user, sizeof(req->user), "%s", user);
			req->search = mailhost_ldap_search(d->ldap, user,
			    mh_on_ldap, req);
			if (req->search == NULL) {
				free(req);
				return NULL;
			}
			TAILQ_INSERT_TAIL(&d->reqs, req, link);
			return req;
		}
	}
	/* the answer is known: it still comes from the loop */
	req->ev = evtimer_new(d->base, mh_on_deferred, req);
	if (req->ev == NULL) {
		free(req);
		return NULL;
	}
	evtimer_add(req->ev, &zero);
	TAILQ_INSERT_TAIL(&d->reqs, req, link);
	return req;
}

void
mailhost_cancel(struct mailhost_req **rp)
{
	struct mailhost_req *req = *rp;

	if (req == NULL)
		return;
	if (req->search != NULL)
		mailhost_ldap_cancel(&req->search);
	if (req->ev != NULL)
		event_free(req->ev);
	TAILQ_REMOVE(&req->d->reqs, req, link);
	free(req);
	*rp = NULL;
}

void
mailhost_dir_stats(const struct mailhost_dir *d, struct mailhost_stats *st)
{
	*st = d->st;
	if (d->ldap != NULL)
		mailhost_ldap_stats(d->ldap, &st->ldap_searches,
		    &st->ldap_connects, &st->ldap_failures);
}
