/*
 * limits_redis.h - the Redis client behind shared limits (rate_limits.h):
 * one asynchronous connection per worker, on the worker's libevent loop
 * (hiredis and its libevent adapter), running one Lua script.
 *
 * Bounded waits: a connection attempt that takes longer than
 * connect_timeout_ms, or a command whose answer takes longer than
 * command_timeout_ms, ends the connection, and every command waiting on it
 * fails at once (its callback gets an error).  After a failure no new
 * connection is attempted for retry_interval_ms: meanwhile commands fail
 * immediately (limits_redis_eval() returns NULL), so a Redis outage costs
 * the sessions nothing but the fail-open or fail-closed decision
 * (rate_limits.*.on_redis_error).  Transitions are logged once each
 * ("unreachable", "connected again"), not per command.
 *
 * At every (re)connection: AUTH (when password_file is set), then SCRIPT
 * LOAD of the script; commands use EVALSHA.  A server that lost the script
 * (SCRIPT FLUSH, restart) answers NOSCRIPT: the connection is dropped and
 * the next one loads it again.
 *
 * Ownership: the worker owns the client (limits_redis_new/free).  A
 * request belongs to whoever passed a callback until the callback runs or
 * limits_redis_cancel() is called; after either the caller must forget it.
 * Callbacks never run from inside limits_redis_eval().  limits_redis_free()
 * fails every request still waiting (their callbacks run).
 *
 * Without hiredis (configure --without-redis) the functions exist but
 * limits_redis_new() fails; the configuration refuses rate_limits.redis.
 */
#ifndef MSA_LIMITS_REDIS_H
#define MSA_LIMITS_REDIS_H

#include <stddef.h>
#include <event2/event.h>

struct conf_redis;
struct limits_redis;
struct limits_redis_req;

/* The script's answer: an array of integers (values[0..n)), or error
 * (a static string for the log) and values NULL. */
typedef void (*limits_redis_cb)(void *ctx, const long long *values, size_t n,
				const char *error);

/* NULL with *error_r on failure (no connection is made yet: the first
 * command connects).  script and password (NUL-terminated, "" = no AUTH)
 * must outlive the client. */
struct limits_redis *limits_redis_new(struct event_base *base,
				      const struct conf_redis *conf,
				      const char *script, const char *password,
				      const char **error_r);
void limits_redis_free(struct limits_redis **rp);

/*
 * EVALSHA the script with nkeys keys and nargs arguments (argv[0..nkeys)
 * are the keys, then the arguments; lens their lengths).  cb NULL: nobody
 * waits for the answer (errors are only logged).  Returns the request, or
 * NULL if it could not be sent (Redis down, not retried yet): then cb is
 * not called.
 */
struct limits_redis_req *limits_redis_eval(struct limits_redis *r, int nkeys,
					   int nargs, const char *const *argv,
					   const size_t *lens,
					   limits_redis_cb cb, void *ctx);

/* The caller no longer waits: its callback will not run.  *reqp = NULL. */
void limits_redis_cancel(struct limits_redis_req **reqp);

#endif
