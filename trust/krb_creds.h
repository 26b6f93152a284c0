/*
 * krb_creds.h - msaproxy's own Kerberos identity towards trusted IMAP
 * servers (RFC 4468's trusted third party), and the SASL GSSAPI client
 * mechanism (RFC 4752) that uses it.
 *
 * Credentials come from a client keytab (MIT krb5 gss_acquire_cred_from()
 * with "client_keytab", into a MEMORY ccache), never from a user's password.
 * Talking to the KDC blocks, so it never happens on the event loop: a
 * refresher thread per worker obtains the TGT and the service tickets for
 * every configured service into a fresh MEMORY ccache, then publishes it;
 * it runs at start, and again when half the lifetime of the shortest ticket
 * has passed (or after a failure, with backoff: 5 s doubling to 5 min).  The
 * event loop only reads published credentials, so gss_init_sec_context()
 * finds everything in memory.
 *
 * When the event loop may still block (documented, rare):
 *   - a service that was not pre-fetched (not in `services`, or its
 *     pre-fetch failed): gss_init_sec_context() asks the KDC synchronously
 *     for the ticket, on the calling thread.  Configure every trusted
 *     server's service name.
 *   - host name canonicalization (MIT's default dns_canonicalize_hostname
 *     = true, rdns = true: a forward and a reverse lookup): the refresher
 *     does it for every configured service and the exchange reuses that
 *     name, so only a service that is not configured is looked up on the
 *     calling thread (none at all with `dns_canonicalize_hostname = false`
 *     or `fallback`).  A changed DNS answer is seen at the next refresh.
 *   - every GSS call re-checks krb5.conf (a stat(), a parse if it changed)
 *     and the last release of an old credential empties its MEMORY ccache:
 *     local work, no network.
 *
 * Threads: krb_creds_new(), krb_creds_free(), krb_creds_ready() and the
 * gssapi_client_*() functions are for one thread (the worker's event loop);
 * the refresher is internal.  MIT krb5 rules that this relies on: a
 * krb5_context is never used by two threads at once (the refresher has its
 * own; GSS calls make their own internally); gss_cred_id_t handles carry
 * their own lock in MIT (the loop and the refresher never touch the same
 * handle anyway: a credential is immutable once published); MEMORY ccache
 * names are process-global (a locked table), so every refresh uses a new
 * unique name "MEMORY:msaproxy-krb-<pid>-<n>", and an old ccache is
 * destroyed only when its last user lets it go.  Threads do not survive
 * fork(): create the object in the process that uses it (the worker), never
 * in the master.  Nobody may setenv() while the refresher runs (MIT reads
 * KRB5_CONFIG and friends with getenv()).
 *
 * SECURITY: workers are forked after the master dropped privileges, so the
 * keytab must be readable by the unprivileged user (like sasl.keytab).
 * krb_creds_new() checks it (readable, has a key for the principal) and the
 * refresher re-reads it at every refresh, so a rotated keytab is picked up
 * without a restart.  No credential material (keys, tickets, tokens) is
 * ever logged: the log shows the principal, the expiry, the service names,
 * and GSS status texts.
 */
#ifndef MSA_KRB_CREDS_H
#define MSA_KRB_CREDS_H

#include <stddef.h>

struct krb_creds;

/*
 * principal: "submit@LAB.TEST" ("submit" gets krb5.conf's default realm;
 * "" = the keytab's first principal); keytab: path (or "FILE:path") of the
 * client keytab; services: the GSSAPI host-based service names to pre-fetch
 * tickets for ("imap@localhost" form; up to KRB_CREDS_MAX_SERVICES), count
 * of them (0 is allowed: TGT only).
 * Checks the keytab, then starts the refresher thread and returns at once
 * (nothing is ready yet: see krb_creds_ready()).  NULL on error (*error_r
 * static text: bad arguments, keytab unreadable or without a key for the
 * principal, no thread).
 */
#define KRB_CREDS_MAX_SERVICES	64
struct krb_creds *krb_creds_new(const char *principal, const char *keytab,
				const char *const *services, size_t count,
				const char **error_r);
/* Stops the refresher and drops the published credential.  Returns at once
 * unless the refresher is in the middle of a KDC exchange: then it waits
 * for that one to end (a refused connection fails at once; a KDC that does
 * not answer at all costs MIT's timeouts, about 15 s with one KDC).  gssapi_client
 * objects still alive keep theirs until they are freed.  *cp = NULL. */
void krb_creds_free(struct krb_creds **cp);

/* 1 if usable credentials are published now: acquired, and valid for at
 * least KRB_CREDS_MIN_VALID more seconds.  0: none yet (KDC down, bad
 * keytab) or the last ones expired while refreshing failed. */
#define KRB_CREDS_MIN_VALID	10
int krb_creds_ready(struct krb_creds *c);

/* The SASL GSSAPI client exchange (RFC 4752) for one IMAP AUTHENTICATE. */
struct gssapi_client;

enum gssapi_step {
	GSSAPI_CONTINUE,	/* send *out (may be empty), wait for a challenge */
	GSSAPI_DONE,		/* send *out as the last response; then OK follows */
	GSSAPI_FAIL,		/* give up (*error_r for the log) */
};

/* service: "imap"; host: the server's host-based name ("localhost");
 * authzid: "" for none, or the user to act for (proxy authorization; at
 * most 1024 bytes, no control characters).
 * NULL (*error_r static text) when krb_creds_ready() is 0 (so the exchange
 * never waits for the KDC because creds are missing) or on bad arguments.
 * The object holds a reference on the credential published at this moment:
 * a refresh in between does not disturb the exchange. */
struct gssapi_client *gssapi_client_new(struct krb_creds *c,
					const char *service, const char *host,
					const char *authzid, const char **error_r);
/* in/inlen: the server's decoded challenge (NULL/0 for the first step).
 * *out is malloc'd (caller frees; non-NULL even when *outlen is 0), *outlen
 * its length; both are set only for CONTINUE and DONE.
 * The steps: GSS context tokens (gss_init_sec_context, mutual
 * authentication, no delegation) until the context is complete and the
 * server proved its identity, then the server's 4-octet security-layer
 * offer, which must include "no security layer"; the answer chooses it with
 * max size 0 and carries the authzid (RFC 4752 3.1) -> DONE.  Any call after
 * DONE or FAIL fails.  *error_r on FAIL points to text inside g (the GSS
 * status texts), valid until the next call or gssapi_client_free(). */
enum gssapi_step gssapi_client_step(struct gssapi_client *g,
				    const unsigned char *in, size_t inlen,
				    unsigned char **out, size_t *outlen,
				    const char **error_r);
void gssapi_client_free(struct gssapi_client **gp);

#endif
