/*
 * mailhost_ldap.c - the mailHost directory's LDAP client (see
 * mailhost_ldap.h for what it promises about blocking and deadlines).
 *
 * One connection, one state:
 *
 *   DOWN --first search--> CONNECTING --TCP up--> [STARTTLS] --> [HANDSHAKE]
 *        --> [BINDING] --> READY
 *
 * (bracketed states only when configured: ldaps:// goes straight to
 * HANDSHAKE, ldap_starttls sends the StartTLS request first, a bind DN
 * adds BINDING).  Any failure before READY is a failed attempt: every
 * waiting search answers UNAVAILABLE and the next attempt waits
 * MAILHOST_LDAP_RETRY_DELAY.  A failure once READY is a lost connection:
 * searches sent on it are sent again (once) on a new one.
 *
 * Searches wait in one list, in arrival order; msgid 0 means not sent yet.
 * Everything runs from events (the kick timer, the socket, the deadlines),
 * so no callback ever runs inside mailhost_ldap_search().
 *
 * SECURITY: the server is input.  Values longer than a host name, with a
 * NUL, or not "host[:port]" are refused; the bind password is never logged;
 * the user name is escaped into the filter (RFC 4515) and sanitized in logs.
 */
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <lber.h>
#include <ldap.h>
#include <openldap.h>	/* ldap_init_fd */
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "conf.h"
#include "log.h"
#include "mailhost_ldap.h"
#include "tls.h"

#define MH_MAX_ADDRS 8
/* At most this many entries are asked for: two already say "ambiguous". */
#define MH_SIZE_LIMIT 2
/* Longest filter built; a longer one fails the lookup (UNAVAILABLE, logged:
 * only a template with very many %u could get there). */
#define MH_FILTER_MAX 4096
/* Searches out on the connection at once; more wait their turn (their
 * deadlines run meanwhile).  Seen with libldap 2.5 against slapd 2.5: with
 * more than about 105 outstanding, ldap_result() soon reports the stream
 * as broken (reproduced without msaproxy: a plain blocking libldap client
 * sending 110 searches), while a window of 64 over thousands of searches
 * works. */
#define MH_MAX_OUTSTANDING 64
/* Largest LDAP message accepted from the server (an entry with the one
 * attribute asked for is far smaller); a larger one breaks the
 * connection. */
#define MH_MAX_MESSAGE (64 * 1024)

enum mh_state {
	MH_DOWN,
	MH_CONNECTING,
	MH_STARTTLS,
	MH_HANDSHAKE,
	MH_BINDING,
	MH_READY,
};

static const char *const mh_state_names[] = {
	"down", "connecting", "StartTLS", "TLS handshake", "bind", "ready",
};

struct mailhost_ldap_search {
	struct mailhost_ldap *l;
	TAILQ_ENTRY(mailhost_ldap_search) link;
	mailhost_ldap_cb cb;
	void *ctx;
	struct event *deadline;
	int msgid;			/* 0: not sent yet */
	unsigned sends;			/* a lost connection resends once */
	unsigned entries;
	int bad_value;			/* the attribute's value was refused */
	int doomed;			/* about to be answered UNAVAILABLE */
	char host[MAILHOST_MAX_HOST];
	char user[MAILHOST_MAX_USER + 1];
};

TAILQ_HEAD(mh_search_list, mailhost_ldap_search);

struct mailhost_ldap {
	struct event_base *base;
	struct conf_mailhost cfg;	/* a copy: the conf may be reloaded */
	char password[256];
	char host[256];			/* the URI's host, for TLS and logs */
	char port[8];
	int ldaps;
	struct sockaddr_storage addrs[MH_MAX_ADDRS];
	socklen_t addrlens[MH_MAX_ADDRS];
	size_t naddrs;
	size_t addr_i;			/* the address being tried */
	SSL_CTX *ssl_ctx;		/* ldaps:// or StartTLS */

	enum mh_state state;
	unsigned gen;			/* bumped at each teardown */
	int fd;
	LDAP *ld;
	SSL *ssl;			/* ours during the handshake only: then
					 * the Sockbuf layer owns it */
	int op_msgid;			/* StartTLS or bind in flight */
	unsigned outstanding;		/* searches sent, not answered */
	struct event *ev_io;
	struct event *ev_phase;		/* the connection attempt's deadline */
	struct event *ev_kick;		/* "there is work", from the loop */
	time_t retry_after;		/* monotonic seconds */
	int down_logged;		/* the failure was logged already */
	struct mh_search_list searches;
	unsigned long n_searches, n_connects, n_failures;
};

static void mh_kick(struct mailhost_ldap *l);
static void mh_on_io(evutil_socket_t fd, short what, void *arg);
static void mh_attempt_failed(struct mailhost_ldap *l, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void mh_conn_lost(struct mailhost_ldap *l, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static time_t
mh_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* ------------------------------------------------------------------------
 * The filter (RFC 4515)
 */

int
mailhost_ldap_filter(const char *tmpl, const char *user, char *out,
		     size_t outsize)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	const char *p, *u;

	for (p = tmpl; *p != '\0'; p++) {
		if (p[0] == '%' && p[1] == 'u') {
			for (u = user; *u != '\0'; u++) {
				unsigned char c = (unsigned char)*u;

				/* RFC 4515 3: '*' '(' ')' '\' NUL must be
				 * escaped; everything outside printable
				 * ASCII is escaped as well (allowed, and it
				 * keeps the filter plain ASCII). */
				if (c == '*' || c == '(' || c == ')' ||
				    c == '\\' || c < 0x20 || c >= 0x7f) {
					if (o + 3 >= outsize)
						return -1;
					out[o++] = '\\';
					out[o++] = hex[c >> 4];
					out[o++] = hex[c & 15];
				} else {
					if (o + 1 >= outsize)
						return -1;
					out[o++] = (char)c;
				}
			}
			p++;
			continue;
		}
		if (p[0] == '%' && p[1] == '%')
			p++;
		if (o + 1 >= outsize)
			return -1;
		out[o++] = *p;
	}
	if (o >= outsize)
		return -1;
	out[o] = '\0';
	return (int)o;
}

/* ------------------------------------------------------------------------
 * TLS under libldap: an lber Sockbuf I/O layer over an SSL whose
 * handshake we did ourselves on the loop.  The SSL reads and writes the
 * socket directly (the TCP provider layer below is only used to close it).
 */

static int
mh_sb_setup(Sockbuf_IO_Desc *sbiod, void *arg)
{
	sbiod->sbiod_pvt = arg;
	return 0;
}

static int
mh_sb_remove(Sockbuf_IO_Desc *sbiod)
{
	SSL_free(sbiod->sbiod_pvt);
	sbiod->sbiod_pvt = NULL;
	return 0;
}

static int
mh_sb_ctrl(Sockbuf_IO_Desc *sbiod, int opt, void *arg)
{
	/* Decrypted bytes waiting in the SSL: the socket may be quiet, but
	 * libldap must read (ldap_result() asks before it polls). */
	if (opt == LBER_SB_OPT_DATA_READY && SSL_has_pending(sbiod->sbiod_pvt))
		return 1;
	return LBER_SBIOD_CTRL_NEXT(sbiod, opt, arg);
}

static ber_slen_t
mh_sb_io_result(SSL *ssl, int n)
{
	switch (SSL_get_error(ssl, n)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		errno = EWOULDBLOCK;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		if (errno == 0)
			return 0;	/* EOF without close_notify */
		return -1;
	default:
		errno = EIO;
		return -1;
	}
}

static ber_slen_t
mh_sb_read(Sockbuf_IO_Desc *sbiod, void *buf, ber_len_t len)
{
	SSL *ssl = sbiod->sbiod_pvt;
	int n;

	ERR_clear_error();
	errno = 0;
	n = SSL_read(ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
	if (n > 0)
		return n;
	return mh_sb_io_result(ssl, n);
}

static ber_slen_t
mh_sb_write(Sockbuf_IO_Desc *sbiod, void *buf, ber_len_t len)
{
	SSL *ssl = sbiod->sbiod_pvt;
	int n;

	ERR_clear_error();
	errno = 0;
	n = SSL_write(ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
	if (n > 0)
		return n;
	return mh_sb_io_result(ssl, n);
}

static int
mh_sb_close(Sockbuf_IO_Desc *sbiod)
{
	(void)sbiod;
	return 0;		/* the TCP layer below closes the socket */
}

static Sockbuf_IO mh_sbio_tls = {
	mh_sb_setup,
	mh_sb_remove,
	mh_sb_ctrl,
	mh_sb_read,
	mh_sb_write,
	mh_sb_close,
};

/* ------------------------------------------------------------------------
 * Searches
 */

/* Answer s and forget it.  s is freed before the callback, which may do
 * anything but free the directory. */
static void
mh_finish(struct mailhost_ldap_search *s, enum mailhost_result r,
	  const char *host)
{
	struct mailhost_ldap *l = s->l;
	mailhost_ldap_cb cb = s->cb;
	void *ctx = s->ctx;
	char hostbuf[MAILHOST_MAX_HOST];

	snprintf(hostbuf, sizeof(hostbuf), "%s",
	    r == MAILHOST_FOUND ? host : "");
	if (s->msgid != 0 && l->outstanding > 0)
		l->outstanding--;
	TAILQ_REMOVE(&l->searches, s, link);
	event_free(s->deadline);
	free(s);
	if (r == MAILHOST_UNAVAILABLE)
		l->n_failures++;
	cb(ctx, r, hostbuf);
}

/* Answer every doomed search UNAVAILABLE.  Callbacks may add searches (at
 * the tail, not doomed) or cancel others: hence one at a time from the
 * head. */
static void
mh_finish_doomed(struct mailhost_ldap *l)
{
	struct mailhost_ldap_search *s;

	for (;;) {
		TAILQ_FOREACH(s, &l->searches, link)
			if (s->doomed)
				break;
		if (s == NULL)
			return;
		mh_finish(s, MAILHOST_UNAVAILABLE, "");
	}
}

static void
mh_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct mailhost_ldap_search *s = arg;
	struct mailhost_ldap *l = s->l;
	char user[128];
	int sent = s->msgid != 0 && l->state == MH_READY;

	(void)fd;
	(void)what;
	log_sanitize(user, sizeof(user), s->user, strlen(s->user));
	log_warn("mailhost: LDAP lookup of %s: no answer within %u s (%s)",
	    user, l->cfg.timeout, mh_state_names[l->state]);
	if (sent && l->ld != NULL)
		ldap_abandon_ext(l->ld, s->msgid, NULL, NULL);
	mh_finish(s, MAILHOST_UNAVAILABLE, "");
	/* A server that does not answer a search is not asked again on the
	 * same connection. */
	if (sent && l->state == MH_READY)
		mh_conn_lost(l, "a search timed out");
}

struct mailhost_ldap_search *
mailhost_ldap_search(struct mailhost_ldap *l, const char *user,
		     mailhost_ldap_cb cb, void *ctx)
{
	struct mailhost_ldap_search *s;
	struct timeval tv = { (time_t)l->cfg.timeout, 0 };

	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->deadline = evtimer_new(l->base, mh_on_deadline, s);
	if (s->deadline == NULL) {
		free(s);
		return NULL;
	}
	s->l = l;
	s->cb = cb;
	s->ctx = ctx;
	snprintf(s->user, sizeof(s->user), "%s", user);
	evtimer_add(s->deadline, &tv);
	TAILQ_INSERT_TAIL(&l->searches, s, link);
	mh_kick(l);
	return s;
}

void
mailhost_ldap_cancel(struct mailhost_ldap_search **sp)
{
	struct mailhost_ldap_search *s = *sp;
	struct mailhost_ldap *l;

	if (s == NULL)
		return;
	l = s->l;
	if (s->msgid != 0 && l->state == MH_READY && l->ld != NULL) {
		ldap_abandon_ext(l->ld, s->msgid, NULL, NULL);
		if (l->outstanding > 0)
			l->outstanding--;
		mh_kick(l);	/* room for a waiting one */
	}
	TAILQ_REMOVE(&l->searches, s, link);
	event_free(s->deadline);
	free(s);
	*sp = NULL;
}

/* Send searches not sent yet, in order, while fewer than
 * MH_MAX_OUTSTANDING are out (READY only). */
static void
mh_send_waiting(struct mailhost_ldap *l)
{
	struct mailhost_ldap_search *s;
	char *attrs[2] = { l->cfg.ldap_attribute, NULL };
	char filter[MH_FILTER_MAX];
	int doomed = 0;

	TAILQ_FOREACH(s, &l->searches, link) {
		struct timeval limit = { (time_t)l->cfg.timeout, 0 };
		int rc, msgid = 0;

		if (s->msgid != 0 || s->doomed)
			continue;
		if (l->outstanding >= MH_MAX_OUTSTANDING)
			break;
		if (mailhost_ldap_filter(l->cfg.ldap_filter, s->user, filter,
		    sizeof(filter)) < 0) {
			log_err("mailhost: LDAP filter for a %zu-byte user "
			    "longer than %d bytes", strlen(s->user),
			    MH_FILTER_MAX);
			s->doomed = doomed = 1;
			continue;
		}
		rc = ldap_search_ext(l->ld, l->cfg.ldap_base, LDAP_SCOPE_SUBTREE,
		    filter, attrs, 0, NULL, NULL, &limit, MH_SIZE_LIMIT,
		    &msgid);
		if (rc == LDAP_FILTER_ERROR) {
			log_err("mailhost: LDAP filter %s refused by libldap",
			    l->cfg.ldap_filter);
			s->doomed = doomed = 1;
			continue;
		}
		if (rc != LDAP_SUCCESS) {
			mh_conn_lost(l, "search: %s", ldap_err2string(rc));
			break;
		}
		s->msgid = msgid;
		s->sends++;
		l->outstanding++;
		l->n_searches++;
	}
	if (doomed)
		mh_finish_doomed(l);
}

static struct mailhost_ldap_search *
mh_search_by_msgid(struct mailhost_ldap *l, int msgid)
{
	struct mailhost_ldap_search *s;

	TAILQ_FOREACH(s, &l->searches, link)
		if (s->msgid == msgid)
			return s;
	return NULL;
}

/* The first value of the attribute, if it is a mailHost. */
static void
mh_take_entry(struct mailhost_ldap *l, struct mailhost_ldap_search *s,
	      LDAPMessage *msg)
{
	struct berval **vals;

	if (++s->entries > 1)
		return;
	vals = ldap_get_values_len(l->ld, msg, l->cfg.ldap_attribute);
	if (vals == NULL || vals[0] == NULL) {
		if (vals != NULL)
			ldap_value_free_len(vals);
		return;
	}
	if (vals[0]->bv_len < sizeof(s->host) &&
	    memchr(vals[0]->bv_val, '\0', vals[0]->bv_len) == NULL) {
		memcpy(s->host, vals[0]->bv_val, vals[0]->bv_len);
		s->host[vals[0]->bv_len] = '\0';
	}
	if (s->host[0] == '\0' || !mailhost_valid_host(s->host)) {
		s->host[0] = '\0';
		s->bad_value = 1;
	}
	ldap_value_free_len(vals);
}

static void
mh_take_result(struct mailhost_ldap *l, struct mailhost_ldap_search *s,
	       LDAPMessage *msg)
{
	char user[128];
	char *text = NULL;
	int err = LDAP_OTHER, rc;

	rc = ldap_parse_result(l->ld, msg, &err, NULL, &text, NULL, NULL, 0);
	if (rc != LDAP_SUCCESS)
		err = rc;
	log_sanitize(user, sizeof(user), s->user, strlen(s->user));
	if (err == LDAP_SUCCESS && s->entries == 1 && s->host[0] != '\0') {
		log_debug("mailhost: LDAP: %s has mailHost %s", user, s->host);
		ldap_memfree(text);
		mh_finish(s, MAILHOST_FOUND, s->host);
		return;
	}
	if (err == LDAP_SUCCESS || err == LDAP_SIZELIMIT_EXCEEDED ||
	    err == LDAP_NO_SUCH_OBJECT) {
		if (s->entries > 1 || err == LDAP_SIZELIMIT_EXCEEDED)
			log_warn("mailhost: LDAP: filter %s matches more than "
			    "one entry for %s: no mailHost", l->cfg.ldap_filter,
			    user);
		else if (err == LDAP_NO_SUCH_OBJECT)
			log_err("mailhost: LDAP: base %s does not exist",
			    l->cfg.ldap_base);
		else if (s->bad_value)
			log_warn("mailhost: LDAP: %s of %s is not host[:port]",
			    l->cfg.ldap_attribute, user);
		else
			log_debug("mailhost: LDAP: %s: %s", user, s->entries ?
			    "no mailHost attribute" : "no entry");
		ldap_memfree(text);
		mh_finish(s, MAILHOST_NOT_FOUND, "");
		return;
	}
	{
		char why[200];

		log_sanitize(why, sizeof(why), text ? text : "",
		    text ? strlen(text) : 0);
		log_warn("mailhost: LDAP search for %s failed: %s%s%s", user,
		    ldap_err2string(err), why[0] ? ": " : "", why);
	}
	ldap_memfree(text);
	mh_finish(s, MAILHOST_UNAVAILABLE, "");
}

/* ------------------------------------------------------------------------
 * The connection
 */

static void
mh_io_wait(struct mailhost_ldap *l, short what)
{
	event_del(l->ev_io);
	event_assign(l->ev_io, l->base, l->fd,
	    (short)(what | ((what & EV_READ) ? EV_PERSIST : 0)), mh_on_io, l);
	event_add(l->ev_io, NULL);
}

/* Close whatever there is; state DOWN.  healthy: say goodbye (unbind). */
static void
mh_teardown(struct mailhost_ldap *l, int healthy)
{
	l->gen++;
	if (l->ev_io != NULL)
		event_del(l->ev_io);
	if (l->ev_phase != NULL)
		event_del(l->ev_phase);
	if (l->ld != NULL) {
		/* closes the socket; frees the SSL if the layer is in */
		if (healthy)
			ldap_unbind_ext(l->ld, NULL, NULL);
		else
			ldap_destroy(l->ld);
		l->ld = NULL;
	} else if (l->fd >= 0) {
		close(l->fd);
	}
	l->fd = -1;
	if (l->ssl != NULL) {
		SSL_free(l->ssl);
		l->ssl = NULL;
	}
	l->op_msgid = 0;
	l->outstanding = 0;
	l->state = MH_DOWN;
}

static void
mh_log_down(struct mailhost_ldap *l, const char *what, const char *why)
{
	if (!l->down_logged)
		log_warn("mailhost: LDAP %s (%s): %s", l->cfg.ldap_uri, what,
		    why);
	else
		log_debug("mailhost: LDAP %s (%s): %s", l->cfg.ldap_uri, what,
		    why);
	l->down_logged = 1;
}

static void
mh_attempt_failed(struct mailhost_ldap *l, const char *fmt, ...)
{
	struct mailhost_ldap_search *s;
	char why[300];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	mh_log_down(l, mh_state_names[l->state], why);
	mh_teardown(l, 0);
	l->retry_after = mh_now() + MAILHOST_LDAP_RETRY_DELAY;
	TAILQ_FOREACH(s, &l->searches, link)
		s->doomed = 1;
	mh_finish_doomed(l);
}

static void
mh_conn_lost(struct mailhost_ldap *l, const char *fmt, ...)
{
	struct mailhost_ldap_search *s;
	int waiting = 0;
	char why[300];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_info("mailhost: LDAP %s: connection lost: %s", l->cfg.ldap_uri,
	    why);
	mh_teardown(l, 0);
	TAILQ_FOREACH(s, &l->searches, link) {
		if (s->msgid != 0 && s->sends >= 2)
			s->doomed = 1;
		else
			waiting = 1;
		s->msgid = 0;
	}
	mh_finish_doomed(l);
	if (waiting)
		mh_kick(l);
}

static void
mh_ready(struct mailhost_ldap *l)
{
	event_del(l->ev_phase);
	l->state = MH_READY;
	l->n_connects++;
	if (l->down_logged)
		log_notice("mailhost: LDAP %s reachable again",
		    l->cfg.ldap_uri);
	else
		log_debug("mailhost: LDAP %s connected", l->cfg.ldap_uri);
	l->down_logged = 0;
	mh_io_wait(l, EV_READ);
	mh_send_waiting(l);
}

/* TCP (and TLS) up: bind, or ready. */
static void
mh_bind(struct mailhost_ldap *l)
{
	struct berval cred;
	int rc;

	if (l->cfg.ldap_bind_dn[0] == '\0') {
		mh_ready(l);
		return;
	}
	cred.bv_val = l->password;
	cred.bv_len = strlen(l->password);
	rc = ldap_sasl_bind(l->ld, l->cfg.ldap_bind_dn, LDAP_SASL_SIMPLE, &cred,
	    NULL, NULL, &l->op_msgid);
	if (rc != LDAP_SUCCESS) {
		mh_attempt_failed(l, "bind: %s", ldap_err2string(rc));
		return;
	}
	l->state = MH_BINDING;
	mh_io_wait(l, EV_READ);
}

static void
mh_handshake_step(struct mailhost_ldap *l)
{
	Sockbuf *sb = NULL;
	int rc, err;

	ERR_clear_error();
	rc = SSL_connect(l->ssl);
	if (rc == 1) {
		if (ldap_get_option(l->ld, LDAP_OPT_SOCKBUF, &sb) !=
		    LDAP_OPT_SUCCESS || sb == NULL ||
		    ber_sockbuf_add_io(sb, &mh_sbio_tls,
		    LBER_SBIOD_LEVEL_TRANSPORT, l->ssl) != 0) {
			mh_attempt_failed(l, "cannot put TLS under libldap");
			return;
		}
		l->ssl = NULL;		/* the Sockbuf owns it now */
		mh_bind(l);
		return;
	}
	err = SSL_get_error(l->ssl, rc);
	if (err == SSL_ERROR_WANT_READ) {
		mh_io_wait(l, EV_READ);
		return;
	}
	if (err == SSL_ERROR_WANT_WRITE) {
		mh_io_wait(l, EV_WRITE);
		return;
	}
	if (SSL_get_verify_result(l->ssl) != X509_V_OK)
		mh_attempt_failed(l, "TLS: certificate: %s",
		    X509_verify_cert_error_string(
		    SSL_get_verify_result(l->ssl)));
	else
		mh_attempt_failed(l, "TLS handshake: %s",
		    ERR_peek_error() != 0 ?
		    ERR_reason_error_string(ERR_peek_error()) :
		    "connection closed");
}

static void
mh_handshake_start(struct mailhost_ldap *l)
{
	unsigned char buf[sizeof(struct in6_addr)];
	int literal = inet_pton(AF_INET, l->host, buf) == 1 ||
	    inet_pton(AF_INET6, l->host, buf) == 1;

	/* a name: SNI and a name check; an address: an address check */
	l->ssl = tls_client_new(l->ssl_ctx, literal ? NULL : l->host);
	if (l->ssl == NULL ||
	    (literal && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(l->ssl),
	    l->host) != 1) ||
	    SSL_set_fd(l->ssl, l->fd) != 1) {
		mh_attempt_failed(l, "cannot set up TLS");
		return;
	}
	SSL_set_mode(l->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	l->state = MH_HANDSHAKE;
	mh_handshake_step(l);
}

/* The socket is connected: hand it to libldap. */
static void
mh_connected(struct mailhost_ldap *l)
{
	struct timeval net = { (time_t)l->cfg.timeout, 0 };
	int v3 = LDAP_VERSION3, rc;
	Sockbuf *sb = NULL;

	rc = ldap_init_fd(l->fd, LDAP_PROTO_TCP, l->cfg.ldap_uri, &l->ld);
	if (rc != LDAP_SUCCESS) {
		l->ld = NULL;
		mh_attempt_failed(l, "ldap_init_fd: %s", ldap_err2string(rc));
		return;
	}
	ldap_set_option(l->ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
	/* never open a connection of its own (a referral would) */
	ldap_set_option(l->ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
	/* belt and braces: if libldap ever waited, not for longer */
	ldap_set_option(l->ld, LDAP_OPT_NETWORK_TIMEOUT, &net);
	if (ldap_get_option(l->ld, LDAP_OPT_SOCKBUF, &sb) == LDAP_OPT_SUCCESS &&
	    sb != NULL) {
		ber_len_t max = MH_MAX_MESSAGE;

		ber_sockbuf_ctrl(sb, LBER_SB_OPT_SET_NONBLOCK, (void *)1);
		/* a server's message is held whole in memory: bound it */
		ber_sockbuf_ctrl(sb, LBER_SB_OPT_SET_MAX_INCOMING, &max);
	}
	if (l->ldaps) {
		mh_handshake_start(l);
	} else if (l->cfg.ldap_starttls) {
		/* RFC 4511 4.14.1 */
		rc = ldap_extended_operation(l->ld, LDAP_EXOP_START_TLS, NULL,
		    NULL, NULL, &l->op_msgid);
		if (rc != LDAP_SUCCESS) {
			mh_attempt_failed(l, "StartTLS: %s",
			    ldap_err2string(rc));
			return;
		}
		l->state = MH_STARTTLS;
		mh_io_wait(l, EV_READ);
	} else {
		mh_bind(l);
	}
}

/* Try addresses from addr_i on until one connects or is in progress. */
static void
mh_try_connect(struct mailhost_ldap *l)
{
	char why[200] = "no address";

	for (; l->addr_i < l->naddrs; l->addr_i++) {
		const struct sockaddr *sa =
		    (const struct sockaddr *)&l->addrs[l->addr_i];

		l->fd = socket(sa->sa_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (l->fd < 0) {
			snprintf(why, sizeof(why), "socket: %s",
			    strerror(errno));
			continue;
		}
		if (connect(l->fd, sa, l->addrlens[l->addr_i]) == 0) {
			mh_connected(l);
			return;
		}
		if (errno == EINPROGRESS) {
			l->state = MH_CONNECTING;
			mh_io_wait(l, EV_WRITE);
			return;
		}
		snprintf(why, sizeof(why), "connect: %s", strerror(errno));
		close(l->fd);
		l->fd = -1;
	}
	mh_attempt_failed(l, "%s", why);
}

static void
mh_handle_msg(struct mailhost_ldap *l, LDAPMessage *msg)
{
	int type = ldap_msgtype(msg), id = ldap_msgid(msg);
	struct mailhost_ldap_search *s;

	if ((l->state == MH_STARTTLS || l->state == MH_BINDING) &&
	    id == l->op_msgid) {
		char *text = NULL;
		int err = LDAP_OTHER, rc;
		enum mh_state st = l->state;

		rc = ldap_parse_result(l->ld, msg, &err, NULL, &text, NULL, NULL,
		    0);
		if (rc != LDAP_SUCCESS)
			err = rc;
		l->op_msgid = 0;
		if (err != LDAP_SUCCESS) {
			char why[200];

			log_sanitize(why, sizeof(why), text ? text : "",
			    text ? strlen(text) : 0);
			ldap_memfree(text);
			if (st == MH_BINDING)
				mh_attempt_failed(l, "bind as %s refused: %s%s%s",
				    l->cfg.ldap_bind_dn, ldap_err2string(err),
				    why[0] ? ": " : "", why);
			else
				mh_attempt_failed(l, "StartTLS refused: %s%s%s",
				    ldap_err2string(err), why[0] ? ": " : "",
				    why);
			return;
		}
		ldap_memfree(text);
		if (st == MH_STARTTLS)
			mh_handshake_start(l);
		else
			mh_ready(l);
		return;
	}
	if (l->state != MH_READY || id <= 0 ||
	    (s = mh_search_by_msgid(l, id)) == NULL)
		return;		/* abandoned, or a notice: EOF follows */
	switch (type) {
	case LDAP_RES_SEARCH_ENTRY:
		mh_take_entry(l, s, msg);
		break;
	case LDAP_RES_SEARCH_RESULT:
		mh_take_result(l, s, msg);
		break;
	default:		/* references: no chasing */
		break;
	}
}

/* Everything libldap has for us now. */
static void
mh_read_results(struct mailhost_ldap *l)
{
	unsigned gen = l->gen;

	while (l->gen == gen && l->ld != NULL &&
	    (l->state == MH_STARTTLS || l->state == MH_BINDING ||
	    l->state == MH_READY)) {
		struct timeval zero = { 0, 0 };
		LDAPMessage *msg = NULL;
		int rc;

		rc = ldap_result(l->ld, LDAP_RES_ANY, LDAP_MSG_ONE, &zero, &msg);
		if (rc == 0) {
			/* answers made room: send what waits */
			if (l->state == MH_READY)
				mh_send_waiting(l);
			return;
		}
		if (rc < 0) {
			int err = LDAP_SERVER_DOWN;

			ldap_get_option(l->ld, LDAP_OPT_RESULT_CODE, &err);
			if (l->state == MH_READY)
				mh_conn_lost(l, "%s", ldap_err2string(err));
			else
				mh_attempt_failed(l, "%s", ldap_err2string(err));
			return;
		}
		mh_handle_msg(l, msg);
		ldap_msgfree(msg);
	}
}

static void
mh_on_io(evutil_socket_t fd, short what, void *arg)
{
	struct mailhost_ldap *l = arg;

	(void)fd;
	(void)what;
	switch (l->state) {
	case MH_CONNECTING: {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err == 0) {
			mh_connected(l);
			return;
		}
		log_debug("mailhost: LDAP %s: address %zu: connect: %s",
		    l->cfg.ldap_uri, l->addr_i + 1, strerror(err));
		event_del(l->ev_io);
		close(l->fd);
		l->fd = -1;
		l->addr_i++;
		if (l->addr_i < l->naddrs)
			mh_try_connect(l);
		else
			mh_attempt_failed(l, "connect: %s", strerror(err));
		return;
	}
	case MH_HANDSHAKE:
		mh_handshake_step(l);
		return;
	case MH_STARTTLS:
	case MH_BINDING:
	case MH_READY:
		mh_read_results(l);
		return;
	case MH_DOWN:
		return;
	}
}

static void
mh_on_phase_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct mailhost_ldap *l = arg;

	(void)fd;
	(void)what;
	mh_attempt_failed(l, "no connection within %u s", l->cfg.timeout);
}

static void
mh_on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct mailhost_ldap *l = arg;
	struct mailhost_ldap_search *s;
	struct timeval tv = { (time_t)l->cfg.timeout, 0 };

	(void)fd;
	(void)what;
	if (TAILQ_EMPTY(&l->searches))
		return;
	switch (l->state) {
	case MH_READY:
		mh_send_waiting(l);
		return;
	case MH_DOWN:
		if (mh_now() < l->retry_after) {
			/* the last attempt failed a moment ago */
			TAILQ_FOREACH(s, &l->searches, link)
				s->doomed = 1;
			mh_finish_doomed(l);
			return;
		}
		l->addr_i = 0;
		evtimer_add(l->ev_phase, &tv);
		mh_try_connect(l);
		return;
	default:
		return;		/* searches go out when it is ready */
	}
}

static void
mh_kick(struct mailhost_ldap *l)
{
	struct timeval zero = { 0, 0 };

	if (!evtimer_pending(l->ev_kick, NULL))
		evtimer_add(l->ev_kick, &zero);
}

/* ------------------------------------------------------------------------
 * Set-up
 */

/* "ldap[s]://host[:port][/]" (conf.c checked the form). */
static int
mh_parse_uri(struct mailhost_ldap *l, const char **error_r)
{
	const char *p = l->cfg.ldap_uri, *end, *colon;
	size_t hl;

	l->ldaps = strncasecmp(p, "ldaps://", 8) == 0;
	p += l->ldaps ? 8 : 7;
	end = p + strcspn(p, "/");
	if (*p == '[') {
		const char *close = memchr(p, ']', (size_t)(end - p));

		if (close == NULL) {
			*error_r = "ldap_uri: bad IPv6 literal";
			return -1;
		}
		hl = (size_t)(close - p - 1);
		if (hl >= sizeof(l->host)) {
			*error_r = "ldap_uri: host too long";
			return -1;
		}
		memcpy(l->host, p + 1, hl);
		colon = close[1] == ':' ? close + 1 : NULL;
	} else {
		colon = memchr(p, ':', (size_t)(end - p));
		hl = (size_t)((colon != NULL ? colon : end) - p);
		if (hl == 0 || hl >= sizeof(l->host)) {
			*error_r = "ldap_uri: bad host";
			return -1;
		}
		memcpy(l->host, p, hl);
	}
	l->host[hl] = '\0';
	if (colon != NULL && (size_t)(end - colon - 1) > 0 &&
	    (size_t)(end - colon - 1) < sizeof(l->port)) {
		memcpy(l->port, colon + 1, (size_t)(end - colon - 1));
		l->port[end - colon - 1] = '\0';
	} else {
		snprintf(l->port, sizeof(l->port), "%s",
		    l->ldaps ? "636" : "389");
	}
	return 0;
}

static int
mh_resolve(struct mailhost_ldap *l, const char **error_r)
{
	static char err[400];
	struct addrinfo hints, *res = NULL, *ai;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
	rc = getaddrinfo(l->host, l->port, &hints, &res);
	if (rc == EAI_ADDRFAMILY || rc == EAI_NONAME) {
		/* AI_ADDRCONFIG hides loopback-only set-ups: once more */
		hints.ai_flags = AI_NUMERICSERV;
		rc = getaddrinfo(l->host, l->port, &hints, &res);
	}
	if (rc != 0) {
		snprintf(err, sizeof(err), "mailhost: ldap_uri %.300s: %s",
		    l->cfg.ldap_uri, gai_strerror(rc));
		*error_r = err;
		return -1;
	}
	for (ai = res; ai != NULL && l->naddrs < MH_MAX_ADDRS; ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(l->addrs[0]))
			continue;
		memcpy(&l->addrs[l->naddrs], ai->ai_addr, ai->ai_addrlen);
		l->addrlens[l->naddrs++] = ai->ai_addrlen;
	}
	freeaddrinfo(res);
	if (l->naddrs == 0) {
		snprintf(err, sizeof(err), "mailhost: ldap_uri %.300s: no "
		    "address", l->cfg.ldap_uri);
		*error_r = err;
		return -1;
	}
	return 0;
}

struct mailhost_ldap *
mailhost_ldap_new(struct event_base *base, const struct conf_mailhost *m,
		  const char *password, const char **error_r)
{
	struct mailhost_ldap *l;

	l = calloc(1, sizeof(*l));
	if (l == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	l->base = base;
	l->cfg = *m;
	l->fd = -1;
	TAILQ_INIT(&l->searches);
	snprintf(l->password, sizeof(l->password), "%s", password);
	if (mh_parse_uri(l, error_r) < 0 || mh_resolve(l, error_r) < 0)
		goto fail;
	if (l->ldaps || l->cfg.ldap_starttls) {
		l->ssl_ctx = tls_client_ctx_new(l->cfg.ldap_ca_file, error_r);
		if (l->ssl_ctx == NULL)
			goto fail;
		/* Always verified: the system's CAs unless ldap_ca_file
		 * names others (a directory answer decides where msaproxy
		 * connects with its credentials). */
		if (l->cfg.ldap_ca_file[0] == '\0') {
			if (SSL_CTX_set_default_verify_paths(l->ssl_ctx) != 1) {
				*error_r = "mailhost: cannot load the system's "
				    "CA certificates";
				goto fail;
			}
			SSL_CTX_set_verify(l->ssl_ctx, SSL_VERIFY_PEER, NULL);
		}
	}
	l->ev_io = event_new(base, -1, 0, mh_on_io, l);
	l->ev_phase = evtimer_new(base, mh_on_phase_timeout, l);
	l->ev_kick = evtimer_new(base, mh_on_kick, l);
	if (l->ev_io == NULL || l->ev_phase == NULL || l->ev_kick == NULL) {
		*error_r = "out of memory";
		goto fail;
	}
	return l;
fail:
	mailhost_ldap_free(&l);
	return NULL;
}

void
mailhost_ldap_free(struct mailhost_ldap **lp)
{
	struct mailhost_ldap *l = *lp;
	struct mailhost_ldap_search *s;

	if (l == NULL)
		return;
	while ((s = TAILQ_FIRST(&l->searches)) != NULL)
		mailhost_ldap_cancel(&s);
	mh_teardown(l, l->state == MH_READY);
	if (l->ev_io != NULL)
		event_free(l->ev_io);
	if (l->ev_phase != NULL)
		event_free(l->ev_phase);
	if (l->ev_kick != NULL)
		event_free(l->ev_kick);
	if (l->ssl_ctx != NULL)
		SSL_CTX_free(l->ssl_ctx);
	OPENSSL_cleanse(l->password, sizeof(l->password));
	free(l);
	*lp = NULL;
}

void
mailhost_ldap_stats(const struct mailhost_ldap *l, unsigned long *searches_r,
		    unsigned long *connects_r, unsigned long *failures_r)
{
	*searches_r = l->n_searches;
	*connects_r = l->n_connects;
	*failures_r = l->n_failures;
}
