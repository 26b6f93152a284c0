/*
 * fuzz_imap_resp.c - libFuzzer target for the IMAP response parser
 * (trust/imap_resp.c).
 *
 *   tests/fuzz/build.sh && tests/fuzz/run.sh 60
 * or by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
 *       -Itrust trust/imap_resp.c tests/fuzz/fuzz_imap_resp.c \
 *       -o fuzz_imap_resp
 *   ./fuzz_imap_resp -dict=tests/fuzz/imap_resp.dict tests/fuzz/corpus/imap_resp
 *
 * Input: two bytes choosing where the stream is cut in two, one byte
 * choosing the limits (line length 64..1024, content literal 0..1 MB), then
 * the server's bytes.  Invariants:
 *   - consumed <= given; NEED_MORE takes everything given; LITERAL_BYTES
 *     only while in a content literal and never more than it has left;
 *   - a content item never exceeds max_literal; strings and tags are
 *     terminated within their arrays; text lies inside the line;
 *   - errors are sticky;
 *   - the events (a hash of their description, literal content included)
 *     are the same whether the stream comes whole, cut in two, or byte by
 *     byte, and whether literal content is taken through imap_resp_parse()
 *     or imap_resp_literal_consumed().
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap_resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define TERMINATED(f)	(memchr((f), '\0', sizeof(f)) != NULL)

struct h {
	uint64_t v;
	int error;
	uint64_t lit_pending;
};

static void
mix(struct h *h, const void *p, size_t n)
{
	const unsigned char *b = p;
	size_t i;

	for (i = 0; i < n; i++) {
		h->v ^= b[i];
		h->v *= 1099511628211ULL;
	}
}

static void
mix_u(struct h *h, uint64_t x)
{
	mix(h, &x, sizeof(x));
}

static void
check_resp(struct h *h, const struct imap_resp *r, size_t max_line)
{
	if (r->kind < IMAP_RESP_UNTAGGED || r->kind > IMAP_RESP_CONTINUE)
		abort();
	if (!TERMINATED(r->tag) || !TERMINATED(r->code_name) ||
	    !TERMINATED(r->data_name))
		abort();
	if (r->kind == IMAP_RESP_TAGGED && (r->tag[0] == '\0' ||
	    (r->cond != IMAP_COND_OK && r->cond != IMAP_COND_NO &&
	    r->cond != IMAP_COND_BAD)))
		abort();
	if (r->text_len > max_line || (r->text == NULL && r->text_len != 0))
		abort();
	if (r->text != NULL && (memchr(r->text, '\0', r->text_len) != NULL ||
	    memchr(r->text, '\n', r->text_len) != NULL))
		abort();
	mix_u(h, 0x52);
	mix_u(h, r->kind);
	mix(h, r->tag, strlen(r->tag));
	mix_u(h, r->cond);
	mix_u(h, r->code);
	mix(h, r->code_name, strlen(r->code_name));
	mix_u(h, r->code_number);
	mix_u(h, r->has_caps);
	mix_u(h, r->caps);
	mix_u(h, r->data);
	mix(h, r->data_name, strlen(r->data_name));
	mix_u(h, r->number);
	mix_u(h, r->has_uid);
	mix_u(h, r->uid);
	mix_u(h, r->items);
	if (r->text != NULL)
		mix(h, r->text, r->text_len);
}

static void
check_item(struct h *h, const struct imap_resp_item *it, uint64_t max_literal)
{
	if (!TERMINATED(it->name) || !TERMINATED(it->section))
		abort();
	mix_u(h, 0x44);
	mix_u(h, it->kind);
	mix_u(h, it->value);
	mix_u(h, it->index);
	switch (it->kind) {
	case IMAP_ITEM_URLFETCH:
		if (it->url == NULL)
			abort();
		mix(h, it->url, it->url_len);
		break;
	case IMAP_ITEM_FETCH_BODY:
		mix_u(h, it->msgno);
		mix_u(h, it->has_uid);
		mix_u(h, it->uid);
		mix(h, it->name, strlen(it->name));
		mix(h, it->section, strlen(it->section));
		mix_u(h, it->has_origin);
		mix_u(h, it->origin);
		break;
	default:
		abort();
	}
	switch (it->value) {
	case IMAP_VALUE_NIL:
		break;
	case IMAP_VALUE_STRING:
		if (it->data_len > max_literal)
			abort();
		mix(h, it->data, it->data_len);
		break;
	case IMAP_VALUE_LITERAL:
		if (it->literal_len > max_literal)
			abort();
		mix_u(h, it->literal_len);
		mix_u(h, it->binary);
		h->lit_pending = it->literal_len;
		break;
	default:
		abort();
	}
}

static void
feed(struct imap_resp_parser *p, struct h *h, const uint8_t *d, size_t len,
     int consume_mode, const struct imap_resp_limits *lim)
{
	size_t off = 0;

	while (!h->error) {
		size_t used = 0;
		enum imap_resp_event ev;
		uint64_t rem = imap_resp_literal_remaining(p);

		if (rem != h->lit_pending)
			abort();
		if (consume_mode && rem > 0) {
			uint64_t n = rem;

			if (off == len)
				return;
			if (n > len - off)
				n = len - off;
			mix(h, d + off, (size_t)n);
			imap_resp_literal_consumed(p, n);
			h->lit_pending -= n;
			off += (size_t)n;
			continue;
		}
		ev = imap_resp_parse(p, d + off, len - off, &used);
		if (used > len - off)
			abort();
		switch (ev) {
		case IMAP_RESP_NEED_MORE:
			if (used != len - off)
				abort();
			return;
		case IMAP_RESP_RESPONSE:
			if (h->lit_pending != 0 || !imap_resp_idle(p))
				abort();
			check_resp(h, imap_resp_get(p), lim->max_line);
			break;
		case IMAP_RESP_DATA:
			check_item(h, imap_resp_item(p), lim->max_literal);
			break;
		case IMAP_RESP_LITERAL_BYTES:
			if (used == 0 || used > h->lit_pending)
				abort();
			mix(h, d + off, used);
			h->lit_pending -= used;
			break;
		case IMAP_RESP_ERROR:
			if (imap_resp_error(p) == IMAP_RESP_ERR_NONE ||
			    imap_resp_strerror(imap_resp_error(p)) == NULL)
				abort();
			mix_u(h, 0x45);
			mix_u(h, imap_resp_error(p));
			h->error = 1;
			if (imap_resp_parse(p, "x", 1, &used) != IMAP_RESP_ERROR)
				abort();
			return;
		default:
			abort();
		}
		off += used;
	}
}

static uint64_t
run(const uint8_t *d, size_t len, size_t cut, int bytewise, int consume_mode,
    const struct imap_resp_limits *lim)
{
	struct imap_resp_parser *p = imap_resp_parser_new(lim);
	struct h h = { 14695981039346656037ULL, 0, 0 };
	size_t i;

	if (p == NULL)
		abort();
	if (bytewise) {
		for (i = 0; i < len; i++)
			feed(p, &h, d + i, 1, consume_mode, lim);
	} else {
		feed(p, &h, d, cut, consume_mode, lim);
		feed(p, &h, d + cut, len - cut, consume_mode, lim);
	}
	mix_u(&h, imap_resp_idle(p));
	imap_resp_parser_free(&p);
	return h.v;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imap_resp_limits lim;
	uint64_t whole;
	size_t cut;

	if (size < 3)
		return 0;
	cut = ((size_t)data[0] << 8) | data[1];
	lim.max_line = 64 + (size_t)(data[2] & 0x0f) * 64;
	lim.max_literal = (data[2] & 0xf0) == 0xf0 ? 0 :
	    (uint64_t)1 << ((data[2] >> 4) + 4);
	lim.max_depth = 1 + (data[2] & 7);
	data += 3;
	size -= 3;
	if (size > 4096)
		return 0;	/* three runs, one of them byte by byte: keep them quick */
	cut = size ? cut % (size + 1) : 0;

	whole = run(data, size, size, 0, 0, &lim);
	if (run(data, size, cut, 0, 0, &lim) != whole ||
	    run(data, size, cut, 0, 1, &lim) != whole ||
	    run(data, size, 0, 1, cut & 1, &lim) != whole)
		abort();
	return 0;
}
