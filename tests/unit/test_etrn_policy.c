/*
 * test_etrn_policy.c - the ETRN policy (proxy/etrn_policy.c): what a grant
 * covers, which rules apply to a client, and the verdicts, table-driven.
 *
 * The policy under test is built the way conf.c builds it (struct
 * conf_etrn), with conf_parse_cidr() for the networks; the requests are
 * parsed with smtp_parse_etrn(), as the session does.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "etrn_policy.h"

#define N_ELEMENTS(a)	(sizeof(a) / sizeof((a)[0]))

static struct smtp_etrn
req_of(const char *arg)
{
	struct smtp_etrn r;

	if (smtp_parse_etrn(arg, &r) != SMTP_ETRN_OK)
		fail_msg("test request \"%s\" does not parse", arg);
	return r;
}

/* "192.0.2.7", "2001:db8::1", "::ffff:192.0.2.7", "unix" or NULL */
static const struct sockaddr *
addr_of(const char *text, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (text == NULL)
		return NULL;
	if (strcmp(text, "unix") == 0) {
		struct sockaddr_un *sun = (struct sockaddr_un *)ss;

		sun->sun_family = AF_UNIX;
		snprintf(sun->sun_path, sizeof(sun->sun_path), "/run/x.sock");
	} else if (strchr(text, ':') != NULL) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, text, &sin6->sin6_addr), 1);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, text, &sin->sin_addr), 1);
	}
	return (const struct sockaddr *)ss;
}

/* ------------------------------------------------------------------ */
/* etrn_grant_covers */

struct grant_case {
	const char *grant;
	const char *req;
	int covers;
};

static const struct grant_case grant_cases[] = {
	/* a node grant: that node exactly, case-blind */
	{ "mail.example.org", "mail.example.org", 1 },
	{ "mail.example.org", "MAIL.Example.ORG", 1 },
	{ "Mail.Example.Org", "mail.example.org", 1 },
	{ "mail.example.org", "x.mail.example.org", 0 },
	{ "mail.example.org", "example.org", 0 },
	{ "mail.example.org", "@mail.example.org", 0 },
	{ "mail.example.org", "mail.example.org.evil.example", 0 },
	{ "mail.example.org", "#mail.example.org", 0 },
	{ "example.org", "anexample.org", 0 },
	/* an @domain grant: everything at or below it */
	{ "@example.org", "@example.org", 1 },
	{ "@example.org", "@EXAMPLE.org", 1 },
	{ "@example.org", "@sub.example.org", 1 },
	{ "@example.org", "@a.b.c.example.org", 1 },
	{ "@example.org", "example.org", 1 },
	{ "@example.org", "host.example.org", 1 },
	{ "@example.org", "host.sub.EXAMPLE.ORG", 1 },
	{ "@example.org", "@org", 0 },
	{ "@example.org", "@badexample.org", 0 },
	{ "@example.org", "badexample.org", 0 },
	{ "@example.org", "example.org.evil.example", 0 },
	{ "@example.org", "@example.com", 0 },
	{ "@example.org", "#example.org", 0 },
	{ "@sub.example.org", "@example.org", 0 },
	{ "@sub.example.org", "example.org", 0 },
	{ "@com", "@com", 1 },
	{ "@com", "@example.com", 1 },
	{ "@com", "example.com", 1 },
	{ "@com", "example.org", 0 },
	/* a queue grant: that queue exactly, case-sensitive */
	{ "#q1", "#q1", 1 },
	{ "#q1", "#Q1", 0 },
	{ "#q1", "#q10", 0 },
	{ "#q1", "#q", 0 },
	{ "#uucp", "@uucp", 0 },
	/* grants that do not parse cover nothing */
	{ "", "example.org", 0 },
	{ "localname", "localname.example", 0 },
	{ "@", "@example.org", 0 },
	{ "#", "#q", 0 },
	{ "*", "example.org", 0 },
	{ "@*.example.org", "@example.org", 0 },
};

static void
test_grant_covers(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(grant_cases); i++) {
		const struct grant_case *c = &grant_cases[i];
		struct smtp_etrn r = req_of(c->req);

		if (etrn_grant_covers(c->grant, &r) != c->covers)
			fail_msg("grant \"%s\", ETRN %s: want %d", c->grant,
			    c->req, c->covers);
	}
}

/* ------------------------------------------------------------------ */
/* the policy */

static void
add_net(struct conf_etrn_rule *r, const char *cidr)
{
	const char *error;

	assert_int_equal(conf_parse_cidr(cidr, &r->networks[r->network_count],
	    &error), 0);
	r->network_count++;
}

static void
add_allow(struct conf_etrn_rule *r, const char *grant)
{
	snprintf(r->allow[r->allow_count], sizeof(r->allow[0]), "%s", grant);
	r->allow_count++;
}

/*
 *   0  alice                             alice.example @alice.org #alicequeue
 *   1  any identity, from 192.0.2.0/24   @office.example
 *   2  198.51.100.0/24, 2001:db8::/32    relay.example.net #uucp
 *   3  BOB (case differs from "bob")     bob.example
 *   4  alice, from 203.0.113.0/24        @branch.example
 */
static struct conf_etrn *
policy(int wildcard_tld)
{
	struct conf_etrn *p = calloc(1, sizeof(*p));
	struct conf_etrn_rule *r;

	assert_non_null(p);
	p->allow_wildcard_tld = wildcard_tld;
	r = &p->rules[p->rule_count++];
	snprintf(r->identity, sizeof(r->identity), "alice");
	add_allow(r, "alice.example");
	add_allow(r, "@alice.org");
	add_allow(r, "#alicequeue");
	r = &p->rules[p->rule_count++];
	snprintf(r->identity, sizeof(r->identity), "*");
	add_net(r, "192.0.2.0/24");
	add_allow(r, "@office.example");
	r = &p->rules[p->rule_count++];
	add_net(r, "198.51.100.0/24");
	add_net(r, "2001:db8::/32");
	add_allow(r, "relay.example.net");
	add_allow(r, "#uucp");
	r = &p->rules[p->rule_count++];
	snprintf(r->identity, sizeof(r->identity), "BOB");
	add_allow(r, "bob.example");
	r = &p->rules[p->rule_count++];
	snprintf(r->identity, sizeof(r->identity), "alice");
	add_net(r, "203.0.113.0/24");
	add_allow(r, "@branch.example");
	if (wildcard_tld) {
		r = &p->rules[p->rule_count++];
		snprintf(r->identity, sizeof(r->identity), "root");
		add_allow(r, "@com");
	}
	return p;
}

struct policy_case {
	const char *identity;	/* NULL: not authenticated */
	const char *addr;
	const char *req;
	enum etrn_verdict want;
	int rule;		/* when allowed */
};

static const struct policy_case policy_cases[] = {
	/* alice, anywhere */
	{ "alice", "127.0.0.1", "alice.example", ETRN_ALLOWED, 0 },
	{ "ALICE", "127.0.0.1", "alice.example", ETRN_ALLOWED, 0 },
	{ "alice", "127.0.0.1", "@alice.org", ETRN_ALLOWED, 0 },
	{ "alice", "127.0.0.1", "@lists.alice.org", ETRN_ALLOWED, 0 },
	{ "alice", "127.0.0.1", "mx.alice.org", ETRN_ALLOWED, 0 },
	{ "alice", "127.0.0.1", "#alicequeue", ETRN_ALLOWED, 0 },
	{ "alice", NULL, "#alicequeue", ETRN_ALLOWED, 0 },
	{ "alice", "unix", "alice.example", ETRN_ALLOWED, 0 },
	{ "alice", "127.0.0.1", "bob.example", ETRN_DENIED_NOT_LISTED, -1 },
	{ "alice", "127.0.0.1", "@alice.example", ETRN_DENIED_NOT_LISTED, -1 },
	{ "alice", "127.0.0.1", "x.alice.example", ETRN_DENIED_NOT_LISTED, -1 },
	{ "alice", "127.0.0.1", "#bobqueue", ETRN_DENIED_NOT_LISTED, -1 },
	/* her branch-office rule only from the branch network */
	{ "alice", "203.0.113.9", "@branch.example", ETRN_ALLOWED, 4 },
	{ "alice", "203.0.113.9", "alice.example", ETRN_ALLOWED, 0 },
	{ "alice", "127.0.0.1", "@branch.example", ETRN_DENIED_NOT_LISTED, -1 },
	{ "alice", "::ffff:203.0.113.9", "@branch.example", ETRN_ALLOWED, 4 },
	/* the office rule: anyone authenticated, from the office network */
	{ "alice", "192.0.2.7", "@office.example", ETRN_ALLOWED, 1 },
	{ "carol", "192.0.2.7", "mx.office.example", ETRN_ALLOWED, 1 },
	{ "carol", "192.0.2.7", "alice.example", ETRN_DENIED_NOT_LISTED, -1 },
	{ NULL, "192.0.2.7", "@office.example", ETRN_DENIED_NO_RULE, -1 },
	{ "carol", "192.0.3.7", "@office.example", ETRN_DENIED_NO_RULE, -1 },
	{ "", "192.0.2.7", "@office.example", ETRN_DENIED_NO_RULE, -1 },
	/* a network rule: anyone from there, authenticated or not */
	{ NULL, "198.51.100.20", "relay.example.net", ETRN_ALLOWED, 2 },
	{ NULL, "198.51.100.20", "#uucp", ETRN_ALLOWED, 2 },
	{ "carol", "198.51.100.20", "relay.example.net", ETRN_ALLOWED, 2 },
	{ NULL, "2001:db8:1::5", "relay.example.net", ETRN_ALLOWED, 2 },
	{ NULL, "::ffff:198.51.100.20", "relay.example.net", ETRN_ALLOWED, 2 },
	{ NULL, "2001:db9::5", "relay.example.net", ETRN_DENIED_NO_RULE, -1 },
	{ NULL, "198.51.101.20", "relay.example.net", ETRN_DENIED_NO_RULE, -1 },
	{ NULL, "198.51.100.20", "other.example.net", ETRN_DENIED_NOT_LISTED,
	    -1 },
	{ NULL, "198.51.100.20", "@example.net", ETRN_DENIED_NOT_LISTED, -1 },
	{ NULL, "unix", "relay.example.net", ETRN_DENIED_NO_RULE, -1 },
	{ NULL, NULL, "relay.example.net", ETRN_DENIED_NO_RULE, -1 },
	/* identities compare without regard to case */
	{ "bob", "127.0.0.1", "bob.example", ETRN_ALLOWED, 3 },
	{ "Bob", "127.0.0.1", "BOB.EXAMPLE", ETRN_ALLOWED, 3 },
	{ "bobby", "127.0.0.1", "bob.example", ETRN_DENIED_NO_RULE, -1 },
	{ "bob", "127.0.0.1", "alice.example", ETRN_DENIED_NOT_LISTED, -1 },
	/* nobody */
	{ NULL, "127.0.0.1", "alice.example", ETRN_DENIED_NO_RULE, -1 },
	{ "mallory", "127.0.0.1", "alice.example", ETRN_DENIED_NO_RULE, -1 },
	/* RFC 1985 8: "@com" before any rule, even for the office */
	{ "alice", "192.0.2.7", "@com", ETRN_DENIED_TLD, -1 },
	{ "alice", "127.0.0.1", "@org", ETRN_DENIED_TLD, -1 },
	{ NULL, "127.0.0.1", "@example", ETRN_DENIED_TLD, -1 },
	{ "root", "127.0.0.1", "@com", ETRN_DENIED_TLD, -1 },
};

/* With allow_wildcard_tld: "@com" goes to the rules like anything else. */
static const struct policy_case policy_tld_cases[] = {
	{ "root", "127.0.0.1", "@com", ETRN_ALLOWED, 5 },
	{ "root", "127.0.0.1", "@example.com", ETRN_ALLOWED, 5 },
	{ "root", "127.0.0.1", "@org", ETRN_DENIED_NOT_LISTED, -1 },
	{ "alice", "127.0.0.1", "@com", ETRN_DENIED_NOT_LISTED, -1 },
	{ NULL, "127.0.0.1", "@com", ETRN_DENIED_NO_RULE, -1 },
	{ "alice", "127.0.0.1", "@alice.org", ETRN_ALLOWED, 0 },
};

static void
run_cases(const struct conf_etrn *p, const struct policy_case *cases,
	  size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		const struct policy_case *c = &cases[i];
		struct sockaddr_storage ss;
		struct etrn_client who = { c->identity, addr_of(c->addr, &ss) };
		struct smtp_etrn r = req_of(c->req);
		enum etrn_verdict v;
		int rule = 99;

		v = etrn_policy_check(p, &who, &r, &rule);
		if (v != c->want || rule != c->rule)
			fail_msg("case %zu: %s from %s, ETRN %s: got %s (rule "
			    "%d), want %s (rule %d)", i,
			    c->identity ? c->identity : "(none)",
			    c->addr ? c->addr : "(none)", c->req,
			    etrn_verdict_name(v), rule,
			    etrn_verdict_name(c->want), c->rule);
		/* rule_r is optional */
		assert_int_equal(etrn_policy_check(p, &who, &r, NULL), v);
	}
}

static void
test_policy(void **state)
{
	struct conf_etrn *p = policy(0);

	(void)state;
	run_cases(p, policy_cases, N_ELEMENTS(policy_cases));
	free(p);
}

static void
test_policy_wildcard_tld(void **state)
{
	struct conf_etrn *p = policy(1);

	(void)state;
	run_cases(p, policy_tld_cases, N_ELEMENTS(policy_tld_cases));
	free(p);
}

/* No rules: everything is refused, "@com" still for its own reason. */
static void
test_policy_empty(void **state)
{
	struct conf_etrn *p = calloc(1, sizeof(*p));
	struct sockaddr_storage ss;
	struct etrn_client who = { "alice", addr_of("127.0.0.1", &ss) };
	struct smtp_etrn r = req_of("example.org");
	int rule = 5;

	(void)state;
	assert_non_null(p);
	assert_int_equal(etrn_policy_check(p, &who, &r, &rule),
	    ETRN_DENIED_NO_RULE);
	assert_int_equal(rule, -1);
	r = req_of("@com");
	assert_int_equal(etrn_policy_check(p, &who, &r, &rule),
	    ETRN_DENIED_TLD);
	free(p);
}

/* A rule with neither selector (conf.c refuses to build one) applies to
 * nobody, rather than to everybody. */
static void
test_rule_without_selectors(void **state)
{
	struct conf_etrn_rule r;
	struct sockaddr_storage ss;
	struct etrn_client anon = { NULL, addr_of("192.0.2.1", &ss) };
	struct etrn_client alice = { "alice", addr_of("192.0.2.1", &ss) };

	(void)state;
	memset(&r, 0, sizeof(r));
	add_allow(&r, "example.org");
	assert_false(etrn_rule_applies(&r, &anon));
	assert_false(etrn_rule_applies(&r, &alice));
}

static void
test_verdict_names(void **state)
{
	(void)state;
	assert_string_equal(etrn_verdict_name(ETRN_ALLOWED), "allowed");
	assert_non_null(strstr(etrn_verdict_name(ETRN_DENIED_TLD), "1985"));
	assert_non_null(strstr(etrn_verdict_name(ETRN_DENIED_NO_RULE),
	    "no rule"));
	assert_non_null(strstr(etrn_verdict_name(ETRN_DENIED_NOT_LISTED),
	    "not granted"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grant_covers),
		cmocka_unit_test(test_policy),
		cmocka_unit_test(test_policy_wildcard_tld),
		cmocka_unit_test(test_policy_empty),
		cmocka_unit_test(test_rule_without_selectors),
		cmocka_unit_test(test_verdict_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
