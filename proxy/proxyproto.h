/*
 * proxyproto.h - the HAProxy PROXY protocol header, v1 (text) and v2 (binary).
 *
 * Spec: https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt
 *
 * A pure, bounded parser: it never touches a socket.  The listener feeds it
 * the first bytes a load balancer sent and it says whether a complete header
 * is there, how long it is, and the addresses it carries.  A v1 header is at
 * most 107 bytes; a v2 header is 16 bytes plus a length field, which we cap at
 * PROXYPROTO_MAX_LEN (TLVs are skipped, not interpreted).
 *
 * Trust: only peers listed in the listener's proxy_protocol_from may send a
 * header (checked by the caller before calling this); the addresses inside are
 * then taken as the real client's.
 */
#ifndef MSA_PROXYPROTO_H
#define MSA_PROXYPROTO_H

#include <stddef.h>
#include <sys/socket.h>

#define PROXYPROTO_V1_MAX_LEN 107
#define PROXYPROTO_MAX_LEN 536	/* 16 + 520: room for common TLVs */

enum proxyproto_result {
	PROXYPROTO_NEED_MORE = 0,	/* a valid prefix; feed more bytes */
	PROXYPROTO_OK = 1,		/* complete header of *len_r bytes */
	PROXYPROTO_INVALID = -1,	/* not a valid header: drop the connection */
};

struct proxyproto_info {
	int version;			/* 1 or 2 */
	/* 1 if the header carries addresses (v1 TCP4/TCP6, v2 PROXY command
	 * with AF_INET/AF_INET6).  0 for v1 "UNKNOWN" and v2 LOCAL (health
	 * checks): the connection's own addresses stay in effect. */
	int has_addrs;
	struct sockaddr_storage src;	/* the real client */
	struct sockaddr_storage dst;	/* the address the client connected to */
};

/*
 * Parse buf[0..len).  Returns PROXYPROTO_OK with *len_r = header length and
 * *info filled; PROXYPROTO_NEED_MORE if buf is a proper prefix of a header that
 * may still become valid; PROXYPROTO_INVALID (with *error_r, a static string
 * for the log) otherwise, including a header longer than PROXYPROTO_MAX_LEN.
 */
enum proxyproto_result proxyproto_parse(const unsigned char *buf, size_t len,
					size_t *len_r,
					struct proxyproto_info *info,
					const char **error_r);

#endif
