/*
 * tls.c - see tls.h.
 */
#include <stdio.h>
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
