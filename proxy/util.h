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

/* Monotonic milliseconds. */
uint64_t util_now_ms(void);

#endif
