/*
 * audit_format.c - see audit_format.h.
 *
 * HMAC-SHA256 (RFC 2104) is built here on EVP's SHA-256, so that it can
 * hash prev and the record in two updates without copying, and without
 * the HMAC_CTX calls OpenSSL 3 deprecates.  Checked against RFC 4231's
 * vectors in tests/unit/test_audit_format.c.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "audit_format.h"

#define SHA256_BLOCK 64

static void
sha256_parts(const unsigned char *a, size_t alen, const unsigned char *b,
	     size_t blen, const unsigned char *c, size_t clen,
	     unsigned char out[AUDIT_HASH_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n = AUDIT_HASH_LEN;

	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
	    (alen > 0 && EVP_DigestUpdate(ctx, a, alen) != 1) ||
	    (blen > 0 && EVP_DigestUpdate(ctx, b, blen) != 1) ||
	    (clen > 0 && EVP_DigestUpdate(ctx, c, clen) != 1) ||
	    EVP_DigestFinal_ex(ctx, out, &n) != 1) {
		/* out of memory in libcrypto: a hash nobody can match */
		memset(out, 0xff, AUDIT_HASH_LEN);
	}
	EVP_MD_CTX_free(ctx);
}

void
audit_chain_digest(const unsigned char *key, size_t keylen,
		   const unsigned char prev[AUDIT_HASH_LEN], const char *bytes,
		   size_t len, unsigned char out[AUDIT_HASH_LEN])
{
	unsigned char k[SHA256_BLOCK], pad[SHA256_BLOCK], inner[AUDIT_HASH_LEN];
	size_t i;

	if (key == NULL || keylen == 0) {
		sha256_parts(prev, AUDIT_HASH_LEN, (const unsigned char *)bytes,
		    len, NULL, 0, out);
		return;
	}
	/* RFC 2104: keys longer than a block are hashed first */
	memset(k, 0, sizeof(k));
	if (keylen > SHA256_BLOCK)
		sha256_parts(key, keylen, NULL, 0, NULL, 0, k);
	else
		memcpy(k, key, keylen);
	for (i = 0; i < SHA256_BLOCK; i++)
		pad[i] = k[i] ^ 0x36;
	sha256_parts(pad, SHA256_BLOCK, prev, AUDIT_HASH_LEN,
	    (const unsigned char *)bytes, len, inner);
	for (i = 0; i < SHA256_BLOCK; i++)
		pad[i] = k[i] ^ 0x5c;
	sha256_parts(pad, SHA256_BLOCK, inner, AUDIT_HASH_LEN, NULL, 0, out);
	explicit_bzero(k, sizeof(k));
	explicit_bzero(pad, sizeof(pad));
	explicit_bzero(inner, sizeof(inner));
}

void
audit_hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;		/* lower case only: one spelling per hash */
}

int
audit_unhex(const char *in, size_t n, unsigned char *out)
{
	size_t i;

	for (i = 0; i < n; i++) {
		int hi = hexval(in[2 * i]), lo = hexval(in[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

#define PREV_KEY ",\"prev\":\""
#define HASH_KEY "\",\"hash\":\""
#define SEQ_KEY "{\"seq\":"

ssize_t
audit_chain_format(struct audit_chain *c, const char *obj, size_t objlen,
		   char *out, size_t outsize)
{
	unsigned char hash[AUDIT_HASH_LEN];
	char hex[AUDIT_HEX_LEN + 1];
	int n;
	size_t o;

	/* "{" member... "}": at least one member, no newline */
	if (objlen < 3 || obj[0] != '{' || obj[objlen - 1] != '}' ||
	    obj[1] == '}' || memchr(obj, '\n', objlen) != NULL ||
	    objlen + AUDIT_LINE_OVERHEAD > outsize)
		return -1;
	n = snprintf(out, outsize, SEQ_KEY "%" PRIu64 ",", c->seq + 1);
	if (n < 0)
		return -1;
	o = (size_t)n;
	memcpy(out + o, obj + 1, objlen - 2);
	o += objlen - 2;
	audit_hex(c->head, AUDIT_HASH_LEN, hex);
	memcpy(out + o, PREV_KEY, sizeof(PREV_KEY) - 1);
	o += sizeof(PREV_KEY) - 1;
	memcpy(out + o, hex, AUDIT_HEX_LEN);
	o += AUDIT_HEX_LEN;
	out[o++] = '"';
	/* everything so far is what the hash covers */
	audit_chain_digest(c->key, c->keylen, c->head, out, o, hash);
	memcpy(out + o, &HASH_KEY[1], sizeof(HASH_KEY) - 2);
	o += sizeof(HASH_KEY) - 2;
	audit_hex(hash, AUDIT_HASH_LEN, out + o);
	o += AUDIT_HEX_LEN;
	out[o++] = '"';
	out[o++] = '}';
	out[o++] = '\n';
	c->seq++;
	memcpy(c->head, hash, AUDIT_HASH_LEN);
	return (ssize_t)o;
}

enum audit_line_status
audit_chain_check(const char *line, size_t len, const unsigned char *key,
		  size_t keylen, uint64_t *seq_r,
		  unsigned char prev_r[AUDIT_HASH_LEN],
		  unsigned char hash_r[AUDIT_HASH_LEN])
{
	/* ...,"prev":"<64>","hash":"<64>"} */
	const size_t tail = (sizeof(PREV_KEY) - 1) + AUDIT_HEX_LEN +
	    (sizeof(HASH_KEY) - 1) + AUDIT_HEX_LEN + 2;
	unsigned char calc[AUDIT_HASH_LEN];
	const char *p, *t;
	uint64_t seq = 0;
	size_t digits = 0, hashed;

	if (len < sizeof(SEQ_KEY) - 1 + 2 + tail ||
	    memcmp(line, SEQ_KEY, sizeof(SEQ_KEY) - 1) != 0)
		return AUDIT_LINE_MALFORMED;
	for (p = line + sizeof(SEQ_KEY) - 1; p < line + len && *p >= '0' &&
	    *p <= '9'; p++) {
		if (seq > (UINT64_MAX - 9) / 10 || (digits == 0 && *p == '0'))
			return AUDIT_LINE_MALFORMED;
		seq = seq * 10 + (uint64_t)(*p - '0');
		digits++;
	}
	if (digits == 0 || p >= line + len || *p != ',')
		return AUDIT_LINE_MALFORMED;
	t = line + len - tail;
	if (t < p || memcmp(t, PREV_KEY, sizeof(PREV_KEY) - 1) != 0)
		return AUDIT_LINE_MALFORMED;
	t += sizeof(PREV_KEY) - 1;
	if (audit_unhex(t, AUDIT_HASH_LEN, prev_r) < 0)
		return AUDIT_LINE_MALFORMED;
	t += AUDIT_HEX_LEN;
	hashed = (size_t)(t - line) + 1;	/* through the closing quote */
	if (memcmp(t, HASH_KEY, sizeof(HASH_KEY) - 1) != 0)
		return AUDIT_LINE_MALFORMED;
	t += sizeof(HASH_KEY) - 1;
	if (audit_unhex(t, AUDIT_HASH_LEN, hash_r) < 0)
		return AUDIT_LINE_MALFORMED;
	t += AUDIT_HEX_LEN;
	if (t[0] != '"' || t[1] != '}')
		return AUDIT_LINE_MALFORMED;
	*seq_r = seq;
	audit_chain_digest(key, keylen, prev_r, line, hashed, calc);
	if (memcmp(calc, hash_r, AUDIT_HASH_LEN) != 0)
		return AUDIT_LINE_BAD_HASH;
	return AUDIT_LINE_OK;
}

void
audit_format_time(const struct timespec *ts, char out[32])
{
	char date[24];
	struct tm tm;

	gmtime_r(&ts->tv_sec, &tm);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, 32, "%.19s.%03dZ", date, (int)(ts->tv_nsec / 1000000));
}

/* n digits at *p into *v; advances. */
static int
take_digits(const char **p, int n, int *v)
{
	int i;

	*v = 0;
	for (i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return -1;
		*v = *v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	return 0;
}

int64_t
audit_parse_time(const char *s)
{
	struct tm tm;
	const char *p = s;
	int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0;
	time_t t;

	if (take_digits(&p, 4, &y) < 0 || *p++ != '-' ||
	    take_digits(&p, 2, &mo) < 0 || *p++ != '-' ||
	    take_digits(&p, 2, &d) < 0)
		return -1;
	if (*p == 'T' || *p == ' ') {
		p++;
		if (take_digits(&p, 2, &h) < 0 || *p++ != ':' ||
		    take_digits(&p, 2, &mi) < 0)
			return -1;
		if (*p == ':') {
			p++;
			if (take_digits(&p, 2, &sec) < 0)
				return -1;
			if (*p == '.') {
				int scale = 100;

				p++;
				if (!isdigit((unsigned char)*p))
					return -1;
				for (; isdigit((unsigned char)*p); p++) {
					ms += (*p - '0') * scale;
					scale /= 10;
				}
			}
		}
	}
	if (*p == 'Z')
		p++;
	if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
	    mi > 59 || sec > 60)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -1;
	return (int64_t)t * 1000 + ms;
}

long
audit_key_load(const char *path, unsigned char *key, size_t keysize,
	       const char **error_r)
{
	char buf[AUDIT_KEY_MAX + 3];
	ssize_t n;
	size_t len;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0) {
		*error_r = "cannot open the HMAC key file";
		return -1;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0) {
		*error_r = "cannot read the HMAC key file";
		return -1;
	}
	buf[n] = '\0';
	len = strcspn(buf, "\r\n");
	if (len == (size_t)n && (size_t)n > AUDIT_KEY_MAX)
		len = (size_t)n;	/* no line end within reach: too long */
	if (len < AUDIT_KEY_MIN) {
		*error_r = "the HMAC key (first line of the key file) is shorter "
		    "than 32 octets";
		explicit_bzero(buf, sizeof(buf));
		return -1;
	}
	if (len > AUDIT_KEY_MAX || len > keysize) {
		*error_r = "the HMAC key (first line of the key file) is longer "
		    "than 1024 octets";
		explicit_bzero(buf, sizeof(buf));
		return -1;
	}
	memcpy(key, buf, len);
	explicit_bzero(buf, sizeof(buf));
	return (long)len;
}

void
audit_key_id(const unsigned char *key, size_t keylen, char out[17])
{
	unsigned char h[AUDIT_HASH_LEN];

	sha256_parts(key, keylen, NULL, 0, NULL, 0, h);
	audit_hex(h, 8, out);
}

/* --- a validating JSON scanner (RFC 8259) --- */

struct jscan {
	const unsigned char *p, *end;
	const char *error;
};

static size_t utf8_seq(const unsigned char *p, size_t left);

static void
jws(struct jscan *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t'))
		j->p++;	/* (no newlines: one record, one line) */
}

/* A string; its content (without quotes) in *s, *n when wanted. */
static int
jstring(struct jscan *j, const unsigned char **s, size_t *n)
{
	const unsigned char *start;

	if (j->p >= j->end || *j->p != '"') {
		j->error = "a string was expected";
		return -1;
	}
	start = ++j->p;
	while (j->p < j->end && *j->p != '"') {
		unsigned char c = *j->p;

		if (c < 0x20) {
			j->error = "a control character in a string";
			return -1;
		}
		if (c == '\\') {
			if (j->end - j->p < 2) {
				j->error = "a string ends in an escape";
				return -1;
			}
			c = j->p[1];
			if (c == 'u') {
				int i;

				if (j->end - j->p < 6) {
					j->error = "a short \\u escape";
					return -1;
				}
				for (i = 2; i < 6; i++)
					if (!isxdigit(j->p[i])) {
						j->error = "a bad \\u escape";
						return -1;
					}
				j->p += 6;
				continue;
			}
			if (strchr("\"\\/bfnrt", c) == NULL || c == '\0') {
				j->error = "a bad escape";
				return -1;
			}
			j->p += 2;
			continue;
		}
		if (c >= 0x80) {
			size_t k = utf8_seq(j->p, (size_t)(j->end - j->p));

			/* C1 controls are fine in JSON; utf8_seq refuses them */
			if (k == 0 && c == 0xc2 && j->end - j->p >= 2 &&
			    j->p[1] >= 0x80 && j->p[1] < 0xa0)
				k = 2;
			if (k == 0) {
				j->error = "a string is not UTF-8";
				return -1;
			}
			j->p += k;
			continue;
		}
		j->p++;
	}
	if (j->p >= j->end) {
		j->error = "an unterminated string";
		return -1;
	}
	if (s != NULL) {
		*s = start;
		*n = (size_t)(j->p - start);
	}
	j->p++;
	return 0;
}

static int
jnumber(struct jscan *j)
{
	const unsigned char *p = j->p;

	if (p < j->end && *p == '-')
		p++;
	if (p >= j->end || !isdigit(*p))
		goto bad;
	if (*p == '0')
		p++;
	else
		while (p < j->end && isdigit(*p))
			p++;
	if (p < j->end && *p == '.') {
		p++;
		if (p >= j->end || !isdigit(*p))
			goto bad;
		while (p < j->end && isdigit(*p))
			p++;
	}
	if (p < j->end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < j->end && (*p == '+' || *p == '-'))
			p++;
		if (p >= j->end || !isdigit(*p))
			goto bad;
		while (p < j->end && isdigit(*p))
			p++;
	}
	j->p = p;
	return 0;
bad:
	j->error = "a bad number";
	return -1;
}

static int jvalue(struct jscan *j, int depth);

/* An object; at the top (depth 0) its member names are checked. */
static int
jobject(struct jscan *j, int depth)
{
	int have_type = 0, have_ts = 0;

	j->p++;		/* '{' */
	jws(j);
	if (j->p < j->end && *j->p == '}') {
		j->p++;
		goto done;
	}
	for (;;) {
		const unsigned char *name;
		size_t n;

		jws(j);
		if (jstring(j, &name, &n) < 0)
			return -1;
		jws(j);
		if (j->p >= j->end || *j->p != ':') {
			j->error = "':' was expected";
			return -1;
		}
		j->p++;
		jws(j);
		if (depth == 0) {
			if ((n == 3 && memcmp(name, "seq", 3) == 0) ||
			    (n == 4 && memcmp(name, "prev", 4) == 0) ||
			    (n == 4 && memcmp(name, "hash", 4) == 0)) {
				j->error = "sets seq, prev or hash";
				return -1;
			}
			if ((n == 4 && memcmp(name, "type", 4) == 0) ||
			    (n == 2 && memcmp(name, "ts", 2) == 0)) {
				if (j->p >= j->end || *j->p != '"') {
					j->error = "type and ts must be strings";
					return -1;
				}
				if (n == 4)
					have_type = 1;
				else
					have_ts = 1;
			}
		}
		if (jvalue(j, depth + 1) < 0)
			return -1;
		jws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			continue;
		}
		if (j->p < j->end && *j->p == '}') {
			j->p++;
			break;
		}
		j->error = "',' or '}' was expected";
		return -1;
	}
done:
	if (depth == 0 && (!have_type || !have_ts)) {
		j->error = "no type or ts";
		return -1;
	}
	return 0;
}

static int
jarray(struct jscan *j, int depth)
{
	j->p++;		/* '[' */
	jws(j);
	if (j->p < j->end && *j->p == ']') {
		j->p++;
		return 0;
	}
	for (;;) {
		jws(j);
		if (jvalue(j, depth + 1) < 0)
			return -1;
		jws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			continue;
		}
		if (j->p < j->end && *j->p == ']') {
			j->p++;
			return 0;
		}
		j->error = "',' or ']' was expected";
		return -1;
	}
}

static int
jliteral(struct jscan *j, const char *lit)
{
	size_t n = strlen(lit);

	if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0) {
		j->error = "a value was expected";
		return -1;
	}
	j->p += n;
	return 0;
}

static int
jvalue(struct jscan *j, int depth)
{
	if (depth > AUDIT_JSON_DEPTH) {
		j->error = "nested too deep";
		return -1;
	}
	if (j->p >= j->end) {
		j->error = "a value was expected";
		return -1;
	}
	switch (*j->p) {
	case '{':
		return jobject(j, depth);
	case '[':
		return jarray(j, depth);
	case '"':
		return jstring(j, NULL, NULL);
	case 't':
		return jliteral(j, "true");
	case 'f':
		return jliteral(j, "false");
	case 'n':
		return jliteral(j, "null");
	default:
		return jnumber(j);
	}
}

int
audit_json_check(const char *text, size_t len, const char **error_r)
{
	struct jscan j = { (const unsigned char *)text,
	    (const unsigned char *)text + len, NULL };

	if (len == 0 || text[0] != '{') {
		*error_r = "not a JSON object";
		return -1;
	}
	if (jobject(&j, 0) < 0) {
		*error_r = j.error;
		return -1;
	}
	if (j.p != j.end) {
		*error_r = "something follows the object";
		return -1;
	}
	return 0;
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629 4), 0 if none.
 * C1 controls (U+0080..U+009F) count as not well-formed: they are shown
 * escaped like C0 controls. */
static size_t
utf8_seq(const unsigned char *p, size_t left)
{
	unsigned char c = p[0];
	size_t n, i;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (left < n)
		return 0;
	if (c == 0xc2)
		lo = 0xa0;
	else if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

char *
audit_clean_text(const char *in, size_t len, char *out, size_t outsize)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)in;
	size_t i = 0, o = 0;

	if (outsize == 0)
		return out;
	while (i < len) {
		unsigned char c = p[i];
		size_t n;

		if (c >= 0x20 && c < 0x7f && c != '\\') {
			if (o + 1 >= outsize)
				break;
			out[o++] = (char)c;
			i++;
			continue;
		}
		n = c >= 0x80 ? utf8_seq(p + i, len - i) : 0;
		if (n > 0) {
			if (o + n >= outsize)
				break;
			memcpy(out + o, p + i, n);
			o += n;
			i += n;
			continue;
		}
		if (o + 4 >= outsize)
			break;
		out[o++] = '\\';
		out[o++] = 'x';
		out[o++] = digits[c >> 4];
		out[o++] = digits[c & 15];
		i++;
	}
	out[o] = '\0';
	return out;
}
