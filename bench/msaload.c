/*
 * msaload - SMTP submission load generator for msaproxy benchmarks.
 *
 * One libevent loop drives -c concurrent client sessions against one SMTP
 * server.  Each session connects, reads the greeting, sends EHLO
 * (optionally STARTTLS + EHLO, AUTH PLAIN) and then transactions of one
 * message each: MAIL, RCPT x r, DATA + message + "." (or BDAT n LAST, or
 * with --burl "BURL <url> LAST": the server fetches the content itself from
 * an IMAP server, RFC 4468).
 * Every reply is checked strictly (RFC 5321 4.2: three digits, "-" or SP,
 * the same code on every line of a multi-line reply, CRLF endings, no
 * reply nobody asked for; an unasked 421 is counted as a server shutdown)
 * and a message counts as accepted only when its final reply is exactly
 * 250.  A refused message is followed by RSET and the session goes on; a
 * broken session counts its message as an error and is replaced.
 *
 * Latency of a message: from queueing MAIL FROM to parsing its final 250.
 * Setup latency of a session: from connect() to "ready for MAIL".
 * TLS handshakes are full ones, unless --tls-resume: then the first
 * session (ticket) the server hands out is offered on every later
 * connection, and the report says how many handshakes were resumed.
 *
 * SECURITY: a benchmark tool.  It refuses targets outside 127.0.0.0/8 and
 * ::1 unless --allow-remote is given, takes numeric addresses only (no DNS)
 * and never verifies TLS certificates.  The AUTH secret is taken from the
 * command line, so it is visible in ps(1): use test credentials only.
 *
 * Output: a results block on stdout whose last line is machine-readable:
 *	msgs_per_s=X p50_ms=Y p99_ms=Z ok=N fail=M
 * Exit status: 0 all accepted (idle mode: all up, none dropped),
 * 2 failures, 1 usage or setup error.
 */

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>

#ifndef TAILQ_FOREACH_SAFE	/* glibc's sys/queue.h lacks it */
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)			\
	for ((var) = TAILQ_FIRST(head);					\
	    (var) != NULL && ((tvar) = TAILQ_NEXT(var, field), 1);	\
	    (var) = (tvar))
#endif

/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with CRLF. */
#define REPLY_LINE_MAX		512
#define EHLO_NAME		"msaload.example.test"
#define MAIL_FROM		"msaload@example.test"
#define BODY_LINE_LEN		76
#define SIZE_MAX_MSG		(64UL * 1024 * 1024)
#define MAX_RCPTS		1000

/* What a pending reply answers; replies arrive in command order. */
enum cmd {
	CMD_GREETING,
	CMD_EHLO,
	CMD_STARTTLS,
	CMD_AUTH,
	CMD_MAIL,
	CMD_RCPT,
	CMD_DATA,
	CMD_DOT,
	CMD_BDAT,
	CMD_BURL,
	CMD_RSET,
	CMD_QUIT,
};

static const char *const cmd_names[] = {
	"greeting", "EHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA",
	"end of data", "BDAT", "BURL", "RSET", "QUIT",
};

/* Why a session failed; one counter each. */
enum err {
	ERR_CONNECT,
	ERR_TLS,
	ERR_TIMEOUT,
	ERR_EOF,
	ERR_IO,
	ERR_PROTOCOL,
	ERR_GREETING,
	ERR_EHLO,
	ERR_STARTTLS,
	ERR_AUTH,
	ERR_CAPABILITY,
	ERR_CLOSED,
	ERR_ABORTED,
	ERR_COUNT
};

static const char *const err_names[ERR_COUNT] = {
	"connect", "tls", "timeout", "eof", "io", "protocol", "greeting",
	"ehlo", "starttls", "auth", "missing_capability", "closed_421",
	"aborted",
};

enum phase {
	PH_CONNECT,	/* TCP connect in progress */
	PH_SETUP,	/* greeting .. EHLO/STARTTLS/AUTH */
	PH_HANDSHAKE,	/* TLS handshake after STARTTLS 220 */
	PH_READY,	/* between transactions, or idle */
	PH_TX,		/* a transaction is in flight */
	PH_QUIT,	/* QUIT sent, waiting for 221 */
	PH_CLOSING,	/* 221 received, waiting for the server's FIN */
};

#define CAP_PIPELINING	0x01
#define CAP_CHUNKING	0x02
#define CAP_STARTTLS	0x04
#define CAP_AUTH_PLAIN	0x08
#define CAP_BURL	0x10

/* A BURL URL: RFC 4468 sets no limit; this is plenty for the URLs IMAP
 * servers generate (about 150 octets). */
#define BURL_URL_MAX	4000
#define BURL_URLS_MAX	1000000

/*
 * --burl: a user and the URLs it sends, round robin.  Without credentials
 * in --burl-file there is one, authenticated with --auth.
 */
struct buser {
	char	*auth_cmd;	/* "AUTH PLAIN b64\r\n" */
	char	*creds;		/* USER:PASS, to match lines; NULL: --auth */
	char	**cmds;		/* "BURL <url> LAST\r\n" each */
	size_t	*lens;
	size_t	 n, cap, next;
};

struct sess {
	TAILQ_ENTRY(sess)	 entry;
	struct bufferevent	*bev;
	enum phase		 phase;
	int			 tls;		/* TLS layer is up */
	int			 tls_offered;	/* a session was offered */
	int			 authed;
	int			 ehlo_after_auth;	/* --burl: EHLO sent again */
	struct buser		*bu;		/* --burl: whose URLs */
	int			 has_msg;	/* holds a reserved message */
	int			 counted_ready;	/* idle mode bookkeeping */
	unsigned int		 caps;		/* from the latest EHLO */
	unsigned int		 caps_new;	/* being collected */
	int			 msgs;		/* transactions finished */
	int			 tx_pipe;	/* this transaction pipelined */
	int			 tx_failed;	/* MAIL/RCPT/DATA refused */
	int			 rcpt_sent;	/* RCPTs written so far */
	int			 tx_sent_dot;	/* empty body after a refusal */
	/* current reply */
	int			 rcode;		/* 0: no reply line seen */
	/* pending replies: ring of enum cmd */
	unsigned char		*pend;
	size_t			 pend_head;
	size_t			 pend_len;
	size_t			 pend_cap;
	double			 t_start;	/* connect() */
	double			 t_mail;	/* MAIL FROM queued */
};

TAILQ_HEAD(sesslist, sess);

struct samples {
	double	*v;
	size_t	 n;
	size_t	 cap;
	int	 sorted;
};

/* Options. */
static struct {
	const char	*host;
	int		 port;
	int		 conc;
	long		 total;
	long		 per_session;
	size_t		 size;
	int		 rcpts;
	double		 duration;
	double		 timeout;
	double		 grace;
	double		 hold;
	long		 idle;
	long		 max_errors;
	int		 pipelining;
	int		 bdat;
	int		 starttls;
	int		 tls_resume;
	int		 allow_remote;
	int		 quiet;
	const char	*auth;		/* USER:PASS */
	const char	*burl;		/* --burl URL */
	const char	*burl_file;	/* --burl-file FILE */
} opt = {
	.host = "127.0.0.1",
	.port = 0,
	.conc = 10,
	.total = 1000,
	.per_session = 1,
	.size = 10240,
	.rcpts = 1,
	.duration = 60,
	.timeout = 30,
	.grace = 10,
	.hold = 0,
	.idle = 0,
	.max_errors = 1000,
};

/* Run state. */
static struct {
	struct event_base	*base;
	SSL_CTX			*ssl_ctx;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	struct sesslist		 sessions;
	int			 active;
	int			 stopping;
	int			 fatal;		/* stop reason was an error */
	int			 finished;
	struct event		*ev_stop;
	struct event		*ev_grace;
	struct event		*ev_progress;
	struct event		*ev_hold;
	struct event		*ev_sigint;
	struct event		*ev_sigterm;
	/* prebuilt payloads */
	char			*data_payload;	/* message + ".\r\n" */
	size_t			 data_len;
	char			*bdat_payload;	/* "BDAT n LAST\r\n" + message */
	size_t			 bdat_len;
	char			*auth_cmd;	/* "AUTH PLAIN b64\r\n" */
	struct buser		*busers;	/* --burl: who sends which URLs */
	size_t			 nbusers;
	size_t			 buser_next;	/* round robin over sessions */
	size_t			 burl_count;	/* URLs, all users */
	long			 burl_reehlo;	/* sessions that needed it */
	/* counters */
	long			 reserved;	/* messages handed to sessions */
	long			 sent;		/* MAIL written */
	long			 accepted;
	long			 rejected;
	long			 msg_errors;
	long			 released;	/* unsent at stop */
	long			 sess_started;
	long			 sess_completed;
	long			 sess_failed;
	long			 sess_aborted;
	long			 close_timeouts;	/* no FIN after 221 */
	long			 errors[ERR_COUNT];
	long			 idle_ready;
	long			 idle_failed;
	long			 idle_dropped;
	int			 idle_announced;
	double			 t_start;
	double			 t_last;	/* last final reply */
	double			 t_end;
	long			 prog_last_ok;
	struct samples		 lat;		/* ms, accepted messages */
	struct samples		 setup;		/* ms, sessions */
	const char		*stop_reason;
	/* TLS: --tls-resume keeps one session (one event loop = one
	 * "thread") and offers it on every later handshake */
	SSL_SESSION		*resume_sess;
	long			 tls_handshakes;
	long			 tls_resumed;
	long			 tls_offered;	/* handshakes that offered it */
	char			 tls_full[128];	/* version/cipher/group, full */
	char			 tls_res[128];	/* the same, resumed */
} run;

static void	usage(void) __attribute__((noreturn));
static void	die(const char *, ...)
		    __attribute__((format(printf, 1, 2), noreturn));
static double	now(void);
static struct timeval *secs_tv(double, struct timeval *);
static void	sess_timeouts(struct sess *, double);
static void	samples_add(struct samples *, double);
static double	samples_pct(struct samples *, double);
static int	parse_size(const char *, size_t *);
static long	parse_long(const char *, const char *, long, long);
static double	parse_secs(const char *, const char *);
static int	target_setup(void);
static void	payloads_build(void);
static char	*auth_build(const char *, const char *);
static struct buser *buser_get(const char *);
static int	burl_add(struct buser *, const char *, size_t, const char *,
		    long);
static void	burl_build(void);
static void	tls_setup(void);
static int	tls_new_session(SSL *, SSL_SESSION *);
static void	tls_done(struct sess *);
static void	raise_nofile(void);
static int	reserve_msg(void);
static void	fill_sessions(void);
static void	sess_start(void);
static void	sess_free(struct sess *);
static void	sess_fail(struct sess *, enum err, const char *, ...)
		    __attribute__((format(printf, 3, 4)));
static void	sess_done(struct sess *);
static int	pend_push(struct sess *, enum cmd);
static int	pend_pop(struct sess *, enum cmd *);
static void	sess_send(struct sess *, const char *, size_t);
static int	sess_setup_next(struct sess *);
static void	sess_next(struct sess *);
static void	tx_start(struct sess *);
static void	tx_next_cmd(struct sess *);
static void	tx_send_content(struct sess *);
static void	tx_end(struct sess *, int);
static void	sess_quit(struct sess *);
static int	tls_start(struct sess *);
static int	unasked_421(struct evbuffer *);
static int	reply_line(struct sess *, const char *, size_t);
static int	reply_done(struct sess *, enum cmd, int);
static void	ehlo_capability(struct sess *, const char *, size_t);
static int	read_input(struct sess *);
static void	read_cb(struct bufferevent *, void *);
static void	event_cb(struct bufferevent *, short, void *);
static void	stop_run(const char *, int);
static void	check_done(void);
static void	stop_cb(evutil_socket_t, short, void *);
static void	grace_cb(evutil_socket_t, short, void *);
static void	progress_cb(evutil_socket_t, short, void *);
static void	signal_cb(evutil_socket_t, short, void *);
static void	idle_check(void);
static void	report(void);

static void
usage(void)
{
	fprintf(stderr,
	    "usage: msaload -p port [-H addr] [-c conc] [-n total] "
	    "[-m per_session]\n"
	    "               [-s size] [-r rcpts] [-d max_seconds] [-q] "
	    "[--pipelining] [--bdat]\n"
	    "               [--starttls [--tls-resume]] [--auth USER:PASS] "
	    "[--idle N [--hold SEC]]\n"
	    "               [--burl URL | --burl-file FILE]\n"
	    "               [--timeout SEC] [--grace SEC] "
	    "[--max-errors N] [--allow-remote]\n"
	    "  -c  concurrent sessions (10); in --idle mode: handshakes in "
	    "flight\n"
	    "  -n  total messages (1000)      -m  messages per session, "
	    "0 = unlimited (1)\n"
	    "  -s  message size, k/m suffix (10240)  -r  recipients (1)\n"
	    "  -d  duration cap in seconds (60)\n"
	    "  --tls-resume  keep the first TLS session (ticket) and offer it "
	    "on every\n"
	    "      later handshake; the report's tls line counts the resumed "
	    "ones\n"
	    "  --burl URL  send \"BURL URL LAST\" (RFC 4468) instead of the "
	    "message; needs\n"
	    "      --auth; -s then only sizes the payload_MB_per_s figure\n"
	    "  --burl-file FILE  one URL per line, used round robin; lines "
	    "\"USER:PASS URL\"\n"
	    "      spread the sessions over several users, each sending its "
	    "own URLs\n");
	exit(1);
}

static void
die(const char *fmt, ...)
{
	va_list ap;

	fputs("msaload: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct timeval *
secs_tv(double secs, struct timeval *tv)
{
	tv->tv_sec = (time_t)secs;
	tv->tv_usec = (suseconds_t)((secs - tv->tv_sec) * 1e6);
	return tv;
}

/* One deadline for every reply (and for connect and the TLS handshake). */
static void
sess_timeouts(struct sess *s, double secs)
{
	struct timeval tv;

	secs_tv(secs, &tv);
	bufferevent_set_timeouts(s->bev, &tv, &tv);
}

static void
samples_add(struct samples *s, double v)
{
	double *nv;
	size_t ncap;

	if (s->n == s->cap) {
		ncap = s->cap ? s->cap * 2 : 4096;
		if ((nv = realloc(s->v, ncap * sizeof(*nv))) == NULL)
			die("out of memory");
		s->v = nv;
		s->cap = ncap;
	}
	s->v[s->n++] = v;
	s->sorted = 0;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile; sorts on first use.  p in [0, 100]. */
static double
samples_pct(struct samples *s, double p)
{
	double r;
	size_t rank;

	if (s->n == 0)
		return 0;
	if (!s->sorted) {
		qsort(s->v, s->n, sizeof(*s->v), cmp_double);
		s->sorted = 1;
	}
	/* rank = ceil(p/100 * n), without libm */
	r = p / 100.0 * s->n;
	rank = (size_t)r;
	if ((double)rank < r)
		rank++;
	if (rank < 1)
		rank = 1;
	if (rank > s->n)
		rank = s->n;
	return s->v[rank - 1];
}

static double
samples_mean(const struct samples *s)
{
	double sum = 0;
	size_t i;

	for (i = 0; i < s->n; i++)
		sum += s->v[i];
	return s->n ? sum / s->n : 0;
}

static int
parse_size(const char *str, size_t *out)
{
	char *end;
	unsigned long long v;
	unsigned long long mult = 1;

	errno = 0;
	v = strtoull(str, &end, 10);
	if (errno != 0 || end == str)
		return -1;
	if (*end == 'k' || *end == 'K') {
		mult = 1024;
		end++;
	} else if (*end == 'm' || *end == 'M') {
		mult = 1024 * 1024;
		end++;
	}
	if (*end != '\0' || v > SIZE_MAX_MSG / mult)
		return -1;
	*out = v * mult;
	return 0;
}

static long
parse_long(const char *name, const char *str, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(str, &end, 10);
	if (errno != 0 || end == str || *end != '\0' || v < min || v > max)
		die("%s: expected an integer in [%ld, %ld], got '%s'", name,
		    min, max, str);
	return v;
}

static double
parse_secs(const char *name, const char *str)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(str, &end);
	if (errno != 0 || end == str || *end != '\0' || !(v > 0) ||
	    v > 86400)
		die("%s: expected seconds in (0, 86400], got '%s'", name, str);
	return v;
}

/*
 * Numeric address only: a benchmark must not depend on DNS, and the
 * loopback check must be about the address actually used.
 */
static int
target_setup(void)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&run.ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&run.ss;
	int loopback;

	memset(&run.ss, 0, sizeof(run.ss));
	if (inet_pton(AF_INET, opt.host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(opt.port);
		run.sslen = sizeof(*sin);
		loopback = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	} else if (inet_pton(AF_INET6, opt.host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(opt.port);
		run.sslen = sizeof(*sin6);
		loopback = IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
	} else
		die("-H %s: not a numeric IPv4 or IPv6 address", opt.host);
	if (!loopback && !opt.allow_remote)
		die("-H %s: not a loopback address (use --allow-remote to "
		    "load a remote server)", opt.host);
	return 0;
}

/*
 * The message: a few header lines, then body lines of BODY_LINE_LEN
 * characters, exactly opt.size octets including the final CRLF.  No line
 * starts with '.', so no dot-stuffing is needed.  Built once; every
 * transaction sends the same bytes by reference.
 */
static void
payloads_build(void)
{
	static const char hdr[] =
	    "From: <" MAIL_FROM ">\r\n"
	    "To: <rcpt0@example.test>\r\n"
	    "Subject: msaload test message\r\n"
	    "Message-ID: <msaload.test@example.test>\r\n"
	    "\r\n";
	char bdat[64];
	char *msg, *p;
	size_t left, n, i, lineno = 0;
	int blen;

	if (opt.size < sizeof(hdr) - 1 + 2)
		die("-s %zu: smaller than the headers (minimum %zu)", opt.size,
		    sizeof(hdr) - 1 + 2);
	if ((msg = malloc(opt.size)) == NULL)
		die("out of memory");
	memcpy(msg, hdr, sizeof(hdr) - 1);
	p = msg + sizeof(hdr) - 1;
	left = opt.size - (sizeof(hdr) - 1);
	while (left > 0) {
		/* Keep at least 2 octets (an empty line) for the end. */
		if (left >= BODY_LINE_LEN + 2 + 2)
			n = BODY_LINE_LEN;
		else if (left <= BODY_LINE_LEN + 2)
			n = left - 2;
		else
			n = left - 2 - 2;
		for (i = 0; i < n; i++)
			p[i] = 'a' + (lineno + i) % 26;
		p[n] = '\r';
		p[n + 1] = '\n';
		p += n + 2;
		left -= n + 2;
		lineno++;
	}

	run.data_len = opt.size + 3;
	if ((run.data_payload = malloc(run.data_len)) == NULL)
		die("out of memory");
	memcpy(run.data_payload, msg, opt.size);
	memcpy(run.data_payload + opt.size, ".\r\n", 3);

	blen = snprintf(bdat, sizeof(bdat), "BDAT %zu LAST\r\n", opt.size);
	run.bdat_len = blen + opt.size;
	if ((run.bdat_payload = malloc(run.bdat_len)) == NULL)
		die("out of memory");
	memcpy(run.bdat_payload, bdat, blen);
	memcpy(run.bdat_payload + blen, msg, opt.size);
	free(msg);
}

/*
 * RFC 4616: AUTH PLAIN with an initial response (RFC 4954 4), for
 * creds = USER:PASS; what names the option or file in messages.
 */
static char *
auth_build(const char *creds, const char *what)
{
	const char *colon;
	unsigned char *raw;
	size_t ulen, plen, rawlen, b64len, cmdlen;
	char *b64, *cmd;

	if ((colon = strchr(creds, ':')) == NULL || colon == creds)
		die("%s: expected USER:PASS", what);
	ulen = colon - creds;
	plen = strlen(colon + 1);
	rawlen = 1 + ulen + 1 + plen;
	if (rawlen > 1024)
		die("%s: too long", what);
	if ((raw = malloc(rawlen)) == NULL)
		die("out of memory");
	raw[0] = '\0';
	memcpy(raw + 1, creds, ulen);
	raw[1 + ulen] = '\0';
	memcpy(raw + 2 + ulen, colon + 1, plen);
	b64len = 4 * ((rawlen + 2) / 3);
	if ((b64 = malloc(b64len + 1)) == NULL)
		die("out of memory");
	EVP_EncodeBlock((unsigned char *)b64, raw, rawlen);
	cmdlen = sizeof("AUTH PLAIN \r\n") + b64len;
	if ((cmd = malloc(cmdlen)) == NULL)
		die("out of memory");
	snprintf(cmd, cmdlen, "AUTH PLAIN %s\r\n", b64);
	OPENSSL_cleanse(raw, rawlen);
	OPENSSL_cleanse(b64, b64len);
	free(raw);
	free(b64);
	return cmd;
}

/* The --burl user with these credentials (NULL: --auth's), made if new. */
static struct buser *
buser_get(const char *creds)
{
	struct buser *nb, *u;
	size_t i;

	for (i = 0; i < run.nbusers; i++) {
		u = &run.busers[i];
		if ((creds == NULL && u->creds == NULL) || (creds != NULL &&
		    u->creds != NULL && strcmp(creds, u->creds) == 0))
			return u;
	}
	if (creds == NULL && opt.auth == NULL)
		die("--burl needs --auth (BURL is for authenticated "
		    "submission, RFC 4468 section 3), or USER:PASS before "
		    "each URL in --burl-file");
	if ((nb = realloc(run.busers, (run.nbusers + 1) * sizeof(*nb))) ==
	    NULL)
		die("out of memory");
	run.busers = nb;
	u = &run.busers[run.nbusers++];
	memset(u, 0, sizeof(*u));
	if (creds == NULL)
		u->auth_cmd = run.auth_cmd;
	else {
		if ((u->creds = strdup(creds)) == NULL)
			die("out of memory");
		u->auth_cmd = auth_build(creds, "--burl-file credentials");
	}
	return u;
}

/*
 * One "BURL <url> LAST" command, prebuilt.  The URL must be one token of
 * visible US-ASCII (RFC 4468: the argument is an absolute IMAP URL; a space
 * or a control character would change the command).  Returns -1 (with a
 * message naming where) if it is unusable.
 */
static int
burl_add(struct buser *u, const char *url, size_t len, const char *where,
    long lineno)
{
	char **nc;
	size_t *nl, i;

	if (len == 0 || len > BURL_URL_MAX) {
		fprintf(stderr, "msaload: %s:%ld: URL %s\n", where, lineno,
		    len ? "too long" : "empty");
		return -1;
	}
	for (i = 0; i < len; i++)
		if ((unsigned char)url[i] <= ' ' ||
		    (unsigned char)url[i] >= 0x7f) {
			fprintf(stderr, "msaload: %s:%ld: URL has a space, "
			    "control or non-ASCII character at offset %zu\n",
			    where, lineno, i);
			return -1;
		}
	if (run.burl_count >= BURL_URLS_MAX) {
		fprintf(stderr, "msaload: %s: more than %d URLs\n", where,
		    BURL_URLS_MAX);
		return -1;
	}
	if (u->n == u->cap) {
		u->cap = u->cap ? u->cap * 2 : 64;
		if ((nc = realloc(u->cmds, u->cap * sizeof(*nc))) == NULL)
			die("out of memory");
		u->cmds = nc;
		if ((nl = realloc(u->lens, u->cap * sizeof(*nl))) == NULL)
			die("out of memory");
		u->lens = nl;
	}
	if ((u->cmds[u->n] = malloc(len + 12)) == NULL)
		die("out of memory");
	memcpy(u->cmds[u->n], "BURL ", 5);
	memcpy(u->cmds[u->n] + 5, url, len);
	memcpy(u->cmds[u->n] + 5 + len, " LAST\r\n", 7);
	u->lens[u->n] = len + 12;
	u->n++;
	run.burl_count++;
	return 0;
}

/*
 * --burl URL, or --burl-file: one URL per line, or "USER:PASS URL" (the
 * sessions are spread round robin over the users, and each sends its own
 * user's URLs); CRLF or LF; blank lines and lines starting with '#' are
 * skipped.
 */
static void
burl_build(void)
{
	FILE *f;
	char *line = NULL, *url, *sp;
	size_t cap = 0;
	ssize_t n;
	long lineno = 0;
	int bad = 0;

	if (opt.burl != NULL) {
		if (burl_add(buser_get(NULL), opt.burl, strlen(opt.burl),
		    "--burl", 1) == -1)
			exit(1);
		return;
	}
	if ((f = fopen(opt.burl_file, "r")) == NULL)
		die("--burl-file %s: %s", opt.burl_file, strerror(errno));
	while ((n = getline(&line, &cap, f)) != -1) {
		lineno++;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n == 0 || line[0] == '#')
			continue;
		url = line;
		if ((sp = strpbrk(line, " \t")) != NULL) {
			*sp++ = '\0';
			url = sp + strspn(sp, " \t");
			n -= url - line;
		}
		if (burl_add(buser_get(url == line ? NULL : line), url, n,
		    opt.burl_file, lineno) == -1)
			bad = 1;
	}
	if (ferror(f))
		die("--burl-file %s: read error", opt.burl_file);
	fclose(f);
	free(line);
	if (bad)
		exit(1);
	if (run.burl_count == 0)
		die("--burl-file %s: no URL", opt.burl_file);
}

static void
tls_setup(void)
{
	if ((run.ssl_ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		die("SSL_CTX_new failed");
	/* A benchmark against self-signed test certificates. */
	SSL_CTX_set_verify(run.ssl_ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_min_proto_version(run.ssl_ctx, TLS1_2_VERSION);
	if (!opt.tls_resume) {
		/* Every handshake a full one. */
		SSL_CTX_set_session_cache_mode(run.ssl_ctx, SSL_SESS_CACHE_OFF);
		return;
	}
	/*
	 * Resumption as a MUA does it: the session (with TLS 1.3, the first
	 * ticket, which arrives after the handshake) is kept and offered on
	 * every new connection.  No internal cache: tls_new_session() keeps
	 * the one session.
	 */
	SSL_CTX_set_session_cache_mode(run.ssl_ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(run.ssl_ctx, tls_new_session);
}

/* A new session (ticket) from the server: keep it if we have none. */
static int
tls_new_session(SSL *ssl, SSL_SESSION *sess)
{
	(void)ssl;
	if (run.resume_sess != NULL || !SSL_SESSION_is_resumable(sess))
		return 0;		/* OpenSSL frees it */
	run.resume_sess = sess;		/* we own the reference now */
	return 1;
}

/* A TLS handshake completed: count it, and note what was negotiated. */
static void
tls_done(struct sess *s)
{
	SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
	char *note;
	const char *group = "-";
	int nid, reused;

	if (ssl == NULL)
		return;
	run.tls_handshakes++;
	run.tls_offered += s->tls_offered;
	reused = SSL_session_reused(ssl);
	if (reused)
		run.tls_resumed++;
	else if (s->tls_offered && run.resume_sess != NULL) {
		/* Refused (e.g. the ticket expired): take the next one. */
		SSL_SESSION_free(run.resume_sess);
		run.resume_sess = NULL;
	}
	note = reused ? run.tls_res : run.tls_full;
	if (note[0] != '\0')
		return;
	nid = SSL_get_negotiated_group(ssl);
	if (nid != NID_undef && nid != 0 && OBJ_nid2sn(nid) != NULL)
		group = OBJ_nid2sn(nid);
	snprintf(note, sizeof(run.tls_full), "%s/%s/%s", SSL_get_version(ssl),
	    SSL_get_cipher_name(ssl), group);
}

/* --idle 2000 needs more descriptors than the usual soft limit of 1024. */
static void
raise_nofile(void)
{
	struct rlimit rl;
	rlim_t want;

	want = (rlim_t)(opt.idle > opt.conc ? opt.idle : opt.conc) + 64;
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur >= want)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ?
	    want : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur < want)
		fprintf(stderr, "msaload: warning: only %llu descriptors\n",
		    (unsigned long long)rl.rlim_cur);
}

/*
 * Take one message from the quota.  A session holds its next message
 * before it connects, so no session is opened that would find the quota
 * empty.
 */
static int
reserve_msg(void)
{
	if (run.stopping || opt.idle > 0 || run.reserved >= opt.total)
		return 0;
	run.reserved++;
	return 1;
}

static void
fill_sessions(void)
{
	long inflight;

	if (run.stopping)
		return;
	if (opt.idle > 0) {
		for (;;) {
			inflight = run.sess_started - run.idle_ready -
			    run.idle_failed;
			if (run.sess_started >= opt.idle || inflight >= opt.conc)
				break;
			sess_start();
		}
		return;
	}
	while (run.active < opt.conc && reserve_msg())
		sess_start();
}

static void
sess_start(void)
{
	struct sess *s;
	evutil_socket_t fd;
	int one = 1;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		die("out of memory");
	s->has_msg = opt.idle == 0;
	s->pend_cap = opt.rcpts + 8;
	if (run.nbusers > 0)
		s->bu = &run.busers[run.buser_next++ % run.nbusers];
	if ((s->pend = malloc(s->pend_cap)) == NULL)
		die("out of memory");
	TAILQ_INSERT_TAIL(&run.sessions, s, entry);
	run.active++;
	run.sess_started++;
	s->t_start = now();
	s->phase = PH_CONNECT;

	fd = socket(run.ss.ss_family, SOCK_STREAM, 0);
	if (fd == -1) {
		sess_fail(s, ERR_CONNECT, "socket: %s", strerror(errno));
		return;
	}
	evutil_make_socket_nonblocking(fd);
	evutil_make_socket_closeonexec(fd);
	/* Each command group and each message leaves in one segment. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	s->bev = bufferevent_socket_new(run.base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		evutil_closesocket(fd);
		sess_fail(s, ERR_CONNECT, "bufferevent_socket_new failed");
		return;
	}
	/* Let a whole message go out in one send(). */
	bufferevent_set_max_single_write(s->bev, run.bdat_len + 4096);
	bufferevent_setcb(s->bev, read_cb, NULL, event_cb, s);
	sess_timeouts(s, opt.timeout);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	pend_push(s, CMD_GREETING);
	if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&run.ss,
	    run.sslen) == -1) {
		sess_fail(s, ERR_CONNECT, "connect: %s", strerror(errno));
		return;
	}
}

static void
sess_free(struct sess *s)
{
	TAILQ_REMOVE(&run.sessions, s, entry);
	run.active--;
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	free(s->pend);
	free(s);
}

/*
 * A broken session: its message (in flight, or reserved and not yet
 * sent) is an error; a replacement is started if the quota allows.
 */
static void
sess_fail(struct sess *s, enum err e, const char *fmt, ...)
{
	va_list ap;
	int ready = s->counted_ready;

	run.errors[e]++;
	if (e == ERR_ABORTED)
		run.sess_aborted++;
	else
		run.sess_failed++;
	/* The first few, even with -q: they say what went wrong. */
	if (run.sess_failed <= 10 && e != ERR_ABORTED) {
		fputs("msaload: session error: ", stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	if (s->phase == PH_TX || (s->has_msg && e != ERR_ABORTED)) {
		run.msg_errors++;
		s->has_msg = 0;
	} else if (s->has_msg) {
		run.released++;
		s->has_msg = 0;
	}
	if (opt.idle > 0) {
		if (!ready)
			run.idle_failed++;
		else if (s->phase == PH_READY && e != ERR_ABORTED)
			run.idle_dropped++;
	}
	sess_free(s);
	if (e == ERR_AUTH || e == ERR_CAPABILITY)
		stop_run("fatal session error", 1);
	else if (run.sess_failed >= opt.max_errors)
		stop_run("too many session errors", 1);
	idle_check();
	fill_sessions();
	check_done();
}

/* Normal end after 221 and the server's close. */
static void
sess_done(struct sess *s)
{
	run.sess_completed++;
	sess_free(s);
	fill_sessions();
	check_done();
}

static int
pend_push(struct sess *s, enum cmd c)
{
	if (s->pend_len == s->pend_cap)
		return -1;
	s->pend[(s->pend_head + s->pend_len) % s->pend_cap] = c;
	s->pend_len++;
	return 0;
}

static int
pend_pop(struct sess *s, enum cmd *c)
{
	if (s->pend_len == 0)
		return -1;
	*c = s->pend[s->pend_head];
	s->pend_head = (s->pend_head + 1) % s->pend_cap;
	s->pend_len--;
	return 0;
}

static void
sess_send(struct sess *s, const char *buf, size_t len)
{
	bufferevent_write(s->bev, buf, len);
}

/*
 * After an EHLO reply: STARTTLS, then AUTH, then ready.  Returns -1 if the
 * session is gone.
 */
static int
sess_setup_next(struct sess *s)
{
	if (opt.starttls && !s->tls) {
		if (!(s->caps & CAP_STARTTLS)) {
			sess_fail(s, ERR_CAPABILITY, "no STARTTLS advertised");
			return -1;
		}
		pend_push(s, CMD_STARTTLS);
		sess_send(s, "STARTTLS\r\n", 10);
		return 0;
	}
	if ((opt.auth != NULL || s->bu != NULL) && !s->authed) {
		const char *cmd = s->bu != NULL ? s->bu->auth_cmd :
		    run.auth_cmd;

		if (!(s->caps & CAP_AUTH_PLAIN)) {
			sess_fail(s, ERR_CAPABILITY, "no AUTH PLAIN advertised");
			return -1;
		}
		pend_push(s, CMD_AUTH);
		sess_send(s, cmd, strlen(cmd));
		return 0;
	}
	if (opt.bdat && !(s->caps & CAP_CHUNKING)) {
		sess_fail(s, ERR_CAPABILITY, "--bdat: no CHUNKING advertised");
		return -1;
	}
	if (run.burl_count > 0 && !(s->caps & CAP_BURL)) {
		/*
		 * A server may offer BURL only after AUTH (msaproxy does:
		 * RFC 4468 section 3 lets it depend on the authenticated
		 * identity): ask again once.
		 */
		if (s->authed && !s->ehlo_after_auth) {
			s->ehlo_after_auth = 1;
			run.burl_reehlo++;
			pend_push(s, CMD_EHLO);
			sess_send(s, "EHLO " EHLO_NAME "\r\n",
			    sizeof("EHLO " EHLO_NAME "\r\n") - 1);
			return 0;
		}
		sess_fail(s, ERR_CAPABILITY, "--burl: no BURL advertised%s",
		    s->authed ? " (also not after AUTH)" : "");
		return -1;
	}
	samples_add(&run.setup, (now() - s->t_start) * 1000);
	s->phase = PH_READY;
	if (opt.idle > 0) {
		s->counted_ready = 1;
		run.idle_ready++;
		/* Idle sessions may sit silent for as long as we hold. */
		bufferevent_set_timeouts(s->bev, NULL, NULL);
		idle_check();
		fill_sessions();
		return 0;
	}
	tx_start(s);
	return 0;
}

/* Next transaction, or QUIT. */
static void
sess_next(struct sess *s)
{
	s->phase = PH_READY;
	if (!run.stopping &&
	    (opt.per_session == 0 || s->msgs < opt.per_session) &&
	    reserve_msg()) {
		s->has_msg = 1;
		tx_start(s);
	} else
		sess_quit(s);
}

/*
 * MAIL FROM; with --pipelining (RFC 2920) and a server that offers it,
 * the RCPTs and DATA (or the whole BDAT chunk) go in the same write.
 */
static void
tx_start(struct sess *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);

	s->phase = PH_TX;
	s->tx_pipe = opt.pipelining && (s->caps & CAP_PIPELINING);
	s->tx_failed = 0;
	s->tx_sent_dot = 0;
	s->rcpt_sent = 0;
	s->has_msg = 0;
	run.sent++;
	s->t_mail = now();
	evbuffer_add(out, "MAIL FROM:<" MAIL_FROM ">\r\n",
	    sizeof("MAIL FROM:<" MAIL_FROM ">\r\n") - 1);
	pend_push(s, CMD_MAIL);
	if (!s->tx_pipe)
		return;
	while (s->rcpt_sent < opt.rcpts)
		tx_next_cmd(s);
	tx_send_content(s);
}

/* Without pipelining: the next RCPT, or DATA / BDAT after the last one. */
static void
tx_next_cmd(struct sess *s)
{
	if (s->rcpt_sent < opt.rcpts) {
		evbuffer_add_printf(bufferevent_get_output(s->bev),
		    "RCPT TO:<rcpt%d@example.test>\r\n", s->rcpt_sent++);
		pend_push(s, CMD_RCPT);
		return;
	}
	tx_send_content(s);
}

/*
 * DATA, or "BDAT n LAST" and the message in one buffer (RFC 3030 2: the
 * chunk follows its command immediately, no 354 round trip).
 */
static void
tx_send_content(struct sess *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);

	if (s->bu != NULL) {
		size_t k = s->bu->next++ % s->bu->n;

		evbuffer_add_reference(out, s->bu->cmds[k], s->bu->lens[k],
		    NULL, NULL);
		pend_push(s, CMD_BURL);
	} else if (opt.bdat) {
		evbuffer_add_reference(out, run.bdat_payload, run.bdat_len,
		    NULL, NULL);
		pend_push(s, CMD_BDAT);
	} else {
		evbuffer_add(out, "DATA\r\n", 6);
		pend_push(s, CMD_DATA);
	}
}

/* A transaction's outcome is known; ok = final 250. */
static void
tx_end(struct sess *s, int ok)
{
	double t = now();

	if (ok) {
		run.accepted++;
		samples_add(&run.lat, (t - s->t_mail) * 1000);
	} else
		run.rejected++;
	run.t_last = t;
	s->msgs++;
	if (!ok && s->pend_len == 0) {
		/* Clean slate before the next transaction. */
		s->phase = PH_READY;
		pend_push(s, CMD_RSET);
		sess_send(s, "RSET\r\n", 6);
		return;
	}
	sess_next(s);
}

static void
sess_quit(struct sess *s)
{
	s->phase = PH_QUIT;
	pend_push(s, CMD_QUIT);
	sess_send(s, "QUIT\r\n", 6);
}

/*
 * STARTTLS accepted: layer TLS on the socket.  RFC 3207 4.2: nothing may
 * follow the 220 (a server that sends more is injecting plaintext into
 * what will look like the TLS session), and everything learnt before is
 * forgotten.
 */
static int
tls_start(struct sess *s)
{
	struct bufferevent *tbev;
	SSL *ssl;

	if (evbuffer_get_length(bufferevent_get_input(s->bev)) != 0) {
		sess_fail(s, ERR_PROTOCOL, "data after the STARTTLS 220");
		return -1;
	}
	if ((ssl = SSL_new(run.ssl_ctx)) == NULL) {
		sess_fail(s, ERR_TLS, "SSL_new failed");
		return -1;
	}
	if (opt.tls_resume && run.resume_sess != NULL) {
		/*
		 * A copy: OpenSSL marks a TLS 1.3 session it has resumed as
		 * not resumable (single use), so the kept one stays fresh.
		 * Its ticket is offered again each time, which servers with
		 * stateless tickets (OpenSSL's default) accept.
		 */
		SSL_SESSION *dup = SSL_SESSION_dup(run.resume_sess);

		if (dup != NULL) {
			SSL_set_session(ssl, dup);
			SSL_SESSION_free(dup);
			s->tls_offered = 1;
		}
	}
	tbev = bufferevent_openssl_filter_new(run.base, s->bev, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (tbev == NULL) {
		SSL_free(ssl);
		sess_fail(s, ERR_TLS, "bufferevent_openssl_filter_new failed");
		return -1;
	}
	s->bev = tbev;
	s->phase = PH_HANDSHAKE;
	s->caps = 0;
	bufferevent_openssl_set_allow_dirty_shutdown(tbev, 1);
	bufferevent_setcb(tbev, read_cb, NULL, event_cb, s);
	sess_timeouts(s, opt.timeout);
	bufferevent_enable(tbev, EV_READ | EV_WRITE);
	return 0;
}

/*
 * EHLO keywords we care about (RFC 5321 4.1.1.1; RFC 2920, 3030, 3207,
 * 4954).  "AUTH=" is the pre-standard form some servers still send.
 */
static void
ehlo_capability(struct sess *s, const char *text, size_t len)
{
	char kw[32];
	size_t i, k;

	for (k = 0; k < len && k < sizeof(kw) - 1 && text[k] != ' ' &&
	    text[k] != '='; k++)
		kw[k] = toupper((unsigned char)text[k]);
	kw[k] = '\0';
	if (strcmp(kw, "PIPELINING") == 0)
		s->caps_new |= CAP_PIPELINING;
	else if (strcmp(kw, "CHUNKING") == 0)
		s->caps_new |= CAP_CHUNKING;
	else if (strcmp(kw, "STARTTLS") == 0)
		s->caps_new |= CAP_STARTTLS;
	else if (strcmp(kw, "BURL") == 0)
		s->caps_new |= CAP_BURL;
	else if (strcmp(kw, "AUTH") == 0) {
		/* Look for the mechanism PLAIN as a whole word. */
		for (i = k; i + 5 <= len; i++) {
			if ((text[i - 1] == ' ' || text[i - 1] == '=') &&
			    strncasecmp(text + i, "PLAIN", 5) == 0 &&
			    (i + 5 == len || text[i + 5] == ' '))
				s->caps_new |= CAP_AUTH_PLAIN;
		}
	}
}

/* Does the input start with a 421 line (see reply_line())? */
static int
unasked_421(struct evbuffer *in)
{
	char buf[4];

	if (evbuffer_copyout(in, buf, sizeof(buf)) != (ev_ssize_t)sizeof(buf))
		return 0;
	return memcmp(buf, "421", 3) == 0 && (buf[3] == ' ' || buf[3] == '\r');
}

/*
 * One reply line without its CRLF.  Returns -1 if the session is gone.
 * RFC 5321 4.2: Reply-line = *( Reply-code "-" [ textstring ] CRLF )
 *			      Reply-code [ SP textstring ] CRLF
 * Reply codes are 2yz..5yz with y in 0..5.
 */
static int
reply_line(struct sess *s, const char *line, size_t len)
{
	enum cmd c;
	int code, last;

	/*
	 * RFC 5321 3.8: a server that must shut down may say 421 at any
	 * time, also unasked, and close.  Not a protocol error.
	 */
	if (len >= 3 && memcmp(line, "421", 3) == 0 && s->rcode == 0 &&
	    (len == 3 || line[3] == ' ')) {
		sess_fail(s, ERR_CLOSED, "421 from the server: \"%.*s\"",
		    (int)(len > 80 ? 80 : len), line);
		return -1;
	}
	if (s->pend_len == 0) {
		if (s->counted_ready && opt.idle > 0)
			sess_fail(s, ERR_EOF, "idle session: server said "
			    "\"%.*s\"", (int)(len > 80 ? 80 : len), line);
		else
			sess_fail(s, ERR_PROTOCOL, "unsolicited reply "
			    "\"%.*s\"", (int)(len > 80 ? 80 : len), line);
		return -1;
	}
	if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' ||
	    line[1] > '5' || !isdigit((unsigned char)line[2]) ||
	    (len > 3 && line[3] != '-' && line[3] != ' ')) {
		sess_fail(s, ERR_PROTOCOL, "malformed reply line \"%.*s\"",
		    (int)(len > 80 ? 80 : len), line);
		return -1;
	}
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + line[2] - '0';
	last = len == 3 || line[3] == ' ';
	if (s->rcode != 0 && code != s->rcode) {
		sess_fail(s, ERR_PROTOCOL, "code %d inside a multi-line %d "
		    "reply", code, s->rcode);
		return -1;
	}
	if (s->rcode == 0)
		s->caps_new = 0;
	else if (s->pend[s->pend_head] == CMD_EHLO)
		ehlo_capability(s, line + 4, len > 4 ? len - 4 : 0);
	s->rcode = code;
	if (!last)
		return 0;
	/* Last line of the reply. */
	s->rcode = 0;
	if (pend_pop(s, &c) == -1) {	/* checked above; keeps c defined */
		sess_fail(s, ERR_PROTOCOL, "unsolicited reply");
		return -1;
	}
	/*
	 * Our next command is written only after this point, so anything
	 * already received now was sent before the server saw it.
	 */
	if (s->pend_len == 0 &&
	    evbuffer_get_length(bufferevent_get_input(s->bev)) > 0 &&
	    !unasked_421(bufferevent_get_input(s->bev))) {
		sess_fail(s, ERR_PROTOCOL, "unsolicited data after the %s "
		    "reply", cmd_names[c]);
		return -1;
	}
	return reply_done(s, c, code);
}

/* A complete reply to command c.  Returns -1 if the session is gone. */
static int
reply_done(struct sess *s, enum cmd c, int code)
{
	switch (c) {
	case CMD_GREETING:
		if (code != 220) {
			sess_fail(s, ERR_GREETING, "greeting %d", code);
			return -1;
		}
		pend_push(s, CMD_EHLO);
		sess_send(s, "EHLO " EHLO_NAME "\r\n",
		    sizeof("EHLO " EHLO_NAME "\r\n") - 1);
		return 0;
	case CMD_EHLO:
		if (code != 250) {
			sess_fail(s, ERR_EHLO, "EHLO %d", code);
			return -1;
		}
		s->caps = s->caps_new;
		return sess_setup_next(s);
	case CMD_STARTTLS:
		if (code != 220) {
			sess_fail(s, ERR_STARTTLS, "STARTTLS %d", code);
			return -1;
		}
		return tls_start(s);
	case CMD_AUTH:
		if (code / 100 != 2) {
			sess_fail(s, ERR_AUTH, "AUTH %d", code);
			return -1;
		}
		s->authed = 1;
		return sess_setup_next(s);
	case CMD_MAIL:
	case CMD_RCPT:
		if (code / 100 != 2)
			s->tx_failed = 1;
		if (s->tx_pipe) {
			/* The replies to the rest of the group are due. */
			return 0;
		}
		if (s->tx_failed) {
			tx_end(s, 0);
			return 0;
		}
		tx_next_cmd(s);
		return 0;
	case CMD_DATA:
		if (code == 354) {
			if (s->tx_failed) {
				/*
				 * A pipelined DATA the server accepted
				 * after refusing MAIL or RCPT: end it
				 * empty and count the message as rejected.
				 */
				s->tx_sent_dot = 1;
				pend_push(s, CMD_DOT);
				sess_send(s, ".\r\n", 3);
				return 0;
			}
			pend_push(s, CMD_DOT);
			evbuffer_add_reference(bufferevent_get_output(s->bev),
			    run.data_payload, run.data_len, NULL, NULL);
			return 0;
		}
		if (code / 100 == 3) {
			sess_fail(s, ERR_PROTOCOL, "DATA %d", code);
			return -1;
		}
		tx_end(s, 0);
		return 0;
	case CMD_DOT:
	case CMD_BDAT:
	case CMD_BURL:
		if (s->pend_len > 0) {
			sess_fail(s, ERR_PROTOCOL, "replies out of step");
			return -1;
		}
		if (code / 100 == 3) {
			sess_fail(s, ERR_PROTOCOL, "%s %d", cmd_names[c], code);
			return -1;
		}
		tx_end(s, code == 250 && !s->tx_failed && !s->tx_sent_dot);
		return 0;
	case CMD_RSET:
		if (code / 100 != 2) {
			sess_fail(s, ERR_PROTOCOL, "RSET %d", code);
			return -1;
		}
		sess_next(s);
		return 0;
	case CMD_QUIT:
		if (code != 221) {
			sess_fail(s, ERR_PROTOCOL, "QUIT %d", code);
			return -1;
		}
		/*
		 * Let the server close first, so TIME_WAIT stays on its
		 * side and profile B cannot run out of local ports.
		 */
		s->phase = PH_CLOSING;
		sess_timeouts(s, opt.timeout < 5 ? opt.timeout : 5);
		return 0;
	}

	return 0;
}

/*
 * Parse every complete reply line in the input.  Returns -1 if the
 * session is gone.
 */
static int
read_input(struct sess *s)
{
	struct bufferevent *bev = s->bev;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_ptr eol;
	char line[REPLY_LINE_MAX + 1];
	size_t len;

	for (;;) {
		/* STARTTLS replaced the bufferevent: wait for the handshake. */
		if (s->phase == PH_HANDSHAKE || s->bev != bev)
			return 0;
		eol = evbuffer_search_eol(in, NULL, &len, EVBUFFER_EOL_LF);
		if (eol.pos < 0) {
			if (evbuffer_get_length(in) >= REPLY_LINE_MAX) {
				sess_fail(s, ERR_PROTOCOL, "reply line longer "
				    "than %d octets", REPLY_LINE_MAX);
			} else if (evbuffer_get_length(in) > 0 &&
			    s->pend_len == 0 && s->phase != PH_CLOSING) {
				sess_fail(s, ERR_PROTOCOL,
				    "unsolicited partial reply");
			} else if (evbuffer_get_length(in) > 0 &&
			    s->phase == PH_CLOSING) {
				sess_fail(s, ERR_PROTOCOL, "data after 221");
			} else
				return 0;
			return -1;
		}
		len = eol.pos + 1;
		if (len > REPLY_LINE_MAX) {
			sess_fail(s, ERR_PROTOCOL, "reply line longer than %d "
			    "octets", REPLY_LINE_MAX);
			return -1;
		}
		evbuffer_remove(in, line, len);
		if (len < 2 || line[len - 2] != '\r') {
			sess_fail(s, ERR_PROTOCOL, "reply line ends in a bare "
			    "LF");
			return -1;
		}
		if (reply_line(s, line, len - 2) == -1)
			return -1;
	}
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct sess *s = arg;

	if (s->bev == bev)
		read_input(s);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct sess *s = arg;
	unsigned long e;
	char buf[256];

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		if (s->phase == PH_HANDSHAKE) {
			s->tls = 1;
			tls_done(s);
			s->phase = PH_SETUP;
			pend_push(s, CMD_EHLO);
			sess_send(s, "EHLO " EHLO_NAME "\r\n",
			    sizeof("EHLO " EHLO_NAME "\r\n") - 1);
			return;
		}
		s->phase = PH_SETUP;
		return;
	}
	/*
	 * The TLS filter reports EOF before the read callback has seen the
	 * last records (e.g. "221" + close_notify): parse what is there first.
	 */
	if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) &&
	    evbuffer_get_length(bufferevent_get_input(s->bev)) > 0 &&
	    read_input(s) == -1)
		return;
	if ((what & BEV_EVENT_TIMEOUT) && s->phase == PH_CLOSING) {
		/* RFC 5321 4.1.1.10: the server closes after 221. */
		run.close_timeouts++;
		sess_done(s);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		sess_fail(s, ERR_TIMEOUT, "timeout waiting for %s reply",
		    s->pend_len ? cmd_names[s->pend[s->pend_head]] : "no");
		return;
	}
	if (what & BEV_EVENT_EOF) {
		if (s->phase == PH_CLOSING)
			sess_done(s);
		else
			sess_fail(s, ERR_EOF, "connection closed by server "
			    "(waiting for %s reply)",
			    s->pend_len ? cmd_names[s->pend[s->pend_head]] :
			    "no");
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		if (s->phase == PH_CONNECT) {
			sess_fail(s, ERR_CONNECT, "connect: %s",
			    evutil_socket_error_to_string(
			    EVUTIL_SOCKET_ERROR()));
			return;
		}
		if (s->phase == PH_CLOSING) {
			sess_done(s);
			return;
		}
		if (s->phase == PH_HANDSHAKE || s->tls) {
			e = bufferevent_get_openssl_error(s->bev);
			if (e != 0) {
				ERR_error_string_n(e, buf, sizeof(buf));
				sess_fail(s, ERR_TLS, "TLS: %s", buf);
				return;
			}
		}
		sess_fail(s, ERR_IO, "I/O error: %s",
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	}
}

/*
 * Stop starting messages.  Sessions between messages say QUIT; those in
 * a transaction finish it; everything left after the grace period is
 * aborted.
 */
static void
stop_run(const char *why, int fatal)
{
	struct sess *s, *tmp;
	struct timeval tv;

	if (run.stopping)
		return;
	run.stopping = 1;
	run.fatal |= fatal;
	run.stop_reason = why;
	TAILQ_FOREACH_SAFE(s, &run.sessions, entry, tmp) {
		if (s->phase == PH_READY && s->pend_len == 0) {
			if (s->has_msg) {
				run.released++;
				s->has_msg = 0;
			}
			sess_quit(s);
		} else if (s->phase == PH_CONNECT || s->phase == PH_SETUP ||
		    s->phase == PH_HANDSHAKE) {
			if (s->has_msg) {
				run.released++;
				s->has_msg = 0;
			}
			sess_fail(s, ERR_ABORTED, "stopped during setup");
		}
	}
	evtimer_add(run.ev_grace, secs_tv(opt.grace, &tv));
	check_done();
}

static void
check_done(void)
{
	if (run.finished || run.active > 0)
		return;
	if (!run.stopping && opt.idle == 0 && run.reserved < opt.total)
		return;
	if (!run.stopping && opt.idle > 0)
		return;
	run.finished = 1;
	run.t_end = now();
	event_base_loopbreak(run.base);
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	stop_run(opt.idle > 0 ? "hold time over" : "duration cap reached", 0);
}

static void
grace_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sess *s;

	(void)fd;
	(void)what;
	(void)arg;
	while ((s = TAILQ_FIRST(&run.sessions)) != NULL)
		sess_fail(s, ERR_ABORTED, "aborted at the end of the grace "
		    "period");
	check_done();
}

static void
progress_cb(evutil_socket_t fd, short what, void *arg)
{
	double t = now() - run.t_start;

	(void)fd;
	(void)what;
	(void)arg;
	if (opt.idle > 0)
		fprintf(stderr, "[%6.1fs] sessions: ready=%ld failed=%ld "
		    "dropped=%ld open=%d\n", t, run.idle_ready,
		    run.idle_failed, run.idle_dropped, run.active);
	else
		fprintf(stderr, "[%6.1fs] ok=%ld (+%ld/s) rejected=%ld "
		    "errors=%ld sessions=%d\n", t, run.accepted,
		    run.accepted - run.prog_last_ok, run.rejected,
		    run.msg_errors, run.active);
	run.prog_last_ok = run.accepted;
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	if (run.stopping) {
		/* Second signal: give up on the grace period. */
		grace_cb(-1, 0, NULL);
		return;
	}
	stop_run(sig == SIGINT ? "interrupted" : "terminated", 0);
}

/* Idle mode: announce once every session is up or has failed. */
static void
idle_check(void)
{
	struct timeval tv;

	if (opt.idle == 0 || run.idle_announced || run.stopping ||
	    run.idle_ready + run.idle_failed < opt.idle)
		return;
	run.idle_announced = 1;
	printf("IDLE_READY sessions=%ld failed=%ld\n", run.idle_ready,
	    run.idle_failed);
	fflush(stdout);
	if (opt.hold > 0) {
		evtimer_add(run.ev_hold, secs_tv(opt.hold, &tv));
	}
}

static void
report(void)
{
	double elapsed, wall, rate;
	long fail;
	int i;

	wall = run.t_end - run.t_start;
	elapsed = run.t_last > run.t_start ? run.t_last - run.t_start : 0;
	rate = elapsed > 0 ? run.accepted / elapsed : 0;
	fail = run.rejected + run.msg_errors;

	printf("== msaload results ==\n");
	printf("target        %s:%d tls=%s auth=%s mode=%s pipelining=%s\n",
	    opt.host, opt.port, opt.starttls ? "starttls" : "none",
	    opt.auth || run.nbusers ? "plain" : "none",
	    run.burl_count ? "BURL" :
	    opt.bdat ? "BDAT" : "DATA",
	    opt.pipelining ? "yes" : "no");
	if (opt.idle > 0)
		printf("params        idle=%ld handshakes_in_flight=%d "
		    "duration_cap=%gs\n", opt.idle, opt.conc, opt.duration);
	else
		printf("params        concurrency=%d messages=%ld "
		    "per_session=%ld size=%zu rcpts=%d duration_cap=%gs\n",
		    opt.conc, opt.total, opt.per_session, opt.size,
		    opt.rcpts, opt.duration);
	printf("stop          %s\n", run.stop_reason ? run.stop_reason :
	    "all messages done");
	printf("elapsed_s     %.3f (start -> last final reply); wall %.3f\n",
	    elapsed, wall);
	printf("sessions      started=%ld completed=%ld failed=%ld "
	    "aborted=%ld no_close_after_221=%ld\n", run.sess_started,
	    run.sess_completed, run.sess_failed, run.sess_aborted,
	    run.close_timeouts);
	if (opt.idle > 0)
		printf("idle          ready=%ld failed=%ld dropped=%ld\n",
		    run.idle_ready, run.idle_failed, run.idle_dropped);
	printf("messages      sent=%ld accepted=%ld rejected=%ld errors=%ld "
	    "unsent_at_stop=%ld\n", run.sent, run.accepted, run.rejected,
	    run.msg_errors, run.released);
	printf("throughput    msgs_per_s=%.1f payload_MB_per_s=%.2f\n", rate,
	    rate * opt.size / 1e6);
	printf("latency_ms    n=%zu min=%.3f mean=%.3f p50=%.3f p90=%.3f "
	    "p99=%.3f p99.9=%.3f max=%.3f  (MAIL -> final 250)\n",
	    run.lat.n, samples_pct(&run.lat, 0), samples_mean(&run.lat),
	    samples_pct(&run.lat, 50), samples_pct(&run.lat, 90),
	    samples_pct(&run.lat, 99), samples_pct(&run.lat, 99.9),
	    samples_pct(&run.lat, 100));
	printf("setup_ms      n=%zu p50=%.3f p90=%.3f p99=%.3f max=%.3f  "
	    "(connect -> ready)\n", run.setup.n, samples_pct(&run.setup, 50),
	    samples_pct(&run.setup, 90), samples_pct(&run.setup, 99),
	    samples_pct(&run.setup, 100));
	if (run.burl_count > 0) {
		size_t used = 0, k;

		for (k = 0; k < run.nbusers; k++)
			used += run.busers[k].next < run.busers[k].n ?
			    run.busers[k].next : run.busers[k].n;
		printf("burl          urls=%zu users=%zu used=%zu "
		    "ehlo_after_auth=%ld (size %zu is nominal: the server "
		    "fetched the content)\n", run.burl_count, run.nbusers,
		    used, run.burl_reehlo, opt.size);
	}
	if (opt.starttls)
		printf("tls           handshakes=%ld resumed=%ld offered=%ld "
		    "resumed_ratio=%.3f full=%s resumed_as=%s\n",
		    run.tls_handshakes, run.tls_resumed, run.tls_offered,
		    run.tls_handshakes ? (double)run.tls_resumed /
		    run.tls_handshakes : 0.0, run.tls_full[0] ? run.tls_full :
		    "-", run.tls_res[0] ? run.tls_res : "-");
	printf("errors       ");
	for (i = 0; i < ERR_COUNT; i++)
		printf(" %s=%ld", err_names[i], run.errors[i]);
	printf("\n");
	printf("msgs_per_s=%.1f p50_ms=%.3f p99_ms=%.3f ok=%ld fail=%ld\n",
	    rate, samples_pct(&run.lat, 50), samples_pct(&run.lat, 99),
	    run.accepted, fail);
	fflush(stdout);
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "allow-remote",	no_argument,		NULL, 'R' },
		{ "pipelining",		no_argument,		NULL, 'P' },
		{ "bdat",		no_argument,		NULL, 'B' },
		{ "starttls",		no_argument,		NULL, 'T' },
		{ "tls-resume",		no_argument,		NULL, 'S' },
		{ "auth",		required_argument,	NULL, 'A' },
		{ "burl",		required_argument,	NULL, 'U' },
		{ "burl-file",		required_argument,	NULL, 'F' },
		{ "idle",		required_argument,	NULL, 'I' },
		{ "hold",		required_argument,	NULL, 'O' },
		{ "timeout",		required_argument,	NULL, 'W' },
		{ "grace",		required_argument,	NULL, 'G' },
		{ "max-errors",		required_argument,	NULL, 'E' },
		{ "help",		no_argument,		NULL, 'h' },
		{ NULL,			0,			NULL, 0 }
	};
	struct timeval tv;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "H:p:c:n:m:s:r:d:qh", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'H':
			opt.host = optarg;
			break;
		case 'p':
			opt.port = parse_long("-p", optarg, 1, 65535);
			break;
		case 'c':
			opt.conc = parse_long("-c", optarg, 1, 100000);
			break;
		case 'n':
			opt.total = parse_long("-n", optarg, 1, 100000000);
			break;
		case 'm':
			opt.per_session = parse_long("-m", optarg, 0, LONG_MAX);
			break;
		case 's':
			if (parse_size(optarg, &opt.size) == -1)
				die("-s %s: bad size (at most 64m)", optarg);
			break;
		case 'r':
			opt.rcpts = parse_long("-r", optarg, 1, MAX_RCPTS);
			break;
		case 'd':
			opt.duration = parse_secs("-d", optarg);
			break;
		case 'q':
			opt.quiet = 1;
			break;
		case 'R':
			opt.allow_remote = 1;
			break;
		case 'P':
			opt.pipelining = 1;
			break;
		case 'B':
			opt.bdat = 1;
			break;
		case 'T':
			opt.starttls = 1;
			break;
		case 'S':
			opt.tls_resume = 1;
			break;
		case 'A':
			opt.auth = optarg;
			break;
		case 'U':
			opt.burl = optarg;
			break;
		case 'F':
			opt.burl_file = optarg;
			break;
		case 'I':
			opt.idle = parse_long("--idle", optarg, 1, 1000000);
			break;
		case 'O':
			opt.hold = parse_secs("--hold", optarg);
			break;
		case 'W':
			opt.timeout = parse_secs("--timeout", optarg);
			break;
		case 'G':
			opt.grace = parse_secs("--grace", optarg);
			break;
		case 'E':
			opt.max_errors = parse_long("--max-errors", optarg, 1,
			    LONG_MAX);
			break;
		default:
			usage();
		}
	}
	if (optind != argc || opt.port == 0)
		usage();
	if (opt.tls_resume && !opt.starttls)
		die("--tls-resume needs --starttls");
	if (opt.burl != NULL && opt.burl_file != NULL)
		die("--burl and --burl-file exclude each other");
	if ((opt.burl != NULL || opt.burl_file != NULL) && opt.bdat)
		die("--burl and --bdat exclude each other");

	target_setup();
	payloads_build();
	if (opt.auth != NULL)
		run.auth_cmd = auth_build(opt.auth, "--auth");
	if (opt.burl != NULL || opt.burl_file != NULL)
		burl_build();
	if (opt.starttls)
		tls_setup();
	raise_nofile();
	signal(SIGPIPE, SIG_IGN);
	TAILQ_INIT(&run.sessions);

	if ((run.base = event_base_new()) == NULL)
		die("event_base_new failed");
	run.ev_stop = evtimer_new(run.base, stop_cb, NULL);
	run.ev_hold = evtimer_new(run.base, stop_cb, NULL);
	run.ev_grace = evtimer_new(run.base, grace_cb, NULL);
	run.ev_progress = event_new(run.base, -1, EV_PERSIST, progress_cb,
	    NULL);
	run.ev_sigint = evsignal_new(run.base, SIGINT, signal_cb, NULL);
	run.ev_sigterm = evsignal_new(run.base, SIGTERM, signal_cb, NULL);
	if (run.ev_stop == NULL || run.ev_hold == NULL ||
	    run.ev_grace == NULL || run.ev_progress == NULL ||
	    run.ev_sigint == NULL || run.ev_sigterm == NULL)
		die("event_new failed");
	evsignal_add(run.ev_sigint, NULL);
	evsignal_add(run.ev_sigterm, NULL);
	evtimer_add(run.ev_stop, secs_tv(opt.duration, &tv));
	if (!opt.quiet) {
		tv.tv_sec = 1;
		tv.tv_usec = 0;
		event_add(run.ev_progress, &tv);
	}

	run.t_start = run.t_last = now();
	fill_sessions();
	check_done();
	if (!run.finished)
		event_base_dispatch(run.base);
	if (!run.finished)
		run.t_end = now();
	report();

	if (opt.idle > 0)
		rc = run.idle_ready == opt.idle && run.idle_failed == 0 &&
		    run.idle_dropped == 0 && !run.fatal ? 0 : 2;
	else
		rc = run.accepted == opt.total ? 0 : 2;
	return rc;
}
