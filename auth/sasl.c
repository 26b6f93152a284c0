/*
 * sasl.c - SMTP AUTH through Cyrus SASL (see sasl.h for the contract).
 *
 * Configuration.  Cyrus never reads a file of ours: a SASL_CB_VERIFYFILE
 * callback refuses every configuration file (so a stray
 * /etc/sasl2/<app_name>.conf is ignored), and SASL_CB_GETOPT answers from
 * struct conf_sasl:
 *   pwcheck_method  auxprop
 *   auxprop_plugin  sasldb (or a name no plugin has when sasldb_path is "":
 *                   then no user store is consulted at all, not even Cyrus'
 *                   default /etc/sasldb2)
 *   sasldb_path     conf->sasl.sasldb_path
 *   mech_list       conf->sasl.mechanisms; `wanted` for the throwaway
 *                   context of sasl_available_mechanisms
 *   keytab          conf->sasl.keytab, which the master has made a copy
 *                   in memory ("MEMORY:/path", auth/keytab.h): not
 *                   answered then, since Debian's GSSAPI plugin checks the
 *                   option with access(2) at init; KRB5_KTNAME names the
 *                   copy (set before init), and MIT's acceptor uses it
 *   log_level       follows our log level, never above SASL_LOG_DEBUG
 * Each session answers from the conf it was made with (Cyrus reads these
 * per connection, and the sasldb is opened per lookup), so a reload takes
 * effect for new sessions; only the global copy is used for what Cyrus
 * reads once (plugin loading, keytab).  Unanswered options chain to the
 * global callback (Cyrus' _sasl_conn_getopt), then to Cyrus' defaults.
 *
 * Identities (Cyrus 2.1.28, verified in its source, in test_sasl.c and,
 * for GSSAPI, against the lab KDC):
 *   - sasl_server_new() gets user_realm = NULL.  Cyrus then appends no realm
 *     to identities, and the sasldb plugin looks a bare user name up in the
 *     realm serverFQDN (= sasl.hostname): users must be created with
 *     `saslpasswd2 -f DB -u <sasl.hostname> alice`; they authenticate as
 *     "alice", authcid "alice".  A user created with `-u other.test carol`
 *     authenticates as "carol@other.test", authcid "carol@other.test".
 *   - GSSAPI: the plugin strips the realm of a principal in krb5.conf's
 *     default_realm ("alice@LAB.TEST" -> "alice"), and keeps any other
 *     ("carol@OTHER.TEST").  sasl_canonical_identity() treats both alike.
 *
 * Result codes: see map_result().  Anything that is not clearly the
 * client's doing is SASL_RES_TEMP.  GSSAPI with the KDC down: the acceptor
 * never talks to the KDC (it only decrypts the client's ticket with the
 * keytab), so a dead KDC shows up on the client side only.  A keytab
 * without <service>/<hostname> (or unreadable after the privilege drop)
 * makes gss_acquire_cred fail, which Cyrus reports as SASL_FAIL -> TEMP.  A
 * ticket that does not decrypt or verify (wrong kvno, skew, replay) is
 * SASL_BADAUTH -> FAIL.  An unreadable sasldb (e.g. not readable by the
 * unprivileged user) is SASL_FAIL -> TEMP; a missing sasldb is
 * SASL_NOUSER -> FAIL.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include <sasl/sasl.h>

#include "conf.h"
#include "log.h"
#include "sasl.h"

/* Longest client response we hand to Cyrus (decoded).  GSSAPI tokens with
 * a large PAC reach a few tens of KiB; the SMTP line limit is smaller. */
#define SASL_MAX_INPUT	(256 * 1024)

/* Longest user name (authcid or authzid) we accept, in bytes: identities
 * must fit the session's 256-byte buffers untruncated. */
#define SASL_MAX_NAME	255

/* RFC 4422 3.1: a mechanism name is 1 to 20 of [A-Z0-9-_]. */
#define SASL_MECH_MAX	20

/* auxprop_plugin when there is no sasldb: matches no plugin, so no store
 * (in particular not /etc/sasldb2) is ever read. */
#define NO_AUXPROP	"msaproxy-no-user-store"

/* sasl_callback_t.proc is int (*)(void); the real type depends on the id.
 * Through void (*)(void), which -Wcast-function-type lets through. */
#define CB(f)	((int (*)(void))(void (*)(void))(f))

/* What our getopt callback answers.  One global copy (from the conf given
 * to sasl_global_init), one per session, one per listing. */
struct sasl_opts {
	int full;		/* 0: answer mech_list only (listings) */
	char mech_list[256];
	char sasldb_path[512];
	char keytab[512];
};

struct sasl_session {
	sasl_conn_t *conn;
	sasl_callback_t callbacks[4];	/* GETOPT, CANON_USER, PROXY_POLICY,
					 * END */
	struct sasl_opts opts;
	int allow_authzid;
	int authz_denied;		/* set by the proxy policy callback */
	enum { SS_NEW, SS_RUNNING, SS_DONE, SS_FAILED } state;
	char mech[SASL_MECH_MAX + 1];
	int login_user_pending;		/* LOGIN: the next input is the name */
	char *inbuf;			/* copy of client data; wiped after use */
	size_t inbuf_size;
	char *authcid;
	char *authzid;
	char tried_authcid[SASL_MAX_NAME + 1];	/* for the audit trail */
	char attempted[256];		/* the authcid the client tried (limits) */
};

static struct {
	int initialized;
	struct sasl_opts opts;
	char app_name[64];
	char plugin_path[512];
	char service[32];
	char hostname[256];
	sasl_callback_t callbacks[6];
} g;

static char error_buf[256];

/* ------------------------------------------------------------------ */
/* Callbacks */

static int
opts_getopt(const struct sasl_opts *o, const char *option,
	    const char **result, unsigned *len)
{
	const char *v = NULL;

	if (option == NULL || result == NULL)
		return SASL_BADPARAM;
	if (strcmp(option, "pwcheck_method") == 0)
		v = "auxprop";
	else if (strcmp(option, "auxprop_plugin") == 0)
		v = o->sasldb_path[0] != '\0' ? "sasldb" : NO_AUXPROP;
	else if (strcmp(option, "sasldb_path") == 0)
		v = o->sasldb_path[0] != '\0' ? o->sasldb_path : NULL;
	else if (strcmp(option, "mech_list") == 0)
		v = o->mech_list;
	else if (strcmp(option, "keytab") == 0)
		/* not a copy in memory (auth/keytab.h): the plugin checks the
		 * option with access(2), and KRB5_KTNAME names the copy */
		v = o->keytab[0] != '\0' &&
		    strncmp(o->keytab, "MEMORY:", 7) != 0 ? o->keytab : NULL;
	else if (strcmp(option, "log_level") == 0)
		v = log_level >= LOG_DEBUG ? "5" : "4";	/* DEBUG : NOTE */
	if (v == NULL)
		return SASL_FAIL;	/* Cyrus' default */
	*result = v;
	if (len != NULL)
		*len = (unsigned)strlen(v);
	return SASL_OK;
}

static int
global_getopt(void *context, const char *plugin_name, const char *option,
	      const char **result, unsigned *len)
{
	(void)context;
	(void)plugin_name;
	return opts_getopt(&g.opts, option, result, len);
}

static int
local_getopt(void *context, const char *plugin_name, const char *option,
	     const char **result, unsigned *len)
{
	const struct sasl_opts *o = context;

	(void)plugin_name;
	/* What this context does not answer chains to global_getopt. */
	if (option == NULL ||
	    (!o->full && strcmp(option, "mech_list") != 0))
		return SASL_FAIL;
	return opts_getopt(o, option, result, len);
}

/* Cyrus' messages may quote client data (user or mechanism names):
 * sanitized.  SASL_LOG_TRACE and SASL_LOG_PASS (protocol traces, the
 * latter with passwords) are never written. */
static int
log_cb(void *context, int level, const char *message)
{
	char clean[512];
	int prio;

	(void)context;
	switch (level) {
	case SASL_LOG_ERR:	prio = LOG_ERR; break;
	case SASL_LOG_FAIL:	prio = LOG_INFO; break;
	case SASL_LOG_WARN:	prio = LOG_WARNING; break;
	case SASL_LOG_NOTE:	prio = LOG_INFO; break;
	case SASL_LOG_DEBUG:	prio = LOG_DEBUG; break;
	default:		return SASL_OK;
	}
	if (message == NULL || prio > log_level)
		return SASL_OK;
	log_sanitize(clean, sizeof(clean), message, strlen(message));
	log_msg(prio, "sasl: %s", clean);
	return SASL_OK;
}

/* No configuration file is ever read; plugins and the sasldb are fine. */
static int
verifyfile_cb(void *context, const char *file, sasl_verify_type_t type)
{
	(void)context;
	(void)file;
	return type == SASL_VRFY_CONF ? SASL_CONTINUE : SASL_OK;
}

static int
getpath_cb(void *context, const char **path)
{
	(void)context;
	if (path == NULL)
		return SASL_BADPARAM;
	*path = g.plugin_path;
	return SASL_OK;
}

/* An authzid other than the authcid needs allow_authzid.  The comparison
 * is exact (after Cyrus' canonicalization): "ALICE" for "alice" is
 * another identity. */
static int
proxy_policy_cb(sasl_conn_t *conn, void *context, const char *requested_user,
		unsigned rlen, const char *auth_identity, unsigned alen,
		const char *def_realm, unsigned urlen, struct propctx *propctx)
{
	struct sasl_session *ss = context;

	(void)def_realm;
	(void)urlen;
	(void)propctx;
	/* Without an authzid from the client, Cyrus passes the authcid. */
	if (requested_user != NULL && auth_identity != NULL && rlen == alen &&
	    memcmp(requested_user, auth_identity, rlen) == 0)
		return SASL_OK;
	if (ss->allow_authzid)
		return SASL_OK;
	ss->authz_denied = 1;
	sasl_seterror(conn, SASL_NOLOG, "authorization identity not allowed");
	return SASL_NOAUTHZ;
}

/*
 * A user name we let through: 1 to SASL_MAX_NAME bytes, not all blanks
 * (Cyrus would say SASL_FAIL, i.e. temporary), no control characters
 * (they must never reach a log line or a Received header, whatever
 * allow_authzid says).  Other bytes (UTF-8) pass; Cyrus trims surrounding
 * blanks afterwards.
 */
static int
valid_user_name(const char *in, size_t len)
{
	int blank = 1;
	size_t i;

	if (len == 0 || len > SASL_MAX_NAME)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c < 0x20 || c == 0x7f)
			return 0;
		if (c != ' ')
			blank = 0;
	}
	return !blank;
}

/* Every identity a mechanism hands to Cyrus passes here first. */
static int
canon_user_cb(sasl_conn_t *conn, void *context, const char *in,
	      unsigned inlen, unsigned flags, const char *user_realm,
	      char *out, unsigned out_max, unsigned *out_len)
{
	struct sasl_session *ss = context;

	(void)user_realm;
	if (in == NULL || out == NULL || out_len == NULL)
		return SASL_BADPARAM;
	if (!valid_user_name(in, inlen)) {
		sasl_seterror(conn, SASL_NOLOG, "malformed user name");
		return SASL_BADPROT;
	}
	/* who the client claimed to be, kept also when the exchange fails:
	 * for the audit trail, and what a failure is counted against */
	if ((flags & SASL_CU_AUTHID) && ss != NULL &&
	    inlen < sizeof(ss->tried_authcid)) {
		memcpy(ss->tried_authcid, in, inlen);
		ss->tried_authcid[inlen] = '\0';
	}
	if (ss != NULL && (flags & SASL_CU_AUTHID) &&
	    inlen < sizeof(ss->attempted)) {
		memcpy(ss->attempted, in, inlen);
		ss->attempted[inlen] = '\0';
	}
	if (inlen >= out_max)
		return SASL_BUFOVER;
	memcpy(out, in, inlen);
	out[inlen] = '\0';
	*out_len = inlen;
	return SASL_OK;
}

/* ------------------------------------------------------------------ */

static void
copy_str(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src != NULL ? src : "");
}

static void
opts_from_conf(struct sasl_opts *o, const struct conf *conf)
{
	copy_str(o->mech_list, sizeof(o->mech_list), conf->sasl.mechanisms);
	copy_str(o->sasldb_path, sizeof(o->sasldb_path),
		 conf->sasl.sasldb_path);
	copy_str(o->keytab, sizeof(o->keytab), conf->sasl.keytab);
}

static const char *
conf_service(const struct conf *conf)
{
	return conf->sasl.service[0] != '\0' ? conf->sasl.service : "smtp";
}

/* serverFQDN: what GSSAPI builds <service>/<host> from, and the realm
 * sasldb looks bare user names up in.  NULL: Cyrus asks gethostname(). */
static const char *
conf_hostname(const struct conf *conf)
{
	if (conf->sasl.hostname[0] != '\0')
		return conf->sasl.hostname;
	if (conf->server_name[0] != '\0')
		return conf->server_name;
	return NULL;
}

static void
set_error(const char **error_r, const char *what, int rc)
{
	snprintf(error_buf, sizeof(error_buf), "%s: %s", what,
		 sasl_errstring(rc, NULL, NULL));
	if (error_r != NULL)
		*error_r = error_buf;
}

/* Security properties shared by sessions and listings. */
static int
set_secprops(sasl_conn_t *conn, int tls)
{
	sasl_security_properties_t sp;

	memset(&sp, 0, sizeof(sp));
	sp.min_ssf = 0;
	sp.max_ssf = 0;			/* no SASL security layer: TLS does it */
	sp.maxbufsize = 0;
	sp.security_flags = SASL_SEC_NOANONYMOUS;
	if (!tls)
		sp.security_flags |= SASL_SEC_NOPLAINTEXT;
	return sasl_setprop(conn, SASL_SEC_PROPS, &sp);
}

static int
is_plaintext_mech(const char *m, size_t len)
{
	return (len == 5 && strncasecmp(m, "PLAIN", 5) == 0) ||
	       (len == 5 && strncasecmp(m, "LOGIN", 5) == 0);
}

/* Is the token (tok, len) a word of the space-separated list? */
static const char *
list_find(const char *list, const char *tok, size_t len)
{
	const char *p = list;

	while (*p != '\0') {
		size_t l;

		p += strspn(p, " \t");
		l = strcspn(p, " \t");
		if (l == 0)
			break;
		if (l == len && strncasecmp(p, tok, len) == 0)
			return p;
		p += l;
	}
	return NULL;
}

int
sasl_global_init(const struct conf *conf, const char **error_r)
{
	size_t n = 0;
	int rc;

	if (g.initialized) {
		if (error_r != NULL)
			*error_r = "Cyrus SASL is already initialized";
		return -1;
	}
	memset(&g, 0, sizeof(g));
	opts_from_conf(&g.opts, conf);
	copy_str(g.app_name, sizeof(g.app_name),
		 conf->sasl.app_name[0] != '\0' ? conf->sasl.app_name :
		 "msaproxy");
	copy_str(g.plugin_path, sizeof(g.plugin_path), conf->sasl.plugin_path);
	copy_str(g.service, sizeof(g.service), conf_service(conf));
	copy_str(g.hostname, sizeof(g.hostname), conf_hostname(conf));

	if (conf->sasl.keytab[0] != '\0' &&
	    setenv("KRB5_KTNAME", conf->sasl.keytab, 1) != 0) {
		if (error_r != NULL)
			*error_r = "cannot set KRB5_KTNAME";
		return -1;
	}

	g.callbacks[n++] = (sasl_callback_t){ SASL_CB_GETOPT,
		CB(global_getopt), NULL };
	g.callbacks[n++] = (sasl_callback_t){ SASL_CB_LOG,
		CB(log_cb), NULL };
	g.callbacks[n++] = (sasl_callback_t){ SASL_CB_VERIFYFILE,
		CB(verifyfile_cb), NULL };
	if (g.plugin_path[0] != '\0')
		g.callbacks[n++] = (sasl_callback_t){ SASL_CB_GETPATH,
			CB(getpath_cb), NULL };
	g.callbacks[n++] = (sasl_callback_t){ SASL_CB_LIST_END, NULL, NULL };

	rc = sasl_server_init(g.callbacks, g.app_name);
	if (rc != SASL_OK) {
		set_error(error_r, "sasl_server_init", rc);
		return -1;
	}
	g.initialized = 1;

	/* Tell the operator about configured mechanisms no plugin provides. */
	{
		char avail[256], want[256], *tok, *save = NULL;

		sasl_available_mechanisms(g.opts.mech_list, 1, avail,
					  sizeof(avail));
		copy_str(want, sizeof(want), g.opts.mech_list);
		for (tok = strtok_r(want, " \t", &save); tok != NULL;
		     tok = strtok_r(NULL, " \t", &save)) {
			if (list_find(avail, tok, strlen(tok)) == NULL)
				log_warn("sasl: mechanism %s is not available"
					 " (no Cyrus SASL plugin for it, or for"
					 " GSSAPI an unreadable keytab)", tok);
		}
		if (conf->sasl.sasldb_path[0] == '\0') {
			static const char *const pw[] = { "PLAIN", "LOGIN",
				"SCRAM-SHA-1", "SCRAM-SHA-256", "CRAM-MD5",
				"DIGEST-MD5", NULL };
			size_t i;

			for (i = 0; pw[i] != NULL; i++)
				if (list_find(g.opts.mech_list, pw[i],
					      strlen(pw[i])) != NULL)
					log_warn("sasl: %s needs a user store,"
						 " but sasldb_path is not set",
						 pw[i]);
		}
	}
	return 0;
}

void
sasl_global_done(void)
{
	if (!g.initialized)
		return;
	sasl_server_done();
	g.initialized = 0;
}

/* ------------------------------------------------------------------ */
/* Listing */

void
sasl_available_mechanisms(const char *wanted, int tls, char *out,
			  size_t outsize)
{
	struct sasl_opts opts;
	sasl_callback_t cbs[2];
	sasl_conn_t *conn = NULL;
	const char *list = NULL, *p;
	unsigned plen = 0;
	int count = 0;
	size_t used = 0;

	if (out == NULL || outsize == 0)
		return;
	out[0] = '\0';
	if (!g.initialized || wanted == NULL)
		return;

	if (wanted[strspn(wanted, " \t")] == '\0')
		return;		/* Cyrus would log an internal error */

	/* A throwaway context whose mech_list is `wanted`: Cyrus then lists
	 * what it has of it and what the security properties allow. */
	memset(&opts, 0, sizeof(opts));
	copy_str(opts.mech_list, sizeof(opts.mech_list), wanted);
	cbs[0] = (sasl_callback_t){ SASL_CB_GETOPT,
		CB(local_getopt), &opts };
	cbs[1] = (sasl_callback_t){ SASL_CB_LIST_END, NULL, NULL };
	if (sasl_server_new(g.service, g.hostname[0] ? g.hostname : NULL,
			    NULL, NULL, NULL, cbs, 0, &conn) != SASL_OK)
		goto done;
	if (set_secprops(conn, tls) != SASL_OK)
		goto done;
	if (sasl_listmech(conn, NULL, "", " ", "", &list, &plen, &count)
	    != SASL_OK || list == NULL)
		goto done;

	/* wanted's order, Cyrus' spelling, each once. */
	for (p = wanted; *p != '\0';) {
		const char *hit;
		size_t l;

		p += strspn(p, " \t");
		l = strcspn(p, " \t");
		if (l == 0)
			break;
		if ((tls || !is_plaintext_mech(p, l)) &&
		    (hit = list_find(list, p, l)) != NULL &&
		    list_find(out, p, l) == NULL &&
		    used + (used ? 1 : 0) + l < outsize) {
			if (used)
				out[used++] = ' ';
			memcpy(out + used, hit, l);
			used += l;
			out[used] = '\0';
		}
		p += l;
	}
done:
	if (conn != NULL)
		sasl_dispose(&conn);
}

/* ------------------------------------------------------------------ */
/* Sessions */

static void
format_ipport(char *buf, size_t size, const char *ip, int port)
{
	snprintf(buf, size, "%s;%d", ip, port);
}

struct sasl_session *
sasl_session_new(const struct conf *conf, const struct sasl_peer *peer,
		 const char **error_r)
{
	struct sasl_session *ss;
	char local[80], remote[80];
	const char *lp = NULL, *rp = NULL;
	int rc;

	if (!g.initialized) {
		if (error_r != NULL)
			*error_r = "Cyrus SASL is not initialized";
		return NULL;
	}
	ss = calloc(1, sizeof(*ss));
	if (ss == NULL) {
		if (error_r != NULL)
			*error_r = "out of memory";
		return NULL;
	}
	ss->state = SS_NEW;
	opts_from_conf(&ss->opts, conf);
	ss->opts.full = 1;
	ss->allow_authzid = conf->sasl.allow_authzid;
	ss->callbacks[0] = (sasl_callback_t){ SASL_CB_GETOPT,
		CB(local_getopt), &ss->opts };
	ss->callbacks[1] = (sasl_callback_t){ SASL_CB_CANON_USER,
		CB(canon_user_cb), ss };
	ss->callbacks[2] = (sasl_callback_t){ SASL_CB_PROXY_POLICY,
		CB(proxy_policy_cb), ss };
	ss->callbacks[3] = (sasl_callback_t){ SASL_CB_LIST_END, NULL, NULL };

	/* Cyrus wants "a.b.c.d;port" / "v6addr;port" (its own parser). */
	if (peer->local_ip != NULL && peer->local_ip[0] != '\0' &&
	    strlen(peer->local_ip) < 64) {
		format_ipport(local, sizeof(local), peer->local_ip,
			      peer->local_port);
		lp = local;
	}
	if (peer->remote_ip != NULL && peer->remote_ip[0] != '\0' &&
	    strlen(peer->remote_ip) < 64) {
		format_ipport(remote, sizeof(remote), peer->remote_ip,
			      peer->remote_port);
		rp = remote;
	}

	/* user_realm NULL: see the top of this file. */
	rc = sasl_server_new(conf_service(conf), conf_hostname(conf), NULL,
			     lp, rp, ss->callbacks, 0, &ss->conn);
	if (rc != SASL_OK) {
		set_error(error_r, "sasl_server_new", rc);
		goto fail;
	}
	rc = set_secprops(ss->conn, peer->tls);
	if (rc != SASL_OK) {
		set_error(error_r, "SASL_SEC_PROPS", rc);
		goto fail;
	}
	if (peer->tls) {
		sasl_ssf_t ssf = peer->tls_ssf;

		rc = sasl_setprop(ss->conn, SASL_SSF_EXTERNAL, &ssf);
		if (rc != SASL_OK) {
			set_error(error_r, "SASL_SSF_EXTERNAL", rc);
			goto fail;
		}
	}
	if (peer->external_id != NULL) {
		rc = sasl_setprop(ss->conn, SASL_AUTH_EXTERNAL,
				  peer->external_id);
		if (rc != SASL_OK) {
			set_error(error_r, "SASL_AUTH_EXTERNAL", rc);
			goto fail;
		}
	}
	return ss;
fail:
	sasl_session_free(&ss);
	return NULL;
}

static void
wipe_input(struct sasl_session *ss)
{
	if (ss->inbuf != NULL)
		explicit_bzero(ss->inbuf, ss->inbuf_size);
}

void
sasl_session_free(struct sasl_session **sp)
{
	struct sasl_session *ss;

	if (sp == NULL || *sp == NULL)
		return;
	ss = *sp;
	if (ss->conn != NULL)
		sasl_dispose(&ss->conn);
	if (ss->inbuf != NULL) {
		explicit_bzero(ss->inbuf, ss->inbuf_size);
		free(ss->inbuf);
	}
	free(ss->authcid);
	free(ss->authzid);
	free(ss);
	*sp = NULL;
}

/* Copy client data into our NUL-terminated buffer (Cyrus documents
 * clientin as NUL-terminated).  NULL on allocation failure. */
static const char *
stash_input(struct sasl_session *ss, const char *in, size_t len)
{
	if (len + 1 > ss->inbuf_size) {
		char *nb = malloc(len + 1);

		if (nb == NULL)
			return NULL;
		if (ss->inbuf != NULL) {
			explicit_bzero(ss->inbuf, ss->inbuf_size);
			free(ss->inbuf);
		}
		ss->inbuf = nb;
		ss->inbuf_size = len + 1;
	}
	if (len > 0)
		memcpy(ss->inbuf, in, len);
	ss->inbuf[len] = '\0';
	return ss->inbuf;
}

/*
 * Cyrus result -> ours.  The client's doing: FAIL (bad or unusable
 * credentials, NOUSER included so that unknown users look like bad
 * passwords), BADPROT (malformed data), NOMECH, WEAK.  Everything else,
 * notably SASL_FAIL (Cyrus' generic "something broke": keytab, unreadable
 * sasldb, GSS wrap errors), NOMEM, TRYAGAIN and UNAVAIL, is TEMP.
 */
static enum sasl_result
map_result(int rc)
{
	switch (rc) {
	case SASL_OK:
		return SASL_RES_OK;
	case SASL_CONTINUE:
		return SASL_RES_CONTINUE;
	case SASL_BADAUTH:	/* wrong password, bad ticket, bad proof */
	case SASL_NOUSER:	/* no such user: never told apart */
	case SASL_NOAUTHZ:
	case SASL_EXPIRED:
	case SASL_DISABLED:
	case SASL_NOVERIFY:	/* user exists, no verifier for this mech */
	case SASL_TRANS:
	case SASL_PWLOCK:
	case SASL_BADMAC:
	case SASL_BADBINDING:
		return SASL_RES_FAIL;
	case SASL_TOOWEAK:
	case SASL_ENCRYPT:	/* plaintext mechanism without TLS */
		return SASL_RES_WEAK;
	case SASL_NOMECH:
	case SASL_WRONGMECH:
		return SASL_RES_NOMECH;
	case SASL_BADPROT:
	case SASL_BADPARAM:	/* e.g. PLAIN without a password */
	case SASL_BUFOVER:	/* e.g. a user name longer than Cyrus allows */
	case SASL_BADVERS:
		return SASL_RES_BADPROT;
	default:		/* FAIL, NOMEM, TRYAGAIN, UNAVAIL, NOTINIT,
				 * CONFIGERR, INTERACT, NOTDONE ... */
		return SASL_RES_TEMP;
	}
}

static char *
get_identity(sasl_conn_t *conn, int prop)
{
	const void *v = NULL;

	if (sasl_getprop(conn, prop, &v) != SASL_OK || v == NULL)
		return NULL;
	return strdup(v);
}

/* Common tail of start and step. */
static enum sasl_result
finish(struct sasl_session *ss, int rc, const char *out, unsigned outlen,
       const char **out_r, size_t *outlen_r, const char **reason_r)
{
	enum sasl_result res = map_result(rc);

	wipe_input(ss);
	*out_r = "";
	*outlen_r = 0;
	*reason_r = sasl_errstring(rc, NULL, NULL);
	if (ss->authz_denied && res != SASL_RES_OK &&
	    res != SASL_RES_CONTINUE) {
		res = SASL_RES_AUTHZ;
		*reason_r = "authorization identity not allowed";
	}
	switch (res) {
	case SASL_RES_CONTINUE:
		ss->state = SS_RUNNING;
		if (out != NULL) {
			*out_r = out;
			*outlen_r = outlen;
		}
		return res;
	case SASL_RES_OK:
		ss->authcid = get_identity(ss->conn, SASL_AUTHUSER);
		ss->authzid = get_identity(ss->conn, SASL_USERNAME);
		if (ss->authcid == NULL || ss->authzid == NULL) {
			res = SASL_RES_TEMP;
			*reason_r = "no identity after authentication";
			break;
		}
		/* Belt and braces: the callbacks above decide. */
		if (ss->authcid[0] == '\0' || ss->authzid[0] == '\0' ||
		    (!ss->allow_authzid &&
		     strcmp(ss->authcid, ss->authzid) != 0)) {
			res = SASL_RES_AUTHZ;
			*reason_r = "authorization identity not allowed";
			break;
		}
		ss->state = SS_DONE;
		return res;
	default:
		break;
	}
	/* Any failure: this Cyrus context is not used again. */
	ss->state = SS_FAILED;
	free(ss->authcid);
	free(ss->authzid);
	ss->authcid = ss->authzid = NULL;
	return res;
}

static enum sasl_result
refuse(struct sasl_session *ss, enum sasl_result res, const char *reason,
       const char **out_r, size_t *outlen_r, const char **reason_r)
{
	/* A finished exchange keeps its identities; anything else is over. */
	if (ss != NULL && ss->state != SS_DONE)
		ss->state = SS_FAILED;
	*out_r = "";
	*outlen_r = 0;
	*reason_r = reason;
	return res;
}

/* Would Cyrus offer mech on this context? */
static int
conn_offers(sasl_conn_t *conn, const char *mech)
{
	const char *list = NULL;
	unsigned len = 0;
	int count = 0;

	if (sasl_listmech(conn, NULL, "", " ", "", &list, &len, &count)
	    != SASL_OK || list == NULL)
		return 0;
	return list_find(list, mech, strlen(mech)) != NULL;
}

/* RFC 4422 3.1 syntax, upper-cased into buf.  0 or -1. */
static int
normalize_mech(const char *mech, char *buf)
{
	size_t i;

	if (mech == NULL)
		return -1;
	for (i = 0; mech[i] != '\0'; i++) {
		unsigned char c = (unsigned char)mech[i];

		if (i >= SASL_MECH_MAX)
			return -1;
		if (!(isascii(c) && (isalnum(c) || c == '-' || c == '_')))
			return -1;
		buf[i] = (char)toupper(c);
	}
	buf[i] = '\0';
	return i > 0 ? 0 : -1;
}

enum sasl_result
sasl_session_start(struct sasl_session *ss, const char *mech, const char *ir,
		   size_t irlen, int has_ir, const char **out_r,
		   size_t *outlen_r, const char **reason_r)
{
	const char *in = NULL, *out = NULL;
	unsigned outlen = 0;
	int rc;

	if (ss == NULL || ss->state != SS_NEW)
		return refuse(ss, SASL_RES_TEMP, "SASL session already used",
			      out_r, outlen_r, reason_r);
	if (normalize_mech(mech, ss->mech) != 0)
		return refuse(ss, SASL_RES_NOMECH, "invalid mechanism name",
			      out_r, outlen_r, reason_r);
	if (has_ir) {
		if (irlen > SASL_MAX_INPUT)
			return refuse(ss, SASL_RES_BADPROT,
				      "client response too long",
				      out_r, outlen_r, reason_r);
		in = stash_input(ss, ir, irlen);
		if (in == NULL)
			return refuse(ss, SASL_RES_TEMP, "out of memory",
				      out_r, outlen_r, reason_r);
	} else {
		irlen = 0;
	}
	/* Cyrus' LOGIN plugin leaks the password, unwiped, when the user
	 * name fails canonicalization: such names never reach it.  The name
	 * is a non-empty initial response, else the next response. */
	if (strcmp(ss->mech, "LOGIN") == 0) {
		if (irlen > 0 && !valid_user_name(ir, irlen)) {
			wipe_input(ss);
			return refuse(ss, SASL_RES_BADPROT,
				      "malformed user name", out_r, outlen_r,
				      reason_r);
		}
		ss->login_user_pending = irlen == 0;
	}
	rc = sasl_server_start(ss->conn, ss->mech, in, (unsigned)irlen, &out,
			       &outlen);
	if (rc == SASL_NOMECH && conn_offers(ss->conn, ss->mech)) {
		/* The mechanism exists, but its password check found no
		 * verifier: no user store (sasldb_path ""), our problem. */
		wipe_input(ss);
		return refuse(ss, SASL_RES_TEMP, "no password verifier"
			      " (no sasldb_path?)", out_r, outlen_r,
			      reason_r);
	}
	return finish(ss, rc, out, outlen, out_r, outlen_r, reason_r);
}

enum sasl_result
sasl_session_step(struct sasl_session *ss, const char *in, size_t inlen,
		  const char **out_r, size_t *outlen_r, const char **reason_r)
{
	const char *cin, *out = NULL;
	unsigned outlen = 0;
	int rc;

	if (ss == NULL || ss->state != SS_RUNNING)
		return refuse(ss, SASL_RES_TEMP, "no SASL exchange in progress",
			      out_r, outlen_r, reason_r);
	if (inlen > SASL_MAX_INPUT)
		return refuse(ss, SASL_RES_BADPROT, "client response too long",
			      out_r, outlen_r, reason_r);
	if (ss->login_user_pending) {
		ss->login_user_pending = 0;
		if (in == NULL || !valid_user_name(in, inlen))
			return refuse(ss, SASL_RES_BADPROT,
				      "malformed user name", out_r, outlen_r,
				      reason_r);
	}
	cin = stash_input(ss, in != NULL ? in : "", in != NULL ? inlen : 0);
	if (cin == NULL)
		return refuse(ss, SASL_RES_TEMP, "out of memory",
			      out_r, outlen_r, reason_r);
	rc = sasl_server_step(ss->conn, cin, in != NULL ? (unsigned)inlen : 0,
			      &out, &outlen);
	return finish(ss, rc, out, outlen, out_r, outlen_r, reason_r);
}

const char *
sasl_session_authcid(const struct sasl_session *ss)
{
	return ss != NULL && ss->state == SS_DONE ? ss->authcid : NULL;
}

const char *
sasl_session_attempted(const struct sasl_session *ss)
{
	return ss != NULL && ss->attempted[0] != '\0' ? ss->attempted : NULL;
}

const char *
sasl_session_authzid(const struct sasl_session *ss)
{
	return ss != NULL && ss->state == SS_DONE ? ss->authzid : NULL;
}

const char *
sasl_session_tried_authcid(const struct sasl_session *ss)
{
	return ss != NULL && ss->tried_authcid[0] != '\0' ?
	    ss->tried_authcid : NULL;
}

const char *
sasl_session_mech(const struct sasl_session *ss)
{
	return ss != NULL && ss->state == SS_DONE ? ss->mech : NULL;
}

/* ------------------------------------------------------------------ */

void
sasl_canonical_identity(const char *authzid, const char *default_realm,
			char *out, size_t outsize)
{
	const char *at;
	size_t len;

	if (out == NULL || outsize == 0)
		return;
	out[0] = '\0';
	if (authzid == NULL)
		return;
	len = strlen(authzid);
	at = strrchr(authzid, '@');
	if (at != NULL && at != authzid && default_realm != NULL &&
	    default_realm[0] != '\0' && strcasecmp(at + 1, default_realm) == 0)
		len = (size_t)(at - authzid);
	if (len >= outsize)
		return;		/* never a truncated identity */
	memcpy(out, authzid, len);
	out[len] = '\0';
}
