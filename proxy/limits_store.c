/*
 * limits_store.c - see limits_store.h.
 *
 * The region: the tables one after the other, each a header (struct
 * lim_shtable, with its mutex), its bucket array, then its entries, all
 * aligned to 64 bytes (no two tables share a cache line).  An entry is a
 * fixed-size record: struct lim_shentry, the ring of window slot counts,
 * the per-owner gauge counts (gauge tables), then the key.  Entries are
 * numbered from 1; 0 is "none", so the zero pages mmap gives are already
 * an empty table.  Entries are handed out from the free list, else from
 * the high-water mark `used` (pages past it are never touched).
 *
 * Crash consistency (limits_store.h, "Locking"): only entries marked
 * in_use are trusted by repair(); make_entry() marks a new entry after
 * writing it, remove_entry() unmarks one before unlinking it, with a
 * compiler barrier between (a process dies between two instructions, so
 * the order of its stores is what matters, not their visibility).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "limits_store.h"

#define ALIGN_UP(n, a) (((n) + ((a) - 1)) & ~((size_t)(a) - 1))
#define LIM_LINE 64
#define LIM_HELD_SOLO 1024		/* lim_table_new()'s spare room */
#define LIM_RESET_CHUNK 256		/* entries scanned per lock */
#define LIM_CAPACITY_MAX (UINT32_MAX - 1)
#define BARRIER() __atomic_signal_fence(__ATOMIC_SEQ_CST)

struct lim_shentry {
	uint32_t hnext;			/* bucket chain, or the free list */
	uint32_t prev, next;		/* LRU: head = most recent */
	uint8_t in_use;
	uint8_t keylen;
	uint8_t pad[2];
	uint64_t hash;
	uint64_t last;			/* slot number of the newest slot */
	uint64_t gauge;			/* = sum of owners[] in gauge tables */
	/* uint64_t ring[nslots]; uint32_t owners[nowners]; key */
};

struct lim_shtable {
	pthread_mutex_t lock;
	uint32_t slot_len, nslots;	/* 0 slots: gauges only */
	uint32_t nowners;		/* 0: gauges not attributed */
	uint32_t head, tail;		/* LRU */
	uint32_t free;			/* free list, through hnext */
	uint64_t max_keys, capacity;	/* capacity = max_keys + held_max */
	uint64_t size, used;		/* keys; entries ever handed out */
	uint64_t nbuckets;		/* a power of two */
	uint64_t buckets_off, entries_off;	/* from the region's start */
	uint64_t entry_size, owners_off, key_off;	/* within an entry */
	uint64_t repairs;
	uint8_t seed[16];
};

/* The geometry of a table, fixed when it is made. */
struct lim_geom {
	uint32_t slot_len, nslots, nowners;
	uint64_t max_keys, capacity, nbuckets;
	uint64_t entry_size, owners_off, key_off;
	uint8_t seed[16];
};

/* Process-local handles (made by the mapper, copied by fork).  The
 * geometry is read from here, never from the region: what a process of
 * the instance may have written there (limits_store.h, SECURITY) does not
 * move an offset, and the constants stay off the cache line every
 * operation writes. */
struct lim_table {
	struct lim_store *store;
	struct lim_shtable *sh;
	struct lim_geom g;
	uint32_t *buckets;
	uint8_t *entries;
	int solo;			/* made by lim_table_new() */
};

/*
 * The region's first block: owners' reset requests.  The maker (the
 * master) only ever stores its own counts into req[] and req_sum; the
 * users compare them with done[] and done_sum and carry the resets out
 * under `lock`.
 */
struct lim_shctl {
	pthread_mutex_t lock;
	uint64_t req_sum, done_sum;
	/* uint64_t req[nowners], done[nowners] (at ctl_req_off) */
};

struct lim_store {
	uint8_t *base;
	size_t size;
	unsigned ntables, nowners;
	unsigned owner;			/* this process's */
	struct lim_table *tables;
	struct lim_shctl *ctl;
	uint64_t *req, *done;		/* in the region */
	uint64_t *req_mine, req_mine_sum;	/* what this process asked */
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
/* Layout */

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

struct lim_layout {
	unsigned slot_len, nslots, nowners;
	size_t capacity, nbuckets, entry_size, owners_off, key_off;
	size_t buckets_off, entries_off, total;	/* from the table's start */
};

/* 0, or -1 when the table would not fit in a size_t or 32-bit indices. */
static int
layout(const struct lim_table_spec *sp, unsigned nowners,
       struct lim_layout *l)
{
	size_t max_keys = sp->max_keys > 0 ? sp->max_keys : 1, n = 64, bytes;

	memset(l, 0, sizeof(*l));
	if (sp->window > 0)
		limits_window_geometry(sp->window, &l->slot_len, &l->nslots);
	l->nowners = sp->window == 0 ? nowners : 0;
	if (max_keys > LIM_CAPACITY_MAX ||
	    sp->held_max > LIM_CAPACITY_MAX - max_keys)
		return -1;
	l->capacity = max_keys + sp->held_max;
	while (n < max_keys && n < ((size_t)1 << 24))
		n <<= 1;
	l->nbuckets = n;
	l->owners_off = sizeof(struct lim_shentry) +
	    (size_t)l->nslots * sizeof(uint64_t);
	l->key_off = l->owners_off + (size_t)l->nowners * sizeof(uint32_t);
	l->entry_size = ALIGN_UP(l->key_off + LIMITS_KEY_MAX, 8);
	l->buckets_off = ALIGN_UP(sizeof(struct lim_shtable), LIM_LINE);
	l->entries_off = l->buckets_off +
	    ALIGN_UP(l->nbuckets * sizeof(uint32_t), LIM_LINE);
	if (__builtin_mul_overflow(l->capacity, l->entry_size, &bytes) ||
	    __builtin_add_overflow(bytes, l->entries_off + LIM_LINE, &bytes))
		return -1;
	l->total = ALIGN_UP(bytes, LIM_LINE);
	return 0;
}

#define CTL_REQ_OFF ALIGN_UP(sizeof(struct lim_shctl), LIM_LINE)

static size_t
ctl_bytes(unsigned nowners)
{
	return ALIGN_UP(CTL_REQ_OFF + 2 * (size_t)nowners * sizeof(uint64_t),
	    LIM_LINE);
}

size_t
lim_store_bytes(const struct lim_table_spec *specs, unsigned ntables,
		unsigned nowners)
{
	struct lim_layout l;
	size_t total = ctl_bytes(nowners), page = (size_t)sysconf(_SC_PAGESIZE);
	unsigned i;

	for (i = 0; i < ntables; i++)
		if (layout(&specs[i], nowners, &l) < 0 ||
		    __builtin_add_overflow(total, l.total, &total))
			return 0;
	if (total > SIZE_MAX - page)
		return 0;
	return ALIGN_UP(total > 0 ? total : 1, page);
}

static void
handle_init(struct lim_store *st, struct lim_table *t, size_t off)
{
	t->store = st;
	t->sh = (struct lim_shtable *)(st->base + off);
	t->buckets = (uint32_t *)(st->base + t->sh->buckets_off);
	t->entries = st->base + t->sh->entries_off;
	t->g.slot_len = t->sh->slot_len;
	t->g.nslots = t->sh->nslots;
	t->g.nowners = t->sh->nowners;
	t->g.max_keys = t->sh->max_keys;
	t->g.capacity = t->sh->capacity;
	t->g.nbuckets = t->sh->nbuckets;
	t->g.entry_size = t->sh->entry_size;
	t->g.owners_off = t->sh->owners_off;
	t->g.key_off = t->sh->key_off;
	memcpy(t->g.seed, t->sh->seed, sizeof(t->g.seed));
}

struct lim_store *
lim_store_new(const struct lim_table_spec *specs, unsigned ntables,
	      unsigned nowners)
{
	struct lim_store *st;
	pthread_mutexattr_t ma;
	size_t off = ctl_bytes(nowners);
	unsigned i;
	void *p;

	if (nowners == 0 || nowners > LIMITS_OWNERS_MAX) {
		errno = EINVAL;
		return NULL;
	}
	if ((st = calloc(1, sizeof(*st))) == NULL)
		return NULL;
	st->ntables = ntables;
	st->nowners = nowners;
	st->size = lim_store_bytes(specs, ntables, nowners);
	st->tables = calloc(ntables > 0 ? ntables : 1, sizeof(*st->tables));
	st->req_mine = calloc(nowners, sizeof(*st->req_mine));
	if (st->size == 0 || st->tables == NULL || st->req_mine == NULL) {
		free(st->req_mine);
		free(st->tables);
		free(st);
		errno = ENOMEM;
		return NULL;
	}
	/* NORESERVE: the bound is charged as it is used, not up front */
	p = mmap(NULL, st->size, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		int e = errno;

		free(st->req_mine);
		free(st->tables);
		free(st);
		errno = e;
		return NULL;
	}
	st->base = p;
	/* the counters name users and addresses: kept out of core dumps */
	(void)madvise(p, st->size, MADV_DONTDUMP);
	if (pthread_mutexattr_init(&ma) != 0 ||
	    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED) != 0 ||
	    pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST) != 0)
		goto fail;
	st->ctl = (struct lim_shctl *)st->base;
	st->req = (uint64_t *)(st->base + CTL_REQ_OFF);
	st->done = st->req + nowners;
	if (pthread_mutex_init(&st->ctl->lock, &ma) != 0)
		goto fail;
	for (i = 0; i < ntables; i++) {
		struct lim_shtable *sh = (struct lim_shtable *)(st->base + off);
		struct lim_layout l;

		(void)layout(&specs[i], nowners, &l);	/* checked above */
		if (pthread_mutex_init(&sh->lock, &ma) != 0)
			goto fail;
		sh->slot_len = l.slot_len;
		sh->nslots = l.nslots;
		sh->nowners = l.nowners;
		sh->max_keys = specs[i].max_keys > 0 ? specs[i].max_keys : 1;
		sh->capacity = l.capacity;
		sh->nbuckets = l.nbuckets;
		sh->buckets_off = off + l.buckets_off;
		sh->entries_off = off + l.entries_off;
		sh->entry_size = l.entry_size;
		sh->owners_off = l.owners_off;
		sh->key_off = l.key_off;
		memcpy(sh->seed, specs[i].seed, sizeof(sh->seed));
		handle_init(st, &st->tables[i], off);
		off += l.total;
	}
	pthread_mutexattr_destroy(&ma);
	return st;
fail:
	pthread_mutexattr_destroy(&ma);
	munmap(st->base, st->size);
	free(st->req_mine);
	free(st->tables);
	free(st);
	errno = ENOMEM;
	return NULL;
}

void
lim_store_free(struct lim_store **stp)
{
	struct lim_store *st = *stp;

	if (st == NULL)
		return;
	*stp = NULL;
	/* the mutexes are not destroyed: other processes may still use them */
	munmap(st->base, st->size);
	free(st->req_mine);
	free(st->tables);
	free(st);
}

struct lim_table *
lim_store_table(struct lim_store *st, unsigned i)
{
	return i < st->ntables ? &st->tables[i] : NULL;
}

size_t
lim_store_size(const struct lim_store *st)
{
	return st->size;
}

int
lim_store_set_owner(struct lim_store *st, unsigned owner)
{
	if (owner >= st->nowners) {
		errno = EINVAL;
		return -1;
	}
	st->owner = owner;
	return 0;
}

struct lim_table *
lim_table_new(unsigned window, size_t max_keys, const uint8_t seed[16])
{
	struct lim_table_spec sp;
	struct lim_store *st;

	memset(&sp, 0, sizeof(sp));
	sp.window = window;
	sp.max_keys = max_keys;
	sp.held_max = LIM_HELD_SOLO;
	memcpy(sp.seed, seed, sizeof(sp.seed));
	if ((st = lim_store_new(&sp, 1, 1)) == NULL)
		return NULL;
	st->tables[0].solo = 1;
	return &st->tables[0];
}

void
lim_table_free(struct lim_table **tp)
{
	struct lim_table *t = *tp;
	struct lim_store *st;

	if (t == NULL)
		return;
	*tp = NULL;
	if (t->solo) {
		st = t->store;
		lim_store_free(&st);
	}
}

size_t
lim_table_size(const struct lim_table *t)
{
	return (size_t)__atomic_load_n(&t->sh->size, __ATOMIC_RELAXED);
}

uint64_t
lim_table_repairs(const struct lim_table *t)
{
	return __atomic_load_n(&t->sh->repairs, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------ */
/* Entries (the table's lock held) */

static struct lim_shentry *
E(const struct lim_table *t, uint32_t i)
{
	return (struct lim_shentry *)(t->entries +
	    (size_t)(i - 1) * t->g.entry_size);
}

static uint64_t *
entry_ring(struct lim_shentry *e)
{
	return (uint64_t *)(e + 1);
}

static uint32_t *
entry_owners(const struct lim_table *t, struct lim_shentry *e)
{
	return (uint32_t *)((uint8_t *)e + t->g.owners_off);
}

static uint8_t *
entry_key(const struct lim_table *t, struct lim_shentry *e)
{
	return (uint8_t *)e + t->g.key_off;
}

static uint32_t *
bucket_of(const struct lim_table *t, uint64_t hash)
{
	return &t->buckets[hash & (t->g.nbuckets - 1)];
}

static void
lru_unlink(struct lim_table *t, uint32_t i)
{
	struct lim_shtable *sh = t->sh;
	struct lim_shentry *e = E(t, i);

	if (e->prev != 0)
		E(t, e->prev)->next = e->next;
	else
		sh->head = e->next;
	if (e->next != 0)
		E(t, e->next)->prev = e->prev;
	else
		sh->tail = e->prev;
	e->prev = e->next = 0;
}

static void
lru_push_head(struct lim_table *t, uint32_t i)
{
	struct lim_shtable *sh = t->sh;
	struct lim_shentry *e = E(t, i);

	e->prev = 0;
	e->next = sh->head;
	if (sh->head != 0)
		E(t, sh->head)->prev = i;
	sh->head = i;
	if (sh->tail == 0)
		sh->tail = i;
}

static uint32_t
find(struct lim_table *t, const void *key, size_t len, uint64_t hash)
{
	uint32_t i;

	for (i = *bucket_of(t, hash); i != 0; i = E(t, i)->hnext) {
		struct lim_shentry *e = E(t, i);

		if (e->hash == hash && e->keylen == len &&
		    memcmp(entry_key(t, e), key, len) == 0)
			return i;
	}
	return 0;
}

static void
link_entry(struct lim_table *t, uint32_t i)
{
	struct lim_shentry *e = E(t, i);
	uint32_t *b = bucket_of(t, e->hash);

	e->hnext = *b;
	*b = i;
	lru_push_head(t, i);
	t->sh->size++;
}

static void
remove_entry(struct lim_table *t, uint32_t i)
{
	struct lim_shtable *sh = t->sh;
	struct lim_shentry *e = E(t, i);
	uint32_t *pp = bucket_of(t, e->hash);

	e->in_use = 0;
	BARRIER();
	while (*pp != i)
		pp = &E(t, *pp)->hnext;
	*pp = e->hnext;
	lru_unlink(t, i);
	sh->size--;
	e->hnext = sh->free;
	sh->free = i;
}

/* Make room for one more key: drop the least recently used one that no
 * session holds.  Only a few are looked at: when they are all held, the
 * new key takes a spare entry (held_max). */
static void
evict(struct lim_table *t)
{
	uint32_t i = t->sh->tail;
	int tries;

	for (tries = 0; i != 0 && tries < 8; tries++, i = E(t, i)->prev)
		if (E(t, i)->gauge == 0) {
			remove_entry(t, i);
			return;
		}
}

static uint32_t
entry_alloc(struct lim_table *t)
{
	struct lim_shtable *sh = t->sh;
	uint32_t i = sh->free;

	if (i != 0) {
		sh->free = E(t, i)->hnext;
		return i;
	}
	if (sh->used < t->g.capacity)
		return (uint32_t)++sh->used;
	return 0;
}

static uint32_t
make_entry(struct lim_table *t, const void *key, size_t len, uint64_t hash)
{
	struct lim_shentry *e;
	uint32_t i;

	if (t->sh->size >= t->g.max_keys)
		evict(t);
	if ((i = entry_alloc(t)) == 0)
		return 0;
	e = E(t, i);
	memset(e, 0, t->g.key_off);
	e->hash = hash;
	e->keylen = (uint8_t)len;
	memcpy(entry_key(t, e), key, len);
	BARRIER();
	e->in_use = 1;
	BARRIER();
	link_entry(t, i);
	return i;
}

/* The entry of key, most recently used now; made when create says so.
 * 0 when absent (or no room). */
static uint32_t
get(struct lim_table *t, const void *key, size_t len, uint64_t hash,
    int create)
{
	uint32_t i = find(t, key, len, hash);

	if (i != 0) {
		if (t->sh->head != i) {
			lru_unlink(t, i);
			lru_push_head(t, i);
		}
		return i;
	}
	if (!create)
		return 0;
	return make_entry(t, key, len, hash);
}

/*
 * After a process died holding the lock: everything but the entries
 * marked in use is rebuilt from them.  O(entries handed out), once per
 * crash.
 */
static void
repair(struct lim_table *t)
{
	struct lim_shtable *sh = t->sh;
	uint32_t i, o;

	memset(t->buckets, 0, t->g.nbuckets * sizeof(uint32_t));
	sh->head = sh->tail = sh->free = 0;
	sh->size = 0;
	if (sh->used > t->g.capacity)
		sh->used = t->g.capacity;
	for (i = (uint32_t)sh->used; i >= 1; i--) {
		struct lim_shentry *e = E(t, i);
		uint8_t *key = entry_key(t, e);

		e->prev = e->next = 0;
		if (e->in_use) {
			e->hash = lim_siphash(t->g.seed, key, e->keylen);
			if (find(t, key, e->keylen, e->hash) != 0)
				e->in_use = 0;	/* cannot happen; be safe */
		}
		if (!e->in_use) {
			e->hnext = sh->free;
			sh->free = i;
			continue;
		}
		if (t->g.nowners > 0) {
			uint32_t *ow = entry_owners(t, e);

			e->gauge = 0;
			for (o = 0; o < t->g.nowners; o++)
				e->gauge += ow[o];
		}
		if (t->g.nslots == 0 && e->gauge == 0) {
			/* a gauge at 0 is no entry (an admission cut short) */
			e->in_use = 0;
			e->hnext = sh->free;
			sh->free = i;
			continue;
		}
		link_entry(t, i);
	}
	sh->repairs++;
}

static int
lock(struct lim_table *t)
{
	int r = pthread_mutex_lock(&t->sh->lock);

	if (r == EOWNERDEAD) {
		/* should this process die here too, the next one repairs
		 * again: the mutex is still not consistent */
		repair(t);
		pthread_mutex_consistent(&t->sh->lock);
		return 0;
	}
	/* ENOTRECOVERABLE cannot happen (consistent is always called):
	 * counted as out of memory would be, the limits fail open */
	return r == 0 ? 0 : -1;
}

static void
unlock(struct lim_table *t)
{
	pthread_mutex_unlock(&t->sh->lock);
}

/* Bring e's ring to the slot of `now`: slots that left the window are
 * zeroed.  Returns the sum over the window. */
static uint64_t
advance(struct lim_table *t, struct lim_shentry *e, uint64_t now)
{
	uint64_t cur = now / t->g.slot_len, sum = 0, s;
	uint64_t *ring = entry_ring(e);
	unsigned i, n = t->g.nslots;

	if (cur > e->last) {
		if (cur - e->last >= n)
			memset(ring, 0, n * sizeof(uint64_t));
		else
			for (s = e->last + 1; s <= cur; s++)
				ring[s % n] = 0;
		e->last = cur;
	}
	for (i = 0; i < n; i++)
		sum += ring[i];
	return sum;
}

/* ------------------------------------------------------------------ */
/* Operations */

uint64_t
lim_table_add(struct lim_table *t, const void *key, size_t len, uint64_t n,
	      uint64_t now)
{
	struct lim_shentry *e;
	uint64_t hash, sum;
	uint32_t i;

	if (t->g.nslots == 0 || len > LIMITS_KEY_MAX)
		return 0;
	hash = lim_siphash(t->g.seed, key, len);	/* outside the lock */
	if (lock(t) < 0)
		return 0;
	if ((i = get(t, key, len, hash, n > 0)) == 0) {
		unlock(t);
		return 0;
	}
	e = E(t, i);
	sum = advance(t, e, now);
	if (n > 0) {
		entry_ring(e)[e->last % t->g.nslots] += n;
		sum += n;
	} else if (sum == 0 && e->gauge == 0) {
		remove_entry(t, i);	/* nothing left to count */
	}
	unlock(t);
	return sum;
}

int
lim_table_admit(struct lim_table *t, const void *key, size_t len,
		uint64_t max, uint64_t *count_r)
{
	uint64_t hash, count = 0;
	int admitted = 1;
	uint32_t i;

	if (len > LIMITS_KEY_MAX)
		goto uncounted;
	hash = lim_siphash(t->g.seed, key, len);
	if (lock(t) < 0)
		goto uncounted;
	if ((i = get(t, key, len, hash, 1)) != 0) {
		struct lim_shentry *e = E(t, i);

		if (e->gauge >= max) {
			admitted = 0;
		} else {
			if (t->g.nowners > 0)
				entry_owners(t, e)[t->store->owner]++;
			e->gauge++;
		}
		count = e->gauge;
	}
	/* else no room: admitted, uncounted (limits fail open) */
	unlock(t);
uncounted:
	if (count_r != NULL)
		*count_r = count;
	return admitted;
}

void
lim_table_release(struct lim_table *t, const void *key, size_t len)
{
	struct lim_shentry *e;
	uint64_t hash;
	uint32_t i;

	if (len > LIMITS_KEY_MAX)
		return;
	hash = lim_siphash(t->g.seed, key, len);
	if (lock(t) < 0)
		return;
	if ((i = get(t, key, len, hash, 0)) == 0) {
		unlock(t);
		return;
	}
	e = E(t, i);
	if (t->g.nowners > 0) {
		uint32_t *mine = &entry_owners(t, e)[t->store->owner];

		/* none: given back by lim_store_owner_reset() already */
		if (*mine > 0) {
			(*mine)--;
			if (e->gauge > 0)
				e->gauge--;
		}
	} else if (e->gauge > 0) {
		e->gauge--;
	}
	if (e->gauge == 0 && t->g.nslots == 0)
		remove_entry(t, i);
	unlock(t);
}

uint64_t
lim_table_gauge(struct lim_table *t, const void *key, size_t len)
{
	uint64_t hash, gauge = 0;
	uint32_t i;

	if (len > LIMITS_KEY_MAX)
		return 0;
	hash = lim_siphash(t->g.seed, key, len);
	if (lock(t) < 0)
		return 0;
	if ((i = get(t, key, len, hash, 0)) != 0)
		gauge = E(t, i)->gauge;
	unlock(t);
	return gauge;
}

/*
 * The owner is gone and no process has its slot: nothing adds to its
 * counts meanwhile, and an entry it holds is never evicted or removed (its
 * gauge is above 0), so the scan may take the lock a chunk at a time and
 * let the workers in between.
 */
uint64_t
lim_store_owner_reset(struct lim_store *st, unsigned owner)
{
	uint64_t dropped = 0;
	unsigned ti;

	if (owner >= st->nowners)
		return 0;
	for (ti = 0; ti < st->ntables; ti++) {
		struct lim_table *t = &st->tables[ti];
		uint64_t start, i, end, used;
		int more;

		if (t->g.nowners == 0)
			continue;
		for (start = 1, more = 1; more; start = end) {
			if (lock(t) < 0)
				break;
			used = t->sh->used < t->g.capacity ? t->sh->used :
			    t->g.capacity;
			end = start + LIM_RESET_CHUNK;
			if (end >= used + 1) {
				end = used + 1;
				more = 0;
			}
			for (i = start; i < end; i++) {
				struct lim_shentry *e = E(t, (uint32_t)i);
				uint32_t *held = &entry_owners(t, e)[owner];

				if (!e->in_use || *held == 0)
					continue;
				dropped += *held;
				e->gauge -= *held < e->gauge ? *held : e->gauge;
				*held = 0;
				if (e->gauge == 0 && t->g.nslots == 0)
					remove_entry(t, (uint32_t)i);
			}
			unlock(t);
		}
	}
	return dropped;
}

void
lim_store_request_reset(struct lim_store *st, unsigned owner)
{
	if (owner >= st->nowners)
		return;
	/* stores only, of counts kept here: nothing read from the region */
	st->req_mine[owner]++;
	st->req_mine_sum++;
	__atomic_store_n(&st->req[owner], st->req_mine[owner],
	    __ATOMIC_RELEASE);
	__atomic_store_n(&st->ctl->req_sum, st->req_mine_sum,
	    __ATOMIC_RELEASE);
}

uint64_t
lim_store_run_resets(struct lim_store *st,
		     void (*report)(unsigned owner, uint64_t n, void *arg),
		     void *arg)
{
	uint64_t sum, total = 0;
	unsigned o;
	int r;

	sum = __atomic_load_n(&st->ctl->req_sum, __ATOMIC_ACQUIRE);
	if (sum == __atomic_load_n(&st->ctl->done_sum, __ATOMIC_ACQUIRE))
		return 0;		/* the common case: two loads */
	r = pthread_mutex_lock(&st->ctl->lock);
	if (r == EOWNERDEAD)
		/* a reset cut short is run again (it is idempotent) */
		pthread_mutex_consistent(&st->ctl->lock);
	else if (r != 0)
		return 0;
	for (o = 0; o < st->nowners; o++) {
		uint64_t want = __atomic_load_n(&st->req[o], __ATOMIC_ACQUIRE);
		uint64_t n;

		if (want == st->done[o])
			continue;
		n = lim_store_owner_reset(st, o);
		st->done[o] = want;
		total += n;
		if (report != NULL)
			report(o, n, arg);
	}
	/* requests made since `sum` was read are seen next time */
	__atomic_store_n(&st->ctl->done_sum, sum, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&st->ctl->lock);
	return total;
}

void
lim_table_test_die_locked(struct lim_table *t, int scramble)
{
	struct lim_shtable *sh = t->sh;

	if (lock(t) < 0)
		_exit(1);
	if (scramble) {
		uint32_t i;

		memset(t->buckets, 0xff, t->g.nbuckets * sizeof(uint32_t));
		sh->head = sh->tail = UINT32_MAX;
		sh->free = UINT32_MAX;
		sh->size += 1000;
		for (i = 1; t->g.nowners > 0 && i <= sh->used; i++)
			if (E(t, i)->in_use) {
				E(t, i)->gauge += 7;	/* owners[] disagree */
				break;
			}
		/* an entry handed out, not finished */
		if (sh->used < t->g.capacity) {
			struct lim_shentry *e = E(t, (uint32_t)++sh->used);

			e->keylen = 3;
			e->gauge = 99;
		}
	}
	_exit(0);
}
