/*
 * mapping.h - Messaging Server mapping tables (the language of the
 * BURL_ACCESS table, issue 5): load a mapping file, compile every table
 * once, evaluate a probe string against a table.
 *
 * The language is the one Oracle/Sun Messaging Server documents for its MTA
 * mappings file, so that a site's tables carry over unchanged; every place
 * msaproxy differs is listed in docs/BURL_ACCESS.md ("Differences").
 *
 * File format
 *   TABLE-NAME                  a name: alphabetic character in column 1
 *                               (a blank line may follow the name)
 *     pattern    template       entries: indented, two columns separated
 *     pattern    template       by spaces or tabs; no blank line between
 *                               entries; a blank line ends the table
 *   ! comment                   '!' in column 1, anywhere
 *   <file-spec                  '<' in column 1: that file's lines here
 *                               (nested at most 3 deep; a relative name is
 *                               taken from the including file's directory)
 *   a line ending in '\' continues on the next line (joined as is).
 *
 * Patterns (matched case-blind against the whole input string)
 *   *  zero or more characters, greedy     %  exactly one character
 *   $* $% $$ $<space> $<tab>               the character itself
 *   $A% $A*  alphabetic    $B% $B*  0 1    $D% $D*  0-9
 *   $H% $H* $X% $X*  hexadecimal           $O% $O*  0-7
 *   $S% $S*  0-9 A-Z a-z _ $               $T% $T*  tab, VT, space
 *   $[abc]% $[a-z]*  one / any number of the listed characters ('\' quotes
 *            inside the brackets: \- \] \\)
 *   $(a.b.c.d/n)  an IPv4 address within the first n bits of a.b.c.d
 *   $<a.b.c.d/n>  an IPv4 address equal to a.b.c.d but for its n low bits
 *   ${ipv6/n}     an IPv6 address within the prefix
 *   $n*  back match: the same text (case-blind) as saved wildcard n
 *   $_   makes the next * or *-glob lazy (shortest first)
 *   $@   the next wildcard is not saved (gets no number); $^ saved (default)
 * Saved wildcards (*, %, globs, IP matches) are numbered 0, 1, ... from the
 * left; a back match is not itself numbered.
 *
 * Templates
 *   $0..$9        the text saved wildcard n matched (in the input's case)
 *   $$ $<space> $<tab>   the character     $\ $^ $_  lower / upper / as is
 *   $|TABLE;arg|  apply the auxiliary TABLE to arg (arg may hold $n and
 *                 nested $|...|); the call fails unless TABLE sets $Y; the
 *                 text TABLE produced is inserted
 *   $:x $;x       the entry fails unless input flag x is set / clear
 *                 (x: A = SASL used, T = TLS used, | = the URL had a '|')
 *   $C $L $R $E   processing control: continue with the next entry / the
 *                 next entry and one more pass / the first entry, using this
 *                 output as the new input; end (the default).  The last one
 *                 met left to right wins.
 *   $A..$Z (but C E L R)  flags for the table's user: BURL_ACCESS uses
 *                 Y N I D M T X (see MAPPING_FLAG_*).
 * A failed entry (a $: / $; test or a $|...| call that fails) produces the
 * input unchanged and no flags of its own; the mapping then stops, unless a
 * $C, $L or $R was met to the left of the failure: then it goes on with the
 * input unchanged.  Flags of successful entries accumulate along $C/$L/$R.
 *
 * Not supported (a load error names them): $#..# $]..[ ${..} in templates,
 * $[..] routines, $}..{ domain attributes, $?x? random, $= quoting.
 *
 * SECURITY: the mapping file is trusted configuration; the probe is built
 * from client input (the authentication identity, the BURL URL).  Matching
 * uses precompiled token arrays and is bounded: at most MAPPING_MAX_STEPS
 * matcher steps per pattern, MAPPING_MAX_VISITS entries tried and
 * MAPPING_MAX_DEPTH nested table calls per evaluation, and input and output
 * strings of bounded length.  Going past a bound is an error
 * (mapping_eval() returns -1), never a match: callers fail closed.
 * Evaluation is pure: no I/O, no allocation, no locale; it needs up to
 * about 250 kB of stack (33 kB, plus 23 kB per level of nested table
 * calls, plus the matcher's recursion: at most two small frames per
 * pattern token).
 *
 * Ownership: mapping_load() returns a struct mapping_file owned by the
 * caller; tables and every string in results point into it and live until
 * mapping_free().  A loaded file is immutable, so one may be shared by
 * readers; a reload loads a new one and swaps.
 */
#ifndef MSA_MAPPING_H
#define MSA_MAPPING_H

#include <stddef.h>

/* Limits (named so errors can say which one was hit). */
#define MAPPING_MAX_FILE_SIZE	(4u << 20)	/* bytes per file */
#define MAPPING_MAX_INCLUDE_DEPTH 3		/* "<file" nesting */
#define MAPPING_MAX_TABLES	1000
#define MAPPING_MAX_ENTRIES	20000		/* per table */
#define MAPPING_MAX_PATTERN	256		/* characters, as written */
#define MAPPING_MAX_TEMPLATE	1024		/* characters, as written */
#define MAPPING_MAX_WILDCARDS	32		/* wildcards per pattern */
#define MAPPING_MAX_PROBE	4096		/* input string, bytes */
#define MAPPING_OUT_MAX		4096		/* output string, with its NUL */
#define MAPPING_MAX_STEPS	100000		/* matcher steps per pattern */
#define MAPPING_MAX_VISITS	1000000		/* entries tried per evaluation,
						 * all tables */
#define MAPPING_MAX_DEPTH	6		/* nested $|TABLE;arg| calls,
						 * in tables or in arguments */
#define MAPPING_MAX_RESTARTS	10		/* $R / $L passes (as documented) */

/* Output flags: one bit per letter $A..$Z a template sets. */
#define MAPPING_FLAG(c)		(1u << ((c) - 'A'))
#define MAPPING_FLAG_Y		MAPPING_FLAG('Y')	/* allow / advertise */
#define MAPPING_FLAG_N		MAPPING_FLAG('N')	/* reject (text: out) */
#define MAPPING_FLAG_I		MAPPING_FLAG('I')	/* with N: disconnect */
#define MAPPING_FLAG_D		MAPPING_FLAG('D')	/* out replaces the URL */
#define MAPPING_FLAG_M		MAPPING_FLAG('M')	/* use the user's mailHost */
#define MAPPING_FLAG_T		MAPPING_FLAG('T')	/* force TLS to IMAP */
#define MAPPING_FLAG_X		MAPPING_FLAG('X')	/* no TLS to IMAP */

struct mapping_file;
struct mapping_table;

/* Input flags a template tests with $:x / $;x. */
struct mapping_ctx {
	int sasl_used;		/* $:A  SMTP AUTH was performed */
	int tls_used;		/* $:T  the session is under TLS */
	int url_had_bar;	/* $:|  the client's URL contained '|' */
	/*
	 * Optional trace, for msaproxy-maptest -v: called for every entry
	 * whose pattern matched, with its input, its output and what
	 * happened ("ok", "failed: ...", ...).  NULL: no trace.
	 */
	void (*trace)(void *arg, int depth, const char *table,
		      const char *file, int line, const char *input,
		      const char *output, unsigned flags, const char *what);
	void *trace_arg;
};

struct mapping_result {
	char out[MAPPING_OUT_MAX];	/* the output string: for BURL_ACCESS
					 * the URL types ($Y, EHLO), the reply
					 * text ($N) or the new URL ($D) */
	unsigned flags;			/* MAPPING_FLAG_* */
	int matched;			/* some entry's pattern matched */
	int failed;			/* the deciding entry failed: out is
					 * its input and detail says why */
	const char *table;		/* the table evaluated */
	const char *file;		/* the deciding entry (the last one
					 * whose pattern matched), or NULL */
	int line;
	char detail[160];		/* why it failed, or the error */
};

/*
 * Load and compile the mapping file at path (and what it includes).
 * Returns NULL if anything is wrong; errbuf then holds every problem, one
 * "FILE:LINE: problem" per line (cut with "..." if it does not fit).
 */
struct mapping_file *mapping_load(const char *path, char *errbuf,
				  size_t errsize);

/*
 * The same from memory: name is used in messages and file names of
 * results.  "<file" includes are refused (there is no directory).
 */
struct mapping_file *mapping_load_buffer(const char *name, const char *text,
					 size_t len, char *errbuf,
					 size_t errsize);

/* The table named name (case-blind), or NULL. */
const struct mapping_table *mapping_table(const struct mapping_file *mf,
					  const char *name);

/* Tables in file order, for listing: index < mapping_table_count(). */
size_t mapping_table_count(const struct mapping_file *mf);
const struct mapping_table *mapping_table_at(const struct mapping_file *mf,
					     size_t index);
const char *mapping_table_name(const struct mapping_table *t);
size_t mapping_table_entries(const struct mapping_table *t);

/*
 * Map probe (NUL-terminated) through table t of mf.  ctx may be NULL (no
 * input flag set).  Returns 0 with *result filled (look at flags, out,
 * matched), or -1 if a bound was hit or the probe is too long: then flags
 * is 0, file/line are the entry being evaluated, and detail says which
 * bound.  Never allocates.
 */
int mapping_eval(const struct mapping_file *mf, const struct mapping_table *t,
		 const char *probe, const struct mapping_ctx *ctx,
		 struct mapping_result *result);

/* Free *mfp and set it to NULL; NULL is fine. */
void mapping_free(struct mapping_file **mfp);

/*
 * BURL_ACCESS probes (Messaging Server's BURL_ACCESS mapping table):
 *   EHLO:  TCP|server-addr|server-port|client-addr|client-port|channel|authid|
 *   BURL:  the same followed by the client's URL
 * With server_addr NULL the port-access part is blank (a disconnected
 * context): "|channel|authid|...".  authid is "" before AUTH.  If paranoia
 * is not '\0', every '|' of the URL is replaced by it in the probe (as
 * Messaging Server's mapping_paranoia option does); *url_had_bar_r is set
 * either way when the URL held a '|'.  Returns the probe's length, or -1 if
 * it does not fit in size (MAPPING_MAX_PROBE is always enough for a URL of
 * up to 2048 bytes and the other fields within their usual sizes).
 */
struct mapping_probe {
	const char *server_addr;	/* NULL: no port-access part */
	unsigned server_port;
	const char *client_addr;
	unsigned client_port;
	const char *channel;		/* the listener's name */
	const char *authid;		/* "" if not authenticated */
	const char *url;		/* NULL: the EHLO probe */
	char paranoia;			/* '\0', or what replaces '|' in url */
};

int mapping_burl_probe(const struct mapping_probe *p, char *buf, size_t size,
		       int *url_had_bar_r);

/* Flags as letters ("DMY"), in alphabetical order, into buf. */
const char *mapping_flags_string(unsigned flags, char *buf, size_t size);

#endif
