/*
 * burl_policy.c - the built-in BURL authorization rule (see burl_policy.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "burl_policy.h"
#include "conf.h"
#include "imapurl.h"

/* Is `domain` (len bytes) one of the space-separated local domains? */
static int
local_domain(const char *list, const char *domain, size_t len)
{
	const char *p = list;

	while (*p != '\0') {
		size_t n;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		n = strcspn(p, " \t,");
		if (n > 0 && n == len && strncasecmp(p, domain, len) == 0)
			return 1;
		p += n;
	}
	return 0;
}

/* The canonical length of x: its local part if its domain is local. */
static size_t
canonical_len(const char *local_domains, const char *x, int *mapped)
{
	const char *at = strrchr(x, '@');
	size_t len = strlen(x);

	if (at != NULL && at != x &&
	    local_domain(local_domains, at + 1, len - (size_t)(at + 1 - x))) {
		*mapped = 1;
		return (size_t)(at - x);
	}
	return len;
}

int
burl_same_user(const char *local_domains, const char *a, const char *b,
	       int *mapped)
{
	int m = 0;
	size_t la = canonical_len(local_domains, a, &m);
	size_t lb = canonical_len(local_domains, b, &m);

	if (mapped != NULL)
		*mapped |= m;
	return la > 0 && la == lb && strncasecmp(a, b, la) == 0;
}

/* Split an authority "host", "host:port", "[v6]" or "[v6]:port". */
static void
split_authority(const char *a, size_t *hl, unsigned *port)
{
	const char *colon = a[0] == '[' ? strstr(a, "]:") : strrchr(a, ':');

	if (colon != NULL && a[0] == '[')
		colon++;
	*hl = colon != NULL ? (size_t)(colon - a) : strlen(a);
	*port = colon != NULL ? (unsigned)strtoul(colon + 1, NULL, 10) : 143;
}

static int
find(const struct conf_burl *cb, const char *host, size_t hostlen,
     unsigned port)
{
	size_t i;

	/* "host" means port 143 (RFC 5092 3: the default port); compare
	 * host case-blind and the port as a number */
	for (i = 0; i < cb->server_count; i++) {
		size_t hl;
		unsigned p;

		split_authority(cb->servers[i].authority, &hl, &p);
		if (hl == hostlen && p == port &&
		    strncasecmp(cb->servers[i].authority, host, hl) == 0)
			return (int)i;
	}
	return -1;
}

int
burl_find_server(const struct conf_burl *cb, const struct imapurl *u)
{
	return find(cb, u->host, strlen(u->host), u->port);
}

int
burl_find_authority(const struct conf_burl *cb, const char *authority)
{
	size_t hl;
	unsigned port;

	split_authority(authority, &hl, &port);
	if (port == 0 || port > 65535)
		return -1;
	return find(cb, authority, hl, port);
}

static void refuse(struct burl_verdict *v, enum smtp_reply_id r,
		   const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
refuse(struct burl_verdict *v, enum smtp_reply_id r, const char *fmt, ...)
{
	va_list ap;

	v->allowed = 0;
	v->reply = r;
	va_start(ap, fmt);
	vsnprintf(v->reason, sizeof(v->reason), fmt, ap);
	va_end(ap);
}

void
burl_server_check(const struct conf_burl *cb, size_t i, const struct imapurl *u,
		  time_t now, struct burl_verdict *v)
{
	const struct conf_imap_server *srv = &cb->servers[i];

	memset(v, 0, sizeof(*v));
	v->reply = R_REPLY_COUNT;
	v->server = i;
	if (u->access != IMAPURL_ACCESS_NONE &&
	    srv->mode != CONF_IMAP_MODE_URLAUTH) {
		refuse(v, R_BURL_NO_TRUST, "%s takes plain URLs only "
		    "(proxy-authorization)", srv->name);
		return;
	}
	if (u->access == IMAPURL_ACCESS_NONE &&
	    srv->mode != CONF_IMAP_MODE_PROXY_AUTH) {
		refuse(v, R_BURL_NO_TRUST, "plain URL (no URLAUTH) for %s, "
		    "which is trusted for URLAUTH only", srv->name);
		return;
	}
	if (u->has_expire && u->expire <= now) {
		refuse(v, R_BURL_FETCH_FAILED, "URL has expired");
		return;
	}
	v->allowed = 1;
}

void
burl_policy_check(const struct conf_burl *cb, const struct imapurl *u,
		  const char *identity, time_t now, struct burl_verdict *v)
{
	int i, mapped = 0;

	memset(v, 0, sizeof(*v));
	v->reply = R_REPLY_COUNT;
	i = burl_find_server(cb, u);
	if (i < 0) {
		refuse(v, R_BURL_NO_TRUST, "no trust relationship with %s",
		    u->host);
		return;
	}
	if (identity == NULL || identity[0] == '\0') {
		refuse(v, R_BURL_ACCESS_DENIED, "not authenticated");
		return;
	}
	if (u->access != IMAPURL_ACCESS_NONE &&
	    u->access != IMAPURL_ACCESS_SUBMIT) {
		refuse(v, R_BURL_ACCESS_DENIED, "URLAUTH access is not "
		    "submit+<user>");
		return;
	}
	if (u->access == IMAPURL_ACCESS_SUBMIT &&
	    !burl_same_user(cb->local_domains, identity, u->access_user,
	    &mapped)) {
		refuse(v, R_BURL_ACCESS_DENIED, "URLAUTH access is "
		    "submit+%s, not the user's own (%s)", u->access_user,
		    identity);
		return;
	}
	if (u->user[0] == '\0') {
		refuse(v, R_BURL_ACCESS_DENIED, "URL names no user");
		return;
	}
	if (!burl_same_user(cb->local_domains, identity, u->user, &mapped)) {
		refuse(v, R_BURL_ACCESS_DENIED, "URL of user %s, not of %s",
		    u->user, identity);
		return;
	}
	burl_server_check(cb, (size_t)i, u, now, v);
	v->mapped = mapped;
}
