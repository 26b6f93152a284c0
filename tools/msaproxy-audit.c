/*
 * msaproxy-audit - check and read msaproxy's audit log (docs/AUDIT.md,
 * msaproxy-audit(8)).
 *
 *   msaproxy-audit verify [--key FILE] [-c CONF] [FILE...]
 *   msaproxy-audit query  [filters] [--json] [-c CONF] [FILE...]
 *   msaproxy-audit stats  [--since T] [--until T] [--json] [-c CONF] [FILE...]
 *
 * Files are put in chain order by the sequence number of their first
 * record, whatever order they are given in; without FILEs, -c's
 * audit.file and its rotated siblings are read.  verify stops at the
 * first broken record and names it as FILE:LINE with what is wrong.
 *
 * Exit status: 0 fine; 1 the chain is broken (verify) or nothing matched
 * (query); 2 usage, unreadable input, or a chain that cannot be verified
 * as asked (an HMAC chain without the key).
 *
 * SECURITY: read-only.  The key file holds a secret: it is read, used and
 * wiped.  Record contents are printed as the log holds them (the writer
 * made them printable UTF-8; table output replaces control characters).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <jansson.h>

#include "audit_format.h"
#include "conf.h"

#define DEFAULT_CONF SYSCONFDIR "/msaproxy/msaproxy.conf"

struct afile {
	char *path;
	const char *data;	/* mmap'd */
	size_t size;
	uint64_t first_seq;	/* of its first record; UINT64_MAX if none */
};

static struct afile *files;
static size_t nfiles;

static void die(int status, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

static void
die(int status, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "msaproxy-audit: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(status);
}

static void
usage(FILE *f, int status)
{
	fprintf(f,
	    "usage: msaproxy-audit verify [--key FILE] [-c CONF] [FILE...]\n"
	    "       msaproxy-audit query [--identity ID] [--session ID] [--tx ID]\n"
	    "                            [--type TYPE] [--since TIME] [--until TIME]\n"
	    "                            [--json] [-c CONF] [FILE...]\n"
	    "       msaproxy-audit stats [--since TIME] [--until TIME] [--json]\n"
	    "                            [-c CONF] [FILE...]\n"
	    "TIME: 2026-11-24, 2026-11-24T10:00, 2026-11-24 10:00:00.5Z (UTC)\n"
	    "Without FILE: audit.file of CONF (default %s) and its rotated files.\n",
	    DEFAULT_CONF);
	exit(status);
}

/* Sequence number at the start of a line ({"seq":N,...), or 0. */
static uint64_t
line_seq(const char *p, size_t len)
{
	static const char key[] = "{\"seq\":";
	uint64_t v = 0;
	size_t i;

	if (len < sizeof(key) || memcmp(p, key, sizeof(key) - 1) != 0)
		return 0;
	for (i = sizeof(key) - 1; i < len && p[i] >= '0' && p[i] <= '9'; i++)
		v = v * 10 + (uint64_t)(p[i] - '0');
	return v;
}

static void
add_file(const char *path)
{
	struct afile *f;
	struct stat st;
	int fd;

	files = realloc(files, (nfiles + 1) * sizeof(*files));
	if (files == NULL)
		die(2, "%s", "out of memory");
	f = &files[nfiles++];
	memset(f, 0, sizeof(*f));
	f->path = strdup(path);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "msaproxy-audit: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	f->size = (size_t)st.st_size;
	if (f->size > 0) {
		f->data = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (f->data == MAP_FAILED) {
			fprintf(stderr, "msaproxy-audit: %s: %s\n", path,
			    strerror(errno));
			exit(2);
		}
	}
	close(fd);
	f->first_seq = f->size > 0 ? line_seq(f->data, f->size) : 0;
	if (f->first_seq == 0)
		f->first_seq = UINT64_MAX;	/* empty or not ours: last */
}

static void
free_files(void)
{
	size_t i;

	for (i = 0; i < nfiles; i++) {
		if (files[i].size > 0)
			munmap((void *)files[i].data, files[i].size);
		free(files[i].path);
	}
	free(files);
	files = NULL;
	nfiles = 0;
}

static int
cmp_files(const void *a, const void *b)
{
	const struct afile *x = a, *y = b;

	return x->first_seq < y->first_seq ? -1 : x->first_seq > y->first_seq;
}

/* audit.file of the configuration, and its rotated siblings */
static void
files_from_conf(const char *conf_path, char *key_path, size_t key_size)
{
	char err[4096], dir[512], *slash, base[256];
	struct conf *conf = conf_load(conf_path, err, sizeof(err));
	struct dirent *d;
	DIR *dp;

	if (conf == NULL)
		die(2, "%s", err);
	if (key_path != NULL && key_path[0] == '\0')
		snprintf(key_path, key_size, "%s", conf->audit.hmac_key_file);
	snprintf(dir, sizeof(dir), "%s", conf->audit.file);
	slash = strrchr(dir, '/');
	if (slash == NULL)
		die(2, "audit.file %s is not an absolute path", conf->audit.file);
	snprintf(base, sizeof(base), "%s", slash + 1);
	if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	conf_free(&conf);
	if (nfiles > 0)
		return;		/* files given: only the key was wanted */
	dp = opendir(dir);
	if (dp == NULL)
		die(2, "cannot read the directory %s", dir);
	while ((d = readdir(dp)) != NULL) {
		size_t n = strlen(base);

		if (strncmp(d->d_name, base, n) == 0 &&
		    (d->d_name[n] == '\0' || d->d_name[n] == '.')) {
			char path[1024];

			snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
			add_file(path);
		}
	}
	closedir(dp);
	if (nfiles == 0)
		die(2, "no audit log found next to %s", base);
}

/* Iterate over the lines of a file. */
struct cursor {
	const struct afile *f;
	size_t off;
	unsigned long lineno;
};

/* The next line (without newline) or NULL; *torn when it has none. */
static const char *
next_line(struct cursor *c, size_t *len, int *torn)
{
	const char *p, *nl;

	*torn = 0;
	if (c->off >= c->f->size)
		return NULL;
	p = c->f->data + c->off;
	nl = memchr(p, '\n', c->f->size - c->off);
	c->lineno++;
	if (nl == NULL) {
		*len = c->f->size - c->off;
		*torn = 1;
		c->off = c->f->size;
		return p;
	}
	*len = (size_t)(nl - p);
	c->off += *len + 1;
	return p;
}

/* ------------------------------------------------------------------ */
/* verify */

/* Where is the record with sequence number seq, from file fi, offset off
 * on?  Returns 1 and the place, or 0. */
static int
find_seq(uint64_t seq, size_t fi, size_t off, size_t *fi_r,
	 unsigned long *line_r, unsigned long lineno)
{
	for (; fi < nfiles; fi++, off = 0, lineno = 0) {
		struct cursor c = { &files[fi], off, lineno };
		const char *l;
		size_t len;
		int torn;

		while ((l = next_line(&c, &len, &torn)) != NULL) {
			if (line_seq(l, len) == seq) {
				*fi_r = fi;
				*line_r = c.lineno;
				return 1;
			}
		}
	}
	return 0;
}

static const char *
jstr(json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));

	return v != NULL ? v : "";
}

static int
cmd_verify(const unsigned char *key, size_t keylen)
{
	unsigned char head[AUDIT_HASH_LEN], prev[AUDIT_HASH_LEN],
	    hash[AUDIT_HASH_LEN], zero[AUDIT_HASH_LEN];
	uint64_t expect = 0, total = 0, first = 0, seq = 0;
	const char *chain_alg = NULL;
	char key_id[17] = "";
	int have_prev = 0, checkpoints = 0, ret = 0;
	json_t *o = NULL, *lasto = NULL;
	size_t fi;

	memset(zero, 0, sizeof(zero));
	if (keylen > 0)
		audit_key_id(key, keylen, key_id);
	for (fi = 0; fi < nfiles; fi++) {
		struct cursor c = { &files[fi], 0, 0 };
		const char *l, *last_type = NULL;
		size_t len;
		int torn;

		if (files[fi].size == 0) {
			printf("%s: empty\n", files[fi].path);
			continue;
		}
		while ((l = next_line(&c, &len, &torn)) != NULL) {
			const char *where = files[fi].path;
			unsigned long n = c.lineno;
			enum audit_line_status st;

			if (torn) {
				printf("%s:%lu: the last line has no end: a torn "
				    "write (the writer stopped mid-record) or a "
				    "truncated file\n", where, n);
				ret = 1;
				goto out;
			}
			st = audit_chain_check(l, len, key, keylen, &seq, prev,
			    hash);
			if (st == AUDIT_LINE_BAD_HASH && keylen == 0 &&
			    chain_alg == NULL) {
				/* the first record says how it is chained */
				json_t *h = json_loadb(l, len, 0, NULL);

				if (h != NULL && strcmp(jstr(h, "chain"),
				    "hmac-sha256") == 0)
					chain_alg = "hmac-sha256";
				json_decref(h);
			}
			if (st == AUDIT_LINE_MALFORMED) {
				printf("%s:%lu: not an audit record (its layout "
				    "{\"seq\":N,...,\"prev\":...,\"hash\":...} is "
				    "broken): edited\n", where, n);
				ret = 1;
				goto out;
			}
			if (st == AUDIT_LINE_BAD_HASH) {
				unsigned long long s = (unsigned long long)seq;

				if (keylen > 0 && audit_chain_check(l, len, NULL,
				    0, &seq, prev, hash) == AUDIT_LINE_OK)
					printf("%s:%lu: seq %llu: a plain SHA-256 "
					    "hash where the HMAC should be: "
					    "written without the key, or edited "
					    "and re-hashed by someone without it\n",
					    where, n, s);
				else if (keylen == 0 && chain_alg != NULL &&
				    strcmp(chain_alg, "hmac-sha256") == 0) {
					printf("%s:%lu: seq %llu: the chain is "
					    "HMAC'd: give the key (--key or -c) to "
					    "verify it\n", where, n, s);
					ret = 2;
					goto out;
				} else
					printf("%s:%lu: seq %llu: record edited: "
					    "its content does not match its "
					    "%s\n", where, n, s, keylen > 0 ?
					    "HMAC (or it was written with "
					    "another key)" : "hash");
				ret = 1;
				goto out;
			}
			o = json_loadb(l, len, JSON_REJECT_DUPLICATES, NULL);
			if (o == NULL || !json_is_object(o)) {
				/* layout and hash fine, JSON not: the writer
				 * never writes that */
				printf("%s:%lu: seq %llu: not valid JSON\n", where,
				    n, (unsigned long long)seq);
				ret = 1;
				goto out;
			}
			if (strcmp(jstr(o, "type"), "audit_start") == 0 ||
			    strcmp(jstr(o, "type"), "file_start") == 0) {
				const char *a = jstr(o, "chain");

				if (keylen > 0 && strcmp(a, "hmac-sha256") != 0) {
					printf("%s:%lu: seq %llu: says the chain "
					    "is \"%s\", but a key was given\n",
					    where, n, (unsigned long long)seq, a);
					ret = 1;
					goto out;
				}
				chain_alg = strcmp(a, "hmac-sha256") == 0 ?
				    "hmac-sha256" : "sha256";
				if (keylen > 0 && json_object_get(o, "key_id") &&
				    strcmp(jstr(o, "key_id"), key_id) != 0)
					printf("%s:%lu: note: key id %s, the key "
					    "given is %s\n", where, n,
					    jstr(o, "key_id"), key_id);
			}
			if (!have_prev) {
				first = seq;
				if (seq != 1 || memcmp(prev, zero, sizeof(prev)))
					printf("%s:%lu: note: the chain is "
					    "checked from seq %llu (earlier files "
					    "not given)\n", where, n,
					    (unsigned long long)seq);
			} else if (seq != expect) {
				size_t ff;
				unsigned long fl;

				if (seq > expect && find_seq(expect, fi, c.off, &ff,
				    &fl, c.lineno))
					printf("%s:%lu: seq %llu where %llu was "
					    "expected: records reordered (seq %llu "
					    "is at %s:%lu)\n", where, n,
					    (unsigned long long)seq,
					    (unsigned long long)expect,
					    (unsigned long long)expect,
					    files[ff].path, fl);
				else if (seq > expect)
					printf("%s:%lu: seq %llu where %llu was "
					    "expected: %llu record(s) deleted "
					    "before this line (seq %llu..%llu)\n",
					    where, n, (unsigned long long)seq,
					    (unsigned long long)expect,
					    (unsigned long long)(seq - expect),
					    (unsigned long long)expect,
					    (unsigned long long)(seq - 1));
				else
					printf("%s:%lu: seq %llu where %llu was "
					    "expected: the sequence goes back: "
					    "records reordered or duplicated\n",
					    where, n, (unsigned long long)seq,
					    (unsigned long long)expect);
				ret = 1;
				goto out;
			} else if (memcmp(prev, head, sizeof(head)) != 0) {
				printf("%s:%lu: seq %llu: its prev is not the "
				    "hash of the record before it (%s): that "
				    "record was replaced or edited and "
				    "re-hashed%s\n", where, n,
				    (unsigned long long)seq, c.lineno > 1 ?
				    "the line above" : "the end of the previous "
				    "file", keylen == 0 ? " (an HMAC key "
				    "prevents that)" : "");
				ret = 1;
				goto out;
			}
			if (strcmp(jstr(o, "type"), "checkpoint") == 0) {
				char hex[AUDIT_HEX_LEN + 1];
				json_t *r = json_object_get(o, "records"),
				    *fs = json_object_get(o, "first_seq");

				audit_hex(head, AUDIT_HASH_LEN, hex);
				if (have_prev && strcmp(jstr(o, "head"), hex) != 0) {
					printf("%s:%lu: seq %llu: checkpoint head "
					    "does not match the chain\n", where, n,
					    (unsigned long long)seq);
					ret = 1;
					goto out;
				}
				if (json_is_integer(fs) && json_is_integer(r) &&
				    (uint64_t)json_integer_value(fs) +
				    (uint64_t)json_integer_value(r) - 1 != seq) {
					printf("%s:%lu: seq %llu: the checkpoint "
					    "counts %lld record(s) from seq %lld: "
					    "the file does not match\n", where, n,
					    (unsigned long long)seq,
					    (long long)json_integer_value(r),
					    (long long)json_integer_value(fs));
					ret = 1;
					goto out;
				}
				if (json_is_integer(fs) && c.lineno !=
				    seq - (uint64_t)json_integer_value(fs) + 1) {
					printf("%s:%lu: seq %llu: the checkpoint "
					    "says the file starts at seq %lld, but "
					    "this is its line %lu: lines were "
					    "removed from or added to this file\n",
					    where, n, (unsigned long long)seq,
					    (long long)json_integer_value(fs),
					    c.lineno);
					ret = 1;
					goto out;
				}
				checkpoints++;
			}
			json_decref(lasto);
			lasto = o;
			o = NULL;
			last_type = jstr(lasto, "type");
			memcpy(head, hash, sizeof(head));
			expect = seq + 1;
			have_prev = 1;
			total++;
		}
		if (fi + 1 < nfiles && last_type != NULL &&
		    strcmp(last_type, "checkpoint") != 0)
			printf("%s: note: does not end with a checkpoint "
			    "(the writer stopped without rotating, or the file "
			    "was cut short)\n", files[fi].path);
		json_decref(lasto);
		lasto = NULL;
	}
	if (total == 0) {
		printf("no records\n");
		return 1;
	}
	printf("OK: %llu record(s) in %zu file(s), seq %llu..%llu, %s chain%s%s,"
	    " %d checkpoint(s)\n", (unsigned long long)total, nfiles,
	    (unsigned long long)first, (unsigned long long)seq,
	    chain_alg != NULL ? chain_alg : keylen > 0 ? "hmac-sha256" :
	    "sha256", keylen > 0 ? ", key " : "", keylen > 0 ? key_id : "",
	    checkpoints);
	if (keylen == 0)
		printf("note: without an HMAC key, anyone who can write the "
		    "files can rebuild a consistent chain; compare the head "
		    "with a copy kept elsewhere (syslog)\n");
	printf("head: seq %llu ", (unsigned long long)seq);
	{
		char hex[AUDIT_HEX_LEN + 1];

		audit_hex(head, AUDIT_HASH_LEN, hex);
		printf("%s\n", hex);
	}
	return 0;
out:
	json_decref(o);
	json_decref(lasto);
	return ret;
}

/* ------------------------------------------------------------------ */
/* query, stats */

struct filter {
	const char *identity, *session, *tx, *type;
	int64_t since, until;		/* ms; -1 = open */
};

static int
matches(json_t *o, const struct filter *f)
{
	if (f->identity != NULL && strcmp(jstr(o, "identity"), f->identity) != 0 &&
	    strcmp(jstr(o, "authcid"), f->identity) != 0)
		return 0;
	if (f->session != NULL && strcmp(jstr(o, "session"), f->session) != 0)
		return 0;
	if (f->tx != NULL && strcmp(jstr(o, "tx"), f->tx) != 0)
		return 0;
	if (f->type != NULL && strcmp(jstr(o, "type"), f->type) != 0)
		return 0;
	if (f->since >= 0 || f->until >= 0) {
		int64_t t = audit_parse_time(jstr(o, "ts"));

		if (t < 0 || (f->since >= 0 && t < f->since) ||
		    (f->until >= 0 && t >= f->until))
			return 0;
	}
	return 1;
}

/* Append printable text (control characters as '?'), cut at max. */
static void
put(char *out, size_t outsize, size_t *o, const char *s, size_t max)
{
	size_t i;

	for (i = 0; s[i] != '\0' && i < max && *o + 1 < outsize; i++)
		out[(*o)++] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
	out[*o] = '\0';
}

static void
putf(char *out, size_t outsize, size_t *o, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
putf(char *out, size_t outsize, size_t *o, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	put(out, outsize, o, tmp, sizeof(tmp));
}

static long long
jint(json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static void
summary(json_t *o, char *out, size_t outsize)
{
	const char *type = jstr(o, "type");
	size_t n = 0;

	out[0] = '\0';
	if (strcmp(type, "session_open") == 0) {
		putf(out, outsize, &n, "from %s:%lld on %s", jstr(o, "client_ip"),
		    jint(o, "client_port"), jstr(o, "listener"));
		if (json_object_get(o, "lb_ip") != NULL)
			putf(out, outsize, &n, " via %s", jstr(o, "lb_ip"));
	} else if (strcmp(type, "tls") == 0) {
		putf(out, outsize, &n, "%s %s", jstr(o, "tls_version"),
		    jstr(o, "tls_cipher"));
		if (jstr(o, "tls_sni")[0])
			putf(out, outsize, &n, " sni=%s", jstr(o, "tls_sni"));
		if (jstr(o, "tls_client_subject")[0])
			putf(out, outsize, &n, " cert=%s",
			    jstr(o, "tls_client_subject"));
	} else if (strcmp(type, "auth") == 0) {
		putf(out, outsize, &n, "%s %s", jstr(o, "result"),
		    jstr(o, "mechanism"));
		if (jstr(o, "authcid")[0])
			putf(out, outsize, &n, " authcid=%s", jstr(o, "authcid"));
		if (jstr(o, "krb5_principal")[0])
			putf(out, outsize, &n, " principal=%s",
			    jstr(o, "krb5_principal"));
		if (jstr(o, "reason")[0])
			putf(out, outsize, &n, " (%s)", jstr(o, "reason"));
	} else if (strcmp(type, "tx") == 0 || strcmp(type, "tx_pending") == 0) {
		json_t *r = json_object_get(o, "rcpts"), *v;
		size_t i;

		putf(out, outsize, &n, "%s <%s> ->", strcmp(type, "tx") == 0 ?
		    jstr(o, "result") : "pending", jstr(o, "mail_from"));
		json_array_foreach(r, i, v) {
			if (i == 3) {
				putf(out, outsize, &n, " ...");
				break;
			}
			putf(out, outsize, &n, " <%s>", jstr(v, "to"));
		}
		putf(out, outsize, &n, " (%lld/%lld) %lld B",
		    jint(o, "rcpt_accepted"), jint(o, "rcpt_count"),
		    jint(o, "size"));
		if (jstr(o, "message_id")[0])
			putf(out, outsize, &n, " %s", jstr(o, "message_id"));
		if (jstr(o, "queue_id")[0])
			putf(out, outsize, &n, " queue=%s", jstr(o, "queue_id"));
		if (json_is_integer(json_object_get(o, "code")))
			putf(out, outsize, &n, " %lld", jint(o, "code"));
	} else if (strcmp(type, "policy") == 0) {
		putf(out, outsize, &n, "%s: %s", jstr(o, "rule"),
		    jstr(o, "reply"));
	} else if (strcmp(type, "limit") == 0) {
		putf(out, outsize, &n, "%s = %lld: %s", jstr(o, "limit"),
		    jint(o, "value"), jstr(o, "reply"));
	} else if (strcmp(type, "session_close") == 0) {
		putf(out, outsize, &n, "%s, %lld message(s), %lld ms",
		    jstr(o, "reason"), jint(o, "messages"),
		    jint(o, "duration_ms"));
	} else {
		/* generic: the members after the common ones */
		const char *k;
		json_t *v;

		json_object_foreach(o, k, v) {
			char *t;

			if (!strcmp(k, "seq") || !strcmp(k, "ts") ||
			    !strcmp(k, "type") || !strcmp(k, "host") ||
			    !strcmp(k, "session") || !strcmp(k, "identity") ||
			    !strcmp(k, "prev") || !strcmp(k, "hash"))
				continue;
			t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
			putf(out, outsize, &n, "%s%s=%s", n ? " " : "", k,
			    t != NULL ? t : "?");
			free(t);
		}
	}
}

static int
for_each_record(const struct filter *f, void (*fn)(json_t *o, const char *line,
		size_t len, void *arg), void *arg)
{
	size_t fi;
	int matched = 0;

	for (fi = 0; fi < nfiles; fi++) {
		struct cursor c = { &files[fi], 0, 0 };
		const char *l;
		size_t len;
		int torn;

		while ((l = next_line(&c, &len, &torn)) != NULL) {
			json_t *o;

			if (torn)
				break;
			o = json_loadb(l, len, 0, NULL);
			if (o == NULL) {
				fprintf(stderr, "msaproxy-audit: %s:%lu: not "
				    "JSON, skipped (run verify)\n",
				    files[fi].path, c.lineno);
				continue;
			}
			if (matches(o, f)) {
				fn(o, l, len, arg);
				matched++;
			}
			json_decref(o);
		}
	}
	return matched;
}

static void
print_json(json_t *o, const char *line, size_t len, void *arg)
{
	(void)o;
	(void)arg;
	fwrite(line, 1, len, stdout);
	fputc('\n', stdout);
}

static void
print_row(json_t *o, const char *line, size_t len, void *arg)
{
	char sum[2048], id[80] = "-";
	size_t n = 0;

	(void)line;
	(void)len;
	(void)arg;
	if (jstr(o, "identity")[0])
		put(id, sizeof(id), &n, jstr(o, "identity"), 40);
	summary(o, sum, sizeof(sum));
	printf("%-24s %-8lld %-13s %-12s %-16s %s\n", jstr(o, "ts"),
	    jint(o, "seq"), jstr(o, "type"), jstr(o, "session")[0] ?
	    jstr(o, "session") : "-", id, sum);
}

static int
cmd_query(const struct filter *f, int json)
{
	int n;

	if (!json)
		printf("%-24s %-8s %-13s %-12s %-16s %s\n", "TIME (UTC)", "SEQ",
		    "TYPE", "SESSION", "IDENTITY", "WHAT");
	n = for_each_record(f, json ? print_json : print_row, NULL);
	return n > 0 ? 0 : 1;
}

/* stats: per UTC hour */
struct hour {
	char key[14];		/* "2026-11-24T10" */
	unsigned long sessions, delivered, refused, failed, auth_ok, auth_fail,
	    policy, limit, tx_records;
	char **ids;
	size_t nids;
};

struct stats {
	struct hour *h;
	size_t n;
	char **all_ids;
	size_t nall;
};

static void
add_id(char ***ids, size_t *n, const char *id)
{
	size_t i;

	for (i = 0; i < *n; i++)
		if (strcmp((*ids)[i], id) == 0)
			return;
	*ids = realloc(*ids, (*n + 1) * sizeof(**ids));
	if (*ids == NULL)
		die(2, "%s", "out of memory");
	(*ids)[(*n)++] = strdup(id);
}

static void
count(json_t *o, const char *line, size_t len, void *arg)
{
	struct stats *st = arg;
	const char *ts = jstr(o, "ts"), *type = jstr(o, "type"),
	    *id = jstr(o, "identity");
	struct hour *h = NULL;
	size_t i;

	(void)line;
	(void)len;
	if (strlen(ts) < 13)
		return;
	for (i = st->n; i > 0; i--) {
		if (strncmp(st->h[i - 1].key, ts, 13) == 0) {
			h = &st->h[i - 1];
			break;
		}
	}
	if (h == NULL) {
		st->h = realloc(st->h, (st->n + 1) * sizeof(*st->h));
		if (st->h == NULL)
			die(2, "%s", "out of memory");
		h = &st->h[st->n++];
		memset(h, 0, sizeof(*h));
		memcpy(h->key, ts, 13);
	}
	if (strcmp(type, "session_open") == 0)
		h->sessions++;
	else if (strcmp(type, "tx") == 0) {
		const char *r = jstr(o, "result");

		if (strcmp(r, "delivered") == 0 || strcmp(r, "partial") == 0)
			h->delivered++;
		else if (strcmp(r, "refused") == 0)
			h->refused++;
		else
			h->failed++;
	} else if (strcmp(type, "auth") == 0) {
		if (strcmp(jstr(o, "result"), "success") == 0)
			h->auth_ok++;
		else
			h->auth_fail++;
	} else if (strcmp(type, "policy") == 0)
		h->policy++;
	else if (strcmp(type, "limit") == 0)
		h->limit++;
	if (id[0] != '\0') {
		add_id(&h->ids, &h->nids, id);
		add_id(&st->all_ids, &st->nall, id);
	}
}

static int
cmp_hours(const void *a, const void *b)
{
	return strcmp(((const struct hour *)a)->key, ((const struct hour *)b)->key);
}

static int
cmd_stats(const struct filter *f, int json)
{
	struct stats st;
	struct hour tot;
	size_t i;

	memset(&st, 0, sizeof(st));
	memset(&tot, 0, sizeof(tot));
	for_each_record(f, count, &st);
	qsort(st.h, st.n, sizeof(*st.h), cmp_hours);
	if (!json)
		printf("%-14s %9s %9s %8s %7s %10s %8s %8s %7s %6s\n",
		    "HOUR (UTC)", "sessions", "delivered", "refused", "failed",
		    "identities", "auth ok", "auth bad", "policy", "limit");
	for (i = 0; i < st.n; i++) {
		struct hour *h = &st.h[i];

		if (json)
			printf("{\"hour\":\"%s:00Z\",\"sessions\":%lu,"
			    "\"delivered\":%lu,\"refused\":%lu,\"failed\":%lu,"
			    "\"identities\":%zu,\"auth_success\":%lu,"
			    "\"auth_failure\":%lu,\"policy\":%lu,\"limit\":%lu}\n",
			    h->key, h->sessions, h->delivered, h->refused,
			    h->failed, h->nids, h->auth_ok, h->auth_fail,
			    h->policy, h->limit);
		else
			printf("%-14s %9lu %9lu %8lu %7lu %10zu %8lu %8lu %7lu "
			    "%6lu\n", h->key, h->sessions, h->delivered,
			    h->refused, h->failed, h->nids, h->auth_ok,
			    h->auth_fail, h->policy, h->limit);
		tot.sessions += h->sessions;
		tot.delivered += h->delivered;
		tot.refused += h->refused;
		tot.failed += h->failed;
		tot.auth_ok += h->auth_ok;
		tot.auth_fail += h->auth_fail;
		tot.policy += h->policy;
		tot.limit += h->limit;
	}
	if (!json)
		printf("%-14s %9lu %9lu %8lu %7lu %10zu %8lu %8lu %7lu %6lu\n",
		    "total", tot.sessions, tot.delivered, tot.refused,
		    tot.failed, st.nall, tot.auth_ok, tot.auth_fail, tot.policy,
		    tot.limit);
	for (i = 0; i < st.n; i++) {
		size_t k;

		for (k = 0; k < st.h[i].nids; k++)
			free(st.h[i].ids[k]);
		free(st.h[i].ids);
	}
	for (i = 0; i < st.nall; i++)
		free(st.all_ids[i]);
	free(st.all_ids);
	free(st.h);
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "identity", required_argument, NULL, 'i' },
		{ "session", required_argument, NULL, 's' },
		{ "tx", required_argument, NULL, 'x' },
		{ "type", required_argument, NULL, 't' },
		{ "since", required_argument, NULL, 'S' },
		{ "until", required_argument, NULL, 'U' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct filter f = { NULL, NULL, NULL, NULL, -1, -1 };
	char key_path[512] = "";
	const char *cmd, *conf_path = NULL, *error = NULL;
	unsigned char key[AUDIT_KEY_MAX];
	long keylen = 0;
	int ch, json = 0, i, r;

	if (argc < 2)
		usage(stderr, 2);
	cmd = argv[1];
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0)
		usage(stdout, 0);
	if (strcmp(cmd, "verify") != 0 && strcmp(cmd, "query") != 0 &&
	    strcmp(cmd, "stats") != 0)
		usage(stderr, 2);
	optind = 2;
	while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			conf_path = optarg;
			break;
		case 'k':
			snprintf(key_path, sizeof(key_path), "%s", optarg);
			break;
		case 'i':
			f.identity = optarg;
			break;
		case 's':
			f.session = optarg;
			break;
		case 'x':
			f.tx = optarg;
			break;
		case 't':
			f.type = optarg;
			break;
		case 'S':
			if ((f.since = audit_parse_time(optarg)) < 0)
				die(2, "--since %s: not a time", optarg);
			break;
		case 'U':
			if ((f.until = audit_parse_time(optarg)) < 0)
				die(2, "--until %s: not a time", optarg);
			break;
		case 'j':
			json = 1;
			break;
		case 'h':
			usage(stdout, 0);
			break;
		default:
			usage(stderr, 2);
		}
	}
	for (i = optind; i < argc; i++)
		add_file(argv[i]);
	if (nfiles == 0 || conf_path != NULL)
		files_from_conf(conf_path != NULL ? conf_path : DEFAULT_CONF,
		    strcmp(cmd, "verify") == 0 ? key_path : NULL,
		    sizeof(key_path));
	qsort(files, nfiles, sizeof(*files), cmp_files);
	if (strcmp(cmd, "verify") == 0) {
		if (key_path[0] != '\0') {
			keylen = audit_key_load(key_path, key, sizeof(key), &error);
			if (keylen < 0)
				die(2, "%s", error);
		}
		r = cmd_verify(key, (size_t)keylen);
		explicit_bzero(key, sizeof(key));
	} else if (strcmp(cmd, "query") == 0) {
		r = cmd_query(&f, json);
	} else {
		r = cmd_stats(&f, json);
	}
	fflush(stdout);
	free_files();
	return r;
}
