/*
 * session.c - client connection I/O, the session state machine, the ordered
 * command queue, message content streaming, and the backend's replies.
 *
 * SECURITY: everything read here comes from the network client (or, with
 * proxy_protocol, from a load balancer vouched for by proxy_protocol_from).
 * Input is bounded before it is parsed: command lines by max_line_length,
 * content lines by max_data_line_length, messages by max_message_size,
 * buffers by session_buffer (reading pauses above it), time by the phase
 * timeouts.  Backend replies are bounded and sanitized in backend_reply.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <event2/buffer.h>
#include <event2/dns.h>

#include "audit.h"
#include "conf.h"
#include "conn.h"
#include "log.h"
#include "proxyproto.h"
#include "received.h"
#include "sasl.h"
#include "session.h"
#include "smtp_auth.h"
#include "smtp_etrn.h"
#include "tls.h"
#include "util.h"
#include "worker.h"
#include "burl.h"
#include "imap_client.h"
#include "imapurl.h"
#include "burl_policy.h"
#include "mailhost.h"
#include "rate_limits.h"

static const char *const state_names[S_STATE_COUNT] = {
	[S_PROXY_HDR] = "PROXY_HDR", [S_GREETING] = "GREETING",
	[S_COMMAND] = "COMMAND", [S_DATA] = "DATA", [S_BDAT] = "BDAT",
	[S_TLS] = "TLS", [S_AUTH] = "AUTH", [S_BURL] = "BURL",
	[S_CLOSING] = "CLOSING",
};

static void session_run(struct session *s);
static void session_continue(struct session *s);
static void relay(struct session *s, const struct backend_reply *r,
		  enum backend_expect e);
static void session_read_content(struct session *s);
static void send_end_of_data(struct session *s);
static void refuse_after_intent(struct session *s, enum smtp_reply_id why);
static void intent_done(struct session *s, int error);
static void verdict_step(struct session *s);
static void session_greet(struct session *s);
static void start_greeting(struct session *s);
static void session_admit(struct session *s, limits_done_fn next);
static void admitted_then_greet(struct session *s, int refused);
static void set_timeout(struct session *s);
static void session_timeout(struct session *s, const char *why);

static void be_on_reply(void *ctx, uint32_t tag, const struct backend_reply *r);
static void be_on_ready(void *ctx, const struct backend_caps *caps);
static void be_on_error(void *ctx, enum smtp_reply_id why, const uint32_t *tags,
			size_t ntags);
static void be_on_drain(void *ctx);

static const struct backend_cbs session_backend_cbs = {
	.on_reply = be_on_reply,
	.on_ready = be_on_ready,
	.on_error = be_on_error,
	.on_drain = be_on_drain,
};

void
session_enter_state(struct session *s, enum session_state st)
{
	if (s->state == st)
		return;
	log_debug("%s: state %s -> %s", s->id, state_names[s->state],
	    state_names[st]);
	s->state = st;
	set_timeout(s);
}

struct evbuffer *
session_output(struct session *s)
{
	return conn_output(s->conn);
}

void
session_reply(struct session *s, enum smtp_reply_id id, ...)
{
	va_list ap;

	va_start(ap, id);
	smtp_reply_vadd(session_output(s), id, ap);
	va_end(ap);
	audit_session_reply(s, id);
	if (smtp_reply_code(id) == 421)
		session_close_after_reply(s);
}

int
session_bad_command(struct session *s, enum smtp_reply_id id, ...)
{
	va_list ap;

	va_start(ap, id);
	smtp_reply_vadd(session_output(s), id, ap);
	va_end(ap);
	audit_session_reply(s, id);	/* as session_reply(): policy records */
	if (smtp_reply_code(id) == 421)
		session_close_after_reply(s);
	if (++s->bad_commands >= s->conf->limits.max_bad_commands &&
	    s->state != S_CLOSING) {
		log_info("%s: max_bad_commands (%u) reached, disconnecting",
		    s->id, s->conf->limits.max_bad_commands);
		session_reply(s, R_TOO_MANY_ERRORS);
		return 1;
	}
	return s->state == S_CLOSING;
}

void
session_close_after_reply(struct session *s)
{
	/* session_flush() writes the last replies; the session is freed
	 * once they are out (CONN_DEFERRED or CONN_DRAINED). */
	session_enter_state(s, S_CLOSING);
	conn_pause_read(s->conn, 1);
}

/* The end of every piece of work: write what was queued for the backend and
 * the client, in one write each. */
static void
session_flush(struct session *s)
{
	/* While the end of data waits for the audit writer, the content's
	 * tail waits with it: it leaves with the dot, in one write. */
	if (s->be != NULL && s->tx.state != TX_AUDIT_INTENT)
		backend_flush(s->be);
	conn_flush(s->conn);
	if (s->state == S_CLOSING && conn_pending_output(s->conn) == 0)
		conn_defer(s->conn);
}

/* The timeout of the current state, in seconds. */
static unsigned
state_timeout(const struct session *s)
{
	const struct conf_timeouts *t = &s->conf->timeouts;

	switch (s->state) {
	case S_PROXY_HDR:
	case S_GREETING:
		return t->greeting;
	case S_DATA:
	case S_BDAT:
		return t->data;
	case S_TLS:
		return s->conf->tls.handshake_timeout ?
		    s->conf->tls.handshake_timeout : 30;
	case S_BURL:
		/* the client waits for us: the IMAP client's own timeouts
		 * end the fetch first */
		return t->command + s->conf->burl.connect_timeout +
		    s->conf->burl.fetch_deadline;
	default:
		return t->command;
	}
}

static void phase_deadline_start(struct session *s);

static void
set_timeout(struct session *s)
{
	conn_set_timeout(s->conn, state_timeout(s));
	phase_deadline_start(s);
}

/* ---------------------------------------------------------------- */
/* Transactions */

void
tx_reset(struct session *s)
{
	struct tx *tx = &s->tx;
	unsigned i;

	if (tx->burl_fetch != NULL)
		log_info("%s: tx=%s BURL %s %s via %s: abandoned after %llu "
		    "octets, %llu ms", s->id, tx->id, tx->burl_log_url,
		    tx->burl_why, s->conf->burl.servers[tx->burl_server].name,
		    (unsigned long long)tx->burl_bytes,
		    (unsigned long long)(util_now_ms() - tx->burl_t0));
	imap_fetch_cancel(&tx->burl_fetch);
	mailhost_cancel(&tx->burl_mh);
	if (tx->burl_url != NULL) {
		explicit_bzero(tx->burl_url, strlen(tx->burl_url));	/* the token */
		free(tx->burl_url);
	}
	audit_tx_end(s);	/* before the transaction is forgotten */
	free(tx->from);
	for (i = 0; i < tx->rcpt_count; i++)
		free(tx->rcpts[i]);
	free(tx->rcpts);
	free(tx->rcpt_ok);
	free(tx->fail_reply);
	uint8_t gen = tx->gen;
	memset(tx, 0, sizeof(*tx));
	tx->gen = gen + 1;
	tx->state = TX_NONE;
	tx->fail = R_REPLY_COUNT;
	if (s->chunk != NULL)
		evbuffer_drain(s->chunk, evbuffer_get_length(s->chunk));
	if (s->be != NULL)
		backend_set_reply_timeout(s->be, s->conf->timeouts.backend_command);
}

const struct backend_caps *
session_caps(const struct session *s)
{
	if (s->be != NULL && backend_is_ready(s->be))
		return backend_caps(s->be);
	if (backend_known.valid)
		return &backend_known.caps;
	return NULL;
}

int
session_backend(struct session *s)
{
	char attrs[1200], name[300], helo[300], login[300];

	if (s->be != NULL)
		return 0;
	s->be = backend_new(s->worker->base, s->conf, &session_backend_cbs, s,
	    s->id);
	if (s->be == NULL)
		return -1;
	/* XCLIENT (when the backend offers it): the real client address,
	 * also the one from a PROXY header, and the authenticated identity */
	util_xtext_encode(s->rdns != NULL && strcmp(s->rdns, "unknown") != 0 ?
	    s->rdns : "[UNAVAILABLE]", name, sizeof(name));
	util_xtext_encode(s->helo[0] ? s->helo : "[UNAVAILABLE]", helo,
	    sizeof(helo));
	util_xtext_encode(s->identity, login, sizeof(login));
	snprintf(attrs, sizeof(attrs), "%s%s%sNAME=%s ADDR=%s%s PORT=%d HELO=%s "
	    "PROTO=%s", s->auth ? "LOGIN=" : "", s->auth ? login : "",
	    s->auth ? " " : "", name, strchr(s->peer_ip, ':') ? "IPV6:" : "",
	    s->peer_ip, s->peer_port, helo,
	    s->helo_kind == HELO_HELO ? "SMTP" : "ESMTP");
	backend_set_xclient(s->be, attrs, s->helo);
	return 0;
}

/* The backend transaction cannot be completed: make sure nothing of it is
 * delivered.  A DATA transfer can only be aborted by closing the connection
 * before the final dot; a BDAT transfer by RSET before the LAST chunk. */
void
session_abort_backend_tx(struct session *s)
{
	if (s->be == NULL)
		return;
	/* TX_AUDIT_INTENT: the content went out, its end did not */
	if ((s->tx.backend_bdat || (s->tx.state != TX_CONTENT &&
	    s->tx.state != TX_AUDIT_INTENT)) && backend_is_ready(s->be)) {
		evbuffer_drain(s->chunk, evbuffer_get_length(s->chunk));
		backend_send(s->be, TAG(TAG_RSET, s->tx.gen, 0), "RSET");
	} else {
		backend_free(&s->be);
	}
}

static void
log_tx(struct session *s, int code, const char *what)
{
	char from[200];

	log_info("%s: tx=%s from=<%s> nrcpt=%u/%u size=%llu result=%d %s "
	    "queue_id=%s ms=%llu", s->id, s->tx.id,
	    log_sanitize(from, sizeof(from), s->tx.from ? s->tx.from : "",
	    s->tx.from ? strlen(s->tx.from) : 0), s->tx.rcpt_accepted,
	    s->tx.rcpt_count, (unsigned long long)s->tx.filter.out_bytes, code,
	    what, s->tx.queue_id[0] ? s->tx.queue_id : "-",
	    (unsigned long long)(util_now_ms() - s->tx.t_start_ms));
	audit_tx_outcome(s, code, what);
}

/* Content starts: prepend our Received header, then stream. */
void
session_begin_content(struct session *s, enum session_state st)
{
	struct tx *tx = &s->tx;
	struct received_info ri;
	char auth_comment[300];

	tx->state = TX_CONTENT;
	audit_tx_content(s, st == S_DATA ? "DATA" : st == S_BDAT ? "BDAT" :
	    "BURL");
	data_filter_init(&tx->filter, s->conf->limits.max_data_line_length,
	    tx->binary);
	dot_encoder_init(&tx->enc);
	memset(&ri, 0, sizeof(ri));
	ri.helo = s->helo;
	ri.rdns = s->rdns;
	ri.ip = s->peer_ip;
	ri.by = s->conf->server_name;
	ri.id = tx->id;
	ri.rcpt = NULL;
	if (tx->rcpt_accepted == 1) {
		unsigned i;
		for (i = 0; i < tx->rcpt_count; i++)
			if (tx->rcpt_ok[i])
				ri.rcpt = tx->rcpts[i];
	}
	ri.lmtp = s->lmtp;
	ri.esmtp = s->helo_kind != HELO_HELO;
	ri.tls = s->tls;
	ri.auth = s->auth;
	if (s->auth && s->conf->sasl.received_auth_comment) {
		snprintf(auth_comment, sizeof(auth_comment), "authenticated as %s",
		    s->identity);
		ri.auth_comment = auth_comment;
	}
	if (s->tls && s->conf->sasl.received_tls_comment)
		ri.tls_comment = s->tls_desc;
	ri.utf8 = tx->smtputf8;
	ri.when = time(NULL);
	evbuffer_drain(s->content, evbuffer_get_length(s->content));
	received_format(&ri, s->content);
	/* While the client sends content the backend hears nothing from us
	 * that it answers (a DATA backend nothing at all until the dot): its
	 * reply timeout must not end a slow but living upload.  The client's
	 * own deadlines (timeouts.data, limits.min_data_rate) bound it. */
	if (s->be != NULL)
		backend_set_reply_timeout(s->be, s->conf->timeouts.command +
		    s->conf->timeouts.data + s->conf->timeouts.backend_command);
	if (tx->backend_bdat)
		evbuffer_add_buffer(s->chunk, s->content);
	else {
		/* The header is one short string: encode it in one piece. */
		size_t len = evbuffer_get_length(s->content);
		char *p = (char *)evbuffer_pullup(s->content, (ev_ssize_t)len);

		dot_encode(&tx->enc, p, len, s->chunk);
		evbuffer_drain(s->content, len);
		/* it leaves with the first content, in the same write */
	}
	session_enter_state(s, st);
}

/* Send what is in s->chunk to a BDAT backend as one chunk. */
static void
flush_bdat_chunk(struct session *s, int last)
{
	size_t n = evbuffer_get_length(s->chunk);

	if (s->be == NULL)
		return;
	if (last) {
		/* its reply is the first verdict on the message */
		backend_send(s->be, TAG(TAG_FINAL, s->tx.gen, 0), "BDAT %zu LAST", n);
		backend_send_buffer(s->be, s->chunk, n);
		return;
	}
	if (n > s->conf->limits.max_bdat_chunk)
		n = s->conf->limits.max_bdat_chunk;
	backend_send(s->be, TAG(TAG_CHUNK, s->tx.gen, 0), "BDAT %zu", n);
	backend_send_buffer(s->be, s->chunk, n);
}

/* Forward the filtered content in s->content. */
static void
forward_content(struct session *s)
{
	struct tx *tx = &s->tx;

	if (tx->audit != NULL)
		audit_tx_scan(s, s->content);	/* the Message-ID */
	if (tx->discard || s->be == NULL) {
		evbuffer_drain(s->content, evbuffer_get_length(s->content));
		return;
	}
	if (tx->backend_bdat) {
		evbuffer_add_buffer(s->chunk, s->content);
		/* full chunks go now; the rest waits for more or for LAST */
		while (s->be != NULL &&
		    evbuffer_get_length(s->chunk) >= s->conf->limits.max_bdat_chunk)
			flush_bdat_chunk(s, 0);
		return;
	}
	/* dot-stuff for a DATA backend, one contiguous piece at a time: a
	 * piece without a line that starts with a dot is moved as it is (its
	 * evbuffer chain, no copy), any other is encoded into a copy */
	while (evbuffer_get_length(s->content) > 0) {
		struct evbuffer_iovec v;

		if (evbuffer_peek(s->content, -1, NULL, &v, 1) < 1 ||
		    v.iov_len == 0)
			break;
		if (dot_encode_clean(&tx->enc, v.iov_base, v.iov_len)) {
			if (evbuffer_remove_buffer(s->content, s->chunk,
			    v.iov_len) == (int)v.iov_len)
				continue;
			/* -1 (a frozen buffer, not expected): nothing
			 * was moved; copy it */
			evbuffer_add(s->chunk, v.iov_base, v.iov_len);
		} else {
			dot_encode(&tx->enc, v.iov_base, v.iov_len, s->chunk);
		}
		evbuffer_drain(s->content, v.iov_len);
	}
	backend_send_buffer(s->be, s->chunk, (size_t)-1);
}

/* A content failure: stop forwarding, abort the backend side, remember why. */
static void
tx_fail(struct session *s, enum smtp_reply_id why)
{
	if (s->tx.fail == R_REPLY_COUNT)
		s->tx.fail = why;
	if (!s->tx.discard) {
		s->tx.discard = 1;
		session_abort_backend_tx(s);
	}
}

static void
check_content_limits(struct session *s)
{
	struct tx *tx = &s->tx;

	if (tx->filter.out_bytes > s->conf->limits.max_message_size)
		tx_fail(s, R_SIZE_EXCEEDED);
	else if (tx->filter.line_too_long && !tx->binary)
		tx_fail(s, R_DATA_LINE_TOO_LONG);
	else if (tx->filter.bare_newlines > 0 &&
	    s->conf->bare_newline == BARE_NEWLINE_REJECT && !tx->binary)
		tx_fail(s, R_BARE_NEWLINE);
}

/* Tell the client the message failed: the backend's own refusal when it
 * gave one (a refused BDAT chunk), else ours. */
static void
reply_failure(struct session *s, enum smtp_reply_id why)
{
	if (s->tx.fail_reply != NULL)
		relay(s, s->tx.fail_reply, BE_EXPECT_DATA_END);
	else
		session_reply(s, why);
}

/* The client finished the message (DATA's dot or BDAT LAST). */
static void
end_of_content(struct session *s)
{
	struct tx *tx = &s->tx;
	unsigned i, n;

	if (tx->filter.bare_newlines > 0)
		log_info("%s: tx=%s %u bare CR/LF in content (%s)", s->id, tx->id,
		    tx->filter.bare_newlines,
		    s->conf->bare_newline == BARE_NEWLINE_REJECT ? "rejected" :
		    "normalized");
	if (tx->fail != R_REPLY_COUNT || s->be == NULL) {
		enum smtp_reply_id why = tx->fail != R_REPLY_COUNT ? tx->fail :
		    R_BACKEND_LOST;

		session_abort_backend_tx(s);
		log_tx(s, smtp_reply_code(why), "refused");
		n = s->lmtp ? tx->rcpt_accepted : 1;
		for (i = 0; i < n; i++)
			reply_failure(s, why);
		tx_reset(s);
		session_enter_state(s, s->state == S_CLOSING ? S_CLOSING : S_COMMAND);
		return;
	}
	/* the client awaits the verdict from here on */
	s->outstanding++;
	session_enter_state(s, S_COMMAND);
	switch (audit_tx_intent(s, intent_done)) {
	case 2:
		/* before_reply: "tx_pending" is in the channel; the end of
		 * data goes now, the 250 waits for the record on disk */
		tx->intent_wait = 1;
		break;
	case 1:
		/* the end of data waits for "tx_pending" on disk */
		tx->state = TX_AUDIT_INTENT;
		return;
	case -1:
		tx->state = TX_AUDIT_INTENT;
		refuse_after_intent(s, R_AUDIT_UNAVAIL);
		return;
	default:
		break;
	}
	send_end_of_data(s);
}

/* The end of data to the backend; its verdict comes to final_reply(). */
static void
send_end_of_data(struct session *s)
{
	struct tx *tx = &s->tx;
	unsigned i, n;

	if (tx->backend_bdat) {
		flush_bdat_chunk(s, 1);
	} else {
		dot_encode_end(&tx->enc, s->chunk);
		backend_send_buffer(s->be, s->chunk, (size_t)-1);
	}
	/* The verdict: one reply from an SMTP backend, one per accepted
	 * recipient from an LMTP backend (RFC 2033 4.2).  flush_bdat_chunk's
	 * LAST and the dot each expect the first of them. */
	n = s->conf->backend.proto == BACKEND_LMTP ? tx->rcpt_accepted : 1;
	if (!tx->backend_bdat)
		backend_expect(s->be, TAG(TAG_FINAL, tx->gen, 0));
	for (i = 1; i < n; i++)
		backend_expect(s->be, TAG(TAG_FINAL, tx->gen, i));
	tx->finals_expected = n;
	tx->finals_seen = 0;
	tx->state = TX_FINAL;
	backend_set_reply_timeout(s->be, s->conf->timeouts.backend_data);
}

/* TX_AUDIT_INTENT ends without the end of data going out: nothing is
 * delivered, the client gets `why`. */
static void
refuse_after_intent(struct session *s, enum smtp_reply_id why)
{
	struct tx *tx = &s->tx;
	unsigned i, n = s->lmtp ? tx->rcpt_accepted : 1;

	session_abort_backend_tx(s);
	log_tx(s, smtp_reply_code(why), why == R_AUDIT_UNAVAIL ?
	    "refused: audit log unavailable" : "refused");
	for (i = 0; i < n; i++) {
		if (why == R_AUDIT_UNAVAIL)
			session_reply(s, why);
		else
			reply_failure(s, why);
	}
	s->outstanding--;
	tx_reset(s);
}

/* The audit writer answered for "tx_pending". */
static void
intent_done(struct session *s, int error)
{
	struct tx *tx = &s->tx;
	enum smtp_reply_id why = R_REPLY_COUNT;

	if (tx->intent_wait) {
		/* before_reply: the end of data is out already */
		tx->intent_wait = 0;
		if (error != 0) {
			tx->intent_failed = 1;
			log_warn("%s: tx=%s audit record not written (%s) after "
			    "the end of data went to the backend: no 250 for "
			    "it", s->id, tx->id, strerror(error));
		}
		if (tx->state == TX_AUDIT_VERDICT) {
			/* the verdict waited for this */
			verdict_step(s);
			session_continue(s);
		}
		return;
	}
	if (s->state == S_CLOSING) {
		/* the client was told 421 meanwhile (shutdown): deliver
		 * nothing it was not told about */
		session_abort_backend_tx(s);
		log_tx(s, smtp_reply_code(R_SHUTDOWN), "aborted: closing");
		s->outstanding--;
		tx_reset(s);
		session_flush(s);
		return;
	}
	if (error != 0) {
		log_warn("%s: tx=%s audit record not written (%s): nothing "
		    "delivered", s->id, tx->id, strerror(error));
		why = R_AUDIT_UNAVAIL;
	} else if (tx->fail != R_REPLY_COUNT) {
		why = tx->fail;		/* a chunk was refused meanwhile */
	} else if (s->be == NULL) {
		why = R_BACKEND_LOST;
	}
	if (why == R_REPLY_COUNT)
		send_end_of_data(s);
	else
		refuse_after_intent(s, why);
	session_continue(s);
}

/* ---------------------------------------------------------------- */
/* Input */

/* Does the input start with an AUTH command (which may be long)? */
static int
auth_line_ahead(struct evbuffer *in)
{
	char head[5];

	return evbuffer_copyout(in, head, 5) == 5 &&
	    strncasecmp(head, "AUTH ", 5) == 0;
}

/* Make room for a line of up to n octets (AUTH lines only). */
static int
grow_line(struct session *s, size_t n)
{
	char *l = realloc(s->line, n + 1), *sc;

	if (l == NULL)
		return -1;
	s->line = l;
	sc = realloc(s->scratch, n + 1);
	if (sc == NULL)
		return -1;
	s->scratch = sc;
	s->line_cap = n;
	return 0;
}

/* Cut the next command line out of the input into s->line.  Returns 1 if a
 * line (or a too-long line) is ready, 0 if more input is needed. */
static int
read_line(struct session *s)
{
	struct evbuffer *in = conn_input(s->conn);
	size_t max = s->conf->limits.max_line_length;
	struct evbuffer_ptr eol;
	size_t eol_len = 0, len, have;

	/* RFC 4954 4: AUTH lines (the answers to 334, and the command with
	 * an initial response) may be 12288 octets long: GSSAPI tokens are.
	 * Only a line that is already too long is looked at for "AUTH ", so
	 * ordinary commands pay nothing for this. */
	if (s->state == S_AUTH && max < SMTP_AUTH_LINE_MAX)
		max = SMTP_AUTH_LINE_MAX;
	eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
	have = eol.pos < 0 ? evbuffer_get_length(in) : (size_t)eol.pos + eol_len;
	if (have > max && max < SMTP_AUTH_LINE_MAX && !s->skipping_line &&
	    auth_line_ahead(in))
		max = SMTP_AUTH_LINE_MAX;
	if (eol.pos < 0) {
		/* No end of line yet.  Past the limit: drop what we have and
		 * keep dropping until the line ends (bounded memory). */
		if (have >= max) {
			evbuffer_drain(in, have);
			s->skipping_line = 1;
		}
		return 0;
	}
	len = (size_t)eol.pos;
	if (s->skipping_line || len + eol_len > max) {
		evbuffer_drain(in, len + eol_len);
		s->skipping_line = 0;
		s->line_too_long = 1;
		s->have_line = 1;
		s->line_len = 0;
		s->line[0] = '\0';
		return 1;
	}
	if (len > s->line_cap && grow_line(s, max) < 0)
		return 0;
	evbuffer_remove(in, s->line, len);
	evbuffer_drain(in, eol_len);
	if (len > 0 && s->line[len - 1] == '\r')
		len--;
	s->line[len] = '\0';
	s->line_len = len;
	s->have_line = 1;
	s->line_too_long = 0;
	return 1;
}

/* Run the commands waiting in the input, in order, as far as they can go. */
static void
run_commands(struct session *s)
{
	while (s->state == S_COMMAND) {
		struct smtp_command cmd;

		/* While the backend's 354 is awaited, what follows DATA or
		 * BDAT is content, not commands: leave it in the buffer.  And
		 * nothing is read while a failed AUTH is being delayed. */
		if (s->await_data_go || s->auth_waiting)
			break;
		if (!s->have_line && !read_line(s))
			break;
		if (s->line_too_long) {
			if (s->outstanding > 0)
				break;
			s->have_line = 0;
			s->line_too_long = 0;
			if (session_bad_command(s, R_LINE_TOO_LONG))
				break;
			continue;
		}
		/* Parse without consuming: the line may have to wait. */
		if (smtp_parse_command(s->line, s->line_len, &cmd) < 0) {
			if (s->outstanding > 0)
				break;
			s->have_line = 0;
			if (session_bad_command(s, R_SYNTAX))
				break;
			continue;
		}
		if (s->outstanding > 0 &&
		    (s->outstanding >= s->conf->limits.max_pipelined ||
		    !smtp_cmd_may_pipeline(s, cmd.verb, cmd.args)))
			break;
		/* counters the command checks (rate_limits): with Redis it
		 * waits for them here, and holds the commands behind it */
		if (limits_gate(s, cmd.verb, cmd.args) == LIMITS_WAIT)
			break;
		s->have_line = 0;
		smtp_cmd_dispatch(s, cmd.verb, cmd.args);
		if (s->state == S_COMMAND)
			phase_deadline_start(s);	/* the next command's turn */
	}
}

/*
 * Hand the socket to TLS.  For STARTTLS (RFC 3207 4.2) everything learned
 * before is forgotten: the greeting, the transaction, the authentication;
 * and whatever the client sent after STARTTLS in the clear is thrown away
 * (conn_start_tls drains the input; the CVE-2011-0411 class).
 */
static void
begin_tls(struct session *s)
{
	SSL *ssl;

	s->starttls_pending = 0;
	s->have_line = 0;
	s->skipping_line = 0;
	s->line_too_long = 0;
	if (s->tx.state != TX_NONE) {
		session_abort_backend_tx(s);
		tx_reset(s);
	}
	s->helo_kind = HELO_NONE;
	s->helo[0] = '\0';
	s->auth = 0;
	s->identity[0] = '\0';
	sasl_session_free(&s->sasl);
	ssl = worker_tls != NULL ? tls_server_ssl_new(worker_tls) : NULL;
	if (ssl == NULL || conn_start_tls(s->conn, ssl) < 0) {
		log_warn("%s: cannot start TLS", s->id);
		session_reply(s, R_TLS_UNAVAIL_421);
		return;
	}
	session_enter_state(s, S_TLS);
}

void
session_resume(struct session *s)
{
	session_run(s);
}

/* After an asynchronous event (an audit acknowledgement): go on, or just
 * write what is left if the session is closing. */
static void
session_continue(struct session *s)
{
	if (s->state != S_CLOSING)
		session_run(s);
	else
		session_flush(s);
}

static void
session_run(struct session *s)
{
	if (s->state == S_TLS)
		return;		/* conn drives the handshake */
	for (;;) {
		if (s->state == S_BURL)
			break;	/* the fetch drives the session; input waits */
		if (s->state == S_AUTH) {
			if (s->auth_waiting || !read_line(s))
				break;
			s->have_line = 0;
			if (s->line_too_long) {
				s->line_too_long = 0;
				session_reply(s, R_LINE_TOO_LONG);
				sasl_session_free(&s->sasl);
				session_enter_state(s, S_COMMAND);
				continue;
			}
			smtp_auth_response(s, s->line);
			continue;
		}
		run_commands(s);
		if (s->state == S_AUTH)
			continue;
		if (s->state != S_DATA && s->state != S_BDAT)
			break;
		session_read_content(s);
		/* back to commands if the content ended; else wait for input */
		if (s->state != S_COMMAND)
			break;
	}
	if (s->state == S_COMMAND && s->quit_after_tx && s->outstanding == 0 &&
	    s->tx.state == TX_NONE)
		session_reply(s, R_SHUTDOWN);
	if (s->state != S_CLOSING)
		conn_pause_read(s->conn, s->input_paused);
	session_flush(s);
	/* a BURL fetch paused for the backend: a flush on our own path may
	 * have drained it, and then no CONN_DRAINED comes (as backpressure()
	 * knows for client input) */
	if (s->tx.burl_fetch != NULL && s->input_paused && s->be != NULL &&
	    backend_pending_output(s->be) <= s->conf->limits.session_buffer) {
		s->input_paused = 0;
		imap_fetch_pause(s->tx.burl_fetch, 0);
	}
	/* STARTTLS: the 220 must leave in the clear before TLS takes the
	 * socket; if it could not all be written, CONN_DRAINED resumes. */
	if (s->starttls_pending && conn_pending_output(s->conn) == 0)
		begin_tls(s);
}

/* Stop reading from the client while the backend has a backlog. */
static int
backpressure(struct session *s)
{
	if (s->be == NULL ||
	    backend_pending_output(s->be) <= s->conf->limits.session_buffer) {
		/* a flush on our own path may have drained it: no
		 * CONN_DRAINED will come, so the flag is decided here */
		s->input_paused = 0;
		return 0;
	}
	/* Only what the kernel would not take counts: then EV_WRITE is armed
	 * and CONN_DRAINED (be_on_drain) resumes reading. */
	backend_flush(s->be);
	if (backend_pending_output(s->be) > s->conf->limits.session_buffer) {
		if (!s->input_paused) {
			log_debug("%s: backend backlog %zu: pausing input", s->id,
			    backend_pending_output(s->be));
			s->input_paused = 1;
			conn_pause_read(s->conn, 1);
		}
		return 1;
	}
	s->input_paused = 0;
	return 0;
}

static void
session_read_content(struct session *s)
{
	struct evbuffer *in = conn_input(s->conn);
	struct tx *tx = &s->tx;

	while ((s->state == S_DATA || s->state == S_BDAT) && !backpressure(s)) {
		struct evbuffer_iovec v;
		size_t used;

		if (s->state == S_BDAT && tx->bdat_remaining == 0)
			goto chunk_done;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
			return;
		if (s->state == S_DATA) {
			used = data_filter_decode_dot(&tx->filter, v.iov_base,
			    v.iov_len, s->content);
		} else {
			used = v.iov_len < tx->bdat_remaining ? v.iov_len :
			    (size_t)tx->bdat_remaining;
			if (tx->discard)
				tx->filter.out_bytes += used;
			else
				data_filter_raw(&tx->filter, v.iov_base, used,
				    s->content);
			tx->bdat_remaining -= used;
		}
		evbuffer_drain(in, used);
		check_content_limits(s);
		forward_content(s);
		if (s->state == S_DATA && tx->filter.state == DF_END) {
			end_of_content(s);
			return;
		}
		continue;
chunk_done:
		/* A whole BDAT chunk was read. */
		if (tx->bdat_last) {
			if (!tx->discard)
				data_filter_raw_end(&tx->filter, s->content);
			check_content_limits(s);
			forward_content(s);
			if (tx->chunk_quiet) {
				/* the reply was given at the command */
				session_enter_state(s, S_COMMAND);
				if (tx->state == TX_CONTENT)
					tx->state = TX_FAILED;
				continue;
			}
			end_of_content(s);
			return;
		}
		session_enter_state(s, S_COMMAND);
		if (tx->chunk_quiet)
			continue;
		if (tx->fail != R_REPLY_COUNT) {
			/* RFC 3030 3: the chunk fails, and with it the
			 * transaction, until RSET. */
			reply_failure(s, tx->fail);
			log_tx(s, smtp_reply_code(tx->fail), "refused");
			tx->state = TX_FAILED;
		} else {
			session_reply(s, R_BDAT_CHUNK_OK,
			    (unsigned long long)tx->bdat_chunk_size);
		}
	}
}

/* BDAT's chunk follows the command at once (RFC 3030 2): read it. */
void
session_bdat_start_chunk(struct session *s, uint64_t size, int last, int discard)
{
	struct tx *tx = &s->tx;

	tx->bdat_remaining = size;
	tx->bdat_chunk_size = size;
	tx->bdat_last = last;
	tx->chunk_quiet = discard;
	if (discard)
		tx->discard = 1;
	if (tx->state == TX_CONTENT || discard)
		session_enter_state(s, S_BDAT);
}

/* ---------------------------------------------------------------- */
/* BURL (RFC 4468): content fetched from a trusted IMAP server */

static void burl_fetch_begin(struct session *s);

int
session_burl_offered(const struct session *s)
{
	const struct conf_burl *cb = &s->conf->burl;

	return cb->enabled && !s->lmtp &&
	    (s->lc->kind == LISTENER_SUBMISSION ||
	    s->lc->kind == LISTENER_SUBMISSIONS) &&
	    (!cb->require_auth || s->auth) && (!cb->require_tls || s->tls) &&
	    burl_worker_ready(s->worker->burl);
}

/* The audit record of one fetch (auth/audit.h: the URL redacted there). */
static void
burl_audit(struct session *s, const char *result)
{
	struct tx *tx = &s->tx;
	struct imapurl u;
	const char *err;
	int ok;

	if (!audit_enabled() || tx->burl_url == NULL)
		return;
	ok = imapurl_parse(tx->burl_url, strlen(tx->burl_url), &u, &err) ==
	    IMAPURL_OK;
	audit_burl_fetch(s, s->conf->burl.servers[tx->burl_server].name,
	    tx->burl_url, strlen(tx->burl_url), ok ? &u : NULL, tx->burl_bytes,
	    result, util_now_ms() - tx->burl_t0);
	explicit_bzero(&u, sizeof(u));
}

/* The fetch ended (or failed before it began): answer the BURL command. */
static void
burl_complete(struct session *s, enum smtp_reply_id fail)
{
	struct tx *tx = &s->tx;

	if (s->burl_timer != NULL)
		evtimer_del(s->burl_timer);
	if (s->be != NULL)
		backend_set_reply_timeout(s->be, s->conf->timeouts.backend_command);

	if (fail == R_REPLY_COUNT && tx->fail != R_REPLY_COUNT)
		fail = tx->fail;
	if (fail != R_REPLY_COUNT) {
		/* RFC 3030 3 as for a failed BDAT chunk: the transaction
		 * fails, and nothing of it reaches a recipient */
		tx_fail(s, fail);
		if (tx->fail_reply != NULL)
			relay(s, tx->fail_reply, BE_EXPECT_DATA_END);
		else
			session_reply(s, fail);
		log_tx(s, smtp_reply_code(fail), "refused (BURL)");
		tx->state = TX_FAILED;
		session_enter_state(s, S_COMMAND);
		if (++s->bad_burls >= s->conf->burl.max_bad_burl) {
			log_info("%s: %u failed BURL commands (burl.max_bad_burl): "
			    "disconnecting", s->id, s->bad_burls);
			session_reply(s, R_BURL_TOO_MANY);
			session_close_after_reply(s);
		}
		return;
	}
	if (tx->burl_last) {
		data_filter_raw_end(&tx->filter, s->content);
		check_content_limits(s);
		if (tx->fail == R_SIZE_EXCEEDED)
			tx->fail = R_BURL_TOO_BIG;
		forward_content(s);
		session_enter_state(s, S_COMMAND);
		end_of_content(s);
		return;
	}
	session_enter_state(s, S_COMMAND);
	session_reply(s, R_BURL_WAITING);
}

static int
has_nul(const char *p, size_t n)
{
	return memchr(p, '\0', n) != NULL;
}

/* Eight bytes at a time: this sees every fetched octet */
static int
has_8bit(const char *p, size_t n)
{
	const uint64_t highs = 0x8080808080808080ULL;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t w;

		memcpy(&w, p + i, 8);
		if (w & highs)
			return 1;
	}
	for (; i < n; i++)
		if ((unsigned char)p[i] & 0x80)
			return 1;
	return 0;
}

static void
burl_on_data(void *ctx, struct evbuffer *buf)
{
	struct session *s = ctx;
	struct tx *tx = &s->tx;
	const struct backend_caps *bc = session_caps(s);

	while (evbuffer_get_length(buf) > 0) {
		struct evbuffer_iovec v;

		if (evbuffer_peek(buf, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
			break;
		tx->burl_bytes += v.iov_len;
		/* RFC 4468 6: binary data (NUL) cannot be sent without
		 * BINARYMIME, and 8-bit data not to a backend without
		 * 8BITMIME: we do not down-convert */
		if (!tx->binary && (has_nul(v.iov_base, v.iov_len) ||
		    (!tx->burl_8bit && bc != NULL &&
		    !(bc->flags & CAP_8BITMIME) &&
		    has_8bit(v.iov_base, v.iov_len))))
			tx->burl_fail = R_BURL_8BIT;
		if (tx->discard || tx->burl_fail != R_REPLY_COUNT) {
			tx->filter.out_bytes += v.iov_len;
		} else {
			/* what passes unchanged (as a rule, all of it) is
			 * moved, not copied: the piece is a whole chain */
			size_t n = data_filter_raw_prefix(&tx->filter,
			    v.iov_base, v.iov_len);

			if (n == v.iov_len &&
			    evbuffer_remove_buffer(buf, s->content, n) == (int)n)
				continue;
			evbuffer_add(s->content, v.iov_base, n);
			data_filter_raw(&tx->filter, (const char *)v.iov_base + n,
			    v.iov_len - n, s->content);
		}
		evbuffer_drain(buf, v.iov_len);
	}
	check_content_limits(s);
	if (tx->fail == R_SIZE_EXCEEDED)
		tx->fail = R_BURL_TOO_BIG;
	else if (tx->fail == R_BARE_NEWLINE || tx->fail == R_DATA_LINE_TOO_LONG)
		tx->fail = R_BURL_8BIT;	/* not text we can pass on as is */
	if (tx->burl_fail == R_REPLY_COUNT && tx->fail != R_REPLY_COUNT)
		tx->burl_fail = tx->fail;
	if (tx->burl_fail != R_REPLY_COUNT) {
		/* stop fetching at once; the callback is not called again */
		imap_fetch_cancel(&tx->burl_fetch);
		log_info("%s: tx=%s BURL %s: refused after %llu octets (%d)",
		    s->id, tx->id, tx->burl_log_url,
		    (unsigned long long)tx->burl_bytes,
		    smtp_reply_code(tx->burl_fail));
		burl_audit(s, tx->burl_fail == R_BURL_TOO_BIG ? "too big" :
		    tx->burl_fail == R_BURL_8BIT ? "binary content" : "refused");
		burl_complete(s, tx->burl_fail);
		session_run(s);
		return;
	}
	forward_content(s);
	/* backpressure: the backend sets the pace of the IMAP server */
	if (s->be != NULL) {
		/* The last piece of BURL ... LAST content waits for the end of
		 * the fetch (burl_on_done, as a rule from the same read) and
		 * leaves with the end of data in one write.  Never when it
		 * would need the pause below: only a flush ends that. */
		if (tx->burl_last && tx->burl_fetch != NULL &&
		    imap_fetch_content_done(tx->burl_fetch) &&
		    backend_pending_output(s->be) <=
		    s->conf->limits.session_buffer)
			return;
		backend_flush(s->be);
		if (backend_pending_output(s->be) > s->conf->limits.session_buffer &&
		    tx->burl_fetch != NULL) {
			log_debug("%s: backend backlog %zu: pausing the IMAP "
			    "fetch", s->id, backend_pending_output(s->be));
			imap_fetch_pause(tx->burl_fetch, 1);
			s->input_paused = 1;
		}
	}
}

static void
burl_on_done(void *ctx, enum imap_fetch_result r, const char *reason,
	     uint64_t total)
{
	struct session *s = ctx;
	struct tx *tx = &s->tx;
	enum smtp_reply_id fail = R_REPLY_COUNT;

	tx->burl_fetch = NULL;		/* gone with this callback */
	limits_burl_fetched(s, total);
	switch (r) {
	case IMAP_FETCH_OK:
		if (total == 0)
			fail = R_BURL_FETCH_FAILED;	/* "returned no data" */
		break;
	case IMAP_FETCH_NODATA:
		fail = R_BURL_FETCH_FAILED;
		break;
	case IMAP_FETCH_TOO_BIG:
		fail = R_BURL_TOO_BIG;
		break;
	case IMAP_FETCH_UNAVAILABLE:
	default:
		fail = R_BURL_IMAP_UNAVAIL;
		break;
	}
	log_info("%s: tx=%s BURL %s %s via %s: %s%s%s, %llu octets, %llu ms",
	    s->id, tx->id, tx->burl_log_url, tx->burl_why,
	    s->conf->burl.servers[tx->burl_server].name,
	    fail == R_REPLY_COUNT ? "fetched" : "failed",
	    reason != NULL && reason[0] ? ": " : "", reason != NULL ? reason : "",
	    (unsigned long long)total,
	    (unsigned long long)(util_now_ms() - tx->burl_t0));
	burl_audit(s, fail == R_REPLY_COUNT ? "ok" :
	    fail == R_BURL_FETCH_FAILED ? "no data" :
	    fail == R_BURL_TOO_BIG ? "too big" : "imap server unavailable");
	burl_complete(s, fail);
	if (s->state != S_CLOSING)
		session_run(s);
	else
		session_flush(s);
}

/* burl.fetch_deadline: a server that drips content keeps fetch_timeout
 * (no progress) from firing; this bounds the whole fetch. */
static void
burl_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)what;
	if (s->tx.burl_fetch == NULL)
		return;
	imap_fetch_cancel(&s->tx.burl_fetch);
	log_info("%s: tx=%s BURL %s: not fetched within burl.fetch_deadline "
	    "(%u s) after %llu octets", s->id, s->tx.id, s->tx.burl_log_url,
	    s->conf->burl.fetch_deadline,
	    (unsigned long long)s->tx.burl_bytes);
	burl_audit(s, "burl.fetch_deadline");
	burl_complete(s, R_BURL_IMAP_UNAVAIL);
	if (s->state != S_CLOSING)
		session_run(s);
	else
		session_flush(s);
}

static void
burl_fetch_begin(struct session *s)
{
	static const struct imap_fetch_cbs cbs = { burl_on_data, burl_on_done };
	struct tx *tx = &s->tx;
	const struct conf_burl *cb = &s->conf->burl;
	struct imap_fetch_req req;
	struct imapurl u;
	const char *err;
	uint64_t room;

	if (imapurl_parse(tx->burl_url, strlen(tx->burl_url), &u, &err) !=
	    IMAPURL_OK) {
		burl_complete(s, R_BURL_FETCH_FAILED);	/* checked before */
		return;
	}
	memset(&req, 0, sizeof(req));
	req.mode = cb->servers[tx->burl_server].mode == CONF_IMAP_MODE_PROXY_AUTH ?
	    IMAP_MODE_PROXY_AUTH : IMAP_MODE_URLAUTH;
	req.url = tx->burl_url;
	req.url_len = strlen(tx->burl_url);
	req.authzid = u.user;
	req.mailbox = u.mailbox;
	req.uidvalidity = u.uidvalidity;
	req.uid = u.uid;
	req.section = u.section;
	req.has_partial = u.has_partial;
	req.partial_offset = u.partial_offset;
	req.partial_length = u.partial_length;
	/* RFC 4468 8: what came over TLS is fetched over TLS */
	req.require_tls = cb->fetch_tls == CONF_BURL_FETCH_TLS_ALWAYS ||
	    (cb->fetch_tls == CONF_BURL_FETCH_TLS_AS_CLIENT && s->tls);
	if (tx->burl_tls >= 0)
		req.require_tls = tx->burl_tls;	/* BURL_ACCESS $T / $X */
	room = s->conf->limits.max_message_size > tx->filter.out_bytes ?
	    s->conf->limits.max_message_size - tx->filter.out_bytes : 0;
	req.max_size = room;
	tx->burl_bytes = 0;
	tx->burl_t0 = util_now_ms();
	tx->burl_fail = R_REPLY_COUNT;
	tx->burl_fetch = imap_fetch_start(burl_worker_pool(s->worker->burl),
	    tx->burl_server, &req, &cbs, s);
	explicit_bzero(&u, sizeof(u));
	if (tx->burl_fetch == NULL) {
		burl_complete(s, R_LOCAL_ERROR);
		return;
	}
	if (s->burl_timer == NULL)
		s->burl_timer = evtimer_new(s->worker->base, burl_deadline_cb, s);
	if (s->burl_timer != NULL) {
		struct timeval tv = { cb->fetch_deadline, 0 };

		evtimer_add(s->burl_timer, &tv);
	}
	/* the backend hears nothing from us while the IMAP server is slow:
	 * its idle timeout must not end the transaction first */
	if (s->be != NULL)
		backend_set_reply_timeout(s->be, s->conf->timeouts.backend_command +
		    cb->fetch_deadline);
}

static void
burl_mailhost_cb(void *ctx, enum mailhost_result r, const char *host)
{
	struct session *s = ctx;
	struct tx *tx = &s->tx;
	const struct conf_burl *cb = &s->conf->burl;
	struct burl_verdict v;
	struct imapurl u;
	const char *err;
	int i = -1;

	tx->burl_mh = NULL;		/* finished with this callback */
	memset(&v, 0, sizeof(v));
	switch (r) {
	case MAILHOST_FOUND:
		i = burl_find_authority(cb, host);
		if (i < 0) {
			v.reply = R_BURL_NO_TRUST;
			snprintf(v.reason, sizeof(v.reason), "$M: mailHost %.200s "
			    "is not a trusted IMAP server", host);
			break;
		}
		if (imapurl_parse(tx->burl_url, strlen(tx->burl_url), &u, &err) !=
		    IMAPURL_OK) {
			v.reply = R_BURL_FETCH_FAILED;
			snprintf(v.reason, sizeof(v.reason), "%s", err);
			break;
		}
		burl_server_check(cb, (size_t)i, &u, time(NULL), &v);
		explicit_bzero(&u, sizeof(u));
		if (v.allowed && !burl_worker_server_ready(s->worker->burl,
		    (size_t)i)) {
			v.allowed = 0;
			v.reply = R_BURL_IMAP_UNAVAIL;
			snprintf(v.reason, sizeof(v.reason), "no credentials for "
			    "%s yet", cb->servers[i].name);
		}
		break;
	case MAILHOST_NOT_FOUND:
		v.reply = R_BURL_NO_MAILHOST;
		snprintf(v.reason, sizeof(v.reason), "$M: %.200s has no mailHost",
		    s->identity);
		break;
	case MAILHOST_UNAVAILABLE:
	default:
		v.reply = R_BURL_IMAP_UNAVAIL;
		snprintf(v.reason, sizeof(v.reason), "$M: the mailHost directory "
		    "is unavailable");
		break;
	}
	if (!v.allowed) {
		session_enter_state(s, S_COMMAND);
		smtp_burl_refuse(s, &v);
	} else {
		log_info("%s: BURL %s: $M: %s's mailHost %s is %s", s->id,
		    tx->burl_log_url, s->identity, host, cb->servers[i].name);
		tx->burl_server = (size_t)i;
		session_enter_state(s, S_COMMAND);
		session_burl_start(s);
	}
	if (s->state != S_CLOSING)
		session_run(s);
	else
		session_flush(s);
}

void
session_burl_mailhost(struct session *s)
{
	/* input waits while the directory answers (S_BURL) */
	session_enter_state(s, S_BURL);
	s->tx.burl_mh = mailhost_lookup(burl_worker_mailhost(s->worker->burl),
	    s->identity, burl_mailhost_cb, s);
	if (s->tx.burl_mh == NULL) {
		session_enter_state(s, S_COMMAND);
		session_reply(s, R_LOCAL_ERROR);
	}
}

void
session_burl_start(struct session *s)
{
	struct tx *tx = &s->tx;

	tx->burl_count++;
	if (tx->state == TX_CONTENT) {
		/* a further part of a message begun by BDAT or BURL */
		audit_tx_content(s, "BURL");
		session_enter_state(s, S_BURL);
		burl_fetch_begin(s);
		return;
	}
	tx->client_bdat = 1;
	tx->backend_bdat = s->conf->backend.use_chunking && s->be != NULL &&
	    backend_is_ready(s->be) &&
	    (backend_caps(s->be)->flags & CAP_CHUNKING);
	if (!tx->backend_bdat) {
		/* a DATA backend: its 354 first (be_on_reply goes on) */
		session_enter_state(s, S_BURL);
		s->outstanding++;
		s->await_data_go = 1;
		tx->burl_awaiting_354 = 1;
		backend_send(s->be, TAG(TAG_DATA_CMD, tx->gen, 0), "DATA");
		return;
	}
	session_begin_content(s, S_BURL);
	burl_fetch_begin(s);
}

/* ---------------------------------------------------------------- */
/* Backend replies */

static void
relay(struct session *s, const struct backend_reply *r, enum backend_expect e)
{
	enum smtp_reply_id id = backend_reply_map(r, e);

	if (id == R_REPLY_COUNT) {
		backend_reply_relay(r, e, session_output(s));
		return;
	}
	{
		char clean[200];
		log_warn("%s: backend reply %d %s replaced by %d", s->id, r->code,
		    log_sanitize(clean, sizeof(clean), r->text, r->text_len),
		    smtp_reply_code(id));
	}
	session_reply(s, id);
	if (r->code == 421)
		backend_free(&s->be);
}

/* One final reply for the client: the backend's, or ours instead of a 2xx
 * whose audit record could not be written. */
static void
relay_verdict(struct session *s, const struct backend_reply *r,
	      int audit_failed)
{
	if (audit_failed && r->code / 100 == 2)
		session_reply(s, R_AUDIT_UNAVAIL);
	else
		relay(s, r, BE_EXPECT_DATA_END);
}

/* Final reply number tx->finals_seen goes to the client; after the last,
 * the transaction ends. */
static void
final_relay(struct session *s, const struct backend_reply *r, int audit_failed)
{
	struct tx *tx = &s->tx;
	int backend_lmtp = s->conf->backend.proto == BACKEND_LMTP;
	unsigned i;

	limits_tx_final(s, r->code);	/* a delivered message counts */
	if (s->lmtp && backend_lmtp) {
		/* one verdict per recipient on both sides, in order */
		relay_verdict(s, r, audit_failed);
	} else if (s->lmtp) {
		for (i = 0; i < tx->rcpt_accepted; i++)
			relay_verdict(s, r, audit_failed);
	} else if (backend_lmtp) {
		/* An SMTP client gets one verdict: 250 only if every
		 * recipient was accepted, otherwise the first failure, so
		 * that nothing is acknowledged that was not delivered. */
		if (r->code / 100 != 2 || tx->fail_reply == NULL) {
			if (tx->fail_reply == NULL ||
			    (tx->fail_reply->code / 100 == 2 && r->code / 100 != 2)) {
				if (tx->fail_reply == NULL)
					tx->fail_reply = malloc(sizeof(*tx->fail_reply));
				if (tx->fail_reply != NULL)
					*tx->fail_reply = *r;
			}
		}
		if (tx->finals_seen == tx->finals_expected && tx->fail_reply)
			relay_verdict(s, tx->fail_reply, audit_failed);
	} else {
		relay_verdict(s, r, audit_failed);
	}
	if (tx->finals_seen < tx->finals_expected)
		return;
	log_tx(s, r->code, r->code / 100 != 2 ? "refused" : audit_failed ?
	    "delivered, audit record NOT written: 451 to the client" :
	    "delivered");
	s->messages++;
	s->outstanding--;
	if (s->be != NULL)
		backend_set_reply_timeout(s->be, s->conf->timeouts.backend_command);
	tx_reset(s);
}

/* Relay the verdicts held while the audit record was written. */
static void
verdict_replay(struct session *s, int audit_failed)
{
	struct tx *tx = &s->tx;
	unsigned i, n = tx->finals_expected;
	struct backend_reply *held = malloc(n * sizeof(*held));

	if (held == NULL) {
		/* cannot relay the backend's words: ours, never a 250 */
		for (i = 0; i < (s->lmtp ? tx->rcpt_accepted : 1); i++)
			session_reply(s, R_LOCAL_ERROR);
		log_tx(s, smtp_reply_code(R_LOCAL_ERROR), "out of memory");
		s->outstanding--;
		tx_reset(s);
		return;
	}
	/* copies: the last final_relay() ends the transaction */
	for (i = 0; i < n; i++)
		held[i] = *audit_tx_held(s, i);
	tx->finals_seen = 0;
	for (i = 0; i < n; i++) {
		tx->finals_seen++;
		final_relay(s, &held[i], audit_failed);
	}
	free(held);
}

/* The audit writer answered for the "tx" record. */
static void
verdict_done(struct session *s, int error)
{
	if (error != 0)
		log_warn("%s: tx=%s audit record of the verdict not written "
		    "(%s): 451 4.3.0 instead of 250 (the backend has the "
		    "message; a resend is a duplicate)", s->id, s->tx.id,
		    strerror(error));
	verdict_replay(s, error != 0);
	session_continue(s);
}

/* Every final reply is held (audit_tx_hold): on with the "tx" record,
 * and the client's reply. */
static void
verdict_step(struct session *s)
{
	struct tx *tx = &s->tx;

	if (tx->intent_failed) {
		/* before_reply: "tx_pending" is not on disk, the backend may
		 * have the message: no 250 (a resend is a duplicate) */
		verdict_replay(s, 1);
		return;
	}
	switch (audit_tx_verdict(s, verdict_done)) {
	case 1:
		tx->state = TX_AUDIT_VERDICT;
		return;
	case 0:		/* no 2xx: nothing to hold back */
		verdict_replay(s, 0);
		return;
	default:	/* not even queued: no 250 */
		verdict_replay(s, 1);
		return;
	}
}

/* Is any held final reply a 2xx? */
static int
held_any_2xx(const struct session *s)
{
	const struct backend_reply *r;
	unsigned i;

	for (i = 0; (r = audit_tx_held(s, i)) != NULL; i++)
		if (r->code / 100 == 2)
			return 1;
	return 0;
}

static void
final_reply(struct session *s, const struct backend_reply *r)
{
	struct tx *tx = &s->tx;

	tx->finals_seen++;
	if (r->code / 100 == 2 && tx->queue_id[0] == '\0')
		backend_reply_queue_id(r, tx->queue_id, sizeof(tx->queue_id));
	if (tx->audit != NULL) {
		/* the client hears nothing until the record is on disk */
		if (audit_tx_hold(s, r, tx->finals_expected) < 0) {
			final_relay(s, r, 1);
			return;
		}
		if (tx->finals_seen < tx->finals_expected)
			return;
		if (tx->intent_wait && held_any_2xx(s)) {
			/* before_reply: a 250 waits until "tx_pending" is on
			 * disk (intent_done goes on) */
			tx->state = TX_AUDIT_VERDICT;
			return;
		}
		verdict_step(s);
		return;
	}
	final_relay(s, r, 0);
}

static void
be_on_reply(void *ctx, uint32_t tag, const struct backend_reply *r)
{
	struct session *s = ctx;
	struct tx *tx = &s->tx;
	int current = TAG_GEN(tag) == tx->gen;

	if (current && tx->audit != NULL)
		audit_tx_backend_reply(s, TAG_KIND(tag), TAG_N(tag), r);
	switch (TAG_KIND(tag)) {
	case TAG_MAIL:
		s->outstanding--;
		relay(s, r, BE_EXPECT_MAIL);
		if (r->code / 100 != 2 && current && tx->state == TX_ENVELOPE) {
			/* The transaction did not start.  Pipelined RCPTs
			 * already sent get the backend's own 503s. */
			tx->state = TX_NONE;
		}
		break;
	case TAG_RCPT:
		s->outstanding--;
		relay(s, r, BE_EXPECT_RCPT);
		if (r->code / 100 == 2 && current && TAG_N(tag) < tx->rcpt_count) {
			tx->rcpt_ok[TAG_N(tag)] = 1;
			tx->rcpt_accepted++;
		}
		break;
	case TAG_DATA_CMD:
		s->outstanding--;
		s->await_data_go = 0;
		if (r->code == 354 && current && tx->burl_awaiting_354) {
			tx->burl_awaiting_354 = 0;
			session_begin_content(s, S_BURL);
			burl_fetch_begin(s);
		} else if (r->code == 354 && current) {
			if (tx->client_bdat) {
				/* the first BDAT chunk can flow now */
				session_begin_content(s, S_BDAT);
			} else {
				session_reply(s, R_DATA_GO);
				session_begin_content(s, S_DATA);
			}
		} else if (current && tx->burl_awaiting_354) {
			/* the BURL's answer is the backend's refusal */
			tx->burl_awaiting_354 = 0;
			relay(s, r, BE_EXPECT_DATA);
			session_abort_backend_tx(s);
			tx->state = TX_FAILED;
			session_enter_state(s, S_COMMAND);
		} else {
			if (tx->client_bdat) {
				/* The reply is given now; the chunk that
				 * follows is read and dropped. */
				relay(s, r, BE_EXPECT_DATA);
				session_abort_backend_tx(s);
				tx->state = TX_FAILED;
				session_bdat_start_chunk(s, tx->bdat_chunk_size,
				    tx->bdat_last, 1);
			} else {
				relay(s, r, BE_EXPECT_DATA);
				session_abort_backend_tx(s);
				log_tx(s, r->code, "refused at DATA");
				tx_reset(s);
			}
		}
		break;
	case TAG_FINAL:
		if (current && tx->state == TX_FINAL)
			final_reply(s, r);
		break;
	case TAG_CHUNK:
		if (r->code / 100 != 2 && current && tx->fail_reply == NULL &&
		    (tx->state == TX_CONTENT || tx->state == TX_AUDIT_INTENT)) {
			/* the backend refused a chunk: the message fails */
			tx->fail_reply = malloc(sizeof(*tx->fail_reply));
			if (tx->fail_reply != NULL)
				*tx->fail_reply = *r;
			tx_fail(s, R_BACKEND_GARBAGE);
		}
		break;
	case TAG_ETRN:
		s->outstanding--;
		smtp_etrn_backend_reply(s, r);
		break;
	default:
		break;
	}
	if (s->state != S_CLOSING)
		session_run(s);
}

static void
be_on_ready(void *ctx, const struct backend_caps *caps)
{
	(void)ctx;
	(void)caps;
}

static void
be_on_error(void *ctx, enum smtp_reply_id why, const uint32_t *tags,
	    size_t ntags)
{
	struct session *s = ctx;
	struct tx *tx = &s->tx;
	size_t i;
	int final_done = 0;

	for (i = 0; i < ntags; i++) {
		enum tag_kind k = TAG_KIND(tags[i]);

		switch (k) {
		case TAG_DATA_CMD:
			s->await_data_go = 0;
			if (tx->burl_awaiting_354) {
				tx->burl_awaiting_354 = 0;
				s->outstanding--;
				session_reply(s, why);
				tx->state = TX_FAILED;
				session_enter_state(s, S_COMMAND);
				break;
			}
			if (tx->client_bdat) {
				/* answer now, drop the chunk that follows */
				s->outstanding--;
				session_reply(s, why);
				tx->state = TX_FAILED;
				session_bdat_start_chunk(s, tx->bdat_chunk_size,
				    tx->bdat_last, 1);
				break;
			}
			/* FALLTHROUGH */
		case TAG_MAIL:
		case TAG_RCPT:
			s->outstanding--;
			session_reply(s, why);
			break;
		case TAG_ETRN:
			s->outstanding--;
			smtp_etrn_backend_error(s, why);
			break;
		case TAG_FINAL:
			if (final_done || tx->state != TX_FINAL)
				break;
			final_done = 1;
			{
				unsigned n = s->lmtp ? tx->rcpt_accepted : 1, j;
				for (j = 0; j < n; j++)
					session_reply(s, why == R_BACKEND_UNAVAIL ?
					    R_BACKEND_LOST : why);
			}
			log_tx(s, smtp_reply_code(why), "backend failed");
			s->outstanding--;
			break;
		default:
			break;
		}
	}
	backend_free(&s->be);
	if (tx->state == TX_CONTENT) {
		/* mid-content: read the rest, then say 4xx (never 250) */
		if (tx->fail == R_REPLY_COUNT)
			tx->fail = why == R_BACKEND_UNAVAIL ? R_BACKEND_LOST : why;
		tx->discard = 1;
		if (s->state == S_BURL && tx->burl_fetch != NULL) {
			/* a BURL needs read nothing more */
			imap_fetch_cancel(&tx->burl_fetch);
			burl_audit(s, "backend failed");
			burl_complete(s, tx->fail);
		}
	} else if (tx->state != TX_NONE && tx->state != TX_FAILED &&
	    tx->state != TX_AUDIT_INTENT && tx->state != TX_AUDIT_VERDICT) {
		/* (an audit wait ends in its callback, which sees no backend
		 * or has the verdict already) */
		if (tx->state == TX_ENVELOPE)
			log_tx(s, smtp_reply_code(why), "backend failed");
		tx_reset(s);
	}
	if (s->state != S_CLOSING)
		session_run(s);
}

static void
be_on_drain(void *ctx)
{
	struct session *s = ctx;

	log_debug("%s: backend drained (input %s)", s->id,
	    s->input_paused ? "paused" : "not paused");
	if (s->input_paused) {
		s->input_paused = 0;
		if (s->tx.burl_fetch != NULL)
			imap_fetch_pause(s->tx.burl_fetch, 0);
		session_run(s);
	}
}

/* ---------------------------------------------------------------- */
/* Client connection */

static void
read_proxy_header(struct session *s)
{
	struct evbuffer *in = conn_input(s->conn);
	size_t avail = evbuffer_get_length(in), hlen = 0;
	struct proxyproto_info info;
	const char *error = NULL;
	enum proxyproto_result res;
	unsigned char *p;

	if (avail > PROXYPROTO_MAX_LEN)
		avail = PROXYPROTO_MAX_LEN;
	p = evbuffer_pullup(in, (ev_ssize_t)avail);
	res = proxyproto_parse(p, avail, &hlen, &info, &error);
	if (res == PROXYPROTO_NEED_MORE)
		return;
	if (res == PROXYPROTO_INVALID) {
		log_warn("%s: bad PROXY header from %s: %s", s->id, s->peer_ip,
		    error ? error : "invalid");
		session_free(&s);
		return;
	}
	evbuffer_drain(in, hlen);
	if (info.has_addrs) {
		char lb[64];
		int lb_port = s->peer_port;

		snprintf(lb, sizeof(lb), "%s", s->peer_ip);
		s->peer = info.src;
		s->local = info.dst;
		util_sockaddr_ip((struct sockaddr *)&s->peer, s->peer_ip,
		    sizeof(s->peer_ip), &s->peer_port);
		util_sockaddr_ip((struct sockaddr *)&s->local, s->local_ip,
		    sizeof(s->local_ip), &s->local_port);
		log_info("%s: PROXY v%d from %s: client %s:%d", s->id,
		    info.version, lb, s->peer_ip, s->peer_port);
		audit_session_open(s, lb, lb_port);
	}
	audit_session_open(s, NULL, 0);		/* (LOCAL: the peer itself) */
	session_admit(s, admitted_then_greet);
}

/* The client took too long: 421 (or just close where no reply fits).
 * May free the session. */
static void
session_timeout(struct session *s, const char *why)
{
	if (s->outstanding > 0 && s->state == S_COMMAND) {
		/* The client waits for us; the backend's timeout governs. */
		return;
	}
	if (s->state == S_BURL)
		return;		/* the fetch's own deadlines govern */
	log_info("%s: timeout in state %s (%s)", s->id, state_names[s->state],
	    why);
	if (s->state == S_CLOSING || s->state == S_PROXY_HDR ||
	    s->state == S_TLS) {
		session_free(&s);
		return;
	}
	if (s->tx.state == TX_CONTENT)
		session_abort_backend_tx(s);
	session_reply(s, R_TIMEOUT);
	session_flush(s);
}

/*
 * Deadlines per phase.  conn's timeout measures the gap between two reads,
 * so a client that drips a byte now and then (slowloris) would never hit
 * it.  Each phase -- waiting for the PROXY header, the greeting's first
 * command, a command line, a TLS handshake, an AUTH response -- must also
 * be complete within its timeout of the moment it began; content may take
 * longer only while it keeps up limits.min_data_rate (each octet extends
 * the deadline by 1/rate seconds, as Postfix's smtpd_min_data_rate).
 */
static void
phase_deadline_arm(struct session *s)
{
	uint64_t now = util_now_ms();
	struct timeval tv;

	if (s->phase_timer == NULL || s->phase_deadline_ms == 0)
		return;
	if (s->phase_deadline_ms <= now) {
		tv.tv_sec = 0;
		tv.tv_usec = 0;
	} else {
		tv.tv_sec = (time_t)((s->phase_deadline_ms - now) / 1000);
		tv.tv_usec = (suseconds_t)((s->phase_deadline_ms - now) % 1000) * 1000;
	}
	evtimer_add(s->phase_timer, &tv);
}

static void
phase_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)what;
	if (util_now_ms() < s->phase_deadline_ms) {
		phase_deadline_arm(s);	/* extended by progress meanwhile */
		return;
	}
	/* not the client's turn: we owe it a reply, or hold its input back */
	if ((s->outstanding > 0 && s->state == S_COMMAND) ||
	    s->state == S_BURL || s->auth_waiting || s->input_paused ||
	    s->await_data_go) {
		phase_deadline_start(s);
		return;
	}
	session_timeout(s, "phase deadline");
}

static void
phase_deadline_start(struct session *s)
{
	if (s->conn == NULL)
		return;
	if (s->phase_timer == NULL) {
		s->phase_timer = evtimer_new(s->worker->base, phase_deadline_cb, s);
		if (s->phase_timer == NULL)
			return;
	}
	s->phase_deadline_ms = util_now_ms() + (uint64_t)state_timeout(s) * 1000;
	s->input_seen = evbuffer_get_length(conn_input(s->conn));
	phase_deadline_arm(s);
}

/* New input: content progress extends the content deadline. */
static void
phase_progress(struct session *s)
{
	size_t len = evbuffer_get_length(conn_input(s->conn));

	if ((s->state == S_DATA || s->state == S_BDAT) && len > s->input_seen) {
		uint64_t ext = (uint64_t)(len - s->input_seen) * 1000 /
		    s->conf->limits.min_data_rate;
		uint64_t cap = util_now_ms() + (uint64_t)state_timeout(s) * 1000;

		s->phase_deadline_ms += ext;
		if (s->phase_deadline_ms > cap)
			s->phase_deadline_ms = cap;
	}
	s->input_seen = len;
}

static void
read_cb(void *arg)
{
	struct session *s = arg;

	switch (s->state) {
	case S_PROXY_HDR:
		read_proxy_header(s);
		return;
	case S_GREETING:
	case S_TLS:
		return;		/* input waits in the buffer */
	case S_CLOSING:
		evbuffer_drain(conn_input(s->conn),
		    evbuffer_get_length(conn_input(s->conn)));
		return;
	default:
		phase_progress(s);
		session_run(s);		/* never frees s (closing is deferred) */
		s->input_seen = evbuffer_get_length(conn_input(s->conn));
	}
}

static void
event_cb(void *arg, int what)
{
	struct session *s = arg;

	if ((what & (CONN_EOF | CONN_ERROR)) && s->state == S_TLS) {
		log_info("%s: TLS handshake with %s failed: %s", s->id,
		    s->peer_ip, (what & CONN_EOF) ? "connection closed" :
		    conn_tls_error(s->conn));
		session_free(&s);
		return;
	}
	if (what & (CONN_EOF | CONN_ERROR)) {
		if (s->tx.state == TX_CONTENT || s->tx.state == TX_FINAL)
			log_info("%s: client %s during %s, message abandoned",
			    s->id, (what & CONN_EOF) ? "disconnected" :
			    "connection error", s->tx.state == TX_CONTENT ?
			    "content" : "final reply");
		else if (s->state != S_CLOSING)
			log_debug("%s: client disconnected", s->id);
		session_free(&s);
		return;
	}
	if (what & CONN_TIMEOUT) {
		session_timeout(s, "no input");
		return;
	}
	if (what & CONN_TLS_READY) {
		tls_describe(conn_ssl(s->conn), s->tls_desc, sizeof(s->tls_desc));
		if (!tls_peer_subject(conn_ssl(s->conn), s->tls_subject,
		    sizeof(s->tls_subject)))
			s->tls_subject[0] = '\0';
		if (!tls_peer_cn(conn_ssl(s->conn), s->tls_cn, sizeof(s->tls_cn)))
			s->tls_cn[0] = '\0';
		s->tls = 1;
		log_info("%s: TLS %s%s%s", s->id, s->tls_desc,
		    s->tls_subject[0] ? ", client certificate " : "",
		    s->tls_subject);
		audit_session_tls(s);
		if (s->greet_after_tls) {
			s->greet_after_tls = 0;
			start_greeting(s);
			return;
		}
		session_enter_state(s, S_COMMAND);
		session_run(s);
		return;
	}
	if ((what & CONN_DRAINED) && s->starttls_pending &&
	    conn_pending_output(s->conn) == 0) {
		begin_tls(s);
		return;
	}
	if ((what & (CONN_DEFERRED | CONN_DRAINED)) && s->state == S_CLOSING &&
	    conn_pending_output(s->conn) == 0)
		session_free(&s);
}

/* rate_limits at connect (limits_connect): refused, the 421 goes out and
 * the session closes; admitted, it goes on with next. */
static int
admit_refused(struct session *s, int refused)
{
	if (!refused)
		return 0;
	session_flush(s);
	return 1;
}

static void
admitted_then_start(struct session *s, int refused)
{
	if (!admit_refused(s, refused))
		start_greeting(s);
}

static void
admitted_then_greet(struct session *s, int refused)
{
	if (!admit_refused(s, refused))
		session_greet(s);
}

static void
session_admit(struct session *s, limits_done_fn next)
{
	switch (limits_connect(s, next)) {
	case LIMITS_WAIT:
		session_enter_state(s, S_GREETING);	/* input waits */
		break;
	case LIMITS_REFUSED:
		next(s, 1);
		break;
	case LIMITS_GO:
		next(s, 0);
		break;
	}
}

static void
session_greet(struct session *s)
{
	session_enter_state(s, S_COMMAND);
	session_reply(s, R_GREETING, s->conf->server_name);
	session_run(s);		/* input may already be waiting */
}

/* libevent runs a reverse lookup's callback deferred, from the event loop:
 * after evdns_cancel_request() (DNS_ERR_CANCEL), and also with the answer
 * when it had already arrived (then cancelling does nothing).  Either way
 * it can come after session_free(), so the callback gets this, not the
 * session, and frees it; session_free() only clears s. */
struct dns_wait {
	struct session *s;		/* NULL once the session is gone */
};

static void
dns_reverse_cb(int result, char type, int count, int ttl, void *addrs,
	       void *arg)
{
	struct dns_wait *dw = arg;
	struct session *s = dw->s;

	(void)ttl;
	free(dw);
	if (s == NULL || result == DNS_ERR_CANCEL)
		return;			/* the session is gone */
	s->dns_wait = NULL;
	s->dns_req = NULL;
	if (result == DNS_ERR_NONE && type == DNS_PTR && count > 0) {
		const char *name = *(char **)addrs;
		if (smtp_helo_valid(name))
			s->rdns = strdup(name);
	}
	if (s->rdns == NULL)
		s->rdns = strdup("unknown");
	session_greet(s);
}

static void
start_greeting(struct session *s)
{
	if (s->lc->kind == LISTENER_SUBMISSIONS && !s->tls) {
		/* RFC 8314: TLS from the first byte (after a PROXY header) */
		s->greet_after_tls = 1;
		begin_tls(s);
		return;
	}
	if (s->worker->dns != NULL && (s->peer.ss_family == AF_INET ||
	    s->peer.ss_family == AF_INET6) &&
	    (s->dns_wait = malloc(sizeof(*s->dns_wait))) != NULL) {
		s->dns_wait->s = s;
		session_enter_state(s, S_GREETING);
		if (s->peer.ss_family == AF_INET)
			s->dns_req = evdns_base_resolve_reverse(s->worker->dns,
			    &((struct sockaddr_in *)&s->peer)->sin_addr, 0,
			    dns_reverse_cb, s->dns_wait);
		else
			s->dns_req = evdns_base_resolve_reverse_ipv6(s->worker->dns,
			    &((struct sockaddr_in6 *)&s->peer)->sin6_addr, 0,
			    dns_reverse_cb, s->dns_wait);
		if (s->dns_req != NULL)
			return;
		free(s->dns_wait);	/* not submitted: no callback */
		s->dns_wait = NULL;
	}
	session_greet(s);
}

struct session *
session_new(struct worker *w, const struct conf_listener *lc,
	    evutil_socket_t fd, const struct sockaddr *peer, socklen_t peerlen)
{
	struct session *s = calloc(1, sizeof(*s));
	socklen_t llen = sizeof(s->local);

	if (s == NULL)
		return NULL;
	s->worker = w;
	s->conf = w->conf;
	s->lc = lc;
	s->state = S_COMMAND;
	s->audit_close = R_REPLY_COUNT;
	s->lmtp = lc->kind == LISTENER_LMTP;
	util_session_id(s->id);
	memcpy(&s->peer, peer, peerlen < sizeof(s->peer) ? peerlen : sizeof(s->peer));
	getsockname(fd, (struct sockaddr *)&s->local, &llen);
	util_sockaddr_ip((const struct sockaddr *)&s->peer, s->peer_ip,
	    sizeof(s->peer_ip), &s->peer_port);
	util_sockaddr_ip((const struct sockaddr *)&s->local, s->local_ip,
	    sizeof(s->local_ip), &s->local_port);
	if (s->peer.ss_family == AF_UNIX)
		snprintf(s->peer_ip, sizeof(s->peer_ip), "127.0.0.1");
	s->line_cap = s->conf->limits.max_line_length;
	s->line = malloc(s->line_cap + 1);
	s->scratch = malloc(s->line_cap + 1);
	s->content = evbuffer_new();
	s->chunk = evbuffer_new();
	{
		static const struct conn_cbs io_cbs = { read_cb, event_cb };

		s->conn = conn_new(w->base, fd, &io_cbs, s);
	}
	if (s->line == NULL || s->scratch == NULL || s->content == NULL ||
	    s->chunk == NULL || s->conn == NULL) {
		if (s->conn == NULL)
			close(fd);
		session_free(&s);
		return NULL;
	}
	tx_reset(s);
	smtp_auth_session_init(s);
	/* Read up to a buffer's worth at once; stop reading while that much
	 * input waits unprocessed. */
	conn_set_read_size(s->conn, s->conf->limits.session_buffer);
	conn_set_max_input(s->conn, s->conf->limits.session_buffer);
	TAILQ_INSERT_TAIL(&w->sessions, s, entry);
	w->session_count++;
	log_info("%s: connect from %s:%d to %s (%s)", s->id, s->peer_ip,
	    s->peer_port, lc->name, conf_listener_kind_name(lc->kind));
	if (lc->proxy_protocol) {
		/* A unix socket's peers are vouched for by its permissions. */
		if (s->peer.ss_family != AF_UNIX && !conf_cidr_match_any(lc->proxy_from, lc->proxy_from_count,
		    (const struct sockaddr *)&s->peer)) {
			log_warn("%s: %s may not send a PROXY header on %s: "
			    "dropped", s->id, s->peer_ip, lc->name);
			session_free(&s);
			return NULL;
		}
		s->state = S_PROXY_HDR;
		set_timeout(s);
		return s;
	}
	audit_session_open(s, NULL, 0);
	set_timeout(s);
	session_admit(s, admitted_then_start);
	return s;
}

void
session_shutdown(struct session *s, int force)
{
	if (s->state == S_CLOSING)
		return;
	if (force) {
		if (s->tx.state == TX_CONTENT)
			session_abort_backend_tx(s);
		session_reply(s, R_SHUTDOWN);
		session_flush(s);
		return;
	}
	s->quit_after_tx = 1;
	if (s->state == S_COMMAND && s->outstanding == 0 &&
	    s->tx.state == TX_NONE && !s->have_line) {
		session_reply(s, R_SHUTDOWN);
		session_flush(s);
	} else if (s->state == S_PROXY_HDR || s->state == S_GREETING) {
		session_free(&s);
	}
}

void
session_free(struct session **sp)
{
	struct session *s = *sp;

	if (s == NULL)
		return;
	*sp = NULL;
	if (s->dns_wait != NULL) {
		/* the callback still runs (deferred) and frees dns_wait */
		s->dns_wait->s = NULL;
		evdns_cancel_request(s->worker->dns, s->dns_req);
	}
	if (s->be != NULL) {
		if (s->tx.state == TX_NONE)
			backend_quit(s->be);
		backend_free(&s->be);
	}
	log_debug("%s: disconnect, %u message(s)", s->id, s->messages);
	limits_session_end(s);
	tx_reset(s);
	if (s->burl_timer != NULL)
		event_free(s->burl_timer);
	audit_session_close(s);
	smtp_auth_session_free(s);
	if (s->line != NULL)
		explicit_bzero(s->line, s->line_cap + 1);	/* may have held AUTH data */
	conn_free(&s->conn);
	if (s->content != NULL)
		evbuffer_free(s->content);
	if (s->chunk != NULL)
		evbuffer_free(s->chunk);
	free(s->line);
	free(s->scratch);
	free(s->rdns);
	/* last: nothing above may start a phase again (s->conn is gone) */
	if (s->phase_timer != NULL)
		event_free(s->phase_timer);
	if (s->worker != NULL && s->entry.tqe_prev != NULL)
		worker_session_closed(s->worker, s);
	free(s);
}
