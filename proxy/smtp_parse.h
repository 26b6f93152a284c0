/*
 * smtp_parse.h - the SMTP command grammar (RFC 5321 section 4.1, RFC 3030,
 * RFC 2033), and nothing else: no sockets, no session state.
 *
 * All functions work on one command line the caller has already cut out of
 * its input (without CRLF, NUL-terminated, at most max_line_length bytes) and
 * may write NULs into it to split it; the results point into that line, so
 * they live as long as the line does.
 */
#ifndef MSA_SMTP_PARSE_H
#define MSA_SMTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

enum smtp_verb {
	V_UNKNOWN = 0,
	V_EHLO, V_HELO, V_LHLO, V_MAIL, V_RCPT, V_DATA, V_BDAT, V_RSET,
	V_NOOP, V_QUIT, V_HELP, V_VRFY, V_EXPN, V_STARTTLS, V_AUTH, V_BURL,
	V_ETRN,
	V_VERB_COUNT
};

struct smtp_command {
	enum smtp_verb verb;
	char *args;		/* after the verb and its separating space; "" if none */
};

/* Split a command line into verb and arguments.  Never fails: an unknown
 * verb is V_UNKNOWN.  Returns -1 only if the line contains a NUL or a bare CR
 * (which RFC 5321 2.3.8 forbids in commands). */
int smtp_parse_command(char *line, size_t len, struct smtp_command *cmd_r);

/* The verb's name as sent on the wire ("MAIL"). */
const char *smtp_verb_name(enum smtp_verb verb);

#define SMTP_MAX_PARAMS 16
/* RFC 5321 4.5.3.1.3: a path is at most 256 octets including <>. */
#define SMTP_PATH_MAX 256

struct smtp_param {
	char *key;		/* as sent; compare case-blind */
	char *value;		/* NULL if the parameter has no "=value" */
};

struct smtp_path_args {
	char *path;		/* mailbox without <>; "" for the null path <> */
	struct smtp_param params[SMTP_MAX_PARAMS];
	size_t param_count;
};

enum smtp_parse_error {
	SMTP_PARSE_OK = 0,
	SMTP_PARSE_SYNTAX,	/* no "FROM:"/"TO:", junk: 501 5.5.4 */
	SMTP_PARSE_BAD_PATH,	/* the address itself is malformed: 501 5.1.x */
	SMTP_PARSE_PARAMS,	/* malformed or too many parameters: 501 5.5.4 */
};

/*
 * Parse the arguments of MAIL ("FROM:<path> params") or RCPT
 * ("TO:<path> params").  keyword is "FROM:" or "TO:".  For MAIL the null
 * path <> is allowed; for RCPT "<Postmaster>" without a domain is allowed
 * (RFC 5321 4.1.1.3).  utf8 allows UTF-8 in the mailbox (RFC 6531, when the
 * client said SMTPUTF8).  One space after the colon is tolerated, as many
 * clients send it.
 */
enum smtp_parse_error smtp_parse_path_args(char *args, const char *keyword,
					   int is_mail, int utf8,
					   struct smtp_path_args *out);

/* Mailbox syntax (RFC 5321 4.1.2 Mailbox), optionally with UTF-8 (RFC 6531).
 * 1 if valid. */
int smtp_mailbox_valid(const char *mbox, size_t len, int utf8);

/* RFC 3461 xtext.  1 if valid. */
int smtp_xtext_valid(const char *s);

/* "BDAT <size> [LAST]" (RFC 3030).  0 on success, -1 on syntax error. */
int smtp_parse_bdat(const char *args, uint64_t *size_r, int *last_r);

/*
 * The ETRN argument (RFC 1985 5 and 5.3), strictly:
 *   node     a fully qualified domain name: two or more labels (5: "must be
 *            a fully qualified domain name"; its example answers
 *            "ETRN localname" with 501), e.g. "mail.example.org";
 *   @domain  the domain and every name below it, e.g. "@example.org"; one
 *            label ("@com") is syntactically valid: refusing it is policy's
 *            job (RFC 1985 8);
 *   #queue   a queue name of the receiving server: 1..SMTP_ETRN_QUEUE_MAX
 *            of A-Z a-z 0-9 "-" "_" ".", starting with a letter or digit.
 * Domains follow RFC 5321 4.1.2 Domain (sub-domain = Let-dig [Ldh-str]),
 * ASCII only (no SMTPUTF8 for ETRN, no address literals), labels of at most
 * 63 octets (RFC 1035 2.3.4), at most 255 octets in all (RFC 5321
 * 4.5.3.1.2), no trailing dot, and a last label that is not all digits (an
 * IP address is not a node name).  Nothing else is accepted: no spaces, no
 * parameters.  The queue alphabet is a subset of RFC 5322 atext chosen so
 * that nothing a shell or a queue runner's command line could interpret
 * reaches the backend (Exim runs a command with the ETRN argument).
 */
#define SMTP_ETRN_QUEUE_MAX 64
/* Longest accepted argument: the option character and a 255-octet domain. */
#define SMTP_ETRN_ARG_MAX 256

enum smtp_etrn_kind {
	SMTP_ETRN_NODE,		/* "node.example" */
	SMTP_ETRN_DOMAIN,	/* "@example.org" */
	SMTP_ETRN_QUEUE,	/* "#queue" */
};

struct smtp_etrn {
	enum smtp_etrn_kind kind;
	const char *name;	/* after the option character; into args */
	size_t name_len;
	unsigned labels;	/* domain labels; 0 for a queue */
};

enum smtp_etrn_result {
	SMTP_ETRN_OK = 0,
	SMTP_ETRN_EMPTY,	/* no argument: 500 (RFC 1985 5.1 "Syntax Error") */
	SMTP_ETRN_BAD,		/* malformed: 501 ("Syntax Error in Parameters") */
};

/* Parse ETRN's argument (read only).  out is filled on SMTP_ETRN_OK. */
enum smtp_etrn_result smtp_parse_etrn(const char *args, struct smtp_etrn *out);

/* EHLO/HELO/LHLO argument: a domain or an address literal; we accept any
 * printable ASCII without spaces, as Postfix does, and only check the form
 * enough to keep the Received header clean.  1 if acceptable. */
int smtp_helo_valid(const char *arg);

#endif
