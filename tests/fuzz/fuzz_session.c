/*
 * fuzz_session.c - libFuzzer target for a whole client session: the state
 * machine of proxy/session.c and the commands of proxy/smtp_cmds.c (with
 * smtp_etrn.c), run for real over a socketpair on a libevent loop.
 *
 *   tests/fuzz/build.sh && tests/fuzz/run.sh 60
 * or by hand (see build.sh for the full source list):
 *   ./fuzz_session -dict=tests/fuzz/session.dict tests/fuzz/corpus/session
 *
 * Setup (once): two configurations written to temporary files and loaded
 * with conf_load(): one "submission" listener without require_auth, no
 * sasl section (AUTH off), no tls section (STARTTLS off), ETRN offered to
 * 127.0.0.0/8.  They differ in the backend: one on a unix socket path that
 * does not exist, so every command that needs it gets its 4xx after a fast
 * ENOENT; the other on a unix socket this harness listens on and serves
 * between the loop's turns (a scripted SMTP server that says yes to
 * everything: the DATA and BDAT paths, the end of data, XCLIENT).
 *
 * Input: a 4-byte header, then the client's bytes.
 *   byte 0: bits 0-6 choose what the worker believes the backend offers
 *           (backend_known: PIPELINING, CHUNKING, BINARYMIME, 8BITMIME,
 *           SMTPUTF8, SIZE, ETRN; none of them = not known yet) and what
 *           the fake backend's EHLO offers; bit 7 closes the client's
 *           write side after the last byte (EOF);
 *   bytes 1-3: where the client's bytes are cut into four writes
 *           (each a fraction n/256 of their length); the low bit of
 *           byte 1 picks the fake backend instead of the missing one,
 *           the low bit of byte 2 adds XCLIENT to its EHLO.
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
#include <sys/un.h>
#include <event2/event.h>

#include "backend.h"
#include "conf.h"
#include "log.h"
#include "session.h"
#include "worker.h"

static struct conf *conf;		/* backend: nowhere (ENOENT) */
static struct conf *conf_live;		/* backend: the fake one below */
static char be_dir[256], be_path[300];
static int be_listen = -1;
static void be_init(void);
static void be_serve(void);
static void be_reset(void);
static int verbose;		/* FUZZ_SESSION_VERBOSE: replies to stderr */

/* %s: the backend's address */
static const char conf_text[] =
    "server_name = \"fuzz.example\";\n"
    "log = { destination = \"stderr\"; level = \"err\"; };\n"
    "listeners = ( { name = \"sub\"; kind = \"submission\";\n"
    "    address = \"127.0.0.1:587\"; require_auth = false; } );\n"
    "backend = { address = \"%s\"; };\n"
    "etrn = { listeners = [ \"sub\" ];\n"
    "    rules = ( { networks = [ \"127.0.0.0/8\" ];\n"
    "        allow = [ \"@example.org\", \"#q\", \"mx.example.net\" ]; } ); };\n";

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct conf *
load(const char *backend)
{
	char path[512], errbuf[4096];
	struct conf *c;
	FILE *fp;
	int fd;

	snprintf(path, sizeof(path), "%s/fuzz_session.XXXXXX.conf", be_dir);
	if ((fd = mkstemps(path, 5)) == -1 || (fp = fdopen(fd, "w")) == NULL) {
		perror("fuzz_session: temporary config");
		abort();
	}
	fprintf(fp, conf_text, backend);
	fclose(fp);
	c = conf_load(path, errbuf, sizeof(errbuf));
	unlink(path);
	if (c == NULL) {
		fprintf(stderr, "fuzz_session: conf_load: %s\n", errbuf);
		abort();
	}
	return c;
}

static void
cleanup(void)
{
	if (be_listen != -1)
		close(be_listen);
	unlink(be_path);
	rmdir(be_dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = getenv("TMPDIR");
	struct sockaddr_un sun;

	(void)argc;
	(void)argv;
	signal(SIGPIPE, SIG_IGN);
	snprintf(be_dir, sizeof(be_dir), "%s/fuzz_session.XXXXXX",
	    dir != NULL && *dir != '\0' ? dir : "/tmp");
	if (mkdtemp(be_dir) == NULL) {
		perror("fuzz_session: mkdtemp");
		abort();
	}
	snprintf(be_path, sizeof(be_path), "%s/backend.sock", be_dir);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(be_path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "fuzz_session: %s: path too long\n", be_path);
		abort();
	}
	memcpy(sun.sun_path, be_path, strlen(be_path) + 1);
	if ((be_listen = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) == -1 ||
	    bind(be_listen, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    listen(be_listen, 16) == -1) {
		perror("fuzz_session: backend socket");
		abort();
	}
	atexit(cleanup);
	be_init();
	conf = load("/nonexistent/msaproxy-fuzz/backend.sock");
	conf_live = load(be_path);
	log_open(&conf->log, 1);
	verbose = getenv("FUZZ_SESSION_VERBOSE") != NULL;
	return 0;
}

/* ---------------------------------------------------------------- */
/* The fake backend: a scripted SMTP server on be_listen, served between
 * the event loop's turns.  It says yes to everything: 250 to commands,
 * 354 to DATA, 250 after the dot or a BDAT chunk, 220 after XCLIENT,
 * 221 to QUIT; its EHLO offers what the input's first byte chose. */

#define BE_MAX 4
#define BE_BUF 65536

struct fake_be {
	int fd;
	enum { FB_CMD, FB_DATA, FB_BDAT } state;
	uint64_t bdat_left;
	size_t len;
	char buf[BE_BUF];
};

static struct fake_be fbs[BE_MAX];
static unsigned be_caps;		/* backend_cap bits for EHLO */

static void
be_say(struct fake_be *b, const char *text)
{
	if (b->fd != -1 &&
	    send(b->fd, text, strlen(text), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 &&
	    errno != EAGAIN && errno != EWOULDBLOCK) {
		close(b->fd);
		b->fd = -1;
	}
}

static void
be_ehlo(struct fake_be *b)
{
	static const struct { unsigned cap; const char *line; } lines[] = {
		{ CAP_PIPELINING, "250-PIPELINING\r\n" },
		{ CAP_SIZE, "250-SIZE 100000\r\n" },
		{ CAP_8BITMIME, "250-8BITMIME\r\n" },
		{ CAP_CHUNKING, "250-CHUNKING\r\n" },
		{ CAP_BINARYMIME, "250-BINARYMIME\r\n" },
		{ CAP_SMTPUTF8, "250-SMTPUTF8\r\n" },
		{ CAP_ETRN, "250-ETRN\r\n" },
		{ CAP_XCLIENT, "250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN\r\n" },
	};
	size_t i;

	be_say(b, "250-backend.example\r\n");
	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		if (be_caps & lines[i].cap)
			be_say(b, lines[i].line);
	be_say(b, "250 ENHANCEDSTATUSCODES\r\n");
}

/* One command line (CRLF stripped). */
static void
be_command(struct fake_be *b, char *line)
{
	if (strncasecmp(line, "EHLO", 4) == 0 ||
	    strncasecmp(line, "LHLO", 4) == 0)
		be_ehlo(b);
	else if (strncasecmp(line, "XCLIENT", 7) == 0)
		be_say(b, "220 backend.example ESMTP\r\n");
	else if (strncasecmp(line, "DATA", 4) == 0) {
		be_say(b, "354 go ahead\r\n");
		b->state = FB_DATA;
	} else if (strncasecmp(line, "BDAT ", 5) == 0) {
		b->bdat_left = strtoull(line + 5, NULL, 10);
		b->state = FB_BDAT;
	} else if (strncasecmp(line, "QUIT", 4) == 0) {
		be_say(b, "221 2.0.0 bye\r\n");
		if (b->fd != -1)
			close(b->fd);
		b->fd = -1;
	} else if (strncasecmp(line, "ETRN", 4) == 0)
		be_say(b, "250 2.0.0 queuing started\r\n");
	else
		be_say(b, "250 2.0.0 ok\r\n");
}

static void
be_input(struct fake_be *b)
{
	size_t pos = 0;
	char *eol;

	while (b->fd != -1 && pos < b->len) {
		if (b->state == FB_BDAT) {
			size_t n = b->len - pos;

			if (n > b->bdat_left)
				n = (size_t)b->bdat_left;
			pos += n;
			b->bdat_left -= n;
			if (b->bdat_left > 0)
				break;
			be_say(b, "250 2.0.0 chunk ok\r\n");
			b->state = FB_CMD;
			continue;
		}
		eol = memchr(b->buf + pos, '\n', b->len - pos);
		if (eol == NULL)
			break;
		*eol = '\0';
		if (eol > b->buf + pos && eol[-1] == '\r')
			eol[-1] = '\0';
		if (b->state == FB_DATA) {
			if (strcmp(b->buf + pos, ".") == 0) {
				be_say(b, "250 2.0.0 queued as FUZZ\r\n");
				b->state = FB_CMD;
			}
		} else
			be_command(b, b->buf + pos);
		pos = (size_t)(eol - b->buf) + 1;
	}
	if (pos >= b->len)
		b->len = 0;
	else if (pos > 0) {
		memmove(b->buf, b->buf + pos, b->len - pos);
		b->len -= pos;
	} else if (b->len == sizeof(b->buf))
		b->len = 0;		/* an overlong line: forget it */
}

static void
be_serve(void)
{
	struct fake_be *b;
	size_t i;
	ssize_t n = -1;
	int fd;

	while ((fd = accept4(be_listen, NULL, NULL,
	    SOCK_NONBLOCK | SOCK_CLOEXEC)) != -1) {
		for (i = 0; i < BE_MAX && fbs[i].fd != -1; i++)
			;
		if (i == BE_MAX) {
			close(fd);	/* too many: the proxy sees it closed */
			continue;
		}
		b = &fbs[i];
		b->fd = fd;
		b->state = FB_CMD;
		b->len = 0;
		be_say(b, "220 backend.example ESMTP\r\n");
	}
	for (i = 0; i < BE_MAX; i++) {
		b = &fbs[i];
		while (b->fd != -1 && (n = read(b->fd, b->buf + b->len,
		    sizeof(b->buf) - b->len)) != 0) {
			if (n < 0) {
				if (errno != EAGAIN && errno != EWOULDBLOCK &&
				    errno != EINTR) {
					close(b->fd);
					b->fd = -1;
				}
				break;
			}
			b->len += (size_t)n;
			be_input(b);
		}
		if (b->fd != -1 && n == 0) {
			close(b->fd);
			b->fd = -1;
		}
	}
}

static void
be_init(void)
{
	size_t i;

	for (i = 0; i < BE_MAX; i++)
		fbs[i].fd = -1;
}

static void
be_reset(void)
{
	size_t i;
	int fd;

	while ((fd = accept4(be_listen, NULL, NULL, SOCK_CLOEXEC)) != -1)
		close(fd);
	for (i = 0; i < BE_MAX; i++) {
		if (fbs[i].fd != -1)
			close(fbs[i].fd);
		fbs[i].fd = -1;
	}
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
		be_serve();
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
	const struct conf *c;
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
	/* the fake backend: the same capabilities, XCLIENT if asked */
	c = data[1] & 1 ? conf_live : conf;
	be_caps = backend_known.caps.flags | (data[2] & 1 ? CAP_XCLIENT : 0);

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
	w.conf = c;
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
	s = session_new(&w, &c->listeners[0], sv[1],
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
	be_reset();
	return 0;
}
