/*
 * smtp_cmds.c - the SMTP commands: one table, one handler per verb.
 *
 * The table says what a command needs before it may run (a greeting, no
 * open transaction, ...); the handler does it.  EHLO's capability list is
 * built from the same facts the handlers check (ehlo_caps()), so what we
 * advertise and what we accept never disagree.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "audit.h"
#include "conf.h"
#include "log.h"
#include "session.h"
#include "smtp_auth.h"
#include "smtp_etrn.h"
#include "util.h"
#include "worker.h"
#include "burl.h"
#include "burl_access.h"
#include "burl_policy.h"
#include "imapurl.h"
#include "rate_limits.h"

enum cmd_flags {
	CMD_NEEDS_HELO = 1 << 0,	/* 503 before EHLO/HELO/LHLO */
	CMD_NO_ARGS = 1 << 1,		/* 501 if arguments are given */
	CMD_BAD = 1 << 2,		/* counts as a client error */
};

struct cmd_def {
	unsigned flags;
	void (*run)(struct session *s, char *args);
};

/* What the client may use, derived from our config and the backend's EHLO. */
enum ehlo_cap {
	EC_SMTPUTF8 = 1 << 0,
	EC_DSN = 1 << 1,
	EC_BINARYMIME = 1 << 2,
};

static unsigned
ehlo_caps(const struct session *s)
{
	const struct backend_caps *bc = session_caps(s);
	unsigned caps = 0;

	if (bc == NULL)
		return 0;
	if (bc->flags & CAP_SMTPUTF8)
		caps |= EC_SMTPUTF8;
	if (bc->flags & CAP_DSN)
		caps |= EC_DSN;
	/* BINARYMIME needs BDAT all the way (RFC 3030 3). */
	if ((bc->flags & CAP_BINARYMIME) && (bc->flags & CAP_CHUNKING) &&
	    s->conf->backend.use_chunking)
		caps |= EC_BINARYMIME;
	return caps;
}

static uint64_t
advertised_size(const struct session *s)
{
	const struct backend_caps *bc = session_caps(s);
	uint64_t size = s->conf->limits.max_message_size;

	if (bc != NULL && bc->size > 0 && bc->size < size)
		size = bc->size;
	return size;
}

/* EHLO, HELO and LHLO reset the transaction (RFC 5321 4.1.4). */
static void
greeting_reset(struct session *s)
{
	if (s->tx.state != TX_NONE) {
		session_abort_backend_tx(s);
		tx_reset(s);
	}
}

static int
greeting_common(struct session *s, char *args, enum helo_kind kind)
{
	if (!smtp_helo_valid(args)) {
		session_bad_command(s, R_SYNTAX);
		return -1;
	}
	greeting_reset(s);
	snprintf(s->helo, sizeof(s->helo), "%s", args);
	s->helo_kind = kind;
	return 0;
}

/* The same predicate decides what EHLO says and what STARTTLS accepts. */
static int
starttls_offered(const struct session *s)
{
	return !s->tls && s->lc->starttls && worker_tls != NULL;
}

static void
ehlo_reply(struct session *s)
{
	struct evbuffer *out = session_output(s);
	unsigned caps = ehlo_caps(s);

	/* RFC 2034 3: no enhanced codes in the EHLO reply. */
	evbuffer_add_printf(out, "250-%s\r\n", s->conf->server_name);
	evbuffer_add_printf(out, "250-PIPELINING\r\n250-SIZE %llu\r\n",
	    (unsigned long long)advertised_size(s));
	evbuffer_add(out, "250-8BITMIME\r\n", 14);
	if (caps & EC_BINARYMIME)
		evbuffer_add(out, "250-BINARYMIME\r\n", 16);
	if (caps & EC_DSN)
		evbuffer_add(out, "250-DSN\r\n", 9);
	if (caps & EC_SMTPUTF8)
		evbuffer_add(out, "250-SMTPUTF8\r\n", 14);
	if (smtp_etrn_offered(s))
		evbuffer_add(out, "250-ETRN\r\n", 10);
	if (starttls_offered(s))
		evbuffer_add(out, "250-STARTTLS\r\n", 14);
	if (!s->auth && auth_mechanisms(s)[0] != '\0')
		evbuffer_add_printf(out, "250-AUTH %s\r\n", auth_mechanisms(s));
	{
		char types[512];

		if (smtp_burl_ehlo_types(s, types, sizeof(types)))
			evbuffer_add_printf(out, "250-BURL %s\r\n", types);
	}
	evbuffer_add(out, "250-ENHANCEDSTATUSCODES\r\n", 25);
	evbuffer_add(out, "250 CHUNKING\r\n", 14);
}

static void
cmd_ehlo(struct session *s, char *args)
{
	if (s->lmtp) {
		session_bad_command(s, R_HELO_IN_LMTP);
		return;
	}
	if (greeting_common(s, args, HELO_EHLO) == 0)
		ehlo_reply(s);
}

static void
cmd_lhlo(struct session *s, char *args)
{
	if (!s->lmtp) {
		session_bad_command(s, R_LHLO_IN_SMTP);
		return;
	}
	if (greeting_common(s, args, HELO_LHLO) == 0)
		ehlo_reply(s);
}

static void
cmd_helo(struct session *s, char *args)
{
	if (s->lmtp) {
		session_bad_command(s, R_HELO_IN_LMTP);
		return;
	}
	if (greeting_common(s, args, HELO_HELO) == 0)
		evbuffer_add_printf(session_output(s), "250 %s\r\n",
		    s->conf->server_name);
}

static int
has_8bit(const char *p)
{
	for (; *p; p++)
		if ((unsigned char)*p > 127)
			return 1;
	return 0;
}

/* Append " KEY[=VALUE]" to out at *o; -1 if it does not fit.  We rebuild
 * the parameters we pass on rather than forward the client's text. */
static int
append_param(char *out, size_t outsize, size_t *o, const char *k,
	     const char *v)
{
	int n = snprintf(out + *o, outsize - *o, " %s%s%s", k, v ? "=" : "",
	    v ? v : "");

	if (n < 0 || (size_t)n >= outsize - *o)
		return -1;
	*o += (size_t)n;
	return 0;
}

/*
 * Check MAIL's parameters and rebuild the ones we pass on in params_out.
 * Returns R_REPLY_COUNT when fine, else the reply to give.
 */
static enum smtp_reply_id
mail_params(struct session *s, const struct smtp_path_args *pa,
	    char *params_out, size_t outsize)
{
	unsigned caps = ehlo_caps(s);
	int seen_size = 0, seen_body = 0, seen_utf8 = 0, seen_ret = 0,
	    seen_envid = 0, seen_auth = 0;
	size_t i, o = 0;

	params_out[0] = '\0';
	for (i = 0; i < pa->param_count; i++) {
		const char *k = pa->params[i].key, *v = pa->params[i].value;
		int pass = 1;

		if (strcasecmp(k, "SIZE") == 0) {
			/* RFC 1870: SIZE=digits */
			char *end;
			unsigned long long n;

			if (seen_size++ || v == NULL || strlen(v) > 20)
				return R_SYNTAX;
			n = strtoull(v, &end, 10);
			if (*end != '\0' || v[0] < '0' || v[0] > '9')
				return R_SYNTAX;
			/* against what EHLO advertised: ours or the
			 * backend's, whichever is smaller */
			if (n > advertised_size(s))
				return R_SIZE_EXCEEDED;
		} else if (strcasecmp(k, "BODY") == 0) {
			if (seen_body++ || v == NULL)
				return R_SYNTAX;
			if (strcasecmp(v, "BINARYMIME") == 0) {
				if (!(caps & EC_BINARYMIME))
					return R_PARAM_UNKNOWN;
				s->tx.binary = 1;
			} else if (strcasecmp(v, "7BIT") != 0 &&
			    strcasecmp(v, "8BITMIME") != 0) {
				return R_SYNTAX;
			}
		} else if (strcasecmp(k, "SMTPUTF8") == 0) {
			if (seen_utf8++ || v != NULL)
				return R_SYNTAX;
			if (!(caps & EC_SMTPUTF8))
				return R_SMTPUTF8_UNAVAIL;
			s->tx.smtputf8 = 1;
		} else if (strcasecmp(k, "RET") == 0) {
			if (!(caps & EC_DSN))
				return R_PARAM_UNKNOWN;
			if (seen_ret++ || v == NULL || (strcasecmp(v, "FULL") != 0 &&
			    strcasecmp(v, "HDRS") != 0))
				return R_SYNTAX;
		} else if (strcasecmp(k, "ENVID") == 0) {
			if (!(caps & EC_DSN))
				return R_PARAM_UNKNOWN;
			if (seen_envid++ || v == NULL || strlen(v) > 100 ||
			    !smtp_xtext_valid(v))
				return R_SYNTAX;
		} else if (strcasecmp(k, "AUTH") == 0) {
			/* RFC 4954 5: the client's claim is not passed on;
			 * the proxy vouches for identities itself. */
			if (seen_auth++ || v == NULL || !smtp_xtext_valid(v))
				return R_SYNTAX;
			pass = 0;
		} else {
			return R_PARAM_UNKNOWN;
		}
		if (pass && append_param(params_out, outsize, &o, k, v) < 0)
			return R_SYNTAX;
	}
	return R_REPLY_COUNT;
}

static void
cmd_mail(struct session *s, char *args)
{
	struct smtp_path_args pa;
	char params[512];
	enum smtp_parse_error pe;
	enum smtp_reply_id r;

	if (s->tx.state != TX_NONE) {
		session_bad_command(s, R_SEQ_NESTED_MAIL);
		return;
	}
	if (s->lc->require_auth && !s->auth) {
		session_reply(s, R_AUTH_REQUIRED);
		return;
	}
	/* Parse with UTF-8 allowed, then insist on SMTPUTF8 if it is used. */
	pe = smtp_parse_path_args(args, "FROM:", 1, 1, &pa);
	if (pe == SMTP_PARSE_BAD_PATH) {
		session_bad_command(s, R_SYNTAX_PATH);
		return;
	}
	if (pe != SMTP_PARSE_OK) {
		session_bad_command(s, R_SYNTAX);
		return;
	}
	tx_reset(s);
	r = mail_params(s, &pa, params, sizeof(params));
	if (r == R_REPLY_COUNT && has_8bit(pa.path) && !s->tx.smtputf8)
		r = R_SYNTAX_PATH;
	if (r != R_REPLY_COUNT) {
		tx_reset(s);
		if (r == R_SIZE_EXCEEDED || r == R_SMTPUTF8_UNAVAIL)
			session_reply(s, r);
		else
			session_bad_command(s, r);
		return;
	}
	if (s->auth && !smtp_sender_allowed(s, pa.path)) {
		char clean[300];

		log_info("%s: sender <%s> refused for %s", s->id,
		    log_sanitize(clean, sizeof(clean), pa.path, strlen(pa.path)),
		    s->identity);
		audit_policy(s, "sender_denied", R_SENDER_DENIED, "mail_from",
		    pa.path);
		tx_reset(s);
		session_reply(s, R_SENDER_DENIED, s->identity);
		return;
	}
	if (limits_mail_refused(s, &pa)) {	/* rate_limits: reply given */
		tx_reset(s);
		return;
	}
	if (s->auth) {
		/* RFC 4954 5: tell the backend who submitted when it
		 * understands AUTH; also alongside XCLIENT, which the backend
		 * may refuse after this MAIL was queued (backend.c) */
		const struct backend_caps *bc = session_caps(s);

		if (bc != NULL && (bc->flags & CAP_AUTH)) {
			size_t o = strlen(params);
			char x[300];

			util_xtext_encode(s->identity, x, sizeof(x));
			snprintf(params + o, sizeof(params) - o, " AUTH=%s", x);
		}
	}
	if (!audit_accepting()) {
		/* nothing is accepted that the audit log cannot show */
		tx_reset(s);
		session_reply(s, R_AUDIT_UNAVAIL);
		return;
	}
	if (session_backend(s) < 0) {
		tx_reset(s);
		session_reply(s, R_LOCAL_ERROR);
		return;
	}
	s->tx.from = strdup(pa.path);
	util_session_id(s->tx.id);
	s->tx.t_start_ms = util_now_ms();
	s->tx.state = TX_ENVELOPE;
	audit_tx_start(s);
	s->outstanding++;
	backend_send(s->be, TAG(TAG_MAIL, s->tx.gen, 0), "MAIL FROM:<%s>%s",
	    pa.path, params);
}

static enum smtp_reply_id
rcpt_params(struct session *s, const struct smtp_path_args *pa,
	    char *params_out, size_t outsize)
{
	unsigned caps = ehlo_caps(s);
	int seen_notify = 0, seen_orcpt = 0;
	size_t i, o = 0;

	params_out[0] = '\0';
	for (i = 0; i < pa->param_count; i++) {
		const char *k = pa->params[i].key, *v = pa->params[i].value;

		if (strcasecmp(k, "NOTIFY") == 0) {
			/* RFC 3461 4.1: NEVER, or a list of SUCCESS/FAILURE/DELAY */
			char buf[64], *tok, *save = NULL;

			if (!(caps & EC_DSN))
				return R_PARAM_UNKNOWN;
			if (seen_notify++ || v == NULL || strlen(v) >= sizeof(buf))
				return R_SYNTAX;
			snprintf(buf, sizeof(buf), "%s", v);
			if (strcasecmp(buf, "NEVER") != 0) {
				for (tok = strtok_r(buf, ",", &save); tok != NULL;
				    tok = strtok_r(NULL, ",", &save))
					if (strcasecmp(tok, "SUCCESS") != 0 &&
					    strcasecmp(tok, "FAILURE") != 0 &&
					    strcasecmp(tok, "DELAY") != 0)
						return R_SYNTAX;
				if (v[strlen(v) - 1] == ',' || v[0] == ',')
					return R_SYNTAX;
			}
		} else if (strcasecmp(k, "ORCPT") == 0) {
			/* addr-type ";" xtext */
			const char *semi;

			if (!(caps & EC_DSN))
				return R_PARAM_UNKNOWN;
			if (seen_orcpt++ || v == NULL || strlen(v) > 500 ||
			    (semi = strchr(v, ';')) == NULL || semi == v ||
			    !smtp_xtext_valid(semi + 1))
				return R_SYNTAX;
		} else {
			return R_PARAM_UNKNOWN;
		}
		if (append_param(params_out, outsize, &o, k, v) < 0)
			return R_SYNTAX;
	}
	return R_REPLY_COUNT;
}

/*
 * Everything RCPT checks before it is forwarded.  Returns R_REPLY_COUNT if
 * it goes to the backend, else the reply to give; *bad_r says whether that
 * counts as a client error.
 */
static enum smtp_reply_id
rcpt_check(struct session *s, char *args, struct smtp_path_args *pa,
	   char *params, size_t paramsize, int *bad_r)
{
	struct tx *tx = &s->tx;
	enum smtp_parse_error pe;
	enum smtp_reply_id r;

	*bad_r = 1;
	if (tx->state != TX_ENVELOPE)
		return tx->state == TX_NONE ? R_SEQ_NEED_MAIL : R_SEQ_NESTED_MAIL;
	pe = smtp_parse_path_args(args, "TO:", 0, tx->smtputf8, pa);
	if (pe == SMTP_PARSE_BAD_PATH)
		return R_SYNTAX_RCPT;
	if (pe != SMTP_PARSE_OK)
		return R_SYNTAX;
	r = rcpt_params(s, pa, params, paramsize);
	if (r != R_REPLY_COUNT)
		return r;
	*bad_r = 0;
	if (tx->rcpt_count >= s->conf->limits.max_recipients)
		return R_TOO_MANY_RCPTS;
	if ((r = limits_rcpt_check(s)) != R_REPLY_COUNT)
		return r;		/* recipients_per_identity */
	if (s->be == NULL)
		return R_BACKEND_LOST;	/* the backend went away since MAIL */
	return R_REPLY_COUNT;
}

static void
cmd_rcpt(struct session *s, char *args)
{
	struct smtp_path_args pa;
	char params[600];
	enum smtp_reply_id r;
	struct tx *tx = &s->tx;
	char **nr;
	uint8_t *nok;
	int bad;

	r = rcpt_check(s, args, &pa, params, sizeof(params), &bad);
	if (r != R_REPLY_COUNT) {
		if (bad)
			session_bad_command(s, r);
		else
			session_reply(s, r);
		return;
	}
	nr = realloc(tx->rcpts, (tx->rcpt_count + 1) * sizeof(*nr));
	if (nr == NULL) {
		session_reply(s, R_LOCAL_ERROR);
		return;
	}
	tx->rcpts = nr;
	nok = realloc(tx->rcpt_ok, tx->rcpt_count + 1);
	if (nok == NULL) {
		session_reply(s, R_LOCAL_ERROR);
		return;
	}
	tx->rcpt_ok = nok;
	tx->rcpts[tx->rcpt_count] = strdup(pa.path);
	tx->rcpt_ok[tx->rcpt_count] = 0;
	if (tx->rcpts[tx->rcpt_count] == NULL) {
		session_reply(s, R_LOCAL_ERROR);
		return;
	}
	s->outstanding++;
	backend_send(s->be, TAG(TAG_RCPT, tx->gen, tx->rcpt_count),
	    "RCPT TO:<%s>%s", pa.path, params);
	tx->rcpt_count++;
}

/* Shared by DATA and the first BDAT: is there a transaction to fill? */
static enum smtp_reply_id
content_allowed(struct session *s)
{
	struct tx *tx = &s->tx;

	if (tx->state == TX_NONE)
		return R_SEQ_NEED_MAIL;
	if (tx->rcpt_count == 0)
		return R_SEQ_NEED_RCPT;
	if (tx->rcpt_accepted == 0)
		return R_NO_VALID_RCPT;
	if (s->be == NULL)
		return R_BACKEND_LOST;
	return R_REPLY_COUNT;
}

static int
use_backend_bdat(struct session *s)
{
	return s->conf->backend.use_chunking && s->be != NULL &&
	    backend_is_ready(s->be) &&
	    (backend_caps(s->be)->flags & CAP_CHUNKING);
}

static void
cmd_data(struct session *s, char *args)
{
	struct tx *tx = &s->tx;
	enum smtp_reply_id r;

	if (tx->client_bdat || tx->state == TX_FAILED) {
		session_bad_command(s, R_SEQ_DATA_BDAT);
		return;
	}
	r = content_allowed(s);
	if (r == R_REPLY_COUNT && tx->binary)
		r = R_SEQ_DATA_BDAT;	/* RFC 3030 3: BINARYMIME needs BDAT */
	if (r != R_REPLY_COUNT) {
		if (r == R_NO_VALID_RCPT || r == R_BACKEND_LOST) {
			session_reply(s, r);
			if (r == R_BACKEND_LOST)
				tx_reset(s);
		} else {
			session_bad_command(s, r);
		}
		return;
	}
	tx->backend_bdat = use_backend_bdat(s);
	if (tx->backend_bdat) {
		session_reply(s, R_DATA_GO);
		session_begin_content(s, S_DATA);
	} else {
		s->outstanding++;
		s->await_data_go = 1;
		backend_send(s->be, TAG(TAG_DATA_CMD, tx->gen, 0), "DATA");
	}
}

static void
cmd_bdat(struct session *s, char *args)
{
	struct tx *tx = &s->tx;
	uint64_t size;
	int last;
	enum smtp_reply_id r;

	if (smtp_parse_bdat(args, &size, &last) < 0) {
		/* We cannot know how many octets follow: the bytes will be
		 * read as commands and fail as such. */
		session_bad_command(s, R_SYNTAX);
		return;
	}
	if (tx->state == TX_FAILED) {
		session_reply(s, R_SEQ_BDAT_FAILED);
		session_bdat_start_chunk(s, size, last, 1);
		return;
	}
	if (tx->state == TX_CONTENT && tx->client_bdat) {
		/* a further chunk of the message */
		audit_tx_content(s, "BDAT");
		if (tx->discard) {
			session_bdat_start_chunk(s, size, last, 0);
			return;
		}
		session_bdat_start_chunk(s, size, last, 0);
		return;
	}
	r = tx->client_bdat ? R_SEQ_DATA_BDAT : content_allowed(s);
	if (r != R_REPLY_COUNT) {
		/* The reply now; the chunk is read and dropped (RFC 3030 2). */
		if (r == R_NO_VALID_RCPT || r == R_BACKEND_LOST)
			session_reply(s, r);
		else
			session_bad_command(s, r);
		if (s->state != S_CLOSING)
			session_bdat_start_chunk(s, size, last, 1);
		return;
	}
	tx->client_bdat = 1;
	tx->backend_bdat = use_backend_bdat(s);
	tx->bdat_remaining = size;
	tx->bdat_chunk_size = size;
	tx->bdat_last = last;
	if (tx->backend_bdat) {
		session_begin_content(s, S_BDAT);
	} else {
		/* A DATA backend: its 354 first (be_on_reply starts the
		 * chunk); until then the chunk waits in the input buffer. */
		s->outstanding++;
		s->await_data_go = 1;
		backend_send(s->be, TAG(TAG_DATA_CMD, tx->gen, 0), "DATA");
	}
}

/*
 * BURL <url> [LAST] (RFC 4468): a part of the message by reference.  The
 * checks, in order: the listener, whether BURL is on, the syntax, the
 * transaction, then the policy -- BURL_ACCESS (trust/burl_access.h) or the
 * built-in rule (trust/burl_policy.h) -- and the trusted server set, all
 * before any connection to an IMAP server is made.
 */

/* The session's side of the BURL_ACCESS probe. */
static void
burl_access_input(const struct session *s, struct burl_access_in *in)
{
	memset(in, 0, sizeof(*in));
	in->server_addr = s->local_ip[0] ? s->local_ip : NULL;
	in->server_port = (unsigned)s->local_port;
	in->client_addr = s->peer_ip;
	in->client_port = (unsigned)s->peer_port;
	in->channel = s->lc->name;
	in->identity = s->auth ? s->identity : "";
	in->sasl = s->auth;
	in->tls = s->tls;
}

int
smtp_burl_ehlo_types(const struct session *s, char *types, size_t size)
{
	struct burl_access_in in;

	if (!session_burl_offered(s))
		return 0;
	if (s->conf->burl.access == NULL) {
		/* RFC 4468 3: "imap", and the host form for each server we
		 * have a trust relationship with for plain URLs */
		size_t i, n;

		n = (size_t)snprintf(types, size, "imap");
		for (i = 0; i < s->conf->burl.server_count && n < size; i++)
			if (s->conf->burl.servers[i].mode == CONF_IMAP_MODE_PROXY_AUTH)
				n += (size_t)snprintf(types + n, size - n,
				    " imap://%s", s->conf->burl.servers[i].authority);
		return 1;
	}
	burl_access_input(s, &in);
	return burl_access_ehlo(&s->conf->burl, &in, types, size);
}

/* Decide with the BURL_ACCESS table; *u may be replaced ($D). */
static void
burl_decide_table(struct session *s, const char *url, struct imapurl *u,
		  struct burl_verdict *v, char **url_out)
{
	struct burl_access_in in;
	struct burl_access_verdict *av;
	int i;

	memset(v, 0, sizeof(*v));
	v->tls = -1;
	av = malloc(sizeof(*av));
	if (av == NULL) {
		v->reply = R_LOCAL_ERROR;
		snprintf(v->reason, sizeof(v->reason), "out of memory");
		return;
	}
	burl_access_input(s, &in);
	burl_access_check(&s->conf->burl, &in, url, av);
	snprintf(v->reason, sizeof(v->reason), "%s", av->why);
	if (!av->allowed) {
		v->reply = av->reply;
		snprintf(v->reply_text, sizeof(v->reply_text), "%s",
		    av->reply_text);
		v->disconnect = av->disconnect;
		goto out;
	}
	if (av->rewritten) {
		const char *err;
		char red[300];

		imapurl_redact(av->url, strlen(av->url), red, sizeof(red));
		log_info("%s: BURL_ACCESS $D: URL rewritten to %s", s->id, red);
		if (imapurl_parse(av->url, strlen(av->url), u, &err) != IMAPURL_OK) {
			v->reply = R_BURL_FETCH_FAILED;
			snprintf(v->reason, sizeof(v->reason), "$D URL: %s", err);
			goto out;
		}
		*url_out = strdup(av->url);
		if (*url_out == NULL) {
			v->reply = R_LOCAL_ERROR;
			goto out;
		}
	}
	if (av->use_mailhost) {
		/* the server is the user's mailHost: looked up next
		 * (session_burl_mailhost), then checked like any other */
		if (burl_worker_mailhost(s->worker->burl) == NULL) {
			v->reply = R_BURL_NO_MAILHOST;
			snprintf(v->reason, sizeof(v->reason), "%.150s: $M but no "
			    "mailHost directory is configured", av->why);
			goto out;
		}
		v->allowed = 1;
		v->mailhost = 1;
		v->tls = av->force_tls ? 1 : av->no_tls ? 0 : -1;
		goto out;
	}
	i = burl_find_server(&s->conf->burl, u);
	if (i < 0) {
		v->reply = R_BURL_NO_TRUST;
		snprintf(v->reason, sizeof(v->reason), "%.140s: no trust "
		    "relationship with %.60s", av->why, u->host);
		goto out;
	}
	burl_server_check(&s->conf->burl, (size_t)i, u, time(NULL), v);
	if (v->allowed)
		snprintf(v->reason, sizeof(v->reason), "%s", av->why);
	v->tls = av->force_tls ? 1 : av->no_tls ? 0 : -1;
out:
	free(av);
}

void
smtp_burl_refuse(struct session *s, const struct burl_verdict *v)
{
	char clean[300];

	log_info("%s: BURL %s by %s refused: %s", s->id, s->tx.burl_log_url,
	    s->identity[0] ? s->identity : "-",
	    log_sanitize(clean, sizeof(clean), v->reason, strlen(v->reason)));
	audit_event("burl_denied", s, AUDIT_STR("url", s->tx.burl_log_url),
	    AUDIT_STR("policy", s->conf->burl.access != NULL ? "burl_access" :
	    "built-in"), AUDIT_STR("reason", v->reason),
	    AUDIT_STR("reply", v->reply_text[0] ? v->reply_text :
	    smtp_reply_text(v->reply)), AUDIT_END);
	if (v->reply_text[0] != '\0')
		evbuffer_add_printf(session_output(s), "%s\r\n", v->reply_text);
	else
		session_reply(s, v->reply);
	if (v->disconnect) {
		log_info("%s: BURL_ACCESS forced disconnect", s->id);
		session_reply(s, R_BURL_FORCED_DISCONNECT);
		return;
	}
	if (++s->bad_burls >= s->conf->burl.max_bad_burl) {
		log_info("%s: %u failed BURL commands (burl.max_bad_burl): "
		    "disconnecting", s->id, s->bad_burls);
		session_reply(s, R_BURL_TOO_MANY);
	}
}

static void
cmd_burl(struct session *s, char *args)
{
	struct tx *tx = &s->tx;
	struct imapurl *u = NULL;
	struct burl_verdict v;
	enum smtp_reply_id seq = R_REPLY_COUNT;
	enum imapurl_error e;
	const char *err;
	char *url = args, *end, *p, *rewritten = NULL;
	int last = 0;

	if (s->lmtp || s->lc->kind == LISTENER_LMTP) {
		session_bad_command(s, R_BURL_LMTP);
		return;
	}
	if (s->lc->kind != LISTENER_SUBMISSION &&
	    s->lc->kind != LISTENER_SUBMISSIONS) {
		session_bad_command(s, R_BURL_NOT_SUBMISSION);
		return;
	}
	if (!s->conf->burl.enabled) {
		session_bad_command(s, R_BURL_NOT_ENABLED);
		return;
	}
	if (s->conf->burl.require_auth && !s->auth) {
		session_bad_command(s, R_AUTH_REQUIRED);
		return;
	}
	if (s->conf->burl.require_tls && !s->tls) {
		session_bad_command(s, R_BURL_NOT_ENABLED);
		return;
	}
	/* syntax: one URL, then optionally LAST, nothing else */
	end = url + strcspn(url, " ");
	p = end;
	while (*p == ' ')
		p++;
	if (*p != '\0') {
		if (strncasecmp(p, "LAST", 4) != 0 || (p[4] != '\0' &&
		    p[4 + strspn(p + 4, " ")] != '\0')) {
			session_bad_command(s, R_SYNTAX);
			return;
		}
		last = 1;
	}
	*end = '\0';
	if (*url == '\0') {
		session_bad_command(s, R_SYNTAX);
		return;
	}
	u = malloc(sizeof(*u));
	if (u == NULL) {
		session_reply(s, R_LOCAL_ERROR);
		return;
	}
	e = imapurl_parse(url, strlen(url), u, &err);
	imapurl_redact(url, strlen(url), tx->burl_log_url,
	    sizeof(tx->burl_log_url));
	if (e != IMAPURL_OK) {
		log_info("%s: BURL %s: %s", s->id, tx->burl_log_url, err);
		s->bad_burls++;
		if (e == IMAPURL_ERR_NO_UID)
			session_bad_command(s, R_BURL_BAD_URL_REF, err);
		else
			session_bad_command(s, R_BURL_BAD_URL, err);
		goto out;
	}
	/* the transaction (after the syntax: 501 before 503) */
	if (tx->state == TX_FAILED)
		seq = R_SEQ_BDAT_FAILED;
	else if (tx->state == TX_NONE || tx->rcpt_count == 0)
		seq = R_BURL_NEED_RCPT;
	else if (tx->rcpt_accepted == 0)
		seq = R_BURL_NO_RCPTS;
	else if (s->be == NULL)
		seq = R_BACKEND_LOST;
	if (seq == R_BURL_NO_RCPTS) {
		session_reply(s, seq);
		goto out;
	}
	if (seq == R_BACKEND_LOST) {
		session_reply(s, seq);
		tx_reset(s);
		goto out;
	}
	if (seq != R_REPLY_COUNT) {
		session_bad_command(s, seq);
		goto out;
	}
	/* the policy, then the trusted set */
	if (s->conf->burl.access != NULL) {
		burl_decide_table(s, url, u, &v, &rewritten);
	} else {
		burl_policy_check(&s->conf->burl, u, s->identity, time(NULL), &v);
		v.tls = -1;
	}
	if (v.allowed && !v.mailhost &&
	    !burl_worker_server_ready(s->worker->burl, v.server)) {
		v.allowed = 0;
		v.reply = R_BURL_IMAP_UNAVAIL;
		snprintf(v.reason, sizeof(v.reason), "no credentials for %s yet "
		    "(KDC unreachable?)", s->conf->burl.servers[v.server].name);
	}
	if (!v.allowed) {
		smtp_burl_refuse(s, &v);
		goto out;
	}
	if (limits_burl_refused(s, url))	/* url_reuse and BURL rates */
		goto out;
	if (v.mapped)
		log_info("%s: BURL %s: URL user matched identity %s through "
		    "burl.local_domains", s->id, tx->burl_log_url, s->identity);
	{
		char clean[300];

		snprintf(tx->burl_why, sizeof(tx->burl_why), "by %s allowed (%s)",
		    s->identity, v.reason[0] ? log_sanitize(clean,
		    sizeof(clean), v.reason, strlen(v.reason)) : "built-in rule");
		/* At info, the fetch's own line (session.c burl_on_done) says
		 * this too, with its outcome: one line per BURL.  A rewritten
		 * URL is logged here as it was sent. */
		log_msg(rewritten != NULL ? LOG_INFO : LOG_DEBUG,
		    "%s: BURL %s %s, via %s", s->id, tx->burl_log_url,
		    tx->burl_why, v.mailhost ? "the user's mailHost" :
		    s->conf->burl.servers[v.server].name);
	}
	if (tx->burl_url != NULL) {
		/* the previous BURL of this message */
		explicit_bzero(tx->burl_url, strlen(tx->burl_url));
		free(tx->burl_url);
		tx->burl_url = NULL;
	}
	if (rewritten != NULL) {
		tx->burl_url = rewritten;
		rewritten = NULL;
		imapurl_redact(tx->burl_url, strlen(tx->burl_url),
		    tx->burl_log_url, sizeof(tx->burl_log_url));
	} else {
		tx->burl_url = strdup(url);
	}
	if (tx->burl_url == NULL) {
		session_reply(s, R_LOCAL_ERROR);
		goto out;
	}
	tx->burl_server = v.server;
	tx->burl_last = last;
	tx->burl_tls = v.tls;
	if (v.mailhost)
		session_burl_mailhost(s);
	else
		session_burl_start(s);
out:
	if (rewritten != NULL) {
		explicit_bzero(rewritten, strlen(rewritten));
		free(rewritten);
	}
	explicit_bzero(u, sizeof(*u));
	free(u);
}

static void
cmd_rset(struct session *s, char *args)
{
	if (s->tx.state != TX_NONE) {
		/* a backend transaction is open (or failed): end it */
		if (s->be != NULL && backend_is_ready(s->be))
			backend_send(s->be, TAG(TAG_RSET, s->tx.gen, 0), "RSET");
		else
			backend_free(&s->be);
		tx_reset(s);
	}
	session_reply(s, R_RSET);
}

static void
cmd_noop(struct session *s, char *args)
{
	session_reply(s, R_NOOP);
}

static void
cmd_quit(struct session *s, char *args)
{
	session_reply(s, R_BYE);
	session_close_after_reply(s);
}

static void
cmd_help(struct session *s, char *args)
{
	session_reply(s, R_HELP);
}

static void
cmd_vrfy(struct session *s, char *args)
{
	if (*args == '\0') {
		session_bad_command(s, R_SYNTAX);
		return;
	}
	session_reply(s, R_VRFY);
}

static void
cmd_expn(struct session *s, char *args)
{
	session_reply(s, R_EXPN);
}

static void
cmd_starttls(struct session *s, char *args)
{
	if (s->tls) {
		session_bad_command(s, R_TLS_ACTIVE);
		return;
	}
	if (!starttls_offered(s)) {
		session_bad_command(s, R_NOT_IMPL);
		return;
	}
	/* RFC 3207 4: the 220, then the handshake; session_run starts TLS
	 * once the 220 is out, and nothing read after STARTTLS survives. */
	session_reply(s, R_TLS_GO);
	s->starttls_pending = 1;
	session_enter_state(s, S_TLS);
}

static void
cmd_unknown(struct session *s, char *args)
{
	session_bad_command(s, R_UNKNOWN_CMD);
}

static const struct cmd_def commands[V_VERB_COUNT] = {
	[V_UNKNOWN] = { 0, cmd_unknown },
	[V_EHLO] = { 0, cmd_ehlo },
	[V_HELO] = { 0, cmd_helo },
	[V_LHLO] = { 0, cmd_lhlo },
	[V_MAIL] = { CMD_NEEDS_HELO, cmd_mail },
	[V_RCPT] = { CMD_NEEDS_HELO, cmd_rcpt },
	[V_DATA] = { CMD_NEEDS_HELO | CMD_NO_ARGS, cmd_data },
	[V_BDAT] = { CMD_NEEDS_HELO, cmd_bdat },
	[V_RSET] = { CMD_NO_ARGS, cmd_rset },
	[V_NOOP] = { 0, cmd_noop },		/* RFC 5321 4.1.1.9: args ignored */
	[V_QUIT] = { CMD_NO_ARGS, cmd_quit },
	[V_HELP] = { 0, cmd_help },
	[V_VRFY] = { 0, cmd_vrfy },
	[V_EXPN] = { 0, cmd_expn },
	[V_STARTTLS] = { CMD_NO_ARGS, cmd_starttls },
	[V_AUTH] = { 0, cmd_auth },
	[V_BURL] = { CMD_NEEDS_HELO, cmd_burl },
	[V_ETRN] = { 0, cmd_etrn },	/* its checks: smtp_etrn.c */
};

int
smtp_cmd_may_pipeline(struct session *s, enum smtp_verb verb,
		      const char *args)
{
	struct smtp_path_args pa;
	char params[600];
	int bad;

	/* RCPTs behind MAIL/RCPT go to a pipelining backend at once, but only
	 * those that will be forwarded: a reply of our own must wait for the
	 * backend's replies before it (RFC 2920 3.1: replies in order).  All
	 * else waits until the replies before it are out. */
	if (verb != V_RCPT || s->tx.state != TX_ENVELOPE || s->be == NULL ||
	    !backend_can_pipeline(s->be))
		return 0;
	/* the check cuts its argument into pieces: use a copy */
	snprintf(s->scratch, s->conf->limits.max_line_length + 1, "%s", args);
	return rcpt_check(s, s->scratch, &pa, params, sizeof(params), &bad) ==
	    R_REPLY_COUNT;
}

void
smtp_cmd_dispatch(struct session *s, enum smtp_verb verb, char *args)
{
	const struct cmd_def *def = &commands[verb];

	if (verb == V_BDAT) {
		/* BDAT's chunk follows even when the command fails: its
		 * checks live in cmd_bdat, which reads the chunk either way. */
		if (s->helo_kind == HELO_NONE) {
			uint64_t size;
			int last;

			session_bad_command(s, s->lmtp ? R_SEQ_LHLO : R_SEQ_HELO);
			if (s->state != S_CLOSING &&
			    smtp_parse_bdat(args, &size, &last) == 0)
				session_bdat_start_chunk(s, size, last, 1);
			return;
		}
		def->run(s, args);
		return;
	}
	if ((def->flags & CMD_NEEDS_HELO) && s->helo_kind == HELO_NONE) {
		session_bad_command(s, s->lmtp ? R_SEQ_LHLO : R_SEQ_HELO);
		return;
	}
	if ((def->flags & CMD_NO_ARGS) && *args != '\0') {
		session_bad_command(s, R_SYNTAX);
		return;
	}
	def->run(s, args);
}
