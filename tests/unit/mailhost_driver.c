/*
 * mailhost_driver.c - runs trust/mailhost.c on an event loop in a process of
 * its own so that tests/integration/test_mailhost.py can put it in front of
 * a real slapd (tests/integration/ldap_server.py), stop and start the
 * server under it, and read its log.
 *
 *   mailhost_driver -c msaproxy.conf [-v]
 *
 * The configuration is loaded with conf_load() (its burl.mailhost group is
 * what counts), then mailhost_global_init() and mailhost_dir_new() (exit 2
 * with "ERROR <why>" if either fails; "NODIR" if no mailhost group).  Then
 * commands, one per line on stdin, read from the event loop (so lookups
 * overlap):
 *
 *   LOOKUP <user>        start a lookup; the answer comes when it comes:
 *                        "RESULT <FOUND|NOT_FOUND|UNAVAILABLE> <host|-> <ms> <user>"
 *   CANCEL <user>        start a lookup and cancel it at once: "CANCELLED <user>"
 *                        (and never a RESULT for it)
 *   DROP <user>          cancel the pending lookup for <user>: "DROPPED <user>"
 *                        (or "NOTPENDING <user>")
 *   STATS                "STATS lookups=N map_hits=N cache_hits=N
 *                        ldap_searches=N ldap_connects=N ldap_failures=N
 *                        pending=N fds=N"
 *   QUIT                 mailhost_dir_free() with whatever is pending, "BYE"
 *
 * <user> is the rest of the line, spaces included.  The log (proxy/log.c)
 * goes to stderr; -v for debug lines; $MAILHOST_DRIVER_LDAP_DEBUG=-1 adds
 * libldap's trace.
 */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include <ldap.h>

#include "conf.h"
#include "log.h"
#include "mailhost.h"

struct pending {
	struct pending *next;
	struct mailhost_req *req;
	uint64_t start_ms;
	char user[MAILHOST_MAX_USER + 2];
};

static struct event_base *base;
static struct mailhost_dir *dir;
static struct pending *pendings;
static struct evbuffer *input;
static struct event *ev_stdin;

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int
count_fds(void)
{
	DIR *dp = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (dp == NULL)
		return -1;
	while ((de = readdir(dp)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(dp);
	return n - 1;		/* the DIR's own */
}

static void
unlink_pending(struct pending *p)
{
	struct pending **pp;

	for (pp = &pendings; *pp != NULL; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			return;
		}
}

static void
on_result(void *ctx, enum mailhost_result r, const char *host)
{
	struct pending *p = ctx;

	printf("RESULT %s %s %llu %s\n", mailhost_result_name(r),
	    host[0] != '\0' ? host : "-",
	    (unsigned long long)(now_ms() - p->start_ms), p->user);
	unlink_pending(p);
	free(p);
}

static void
quit(void)
{
	struct pending *p;

	mailhost_dir_free(&dir);	/* no callbacks */
	while ((p = pendings) != NULL) {
		pendings = p->next;
		free(p);
	}
	printf("BYE\n");
	event_base_loopbreak(base);
}

static void
command(const char *line)
{
	struct mailhost_stats st;
	struct pending *p;
	size_t n = 0;

	if (strncmp(line, "LOOKUP ", 7) == 0 || strncmp(line, "CANCEL ", 7) == 0) {
		p = calloc(1, sizeof(*p));
		if (p == NULL)
			abort();
		snprintf(p->user, sizeof(p->user), "%s", line + 7);
		p->start_ms = now_ms();
		p->req = mailhost_lookup(dir, p->user, on_result, p);
		if (p->req == NULL) {
			printf("ERROR lookup refused\n");
			free(p);
			return;
		}
		if (line[0] == 'C') {
			mailhost_cancel(&p->req);
			printf("CANCELLED %s\n", p->user);
			free(p);
			return;
		}
		p->next = pendings;
		pendings = p;
	} else if (strncmp(line, "DROP ", 5) == 0) {
		for (p = pendings; p != NULL; p = p->next)
			if (strcmp(p->user, line + 5) == 0)
				break;
		if (p == NULL) {
			printf("NOTPENDING %s\n", line + 5);
			return;
		}
		mailhost_cancel(&p->req);
		unlink_pending(p);
		printf("DROPPED %s\n", p->user);
		free(p);
	} else if (strcmp(line, "STATS") == 0) {
		mailhost_dir_stats(dir, &st);
		for (p = pendings; p != NULL; p = p->next)
			n++;
		printf("STATS lookups=%lu map_hits=%lu cache_hits=%lu "
		    "ldap_searches=%lu ldap_connects=%lu ldap_failures=%lu "
		    "pending=%zu fds=%d\n", st.lookups, st.map_hits,
		    st.cache_hits, st.ldap_searches, st.ldap_connects,
		    st.ldap_failures, n, count_fds());
	} else if (strcmp(line, "QUIT") == 0) {
		quit();
	} else {
		printf("ERROR unknown command\n");
	}
}

static void
on_stdin(evutil_socket_t fd, short what, void *arg)
{
	char *line;
	size_t len;
	int n;

	(void)what;
	(void)arg;
	n = evbuffer_read(input, fd, 4096);
	while (dir != NULL &&
	    (line = evbuffer_readln(input, &len, EVBUFFER_EOL_CRLF)) != NULL) {
		command(line);
		free(line);
	}
	if (n <= 0 && dir != NULL)
		quit();
}

int
main(int argc, char **argv)
{
	const char *conf_path = NULL, *err = NULL;
	char errbuf[4096];
	struct conf *conf;
	int opt;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	while ((opt = getopt(argc, argv, "c:v")) != -1) {
		switch (opt) {
		case 'c':
			conf_path = optarg;
			break;
		case 'v':
			log_level = LOG_DEBUG;
			break;
		default:
			fprintf(stderr, "usage: %s -c msaproxy.conf [-v]\n",
			    argv[0]);
			return 2;
		}
	}
	if (conf_path == NULL) {
		fprintf(stderr, "-c msaproxy.conf is required\n");
		return 2;
	}
	if (getenv("MAILHOST_DRIVER_LDAP_DEBUG") != NULL) {
		/* libldap's own trace on stderr (-1: everything) */
		int level = atoi(getenv("MAILHOST_DRIVER_LDAP_DEBUG"));

		ldap_set_option(NULL, LDAP_OPT_DEBUG_LEVEL, &level);
		ber_set_option(NULL, LBER_OPT_DEBUG_LEVEL, &level);
	}
	conf = conf_load(conf_path, errbuf, sizeof(errbuf));
	if (conf == NULL) {
		printf("ERROR %s\n", errbuf);
		return 2;
	}
	if (mailhost_global_init(&conf->burl, &err) < 0) {
		printf("ERROR %s\n", err);
		conf_free(&conf);
		return 2;
	}
	base = event_base_new();
	dir = mailhost_dir_new(base, &conf->burl, &err);
	if (dir == NULL) {
		printf("%s %s\n", err != NULL ? "ERROR" : "NODIR",
		    err != NULL ? err : "no burl.mailhost group");
		mailhost_global_deinit();
		event_base_free(base);
		conf_free(&conf);
		return err != NULL ? 2 : 0;
	}
	printf("READY\n");
	input = evbuffer_new();
	ev_stdin = event_new(base, 0, EV_READ | EV_PERSIST, on_stdin, NULL);
	event_add(ev_stdin, NULL);
	event_base_dispatch(base);
	event_free(ev_stdin);
	evbuffer_free(input);
	mailhost_dir_free(&dir);
	mailhost_global_deinit();
	event_base_free(base);
	conf_free(&conf);
	return 0;
}
