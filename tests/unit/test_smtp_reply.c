/*
 * test_smtp_reply.c - the fixed reply table and the reply writers
 * (proxy/smtp_reply.c).
 *
 * Every entry of the table is checked for form: a 3-digit code of class 2-5
 * and a space; an RFC 3463 enhanced code whose class equals the reply's first
 * digit (RFC 2034 3), except the 220 greeting and the 354 go-ahead; at most
 * one printf conversion, and only where the header documents one; and at most
 * SMTP_REPLY_LINE_MAX octets on the wire.  The expected code and enhanced code
 * of each id are listed here, so a changed code fails a test.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <event2/buffer.h>

#include "smtp_reply.h"

#define N_ELEMENTS(a)	(sizeof(a) / sizeof((a)[0]))

/* The bytes of an evbuffer as a NUL-terminated string (freed by caller);
 * the evbuffer is drained. */
static char *
take(struct evbuffer *b)
{
	size_t len = evbuffer_get_length(b);
	char *s = malloc(len + 1);

	assert_non_null(s);
	assert_int_equal(evbuffer_remove(b, s, len), (int)len);
	s[len] = '\0';
	return s;
}

struct reply_expect {
	enum smtp_reply_id id;
	int code;
	const char *enh;	/* NULL: none (greeting, 354) */
	const char *conv;	/* the one printf conversion, or NULL */
};

static const struct reply_expect expected[] = {
	{ R_GREETING, 220, NULL, "%s" },
	{ R_BYE, 221, "2.0.0", NULL },
	{ R_OKAY, 250, "2.0.0", NULL },
	{ R_NOOP, 250, "2.0.0", NULL },
	{ R_RSET, 250, "2.0.0", NULL },
	{ R_HELP, 214, "2.0.0", NULL },
	{ R_VRFY, 252, "2.5.0", NULL },
	{ R_DATA_GO, 354, NULL, NULL },
	{ R_BDAT_CHUNK_OK, 250, "2.0.0", "%llu" },
	{ R_LINE_TOO_LONG, 500, "5.5.2", NULL },
	{ R_UNKNOWN_CMD, 500, "5.5.1", NULL },
	{ R_SYNTAX, 501, "5.5.4", NULL },
	{ R_SYNTAX_PATH, 501, "5.1.7", NULL },
	{ R_SYNTAX_RCPT, 501, "5.1.3", NULL },
	{ R_PARAM_UNKNOWN, 555, "5.5.4", NULL },
	{ R_NOT_IMPL, 502, "5.5.1", NULL },
	{ R_EXPN, 502, "5.5.1", NULL },
	{ R_SEQ_HELO, 503, "5.5.1", NULL },
	{ R_SEQ_LHLO, 503, "5.5.1", NULL },
	{ R_SEQ_NESTED_MAIL, 503, "5.5.1", NULL },
	{ R_SEQ_NEED_MAIL, 503, "5.5.1", NULL },
	{ R_SEQ_NEED_RCPT, 503, "5.5.1", NULL },
	{ R_SEQ_DATA_BDAT, 503, "5.5.1", NULL },
	{ R_SEQ_BDAT_FAILED, 503, "5.5.1", NULL },
	{ R_NO_VALID_RCPT, 554, "5.5.1", NULL },
	{ R_HELO_IN_LMTP, 500, "5.5.1", NULL },
	{ R_LHLO_IN_SMTP, 500, "5.5.1", NULL },
	{ R_SIZE_EXCEEDED, 552, "5.3.4", NULL },
	{ R_TOO_MANY_RCPTS, 452, "4.5.3", NULL },
	{ R_BARE_NEWLINE, 550, "5.6.0", NULL },
	{ R_DATA_LINE_TOO_LONG, 554, "5.6.0", NULL },
	{ R_8BIT_IN_7BIT, 554, "5.6.3", NULL },
	{ R_SMTPUTF8_UNAVAIL, 555, "5.6.7", NULL },
	{ R_BACKEND_UNAVAIL, 451, "4.4.1", NULL },
	{ R_BACKEND_LOST, 451, "4.4.2", NULL },
	{ R_BACKEND_TIMEOUT, 451, "4.4.2", NULL },
	{ R_BACKEND_CONFIG, 451, "4.3.5", NULL },
	{ R_BACKEND_GARBAGE, 451, "4.4.2", NULL },
	{ R_BACKEND_GONE_421, 421, "4.4.2", NULL },
	{ R_TOO_MANY_ERRORS, 421, "4.7.0", NULL },
	{ R_TOO_MANY_CONN, 421, "4.7.0", NULL },
	{ R_TIMEOUT, 421, "4.4.2", NULL },
	{ R_SHUTDOWN, 421, "4.3.2", NULL },
	{ R_LOCAL_ERROR, 451, "4.3.0", NULL },
	{ R_TLS_GO, 220, "2.0.0", NULL },
	{ R_TLS_ACTIVE, 503, "5.5.1", NULL },
	{ R_TLS_UNAVAIL, 454, "4.7.0", NULL },
	{ R_TLS_UNAVAIL_421, 421, "4.7.0", NULL },
	{ R_AUTH_OK, 235, "2.7.0", NULL },
	{ R_AUTH_CANCELLED, 501, "5.0.0", NULL },
	{ R_AUTH_BAD_BASE64, 501, "5.5.2", NULL },
	{ R_AUTH_TWICE, 503, "5.5.1", NULL },
	{ R_AUTH_IN_TX, 503, "5.5.1", NULL },
	{ R_AUTH_NO_MECH, 504, "5.5.4", NULL },
	{ R_AUTH_WEAK, 534, "5.7.9", NULL },
	{ R_AUTH_FAILED, 535, "5.7.8", NULL },
	{ R_AUTH_TLS_REQUIRED, 538, "5.7.11", NULL },
	{ R_AUTH_TEMP, 454, "4.7.0", NULL },
	{ R_AUTH_REQUIRED, 530, "5.7.0", NULL },
	{ R_AUTH_TOO_MANY, 421, "4.7.0", NULL },
	{ R_AUTH_NOT_AVAIL, 502, "5.5.1", NULL },
	{ R_SENDER_DENIED, 553, "5.7.1", "%s" },
	{ R_BURL_WAITING, 250, "2.5.0", NULL },
	{ R_BURL_NOT_ENABLED, 503, "5.5.1", NULL },
	{ R_BURL_NOT_SUBMISSION, 503, "5.5.1", NULL },
	{ R_BURL_LMTP, 503, "5.5.0", NULL },
	{ R_BURL_NEED_RCPT, 503, "5.5.0", NULL },
	{ R_BURL_NO_RCPTS, 554, "5.5.0", NULL },
	{ R_BURL_BAD_URL, 501, "5.5.4", "%s" },
	{ R_BURL_BAD_URL_REF, 554, "5.6.6", "%s" },
	{ R_BURL_NO_TRUST, 554, "5.7.14", NULL },
	{ R_BURL_ACCESS_DENIED, 554, "5.7.1", NULL },
	{ R_BURL_FETCH_FAILED, 554, "5.6.6", NULL },
	{ R_BURL_IMAP_UNAVAIL, 451, "4.4.1", NULL },
	{ R_BURL_TOO_BIG, 554, "5.3.4", NULL },
	{ R_BURL_8BIT, 554, "5.6.3", NULL },
	{ R_BURL_TOO_MANY, 421, "4.7.0", NULL },
	{ R_ETRN_NO_NODE, 500, "5.5.2", NULL },
	{ R_ETRN_SYNTAX, 501, "5.5.4", NULL },
	{ R_ETRN_IN_TX, 503, "5.5.1", NULL },
	{ R_ETRN_DENIED, 459, "4.7.1", "%s" },
	{ R_ETRN_NOT_LISTED, 459, "4.7.1", "%s" },
	{ R_ETRN_TLD, 459, "4.7.1", "%s" },
	{ R_ETRN_UNAVAIL, 458, "4.4.1", "%s" },
	{ R_ETRN_LOST, 458, "4.4.2", "%s" },
	{ R_ETRN_BACKEND_REFUSED, 458, "4.3.5", "%s" },
	{ R_BURL_ACCESS_TABLE_DENIED, 533, "5.7.1", NULL },
	{ R_BURL_FORCED_DISCONNECT, 421, "4.7.0", NULL },
	{ R_BURL_NO_MAILHOST, 533, "5.7.1", NULL },
	{ R_AUDIT_UNAVAIL, 451, "4.3.0", NULL },
	{ R_LIMIT_MESSAGES, 451, "4.7.1", NULL },
	{ R_LIMIT_RECIPIENTS, 451, "4.7.1", NULL },
	{ R_LIMIT_BYTES, 451, "4.7.1", NULL },
	{ R_LIMIT_SESSIONS, 421, "4.7.0", NULL },
	{ R_LIMIT_AUTH_IDENTITY, 451, "4.7.1", NULL },
	{ R_LIMIT_AUTH_ADDRESS, 451, "4.7.1", NULL },
	{ R_LIMIT_BURL_FETCHES, 451, "4.7.1", NULL },
	{ R_LIMIT_BURL_BYTES, 451, "4.7.1", NULL },
	{ R_LIMIT_CONNECTIONS, 421, "4.7.0", NULL },
	{ R_LIMIT_CONNECTION_RATE, 421, "4.7.0", NULL },
	{ R_LIMIT_URL_REUSE, 554, "5.7.1", NULL },
	{ R_LIMIT_UNAVAIL, 451, "4.3.0", NULL },
	{ R_LIMIT_UNAVAIL_421, 421, "4.3.0", NULL },
};

/* The list above covers every id exactly once, in order. */
static void
test_table_complete(void **state)
{
	size_t i;

	(void)state;
	assert_int_equal(N_ELEMENTS(expected), R_REPLY_COUNT);
	for (i = 0; i < N_ELEMENTS(expected); i++)
		assert_int_equal(expected[i].id, (int)i);
}

/* Count the printf conversions in t ("%%" is none); the first is copied to
 * conv (e.g. "%llu"). */
static int
conversions(const char *t, char *conv, size_t convsize)
{
	int n = 0;

	conv[0] = '\0';
	for (; *t; t++) {
		size_t k;

		if (*t != '%')
			continue;
		if (t[1] == '%') {
			t++;
			continue;
		}
		for (k = 1; t[k] && strchr("hlqjzt0123456789.-+# ", t[k]); k++)
			;
		if (n++ == 0 && k + 1 < convsize) {
			memcpy(conv, t, k + 1);
			conv[k + 1] = '\0';
		}
	}
	return n;
}

static void
test_table_form(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(expected); i++) {
		const struct reply_expect *e = &expected[i];
		const char *t = smtp_reply_text(e->id);
		char code[4], conv[16];
		size_t enhlen;
		int nconv;

		assert_non_null(t);
		snprintf(code, sizeof(code), "%d", e->code);
		if (strncmp(t, code, 3) != 0 || t[3] != ' ')
			fail_msg("id %zu \"%s\": want code %d and a space", i, t,
			    e->code);
		if (t[0] < '2' || t[0] > '5')
			fail_msg("id %zu \"%s\": bad class", i, t);
		assert_int_equal(smtp_reply_code(e->id), e->code);

		enhlen = smtp_enhanced_code_len(t + 4);
		if (e->enh == NULL) {
			/* RFC 2034 exempts the greeting; 354 is no status */
			if (enhlen != 0)
				fail_msg("id %zu \"%s\": unexpected enhanced "
				    "code", i, t);
		} else {
			if (enhlen == 0)
				fail_msg("id %zu \"%s\": no enhanced code", i, t);
			if (t[4] != t[0])
				fail_msg("id %zu \"%s\": enhanced code class "
				    "differs from the reply's", i, t);
			if (enhlen != strlen(e->enh) ||
			    strncmp(t + 4, e->enh, enhlen) != 0)
				fail_msg("id %zu \"%s\": want %s", i, t, e->enh);
			/* and some text after it */
			if (t[4 + enhlen] != ' ' || t[5 + enhlen] == '\0')
				fail_msg("id %zu \"%s\": no text", i, t);
		}

		nconv = conversions(t, conv, sizeof(conv));
		if (e->conv == NULL) {
			if (nconv != 0)
				fail_msg("id %zu \"%s\": stray conversion", i, t);
		} else {
			if (nconv != 1 || strcmp(conv, e->conv) != 0)
				fail_msg("id %zu \"%s\": want one %s", i, t,
				    e->conv);
		}
		/* no control characters in the fixed text */
		{
			const char *p;

			for (p = t; *p; p++)
				if ((unsigned char)*p < 32 ||
				    (unsigned char)*p >= 127)
					fail_msg("id %zu: control character", i);
		}
	}
}

/* Formatted on the wire: the text + CRLF, at most SMTP_REPLY_LINE_MAX. */
static void
test_reply_add_every_id(void **state)
{
	struct evbuffer *b = evbuffer_new();
	size_t i;

	(void)state;
	assert_non_null(b);
	for (i = 0; i < N_ELEMENTS(expected); i++) {
		const struct reply_expect *e = &expected[i];
		char want[SMTP_REPLY_LINE_MAX * 2];
		char *got;

		if (e->conv == NULL) {
			smtp_reply_add(b, e->id);
			snprintf(want, sizeof(want), "%s\r\n",
			    smtp_reply_text(e->id));
		} else if (strcmp(e->conv, "%s") == 0) {
			smtp_reply_add(b, e->id, "mx.example");
			want[0] = '\0';
		} else {
			smtp_reply_add(b, e->id, 18446744073709551615ULL);
			want[0] = '\0';
		}
		got = take(b);
		if (want[0] != '\0')
			assert_string_equal(got, want);
		assert_true(strlen(got) <= SMTP_REPLY_LINE_MAX);
		assert_true(strlen(got) >= 6);
		assert_string_equal(got + strlen(got) - 2, "\r\n");
		/* exactly one CR and one LF: the final CRLF */
		assert_ptr_equal(strchr(got, '\r'), got + strlen(got) - 2);
		assert_ptr_equal(strchr(got, '\n'), got + strlen(got) - 1);
		free(got);
	}
	evbuffer_free(b);
}

static void
test_reply_add_exact(void **state)
{
	struct evbuffer *b = evbuffer_new();
	char *got;

	(void)state;
	smtp_reply_add(b, R_GREETING, "mx.example");
	got = take(b);
	assert_string_equal(got, "220 mx.example ESMTP msaproxy\r\n");
	free(got);

	smtp_reply_add(b, R_BDAT_CHUNK_OK, 12345ULL);
	got = take(b);
	assert_string_equal(got, "250 2.0.0 12345 octets received\r\n");
	free(got);

	smtp_reply_add(b, R_BYE);
	smtp_reply_add(b, R_DATA_GO);
	got = take(b);
	assert_string_equal(got,
	    "221 2.0.0 Bye\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
	free(got);

	smtp_reply_add(b, R_BACKEND_CONFIG);
	got = take(b);
	assert_string_equal(got,
	    "451 4.3.5 Backend refused the proxy, try again later\r\n");
	free(got);

	/* RFC 1985 5.1's texts, after the enhanced code */
	smtp_reply_add(b, R_ETRN_DENIED, "@example.org");
	smtp_reply_add(b, R_ETRN_UNAVAIL, "mail.example.org");
	got = take(b);
	assert_string_equal(got,
	    "459 4.7.1 Node @example.org not allowed: no ETRN permission for "
	    "this client\r\n"
	    "458 4.4.1 Unable to queue messages for node mail.example.org\r\n");
	free(got);
	evbuffer_free(b);
}

/* A long greeting name is cut so that the line with CRLF fits in 512. */
static void
test_reply_add_truncates(void **state)
{
	struct evbuffer *b = evbuffer_new();
	char name[2000];
	char *got;
	size_t len;

	(void)state;
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	smtp_reply_add(b, R_GREETING, name);
	got = take(b);
	len = strlen(got);
	assert_true(len <= SMTP_REPLY_LINE_MAX);
	assert_true(len >= SMTP_REPLY_LINE_MAX - 2);
	assert_memory_equal(got, "220 nnn", 7);
	assert_string_equal(got + len - 3, "n\r\n");
	assert_ptr_equal(strchr(got, '\r'), got + len - 2);
	free(got);
	evbuffer_free(b);
}

struct lines_case {
	int code;
	size_t count;
	const char *lines[4];
	const char *want;
};

static const struct lines_case lines_cases[] = {
	{ 250, 0, { NULL }, "250 \r\n" },
	{ 250, 1, { "2.0.0 OK" }, "250 2.0.0 OK\r\n" },
	{ 250, 1, { "" }, "250 \r\n" },
	{ 214, 2, { "2.0.0 a", "2.0.0 b" }, "214-2.0.0 a\r\n214 2.0.0 b\r\n" },
	{ 550, 3, { "5.7.1 one", "5.7.1 two", "5.7.1 three" },
	    "550-5.7.1 one\r\n550-5.7.1 two\r\n550 5.7.1 three\r\n" },
	{ 451, 2, { "", "x" }, "451-\r\n451 x\r\n" },
};

static void
test_reply_add_lines(void **state)
{
	struct evbuffer *b = evbuffer_new();
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(lines_cases); i++) {
		const struct lines_case *c = &lines_cases[i];
		char *got;

		smtp_reply_add_lines(b, c->code, c->lines, c->count);
		got = take(b);
		if (strcmp(got, c->want) != 0)
			fail_msg("case %zu: got \"%s\"", i, got);
		free(got);
	}
	evbuffer_free(b);
}

/* At most SMTP_REPLY_MAX_LINES lines, the last with a space; each line at
 * most SMTP_REPLY_LINE_MAX octets with its CRLF. */
static void
test_reply_add_lines_limits(void **state)
{
	struct evbuffer *b = evbuffer_new();
	const char *lines[SMTP_REPLY_MAX_LINES + 8];
	char longline[2000], want[SMTP_REPLY_LINE_MAX + 1];
	char *got, *p;
	size_t i, n;

	(void)state;
	memset(longline, 'x', sizeof(longline) - 1);
	longline[sizeof(longline) - 1] = '\0';
	for (i = 0; i < N_ELEMENTS(lines); i++)
		lines[i] = i == 3 ? longline : "2.0.0 line";
	smtp_reply_add_lines(b, 250, lines, N_ELEMENTS(lines));
	got = take(b);
	for (p = got, n = 0; *p; n++) {
		char *eol = strstr(p, "\r\n");

		assert_non_null(eol);
		assert_true((size_t)(eol + 2 - p) <= SMTP_REPLY_LINE_MAX);
		assert_memory_equal(p, "250", 3);
		assert_int_equal(p[3], n + 1 < SMTP_REPLY_MAX_LINES ? '-' : ' ');
		if (n == 3) {
			/* cut to exactly 512 with CRLF */
			memset(want, 'x', SMTP_REPLY_LINE_MAX - 6);
			want[SMTP_REPLY_LINE_MAX - 6] = '\0';
			assert_int_equal(eol - (p + 4), SMTP_REPLY_LINE_MAX - 6);
			assert_memory_equal(p + 4, want, SMTP_REPLY_LINE_MAX - 6);
		} else {
			assert_int_equal(eol - p, 14);
			assert_memory_equal(p + 4, "2.0.0 line", 10);
		}
		p = eol + 2;
	}
	assert_int_equal(n, SMTP_REPLY_MAX_LINES);
	free(got);
	evbuffer_free(b);
}

/* RFC 3463 2: class "." subject "." detail, class 2/4/5, 1-3 digits each. */
static void
test_enhanced_code_len(void **state)
{
	static const struct { const char *s; size_t len; } cases[] = {
		{ "2.0.0", 5 },
		{ "2.0.0 OK", 5 },
		{ "4.7.0 try later", 5 },
		{ "5.1.1", 5 },
		{ "5.7.26 DMARC", 6 },
		{ "2.123.456", 9 },
		{ "2.0.0  two spaces", 5 },
		{ "3.0.0", 0 },
		{ "1.0.0", 0 },
		{ "0.0.0", 0 },
		{ "6.0.0", 0 },
		{ "22.0.0", 0 },
		{ "2.0", 0 },
		{ "2.0.", 0 },
		{ "2..0", 0 },
		{ "2.0.0.0", 0 },
		{ "2.0.0x", 0 },
		{ "2.0.0\t", 0 },
		{ "2.0.0-", 0 },
		{ "2.a.0", 0 },
		{ "2.0.a", 0 },
		{ "2.1234.0", 0 },
		{ "5.5.1000", 0 },
		{ "2-0-0", 0 },
		{ " 2.0.0", 0 },
		{ "", 0 },
		{ "2", 0 },
		{ "2.", 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(cases); i++)
		if (smtp_enhanced_code_len(cases[i].s) != cases[i].len)
			fail_msg("\"%s\": got %zu, want %zu", cases[i].s,
			    smtp_enhanced_code_len(cases[i].s), cases[i].len);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_complete),
		cmocka_unit_test(test_table_form),
		cmocka_unit_test(test_reply_add_every_id),
		cmocka_unit_test(test_reply_add_exact),
		cmocka_unit_test(test_reply_add_truncates),
		cmocka_unit_test(test_reply_add_lines),
		cmocka_unit_test(test_reply_add_lines_limits),
		cmocka_unit_test(test_enhanced_code_len),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
