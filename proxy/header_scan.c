/*
 * header_scan.c - see header_scan.h.
 */
#include <string.h>

#include "header_scan.h"

enum hs_state {
	HS_BOL,		/* at the start of a line */
	HS_CR_BOL,	/* a CR at the start of a line: the empty line? */
	HS_NAME,	/* in a field name that may still be Message-ID */
	HS_NAME_WSP,	/* "Message-ID" then white space, before ':' */
	HS_SKIP,	/* in a line we do not keep */
	HS_VALUE,	/* in the Message-ID value */
	HS_DONE,
};

static const char want[] = "message-id";

void
header_scan_init(struct header_scan *h)
{
	memset(h, 0, sizeof(*h));
	h->state = HS_BOL;
}

static void
keep(struct header_scan *h, char c)
{
	if (h->len < HEADER_SCAN_VALUE_MAX)
		h->value[h->len++] = c;
}

int
header_scan_feed(struct header_scan *h, const char *p, size_t len)
{
	size_t i;

	if (h->state == HS_DONE)
		return 1;
	for (i = 0; i < len; i++) {
		char c = p[i], lc = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;

		if (++h->seen > HEADER_SCAN_MAX) {
			h->state = HS_DONE;
			break;
		}
		switch (h->state) {
		case HS_CR_BOL:
			if (c == '\n') {
				h->state = HS_DONE;	/* the empty line */
				break;
			}
			h->state = HS_SKIP;	/* a bare CR: not a field */
			break;
		case HS_BOL:
			if (c == ' ' || c == '\t') {
				/* a folded line continues the field */
				if (h->capturing) {
					if (h->len > 0)
						keep(h, ' ');
					h->state = HS_VALUE;
				} else {
					h->state = HS_SKIP;
				}
				break;
			}
			if (h->capturing) {
				h->capturing = 0;	/* the field ended */
				h->found = 1;
			}
			if (c == '\r') {
				h->state = HS_CR_BOL;
				break;
			}
			if (c == '\n') {
				h->state = HS_DONE;
				break;
			}
			h->name_pos = 0;
			h->state = HS_NAME;
			/* FALLTHROUGH */
		case HS_NAME:
			if (h->name_pos < sizeof(want) - 1 &&
			    lc == want[h->name_pos]) {
				h->name_pos++;
				break;
			}
			if (h->name_pos == sizeof(want) - 1 &&
			    (c == ' ' || c == '\t')) {
				h->state = HS_NAME_WSP;
				break;
			}
			if (h->name_pos == sizeof(want) - 1 && c == ':' &&
			    !h->found) {
				h->capturing = 1;
				h->len = 0;
				h->state = HS_VALUE;
				break;
			}
			h->state = c == '\n' ? HS_BOL : HS_SKIP;
			break;
		case HS_NAME_WSP:
			if (c == ' ' || c == '\t')
				break;
			if (c == ':' && !h->found) {
				h->capturing = 1;
				h->len = 0;
				h->state = HS_VALUE;
				break;
			}
			h->state = c == '\n' ? HS_BOL : HS_SKIP;
			break;
		case HS_SKIP:
			if (c == '\n')
				h->state = HS_BOL;
			break;
		case HS_VALUE:
			if (c == '\n')
				h->state = HS_BOL;
			else if (c != '\r' && !(h->len == 0 &&
			    (c == ' ' || c == '\t')))
				keep(h, c);	/* (leading blanks: not kept) */
			break;
		default:
			break;
		}
		if (h->state == HS_DONE)
			break;
	}
	if (h->state == HS_DONE && h->capturing) {
		h->capturing = 0;
		h->found = 1;
	}
	return h->state == HS_DONE;
}

int
header_scan_done(const struct header_scan *h)
{
	return h->state == HS_DONE;
}

const char *
header_scan_message_id(struct header_scan *h)
{
	struct header_scan *m = h;
	size_t a = 0, b = h->len;

	if (!h->found && !h->capturing)
		return NULL;
	/* trim surrounding white space in place (the value is ours) */
	while (a < b && (m->value[a] == ' ' || m->value[a] == '\t'))
		a++;
	while (b > a && (m->value[b - 1] == ' ' || m->value[b - 1] == '\t'))
		b--;
	if (a > 0)
		memmove(m->value, m->value + a, b - a);
	m->len = b - a;
	m->value[m->len] = '\0';
	return m->value;
}
