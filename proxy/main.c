/*
 * main.c - msaproxy's master process.
 *
 * SECURITY: the master reads the configuration, binds the listening sockets
 * (privileged ports need root), then gives up root for good (setgroups,
 * setgid, setuid to conf->user) before any network input is read.  Workers
 * are forked after that and never had root.  The master itself reads no
 * network input: it only restarts workers and relays signals.
 *
 * With the audit trail on, the master also reads the HMAC key (as root),
 * makes one channel per worker slot, and forks the audit writer
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
#include "rate_limits.h"

#define DEFAULT_CONF SYSCONFDIR "/msaproxy/msaproxy.conf"

static volatile sig_atomic_t got_term, got_hup, got_chld, got_usr1;

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
drop_privileges(const struct conf *conf)
{
	struct passwd *pw;
	gid_t gid;

	if (conf->user[0] == '\0')
		return 0;
	if (getuid() != 0 && geteuid() != 0) {
		log_warn("user = \"%s\" ignored: not running as root", conf->user);
		return 0;
	}
	pw = getpwnam(conf->user);
	if (pw == NULL) {
		log_err("user %s: no such user", conf->user);
		return -1;
	}
	gid = pw->pw_gid;
	if (conf->group[0] != '\0') {
		struct group *gr = getgrnam(conf->group);
		if (gr == NULL) {
			log_err("group %s: no such group", conf->group);
			return -1;
		}
		gid = gr->gr_gid;
	}
	if (setgroups(1, &gid) == -1 || setresgid(gid, gid, gid) == -1 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) == -1) {
		log_err("dropping privileges to %s: %s", conf->user, strerror(errno));
		return -1;
	}
	/* No way back. */
	if (setuid(0) == 0) {
		log_err("could regain root after dropping privileges");
		return -1;
	}
	log_info("running as %s (uid %ld, gid %ld)", conf->user,
	    (long)pw->pw_uid, (long)gid);
	return 0;
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
	     unsigned index)
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
		signal(SIGHUP, SIG_DFL);
		signal(SIGCHLD, SIG_DFL);
		if (fds == NULL)
			_exit(1);
		if (conf->audit.enabled)
			worker_audit_fd = audit_master_child_worker(index);
		listener_fds_for_worker(set, index, fds);
		status = worker_run(conf, (int)index, fds, set->listener_count);
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

int
main(int argc, char **argv)
{
	const char *conf_file = DEFAULT_CONF;
	int foreground = 0, check_only = 0, ch;
	char err[8192];
	struct conf *conf;
	struct listener_set set = { 0, 0, NULL };
	unsigned nworkers, i, alive;
	int exit_status = 0;
	pid_t *pids = NULL, writer = 0;
	time_t *started = NULL, writer_started = 0;
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
		/* before the drop: the URL key and Redis password files */
		if (limits_global_init(conf, &error) < 0) {
			log_err("%s", error);
			fprintf(stderr, "msaproxy: %s\n", error);
			goto fail;
		}
	}
	if (conf->audit.enabled) {
		const char *error = NULL;

		/* as root: the key file may be readable by root only */
		if (audit_master_init(conf, nworkers, &error) < 0) {
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
	if (drop_privileges(conf) < 0)
		goto fail;
	if (conf->audit.enabled && audit_master_check(conf, err, sizeof(err)) < 0) {
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

	pids = calloc(nworkers, sizeof(*pids));
	started = calloc(nworkers, sizeof(*started));
	if (pids == NULL || started == NULL)
		goto fail;
	for (i = 0; i < nworkers; i++) {
		pids[i] = spawn_worker(conf, &set, i);
		started[i] = time(NULL);
	}
	log_info("msaproxy %s started: %u worker(s), %zu listener(s)",
	    PACKAGE_VERSION, nworkers, conf->listener_count);

	while (!got_term) {
		sigsuspend(&old);
		if (got_hup) {
			got_hup = 0;
			log_open(&conf->log, foreground);
			/* for workers forked from now on */
			worker_reload_tls(conf);
			for (i = 0; i < nworkers; i++)
				if (pids[i] > 0)
					kill(pids[i], SIGHUP);
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
				for (i = 0; i < nworkers; i++) {
					if (pids[i] != pid)
						continue;
					log_err("worker %u (pid %ld) %s %d, restarting",
					    i, (long)pid, WIFSIGNALED(status) ?
					    "killed by signal" : "exited with status",
					    WIFSIGNALED(status) ? WTERMSIG(status) :
					    WEXITSTATUS(status));
					/* no fork storm: at most one restart a second */
					if (time(NULL) - started[i] < 1)
						sleep(1);
					pids[i] = spawn_worker(conf, &set, i);
					started[i] = time(NULL);
				}
			}
		}
	}

	log_info("stopping");
	for (i = 0; i < nworkers; i++)
		if (pids[i] > 0)
			kill(pids[i], SIGTERM);
	sigprocmask(SIG_SETMASK, &old, NULL);
	{
		time_t deadline = time(NULL) + conf->timeouts.shutdown + 5;

		for (;;) {
			pid_t pid;
			int status;

			for (alive = 0, i = 0; i < nworkers; i++)
				alive += pids[i] > 0;
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
				for (i = 0; i < nworkers; i++)
					if (pids[i] == pid)
						pids[i] = 0;
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
				for (i = 0; i < nworkers; i++)
					if (pids[i] > 0)
						kill(pids[i], SIGKILL);
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
	free(pids);
	free(started);
	conf_free(&conf);
	return exit_status;
fail:
	/* start-up failed: nothing was forked; give everything back */
	if (set.fds != NULL)
		listener_close_all(&set);
	tls_server_free(&worker_tls);
	audit_master_free();
	free(pids);
	free(started);
	conf_free(&conf);
	return 1;
}
