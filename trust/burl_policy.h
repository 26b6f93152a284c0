/*
 * burl_policy.h - may this authenticated user have this URL resolved, and by
 * which trusted IMAP server?  A pure function: the URL, the identity and the
 * configuration in; a verdict, a reply for the client and a reason for the
 * log out.  No I/O, so every rule is table-tested (tests/unit/test_burl_policy.c).
 *
 * SECURITY: IMAP servers let the submit identity fetch the submit+ URLs of
 * *any* user (Dovecot's imap_urlauth_submit_user, Cyrus's submitservers), and
 * in proxy-authorization mode msaproxy acts as whatever authorization
 * identity it names.  So this check is what stops alice from having bob's
 * drafts sent: the URL's userid and its access identifier must both be the
 * authenticated identity, compared after the documented mapping:
 *
 *   canonical(x) = x, or its local part when x is "local@domain" and domain
 *                  is one of burl.local_domains (case-blind);
 *   equal(a, b)  = canonical(a) and canonical(b) equal, case-blind.
 *
 * So with local_domains = "example.com LAB.TEST" the SASL identity "alice",
 * the Kerberos principal alice@LAB.TEST (whose default realm sasl.c already
 * strips) and the URL userids "alice", "alice@example.com" and
 * "ALICE@lab.test" are one user; "alice@other.example" is not.
 */
#ifndef MSA_BURL_POLICY_H
#define MSA_BURL_POLICY_H

#include <stddef.h>
#include <time.h>

#include "smtp_reply.h"

struct conf_burl;
struct imapurl;

struct burl_verdict {
	int allowed;
	size_t server;			/* index into conf_burl.servers */
	enum smtp_reply_id reply;	/* when refused */
	char reason[256];		/* for the log: no token, no secret */
	int mapped;			/* a local_domains mapping was applied */
	/* set by BURL_ACCESS only: */
	char reply_text[512];		/* a $N reply of the table's own */
	int disconnect;			/* $I */
	int tls;			/* -1 the default, 1 $T, 0 $X */
	int mailhost;			/* $M: server decided by the mailHost */
};

/* Decide for URL u, sent by `identity` ("" when not authenticated), at
 * time now. */
void burl_policy_check(const struct conf_burl *cb, const struct imapurl *u,
		       const char *identity, time_t now,
		       struct burl_verdict *v);

/* Can trusted server i resolve URL u (URLAUTH URLs need a "urlauth"
 * server, plain ones a "proxy-authorization" one; not expired)?  The part
 * of the rule that holds whatever decides who may send which URL (the
 * built-in rule or BURL_ACCESS). */
void burl_server_check(const struct conf_burl *cb, size_t i,
		       const struct imapurl *u, time_t now,
		       struct burl_verdict *v);

/* The trusted server the URL's authority names, or -1. */
int burl_find_server(const struct conf_burl *cb, const struct imapurl *u);
/* The trusted server for "host" or "host:port" (a mailHost), or -1. */
int burl_find_authority(const struct conf_burl *cb, const char *authority);

/* equal() above; *mapped set to 1 if a local domain was stripped. */
int burl_same_user(const char *local_domains, const char *a, const char *b,
		   int *mapped);

#endif
