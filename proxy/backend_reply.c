/*
 * backend_reply.c - see backend_reply.h.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "backend_reply.h"

void
backend_reply_reset(struct backend_reply *r)
{
	r->code = 0;
	r->line_count = 0;
	r->lines_seen = 0;
	r->text_len = 0;
	r->text[0] = '\0';
}

enum backend_reply_status
backend_reply_feed(struct backend_reply *r, const char *line, size_t len)
{
	int code, last;
	size_t i;

	if (len < 3 || !isdigit((unsigned char)line[0]) ||
	    !isdigit((unsigned char)line[1]) ||
	    !isdigit((unsigned char)line[2]))
		return BACKEND_REPLY_BAD;
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (code < 200 || code > 599) {
		/* 1xx does not occur in SMTP; 3xx is valid (354). */
		if (code < 300 || code > 399)
			return BACKEND_REPLY_BAD;
	}
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return BACKEND_REPLY_BAD;
	if (r->lines_seen > 0 && code != r->code)
		return BACKEND_REPLY_BAD;
	r->code = code;
	last = (len == 3 || line[3] == ' ');
	r->lines_seen++;
	/* Keep a line only if its '\n' separator fits, or the line count
	 * would not match the text and backend_reply_line() would fail. */
	if (r->line_count < SMTP_REPLY_MAX_LINES &&
	    (r->line_count == 0 || r->text_len + 1 < sizeof(r->text))) {
		size_t avail = sizeof(r->text) - r->text_len - 1;
		size_t tlen = len > 4 ? len - 4 : 0;

		if (r->line_count > 0 && avail > 0) {
			r->text[r->text_len++] = '\n';
			avail--;
		}
		if (tlen > avail)
			tlen = avail;
		for (i = 0; i < tlen; i++) {
			unsigned char c = (unsigned char)line[4 + i];
			r->text[r->text_len++] = (c >= 32 && c < 127) ? (char)c : '?';
		}
		r->text[r->text_len] = '\0';
		r->line_count++;
	}
	return last ? BACKEND_REPLY_DONE : BACKEND_REPLY_MORE;
}

const char *
backend_reply_line(const struct backend_reply *r, unsigned i, size_t *len_r)
{
	const char *p = r->text, *end = r->text + r->text_len, *nl;

	if (i >= r->line_count)
		return NULL;
	while (i-- > 0) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			return NULL;
		p = nl + 1;
	}
	nl = memchr(p, '\n', (size_t)(end - p));
	*len_r = nl ? (size_t)(nl - p) : (size_t)(end - p);
	return p;
}

enum smtp_reply_id
backend_reply_map(const struct backend_reply *r, enum backend_expect expect)
{
	int cls = r->code / 100;

	if (expect == BE_EXPECT_ETRN) {
		switch (r->code) {
		case 250: case 251: case 252: case 253: case 458: case 459:
			return R_REPLY_COUNT;
		case 421:
			return R_ETRN_LOST;
		default:
			return R_ETRN_BACKEND_REFUSED;
		}
	}
	if (r->code == 421)
		return R_BACKEND_LOST;
	if (r->code == 530 || r->code == 535 || r->code == 538)
		return R_BACKEND_CONFIG;
	if (cls == 3 && expect != BE_EXPECT_DATA)
		return R_BACKEND_GARBAGE;
	if (expect == BE_EXPECT_DATA && cls == 2)
		return R_BACKEND_GARBAGE;
	return R_REPLY_COUNT;
}

static const char *
default_enhanced(int code, enum backend_expect expect)
{
	switch (code / 100) {
	case 2:
		switch (expect) {
		case BE_EXPECT_MAIL: return "2.1.0";
		case BE_EXPECT_RCPT: return "2.1.5";
		default: return "2.0.0";
		}
	case 4:
		/* ETRN: 459 "Node not allowed" is a policy refusal (RFC 3463
		 * X.7.1); 458 "Unable to queue" a mail system condition (X.3.0) */
		if (expect == BE_EXPECT_ETRN)
			return code == 459 ? "4.7.1" : "4.3.0";
		return "4.0.0";
	case 5:
		switch (expect) {
		case BE_EXPECT_RCPT: return "5.1.1";
		default: return "5.0.0";
		}
	default:
		return NULL;	/* 3xx (354) carries none (RFC 2034 3) */
	}
}

void
backend_reply_relay(const struct backend_reply *r, enum backend_expect expect,
		    struct evbuffer *out)
{
	const char *enh = default_enhanced(r->code, expect);
	unsigned i;

	if (r->line_count == 0) {
		evbuffer_add_printf(out, "%03d%s%s\r\n", r->code,
		    enh ? " " : "", enh ? enh : "");
		return;
	}
	for (i = 0; i < r->line_count; i++) {
		size_t len;
		const char *line = backend_reply_line(r, i, &len);
		char sep = i + 1 < r->line_count ? '-' : ' ';
		char first[16];
		int has_enh;

		/* Does the line start with a well-formed enhanced code of the
		 * reply's class?  (RFC 3463: the class digit equals the reply's.) */
		snprintf(first, sizeof(first), "%.*s", (int)(len < 15 ? len : 15), line);
		has_enh = line[0] == '0' + r->code / 100 &&
		    smtp_enhanced_code_len(first) > 0;
		/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets
		 * with its CRLF: code, separator, enhanced code, text. */
		if (has_enh || enh == NULL) {
			if (len > SMTP_REPLY_LINE_MAX - 6)
				len = SMTP_REPLY_LINE_MAX - 6;
			evbuffer_add_printf(out, "%03d%c%.*s\r\n", r->code, sep,
			    (int)len, line);
		} else {
			size_t max = SMTP_REPLY_LINE_MAX - 6 - strlen(enh) - 1;

			if (len > max)
				len = max;
			evbuffer_add_printf(out, "%03d%c%s%s%.*s\r\n", r->code,
			    sep, enh, len ? " " : "", (int)len, line);
		}
	}
}

int
backend_reply_queue_id(const struct backend_reply *r, char *id, size_t idsize)
{
	const char *p = strstr(r->text, "queued as ");
	size_t n = 0;

	if (p == NULL || idsize == 0)
		return 0;
	p += strlen("queued as ");
	while (n + 1 < idsize && (isalnum((unsigned char)p[n]) || p[n] == '.' ||
	    p[n] == '-' || p[n] == '_'))
		n++;
	memcpy(id, p, n);
	id[n] = '\0';
	return n > 0;
}
