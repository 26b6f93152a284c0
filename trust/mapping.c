/*
 * mapping.c - Messaging Server mapping tables: loader, compiler, matcher
 * and template expander.  The language is described in mapping.h.
 *
 * Compilation turns each pattern into an array of tokens (literal runs
 * folded to lower case, one-character and starred classes as 256-bit sets,
 * back matches, IP matches) and each template into an array of template
 * tokens; auxiliary table names are resolved once the whole file is read.
 * No regular expression library is involved.
 *
 * Matching is backtracking over the token array with these bounds and
 * shortcuts:
 *   - a step counter per pattern (MAPPING_MAX_STEPS): going past it is an
 *     error, never a match, so a hostile probe can at worst make its own
 *     BURL fail;
 *   - quick rejects before matching: minimal length, fixed length, a
 *     trailing literal, and the longest literal of the pattern, which must
 *     occur in the input (first through a hashed set of the input's
 *     character pairs, built once per input string, then memmem);
 *   - a star followed by a literal only tries the positions where that
 *     literal's first character is; a star followed by fixed-length tokens
 *     only tries the one length that can fit;
 *   - for patterns without back matches, once backtracking has taken more
 *     than QUICK_STEPS steps it gives way to an exact polynomial method: a
 *     table of which (token, position) pairs can still reach the end,
 *     filled from the end (O(tokens x length)), then one walk that takes,
 *     at each wildcard, the first length in greedy (or lazy) order the
 *     table allows - the same match backtracking would have found.  Only
 *     patterns with back matches (or with too many tokens for REACH_BYTES
 *     at that input length) can run into MAPPING_MAX_STEPS.
 * Case-blindness: the input is folded (ASCII) into a copy that the matcher
 * reads; saved wildcards are offsets into it, and substitutions copy from
 * the unfolded input at the same offsets, so output keeps the input's case.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mapping.h"

#define MAX_LOGICAL_LINE	16384	/* a line with its continuations */
#define BIGRAM_BITS		4096	/* hashed character pairs of the input */
#define MAX_BIGRAMS		16	/* pairs of the required literal kept */
#define QUICK_STEPS		2048	/* backtracking steps before the table
					 * method (patterns without back
					 * matches) */
#define REACH_BYTES		32768	/* (tokens+1) x (length+1) bits at most;
					 * beyond, backtracking only */

/* ---- compiled form ---- */

enum pt_kind {
	PT_LIT,		/* literal run, folded */
	PT_ONE,		/* one character of set (NULL: any) */
	PT_STAR,	/* any number of characters of set (NULL: any) */
	PT_BACKREF,	/* the text saved wildcard ref matched */
	PT_IP4,		/* an IPv4 address under a mask */
	PT_IP6,		/* an IPv6 address under a mask */
};

struct pat_tok {
	unsigned char kind;
	unsigned char lazy;		/* PT_STAR: shortest first */
	unsigned char exact;		/* tokens from here on have a fixed
					 * total length (minrest) */
	signed char save;		/* saved index, or -1 */
	unsigned char ref;		/* PT_BACKREF */
	unsigned short len;		/* PT_LIT */
	unsigned short minrest;		/* minimal length from here to the end */
	const char *lit;		/* PT_LIT */
	const unsigned char *set;	/* 32-byte bitmap, or NULL */
	const unsigned char *ip;	/* PT_IP4: 4+4, PT_IP6: 16+16 bytes
					 * (address, then mask) */
};

enum tt_kind {
	TT_TEXT,	/* text, as is */
	TT_SUBST,	/* $n */
	TT_CASE,	/* $\ $^ $_ : c = 'l', 'u', 'o' */
	TT_CONTROL,	/* $C $E $L $R */
	TT_FLAG,	/* $A..$Z */
	TT_TEST,	/* $:x (set = 1) $;x (set = 0) */
	TT_AUX,		/* $|table;arg| */
};

struct tpl_tok {
	unsigned char kind;
	char c;
	unsigned char set;
	unsigned char n;
	unsigned short len;		/* TT_TEXT: bytes; TT_AUX: arg tokens */
	const char *text;		/* TT_TEXT; TT_AUX: the table's name */
	const struct mapping_table *aux;
	const struct tpl_tok *arg;
};

struct map_entry {
	const char *file;
	int line;
	unsigned short npat;
	unsigned char nsaved;
	unsigned char has_backref;
	unsigned short minlen;
	unsigned short ntpl;
	unsigned short reqlen, suflen;
	unsigned char nbigram;
	unsigned short bigram[MAX_BIGRAMS];	/* hashed pairs of required */
	const char *required;		/* longest literal (folded) */
	const char *suffix;		/* trailing literal (folded) */
	const struct pat_tok *pat;
	const struct tpl_tok *tpl;
};

struct mapping_table {
	const char *name;
	const char *file;
	int line;
	struct map_entry *entries;
	size_t nentries, cap;
};

struct arena_block {
	struct arena_block *next;
	size_t used, size;
	max_align_t data[];
};

struct aux_ref {
	struct tpl_tok *tok;
	const char *file;
	int line;
};

struct mapping_file {
	struct arena_block *arena;
	struct mapping_table **tables;
	size_t ntables, tcap;
};

/* ---- loader state ---- */

enum lstate {
	L_NONE,		/* between tables */
	L_NAMED,	/* after a table name, before its first entry */
	L_ENTRIES,	/* in a table's entries */
	L_SKIP,		/* after a rejected table name: ignore its entries */
};

struct loader {
	struct mapping_file *mf;
	char *errbuf;
	size_t errsize, errlen;
	int nerrors;
	int cut;			/* errbuf full: "..." written */
	enum lstate state;
	struct mapping_table *cur;
	const char *closed_name;	/* the table a blank line ended */
	const char *closed_file;
	int closed_line;
	struct aux_ref *refs;
	size_t nrefs, refcap;
	int oom;
};

static void lerr(struct loader *ld, const char *file, int line,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
lerr(struct loader *ld, const char *file, int line, const char *fmt, ...)
{
	char msg[512];
	int n, m;
	va_list ap;
	size_t room;

	ld->nerrors++;
	if (ld->errbuf == NULL || ld->errsize == 0)
		return;
	if (line > 0)
		n = snprintf(msg, sizeof(msg), "%s:%d: ", file, line);
	else
		n = snprintf(msg, sizeof(msg), "%s: ", file);
	if (n < 0 || (size_t)n >= sizeof(msg))
		n = 0;
	va_start(ap, fmt);
	m = vsnprintf(msg + n, sizeof(msg) - n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if ((size_t)n > sizeof(msg) - 2)
		n = sizeof(msg) - 2;
	msg[n++] = '\n';
	msg[n] = '\0';
	if (ld->cut)
		return;
	room = ld->errsize - ld->errlen - 1;
	if ((size_t)n <= room) {
		memcpy(ld->errbuf + ld->errlen, msg, n + 1);
		ld->errlen += n;
		return;
	}
	/* Does not fit: end the buffer with "...\n", and nothing after. */
	ld->cut = 1;
	if (ld->errsize >= 5) {
		size_t at = ld->errlen;

		if (at > ld->errsize - 5)
			at = ld->errsize - 5;
		memcpy(ld->errbuf + at, "...\n", 5);
		ld->errlen = at + 4;
	}
}

/* ---- arena: everything compiled lives here, freed at once ---- */

static void *
arena_alloc(struct mapping_file *mf, size_t n)
{
	struct arena_block *b = mf->arena;
	size_t align = sizeof(max_align_t), size;

	n = (n + align - 1) / align * align;
	if (n == 0)
		n = align;
	if (b == NULL || b->size - b->used < n) {
		size = n > 16384 ? n : 16384;
		b = malloc(sizeof(*b) + size);
		if (b == NULL)
			return NULL;
		b->size = size;
		b->used = 0;
		b->next = mf->arena;
		mf->arena = b;
	}
	b->used += n;
	return (char *)b->data + b->used - n;
}

static char *
arena_strndup(struct mapping_file *mf, const char *s, size_t n)
{
	char *p = arena_alloc(mf, n + 1);

	if (p == NULL)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* ---- character classes ---- */

static unsigned char
fold(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static int
is_alpha(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static void
set_add(unsigned char *set, unsigned char c)
{
	set[c >> 3] |= (unsigned char)(1u << (c & 7));
	/* case-blind: both cases of a letter */
	if (c >= 'A' && c <= 'Z')
		c += 'a' - 'A';
	else if (c >= 'a' && c <= 'z')
		c -= 'a' - 'A';
	set[c >> 3] |= (unsigned char)(1u << (c & 7));
}

static int
in_set(const unsigned char *set, unsigned char c)
{
	return set == NULL || (set[c >> 3] >> (c & 7)) & 1;
}

static void
set_range(unsigned char *set, unsigned char lo, unsigned char hi)
{
	unsigned c;

	for (c = lo; c <= hi; c++)
		set_add(set, (unsigned char)c);
}

/* The named glob classes: $A $B $D $H $O $S $T $X. */
static int
glob_class(char letter, unsigned char *set)
{
	memset(set, 0, 32);
	switch (letter) {
	case 'A':
		set_range(set, 'a', 'z');
		break;
	case 'B':
		set_range(set, '0', '1');
		break;
	case 'D':
		set_range(set, '0', '9');
		break;
	case 'H':
	case 'X':
		set_range(set, '0', '9');
		set_range(set, 'a', 'f');
		break;
	case 'O':
		set_range(set, '0', '7');
		break;
	case 'S':
		set_range(set, '0', '9');
		set_range(set, 'a', 'z');
		set_add(set, '_');
		set_add(set, '$');
		break;
	case 'T':
		set_add(set, '\t');
		set_add(set, '\v');
		set_add(set, ' ');
		break;
	default:
		return -1;
	}
	return 0;
}

/* ---- pattern compiler ---- */

static unsigned short
bigram_hash(unsigned char a, unsigned char b)
{
	return (unsigned short)(((unsigned)a * 67u + (unsigned)b * 7u) &
	    (BIGRAM_BITS - 1));
}

struct pat_build {
	struct pat_tok tok[MAPPING_MAX_PATTERN + 2];
	size_t ntok;
	char lit[MAPPING_MAX_PATTERN + 1];	/* the literal run being built */
	size_t litlen;
	int nwild;
	int nsaved;
	int has_backref;
	/* modifiers waiting for their wildcard */
	int mod_pending, mod_lazy, mod_nosave;
};

static int
pat_flush_lit(struct mapping_file *mf, struct pat_build *pb)
{
	struct pat_tok *t;

	if (pb->litlen == 0)
		return 0;
	t = &pb->tok[pb->ntok++];
	memset(t, 0, sizeof(*t));
	t->kind = PT_LIT;
	t->save = -1;
	t->len = (unsigned short)pb->litlen;
	t->lit = arena_strndup(mf, pb->lit, pb->litlen);
	pb->litlen = 0;
	return t->lit == NULL ? -1 : 0;
}

/* Append a wildcard token, applying pending modifiers; NULL on error. */
static struct pat_tok *
pat_wild(struct mapping_file *mf, struct pat_build *pb, enum pt_kind kind,
	 const char **error_r)
{
	struct pat_tok *t;

	if (pat_flush_lit(mf, pb) < 0) {
		*error_r = "out of memory";
		return NULL;
	}
	if (++pb->nwild > MAPPING_MAX_WILDCARDS) {
		*error_r = "more wildcards than MAPPING_MAX_WILDCARDS (32)";
		return NULL;
	}
	t = &pb->tok[pb->ntok++];
	memset(t, 0, sizeof(*t));
	t->kind = (unsigned char)kind;
	t->lazy = (unsigned char)(kind == PT_STAR && pb->mod_lazy);
	t->save = pb->mod_nosave ? -1 : (signed char)pb->nsaved++;
	pb->mod_pending = pb->mod_lazy = pb->mod_nosave = 0;
	return t;
}

/* "a.b.c.d/n" or "ipv6/n" into address + mask. */
static int
parse_ip(const char *s, size_t n, int v6, int ignore_bits, unsigned char *ip,
	 const char **error_r)
{
	char buf[64];
	const char *slash;
	size_t alen, nbytes = v6 ? 16 : 4, i;
	long bits = -1;
	unsigned maxbits = v6 ? 128 : 32, keep;

	if (n == 0 || n >= sizeof(buf)) {
		*error_r = v6 ? "bad IPv6 address in ${...}" :
		    "bad IPv4 address in $(...) or $<...>";
		return -1;
	}
	slash = memchr(s, '/', n);
	alen = slash != NULL ? (size_t)(slash - s) : n;
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	if (inet_pton(v6 ? AF_INET6 : AF_INET, buf, ip) != 1) {
		*error_r = v6 ? "bad IPv6 address in ${...}" :
		    "bad IPv4 address in $(...) or $<...>";
		return -1;
	}
	if (slash != NULL) {
		const char *p = slash + 1, *end = s + n;

		bits = 0;
		if (p == end) {
			*error_r = "missing number of bits after '/'";
			return -1;
		}
		for (; p < end; p++) {
			if (!is_digit((unsigned char)*p) || bits > 1000) {
				*error_r = "bad number of bits after '/'";
				return -1;
			}
			bits = bits * 10 + (*p - '0');
		}
		if (bits > (long)maxbits) {
			*error_r = "number of bits out of range";
			return -1;
		}
	}
	if (ignore_bits)
		keep = maxbits - (bits < 0 ? 0 : (unsigned)bits);
	else
		keep = bits < 0 ? maxbits : (unsigned)bits;
	for (i = 0; i < nbytes; i++) {
		unsigned b = keep >= 8 ? 8 : keep;

		ip[nbytes + i] = (unsigned char)(b == 0 ? 0 : 0xffu << (8 - b));
		keep -= b;
		ip[i] &= ip[nbytes + i];
	}
	return 0;
}

static int compile_pattern_into(struct mapping_file *mf, struct pat_build *pb,
				const char *p, size_t n, struct map_entry *e,
				const char **error_r, char *ebuf,
				size_t ebufsize);

/*
 * Compile pattern p[0..n) into e; returns 0, or -1 with *error_r (a static
 * string, or one written into ebuf).
 */
static int
compile_pattern(struct mapping_file *mf, const char *p, size_t n,
		struct map_entry *e, const char **error_r, char *ebuf,
		size_t ebufsize)
{
	struct pat_build *pb;
	int rc;

	pb = calloc(1, sizeof(*pb));	/* about 10 kB: not on the stack */
	if (pb == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	rc = compile_pattern_into(mf, pb, p, n, e, error_r, ebuf, ebufsize);
	free(pb);
	return rc;
}

static int
compile_pattern_into(struct mapping_file *mf, struct pat_build *pb,
		     const char *p, size_t n, struct map_entry *e,
		     const char **error_r, char *ebuf, size_t ebufsize)
{
	struct pat_tok *t, *pat;
	size_t i = 0, k, minrest, best = 0;
	int exact;

	while (i < n) {
		unsigned char c = (unsigned char)p[i], d;

		if (c != '$') {
			if (c == '*' || c == '%') {
				t = pat_wild(mf, pb, c == '*' ? PT_STAR : PT_ONE,
				    error_r);
				if (t == NULL)
					return -1;
				i++;
				continue;
			}
			if (pb->mod_pending)
				goto dangling;
			pb->lit[pb->litlen++] = (char)fold(c);
			i++;
			continue;
		}
		if (i + 1 >= n) {
			*error_r = "'$' at the end of the pattern";
			return -1;
		}
		d = (unsigned char)p[i + 1];
		switch (d) {
		case '*':
		case '%':
		case '$':
		case ' ':
		case '\t':
			if (pb->mod_pending)
				goto dangling;
			pb->lit[pb->litlen++] = (char)fold(d);
			i += 2;
			break;
		case '_':
			pb->mod_pending = pb->mod_lazy = 1;
			i += 2;
			break;
		case '@':
			pb->mod_pending = pb->mod_nosave = 1;
			i += 2;
			break;
		case '^':
			pb->mod_pending = 1;
			pb->mod_nosave = 0;
			i += 2;
			break;
		case 'A': case 'B': case 'D': case 'H':
		case 'O': case 'S': case 'T': case 'X': {
			unsigned char set[32], *s;

			if (i + 2 >= n || (p[i + 2] != '%' && p[i + 2] != '*')) {
				snprintf(ebuf, ebufsize,
				    "glob $%c must be followed by %% or *", d);
				*error_r = ebuf;
				return -1;
			}
			glob_class((char)d, set);
			t = pat_wild(mf, pb, p[i + 2] == '*' ? PT_STAR : PT_ONE,
			    error_r);
			if (t == NULL)
				return -1;
			s = arena_alloc(mf, 32);
			if (s == NULL) {
				*error_r = "out of memory";
				return -1;
			}
			memcpy(s, set, 32);
			t->set = s;
			i += 3;
			break;
		}
		case '[': {
			unsigned char set[32], *s;
			unsigned char prev = 0;
			int have_prev = 0, count = 0;

			memset(set, 0, sizeof(set));
			i += 2;
			for (;;) {
				unsigned char ch;

				if (i >= n) {
					*error_r = "unterminated $[...] glob";
					return -1;
				}
				ch = (unsigned char)p[i];
				if (ch == ']')
					break;
				if (ch == '\\') {
					if (i + 1 >= n) {
						*error_r = "unterminated $[...] glob";
						return -1;
					}
					ch = (unsigned char)p[i + 1];
					i += 2;
				} else if (ch == '-' && have_prev && i + 1 < n &&
				    p[i + 1] != ']') {
					unsigned char hi = (unsigned char)p[i + 1];
					size_t adv = 2;

					if (hi == '\\' && i + 2 < n) {
						hi = (unsigned char)p[i + 2];
						adv = 3;
					}
					if (hi < prev) {
						snprintf(ebuf, ebufsize,
						    "bad range %c-%c in $[...] glob",
						    prev, hi);
						*error_r = ebuf;
						return -1;
					}
					set_range(set, prev, hi);
					i += adv;
					have_prev = 0;
					count++;
					continue;
				} else {
					i++;
				}
				set_add(set, ch);
				prev = ch;
				have_prev = 1;
				count++;
			}
			i++;	/* ']' */
			if (count == 0) {
				*error_r = "empty $[] glob";
				return -1;
			}
			if (i >= n || (p[i] != '%' && p[i] != '*')) {
				*error_r = "$[...] must be followed by % or *";
				return -1;
			}
			t = pat_wild(mf, pb, p[i] == '*' ? PT_STAR : PT_ONE,
			    error_r);
			if (t == NULL)
				return -1;
			s = arena_alloc(mf, 32);
			if (s == NULL) {
				*error_r = "out of memory";
				return -1;
			}
			memcpy(s, set, 32);
			t->set = s;
			i++;
			break;
		}
		case '(':
		case '<':
		case '{': {
			char close = d == '(' ? ')' : d == '<' ? '>' : '}';
			const char *end = memchr(p + i + 2, close, n - i - 2);
			int v6 = d == '{';
			unsigned char *ip;

			if (end == NULL) {
				snprintf(ebuf, ebufsize,
				    "unterminated $%c...%c IP match", d, close);
				*error_r = ebuf;
				return -1;
			}
			ip = arena_alloc(mf, 32);
			if (ip == NULL) {
				*error_r = "out of memory";
				return -1;
			}
			if (parse_ip(p + i + 2, (size_t)(end - (p + i + 2)), v6,
			    d == '<', ip, error_r) < 0)
				return -1;
			if (pb->mod_lazy) {
				*error_r = "$_ (lazy) before an IP match";
				return -1;
			}
			t = pat_wild(mf, pb, v6 ? PT_IP6 : PT_IP4, error_r);
			if (t == NULL)
				return -1;
			t->ip = ip;
			i = (size_t)(end - p) + 1;
			break;
		}
		default:
			if (is_digit(d)) {
				unsigned ref = d - '0';

				if (i + 2 >= n || p[i + 2] != '*') {
					snprintf(ebuf, ebufsize,
					    "back match $%c must be written $%c*",
					    d, d);
					*error_r = ebuf;
					return -1;
				}
				if (pb->mod_pending) {
					*error_r = "modifier $_, $@ or $^ before a back match";
					return -1;
				}
				if ((int)ref >= pb->nsaved) {
					snprintf(ebuf, ebufsize,
					    "back match $%u* refers to wildcard %u, "
					    "but only %d are saved before it",
					    ref, ref, pb->nsaved);
					*error_r = ebuf;
					return -1;
				}
				if (pat_flush_lit(mf, pb) < 0) {
					*error_r = "out of memory";
					return -1;
				}
				t = &pb->tok[pb->ntok++];
				memset(t, 0, sizeof(*t));
				t->kind = PT_BACKREF;
				t->save = -1;
				t->ref = (unsigned char)ref;
				pb->has_backref = 1;
				i += 3;
				break;
			}
			if (d >= 0x21 && d < 0x7f)
				snprintf(ebuf, ebufsize,
				    "unknown pattern sequence $%c", d);
			else
				snprintf(ebuf, ebufsize,
				    "unknown pattern sequence $\\x%02x", d);
			*error_r = ebuf;
			return -1;
		}
	}
	if (pb->mod_pending)
		goto dangling;
	if (pat_flush_lit(mf, pb) < 0) {
		*error_r = "out of memory";
		return -1;
	}

	/* Minimal and exact lengths from each token to the end. */
	minrest = 0;
	exact = 1;
	for (k = pb->ntok; k-- > 0;) {
		t = &pb->tok[k];
		switch (t->kind) {
		case PT_LIT:
			minrest += t->len;
			if (t->len > best) {
				best = t->len;
				e->required = t->lit;
				e->reqlen = t->len;
			}
			break;
		case PT_ONE:
			minrest += 1;
			break;
		case PT_IP4:
			minrest += 7;	/* 0.0.0.0 */
			exact = 0;
			break;
		case PT_IP6:
			minrest += 2;	/* :: */
			exact = 0;
			break;
		default:
			exact = 0;
			break;
		}
		t->minrest = (unsigned short)minrest;
		t->exact = (unsigned char)exact;
	}
	pat = arena_alloc(mf, (pb->ntok ? pb->ntok : 1) * sizeof(*pat));
	if (pat == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	memcpy(pat, pb->tok, pb->ntok * sizeof(*pat));
	e->pat = pat;
	e->npat = (unsigned short)pb->ntok;
	e->nsaved = (unsigned char)pb->nsaved;
	e->has_backref = (unsigned char)pb->has_backref;
	e->minlen = (unsigned short)minrest;
	if (pb->ntok > 0 && pat[pb->ntok - 1].kind == PT_LIT) {
		e->suffix = pat[pb->ntok - 1].lit;
		e->suflen = pat[pb->ntok - 1].len;
	}
	/* A pattern that is one literal is checked whole; no memmem. */
	if (pb->ntok == 1 && pat[0].kind == PT_LIT)
		e->reqlen = 0;
	/* The required literal's character pairs (all of them, or
	 * MAX_BIGRAMS spread over it), hashed like the input's. */
	if (e->reqlen > 1) {
		size_t npairs = e->reqlen - 1, j;

		for (j = 0; j < npairs && j < MAX_BIGRAMS; j++) {
			size_t at = npairs <= MAX_BIGRAMS ? j :
			    j * (npairs - 1) / (MAX_BIGRAMS - 1);

			e->bigram[j] = bigram_hash(
			    (unsigned char)e->required[at],
			    (unsigned char)e->required[at + 1]);
		}
		e->nbigram = (unsigned char)j;
	}
	return 0;

dangling:
	*error_r = "modifier $_, $@ or $^ not followed by a wildcard or glob";
	return -1;
}

/* ---- template compiler ---- */

struct tpl_build {
	struct mapping_file *mf;
	struct loader *ld;
	const char *file;
	int line;
	int nsaved;
	const char **error_r;
	char *ebuf;
	size_t ebufsize;
	int depth;
};

/*
 * Compile template text p[*ip..n) into an arena token array.  In an
 * argument (tb->depth > 0) compilation stops at the '|' that closes it and
 * only text, $n, case controls and nested calls are allowed.
 */
static int
compile_tpl(struct tpl_build *tb, const char *p, size_t n, size_t *ip,
	    const struct tpl_tok **toks_r, unsigned short *ntoks_r)
{
	struct tpl_tok *tmp, *t, *out;
	char text[MAPPING_MAX_TEMPLATE + 1];
	size_t ntok = 0, tlen = 0, i = *ip, ref0 = tb->ld->nrefs;
	int arg = tb->depth > 0, closed = 0, rc = -1;

	/* at most one token per character: about 32 kB, not on the stack */
	tmp = malloc((n - i + 1) * sizeof(*tmp));
	if (tmp == NULL) {
		*tb->error_r = "out of memory";
		goto fail;
	}

#define FLUSH_TEXT() do {						\
		if (tlen > 0) {						\
			t = &tmp[ntok++];				\
			memset(t, 0, sizeof(*t));			\
			t->kind = TT_TEXT;				\
			t->len = (unsigned short)tlen;			\
			t->text = arena_strndup(tb->mf, text, tlen);	\
			if (t->text == NULL)				\
				goto oom;				\
			tlen = 0;					\
		}							\
	} while (0)

	while (i < n) {
		unsigned char c = (unsigned char)p[i], d;

		if (c != '$') {
			if (arg && c == '|') {
				closed = 1;
				i++;
				break;
			}
			text[tlen++] = (char)c;
			i++;
			continue;
		}
		if (i + 1 >= n) {
			*tb->error_r = "'$' at the end of the template";
			goto fail;
		}
		d = (unsigned char)p[i + 1];
		if (d == '$' || d == ' ' || d == '\t') {
			text[tlen++] = (char)d;
			i += 2;
			continue;
		}
		FLUSH_TEXT();
		t = &tmp[ntok];
		memset(t, 0, sizeof(*t));
		if (is_digit(d)) {
			if (d - '0' >= tb->nsaved) {
				snprintf(tb->ebuf, tb->ebufsize,
				    "template uses $%c, but the pattern saves "
				    "only %d wildcard%s", d, tb->nsaved,
				    tb->nsaved == 1 ? "" : "s");
				*tb->error_r = tb->ebuf;
				goto fail;
			}
			t->kind = TT_SUBST;
			t->n = (unsigned char)(d - '0');
			ntok++;
			i += 2;
			continue;
		}
		if (d == '\\' || d == '^' || d == '_') {
			t->kind = TT_CASE;
			t->c = d == '\\' ? 'l' : d == '^' ? 'u' : 'o';
			ntok++;
			i += 2;
			continue;
		}
		if (d == '|') {
			const char *name = p + i + 2, *semi;
			size_t j = i + 2;
			struct tpl_build sub;

			while (j < n && p[j] != ';' && p[j] != '|' &&
			    p[j] != '$')
				j++;
			if (j >= n || p[j] != ';') {
				*tb->error_r = "$|TABLE;argument| needs a ';' "
				    "after the table name";
				goto fail;
			}
			semi = p + j;
			if (semi == name) {
				*tb->error_r = "$|;...| names no table";
				goto fail;
			}
			if (tb->depth >= MAPPING_MAX_DEPTH) {
				*tb->error_r = "$|...| nested deeper than "
				    "MAPPING_MAX_DEPTH";
				goto fail;
			}
			t->kind = TT_AUX;
			t->text = arena_strndup(tb->mf, name,
			    (size_t)(semi - name));
			if (t->text == NULL)
				goto oom;
			sub = *tb;
			sub.depth = tb->depth + 1;
			j++;
			ntok++;
			if (compile_tpl(&sub, p, n, &j, &t->arg, &t->len) < 0)
				goto fail;
			i = j;
			/* remember the name for resolution at the end */
			if (tb->ld->nrefs == tb->ld->refcap) {
				size_t nc = tb->ld->refcap ? tb->ld->refcap * 2 : 16;
				struct aux_ref *r = realloc(tb->ld->refs,
				    nc * sizeof(*r));

				if (r == NULL)
					goto oom;
				tb->ld->refs = r;
				tb->ld->refcap = nc;
			}
			tb->ld->refs[tb->ld->nrefs].tok = t;
			tb->ld->refs[tb->ld->nrefs].file = tb->file;
			tb->ld->refs[tb->ld->nrefs].line = tb->line;
			tb->ld->nrefs++;
			continue;
		}
		if (arg) {
			snprintf(tb->ebuf, tb->ebufsize,
			    "$%c is not allowed inside a $|TABLE;argument| "
			    "argument", d >= 0x21 && d < 0x7f ? d : '?');
			*tb->error_r = tb->ebuf;
			goto fail;
		}
		if (d == ':' || d == ';') {
			unsigned char x;

			if (i + 2 >= n) {
				snprintf(tb->ebuf, tb->ebufsize,
				    "$%c needs a flag character", d);
				*tb->error_r = tb->ebuf;
				goto fail;
			}
			x = (unsigned char)p[i + 2];
			if (x != 'A' && x != 'T' && x != '|') {
				snprintf(tb->ebuf, tb->ebufsize,
				    "$%c%c tests an input flag msaproxy never "
				    "sets (it sets A, T and |)", d,
				    x >= 0x21 && x < 0x7f ? x : '?');
				*tb->error_r = tb->ebuf;
				goto fail;
			}
			t->kind = TT_TEST;
			t->c = (char)x;
			t->set = d == ':';
			ntok++;
			i += 3;
			continue;
		}
		if (d == 'C' || d == 'E' || d == 'L' || d == 'R') {
			t->kind = TT_CONTROL;
			t->c = (char)d;
			ntok++;
			i += 2;
			continue;
		}
		if (d >= 'A' && d <= 'Z') {
			t->kind = TT_FLAG;
			t->c = (char)d;
			ntok++;
			i += 2;
			continue;
		}
		switch (d) {
		case '#':
			*tb->error_r = "$#...# (sequence numbers) is not "
			    "supported by msaproxy";
			break;
		case ']':
			*tb->error_r = "$]...[ (LDAP lookups) is not supported "
			    "by msaproxy";
			break;
		case '{':
			*tb->error_r = "${...} (general database lookups) is not "
			    "supported by msaproxy";
			break;
		case '[':
			*tb->error_r = "$[...] (site-supplied routines) is not "
			    "supported by msaproxy";
			break;
		case '}':
			*tb->error_r = "$}domain,attribute{ is not supported by "
			    "msaproxy";
			break;
		case '?':
			*tb->error_r = "$?x? (random success) is not supported "
			    "by msaproxy";
			break;
		case '=':
			*tb->error_r = "$= (LDAP filter quoting) is not "
			    "supported by msaproxy";
			break;
		default:
			if (d >= 'a' && d <= 'z')
				snprintf(tb->ebuf, tb->ebufsize,
				    "unknown metacharacter $%c (flags are "
				    "upper case)", d);
			else if (d >= 0x21 && d < 0x7f)
				snprintf(tb->ebuf, tb->ebufsize,
				    "unknown metacharacter $%c", d);
			else
				snprintf(tb->ebuf, tb->ebufsize,
				    "unknown metacharacter $\\x%02x", d);
			*tb->error_r = tb->ebuf;
			break;
		}
		goto fail;
	}
	if (arg && !closed) {
		*tb->error_r = "unterminated $|TABLE;argument|";
		goto fail;
	}
	FLUSH_TEXT();
	out = arena_alloc(tb->mf, (ntok ? ntok : 1) * sizeof(*out));
	if (out == NULL)
		goto oom;
	memcpy(out, tmp, ntok * sizeof(*out));
	/* The calls this level registered point into tmp: move them. */
	{
		size_t r, k;

		for (r = ref0; r < tb->ld->nrefs; r++)
			for (k = 0; k < ntok; k++)
				if (tb->ld->refs[r].tok == &tmp[k])
					tb->ld->refs[r].tok = &out[k];
	}
	*toks_r = out;
	*ntoks_r = (unsigned short)ntok;
	*ip = i;
	rc = 0;
	goto fail;
oom:
	*tb->error_r = "out of memory";
fail:
	free(tmp);
	return rc;
#undef FLUSH_TEXT
}

/* ---- file parsing ---- */

static int
is_ws(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* End of a column: the first unquoted space or tab from i. */
static size_t
column_end(const char *s, size_t n, size_t i, int pattern)
{
	while (i < n && !is_ws((unsigned char)s[i])) {
		if (s[i] == '$' && i + 1 < n) {
			if (pattern && s[i + 1] == '[') {
				/* a glob runs to its ']' ('\' quotes) */
				i += 2;
				while (i < n && s[i] != ']') {
					if (s[i] == '\\' && i + 1 < n)
						i++;
					i++;
				}
				if (i < n)
					i++;
				continue;
			}
			i += 2;
			continue;
		}
		i++;
	}
	return i > n ? n : i;
}

static struct mapping_table *
find_table(const struct mapping_file *mf, const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < mf->ntables; i++) {
		const char *tn = mf->tables[i]->name;

		if (strlen(tn) == len && strncasecmp(tn, name, len) == 0)
			return mf->tables[i];
	}
	return NULL;
}

static void
handle_entry(struct loader *ld, const char *file, int line, const char *s,
	     size_t n)
{
	struct mapping_table *t = ld->cur;
	struct map_entry e;
	size_t i = 0, pstart, pend, tstart, tend;
	const char *error = NULL;
	char ebuf[200];
	struct tpl_build tb;

	while (i < n && is_ws((unsigned char)s[i]))
		i++;
	pstart = i;
	pend = column_end(s, n, i, 1);
	i = pend;
	while (i < n && is_ws((unsigned char)s[i]))
		i++;
	tstart = i;
	tend = column_end(s, n, i, 0);
	i = tend;
	while (i < n && is_ws((unsigned char)s[i]))
		i++;
	if (i < n) {
		lerr(ld, file, line, "text after the template (quote spaces "
		    "in a template as '$ ')");
		return;
	}
	if (pend - pstart > MAPPING_MAX_PATTERN) {
		lerr(ld, file, line, "pattern longer than %d characters "
		    "(MAPPING_MAX_PATTERN)", MAPPING_MAX_PATTERN);
		return;
	}
	if (tend - tstart > MAPPING_MAX_TEMPLATE) {
		lerr(ld, file, line, "template longer than %d characters "
		    "(MAPPING_MAX_TEMPLATE)", MAPPING_MAX_TEMPLATE);
		return;
	}
	if (t->nentries >= MAPPING_MAX_ENTRIES) {
		lerr(ld, file, line, "table %s has more than %d entries "
		    "(MAPPING_MAX_ENTRIES)", t->name, MAPPING_MAX_ENTRIES);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.file = file;
	e.line = line;
	if (compile_pattern(ld->mf, s + pstart, pend - pstart, &e, &error,
	    ebuf, sizeof(ebuf)) < 0) {
		lerr(ld, file, line, "%s", error);
		return;
	}
	tb.mf = ld->mf;
	tb.ld = ld;
	tb.file = file;
	tb.line = line;
	tb.nsaved = e.nsaved;
	tb.error_r = &error;
	tb.ebuf = ebuf;
	tb.ebufsize = sizeof(ebuf);
	tb.depth = 0;
	{
		size_t j = 0, nrefs = ld->nrefs;

		if (compile_tpl(&tb, s + tstart, tend - tstart, &j, &e.tpl,
		    &e.ntpl) < 0) {
			ld->nrefs = nrefs;	/* forget this entry's calls */
			lerr(ld, file, line, "%s", error);
			return;
		}
	}
	if (t->nentries == t->cap) {
		size_t nc = t->cap ? t->cap * 2 : 16;
		struct map_entry *ne = realloc(t->entries, nc * sizeof(*ne));

		if (ne == NULL) {
			ld->oom = 1;
			lerr(ld, file, line, "out of memory");
			return;
		}
		t->entries = ne;
		t->cap = nc;
	}
	t->entries[t->nentries++] = e;
}

static void
handle_name(struct loader *ld, const char *file, int line, const char *s,
	    size_t n)
{
	struct mapping_file *mf = ld->mf;
	struct mapping_table *t, *dup;
	size_t len = 0, i;

	while (len < n && !is_ws((unsigned char)s[len]))
		len++;
	for (i = len; i < n; i++)
		if (!is_ws((unsigned char)s[i])) {
			lerr(ld, file, line, "text after the table name (a "
			    "table name is one word in column 1; entries are "
			    "indented)");
			ld->cur = NULL;
			ld->state = L_SKIP;
			return;
		}
	dup = find_table(mf, s, len);
	if (dup != NULL) {
		lerr(ld, file, line, "duplicate table name %.*s (first at "
		    "%s:%d)", (int)len, s, dup->file, dup->line);
		ld->cur = NULL;
		ld->state = L_SKIP;
		return;
	}
	if (mf->ntables >= MAPPING_MAX_TABLES) {
		lerr(ld, file, line, "more than %d tables "
		    "(MAPPING_MAX_TABLES)", MAPPING_MAX_TABLES);
		ld->cur = NULL;
		ld->state = L_SKIP;
		return;
	}
	if (mf->ntables == mf->tcap) {
		size_t nc = mf->tcap ? mf->tcap * 2 : 8;
		struct mapping_table **nt = realloc(mf->tables,
		    nc * sizeof(*nt));

		if (nt == NULL) {
			ld->oom = 1;
			lerr(ld, file, line, "out of memory");
			return;
		}
		mf->tables = nt;
		mf->tcap = nc;
	}
	t = arena_alloc(mf, sizeof(*t));
	if (t == NULL || (t->name = arena_strndup(mf, s, len)) == NULL) {
		ld->oom = 1;
		lerr(ld, file, line, "out of memory");
		return;
	}
	t->file = file;
	t->line = line;
	t->entries = NULL;
	t->nentries = t->cap = 0;
	mf->tables[mf->ntables++] = t;
	ld->cur = t;
	ld->state = L_NAMED;
	ld->closed_name = NULL;
}

static int load_file(struct loader *ld, const char *path, int depth,
		     const char *from_file, int from_line);

static void
handle_line(struct loader *ld, const char *file, int line, const char *s,
	    size_t n, int depth, int allow_include)
{
	size_t i;
	unsigned char c;

	for (i = 0; i < n && is_ws((unsigned char)s[i]); i++)
		;
	if (i == n) {
		/* A blank line: after a name it is the one the format asks
		 * for; after entries it ends the table. */
		if (ld->state == L_SKIP) {
			ld->state = L_NONE;
			ld->closed_name = NULL;
		} else if (ld->state == L_ENTRIES) {
			ld->closed_name = ld->cur->name;
			ld->closed_file = file;
			ld->closed_line = line;
			ld->cur = NULL;
			ld->state = L_NONE;
		}
		return;
	}
	c = (unsigned char)s[0];
	if (c == '!')
		return;
	if (c == '<') {
		char path[4096];
		size_t a = 1, b = n;

		while (a < b && is_ws((unsigned char)s[a]))
			a++;
		while (b > a && is_ws((unsigned char)s[b - 1]))
			b--;
		if (!allow_include) {
			lerr(ld, file, line, "includes (\"<file\") need a mapping "
			    "file on disk");
			return;
		}
		if (a == b) {
			lerr(ld, file, line, "'<' names no file");
			return;
		}
		if (depth + 1 > MAPPING_MAX_INCLUDE_DEPTH) {
			lerr(ld, file, line, "includes nested more than %d deep "
			    "(MAPPING_MAX_INCLUDE_DEPTH)",
			    MAPPING_MAX_INCLUDE_DEPTH);
			return;
		}
		if (s[a] == '/') {
			if (b - a >= sizeof(path)) {
				lerr(ld, file, line, "include file name too long");
				return;
			}
			memcpy(path, s + a, b - a);
			path[b - a] = '\0';
		} else {
			/* relative to the including file's directory */
			const char *slash = strrchr(file, '/');
			size_t dl = slash != NULL ? (size_t)(slash - file) + 1 : 0;

			if (dl + (b - a) >= sizeof(path)) {
				lerr(ld, file, line, "include file name too long");
				return;
			}
			memcpy(path, file, dl);
			memcpy(path + dl, s + a, b - a);
			path[dl + (b - a)] = '\0';
		}
		load_file(ld, path, depth + 1, file, line);
		return;
	}
	if (is_ws(c)) {
		if (ld->state == L_SKIP)
			return;
		if (ld->state == L_NONE || ld->cur == NULL) {
			if (ld->closed_name != NULL)
				lerr(ld, file, line, "entry outside a table (the "
				    "blank line at %s:%d ended table %s; entries "
				    "of one table have no blank line between "
				    "them)", ld->closed_file, ld->closed_line,
				    ld->closed_name);
			else
				lerr(ld, file, line, "entry outside a table (no "
				    "table name above it)");
			return;
		}
		handle_entry(ld, file, line, s, n);
		ld->state = L_ENTRIES;
		return;
	}
	if (is_alpha(c)) {
		handle_name(ld, file, line, s, n);
		return;
	}
	lerr(ld, file, line, "a line starts with a table name (a letter), "
	    "a space or tab (an entry), '!' (a comment) or '<' (an include)");
}

/* Split text into logical lines (joining '\' continuations) and handle
 * each. */
static void
parse_text(struct loader *ld, const char *file, const char *text, size_t len,
	   int depth, int allow_include)
{
	char *buf;
	size_t pos = 0, blen = 0;
	int lineno = 0, first = 0, joining = 0, toolong = 0;

	buf = malloc(MAX_LOGICAL_LINE);
	if (buf == NULL) {
		ld->oom = 1;
		lerr(ld, file, 0, "out of memory");
		return;
	}
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl != NULL ? (size_t)(nl - text) : len;
		size_t l = end - pos;
		int cont;

		lineno++;
		if (l > 0 && text[pos + l - 1] == '\r')
			l--;
		cont = l > 0 && text[pos + l - 1] == '\\';
		if (cont)
			l--;
		if (!joining) {
			first = lineno;
			blen = 0;
			toolong = 0;
		}
		if (blen + l >= MAX_LOGICAL_LINE)
			toolong = 1;
		else {
			memcpy(buf + blen, text + pos, l);
			blen += l;
		}
		pos = nl != NULL ? end + 1 : len;
		if (cont && pos < len) {
			joining = 1;
			continue;
		}
		joining = 0;
		if (toolong)
			lerr(ld, file, first, "line longer than %d characters "
			    "with its continuations", MAX_LOGICAL_LINE - 1);
		else
			handle_line(ld, file, first, buf, blen, depth,
			    allow_include);
	}
	free(buf);
}

static int
load_file(struct loader *ld, const char *path, int depth,
	  const char *from_file, int from_line)
{
	const char *file;
	char *text;
	struct stat st;
	size_t got = 0;
	int fd;

	file = arena_strndup(ld->mf, path, strlen(path));
	if (file == NULL) {
		ld->oom = 1;
		lerr(ld, path, 0, "out of memory");
		return -1;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (from_file != NULL)
			lerr(ld, from_file, from_line, "cannot open included "
			    "file %s: %s", path, strerror(errno));
		else
			lerr(ld, path, 0, "cannot open: %s", strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		lerr(ld, from_file != NULL ? from_file : path,
		    from_file != NULL ? from_line : 0, "%s is not a regular "
		    "file", path);
		close(fd);
		return -1;
	}
	if ((unsigned long long)st.st_size > MAPPING_MAX_FILE_SIZE) {
		lerr(ld, path, 0, "larger than %u bytes "
		    "(MAPPING_MAX_FILE_SIZE)", MAPPING_MAX_FILE_SIZE);
		close(fd);
		return -1;
	}
	text = malloc((size_t)st.st_size + 1);
	if (text == NULL) {
		ld->oom = 1;
		lerr(ld, path, 0, "out of memory");
		close(fd);
		return -1;
	}
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, text + got, (size_t)st.st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	if (got != (size_t)st.st_size) {
		lerr(ld, path, 0, "read error");
		free(text);
		return -1;
	}
	if (memchr(text, '\0', got) != NULL) {
		lerr(ld, path, 0, "holds a NUL byte: not a mapping file");
		free(text);
		return -1;
	}
	parse_text(ld, file, text, got, depth, 1);
	free(text);
	return 0;
}

static void
mf_free(struct mapping_file *mf)
{
	size_t i;

	if (mf == NULL)
		return;
	for (i = 0; i < mf->ntables; i++)
		free(mf->tables[i]->entries);
	free(mf->tables);
	while (mf->arena != NULL) {
		struct arena_block *b = mf->arena;

		mf->arena = b->next;
		free(b);
	}
	free(mf);
}

/*
 * Order each entry's character pairs rarest first (rarest among the
 * required literals of its table), so that the first pair checked is
 * likely the one that tells similar entries apart.
 */
static void
order_bigrams(struct mapping_table *t)
{
	unsigned *count;
	size_t i, j, k;

	count = calloc(BIGRAM_BITS, sizeof(*count));
	if (count == NULL)
		return;		/* order is only an optimization */
	for (i = 0; i < t->nentries; i++)
		for (j = 0; j < t->entries[i].nbigram; j++)
			count[t->entries[i].bigram[j]]++;
	for (i = 0; i < t->nentries; i++) {
		unsigned short *bg = t->entries[i].bigram;

		for (j = 1; j < t->entries[i].nbigram; j++) {
			unsigned short v = bg[j];

			for (k = j; k > 0 && count[bg[k - 1]] > count[v]; k--)
				bg[k] = bg[k - 1];
			bg[k] = v;
		}
	}
	free(count);
}

/* Resolve $|TABLE;...| names; return the loaded file or NULL. */
static struct mapping_file *
finish(struct loader *ld)
{
	size_t i;

	for (i = 0; i < ld->nrefs; i++) {
		struct tpl_tok *tok = ld->refs[i].tok;
		const struct mapping_table *t;

		t = find_table(ld->mf, tok->text, strlen(tok->text));
		if (t == NULL)
			lerr(ld, ld->refs[i].file, ld->refs[i].line, "no table "
			    "named %s (called as $|%s;...|)", tok->text,
			    tok->text);
		tok->aux = t;
	}
	free(ld->refs);
	ld->refs = NULL;
	if (ld->nerrors > 0 || ld->oom) {
		mf_free(ld->mf);
		return NULL;
	}
	for (i = 0; i < ld->mf->ntables; i++)
		order_bigrams(ld->mf->tables[i]);
	if (ld->errbuf != NULL && ld->errsize > 0)
		ld->errbuf[0] = '\0';
	return ld->mf;
}

static void
loader_init(struct loader *ld, char *errbuf, size_t errsize)
{
	memset(ld, 0, sizeof(*ld));
	ld->errbuf = errbuf;
	ld->errsize = errsize;
	if (errbuf != NULL && errsize > 0)
		errbuf[0] = '\0';
}

struct mapping_file *
mapping_load(const char *path, char *errbuf, size_t errsize)
{
	struct loader ld;

	loader_init(&ld, errbuf, errsize);
	ld.mf = calloc(1, sizeof(*ld.mf));
	if (ld.mf == NULL) {
		lerr(&ld, path, 0, "out of memory");
		return NULL;
	}
	load_file(&ld, path, 0, NULL, 0);
	return finish(&ld);
}

struct mapping_file *
mapping_load_buffer(const char *name, const char *text, size_t len,
		    char *errbuf, size_t errsize)
{
	struct loader ld;
	const char *file;

	loader_init(&ld, errbuf, errsize);
	ld.mf = calloc(1, sizeof(*ld.mf));
	if (ld.mf == NULL) {
		lerr(&ld, name, 0, "out of memory");
		return NULL;
	}
	if (len > MAPPING_MAX_FILE_SIZE) {
		lerr(&ld, name, 0, "larger than %u bytes "
		    "(MAPPING_MAX_FILE_SIZE)", MAPPING_MAX_FILE_SIZE);
		return finish(&ld);
	}
	if (memchr(text, '\0', len) != NULL) {
		lerr(&ld, name, 0, "holds a NUL byte: not a mapping file");
		return finish(&ld);
	}
	file = arena_strndup(ld.mf, name, strlen(name));
	if (file == NULL) {
		lerr(&ld, name, 0, "out of memory");
		return finish(&ld);
	}
	parse_text(&ld, file, text, len, 0, 0);
	return finish(&ld);
}

void
mapping_free(struct mapping_file **mfp)
{
	if (mfp == NULL)
		return;
	mf_free(*mfp);
	*mfp = NULL;
}

const struct mapping_table *
mapping_table(const struct mapping_file *mf, const char *name)
{
	if (mf == NULL || name == NULL)
		return NULL;
	return find_table(mf, name, strlen(name));
}

size_t
mapping_table_count(const struct mapping_file *mf)
{
	return mf != NULL ? mf->ntables : 0;
}

const struct mapping_table *
mapping_table_at(const struct mapping_file *mf, size_t index)
{
	return mf != NULL && index < mf->ntables ? mf->tables[index] : NULL;
}

const char *
mapping_table_name(const struct mapping_table *t)
{
	return t->name;
}

size_t
mapping_table_entries(const struct mapping_table *t)
{
	return t->nentries;
}

/* ---- matcher ---- */

struct match_state {
	const unsigned char *s;		/* folded input */
	size_t len;
	const struct pat_tok *pat;
	size_t npat;
	size_t *cap_start, *cap_len;
	unsigned long steps, limit;
	int overflow;
};

static int match_from(struct match_state *st, size_t ti, size_t pos);

static int
step(struct match_state *st)
{
	if (++st->steps > st->limit) {
		st->overflow = 1;
		return 0;
	}
	return 1;
}

static int
match_star(struct match_state *st, size_t ti, size_t pos)
{
	const struct pat_tok *t = &st->pat[ti], *next = NULL;
	size_t maxk = st->len - pos - t->minrest, k, lo, hi;
	int c0 = -1;

	if (ti + 1 < st->npat)
		next = &st->pat[ti + 1];
	if (t->set != NULL) {
		for (k = 0; k < maxk; k++)
			if (!in_set(t->set, st->s[pos + k]))
				break;
		maxk = k;
	}
	/* Followed by fixed-length tokens (or nothing): one length fits. */
	if (next == NULL || next->exact) {
		k = st->len - pos - (next != NULL ? next->minrest : 0);
		if (k > maxk)
			return 0;
		lo = hi = k;
	} else {
		lo = 0;
		hi = maxk;
	}
	if (next != NULL && next->kind == PT_LIT)
		c0 = (unsigned char)next->lit[0];
	for (k = 0; k <= hi - lo; k++) {
		size_t len = t->lazy ? lo + k : hi - k;

		if (!step(st))
			return 0;
		if (c0 >= 0 && st->s[pos + len] != c0)
			continue;
		if (t->save >= 0) {
			st->cap_start[t->save] = pos;
			st->cap_len[t->save] = len;
		}
		if (match_from(st, ti + 1, pos + len))
			return 1;
		if (st->overflow)
			return 0;
	}
	return 0;
}

/* Length of the IP address at pos that token t accepts, or 0. */
static size_t
ip_at(const struct pat_tok *t, const unsigned char *s, size_t len, size_t pos)
{
	int v6 = t->kind == PT_IP6;
	size_t n = 0, nb = v6 ? 16 : 4, i;
	unsigned char addr[16];
	char buf[48];

	while (pos + n < len && n < sizeof(buf) - 1) {
		unsigned char c = s[pos + n];

		if (!(is_digit(c) || c == '.' ||
		    (v6 && (c == ':' || (c >= 'a' && c <= 'f')))))
			break;
		n++;
	}
	if (n == 0 || n == sizeof(buf) - 1)
		return 0;
	memcpy(buf, s + pos, n);
	buf[n] = '\0';
	if (inet_pton(v6 ? AF_INET6 : AF_INET, buf, addr) != 1)
		return 0;
	for (i = 0; i < nb; i++)
		if ((addr[i] & t->ip[nb + i]) != t->ip[i])
			return 0;
	return n;
}

static int
match_from(struct match_state *st, size_t ti, size_t pos)
{
	const struct pat_tok *t;

	if (!step(st))
		return 0;
	if (ti == st->npat)
		return pos == st->len;
	t = &st->pat[ti];
	if (st->len - pos < t->minrest)
		return 0;
	if (t->exact && st->len - pos != t->minrest)
		return 0;
	switch (t->kind) {
	case PT_LIT:
		if (memcmp(st->s + pos, t->lit, t->len) == 0)
			return match_from(st, ti + 1, pos + t->len);
		return 0;
	case PT_ONE:
		if (!in_set(t->set, st->s[pos]))
			return 0;
		if (t->save >= 0) {
			st->cap_start[t->save] = pos;
			st->cap_len[t->save] = 1;
		}
		return match_from(st, ti + 1, pos + 1);
	case PT_STAR:
		return match_star(st, ti, pos);
	case PT_BACKREF: {
		size_t cs = st->cap_start[t->ref], cl = st->cap_len[t->ref];

		if (cl <= st->len - pos &&
		    memcmp(st->s + cs, st->s + pos, cl) == 0)
			return match_from(st, ti + 1, pos + cl);
		return 0;
	}
	case PT_IP4:
	case PT_IP6: {
		size_t n = ip_at(t, st->s, st->len, pos);

		if (n == 0)
			return 0;
		if (t->save >= 0) {
			st->cap_start[t->save] = pos;
			st->cap_len[t->save] = n;
		}
		return match_from(st, ti + 1, pos + n);
	}
	}
	return 0;
}

#define REACH(ti, pos)	((reach[((ti) * w + (pos)) >> 3] >> \
			  (((ti) * w + (pos)) & 7)) & 1)

/*
 * The table method, for patterns without back matches: reach(ti, pos) says
 * whether tokens ti.. can match s[pos..len).  Then walk forward taking, at
 * each wildcard, the first length (in the token's greedy or lazy order)
 * from which the rest can match: the same choice the backtracking order
 * makes, without the backtracking.
 */
static int
match_reach(const struct map_entry *e, const unsigned char *s, size_t len,
	    size_t *cap_start, size_t *cap_len, unsigned char *reach)
{
	const struct pat_tok *pat = e->pat;
	size_t npat = e->npat, w = len + 1, ti, pos, bit;

	memset(reach, 0, ((npat + 1) * w + 7) / 8);
	bit = npat * w + len;
	reach[bit >> 3] |= (unsigned char)(1u << (bit & 7));
	for (ti = npat; ti-- > 0;) {
		const struct pat_tok *t = &pat[ti];

		for (pos = len + 1; pos-- > 0;) {
			int ok = 0;

			switch (t->kind) {
			case PT_LIT:
				ok = len - pos >= t->len &&
				    memcmp(s + pos, t->lit, t->len) == 0 &&
				    REACH(ti + 1, pos + t->len);
				break;
			case PT_ONE:
				ok = pos < len && in_set(t->set, s[pos]) &&
				    REACH(ti + 1, pos + 1);
				break;
			case PT_STAR:
				ok = REACH(ti + 1, pos) || (pos < len &&
				    in_set(t->set, s[pos]) && REACH(ti, pos + 1));
				break;
			case PT_IP4:
			case PT_IP6: {
				size_t n = ip_at(t, s, len, pos);

				ok = n > 0 && REACH(ti + 1, pos + n);
				break;
			}
			default:
				return -1;	/* back matches: not here */
			}
			if (ok) {
				bit = ti * w + pos;
				reach[bit >> 3] |= (unsigned char)(1u << (bit & 7));
			}
		}
	}
	if (!REACH(0, 0))
		return 0;
	for (ti = 0, pos = 0; ti < npat; ti++) {
		const struct pat_tok *t = &pat[ti];
		size_t n = 0, maxk, k;

		switch (t->kind) {
		case PT_LIT:
			n = t->len;
			break;
		case PT_ONE:
			n = 1;
			break;
		case PT_STAR:
			for (maxk = 0; pos + maxk < len &&
			    in_set(t->set, s[pos + maxk]); maxk++)
				;
			for (k = 0; k <= maxk; k++) {
				n = t->lazy ? k : maxk - k;
				if (REACH(ti + 1, pos + n))
					break;
			}
			break;
		default:
			n = ip_at(t, s, len, pos);
			break;
		}
		if (t->save >= 0) {
			cap_start[t->save] = pos;
			cap_len[t->save] = n;
		}
		pos += n;
	}
	return 1;
}

#undef REACH

/* The input's character pairs, hashed, for the required-literal check. */
struct bigrams {
	int valid;
	unsigned char bits[BIGRAM_BITS / 8];
};

static void
bigrams_build(struct bigrams *bg, const unsigned char *s, size_t len)
{
	size_t i;

	memset(bg->bits, 0, sizeof(bg->bits));
	for (i = 0; i + 1 < len; i++) {
		unsigned h = bigram_hash(s[i], s[i + 1]);

		bg->bits[h >> 3] |= (unsigned char)(1u << (h & 7));
	}
	bg->valid = 1;
}

/* Quick rejects, then the matcher: 1 match, 0 no match, -1 too many
 * steps. */
static int
entry_match(const struct map_entry *e, const unsigned char *s, size_t len,
	    struct bigrams *bg, size_t *cap_start, size_t *cap_len,
	    unsigned char *reach)
{
	struct match_state st;
	int can_reach;
	size_t j;

	if (len < e->minlen)
		return 0;
	if (e->suflen > 0 &&
	    memcmp(s + len - e->suflen, e->suffix, e->suflen) != 0)
		return 0;
	if (e->reqlen > 1) {
		if (!bg->valid)
			bigrams_build(bg, s, len);
		for (j = 0; j < e->nbigram; j++) {
			unsigned h = e->bigram[j];

			if (!((bg->bits[h >> 3] >> (h & 7)) & 1))
				return 0;
		}
		if (memmem(s, len, e->required, e->reqlen) == NULL)
			return 0;
	}
	can_reach = !e->has_backref &&
	    ((size_t)e->npat + 1) * (len + 1) <= (size_t)REACH_BYTES * 8;
	memset(&st, 0, sizeof(st));
	st.s = s;
	st.len = len;
	st.pat = e->pat;
	st.npat = e->npat;
	st.cap_start = cap_start;
	st.cap_len = cap_len;
	st.limit = can_reach ? QUICK_STEPS : MAPPING_MAX_STEPS;
	if (match_from(&st, 0, 0))
		return 1;
	if (!st.overflow)
		return 0;
	if (can_reach)
		return match_reach(e, s, len, cap_start, cap_len, reach);
	return -1;
}

/* ---- evaluation ---- */

struct eval {
	const struct mapping_ctx *ctx;
	unsigned long visits;
	unsigned char reach[REACH_BYTES];
	char *detail;			/* result->detail */
	size_t detailsize;
	const char *err_file;
	int err_line;
};

struct outbuf {
	char *buf;
	size_t len, size;
	char casemode;			/* 'o' as is, 'l' lower, 'u' upper */
	int overflow;
};

static void
out_put(struct outbuf *o, const char *s, size_t n)
{
	size_t i;

	if (o->overflow)
		return;
	if (n >= o->size - o->len) {
		o->overflow = 1;
		return;
	}
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (o->casemode == 'l')
			c = fold(c);
		else if (o->casemode == 'u' && c >= 'a' && c <= 'z')
			c -= 'a' - 'A';
		o->buf[o->len++] = (char)c;
	}
	o->buf[o->len] = '\0';
}

struct tres {
	char *out;			/* MAPPING_OUT_MAX bytes */
	size_t outlen;
	unsigned flags;
	int matched, failed;
	const char *file;
	int line;
};

static int eval_table(struct eval *ev, const struct mapping_table *t,
		      const char *input, size_t inlen, int depth,
		      struct tres *r);

static int
input_flag(const struct mapping_ctx *ctx, char x)
{
	if (ctx == NULL)
		return 0;
	switch (x) {
	case 'A':
		return ctx->sasl_used != 0;
	case 'T':
		return ctx->tls_used != 0;
	case '|':
		return ctx->url_had_bar != 0;
	}
	return 0;
}

/*
 * Expand toks into o.  Returns 0 (done), 1 (the entry failed: *why says
 * so), -1 (a bound: ev->detail says which).  *flags and *control collect
 * $A..$Z and the last of $C $E $L $R met before any failure.
 */
static int
expand(struct eval *ev, const struct tpl_tok *toks, size_t ntoks,
       const char *input, const size_t *cap_start, const size_t *cap_len,
       int depth, struct outbuf *o, unsigned *flags, char *control,
       char *why, size_t whysize)
{
	size_t i;

	for (i = 0; i < ntoks; i++) {
		const struct tpl_tok *t = &toks[i];

		switch (t->kind) {
		case TT_TEXT:
			out_put(o, t->text, t->len);
			break;
		case TT_SUBST:
			out_put(o, input + cap_start[t->n], cap_len[t->n]);
			break;
		case TT_CASE:
			o->casemode = t->c;
			break;
		case TT_CONTROL:
			*control = t->c;
			break;
		case TT_FLAG:
			*flags |= MAPPING_FLAG(t->c);
			break;
		case TT_TEST:
			if (input_flag(ev->ctx, t->c) != t->set) {
				snprintf(why, whysize, "$%c%c: %s %s",
				    t->set ? ':' : ';', t->c,
				    t->c == 'A' ? "SASL" : t->c == 'T' ?
				    "TLS" : "'|' in the URL",
				    t->set ? "not set" : "set");
				return 1;
			}
			break;
		case TT_AUX: {
			char arg[MAPPING_OUT_MAX], sub[MAPPING_OUT_MAX];
			struct outbuf ao = { arg, 0, sizeof(arg), 'o', 0 };
			struct tres r;
			unsigned aflags = 0;
			char actl = 'E';
			int rc;

			/* A call nested in an argument counts as one level
			 * too: the stack used is bounded by the depth. */
			if (depth + 1 > MAPPING_MAX_DEPTH) {
				snprintf(ev->detail, ev->detailsize, "$|%s;...| "
				    "nested deeper than MAPPING_MAX_DEPTH (%d)",
				    t->text, MAPPING_MAX_DEPTH);
				return -1;
			}
			arg[0] = '\0';
			rc = expand(ev, t->arg, t->len, input, cap_start,
			    cap_len, depth + 1, &ao, &aflags, &actl, why,
			    whysize);
			if (rc != 0)
				return rc;
			if (ao.overflow) {
				snprintf(ev->detail, ev->detailsize, "argument "
				    "of $|%s;...| longer than MAPPING_OUT_MAX",
				    t->text);
				return -1;
			}
			memset(&r, 0, sizeof(r));
			r.out = sub;
			if (eval_table(ev, t->aux, arg, ao.len, depth + 1,
			    &r) < 0)
				return -1;
			if (!(r.flags & MAPPING_FLAG_Y)) {
				snprintf(why, whysize, "table %s did not set $Y "
				    "for \"%.60s\"", t->aux->name, arg);
				return 1;
			}
			out_put(o, r.out, r.outlen);
			break;
		}
		}
	}
	return 0;
}

static void
fold_copy(unsigned char *dst, const char *src, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		dst[i] = fold((unsigned char)src[i]);
}

static int
eval_table(struct eval *ev, const struct mapping_table *t, const char *input,
	   size_t inlen, int depth, struct tres *r)
{
	char cur[MAPPING_OUT_MAX], next[MAPPING_OUT_MAX];
	unsigned char folded[MAPPING_OUT_MAX];
	size_t cap_start[MAPPING_MAX_WILDCARDS], cap_len[MAPPING_MAX_WILDCARDS];
	size_t curlen = inlen, i = 0, passlen = inlen;
	struct bigrams bg;
	unsigned flags = 0;
	int extra_pass = 0, restarts = 0, done = 0;

	if (inlen >= sizeof(cur)) {
		snprintf(ev->detail, ev->detailsize, "input of table %s longer "
		    "than MAPPING_MAX_PROBE", t->name);
		return -1;
	}
	memcpy(cur, input, inlen);
	cur[inlen] = '\0';
	fold_copy(folded, cur, curlen);
	bg.valid = 0;
	r->matched = r->failed = 0;
	r->file = NULL;
	r->line = 0;
	while (!done) {
		const struct map_entry *e;
		struct outbuf o = { next, 0, sizeof(next), 'o', 0 };
		unsigned eflags = 0;
		char control = 'E', why[160];
		int rc;

		if (i >= t->nentries) {
			if (!extra_pass)
				break;
			/* $L: one more pass from the top */
			extra_pass = 0;
			restarts = curlen >= passlen ? restarts + 1 : 0;
			if (restarts > MAPPING_MAX_RESTARTS)
				break;
			passlen = curlen;
			i = 0;
			continue;
		}
		e = &t->entries[i];
		if (++ev->visits > MAPPING_MAX_VISITS) {
			snprintf(ev->detail, ev->detailsize, "more than %d "
			    "entries tried (MAPPING_MAX_VISITS)",
			    MAPPING_MAX_VISITS);
			ev->err_file = e->file;
			ev->err_line = e->line;
			return -1;
		}
		rc = entry_match(e, folded, curlen, &bg, cap_start, cap_len,
		    ev->reach);
		if (rc < 0) {
			snprintf(ev->detail, ev->detailsize, "pattern needs more "
			    "than %d steps for this input (MAPPING_MAX_STEPS)",
			    MAPPING_MAX_STEPS);
			ev->err_file = e->file;
			ev->err_line = e->line;
			return -1;
		}
		if (rc == 0) {
			i++;
			continue;
		}
		r->matched = 1;
		r->file = e->file;
		r->line = e->line;
		next[0] = '\0';
		why[0] = '\0';
		rc = expand(ev, e->tpl, e->ntpl, cur, cap_start, cap_len, depth,
		    &o, &eflags, &control, why, sizeof(why));
		if (rc < 0) {
			if (ev->err_file == NULL) {
				ev->err_file = e->file;
				ev->err_line = e->line;
			}
			return -1;
		}
		if (rc == 0 && o.overflow) {
			snprintf(ev->detail, ev->detailsize, "output longer than "
			    "MAPPING_OUT_MAX (%d)", MAPPING_OUT_MAX - 1);
			ev->err_file = e->file;
			ev->err_line = e->line;
			return -1;
		}
		if (ev->ctx != NULL && ev->ctx->trace != NULL) {
			char what[200];

			if (rc == 0)
				snprintf(what, sizeof(what), "ok, $%c", control);
			else
				snprintf(what, sizeof(what), "failed (%s)%s", why,
				    control == 'E' ? "" : ", going on");
			ev->ctx->trace(ev->ctx->trace_arg, depth, t->name,
			    e->file, e->line, cur, rc == 0 ? next : cur,
			    rc == 0 ? eflags : 0, what);
		}
		if (rc == 1) {
			/* The entry failed: the input stands, its flags do
			 * not count; a control to the left of the failure
			 * still applies. */
			r->failed = 1;
			snprintf(ev->detail, ev->detailsize, "%s", why);
		} else {
			r->failed = 0;
			flags |= eflags;
			memcpy(cur, next, o.len + 1);
			curlen = o.len;
			fold_copy(folded, cur, curlen);
			bg.valid = 0;
		}
		switch (control) {
		case 'C':
			extra_pass = 0;
			i++;
			break;
		case 'L':
			extra_pass = 1;
			i++;
			break;
		case 'R':
			extra_pass = 0;
			restarts = curlen >= passlen ? restarts + 1 : 0;
			if (restarts > MAPPING_MAX_RESTARTS) {
				done = 1;
				break;
			}
			passlen = curlen;
			i = 0;
			break;
		default:
			done = 1;
			break;
		}
	}
	memcpy(r->out, cur, curlen + 1);
	r->outlen = curlen;
	r->flags = flags;
	return 0;
}

int
mapping_eval(const struct mapping_file *mf, const struct mapping_table *t,
	     const char *probe, const struct mapping_ctx *ctx,
	     struct mapping_result *result)
{
	static const char too_long[] = "probe longer than MAPPING_MAX_PROBE";
	struct eval *ev, evs;
	struct tres r;
	size_t len;

	(void)mf;
	ev = &evs;
	result->out[0] = '\0';
	result->flags = 0;
	result->matched = result->failed = 0;
	result->table = t != NULL ? t->name : NULL;
	result->file = NULL;
	result->line = 0;
	result->detail[0] = '\0';
	if (t == NULL || probe == NULL) {
		snprintf(result->detail, sizeof(result->detail), "no table");
		return -1;
	}
	len = strnlen(probe, MAPPING_MAX_PROBE);
	if (len >= MAPPING_MAX_PROBE) {
		snprintf(result->detail, sizeof(result->detail), "%s",
		    too_long);
		return -1;
	}
	ev->ctx = ctx;
	ev->visits = 0;
	ev->detail = result->detail;
	ev->detailsize = sizeof(result->detail);
	ev->err_file = NULL;
	ev->err_line = 0;
	memset(&r, 0, sizeof(r));
	r.out = result->out;
	if (eval_table(ev, t, probe, len, 0, &r) < 0) {
		result->out[0] = '\0';
		result->flags = 0;
		result->failed = 1;
		result->file = ev->err_file;
		result->line = ev->err_line;
		return -1;
	}
	result->flags = r.flags;
	result->matched = r.matched;
	result->failed = r.failed;
	result->file = r.file;
	result->line = r.line;
	if (!r.failed)
		result->detail[0] = '\0';
	return 0;
}

/* ---- helpers ---- */

int
mapping_burl_probe(const struct mapping_probe *p, char *buf, size_t size,
		   int *url_had_bar_r)
{
	size_t len = 0, i;
	int n, bar = 0;

	if (size == 0)
		return -1;
	if (p->server_addr != NULL)
		n = snprintf(buf, size, "TCP|%s|%u|%s|%u|%s|%s|",
		    p->server_addr, p->server_port,
		    p->client_addr != NULL ? p->client_addr : "",
		    p->client_port, p->channel != NULL ? p->channel : "",
		    p->authid != NULL ? p->authid : "");
	else
		n = snprintf(buf, size, "|%s|%s|",
		    p->channel != NULL ? p->channel : "",
		    p->authid != NULL ? p->authid : "");
	if (n < 0 || (size_t)n >= size) {
		buf[0] = '\0';
		return -1;
	}
	len = (size_t)n;
	if (p->url != NULL) {
		size_t ul = strlen(p->url);

		if (ul >= size - len) {
			buf[0] = '\0';
			return -1;
		}
		for (i = 0; i < ul; i++) {
			char c = p->url[i];

			if (c == '|') {
				bar = 1;
				if (p->paranoia != '\0')
					c = p->paranoia;
			}
			buf[len++] = c;
		}
		buf[len] = '\0';
	}
	if (url_had_bar_r != NULL)
		*url_had_bar_r = bar;
	return (int)len;
}

const char *
mapping_flags_string(unsigned flags, char *buf, size_t size)
{
	size_t n = 0;
	int c;

	if (size == 0)
		return buf;
	for (c = 'A'; c <= 'Z'; c++)
		if ((flags & MAPPING_FLAG(c)) && n + 1 < size)
			buf[n++] = (char)c;
	buf[n] = '\0';
	return buf;
}
