/*
 * test_proxyproto.c - table-driven tests of the PROXY protocol parser.
 *
 * Every valid header is also fed byte by byte (each proper prefix must give
 * NEED_MORE) and with client bytes after it (which must not be consumed).
 * Every invalid header must stay invalid whatever follows it.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxyproto.h"

/* A byte string literal that may hold NULs, as pointer and length. */
#define B(s)	(const unsigned char *)(s), (sizeof(s) - 1)

/* The v2 signature, then the version/command and family bytes. */
#define SIG		"\r\n\r\n\0\r\nQUIT\n"
#define V2_PROXY	"\x21"
#define V2_LOCAL	"\x20"

/* What the client sends after the header; it belongs to the SMTP session. */
static const char trailer[] = "EHLO client.example\r\n";

#define NO_ADDR	NULL, 0, NULL, 0

struct valid_case {
	const char *name;
	const unsigned char *buf;
	size_t len;
	int version;
	int has_addrs;
	const char *src;	/* as inet_ntop() writes it */
	unsigned int sport;
	const char *dst;
	unsigned int dport;
};

static const struct valid_case valid_cases[] = {
	/* v1, 2.1 */
	{ "v1 tcp4", B("PROXY TCP4 1.2.3.4 5.6.7.8 1111 25\r\n"),
	    1, 1, "1.2.3.4", 1111, "5.6.7.8", 25 },
	{ "v1 tcp4 extremes",
	    B("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n"),
	    1, 1, "0.0.0.0", 0, "255.255.255.255", 65535 },
	{ "v1 tcp4 submission",
	    B("PROXY TCP4 192.168.100.10 10.0.0.1 56324 587\r\n"),
	    1, 1, "192.168.100.10", 56324, "10.0.0.1", 587 },
	{ "v1 tcp6", B("PROXY TCP6 2001:db8::1 2001:db8::2 1111 587\r\n"),
	    1, 1, "2001:db8::1", 1111, "2001:db8::2", 587 },
	{ "v1 tcp6 upper case hex",
	    B("PROXY TCP6 2001:DB8::A 2001:0db8:0:0:0:0:0:B 1 2\r\n"),
	    1, 1, "2001:db8::a", 1, "2001:db8::b", 2 },
	{ "v1 tcp6 mapped and unspecified",
	    B("PROXY TCP6 ::ffff:192.0.2.1 :: 65535 0\r\n"),
	    1, 1, "::ffff:192.0.2.1", 65535, "::", 0 },
	{ "v1 tcp6 longest",
	    B("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
	    1, 1, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535 },
	{ "v1 unknown", B("PROXY UNKNOWN\r\n"), 1, 0, NO_ADDR },
	{ "v1 unknown with ignored junk",
	    B("PROXY UNKNOWN what ever \x01\xff junk\r\n"), 1, 0, NO_ADDR },
	{ "v1 unknown, 107 bytes (the spec's worst case)",
	    B("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
	    1, 0, NO_ADDR },

	/* v2, 2.2 */
	{ "v2 proxy tcp4",
	    B(SIG V2_PROXY "\x11\x00\x0c" "\x01\x02\x03\x04" "\x05\x06\x07\x08"
	    "\x04\x57" "\x00\x19"),
	    2, 1, "1.2.3.4", 1111, "5.6.7.8", 25 },
	{ "v2 proxy tcp4 with tlvs",
	    B(SIG V2_PROXY "\x11\x00\x18" "\xc0\x00\x02\x01" "\xc6\x33\x64\x07"
	    "\xff\xff" "\x02\x4b"
	    "\x04\x00\x03" "abc"		/* PP2_TYPE_NOOP */
	    "\x02\x00\x03" "mx."),		/* PP2_TYPE_AUTHORITY */
	    2, 1, "192.0.2.1", 65535, "198.51.100.7", 587 },
	{ "v2 proxy tcp6",
	    B(SIG V2_PROXY "\x21\x00\x24"
	    "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01"
	    "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x02"
	    "\x04\x57" "\x02\x4b"),
	    2, 1, "2001:db8::1", 1111, "2001:db8::2", 587 },
	{ "v2 proxy tcp6 with tlvs",
	    B(SIG V2_PROXY "\x21\x00\x2d"
	    "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01"
	    "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x02"
	    "\x00\x00" "\x01\xd1"
	    "\x20\x00\x06" "\x01" "\0\0\0\0" "\0"),	/* PP2_TYPE_SSL */
	    2, 1, "2001:db8::1", 0, "2001:db8::2", 465 },
	{ "v2 local unspec", B(SIG V2_LOCAL "\x00\x00\x00"), 2, 0, NO_ADDR },
	{ "v2 local tcp4 (addresses ignored)",
	    B(SIG V2_LOCAL "\x11\x00\x0c" "\x01\x02\x03\x04" "\x05\x06\x07\x08"
	    "\x04\x57" "\x00\x19"),
	    2, 0, NO_ADDR },
	{ "v2 local tcp4, short block ignored",
	    B(SIG V2_LOCAL "\x11\x00\x02" "\x01\x02"), 2, 0, NO_ADDR },
	{ "v2 local unix", B(SIG V2_LOCAL "\x31\x00\x04" "/tmp"),
	    2, 0, NO_ADDR },
	{ "v2 local udp6", B(SIG V2_LOCAL "\x22\x00\x00"), 2, 0, NO_ADDR },
	{ "v2 proxy unspec", B(SIG V2_PROXY "\x00\x00\x00"), 2, 0, NO_ADDR },
	{ "v2 proxy unspec with tlv",
	    B(SIG V2_PROXY "\x00\x00\x04" "\x04\x00\x01" "x"), 2, 0, NO_ADDR },
};

struct invalid_case {
	const char *name;
	const unsigned char *buf;
	size_t len;
};

static const struct invalid_case invalid_cases[] = {
	/* Not a header at all. */
	{ "smtp command", B("EHLO client.example\r\n") },
	{ "http", B("GET / HTTP/1.1\r\n") },
	{ "one wrong byte", B("X") },
	{ "tls client hello", B("\x16\x03\x01\x02\x00") },
	{ "lower case proxy", B("proxy TCP4 1.2.3.4 5.6.7.8 1111 25\r\n") },
	{ "leading space", B(" PROXY TCP4 1.2.3.4 5.6.7.8 1111 25\r\n") },
	{ "PROXX", B("PROXX") },
	{ "PROXYX", B("PROXYX TCP4 1.2.3.4 5.6.7.8 1111 25\r\n") },

	/* v1 framing */
	{ "v1 LF without CR", B("PROXY TCP4 1.2.3.4 5.6.7.8 1111 25\n") },
	{ "v1 CR without LF", B("PROXY TCP4 1.2.3.4 5.6.7.8 1111 25\rX") },
	{ "v1 CR CR LF", B("PROXY TCP4 1.2.3.4 5.6.7.8 1111 25\r\r\n") },
	{ "v1 LF inside", B("PROXY TCP4\n1.2.3.4 5.6.7.8 1111 25\r\n") },
	{ "v1 bare PROXY", B("PROXY\r\n") },
	{ "v1 PROXY and space", B("PROXY \r\n") },
	{ "v1 no addresses", B("PROXY TCP4\r\n") },
	{ "v1 missing port", B("PROXY TCP4 1.2.3.4 5.6.7.8 1111\r\n") },
	{ "v1 extra field", B("PROXY TCP4 1.2.3.4 5.6.7.8 1111 25 26\r\n") },
	{ "v1 trailing space", B("PROXY TCP4 1.2.3.4 5.6.7.8 1111 25 \r\n") },
	{ "v1 trailing space, partial", B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ") },
	{ "v1 double space after PROXY",
	    B("PROXY  TCP4 1.2.3.4 5.6.7.8 1111 25\r\n") },
	{ "v1 double space, partial", B("PROXY  ") },
	{ "v1 double space after proto",
	    B("PROXY TCP4  1.2.3.4 5.6.7.8 1111 25\r\n") },
	{ "v1 double space between ports",
	    B("PROXY TCP4 1.2.3.4 5.6.7.8 1111  25\r\n") },
	{ "v1 tab separator", B("PROXY\tTCP4 1.2.3.4 5.6.7.8 1111 25\r\n") },
	{ "v1 NUL inside", B("PROXY TCP4 1.2.3.4\0 5.6.7.8 1111 25\r\n") },
	{ "v1 TCP5", B("PROXY TCP5 1.2.3.4 5.6.7.8 1111 25\r\n") },
	{ "v1 lower case tcp4", B("PROXY tcp4 1.2.3.4 5.6.7.8 1111 25\r\n") },
	{ "v1 UDP4", B("PROXY UDP4 1.2.3.4 5.6.7.8 1111 25\r\n") },
	{ "v1 UNKNOWNX", B("PROXY UNKNOWNX\r\n") },
	{ "v1 UNKNOWN, partial", B("PROXY UNKNOWNX") },

	/* v1 lengths: 107 bytes at most, CRLF included (2.1). */
	{ "v1 unknown, 108 bytes",
	    B("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 655355\r\n") },
	{ "v1 no CRLF at 107 bytes",
	    B("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535xx") },
	{ "v1 no CR at 106 bytes (CRLF could not fit)",
	    B("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535x") },
	{ "v1 CR at byte 107",
	    B("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535x\r") },
	{ "v1 tcp6 too long with valid addresses",
	    B("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
	    "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 65535 65535\r\n") },

	/* v1 addresses */
	{ "v1 octet 256", B("PROXY TCP4 256.1.1.1 5.6.7.8 1111 25\r\n") },
	{ "v1 octet 256, partial", B("PROXY TCP4 256") },
	{ "v1 three octets", B("PROXY TCP4 1.2.3 5.6.7.8 1111 25\r\n") },
	{ "v1 five octets", B("PROXY TCP4 1.2.3.4.5 5.6.7.8 1111 25\r\n") },
	{ "v1 empty octet", B("PROXY TCP4 1..3.4 5.6.7.8 1111 25\r\n") },
	{ "v1 trailing dot", B("PROXY TCP4 1.2.3.4. 5.6.7.8 1111 25\r\n") },
	{ "v1 leading dot", B("PROXY TCP4 .1.2.3 5.6.7.8 1111 25\r\n") },
	{ "v1 octet leading zero",
	    B("PROXY TCP4 01.2.3.4 5.6.7.8 1111 25\r\n") },
	{ "v1 octet leading zero, partial", B("PROXY TCP4 1.2.00") },
	{ "v1 last octet leading zero",
	    B("PROXY TCP4 1.2.3.04 5.6.7.8 1111 25\r\n") },
	{ "v1 hex octet", B("PROXY TCP4 0x1.2.3.4 5.6.7.8 1111 25\r\n") },
	{ "v1 prefix length", B("PROXY TCP4 1.2.3.4/24 5.6.7.8 1111 25\r\n") },
	{ "v1 negative octet", B("PROXY TCP4 -1.2.3.4 5.6.7.8 1111 25\r\n") },
	{ "v1 hostname", B("PROXY TCP4 localhost 5.6.7.8 1111 25\r\n") },
	{ "v1 bad destination", B("PROXY TCP4 1.2.3.4 5.6.7.888 1111 25\r\n") },
	{ "v1 tcp4 with ipv6 source", B("PROXY TCP4 ::1 5.6.7.8 1111 25\r\n") },
	{ "v1 tcp4 with ipv6 destination",
	    B("PROXY TCP4 1.2.3.4 ::1 1111 25\r\n") },
	{ "v1 tcp6 with ipv4 source",
	    B("PROXY TCP6 1.2.3.4 2001:db8::2 1111 25\r\n") },
	{ "v1 tcp6 with ipv4 source, partial", B("PROXY TCP6 1.") },
	{ "v1 tcp6 triple colon", B("PROXY TCP6 2001:db8:::1 ::2 1 2\r\n") },
	{ "v1 tcp6 triple colon, partial", B("PROXY TCP6 2001:db8:::") },
	{ "v1 tcp6 two double colons", B("PROXY TCP6 1::2::3 ::2 1 2\r\n") },
	{ "v1 tcp6 five hex digits", B("PROXY TCP6 12345::1 ::2 1 2\r\n") },
	{ "v1 tcp6 not hex", B("PROXY TCP6 g::1 ::2 1 2\r\n") },
	{ "v1 tcp6 scope id", B("PROXY TCP6 fe80::1%eth0 ::2 1 2\r\n") },
	{ "v1 tcp6 brackets", B("PROXY TCP6 [::1] ::2 1 2\r\n") },
	{ "v1 tcp6 too few groups", B("PROXY TCP6 1:2:3:4:5:6:7 ::2 1 2\r\n") },
	{ "v1 tcp6 too many groups",
	    B("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::2 1 2\r\n") },
	{ "v1 tcp6 bad embedded quad",
	    B("PROXY TCP6 ::ffff:1.2.3.256 ::2 1 2\r\n") },
	{ "v1 tcp6 hex in embedded quad, partial", B("PROXY TCP6 ::ffff:1.a") },

	/* v1 ports: decimal 0..65535, no heading zeroes (2.1). */
	{ "v1 port 65536", B("PROXY TCP4 1.2.3.4 5.6.7.8 65536 25\r\n") },
	{ "v1 destination port 65536",
	    B("PROXY TCP4 1.2.3.4 5.6.7.8 1111 65536\r\n") },
	{ "v1 port 65536, partial", B("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536") },
	{ "v1 port 99999", B("PROXY TCP4 1.2.3.4 5.6.7.8 99999 25\r\n") },
	{ "v1 port six digits", B("PROXY TCP4 1.2.3.4 5.6.7.8 100000 25\r\n") },
	{ "v1 port plus sign", B("PROXY TCP4 1.2.3.4 5.6.7.8 +1111 25\r\n") },
	{ "v1 port minus sign", B("PROXY TCP4 1.2.3.4 5.6.7.8 -1 25\r\n") },
	{ "v1 port leading zero",
	    B("PROXY TCP4 1.2.3.4 5.6.7.8 1111 025\r\n") },
	{ "v1 port 00", B("PROXY TCP4 1.2.3.4 5.6.7.8 00 25\r\n") },
	{ "v1 port hex", B("PROXY TCP4 1.2.3.4 5.6.7.8 0x19 25\r\n") },
	{ "v1 port letters", B("PROXY TCP4 1.2.3.4 5.6.7.8 1111 25a\r\n") },
	{ "v1 port name", B("PROXY TCP4 1.2.3.4 5.6.7.8 1111 smtp\r\n") },

	/* v2 signature, version, command (2.2) */
	{ "v2 bad signature byte 5",
	    B("\r\n\r\n\x01\r\nQUIT\n" V2_PROXY "\x00\x00\x00") },
	{ "v2 bad signature, partial", B("\r\n\r\n\0\r\nQUIX") },
	{ "v2 signature then CRLF", B("\r\n\r\n\r\n") },
	{ "v2 bare CRLF line", B("\r\nEHLO\r\n") },
	{ "v2 version 0", B(SIG "\x01\x00\x00\x00") },
	{ "v2 version 1", B(SIG "\x11\x00\x00\x00") },
	{ "v2 version 3", B(SIG "\x31") },
	{ "v2 version f", B(SIG "\xf1") },
	{ "v2 command 2", B(SIG "\x22\x11\x00\x0c") },
	{ "v2 command f", B(SIG "\x2f") },

	/* v2 family and transport */
	{ "v2 proxy udp4", B(SIG V2_PROXY "\x12\x00\x0c" "123456789012") },
	{ "v2 proxy udp6", B(SIG V2_PROXY "\x22") },
	{ "v2 proxy unix stream", B(SIG V2_PROXY "\x31\x00\x00") },
	{ "v2 proxy unix dgram", B(SIG V2_PROXY "\x32\x00\x00") },
	{ "v2 family 4", B(SIG V2_PROXY "\x41\x00\x00") },
	{ "v2 local family 4", B(SIG V2_LOCAL "\x41\x00\x00") },
	{ "v2 transport 3", B(SIG V2_PROXY "\x13\x00\x0c") },
	{ "v2 unspec family, stream", B(SIG V2_PROXY "\x01\x00\x00") },
	{ "v2 inet, unspec transport", B(SIG V2_PROXY "\x10\x00\x0c") },

	/* v2 lengths */
	{ "v2 length 521 (over PROXYPROTO_MAX_LEN)",
	    B(SIG V2_PROXY "\x11\x02\x09") },
	{ "v2 length 0xffff", B(SIG V2_LOCAL "\x00\xff\xff") },
	{ "v2 tcp4 block longer than length",
	    B(SIG V2_PROXY "\x11\x00\x0b" "\x01\x02\x03\x04" "\x05\x06\x07\x08"
	    "\x04\x57" "\x00") },
	{ "v2 tcp4 with length 0", B(SIG V2_PROXY "\x11\x00\x00") },
	{ "v2 tcp6 block longer than length",
	    B(SIG V2_PROXY "\x21\x00\x23") },
	{ "v2 tcp6 with an ipv4-sized block",
	    B(SIG V2_PROXY "\x21\x00\x0c" "\x01\x02\x03\x04" "\x05\x06\x07\x08"
	    "\x04\x57" "\x00\x19") },
};

/* Proper prefixes of valid headers that are not prefixes of valid_cases. */
static const struct invalid_case need_more_cases[] = {
	{ "empty", B("") },
	{ "v1 tcp6 mapped, partial", B("PROXY TCP6 ::ffff:192.0.") },
	{ "v1 unknown junk", B("PROXY UNKNOWN anything\x01 at all") },
	{ "v1 unknown, 105 bytes without CRLF",
	    B("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535") },
	{ "v1 port 0 may end", B("PROXY TCP4 1.2.3.4 5.6.7.8 0") },
	{ "v2 max length announced", B(SIG V2_LOCAL "\x00\x02\x08") },
	{ "v2 tlvs pending",
	    B(SIG V2_PROXY "\x11\x00\x20" "\x01\x02\x03\x04" "\x05\x06\x07\x08"
	    "\x04\x57" "\x00\x19") },
};

static enum proxyproto_result
parse(const unsigned char *buf, size_t len, size_t *len_r,
    struct proxyproto_info *info, const char **error_r)
{
	unsigned char *copy;
	enum proxyproto_result res;

	/* A heap copy of exactly len bytes lets valgrind/ASan see overreads. */
	copy = malloc(len > 0 ? len : 1);
	assert_non_null(copy);
	if (len > 0)
		memcpy(copy, buf, len);
	res = proxyproto_parse(copy, len, len_r, info, error_r);
	free(copy);
	return res;
}

static const char *
res_name(enum proxyproto_result res)
{
	switch (res) {
	case PROXYPROTO_NEED_MORE:
		return "NEED_MORE";
	case PROXYPROTO_OK:
		return "OK";
	case PROXYPROTO_INVALID:
		return "INVALID";
	}
	return "?";
}

static void
check_addr(const char *name, const char *which,
    const struct sockaddr_storage *ss, const char *want_addr,
    unsigned int want_port)
{
	char text[INET6_ADDRSTRLEN];
	const void *addr;
	unsigned int port;

	if (strchr(want_addr, ':') != NULL) {
		const struct sockaddr_in6 *sin6 = (const void *)ss;

		if (ss->ss_family != AF_INET6)
			fail_msg("%s: %s family %d, want AF_INET6", name,
			    which, ss->ss_family);
		addr = &sin6->sin6_addr;
		port = ntohs(sin6->sin6_port);
	} else {
		const struct sockaddr_in *sin = (const void *)ss;

		if (ss->ss_family != AF_INET)
			fail_msg("%s: %s family %d, want AF_INET", name,
			    which, ss->ss_family);
		addr = &sin->sin_addr;
		port = ntohs(sin->sin_port);
	}
	if (inet_ntop(ss->ss_family, addr, text, sizeof(text)) == NULL)
		fail_msg("%s: %s: inet_ntop failed", name, which);
	if (strcmp(text, want_addr) != 0)
		fail_msg("%s: %s address %s, want %s", name, which, text,
		    want_addr);
	if (port != want_port)
		fail_msg("%s: %s port %u, want %u", name, which, port,
		    want_port);
}

static void
check_ok(const struct valid_case *c, const unsigned char *buf, size_t len)
{
	struct proxyproto_info info;
	enum proxyproto_result res;
	const char *error = NULL;
	size_t hdrlen = 9999;

	res = parse(buf, len, &hdrlen, &info, &error);
	if (res != PROXYPROTO_OK)
		fail_msg("%s (%zu bytes): %s (%s), want OK", c->name, len,
		    res_name(res), error != NULL ? error : "");
	if (hdrlen != c->len)
		fail_msg("%s: header length %zu, want %zu", c->name, hdrlen,
		    c->len);
	if (info.version != c->version)
		fail_msg("%s: version %d, want %d", c->name, info.version,
		    c->version);
	if (info.has_addrs != c->has_addrs)
		fail_msg("%s: has_addrs %d, want %d", c->name, info.has_addrs,
		    c->has_addrs);
	if (c->has_addrs) {
		check_addr(c->name, "source", &info.src, c->src, c->sport);
		check_addr(c->name, "destination", &info.dst, c->dst,
		    c->dport);
	}
}

/* Each proper prefix is NEED_MORE, then OK, and what follows is kept. */
static void
test_valid(void **state)
{
	const struct valid_case *c;
	struct proxyproto_info info;
	enum proxyproto_result res;
	unsigned char buf[PROXYPROTO_MAX_LEN + sizeof(trailer)];
	const char *error;
	size_t i, k, hdrlen;

	(void)state;
	for (i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]); i++) {
		c = &valid_cases[i];
		assert_true(c->len <= PROXYPROTO_MAX_LEN);
		if (c->version == 1)
			assert_true(c->len <= PROXYPROTO_V1_MAX_LEN);
		for (k = 0; k < c->len; k++) {
			error = NULL;
			res = parse(c->buf, k, &hdrlen, &info, &error);
			if (res != PROXYPROTO_NEED_MORE)
				fail_msg("%s: prefix of %zu bytes: %s (%s), "
				    "want NEED_MORE", c->name, k,
				    res_name(res), error != NULL ? error : "");
		}
		check_ok(c, c->buf, c->len);

		memcpy(buf, c->buf, c->len);
		memcpy(buf + c->len, trailer, sizeof(trailer) - 1);
		for (k = 1; k < sizeof(trailer); k++)
			check_ok(c, buf, c->len + k);
		/* A second header right behind is not ours to parse either. */
		memcpy(buf + c->len, c->buf,
		    c->len < sizeof(trailer) ? c->len : sizeof(trailer));
		check_ok(c, buf, c->len +
		    (c->len < sizeof(trailer) ? c->len : sizeof(trailer)));
	}
}

static void
check_invalid(const char *name, const unsigned char *buf, size_t len)
{
	struct proxyproto_info info;
	enum proxyproto_result res;
	const char *error = NULL;
	size_t hdrlen = 9999;

	res = parse(buf, len, &hdrlen, &info, &error);
	if (res != PROXYPROTO_INVALID)
		fail_msg("%s (%zu bytes): %s, want INVALID", name, len,
		    res_name(res));
	if (error == NULL || error[0] == '\0')
		fail_msg("%s: no error string", name);
	if (hdrlen != 9999)
		fail_msg("%s: *len_r written on INVALID", name);
}

/* Invalid, and no byte that follows can make it valid. */
static void
test_invalid(void **state)
{
	static const struct invalid_case tails[] = {
		{ "CRLF", B("\r\n") },
		{ "LF", B("\n") },
		{ "port", B(" 25\r\n") },
		{ "NULs", B("\0\0\0\0") },
		{ "smtp", B("EHLO client.example\r\n") },
	};
	const struct invalid_case *c;
	unsigned char buf[1024];
	size_t i, t;

	(void)state;
	for (i = 0; i < sizeof(invalid_cases) / sizeof(invalid_cases[0]);
	    i++) {
		c = &invalid_cases[i];
		check_invalid(c->name, c->buf, c->len);
		for (t = 0; t < sizeof(tails) / sizeof(tails[0]); t++) {
			assert_true(c->len + tails[t].len <= sizeof(buf));
			memcpy(buf, c->buf, c->len);
			memcpy(buf + c->len, tails[t].buf, tails[t].len);
			check_invalid(c->name, buf, c->len + tails[t].len);
		}
		/* A long run of padding must not turn it into NEED_MORE. */
		memcpy(buf, c->buf, c->len);
		memset(buf + c->len, 'a', sizeof(buf) - c->len);
		check_invalid(c->name, buf, sizeof(buf));
	}
}

static void
test_need_more(void **state)
{
	const struct invalid_case *c;
	struct proxyproto_info info;
	enum proxyproto_result res;
	const char *error;
	size_t i, k, hdrlen;

	(void)state;
	for (i = 0; i < sizeof(need_more_cases) / sizeof(need_more_cases[0]);
	    i++) {
		c = &need_more_cases[i];
		for (k = 0; k <= c->len; k++) {
			error = NULL;
			res = parse(c->buf, k, &hdrlen, &info, &error);
			if (res != PROXYPROTO_NEED_MORE)
				fail_msg("%s (%zu bytes): %s (%s), want "
				    "NEED_MORE", c->name, k, res_name(res),
				    error != NULL ? error : "");
		}
	}
}

/* The v2 length field at and just over the limit. */
static void
test_v2_max_len(void **state)
{
	struct valid_case c;
	unsigned char buf[PROXYPROTO_MAX_LEN + 64];
	size_t alen = PROXYPROTO_MAX_LEN - 16;
	size_t k, hdrlen;
	struct proxyproto_info info;
	const char *error;

	(void)state;
	memset(buf, 0, sizeof(buf));
	memcpy(buf, SIG V2_PROXY "\x11", 14);
	buf[14] = (unsigned char)(alen >> 8);
	buf[15] = (unsigned char)alen;
	memcpy(buf + 16, "\x0a\x00\x00\x01" "\x0a\x00\x00\x02" "\x30\x39"
	    "\x00\x19", 12);
	/* One NOOP TLV pads the rest: 3 bytes of type and length. */
	buf[28] = 0x04;
	buf[29] = (unsigned char)((alen - 12 - 3) >> 8);
	buf[30] = (unsigned char)(alen - 12 - 3);

	memset(&c, 0, sizeof(c));
	c.name = "v2 at PROXYPROTO_MAX_LEN";
	c.buf = buf;
	c.len = PROXYPROTO_MAX_LEN;
	c.version = 2;
	c.has_addrs = 1;
	c.src = "10.0.0.1";
	c.sport = 12345;
	c.dst = "10.0.0.2";
	c.dport = 25;
	for (k = 0; k < c.len; k++)
		assert_int_equal(parse(buf, k, &hdrlen, &info, &error),
		    PROXYPROTO_NEED_MORE);
	check_ok(&c, buf, c.len);
	check_ok(&c, buf, sizeof(buf));

	alen++;
	buf[14] = (unsigned char)(alen >> 8);
	buf[15] = (unsigned char)alen;
	check_invalid("v2 one over PROXYPROTO_MAX_LEN", buf, 16);
	check_invalid("v2 one over PROXYPROTO_MAX_LEN", buf, sizeof(buf));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_need_more),
		cmocka_unit_test(test_v2_max_len),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
