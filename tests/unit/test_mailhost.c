/*
 * test_mailhost.c - the mailHost directory's pure parts (trust/mailhost.h,
 * trust/mailhost_ldap.h): host[:port] validation, the map file and its
 * FILE:LINE errors, RFC 4515 filter escaping, the cache (TTLs, LRU bound,
 * case-blind keys); and the directory on a real event loop with a map file
 * and with an LDAP server that is not there (answers only from the loop,
 * cancel, UNAVAILABLE).  Against a real slapd: tests/integration/
 * test_mailhost.py with tests/unit/mailhost_driver.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf.h"
#include "mailhost.h"
#include "mailhost_ldap.h"

static char tmp_path[256];

static const char *
write_tmp(const char *text)
{
	const char *dir = getenv("TMPDIR");
	size_t len = strlen(text);
	int fd;

	snprintf(tmp_path, sizeof(tmp_path), "%s/test_mailhost.XXXXXX",
	    dir != NULL && *dir != '\0' ? dir : "/tmp");
	fd = mkstemp(tmp_path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
	return tmp_path;
}

/* ------------------------------------------------------------------------ */

static void
test_valid_host(void **state)
{
	static const struct {
		const char *host;
		int ok;
	} cases[] = {
		{ "imap1.example.com", 1 },
		{ "imap2.example.com:10143", 1 },
		{ "IMAP.Example.COM", 1 },
		{ "localhost", 1 },
		{ "192.0.2.1", 1 },
		{ "192.0.2.1:143", 1 },
		{ "[2001:db8::1]", 1 },
		{ "[2001:db8::1]:993", 1 },
		{ "a-b.c", 1 },
		{ "", 0 },
		{ ":143", 0 },
		{ "host:", 0 },
		{ "host:0", 0 },
		{ "host:65536", 0 },
		{ "host:143x", 0 },
		{ "host:1:2", 0 },
		{ "-host.example", 0 },
		{ "host-.example", 0 },
		{ "host..example", 0 },
		{ ".example", 0 },
		{ "example.", 0 },
		{ "ho st", 0 },
		{ "host/x", 0 },
		{ "host_x", 0 },
		{ "user@host", 0 },
		{ "[2001:db8::1", 0 },
		{ "[nonsense]", 0 },
		{ "[2001:db8::1]143", 0 },
		{ "imap\r\n.example", 0 },
	};
	char longlabel[80], longname[300];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (mailhost_valid_host(cases[i].host) != cases[i].ok)
			fail_msg("mailhost_valid_host(\"%s\") != %d",
			    cases[i].host, cases[i].ok);
	memset(longlabel, 'a', 64);
	longlabel[64] = '\0';
	assert_false(mailhost_valid_host(longlabel));
	longlabel[63] = '\0';
	assert_true(mailhost_valid_host(longlabel));
	for (i = 0; i < 260; i++)
		longname[i] = i % 2 ? '.' : 'a';
	longname[259] = '\0';
	assert_false(mailhost_valid_host(longname));
}

/* ------------------------------------------------------------------------ */

static void
test_map_load(void **state)
{
	struct mailhost_map *m;
	const char *err = NULL;

	(void)state;
	m = mailhost_map_load(write_tmp(
	    "# users and their IMAP servers\n"
	    "\n"
	    "alice   imap1.example.com\n"
	    "  Bob\timap2.example.com:10143   # bob moved\n"
	    "carol imap1.example.com#no space before the comment\n"
	    "   # indented comment\n"
	    "dave@example.com [2001:db8::1]:993\r\n"
	    "last-line-without-newline 192.0.2.7"), &err);
	unlink(tmp_path);
	if (m == NULL)
		fail_msg("%s", err);
	assert_int_equal(mailhost_map_count(m), 5);
	assert_string_equal(mailhost_map_get(m, "alice"), "imap1.example.com");
	assert_string_equal(mailhost_map_get(m, "ALICE"), "imap1.example.com");
	assert_string_equal(mailhost_map_get(m, "bob"),
	    "imap2.example.com:10143");
	assert_string_equal(mailhost_map_get(m, "BOB"),
	    "imap2.example.com:10143");
	assert_string_equal(mailhost_map_get(m, "carol"), "imap1.example.com");
	assert_string_equal(mailhost_map_get(m, "Dave@Example.com"),
	    "[2001:db8::1]:993");
	assert_string_equal(mailhost_map_get(m, "last-line-without-newline"),
	    "192.0.2.7");
	assert_null(mailhost_map_get(m, "eve"));
	assert_null(mailhost_map_get(m, "alic"));
	assert_null(mailhost_map_get(m, "alice "));
	assert_null(mailhost_map_get(m, "#"));
	mailhost_map_free(&m);
	assert_null(m);

	/* empty file: a valid, empty map */
	m = mailhost_map_load(write_tmp("# nobody yet\n"), &err);
	unlink(tmp_path);
	assert_non_null(m);
	assert_int_equal(mailhost_map_count(m), 0);
	mailhost_map_free(&m);
}

static void
test_map_many(void **state)
{
	char *text = malloc(50 * 5000), user[32], want[64];
	struct mailhost_map *m;
	const char *err = NULL;
	size_t len = 0;
	int i;

	(void)state;
	assert_non_null(text);
	for (i = 0; i < 5000; i++)
		len += (size_t)sprintf(text + len, "user%d imap%d.example:%d\n",
		    i, i % 7, 1000 + i);
	m = mailhost_map_load(write_tmp(text), &err);
	unlink(tmp_path);
	free(text);
	if (m == NULL)
		fail_msg("%s", err);
	assert_int_equal(mailhost_map_count(m), 5000);
	for (i = 0; i < 5000; i += 37) {
		snprintf(user, sizeof(user), "USER%d", i);
		snprintf(want, sizeof(want), "imap%d.example:%d", i % 7,
		    1000 + i);
		assert_string_equal(mailhost_map_get(m, user), want);
	}
	mailhost_map_free(&m);
}

/* err contains the line "PATH:LINE: msg" */
static void
assert_map_error(const char *err, unsigned line, const char *msg)
{
	char want[600];
	const char *p = err;
	size_t len;

	snprintf(want, sizeof(want), "%s:%u: %s", tmp_path, line, msg);
	len = strlen(want);
	while ((p = strstr(p, want)) != NULL) {
		if ((p == err || p[-1] == '\n') &&
		    (p[len] == '\0' || p[len] == '\n'))
			return;
		p++;
	}
	fail_msg("expected line\n  %s\nin\n%s", want, err);
}

static void
test_map_errors(void **state)
{
	char big[1200];
	struct mailhost_map *m;
	const char *err = NULL;
	char *text;

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_true(asprintf(&text,
	    "alice imap1.example.com\n"		/* 1 */
	    "bob\n"					/* 2 */
	    "carol imap1.example.com extra\n"	/* 3 */
	    "dave imap bad.example\n"		/* 4 */
	    "erin imap..example\n"			/* 5 */
	    "ALICE imap2.example.com\n"		/* 6 */
	    "frank host:99999\n"			/* 7 */
	    "%s imap1.example.com\n"		/* 8 */
	    "gina imap1.example.com\n",		/* 9: fine */
	    big) > 0);
	m = mailhost_map_load(write_tmp(text), &err);
	unlink(tmp_path);
	free(text);
	assert_null(m);
	assert_non_null(err);
	assert_map_error(err, 2, "a user without a mailhost");
	assert_map_error(err, 3, "more than two fields (user mailhost)");
	assert_map_error(err, 4, "more than two fields (user mailhost)");
	assert_map_error(err, 5,
	    "mailhost \"imap..example\" is not host or host:port");
	assert_map_error(err, 6, "user \"ALICE\" appears twice");
	assert_map_error(err, 7,
	    "mailhost \"host:99999\" is not host or host:port");
	assert_map_error(err, 8, "line longer than 1024 bytes");
	assert_null(strstr(err, ":9:"));

	/* a long user name within a short line */
	memset(big, 'u', 300);
	big[300] = '\0';
	assert_true(asprintf(&text, "%s imap1.example.com\n", big) > 0);
	m = mailhost_map_load(write_tmp(text), &err);
	unlink(tmp_path);
	free(text);
	assert_null(m);
	assert_map_error(err, 1, "user name longer than 255 bytes");

	/* more than 10 problems: the first 10 and a count */
	m = mailhost_map_load(write_tmp("a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\n"),
	    &err);
	unlink(tmp_path);
	assert_null(m);
	assert_map_error(err, 10, "a user without a mailhost");
	assert_null(strstr(err, ":11:"));
	assert_non_null(strstr(err, ": 2 more problems"));

	m = mailhost_map_load("/nonexistent/mailhosts", &err);
	assert_null(m);
	assert_string_equal(err,
	    "/nonexistent/mailhosts: No such file or directory");
}

/* ------------------------------------------------------------------------ */

static void
test_filter(void **state)
{
	static const struct {
		const char *tmpl, *user, *want;
	} cases[] = {
		{ "(uid=%u)", "alice", "(uid=alice)" },
		{ "(uid=%u)", "Alice.Smith-2", "(uid=Alice.Smith-2)" },
		/* RFC 4515 3: the five that must be escaped */
		{ "(uid=%u)", "*", "(uid=\\2a)" },
		{ "(uid=%u)", "a(b)c", "(uid=a\\28b\\29c)" },
		{ "(uid=%u)", "back\\slash", "(uid=back\\5cslash)" },
		/* the injection attempts */
		{ "(uid=%u)", "*)(uid=*", "(uid=\\2a\\29\\28uid=\\2a)" },
		{ "(uid=%u)", "alice)(|(uid=*",
		  "(uid=alice\\29\\28|\\28uid=\\2a)" },
		{ "(&(objectClass=inetOrgPerson)(uid=%u))", "x*",
		  "(&(objectClass=inetOrgPerson)(uid=x\\2a))" },
		/* non-ASCII and controls, escaped too */
		{ "(uid=%u)", "j\xc3\xb6rg", "(uid=j\\c3\\b6rg)" },
		{ "(uid=%u)", "a\tb\x7f", "(uid=a\\09b\\7f)" },
		/* several %u, %% */
		{ "(|(uid=%u)(mail=%u@example.com))", "bob",
		  "(|(uid=bob)(mail=bob@example.com))" },
		{ "(&(uid=%u)(x=100%%))", "bob", "(&(uid=bob)(x=100%))" },
		{ "(uid=%u)", "", "(uid=)" },
		/* characters that need no escaping stay */
		{ "(uid=%u)", "a=b&c|d!e~f>g<h", "(uid=a=b&c|d!e~f>g<h)" },
	};
	char out[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int n = mailhost_ldap_filter(cases[i].tmpl, cases[i].user, out,
		    sizeof(out));

		if (n < 0 || strcmp(out, cases[i].want) != 0 ||
		    (size_t)n != strlen(cases[i].want))
			fail_msg("filter(%s, %s) = %d \"%s\", want \"%s\"",
			    cases[i].tmpl, cases[i].user, n, n >= 0 ? out : "",
			    cases[i].want);
	}
	/* exact fit and one short */
	assert_int_equal(mailhost_ldap_filter("(uid=%u)", "*", out, 10), 9);
	assert_string_equal(out, "(uid=\\2a)");
	assert_int_equal(mailhost_ldap_filter("(uid=%u)", "**", out, 12), -1);
	assert_int_equal(mailhost_ldap_filter("(uid=%u)", "**", out, 13), 12);
	assert_int_equal(mailhost_ldap_filter("(uid=%u)", "ab", out, 8), -1);
	assert_int_equal(mailhost_ldap_filter("(uid=%u)", "ab", out, 9), 8);
	assert_int_equal(mailhost_ldap_filter("(uid=%u))", "ab", out, 9), -1);
}

/* ------------------------------------------------------------------------ */

static void
test_cache(void **state)
{
	struct mailhost_cache *c = mailhost_cache_new(3);
	enum mailhost_result r;
	char host[MAILHOST_MAX_HOST];

	(void)state;
	assert_non_null(c);
	assert_int_equal(mailhost_cache_get(c, "alice", 100, &r, host), 0);
	mailhost_cache_put(c, "alice", MAILHOST_FOUND, "imap1.example.com", 400);
	mailhost_cache_put(c, "carol", MAILHOST_NOT_FOUND, "ignored", 160);
	mailhost_cache_put(c, "dave", MAILHOST_UNAVAILABLE, "", 1000);
	assert_int_equal(mailhost_cache_count(c), 2);	/* never cached */

	assert_int_equal(mailhost_cache_get(c, "ALICE", 399, &r, host), 1);
	assert_int_equal(r, MAILHOST_FOUND);
	assert_string_equal(host, "imap1.example.com");
	assert_int_equal(mailhost_cache_get(c, "carol", 159, &r, host), 1);
	assert_int_equal(r, MAILHOST_NOT_FOUND);
	assert_string_equal(host, "");
	/* negative entry expired at its own TTL, the positive one not */
	assert_int_equal(mailhost_cache_get(c, "carol", 160, &r, host), 0);
	assert_int_equal(mailhost_cache_count(c), 1);
	assert_int_equal(mailhost_cache_get(c, "alice", 200, &r, host), 1);
	assert_int_equal(mailhost_cache_get(c, "alice", 400, &r, host), 0);
	assert_int_equal(mailhost_cache_count(c), 0);

	/* replace */
	mailhost_cache_put(c, "bob", MAILHOST_NOT_FOUND, "", 500);
	mailhost_cache_put(c, "Bob", MAILHOST_FOUND, "imap2.example.com:10143",
	    500);
	assert_int_equal(mailhost_cache_count(c), 1);
	assert_int_equal(mailhost_cache_get(c, "bob", 10, &r, host), 1);
	assert_int_equal(r, MAILHOST_FOUND);
	assert_string_equal(host, "imap2.example.com:10143");

	/* bounded: the least recently used goes */
	mailhost_cache_put(c, "u1", MAILHOST_FOUND, "h1", 500);
	mailhost_cache_put(c, "u2", MAILHOST_FOUND, "h2", 500);
	assert_int_equal(mailhost_cache_count(c), 3);
	/* bob is the oldest; touch it, so u1 is */
	assert_int_equal(mailhost_cache_get(c, "bob", 10, &r, host), 1);
	mailhost_cache_put(c, "u3", MAILHOST_FOUND, "h3", 500);
	assert_int_equal(mailhost_cache_count(c), 3);
	assert_int_equal(mailhost_cache_get(c, "u1", 10, &r, host), 0);
	assert_int_equal(mailhost_cache_get(c, "bob", 10, &r, host), 1);
	assert_int_equal(mailhost_cache_get(c, "u2", 10, &r, host), 1);
	assert_int_equal(mailhost_cache_get(c, "u3", 10, &r, host), 1);
	mailhost_cache_free(&c);
	assert_null(c);

	/* size 0: nothing kept */
	c = mailhost_cache_new(0);
	mailhost_cache_put(c, "alice", MAILHOST_FOUND, "h", 500);
	assert_int_equal(mailhost_cache_count(c), 0);
	assert_int_equal(mailhost_cache_get(c, "alice", 10, &r, host), 0);
	mailhost_cache_free(&c);
}

static void
test_cache_many(void **state)
{
	struct mailhost_cache *c = mailhost_cache_new(1000);
	enum mailhost_result r;
	char host[MAILHOST_MAX_HOST], user[32], want[32];
	int i;

	(void)state;
	for (i = 0; i < 5000; i++) {
		snprintf(user, sizeof(user), "user%d", i);
		snprintf(want, sizeof(want), "h%d", i);
		mailhost_cache_put(c, user, MAILHOST_FOUND, want, 1000);
		assert_true(mailhost_cache_count(c) <= 1000);
	}
	assert_int_equal(mailhost_cache_count(c), 1000);
	for (i = 0; i < 5000; i++) {
		snprintf(user, sizeof(user), "USER%d", i);
		assert_int_equal(mailhost_cache_get(c, user, 10, &r, host),
		    i >= 4000);
		if (i >= 4000) {
			snprintf(want, sizeof(want), "h%d", i);
			assert_string_equal(host, want);
		}
	}
	mailhost_cache_free(&c);
}

/* ------------------------------------------------------------------------
 * The directory on an event loop
 */

struct answer {
	int called;
	enum mailhost_result r;
	char host[MAILHOST_MAX_HOST];
	struct event_base *base;
	int *in_lookup;
};

static void
on_answer(void *ctx, enum mailhost_result r, const char *host)
{
	struct answer *a = ctx;

	assert_false(*a->in_lookup);	/* never from inside the call */
	a->called++;
	a->r = r;
	snprintf(a->host, sizeof(a->host), "%s", host);
}

static struct conf_burl *
burl_conf(const char *map_file, const char *ldap_uri)
{
	struct conf_burl *cb = calloc(1, sizeof(*cb));
	struct conf_mailhost *m = &cb->mailhost;

	assert_non_null(cb);
	cb->enabled = 1;
	m->enabled = 1;
	snprintf(m->map_file, sizeof(m->map_file), "%s", map_file);
	snprintf(m->ldap_uri, sizeof(m->ldap_uri), "%s", ldap_uri);
	snprintf(m->ldap_base, sizeof(m->ldap_base), "dc=example,dc=com");
	snprintf(m->ldap_filter, sizeof(m->ldap_filter), "(uid=%%u)");
	snprintf(m->ldap_attribute, sizeof(m->ldap_attribute), "mailHost");
	m->cache_ttl = 300;
	m->negative_ttl = 60;
	m->cache_size = 100;
	m->timeout = 2;
	return cb;
}

static void
test_dir_map(void **state)
{
	struct event_base *base = event_base_new();
	struct conf_burl *cb;
	struct mailhost_dir *d;
	struct mailhost_req *r1, *r2, *r3, *r4;
	struct answer a1 = { 0 }, a2 = { 0 }, a3 = { 0 }, a4 = { 0 };
	struct mailhost_stats st;
	const char *err = NULL;
	int in_lookup = 0;
	char longuser[300];

	(void)state;
	write_tmp("alice imap1.example.com\nbob imap2.example.com:10143\n");
	cb = burl_conf(tmp_path, "");
	assert_int_equal(mailhost_global_init(cb, &err), 0);
	unlink(tmp_path);	/* loaded: the workers do not read it */
	d = mailhost_dir_new(base, cb, &err);
	assert_non_null(d);
	a1.in_lookup = a2.in_lookup = a3.in_lookup = a4.in_lookup = &in_lookup;

	in_lookup = 1;
	r1 = mailhost_lookup(d, "Alice", on_answer, &a1);
	r2 = mailhost_lookup(d, "carol", on_answer, &a2);
	r3 = mailhost_lookup(d, "bob", on_answer, &a3);
	memset(longuser, 'a', sizeof(longuser) - 1);
	longuser[sizeof(longuser) - 1] = '\0';
	r4 = mailhost_lookup(d, longuser, on_answer, &a4);
	in_lookup = 0;
	assert_non_null(r1);
	assert_non_null(r2);
	assert_non_null(r3);
	assert_non_null(r4);
	assert_int_equal(a1.called + a2.called + a3.called, 0);
	mailhost_cancel(&r3);
	assert_null(r3);
	event_base_loop(base, EVLOOP_NONBLOCK);
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(a1.called, 1);
	assert_int_equal(a1.r, MAILHOST_FOUND);
	assert_string_equal(a1.host, "imap1.example.com");
	assert_int_equal(a2.called, 1);
	assert_int_equal(a2.r, MAILHOST_NOT_FOUND);
	assert_string_equal(a2.host, "");
	assert_int_equal(a3.called, 0);		/* cancelled */
	assert_int_equal(a4.called, 1);
	assert_int_equal(a4.r, MAILHOST_NOT_FOUND);
	mailhost_dir_stats(d, &st);
	assert_int_equal(st.lookups, 4);
	assert_int_equal(st.map_hits, 2);

	/* freed with a lookup pending: no callback, no leak (ASan) */
	a2.called = 0;
	r2 = mailhost_lookup(d, "alice", on_answer, &a2);
	assert_non_null(r2);
	mailhost_dir_free(&d);
	assert_null(d);
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(a2.called, 0);
	mailhost_global_deinit();
	free(cb);
	event_base_free(base);
}

static void
test_dir_none(void **state)
{
	struct event_base *base = event_base_new();
	struct conf_burl *cb = burl_conf("", "");
	const char *err = "unset";

	(void)state;
	cb->mailhost.enabled = 0;
	assert_null(mailhost_dir_new(base, cb, &err));
	assert_null(err);
	free(cb);
	event_base_free(base);
}

/* A port on 127.0.0.1 where nothing listens. */
static int
dead_port(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	port = ntohs(sin.sin_port);
	close(fd);		/* bound, never listened: refused */
	return port;
}

static void
test_dir_ldap_down(void **state)
{
	struct event_base *base = event_base_new();
	struct conf_burl *cb;
	struct mailhost_dir *d;
	struct mailhost_req *r1, *r2, *r3;
	struct answer a1 = { 0 }, a2 = { 0 }, a3 = { 0 };
	const char *err = NULL;
	char uri[64];
	int in_lookup = 0;

	(void)state;
	snprintf(uri, sizeof(uri), "ldap://127.0.0.1:%d", dead_port());
	write_tmp("alice imap1.example.com\n");
	cb = burl_conf(tmp_path, uri);
	d = mailhost_dir_new(base, cb, &err);	/* loads the map itself */
	unlink(tmp_path);
	if (d == NULL)
		fail_msg("%s", err);
	a1.in_lookup = a2.in_lookup = a3.in_lookup = &in_lookup;
	in_lookup = 1;
	r1 = mailhost_lookup(d, "bob", on_answer, &a1);
	r2 = mailhost_lookup(d, "alice", on_answer, &a2);	/* map first */
	r3 = mailhost_lookup(d, "carol", on_answer, &a3);
	in_lookup = 0;
	assert_non_null(r1);
	assert_non_null(r2);
	assert_non_null(r3);
	mailhost_cancel(&r3);
	while (a1.called == 0 || a2.called == 0)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(a1.r, MAILHOST_UNAVAILABLE);
	assert_int_equal(a2.r, MAILHOST_FOUND);
	assert_string_equal(a2.host, "imap1.example.com");
	assert_int_equal(a3.called, 0);
	/* right after a failed attempt: failing at once, still from the
	 * loop; UNAVAILABLE is not cached */
	a1.called = 0;
	in_lookup = 1;
	r1 = mailhost_lookup(d, "bob", on_answer, &a1);
	in_lookup = 0;
	while (a1.called == 0)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(a1.r, MAILHOST_UNAVAILABLE);
	mailhost_dir_free(&d);
	mailhost_global_deinit();
	free(cb);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_host),
		cmocka_unit_test(test_map_load),
		cmocka_unit_test(test_map_many),
		cmocka_unit_test(test_map_errors),
		cmocka_unit_test(test_filter),
		cmocka_unit_test(test_cache),
		cmocka_unit_test(test_cache_many),
		cmocka_unit_test(test_dir_map),
		cmocka_unit_test(test_dir_none),
		cmocka_unit_test(test_dir_ldap_down),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
