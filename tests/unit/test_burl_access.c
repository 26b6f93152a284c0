/*
 * test_burl_access.c - BURL_ACCESS as msaproxy applies it: the probes it
 * builds from a session, what each flag does, replies given by $N, and
 * failing closed.  The mapping language itself is tested in test_mapping.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "burl_access.h"
#include "conf.h"
#include "mapping.h"

static struct conf_burl cb;

static void
load(const char *text)
{
	char err[2048];

	mapping_free(&cb.access);
	cb.access = mapping_load_buffer("t.map", text, strlen(text), err,
	    sizeof(err));
	if (cb.access == NULL)
		fail_msg("%s", err);
}

static int
setup(void **state)
{
	(void)state;
	memset(&cb, 0, sizeof(cb));
	snprintf(cb.access_table, sizeof(cb.access_table), "BURL_ACCESS");
	snprintf(cb.access_domain, sizeof(cb.access_domain), "example.com");
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	mapping_free(&cb.access);
	return 0;
}

static struct burl_access_in
session_in(const char *identity, int tls)
{
	struct burl_access_in in = {
		"192.0.2.1", 587, "198.51.100.7", 40000, "tcp_submit",
		identity, identity[0] != '\0', tls,
	};
	return in;
}

#define URL_OWN "imap://alice@imap.example.com/INBOX;UIDVALIDITY=1/;UID=4;URLAUTH=submit+alice:internal:0011"
#define URL_BOB "imap://bob@imap.example.com/INBOX;UIDVALIDITY=1/;UID=4;URLAUTH=submit+bob:internal:0011"

static void
test_seed_minimal(void **state)
{
	struct burl_access_in in;
	struct burl_access_verdict v;
	char types[64];

	(void)state;
	load("BURL_ACCESS\n\n"
	    "   *|tcp_*|%*|                           imap$Y\n"
	    "   *|*@*|imap://*;URLAUTH=submit+$1*:*   $:A$Y\n");
	in = session_in("", 0);
	assert_int_equal(burl_access_ehlo(&cb, &in, types, sizeof(types)), 0);
	in = session_in("alice", 0);
	assert_int_equal(burl_access_ehlo(&cb, &in, types, sizeof(types)), 1);
	assert_string_equal(types, "imap");
	/* alice's own URL: allowed (the probe's authid is alice@example.com) */
	burl_access_check(&cb, &in, URL_OWN, &v);
	assert_true(v.allowed);
	assert_false(v.rewritten);
	assert_true(strstr(v.why, "t.map:4") != NULL);
	/* bob's: no entry sets $Y: refused with the default reply */
	burl_access_check(&cb, &in, URL_BOB, &v);
	assert_false(v.allowed);
	assert_int_equal(v.reply, R_BURL_ACCESS_TABLE_DENIED);
	assert_string_equal(v.reply_text, "");
	/* an identity with its own domain is used as it is */
	in = session_in("alice@other.example", 0);
	burl_access_check(&cb, &in, URL_OWN, &v);
	assert_true(v.allowed);
}

static void
test_flags(void **state)
{
	struct burl_access_in in = session_in("alice", 1);
	struct burl_access_verdict v;
	char types[64];

	(void)state;
	load("BURL_ACCESS\n\n"
	    "   *|tcp_*|%*|                 $:Timap$ imap://x.example$Y\n"
	    "   *|*|imap://d*               $Dimap://alice@imap.example.com/INBOX/;UID=9$Y\n"
	    "   *|*|imap://m*               $M$T$Y\n"
	    "   *|*|imap://x*               $X$Y\n"
	    "   *|*|imap://n*               $N550$ go$ away\n"
	    "   *|*|imap://i*               $N$I\n"
	    "   *|*|imap://j*               $Nnot$ a$ reply\n");
	assert_int_equal(burl_access_ehlo(&cb, &in, types, sizeof(types)), 1);
	assert_string_equal(types, "imap imap://x.example");
	in.tls = 0;
	assert_int_equal(burl_access_ehlo(&cb, &in, types, sizeof(types)), 0);
	burl_access_check(&cb, &in, "imap://d", &v);
	assert_true(v.allowed && v.rewritten);
	assert_string_equal(v.url, "imap://alice@imap.example.com/INBOX/;UID=9");
	burl_access_check(&cb, &in, "imap://m", &v);
	assert_true(v.allowed && v.use_mailhost && v.force_tls && !v.no_tls);
	burl_access_check(&cb, &in, "imap://x", &v);
	assert_true(v.allowed && v.no_tls && !v.force_tls);
	burl_access_check(&cb, &in, "imap://n", &v);
	assert_false(v.allowed);
	/* an enhanced code is added when the table's reply has none */
	assert_string_equal(v.reply_text, "550 5.7.1 go away");
	assert_false(v.disconnect);
	burl_access_check(&cb, &in, "imap://i", &v);
	assert_false(v.allowed);
	assert_true(v.disconnect);
	assert_string_equal(v.reply_text, "");
	burl_access_check(&cb, &in, "imap://j", &v);
	assert_false(v.allowed);
	assert_string_equal(v.reply_text, "");	/* not a reply: the default */
	/* nothing matches: refused */
	burl_access_check(&cb, &in, "http://z", &v);
	assert_false(v.allowed);
}

static void
test_paranoia_and_bar(void **state)
{
	struct burl_access_in in = session_in("alice", 0);
	struct burl_access_verdict v;

	(void)state;
	load("BURL_ACCESS\n\n"
	    "   *|*|*                      $C$:|$N554$ 5.7.1$ bar$E\n"
	    "   *|*|imap://*               $Y\n");
	burl_access_check(&cb, &in, "imap://a|b", &v);
	/* with '|' in the URL the first entry's test holds */
	assert_false(v.allowed);
	assert_string_equal(v.reply_text, "554 5.7.1 bar");
	cb.access_paranoia[0] = '!';
	burl_access_check(&cb, &in, "imap://a|b", &v);
	assert_false(v.allowed);	/* the flag is still set */
	burl_access_check(&cb, &in, "imap://ab", &v);
	assert_true(v.allowed);
	cb.access_paranoia[0] = '\0';
}

static void
test_fail_closed(void **state)
{
	struct burl_access_in in = session_in("alice", 0);
	struct burl_access_verdict v;
	char types[16];

	(void)state;
	/* no table of that name */
	load("OTHER\n\n   *   $Y\n");
	burl_access_check(&cb, &in, URL_OWN, &v);
	assert_false(v.allowed);
	assert_int_equal(burl_access_ehlo(&cb, &in, types, sizeof(types)), 0);
	/* $D with an empty URL */
	load("BURL_ACCESS\n\n   *|*|imap://*   $D$Y\n");
	burl_access_check(&cb, &in, URL_OWN, &v);
	assert_false(v.allowed);
}

static void
test_reply_text(void **state)
{
	char out[128];

	(void)state;
	assert_true(burl_access_reply_text("554 5.7.1 no", out, sizeof(out)));
	assert_string_equal(out, "554 5.7.1 no");
	assert_true(burl_access_reply_text("451 try later", out, sizeof(out)));
	assert_string_equal(out, "451 4.7.1 try later");
	assert_true(burl_access_reply_text("550", out, sizeof(out)));
	assert_string_equal(out, "550 5.7.1");
	assert_false(burl_access_reply_text("250 ok", out, sizeof(out)));
	assert_false(burl_access_reply_text("55 x", out, sizeof(out)));
	assert_false(burl_access_reply_text("550x", out, sizeof(out)));
	assert_false(burl_access_reply_text("550 a\r\n250 b", out, sizeof(out)));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_seed_minimal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_paranoia_and_bar, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fail_closed, setup, teardown),
		cmocka_unit_test(test_reply_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
