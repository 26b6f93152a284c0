/*
 * limits_store.h - the in-memory counters behind the named limits
 * (rate_limits.h): sliding windows and concurrency gauges, keyed by a short
 * byte string (an identity, an address, a URL hash), in bounded memory.
 *
 * A sliding window of W seconds is kept as LIMITS_SLOTS slots of
 * ceil(W / 16) seconds each (fewer slots when W < 16): the sum over a
 * window is the sum of the current slot and the ones before it that still
 * overlap the window, so an event leaves the sum between W - W/16 and W
 * seconds after it happened.  limits_window_geometry() is the one formula;
 * the Redis script (rate_limits.c) computes the same slots, so the two stores
 * agree.
 *
 * Memory: at most max_keys keys per table.  When a new key would pass
 * that, the least recently used key goes, unless it holds a gauge above 0
 * (a session still counted): those are skipped, so a table of gauges can
 * pass max_keys by the number of sessions the worker holds, which
 * limits.max_connections bounds.
 *
 * Hashing is keyed (SipHash-2-4 with a random key per table): a client
 * that chooses addresses or identities cannot aim at one hash chain.
 *
 * Pure: no I/O, no clock; `now` is in seconds of any monotonic clock.
 * Ownership: a table owns its entries; lim_table_free() frees them all.
 */
#ifndef MSA_LIMITS_STORE_H
#define MSA_LIMITS_STORE_H

#include <stddef.h>
#include <stdint.h>

#define LIMITS_SLOTS 16
#define LIMITS_KEY_MAX 255

/* Slot length and number of slots of a window of `window` seconds (>= 1). */
void limits_window_geometry(unsigned window, unsigned *slot_len_r,
			    unsigned *nslots_r);

struct lim_table;

/* window: seconds (0 for a table of gauges only); max_keys >= 1;
 * seed: 16 bytes for the hash function.  NULL when out of memory. */
struct lim_table *lim_table_new(unsigned window, size_t max_keys,
				const uint8_t seed[16]);
void lim_table_free(struct lim_table **tp);

/* Add n at time now to key's window; returns the window's sum after it.
 * n = 0 reads (and creates nothing). */
uint64_t lim_table_add(struct lim_table *t, const void *key, size_t len,
		       uint64_t n, uint64_t now);

/* Gauges.  admit: if key's gauge is below max, raise it by one and return
 * 1; else 0.  *count_r (may be NULL) is the gauge afterwards.  release:
 * lower it by one (never below 0). */
int lim_table_admit(struct lim_table *t, const void *key, size_t len,
		    uint64_t max, uint64_t *count_r);
void lim_table_release(struct lim_table *t, const void *key, size_t len);
uint64_t lim_table_gauge(struct lim_table *t, const void *key, size_t len);

/* Keys held now. */
size_t lim_table_size(const struct lim_table *t);

/* SipHash-2-4 of data under a 16-byte key (exposed for the unit tests). */
uint64_t lim_siphash(const uint8_t key[16], const void *data, size_t len);

#endif
