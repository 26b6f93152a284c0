/*
 * audit.c - the audit trail in a worker (see audit.h): records built with
 * jansson, sent over the worker's channel to the audit writer, and the
 * durable requests of transactions.
 *
 * The channel is a non-blocking unix SOCK_SEQPACKET socket: one record per
 * packet, in order.  What the socket does not take at once waits in a
 * queue (bounded by AUDIT_QUEUE_MAX octets) written on EV_WRITE.  Requests
 * that want an acknowledgement wait in `inflight`, oldest first; the writer
 * acknowledges a channel's records in the order they were sent.
 *
 * Failures are counted in an epoch: a STATUS from the writer saying the
 * log cannot be written, a failed acknowledgement, a timeout, a writer
 * restart (HELLO) or a record that could not be queued each start a new
 * one.  A request acknowledged as written is still failed if the epoch
 * changed since it was made: a record sent before it (without an
 * acknowledgement of its own, e.g. the "tx_rcpts" continuing its recipient
 * list) may have been lost in between.  Failing too often costs a
 * duplicate; failing too rarely would cost an unaccounted message.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <jansson.h>
#include <krb5.h>
#include <openssl/ssl.h>

#include "audit.h"
#include "audit_format.h"
#include "backend_reply.h"
#include "conf.h"
#include "conn.h"
#include "header_scan.h"
#include "imapurl.h"
#include "log.h"
#include "session.h"
#include "util.h"

/* Records waiting for the socket, at most (then new ones fail). */
#define AUDIT_QUEUE_MAX (8 * 1024 * 1024)
/* Recipients' share of one record (the rest go to "tx_rcpts" records). */
#define AUDIT_RCPTS_BYTES (32 * 1024)
/* Longest string value we record. */
#define AUDIT_TEXT_MAX 1024

struct audit_req {
	TAILQ_ENTRY(audit_req) entry;
	uint64_t id;
	uint64_t t_sent;		/* util_now_ms() */
	unsigned epoch;			/* A.epoch when made */
	int intent;			/* for "tx_pending": note the time */
	audit_done_cb cb;		/* NULL once cancelled */
	struct session *s;
	struct audit_req **owner;	/* cleared before cb runs */
};

struct qmsg {
	TAILQ_ENTRY(qmsg) entry;
	size_t len;
	char data[];
};

struct rcpt_reply {
	int code;
	char line[120];			/* the reply's first line, as relayed */
};

struct audit_tx {
	struct audit_req *req;
	int finalized;			/* the "tx" record was sent */
	int pending_sent;		/* "tx_pending" was sent */
	int mail_code;
	int data_code;
	struct rcpt_reply *rcpt;
	unsigned nrcpt;
	unsigned content;		/* CONTENT_* bits */
	struct header_scan hs;
	uint64_t t_mail, t_content, t_eod, t_intent, t_verdict;
	int overlap;			/* pending_sync = before_reply: the end
					 * of data went out with "tx_pending"
					 * in the channel, not yet on disk */
	char *body;			/* the members "tx_pending" and "tx"
					 * share (",\"tx\":...", JSON text),
					 * made once */
	size_t body_len;
	struct backend_reply *held;	/* the verdict(s), until relayed */
	unsigned nheld, capheld;
	int nohold;			/* holding failed: relay at once */
	int last_event;			/* reply id of the last policy/limit
					 * record of this transaction, or -1 */
};

enum { CONTENT_DATA = 1, CONTENT_BDAT = 2, CONTENT_BURL = 4 };

static struct {
	int enabled;
	int fd;
	const struct conf *conf;
	struct event *ev_read, *ev_write, *timer;
	int status;			/* the writer's last word: 0 = writable */
	int failed;			/* a request failed since the last success */
	int ping_out;			/* a PING awaits its STATUS */
	unsigned epoch;
	uint64_t next_id;
	pid_t pid;			/* ours, for request ids */
	TAILQ_HEAD(, audit_req) inflight;
	TAILQ_HEAD(, qmsg) outq;
	size_t outq_bytes;
	uint64_t lost;			/* records not even queued */
	char *pkt;			/* header + record being sent */
	struct event *ev_flush;		/* deferred: send what is queued */
	int flush_pending;
	struct evbuffer *scratch;
	char realm[256];
	int realm_tried;
} A;

/* ------------------------------------------------------------------ */
/* The channel */

static void complete(struct audit_req *req, int status);

static void
new_epoch(void)
{
	A.epoch++;
}

/* Send what is queued, SEND_BURST packets per sendmmsg().  Returns 0
 * when the queue is empty, 1 when the socket is full. */
#define SEND_BURST 64
static int
chan_flush(void)
{
	struct mmsghdr mm[SEND_BURST];
	struct iovec iov[SEND_BURST];
	struct qmsg *m;
	int n, k;

	while (!TAILQ_EMPTY(&A.outq)) {
		n = 0;
		TAILQ_FOREACH(m, &A.outq, entry) {
			if (n == SEND_BURST)
				break;
			iov[n].iov_base = m->data;
			iov[n].iov_len = m->len;
			memset(&mm[n], 0, sizeof(mm[n]));
			mm[n].msg_hdr.msg_iov = &iov[n];
			mm[n].msg_hdr.msg_iovlen = 1;
			n++;
		}
		k = sendmmsg(A.fd, mm, (unsigned)n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (k < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 1;
			if (errno == EINTR)
				continue;
			/* cannot happen on a live channel: drop the first
			 * packet (its request times out), note the loss */
			log_err("audit channel: %s", strerror(errno));
			new_epoch();
			k = 1;
		}
		while (k-- > 0) {
			m = TAILQ_FIRST(&A.outq);
			TAILQ_REMOVE(&A.outq, m, entry);
			A.outq_bytes -= m->len;
			free(m);
		}
	}
	return 0;
}

/* EV_WRITE: the socket has room again. */
static void
write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (chan_flush() == 0)
		event_del(A.ev_write);
}

/* The deferred flush: packets queued by every callback of this loop
 * iteration leave together. */
static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	A.flush_pending = 0;
	if (chan_flush() == 1)
		event_add(A.ev_write, NULL);
}

/* Queue one packet for the channel.  -1 if the queue is full. */
static int
chan_send(const char *data, size_t len)
{
	struct qmsg *m;

	if (A.outq_bytes + len > AUDIT_QUEUE_MAX)
		return -1;
	m = malloc(sizeof(*m) + len);
	if (m == NULL)
		return -1;
	m->len = len;
	memcpy(m->data, data, len);
	TAILQ_INSERT_TAIL(&A.outq, m, entry);
	A.outq_bytes += len;
	if (!A.flush_pending) {
		A.flush_pending = 1;
		event_active(A.ev_flush, EV_TIMEOUT, 0);
	}
	return 0;
}

/* A record was not sent: count it, and let no later acknowledgement
 * pass for a complete one (see the file comment). */
static void
rec_lost(void)
{
	if (A.lost++ % 1000 == 0)
		log_err("audit: record(s) lost: the writer is not taking them "
		    "(%llu so far)", (unsigned long long)A.lost);
	new_epoch();
	A.failed = 1;
}

/* Send the record A.pkt holds after its header (n octets of JSON).  -1
 * if lost. */
static int
pkt_send(size_t n, struct audit_req *req)
{
	struct audit_msg m;

	memset(&m, 0, sizeof(m));
	m.type = AUDIT_MSG_RECORD;
	if (req != NULL) {
		m.flags = AUDIT_F_ACK;
		m.id = req->id;
	}
	memcpy(A.pkt, &m, sizeof(m));
	if (chan_send(A.pkt, sizeof(m) + n) < 0) {
		rec_lost();
		return -1;
	}
	if (req != NULL)
		TAILQ_INSERT_TAIL(&A.inflight, req, entry);
	return 0;
}

/* Serialize and send a record; takes the reference to o.  -1 if lost. */
static int
rec_send(json_t *o, struct audit_req *req)
{
	size_t n;

	if (o == NULL) {
		rec_lost();
		return -1;
	}
	n = json_dumpb(o, A.pkt + sizeof(struct audit_msg), AUDIT_RECORD_MAX,
	    JSON_COMPACT);
	json_decref(o);
	if (n == 0 || n > AUDIT_RECORD_MAX) {
		log_err("audit: a record of %zu octets is too large", n);
		rec_lost();
		return -1;
	}
	return pkt_send(n, req);
}

static struct audit_req *
req_new(struct session *s, audit_done_cb cb, struct audit_req **owner)
{
	struct audit_req *req = calloc(1, sizeof(*req));

	if (req == NULL)
		return NULL;
	/* ids unique across worker restarts: acknowledgements queued for a
	 * dead predecessor must not match our requests */
	req->id = (uint64_t)A.pid << 32 | (++A.next_id & 0xffffffffu);
	req->t_sent = util_now_ms();
	req->epoch = A.epoch;
	req->cb = cb;
	req->s = s;
	req->owner = owner;
	*owner = req;
	return req;
}

static void
req_cancel(struct audit_req **reqp)
{
	struct audit_req *req = *reqp;

	if (req == NULL)
		return;
	*reqp = NULL;
	req->cb = NULL;
	req->owner = NULL;
	req->s = NULL;
}

/* The request is answered: take it off the list, then call back. */
static void
complete(struct audit_req *req, int status)
{
	audit_done_cb cb = req->cb;
	struct session *s = req->s;

	TAILQ_REMOVE(&A.inflight, req, entry);
	if (status == 0 && req->epoch != A.epoch)
		status = EIO;	/* something sent before it may be lost */
	if (status != 0)
		A.failed = 1;
	if (req->owner != NULL)
		*req->owner = NULL;
	if (req->intent && s != NULL && s->tx.audit != NULL)
		s->tx.audit->t_intent = util_now_ms();
	free(req);
	if (cb != NULL)
		cb(s, status);
}

/* Fail every request waiting now (not those their callbacks make). */
static void
fail_all(int status)
{
	TAILQ_HEAD(, audit_req) now = TAILQ_HEAD_INITIALIZER(now);
	struct audit_req *req;

	TAILQ_CONCAT(&now, &A.inflight, entry);
	while ((req = TAILQ_FIRST(&now)) != NULL) {
		TAILQ_REMOVE(&now, req, entry);
		TAILQ_INSERT_TAIL(&A.inflight, req, entry);
		complete(req, status);
	}
}

static void
on_acks(const char *data, size_t n)
{
	struct audit_msg m;
	struct audit_ack a;
	size_t i;

	memcpy(&m, data, sizeof(m));
	if (n < sizeof(m) + (size_t)m.count * sizeof(a))
		return;
	for (i = 0; i < m.count; i++) {
		struct audit_req *req;

		memcpy(&a, data + sizeof(m) + i * sizeof(a), sizeof(a));
		if (a.status != 0)
			new_epoch();
		/* in order: normally the oldest */
		TAILQ_FOREACH(req, &A.inflight, entry)
			if (req->id == a.id)
				break;
		if (req == NULL)
			continue;	/* failed already, or a predecessor's */
		if (a.status == 0 && req->epoch == A.epoch)
			A.failed = 0;
		complete(req, a.status);
	}
}

static void
read_cb(evutil_socket_t fd, short what, void *arg)
{
	char buf[sizeof(struct audit_msg) +
	    AUDIT_ACKS_PER_MSG * sizeof(struct audit_ack)];
	struct audit_msg m;

	(void)what;
	(void)arg;
	for (;;) {	/* EINTR */
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < (ssize_t)sizeof(m))
			return;
		memcpy(&m, buf, sizeof(m));
		switch (m.type) {
		case AUDIT_MSG_ACK:
			on_acks(buf, (size_t)n);
			break;
		case AUDIT_MSG_STATUS:
			A.ping_out = 0;
			if (m.status != 0) {
				if (A.status == 0)
					log_err("audit: the writer cannot write "
					    "the log (%s): new transactions are "
					    "refused", strerror(m.status));
				new_epoch();
			} else {
				if (A.status != 0 || A.failed)
					log_warn("audit: the log is writable "
					    "again");
				A.failed = 0;
			}
			A.status = m.status;
			break;
		case AUDIT_MSG_HELLO:
			/* a (new) writer: what we wait for may never come */
			A.status = m.status;
			A.ping_out = 0;
			new_epoch();
			if (!TAILQ_EMPTY(&A.inflight)) {
				log_warn("audit: the writer restarted: failing "
				    "the transactions waiting for it");
				fail_all(EPIPE);
			}
			A.failed = 0;
			break;
		default:
			break;
		}
		/* one packet per call: the writer sends one per batch, and
		 * the event (level-triggered) comes back at once if another
		 * waits, so a second recv() would only meet EAGAIN */
		return;
	}
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t limit = (uint64_t)A.conf->audit.timeout * 1000, now;
	struct audit_req *req;

	(void)fd;
	(void)what;
	(void)arg;
	now = util_now_ms();
	if ((A.failed || A.status != 0) && !A.ping_out) {
		/* only the writer can say it works again: ask */
		struct audit_msg m;

		memset(&m, 0, sizeof(m));
		m.type = AUDIT_MSG_PING;
		if (chan_send((const char *)&m, sizeof(m)) == 0)
			A.ping_out = 1;
	}
	req = TAILQ_FIRST(&A.inflight);
	if (req == NULL || now - req->t_sent < limit)
		return;
	log_err("audit: no answer from the writer in %u s: failing the "
	    "transactions waiting for it", A.conf->audit.timeout);
	new_epoch();
	/* everything that old: the list is in sending order */
	{
		TAILQ_HEAD(, audit_req) old = TAILQ_HEAD_INITIALIZER(old);

		while ((req = TAILQ_FIRST(&A.inflight)) != NULL &&
		    now - req->t_sent >= limit) {
			TAILQ_REMOVE(&A.inflight, req, entry);
			TAILQ_INSERT_TAIL(&old, req, entry);
		}
		while ((req = TAILQ_FIRST(&old)) != NULL) {
			TAILQ_REMOVE(&old, req, entry);
			TAILQ_INSERT_HEAD(&A.inflight, req, entry);
			complete(req, ETIMEDOUT);
		}
	}
}

int
audit_client_init(struct event_base *base, const struct conf *conf, int fd,
		  const char **error_r)
{
	struct timeval sec = { 1, 0 };

	memset(&A, 0, sizeof(A));
	A.fd = -1;
	TAILQ_INIT(&A.inflight);
	TAILQ_INIT(&A.outq);
	A.conf = conf;
	if (!conf->audit.enabled || fd < 0)
		return 0;
	A.fd = fd;
	A.pid = getpid();
	A.pkt = malloc(sizeof(struct audit_msg) + AUDIT_RECORD_MAX);
	A.scratch = evbuffer_new();
	A.ev_read = event_new(base, fd, EV_READ | EV_PERSIST, read_cb, NULL);
	A.ev_write = event_new(base, fd, EV_WRITE | EV_PERSIST, write_cb, NULL);
	A.timer = event_new(base, -1, EV_PERSIST, timer_cb, NULL);
	A.ev_flush = event_new(base, -1, 0, flush_cb, NULL);
	if (A.pkt == NULL || A.scratch == NULL || A.ev_read == NULL ||
	    A.ev_write == NULL || A.timer == NULL || A.ev_flush == NULL) {
		*error_r = "out of memory";
		audit_client_free();
		return -1;
	}
	event_add(A.ev_read, NULL);
	event_add(A.timer, &sec);
	A.enabled = 1;
	return 0;
}

void
audit_client_free(void)
{
	struct audit_req *req;
	struct qmsg *m;

	/* flush what can go (session_close records at shutdown) */
	if (A.fd >= 0)
		(void)chan_flush();
	while ((req = TAILQ_FIRST(&A.inflight)) != NULL) {
		TAILQ_REMOVE(&A.inflight, req, entry);
		if (req->owner != NULL)
			*req->owner = NULL;
		free(req);
	}
	while ((m = TAILQ_FIRST(&A.outq)) != NULL) {
		TAILQ_REMOVE(&A.outq, m, entry);
		free(m);
	}
	if (A.ev_read != NULL)
		event_free(A.ev_read);
	if (A.ev_write != NULL)
		event_free(A.ev_write);
	if (A.timer != NULL)
		event_free(A.timer);
	if (A.ev_flush != NULL)
		event_free(A.ev_flush);
	if (A.scratch != NULL)
		evbuffer_free(A.scratch);
	free(A.pkt);
	if (A.fd >= 0)
		close(A.fd);
	memset(&A, 0, sizeof(A));
	A.fd = -1;
}

int
audit_enabled(void)
{
	return A.enabled;
}

int
audit_accepting(void)
{
	return !A.enabled || (A.status == 0 && !A.failed);
}

/* ------------------------------------------------------------------ */
/* Building records */

static json_t *
jtextn(const char *s, size_t len)
{
	char buf[AUDIT_TEXT_MAX * 4 + 1];

	if (s == NULL)
		return json_null();
	if (len > AUDIT_TEXT_MAX)
		len = AUDIT_TEXT_MAX;
	audit_clean_text(s, len, buf, sizeof(buf));
	return json_string_nocheck(buf);
}

static json_t *
jtext(const char *s)
{
	return s == NULL ? json_null() : jtextn(s, strlen(s));
}

static void
set(json_t *o, const char *k, json_t *v)
{
	json_object_set_new_nocheck(o, k, v);
}

static json_t *
rec_new(const char *type, const struct session *s)
{
	struct timespec now;
	char ts[32];
	json_t *o = json_object();

	if (o == NULL)
		return NULL;
	clock_gettime(CLOCK_REALTIME, &now);
	audit_format_time(&now, ts);
	set(o, "ts", json_string_nocheck(ts));
	set(o, "type", json_string_nocheck(type));
	set(o, "host", json_string_nocheck(A.conf->server_name));
	set(o, "session", s != NULL ? json_string_nocheck(s->id) : json_null());
	set(o, "identity", s != NULL && s->auth ? jtext(s->identity) :
	    json_null());
	return o;
}

/* "452 4.5.3" of one of our replies */
static json_t *
jreply_id(enum smtp_reply_id id)
{
	const char *t = smtp_reply_text(id);
	size_t n = strcspn(t + 4, " ");

	return json_stringn_nocheck(t, 4 + n);
}

/* A backend reply's first line as the client sees it ("250 2.0.0 Ok"). */
static void
reply_line(const struct backend_reply *r, enum backend_expect e, char *out,
	   size_t outsize)
{
	size_t n;
	char *p;

	backend_reply_relay(r, e, A.scratch);
	n = evbuffer_get_length(A.scratch);
	p = (char *)evbuffer_pullup(A.scratch, (ev_ssize_t)n);
	n = p != NULL ? strcspn(p, "\r\n") : 0;
	if (n >= outsize)
		n = outsize - 1;
	if (n > 0)
		memcpy(out, p, n);
	out[n] = '\0';
	if (n > 3 && out[3] == '-')
		out[3] = ' ';
	evbuffer_drain(A.scratch, evbuffer_get_length(A.scratch));
}

void
audit_event(const char *type, const struct session *s, ...)
{
	va_list ap;
	json_t *o;
	int t;

	if (!A.enabled)
		return;
	o = rec_new(type, s);
	if (o == NULL)
		return;
	va_start(ap, s);
	while ((t = va_arg(ap, int)) != AUDIT_T_END) {
		const char *k = va_arg(ap, const char *);

		switch (t) {
		case AUDIT_T_STR:
			set(o, k, jtext(va_arg(ap, const char *)));
			break;
		case AUDIT_T_INT:
			set(o, k, json_integer((json_int_t)va_arg(ap, long long)));
			break;
		case AUDIT_T_BOOL:
			set(o, k, json_boolean(va_arg(ap, int)));
			break;
		default:
			va_end(ap);
			json_decref(o);
			log_err("audit_event(%s): bad field type %d", type, t);
			return;
		}
	}
	va_end(ap);
	rec_send(o, NULL);
}

void
audit_burl_fetch(const struct session *s, const char *server, const char *url,
		 size_t url_len, const struct imapurl *u, uint64_t bytes,
		 const char *result, uint64_t ms)
{
	char red[IMAPURL_MAX_LEN + 64];
	json_t *o;

	if (!A.enabled || (o = rec_new("burl_fetch", s)) == NULL)
		return;
	imapurl_redact(url, url_len, red, sizeof(red));
	set(o, "tx", s != NULL ? json_string_nocheck(s->tx.id) : json_null());
	set(o, "server", jtext(server));
	set(o, "url", jtext(red));
	if (u != NULL) {
		set(o, "imap_host", jtext(u->host));
		set(o, "imap_port", json_integer(u->port));
		set(o, "mailbox", jtext(u->mailbox));
		set(o, "uidvalidity", json_integer(u->uidvalidity));
		set(o, "uid", json_integer(u->uid));
		set(o, "section", u->section[0] ? jtext(u->section) : json_null());
		if (u->has_partial) {
			set(o, "partial_offset", json_integer(u->partial_offset));
			set(o, "partial_length", json_integer(u->partial_length));
		}
		set(o, "url_user", u->user[0] ? jtext(u->user) : json_null());
	}
	set(o, "bytes", json_integer((json_int_t)bytes));
	set(o, "result", jtext(result));
	set(o, "ms", json_integer((json_int_t)ms));
	rec_send(o, NULL);
}

/*
 * The records of every message (tx_pending, tx) and of every session
 * (session_open, session_close) are written by hand: building them as
 * jansson objects (one allocation per member, a hash table, snprintf for
 * each number) was most of what a record cost the worker
 * (docs/PERFORMANCE.md, "The audit trail").  The writer checks every
 * record (audit_json_check) as it checks any other.  The rarer records
 * are still built with jansson.
 */
struct jw {
	char *p;
	size_t len, cap;
	int grow;		/* realloc p as needed, up to AUDIT_RECORD_MAX */
	int err;		/* out of room or memory: the record is lost */
};

static int
jw_room(struct jw *w, size_t n)
{
	size_t cap;
	char *np;

	if (w->err)
		return -1;
	if (w->len + n <= w->cap)
		return 0;
	if (!w->grow || w->len + n > AUDIT_RECORD_MAX) {
		w->err = 1;
		return -1;
	}
	cap = w->cap ? w->cap : 512;
	while (cap < w->len + n)
		cap *= 2;
	if (cap > AUDIT_RECORD_MAX)
		cap = AUDIT_RECORD_MAX;
	if ((np = realloc(w->p, cap)) == NULL) {
		w->err = 1;
		return -1;
	}
	w->p = np;
	w->cap = cap;
	return 0;
}

static void
jw_raw(struct jw *w, const char *s, size_t n)
{
	if (jw_room(w, n) == 0) {
		memcpy(w->p + w->len, s, n);
		w->len += n;
	}
}

#define jw_lit(w, lit) jw_raw((w), (lit), sizeof(lit) - 1)

/* A JSON string (RFC 8259 7) of s[0..n), which is UTF-8: '"', '\' and
 * control characters escaped, as jansson does. */
static void
jw_strn(struct jw *w, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, run = 0;

	if (jw_room(w, n + 2) < 0)
		return;
	w->p[w->len++] = '"';
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char e[6];
		size_t el = 2;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		jw_raw(w, s + run, i - run);
		run = i + 1;
		e[0] = '\\';
		switch (c) {
		case '"': e[1] = '"'; break;
		case '\\': e[1] = '\\'; break;
		case '\b': e[1] = 'b'; break;
		case '\f': e[1] = 'f'; break;
		case '\n': e[1] = 'n'; break;
		case '\r': e[1] = 'r'; break;
		case '\t': e[1] = 't'; break;
		default:
			memcpy(e + 1, "u00", 3);
			e[4] = hex[c >> 4];
			e[5] = hex[c & 15];
			el = 6;
			break;
		}
		jw_raw(w, e, el);
	}
	jw_raw(w, s + run, n - run);
	jw_lit(w, "\"");
}

static void
jw_str(struct jw *w, const char *s)
{
	if (s == NULL)
		jw_lit(w, "null");
	else
		jw_strn(w, s, strlen(s));
}

/* Text from outside (jtext): made printable UTF-8 and cut first. */
static void
jw_text(struct jw *w, const char *s)
{
	char buf[AUDIT_TEXT_MAX * 4 + 1];
	size_t len;

	if (s == NULL) {
		jw_lit(w, "null");
		return;
	}
	len = strlen(s);
	audit_clean_text(s, len > AUDIT_TEXT_MAX ? AUDIT_TEXT_MAX : len, buf,
	    sizeof(buf));
	jw_str(w, buf);
}

static void
jw_int(struct jw *w, long long v)
{
	char buf[24], *e = buf + sizeof(buf), *q = e;
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v :
	    (unsigned long long)v;

	do {
		*--q = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		*--q = '-';
	jw_raw(w, q, (size_t)(e - q));
}

/* ,"key": */
static void
jw_key(struct jw *w, const char *key)
{
	jw_lit(w, ",\"");
	jw_raw(w, key, strlen(key));
	jw_lit(w, "\":");
}

/* The common members (rec_new's), from the opening brace. */
static void
jw_head(struct jw *w, const char *type, const struct session *s)
{
	struct timespec now;
	char ts[32];

	clock_gettime(CLOCK_REALTIME, &now);
	audit_format_time(&now, ts);
	jw_lit(w, "{\"ts\":");
	jw_str(w, ts);
	jw_lit(w, ",\"type\":");
	jw_str(w, type);
	jw_key(w, "host");
	jw_str(w, A.conf->server_name);
	jw_key(w, "session");
	jw_str(w, s != NULL ? s->id : NULL);
	jw_key(w, "identity");
	if (s != NULL && s->auth)
		jw_text(w, s->identity);
	else
		jw_lit(w, "null");
}

/* Start a record in A.pkt (after its header): jw_head(), then the
 * caller's members, then jw_send(). */
static void
jw_begin(struct jw *w, const char *type, const struct session *s)
{
	w->p = A.pkt + sizeof(struct audit_msg);
	w->len = 0;
	w->cap = AUDIT_RECORD_MAX;
	w->grow = 0;
	w->err = 0;
	jw_head(w, type, s);
}

/* Close the record and send it.  -1 if lost. */
static int
jw_send(struct jw *w, struct audit_req *req)
{
	jw_lit(w, "}");
	if (w->err) {
		log_err("audit: a record of more than %u octets",
		    (unsigned)AUDIT_RECORD_MAX);
		rec_lost();
		return -1;
	}
	return pkt_send(w->len, req);
}

/* "452 4.5.3" of one of our replies (jreply_id's) */
static void
jw_reply_id(struct jw *w, enum smtp_reply_id id)
{
	const char *t = smtp_reply_text(id);

	jw_strn(w, t, 4 + strcspn(t + 4, " "));
}

static void
jw_bool(struct jw *w, int v)
{
	if (v)
		jw_lit(w, "true");
	else
		jw_lit(w, "false");
}

/* ------------------------------------------------------------------ */
/* Sessions */

void
audit_session_open(struct session *s, const char *lb_ip, int lb_port)
{
	struct jw w;

	if (!A.enabled || s->audit_opened)
		return;
	s->audit_opened = 1;
	s->audit_t_open = util_now_ms();
	jw_begin(&w, "session_open", s);
	jw_key(&w, "client_ip");
	jw_text(&w, s->peer_ip);
	jw_key(&w, "client_port");
	jw_int(&w, s->peer_port);
	jw_key(&w, "local_ip");
	jw_text(&w, s->local_ip);
	jw_key(&w, "local_port");
	jw_int(&w, s->local_port);
	jw_key(&w, "listener");
	jw_text(&w, s->lc->name);
	jw_key(&w, "listener_kind");
	jw_str(&w, conf_listener_kind_name(s->lc->kind));
	if (lb_ip != NULL) {
		jw_key(&w, "lb_ip");
		jw_text(&w, lb_ip);
		jw_key(&w, "lb_port");
		jw_int(&w, lb_port);
	}
	jw_send(&w, NULL);
}

void
audit_session_tls(struct session *s)
{
	SSL *ssl;
	const char *sni;
	json_t *o;

	if (!A.enabled || (ssl = conn_ssl(s->conn)) == NULL ||
	    (o = rec_new("tls", s)) == NULL)
		return;
	sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	set(o, "tls_version", jtext(SSL_get_version(ssl)));
	set(o, "tls_cipher", jtext(SSL_CIPHER_get_name(
	    SSL_get_current_cipher(ssl))));
	set(o, "tls_sni", jtext(sni));
	set(o, "tls_client_subject", s->tls_subject[0] ?
	    jtext(s->tls_subject) : json_null());
	set(o, "tls_resumed", json_boolean(SSL_session_reused(ssl)));
	set(o, "implicit", json_boolean(s->lc->kind == LISTENER_SUBMISSIONS));
	rec_send(o, NULL);
}

static const char *
close_reason(const struct session *s)
{
	switch (s->audit_close) {
	case R_BYE:
		return "quit";
	case R_TIMEOUT:
		return "timeout";
	case R_SHUTDOWN:
		return "shutdown";
	case R_TOO_MANY_ERRORS:
		return "too many errors";
	case R_AUTH_TOO_MANY:
		return "too many authentication failures";
	case R_TLS_UNAVAIL_421:
		return "TLS unavailable";
	case R_BACKEND_GONE_421:
		return "backend unavailable";
	case R_REPLY_COUNT:
		break;
	default:
		return "closed by the server";
	}
	switch (s->state) {
	case S_TLS:
		return "TLS handshake failed";
	case S_PROXY_HDR:
		return "no valid PROXY header";
	default:
		return "client disconnected";
	}
}

void
audit_session_close(struct session *s)
{
	struct jw w;

	if (!A.enabled)
		return;
	if (!s->audit_opened)
		audit_session_open(s, NULL, 0);
	jw_begin(&w, "session_close", s);
	jw_key(&w, "reason");
	jw_str(&w, close_reason(s));
	jw_key(&w, "reply");
	if (s->audit_close != R_REPLY_COUNT)
		jw_reply_id(&w, s->audit_close);
	else
		jw_lit(&w, "null");
	jw_key(&w, "duration_ms");
	jw_int(&w, (long long)(util_now_ms() - s->audit_t_open));
	jw_key(&w, "messages");
	jw_int(&w, (long long)s->messages);
	jw_key(&w, "tls");
	jw_bool(&w, s->tls);
	jw_key(&w, "auth");
	jw_bool(&w, s->auth);
	jw_key(&w, "auth_failures");
	jw_int(&w, (long long)s->auth_failures);
	jw_send(&w, NULL);
}

/* Our replies that are a policy decision or a limit being hit. */
static void
reply_event(struct session *s, enum smtp_reply_id id)
{
	const struct conf *c = s->conf;
	const char *rule = NULL, *limit = NULL;
	long long value = 0;
	json_t *o;

	switch (id) {
	case R_AUTH_REQUIRED:
		rule = "auth_required";
		break;
	case R_AUTH_TLS_REQUIRED:
		rule = "tls_required_for_auth";
		break;
	case R_AUTH_WEAK:
		rule = "mechanism_too_weak";
		break;
	case R_BARE_NEWLINE:
		rule = "bare_newline";
		break;
	case R_TOO_MANY_RCPTS:
		limit = "limits.max_recipients";
		value = c->limits.max_recipients;
		break;
	case R_SIZE_EXCEEDED:
		limit = "limits.max_message_size";
		value = (long long)c->limits.max_message_size;
		break;
	case R_DATA_LINE_TOO_LONG:
		limit = "limits.max_data_line_length";
		value = c->limits.max_data_line_length;
		break;
	case R_LINE_TOO_LONG:
		limit = "limits.max_line_length";
		value = c->limits.max_line_length;
		break;
	case R_TOO_MANY_ERRORS:
		limit = "limits.max_bad_commands";
		value = c->limits.max_bad_commands;
		break;
	case R_AUTH_TOO_MANY:
		limit = "sasl.max_failures";
		value = c->sasl.max_failures;
		break;
	case R_BURL_TOO_MANY:
		limit = "burl.max_bad_burl";
		value = c->burl.max_bad_burl;
		break;
	case R_BURL_FORCED_DISCONNECT:
		rule = "burl_access_disconnect";
		break;
	case R_TIMEOUT:
		if (s->state == S_GREETING) {
			limit = "timeouts.greeting";
			value = c->timeouts.greeting;
		} else if (s->state == S_DATA || s->state == S_BDAT) {
			limit = "timeouts.data";
			value = c->timeouts.data;
		} else {
			limit = "timeouts.command";
			value = c->timeouts.command;
		}
		break;
	default:
		return;
	}
	if (s->tx.audit != NULL) {
		/* an LMTP client hears the refusal once per recipient: one
		 * record is enough */
		if (s->tx.audit->last_event == (int)id)
			return;
		s->tx.audit->last_event = (int)id;
	}
	if ((o = rec_new(rule != NULL ? "policy" : "limit", s)) == NULL)
		return;
	if (rule != NULL) {
		set(o, "rule", json_string_nocheck(rule));
	} else {
		set(o, "limit", json_string_nocheck(limit));
		set(o, "value", json_integer(value));
	}
	set(o, "reply", jreply_id(id));
	if (s->tx.audit != NULL) {
		set(o, "tx", json_string_nocheck(s->tx.id));
		set(o, "mail_from", jtext(s->tx.from));
	}
	rec_send(o, NULL);
}

void
audit_session_reply(struct session *s, enum smtp_reply_id id)
{
	if (!A.enabled)
		return;
	if ((id == R_BYE || smtp_reply_code(id) == 421) &&
	    s->audit_close == R_REPLY_COUNT)
		s->audit_close = id;
	reply_event(s, id);
}

void
audit_policy(struct session *s, const char *rule, enum smtp_reply_id id,
	     const char *key, const char *value)
{
	json_t *o;

	if (!A.enabled || (o = rec_new("policy", s)) == NULL)
		return;
	set(o, "rule", jtext(rule));
	set(o, "reply", jreply_id(id));
	if (key != NULL)
		set(o, key, jtext(value));
	rec_send(o, NULL);
}

/* The default realm the GSSAPI plugin strips (krb5.conf), once. */
static const char *
default_realm(void)
{
	if (!A.realm_tried) {
		krb5_context ctx;
		char *r = NULL;

		A.realm_tried = 1;
		if (krb5_init_context(&ctx) == 0) {
			if (krb5_get_default_realm(ctx, &r) == 0 && r != NULL) {
				snprintf(A.realm, sizeof(A.realm), "%s", r);
				krb5_free_default_realm(ctx, r);
			}
			krb5_free_context(ctx);
		}
	}
	return A.realm;
}

void
audit_auth(struct session *s, const char *result, const char *mech,
	   const char *authcid, const char *authzid, const char *reason)
{
	json_t *o;

	if (!A.enabled || (o = rec_new("auth", s)) == NULL)
		return;
	set(o, "result", json_string_nocheck(result));
	set(o, "mechanism", jtext(mech));
	set(o, "authcid", jtext(authcid));
	set(o, "authzid", jtext(authzid));
	if (mech != NULL && strcmp(mech, "GSSAPI") == 0 && authcid != NULL &&
	    authcid[0] != '\0') {
		/* the plugin strips the default realm: put it back */
		char princ[600];

		if (strchr(authcid, '@') != NULL || default_realm()[0] == '\0')
			snprintf(princ, sizeof(princ), "%s", authcid);
		else
			snprintf(princ, sizeof(princ), "%s@%s", authcid,
			    default_realm());
		set(o, "krb5_principal", jtext(princ));
	}
	if (strcmp(result, "success") != 0) {
		set(o, "reason", jtext(reason));
		set(o, "failures", json_integer(s->auth_failures));
	}
	set(o, "tls", json_boolean(s->tls));
	rec_send(o, NULL);
}

void
audit_refused_connection(const struct sockaddr *peer, const char *listener,
			 const char *limit, unsigned long long value)
{
	const char *t = smtp_reply_text(R_TOO_MANY_CONN);
	char ip[64], reply[16];
	int port;

	if (!A.enabled)
		return;
	util_sockaddr_ip(peer, ip, sizeof(ip), &port);
	snprintf(reply, sizeof(reply), "%.*s", (int)(4 + strcspn(t + 4, " ")), t);
	audit_event("limit", NULL, AUDIT_STR("limit", limit),
	    AUDIT_INT("value", value), AUDIT_STR("reply", reply),
	    AUDIT_STR("client_ip", ip), AUDIT_INT("client_port", port),
	    AUDIT_STR("listener", listener), AUDIT_END);
}

/* ------------------------------------------------------------------ */
/* Transactions */

void
audit_tx_start(struct session *s)
{
	struct audit_tx *atx;

	if (!A.enabled)
		return;
	audit_tx_end(s);
	atx = calloc(1, sizeof(*atx));
	if (atx == NULL) {
		/* no durable record possible: the transaction must fail */
		log_err("%s: audit: out of memory", s->id);
		A.failed = 1;
		return;
	}
	header_scan_init(&atx->hs);
	atx->t_mail = util_now_ms();
	atx->last_event = -1;
	s->tx.audit = atx;
}

void
audit_tx_backend_reply(struct session *s, int kind, unsigned n,
		       const struct backend_reply *r)
{
	struct audit_tx *atx = s->tx.audit;

	if (atx == NULL)
		return;
	switch (kind) {
	case TAG_MAIL:
		atx->mail_code = r->code;
		break;
	case TAG_DATA_CMD:
		atx->data_code = r->code;
		break;
	case TAG_RCPT:
		if (n >= s->tx.rcpt_count)
			break;
		if (n >= atx->nrcpt) {
			unsigned want = s->tx.rcpt_count;
			struct rcpt_reply *nr = realloc(atx->rcpt,
			    want * sizeof(*nr));

			if (nr == NULL)
				break;
			memset(nr + atx->nrcpt, 0,
			    (want - atx->nrcpt) * sizeof(*nr));
			atx->rcpt = nr;
			atx->nrcpt = want;
		}
		atx->rcpt[n].code = r->code;
		reply_line(r, BE_EXPECT_RCPT, atx->rcpt[n].line,
		    sizeof(atx->rcpt[n].line));
		break;
	default:
		break;
	}
}

void
audit_tx_content(struct session *s, const char *how)
{
	struct audit_tx *atx = s->tx.audit;

	if (atx == NULL)
		return;
	if (atx->t_content == 0)
		atx->t_content = util_now_ms();
	if (strcmp(how, "DATA") == 0)
		atx->content |= CONTENT_DATA;
	else if (strcmp(how, "BDAT") == 0)
		atx->content |= CONTENT_BDAT;
	else if (strcmp(how, "BURL") == 0)
		atx->content |= CONTENT_BURL;
}

void
audit_tx_scan(struct session *s, struct evbuffer *content)
{
	struct audit_tx *atx = s->tx.audit;
	struct evbuffer_iovec v[8];
	int i, n;

	if (atx == NULL || header_scan_done(&atx->hs))
		return;
	n = evbuffer_peek(content, -1, NULL, v, 8);
	if (n > 8)
		n = 8;	/* the rest next time: the headers are near the start */
	for (i = 0; i < n; i++)
		if (header_scan_feed(&atx->hs, v[i].iov_base, v[i].iov_len))
			break;
}

static uint64_t
ms_between(uint64_t a, uint64_t b)
{
	return a != 0 && b >= a ? b - a : 0;
}

/* A recipient in a "tx_rcpts" record: the address and the backend's
 * reply to it. */
static json_t *
rcpt_json(const struct tx *tx, const struct audit_tx *atx, unsigned i)
{
	json_t *r = json_object();

	set(r, "to", jtext(tx->rcpts[i]));
	if (i < atx->nrcpt && atx->rcpt[i].code != 0) {
		set(r, "code", json_integer(atx->rcpt[i].code));
		set(r, "reply", jtext(atx->rcpt[i].line));
	} else {
		set(r, "code", json_null());	/* no reply from the backend */
	}
	return r;
}

/* The same, in the transaction's own record. */
static void
jw_rcpt(struct jw *w, const struct tx *tx, const struct audit_tx *atx,
	unsigned i)
{
	jw_lit(w, "{\"to\":");
	jw_text(w, tx->rcpts[i]);
	if (i < atx->nrcpt && atx->rcpt[i].code != 0) {
		jw_key(w, "code");
		jw_int(w, atx->rcpt[i].code);
		jw_key(w, "reply");
		jw_text(w, atx->rcpt[i].line);
	} else {
		jw_lit(w, ",\"code\":null");	/* no reply from the backend */
	}
	jw_lit(w, "}");
}

static void
send_rcpts(struct session *s, json_t *list, unsigned offset)
{
	json_t *x = rec_new("tx_rcpts", s);

	if (x == NULL) {
		json_decref(list);
		return;
	}
	set(x, "tx", json_string_nocheck(s->tx.id));
	set(x, "offset", json_integer(offset));
	set(x, "rcpts", list);
	rec_send(x, NULL);
}

/*
 * The members every tx / tx_pending record has, once per transaction
 * (the "tx" record repeats what "tx_pending" said).  The record lists the
 * recipients while they fit in AUDIT_RCPTS_BYTES; the others go in
 * "tx_rcpts" records sent before it (on the same channel, so the
 * record's acknowledgement covers them: see the file comment).  -1 if out
 * of memory.
 */
static int
tx_body(struct session *s)
{
	struct tx *tx = &s->tx;
	struct audit_tx *atx = tx->audit;
	struct jw w = { NULL, 0, 0, 1, 0 };
	json_t *chunk = NULL;
	size_t bytes = 0, chunk_bytes = 0;
	unsigned i, chunk_off = 0, in_main = 0;
	int main_full = 0;

	if (atx->body != NULL)
		return 0;
	jw_lit(&w, ",\"tx\":");
	jw_str(&w, tx->id);
	jw_key(&w, "mail_from");
	jw_text(&w, tx->from);
	jw_key(&w, "mail_code");
	if (atx->mail_code)
		jw_int(&w, atx->mail_code);
	else
		jw_lit(&w, "null");
	jw_lit(&w, ",\"rcpts\":[");
	for (i = 0; i < tx->rcpt_count; i++) {
		/* worst case: every octet shown as \xNN, plus the reply */
		size_t sz = 4 * strlen(tx->rcpts[i]) + 200;

		if (!main_full && (i == 0 || bytes + sz <= AUDIT_RCPTS_BYTES)) {
			if (i > 0)
				jw_lit(&w, ",");
			jw_rcpt(&w, tx, atx, i);
			bytes += sz;
			in_main++;
			continue;
		}
		main_full = 1;
		if (chunk != NULL && chunk_bytes + sz > AUDIT_RCPTS_BYTES) {
			send_rcpts(s, chunk, chunk_off);
			chunk = NULL;
		}
		if (chunk == NULL) {
			chunk = json_array();
			chunk_off = i;
			chunk_bytes = 0;
		}
		json_array_append_new(chunk, rcpt_json(tx, atx, i));
		chunk_bytes += sz;
	}
	if (chunk != NULL)
		send_rcpts(s, chunk, chunk_off);
	jw_lit(&w, "]");
	if (main_full) {
		jw_key(&w, "rcpts_continued");
		jw_int(&w, tx->rcpt_count - in_main);
	}
	jw_key(&w, "rcpt_count");
	jw_int(&w, tx->rcpt_count);
	jw_key(&w, "rcpt_accepted");
	jw_int(&w, tx->rcpt_accepted);
	jw_key(&w, "size");
	jw_int(&w, (long long)tx->filter.out_bytes);
	jw_key(&w, "message_id");
	jw_text(&w, header_scan_message_id(&atx->hs));
	jw_lit(&w, ",\"content\":[");
	{
		const char *sep = "";

		if (atx->content & CONTENT_DATA) {
			jw_lit(&w, "\"DATA\"");
			sep = ",";
		}
		if (atx->content & CONTENT_BDAT) {
			jw_raw(&w, sep, strlen(sep));
			jw_lit(&w, "\"BDAT\"");
			sep = ",";
		}
		if (atx->content & CONTENT_BURL) {
			jw_raw(&w, sep, strlen(sep));
			jw_lit(&w, "\"BURL\"");
		}
	}
	jw_lit(&w, "]");
	jw_key(&w, "backend_mode");
	if (atx->content == 0)
		jw_lit(&w, "null");
	else if (tx->backend_bdat)
		jw_lit(&w, "\"BDAT\"");
	else
		jw_lit(&w, "\"DATA\"");
	if (tx->binary)
		jw_lit(&w, ",\"body\":\"BINARYMIME\"");
	if (tx->smtputf8)
		jw_lit(&w, ",\"smtputf8\":true");
	if (w.err) {
		free(w.p);
		return -1;
	}
	atx->body = w.p;
	atx->body_len = w.len;
	return 0;
}

/* Begin a "tx_pending" or "tx" record in A.pkt: the common members and
 * the transaction's; the caller adds its own and ends with jw_send().
 * -1 if the record cannot be made (counted as lost). */
static int
tx_begin(struct session *s, const char *type, struct jw *w)
{
	struct audit_tx *atx = s->tx.audit;

	/* first: it may send "tx_rcpts" records, through A.pkt */
	if (tx_body(s) < 0) {
		rec_lost();
		return -1;
	}
	jw_begin(w, type, s);
	jw_raw(w, atx->body, atx->body_len);
	return 0;
}

static void
jw_timings(struct jw *w, const struct audit_tx *atx, uint64_t now)
{
	jw_lit(w, ",\"timings\":{\"envelope_ms\":");
	jw_int(w, (long long)ms_between(atx->t_mail,
	    atx->t_content ? atx->t_content : now));
	if (atx->t_content) {
		jw_key(w, "content_ms");
		jw_int(w, (long long)ms_between(atx->t_content,
		    atx->t_eod ? atx->t_eod : now));
	}
	if (atx->t_intent) {
		jw_key(w, "audit_ms");
		jw_int(w, (long long)ms_between(atx->t_eod, atx->t_intent));
	}
	if (atx->t_verdict) {
		/* before_reply: the backend's work began at the end of data,
		 * alongside the audit's */
		jw_key(w, "backend_ms");
		jw_int(w, (long long)ms_between(atx->t_intent && !atx->overlap ?
		    atx->t_intent : atx->t_eod, atx->t_verdict));
	}
	jw_key(w, "total_ms");
	jw_int(w, (long long)ms_between(atx->t_mail, now));
	jw_lit(w, "}");
}

/* "reply", "code" and "enhanced" of a reply line (set_reply's). */
static void
jw_reply(struct jw *w, const char *line)
{
	size_t el, len = strlen(line);

	jw_key(w, "reply");
	jw_text(w, line);
	if (len >= 3) {
		jw_key(w, "code");
		jw_int(w, atoi(line));
	}
	el = len > 4 ? smtp_enhanced_code_len(line + 4) : 0;
	jw_key(w, "enhanced");
	if (el > 0)
		jw_strn(w, line + 4, el);
	else
		jw_lit(w, "null");
}

static void
jw_queue_id(struct jw *w, const struct session *s)
{
	jw_key(w, "queue_id");
	if (s->tx.queue_id[0])
		jw_text(w, s->tx.queue_id);
	else
		jw_lit(w, "null");
}

int
audit_tx_intent(struct session *s, audit_done_cb cb)
{
	struct audit_tx *atx = s->tx.audit;
	struct audit_req *req;
	struct jw w;

	if (!A.enabled)
		return 0;
	if (atx == NULL)
		return -1;	/* no audit state: nothing may be delivered */
	atx->t_eod = util_now_ms();
	if (tx_begin(s, "tx_pending", &w) < 0)
		return -1;
	jw_timings(&w, atx, atx->t_eod);
	req = req_new(s, cb, &atx->req);
	if (req == NULL)
		return -1;
	req->intent = 1;
	if (jw_send(&w, req) < 0) {
		atx->req = NULL;
		free(req);
		return -1;
	}
	atx->pending_sent = 1;
	if (A.conf->audit.pending_sync == AUDIT_PENDING_BEFORE_REPLY) {
		/* The end of data may go out now, but only once the record is
		 * in the channel (with everything queued before it): then a
		 * crash of this worker cannot lose it.  If the socket is full,
		 * wait for the acknowledgement as with before_backend. */
		unsigned epoch = A.epoch;

		/* (a send error drops packets and starts a new epoch: then
		 * the record may not be in the channel; its request fails) */
		if (chan_flush() == 0 && A.epoch == epoch) {
			atx->overlap = 1;
			return 2;
		}
		/* (the deferred flush goes on with the rest) */
	}
	return 1;
}

int
audit_tx_hold(struct session *s, const struct backend_reply *r,
	      unsigned expected)
{
	struct audit_tx *atx = s->tx.audit;

	if (atx == NULL || atx->nohold)
		return -1;
	if (atx->held == NULL) {
		/* one allocation for all of them: either all are held or
		 * (out of memory) none */
		atx->held = calloc(expected ? expected : 1, sizeof(*atx->held));
		atx->capheld = expected ? expected : 1;
		if (atx->held == NULL) {
			atx->nohold = 1;
			log_err("%s: audit: out of memory", s->id);
			return -1;
		}
	}
	if (atx->nheld >= atx->capheld)
		return -1;
	atx->held[atx->nheld++] = *r;
	if (atx->nheld == expected)
		atx->t_verdict = util_now_ms();	/* a wait may follow */
	return 0;
}

const struct backend_reply *
audit_tx_held(const struct session *s, unsigned i)
{
	const struct audit_tx *atx = s->tx.audit;

	return atx != NULL && i < atx->nheld ? &atx->held[i] : NULL;
}

int
audit_tx_verdict(struct session *s, audit_done_cb cb)
{
	struct audit_tx *atx = s->tx.audit;
	struct audit_req *req = NULL;
	char line[300];
	unsigned i, ok = 0;
	struct jw w;

	if (atx == NULL)
		return 0;
	if (atx->t_verdict == 0)
		atx->t_verdict = util_now_ms();
	for (i = 0; i < atx->nheld; i++)
		if (atx->held[i].code / 100 == 2)
			ok++;
	if (tx_begin(s, "tx", &w) < 0)
		return ok > 0 ? -1 : 0;
	jw_key(&w, "result");
	if (ok == 0) {
		/* refused for good (5xx), or for now (4xx: "failed") */
		unsigned fivexx = 0;

		for (i = 0; i < atx->nheld; i++)
			if (atx->held[i].code / 100 == 5)
				fivexx++;
		jw_str(&w, fivexx > 0 ? "refused" : "failed");
	} else {
		jw_str(&w, ok == atx->nheld ? "delivered" : "partial");
	}
	if (atx->nheld > 0) {
		/* the summary: the first failure if any (what an SMTP client
		 * of an LMTP backend is told), else the first reply */
		unsigned k = 0;

		for (i = 0; i < atx->nheld; i++)
			if (atx->held[i].code / 100 != 2) {
				k = i;
				break;
			}
		reply_line(&atx->held[k], BE_EXPECT_DATA_END, line, sizeof(line));
		jw_reply(&w, line);
	}
	if (atx->nheld > 1) {
		/* LMTP backend: one verdict per accepted recipient, in order */
		jw_lit(&w, ",\"replies\":[");
		for (i = 0; i < atx->nheld; i++) {
			reply_line(&atx->held[i], BE_EXPECT_DATA_END, line,
			    sizeof(line));
			if (i > 0)
				jw_lit(&w, ",");
			jw_text(&w, line);
		}
		jw_lit(&w, "]");
	}
	jw_queue_id(&w, s);
	jw_timings(&w, atx, atx->t_verdict);
	atx->finalized = 1;
	/* the client waits for this record too only with verdict_fsync:
	 * "tx_pending" is on disk already (docs/AUDIT.md, "Durability") */
	if (ok > 0 && A.conf->audit.verdict_fsync &&
	    (req = req_new(s, cb, &atx->req)) == NULL) {
		rec_lost();
		return -1;
	}
	if (jw_send(&w, req) < 0) {
		if (req != NULL) {
			atx->req = NULL;
			free(req);
			return -1;
		}
		return 0;
	}
	return req != NULL ? 1 : 0;
}

static void
outcome(struct session *s, const char *result, int code, const char *detail)
{
	struct audit_tx *atx = s->tx.audit;
	struct jw w;

	if (atx == NULL || atx->finalized)
		return;
	atx->finalized = 1;
	if (tx_begin(s, "tx", &w) < 0)
		return;
	jw_key(&w, "result");
	jw_str(&w, result);
	jw_key(&w, "code");
	if (code)
		jw_int(&w, code);
	else
		jw_lit(&w, "null");
	jw_key(&w, "detail");
	jw_text(&w, detail);
	jw_queue_id(&w, s);
	jw_timings(&w, atx, util_now_ms());
	jw_send(&w, NULL);
}

void
audit_tx_outcome(struct session *s, int code, const char *what)
{
	if (s->tx.audit == NULL)
		return;
	outcome(s, code / 100 == 2 ? "delivered" : code / 100 == 4 ? "failed" :
	    "refused", code, what);
}

void
audit_tx_end(struct session *s)
{
	struct audit_tx *atx = s->tx.audit;

	if (atx == NULL)
		return;
	req_cancel(&atx->req);
	if (!atx->finalized) {
		switch (s->tx.state) {
		case TX_FINAL:
			/* the end of data went out; the verdict never came */
			outcome(s, "unknown", 0, "connection closed before the "
			    "backend's verdict: the backend may have the message");
			break;
		case TX_AUDIT_INTENT:
			outcome(s, "aborted", 0, "connection closed before the "
			    "end of data reached the backend");
			break;
		case TX_AUDIT_VERDICT:
			/* before_reply: the verdict came, "tx_pending" was not
			 * yet on disk, and the session ended */
			if (atx->nheld > 0)
				outcome(s, atx->held[0].code / 100 == 2 ?
				    "delivered" : atx->held[0].code / 100 == 4 ?
				    "failed" : "refused", atx->held[0].code,
				    "session ended before the reply was relayed");
			else
				outcome(s, "unknown", 0, "session ended before "
				    "the reply was relayed");
			break;
		default:
			if (atx->mail_code != 0 && atx->mail_code / 100 != 2)
				outcome(s, "refused", atx->mail_code,
				    "MAIL refused");
			else
				outcome(s, "aborted", 0, atx->content ?
				    "no end of data" : "no content");
			break;
		}
	}
	free(atx->body);
	free(atx->rcpt);
	free(atx->held);
	free(atx);
	s->tx.audit = NULL;
}
