/*
 * log.c - one logging sink per process.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"

int log_level = LOG_INFO;
static enum log_dest log_dest = LOG_DEST_STDERR;
static int log_fd = 2;
static char log_prefix[32];
static char log_ident[64] = "msaproxy";

int
log_open(const struct conf_log *lc, int foreground)
{
	if (lc == NULL)
		return 0;
	log_level = lc->level;
	snprintf(log_ident, sizeof(log_ident), "%s", lc->ident[0] ? lc->ident : "msaproxy");
	if (log_dest == LOG_DEST_FILE && log_fd > 2)
		close(log_fd);
	log_fd = 2;
	log_dest = lc->dest;
	switch (lc->dest) {
	case LOG_DEST_SYSLOG:
		openlog(log_ident, LOG_PID | LOG_NDELAY, lc->facility);
		break;
	case LOG_DEST_FILE: {
		int fd = open(lc->file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (fd == -1) {
			log_dest = LOG_DEST_STDERR;
			log_err("cannot open log file %s: %s", lc->file, strerror(errno));
			return -1;
		}
		log_fd = fd;
		break;
	}
	case LOG_DEST_STDERR:
		break;
	}
	(void)foreground;
	return 0;
}

void
log_chown(uid_t uid, gid_t gid)
{
	if (log_dest == LOG_DEST_FILE && log_fd > 2 && fchown(log_fd, uid, gid) != 0)
		log_warn("log file: cannot give it to uid %ld: %s", (long)uid,
		    strerror(errno));
}

void
log_set_prefix(const char *prefix)
{
	snprintf(log_prefix, sizeof(log_prefix), "%s", prefix ? prefix : "");
}

static const char *
prio_name(int prio)
{
	switch (prio) {
	case LOG_ERR: return "error";
	case LOG_WARNING: return "warning";
	case LOG_NOTICE: return "notice";
	case LOG_INFO: return "info";
	case LOG_DEBUG: return "debug";
	default: return "log";
	}
}

void
log_msg(int prio, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	int n;

	if (prio > log_level)
		return;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (log_dest == LOG_DEST_SYSLOG) {
		if (log_prefix[0])
			syslog(prio, "%s: %s", log_prefix, line);
		else
			syslog(prio, "%s", line);
		return;
	}
	{
		char out[2300], ts[40];
		struct timespec now;
		struct tm tm;
		int len;

		clock_gettime(CLOCK_REALTIME, &now);
		gmtime_r(&now.tv_sec, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
		len = snprintf(out, sizeof(out), "%s.%03ldZ %s[%ld]%s%s: %s: %s\n",
		    ts, now.tv_nsec / 1000000, log_ident, (long)getpid(),
		    log_prefix[0] ? " " : "", log_prefix, prio_name(prio), line);
		if (len > (int)sizeof(out) - 1) {
			len = sizeof(out) - 1;
			out[len - 1] = '\n';
		}
		/* One write per line: lines of concurrent workers do not mix. */
		(void)!write(log_fd, out, (size_t)len);
	}
}

char *
log_sanitize(char *out, size_t outsize, const char *in, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i;

	if (outsize == 0)
		return out;
	for (i = 0; i < len && o + 1 < outsize; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c >= 0x20 && c < 0x7f && c != '\\') {
			out[o++] = (char)c;
		} else {
			if (o + 5 >= outsize)
				break;
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return out;
}
