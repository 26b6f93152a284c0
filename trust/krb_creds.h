/*
 * krb_creds.h - msaproxy's own Kerberos identity towards trusted IMAP
 * servers (RFC 4468's trusted third party), and the SASL GSSAPI client
 * mechanism (RFC 4752) that uses it.
 *
 * Credentials come from a client keytab (MIT krb5 gss_acquire_cred_from()
 * with "client_keytab", into a MEMORY ccache), never from a user's password.
 * Talking to the KDC blocks, so it never happens on the event loop: a
 * refresher thread per worker obtains the TGT and the service tickets for
 * every configured imap/<host> into a fresh MEMORY ccache, then publishes it;
 * it runs at start, and again when half the ticket lifetime has passed (or
 * after a failure, with backoff).  The event loop only reads published
 * credentials, so gss_init_sec_context() finds everything in memory.
 *
 * SECURITY: the keytab is read at start (before privileges are dropped, if
 * the deployment wants the worker unable to read it afterwards: see
 * docs/BURL.md).  No credential material is ever logged.
 */
#ifndef MSA_KRB_CREDS_H
#define MSA_KRB_CREDS_H

#include <stddef.h>

struct krb_creds;

/*
 * principal: "submit@LAB.TEST" (or "" = the keytab's first principal);
 * keytab: path of the client keytab; services: the GSSAPI service names to
 * pre-fetch tickets for ("imap@localhost" form), count of them.
 * Starts the refresher thread.  NULL on error (*error_r static text).
 */
struct krb_creds *krb_creds_new(const char *principal, const char *keytab,
				const char *const *services, size_t count,
				const char **error_r);
void krb_creds_free(struct krb_creds **cp);

/* 1 if usable credentials are published now (0: KDC down and none yet /
 * expired). */
int krb_creds_ready(struct krb_creds *c);

/* The SASL GSSAPI client exchange (RFC 4752) for one IMAP AUTHENTICATE. */
struct gssapi_client;

enum gssapi_step {
	GSSAPI_CONTINUE,	/* send *out (may be empty), wait for a challenge */
	GSSAPI_DONE,		/* send *out as the last response; then OK follows */
	GSSAPI_FAIL,		/* give up (*error_r for the log) */
};

/* service: "imap"; host: the server's host-based name ("localhost");
 * authzid: "" for none, or the user to act for (proxy authorization). */
struct gssapi_client *gssapi_client_new(struct krb_creds *c,
					const char *service, const char *host,
					const char *authzid, const char **error_r);
/* in/inlen: the server's decoded challenge (NULL/0 for the first step).
 * *out is malloc'd (caller frees), *outlen its length. */
enum gssapi_step gssapi_client_step(struct gssapi_client *g,
				    const unsigned char *in, size_t inlen,
				    unsigned char **out, size_t *outlen,
				    const char **error_r);
void gssapi_client_free(struct gssapi_client **gp);

#endif
