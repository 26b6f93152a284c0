/*
 * conf.c - load msaproxy.conf (libconfig syntax) into a struct conf.
 *
 * Every key msaproxy knows is a row in a table: its name, its type, where it
 * lands in the struct, its default (as text, parsed by the same code as a
 * value from the file) and its bounds.  There is one table per section; a
 * section key points at the next table.  Adding a section (tls, sasl, audit)
 * means adding a struct to conf.h, a table here and one row in the parent
 * table; nothing else in this file changes.
 *
 * Loading is one pass over the tree libconfig builds:
 *   1. every key of a section gets its default;
 *   2. every setting in the file, in file order, is looked up in the table:
 *      unknown names, wrong types and bad values are reported, not fatal;
 *   3. keys flagged CONF_REQUIRED that the file lacks are reported;
 *   4. the section's check function, if any, tests keys against each other.
 * Problems accumulate as "FILE:LINE: problem" lines; conf_load() fails if
 * there was at least one.  Values quoted in messages are made printable
 * first: a config file is input like any other.
 *
 * SECURITY: the file is read once at start (as root, before privileges are
 * dropped) and trusted for what it says, but not for being well formed.
 * Nothing here resolves names or touches the network.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>

#include <libconfig.h>

#include "conf.h"
#include "mapping.h"
#include "smtp_parse.h"

/* Larger than any sane configuration; bounds what libconfig parses. */
#define CONF_MAX_FILE_SIZE (1024 * 1024)

/* ------------------------------------------------------------------------
 * The tables' vocabulary
 */

enum conf_type {
	CONF_STRING,		/* char[size]; optional validator */
	CONF_UINT,		/* unsigned or uint64_t; an integer */
	CONF_SIZE,		/* the same, or a string "64K", "50M" */
	CONF_BOOL,		/* int; libconfig boolean */
	CONF_ENUM,		/* int-sized enum; a name from arg */
	CONF_ADDR,		/* struct conf_addr; conf_parse_addr() */
	CONF_CIDR_LIST,		/* struct conf_cidr[]; arg: conf_array */
	CONF_STRING_LIST,	/* char[n][size]; arg: conf_strings; valid per entry */
	CONF_GROUP,		/* a struct; arg: its conf_section */
	CONF_GROUP_LIST,	/* array of structs; arg: conf_list */
};

#define CONF_REQUIRED	0x01	/* no default: the file must set it */
/* CONF_BOOL whose default depends on other sections: left at -1 when the
 * file does not set it, and resolved to 0 or 1 by a check (conf_check_top),
 * which can also tell an explicit value from a default. */
#define CONF_UNSET	0x02

struct conf_ctx;

struct conf_enum {
	const char *name;
	int value;
};

struct conf_key {
	const char *name;
	enum conf_type type;
	size_t offset;			/* of the field in the struct */
	size_t size;			/* sizeof the field */
	/* Default, written as in the file without quotes ("50M", "true",
	 * "reject"); NULL leaves the field zeroed (or empty). */
	const char *def;
	uint64_t min, max;		/* CONF_UINT, CONF_SIZE */
	const void *arg;		/* enum names, section or list */
	/* CONF_STRING: extra check of a non-default value. */
	int (*valid)(const char *value, const char **error_r);
	unsigned flags;
};

/* A group of keys; messages name it by its path ("limits",
 * "listeners[1]"). */
struct conf_section {
	const struct conf_key *keys;	/* ends with a NULL name */
	/* Checks across keys, after all keys are read.  group is NULL when
	 * the file has no such section (defaults only). */
	void (*check)(struct conf_ctx *ctx, void *obj,
		      const config_setting_t *group, const char *path);
};

/* A list of groups: listeners = ( { ... }, { ... } ). */
struct conf_list {
	const struct conf_section *elem;
	size_t elem_size;
	size_t count_offset;		/* of the size_t counter */
	size_t max;
};

/* A list of CIDR strings: proxy_protocol_from = [ "10.0.0.0/8" ]. */
struct conf_array {
	size_t count_offset;		/* of the size_t counter */
	size_t max;
};

/* A list of strings: allow = [ "example.org", "@example.net" ]. */
struct conf_strings {
	size_t count_offset;		/* of the size_t counter */
	size_t max;
	size_t elem_size;		/* sizeof one entry (char[elem_size]) */
};

#define CONF_FIELD(st, f) \
	.offset = offsetof(st, f), .size = sizeof(((st *)0)->f)

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)
#define TiB (UINT64_C(1) << 40)

/* ------------------------------------------------------------------------
 * Error collection
 */

struct conf_ctx {
	const char *file;		/* as passed to conf_load() */
	char *errbuf;
	size_t errbuf_size;
	size_t errlen;
	unsigned nerrors;
};

static void conf_error(struct conf_ctx *ctx, const config_setting_t *s,
		       const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
conf_append(struct conf_ctx *ctx, const char *text)
{
	size_t len = strlen(text), room;

	if (ctx->errbuf == NULL || ctx->errbuf_size == 0)
		return;
	room = ctx->errbuf_size - ctx->errlen - 1;
	if (len <= room) {
		memcpy(ctx->errbuf + ctx->errlen, text, len + 1);
		ctx->errlen += len;
		return;
	}
	/* Keep what fits and mark the cut, so a reader knows lines are
	 * missing.  Later calls find room == 0 and only mark again. */
	memcpy(ctx->errbuf + ctx->errlen, text, room);
	ctx->errlen += room;
	ctx->errbuf[ctx->errlen] = '\0';
	if (ctx->errlen >= 3)
		memcpy(ctx->errbuf + ctx->errlen - 3, "...", 3);
}

/* Report one problem at setting s ("FILE:LINE: ..."), or at the file as a
 * whole when s is NULL or has no line ("FILE: ..."). */
static void
conf_error(struct conf_ctx *ctx, const config_setting_t *s,
	   const char *fmt, ...)
{
	char line[1024], msg[768];
	const char *file = ctx->file;
	unsigned lineno = 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	if (s != NULL) {
		if (config_setting_source_file(s) != NULL)
			file = config_setting_source_file(s);
		lineno = config_setting_source_line(s);
	}
	if (lineno > 0)
		snprintf(line, sizeof(line), "%s%s:%u: %s",
			 ctx->nerrors > 0 ? "\n" : "", file, lineno, msg);
	else
		snprintf(line, sizeof(line), "%s%s: %s",
			 ctx->nerrors > 0 ? "\n" : "", file, msg);
	conf_append(ctx, line);
	ctx->nerrors++;
}

/* Copy s into buf as printable ASCII (others as \xNN), cut at ~60 chars. */
static const char *
conf_quote(const char *s, char *buf, size_t size)
{
	size_t o = 0;

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (o + 8 >= size || o >= 60) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
			buf[o++] = (char)c;
		else
			o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
	}
	buf[o] = '\0';
	return buf;
}

static const char *
conf_type_name(int type)
{
	switch (type) {
	case CONFIG_TYPE_GROUP:
		return "a group { }";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return "an integer";
	case CONFIG_TYPE_FLOAT:
		return "a float";
	case CONFIG_TYPE_STRING:
		return "a string";
	case CONFIG_TYPE_BOOL:
		return "a boolean";
	case CONFIG_TYPE_ARRAY:
		return "an array [ ]";
	case CONFIG_TYPE_LIST:
		return "a list ( )";
	default:
		return "unknown";
	}
}

/* "64K" when exact, else the number: for bounds in messages. */
static const char *
conf_fmt_size(uint64_t v, char *buf, size_t size)
{
	if (v >= GiB && v % GiB == 0)
		snprintf(buf, size, "%" PRIu64 "G", v / GiB);
	else if (v >= MiB && v % MiB == 0)
		snprintf(buf, size, "%" PRIu64 "M", v / MiB);
	else if (v >= KiB && v % KiB == 0)
		snprintf(buf, size, "%" PRIu64 "K", v / KiB);
	else
		snprintf(buf, size, "%" PRIu64, v);
	return buf;
}

/* ------------------------------------------------------------------------
 * Value parsers
 */

#define CONF_SIZE_ERROR \
	"not a size (a number, optionally followed by K, M or G)"

/* "123", "64K", "50M", "2G" (binary multiples, either case). */
static int
conf_parse_size(const char *text, uint64_t *size_r, const char **error_r)
{
	uint64_t v = 0, mult = 1;
	const char *p = text;

	if (!isdigit((unsigned char)*p)) {
		*error_r = CONF_SIZE_ERROR;
		return -1;
	}
	for (; isdigit((unsigned char)*p); p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10) {
			*error_r = "size too large";
			return -1;
		}
		v = v * 10 + d;
	}
	switch (*p) {
	case '\0':
		break;
	case 'k':
	case 'K':
		mult = KiB;
		p++;
		break;
	case 'm':
	case 'M':
		mult = MiB;
		p++;
		break;
	case 'g':
	case 'G':
		mult = GiB;
		p++;
		break;
	default:
		*error_r = CONF_SIZE_ERROR;
		return -1;
	}
	if (*p != '\0') {
		*error_r = CONF_SIZE_ERROR;
		return -1;
	}
	if (v > UINT64_MAX / mult) {
		*error_r = "size too large";
		return -1;
	}
	*size_r = v * mult;
	return 0;
}

static int
conf_parse_port(const char *p, in_port_t *port_r, const char **error_r)
{
	unsigned long v = 0;

	if (*p == '\0') {
		*error_r = "missing port number after ':'";
		return -1;
	}
	for (; *p != '\0'; p++) {
		if (!isdigit((unsigned char)*p)) {
			*error_r = "port must be a number";
			return -1;
		}
		v = v * 10 + (unsigned long)(*p - '0');
		if (v > 65535)
			break;
	}
	if (v < 1 || v > 65535) {
		*error_r = "port out of range (1..65535)";
		return -1;
	}
	*port_r = htons((in_port_t)v);
	return 0;
}

int
conf_parse_addr(const char *text, struct conf_addr *addr,
		const char **error_r)
{
	char host[INET6_ADDRSTRLEN];
	const char *colon, *port;
	size_t len = strlen(text), hostlen;

	memset(addr, 0, sizeof(*addr));
	if (len == 0) {
		*error_r = "empty address";
		return -1;
	}
	if (len >= sizeof(addr->text)) {
		*error_r = "address too long";
		return -1;
	}

	if (text[0] == '/') {
		struct sockaddr_un *sun = (struct sockaddr_un *)&addr->ss;

		/* sun_path needs room for the terminating NUL. */
		if (len >= sizeof(sun->sun_path)) {
			*error_r = "unix socket path too long (sun_path holds 107 bytes)";
			return -1;
		}
		sun->sun_family = AF_UNIX;
		memcpy(sun->sun_path, text, len + 1);
		addr->is_unix = 1;
		addr->sslen = (socklen_t)
		    (offsetof(struct sockaddr_un, sun_path) + len + 1);
		memcpy(addr->text, text, len + 1);
		return 0;
	}

	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&addr->ss;

		if (close == NULL) {
			*error_r = "missing ']' after IPv6 address";
			return -1;
		}
		if (close[1] != ':') {
			*error_r = "missing ':port' after ']'";
			return -1;
		}
		hostlen = (size_t)(close - text - 1);
		if (hostlen == 0 || hostlen >= sizeof(host)) {
			*error_r = "not a numeric IPv6 address";
			return -1;
		}
		memcpy(host, text + 1, hostlen);
		host[hostlen] = '\0';
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
			*error_r = "not a numeric IPv6 address";
			return -1;
		}
		if (conf_parse_port(close + 2, &sin6->sin6_port, error_r) < 0)
			return -1;
		sin6->sin6_family = AF_INET6;
		addr->sslen = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&addr->ss;

		colon = strrchr(text, ':');
		if (colon == NULL) {
			*error_r = "missing ':port' (or a unix socket path starting with '/')";
			return -1;
		}
		if (memchr(text, ':', (size_t)(colon - text)) != NULL) {
			*error_r = "IPv6 addresses go in brackets: \"[::1]:587\"";
			return -1;
		}
		hostlen = (size_t)(colon - text);
		if (hostlen == 0 || hostlen >= sizeof(host)) {
			*error_r = "not a numeric IPv4 address (host names are not resolved)";
			return -1;
		}
		memcpy(host, text, hostlen);
		host[hostlen] = '\0';
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
			*error_r = "not a numeric IPv4 address (host names are not resolved)";
			return -1;
		}
		port = colon + 1;
		if (conf_parse_port(port, &sin->sin_port, error_r) < 0)
			return -1;
		sin->sin_family = AF_INET;
		addr->sslen = sizeof(*sin);
	}
	memcpy(addr->text, text, len + 1);
	return 0;
}

int
conf_parse_cidr(const char *text, struct conf_cidr *cidr,
		const char **error_r)
{
	char host[INET6_ADDRSTRLEN];
	const char *slash = strchr(text, '/');
	size_t hostlen = slash != NULL ? (size_t)(slash - text) : strlen(text);
	unsigned long prefix, maxprefix, i;
	int family;

	memset(cidr, 0, sizeof(*cidr));
	if (hostlen == 0 || hostlen >= sizeof(host)) {
		*error_r = "not a numeric IP address";
		return -1;
	}
	memcpy(host, text, hostlen);
	host[hostlen] = '\0';
	if (inet_pton(AF_INET, host, cidr->addr) == 1) {
		family = AF_INET;
		maxprefix = 32;
	} else if (inet_pton(AF_INET6, host, cidr->addr) == 1) {
		family = AF_INET6;
		maxprefix = 128;
	} else {
		*error_r = "not a numeric IP address";
		return -1;
	}

	prefix = maxprefix;
	if (slash != NULL) {
		const char *p = slash + 1;

		if (*p == '\0') {
			*error_r = "missing prefix length after '/'";
			return -1;
		}
		prefix = 0;
		for (; *p != '\0'; p++) {
			if (!isdigit((unsigned char)*p) || prefix > maxprefix) {
				*error_r = "bad prefix length";
				return -1;
			}
			prefix = prefix * 10 + (unsigned long)(*p - '0');
		}
		if (prefix > maxprefix) {
			*error_r = "prefix length too large (max 32 for IPv4, 128 for IPv6)";
			return -1;
		}
	}

	/* "10.0.0.1/8" is more likely a typo than a network: refuse rather
	 * than widen trust silently. */
	for (i = 0; i < maxprefix / 8; i++) {
		unsigned bits = prefix >= (i + 1) * 8 ? 8 :
		    prefix > i * 8 ? (unsigned)(prefix - i * 8) : 0;
		uint8_t mask = (uint8_t)(0xff << (8 - bits));

		if (bits == 8)
			continue;
		if ((cidr->addr[i] & (uint8_t)~mask) != 0) {
			*error_r = "address has bits set beyond the prefix length";
			return -1;
		}
	}
	cidr->family = family;
	cidr->prefix = (unsigned)prefix;
	return 0;
}

static int
conf_cidr_match(const struct conf_cidr *net, const uint8_t *addr)
{
	unsigned whole = net->prefix / 8, rest = net->prefix % 8;

	if (memcmp(net->addr, addr, whole) != 0)
		return 0;
	if (rest == 0)
		return 1;
	return ((net->addr[whole] ^ addr[whole]) &
		(uint8_t)(0xff << (8 - rest))) == 0;
}

int
conf_cidr_match_any(const struct conf_cidr *nets, size_t count,
		    const struct sockaddr *sa)
{
	const uint8_t *a4 = NULL, *a6 = NULL;
	size_t i;

	if (sa == NULL)
		return 0;
	if (sa->sa_family == AF_INET) {
		a4 = (const uint8_t *)&((const struct sockaddr_in *)
					(const void *)sa)->sin_addr;
	} else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *in6 =
		    &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;

		a6 = in6->s6_addr;
		/* A dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d. */
		if (IN6_IS_ADDR_V4MAPPED(in6))
			a4 = in6->s6_addr + 12;
	} else {
		return 0;
	}
	for (i = 0; i < count; i++) {
		if (nets[i].family == AF_INET && a4 != NULL &&
		    conf_cidr_match(&nets[i], a4))
			return 1;
		if (nets[i].family == AF_INET6 && a6 != NULL &&
		    conf_cidr_match(&nets[i], a6))
			return 1;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * String validators
 */

/* A host name for the greeting, Received and EHLO: it goes on the wire, so
 * only domain characters (RFC 5321 4.1.2 Domain, plus '_' which real host
 * names carry) or an address literal "[192.0.2.1]", "[IPv6:2001:db8::1]". */
static int
conf_valid_domain(const char *value, const char **error_r)
{
	size_t len = strlen(value), i;

	if (len == 0)
		return 0;	/* "": the default */
	if (value[0] == '[') {
		if (len < 3 || value[len - 1] != ']') {
			*error_r = "an address literal must end with ']'";
			return -1;
		}
		for (i = 1; i < len - 1; i++) {
			if (!isalnum((unsigned char)value[i]) &&
			    value[i] != ':' && value[i] != '.') {
				*error_r = "bad character in address literal";
				return -1;
			}
		}
		return 0;
	}
	for (i = 0; i < len; i++) {
		if (!isalnum((unsigned char)value[i]) && value[i] != '-' &&
		    value[i] != '.' && value[i] != '_') {
			*error_r = "not a domain name (letters, digits, '-', '.', '_')";
			return -1;
		}
	}
	if (value[0] == '.' || value[0] == '-' || strstr(value, "..") != NULL) {
		*error_r = "not a domain name";
		return -1;
	}
	return 0;
}

/* Listener names appear in every log line: a plain token. */
static int
conf_valid_name(const char *value, const char **error_r)
{
	const char *p;

	if (*value == '\0') {
		*error_r = "must not be empty";
		return -1;
	}
	for (p = value; *p != '\0'; p++) {
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' &&
		    *p != '.') {
			*error_r = "only letters, digits, '-', '_' and '.' are allowed";
			return -1;
		}
	}
	return 0;
}

/* Printable ASCII without spaces: syslog ident, user and group names. */
static int
conf_valid_token(const char *value, const char **error_r)
{
	const char *p;

	for (p = value; *p != '\0'; p++) {
		if (*p <= 0x20 || *p >= 0x7f) {
			*error_r = "only printable characters without spaces are allowed";
			return -1;
		}
	}
	return 0;
}

/* The same, not empty: sasl.app_name, sasl.service. */
static int
conf_valid_nonempty_token(const char *value, const char **error_r)
{
	if (*value == '\0') {
		*error_r = "must not be empty";
		return -1;
	}
	return conf_valid_token(value, error_r);
}

static int
conf_valid_path(const char *value, const char **error_r)
{
	const char *p;

	for (p = value; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			*error_r = "control characters are not allowed in a path";
			return -1;
		}
	}
	return 0;
}

/* A file that must exist: a non-empty path. */
static int
conf_valid_file(const char *value, const char **error_r)
{
	if (*value == '\0') {
		*error_r = "must not be empty";
		return -1;
	}
	return conf_valid_path(value, error_r);
}

/* OpenSSL cipher, suite and group lists: printable ASCII. */
static int
conf_valid_printable(const char *value, const char **error_r)
{
	const char *p;

	for (p = value; *p != '\0'; p++) {
		if (*p < 0x20 || *p >= 0x7f) {
			*error_r = "only printable ASCII characters are allowed";
			return -1;
		}
	}
	return 0;
}

/* Nothing below TLS 1.2 (RFC 8996); the name is made canonical by
 * conf_check_tls(), so the TLS module can compare it with strcmp(). */
static int
conf_valid_min_protocol(const char *value, const char **error_r)
{
	if (strcasecmp(value, "TLSv1.2") == 0 ||
	    strcasecmp(value, "TLSv1.3") == 0)
		return 0;
	*error_r = "must be \"TLSv1.2\" or \"TLSv1.3\" (older protocols are "
		   "not accepted)";
	return -1;
}

/* A host name for SNI: a domain name, optionally "*." and a domain (the
 * wildcard stands for exactly one label).  No address literals. */
static int
conf_valid_sni_name(const char *value, const char **error_r)
{
	const char *name = value;

	if (strncmp(name, "*.", 2) == 0)
		name += 2;
	if (*name == '\0') {
		*error_r = "must be a host name or \"*.\" and a domain";
		return -1;
	}
	if (*name == '[') {
		*error_r = "must be a host name, not an address literal";
		return -1;
	}
	if (strchr(name, '*') != NULL) {
		*error_r = "a wildcard is only allowed as \"*.\" at the start";
		return -1;
	}
	return conf_valid_domain(name, error_r);
}

/* Call valid() on each space-separated word of value; "" is accepted. */
static int
conf_valid_words(const char *value, const char **error_r,
		 int (*valid)(const char *word, const char **error_r))
{
	char word[512];
	const char *p = value;
	size_t len;

	for (;;) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			return 0;
		len = strcspn(p, " ");
		if (len >= sizeof(word)) {
			*error_r = "word too long";
			return -1;
		}
		memcpy(word, p, len);
		word[len] = '\0';
		if (valid(word, error_r) < 0)
			return -1;
		p += len;
	}
}

/* A SASL mechanism name (RFC 4422 3.1): 1..20 of A-Z, 0-9, '-', '_'. */
static int
conf_valid_mech(const char *word, const char **error_r)
{
	const char *p;

	if (strlen(word) > 20) {
		*error_r = "a mechanism name has at most 20 characters";
		return -1;
	}
	for (p = word; *p != '\0'; p++) {
		if (!(*p >= 'A' && *p <= 'Z') && !isdigit((unsigned char)*p) &&
		    *p != '-' && *p != '_') {
			*error_r = "mechanism names are space-separated and "
				   "have only upper-case letters, digits, '-' "
				   "and '_'";
			return -1;
		}
	}
	return 0;
}

/* A space-separated list of mechanisms; "" is accepted (a listener's
 * auth_mechanisms: "" means sasl.mechanisms). */
static int
conf_valid_mech_list(const char *value, const char **error_r)
{
	return conf_valid_words(value, error_r, conf_valid_mech);
}

/* The same, but at least one mechanism (sasl.mechanisms). */
static int
conf_valid_mechanisms(const char *value, const char **error_r)
{
	if (value[strspn(value, " ")] == '\0') {
		*error_r = "must name at least one mechanism";
		return -1;
	}
	return conf_valid_mech_list(value, error_r);
}

/* A mail domain: a domain name, not an address literal. */
static int
conf_valid_mail_domain(const char *word, const char **error_r)
{
	if (word[0] == '[') {
		*error_r = "not a domain name";
		return -1;
	}
	return conf_valid_domain(word, error_r);
}

/* A space-separated list of mail domains; "" is accepted. */
static int
conf_valid_domain_list(const char *value, const char **error_r)
{
	return conf_valid_words(value, error_r, conf_valid_mail_domain);
}

/* An ETRN grant: the ETRN argument's own grammar (smtp_parse_etrn). */
static int
conf_valid_etrn_node(const char *value, const char **error_r)
{
	struct smtp_etrn e;

	if (smtp_parse_etrn(value, &e) != SMTP_ETRN_OK) {
		*error_r = "not a domain name of two or more labels, \"@\" and "
			   "a domain, or \"#\" and a queue name (RFC 1985)";
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * The tables
 */

static const struct conf_enum conf_log_dest_names[] = {
	{ "stderr", LOG_DEST_STDERR },
	{ "syslog", LOG_DEST_SYSLOG },
	{ "file", LOG_DEST_FILE },
	{ NULL, 0 },
};

static const struct conf_enum conf_log_level_names[] = {
	{ "err", LOG_ERR },
	{ "warning", LOG_WARNING },
	{ "notice", LOG_NOTICE },
	{ "info", LOG_INFO },
	{ "debug", LOG_DEBUG },
	{ NULL, 0 },
};

static const struct conf_enum conf_log_facility_names[] = {
	{ "mail", LOG_MAIL },
	{ "daemon", LOG_DAEMON },
	{ "user", LOG_USER },
	{ "local0", LOG_LOCAL0 },
	{ "local1", LOG_LOCAL1 },
	{ "local2", LOG_LOCAL2 },
	{ "local3", LOG_LOCAL3 },
	{ "local4", LOG_LOCAL4 },
	{ "local5", LOG_LOCAL5 },
	{ "local6", LOG_LOCAL6 },
	{ "local7", LOG_LOCAL7 },
	{ NULL, 0 },
};

static const struct conf_enum conf_bare_newline_names[] = {
	{ "reject", BARE_NEWLINE_REJECT },
	{ "normalize", BARE_NEWLINE_NORMALIZE },
	{ NULL, 0 },
};

static const struct conf_enum conf_audit_pending_sync_names[] = {
	{ "before_backend", AUDIT_PENDING_BEFORE_BACKEND },
	{ "before_reply", AUDIT_PENDING_BEFORE_REPLY },
	{ NULL, 0 },
};

static const struct conf_enum conf_listener_kind_names[] = {
	{ "submission", LISTENER_SUBMISSION },
	{ "submissions", LISTENER_SUBMISSIONS },
	{ "smtp", LISTENER_SMTP },
	{ "lmtp", LISTENER_LMTP },
	{ NULL, 0 },
};

static const struct conf_enum conf_backend_proto_names[] = {
	{ "smtp", BACKEND_SMTP },
	{ "lmtp", BACKEND_LMTP },
	{ NULL, 0 },
};

static const struct conf_enum conf_backend_tls_names[] = {
	{ "none", BACKEND_TLS_NONE },
	{ "may", BACKEND_TLS_MAY },
	{ "verify", BACKEND_TLS_VERIFY },
	{ NULL, 0 },
};

static const struct conf_enum conf_verify_client_names[] = {
	{ "none", 0 },
	{ "optional", 1 },
	{ "require", 2 },
	{ NULL, 0 },
};

static void conf_check_backend(struct conf_ctx *, void *,
			       const config_setting_t *, const char *);
static void conf_check_cert(struct conf_ctx *, void *,
			    const config_setting_t *, const char *);
static void conf_check_sni(struct conf_ctx *, void *,
			   const config_setting_t *, const char *);
static void conf_check_tls(struct conf_ctx *, void *, const config_setting_t *,
			   const char *);
static void conf_check_top(struct conf_ctx *, void *, const config_setting_t *,
			   const char *);
static void conf_check_log(struct conf_ctx *, void *, const config_setting_t *,
			   const char *);
static void conf_check_listener(struct conf_ctx *, void *,
				const config_setting_t *, const char *);
static void conf_check_etrn_rule(struct conf_ctx *, void *,
				 const config_setting_t *, const char *);
static void conf_check_etrn(struct conf_ctx *, void *,
			    const config_setting_t *, const char *);
static const config_setting_t *conf_member_or(const config_setting_t *group,
					      const char *name);
static void conf_check_readable(struct conf_ctx *ctx,
				const config_setting_t *group,
				const char *path, const char *name,
				const char *file);

static const struct conf_key conf_log_keys[] = {
	{ .name = "destination", .type = CONF_ENUM,
	  CONF_FIELD(struct conf_log, dest), .def = "stderr",
	  .arg = conf_log_dest_names },
	{ .name = "file", .type = CONF_STRING,
	  CONF_FIELD(struct conf_log, file), .def = "",
	  .valid = conf_valid_path },
	{ .name = "level", .type = CONF_ENUM,
	  CONF_FIELD(struct conf_log, level), .def = "info",
	  .arg = conf_log_level_names },
	{ .name = "facility", .type = CONF_ENUM,
	  CONF_FIELD(struct conf_log, facility), .def = "mail",
	  .arg = conf_log_facility_names },
	{ .name = "ident", .type = CONF_STRING,
	  CONF_FIELD(struct conf_log, ident), .def = "msaproxy",
	  .valid = conf_valid_token },
	{ .name = NULL },
};

static const struct conf_section conf_log_section = {
	conf_log_keys, conf_check_log,
};

static const struct conf_key conf_listener_keys[] = {
	{ .name = "name", .type = CONF_STRING,
	  CONF_FIELD(struct conf_listener, name), .valid = conf_valid_name,
	  .flags = CONF_REQUIRED },
	{ .name = "kind", .type = CONF_ENUM,
	  CONF_FIELD(struct conf_listener, kind), .def = "submission",
	  .arg = conf_listener_kind_names },
	{ .name = "address", .type = CONF_ADDR,
	  CONF_FIELD(struct conf_listener, addr), .flags = CONF_REQUIRED },
	{ .name = "proxy_protocol", .type = CONF_BOOL,
	  CONF_FIELD(struct conf_listener, proxy_protocol), .def = "false" },
	{ .name = "proxy_protocol_from", .type = CONF_CIDR_LIST,
	  CONF_FIELD(struct conf_listener, proxy_from),
	  .arg = &(const struct conf_array){
		  offsetof(struct conf_listener, proxy_from_count),
		  CONF_MAX_PROXY_FROM } },
	/* Defaults depend on kind and on the tls section: conf_check_top. */
	{ .name = "starttls", .type = CONF_BOOL,
	  CONF_FIELD(struct conf_listener, starttls), .flags = CONF_UNSET },
	{ .name = "require_auth", .type = CONF_BOOL,
	  CONF_FIELD(struct conf_listener, require_auth), .flags = CONF_UNSET },
	{ .name = "require_tls_for_auth", .type = CONF_BOOL,
	  CONF_FIELD(struct conf_listener, require_tls_for_auth),
	  .def = "false" },
	{ .name = "auth_mechanisms", .type = CONF_STRING,
	  CONF_FIELD(struct conf_listener, auth_mechanisms), .def = "",
	  .valid = conf_valid_mech_list },
	{ .name = NULL },
};

static const struct conf_section conf_listener_section = {
	conf_listener_keys, conf_check_listener,
};

static const struct conf_key conf_backend_keys[] = {
	{ .name = "address", .type = CONF_ADDR,
	  CONF_FIELD(struct conf_backend, addr), .flags = CONF_REQUIRED },
	{ .name = "protocol", .type = CONF_ENUM,
	  CONF_FIELD(struct conf_backend, proto), .def = "smtp",
	  .arg = conf_backend_proto_names },
	{ .name = "helo_name", .type = CONF_STRING,
	  CONF_FIELD(struct conf_backend, helo_name), .def = "",
	  .valid = conf_valid_domain },
	{ .name = "chunking", .type = CONF_BOOL,
	  CONF_FIELD(struct conf_backend, use_chunking), .def = "true" },
	{ .name = "capability_refresh", .type = CONF_UINT,
	  CONF_FIELD(struct conf_backend, capability_refresh), .def = "60",
	  .min = 1, .max = 86400 },
	{ .name = "tls", .type = CONF_ENUM,
	  CONF_FIELD(struct conf_backend, tls), .def = "none",
	  .arg = conf_backend_tls_names },
	{ .name = "tls_ca_file", .type = CONF_STRING,
	  CONF_FIELD(struct conf_backend, tls_ca_file), .def = "" },
	{ .name = "tls_verify_name", .type = CONF_STRING,
	  CONF_FIELD(struct conf_backend, tls_verify_name), .def = "",
	  .valid = conf_valid_domain },
	{ .name = "xclient", .type = CONF_BOOL,
	  CONF_FIELD(struct conf_backend, xclient), .def = "true" },
	{ .name = "auth_user", .type = CONF_STRING,
	  CONF_FIELD(struct conf_backend, auth_user), .def = "" },
	{ .name = "auth_password_file", .type = CONF_STRING,
	  CONF_FIELD(struct conf_backend, auth_password_file), .def = "" },
	{ .name = NULL },
};

static const struct conf_section conf_backend_section = {
	conf_backend_keys, conf_check_backend,
};

static const struct conf_key conf_limits_keys[] = {
	{ .name = "max_message_size", .type = CONF_SIZE,
	  CONF_FIELD(struct conf_limits, max_message_size), .def = "50M",
	  .min = KiB, .max = TiB },
	{ .name = "max_recipients", .type = CONF_UINT,
	  CONF_FIELD(struct conf_limits, max_recipients), .def = "100",
	  .min = 1, .max = 100000 },
	/* RFC 5321 4.5.3.1.4: a command line may be 512 octets. */
	{ .name = "max_line_length", .type = CONF_SIZE,
	  CONF_FIELD(struct conf_limits, max_line_length), .def = "512",
	  .min = 512, .max = MiB },
	/* RFC 5321 4.5.3.1.6: a text line may be 1000 octets. */
	{ .name = "max_data_line_length", .type = CONF_SIZE,
	  CONF_FIELD(struct conf_limits, max_data_line_length), .def = "65536",
	  .min = 1000, .max = 16 * MiB },
	{ .name = "max_pipelined", .type = CONF_UINT,
	  CONF_FIELD(struct conf_limits, max_pipelined), .def = "64",
	  .min = 1, .max = 1000 },
	{ .name = "max_bad_commands", .type = CONF_UINT,
	  CONF_FIELD(struct conf_limits, max_bad_commands), .def = "20",
	  .min = 1, .max = 1000 },
	{ .name = "max_connections", .type = CONF_UINT,
	  CONF_FIELD(struct conf_limits, max_connections), .def = "4096",
	  .min = 1, .max = 1000000 },
	{ .name = "max_bdat_chunk", .type = CONF_SIZE,
	  CONF_FIELD(struct conf_limits, max_bdat_chunk), .def = "64K",
	  .min = KiB, .max = 16 * MiB },
	/* content must keep up this rate once timeouts.data has passed
	 * (Postfix's smtpd_min_data_rate): a client dripping bytes cannot
	 * hold a session */
	{ .name = "min_data_rate", .type = CONF_SIZE,
	  CONF_FIELD(struct conf_limits, min_data_rate), .def = "500",
	  .min = 1, .max = GiB },
	{ .name = "session_buffer", .type = CONF_SIZE,
	  CONF_FIELD(struct conf_limits, session_buffer), .def = "64K",
	  .min = 4 * KiB, .max = 16 * MiB },
	{ .name = NULL },
};

static const struct conf_section conf_limits_section = {
	conf_limits_keys, NULL,
};

#define CONF_TIMEOUT(key, def_) \
	{ .name = #key, .type = CONF_UINT, \
	  CONF_FIELD(struct conf_timeouts, key), .def = def_, \
	  .min = 1, .max = 86400 }

static const struct conf_key conf_timeouts_keys[] = {
	CONF_TIMEOUT(greeting, "30"),
	CONF_TIMEOUT(command, "300"),		/* RFC 5321 4.5.3.2.7 */
	CONF_TIMEOUT(data, "180"),		/* RFC 5321 4.5.3.2.5 */
	CONF_TIMEOUT(backend_connect, "30"),
	CONF_TIMEOUT(backend_command, "300"),
	CONF_TIMEOUT(backend_data, "600"),	/* RFC 5321 4.5.3.2.6 */
	CONF_TIMEOUT(shutdown, "30"),
	CONF_TIMEOUT(drain, "600"),		/* old workers after a reload */
	{ .name = NULL },
};

static const struct conf_section conf_timeouts_section = {
	conf_timeouts_keys, NULL,
};

/* tls = { certificates = ( { cert = "..."; key = "..."; }, ... ); ... } */
static const struct conf_key conf_cert_keys[] = {
	{ .name = "cert", .type = CONF_STRING,
	  CONF_FIELD(struct conf_cert, cert_file), .valid = conf_valid_file,
	  .flags = CONF_REQUIRED },
	{ .name = "key", .type = CONF_STRING,
	  CONF_FIELD(struct conf_cert, key_file), .valid = conf_valid_file,
	  .flags = CONF_REQUIRED },
	{ .name = NULL },
};

static const struct conf_section conf_cert_section = {
	conf_cert_keys, conf_check_cert,
};

static const struct conf_list conf_sni_certs_list = {
	&conf_cert_section, sizeof(struct conf_cert),
	offsetof(struct conf_sni, cert_count), CONF_MAX_CERTS,
};

/* tls.certificates fills sni[0], the default set. */
static const struct conf_list conf_tls_certs_list = {
	&conf_cert_section, sizeof(struct conf_cert),
	offsetof(struct conf_tls, sni[0].cert_count), CONF_MAX_CERTS,
};

static const struct conf_key conf_sni_keys[] = {
	{ .name = "name", .type = CONF_STRING,
	  CONF_FIELD(struct conf_sni, name), .valid = conf_valid_sni_name,
	  .flags = CONF_REQUIRED },
	{ .name = "certificates", .type = CONF_GROUP_LIST,
	  CONF_FIELD(struct conf_sni, certs), .arg = &conf_sni_certs_list,
	  .flags = CONF_REQUIRED },
	{ .name = NULL },
};

static const struct conf_section conf_sni_section = {
	conf_sni_keys, conf_check_sni,
};

/* tls.sni fills sni[1..]; sni_count counts them until conf_check_tls()
 * adds the default set. */
static const struct conf_list conf_tls_sni_list = {
	&conf_sni_section, sizeof(struct conf_sni),
	offsetof(struct conf_tls, sni_count), CONF_MAX_SNI - 1,
};

static const struct conf_key conf_tls_keys[] = {
	/* Required when the section exists, which is optional: checked by
	 * conf_check_tls(), not with CONF_REQUIRED. */
	{ .name = "certificates", .type = CONF_GROUP_LIST,
	  CONF_FIELD(struct conf_tls, sni[0].certs),
	  .arg = &conf_tls_certs_list },
	{ .name = "sni", .type = CONF_GROUP_LIST,
	  CONF_FIELD(struct conf_tls, sni[1]), .arg = &conf_tls_sni_list },
	{ .name = "min_protocol", .type = CONF_STRING,
	  CONF_FIELD(struct conf_tls, min_protocol), .def = "TLSv1.2",
	  .valid = conf_valid_min_protocol },
	{ .name = "ciphers", .type = CONF_STRING,
	  CONF_FIELD(struct conf_tls, ciphers), .def = "",
	  .valid = conf_valid_printable },
	{ .name = "ciphersuites", .type = CONF_STRING,
	  CONF_FIELD(struct conf_tls, ciphersuites), .def = "",
	  .valid = conf_valid_printable },
	{ .name = "groups", .type = CONF_STRING,
	  CONF_FIELD(struct conf_tls, groups), .def = "",
	  .valid = conf_valid_printable },
	{ .name = "client_ca_file", .type = CONF_STRING,
	  CONF_FIELD(struct conf_tls, client_ca_file), .def = "",
	  .valid = conf_valid_path },
	{ .name = "verify_client", .type = CONF_ENUM,
	  CONF_FIELD(struct conf_tls, verify_client), .def = "none",
	  .arg = conf_verify_client_names },
	{ .name = "session_tickets", .type = CONF_BOOL,
	  CONF_FIELD(struct conf_tls, session_tickets), .def = "true" },
	{ .name = "handshake_timeout", .type = CONF_UINT,
	  CONF_FIELD(struct conf_tls, handshake_timeout), .def = "30",
	  .min = 1, .max = 3600 },
	{ .name = NULL },
};

static const struct conf_section conf_tls_section = {
	conf_tls_keys, conf_check_tls,
};

static const struct conf_key conf_sasl_keys[] = {
	{ .name = "app_name", .type = CONF_STRING,
	  CONF_FIELD(struct conf_sasl, app_name), .def = "msaproxy",
	  .valid = conf_valid_nonempty_token },
	{ .name = "mechanisms", .type = CONF_STRING,
	  CONF_FIELD(struct conf_sasl, mechanisms),
	  .def = "GSSAPI SCRAM-SHA-256 PLAIN LOGIN",
	  .valid = conf_valid_mechanisms },
	{ .name = "sasldb_path", .type = CONF_STRING,
	  CONF_FIELD(struct conf_sasl, sasldb_path), .def = "",
	  .valid = conf_valid_path },
	{ .name = "plugin_path", .type = CONF_STRING,
	  CONF_FIELD(struct conf_sasl, plugin_path), .def = "",
	  .valid = conf_valid_path },
	{ .name = "keytab", .type = CONF_STRING,
	  CONF_FIELD(struct conf_sasl, keytab), .def = "",
	  .valid = conf_valid_path },
	{ .name = "service", .type = CONF_STRING,
	  CONF_FIELD(struct conf_sasl, service), .def = "smtp",
	  .valid = conf_valid_nonempty_token },
	{ .name = "hostname", .type = CONF_STRING,
	  CONF_FIELD(struct conf_sasl, hostname), .def = "",
	  .valid = conf_valid_domain },
	{ .name = "realm", .type = CONF_STRING,
	  CONF_FIELD(struct conf_sasl, realm), .def = "",
	  .valid = conf_valid_token },
	{ .name = "allow_authzid", .type = CONF_BOOL,
	  CONF_FIELD(struct conf_sasl, allow_authzid), .def = "false" },
	{ .name = "max_failures", .type = CONF_UINT,
	  CONF_FIELD(struct conf_sasl, max_failures), .def = "3",
	  .min = 1, .max = 100 },
	{ .name = "failure_delay_ms", .type = CONF_UINT,
	  CONF_FIELD(struct conf_sasl, failure_delay_ms), .def = "1000",
	  .min = 0, .max = 60000 },
	{ .name = "sender_map", .type = CONF_STRING,
	  CONF_FIELD(struct conf_sasl, sender_map), .def = "",
	  .valid = conf_valid_path },
	{ .name = "sender_domains", .type = CONF_STRING,
	  CONF_FIELD(struct conf_sasl, sender_domains), .def = "",
	  .valid = conf_valid_domain_list },
	{ .name = "received_auth_comment", .type = CONF_BOOL,
	  CONF_FIELD(struct conf_sasl, received_auth_comment), .def = "false" },
	{ .name = "received_tls_comment", .type = CONF_BOOL,
	  CONF_FIELD(struct conf_sasl, received_tls_comment), .def = "false" },
	{ .name = NULL },
};

/* SMTP AUTH is offered only when a sasl section exists: EHLO advertises
 * only what the operator configured. */
static void
conf_check_sasl(struct conf_ctx *ctx, void *obj, const config_setting_t *group,
		const char *path)
{
	struct conf_sasl *sa = obj;

	(void)ctx;
	(void)path;
	sa->enabled = group != NULL;
}

static const struct conf_section conf_sasl_section = {
	conf_sasl_keys, conf_check_sasl,
};

/* burl = { ...; imap_servers = ( { ... } ); } */
static const struct conf_enum conf_imap_tls_names[] = {
	{ "none", CONF_IMAP_TLS_NONE },
	{ "starttls", CONF_IMAP_TLS_STARTTLS },
	{ "implicit", CONF_IMAP_TLS_IMPLICIT },
	{ NULL, 0 },
};

static const struct conf_enum conf_imap_cred_names[] = {
	{ "kerberos", CONF_IMAP_CRED_KERBEROS },
	{ "password", CONF_IMAP_CRED_PASSWORD },
	{ NULL, 0 },
};

static const struct conf_enum conf_imap_mode_names[] = {
	{ "urlauth", CONF_IMAP_MODE_URLAUTH },
	{ "proxy-authorization", CONF_IMAP_MODE_PROXY_AUTH },
	{ NULL, 0 },
};

static const struct conf_enum conf_burl_fetch_tls_names[] = {
	{ "as-client", CONF_BURL_FETCH_TLS_AS_CLIENT },
	{ "always", CONF_BURL_FETCH_TLS_ALWAYS },
	{ "configured", CONF_BURL_FETCH_TLS_CONFIGURED },
	{ NULL, 0 },
};

static int
conf_valid_authority(const char *value, const char **error_r)
{
	const char *colon = strrchr(value, ':');
	char host[256];
	size_t hl = colon != NULL && value[0] != '[' ? (size_t)(colon - value) :
	    strlen(value);

	if (value[0] == '\0' || hl >= sizeof(host)) {
		*error_r = "must be \"host\" or \"host:port\"";
		return -1;
	}
	if (value[0] == '[') {
		/* an IPv6 literal: checked loosely, compared as written */
		if (strchr(value, ']') == NULL) {
			*error_r = "an IPv6 literal needs its ']'";
			return -1;
		}
		return 0;
	}
	memcpy(host, value, hl);
	host[hl] = '\0';
	if (conf_valid_domain(host, error_r) < 0)
		return -1;
	if (colon != NULL) {
		in_port_t port;

		if (conf_parse_port(colon + 1, &port, error_r) < 0)
			return -1;
	}
	return 0;
}

/* One printable character other than '|' (Messaging Server's
 * mapping_paranoia), or "" for none. */
static int
conf_valid_paranoia(const char *value, const char **error_r)
{
	if (value[0] == '\0')
		return 0;
	if (value[1] != '\0' || value[0] == '|' || value[0] <= ' ' ||
	    value[0] >= 0x7f) {
		*error_r = "must be one printable character other than '|'";
		return -1;
	}
	return 0;
}

/* burl.mailhost: "ldap://host[:port][/]" or "ldaps://...".  One server;
 * names are resolved when a worker starts, not here. */
static int
conf_valid_ldap_uri(const char *value, const char **error_r)
{
	char hostport[256];
	const char *p;
	size_t len;

	if (*value == '\0')
		return 0;
	if (strncasecmp(value, "ldap://", 7) == 0)
		p = value + 7;
	else if (strncasecmp(value, "ldaps://", 8) == 0)
		p = value + 8;
	else {
		*error_r = "must start with ldap:// or ldaps://";
		return -1;
	}
	len = strcspn(p, "/");
	if (len == 0 || len >= sizeof(hostport)) {
		*error_r = "needs a host: ldap://host[:port]";
		return -1;
	}
	if (p[len] == '/' && p[len + 1] != '\0') {
		*error_r = "a DN, attributes or filter in the URI are not "
		    "supported (use ldap_base, ldap_attribute, ldap_filter)";
		return -1;
	}
	memcpy(hostport, p, len);
	hostport[len] = '\0';
	return conf_valid_authority(hostport, error_r);
}

/* An RFC 4515 filter template: parenthesized, balanced, printable; '%' only
 * in "%u" (the user, escaped when substituted) and "%%". */
static int
conf_valid_ldap_filter(const char *value, const char **error_r)
{
	const char *p;
	int depth = 0, has_u = 0;

	if (value[0] != '(') {
		*error_r = "must be a parenthesized filter such as \"(uid=%u)\"";
		return -1;
	}
	for (p = value; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			*error_r = "control characters are not allowed";
			return -1;
		}
		if (*p == '%') {
			if (p[1] == 'u')
				has_u = 1;
			else if (p[1] != '%') {
				*error_r = "'%' must be followed by 'u' (the user) "
				    "or '%'";
				return -1;
			}
			p++;
		} else if (*p == '(') {
			depth++;
		} else if (*p == ')') {
			if (--depth < 0)
				break;
			if (depth == 0 && p[1] != '\0')
				break;
		}
	}
	if (depth != 0 || *p != '\0') {
		*error_r = "unbalanced parentheses";
		return -1;
	}
	if (!has_u) {
		*error_r = "must contain %u (the user)";
		return -1;
	}
	return 0;
}

/* An attribute description (RFC 4512 1.4): a name or a numeric OID. */
static int
conf_valid_ldap_attribute(const char *value, const char **error_r)
{
	const char *p;
	int oid = isdigit((unsigned char)value[0]);

	if (!isalpha((unsigned char)value[0]) && !oid) {
		*error_r = "not an attribute name";
		return -1;
	}
	for (p = value; *p != '\0'; p++) {
		if (oid ? !isdigit((unsigned char)*p) && *p != '.' :
		    !isalnum((unsigned char)*p) && *p != '-') {
			*error_r = "not an attribute name (letters, digits, "
			    "'-'; or a numeric OID)";
			return -1;
		}
	}
	return 0;
}

static void conf_check_mailhost(struct conf_ctx *, void *,
				const config_setting_t *, const char *);

static const struct conf_key conf_mailhost_keys[] = {
	{ .name = "map_file", .type = CONF_STRING,
	  CONF_FIELD(struct conf_mailhost, map_file), .def = "",
	  .valid = conf_valid_path },
	{ .name = "ldap_uri", .type = CONF_STRING,
	  CONF_FIELD(struct conf_mailhost, ldap_uri), .def = "",
	  .valid = conf_valid_ldap_uri },
	{ .name = "ldap_base", .type = CONF_STRING,
	  CONF_FIELD(struct conf_mailhost, ldap_base), .def = "",
	  .valid = conf_valid_path },
	{ .name = "ldap_filter", .type = CONF_STRING,
	  CONF_FIELD(struct conf_mailhost, ldap_filter), .def = "(uid=%u)",
	  .valid = conf_valid_ldap_filter },
	{ .name = "ldap_attribute", .type = CONF_STRING,
	  CONF_FIELD(struct conf_mailhost, ldap_attribute), .def = "mailHost",
	  .valid = conf_valid_ldap_attribute },
	{ .name = "ldap_bind_dn", .type = CONF_STRING,
	  CONF_FIELD(struct conf_mailhost, ldap_bind_dn), .def = "",
	  .valid = conf_valid_path },
	{ .name = "ldap_bind_password_file", .type = CONF_STRING,
	  CONF_FIELD(struct conf_mailhost, ldap_bind_password_file), .def = "",
	  .valid = conf_valid_path },
	{ .name = "ldap_starttls", .type = CONF_BOOL,
	  CONF_FIELD(struct conf_mailhost, ldap_starttls), .def = "false" },
	{ .name = "ldap_ca_file", .type = CONF_STRING,
	  CONF_FIELD(struct conf_mailhost, ldap_ca_file), .def = "",
	  .valid = conf_valid_path },
	{ .name = "cache_ttl", .type = CONF_UINT,
	  CONF_FIELD(struct conf_mailhost, cache_ttl), .def = "300",
	  .min = 0, .max = 86400 },
	{ .name = "negative_ttl", .type = CONF_UINT,
	  CONF_FIELD(struct conf_mailhost, negative_ttl), .def = "60",
	  .min = 0, .max = 86400 },
	{ .name = "cache_size", .type = CONF_UINT,
	  CONF_FIELD(struct conf_mailhost, cache_size), .def = "10000",
	  .min = 0, .max = 1000000 },
	{ .name = "timeout", .type = CONF_UINT,
	  CONF_FIELD(struct conf_mailhost, timeout), .def = "5",
	  .min = 1, .max = 300 },
	{ .name = NULL },
};

static const struct conf_section conf_mailhost_section = {
	conf_mailhost_keys, conf_check_mailhost,
};

static void conf_check_imap_server(struct conf_ctx *, void *,
				   const config_setting_t *, const char *);
static void conf_check_burl(struct conf_ctx *, void *,
			    const config_setting_t *, const char *);

static const struct conf_key conf_imap_server_keys[] = {
	{ .name = "name", .type = CONF_STRING,
	  CONF_FIELD(struct conf_imap_server, name), .valid = conf_valid_name,
	  .flags = CONF_REQUIRED },
	{ .name = "authority", .type = CONF_STRING,
	  CONF_FIELD(struct conf_imap_server, authority),
	  .valid = conf_valid_authority, .flags = CONF_REQUIRED },
	{ .name = "address", .type = CONF_ADDR,
	  CONF_FIELD(struct conf_imap_server, addr), .flags = CONF_REQUIRED },
	{ .name = "tls", .type = CONF_ENUM,
	  CONF_FIELD(struct conf_imap_server, tls), .def = "starttls",
	  .arg = conf_imap_tls_names },
	{ .name = "tls_ca_file", .type = CONF_STRING,
	  CONF_FIELD(struct conf_imap_server, tls_ca_file), .def = "",
	  .valid = conf_valid_path },
	{ .name = "tls_verify_name", .type = CONF_STRING,
	  CONF_FIELD(struct conf_imap_server, tls_verify_name), .def = "",
	  .valid = conf_valid_domain },
	{ .name = "credentials", .type = CONF_ENUM,
	  CONF_FIELD(struct conf_imap_server, credentials), .def = "kerberos",
	  .arg = conf_imap_cred_names },
	{ .name = "principal", .type = CONF_STRING,
	  CONF_FIELD(struct conf_imap_server, principal), .def = "",
	  .valid = conf_valid_token },
	{ .name = "keytab", .type = CONF_STRING,
	  CONF_FIELD(struct conf_imap_server, keytab), .def = "",
	  .valid = conf_valid_path },
	{ .name = "service_host", .type = CONF_STRING,
	  CONF_FIELD(struct conf_imap_server, service_host), .def = "",
	  .valid = conf_valid_domain },
	{ .name = "user", .type = CONF_STRING,
	  CONF_FIELD(struct conf_imap_server, user), .def = "",
	  .valid = conf_valid_token },
	{ .name = "password_file", .type = CONF_STRING,
	  CONF_FIELD(struct conf_imap_server, password_file), .def = "",
	  .valid = conf_valid_path },
	{ .name = "mode", .type = CONF_ENUM,
	  CONF_FIELD(struct conf_imap_server, mode), .def = "urlauth",
	  .arg = conf_imap_mode_names },
	{ .name = "max_idle_connections", .type = CONF_UINT,
	  CONF_FIELD(struct conf_imap_server, max_idle_connections), .def = "64",
	  .min = 0, .max = 1000 },
	{ .name = "max_connections", .type = CONF_UINT,
	  CONF_FIELD(struct conf_imap_server, max_connections), .def = "64",
	  .min = 1, .max = 10000 },
	{ .name = NULL },
};

static const struct conf_section conf_imap_server_section = {
	conf_imap_server_keys, conf_check_imap_server,
};

static const struct conf_list conf_imap_servers_list = {
	&conf_imap_server_section, sizeof(struct conf_imap_server),
	offsetof(struct conf_burl, server_count), CONF_MAX_IMAP_SERVERS,
};

static const struct conf_key conf_burl_keys[] = {
	{ .name = "require_auth", .type = CONF_BOOL,
	  CONF_FIELD(struct conf_burl, require_auth), .def = "true" },
	{ .name = "require_tls", .type = CONF_BOOL,
	  CONF_FIELD(struct conf_burl, require_tls), .def = "false" },
	{ .name = "fetch_tls", .type = CONF_ENUM,
	  CONF_FIELD(struct conf_burl, fetch_tls), .def = "as-client",
	  .arg = conf_burl_fetch_tls_names },
	{ .name = "local_domains", .type = CONF_STRING,
	  CONF_FIELD(struct conf_burl, local_domains), .def = "",
	  .valid = conf_valid_domain_list },
	{ .name = "connect_timeout", .type = CONF_UINT,
	  CONF_FIELD(struct conf_burl, connect_timeout), .def = "30",
	  .min = 1, .max = 3600 },
	{ .name = "fetch_timeout", .type = CONF_UINT,
	  CONF_FIELD(struct conf_burl, fetch_timeout), .def = "60",
	  .min = 1, .max = 3600 },
	{ .name = "fetch_deadline", .type = CONF_UINT,
	  CONF_FIELD(struct conf_burl, fetch_deadline), .def = "600",
	  .min = 1, .max = 86400 },
	{ .name = "idle_timeout", .type = CONF_UINT,
	  CONF_FIELD(struct conf_burl, idle_timeout), .def = "300",
	  .min = 1, .max = 86400 },
	{ .name = "max_bad_burl", .type = CONF_UINT,
	  CONF_FIELD(struct conf_burl, max_bad_burl), .def = "10",
	  .min = 1, .max = 1000 },
	{ .name = "access_file", .type = CONF_STRING,
	  CONF_FIELD(struct conf_burl, access_file), .def = "",
	  .valid = conf_valid_path },
	{ .name = "access_table", .type = CONF_STRING,
	  CONF_FIELD(struct conf_burl, access_table), .def = "BURL_ACCESS",
	  .valid = conf_valid_nonempty_token },
	{ .name = "access_paranoia", .type = CONF_STRING,
	  CONF_FIELD(struct conf_burl, access_paranoia), .def = "",
	  .valid = conf_valid_paranoia },
	{ .name = "access_domain", .type = CONF_STRING,
	  CONF_FIELD(struct conf_burl, access_domain), .def = "",
	  .valid = conf_valid_domain },
	{ .name = "imap_servers", .type = CONF_GROUP_LIST,
	  CONF_FIELD(struct conf_burl, servers), .arg = &conf_imap_servers_list },
	{ .name = "mailhost", .type = CONF_GROUP,
	  CONF_FIELD(struct conf_burl, mailhost),
	  .arg = &conf_mailhost_section },
	{ .name = NULL },
};

static const struct conf_section conf_burl_section = {
	conf_burl_keys, conf_check_burl,
};

/* etrn = { listeners = [ ... ]; allow_wildcard_tld = false;
 *         rules = ( { identity = "..."; networks = [ ... ];
 *                     allow = [ ... ]; }, ... ); } */
static const struct conf_key conf_etrn_rule_keys[] = {
	{ .name = "identity", .type = CONF_STRING,
	  CONF_FIELD(struct conf_etrn_rule, identity), .def = "",
	  .valid = conf_valid_token },
	{ .name = "networks", .type = CONF_CIDR_LIST,
	  CONF_FIELD(struct conf_etrn_rule, networks),
	  .arg = &(const struct conf_array){
		  offsetof(struct conf_etrn_rule, network_count),
		  CONF_MAX_ETRN_NETWORKS } },
	{ .name = "allow", .type = CONF_STRING_LIST,
	  CONF_FIELD(struct conf_etrn_rule, allow),
	  .arg = &(const struct conf_strings){
		  offsetof(struct conf_etrn_rule, allow_count),
		  CONF_MAX_ETRN_ALLOW, CONF_ETRN_NODE_SIZE },
	  .valid = conf_valid_etrn_node, .flags = CONF_REQUIRED },
	{ .name = NULL },
};

static const struct conf_section conf_etrn_rule_section = {
	conf_etrn_rule_keys, conf_check_etrn_rule,
};

static const struct conf_list conf_etrn_rules_list = {
	&conf_etrn_rule_section, sizeof(struct conf_etrn_rule),
	offsetof(struct conf_etrn, rule_count), CONF_MAX_ETRN_RULES,
};

static const struct conf_key conf_etrn_keys[] = {
	{ .name = "listeners", .type = CONF_STRING_LIST,
	  CONF_FIELD(struct conf_etrn, listeners),
	  .arg = &(const struct conf_strings){
		  offsetof(struct conf_etrn, listener_count),
		  CONF_MAX_LISTENERS,
		  sizeof(((struct conf_etrn *)0)->listeners[0]) },
	  .valid = conf_valid_name },
	{ .name = "allow_wildcard_tld", .type = CONF_BOOL,
	  CONF_FIELD(struct conf_etrn, allow_wildcard_tld), .def = "false" },
	{ .name = "rules", .type = CONF_GROUP_LIST,
	  CONF_FIELD(struct conf_etrn, rules), .arg = &conf_etrn_rules_list },
	{ .name = NULL },
};

static const struct conf_section conf_etrn_section = {
	conf_etrn_keys, conf_check_etrn,
};

static const struct conf_key conf_audit_keys[] = {
	{ .name = "enabled", .type = CONF_BOOL,
	  CONF_FIELD(struct conf_audit, enabled), .def = "false" },
	{ .name = "file", .type = CONF_STRING,
	  CONF_FIELD(struct conf_audit, file),
	  .def = "/var/log/msaproxy/audit.log", .valid = conf_valid_path },
	{ .name = "fsync", .type = CONF_BOOL,
	  CONF_FIELD(struct conf_audit, fsync), .def = "true" },
	{ .name = "verdict_fsync", .type = CONF_BOOL,
	  CONF_FIELD(struct conf_audit, verdict_fsync), .def = "false" },
	{ .name = "pending_sync", .type = CONF_ENUM,
	  CONF_FIELD(struct conf_audit, pending_sync), .def = "before_backend",
	  .arg = conf_audit_pending_sync_names },
	{ .name = "hmac_key_file", .type = CONF_STRING,
	  CONF_FIELD(struct conf_audit, hmac_key_file), .def = "",
	  .valid = conf_valid_path },
	{ .name = "user", .type = CONF_STRING,
	  CONF_FIELD(struct conf_audit, user), .def = "",
	  .valid = conf_valid_token },
	{ .name = "group", .type = CONF_STRING,
	  CONF_FIELD(struct conf_audit, group), .def = "",
	  .valid = conf_valid_token },
	/* 0, or at least 4K (checked by conf_check_audit) */
	{ .name = "rotate_size", .type = CONF_SIZE,
	  CONF_FIELD(struct conf_audit, rotate_size), .def = "100M",
	  .min = 0, .max = TiB },
	{ .name = "rotate_interval", .type = CONF_UINT,
	  CONF_FIELD(struct conf_audit, rotate_interval), .def = "86400",
	  .min = 0, .max = 31 * 86400 },
	{ .name = "syslog", .type = CONF_BOOL,
	  CONF_FIELD(struct conf_audit, syslog), .def = "false" },
	{ .name = "syslog_address", .type = CONF_ADDR,
	  CONF_FIELD(struct conf_audit, syslog_address), .def = "/dev/log" },
	{ .name = "timeout", .type = CONF_UINT,
	  CONF_FIELD(struct conf_audit, timeout), .def = "30",
	  .min = 1, .max = 3600 },
	/* below the workers: see audit_writer_main() */
	{ .name = "writer_nice", .type = CONF_UINT,
	  CONF_FIELD(struct conf_audit, writer_nice), .def = "10",
	  .min = 0, .max = 19 },
	{ .name = NULL },
};

/* A log file must be named absolutely (the daemon runs from "/"); a key
 * file, when named, readable now (before privileges are dropped, which is
 * when it is read). */
static void
conf_check_audit(struct conf_ctx *ctx, void *obj,
		 const config_setting_t *group, const char *path)
{
	struct conf_audit *a = obj;

	if (a->enabled && a->file[0] != '/')
		conf_error(ctx, conf_member_or(group, "file"), "'%sfile' must "
			   "be an absolute path", path);
	if (a->rotate_size != 0 && a->rotate_size < 4 * KiB)
		conf_error(ctx, conf_member_or(group, "rotate_size"),
			   "'%srotate_size' must be 0 (no size rotation) or at "
			   "least 4K", path);
	if (a->enabled)
		conf_check_readable(ctx, group, path, "hmac_key_file",
				    a->hmac_key_file);
}

static const struct conf_section conf_audit_section = {
	conf_audit_keys, conf_check_audit,
};

/* rate_limits = { messages_per_identity = { max = 100; window = 3600; };
 *                 ...; redis = { address = "127.0.0.1:6379"; }; } */
static const struct conf_enum conf_limit_fail_names[] = {
	{ "open", CONF_LIMIT_FAIL_OPEN },
	{ "closed", CONF_LIMIT_FAIL_CLOSED },
	{ NULL, 0 },
};

/* Counts and byte totals alike: a size ("1G") or a number. */
#define CONF_LIMIT_MAX_VALUE (UINT64_C(1) << 50)

/* One key table per limit: each has its own defaults. */
#define CONF_RATE_LIMIT_KEYS(var, max_def, window_def) \
static const struct conf_key var##_keys[] = { \
	{ .name = "max", .type = CONF_SIZE, \
	  CONF_FIELD(struct conf_rate_limit, max), .def = max_def, \
	  .min = 0, .max = CONF_LIMIT_MAX_VALUE }, \
	{ .name = "window", .type = CONF_UINT, \
	  CONF_FIELD(struct conf_rate_limit, window), .def = window_def, \
	  .min = 1, .max = 30 * 86400 }, \
	{ .name = "on_redis_error", .type = CONF_ENUM, \
	  CONF_FIELD(struct conf_rate_limit, on_redis_error), .def = "open", \
	  .arg = conf_limit_fail_names }, \
	{ .name = NULL }, \
}; \
static const struct conf_section var##_section = { var##_keys, NULL }

/* A concurrency cap has no window. */
#define CONF_CONCURRENCY_LIMIT_KEYS(var, max_def) \
static const struct conf_key var##_keys[] = { \
	{ .name = "max", .type = CONF_UINT, \
	  CONF_FIELD(struct conf_rate_limit, max), .def = max_def, \
	  .min = 0, .max = 1000000 }, \
	{ .name = "on_redis_error", .type = CONF_ENUM, \
	  CONF_FIELD(struct conf_rate_limit, on_redis_error), .def = "open", \
	  .arg = conf_limit_fail_names }, \
	{ .name = NULL }, \
}; \
static const struct conf_section var##_section = { var##_keys, NULL }

/* Defaults: off (0) but for url_reuse, which RFC 4468 section 8 asks of
 * every BURL server; the right volumes depend on the site (docs/LIMITS.md). */
CONF_RATE_LIMIT_KEYS(conf_rl_messages, "0", "3600");
CONF_RATE_LIMIT_KEYS(conf_rl_recipients, "0", "3600");
CONF_RATE_LIMIT_KEYS(conf_rl_bytes, "0", "3600");
CONF_CONCURRENCY_LIMIT_KEYS(conf_rl_sessions, "0");
CONF_RATE_LIMIT_KEYS(conf_rl_auth_identity, "0", "900");
CONF_RATE_LIMIT_KEYS(conf_rl_auth_address, "0", "900");
CONF_RATE_LIMIT_KEYS(conf_rl_burl_fetches, "0", "3600");
CONF_RATE_LIMIT_KEYS(conf_rl_burl_bytes, "0", "3600");
CONF_CONCURRENCY_LIMIT_KEYS(conf_rl_connections, "0");
CONF_RATE_LIMIT_KEYS(conf_rl_connection_rate, "0", "60");
CONF_RATE_LIMIT_KEYS(conf_rl_url_reuse, "5", "86400");

static void conf_check_redis(struct conf_ctx *, void *,
			     const config_setting_t *, const char *);
static void conf_check_rate_limits(struct conf_ctx *, void *,
				   const config_setting_t *, const char *);

static const struct conf_key conf_redis_keys[] = {
	/* Required when the group exists: conf_check_redis(). */
	{ .name = "address", .type = CONF_ADDR,
	  CONF_FIELD(struct conf_redis, addr) },
	{ .name = "prefix", .type = CONF_STRING,
	  CONF_FIELD(struct conf_redis, prefix), .def = "msaproxy:",
	  .valid = conf_valid_token },
	{ .name = "user", .type = CONF_STRING,
	  CONF_FIELD(struct conf_redis, user), .def = "",
	  .valid = conf_valid_token },
	{ .name = "password_file", .type = CONF_STRING,
	  CONF_FIELD(struct conf_redis, password_file), .def = "",
	  .valid = conf_valid_path },
	{ .name = "connect_timeout_ms", .type = CONF_UINT,
	  CONF_FIELD(struct conf_redis, connect_timeout_ms), .def = "500",
	  .min = 10, .max = 60000 },
	{ .name = "command_timeout_ms", .type = CONF_UINT,
	  CONF_FIELD(struct conf_redis, command_timeout_ms), .def = "250",
	  .min = 10, .max = 60000 },
	{ .name = "retry_interval_ms", .type = CONF_UINT,
	  CONF_FIELD(struct conf_redis, retry_interval_ms), .def = "1000",
	  .min = 10, .max = 600000 },
	{ .name = "lease", .type = CONF_UINT,
	  CONF_FIELD(struct conf_redis, lease), .def = "300",
	  .min = 10, .max = 86400 },
	{ .name = NULL },
};

static const struct conf_section conf_redis_section = {
	conf_redis_keys, conf_check_redis,
};

#define CONF_RATE_LIMIT_ROW(key, id, var) \
	{ .name = key, .type = CONF_GROUP, \
	  CONF_FIELD(struct conf_rate_limits, limit[id]), \
	  .arg = &var##_section }

static const struct conf_key conf_rate_limits_keys[] = {
	CONF_RATE_LIMIT_ROW("messages_per_identity", CONF_LIMIT_MESSAGES,
	    conf_rl_messages),
	CONF_RATE_LIMIT_ROW("recipients_per_identity", CONF_LIMIT_RECIPIENTS,
	    conf_rl_recipients),
	CONF_RATE_LIMIT_ROW("bytes_per_identity", CONF_LIMIT_BYTES,
	    conf_rl_bytes),
	CONF_RATE_LIMIT_ROW("sessions_per_identity", CONF_LIMIT_SESSIONS,
	    conf_rl_sessions),
	CONF_RATE_LIMIT_ROW("auth_failures_per_identity",
	    CONF_LIMIT_AUTH_IDENTITY, conf_rl_auth_identity),
	CONF_RATE_LIMIT_ROW("auth_failures_per_address",
	    CONF_LIMIT_AUTH_ADDRESS, conf_rl_auth_address),
	CONF_RATE_LIMIT_ROW("burl_fetches_per_identity",
	    CONF_LIMIT_BURL_FETCHES, conf_rl_burl_fetches),
	CONF_RATE_LIMIT_ROW("burl_bytes_per_identity", CONF_LIMIT_BURL_BYTES,
	    conf_rl_burl_bytes),
	CONF_RATE_LIMIT_ROW("connections_per_address", CONF_LIMIT_CONNECTIONS,
	    conf_rl_connections),
	CONF_RATE_LIMIT_ROW("connection_rate_per_address",
	    CONF_LIMIT_CONNECTION_RATE, conf_rl_connection_rate),
	CONF_RATE_LIMIT_ROW("url_reuse", CONF_LIMIT_URL_REUSE,
	    conf_rl_url_reuse),
	{ .name = "max_keys", .type = CONF_UINT,
	  CONF_FIELD(struct conf_rate_limits, max_keys), .def = "10000",
	  .min = 16, .max = 10000000 },
	{ .name = "ipv6_prefix", .type = CONF_UINT,
	  CONF_FIELD(struct conf_rate_limits, ipv6_prefix), .def = "64",
	  .min = 16, .max = 128 },
	{ .name = "url_key_file", .type = CONF_STRING,
	  CONF_FIELD(struct conf_rate_limits, url_key_file), .def = "",
	  .valid = conf_valid_path },
	{ .name = "redis", .type = CONF_GROUP,
	  CONF_FIELD(struct conf_rate_limits, redis),
	  .arg = &conf_redis_section },
	{ .name = NULL },
};

static const struct conf_section conf_rate_limits_section = {
	conf_rate_limits_keys, conf_check_rate_limits,
};

static const struct conf_list conf_listeners_list = {
	&conf_listener_section, sizeof(struct conf_listener),
	offsetof(struct conf, listener_count), CONF_MAX_LISTENERS,
};

static const struct conf_key conf_top_keys[] = {
	{ .name = "server_name", .type = CONF_STRING,
	  CONF_FIELD(struct conf, server_name), .def = "",
	  .valid = conf_valid_domain },
	{ .name = "workers", .type = CONF_UINT,
	  CONF_FIELD(struct conf, workers), .def = "0", .min = 0, .max = 256 },
	{ .name = "user", .type = CONF_STRING,
	  CONF_FIELD(struct conf, user), .def = "", .valid = conf_valid_token },
	{ .name = "group", .type = CONF_STRING,
	  CONF_FIELD(struct conf, group), .def = "",
	  .valid = conf_valid_token },
	{ .name = "pid_file", .type = CONF_STRING,
	  CONF_FIELD(struct conf, pid_file), .def = "",
	  .valid = conf_valid_path },
	{ .name = "chroot", .type = CONF_STRING,
	  CONF_FIELD(struct conf, chroot), .def = "",
	  .valid = conf_valid_path },
	{ .name = "reverse_dns", .type = CONF_BOOL,
	  CONF_FIELD(struct conf, reverse_dns), .def = "false" },
	{ .name = "resolver", .type = CONF_STRING,
	  CONF_FIELD(struct conf, resolver), .def = "" },
	{ .name = "bare_newline", .type = CONF_ENUM,
	  CONF_FIELD(struct conf, bare_newline), .def = "reject",
	  .arg = conf_bare_newline_names },
	{ .name = "log", .type = CONF_GROUP, CONF_FIELD(struct conf, log),
	  .arg = &conf_log_section },
	{ .name = "listeners", .type = CONF_GROUP_LIST,
	  CONF_FIELD(struct conf, listeners), .arg = &conf_listeners_list },
	{ .name = "backend", .type = CONF_GROUP,
	  CONF_FIELD(struct conf, backend), .arg = &conf_backend_section },
	{ .name = "limits", .type = CONF_GROUP,
	  CONF_FIELD(struct conf, limits), .arg = &conf_limits_section },
	{ .name = "timeouts", .type = CONF_GROUP,
	  CONF_FIELD(struct conf, timeouts), .arg = &conf_timeouts_section },
	{ .name = "tls", .type = CONF_GROUP, CONF_FIELD(struct conf, tls),
	  .arg = &conf_tls_section },
	{ .name = "sasl", .type = CONF_GROUP, CONF_FIELD(struct conf, sasl),
	  .arg = &conf_sasl_section },
	{ .name = "burl", .type = CONF_GROUP, CONF_FIELD(struct conf, burl),
	  .arg = &conf_burl_section },
	{ .name = "etrn", .type = CONF_GROUP, CONF_FIELD(struct conf, etrn),
	  .arg = &conf_etrn_section },
	{ .name = "audit", .type = CONF_GROUP, CONF_FIELD(struct conf, audit),
	  .arg = &conf_audit_section },
	{ .name = "rate_limits", .type = CONF_GROUP,
	  CONF_FIELD(struct conf, rate_limits),
	  .arg = &conf_rate_limits_section },
	{ .name = NULL },
};

static const struct conf_section conf_top_section = {
	conf_top_keys, conf_check_top,
};

/* ------------------------------------------------------------------------
 * The table walker
 */

static void conf_read_section(struct conf_ctx *ctx,
			      const struct conf_section *sec, void *obj,
			      const config_setting_t *group, const char *path);

static void
conf_store_uint(void *field, size_t size, uint64_t v)
{
	if (size == sizeof(uint32_t)) {
		uint32_t u = (uint32_t)v;

		memcpy(field, &u, sizeof(u));
	} else {
		assert(size == sizeof(uint64_t));
		memcpy(field, &v, sizeof(v));
	}
}

static void
conf_store_int(void *field, size_t size, int v)
{
	assert(size == sizeof(int));
	memcpy(field, &v, sizeof(v));
}

static const struct conf_enum *
conf_enum_find(const struct conf_enum *names, const char *value)
{
	for (; names->name != NULL; names++) {
		if (strcasecmp(names->name, value) == 0)
			return names;
	}
	return NULL;
}

static void
conf_enum_list(const struct conf_enum *names, char *buf, size_t size)
{
	size_t len = 0;

	buf[0] = '\0';
	for (; names->name != NULL && len < size; names++) {
		len += (size_t)snprintf(buf + len, size - len, "%s\"%s\"",
					len > 0 ? ", " : "", names->name);
	}
}

/* Check v against the key's bounds and store it. */
static void
conf_set_number(struct conf_ctx *ctx, const struct conf_key *key,
		void *field, const config_setting_t *s, const char *path,
		uint64_t v)
{
	char lo[32], hi[32], val[32];

	if (v < key->min || v > key->max) {
		if (key->type == CONF_SIZE)
			conf_error(ctx, s,
				   "'%s%s' = %s is out of range (%s..%s)",
				   path, key->name,
				   conf_fmt_size(v, val, sizeof(val)),
				   conf_fmt_size(key->min, lo, sizeof(lo)),
				   conf_fmt_size(key->max, hi, sizeof(hi)));
		else
			conf_error(ctx, s,
				   "'%s%s' = %" PRIu64 " is out of range "
				   "(%" PRIu64 "..%" PRIu64 ")",
				   path, key->name, v, key->min, key->max);
		return;
	}
	conf_store_uint(field, key->size, v);
}

static void
conf_set_string(struct conf_ctx *ctx, const struct conf_key *key,
		void *field, const config_setting_t *s, const char *path,
		const char *value)
{
	char q[80];
	const char *error;

	if (strlen(value) >= key->size) {
		conf_error(ctx, s,
			   "'%s%s' is too long (at most %zu characters)",
			   path, key->name, key->size - 1);
		return;
	}
	if (key->valid != NULL && key->valid(value, &error) < 0) {
		conf_error(ctx, s, "'%s%s' = \"%s\": %s", path, key->name,
			   conf_quote(value, q, sizeof(q)), error);
		return;
	}
	memcpy(field, value, strlen(value) + 1);
}

static void
conf_set_enum(struct conf_ctx *ctx, const struct conf_key *key, void *field,
	      const config_setting_t *s, const char *path, const char *value)
{
	const struct conf_enum *e = conf_enum_find(key->arg, value);
	char q[80], names[256];

	if (e == NULL) {
		conf_enum_list(key->arg, names, sizeof(names));
		conf_error(ctx, s, "'%s%s' = \"%s\" is not one of %s", path,
			   key->name, conf_quote(value, q, sizeof(q)), names);
		return;
	}
	conf_store_int(field, key->size, e->value);
}

static void
conf_set_addr(struct conf_ctx *ctx, const struct conf_key *key, void *field,
	      const config_setting_t *s, const char *path, const char *value)
{
	struct conf_addr addr;
	const char *error;
	char q[80];

	if (conf_parse_addr(value, &addr, &error) < 0) {
		conf_error(ctx, s, "'%s%s' = \"%s\": %s", path, key->name,
			   conf_quote(value, q, sizeof(q)), error);
		return;
	}
	memcpy(field, &addr, sizeof(addr));
}

/* Give one key its default.  A default that fails its own checks is a bug
 * in the table; it is reported like a bad value, so tests catch it. */
static void
conf_set_default(struct conf_ctx *ctx, const struct conf_key *key, void *obj,
		 const char *path)
{
	void *field = (char *)obj + key->offset;
	const char *error;
	uint64_t v;

	switch (key->type) {
	case CONF_STRING:
		if (key->def != NULL)
			conf_set_string(ctx, key, field, NULL, path, key->def);
		break;
	case CONF_UINT:
	case CONF_SIZE:
		if (key->def == NULL)
			break;
		if (conf_parse_size(key->def, &v, &error) < 0) {
			conf_error(ctx, NULL,
				   "internal error: default of '%s%s': %s",
				   path, key->name, error);
			break;
		}
		conf_set_number(ctx, key, field, NULL, path, v);
		break;
	case CONF_BOOL:
		if (key->flags & CONF_UNSET)
			conf_store_int(field, key->size, -1);
		else if (key->def != NULL)
			conf_store_int(field, key->size,
				       strcmp(key->def, "true") == 0);
		break;
	case CONF_ENUM:
		if (key->def != NULL)
			conf_set_enum(ctx, key, field, NULL, path, key->def);
		break;
	case CONF_ADDR:
		if (key->def != NULL)
			conf_set_addr(ctx, key, field, NULL, path, key->def);
		break;
	case CONF_GROUP: {
		char sub[128];

		snprintf(sub, sizeof(sub), "%s%s.", path, key->name);
		conf_read_section(ctx, key->arg, field, NULL, sub);
		break;
	}
	case CONF_CIDR_LIST:
	case CONF_STRING_LIST:
	case CONF_GROUP_LIST:
		break;		/* empty; calloc did it */
	}
}

static int
conf_expect_type(struct conf_ctx *ctx, const struct conf_key *key,
		 const config_setting_t *s, const char *path, int ok,
		 const char *what)
{
	if (ok)
		return 1;
	conf_error(ctx, s, "'%s%s' must be %s, not %s", path, key->name, what,
		   conf_type_name(config_setting_type(s)));
	return 0;
}

/*
 * An array of strings: check the type and the count, then give each string
 * to `store` (which reports its own problems and returns 1 if it kept the
 * value).  Shared by CIDR lists and string lists.
 */
static void
conf_read_string_array(struct conf_ctx *ctx, const struct conf_key *key,
		       const config_setting_t *s, const char *path,
		       size_t max, const char *example,
		       int (*store)(struct conf_ctx *, const struct conf_key *,
				    void *, const config_setting_t *,
				    const char *, const char *),
		       void *obj)
{
	int i, n;

	if (!conf_expect_type(ctx, key, s, path,
			      config_setting_is_array(s) ||
			      config_setting_is_list(s), example))
		return;
	n = config_setting_length(s);
	if ((size_t)n > max) {
		conf_error(ctx, s,
			   "'%s%s' has %d entries; at most %zu are allowed",
			   path, key->name, n, max);
		n = (int)max;
	}
	for (i = 0; i < n; i++) {
		const config_setting_t *e =
		    config_setting_get_elem(s, (unsigned)i);
		const char *value = config_setting_get_string(e);

		if (value == NULL) {
			conf_error(ctx, e,
				   "'%s%s' entries must be strings, not %s",
				   path, key->name,
				   conf_type_name(config_setting_type(e)));
			continue;
		}
		store(ctx, key, obj, e, path, value);
	}
}

static int
conf_store_cidr(struct conf_ctx *ctx, const struct conf_key *key, void *obj,
		const config_setting_t *e, const char *path, const char *value)
{
	const struct conf_array *arr = key->arg;
	struct conf_cidr *cidrs = (void *)((char *)obj + key->offset);
	size_t *countp = (void *)((char *)obj + arr->count_offset);
	const char *error;
	char q[80];

	if (conf_parse_cidr(value, &cidrs[*countp], &error) < 0) {
		conf_error(ctx, e, "'%s%s' entry \"%s\": %s", path, key->name,
			   conf_quote(value, q, sizeof(q)), error);
		return 0;
	}
	(*countp)++;
	return 1;
}

static void
conf_read_cidrs(struct conf_ctx *ctx, const struct conf_key *key, void *obj,
		const config_setting_t *s, const char *path)
{
	const struct conf_array *arr = key->arg;

	conf_read_string_array(ctx, key, s, path, arr->max,
	    "an array of strings [ \"10.0.0.0/8\", ... ]", conf_store_cidr, obj);
}

static int
conf_store_string(struct conf_ctx *ctx, const struct conf_key *key, void *obj,
		  const config_setting_t *e, const char *path,
		  const char *value)
{
	const struct conf_strings *arr = key->arg;
	char *elems = (char *)obj + key->offset;
	size_t *countp = (void *)((char *)obj + arr->count_offset);
	const char *error;
	char q[80];

	if (strlen(value) >= arr->elem_size) {
		conf_error(ctx, e, "'%s%s' entry \"%s\" is too long (at "
			   "most %zu characters)", path, key->name,
			   conf_quote(value, q, sizeof(q)), arr->elem_size - 1);
		return 0;
	}
	if (key->valid != NULL && key->valid(value, &error) < 0) {
		conf_error(ctx, e, "'%s%s' entry \"%s\": %s", path, key->name,
			   conf_quote(value, q, sizeof(q)), error);
		return 0;
	}
	memcpy(elems + *countp * arr->elem_size, value, strlen(value) + 1);
	(*countp)++;
	return 1;
}

static void
conf_read_strings(struct conf_ctx *ctx, const struct conf_key *key, void *obj,
		  const config_setting_t *s, const char *path)
{
	const struct conf_strings *arr = key->arg;

	conf_read_string_array(ctx, key, s, path, arr->max,
	    "an array of strings [ \"...\", ... ]", conf_store_string, obj);
}

static void
conf_read_group_list(struct conf_ctx *ctx, const struct conf_key *key,
		     void *obj, const config_setting_t *s, const char *path)
{
	const struct conf_list *list = key->arg;
	char *elems = (char *)obj + key->offset;
	size_t *countp = (void *)((char *)obj + list->count_offset);
	char sub[128];
	int i, n;

	if (!conf_expect_type(ctx, key, s, path, config_setting_is_list(s),
			      "a list of groups ( { ... }, { ... } )"))
		return;
	n = config_setting_length(s);
	if ((size_t)n > list->max) {
		conf_error(ctx, s,
			   "'%s%s' has %d entries; at most %zu are allowed",
			   path, key->name, n, list->max);
		n = (int)list->max;
	}
	for (i = 0; i < n; i++) {
		const config_setting_t *e =
		    config_setting_get_elem(s, (unsigned)i);

		snprintf(sub, sizeof(sub), "%s%s[%d].", path, key->name, i);
		if (!config_setting_is_group(e)) {
			conf_error(ctx, e,
				   "'%s%s[%d]' must be a group { }, not %s",
				   path, key->name, i,
				   conf_type_name(config_setting_type(e)));
			continue;
		}
		conf_read_section(ctx, list->elem,
				  elems + *countp * list->elem_size, e, sub);
		(*countp)++;
	}
}

/* Read setting s, known as key, into obj. */
static void
conf_read_key(struct conf_ctx *ctx, const struct conf_key *key, void *obj,
	      const config_setting_t *s, const char *path)
{
	void *field = (char *)obj + key->offset;
	int type = config_setting_type(s);
	const char *error;
	long long ll;
	uint64_t v;

	switch (key->type) {
	case CONF_STRING:
		if (conf_expect_type(ctx, key, s, path,
				     type == CONFIG_TYPE_STRING, "a string"))
			conf_set_string(ctx, key, field, s, path,
					config_setting_get_string(s));
		break;
	case CONF_UINT:
	case CONF_SIZE:
		if (type == CONFIG_TYPE_STRING && key->type == CONF_SIZE) {
			const char *value = config_setting_get_string(s);
			char q[80];

			if (conf_parse_size(value, &v, &error) < 0) {
				conf_error(ctx, s, "'%s%s' = \"%s\": %s", path,
					   key->name,
					   conf_quote(value, q, sizeof(q)),
					   error);
				break;
			}
			conf_set_number(ctx, key, field, s, path, v);
			break;
		}
		if (!conf_expect_type(ctx, key, s, path,
				      type == CONFIG_TYPE_INT ||
				      type == CONFIG_TYPE_INT64,
				      key->type == CONF_SIZE ?
				      "an integer or a size like \"50M\"" :
				      "an integer"))
			break;
		ll = config_setting_get_int64(s);
		if (ll < 0) {
			/* libconfig 1.5 wraps integers above INT_MAX that
			 * lack the L suffix; say so, it is the likely cause. */
			conf_error(ctx, s, "'%s%s' = %lld must not be negative "
				   "(write integers above 2147483647 with an L "
				   "suffix)", path, key->name, ll);
			break;
		}
		conf_set_number(ctx, key, field, s, path, (uint64_t)ll);
		break;
	case CONF_BOOL:
		if (conf_expect_type(ctx, key, s, path,
				     type == CONFIG_TYPE_BOOL,
				     "a boolean (true or false)"))
			conf_store_int(field, key->size,
				       config_setting_get_bool(s));
		break;
	case CONF_ENUM:
		if (conf_expect_type(ctx, key, s, path,
				     type == CONFIG_TYPE_STRING, "a string"))
			conf_set_enum(ctx, key, field, s, path,
				      config_setting_get_string(s));
		break;
	case CONF_ADDR:
		if (conf_expect_type(ctx, key, s, path,
				     type == CONFIG_TYPE_STRING, "a string"))
			conf_set_addr(ctx, key, field, s, path,
				      config_setting_get_string(s));
		break;
	case CONF_CIDR_LIST:
		conf_read_cidrs(ctx, key, obj, s, path);
		break;
	case CONF_STRING_LIST:
		conf_read_strings(ctx, key, obj, s, path);
		break;
	case CONF_GROUP: {
		char sub[128];

		if (!conf_expect_type(ctx, key, s, path,
				      type == CONFIG_TYPE_GROUP, "a group { }"))
			break;
		snprintf(sub, sizeof(sub), "%s%s.", path, key->name);
		conf_read_section(ctx, key->arg, field, s, sub);
		break;
	}
	case CONF_GROUP_LIST:
		conf_read_group_list(ctx, key, obj, s, path);
		break;
	}
}

/* path: "" at the top, else the section's name with a trailing '.'. */
static void
conf_read_section(struct conf_ctx *ctx, const struct conf_section *sec,
		  void *obj, const config_setting_t *group, const char *path)
{
	const struct conf_key *key;
	char secname[128];
	int i, n;

	/* The section's name for messages: path without its final '.'. */
	snprintf(secname, sizeof(secname), "%.*s",
		 (int)(strlen(path) > 0 ? strlen(path) - 1 : 0), path);

	for (key = sec->keys; key->name != NULL; key++) {
		if (group == NULL ||
		    config_setting_get_member(group, key->name) == NULL)
			conf_set_default(ctx, key, obj, path);
	}

	n = group != NULL ? config_setting_length(group) : 0;
	for (i = 0; i < n; i++) {
		const config_setting_t *s =
		    config_setting_get_elem(group, (unsigned)i);
		const char *name = config_setting_name(s);

		for (key = sec->keys; key->name != NULL; key++) {
			if (strcmp(key->name, name) == 0)
				break;
		}
		if (key->name == NULL) {
			if (*path == '\0')
				conf_error(ctx, s,
					   "unknown key '%s' at top level",
					   name);
			else
				conf_error(ctx, s,
					   "unknown key '%s' in section '%s'",
					   name, secname);
			continue;
		}
		conf_read_key(ctx, key, obj, s, path);
	}

	for (key = sec->keys; key->name != NULL; key++) {
		if ((key->flags & CONF_REQUIRED) == 0)
			continue;
		if (group != NULL &&
		    config_setting_get_member(group, key->name) != NULL)
			continue;
		if (*path == '\0')
			conf_error(ctx, group, "missing key '%s'", key->name);
		else if (group == NULL) {
			conf_error(ctx, NULL, "missing section '%s' (it needs "
				   "at least the key '%s')", secname,
				   key->name);
			break;	/* once per section is enough */
		} else
			conf_error(ctx, group,
				   "missing key '%s' in section '%s'",
				   key->name, secname);
	}

	if (sec->check != NULL)
		sec->check(ctx, obj, group, path);
}

/* ------------------------------------------------------------------------
 * Checks across keys
 */

static void
conf_check_log(struct conf_ctx *ctx, void *obj,
	       const config_setting_t *group, const char *path)
{
	struct conf_log *log = obj;

	if (log->dest == LOG_DEST_FILE && log->file[0] == '\0')
		conf_error(ctx, group, "'%sfile' must be set when "
			   "'%sdestination' is \"file\"", path, path);
	if (log->ident[0] == '\0')
		conf_error(ctx, group, "'%sident' must not be empty", path);
}

static void
conf_check_imap_server(struct conf_ctx *ctx, void *obj,
		       const config_setting_t *group, const char *path)
{
	struct conf_imap_server *is = obj;

	if (group != NULL)
		is->line = config_setting_source_line(group);
	if (is->addr.is_unix)
		conf_error(ctx, group, "'%saddress' must be host:port", path);
	if (is->credentials == CONF_IMAP_CRED_KERBEROS && is->keytab[0] == '\0')
		conf_error(ctx, group, "'%scredentials' is \"kerberos\" but "
		    "'%skeytab' (the client keytab) is not set", path, path);
	if (is->credentials == CONF_IMAP_CRED_PASSWORD &&
	    (is->user[0] == '\0' || is->password_file[0] == '\0'))
		conf_error(ctx, group, "'%scredentials' is \"password\" but "
		    "'%suser' or '%spassword_file' is not set", path, path, path);
	/* the pool never holds more than max_connections anyway */
	if (is->max_idle_connections > is->max_connections)
		is->max_idle_connections = is->max_connections;
	if (is->tls_verify_name[0] == '\0' || is->service_host[0] == '\0') {
		/* default: the authority's host */
		char host[256];
		const char *colon = is->authority[0] == '[' ? NULL :
		    strrchr(is->authority, ':');
		size_t hl = colon ? (size_t)(colon - is->authority) :
		    strlen(is->authority);

		if (hl >= sizeof(host))
			hl = sizeof(host) - 1;
		memcpy(host, is->authority, hl);
		host[hl] = '\0';
		if (is->tls_verify_name[0] == '\0')
			snprintf(is->tls_verify_name, sizeof(is->tls_verify_name),
			    "%s", host);
		if (is->service_host[0] == '\0')
			snprintf(is->service_host, sizeof(is->service_host),
			    "%s", host);
	}
}

static void conf_check_readable(struct conf_ctx *, const config_setting_t *,
				const char *, const char *, const char *);

/* burl.mailhost: at least one source; LDAP keys that go together. */
static void
conf_check_mailhost(struct conf_ctx *ctx, void *obj,
		    const config_setting_t *group, const char *path)
{
	struct conf_mailhost *m = obj;

	m->enabled = group != NULL;
	if (group == NULL)
		return;
	if (m->map_file[0] == '\0' && m->ldap_uri[0] == '\0')
		conf_error(ctx, group, "'%.*s' sets neither 'map_file' nor "
		    "'ldap_uri': $M would have no directory",
		    (int)(strlen(path) > 0 ? strlen(path) - 1 : 0), path);
	if (m->ldap_uri[0] != '\0' && m->ldap_base[0] == '\0')
		conf_error(ctx, group, "'%sldap_uri' is set but '%sldap_base' "
		    "is empty", path, path);
	if (m->ldap_starttls && strncasecmp(m->ldap_uri, "ldaps:", 6) == 0)
		conf_error(ctx, group, "'%sldap_starttls' cannot be used with "
		    "an ldaps:// URI (TLS from the start)", path);
	if ((m->ldap_bind_dn[0] == '\0') != (m->ldap_bind_password_file[0] ==
	    '\0'))
		conf_error(ctx, group, "'%sldap_bind_dn' and "
		    "'%sldap_bind_password_file' go together", path, path);
	conf_check_readable(ctx, group, path, "map_file", m->map_file);
	conf_check_readable(ctx, group, path, "ldap_bind_password_file",
	    m->ldap_bind_password_file);
	conf_check_readable(ctx, group, path, "ldap_ca_file", m->ldap_ca_file);
}

/* BURL is offered only when a burl section with servers exists. */
static void
conf_check_burl(struct conf_ctx *ctx, void *obj, const config_setting_t *group,
		const char *path)
{
	struct conf_burl *b = obj;
	size_t i, j;

	b->enabled = group != NULL;
	if (b->access_file[0] != '\0') {
		/* compiled now: every malformed entry is reported here, with
		 * its own FILE:LINE (msaproxy -t) */
		char err[4096];

		b->access = mapping_load(b->access_file, err, sizeof(err));
		if (b->access == NULL) {
			char *line = err, *nl;

			conf_error(ctx, group, "'%saccess_file' cannot be used:",
			    path);
			for (; *line != '\0'; line = nl + 1) {
				nl = strchr(line, '\n');
				if (nl != NULL)
					*nl = '\0';
				if (*line != '\0') {
					conf_append(ctx, "\n");
					conf_append(ctx, line);
					ctx->nerrors++;
				}
				if (nl == NULL)
					break;
			}
		} else if (mapping_table(b->access, b->access_table) == NULL) {
			conf_error(ctx, group, "'%saccess_file' %s has no table "
			    "%s", path, b->access_file, b->access_table);
		}
	}
	if (group != NULL && b->server_count == 0)
		conf_error(ctx, group, "'%simap_servers' lists no server: BURL "
		    "needs at least one trusted IMAP server", path);
	for (i = 0; i < b->server_count; i++)
		for (j = 0; j < i; j++) {
			if (strcasecmp(b->servers[i].authority,
			    b->servers[j].authority) == 0)
				conf_error(ctx, group, "'%simap_servers': "
				    "authority \"%s\" appears twice", path,
				    b->servers[i].authority);
			if (strcmp(b->servers[i].name, b->servers[j].name) == 0)
				conf_error(ctx, group, "'%simap_servers': "
				    "name \"%s\" appears twice", path,
				    b->servers[i].name);
		}
}

static void
conf_check_backend(struct conf_ctx *ctx, void *obj,
		   const config_setting_t *group, const char *path)
{
	struct conf_backend *b = obj;

	/* "verify" without something to verify against would be "may". */
	if (b->tls == BACKEND_TLS_VERIFY && b->tls_ca_file[0] == '\0')
		conf_error(ctx, group, "'%stls' is \"verify\" but '%stls_ca_file' "
			   "is empty", path, path);
	if (b->tls == BACKEND_TLS_VERIFY && b->tls_verify_name[0] == '\0')
		conf_error(ctx, group, "'%stls' is \"verify\" but "
			   "'%stls_verify_name' is empty", path, path);
	if (b->auth_user[0] != '\0' && b->auth_password_file[0] == '\0')
		conf_error(ctx, group, "'%sauth_user' is set but "
			   "'%sauth_password_file' is empty", path, path);
	if (b->auth_password_file[0] != '\0' &&
	    access(b->auth_password_file, R_OK) != 0)
		conf_error(ctx, group, "'%sauth_password_file' %s: %s", path,
			   b->auth_password_file, strerror(errno));
	if (b->tls_ca_file[0] != '\0' && access(b->tls_ca_file, R_OK) != 0)
		conf_error(ctx, group, "'%stls_ca_file' %s: %s", path,
			   b->tls_ca_file, strerror(errno));
}

static const config_setting_t *conf_member_or(const config_setting_t *,
					     const char *);

/* rate_limits.redis: an address when the group exists, and a build that
 * can use it. */
static void
conf_check_redis(struct conf_ctx *ctx, void *obj, const config_setting_t *group,
		 const char *path)
{
	struct conf_redis *r = obj;

	r->enabled = group != NULL;
	if (group == NULL)
		return;
#ifndef HAVE_HIREDIS
	conf_error(ctx, group, "'%.*s': this msaproxy was built without Redis "
	    "support (install libhiredis-dev, then configure --with-redis)",
	    (int)strlen(path) - 1, path);
#endif
	if (config_setting_get_member(group, "address") == NULL)
		conf_error(ctx, group, "missing key 'address' in section '%.*s'",
		    (int)strlen(path) - 1, path);
	if (r->password_file[0] != '\0' && access(r->password_file, R_OK) != 0)
		conf_error(ctx, conf_member_or(group, "password_file"),
		    "'%spassword_file' %s: %s", path, r->password_file,
		    strerror(errno));
	if (r->user[0] != '\0' && r->password_file[0] == '\0')
		conf_error(ctx, conf_member_or(group, "user"), "'%suser' is set "
		    "but '%spassword_file' is empty", path, path);
}

static void
conf_check_rate_limits(struct conf_ctx *ctx, void *obj,
		       const config_setting_t *group, const char *path)
{
	struct conf_rate_limits *rl = obj;

	if (rl->url_key_file[0] != '\0' && access(rl->url_key_file, R_OK) != 0)
		conf_error(ctx, conf_member_or(group, "url_key_file"),
		    "'%surl_key_file' %s: %s", path, rl->url_key_file,
		    strerror(errno));
}

/* The setting name in group, or group itself: where to point a message. */
static const config_setting_t *
conf_member_or(const config_setting_t *group, const char *name)
{
	const config_setting_t *s = NULL;

	if (group != NULL)
		s = config_setting_get_member(group, name);
	return s != NULL ? s : group;
}

/* A file msaproxy will open later: readable now (the check runs as the
 * user msaproxy starts as, normally root, before privileges are dropped). */
static void
conf_check_readable(struct conf_ctx *ctx, const config_setting_t *group,
		    const char *path, const char *name, const char *file)
{
	if (file[0] != '\0' && access(file, R_OK) != 0)
		conf_error(ctx, conf_member_or(group, name), "'%s%s' %s: %s",
			   path, name, file, strerror(errno));
}

/* A list of groups that must not be empty: "( )" is reported here; a
 * missing key by the caller or by CONF_REQUIRED. */
static void
conf_check_nonempty_list(struct conf_ctx *ctx, const config_setting_t *group,
			 const char *path, const char *name)
{
	const config_setting_t *s = group != NULL ?
	    config_setting_get_member(group, name) : NULL;

	if (s != NULL && config_setting_is_list(s) &&
	    config_setting_length(s) == 0)
		conf_error(ctx, s, "'%s%s' must have at least one entry", path,
			   name);
}

/* One { cert = ...; key = ...; }: both files readable.  Not parsed here:
 * the TLS module loads them (and reports what OpenSSL thinks of them). */
static void
conf_check_cert(struct conf_ctx *ctx, void *obj,
		const config_setting_t *group, const char *path)
{
	struct conf_cert *c = obj;

	conf_check_readable(ctx, group, path, "cert", c->cert_file);
	conf_check_readable(ctx, group, path, "key", c->key_file);
}

static void
conf_check_sni(struct conf_ctx *ctx, void *obj,
	       const config_setting_t *group, const char *path)
{
	(void)obj;
	conf_check_nonempty_list(ctx, group, path, "certificates");
}

static void
conf_check_tls(struct conf_ctx *ctx, void *obj,
	       const config_setting_t *group, const char *path)
{
	struct conf_tls *t = obj;
	const config_setting_t *list;
	size_t i, j;
	int e, n;

	/* Canonical spelling for the TLS module's strcmp(). */
	if (strcasecmp(t->min_protocol, "TLSv1.2") == 0)
		memcpy(t->min_protocol, "TLSv1.2", sizeof("TLSv1.2"));
	else if (strcasecmp(t->min_protocol, "TLSv1.3") == 0)
		memcpy(t->min_protocol, "TLSv1.3", sizeof("TLSv1.3"));

	/* No section: TLS is off and the defaults above are unused. */
	t->enabled = group != NULL;
	if (!t->enabled)
		return;

	if (config_setting_get_member(group, "certificates") == NULL)
		conf_error(ctx, group, "missing key 'certificates' in section "
			   "'%.*s'", (int)strlen(path) - 1, path);
	else
		conf_check_nonempty_list(ctx, group, path, "certificates");
	/* sni[0] (name "") is the default set, then the tls.sni entries. */
	t->sni[0].name[0] = '\0';
	t->sni_count++;

	/* The first match wins at handshake time: a second entry with the
	 * same name would never be used. */
	list = config_setting_get_member(group, "sni");
	if (list != NULL && config_setting_is_list(list)) {
		n = config_setting_length(list);
		for (e = 0, i = 1; e < n && i < t->sni_count; e++) {
			const config_setting_t *s =
			    config_setting_get_elem(list, (unsigned)e);

			if (!config_setting_is_group(s))
				continue;
			for (j = 1; j < i; j++) {
				if (t->sni[i].name[0] != '\0' &&
				    strcasecmp(t->sni[i].name,
					       t->sni[j].name) == 0) {
					conf_error(ctx, conf_member_or(s, "name"),
						   "duplicate name '%s' in "
						   "'%ssni'", t->sni[i].name,
						   path);
					break;
				}
			}
			i++;
		}
	}

	if (t->verify_client != 0 && t->client_ca_file[0] == '\0')
		conf_error(ctx, conf_member_or(group, "verify_client"),
			   "'%sverify_client' is \"%s\" but '%sclient_ca_file' "
			   "is empty", path,
			   t->verify_client == 2 ? "require" : "optional", path);
	conf_check_readable(ctx, group, path, "client_ca_file",
			    t->client_ca_file);
}

static void
conf_check_listener(struct conf_ctx *ctx, void *obj,
		    const config_setting_t *group, const char *path)
{
	struct conf_listener *l = obj;

	l->line = group != NULL ? (int)config_setting_source_line(group) : 0;
	/* Trusting a PROXY header from anyone would let any client choose
	 * its own address; with no trusted peer the option is a mistake.
	 * A unix socket is the exception: its file permissions say who may
	 * connect, and every peer on it is trusted to send the header. */
	if (l->proxy_protocol && l->proxy_from_count == 0 && !l->addr.is_unix)
		conf_error(ctx, group, "'%sproxy_protocol' is true but "
			   "'%sproxy_protocol_from' is empty", path, path);
}

/* One ETRN rule: it must say whom it is for and what it allows. */
static void
conf_check_etrn_rule(struct conf_ctx *ctx, void *obj,
		     const config_setting_t *group, const char *path)
{
	struct conf_etrn_rule *r = obj;
	const config_setting_t *allow = group != NULL ?
	    config_setting_get_member(group, "allow") : NULL;

	r->line = group != NULL ? (int)config_setting_source_line(group) : 0;
	const config_setting_t *id = group != NULL ?
	    config_setting_get_member(group, "identity") : NULL;

	/* A rule for every client is "networks = [ "0.0.0.0/0", "::/0" ]":
	 * written out, never by omission. */
	if (group != NULL && id == NULL &&
	    config_setting_get_member(group, "networks") == NULL)
		conf_error(ctx, group, "'%.*s' needs 'identity' or 'networks' "
			   "(whom the rule is for)", (int)strlen(path) - 1,
			   path);
	if (id != NULL && config_setting_get_string(id) != NULL &&
	    *config_setting_get_string(id) == '\0')
		conf_error(ctx, id, "'%sidentity' must not be empty", path);
	if (allow != NULL && (config_setting_is_array(allow) ||
	    config_setting_is_list(allow)) && config_setting_length(allow) == 0)
		conf_error(ctx, allow, "'%sallow' must have at least one entry",
			   path);
	{
		const config_setting_t *nets = group != NULL ?
		    config_setting_get_member(group, "networks") : NULL;

		if (nets != NULL && (config_setting_is_array(nets) ||
		    config_setting_is_list(nets)) &&
		    config_setting_length(nets) == 0)
			conf_error(ctx, nets, "'%snetworks' must have at least "
				   "one entry (leave it out to match any "
				   "address)", path);
	}
}

/* RFC 1985 8: "@com" releases mail for every domain under com; a grant of a
 * single-label @domain needs allow_wildcard_tld.  Walks the settings (not
 * the struct) to point at the offending entry's line. */
static void
conf_check_etrn(struct conf_ctx *ctx, void *obj,
		const config_setting_t *group, const char *path)
{
	struct conf_etrn *et = obj;
	const config_setting_t *rules = group != NULL ?
	    config_setting_get_member(group, "rules") : NULL;
	int e, n, j, m;
	char q[80];

	if (et->allow_wildcard_tld || rules == NULL ||
	    !config_setting_is_list(rules))
		return;
	n = config_setting_length(rules);
	for (e = 0; e < n; e++) {
		const config_setting_t *rule =
		    config_setting_get_elem(rules, (unsigned)e);
		const config_setting_t *allow;

		if (!config_setting_is_group(rule) ||
		    (allow = config_setting_get_member(rule, "allow")) == NULL ||
		    !(config_setting_is_array(allow) ||
		    config_setting_is_list(allow)))
			continue;
		m = config_setting_length(allow);
		for (j = 0; j < m; j++) {
			const config_setting_t *a =
			    config_setting_get_elem(allow, (unsigned)j);
			const char *value = config_setting_get_string(a);
			struct smtp_etrn req;

			if (value == NULL ||
			    smtp_parse_etrn(value, &req) != SMTP_ETRN_OK ||
			    req.kind != SMTP_ETRN_DOMAIN || req.labels != 1)
				continue;
			conf_error(ctx, a, "'%srules[%d].allow' entry \"%s\" "
				   "releases a whole top-level domain (RFC 1985 "
				   "section 8); set '%sallow_wildcard_tld' to "
				   "true to permit it", path, e,
				   conf_quote(value, q, sizeof(q)), path);
		}
	}
}

/* etrn.listeners: names of SMTP listeners, resolved into
 * conf_listener.etrn once every listener is known. */
static void
conf_resolve_etrn(struct conf_ctx *ctx, struct conf *conf,
		  const config_setting_t *root)
{
	const config_setting_t *etrn = config_setting_get_member(root, "etrn");
	const config_setting_t *names = etrn != NULL ?
	    config_setting_get_member(etrn, "listeners") : NULL;
	size_t i, j;
	char q[80];

	for (i = 0; i < conf->etrn.listener_count; i++) {
		const char *name = conf->etrn.listeners[i];
		const config_setting_t *at = names;

		/* the i-th stored name came from the i-th string entry */
		if (names != NULL) {
			int e, k = -1, len = config_setting_length(names);

			for (e = 0; e < len; e++) {
				const config_setting_t *x =
				    config_setting_get_elem(names, (unsigned)e);
				const char *v = config_setting_get_string(x);

				if (v != NULL && strcmp(v, name) == 0) {
					k = e;
					break;
				}
			}
			if (k >= 0)
				at = config_setting_get_elem(names, (unsigned)k);
		}
		for (j = 0; j < conf->listener_count; j++)
			if (strcmp(conf->listeners[j].name, name) == 0)
				break;
		if (j == conf->listener_count) {
			conf_error(ctx, at, "'etrn.listeners' entry \"%s\" is "
				   "not the name of a listener",
				   conf_quote(name, q, sizeof(q)));
			continue;
		}
		if (conf->listeners[j].kind == LISTENER_LMTP) {
			conf_error(ctx, at, "'etrn.listeners' entry \"%s\": "
				   "ETRN is not offered on \"lmtp\" listeners",
				   conf_quote(name, q, sizeof(q)));
			continue;
		}
		conf->listeners[j].etrn = 1;
	}
	/* ETRN is relayed to the backend: an LMTP server has no queue */
	if (conf->etrn.listener_count > 0 &&
	    conf->backend.proto == BACKEND_LMTP)
		conf_error(ctx, names, "'etrn.listeners' is not empty but "
			   "'backend.protocol' is \"lmtp\" (ETRN needs an "
			   "SMTP backend)");
}

/* starttls and require_auth: defaults that depend on the kind and on the
 * tls section, and the rules that tie them together.  s is the listener's
 * group, e its index in the list (as in other messages). */
static void
conf_resolve_listener(struct conf_ctx *ctx, const struct conf *conf,
		      struct conf_listener *l, const config_setting_t *s,
		      int e)
{
	int tls = conf->tls.enabled;

	if (l->kind == LISTENER_SUBMISSIONS) {
		/* RFC 8314: TLS from the first byte; nothing to upgrade. */
		if (!tls)
			conf_error(ctx, conf_member_or(s, "kind"),
				   "'listeners[%d].kind' is \"submissions\" "
				   "(implicit TLS) but there is no 'tls' "
				   "section", e);
		if (l->starttls == 1)
			conf_error(ctx, conf_member_or(s, "starttls"),
				   "'listeners[%d].starttls' must not be true "
				   "on a \"submissions\" listener (TLS starts "
				   "at connect)", e);
		l->starttls = 0;
	} else if (l->starttls == 1 && !tls) {
		conf_error(ctx, conf_member_or(s, "starttls"),
			   "'listeners[%d].starttls' is true but there is no "
			   "'tls' section", e);
	} else if (l->starttls == -1) {
		l->starttls = tls;
	}

	if (l->require_auth == -1)
		l->require_auth = l->kind == LISTENER_SUBMISSION ||
		    l->kind == LISTENER_SUBMISSIONS;
}

static void
conf_check_listeners(struct conf_ctx *ctx, struct conf *conf,
		     const config_setting_t *root)
{
	const config_setting_t *list = config_setting_get_member(root,
								 "listeners");
	size_t i = 0, j;
	char q[80];
	int e, n;

	if (list == NULL) {
		conf_error(ctx, NULL, "no listeners defined (add a 'listeners' "
			   "list)");
		return;
	}
	if (!config_setting_is_list(list))
		return;		/* already reported */
	if (config_setting_length(list) == 0) {
		conf_error(ctx, list, "no listeners defined");
		return;
	}
	/* conf->listeners[i] came from the i-th element that is a group. */
	n = config_setting_length(list);
	for (e = 0; e < n && i < conf->listener_count; e++) {
		const config_setting_t *s =
		    config_setting_get_elem(list, (unsigned)e);
		struct conf_listener *a = &conf->listeners[i];

		if (!config_setting_is_group(s))
			continue;
		i++;
		conf_resolve_listener(ctx, conf, a, s, e);
		/* An empty name or address was reported already. */
		for (j = 0; j < i - 1; j++) {
			const struct conf_listener *b = &conf->listeners[j];

			if (a->name[0] != '\0' && strcmp(a->name, b->name) == 0)
				conf_error(ctx, s, "duplicate listener name "
					   "'%s' (first used at line %d)",
					   a->name, b->line);
			/* With SO_REUSEPORT both binds would succeed and
			 * share the connections: refuse it here. */
			if (a->addr.sslen != 0 &&
			    b->addr.sslen == a->addr.sslen &&
			    memcmp(&a->addr.ss, &b->addr.ss,
				   a->addr.sslen) == 0)
				conf_error(ctx, s, "address \"%s\" is already "
					   "used by the listener at line %d",
					   conf_quote(a->addr.text, q,
						      sizeof(q)), b->line);
		}
	}
}

static void
conf_check_top(struct conf_ctx *ctx, void *obj,
	       const config_setting_t *root, const char *path)
{
	struct conf *conf = obj;
	const char *error;
	char q[80];

	(void)path;

	if (conf->server_name[0] == '\0') {
		char host[256];

		if (gethostname(host, sizeof(host)) < 0) {
			conf_error(ctx, NULL, "'server_name' is not set and "
				   "gethostname() failed: %s", strerror(errno));
		} else {
			host[sizeof(host) - 1] = '\0';
			if (host[0] == '\0' ||
			    conf_valid_domain(host, &error) < 0)
				conf_error(ctx, NULL, "'server_name' is not "
					   "set and the host name \"%s\" is "
					   "not usable; set server_name",
					   conf_quote(host, q, sizeof(q)));
			else
				memcpy(conf->server_name, host,
				       strlen(host) + 1);
		}
	}
	_Static_assert(sizeof(conf->backend.helo_name) >=
		       sizeof(conf->server_name), "helo_name too small");
	if (conf->backend.helo_name[0] == '\0')
		memcpy(conf->backend.helo_name, conf->server_name,
		       sizeof(conf->server_name));
	_Static_assert(sizeof(conf->sasl.hostname) >=
		       sizeof(conf->server_name), "sasl.hostname too small");
	if (conf->sasl.hostname[0] == '\0')
		memcpy(conf->sasl.hostname, conf->server_name,
		       sizeof(conf->server_name));

	conf_check_listeners(ctx, conf, root);
	conf_resolve_etrn(ctx, conf, root);

	/* A command line has to fit in the buffer it is parsed from. */
	if (conf->limits.max_line_length != 0 &&
	    conf->limits.session_buffer != 0 &&
	    conf->limits.max_line_length > conf->limits.session_buffer) {
		const config_setting_t *limits =
		    config_setting_get_member(root, "limits");

		conf_error(ctx, limits, "'limits.max_line_length' (%u) must "
			   "not exceed 'limits.session_buffer' (%zu)",
			   conf->limits.max_line_length,
			   conf->limits.session_buffer);
	}
}

/* ------------------------------------------------------------------------
 * Entry points
 */

struct conf *
conf_load(const char *file, char *errbuf, size_t errbuf_size)
{
	struct conf_ctx ctx;
	struct conf *conf;
	config_t cfg;
	FILE *fp;

	memset(&ctx, 0, sizeof(ctx));
	ctx.file = file;
	ctx.errbuf = errbuf;
	ctx.errbuf_size = errbuf_size;
	if (errbuf != NULL && errbuf_size > 0)
		errbuf[0] = '\0';

	if (strlen(file) >= sizeof(conf->path)) {
		conf_error(&ctx, NULL, "file name too long");
		return NULL;
	}
	/* libconfig says only "file I/O error"; find out why ourselves. */
	if ((fp = fopen(file, "r")) == NULL) {
		conf_error(&ctx, NULL, "%s", strerror(errno));
		return NULL;
	}
	/* A configuration is text of bounded size.  NUL bytes are refused
	 * here: libconfig 1.5's scanner leaks on them (found by fuzzing). */
	{
		char chunk[4096];
		size_t n, total = 0;
		int line = 1, nul_line = 0;

		while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0 && !nul_line) {
			size_t i;

			for (i = 0; i < n; i++) {
				if (chunk[i] == '\n')
					line++;
				else if (chunk[i] == '\0') {
					nul_line = line;
					break;
				}
			}
			total += n;
			if (total > CONF_MAX_FILE_SIZE)
				break;
		}
		fclose(fp);
		if (nul_line) {
			char msg[700];

			snprintf(msg, sizeof(msg), "%.600s:%d: NUL byte in the file",
			    file, nul_line);
			conf_append(&ctx, msg);
			return NULL;
		}
		if (total > CONF_MAX_FILE_SIZE) {
			conf_error(&ctx, NULL, "larger than %d bytes",
			    CONF_MAX_FILE_SIZE);
			return NULL;
		}
	}

	config_init(&cfg);
	if (config_read_file(&cfg, file) != CONFIG_TRUE) {
		const char *efile = config_error_file(&cfg);
		char msg[512];

		if (efile == NULL)
			efile = file;
		if (config_error_line(&cfg) > 0)
			snprintf(msg, sizeof(msg), "%s:%d: %s", efile,
				 config_error_line(&cfg),
				 config_error_text(&cfg));
		else
			snprintf(msg, sizeof(msg), "%s: %s", efile,
				 config_error_text(&cfg));
		conf_append(&ctx, msg);
		config_destroy(&cfg);
		return NULL;
	}

	if ((conf = calloc(1, sizeof(*conf))) == NULL) {
		conf_error(&ctx, NULL, "%s", strerror(errno));
		config_destroy(&cfg);
		return NULL;
	}
	memcpy(conf->path, file, strlen(file) + 1);
	conf_read_section(&ctx, &conf_top_section, conf,
			  config_root_setting(&cfg), "");
	config_destroy(&cfg);

	if (ctx.nerrors > 0) {
		conf_free(&conf);
		return NULL;
	}
	return conf;
}

void
conf_free(struct conf **confp)
{
	if (confp == NULL || *confp == NULL)
		return;
	mapping_free(&(*confp)->burl.access);
	free(*confp);
	*confp = NULL;
}

const char *
conf_limit_name(enum conf_limit_id id)
{
	const struct conf_key *k;
	size_t off = offsetof(struct conf_rate_limits, limit) +
	    (size_t)id * sizeof(struct conf_rate_limit);

	/* the table is the one place the names are written */
	for (k = conf_rate_limits_keys; k->name != NULL; k++)
		if (k->type == CONF_GROUP && k->offset == off)
			return k->name;
	return "unknown";
}

const char *
conf_listener_kind_name(enum listener_kind kind)
{
	const struct conf_enum *e;

	for (e = conf_listener_kind_names; e->name != NULL; e++) {
		if (e->value == (int)kind)
			return e->name;
	}
	return "unknown";
}

/* memcmp of two sections: conf_load() builds a struct conf in zeroed
 * memory and sets members one by one, so padding bytes compare equal. */
#define SECTION_DIFFERS(a, b, member) \
	(memcmp(&(a)->member, &(b)->member, sizeof((a)->member)) != 0)

const char *
conf_restart_setting(const struct conf *run, const struct conf *next,
		     const char *run_sasl_keytab)
{
	static char what[128];
	struct conf_sasl sa, sb;
	size_t i;

	if (run->workers != next->workers)
		return "workers";
	if (strcmp(run->user, next->user) != 0 ||
	    strcmp(run->group, next->group) != 0)
		return "user/group";
	if (strcmp(run->chroot, next->chroot) != 0)
		return "chroot";
	if (strcmp(run->pid_file, next->pid_file) != 0)
		return "pid_file";
	if (run->listener_count != next->listener_count)
		return "listeners (their number)";
	for (i = 0; i < run->listener_count; i++) {
		const struct conf_listener *a = &run->listeners[i];
		const struct conf_listener *b = &next->listeners[i];

		if (strcmp(a->name, b->name) != 0 || a->kind != b->kind ||
		    memcmp(&a->addr, &b->addr, sizeof(a->addr)) != 0) {
			snprintf(what, sizeof(what), "listeners (\"%.64s\": "
			    "name, kind or address)", a->name);
			return what;
		}
	}
	if (run->sasl.enabled != next->sasl.enabled)
		return "sasl";
	if (!run->sasl.enabled)
		goto sasl_done;		/* no AUTH: nothing was set up */
	if (strcmp(run->sasl.hostname, next->sasl.hostname) != 0)
		return "sasl.hostname (its default is server_name)";
	/* the running sasl.keytab names the memory copy (auth/keytab.h) */
	memcpy(&sa, &run->sasl, sizeof(sa));
	memcpy(&sb, &next->sasl, sizeof(sb));
	memset(sa.keytab, 0, sizeof(sa.keytab));
	memset(sb.keytab, 0, sizeof(sb.keytab));
	if (memcmp(&sa, &sb, sizeof(sa)) != 0 ||
	    strcmp(run_sasl_keytab, next->sasl.keytab) != 0)
		return "sasl";
sasl_done:
	if (SECTION_DIFFERS(run, next, audit))
		return "audit";
	if (SECTION_DIFFERS(run, next, rate_limits))
		return "rate_limits";
	if (run->limits.max_connections != next->limits.max_connections)
		return "limits.max_connections";
	return NULL;
}
