/*
 * conf.h - msaproxy's configuration: the one struct every module reads.
 *
 * The file format is libconfig's (https://hyperrealm.github.io/libconfig/),
 * parsed by conf.c from a table of known keys.  Rules the parser enforces:
 *   - an unknown key, a wrong type or a value out of bounds is an error
 *     reported as "FILE:LINE: problem";
 *   - every limit has a default stated in conf.c's table and in
 *     docs/msaproxy.conf.5;
 *   - the result is immutable after conf_load() returns; a reload builds a
 *     new struct conf and swaps it (never edits the live one).
 *
 * Ownership: conf_load() returns a struct conf owned by the caller, freed
 * with conf_free().  Every string in it is owned by the struct.
 */
#ifndef MSA_CONF_H
#define MSA_CONF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>

#define CONF_MAX_LISTENERS 32
#define CONF_MAX_PROXY_FROM 32

enum listener_kind {
	LISTENER_SUBMISSION,	/* RFC 6409 port 587 semantics */
	LISTENER_SUBMISSIONS,	/* RFC 8314 implicit TLS (issue 3) */
	LISTENER_SMTP,		/* plain RFC 5321 */
	LISTENER_LMTP,		/* RFC 2033: LHLO, per-recipient replies */
};

enum backend_proto {
	BACKEND_SMTP,
	BACKEND_LMTP,
};

enum backend_tls {
	BACKEND_TLS_NONE,	/* plaintext */
	BACKEND_TLS_MAY,	/* STARTTLS when offered, certificate not checked */
	BACKEND_TLS_VERIFY,	/* STARTTLS required, certificate verified */
};

enum bare_newline_policy {
	BARE_NEWLINE_REJECT,	/* bare CR or LF in content: 550 5.6.0, nothing delivered */
	BARE_NEWLINE_NORMALIZE,	/* bare CR or LF becomes CRLF before forwarding */
};

/* audit.pending_sync: when the "tx_pending" record must be on disk
 * (auth/audit.h, docs/AUDIT.md "Durability"). */
enum audit_pending_sync {
	AUDIT_PENDING_BEFORE_BACKEND,	/* before the end of data goes to the
					 * backend (default) */
	AUDIT_PENDING_BEFORE_REPLY,	/* before the client's 250: the end of
					 * data goes out at once, the fsync
					 * overlaps the backend's work */
};

/* A socket address, TCP (host:port) or a unix socket path. */
struct conf_addr {
	int is_unix;
	struct sockaddr_storage ss;	/* AF_INET, AF_INET6 or AF_UNIX */
	socklen_t sslen;
	char text[256];			/* as written in the config, for logs */
};

/* A CIDR network, for proxy_protocol_from. */
struct conf_cidr {
	int family;			/* AF_INET or AF_INET6 */
	uint8_t addr[16];
	unsigned prefix;
};

struct conf_listener {
	char name[64];			/* unique; the "channel" in logs and policy */
	enum listener_kind kind;
	struct conf_addr addr;
	int proxy_protocol;		/* expect a PROXY v1/v2 header first */
	struct conf_cidr proxy_from[CONF_MAX_PROXY_FROM];
	size_t proxy_from_count;	/* only these peers may send the header */
	/* issue 3: TLS and AUTH per listener */
	int starttls;			/* offer STARTTLS (default: true when a
					 * tls section exists; not on submissions) */
	int require_auth;		/* 530 5.7.0 for MAIL before AUTH
					 * (default: true on submission/submissions) */
	int require_tls_for_auth;	/* every mechanism needs TLS (538 5.7.11) */
	char auth_mechanisms[256];	/* space-separated; "" = sasl.mechanisms */
	int etrn;			/* named in etrn.listeners: ETRN offered */
	int line;			/* config line, for messages */
};

struct conf_backend {
	struct conf_addr addr;
	enum backend_proto proto;
	char helo_name[256];		/* EHLO/LHLO name we present; default server_name */
	int use_chunking;		/* 1 = BDAT when the backend offers CHUNKING */
	unsigned capability_refresh;	/* seconds between background EHLO probes */
	enum backend_tls tls;
	char tls_ca_file[512];		/* CA bundle for "verify" */
	char tls_verify_name[256];	/* name the certificate must carry */
	int xclient;			/* send XCLIENT when offered (default true) */
	char auth_user[256];		/* the proxy's own AUTH PLAIN ("" = none) */
	char auth_password_file[512];	/* its password, first line; mode 0600 */
};

struct conf_limits {
	uint64_t max_message_size;	/* octets, advertised as SIZE */
	unsigned max_recipients;	/* per transaction: 452 4.5.3 beyond */
	unsigned max_line_length;	/* command line incl. CRLF; >= 512 */
	unsigned max_data_line_length;	/* content line while in DATA; >= 1000 */
	unsigned max_pipelined;		/* commands queued before input pauses */
	unsigned max_bad_commands;	/* 421 4.7.0 after this many errors */
	unsigned max_connections;	/* per worker; beyond: 421 4.7.0 at connect */
	unsigned max_bdat_chunk;	/* largest chunk we forward to the backend */
	uint64_t min_data_rate;		/* octets/s that extend the content deadline */
	size_t session_buffer;		/* high-water mark of each session buffer */
};

struct conf_timeouts {			/* all in seconds */
	unsigned greeting;		/* PROXY header / first command */
	unsigned command;		/* between commands (RFC 5321 4.5.3.2.7: 5 min) */
	unsigned data;			/* between data blocks (4.5.3.2.5: 3 min) */
	unsigned backend_connect;
	unsigned backend_command;	/* backend reply to MAIL/RCPT/...  (5 min) */
	unsigned backend_data;		/* backend final reply after data (10 min) */
	unsigned shutdown;		/* grace for sessions on SIGTERM */
	unsigned drain;			/* a reload's old workers: sessions
					 * served to their end, at most this */
};

enum log_dest { LOG_DEST_STDERR, LOG_DEST_SYSLOG, LOG_DEST_FILE };

struct conf_log {
	enum log_dest dest;
	int level;			/* syslog priority: LOG_ERR .. LOG_DEBUG */
	int facility;			/* syslog facility, e.g. LOG_MAIL */
	char file[512];			/* LOG_DEST_FILE */
	char ident[64];			/* syslog ident, default "msaproxy" */
};

#define CONF_MAX_CERTS 4
#define CONF_MAX_SNI 16

struct conf_cert {
	char cert_file[512];		/* PEM: certificate + chain */
	char key_file[512];		/* PEM: private key */
};

/* A set of certificates (e.g. RSA and ECDSA side by side) for one name. */
struct conf_sni {
	char name[256];			/* "" = default; "*.example.com" allowed */
	struct conf_cert certs[CONF_MAX_CERTS];
	size_t cert_count;
};

struct conf_tls {
	int enabled;			/* a tls section is present */
	/* sni[0] is the default set (tls.certificates); sni[1..] are the
	 * tls.sni entries, matched case-blind against the client's SNI. */
	struct conf_sni sni[CONF_MAX_SNI];
	size_t sni_count;
	char min_protocol[16];		/* "TLSv1.2" (default) or "TLSv1.3" */
	char ciphers[512];		/* TLS 1.2 cipher list; "" = OpenSSL default */
	char ciphersuites[512];		/* TLS 1.3 suites; "" = OpenSSL default */
	char groups[256];		/* key exchange groups; "" = default */
	char client_ca_file[512];	/* verify client certificates against this */
	int verify_client;		/* 0 none, 1 optional (ask), 2 require */
	int session_tickets;		/* RFC 5077 tickets (default true) */
	unsigned handshake_timeout;	/* seconds (default 30) */
};

struct conf_sasl {
	int enabled;			/* a sasl section is present: AUTH offered */
	char app_name[64];		/* Cyrus SASL application name ("msaproxy") */
	char mechanisms[256];		/* offered, space-separated, in order */
	char sasldb_path[512];		/* the embedded user store; "" = none */
	char plugin_path[512];		/* "" = Cyrus' default */
	char keytab[512];		/* GSSAPI acceptor keytab (KRB5_KTNAME) */
	char service[32];		/* GSSAPI service, default "smtp" */
	char hostname[256];		/* GSSAPI host part; default server_name */
	char realm[256];		/* default realm: stripped in identities */
	int allow_authzid;		/* an authzid != authcid is accepted */
	unsigned max_failures;		/* 421 4.7.0 after this many (default 3) */
	unsigned failure_delay_ms;	/* first delay after a failure, doubles */
	char sender_map[512];		/* identity -> allowed MAIL FROM; "" = default rule */
	char sender_domains[512];	/* default rule: identity@each of these */
	int received_auth_comment;	/* "(authenticated as X)" in Received */
	int received_tls_comment;	/* TLS version/cipher in Received */
};

#define CONF_MAX_IMAP_SERVERS 16

struct mapping_file;

enum conf_imap_tls { CONF_IMAP_TLS_NONE, CONF_IMAP_TLS_STARTTLS, CONF_IMAP_TLS_IMPLICIT };
enum conf_imap_cred { CONF_IMAP_CRED_KERBEROS, CONF_IMAP_CRED_PASSWORD };
enum conf_imap_mode { CONF_IMAP_MODE_URLAUTH, CONF_IMAP_MODE_PROXY_AUTH };
enum conf_burl_fetch_tls {
	CONF_BURL_FETCH_TLS_AS_CLIENT,	/* TLS to IMAP when the client used TLS (RFC 4468 8) */
	CONF_BURL_FETCH_TLS_ALWAYS,	/* always TLS to IMAP */
	CONF_BURL_FETCH_TLS_CONFIGURED,	/* as each server's tls says, nothing more */
};

/* One trusted IMAP server of the BURL trust set. */
struct conf_imap_server {
	char name[64];			/* for logs */
	char authority[256];		/* the URL authority it answers for:
					 * "host" or "host:port", case-blind */
	struct conf_addr addr;		/* where it listens */
	enum conf_imap_tls tls;
	char tls_ca_file[512];
	char tls_verify_name[256];	/* default: the authority's host */
	enum conf_imap_cred credentials;
	char principal[256];		/* kerberos: our principal ("" = keytab's first) */
	char keytab[512];		/* kerberos: client keytab */
	char service_host[256];		/* kerberos: imap/<this>; default authority host */
	char user[256];			/* password: the submit user */
	char password_file[512];	/* password: first line; mode 0600 */
	enum conf_imap_mode mode;
	unsigned max_idle_connections;
	unsigned max_connections;
	int line;
};

/*
 * burl.mailhost: where BURL_ACCESS's $M finds the authenticated user's
 * mailHost (trust/mailhost.h).  A map file, LDAP, or both (the map file is
 * consulted first).  No mailhost group: $M always fails.
 */
struct conf_mailhost {
	int enabled;			/* the group is present */
	char map_file[512];		/* "user mailhost" lines; "" = none */
	char ldap_uri[512];		/* "ldap://host[:port]" or "ldaps://..."; "" = none */
	char ldap_base[512];		/* search base DN */
	char ldap_filter[256];		/* "(uid=%u)": %u = the user, RFC 4515-escaped */
	char ldap_attribute[128];	/* "mailHost" */
	char ldap_bind_dn[512];		/* "" = anonymous */
	char ldap_bind_password_file[512]; /* first line; mode 0600 */
	int ldap_starttls;		/* StartTLS (RFC 4513 3) on ldap:// */
	char ldap_ca_file[512];		/* verify the server against this; "" = system CAs */
	unsigned cache_ttl;		/* seconds a found mailHost is reused */
	unsigned negative_ttl;		/* seconds a "no mailHost" is reused */
	unsigned cache_size;		/* entries per worker; 0 = no cache */
	unsigned timeout;		/* seconds: connect+TLS+bind, and each search */
};

struct conf_burl {
	int enabled;			/* a burl section is present */
	int require_auth;		/* advertise/accept only after AUTH (default true) */
	int require_tls;		/* ... and only under TLS (default false) */
	enum conf_burl_fetch_tls fetch_tls;
	char local_domains[512];	/* "u@d" with d listed here is user "u" */
	unsigned connect_timeout;	/* IMAP connect + TLS + AUTH */
	unsigned fetch_timeout;		/* no progress during a fetch */
	unsigned fetch_deadline;	/* one whole fetch, however it progresses */
	unsigned idle_timeout;		/* pooled IMAP connection kept idle */
	unsigned max_bad_burl;		/* 421 4.7.0 after this many failed BURLs */
	/* BURL_ACCESS (trust/burl_access.h): "" = the built-in rule */
	char access_file[512];		/* a Messaging Server mapping file */
	char access_table[64];		/* the table in it (BURL_ACCESS) */
	char access_paranoia[2];	/* replaces '|' of URLs in probes; "" = none */
	char access_domain[256];	/* appended to identities without '@' */
	struct mapping_file *access;	/* loaded with the conf, owned by it */
	struct conf_imap_server servers[CONF_MAX_IMAP_SERVERS];
	size_t server_count;
	struct conf_mailhost mailhost;	/* $M's directory */
};

/*
 * ETRN (RFC 1985) policy: which listeners offer it, and which nodes,
 * @domains and #queues each client may release.  A rule applies to a
 * session when each selector it has matches: `identity` (the authenticated
 * identity, compared without regard to case; "*" = any authenticated
 * identity) and `networks` (the client's address, the one from a PROXY
 * header when there is one).  A request is allowed when any applicable rule
 * grants it (proxy/etrn_policy.h says what a grant covers).
 */
#define CONF_MAX_ETRN_RULES 64
#define CONF_MAX_ETRN_ALLOW 16
#define CONF_MAX_ETRN_NETWORKS 16
/* "@" and a 255-octet domain, NUL */
#define CONF_ETRN_NODE_SIZE 257

struct conf_etrn_rule {
	char identity[256];		/* "" = no identity selector */
	struct conf_cidr networks[CONF_MAX_ETRN_NETWORKS];
	size_t network_count;		/* 0 = no network selector */
	char allow[CONF_MAX_ETRN_ALLOW][CONF_ETRN_NODE_SIZE];
	size_t allow_count;		/* "node", "@domain", "#queue" */
	int line;			/* config line, for logs */
};

struct conf_etrn {
	char listeners[CONF_MAX_LISTENERS][64];	/* names; resolved into
						 * conf_listener.etrn */
	size_t listener_count;
	int allow_wildcard_tld;		/* "@com" grants permitted (RFC 1985 8) */
	struct conf_etrn_rule rules[CONF_MAX_ETRN_RULES];
	size_t rule_count;
};

/* The audit trail (auth/audit.h, docs/AUDIT.md). */
struct conf_audit {
	int enabled;			/* default false */
	char file[512];			/* the active log file (absolute path) */
	int fsync;			/* fdatasync before a record counts */
	int verdict_fsync;		/* 250 also waits for the "tx" record */
	int pending_sync;		/* enum audit_pending_sync */
	char hmac_key_file[512];	/* "" = a plain SHA-256 chain */
	uint64_t rotate_size;		/* octets; 0 = no size rotation */
	unsigned rotate_interval;	/* seconds; 0 = no time rotation */
	int syslog;			/* also send records to syslog (RFC 5424) */
	struct conf_addr syslog_address;/* "/dev/log", or "ip:port" for UDP */
	unsigned timeout;		/* seconds a worker waits for the writer */
	char user[64];			/* the writer runs as; "" = conf->user */
	char group[64];			/* "" = that user's primary group */
	unsigned writer_nice;		/* the writer's nice value (0..19) */
};

/*
 * rate_limits: limits counted across sessions (proxy/rate_limits.h) -- rates
 * over sliding windows and concurrency caps, each a named group with its
 * own maximum (0 = off), window and policy for when Redis cannot be asked.
 * The names are the configuration keys (conf_limit_name()).
 */
enum conf_limit_id {
	CONF_LIMIT_MESSAGES,		/* messages_per_identity */
	CONF_LIMIT_RECIPIENTS,		/* recipients_per_identity */
	CONF_LIMIT_BYTES,		/* bytes_per_identity */
	CONF_LIMIT_SESSIONS,		/* sessions_per_identity (concurrent) */
	CONF_LIMIT_AUTH_IDENTITY,	/* auth_failures_per_identity */
	CONF_LIMIT_AUTH_ADDRESS,	/* auth_failures_per_address */
	CONF_LIMIT_BURL_FETCHES,	/* burl_fetches_per_identity */
	CONF_LIMIT_BURL_BYTES,		/* burl_bytes_per_identity */
	CONF_LIMIT_CONNECTIONS,		/* connections_per_address (concurrent) */
	CONF_LIMIT_CONNECTION_RATE,	/* connection_rate_per_address */
	CONF_LIMIT_URL_REUSE,		/* url_reuse (RFC 4468 8) */
	CONF_LIMIT_COUNT
};

enum conf_limit_fail {
	CONF_LIMIT_FAIL_OPEN,		/* Redis unreachable: not enforced */
	CONF_LIMIT_FAIL_CLOSED,		/* Redis unreachable: refused (4xx) */
};

struct conf_rate_limit {
	uint64_t max;			/* 0 = off */
	unsigned window;		/* seconds; unused by concurrency caps */
	int on_redis_error;		/* enum conf_limit_fail */
};

/* rate_limits.redis: the counters shared by a fleet. */
struct conf_redis {
	int enabled;			/* the group is present */
	struct conf_addr addr;		/* host:port or a unix socket */
	char prefix[64];		/* of every key ("msaproxy:") */
	char user[128];			/* Redis 6 ACL user; "" = AUTH password only */
	char password_file[512];	/* first line; "" = no AUTH */
	unsigned connect_timeout_ms;
	unsigned command_timeout_ms;
	unsigned retry_interval_ms;	/* no reconnect attempt sooner */
	unsigned lease;			/* seconds a concurrency entry lives
					 * without its instance's heartbeat */
};

struct conf_rate_limits {
	struct conf_rate_limit limit[CONF_LIMIT_COUNT];
	unsigned max_keys;		/* per limit, in memory (shared) */
	unsigned ipv6_prefix;		/* addresses counted per /n */
	char url_key_file[512];		/* HMAC key of URL hashes; "" = random
					 * per start (not shared by a fleet) */
	struct conf_redis redis;
};

struct conf {
	char path[512];			/* the file this came from */
	char server_name[256];		/* greeting, Received "by"; default gethostname() */
	unsigned workers;		/* 0 = one per online core */
	char user[64];			/* workers and audit writer run as this
					 * (privsep.h); "" only when not root */
	char group[64];			/* default: user's primary group */
	char chroot[512];		/* workers chroot here; "" = none */
	char pid_file[512];		/* "" = none */
	int reverse_dns;		/* PTR lookup for the Received header */
	char resolver[64];		/* "ip[:port]" for reverse_dns; "" = resolv.conf */
	enum bare_newline_policy bare_newline;
	struct conf_listener listeners[CONF_MAX_LISTENERS];
	size_t listener_count;
	struct conf_backend backend;
	struct conf_limits limits;
	struct conf_timeouts timeouts;
	struct conf_log log;
	struct conf_tls tls;		/* issue 3 */
	struct conf_sasl sasl;		/* issue 3 */
	struct conf_burl burl;		/* RFC 4468 */
	struct conf_etrn etrn;		/* issue 6: ETRN */
	struct conf_audit audit;	/* issue 6 */
	struct conf_rate_limits rate_limits;	/* issue 7: proxy/rate_limits.h */
};

/*
 * Load and check FILE.  On success returns a new struct conf.  On failure
 * returns NULL and writes "FILE:LINE: problem" (one line per problem, at most
 * errbuf_size bytes in all, NUL-terminated) into errbuf.  Every problem that
 * can be found is reported, not only the first.
 */
struct conf *conf_load(const char *file, char *errbuf, size_t errbuf_size);

/* Frees *confp and sets it to NULL. */
void conf_free(struct conf **confp);

/*
 * A reload (SIGHUP) re-reads the file, and the new generation of workers
 * runs with it, except for what the master set up once for the instance:
 * the sockets (listeners' number, names, kinds and addresses), the worker
 * processes and their identity (workers, user, group, chroot, pid_file),
 * SASL (one sasl_server_init per instance), the audit writer and the
 * shared counters (audit, rate_limits, limits.max_connections, which
 * sizes them).  Returns the first of these that differs between the
 * running configuration and the new one, or NULL when the new one can be
 * taken.  run_sasl_keytab is the running sasl.keytab as the file named
 * it (the running struct names the memory copy).
 */
const char *conf_restart_setting(const struct conf *run,
				 const struct conf *next,
				 const char *run_sasl_keytab);

/* The configuration key of a named limit ("messages_per_identity"). */
const char *conf_limit_name(enum conf_limit_id id);

/* "submission", "submissions", "smtp", "lmtp". */
const char *conf_listener_kind_name(enum listener_kind kind);

/* 1 if the address (AF_INET/AF_INET6 sockaddr) is inside one of the
 * listener's proxy_from networks.  IPv4-mapped IPv6 addresses match IPv4
 * networks. */
int conf_cidr_match_any(const struct conf_cidr *nets, size_t count,
			const struct sockaddr *sa);

/* Parse "host:port", "[v6]:port" or "/path" (unix) into addr; numeric hosts
 * only (no DNS at load time).  Returns 0, or -1 with *error_r set to a static
 * string. */
int conf_parse_addr(const char *text, struct conf_addr *addr,
		    const char **error_r);

/* Parse "a.b.c.d/n", "v6/n" or a bare address (full prefix).  0 or -1. */
int conf_parse_cidr(const char *text, struct conf_cidr *cidr,
		    const char **error_r);

#endif
