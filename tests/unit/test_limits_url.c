/*
 * test_limits_url.c - the canonical form of IMAP URLs that url_reuse
 * counts (proxy/limits_url.c), and its keyed hash.
 *
 * Spellings of one reference must give one form (so that reuse cannot be
 * hidden by writing the URL differently); references that differ in
 * anything that selects content or authorization -- the token included --
 * must give different forms.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "limits_url.h"

#define TOK "91354a473744909de610943775f92038"
#define TOKU "91354A473744909DE610943775F92038"
#define TOK2 "0179ecd2c483c22a83e49f755584e7ef"

#define BASE "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred:internal:" TOK

static const char *
canon(const char *url, char *buf, size_t size)
{
	long n = limits_url_canonical(url, strlen(url), buf, size);

	assert_true(n >= 0);
	assert_int_equal((size_t)n, strlen(buf));
	return buf;
}

static void
test_canonical_form(void **state)
{
	char buf[LIMITS_URL_CANON_MAX];

	(void)state;
	assert_string_equal(canon(BASE, buf, sizeof(buf)),
	    "imap://joe@example.com:143/INBOX/;UID=20/;SECTION=1.2"
	    ";URLAUTH=submit+fred:INTERNAL:" TOK);
	assert_string_equal(canon("imap://a%20b;AUTH=*@[::1]:1143/Sent%20Items"
	    ";UIDVALIDITY=7/;UID=3/;PARTIAL=10.20;EXPIRE=2030-01-01T00:00:00Z"
	    ";URLAUTH=anonymous:internal:" TOK, buf, sizeof(buf)),
	    "imap://a%20b;AUTH=%2A@%5B%3A%3A1%5D:1143/Sent%20Items;UIDVALIDITY=7"
	    "/;UID=3/;PARTIAL=10.20;EXPIRE=1893456000"
	    ";URLAUTH=anonymous:INTERNAL:" TOK);
	/* a plain URL (proxy authorization): no URLAUTH part */
	assert_string_equal(canon("imap://bob@host/box/;UID=1", buf, sizeof(buf)),
	    "imap://bob@host:143/box/;UID=1");
}

/* One reference, many spellings. */
static void
test_same_reference(void **state)
{
	static const char *const spellings[] = {
		BASE,
		"IMAP://joe@EXAMPLE.COM/INBOX/;UID=20/;SECTION=1.2;URLAUTH=submit+fred:INTERNAL:" TOK,
		"imap://joe@Example.Com:143/inbox/;uid=20/;section=1.2;urlauth=submit+fred:internal:" TOKU,
		"imap://j%6Fe@example.com/%49NBOX/;uid=20/;section=1.2;urlauth=submit+fred:internal:" TOK,
		"imap://joe@example.com/InBoX/;UID=20/;Section=1.2;URLAuth=submit+fred:Internal:" TOK,
	};
	char first[LIMITS_URL_CANON_MAX], buf[LIMITS_URL_CANON_MAX];
	uint8_t key[32], h0[LIMITS_URL_HASH_LEN], h[LIMITS_URL_HASH_LEN];
	size_t i;

	(void)state;
	memset(key, 7, sizeof(key));
	canon(spellings[0], first, sizeof(first));
	assert_int_equal(limits_url_hash(spellings[0], strlen(spellings[0]), key,
	    sizeof(key), h0), 0);
	for (i = 1; i < sizeof(spellings) / sizeof(spellings[0]); i++) {
		canon(spellings[i], buf, sizeof(buf));
		assert_string_equal(buf, first);
		assert_int_equal(limits_url_hash(spellings[i],
		    strlen(spellings[i]), key, sizeof(key), h), 0);
		assert_memory_equal(h, h0, sizeof(h));
	}
}

/* Anything that selects other content or other authorization differs. */
static void
test_different_references(void **state)
{
	static const char *const others[] = {
		"imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred:internal:" TOK2,
		"imap://joe@example.com/INBOX/;uid=21/;section=1.2;urlauth=submit+fred:internal:" TOK,
		"imap://joe@example.com/INBOX/;uid=20/;section=1.3;urlauth=submit+fred:internal:" TOK,
		"imap://joe@example.com/INBOX/;uid=20;urlauth=submit+fred:internal:" TOK,
		"imap://joe@example.com/Drafts/;uid=20/;section=1.2;urlauth=submit+fred:internal:" TOK,
		"imap://JOE@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred:internal:" TOK,
		"imap://joe@example.org/INBOX/;uid=20/;section=1.2;urlauth=submit+fred:internal:" TOK,
		"imap://joe@example.com:144/INBOX/;uid=20/;section=1.2;urlauth=submit+fred:internal:" TOK,
		"imap://joe@example.com/INBOX;UIDVALIDITY=9/;uid=20/;section=1.2;urlauth=submit+fred:internal:" TOK,
		"imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+Fred:internal:" TOK,
		"imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=user+fred:internal:" TOK,
		"imap://joe@example.com/INBOX/;uid=20/;section=1.2/;partial=0.100;urlauth=submit+fred:internal:" TOK,
		"imap://joe@example.com/INBOX/;uid=20/;section=1.2",
	};
	char base[LIMITS_URL_CANON_MAX], buf[LIMITS_URL_CANON_MAX];
	size_t i, j;
	uint8_t key[32], hashes[sizeof(others) / sizeof(others[0])][LIMITS_URL_HASH_LEN];

	(void)state;
	memset(key, 9, sizeof(key));
	canon(BASE, base, sizeof(base));
	for (i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
		canon(others[i], buf, sizeof(buf));
		assert_string_not_equal(buf, base);
		assert_int_equal(limits_url_hash(others[i], strlen(others[i]),
		    key, sizeof(key), hashes[i]), 0);
		for (j = 0; j < i; j++)
			assert_memory_not_equal(hashes[i], hashes[j],
			    LIMITS_URL_HASH_LEN);
	}
}

static void
test_not_imap(void **state)
{
	static const char *const bad[] = {
		"", "http://example.com/", "imap://example.com/INBOX",
		"imap://joe@example.com/INBOX/;uid=0", "not a url",
		"imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=bogus:x:y",
	};
	char buf[LIMITS_URL_CANON_MAX];
	uint8_t key[16] = { 0 }, h[LIMITS_URL_HASH_LEN];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(limits_url_canonical(bad[i], strlen(bad[i]), buf,
		    sizeof(buf)), -1);
		assert_int_equal(limits_url_hash(bad[i], strlen(bad[i]), key,
		    sizeof(key), h), -1);
	}
	/* too small a buffer: refused, and nothing of the token left */
	assert_int_equal(limits_url_canonical(BASE, strlen(BASE), buf, 40), -1);
	assert_string_equal(buf, "");
}

static void
test_keyed(void **state)
{
	uint8_t k1[32], k2[32], h1[LIMITS_URL_HASH_LEN], h2[LIMITS_URL_HASH_LEN],
	    h3[LIMITS_URL_HASH_LEN];
	char hex[2 * LIMITS_URL_HASH_LEN + 1];
	size_t i;

	(void)state;
	memset(k1, 1, sizeof(k1));
	memset(k2, 2, sizeof(k2));
	assert_int_equal(limits_url_hash(BASE, strlen(BASE), k1, sizeof(k1), h1), 0);
	assert_int_equal(limits_url_hash(BASE, strlen(BASE), k2, sizeof(k2), h2), 0);
	assert_int_equal(limits_url_hash(BASE, strlen(BASE), k1, sizeof(k1), h3), 0);
	/* another key, another hash: what Redis holds cannot be matched
	 * against URLs without the key */
	assert_memory_not_equal(h1, h2, sizeof(h1));
	assert_memory_equal(h1, h3, sizeof(h1));
	limits_url_hex(h1, hex);
	assert_int_equal(strlen(hex), 64);
	for (i = 0; i < 64; i++)
		assert_non_null(strchr("0123456789abcdef", hex[i]));
	/* the hex of a known hash */
	memset(h3, 0, sizeof(h3));
	h3[0] = 0xab;
	h3[31] = 0x0f;
	limits_url_hex(h3, hex);
	assert_string_equal(hex, "ab0000000000000000000000000000000000000000000000"
	    "000000000000000f");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_canonical_form),
		cmocka_unit_test(test_same_reference),
		cmocka_unit_test(test_different_references),
		cmocka_unit_test(test_not_imap),
		cmocka_unit_test(test_keyed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
