/*
 * limits_url.c - see limits_url.h.
 *
 * The canonical form (for the unit tests; nothing else sees it):
 *
 *   imap://[USER[;AUTH=TYPE]@]host:port/MAILBOX[;UIDVALIDITY=n]/;UID=n
 *       [/;SECTION=SEC][/;PARTIAL=o[.l]][;EXPIRE=epoch]
 *       [;URLAUTH=ACCESS[:MECH:token]]
 *
 * where every decoded field is percent-encoded again with only
 * RFC 3986 unreserved characters left as they are (so no field can hold a
 * separator), and the cases are fixed as limits_url.h says.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "imapurl.h"
#include "limits_url.h"

struct out {
	char *p;
	size_t size, len;
	int overflow;
};

static void
put(struct out *o, const char *s, size_t n)
{
	if (o->overflow || n >= o->size - o->len) {
		o->overflow = 1;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
}

static void
puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

/* prefix, then v in decimal */
static void
putn(struct out *o, const char *prefix, unsigned long long v)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%llu", v);

	puts_(o, prefix);
	put(o, buf, (size_t)n);
}

enum fold { FOLD_NONE, FOLD_UPPER, FOLD_LOWER };

/* A decoded field, percent-encoded again: unreserved characters as they
 * are (case folded when asked), everything else as %XX. */
static void
put_enc(struct out *o, const char *s, enum fold fold)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		char e[3];

		if (fold == FOLD_UPPER && c >= 'a' && c <= 'z')
			c = (unsigned char)(c - 'a' + 'A');
		else if (fold == FOLD_LOWER && c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
		    c == '~') {
			put(o, (const char *)&c, 1);
			continue;
		}
		e[0] = '%';
		e[1] = hex[c >> 4];
		e[2] = hex[c & 15];
		put(o, e, 3);
	}
}

long
limits_url_canonical(const char *url, size_t len, char *out, size_t outsize)
{
	struct imapurl *u;
	struct out o = { out, outsize, 0, 0 };
	const char *err;

	if (outsize == 0)
		return -1;
	out[0] = '\0';
	u = malloc(sizeof(*u));
	if (u == NULL)
		return -1;
	if (imapurl_parse(url, len, u, &err) != IMAPURL_OK) {
		explicit_bzero(u, sizeof(*u));
		free(u);
		return -1;
	}
	puts_(&o, "imap://");
	if (u->user[0] != '\0') {
		put_enc(&o, u->user, FOLD_NONE);
		if (u->auth_type[0] != '\0') {
			puts_(&o, ";AUTH=");
			/* "*" stays "*" (encoded) */
			put_enc(&o, u->auth_type, FOLD_UPPER);
		}
		puts_(&o, "@");
	}
	put_enc(&o, u->host, FOLD_LOWER);
	putn(&o, ":", u->port);
	puts_(&o, "/");
	/* RFC 3501 5.1: INBOX is INBOX in any case */
	if (strcasecmp(u->mailbox, "INBOX") == 0)
		puts_(&o, "INBOX");
	else
		put_enc(&o, u->mailbox, FOLD_NONE);
	if (u->uidvalidity != 0)
		putn(&o, ";UIDVALIDITY=", u->uidvalidity);
	putn(&o, "/;UID=", u->uid);
	if (u->section[0] != '\0') {
		puts_(&o, "/;SECTION=");
		put_enc(&o, u->section, FOLD_UPPER);
	}
	if (u->has_partial) {
		putn(&o, "/;PARTIAL=", u->partial_offset);
		if (u->partial_length != 0)
			putn(&o, ".", u->partial_length);
	}
	if (u->has_expire)
		putn(&o, ";EXPIRE=", (unsigned long long)u->expire);
	if (u->access != IMAPURL_ACCESS_NONE) {
		puts_(&o, ";URLAUTH=");
		switch (u->access) {
		case IMAPURL_ACCESS_SUBMIT:
			puts_(&o, "submit+");
			put_enc(&o, u->access_user, FOLD_NONE);
			break;
		case IMAPURL_ACCESS_USER:
			puts_(&o, "user+");
			put_enc(&o, u->access_user, FOLD_NONE);
			break;
		case IMAPURL_ACCESS_AUTHUSER:
			puts_(&o, "authuser");
			break;
		case IMAPURL_ACCESS_ANONYMOUS:
			puts_(&o, "anonymous");
			break;
		default:
			break;
		}
		if (u->mech[0] != '\0' || u->token[0] != '\0') {
			puts_(&o, ":");
			put_enc(&o, u->mech, FOLD_UPPER);
			puts_(&o, ":");
			put_enc(&o, u->token, FOLD_LOWER);
		}
	}
	explicit_bzero(u, sizeof(*u));
	free(u);
	if (o.overflow) {
		explicit_bzero(out, outsize);
		out[0] = '\0';
		return -1;
	}
	return (long)o.len;
}

int
limits_url_hash(const char *url, size_t len, const uint8_t *key,
		size_t keylen, uint8_t out[LIMITS_URL_HASH_LEN])
{
	char *canon = malloc(LIMITS_URL_CANON_MAX);
	unsigned int outlen = 0;
	long n;
	int rc = -1;

	if (canon == NULL)
		return -1;
	n = limits_url_canonical(url, len, canon, LIMITS_URL_CANON_MAX);
	if (n >= 0 && HMAC(EVP_sha256(), key, (int)keylen,
	    (const unsigned char *)canon, (size_t)n, out, &outlen) != NULL &&
	    outlen == LIMITS_URL_HASH_LEN)
		rc = 0;
	explicit_bzero(canon, LIMITS_URL_CANON_MAX);
	free(canon);
	return rc;
}

void
limits_url_hex(const uint8_t hash[LIMITS_URL_HASH_LEN],
	       char out[2 * LIMITS_URL_HASH_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < LIMITS_URL_HASH_LEN; i++) {
		out[2 * i] = hex[hash[i] >> 4];
		out[2 * i + 1] = hex[hash[i] & 15];
	}
	out[2 * LIMITS_URL_HASH_LEN] = '\0';
}
