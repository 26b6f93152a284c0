/*
 * fuzz_session.c - libFuzzer target for a whole client session: the state
 * machine of proxy/session.c and the commands of proxy/smtp_cmds.c (with
 * smtp_etrn.c), run for real over a socketpair on a libevent loop.
 *
 *   tests/fuzz/build.sh && tests/fuzz/run.sh 60
 * or by hand (see build.sh for the full source list):
 *   ./fuzz_session -dict=tests/fuzz/session.dict tests/fuzz/corpus/session
 *
 * Setup (once): a configuration written to a temporary file and loaded with
 * conf_load(): one "submission" listener without require_auth, no sasl
 * section (AUTH off), no tls section (STARTTLS off), ETRN offered to
 * 127.0.0.1, and a backend on a unix socket path that does not exist, so
 * every command that needs the backend gets its 4xx after a fast ENOENT.
 *
 * Input: a 4-byte header, then the client's bytes.
 *   byte 0: bits 0-6 choose what the worker believes the backend offers
 *           (backend_known: PIPELINING, CHUNKING, BINARYMIME, 8BITMIME,
 *           SMTPUTF8, SIZE, ETRN; none of them = not known yet), bit 7
 *           closes the client's write side after the last byte (EOF);
 *   bytes 1-3: where the client's bytes are cut into four writes
 *           (each a fraction n/256 of their length).
 * Each write is followed by a few non-blocking turns of the event loop; the
 * replies are read and thrown away.  Everything is bounded by turn counts,
 * never by time, so a run takes a few milliseconds.  Afterwards whatever
 * is left (the session, unless it closed itself) is freed with
 * session_free() and the event base with event_base_free(): LeakSanitizer
 * reports anything a session path forgot.  FUZZ_SESSION_VERBOSE=1 in the
 * environment copies the replies to stderr (to read a reproducer's run).
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <event2/event.h>

#include "backend.h"
#include "conf.h"
#include "log.h"
#include "session.h"
#include "worker.h"

static struct conf *conf;
static int verbose;		/* FUZZ_SESSION_VERBOSE: replies to stderr */

static const char conf_text[] =
    "server_name = \"fuzz.example\";\n"
    "log = { destination = \"stderr\"; level = \"err\"; };\n"
    "listeners = ( { name = \"sub\"; kind = \"submission\";\n"
    "    address = \"127.0.0.1:587\"; require_auth = false; } );\n"
    "backend = { address = \"/nonexistent/msaproxy-fuzz/backend.sock\"; };\n"
    "etrn = { listeners = [ \"sub\" ];\n"
    "    rules = ( { networks = [ \"127.0.0.0/8\" ];\n"
    "        allow = [ \"@example.org\", \"#q\", \"mx.example.net\" ]; } ); };\n";

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = getenv("TMPDIR");
	char path[512], errbuf[4096];
	FILE *fp;
	int fd;

	(void)argc;
	(void)argv;
	signal(SIGPIPE, SIG_IGN);
	snprintf(path, sizeof(path), "%s/fuzz_session.XXXXXX.conf",
	    dir != NULL && *dir != '\0' ? dir : "/tmp");
	if ((fd = mkstemps(path, 5)) == -1 || (fp = fdopen(fd, "w")) == NULL) {
		perror("fuzz_session: temporary config");
		abort();
	}
	fputs(conf_text, fp);
	fclose(fp);
	conf = conf_load(path, errbuf, sizeof(errbuf));
	unlink(path);
	if (conf == NULL) {
		fprintf(stderr, "fuzz_session: conf_load: %s\n", errbuf);
		abort();
	}
	log_open(&conf->log, 1);
	verbose = getenv("FUZZ_SESSION_VERBOSE") != NULL;
	return 0;
}

/* Read and throw away whatever the proxy wrote; 0 once it closed. */
static int
drain(int fd)
{
	char buf[4096];
	ssize_t n;

	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n > 0) {
			if (verbose)
				fwrite(buf, 1, (size_t)n, stderr);
			continue;
		}
		if (n == 0)
			return 0;
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
	}
}

static void
turns(struct event_base *base, int fd, int n)
{
	while (n-- > 0) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		drain(fd);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned cap_bits[] = { CAP_PIPELINING, CAP_CHUNKING,
	    CAP_BINARYMIME, CAP_8BITMIME, CAP_SMTPUTF8, CAP_SIZE, CAP_ETRN };
	struct worker w;
	struct session *s;
	struct sockaddr_in peer;
	size_t cut[5], body_len, off, i, k;
	const uint8_t *body;
	int sv[2], eof;

	if (size < 4)
		return 0;
	body = data + 4;
	body_len = size - 4;

	/* what the worker's probe would have learnt of the backend */
	memset(&backend_known, 0, sizeof(backend_known));
	for (i = 0; i < sizeof(cap_bits) / sizeof(cap_bits[0]); i++)
		if (data[0] & (1u << i))
			backend_known.caps.flags |= cap_bits[i] |
			    CAP_ENHANCEDSTATUSCODES;
	if (backend_known.caps.flags & CAP_SIZE)
		backend_known.caps.size = 100000;
	backend_known.valid = backend_known.caps.flags != 0;
	eof = (data[0] & 0x80) != 0;

	/* four writes, cut at sorted fractions of the body */
	cut[0] = 0;
	for (i = 1; i <= 3; i++)
		cut[i] = body_len * data[i] / 256;
	cut[4] = body_len;
	for (i = 1; i < 4; i++)
		for (k = i + 1; k < 4; k++)
			if (cut[k] < cut[i]) {
				size_t t = cut[i];

				cut[i] = cut[k];
				cut[k] = t;
			}

	memset(&w, 0, sizeof(w));
	w.conf = conf;
	TAILQ_INIT(&w.sessions);
	if ((w.base = event_base_new()) == NULL)
		abort();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
	    sv) == -1)
		abort();

	memset(&peer, 0, sizeof(peer));
	peer.sin_family = AF_INET;
	peer.sin_port = htons(40000);
	peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* the session owns sv[1] from here on (also when this fails) */
	s = session_new(&w, &conf->listeners[0], sv[1],
	    (const struct sockaddr *)&peer, sizeof(peer));
	if (s == NULL)
		goto out;

	turns(w.base, sv[0], 2);		/* the greeting */
	for (i = 0; i < 4; i++) {
		off = cut[i];
		/* a piece the session does not take (input paused, buffer
		 * full) is retried for a bounded number of turns */
		for (k = 0; k < 16 && off < cut[i + 1]; k++) {
			ssize_t n = write(sv[0], body + off, cut[i + 1] - off);

			if (n > 0)
				off += (size_t)n;
			else if (n == -1 && errno != EAGAIN &&
			    errno != EWOULDBLOCK && errno != EINTR)
				break;		/* the session closed */
			turns(w.base, sv[0], 4);
		}
		turns(w.base, sv[0], 4);
		if (TAILQ_EMPTY(&w.sessions))
			break;
	}
	if (eof && !TAILQ_EMPTY(&w.sessions)) {
		shutdown(sv[0], SHUT_WR);
		turns(w.base, sv[0], 8);
	}

out:
	while ((s = TAILQ_FIRST(&w.sessions)) != NULL)
		session_free(&s);
	/* callbacks made deferred by the frees (none should be left) */
	event_base_loop(w.base, EVLOOP_NONBLOCK);
	close(sv[0]);
	event_base_free(w.base);
	return 0;
}
