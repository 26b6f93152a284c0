/*
 * test_header_scan.c - the Message-ID scanner (proxy/header_scan.c): a
 * table of messages and the Message-ID each must yield, each fed whole,
 * byte by byte, and in two pieces at every split point (the scanner is
 * resumable: content arrives in arbitrary pieces); the bounds.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "header_scan.h"

#define N_ELEMENTS(a)	(sizeof(a) / sizeof((a)[0]))

static const struct {
	const char *msg;
	const char *want;	/* NULL: no Message-ID */
} cases[] = {
	{ "Message-ID: <a@b>\r\n\r\nbody\r\n", "<a@b>" },
	{ "Subject: x\r\nmessage-id:<a@b>\r\n\r\n", "<a@b>" },
	{ "MESSAGE-ID:   <a@b>  \r\n\r\n", "<a@b>" },
	/* folded (RFC 5322 2.2.3) */
	{ "Message-ID:\r\n <a@b>\r\nTo: c\r\n\r\n", "<a@b>" },
	{ "Message-ID: <a\r\n\t@b>\r\n\r\n", "<a @b>" },
	/* obsolete white space before the colon (RFC 5322 4.5) */
	{ "Message-ID \t: <a@b>\r\n\r\n", "<a@b>" },
	/* the first one wins */
	{ "Message-ID: <1@b>\r\nMessage-ID: <2@b>\r\n\r\n", "<1@b>" },
	/* other fields with similar names */
	{ "X-Message-ID: <x@b>\r\nMessage-IDs: <y@b>\r\nMessage-I: z\r\n\r\n",
	  NULL },
	{ "Resent-Message-ID: <r@b>\r\nMessage-ID: <m@b>\r\n\r\n", "<m@b>" },
	/* only the header section counts */
	{ "Subject: x\r\n\r\nMessage-ID: <body@b>\r\n", NULL },
	{ "\r\nMessage-ID: <body@b>\r\n", NULL },
	/* a field name inside another field's folded value */
	{ "Subject: a\r\n Message-ID: <no@b>\r\n\r\n", NULL },
	/* LF line ends */
	{ "To: a\nMessage-ID: <lf@b>\n\nbody\n", "<lf@b>" },
	/* the content ends inside the header section */
	{ "Message-ID: <end@b>", "<end@b>" },
	{ "Message-ID: <end@b>\r\n", "<end@b>" },
	{ "Message-ID:", "" },
	{ "", NULL },
};

static void
check(const char *msg, size_t len, size_t split, const char *want)
{
	struct header_scan h;
	const char *got;

	header_scan_init(&h);
	header_scan_feed(&h, msg, split);
	header_scan_feed(&h, msg + split, len - split);
	got = header_scan_message_id(&h);
	if (want == NULL) {
		if (got != NULL)
			fail_msg("%s (split %zu): got %s, want none", msg, split,
			    got);
	} else {
		if (got == NULL || strcmp(got, want) != 0)
			fail_msg("%s (split %zu): got %s, want %s", msg, split,
			    got ? got : "none", want);
	}
}

static void
test_table(void **state)
{
	size_t i, k;

	(void)state;
	for (i = 0; i < N_ELEMENTS(cases); i++) {
		size_t len = strlen(cases[i].msg);

		for (k = 0; k <= len; k++)
			check(cases[i].msg, len, k, cases[i].want);
		/* byte by byte */
		{
			struct header_scan h;
			const char *got;

			header_scan_init(&h);
			for (k = 0; k < len; k++)
				header_scan_feed(&h, cases[i].msg + k, 1);
			got = header_scan_message_id(&h);
			assert_true((got == NULL) == (cases[i].want == NULL));
			if (got != NULL)
				assert_string_equal(got, cases[i].want);
		}
	}
}

static void
test_done(void **state)
{
	struct header_scan h;

	(void)state;
	header_scan_init(&h);
	assert_int_equal(header_scan_feed(&h, "To: a\r\n", 7), 0);
	assert_int_equal(header_scan_done(&h), 0);
	assert_int_equal(header_scan_feed(&h, "\r\nMessage-ID: <x>\r\n", 19), 1);
	assert_int_equal(header_scan_done(&h), 1);
	/* input after the end is ignored */
	assert_int_equal(header_scan_feed(&h, "Message-ID: <y>\r\n", 17), 1);
	assert_null(header_scan_message_id(&h));
}

static void
test_bounds(void **state)
{
	struct header_scan h;
	char *big = malloc(HEADER_SCAN_MAX + 100);
	const char *got;
	size_t i;

	(void)state;
	assert_non_null(big);
	/* a long value is cut at HEADER_SCAN_VALUE_MAX */
	header_scan_init(&h);
	header_scan_feed(&h, "Message-ID: <", 13);
	for (i = 0; i < 5000; i++)
		header_scan_feed(&h, "x", 1);
	header_scan_feed(&h, ">\r\n\r\n", 5);
	got = header_scan_message_id(&h);
	assert_non_null(got);
	assert_int_equal(strlen(got), HEADER_SCAN_VALUE_MAX);
	/* the scan stops after HEADER_SCAN_MAX octets of header */
	memset(big, 'a', HEADER_SCAN_MAX + 100);
	memcpy(big, "X-Big: ", 7);
	header_scan_init(&h);
	assert_int_equal(header_scan_feed(&h, big, HEADER_SCAN_MAX + 100), 1);
	assert_int_equal(header_scan_feed(&h, "\r\nMessage-ID: <late>\r\n", 22), 1);
	assert_null(header_scan_message_id(&h));
	free(big);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_done),
		cmocka_unit_test(test_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
