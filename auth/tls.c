/*
 * tls.c - see tls.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls.h"

SSL_CTX *
tls_client_ctx_new(const char *ca_file, const char **error_r)
{
	static char err[256];
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		*error_r = "SSL_CTX_new failed";
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	if (ca_file != NULL && ca_file[0] != '\0') {
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
			snprintf(err, sizeof(err), "cannot load CA file %s: %s",
			    ca_file, ERR_reason_error_string(ERR_get_error()));
			*error_r = err;
			SSL_CTX_free(ctx);
			return NULL;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	return ctx;
}

SSL *
tls_client_new(SSL_CTX *ctx, const char *verify_name)
{
	SSL *ssl = SSL_new(ctx);

	if (ssl == NULL)
		return NULL;
	SSL_set_connect_state(ssl);
	if (verify_name != NULL && verify_name[0] != '\0') {
		/* SNI only for names, not address literals */
		if (verify_name[0] != '[' &&
		    (verify_name[0] < '0' || verify_name[0] > '9'))
			SSL_set_tlsext_host_name(ssl, verify_name);
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (SSL_set1_host(ssl, verify_name) != 1) {
			SSL_free(ssl);
			return NULL;
		}
	}
	return ssl;
}

void
tls_describe(SSL *ssl, char *out, size_t outsize)
{
	snprintf(out, outsize, "%s %s", SSL_get_version(ssl),
	    SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
}

/* ---------------------------------------------------------------- */
/* Server side */

#include <string.h>
#include <strings.h>

#include "conf.h"

struct tls_server {
	SSL_CTX *ctx[CONF_MAX_SNI];	/* [0] default, [i] = conf sni[i] */
	char names[CONF_MAX_SNI][256];
	size_t count;
};

static char tls_err[1024];

static const char *
tls_fail(const char *what, const char *file)
{
	unsigned long e = ERR_get_error();

	snprintf(tls_err, sizeof(tls_err), "%s %.600s: %s", what, file,
	    e ? ERR_reason_error_string(e) : "failed");
	ERR_clear_error();
	return tls_err;
}

/* "*.example.org" matches exactly one more label: "a.example.org". */
static int
sni_match(const char *pattern, const char *name)
{
	const char *dot;

	if (strcasecmp(pattern, name) == 0)
		return 1;
	if (pattern[0] != '*' || pattern[1] != '.')
		return 0;
	dot = strchr(name, '.');
	return dot != NULL && dot != name && strcasecmp(pattern + 1, dot) == 0;
}

static int
servername_cb(SSL *ssl, int *alert, void *arg)
{
	struct tls_server *ts = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	size_t i;

	(void)alert;
	if (name == NULL)
		return SSL_TLSEXT_ERR_OK;	/* no SNI: the default set */
	for (i = 1; i < ts->count; i++) {
		if (sni_match(ts->names[i], name)) {
			SSL_set_SSL_CTX(ssl, ts->ctx[i]);
			/* verification settings travel with the context */
			SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ts->ctx[i]),
			    SSL_CTX_get_verify_callback(ts->ctx[i]));
			break;
		}
	}
	return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *
server_ctx_new(const struct conf_tls *tc, const struct conf_sni *set,
	       const char **error_r)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	size_t i;

	if (ctx == NULL) {
		*error_r = "SSL_CTX_new failed";
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, strcmp(tc->min_protocol, "TLSv1.3")
	    == 0 ? TLS1_3_VERSION : TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_CIPHER_SERVER_PREFERENCE |
	    (tc->session_tickets ? 0 : SSL_OP_NO_TICKET));
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"msaproxy", 8);
	if (tc->ciphers[0] && SSL_CTX_set_cipher_list(ctx, tc->ciphers) != 1) {
		*error_r = tls_fail("tls.ciphers", tc->ciphers);
		goto fail;
	}
	if (tc->ciphersuites[0] &&
	    SSL_CTX_set_ciphersuites(ctx, tc->ciphersuites) != 1) {
		*error_r = tls_fail("tls.ciphersuites", tc->ciphersuites);
		goto fail;
	}
	if (tc->groups[0] && SSL_CTX_set1_groups_list(ctx, tc->groups) != 1) {
		*error_r = tls_fail("tls.groups", tc->groups);
		goto fail;
	}
	for (i = 0; i < set->cert_count; i++) {
		const struct conf_cert *c = &set->certs[i];

		if (SSL_CTX_use_certificate_chain_file(ctx, c->cert_file) != 1) {
			*error_r = tls_fail("cannot load certificate", c->cert_file);
			goto fail;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, c->key_file,
		    SSL_FILETYPE_PEM) != 1) {
			*error_r = tls_fail("cannot load key", c->key_file);
			goto fail;
		}
		if (SSL_CTX_check_private_key(ctx) != 1) {
			*error_r = tls_fail("key does not match certificate",
			    c->key_file);
			goto fail;
		}
	}
	if (tc->verify_client > 0) {
		STACK_OF(X509_NAME) *names;

		if (SSL_CTX_load_verify_locations(ctx, tc->client_ca_file,
		    NULL) != 1) {
			*error_r = tls_fail("cannot load", tc->client_ca_file);
			goto fail;
		}
		names = SSL_load_client_CA_file(tc->client_ca_file);
		if (names != NULL)
			SSL_CTX_set_client_CA_list(ctx, names);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
		    (tc->verify_client == 2 ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
		    NULL);
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

struct tls_server *
tls_server_new(const struct conf_tls *tc, const char **error_r)
{
	struct tls_server *ts = calloc(1, sizeof(*ts));
	size_t i;

	if (ts == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	for (i = 0; i < tc->sni_count && i < CONF_MAX_SNI; i++) {
		ts->ctx[i] = server_ctx_new(tc, &tc->sni[i], error_r);
		if (ts->ctx[i] == NULL) {
			tls_server_free(&ts);
			return NULL;
		}
		snprintf(ts->names[i], sizeof(ts->names[i]), "%s", tc->sni[i].name);
		ts->count++;
	}
	if (ts->count == 0) {
		*error_r = "tls: no certificates";
		tls_server_free(&ts);
		return NULL;
	}
	if (ts->count > 1) {
		SSL_CTX_set_tlsext_servername_callback(ts->ctx[0], servername_cb);
		SSL_CTX_set_tlsext_servername_arg(ts->ctx[0], ts);
	}
	return ts;
}

void
tls_server_free(struct tls_server **tsp)
{
	struct tls_server *ts = *tsp;
	size_t i;

	if (ts == NULL)
		return;
	*tsp = NULL;
	for (i = 0; i < CONF_MAX_SNI; i++)
		if (ts->ctx[i] != NULL)
			SSL_CTX_free(ts->ctx[i]);
	free(ts);
}

SSL *
tls_server_ssl_new(struct tls_server *ts)
{
	SSL *ssl = SSL_new(ts->ctx[0]);

	if (ssl != NULL)
		SSL_set_accept_state(ssl);
	return ssl;
}

int
tls_peer_cn(SSL *ssl, char *out, size_t outsize)
{
	X509 *cert = SSL_get_peer_certificate(ssl);
	int n;

	if (cert == NULL)
		return 0;
	if (SSL_get_verify_result(ssl) != X509_V_OK) {
		X509_free(cert);
		return 0;
	}
	n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert),
	    NID_commonName, out, (int)outsize);
	X509_free(cert);
	return n > 0 && (size_t)n < outsize;
}

int
tls_peer_subject(SSL *ssl, char *out, size_t outsize)
{
	X509 *cert = SSL_get_peer_certificate(ssl);

	if (cert == NULL)
		return 0;
	if (SSL_get_verify_result(ssl) != X509_V_OK) {
		X509_free(cert);
		return 0;
	}
	X509_NAME_oneline(X509_get_subject_name(cert), out, (int)outsize);
	X509_free(cert);
	return 1;
}
