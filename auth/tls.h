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

struct conf_tls;
struct tls_server;

/*
 * The server side, from the tls section: one SSL_CTX per certificate set
 * (the default set and each SNI name), each holding up to CONF_MAX_CERTS
 * certificates side by side (RSA and ECDSA: OpenSSL picks by what the
 * client supports).  TLS 1.2 minimum (configurable to 1.3), session
 * tickets (keys made here, before the workers fork, so a ticket from one
 * worker resumes in another), optional client certificates.
 * Returns NULL with *error_r (static) when a file cannot be loaded or a
 * key does not match its certificate.
 */
struct tls_server *tls_server_new(const struct conf_tls *tc,
				  const char **error_r);
/* Contexts are reference-counted by OpenSSL: sessions that were set up from
 * the old one keep working after a reload frees it. */
void tls_server_free(struct tls_server **tsp);
/* An SSL for one accepted connection (accept state; SNI switches it to the
 * matching certificate set during the handshake). */
SSL *tls_server_ssl_new(struct tls_server *ts);

/* The verified client certificate's common name, or 0 if none: what SASL
 * EXTERNAL authenticates as. */
int tls_peer_cn(SSL *ssl, char *out, size_t outsize);

/* The verified client certificate's subject (one line), or 0 if none. */
int tls_peer_subject(SSL *ssl, char *out, size_t outsize);

/* "TLSv1.3 TLS_AES_256_GCM_SHA384" for logs and Received comments. */
void tls_describe(SSL *ssl, char *out, size_t outsize);

#endif
