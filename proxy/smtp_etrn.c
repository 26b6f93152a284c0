/*
 * smtp_etrn.c - ETRN (RFC 1985): remote message queue starting, under an
 * identity policy, relayed to the backend MTA.
 *
 * SECURITY: the argument comes from the client and is parsed strictly
 * (smtp_parse_etrn) before anything else looks at it; only a request that
 * the policy (etrn_policy.c) allows for the client's authenticated identity
 * or address reaches the backend, rebuilt from the parsed argument.  The
 * backend's answer is mapped (backend_reply.c, BE_EXPECT_ETRN): only RFC
 * 1985's own replies are relayed, sanitized.
 *
 * The request travels on the session's own backend connection (opened if
 * the session has none), after XCLIENT when the backend offers it, so the
 * backend's own ETRN restrictions and logs see the real client and its
 * login, as for mail.  ETRN is refused inside a transaction (RFC 1985 5),
 * so it never interleaves with one on that connection, and it is never
 * pipelined: the next command waits for its reply.
 */
#include <stdio.h>
#include <string.h>

#include "conf.h"
#include "etrn_policy.h"
#include "log.h"
#include "session.h"
#include "smtp_etrn.h"

int
smtp_etrn_offered(const struct session *s)
{
	const struct backend_caps *bc;

	if (!s->lc->etrn || s->lmtp)
		return 0;
	bc = session_caps(s);
	return bc == NULL || (bc->flags & CAP_ETRN) != 0;
}

/*
 * The one exit of every ETRN command, whatever its outcome: one log line
 * (identity, client, node, result) and the audit record.
 */
static void
etrn_done(struct session *s, const char *node, int code, const char *what)
{
	char clean[(SMTP_ETRN_ARG_MAX + 8) * 4 + 1];	/* \xNN per octet at worst */
	size_t len = strlen(node);

	if (len > SMTP_ETRN_ARG_MAX + 8)
		len = SMTP_ETRN_ARG_MAX + 8;
	log_info("%s: etrn node=%s client=%s identity=%s listener=%s "
	    "result=%d %s", s->id, log_sanitize(clean, sizeof(clean), node, len),
	    s->peer_ip, s->auth ? s->identity : "-", s->lc->name, code, what);
	/*
	 * AUDIT (issue 6): the ETRN audit record is written here, and only
	 * here: audit_etrn(s, node, code, what).  Every ETRN command passes
	 * this point exactly once (for a relayed request, when the backend's
	 * answer or failure arrives).
	 */
}

/* A refusal of ours: the reply, counted as a client error when it is one,
 * and the log line.  The log line comes first: a 421 for too many errors
 * may follow the reply. */
static void
etrn_refuse(struct session *s, const char *node, enum smtp_reply_id id,
	    int bad, const char *what)
{
	etrn_done(s, node, smtp_reply_code(id), what);
	if (bad)
		session_bad_command(s, id);
	else
		session_reply(s, id, node);
}

static enum smtp_reply_id
verdict_reply(enum etrn_verdict v)
{
	switch (v) {
	case ETRN_DENIED_TLD:
		return R_ETRN_TLD;
	case ETRN_DENIED_NOT_LISTED:
		return R_ETRN_NOT_LISTED;
	default:
		return R_ETRN_DENIED;
	}
}

void
cmd_etrn(struct session *s, char *args)
{
	struct smtp_etrn req;
	struct etrn_client who;
	enum etrn_verdict v;
	char what[128];
	int rule;

	if (!smtp_etrn_offered(s)) {
		etrn_refuse(s, args, R_NOT_IMPL, 1, "not offered here");
		return;
	}
	if (s->helo_kind == HELO_NONE) {
		etrn_refuse(s, args, R_SEQ_HELO, 1, "before EHLO");
		return;
	}
	/* RFC 1985 5: "illegal between a MAIL FROM: command and the end of
	 * the DATA commands and responses" */
	if (s->tx.state != TX_NONE) {
		etrn_refuse(s, args, R_ETRN_IN_TX, 1, "in a transaction");
		return;
	}
	switch (smtp_parse_etrn(args, &req)) {
	case SMTP_ETRN_EMPTY:
		/* RFC 1985 5.1 and its example: "500 Syntax Error" */
		etrn_refuse(s, args, R_ETRN_NO_NODE, 1, "no argument");
		return;
	case SMTP_ETRN_BAD:
		etrn_refuse(s, args, R_ETRN_SYNTAX, 1, "bad syntax");
		return;
	case SMTP_ETRN_OK:
		break;
	}
	/* A listener that wants AUTH before mail wants it before ETRN. */
	if (s->lc->require_auth && !s->auth) {
		etrn_refuse(s, args, R_AUTH_REQUIRED, 0, "authentication required");
		return;
	}
	who.identity = s->auth ? s->identity : NULL;
	who.addr = (const struct sockaddr *)&s->peer;
	v = etrn_policy_check(&s->conf->etrn, &who, &req, &rule);
	if (v != ETRN_ALLOWED) {
		etrn_refuse(s, args, verdict_reply(v), 0, etrn_verdict_name(v));
		return;
	}
	/* The argument was checked: it is at most SMTP_ETRN_ARG_MAX octets
	 * of a fixed alphabet, safe in replies, logs and on the wire. */
	snprintf(s->etrn_node, sizeof(s->etrn_node), "%s", args);
	s->etrn_rule = rule;
	if (session_backend(s) < 0) {
		snprintf(what, sizeof(what), "allowed by etrn.rules[%d] (line %d); "
		    "no backend connection", rule,
		    s->conf->etrn.rules[rule].line);
		etrn_refuse(s, args, R_ETRN_UNAVAIL, 0, what);
		return;
	}
	s->outstanding++;
	backend_send(s->be, TAG(TAG_ETRN, 0, 0), "ETRN %s", s->etrn_node);
}

void
smtp_etrn_backend_reply(struct session *s, const struct backend_reply *r)
{
	enum smtp_reply_id id = backend_reply_map(r, BE_EXPECT_ETRN);
	char text[200], what[320];
	int line = s->conf->etrn.rules[s->etrn_rule].line;

	log_sanitize(text, sizeof(text), r->text, r->text_len);
	if (id == R_REPLY_COUNT) {
		backend_reply_relay(r, BE_EXPECT_ETRN, session_output(s));
		snprintf(what, sizeof(what), "allowed by etrn.rules[%d] (line %d); "
		    "backend: %d %s", s->etrn_rule, line, r->code, text);
		etrn_done(s, s->etrn_node, r->code, what);
		return;
	}
	log_warn("%s: backend reply to ETRN %d %s replaced by %d", s->id,
	    r->code, text, smtp_reply_code(id));
	session_reply(s, id, s->etrn_node);
	snprintf(what, sizeof(what), "allowed by etrn.rules[%d] (line %d); backend "
	    "refused: %d %s", s->etrn_rule, line, r->code, text);
	etrn_done(s, s->etrn_node, smtp_reply_code(id), what);
	if (r->code == 421)
		backend_free(&s->be);
}

void
smtp_etrn_backend_error(struct session *s, enum smtp_reply_id why)
{
	enum smtp_reply_id id;
	char what[200];

	/* could not connect: 4.4.1; the backend refused us (EHLO, our AUTH):
	 * 4.3.5, as for mail; lost, timed out, talking nonsense: 4.4.2 */
	if (why == R_BACKEND_UNAVAIL)
		id = R_ETRN_UNAVAIL;
	else if (why == R_BACKEND_CONFIG)
		id = R_ETRN_BACKEND_REFUSED;
	else
		id = R_ETRN_LOST;
	session_reply(s, id, s->etrn_node);
	snprintf(what, sizeof(what), "allowed by etrn.rules[%d] (line %d); backend "
	    "failed: %s", s->etrn_rule, s->conf->etrn.rules[s->etrn_rule].line,
	    smtp_reply_text(why) + 4);
	etrn_done(s, s->etrn_node, smtp_reply_code(id), what);
}
