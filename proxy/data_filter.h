/*
 * data_filter.h - message content between client and backend.
 *
 * Content passes through two pure, streaming stages:
 *
 *   client DATA (dot-stuffed) --decode--> raw content --encode--> backend DATA
 *   client BDAT (raw)         --check --> raw content -----------> backend BDAT
 *
 * Raw content is what the message is: no dot-stuffing, and (unless the
 * transaction is BODY=BINARYMIME) every line ends in CRLF.
 *
 * SMTP smuggling (CVE-2023-51766 class) cannot pass: only CRLF "." CRLF ends
 * DATA (RFC 5321 4.1.1.4); a bare CR or LF is never passed on as such but
 * turned into CRLF and flagged, and the line after it is never taken as a
 * terminator; everything sent to a DATA backend is dot-stuffed again by the
 * encoder, so the backend can only see the end of data where we put it.
 * With bare_newline = reject the flag makes the session refuse the message.
 *
 * Memory: the filters hold a few bytes of state; output goes to the caller's
 * evbuffer.
 */
#ifndef MSA_DATA_FILTER_H
#define MSA_DATA_FILTER_H

#include <stddef.h>
#include <stdint.h>
#include <event2/buffer.h>

enum data_filter_state {
	DF_BOL,		/* at the start of a line (after CRLF) */
	DF_BOL_SOFT,	/* after a bare CR/LF we normalized: no terminator here */
	DF_MID,		/* inside a line */
	DF_CR,		/* after CR inside a line */
	DF_DOT,		/* DATA: "." at the start of a line */
	DF_DOT_CR,	/* DATA: ".\r" at the start of a line */
	DF_END,		/* DATA: the terminator was seen */
};

struct data_filter {
	enum data_filter_state state;
	int binary;			/* BINARYMIME: bytes pass untouched */
	uint64_t line_len;		/* octets in the current line */
	uint64_t max_line_len;		/* 0 = no limit */
	uint64_t out_bytes;		/* raw content produced so far */
	unsigned bare_newlines;		/* bare CR or LF seen (normalized) */
	int line_too_long;		/* some line exceeded max_line_len */
};

void data_filter_init(struct data_filter *f, uint64_t max_line_len, int binary);

/*
 * DATA: decode dot-stuffed input in[0..len) into raw content appended to out.
 * Returns the number of input bytes consumed: all of them, or fewer if the
 * terminator CRLF.CRLF ended inside in (then f->state == DF_END and the bytes
 * after the terminator are the client's next command).
 */
size_t data_filter_decode_dot(struct data_filter *f, const char *in,
			      size_t len, struct evbuffer *out);

/* BDAT: check and normalize raw input, appending it to out. */
void data_filter_raw(struct data_filter *f, const char *in, size_t len,
		     struct evbuffer *out);

/*
 * BDAT: the longest prefix of in[0..len) that data_filter_raw() would pass
 * on unchanged (well-formed lines, perhaps the start of a last one, never a
 * CR at the end), counted as data_filter_raw() counts it.  The caller
 * passes those octets on itself (e.g. by moving an evbuffer chain instead
 * of copying it) and gives data_filter_raw() the rest.  Returns its length.
 */
size_t data_filter_raw_prefix(struct data_filter *f, const char *in,
			      size_t len);

/* BDAT LAST: finish (a CR left pending at the end is a bare CR). */
void data_filter_raw_end(struct data_filter *f, struct evbuffer *out);

/* Encoder of raw content to dot-stuffed DATA for the backend. */
struct dot_encoder {
	int bol;			/* next byte starts a line */
};

void dot_encoder_init(struct dot_encoder *e);
void dot_encode(struct dot_encoder *e, const char *in, size_t len,
		struct evbuffer *out);
/*
 * 1 if in[0..len) needs no dot-stuffing: then e is where dot_encode() would
 * leave it and the caller passes in on as it is (e.g. by moving an
 * evbuffer chain).  0 if it does: e is unchanged, use dot_encode().
 */
int dot_encode_clean(struct dot_encoder *e, const char *in, size_t len);
/* The end of data: CRLF if the content did not end with one, then ".\r\n". */
void dot_encode_end(struct dot_encoder *e, struct evbuffer *out);

#endif
