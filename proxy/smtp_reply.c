/*
 * smtp_reply.c - the proxy's own reply texts and the reply writer.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "smtp_reply.h"

/* Texts carry their code and enhanced code; "%s"/"%llu" where noted in the
 * header.  Keep them short: they are sent a lot. */
static const char *const reply_texts[R_REPLY_COUNT] = {
	[R_GREETING] = "220 %s ESMTP msaproxy",
	[R_BYE] = "221 2.0.0 Bye",
	[R_OKAY] = "250 2.0.0 OK",
	[R_NOOP] = "250 2.0.0 OK",
	[R_RSET] = "250 2.0.0 Reset state",
	[R_HELP] = "214 2.0.0 See RFC 5321; commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY",
	[R_VRFY] = "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery",
	[R_DATA_GO] = "354 End data with <CR><LF>.<CR><LF>",
	[R_BDAT_CHUNK_OK] = "250 2.0.0 %llu octets received",
	[R_LINE_TOO_LONG] = "500 5.5.2 Line too long",
	[R_UNKNOWN_CMD] = "500 5.5.1 Command unrecognized",
	[R_SYNTAX] = "501 5.5.4 Syntax error in parameters or arguments",
	[R_SYNTAX_PATH] = "501 5.1.7 Bad sender address syntax",
	[R_SYNTAX_RCPT] = "501 5.1.3 Bad recipient address syntax",
	[R_PARAM_UNKNOWN] = "555 5.5.4 Unsupported parameter",
	[R_NOT_IMPL] = "502 5.5.1 Command not implemented",
	[R_EXPN] = "502 5.5.1 EXPN not available",
	[R_SEQ_HELO] = "503 5.5.1 Send EHLO or HELO first",
	[R_SEQ_LHLO] = "503 5.5.1 Send LHLO first",
	[R_SEQ_NESTED_MAIL] = "503 5.5.1 Nested MAIL command",
	[R_SEQ_NEED_MAIL] = "503 5.5.1 Need MAIL before RCPT",
	[R_SEQ_NEED_RCPT] = "503 5.5.1 Need RCPT before DATA",
	[R_SEQ_DATA_BDAT] = "503 5.5.1 DATA and BDAT cannot be mixed in one transaction",
	[R_SEQ_BDAT_FAILED] = "503 5.5.1 Transaction failed, send RSET",
	[R_NO_VALID_RCPT] = "554 5.5.1 No valid recipients",
	[R_HELO_IN_LMTP] = "500 5.5.1 Use LHLO on an LMTP listener",
	[R_LHLO_IN_SMTP] = "500 5.5.1 LHLO is for LMTP listeners only",
	[R_SIZE_EXCEEDED] = "552 5.3.4 Message size exceeds fixed limit",
	[R_TOO_MANY_RCPTS] = "452 4.5.3 Too many recipients",
	[R_BARE_NEWLINE] = "550 5.6.0 Message contains bare CR or LF, refused (RFC 5321 2.3.8)",
	[R_DATA_LINE_TOO_LONG] = "554 5.6.0 Message line too long",
	[R_8BIT_IN_7BIT] = "554 5.6.3 Conversion required but not supported",
	[R_SMTPUTF8_UNAVAIL] = "555 5.6.7 SMTPUTF8 is not available here",
	[R_BACKEND_UNAVAIL] = "451 4.4.1 Backend temporarily unavailable, try again later",
	[R_BACKEND_LOST] = "451 4.4.2 Backend connection lost, try again later",
	[R_BACKEND_TIMEOUT] = "451 4.4.2 Backend timed out, try again later",
	[R_BACKEND_CONFIG] = "451 4.3.5 Backend refused the proxy, try again later",
	[R_BACKEND_GARBAGE] = "451 4.4.2 Backend protocol error, try again later",
	[R_BACKEND_GONE_421] = "421 4.4.2 Backend unavailable, closing connection",
	[R_TOO_MANY_ERRORS] = "421 4.7.0 Too many errors, closing connection",
	[R_TOO_MANY_CONN] = "421 4.7.0 Too many connections, try again later",
	[R_TIMEOUT] = "421 4.4.2 Timeout, closing connection",
	[R_SHUTDOWN] = "421 4.3.2 Service shutting down, closing connection",
	[R_LOCAL_ERROR] = "451 4.3.0 Local error, try again later",
	[R_TLS_GO] = "220 2.0.0 Ready to start TLS",
	[R_TLS_ACTIVE] = "503 5.5.1 TLS already active",
	[R_TLS_UNAVAIL] = "454 4.7.0 TLS not available",
	[R_TLS_UNAVAIL_421] = "421 4.7.0 TLS not available, closing connection",
	[R_AUTH_OK] = "235 2.7.0 Authentication successful",
	[R_AUTH_CANCELLED] = "501 5.0.0 Authentication cancelled",
	[R_AUTH_BAD_BASE64] = "501 5.5.2 Cannot decode response",
	[R_AUTH_TWICE] = "503 5.5.1 Already authenticated",
	[R_AUTH_IN_TX] = "503 5.5.1 AUTH not permitted during a mail transaction",
	[R_AUTH_NO_MECH] = "504 5.5.4 Unrecognized authentication type",
	[R_AUTH_WEAK] = "534 5.7.9 Authentication mechanism is too weak",
	[R_AUTH_FAILED] = "535 5.7.8 Authentication credentials invalid",
	[R_AUTH_TLS_REQUIRED] = "538 5.7.11 Encryption required for requested authentication mechanism",
	[R_AUTH_TEMP] = "454 4.7.0 Temporary authentication failure",
	[R_AUTH_REQUIRED] = "530 5.7.0 Authentication required",
	[R_AUTH_TOO_MANY] = "421 4.7.0 Too many authentication failures, closing connection",
	[R_AUTH_NOT_AVAIL] = "502 5.5.1 AUTH not available",
	[R_SENDER_DENIED] = "553 5.7.1 Sender address not owned by user %s",
	[R_BURL_WAITING] = "250 2.5.0 Waiting for additional BURL or BDAT commands",
	[R_BURL_NOT_ENABLED] = "503 5.5.1 BURL has not been enabled.",
	[R_BURL_NOT_SUBMISSION] = "503 5.5.1 BURL only allowed on submission port.",
	[R_BURL_LMTP] = "503 5.5.0 BURL illegal on LMTP port.",
	[R_BURL_NEED_RCPT] = "503 5.5.0 Valid RCPT TO required before BURL",
	[R_BURL_NO_RCPTS] = "554 5.5.0 No recipients have been specified",
	[R_BURL_BAD_URL] = "501 5.5.4 Invalid URL: %s",
	[R_BURL_BAD_URL_REF] = "554 5.6.6 IMAP URL resolution failed: %s",
	[R_BURL_NO_TRUST] = "554 5.7.14 URL resolution requires trust relationship",
	[R_BURL_ACCESS_DENIED] = "554 5.7.1 Access denied to specified URL",
	[R_BURL_FETCH_FAILED] = "554 5.6.6 IMAP URL resolution failed",
	[R_BURL_IMAP_UNAVAIL] = "451 4.4.1 IMAP server unavailable",
	[R_BURL_TOO_BIG] = "554 5.3.4 Message too big for system",
	[R_BURL_8BIT] = "554 5.6.3 Conversion required but not supported",
	[R_BURL_TOO_MANY] = "421 4.7.0 Too many failed BURL commands, closing connection",
	/* RFC 1985 5.1 gives the codes and the texts after the enhanced
	 * code; docs/ETRN.md explains the enhanced codes chosen. */
	[R_ETRN_NO_NODE] = "500 5.5.2 Syntax error, ETRN needs a node name",
	[R_ETRN_SYNTAX] = "501 5.5.4 Syntax error in parameters, expected a domain name, @domain or #queue",
	[R_ETRN_IN_TX] = "503 5.5.1 ETRN not permitted during a mail transaction",
	[R_ETRN_DENIED] = "459 4.7.1 Node %s not allowed: no ETRN permission for this client",
	[R_ETRN_NOT_LISTED] = "459 4.7.1 Node %s not allowed: not among the nodes this client may release",
	[R_ETRN_TLD] = "459 4.7.1 Node %s not allowed: releasing a whole top-level domain is refused",
	[R_ETRN_UNAVAIL] = "458 4.4.1 Unable to queue messages for node %s",
	[R_ETRN_LOST] = "458 4.4.2 Unable to queue messages for node %s, try again later",
	[R_ETRN_BACKEND_REFUSED] = "458 4.3.5 Unable to queue messages for node %s, the mail system refused",
	[R_BURL_ACCESS_TABLE_DENIED] = "533 5.7.1 Access denied to specified URL.",
	[R_BURL_FORCED_DISCONNECT] = "421 4.7.0 BURL_ACCESS forced disconnect",
	[R_BURL_NO_MAILHOST] = "533 5.7.1 Access denied to specified URL: no mailHost",
	/* the proxy accepts nothing it cannot account for (auth/audit.h) */
	[R_AUDIT_UNAVAIL] = "451 4.3.0 Audit log unavailable, try again later",
	/* proxy/rate_limits.h: 451 4.7.1 for a rate, 421 4.7.0 for a connection
	 * cap, 554 5.7.1 for a URL used too often (RFC 4468 8) */
	[R_LIMIT_MESSAGES] = "451 4.7.1 Rate limit messages_per_identity exceeded, try again later",
	[R_LIMIT_RECIPIENTS] = "451 4.7.1 Rate limit recipients_per_identity exceeded, try again later",
	[R_LIMIT_BYTES] = "451 4.7.1 Rate limit bytes_per_identity exceeded, try again later",
	[R_LIMIT_SESSIONS] = "421 4.7.0 Too many sessions for this user (sessions_per_identity), closing connection",
	[R_LIMIT_AUTH_IDENTITY] = "451 4.7.1 Rate limit auth_failures_per_identity exceeded, try again later",
	[R_LIMIT_AUTH_ADDRESS] = "451 4.7.1 Rate limit auth_failures_per_address exceeded, try again later",
	[R_LIMIT_BURL_FETCHES] = "451 4.7.1 Rate limit burl_fetches_per_identity exceeded, try again later",
	[R_LIMIT_BURL_BYTES] = "451 4.7.1 Rate limit burl_bytes_per_identity exceeded, try again later",
	[R_LIMIT_CONNECTIONS] = "421 4.7.0 Too many connections from your address (connections_per_address), try again later",
	[R_LIMIT_CONNECTION_RATE] = "421 4.7.0 Rate limit connection_rate_per_address exceeded, try again later",
	[R_LIMIT_URL_REUSE] = "554 5.7.1 Rate limit url_reuse exceeded: this URL was resolved too often",
	[R_LIMIT_UNAVAIL] = "451 4.3.0 Limits cannot be checked now, try again later",
	[R_LIMIT_UNAVAIL_421] = "421 4.3.0 Limits cannot be checked now, closing connection",
};

const char *
smtp_reply_text(enum smtp_reply_id id)
{
	return reply_texts[id];
}

int
smtp_reply_code(enum smtp_reply_id id)
{
	const char *t = reply_texts[id];

	return (t[0] - '0') * 100 + (t[1] - '0') * 10 + (t[2] - '0');
}

/* The formats are this file's own constant table, each with at most one
 * conversion documented in smtp_reply.h: not attacker-controlled. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
void
smtp_reply_vadd(struct evbuffer *out, enum smtp_reply_id id, va_list ap)
{
	char line[SMTP_REPLY_LINE_MAX];
	int n;

	n = vsnprintf(line, sizeof(line) - 2, reply_texts[id], ap);
	if (n < 0)
		n = 0;
	if (n > (int)sizeof(line) - 3)
		n = sizeof(line) - 3;
	line[n++] = '\r';
	line[n++] = '\n';
	evbuffer_add(out, line, (size_t)n);
}
#pragma GCC diagnostic pop

void
smtp_reply_add(struct evbuffer *out, enum smtp_reply_id id, ...)
{
	va_list ap;

	va_start(ap, id);
	smtp_reply_vadd(out, id, ap);
	va_end(ap);
}

void
smtp_reply_add_lines(struct evbuffer *out, int code, const char *const *lines,
		     size_t count)
{
	size_t i;

	if (count == 0) {
		evbuffer_add_printf(out, "%03d \r\n", code);
		return;
	}
	if (count > SMTP_REPLY_MAX_LINES)
		count = SMTP_REPLY_MAX_LINES;
	for (i = 0; i < count; i++) {
		/* 3 digits + separator + text + CRLF within SMTP_REPLY_LINE_MAX */
		int maxtext = SMTP_REPLY_LINE_MAX - 6;
		evbuffer_add_printf(out, "%03d%c%.*s\r\n", code,
		    i + 1 < count ? '-' : ' ', maxtext, lines[i]);
	}
}

size_t
smtp_enhanced_code_len(const char *s)
{
	const char *p = s;
	int digits;

	/* class "." subject "." detail; class is 2, 4 or 5; subject and
	 * detail are 1-3 digits (RFC 3463 section 2). */
	if (*p != '2' && *p != '4' && *p != '5')
		return 0;
	p++;
	if (*p++ != '.')
		return 0;
	for (digits = 0; *p >= '0' && *p <= '9'; p++)
		digits++;
	if (digits < 1 || digits > 3 || *p++ != '.')
		return 0;
	for (digits = 0; *p >= '0' && *p <= '9'; p++)
		digits++;
	if (digits < 1 || digits > 3)
		return 0;
	if (*p != ' ' && *p != '\0')
		return 0;
	return (size_t)(p - s);
}
