/*
 * sasl.h - SMTP AUTH (RFC 4954) through Cyrus SASL, behind a small interface
 * (after Postfix's xsasl.h): the session never sees a sasl_conn_t.
 *
 * SECURITY: everything a client sends here is hostile; Cyrus SASL and its
 * plugins (GSSAPI via MIT krb5, SCRAM, PLAIN, LOGIN, EXTERNAL) parse it.
 * No SASL security layer is ever negotiated (max_ssf = 0): TLS protects the
 * session.  Passwords and tokens are never logged; buffers that held them
 * are wiped.  msaproxy owns its Cyrus SASL configuration (app name, plugin
 * path, sasldb path, keytab) through callbacks: no file under /etc needs
 * editing.
 *
 * Ownership: sasl_session_new() returns an object owned by the session,
 * freed with sasl_session_free().  A failed exchange leaves it unusable
 * (further calls return an error): the session makes a new one for the
 * next AUTH (a fresh Cyrus context after every failure).
 *
 * Identity shapes (Cyrus 2.1.28, no user realm passed to Cyrus):
 *   - sasldb: a bare name is looked up in the realm sasl.hostname (Cyrus'
 *     serverFQDN), so users are created with
 *     `saslpasswd2 -f <sasldb_path> -u <sasl.hostname> alice` and come out
 *     as "alice"; "carol@other.test" is looked up in realm other.test and
 *     comes out as typed.
 *   - GSSAPI: the plugin strips the realm of a principal in krb5.conf's
 *     default_realm ("alice@LAB.TEST" -> "alice"); other realms are kept
 *     ("carol@OTHER.TEST").  The acceptor principal is
 *     <sasl.service>/<sasl.hostname> from sasl.keytab.
 *   - Empty or blank names, names longer than 255 bytes and names with
 *     control characters are refused as malformed (SASL_RES_BADPROT) before
 *     any lookup, authzids included.
 */
#ifndef MSA_SASL_H
#define MSA_SASL_H

#include <stddef.h>

struct conf;
struct sasl_session;

/* Once per process (master before fork): sasl_server_init with our
 * callbacks.  -1 with *error_r set on failure. */
int sasl_global_init(const struct conf *conf, const char **error_r);
void sasl_global_done(void);

/* The mechanisms Cyrus can actually offer from `wanted` (space-separated,
 * order kept, duplicates dropped, Cyrus' upper-case spelling), written to
 * out; names that do not fit are left out, "" when nothing is available.
 * PLAIN and LOGIN are left out when !tls (RFC 4954 4: never offered without
 * TLS).  GSSAPI is listed when its plugin loaded (sasl.keytab readable at
 * sasl_global_init); EXTERNAL is never listed (no peer here).  Only valid
 * after sasl_global_init(). */
void sasl_available_mechanisms(const char *wanted, int tls, char *out,
			       size_t outsize);

struct sasl_peer {
	const char *local_ip;	/* "127.0.0.1" */
	int local_port;
	const char *remote_ip;
	int remote_port;
	int tls;		/* the session is under TLS */
	unsigned tls_ssf;	/* cipher strength, passed as external SSF */
	const char *external_id;/* verified client certificate subject, or NULL */
};

struct sasl_session *sasl_session_new(const struct conf *conf,
				      const struct sasl_peer *peer,
				      const char **error_r);
void sasl_session_free(struct sasl_session **sp);

enum sasl_result {
	SASL_RES_OK,		/* authenticated: identities are available */
	SASL_RES_CONTINUE,	/* send a 334 with *out_r (base64 by the caller) */
	SASL_RES_FAIL,		/* bad credentials: 535 5.7.8 */
	SASL_RES_TEMP,		/* temporary (KDC unreachable ...): 454 4.7.0 */
	SASL_RES_WEAK,		/* mechanism too weak for the policy: 534 5.7.9 */
	SASL_RES_NOMECH,	/* unknown or not allowed mechanism: 504 5.5.4 */
	SASL_RES_AUTHZ,		/* authzid not allowed for authcid: 535 5.7.8 */
	SASL_RES_BADPROT,	/* malformed client data: 501 5.5.2 */
};

/*
 * Start (mech + optional initial response, already base64-decoded; has_ir
 * distinguishes "no initial response" from an empty one, RFC 4954 4's "=")
 * or continue an exchange (the decoded client response).  *out_r and
 * *outlen_r are the server challenge (owned by the sasl_session, valid
 * until the next call; "" and 0 unless SASL_RES_CONTINUE).  *reason_r is
 * always set to a static string for the log; it never holds client data.
 *
 * Cyrus only knows the mechanisms of conf->sasl.mechanisms; the caller
 * refuses any it did not advertise on this listener (auth_mechanisms)
 * before calling.  PLAIN and LOGIN without TLS give SASL_RES_WEAK (Cyrus:
 * SASL_ENCRYPT); the caller answers 538 5.7.11 before calling anyway.
 * A mechanism whose server-final data RFC 4954 cannot carry on 235 (SCRAM's
 * "v=") ends with SASL_RES_CONTINUE, then SASL_RES_OK on the client's
 * empty response.  Client data longer than 256 KiB is SASL_RES_BADPROT.
 * SASL_RES_TEMP covers every server-side problem (keytab without the
 * acceptor principal, unreadable sasldb, no sasldb_path with a password
 * mechanism, out of memory): the caller should still count it towards
 * max_failures, since some Cyrus paths may be client-triggerable.
 */
enum sasl_result sasl_session_start(struct sasl_session *ss, const char *mech,
				    const char *ir, size_t irlen, int has_ir,
				    const char **out_r, size_t *outlen_r,
				    const char **reason_r);
enum sasl_result sasl_session_step(struct sasl_session *ss, const char *in,
				   size_t inlen, const char **out_r,
				   size_t *outlen_r, const char **reason_r);

/* After SASL_RES_OK (NULL otherwise): the authentication identity as Cyrus
 * gave it (see "Identity shapes" above), the authorization identity
 * (== authcid unless the client asked otherwise and sasl.allow_authzid
 * allowed it; compared exactly, so "ALICE" for "alice" is refused), and
 * the mechanism (upper case). */
const char *sasl_session_authcid(const struct sasl_session *ss);
const char *sasl_session_authzid(const struct sasl_session *ss);
const char *sasl_session_mech(const struct sasl_session *ss);
/* The authentication identity the client claimed (as canonicalized),
 * whether or not the exchange succeeded; NULL if the mechanism never got
 * that far.  For the audit trail of failed attempts: not proof of
 * anything. */
const char *sasl_session_tried_authcid(const struct sasl_session *ss);

/* The authentication identity the client tried, as its mechanism handed
 * it to Cyrus before any password check -- also after a failure, which
 * rate_limits.auth_failures_per_identity counts against it (rate_limits.h).
 * NULL when the mechanism named none (e.g. GSSAPI failing early). */
const char *sasl_session_attempted(const struct sasl_session *ss);

/*
 * The canonical identity: what the audit trail, BURL access and ETRN policy
 * key on.  Rule (docs/AUTH.md): the authorization identity, with
 * "@<conf->sasl.realm>" (compared case-blind) stripped; any other realm is
 * kept ("alice@LAB.TEST" -> "alice" when realm = "LAB.TEST";
 * "carol@OTHER.TEST" stays).  Only the part after the last '@' is a realm
 * ("a@b@LAB.TEST" -> "a@b"); an empty local part is kept ("@LAB.TEST"
 * stays); realm NULL or "" strips nothing.  Never truncated: if the result
 * does not fit, out is "" (so is it for authzid NULL).  A pure function.
 */
void sasl_canonical_identity(const char *authzid, const char *default_realm,
			     char *out, size_t outsize);

#endif
