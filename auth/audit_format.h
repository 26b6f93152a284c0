/*
 * audit_format.h - the audit trail's file format: the hash chain, the line
 * layout, timestamps, the HMAC key file, and the messages between workers
 * and the audit writer.  Pure functions, shared by the writer
 * (audit_writer.c), the workers (audit.c), msaproxy-audit(8) and the unit
 * tests.  docs/AUDIT.md is the reference for what is written.
 *
 * One record is one line of UTF-8 JSON:
 *
 *   {"seq":N,<members>,"prev":"<64 hex>","hash":"<64 hex>"}\n
 *
 * <members> are the record's own ("ts", "type", "host", "session", ...),
 * exactly as the worker serialized them.  "seq" counts records along the
 * chain, from 1, across rotated files.  "prev" is the "hash" of the record
 * before (64 zeros for the first record of a chain).  "hash" is
 *
 *   SHA-256(prev_raw || bytes)          without a key
 *   HMAC-SHA256(key, prev_raw || bytes) with audit.hmac_key_file
 *
 * where prev_raw is the 32 bytes "prev" spells in hex, and bytes are the
 * line from its first byte '{' up to and including the closing quote of
 * the "prev" value: everything but ',"hash":"...."}' and the newline.  The
 * hash covers the bytes as written, so no JSON canonicalization is needed
 * to verify a record, and any edit of any byte shows.
 */
#ifndef MSA_AUDIT_FORMAT_H
#define MSA_AUDIT_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define AUDIT_HASH_LEN 32
#define AUDIT_HEX_LEN 64
/* Largest record (the JSON object a worker sends, without seq, prev and
 * hash).  Records are built to stay below it: a transaction with many
 * recipients is split (docs/AUDIT.md, "tx_rcpts").  Fits a unix
 * SOCK_SEQPACKET message with the default socket buffer sizes. */
#define AUDIT_RECORD_MAX (60 * 1024)
/* What audit_chain_format() adds to a record. */
#define AUDIT_LINE_OVERHEAD 200
/* Shortest HMAC key accepted (octets): 256 bits of text. */
#define AUDIT_KEY_MIN 32
#define AUDIT_KEY_MAX 1024

/* The chain as the writer carries it. */
struct audit_chain {
	uint64_t seq;				/* of the last record; 0: none */
	unsigned char head[AUDIT_HASH_LEN];	/* its hash; zeros at the start */
	const unsigned char *key;		/* HMAC key, or NULL */
	size_t keylen;
};

/* hash = H(prev || bytes[0..len)), H as above. */
void audit_chain_digest(const unsigned char *key, size_t keylen,
			const unsigned char prev[AUDIT_HASH_LEN],
			const char *bytes, size_t len,
			unsigned char out[AUDIT_HASH_LEN]);

/*
 * The next line of the chain from a record: obj[0..objlen) must be a JSON
 * object with at least one member ("{...}", no newline; the caller has
 * checked it parses).  Writes the line with its newline to out (outsize >=
 * objlen + AUDIT_LINE_OVERHEAD) and advances the chain.  Returns the
 * line's length, or -1 (chain unchanged) if obj does not look like an
 * object or does not fit.
 */
ssize_t audit_chain_format(struct audit_chain *c, const char *obj,
			   size_t objlen, char *out, size_t outsize);

enum audit_line_status {
	AUDIT_LINE_OK,
	AUDIT_LINE_MALFORMED,	/* not {"seq":N, ... ,"prev":"hex","hash":"hex"} */
	AUDIT_LINE_BAD_HASH,	/* its bytes do not give its hash */
};

/*
 * Check one line (without its newline): its layout, and its hash against
 * its own bytes and prev (with key when keylen > 0).  *seq_r, prev_r and
 * hash_r are filled whenever the layout is right (also for BAD_HASH), so
 * the caller can check the links between lines.
 */
enum audit_line_status audit_chain_check(const char *line, size_t len,
					 const unsigned char *key,
					 size_t keylen, uint64_t *seq_r,
					 unsigned char prev_r[AUDIT_HASH_LEN],
					 unsigned char hash_r[AUDIT_HASH_LEN]);

/*
 * Is text[0..len) one JSON object (RFC 8259) on one line, whose top-level
 * members include "type" and "ts" (strings) and none of the names the
 * writer adds ("seq", "prev", "hash")?  A validating scanner without
 * allocation (the writer runs it on every record; jansson's parser costs
 * ten times more): strings must be valid UTF-8 without control
 * characters, nesting is limited to AUDIT_JSON_DEPTH.  Returns 0, or -1
 * with *error_r (static) saying why.  Duplicate member names are not
 * looked for.
 */
#define AUDIT_JSON_DEPTH 16
int audit_json_check(const char *text, size_t len, const char **error_r);

/* Lower-case hex of n bytes into out (2n + 1 bytes). */
void audit_hex(const unsigned char *in, size_t n, char *out);
/* 2n hex digits into out; -1 if not hex. */
int audit_unhex(const char *in, size_t n, unsigned char *out);

/* "2026-11-24T10:15:30.123Z" (UTC, milliseconds) into out[32]. */
void audit_format_time(const struct timespec *ts, char out[32]);
/* The reverse, also accepting "YYYY-MM-DD", "YYYY-MM-DDTHH:MM",
 * "YYYY-MM-DD HH:MM:SS", with or without fraction and "Z" (always UTC).
 * Milliseconds since the epoch, or -1. */
int64_t audit_parse_time(const char *s);

/*
 * The HMAC key: the first line of the file (without its line end), at
 * least AUDIT_KEY_MIN and at most AUDIT_KEY_MAX octets; e.g. made with
 * `openssl rand -hex 32 > FILE`.  Returns the length, or -1 with *error_r
 * (static) set.  The caller wipes key after use.
 */
long audit_key_load(const char *path, unsigned char *key, size_t keysize,
		    const char **error_r);
/* Key identifier for records and for telling keys apart: the first 8
 * octets of SHA-256(key) in hex (17 bytes with the NUL). */
void audit_key_id(const unsigned char *key, size_t keylen, char out[17]);

/*
 * Make arbitrary bytes safe for a JSON string (which must be UTF-8):
 * printable ASCII and well-formed UTF-8 sequences are kept, anything else
 * (control characters, DEL, invalid or overlong UTF-8) becomes the text
 * "\xNN".  Cut at a character boundary to fit outsize (NUL included).
 * Returns out.
 */
char *audit_clean_text(const char *in, size_t len, char *out, size_t outsize);

/* --- worker <-> writer messages (unix SOCK_SEQPACKET, one per packet) --- */

enum audit_msg_type {
	AUDIT_MSG_RECORD = 1,	/* worker -> writer: header + JSON object */
	AUDIT_MSG_ACK,		/* writer -> worker: header + acks[] */
	AUDIT_MSG_STATUS,	/* writer -> worker: the log is (not) writable */
	AUDIT_MSG_HELLO,	/* writer -> worker: a writer (re)started */
	AUDIT_MSG_PING,		/* worker -> writer: answer with a STATUS once
				 * what came before is written */
};

#define AUDIT_F_ACK 1		/* RECORD: acknowledge after fsync */

struct audit_msg {
	uint32_t type;		/* enum audit_msg_type */
	uint32_t flags;		/* RECORD: AUDIT_F_ACK */
	uint64_t id;		/* RECORD: the worker's request id */
	int32_t status;		/* STATUS, HELLO: 0 = writable, else errno */
	uint32_t count;		/* ACK: entries that follow */
};

struct audit_ack {
	uint64_t id;		/* of the record */
	uint64_t seq;		/* its place in the chain (0 if not written) */
	int32_t status;		/* 0: on disk; else errno (ENOSPC, EIO, ...) */
	uint32_t pad;
};

#define AUDIT_ACKS_PER_MSG 256

#endif
