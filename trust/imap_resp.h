/*
 * imap_resp.h - the IMAP response grammar (RFC 3501 7, RFC 9051 7), as far
 * as a client that logs in and fetches needs it: one pure, resumable,
 * bounded parser.
 *
 *   response     = continue-req / response-data / response-tagged
 *   continue-req = "+" [SP text]                  (base64 or resp-text)
 *   status       = ("*" / tag) SP ("OK"/"NO"/"BAD"/"PREAUTH"/"BYE")
 *                  [SP ["[" resp-text-code "]" [SP]] text]
 *   data         = "*" SP "CAPABILITY" *(SP atom)
 *                / "*" SP "URLFETCH" 1*(SP astring SP nstring)  (RFC 4467)
 *                / "*" SP number SP "FETCH" SP "(" att *(SP att) ")"
 *                / "*" SP number SP ("EXISTS" / "RECENT" / "EXPUNGE")
 *                / "*" SP atom *(SP value)   (FLAGS, LIST, ID, ...: skipped)
 *   value        = atom / number / quoted / literal / literal8 / NIL
 *                / "(" [value *([SP] value)] ")"
 *
 * Literals are not buffered.  Where a literal carries content (the data of
 * a URLFETCH pair, a FETCH BODY[...] / BINARY[...] / RFC822* item) the
 * parser stops with IMAP_RESP_DATA and says "a literal of n octets starts
 * here, for this item"; the caller moves the n octets wherever they go
 * (imap_resp_literal_remaining() / imap_resp_literal_consumed(), or by
 * calling imap_resp_parse() which then hands them back as
 * IMAP_RESP_LITERAL_BYTES), and parsing resumes after them.  Every other
 * literal (a mailbox name in LIST, a URL sent as a literal) is short and
 * kept in the line buffer, counted against max_line.
 *
 * Bounds (struct imap_resp_limits): the bytes of one response outside
 * content literals (max_line, default 8192), the size of a content literal
 * or quoted content (max_literal: larger is IMAP_RESP_ERR_TOO_BIG as soon as
 * "{n}" is read, before any of it), the depth of parenthesized lists
 * (max_depth).  NUL outside literals, bare CR or LF, a literal that is not
 * at the end of its line and an unknown status condition are errors.
 * Errors are sticky: after one, the connection is unusable.
 *
 * No I/O, no event loop, no logging: the caller feeds bytes.
 */
#ifndef MSA_IMAP_RESP_H
#define MSA_IMAP_RESP_H

#include <stddef.h>
#include <stdint.h>

#define IMAP_RESP_LINE_DEFAULT	8192
#define IMAP_RESP_DEPTH_DEFAULT	16
#define IMAP_RESP_TAG_MAX	32	/* longer tags are errors: we send short ones */
#define IMAP_RESP_NAME_MAX	32	/* code and data names kept, upper-cased */
#define IMAP_RESP_SECTION_MAX	256	/* FETCH section text kept */

struct imap_resp_limits {
	size_t max_line;		/* 0 = IMAP_RESP_LINE_DEFAULT; minimum 64 */
	uint64_t max_literal;		/* largest content literal; 0 = none allowed */
	unsigned max_depth;		/* 0 = IMAP_RESP_DEPTH_DEFAULT */
};

enum imap_resp_kind {
	IMAP_RESP_UNTAGGED = 1,		/* "* ..." */
	IMAP_RESP_TAGGED,		/* "<tag> OK|NO|BAD ..." */
	IMAP_RESP_CONTINUE,		/* "+ ..." */
};

enum imap_resp_cond {
	IMAP_COND_NONE = 0,		/* not a status response */
	IMAP_COND_OK,
	IMAP_COND_NO,
	IMAP_COND_BAD,
	IMAP_COND_PREAUTH,		/* untagged only (greeting) */
	IMAP_COND_BYE,			/* untagged only */
};

enum imap_resp_data {
	IMAP_DATA_NONE = 0,		/* status or continuation */
	IMAP_DATA_CAPABILITY,
	IMAP_DATA_URLFETCH,
	IMAP_DATA_FETCH,
	IMAP_DATA_EXISTS,
	IMAP_DATA_RECENT,
	IMAP_DATA_EXPUNGE,
	IMAP_DATA_OTHER,		/* any other untagged data: data_name */
};

enum imap_resp_code {
	IMAP_CODE_NONE = 0,		/* no [resp-text-code] */
	IMAP_CODE_CAPABILITY,		/* caps filled in */
	IMAP_CODE_UIDVALIDITY,		/* code_number */
	IMAP_CODE_UIDNEXT,		/* code_number */
	IMAP_CODE_UNSEEN,		/* code_number */
	IMAP_CODE_ALERT,
	IMAP_CODE_READ_ONLY,
	IMAP_CODE_READ_WRITE,
	IMAP_CODE_TRYCREATE,
	IMAP_CODE_AUTHENTICATIONFAILED,	/* RFC 5530 */
	IMAP_CODE_AUTHORIZATIONFAILED,
	IMAP_CODE_UNAVAILABLE,
	IMAP_CODE_NONEXISTENT,
	IMAP_CODE_OTHER,		/* see code_name */
};

/* Capabilities a client acts on (case-insensitive match). */
enum imap_cap {
	IMAP_CAP_IMAP4REV1 = 1u << 0,
	IMAP_CAP_IMAP4REV2 = 1u << 1,
	IMAP_CAP_STARTTLS = 1u << 2,
	IMAP_CAP_LOGINDISABLED = 1u << 3,
	IMAP_CAP_SASL_IR = 1u << 4,		/* RFC 4959 */
	IMAP_CAP_LITERAL_PLUS = 1u << 5,	/* RFC 7888 LITERAL+ */
	IMAP_CAP_LITERAL_MINUS = 1u << 6,	/* RFC 7888 LITERAL- */
	IMAP_CAP_AUTH_PLAIN = 1u << 7,
	IMAP_CAP_AUTH_LOGIN = 1u << 8,
	IMAP_CAP_AUTH_GSSAPI = 1u << 9,
	IMAP_CAP_URLAUTH = 1u << 10,		/* RFC 4467 */
	IMAP_CAP_URLAUTH_BINARY = 1u << 11,	/* RFC 5524 */
	IMAP_CAP_BINARY = 1u << 12,		/* RFC 3516 */
	IMAP_CAP_UIDPLUS = 1u << 13,
	IMAP_CAP_ID = 1u << 14,
	IMAP_CAP_IDLE = 1u << 15,
	IMAP_CAP_ENABLE = 1u << 16,
};

/* One complete response (IMAP_RESP_RESPONSE).  Pointers point into the
 * parser and stay valid until the next imap_resp_parse() call. */
struct imap_resp {
	enum imap_resp_kind kind;
	char tag[IMAP_RESP_TAG_MAX + 1];	/* TAGGED only */
	enum imap_resp_cond cond;
	enum imap_resp_code code;
	char code_name[IMAP_RESP_NAME_MAX + 1];	/* upper-cased; "" if none */
	uint32_t code_number;			/* UIDVALIDITY/UIDNEXT/UNSEEN */
	int has_caps;				/* CAPABILITY data or code seen */
	unsigned caps;				/* enum imap_cap bits */
	enum imap_resp_data data;
	char data_name[IMAP_RESP_NAME_MAX + 1];	/* upper-cased keyword */
	uint32_t number;			/* "* <n> FETCH/EXISTS/..." */
	int has_uid;				/* FETCH: a UID item was seen */
	uint32_t uid;
	unsigned items;				/* content items reported (DATA) */
	/* Status: the text after the code; CONTINUE: everything after "+ ".
	 * Raw server bytes (no CR, LF or NUL): sanitize before logging. */
	const char *text;
	size_t text_len;
};

enum imap_item_kind {
	IMAP_ITEM_URLFETCH = 1,		/* data of one URLFETCH url/nstring pair */
	IMAP_ITEM_FETCH_BODY,		/* BODY[...], BINARY[...], RFC822[.TEXT|.HEADER] */
};

enum imap_item_value {
	IMAP_VALUE_NIL = 1,		/* no content */
	IMAP_VALUE_STRING,		/* quoted content: data/data_len */
	IMAP_VALUE_LITERAL,		/* literal_len octets follow in the input */
};

/* One content item (IMAP_RESP_DATA).  Pointers stay valid until the next
 * imap_resp_parse() call, or for a literal, until it has been consumed. */
struct imap_resp_item {
	enum imap_item_kind kind;
	enum imap_item_value value;
	unsigned index;			/* 0 for the first item of the response */
	/* URLFETCH: the URL as the server wrote it (unquoted) */
	const char *url;
	size_t url_len;
	/* FETCH: message number, the UID if it came before this item */
	uint32_t msgno;
	int has_uid;
	uint32_t uid;
	char name[IMAP_RESP_NAME_MAX + 1];	/* "BODY", "BINARY", "RFC822.TEXT" */
	char section[IMAP_RESP_SECTION_MAX + 1]; /* inside [...], as written */
	int has_origin;			/* "<n>" after the section */
	uint32_t origin;
	/* STRING */
	const char *data;
	size_t data_len;
	/* LITERAL */
	uint64_t literal_len;
	int binary;			/* literal8 "~{n}" */
};

enum imap_resp_event {
	IMAP_RESP_NEED_MORE = 0,	/* everything given was taken: feed more */
	IMAP_RESP_RESPONSE,		/* imap_resp_get(): a whole response */
	IMAP_RESP_DATA,			/* imap_resp_item(): a content item */
	IMAP_RESP_LITERAL_BYTES,	/* data[0..*consumed_r) is literal content */
	IMAP_RESP_ERROR,		/* imap_resp_error(); sticky */
};

enum imap_resp_error {
	IMAP_RESP_ERR_NONE = 0,
	IMAP_RESP_ERR_SYNTAX,		/* not the response grammar */
	IMAP_RESP_ERR_LINE_TOO_LONG,	/* over max_line */
	IMAP_RESP_ERR_TOO_BIG,		/* content literal over max_literal */
	IMAP_RESP_ERR_DEPTH,		/* lists nested deeper than max_depth */
	IMAP_RESP_ERR_NOMEM,
};

struct imap_resp_parser;

struct imap_resp_parser *imap_resp_parser_new(const struct imap_resp_limits *lim);
void imap_resp_parser_free(struct imap_resp_parser **pp);
/* Forget any partial response and a sticky error (e.g. after STARTTLS). */
void imap_resp_parser_reset(struct imap_resp_parser *p);
/* The content literal bound for the next literals (per fetch). */
void imap_resp_set_max_literal(struct imap_resp_parser *p, uint64_t max);

/*
 * Parse data[0..len).  *consumed_r is how many bytes were taken (the caller
 * drops them from its input); bytes not taken must be given again.  Returns
 * at the first event; call again (with the rest) until NEED_MORE.
 *
 * After IMAP_RESP_DATA with a LITERAL value the parser is in a literal:
 * the next imap_resp_literal_remaining() input bytes are content.  Either
 * move them yourself and report them with imap_resp_literal_consumed(), or
 * keep calling imap_resp_parse(): it returns IMAP_RESP_LITERAL_BYTES with
 * the content being data[0..*consumed_r).
 */
enum imap_resp_event imap_resp_parse(struct imap_resp_parser *p,
				     const void *data, size_t len,
				     size_t *consumed_r);

const struct imap_resp *imap_resp_get(const struct imap_resp_parser *p);
const struct imap_resp_item *imap_resp_item(const struct imap_resp_parser *p);

uint64_t imap_resp_literal_remaining(const struct imap_resp_parser *p);
/* n <= imap_resp_literal_remaining() content bytes were taken. */
void imap_resp_literal_consumed(struct imap_resp_parser *p, uint64_t n);

/* 1 between responses (nothing of a response read yet, not in a literal):
 * a connection can be reused only then. */
int imap_resp_idle(const struct imap_resp_parser *p);

enum imap_resp_error imap_resp_error(const struct imap_resp_parser *p);
/* A static text for the log (never quotes the input). */
const char *imap_resp_strerror(enum imap_resp_error e);

#endif
