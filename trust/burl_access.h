/*
 * burl_access.h - the BURL_ACCESS mapping table (Messaging Server's
 * syntax, trust/mapping.h) applied to BURL: the EHLO probe (advertise?) and
 * the BURL command probe (accept? rewrite? where and how to fetch?).
 *
 *   EHLO:  TCP|server-addr|server-port|client-addr|client-port|channel|authid|
 *   BURL:  the same, then the client's URL
 *
 * channel is the listener's name; authid the authenticated identity, with
 * "@" burl.access_domain appended when it has no domain (Messaging Server
 * probes with uid@canonical-domain), "" before AUTH.  Input flags: A (SMTP
 * AUTH done), T (TLS), | (the URL held a '|'; with burl.access_paranoia
 * set, every '|' of the URL is replaced by that character in the probe).
 *
 * Pure functions: no I/O.  What the flags do (tests/unit/test_burl_access.c):
 *   $Y        EHLO: advertise, with the output as URL types ("imap" if
 *             empty).  BURL: accept.
 *   $N        refuse: the output as the whole reply if it is one
 *             ("5xx[ x.y.z] text"; an enhanced code is added if missing),
 *             else 533 5.7.1 Access denied to specified URL.
 *   $I        with $N: then disconnect ("BURL_ACCESS forced disconnect").
 *   $D        with $Y: the output replaces the client's URL.
 *   $M        with $Y: fetch from the user's mailHost (burl.mailhost) instead
 *             of the URL's host; the URL itself is sent unchanged.
 *   $T / $X   with $Y: TLS to the IMAP server required / not required
 *             (msaproxy never downgrades a server configured for TLS).
 * Neither $Y nor $N, or an evaluation error (a bound hit): refused with the
 * default reply (fail closed).  The trusted server set applies after all
 * of this: a rewritten URL or a mailHost outside it gets 554 5.7.14.
 */
#ifndef MSA_BURL_ACCESS_H
#define MSA_BURL_ACCESS_H

#include <stddef.h>

#include "imapurl.h"
#include "smtp_reply.h"

struct conf_burl;

struct burl_access_in {
	const char *server_addr;	/* NULL: the disconnected form */
	unsigned server_port;
	const char *client_addr;
	unsigned client_port;
	const char *channel;
	const char *identity;		/* "" before AUTH */
	int sasl, tls;
};

struct burl_access_verdict {
	int allowed;
	enum smtp_reply_id reply;	/* refused, when reply_text is "" */
	char reply_text[512];		/* refused: a whole reply line, no CRLF */
	int disconnect;			/* $I */
	int rewritten;			/* $D: url below replaces the client's */
	char url[IMAPURL_MAX_LEN + 1];
	int use_mailhost;		/* $M */
	int force_tls, no_tls;		/* $T, $X */
	char why[256];			/* for the log: entry, flags */
};

/* EHLO: 1 and the URL types in types if BURL is to be advertised. */
int burl_access_ehlo(const struct conf_burl *cb,
		     const struct burl_access_in *in, char *types,
		     size_t size);

/* The BURL command's probe for url (as the client sent it). */
void burl_access_check(const struct conf_burl *cb,
		       const struct burl_access_in *in, const char *url,
		       struct burl_access_verdict *v);

/* A $N text as a reply line: "5xx x.y.z text" (the enhanced code added
 * from the reply code's class if missing), or 0 if it is not a reply. */
int burl_access_reply_text(const char *text, char *out, size_t size);

#endif
