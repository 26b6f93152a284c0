/*
 * backend_reply.h - replies from the backend MTA: parsing (RFC 5321 4.2),
 * bounding, sanitizing, and the one place that decides which backend
 * replies reach the client as they are and which are replaced.
 *
 * The backend is trusted to deliver mail, not to write on our client's
 * screen: its text is stripped of anything unprintable, cut to
 * BACKEND_REPLY_TEXT_MAX bytes, and each relayed line carries an enhanced
 * status code (the backend's own, or one we derive from the context).
 */
#ifndef MSA_BACKEND_REPLY_H
#define MSA_BACKEND_REPLY_H

#include <stddef.h>
#include <event2/buffer.h>

#include "smtp_reply.h"

#define BACKEND_REPLY_TEXT_MAX 1024
/* Longest line we read from the backend before calling it garbage. */
#define BACKEND_LINE_MAX 2048

struct backend_reply {
	int code;			/* 200..599 */
	unsigned line_count;		/* lines kept */
	unsigned lines_seen;		/* lines received */
	size_t text_len;
	/* Lines without their "ddd-" prefix, joined by '\n', sanitized. */
	char text[BACKEND_REPLY_TEXT_MAX];
};

enum backend_reply_status {
	BACKEND_REPLY_MORE = 0,		/* a continuation line: feed the next */
	BACKEND_REPLY_DONE = 1,		/* the reply is complete */
	BACKEND_REPLY_BAD = -1,		/* malformed: the connection is unusable */
};

void backend_reply_reset(struct backend_reply *r);

/* Feed one line (without CRLF). */
enum backend_reply_status backend_reply_feed(struct backend_reply *r,
					     const char *line, size_t len);

/* Line i of the text (pointer into r->text, not NUL-terminated) and its
 * length; NULL past the end. */
const char *backend_reply_line(const struct backend_reply *r, unsigned i,
			       size_t *len_r);

/*
 * What a command expects back, for the default enhanced code and for the
 * replacement rules below.
 */
enum backend_expect {
	BE_EXPECT_GREETING, BE_EXPECT_EHLO, BE_EXPECT_MAIL, BE_EXPECT_RCPT,
	BE_EXPECT_DATA, BE_EXPECT_DATA_END, BE_EXPECT_BDAT, BE_EXPECT_RSET,
	BE_EXPECT_OTHER,
	BE_EXPECT_ETRN,
};

/*
 * Decide what the client sees.  Returns R_REPLY_COUNT when the reply is to be
 * relayed (backend_reply_relay), or the id of a reply of ours to send
 * instead:
 *   421 from the backend (it is closing)  -> 451 4.4.2, the backend
 *                                            connection is dropped
 *   530/535/538 (it wants AUTH from us)   -> 451 4.3.5 (our configuration)
 *   a 1xx, 3xx where not expected, 2xx to DATA -> 451 4.4.2 (protocol error)
 *
 * ETRN (RFC 1985 5.1) has a closed set of replies: 250, 251, 252, 253, 458
 * and 459 are relayed (each line with an enhanced code: 2.0.0, or 4.3.0
 * for 458 and 4.7.1 for 459 when the backend sent none, as Postfix does
 * not); anything else is replaced, by ids that take the ETRN argument as
 * their %s:
 *   421                                   -> 458 4.4.2 (R_ETRN_LOST)
 *   any other (502: no ETRN there; 530...) -> 458 4.3.5 (R_ETRN_BACKEND_REFUSED)
 */
enum smtp_reply_id backend_reply_map(const struct backend_reply *r,
				     enum backend_expect expect);

/* Append the reply to out with each line prefixed by the code and an
 * enhanced code (the backend's, or the default for `expect`). */
void backend_reply_relay(const struct backend_reply *r,
			 enum backend_expect expect, struct evbuffer *out);

/* The queue id from a final "250 2.0.0 Ok: queued as ABC123" (Postfix) or
 * "... queued as ABC123" (others), copied to id (NUL-terminated). 1 if found. */
int backend_reply_queue_id(const struct backend_reply *r, char *id,
			   size_t idsize);

#endif
