/*
 * smtp_parse.c - see smtp_parse.h.  Pure functions over one command line.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "smtp_parse.h"

static const char *const verb_names[V_VERB_COUNT] = {
	[V_UNKNOWN] = "?", [V_EHLO] = "EHLO", [V_HELO] = "HELO",
	[V_LHLO] = "LHLO", [V_MAIL] = "MAIL", [V_RCPT] = "RCPT",
	[V_DATA] = "DATA", [V_BDAT] = "BDAT", [V_RSET] = "RSET",
	[V_NOOP] = "NOOP", [V_QUIT] = "QUIT", [V_HELP] = "HELP",
	[V_VRFY] = "VRFY", [V_EXPN] = "EXPN", [V_STARTTLS] = "STARTTLS",
	[V_AUTH] = "AUTH", [V_BURL] = "BURL", [V_ETRN] = "ETRN",
};

const char *
smtp_verb_name(enum smtp_verb verb)
{
	return verb < V_VERB_COUNT ? verb_names[verb] : "?";
}

int
smtp_parse_command(char *line, size_t len, struct smtp_command *cmd_r)
{
	size_t i, vlen;
	int v;

	cmd_r->verb = V_UNKNOWN;
	cmd_r->args = line + len;
	for (i = 0; i < len; i++)
		if (line[i] == '\0' || line[i] == '\r')
			return -1;
	for (vlen = 0; vlen < len && line[vlen] != ' '; vlen++)
		;
	for (v = 1; v < V_VERB_COUNT; v++) {
		if (strlen(verb_names[v]) == vlen &&
		    strncasecmp(line, verb_names[v], vlen) == 0) {
			cmd_r->verb = (enum smtp_verb)v;
			break;
		}
	}
	if (vlen < len)
		cmd_r->args = line + vlen + 1;
	return 0;
}

/* RFC 5321 atext (RFC 5322 3.2.3). */
static int
is_atext(unsigned char c)
{
	return isalnum(c) || strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static int
local_part_valid(const char *s, size_t len, int utf8)
{
	size_t i;

	if (len == 0)
		return 0;
	if (s[0] == '"') {
		/* Quoted-string: qtextSMTP / quoted-pairSMTP. */
		if (len < 2 || s[len - 1] != '"')
			return 0;
		for (i = 1; i < len - 1; i++) {
			unsigned char c = (unsigned char)s[i];
			if (c == '\\') {
				if (++i >= len - 1)
					return 0;
				c = (unsigned char)s[i];
				if (c < 32 || c > 126)
					return 0;
			} else if (c == '"' || (c < 32) || c == 127 ||
			    (c > 127 && !utf8)) {
				return 0;
			}
		}
		return 1;
	}
	/* Dot-string: atoms separated by single dots. */
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (i == 0 || i == len - 1 || s[i - 1] == '.')
				return 0;
		} else if (!(is_atext(c) || (c > 127 && utf8))) {
			return 0;
		}
	}
	return 1;
}

static int
domain_valid(const char *s, size_t len, int utf8)
{
	size_t i, label = 0;

	if (len == 0 || len > 255)
		return 0;
	if (s[0] == '[') {
		/* address-literal: keep it simple but strict enough that
		 * nothing odd reaches a header: dcontent is %d33-90 / %d94-126. */
		if (len < 3 || s[len - 1] != ']')
			return 0;
		for (i = 1; i < len - 1; i++) {
			unsigned char c = (unsigned char)s[i];
			if (c < 33 || c > 126 || c == '[' || c == ']' || c == '\\')
				return 0;
		}
		return 1;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return 0;
			label = 0;
		} else if (isalnum(c) || (c > 127 && utf8) ||
		    (c == '-' && label > 0)) {
			if (++label > 63)
				return 0;
		} else {
			return 0;
		}
	}
	return label > 0 && s[len - 1] != '-';
}

int
smtp_mailbox_valid(const char *mbox, size_t len, int utf8)
{
	const char *at = NULL;
	size_t i;

	/* The last '@' not inside the quoted local part splits the mailbox. */
	for (i = len; i > 0; i--) {
		if (mbox[i - 1] == '@') {
			at = mbox + i - 1;
			break;
		}
	}
	if (at == NULL)
		return 0;
	if ((size_t)(at - mbox) > 64)		/* RFC 5321 4.5.3.1.1 */
		return 0;
	return local_part_valid(mbox, (size_t)(at - mbox), utf8) &&
	    domain_valid(at + 1, len - (size_t)(at - mbox) - 1, utf8);
}

int
smtp_xtext_valid(const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '+') {
			if (!isxdigit((unsigned char)s[1]) ||
			    !isxdigit((unsigned char)s[2]))
				return 0;
			/* RFC 3461 4: hex digits are upper case. */
			if (islower((unsigned char)s[1]) ||
			    islower((unsigned char)s[2]))
				return 0;
			s += 2;
		} else if (c < 33 || c > 126 || c == '=') {
			return 0;
		}
	}
	return 1;
}

/* Skip a source route "@a,@b:" (RFC 5321 4.1.2; to be ignored, C.1). */
static char *
skip_route(char *p, char *end)
{
	char *colon;

	if (*p != '@')
		return p;
	colon = memchr(p, ':', (size_t)(end - p));
	return colon ? colon + 1 : NULL;
}

enum smtp_parse_error
smtp_parse_path_args(char *args, const char *keyword, int is_mail, int utf8,
		     struct smtp_path_args *out)
{
	size_t kwlen = strlen(keyword);
	char *p, *close, *mbox, *q;

	memset(out, 0, sizeof(*out));
	if (strncasecmp(args, keyword, kwlen) != 0)
		return SMTP_PARSE_SYNTAX;
	p = args + kwlen;
	if (*p == ' ')
		p++;
	if (*p != '<')
		return SMTP_PARSE_SYNTAX;
	/* The path ends at the first '>' outside a quoted local part. */
	{
		int quoted = 0;
		for (close = p + 1; *close; close++) {
			if (quoted && *close == '\\' && close[1]) {
				close++;
				continue;
			}
			if (*close == '"')
				quoted = !quoted;
			else if (*close == '>' && !quoted)
				break;
		}
	}
	if (*close != '>')
		return SMTP_PARSE_SYNTAX;
	if ((size_t)(close - p) + 1 > SMTP_PATH_MAX)
		return SMTP_PARSE_BAD_PATH;
	mbox = skip_route(p + 1, close);
	if (mbox == NULL)
		return SMTP_PARSE_BAD_PATH;
	*close = '\0';
	if (*mbox == '\0') {
		if (!is_mail || mbox != p + 1)	/* "<>", not "<@route:>" */
			return SMTP_PARSE_BAD_PATH;
	} else if (!is_mail && strcasecmp(mbox, "postmaster") == 0) {
		/* RFC 5321 4.1.1.3: <Postmaster> without a domain. */
	} else if (!smtp_mailbox_valid(mbox, strlen(mbox), utf8)) {
		return SMTP_PARSE_BAD_PATH;
	}
	out->path = mbox;

	/* Parameters: SP-separated esmtp-keyword["=" esmtp-value]. */
	q = close + 1;
	if (*q != '\0' && *q != ' ')
		return SMTP_PARSE_SYNTAX;
	for (;;) {
		char *key, *eq, *c;

		while (*q == ' ')
			q++;
		if (*q == '\0')
			break;
		if (out->param_count == SMTP_MAX_PARAMS)
			return SMTP_PARSE_PARAMS;
		key = q;
		while (*q != '\0' && *q != ' ')
			q++;
		if (*q != '\0')
			*q++ = '\0';
		eq = strchr(key, '=');
		if (eq != NULL)
			*eq = '\0';
		/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
		if (!isalnum((unsigned char)key[0]))
			return SMTP_PARSE_PARAMS;
		for (c = key; *c; c++)
			if (!isalnum((unsigned char)*c) && *c != '-')
				return SMTP_PARSE_PARAMS;
		if (eq != NULL) {
			/* esmtp-value = 1*(%d33-60 / %d62-126); UTF-8 with SMTPUTF8 */
			if (eq[1] == '\0')
				return SMTP_PARSE_PARAMS;
			for (c = eq + 1; *c; c++) {
				unsigned char u = (unsigned char)*c;
				if (u < 33 || u == '=' || u == 127 || (u > 127 && !utf8))
					return SMTP_PARSE_PARAMS;
			}
		}
		out->params[out->param_count].key = key;
		out->params[out->param_count].value = eq ? eq + 1 : NULL;
		out->param_count++;
	}
	return SMTP_PARSE_OK;
}

int
smtp_parse_bdat(const char *args, uint64_t *size_r, int *last_r)
{
	uint64_t n = 0;
	const char *p = args;
	int digits = 0;

	*last_r = 0;
	while (*p >= '0' && *p <= '9') {
		if (++digits > 19)	/* fits comfortably in uint64_t */
			return -1;
		n = n * 10 + (uint64_t)(*p - '0');
		p++;
	}
	if (digits == 0)
		return -1;
	if (*p == ' ') {
		p++;
		if (strcasecmp(p, "LAST") != 0)
			return -1;
		*last_r = 1;
	} else if (*p != '\0') {
		return -1;
	}
	*size_r = n;
	return 0;
}

/* RFC 5321 4.1.2 Let-dig, ASCII only (the C library's isalnum() depends on
 * the locale). */
static int
is_let_dig(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9');
}

/*
 * An RFC 5321 Domain of len octets: dot-separated sub-domains, each
 * Let-dig [Ldh-str] and at most 63 octets; the last not all digits.
 * Returns the number of labels, or 0 if invalid.
 */
static unsigned
etrn_domain_labels(const char *s, size_t len)
{
	size_t i, label = 0;
	unsigned labels = 0;
	int digits_only = 1;

	if (len == 0 || len > 255)
		return 0;
	for (i = 0; i <= len; i++) {
		unsigned char c = i < len ? (unsigned char)s[i] : '.';

		if (c == '.') {
			/* an empty label, or one ending in '-' */
			if (label == 0 || s[i - 1] == '-')
				return 0;
			labels++;
			if (i < len) {
				label = 0;
				digits_only = 1;
			}
		} else if (is_let_dig(c)) {
			if (++label > 63)
				return 0;
			if (c < '0' || c > '9')
				digits_only = 0;
		} else if (c == '-' && label > 0) {
			if (++label > 63)
				return 0;
			digits_only = 0;
		} else {
			return 0;
		}
	}
	return digits_only ? 0 : labels;
}

enum smtp_etrn_result
smtp_parse_etrn(const char *args, struct smtp_etrn *out)
{
	size_t len = strlen(args), i;
	const char *name = args;

	memset(out, 0, sizeof(*out));
	if (len == 0)
		return SMTP_ETRN_EMPTY;
	if (len > SMTP_ETRN_ARG_MAX)
		return SMTP_ETRN_BAD;
	switch (args[0]) {
	case '#':
		name = args + 1;
		len--;
		if (len == 0 || len > SMTP_ETRN_QUEUE_MAX ||
		    !is_let_dig((unsigned char)name[0]))
			return SMTP_ETRN_BAD;
		for (i = 1; i < len; i++)
			if (!is_let_dig((unsigned char)name[i]) &&
			    name[i] != '-' && name[i] != '_' && name[i] != '.')
				return SMTP_ETRN_BAD;
		out->kind = SMTP_ETRN_QUEUE;
		break;
	case '@':
		name = args + 1;
		len--;
		out->kind = SMTP_ETRN_DOMAIN;
		if ((out->labels = etrn_domain_labels(name, len)) == 0)
			return SMTP_ETRN_BAD;
		break;
	default:
		out->kind = SMTP_ETRN_NODE;
		/* RFC 1985 5: a fully qualified domain name */
		if ((out->labels = etrn_domain_labels(name, len)) < 2)
			return SMTP_ETRN_BAD;
		break;
	}
	out->name = name;
	out->name_len = len;
	return SMTP_ETRN_OK;
}

int
smtp_helo_valid(const char *arg)
{
	const unsigned char *p = (const unsigned char *)arg;

	if (*p == '\0')
		return 0;
	for (; *p; p++)
		if (*p <= 32 || *p >= 127)
			return 0;
	return strlen(arg) <= 255;
}
