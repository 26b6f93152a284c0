/*
 * keytab.c - keytabs held in memory (see keytab.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <krb5.h>

#include "keytab.h"
#include "log.h"

static struct {
	krb5_context k;
	struct mem_keytab {
		char file[600];		/* as configured */
		char memname[640];	/* "MEMORY:" + file */
		krb5_keytab mem;	/* held open: keeps the copy alive */
	} kt[KEYTAB_MAX];
	size_t n;
} K;

/* The file's entries, read completely before anything changes. */
struct entries {
	krb5_keytab_entry *e;
	size_t n;
};

static void
entries_free(struct entries *es)
{
	size_t i;

	for (i = 0; i < es->n; i++)
		krb5_free_keytab_entry_contents(K.k, &es->e[i]);
	free(es->e);
	es->e = NULL;
	es->n = 0;
}

static int
read_entries(const char *file, struct entries *es, const char **error_r)
{
	krb5_keytab kt;
	krb5_kt_cursor cur;
	krb5_keytab_entry e;
	size_t cap = 0;
	int rc = 0;

	es->e = NULL;
	es->n = 0;
	if (krb5_kt_resolve(K.k, file, &kt) != 0) {
		*error_r = "bad keytab name";
		return -1;
	}
	if (krb5_kt_start_seq_get(K.k, kt, &cur) != 0) {
		*error_r = "cannot read the keytab";
		krb5_kt_close(K.k, kt);
		return -1;
	}
	while (krb5_kt_next_entry(K.k, kt, &e, &cur) == 0) {
		if (es->n == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			krb5_keytab_entry *ne = ncap > 4096 ? NULL :
			    realloc(es->e, ncap * sizeof(*ne));

			if (ne == NULL) {
				krb5_free_keytab_entry_contents(K.k, &e);
				*error_r = ncap > 4096 ? "keytab has more than "
				    "4096 keys" : "out of memory";
				rc = -1;
				break;
			}
			es->e = ne;
			cap = ncap;
		}
		es->e[es->n++] = e;
	}
	krb5_kt_end_seq_get(K.k, kt, &cur);
	krb5_kt_close(K.k, kt);
	if (rc == 0 && es->n == 0) {
		*error_r = "the keytab has no keys";
		rc = -1;
	}
	if (rc < 0)
		entries_free(es);
	return rc;
}

/* Empty the copy, then fill it with es. */
static int
refill(struct mem_keytab *m, const struct entries *es, const char **error_r)
{
	krb5_kt_cursor cur;
	krb5_keytab_entry e;
	size_t i;

	/* remove one at a time: a cursor does not survive a removal */
	while (krb5_kt_start_seq_get(K.k, m->mem, &cur) == 0) {
		int got = krb5_kt_next_entry(K.k, m->mem, &e, &cur) == 0;

		krb5_kt_end_seq_get(K.k, m->mem, &cur);
		if (!got)
			break;
		if (krb5_kt_remove_entry(K.k, m->mem, &e) != 0) {
			krb5_free_keytab_entry_contents(K.k, &e);
			*error_r = "cannot empty the memory keytab";
			return -1;
		}
		krb5_free_keytab_entry_contents(K.k, &e);
	}
	for (i = 0; i < es->n; i++) {
		if (krb5_kt_add_entry(K.k, m->mem, &es->e[i]) != 0) {
			*error_r = "cannot copy the keytab into memory";
			return -1;
		}
	}
	return 0;
}

int
keytab_to_memory(const char *name, char *memname, size_t memsize,
		 const char **error_r)
{
	struct mem_keytab *m;
	struct entries es;
	const char *file = name;
	size_t i;

	if (strncmp(name, "MEMORY:", 7) == 0) {
		if (strlen(name) >= memsize) {
			*error_r = "keytab name too long";
			return -1;
		}
		memcpy(memname, name, strlen(name) + 1);
		return 0;
	}
	if (strncmp(file, "FILE:", 5) == 0)
		file += 5;
	for (i = 0; i < K.n; i++) {
		if (strcmp(K.kt[i].file, file) == 0)
			goto found;
	}
	if (K.n == KEYTAB_MAX) {
		*error_r = "too many keytab files";
		return -1;
	}
	if (strlen(file) >= sizeof(K.kt[0].file)) {
		*error_r = "keytab path too long";
		return -1;
	}
	if (K.k == NULL && krb5_init_context(&K.k) != 0) {
		K.k = NULL;
		*error_r = "cannot initialize Kerberos (krb5.conf?)";
		return -1;
	}
	m = &K.kt[K.n];
	snprintf(m->file, sizeof(m->file), "%s", file);
	snprintf(m->memname, sizeof(m->memname), "MEMORY:%s", file);
	if (read_entries(m->file, &es, error_r) < 0)
		return -1;
	if (krb5_kt_resolve(K.k, m->memname, &m->mem) != 0) {
		entries_free(&es);
		*error_r = "cannot make a memory keytab";
		return -1;
	}
	if (refill(m, &es, error_r) < 0) {
		entries_free(&es);
		krb5_kt_close(K.k, m->mem);
		return -1;
	}
	log_info("keytab %s: %zu key(s) held in memory", m->file, es.n);
	entries_free(&es);
	i = K.n++;
found:
	if (strlen(K.kt[i].memname) >= memsize) {
		*error_r = "keytab name too long";
		return -1;
	}
	memcpy(memname, K.kt[i].memname, strlen(K.kt[i].memname) + 1);
	return 0;
}

int
keytab_reload_all(char *err, size_t errsize)
{
	size_t i;
	int rc = 0;

	for (i = 0; i < K.n; i++) {
		struct entries es;
		const char *error = NULL;

		if (read_entries(K.kt[i].file, &es, &error) < 0) {
			snprintf(err, errsize, "keytab %s: %s (keeping the "
			    "keys read before)", K.kt[i].file, error);
			rc = -1;
			continue;
		}
		if (refill(&K.kt[i], &es, &error) < 0) {
			entries_free(&es);
			snprintf(err, errsize, "keytab %s: %s", K.kt[i].file,
			    error);
			rc = -1;
			continue;
		}
		log_info("keytab %s: %zu key(s) read again", K.kt[i].file,
		    es.n);
		entries_free(&es);
	}
	return rc;
}

void
keytab_free_all(void)
{
	size_t i;

	for (i = 0; i < K.n; i++)
		krb5_kt_close(K.k, K.kt[i].mem);
	K.n = 0;
	if (K.k != NULL)
		krb5_free_context(K.k);
	K.k = NULL;
}
