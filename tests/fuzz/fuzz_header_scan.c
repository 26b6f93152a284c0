/*
 * fuzz_header_scan.c - libFuzzer target for the Message-ID scanner
 * (proxy/header_scan.c), which sees every message's header section.
 *
 * Beyond memory safety it checks resumability: the input fed whole and fed
 * in two pieces (split at a point taken from the first byte) gives the same
 * Message-ID, and the value is never longer than HEADER_SCAN_VALUE_MAX.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "header_scan.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct header_scan a, b;
	const char *x, *y;
	size_t split;

	if (size == 0)
		return 0;
	split = data[0] % size;
	data++;
	size--;
	if (split > size)
		split = size;
	header_scan_init(&a);
	header_scan_feed(&a, (const char *)data, size);
	header_scan_init(&b);
	header_scan_feed(&b, (const char *)data, split);
	header_scan_feed(&b, (const char *)data + split, size - split);
	x = header_scan_message_id(&a);
	y = header_scan_message_id(&b);
	if ((x == NULL) != (y == NULL))
		abort();
	if (x != NULL && (strcmp(x, y) != 0 ||
	    strlen(x) > HEADER_SCAN_VALUE_MAX))
		abort();
	return 0;
}
