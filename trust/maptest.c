/*
 * maptest.c - msaproxy-maptest(8): evaluate probe strings against a table
 * of a mapping file, the way Messaging Server's "imsimta test -mapping"
 * lets operators try their tables before they go live.
 *
 *   msaproxy-maptest [-f FILE] -t TABLE [--sasl] [--tls] [--bar]
 *                    [--burl] [--paranoia C] [-v] [probe ...]
 *   msaproxy-maptest [-f FILE] -c          (check the file, list tables)
 *
 * Probes come from the arguments or, if there are none, one per line on
 * standard input (empty lines and lines starting with '#' are skipped).
 * For each it prints the input, the output string, the flags set and the
 * entry (FILE:LINE) that decided.  Exit status: 0 if every probe set $Y,
 * 1 if one did not, 2 on errors (usage, a bad mapping file, an evaluation
 * that hit a bound).
 *
 * SECURITY: runs with the invoking user's rights and reads only the named
 * mapping file (and what it includes); it never touches the daemon.
 */

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mapping.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define DEFAULT_MAPPINGS SYSCONFDIR "/msaproxy/mappings"

struct opts {
	const char *file;
	const char *table;
	int sasl, tls, bar, burl, verbose, check;
	char paranoia;
};

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: msaproxy-maptest [-f FILE] -t TABLE [--sasl] [--tls] [--bar]\n"
	    "                        [--burl] [--paranoia C] [-v] [probe ...]\n"
	    "       msaproxy-maptest [-f FILE] -c\n"
	    "  -f FILE         mapping file (default %s)\n"
	    "  -t TABLE        the table to map probes through\n"
	    "  -A, --sasl      input flag A: SMTP AUTH was used ($:A)\n"
	    "  -T, --tls       input flag T: TLS is in use ($:T)\n"
	    "  -B, --bar       input flag |: the URL contained '|' ($:|)\n"
	    "  -u, --burl      probes are BURL command probes: the URL is what\n"
	    "                  follows the 7th '|' (3rd if the probe starts with\n"
	    "                  '|'); flag | is set if it holds a '|'\n"
	    "  -p, --paranoia C  with --burl: replace '|' in the URL by C\n"
	    "  -v, --verbose   show every entry that matched on the way\n"
	    "  -c, --check     load the file, report problems, list the tables\n"
	    "Probes come from the arguments, or one per line on standard input.\n"
	    "Exit status: 0 if every probe set $Y, 1 if not, 2 on errors.\n",
	    DEFAULT_MAPPINGS);
}

/* Printable form of s for the terminal: control bytes as \xNN. */
static void
print_str(const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c == 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
}

static void
trace(void *arg, int depth, const char *table, const char *file, int line,
      const char *input, const char *output, unsigned flags,
      const char *what)
{
	char fl[32];

	(void)arg;
	printf("  %*s%s %s:%d: \"", depth * 2, "", table, file, line);
	print_str(input);
	printf("\" -> \"");
	print_str(output);
	printf("\" flags [%s] %s\n", mapping_flags_string(flags, fl,
	    sizeof(fl)), what);
}

/* Offset of the URL in a BURL probe, or -1 if it has too few fields. */
static long
url_offset(const char *probe)
{
	int need = probe[0] == '|' ? 3 : 7, seen = 0;
	const char *p;

	for (p = probe; *p != '\0'; p++)
		if (*p == '|' && ++seen == need)
			return (long)(p + 1 - probe);
	return -1;
}

/* 0: $Y set; 1: not set; 2: error. */
static int
run_probe(const struct opts *o, const struct mapping_file *mf,
	  const struct mapping_table *t, const char *probe_in)
{
	static struct mapping_result r;
	static char probe[MAPPING_MAX_PROBE + 1];
	struct mapping_ctx ctx;
	char fl[32];
	size_t len = strlen(probe_in);
	int rc;

	memset(&ctx, 0, sizeof(ctx));
	ctx.sasl_used = o->sasl;
	ctx.tls_used = o->tls;
	ctx.url_had_bar = o->bar;
	if (o->verbose)
		ctx.trace = trace;
	if (len >= sizeof(probe)) {
		printf("Input string:  (%zu bytes)\nError:         probe longer "
		    "than MAPPING_MAX_PROBE\n\n", len);
		return 2;
	}
	memcpy(probe, probe_in, len + 1);
	if (o->burl) {
		long off = url_offset(probe);
		char *p;

		if (off < 0) {
			printf("Input string:  ");
			print_str(probe);
			printf("\nError:         not a BURL probe (fewer fields "
			    "than TCP|addr|port|addr|port|channel|authid|url)"
			    "\n\n");
			return 2;
		}
		for (p = probe + off; *p != '\0'; p++)
			if (*p == '|') {
				ctx.url_had_bar = 1;
				if (o->paranoia != '\0')
					*p = o->paranoia;
			}
	}
	printf("Input string:  ");
	print_str(probe);
	printf("\n");
	if (o->verbose)
		printf("Input flags:   [%s%s%s]\n", ctx.sasl_used ? "A" : "",
		    ctx.tls_used ? "T" : "", ctx.url_had_bar ? "|" : "");
	rc = mapping_eval(mf, t, probe, &ctx, &r);
	if (rc < 0) {
		printf("Error:         %s", r.detail);
		if (r.file != NULL)
			printf(" (%s:%d)", r.file, r.line);
		printf("\n\n");
		return 2;
	}
	printf("Output string: ");
	print_str(r.out);
	printf("\nOutput flags:  [%s]\n", mapping_flags_string(r.flags, fl,
	    sizeof(fl)));
	if (!r.matched)
		printf("Entry:         none matched\n");
	else if (r.failed)
		printf("Entry:         %s:%d (failed: %s)\n", r.file, r.line,
		    r.detail);
	else
		printf("Entry:         %s:%d\n", r.file, r.line);
	printf("\n");
	return (r.flags & MAPPING_FLAG_Y) ? 0 : 1;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "file", required_argument, NULL, 'f' },
		{ "table", required_argument, NULL, 't' },
		{ "sasl", no_argument, NULL, 'A' },
		{ "tls", no_argument, NULL, 'T' },
		{ "bar", no_argument, NULL, 'B' },
		{ "burl", no_argument, NULL, 'u' },
		{ "paranoia", required_argument, NULL, 'p' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "check", no_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static char errbuf[16384];
	struct opts o;
	struct mapping_file *mf;
	const struct mapping_table *t;
	int c, worst = 0, i;

	memset(&o, 0, sizeof(o));
	o.file = DEFAULT_MAPPINGS;
	while ((c = getopt_long(argc, argv, "f:t:ATBup:vch", longopts,
	    NULL)) != -1) {
		switch (c) {
		case 'f':
			o.file = optarg;
			break;
		case 't':
			o.table = optarg;
			break;
		case 'A':
			o.sasl = 1;
			break;
		case 'T':
			o.tls = 1;
			break;
		case 'B':
			o.bar = 1;
			break;
		case 'u':
			o.burl = 1;
			break;
		case 'p':
			if (strlen(optarg) != 1 || optarg[0] == '|') {
				fprintf(stderr, "msaproxy-maptest: --paranoia "
				    "takes one character other than '|'\n");
				return 2;
			}
			o.paranoia = optarg[0];
			break;
		case 'v':
			o.verbose = 1;
			break;
		case 'c':
			o.check = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!o.check && o.table == NULL) {
		usage(stderr);
		return 2;
	}
	if (o.paranoia != '\0' && !o.burl) {
		fprintf(stderr, "msaproxy-maptest: --paranoia needs --burl\n");
		return 2;
	}
	mf = mapping_load(o.file, errbuf, sizeof(errbuf));
	if (mf == NULL) {
		fputs(errbuf, stderr);
		return 2;
	}
	if (o.check) {
		size_t k, n = mapping_table_count(mf);

		printf("%s: mapping file OK, %zu table%s\n", o.file, n,
		    n == 1 ? "" : "s");
		for (k = 0; k < n; k++) {
			const struct mapping_table *tk = mapping_table_at(mf, k);

			printf("  %s (%zu entr%s)\n", mapping_table_name(tk),
			    mapping_table_entries(tk),
			    mapping_table_entries(tk) == 1 ? "y" : "ies");
		}
		if (o.table == NULL) {
			mapping_free(&mf);
			return 0;
		}
	}
	t = mapping_table(mf, o.table);
	if (t == NULL) {
		fprintf(stderr, "msaproxy-maptest: %s: no table named %s\n",
		    o.file, o.table);
		mapping_free(&mf);
		return 2;
	}
	if (optind < argc) {
		for (i = optind; i < argc; i++) {
			int rc = run_probe(&o, mf, t, argv[i]);

			if (rc > worst)
				worst = rc;
		}
	} else {
		static char line[MAPPING_MAX_PROBE + 2];

		while (fgets(line, sizeof(line), stdin) != NULL) {
			size_t len = strlen(line);
			int rc;

			if (len > 0 && line[len - 1] != '\n' && !feof(stdin)) {
				fprintf(stderr, "msaproxy-maptest: input line "
				    "longer than MAPPING_MAX_PROBE\n");
				worst = 2;
				/* skip the rest of that line */
				while ((c = getchar()) != EOF && c != '\n')
					;
				continue;
			}
			while (len > 0 && (line[len - 1] == '\n' ||
			    line[len - 1] == '\r'))
				line[--len] = '\0';
			if (len == 0 || line[0] == '#')
				continue;
			rc = run_probe(&o, mf, t, line);
			if (rc > worst)
				worst = rc;
		}
	}
	mapping_free(&mf);
	fflush(stdout);
	return worst;
}
