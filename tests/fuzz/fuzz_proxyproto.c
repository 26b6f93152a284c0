/*
 * fuzz_proxyproto.c - libFuzzer target for proxyproto_parse().
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iproxy \
 *       proxy/proxyproto.c tests/fuzz/fuzz_proxyproto.c -o fuzz_proxyproto
 *   ./fuzz_proxyproto -dict=tests/fuzz/proxyproto.dict \
 *       tests/fuzz/corpus/proxyproto
 *
 * Beyond memory safety (the sanitizers), it checks the promises the listener
 * relies on when it calls the parser again as bytes trickle in:
 *   - OK: 0 < *len_r <= min(len, PROXYPROTO_MAX_LEN), v1 within 107 bytes;
 *     every shorter prefix is NEED_MORE; exactly *len_r bytes give the same
 *     answer, so bytes after the header are never consumed.
 *   - NEED_MORE: every shorter prefix is NEED_MORE too, and the buffer is
 *     shorter than the longest header.
 *   - INVALID: a non-empty error string.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
check_prefixes_need_more(const uint8_t *data, size_t n)
{
	struct proxyproto_info info;
	const char *error;
	size_t k, hdrlen;

	for (k = 0; k < n; k++)
		if (proxyproto_parse(data, k, &hdrlen, &info, &error) !=
		    PROXYPROTO_NEED_MORE)
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxyproto_info info, again;
	enum proxyproto_result res;
	const char *error = NULL;
	size_t hdrlen = 0, hdrlen2 = 0;

	res = proxyproto_parse(data, size, &hdrlen, &info, &error);
	switch (res) {
	case PROXYPROTO_OK:
		if (hdrlen == 0 || hdrlen > size || hdrlen > PROXYPROTO_MAX_LEN)
			abort();
		if (info.version == 1) {
			if (hdrlen > PROXYPROTO_V1_MAX_LEN)
				abort();
		} else if (info.version != 2)
			abort();
		if (info.has_addrs != 0 && info.has_addrs != 1)
			abort();
		if (info.has_addrs &&
		    (info.src.ss_family != info.dst.ss_family ||
		    (info.src.ss_family != AF_INET &&
		    info.src.ss_family != AF_INET6)))
			abort();
		if (proxyproto_parse(data, hdrlen, &hdrlen2, &again, &error) !=
		    PROXYPROTO_OK || hdrlen2 != hdrlen ||
		    again.version != info.version ||
		    again.has_addrs != info.has_addrs ||
		    memcmp(&again.src, &info.src, sizeof(info.src)) != 0 ||
		    memcmp(&again.dst, &info.dst, sizeof(info.dst)) != 0)
			abort();
		check_prefixes_need_more(data, hdrlen);
		break;
	case PROXYPROTO_NEED_MORE:
		if (size >= PROXYPROTO_MAX_LEN)
			abort();
		check_prefixes_need_more(data, size);
		break;
	case PROXYPROTO_INVALID:
		if (error == NULL || error[0] == '\0')
			abort();
		break;
	default:
		abort();
	}
	return 0;
}
