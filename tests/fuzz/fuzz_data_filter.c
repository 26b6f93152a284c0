/*
 * fuzz_data_filter.c - libFuzzer target for the message content filters
 * (proxy/data_filter.c): the DATA decoder, the BDAT checker and the
 * dot-stuffing encoder.
 *
 *   tests/fuzz/build.sh && tests/fuzz/run.sh 60
 * or by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
 *       -Iproxy proxy/data_filter.c tests/fuzz/fuzz_data_filter.c -levent \
 *       -o fuzz_data_filter
 *   ./fuzz_data_filter -dict=tests/fuzz/smtp.dict tests/fuzz/corpus/data_filter
 *
 * Input: two bytes choosing where the content is split into two calls, one
 * byte choosing the line length limit, then the content as the client sent
 * it.  Invariants (SMTP smuggling safety, RFC 5321 4.1.1.4):
 *   - DATA decode consumes exactly up to the end of the first CRLF "." CRLF
 *     (counting the CRLF that ended the DATA command), or everything if
 *     there is none; never a byte past it;
 *   - the decoded content never holds a bare CR or a bare LF;
 *   - wherever the input is cut, the result (content, bytes consumed, bare
 *     newline count, end state, line_too_long) is the same;
 *   - re-encoding the content with dot_encode + dot_encode_end and decoding
 *     that again gives the same content (plus the CRLF dot_encode_end adds
 *     if it lacked one), consumes the encoding exactly and sees no bare
 *     newline;
 *   - BDAT: same output wherever the chunks are cut, no bare CR/LF after
 *     data_filter_raw_end, and BINARYMIME passes bytes untouched.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "data_filter.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

struct result {
	struct evbuffer *out;
	size_t consumed;
	unsigned bare;
	int end;
	int too_long;
	uint64_t out_bytes;
};

static void
decode2(const char *in, size_t len, size_t split, uint64_t max_line,
	struct result *r)
{
	struct data_filter f;
	size_t used;

	r->out = evbuffer_new();
	if (r->out == NULL)
		abort();
	data_filter_init(&f, max_line, 0);
	used = data_filter_decode_dot(&f, in, split, r->out);
	if (used > split)
		abort();
	r->consumed = used;
	if (f.state != DF_END) {
		if (used != split)	/* all is consumed until the end */
			abort();
		used = data_filter_decode_dot(&f, in + split, len - split,
		    r->out);
		if (used > len - split)
			abort();
		if (f.state != DF_END && used != len - split)
			abort();
		r->consumed = split + used;
	} else {
		/* after the end, nothing more is taken */
		if (data_filter_decode_dot(&f, in + split, len - split,
		    r->out) != 0)
			abort();
	}
	r->bare = f.bare_newlines;
	r->end = f.state == DF_END;
	r->too_long = f.line_too_long;
	r->out_bytes = f.out_bytes;
	if (r->out_bytes != evbuffer_get_length(r->out))
		abort();
}

/* End of the first CRLF "." CRLF in CRLF + in[0..len), as an offset in in,
 * or (size_t)-1. */
static size_t
first_terminator(const char *in, size_t len)
{
	size_t i;

	if (len >= 3 && memcmp(in, ".\r\n", 3) == 0)
		return 3;
	for (i = 0; i + 5 <= len; i++)
		if (memcmp(in + i, "\r\n.\r\n", 5) == 0)
			return i + 5;
	return (size_t)-1;
}

static void
check_crlf_only(const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] == '\r' && (i + 1 >= n || p[i + 1] != '\n'))
			abort();
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			abort();
	}
}

static void
check_same(const struct result *a, const struct result *b)
{
	size_t n = evbuffer_get_length(a->out);

	if (n != evbuffer_get_length(b->out) || a->consumed != b->consumed ||
	    a->bare != b->bare || a->end != b->end ||
	    a->too_long != b->too_long)
		abort();
	if (n > 0 && memcmp(evbuffer_pullup(a->out, -1),
	    evbuffer_pullup(b->out, -1), n) != 0)
		abort();
}

/* content -> dot_encode (cut at split) + dot_encode_end -> decode. */
static void
check_reencode(const unsigned char *raw, size_t n, size_t split)
{
	struct dot_encoder e;
	struct evbuffer *enc = evbuffer_new();
	struct result r;
	const unsigned char *ep;
	size_t elen, want;

	if (enc == NULL)
		abort();
	if (split > n)
		split = n;
	dot_encoder_init(&e);
	dot_encode(&e, (const char *)raw, split, enc);
	/* the second piece as session.c forward_content() passes it */
	if (dot_encode_clean(&e, (const char *)raw + split, n - split))
		evbuffer_add(enc, raw + split, n - split);
	else
		dot_encode(&e, (const char *)raw + split, n - split, enc);
	dot_encode_end(&e, enc);
	/* and the client's next command, which must stay unread */
	elen = evbuffer_get_length(enc);
	evbuffer_add(enc, "QUIT\r\n", 6);
	ep = evbuffer_pullup(enc, -1);

	decode2((const char *)ep, elen + 6, elen / 2, 0, &r);
	if (!r.end || r.consumed != elen || r.bare != 0)
		abort();
	want = n;
	if (n > 0 && !(n >= 2 && raw[n - 2] == '\r' && raw[n - 1] == '\n'))
		want += 2;
	if (evbuffer_get_length(r.out) != want)
		abort();
	ep = evbuffer_pullup(r.out, -1);
	if (n > 0 && memcmp(ep, raw, n) != 0)
		abort();
	if (want != n && memcmp(ep + n, "\r\n", 2) != 0)
		abort();
	evbuffer_free(r.out);
	evbuffer_free(enc);
}

/* One piece as data_filter_raw(), or as session.c burl_on_data() feeds
 * it: the unchanged prefix passed on by the caller, the rest filtered. */
static void
raw_piece(struct data_filter *f, const char *in, size_t len, int prefix,
	  struct evbuffer *out)
{
	size_t k = 0;

	if (prefix) {
		k = data_filter_raw_prefix(f, in, len);
		if (k > len)
			abort();
		evbuffer_add(out, in, k);
	}
	data_filter_raw(f, in + k, len - k, out);
}

static struct evbuffer *
raw2(const char *in, size_t len, size_t split, int binary, unsigned *bare_r,
     int prefix)
{
	struct data_filter f;
	struct evbuffer *out = evbuffer_new();

	if (out == NULL)
		abort();
	data_filter_init(&f, 0, binary);
	raw_piece(&f, in, split, prefix, out);
	raw_piece(&f, in + split, len - split, prefix, out);
	data_filter_raw_end(&f, out);
	if (f.out_bytes != evbuffer_get_length(out))
		abort();
	*bare_r = f.bare_newlines;
	return out;
}

static void
check_raw(const char *in, size_t len, size_t split)
{
	struct evbuffer *a, *b;
	unsigned bare_a, bare_b;
	size_t n;

	a = raw2(in, len, 0, 0, &bare_a, 0);
	b = raw2(in, len, split, 0, &bare_b, 0);
	n = evbuffer_get_length(a);
	if (n != evbuffer_get_length(b) || bare_a != bare_b)
		abort();
	if (n > 0) {
		const unsigned char *pa = evbuffer_pullup(a, -1);

		if (memcmp(pa, evbuffer_pullup(b, -1), n) != 0)
			abort();
		check_crlf_only(pa, n);
	}
	evbuffer_free(b);
	b = raw2(in, len, split, 0, &bare_b, 1);
	if (n != evbuffer_get_length(b) || bare_a != bare_b ||
	    (n > 0 && memcmp(evbuffer_pullup(a, -1), evbuffer_pullup(b, -1),
	    n) != 0))
		abort();
	/* no bare newline in the input: the output is the input */
	if (bare_a == 0 && (n != len ||
	    (n > 0 && memcmp(evbuffer_pullup(a, -1), in, n) != 0)))
		abort();
	evbuffer_free(a);
	evbuffer_free(b);

	a = raw2(in, len, split, 1, &bare_a, split & 1);
	if (bare_a != 0 || evbuffer_get_length(a) != len ||
	    (len > 0 && memcmp(evbuffer_pullup(a, -1), in, len) != 0))
		abort();
	evbuffer_free(a);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in;
	size_t len, split, term;
	uint64_t max_line;
	struct result whole, cut;

	if (size < 3)
		return 0;
	split = (size_t)data[0] | (size_t)data[1] << 8;
	max_line = data[2] < 128 ? data[2] : 0;
	in = (const char *)data + 3;
	len = size - 3;
	split %= len + 1;

	decode2(in, len, len, max_line, &whole);
	decode2(in, len, split, max_line, &cut);
	check_same(&whole, &cut);

	term = first_terminator(in, len);
	if (term == (size_t)-1) {
		if (whole.end || whole.consumed != len)
			abort();
	} else {
		if (!whole.end || whole.consumed != term)
			abort();
	}
	{
		size_t n = evbuffer_get_length(whole.out);
		const unsigned char *p = evbuffer_pullup(whole.out, -1);

		/* an empty evbuffer gives NULL; NULL + 0 is undefined in C */
		if (p == NULL)
			p = (const unsigned char *)"";

		check_crlf_only(p, n);
		/* the decoded content is never longer than what it came from */
		if (n > whole.consumed + whole.bare)
			abort();
		check_reencode(p, n, split);
	}
	evbuffer_free(whole.out);
	evbuffer_free(cut.out);

	check_raw(in, len, split);
	return 0;
}
