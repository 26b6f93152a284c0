/*
 * test_smtp_parse.c - table-driven tests of the SMTP command grammar
 * (proxy/smtp_parse.c): verbs, MAIL/RCPT paths and parameters (RFC 5321
 * 4.1.1.2, 4.1.1.3, 4.1.2, 4.5.3.1), xtext (RFC 3461 4), BDAT (RFC 3030),
 * the HELO argument and the ETRN argument (RFC 1985).
 *
 * Every parser gets a private, writable copy of its input, because the
 * contract lets it write NULs into the line.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp_parse.h"

#define N_ELEMENTS(a)	(sizeof(a) / sizeof((a)[0]))

/* A writable, NUL-terminated copy of len bytes (which may hold NULs). */
static char *
dup_bytes(const char *s, size_t len)
{
	char *p = malloc(len + 1);

	assert_non_null(p);
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

/* ------------------------------------------------------------------ */
/* smtp_parse_command */

struct command_case {
	const char *line;
	size_t len;		/* 0: strlen(line) */
	int rc;
	enum smtp_verb verb;
	const char *args;	/* expected args (when rc == 0) */
};

static const struct command_case command_cases[] = {
	{ "EHLO client.example", 0, 0, V_EHLO, "client.example" },
	{ "ehlo client.example", 0, 0, V_EHLO, "client.example" },
	{ "HeLo x", 0, 0, V_HELO, "x" },
	{ "LHLO lmtp.example", 0, 0, V_LHLO, "lmtp.example" },
	{ "MAIL FROM:<a@b.example> SIZE=10", 0, 0, V_MAIL,
	    "FROM:<a@b.example> SIZE=10" },
	{ "RCPT TO:<a@b.example>", 0, 0, V_RCPT, "TO:<a@b.example>" },
	/* only the first space separates; the rest belongs to the args */
	{ "RCPT  TO:<a@b.example>", 0, 0, V_RCPT, " TO:<a@b.example>" },
	{ "DATA", 0, 0, V_DATA, "" },
	{ "data ", 0, 0, V_DATA, "" },
	{ "BDAT 100 LAST", 0, 0, V_BDAT, "100 LAST" },
	{ "RSET", 0, 0, V_RSET, "" },
	{ "NOOP anything at all", 0, 0, V_NOOP, "anything at all" },
	{ "QUIT", 0, 0, V_QUIT, "" },
	{ "HELP", 0, 0, V_HELP, "" },
	{ "VRFY alice", 0, 0, V_VRFY, "alice" },
	{ "EXPN list", 0, 0, V_EXPN, "list" },
	{ "STARTTLS", 0, 0, V_STARTTLS, "" },
	{ "starttls", 0, 0, V_STARTTLS, "" },
	{ "AUTH PLAIN AGFsaWNlAHNlY3JldA==", 0, 0, V_AUTH,
	    "PLAIN AGFsaWNlAHNlY3JldA==" },
	{ "BURL imap://x LAST", 0, 0, V_BURL, "imap://x LAST" },
	{ "ETRN example.org", 0, 0, V_ETRN, "example.org" },
	/* unknown verbs: prefixes, extensions, other separators */
	{ "XYZZY plugh", 0, 0, V_UNKNOWN, "plugh" },
	{ "MAILX FROM:<a@b>", 0, 0, V_UNKNOWN, "FROM:<a@b>" },
	{ "MAI", 0, 0, V_UNKNOWN, "" },
	{ "MAIL\tFROM:<a@b>", 0, 0, V_UNKNOWN, "" },
	{ "MAIL:FROM", 0, 0, V_UNKNOWN, "" },
	{ " MAIL FROM:<a@b>", 0, 0, V_UNKNOWN, "MAIL FROM:<a@b>" },
	{ "", 0, 0, V_UNKNOWN, "" },
	{ "?", 0, 0, V_UNKNOWN, "" },
	/* RFC 5321 2.3.8: no bare CR in a command; no NUL either */
	{ "MAIL\rFROM:<a@b>", 0, -1, V_UNKNOWN, NULL },
	{ "NOOP\r", 0, -1, V_UNKNOWN, NULL },
	{ "\r", 0, -1, V_UNKNOWN, NULL },
	{ "NOOP a\0b", 8, -1, V_UNKNOWN, NULL },
	{ "\0", 1, -1, V_UNKNOWN, NULL },
	{ "QUIT\0", 5, -1, V_UNKNOWN, NULL },
};

static void
test_parse_command(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(command_cases); i++) {
		const struct command_case *c = &command_cases[i];
		size_t len = c->len ? c->len : strlen(c->line);
		char *line = dup_bytes(c->line, len);
		struct smtp_command cmd;
		int rc;

		memset(&cmd, 0xa5, sizeof(cmd));
		rc = smtp_parse_command(line, len, &cmd);
		if (rc != c->rc)
			fail_msg("case %zu \"%s\": rc %d, want %d", i, c->line,
			    rc, c->rc);
		if (rc == 0) {
			if (cmd.verb != c->verb)
				fail_msg("case %zu \"%s\": verb %d, want %d", i,
				    c->line, cmd.verb, c->verb);
			assert_true(cmd.args >= line && cmd.args <= line + len);
			assert_string_equal(cmd.args, c->args);
		} else {
			assert_int_equal(cmd.verb, V_UNKNOWN);
		}
		free(line);
	}
}

/* Every verb's name parses back to the verb, in any case, with and without
 * arguments; out-of-range verbs have the name "?". */
static void
test_verb_names(void **state)
{
	int v;

	(void)state;
	assert_string_equal(smtp_verb_name(V_MAIL), "MAIL");
	assert_string_equal(smtp_verb_name(V_STARTTLS), "STARTTLS");
	assert_string_equal(smtp_verb_name(V_UNKNOWN), "?");
	assert_string_equal(smtp_verb_name(V_VERB_COUNT), "?");
	assert_string_equal(smtp_verb_name((enum smtp_verb)1000), "?");
	for (v = 1; v < V_VERB_COUNT; v++) {
		const char *name = smtp_verb_name((enum smtp_verb)v);
		struct smtp_command cmd;
		char line[64];
		size_t k;
		int n;

		assert_true(strlen(name) >= 4);
		n = snprintf(line, sizeof(line), "%s", name);
		assert_int_equal(smtp_parse_command(line, (size_t)n, &cmd), 0);
		assert_int_equal(cmd.verb, v);
		assert_string_equal(cmd.args, "");

		for (k = 0; line[k]; k++)
			line[k] = (char)(line[k] - 'A' + 'a');
		n = snprintf(line + k, sizeof(line) - k, " arg one") + (int)k;
		assert_int_equal(smtp_parse_command(line, (size_t)n, &cmd), 0);
		assert_int_equal(cmd.verb, v);
		assert_string_equal(cmd.args, "arg one");
	}
}

/* ------------------------------------------------------------------ */
/* smtp_parse_path_args */

#define MAIL	1
#define RCPT	0

struct path_case {
	const char *args;
	int is_mail;
	int utf8;
	enum smtp_parse_error err;
	const char *path;		/* when OK */
	size_t nparams;
	const char *params[4][2];	/* key, value (NULL: none) */
};

static const struct path_case path_cases[] = {
	/* plain paths */
	{ "FROM:<alice@example.com>", MAIL, 0, SMTP_PARSE_OK,
	    "alice@example.com", 0, { { NULL, NULL } } },
	{ "from:<alice@example.com>", MAIL, 0, SMTP_PARSE_OK,
	    "alice@example.com", 0, { { NULL, NULL } } },
	{ "TO:<bob@example.org>", RCPT, 0, SMTP_PARSE_OK,
	    "bob@example.org", 0, { { NULL, NULL } } },
	{ "tO:<bob@example.org>", RCPT, 0, SMTP_PARSE_OK,
	    "bob@example.org", 0, { { NULL, NULL } } },
	/* one space after the colon is tolerated, two are not */
	{ "FROM: <alice@example.com>", MAIL, 0, SMTP_PARSE_OK,
	    "alice@example.com", 0, { { NULL, NULL } } },
	{ "FROM:  <alice@example.com>", MAIL, 0, SMTP_PARSE_SYNTAX,
	    NULL, 0, { { NULL, NULL } } },
	{ "FROM :<alice@example.com>", MAIL, 0, SMTP_PARSE_SYNTAX,
	    NULL, 0, { { NULL, NULL } } },
	/* null path: MAIL only (RFC 5321 4.1.1.2, 4.5.5) */
	{ "FROM:<>", MAIL, 0, SMTP_PARSE_OK, "", 0, { { NULL, NULL } } },
	{ "FROM:<> BODY=8BITMIME", MAIL, 0, SMTP_PARSE_OK, "", 1,
	    { { "BODY", "8BITMIME" } } },
	{ "TO:<>", RCPT, 0, SMTP_PARSE_BAD_PATH, NULL, 0, { { NULL, NULL } } },
	/* <Postmaster> without a domain: RCPT only (RFC 5321 4.1.1.3) */
	{ "TO:<Postmaster>", RCPT, 0, SMTP_PARSE_OK, "Postmaster", 0,
	    { { NULL, NULL } } },
	{ "TO:<postmaster>", RCPT, 0, SMTP_PARSE_OK, "postmaster", 0,
	    { { NULL, NULL } } },
	{ "TO:<POSTMASTER> NOTIFY=NEVER", RCPT, 0, SMTP_PARSE_OK,
	    "POSTMASTER", 1, { { "NOTIFY", "NEVER" } } },
	{ "FROM:<postmaster>", MAIL, 0, SMTP_PARSE_BAD_PATH, NULL, 0,
	    { { NULL, NULL } } },
	{ "TO:<postmasters>", RCPT, 0, SMTP_PARSE_BAD_PATH, NULL, 0,
	    { { NULL, NULL } } },
	/* source routes are skipped (RFC 5321 4.1.2, C.1) */
	{ "FROM:<@relay.example,@r2.example:alice@example.com>", MAIL, 0,
	    SMTP_PARSE_OK, "alice@example.com", 0, { { NULL, NULL } } },
	{ "TO:<@relay.example:bob@example.org>", RCPT, 0, SMTP_PARSE_OK,
	    "bob@example.org", 0, { { NULL, NULL } } },
	{ "TO:<@relay.example>", RCPT, 0, SMTP_PARSE_BAD_PATH, NULL, 0,
	    { { NULL, NULL } } },
	/* a route before an empty mailbox is not the null path <> */
	{ "FROM:<@relay.example:>", MAIL, 0, SMTP_PARSE_BAD_PATH, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<@a,@b:>", MAIL, 0, SMTP_PARSE_BAD_PATH, NULL, 0,
	    { { NULL, NULL } } },
	/* quoted local parts; '>' and '"' inside them */
	{ "FROM:<\"john doe\"@example.com>", MAIL, 0, SMTP_PARSE_OK,
	    "\"john doe\"@example.com", 0, { { NULL, NULL } } },
	{ "FROM:<\"a>b\"@example.com> SIZE=5", MAIL, 0, SMTP_PARSE_OK,
	    "\"a>b\"@example.com", 1, { { "SIZE", "5" } } },
	{ "FROM:<\"a\\\"b\"@example.com>", MAIL, 0, SMTP_PARSE_OK,
	    "\"a\\\"b\"@example.com", 0, { { NULL, NULL } } },
	{ "FROM:<\"a@b\"@example.com>", MAIL, 0, SMTP_PARSE_OK,
	    "\"a@b\"@example.com", 0, { { NULL, NULL } } },
	{ "FROM:<\"\"@example.com>", MAIL, 0, SMTP_PARSE_OK,
	    "\"\"@example.com", 0, { { NULL, NULL } } },
	{ "FROM:<\"a\"b@example.com>", MAIL, 0, SMTP_PARSE_BAD_PATH, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<\"a\\\"@example.com>", MAIL, 0, SMTP_PARSE_SYNTAX, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<\"tab\there\"@example.com>", MAIL, 0, SMTP_PARSE_BAD_PATH,
	    NULL, 0, { { NULL, NULL } } },
	/* address literals */
	{ "TO:<a@[192.0.2.1]>", RCPT, 0, SMTP_PARSE_OK, "a@[192.0.2.1]", 0,
	    { { NULL, NULL } } },
	{ "TO:<a@[IPv6:2001:db8::1]>", RCPT, 0, SMTP_PARSE_OK,
	    "a@[IPv6:2001:db8::1]", 0, { { NULL, NULL } } },
	{ "TO:<a@[]>", RCPT, 0, SMTP_PARSE_BAD_PATH, NULL, 0,
	    { { NULL, NULL } } },
	{ "TO:<a@[1.2.3.4>", RCPT, 0, SMTP_PARSE_BAD_PATH, NULL, 0,
	    { { NULL, NULL } } },
	{ "TO:<a@[1 2]>", RCPT, 0, SMTP_PARSE_BAD_PATH, NULL, 0,
	    { { NULL, NULL } } },
	{ "TO:<a@[1\\2]>", RCPT, 0, SMTP_PARSE_BAD_PATH, NULL, 0,
	    { { NULL, NULL } } },
	/* malformed mailboxes */
	{ "FROM:<alice>", MAIL, 0, SMTP_PARSE_BAD_PATH, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<alice@>", MAIL, 0, SMTP_PARSE_BAD_PATH, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<a..b@example.com>", MAIL, 0, SMTP_PARSE_BAD_PATH, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<.a@example.com>", MAIL, 0, SMTP_PARSE_BAD_PATH, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<a.@example.com>", MAIL, 0, SMTP_PARSE_BAD_PATH, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<a b@example.com>", MAIL, 0, SMTP_PARSE_BAD_PATH, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<a(b)@example.com>", MAIL, 0, SMTP_PARSE_BAD_PATH, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<a@-example.com>", MAIL, 0, SMTP_PARSE_BAD_PATH, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<a@example-.com>", MAIL, 0, SMTP_PARSE_BAD_PATH, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<a@example..com>", MAIL, 0, SMTP_PARSE_BAD_PATH, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<a@.example.com>", MAIL, 0, SMTP_PARSE_BAD_PATH, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<a@example.com.>", MAIL, 0, SMTP_PARSE_BAD_PATH, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<a@exa_mple.com>", MAIL, 0, SMTP_PARSE_BAD_PATH, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<a@ex-ample.com>", MAIL, 0, SMTP_PARSE_OK, "a@ex-ample.com",
	    0, { { NULL, NULL } } },
	{ "FROM:<a+tag@123.example>", MAIL, 0, SMTP_PARSE_OK,
	    "a+tag@123.example", 0, { { NULL, NULL } } },
	{ "FROM:<!#$%&'*+-/=?^_`{|}~@example.com>", MAIL, 0, SMTP_PARSE_OK,
	    "!#$%&'*+-/=?^_`{|}~@example.com", 0, { { NULL, NULL } } },
	/* UTF-8 only with SMTPUTF8 (RFC 6531 3.3) */
	{ "FROM:<j\xc3\xb6rg@b\xc3\xbc" "cher.example>", MAIL, 0,
	    SMTP_PARSE_BAD_PATH, NULL, 0, { { NULL, NULL } } },
	{ "FROM:<j\xc3\xb6rg@b\xc3\xbc" "cher.example>", MAIL, 1, SMTP_PARSE_OK,
	    "j\xc3\xb6rg@b\xc3\xbc" "cher.example", 0, { { NULL, NULL } } },
	{ "FROM:<\"j\xc3\xb6rg\"@example.com>", MAIL, 0, SMTP_PARSE_BAD_PATH,
	    NULL, 0, { { NULL, NULL } } },
	{ "FROM:<\"j\xc3\xb6rg\"@example.com>", MAIL, 1, SMTP_PARSE_OK,
	    "\"j\xc3\xb6rg\"@example.com", 0, { { NULL, NULL } } },
	/* missing pieces, junk */
	{ "FROM:alice@example.com", MAIL, 0, SMTP_PARSE_SYNTAX, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<alice@example.com", MAIL, 0, SMTP_PARSE_SYNTAX, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:", MAIL, 0, SMTP_PARSE_SYNTAX, NULL, 0, { { NULL, NULL } } },
	{ "", MAIL, 0, SMTP_PARSE_SYNTAX, NULL, 0, { { NULL, NULL } } },
	{ "FRO", MAIL, 0, SMTP_PARSE_SYNTAX, NULL, 0, { { NULL, NULL } } },
	{ "TO:<bob@example.org>", MAIL, 0, SMTP_PARSE_SYNTAX, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<alice@example.com>", RCPT, 0, SMTP_PARSE_SYNTAX, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<alice@example.com>SIZE=1", MAIL, 0, SMTP_PARSE_SYNTAX, NULL,
	    0, { { NULL, NULL } } },
	{ "FROM:<alice@example.com>>", MAIL, 0, SMTP_PARSE_SYNTAX, NULL, 0,
	    { { NULL, NULL } } },
	/* parameters (RFC 5321 4.1.2 esmtp-param) */
	{ "FROM:<a@b.example> SIZE=1000 BODY=8BITMIME", MAIL, 0, SMTP_PARSE_OK,
	    "a@b.example", 2, { { "SIZE", "1000" }, { "BODY", "8BITMIME" } } },
	{ "FROM:<a@b.example> SMTPUTF8", MAIL, 0, SMTP_PARSE_OK,
	    "a@b.example", 1, { { "SMTPUTF8", NULL } } },
	{ "FROM:<a@b.example>   size=1   smtputf8  ", MAIL, 0, SMTP_PARSE_OK,
	    "a@b.example", 2, { { "size", "1" }, { "smtputf8", NULL } } },
	{ "FROM:<a@b.example> ", MAIL, 0, SMTP_PARSE_OK, "a@b.example", 0,
	    { { NULL, NULL } } },
	{ "TO:<a@b.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40b.example",
	    RCPT, 0, SMTP_PARSE_OK, "a@b.example", 2,
	    { { "NOTIFY", "SUCCESS,FAILURE" }, { "ORCPT", "rfc822;a+40b.example" } } },
	{ "FROM:<a@b.example> X-1=2 9Z", MAIL, 0, SMTP_PARSE_OK,
	    "a@b.example", 2, { { "X-1", "2" }, { "9Z", NULL } } },
	{ "FROM:<a@b.example> =x", MAIL, 0, SMTP_PARSE_PARAMS, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<a@b.example> SIZE=", MAIL, 0, SMTP_PARSE_PARAMS, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<a@b.example> -X", MAIL, 0, SMTP_PARSE_PARAMS, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<a@b.example> X_Y", MAIL, 0, SMTP_PARSE_PARAMS, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<a@b.example> A=b=c", MAIL, 0, SMTP_PARSE_PARAMS, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<a@b.example> ENVID=a\x7f", MAIL, 0, SMTP_PARSE_PARAMS, NULL,
	    0, { { NULL, NULL } } },
	{ "FROM:<a@b.example> ENVID=a\tb", MAIL, 0, SMTP_PARSE_PARAMS, NULL, 0,
	    { { NULL, NULL } } },
	{ "FROM:<a@b.example> ENVID=caf\xc3\xa9", MAIL, 0, SMTP_PARSE_PARAMS,
	    NULL, 0, { { NULL, NULL } } },
	{ "FROM:<a@b.example> ENVID=caf\xc3\xa9", MAIL, 1, SMTP_PARSE_OK,
	    "a@b.example", 1, { { "ENVID", "caf\xc3\xa9" } } },
	{ "FROM:<a@b.example> K\xc3\xa9Y=1", MAIL, 1, SMTP_PARSE_PARAMS, NULL,
	    0, { { NULL, NULL } } },
};

static void
check_path_case(size_t i, const struct path_case *c)
{
	struct smtp_path_args out;
	enum smtp_parse_error err;
	char *args = dup_bytes(c->args, strlen(c->args));
	size_t k;

	err = smtp_parse_path_args(args, c->is_mail ? "FROM:" : "TO:",
	    c->is_mail, c->utf8, &out);
	if (err != c->err)
		fail_msg("case %zu \"%s\": error %d, want %d", i, c->args,
		    err, c->err);
	if (err == SMTP_PARSE_OK) {
		assert_non_null(out.path);
		assert_string_equal(out.path, c->path);
		if (out.param_count != c->nparams)
			fail_msg("case %zu \"%s\": %zu params, want %zu", i,
			    c->args, out.param_count, c->nparams);
		for (k = 0; k < c->nparams; k++) {
			assert_string_equal(out.params[k].key, c->params[k][0]);
			if (c->params[k][1] == NULL)
				assert_null(out.params[k].value);
			else {
				assert_non_null(out.params[k].value);
				assert_string_equal(out.params[k].value,
				    c->params[k][1]);
			}
		}
	}
	free(args);
}

static void
test_path_args(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(path_cases); i++)
		check_path_case(i, &path_cases[i]);
}

/* SMTP_MAX_PARAMS parameters are fine, one more is not. */
static void
test_path_param_count(void **state)
{
	char buf[1024];
	struct smtp_path_args out;
	size_t n, k;
	int len;

	(void)state;
	for (n = SMTP_MAX_PARAMS - 1; n <= SMTP_MAX_PARAMS + 1; n++) {
		len = snprintf(buf, sizeof(buf), "FROM:<a@b.example>");
		for (k = 0; k < n; k++)
			len += snprintf(buf + len, sizeof(buf) - (size_t)len,
			    " P%zu=v%zu", k, k);
		if (n <= SMTP_MAX_PARAMS) {
			assert_int_equal(smtp_parse_path_args(buf, "FROM:", 1,
			    0, &out), SMTP_PARSE_OK);
			assert_int_equal(out.param_count, n);
			assert_string_equal(out.params[n - 1].value,
			    n == SMTP_MAX_PARAMS ? "v15" : "v14");
		} else {
			assert_int_equal(smtp_parse_path_args(buf, "FROM:", 1,
			    0, &out), SMTP_PARSE_PARAMS);
		}
	}
}

/* Fill buf with n label characters "aaa.aaa..." that form a valid domain of
 * labels of 49 octets. */
static void
make_domain(char *buf, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		buf[i] = (i % 50 == 49) ? '.' : 'd';
	assert_true(n > 0 && buf[n - 1] != '.');
	buf[n] = '\0';
}

/* RFC 5321 4.5.3.1.3: the path, with its <>, is at most 256 octets;
 * 4.5.3.1.1: the local part at most 64; 4.5.3.1.2: labels at most 63. */
static void
test_path_limits(void **state)
{
	char mbox[600], args[700];
	struct smtp_path_args out;
	size_t len;

	(void)state;
	for (len = 250; len <= 258; len++) {
		enum smtp_parse_error want =
		    len + 2 <= SMTP_PATH_MAX ? SMTP_PARSE_OK : SMTP_PARSE_BAD_PATH;

		memset(mbox, 'l', 64);
		mbox[64] = '@';
		make_domain(mbox + 65, len - 65);
		assert_int_equal(strlen(mbox), len);
		/* valid as a mailbox by itself: only the path limit bites */
		assert_int_equal(smtp_mailbox_valid(mbox, len, 0), 1);
		snprintf(args, sizeof(args), "TO:<%s> NOTIFY=NEVER", mbox);
		if (smtp_parse_path_args(args, "TO:", 0, 0, &out) != want)
			fail_msg("mailbox of %zu octets: want %d", len, want);
		if (want == SMTP_PARSE_OK) {
			assert_string_equal(out.path, mbox);
			assert_int_equal(out.param_count, 1);
		}
	}

	/* local part: 64 ok, 65 not */
	memset(mbox, 'l', 64);
	strcpy(mbox + 64, "@example.com");
	assert_int_equal(smtp_mailbox_valid(mbox, strlen(mbox), 0), 1);
	memset(mbox, 'l', 65);
	strcpy(mbox + 65, "@example.com");
	assert_int_equal(smtp_mailbox_valid(mbox, strlen(mbox), 0), 0);

	/* label: 63 ok, 64 not */
	strcpy(mbox, "a@");
	memset(mbox + 2, 'x', 63);
	strcpy(mbox + 65, ".example");
	assert_int_equal(smtp_mailbox_valid(mbox, strlen(mbox), 0), 1);
	strcpy(mbox, "a@");
	memset(mbox + 2, 'x', 64);
	strcpy(mbox + 66, ".example");
	assert_int_equal(smtp_mailbox_valid(mbox, strlen(mbox), 0), 0);
}

/* The parser cuts the line: the path and each key and value are separate
 * NUL-terminated strings inside the caller's buffer. */
static void
test_path_points_into_line(void **state)
{
	char args[] = "TO:<bob@example.org> NOTIFY=NEVER ORCPT=rfc822;bob+40x";
	struct smtp_path_args out;

	(void)state;
	assert_int_equal(smtp_parse_path_args(args, "TO:", 0, 0, &out),
	    SMTP_PARSE_OK);
	assert_ptr_equal(out.path, args + 4);
	assert_ptr_equal(out.params[0].key, args + 21);
	assert_ptr_equal(out.params[0].value, args + 28);
	assert_ptr_equal(out.params[1].key, args + 34);
	assert_string_equal(out.params[1].value, "rfc822;bob+40x");
}

/* ------------------------------------------------------------------ */
/* smtp_mailbox_valid */

struct mailbox_case {
	const char *mbox;
	int utf8;
	int valid;
};

static const struct mailbox_case mailbox_cases[] = {
	{ "a@b", 0, 1 },
	{ "a@b.c", 0, 1 },
	{ "first.last@sub.example.com", 0, 1 },
	{ "\"quoted string\"@example.com", 0, 1 },
	{ "\"q\\\\uote\"@example.com", 0, 1 },
	{ "\"a\\\x01\"@example.com", 0, 0 },
	{ "\"a\x7f\"@example.com", 0, 0 },
	{ "a@[192.0.2.1]", 0, 1 },
	{ "a@[IPv6:::1]", 0, 1 },
	{ "a@[x]", 0, 1 },
	{ "a@[a[b]", 0, 0 },
	{ "a@[\x7f]", 0, 0 },
	{ "", 0, 0 },
	{ "@", 0, 0 },
	{ "@example.com", 0, 0 },
	{ "a@", 0, 0 },
	{ "a", 0, 0 },
	{ "a@@b", 0, 0 },
	{ "a@b@c", 0, 0 },
	{ "a@b..c", 0, 0 },
	{ "a@b.", 0, 0 },
	{ "a@-b", 0, 0 },
	{ "a@b-", 0, 0 },
	{ "a@b-.c", 0, 0 },
	{ "a@b.-c", 0, 0 },
	{ "a@b--c", 0, 1 },
	{ "a@1.2.3.4", 0, 1 },
	{ "a.b.c@d", 0, 1 },
	{ "a..b@d", 0, 0 },
	{ "a\"b@d", 0, 0 },
	{ "a\\b@d", 0, 0 },
	{ "a,b@d", 0, 0 },
	{ "a:b@d", 0, 0 },
	{ "a;b@d", 0, 0 },
	{ "a<b@d", 0, 0 },
	{ "\xc3\xa9@d", 0, 0 },
	{ "\xc3\xa9@d", 1, 1 },
	{ "a@\xc3\xa9.example", 0, 0 },
	{ "a@\xc3\xa9.example", 1, 1 },
	{ "a\x01@d", 1, 0 },
	{ "a @d", 1, 0 },
};

static void
test_mailbox_valid(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(mailbox_cases); i++) {
		const struct mailbox_case *c = &mailbox_cases[i];

		if (smtp_mailbox_valid(c->mbox, strlen(c->mbox), c->utf8) !=
		    c->valid)
			fail_msg("case %zu \"%s\" utf8=%d: want %d", i, c->mbox,
			    c->utf8, c->valid);
	}
	/* Only len bytes count, not the NUL. */
	assert_int_equal(smtp_mailbox_valid("a@b.example junk", 11, 0), 1);
	assert_int_equal(smtp_mailbox_valid("a@b.example", 2, 0), 0);
}

/* ------------------------------------------------------------------ */
/* smtp_xtext_valid (RFC 3461 4) */

struct xtext_case {
	const char *s;
	int valid;
};

static const struct xtext_case xtext_cases[] = {
	{ "", 1 },
	{ "abc", 1 },
	{ "rfc822;alice+40example.com", 1 },
	{ "+2B", 1 },
	{ "a+2Bb+3D", 1 },
	{ "!\"#$%&'()*,-./:;<>?@[\\]^_`{|}~", 1 },
	{ "+2b", 0 },		/* hex digits are upper case */
	{ "+a0", 0 },
	{ "+2", 0 },
	{ "+", 0 },
	{ "a+", 0 },
	{ "+G0", 0 },
	{ "+0G", 0 },
	{ "a=b", 0 },
	{ "a b", 0 },
	{ "a\tb", 0 },
	{ "a\x7f", 0 },
	{ "caf\xc3\xa9", 0 },
};

static void
test_xtext_valid(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(xtext_cases); i++)
		if (smtp_xtext_valid(xtext_cases[i].s) != xtext_cases[i].valid)
			fail_msg("xtext \"%s\": want %d", xtext_cases[i].s,
			    xtext_cases[i].valid);
}

/* ------------------------------------------------------------------ */
/* smtp_parse_bdat (RFC 3030 2: bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ]) */

struct bdat_case {
	const char *args;
	int rc;
	uint64_t size;
	int last;
};

static const struct bdat_case bdat_cases[] = {
	{ "0", 0, 0, 0 },
	{ "1", 0, 1, 0 },
	{ "1000", 0, 1000, 0 },
	{ "0 LAST", 0, 0, 1 },
	{ "1000 LAST", 0, 1000, 1 },
	{ "1000 last", 0, 1000, 1 },
	{ "007", 0, 7, 0 },
	{ "9999999999999999999", 0, UINT64_C(9999999999999999999), 0 },
	{ "18446744073709551615", -1, 0, 0 },
	{ "99999999999999999999", -1, 0, 0 },
	{ "", -1, 0, 0 },
	{ "LAST", -1, 0, 0 },
	{ " 10", -1, 0, 0 },
	{ "10 ", -1, 0, 0 },
	{ "10  LAST", -1, 0, 0 },
	{ "10 LAST ", -1, 0, 0 },
	{ "10 LASTX", -1, 0, 0 },
	{ "10 LAS", -1, 0, 0 },
	{ "10\tLAST", -1, 0, 0 },
	{ "-1", -1, 0, 0 },
	{ "+1", -1, 0, 0 },
	{ "1e3", -1, 0, 0 },
	{ "0x10", -1, 0, 0 },
	{ "1,000", -1, 0, 0 },
};

static void
test_parse_bdat(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(bdat_cases); i++) {
		const struct bdat_case *c = &bdat_cases[i];
		uint64_t size = 12345;
		int last = 7, rc;

		rc = smtp_parse_bdat(c->args, &size, &last);
		if (rc != c->rc)
			fail_msg("BDAT \"%s\": rc %d, want %d", c->args, rc,
			    c->rc);
		if (rc == 0) {
			if (size != c->size || last != c->last)
				fail_msg("BDAT \"%s\": %llu/%d", c->args,
				    (unsigned long long)size, last);
		}
	}
}

/* ------------------------------------------------------------------ */
/* smtp_helo_valid */

static void
test_helo_valid(void **state)
{
	static const struct { const char *arg; int valid; } cases[] = {
		{ "client.example", 1 },
		{ "[192.0.2.1]", 1 },
		{ "[IPv6:2001:db8::1]", 1 },
		{ "localhost", 1 },
		{ "x", 1 },
		{ "", 0 },
		{ "a b", 0 },
		{ "a\tb", 0 },
		{ "a\x7f", 0 },
		{ "a\x01", 0 },
		{ "caf\xc3\xa9.example", 0 },
	};
	char longarg[300];
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(cases); i++)
		if (smtp_helo_valid(cases[i].arg) != cases[i].valid)
			fail_msg("HELO \"%s\": want %d", cases[i].arg,
			    cases[i].valid);
	memset(longarg, 'h', 255);
	longarg[255] = '\0';
	assert_int_equal(smtp_helo_valid(longarg), 1);
	longarg[255] = 'h';
	longarg[256] = '\0';
	assert_int_equal(smtp_helo_valid(longarg), 0);
}

/* ------------------------------------------------------------------ */
/* smtp_parse_etrn (RFC 1985 5, 5.3; domains per RFC 5321 4.1.2) */

struct etrn_case {
	const char *args;
	enum smtp_etrn_result rc;
	enum smtp_etrn_kind kind;
	const char *name;	/* expected name (after the option character) */
	unsigned labels;
};

static const struct etrn_case etrn_cases[] = {
	/* nodes: fully qualified, two labels or more */
	{ "example.org", SMTP_ETRN_OK, SMTP_ETRN_NODE, "example.org", 2 },
	{ "mail.example.org", SMTP_ETRN_OK, SMTP_ETRN_NODE, "mail.example.org",
	    3 },
	{ "sigurd.innosoft.com", SMTP_ETRN_OK, SMTP_ETRN_NODE,
	    "sigurd.innosoft.com", 3 },
	{ "MiXeD.Example.ORG", SMTP_ETRN_OK, SMTP_ETRN_NODE,
	    "MiXeD.Example.ORG", 3 },
	{ "a-b.c-d.example", SMTP_ETRN_OK, SMTP_ETRN_NODE, "a-b.c-d.example",
	    3 },
	{ "a--b.example", SMTP_ETRN_OK, SMTP_ETRN_NODE, "a--b.example", 2 },
	{ "123.example", SMTP_ETRN_OK, SMTP_ETRN_NODE, "123.example", 2 },
	{ "3com.example", SMTP_ETRN_OK, SMTP_ETRN_NODE, "3com.example", 2 },
	{ "x.y", SMTP_ETRN_OK, SMTP_ETRN_NODE, "x.y", 2 },
	{ "xn--bcher-kva.example", SMTP_ETRN_OK, SMTP_ETRN_NODE,
	    "xn--bcher-kva.example", 2 },
	{ "example.c0m", SMTP_ETRN_OK, SMTP_ETRN_NODE, "example.c0m", 2 },
	/* RFC 1985 7: "ETRN localname" is a 501 */
	{ "localname", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "com", SMTP_ETRN_BAD, 0, NULL, 0 },
	/* @domain: one label or more */
	{ "@example.org", SMTP_ETRN_OK, SMTP_ETRN_DOMAIN, "example.org", 2 },
	{ "@foo.com", SMTP_ETRN_OK, SMTP_ETRN_DOMAIN, "foo.com", 2 },
	{ "@com", SMTP_ETRN_OK, SMTP_ETRN_DOMAIN, "com", 1 },
	{ "@a.b.c.d.e.f.g.foo.com", SMTP_ETRN_OK, SMTP_ETRN_DOMAIN,
	    "a.b.c.d.e.f.g.foo.com", 9 },
	/* #queue */
	{ "#uucp", SMTP_ETRN_OK, SMTP_ETRN_QUEUE, "uucp", 0 },
	{ "#q1", SMTP_ETRN_OK, SMTP_ETRN_QUEUE, "q1", 0 },
	{ "#Queue_2.low-prio", SMTP_ETRN_OK, SMTP_ETRN_QUEUE,
	    "Queue_2.low-prio", 0 },
	{ "#0", SMTP_ETRN_OK, SMTP_ETRN_QUEUE, "0", 0 },
	/* no argument: 500 */
	{ "", SMTP_ETRN_EMPTY, 0, NULL, 0 },
	/* everything else: 501 */
	{ "@", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "#", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "@@example.org", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "#@example.org", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "@#q", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "##q", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ " example.org", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "example.org ", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "example.org extra", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "example.org\t", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "@ example.org", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "example.org.", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ ".example.org", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "example..org", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "-example.org", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "example-.org", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "example.org-", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "example.-org", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "ex_ample.org", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "*.example.org", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "@*.example.org", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "exa mple.org", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "[192.0.2.1]", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "[IPv6:2001:db8::1]", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "192.0.2.1", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "@192.0.2", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "example.123", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "<example.org>", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "user@example.org", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "caf\xc3\xa9.example", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "example.org\x7f", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "#-q", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "#_q", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "#.q", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "#q q", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "#q;rm", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "#q|x", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "#$(id)", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "#q`id`", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "#q'x", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "#q/x", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "#q+x", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "#q%x", SMTP_ETRN_BAD, 0, NULL, 0 },
	{ "#q\x01", SMTP_ETRN_BAD, 0, NULL, 0 },
};

static void
test_parse_etrn(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(etrn_cases); i++) {
		const struct etrn_case *c = &etrn_cases[i];
		struct smtp_etrn e;
		enum smtp_etrn_result rc;

		rc = smtp_parse_etrn(c->args, &e);
		if (rc != c->rc)
			fail_msg("ETRN \"%s\": rc %d, want %d", c->args, rc,
			    c->rc);
		if (rc != SMTP_ETRN_OK)
			continue;
		if (e.kind != c->kind || e.labels != c->labels ||
		    e.name_len != strlen(c->name) ||
		    memcmp(e.name, c->name, e.name_len) != 0)
			fail_msg("ETRN \"%s\": kind %d labels %u name \"%.*s\"",
			    c->args, e.kind, e.labels, (int)e.name_len,
			    e.name);
		/* the name points into the argument, after the option */
		assert_ptr_equal(e.name, c->args +
		    (c->kind == SMTP_ETRN_NODE ? 0 : 1));
	}
}

/* Lengths: labels of 63, domains of 255, queues of 64. */
static void
test_parse_etrn_limits(void **state)
{
	char buf[600];
	struct smtp_etrn e;
	size_t n;

	(void)state;
	/* a 63-octet label is fine, 64 is not (RFC 1035 2.3.4) */
	memset(buf, 'a', 63);
	memcpy(buf + 63, ".example", 9);
	assert_int_equal(smtp_parse_etrn(buf, &e), SMTP_ETRN_OK);
	memset(buf, 'a', 64);
	memcpy(buf + 64, ".example", 9);
	assert_int_equal(smtp_parse_etrn(buf, &e), SMTP_ETRN_BAD);
	/* a last label of 63 */
	memcpy(buf, "x.", 2);
	memset(buf + 2, 'b', 63);
	buf[65] = '\0';
	assert_int_equal(smtp_parse_etrn(buf, &e), SMTP_ETRN_OK);
	buf[65] = 'b';
	buf[66] = '\0';
	assert_int_equal(smtp_parse_etrn(buf, &e), SMTP_ETRN_BAD);

	/* 255 octets in all (RFC 5321 4.5.3.1.2): "a.a.a....a" */
	for (n = 0; n < 255; n++)
		buf[n] = n % 2 ? '.' : 'a';
	buf[255] = '\0';
	assert_int_equal(smtp_parse_etrn(buf, &e), SMTP_ETRN_OK);
	assert_int_equal(e.labels, 128);
	/* 257 is too long */
	buf[255] = '.';
	buf[256] = 'a';
	buf[257] = '\0';
	assert_int_equal(smtp_parse_etrn(buf, &e), SMTP_ETRN_BAD);
	/* "@" and a domain of 255: fine; of 257: not */
	buf[0] = '@';
	for (n = 1; n < 256; n++)
		buf[n] = n % 2 ? 'a' : '.';
	buf[256] = '\0';
	assert_int_equal(smtp_parse_etrn(buf, &e), SMTP_ETRN_OK);
	assert_int_equal(e.kind, SMTP_ETRN_DOMAIN);
	assert_int_equal(e.name_len, 255);
	buf[256] = '.';
	buf[257] = 'a';
	buf[258] = '\0';
	assert_int_equal(smtp_parse_etrn(buf, &e), SMTP_ETRN_BAD);

	/* queues: up to SMTP_ETRN_QUEUE_MAX */
	buf[0] = '#';
	memset(buf + 1, 'q', SMTP_ETRN_QUEUE_MAX);
	buf[1 + SMTP_ETRN_QUEUE_MAX] = '\0';
	assert_int_equal(smtp_parse_etrn(buf, &e), SMTP_ETRN_OK);
	assert_int_equal(e.name_len, SMTP_ETRN_QUEUE_MAX);
	buf[1 + SMTP_ETRN_QUEUE_MAX] = 'q';
	buf[2 + SMTP_ETRN_QUEUE_MAX] = '\0';
	assert_int_equal(smtp_parse_etrn(buf, &e), SMTP_ETRN_BAD);

	/* a long line of junk */
	memset(buf, 'a', sizeof(buf) - 1);
	buf[sizeof(buf) - 1] = '\0';
	assert_int_equal(smtp_parse_etrn(buf, &e), SMTP_ETRN_BAD);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_command),
		cmocka_unit_test(test_verb_names),
		cmocka_unit_test(test_path_args),
		cmocka_unit_test(test_path_param_count),
		cmocka_unit_test(test_path_limits),
		cmocka_unit_test(test_path_points_into_line),
		cmocka_unit_test(test_mailbox_valid),
		cmocka_unit_test(test_xtext_valid),
		cmocka_unit_test(test_parse_bdat),
		cmocka_unit_test(test_helo_valid),
		cmocka_unit_test(test_parse_etrn),
		cmocka_unit_test(test_parse_etrn_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
