/*
 * fuzz_audit_format.c - libFuzzer target for what the audit writer and
 * msaproxy-audit read: audit_json_check() (every record a worker sends),
 * audit_chain_check() (every line of a log being verified or continued),
 * audit_clean_text() and audit_parse_time().
 *
 * Beyond memory safety it checks:
 *   - audit_clean_text() output is valid UTF-8 without control characters:
 *     wrapped as a JSON string ('"' and '\' escaped, as jansson does),
 *     audit_json_check() takes it;
 *   - a line made by audit_chain_format() from an object the check accepted
 *     passes audit_chain_check() with the same sequence number and hash.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit_format.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data, *why = NULL;
	static char clean[4 * 4096 + 1], obj[2 * sizeof(clean) + 64];
	static char line[AUDIT_RECORD_MAX + AUDIT_LINE_OVERHEAD];
	unsigned char prev[AUDIT_HASH_LEN], hash[AUDIT_HASH_LEN];
	struct audit_chain c;
	uint64_t seq;
	size_t i, o;
	ssize_t n;
	char t[64];

	if (size > 4096)
		return 0;
	(void)audit_chain_check(text, size, NULL, 0, &seq, prev, hash);
	(void)audit_chain_check(text, size, (const unsigned char *)"k", 1,
	    &seq, prev, hash);
	if (size < sizeof(t)) {
		memcpy(t, text, size);
		t[size] = '\0';
		(void)audit_parse_time(t);
	}

	/* cleaned text is a valid JSON string once quotes are escaped */
	audit_clean_text(text, size, clean, sizeof(clean));
	o = (size_t)snprintf(obj, sizeof(obj), "{\"ts\":\"t\",\"type\":\"");
	for (i = 0; clean[i] != '\0'; i++) {
		if (clean[i] == '"' || clean[i] == '\\')
			obj[o++] = '\\';
		obj[o++] = clean[i];
	}
	memcpy(obj + o, "\"}", 3);
	o += 2;
	if (audit_json_check(obj, o, &why) != 0) {
		fprintf(stderr, "cleaned text refused: %s\n", why);
		abort();
	}

	/* whatever the check accepts chains into a line that verifies */
	if (audit_json_check(text, size, &why) == 0 &&
	    memchr(text, '\n', size) == NULL) {
		memset(&c, 0, sizeof(c));
		n = audit_chain_format(&c, text, size, line, sizeof(line));
		if (n > 0) {
			if (audit_chain_check(line, (size_t)n - 1, NULL, 0, &seq,
			    prev, hash) != AUDIT_LINE_OK || seq != 1 ||
			    memcmp(hash, c.head, sizeof(hash)) != 0)
				abort();
		}
	}
	return 0;
}
