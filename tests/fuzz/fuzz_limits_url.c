/*
 * fuzz_limits_url.c - libFuzzer target for the canonical form and keyed
 * hash of IMAP URLs that rate_limits' url_reuse counts
 * (proxy/limits_url.c).
 *
 * Beyond memory safety, it checks:
 *   - a canonical form exactly when imapurl_parse() accepts the URL, of the
 *     length returned, NUL-terminated, printable ASCII without spaces (every
 *     field is percent-encoded again), starting "imap://";
 *   - the form does not depend on the buffer size (big enough), and a
 *     buffer too small is refused and left empty;
 *   - the hash succeeds exactly when the form does and is deterministic.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imapurl.h"
#include "limits_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t key[32] = { 1, 2, 3 };
	char *a = malloc(LIMITS_URL_CANON_MAX), *b = malloc(LIMITS_URL_CANON_MAX);
	struct imapurl *u = malloc(sizeof(*u));
	uint8_t h1[LIMITS_URL_HASH_LEN], h2[LIMITS_URL_HASH_LEN];
	const char *err;
	long n, m;
	int ok;
	long i;

	if (a == NULL || b == NULL || u == NULL)
		abort();
	ok = imapurl_parse((const char *)data, size, u, &err) == IMAPURL_OK;
	n = limits_url_canonical((const char *)data, size, a,
	    LIMITS_URL_CANON_MAX);
	if ((n >= 0) != ok)
		abort();
	if (n >= 0) {
		if ((size_t)n != strlen(a) || strncmp(a, "imap://", 7) != 0)
			abort();
		for (i = 0; i < n; i++)
			if (a[i] <= ' ' || a[i] >= 0x7f)
				abort();
		m = limits_url_canonical((const char *)data, size, b,
		    (size_t)n + 1);
		if (m != n || strcmp(a, b) != 0)
			abort();
		if (n > 0 && (limits_url_canonical((const char *)data, size, b,
		    (size_t)n) != -1 || b[0] != '\0'))
			abort();
	}
	if ((limits_url_hash((const char *)data, size, key, sizeof(key),
	    h1) == 0) != ok)
		abort();
	if (ok && (limits_url_hash((const char *)data, size, key, sizeof(key),
	    h2) != 0 || memcmp(h1, h2, sizeof(h1)) != 0))
		abort();
	free(a);
	free(b);
	free(u);
	return 0;
}
