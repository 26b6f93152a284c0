/*
 * test_data_filter.c - message content filters (proxy/data_filter.c).
 *
 * The DATA decoder is where SMTP smuggling would happen, so every decode
 * case is run three ways - whole, split at every byte boundary into two
 * calls, and one byte per call - and all three must give the same raw
 * output, the same count of consumed bytes (the terminator's end, never
 * further), the same bare newline count and the same end state.
 *
 * Only CRLF "." CRLF ends DATA (RFC 5321 4.1.1.4); "\n.\n", "\r\n.\n",
 * "\n.\r\n", "\r.\r\n" do not, and the bare CR/LF in them is normalized to
 * CRLF and counted.  A round-trip property test (random CRLF content with
 * many dot lines -> dot_encode -> decode) must return the content unchanged.
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

#include "data_filter.h"

#define N_ELEMENTS(a)	(sizeof(a) / sizeof((a)[0]))
#define S(s)		(s), (sizeof(s) - 1)

/* A byte string with its length (content may hold NULs). */
struct bytes {
	char *p;
	size_t len;
};

static struct bytes
take(struct evbuffer *b)
{
	struct bytes r;

	r.len = evbuffer_get_length(b);
	r.p = malloc(r.len + 1);
	assert_non_null(r.p);
	assert_int_equal(evbuffer_remove(b, r.p, r.len), (int)r.len);
	r.p[r.len] = '\0';
	return r;
}

static void
assert_bytes(const struct bytes *got, const char *want, size_t wantlen,
	     const char *what)
{
	if (got->len != wantlen || memcmp(got->p, want, wantlen) != 0)
		fail_msg("%s: got %zu bytes \"%.*s\", want %zu \"%.*s\"", what,
		    got->len, (int)got->len, got->p, wantlen, (int)wantlen,
		    want);
}

/* Output never holds a bare CR or a bare LF. */
static void
assert_crlf_only(const struct bytes *b, const char *what)
{
	size_t i;

	for (i = 0; i < b->len; i++) {
		if (b->p[i] == '\r' && (i + 1 >= b->len || b->p[i + 1] != '\n'))
			fail_msg("%s: bare CR at %zu", what, i);
		if (b->p[i] == '\n' && (i == 0 || b->p[i - 1] != '\r'))
			fail_msg("%s: bare LF at %zu", what, i);
	}
}

/* What one decode run produced. */
struct decoded {
	struct bytes out;
	size_t consumed;
	unsigned bare;
	int end;
	int too_long;
	uint64_t out_bytes;
};

/* Decode in, in calls of at most `chunk` bytes (0: one call), after a
 * first call of `first` bytes (0: none).  Stops feeding after the end. */
static struct decoded
decode(const char *in, size_t len, size_t first, size_t chunk,
       uint64_t max_line)
{
	struct data_filter f;
	struct evbuffer *b = evbuffer_new();
	struct decoded d;
	size_t pos = 0;

	assert_non_null(b);
	data_filter_init(&f, max_line, 0);
	d.consumed = 0;
	while (pos < len || (pos == 0 && len == 0)) {
		size_t n = len - pos, used;

		if (pos == 0 && first > 0 && first < n)
			n = first;
		else if (chunk > 0 && chunk < n)
			n = chunk;
		used = data_filter_decode_dot(&f, in + pos, n, b);
		assert_true(used <= n);
		d.consumed = pos + used;
		if (f.state == DF_END)
			break;
		/* Until the end, everything offered is consumed. */
		assert_int_equal(used, n);
		pos += n;
		if (len == 0)
			break;
	}
	d.out = take(b);
	d.bare = f.bare_newlines;
	d.end = f.state == DF_END;
	d.too_long = f.line_too_long;
	d.out_bytes = f.out_bytes;
	evbuffer_free(b);
	return d;
}

struct decode_case {
	const char *name;
	const char *in;
	size_t inlen;
	const char *out;
	size_t outlen;
	size_t consumed;	/* (size_t)-1: all of in */
	unsigned bare;
	int end;
};

#define ALL	((size_t)-1)

static const struct decode_case decode_cases[] = {
	{ "simple message", S("Subject: x\r\n\r\nbody\r\n.\r\n"),
	    S("Subject: x\r\n\r\nbody\r\n"), ALL, 0, 1 },
	{ "empty message", S(".\r\n"), S(""), ALL, 0, 1 },
	{ "empty input", S(""), S(""), ALL, 0, 0 },
	{ "no terminator yet", S("line one\r\nline two\r\n"),
	    S("line one\r\nline two\r\n"), ALL, 0, 0 },
	{ "partial line", S("abc"), S("abc"), ALL, 0, 0 },
	{ "partial terminator", S("abc\r\n.\r"), S("abc\r\n"), ALL, 0, 0 },
	/* RFC 5321 4.5.2: a leading dot is removed */
	{ "unstuff", S("..leading dot\r\n.\r\n"), S(".leading dot\r\n"), ALL,
	    0, 1 },
	{ "unstuff dot line", S("a\r\n..\r\n.\r\n"), S("a\r\n.\r\n"), ALL, 0,
	    1 },
	{ "unstuff one of three", S("a\r\n...\r\n.\r\n"), S("a\r\n..\r\n"),
	    ALL, 0, 1 },
	{ "unstuff first line", S(".x\r\n.\r\n"), S("x\r\n"), ALL, 0, 1 },
	{ "dot inside a line", S("a.b\r\nc .\r\n.\r\n"), S("a.b\r\nc .\r\n"),
	    ALL, 0, 1 },
	{ "dot space is not the end", S("a\r\n. \r\n.\r\n"), S("a\r\n \r\n"),
	    ALL, 0, 1 },
	/* bytes after the terminator are the next command */
	{ "trailing command", S("a\r\n.\r\nQUIT\r\n"), S("a\r\n"), 6, 0, 1 },
	{ "terminator first", S(".\r\nMAIL FROM:<a@b>\r\n"), S(""), 3, 0, 1 },
	{ "two terminators", S("a\r\n.\r\n.\r\n"), S("a\r\n"), 6, 0, 1 },
	/* smuggling: none of these ends DATA, and a one-dot line ended by a
	 * bare CR or LF is content: its dot is kept */
	{ "LF.LF", S("a\n.\nb\r\n.\r\n"), S("a\r\n.\r\nb\r\n"), ALL, 2, 1 },
	{ "CRLF.LF", S("a\r\n.\nb\r\n.\r\n"), S("a\r\n.\r\nb\r\n"), ALL, 1, 1 },
	{ "LF.CRLF", S("a\n.\r\nb\r\n.\r\n"), S("a\r\n.\r\nb\r\n"), ALL, 1, 1 },
	{ "CR.CRLF", S("a\r.\r\nb\r\n.\r\n"), S("a\r\n.\r\nb\r\n"), ALL, 1, 1 },
	{ "CRLF.CR", S("a\r\n.\rb\r\n.\r\n"), S("a\r\n.\r\nb\r\n"), ALL, 1, 1 },
	{ "CRLF.CR.", S("a\r\n.\r.\r\n.\r\n"), S("a\r\n.\r\n.\r\n"), ALL, 1,
	    1 },
	{ "CRLF.CR.LF", S("a\r\n.\r.\nb\r\n.\r\n"),
	    S("a\r\n.\r\n.\r\nb\r\n"), ALL, 2, 1 },
	{ "CR.CR", S("a\r.\rb\r\n.\r\n"), S("a\r\n.\r\nb\r\n"), ALL, 2, 1 },
	{ "LF.LF only", S("a\n.\n"), S("a\r\n.\r\n"), ALL, 2, 0 },
	{ "CRLF.LF only", S("a\r\n.\n"), S("a\r\n.\r\n"), ALL, 1, 0 },
	{ "LF.CRLF only", S("a\n.\r\n"), S("a\r\n.\r\n"), ALL, 1, 0 },
	{ "CR.CRLF only", S("a\r.\r\n"), S("a\r\n.\r\n"), ALL, 1, 0 },
	{ "LF at start", S("\n.\r\n"), S("\r\n.\r\n"), ALL, 1, 0 },
	{ "smuggled command",
	    S("a\r\n\n.\r\nMAIL FROM:<evil@x>\r\nb\r\n.\r\nQUIT\r\n"),
	    S("a\r\n\r\n.\r\nMAIL FROM:<evil@x>\r\nb\r\n"),
	    sizeof("a\r\n\n.\r\nMAIL FROM:<evil@x>\r\nb\r\n.\r\n") - 1, 1, 1 },
	/* bare CR and LF inside lines */
	{ "bare CR", S("a\rb\r\n.\r\n"), S("a\r\nb\r\n"), ALL, 1, 1 },
	{ "bare LF", S("a\nb\r\n.\r\n"), S("a\r\nb\r\n"), ALL, 1, 1 },
	{ "CR CR LF", S("a\r\r\n.\r\n"), S("a\r\n\r\n"), ALL, 1, 1 },
	{ "LF CRLF", S("a\n\r\n.\r\n"), S("a\r\n\r\n"), ALL, 1, 1 },
	{ "LF CR", S("a\n\rb\r\n.\r\n"), S("a\r\n\r\nb\r\n"), ALL, 2, 1 },
	{ "dot CR CR LF", S("x\r\n.\r\r\n.\r\n"), S("x\r\n.\r\n\r\n"), ALL, 1,
	    1 },
	/* after a bare newline the next line is not a terminator, and its
	 * dot is data */
	{ "dot after bare LF", S("a\n..\r\n.\r\n"), S("a\r\n..\r\n"), ALL, 1,
	    1 },
	/* NULs and 8-bit bytes are data */
	{ "binary bytes", S("\0\xff\x80.\r\n.\r\n"), S("\0\xff\x80.\r\n"), ALL,
	    0, 1 },
};

static void
check_decode_case(const struct decode_case *c)
{
	size_t want_consumed = c->consumed == ALL ? c->inlen : c->consumed;
	struct decoded whole, split;
	size_t k;
	char what[128];

	whole = decode(c->in, c->inlen, 0, 0, 0);
	snprintf(what, sizeof(what), "%s (whole)", c->name);
	assert_bytes(&whole.out, c->out, c->outlen, what);
	assert_crlf_only(&whole.out, what);
	if (whole.consumed != want_consumed)
		fail_msg("%s: consumed %zu, want %zu", what, whole.consumed,
		    want_consumed);
	if (whole.bare != c->bare)
		fail_msg("%s: %u bare newlines, want %u", what, whole.bare,
		    c->bare);
	if (whole.end != c->end)
		fail_msg("%s: end %d, want %d", what, whole.end, c->end);
	assert_int_equal(whole.out_bytes, c->outlen);

	/* split at every boundary, and one byte at a time */
	for (k = 0; k <= c->inlen + 1; k++) {
		if (k <= c->inlen) {
			split = decode(c->in, c->inlen, k, 0, 0);
			snprintf(what, sizeof(what), "%s (split at %zu)",
			    c->name, k);
		} else {
			split = decode(c->in, c->inlen, 0, 1, 0);
			snprintf(what, sizeof(what), "%s (bytewise)", c->name);
		}
		assert_bytes(&split.out, c->out, c->outlen, what);
		if (split.consumed != want_consumed || split.bare != c->bare ||
		    split.end != c->end)
			fail_msg("%s: consumed %zu bare %u end %d", what,
			    split.consumed, split.bare, split.end);
		free(split.out.p);
	}
	free(whole.out.p);
}

static void
test_decode_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(decode_cases); i++)
		check_decode_case(&decode_cases[i]);
}

/* Once the terminator is seen, nothing more is consumed or produced. */
static void
test_decode_after_end(void **state)
{
	struct data_filter f;
	struct evbuffer *b = evbuffer_new();

	(void)state;
	data_filter_init(&f, 0, 0);
	assert_int_equal(data_filter_decode_dot(&f, S("x\r\n.\r"), b), 5);
	assert_int_equal(data_filter_decode_dot(&f, S("\nRSET\r\n"), b), 1);
	assert_int_equal(f.state, DF_END);
	assert_int_equal(data_filter_decode_dot(&f, S("RSET\r\n"), b), 0);
	assert_int_equal(data_filter_decode_dot(&f, S(".\r\n"), b), 0);
	assert_int_equal(evbuffer_get_length(b), 3);
	assert_int_equal(f.out_bytes, 3);
	evbuffer_free(b);
}

/* max_line_len counts the raw line with its CRLF (RFC 5321 4.5.3.1.6). */
static void
test_line_length(void **state)
{
	static const struct {
		const char *in;
		size_t len;
		uint64_t max;
		int too_long;
	} cases[] = {
		{ S("12345678\r\n.\r\n"), 10, 0 },
		{ S("123456789\r\n.\r\n"), 10, 1 },
		{ S("123456789"), 10, 1 },
		{ S("12345678"), 10, 0 },
		/* the stuffing dot is not part of the line */
		{ S("..2345678\r\n.\r\n"), 10, 0 },
		{ S("...345678\r\n.\r\n"), 10, 0 },
		{ S("..23456789\r\n.\r\n"), 10, 1 },
		/* each line on its own */
		{ S("12345678\r\n12345678\r\n12345678\r\n.\r\n"), 10, 0 },
		{ S("12345678\r\n12345678\r\n123456789\r\n.\r\n"), 10, 1 },
		/* a bare newline ends a line too */
		{ S("12345678\n12345678\r12345678\r\n.\r\n"), 10, 0 },
		/* 0 = no limit */
		{ S("123456789012345678901234567890\r\n.\r\n"), 0, 0 },
	};
	size_t i, k;

	(void)state;
	for (i = 0; i < N_ELEMENTS(cases); i++) {
		for (k = 0; k <= cases[i].len + 1; k++) {
			struct decoded d = k <= cases[i].len ?
			    decode(cases[i].in, cases[i].len, k, 0,
				cases[i].max) :
			    decode(cases[i].in, cases[i].len, 0, 1,
				cases[i].max);

			if (d.too_long != cases[i].too_long)
				fail_msg("case %zu split %zu: too_long %d", i, k,
				    d.too_long);
			free(d.out.p);
		}
	}
}

/* A long line is flagged, not cut: the content is still passed on. */
static void
test_line_too_long_passes_content(void **state)
{
	char in[5000];
	struct decoded d;

	(void)state;
	memset(in, 'x', 4000);
	memcpy(in + 4000, "\r\n.\r\n", 5);
	d = decode(in, 4005, 0, 0, 1000);
	assert_int_equal(d.too_long, 1);
	assert_int_equal(d.out.len, 4002);
	assert_int_equal(d.consumed, 4005);
	free(d.out.p);
}

/* ------------------------------------------------------------------ */
/* BDAT: data_filter_raw / data_filter_raw_end */

struct raw_case {
	const char *name;
	int binary;
	const char *chunks[4];		/* NULL-terminated; NUL-free */
	int last;			/* call data_filter_raw_end */
	const char *out;
	unsigned bare;
};

static const struct raw_case raw_cases[] = {
	{ "plain", 0, { "a\r\nb\r\n", NULL }, 1, "a\r\nb\r\n", 0 },
	{ "dots untouched", 0, { ".\r\n..x\r\n", NULL }, 1, ".\r\n..x\r\n", 0 },
	{ "terminator is data", 0, { "a\r\n.\r\nb\r\n", NULL }, 1,
	    "a\r\n.\r\nb\r\n", 0 },
	{ "no final CRLF", 0, { "a\r\nb", NULL }, 1, "a\r\nb", 0 },
	{ "bare LF", 0, { "a\nb\r\n", NULL }, 1, "a\r\nb\r\n", 1 },
	{ "bare CR", 0, { "a\rb\r\n", NULL }, 1, "a\r\nb\r\n", 1 },
	{ "CR.CRLF", 0, { "a\r.\r\n", NULL }, 1, "a\r\n.\r\n", 1 },
	/* RFC 3030: chunks may split CRLF */
	{ "CR at chunk end, LF next", 0, { "a\r", "\nb\r\n", NULL }, 1,
	    "a\r\nb\r\n", 0 },
	{ "CR at chunk end, LF next, three chunks", 0,
	    { "a\r", "\n", "b\r\n", NULL }, 1, "a\r\nb\r\n", 0 },
	{ "CR at chunk end, text next", 0, { "a\r", "b\r\n", NULL }, 1,
	    "a\r\nb\r\n", 1 },
	{ "CR at chunk end, CR next", 0, { "a\r", "\r\n", NULL }, 1,
	    "a\r\n\r\n", 1 },
	{ "CR at the last chunk end", 0, { "a\r", NULL }, 1, "a\r\n", 1 },
	{ "CR pending, not last", 0, { "a\r", NULL }, 0, "a", 0 },
	{ "empty chunks", 0, { "", "a\r", "", "\n" }, 1, "a\r\n", 0 },
	/* BINARYMIME: untouched */
	{ "binary", 1, { "a\rb\nc\r\n.\r\n", "\r", NULL }, 1,
	    "a\rb\nc\r\n.\r\n\r", 0 },
	{ "binary CR end", 1, { "a\r", NULL }, 1, "a\r", 0 },
};

static void
test_raw(void **state)
{
	size_t i, k;

	(void)state;
	for (i = 0; i < N_ELEMENTS(raw_cases); i++) {
		const struct raw_case *c = &raw_cases[i];
		struct data_filter f;
		struct evbuffer *b = evbuffer_new();
		struct bytes got;

		data_filter_init(&f, 0, c->binary);
		for (k = 0; k < N_ELEMENTS(c->chunks) && c->chunks[k]; k++)
			data_filter_raw(&f, c->chunks[k], strlen(c->chunks[k]),
			    b);
		if (c->last)
			data_filter_raw_end(&f, b);
		got = take(b);
		assert_bytes(&got, c->out, strlen(c->out), c->name);
		if (!c->binary && c->last)
			assert_crlf_only(&got, c->name);
		if (f.bare_newlines != c->bare)
			fail_msg("%s: %u bare newlines, want %u", c->name,
			    f.bare_newlines, c->bare);
		assert_int_equal(f.out_bytes, strlen(c->out));
		free(got.p);
		evbuffer_free(b);
	}
}

/* Raw mode gives the same output wherever the chunks are cut. */
static void
test_raw_split(void **state)
{
	static const char *const inputs[] = {
		"a\r\nb\r\n", "a\rb\nc\r\r\n\n\r", ".\r\n..\r\n\r\n", "\r\n\r",
		"\n\n\r\r", "x",
	};
	size_t i, k;

	(void)state;
	for (i = 0; i < N_ELEMENTS(inputs); i++) {
		const char *in = inputs[i];
		size_t len = strlen(in);
		struct bytes whole;
		unsigned whole_bare;
		struct data_filter f;
		struct evbuffer *b = evbuffer_new();

		data_filter_init(&f, 0, 0);
		data_filter_raw(&f, in, len, b);
		data_filter_raw_end(&f, b);
		whole = take(b);
		whole_bare = f.bare_newlines;
		assert_crlf_only(&whole, in);
		for (k = 0; k <= len; k++) {
			struct bytes got;

			data_filter_init(&f, 0, 0);
			data_filter_raw(&f, in, k, b);
			data_filter_raw(&f, in + k, len - k, b);
			data_filter_raw_end(&f, b);
			got = take(b);
			assert_bytes(&got, whole.p, whole.len, in);
			assert_int_equal(f.bare_newlines, whole_bare);
			free(got.p);
		}
		free(whole.p);
		evbuffer_free(b);
	}
}

/* The line limit applies to BDAT too (not to BINARYMIME). */
static void
test_raw_line_length(void **state)
{
	struct data_filter f;
	struct evbuffer *b = evbuffer_new();

	(void)state;
	data_filter_init(&f, 10, 0);
	data_filter_raw(&f, S("12345678\r\n1234"), b);
	assert_int_equal(f.line_too_long, 0);
	data_filter_raw(&f, S("5678\r\n"), b);
	assert_int_equal(f.line_too_long, 0);
	data_filter_raw(&f, S("123456789\r\n"), b);
	assert_int_equal(f.line_too_long, 1);

	data_filter_init(&f, 10, 1);
	data_filter_raw(&f, S("123456789012345\r\n"), b);
	assert_int_equal(f.line_too_long, 0);
	evbuffer_free(b);
}

/* ------------------------------------------------------------------ */
/* dot_encode / dot_encode_end */

struct encode_case {
	const char *in;
	const char *out;	/* with the end marker */
};

static const struct encode_case encode_cases[] = {
	{ "", ".\r\n" },
	{ "a\r\n", "a\r\n.\r\n" },
	{ "a", "a\r\n.\r\n" },
	{ "a\r\nb", "a\r\nb\r\n.\r\n" },
	{ ".", "..\r\n.\r\n" },
	{ ".\r\n", "..\r\n.\r\n" },
	{ ".a\r\n", "..a\r\n.\r\n" },
	{ "a\r\n.\r\n", "a\r\n..\r\n.\r\n" },
	{ "a\r\n.\r\nMAIL FROM:<x@y>\r\n", "a\r\n..\r\nMAIL FROM:<x@y>\r\n.\r\n" },
	{ "x\r\n..\r\n", "x\r\n...\r\n.\r\n" },
	{ "a.b\r\n a.\r\n", "a.b\r\n a.\r\n.\r\n" },
	{ "\r\n\r\n.", "\r\n\r\n..\r\n.\r\n" },
};

static void
test_encode(void **state)
{
	size_t i, k, j;

	(void)state;
	for (i = 0; i < N_ELEMENTS(encode_cases); i++) {
		const struct encode_case *c = &encode_cases[i];
		size_t len = strlen(c->in);

		/* whole, split in two anywhere, and byte by byte */
		for (k = 0; k <= len + 1; k++) {
			struct dot_encoder e;
			struct evbuffer *b = evbuffer_new();
			struct bytes got;

			dot_encoder_init(&e);
			if (k <= len) {
				dot_encode(&e, c->in, k, b);
				dot_encode(&e, c->in + k, len - k, b);
			} else {
				for (j = 0; j < len; j++)
					dot_encode(&e, c->in + j, 1, b);
			}
			dot_encode_end(&e, b);
			got = take(b);
			assert_bytes(&got, c->out, strlen(c->out), c->in);
			free(got.p);
			evbuffer_free(b);
		}
	}
}

/* The encoder is ready for a new message after dot_encode_end. */
static void
test_encode_end_resets(void **state)
{
	struct dot_encoder e;
	struct evbuffer *b = evbuffer_new();
	struct bytes got;

	(void)state;
	dot_encoder_init(&e);
	dot_encode(&e, S("abc"), b);
	dot_encode_end(&e, b);
	dot_encode(&e, S(".x"), b);
	dot_encode_end(&e, b);
	got = take(b);
	assert_bytes(&got, S("abc\r\n.\r\n..x\r\n.\r\n"), "two messages");
	free(got.p);
	evbuffer_free(b);
}

/* ------------------------------------------------------------------ */
/* Round trip: raw -> dot_encode -> decode -> raw, random cuts both ways. */

static uint32_t rng_state = 0x2545f491u;

static uint32_t
rng(void)
{
	/* xorshift32: deterministic, so a failure can be replayed */
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

/* Random content of CRLF lines; many start with one or more dots; bytes are
 * anything but CR and LF.  If !final_crlf the last line has no CRLF. */
static size_t
random_content(char *buf, size_t size, int final_crlf)
{
	size_t len = 0, lines = rng() % 12, i;

	for (i = 0; i < lines || (!final_crlf && i == lines); i++) {
		size_t n = rng() % 20, k;
		unsigned dots = rng() % 4 == 0 ? 0 : rng() % 3 + 1;

		if (len + n + 8 >= size)
			break;
		for (k = 0; k < dots; k++)
			buf[len++] = '.';
		for (k = 0; k < n; k++) {
			unsigned r = rng() % 8;
			char c;

			if (r == 0)
				c = '.';
			else if (r == 1)
				c = ' ';
			else if (r == 2)
				c = (char)(rng() % 256);
			else
				c = (char)('a' + rng() % 26);
			if (c == '\r' || c == '\n')
				c = '?';
			buf[len++] = c;
		}
		if (i < lines) {
			buf[len++] = '\r';
			buf[len++] = '\n';
		}
	}
	return len;
}

static void
roundtrip_one(const char *raw, size_t rawlen)
{
	int final_crlf = rawlen == 0 ||
	    (rawlen >= 2 && raw[rawlen - 2] == '\r' && raw[rawlen - 1] == '\n');
	struct dot_encoder e;
	struct evbuffer *b = evbuffer_new();
	struct bytes enc, dec;
	struct decoded d;
	size_t pos = 0, n, enclen;
	char *withcmd;

	/* encode in random pieces */
	dot_encoder_init(&e);
	while (pos < rawlen) {
		n = rng() % (rawlen - pos + 1);
		dot_encode(&e, raw + pos, n, b);
		pos += n;
	}
	dot_encode_end(&e, b);
	enc = take(b);
	evbuffer_free(b);

	/* the encoded form ends with the one terminator, followed here by
	 * the client's next command, which must not be consumed */
	enclen = enc.len;
	withcmd = malloc(enclen + 6);
	assert_non_null(withcmd);
	memcpy(withcmd, enc.p, enclen);
	memcpy(withcmd + enclen, "QUIT\r\n", 6);

	d = decode(withcmd, enclen + 6, rng() % (enclen + 1),
	    rng() % 2 ? 0 : rng() % 7 + 1, 0);
	assert_int_equal(d.end, 1);
	assert_int_equal(d.consumed, enclen);
	assert_int_equal(d.bare, 0);
	dec = d.out;
	if (final_crlf) {
		assert_bytes(&dec, raw, rawlen, "round trip");
	} else {
		/* dot_encode_end supplied the missing CRLF */
		assert_int_equal(dec.len, rawlen + 2);
		assert_memory_equal(dec.p, raw, rawlen);
		assert_memory_equal(dec.p + rawlen, "\r\n", 2);
	}
	free(dec.p);
	free(withcmd);
	free(enc.p);
}

static void
test_roundtrip(void **state)
{
	char raw[512];
	size_t rawlen;
	int i;

	(void)state;
	for (i = 0; i < 5000; i++) {
		rawlen = random_content(raw, sizeof(raw), i % 4 != 0);
		roundtrip_one(raw, rawlen);
	}
	/* fixed corner cases */
	roundtrip_one(S(".\r\n"));
	roundtrip_one(S("..\r\n.\r\n...\r\n"));
	roundtrip_one(S("\r\n.\r\n"));
	roundtrip_one(S(""));
	roundtrip_one(S("."));
	roundtrip_one(S("a\r\n."));
}

/*
 * The raw checker and the encoder against byte-at-a-time models, on random
 * content long enough for the 16-octet fast path (mostly CRLF lines, now
 * and then a bare CR or LF, a dot at the start of a line, a long line),
 * fed in random pieces.
 */
struct raw_model {
	int cr;			/* after a CR */
	uint64_t line_len, out_bytes;
	unsigned bare;
	int too_long;
};

static void
raw_model_byte(struct raw_model *m, char c, uint64_t max, char *out,
	       size_t *o)
{
	if (m->cr) {
		m->cr = 0;
		out[(*o)++] = '\r';
		out[(*o)++] = '\n';
		m->line_len = 0;
		if (c == '\n')
			return;
		m->bare++;	/* c is processed as the next line's */
	}
	if (c == '\r') {
		m->cr = 1;
	} else if (c == '\n') {
		m->bare++;
		out[(*o)++] = '\r';
		out[(*o)++] = '\n';
		m->line_len = 0;
	} else {
		out[(*o)++] = c;
		m->line_len++;
		if (max && m->line_len + 2 > max)
			m->too_long = 1;
	}
}

static size_t
random_lines(char *p, size_t size)
{
	size_t n = 0, k;

	while (n + 300 < size) {
		unsigned r = rng() % 100;

		if (r < 3)
			p[n++] = '\r';			/* bare CR (or CRLF) */
		else if (r < 6)
			p[n++] = '\n';			/* bare LF */
		else if (r < 10)
			p[n++] = '.';
		else if (r < 20) {
			p[n++] = '\r';
			p[n++] = '\n';			/* empty line */
		} else {
			size_t len = r < 22 ? 100 + rng() % 150 : rng() % 80;

			for (k = 0; k < len; k++)
				p[n++] = (char)('a' + rng() % 26);
			p[n++] = '\r';
			p[n++] = '\n';
		}
	}
	return n;
}

static void
test_raw_model(void **state)
{
	static const uint64_t maxes[] = { 0, 3, 20, 80, 102, 1000 };
	static char in[8192], want[16384];
	int round;

	(void)state;
	for (round = 0; round < 3000; round++) {
		uint64_t max = maxes[round % N_ELEMENTS(maxes)];
		size_t len = random_lines(in, (size_t)(rng() % sizeof(in))), pos, n, o;
		struct raw_model m;
		struct data_filter f;
		struct evbuffer *b = evbuffer_new();
		struct bytes got;

		memset(&m, 0, sizeof(m));
		o = 0;
		for (pos = 0; pos < len; pos++)
			raw_model_byte(&m, in[pos], max, want, &o);
		if (m.cr) {
			m.bare++;
			want[o++] = '\r';
			want[o++] = '\n';
		}
		data_filter_init(&f, max, 0);
		for (pos = 0; pos < len; pos += n) {
			n = rng() % 4 == 0 ? rng() % 20 : rng() % 3000;
			if (n > len - pos)
				n = len - pos;
			if (rng() % 2) {
				/* as session.c burl_on_data: the unchanged
				 * prefix passed on by the caller, the rest
				 * filtered */
				size_t k = data_filter_raw_prefix(&f, in + pos, n);

				assert_true(k <= n);
				evbuffer_add(b, in + pos, k);
				data_filter_raw(&f, in + pos + k, n - k, b);
			} else
				data_filter_raw(&f, in + pos, n, b);
		}
		data_filter_raw_end(&f, b);
		got = take(b);
		evbuffer_free(b);
		assert_bytes(&got, want, o, "raw vs model");
		assert_int_equal(f.out_bytes, o);
		assert_int_equal(f.bare_newlines, m.bare);
		assert_int_equal(f.line_too_long, m.too_long);
		free(got.p);
	}
}

static void
test_encode_model(void **state)
{
	static char in[8192], want[16384];
	int round;

	(void)state;
	for (round = 0; round < 3000; round++) {
		size_t len = random_lines(in, (size_t)(rng() % sizeof(in))), pos, n, o = 0;
		int bol = 1;
		struct dot_encoder e;
		struct evbuffer *b = evbuffer_new();
		struct bytes got;

		for (pos = 0; pos < len; pos++) {
			if (bol && in[pos] == '.')
				want[o++] = '.';
			want[o++] = in[pos];
			bol = in[pos] == '\n';
		}
		memcpy(want + o, bol ? ".\r\n" : "\r\n.\r\n", bol ? 3 : 5);
		o += bol ? 3 : 5;
		dot_encoder_init(&e);
		for (pos = 0; pos < len; pos += n) {
			n = rng() % 4 == 0 ? rng() % 3 : rng() % 3000;
			if (n > len - pos)
				n = len - pos;
			/* as session.c forward_content: a piece that needs
			 * no stuffing is passed on as it is */
			if (rng() % 2 && dot_encode_clean(&e, in + pos, n))
				evbuffer_add(b, in + pos, n);
			else
				dot_encode(&e, in + pos, n, b);
		}
		dot_encode_end(&e, b);
		got = take(b);
		evbuffer_free(b);
		assert_bytes(&got, want, o, "encode vs model");
		free(got.p);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_table),
		cmocka_unit_test(test_decode_after_end),
		cmocka_unit_test(test_line_length),
		cmocka_unit_test(test_line_too_long_passes_content),
		cmocka_unit_test(test_raw),
		cmocka_unit_test(test_raw_split),
		cmocka_unit_test(test_raw_line_length),
		cmocka_unit_test(test_encode),
		cmocka_unit_test(test_encode_end_resets),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_raw_model),
		cmocka_unit_test(test_encode_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
