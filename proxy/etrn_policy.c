/*
 * etrn_policy.c - see etrn_policy.h.  Pure functions.
 */
#include <string.h>
#include <strings.h>

#include "etrn_policy.h"

/* Is name (len octets) dom itself or a name below it?  Case-blind. */
static int
at_or_below(const char *name, size_t len, const char *dom, size_t dlen)
{
	if (len == dlen)
		return strncasecmp(name, dom, len) == 0;
	if (len > dlen && name[len - dlen - 1] == '.')
		return strncasecmp(name + len - dlen, dom, dlen) == 0;
	return 0;
}

int
etrn_grant_covers(const char *grant, const struct smtp_etrn *req)
{
	struct smtp_etrn g;

	if (smtp_parse_etrn(grant, &g) != SMTP_ETRN_OK)
		return 0;
	switch (g.kind) {
	case SMTP_ETRN_NODE:
		return req->kind == SMTP_ETRN_NODE &&
		    req->name_len == g.name_len &&
		    strncasecmp(req->name, g.name, g.name_len) == 0;
	case SMTP_ETRN_DOMAIN:
		/* a node or an @domain, at or below the granted domain */
		return req->kind != SMTP_ETRN_QUEUE &&
		    at_or_below(req->name, req->name_len, g.name, g.name_len);
	case SMTP_ETRN_QUEUE:
		return req->kind == SMTP_ETRN_QUEUE &&
		    req->name_len == g.name_len &&
		    memcmp(req->name, g.name, g.name_len) == 0;
	}
	return 0;
}

int
etrn_rule_applies(const struct conf_etrn_rule *r,
		  const struct etrn_client *client)
{
	int authed = client->identity != NULL && client->identity[0] != '\0';

	if (r->identity[0] != '\0') {
		if (!authed)
			return 0;
		if (strcmp(r->identity, "*") != 0 &&
		    strcasecmp(r->identity, client->identity) != 0)
			return 0;
	}
	if (r->network_count > 0 &&
	    !conf_cidr_match_any(r->networks, r->network_count, client->addr))
		return 0;
	/* conf.c insists on at least one selector; a rule without any would
	 * be for everyone, so refuse to treat it as such here too */
	return r->identity[0] != '\0' || r->network_count > 0;
}

enum etrn_verdict
etrn_policy_check(const struct conf_etrn *policy,
		  const struct etrn_client *client, const struct smtp_etrn *req,
		  int *rule_r)
{
	int applied = 0;
	size_t i, j;

	if (rule_r != NULL)
		*rule_r = -1;
	/* RFC 1985 8 */
	if (req->kind == SMTP_ETRN_DOMAIN && req->labels < 2 &&
	    !policy->allow_wildcard_tld)
		return ETRN_DENIED_TLD;
	for (i = 0; i < policy->rule_count; i++) {
		const struct conf_etrn_rule *r = &policy->rules[i];

		if (!etrn_rule_applies(r, client))
			continue;
		applied = 1;
		for (j = 0; j < r->allow_count; j++) {
			if (etrn_grant_covers(r->allow[j], req)) {
				if (rule_r != NULL)
					*rule_r = (int)i;
				return ETRN_ALLOWED;
			}
		}
	}
	return applied ? ETRN_DENIED_NOT_LISTED : ETRN_DENIED_NO_RULE;
}

const char *
etrn_verdict_name(enum etrn_verdict v)
{
	switch (v) {
	case ETRN_ALLOWED:
		return "allowed";
	case ETRN_DENIED_NO_RULE:
		return "denied: no rule for this client";
	case ETRN_DENIED_NOT_LISTED:
		return "denied: not granted by the client's rules";
	case ETRN_DENIED_TLD:
		return "denied: top-level domain (RFC 1985 section 8)";
	}
	return "?";
}
