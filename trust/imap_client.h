/*
 * imap_client.h - the asynchronous IMAP client BURL uses to fetch content
 * from the fixed set of trusted IMAP servers.
 *
 * One struct imap_pool per worker (one event loop).  It keeps authenticated
 * connections to each trusted server and hands them out to fetches; after a
 * fetch the connection goes back to the pool (bounded per server, closed
 * after an idle timeout, or at once if anything about it is doubtful).
 *
 *   session --imap_fetch_start()--> pool --(idle conn | new conn:
 *       connect, [STARTTLS|implicit TLS], CAPABILITY, AUTHENTICATE)-->
 *       URLFETCH "<url>"            (mode URLAUTH)
 *       EXAMINE mailbox + UID FETCH uid BODY.PEEK[section]<partial>
 *                                   (mode PROXY_AUTH, authzid = the user)
 *   <--on_data(piece of the literal)-- ... <--on_done(result)--
 *
 * SECURITY: the IMAP server is trusted to authenticate and authorize, not to
 * be well-formed.  Every response goes through imap_resp.h's bounded parser:
 * a literal larger than max_size, an over-long line, garbage, a BYE or a
 * disconnect mid-literal ends the fetch with a result, within the timeouts,
 * and the connection is discarded, never returned to the pool.  Content is
 * delivered in pieces as it arrives (never the whole literal in memory).
 * The URL (with its URLAUTH token) is sent to the server but never logged:
 * logs use imapurl_redact().  Passwords are read once at start-up and never
 * logged.
 *
 * Ownership: the pool owns connections; a fetch belongs to its caller, who
 * either receives on_done (after which the fetch is gone: do not cancel it)
 * or cancels it with imap_fetch_cancel() (no callback follows).  Callbacks
 * run from the event loop only, never from inside imap_fetch_start().
 */
#ifndef MSA_IMAP_CLIENT_H
#define MSA_IMAP_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <event2/event.h>
#include <event2/buffer.h>

struct krb_creds;
struct ssl_ctx_st;

enum imap_tls_mode {
	IMAP_TLS_NONE,		/* plaintext: a password goes only to a loopback
				 * address (the tests' fake servers) */
	IMAP_TLS_STARTTLS,	/* STARTTLS after the greeting (RFC 3501 6.2.1) */
	IMAP_TLS_IMPLICIT,	/* TLS from the first byte (port 993, RFC 8314) */
};

enum imap_cred_kind {
	IMAP_CRED_KERBEROS,	/* AUTHENTICATE GSSAPI as our own principal */
	IMAP_CRED_PASSWORD,	/* AUTHENTICATE PLAIN user + password: under TLS,
				 * or to a loopback address */
};

enum imap_fetch_mode {
	IMAP_MODE_URLAUTH,	/* URLFETCH of a URLAUTH URL (RFC 4467) */
	IMAP_MODE_PROXY_AUTH,	/* authzid = the user; EXAMINE + UID FETCH BODY.PEEK */
};

/* One trusted server, as the configuration names it.  Limits and timeouts
 * left 0 get the defaults: 4 idle, 32 connections, connect 20 s, fetch
 * 60 s, idle 60 s. */
struct imap_server_cfg {
	char name[64];			/* the config's name for it, for logs */
	struct sockaddr_storage addr;	/* where it listens */
	socklen_t addrlen;
	char addr_text[128];		/* "127.0.0.1:10144", for logs */
	enum imap_tls_mode tls;
	struct ssl_ctx_st *ssl_ctx;	/* client context (CA, TLS 1.2+); NULL if tls NONE */
	char tls_name[256];		/* expected certificate name (SNI + check) */
	enum imap_cred_kind cred;
	char service_host[256];		/* GSSAPI: imap/<service_host> */
	struct krb_creds *krb;		/* GSSAPI: our own credentials */
	char user[256];			/* PASSWORD: the submit user */
	char password[256];		/* PASSWORD: read from its file at start */
	enum imap_fetch_mode mode;	/* for the caller: each request names
					 * its own (imap_fetch_req.mode) */
	unsigned max_idle_conns;	/* pooled idle connections kept (default 4) */
	unsigned max_conns;		/* connections at once, busy or idle (default 32) */
	unsigned connect_timeout;	/* seconds: connect + TLS + greeting + AUTH */
	unsigned fetch_timeout;		/* seconds without progress during a fetch */
	unsigned idle_timeout;		/* seconds an idle pooled connection is kept */
};

enum imap_fetch_result {
	IMAP_FETCH_OK,		/* all content delivered through on_data */
	IMAP_FETCH_NODATA,	/* URLFETCH returned NIL, NO or BAD, or the
				 * message/section does not exist, UIDVALIDITY
				 * differs, access refused, or the request itself
				 * is unusable: 554 5.6.6 */
	IMAP_FETCH_TOO_BIG,	/* literal larger than max_size: 554 5.3.4 */
	IMAP_FETCH_UNAVAILABLE,	/* connect/TLS/AUTH failed, timeout, BYE, disconnect,
				 * protocol garbage: 451 4.4.1 (temporary) */
};

struct imap_fetch_req {
	enum imap_fetch_mode mode;
	const char *url;		/* URLAUTH mode: the full URL, sent as is (quoted or literal) */
	size_t url_len;
	/* PROXY_AUTH mode: */
	const char *authzid;		/* the authenticated user: SASL authorization identity */
	const char *mailbox;		/* decoded mailbox name */
	uint32_t uidvalidity;		/* 0 = not checked; else must match SELECT's */
	uint32_t uid;
	const char *section;		/* "" = whole message */
	int has_partial;
	uint32_t partial_offset, partial_length;
	int require_tls;		/* refuse (UNAVAILABLE) unless the conn uses TLS */
	uint64_t max_size;		/* largest literal accepted */
};

struct imap_fetch_cbs {
	/* Content arrived (buf is never empty): take it all from buf (move
	 * or drain).  The total never exceeds max_size.  May call
	 * imap_fetch_pause() or imap_fetch_cancel(). */
	void (*on_data)(void *ctx, struct evbuffer *buf);
	/* The fetch ended.  reason is for the log (no token, no password;
	 * server text in it is escaped), valid during the call only;
	 * total = content octets delivered.  Only IMAP_FETCH_OK means the
	 * content is complete: on any other result, discard what came. */
	void (*on_done)(void *ctx, enum imap_fetch_result result,
			const char *reason, uint64_t total);
};

struct imap_pool;
struct imap_fetch;

/* servers[] is referenced, not copied: it must outlive the pool. */
struct imap_pool *imap_pool_new(struct event_base *base,
				struct imap_server_cfg *servers, size_t count);
/* Closes every connection (LOGOUT best effort); outstanding fetches must
 * have been cancelled first (any left are dropped without a callback).
 * Not from inside a fetch callback. */
void imap_pool_free(struct imap_pool **poolp);

/* Statistics for logs, tests and the benchmark. */
struct imap_pool_stats {
	uint64_t connections_opened;	/* connections ever started */
	uint64_t fetches;		/* imap_fetch_start() calls */
	unsigned idle, busy;		/* now; busy includes connecting */
	unsigned queued;		/* fetches waiting for max_conns */
};
void imap_pool_stats(const struct imap_pool *pool, struct imap_pool_stats *st);

/* Start fetching from servers[server_index].  Returns NULL only on
 * allocation failure; every other failure comes through on_done. */
struct imap_fetch *imap_fetch_start(struct imap_pool *pool, size_t server_index,
				    const struct imap_fetch_req *req,
				    const struct imap_fetch_cbs *cbs, void *ctx);
/* Backpressure: stop/resume reading the server's content.  While paused
 * no on_data comes, the connection is not read (at most 256 KB stay
 * buffered) and fetch_timeout does not run: the caller's own timeouts
 * bound a pause. */
void imap_fetch_pause(struct imap_fetch *f, int paused);
/* In on_data: 1 if this is the content literal's last piece (on_done
 * follows, as a rule as soon as the tagged response is read), else 0. */
int imap_fetch_content_done(const struct imap_fetch *f);
/* Cancel: no callback follows.  A connection with our command in flight
 * (in mid-literal or not) is discarded; one still being set up for the
 * fetch finishes and goes to the pool.  Sets *fp to NULL.  Allowed inside
 * on_data, not after on_done. */
void imap_fetch_cancel(struct imap_fetch **fp);

#endif
