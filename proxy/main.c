/*
 * main.c - msaproxy's master process.
 *
 * SECURITY: the master stays root and reads no network input.  It reads the
 * configuration, binds the listening sockets, and loads what only root may
 * read: certificates and private keys (auth/tls.h), keytabs (copied into
 * memory, auth/keytab.h), password and key files.  Then it forks: every
 * child gives root up before it reads any input (privsep.h): the workers
 * become `user` (optionally in a chroot), the audit writer `audit.user`.
 * No worker ever opens a private key or a keytab.
 *
 * SIGHUP reloads the certificates and keytabs by generations, as nginx
 * does: the master loads them again (as root), forks a new set of workers
 * on the same listening sockets, and tells the old ones (SIGUSR2) to stop
 * accepting and serve their open sessions to the end (timeouts.drain).
 * Worker slots come in two banks, one per generation, each with its own
 * audit channel; a SIGHUP while the previous generation still drains waits
 * until it is gone.
 *
 * With the audit trail on, the master also reads the HMAC key, makes one
 * channel per worker slot, and forks the audit writer
 * (auth/audit_writer.h) before the workers; it restarts the writer if it
 * dies, relays SIGHUP and SIGUSR1 (rotation) to it, and stops it last, so
 * that it writes the workers' final records.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "config.h"
#include "audit_writer.h"
#include "backend.h"
#include "conf.h"
#include "listener.h"
#include "log.h"
#include "mailhost.h"
#include "smtp_auth.h"
#include "tls.h"
#include "worker.h"
#include "burl.h"
#include "keytab.h"
#include "privsep.h"
#include "rate_limits.h"

#define DEFAULT_CONF SYSCONFDIR "/msaproxy/msaproxy.conf"

static volatile sig_atomic_t got_term, got_hup, got_chld, got_usr1;

/* A worker slot: nworkers slots per bank, two banks (generations). */
struct wproc {
	pid_t pid;			/* 0 = none */
	time_t started;
	int draining;			/* told to drain by a reload */
};

static struct privsep_id audit_privsep;

static void
sig_handler(int sig)
{
	switch (sig) {
	case SIGTERM:
	case SIGINT:
		got_term = 1;
		break;
	case SIGHUP:
		got_hup = 1;
		break;
	case SIGCHLD:
		got_chld = 1;
		break;
	case SIGUSR1:
		got_usr1 = 1;
		break;
	}
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: msaproxy [-f] [-t] [-c file] [-V] [-h]\n"
	    "  -c file  configuration (default %s)\n"
	    "  -f       stay in the foreground\n"
	    "  -t       check the configuration and exit\n"
	    "  -V       print the version and exit\n", DEFAULT_CONF);
}

static int
daemonize(void)
{
	pid_t pid = fork();
	int fd;

	if (pid < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	setsid();
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	if (chdir("/") == -1)
		return -1;
	fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	return 0;
}

static pid_t
spawn_worker(const struct conf *conf, const struct listener_set *set,
	     unsigned slot, unsigned nworkers)
{
	pid_t pid = fork();

	if (pid == 0) {
		int *fds = calloc(set->listener_count, sizeof(int));
		sigset_t none;
		int status;

		/* A worker does not outlive its master (kill -9 of the master):
		 * it gets SIGTERM and shuts down gracefully. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() == 1)
			_exit(1);

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		/* a SIGHUP or SIGUSR2 before the loop handles them must not
		 * kill the worker (their default action) */
		signal(SIGHUP, SIG_IGN);
		signal(SIGUSR2, SIG_IGN);
		signal(SIGCHLD, SIG_DFL);
		if (fds == NULL)
			_exit(1);
		if (conf->audit.enabled)
			worker_audit_fd = audit_master_child_worker(slot);
		worker_slot = slot;
		/* both banks' workers of one index share its sockets */
		listener_fds_for_worker(set, slot % nworkers, fds);
		/* root is given up inside, after the resolver set-up */
		status = worker_run(conf, (int)(slot % nworkers), fds,
		    set->listener_count);
		free(fds);
		/* exit(), not _exit(): LeakSanitizer checks at exit in sanitizer
		 * builds; the master has no buffered stdio at fork time. */
		exit(status);
	}
	if (pid < 0)
		log_err("fork: %s", strerror(errno));
	return pid;
}

/*
 * Fork the audit writer and wait until it has recovered the chain and
 * says it is ready ("OK"), or why not.  Returns its pid, or -1.
 */
static pid_t
spawn_audit_writer(const struct conf *conf, struct listener_set *set)
{
	char buf[1200];
	struct pollfd pfd;
	ssize_t n = 0;
	size_t got = 0;
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0) {
		log_err("pipe: %s", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid == 0) {
		close(p[0]);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() == 1)
			_exit(1);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		signal(SIGUSR1, SIG_DFL);
		signal(SIGCHLD, SIG_DFL);
		listener_close_all(set);	/* it serves no client */
		limits_global_free();		/* and counts nothing */
		{
			char err[700];

			/* the log's directory must be the audit user's */
			if (privsep_drop(&audit_privsep, "", err,
			    sizeof(err)) < 0 ||
			    audit_master_check(conf, err, sizeof(err)) < 0) {
				dprintf(p[1], "ERR %s\n", err);
				_exit(1);
			}
		}
		audit_writer_main(conf, p[1]);
	}
	close(p[1]);
	if (pid < 0) {
		log_err("fork: %s", strerror(errno));
		close(p[0]);
		return -1;
	}
	pfd.fd = p[0];
	pfd.events = POLLIN;
	while (got < sizeof(buf) - 1 && memchr(buf, '\n', got) == NULL) {
		if (poll(&pfd, 1, 30000) <= 0)
			break;
		n = read(p[0], buf + got, sizeof(buf) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(p[0]);
	buf[got] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	if (strcmp(buf, "OK") == 0)
		return pid;
	log_err("audit writer did not start: %s", got > 4 ? buf + 4 :
	    "no answer");
	fprintf(stderr, "msaproxy: audit: %s\n", got > 4 ? buf + 4 :
	    "the writer did not start");
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

/*
 * Copy every keytab the configuration names into memory (keytab.h) and
 * point the configuration at the copies.  As root, before any fork.
 */
static int
load_keytabs(struct conf *conf, char *err, size_t errsize)
{
	const char *error = NULL;
	char mem[700];
	size_t i;

	if (conf->sasl.enabled && conf->sasl.keytab[0] != '\0') {
		if (keytab_to_memory(conf->sasl.keytab, mem, sizeof(mem),
		    &error) < 0 || strlen(mem) >= sizeof(conf->sasl.keytab)) {
			snprintf(err, errsize, "sasl.keytab %s: %s",
			    conf->sasl.keytab, error ? error : "name too long");
			return -1;
		}
		memcpy(conf->sasl.keytab, mem, strlen(mem) + 1);
	}
	for (i = 0; conf->burl.enabled && i < conf->burl.server_count; i++) {
		struct conf_imap_server *is = &conf->burl.servers[i];

		if (is->credentials != CONF_IMAP_CRED_KERBEROS ||
		    is->keytab[0] == '\0')
			continue;
		if (keytab_to_memory(is->keytab, mem, sizeof(mem),
		    &error) < 0 || strlen(mem) >= sizeof(is->keytab)) {
			snprintf(err, errsize, "burl.imap_servers keytab %s: %s",
			    is->keytab, error ? error : "name too long");
			return -1;
		}
		memcpy(is->keytab, mem, strlen(mem) + 1);
	}
	return 0;
}

static unsigned
count_alive(const struct wproc *procs, unsigned from, unsigned n)
{
	unsigned i, alive = 0;

	for (i = from; i < from + n; i++)
		alive += procs[i].pid > 0;
	return alive;
}

/* The first line of conf_load()'s report, and how many more there are. */
static void
log_conf_problems(const char *what, const char *report)
{
	size_t first = strcspn(report, "\n");
	unsigned more = 0;
	const char *p;

	for (p = report + first; *p != '\0'; p++)
		more += *p == '\n' && p[1] != '\0';
	log_err("%s: %.*s%s", what, (int)first, report, more ? " (and more: "
	    "msaproxy -t -c FILE lists them)" : "");
}

/*
 * SIGHUP, first half: the configuration file again, and what the master
 * loads from it as root (keytabs, certificates, password files).  All or
 * nothing: returns the new configuration with all of it in place, or
 * NULL with everything as it was (the file does not load, a setting
 * changed that needs a restart, a file it names cannot be read).
 */
static struct conf *
reread_conf(const struct conf *run, const char *run_sasl_keytab,
	    int foreground)
{
	char err[8192];
	const char *what, *error = NULL;
	struct tls_server *ts = NULL;
	struct conf *next;

	next = conf_load(run->path, err, sizeof(err));
	if (next == NULL) {
		log_conf_problems("SIGHUP: configuration not reloaded", err);
		return NULL;
	}
	if (!foreground && next->log.dest == LOG_DEST_STDERR)
		next->log.dest = LOG_DEST_SYSLOG;	/* as at start */
	what = conf_restart_setting(run, next, run_sasl_keytab);
	if (what != NULL) {
		log_err("SIGHUP: configuration not reloaded: %s changed, "
		    "which needs a restart", what);
		goto fail;
	}
	if (load_keytabs(next, err, sizeof(err)) < 0) {
		log_err("SIGHUP: configuration not reloaded: %s", err);
		goto fail;
	}
	if (next->tls.enabled &&
	    (ts = tls_server_new(&next->tls, &error)) == NULL) {
		log_err("SIGHUP: configuration not reloaded: tls: %s", error);
		goto fail;
	}
	if (burl_global_init(next, &error) < 0) {
		log_err("SIGHUP: configuration not reloaded: %s", error);
		goto fail;
	}
	if (backend_global_init(next, &error) < 0) {
		log_err("SIGHUP: configuration not reloaded: %s", error);
		/* the running one's again; it loaded at start */
		if (burl_global_init(run, &error) < 0)
			log_err("SIGHUP: the running configuration's BURL "
			    "files no longer load (%s): new workers use the "
			    "new file's", error);
		goto fail;
	}
	if (ts != NULL) {
		tls_server_free(&worker_tls);
		worker_tls = ts;
		log_info("SIGHUP: TLS certificates reloaded");
	}
	return next;
fail:
	tls_server_free(&ts);
	conf_free(&next);
	return NULL;
}

/*
 * SIGHUP: the configuration file, certificates, keys and keytabs again
 * (as root), then a new generation of workers in the other bank; the old
 * ones drain.  Returns the bank now serving.  If the new configuration
 * cannot be taken, the certificates and keytabs are still reloaded (as
 * before the file was read again) and the new generation runs with the
 * running configuration; if the certificates do not load, nothing changes.
 */
static unsigned
reload(struct conf **confp, char *sasl_keytab_file, int foreground,
       const struct listener_set *set, struct wproc *procs,
       unsigned nworkers, unsigned bank, unsigned *generation)
{
	unsigned next_bank = 1 - bank, i, started = 0;
	struct conf *next;
	char err[800];

	if (keytab_reload_all(err, sizeof(err)) < 0)
		log_err("SIGHUP: %s", err);
	next = reread_conf(*confp, sasl_keytab_file, foreground);
	if (next != NULL) {
		conf_free(confp);
		*confp = next;
		log_open(&next->log, foreground);
		if (worker_privsep.drop)
			log_chown(worker_privsep.uid, worker_privsep.gid);
		log_info("SIGHUP: configuration %s reloaded", next->path);
	} else if (worker_reload_tls(*confp) < 0) {
		log_err("SIGHUP: reload abandoned; the workers keep running");
		return bank;
	}
	for (i = 0; i < nworkers; i++) {
		struct wproc *w = &procs[next_bank * nworkers + i];

		w->pid = spawn_worker(*confp, set, next_bank * nworkers + i,
		    nworkers);
		w->started = time(NULL);
		w->draining = 0;
		started += w->pid > 0;
	}
	if (started == 0) {
		log_err("SIGHUP: no new worker could be started; the workers "
		    "keep running");
		return bank;
	}
	for (i = 0; i < nworkers; i++) {
		struct wproc *w = &procs[bank * nworkers + i];

		if (w->pid <= 0)
			continue;
		kill(w->pid, SIGUSR2);	/* stop accepting, serve to the end */
		w->draining = 1;
	}
	(*generation)++;
	log_info("SIGHUP: generation %u: %u new worker(s); %u draining",
	    *generation, started, count_alive(procs, bank * nworkers,
	    nworkers));
	return next_bank;
}

int
main(int argc, char **argv)
{
	const char *conf_file = DEFAULT_CONF;
	int foreground = 0, check_only = 0, ch, reload_pending = 0;
	char err[8192], sasl_keytab_file[sizeof(((struct conf *)0)->sasl.keytab)];
	struct conf *conf;
	struct listener_set set = { 0, 0, NULL };
	unsigned nworkers, nslots, i, alive, bank = 0, generation = 1;
	int exit_status = 0;
	pid_t writer = 0;
	struct wproc *procs = NULL;
	time_t writer_started = 0;
	sigset_t block, old;
	struct sigaction sa;

	while ((ch = getopt(argc, argv, "c:ftVh")) != -1) {
		switch (ch) {
		case 'c':
			conf_file = optarg;
			break;
		case 'f':
			foreground = 1;
			break;
		case 't':
			check_only = 1;
			break;
		case 'V':
			printf("msaproxy %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 1;
	}
	/* not whatever the caller had: the pid file is 0644; the log, the
	 * audit files and unix sockets get explicit modes */
	umask(022);
	conf = conf_load(conf_file, err, sizeof(err));
	if (conf == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (check_only) {
		const char *error = NULL;

		/* files the configuration names and msaproxy parses at start */
		if (mailhost_global_init(&conf->burl, &error) < 0) {
			fprintf(stderr, "%s\n", error);
			conf_free(&conf);
			return 1;
		}
		mailhost_global_deinit();
		printf("%s: configuration OK\n", conf_file);
		conf_free(&conf);
		return 0;
	}
	if (!foreground && conf->log.dest == LOG_DEST_STDERR) {
		/* stderr is gone once detached: fall back to syslog */
		conf->log.dest = LOG_DEST_SYSLOG;
	}
	if (log_open(&conf->log, foreground) < 0)
		goto fail;
	log_set_prefix("master");

	nworkers = conf->workers;
	if (nworkers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		nworkers = n > 0 ? (unsigned)n : 1;
	}
	nslots = 2 * nworkers;
	/* who the children become: resolved here, while names resolve */
	if (privsep_resolve(conf->user, conf->group, &worker_privsep, err,
	    sizeof(err)) < 0 ||
	    (conf->audit.enabled && privsep_resolve(conf->audit.user[0] ?
	    conf->audit.user : conf->user, conf->audit.user[0] ?
	    conf->audit.group : conf->group, &audit_privsep, err,
	    sizeof(err)) < 0)) {
		log_err("%s", err);
		fprintf(stderr, "msaproxy: %s\n", err);
		goto fail;
	}
	if (worker_privsep.drop)
		log_chown(worker_privsep.uid, worker_privsep.gid);
	if (conf->chroot[0] != '\0') {
		struct stat st;

		if (!worker_privsep.drop || stat(conf->chroot, &st) < 0 ||
		    !S_ISDIR(st.st_mode)) {
			snprintf(err, sizeof(err), "chroot %s: %s",
			    conf->chroot, !worker_privsep.drop ? "needs root" :
			    "not a directory");
			log_err("%s", err);
			fprintf(stderr, "msaproxy: %s\n", err);
			goto fail;
		}
	}
	/* what the file says, for a reload's comparison (conf_restart_setting) */
	snprintf(sasl_keytab_file, sizeof(sasl_keytab_file), "%s",
	    conf->sasl.keytab);
	if (load_keytabs(conf, err, sizeof(err)) < 0) {
		log_err("%s", err);
		fprintf(stderr, "msaproxy: %s\n", err);
		goto fail;
	}
	if (conf->tls.enabled) {
		const char *error = NULL;

		/* before the workers fork: they share the session ticket
		 * keys made here, so a ticket from one resumes in another */
		worker_tls = tls_server_new(&conf->tls, &error);
		if (worker_tls == NULL) {
			log_err("tls: %s", error);
			fprintf(stderr, "msaproxy: tls: %s\n", error);
			goto fail;
		}
	}
	{
		const char *error = NULL;

		if (smtp_auth_init(conf, &error) < 0) {
			log_err("sasl: %s", error);
			fprintf(stderr, "msaproxy: sasl: %s\n", error);
			goto fail;
		}
	}
	{
		const char *error = NULL;

		if (backend_global_init(conf, &error) < 0) {
			log_err("backend TLS: %s", error);
			fprintf(stderr, "msaproxy: backend TLS: %s\n", error);
			goto fail;
		}
		if (burl_global_init(conf, &error) < 0) {
			log_err("%s", error);
			fprintf(stderr, "msaproxy: %s\n", error);
			goto fail;
		}
		/* the URL key and Redis password files; before the fork:
		 * the counters the workers share, a slot per worker of
		 * either bank (generation) */
		if (limits_global_init(conf, nslots, &error) < 0) {
			log_err("%s", error);
			fprintf(stderr, "msaproxy: %s\n", error);
			goto fail;
		}
	}
	if (conf->audit.enabled) {
		const char *error = NULL;

		/* the key file may be readable by root only */
		if (audit_master_init(conf, nslots, &error) < 0) {
			log_err("audit: %s", error);
			fprintf(stderr, "msaproxy: audit: %s\n", error);
			goto fail;
		}
	}
	if (listener_bind_all(conf, nworkers, &set, err, sizeof(err)) < 0) {
		log_err("%s", err);
		fprintf(stderr, "msaproxy: %s\n", err);
		goto fail;
	}
	if (!foreground && daemonize() < 0) {
		log_err("daemonize: %s", strerror(errno));
		goto fail;
	}
	if (conf->pid_file[0] != '\0') {
		FILE *f = fopen(conf->pid_file, "w");
		if (f == NULL) {
			log_err("pid_file %s: %s", conf->pid_file, strerror(errno));
		} else {
			fprintf(f, "%ld\n", (long)getpid());
			fclose(f);
		}
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = sig_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGCHLD);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &old);

	if (conf->audit.enabled) {
		/* before the workers: the first records wait for nobody */
		writer = spawn_audit_writer(conf, &set);
		if (writer < 0)
			goto fail;
		writer_started = time(NULL);
	}

	procs = calloc(nslots, sizeof(*procs));
	if (procs == NULL)
		goto fail;
	for (i = 0; i < nworkers; i++) {
		procs[i].pid = spawn_worker(conf, &set, i, nworkers);
		procs[i].started = time(NULL);
	}
	log_info("msaproxy %s started: %u worker(s) as %s, %zu listener(s)",
	    PACKAGE_VERSION, nworkers, worker_privsep.drop ?
	    worker_privsep.name : "the invoking user", conf->listener_count);

	while (!got_term) {
		sigsuspend(&old);
		if (got_hup) {
			got_hup = 0;
			log_open(&conf->log, foreground);
			if (worker_privsep.drop)
				log_chown(worker_privsep.uid,
				    worker_privsep.gid);
			/* every worker reopens the log (a rotated file) */
			for (i = 0; i < nslots; i++)
				if (procs[i].pid > 0)
					kill(procs[i].pid, SIGHUP);
			if (count_alive(procs, (1 - bank) * nworkers,
			    nworkers) > 0) {
				log_warn("SIGHUP: the workers of the previous "
				    "reload are still draining: reloading when "
				    "they are gone");
				reload_pending = 1;
			} else {
				bank = reload(&conf, sasl_keytab_file,
				    foreground, &set, procs, nworkers, bank,
				    &generation);
			}
			if (writer > 0)
				kill(writer, SIGHUP);	/* rotates */
		}
		if (got_usr1) {
			got_usr1 = 0;
			if (writer > 0)
				kill(writer, SIGUSR1);	/* rotates */
		}
		if (got_chld && !got_term) {
			pid_t pid;
			int status;

			got_chld = 0;
			while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
				if (pid == writer) {
					log_err("audit writer (pid %ld) %s %d, "
					    "restarting", (long)pid,
					    WIFSIGNALED(status) ?
					    "killed by signal" :
					    "exited with status",
					    WIFSIGNALED(status) ?
					    WTERMSIG(status) :
					    WEXITSTATUS(status));
					if (time(NULL) - writer_started < 1)
						sleep(1);
					writer = spawn_audit_writer(conf, &set);
					writer_started = time(NULL);
					if (writer < 0) {
						/* workers fail their
						 * transactions (timeout) */
						log_err("audit writer cannot be "
						    "restarted: stopping");
						writer = 0;
						got_term = 1;
					}
					continue;
				}
				for (i = 0; i < nslots; i++) {
					if (procs[i].pid != pid)
						continue;
					procs[i].pid = 0;
					/* what its sessions still held (a
					 * crash, a kill) is to be given back:
					 * the workers do it, the slot's next
					 * one before it serves */
					limits_slot_reset(i);
					if (procs[i].draining &&
					    WIFEXITED(status)) {
						log_info("worker %u (pid %ld) of "
						    "the previous generation "
						    "drained, exited %d", i %
						    nworkers, (long)pid,
						    WEXITSTATUS(status));
						continue;
					}
					if (procs[i].draining) {
						/* not restarted: replaced */
						log_err("worker %u (pid %ld) of "
						    "the previous generation "
						    "killed by signal %d",
						    i % nworkers, (long)pid,
						    WTERMSIG(status));
						continue;
					}
					log_err("worker %u (pid %ld) %s %d, restarting",
					    i % nworkers, (long)pid,
					    WIFSIGNALED(status) ?
					    "killed by signal" : "exited with status",
					    WIFSIGNALED(status) ? WTERMSIG(status) :
					    WEXITSTATUS(status));
					/* no fork storm: at most one restart a second */
					if (time(NULL) - procs[i].started < 1)
						sleep(1);
					procs[i].pid = spawn_worker(conf, &set, i,
					    nworkers);
					procs[i].started = time(NULL);
				}
			}
			if (reload_pending && count_alive(procs,
			    (1 - bank) * nworkers, nworkers) == 0) {
				reload_pending = 0;
				bank = reload(&conf, sasl_keytab_file,
				    foreground, &set, procs, nworkers, bank,
				    &generation);
			}
		}
	}

	log_info("stopping");
	for (i = 0; i < nslots; i++)
		if (procs[i].pid > 0)
			kill(procs[i].pid, SIGTERM);
	sigprocmask(SIG_SETMASK, &old, NULL);
	{
		time_t deadline = time(NULL) + conf->timeouts.shutdown + 5;

		for (;;) {
			pid_t pid;
			int status;

			alive = count_alive(procs, 0, nslots);
			if (alive == 0)
				break;
			pid = waitpid(-1, &status, WNOHANG);
			if (pid > 0 && pid == writer) {
				/* it should outlive the workers */
				log_err("audit writer exited early at shutdown");
				writer = 0;
				exit_status = 1;
				continue;
			}
			if (pid > 0) {
				for (i = 0; i < nslots; i++)
					if (procs[i].pid == pid)
						procs[i].pid = 0;
				/* a worker that did not stop cleanly (a crash,
				 * a sanitizer report) makes the exit status 1 */
				if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
					log_err("worker pid %ld %s %d at shutdown",
					    (long)pid, WIFSIGNALED(status) ?
					    "killed by signal" : "exited with status",
					    WIFSIGNALED(status) ? WTERMSIG(status) :
					    WEXITSTATUS(status));
					exit_status = 1;
				}
				continue;
			}
			if (pid < 0 && errno == ECHILD)
				break;
			if (time(NULL) > deadline) {
				for (i = 0; i < nslots; i++)
					if (procs[i].pid > 0)
						kill(procs[i].pid, SIGKILL);
				deadline = time(NULL) + 5;
			}
			usleep(50000);
		}
	}
	if (writer > 0) {
		/* last: it writes what the workers sent before they exited */
		time_t deadline = time(NULL) + 10;
		int status = 0;

		kill(writer, SIGTERM);
		while (waitpid(writer, &status, WNOHANG) == 0) {
			if (time(NULL) > deadline) {
				log_err("audit writer did not stop: killed");
				kill(writer, SIGKILL);
				waitpid(writer, &status, 0);
				break;
			}
			usleep(20000);
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			exit_status = 1;
	}
	audit_master_free();
	if (conf->pid_file[0] != '\0')
		unlink(conf->pid_file);
	listener_close_all(&set);
	log_info("stopped");
	limits_global_free();
	free(procs);
	tls_server_free(&worker_tls);
	keytab_free_all();
	conf_free(&conf);
	return exit_status;
fail:
	/* start-up failed: nothing was forked; give everything back */
	if (set.fds != NULL)
		listener_close_all(&set);
	tls_server_free(&worker_tls);
	audit_master_free();
	keytab_free_all();
	limits_global_free();
	free(procs);
	conf_free(&conf);
	return 1;
}
