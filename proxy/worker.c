/*
 * worker.c - see worker.h.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/dns.h>
#include <event2/listener.h>

#include "audit.h"
#include "backend.h"
#include "conf.h"
#include "log.h"
#include "session.h"
#include "smtp_reply.h"
#include "tls.h"
#include "worker.h"
#include "burl.h"
#include "privsep.h"
#include "rate_limits.h"

struct tls_server *worker_tls;
int worker_audit_fd = -1;
unsigned worker_slot;
struct privsep_id worker_privsep;

struct accept_ctx {
	struct worker *w;
	const struct conf_listener *lc;
	struct evconnlistener *listener;
	struct event *resume;		/* re-enables accepting after EMFILE */
};

static void
accept_cb(struct evconnlistener *el, evutil_socket_t fd,
	  struct sockaddr *sa, int salen, void *arg)
{
	struct accept_ctx *ac = arg;
	struct worker *w = ac->w;

	(void)el;
	if (w->shutting_down || w->draining) {
		close(fd);
		return;
	}
	evutil_make_socket_nonblocking(fd);
	if (w->session_count >= w->conf->limits.max_connections) {
		const char *t = smtp_reply_text(R_TOO_MANY_CONN);

		log_warn("max_connections (%u) reached: refusing a connection "
		    "on %s", w->conf->limits.max_connections, ac->lc->name);
		audit_refused_connection(sa, ac->lc->name,
		    "limits.max_connections", w->conf->limits.max_connections);
		/* best effort: one non-blocking write, then close */
		(void)!write(fd, t, strlen(t));
		(void)!write(fd, "\r\n", 2);
		close(fd);
		return;
	}
	session_new(w, ac->lc, fd, sa, (socklen_t)salen);
}

static void
accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct accept_ctx *ac = arg;

	(void)fd;
	(void)what;
	if (!ac->w->shutting_down && !ac->w->draining)
		evconnlistener_enable(ac->listener);
}

/*
 * Out of descriptors (EMFILE, ENFILE) or kernel memory: the connection
 * stays in the kernel's queue, so a listener left enabled is woken again at
 * once and the worker spins, logging a line per turn.  Stop accepting on
 * this listener for half a second (as nginx does), with one log line per
 * pause; sessions already open go on.
 */
static void
accept_error_cb(struct evconnlistener *el, void *arg)
{
	struct accept_ctx *ac = arg;
	int err = EVUTIL_SOCKET_ERROR();

	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		struct timeval tv = { 0, 500 * 1000 };

		if (ac->resume == NULL)
			ac->resume = evtimer_new(ac->w->base, accept_resume_cb, ac);
		if (ac->resume != NULL) {
			log_warn("accept on %s: %s: not accepting for 0.5 s "
			    "(raise the file descriptor limit: msaproxy(8))",
			    ac->lc->name, evutil_socket_error_to_string(err));
			evconnlistener_disable(el);
			evtimer_add(ac->resume, &tv);
			return;
		}
	}
	log_warn("accept on %s: %s", ac->lc->name,
	    evutil_socket_error_to_string(err));
}

/* --- backend capability probe --- */

static void probe_start(struct worker *w);

static void
probe_on_reply(void *ctx, uint32_t tag, const struct backend_reply *r)
{
	(void)ctx;
	(void)tag;
	(void)r;
}

static void
probe_on_ready(void *ctx, const struct backend_caps *caps)
{
	struct worker *w = ctx;

	log_debug("backend probe: capabilities 0x%x size %llu", caps->flags,
	    (unsigned long long)caps->size);
	backend_quit(w->probe);
	backend_free(&w->probe);
}

static void
probe_on_error(void *ctx, enum smtp_reply_id why, const uint32_t *tags,
	       size_t ntags)
{
	struct worker *w = ctx;

	(void)tags;
	(void)ntags;
	log_warn("backend probe of %s failed: %s", w->conf->backend.addr.text,
	    smtp_reply_text(why));
	backend_free(&w->probe);
}

static const struct backend_cbs probe_cbs = {
	.on_reply = probe_on_reply,
	.on_ready = probe_on_ready,
	.on_error = probe_on_error,
};

static void
probe_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct timeval tv = { w->conf->backend.capability_refresh, 0 };

	(void)fd;
	(void)what;
	probe_start(w);
	evtimer_add(w->probe_timer, &tv);
}

static void
probe_start(struct worker *w)
{
	if (w->probe != NULL || w->shutting_down)
		return;
	w->probe = backend_new(w->base, w->conf, &probe_cbs, w, "probe");
}

/* --- shutdown --- */

static void
check_done(struct worker *w)
{
	if ((w->shutting_down || w->draining) && w->session_count == 0)
		event_base_loopexit(w->base, NULL);
}

static void
shutdown_force_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct session *s, *next;

	(void)fd;
	(void)what;
	log_info("shutdown: closing %u remaining session(s)", w->session_count);
	for (s = TAILQ_FIRST(&w->sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, entry);
		session_shutdown(s, 1);
	}
	/* sessions still unable to flush are dropped a little later */
	{
		struct timeval tv = { 2, 0 };
		event_base_loopexit(w->base, &tv);
	}
}

static void
worker_shutdown(struct worker *w)
{
	struct session *s, *next;
	struct timeval tv = { w->conf->timeouts.shutdown, 0 };
	size_t i;

	if (w->shutting_down)
		return;
	w->shutting_down = 1;
	log_info("shutting down, %u session(s) open", w->session_count);
	for (i = 0; i < w->listener_count; i++)
		evconnlistener_disable(w->listeners[i]);
	if (w->probe != NULL)
		backend_free(&w->probe);
	evtimer_del(w->probe_timer);
	for (s = TAILQ_FIRST(&w->sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, entry);
		session_shutdown(s, 0);
	}
	w->shutdown_timer = evtimer_new(w->base, shutdown_force_cb, w);
	evtimer_add(w->shutdown_timer, &tv);
	check_done(w);
}

int
worker_reload_tls(const struct conf *conf)
{
	struct tls_server *ts;
	const char *error = NULL;

	if (!conf->tls.enabled)
		return 0;
	ts = tls_server_new(&conf->tls, &error);
	if (ts == NULL) {
		log_err("SIGHUP: TLS reload failed, keeping the old "
		    "certificates: %s", error);
		return -1;
	}
	tls_server_free(&worker_tls);
	worker_tls = ts;
	log_info("SIGHUP: TLS certificates reloaded");
	return 0;
}

static void
drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)what;
	log_info("reload: %u session(s) still open after %u s: shutting down",
	    w->session_count, w->conf->timeouts.drain);
	worker_shutdown(w);
}

/*
 * SIGUSR2 from the master after a reload: a worker of the new generation
 * accepts on our sockets now.  Stop accepting (what is queued on the
 * socket is the new worker's), serve the open sessions to their end, and
 * exit when none is left, or after timeouts.drain.
 */
static void
worker_drain(struct worker *w)
{
	struct timeval tv = { w->conf->timeouts.drain, 0 };
	size_t i;

	if (w->draining || w->shutting_down)
		return;
	w->draining = 1;
	log_info("reload: a new worker took over; serving %u open session(s) "
	    "to their end", w->session_count);
	for (i = 0; i < w->listener_count; i++)
		evconnlistener_disable(w->listeners[i]);
	w->drain_timer = evtimer_new(w->base, drain_timeout_cb, w);
	if (w->drain_timer != NULL)
		evtimer_add(w->drain_timer, &tv);
	check_done(w);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct worker *w = arg;

	(void)what;
	if (sig == SIGHUP) {
		log_open(&w->conf->log, 1);
		log_info("SIGHUP: log reopened");
		return;
	}
	if (sig == SIGUSR2) {
		worker_drain(w);
		return;
	}
	worker_shutdown(w);
}

void
worker_session_closed(struct worker *w, struct session *s)
{
	TAILQ_REMOVE(&w->sessions, s, entry);
	w->session_count--;
	check_done(w);
}

int
worker_run(const struct conf *conf, int index, const int *fds, size_t count)
{
	struct worker w;
	struct accept_ctx *acs;
	char prefix[32];
	size_t i;
	int status = 0;

	memset(&w, 0, sizeof(w));
	w.index = index;
	w.conf = conf;
	TAILQ_INIT(&w.sessions);
	snprintf(prefix, sizeof(prefix), "worker %d", index);
	log_set_prefix(prefix);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);	/* the audit writer's (log rotation) */
	signal(SIGUSR2, SIG_IGN);	/* until the loop handles it */

	{
		/* One loop per process: no locking. */
		struct event_config *cfg = event_config_new();

		if (cfg != NULL) {
			event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
			w.base = event_base_new_with_config(cfg);
			event_config_free(cfg);
		}
	}
	if (w.base == NULL) {
		log_err("event_base_new failed");
		return 1;
	}
	{
		const char *error = NULL;

		if (audit_client_init(w.base, conf, worker_audit_fd, &error) < 0) {
			log_err("audit: %s", error);
			event_base_free(w.base);
			return 1;
		}
	}
	if (conf->reverse_dns) {
		/* a configured resolver, else /etc/resolv.conf's */
		w.dns = evdns_base_new(w.base, conf->resolver[0] ? 0 :
		    EVDNS_BASE_INITIALIZE_NAMESERVERS);
		if (w.dns != NULL && conf->resolver[0] &&
		    evdns_base_nameserver_ip_add(w.dns, conf->resolver) != 0) {
			log_err("resolver %s: not a usable address", conf->resolver);
			evdns_base_free(w.dns, 0);
			w.dns = NULL;
		}
		if (w.dns == NULL)
			log_warn("reverse_dns: no resolver configured, disabled");
		else {
			char tv[16];

			/* half the greeting timeout: a silent resolver must not
			 * make the session time out before it is greeted */
			snprintf(tv, sizeof(tv), "%.1f", conf->timeouts.greeting / 2.0);
			evdns_base_set_option(w.dns, "timeout:", tv);
			evdns_base_set_option(w.dns, "attempts:", "1");
		}
	}
	{
		char err[600];

		/* Root is given up here, before any input is read: what needs
		 * root was done by the master, and the resolver's files were
		 * read just above (they need not exist inside a chroot). */
		if (privsep_drop(&worker_privsep, conf->chroot, err,
		    sizeof(err)) < 0) {
			log_err("%s: not serving", err);
			if (w.dns != NULL)
				evdns_base_free(w.dns, 0);
			event_base_free(w.base);
			return 1;
		}
		if (worker_privsep.drop)
			log_debug("running as %s%s%s", worker_privsep.name,
			    conf->chroot[0] ? ", chroot " : "", conf->chroot);
	}
	if (conf->burl.enabled) {
		const char *err = NULL;

		/* after the fork: the Kerberos refresher is a thread */
		w.burl = burl_worker_new(w.base, conf, &err);
		if (w.burl == NULL) {
			log_err("burl: %s", err != NULL ? err : "cannot start");
			return 1;
		}
	}
	{
		const char *err = NULL;

		w.limits = limits_worker_new(w.base, conf, worker_slot, &err);
		if (w.limits == NULL) {
			log_err("rate_limits: %s", err != NULL ? err : "cannot start");
			return 1;
		}
	}
	acs = calloc(count, sizeof(*acs));
	w.listeners = calloc(count, sizeof(*w.listeners));
	if (acs == NULL || w.listeners == NULL) {
		log_err("out of memory");
		return 1;
	}
	for (i = 0; i < count; i++) {
		acs[i].w = &w;
		acs[i].lc = &conf->listeners[i];
		w.listeners[i] = evconnlistener_new(w.base, accept_cb, &acs[i],
		    LEV_OPT_CLOSE_ON_EXEC, -1, fds[i]);
		if (w.listeners[i] == NULL) {
			log_err("listener %s: cannot accept", conf->listeners[i].name);
			return 1;
		}
		acs[i].listener = w.listeners[i];
		evconnlistener_set_error_cb(w.listeners[i], accept_error_cb);
		w.listener_count++;
	}
	w.sig_term = evsignal_new(w.base, SIGTERM, signal_cb, &w);
	w.sig_int = evsignal_new(w.base, SIGINT, signal_cb, &w);
	w.sig_hup = evsignal_new(w.base, SIGHUP, signal_cb, &w);
	w.sig_usr2 = evsignal_new(w.base, SIGUSR2, signal_cb, &w);
	evsignal_add(w.sig_term, NULL);
	evsignal_add(w.sig_int, NULL);
	evsignal_add(w.sig_hup, NULL);
	evsignal_add(w.sig_usr2, NULL);
	w.probe_timer = evtimer_new(w.base, probe_timer_cb, &w);
	{
		struct timeval now = { 0, 0 };
		evtimer_add(w.probe_timer, &now);
	}
	log_info("started, %zu listener(s)", count);

	event_base_dispatch(w.base);

	{
		sigset_t stop;

		/* On our way out: a SIGTERM now (the master stopping while we
		 * finish draining) must not kill us with the default action
		 * once the loop's handlers are gone; exit discards it. */
		sigemptyset(&stop);
		sigaddset(&stop, SIGTERM);
		sigaddset(&stop, SIGINT);
		sigprocmask(SIG_BLOCK, &stop, NULL);
	}
	log_info("stopped");
	{
		struct session *s, *next;
		for (s = TAILQ_FIRST(&w.sessions); s != NULL; s = next) {
			next = TAILQ_NEXT(s, entry);
			session_free(&s);
		}
	}
	if (w.probe != NULL)
		backend_free(&w.probe);
	burl_worker_free(&w.burl);
	audit_client_free();	/* after the sessions' last records */
	limits_worker_free(&w.limits);	/* after the sessions */
	for (i = 0; i < w.listener_count; i++) {
		if (acs[i].resume != NULL)
			event_free(acs[i].resume);
		evconnlistener_free(w.listeners[i]);
	}
	event_free(w.sig_term);
	event_free(w.sig_int);
	event_free(w.sig_hup);
	event_free(w.sig_usr2);
	event_free(w.probe_timer);
	if (w.drain_timer != NULL)
		event_free(w.drain_timer);
	if (w.shutdown_timer != NULL)
		event_free(w.shutdown_timer);
	if (w.dns != NULL) {
		/* the deferred callbacks of the lookups cancelled above free
		 * their dns_wait (listeners and timers are gone by now) */
		event_base_loop(w.base, EVLOOP_NONBLOCK);
		evdns_base_free(w.dns, 1);
	}
	event_base_free(w.base);
	free(w.listeners);
	free(acs);
	return status;
}
