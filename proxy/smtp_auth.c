/*
 * smtp_auth.c - SMTP AUTH (RFC 4954) in the session, and sender
 * authorization.
 *
 * SECURITY: AUTH exchanges carry passwords and Kerberos tokens: they are
 * never logged, and the buffers that held them are wiped.  Mechanisms that
 * send the password in the clear (PLAIN, LOGIN) are neither offered nor
 * accepted without TLS (538 5.7.11).  Failures cost the client a delay that
 * doubles each time, and the session ends after sasl.max_failures of them.
 *
 * What EHLO advertises and what AUTH accepts come from one function,
 * auth_mechanisms(), so the two cannot disagree.
 */
#include <ctype.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "audit.h"
#include "conf.h"
#include "rate_limits.h"
#include "log.h"
#include "sasl.h"
#include "session.h"
#include "smtp_auth.h"
#include "util.h"
#include "worker.h"

/* Mechanisms Cyrus knows that policy leaves out for their weakness
 * (password equivalents on the server, broken hashes, no authentication):
 * asked for without being offered, they get 534 5.7.9, not 504. */
#define WEAK_MECHANISMS "ANONYMOUS CRAM-MD5 DIGEST-MD5 NTLM OTP SCRAM-SHA-1 SRP"

/* RFC 4954 4: a server must accept AUTH lines of at least 12288 octets. */
#define AUTH_DECODED_MAX 12288

static int mech_in_list(const char *list, const char *mech);

/* The mechanism lists, per listener and TLS state: asking Cyrus on every
 * EHLO would cost more than the rest of the EHLO. */
static char (*mech_cache)[2][256];
static int *mech_cached;
static int sasl_ready;

/* sender_map: "identity  pattern[, pattern...]" lines (see msaproxy.conf(5)) */
struct sender_rule {
	char *identity;
	char *pattern;
};
static struct sender_rule *sender_rules;
static size_t sender_rule_count;

static int
load_sender_map(const char *path, const char **error_r)
{
	static char err[600];
	FILE *f = fopen(path, "r");
	char line[2048];
	int lineno = 0;

	if (f == NULL) {
		snprintf(err, sizeof(err), "sender_map %.500s: cannot open", path);
		*error_r = err;
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char *p = line, *id, *rest, *tok, *save = NULL;

		lineno++;
		p[strcspn(p, "\r\n")] = '\0';
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '\0' || *p == '#')
			continue;
		id = p;
		while (*p && !isspace((unsigned char)*p))
			p++;
		if (*p == '\0') {
			snprintf(err, sizeof(err), "%.500s:%d: identity without "
			    "addresses", path, lineno);
			*error_r = err;
			fclose(f);
			return -1;
		}
		*p++ = '\0';
		rest = p;
		for (tok = strtok_r(rest, ", \t", &save); tok != NULL;
		    tok = strtok_r(NULL, ", \t", &save)) {
			struct sender_rule *n = realloc(sender_rules,
			    (sender_rule_count + 1) * sizeof(*n));

			if (n == NULL) {
				fclose(f);
				*error_r = "out of memory";
				return -1;
			}
			sender_rules = n;
			n[sender_rule_count].identity = strdup(id);
			n[sender_rule_count].pattern = strdup(tok);
			sender_rule_count++;
		}
	}
	fclose(f);
	return 0;
}

int
smtp_auth_init(const struct conf *conf, const char **error_r)
{
	size_t n = conf->listener_count;

	mech_cache = calloc(n ? n : 1, sizeof(*mech_cache));
	mech_cached = calloc(n ? n : 1, sizeof(*mech_cached));
	if (mech_cache == NULL || mech_cached == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	if (!conf->sasl.enabled)
		return 0;		/* no sasl section: no AUTH */
	if (conf->sasl.sender_map[0] != '\0' &&
	    load_sender_map(conf->sasl.sender_map, error_r) < 0)
		return -1;
	if (sasl_global_init(conf, error_r) < 0)
		return -1;
	sasl_ready = 1;
	return 0;
}

/* The mechanisms this session may use now, space-separated ("" = none). */
const char *
auth_mechanisms(const struct session *s)
{
	size_t li = (size_t)(s->lc - s->conf->listeners);
	int tls = s->tls ? 1 : 0;
	const char *wanted;

	if (!sasl_ready || li >= s->conf->listener_count)
		return "";
	if (s->lc->require_tls_for_auth && !s->tls)
		return "";
	wanted = s->lc->auth_mechanisms[0] ? s->lc->auth_mechanisms :
	    s->conf->sasl.mechanisms;
	if (!(mech_cached[li] & (1 << tls))) {
		sasl_available_mechanisms(wanted, tls, mech_cache[li][tls],
		    sizeof(mech_cache[li][tls]));
		mech_cached[li] |= 1 << tls;
	}
	/* EXTERNAL exists only for a session with a verified client
	 * certificate: it cannot come from the per-listener cache. */
	if (s->tls_cn[0] != '\0' && mech_in_list(wanted, "EXTERNAL") &&
	    !mech_in_list(mech_cache[li][tls], "EXTERNAL")) {
		static char with_external[300];

		snprintf(with_external, sizeof(with_external), "EXTERNAL%s%s",
		    mech_cache[li][tls][0] ? " " : "", mech_cache[li][tls]);
		return with_external;
	}
	return mech_cache[li][tls];
}

static int
mech_in_list(const char *list, const char *mech)
{
	size_t n = strlen(mech);
	const char *p = list;

	while (*p) {
		size_t len = strcspn(p, " ");

		if (len == n && strncasecmp(p, mech, n) == 0)
			return 1;
		p += len;
		while (*p == ' ')
			p++;
	}
	return 0;
}

/* Would this mechanism be offered if the session had TLS? */
static int
needs_tls(const struct session *s, const char *mech)
{
	const char *wanted = s->lc->auth_mechanisms[0] ?
	    s->lc->auth_mechanisms : s->conf->sasl.mechanisms;

	if (s->tls)
		return 0;
	if (s->lc->require_tls_for_auth)
		return 1;
	return (strcasecmp(mech, "PLAIN") == 0 || strcasecmp(mech, "LOGIN") == 0) &&
	    mech_in_list(wanted, mech);
}

static void
auth_end(struct session *s)
{
	sasl_session_free(&s->sasl);
	if (s->state == S_AUTH)
		session_enter_state(s, S_COMMAND);
}

static void
auth_delay_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)what;
	s->auth_waiting = 0;
	if (s->auth_failures >= s->conf->sasl.max_failures) {
		log_info("%s: %u failed AUTH attempts from %s: disconnecting",
		    s->id, s->auth_failures, s->peer_ip);
		session_reply(s, R_AUTH_TOO_MANY);
	} else {
		session_reply(s, s->auth_fail_reply);
	}
	auth_end(s);
	session_resume(s);
}

/* A failed attempt: the reply comes after a delay that doubles with each
 * failure (tarpit), with up to a quarter of random jitter. */
static void
auth_failed(struct session *s, enum smtp_reply_id reply, const char *reason)
{
	unsigned base = s->conf->sasl.failure_delay_ms, ms;
	struct timeval tv;

	s->auth_failures++;
	limits_auth_failed(s, sasl_session_attempted(s->sasl));
	log_info("%s: AUTH %s failed for %s: %s (failure %u of %u)", s->id,
	    s->auth_mech[0] ? s->auth_mech : "?", s->peer_ip,
	    reason ? reason : "-", s->auth_failures, s->conf->sasl.max_failures);
	audit_auth(s, "failure", s->auth_mech,
	    sasl_session_tried_authcid(s->sasl), NULL, reason);
	ms = base << (s->auth_failures - 1 < 5 ? s->auth_failures - 1 : 5);
	if (ms > 0)
		ms += (unsigned)(random() % (ms / 4 + 1));
	s->auth_fail_reply = reply;
	if (ms == 0 || s->auth_timer == NULL) {
		auth_delay_cb(-1, 0, s);
		return;
	}
	s->auth_waiting = 1;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(s->auth_timer, &tv);
}

/* The identity is admitted (rate_limits): the session is authenticated. */
static void
auth_accept(struct session *s)
{
	char clean[300];

	s->auth = 1;
	log_info("%s: AUTH %s as %s (identity %s) from %s", s->id, s->auth_mech,
	    log_sanitize(clean, sizeof(clean), s->authcid, strlen(s->authcid)),
	    s->identity, s->peer_ip);
	audit_auth(s, "success", s->auth_mech, s->authcid,
	    s->sasl != NULL ? sasl_session_authzid(s->sasl) : s->identity, NULL);
	session_reply(s, R_AUTH_OK);
	auth_end(s);
}

/* ... or it is refused: the reply is given (rate_limits.h). */
static void
auth_admitted(struct session *s, int refused)
{
	if (!refused) {
		auth_accept(s);
		return;
	}
	s->identity[0] = '\0';
	s->authcid[0] = '\0';
	auth_end(s);
}

/* The answer of an asynchronous check (Redis). */
static void
auth_admitted_later(struct session *s, int refused)
{
	s->auth_waiting = 0;
	auth_admitted(s, refused);
	session_resume(s);
}

static void
auth_succeeded(struct session *s)
{
	const char *authcid = sasl_session_authcid(s->sasl);
	const char *authzid = sasl_session_authzid(s->sasl);

	sasl_canonical_identity(authzid, s->conf->sasl.realm, s->identity,
	    sizeof(s->identity));
	/* The identity goes into headers, logs and policy lookups: nothing
	 * but printable characters (UTF-8 allowed), no spaces. */
	for (const unsigned char *p = (const unsigned char *)s->identity; ; p++) {
		if (*p == '\0' && p != (const unsigned char *)s->identity)
			break;
		if (*p <= 32 || *p == 127) {
			s->identity[0] = '\0';
			auth_failed(s, R_AUTH_FAILED, "unusable identity");
			sasl_session_free(&s->sasl);
			return;
		}
	}
	snprintf(s->authcid, sizeof(s->authcid), "%s", authcid ? authcid : "");
	/* a locked identity, too many sessions (rate_limits) */
	switch (limits_auth_admit(s, auth_admitted_later)) {
	case LIMITS_WAIT:
		s->auth_waiting = 1;	/* nothing is read meanwhile */
		return;
	case LIMITS_REFUSED:
		auth_admitted(s, 1);
		return;
	case LIMITS_GO:
		auth_admitted(s, 0);
		return;
	}
}

/* Act on what Cyrus said; out is the next challenge for CONTINUE. */
static void
auth_result(struct session *s, enum sasl_result res, const char *out,
	    size_t outlen, const char *reason)
{
	switch (res) {
	case SASL_RES_OK:
		auth_succeeded(s);
		return;
	case SASL_RES_CONTINUE: {
		size_t need = (outlen + 2) / 3 * 4 + 1;
		char *b64 = malloc(need);

		if (b64 == NULL || util_b64_encode((const unsigned char *)out,
		    outlen, b64, need) < 0) {
			free(b64);
			session_reply(s, R_LOCAL_ERROR);
			auth_end(s);
			return;
		}
		evbuffer_add_printf(session_output(s), "334 %s\r\n", b64);
		free(b64);
		session_enter_state(s, S_AUTH);
		return;
	}
	case SASL_RES_FAIL:
	case SASL_RES_AUTHZ:
		auth_failed(s, R_AUTH_FAILED, reason);
		return;
	case SASL_RES_TEMP:
		/* Counted too (some Cyrus SASL_FAIL paths are the client's
		 * doing), but not delayed: the fault may well be ours. */
		s->auth_failures++;
		log_warn("%s: AUTH %s temporary failure: %s", s->id, s->auth_mech,
		    reason ? reason : "-");
		audit_auth(s, "temporary", s->auth_mech,
		    sasl_session_tried_authcid(s->sasl), NULL, reason);
		session_reply(s, s->auth_failures >= s->conf->sasl.max_failures ?
		    R_AUTH_TOO_MANY : R_AUTH_TEMP);
		break;
	case SASL_RES_WEAK:
		session_reply(s, R_AUTH_WEAK);
		break;
	case SASL_RES_NOMECH:
		session_reply(s, R_AUTH_NO_MECH);
		break;
	case SASL_RES_BADPROT:
		auth_failed(s, R_AUTH_BAD_BASE64, reason);
		return;
	}
	auth_end(s);
}

/* Decode a client response; "=" is the empty response (RFC 4954 4). */
static long
decode_response(const char *b64, unsigned char *out, size_t outsize)
{
	if (strcmp(b64, "=") == 0)
		return 0;
	return util_b64_decode(b64, strlen(b64), out, outsize);
}

void
cmd_auth(struct session *s, char *args)
{
	char *mech = args, *ir;
	const char *mechs = auth_mechanisms(s), *out = NULL, *reason = NULL;
	unsigned char *buf = NULL;
	long irlen = 0;
	size_t outlen = 0;
	struct sasl_peer peer;
	enum sasl_result res;
	const char *error = NULL;

	if (s->auth) {
		session_bad_command(s, R_AUTH_TWICE);
		return;
	}
	if (s->tx.state != TX_NONE) {
		session_bad_command(s, R_AUTH_IN_TX);
		return;
	}
	if (s->helo_kind != HELO_EHLO && s->helo_kind != HELO_LHLO) {
		session_bad_command(s, s->lmtp ? R_SEQ_LHLO : R_SEQ_HELO);
		return;
	}
	ir = strchr(args, ' ');
	if (ir != NULL)
		*ir++ = '\0';
	if (*mech == '\0' || (ir != NULL && *ir == '\0')) {
		session_bad_command(s, R_SYNTAX);
		return;
	}
	snprintf(s->auth_mech, sizeof(s->auth_mech), "%.30s", mech);
	for (char *p = s->auth_mech; *p; p++)
		*p = (char)toupper((unsigned char)*p);
	if (!mech_in_list(mechs, s->auth_mech)) {
		if (!sasl_ready)
			session_bad_command(s, R_AUTH_NOT_AVAIL);
		else if (needs_tls(s, s->auth_mech))
			session_reply(s, R_AUTH_TLS_REQUIRED);
		else if (mech_in_list(WEAK_MECHANISMS, s->auth_mech))
			/* RFC 4954 6: known, but weaker than policy permits */
			session_reply(s, R_AUTH_WEAK);
		else
			session_bad_command(s, R_AUTH_NO_MECH);
		return;
	}
	if (limits_auth_refused(s))	/* auth_failures_per_address */
		return;
	if (ir != NULL) {
		buf = malloc(AUTH_DECODED_MAX);
		if (buf == NULL) {
			session_reply(s, R_LOCAL_ERROR);
			return;
		}
		irlen = decode_response(ir, buf, AUTH_DECODED_MAX);
		explicit_bzero(ir, strlen(ir));
		if (irlen < 0) {
			free(buf);
			session_bad_command(s, R_AUTH_BAD_BASE64);
			return;
		}
	}
	memset(&peer, 0, sizeof(peer));
	peer.local_ip = s->local_ip;
	peer.local_port = s->local_port;
	peer.remote_ip = s->peer_ip;
	peer.remote_port = s->peer_port;
	peer.tls = s->tls;
	peer.tls_ssf = s->tls ? 256 : 0;
	peer.external_id = s->tls_cn[0] ? s->tls_cn : NULL;
	/* a fresh Cyrus context for every attempt */
	sasl_session_free(&s->sasl);
	s->sasl = sasl_session_new(s->conf, &peer, &error);
	if (s->sasl == NULL) {
		log_warn("%s: SASL: %s", s->id, error ? error : "cannot start");
		if (buf != NULL) {
			explicit_bzero(buf, AUTH_DECODED_MAX);
			free(buf);
		}
		session_reply(s, R_AUTH_TEMP);
		return;
	}
	res = sasl_session_start(s->sasl, s->auth_mech, (const char *)buf,
	    (size_t)irlen, ir != NULL, &out, &outlen, &reason);
	if (buf != NULL) {
		explicit_bzero(buf, AUTH_DECODED_MAX);
		free(buf);
	}
	auth_result(s, res, out, outlen, reason);
}

void
smtp_auth_response(struct session *s, char *line)
{
	unsigned char *buf;
	long len;
	const char *out = NULL, *reason = NULL;
	size_t outlen = 0;
	enum sasl_result res;

	if (strcmp(line, "*") == 0) {
		/* RFC 4954 4: the client cancels */
		session_reply(s, R_AUTH_CANCELLED);
		auth_end(s);
		return;
	}
	buf = malloc(AUTH_DECODED_MAX);
	if (buf == NULL) {
		session_reply(s, R_LOCAL_ERROR);
		auth_end(s);
		return;
	}
	len = decode_response(line, buf, AUTH_DECODED_MAX);
	explicit_bzero(line, strlen(line));
	if (len < 0) {
		free(buf);
		session_reply(s, R_AUTH_BAD_BASE64);
		auth_end(s);
		return;
	}
	res = sasl_session_step(s->sasl, (const char *)buf, (size_t)len, &out,
	    &outlen, &reason);
	explicit_bzero(buf, AUTH_DECODED_MAX);
	free(buf);
	auth_result(s, res, out, outlen, reason);
}

void
smtp_auth_session_free(struct session *s)
{
	sasl_session_free(&s->sasl);
	if (s->auth_timer != NULL) {
		event_free(s->auth_timer);
		s->auth_timer = NULL;
	}
}

void
smtp_auth_session_init(struct session *s)
{
	s->auth_timer = evtimer_new(s->worker->base, auth_delay_cb, s);
}

static int
match_pattern(const char *pattern, const char *identity, const char *addr)
{
	char expanded[512];

	/* "%u" stands for the identity: "%u@example.com" */
	if (strstr(pattern, "%u") != NULL) {
		const char *p = strstr(pattern, "%u");

		snprintf(expanded, sizeof(expanded), "%.*s%s%s",
		    (int)(p - pattern), pattern, identity, p + 2);
		pattern = expanded;
	}
	if (pattern[0] == '@') {
		const char *at = strrchr(addr, '@');
		return at != NULL && strcasecmp(at, pattern) == 0;
	}
	return fnmatch(pattern, addr, FNM_CASEFOLD) == 0;
}

int
smtp_sender_allowed(const struct session *s, const char *addr)
{
	const char *id = s->identity;
	const char *domains = s->conf->sasl.sender_domains;
	size_t i;

	if (sender_rule_count == 0 && domains[0] == '\0')
		return 1;		/* no sender policy configured */
	if (addr[0] == '\0')
		return 1;		/* the null sender: bounces, DSNs */
	/* the identity itself, when it is an address (foreign realm) */
	if (strchr(id, '@') != NULL && strcasecmp(id, addr) == 0)
		return 1;
	/* default rule: identity@each sender domain */
	while (*domains) {
		size_t len = strcspn(domains, " ");
		size_t idlen = strlen(id);

		if (strlen(addr) == idlen + 1 + len &&
		    strncasecmp(addr, id, idlen) == 0 && addr[idlen] == '@' &&
		    strncasecmp(addr + idlen + 1, domains, len) == 0)
			return 1;
		domains += len;
		while (*domains == ' ')
			domains++;
	}
	for (i = 0; i < sender_rule_count; i++)
		if (strcasecmp(sender_rules[i].identity, id) == 0 &&
		    match_pattern(sender_rules[i].pattern, id, addr))
			return 1;
	return 0;
}
