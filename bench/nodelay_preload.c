/*
 * nodelay_preload.c - DIAGNOSTIC ONLY, for bench/run_burl_bench.sh
 * --cyrus-preload: an LD_PRELOAD shim that sets TCP_NODELAY on every socket
 * the process accepts.  Cyrus imapd 3.6 does not set it, so the last small
 * write of a URLFETCH answer (the literal's tail and "tag OK") waits under
 * Nagle for the ACK of the previous segment, which the client may delay by
 * up to 40 ms (see docs/PERFORMANCE.md, "BURL").  Not used for reference
 * figures: it changes the server under test.
 *
 *   cc -shared -fPIC -O2 -o /tmp/nodelay.so bench/nodelay_preload.c -ldl
 *   bench/run_burl_bench.sh ... --cyrus-preload /tmp/nodelay.so
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <sys/socket.h>

static void
nd(int fd)
{
	int one = 1;

	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int
accept(int s, struct sockaddr *a, socklen_t *l)
{
	static int (*real)(int, struct sockaddr *, socklen_t *);
	int fd;

	if (real == NULL)
		real = (int (*)(int, struct sockaddr *, socklen_t *))
		    dlsym(RTLD_NEXT, "accept");
	fd = real(s, a, l);
	nd(fd);
	return fd;
}

int
accept4(int s, struct sockaddr *a, socklen_t *l, int f)
{
	static int (*real)(int, struct sockaddr *, socklen_t *, int);
	int fd;

	if (real == NULL)
		real = (int (*)(int, struct sockaddr *, socklen_t *, int))
		    dlsym(RTLD_NEXT, "accept4");
	fd = real(s, a, l, f);
	nd(fd);
	return fd;
}
