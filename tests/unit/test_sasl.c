/*
 * test_sasl.c - auth/sasl.c against the real Cyrus SASL library and plugins.
 *
 * The group setup makes a private sasldb with saslpasswd2 (sasl2-bin) in a
 * temporary directory and initializes Cyrus through sasl_global_init() from
 * a struct conf filled by hand.  SCRAM-SHA-256 is driven from the client
 * side by a Cyrus SASL client context in the same process.  GSSAPI needs a
 * KDC and is tested end to end elsewhere.  Without saslpasswd2 the test is
 * skipped (exit 77).
 *
 * sasldb realms: sasl_session_new() passes no user realm, so Cyrus' sasldb
 * plugin looks a bare user name up in the realm serverFQDN, i.e.
 * sasl.hostname: users are created with `saslpasswd2 -u <sasl.hostname>`.
 * A user created in another realm logs in as "user@realm".  Both shapes are
 * checked below (test_realm_shapes).
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <cmocka.h>

#include <sasl/sasl.h>

#include "conf.h"
#include "log.h"
#include "sasl.h"

#define HOSTNAME	"mail.test"
#define MECHS		"SCRAM-SHA-256 PLAIN LOGIN GSSAPI"

static char tmpdir[256];
static char dbpath[512];
static char logpath[512];
static struct conf conf;

static const struct sasl_peer peer_tls = {
	"127.0.0.1", 587, "192.0.2.7", 40000, 1, 256, NULL,
};
static const struct sasl_peer peer_plain = {
	"127.0.0.1", 587, "192.0.2.7", 40000, 0, 0, NULL,
};

/* A byte string literal that may hold NULs, as pointer and length. */
#define B(s)	(s), (sizeof(s) - 1)

/* ------------------------------------------------------------------ */
/* Fixture */

static const char *
saslpasswd2_path(void)
{
	static const char *const cands[] = {
		"/usr/sbin/saslpasswd2", "/usr/bin/saslpasswd2", NULL,
	};
	size_t i;

	for (i = 0; cands[i] != NULL; i++)
		if (access(cands[i], X_OK) == 0)
			return cands[i];
	return NULL;
}

/* saslpasswd2 -f DB -a APP -u REALM -c -p USER, password on stdin. */
static int
add_user(const char *realm, const char *user, const char *pass)
{
	const char *prog = saslpasswd2_path();
	int fds[2], status;
	pid_t pid;

	if (prog == NULL || pipe(fds) != 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(fds[0], 0);
		close(fds[0]);
		close(fds[1]);
		execl(prog, "saslpasswd2", "-f", dbpath, "-a",
		      "msaproxy-unit-test", "-u", realm, "-c", "-p", user,
		      (char *)NULL);
		_exit(127);
	}
	close(fds[0]);
	if (write(fds[1], pass, strlen(pass)) != (ssize_t)strlen(pass))
		status = -1;
	close(fds[1]);
	if (waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static void
fill_conf(struct conf *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->server_name, sizeof(c->server_name), "mx.example");
	snprintf(c->sasl.app_name, sizeof(c->sasl.app_name), "msaproxy");
	snprintf(c->sasl.mechanisms, sizeof(c->sasl.mechanisms), MECHS);
	snprintf(c->sasl.sasldb_path, sizeof(c->sasl.sasldb_path), "%s",
		 dbpath);
	snprintf(c->sasl.service, sizeof(c->sasl.service), "smtp");
	snprintf(c->sasl.hostname, sizeof(c->sasl.hostname), HOSTNAME);
	snprintf(c->sasl.realm, sizeof(c->sasl.realm), HOSTNAME);
	c->sasl.max_failures = 3;
}

static int
group_setup(void **state)
{
	const char *dir = getenv("TMPDIR");
	const char *err = NULL;

	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "%s/test_sasl.XXXXXX",
		 dir != NULL && *dir != '\0' ? dir : "/tmp");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(dbpath, sizeof(dbpath), "%s/sasldb2", tmpdir);
	snprintf(logpath, sizeof(logpath), "%s/log", tmpdir);
	if (add_user(HOSTNAME, "alice", "alicepw") != 0 ||
	    add_user(HOSTNAME, "bob", "bobpw") != 0 ||
	    add_user("other.test", "carol", "carolpw") != 0) {
		fprintf(stderr, "saslpasswd2 failed\n");
		return -1;
	}
	fill_conf(&conf);
	if (sasl_global_init(&conf, &err) != 0) {
		fprintf(stderr, "sasl_global_init: %s\n", err);
		return -1;
	}
	/* The client side, for SCRAM. */
	if (sasl_client_init(NULL) != SASL_OK) {
		fprintf(stderr, "sasl_client_init failed\n");
		return -1;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	char path[600];

	(void)state;
	sasl_client_done();
	sasl_global_done();
	unlink(dbpath);
	snprintf(path, sizeof(path), "%s-lock", dbpath);	/* lmdb, if any */
	unlink(path);
	unlink(logpath);
	rmdir(tmpdir);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Helpers */

struct result {
	enum sasl_result res;
	const char *out;
	size_t outlen;
	const char *reason;
};

static struct sasl_session *
new_session_with(const struct conf *c, const struct sasl_peer *peer)
{
	const char *err = NULL;
	struct sasl_session *ss = sasl_session_new(c, peer, &err);

	if (ss == NULL)
		fail_msg("sasl_session_new: %s", err);
	return ss;
}

static struct sasl_session *
new_session(int tls)
{
	return new_session_with(&conf, tls ? &peer_tls : &peer_plain);
}

static struct result
start(struct sasl_session *ss, const char *mech, const char *ir, size_t len,
      int has_ir)
{
	struct result r = { 0 };

	r.res = sasl_session_start(ss, mech, ir, len, has_ir, &r.out,
				   &r.outlen, &r.reason);
	assert_non_null(r.out);
	assert_non_null(r.reason);
	return r;
}

static struct result
step(struct sasl_session *ss, const char *in, size_t len)
{
	struct result r = { 0 };

	r.res = sasl_session_step(ss, in, len, &r.out, &r.outlen, &r.reason);
	assert_non_null(r.out);
	assert_non_null(r.reason);
	return r;
}

/* One-shot PLAIN with an initial response; returns the result and, on OK,
 * checks the identities. */
static enum sasl_result
plain(const struct conf *c, int tls, const char *msg, size_t len,
      const char *authcid, const char *authzid)
{
	struct sasl_session *ss = new_session_with(c, tls ? &peer_tls :
						   &peer_plain);
	struct result r = start(ss, "PLAIN", msg, len, 1);

	if (r.res == SASL_RES_OK) {
		assert_string_equal(sasl_session_authcid(ss), authcid);
		assert_string_equal(sasl_session_authzid(ss), authzid);
		assert_string_equal(sasl_session_mech(ss), "PLAIN");
	} else {
		assert_null(sasl_session_authcid(ss));
		assert_null(sasl_session_authzid(ss));
	}
	sasl_session_free(&ss);
	assert_null(ss);
	return r.res;
}

/* ------------------------------------------------------------------ */
/* PLAIN */

static void
test_plain_ok(void **state)
{
	(void)state;
	assert_int_equal(plain(&conf, 1, B("\0alice\0alicepw"), "alice",
			       "alice"), SASL_RES_OK);
	/* authzid == authcid spelled out is not a proxy request. */
	assert_int_equal(plain(&conf, 1, B("bob\0bob\0bobpw"), "bob", "bob"),
			 SASL_RES_OK);
}

static void
test_plain_no_initial_response(void **state)
{
	struct sasl_session *ss = new_session(1);
	struct result r;

	(void)state;
	r = start(ss, "PLAIN", NULL, 0, 0);
	assert_int_equal(r.res, SASL_RES_CONTINUE);
	assert_int_equal(r.outlen, 0);		/* "334 " */
	assert_null(sasl_session_authcid(ss));
	r = step(ss, B("\0alice\0alicepw"));
	assert_int_equal(r.res, SASL_RES_OK);
	assert_string_equal(sasl_session_authcid(ss), "alice");
	/* Done: no more steps, no restart; the identities stay. */
	r = step(ss, B("\0alice\0alicepw"));
	assert_int_not_equal(r.res, SASL_RES_OK);
	assert_int_not_equal(r.res, SASL_RES_CONTINUE);
	r = start(ss, "PLAIN", B("\0bob\0bobpw"), 1);
	assert_int_not_equal(r.res, SASL_RES_OK);
	assert_string_equal(sasl_session_authcid(ss), "alice");
	sasl_session_free(&ss);
}

static void
test_plain_bad_credentials(void **state)
{
	struct sasl_session *ss;
	struct result r;

	(void)state;
	assert_int_equal(plain(&conf, 1, B("\0alice\0wrong"), NULL, NULL),
			 SASL_RES_FAIL);
	assert_int_equal(plain(&conf, 1, B("\0alice\0"), NULL, NULL),
			 SASL_RES_FAIL);
	/* Unknown user: the same answer as a wrong password. */
	assert_int_equal(plain(&conf, 1, B("\0mallory\0alicepw"), NULL, NULL),
			 SASL_RES_FAIL);
	/* Passwords are case-sensitive, user names are looked up as given. */
	assert_int_equal(plain(&conf, 1, B("\0alice\0ALICEPW"), NULL, NULL),
			 SASL_RES_FAIL);

	/* After a failure the session is unusable: a new one is needed. */
	ss = new_session(1);
	r = start(ss, "PLAIN", B("\0alice\0wrong"), 1);
	assert_int_equal(r.res, SASL_RES_FAIL);
	assert_true(strlen(r.reason) > 0);
	assert_null(strstr(r.reason, "wrong"));
	r = step(ss, B("\0alice\0alicepw"));
	assert_int_not_equal(r.res, SASL_RES_OK);
	assert_int_not_equal(r.res, SASL_RES_CONTINUE);
	r = start(ss, "PLAIN", B("\0alice\0alicepw"), 1);
	assert_int_not_equal(r.res, SASL_RES_OK);
	assert_null(sasl_session_authcid(ss));
	sasl_session_free(&ss);
}

static void
test_plain_malformed(void **state)
{
	(void)state;
	/* No NUL at all, one NUL only: not PLAIN. */
	assert_int_equal(plain(&conf, 1, B("alicealicepw"), NULL, NULL),
			 SASL_RES_BADPROT);
	assert_int_equal(plain(&conf, 1, B("alice\0alicepw"), NULL, NULL),
			 SASL_RES_BADPROT);
	/* An empty initial response ("AUTH PLAIN =") is not credentials. */
	assert_int_not_equal(plain(&conf, 1, "", 0, NULL, NULL), SASL_RES_OK);
	/* Embedded NUL in the password: the password ends at the first NUL
	 * for Cyrus, so this must not be taken as "alicepw". */
	assert_int_not_equal(plain(&conf, 1, B("\0alice\0alicepw\0x"), NULL,
				   NULL), SASL_RES_OK);
	assert_int_not_equal(plain(&conf, 1, B("\0alice\0alice"), NULL, NULL),
			     SASL_RES_OK);
}

/* Names: empty, blank or with control characters are malformed (Cyrus
 * alone would call blank names SASL_FAIL, i.e. temporary); surrounding
 * blanks are trimmed by Cyrus. */
static void
test_user_names(void **state)
{
	struct conf c = conf;
	struct sasl_session *ss;
	struct result r;

	(void)state;
	assert_int_equal(plain(&conf, 1, B("\0\0alicepw"), NULL, NULL),
			 SASL_RES_BADPROT);
	assert_int_equal(plain(&conf, 1, B("\0   \0alicepw"), NULL, NULL),
			 SASL_RES_BADPROT);
	assert_int_equal(plain(&conf, 1, B("\0ali\tce\0alicepw"), NULL, NULL),
			 SASL_RES_BADPROT);
	assert_int_equal(plain(&conf, 1, B(" \0alice\0alicepw"), NULL, NULL),
			 SASL_RES_BADPROT);
	assert_int_equal(plain(&conf, 1, B("\0 alice \0alicepw"), "alice",
			       "alice"), SASL_RES_OK);
	/* Even where any authzid is allowed, no CR LF gets through. */
	c.sasl.allow_authzid = 1;
	assert_int_equal(plain(&c, 1, B("bob\r\nX-Evil: 1\0alice\0alicepw"),
			       NULL, NULL), SASL_RES_BADPROT);
	assert_int_equal(plain(&c, 1, B("bob\x7f\0alice\0alicepw"),
			       NULL, NULL), SASL_RES_BADPROT);
	/* UTF-8 is a name like any other (here: not a known user). */
	assert_int_equal(plain(&conf, 1, B("\0al\xc3\xaf" "ce\0alicepw"), NULL,
			       NULL), SASL_RES_FAIL);

	/* 255 bytes is the longest name (the session's identity buffers
	 * hold 256); a longer one is malformed. */
	{
		char msg[300];

		memset(msg, 'a', sizeof(msg));
		msg[0] = '\0';
		memcpy(msg + 256, "\0alicepw", 8);
		assert_int_equal(plain(&conf, 1, msg, 264, NULL, NULL),
				 SASL_RES_FAIL);
		memmove(msg + 257, msg + 256, 8);
		msg[256] = 'a';
		assert_int_equal(plain(&conf, 1, msg, 265, NULL, NULL),
				 SASL_RES_BADPROT);
	}

	/* LOGIN: the name is checked before Cyrus sees the password (its
	 * plugin leaks the password when the name is refused later). */
	ss = new_session(1);
	r = start(ss, "LOGIN", B(" "), 1);
	assert_int_equal(r.res, SASL_RES_BADPROT);
	sasl_session_free(&ss);
	ss = new_session(1);
	r = start(ss, "LOGIN", B("al\nice"), 1);
	assert_int_equal(r.res, SASL_RES_BADPROT);
	sasl_session_free(&ss);
	ss = new_session(1);
	r = start(ss, "LOGIN", "", 0, 1);	/* "AUTH LOGIN =" */
	assert_int_equal(r.res, SASL_RES_CONTINUE);
	assert_memory_equal(r.out, "Username:", r.outlen);
	r = step(ss, "", 0);
	assert_int_equal(r.res, SASL_RES_BADPROT);
	sasl_session_free(&ss);
	ss = new_session(1);
	r = start(ss, "LOGIN", NULL, 0, 0);
	assert_int_equal(r.res, SASL_RES_CONTINUE);
	r = step(ss, B("   "));
	assert_int_equal(r.res, SASL_RES_BADPROT);
	sasl_session_free(&ss);
	ss = new_session(1);
	r = start(ss, "LOGIN", "", 0, 1);
	r = step(ss, B(" alice "));
	assert_int_equal(r.res, SASL_RES_CONTINUE);
	r = step(ss, B("alicepw"));
	assert_int_equal(r.res, SASL_RES_OK);
	assert_string_equal(sasl_session_authcid(ss), "alice");
	sasl_session_free(&ss);
	ss = new_session(1);
	r = start(ss, "SCRAM-SHA-256", B("n,,n=,r=abc"), 1);
	assert_int_equal(r.res, SASL_RES_BADPROT);
	sasl_session_free(&ss);
	ss = new_session(1);
	r = start(ss, "SCRAM-SHA-256", B("n,,n=a\rb,r=abc"), 1);
	assert_int_equal(r.res, SASL_RES_BADPROT);
	sasl_session_free(&ss);
}

/* Without TLS Cyrus refuses plaintext mechanisms (SASL_SEC_NOPLAINTEXT):
 * SASL_ENCRYPT, reported as SASL_RES_WEAK.  The SMTP layer answers 538
 * 5.7.11 before calling us; this only shows the refusal holds anyway. */
static void
test_plaintext_mechs_need_tls(void **state)
{
	struct sasl_session *ss;
	struct result r;

	(void)state;
	assert_int_equal(plain(&conf, 0, B("\0alice\0alicepw"), NULL, NULL),
			 SASL_RES_WEAK);
	ss = new_session(0);
	r = start(ss, "LOGIN", NULL, 0, 0);
	assert_int_equal(r.res, SASL_RES_WEAK);
	sasl_session_free(&ss);
	ss = new_session(0);
	r = start(ss, "PLAIN", NULL, 0, 0);
	assert_int_equal(r.res, SASL_RES_WEAK);
	sasl_session_free(&ss);
}

/* ------------------------------------------------------------------ */
/* LOGIN */

static void
test_login(void **state)
{
	struct sasl_session *ss = new_session(1);
	struct result r;

	(void)state;
	r = start(ss, "LOGIN", NULL, 0, 0);
	assert_int_equal(r.res, SASL_RES_CONTINUE);
	assert_int_equal(r.outlen, strlen("Username:"));
	assert_memory_equal(r.out, "Username:", r.outlen);
	r = step(ss, B("alice"));
	assert_int_equal(r.res, SASL_RES_CONTINUE);
	assert_int_equal(r.outlen, strlen("Password:"));
	assert_memory_equal(r.out, "Password:", r.outlen);
	r = step(ss, B("alicepw"));
	assert_int_equal(r.res, SASL_RES_OK);
	assert_string_equal(sasl_session_authcid(ss), "alice");
	assert_string_equal(sasl_session_authzid(ss), "alice");
	assert_string_equal(sasl_session_mech(ss), "LOGIN");
	sasl_session_free(&ss);

	/* The user name as initial response (what many clients send). */
	ss = new_session(1);
	r = start(ss, "LOGIN", B("bob"), 1);
	assert_int_equal(r.res, SASL_RES_CONTINUE);
	assert_memory_equal(r.out, "Password:", r.outlen);
	r = step(ss, B("bobpw"));
	assert_int_equal(r.res, SASL_RES_OK);
	assert_string_equal(sasl_session_authcid(ss), "bob");
	sasl_session_free(&ss);

	/* Wrong password. */
	ss = new_session(1);
	r = start(ss, "LOGIN", NULL, 0, 0);
	assert_int_equal(r.res, SASL_RES_CONTINUE);
	r = step(ss, B("alice"));
	assert_int_equal(r.res, SASL_RES_CONTINUE);
	r = step(ss, B("bobpw"));
	assert_int_equal(r.res, SASL_RES_FAIL);
	assert_null(sasl_session_authcid(ss));
	sasl_session_free(&ss);
}

/* ------------------------------------------------------------------ */
/* SCRAM-SHA-256, client side by Cyrus */

struct client_creds {
	const char *authcid;
	const char *authzid;
	const char *password;
	sasl_secret_t *secret;
};

static int
client_simple(void *context, int id, const char **result, unsigned *len)
{
	struct client_creds *cc = context;

	switch (id) {
	case SASL_CB_AUTHNAME:
		*result = cc->authcid;
		break;
	case SASL_CB_USER:
		*result = cc->authzid;
		break;
	default:
		return SASL_BADPARAM;
	}
	if (len != NULL)
		*len = (unsigned)strlen(*result);
	return SASL_OK;
}

static int
client_secret(sasl_conn_t *conn, void *context, int id,
	      sasl_secret_t **psecret)
{
	struct client_creds *cc = context;
	size_t len = strlen(cc->password);

	(void)conn;
	if (id != SASL_CB_PASS)
		return SASL_BADPARAM;
	if (cc->secret == NULL) {
		cc->secret = malloc(sizeof(sasl_secret_t) + len);
		if (cc->secret == NULL)
			return SASL_NOMEM;
		cc->secret->len = len;
		memcpy(cc->secret->data, cc->password, len + 1);
	}
	*psecret = cc->secret;
	return SASL_OK;
}

#define CB(f)	((int (*)(void))(void (*)(void))(f))

/*
 * A whole exchange: Cyrus client <-> sasl_session.  Returns our final
 * result; *steps_r counts the server answers.
 */
static enum sasl_result
client_exchange(struct sasl_session *ss, const char *mech,
		struct client_creds *cc, int *steps_r)
{
	sasl_callback_t cbs[] = {
		{ SASL_CB_AUTHNAME, CB(client_simple), cc },
		{ SASL_CB_USER, CB(client_simple), cc },
		{ SASL_CB_PASS, CB(client_secret), cc },
		{ SASL_CB_LIST_END, NULL, NULL },
	};
	sasl_security_properties_t sp;
	sasl_conn_t *cconn = NULL;
	const char *cout = NULL, *chosen = NULL;
	unsigned coutlen = 0;
	struct result r;
	int rc, steps = 0;

	assert_int_equal(sasl_client_new("smtp", HOSTNAME, NULL, NULL, cbs, 0,
					 &cconn), SASL_OK);
	memset(&sp, 0, sizeof(sp));
	assert_int_equal(sasl_setprop(cconn, SASL_SEC_PROPS, &sp), SASL_OK);
	rc = sasl_client_start(cconn, mech, NULL, &cout, &coutlen, &chosen);
	assert_true(rc == SASL_OK || rc == SASL_CONTINUE);
	assert_string_equal(chosen, mech);

	r = start(ss, mech, cout, coutlen, 1);
	steps++;
	while (r.res == SASL_RES_CONTINUE && steps < 10) {
		rc = sasl_client_step(cconn, r.out, (unsigned)r.outlen, NULL,
				      &cout, &coutlen);
		if (rc != SASL_OK && rc != SASL_CONTINUE) {
			/* The client gave up (e.g. bad server signature):
			 * it would send "*"; our session just gets freed. */
			break;
		}
		r = step(ss, cout, coutlen);
		steps++;
	}
	sasl_dispose(&cconn);
	if (cc->secret != NULL) {
		explicit_bzero(cc->secret->data, cc->secret->len);
		free(cc->secret);
		cc->secret = NULL;
	}
	if (steps_r != NULL)
		*steps_r = steps;
	return r.res;
}

static void
test_scram_sha256(void **state)
{
	struct client_creds cc = { "alice", "", "alicepw", NULL };
	struct sasl_session *ss;
	int steps = 0;

	(void)state;
	ss = new_session(1);
	assert_int_equal(client_exchange(ss, "SCRAM-SHA-256", &cc, &steps),
			 SASL_RES_OK);
	/* client-first -> server-first (334), client-final -> server-final
	 * (334 "v=...", RFC 4954 has no data on 235), empty -> 235. */
	assert_int_equal(steps, 3);
	assert_string_equal(sasl_session_authcid(ss), "alice");
	assert_string_equal(sasl_session_authzid(ss), "alice");
	assert_string_equal(sasl_session_mech(ss), "SCRAM-SHA-256");
	sasl_session_free(&ss);

	/* SCRAM is not a plaintext mechanism: fine without TLS. */
	ss = new_session(0);
	cc.authcid = "bob";
	cc.password = "bobpw";
	assert_int_equal(client_exchange(ss, "SCRAM-SHA-256", &cc, NULL),
			 SASL_RES_OK);
	assert_string_equal(sasl_session_authcid(ss), "bob");
	sasl_session_free(&ss);
}

static void
test_scram_bad_credentials(void **state)
{
	struct client_creds cc = { "alice", "", "bobpw", NULL };
	struct sasl_session *ss;
	struct result r;

	(void)state;
	ss = new_session(1);
	assert_int_equal(client_exchange(ss, "SCRAM-SHA-256", &cc, NULL),
			 SASL_RES_FAIL);
	assert_null(sasl_session_authcid(ss));
	sasl_session_free(&ss);

	/* Unknown user: FAIL too (Cyrus says so at the first step already). */
	cc.authcid = "mallory";
	ss = new_session(1);
	assert_int_equal(client_exchange(ss, "SCRAM-SHA-256", &cc, NULL),
			 SASL_RES_FAIL);
	sasl_session_free(&ss);

	/* Garbage instead of a client-first-message. */
	ss = new_session(1);
	r = start(ss, "SCRAM-SHA-256", B("hello"), 1);
	assert_int_equal(r.res, SASL_RES_BADPROT);
	sasl_session_free(&ss);
	ss = new_session(1);
	r = start(ss, "SCRAM-SHA-256", B("n,,n=alice,r=abc"), 1);
	assert_int_equal(r.res, SASL_RES_CONTINUE);
	r = step(ss, B("c=biws,r=wrongnonce,p=AAAA"));
	assert_int_not_equal(r.res, SASL_RES_OK);
	assert_int_not_equal(r.res, SASL_RES_CONTINUE);
	sasl_session_free(&ss);
}

/* ------------------------------------------------------------------ */
/* Authorization identity */

static void
test_authzid(void **state)
{
	struct conf c = conf;
	struct client_creds cc = { "alice", "bob", "alicepw", NULL };
	struct sasl_session *ss;
	struct result r;

	(void)state;
	/* alice acting as bob: refused by default. */
	assert_int_equal(plain(&conf, 1, B("bob\0alice\0alicepw"), NULL, NULL),
			 SASL_RES_AUTHZ);
	/* ... but a wrong password stays a plain failure. */
	assert_int_equal(plain(&conf, 1, B("bob\0alice\0wrong"), NULL, NULL),
			 SASL_RES_FAIL);
	/* Case matters: "ALICE" is another identity. */
	assert_int_equal(plain(&conf, 1, B("ALICE\0alice\0alicepw"), NULL,
			       NULL), SASL_RES_AUTHZ);
	ss = new_session(1);
	assert_int_equal(client_exchange(ss, "SCRAM-SHA-256", &cc, NULL),
			 SASL_RES_AUTHZ);
	assert_null(sasl_session_authzid(ss));
	sasl_session_free(&ss);

	/* LOGIN has no authzid. */
	ss = new_session(1);
	r = start(ss, "LOGIN", B("alice"), 1);
	r = step(ss, B("alicepw"));
	assert_int_equal(r.res, SASL_RES_OK);
	sasl_session_free(&ss);

	/* allow_authzid: accepted, both identities reported. */
	c.sasl.allow_authzid = 1;
	assert_int_equal(plain(&c, 1, B("bob\0alice\0alicepw"), "alice", "bob"),
			 SASL_RES_OK);
	ss = new_session_with(&c, &peer_tls);
	assert_int_equal(client_exchange(ss, "SCRAM-SHA-256", &cc, NULL),
			 SASL_RES_OK);
	assert_string_equal(sasl_session_authcid(ss), "alice");
	assert_string_equal(sasl_session_authzid(ss), "bob");
	sasl_session_free(&ss);
}

/* ------------------------------------------------------------------ */
/* Mechanism names */

static void
test_mechanism_names(void **state)
{
	static const char *const refused[] = {
		"CRAM-MD5",		/* a plugin exists, not configured */
		"DIGEST-MD5", "ANONYMOUS", "EXTERNAL",
		"X-UNKNOWN",
		"", "PL AIN", "PLAIN\r\n", "PLAIN=",
		"ABCDEFGHIJKLMNOPQRSTU",	/* 21 characters */
		"PL\xc3\x84IN",
	};
	struct sasl_session *ss;
	struct result r;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		ss = new_session(1);
		r = start(ss, refused[i], NULL, 0, 0);
		if (r.res != SASL_RES_NOMECH)
			fail_msg("mechanism '%s': %d (%s)", refused[i], r.res,
				 r.reason);
		sasl_session_free(&ss);
	}
	/* NULL mechanism. */
	ss = new_session(1);
	r = start(ss, NULL, NULL, 0, 0);
	assert_int_equal(r.res, SASL_RES_NOMECH);
	sasl_session_free(&ss);

	/* Mechanism names are case-blind; reported upper case. */
	ss = new_session(1);
	r = start(ss, "plain", B("\0alice\0alicepw"), 1);
	assert_int_equal(r.res, SASL_RES_OK);
	assert_string_equal(sasl_session_mech(ss), "PLAIN");
	sasl_session_free(&ss);
}

/* Configured mechanisms bind per session: a conf without PLAIN refuses it. */
static void
test_session_mech_list(void **state)
{
	struct conf c = conf;
	struct sasl_session *ss;
	struct result r;

	(void)state;
	snprintf(c.sasl.mechanisms, sizeof(c.sasl.mechanisms), "LOGIN");
	ss = new_session_with(&c, &peer_tls);
	r = start(ss, "PLAIN", B("\0alice\0alicepw"), 1);
	assert_int_equal(r.res, SASL_RES_NOMECH);
	sasl_session_free(&ss);
	c.sasl.mechanisms[0] = '\0';
	ss = new_session_with(&c, &peer_tls);
	r = start(ss, "LOGIN", NULL, 0, 0);
	assert_int_equal(r.res, SASL_RES_NOMECH);
	sasl_session_free(&ss);
}

/* ------------------------------------------------------------------ */
/* Realms and user stores */

static void
test_realm_shapes(void **state)
{
	struct conf c = conf;

	(void)state;
	/* carol lives in realm other.test, not in HOSTNAME. */
	assert_int_equal(plain(&conf, 1, B("\0carol\0carolpw"), NULL, NULL),
			 SASL_RES_FAIL);
	assert_int_equal(plain(&conf, 1, B("\0carol@other.test\0carolpw"),
			       "carol@other.test", "carol@other.test"),
			 SASL_RES_OK);
	/* alice@HOSTNAME is alice, but keeps the spelling she logged in
	 * with (sasl_canonical_identity strips the realm later). */
	assert_int_equal(plain(&conf, 1, B("\0alice@" HOSTNAME "\0alicepw"),
			       "alice@" HOSTNAME, "alice@" HOSTNAME),
			 SASL_RES_OK);
	/* Without sasl.hostname, server_name is serverFQDN and so the realm
	 * of bare names: alice (in HOSTNAME) is not found. */
	c.sasl.hostname[0] = '\0';
	assert_int_equal(plain(&c, 1, B("\0alice\0alicepw"), NULL, NULL),
			 SASL_RES_FAIL);
	assert_int_equal(plain(&c, 1, B("\0alice@" HOSTNAME "\0alicepw"),
			       "alice@" HOSTNAME, "alice@" HOSTNAME),
			 SASL_RES_OK);
}

static void
test_user_store_problems(void **state)
{
	struct conf c = conf;

	(void)state;
	/* No sasldb configured: nobody (not even /etc/sasldb2's users).
	 * Offering a password mechanism then is a configuration error:
	 * temporary, whatever the credentials. */
	c.sasl.sasldb_path[0] = '\0';
	assert_int_equal(plain(&c, 1, B("\0alice\0alicepw"), NULL, NULL),
			 SASL_RES_TEMP);
	assert_int_equal(plain(&c, 1, B("\0alice\0wrong"), NULL, NULL),
			 SASL_RES_TEMP);
	/* A sasldb that does not exist: Cyrus says NOUSER. */
	snprintf(c.sasl.sasldb_path, sizeof(c.sasl.sasldb_path),
		 "%s/missing", tmpdir);
	assert_int_equal(plain(&c, 1, B("\0alice\0alicepw"), NULL, NULL),
			 SASL_RES_FAIL);
	/* One that cannot be opened (a directory): our problem, not the
	 * client's, so temporary. */
	snprintf(c.sasl.sasldb_path, sizeof(c.sasl.sasldb_path), "%s",
		 tmpdir);
	assert_int_equal(plain(&c, 1, B("\0alice\0alicepw"), NULL, NULL),
			 SASL_RES_TEMP);
	{
		struct sasl_session *ss = new_session_with(&c, &peer_tls);
		struct result r = start(ss, "LOGIN", B("alice"), 1);

		assert_int_equal(r.res, SASL_RES_CONTINUE);
		r = step(ss, B("alicepw"));
		assert_int_equal(r.res, SASL_RES_TEMP);
		sasl_session_free(&ss);
	}
	{
		struct client_creds cc = { "alice", "", "alicepw", NULL };
		struct sasl_session *ss = new_session_with(&c, &peer_tls);

		assert_int_equal(client_exchange(ss, "SCRAM-SHA-256", &cc,
						 NULL), SASL_RES_TEMP);
		sasl_session_free(&ss);
	}
}

/* ------------------------------------------------------------------ */
/* Misuse and limits */

static void
test_misuse(void **state)
{
	struct sasl_session *ss;
	struct result r;
	char *big;

	(void)state;
	/* Step before start. */
	ss = new_session(1);
	r = step(ss, B("x"));
	assert_int_not_equal(r.res, SASL_RES_OK);
	assert_int_not_equal(r.res, SASL_RES_CONTINUE);
	sasl_session_free(&ss);

	/* A second start during an exchange. */
	ss = new_session(1);
	r = start(ss, "LOGIN", NULL, 0, 0);
	assert_int_equal(r.res, SASL_RES_CONTINUE);
	r = start(ss, "PLAIN", B("\0alice\0alicepw"), 1);
	assert_int_not_equal(r.res, SASL_RES_OK);
	sasl_session_free(&ss);

	/* Absurdly long client data. */
	big = calloc(1, 300 * 1024);
	assert_non_null(big);
	ss = new_session(1);
	r = start(ss, "PLAIN", big, 300 * 1024, 1);
	assert_int_equal(r.res, SASL_RES_BADPROT);
	sasl_session_free(&ss);
	ss = new_session(1);
	r = start(ss, "LOGIN", NULL, 0, 0);
	r = step(ss, big, 300 * 1024);
	assert_int_equal(r.res, SASL_RES_BADPROT);
	sasl_session_free(&ss);
	free(big);

	/* A user name longer than Cyrus' buffers. */
	big = malloc(5000);
	assert_non_null(big);
	memset(big, 'a', 5000);
	big[0] = '\0';
	big[4000] = '\0';
	assert_int_not_equal(plain(&conf, 1, big, 5000, NULL, NULL),
			     SASL_RES_OK);
	free(big);

	/* Freeing NULL and twice. */
	ss = NULL;
	sasl_session_free(&ss);
	sasl_session_free(NULL);
}

/* Peer addresses: IPv6, none (unix socket), external SSF and identity. */
static void
test_peer_variants(void **state)
{
	const struct sasl_peer v6 = { "::1", 587, "2001:db8::7", 1234, 1, 128,
				      NULL };
	const struct sasl_peer none = { NULL, 0, NULL, 0, 1, 256,
					"CN=client" };

	(void)state;
	{
		struct sasl_session *ss = new_session_with(&conf, &v6);
		struct result r = start(ss, "PLAIN", B("\0bob\0bobpw"), 1);

		assert_int_equal(r.res, SASL_RES_OK);
		sasl_session_free(&ss);
	}
	{
		struct sasl_session *ss = new_session_with(&conf, &none);
		struct result r = start(ss, "PLAIN", B("\0bob\0bobpw"), 1);

		assert_int_equal(r.res, SASL_RES_OK);
		sasl_session_free(&ss);
	}
}

/* ------------------------------------------------------------------ */
/* Listing */

static void
test_available_mechanisms(void **state)
{
	static const struct {
		const char *wanted;
		int tls;
		const char *expect;
	} cases[] = {
		{ MECHS, 1, "SCRAM-SHA-256 PLAIN LOGIN GSSAPI" },
		{ MECHS, 0, "SCRAM-SHA-256 GSSAPI" },
		{ "LOGIN PLAIN", 1, "LOGIN PLAIN" },
		{ "PLAIN LOGIN", 1, "PLAIN LOGIN" },
		{ "LOGIN PLAIN", 0, "" },
		{ "GSSAPI SCRAM-SHA-256", 1, "GSSAPI SCRAM-SHA-256" },
		{ "plain  scram-sha-256", 1, "PLAIN SCRAM-SHA-256" },
		{ "PLAIN PLAIN LOGIN plain", 1, "PLAIN LOGIN" },
		{ "X-UNKNOWN PLAIN", 1, "PLAIN" },
		{ "ANONYMOUS PLAIN", 1, "PLAIN" },	/* NOANONYMOUS */
		{ "CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256", 1,
		  "CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256" },
		{ "", 1, "" },
		{ "   ", 1, "" },
	};
	char out[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sasl_available_mechanisms(cases[i].wanted, cases[i].tls, out,
					  sizeof(out));
		if (strcmp(out, cases[i].expect) != 0)
			fail_msg("'%s' tls=%d: got '%s', want '%s'",
				 cases[i].wanted, cases[i].tls, out,
				 cases[i].expect);
	}
	/* Small buffers: whole names only. */
	sasl_available_mechanisms("PLAIN LOGIN", 1, out, 11);
	assert_string_equal(out, "PLAIN");
	sasl_available_mechanisms("PLAIN LOGIN", 1, out, 12);
	assert_string_equal(out, "PLAIN LOGIN");
	sasl_available_mechanisms("PLAIN LOGIN", 1, out, 5);
	assert_string_equal(out, "");
	sasl_available_mechanisms(NULL, 1, out, sizeof(out));
	assert_string_equal(out, "");
}

/* ------------------------------------------------------------------ */
/* Canonical identity */

static void
test_canonical_identity(void **state)
{
	static const struct {
		const char *authzid;
		const char *realm;
		const char *expect;
	} cases[] = {
		{ "alice", "LAB.TEST", "alice" },
		{ "alice@LAB.TEST", "LAB.TEST", "alice" },
		{ "alice@lab.test", "LAB.TEST", "alice" },
		{ "alice@LAB.TEST", "lab.test", "alice" },
		{ "carol@OTHER.TEST", "LAB.TEST", "carol@OTHER.TEST" },
		{ "alice@LAB.TEST.EVIL", "LAB.TEST", "alice@LAB.TEST.EVIL" },
		{ "alice@SUB.LAB.TEST", "LAB.TEST", "alice@SUB.LAB.TEST" },
		{ "alice@", "LAB.TEST", "alice@" },
		{ "@LAB.TEST", "LAB.TEST", "@LAB.TEST" },
		{ "a@b@LAB.TEST", "LAB.TEST", "a@b" },
		{ "alice@LAB.TEST@OTHER", "LAB.TEST", "alice@LAB.TEST@OTHER" },
		{ "alice@LAB.TEST", "", "alice@LAB.TEST" },
		{ "alice@LAB.TEST", NULL, "alice@LAB.TEST" },
		{ "", "LAB.TEST", "" },
		{ NULL, "LAB.TEST", "" },
	};
	char out[64];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(out, 'x', sizeof(out));
		sasl_canonical_identity(cases[i].authzid, cases[i].realm, out,
					sizeof(out));
		if (strcmp(out, cases[i].expect) != 0)
			fail_msg("'%s' realm '%s': got '%s', want '%s'",
				 cases[i].authzid ? cases[i].authzid : "(null)",
				 cases[i].realm ? cases[i].realm : "(null)",
				 out, cases[i].expect);
	}
	/* Never truncated: too small gives "". */
	sasl_canonical_identity("alice@OTHER", "LAB.TEST", out, 11);
	assert_string_equal(out, "");
	sasl_canonical_identity("alice@OTHER", "LAB.TEST", out, 12);
	assert_string_equal(out, "alice@OTHER");
	sasl_canonical_identity("alice@LAB.TEST", "LAB.TEST", out, 6);
	assert_string_equal(out, "alice");
	sasl_canonical_identity("alice@LAB.TEST", "LAB.TEST", out, 5);
	assert_string_equal(out, "");
	out[0] = 'x';
	sasl_canonical_identity("alice", "LAB.TEST", out, 0);
	assert_int_equal(out[0], 'x');
}

/* ------------------------------------------------------------------ */
/* Logging */

static int
file_contains(const char *path, const char *needle)
{
	char buf[65536];
	size_t n;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

static void
test_no_secrets_in_log(void **state)
{
	struct conf_log lc;
	struct client_creds cc = { "alice", "", "S3cretScram", NULL };
	struct sasl_session *ss;
	struct result r;

	(void)state;
	memset(&lc, 0, sizeof(lc));
	lc.dest = LOG_DEST_FILE;
	lc.level = LOG_DEBUG;
	snprintf(lc.file, sizeof(lc.file), "%s", logpath);
	assert_int_equal(log_open(&lc, 1), 0);

	assert_int_equal(plain(&conf, 1, B("\0alice\0S3cretPlain"), NULL,
			       NULL), SASL_RES_FAIL);
	assert_int_equal(plain(&conf, 1, B("\0nosuchuser\0S3cretPlain2"), NULL,
			       NULL), SASL_RES_FAIL);
	ss = new_session(1);
	r = start(ss, "LOGIN", B("alice"), 1);
	r = step(ss, B("S3cretLogin"));
	assert_int_equal(r.res, SASL_RES_FAIL);
	sasl_session_free(&ss);
	ss = new_session(1);
	assert_int_equal(client_exchange(ss, "SCRAM-SHA-256", &cc, NULL),
			 SASL_RES_FAIL);
	sasl_session_free(&ss);
	/* A control character in a mechanism name reaches Cyrus' log
	 * escaped, if at all. */
	ss = new_session(1);
	r = start(ss, "X-EVIL", NULL, 0, 0);
	sasl_session_free(&ss);

	lc.dest = LOG_DEST_STDERR;
	lc.level = LOG_ERR;
	log_open(&lc, 1);

	assert_false(file_contains(logpath, "S3cret"));
	assert_false(file_contains(logpath, "alicepw"));
}

/*
 * Sanitizer builds (configure --enable-asan): Cyrus leaks a little memory
 * once per process while sasl_server_init()/sasl_client_init() load the
 * plugins (tests/unit/valgrind-sasl.supp says the same for valgrind).  The
 * plugins are unloaded by then and built without frame pointers, so the
 * stacks are only recognizable with the slow unwinder.  Nothing per session
 * is suppressed.  Without a sanitizer these functions are never called.
 */
const char *__asan_default_options(void);
const char *__lsan_default_suppressions(void);

const char *
__asan_default_options(void)
{
	return "fast_unwind_on_malloc=0";
}

const char *
__lsan_default_suppressions(void)
{
	return "leak:sasl_server_add_plugin\n"
	       "leak:sasl_client_add_plugin\n";
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_ok),
		cmocka_unit_test(test_plain_no_initial_response),
		cmocka_unit_test(test_plain_bad_credentials),
		cmocka_unit_test(test_plain_malformed),
		cmocka_unit_test(test_user_names),
		cmocka_unit_test(test_plaintext_mechs_need_tls),
		cmocka_unit_test(test_login),
		cmocka_unit_test(test_scram_sha256),
		cmocka_unit_test(test_scram_bad_credentials),
		cmocka_unit_test(test_authzid),
		cmocka_unit_test(test_mechanism_names),
		cmocka_unit_test(test_session_mech_list),
		cmocka_unit_test(test_realm_shapes),
		cmocka_unit_test(test_user_store_problems),
		cmocka_unit_test(test_misuse),
		cmocka_unit_test(test_peer_variants),
		cmocka_unit_test(test_available_mechanisms),
		cmocka_unit_test(test_canonical_identity),
		cmocka_unit_test(test_no_secrets_in_log),
	};

	if (saslpasswd2_path() == NULL) {
		fprintf(stderr, "test_sasl: saslpasswd2 not found "
			"(Debian package sasl2-bin): skipped\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
