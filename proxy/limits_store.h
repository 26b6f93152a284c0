/*
 * limits_store.h - the in-memory counters behind the named limits
 * (rate_limits.h): sliding windows and concurrency gauges, keyed by a short
 * byte string (an identity, an address, a URL hash), in bounded memory
 * shared by every process of one msaproxy instance.
 *
 * A sliding window of W seconds is kept as LIMITS_SLOTS slots of
 * ceil(W / 16) seconds each (fewer slots when W < 16): the sum over a
 * window is the sum of the current slot and the ones before it that still
 * overlap the window, so an event leaves the sum between W - W/16 and W
 * seconds after it happened.  limits_window_geometry() is the one formula;
 * the Redis script (rate_limits.c) computes the same slots, so the two stores
 * agree.
 *
 * Sharing.  A store (struct lim_store) is one mmap(MAP_SHARED |
 * MAP_ANONYMOUS) region holding its tables, made by the master before it
 * forks: every process forked after that -- the workers, their
 * replacements, a new generation after a reload -- counts in the same
 * tables, so a limit holds once per instance whatever the number of
 * workers, and the counts survive a worker's restart.  The region holds no
 * pointers: entries are linked by index, tables found by offset.  Its size
 * is fixed when it is made (lim_store_bytes()); pages are touched only as
 * entries are first used, so a store costs what it holds.
 *
 * Memory: at most max_keys keys per table.  When a new key would pass
 * that, the least recently used key goes, unless it holds a gauge above 0
 * (a session still counted): those are skipped, and the table takes the
 * new key from its spare room (held_max entries), which the caller sizes
 * to the sessions that can hold gauges at once.  When the spare room is
 * used up too, the key is not stored: lim_table_add() returns 0 and
 * lim_table_admit() admits uncounted (limits fail open).
 *
 * Locking.  Each table has one process-shared, robust mutex; an operation
 * holds it for a lookup and a few stores (no I/O, no allocation, never two
 * locks at once).  A process that dies holding it (kill -9) leaves the
 * table to be repaired by the next process that locks it (EOWNERDEAD): the
 * hash chains, the LRU list and the free list are rebuilt from the entries
 * marked in use (an entry is marked only once complete and unmarked before
 * it is unlinked), each gauge is recomputed from its owners' counts, and
 * the mutex is marked consistent.  At most the interrupted operation is
 * lost, and the LRU order (repaired entries come back in index order).
 * lim_table_repairs() counts repairs.
 *
 * Owners.  In a gauge table (window 0) each entry counts, per owner (a
 * worker slot, 0 .. nowners - 1), what that owner admitted.  Each process
 * names its owner (lim_store_set_owner(), after the fork); release lowers a
 * gauge only by what the releasing owner holds, and lim_store_owner_reset()
 * gives back everything an owner held, so a worker that dies with sessions
 * counted does not leak them.  The maker (the master) does not run it: it
 * only writes a request (lim_store_request_reset()) that the processes
 * using the store carry out (lim_store_run_resets(): before a process
 * takes a slot, and before each operation of rate_limits.c), so the maker
 * never reads what they wrote.  A table with a window keeps no owners:
 * gauges admitted there are not attributed (rate_limits.c admits into
 * gauge tables only).
 *
 * Hashing is keyed (SipHash-2-4 with a random key per table, chosen by the
 * store's maker and shared): a client that chooses addresses or identities
 * cannot aim at one hash chain.
 *
 * SECURITY: every process that shares the region can write all of it; the
 * processes that use it trust each other (msaproxy's workers run as one
 * uid and could kill each other anyway).  What is defended against among
 * them is a process dying at any instruction, not one writing garbage on
 * purpose.  The maker is not among them: after the fork it needs only
 * lim_store_request_reset() and lim_store_free(), which read nothing from
 * the region and take no lock there (docs/SECURITY.md: the master is
 * root, the workers are not).
 *
 * Pure: no I/O, no clock; `now` is in seconds of a monotonic clock that
 * all the processes share (CLOCK_MONOTONIC).
 * Ownership: a store owns its tables; lim_store_free() unmaps them in the
 * calling process (the others keep theirs).
 */
#ifndef MSA_LIMITS_STORE_H
#define MSA_LIMITS_STORE_H

#include <stddef.h>
#include <stdint.h>

#define LIMITS_SLOTS 16
#define LIMITS_KEY_MAX 255
#define LIMITS_OWNERS_MAX 4096

/* Slot length and number of slots of a window of `window` seconds (>= 1). */
void limits_window_geometry(unsigned window, unsigned *slot_len_r,
			    unsigned *nslots_r);

struct lim_store;
struct lim_table;

struct lim_table_spec {
	unsigned window;	/* seconds; 0: a table of gauges */
	size_t max_keys;	/* >= 1: kept in LRU order */
	size_t held_max;	/* spare entries for held gauges */
	uint8_t seed[16];	/* the hash function's key */
};

/* Bytes of the region for these tables and owners; 0 if too large. */
size_t lim_store_bytes(const struct lim_table_spec *specs, unsigned ntables,
		       unsigned nowners);

/* Map a store: ntables tables as specs says, gauges counted for nowners
 * owners (1 .. LIMITS_OWNERS_MAX).  The calling process is owner 0.  NULL
 * with errno set (EINVAL, ENOMEM, or mmap's). */
struct lim_store *lim_store_new(const struct lim_table_spec *specs,
				unsigned ntables, unsigned nowners);
void lim_store_free(struct lim_store **stp);

/* Table i (as specs[i]); valid while the store is. */
struct lim_table *lim_store_table(struct lim_store *st, unsigned i);

/* Bytes mapped. */
size_t lim_store_size(const struct lim_store *st);

/* This process counts its gauges as `owner` from now on.  -1 if out of
 * range (EINVAL). */
int lim_store_set_owner(struct lim_store *st, unsigned owner);

/* Drop every gauge unit owner holds, in every table; returns how many.
 * Only once the process that was owner is gone, and before another one
 * takes its slot. */
uint64_t lim_store_owner_reset(struct lim_store *st, unsigned owner);

/* The maker's side: ask for lim_store_owner_reset(owner) (the process that
 * was owner is gone).  Stores two words; reads nothing from the region. */
void lim_store_request_reset(struct lim_store *st, unsigned owner);

/* The users' side: carry out the resets asked for so far, calling report
 * (may be NULL) for each owner reset with the units given back; returns
 * their sum.  Two loads when none is pending. */
uint64_t lim_store_run_resets(struct lim_store *st,
			      void (*report)(unsigned owner, uint64_t n,
					     void *arg),
			      void *arg);

/*
 * A store of one table, for one process and its children (owner 0 only;
 * held gauges may pass max_keys by 1024).  lim_table_free() unmaps it.
 * NULL when out of memory.
 */
struct lim_table *lim_table_new(unsigned window, size_t max_keys,
				const uint8_t seed[16]);
/* Frees a lim_table_new() table; for a store's table only sets *tp NULL. */
void lim_table_free(struct lim_table **tp);

/* Add n at time now to key's window; returns the window's sum after it.
 * n = 0 reads (and creates nothing). */
uint64_t lim_table_add(struct lim_table *t, const void *key, size_t len,
		       uint64_t n, uint64_t now);

/* Gauges.  admit: if key's gauge is below max, raise it by one (for this
 * process's owner) and return 1; else 0.  *count_r (may be NULL) is the
 * gauge afterwards.  release: lower it by one if this owner holds any
 * (never below 0). */
int lim_table_admit(struct lim_table *t, const void *key, size_t len,
		    uint64_t max, uint64_t *count_r);
void lim_table_release(struct lim_table *t, const void *key, size_t len);
uint64_t lim_table_gauge(struct lim_table *t, const void *key, size_t len);

/* Keys held now. */
size_t lim_table_size(const struct lim_table *t);

/* Times the table was repaired after a process died holding its lock. */
uint64_t lim_table_repairs(const struct lim_table *t);

/* SipHash-2-4 of data under a 16-byte key (exposed for the unit tests). */
uint64_t lim_siphash(const uint8_t key[16], const void *data, size_t len);

/*
 * For the unit tests only: take t's lock and _exit(0) holding it, as a
 * process killed in the middle of an operation would; with scramble, first
 * leave the chains, the LRU list, the size and a gauge wrong.
 */
void lim_table_test_die_locked(struct lim_table *t, int scramble)
    __attribute__((noreturn));

#endif
