/*
 * proxyproto.c - parse the HAProxy PROXY protocol header, v1 and v2.
 *
 * Spec: https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt
 * (section numbers below refer to it).
 *
 * SECURITY: the input is raw bytes from the network, read before any SMTP
 * greeting.  The caller has already checked that the peer is a trusted load
 * balancer, but a header must still never cause a read beyond buf[len), an
 * allocation or an unbounded scan: v1 looks at most PROXYPROTO_V1_MAX_LEN
 * bytes, v2 at most PROXYPROTO_MAX_LEN.  The parser keeps no state between
 * calls; it is called again on the whole buffer when more bytes arrive, which
 * is cheap because a header is at most a few hundred bytes.
 *
 * The result is prefix-consistent: if buf[0..n) gives NEED_MORE, so does every
 * shorter prefix; if it gives OK with length L, every prefix shorter than L
 * gives NEED_MORE and every buffer starting with those L bytes gives OK with
 * length L.  The fuzz target (tests/fuzz/fuzz_proxyproto.c) checks this.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdint.h>
#include <string.h>

#include "proxyproto.h"

/* 2.2: the 12-byte v2 signature; it holds a NUL, so it is not a string. */
static const unsigned char pp2_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};
#define PP2_HDR_LEN	16	/* signature, ver_cmd, fam, 2-byte length */
#define PP2_VERSION	0x2
#define PP2_CMD_LOCAL	0x0
#define PP2_CMD_PROXY	0x1
/* 2.2: the only defined values of the 14th byte (family << 4 | transport). */
#define PP2_FAM_UNSPEC		0x00
#define PP2_FAM_TCP4		0x11
#define PP2_FAM_UDP4		0x12
#define PP2_FAM_TCP6		0x21
#define PP2_FAM_UDP6		0x22
#define PP2_FAM_UNIX_STREAM	0x31
#define PP2_FAM_UNIX_DGRAM	0x32
#define PP2_ADDR_LEN_INET	12	/* 4 + 4 + 2 + 2 */
#define PP2_ADDR_LEN_INET6	36	/* 16 + 16 + 2 + 2 */

/*
 * 2.1: the v1 line without its CRLF is at most 107 - 2 bytes.  Address
 * tokens are bounded by their textual maxima; a token longer than that cannot
 * become valid, so it is rejected before the line ends.
 */
#define PP1_LINE_MAX	(PROXYPROTO_V1_MAX_LEN - 2)
#define PP1_ADDR4_MAX	15	/* 255.255.255.255 */
/* ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 */
#define PP1_ADDR6_MAX	45
#define PP1_PORT_MAX	5	/* 65535 */

/* The fields of a v1 line, in order. */
enum pp1_field {
	PP1_F_SIG,	/* "PROXY" */
	PP1_F_PROTO,	/* "TCP4", "TCP6" or "UNKNOWN" */
	PP1_F_SRC,
	PP1_F_DST,
	PP1_F_SPORT,
	PP1_F_DPORT,
};

enum pp1_proto {
	PP1_P_NONE,
	PP1_P_TCP4,
	PP1_P_TCP6,
	PP1_P_UNKNOWN,
};

static enum proxyproto_result
pp_fail(const char **error_r, const char *error)
{
	if (error_r != NULL)
		*error_r = error;
	return PROXYPROTO_INVALID;
}

static int
pp_isdigit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int
pp_isxdigit(unsigned char c)
{
	return pp_isdigit(c) || (c >= 'a' && c <= 'f') ||
	    (c >= 'A' && c <= 'F');
}

/* Is tok[0..n) a prefix of word (the whole word when complete)? */
static int
pp1_word(const unsigned char *tok, size_t n, const char *word, int complete)
{
	size_t wlen = strlen(word);

	if (n > wlen || (complete && n != wlen))
		return 0;
	return memcmp(tok, word, n) == 0;
}

/*
 * A dotted quad, 2.1: "exactly 4 integers in the range [0..255] inclusive
 * written in decimal representation separated by exactly one dot", and
 * "heading zeroes are not permitted".  inet_pton() is not relied upon for
 * this: some implementations accept octal-looking octets.  With complete == 0,
 * accept any prefix of such an address.
 */
static int
pp1_addr4_ok(const unsigned char *tok, size_t n, int complete)
{
	size_t i, digits = 0, dots = 0;
	unsigned int octet = 0;

	if (n > PP1_ADDR4_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		if (tok[i] == '.') {
			if (digits == 0 || ++dots > 3)
				return 0;
			digits = 0;
			octet = 0;
		} else if (pp_isdigit(tok[i])) {
			if (digits == 1 && octet == 0)
				return 0;	/* leading zero */
			octet = octet * 10 + (tok[i] - '0');
			if (++digits > 3 || octet > 255)
				return 0;
		} else
			return 0;
	}
	if (complete && (dots != 3 || digits == 0))
		return 0;
	return 1;
}

/*
 * The lexical shape of an IPv6 address (RFC 4291 section 2.2): hex groups of
 * at most 4 digits, at most one "::", possibly a dotted quad at the end.  It
 * accepts every prefix of a valid address, so it rejects early a token that
 * can never become one; a complete token must pass inet_pton() as well.
 */
static int
pp1_addr6_prefix_ok(const unsigned char *tok, size_t n)
{
	size_t i, hex = 0, colons = 0;
	int seen_colon = 0, double_colon = 0, in_quad = 0, decimal = 1;

	if (n > PP1_ADDR6_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		if (tok[i] == ':') {
			if (in_quad || ++colons > 2)
				return 0;
			if (colons == 2) {
				if (double_colon)
					return 0;
				double_colon = 1;
			}
			seen_colon = 1;
			hex = 0;
			decimal = 1;
		} else if (tok[i] == '.') {
			/*
			 * An embedded dotted quad comes after at least one
			 * colon; its octets are checked by inet_pton() later.
			 */
			if (!seen_colon || hex == 0 || hex > 3 || !decimal)
				return 0;
			in_quad = 1;
			colons = 0;
			hex = 0;
		} else if (pp_isxdigit(tok[i])) {
			if (!pp_isdigit(tok[i])) {
				if (in_quad)
					return 0;
				decimal = 0;
			}
			if (++hex > (in_quad ? 3 : 4))
				return 0;
			colons = 0;
		} else
			return 0;
	}
	return 1;
}

/* Parse a complete address token of the family the protocol names. */
static int
pp1_addr(const unsigned char *tok, size_t n, enum pp1_proto proto,
    struct sockaddr_storage *ss)
{
	char text[PP1_ADDR6_MAX + 1];
	struct sockaddr_in *sin;
	struct sockaddr_in6 *sin6;

	if (proto == PP1_P_TCP4) {
		if (!pp1_addr4_ok(tok, n, 1))
			return 0;
	} else if (n > PP1_ADDR6_MAX || !pp1_addr6_prefix_ok(tok, n))
		return 0;
	memcpy(text, tok, n);
	text[n] = '\0';

	memset(ss, 0, sizeof(*ss));
	if (proto == PP1_P_TCP4) {
		sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		return inet_pton(AF_INET, text, &sin->sin_addr) == 1;
	}
	sin6 = (struct sockaddr_in6 *)ss;
	sin6->sin6_family = AF_INET6;
	return inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1;
}

/*
 * A port, 2.1: "a decimal integer in the range [0..65535] inclusive", no
 * heading zeroes, so no sign either.  With complete == 0, accept a prefix.
 */
static int
pp1_port(const unsigned char *tok, size_t n, int complete, uint16_t *port_r)
{
	size_t i;
	unsigned long v = 0;

	if (n > PP1_PORT_MAX || (complete && n == 0))
		return 0;
	if (n > 1 && tok[0] == '0')
		return 0;
	for (i = 0; i < n; i++) {
		if (!pp_isdigit(tok[i]))
			return 0;
		v = v * 10 + (tok[i] - '0');
	}
	if (v > 65535)
		return 0;
	*port_r = (uint16_t)v;
	return 1;
}

static void
pp_set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

/*
 * Parse the v1 line line[0..n), without CR LF.  complete says whether the CR
 * has been seen; if not, the last token may still grow, and NEED_MORE is the
 * answer as long as what is there can begin a valid line.
 */
static enum proxyproto_result
pp1_line(const unsigned char *line, size_t n, int complete,
    struct proxyproto_info *pi, const char **error_r)
{
	const unsigned char *p = line, *end = line + n, *tok;
	enum pp1_field field;
	enum pp1_proto proto = PP1_P_NONE;
	uint16_t port;
	size_t toklen;
	int last, ok = 0;

	for (field = PP1_F_SIG; field <= PP1_F_DPORT; field++) {
		tok = p;
		while (p < end && *p != ' ')
			p++;
		toklen = (size_t)(p - tok);
		/* The token reaches the end of what we have: is it whole? */
		last = p == end;
		if (last && !complete) {
			switch (field) {
			case PP1_F_SIG:
				ok = pp1_word(tok, toklen, "PROXY", 0);
				break;
			case PP1_F_PROTO:
				ok = pp1_word(tok, toklen, "TCP4", 0) ||
				    pp1_word(tok, toklen, "TCP6", 0) ||
				    pp1_word(tok, toklen, "UNKNOWN", 0);
				break;
			case PP1_F_SRC:
			case PP1_F_DST:
				ok = proto == PP1_P_TCP4 ?
				    pp1_addr4_ok(tok, toklen, 0) :
				    pp1_addr6_prefix_ok(tok, toklen);
				break;
			case PP1_F_SPORT:
			case PP1_F_DPORT:
				ok = pp1_port(tok, toklen, 0, &port);
				break;
			}
			if (!ok)
				return pp_fail(error_r, field == PP1_F_SIG ?
				    "not a PROXY protocol header" :
				    "v1: malformed field");
			return PROXYPROTO_NEED_MORE;
		}
		/* 2.1: fields are separated by exactly one space. */
		if (toklen == 0)
			return pp_fail(error_r,
			    "v1: empty field or extra space");
		switch (field) {
		case PP1_F_SIG:
			if (!pp1_word(tok, toklen, "PROXY", 1))
				return pp_fail(error_r,
				    "not a PROXY protocol header");
			break;
		case PP1_F_PROTO:
			if (pp1_word(tok, toklen, "TCP4", 1))
				proto = PP1_P_TCP4;
			else if (pp1_word(tok, toklen, "TCP6", 1))
				proto = PP1_P_TCP6;
			else if (pp1_word(tok, toklen, "UNKNOWN", 1)) {
				/*
				 * 2.1: after UNKNOWN "the receiver must ignore
				 * anything presented before the CRLF"; the
				 * connection's own addresses stay in effect.
				 */
				if (!complete)
					return PROXYPROTO_NEED_MORE;
				pi->has_addrs = 0;
				return PROXYPROTO_OK;
			} else
				return pp_fail(error_r,
				    "v1: protocol not TCP4, TCP6 or UNKNOWN");
			break;
		case PP1_F_SRC:
			if (!pp1_addr(tok, toklen, proto, &pi->src))
				return pp_fail(error_r,
				    "v1: bad source address");
			break;
		case PP1_F_DST:
			if (!pp1_addr(tok, toklen, proto, &pi->dst))
				return pp_fail(error_r,
				    "v1: bad destination address");
			break;
		case PP1_F_SPORT:
			if (!pp1_port(tok, toklen, 1, &port))
				return pp_fail(error_r, "v1: bad source port");
			pp_set_port(&pi->src, port);
			break;
		case PP1_F_DPORT:
			if (!pp1_port(tok, toklen, 1, &port))
				return pp_fail(error_r,
				    "v1: bad destination port");
			pp_set_port(&pi->dst, port);
			break;
		}
		if (field == PP1_F_DPORT)
			break;
		if (last)
			return pp_fail(error_r, "v1: header ends too early");
		p++;	/* the single space */
	}
	if (p != end)
		return pp_fail(error_r,
		    "v1: extra data after destination port");
	if (!complete)
		return PROXYPROTO_NEED_MORE;
	pi->has_addrs = 1;
	return PROXYPROTO_OK;
}

/* 2.1: the human-readable header, one line ending in CR LF. */
static enum proxyproto_result
pp1_parse(const unsigned char *buf, size_t len, size_t *len_r,
    struct proxyproto_info *pi, const char **error_r)
{
	enum proxyproto_result res;
	size_t i, scan;

	/* Where is the CR?  A line is at most PP1_LINE_MAX bytes before it. */
	scan = len < PP1_LINE_MAX + 1 ? len : PP1_LINE_MAX + 1;
	for (i = 0; i < scan; i++) {
		if (buf[i] == '\n')
			return pp_fail(error_r, "v1: LF without CR");
		if (buf[i] == '\r')
			break;
	}
	if (i == scan) {
		/* No CR yet: the line so far must be a possible beginning. */
		res = pp1_line(buf, scan, 0, pi, error_r);
		if (res == PROXYPROTO_NEED_MORE && len > PP1_LINE_MAX)
			return pp_fail(error_r,
			    "v1: header longer than 107 bytes");
		return res;
	}

	res = pp1_line(buf, i, 1, pi, error_r);
	if (res != PROXYPROTO_OK)
		return res;
	if (i + 1 == len)
		return PROXYPROTO_NEED_MORE;	/* the LF is yet to come */
	if (buf[i + 1] != '\n')
		return pp_fail(error_r, "v1: CR not followed by LF");
	pi->version = 1;
	*len_r = i + 2;
	return PROXYPROTO_OK;
}

/* 2.2: the binary header. */
static enum proxyproto_result
pp2_parse(const unsigned char *buf, size_t len, size_t *len_r,
    struct proxyproto_info *pi, const char **error_r)
{
	struct sockaddr_in *sin;
	struct sockaddr_in6 *sin6;
	const unsigned char *a;
	size_t total, alen;
	unsigned int cmd, fam;

	if (memcmp(buf, pp2_sig,
	    len < sizeof(pp2_sig) ? len : sizeof(pp2_sig)) != 0)
		return pp_fail(error_r, "not a PROXY protocol header");
	if (len <= sizeof(pp2_sig))
		return PROXYPROTO_NEED_MORE;

	/* 13th byte: "the receiver must only accept" version 2. */
	if ((buf[12] >> 4) != PP2_VERSION)
		return pp_fail(error_r, "v2: unsupported version");
	cmd = buf[12] & 0x0f;
	if (cmd != PP2_CMD_LOCAL && cmd != PP2_CMD_PROXY)
		return pp_fail(error_r, "v2: unknown command");
	if (len < 14)
		return PROXYPROTO_NEED_MORE;

	/* 14th byte: "receivers should drop connections presenting
	 * unexpected values here." */
	fam = buf[13];
	switch (fam) {
	case PP2_FAM_UNSPEC:
	case PP2_FAM_TCP4:
	case PP2_FAM_TCP6:
		break;
	case PP2_FAM_UDP4:
	case PP2_FAM_UDP6:
	case PP2_FAM_UNIX_STREAM:
	case PP2_FAM_UNIX_DGRAM:
		/*
		 * LOCAL: "the receiver must ... discard the protocol block
		 * including the family which is ignored".  PROXY: we relay
		 * SMTP over TCP and need an IP address for the client.
		 */
		if (cmd == PP2_CMD_LOCAL)
			break;
		return pp_fail(error_r,
		    "v2: PROXY for a family other than TCP over IPv4/IPv6");
	default:
		return pp_fail(error_r, "v2: bad address family or transport");
	}
	if (len < PP2_HDR_LEN)
		return PROXYPROTO_NEED_MORE;

	alen = (size_t)buf[14] << 8 | buf[15];	/* network byte order */
	total = PP2_HDR_LEN + alen;
	if (total > PROXYPROTO_MAX_LEN)
		return pp_fail(error_r, "v2: header longer than the limit");
	if (cmd == PP2_CMD_PROXY) {
		if ((fam == PP2_FAM_TCP4 && alen < PP2_ADDR_LEN_INET) ||
		    (fam == PP2_FAM_TCP6 && alen < PP2_ADDR_LEN_INET6))
			return pp_fail(error_r,
			    "v2: address block longer than the header");
	}
	if (len < total)
		return PROXYPROTO_NEED_MORE;

	pi->version = 2;
	pi->has_addrs = 0;
	/*
	 * LOCAL (a health check) and PROXY with UNSPEC ("the receiver is
	 * free to accept the connection anyway and use the real endpoint
	 * addresses") leave the connection's own addresses in effect.
	 * Anything after the address block is TLVs (2.2.1), skipped unread.
	 */
	if (cmd == PP2_CMD_PROXY && fam != PP2_FAM_UNSPEC) {
		a = buf + PP2_HDR_LEN;
		if (fam == PP2_FAM_TCP4) {
			sin = (struct sockaddr_in *)&pi->src;
			sin->sin_family = AF_INET;
			memcpy(&sin->sin_addr, a, 4);
			memcpy(&sin->sin_port, a + 8, 2);
			sin = (struct sockaddr_in *)&pi->dst;
			sin->sin_family = AF_INET;
			memcpy(&sin->sin_addr, a + 4, 4);
			memcpy(&sin->sin_port, a + 10, 2);
		} else {
			sin6 = (struct sockaddr_in6 *)&pi->src;
			sin6->sin6_family = AF_INET6;
			memcpy(&sin6->sin6_addr, a, 16);
			memcpy(&sin6->sin6_port, a + 32, 2);
			sin6 = (struct sockaddr_in6 *)&pi->dst;
			sin6->sin6_family = AF_INET6;
			memcpy(&sin6->sin6_addr, a + 16, 16);
			memcpy(&sin6->sin6_port, a + 34, 2);
		}
		pi->has_addrs = 1;
	}
	*len_r = total;
	return PROXYPROTO_OK;
}

enum proxyproto_result
proxyproto_parse(const unsigned char *buf, size_t len, size_t *len_r,
    struct proxyproto_info *info, const char **error_r)
{
	struct proxyproto_info pi;
	enum proxyproto_result res;
	size_t hdrlen = 0;

	if (len == 0)
		return PROXYPROTO_NEED_MORE;
	memset(&pi, 0, sizeof(pi));
	/* 2.2: the v2 signature starts with CR, which no v1 header does. */
	if (buf[0] == pp2_sig[0])
		res = pp2_parse(buf, len, &hdrlen, &pi, error_r);
	else
		res = pp1_parse(buf, len, &hdrlen, &pi, error_r);
	if (res != PROXYPROTO_OK)
		return res;
	*len_r = hdrlen;
	*info = pi;
	return PROXYPROTO_OK;
}
