/*
 * krb_creds.c - msaproxy's own Kerberos credentials (client keytab, MEMORY
 * ccache, refreshed by a thread) and the RFC 4752 SASL GSSAPI client.
 *
 * The refresher thread, per attempt:
 *   1. a fresh MEMORY ccache with a process-unique name;
 *   2. gss_acquire_cred_from(name, {client_keytab, ccache}): MIT krb5 1.20
 *      does the AS exchange right there, because the named ccache is empty
 *      and the client keytab has a key for the name (acquire_init_cred ->
 *      maybe_get_initial_cred);
 *   3. per configured service: its name canonicalized for krb5 (the DNS
 *      lookups MIT may do for host-based names happen here), then one
 *      gss_init_sec_context() on a throwaway context, with the same flags
 *      as the real exchange: the TGS exchange puts the service ticket into
 *      the ccache under exactly the name the event loop will use (the
 *      canonical name is published with the credential and reused);
 *   4. gss_inquire_cred() for the name and lifetime, and a scan of the
 *      ccache for the shortest ticket (a service may have a shorter maximum
 *      life than the TGT): the next refresh is at half of that;
 *   5. publish: swap under the mutex; the old credential goes when its last
 *      user (a gssapi_client in the middle of an exchange) lets it go.
 * A failure keeps the previous credential (valid until it expires) and
 * retries after 5 s, 10 s, ... 5 min.
 *
 * MIT 1.20 would also refresh a client-keytab credential by itself inside
 * gss_init_sec_context() (on the event loop!) once its "refresh_time" has
 * passed - but only for a credential whose ccache held that setting when it
 * was acquired (scan_ccache); ours are acquired from an empty ccache, so the
 * library never refreshes them behind our back: only the refresher talks to
 * the KDC for them.
 *
 * A published credential (struct cred_ref) is immutable and reference
 * counted: one reference for being published, one per gssapi_client.  It
 * owns a krb5_context of its own used only for its ccache (to scan it in
 * the refresher, to destroy it on the last release, in whatever thread that
 * happens, never concurrently).  A released gss credential only closes its
 * ccache handle; MEMORY ccaches live until destroyed, so the last release
 * destroys it (otherwise every refresh would leak a ccache full of tickets).
 */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gssapi/gssapi.h>
#include <gssapi/gssapi_ext.h>
#include <gssapi/gssapi_krb5.h>
#include <krb5.h>

#include "krb_creds.h"
#include "log.h"

#define BACKOFF_MIN	5	/* seconds before the first retry */
#define BACKOFF_MAX	300	/* retries never further apart than this */
#define REFRESH_MIN	5	/* never refresh more often (very short tickets) */
#define NAME_MAX_LEN	256	/* principal and service names */
#define AUTHZID_MAX	1024
/* RFC 4752 3.1: security layer bit masks. */
#define SECLAYER_NONE	0x01

/* What the real exchange and the pre-fetch ask for (RFC 4752 3.1: integrity
 * MUST be requested; mutual authentication so the server proves who it is;
 * never GSS_C_DELEG_FLAG: our TGT stays ours). */
#define CLIENT_FLAGS	(GSS_C_MUTUAL_FLAG | GSS_C_INTEG_FLAG)

struct cred_ref {
	unsigned refs;			/* atomic */
	gss_cred_id_t cred;
	krb5_context kctx;		/* for cc only */
	krb5_ccache cc;			/* our handle on the MEMORY ccache */
	time_t expires;			/* end of the shortest ticket (wall) */
	char ccname[96];
	/* services[i] of the krb_creds, canonicalized for krb5 (host name
	 * looked up as krb5.conf says) by the refresher; NULL if that failed.
	 * Read-only once published: every exchange uses these very names. */
	size_t nnames;
	gss_name_t names[KRB_CREDS_MAX_SERVICES];
};

struct krb_creds {
	pthread_mutex_t mu;
	pthread_cond_t cv;		/* wakes the refresher to stop */
	int stopping;			/* under mu */
	struct cred_ref *cur;		/* under mu; NULL until the first success */
	pthread_t thread;
	char principal[NAME_MAX_LEN];	/* canonical, with realm */
	char keytab[1024];
	size_t nservices;
	char services[KRB_CREDS_MAX_SERVICES][NAME_MAX_LEN];
};

struct gssapi_client {
	struct cred_ref *ref;
	gss_name_t target;
	int own_target;			/* else borrowed from ref->names */
	gss_ctx_id_t ctx;
	enum { GC_CONTEXT, GC_SECLAYER, GC_DONE, GC_FAILED } state;
	size_t authzid_len;
	char authzid[AUTHZID_MAX];
	char err[512];
};

static unsigned ccache_seq;		/* atomic: unique MEMORY names */

/* ------------------------------------------------------------------ */
/* Helpers */

/* "what: <GSS major text>: <mechanism minor text>", sanitized for the log.
 * MIT keeps the extended minor text per thread: call this in the thread
 * that made the failing call, right after it. */
static void
gss_error_text(char *buf, size_t size, const char *what, OM_uint32 major,
	       OM_uint32 minor)
{
	char raw[1024];
	size_t len;
	int pass;

	len = (size_t)snprintf(raw, sizeof(raw), "%s", what);
	for (pass = 0; pass < 2; pass++) {
		OM_uint32 code = pass == 0 ? major : minor;
		int type = pass == 0 ? GSS_C_GSS_CODE : GSS_C_MECH_CODE;
		OM_uint32 mctx = 0, maj, min;
		gss_buffer_desc msg;

		if (code == 0)
			continue;
		do {
			maj = gss_display_status(&min, code, type, gss_mech_krb5,
						 &mctx, &msg);
			if (GSS_ERROR(maj))
				break;
			if (len < sizeof(raw))
				len += (size_t)snprintf(raw + len,
				    sizeof(raw) - len, ": %.*s",
				    (int)msg.length, (const char *)msg.value);
			gss_release_buffer(&min, &msg);
		} while (mctx != 0);
	}
	if (len >= sizeof(raw))
		len = sizeof(raw) - 1;
	log_sanitize(buf, size, raw, len);
}

static int
printable_name(const char *s, size_t max)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (i >= max || ch <= 0x20 || ch >= 0x7f)
			return 0;
	}
	return i > 0;
}

/* "service@host": both parts non-empty and printable. */
static int
valid_service_name(const char *s)
{
	const char *at;

	if (!printable_name(s, NAME_MAX_LEN - 1))
		return 0;
	at = strchr(s, '@');
	return at != NULL && at != s && at[1] != '\0' &&
	    strchr(at + 1, '@') == NULL;
}

static void
fmt_utc(char *buf, size_t size, time_t t)
{
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, size, "%lld", (long long)t);
}

/* ------------------------------------------------------------------ */
/* Published credentials */

static void
cred_ref_destroy(struct cred_ref *r)
{
	OM_uint32 min;
	size_t i;

	for (i = 0; i < r->nnames; i++)
		if (r->names[i] != GSS_C_NO_NAME)
			gss_release_name(&min, &r->names[i]);
	if (r->cred != GSS_C_NO_CREDENTIAL)
		gss_release_cred(&min, &r->cred);
	if (r->cc != NULL)
		krb5_cc_destroy(r->kctx, r->cc);	/* empties and frees it */
	if (r->kctx != NULL)
		krb5_free_context(r->kctx);
	free(r);
}

static void
cred_ref_put(struct cred_ref *r)
{
	if (r != NULL && __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0)
		cred_ref_destroy(r);
}

/* A new reference on the published credential if it is usable now. */
static struct cred_ref *
cred_ref_get_ready(struct krb_creds *c)
{
	struct cred_ref *r;

	pthread_mutex_lock(&c->mu);
	r = c->cur;
	if (r != NULL && time(NULL) + KRB_CREDS_MIN_VALID < r->expires)
		__atomic_add_fetch(&r->refs, 1, __ATOMIC_ACQ_REL);
	else
		r = NULL;
	pthread_mutex_unlock(&c->mu);
	return r;
}

int
krb_creds_ready(struct krb_creds *c)
{
	int ready;

	if (c == NULL)
		return 0;
	pthread_mutex_lock(&c->mu);
	ready = c->cur != NULL &&
	    time(NULL) + KRB_CREDS_MIN_VALID < c->cur->expires;
	pthread_mutex_unlock(&c->mu);
	return ready;
}

/* ------------------------------------------------------------------ */
/* The refresher thread */

static int
is_stopping(struct krb_creds *c)
{
	int stop;

	pthread_mutex_lock(&c->mu);
	stop = c->stopping;
	pthread_mutex_unlock(&c->mu);
	return stop;
}

/* "service@host" as a krb5 mechanism name in *name_r: the host name is
 * canonicalized here (DNS with dns_canonicalize_hostname = true), once, in
 * the refresher; gss_init_sec_context() on a mechanism name of its own mech
 * uses it as is (the mechglue re-imports, and so looks up again, only names
 * that are not).  0 or -1 (err filled). */
static int
canonical_name(const char *service, gss_name_t *name_r, char *err,
	       size_t errsize)
{
	gss_buffer_desc nb;
	gss_name_t n = GSS_C_NO_NAME;
	OM_uint32 maj, min, junk;

	*name_r = GSS_C_NO_NAME;
	nb.value = (void *)service;
	nb.length = strlen(service);
	maj = gss_import_name(&min, &nb, GSS_C_NT_HOSTBASED_SERVICE, &n);
	if (GSS_ERROR(maj)) {
		gss_error_text(err, errsize, "gss_import_name", maj, min);
		return -1;
	}
	maj = gss_canonicalize_name(&min, n, gss_mech_krb5, name_r);
	gss_release_name(&junk, &n);
	if (GSS_ERROR(maj)) {
		*name_r = GSS_C_NO_NAME;
		gss_error_text(err, errsize, "gss_canonicalize_name", maj, min);
		return -1;
	}
	return 0;
}

/* Put a ticket for target into cred's ccache the way the event loop will
 * look for it.  0 or -1 (err filled). */
static int
prefetch(gss_cred_id_t cred, gss_name_t target, char *err, size_t errsize)
{
	gss_buffer_desc out = GSS_C_EMPTY_BUFFER;
	gss_ctx_id_t ctx = GSS_C_NO_CONTEXT;
	OM_uint32 maj, min, junk;
	int rc = -1;

	maj = gss_init_sec_context(&min, cred, &ctx, target, gss_mech_krb5,
				   CLIENT_FLAGS, 0, GSS_C_NO_CHANNEL_BINDINGS,
				   GSS_C_NO_BUFFER, NULL, &out, NULL, NULL);
	if (GSS_ERROR(maj))
		gss_error_text(err, errsize, "gss_init_sec_context", maj, min);
	else
		rc = 0;
	gss_release_buffer(&junk, &out);
	if (ctx != GSS_C_NO_CONTEXT)
		gss_delete_sec_context(&junk, &ctx, GSS_C_NO_BUFFER);
	return rc;
}

/* End of the shortest ticket in r's ccache (config entries aside), or
 * `fallback` if it cannot be read. */
static time_t
shortest_ticket_end(struct cred_ref *r, time_t fallback)
{
	krb5_cc_cursor cur;
	krb5_creds kc;
	time_t best = 0;

	if (krb5_cc_start_seq_get(r->kctx, r->cc, &cur) != 0)
		return fallback;
	while (krb5_cc_next_cred(r->kctx, r->cc, &cur, &kc) == 0) {
		if (!krb5_is_config_principal(r->kctx, kc.server)) {
			/* krb5_timestamp is unsigned seconds on the wire */
			time_t end = (time_t)(uint32_t)kc.times.endtime;
			if (best == 0 || end < best)
				best = end;
		}
		krb5_free_cred_contents(r->kctx, &kc);
	}
	krb5_cc_end_seq_get(r->kctx, r->cc, &cur);
	return best != 0 ? best : fallback;
}

/* One acquisition: a new credential with one reference, or NULL (err
 * filled).  *failed_r: services whose pre-fetch failed. */
static struct cred_ref *
acquire(struct krb_creds *c, size_t *failed_r, char *err, size_t errsize)
{
	gss_key_value_element_desc elems[2];
	gss_key_value_set_desc store;
	gss_buffer_desc nb, shown = GSS_C_EMPTY_BUFFER;
	gss_name_t name = GSS_C_NO_NAME, got = GSS_C_NO_NAME;
	struct cred_ref *r;
	OM_uint32 maj, min, junk, lifetime = 0;
	char serr[512], who[NAME_MAX_LEN], until[32];
	time_t now, end;
	size_t i;

	*failed_r = 0;
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		snprintf(err, errsize, "out of memory");
		return NULL;
	}
	r->refs = 1;
	r->cred = GSS_C_NO_CREDENTIAL;
	snprintf(r->ccname, sizeof(r->ccname), "MEMORY:msaproxy-krb-%ld-%u",
		 (long)getpid(),
		 __atomic_add_fetch(&ccache_seq, 1, __ATOMIC_RELAXED));
	if (krb5_init_context(&r->kctx) != 0) {
		r->kctx = NULL;
		snprintf(err, errsize, "krb5_init_context failed");
		goto fail;
	}
	if (krb5_cc_resolve(r->kctx, r->ccname, &r->cc) != 0) {
		r->cc = NULL;
		snprintf(err, errsize, "cannot create a MEMORY ccache");
		goto fail;
	}

	nb.value = c->principal;
	nb.length = strlen(c->principal);
	maj = gss_import_name(&min, &nb, GSS_KRB5_NT_PRINCIPAL_NAME, &name);
	if (GSS_ERROR(maj)) {
		gss_error_text(err, errsize, "gss_import_name", maj, min);
		goto fail;
	}
	elems[0].key = "client_keytab";
	elems[0].value = c->keytab;
	elems[1].key = "ccache";
	elems[1].value = r->ccname;
	store.count = 2;
	store.elements = elems;
	/* The AS exchange with the KDC happens in here (blocking). */
	maj = gss_acquire_cred_from(&min, name, GSS_C_INDEFINITE,
				    gss_mech_set_krb5, GSS_C_INITIATE, &store,
				    &r->cred, NULL, NULL);
	gss_release_name(&junk, &name);
	if (GSS_ERROR(maj)) {
		r->cred = GSS_C_NO_CREDENTIAL;
		gss_error_text(err, errsize, "gss_acquire_cred_from", maj, min);
		goto fail;
	}

	/* TGS exchanges, one per service. */
	r->nnames = c->nservices;
	for (i = 0; i < c->nservices; i++) {
		/* Each exchange may wait for MIT's KDC timeouts: do not make
		 * krb_creds_free() wait for all of them. */
		if (is_stopping(c)) {
			snprintf(err, errsize, "stopping");
			goto fail;
		}
		if (canonical_name(c->services[i], &r->names[i], serr,
				   sizeof(serr)) < 0 ||
		    prefetch(r->cred, r->names[i], serr, sizeof(serr)) < 0) {
			(*failed_r)++;
			log_warn("kerberos: no ticket for service %s as %s: %s",
				 c->services[i], c->principal, serr);
		}
	}

	maj = gss_inquire_cred(&min, r->cred, &got, &lifetime, NULL, NULL);
	if (GSS_ERROR(maj)) {
		gss_error_text(err, errsize, "gss_inquire_cred", maj, min);
		goto fail;
	}
	if (lifetime == 0) {
		gss_release_name(&junk, &got);
		snprintf(err, errsize, "the KDC issued an expired ticket");
		goto fail;
	}
	if (!GSS_ERROR(gss_display_name(&min, got, &shown, NULL)))
		log_sanitize(who, sizeof(who), shown.value, shown.length);
	else
		snprintf(who, sizeof(who), "%s", c->principal);
	gss_release_buffer(&junk, &shown);
	gss_release_name(&junk, &got);

	now = time(NULL);
	end = now + (lifetime == GSS_C_INDEFINITE ? 86400 : (time_t)lifetime);
	r->expires = shortest_ticket_end(r, end);
	if (r->expires > end)
		r->expires = end;
	fmt_utc(until, sizeof(until), r->expires);
	log_info("kerberos: credentials of %s acquired: valid until %s (%lld s),"
		 " %zu of %zu service tickets", who, until,
		 (long long)(r->expires - now), c->nservices - *failed_r,
		 c->nservices);
	return r;

fail:
	cred_ref_destroy(r);
	return NULL;
}

/* Sleep `secs` seconds or until stopping; 1 if stopping. */
static int
wait_or_stop(struct krb_creds *c, unsigned secs)
{
	struct timespec ts;
	int stop;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += secs;
	pthread_mutex_lock(&c->mu);
	while (!c->stopping &&
	       pthread_cond_timedwait(&c->cv, &c->mu, &ts) != ETIMEDOUT)
		;
	stop = c->stopping;
	pthread_mutex_unlock(&c->mu);
	return stop;
}

static void *
refresher_main(void *arg)
{
	struct krb_creds *c = arg;
	unsigned backoff = BACKOFF_MIN, delay;
	char err[512];

	for (;;) {
		struct cred_ref *r, *old = NULL;
		size_t failed = 0;
		char ktname[256];

		r = acquire(c, &failed, err, sizeof(err));
		if (is_stopping(c)) {
			if (r != NULL)
				cred_ref_put(r);
			break;
		}
		if (r != NULL) {
			time_t left = r->expires - time(NULL);

			pthread_mutex_lock(&c->mu);
			old = c->cur;
			c->cur = r;
			pthread_mutex_unlock(&c->mu);
			cred_ref_put(old);	/* destroyed here unless in use */
			delay = left / 2 > REFRESH_MIN ? (unsigned)(left / 2) :
			    REFRESH_MIN;
			if (failed == 0) {
				backoff = BACKOFF_MIN;
			} else {
				/* Retry the missing tickets sooner. */
				if (backoff < delay)
					delay = backoff;
				backoff = backoff * 2 > BACKOFF_MAX ?
				    BACKOFF_MAX : backoff * 2;
			}
			log_info("kerberos: next refresh of %s in %u s",
				 c->principal, delay);
		} else {
			delay = backoff;
			backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX :
			    backoff * 2;
			log_sanitize(ktname, sizeof(ktname), c->keytab,
				     strlen(c->keytab));
			log_warn("kerberos: cannot acquire credentials of %s "
				 "from keytab %s: %s; %s, retrying in %u s",
				 c->principal, ktname, err,
				 krb_creds_ready(c) ? "keeping the current ones" :
				 "none usable", delay);
		}
		if (wait_or_stop(c, delay))
			break;
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Set-up */

/* The keytab exists, is readable and has a key for principal (or any key if
 * principal is ""); canonical principal name (with realm) into name. */
static int
check_keytab(const char *principal, const char *keytab, char *name,
	     size_t namesize, const char **error_r)
{
	krb5_context k;
	krb5_keytab kt = NULL;
	krb5_principal want = NULL;
	krb5_kt_cursor cur;
	krb5_keytab_entry e;
	char *s = NULL;
	int found = 0, rc = -1;

	if (krb5_init_context(&k) != 0) {
		*error_r = "cannot initialize Kerberos (krb5.conf?)";
		return -1;
	}
	if (krb5_kt_resolve(k, keytab, &kt) != 0) {
		kt = NULL;
		*error_r = "bad client keytab name";
		goto out;
	}
	if (principal[0] != '\0' && krb5_parse_name(k, principal, &want) != 0) {
		want = NULL;
		*error_r = "bad Kerberos principal name";
		goto out;
	}
	if (krb5_kt_start_seq_get(k, kt, &cur) != 0) {
		*error_r = "cannot read the client keytab";
		goto out;
	}
	while (!found && krb5_kt_next_entry(k, kt, &e, &cur) == 0) {
		if (want == NULL)
			found = krb5_unparse_name(k, e.principal, &s) == 0;
		else
			found = krb5_principal_compare(k, want, e.principal);
		krb5_free_keytab_entry_contents(k, &e);
	}
	krb5_kt_end_seq_get(k, kt, &cur);
	if (!found) {
		*error_r = want != NULL ?
		    "the client keytab has no key for the principal" :
		    "the client keytab is empty";
		goto out;
	}
	if (want != NULL && krb5_unparse_name(k, want, &s) != 0) {
		s = NULL;
		*error_r = "bad Kerberos principal name";
		goto out;
	}
	if (strlen(s) >= namesize) {
		*error_r = "Kerberos principal name too long";
		goto out;
	}
	memcpy(name, s, strlen(s) + 1);
	rc = 0;
out:
	if (s != NULL)
		krb5_free_unparsed_name(k, s);
	if (want != NULL)
		krb5_free_principal(k, want);
	if (kt != NULL)
		krb5_kt_close(k, kt);
	krb5_free_context(k);
	return rc;
}

struct krb_creds *
krb_creds_new(const char *principal, const char *keytab,
	      const char *const *services, size_t count, const char **error_r)
{
	struct krb_creds *c;
	pthread_condattr_t ca;
	sigset_t all, old;
	size_t i;
	int rc;

	if (principal == NULL || keytab == NULL || keytab[0] == '\0' ||
	    (count > 0 && services == NULL)) {
		*error_r = "Kerberos credentials: principal and keytab needed";
		return NULL;
	}
	if (principal[0] != '\0' && !printable_name(principal, NAME_MAX_LEN - 1)) {
		*error_r = "bad Kerberos principal name";
		return NULL;
	}
	if (count > KRB_CREDS_MAX_SERVICES) {
		*error_r = "too many Kerberos services";
		return NULL;
	}
	for (i = 0; i < count; i++) {
		if (services[i] == NULL || !valid_service_name(services[i])) {
			*error_r = "bad GSSAPI service name (want service@host)";
			return NULL;
		}
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	if (strlen(keytab) >= sizeof(c->keytab)) {
		free(c);
		*error_r = "client keytab path too long";
		return NULL;
	}
	memcpy(c->keytab, keytab, strlen(keytab) + 1);
	if (check_keytab(principal, keytab, c->principal, sizeof(c->principal),
			 error_r) < 0) {
		free(c);
		return NULL;
	}
	for (i = 0; i < count; i++)
		snprintf(c->services[i], sizeof(c->services[i]), "%s",
			 services[i]);
	c->nservices = count;

	pthread_mutex_init(&c->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cv, &ca);
	pthread_condattr_destroy(&ca);

	/* Signals stay with the event loop's thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&c->thread, NULL, refresher_main, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		pthread_cond_destroy(&c->cv);
		pthread_mutex_destroy(&c->mu);
		free(c);
		*error_r = "cannot start the Kerberos refresher thread";
		return NULL;
	}
	return c;
}

void
krb_creds_free(struct krb_creds **cp)
{
	struct krb_creds *c = *cp;

	if (c == NULL)
		return;
	*cp = NULL;
	pthread_mutex_lock(&c->mu);
	c->stopping = 1;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	cred_ref_put(c->cur);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

/* ------------------------------------------------------------------ */
/* The SASL GSSAPI client (RFC 4752) */

struct gssapi_client *
gssapi_client_new(struct krb_creds *c, const char *service, const char *host,
		  const char *authzid, const char **error_r)
{
	struct gssapi_client *g;
	gss_buffer_desc nb;
	OM_uint32 maj, min;
	char name[NAME_MAX_LEN];
	size_t i, alen;

	if (c == NULL || service == NULL || host == NULL || authzid == NULL) {
		*error_r = "GSSAPI: missing argument";
		return NULL;
	}
	if (snprintf(name, sizeof(name), "%s@%s", service, host) >=
	    (int)sizeof(name) || !valid_service_name(name)) {
		*error_r = "GSSAPI: bad service or host name";
		return NULL;
	}
	alen = strlen(authzid);
	if (alen >= AUTHZID_MAX) {
		*error_r = "GSSAPI: authorization identity too long";
		return NULL;
	}
	for (i = 0; i < alen; i++) {
		unsigned char ch = (unsigned char)authzid[i];
		if (ch < 0x20 || ch == 0x7f) {
			*error_r = "GSSAPI: control character in the "
			    "authorization identity";
			return NULL;
		}
	}
	g = calloc(1, sizeof(*g));
	if (g == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	g->ctx = GSS_C_NO_CONTEXT;
	g->target = GSS_C_NO_NAME;
	g->state = GC_CONTEXT;
	memcpy(g->authzid, authzid, alen);
	g->authzid_len = alen;
	g->ref = cred_ref_get_ready(c);
	if (g->ref == NULL) {
		gssapi_client_free(&g);
		*error_r = "GSSAPI: no Kerberos credentials ready (KDC down?)";
		return NULL;
	}
	/* A configured service: the refresher's canonical name (no lookup
	 * here, and the very name its ticket is cached under). */
	for (i = 0; i < g->ref->nnames; i++) {
		if (g->ref->names[i] != GSS_C_NO_NAME &&
		    strcmp(c->services[i], name) == 0) {
			g->target = g->ref->names[i];
			return g;
		}
	}
	/* Another one: canonicalized by gss_init_sec_context(), here. */
	nb.value = name;
	nb.length = strlen(name);
	maj = gss_import_name(&min, &nb, GSS_C_NT_HOSTBASED_SERVICE, &g->target);
	if (GSS_ERROR(maj)) {
		g->target = GSS_C_NO_NAME;
		gssapi_client_free(&g);
		*error_r = "GSSAPI: cannot import the service name";
		return NULL;
	}
	g->own_target = 1;
	return g;
}

static enum gssapi_step
gc_fail(struct gssapi_client *g, const char **error_r)
{
	g->state = GC_FAILED;
	*error_r = g->err;
	return GSSAPI_FAIL;
}

/* Copy a GSS buffer to a malloc'd one (never NULL on success). */
static int
take_buffer(gss_buffer_t b, unsigned char **out, size_t *outlen)
{
	unsigned char *p = malloc(b->length > 0 ? b->length : 1);

	if (p == NULL)
		return -1;
	if (b->length > 0)
		memcpy(p, b->value, b->length);
	*out = p;
	*outlen = b->length;
	return 0;
}

static enum gssapi_step
gc_context_step(struct gssapi_client *g, const unsigned char *in,
		size_t inlen, unsigned char **out, size_t *outlen,
		const char **error_r)
{
	gss_buffer_desc ib, ob = GSS_C_EMPTY_BUFFER;
	OM_uint32 maj, min, junk, flags = 0;
	int first = g->ctx == GSS_C_NO_CONTEXT;
	int rc;

	if (first && inlen != 0) {
		/* RFC 4752 3.1: the client starts; IMAP sends "+ " first. */
		snprintf(g->err, sizeof(g->err),
			 "GSSAPI: the server sent data before the first token");
		return gc_fail(g, error_r);
	}
	if (!first && inlen == 0) {
		snprintf(g->err, sizeof(g->err),
			 "GSSAPI: empty challenge during the context exchange");
		return gc_fail(g, error_r);
	}
	ib.value = (void *)in;
	ib.length = inlen;
	maj = gss_init_sec_context(&min, g->ref->cred, &g->ctx, g->target,
				   gss_mech_krb5, CLIENT_FLAGS, 0,
				   GSS_C_NO_CHANNEL_BINDINGS,
				   first ? GSS_C_NO_BUFFER : &ib, NULL, &ob,
				   &flags, NULL);
	if (GSS_ERROR(maj)) {
		gss_release_buffer(&junk, &ob);
		gss_error_text(g->err, sizeof(g->err), "gss_init_sec_context",
			       maj, min);
		return gc_fail(g, error_r);
	}
	if (!(maj & GSS_S_CONTINUE_NEEDED)) {
		/* Complete: insist on what we asked for. */
		if (!(flags & GSS_C_MUTUAL_FLAG) || !(flags & GSS_C_INTEG_FLAG)) {
			gss_release_buffer(&junk, &ob);
			snprintf(g->err, sizeof(g->err), "GSSAPI: context "
				 "without mutual authentication or integrity");
			return gc_fail(g, error_r);
		}
		/* RFC 4752 3.1: the server's next challenge is its
		 * security-layer offer. */
		g->state = GC_SECLAYER;
	}
	rc = take_buffer(&ob, out, outlen);
	gss_release_buffer(&junk, &ob);
	if (rc < 0) {
		snprintf(g->err, sizeof(g->err), "out of memory");
		return gc_fail(g, error_r);
	}
	return GSSAPI_CONTINUE;
}

static enum gssapi_step
gc_seclayer_step(struct gssapi_client *g, const unsigned char *in,
		 size_t inlen, unsigned char **out, size_t *outlen,
		 const char **error_r)
{
	gss_buffer_desc ib, pb = GSS_C_EMPTY_BUFFER, mb, wb = GSS_C_EMPTY_BUFFER;
	OM_uint32 maj, min, junk;
	unsigned char msg[4 + AUTHZID_MAX], offer;
	int rc;

	ib.value = (void *)in;
	ib.length = inlen;
	maj = gss_unwrap(&min, g->ctx, &ib, &pb, NULL, NULL);
	if (GSS_ERROR(maj)) {
		gss_error_text(g->err, sizeof(g->err),
			       "gss_unwrap (security layer offer)", maj, min);
		return gc_fail(g, error_r);
	}
	if (pb.length != 4) {
		snprintf(g->err, sizeof(g->err), "GSSAPI: security layer offer "
			 "of %zu octets, not 4", (size_t)pb.length);
		gss_release_buffer(&junk, &pb);
		return gc_fail(g, error_r);
	}
	offer = ((const unsigned char *)pb.value)[0];
	gss_release_buffer(&junk, &pb);
	if (!(offer & SECLAYER_NONE)) {
		/* We never run a security layer (TLS protects the link). */
		snprintf(g->err, sizeof(g->err), "GSSAPI: the server requires "
			 "a security layer (offers 0x%02x)", offer);
		return gc_fail(g, error_r);
	}
	/* RFC 4752 3.1: chosen layer, max size 0 (no layer: MUST be 0), then
	 * the authorization identity, wrapped (integrity only). */
	msg[0] = SECLAYER_NONE;
	msg[1] = msg[2] = msg[3] = 0;
	memcpy(msg + 4, g->authzid, g->authzid_len);
	mb.value = msg;
	mb.length = 4 + g->authzid_len;
	maj = gss_wrap(&min, g->ctx, 0, GSS_C_QOP_DEFAULT, &mb, NULL, &wb);
	if (GSS_ERROR(maj)) {
		gss_error_text(g->err, sizeof(g->err),
			       "gss_wrap (security layer choice)", maj, min);
		return gc_fail(g, error_r);
	}
	rc = take_buffer(&wb, out, outlen);
	gss_release_buffer(&junk, &wb);
	if (rc < 0) {
		snprintf(g->err, sizeof(g->err), "out of memory");
		return gc_fail(g, error_r);
	}
	g->state = GC_DONE;
	return GSSAPI_DONE;
}

enum gssapi_step
gssapi_client_step(struct gssapi_client *g, const unsigned char *in,
		   size_t inlen, unsigned char **out, size_t *outlen,
		   const char **error_r)
{
	if (in == NULL)
		inlen = 0;
	switch (g->state) {
	case GC_CONTEXT:
		return gc_context_step(g, in, inlen, out, outlen, error_r);
	case GC_SECLAYER:
		return gc_seclayer_step(g, in, inlen, out, outlen, error_r);
	case GC_DONE:
		snprintf(g->err, sizeof(g->err),
			 "GSSAPI: challenge after the exchange ended");
		break;
	case GC_FAILED:
		snprintf(g->err, sizeof(g->err), "GSSAPI: exchange failed");
		break;
	}
	return gc_fail(g, error_r);
}

void
gssapi_client_free(struct gssapi_client **gp)
{
	struct gssapi_client *g = *gp;
	OM_uint32 min;

	if (g == NULL)
		return;
	*gp = NULL;
	if (g->ctx != GSS_C_NO_CONTEXT)
		gss_delete_sec_context(&min, &g->ctx, GSS_C_NO_BUFFER);
	if (g->own_target && g->target != GSS_C_NO_NAME)
		gss_release_name(&min, &g->target);
	cred_ref_put(g->ref);
	free(g);
}
