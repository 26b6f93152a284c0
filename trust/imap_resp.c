/*
 * imap_resp.c - see imap_resp.h.
 *
 * Two layers.  The line layer copies bytes into a bounded buffer up to the
 * next CRLF: one "segment".  A segment that ends in "{n}" announces a
 * literal: a content literal is left to the caller (P_DATA_LIT) and the
 * buffer starts afresh after it; any other literal is appended to the
 * buffer (P_INLINE_LIT) and the line goes on after it.  The grammar layer
 * takes tokens from the segment, one state per position in the response
 * (enum gstate), so it can stop at any event and resume there, even in the
 * middle of a FETCH list after a literal.  Text (resp-text, continuation
 * data) is read as a whole, never tokenized.
 */

#include <stdlib.h>
#include <string.h>

#include "imap_resp.h"

enum pstate {
	P_LINE,			/* copying a segment / parsing it */
	P_INLINE_LIT,		/* copying a short literal into the buffer */
	P_DATA_LIT,		/* a content literal: the caller's bytes */
	P_ERROR,
};

enum gstate {
	G_BEGIN,		/* nothing parsed yet */
	G_UNTAGGED_NUM,		/* "* <n>": the keyword follows */
	G_EOL,			/* only the end of the line may follow */
	G_FETCH_OPEN,		/* "(" of the FETCH list */
	G_FETCH_NAME,		/* an att name or ")" */
	G_FETCH_VALUE,		/* the att's value */
	G_FETCH_SKIP,		/* inside a list in some att's value */
	G_FETCH_END,		/* after the FETCH list */
	G_URL,			/* URLFETCH: a URL or the end */
	G_URL_DATA,		/* URLFETCH: its nstring */
	G_GENERIC,		/* other data: values up to the end */
};

enum att {
	ATT_OTHER,
	ATT_UID,
	ATT_DATA,
};

enum tok {
	T_EOL,
	T_LPAREN,
	T_RPAREN,
	T_ATOM,
	T_QUOTED,
	T_LITERAL,		/* "{n}" at the end of the segment */
	T_STRING,		/* the content of a short literal */
	T_ERR,
};

struct token {
	enum tok t;
	char *s;
	size_t len;
	uint64_t n;
	int binary;
};

enum step {
	STEP_EVENT,		/* *ev is set */
	STEP_CONTINUE,		/* keep parsing */
	STEP_NEED_LINE,		/* the segment is used up: read on */
};

struct imap_resp_parser {
	size_t max_line;
	uint64_t max_literal;
	unsigned max_depth;

	enum pstate pstate;
	enum imap_resp_error err;

	char *buf;		/* the response's bytes outside content literals */
	size_t len, cap;
	size_t seg_start;	/* where the segment being copied starts */
	int seg_ready;		/* buf[..end] + CRLF is a complete segment */
	size_t pos, end;	/* grammar position; the segment's CR */

	int inline_pending;	/* a short literal is being read */
	int inline_ready;	/* the next token is the short literal */
	size_t inline_off;
	uint64_t inline_len, inline_left;

	uint64_t lit_left;	/* P_DATA_LIT */

	int response_done;	/* start afresh at the next call */
	int buf_reset;		/* drop the buffer before the next segment */

	enum gstate g;
	unsigned depth;
	enum att att;
	size_t url_off, url_len;

	struct imap_resp resp;
	struct imap_resp_item item;
};

/* ---- small helpers (ASCII only, no locale) ---- */

static char
upper(char c)
{
	return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

static int
eq_ci(const char *s, size_t len, const char *word)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (word[i] == '\0' || upper(s[i]) != upper(word[i]))
			return 0;
	return word[len] == '\0';
}

/* Upper-cased copy, cut to fit. */
static void
copy_name(char *dst, size_t dstsize, const char *s, size_t len)
{
	size_t i;

	if (len >= dstsize)
		len = dstsize - 1;
	for (i = 0; i < len; i++)
		dst[i] = upper(s[i]);
	dst[len] = '\0';
}

/* number = 1*DIGIT fitting 32 bits. */
static int
parse_u32(const char *s, size_t len, uint32_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0 || len > 10)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int
parse_nz32(const char *s, size_t len, uint32_t *out)
{
	return parse_u32(s, len, out) < 0 || *out == 0 ? -1 : 0;
}

static const struct {
	const char *name;
	unsigned bit;
} cap_names[] = {
	{ "IMAP4REV1", IMAP_CAP_IMAP4REV1 },
	{ "IMAP4REV2", IMAP_CAP_IMAP4REV2 },
	{ "STARTTLS", IMAP_CAP_STARTTLS },
	{ "LOGINDISABLED", IMAP_CAP_LOGINDISABLED },
	{ "SASL-IR", IMAP_CAP_SASL_IR },
	{ "LITERAL+", IMAP_CAP_LITERAL_PLUS },
	{ "LITERAL-", IMAP_CAP_LITERAL_MINUS },
	{ "AUTH=PLAIN", IMAP_CAP_AUTH_PLAIN },
	{ "AUTH=LOGIN", IMAP_CAP_AUTH_LOGIN },
	{ "AUTH=GSSAPI", IMAP_CAP_AUTH_GSSAPI },
	{ "URLAUTH", IMAP_CAP_URLAUTH },
	{ "URLAUTH=BINARY", IMAP_CAP_URLAUTH_BINARY },
	{ "BINARY", IMAP_CAP_BINARY },
	{ "UIDPLUS", IMAP_CAP_UIDPLUS },
	{ "ID", IMAP_CAP_ID },
	{ "IDLE", IMAP_CAP_IDLE },
	{ "ENABLE", IMAP_CAP_ENABLE },
};

/* A space-separated capability list (capability-data or the code's). */
static void
parse_caps(struct imap_resp *r, const char *s, size_t len)
{
	size_t i = 0, j, k;

	r->has_caps = 1;
	r->caps = 0;
	while (i < len) {
		while (i < len && s[i] == ' ')
			i++;
		for (j = i; j < len && s[j] != ' '; j++)
			;
		for (k = 0; k < sizeof(cap_names) / sizeof(cap_names[0]); k++)
			if (eq_ci(s + i, j - i, cap_names[k].name))
				r->caps |= cap_names[k].bit;
		i = j;
	}
}

static enum imap_resp_event
fail(struct imap_resp_parser *p, enum imap_resp_error e)
{
	p->pstate = P_ERROR;
	p->err = e;
	return IMAP_RESP_ERROR;
}

/* ---- tokens ---- */

/* An atom may hold a bracketed part with spaces and parentheses inside
 * ("BODY[HEADER.FIELDS (SUBJECT)]<0>", "imap://[::1]/..."). */
static int
atom_char(unsigned char c)
{
	return c > ' ' && c != 0x7f && c != '(' && c != ')' && c != '"' &&
	    c != '{';
}

/* s[0] is "[": the index of the "]" that closes it (one inside a quoted
 * string does not), or len. */
static size_t
bracket_end(const char *s, size_t len)
{
	size_t i;
	int q = 0;

	for (i = 1; i < len && (q || s[i] != ']'); i++) {
		if (q && s[i] == '\\' && i + 1 < len)
			i++;
		else if (s[i] == '"')
			q = !q;
	}
	return i;
}

static void
lex(struct imap_resp_parser *p, struct token *tk)
{
	char *b = p->buf;
	size_t i;

	memset(tk, 0, sizeof(*tk));
	if (p->inline_ready) {
		p->inline_ready = 0;
		tk->t = T_STRING;
		tk->s = b + p->inline_off;
		tk->len = (size_t)p->inline_len;
		p->pos = p->inline_off + (size_t)p->inline_len;
		return;
	}
	/* Values are separated by one SP; lists may follow each other
	 * without one (body-type-mpart).  Extra spaces are tolerated. */
	while (p->pos < p->end && b[p->pos] == ' ')
		p->pos++;
	i = p->pos;
	if (i == p->end) {
		tk->t = T_EOL;
		return;
	}
	switch (b[i]) {
	case '(':
		tk->t = T_LPAREN;
		p->pos++;
		return;
	case ')':
		tk->t = T_RPAREN;
		p->pos++;
		return;
	case '"': {
		size_t w = i + 1, r = i + 1;

		/* quoted = DQUOTE *QUOTED-CHAR DQUOTE; unescaped in place */
		for (;;) {
			if (r >= p->end) {
				tk->t = T_ERR;
				return;
			}
			if (b[r] == '"')
				break;
			if (b[r] == '\\') {
				if (r + 1 >= p->end ||
				    (b[r + 1] != '"' && b[r + 1] != '\\')) {
					tk->t = T_ERR;
					return;
				}
				r++;
			}
			b[w++] = b[r++];
		}
		tk->t = T_QUOTED;
		tk->s = b + i + 1;
		tk->len = w - (i + 1);
		p->pos = r + 1;
		return;
	}
	case '~':
		if (i + 1 < p->end && b[i + 1] == '{') {
			tk->binary = 1;
			i++;
		}
		break;
	default:
		break;
	}
	if (b[i] == '{') {
		uint64_t n = 0;
		size_t digits = 0;

		/* literal = "{" number64 "}" CRLF: the CRLF must follow */
		for (i++; i < p->end && b[i] >= '0' && b[i] <= '9'; i++) {
			uint64_t digit = (uint64_t)(b[i] - '0');

			if (n > (UINT64_MAX - digit) / 10) {
				tk->t = T_ERR;
				return;
			}
			n = n * 10 + digit;
			digits++;
		}
		/* "{n+}" is for clients only (RFC 7888) */
		if (digits == 0 || i >= p->end || b[i] != '}' || i + 1 != p->end) {
			tk->t = T_ERR;
			return;
		}
		tk->t = T_LITERAL;
		tk->n = n;
		p->pos = p->end;
		return;
	}
	/* atom (also numbers and NIL) */
	while (i < p->end && atom_char((unsigned char)b[i])) {
		if (b[i] == '[') {
			i += bracket_end(b + i, p->end - i);
			if (i >= p->end) {
				tk->t = T_ERR;
				return;
			}
		}
		i++;
	}
	if (i == p->pos) {
		tk->t = T_ERR;
		return;
	}
	tk->t = T_ATOM;
	tk->s = b + p->pos;
	tk->len = i - p->pos;
	p->pos = i;
}

/* ---- grammar ---- */

static enum step
step_fail(struct imap_resp_parser *p, enum imap_resp_error e,
	  enum imap_resp_event *ev)
{
	*ev = fail(p, e);
	return STEP_EVENT;
}

static enum step
step_done(struct imap_resp_parser *p, enum imap_resp_event *ev)
{
	p->response_done = 1;
	p->seg_ready = 0;
	*ev = IMAP_RESP_RESPONSE;
	return STEP_EVENT;
}

/* A literal outside content: read it into the buffer, then the rest of its
 * line; the grammar gets it as T_STRING in the same state. */
static enum step
inline_literal(struct imap_resp_parser *p, const struct token *tk,
	       enum imap_resp_event *ev)
{
	if (tk->n > p->max_line || p->len + tk->n > p->max_line)
		return step_fail(p, IMAP_RESP_ERR_LINE_TOO_LONG, ev);
	p->inline_off = p->len;
	p->inline_len = tk->n;
	p->inline_left = tk->n;
	p->seg_ready = 0;
	p->pstate = tk->n > 0 ? P_INLINE_LIT : P_LINE;
	p->seg_start = p->len;
	p->inline_pending = 1;
	return STEP_NEED_LINE;
}

/* A content item's value: NIL, quoted or literal. */
static enum step
content_value(struct imap_resp_parser *p, const struct token *tk,
	      enum imap_resp_event *ev)
{
	struct imap_resp_item *it = &p->item;

	it->index = p->resp.items;
	it->data = NULL;
	it->data_len = 0;
	it->literal_len = 0;
	it->binary = 0;
	if (tk->t == T_ATOM && eq_ci(tk->s, tk->len, "NIL")) {
		it->value = IMAP_VALUE_NIL;
	} else if (tk->t == T_QUOTED) {
		if (tk->len > p->max_literal)
			return step_fail(p, IMAP_RESP_ERR_TOO_BIG, ev);
		it->value = IMAP_VALUE_STRING;
		it->data = tk->s;
		it->data_len = tk->len;
	} else if (tk->t == T_LITERAL) {
		if (tk->n > p->max_literal)
			return step_fail(p, IMAP_RESP_ERR_TOO_BIG, ev);
		it->value = IMAP_VALUE_LITERAL;
		it->literal_len = tk->n;
		it->binary = tk->binary;
		p->pstate = P_DATA_LIT;
		p->lit_left = tk->n;
		p->seg_ready = 0;
	} else {
		return step_fail(p, IMAP_RESP_ERR_SYNTAX, ev);
	}
	p->resp.items++;
	*ev = IMAP_RESP_DATA;
	return STEP_EVENT;
}

/* resp-text-code = atom [SP 1*<any TEXT-CHAR except "]">], in b[s..e) */
static int
status_code(struct imap_resp *r, const char *b, size_t s, size_t e)
{
	static const struct {
		const char *name;
		enum imap_resp_code code;
	} codes[] = {
		{ "ALERT", IMAP_CODE_ALERT },
		{ "READ-ONLY", IMAP_CODE_READ_ONLY },
		{ "READ-WRITE", IMAP_CODE_READ_WRITE },
		{ "TRYCREATE", IMAP_CODE_TRYCREATE },
		{ "AUTHENTICATIONFAILED", IMAP_CODE_AUTHENTICATIONFAILED },
		{ "AUTHORIZATIONFAILED", IMAP_CODE_AUTHORIZATIONFAILED },
		{ "UNAVAILABLE", IMAP_CODE_UNAVAILABLE },
		{ "NONEXISTENT", IMAP_CODE_NONEXISTENT },
	};
	size_t ne, as, k;

	for (ne = s; ne < e && b[ne] != ' '; ne++)
		;
	if (ne == s)
		return -1;
	as = ne < e ? ne + 1 : e;
	copy_name(r->code_name, sizeof(r->code_name), b + s, ne - s);
	if (eq_ci(b + s, ne - s, "CAPABILITY")) {
		r->code = IMAP_CODE_CAPABILITY;
		parse_caps(r, b + as, e - as);
		return 0;
	}
	if (eq_ci(b + s, ne - s, "UIDVALIDITY"))
		r->code = IMAP_CODE_UIDVALIDITY;
	else if (eq_ci(b + s, ne - s, "UIDNEXT"))
		r->code = IMAP_CODE_UIDNEXT;
	else if (eq_ci(b + s, ne - s, "UNSEEN"))
		r->code = IMAP_CODE_UNSEEN;
	if (r->code != IMAP_CODE_NONE)
		return parse_nz32(b + as, e - as, &r->code_number);
	r->code = IMAP_CODE_OTHER;
	for (k = 0; k < sizeof(codes) / sizeof(codes[0]); k++)
		if (eq_ci(b + s, ne - s, codes[k].name))
			r->code = codes[k].code;
	return 0;
}

/* resp-text after a status condition: ["[" resp-text-code "]" [SP]] text.
 * RFC 3501 wants SP and text; servers send "A1 OK" and "* OK [X]" too. */
static int
status_text(struct imap_resp_parser *p)
{
	struct imap_resp *r = &p->resp;
	char *b = p->buf;
	size_t i = p->pos;

	if (i < p->end) {
		if (b[i] != ' ')
			return -1;
		i++;
	}
	if (i < p->end && b[i] == '[') {
		char *close = memchr(b + i, ']', p->end - i);

		/* without "]" it is all text */
		if (close != NULL) {
			size_t e = (size_t)(close - b);

			if (status_code(r, b, i + 1, e) < 0)
				return -1;
			i = e + 1;
			if (i < p->end && b[i] == ' ')
				i++;
		}
	}
	r->text = b + i;
	r->text_len = p->end - i;
	p->pos = p->end;
	return 0;
}

static int
tag_char(unsigned char c)
{
	/* ASTRING-CHAR except "+" */
	return c > ' ' && c < 0x7f && c != '(' && c != ')' && c != '{' &&
	    c != '%' && c != '*' && c != '"' && c != '\\' && c != '+';
}

static enum step
g_begin(struct imap_resp_parser *p, enum imap_resp_event *ev)
{
	struct imap_resp *r = &p->resp;
	char *b = p->buf;
	struct token tk;
	size_t i = p->pos;

	if (i == p->end)
		return step_fail(p, IMAP_RESP_ERR_SYNTAX, ev);
	if (b[i] == '+') {
		r->kind = IMAP_RESP_CONTINUE;
		i++;
		if (i < p->end && b[i] == ' ')
			i++;
		r->text = b + i;
		r->text_len = p->end - i;
		return step_done(p, ev);
	}
	if (b[i] == '*') {
		r->kind = IMAP_RESP_UNTAGGED;
		if (i + 1 >= p->end || b[i + 1] != ' ')
			return step_fail(p, IMAP_RESP_ERR_SYNTAX, ev);
		p->pos = i + 2;
		lex(p, &tk);
		/* a keyword or a number: no "[...]" */
		if (tk.t != T_ATOM || memchr(tk.s, '[', tk.len) != NULL)
			return step_fail(p, IMAP_RESP_ERR_SYNTAX, ev);
		if (tk.s[0] >= '0' && tk.s[0] <= '9') {
			if (parse_u32(tk.s, tk.len, &r->number) < 0)
				return step_fail(p, IMAP_RESP_ERR_SYNTAX, ev);
			p->g = G_UNTAGGED_NUM;
			return STEP_CONTINUE;
		}
		if (eq_ci(tk.s, tk.len, "OK"))
			r->cond = IMAP_COND_OK;
		else if (eq_ci(tk.s, tk.len, "NO"))
			r->cond = IMAP_COND_NO;
		else if (eq_ci(tk.s, tk.len, "BAD"))
			r->cond = IMAP_COND_BAD;
		else if (eq_ci(tk.s, tk.len, "PREAUTH"))
			r->cond = IMAP_COND_PREAUTH;
		else if (eq_ci(tk.s, tk.len, "BYE"))
			r->cond = IMAP_COND_BYE;
		if (r->cond != IMAP_COND_NONE) {
			if (status_text(p) < 0)
				return step_fail(p, IMAP_RESP_ERR_SYNTAX, ev);
			return step_done(p, ev);
		}
		copy_name(r->data_name, sizeof(r->data_name), tk.s, tk.len);
		if (strcmp(r->data_name, "CAPABILITY") == 0) {
			r->data = IMAP_DATA_CAPABILITY;
			parse_caps(r, b + p->pos, p->end - p->pos);
			return step_done(p, ev);
		}
		if (strcmp(r->data_name, "URLFETCH") == 0) {
			r->data = IMAP_DATA_URLFETCH;
			p->g = G_URL;
			return STEP_CONTINUE;
		}
		r->data = IMAP_DATA_OTHER;
		p->g = G_GENERIC;
		return STEP_CONTINUE;
	}
	/* tag SP ("OK" / "NO" / "BAD") */
	while (i < p->end && tag_char((unsigned char)b[i]))
		i++;
	if (i == p->pos || i - p->pos > IMAP_RESP_TAG_MAX || i >= p->end ||
	    b[i] != ' ')
		return step_fail(p, IMAP_RESP_ERR_SYNTAX, ev);
	r->kind = IMAP_RESP_TAGGED;
	memcpy(r->tag, b + p->pos, i - p->pos);
	r->tag[i - p->pos] = '\0';
	p->pos = i + 1;
	lex(p, &tk);
	if (tk.t == T_ATOM && eq_ci(tk.s, tk.len, "OK"))
		r->cond = IMAP_COND_OK;
	else if (tk.t == T_ATOM && eq_ci(tk.s, tk.len, "NO"))
		r->cond = IMAP_COND_NO;
	else if (tk.t == T_ATOM && eq_ci(tk.s, tk.len, "BAD"))
		r->cond = IMAP_COND_BAD;
	else
		return step_fail(p, IMAP_RESP_ERR_SYNTAX, ev);
	if (status_text(p) < 0)
		return step_fail(p, IMAP_RESP_ERR_SYNTAX, ev);
	return step_done(p, ev);
}

/* A FETCH att name: "UID", a content item, or anything else. */
static int
fetch_att(struct imap_resp_parser *p, const struct token *tk)
{
	struct imap_resp_item *it = &p->item;
	const char *s = tk->s, *br;
	size_t n, len = tk->len;

	br = memchr(s, '[', len);
	n = br != NULL ? (size_t)(br - s) : len;
	p->att = ATT_OTHER;
	if (br == NULL) {
		if (eq_ci(s, n, "UID")) {
			p->att = ATT_UID;
		} else if (eq_ci(s, n, "RFC822") || eq_ci(s, n, "RFC822.TEXT") ||
		    eq_ci(s, n, "RFC822.HEADER")) {
			p->att = ATT_DATA;
			memset(it, 0, sizeof(*it));
			copy_name(it->name, sizeof(it->name), s, n);
		}
		return 0;
	}
	if (!eq_ci(s, n, "BODY") && !eq_ci(s, n, "BINARY"))
		return 0;	/* BINARY.SIZE[...] and such */
	{
		size_t cl = bracket_end(br, len - n);
		const char *close = br + cl;
		const char *e = s + len;
		size_t sl;

		if (cl >= len - n)
			return -1;
		memset(it, 0, sizeof(*it));
		p->att = ATT_DATA;
		copy_name(it->name, sizeof(it->name), s, n);
		sl = (size_t)(close - br - 1);
		if (sl > IMAP_RESP_SECTION_MAX)
			return -1;
		memcpy(it->section, br + 1, sl);
		it->section[sl] = '\0';
		if (close + 1 < e) {
			/* "<" number ">" */
			if (e[-1] != '>' || close[1] != '<' ||
			    parse_u32(close + 2, (size_t)(e - close - 3),
			    &it->origin) < 0)
				return -1;
			it->has_origin = 1;
		}
	}
	return 0;
}

static enum step
gstep(struct imap_resp_parser *p, enum imap_resp_event *ev)
{
	struct imap_resp *r = &p->resp;
	struct token tk;

	if (p->g == G_BEGIN)
		return g_begin(p, ev);
	lex(p, &tk);
	if (tk.t == T_ERR)
		return step_fail(p, IMAP_RESP_ERR_SYNTAX, ev);
	switch (p->g) {
	case G_UNTAGGED_NUM:
		if (tk.t != T_ATOM || memchr(tk.s, '[', tk.len) != NULL)
			break;
		copy_name(r->data_name, sizeof(r->data_name), tk.s, tk.len);
		if (strcmp(r->data_name, "FETCH") == 0) {
			r->data = IMAP_DATA_FETCH;
			p->g = G_FETCH_OPEN;
		} else if (strcmp(r->data_name, "EXISTS") == 0) {
			r->data = IMAP_DATA_EXISTS;
			p->g = G_EOL;
		} else if (strcmp(r->data_name, "RECENT") == 0) {
			r->data = IMAP_DATA_RECENT;
			p->g = G_EOL;
		} else if (strcmp(r->data_name, "EXPUNGE") == 0) {
			r->data = IMAP_DATA_EXPUNGE;
			p->g = G_EOL;
		} else {
			r->data = IMAP_DATA_OTHER;
			p->g = G_GENERIC;
		}
		return STEP_CONTINUE;
	case G_EOL:
	case G_FETCH_END:
		if (tk.t == T_EOL)
			return step_done(p, ev);
		break;
	case G_FETCH_OPEN:
		if (tk.t != T_LPAREN)
			break;
		p->depth = 1;
		p->g = G_FETCH_NAME;
		return STEP_CONTINUE;
	case G_FETCH_NAME:
		if (tk.t == T_RPAREN) {
			p->depth = 0;
			p->g = G_FETCH_END;
			return STEP_CONTINUE;
		}
		if (tk.t != T_ATOM || fetch_att(p, &tk) < 0)
			break;
		p->g = G_FETCH_VALUE;
		return STEP_CONTINUE;
	case G_FETCH_VALUE:
		if (p->att == ATT_UID) {
			if (tk.t != T_ATOM ||
			    parse_nz32(tk.s, tk.len, &r->uid) < 0)
				break;
			r->has_uid = 1;
			p->g = G_FETCH_NAME;
			return STEP_CONTINUE;
		}
		if (p->att == ATT_DATA) {
			p->item.kind = IMAP_ITEM_FETCH_BODY;
			p->item.msgno = r->number;
			p->item.has_uid = r->has_uid;
			p->item.uid = r->uid;
			p->g = G_FETCH_NAME;
			return content_value(p, &tk, ev);
		}
		/* any other att's value is skipped */
		/* FALLTHROUGH */
	case G_FETCH_SKIP:
	case G_GENERIC:
		switch (tk.t) {
		case T_LITERAL:
			return inline_literal(p, &tk, ev);
		case T_LPAREN:
			if (++p->depth > p->max_depth)
				return step_fail(p, IMAP_RESP_ERR_DEPTH, ev);
			if (p->g == G_FETCH_VALUE)
				p->g = G_FETCH_SKIP;
			return STEP_CONTINUE;
		case T_RPAREN:
			if (p->g == G_FETCH_VALUE ||
			    (p->g == G_GENERIC && p->depth == 0))
				break;
			if (--p->depth == 1 && p->g == G_FETCH_SKIP)
				p->g = G_FETCH_NAME;
			return STEP_CONTINUE;
		case T_EOL:
			if (p->g == G_GENERIC && p->depth == 0)
				return step_done(p, ev);
			break;
		default:	/* atom, quoted, short literal */
			if (p->g == G_FETCH_VALUE)
				p->g = G_FETCH_NAME;
			return STEP_CONTINUE;
		}
		break;
	case G_URL:
		if (tk.t == T_EOL && r->items > 0)
			return step_done(p, ev);
		if (tk.t == T_LITERAL)
			return inline_literal(p, &tk, ev);
		if (tk.t != T_ATOM && tk.t != T_QUOTED && tk.t != T_STRING)
			break;
		p->url_off = (size_t)(tk.s - p->buf);
		p->url_len = tk.len;
		p->g = G_URL_DATA;
		return STEP_CONTINUE;
	case G_URL_DATA:
		memset(&p->item, 0, sizeof(p->item));
		p->item.kind = IMAP_ITEM_URLFETCH;
		p->item.url = p->buf + p->url_off;
		p->item.url_len = p->url_len;
		p->g = G_URL;
		return content_value(p, &tk, ev);
	case G_BEGIN:
		break;
	}
	return step_fail(p, IMAP_RESP_ERR_SYNTAX, ev);
}

/* ---- the line layer ---- */

static int
reserve(struct imap_resp_parser *p, size_t more)
{
	size_t need = p->len + more, ncap;
	char *n;

	if (need <= p->cap)
		return 0;
	ncap = p->cap ? p->cap : 256;
	while (ncap < need)
		ncap *= 2;
	if (ncap > p->max_line + 2)
		ncap = p->max_line + 2;
	if (ncap < need)
		return -1;
	n = realloc(p->buf, ncap);
	if (n == NULL)
		return -1;
	p->buf = n;
	p->cap = ncap;
	return 0;
}

static void
start_response(struct imap_resp_parser *p)
{
	p->response_done = 0;
	p->buf_reset = 0;
	p->len = 0;
	p->seg_start = 0;
	p->seg_ready = 0;
	p->pos = p->end = 0;
	p->inline_pending = p->inline_ready = 0;
	p->inline_off = 0;
	p->inline_len = p->inline_left = 0;
	p->g = G_BEGIN;
	p->depth = 0;
	p->att = ATT_OTHER;
	memset(&p->resp, 0, sizeof(p->resp));
	memset(&p->item, 0, sizeof(p->item));
}

/* Copy input up to and including the next LF.  Returns 1 when a segment
 * is complete, 0 when all input was taken, -1 on error (set). */
static int
copy_line(struct imap_resp_parser *p, const unsigned char *d, size_t len,
	  size_t *used)
{
	const unsigned char *lf;
	size_t n, k, room;

	if (p->buf_reset) {
		/* after a content literal: its line was parsed already */
		p->buf_reset = 0;
		p->len = p->seg_start = p->pos = p->end = 0;
	}
	/* Bytes are judged in order, as if they came one by one, so the
	 * error is the same wherever the input was cut: a NUL, or the byte
	 * that makes the line longer than max_line + CR (the LF may follow). */
	lf = memchr(d, '\n', len);
	n = lf != NULL ? (size_t)(lf - d) + 1 : len;
	k = lf != NULL ? n - 1 : n;		/* bytes before the LF */
	room = p->max_line + 1 - p->len;	/* before the LF (may be 0) */
	if (memchr(d, '\0', k < room ? k : room) != NULL) {
		fail(p, IMAP_RESP_ERR_SYNTAX);
		return -1;
	}
	if (k > room) {
		fail(p, IMAP_RESP_ERR_LINE_TOO_LONG);
		return -1;
	}
	if (reserve(p, n) < 0) {
		fail(p, IMAP_RESP_ERR_NOMEM);
		return -1;
	}
	memcpy(p->buf + p->len, d, n);
	p->len += n;
	*used += n;
	if (lf == NULL)
		return 0;
	/* CRLF ends it; a CR anywhere else in the line is an error */
	if (p->len - p->seg_start < 2 || p->buf[p->len - 2] != '\r' ||
	    memchr(p->buf + p->seg_start, '\r', p->len - 2 - p->seg_start)
	    != NULL) {
		fail(p, IMAP_RESP_ERR_SYNTAX);
		return -1;
	}
	p->end = p->len - 2;
	p->seg_ready = 1;
	if (p->inline_pending) {
		/* the line after a short literal: the literal comes first */
		p->inline_pending = 0;
		p->inline_ready = 1;
	}
	return 1;
}

enum imap_resp_event
imap_resp_parse(struct imap_resp_parser *p, const void *data, size_t len,
		size_t *consumed_r)
{
	const unsigned char *d = data;
	size_t used = 0;

	*consumed_r = 0;
	if (p->pstate == P_ERROR)
		return IMAP_RESP_ERROR;
	if (p->response_done)
		start_response(p);
	for (;;) {
		switch (p->pstate) {
		case P_ERROR:
			*consumed_r = used;
			return IMAP_RESP_ERROR;
		case P_DATA_LIT: {
			size_t n;

			if (p->lit_left == 0) {
				p->pstate = P_LINE;
				p->buf_reset = 1;
				continue;
			}
			/* only at the start of a call: data[0..) is content */
			n = len - used;
			if (n > p->lit_left)
				n = (size_t)p->lit_left;
			if (n == 0 || used > 0) {
				*consumed_r = used;
				return IMAP_RESP_NEED_MORE;
			}
			p->lit_left -= n;
			*consumed_r = n;
			if (p->lit_left == 0) {
				p->pstate = P_LINE;
				p->buf_reset = 1;
			}
			return IMAP_RESP_LITERAL_BYTES;
		}
		case P_INLINE_LIT: {
			size_t n = len - used;

			if (n > p->inline_left)
				n = (size_t)p->inline_left;
			if (n == 0) {
				*consumed_r = used;
				return IMAP_RESP_NEED_MORE;
			}
			/* inline_literal() checked the room: max_line bounds it */
			if (reserve(p, n) < 0) {
				*consumed_r = used;
				return fail(p, IMAP_RESP_ERR_NOMEM);
			}
			memcpy(p->buf + p->len, d + used, n);
			p->len += n;
			used += n;
			p->inline_left -= n;
			if (p->inline_left == 0) {
				p->pstate = P_LINE;
				p->seg_start = p->len;
			}
			continue;
		}
		case P_LINE:
			break;
		}
		if (!p->seg_ready) {
			int r;

			if (used == len) {
				*consumed_r = used;
				return IMAP_RESP_NEED_MORE;
			}
			r = copy_line(p, d + used, len - used, &used);
			if (r < 0) {
				*consumed_r = used;
				return IMAP_RESP_ERROR;
			}
			if (r == 0) {
				*consumed_r = used;
				return IMAP_RESP_NEED_MORE;
			}
		}
		for (;;) {
			enum imap_resp_event ev = IMAP_RESP_NEED_MORE;
			enum step s = gstep(p, &ev);

			if (s == STEP_EVENT) {
				*consumed_r = used;
				return ev;
			}
			if (s == STEP_NEED_LINE)
				break;
		}
	}
}

/* ---- the rest of the API ---- */

struct imap_resp_parser *
imap_resp_parser_new(const struct imap_resp_limits *lim)
{
	struct imap_resp_parser *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->max_line = lim != NULL && lim->max_line != 0 ? lim->max_line :
	    IMAP_RESP_LINE_DEFAULT;
	if (p->max_line < 64)
		p->max_line = 64;
	p->max_literal = lim != NULL ? lim->max_literal : 0;
	p->max_depth = lim != NULL && lim->max_depth != 0 ? lim->max_depth :
	    IMAP_RESP_DEPTH_DEFAULT;
	imap_resp_parser_reset(p);
	return p;
}

void
imap_resp_parser_free(struct imap_resp_parser **pp)
{
	struct imap_resp_parser *p = *pp;

	if (p == NULL)
		return;
	*pp = NULL;
	free(p->buf);
	free(p);
}

void
imap_resp_parser_reset(struct imap_resp_parser *p)
{
	p->pstate = P_LINE;
	p->err = IMAP_RESP_ERR_NONE;
	p->lit_left = 0;
	start_response(p);
}

void
imap_resp_set_max_literal(struct imap_resp_parser *p, uint64_t max)
{
	p->max_literal = max;
}

const struct imap_resp *
imap_resp_get(const struct imap_resp_parser *p)
{
	return &p->resp;
}

const struct imap_resp_item *
imap_resp_item(const struct imap_resp_parser *p)
{
	return &p->item;
}

uint64_t
imap_resp_literal_remaining(const struct imap_resp_parser *p)
{
	return p->pstate == P_DATA_LIT ? p->lit_left : 0;
}

void
imap_resp_literal_consumed(struct imap_resp_parser *p, uint64_t n)
{
	if (p->pstate != P_DATA_LIT)
		return;
	if (n > p->lit_left)
		n = p->lit_left;
	p->lit_left -= n;
	if (p->lit_left == 0) {
		p->pstate = P_LINE;
		p->buf_reset = 1;
	}
}

int
imap_resp_idle(const struct imap_resp_parser *p)
{
	if (p->pstate != P_LINE)
		return 0;
	return p->response_done || (p->len == 0 && !p->buf_reset &&
	    p->g == G_BEGIN);
}

enum imap_resp_error
imap_resp_error(const struct imap_resp_parser *p)
{
	return p->err;
}

const char *
imap_resp_strerror(enum imap_resp_error e)
{
	switch (e) {
	case IMAP_RESP_ERR_NONE:
		return "no error";
	case IMAP_RESP_ERR_SYNTAX:
		return "malformed IMAP response";
	case IMAP_RESP_ERR_LINE_TOO_LONG:
		return "IMAP response line too long";
	case IMAP_RESP_ERR_TOO_BIG:
		return "IMAP literal larger than allowed";
	case IMAP_RESP_ERR_DEPTH:
		return "IMAP response lists nested too deep";
	case IMAP_RESP_ERR_NOMEM:
		return "out of memory";
	}
	return "unknown error";
}
