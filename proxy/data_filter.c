/*
 * data_filter.c - see data_filter.h.
 */
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "data_filter.h"

void
data_filter_init(struct data_filter *f, uint64_t max_line_len, int binary)
{
	memset(f, 0, sizeof(*f));
	f->state = DF_BOL;
	f->max_line_len = max_line_len;
	f->binary = binary;
}

static void
emit(struct data_filter *f, struct evbuffer *out, const char *p, size_t n)
{
	if (n == 0)
		return;
	evbuffer_add(out, p, n);
	f->out_bytes += n;
}

static void
emit_crlf(struct data_filter *f, struct evbuffer *out)
{
	emit(f, out, "\r\n", 2);
	f->line_len = 0;
}

static void
count_line(struct data_filter *f, size_t n)
{
	f->line_len += n;
	if (f->max_line_len && f->line_len + 2 > f->max_line_len)
		f->line_too_long = 1;
}

/*
 * Consume bytes of a line body from in[i..len): the longest run without CR
 * or LF is emitted in one go.  Returns the new index.
 */
/* Index of the first CR or LF in p[i..len), or len.  Eight bytes at a time:
 * content is mostly long runs of text, and this is the per-byte hot path. */
static size_t
find_crlf(const char *p, size_t i, size_t len)
{
	const uint64_t ones = 0x0101010101010101ULL, highs = ones << 7;
	const uint64_t cr = ones * '\r', lf = ones * '\n';

	while (i + 8 <= len) {
		uint64_t w, a, b;

		memcpy(&w, p + i, 8);
		a = w ^ cr;
		b = w ^ lf;
		/* a byte of a or b is zero where w has CR or LF */
		if (((a - ones) & ~a & highs) | ((b - ones) & ~b & highs))
			break;
		i += 8;
	}
	while (i < len && p[i] != '\r' && p[i] != '\n')
		i++;
	return i;
}

static size_t
scan_text(struct data_filter *f, const char *in, size_t i, size_t len,
	  struct evbuffer *out)
{
	size_t start = i;

	i = find_crlf(in, i, len);
	emit(f, out, in + start, i - start);
	count_line(f, i - start);
	return i;
}

/*
 * Raw content from in[i..len), in[i] being text: a run of well-formed lines
 * (text CRLF) passes as it is, counted line by line but emitted in one
 * piece, up to the first bare CR or LF, empty line or the end of in.
 * Returns the new index.
 */
static size_t
raw_lines(struct data_filter *f, const char *in, size_t i, size_t len,
	  struct evbuffer *out)
{
	size_t start = i, j;

	for (;;) {
		j = find_crlf(in, i, len);
		count_line(f, j - i);
		if (j + 1 >= len || in[j] != '\r' || in[j + 1] != '\n') {
			if (j > i)
				f->state = DF_MID;
			i = j;
			break;
		}
		f->line_len = 0;
		f->state = DF_BOL;
		i = j + 2;
		if (i == len || in[i] == '\r' || in[i] == '\n')
			break;
	}
	emit(f, out, in + start, i - start);
	return i;
}

/*
 * See data_filter.h.  Well-formed lines are found 16 octets at a time with
 * SSE2 (every CR of a block followed by LF, every LF after a CR: two
 * compares per block instead of a look at every octet; the set bits of the
 * LF mask give the line ends for max_line_len), the rest line by line.
 */
size_t
data_filter_raw_prefix(struct data_filter *f, const char *in, size_t len)
{
	size_t ls = 0, end = 0;			/* ls: start of the line */
	uint64_t line0 = f->line_len;		/* octets of the line before in */
	int lines = 0;

	if (f->binary) {
		f->out_bytes += len;
		return len;
	}
	if (f->state == DF_CR)
		return 0;
#if defined(__SSE2__)
	{
		const __m128i vcr = _mm_set1_epi8('\r'), vlf = _mm_set1_epi8('\n');
		unsigned carry = 0;		/* the last block ended in CR */

		while (end + 16 <= len) {
			__m128i v = _mm_loadu_si128((const __m128i *)
			    (const void *)(in + end));
			unsigned cr = (unsigned)_mm_movemask_epi8(
			    _mm_cmpeq_epi8(v, vcr));
			unsigned lf = (unsigned)_mm_movemask_epi8(
			    _mm_cmpeq_epi8(v, vlf));

			if (lf != (((cr << 1) | carry) & 0xffff))
				break;
			carry = cr >> 15;
			while (lf != 0) {
				size_t at = end + (size_t)__builtin_ctz(lf);
				uint64_t n = (lines ? 0 : line0) + (at - 1 - ls);

				if (f->max_line_len && n + 2 > f->max_line_len)
					f->line_too_long = 1;
				lines = 1;
				ls = at + 1;
				lf &= lf - 1;
			}
			end += 16;
		}
		if (carry)
			end--;	/* back to the CR whose LF is in the next block */
	}
#endif
	/* the rest (a block that is not all well-formed, the last 0-15
	 * octets), line by line, up to a bare CR or LF or a CR at the end */
	while (end < len) {
		size_t j = find_crlf(in, end, len);

		if (j + 1 >= len || in[j] != '\r' || in[j + 1] != '\n') {
			end = j;
			break;
		}
		{
			uint64_t n = (lines ? 0 : line0) + (j - ls);

			if (f->max_line_len && n + 2 > f->max_line_len)
				f->line_too_long = 1;
		}
		lines = 1;
		ls = end = j + 2;
	}
	if (lines) {
		f->line_len = 0;
		f->state = DF_BOL;
	}
	if (end > ls) {
		/* in[ls..end) is text without CR or LF: the line goes on */
		count_line(f, end - ls);
		f->state = DF_MID;
	}
	f->out_bytes += end;
	return end;
}

size_t
data_filter_decode_dot(struct data_filter *f, const char *in, size_t len,
		       struct evbuffer *out)
{
	size_t i = 0;

	while (i < len) {
		char c = in[i];

		switch (f->state) {
		case DF_BOL:
			if (c == '.') {
				f->state = DF_DOT;
				i++;
				break;
			}
			/* FALLTHROUGH */
		case DF_BOL_SOFT:
		case DF_MID:
			if (c == '\r') {
				f->state = DF_CR;
				i++;
			} else if (c == '\n') {
				/* bare LF: never a line end we pass on as is */
				f->bare_newlines++;
				emit_crlf(f, out);
				f->state = DF_BOL_SOFT;
				i++;
			} else {
				f->state = DF_MID;
				i = scan_text(f, in, i, len, out);
			}
			break;
		case DF_CR:
			if (c == '\n') {
				emit_crlf(f, out);
				f->state = DF_BOL;
				i++;
			} else {
				/* bare CR: ends the line, softly; c is
				 * processed again at the start of the next */
				f->bare_newlines++;
				emit_crlf(f, out);
				f->state = DF_BOL_SOFT;
			}
			break;
		case DF_DOT:
			if (c == '\r') {
				f->state = DF_DOT_CR;
				i++;
			} else if (c == '\n') {
				/* ".<LF>": a line of one dot ended by a bare
				 * LF is content, never a terminator; keep the
				 * dot (the encoder stuffs it again). */
				emit(f, out, ".", 1);
				f->bare_newlines++;
				emit_crlf(f, out);
				f->state = DF_BOL_SOFT;
				i++;
			} else {
				/* The leading dot was stuffing (RFC 5321
				 * 4.5.2): drop it, go on with the line. */
				f->state = DF_MID;
			}
			break;
		case DF_DOT_CR:
			if (c == '\n') {
				f->state = DF_END;
				return i + 1;
			}
			/* ".<CR>" + something: a one-dot line ended by a
			 * bare CR; content, like ".<LF>" */
			emit(f, out, ".", 1);
			f->bare_newlines++;
			emit_crlf(f, out);
			f->state = DF_BOL_SOFT;
			break;
		case DF_END:
			return i;
		}
	}
	return i;
}

void
data_filter_raw(struct data_filter *f, const char *in, size_t len,
		struct evbuffer *out)
{
	size_t i = 0;

	if (f->binary) {
		emit(f, out, in, len);
		return;
	}
	while (i < len) {
		/* well-formed lines pass in one piece */
		size_t j = data_filter_raw_prefix(f, in + i, len - i);
		char c;

		if (j > 0) {
			evbuffer_add(out, in + i, j);
			i += j;
			continue;
		}
		c = in[i];
		if (f->state == DF_CR) {
			if (c == '\n') {
				emit_crlf(f, out);
				f->state = DF_BOL;
				i++;
			} else {
				f->bare_newlines++;
				emit_crlf(f, out);
				f->state = DF_BOL_SOFT;
			}
			continue;
		}
		if (c == '\r') {
			f->state = DF_CR;
			i++;
		} else if (c == '\n') {
			f->bare_newlines++;
			emit_crlf(f, out);
			f->state = DF_BOL_SOFT;
			i++;
		} else {
			i = raw_lines(f, in, i, len, out);
		}
	}
}

void
data_filter_raw_end(struct data_filter *f, struct evbuffer *out)
{
	if (!f->binary && f->state == DF_CR) {
		f->bare_newlines++;
		emit_crlf(f, out);
		f->state = DF_BOL_SOFT;
	}
}

void
dot_encoder_init(struct dot_encoder *e)
{
	e->bol = 1;
}

void
dot_encode(struct dot_encoder *e, const char *in, size_t len,
	   struct evbuffer *out)
{
	const char *p = in, *q, *end = in + len;

	if (len == 0)
		return;
	/* Only a dot at the start of a line needs a second one, and dots are
	 * rarer than line ends: look for dots, not lines.  One piece up to
	 * each line that starts with a dot. */
	if (e->bol && *p == '.')
		evbuffer_add(out, ".", 1);
	q = p + 1;		/* q[-1] is in in[] from here on */
	while ((q = memchr(q, '.', (size_t)(end - q))) != NULL) {
		if (q[-1] == '\n') {
			evbuffer_add(out, p, (size_t)(q - p));
			evbuffer_add(out, ".", 1);
			p = q;
		}
		q++;
	}
	evbuffer_add(out, p, (size_t)(end - p));
	e->bol = end[-1] == '\n';
}

int
dot_encode_clean(struct dot_encoder *e, const char *in, size_t len)
{
	const char *q, *end = in + len;

	if (len == 0)
		return 1;
	if (e->bol && *in == '.')
		return 0;
	for (q = in + 1; (q = memchr(q, '.', (size_t)(end - q))) != NULL; q++)
		if (q[-1] == '\n')
			return 0;
	e->bol = end[-1] == '\n';
	return 1;
}

void
dot_encode_end(struct dot_encoder *e, struct evbuffer *out)
{
	if (e->bol)
		evbuffer_add(out, ".\r\n", 3);
	else
		evbuffer_add(out, "\r\n.\r\n", 5);
	e->bol = 1;
}
