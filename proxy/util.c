/*
 * util.c - see util.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util.h"

void
util_sockaddr_ip(const struct sockaddr *sa, char *ip, size_t ipsize, int *port_r)
{
	*port_r = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, ip, ipsize);
		*port_r = ntohs(sin->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		/* Show IPv4-mapped addresses as plain IPv4. */
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
			inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], ip, ipsize);
		else
			inet_ntop(AF_INET6, &sin6->sin6_addr, ip, ipsize);
		*port_r = ntohs(sin6->sin6_port);
	} else {
		snprintf(ip, ipsize, "unix");
	}
}

size_t
util_rfc5322_date(time_t t, char *out, size_t outsize)
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	struct tm tm;
	long off;
	int n;

	localtime_r(&t, &tm);
	off = tm.tm_gmtoff / 60;
	n = snprintf(out, outsize, "%s, %d %s %d %02d:%02d:%02d %c%02ld%02ld",
	    days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
	    tm.tm_hour, tm.tm_min, tm.tm_sec, off < 0 ? '-' : '+',
	    (off < 0 ? -off : off) / 60, (off < 0 ? -off : off) % 60);
	return n < 0 ? 0 : (size_t)n;
}

static void
base62(uint64_t v, char *out, int width)
{
	static const char digits[] =
	    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	int i;

	for (i = width - 1; i >= 0; i--) {
		out[i] = digits[v % 62];
		v /= 62;
	}
}

void
util_session_id(char out[16])
{
	static uint32_t counter;
	static pid_t pid;	/* only workers make ids: cached after fork */
	struct timespec ts;

	if (pid == 0)
		pid = getpid();
	clock_gettime(CLOCK_REALTIME, &ts);
	/* 6 chars of seconds (62^6 s ~ 1800 years), 3 of pid, 3 of counter. */
	base62((uint64_t)ts.tv_sec, out, 6);
	base62((uint64_t)pid % (62 * 62 * 62), out + 6, 3);
	base62(counter++ % (62 * 62 * 62), out + 9, 3);
	out[12] = '\0';
}

int
util_strncaseeq(const char *a, const char *b, size_t n)
{
	return strncasecmp(a, b, n) == 0;
}

uint64_t
util_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long
util_b64_decode(const char *in, size_t inlen, unsigned char *out, size_t outsize)
{
	size_t i, o = 0;

	if (inlen % 4 != 0)
		return -1;
	for (i = 0; i < inlen; i += 4) {
		int v[4], k, pad = 0;

		for (k = 0; k < 4; k++) {
			unsigned char ch = (unsigned char)in[i + k];

			if (ch == '=' && i + 4 == inlen && k >= 2) {
				v[k] = 0;
				pad++;
				continue;
			}
			if (pad > 0 || (v[k] = b64_value(ch)) < 0)
				return -1;
		}
		if (o + 3 - (size_t)pad > outsize)
			return -1;
		out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (pad < 2)
			out[o++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
		if (pad < 1)
			out[o++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
	}
	return (long)o;
}

long
util_b64_encode(const unsigned char *in, size_t len, char *out, size_t outsize)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, o = 0;

	if (outsize < (len + 2) / 3 * 4 + 1)
		return -1;
	for (i = 0; i + 2 < len; i += 3) {
		out[o++] = tab[in[i] >> 2];
		out[o++] = tab[(in[i] & 3) << 4 | in[i + 1] >> 4];
		out[o++] = tab[(in[i + 1] & 15) << 2 | in[i + 2] >> 6];
		out[o++] = tab[in[i + 2] & 63];
	}
	if (i < len) {
		out[o++] = tab[in[i] >> 2];
		if (i + 1 < len) {
			out[o++] = tab[(in[i] & 3) << 4 | in[i + 1] >> 4];
			out[o++] = tab[(in[i + 1] & 15) << 2];
		} else {
			out[o++] = tab[(in[i] & 3) << 4];
			out[o++] = '=';
		}
		out[o++] = '=';
	}
	out[o] = '\0';
	return (long)o;
}

void
util_xtext_encode(const char *s, char *out, size_t outsize)
{
	size_t o = 0;

	for (; *s && o + 4 < outsize; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 33 || c > 126 || c == '+' || c == '=')
			o += (size_t)snprintf(out + o, outsize - o, "+%02X", c);
		else
			out[o++] = (char)c;
	}
	out[o] = '\0';
}

int
util_read_secret(const char *path, void *out, size_t size, size_t *len_r,
		 int text, const char **error_r)
{
	static char err[700];
	char *buf = out;
	struct stat st;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		snprintf(err, sizeof(err), "%.500s: %s", path, strerror(errno));
		*error_r = err;
		return -1;
	}
	if (fstat(fd, &st) < 0 || (st.st_mode & 077) != 0) {
		snprintf(err, sizeof(err), "%.500s: readable by others "
		    "(chmod 600)", path);
		*error_r = err;
		close(fd);
		return -1;
	}
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0) {
		snprintf(err, sizeof(err), "%.500s: %s", path, strerror(errno));
		*error_r = err;
		return -1;
	}
	if (text) {
		buf[n] = '\0';
		n = (ssize_t)strcspn(buf, "\r\n");
		buf[n] = '\0';
	} else {
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			n--;
	}
	if (n == 0) {
		snprintf(err, sizeof(err), "%.500s: empty", path);
		*error_r = err;
		return -1;
	}
	if (len_r != NULL)
		*len_r = (size_t)n;
	return 0;
}
