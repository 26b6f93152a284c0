/*
 * received.h - the Received: trace header the proxy prepends (RFC 5321 4.4),
 * with the "with" protocol types of RFC 3848 (ESMTPA, ESMTPS, ESMTPSA, LMTP,
 * LMTPA, LMTPS, LMTPSA) and RFC 6531 (UTF8SMTP...).  Pure: no I/O.
 */
#ifndef MSA_RECEIVED_H
#define MSA_RECEIVED_H

#include <stddef.h>
#include <time.h>
#include <event2/buffer.h>

struct received_info {
	const char *helo;	/* the client's EHLO/HELO/LHLO argument (validated) */
	const char *rdns;	/* PTR name; NULL = not looked up; "unknown" */
	const char *ip;		/* client address (the real one behind PROXY) */
	const char *by;		/* our server_name */
	const char *id;		/* transaction id */
	const char *rcpt;	/* the recipient if exactly one, else NULL */
	int lmtp;		/* LMTP listener */
	int esmtp;		/* EHLO (or LHLO) rather than HELO */
	int tls;		/* TLS on the client leg */
	int auth;		/* client authenticated */
	int utf8;		/* SMTPUTF8 transaction */
	const char *auth_comment; /* e.g. "authenticated as alice", or NULL */
	const char *tls_comment;  /* e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384", or NULL */
	time_t when;
};

/*
 * The RFC 3848 / RFC 6531 "with" keyword:
 *   HELO            -> SMTP (UTF8SMTP is not defined for HELO)
 *   EHLO            -> ESMTP, ESMTPS (TLS), ESMTPA (AUTH), ESMTPSA (both)
 *   EHLO + SMTPUTF8 -> UTF8SMTP, UTF8SMTPS, UTF8SMTPA, UTF8SMTPSA
 *   LHLO            -> LMTP, LMTPS, LMTPA, LMTPSA (UTF8LMTP... with SMTPUTF8)
 */
const char *received_with_type(int lmtp, int esmtp, int tls, int auth,
			       int utf8);

/* Append the complete header, folded with CRLF TAB, ending in CRLF.
 * Returns the number of bytes appended. */
size_t received_format(const struct received_info *ri, struct evbuffer *out);

#endif
