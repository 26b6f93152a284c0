/*
 * test_audit_format.c - the audit log's format (auth/audit_format.c) and
 * the RFC 5424 message of its syslog copy (auth/audit_writer.c).
 *
 * The digest is checked against RFC 4231's HMAC-SHA256 vectors (the
 * message split into "prev" and the record bytes) and against SHA-256 of a
 * known input; the chain by building lines and then breaking them one way
 * at a time (a byte edited, the hash edited, the layout broken, another
 * key), as msaproxy-audit verify meets them.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "audit_format.h"
#include "audit_writer.h"

#define N_ELEMENTS(a)	(sizeof(a) / sizeof((a)[0]))

static void
hex_equal(const unsigned char *h, const char *want)
{
	char hex[AUDIT_HEX_LEN + 1];

	audit_hex(h, AUDIT_HASH_LEN, hex);
	assert_string_equal(hex, want);
}

/* RFC 4231 4.5 (test case 4) and 4.7 (test case 6: a key longer than a
 * block is hashed first), and SHA-256 without a key. */
static void
test_digest_vectors(void **state)
{
	unsigned char key[131], prev[AUDIT_HASH_LEN], out[AUDIT_HASH_LEN];
	char data[64];
	const char *msg6 = "Test Using Larger Than Block-Size Key - Hash Key First";
	size_t i;

	(void)state;
	for (i = 0; i < 25; i++)
		key[i] = (unsigned char)(i + 1);
	memset(prev, 0xcd, sizeof(prev));
	memset(data, 0xcd, sizeof(data));
	audit_chain_digest(key, 25, prev, data, 50 - 32, out);
	hex_equal(out, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");

	memset(key, 0xaa, sizeof(key));
	memcpy(prev, msg6, 32);
	audit_chain_digest(key, 131, prev, msg6 + 32, strlen(msg6) - 32, out);
	hex_equal(out, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");

	memset(prev, 0, sizeof(prev));
	audit_chain_digest(NULL, 0, prev, "abc", 3, out);
	hex_equal(out, "365aa7d8f7f9402c4b9434502b4cc89ddb09fe50d7cd95b493b834c62d5a5370");
}

static const char *const records[] = {
	"{\"ts\":\"2026-11-24T10:00:00.000Z\",\"type\":\"a\"}",
	"{\"ts\":\"2026-11-24T10:00:00.001Z\",\"type\":\"b\",\"x\":\"\\u00e9\"}",
	"{\"ts\":\"2026-11-24T10:00:00.002Z\",\"type\":\"c\",\"n\":[1,2]}",
};

/* Lines of a chain of `records`, into lines[][] (without newline). */
static void
build(const unsigned char *key, size_t keylen, char lines[][512])
{
	struct audit_chain c;
	size_t i;

	memset(&c, 0, sizeof(c));
	c.key = key;
	c.keylen = keylen;
	for (i = 0; i < N_ELEMENTS(records); i++) {
		ssize_t n = audit_chain_format(&c, records[i], strlen(records[i]),
		    lines[i], 512);

		assert_true(n > 0);
		assert_int_equal(lines[i][n - 1], '\n');
		lines[i][n - 1] = '\0';
		assert_int_equal(c.seq, i + 1);
	}
}

static void
test_chain_layout(void **state)
{
	char lines[3][512], want[200];
	unsigned char prev[AUDIT_HASH_LEN], hash[AUDIT_HASH_LEN],
	    last[AUDIT_HASH_LEN];
	uint64_t seq;
	size_t i;

	(void)state;
	build(NULL, 0, lines);
	/* {"seq":1, + the members + ,"prev":"0...0","hash":"..."} */
	snprintf(want, sizeof(want), "{\"seq\":1,%s", records[0] + 1);
	assert_memory_equal(lines[0], want, strlen(want) - 1);
	assert_non_null(strstr(lines[0], ",\"prev\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"hash\":\""));
	memset(last, 0, sizeof(last));
	for (i = 0; i < 3; i++) {
		assert_int_equal(audit_chain_check(lines[i], strlen(lines[i]),
		    NULL, 0, &seq, prev, hash), AUDIT_LINE_OK);
		assert_int_equal(seq, i + 1);
		assert_memory_equal(prev, last, sizeof(last));	/* linked */
		memcpy(last, hash, sizeof(last));
	}
}

static void
test_chain_breaks(void **state)
{
	static const unsigned char key[] = "0123456789abcdef0123456789abcdef",
	    other[] = "0123456789abcdef0123456789abcdeX";
	char lines[3][512], l[1100];
	unsigned char prev[AUDIT_HASH_LEN], hash[AUDIT_HASH_LEN];
	uint64_t seq;
	char *p;

	(void)state;
	build(key, 32, lines);
	assert_int_equal(audit_chain_check(lines[1], strlen(lines[1]), key, 32,
	    &seq, prev, hash), AUDIT_LINE_OK);
	/* another key, or none: the HMAC does not match */
	assert_int_equal(audit_chain_check(lines[1], strlen(lines[1]), other,
	    32, &seq, prev, hash), AUDIT_LINE_BAD_HASH);
	assert_int_equal(audit_chain_check(lines[1], strlen(lines[1]), NULL, 0,
	    &seq, prev, hash), AUDIT_LINE_BAD_HASH);
	assert_int_equal(seq, 2);	/* filled in anyway */

	/* one byte of content */
	strcpy(l, lines[1]);
	p = strstr(l, "\"b\"");
	p[1] = 'B';
	assert_int_equal(audit_chain_check(l, strlen(l), key, 32, &seq, prev,
	    hash), AUDIT_LINE_BAD_HASH);
	/* the sequence number */
	strcpy(l, lines[1]);
	l[7] = '3';
	assert_int_equal(audit_chain_check(l, strlen(l), key, 32, &seq, prev,
	    hash), AUDIT_LINE_BAD_HASH);
	assert_int_equal(seq, 3);
	/* the hash itself (still hex) */
	strcpy(l, lines[1]);
	p = l + strlen(l) - 3;
	*p = *p == 'a' ? 'b' : 'a';
	assert_int_equal(audit_chain_check(l, strlen(l), key, 32, &seq, prev,
	    hash), AUDIT_LINE_BAD_HASH);
	/* the layout: not hex, upper-case hex, a member after the hash,
	 * no seq, seq with a leading zero, truncated */
	strcpy(l, lines[1]);
	l[strlen(l) - 3] = 'g';
	assert_int_equal(audit_chain_check(l, strlen(l), key, 32, &seq, prev,
	    hash), AUDIT_LINE_MALFORMED);
	strcpy(l, lines[1]);
	p = strstr(l, "\"prev\":\"") + 8;
	*p = 'A';
	assert_int_equal(audit_chain_check(l, strlen(l), key, 32, &seq, prev,
	    hash), AUDIT_LINE_MALFORMED);
	snprintf(l, sizeof(l), "%.*s,\"z\":1}", (int)strlen(lines[1]) - 1,
	    lines[1]);
	assert_int_equal(audit_chain_check(l, strlen(l), key, 32, &seq, prev,
	    hash), AUDIT_LINE_MALFORMED);
	snprintf(l, sizeof(l), "{\"ts\":%s", lines[1] + 8);
	assert_int_equal(audit_chain_check(l, strlen(l), key, 32, &seq, prev,
	    hash), AUDIT_LINE_MALFORMED);
	snprintf(l, sizeof(l), "{\"seq\":0%s", lines[1] + 7);
	assert_int_equal(audit_chain_check(l, strlen(l), key, 32, &seq, prev,
	    hash), AUDIT_LINE_MALFORMED);
	assert_int_equal(audit_chain_check(lines[1], strlen(lines[1]) - 1, key,
	    32, &seq, prev, hash), AUDIT_LINE_MALFORMED);
	assert_int_equal(audit_chain_check("", 0, key, 32, &seq, prev, hash),
	    AUDIT_LINE_MALFORMED);
}

static void
test_format_refuses(void **state)
{
	static const char *const bad[] = {
		"", "{}", "[1]", "{\"a\":1", "\"a\":1}", "{\"a\":\n1}",
	};
	struct audit_chain c;
	char out[512];
	size_t i;

	(void)state;
	memset(&c, 0, sizeof(c));
	for (i = 0; i < N_ELEMENTS(bad); i++)
		assert_int_equal(audit_chain_format(&c, bad[i], strlen(bad[i]),
		    out, sizeof(out)), -1);
	/* too small for the line */
	assert_int_equal(audit_chain_format(&c, records[0], strlen(records[0]),
	    out, strlen(records[0]) + 10), -1);
	assert_int_equal(c.seq, 0);	/* unchanged */
}

static void
test_time(void **state)
{
	struct timespec ts = { 1700000000, 123456789 };
	char out[32];

	(void)state;
	audit_format_time(&ts, out);
	assert_string_equal(out, "2023-11-14T22:13:20.123Z");
	assert_int_equal(audit_parse_time(out), 1700000000123LL);
	assert_int_equal(audit_parse_time("2023-11-14T22:13:20Z"),
	    1700000000000LL);
	assert_int_equal(audit_parse_time("2023-11-14 22:13:20.5"),
	    1700000000500LL);
	assert_int_equal(audit_parse_time("2023-11-14T22:13"), 1699999980000LL);
	assert_int_equal(audit_parse_time("2023-11-14"), 1699920000000LL);
	assert_int_equal(audit_parse_time("2023-11-14T25:00"), -1);
	assert_int_equal(audit_parse_time("2023-13-14"), -1);
	assert_int_equal(audit_parse_time("2023-11-14T22"), -1);
	assert_int_equal(audit_parse_time("2023-11-14T22:13:20+01:00"), -1);
	assert_int_equal(audit_parse_time("yesterday"), -1);
	assert_int_equal(audit_parse_time(""), -1);
}

static void
test_clean_text(void **state)
{
	static const struct {
		const char *in;
		size_t len;
		const char *out;
	} cases[] = {
		{ "alice@example.org", 17, "alice@example.org" },
		{ "a\\b", 3, "a\\x5cb" },		/* our escapes stay unambiguous */
		{ "a\r\nb\x7f", 5, "a\\x0d\\x0ab\\x7f" },
		{ "a\0b", 3, "a\\x00b" },
		{ "caf\xc3\xa9", 5, "caf\xc3\xa9" },	/* UTF-8 kept */
		{ "\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80" },
		{ "\xff", 1, "\\xff" },			/* never UTF-8 */
		{ "\xc0\x80", 2, "\\xc0\\x80" },		/* overlong */
		{ "\xed\xa0\x80", 3, "\\xed\\xa0\\x80" },	/* a surrogate */
		{ "\xc2\x85", 2, "\\xc2\\x85" },		/* a C1 control */
		{ "\xe2\x82", 2, "\\xe2\\x82" },		/* cut short */
		{ "\xf4\x90\x80\x80", 4, "\\xf4\\x90\\x80\\x80" },	/* > U+10FFFF */
	};
	char out[64];
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(cases); i++)
		assert_string_equal(audit_clean_text(cases[i].in, cases[i].len,
		    out, sizeof(out)), cases[i].out);
	/* cut at a character boundary */
	assert_string_equal(audit_clean_text("ab\xc3\xa9", 4, out, 4), "ab");
	assert_string_equal(audit_clean_text("ab\x01", 3, out, 5), "ab");
	assert_string_equal(audit_clean_text("abc", 3, out, 3), "ab");
}

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void
test_key_file(void **state)
{
	char path[] = "/tmp/test_audit_key.XXXXXX", id[17];
	unsigned char key[AUDIT_KEY_MAX];
	const char *error = NULL;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	write_file(path, "0123456789abcdef0123456789abcdef\n");
	assert_int_equal(audit_key_load(path, key, sizeof(key), &error), 32);
	assert_memory_equal(key, "0123456789abcdef0123456789abcdef", 32);
	write_file(path, "0123456789abcdef0123456789abcdef01\r\nsecond line\n");
	assert_int_equal(audit_key_load(path, key, sizeof(key), &error), 34);
	write_file(path, "short\n");
	assert_int_equal(audit_key_load(path, key, sizeof(key), &error), -1);
	assert_non_null(strstr(error, "shorter than 32"));
	write_file(path, "");
	assert_int_equal(audit_key_load(path, key, sizeof(key), &error), -1);
	unlink(path);
	assert_int_equal(audit_key_load(path, key, sizeof(key), &error), -1);
	assert_non_null(strstr(error, "cannot open"));
	audit_key_id((const unsigned char *)"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	    40, id);
	assert_string_equal(id, "bd913ff68243d41b");
}

/* The writer's check of what workers send (no allocation, ten times
 * cheaper than parsing with jansson). */
static void
test_json_check(void **state)
{
	static const char *const good[] = {
		"{\"ts\":\"t\",\"type\":\"x\"}",
		("{\"type\":\"x\",\"ts\":\"t\",\"a\":[1,-2.5e+3,true,false,null,"
		"{\"seq\":1,\"b\":[]},{}],\"s\":\"\\u00e9\\\"\\\\\\/\\n\"}"),
		"{ \"ts\" : \"t\" , \"type\" : \"x\" }",
		"{\"ts\":\"t\",\"type\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\"}",
		"{\"ts\":\"t\",\"type\":\"x\",\"n\":0,\"m\":-0.5,\"e\":1E9}",
	};
	static const struct {
		const char *text;
		const char *why;
	} bad[] = {
		{ "", "not a JSON object" },
		{ "[]", "not a JSON object" },
		{ "{}", "no type or ts" },
		{ "{\"ts\":\"t\"}", "no type or ts" },
		{ "{\"ts\":1,\"type\":\"x\"}", "type and ts must be strings" },
		{ "{\"ts\":\"t\",\"type\":\"x\",\"seq\":1}", "sets seq" },
		{ "{\"ts\":\"t\",\"type\":\"x\",\"hash\":\"\"}", "sets seq" },
		{ "{\"ts\":\"t\",\"type\":\"x\",\"prev\":null}", "sets seq" },
		{ "{\"ts\":\"t\",\"type\":\"x\"} ", "follows" },
		{ "{\"ts\":\"t\",\"type\":\"x\"}{}", "follows" },
		{ "{\"ts\":\"t\",\"type\":\"x\",}", "a string was expected" },
		{ "{\"ts\":\"t\"\"type\":\"x\"}", "',' or '}'" },
		{ "{\"ts\":\"t\",\"type\":\"x\",\"a\":01}", "',' or '}'" },
		{ "{\"ts\":\"t\",\"type\":\"x\",\"a\":1.}", "a bad number" },
		{ "{\"ts\":\"t\",\"type\":\"x\",\"a\":tru}", "a value" },
		{ "{\"ts\":\"t\",\"type\":\"x\",\"a\":\"\x01\"}", "control" },
		{ "{\"ts\":\"t\",\"type\":\"x\",\"a\":\"\xff\"}", "UTF-8" },
		{ "{\"ts\":\"t\",\"type\":\"x\",\"a\":\"\\x\"}", "a bad escape" },
		{ "{\"ts\":\"t\",\"type\":\"x\",\"a\":\"\\u12g4\"}", "\\u" },
		{ "{\"ts\":\"t\",\"type\":\"x\",\"a\":\"abc}", "unterminated" },
		{ "{\"ts\":\"t\",\"type\":\"x\",\"a\":[1,2}", "',' or ']'" },
		{ "{\"ts\":\"t\",\n\"type\":\"x\"}", "a string was expected" },
	};
	char deep[200];
	const char *why;
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(good); i++) {
		why = NULL;
		if (audit_json_check(good[i], strlen(good[i]), &why) != 0)
			fail_msg("%s refused: %s", good[i], why);
	}
	for (i = 0; i < N_ELEMENTS(bad); i++) {
		why = NULL;
		if (audit_json_check(bad[i].text, strlen(bad[i].text), &why) == 0)
			fail_msg("%s accepted", bad[i].text);
		if (strstr(why, bad[i].why) == NULL)
			fail_msg("%s: \"%s\", not \"%s\"", bad[i].text, why,
			    bad[i].why);
	}
	/* nesting is bounded */
	snprintf(deep, sizeof(deep), "{\"ts\":\"t\",\"type\":\"x\",\"a\":%s1%s}",
	    "[[[[[[[[[[[[[[[[[[[[", "]]]]]]]]]]]]]]]]]]]]");
	assert_int_equal(audit_json_check(deep, strlen(deep), &why), -1);
	assert_string_equal(why, "nested too deep");
}

static void
test_syslog_format(void **state)
{
	char out[512], esc[64];
	size_t n;

	(void)state;
	audit_sd_escape("a\"b\\c]d", esc, sizeof(esc));
	assert_string_equal(esc, "a\\\"b\\\\c\\]d");
	n = audit_syslog_format(out, sizeof(out), 2 * 8 + 6,
	    "2026-11-24T10:00:00.000Z", "proxy.test", "msaproxy", 42, "tx",
	    "seq=\"7\" type=\"tx\"", "{\"seq\":7}", 9);
	assert_string_equal(out, "<22>1 2026-11-24T10:00:00.000Z proxy.test "
	    "msaproxy 42 tx [msaproxy@32473 seq=\"7\" type=\"tx\"] {\"seq\":7}");
	assert_int_equal(n, strlen(out));
	/* empty fields are "-"; spaces in tokens are not allowed */
	audit_syslog_format(out, sizeof(out), 13, "", "a b", "", 1, NULL, "",
	    "x", 1);
	assert_string_equal(out, "<13>1 - a_b - 1 - [msaproxy@32473] x");
	/* cut to the room given */
	n = audit_syslog_format(out, 40, 13, "t", "h", "a", 1, "m", "", "0123456789",
	    10);
	assert_int_equal(n, 39);
	assert_int_equal(strlen(out), 39);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_digest_vectors),
		cmocka_unit_test(test_chain_layout),
		cmocka_unit_test(test_chain_breaks),
		cmocka_unit_test(test_format_refuses),
		cmocka_unit_test(test_time),
		cmocka_unit_test(test_clean_text),
		cmocka_unit_test(test_key_file),
		cmocka_unit_test(test_json_check),
		cmocka_unit_test(test_syslog_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
