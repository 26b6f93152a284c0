/*
 * audit_writer.h - the audit writer: one process, child of the master, that
 * alone writes the audit log.  Workers send it records (audit.h); it gives
 * each a sequence number and chains it (audit_format.h), writes whatever
 * has arrived in one write(), fdatasync()s once for the batch (group
 * commit), and then acknowledges the records that asked for it, one packet
 * per channel.  A batch without such a record is not synced on its own: the
 * next one that is waited for syncs it, or a sync 200 ms later at the
 * latest (docs/AUDIT.md, "Durability").  It runs at audit.writer_nice, so
 * that it does not preempt busy workers.  It also rotates the file and
 * copies records to syslog.
 *
 * Why one process (docs/AUDIT.md, "Design"): the workers are separate
 * processes, and one verifiable chain needs one place that decides the
 * order.  A writer process also keeps fsync() off every event loop, keeps
 * the HMAC key out of the processes that parse client input (workers wipe
 * their copy at start), and batches the fsyncs of all workers together.
 *
 * Channels: one unix SOCK_SEQPACKET socket pair per worker slot, made by
 * the master before anything forks and kept by it, so that a restarted
 * worker or writer takes over the same channel and records queued in it
 * are not lost.  Each packet is one struct audit_msg (+ payload).  A
 * restarted writer says HELLO on every channel: workers then fail the
 * requests they were waiting for (their records may or may not be on
 * disk; the client gets 4xx, never a 250 that the log might not back).
 *
 * SECURITY: the writer reads only what workers send.  A worker is trusted
 * to describe its sessions, not to shape the log: each record must be one
 * JSON object on one line (audit_json_check(): well-formed, UTF-8, with
 * "type" and "ts") without the members the writer owns (seq, prev, hash),
 * at most AUDIT_RECORD_MAX octets; anything else is refused and logged.
 * The HMAC key is read by the master as root, before privileges are
 * dropped, and wiped in the workers.
 */
#ifndef MSA_AUDIT_WRITER_H
#define MSA_AUDIT_WRITER_H

#include <stddef.h>
#include <sys/types.h>

struct conf;

/* Master, at start (as root): read the HMAC key, make one channel per
 * worker slot.  -1 with *error_r (static) on failure. */
int audit_master_init(const struct conf *conf, unsigned nworkers,
		      const char **error_r);

/* Master, after privileges are dropped and before workers start: can the
 * log be opened for appending (created if need be)?  -1 with a message in
 * err. */
int audit_master_check(const struct conf *conf, char *err, size_t errsize);

/* In a freshly forked worker: keep the channel of slot `index` (returned),
 * close every other, wipe the key. */
int audit_master_child_worker(unsigned index);

/* In the master: forget everything (at exit). */
void audit_master_free(void);

/*
 * The writer process: recover the chain from the log (and, if the active
 * file is missing, from the newest rotated one), write an "audit_start"
 * record, report "OK\n" (or "ERR <reason>\n") on ready_fd and close it,
 * then serve the channels until SIGTERM.  SIGHUP and SIGUSR1 rotate the
 * file.  Never returns: exits 0 after a clean stop, 1 on a fatal error.
 */
void audit_writer_main(const struct conf *conf, int ready_fd)
	__attribute__((noreturn));

/*
 * One RFC 5424 message (section 6) for a record: "<PRI>1 TIMESTAMP
 * HOSTNAME APP-NAME PROCID MSGID [SD] MSG", the structured data element
 * "msaproxy@32473" carrying sd_params (already "name=\"value\"" pairs,
 * space-separated, values escaped with audit_sd_escape), MSG the record
 * line.  Cut to outsize; returns the length.  Pure (unit-tested).
 */
size_t audit_syslog_format(char *out, size_t outsize, int pri,
			   const char *ts, const char *host, const char *app,
			   long pid, const char *msgid, const char *sd_params,
			   const char *msg, size_t msglen);
/* RFC 5424 6.3.3 PARAM-VALUE escaping ('"', '\' and ']' get a '\'). */
void audit_sd_escape(const char *in, char *out, size_t outsize);

#endif
