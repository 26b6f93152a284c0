/*
 * etrn_policy.h - may this client release this node, @domain or #queue?
 * (RFC 1985 5.1: "make a local decision if it should honour the request";
 * section 8: sanity-check the @ and # forms.)
 *
 * A pure function of the configuration (struct conf_etrn), the client (its
 * authenticated identity and address) and the parsed request: no I/O, no
 * session, so it is table-tested (tests/unit/test_etrn_policy.c).
 *
 * Which rules apply to a client: a rule applies when every selector it has
 * matches.
 *   identity  the authenticated identity, compared without regard to case
 *             (as sasl.sender_map does); "*" matches any authenticated
 *             identity.  A rule with an identity never applies to a client
 *             that has not authenticated.
 *   networks  the client's address is inside one of them (IPv4-mapped IPv6
 *             addresses match IPv4 networks).  The address is the real
 *             client's, from the PROXY header when a load balancer sent one;
 *             a client on a unix socket has none and matches no network.
 * A rule without a networks selector applies from any address.
 *
 * What a grant (an `allow` entry) covers:
 *   "node.example"  exactly ETRN node.example (case-blind);
 *   "@example.org"  ETRN @example.org, @sub.example.org, example.org,
 *                   host.sub.example.org: everything at or below
 *                   example.org, i.e. everything "ETRN @example.org" would
 *                   release anyway;
 *   "#queue"        exactly ETRN #queue (case-sensitive: queue names are
 *                   the receiving server's own).
 * A request is allowed when any applicable rule has a grant that covers it.
 * Before the rules, "@tld" (an @domain of one label) is refused unless
 * allow_wildcard_tld is set (RFC 1985 8: "@com" would release mail for
 * every domain ending in com); conf.c refuses such grants unless it is set.
 */
#ifndef MSA_ETRN_POLICY_H
#define MSA_ETRN_POLICY_H

#include <sys/socket.h>

#include "conf.h"
#include "smtp_parse.h"

enum etrn_verdict {
	ETRN_ALLOWED,
	ETRN_DENIED_NO_RULE,	/* no rule applies to this client */
	ETRN_DENIED_NOT_LISTED,	/* rules apply; none covers the request */
	ETRN_DENIED_TLD,	/* "@com" without allow_wildcard_tld */
};

struct etrn_client {
	const char *identity;		/* authenticated identity; NULL or "" if none */
	const struct sockaddr *addr;	/* the client's address; may be NULL */
};

/*
 * Decide.  *rule_r (may be NULL) gets the index of the rule whose grant
 * allowed the request, or -1.
 */
enum etrn_verdict etrn_policy_check(const struct conf_etrn *policy,
				    const struct etrn_client *client,
				    const struct smtp_etrn *req, int *rule_r);

/* Does rule r apply to the client? */
int etrn_rule_applies(const struct conf_etrn_rule *r,
		      const struct etrn_client *client);

/* Does the grant (an allow entry as written in the configuration) cover
 * the request?  An entry that does not parse covers nothing. */
int etrn_grant_covers(const char *grant, const struct smtp_etrn *req);

/* "allowed", "no rule", ...: for logs. */
const char *etrn_verdict_name(enum etrn_verdict v);

#endif
