/*
 * tls.h - OpenSSL contexts: the policy (protocol floor, verification) in one
 * place.  This release has the client side, for STARTTLS towards the
 * backend; the server side (STARTTLS and implicit TLS for clients) follows.
 */
#ifndef MSA_TLS_H
#define MSA_TLS_H

#include <openssl/ssl.h>

/*
 * A client context: TLS 1.2 or newer.  With ca_file, the peer's certificate
 * must chain to it (SSL_VERIFY_PEER); without, it is not checked (the
 * opportunistic "may" level).  Returns NULL with *error_r set.
 */
SSL_CTX *tls_client_ctx_new(const char *ca_file, const char **error_r);

/* A client SSL for one connection; verify_name, when not empty, is checked
 * against the certificate (SSL_set1_host) and sent as SNI. */
SSL *tls_client_new(SSL_CTX *ctx, const char *verify_name);

/* "TLSv1.3 TLS_AES_256_GCM_SHA384" for logs and Received comments. */
void tls_describe(SSL *ssl, char *out, size_t outsize);

#endif
