/*
 * worker.h - one worker process: one libevent loop, its listeners (its own
 * SO_REUSEPORT socket per TCP listener, the shared socket of a unix
 * listener), its sessions, and the backend capability probe.
 */
#ifndef MSA_WORKER_H
#define MSA_WORKER_H

#include <sys/queue.h>
#include <event2/event.h>

struct conf;
struct session;
struct evdns_base;
struct burl_worker;
struct limits;

struct tls_server;

/* The server TLS contexts (tls section), made by the master (root) before
 * it forks the workers; NULL without TLS.  On SIGHUP the master makes new
 * ones and forks a new generation of workers: a worker never reads a
 * private key. */
extern struct tls_server *worker_tls;

/* Who the worker becomes after its set-up (privsep.h), set by the master. */
struct privsep_id;
extern struct privsep_id worker_privsep;

/* This worker's channel to the audit writer (auth/audit_writer.h), set
 * by the master before worker_run(); -1 when the audit trail is off. */
extern int worker_audit_fd;

/* This worker's slot among both banks of workers (0 .. 2 x workers - 1;
 * worker_run's index is the slot within its bank), set by the master
 * before worker_run(): the shared rate_limits counters (rate_limits.h)
 * hold its sessions' concurrency entries under it. */
extern unsigned worker_slot;

struct worker {
	int index;
	const struct conf *conf;
	struct event_base *base;
	struct evdns_base *dns;		/* NULL unless reverse_dns */
	struct evconnlistener **listeners;
	size_t listener_count;
	TAILQ_HEAD(, session) sessions;
	unsigned session_count;
	int shutting_down;
	int draining;			/* SIGUSR2: a reload replaced us */
	struct event *sig_term, *sig_int, *sig_hup, *sig_usr2;
	struct event *shutdown_timer, *drain_timer;
	struct event *probe_timer;
	struct backend *probe;
	struct burl_worker *burl;	/* NULL unless a burl section exists */
	struct limits *limits;		/* rate_limits (rate_limits.h) */
};

/* Run worker `index` on the listening fds fds[0..count) (one per configured
 * listener, same order).  Returns the process exit status. */
int worker_run(const struct conf *conf, int index, const int *fds, size_t count);

void worker_session_closed(struct worker *w, struct session *s);

/* The master, on SIGHUP: make new TLS contexts for the workers it forks
 * from now on.  0, or -1 (logged) with the old ones kept. */
int worker_reload_tls(const struct conf *conf);

#endif
