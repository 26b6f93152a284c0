/*
 * fuzz_smtp_parse.c - libFuzzer target for the SMTP command grammar
 * (proxy/smtp_parse.c).
 *
 *   tests/fuzz/build.sh && tests/fuzz/run.sh 60
 * or by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
 *       -Iproxy proxy/smtp_parse.c tests/fuzz/fuzz_smtp_parse.c \
 *       -o fuzz_smtp_parse
 *   ./fuzz_smtp_parse -dict=tests/fuzz/smtp.dict tests/fuzz/corpus/smtp_parse
 *
 * The input is one command line as the session would cut it out (without
 * CRLF).  It goes through smtp_parse_command(), and its arguments through
 * smtp_parse_path_args() for MAIL ("FROM:") and RCPT ("TO:") with and
 * without SMTPUTF8, smtp_parse_bdat(), smtp_helo_valid() and
 * smtp_xtext_valid().  Beyond memory safety it checks what the callers rely
 * on:
 *   - a line with NUL or CR is refused; otherwise the verb is the one whose
 *     name starts the line, and args point into the line;
 *   - an accepted path lies inside the buffer, fits SMTP_PATH_MAX with its
 *     <>, has no control characters, and is a valid mailbox (or "" for MAIL,
 *     or Postmaster for RCPT); at most SMTP_MAX_PARAMS parameters, each with
 *     a well-formed keyword and a non-empty value or none;
 *   - an accepted BDAT size is exactly the decimal digits given;
 *   - an accepted ETRN argument is at most SMTP_ETRN_ARG_MAX octets of
 *     letters, digits, '-', '.' (and '_' in a queue) after its option
 *     character, its name points into it, a node has two labels or more,
 *     and "" is the only empty argument;
 *   - parsing is deterministic: the same input gives the same answer.
 */

#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define LINE_MAX_FUZZ	4096

static int
inside(const char *p, const char *buf, size_t size)
{
	return p >= buf && p <= buf + size;
}

static void
check_path_args(const char *args, int is_mail, int utf8)
{
	char buf[LINE_MAX_FUZZ + 1], again[LINE_MAX_FUZZ + 1];
	size_t len = strlen(args), i, plen;
	struct smtp_path_args out, out2;
	enum smtp_parse_error err, err2;
	const char *kw = is_mail ? "FROM:" : "TO:";

	memcpy(buf, args, len + 1);
	memcpy(again, args, len + 1);
	err = smtp_parse_path_args(buf, kw, is_mail, utf8, &out);
	err2 = smtp_parse_path_args(again, kw, is_mail, utf8, &out2);
	if (err != err2)
		abort();
	if (err != SMTP_PARSE_OK) {
		if (err != SMTP_PARSE_SYNTAX && err != SMTP_PARSE_BAD_PATH &&
		    err != SMTP_PARSE_PARAMS)
			abort();
		return;
	}
	/* the keyword was really there */
	if (strncasecmp(args, kw, strlen(kw)) != 0)
		abort();
	if (out.path == NULL || !inside(out.path, buf, len))
		abort();
	plen = strlen(out.path);
	if (plen + 2 > SMTP_PATH_MAX)
		abort();
	if (strcmp(out.path, out2.path) != 0 ||
	    out.param_count != out2.param_count)
		abort();
	for (i = 0; i < plen; i++) {
		unsigned char c = (unsigned char)out.path[i];

		if (c < 32 || c == 127 || (c > 127 && !utf8))
			abort();
	}
	if (plen == 0) {
		if (!is_mail)
			abort();
	} else if (!is_mail && strcasecmp(out.path, "postmaster") == 0) {
		/* RFC 5321 4.1.1.3 */
	} else if (!smtp_mailbox_valid(out.path, plen, utf8)) {
		abort();
	}
	if (out.param_count > SMTP_MAX_PARAMS)
		abort();
	for (i = 0; i < out.param_count; i++) {
		const char *k = out.params[i].key, *v = out.params[i].value, *c;

		if (k == NULL || !inside(k, buf, len) ||
		    !isalnum((unsigned char)k[0]))
			abort();
		for (c = k; *c; c++)
			if (!isalnum((unsigned char)*c) && *c != '-')
				abort();
		if (v != NULL) {
			if (!inside(v, buf, len) || *v == '\0')
				abort();
			for (c = v; *c; c++)
				if ((unsigned char)*c <= 32 || *c == '=' ||
				    (unsigned char)*c == 127 ||
				    ((unsigned char)*c > 127 && !utf8))
					abort();
		}
	}
	/* an SMTPUTF8 parse accepts whatever the plain one does */
	if (!utf8) {
		memcpy(buf, args, len + 1);
		if (smtp_parse_path_args(buf, kw, is_mail, 1, &out) !=
		    SMTP_PARSE_OK)
			abort();
	}
}

static void
check_bdat(const char *args)
{
	uint64_t size = 0, want = 0;
	int last = -1;
	const char *p;

	if (smtp_parse_bdat(args, &size, &last) != 0)
		return;
	if (last != 0 && last != 1)
		abort();
	for (p = args; *p >= '0' && *p <= '9'; p++)
		want = want * 10 + (uint64_t)(*p - '0');
	if (p == args || size != want)
		abort();
	if (last ? strcasecmp(p, " LAST") != 0 : *p != '\0')
		abort();
}

static void
check_etrn(const char *args)
{
	struct smtp_etrn e, e2;
	enum smtp_etrn_result rc = smtp_parse_etrn(args, &e);
	size_t len = strlen(args), i;

	if (rc != smtp_parse_etrn(args, &e2))
		abort();
	if (rc == SMTP_ETRN_EMPTY) {
		if (len != 0)
			abort();
		return;
	}
	if (rc != SMTP_ETRN_OK) {
		if (rc != SMTP_ETRN_BAD || len == 0)
			abort();
		return;
	}
	if (len > SMTP_ETRN_ARG_MAX || e.name_len == 0 ||
	    e.name + e.name_len != args + len ||
	    e.name != args + (e.kind == SMTP_ETRN_NODE ? 0 : 1))
		abort();
	if ((e.kind == SMTP_ETRN_NODE) != (args[0] != '@' && args[0] != '#'))
		abort();
	if (e.kind == SMTP_ETRN_NODE && e.labels < 2)
		abort();
	if (e.kind == SMTP_ETRN_QUEUE ? e.labels != 0 : e.labels == 0)
		abort();
	for (i = 0; i < e.name_len; i++) {
		unsigned char c = (unsigned char)e.name[i];

		if (!isalnum(c) && c != '-' && c != '.' &&
		    !(c == '_' && e.kind == SMTP_ETRN_QUEUE))
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char line[LINE_MAX_FUZZ + 1];
	struct smtp_command cmd;
	const char *name;
	size_t i;
	int rc, has_bad = 0;

	if (size > LINE_MAX_FUZZ)
		return 0;
	memcpy(line, data, size);
	line[size] = '\0';
	for (i = 0; i < size; i++)
		if (line[i] == '\0' || line[i] == '\r')
			has_bad = 1;

	rc = smtp_parse_command(line, size, &cmd);
	if (rc != 0 && rc != -1)
		abort();
	if ((rc == -1) != has_bad)
		abort();
	if (rc == 0) {
		if (cmd.verb >= V_VERB_COUNT)
			abort();
		if (!inside(cmd.args, line, size))
			abort();
		if (cmd.verb != V_UNKNOWN) {
			name = smtp_verb_name(cmd.verb);
			if (strncasecmp(line, name, strlen(name)) != 0 ||
			    (line[strlen(name)] != ' ' &&
			    line[strlen(name)] != '\0'))
				abort();
		}
		if (cmd.args != line + size && cmd.args[-1] != ' ')
			abort();
	}

	/* The arguments as the command handlers see them; also the raw
	 * line, so that the grammar is fuzzed without needing a verb. */
	{
		const char *args = rc == 0 ? cmd.args : line;

		check_path_args(args, 1, 0);
		check_path_args(args, 1, 1);
		check_path_args(args, 0, 0);
		check_path_args(args, 0, 1);
		check_bdat(args);
		check_etrn(args);
		(void)smtp_helo_valid(args);
		(void)smtp_xtext_valid(args);
		(void)smtp_mailbox_valid(args, strlen(args), 0);
		(void)smtp_mailbox_valid(args, strlen(args), 1);
		if (rc == 0 && cmd.args != line) {
			check_path_args(line, 1, 0);
			check_path_args(line, 0, 1);
			check_bdat(line);
		}
	}
	return 0;
}
