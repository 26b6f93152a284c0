/*
 * test_received.c - the Received: header (proxy/received.c): the "with"
 * protocol types of RFC 3848 and RFC 6531 for every combination of
 * LMTP/ESMTP/TLS/AUTH/SMTPUTF8, the exact folded header text, and the
 * RFC 5322 3.3 date-time.
 *
 * The date is local time; the tests set TZ to POSIX strings (no tzdata
 * needed) so the expected text is exact.
 */

#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <event2/buffer.h>

#include "received.h"

#define N_ELEMENTS(a)	(sizeof(a) / sizeof((a)[0]))

/* 2023-11-14 22:13:20 UTC, a Tuesday */
#define WHEN	((time_t)1700000000)

static void
set_tz(const char *tz)
{
	assert_int_equal(setenv("TZ", tz, 1), 0);
	tzset();
}

static char *
take(struct evbuffer *b)
{
	size_t len = evbuffer_get_length(b);
	char *s = malloc(len + 1);

	assert_non_null(s);
	assert_int_equal(evbuffer_remove(b, s, len), (int)len);
	s[len] = '\0';
	return s;
}

/* ------------------------------------------------------------------ */

struct with_case {
	int lmtp, esmtp, tls, auth, utf8;
	const char *with;
};

static const struct with_case with_cases[] = {
	/* HELO: RFC 3848 and 6531 define no variants */
	{ 0, 0, 0, 0, 0, "SMTP" },
	{ 0, 0, 0, 1, 0, "SMTP" },
	{ 0, 0, 1, 0, 0, "SMTP" },
	{ 0, 0, 1, 1, 0, "SMTP" },
	{ 0, 0, 0, 0, 1, "SMTP" },
	{ 0, 0, 0, 1, 1, "SMTP" },
	{ 0, 0, 1, 0, 1, "SMTP" },
	{ 0, 0, 1, 1, 1, "SMTP" },
	/* EHLO: RFC 3848 2 */
	{ 0, 1, 0, 0, 0, "ESMTP" },
	{ 0, 1, 0, 1, 0, "ESMTPA" },
	{ 0, 1, 1, 0, 0, "ESMTPS" },
	{ 0, 1, 1, 1, 0, "ESMTPSA" },
	/* EHLO + SMTPUTF8: RFC 6531 3.7.4 */
	{ 0, 1, 0, 0, 1, "UTF8SMTP" },
	{ 0, 1, 0, 1, 1, "UTF8SMTPA" },
	{ 0, 1, 1, 0, 1, "UTF8SMTPS" },
	{ 0, 1, 1, 1, 1, "UTF8SMTPSA" },
	/* LHLO: RFC 3848 3; esmtp does not matter */
	{ 1, 0, 0, 0, 0, "LMTP" },
	{ 1, 0, 0, 1, 0, "LMTPA" },
	{ 1, 0, 1, 0, 0, "LMTPS" },
	{ 1, 0, 1, 1, 0, "LMTPSA" },
	{ 1, 0, 0, 0, 1, "UTF8LMTP" },
	{ 1, 0, 0, 1, 1, "UTF8LMTPA" },
	{ 1, 0, 1, 0, 1, "UTF8LMTPS" },
	{ 1, 0, 1, 1, 1, "UTF8LMTPSA" },
	{ 1, 1, 0, 0, 0, "LMTP" },
	{ 1, 1, 0, 1, 0, "LMTPA" },
	{ 1, 1, 1, 0, 0, "LMTPS" },
	{ 1, 1, 1, 1, 0, "LMTPSA" },
	{ 1, 1, 0, 0, 1, "UTF8LMTP" },
	{ 1, 1, 0, 1, 1, "UTF8LMTPA" },
	{ 1, 1, 1, 0, 1, "UTF8LMTPS" },
	{ 1, 1, 1, 1, 1, "UTF8LMTPSA" },
};

static void
test_with_type(void **state)
{
	size_t i;

	(void)state;
	assert_int_equal(N_ELEMENTS(with_cases), 32);
	for (i = 0; i < N_ELEMENTS(with_cases); i++) {
		const struct with_case *c = &with_cases[i];
		const char *got = received_with_type(c->lmtp, c->esmtp, c->tls,
		    c->auth, c->utf8);

		assert_non_null(got);
		if (strcmp(got, c->with) != 0)
			fail_msg("lmtp=%d esmtp=%d tls=%d auth=%d utf8=%d: got "
			    "%s, want %s", c->lmtp, c->esmtp, c->tls, c->auth,
			    c->utf8, got, c->with);
		/* flags are booleans: any non-zero value counts */
		got = received_with_type(c->lmtp * 7, c->esmtp * 3, c->tls * 2,
		    c->auth * 9, c->utf8 * -1);
		assert_string_equal(got, c->with);
	}
}

/* The type appears in the header too, for every combination. */
static void
test_with_in_header(void **state)
{
	struct evbuffer *b = evbuffer_new();
	size_t i;

	(void)state;
	set_tz("UTC0");
	for (i = 0; i < N_ELEMENTS(with_cases); i++) {
		const struct with_case *c = &with_cases[i];
		struct received_info ri;
		char want[128], *got;

		memset(&ri, 0, sizeof(ri));
		ri.helo = "h.example";
		ri.ip = "192.0.2.1";
		ri.by = "mx.example";
		ri.id = "ID1";
		ri.lmtp = c->lmtp;
		ri.esmtp = c->esmtp;
		ri.tls = c->tls;
		ri.auth = c->auth;
		ri.utf8 = c->utf8;
		ri.when = WHEN;
		received_format(&ri, b);
		got = take(b);
		snprintf(want, sizeof(want), "\tby mx.example (msaproxy) with "
		    "%s id ID1;\r\n", c->with);
		if (strstr(got, want) == NULL)
			fail_msg("case %zu: no \"%s\" in:\n%s", i, c->with, got);
		free(got);
	}
	evbuffer_free(b);
}

/* ------------------------------------------------------------------ */

struct format_case {
	const char *name;
	struct received_info ri;
	const char *want;
};

static const struct format_case format_cases[] = {
	{ "no rdns, nothing optional",
	    { "client.example", NULL, "192.0.2.1", "mx.example", "A1b2C3d4E5f6",
	      NULL, 0, 1, 0, 0, 0, NULL, NULL, WHEN },
	    "Received: from client.example ([192.0.2.1])\r\n"
	    "\tby mx.example (msaproxy) with ESMTP id A1b2C3d4E5f6;\r\n"
	    "\tTue, 14 Nov 2023 22:13:20 +0000\r\n" },
	{ "rdns",
	    { "client.example", "host.example.net", "192.0.2.1", "mx.example",
	      "ID", NULL, 0, 1, 0, 0, 0, NULL, NULL, WHEN },
	    "Received: from client.example (host.example.net [192.0.2.1])\r\n"
	    "\tby mx.example (msaproxy) with ESMTP id ID;\r\n"
	    "\tTue, 14 Nov 2023 22:13:20 +0000\r\n" },
	{ "rdns unknown",
	    { "[192.0.2.1]", "unknown", "192.0.2.1", "mx.example", "ID", NULL,
	      0, 0, 0, 0, 0, NULL, NULL, WHEN },
	    "Received: from [192.0.2.1] (unknown [192.0.2.1])\r\n"
	    "\tby mx.example (msaproxy) with SMTP id ID;\r\n"
	    "\tTue, 14 Nov 2023 22:13:20 +0000\r\n" },
	{ "one recipient",
	    { "client.example", NULL, "192.0.2.1", "mx.example", "ID",
	      "bob@example.org", 0, 1, 0, 0, 0, NULL, NULL, WHEN },
	    "Received: from client.example ([192.0.2.1])\r\n"
	    "\tby mx.example (msaproxy) with ESMTP id ID\r\n"
	    "\tfor <bob@example.org>;\r\n"
	    "\tTue, 14 Nov 2023 22:13:20 +0000\r\n" },
	{ "everything",
	    { "laptop.example", "laptop.dyn.example.net", "198.51.100.7",
	      "submit.example.com", "Zz9Yy8Xx7Ww6", "alice@example.com",
	      0, 1, 1, 1, 0, "authenticated as alice",
	      "TLSv1.3 TLS_AES_256_GCM_SHA384", WHEN },
	    "Received: from laptop.example (laptop.dyn.example.net "
	    "[198.51.100.7])\r\n"
	    "\t(using TLSv1.3 TLS_AES_256_GCM_SHA384)\r\n"
	    "\t(authenticated as alice)\r\n"
	    "\tby submit.example.com (msaproxy) with ESMTPSA id Zz9Yy8Xx7Ww6\r\n"
	    "\tfor <alice@example.com>;\r\n"
	    "\tTue, 14 Nov 2023 22:13:20 +0000\r\n" },
	{ "lmtp, utf8, tls only",
	    { "lmtp.example", NULL, "192.0.2.25", "mx.example", "ID",
	      "j\xc3\xb6rg@example.org", 1, 1, 1, 0, 1, NULL,
	      "TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256", WHEN },
	    "Received: from lmtp.example ([192.0.2.25])\r\n"
	    "\t(using TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256)\r\n"
	    "\tby mx.example (msaproxy) with UTF8LMTPS id ID\r\n"
	    "\tfor <j\xc3\xb6rg@example.org>;\r\n"
	    "\tTue, 14 Nov 2023 22:13:20 +0000\r\n" },
	{ "auth comment only",
	    { "c.example", NULL, "192.0.2.9", "mx.example", "ID", NULL, 0, 1, 0,
	      1, 0, "authenticated as bob", NULL, WHEN },
	    "Received: from c.example ([192.0.2.9])\r\n"
	    "\t(authenticated as bob)\r\n"
	    "\tby mx.example (msaproxy) with ESMTPA id ID;\r\n"
	    "\tTue, 14 Nov 2023 22:13:20 +0000\r\n" },
	{ "epoch",
	    { "c.example", NULL, "192.0.2.9", "mx.example", "ID", NULL, 0, 1, 0,
	      0, 0, NULL, NULL, 0 },
	    "Received: from c.example ([192.0.2.9])\r\n"
	    "\tby mx.example (msaproxy) with ESMTP id ID;\r\n"
	    "\tThu, 1 Jan 1970 00:00:00 +0000\r\n" },
};

static void
test_format_exact(void **state)
{
	struct evbuffer *b = evbuffer_new();
	size_t i;

	(void)state;
	set_tz("UTC0");
	for (i = 0; i < N_ELEMENTS(format_cases); i++) {
		const struct format_case *c = &format_cases[i];
		size_t n;
		char *got;

		n = received_format(&c->ri, b);
		got = take(b);
		if (strcmp(got, c->want) != 0)
			fail_msg("%s:\ngot:\n%s\nwant:\n%s", c->name, got,
			    c->want);
		assert_int_equal(n, strlen(c->want));
		free(got);
	}
	evbuffer_free(b);
}

/* Appends: what is in the buffer stays, the return value counts only the
 * header. */
static void
test_format_appends(void **state)
{
	struct evbuffer *b = evbuffer_new();
	struct received_info ri = format_cases[0].ri;
	size_t n;
	char *got;

	(void)state;
	set_tz("UTC0");
	evbuffer_add(b, "X: y\r\n", 6);
	n = received_format(&ri, b);
	got = take(b);
	assert_int_equal(n, strlen(format_cases[0].want));
	assert_memory_equal(got, "X: y\r\n", 6);
	assert_string_equal(got + 6, format_cases[0].want);
	free(got);
	evbuffer_free(b);
}

/* ------------------------------------------------------------------ */
/* RFC 5322 3.3 date-time in several zones and at several times */

static void
check_form(const char *hdr)
{
	regex_t re;
	const char *p, *last;
	char date[128];
	size_t n = strlen(hdr);
	int rc;

	/* folded only with CRLF TAB; each physical line well under 998 */
	assert_memory_equal(hdr, "Received: from ", 15);
	assert_string_equal(hdr + n - 2, "\r\n");
	for (p = hdr; *p; p++) {
		if (*p == '\r')
			assert_int_equal(p[1], '\n');
		if (*p == '\n') {
			assert_int_equal(p[-1], '\r');
			assert_true(p[1] == '\0' || p[1] == '\t');
		}
	}
	/* the last line is TAB date CRLF, after a ";" */
	last = hdr + n - 2;
	while (last > hdr && last[-1] != '\n')
		last--;
	assert_true(last > hdr + 3);
	assert_memory_equal(last - 3, ";\r\n\t", 4);
	assert_int_equal(*last, '\t');
	snprintf(date, sizeof(date), "%.*s", (int)(hdr + n - 2 - last - 1),
	    last + 1);
	rc = regcomp(&re,
	    "^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([1-9]|[12][0-9]|3[01]) "
	    "(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
	    "([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60) [+-][0-9]{4}$",
	    REG_EXTENDED | REG_NOSUB);
	assert_int_equal(rc, 0);
	if (regexec(&re, date, 0, NULL, 0) != 0)
		fail_msg("not an RFC 5322 date-time: \"%s\"", date);
	regfree(&re);
}

static void
test_date(void **state)
{
	static const struct {
		const char *tz;
		time_t when;
		const char *date;	/* NULL: only the form is checked */
	} cases[] = {
		{ "UTC0", WHEN, "Tue, 14 Nov 2023 22:13:20 +0000" },
		{ "UTC0", 951782400, "Tue, 29 Feb 2000 00:00:00 +0000" },
		{ "UTC0", 1735689599, "Tue, 31 Dec 2024 23:59:59 +0000" },
		/* POSIX TZ: the offset is west of Greenwich, so the sign
		 * flips */
		{ "IST-5:30", WHEN, "Wed, 15 Nov 2023 03:43:20 +0530" },
		{ "NST+3:30", WHEN, "Tue, 14 Nov 2023 18:43:20 -0330" },
		{ "XXX+12", WHEN, "Tue, 14 Nov 2023 10:13:20 -1200" },
		{ "YYY-14", WHEN, "Wed, 15 Nov 2023 12:13:20 +1400" },
		{ "CET-1CEST,M3.5.0,M10.5.0/3", 1690000000,
		    "Sat, 22 Jul 2023 06:26:40 +0200" },
		{ "CET-1CEST,M3.5.0,M10.5.0/3", WHEN,
		    "Tue, 14 Nov 2023 23:13:20 +0100" },
		{ "UTC0", 0, NULL },
	};
	struct evbuffer *b = evbuffer_new();
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(cases); i++) {
		struct received_info ri = format_cases[0].ri;
		char *got, want[64];

		set_tz(cases[i].tz);
		ri.when = cases[i].when ? cases[i].when : time(NULL);
		received_format(&ri, b);
		got = take(b);
		check_form(got);
		if (cases[i].date != NULL) {
			snprintf(want, sizeof(want), ";\r\n\t%s\r\n",
			    cases[i].date);
			if (strlen(got) < strlen(want) ||
			    strcmp(got + strlen(got) - strlen(want), want) != 0)
				fail_msg("TZ=%s: got\n%s", cases[i].tz, got);
		}
		free(got);
	}
	/* every exact case has the form too */
	set_tz("UTC0");
	for (i = 0; i < N_ELEMENTS(format_cases); i++) {
		char *got;

		received_format(&format_cases[i].ri, b);
		got = take(b);
		check_form(got);
		free(got);
	}
	evbuffer_free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_with_type),
		cmocka_unit_test(test_with_in_header),
		cmocka_unit_test(test_format_exact),
		cmocka_unit_test(test_format_appends),
		cmocka_unit_test(test_date),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
