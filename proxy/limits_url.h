/*
 * limits_url.h - IMAP URLs as the url_reuse limit (rate_limits.h, RFC 4468
 * section 8) counts them: one canonical form per message reference, kept
 * only as a keyed hash.
 *
 * Two URLs that name the same content with the same authorization are
 * counted as one: the canonical form is built from the parsed URL
 * (trust/imapurl.h), so spelling does not matter -- the scheme and host are
 * lower-cased, the default port 143 is written out, percent-encoding is
 * undone and redone one way, "INBOX" is matched without regard to case
 * (RFC 3501 5.1), keywords, the section and the URLAUTH mechanism are
 * upper-cased, and the URLAUTH token (hex, RFC 4467) lower-cased.  The
 * token is part of the form: a URL authorized anew is a new URL.
 *
 * SECURITY: the canonical form holds the token; it never leaves this
 * module but as HMAC-SHA256 under a key of rate_limits.c (random per start, or
 * rate_limits.url_key_file for a fleet), so what Redis or a memory dump
 * holds cannot be turned back into a usable URL.  Buffers that held the
 * form are wiped.
 */
#ifndef MSA_LIMITS_URL_H
#define MSA_LIMITS_URL_H

#include <stddef.h>
#include <stdint.h>

#define LIMITS_URL_HASH_LEN 32		/* HMAC-SHA256 */
#define LIMITS_URL_CANON_MAX 8192	/* room for any canonical form */

/* The canonical form of url[0..len) into out (NUL-terminated).  Returns
 * its length, or -1 if url is not an IMAP URL imapurl_parse() accepts or
 * out is too small. */
long limits_url_canonical(const char *url, size_t len, char *out,
			  size_t outsize);

/* HMAC-SHA256 under key of the canonical form of url.  0, or -1 as above. */
int limits_url_hash(const char *url, size_t len, const uint8_t *key,
		    size_t keylen, uint8_t out[LIMITS_URL_HASH_LEN]);

/* Lower-case hex of a hash (2 * LIMITS_URL_HASH_LEN + 1 bytes). */
void limits_url_hex(const uint8_t hash[LIMITS_URL_HASH_LEN],
		    char out[2 * LIMITS_URL_HASH_LEN + 1]);

#endif
