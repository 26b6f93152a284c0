/*
 * test_burl_policy.c - the built-in BURL authorization rule, table-driven:
 * which URL may which identity have resolved, by which trusted server, and
 * with which reply when not.  The identity mapping (burl.local_domains) is
 * what keeps alice from sending bob's drafts: every case that must be
 * refused is here next to the look-alikes that must pass.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "burl_policy.h"
#include "conf.h"
#include "imapurl.h"

#define TOK "0179ecd2c483c22a83e49f755584e7ef6576389417"
#define NOW 1795435000		/* 2026-11-23 */

static struct conf_burl cb;

static int
setup(void **state)
{
	(void)state;
	memset(&cb, 0, sizeof(cb));
	cb.enabled = 1;
	snprintf(cb.local_domains, sizeof(cb.local_domains),
	    "example.com LAB.TEST");
	cb.server_count = 3;
	snprintf(cb.servers[0].name, 64, "cyrus");
	snprintf(cb.servers[0].authority, 256, "localhost");
	cb.servers[0].mode = CONF_IMAP_MODE_URLAUTH;
	snprintf(cb.servers[1].name, 64, "dovecot");
	snprintf(cb.servers[1].authority, 256, "imap.example.com:10143");
	cb.servers[1].mode = CONF_IMAP_MODE_PROXY_AUTH;
	snprintf(cb.servers[2].name, 64, "v6");
	snprintf(cb.servers[2].authority, 256, "[::1]:993");
	cb.servers[2].mode = CONF_IMAP_MODE_URLAUTH;
	return 0;
}

struct policy_case {
	const char *name;
	const char *identity;
	const char *url;
	int allowed;
	int server;			/* when allowed */
	enum smtp_reply_id reply;	/* when refused */
	int mapped;
};

static const struct policy_case cases[] = {
	{ "own submit+ URL", "alice",
	  "imap://alice@localhost/INBOX;UIDVALIDITY=1/;UID=4;URLAUTH=submit+alice:internal:" TOK,
	  1, 0, 0, 0 },
	{ "port 143 spelled out is the same authority", "alice",
	  "imap://alice@localhost:143/INBOX/;UID=4;URLAUTH=submit+alice:internal:" TOK,
	  1, 0, 0, 0 },
	{ "host case-blind", "alice",
	  "imap://alice@LOCALHOST/INBOX/;UID=4;URLAUTH=submit+alice:internal:" TOK,
	  1, 0, 0, 0 },
	{ "Kerberos principal form in the URL", "alice",
	  "imap://alice%40LAB.TEST@localhost/INBOX/;UID=4;URLAUTH=submit+alice%40lab.test:internal:" TOK,
	  1, 0, 0, 1 },
	{ "mail-address identity, bare URL user", "alice@example.com",
	  "imap://alice@localhost/INBOX/;UID=4;URLAUTH=submit+alice:internal:" TOK,
	  1, 0, 0, 1 },
	{ "identity case differs", "Alice",
	  "imap://alice@localhost/INBOX/;UID=4;URLAUTH=submit+alice:internal:" TOK,
	  1, 0, 0, 0 },
	{ "bob's URL, bob's access: not alice's", "alice",
	  "imap://bob@localhost/INBOX/;UID=4;URLAUTH=submit+bob:internal:" TOK,
	  0, 0, R_BURL_ACCESS_DENIED, 0 },
	{ "bob's URL made out to submit+alice", "alice",
	  "imap://bob@localhost/INBOX/;UID=4;URLAUTH=submit+alice:internal:" TOK,
	  0, 0, R_BURL_ACCESS_DENIED, 0 },
	{ "alice's URL made out to submit+bob", "alice",
	  "imap://alice@localhost/INBOX/;UID=4;URLAUTH=submit+bob:internal:" TOK,
	  0, 0, R_BURL_ACCESS_DENIED, 0 },
	{ "foreign domain is another user", "alice",
	  "imap://alice%40other.example@localhost/INBOX/;UID=4;URLAUTH=submit+alice%40other.example:internal:" TOK,
	  0, 0, R_BURL_ACCESS_DENIED, 0 },
	{ "prefix of the identity is another user", "alice",
	  "imap://alic@localhost/INBOX/;UID=4;URLAUTH=submit+alic:internal:" TOK,
	  0, 0, R_BURL_ACCESS_DENIED, 0 },
	{ "identity longer than the URL user", "alice2",
	  "imap://alice@localhost/INBOX/;UID=4;URLAUTH=submit+alice:internal:" TOK,
	  0, 0, R_BURL_ACCESS_DENIED, 0 },
	{ "user+ access is not for submission", "alice",
	  "imap://alice@localhost/INBOX/;UID=4;URLAUTH=user+alice:internal:" TOK,
	  0, 0, R_BURL_ACCESS_DENIED, 0 },
	{ "authuser access is not for submission", "alice",
	  "imap://alice@localhost/INBOX/;UID=4;URLAUTH=authuser:internal:" TOK,
	  0, 0, R_BURL_ACCESS_DENIED, 0 },
	{ "anonymous access is not for submission", "alice",
	  "imap://alice@localhost/INBOX/;UID=4;URLAUTH=anonymous:internal:" TOK,
	  0, 0, R_BURL_ACCESS_DENIED, 0 },
	{ "untrusted host", "alice",
	  "imap://alice@evil.example/INBOX/;UID=4;URLAUTH=submit+alice:internal:" TOK,
	  0, 0, R_BURL_NO_TRUST, 0 },
	{ "trusted host, other port", "alice",
	  "imap://alice@localhost:10144/INBOX/;UID=4;URLAUTH=submit+alice:internal:" TOK,
	  0, 0, R_BURL_NO_TRUST, 0 },
	{ "plain URL to a URLAUTH-only server", "alice",
	  "imap://alice@localhost/INBOX/;UID=4", 0, 0, R_BURL_NO_TRUST, 0 },
	{ "plain URL, proxy-authorization server", "alice",
	  "imap://alice@imap.example.com:10143/INBOX;UIDVALIDITY=7/;UID=4/;SECTION=TEXT",
	  1, 1, 0, 0 },
	{ "plain URL of bob via proxy authorization", "alice",
	  "imap://bob@imap.example.com:10143/INBOX/;UID=4", 0, 0,
	  R_BURL_ACCESS_DENIED, 0 },
	{ "plain URL without a user", "alice",
	  "imap://imap.example.com:10143/INBOX/;UID=4", 0, 0,
	  R_BURL_ACCESS_DENIED, 0 },
	{ "URLAUTH URL to a proxy-authorization server", "alice",
	  "imap://alice@imap.example.com:10143/INBOX/;UID=4;URLAUTH=submit+alice:internal:" TOK,
	  0, 0, R_BURL_NO_TRUST, 0 },
	{ "expired URL", "alice",
	  "imap://alice@localhost/INBOX/;UID=4;EXPIRE=2020-01-01T00:00:00Z;URLAUTH=submit+alice:internal:" TOK,
	  0, 0, R_BURL_FETCH_FAILED, 0 },
	{ "not yet expired URL", "alice",
	  "imap://alice@localhost/INBOX/;UID=4;EXPIRE=2030-01-01T00:00:00Z;URLAUTH=submit+alice:internal:" TOK,
	  1, 0, 0, 0 },
	{ "IPv6 authority", "alice",
	  "imap://alice@[::1]:993/INBOX/;UID=4;URLAUTH=submit+alice:internal:" TOK,
	  1, 2, 0, 0 },
	{ "not authenticated", "",
	  "imap://alice@localhost/INBOX/;UID=4;URLAUTH=submit+alice:internal:" TOK,
	  0, 0, R_BURL_ACCESS_DENIED, 0 },
};

static void
test_cases(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct policy_case *c = &cases[i];
		struct imapurl u;
		struct burl_verdict v;
		const char *err;

		print_message("case: %s\n", c->name);
		assert_int_equal(imapurl_parse(c->url, strlen(c->url), &u, &err),
		    IMAPURL_OK);
		burl_policy_check(&cb, &u, c->identity, NOW, &v);
		assert_int_equal(v.allowed, c->allowed);
		if (c->allowed) {
			assert_int_equal(v.server, c->server);
			assert_int_equal(v.mapped, c->mapped);
		} else {
			assert_int_equal(v.reply, c->reply);
			assert_true(v.reason[0] != '\0');
			/* the reason never carries the token */
			assert_null(strstr(v.reason, TOK));
		}
	}
}

static void
test_same_user(void **state)
{
	int m = 0;

	(void)state;
	assert_true(burl_same_user("example.com", "a@example.com", "A", &m));
	assert_int_equal(m, 1);
	assert_false(burl_same_user("example.com", "a@example.org", "a", NULL));
	assert_false(burl_same_user("", "a@example.com", "a", NULL));
	assert_true(burl_same_user("", "a@example.com", "A@EXAMPLE.COM", NULL));
	assert_false(burl_same_user("example.com", "", "", NULL));
	assert_false(burl_same_user("example.com", "@example.com", "", NULL));
	/* a domain that is a suffix of a local one is not local */
	assert_false(burl_same_user("example.com", "a@ample.com", "a", NULL));
	assert_false(burl_same_user("example.com", "a@xexample.com", "a", NULL));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_cases, setup),
		cmocka_unit_test(test_same_user),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
