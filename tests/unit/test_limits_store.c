/*
 * test_limits_store.c - the in-memory counters of the named limits
 * (proxy/limits_store.c): window geometry, sliding windows slot by slot,
 * gauges, bounded memory with LRU eviction that spares held gauges, and
 * the SipHash-2-4 the table hashes with (reference vectors); and the
 * sharing: processes forked after the store is made count in the same
 * tables exactly, a process that dies holding a table's lock leaves it
 * repaired by the next, and an owner's gauges are given back by
 * lim_store_owner_reset().
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "limits_store.h"

static const uint8_t seed[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    13, 14, 15, 16 };

#define K(s) (s), strlen(s)

static void
test_geometry(void **state)
{
	static const struct { unsigned w, slot, n; } cases[] = {
		{ 1, 1, 1 }, { 10, 1, 10 }, { 16, 1, 16 }, { 17, 2, 9 },
		{ 60, 4, 15 }, { 100, 7, 15 }, { 900, 57, 16 },
		{ 3600, 225, 16 }, { 86400, 5400, 16 }, { 0, 1, 1 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned slot, n;

		limits_window_geometry(cases[i].w, &slot, &n);
		assert_int_equal(slot, cases[i].slot);
		assert_int_equal(n, cases[i].n);
		/* the slots cover at least the window, less than a slot more */
		if (cases[i].w > 0) {
			assert_true(slot * n >= cases[i].w);
			assert_true(slot * n < cases[i].w + slot);
		}
		assert_true(n <= LIMITS_SLOTS);
	}
}

static void
test_window_slides(void **state)
{
	/* 160 s in 16 slots of 10 s */
	struct lim_table *t = lim_table_new(160, 100, seed);
	uint64_t base = 1000000;	/* a slot boundary */

	(void)state;
	assert_non_null(t);
	assert_int_equal(lim_table_add(t, K("alice"), 1, base), 1);
	assert_int_equal(lim_table_add(t, K("alice"), 2, base + 5), 3);
	assert_int_equal(lim_table_add(t, K("bob"), 7, base + 5), 7);
	assert_int_equal(lim_table_add(t, K("alice"), 4, base + 30), 7);
	/* reading adds nothing */
	assert_int_equal(lim_table_add(t, K("alice"), 0, base + 31), 7);
	/* the first slot (base .. base+9) is still in at base+159 */
	assert_int_equal(lim_table_add(t, K("alice"), 0, base + 159), 7);
	/* and gone a whole window after its start */
	assert_int_equal(lim_table_add(t, K("alice"), 0, base + 160), 4);
	/* the slot of base+30 leaves at base+190 */
	assert_int_equal(lim_table_add(t, K("alice"), 0, base + 189), 4);
	assert_int_equal(lim_table_add(t, K("alice"), 0, base + 190), 0);
	/* an empty window is forgotten on reading (alice just was) */
	assert_int_equal(lim_table_size(t), 1);
	assert_int_equal(lim_table_add(t, K("bob"), 0, base + 10000), 0);
	assert_int_equal(lim_table_size(t), 0);
	/* counting again after a long pause starts from zero */
	assert_int_equal(lim_table_add(t, K("alice"), 5, base + 20000), 5);
	assert_int_equal(lim_table_add(t, K("alice"), 1, base + 20001), 6);
	lim_table_free(&t);
	assert_null(t);
}

static void
test_window_every_second(void **state)
{
	/* one event per second over a 60 s window: the sum never exceeds the
	 * window's worth plus one slot, and never falls below it less one */
	struct lim_table *t = lim_table_new(60, 10, seed);
	unsigned slot, n;
	uint64_t now, sum = 0;

	(void)state;
	limits_window_geometry(60, &slot, &n);
	for (now = 5000; now < 5000 + 600; now++) {
		sum = lim_table_add(t, K("x"), 1, now);
		if (now >= 5000 + 60 + slot) {
			assert_true(sum <= 60 + slot);
			assert_true(sum >= 60 - slot);
		}
	}
	assert_true(sum > 0);
	lim_table_free(&t);
}

static void
test_absent_key(void **state)
{
	struct lim_table *t = lim_table_new(60, 10, seed);

	(void)state;
	assert_int_equal(lim_table_add(t, K("nobody"), 0, 100), 0);
	assert_int_equal(lim_table_size(t), 0);
	assert_int_equal(lim_table_gauge(t, K("nobody")), 0);
	lim_table_release(t, K("nobody"));
	assert_int_equal(lim_table_size(t), 0);
	lim_table_free(&t);
}

static void
test_gauges(void **state)
{
	struct lim_table *t = lim_table_new(0, 10, seed);
	uint64_t c = 99;

	(void)state;
	/* a gauge table counts no window */
	assert_int_equal(lim_table_add(t, K("a"), 5, 100), 0);
	assert_int_equal(lim_table_admit(t, K("a"), 2, &c), 1);
	assert_int_equal(c, 1);
	assert_int_equal(lim_table_admit(t, K("a"), 2, &c), 1);
	assert_int_equal(c, 2);
	assert_int_equal(lim_table_admit(t, K("a"), 2, &c), 0);
	assert_int_equal(c, 2);
	assert_int_equal(lim_table_admit(t, K("b"), 2, NULL), 1);
	assert_int_equal(lim_table_gauge(t, K("a")), 2);
	lim_table_release(t, K("a"));
	assert_int_equal(lim_table_gauge(t, K("a")), 1);
	assert_int_equal(lim_table_admit(t, K("a"), 2, &c), 1);
	lim_table_release(t, K("a"));
	lim_table_release(t, K("a"));
	/* at zero the key goes */
	assert_int_equal(lim_table_size(t), 1);
	lim_table_release(t, K("a"));
	assert_int_equal(lim_table_gauge(t, K("a")), 0);
	lim_table_release(t, K("b"));
	assert_int_equal(lim_table_size(t), 0);
	lim_table_free(&t);
}

static void
test_lru_eviction(void **state)
{
	struct lim_table *t = lim_table_new(3600, 4, seed);
	char key[16];
	int i;

	(void)state;
	for (i = 0; i < 4; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		lim_table_add(t, K(key), 10 + (uint64_t)i, 100);
	}
	assert_int_equal(lim_table_size(t), 4);
	/* k0 is used again: k1 is now the least recently used */
	assert_int_equal(lim_table_add(t, K("k0"), 0, 101), 10);
	lim_table_add(t, K("k4"), 1, 102);
	assert_int_equal(lim_table_size(t), 4);
	assert_int_equal(lim_table_add(t, K("k1"), 0, 103), 0);
	assert_int_equal(lim_table_add(t, K("k0"), 0, 103), 10);
	assert_int_equal(lim_table_add(t, K("k2"), 0, 103), 12);
	assert_int_equal(lim_table_add(t, K("k4"), 0, 103), 1);
	/* many more keys: never more than max_keys */
	for (i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "n%d", i);
		lim_table_add(t, K(key), 1, 200 + (uint64_t)i);
		assert_true(lim_table_size(t) <= 4);
	}
	lim_table_free(&t);
}

static void
test_eviction_spares_held_gauges(void **state)
{
	struct lim_table *t = lim_table_new(0, 2, seed);
	char key[16];
	int i;

	(void)state;
	assert_int_equal(lim_table_admit(t, K("held1"), 5, NULL), 1);
	assert_int_equal(lim_table_admit(t, K("held2"), 5, NULL), 1);
	/* the table is full of held gauges: it grows rather than forget */
	for (i = 0; i < 5; i++) {
		snprintf(key, sizeof(key), "s%d", i);
		assert_int_equal(lim_table_admit(t, K(key), 5, NULL), 1);
	}
	assert_int_equal(lim_table_size(t), 7);
	assert_int_equal(lim_table_gauge(t, K("held1")), 1);
	assert_int_equal(lim_table_gauge(t, K("held2")), 1);
	for (i = 0; i < 5; i++) {
		snprintf(key, sizeof(key), "s%d", i);
		lim_table_release(t, K(key));
	}
	assert_int_equal(lim_table_size(t), 2);
	lim_table_free(&t);
}

static void
test_binary_and_long_keys(void **state)
{
	struct lim_table *t = lim_table_new(60, 10, seed);
	char big[300];
	const char a[] = { 'x', 0, 'y' }, b[] = { 'x', 0, 'z' };

	(void)state;
	memset(big, 'q', sizeof(big));
	/* longer than LIMITS_KEY_MAX: not stored */
	assert_int_equal(lim_table_add(t, big, sizeof(big), 1, 10), 0);
	assert_int_equal(lim_table_add(t, big, LIMITS_KEY_MAX, 1, 10), 1);
	/* keys are bytes, not strings */
	assert_int_equal(lim_table_add(t, a, sizeof(a), 1, 10), 1);
	assert_int_equal(lim_table_add(t, b, sizeof(b), 2, 10), 2);
	assert_int_equal(lim_table_add(t, a, sizeof(a), 0, 10), 1);
	assert_int_equal(lim_table_add(t, a, 1, 0, 10), 0);
	lim_table_free(&t);
}

/* SipHash-2-4 reference vectors (the paper's appendix): key 00..0f,
 * messages 00, 00 01, ... */
static void
test_siphash_vectors(void **state)
{
	uint8_t key[16], msg[64];
	size_t i;

	(void)state;
	for (i = 0; i < 16; i++)
		key[i] = (uint8_t)i;
	for (i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)i;
	assert_true(lim_siphash(key, msg, 0) == UINT64_C(0x726fdb47dd0e0e31));
	assert_true(lim_siphash(key, msg, 1) == UINT64_C(0x74f839c593dc67fd));
	assert_true(lim_siphash(key, msg, 8) == UINT64_C(0x93f5f5799a932462));
	assert_true(lim_siphash(key, msg, 15) == UINT64_C(0xa129ca6149be45e5));
	assert_true(lim_siphash(key, msg, 63) == UINT64_C(0x958a324ceb064572));
}

/* ------------------------------------------------------------------ */
/* Shared by processes */

static struct lim_store *
store2(unsigned window, size_t max_keys, size_t held_max, unsigned nowners)
{
	struct lim_table_spec sp[2];

	memset(sp, 0, sizeof(sp));
	sp[0].window = window;
	sp[0].max_keys = max_keys;
	memcpy(sp[0].seed, seed, 16);
	sp[1].window = 0;
	sp[1].max_keys = max_keys;
	sp[1].held_max = held_max;
	memcpy(sp[1].seed, seed, 16);
	sp[1].seed[0] ^= 0x55;
	return lim_store_new(sp, 2, nowners);
}

/* Exit status of pid (-1: not a normal exit). */
static int
reap(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

#define HAMMER_PROCS 4
#define HAMMER_ROUNDS 20000
#define CAP 50

static void
test_shared_exact_counts(void **state)
{
	struct lim_store *st = store2(3600, 64, 64, HAMMER_PROCS);
	struct lim_table *w, *g;
	pid_t pids[HAMMER_PROCS];
	unsigned admitted = 0, p;
	char key[16];
	int i;

	(void)state;
	assert_non_null(st);
	w = lim_store_table(st, 0);
	g = lim_store_table(st, 1);
	for (p = 0; p < HAMMER_PROCS; p++) {
		pids[p] = fork();
		assert_true(pids[p] >= 0);
		if (pids[p] > 0)
			continue;
		/* the child: counts, and takes what it can of a cap */
		unsigned mine = 0;

		if (lim_store_set_owner(st, p) < 0)
			_exit(255);
		for (i = 0; i < HAMMER_ROUNDS; i++) {
			snprintf(key, sizeof(key), "k%d", i % 8);
			lim_table_add(w, K("all"), 1, 1000);
			lim_table_add(w, K(key), 1, 1000);
			/* admitted and given back at once: must net to 0 */
			if (lim_table_admit(g, K("churn"), 1000, NULL))
				lim_table_release(g, K("churn"));
			if (i % 100 == 0 && lim_table_admit(g, K("cap"), CAP,
			    NULL))
				mine++;
		}
		_exit((int)mine);	/* holding its share of "cap" */
	}
	for (p = 0; p < HAMMER_PROCS; p++) {
		int got = reap(pids[p]);

		assert_true(got >= 0 && got <= CAP);
		admitted += (unsigned)got;
	}
	assert_int_equal(lim_table_add(w, K("all"), 0, 1001),
	    HAMMER_PROCS * HAMMER_ROUNDS);
	for (i = 0; i < 8; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		assert_int_equal(lim_table_add(w, K(key), 0, 1001),
		    HAMMER_PROCS * HAMMER_ROUNDS / 8);
	}
	/* the cap was taken exactly, never passed */
	assert_int_equal(admitted, CAP);
	assert_int_equal(lim_table_gauge(g, K("cap")), CAP);
	assert_int_equal(lim_table_gauge(g, K("churn")), 0);
	assert_int_equal(lim_table_repairs(w), 0);
	/* the children are gone: what they held is given back */
	for (p = 0; p < HAMMER_PROCS; p++)
		admitted -= (unsigned)lim_store_owner_reset(st, p);
	assert_int_equal(admitted, 0);
	assert_int_equal(lim_table_gauge(g, K("cap")), 0);
	assert_int_equal(lim_table_size(g), 0);
	lim_store_free(&st);
	assert_null(st);
}

static void
test_owner_reset(void **state)
{
	struct lim_store *st = store2(60, 16, 16, 3);
	struct lim_table *g;
	uint64_t c;
	pid_t pid;

	(void)state;
	assert_non_null(st);
	g = lim_store_table(st, 1);
	assert_int_equal(lim_store_set_owner(st, 3), -1);
	/* owner 0 (this process) holds 2 of x */
	assert_int_equal(lim_table_admit(g, K("x"), 10, NULL), 1);
	assert_int_equal(lim_table_admit(g, K("x"), 10, NULL), 1);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* owner 1 takes 3 of x and 1 of y, and dies holding them */
		int ok = lim_store_set_owner(st, 1) == 0 &&
		    lim_table_admit(g, K("x"), 10, NULL) &&
		    lim_table_admit(g, K("x"), 10, NULL) &&
		    lim_table_admit(g, K("x"), 10, NULL) &&
		    lim_table_admit(g, K("y"), 10, NULL);
		_exit(ok ? 0 : 1);
	}
	assert_int_equal(reap(pid), 0);
	assert_int_equal(lim_table_gauge(g, K("x")), 5);
	assert_int_equal(lim_table_gauge(g, K("y")), 1);
	assert_int_equal(lim_table_size(g), 2);
	/* owner 2 holds none of x: its release changes nothing */
	assert_int_equal(lim_store_set_owner(st, 2), 0);
	lim_table_release(g, K("x"));
	assert_int_equal(lim_table_gauge(g, K("x")), 5);
	/* the dead owner's entries go back; y is forgotten */
	assert_int_equal(lim_store_owner_reset(st, 1), 4);
	assert_int_equal(lim_store_owner_reset(st, 1), 0);
	assert_int_equal(lim_table_gauge(g, K("x")), 2);
	assert_int_equal(lim_table_gauge(g, K("y")), 0);
	assert_int_equal(lim_table_size(g), 1);
	/* up to the cap again */
	assert_int_equal(lim_table_admit(g, K("x"), 3, &c), 1);
	assert_int_equal(c, 3);
	assert_int_equal(lim_table_admit(g, K("x"), 3, &c), 0);
	/* owner 0's own entries are still its to give back */
	assert_int_equal(lim_store_set_owner(st, 0), 0);
	lim_table_release(g, K("x"));
	lim_table_release(g, K("x"));
	lim_table_release(g, K("x"));
	assert_int_equal(lim_table_gauge(g, K("x")), 1);	/* owner 2's */
	assert_int_equal(lim_store_owner_reset(st, 2), 1);
	assert_int_equal(lim_table_size(g), 0);
	lim_store_free(&st);
}

static void
test_reset_requested_by_maker(void **state)
{
	struct lim_store *st = store2(60, 16, 16, 3);
	struct lim_table *g;
	pid_t pid;

	(void)state;
	assert_non_null(st);
	g = lim_store_table(st, 1);
	/* nothing asked: nothing to do, nothing changes */
	assert_int_equal(lim_store_run_resets(st, NULL, NULL), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* worker in slot 2: takes 3 and dies */
		int ok = lim_store_set_owner(st, 2) == 0 &&
		    lim_table_admit(g, K("x"), 10, NULL) &&
		    lim_table_admit(g, K("x"), 10, NULL) &&
		    lim_table_admit(g, K("z"), 10, NULL);
		_exit(ok ? 0 : 1);
	}
	assert_int_equal(reap(pid), 0);
	assert_int_equal(lim_table_admit(g, K("x"), 10, NULL), 1);  /* owner 0 */
	/* the maker asks; that alone changes no count */
	lim_store_request_reset(st, 2);
	lim_store_request_reset(st, 7);		/* out of range: ignored */
	assert_int_equal(lim_table_gauge(g, K("x")), 3);
	/* a user of the store (a worker forked after the request) does it */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		uint64_t n;

		if (lim_store_set_owner(st, 1) < 0)
			_exit(255);
		n = lim_store_run_resets(st, NULL, NULL);
		/* done once: a second run finds nothing */
		_exit(n == 3 && lim_store_run_resets(st, NULL, NULL) == 0 ?
		    0 : 1);
	}
	assert_int_equal(reap(pid), 0);
	assert_int_equal(lim_table_gauge(g, K("x")), 1);
	assert_int_equal(lim_table_gauge(g, K("z")), 0);
	assert_int_equal(lim_table_size(g), 1);
	assert_int_equal(lim_store_run_resets(st, NULL, NULL), 0);
	/* asked again, nothing held: nothing given back, done all the same */
	lim_store_request_reset(st, 2);
	assert_int_equal(lim_store_run_resets(st, NULL, NULL), 0);
	assert_int_equal(lim_table_gauge(g, K("x")), 1);
	lim_store_free(&st);
}

static void
test_die_holding_lock(void **state)
{
	struct lim_table *t = lim_table_new(3600, 100, seed);
	pid_t pid;

	(void)state;
	assert_non_null(t);
	assert_int_equal(lim_table_add(t, K("alice"), 3, 100), 3);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		lim_table_test_die_locked(t, 0);
	assert_int_equal(reap(pid), 0);
	/* the lock is taken over, the table repaired, the count kept */
	assert_int_equal(lim_table_add(t, K("alice"), 1, 101), 4);
	assert_int_equal(lim_table_repairs(t), 1);
	assert_int_equal(lim_table_add(t, K("bob"), 1, 101), 1);
	assert_int_equal(lim_table_size(t), 2);
	assert_int_equal(lim_table_repairs(t), 1);
	lim_table_free(&t);
}

static void
test_die_holding_lock_scrambled(void **state)
{
	struct lim_store *st = store2(3600, 16, 16, 2);
	struct lim_table *w, *g;
	char key[16];
	pid_t pid;
	int i;

	(void)state;
	assert_non_null(st);
	w = lim_store_table(st, 0);
	g = lim_store_table(st, 1);
	for (i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "w%d", i);
		lim_table_add(w, K(key), (uint64_t)i + 1, 100);
	}
	assert_int_equal(lim_table_admit(g, K("a"), 10, NULL), 1);
	assert_int_equal(lim_table_admit(g, K("a"), 10, NULL), 1);
	assert_int_equal(lim_table_admit(g, K("a"), 10, NULL), 1);
	assert_int_equal(lim_table_admit(g, K("b"), 10, NULL), 1);
	/* each dies in the middle of an operation: chains, LRU list, size
	 * and a gauge wrong, an entry half made */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		lim_table_test_die_locked(w, 1);
	assert_int_equal(reap(pid), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		lim_table_test_die_locked(g, 1);
	assert_int_equal(reap(pid), 0);

	for (i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "w%d", i);
		assert_int_equal(lim_table_add(w, K(key), 0, 101),
		    (uint64_t)i + 1);
	}
	assert_int_equal(lim_table_size(w), 10);
	assert_int_equal(lim_table_repairs(w), 1);
	/* the gauges as their owners' counts say */
	assert_int_equal(lim_table_gauge(g, K("a")), 3);
	assert_int_equal(lim_table_gauge(g, K("b")), 1);
	assert_int_equal(lim_table_size(g), 2);
	assert_int_equal(lim_table_repairs(g), 1);
	/* and the tables work on: new keys, eviction, release */
	for (i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "n%d", i);
		lim_table_add(w, K(key), 1, 200);
		assert_true(lim_table_size(w) <= 16);
	}
	lim_table_release(g, K("b"));
	assert_int_equal(lim_table_size(g), 1);
	assert_int_equal(lim_store_owner_reset(st, 0), 3);
	assert_int_equal(lim_table_size(g), 0);
	lim_store_free(&st);
}

static void
test_full_of_held_gauges(void **state)
{
	struct lim_store *st = store2(60, 16, 2, 1);
	struct lim_table *g;
	char key[16];
	uint64_t c = 99;
	int i;

	(void)state;
	assert_non_null(st);
	g = lim_store_table(st, 1);
	assert_null(lim_store_table(st, 2));
	for (i = 0; i < 18; i++) {
		snprintf(key, sizeof(key), "h%d", i);
		assert_int_equal(lim_table_admit(g, K(key), 5, &c), 1);
		assert_int_equal(c, 1);
	}
	/* max_keys and the spare room are all held: admitted, uncounted */
	assert_int_equal(lim_table_admit(g, K("more"), 5, &c), 1);
	assert_int_equal(c, 0);
	assert_int_equal(lim_table_size(g), 18);
	lim_table_release(g, K("h0"));
	assert_int_equal(lim_table_admit(g, K("more"), 5, &c), 1);
	assert_int_equal(c, 1);
	lim_store_free(&st);
}

static void
test_store_bounds(void **state)
{
	struct lim_table_spec sp;

	(void)state;
	memset(&sp, 0, sizeof(sp));
	sp.window = 60;
	sp.max_keys = 10000;
	/* about 430 bytes a key for a window (ring and key), the buckets */
	assert_true(lim_store_bytes(&sp, 1, 8) > 10000 * 400);
	assert_true(lim_store_bytes(&sp, 1, 8) < 10000 * 480);
	sp.max_keys = SIZE_MAX / 2;
	assert_int_equal(lim_store_bytes(&sp, 1, 8), 0);
	sp.max_keys = 10;
	assert_null(lim_store_new(&sp, 1, 0));
	assert_null(lim_store_new(&sp, 1, LIMITS_OWNERS_MAX + 1));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_geometry),
		cmocka_unit_test(test_window_slides),
		cmocka_unit_test(test_window_every_second),
		cmocka_unit_test(test_absent_key),
		cmocka_unit_test(test_gauges),
		cmocka_unit_test(test_lru_eviction),
		cmocka_unit_test(test_eviction_spares_held_gauges),
		cmocka_unit_test(test_binary_and_long_keys),
		cmocka_unit_test(test_siphash_vectors),
		cmocka_unit_test(test_shared_exact_counts),
		cmocka_unit_test(test_owner_reset),
		cmocka_unit_test(test_reset_requested_by_maker),
		cmocka_unit_test(test_die_holding_lock),
		cmocka_unit_test(test_die_holding_lock_scrambled),
		cmocka_unit_test(test_full_of_held_gauges),
		cmocka_unit_test(test_store_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
