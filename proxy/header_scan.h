/*
 * header_scan.h - find the Message-ID in a message as it streams past,
 * for the audit trail.  Pure, resumable, bounded: it looks at the header
 * section only (up to the first empty line, RFC 5322 2.1), and at most
 * HEADER_SCAN_MAX octets of it; the body costs nothing.
 *
 * Input is the raw content (dot-stuffing removed, CRLF line ends; a bare LF
 * is taken as a line end too).  The first "Message-ID:" field wins (field
 * names are case-insensitive, RFC 5322 1.2.2; obsolete white space before
 * the colon is accepted, RFC 5322 4.5); folded lines are unfolded, and the
 * value is kept as sent (up to HEADER_SCAN_VALUE_MAX octets), without
 * surrounding white space.  The value is the client's: sanitize before use.
 */
#ifndef MSA_HEADER_SCAN_H
#define MSA_HEADER_SCAN_H

#include <stddef.h>
#include <stdint.h>

#define HEADER_SCAN_MAX (64 * 1024)
#define HEADER_SCAN_VALUE_MAX 998	/* RFC 5322 2.1.1 line limit */

struct header_scan {
	int state;			/* internal */
	unsigned name_pos;		/* octets of "message-id" matched */
	uint64_t seen;			/* header octets looked at */
	int capturing;			/* in the Message-ID field */
	int found;			/* a Message-ID field was seen */
	size_t len;
	char value[HEADER_SCAN_VALUE_MAX + 1];
};

void header_scan_init(struct header_scan *h);

/* Feed the next len octets of content.  Returns 1 once the scan is over
 * (end of the header section, or the limit): further input is ignored. */
int header_scan_feed(struct header_scan *h, const char *p, size_t len);

int header_scan_done(const struct header_scan *h);

/* The Message-ID field's value (NUL-terminated, trimmed), or NULL if none
 * was seen.  For the end of the scan (or of the content): the value is
 * trimmed in place. */
const char *header_scan_message_id(struct header_scan *h);

#endif
