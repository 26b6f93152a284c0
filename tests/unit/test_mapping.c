/*
 * test_mapping.c - table-driven tests of the mapping-table engine
 * (trust/mapping.c): every wildcard, glob, quoting form, template
 * substitution, input-flag test and processing control, the compile errors
 * with their FILE:LINE, includes, the bounds, and the BURL_ACCESS probe
 * builder.  The seed tables of the Messaging Server documentation are
 * tested end to end in tests/golden/mapping/ (through msaproxy-maptest).
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "mapping.h"

#define F_A	1	/* ctx.sasl_used */
#define F_T	2	/* ctx.tls_used */
#define F_BAR	4	/* ctx.url_had_bar */

static struct mapping_result res;	/* 4 kB: not on the stack */
static char errbuf[8192];

static void
set_ctx(struct mapping_ctx *ctx, int f)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->sasl_used = (f & F_A) != 0;
	ctx->tls_used = (f & F_T) != 0;
	ctx->url_had_bar = (f & F_BAR) != 0;
}

static struct mapping_file *
load_text(const char *text)
{
	struct mapping_file *mf;

	mf = mapping_load_buffer("t.map", text, strlen(text), errbuf,
	    sizeof(errbuf));
	if (mf == NULL)
		print_error("load failed:\n%s", errbuf);
	return mf;
}

/* ---- one entry: pattern, template, input -> output, flags ---- */

struct one_case {
	const char *name;
	const char *pattern;
	const char *tpl;
	const char *input;
	int ctxf;
	int matched;		/* the pattern matched */
	const char *out;	/* expected output */
	const char *flags;	/* expected flags, as letters */
	int failed;		/* the template failed */
};

#define NOMATCH(n, p, i) { n, p, "matched", i, 0, 0, i, "", 0 }

static const struct one_case one_cases[] = {
	/* wildcards */
	{ "star matches all", "*", "[$0]", "anything", 0, 1, "[anything]", "", 0 },
	{ "star matches empty", "a*", "[$0]", "a", 0, 1, "[]", "", 0 },
	{ "star in the middle", "a*c", "$0", "abbc", 0, 1, "bb", "", 0 },
	NOMATCH("whole input must match", "a*c", "abcd"),
	{ "star greedy", "*.*", "$0|$1", "a.b.c", 0, 1, "a.b|c", "", 0 },
	{ "star lazy $_", "$_*.*", "$0|$1", "a.b.c", 0, 1, "a|b.c", "", 0 },
	{ "second star lazy", "*.$_*.*", "$0|$1|$2", "a.b.c.d", 0, 1,
	  "a.b|c|d", "", 0 },
	{ "percent one char", "a%c", "$0", "abc", 0, 1, "b", "", 0 },
	NOMATCH("percent not zero", "a%c", "ac"),
	NOMATCH("percent not two", "a%c", "abbc"),
	{ "percent then star numbering", "%*", "$0+$1", "xyz", 0, 1, "x+yz",
	  "", 0 },
	{ "star matches empty input", "*", "[$0]", "", 0, 1, "[]", "", 0 },
	/* case-blind matching, case kept in output */
	{ "case-blind literal", "ABC", "ok", "aBc", 0, 1, "ok", "", 0 },
	{ "case kept in substitution", "*@*", "$1", "Alice@Example.COM", 0, 1,
	  "Example.COM", "", 0 },
	{ "documented $n example", "PSI$%*::*", "$1@$0.psi.siroe.com",
	  "PSI%A::B", 0, 1, "B@A.psi.siroe.com", "", 0 },
	NOMATCH("documented $n example, no match", "PSI$%*::*", "PSIABC::DEF"),
	/* quoting in patterns */
	{ "quoted star", "a$*b", "ok", "a*b", 0, 1, "ok", "", 0 },
	NOMATCH("quoted star is literal", "a$*b", "axb"),
	{ "quoted percent", "a$%b", "ok", "a%b", 0, 1, "ok", "", 0 },
	NOMATCH("quoted percent is literal", "a$%b", "axb"),
	{ "doubled dollar", "a$$b", "ok", "a$b", 0, 1, "ok", "", 0 },
	{ "quoted space", "a$ b", "ok", "a b", 0, 1, "ok", "", 0 },
	{ "quoted tab", "a$\tb", "ok", "a\tb", 0, 1, "ok", "", 0 },
	/* quoting in templates */
	{ "template quoting", "*", "$$$ $\t$0", "x", 0, 1, "$ \tx", "", 0 },
	{ "template special chars are text", "*", "*%|;", "x", 0, 1, "*%|;",
	  "", 0 },
	/* globs */
	{ "$A% letter", "$A%", "$0", "Q", 0, 1, "Q", "", 0 },
	NOMATCH("$A% not a digit", "$A%", "1"),
	{ "$A* letters", "$A*1", "$0", "abcXYZ1", 0, 1, "abcXYZ", "", 0 },
	NOMATCH("$A* stops at a digit", "$A*", "ab1"),
	{ "$B* binary", "$B*", "$0", "0110", 0, 1, "0110", "", 0 },
	NOMATCH("$B% not 2", "$B%", "2"),
	{ "$D% digit", "x$D%y", "$0", "x7y", 0, 1, "7", "", 0 },
	{ "$D* digits", "x$D*y", "$0", "x123y", 0, 1, "123", "", 0 },
	{ "$D* zero digits", "x$D*y", "[$0]", "xy", 0, 1, "[]", "", 0 },
	NOMATCH("$D* not letters", "x$D*y", "x12ay"),
	{ "$H* hex, case-blind", "$H*", "$0", "deadBEEF09", 0, 1, "deadBEEF09",
	  "", 0 },
	NOMATCH("$H% not g", "$H%", "g"),
	{ "$X% is $H%", "$X%$X%", "$0$1", "aF", 0, 1, "aF", "", 0 },
	{ "$O* octal", "$O*", "$0", "01234567", 0, 1, "01234567", "", 0 },
	NOMATCH("$O% not 8", "$O%", "8"),
	{ "$S* symbol set", "$S*", "$0", "a_Z9$", 0, 1, "a_Z9$", "", 0 },
	NOMATCH("$S% not a dot", "$S%", "."),
	{ "$T% space", "a$T%b", "ok", "a b", 0, 1, "ok", "", 0 },
	{ "$T* tab vt space", "a$T*b", "[$0]", "a \t\vb", 0, 1, "[ \t\v]", "",
	  0 },
	{ "$[abc]%", "$[abc]%", "$0", "b", 0, 1, "b", "", 0 },
	NOMATCH("$[abc]% not d", "$[abc]%", "d"),
	{ "$[abc]% case-blind", "$[abc]%", "$0", "C", 0, 1, "C", "", 0 },
	{ "$[a-c]* range", "$[a-c]*d", "$0", "abcabcd", 0, 1, "abcabc", "", 0 },
	{ "$[A-C]% range case-blind", "$[A-C]%", "$0", "b", 0, 1, "b", "", 0 },
	{ "$[...] quoted hyphen", "$[\\-x]%", "$0", "-", 0, 1, "-", "", 0 },
	NOMATCH("$[...] quoted hyphen is no range", "$[a\\-c]%", "b"),
	{ "$[...] leading hyphen literal", "$[-x]%", "$0", "-", 0, 1, "-", "",
	  0 },
	{ "$[...] quoted bracket", "$[\\]]%", "$0", "]", 0, 1, "]", "", 0 },
	{ "$[...] quoted backslash", "$[\\\\]%", "$0", "\\", 0, 1, "\\", "",
	  0 },
	{ "$[...] caret is a character", "$[^a]%", "$0", "^", 0, 1, "^", "",
	  0 },
	{ "$[...] holding a space", "$[ x]*", "[$0]", " x ", 0, 1, "[ x ]",
	  "", 0 },
	{ "glob lazy", "$_$D*$D*", "[$0][$1]", "123", 0, 1, "[][123]", "", 0 },
	/* IP matches */
	{ "$(..) prefix", "$(10.0.0.0/8)", "$0", "10.1.2.3", 0, 1, "10.1.2.3",
	  "", 0 },
	NOMATCH("$(..) outside the prefix", "$(10.0.0.0/8)", "11.1.2.3"),
	NOMATCH("$(..) not an address", "$(10.0.0.0/8)", "10.1.2"),
	{ "$(..) no bits: exact", "$(192.0.2.1)", "ok", "192.0.2.1", 0, 1,
	  "ok", "", 0 },
	NOMATCH("$(..) no bits: exact, other", "$(192.0.2.1)", "192.0.2.10"),
	{ "$(..) in a probe", "TCP|*|*|$(198.51.100.0/24)|*", "$2", "TCP|"
	  "192.0.2.1|587|198.51.100.7|50000", 0, 1, "198.51.100.7", "", 0 },
	{ "$<..> ignore bits", "$<192.0.2.4/2>", "ok", "192.0.2.7", 0, 1,
	  "ok", "", 0 },
	NOMATCH("$<..> ignore bits, outside", "$<192.0.2.4/2>", "192.0.2.8"),
	{ "${..} IPv6 prefix, case-blind", "${2001:db8::/32}", "$0",
	  "2001:DB8::1", 0, 1, "2001:DB8::1", "", 0 },
	NOMATCH("${..} IPv6 outside", "${2001:db8::/32}", "2001:db9::1"),
	/* back matches */
	{ "back match", "*@*|$0*", "ok", "alice@x|alice", 0, 1, "ok", "", 0 },
	NOMATCH("back match differs", "*@*|$0*", "alice@x|bob"),
	{ "back match case-blind", "*@*|$0*", "$0", "Alice@x|ALICE", 0, 1,
	  "Alice", "", 0 },
	NOMATCH("back match is whole", "*@*|$0*", "alice@x|alicex"),
	{ "back match not numbered", "*|$0*|*", "$1", "a|a|rest", 0, 1,
	  "rest", "", 0 },
	/* saving */
	{ "$@ not saved", "$@*@*", "$0", "user@host", 0, 1, "host", "", 0 },
	{ "$^ saved", "$^*@*", "$0", "user@host", 0, 1, "user", "", 0 },
	{ "$@ on a glob", "$@$D*x*", "$0", "12xab", 0, 1, "ab", "", 0 },
	{ "$@$_ combined", "$@$_*.*", "$0", "a.b.c", 0, 1, "b.c", "", 0 },
	/* templates: case control */
	{ "$\\ lower", "*", "$\\$0", "AbC", 0, 1, "abc", "", 0 },
	{ "$^ upper", "*", "$^$0", "AbC", 0, 1, "ABC", "", 0 },
	{ "$_ as is", "*", "$^x$_$0", "AbC", 0, 1, "XAbC", "", 0 },
	{ "$\\ on text", "*", "$\\ABC", "x", 0, 1, "abc", "", 0 },
	/* templates: flags */
	{ "flag and text", "*", "imap$Y", "x", 0, 1, "imap", "Y", 0 },
	{ "flag before text", "*", "$Yimap", "x", 0, 1, "imap", "Y", 0 },
	{ "BURL flags", "*", "$D$I$M$N$T$X$Y", "x", 0, 1, "", "DIMNTXY", 0 },
	{ "reply text with $N", "*", "$N554$ 5.7.1$ go$ away", "x", 0, 1,
	  "554 5.7.1 go away", "N", 0 },
	{ "$D with new URL", "imap://*@old/*", "$Dimap://$0@new/$1", "imap://"
	  "u@old/INBOX", 0, 1, "imap://u@new/INBOX", "D", 0 },
	{ "empty template", "*", "", "x", 0, 1, "", "", 0 },
	/* templates: input-flag tests */
	{ "$:A set", "*", "$:A$Y", "x", F_A, 1, "", "Y", 0 },
	{ "$:A clear: fails", "*", "$:A$Y", "x", 0, 1, "x", "", 1 },
	{ "$;A clear", "*", "$;A$Y", "x", 0, 1, "", "Y", 0 },
	{ "$;A set: fails", "*", "$;A$Y", "x", F_A, 1, "x", "", 1 },
	{ "$:T set", "*", "$:T$Y", "x", F_T, 1, "", "Y", 0 },
	{ "$:T clear: fails", "*", "$:T$Y", "x", F_A, 1, "x", "", 1 },
	{ "$;T clear", "*", "$;T$Y", "x", F_A, 1, "", "Y", 0 },
	{ "$;T set: fails", "*", "$;T$Y", "x", F_T, 1, "x", "", 1 },
	{ "$:| set", "*", "$:|$Y", "x", F_BAR, 1, "", "Y", 0 },
	{ "$:| clear: fails", "*", "$:|$Y", "x", 0, 1, "x", "", 1 },
	{ "$;| clear", "*", "$;|$Y", "x", F_A | F_T, 1, "", "Y", 0 },
	{ "$;| set: fails", "*", "$;|$Y", "x", F_BAR, 1, "x", "", 1 },
	{ "tests combined", "*", "$:A$:T$M$Y", "x", F_A | F_T, 1, "", "MY", 0 },
	{ "flags left of a failed test do not count", "*", "$N$:A$Y", "x", 0,
	  1, "x", "", 1 },
};

static void
test_one(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(one_cases) / sizeof(one_cases[0]); i++) {
		const struct one_case *c = &one_cases[i];
		struct mapping_file *mf;
		struct mapping_ctx ctx;
		char text[1024], fl[32];
		int rc;

		snprintf(text, sizeof(text), "T\n\n  %s  %s\n", c->pattern,
		    c->tpl);
		mf = load_text(text);
		if (mf == NULL)
			fail_msg("%s: does not load", c->name);
		set_ctx(&ctx, c->ctxf);
		rc = mapping_eval(mf, mapping_table(mf, "T"), c->input, &ctx,
		    &res);
		if (rc != 0)
			fail_msg("%s: rc %d (%s)", c->name, rc, res.detail);
		if (res.matched != c->matched)
			fail_msg("%s: matched %d, want %d", c->name, res.matched,
			    c->matched);
		if (strcmp(res.out, c->out) != 0)
			fail_msg("%s: out \"%s\", want \"%s\"", c->name, res.out,
			    c->out);
		mapping_flags_string(res.flags, fl, sizeof(fl));
		if (strcmp(fl, c->flags) != 0)
			fail_msg("%s: flags [%s], want [%s]", c->name, fl,
			    c->flags);
		if (res.failed != c->failed)
			fail_msg("%s: failed %d, want %d", c->name, res.failed,
			    c->failed);
		if (c->matched && (res.line != 3 || res.file == NULL ||
		    strcmp(res.file, "t.map") != 0))
			fail_msg("%s: entry %s:%d", c->name,
			    res.file ? res.file : "(null)", res.line);
		if (!c->matched && res.file != NULL)
			fail_msg("%s: no match but an entry", c->name);
		mapping_free(&mf);
		assert_null(mf);
	}
}

/* ---- whole tables: controls, auxiliary tables ---- */

struct table_case {
	const char *name;
	const char *file;		/* the mapping file */
	const char *table;
	const char *input;
	int ctxf;
	int rc;
	const char *out;
	const char *flags;
	int line;			/* deciding entry's line, 0: none */
	int failed;
};

static const struct table_case table_cases[] = {
	{ "first match ends ($E default)",
	  "T\n\n  a*  one$Y\n  a*  two$N\n", "T", "ax", 0, 0, "one", "Y", 3, 0 },
	{ "no match: input back, no flags",
	  "T\n\n  a*  one$Y\n", "T", "bx", 0, 0, "bx", "", 0, 0 },
	{ "$C: output feeds the next entries",
	  "T\n\n  a*  b$0$C\n  x*  no$N\n  b*  c$0$Y\n", "T", "ax", 0, 0, "cx",
	  "Y", 5, 0 },
	{ "$C then nothing matches: last output stands",
	  "T\n\n  a*  b$0$C$T\n  q  r\n", "T", "ax", 0, 0, "bx", "T", 3, 0 },
	{ "$C does not look back",
	  "T\n\n  b*  early$Y\n  a*  b$0$C\n", "T", "ax", 0, 0, "bx", "", 4,
	  0 },
	{ "$E after $C wins",
	  "T\n\n  a*  b$C$E\n  b  no$N\n", "T", "ax", 0, 0, "b", "", 3, 0 },
	{ "$C after $E wins (last one)",
	  "T\n\n  a*  b$E$C\n  b  yes$Y\n", "T", "ax", 0, 0, "yes", "Y", 4, 0 },
	{ "flags accumulate along $C",
	  "T\n\n  a*  $0$C$T\n  *  $0$C$M\n  *  $Y\n", "T", "ax", 0, 0, "",
	  "MTY", 5, 0 },
	{ "$R restarts from the top",
	  "T\n\n  b  final$Y\n  a  b$R\n", "T", "a", 0, 0, "final", "Y", 3, 0 },
	{ "$L: one more pass after the end",
	  "T\n\n  b  final$Y\n  a  b$L\n", "T", "a", 0, 0, "final", "Y", 3, 0 },
	{ "$L overridden by a later $C",
	  "T\n\n  b  final$Y\n  a  b$L\n  b  c$C\n", "T", "a", 0, 0, "c", "",
	  5, 0 },
	{ "$R loop stops after the restart limit",
	  "T\n\n  *  $0$R$T\n", "T", "loop", 0, 0, "loop", "T", 3, 0 },
	{ "$R with a shrinking string goes on to the end",
	  "T\n\n  x  done$Y\n  %*  $1$R\n", "T", "abcdefghijklmnopqrstux", 0, 0,
	  "done", "Y", 3, 0 },
	{ "failed entry without $C ends the mapping",
	  "T\n\n  a*  $:A$Y\n  a*  two$Y\n", "T", "ax", 0, 0, "ax", "", 3, 1 },
	{ "failed entry with $C to its left goes on",
	  "T\n\n  a*  $C$:A$Y$E\n  a*  two$N\n", "T", "ax", 0, 0, "two", "N", 4,
	  0 },
	{ "$C to the right of the failure is not seen",
	  "T\n\n  a*  $:A$C$Y\n  a*  two$N\n", "T", "ax", 0, 0, "ax", "", 3,
	  1 },
	{ "succeeding $C...$E entry",
	  "T\n\n  a*  $C$:A$Y$E\n  a*  two$N\n", "T", "ax", F_A, 0, "", "Y", 3,
	  0 },
	{ "failed $C entry keeps earlier flags",
	  "T\n\n  a*  $0$C$T\n  *  $C$:A$Y\n", "T", "ax", 0, 0, "x", "T", 4, 1 },
	{ "aux table sets $Y: its output inserted",
	  "X\n\n  mail1  <hit>$Y\n  *  [$0]$Y\n\nT\n\n  *@*  <$|X;$1|>$Y\n",
	  "T", "u@mail1", 0, 0, "<<hit>>", "Y", 8, 0 },
	{ "aux output with its substitutions",
	  "X\n\n  mail1  <hit>$Y\n  *  [$0]$Y\n\nT\n\n  *@*  <$|X;$1|>$Y\n",
	  "T", "u@other", 0, 0, "<[other]>", "Y", 8, 0 },
	{ "aux table without $Y: entry fails",
	  "X\n\n  mail1  $Y\n  *  no\n\nT\n\n  *@*  $|X;$1|$Y\n", "T",
	  "u@mail2", 0, 0, "u@mail2", "", 8, 1 },
	{ "aux table, no entry matches: entry fails",
	  "X\n\n  mail1  $Y\n\nT\n\n  *@*  $|X;$1|$Y\n", "T", "u@mail2", 0, 0,
	  "u@mail2", "", 7, 1 },
	{ "aux flags other than Y do not leak",
	  "X\n\n  *  $N$T$Y\n\nT\n\n  *  $|X;$0|ok\n", "T", "a", 0, 0, "ok", "",
	  7, 0 },
	{ "aux argument with text and case",
	  "X\n\n  pre-abc  hit$Y\n\nT\n\n  *  $|X;pre-$\\$0|$Y\n", "T", "ABC", 0,
	  0, "hit", "Y", 7, 0 },
	{ "aux nested in an argument",
	  "X\n\n  *  x$0$Y\n\nY\n\n  *  y$0$Y\n\nT\n\n  *  $|X;$|Y;$0||$Y\n",
	  "T", "a", 0, 0, "xya", "Y", 11, 0 },
	{ "aux table name is case-blind",
	  "Hosts\n\n  h  $Y\n\nT\n\n  *  $|HOSTS;$0|$Y\n", "T", "h", 0, 0, "",
	  "Y", 7, 0 },
	{ "aux inherits the input flags",
	  "X\n\n  *  $:T$Y\n\nT\n\n  *  $|X;$0|$Y\n", "T", "a", F_T, 0, "", "Y",
	  7, 0 },
	{ "aux recursion hits MAPPING_MAX_DEPTH",
	  "T\n\n  *  $|T;$0|$Y\n", "T", "a", 0, -1, "", "", 3, 1 },
	{ "aux $C chain inside an aux table",
	  "X\n\n  a  b$C\n  b  c$Y\n\nT\n\n  *  [$|X;$0|]$Y\n", "T", "a", 0, 0,
	  "[c]", "Y", 8, 0 },
	{ "table name lookup is case-blind",
	  "burl_access\n\n  *  $Y\n", "BURL_ACCESS", "x", 0, 0, "", "Y", 3, 0 },
	{ "no blank line after the name",
	  "T\n  *  ok$Y\n", "T", "x", 0, 0, "ok", "Y", 2, 0 },
	{ "comment lines between entries",
	  "T\n\n! one\n  a  1$Y\n! two\n  b  2$Y\n", "T", "b", 0, 0, "2", "Y", 6,
	  0 },
	{ "whitespace-only line is blank",
	  "T \n \t\n  a  1$Y\n \nU\n\n  b  2$Y\n", "U", "b", 0, 0, "2", "Y", 7,
	  0 },
	{ "tabs separate the columns",
	  "T\n\n\ta\t\t1$Y\t\n", "T", "a", 0, 0, "1", "Y", 3, 0 },
	{ "continuation line",
	  "T\n\n  ab\\\nc  $Y\\\nok\n  abc  second\n", "T", "abc", 0, 0, "ok",
	  "Y", 3, 0 },
	{ "CRLF line ends",
	  "T\r\n\r\n  a  1$Y\r\n  b  2$Y\r\n", "T", "b", 0, 0, "2", "Y", 4, 0 },
	{ "no final newline",
	  "T\n\n  a  1$Y", "T", "a", 0, 0, "1", "Y", 3, 0 },
	{ "pattern only: empty output",
	  "T\n\n  a\n", "T", "a", 0, 0, "", "", 3, 0 },
};

static void
test_tables(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(table_cases) / sizeof(table_cases[0]); i++) {
		const struct table_case *c = &table_cases[i];
		struct mapping_file *mf;
		const struct mapping_table *t;
		struct mapping_ctx ctx;
		char fl[32];
		int rc;

		mf = load_text(c->file);
		if (mf == NULL)
			fail_msg("%s: does not load", c->name);
		t = mapping_table(mf, c->table);
		if (t == NULL)
			fail_msg("%s: no table %s", c->name, c->table);
		set_ctx(&ctx, c->ctxf);
		rc = mapping_eval(mf, t, c->input, &ctx, &res);
		if (rc != c->rc)
			fail_msg("%s: rc %d, want %d (%s)", c->name, rc, c->rc,
			    res.detail);
		if (strcmp(res.out, c->out) != 0)
			fail_msg("%s: out \"%s\", want \"%s\"", c->name, res.out,
			    c->out);
		mapping_flags_string(res.flags, fl, sizeof(fl));
		if (strcmp(fl, c->flags) != 0)
			fail_msg("%s: flags [%s], want [%s]", c->name, fl,
			    c->flags);
		if (res.line != c->line)
			fail_msg("%s: line %d, want %d", c->name, res.line,
			    c->line);
		if (res.failed != c->failed)
			fail_msg("%s: failed %d, want %d (%s)", c->name,
			    res.failed, c->failed, res.detail);
		if (rc < 0 && res.detail[0] == '\0')
			fail_msg("%s: error without detail", c->name);
		mapping_free(&mf);
	}
}

/* ---- compile errors, all of them, with FILE:LINE ---- */

static const char bad_file[] =
	"T\n"					/* 1 */
	"\n"					/* 2 */
	"  a$\n"				/* 3 */
	"  $Q  x\n"				/* 4 */
	"  $[abc  x\n"				/* 5 */
	"  $[]%  x\n"				/* 6 */
	"  $[z-a]%  x\n"			/* 7 */
	"  $[ab]  x\n"				/* 8 */
	"  $A  x\n"				/* 9 */
	"  $1*  x\n"				/* 10 */
	"  $_a  x\n"				/* 11 */
	"  *  $1\n"				/* 12 */
	"  *  $Q$\n"				/* 13 */
	"  *  $q\n"				/* 14 */
	"  *  $:Q\n"				/* 15 */
	"  *  ${db}\n"				/* 16 */
	"  *  $|NOPE;x|\n"			/* 17 */
	"  *  $|X;x\n"				/* 18 */
	"  *  a b\n"				/* 19 */
	"  $(10.0.0.300)  x\n"			/* 20 */
	"! a comment\n"				/* 21 */
	"<inc.map\n"				/* 22 */
	"?bad\n"				/* 23 */
	"T2 extra\n"				/* 24 */
	"  x  y\n"				/* 25: ignored, table rejected */
	"\n"					/* 26 */
	"t\n"					/* 27 */
	"  x  y\n"				/* 28: ignored, duplicate */
	"\n"					/* 29 */
	"U\n"					/* 30 */
	"\n"					/* 31 */
	"  a  b\n"				/* 32 */
	"\n"					/* 33 */
	"  c  d\n";				/* 34 */

static const char bad_expected[] =
	"t.map:3: '$' at the end of the pattern\n"
	"t.map:4: unknown pattern sequence $Q\n"
	"t.map:5: unterminated $[...] glob\n"
	"t.map:6: empty $[] glob\n"
	"t.map:7: bad range z-a in $[...] glob\n"
	"t.map:8: $[...] must be followed by % or *\n"
	"t.map:9: glob $A must be followed by % or *\n"
	"t.map:10: back match $1* refers to wildcard 1, but only 0 are saved "
	"before it\n"
	"t.map:11: modifier $_, $@ or $^ not followed by a wildcard or glob\n"
	"t.map:12: template uses $1, but the pattern saves only 1 wildcard\n"
	"t.map:13: '$' at the end of the template\n"
	"t.map:14: unknown metacharacter $q (flags are upper case)\n"
	"t.map:15: $:Q tests an input flag msaproxy never sets (it sets A, T "
	"and |)\n"
	"t.map:16: ${...} (general database lookups) is not supported by "
	"msaproxy\n"
	"t.map:18: unterminated $|TABLE;argument|\n"
	"t.map:19: text after the template (quote spaces in a template as "
	"'$ ')\n"
	"t.map:20: bad IPv4 address in $(...) or $<...>\n"
	"t.map:22: includes (\"<file\") need a mapping file on disk\n"
	"t.map:23: a line starts with a table name (a letter), a space or tab "
	"(an entry), '!' (a comment) or '<' (an include)\n"
	"t.map:24: text after the table name (a table name is one word in "
	"column 1; entries are indented)\n"
	"t.map:27: duplicate table name t (first at t.map:1)\n"
	"t.map:34: entry outside a table (the blank line at t.map:33 ended "
	"table U; entries of one table have no blank line between them)\n"
	"t.map:17: no table named NOPE (called as $|NOPE;...|)\n";

static const char bad_file2[] =
	"V\n"					/* 1 */
	"\n"					/* 2 */
	"  $1  x\n"				/* 3 */
	"  *  $#1#\n"				/* 4 */
	"  *  $]ldap:///[\n"			/* 5 */
	"  *  $[lib,f,x]\n"			/* 6 */
	"  *  $?50?\n"				/* 7 */
	"  *  $=\n"				/* 8 */
	"  *  $}d,a{\n"				/* 9 */
	"  *  $|V;$Y|\n"			/* 10 */
	"  *  $:\n"				/* 11 */
	"  $(10.0.0.0/33)  x\n"			/* 12 */
	"  $<10.0.0.0/x>  x\n"			/* 13 */
	"  ${fe80::1/129}  x\n"			/* 14 */
	"  ${::1  x\n"				/* 15 */
	"  $@  x\n"				/* 16 */
	"  $_$1*  x\n"				/* 17 */
	"  *$_$(10.0.0.0/8)  x\n"		/* 18 */
	"  *  $|;x|\n"				/* 19 */
	"  *  $|V|\n"				/* 20 */
	"  $\x01  x\n"				/* 21 */
	"  $(10.0.0.0/)  x\n"			/* 22 */
	"  ${zz}  x\n"				/* 23 */
	"\n"					/* 24 */
	"entry-less\n";				/* 25: a table may be empty */

static const char bad_expected2[] =
	"u.map:3: back match $1 must be written $1*\n"
	"u.map:4: $#...# (sequence numbers) is not supported by msaproxy\n"
	"u.map:5: $]...[ (LDAP lookups) is not supported by msaproxy\n"
	"u.map:6: $[...] (site-supplied routines) is not supported by "
	"msaproxy\n"
	"u.map:7: $?x? (random success) is not supported by msaproxy\n"
	"u.map:8: $= (LDAP filter quoting) is not supported by msaproxy\n"
	"u.map:9: $}domain,attribute{ is not supported by msaproxy\n"
	"u.map:10: $Y is not allowed inside a $|TABLE;argument| argument\n"
	"u.map:11: $: needs a flag character\n"
	"u.map:12: number of bits out of range\n"
	"u.map:13: bad number of bits after '/'\n"
	"u.map:14: number of bits out of range\n"
	"u.map:15: unterminated ${...} IP match\n"
	"u.map:16: modifier $_, $@ or $^ not followed by a wildcard or glob\n"
	"u.map:17: modifier $_, $@ or $^ before a back match\n"
	"u.map:18: $_ (lazy) before an IP match\n"
	"u.map:19: $|;...| names no table\n"
	"u.map:20: $|TABLE;argument| needs a ';' after the table name\n"
	"u.map:21: unknown pattern sequence $\\x01\n"
	"u.map:22: missing number of bits after '/'\n"
	"u.map:23: bad IPv6 address in ${...}\n";

static void
test_compile_errors(void **state)
{
	(void)state;
	assert_null(mapping_load_buffer("t.map", bad_file, strlen(bad_file),
	    errbuf, sizeof(errbuf)));
	assert_string_equal(errbuf, bad_expected);
	assert_null(mapping_load_buffer("u.map", bad_file2, strlen(bad_file2),
	    errbuf, sizeof(errbuf)));
	assert_string_equal(errbuf, bad_expected2);
}

/* The unresolved $|NOPE;x| of the first file is reported last. */
static void
test_unresolved_call(void **state)
{
	static const char text[] =
	    "T\n\n  *  $|NOPE;x|$Y\n  *  $|T;x|$Y\n  *  $|nope2;$0|\n";

	(void)state;
	assert_null(mapping_load_buffer("t.map", text, strlen(text), errbuf,
	    sizeof(errbuf)));
	assert_string_equal(errbuf,
	    "t.map:3: no table named NOPE (called as $|NOPE;...|)\n"
	    "t.map:5: no table named nope2 (called as $|nope2;...|)\n");
}

static void
test_limits_at_load(void **state)
{
	char *text;
	size_t i, n;
	struct mapping_file *mf;

	(void)state;
	text = malloc(MAPPING_MAX_ENTRIES * 8 + 4096);
	assert_non_null(text);

	/* pattern length: 256 is fine, 257 is not */
	n = (size_t)sprintf(text, "T\n\n  ");
	memset(text + n, 'a', MAPPING_MAX_PATTERN);
	n += MAPPING_MAX_PATTERN;
	n += (size_t)sprintf(text + n, "  x\n  ");
	memset(text + n, 'a', MAPPING_MAX_PATTERN + 1);
	n += MAPPING_MAX_PATTERN + 1;
	n += (size_t)sprintf(text + n, "  x\n");
	mf = mapping_load_buffer("t.map", text, n, errbuf, sizeof(errbuf));
	assert_null(mf);
	assert_string_equal(errbuf, "t.map:4: pattern longer than 256 "
	    "characters (MAPPING_MAX_PATTERN)\n");

	/* template length */
	n = (size_t)sprintf(text, "T\n\n  a  ");
	memset(text + n, 'b', MAPPING_MAX_TEMPLATE + 1);
	n += MAPPING_MAX_TEMPLATE + 1;
	text[n++] = '\n';
	assert_null(mapping_load_buffer("t.map", text, n, errbuf,
	    sizeof(errbuf)));
	assert_string_equal(errbuf, "t.map:3: template longer than 1024 "
	    "characters (MAPPING_MAX_TEMPLATE)\n");

	/* wildcards: 32 are fine, 33 are not */
	n = (size_t)sprintf(text, "T\n\n  ");
	for (i = 0; i < MAPPING_MAX_WILDCARDS; i++)
		text[n++] = '%';
	n += (size_t)sprintf(text + n, "  x\n  ");
	for (i = 0; i < MAPPING_MAX_WILDCARDS + 1; i++)
		text[n++] = '%';
	n += (size_t)sprintf(text + n, "  x\n");
	assert_null(mapping_load_buffer("t.map", text, n, errbuf,
	    sizeof(errbuf)));
	assert_string_equal(errbuf, "t.map:4: more wildcards than "
	    "MAPPING_MAX_WILDCARDS (32)\n");

	/* unsaved wildcards count too */
	n = (size_t)sprintf(text, "T\n\n  ");
	for (i = 0; i < MAPPING_MAX_WILDCARDS + 1; i++)
		n += (size_t)sprintf(text + n, "$@%%");
	n += (size_t)sprintf(text + n, "  x\n");
	assert_null(mapping_load_buffer("t.map", text, n, errbuf,
	    sizeof(errbuf)));

	/* entries per table */
	n = (size_t)sprintf(text, "T\n\n");
	for (i = 0; i < MAPPING_MAX_ENTRIES + 1; i++)
		n += (size_t)sprintf(text + n, "  a  b\n");
	assert_null(mapping_load_buffer("t.map", text, n, errbuf,
	    sizeof(errbuf)));
	assert_string_equal(errbuf, "t.map:20003: table T has more than "
	    "20000 entries (MAPPING_MAX_ENTRIES)\n");

	/* NUL byte */
	assert_null(mapping_load_buffer("t.map", "T\n\0", 3, errbuf,
	    sizeof(errbuf)));
	assert_string_equal(errbuf, "t.map: holds a NUL byte: not a mapping "
	    "file\n");
	free(text);
}

/* Many errors into a small buffer: cut with "...". */
static void
test_error_buffer_cut(void **state)
{
	char small[120], text[4096];
	size_t n = 0;
	int i;

	(void)state;
	n += (size_t)sprintf(text, "T\n\n");
	for (i = 0; i < 50; i++)
		n += (size_t)sprintf(text + n, "  $Q  x\n");
	assert_null(mapping_load_buffer("t.map", text, n, small,
	    sizeof(small)));
	assert_true(strlen(small) < sizeof(small));
	assert_string_equal(small,
	    "t.map:3: unknown pattern sequence $Q\n"
	    "t.map:4: unknown pattern sequence $Q\n"
	    "t.map:5: unknown pattern sequence $Q\n"
	    "...\n");
}

/* ---- includes (files on disk) ---- */

static char tmpdir[64];

static void
write_file(const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void
test_includes(void **state)
{
	char path[256], want[1024];
	struct mapping_file *mf;
	const struct mapping_table *t;

	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_mapping.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	write_file("main.map",
	    "! the main file\n"
	    "<hosts.map\n"
	    "BURL_ACCESS\n"
	    "\n"
	    "  a*  $C\n"
	    "< sub/entries.map \n"
	    "  *  last$N\n");
	write_file("hosts.map", "X-IMAP-HOSTS\n\n  mail1  $Y\n\n");
	snprintf(path, sizeof(path), "%s/sub", tmpdir);
	assert_int_equal(mkdir(path, 0700), 0);
	write_file("sub/entries.map", "! included inside a table\n"
	    "  *@*  $C$|X-IMAP-HOSTS;$1|ok$Y$E\n");
	snprintf(path, sizeof(path), "%s/main.map", tmpdir);
	mf = mapping_load(path, errbuf, sizeof(errbuf));
	if (mf == NULL)
		fail_msg("%s", errbuf);
	assert_int_equal(mapping_table_count(mf), 2);
	assert_string_equal(mapping_table_name(mapping_table_at(mf, 0)),
	    "X-IMAP-HOSTS");
	t = mapping_table(mf, "BURL_ACCESS");
	assert_non_null(t);
	assert_int_equal(mapping_table_entries(t), 3);
	assert_int_equal(mapping_eval(mf, t, "u@mail1", NULL, &res), 0);
	assert_string_equal(res.out, "ok");
	assert_int_equal(res.flags, MAPPING_FLAG_Y);
	snprintf(want, sizeof(want), "%s/sub/entries.map", tmpdir);
	assert_string_equal(res.file, want);
	assert_int_equal(res.line, 2);
	assert_int_equal(mapping_eval(mf, t, "u@mail2", NULL, &res), 0);
	assert_string_equal(res.out, "last");
	assert_int_equal(res.line, 7);
	mapping_free(&mf);

	/* a missing include, reported at the including line */
	write_file("bad.map", "T\n\n  a  b\n<nothere.map\n");
	snprintf(path, sizeof(path), "%s/bad.map", tmpdir);
	assert_null(mapping_load(path, errbuf, sizeof(errbuf)));
	snprintf(want, sizeof(want), "%s/bad.map:4: cannot open included file "
	    "%s/nothere.map: No such file or directory\n", tmpdir, tmpdir);
	assert_string_equal(errbuf, want);

	/* nesting deeper than 3, and an include cycle */
	write_file("l0.map", "<l1.map\n");
	write_file("l1.map", "<l2.map\n");
	write_file("l2.map", "<l3.map\n");
	write_file("l3.map", "<l4.map\n");
	write_file("l4.map", "T\n\n  a  b\n");
	snprintf(path, sizeof(path), "%s/l1.map", tmpdir);
	mf = mapping_load(path, errbuf, sizeof(errbuf));
	if (mf == NULL)
		fail_msg("3 levels: %s", errbuf);
	mapping_free(&mf);
	snprintf(path, sizeof(path), "%s/l0.map", tmpdir);
	assert_null(mapping_load(path, errbuf, sizeof(errbuf)));
	snprintf(want, sizeof(want), "%s/l3.map:1: includes nested more than 3 "
	    "deep (MAPPING_MAX_INCLUDE_DEPTH)\n", tmpdir);
	assert_string_equal(errbuf, want);
	write_file("cycle.map", "<cycle.map\n");
	snprintf(path, sizeof(path), "%s/cycle.map", tmpdir);
	assert_null(mapping_load(path, errbuf, sizeof(errbuf)));

	/* the file itself missing */
	snprintf(path, sizeof(path), "%s/none.map", tmpdir);
	assert_null(mapping_load(path, errbuf, sizeof(errbuf)));
	snprintf(want, sizeof(want), "%s: cannot open: No such file or "
	    "directory\n", path);
	assert_string_equal(errbuf, want);

	/* a directory is not a mapping file */
	assert_null(mapping_load(tmpdir, errbuf, sizeof(errbuf)));
}

/* ---- bounds at evaluation ---- */

static void
test_bounds(void **state)
{
	struct mapping_file *mf;
	const struct mapping_table *t;
	char *big;
	int rc;

	(void)state;
	big = malloc(MAPPING_MAX_PROBE + 16);
	assert_non_null(big);

	/* Without back matches the memo keeps a pathological pattern
	 * polynomial: no error, no match. */
	mf = load_text("T\n\n  *a*a*a*a*a*a*a*a*a*a*a*a*c*  $0|$1|$9$Y\n");
	assert_non_null(mf);
	memset(big, 'a', 3000);
	big[3000] = '\0';
	rc = mapping_eval(mf, mapping_table(mf, "T"), big, NULL, &res);
	assert_int_equal(rc, 0);
	assert_int_equal(res.matched, 0);
	big[1500] = 'c';
	rc = mapping_eval(mf, mapping_table(mf, "T"), big, NULL, &res);
	assert_int_equal(rc, 0);
	assert_int_equal(res.flags, MAPPING_FLAG_Y);
	/* greedy as backtracking would be: $0 takes all it can (1500 - 12
	 * characters), the stars between the twelve a's nothing */
	assert_int_equal(strlen(res.out), 1488 + 2);
	assert_int_equal(strspn(res.out, "a"), 1488);
	assert_string_equal(res.out + 1488, "||");
	mapping_free(&mf);

	/* With a back match the step bound stops it: an error, no flags,
	 * the entry named. */
	mf = load_text("T\n\n  a  first$Y\n  *a*a*a*a*a*a*a*a*a*a$0*c*  x$Y\n"
	    "  *  fallback$Y\n");
	assert_non_null(mf);
	memset(big, 'a', 300);
	big[300] = '\0';
	rc = mapping_eval(mf, mapping_table(mf, "T"), big, NULL, &res);
	assert_int_equal(rc, -1);
	assert_int_equal(res.flags, 0);
	assert_string_equal(res.out, "");
	assert_int_equal(res.line, 4);
	assert_non_null(strstr(res.detail, "MAPPING_MAX_STEPS"));
	mapping_free(&mf);

	/* probe too long */
	mf = load_text("T\n\n  *  $Y\n");
	assert_non_null(mf);
	t = mapping_table(mf, "T");
	memset(big, 'x', MAPPING_MAX_PROBE);
	big[MAPPING_MAX_PROBE] = '\0';
	assert_int_equal(mapping_eval(mf, t, big, NULL, &res), -1);
	assert_int_equal(res.flags, 0);
	assert_non_null(strstr(res.detail, "MAPPING_MAX_PROBE"));
	big[MAPPING_MAX_PROBE - 1] = '\0';
	assert_int_equal(mapping_eval(mf, t, big, NULL, &res), 0);
	assert_int_equal(res.flags, MAPPING_FLAG_Y);
	mapping_free(&mf);

	/* output too long */
	mf = load_text("T\n\n  *  $0$0$Y\n");
	assert_non_null(mf);
	memset(big, 'x', 3000);
	big[3000] = '\0';
	assert_int_equal(mapping_eval(mf, mapping_table(mf, "T"), big, NULL,
	    &res), -1);
	assert_int_equal(res.flags, 0);
	assert_non_null(strstr(res.detail, "MAPPING_OUT_MAX"));
	big[2000] = '\0';
	assert_int_equal(mapping_eval(mf, mapping_table(mf, "T"), big, NULL,
	    &res), 0);
	assert_int_equal(strlen(res.out), 4000);
	mapping_free(&mf);

	/* no table */
	assert_int_equal(mapping_eval(NULL, NULL, "x", NULL, &res), -1);
	free(big);
}

/* ---- the BURL_ACCESS probe builder ---- */

static void
test_burl_probe(void **state)
{
	char buf[MAPPING_MAX_PROBE], small[40];
	struct mapping_probe p;
	int bar = -1, n;

	(void)state;
	memset(&p, 0, sizeof(p));
	p.server_addr = "192.0.2.1";
	p.server_port = 587;
	p.client_addr = "198.51.100.7";
	p.client_port = 50000;
	p.channel = "tcp_submit";
	p.authid = "";
	n = mapping_burl_probe(&p, buf, sizeof(buf), &bar);
	assert_string_equal(buf,
	    "TCP|192.0.2.1|587|198.51.100.7|50000|tcp_submit||");
	assert_int_equal(n, (int)strlen(buf));
	assert_int_equal(bar, 0);

	p.authid = "alice@example.com";
	p.url = "imap://alice@h/INBOX/;UID=1;URLAUTH=submit+alice:internal:x";
	mapping_burl_probe(&p, buf, sizeof(buf), &bar);
	assert_string_equal(buf,
	    "TCP|192.0.2.1|587|198.51.100.7|50000|tcp_submit|alice@example.com|"
	    "imap://alice@h/INBOX/;UID=1;URLAUTH=submit+alice:internal:x");
	assert_int_equal(bar, 0);

	p.url = "imap://a|b|";
	mapping_burl_probe(&p, buf, sizeof(buf), &bar);
	assert_string_equal(buf, "TCP|192.0.2.1|587|198.51.100.7|50000|"
	    "tcp_submit|alice@example.com|imap://a|b|");
	assert_int_equal(bar, 1);
	p.paranoia = '!';
	bar = 0;
	mapping_burl_probe(&p, buf, sizeof(buf), &bar);
	assert_string_equal(buf, "TCP|192.0.2.1|587|198.51.100.7|50000|"
	    "tcp_submit|alice@example.com|imap://a!b!");
	assert_int_equal(bar, 1);

	/* disconnected context: no port-access part */
	p.server_addr = NULL;
	p.url = NULL;
	mapping_burl_probe(&p, buf, sizeof(buf), NULL);
	assert_string_equal(buf, "|tcp_submit|alice@example.com|");

	/* does not fit */
	p.server_addr = "192.0.2.1";
	p.url = "imap://x";
	assert_int_equal(mapping_burl_probe(&p, small, sizeof(small), &bar),
	    -1);
	assert_string_equal(small, "");
	p.authid = "a";
	p.channel = "c";
	p.server_addr = "1.1.1.1";
	p.client_addr = "2.2.2.2";
	p.url = "imap://this-is-far-too-long-for-the-buffer";
	assert_int_equal(mapping_burl_probe(&p, small, sizeof(small), &bar),
	    -1);
	assert_int_equal(mapping_burl_probe(&p, small, 0, &bar), -1);
}

static void
test_flags_string(void **state)
{
	char buf[32], tiny[3];

	(void)state;
	assert_string_equal(mapping_flags_string(0, buf, sizeof(buf)), "");
	assert_string_equal(mapping_flags_string(MAPPING_FLAG_Y |
	    MAPPING_FLAG_D | MAPPING_FLAG_M, buf, sizeof(buf)), "DMY");
	assert_string_equal(mapping_flags_string(MAPPING_FLAG('A') |
	    MAPPING_FLAG('Z'), buf, sizeof(buf)), "AZ");
	assert_string_equal(mapping_flags_string(MAPPING_FLAG_N |
	    MAPPING_FLAG_T | MAPPING_FLAG_X, tiny, sizeof(tiny)), "NT");
}

/* Tracing calls back once per matching entry, with depth for aux
 * tables. */
static int ntrace, maxdepth;

static void
count_trace(void *arg, int depth, const char *table, const char *file,
	    int line, const char *input, const char *output, unsigned flags,
	    const char *what)
{
	(void)arg; (void)table; (void)file; (void)line; (void)input;
	(void)output; (void)flags; (void)what;
	ntrace++;
	if (depth > maxdepth)
		maxdepth = depth;
}

static void
test_trace(void **state)
{
	struct mapping_file *mf;
	struct mapping_ctx ctx;

	(void)state;
	mf = load_text("X\n\n  *  $Y\n\nT\n\n  a*  $0$C\n  *  $|X;$0|$Y\n");
	assert_non_null(mf);
	memset(&ctx, 0, sizeof(ctx));
	ctx.trace = count_trace;
	assert_int_equal(mapping_eval(mf, mapping_table(mf, "T"), "ab", &ctx,
	    &res), 0);
	assert_int_equal(ntrace, 3);
	assert_int_equal(maxdepth, 1);
	mapping_free(&mf);
	mapping_free(&mf);	/* NULL is fine */
	mapping_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one),
		cmocka_unit_test(test_tables),
		cmocka_unit_test(test_compile_errors),
		cmocka_unit_test(test_unresolved_call),
		cmocka_unit_test(test_limits_at_load),
		cmocka_unit_test(test_error_buffer_cut),
		cmocka_unit_test(test_includes),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_burl_probe),
		cmocka_unit_test(test_flags_string),
		cmocka_unit_test(test_trace),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
