/*
 * test_imapurl.c - table-driven tests of the IMAP URL (RFC 5092 / RFC 4467)
 * parser as BURL (RFC 4468) uses it, and of its log redaction.
 *
 * Every valid URL is also parsed from a buffer that is not NUL-terminated
 * (followed by junk), and every proper prefix of it must not parse to the
 * same result with a token.  Every invalid URL must fail with the expected
 * error and an error string that quotes no part of the URL.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "imapurl.h"

#define TOK1	"91354a473744909de610943775f92038"
#define TOK_LAB	"0179ecd2c483c22a83e49f755584e7ef6576389417"

struct valid_case {
	const char *name;
	const char *url;
	const char *user;
	const char *auth_type;
	const char *host;
	unsigned int port;
	const char *mailbox;
	uint32_t uidvalidity;
	uint32_t uid;
	const char *section;
	int has_partial;
	uint32_t poff, plen;
	int has_expire;
	long long expire;
	enum imapurl_access access;
	const char *access_user;
	const char *mech;
	const char *token;
	const char *rump;		/* expected URL prefix; "" = rump_len 0 */
};

#define NOPART	0, 0, 0
#define NOEXP	0, 0

static const struct valid_case valid_cases[] = {
	{ "rfc4467 genurlauth result",
	  "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred:internal:" TOK1,
	  "joe", "", "example.com", 143, "INBOX", 0, 20, "1.2", NOPART, NOEXP,
	  IMAPURL_ACCESS_SUBMIT, "fred", "internal", TOK1,
	  "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred" },
	{ "rfc4467 rump only",
	  "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred",
	  "joe", "", "example.com", 143, "INBOX", 0, 20, "1.2", NOPART, NOEXP,
	  IMAPURL_ACCESS_SUBMIT, "fred", "", "",
	  "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred" },
	{ "rfc4467 with expire",
	  "imap://joe@example.com/INBOX/;uid=20/;section=1.2;expire=2004-04-14T23:59:59Z;urlauth=submit+fred:internal:" TOK1,
	  "joe", "", "example.com", 143, "INBOX", 0, 20, "1.2", NOPART,
	  1, 1081987199LL, IMAPURL_ACCESS_SUBMIT, "fred", "internal", TOK1,
	  "imap://joe@example.com/INBOX/;uid=20/;section=1.2;expire=2004-04-14T23:59:59Z;urlauth=submit+fred" },
	{ "rfc4468 burl example",
	  "imap://harry@gray.example.com/outbox;uidvalidity=1078863300/;uid=25;urlauth=submit+harry:internal:" TOK1,
	  "harry", "", "gray.example.com", 143, "outbox", 1078863300, 25, "",
	  NOPART, NOEXP, IMAPURL_ACCESS_SUBMIT, "harry", "internal", TOK1,
	  "imap://harry@gray.example.com/outbox;uidvalidity=1078863300/;uid=25;urlauth=submit+harry" },
	{ "lab form",
	  "imap://alice@localhost:10143/INBOX;UIDVALIDITY=1795435210/;UID=4;URLAUTH=submit+alice:internal:" TOK_LAB,
	  "alice", "", "localhost", 10143, "INBOX", 1795435210, 4, "", NOPART,
	  NOEXP, IMAPURL_ACCESS_SUBMIT, "alice", "internal", TOK_LAB,
	  "imap://alice@localhost:10143/INBOX;UIDVALIDITY=1795435210/;UID=4;URLAUTH=submit+alice" },
	{ "section header, upper-case scheme and keywords",
	  "IMAP://bob@mail.example.org/Sent/;UID=4294967295/;SECTION=HEADER;URLAUTH=user+bob:INTERNAL:" TOK1,
	  "bob", "", "mail.example.org", 143, "Sent", 0, 4294967295u, "HEADER",
	  NOPART, NOEXP, IMAPURL_ACCESS_USER, "bob", "INTERNAL", TOK1,
	  "IMAP://bob@mail.example.org/Sent/;UID=4294967295/;SECTION=HEADER;URLAUTH=user+bob" },
	{ "section text and partial",
	  "imap://h.example/INBOX/;UID=7/;SECTION=TEXT/;PARTIAL=0.1024;URLAUTH=authuser:internal:" TOK1,
	  "", "", "h.example", 143, "INBOX", 0, 7, "TEXT", 1, 0, 1024, NOEXP,
	  IMAPURL_ACCESS_AUTHUSER, "", "internal", TOK1,
	  "imap://h.example/INBOX/;UID=7/;SECTION=TEXT/;PARTIAL=0.1024;URLAUTH=authuser" },
	{ "partial without section or length",
	  "imap://h/INBOX/;UID=7/;PARTIAL=4294967295;URLAUTH=anonymous:internal:" TOK1,
	  "", "", "h", 143, "INBOX", 0, 7, "", 1, 4294967295u, 0, NOEXP,
	  IMAPURL_ACCESS_ANONYMOUS, "", "internal", TOK1,
	  "imap://h/INBOX/;UID=7/;PARTIAL=4294967295;URLAUTH=anonymous" },
	{ "section header.fields",
	  "imap://h/INBOX/;UID=1/;SECTION=1.2.HEADER.FIELDS%20(SUBJECT)",
	  "", "", "h", 143, "INBOX", 0, 1, "1.2.HEADER.FIELDS (SUBJECT)",
	  NOPART, NOEXP, IMAPURL_ACCESS_NONE, "", "", "", "" },
	{ "ipv6 host with port",
	  "imap://carol@[2001:db8::1]:993/INBOX/;UID=12;URLAUTH=submit+carol:internal:" TOK1,
	  "carol", "", "[2001:db8::1]", 993, "INBOX", 0, 12, "", NOPART, NOEXP,
	  IMAPURL_ACCESS_SUBMIT, "carol", "internal", TOK1,
	  "imap://carol@[2001:db8::1]:993/INBOX/;UID=12;URLAUTH=submit+carol" },
	{ "ipv4 host",
	  "imap://192.0.2.1/INBOX/;UID=1",
	  "", "", "192.0.2.1", 143, "INBOX", 0, 1, "", NOPART, NOEXP,
	  IMAPURL_ACCESS_NONE, "", "", "", "" },
	{ "percent-encoded mailbox with spaces and hierarchy",
	  "imap://dave%40corp@h.example/Saved%20Mail/Drafts%20%26%20More/;UID=3;URLAUTH=submit+dave%40corp:internal:" TOK1,
	  "dave@corp", "", "h.example", 143, "Saved Mail/Drafts & More", 0, 3,
	  "", NOPART, NOEXP, IMAPURL_ACCESS_SUBMIT, "dave@corp", "internal",
	  TOK1,
	  "imap://dave%40corp@h.example/Saved%20Mail/Drafts%20%26%20More/;UID=3;URLAUTH=submit+dave%40corp" },
	{ "auth type and expire with offset and fraction",
	  "imap://eve;AUTH=GSSAPI@h:1/INBOX/;UID=9;EXPIRE=2026-11-23t12:00:00.123+02:30;URLAUTH=submit+eve:x-mech.1:" TOK1 TOK1,
	  "eve", "GSSAPI", "h", 1, "INBOX", 0, 9, "", NOPART, 1, 1795426200LL,
	  IMAPURL_ACCESS_SUBMIT, "eve", "x-mech.1", TOK1 TOK1,
	  "imap://eve;AUTH=GSSAPI@h:1/INBOX/;UID=9;EXPIRE=2026-11-23t12:00:00.123+02:30;URLAUTH=submit+eve" },
	{ "auth any without user, leap day, max port",
	  "imap://;auth=*@h:65535/INBOX/;UID=9;expire=2000-02-29T00:00:00z;urlauth=anonymous",
	  "", "*", "h", 65535, "INBOX", 0, 9, "", NOPART, 1, 951782400LL,
	  IMAPURL_ACCESS_ANONYMOUS, "", "", "",
	  "imap://;auth=*@h:65535/INBOX/;UID=9;expire=2000-02-29T00:00:00z;urlauth=anonymous" },
	{ "leap second",
	  "imap://h/INBOX/;UID=9;EXPIRE=2026-12-31T23:59:60Z;URLAUTH=authuser",
	  "", "", "h", 143, "INBOX", 0, 9, "", NOPART, 1, 1798761600LL,
	  IMAPURL_ACCESS_AUTHUSER, "", "", "",
	  "imap://h/INBOX/;UID=9;EXPIRE=2026-12-31T23:59:60Z;URLAUTH=authuser" },
	{ "mailbox ending in slash before uidvalidity",
	  "imap://h/a/b/;UIDVALIDITY=1/;UID=2",
	  "", "", "h", 143, "a/b/", 1, 2, "", NOPART, NOEXP,
	  IMAPURL_ACCESS_NONE, "", "", "", "" },
	{ "upper-case hex token",
	  "imap://h/INBOX/;UID=2;URLAUTH=submit+x:internal:91354A473744909DE610943775F92038",
	  "", "", "h", 143, "INBOX", 0, 2, "", NOPART, NOEXP,
	  IMAPURL_ACCESS_SUBMIT, "x", "internal",
	  "91354A473744909DE610943775F92038",
	  "imap://h/INBOX/;UID=2;URLAUTH=submit+x" },
};

struct invalid_case {
	const char *name;
	const char *url;
	enum imapurl_error err;
};

#define LONGTOK	TOK1 TOK1 TOK1 TOK1	/* 128 hex digits */

static const struct invalid_case invalid_cases[] = {
	{ "empty", "", IMAPURL_ERR_NOT_IMAP },
	{ "relative path", "/INBOX/;UID=4", IMAPURL_ERR_NOT_IMAP },
	{ "relative mailbox", "INBOX/;UID=4", IMAPURL_ERR_NOT_IMAP },
	{ "relative network-path", "//h/INBOX/;UID=4", IMAPURL_ERR_NOT_IMAP },
	{ "http", "http://h/INBOX/;UID=4", IMAPURL_ERR_NOT_IMAP },
	{ "imaps", "imaps://h/INBOX/;UID=4", IMAPURL_ERR_NOT_IMAP },
	{ "imap without slashes", "imap:INBOX/;UID=4", IMAPURL_ERR_NOT_IMAP },
	{ "imap one slash", "imap:/INBOX/;UID=4", IMAPURL_ERR_NOT_IMAP },
	{ "leading space", " imap://h/INBOX/;UID=4", IMAPURL_ERR_NOT_IMAP },
	{ "server only", "imap://h", IMAPURL_ERR_NO_UID },
	{ "server slash", "imap://h/", IMAPURL_ERR_NO_UID },
	{ "mailbox only", "imap://h/INBOX", IMAPURL_ERR_NO_UID },
	{ "mailbox uidvalidity", "imap://h/INBOX;UIDVALIDITY=5", IMAPURL_ERR_NO_UID },
	{ "message list", "imap://h/INBOX?SUBJECT%20x", IMAPURL_ERR_NO_UID },
	{ "uid without slash", "imap://h/INBOX;UID=4", IMAPURL_ERR_SYNTAX },
	{ "empty mailbox", "imap://h//;UID=4", IMAPURL_ERR_SYNTAX },
	{ "uid zero", "imap://h/INBOX/;UID=0", IMAPURL_ERR_SYNTAX },
	{ "uid leading zero", "imap://h/INBOX/;UID=04", IMAPURL_ERR_SYNTAX },
	{ "uid empty", "imap://h/INBOX/;UID=", IMAPURL_ERR_SYNTAX },
	{ "uid overflow", "imap://h/INBOX/;UID=4294967296", IMAPURL_ERR_SYNTAX },
	{ "uid huge", "imap://h/INBOX/;UID=99999999999999999999999", IMAPURL_ERR_SYNTAX },
	{ "uidvalidity zero", "imap://h/INBOX;UIDVALIDITY=0/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "partial overflow", "imap://h/INBOX/;UID=4/;PARTIAL=4294967296", IMAPURL_ERR_SYNTAX },
	{ "partial zero length", "imap://h/INBOX/;UID=4/;PARTIAL=0.0", IMAPURL_ERR_SYNTAX },
	{ "partial dot only", "imap://h/INBOX/;UID=4/;PARTIAL=1.", IMAPURL_ERR_SYNTAX },
	{ "section empty", "imap://h/INBOX/;UID=4/;SECTION=", IMAPURL_ERR_SYNTAX },
	{ "trailing junk", "imap://h/INBOX/;UID=4x", IMAPURL_ERR_SYNTAX },
	{ "query after uid", "imap://h/INBOX/;UID=4?x", IMAPURL_ERR_SYNTAX },
	{ "fragment", "imap://h/INBOX/;UID=4#x", IMAPURL_ERR_SYNTAX },
	{ "unknown parameter", "imap://h/INBOX/;UID=4;FOO=1", IMAPURL_ERR_SYNTAX },
	{ "bad percent", "imap://h/IN%ZZBOX/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "truncated percent", "imap://h/INBOX%2/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "percent at end", "imap://h/INBOX/;UID=4/;SECTION=1%", IMAPURL_ERR_SYNTAX },
	{ "percent nul", "imap://h/IN%00BOX/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "percent crlf", "imap://h/IN%0d%0aBOX/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "percent nul in user", "imap://a%00b@h/INBOX/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "raw space in mailbox", "imap://h/IN BOX/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "raw 8-bit in mailbox", "imap://h/IN\xc3\xa9/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "port zero", "imap://h:0/INBOX/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "port 65536", "imap://h:65536/INBOX/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "port huge", "imap://h:99999999999/INBOX/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "port empty", "imap://h:/INBOX/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "port not numeric", "imap://h:imap/INBOX/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "empty host", "imap:///INBOX/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "empty host after user", "imap://u@/INBOX/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "empty user", "imap://@h/INBOX/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "two at signs", "imap://u@v@h/INBOX/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "bad auth keyword", "imap://u;FOO=x@h/INBOX/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "empty auth", "imap://u;AUTH=@h/INBOX/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "bad host char", "imap://h!x/INBOX/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "bad ipv6", "imap://[2001:db8::g]/INBOX/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "unclosed ipv6", "imap://[::1/INBOX/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "empty ipv6", "imap://[]/INBOX/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "ipv6 junk after", "imap://[::1]x/INBOX/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "ipvfuture", "imap://[v1.x]/INBOX/;UID=4", IMAPURL_ERR_SYNTAX },
	{ "expire without urlauth", "imap://h/INBOX/;UID=4;EXPIRE=2004-04-14T23:59:59Z", IMAPURL_ERR_SYNTAX },
	{ "expire bad month", "imap://h/INBOX/;UID=4;EXPIRE=2004-13-14T23:59:59Z;URLAUTH=anonymous", IMAPURL_ERR_SYNTAX },
	{ "expire feb 30", "imap://h/INBOX/;UID=4;EXPIRE=2004-02-30T23:59:59Z;URLAUTH=anonymous", IMAPURL_ERR_SYNTAX },
	{ "expire feb 29 non-leap", "imap://h/INBOX/;UID=4;EXPIRE=1900-02-29T23:59:59Z;URLAUTH=anonymous", IMAPURL_ERR_SYNTAX },
	{ "expire hour 24", "imap://h/INBOX/;UID=4;EXPIRE=2004-04-14T24:00:00Z;URLAUTH=anonymous", IMAPURL_ERR_SYNTAX },
	{ "expire no zone", "imap://h/INBOX/;UID=4;EXPIRE=2004-04-14T23:59:59;URLAUTH=anonymous", IMAPURL_ERR_SYNTAX },
	{ "expire date only", "imap://h/INBOX/;UID=4;EXPIRE=2004-04-14;URLAUTH=anonymous", IMAPURL_ERR_SYNTAX },
	{ "expire space", "imap://h/INBOX/;UID=4;EXPIRE=2004-04-14 23:59:59Z;URLAUTH=anonymous", IMAPURL_ERR_SYNTAX },
	{ "expire bad offset", "imap://h/INBOX/;UID=4;EXPIRE=2004-04-14T23:59:59+0200;URLAUTH=anonymous", IMAPURL_ERR_SYNTAX },
	{ "expire empty fraction", "imap://h/INBOX/;UID=4;EXPIRE=2004-04-14T23:59:59.Z;URLAUTH=anonymous", IMAPURL_ERR_SYNTAX },
	{ "expire junk", "imap://h/INBOX/;UID=4;EXPIRE=2004-04-14T23:59:59Zx;URLAUTH=anonymous", IMAPURL_ERR_SYNTAX },
	{ "unknown access", "imap://h/INBOX/;UID=4;URLAUTH=admin:internal:" TOK1, IMAPURL_ERR_SYNTAX },
	{ "submit without user", "imap://h/INBOX/;UID=4;URLAUTH=submit+:internal:" TOK1, IMAPURL_ERR_SYNTAX },
	{ "submit bad user", "imap://h/INBOX/;UID=4;URLAUTH=submit+a%00:internal:" TOK1, IMAPURL_ERR_SYNTAX },
	{ "authuser with suffix", "imap://h/INBOX/;UID=4;URLAUTH=authusers:internal:" TOK1, IMAPURL_ERR_SYNTAX },
	{ "empty access", "imap://h/INBOX/;UID=4;URLAUTH=", IMAPURL_ERR_SYNTAX },
	{ "no mechanism", "imap://h/INBOX/;UID=4;URLAUTH=anonymous::" TOK1, IMAPURL_ERR_SYNTAX },
	{ "no token separator", "imap://h/INBOX/;UID=4;URLAUTH=anonymous:internal", IMAPURL_ERR_SYNTAX },
	{ "bad mechanism", "imap://h/INBOX/;UID=4;URLAUTH=anonymous:in_ternal:" TOK1, IMAPURL_ERR_SYNTAX },
	{ "token non-hex", "imap://h/INBOX/;UID=4;URLAUTH=anonymous:internal:91354a473744909de610943775f9203g", IMAPURL_ERR_SYNTAX },
	{ "token short", "imap://h/INBOX/;UID=4;URLAUTH=anonymous:internal:91354a473744909de610943775f9203", IMAPURL_ERR_SYNTAX },
	{ "token empty", "imap://h/INBOX/;UID=4;URLAUTH=anonymous:internal:", IMAPURL_ERR_SYNTAX },
	{ "token with colon", "imap://h/INBOX/;UID=4;URLAUTH=anonymous:internal:" TOK1 ":" TOK1, IMAPURL_ERR_SYNTAX },
	{ "token too long", "imap://h/INBOX/;UID=4;URLAUTH=anonymous:internal:" LONGTOK, IMAPURL_ERR_TOO_LONG },
	{ "mechanism too long", "imap://h/INBOX/;UID=4;URLAUTH=anonymous:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:" TOK1, IMAPURL_ERR_TOO_LONG },
	{ "urlauth twice", "imap://h/INBOX/;UID=4;URLAUTH=anonymous;URLAUTH=anonymous", IMAPURL_ERR_SYNTAX },
	{ "section after partial", "imap://h/INBOX/;UID=4/;PARTIAL=1/;SECTION=1", IMAPURL_ERR_SYNTAX },
	{ "section before uid", "imap://h/INBOX/;SECTION=1/;UID=4", IMAPURL_ERR_SYNTAX },
};

/* An error string is non-empty and mentions none of the URL's distinctive
 * pieces (mailbox, host, token), nor the URL itself. */
static void
assert_error_clean(const char *error, const char *url)
{
	assert_non_null(error);
	assert_true(error[0] != '\0');
	assert_null(strstr(error, "INBOX"));
	assert_null(strstr(error, "example"));
	assert_null(strstr(error, "9135"));
	assert_null(strstr(error, "localhost"));
	if (strlen(url) > 8)
		assert_null(strstr(error, url));
}

static void
check_valid(const struct valid_case *c, const char *buf, size_t len)
{
	struct imapurl u;
	const char *error = "unset";
	enum imapurl_error r;

	r = imapurl_parse(buf, len, &u, &error);
	if (r != IMAPURL_OK)
		fail_msg("%s: error %d (%s)", c->name, r, error);
	assert_null(error);
	assert_string_equal(u.user, c->user);
	assert_string_equal(u.auth_type, c->auth_type);
	assert_string_equal(u.host, c->host);
	assert_int_equal(u.port, c->port);
	assert_string_equal(u.mailbox, c->mailbox);
	assert_int_equal(u.uidvalidity, c->uidvalidity);
	assert_int_equal(u.uid, c->uid);
	assert_string_equal(u.section, c->section);
	assert_int_equal(u.has_partial, c->has_partial);
	assert_int_equal(u.partial_offset, c->poff);
	assert_int_equal(u.partial_length, c->plen);
	assert_int_equal(u.has_expire, c->has_expire);
	if (c->has_expire)
		assert_true((long long)u.expire == c->expire);
	assert_int_equal(u.access, c->access);
	assert_string_equal(u.access_user, c->access_user);
	assert_string_equal(u.mech, c->mech);
	assert_string_equal(u.token, c->token);
	assert_int_equal(u.rump_len, strlen(c->rump));
	assert_memory_equal(buf, c->rump, u.rump_len);
}

static void
test_valid(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]); i++) {
		const struct valid_case *c = &valid_cases[i];
		size_t len = strlen(c->url), k;
		char buf[IMAPURL_MAX_LEN + 16];

		print_message("valid: %s\n", c->name);
		check_valid(c, c->url, len);

		/* not NUL-terminated: junk right after the URL */
		memcpy(buf, c->url, len);
		memcpy(buf + len, ";UID=1 x", 8);
		check_valid(c, buf, len);

		/* no proper prefix yields a token */
		for (k = 0; k < len; k++) {
			struct imapurl u;
			const char *error = NULL;

			if (imapurl_parse(c->url, k, &u, &error) == IMAPURL_OK) {
				assert_null(error);
				assert_true(u.uid != 0);
				if (c->token[0] != '\0')
					assert_string_not_equal(u.token,
					    c->token);
			} else
				assert_error_clean(error, c->url);
		}
	}
}

static void
test_invalid(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(invalid_cases) / sizeof(invalid_cases[0]); i++) {
		const struct invalid_case *c = &invalid_cases[i];
		struct imapurl u;
		const char *error = NULL;
		enum imapurl_error r;
		static const struct imapurl zero;

		print_message("invalid: %s\n", c->name);
		memset(&u, 0x5a, sizeof(u));
		r = imapurl_parse(c->url, strlen(c->url), &u, &error);
		if (r != c->err)
			fail_msg("%s: got %d (%s), want %d", c->name, r,
			    error ? error : "(null)", c->err);
		assert_error_clean(error, c->url);
		/* nothing half-parsed is left behind */
		assert_memory_equal(&u, &zero, sizeof(u));
	}
}

static void
test_lengths(void **state)
{
	static char buf[IMAPURL_MAX_LEN + 2];
	static const char head[] = "imap://h/", tail[] = "/;UID=1";
	struct imapurl u;
	const char *error;
	size_t n;

	(void)state;
	/* the whole URL at exactly the limit, mailbox too long for its field */
	memcpy(buf, head, sizeof(head) - 1);
	n = IMAPURL_MAX_LEN - (sizeof(head) - 1) - (sizeof(tail) - 1);
	memset(buf + sizeof(head) - 1, 'a', n);
	memcpy(buf + sizeof(head) - 1 + n, tail, sizeof(tail) - 1);
	assert_int_equal(imapurl_parse(buf, IMAPURL_MAX_LEN, &u, &error),
	    IMAPURL_ERR_TOO_LONG);
	assert_error_clean(error, buf);

	/* over the limit */
	memcpy(buf + IMAPURL_MAX_LEN - 6, "/;UID=", 6);
	buf[IMAPURL_MAX_LEN] = '1';
	assert_int_equal(imapurl_parse(buf, IMAPURL_MAX_LEN + 1, &u, &error),
	    IMAPURL_ERR_TOO_LONG);

	/* a mailbox of exactly 1023 bytes fits */
	n = sizeof(u.mailbox) - 1;
	memcpy(buf, head, sizeof(head) - 1);
	memset(buf + sizeof(head) - 1, 'b', n);
	memcpy(buf + sizeof(head) - 1 + n, tail, sizeof(tail) - 1);
	assert_int_equal(imapurl_parse(buf, sizeof(head) - 1 + n +
	    sizeof(tail) - 1, &u, &error), IMAPURL_OK);
	assert_int_equal(strlen(u.mailbox), n);
	/* one more does not */
	memset(buf + sizeof(head) - 1, 'b', n + 1);
	memcpy(buf + sizeof(head) - 1 + n + 1, tail, sizeof(tail) - 1);
	assert_int_equal(imapurl_parse(buf, sizeof(head) - 1 + n + 1 +
	    sizeof(tail) - 1, &u, &error), IMAPURL_ERR_TOO_LONG);

	/* embedded NUL */
	assert_int_equal(imapurl_parse("imap://h/IN\0BOX/;UID=1", 22, &u,
	    &error), IMAPURL_ERR_SYNTAX);
	/* NULL url, NULL error_r */
	assert_int_equal(imapurl_parse(NULL, 0, &u, NULL),
	    IMAPURL_ERR_NOT_IMAP);
}

struct redact_case {
	const char *name;
	const char *url;
	const char *want;
};

static const struct redact_case redact_cases[] = {
	{ "rfc4467",
	  "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred:internal:" TOK1,
	  "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred:internal:<redacted>" },
	{ "lab, upper case",
	  "imap://alice@localhost:10143/INBOX;UIDVALIDITY=1795435210/;UID=4;URLAUTH=submit+alice:internal:" TOK_LAB,
	  "imap://alice@localhost:10143/INBOX;UIDVALIDITY=1795435210/;UID=4;URLAUTH=submit+alice:internal:<redacted>" },
	{ "mixed case keyword",
	  "imap://h/INBOX/;UID=4;UrlAuth=anonymous:internal:" TOK1,
	  "imap://h/INBOX/;UID=4;UrlAuth=anonymous:internal:<redacted>" },
	{ "rump only",
	  "imap://h/INBOX/;UID=4;URLAUTH=anonymous",
	  "imap://h/INBOX/;UID=4;URLAUTH=anonymous" },
	{ "no urlauth",
	  "imap://h/INBOX/;UID=4",
	  "imap://h/INBOX/;UID=4" },
	{ "malformed: one colon",
	  "imap://h/INBOX/;UID=4;URLAUTH=anonymous:" TOK1,
	  "imap://h/INBOX/;UID=4;URLAUTH=anonymous:<redacted>" },
	{ "malformed: odd mechanism",
	  "imap://h/INBOX/;UID=4;URLAUTH=anonymous:" TOK1 " x:" TOK1,
	  "imap://h/INBOX/;UID=4;URLAUTH=anonymous:<redacted>" },
	{ "malformed: token has garbage",
	  "imap://h/INBOX/;UID=4;URLAUTH=anonymous:internal:" TOK1 "\r\nQUIT",
	  "imap://h/INBOX/;UID=4;URLAUTH=anonymous:internal:<redacted>" },
	{ "control characters escaped",
	  "imap://h/IN\r\nBOX\\\x7f\x80/;UID=4",
	  "imap://h/IN\\x0d\\x0aBOX\\x5c\\x7f\\x80/;UID=4" },
	{ "not a url", "", "" },
};

static void
test_redact(void **state)
{
	char out[512];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(redact_cases) / sizeof(redact_cases[0]); i++) {
		const struct redact_case *c = &redact_cases[i];

		print_message("redact: %s\n", c->name);
		imapurl_redact(c->url, strlen(c->url), out, sizeof(out));
		assert_string_equal(out, c->want);
		assert_null(strstr(out, TOK1));
		assert_null(strstr(out, TOK_LAB));
	}
}

static void
test_redact_truncate(void **state)
{
	static const char url[] =
	    "imap://h/INBOX/;UID=4;URLAUTH=anonymous:internal:" TOK1;
	char out[64];
	size_t n;

	(void)state;
	/* cut: always NUL-terminated, never past outsize, never the token */
	for (n = 1; n <= sizeof(out); n++) {
		memset(out, 'Z', sizeof(out));
		imapurl_redact(url, sizeof(url) - 1, out, n);
		assert_true(strlen(out) < n);
		assert_null(strstr(out, "91354a47"));
	}
	/* an escape is not split */
	imapurl_redact("ab\r", 3, out, 4);
	assert_string_equal(out, "ab");
	/* outsize 0 writes nothing; NULL url gives "" */
	out[0] = 'Z';
	imapurl_redact(url, sizeof(url) - 1, out, 0);
	assert_int_equal(out[0], 'Z');
	imapurl_redact(NULL, 0, out, sizeof(out));
	assert_string_equal(out, "");
	/* not NUL-terminated input */
	imapurl_redact("imap://h/xyz", 8, out, sizeof(out));
	assert_string_equal(out, "imap://h");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_redact),
		cmocka_unit_test(test_redact_truncate),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
