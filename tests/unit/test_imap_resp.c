/*
 * test_imap_resp.c - the IMAP response parser (trust/imap_resp.c).
 *
 * Each case is a server's byte stream (real Cyrus IMAP 3.6.1 and Dovecot
 * 2.3.19 responses from the lab transcripts, and hand-made edge cases) and
 * the expected transcript of events: one line per response (R ...), per
 * content item (D ...) and per literal's content (L [...]).  Every stream is
 * fed whole, one byte at a time, and split in two at every byte boundary,
 * with literal content taken both through imap_resp_parse() and through
 * imap_resp_literal_consumed(); every way must give the same transcript.
 * Malformed streams must end in the expected error, whatever the split.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "imap_resp.h"

#define N_ELEMENTS(a)	(sizeof(a) / sizeof((a)[0]))

struct out {
	char *s;
	size_t len, cap;
};

static void
out_add(struct out *o, const char *s, size_t len)
{
	if (o->len + len + 1 > o->cap) {
		o->cap = (o->len + len + 1) * 2;
		o->s = realloc(o->s, o->cap);
		assert_non_null(o->s);
	}
	memcpy(o->s + o->len, s, len);
	o->len += len;
	o->s[o->len] = '\0';
}

static void
out_printf(struct out *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
out_printf(struct out *o, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	assert_true(n >= 0 && (size_t)n < sizeof(buf));
	out_add(o, buf, (size_t)n);
}

/* Bytes as they are, but "\r" and "\n" visible. */
static void
out_bytes(struct out *o, const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (s[i] == '\r')
			out_add(o, "\\r", 2);
		else if (s[i] == '\n')
			out_add(o, "\\n", 2);
		else if (s[i] == '\0')
			out_add(o, "\\0", 2);
		else
			out_add(o, s + i, 1);
	}
}

static const char *const kinds[] = { "?", "U", "T", "+" };
static const char *const conds[] = { "-", "OK", "NO", "BAD", "PREAUTH", "BYE" };

static void
describe_resp(struct out *o, const struct imap_resp *r)
{
	out_printf(o, "R %s", kinds[r->kind]);
	if (r->kind == IMAP_RESP_TAGGED)
		out_printf(o, " tag=%s", r->tag);
	if (r->cond != IMAP_COND_NONE)
		out_printf(o, " %s", conds[r->cond]);
	if (r->code != IMAP_CODE_NONE)
		out_printf(o, " code=%s/%d", r->code_name, (int)r->code);
	if (r->code_number != 0)
		out_printf(o, " num=%u", r->code_number);
	if (r->has_caps)
		out_printf(o, " caps=%#x", r->caps);
	if (r->data != IMAP_DATA_NONE)
		out_printf(o, " data=%s/%d", r->data_name, (int)r->data);
	if (r->number != 0)
		out_printf(o, " n=%u", r->number);
	if (r->has_uid)
		out_printf(o, " uid=%u", r->uid);
	if (r->items != 0)
		out_printf(o, " items=%u", r->items);
	if (r->text != NULL) {
		out_add(o, " [", 2);
		out_bytes(o, r->text, r->text_len);
		out_add(o, "]", 1);
	}
	out_add(o, "\n", 1);
}

static void
describe_item(struct out *o, const struct imap_resp_item *it)
{
	out_printf(o, "D #%u", it->index);
	if (it->kind == IMAP_ITEM_URLFETCH) {
		out_add(o, " url=", 5);
		out_bytes(o, it->url, it->url_len);
	} else {
		out_printf(o, " msg=%u", it->msgno);
		if (it->has_uid)
			out_printf(o, " uid=%u", it->uid);
		out_printf(o, " %s[%s]", it->name, it->section);
		if (it->has_origin)
			out_printf(o, "<%u>", it->origin);
	}
	switch (it->value) {
	case IMAP_VALUE_NIL:
		out_add(o, " NIL", 4);
		break;
	case IMAP_VALUE_STRING:
		out_add(o, " \"", 2);
		out_bytes(o, it->data, it->data_len);
		out_add(o, "\"", 1);
		break;
	case IMAP_VALUE_LITERAL:
		out_printf(o, " %s{%llu}", it->binary ? "~" : "",
		    (unsigned long long)it->literal_len);
		break;
	}
	out_add(o, "\n", 1);
}

struct run {
	struct imap_resp_parser *p;
	struct out o;
	struct out lit;		/* content of the literal in progress */
	int in_lit;
	int error;
};

static void
end_literal_if_done(struct run *r)
{
	if (r->in_lit && imap_resp_literal_remaining(r->p) == 0) {
		out_add(&r->o, "L [", 3);
		out_bytes(&r->o, r->lit.s != NULL ? r->lit.s : "", r->lit.len);
		out_add(&r->o, "]\n", 2);
		r->lit.len = 0;
		r->in_lit = 0;
	}
}

/* Feed one chunk completely (or up to an error).  consume_mode 1: literal
 * bytes go through imap_resp_literal_consumed(). */
static void
feed(struct run *r, const char *d, size_t len, int consume_mode)
{
	size_t off = 0;

	while (!r->error) {
		size_t used = 0;
		enum imap_resp_event ev;

		if (consume_mode && imap_resp_literal_remaining(r->p) > 0) {
			uint64_t n = imap_resp_literal_remaining(r->p);

			if (off == len)
				return;
			if (n > len - off)
				n = len - off;
			out_add(&r->lit, d + off, (size_t)n);
			imap_resp_literal_consumed(r->p, n);
			off += (size_t)n;
			end_literal_if_done(r);
			continue;
		}
		ev = imap_resp_parse(r->p, d + off, len - off, &used);
		assert_true(used <= len - off);
		switch (ev) {
		case IMAP_RESP_NEED_MORE:
			assert_int_equal(used, len - off);
			return;
		case IMAP_RESP_RESPONSE:
			describe_resp(&r->o, imap_resp_get(r->p));
			assert_true(imap_resp_idle(r->p));
			break;
		case IMAP_RESP_DATA:
			describe_item(&r->o, imap_resp_item(r->p));
			if (imap_resp_item(r->p)->value == IMAP_VALUE_LITERAL) {
				r->in_lit = 1;
				assert_int_equal(imap_resp_literal_remaining(r->p),
				    imap_resp_item(r->p)->literal_len);
				end_literal_if_done(r);
			}
			break;
		case IMAP_RESP_LITERAL_BYTES:
			assert_true(r->in_lit);
			assert_true(used > 0);
			out_add(&r->lit, d + off, used);
			end_literal_if_done(r);
			break;
		case IMAP_RESP_ERROR:
			out_printf(&r->o, "E %s\n",
			    imap_resp_strerror(imap_resp_error(r->p)));
			r->error = 1;
			/* sticky */
			assert_int_equal(imap_resp_parse(r->p, "x", 1, &used),
			    IMAP_RESP_ERROR);
			return;
		}
		off += used;
	}
}

/* splits: cut points (sorted), nsplits of them */
static char *
transcript(const char *in, size_t len, const size_t *cuts, size_t ncuts,
	   int consume_mode, const struct imap_resp_limits *lim)
{
	struct run r;
	size_t prev = 0, i;

	memset(&r, 0, sizeof(r));
	r.p = imap_resp_parser_new(lim);
	assert_non_null(r.p);
	assert_true(imap_resp_idle(r.p));
	for (i = 0; i <= ncuts; i++) {
		size_t cut = i < ncuts ? cuts[i] : len;

		feed(&r, in + prev, cut - prev, consume_mode);
		prev = cut;
	}
	if (!r.error && !imap_resp_idle(r.p))
		out_add(&r.o, "INCOMPLETE\n", 11);
	imap_resp_parser_free(&r.p);
	assert_null(r.p);
	free(r.lit.s);
	if (r.o.s == NULL)
		out_add(&r.o, "", 0);
	return r.o.s;
}

/* The transcript, checked to be the same however the input is split. */
static void
check_stream(const char *in, size_t len, const char *expect,
	     const struct imap_resp_limits *lim)
{
	char *whole = transcript(in, len, NULL, 0, 0, lim), *t;
	size_t *cuts = calloc(len + 1, sizeof(*cuts)), k;
	int mode;

	assert_non_null(cuts);
	if (expect != NULL && strcmp(whole, expect) != 0) {
		print_error("input:\n%.*s\ngot:\n%s\nexpected:\n%s\n", (int)len,
		    in, whole, expect);
		fail();
	}
	for (mode = 0; mode < 2; mode++) {
		for (k = 0; k <= len; k++) {
			t = transcript(in, len, &k, 1, mode, lim);
			if (strcmp(t, whole) != 0) {
				print_error("split at %zu (mode %d):\n%s\n"
				    "whole:\n%s\n", k, mode, t, whole);
				fail();
			}
			free(t);
		}
		for (k = 0; k < len; k++)
			cuts[k] = k + 1;
		t = transcript(in, len, cuts, len > 0 ? len - 1 : 0, mode, lim);
		if (strcmp(t, whole) != 0) {
			print_error("byte by byte (mode %d):\n%s\nwhole:\n%s\n",
			    mode, t, whole);
			fail();
		}
		free(t);
	}
	free(cuts);
	free(whole);
}

static const struct imap_resp_limits lim_default = { 8192, 1 << 20, 0 };

struct stream_case {
	const char *name;
	const char *in;		/* NUL-free unless in_len is set */
	size_t in_len;
	const char *expect;
};

#define CYRUS_CAPS_GREETING \
	"* OK [CAPABILITY IMAP4rev1 LITERAL+ ID ENABLE STARTTLS AUTH=PLAIN " \
	"AUTH=LOGIN AUTH=GSSAPI SASL-IR] localhost Cyrus IMAP " \
	"3.6.1-Debian-3.6.1-4+deb12u5 server ready\r\n"
#define CYRUS_URL \
	"imap://bob@localhost/INBOX;UIDVALIDITY=1795435218/;UID=2;" \
	"URLAUTH=submit+bob:internal:00a70f6d5b46e4be69bfa31cd8837904045cf1b9bf"
#define DOVECOT_URL \
	"imap://alice@localhost:10143/INBOX;UIDVALIDITY=1795435210/;UID=26;" \
	"URLAUTH=submit+alice:internal:01c08247fac7a02379b02618d8e646a2cb09665fc0"
#define MSG \
	"From: <bob@lab.test>\r\nSubject: cyrus\r\n\r\nHello from bob,\r\n" \
	"line two.\r\n.\r\nend\r\n"

/* caps bits, as the transcript prints them */
#define CAP(x) IMAP_CAP_##x

static const struct stream_case stream_cases[] = {
	{ "cyrus greeting",
	  CYRUS_CAPS_GREETING,
	  0, NULL },
	{ "cyrus login + capability code",
	  "A1 OK [CAPABILITY IMAP4rev1 LITERAL+ ID ENABLE ACL BINARY URLAUTH "
	  "URLAUTH=BINARY LOGINDISABLED IDLE] User logged in SESSIONID=<x>\r\n",
	  0, NULL },
	{ "cyrus urlfetch quoted url, literal",
	  "* URLFETCH \"" CYRUS_URL "\" {76}\r\n" MSG "\r\n"
	  "A2 OK Completed\r\n",
	  0,
	  "D #0 url=" CYRUS_URL " {76}\n"
	  "L [From: <bob@lab.test>\\r\\nSubject: cyrus\\r\\n\\r\\nHello from bob,\\r\\nline two.\\r\\n.\\r\\nend\\r\\n]\n"
	  "R U data=URLFETCH/2 items=1\n"
	  "R T tag=A2 OK [Completed]\n" },
	{ "cyrus urlfetch NIL",
	  "* URLFETCH \"" CYRUS_URL "\" NIL\r\nA6 OK Completed\r\n",
	  0,
	  "D #0 url=" CYRUS_URL " NIL\n"
	  "R U data=URLFETCH/2 items=1\n"
	  "R T tag=A6 OK [Completed]\n" },
	{ "dovecot urlfetch atom url, NIL, untagged NO quoting the url",
	  "* URLFETCH " DOVECOT_URL " NIL\r\n"
	  "* NO Failed to fetch URLAUTH \"" DOVECOT_URL "\": No 'submit+alice' "
	  "access allowed for user alice.\r\n"
	  "A6 OK URLFETCH completed (0.001 + 0.000 secs).\r\n",
	  0,
	  "D #0 url=" DOVECOT_URL " NIL\n"
	  "R U data=URLFETCH/2 items=1\n"
	  "R U NO [Failed to fetch URLAUTH \"" DOVECOT_URL "\": No 'submit+alice' access allowed for user alice.]\n"
	  "R T tag=A6 OK [URLFETCH completed (0.001 + 0.000 secs).]\n" },
	{ "dovecot urlfetch atom url, literal",
	  "* URLFETCH " DOVECOT_URL " {5}\r\nab\r\nc\r\nA2 OK URLFETCH completed\r\n",
	  0,
	  "D #0 url=" DOVECOT_URL " {5}\n"
	  "L [ab\\r\\nc]\n"
	  "R U data=URLFETCH/2 items=1\n"
	  "R T tag=A2 OK [URLFETCH completed]\n" },
	{ "dovecot internal error",
	  "A2 NO Internal error occurred. Refer to server log for more "
	  "information. [2026-11-23 12:02:23] (4.049 + 4.044 + 4.048 secs).\r\n",
	  0,
	  "R T tag=A2 NO [Internal error occurred. Refer to server log for more information. [2026-11-23 12:02:23] (4.049 + 4.044 + 4.048 secs).]\n" },
	{ "urlfetch: several pairs, literal8, quoted, literal url",
	  "* URLFETCH u1 ~{3}\r\na\0b u2 \"q\\\"x\\\\\" {4}\r\nu3/4 NIL\r\n",
	  sizeof("* URLFETCH u1 ~{3}\r\na\0b u2 \"q\\\"x\\\\\" {4}\r\nu3/4 NIL\r\n") - 1,
	  "D #0 url=u1 ~{3}\n"
	  "L [a\\0b]\n"
	  "D #1 url=u2 \"q\"x\\\"\n"
	  "D #2 url=u3/4 NIL\n"
	  "R U data=URLFETCH/2 items=3\n" },
	{ "urlfetch: empty literal",
	  "* URLFETCH x {0}\r\n\r\n",
	  0,
	  "D #0 url=x {0}\n"
	  "L []\n"
	  "R U data=URLFETCH/2 items=1\n" },
	{ "dovecot examine",
	  "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
	  "* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n"
	  "* 4 EXISTS\r\n"
	  "* 0 RECENT\r\n"
	  "* OK [UNSEEN 1] First unseen.\r\n"
	  "* OK [UIDVALIDITY 1795435210] UIDs valid\r\n"
	  "* OK [UIDNEXT 5] Predicted next UID\r\n"
	  "* OK [HIGHESTMODSEQ 7] Highest\r\n"
	  "A3 OK [READ-ONLY] Examine completed (0.001 + 0.000 secs).\r\n",
	  0,
	  "R U data=FLAGS/7\n"
	  "R U OK code=PERMANENTFLAGS/13 [Read-only mailbox.]\n"
	  "R U data=EXISTS/4 n=4\n"
	  "R U data=RECENT/5\n"
	  "R U OK code=UNSEEN/4 num=1 [First unseen.]\n"
	  "R U OK code=UIDVALIDITY/2 num=1795435210 [UIDs valid]\n"
	  "R U OK code=UIDNEXT/3 num=5 [Predicted next UID]\n"
	  "R U OK code=HIGHESTMODSEQ/13 [Highest]\n"
	  "R T tag=A3 OK code=READ-ONLY/6 [Examine completed (0.001 + 0.000 secs).]\n" },
	{ "cyrus examine",
	  "* 2 EXISTS\r\n* 0 RECENT\r\n"
	  "* FLAGS (\\Answered \\Flagged \\Draft \\Deleted \\Seen)\r\n"
	  "* OK [PERMANENTFLAGS (\\Answered \\*)] Ok\r\n"
	  "* OK [UIDVALIDITY 1795435218] Ok\r\n"
	  "* OK [URLMECH INTERNAL] Ok\r\n"
	  "A3 OK [READ-ONLY] Completed\r\n",
	  0,
	  "R U data=EXISTS/4 n=2\n"
	  "R U data=RECENT/5\n"
	  "R U data=FLAGS/7\n"
	  "R U OK code=PERMANENTFLAGS/13 [Ok]\n"
	  "R U OK code=UIDVALIDITY/2 num=1795435218 [Ok]\n"
	  "R U OK code=URLMECH/13 [Ok]\n"
	  "R T tag=A3 OK code=READ-ONLY/6 [Completed]\n" },
	{ "fetch: uid first, body literal, flags after",
	  "* 4 FETCH (UID 4 BODY[] {7}\r\nabc\r\nde FLAGS (\\Seen))\r\n"
	  "A4 OK Fetch completed.\r\n",
	  0,
	  "D #0 msg=4 uid=4 BODY[] {7}\n"
	  "L [abc\\r\\nde]\n"
	  "R U data=FETCH/3 n=4 uid=4 items=1\n"
	  "R T tag=A4 OK [Fetch completed.]\n" },
	{ "fetch: body first, uid after, section and origin",
	  "* 2 FETCH (BODY[1.2.TEXT]<100> {3}\r\nxyz UID 77)\r\n",
	  0,
	  "D #0 msg=2 BODY[1.2.TEXT]<100> {3}\n"
	  "L [xyz]\n"
	  "R U data=FETCH/3 n=2 uid=77 items=1\n" },
	{ "fetch: header.fields section, quoted body, binary literal8, NIL",
	  "* 9 FETCH (UID 9 BODY[HEADER.FIELDS (SUBJECT \"X-A]\")] \"S: x\" "
	  "BINARY[1] ~{2}\r\n\0\1 BODY[2] NIL RFC822.SIZE 44)\r\n",
	  sizeof("* 9 FETCH (UID 9 BODY[HEADER.FIELDS (SUBJECT \"X-A]\")] \"S: x\" "
	  "BINARY[1] ~{2}\r\n\0\1 BODY[2] NIL RFC822.SIZE 44)\r\n") - 1,
	  "D #0 msg=9 uid=9 BODY[HEADER.FIELDS (SUBJECT \"X-A]\")] \"S: x\"\n"
	  "D #1 msg=9 uid=9 BINARY[1] ~{2}\n"
	  "L [\\0\x01]\n"
	  "D #2 msg=9 uid=9 BODY[2] NIL\n"
	  "R U data=FETCH/3 n=9 uid=9 items=3\n" },
	{ "fetch: bodystructure, envelope with a literal, flags; no content",
	  "* 1 FETCH (FLAGS (\\Seen) ENVELOPE (\"date\" {4}\r\nsubj "
	  "((NIL NIL \"a\" \"b\")) NIL NIL NIL NIL NIL NIL \"<id>\") "
	  "BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
	  "\"7bit\" 2 1)(\"text\" \"html\" NIL NIL NIL \"7bit\" 3 1) \"mixed\") "
	  "UID 3 RFC822.SIZE 10)\r\n",
	  0,
	  "R U data=FETCH/3 n=1 uid=3\n" },
	{ "fetch: rfc822 and rfc822.text",
	  "* 5 FETCH (RFC822 {1}\r\nx RFC822.TEXT \"y\")\r\n",
	  0,
	  "D #0 msg=5 RFC822[] {1}\n"
	  "L [x]\n"
	  "D #1 msg=5 RFC822.TEXT[] \"y\"\n"
	  "R U data=FETCH/3 n=5 items=2\n" },
	{ "fetch: body without section is structure, binary.size",
	  "* 5 FETCH (BODY (\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1) "
	  "BINARY.SIZE[1] 12)\r\n",
	  0,
	  "R U data=FETCH/3 n=5\n" },
	{ "continuation: empty, base64, text",
	  "+ \r\n+\r\n+ YIGZBgkqhkiG9xIBAgICAG+BiTCBhqADAgEFoQMCAQ==\r\n+ go ahead\r\n",
	  0,
	  "R + []\n"
	  "R + []\n"
	  "R + [YIGZBgkqhkiG9xIBAgICAG+BiTCBhqADAgEFoQMCAQ==]\n"
	  "R + [go ahead]\n" },
	{ "bye, preauth, untagged bad, codes without text",
	  "* BYE LOGOUT received\r\n* PREAUTH [CAPABILITY IMAP4rev2] hi\r\n"
	  "* BAD [ALERT] look\r\n* OK [READ-WRITE]\r\nA1 OK\r\n"
	  "A2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
	  "a.b-3 BAD Error in IMAP command\r\n",
	  0,
	  "R U BYE [LOGOUT received]\n"
	  "R U PREAUTH code=CAPABILITY/1 caps=0x2 [hi]\n"
	  "R U BAD code=ALERT/5 [look]\n"
	  "R U OK code=READ-WRITE/7 []\n"
	  "R T tag=A1 OK []\n"
	  "R T tag=A2 NO code=AUTHENTICATIONFAILED/9 [Authentication failed.]\n"
	  "R T tag=a.b-3 BAD [Error in IMAP command]\n" },
	{ "text starting with [ without ]",
	  "* OK [not a code\r\n",
	  0,
	  "R U OK [[not a code]\n" },
	{ "capability data",
	  "* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE "
	  "LITERAL+ STARTTLS AUTH=PLAIN AUTH=LOGIN AUTH=GSSAPI\r\n"
	  "* capability imap4rev2 literal- auth=plain urlauth=binary\r\n"
	  "* CAPABILITY\r\n",
	  0, NULL },
	{ "generic data with an inline literal and nested lists",
	  "* LIST (\\HasNoChildren) \"/\" {5}\r\nINBOX\r\n"
	  "* ID (\"name\" \"Cyrus IMAPd\" \"os\" NIL)\r\n"
	  "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n"
	  "* ESEARCH (TAG \"A1\") UID ALL 1:3,5\r\n"
	  "* 3 EXPUNGE\r\n* ENABLED\r\n"
	  "* LIST () \"/\" [Gmail]/Sent\r\n",
	  0,
	  "R U data=LIST/7\n"
	  "R U data=ID/7\n"
	  "R U data=NAMESPACE/7\n"
	  "R U data=ESEARCH/7\n"
	  "R U data=EXPUNGE/6 n=3\n"
	  "R U data=ENABLED/7\n"
	  "R U data=LIST/7\n" },
	{ "urlfetch with the url as a literal, several inline literals",
	  "* URLFETCH {3}\r\nu\r\n {2}\r\nab\r\n* LIST () {0}\r\n {1}\r\n)\r\n",
	  0,
	  "D #0 url=u\\r\\n {2}\n"
	  "L [ab]\n"
	  "R U data=URLFETCH/2 items=1\n"
	  "R U data=LIST/7\n" },
};

static void
test_streams(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(stream_cases); i++) {
		const struct stream_case *c = &stream_cases[i];

		print_message("  %s\n", c->name);
		check_stream(c->in, c->in_len ? c->in_len : strlen(c->in),
		    c->expect, &lim_default);
	}
}

/* The greeting and capability cases, field by field. */
static void
test_caps(void **state)
{
	struct imap_resp_parser *p = imap_resp_parser_new(NULL);
	const struct imap_resp *r;
	const char *in = CYRUS_CAPS_GREETING;
	size_t used;

	(void)state;
	assert_int_equal(imap_resp_parse(p, in, strlen(in), &used),
	    IMAP_RESP_RESPONSE);
	assert_int_equal(used, strlen(in));
	r = imap_resp_get(p);
	assert_int_equal(r->kind, IMAP_RESP_UNTAGGED);
	assert_int_equal(r->cond, IMAP_COND_OK);
	assert_int_equal(r->code, IMAP_CODE_CAPABILITY);
	assert_true(r->has_caps);
	assert_int_equal(r->caps, CAP(IMAP4REV1) | CAP(LITERAL_PLUS) | CAP(ID) |
	    CAP(ENABLE) | CAP(STARTTLS) | CAP(AUTH_PLAIN) | CAP(AUTH_LOGIN) |
	    CAP(AUTH_GSSAPI) | CAP(SASL_IR));
	assert_int_equal(r->text_len, strlen("localhost Cyrus IMAP "
	    "3.6.1-Debian-3.6.1-4+deb12u5 server ready"));

	in = "* capability imap4rev2 literal- auth=plain urlauth=binary "
	    "AUTH=GSSAPIX URLAUTH\r\n";
	assert_int_equal(imap_resp_parse(p, in, strlen(in), &used),
	    IMAP_RESP_RESPONSE);
	r = imap_resp_get(p);
	assert_int_equal(r->data, IMAP_DATA_CAPABILITY);
	assert_int_equal(r->caps, CAP(IMAP4REV2) | CAP(LITERAL_MINUS) |
	    CAP(AUTH_PLAIN) | CAP(URLAUTH_BINARY) | CAP(URLAUTH));
	imap_resp_parser_free(&p);
}

/* Two responses in one buffer: parse stops after the first. */
static void
test_stops_at_event(void **state)
{
	struct imap_resp_parser *p = imap_resp_parser_new(NULL);
	const char *in = "* 1 EXISTS\r\nA1 OK done\r\n* BYE";
	size_t used, off = 0;

	(void)state;
	assert_int_equal(imap_resp_parse(p, in, strlen(in), &used),
	    IMAP_RESP_RESPONSE);
	assert_int_equal(used, 12);
	off += used;
	assert_int_equal(imap_resp_parse(p, in + off, strlen(in) - off, &used),
	    IMAP_RESP_RESPONSE);
	assert_string_equal(imap_resp_get(p)->tag, "A1");
	off += used;
	assert_true(imap_resp_idle(p));
	assert_int_equal(imap_resp_parse(p, in + off, strlen(in) - off, &used),
	    IMAP_RESP_NEED_MORE);
	assert_int_equal(used, 5);
	assert_false(imap_resp_idle(p));
	/* a reset forgets the partial response */
	imap_resp_parser_reset(p);
	assert_true(imap_resp_idle(p));
	assert_int_equal(imap_resp_parse(p, "A2 OK\r\n", 7, &used),
	    IMAP_RESP_RESPONSE);
	imap_resp_parser_free(&p);
}

/* A content literal over max_literal is refused as soon as "{n}" is read,
 * before any of its bytes. */
static void
test_too_big(void **state)
{
	struct imap_resp_limits lim = { 8192, 100, 0 };
	struct imap_resp_parser *p = imap_resp_parser_new(&lim);
	const char *in = "* URLFETCH x {101}\r\n";
	const char *ok = "* URLFETCH x {100}\r\n";
	size_t used;

	(void)state;
	assert_int_equal(imap_resp_parse(p, in, strlen(in), &used),
	    IMAP_RESP_ERROR);
	assert_int_equal(imap_resp_error(p), IMAP_RESP_ERR_TOO_BIG);
	assert_int_equal(used, strlen(in));
	imap_resp_parser_reset(p);
	assert_int_equal(imap_resp_parse(p, ok, strlen(ok), &used),
	    IMAP_RESP_DATA);
	assert_int_equal(imap_resp_literal_remaining(p), 100);
	assert_false(imap_resp_idle(p));
	/* per fetch */
	imap_resp_parser_reset(p);
	imap_resp_set_max_literal(p, 10);
	in = "* 1 FETCH (BODY[] {18446744073709551615}\r\n";
	assert_int_equal(imap_resp_parse(p, in, strlen(in), &used),
	    IMAP_RESP_ERROR);
	assert_int_equal(imap_resp_error(p), IMAP_RESP_ERR_TOO_BIG);
	imap_resp_parser_reset(p);
	in = "* 1 FETCH (BODY[] \"12345678901\")\r\n";
	assert_int_equal(imap_resp_parse(p, in, strlen(in), &used),
	    IMAP_RESP_ERROR);
	assert_int_equal(imap_resp_error(p), IMAP_RESP_ERR_TOO_BIG);
	imap_resp_parser_free(&p);
}

#define A10	"aaaaaaaaaa"
#define A100	A10 A10 A10 A10 A10 A10 A10 A10 A10 A10

struct bad_case {
	const char *name;
	const char *in;
	size_t in_len;
	enum imap_resp_error err;
};

static const struct bad_case bad_cases[] = {
	{ "empty line", "\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "bare LF", "* OK hi\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "bare CR inside", "* OK h\ri\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "NUL in a line", "* OK h\0i\r\n", 10, IMAP_RESP_ERR_SYNTAX },
	{ "star without space", "*OK\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "unknown tagged condition", "A1 PREAUTH x\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "tagged BYE", "A1 BYE x\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "tag only", "A1\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "tag too long", "A123456789012345678901234567890123 OK\r\n", 0,
	  IMAP_RESP_ERR_SYNTAX },
	{ "tag with plus", "A+1 OK\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "condition glued", "A1 OKx\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "status text without space", "* OK[ALERT] x\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "empty code", "* OK [] x\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "uidvalidity zero", "* OK [UIDVALIDITY 0] x\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "uidvalidity junk", "* OK [UIDVALIDITY 12a] x\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "uidvalidity overflow", "* OK [UIDVALIDITY 4294967296] x\r\n", 0,
	  IMAP_RESP_ERR_SYNTAX },
	{ "number overflow", "* 4294967296 EXISTS\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "exists with junk", "* 4 EXISTS x\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "number without keyword", "* 4\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "fetch without list", "* 4 FETCH UID 4\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "fetch list unclosed", "* 4 FETCH (UID 4\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "fetch junk after list", "* 4 FETCH (UID 4) x\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "fetch att without value", "* 4 FETCH (UID)\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "fetch uid zero", "* 4 FETCH (UID 0)\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "fetch body list", "* 4 FETCH (BODY[] (x))\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "fetch body atom", "* 4 FETCH (BODY[] abc)\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "fetch section unclosed", "* 4 FETCH (BODY[1 {3}\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "fetch bad origin", "* 4 FETCH (BODY[]<1x> NIL)\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "fetch section too long",
	  "* 4 FETCH (BODY[HEADER.FIELDS (" A100 A100 A100 ")] NIL)\r\n",
	  0, IMAP_RESP_ERR_SYNTAX },
	{ "extra close paren", "* LIST ()) x\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "unclosed paren", "* LIST (x\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "unterminated quoted", "* LIST \"abc\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "bad escape", "* LIST \"a\\bc\"\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "literal not at end", "* LIST {3}x\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "non-synchronizing literal from server", "* URLFETCH x {3+}\r\nabc\r\n", 0,
	  IMAP_RESP_ERR_SYNTAX },
	{ "literal without digits", "* URLFETCH x {}\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "literal overflow", "* URLFETCH x {184467440737095516160}\r\n", 0,
	  IMAP_RESP_ERR_SYNTAX },
	{ "urlfetch without pairs", "* URLFETCH\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "urlfetch without data", "* URLFETCH x\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "urlfetch extended list", "* URLFETCH x (BODYPARTSTRUCTURE NIL)\r\n", 0,
	  IMAP_RESP_ERR_SYNTAX },
	{ "urlfetch atom data", "* URLFETCH x abc\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "urlfetch paren url", "* URLFETCH (x) NIL\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "inline literal too long for the line", "* LIST {9000}\r\n", 0,
	  IMAP_RESP_ERR_LINE_TOO_LONG },
	{ "too deep",
	  "* LIST ((((((((((((((((((x))))))))))))))))))\r\n", 0,
	  IMAP_RESP_ERR_DEPTH },
	{ "garbage", "HTTP/1.1 400 Bad Request\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "smtp greeting", "220 mail.example ESMTP\r\n", 0, IMAP_RESP_ERR_SYNTAX },
	{ "control char in atom", "* LIST \x01\r\n", 0, IMAP_RESP_ERR_SYNTAX },
};

static void
test_bad(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(bad_cases); i++) {
		const struct bad_case *c = &bad_cases[i];
		size_t len = c->in_len ? c->in_len : strlen(c->in);
		char expect[128];
		char *t;

		print_message("  %s\n", c->name);
		snprintf(expect, sizeof(expect), "E %s\n",
		    imap_resp_strerror(c->err));
		t = transcript(c->in, len, NULL, 0, 0, &lim_default);
		/* the error is the last thing reported */
		assert_true(strlen(t) >= strlen(expect));
		if (strcmp(t + strlen(t) - strlen(expect), expect) != 0) {
			print_error("got:\n%s\nexpected to end with:\n%s", t,
			    expect);
			fail();
		}
		free(t);
		check_stream(c->in, len, NULL, &lim_default);
	}
}

/* Lines longer than max_line: refused before the end of the line arrives,
 * whatever the split; exactly max_line is fine. */
static void
test_line_limit(void **state)
{
	struct imap_resp_limits lim = { 64, 1000, 0 };
	char line[200];
	char *t;

	(void)state;
	memset(line, 'x', sizeof(line));
	memcpy(line, "* OK ", 5);
	memcpy(line + 64, "\r\n", 2);
	t = transcript(line, 66, NULL, 0, 0, &lim);
	assert_string_equal(t, "R U OK [xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx]\n");
	free(t);
	check_stream(line, 66, NULL, &lim);

	memcpy(line + 64, "x\r\n", 3);
	t = transcript(line, 67, NULL, 0, 0, &lim);
	assert_string_equal(t, "E IMAP response line too long\n");
	free(t);
	check_stream(line, 67, NULL, &lim);
	/* no CRLF at all: refused once max_line + 2 bytes came */
	t = transcript(line, 66, NULL, 0, 0, &lim);
	assert_string_equal(t, "E IMAP response line too long\n");
	free(t);
	t = transcript(line, 65, NULL, 0, 0, &lim);
	assert_string_equal(t, "INCOMPLETE\n");
	free(t);

	/* content literals do not count against the line */
	{
		static char big[400];
		size_t n;

		n = (size_t)snprintf(big, sizeof(big), "* URLFETCH x {300}\r\n");
		memset(big + n, 'y', 300);
		memcpy(big + n + 300, " u NIL\r\n", 8);
		t = transcript(big, n + 308, NULL, 0, 0, &lim);
		assert_non_null(strstr(t, "R U data=URLFETCH/2 items=2\n"));
		free(t);
	}
}

/* The item's URL stays readable while its literal is being taken. */
static void
test_item_during_literal(void **state)
{
	struct imap_resp_parser *p = imap_resp_parser_new(&lim_default);
	const char *in = "* URLFETCH \"" CYRUS_URL "\" {4}\r\n";
	const struct imap_resp_item *it;
	size_t used;

	(void)state;
	assert_int_equal(imap_resp_parse(p, in, strlen(in), &used),
	    IMAP_RESP_DATA);
	it = imap_resp_item(p);
	assert_int_equal(it->value, IMAP_VALUE_LITERAL);
	assert_int_equal(imap_resp_literal_remaining(p), 4);
	imap_resp_literal_consumed(p, 3);
	assert_int_equal(it->url_len, strlen(CYRUS_URL));
	assert_memory_equal(it->url, CYRUS_URL, strlen(CYRUS_URL));
	assert_int_equal(imap_resp_parse(p, "abcd", 4, &used),
	    IMAP_RESP_LITERAL_BYTES);
	assert_int_equal(used, 1);
	assert_int_equal(imap_resp_literal_remaining(p), 0);
	assert_false(imap_resp_idle(p));
	assert_int_equal(imap_resp_parse(p, "\r\n", 2, &used),
	    IMAP_RESP_RESPONSE);
	assert_true(imap_resp_idle(p));
	imap_resp_parser_free(&p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_streams),
		cmocka_unit_test(test_caps),
		cmocka_unit_test(test_stops_at_event),
		cmocka_unit_test(test_too_big),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_line_limit),
		cmocka_unit_test(test_item_during_literal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
