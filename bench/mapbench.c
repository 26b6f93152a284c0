/*
 * mapbench.c - probes per second through a 1,000-entry BURL_ACCESS table
 * (issue 5: "evaluating a probe costs microseconds, not milliseconds").
 *
 *   bench/mapbench [-n ENTRIES] [-s SECONDS]
 *
 * The table is generated in memory, shaped like a pre-7.4 site's: one EHLO
 * entry, then ENTRIES-2 entries "allow submit URLs to IMAP host mailN"
 * (each with a back match on the user, so the matcher cannot take its
 * table shortcut), then a final deny.  Three probes are timed:
 *   ehlo   - matches the first entry;
 *   last   - a BURL probe that only the last host entry allows: every
 *            entry is tried;
 *   deny   - a BURL probe for an unknown host: every entry is tried, the
 *            final deny decides.
 * For each it prints evaluations per second and microseconds per
 * evaluation (best of three runs of SECONDS/3 each).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mapping.h"

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
run(const char *name, const struct mapping_file *mf,
    const struct mapping_table *t, const char *probe, int want_y,
    double seconds)
{
	static struct mapping_result r;
	struct mapping_ctx ctx;
	double best = 0;
	int round;

	memset(&ctx, 0, sizeof(ctx));
	ctx.sasl_used = 1;
	ctx.tls_used = 1;
	if (mapping_eval(mf, t, probe, &ctx, &r) != 0 ||
	    ((r.flags & MAPPING_FLAG_Y) != 0) != want_y) {
		fprintf(stderr, "mapbench: %s: unexpected result (%s)\n", name,
		    r.detail);
		exit(1);
	}
	for (round = 0; round < 3; round++) {
		double t0 = now(), t1;
		unsigned long n = 0;

		do {
			int i;

			for (i = 0; i < 64; i++)
				(void)mapping_eval(mf, t, probe, &ctx, &r);
			n += 64;
			t1 = now();
		} while (t1 - t0 < seconds / 3);
		if (n / (t1 - t0) > best)
			best = n / (t1 - t0);
	}
	printf("%-5s %10.0f probes/s  %8.2f us/probe  (%s, line %d)\n", name,
	    best, 1e6 / best, r.flags & MAPPING_FLAG_Y ? "Y" : "no Y",
	    r.line);
}

int
main(int argc, char **argv)
{
	static char err[4096];
	int entries = 1000, c, i;
	double seconds = 3;
	size_t size, n = 0;
	char *text;
	struct mapping_file *mf;
	const struct mapping_table *t;
	char last[512], deny[512];
	const char *head = "TCP|192.0.2.25|587|198.51.100.7|50123|tcp_submit|"
	    "alice@example.com|";

	while ((c = getopt(argc, argv, "n:s:")) != -1) {
		switch (c) {
		case 'n':
			entries = atoi(optarg);
			break;
		case 's':
			seconds = atof(optarg);
			break;
		default:
			fprintf(stderr, "usage: mapbench [-n ENTRIES] "
			    "[-s SECONDS]\n");
			return 2;
		}
	}
	if (entries < 3 || entries > MAPPING_MAX_ENTRIES || seconds <= 0) {
		fprintf(stderr, "mapbench: 3 <= ENTRIES <= %d, SECONDS > 0\n",
		    MAPPING_MAX_ENTRIES);
		return 2;
	}
	size = (size_t)entries * 128 + 256;
	text = malloc(size);
	if (text == NULL)
		return 1;
	n += (size_t)snprintf(text + n, size - n, "BURL_ACCESS\n\n"
	    "  *|tcp_*|%%*|  $:T$Yimap\n");
	for (i = 1; i <= entries - 2; i++)
		n += (size_t)snprintf(text + n, size - n,
		    "  *|*@*|imap://*@mail%d.example.com/*;URLAUTH=submit+$1*:*"
		    "  $:A$:T$Y\n", i);
	n += (size_t)snprintf(text + n, size - n,
	    "  *  $N554$ 5.7.0$ No\n");
	mf = mapping_load_buffer("bench.map", text, n, err, sizeof(err));
	free(text);
	if (mf == NULL) {
		fputs(err, stderr);
		return 1;
	}
	t = mapping_table(mf, "BURL_ACCESS");
	snprintf(last, sizeof(last), "%simap://alice@mail%d.example.com/INBOX;"
	    "UIDVALIDITY=1795435210/;UID=4;URLAUTH=submit+alice:internal:"
	    "0179ecd2c483c22a83e49f755584e7ef6576389417", head, entries - 2);
	snprintf(deny, sizeof(deny), "%simap://alice@elsewhere.example.net/"
	    "INBOX;UIDVALIDITY=1795435210/;UID=4;URLAUTH=submit+alice:internal:"
	    "0179ecd2c483c22a83e49f755584e7ef6576389417", head);
	printf("table: %d entries; probe lengths: ehlo %zu, last %zu, deny "
	    "%zu\n", entries, strlen(head), strlen(last), strlen(deny));
	run("ehlo", mf, t, head, 1, seconds);
	run("last", mf, t, last, 1, seconds);
	run("deny", mf, t, deny, 0, seconds);
	mapping_free(&mf);
	return 0;
}
