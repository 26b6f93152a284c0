/*
 * imapurl.c - strict parser for IMAP URLs (RFC 5092) naming one message,
 * with URLAUTH (RFC 4467), as SMTP BURL (RFC 4468) receives them.
 *
 * Pure and bounded: no allocation, no I/O, no locale (ASCII tests only).
 * Every component is checked against its RFC 5092 character set and then
 * percent-decoded into its fixed-size field; %00, malformed %XX and decoded
 * control characters are refused.  Error strings never quote the URL.
 *
 * Choices within the grammar:
 *   - reg-name hosts are limited to ALPHA / DIGIT / "-" / "." / "_" / "~"
 *     (no percent-encoding, no sub-delims); IP literals must be IPv6.
 *   - a URL naming a server, a mailbox or a message list (query) without
 *     ";UID=" gives IMAPURL_ERR_NO_UID; anything else malformed is SYNTAX.
 *   - ";URLAUTH=access" without ":mech:token" (a rump) is accepted with
 *     mech and token empty; the caller decides whether that is enough.
 *   - rump_len is 0 when there is no ";URLAUTH=".
 */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "imapurl.h"

/* ---- character classes (ASCII only) ---- */

static int
is_alpha(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int
hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int
is_unreserved(unsigned char c)
{
	return is_alpha(c) || is_digit(c) || c == '-' || c == '.' ||
	    c == '_' || c == '~';
}

/* uchar = unreserved / pct-encoded / sub-delims-sh ('%' handled apart) */
static int
is_uchar(unsigned char c)
{
	return is_unreserved(c) || c == '!' || c == '$' || c == '\'' ||
	    c == '(' || c == ')' || c == '*' || c == '+' || c == ',';
}

/* achar = uchar / "&" / "=" / "~" */
static int
is_achar(unsigned char c)
{
	return is_uchar(c) || c == '&' || c == '=' || c == '~';
}

/* bchar = achar / ":" / "@" / "/" */
static int
is_bchar(unsigned char c)
{
	return is_achar(c) || c == ':' || c == '@' || c == '/';
}

static unsigned char
lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* Does [p, e) start with the lower-case keyword kw (ASCII, ignoring case)? */
static int
match_kw(const char *p, const char *e, const char *kw)
{
	size_t n = strlen(kw), i;

	if ((size_t)(e - p) < n)
		return 0;
	for (i = 0; i < n; i++)
		if (lower((unsigned char)p[i]) != (unsigned char)kw[i])
			return 0;
	return 1;
}

static const char *
find_byte(const char *p, const char *e, char c)
{
	while (p < e && *p != c)
		p++;
	return p;
}

/* ---- pieces ---- */

struct ctx {
	const char *error;
};

static enum imapurl_error
fail(struct ctx *c, enum imapurl_error err, const char *msg)
{
	c->error = msg;
	return err;
}

/*
 * Check [p, e) against the class ok (plus pct-encoded) and decode it into
 * dst[size].  An empty component is a syntax error.
 */
static enum imapurl_error
decode(struct ctx *c, const char *p, const char *e, int (*ok)(unsigned char),
       char *dst, size_t size, const char *what)
{
	size_t n = 0;

	if (p >= e)
		return fail(c, IMAPURL_ERR_SYNTAX, what);
	while (p < e) {
		unsigned char ch = (unsigned char)*p;

		if (ch == '%') {
			int hi, lo;

			if (e - p < 3 || (hi = hexval((unsigned char)p[1])) < 0 ||
			    (lo = hexval((unsigned char)p[2])) < 0)
				return fail(c, IMAPURL_ERR_SYNTAX,
				    "invalid percent-encoding in IMAP URL");
			ch = (unsigned char)(hi * 16 + lo);
			if (ch < 0x20 || ch == 0x7f)
				return fail(c, IMAPURL_ERR_SYNTAX,
				    "percent-encoded control character in IMAP URL");
			p += 3;
		} else {
			if (!ok(ch))
				return fail(c, IMAPURL_ERR_SYNTAX, what);
			p++;
		}
		if (n + 1 >= size)
			return fail(c, IMAPURL_ERR_TOO_LONG,
			    "IMAP URL component too long");
		dst[n++] = (char)ch;
	}
	dst[n] = '\0';
	return IMAPURL_OK;
}

/* number = 1*DIGIT (32-bit); nz-number = digit-nz *DIGIT. */
static int
parse_u32(const char **pp, const char *e, int nonzero, uint32_t *val)
{
	const char *p = *pp;
	uint64_t v = 0;

	if (p >= e || !is_digit((unsigned char)*p))
		return 0;
	if (nonzero && *p == '0')
		return 0;
	while (p < e && is_digit((unsigned char)*p)) {
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > UINT32_MAX)
			return 0;
		p++;
	}
	*val = (uint32_t)v;
	*pp = p;
	return 1;
}

static int
fixed_digits(const char *p, int n, int *val)
{
	int i, v = 0;

	for (i = 0; i < n; i++) {
		if (!is_digit((unsigned char)p[i]))
			return 0;
		v = v * 10 + (p[i] - '0');
	}
	*val = v;
	return 1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/*
 * RFC 3339 date-time: YYYY-MM-DD"T"hh:mm:ss[.frac]("Z" / ("+"/"-")hh:mm),
 * "T" and "Z" in either case.  The whole of [p, e) must be the date-time.
 */
static int
parse_datetime(const char *p, const char *e, time_t *t)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
	    30, 31 };
	int year, mon, mday, hour, min, sec, oh = 0, om = 0, sign = 0, dim;
	int64_t secs;

	if (e - p < 20)
		return 0;
	if (!fixed_digits(p, 4, &year) || p[4] != '-' ||
	    !fixed_digits(p + 5, 2, &mon) || p[7] != '-' ||
	    !fixed_digits(p + 8, 2, &mday) || lower((unsigned char)p[10]) != 't' ||
	    !fixed_digits(p + 11, 2, &hour) || p[13] != ':' ||
	    !fixed_digits(p + 14, 2, &min) || p[16] != ':' ||
	    !fixed_digits(p + 17, 2, &sec))
		return 0;
	p += 19;
	if (p < e && *p == '.') {
		p++;
		if (p >= e || !is_digit((unsigned char)*p))
			return 0;
		while (p < e && is_digit((unsigned char)*p))
			p++;
	}
	if (p >= e)
		return 0;
	if (lower((unsigned char)*p) == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p == '+' ? 1 : -1;
		if (e - p < 6 || !fixed_digits(p + 1, 2, &oh) || p[3] != ':' ||
		    !fixed_digits(p + 4, 2, &om))
			return 0;
		p += 6;
	} else
		return 0;
	if (p != e)
		return 0;
	if (mon < 1 || mon > 12 || hour > 23 || min > 59 || sec > 60 ||
	    oh > 23 || om > 59)
		return 0;
	dim = mdays[mon - 1];
	if (mon == 2 && (year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)))
		dim = 29;
	if (mday < 1 || mday > dim)
		return 0;
	secs = days_from_civil(year, mon, mday) * 86400 +
	    (int64_t)hour * 3600 + min * 60 + sec - sign * (oh * 3600 + om * 60);
	if (sizeof(time_t) < sizeof(int64_t) &&
	    (secs > INT32_MAX || secs < INT32_MIN))
		return 0;
	*t = (time_t)secs;
	return 1;
}

static int
is_mechchar(unsigned char c)
{
	return is_alpha(c) || is_digit(c) || c == '-' || c == '.';
}

/* host [":" port] in [p, e); host as written. */
static enum imapurl_error
parse_hostport(struct ctx *c, const char *p, const char *e, struct imapurl *out)
{
	const char *h = p, *he;
	uint32_t port;

	if (p < e && *p == '[') {
		char buf[INET6_ADDRSTRLEN];
		struct in6_addr a;
		size_t n;

		he = find_byte(p, e, ']');
		if (he == e)
			return fail(c, IMAPURL_ERR_SYNTAX,
			    "invalid IP literal in IMAP URL");
		n = (size_t)(he - (p + 1));
		if (n == 0 || n >= sizeof(buf))
			return fail(c, IMAPURL_ERR_SYNTAX,
			    "invalid IP literal in IMAP URL");
		memcpy(buf, p + 1, n);
		buf[n] = '\0';
		if (memchr(buf, '\0', n) != NULL ||
		    inet_pton(AF_INET6, buf, &a) != 1)
			return fail(c, IMAPURL_ERR_SYNTAX,
			    "invalid IP literal in IMAP URL");
		he++;
		p = he;
	} else {
		while (p < e && *p != ':') {
			if (!is_unreserved((unsigned char)*p))
				return fail(c, IMAPURL_ERR_SYNTAX,
				    "invalid host in IMAP URL");
			p++;
		}
		he = p;
		if (he == h)
			return fail(c, IMAPURL_ERR_SYNTAX,
			    "missing host in IMAP URL");
	}
	if ((size_t)(he - h) >= sizeof(out->host))
		return fail(c, IMAPURL_ERR_TOO_LONG, "IMAP URL host too long");
	memcpy(out->host, h, (size_t)(he - h));
	out->host[he - h] = '\0';

	out->port = 143;
	if (p == e)
		return IMAPURL_OK;
	if (*p != ':')
		return fail(c, IMAPURL_ERR_SYNTAX, "invalid host in IMAP URL");
	p++;
	if (!parse_u32(&p, e, 0, &port) || p != e || port == 0 || port > 65535)
		return fail(c, IMAPURL_ERR_SYNTAX, "invalid port in IMAP URL");
	out->port = (uint16_t)port;
	return IMAPURL_OK;
}

/* iuserinfo = enc-user [iauth] / [enc-user] iauth */
static enum imapurl_error
parse_userinfo(struct ctx *c, const char *p, const char *e, struct imapurl *out)
{
	const char *semi = find_byte(p, e, ';');
	enum imapurl_error r;

	if (semi > p) {
		r = decode(c, p, semi, is_achar, out->user, sizeof(out->user),
		    "invalid user in IMAP URL");
		if (r != IMAPURL_OK)
			return r;
	} else if (semi == e)
		return fail(c, IMAPURL_ERR_SYNTAX, "empty user in IMAP URL");
	if (semi == e)
		return IMAPURL_OK;
	if (!match_kw(semi, e, ";auth="))
		return fail(c, IMAPURL_ERR_SYNTAX, "invalid user in IMAP URL");
	p = semi + 6;
	if (e - p == 1 && *p == '*') {
		out->auth_type[0] = '*';
		out->auth_type[1] = '\0';
		return IMAPURL_OK;
	}
	return decode(c, p, e, is_achar, out->auth_type, sizeof(out->auth_type),
	    "invalid ;AUTH= in IMAP URL");
}

/* ";URLAUTH=" already consumed: access [":" mech ":" token] to e. */
static enum imapurl_error
parse_urlauth(struct ctx *c, const char *url, const char *p, const char *e,
	      struct imapurl *out)
{
	const char *ae = find_byte(p, e, ':'), *me;
	enum imapurl_error r;
	size_t n;

	if (match_kw(p, ae, "submit+") || match_kw(p, ae, "user+")) {
		int submit = lower((unsigned char)*p) == 's';

		out->access = submit ? IMAPURL_ACCESS_SUBMIT :
		    IMAPURL_ACCESS_USER;
		r = decode(c, p + (submit ? 7 : 5), ae, is_achar,
		    out->access_user, sizeof(out->access_user),
		    "invalid URLAUTH access identifier");
		if (r != IMAPURL_OK)
			return r;
	} else if (ae - p == 8 && match_kw(p, ae, "authuser"))
		out->access = IMAPURL_ACCESS_AUTHUSER;
	else if (ae - p == 9 && match_kw(p, ae, "anonymous"))
		out->access = IMAPURL_ACCESS_ANONYMOUS;
	else
		return fail(c, IMAPURL_ERR_SYNTAX,
		    "invalid URLAUTH access identifier");
	out->rump_len = (size_t)(ae - url);
	if (ae == e)
		return IMAPURL_OK;

	p = ae + 1;
	me = find_byte(p, e, ':');
	if (me == p || me == e)
		return fail(c, IMAPURL_ERR_SYNTAX, "invalid URLAUTH mechanism");
	for (n = 0; p + n < me; n++)
		if (!is_mechchar((unsigned char)p[n]))
			return fail(c, IMAPURL_ERR_SYNTAX,
			    "invalid URLAUTH mechanism");
	if (n >= sizeof(out->mech))
		return fail(c, IMAPURL_ERR_TOO_LONG,
		    "URLAUTH mechanism too long");
	memcpy(out->mech, p, n);
	out->mech[n] = '\0';

	p = me + 1;
	for (n = 0; p + n < e; n++)
		if (hexval((unsigned char)p[n]) < 0)
			return fail(c, IMAPURL_ERR_SYNTAX,
			    "invalid URLAUTH token");
	if (n < 32)
		return fail(c, IMAPURL_ERR_SYNTAX, "URLAUTH token too short");
	if (n >= sizeof(out->token))
		return fail(c, IMAPURL_ERR_TOO_LONG, "URLAUTH token too long");
	memcpy(out->token, p, n);
	out->token[n] = '\0';
	return IMAPURL_OK;
}

static enum imapurl_error
parse(struct ctx *c, const char *url, size_t len, struct imapurl *out)
{
	const char *e = url + len, *p, *q, *ae, *at, *me;
	enum imapurl_error r;

	if (len > IMAPURL_MAX_LEN)
		return fail(c, IMAPURL_ERR_TOO_LONG, "IMAP URL too long");

	/* scheme */
	for (p = url; p < e && *p != ':'; p++)
		if (!(is_alpha((unsigned char)*p) ||
		    (p > url && (is_digit((unsigned char)*p) || *p == '+' ||
		    *p == '-' || *p == '.'))))
			return fail(c, IMAPURL_ERR_NOT_IMAP,
			    "not an absolute imap:// URL");
	if (p == e || p == url || !match_kw(url, e, "imap://") || p != url + 4)
		return fail(c, IMAPURL_ERR_NOT_IMAP,
		    "not an absolute imap:// URL");
	p = url + 7;

	/* iserver */
	ae = find_byte(p, e, '/');
	at = find_byte(p, ae, '@');
	if (at < ae) {
		r = parse_userinfo(c, p, at, out);
		if (r != IMAPURL_OK)
			return r;
		p = at + 1;
	}
	r = parse_hostport(c, p, ae, out);
	if (r != IMAPURL_OK)
		return r;
	if (ae == e || ae + 1 == e)
		return fail(c, IMAPURL_ERR_NO_UID,
		    "IMAP URL names no message (no ;UID=)");
	p = ae + 1;

	/* enc-mailbox [uidvalidity] */
	for (me = p; me < e && *me != ';' && *me != '?'; me++)
		;
	if (me < e && *me == ';' && match_kw(me, e, ";uidvalidity=")) {
		r = decode(c, p, me, is_bchar, out->mailbox,
		    sizeof(out->mailbox), "invalid mailbox in IMAP URL");
		if (r != IMAPURL_OK)
			return r;
		q = me + 13;
		if (!parse_u32(&q, e, 1, &out->uidvalidity))
			return fail(c, IMAPURL_ERR_SYNTAX,
			    "invalid ;UIDVALIDITY= in IMAP URL");
	} else if (me == e || *me == '?') {
		/* a mailbox or message list: well-formed, but no message */
		r = decode(c, p, me, is_bchar, out->mailbox,
		    sizeof(out->mailbox), "invalid mailbox in IMAP URL");
		if (r != IMAPURL_OK)
			return r;
		return fail(c, IMAPURL_ERR_NO_UID,
		    "IMAP URL names no message (no ;UID=)");
	} else {
		if (me == p || me[-1] != '/' || !match_kw(me, e, ";uid="))
			return fail(c, IMAPURL_ERR_SYNTAX,
			    "invalid path in IMAP URL");
		r = decode(c, p, me - 1, is_bchar, out->mailbox,
		    sizeof(out->mailbox), "invalid mailbox in IMAP URL");
		if (r != IMAPURL_OK)
			return r;
		q = me - 1;
	}
	if (q == e || *q == '?')
		return fail(c, IMAPURL_ERR_NO_UID,
		    "IMAP URL names no message (no ;UID=)");

	/* iuid */
	if (!match_kw(q, e, "/;uid="))
		return fail(c, IMAPURL_ERR_SYNTAX, "invalid path in IMAP URL");
	q += 6;
	if (!parse_u32(&q, e, 1, &out->uid))
		return fail(c, IMAPURL_ERR_SYNTAX, "invalid ;UID= in IMAP URL");

	/* [isection] */
	if (match_kw(q, e, "/;section=")) {
		const char *s = q + 10, *se = find_byte(s, e, ';');

		q = se;
		if (se < e && se > s && se[-1] == '/' &&
		    match_kw(se, e, ";partial="))
			q = --se;
		r = decode(c, s, se, is_bchar, out->section,
		    sizeof(out->section), "invalid ;SECTION= in IMAP URL");
		if (r != IMAPURL_OK)
			return r;
	}

	/* [ipartial] */
	if (match_kw(q, e, "/;partial=")) {
		q += 10;
		if (!parse_u32(&q, e, 0, &out->partial_offset))
			return fail(c, IMAPURL_ERR_SYNTAX,
			    "invalid ;PARTIAL= in IMAP URL");
		if (q < e && *q == '.') {
			q++;
			if (!parse_u32(&q, e, 1, &out->partial_length))
				return fail(c, IMAPURL_ERR_SYNTAX,
				    "invalid ;PARTIAL= in IMAP URL");
		}
		out->has_partial = 1;
	}

	/* [iurlauth] */
	if (match_kw(q, e, ";expire=")) {
		const char *de;

		q += 8;
		de = find_byte(q, e, ';');
		if (!parse_datetime(q, de, &out->expire))
			return fail(c, IMAPURL_ERR_SYNTAX,
			    "invalid ;EXPIRE= in IMAP URL");
		out->has_expire = 1;
		q = de;
		if (!match_kw(q, e, ";urlauth="))
			return fail(c, IMAPURL_ERR_SYNTAX,
			    ";EXPIRE= without ;URLAUTH= in IMAP URL");
	}
	if (match_kw(q, e, ";urlauth="))
		return parse_urlauth(c, url, q + 9, e, out);
	if (q != e)
		return fail(c, IMAPURL_ERR_SYNTAX, "invalid path in IMAP URL");
	return IMAPURL_OK;
}

enum imapurl_error
imapurl_parse(const char *url, size_t len, struct imapurl *out,
	      const char **error_r)
{
	struct ctx c = { NULL };
	enum imapurl_error r;

	memset(out, 0, sizeof(*out));
	if (url == NULL)
		len = 0;
	if (len == 0)
		r = fail(&c, IMAPURL_ERR_NOT_IMAP, "empty IMAP URL");
	else
		r = parse(&c, url, len, out);
	if (r != IMAPURL_OK) {
		/* leave nothing half-parsed behind, the token least of all */
		memset(out, 0, sizeof(*out));
		if (c.error == NULL)
			c.error = "invalid IMAP URL";
	}
	if (error_r != NULL)
		*error_r = r == IMAPURL_OK ? NULL : c.error;
	return r;
}

/* ---- redaction ---- */

struct sink {
	char *out;
	size_t size, n;
	int full;
};

static void
put(struct sink *s, const char *p, size_t n)
{
	if (s->full || s->size == 0)
		return;
	if (n >= s->size - s->n) {	/* keep room for the NUL */
		s->full = 1;
		return;
	}
	memcpy(s->out + s->n, p, n);
	s->n += n;
}

static void
put_escaped(struct sink *s, const char *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n && !s->full; i++) {
		unsigned char ch = (unsigned char)p[i];

		if (ch < 0x20 || ch >= 0x7f || ch == '\\') {
			char esc[4] = { '\\', 'x', hex[ch >> 4], hex[ch & 15] };

			put(s, esc, 4);
		} else
			put(s, (const char *)&ch, 1);
	}
}

void
imapurl_redact(const char *url, size_t len, char *out, size_t outsize)
{
	struct sink s = { out, outsize, 0, 0 };
	const char *e, *p, *c1, *c2, *m;

	if (outsize == 0)
		return;
	if (url == NULL) {
		out[0] = '\0';
		return;
	}
	e = url + len;
	for (p = url; p < e && !match_kw(p, e, ";urlauth="); p++)
		;
	if (p == e) {
		put_escaped(&s, url, len);
	} else {
		p += 9;
		c1 = find_byte(p, e, ':');
		if (c1 == e) {
			/* only the rump: nothing secret */
			put_escaped(&s, url, len);
		} else {
			c2 = find_byte(c1 + 1, e, ':');
			for (m = c1 + 1; m < c2 && is_mechchar((unsigned char)*m); m++)
				;
			/* keep the mechanism only if it looks like one */
			if (c2 == e || m != c2 || c2 == c1 + 1 ||
			    c2 - c1 - 1 >= 32)
				c2 = c1;
			put_escaped(&s, url, (size_t)(c2 + 1 - url));
			put(&s, "<redacted>", 10);
		}
	}
	out[s.n] = '\0';
}
