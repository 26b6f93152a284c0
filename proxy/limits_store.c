/*
 * limits_store.c - see limits_store.h.
 *
 * A table is a hash table of entries chained per bucket, and a doubly
 * linked LRU list through the same entries.  An entry is one allocation:
 * the header, its ring of slot counts, then its key.
 */
#include <stdlib.h>
#include <string.h>

#include "limits_store.h"

struct lim_entry {
	struct lim_entry *hnext;		/* bucket chain */
	struct lim_entry *prev, *next;		/* LRU: head = most recent */
	uint64_t hash;
	uint64_t last;				/* slot number of the newest slot */
	uint64_t gauge;
	uint8_t keylen;
	uint64_t ring[];			/* nslots counts, then the key */
};

struct lim_table {
	unsigned slot_len, nslots;		/* 0 slots: gauges only */
	size_t max_keys, size, nbuckets;	/* nbuckets: a power of two */
	struct lim_entry **buckets;
	struct lim_entry *head, *tail;
	uint8_t seed[16];
};

/* ------------------------------------------------------------------ */
/* SipHash-2-4 (Aumasson and Bernstein), little-endian */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND do { \
	v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32); \
	v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2; \
	v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0; \
	v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32); \
} while (0)

static uint64_t
le64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

uint64_t
lim_siphash(const uint8_t key[16], const void *data, size_t len)
{
	const uint8_t *in = data, *end = in + (len - len % 8);
	uint64_t k0 = le64(key), k1 = le64(key + 8);
	uint64_t v0 = UINT64_C(0x736f6d6570736575) ^ k0;
	uint64_t v1 = UINT64_C(0x646f72616e646f6d) ^ k1;
	uint64_t v2 = UINT64_C(0x6c7967656e657261) ^ k0;
	uint64_t v3 = UINT64_C(0x7465646279746573) ^ k1;
	uint64_t b = (uint64_t)len << 56, m;
	size_t left = len % 8, i;

	for (; in != end; in += 8) {
		m = le64(in);
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	for (i = 0; i < left; i++)
		b |= (uint64_t)in[i] << (8 * i);
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* ------------------------------------------------------------------ */

void
limits_window_geometry(unsigned window, unsigned *slot_len_r,
		       unsigned *nslots_r)
{
	unsigned slot;

	if (window == 0)
		window = 1;
	slot = (window + LIMITS_SLOTS - 1) / LIMITS_SLOTS;
	*slot_len_r = slot;
	*nslots_r = (window + slot - 1) / slot;
}

struct lim_table *
lim_table_new(unsigned window, size_t max_keys, const uint8_t seed[16])
{
	struct lim_table *t = calloc(1, sizeof(*t));
	size_t n = 64;

	if (t == NULL)
		return NULL;
	if (window > 0)
		limits_window_geometry(window, &t->slot_len, &t->nslots);
	t->max_keys = max_keys > 0 ? max_keys : 1;
	while (n < t->max_keys && n < ((size_t)1 << 24))
		n <<= 1;
	t->nbuckets = n;
	t->buckets = calloc(n, sizeof(*t->buckets));
	if (t->buckets == NULL) {
		free(t);
		return NULL;
	}
	memcpy(t->seed, seed, sizeof(t->seed));
	return t;
}

void
lim_table_free(struct lim_table **tp)
{
	struct lim_table *t = *tp;
	struct lim_entry *e, *next;

	if (t == NULL)
		return;
	*tp = NULL;
	for (e = t->head; e != NULL; e = next) {
		next = e->next;
		free(e);
	}
	free(t->buckets);
	free(t);
}

size_t
lim_table_size(const struct lim_table *t)
{
	return t->size;
}

static const uint8_t *
entry_key(const struct lim_table *t, const struct lim_entry *e)
{
	return (const uint8_t *)(e->ring + t->nslots);
}

static void
lru_unlink(struct lim_table *t, struct lim_entry *e)
{
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		t->head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		t->tail = e->prev;
	e->prev = e->next = NULL;
}

static void
lru_push_head(struct lim_table *t, struct lim_entry *e)
{
	e->prev = NULL;
	e->next = t->head;
	if (t->head != NULL)
		t->head->prev = e;
	t->head = e;
	if (t->tail == NULL)
		t->tail = e;
}

static struct lim_entry *
find(struct lim_table *t, const void *key, size_t len, uint64_t hash)
{
	struct lim_entry *e;

	for (e = t->buckets[hash & (t->nbuckets - 1)]; e != NULL; e = e->hnext)
		if (e->hash == hash && e->keylen == len &&
		    memcmp(entry_key(t, e), key, len) == 0)
			return e;
	return NULL;
}

static void
remove_entry(struct lim_table *t, struct lim_entry *e)
{
	struct lim_entry **pp = &t->buckets[e->hash & (t->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(t, e);
	t->size--;
	free(e);
}

/* Make room for one more key: drop the least recently used one that no
 * session holds.  Only a few are looked at: when they are all held, the
 * table grows past max_keys (by at most the sessions that hold gauges). */
static void
evict(struct lim_table *t)
{
	struct lim_entry *e = t->tail;
	int tries;

	for (tries = 0; e != NULL && tries < 8; tries++, e = e->prev)
		if (e->gauge == 0) {
			remove_entry(t, e);
			return;
		}
}

static struct lim_entry *
get(struct lim_table *t, const void *key, size_t len, int create)
{
	uint64_t hash = lim_siphash(t->seed, key, len);
	struct lim_entry *e = find(t, key, len, hash);

	if (e != NULL) {
		lru_unlink(t, e);
		lru_push_head(t, e);
		return e;
	}
	if (!create || len > LIMITS_KEY_MAX)
		return NULL;
	if (t->size >= t->max_keys)
		evict(t);
	e = calloc(1, sizeof(*e) + t->nslots * sizeof(uint64_t) + len);
	if (e == NULL)
		return NULL;
	e->hash = hash;
	e->keylen = (uint8_t)len;
	memcpy(e->ring + t->nslots, key, len);
	e->hnext = t->buckets[hash & (t->nbuckets - 1)];
	t->buckets[hash & (t->nbuckets - 1)] = e;
	lru_push_head(t, e);
	t->size++;
	return e;
}

/* Bring e's ring to the slot of `now`: slots that left the window are
 * zeroed.  Returns the sum over the window. */
static uint64_t
advance(struct lim_table *t, struct lim_entry *e, uint64_t now)
{
	uint64_t cur = now / t->slot_len, sum = 0, s;
	unsigned i;

	if (cur > e->last) {
		if (cur - e->last >= t->nslots)
			memset(e->ring, 0, t->nslots * sizeof(uint64_t));
		else
			for (s = e->last + 1; s <= cur; s++)
				e->ring[s % t->nslots] = 0;
		e->last = cur;
	}
	for (i = 0; i < t->nslots; i++)
		sum += e->ring[i];
	return sum;
}

uint64_t
lim_table_add(struct lim_table *t, const void *key, size_t len, uint64_t n,
	      uint64_t now)
{
	struct lim_entry *e;
	uint64_t sum;

	if (t->nslots == 0)
		return 0;
	e = get(t, key, len, n > 0);
	if (e == NULL)
		return 0;
	sum = advance(t, e, now);
	if (n > 0) {
		e->ring[e->last % t->nslots] += n;
		sum += n;
	} else if (sum == 0 && e->gauge == 0) {
		remove_entry(t, e);	/* nothing left to count */
	}
	return sum;
}

int
lim_table_admit(struct lim_table *t, const void *key, size_t len,
		uint64_t max, uint64_t *count_r)
{
	struct lim_entry *e = get(t, key, len, 1);

	if (e == NULL) {
		/* out of memory: admitted, uncounted (limits fail open) */
		if (count_r != NULL)
			*count_r = 0;
		return 1;
	}
	if (e->gauge >= max) {
		if (count_r != NULL)
			*count_r = e->gauge;
		return 0;
	}
	e->gauge++;
	if (count_r != NULL)
		*count_r = e->gauge;
	return 1;
}

void
lim_table_release(struct lim_table *t, const void *key, size_t len)
{
	struct lim_entry *e = get(t, key, len, 0);

	if (e == NULL)
		return;
	if (e->gauge > 0)
		e->gauge--;
	if (e->gauge == 0 && t->nslots == 0)
		remove_entry(t, e);
}

uint64_t
lim_table_gauge(struct lim_table *t, const void *key, size_t len)
{
	struct lim_entry *e = get(t, key, len, 0);

	return e != NULL ? e->gauge : 0;
}
