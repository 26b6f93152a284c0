/*
 * test_krb_creds.c - trust/krb_creds.c against the real MIT krb5 library.
 *
 * Two groups:
 *
 *   offline (always): argument and keytab checks, and a realm whose KDC is
 *     a closed port: never ready, the failure is logged with the GSS status
 *     text, no exchange can start, krb_creds_free() returns at once.  The
 *     realm (OFFLINE.TEST) lives in a krb5.conf written to a temporary
 *     directory and put first in KRB5_CONFIG (MIT merges the list; a
 *     KRB5_CONFIG from the environment keeps working behind it), and the
 *     keytab is made with the krb5 API (random key).
 *
 *   kdc (only with a KDC; cmocka skips each test otherwise): complete RFC
 *     4752 exchanges between gssapi_client and an in-process acceptor
 *     (gss_accept_sec_context with the service keytab), and the exchange's
 *     failure modes.  tests/integration/test_krb_creds.py runs this binary
 *     with:
 *       KRB5_CONFIG, KRB5RCACHEDIR    the test realm
 *       MSA_TEST_KRB_KEYTAB           client keytab (submit@REALM)
 *       MSA_TEST_KRB_PRINCIPAL        submit@REALM
 *       MSA_TEST_KRB_ACCEPTOR_KEYTAB  keytab with <service>/<host>@REALM
 *       MSA_TEST_KRB_SERVICE, MSA_TEST_KRB_HOST   e.g. imap, localhost
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <sys/socket.h>

#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <gssapi/gssapi.h>
#include <gssapi/gssapi_ext.h>
#include <gssapi/gssapi_krb5.h>
#include <krb5.h>

#include "conf.h"
#include "krb_creds.h"
#include "log.h"

#define OFFLINE_PRINC	"proxy@OFFLINE.TEST"

static char tmpdir[256];
static char krb5conf[512];
static char offline_kt[512];
static char logpath[512];

/* The KDC group's environment. */
static const char *kdc_keytab, *kdc_principal, *kdc_acceptor_kt;
static const char *kdc_service, *kdc_host;
static char kdc_svcname[256];

/* ------------------------------------------------------------------ */
/* Name lookups, counted per thread: this executable's getaddrinfo() and
 * getnameinfo() interpose libc's for MIT krb5 (which calls them to
 * canonicalize host names), so a test can tell whether the event loop's
 * thread (here: main) did any. */

static pthread_t main_thread;
static unsigned lookups_main, lookups_other;

static void
count_lookup(void)
{
	if (pthread_equal(pthread_self(), main_thread))
		__atomic_add_fetch(&lookups_main, 1, __ATOMIC_RELAXED);
	else
		__atomic_add_fetch(&lookups_other, 1, __ATOMIC_RELAXED);
}

int
getaddrinfo(const char *node, const char *service,
	    const struct addrinfo *hints, struct addrinfo **res)
{
	int (*real)(const char *, const char *, const struct addrinfo *,
		    struct addrinfo **);

	count_lookup();
	*(void **)&real = dlsym(RTLD_NEXT, "getaddrinfo");
	return real(node, service, hints, res);
}

int
getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host,
	    socklen_t hostlen, char *serv, socklen_t servlen, int flags)
{
	int (*real)(const struct sockaddr *, socklen_t, char *, socklen_t,
		    char *, socklen_t, int);

	count_lookup();
	*(void **)&real = dlsym(RTLD_NEXT, "getnameinfo");
	return real(sa, salen, host, hostlen, serv, servlen, flags);
}

/* ------------------------------------------------------------------ */
/* Helpers */

static double
now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static char *
read_log(void)
{
	static char buf[65536];
	FILE *f = fopen(logpath, "r");
	size_t n = 0;

	buf[0] = '\0';
	if (f != NULL) {
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
	return buf;
}

static void
truncate_log(void)
{
	FILE *f = fopen(logpath, "w");

	if (f != NULL)
		fclose(f);
}

/* Wait up to `secs` for `needle` in the log. */
static int
log_has(const char *needle, double secs)
{
	double end = now_mono() + secs;

	do {
		if (strstr(read_log(), needle) != NULL)
			return 1;
		sleep_ms(50);
	} while (now_mono() < end);
	return 0;
}

static int
wait_ready(struct krb_creds *c, double secs)
{
	double end = now_mono() + secs;

	while (!krb_creds_ready(c)) {
		if (now_mono() > end)
			return 0;
		sleep_ms(20);
	}
	return 1;
}

/* A FILE keytab with a random AES key for principal. */
static int
make_keytab(const char *path, const char *principal)
{
	krb5_context k;
	krb5_keytab kt;
	krb5_keytab_entry e;
	char name[600];
	int rc = -1;

	if (krb5_init_context(&k) != 0)
		return -1;
	memset(&e, 0, sizeof(e));
	snprintf(name, sizeof(name), "FILE:%s", path);
	if (krb5_kt_resolve(k, name, &kt) != 0)
		goto out;
	if (krb5_parse_name(k, principal, &e.principal) == 0 &&
	    krb5_c_make_random_key(k, ENCTYPE_AES256_CTS_HMAC_SHA1_96,
				   &e.key) == 0) {
		e.vno = 1;
		rc = krb5_kt_add_entry(k, kt, &e) == 0 ? 0 : -1;
	}
	krb5_free_keytab_entry_contents(k, &e);
	krb5_kt_close(k, kt);
out:
	krb5_free_context(k);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Fixture */

static int
group_setup(void **state)
{
	const char *old = getenv("KRB5_CONFIG");
	char val[2048];
	struct conf_log lc;
	FILE *f;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/msaproxy-test-krb.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(krb5conf, sizeof(krb5conf), "%s/krb5.conf", tmpdir);
	snprintf(offline_kt, sizeof(offline_kt), "%s/proxy.keytab", tmpdir);
	snprintf(logpath, sizeof(logpath), "%s/log", tmpdir);
	f = fopen(krb5conf, "w");
	if (f == NULL)
		return -1;
	/* Port 1 on loopback: connection refused at once.  No default_realm
	 * here, so the KDC group's realm stays the default. */
	fprintf(f, "[libdefaults]\n"
		"    dns_lookup_kdc = false\n"
		"    dns_lookup_realm = false\n"
		"    dns_canonicalize_hostname = false\n"
		"    rdns = false\n"
		"    udp_preference_limit = 1\n"
		"[realms]\n"
		"    OFFLINE.TEST = {\n"
		"        kdc = 127.0.0.1:1\n"
		"    }\n"
		"[domain_realm]\n"
		"    offline.test = OFFLINE.TEST\n");
	fclose(f);
	if (old != NULL && old[0] != '\0')
		snprintf(val, sizeof(val), "%s:%s", krb5conf, old);
	else
		snprintf(val, sizeof(val), "%s", krb5conf);
	/* Before any thread exists. */
	setenv("KRB5_CONFIG", val, 1);
	if (make_keytab(offline_kt, OFFLINE_PRINC) < 0)
		return -1;

	memset(&lc, 0, sizeof(lc));
	lc.dest = LOG_DEST_FILE;
	lc.level = LOG_DEBUG;
	snprintf(lc.file, sizeof(lc.file), "%s", logpath);
	if (log_open(&lc, 1) < 0)
		return -1;

	kdc_keytab = getenv("MSA_TEST_KRB_KEYTAB");
	kdc_principal = getenv("MSA_TEST_KRB_PRINCIPAL");
	kdc_acceptor_kt = getenv("MSA_TEST_KRB_ACCEPTOR_KEYTAB");
	kdc_service = getenv("MSA_TEST_KRB_SERVICE");
	kdc_host = getenv("MSA_TEST_KRB_HOST");
	if (kdc_service != NULL && kdc_host != NULL)
		snprintf(kdc_svcname, sizeof(kdc_svcname), "%s@%s",
			 kdc_service, kdc_host);
	(void)state;
	return 0;
}

static int
group_teardown(void **state)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (strncmp(tmpdir, "/tmp/msaproxy-test-krb.", 23) == 0)
		(void)!system(cmd);
	(void)state;
	return 0;
}

static int
have_kdc(void)
{
	return kdc_keytab != NULL && kdc_principal != NULL &&
	    kdc_acceptor_kt != NULL && kdc_service != NULL && kdc_host != NULL;
}

#define NEED_KDC()                                                            \
	do {                                                                  \
		if (!have_kdc())                                              \
			skip();                                               \
	} while (0)

/* ------------------------------------------------------------------ */
/* Offline */

static void
test_null_safe(void **state)
{
	struct krb_creds *c = NULL;
	struct gssapi_client *g = NULL;

	krb_creds_free(&c);
	gssapi_client_free(&g);
	assert_int_equal(krb_creds_ready(NULL), 0);
	(void)state;
}

static void
test_new_bad_arguments(void **state)
{
	static const char *const bad[] = {
		"imap", "@localhost", "imap@", "im ap@localhost",
		"imap@local@host", "imap@\x01host", "",
	};
	const char *svc[KRB_CREDS_MAX_SERVICES + 1];
	const char *err = NULL;
	size_t i;

	assert_null(krb_creds_new(OFFLINE_PRINC, NULL, NULL, 0, &err));
	assert_non_null(err);
	err = NULL;
	assert_null(krb_creds_new(OFFLINE_PRINC, "", NULL, 0, &err));
	assert_non_null(err);
	err = NULL;
	assert_null(krb_creds_new(OFFLINE_PRINC, offline_kt, NULL, 1, &err));
	assert_non_null(err);
	err = NULL;
	assert_null(krb_creds_new("pro xy@OFFLINE.TEST", offline_kt, NULL, 0,
				  &err));
	assert_string_equal(err, "bad Kerberos principal name");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		assert_null(krb_creds_new(OFFLINE_PRINC, offline_kt, &bad[i], 1,
					  &err));
		assert_string_equal(err,
				    "bad GSSAPI service name (want service@host)");
	}
	for (i = 0; i <= KRB_CREDS_MAX_SERVICES; i++)
		svc[i] = "imap@offline.test";
	err = NULL;
	assert_null(krb_creds_new(OFFLINE_PRINC, offline_kt, svc,
				  KRB_CREDS_MAX_SERVICES + 1, &err));
	assert_string_equal(err, "too many Kerberos services");
	(void)state;
}

static void
test_new_keytab_checks(void **state)
{
	char path[600], empty[600];
	const char *err = NULL;
	FILE *f;

	snprintf(path, sizeof(path), "%s/missing.keytab", tmpdir);
	assert_null(krb_creds_new(OFFLINE_PRINC, path, NULL, 0, &err));
	assert_string_equal(err, "cannot read the client keytab");

	err = NULL;
	assert_null(krb_creds_new("other@OFFLINE.TEST", offline_kt, NULL, 0,
				  &err));
	assert_string_equal(err,
			    "the client keytab has no key for the principal");

	/* A keytab file with only the version header: empty. */
	snprintf(empty, sizeof(empty), "%s/empty.keytab", tmpdir);
	f = fopen(empty, "wb");
	assert_non_null(f);
	fwrite("\x05\x02", 1, 2, f);
	fclose(f);
	err = NULL;
	assert_null(krb_creds_new("", empty, NULL, 0, &err));
	assert_string_equal(err, "the client keytab is empty");

	/* Unreadable (unless we are root, who reads anything). */
	if (geteuid() != 0) {
		chmod(offline_kt, 0);
		err = NULL;
		assert_null(krb_creds_new(OFFLINE_PRINC, offline_kt, NULL, 0,
					  &err));
		assert_string_equal(err, "cannot read the client keytab");
		chmod(offline_kt, 0600);
	}
	(void)state;
}

/* KDC unreachable: never ready, failure logged with MIT's text, no
 * exchange, a prompt stop (the refresher sits in its 5 s backoff). */
static void
test_kdc_unreachable(void **state)
{
	const char *svc[] = { "imap@offline.test" };
	const char *err = NULL;
	struct krb_creds *c;
	struct gssapi_client *g;
	double t0;

	truncate_log();
	c = krb_creds_new(OFFLINE_PRINC, offline_kt, svc, 1, &err);
	assert_non_null(c);
	assert_true(log_has("kerberos: cannot acquire credentials of "
			    OFFLINE_PRINC, 20));
	assert_non_null(strstr(read_log(), "gss_acquire_cred_from: "));
	assert_non_null(strstr(read_log(), "OFFLINE.TEST"));
	assert_non_null(strstr(read_log(), "retrying in 5 s"));
	assert_int_equal(krb_creds_ready(c), 0);

	err = NULL;
	g = gssapi_client_new(c, "imap", "offline.test", "", &err);
	assert_null(g);
	assert_string_equal(err,
			    "GSSAPI: no Kerberos credentials ready (KDC down?)");

	t0 = now_mono();
	krb_creds_free(&c);
	assert_null(c);
	assert_true(now_mono() - t0 < 2.0);
	(void)state;
}

/* "" picks the keytab's first principal (seen in the log). */
static void
test_first_principal(void **state)
{
	const char *err = NULL;
	struct krb_creds *c;

	truncate_log();
	c = krb_creds_new("", offline_kt, NULL, 0, &err);
	assert_non_null(c);
	assert_true(log_has("cannot acquire credentials of " OFFLINE_PRINC,
			    20));
	krb_creds_free(&c);
	(void)state;
}

static void
test_client_new_bad_arguments(void **state)
{
	const char *err = NULL;
	struct krb_creds *c;
	char longid[1100];

	c = krb_creds_new(OFFLINE_PRINC, offline_kt, NULL, 0, &err);
	assert_non_null(c);
	assert_null(gssapi_client_new(c, "imap", "", "", &err));
	assert_string_equal(err, "GSSAPI: bad service or host name");
	assert_null(gssapi_client_new(c, "im ap", "host", "", &err));
	assert_string_equal(err, "GSSAPI: bad service or host name");
	assert_null(gssapi_client_new(c, "imap", "host", "al\nice", &err));
	assert_string_equal(err, "GSSAPI: control character in the "
			    "authorization identity");
	memset(longid, 'a', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	assert_null(gssapi_client_new(c, "imap", "host", longid, &err));
	assert_string_equal(err, "GSSAPI: authorization identity too long");
	assert_null(gssapi_client_new(NULL, "imap", "host", "", &err));
	krb_creds_free(&c);
	(void)state;
}

/* ------------------------------------------------------------------ */
/* With a KDC: an in-process acceptor */

struct acceptor {
	gss_cred_id_t cred;
	gss_ctx_id_t ctx;
	gss_name_t src;
	int complete;
};

static void
acceptor_init(struct acceptor *a)
{
	gss_key_value_element_desc el = { "keytab", kdc_acceptor_kt };
	gss_key_value_set_desc store = { 1, &el };
	OM_uint32 maj, min;

	memset(a, 0, sizeof(*a));
	maj = gss_acquire_cred_from(&min, GSS_C_NO_NAME, GSS_C_INDEFINITE,
				    gss_mech_set_krb5, GSS_C_ACCEPT, &store,
				    &a->cred, NULL, NULL);
	assert_false(GSS_ERROR(maj));
}

static void
acceptor_done(struct acceptor *a)
{
	OM_uint32 min;

	if (a->ctx != GSS_C_NO_CONTEXT)
		gss_delete_sec_context(&min, &a->ctx, GSS_C_NO_BUFFER);
	if (a->src != GSS_C_NO_NAME)
		gss_release_name(&min, &a->src);
	gss_release_cred(&min, &a->cred);
}

/* One acceptor step on a client token; the reply in *out (malloc'd). */
static void
acceptor_step(struct acceptor *a, const unsigned char *in, size_t inlen,
	      unsigned char **out, size_t *outlen)
{
	gss_buffer_desc ib = { inlen, (void *)in }, ob = GSS_C_EMPTY_BUFFER;
	OM_uint32 maj, min;

	maj = gss_accept_sec_context(&min, &a->ctx, a->cred, &ib,
				     GSS_C_NO_CHANNEL_BINDINGS, &a->src, NULL,
				     &ob, NULL, NULL, NULL);
	assert_false(GSS_ERROR(maj));
	a->complete = !(maj & GSS_S_CONTINUE_NEEDED);
	*out = malloc(ob.length + 1);
	assert_non_null(*out);
	memcpy(*out, ob.value, ob.length);
	*outlen = ob.length;
	gss_release_buffer(&min, &ob);
}

static void
acceptor_wrap(struct acceptor *a, const unsigned char *msg, size_t len,
	      unsigned char **out, size_t *outlen)
{
	gss_buffer_desc mb = { len, (void *)msg }, wb = GSS_C_EMPTY_BUFFER;
	OM_uint32 maj, min;

	maj = gss_wrap(&min, a->ctx, 0, GSS_C_QOP_DEFAULT, &mb, NULL, &wb);
	assert_false(GSS_ERROR(maj));
	*out = malloc(wb.length);
	assert_non_null(*out);
	memcpy(*out, wb.value, wb.length);
	*outlen = wb.length;
	gss_release_buffer(&min, &wb);
}

static void
acceptor_unwrap(struct acceptor *a, const unsigned char *in, size_t inlen,
		char *plain, size_t size, size_t *len_r)
{
	gss_buffer_desc ib = { inlen, (void *)in }, pb = GSS_C_EMPTY_BUFFER;
	OM_uint32 maj, min;

	maj = gss_unwrap(&min, a->ctx, &ib, &pb, NULL, NULL);
	assert_false(GSS_ERROR(maj));
	assert_true(pb.length < size);
	memcpy(plain, pb.value, pb.length);
	*len_r = pb.length;
	gss_release_buffer(&min, &pb);
}

static void
acceptor_initiator(struct acceptor *a, char *buf, size_t size)
{
	gss_buffer_desc nb = GSS_C_EMPTY_BUFFER;
	OM_uint32 min;

	assert_false(GSS_ERROR(gss_display_name(&min, a->src, &nb, NULL)));
	snprintf(buf, size, "%.*s", (int)nb.length, (const char *)nb.value);
	gss_release_buffer(&min, &nb);
}

static struct krb_creds *
ready_creds(const char *principal)
{
	const char *svc[] = { kdc_svcname };
	const char *err = NULL;
	struct krb_creds *c;

	c = krb_creds_new(principal, kdc_keytab, svc, 1, &err);
	if (c == NULL)
		fail_msg("krb_creds_new: %s", err);
	if (!wait_ready(c, 20))
		fail_msg("not ready within 20 s:\n%s", read_log());
	return c;
}

/* Run the context exchange to the point where the client waits for the
 * security-layer offer.  Returns the number of client tokens. */
static int
establish(struct gssapi_client *g, struct acceptor *a)
{
	unsigned char *cout = NULL, *sout = NULL;
	size_t coutlen = 0, soutlen = 0;
	const unsigned char *in = NULL;
	size_t inlen = 0;
	const char *err = NULL;
	int rounds = 0;

	for (;;) {
		enum gssapi_step st;

		st = gssapi_client_step(g, in, inlen, &cout, &coutlen, &err);
		if (st != GSSAPI_CONTINUE)
			fail_msg("client step %d: %d %s", rounds, st,
				 err ? err : "");
		free(sout);
		sout = NULL;
		rounds++;
		if (a->complete) {
			/* The client completed on the server's last token and
			 * answers with an empty response (RFC 4752 3.1). */
			assert_int_equal(coutlen, 0);
			free(cout);
			return rounds;
		}
		assert_true(coutlen > 0);
		acceptor_step(a, cout, coutlen, &sout, &soutlen);
		free(cout);
		cout = NULL;
		in = sout;
		inlen = soutlen;
		assert_true(rounds < 5);
	}
}

/* A complete exchange on c; the acceptor must see `principal` ("" = the
 * KDC group's). */
static void
exchange_on(struct krb_creds *c, const char *principal, const char *authzid)
{
	static const unsigned char offer[4] = { 0x07, 0x00, 0x10, 0x00 };
	struct gssapi_client *g;
	struct acceptor a;
	unsigned char *sout, *cout;
	size_t soutlen, coutlen, plen;
	const char *err = NULL;
	char plain[2048], who[256];

	acceptor_init(&a);
	g = gssapi_client_new(c, kdc_service, kdc_host, authzid, &err);
	if (g == NULL)
		fail_msg("gssapi_client_new: %s", err);
	/* Mutual authentication: AP-REQ, AP-REP, then an empty response. */
	assert_int_equal(establish(g, &a), 2);

	acceptor_wrap(&a, offer, sizeof(offer), &sout, &soutlen);
	assert_int_equal(gssapi_client_step(g, sout, soutlen, &cout, &coutlen,
					    &err), GSSAPI_DONE);
	free(sout);
	acceptor_unwrap(&a, cout, coutlen, plain, sizeof(plain), &plen);
	free(cout);
	assert_int_equal(plen, 4 + strlen(authzid));
	assert_memory_equal(plain, "\x01\x00\x00\x00", 4);
	assert_memory_equal(plain + 4, authzid, strlen(authzid));
	acceptor_initiator(&a, who, sizeof(who));
	if (principal[0] != '\0')
		assert_string_equal(who, principal);
	else
		assert_string_equal(who, kdc_principal);

	/* Nothing after DONE. */
	assert_int_equal(gssapi_client_step(g, (const unsigned char *)"x", 1,
					    &cout, &coutlen, &err),
			 GSSAPI_FAIL);
	assert_string_equal(err, "GSSAPI: challenge after the exchange ended");

	gssapi_client_free(&g);
	assert_null(g);
	acceptor_done(&a);
}

static void
full_exchange(const char *principal, const char *authzid)
{
	struct krb_creds *c = ready_creds(principal);

	exchange_on(c, principal, authzid);
	krb_creds_free(&c);
}

static void
test_exchange_authzid(void **state)
{
	NEED_KDC();
	truncate_log();
	full_exchange(kdc_principal, "alice");
	assert_non_null(strstr(read_log(), "kerberos: credentials of "));
	assert_non_null(strstr(read_log(), "1 of 1 service tickets"));
	(void)state;
}

static void
test_exchange_no_authzid(void **state)
{
	NEED_KDC();
	full_exchange(kdc_principal, "");
	(void)state;
}

static void
test_exchange_first_principal(void **state)
{
	NEED_KDC();
	full_exchange("", "bob");
	(void)state;
}

/* The server's offer, then what the client must answer. */
static void
offer_case(const unsigned char *offer, size_t len, const char *want_err)
{
	struct krb_creds *c = ready_creds(kdc_principal);
	struct gssapi_client *g;
	struct acceptor a;
	unsigned char *sout, *cout = NULL;
	size_t soutlen, coutlen;
	const char *err = NULL;

	acceptor_init(&a);
	g = gssapi_client_new(c, kdc_service, kdc_host, "", &err);
	assert_non_null(g);
	establish(g, &a);
	acceptor_wrap(&a, offer, len, &sout, &soutlen);
	assert_int_equal(gssapi_client_step(g, sout, soutlen, &cout, &coutlen,
					    &err), GSSAPI_FAIL);
	free(sout);
	assert_null(cout);
	assert_non_null(strstr(err, want_err));
	/* And it stays failed. */
	assert_int_equal(gssapi_client_step(g, NULL, 0, &cout, &coutlen, &err),
			 GSSAPI_FAIL);
	gssapi_client_free(&g);
	acceptor_done(&a);
	krb_creds_free(&c);
}

static void
test_server_requires_layer(void **state)
{
	NEED_KDC();
	offer_case((const unsigned char *)"\x06\x00\x10\x00", 4,
		   "the server requires a security layer (offers 0x06)");
	(void)state;
}

static void
test_bad_offer_length(void **state)
{
	NEED_KDC();
	offer_case((const unsigned char *)"\x01\x00\x00\x00\x00", 5,
		   "security layer offer of 5 octets, not 4");
	offer_case((const unsigned char *)"\x01", 1,
		   "security layer offer of 1 octets, not 4");
	(void)state;
}

/* An offer that is not a wrap token of this context. */
static void
test_offer_not_wrapped(void **state)
{
	struct krb_creds *c;
	struct gssapi_client *g;
	struct acceptor a;
	unsigned char *cout = NULL;
	size_t coutlen;
	const char *err = NULL;

	NEED_KDC();
	c = ready_creds(kdc_principal);
	acceptor_init(&a);
	g = gssapi_client_new(c, kdc_service, kdc_host, "", &err);
	assert_non_null(g);
	establish(g, &a);
	assert_int_equal(gssapi_client_step(g, (const unsigned char *)
					    "\x01\x00\x00\x00", 4, &cout,
					    &coutlen, &err), GSSAPI_FAIL);
	assert_null(cout);
	assert_non_null(strstr(err, "gss_unwrap (security layer offer): "));
	gssapi_client_free(&g);
	acceptor_done(&a);
	krb_creds_free(&c);
	(void)state;
}

/* A tampered AP-REP: the client must not accept the server. */
static void
test_tampered_ap_rep(void **state)
{
	struct krb_creds *c;
	struct gssapi_client *g;
	struct acceptor a;
	unsigned char *cout = NULL, *sout = NULL;
	size_t coutlen, soutlen;
	const char *err = NULL;

	NEED_KDC();
	c = ready_creds(kdc_principal);
	acceptor_init(&a);
	g = gssapi_client_new(c, kdc_service, kdc_host, "", &err);
	assert_non_null(g);
	assert_int_equal(gssapi_client_step(g, NULL, 0, &cout, &coutlen, &err),
			 GSSAPI_CONTINUE);
	acceptor_step(&a, cout, coutlen, &sout, &soutlen);
	free(cout);
	cout = NULL;
	assert_true(soutlen > 20);
	sout[soutlen - 5] ^= 0x55;
	assert_int_equal(gssapi_client_step(g, sout, soutlen, &cout, &coutlen,
					    &err), GSSAPI_FAIL);
	free(sout);
	assert_null(cout);
	assert_non_null(strstr(err, "gss_init_sec_context: "));

	/* Protocol errors of the first steps. */
	gssapi_client_free(&g);
	g = gssapi_client_new(c, kdc_service, kdc_host, "", &err);
	assert_non_null(g);
	assert_int_equal(gssapi_client_step(g, (const unsigned char *)"x", 1,
					    &cout, &coutlen, &err),
			 GSSAPI_FAIL);
	assert_string_equal(err,
			    "GSSAPI: the server sent data before the first token");
	gssapi_client_free(&g);
	g = gssapi_client_new(c, kdc_service, kdc_host, "", &err);
	assert_int_equal(gssapi_client_step(g, NULL, 0, &cout, &coutlen, &err),
			 GSSAPI_CONTINUE);
	free(cout);
	cout = NULL;
	assert_int_equal(gssapi_client_step(g, NULL, 0, &cout, &coutlen, &err),
			 GSSAPI_FAIL);
	assert_string_equal(err,
			    "GSSAPI: empty challenge during the context exchange");
	gssapi_client_free(&g);
	acceptor_done(&a);
	krb_creds_free(&c);
	(void)state;
}

/* A gssapi_client keeps its credential after krb_creds_free(). */
static void
test_client_outlives_creds(void **state)
{
	static const unsigned char offer[4] = { 0x01, 0x00, 0x00, 0x00 };
	struct krb_creds *c;
	struct gssapi_client *g;
	struct acceptor a;
	unsigned char *sout, *cout;
	size_t soutlen, coutlen, plen;
	const char *err = NULL;
	char plain[64];

	NEED_KDC();
	c = ready_creds(kdc_principal);
	acceptor_init(&a);
	g = gssapi_client_new(c, kdc_service, kdc_host, "carol", &err);
	assert_non_null(g);
	krb_creds_free(&c);
	establish(g, &a);
	acceptor_wrap(&a, offer, sizeof(offer), &sout, &soutlen);
	assert_int_equal(gssapi_client_step(g, sout, soutlen, &cout, &coutlen,
					    &err), GSSAPI_DONE);
	free(sout);
	acceptor_unwrap(&a, cout, coutlen, plain, sizeof(plain), &plen);
	free(cout);
	assert_int_equal(plen, 9);
	assert_memory_equal(plain, "\x01\x00\x00\x00" "carol", 9);
	gssapi_client_free(&g);
	acceptor_done(&a);
	(void)state;
}

/* A service the KDC does not know: the pre-fetch failure is logged, the
 * credential is still published (the other services work). */
static void
test_unknown_service_logged(void **state)
{
	const char *svc[2];
	const char *err = NULL;
	struct krb_creds *c;

	NEED_KDC();
	svc[0] = "nosuchservice@localhost";
	svc[1] = kdc_svcname;
	truncate_log();
	c = krb_creds_new(kdc_principal, kdc_keytab, svc, 2, &err);
	assert_non_null(c);
	assert_true(wait_ready(c, 20));
	assert_true(log_has("1 of 2 service tickets", 5));
	assert_non_null(strstr(read_log(), "kerberos: no ticket for service "
			       "nosuchservice@localhost"));
	assert_non_null(strstr(read_log(), "not found in Kerberos database"));
	/* The missing ticket is retried with the backoff, not at half life. */
	assert_non_null(strstr(read_log(), " in 5 s"));
	krb_creds_free(&c);
	(void)state;
}


/* With MIT's default dns_canonicalize_hostname = true (and rdns), host
 * names are canonicalized through DNS: that must happen in the refresher,
 * never on the event loop's thread, for a configured service. */
static void
test_no_dns_on_loop(void **state)
{
	char dnsconf[600], val[2048], *saved;
	const char *old = getenv("KRB5_CONFIG");
	gss_buffer_desc nb;
	gss_name_t n = GSS_C_NO_NAME, cn = GSS_C_NO_NAME;
	struct krb_creds *c;
	unsigned before;
	OM_uint32 maj, min;
	FILE *f;

	NEED_KDC();
	saved = strdup(old != NULL ? old : "");
	assert_non_null(saved);
	snprintf(dnsconf, sizeof(dnsconf), "%s/dns.conf", tmpdir);
	f = fopen(dnsconf, "w");
	assert_non_null(f);
	fprintf(f, "[libdefaults]\n    dns_canonicalize_hostname = true\n"
		"    rdns = true\n");
	fclose(f);
	snprintf(val, sizeof(val), "%s:%s", dnsconf, saved);
	setenv("KRB5_CONFIG", val, 1);	/* no refresher runs right now */

	/* Control: this configuration does look names up. */
	before = lookups_main;
	nb.value = kdc_svcname;
	nb.length = strlen(kdc_svcname);
	maj = gss_import_name(&min, &nb, GSS_C_NT_HOSTBASED_SERVICE, &n);
	assert_false(GSS_ERROR(maj));
	maj = gss_canonicalize_name(&min, n, gss_mech_krb5, &cn);
	assert_false(GSS_ERROR(maj));
	gss_release_name(&min, &cn);
	gss_release_name(&min, &n);
	assert_true(lookups_main > before);

	c = ready_creds(kdc_principal);
	assert_true(lookups_other > 0);
	before = lookups_main;
	exchange_on(c, kdc_principal, "alice");
	exchange_on(c, kdc_principal, "");
	assert_int_equal(lookups_main, before);
	krb_creds_free(&c);
	setenv("KRB5_CONFIG", saved, 1);
	free(saved);
	(void)state;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_null_safe),
		cmocka_unit_test(test_new_bad_arguments),
		cmocka_unit_test(test_new_keytab_checks),
		cmocka_unit_test(test_kdc_unreachable),
		cmocka_unit_test(test_first_principal),
		cmocka_unit_test(test_client_new_bad_arguments),
		cmocka_unit_test(test_exchange_authzid),
		cmocka_unit_test(test_exchange_no_authzid),
		cmocka_unit_test(test_exchange_first_principal),
		cmocka_unit_test(test_server_requires_layer),
		cmocka_unit_test(test_bad_offer_length),
		cmocka_unit_test(test_offer_not_wrapped),
		cmocka_unit_test(test_tampered_ap_rep),
		cmocka_unit_test(test_client_outlives_creds),
		cmocka_unit_test(test_unknown_service_logged),
		cmocka_unit_test(test_no_dns_on_loop),
	};

	main_thread = pthread_self();
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
