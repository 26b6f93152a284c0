/*
 * audit_writer.c - the audit writer process (see audit_writer.h) and the
 * master's side of its channels.
 *
 * The loop: poll the channels; take every record that has arrived (up to a
 * batch's worth), chain each into one buffer; one write(), one fdatasync();
 * then the acknowledgements; then syslog copies and rotation.  While the
 * fdatasync runs, new records wait in the channels' socket buffers, so the
 * next batch takes them all: the more sessions wait, the more records
 * share one fsync (group commit).
 *
 * A batch that cannot be written (ENOSPC, EIO, ...) is taken back whole:
 * the file is truncated to where the batch began and the chain rewound, so
 * the file never holds a record that was refused, nor a torn line.  The
 * writer is then "failed": workers are told (STATUS) and refuse new
 * transactions with 451 4.3.0; every later batch, or a retry each second,
 * tries again, and the first batch that succeeds starts with an
 * "audit_resume" record saying since when and how many records were
 * refused meanwhile.
 *
 * Rotation (size, age, SIGHUP, SIGUSR1) happens between batches: a
 * "checkpoint" record closes the file, the file is renamed to
 * FILE.<UTC time>.<last seq>, and a new FILE starts with a "file_start"
 * record whose prev is the checkpoint's hash.  Records that arrive
 * meanwhile wait in the channels: none is lost or written twice.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <sys/resource.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <jansson.h>

#include "config.h"
#include "audit_format.h"
#include "audit_writer.h"
#include "conf.h"
#include "log.h"

/* A batch ends at this many records or octets (then it is written and
 * the next one starts at once). */
#define BATCH_MAX_RECORDS 4096
#define BATCH_MAX_BYTES (4 * 1024 * 1024)
/* A batch may pass BATCH_MAX_BYTES by one burst of records. */
#define BATCH_BUF_SIZE (BATCH_MAX_BYTES + \
	(CHAN_BURST + 2) * (AUDIT_RECORD_MAX + AUDIT_LINE_OVERHEAD))
/* Records taken from one channel before looking at the next (fairness),
 * with one recvmmsg(). */
#define CHAN_BURST 32
/* Space reserved ahead of the end of the log (fallocate, KEEP_SIZE): an
 * fdatasync() after an append then need not allocate blocks, which
 * halves its time on ext4 (measured: docs/PERFORMANCE.md).  Readers see
 * the exact size; the reserve is given back at rotation and at exit. */
#define PREALLOC_CHUNK (4 * 1024 * 1024)
/* A batch that no one waits for (no record in it asks for an
 * acknowledgement) is written without fdatasync(): the next batch that
 * is waited for syncs it with its own, and it is synced on its own at the
 * latest this many ms after it was written (docs/AUDIT.md, "Durability").
 * Under load about half the batches hold only such records ("tx" after
 * its "tx_pending", session records): each fdatasync saved is a data
 * write, an inode write and a cache flush. */
#define SYNC_LATER_MS 200
/* While failed: try again this often without new records (ms). */
#define RETRY_MS 1000
/* Longest RFC 5424 message we send (RFC 5424 6.1: receivers should take
 * 2048 octets and may take more; 8192 is what rsyslog takes by default). */
#define SYSLOG_MAX 8192

/* ------------------------------------------------------------------ */
/* Master side */

static struct {
	int (*fds)[2];		/* [slot][0] worker end, [slot][1] writer end */
	unsigned n;
	unsigned char key[AUDIT_KEY_MAX];
	size_t keylen;
} am;

int
audit_master_init(const struct conf *conf, unsigned nworkers,
		  const char **error_r)
{
	unsigned i;

	if (conf->audit.hmac_key_file[0] != '\0') {
		long n = audit_key_load(conf->audit.hmac_key_file, am.key,
		    sizeof(am.key), error_r);

		if (n < 0)
			return -1;
		am.keylen = (size_t)n;
	}
	am.fds = calloc(nworkers ? nworkers : 1, sizeof(*am.fds));
	if (am.fds == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	for (i = 0; i < nworkers; i++) {
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC |
		    SOCK_NONBLOCK, 0, am.fds[i]) < 0) {
			*error_r = "socketpair for the audit channels failed";
			return -1;
		}
		am.n++;
	}
	return 0;
}

int
audit_master_check(const struct conf *conf, char *err, size_t errsize)
{
	char dir[512], *slash;
	int fd;

	fd = open(conf->audit.file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
	    0640);
	if (fd < 0) {
		snprintf(err, errsize, "audit file %s: %s", conf->audit.file,
		    strerror(errno));
		return -1;
	}
	close(fd);
	/* rotation creates files next to it */
	snprintf(dir, sizeof(dir), "%s", conf->audit.file);
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash != NULL)
		*slash = '\0';
	if (access(dir, W_OK | X_OK) != 0) {
		snprintf(err, errsize, "audit directory %s: %s (rotation "
		    "creates files there)", dir, strerror(errno));
		return -1;
	}
	return 0;
}

int
audit_master_child_worker(unsigned index)
{
	unsigned i;
	int fd = -1;

	for (i = 0; i < am.n; i++) {
		if (i == index)
			fd = am.fds[i][0];
		else
			close(am.fds[i][0]);
		close(am.fds[i][1]);
	}
	explicit_bzero(am.key, sizeof(am.key));
	am.keylen = 0;
	return fd;
}

void
audit_master_free(void)
{
	unsigned i;

	for (i = 0; i < am.n; i++) {
		close(am.fds[i][0]);
		close(am.fds[i][1]);
	}
	free(am.fds);
	am.fds = NULL;
	am.n = 0;
	explicit_bzero(am.key, sizeof(am.key));
	am.keylen = 0;
}

/* ------------------------------------------------------------------ */
/* RFC 5424 */

void
audit_sd_escape(const char *in, char *out, size_t outsize)
{
	size_t o = 0;

	if (outsize == 0)
		return;
	for (; *in != '\0'; in++) {
		int esc = *in == '"' || *in == '\\' || *in == ']';

		if (o + 1 + (size_t)esc >= outsize)
			break;
		if (esc)
			out[o++] = '\\';
		out[o++] = *in;
	}
	out[o] = '\0';
}

/* RFC 5424 6.2: HOSTNAME, APP-NAME, MSGID are PRINTUSASCII (33..126),
 * "-" when empty. */
static size_t
put_token(char *out, size_t outsize, size_t o, const char *s, size_t max)
{
	size_t i = 0;

	for (; s != NULL && s[i] != '\0' && i < max && o + 1 < outsize; i++)
		out[o++] = s[i] > 32 && s[i] < 127 ? s[i] : '_';
	if (i == 0 && o + 1 < outsize)
		out[o++] = '-';
	if (o + 1 < outsize)
		out[o++] = ' ';
	return o;
}

size_t
audit_syslog_format(char *out, size_t outsize, int pri, const char *ts,
		    const char *host, const char *app, long pid,
		    const char *msgid, const char *sd_params, const char *msg,
		    size_t msglen)
{
	char procid[24];
	size_t o;
	int n;

	if (outsize == 0)
		return 0;
	n = snprintf(out, outsize, "<%d>1 ", pri);
	if (n < 0 || (size_t)n >= outsize)
		return 0;
	o = (size_t)n;
	o = put_token(out, outsize, o, ts, 32);
	o = put_token(out, outsize, o, host, 255);
	o = put_token(out, outsize, o, app, 48);
	snprintf(procid, sizeof(procid), "%ld", pid);
	o = put_token(out, outsize, o, procid, 128);
	o = put_token(out, outsize, o, msgid, 32);
	n = snprintf(out + o, outsize - o, "[msaproxy@32473%s%s] ",
	    sd_params[0] ? " " : "", sd_params);
	if (n < 0)
		return o;
	if ((size_t)n >= outsize - o)
		return outsize - 1;	/* cut inside the SD: still one line */
	o += (size_t)n;
	if (msglen > outsize - o - 1)
		msglen = outsize - o - 1;
	memcpy(out + o, msg, msglen);
	o += msglen;
	out[o] = '\0';
	return o;
}

/* ------------------------------------------------------------------ */
/* The writer */

struct pkt {
	struct pkt *next;
	size_t len;
	char data[];
};

struct wchan {
	int fd;
	struct pkt *q, **qtail;	/* packets the socket would not take yet */
	int ping;		/* a PING waits for the batch to be written */
	int drained;		/* collect(): emptied in this call */
};

struct witem {
	int chan;		/* -1: one of the writer's own records */
	int ack;
	uint64_t id;
	uint64_t seq;
	int status;
	size_t off, len;	/* the line in the batch buffer */
};

static struct {
	const struct conf *conf;
	const unsigned char *key;
	size_t keylen;
	char key_id[17];
	const char *chain_alg;

	int dirfd, fd;
	char dir[512], base[256];
	uint64_t fsize;			/* octets written (and kept) */
	uint64_t reserved;		/* fallocate()d up to here */
	uint64_t file_first_seq;
	time_t file_t0;

	struct audit_chain chain;
	struct audit_chain saved;	/* at the start of the batch */
	/* Written without fdatasync (SYNC_LATER_MS): a failure takes them
	 * back with the batch that failed, to where the file was synced. */
	struct audit_chain synced_chain;
	uint64_t synced_fsize;
	uint64_t unsynced;		/* records since then */
	uint64_t t_unsynced;		/* ms (monotonic): the first of them */

	int failed;			/* errno of the last failure; 0 = OK */
	uint64_t t_attempt;		/* ms (monotonic): last write tried */
	char failed_since[32];
	uint64_t refused;		/* records refused while failed */

	struct wchan *ch;
	unsigned nch;

	char *buf;
	size_t len;
	struct witem *items;
	size_t nitems;
	char *rx;			/* CHAN_BURST buffers of rxsize */
	size_t rxsize;
	struct mmsghdr mm[CHAN_BURST];
	struct iovec iov[CHAN_BURST];

	char continued_from[300];	/* no active file: chain taken from */
	int sfd;
	int stop, rotate_req;
	const char *rotate_reason;
	int syslog_fd;
	uint64_t syslog_dropped;
} W;

static void sync_unsynced(void);

static void
now_ts(char out[32])
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	audit_format_time(&ts, out);
}

/* A record of the writer's own: the common members first. */
static json_t *
own_record(const char *type)
{
	char ts[32];

	now_ts(ts);
	return json_pack("{s:s, s:s, s:s, s:n, s:n}", "ts", ts, "type", type,
	    "host", W.conf->server_name, "session", "identity");
}

static void
items_clear(void)
{
	W.nitems = 0;
	W.len = 0;
}

/* Chain a record's text into the batch. */
static int
batch_add(int chan, uint64_t id, int ack, const char *text, size_t textlen)
{
	struct witem *it;
	ssize_t n;

	if (W.nitems == 0)
		W.saved = W.chain;
	it = &W.items[W.nitems];
	memset(it, 0, sizeof(*it));
	it->chan = chan;
	it->id = id;
	it->ack = ack;
	n = audit_chain_format(&W.chain, text, textlen, W.buf + W.len,
	    BATCH_BUF_SIZE - W.len);
	if (n < 0) {
		it->status = EINVAL;
	} else {
		it->off = W.len;
		it->len = (size_t)n;
		it->seq = W.chain.seq;
		W.len += (size_t)n;
	}
	W.nitems++;
	return n < 0 ? -1 : 0;
}

static int
batch_add_own(json_t *obj)
{
	char *text;
	int r;

	if (obj == NULL)
		return -1;
	text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(obj);
	if (text == NULL)
		return -1;
	r = batch_add(-1, 0, 0, text, strlen(text));
	free(text);
	return r;
}

static int
batch_full(void)
{
	return W.nitems + 2 >= BATCH_MAX_RECORDS || W.len >= BATCH_MAX_BYTES;
}

/* --- channels --- */

static void
chan_send(struct wchan *c, const void *data, size_t len)
{
	struct pkt *p;

	if (c->q == NULL) {
		ssize_t n = send(c->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n == (ssize_t)len)
			return;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR) {
			log_warn("channel send: %s", strerror(errno));
			return;
		}
	}
	p = malloc(sizeof(*p) + len);
	if (p == NULL) {
		log_err("out of memory: an acknowledgement is lost");
		return;
	}
	p->next = NULL;
	p->len = len;
	memcpy(p->data, data, len);
	*c->qtail = p;
	c->qtail = &p->next;
}

static void
chan_flush(struct wchan *c)
{
	while (c->q != NULL) {
		struct pkt *p = c->q;
		ssize_t n = send(c->fd, p->data, p->len,
		    MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
		    errno == EINTR))
			return;
		c->q = p->next;
		if (c->q == NULL)
			c->qtail = &c->q;
		free(p);
	}
}

static void
broadcast(enum audit_msg_type type, int status)
{
	struct audit_msg m;
	unsigned i;

	memset(&m, 0, sizeof(m));
	m.type = type;
	m.status = status;
	for (i = 0; i < W.nch; i++)
		chan_send(&W.ch[i], &m, sizeof(m));
}

static void
set_failed(int err)
{
	if (W.failed == 0) {
		now_ts(W.failed_since);
		log_err("audit log %s/%s cannot be written: %s; new transactions "
		    "are refused", W.dir, W.base, strerror(err));
		broadcast(AUDIT_MSG_STATUS, err);
	}
	W.failed = err;
}

static void
set_ok(void)
{
	if (W.failed != 0) {
		log_warn("audit log %s/%s writable again after %" PRIu64
		    " refused record(s)", W.dir, W.base, W.refused);
		W.failed = 0;
		W.refused = 0;
		broadcast(AUDIT_MSG_STATUS, 0);
	}
}

/* One packet from a worker. */
static void
take_record(int chan, const char *data, size_t n)
{
	struct audit_msg m;
	const char *text = data + sizeof(m);
	size_t textlen;
	const char *why = NULL;

	if (n < sizeof(m)) {
		log_warn("channel %d: short message (%zu octets) ignored", chan,
		    n);
		return;
	}
	memcpy(&m, data, sizeof(m));
	if (m.type == AUDIT_MSG_PING) {
		W.ch[chan].ping = 1;	/* answered after the flush */
		return;
	}
	if (m.type != AUDIT_MSG_RECORD) {
		log_warn("channel %d: unexpected message type %u ignored", chan,
		    m.type);
		return;
	}
	textlen = n - sizeof(m);
	if (n > W.rxsize)
		why = "too long";
	else
		(void)audit_json_check(text, textlen, &why);
	if (why != NULL) {
		struct witem *it;

		log_warn("channel %d: record refused: %s", chan, why);
		if (W.nitems == 0)
			W.saved = W.chain;
		it = &W.items[W.nitems++];
		memset(it, 0, sizeof(*it));
		it->chan = chan;
		it->id = m.id;
		it->ack = (m.flags & AUDIT_F_ACK) != 0;
		it->status = EINVAL;
		return;
	}
	if (W.failed != 0 && W.nitems == 0) {
		/* the first record after an outage says so */
		json_t *r = own_record("audit_resume");

		json_object_set_new(r, "failed_since", json_string(W.failed_since));
		json_object_set_new(r, "error", json_string(strerror(W.failed)));
		json_object_set_new(r, "records_refused",
		    json_integer((json_int_t)W.refused));
		batch_add_own(r);
	}
	batch_add(chan, m.id, (m.flags & AUDIT_F_ACK) != 0, text, textlen);
}

/* Take what the channels hold, up to a batch.  Returns records taken. */
static size_t
collect(void)
{
	size_t taken = 0;
	int progress;
	unsigned i;

	for (i = 0; i < W.nch; i++)
		W.ch[i].drained = 0;
	do {
		progress = 0;
		for (i = 0; i < W.nch && !batch_full(); i++) {
			/* room for each record and an audit_resume */
			unsigned want = (unsigned)(BATCH_MAX_RECORDS - W.nitems -
			    2) / 2;
			int n, k;

			/* a recvmmsg() that got less than it asked for has
			 * emptied the channel: asking again now would only
			 * cost a call (new records wait for the next batch) */
			if (W.ch[i].drained)
				continue;
			if (want > CHAN_BURST)
				want = CHAN_BURST;
			for (k = 0; k < (int)want; k++) {
				W.iov[k].iov_base = W.rx + (size_t)k * W.rxsize;
				W.iov[k].iov_len = W.rxsize;
				memset(&W.mm[k], 0, sizeof(W.mm[k]));
				W.mm[k].msg_hdr.msg_iov = &W.iov[k];
				W.mm[k].msg_hdr.msg_iovlen = 1;
			}
			n = recvmmsg(W.ch[i].fd, W.mm, want, MSG_DONTWAIT, NULL);
			if (n < (int)want)
				W.ch[i].drained = 1;
			if (n < 0) {
				if (errno != EAGAIN && errno != EWOULDBLOCK &&
				    errno != EINTR)
					log_warn("channel %u: %s", i,
					    strerror(errno));
				continue;
			}
			for (k = 0; k < n; k++) {
				size_t len = W.mm[k].msg_len;

				if (W.mm[k].msg_hdr.msg_flags & MSG_TRUNC)
					len = W.rxsize + 1;	/* too long */
				take_record((int)i, W.iov[k].iov_base, len);
				taken++;
			}
			if (n == (int)want)
				progress = 1;
		}
	} while (progress && !batch_full());
	return taken;
}

static void
send_acks(void)
{
	char pkt[sizeof(struct audit_msg) +
	    AUDIT_ACKS_PER_MSG * sizeof(struct audit_ack)];
	unsigned c;

	for (c = 0; c < W.nch; c++) {
		struct audit_msg m;
		struct audit_ack *acks =
		    (struct audit_ack *)(void *)(pkt + sizeof(m));
		size_t i, k = 0;

		for (i = 0; i <= W.nitems; i++) {
			if (i < W.nitems) {
				struct witem *it = &W.items[i];

				if (it->chan != (int)c || !it->ack)
					continue;
				memset(&acks[k], 0, sizeof(acks[k]));
				acks[k].id = it->id;
				acks[k].seq = it->status == 0 ? it->seq : 0;
				acks[k].status = it->status;
				k++;
			}
			if (k > 0 && (k == AUDIT_ACKS_PER_MSG || i == W.nitems)) {
				memset(&m, 0, sizeof(m));
				m.type = AUDIT_MSG_ACK;
				m.count = (uint32_t)k;
				memcpy(pkt, &m, sizeof(m));
				chan_send(&W.ch[c], pkt,
				    sizeof(m) + k * sizeof(struct audit_ack));
				k = 0;
			}
		}
	}
}

/* A worker asked whether the log is writable (after a timeout of its
 * own): what it sent before is written (or refused) by now. */
static void
answer_pings(void)
{
	struct audit_msg m;
	unsigned i;

	for (i = 0; i < W.nch; i++)
		if (W.ch[i].ping)
			break;
	if (i == W.nch)
		return;
	sync_unsynced();	/* "writable" means on disk */
	for (i = 0; i < W.nch; i++) {
		if (!W.ch[i].ping)
			continue;
		W.ch[i].ping = 0;
		memset(&m, 0, sizeof(m));
		m.type = AUDIT_MSG_STATUS;
		m.status = W.failed;
		chan_send(&W.ch[i], &m, sizeof(m));
	}
}

/* --- syslog --- */

static int
syslog_severity(const char *type)
{
	if (strcmp(type, "auth") == 0 || strcmp(type, "policy") == 0 ||
	    strcmp(type, "limit") == 0)
		return LOG_NOTICE;
	if (strcmp(type, "audit_resume") == 0)
		return LOG_WARNING;
	return LOG_INFO;
}

static void
sd_param(char *out, size_t outsize, size_t *o, const char *name,
	 const char *value)
{
	char esc[600];
	int n;

	if (value == NULL || value[0] == '\0')
		return;
	audit_sd_escape(value, esc, sizeof(esc));
	n = snprintf(out + *o, outsize - *o, "%s%s=\"%s\"", *o ? " " : "",
	    name, esc);
	if (n > 0 && (size_t)n < outsize - *o)
		*o += (size_t)n;
}

static const char *
jstr(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static void
syslog_items(void)
{
	const struct conf_addr *a = &W.conf->audit.syslog_address;
	char msg[SYSLOG_MAX + 1], sd[1600], seq[24], hash[AUDIT_HEX_LEN + 1];
	size_t i;

	if (W.syslog_fd < 0)
		return;
	for (i = 0; i < W.nitems; i++) {
		struct witem *it = &W.items[i];
		const char *type, *line;
		size_t o = 0, len;
		json_t *obj;

		if (it->status != 0 || it->len == 0)
			continue;
		line = W.buf + it->off;
		len = it->len - 1;		/* without the newline */
		obj = json_loadb(line, len, 0, NULL);
		if (obj == NULL)
			continue;
		type = jstr(obj, "type");
		memcpy(hash, line + len - 2 - AUDIT_HEX_LEN, AUDIT_HEX_LEN);
		hash[AUDIT_HEX_LEN] = '\0';
		snprintf(seq, sizeof(seq), "%" PRIu64, it->seq);
		sd[0] = '\0';
		sd_param(sd, sizeof(sd), &o, "seq", seq);
		sd_param(sd, sizeof(sd), &o, "type", type);
		sd_param(sd, sizeof(sd), &o, "session", jstr(obj, "session"));
		sd_param(sd, sizeof(sd), &o, "identity", jstr(obj, "identity"));
		sd_param(sd, sizeof(sd), &o, "tx", jstr(obj, "tx"));
		sd_param(sd, sizeof(sd), &o, "hash", hash);
		len = audit_syslog_format(msg, sizeof(msg),
		    W.conf->log.facility | syslog_severity(type ? type : ""),
		    jstr(obj, "ts"), W.conf->server_name, W.conf->log.ident,
		    (long)getpid(), type, sd, line, len);
		json_decref(obj);
		if (sendto(W.syslog_fd, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL,
		    (const struct sockaddr *)&a->ss, a->sslen) < 0)
			W.syslog_dropped++;
	}
}

/* --- the file --- */

static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Must the batch be on disk before the writer goes on: a record in it
 * waits for its acknowledgement, or is one of the writer's own, or a
 * worker asked (PING) whether the log is writable.  While failed, and
 * with syslog copies (sent once a record is on disk), every batch is. */
static int
batch_wants_sync(void)
{
	size_t i;
	unsigned c;

	if (W.failed != 0 || W.syslog_fd >= 0)
		return 1;
	for (i = 0; i < W.nitems; i++)
		if (W.items[i].chan < 0 || W.items[i].ack)
			return 1;
	for (c = 0; c < W.nch; c++)
		if (W.ch[c].ping)
			return 1;
	return 0;
}

/* The file is on disk up to here (or, with fsync = false, written). */
static void
mark_synced(void)
{
	W.synced_chain = W.chain;
	W.synced_fsize = W.fsize;
	W.unsynced = 0;
}

/*
 * A write or sync failed: take the batch back.  A failed write (ENOSPC,
 * EDQUOT, ...) leaves what was written before it alone: the batches
 * written without a sync are still in the file, and the next sync covers
 * them.  A failed sync does not say which pages reached the disk: what
 * was written since the last good sync is taken back with the batch, so
 * that the file never holds a record that may be missing from the disk
 * under a later one (sync_all).  Exits if the file cannot be cut (a new
 * writer, started by the master, recovers from it).
 */
static void
take_back(int err, size_t written, int sync_all)
{
	size_t i;

	if (!sync_all || W.unsynced == 0) {
		if (written > 0 && ftruncate(W.fd, (off_t)W.fsize) < 0)
			goto fatal;
		W.chain = W.saved;
	} else {
		if (ftruncate(W.fd, (off_t)W.synced_fsize) < 0)
			goto fatal;
		log_err("audit log: %" PRIu64 " record(s) written but not yet "
		    "synced taken back (%s)", W.unsynced, strerror(err));
		W.refused += W.unsynced;
		W.chain = W.synced_chain;
		W.fsize = W.synced_fsize;
		W.unsynced = 0;
	}
	for (i = 0; i < W.nitems; i++) {
		if (W.items[i].status == 0) {
			W.items[i].status = err;
			W.items[i].seq = 0;
			W.refused++;
		}
	}
	return;
fatal:
	log_err("audit log: cannot take back a failed write (%s): restarting "
	    "the writer", strerror(errno));
	exit(1);
}

/* Sync what was written without a sync (SYNC_LATER_MS, a PING). */
static void
sync_unsynced(void)
{
	if (W.unsynced == 0)
		return;
	if (fdatasync(W.fd) < 0) {
		int err = errno;

		take_back(err, 0, 1);
		set_failed(err);
		return;
	}
	mark_synced();
}

/* Write the batch; on failure take it back whole (with the unsynced
 * batches before it).  0 or an errno. */
static int
flush_batch(void)
{
	size_t off = 0, i;
	int err = 0, sync, sync_failed = 0;

	if (W.nitems == 0)
		return 0;
	if (W.len == 0) {
		/* only refused records: nothing to write */
		send_acks();
		items_clear();
		return 0;
	}
	W.t_attempt = mono_ms();
	if (W.fsize + W.len > W.reserved) {
		uint64_t want = W.fsize + W.len + PREALLOC_CHUNK;

		/* best effort: without it, writes just cost more */
		if (fallocate(W.fd, FALLOC_FL_KEEP_SIZE, (off_t)W.fsize,
		    (off_t)(want - W.fsize)) == 0)
			W.reserved = want;
	}
	while (off < W.len) {
		ssize_t n = write(W.fd, W.buf + off, W.len - off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = errno;
			break;
		}
		off += (size_t)n;
	}
	sync = !W.conf->audit.fsync || batch_wants_sync();
	if (err == 0 && W.conf->audit.fsync && sync &&
	    fdatasync(W.fd) < 0) {
		err = errno;
		sync_failed = 1;
	}
	if (err != 0) {
		take_back(err, off, sync_failed);
		set_failed(err);
	} else {
		W.fsize += W.len;
		if (sync) {
			mark_synced();
		} else {
			if (W.unsynced == 0)
				W.t_unsynced = mono_ms();
			for (i = 0; i < W.nitems; i++)
				if (W.items[i].status == 0)
					W.unsynced++;
		}
		set_ok();
		if (W.conf->audit.syslog)
			syslog_items();
	}
	send_acks();
	items_clear();
	return err;
}

static int
fsync_dir(void)
{
	return fsync(W.dirfd);
}

/* Read the last complete line of fd (size octets) into *line_r (malloc'd,
 * without newline).  A torn tail (no final newline) is cut off the file
 * and its length stored in *torn_r.  0, or -1 with err set. */
static int
read_last_line(int fd, uint64_t *size, char **line_r, size_t *len_r,
	       uint64_t *torn_r, char *err, size_t errsize)
{
	size_t want = AUDIT_RECORD_MAX + AUDIT_LINE_OVERHEAD + 2, got = 0, i;
	off_t start;
	char *buf;
	ssize_t n;

	*line_r = NULL;
	*len_r = 0;
	*torn_r = 0;
	if (want > *size)
		want = (size_t)*size;
	start = (off_t)(*size - want);
	buf = malloc(want + 1);
	if (buf == NULL) {
		snprintf(err, errsize, "out of memory");
		return -1;
	}
	while (got < want) {
		n = pread(fd, buf + got, want - got, start + (off_t)got);
		if (n <= 0) {
			snprintf(err, errsize, "read: %s",
			    n < 0 ? strerror(errno) : "short file");
			free(buf);
			return -1;
		}
		got += (size_t)n;
	}
	/* the end of the last complete line */
	for (i = got; i > 0 && buf[i - 1] != '\n'; i--)
		;
	if (i < got) {
		uint64_t keep = (uint64_t)start + i;

		if (i == 0 && start > 0) {
			snprintf(err, errsize, "the last line is longer than a "
			    "record can be");
			free(buf);
			return -1;
		}
		*torn_r = *size - keep;
		if (ftruncate(fd, (off_t)keep) < 0 || fdatasync(fd) < 0) {
			snprintf(err, errsize, "cannot cut a torn last line: %s",
			    strerror(errno));
			free(buf);
			return -1;
		}
		*size = keep;
		got = i;
	}
	if (got == 0) {
		free(buf);
		return 0;	/* nothing complete: an empty file now */
	}
	/* got ends with '\n': find the start of that line */
	for (i = got - 1; i > 0 && buf[i - 1] != '\n'; i--)
		;
	if (i == 0 && start > 0) {
		snprintf(err, errsize, "the last line is longer than a record "
		    "can be");
		free(buf);
		return -1;
	}
	memmove(buf, buf + i, got - 1 - i);
	*len_r = got - 1 - i;
	buf[*len_r] = '\0';
	*line_r = buf;
	return 0;
}

/* The chain head from a file's last line.  0, or -1 with err. */
static int
head_from_line(const char *name, const char *line, size_t len, char *err,
	       size_t errsize)
{
	unsigned char prev[AUDIT_HASH_LEN];
	enum audit_line_status st;

	st = audit_chain_check(line, len, W.key, W.keylen, &W.chain.seq, prev,
	    W.chain.head);
	if (st == AUDIT_LINE_OK)
		return 0;
	snprintf(err, errsize, "the last record of %s %s: refusing to "
	    "continue the chain (verify it with msaproxy-audit, then move "
	    "the file away)", name, st == AUDIT_LINE_MALFORMED ?
	    "is not an audit record" : W.keylen > 0 ?
	    "does not verify with this HMAC key" : "does not verify");
	return -1;
}

/* The newest rotated file (FILE.<time>.<seq>, the highest seq), or "". */
static void
newest_rotated(char *out, size_t outsize)
{
	size_t blen = strlen(W.base);
	uint64_t best = 0;
	struct dirent *d;
	DIR *dir;
	int dfd = dup(W.dirfd);

	out[0] = '\0';
	if (dfd < 0 || (dir = fdopendir(dfd)) == NULL) {
		if (dfd >= 0)
			close(dfd);
		return;
	}
	while ((d = readdir(dir)) != NULL) {
		const char *dot;
		char *end;
		uint64_t seq;

		if (strncmp(d->d_name, W.base, blen) != 0 ||
		    d->d_name[blen] != '.')
			continue;
		dot = strrchr(d->d_name, '.');
		if (dot == d->d_name + blen || dot[1] == '\0')
			continue;
		seq = strtoull(dot + 1, &end, 10);
		if (*end != '\0' || seq < best)
			continue;
		best = seq;
		snprintf(out, outsize, "%s", d->d_name);
	}
	closedir(dir);
}

/* first_seq and start time of the open file, from its first line */
static void
read_first_line(void)
{
	char *buf = malloc(AUDIT_RECORD_MAX + AUDIT_LINE_OVERHEAD + 1);
	ssize_t n;
	char *nl;
	json_t *o;

	W.file_first_seq = W.chain.seq + 1;
	W.file_t0 = time(NULL);
	if (buf == NULL)
		return;
	n = pread(W.fd, buf, AUDIT_RECORD_MAX + AUDIT_LINE_OVERHEAD, 0);
	if (n > 0 && (nl = memchr(buf, '\n', (size_t)n)) != NULL &&
	    (o = json_loadb(buf, (size_t)(nl - buf), 0, NULL)) != NULL) {
		json_t *s = json_object_get(o, "seq");
		int64_t ms = audit_parse_time(jstr(o, "ts") ? jstr(o, "ts") : "");

		if (json_is_integer(s))
			W.file_first_seq = (uint64_t)json_integer_value(s);
		if (ms > 0)
			W.file_t0 = (time_t)(ms / 1000);
		json_decref(o);
	}
	free(buf);
}

static json_t *
file_start_record(const char *previous)
{
	json_t *r = own_record("file_start");

	json_object_set_new(r, "file", json_string(W.base));
	json_object_set_new(r, "previous_file", previous[0] ?
	    json_string(previous) : json_null());
	json_object_set_new(r, "chain", json_string(W.chain_alg));
	if (W.keylen > 0)
		json_object_set_new(r, "key_id", json_string(W.key_id));
	return r;
}

/* Open the log and find the chain head.  0, or -1 with err (fatal). */
static int
recover(uint64_t *torn_r, char *err, size_t errsize)
{
	struct stat st;
	char prevname[300] = "";
	int fresh = 0;

	*torn_r = 0;
	W.fd = openat(W.dirfd, W.base, O_RDWR | O_APPEND | O_CLOEXEC);
	if (W.fd < 0 && errno != ENOENT) {
		snprintf(err, errsize, "%s/%s: %s", W.dir, W.base,
		    strerror(errno));
		return -1;
	}
	if (W.fd >= 0) {
		char *line = NULL;
		size_t len = 0;

		if (fstat(W.fd, &st) < 0) {
			snprintf(err, errsize, "fstat: %s", strerror(errno));
			return -1;
		}
		W.fsize = (uint64_t)st.st_size;
		if (W.fsize > 0 && read_last_line(W.fd, &W.fsize, &line, &len,
		    torn_r, err, errsize) < 0)
			return -1;
		/* a reserve left by a writer that did not stop cleanly */
		(void)!ftruncate(W.fd, (off_t)W.fsize);
		if (line != NULL) {
			int r = head_from_line(W.base, line, len, err, errsize);

			free(line);
			if (r < 0)
				return -1;
			read_first_line();
			return 0;
		}
		fresh = 1;	/* empty */
	} else {
		W.fd = openat(W.dirfd, W.base, O_RDWR | O_APPEND | O_CREAT |
		    O_EXCL | O_CLOEXEC, 0640);
		if (W.fd < 0) {
			snprintf(err, errsize, "%s/%s: %s", W.dir, W.base,
			    strerror(errno));
			return -1;
		}
		W.fsize = 0;
		fresh = 1;
	}
	if (fresh) {
		/* A new file continues the chain of the newest rotated one:
		 * the writer may have stopped between a rotation's rename and
		 * the new file's first record. */
		newest_rotated(prevname, sizeof(prevname));
		if (prevname[0] != '\0') {
			int fd = openat(W.dirfd, prevname, O_RDONLY | O_CLOEXEC);
			char *line = NULL;
			size_t len = 0;
			uint64_t size, torn = 0;

			if (fd < 0 || fstat(fd, &st) < 0) {
				snprintf(err, errsize, "%s/%s: %s", W.dir,
				    prevname, strerror(errno));
				if (fd >= 0)
					close(fd);
				return -1;
			}
			size = (uint64_t)st.st_size;
			/* read-only: a torn tail there is reported, not cut */
			if (size > 0 && read_last_line(fd, &size, &line, &len,
			    &torn, err, errsize) < 0) {
				close(fd);
				return -1;
			}
			close(fd);
			if (line == NULL) {
				snprintf(err, errsize, "%s/%s is empty", W.dir,
				    prevname);
				return -1;
			}
			if (head_from_line(prevname, line, len, err, errsize) < 0) {
				free(line);
				return -1;
			}
			free(line);
			/* a rotation cut short, or the active file removed:
			 * said in audit_start and in the log */
			snprintf(W.continued_from, sizeof(W.continued_from), "%s",
			    prevname);
			log_warn("audit log %s/%s was missing or empty: the chain "
			    "goes on from %s (seq %" PRIu64 ")", W.dir, W.base,
			    prevname, W.chain.seq);
		}
		W.file_first_seq = W.chain.seq + 1;
		W.file_t0 = time(NULL);
		batch_add_own(file_start_record(prevname));
		if (flush_batch() == 0)
			fsync_dir();
	}
	return 0;
}

/* Close the file with a checkpoint, rename it, start a new one.  The
 * batch is empty when this is called. */
static void
rotate(const char *reason)
{
	char rotated[400], hex[AUDIT_HEX_LEN + 1], stamp[32];
	struct timespec now;
	struct tm tm;
	json_t *r;
	int fd;

	r = own_record("checkpoint");
	audit_hex(W.chain.head, AUDIT_HASH_LEN, hex);
	json_object_set_new(r, "reason", json_string(reason));
	json_object_set_new(r, "file", json_string(W.base));
	json_object_set_new(r, "first_seq",
	    json_integer((json_int_t)W.file_first_seq));
	json_object_set_new(r, "records",
	    json_integer((json_int_t)(W.chain.seq + 2 - W.file_first_seq)));
	json_object_set_new(r, "head_seq", json_integer((json_int_t)W.chain.seq));
	json_object_set_new(r, "head", json_string(hex));
	batch_add_own(r);
	if (flush_batch() != 0)
		return;		/* stays on this file; tried again later */
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	snprintf(rotated, sizeof(rotated), "%s.%s.%" PRIu64, W.base, stamp,
	    W.chain.seq);
	if (renameat(W.dirfd, W.base, W.dirfd, rotated) < 0) {
		log_err("audit log rotation: rename to %s: %s", rotated,
		    strerror(errno));
		return;
	}
	fd = openat(W.dirfd, W.base, O_RDWR | O_APPEND | O_CREAT | O_EXCL |
	    O_CLOEXEC, 0640);
	if (fd < 0) {
		log_err("audit log rotation: cannot create %s/%s: %s; going on "
		    "with the old file", W.dir, W.base, strerror(errno));
		if (renameat(W.dirfd, rotated, W.dirfd, W.base) < 0)
			log_err("audit log rotation: cannot rename %s back: %s",
			    rotated, strerror(errno));
		return;
	}
	(void)!ftruncate(W.fd, (off_t)W.fsize);	/* the reserve back */
	close(W.fd);
	W.fd = fd;
	W.fsize = 0;
	W.reserved = 0;
	mark_synced();		/* the checkpoint was synced: nothing pending */
	W.file_first_seq = W.chain.seq + 1;
	W.file_t0 = now.tv_sec;
	batch_add_own(file_start_record(rotated));
	flush_batch();
	fsync_dir();
	log_info("audit log rotated (%s): %s", reason, rotated);
}

static void
maybe_rotate(void)
{
	const struct conf_audit *ac = &W.conf->audit;
	const char *reason = NULL;

	if (W.failed != 0)
		return;
	if (W.rotate_req)
		reason = W.rotate_reason;
	else if (ac->rotate_size > 0 && W.fsize >= ac->rotate_size)
		reason = "size";
	else if (ac->rotate_interval > 0 &&
	    time(NULL) - W.file_t0 >= (time_t)ac->rotate_interval)
		reason = "time";
	if (reason == NULL)
		return;
	W.rotate_req = 0;
	rotate(reason);
}

static void
handle_signals(void)
{
	struct signalfd_siginfo si;

	while (read(W.sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			W.stop = 1;
			break;
		case SIGHUP:
			W.rotate_req = 1;
			W.rotate_reason = "SIGHUP";
			break;
		case SIGUSR1:
			W.rotate_req = 1;
			W.rotate_reason = "SIGUSR1";
			break;
		default:
			break;
		}
	}
}

static int
poll_timeout(void)
{
	const struct conf_audit *ac = &W.conf->audit;
	long ms = -1;

	if (W.failed != 0) {
		/* the retry is due RETRY_MS after the last attempt, whatever
		 * woke the loop meanwhile (a worker's PING each second) */
		uint64_t since = mono_ms() - W.t_attempt;

		return since >= RETRY_MS ? 0 : (int)(RETRY_MS - since);
	}
	if (ac->rotate_interval > 0) {
		long left = (long)(W.file_t0 + (time_t)ac->rotate_interval -
		    time(NULL));

		ms = left <= 0 ? 0 : left * 1000;
		if (ms > 60000)
			ms = 60000;
	}
	if (W.unsynced > 0) {
		uint64_t age = mono_ms() - W.t_unsynced;
		long left = age >= SYNC_LATER_MS ? 0 :
		    (long)(SYNC_LATER_MS - age);

		if (ms < 0 || left < ms)
			ms = left;
	}
	return (int)ms;
}

static void
writer_loop(void)
{
	struct pollfd *pfd = calloc(W.nch + 1, sizeof(*pfd));
	unsigned i;

	if (pfd == NULL) {
		log_err("out of memory");
		exit(1);
	}
	for (;;) {
		int n;

		for (i = 0; i < W.nch; i++) {
			pfd[i].fd = W.ch[i].fd;
			pfd[i].events = POLLIN | (W.ch[i].q != NULL ? POLLOUT : 0);
			pfd[i].revents = 0;
		}
		pfd[W.nch].fd = W.sfd;
		pfd[W.nch].events = POLLIN;
		pfd[W.nch].revents = 0;
		n = poll(pfd, W.nch + 1, poll_timeout());
		if (n < 0 && errno != EINTR) {
			log_err("poll: %s", strerror(errno));
			exit(1);
		}
		if (pfd[W.nch].revents & POLLIN)
			handle_signals();
		for (i = 0; i < W.nch; i++)
			if (pfd[i].revents & POLLOUT)
				chan_flush(&W.ch[i]);
		/* take everything there is, batch after batch */
		while (collect() > 0)
			flush_batch();
		answer_pings();
		if (W.unsynced > 0 && mono_ms() - W.t_unsynced >= SYNC_LATER_MS)
			sync_unsynced();
		if (W.failed != 0 && mono_ms() - W.t_attempt >= RETRY_MS) {
			/* a retry without waiting for records */
			json_t *r = own_record("audit_resume");

			json_object_set_new(r, "failed_since",
			    json_string(W.failed_since));
			json_object_set_new(r, "error",
			    json_string(strerror(W.failed)));
			json_object_set_new(r, "records_refused",
			    json_integer((json_int_t)W.refused));
			batch_add_own(r);
			flush_batch();
		}
		maybe_rotate();
		if (W.stop)
			break;
	}
	free(pfd);
}

void
audit_writer_main(const struct conf *conf, int ready_fd)
{
	const struct conf_audit *ac = &conf->audit;
	char err[1024] = "", *slash;
	uint64_t torn = 0;
	sigset_t mask;
	unsigned i;
	json_t *r;

	memset(&W, 0, sizeof(W));
	W.conf = conf;
	W.fd = -1;
	W.syslog_fd = -1;
	log_set_prefix("audit");
	signal(SIGPIPE, SIG_IGN);
	/*
	 * Below the workers (audit.writer_nice, 10 by default).  A writer
	 * woken by a record or by the disk then does not preempt a busy
	 * worker: it runs when the CPU has a moment, and by then more
	 * records wait, so one fdatasync covers more of them.  On a machine
	 * whose CPUs are all busy that is most of what the audit trail
	 * costs (docs/PERFORMANCE.md, "The audit trail").  The writer needs
	 * little CPU, so even at 19 it is not starved.
	 */
	if (conf->audit.writer_nice > 0 &&
	    setpriority(PRIO_PROCESS, 0, (int)conf->audit.writer_nice) < 0)
		log_warn("audit writer: setpriority(%u): %s",
		    conf->audit.writer_nice, strerror(errno));
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	W.sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	{
		sigset_t chld;

		sigemptyset(&chld);
		sigaddset(&chld, SIGCHLD);
		sigprocmask(SIG_UNBLOCK, &chld, NULL);
	}

	W.key = am.keylen > 0 ? am.key : NULL;
	W.keylen = am.keylen;
	W.chain.key = W.key;
	W.chain.keylen = W.keylen;
	W.chain_alg = W.keylen > 0 ? "hmac-sha256" : "sha256";
	if (W.keylen > 0)
		audit_key_id(W.key, W.keylen, W.key_id);
	W.nch = am.n;
	W.ch = calloc(W.nch ? W.nch : 1, sizeof(*W.ch));
	W.buf = malloc(BATCH_BUF_SIZE);
	W.items = calloc(BATCH_MAX_RECORDS, sizeof(*W.items));
	W.rxsize = sizeof(struct audit_msg) + AUDIT_RECORD_MAX;
	W.rx = malloc(W.rxsize * CHAN_BURST);
	if (W.sfd < 0 || W.ch == NULL || W.buf == NULL || W.items == NULL ||
	    W.rx == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto fatal;
	}
	for (i = 0; i < W.nch; i++) {
		close(am.fds[i][0]);	/* the workers' ends */
		W.ch[i].fd = am.fds[i][1];
		W.ch[i].qtail = &W.ch[i].q;
	}

	snprintf(W.dir, sizeof(W.dir), "%s", ac->file);
	slash = strrchr(W.dir, '/');
	if (slash == NULL) {
		snprintf(err, sizeof(err), "audit file %s: not absolute", ac->file);
		goto fatal;
	}
	snprintf(W.base, sizeof(W.base), "%s", slash + 1);
	if (slash == W.dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	W.dirfd = open(W.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (W.dirfd < 0) {
		snprintf(err, sizeof(err), "audit directory %s: %s", W.dir,
		    strerror(errno));
		goto fatal;
	}
	if (recover(&torn, err, sizeof(err)) < 0)
		goto fatal;
	mark_synced();		/* what the file holds now is on disk */
	if (ac->syslog) {
		W.syslog_fd = socket(ac->syslog_address.ss.ss_family,
		    SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (W.syslog_fd < 0)
			log_warn("audit syslog socket: %s", strerror(errno));
	}

	r = own_record("audit_start");
	json_object_set_new(r, "version", json_string(PACKAGE_VERSION));
	json_object_set_new(r, "pid", json_integer((json_int_t)getpid()));
	json_object_set_new(r, "file", json_string(W.base));
	json_object_set_new(r, "chain", json_string(W.chain_alg));
	if (W.keylen > 0)
		json_object_set_new(r, "key_id", json_string(W.key_id));
	json_object_set_new(r, "fsync", json_boolean(ac->fsync));
	if (torn > 0)
		json_object_set_new(r, "torn_octets_removed",
		    json_integer((json_int_t)torn));
	if (W.continued_from[0] != '\0')
		json_object_set_new(r, "continued_from",
		    json_string(W.continued_from));
	batch_add_own(r);
	flush_batch();		/* a failure leaves us "failed", not dead */
	if (torn > 0)
		log_warn("audit log %s/%s ended in a torn record: %" PRIu64
		    " octet(s) cut (never acknowledged)", W.dir, W.base, torn);
	log_info("audit writer started: %s/%s, seq %" PRIu64 ", %s%s",
	    W.dir, W.base, W.chain.seq, W.chain_alg,
	    W.failed ? " (log NOT writable)" : "");
	(void)!write(ready_fd, "OK\n", 3);
	close(ready_fd);
	broadcast(AUDIT_MSG_HELLO, W.failed);
	writer_loop();

	/* stop: everything the workers sent, then a last record */
	while (collect() > 0)
		flush_batch();
	{
		char hex[AUDIT_HEX_LEN + 1];

		r = own_record("audit_stop");
		audit_hex(W.chain.head, AUDIT_HASH_LEN, hex);
		json_object_set_new(r, "head_seq", json_integer((json_int_t)W.chain.seq));
		json_object_set_new(r, "head", json_string(hex));
		if (W.syslog_dropped > 0)
			json_object_set_new(r, "syslog_dropped",
			    json_integer((json_int_t)W.syslog_dropped));
		batch_add_own(r);
		flush_batch();
	}
	(void)!ftruncate(W.fd, (off_t)W.fsize);		/* the reserve back */
	log_info("audit writer stopped at seq %" PRIu64, W.chain.seq);
	exit(0);
fatal:
	log_err("audit writer: %s", err);
	{
		char msg[1100];
		int n = snprintf(msg, sizeof(msg), "ERR %s\n", err);

		if (n > 0)
			(void)!write(ready_fd, msg, (size_t)n);
	}
	exit(1);
}
