/*
 * fuzz_imapurl.c - libFuzzer target for imapurl_parse() and imapurl_redact().
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Itrust \
 *       trust/imapurl.c tests/fuzz/fuzz_imapurl.c -o fuzz_imapurl
 *   ./fuzz_imapurl -dict=tests/fuzz/imapurl.dict tests/fuzz/corpus/imapurl
 *
 * Beyond memory safety (the sanitizers), it checks:
 *   - OK: uid != 0; every string field NUL-terminated within its array;
 *     rump_len <= size, and 0 exactly when there is no ;URLAUTH=; a token
 *     only with a mechanism; error_r NULL.
 *   - errors: a known error code, a non-empty static error string, and
 *     *out left all zero.
 *   - imapurl_redact(): NUL-terminated within outsize for every outsize
 *     tried, and for a parsed URL with a token of 8 or more characters the
 *     token never appears in the output (unless it also appears in the URL
 *     before the token itself, e.g. as the mailbox name).
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* relative, so both build.sh (-I$top) and -Itrust builds find it */
#include "imapurl.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define TERMINATED(f)	(memchr((f), '\0', sizeof(f)) != NULL)

static int
contains(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
	size_t i;

	if (nlen == 0 || nlen > hlen)
		return 0;
	for (i = 0; i + nlen <= hlen; i++)
		if (memcmp(hay + i, needle, nlen) == 0)
			return 1;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct imapurl zero;
	static char out[4 * IMAPURL_MAX_LEN + 64];
	static const size_t outsizes[] = { 1, 2, 17, 80, sizeof(out) };
	const char *url = (const char *)data;
	struct imapurl u;
	const char *error = "unset";
	enum imapurl_error r;
	size_t i, toklen = 0;

	r = imapurl_parse(url, size, &u, &error);
	switch (r) {
	case IMAPURL_OK:
		if (error != NULL || u.uid == 0)
			abort();
		if (!TERMINATED(u.user) || !TERMINATED(u.auth_type) ||
		    !TERMINATED(u.host) || !TERMINATED(u.mailbox) ||
		    !TERMINATED(u.section) || !TERMINATED(u.access_user) ||
		    !TERMINATED(u.mech) || !TERMINATED(u.token))
			abort();
		if (u.rump_len > size || u.host[0] == '\0' ||
		    u.mailbox[0] == '\0' || u.port == 0)
			abort();
		if ((u.access == IMAPURL_ACCESS_NONE) != (u.rump_len == 0))
			abort();
		if ((u.mech[0] == '\0') != (u.token[0] == '\0'))
			abort();
		toklen = strlen(u.token);
		if (toklen != 0 && toklen < 32)
			abort();
		break;
	case IMAPURL_ERR_SYNTAX:
	case IMAPURL_ERR_NOT_IMAP:
	case IMAPURL_ERR_TOO_LONG:
	case IMAPURL_ERR_NO_UID:
		if (error == NULL || error[0] == '\0')
			abort();
		if (memcmp(&u, &zero, sizeof(u)) != 0)
			abort();
		break;
	default:
		abort();
	}

	for (i = 0; i < sizeof(outsizes) / sizeof(outsizes[0]); i++) {
		size_t n = outsizes[i], olen;

		memset(out, 'Z', sizeof(out));
		imapurl_redact(url, size, out, n);
		olen = strnlen(out, n);
		if (olen >= n)
			abort();
		if (toklen >= 8 &&
		    contains(out, olen, u.token, toklen) &&
		    !contains(url, size - toklen, u.token, toklen))
			abort();
	}
	return 0;
}
