/*
 * util.h - small helpers shared by the modules: addresses, ids, dates.
 */
#ifndef MSA_UTIL_H
#define MSA_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <sys/socket.h>

/* "1.2.3.4" / "2001:db8::1" / "unix" and the port (0 for unix). */
void util_sockaddr_ip(const struct sockaddr *sa, char *ip, size_t ipsize,
		      int *port_r);

/* RFC 5322 date-time: "Mon, 23 Nov 2026 12:00:30 +0000". */
size_t util_rfc5322_date(time_t t, char *out, size_t outsize);

/* A session id unique across the workers of one host and over restarts:
 * 12 characters of [0-9A-Za-z] from the time, the pid and a counter.
 * Safe to use in a Received header "id" clause and in a file name. */
void util_session_id(char out[16]);

/* Case-insensitive ASCII prefix compare of n bytes. */
int util_strncaseeq(const char *a, const char *b, size_t n);

/* Strict base64 (RFC 4648 4, padding required, no whitespace) into out.
 * Returns the decoded length, or -1 if invalid or longer than outsize. */
long util_b64_decode(const char *in, size_t inlen, unsigned char *out,
		     size_t outsize);
/* Base64 of in into out (NUL-terminated); outsize >= 4*ceil(len/3)+1.
 * Returns the length, or -1 if out is too small. */
long util_b64_encode(const unsigned char *in, size_t len, char *out,
		     size_t outsize);
/* RFC 3461 xtext encoding of s into out (NUL-terminated, cut to fit). */
void util_xtext_encode(const char *s, char *out, size_t outsize);

/*
 * Read a secret the master loads before it forks (a password or key
 * file): it must not be readable by group or others.  text: the first
 * line only, NUL-terminated; otherwise the bytes with trailing CR/LF
 * removed.  An empty secret is an error.  0 with the length in *len_r
 * (len_r may be NULL), or -1 with *error_r = "PATH: why" (static).
 */
int util_read_secret(const char *path, void *out, size_t size,
		     size_t *len_r, int text, const char **error_r);

/* Monotonic milliseconds. */
uint64_t util_now_ms(void);

#endif
