/*
 * log.h - logging to stderr, syslog or a file.
 *
 * Attacker-controlled bytes (HELO names, addresses, backend replies) must go
 * through log_sanitize() before they reach a log line: control characters
 * and non-ASCII are shown as \xNN, and the length is capped.
 */
#ifndef MSA_LOG_H
#define MSA_LOG_H

#include <stdarg.h>
#include <sys/types.h>
#include <stddef.h>
#include <syslog.h>

struct conf_log;

/* Configure the sink; may be called again (e.g. after fork or on SIGHUP). */
int log_open(const struct conf_log *lc, int foreground);
/* The master (root): give the log file to the workers' user, so that a
 * worker can reopen it on SIGHUP.  No-op unless logging to a file. */
void log_chown(uid_t uid, gid_t gid);

void log_set_prefix(const char *prefix);	/* e.g. "worker 1" */

void log_msg(int prio, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                        \
	do {                                                                  \
		if (log_level >= LOG_DEBUG)                                   \
			log_msg(LOG_DEBUG, __VA_ARGS__);                      \
	} while (0)

extern int log_level;

/* Copy at most `len` bytes of `in` into out (size outsize, always
 * NUL-terminated) with unprintable bytes escaped.  Returns out. */
char *log_sanitize(char *out, size_t outsize, const char *in, size_t len);

#endif
