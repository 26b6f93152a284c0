/*
 * burl.c - BURL's per-worker runtime (see burl.h).
 *
 * SECURITY: passwords for password-credential servers are read once by the
 * master (mode 0600 enforced, first line only) and kept in memory; they are
 * handed to the IMAP client and never logged.  Kerberos servers share one
 * refresher per (principal, keytab) pair.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/ssl.h>

#include "burl.h"
#include "conf.h"
#include "imap_client.h"
#include "krb_creds.h"
#include "mailhost.h"
#include "log.h"
#include "util.h"
#include "tls.h"

/* Read by the master, inherited by the workers. */
static char burl_passwords[CONF_MAX_IMAP_SERVERS][256];

struct burl_worker {
	const struct conf *conf;
	struct imap_server_cfg servers[CONF_MAX_IMAP_SERVERS];
	struct krb_creds *krb[CONF_MAX_IMAP_SERVERS];	/* owned: distinct ones */
	size_t nkrb;
	struct imap_pool *pool;
	struct mailhost_dir *mailhost;	/* $M's directory, or NULL */
};

int
burl_global_init(const struct conf *conf, const char **error_r)
{
	static char err[700];
	static char pw[CONF_MAX_IMAP_SERVERS][256];
	size_t i;

	/* all or nothing: a reload that fails keeps the previous ones */
	memset(pw, 0, sizeof(pw));
	for (i = 0; i < conf->burl.server_count; i++) {
		const struct conf_imap_server *is = &conf->burl.servers[i];

		if (is->credentials != CONF_IMAP_CRED_PASSWORD)
			continue;
		if (util_read_secret(is->password_file, pw[i], sizeof(pw[i]),
		    NULL, 1, error_r) < 0) {
			snprintf(err, sizeof(err), "burl.imap_servers %s: "
			    "password_file %s", is->name, *error_r);
			*error_r = err;
			OPENSSL_cleanse(pw, sizeof(pw));
			return -1;
		}
	}
	/* the mailHost map file and LDAP bind password, before the drop */
	if (mailhost_global_init(&conf->burl, error_r) < 0) {
		OPENSSL_cleanse(pw, sizeof(pw));
		return -1;
	}
	memcpy(burl_passwords, pw, sizeof(pw));
	OPENSSL_cleanse(pw, sizeof(pw));
	return 0;
}

/* One refresher for every server with the same principal and keytab. */
static struct krb_creds *
worker_krb(struct burl_worker *bw, size_t i, const char **error_r)
{
	const struct conf_burl *cb = &bw->conf->burl;
	const struct conf_imap_server *is = &cb->servers[i];
	const char *services[CONF_MAX_IMAP_SERVERS];
	char names[CONF_MAX_IMAP_SERVERS][300];
	size_t j, n = 0;

	for (j = 0; j < i; j++)
		if (cb->servers[j].credentials == CONF_IMAP_CRED_KERBEROS &&
		    strcmp(cb->servers[j].principal, is->principal) == 0 &&
		    strcmp(cb->servers[j].keytab, is->keytab) == 0)
			return bw->servers[j].krb;
	/* pre-fetch tickets for every server this identity talks to */
	for (j = i; j < cb->server_count; j++) {
		if (cb->servers[j].credentials != CONF_IMAP_CRED_KERBEROS ||
		    strcmp(cb->servers[j].principal, is->principal) != 0 ||
		    strcmp(cb->servers[j].keytab, is->keytab) != 0)
			continue;
		snprintf(names[n], sizeof(names[n]), "imap@%s",
		    cb->servers[j].service_host);
		services[n] = names[n];
		n++;
	}
	bw->krb[bw->nkrb] = krb_creds_new(is->principal, is->keytab, services,
	    n, error_r);
	if (bw->krb[bw->nkrb] == NULL)
		return NULL;
	return bw->krb[bw->nkrb++];
}

struct burl_worker *
burl_worker_new(struct event_base *base, const struct conf *conf,
		const char **error_r)
{
	const struct conf_burl *cb = &conf->burl;
	struct burl_worker *bw;
	size_t i;

	if (!cb->enabled)
		return NULL;
	bw = calloc(1, sizeof(*bw));
	if (bw == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	bw->conf = conf;
	for (i = 0; i < cb->server_count; i++) {
		const struct conf_imap_server *is = &cb->servers[i];
		struct imap_server_cfg *sc = &bw->servers[i];

		snprintf(sc->name, sizeof(sc->name), "%s", is->name);
		memcpy(&sc->addr, &is->addr.ss, sizeof(sc->addr));
		sc->addrlen = is->addr.sslen;
		snprintf(sc->addr_text, sizeof(sc->addr_text), "%s", is->addr.text);
		sc->tls = is->tls == CONF_IMAP_TLS_IMPLICIT ? IMAP_TLS_IMPLICIT :
		    is->tls == CONF_IMAP_TLS_STARTTLS ? IMAP_TLS_STARTTLS :
		    IMAP_TLS_NONE;
		if (sc->tls != IMAP_TLS_NONE) {
			sc->ssl_ctx = tls_client_ctx_new(is->tls_ca_file[0] ?
			    is->tls_ca_file : NULL, error_r);
			if (sc->ssl_ctx == NULL)
				goto fail;
		}
		snprintf(sc->tls_name, sizeof(sc->tls_name), "%s",
		    is->tls_verify_name);
		snprintf(sc->service_host, sizeof(sc->service_host), "%s",
		    is->service_host);
		sc->mode = is->mode == CONF_IMAP_MODE_PROXY_AUTH ?
		    IMAP_MODE_PROXY_AUTH : IMAP_MODE_URLAUTH;
		if (is->credentials == CONF_IMAP_CRED_KERBEROS) {
			sc->cred = IMAP_CRED_KERBEROS;
			sc->krb = worker_krb(bw, i, error_r);
			if (sc->krb == NULL)
				goto fail;
		} else {
			sc->cred = IMAP_CRED_PASSWORD;
			snprintf(sc->user, sizeof(sc->user), "%s", is->user);
			memcpy(sc->password, burl_passwords[i], sizeof(sc->password));
		}
		sc->max_idle_conns = is->max_idle_connections;
		sc->max_conns = is->max_connections;
		sc->connect_timeout = cb->connect_timeout;
		sc->fetch_timeout = cb->fetch_timeout;
		sc->idle_timeout = cb->idle_timeout;
	}
	bw->pool = imap_pool_new(base, bw->servers, cb->server_count);
	if (bw->pool == NULL) {
		*error_r = "cannot set up the IMAP connection pool";
		goto fail;
	}
	*error_r = NULL;
	bw->mailhost = mailhost_dir_new(base, cb, error_r);
	if (bw->mailhost == NULL && *error_r != NULL)
		goto fail;
	return bw;
fail:
	burl_worker_free(&bw);
	return NULL;
}

void
burl_worker_free(struct burl_worker **bwp)
{
	struct burl_worker *bw = *bwp;
	size_t i;

	if (bw == NULL)
		return;
	mailhost_dir_free(&bw->mailhost);
	imap_pool_free(&bw->pool);
	for (i = 0; i < bw->nkrb; i++)
		krb_creds_free(&bw->krb[i]);
	for (i = 0; i < CONF_MAX_IMAP_SERVERS; i++) {
		if (bw->servers[i].ssl_ctx != NULL)
			SSL_CTX_free(bw->servers[i].ssl_ctx);
		OPENSSL_cleanse(bw->servers[i].password,
		    sizeof(bw->servers[i].password));
	}
	free(bw);
	*bwp = NULL;
}

struct imap_pool *
burl_worker_pool(struct burl_worker *bw)
{
	return bw != NULL ? bw->pool : NULL;
}

struct mailhost_dir *
burl_worker_mailhost(struct burl_worker *bw)
{
	return bw != NULL ? bw->mailhost : NULL;
}

int
burl_worker_server_ready(struct burl_worker *bw, size_t i)
{
	if (bw == NULL || i >= bw->conf->burl.server_count)
		return 0;
	if (bw->servers[i].cred == IMAP_CRED_KERBEROS)
		return krb_creds_ready(bw->servers[i].krb);
	return 1;
}

int
burl_worker_ready(struct burl_worker *bw)
{
	size_t i;

	if (bw == NULL)
		return 0;
	for (i = 0; i < bw->conf->burl.server_count; i++)
		if (burl_worker_server_ready(bw, i))
			return 1;
	return 0;
}
