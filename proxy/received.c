/*
 * received.c - see received.h.
 */
#include <stdio.h>
#include <string.h>

#include "received.h"
#include "util.h"

const char *
received_with_type(int lmtp, int esmtp, int tls, int auth, int utf8)
{
	/* index: utf8 * 4 + tls * 2 + auth */
	static const char *const smtp_types[8] = {
		"ESMTP", "ESMTPA", "ESMTPS", "ESMTPSA",
		"UTF8SMTP", "UTF8SMTPA", "UTF8SMTPS", "UTF8SMTPSA",
	};
	static const char *const lmtp_types[8] = {
		"LMTP", "LMTPA", "LMTPS", "LMTPSA",
		"UTF8LMTP", "UTF8LMTPA", "UTF8LMTPS", "UTF8LMTPSA",
	};
	int i = (utf8 ? 4 : 0) + (tls ? 2 : 0) + (auth ? 1 : 0);

	if (lmtp)
		return lmtp_types[i];
	if (!esmtp)
		return "SMTP";	/* RFC 3848 defines no HELO variants */
	return smtp_types[i];
}

size_t
received_format(const struct received_info *ri, struct evbuffer *out)
{
	char date[64];
	size_t before = evbuffer_get_length(out);

	/* RFC 5321 4.1.3: an IPv6 address literal is tagged "IPv6:" */
	const char *tag = strchr(ri->ip, ':') != NULL ? "IPv6:" : "";

	util_rfc5322_date(ri->when, date, sizeof(date));
	if (ri->rdns != NULL)
		evbuffer_add_printf(out, "Received: from %s (%s [%s%s])\r\n",
		    ri->helo, ri->rdns, tag, ri->ip);
	else
		evbuffer_add_printf(out, "Received: from %s ([%s%s])\r\n",
		    ri->helo, tag, ri->ip);
	if (ri->tls_comment != NULL)
		evbuffer_add_printf(out, "\t(using %s)\r\n", ri->tls_comment);
	if (ri->auth_comment != NULL)
		evbuffer_add_printf(out, "\t(%s)\r\n", ri->auth_comment);
	evbuffer_add_printf(out, "\tby %s (msaproxy) with %s id %s",
	    ri->by, received_with_type(ri->lmtp, ri->esmtp, ri->tls, ri->auth,
	    ri->utf8), ri->id);
	if (ri->rcpt != NULL)
		evbuffer_add_printf(out, "\r\n\tfor <%s>", ri->rcpt);
	evbuffer_add_printf(out, ";\r\n\t%s\r\n", date);
	return evbuffer_get_length(out) - before;
}
