/*
 * imapurl.h - IMAP URLs (RFC 5092) with URLAUTH (RFC 4467), as BURL
 * (RFC 4468) receives them: one strict parser, pure and bounded.
 *
 *   imap://[enc-user[;AUTH=enc-auth-type]@]host[:port]/enc-mailbox
 *       [;UIDVALIDITY=nz-number]/;UID=nz-number[/;SECTION=enc-section]
 *       [/;PARTIAL=number[.nz-number]][;EXPIRE=date-time]
 *       ;URLAUTH=access:mech:urlauth
 *
 * SECURITY: the URL comes from the SMTP client.  Every component is
 * percent-decoded into a bounded field of struct imapurl; the URLAUTH token
 * is kept only so it can be sent to the trusted IMAP server and is never to
 * be logged: imapurl_redact() gives the form for logs.
 */
#ifndef MSA_IMAPURL_H
#define MSA_IMAPURL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define IMAPURL_MAX_LEN 2048		/* longer URLs are refused */

enum imapurl_access {
	IMAPURL_ACCESS_NONE = 0,	/* no ;URLAUTH= */
	IMAPURL_ACCESS_SUBMIT,		/* "submit+" userid */
	IMAPURL_ACCESS_USER,		/* "user+" userid */
	IMAPURL_ACCESS_AUTHUSER,	/* "authuser" */
	IMAPURL_ACCESS_ANONYMOUS,	/* "anonymous" */
};

struct imapurl {
	char user[256];			/* decoded; "" if absent */
	char auth_type[64];		/* ;AUTH=...; "*" for any; "" if absent */
	char host[256];			/* as written (reg-name, IPv4, [IPv6]) */
	uint16_t port;			/* 143 if absent */
	char mailbox[1024];		/* decoded (modified UTF-7 left as is) */
	uint32_t uidvalidity;		/* 0 if absent */
	uint32_t uid;			/* required, non-zero */
	char section[256];		/* decoded; "" if absent */
	int has_partial;
	uint32_t partial_offset, partial_length;	/* length 0: to the end */
	int has_expire;
	time_t expire;			/* UTC, from the RFC 3339 date-time */
	enum imapurl_access access;
	char access_user[256];		/* the userid of submit+ / user+ */
	char mech[32];			/* URLAUTH mechanism, e.g. "INTERNAL" */
	char token[128];		/* the URLAUTH token: never log this */
	size_t rump_len;		/* length of the URL up to and including
					 * ";URLAUTH=access" (what URLFETCH's
					 * server verifies the token over) */
};

enum imapurl_error {
	IMAPURL_OK = 0,
	IMAPURL_ERR_SYNTAX,		/* not a well-formed IMAP URL: 501 5.5.4 */
	IMAPURL_ERR_NOT_IMAP,		/* another scheme, or relative: 501 5.5.4 */
	IMAPURL_ERR_TOO_LONG,		/* over IMAPURL_MAX_LEN or a field: 501 5.5.4 */
	IMAPURL_ERR_NO_UID,		/* no ;UID=: not a message reference: 554 5.6.6 */
};

/*
 * Parse url[0..len) (not necessarily NUL-terminated) into *out.  On error,
 * *error_r is a static string for the client and the log, mentioning no
 * part of the URL.
 */
enum imapurl_error imapurl_parse(const char *url, size_t len,
				 struct imapurl *out, const char **error_r);

/* The URL for logs: everything after ";URLAUTH=access:mech:" replaced by
 * "<redacted>"; control characters escaped; cut to outsize. */
void imapurl_redact(const char *url, size_t len, char *out, size_t outsize);

#endif
