/*
 * test_backend_reply.c - backend replies (proxy/backend_reply.c): parsing
 * multi-line replies (RFC 5321 4.2.1), bounding and sanitizing their text,
 * the replacement map, relaying with enhanced status codes (RFC 2034,
 * RFC 3463) and the queue id.
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

#include "backend_reply.h"

#define N_ELEMENTS(a)	(sizeof(a) / sizeof((a)[0]))
#define MAXL		6

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

/* Feed lines[] (NUL-free strings) until one is not MORE; the status of the
 * last line fed. */
static enum backend_reply_status
feed_all(struct backend_reply *r, const char *const *lines, size_t n)
{
	enum backend_reply_status st = BACKEND_REPLY_BAD;
	size_t i;

	backend_reply_reset(r);
	for (i = 0; i < n && lines[i] != NULL; i++) {
		st = backend_reply_feed(r, lines[i], strlen(lines[i]));
		if (st != BACKEND_REPLY_MORE)
			break;
	}
	return st;
}

/* Every kept line can be read back, and there are no more. */
static void
check_lines_consistent(const struct backend_reply *r)
{
	unsigned i;
	size_t len;

	assert_true(r->line_count <= SMTP_REPLY_MAX_LINES);
	assert_true(r->line_count <= r->lines_seen);
	assert_true(r->text_len < sizeof(r->text));
	assert_int_equal(r->text[r->text_len], '\0');
	assert_int_equal(strlen(r->text), r->text_len);
	for (i = 0; i < r->line_count; i++) {
		if (backend_reply_line(r, i, &len) == NULL)
			fail_msg("line %u of %u missing", i, r->line_count);
		assert_true(len <= r->text_len);
	}
	assert_null(backend_reply_line(r, r->line_count, &len));
}

/* ------------------------------------------------------------------ */

struct feed_case {
	const char *lines[MAXL];
	enum backend_reply_status st;	/* of the last line fed */
	int code;			/* when not BAD */
	unsigned line_count;
	const char *text;
};

static const struct feed_case feed_cases[] = {
	{ { "250 OK" }, BACKEND_REPLY_DONE, 250, 1, "OK" },
	{ { "250 2.1.0 Sender ok" }, BACKEND_REPLY_DONE, 250, 1,
	    "2.1.0 Sender ok" },
	{ { "250" }, BACKEND_REPLY_DONE, 250, 1, "" },
	{ { "250 " }, BACKEND_REPLY_DONE, 250, 1, "" },
	{ { "354 End data with <CR><LF>.<CR><LF>" }, BACKEND_REPLY_DONE, 354, 1,
	    "End data with <CR><LF>.<CR><LF>" },
	{ { "221 2.0.0 Bye" }, BACKEND_REPLY_DONE, 221, 1, "2.0.0 Bye" },
	{ { "599 x" }, BACKEND_REPLY_DONE, 599, 1, "x" },
	{ { "200 x" }, BACKEND_REPLY_DONE, 200, 1, "x" },
	{ { "250-mx.example", "250-PIPELINING", "250 8BITMIME" },
	    BACKEND_REPLY_DONE, 250, 3, "mx.example\nPIPELINING\n8BITMIME" },
	{ { "250-mx.example", "250-PIPELINING" }, BACKEND_REPLY_MORE, 250, 2,
	    "mx.example\nPIPELINING" },
	{ { "550-", "550-", "550 " }, BACKEND_REPLY_DONE, 550, 3, "\n\n" },
	{ { "550-a", "550" }, BACKEND_REPLY_DONE, 550, 2, "a\n" },
	/* codes must match across lines */
	{ { "250-a", "251 b" }, BACKEND_REPLY_BAD, 0, 0, NULL },
	{ { "250-a", "550 b" }, BACKEND_REPLY_BAD, 0, 0, NULL },
	/* malformed */
	{ { "" }, BACKEND_REPLY_BAD, 0, 0, NULL },
	{ { "25" }, BACKEND_REPLY_BAD, 0, 0, NULL },
	{ { "2500 x" }, BACKEND_REPLY_BAD, 0, 0, NULL },
	{ { "250x" }, BACKEND_REPLY_BAD, 0, 0, NULL },
	{ { "250\tx" }, BACKEND_REPLY_BAD, 0, 0, NULL },
	{ { "250_x" }, BACKEND_REPLY_BAD, 0, 0, NULL },
	{ { "abc x" }, BACKEND_REPLY_BAD, 0, 0, NULL },
	{ { "2a0 x" }, BACKEND_REPLY_BAD, 0, 0, NULL },
	{ { " 250 x" }, BACKEND_REPLY_BAD, 0, 0, NULL },
	{ { "-250 x" }, BACKEND_REPLY_BAD, 0, 0, NULL },
	{ { "250-a", "250x" }, BACKEND_REPLY_BAD, 0, 0, NULL },
	{ { "250-a", "" }, BACKEND_REPLY_BAD, 0, 0, NULL },
	/* 1xx does not exist in SMTP; nor do 0xx and 6xx-9xx */
	{ { "150 x" }, BACKEND_REPLY_BAD, 0, 0, NULL },
	{ { "199 x" }, BACKEND_REPLY_BAD, 0, 0, NULL },
	{ { "099 x" }, BACKEND_REPLY_BAD, 0, 0, NULL },
	{ { "000 x" }, BACKEND_REPLY_BAD, 0, 0, NULL },
	{ { "600 x" }, BACKEND_REPLY_BAD, 0, 0, NULL },
	{ { "999 x" }, BACKEND_REPLY_BAD, 0, 0, NULL },
	/* control characters and 8-bit bytes become '?' */
	{ { "250 a\tb\x1b[31mc\x7f" "d\x80\xff" }, BACKEND_REPLY_DONE, 250, 1,
	    "a?b?[31mc?d??" },
	{ { "550-x\x01", "550 \x1b]0;pwned\x07" }, BACKEND_REPLY_DONE, 550, 2,
	    "x?\n?]0;pwned?" },
};

static void
test_feed(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(feed_cases); i++) {
		const struct feed_case *c = &feed_cases[i];
		struct backend_reply r;
		enum backend_reply_status st;

		st = feed_all(&r, c->lines, MAXL);
		if (st != c->st)
			fail_msg("case %zu (%s): status %d, want %d", i,
			    c->lines[0], st, c->st);
		if (st == BACKEND_REPLY_BAD)
			continue;
		assert_int_equal(r.code, c->code);
		assert_int_equal(r.line_count, c->line_count);
		assert_int_equal(r.lines_seen, c->line_count);
		if (strcmp(r.text, c->text) != 0)
			fail_msg("case %zu: text \"%s\", want \"%s\"", i, r.text,
			    c->text);
		assert_int_equal(r.text_len, strlen(c->text));
		check_lines_consistent(&r);
	}
}

/* A NUL in the line is text like any other control character. */
static void
test_feed_nul(void **state)
{
	struct backend_reply r;

	(void)state;
	backend_reply_reset(&r);
	assert_int_equal(backend_reply_feed(&r, "250 a\0b", 7),
	    BACKEND_REPLY_DONE);
	assert_string_equal(r.text, "a?b");
	backend_reply_reset(&r);
	assert_int_equal(backend_reply_feed(&r, "2\0" "0 x", 5),
	    BACKEND_REPLY_BAD);
}

/* reset starts a new reply: the previous code does not bind. */
static void
test_reset(void **state)
{
	struct backend_reply r;

	(void)state;
	backend_reply_reset(&r);
	assert_int_equal(backend_reply_feed(&r, "250 a", 5), BACKEND_REPLY_DONE);
	backend_reply_reset(&r);
	assert_int_equal(r.code, 0);
	assert_int_equal(r.line_count, 0);
	assert_int_equal(r.lines_seen, 0);
	assert_int_equal(r.text_len, 0);
	assert_string_equal(r.text, "");
	assert_int_equal(backend_reply_feed(&r, "550 b", 5), BACKEND_REPLY_DONE);
	assert_int_equal(r.code, 550);
	assert_string_equal(r.text, "b");
}

/* At most SMTP_REPLY_MAX_LINES lines are kept, all are counted. */
static void
test_line_cap(void **state)
{
	struct backend_reply r;
	char line[64];
	size_t len;
	const char *l;
	unsigned i;

	(void)state;
	backend_reply_reset(&r);
	for (i = 0; i < 40; i++) {
		int n = snprintf(line, sizeof(line), "250-line%u", i);

		assert_int_equal(backend_reply_feed(&r, line, (size_t)n),
		    BACKEND_REPLY_MORE);
	}
	assert_int_equal(backend_reply_feed(&r, "250 last", 8),
	    BACKEND_REPLY_DONE);
	assert_int_equal(r.lines_seen, 41);
	assert_int_equal(r.line_count, SMTP_REPLY_MAX_LINES);
	check_lines_consistent(&r);
	l = backend_reply_line(&r, 0, &len);
	assert_int_equal(len, 5);
	assert_memory_equal(l, "line0", 5);
	l = backend_reply_line(&r, SMTP_REPLY_MAX_LINES - 1, &len);
	assert_int_equal(len, 6);
	assert_memory_equal(l, "line31", 6);
	assert_null(strstr(r.text, "last"));
}

/* The text is cut at BACKEND_REPLY_TEXT_MAX - 1 (and NUL-terminated). */
static void
test_text_cap(void **state)
{
	struct backend_reply r;
	char line[BACKEND_LINE_MAX];
	size_t i;

	(void)state;
	memcpy(line, "250 ", 4);
	memset(line + 4, 'a', sizeof(line) - 4);
	backend_reply_reset(&r);
	assert_int_equal(backend_reply_feed(&r, line, sizeof(line)),
	    BACKEND_REPLY_DONE);
	assert_int_equal(r.text_len, BACKEND_REPLY_TEXT_MAX - 1);
	assert_int_equal(strlen(r.text), BACKEND_REPLY_TEXT_MAX - 1);
	for (i = 0; i < r.text_len; i++)
		assert_int_equal(r.text[i], 'a');
	check_lines_consistent(&r);
}

/*
 * A long line that fills the text, then more lines: the kept lines and the
 * text must still agree, so that relaying cannot read a line that is not
 * there.  (Before the fix, line_count counted lines whose '\n' did not fit;
 * backend_reply_line() returned NULL for them and backend_reply_relay()
 * dereferenced it: a backend could crash the proxy with one long
 * continuation line.)
 */
static void
test_text_cap_multiline(void **state)
{
	static const size_t firstlens[] = {
		BACKEND_REPLY_TEXT_MAX - 3, BACKEND_REPLY_TEXT_MAX - 2,
		BACKEND_REPLY_TEXT_MAX - 1, BACKEND_REPLY_TEXT_MAX,
		BACKEND_REPLY_TEXT_MAX + 100, BACKEND_LINE_MAX - 4,
	};
	static const enum backend_expect expects[] = {
		BE_EXPECT_MAIL, BE_EXPECT_RCPT, BE_EXPECT_DATA_END,
	};
	struct evbuffer *b = evbuffer_new();
	char line[BACKEND_LINE_MAX];
	size_t k, e;

	(void)state;
	for (k = 0; k < N_ELEMENTS(firstlens); k++) {
		for (e = 0; e < N_ELEMENTS(expects); e++) {
			struct backend_reply r;
			char *out, *p;
			unsigned n;

			memcpy(line, "550-", 4);
			memset(line + 4, 'a', firstlens[k]);
			backend_reply_reset(&r);
			assert_int_equal(backend_reply_feed(&r, line,
			    4 + firstlens[k]), BACKEND_REPLY_MORE);
			assert_int_equal(backend_reply_feed(&r, "550-second", 10),
			    BACKEND_REPLY_MORE);
			assert_int_equal(backend_reply_feed(&r, "550 third", 9),
			    BACKEND_REPLY_DONE);
			assert_int_equal(r.lines_seen, 3);
			check_lines_consistent(&r);

			backend_reply_relay(&r, expects[e], b);
			out = take(b);
			/* r.line_count well-formed lines, the last with ' ' */
			for (p = out, n = 0; *p; n++) {
				char *eol = strstr(p, "\r\n");

				assert_non_null(eol);
				assert_memory_equal(p, "550", 3);
				assert_int_equal(p[3],
				    n + 1 < r.line_count ? '-' : ' ');
				p = eol + 2;
			}
			assert_int_equal(n, r.line_count);
			free(out);
		}
	}
	evbuffer_free(b);
}

/* ------------------------------------------------------------------ */

struct map_case {
	const char *line;
	enum backend_expect expect;
	enum smtp_reply_id id;
};

#define RELAY	R_REPLY_COUNT

static const struct map_case map_cases[] = {
	/* 421: the backend is closing */
	{ "421 4.3.2 shutting down", BE_EXPECT_MAIL, R_BACKEND_LOST },
	{ "421 x", BE_EXPECT_RCPT, R_BACKEND_LOST },
	{ "421 x", BE_EXPECT_DATA, R_BACKEND_LOST },
	{ "421 x", BE_EXPECT_DATA_END, R_BACKEND_LOST },
	{ "421 x", BE_EXPECT_BDAT, R_BACKEND_LOST },
	{ "421 x", BE_EXPECT_GREETING, R_BACKEND_LOST },
	{ "421 x", BE_EXPECT_RSET, R_BACKEND_LOST },
	/* it wants AUTH from us: our configuration */
	{ "530 5.7.0 Authentication required", BE_EXPECT_MAIL,
	    R_BACKEND_CONFIG },
	{ "535 5.7.8 bad credentials", BE_EXPECT_RCPT, R_BACKEND_CONFIG },
	{ "538 5.7.11 Encryption required", BE_EXPECT_DATA, R_BACKEND_CONFIG },
	{ "530 x", BE_EXPECT_DATA_END, R_BACKEND_CONFIG },
	{ "534 5.7.9 mechanism too weak", BE_EXPECT_MAIL, RELAY },
	{ "554 5.7.1 rejected", BE_EXPECT_DATA_END, RELAY },
	/* 354 only for DATA */
	{ "354 go ahead", BE_EXPECT_DATA, RELAY },
	{ "354 go ahead", BE_EXPECT_MAIL, R_BACKEND_GARBAGE },
	{ "354 go ahead", BE_EXPECT_RCPT, R_BACKEND_GARBAGE },
	{ "354 go ahead", BE_EXPECT_DATA_END, R_BACKEND_GARBAGE },
	{ "354 go ahead", BE_EXPECT_BDAT, R_BACKEND_GARBAGE },
	{ "354 go ahead", BE_EXPECT_OTHER, R_BACKEND_GARBAGE },
	{ "334 VXNlcm5hbWU6", BE_EXPECT_OTHER, R_BACKEND_GARBAGE },
	/* 2xx to DATA: it did not say go ahead */
	{ "250 2.0.0 Ok", BE_EXPECT_DATA, R_BACKEND_GARBAGE },
	{ "220 x", BE_EXPECT_DATA, R_BACKEND_GARBAGE },
	/* the rest is relayed */
	{ "250 2.1.0 Ok", BE_EXPECT_MAIL, RELAY },
	{ "250 2.1.5 Ok", BE_EXPECT_RCPT, RELAY },
	{ "251 2.1.5 forwarded", BE_EXPECT_RCPT, RELAY },
	{ "250 2.0.0 Ok: queued as ABC", BE_EXPECT_DATA_END, RELAY },
	{ "250 2.0.0 Ok", BE_EXPECT_BDAT, RELAY },
	{ "250 2.0.0 Ok", BE_EXPECT_RSET, RELAY },
	{ "220 mx ESMTP", BE_EXPECT_GREETING, RELAY },
	{ "450 4.2.0 greylisted", BE_EXPECT_RCPT, RELAY },
	{ "451 4.3.0 error", BE_EXPECT_DATA, RELAY },
	{ "554 5.5.1 no valid recipients", BE_EXPECT_DATA, RELAY },
	{ "550 5.1.1 unknown user", BE_EXPECT_RCPT, RELAY },
	{ "552 5.3.4 too big", BE_EXPECT_DATA_END, RELAY },
	/* ETRN: RFC 1985 5.1's replies are relayed, nothing else */
	{ "250 Queuing started", BE_EXPECT_ETRN, RELAY },
	{ "251 OK, no messages waiting for node x.example", BE_EXPECT_ETRN,
	    RELAY },
	{ "252 OK, pending messages for node x.example started",
	    BE_EXPECT_ETRN, RELAY },
	{ "253 OK, 14 pending messages for node x.example started",
	    BE_EXPECT_ETRN, RELAY },
	{ "458 Unable to queue messages for node x.example", BE_EXPECT_ETRN,
	    RELAY },
	{ "459 <nonflush.example>: service unavailable", BE_EXPECT_ETRN,
	    RELAY },
	{ "421 4.3.2 shutting down", BE_EXPECT_ETRN, R_ETRN_LOST },
	{ "502 5.5.2 Error: command not recognized", BE_EXPECT_ETRN,
	    R_ETRN_BACKEND_REFUSED },
	{ "500 Syntax Error", BE_EXPECT_ETRN, R_ETRN_BACKEND_REFUSED },
	{ "501 5.5.4 Error: invalid parameter syntax", BE_EXPECT_ETRN,
	    R_ETRN_BACKEND_REFUSED },
	{ "503 5.5.1 Error: MAIL transaction in progress", BE_EXPECT_ETRN,
	    R_ETRN_BACKEND_REFUSED },
	{ "530 5.7.0 Authentication required", BE_EXPECT_ETRN,
	    R_ETRN_BACKEND_REFUSED },
	{ "450 4.7.1 try later", BE_EXPECT_ETRN, R_ETRN_BACKEND_REFUSED },
	{ "254 odd", BE_EXPECT_ETRN, R_ETRN_BACKEND_REFUSED },
	{ "354 go ahead", BE_EXPECT_ETRN, R_ETRN_BACKEND_REFUSED },
	{ "220 x", BE_EXPECT_ETRN, R_ETRN_BACKEND_REFUSED },
	{ "550 5.7.1 no", BE_EXPECT_ETRN, R_ETRN_BACKEND_REFUSED },
};

static void
test_map(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(map_cases); i++) {
		const struct map_case *c = &map_cases[i];
		struct backend_reply r;
		enum smtp_reply_id id;

		backend_reply_reset(&r);
		assert_int_equal(backend_reply_feed(&r, c->line,
		    strlen(c->line)), BACKEND_REPLY_DONE);
		id = backend_reply_map(&r, c->expect);
		if (id != c->id)
			fail_msg("\"%s\" expect %d: got %d, want %d", c->line,
			    c->expect, id, c->id);
	}
}

/* ------------------------------------------------------------------ */

struct relay_case {
	const char *lines[MAXL];
	enum backend_expect expect;
	const char *want;
};

static const struct relay_case relay_cases[] = {
	/* the backend's own code is kept */
	{ { "250 2.1.0 Sender ok" }, BE_EXPECT_MAIL, "250 2.1.0 Sender ok\r\n" },
	{ { "250 2.1.5 Recipient ok" }, BE_EXPECT_RCPT,
	    "250 2.1.5 Recipient ok\r\n" },
	{ { "550 5.7.1 Relay access denied" }, BE_EXPECT_RCPT,
	    "550 5.7.1 Relay access denied\r\n" },
	{ { "452 4.5.3 Too many recipients" }, BE_EXPECT_RCPT,
	    "452 4.5.3 Too many recipients\r\n" },
	{ { "250 2.6.0 Message accepted" }, BE_EXPECT_DATA_END,
	    "250 2.6.0 Message accepted\r\n" },
	{ { "250 2.1.0" }, BE_EXPECT_MAIL, "250 2.1.0\r\n" },
	{ { "554 5.7.26 DMARC" }, BE_EXPECT_DATA_END, "554 5.7.26 DMARC\r\n" },
	/* defaults by context */
	{ { "250 Ok" }, BE_EXPECT_MAIL, "250 2.1.0 Ok\r\n" },
	{ { "250 Ok" }, BE_EXPECT_RCPT, "250 2.1.5 Ok\r\n" },
	{ { "251 forwarded" }, BE_EXPECT_RCPT, "251 2.1.5 forwarded\r\n" },
	{ { "250 Ok" }, BE_EXPECT_DATA_END, "250 2.0.0 Ok\r\n" },
	{ { "250 Ok" }, BE_EXPECT_BDAT, "250 2.0.0 Ok\r\n" },
	{ { "250 Ok" }, BE_EXPECT_RSET, "250 2.0.0 Ok\r\n" },
	{ { "250 Ok" }, BE_EXPECT_OTHER, "250 2.0.0 Ok\r\n" },
	{ { "450 busy" }, BE_EXPECT_RCPT, "450 4.0.0 busy\r\n" },
	{ { "451 later" }, BE_EXPECT_MAIL, "451 4.0.0 later\r\n" },
	{ { "452 full" }, BE_EXPECT_DATA_END, "452 4.0.0 full\r\n" },
	{ { "550 no such user" }, BE_EXPECT_RCPT, "550 5.1.1 no such user\r\n" },
	{ { "553 bad" }, BE_EXPECT_RCPT, "553 5.1.1 bad\r\n" },
	{ { "550 no" }, BE_EXPECT_MAIL, "550 5.0.0 no\r\n" },
	{ { "554 rejected" }, BE_EXPECT_DATA_END, "554 5.0.0 rejected\r\n" },
	{ { "554 no valid recipients" }, BE_EXPECT_DATA,
	    "554 5.0.0 no valid recipients\r\n" },
	/* no text: the code alone, no trailing space */
	{ { "250" }, BE_EXPECT_DATA_END, "250 2.0.0\r\n" },
	{ { "550 " }, BE_EXPECT_RCPT, "550 5.1.1\r\n" },
	/* a code of the wrong class, or malformed, is text */
	{ { "550 4.7.1 wrong class" }, BE_EXPECT_RCPT,
	    "550 5.1.1 4.7.1 wrong class\r\n" },
	{ { "250 5.0.0 odd" }, BE_EXPECT_MAIL, "250 2.1.0 5.0.0 odd\r\n" },
	{ { "250 2.1.0Sender" }, BE_EXPECT_MAIL, "250 2.1.0 2.1.0Sender\r\n" },
	{ { "250 2.1 short" }, BE_EXPECT_MAIL, "250 2.1.0 2.1 short\r\n" },
	{ { "250 2.1234.0 long" }, BE_EXPECT_MAIL,
	    "250 2.1.0 2.1234.0 long\r\n" },
	{ { "450 3.0.0 x" }, BE_EXPECT_RCPT, "450 4.0.0 3.0.0 x\r\n" },
	/* 354 carries no enhanced code (RFC 2034 3) */
	{ { "354 End data with <CR><LF>.<CR><LF>" }, BE_EXPECT_DATA,
	    "354 End data with <CR><LF>.<CR><LF>\r\n" },
	/* multi-line: each line gets its own check */
	{ { "550-5.7.1 first", "550-second", "550 5.7.1 third" },
	    BE_EXPECT_RCPT,
	    "550-5.7.1 first\r\n550-5.1.1 second\r\n550 5.7.1 third\r\n" },
	{ { "250-one", "250-", "250 three" }, BE_EXPECT_DATA_END,
	    "250-2.0.0 one\r\n250-2.0.0\r\n250 2.0.0 three\r\n" },
	{ { "451-4.3.0 a", "451 4.3.0 b" }, BE_EXPECT_MAIL,
	    "451-4.3.0 a\r\n451 4.3.0 b\r\n" },
	/* ETRN (Postfix sends no enhanced codes to ETRN) */
	{ { "250 Queuing started" }, BE_EXPECT_ETRN,
	    "250 2.0.0 Queuing started\r\n" },
	{ { "253 OK, 14 pending messages for node x.example started" },
	    BE_EXPECT_ETRN,
	    "253 2.0.0 OK, 14 pending messages for node x.example started\r\n" },
	{ { "459 <nonflush.example>: service unavailable" }, BE_EXPECT_ETRN,
	    "459 4.7.1 <nonflush.example>: service unavailable\r\n" },
	{ { "458 Unable to queue messages for node x.example" },
	    BE_EXPECT_ETRN,
	    "458 4.3.0 Unable to queue messages for node x.example\r\n" },
	{ { "459 4.7.0 Node x.example not allowed: policy" }, BE_EXPECT_ETRN,
	    "459 4.7.0 Node x.example not allowed: policy\r\n" },
	/* sanitized text is what is relayed */
	{ { "550 5.1.1 <x\x1b[2J>\x7f" }, BE_EXPECT_RCPT,
	    "550 5.1.1 <x?[2J>?\r\n" },
};

static void
test_relay(void **state)
{
	struct evbuffer *b = evbuffer_new();
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(relay_cases); i++) {
		const struct relay_case *c = &relay_cases[i];
		struct backend_reply r;
		char *got;

		assert_int_equal(feed_all(&r, c->lines, MAXL),
		    BACKEND_REPLY_DONE);
		backend_reply_relay(&r, c->expect, b);
		got = take(b);
		if (strcmp(got, c->want) != 0)
			fail_msg("case %zu (%s): got \"%s\", want \"%s\"", i,
			    c->lines[0], got, c->want);
		free(got);
	}
	evbuffer_free(b);
}

/* Past SMTP_REPLY_MAX_LINES the relayed reply is cut but still ends with a
 * final "ddd " line. */
static void
test_relay_line_cap(void **state)
{
	struct evbuffer *b = evbuffer_new();
	struct backend_reply r;
	char line[32], *out, *p;
	unsigned i, n;

	(void)state;
	backend_reply_reset(&r);
	for (i = 0; i < 50; i++) {
		int len = snprintf(line, sizeof(line), "550-%u", i);

		assert_int_equal(backend_reply_feed(&r, line, (size_t)len),
		    BACKEND_REPLY_MORE);
	}
	assert_int_equal(backend_reply_feed(&r, "550 end", 7),
	    BACKEND_REPLY_DONE);
	backend_reply_relay(&r, BE_EXPECT_RCPT, b);
	out = take(b);
	for (p = out, n = 0; *p; n++) {
		char *eol = strstr(p, "\r\n");
		char want[32];

		assert_non_null(eol);
		snprintf(want, sizeof(want), "550%c5.1.1 %u",
		    n + 1 < SMTP_REPLY_MAX_LINES ? '-' : ' ', n);
		assert_int_equal((size_t)(eol - p), strlen(want));
		assert_memory_equal(p, want, strlen(want));
		p = eol + 2;
	}
	assert_int_equal(n, SMTP_REPLY_MAX_LINES);
	free(out);
	evbuffer_free(b);
}

/* ------------------------------------------------------------------ */

struct qid_case {
	const char *lines[MAXL];
	int found;
	const char *id;
};

static const struct qid_case qid_cases[] = {
	{ { "250 2.0.0 Ok: queued as 4Xz9Kq1abc" }, 1, "4Xz9Kq1abc" },
	{ { "250 Ok: queued as 4Xz9Kq1abc" }, 1, "4Xz9Kq1abc" },
	{ { "250 2.0.0 Ok: queued as ABC123 (extra)" }, 1, "ABC123" },
	{ { "250 2.0.0 queued as 1rXyZa-000Abc-Qw" }, 1, "1rXyZa-000Abc-Qw" },
	{ { "250 2.0.0 queued as a.b_c-d;more" }, 1, "a.b_c-d" },
	{ { "250-first", "250 Ok: queued as QID2" }, 1, "QID2" },
	{ { "250 2.0.0 Ok" }, 0, NULL },
	{ { "250 2.0.0 OK id=1rXyZa-000Abc-Qw" }, 0, NULL },
	{ { "250 2.0.0 queued as " }, 0, NULL },
	{ { "250 2.0.0 queued as <x>" }, 0, NULL },
	{ { "250 2.0.0 QUEUED AS ABC" }, 0, NULL },
	/* sanitized: a control character ends the id */
	{ { "250 queued as AB\x01" "CD" }, 1, "AB" },
};

static void
test_queue_id(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(qid_cases); i++) {
		const struct qid_case *c = &qid_cases[i];
		struct backend_reply r;
		char id[64];
		int found;

		assert_int_equal(feed_all(&r, c->lines, MAXL),
		    BACKEND_REPLY_DONE);
		memset(id, 'Z', sizeof(id));
		found = backend_reply_queue_id(&r, id, sizeof(id));
		if (found != c->found)
			fail_msg("case %zu (%s): found %d", i, c->lines[0],
			    found);
		if (found)
			assert_string_equal(id, c->id);
	}
}

/* The id buffer is never overrun; idsize 0 writes nothing. */
static void
test_queue_id_bounds(void **state)
{
	static const char *const lines[] = {
		"250 2.0.0 Ok: queued as 4Xz9Kq1abc"
	};
	struct backend_reply r;
	char id[16];
	size_t size;

	(void)state;
	assert_int_equal(feed_all(&r, lines, 1), BACKEND_REPLY_DONE);
	memset(id, 'Z', sizeof(id));
	assert_int_equal(backend_reply_queue_id(&r, id, 0), 0);
	assert_int_equal(id[0], 'Z');
	for (size = 1; size < sizeof(id); size++) {
		memset(id, 'Z', sizeof(id));
		backend_reply_queue_id(&r, id, size);
		assert_int_equal(id[size], 'Z');
		assert_true(strlen(id) < size);
		assert_memory_equal(id, "4Xz9Kq1abc", strlen(id));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_feed),
		cmocka_unit_test(test_feed_nul),
		cmocka_unit_test(test_reset),
		cmocka_unit_test(test_line_cap),
		cmocka_unit_test(test_text_cap),
		cmocka_unit_test(test_text_cap_multiline),
		cmocka_unit_test(test_map),
		cmocka_unit_test(test_relay),
		cmocka_unit_test(test_relay_line_cap),
		cmocka_unit_test(test_queue_id),
		cmocka_unit_test(test_queue_id_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
