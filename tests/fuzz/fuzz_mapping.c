/*
 * fuzz_mapping.c - libFuzzer target for the mapping tables: parse a mapping
 * file from the input and map a probe through every table of it.
 *
 *   input = flags byte, mapping file text, '\0', probe
 *   flags byte: bit 0 SASL used ($:A), bit 1 TLS ($:T), bit 2 '|' ($:|)
 *
 *   tests/fuzz/build.sh   (or by hand:)
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Itrust \
 *       tests/fuzz/fuzz_mapping.c -o fuzz_mapping
 *   ./fuzz_mapping -dict=tests/fuzz/mapping.dict tests/fuzz/corpus/mapping
 *
 * It includes mapping.c itself (so build.sh lists no module for it) to
 * reach the matcher's internals.  Beyond memory safety it checks:
 *   - a load failure leaves a non-empty error text, every line of it
 *     "fuzz.map:..." and the text NUL-terminated within its buffer;
 *   - mapping_eval() returns 0 or -1; -1 leaves no flags; the output is
 *     NUL-terminated and shorter than MAPPING_OUT_MAX; only $A..$Z bits;
 *     no match means the probe back unchanged, no flags, no entry; a match
 *     names an entry of fuzz.map;
 *   - differential: for every entry without back matches, the table
 *     method (match_reach) finds a match exactly when unbounded
 *     backtracking does, with the same saved wildcards.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mapping.c"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define DIFF_MAX_PROBE	512
#define DIFF_STEPS	400000ul

static unsigned char reach_buf[REACH_BYTES];

static void
check_errors(const char *err, size_t size)
{
	const char *p = err;

	if (memchr(err, '\0', size) == NULL || err[0] == '\0')
		abort();
	while (*p != '\0') {
		const char *nl = strchr(p, '\n');

		if (strncmp(p, "fuzz.map", 8) != 0 && strcmp(p, "...\n") != 0)
			abort();
		if (nl == NULL)
			abort();	/* every line ends with '\n' */
		p = nl + 1;
	}
}

/* Backtracking without the shortcut vs the table method. */
static void
differential(const struct map_entry *e, const char *probe, size_t len)
{
	unsigned char folded[DIFF_MAX_PROBE];
	size_t cs1[MAPPING_MAX_WILDCARDS], cl1[MAPPING_MAX_WILDCARDS];
	size_t cs2[MAPPING_MAX_WILDCARDS], cl2[MAPPING_MAX_WILDCARDS];
	struct match_state st;
	int r1, r2, k;

	if (e->has_backref || len > sizeof(folded) ||
	    ((size_t)e->npat + 1) * (len + 1) > (size_t)REACH_BYTES * 8)
		return;
	fold_copy(folded, probe, len);
	memset(&st, 0, sizeof(st));
	st.s = folded;
	st.len = len;
	st.pat = e->pat;
	st.npat = e->npat;
	st.cap_start = cs1;
	st.cap_len = cl1;
	st.limit = DIFF_STEPS;
	r1 = match_from(&st, 0, 0);
	if (st.overflow)
		return;		/* undecided within the budget: skip */
	r2 = match_reach(e, folded, len, cs2, cl2, reach_buf);
	if (r1 != r2)
		abort();
	if (r1 == 1)
		for (k = 0; k < e->nsaved; k++)
			if (cs1[k] != cs2[k] || cl1[k] != cl2[k])
				abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char err[2048];
	static struct mapping_result r;
	const char *text, *nul, *probe;
	size_t textlen, plen, i, j;
	struct mapping_file *mf;
	struct mapping_ctx ctx;
	char probebuf[MAPPING_MAX_PROBE + 1];

	if (size < 1)
		return 0;
	memset(&ctx, 0, sizeof(ctx));
	ctx.sasl_used = data[0] & 1;
	ctx.tls_used = (data[0] >> 1) & 1;
	ctx.url_had_bar = (data[0] >> 2) & 1;
	text = (const char *)data + 1;
	nul = memchr(text, '\0', size - 1);
	textlen = nul != NULL ? (size_t)(nul - text) : size - 1;
	probe = nul != NULL ? nul + 1 : "";
	plen = nul != NULL ? size - 1 - textlen - 1 : 0;
	if (plen > MAPPING_MAX_PROBE)
		plen = MAPPING_MAX_PROBE;
	memcpy(probebuf, probe, plen);
	probebuf[plen] = '\0';
	plen = strlen(probebuf);	/* the probe ends at a NUL */

	memset(err, 'Z', sizeof(err));
	mf = mapping_load_buffer("fuzz.map", text, textlen, err, sizeof(err));
	if (mf == NULL) {
		check_errors(err, sizeof(err));
		return 0;
	}
	if (err[0] != '\0')
		abort();
	for (i = 0; i < mapping_table_count(mf) && i < 8; i++) {
		const struct mapping_table *t = mapping_table_at(mf, i);
		int rc;

		if (mapping_table(mf, mapping_table_name(t)) != t)
			abort();
		memset(r.out, 'Z', sizeof(r.out));
		rc = mapping_eval(mf, t, probebuf, &ctx, &r);
		if (rc != 0 && rc != -1)
			abort();
		if (memchr(r.out, '\0', sizeof(r.out)) == NULL)
			abort();
		if (memchr(r.detail, '\0', sizeof(r.detail)) == NULL)
			abort();
		if (r.flags & ~((1u << 26) - 1))
			abort();
		if (rc == -1) {
			if (r.flags != 0 || r.detail[0] == '\0')
				abort();
		} else if (!r.matched) {
			if (r.flags != 0 || r.file != NULL ||
			    strcmp(r.out, probebuf) != 0)
				abort();
		} else {
			if (r.file == NULL || strcmp(r.file, "fuzz.map") != 0 ||
			    r.line < 1)
				abort();
		}
		for (j = 0; j < t->nentries && j < 64; j++)
			differential(&t->entries[j], probebuf, plen);
	}
	mapping_free(&mf);
	if (mf != NULL)
		abort();
	return 0;
}
