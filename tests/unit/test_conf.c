/*
 * test_conf.c - conf_load() and its address and CIDR parsers.
 *
 * Each test writes a config to a temporary file (mkstemp), loads it and
 * checks either the values or the exact "FILE:LINE: problem" text.  The
 * shipped example is loaded from $top_srcdir/conf/msaproxy.conf.example, so
 * the example, the table in conf.c and these tests cannot drift apart.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <cmocka.h>

#ifdef HAVE_CONFIG_H
#include "config.h"		/* HAVE_HIREDIS */
#endif
#include "conf.h"

/* A config with only what conf_load() requires; line 1 and 2. */
#define MINIMAL \
	"listeners = ( { name = \"sub\"; address = \"127.0.0.1:587\"; } );\n" \
	"backend = { address = \"127.0.0.1:25\"; };\n"

static char tmp_path[256];
static char errbuf[8192];

/* Certificate and key files for tls sections: empty, but readable (conf.c
 * only checks access(R_OK); the TLS module parses them).  Made by
 * tls_files_setup() in a temporary directory; "@" in a config text given
 * to with_dir() stands for that directory. */
static const char *tls_file_names[] = {
	"rsa.pem", "rsa.key", "ec.pem", "ec.key", "sni.pem", "sni.key",
	"ca.pem",
};
static char tls_dir[256];

static int
tls_files_setup(void **state)
{
	const char *dir = getenv("TMPDIR");
	char path[512];
	size_t i;
	FILE *fp;

	(void)state;
	snprintf(tls_dir, sizeof(tls_dir), "%s/test_conf_tls.XXXXXX",
		 dir != NULL && *dir != '\0' ? dir : "/tmp");
	if (mkdtemp(tls_dir) == NULL)
		return -1;
	for (i = 0; i < sizeof(tls_file_names) / sizeof(tls_file_names[0]);
	     i++) {
		snprintf(path, sizeof(path), "%s/%s", tls_dir,
			 tls_file_names[i]);
		if ((fp = fopen(path, "w")) == NULL)
			return -1;
		fputs("not parsed by conf.c\n", fp);
		fclose(fp);
	}
	return 0;
}

static int
tls_files_teardown(void **state)
{
	char path[512];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(tls_file_names) / sizeof(tls_file_names[0]);
	     i++) {
		snprintf(path, sizeof(path), "%s/%s", tls_dir,
			 tls_file_names[i]);
		unlink(path);
	}
	rmdir(tls_dir);
	return 0;
}

/* tmpl with each '@' replaced by tls_dir, in a static buffer. */
static const char *
with_dir(const char *tmpl)
{
	static char buf[16384];
	size_t len = 0, dlen = strlen(tls_dir);
	const char *p;

	for (p = tmpl; *p != '\0'; p++) {
		assert_true(len + dlen + 2 < sizeof(buf));
		if (*p == '@') {
			memcpy(buf + len, tls_dir, dlen);
			len += dlen;
		} else {
			buf[len++] = *p;
		}
	}
	buf[len] = '\0';
	return buf;
}

/* A tls section with one certificate, for tests about other keys. */
#define TLS_ONE \
	"tls = { certificates = ( { cert = \"@/rsa.pem\"; " \
	"key = \"@/rsa.key\"; } ); };\n"

/* Write text to a new temporary file; its name goes to tmp_path. */
static const char *
write_conf(const char *text)
{
	const char *dir = getenv("TMPDIR");
	size_t len = strlen(text);
	int fd;

	snprintf(tmp_path, sizeof(tmp_path), "%s/test_conf.XXXXXX",
		 dir != NULL && *dir != '\0' ? dir : "/tmp");
	fd = mkstemp(tmp_path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
	return tmp_path;
}

static struct conf *
load_text(const char *text)
{
	struct conf *conf;

	write_conf(text);
	errbuf[0] = '\0';
	conf = conf_load(tmp_path, errbuf, sizeof(errbuf));
	unlink(tmp_path);
	return conf;
}

/* Load text that must be valid. */
static struct conf *
load_ok(const char *text)
{
	struct conf *conf = load_text(text);

	if (conf == NULL)
		fail_msg("unexpected errors:\n%s", errbuf);
	return conf;
}

/* Load text that must fail; errbuf holds the messages. */
static void
load_fail(const char *text)
{
	struct conf *conf = load_text(text);

	if (conf != NULL) {
		conf_free(&conf);
		fail_msg("config unexpectedly accepted:\n%s", text);
	}
}

/* Assert errbuf contains the line "FILE:LINE: msg" (or "FILE: msg" for
 * line 0) exactly, as one whole line. */
static void
assert_error_line(unsigned line, const char *msg)
{
	char want[1024];
	const char *p = errbuf;
	size_t len;

	if (line > 0)
		snprintf(want, sizeof(want), "%s:%u: %s", tmp_path, line, msg);
	else
		snprintf(want, sizeof(want), "%s: %s", tmp_path, msg);
	len = strlen(want);
	while ((p = strstr(p, want)) != NULL) {
		if ((p == errbuf || p[-1] == '\n') &&
		    (p[len] == '\0' || p[len] == '\n'))
			return;
		p++;
	}
	fail_msg("expected line\n  %s\nin\n%s", want, errbuf);
}

static size_t
error_count(void)
{
	size_t n = errbuf[0] != '\0';
	const char *p;

	for (p = errbuf; *p != '\0'; p++)
		n += *p == '\n';
	return n;
}

/* Default values, checked for the example and for a minimal file. */
static void
assert_defaults(const struct conf *conf)
{
	assert_int_equal(conf->workers, 0);
	assert_string_equal(conf->group, "");
	assert_string_equal(conf->chroot, "");
	assert_string_equal(conf->audit.user, "");
	assert_int_equal(conf->timeouts.drain, 600);
	assert_string_equal(conf->pid_file, "");
	assert_int_equal(conf->reverse_dns, 0);
	assert_int_equal(conf->bare_newline, BARE_NEWLINE_REJECT);

	assert_int_equal(conf->log.dest, LOG_DEST_STDERR);
	assert_string_equal(conf->log.file, "");
	assert_int_equal(conf->log.level, LOG_INFO);
	assert_int_equal(conf->log.facility, LOG_MAIL);
	assert_string_equal(conf->log.ident, "msaproxy");

	assert_int_equal(conf->listener_count, 1);
	assert_int_equal(conf->listeners[0].kind, LISTENER_SUBMISSION);
	assert_false(conf->listeners[0].addr.is_unix);
	assert_string_equal(conf->listeners[0].addr.text, "127.0.0.1:587");
	assert_int_equal(conf->listeners[0].addr.ss.ss_family, AF_INET);
	assert_int_equal(conf->listeners[0].addr.sslen,
			 sizeof(struct sockaddr_in));
	assert_int_equal(conf->listeners[0].proxy_protocol, 0);
	assert_int_equal(conf->listeners[0].proxy_from_count, 0);
	/* No tls section: no STARTTLS; submission requires AUTH. */
	assert_int_equal(conf->listeners[0].starttls, 0);
	assert_int_equal(conf->listeners[0].require_auth, 1);
	assert_int_equal(conf->listeners[0].require_tls_for_auth, 0);
	assert_string_equal(conf->listeners[0].auth_mechanisms, "");

	assert_string_equal(conf->backend.addr.text, "127.0.0.1:25");
	assert_int_equal(conf->backend.proto, BACKEND_SMTP);
	assert_string_equal(conf->backend.helo_name, conf->server_name);
	assert_int_equal(conf->backend.use_chunking, 1);
	assert_int_equal(conf->backend.capability_refresh, 60);

	assert_int_equal(conf->limits.max_message_size, 50 * 1024 * 1024);
	assert_int_equal(conf->limits.max_recipients, 100);
	assert_int_equal(conf->limits.max_line_length, 512);
	assert_int_equal(conf->limits.max_data_line_length, 65536);
	assert_int_equal(conf->limits.max_pipelined, 64);
	assert_int_equal(conf->limits.max_bad_commands, 20);
	assert_int_equal(conf->limits.max_connections, 4096);
	assert_int_equal(conf->limits.max_bdat_chunk, 64 * 1024);
	assert_int_equal(conf->limits.session_buffer, 64 * 1024);

	assert_int_equal(conf->timeouts.greeting, 30);
	assert_int_equal(conf->timeouts.command, 300);
	assert_int_equal(conf->timeouts.data, 180);
	assert_int_equal(conf->timeouts.backend_connect, 30);
	assert_int_equal(conf->timeouts.backend_command, 300);
	assert_int_equal(conf->timeouts.backend_data, 600);
	assert_int_equal(conf->timeouts.shutdown, 30);

	assert_int_equal(conf->tls.enabled, 0);
	assert_int_equal(conf->tls.sni_count, 0);
	assert_string_equal(conf->tls.min_protocol, "TLSv1.2");
	assert_string_equal(conf->tls.ciphers, "");
	assert_string_equal(conf->tls.ciphersuites, "");
	assert_string_equal(conf->tls.groups, "");
	assert_string_equal(conf->tls.client_ca_file, "");
	assert_int_equal(conf->tls.verify_client, 0);
	assert_int_equal(conf->tls.session_tickets, 1);
	assert_int_equal(conf->tls.handshake_timeout, 30);

	assert_string_equal(conf->sasl.app_name, "msaproxy");
	assert_string_equal(conf->sasl.mechanisms,
			    "GSSAPI SCRAM-SHA-256 PLAIN LOGIN");
	assert_string_equal(conf->sasl.sasldb_path, "");
	assert_string_equal(conf->sasl.plugin_path, "");
	assert_string_equal(conf->sasl.keytab, "");
	assert_string_equal(conf->sasl.service, "smtp");
	assert_string_equal(conf->sasl.hostname, conf->server_name);
	assert_string_equal(conf->sasl.realm, "");
	assert_int_equal(conf->sasl.allow_authzid, 0);
	assert_int_equal(conf->sasl.max_failures, 3);
	assert_int_equal(conf->sasl.failure_delay_ms, 1000);
	assert_string_equal(conf->sasl.sender_map, "");
	assert_string_equal(conf->sasl.sender_domains, "");
	assert_int_equal(conf->sasl.received_auth_comment, 0);
	assert_int_equal(conf->sasl.received_tls_comment, 0);

	assert_int_equal(conf->audit.enabled, 0);
	assert_string_equal(conf->audit.file, "/var/log/msaproxy/audit.log");
	assert_int_equal(conf->audit.fsync, 1);
	assert_int_equal(conf->audit.verdict_fsync, 0);
	assert_int_equal(conf->audit.pending_sync, AUDIT_PENDING_BEFORE_BACKEND);
	assert_string_equal(conf->audit.hmac_key_file, "");
	assert_int_equal(conf->audit.rotate_size, 100 * 1024 * 1024);
	assert_int_equal(conf->audit.rotate_interval, 86400);
	assert_int_equal(conf->audit.syslog, 0);
	assert_string_equal(conf->audit.syslog_address.text, "/dev/log");
	assert_true(conf->audit.syslog_address.is_unix);
	assert_int_equal(conf->audit.timeout, 30);
	assert_int_equal(conf->audit.writer_nice, 10);
}

static void
test_example_loads(void **state)
{
	const char *top = getenv("top_srcdir");
	char path[1024];
	struct conf *conf;

	(void)state;
	snprintf(path, sizeof(path), "%s/conf/msaproxy.conf.example",
		 top != NULL ? top : ".");
	conf = conf_load(path, errbuf, sizeof(errbuf));
	if (conf == NULL)
		fail_msg("example does not load:\n%s", errbuf);
	assert_string_equal(conf->path, path);
	assert_string_equal(conf->server_name, "mail.example.com");
	assert_string_equal(conf->backend.helo_name, "mail.example.com");
	assert_string_equal(conf->listeners[0].name, "submission");
	assert_int_equal(conf->listeners[0].line, 49);
	assert_string_equal(conf->user, "msaproxy");
	assert_defaults(conf);
	/* the example's ETRN rules are inert: no listener offers ETRN */
	assert_int_equal(conf->etrn.listener_count, 0);
	assert_int_equal(conf->etrn.allow_wildcard_tld, 0);
	assert_int_equal(conf->etrn.rule_count, 2);
	assert_int_equal(conf->listeners[0].etrn, 0);
	conf_free(&conf);
	assert_null(conf);
	conf_free(&conf);	/* harmless on NULL */
}

static void
test_minimal_defaults(void **state)
{
	char host[256];
	struct conf *conf;

	(void)state;
	conf = load_ok(MINIMAL);
	assert_int_equal(gethostname(host, sizeof(host)), 0);
	host[sizeof(host) - 1] = '\0';
	assert_string_equal(conf->server_name, host);
	assert_string_equal(conf->user, "");
	assert_defaults(conf);
	assert_int_equal(conf->listeners[0].line, 1);
	conf_free(&conf);
}

static void
test_helo_name(void **state)
{
	struct conf *conf;

	(void)state;
	conf = load_ok("server_name = \"mx.example.org\";\n" MINIMAL);
	assert_string_equal(conf->backend.helo_name, "mx.example.org");
	conf_free(&conf);
	conf = load_ok("server_name = \"mx.example.org\";\n"
		       "listeners = ( { name = \"s\"; address = \"[::1]:587\"; } );\n"
		       "backend = { address = \"/run/lmtp\"; protocol = \"lmtp\";\n"
		       "  helo_name = \"proxy.example.org\"; chunking = false; };\n");
	assert_string_equal(conf->server_name, "mx.example.org");
	assert_string_equal(conf->backend.helo_name, "proxy.example.org");
	assert_int_equal(conf->backend.proto, BACKEND_LMTP);
	assert_int_equal(conf->backend.use_chunking, 0);
	assert_true(conf->backend.addr.is_unix);
	conf_free(&conf);

	load_fail("server_name = \"bad name\";\n" MINIMAL);
	assert_error_line(1, "'server_name' = \"bad name\": not a domain name "
			  "(letters, digits, '-', '.', '_')");
	load_fail("server_name = \"a\\r\\nb\";\n" MINIMAL);
	assert_error_line(1, "'server_name' = \"a\\x0d\\x0ab\": not a domain "
			  "name (letters, digits, '-', '.', '_')");
}

static void
test_syntax_error(void **state)
{
	(void)state;
	load_fail("workers = 1;\n\nlimits = {\n  max_recipients = ;\n};\n");
	assert_error_line(4, "syntax error");
	assert_int_equal(error_count(), 1);
}

static void
test_missing_file(void **state)
{
	struct conf *conf;

	(void)state;
	conf = conf_load("/nonexistent/msaproxy.conf", errbuf, sizeof(errbuf));
	assert_null(conf);
	assert_string_equal(errbuf,
			    "/nonexistent/msaproxy.conf: No such file or directory");
}

static void
test_unknown_key(void **state)
{
	(void)state;
	load_fail(MINIMAL "limits = {\n  max_recipients = 10;\n  x = 1;\n};\n");
	assert_error_line(5, "unknown key 'x' in section 'limits'");
	assert_int_equal(error_count(), 1);

	load_fail(MINIMAL "\nworkerz = 4;\n");
	assert_error_line(4, "unknown key 'workerz' at top level");

	load_fail("listeners = (\n  { name = \"a\"; address = \"127.0.0.1:1\"; },\n"
		  "  { name = \"b\";\n    address = \"127.0.0.1:2\";\n"
		  "    tls = true; }\n);\n"
		  "backend = { address = \"127.0.0.1:25\"; };\n");
	assert_error_line(5, "unknown key 'tls' in section 'listeners[1]'");
	assert_int_equal(error_count(), 1);

	load_fail(MINIMAL "log = { level = \"info\"; colour = true; };\n");
	assert_error_line(3, "unknown key 'colour' in section 'log'");
}

static void
test_wrong_type(void **state)
{
	(void)state;
	load_fail(MINIMAL "workers = \"4\";\n");
	assert_error_line(3, "'workers' must be an integer, not a string");
	load_fail(MINIMAL "reverse_dns = 1;\n");
	assert_error_line(3, "'reverse_dns' must be a boolean (true or false), "
			  "not an integer");
	load_fail(MINIMAL "timeouts = {\n greeting = 1.5;\n};\n");
	assert_error_line(4, "'timeouts.greeting' must be an integer, not a float");
	load_fail(MINIMAL "limits = { max_message_size = true; };\n");
	assert_error_line(3, "'limits.max_message_size' must be an integer or a "
			  "size like \"50M\", not a boolean");
	load_fail(MINIMAL "log = \"syslog\";\n");
	assert_error_line(3, "'log' must be a group { }, not a string");
	load_fail("listeners = { name = \"a\"; };\n"
		  "backend = { address = \"127.0.0.1:25\"; };\n");
	assert_error_line(1, "'listeners' must be a list of groups "
			  "( { ... }, { ... } ), not a group { }");
	assert_int_equal(error_count(), 1);
	load_fail("listeners = ( { name = \"a\"; address = \"127.0.0.1:1\";\n"
		  "  proxy_protocol = true; proxy_protocol_from = [ 10 ]; } );\n"
		  "backend = { address = \"127.0.0.1:25\"; };\n");
	assert_error_line(2, "'listeners[0].proxy_protocol_from' entries must "
			  "be strings, not an integer");
}

struct range_case {
	const char *section;
	const char *key;
	const char *value;
	const char *error;	/* NULL: accepted */
};

static const struct range_case range_cases[] = {
	{ NULL, "workers", "256", NULL },
	{ NULL, "workers", "257", "'workers' = 257 is out of range (0..256)" },
	{ "limits", "max_line_length", "512", NULL },
	{ "limits", "max_line_length", "511",
	  "'limits.max_line_length' = 511 is out of range (512..1M)" },
	{ "limits", "max_data_line_length", "1000", NULL },
	{ "limits", "max_data_line_length", "999",
	  "'limits.max_data_line_length' = 999 is out of range (1000..16M)" },
	{ "limits", "max_pipelined", "0",
	  "'limits.max_pipelined' = 0 is out of range (1..1000)" },
	{ "limits", "max_pipelined", "1", NULL },
	{ "limits", "max_pipelined", "1000", NULL },
	{ "limits", "max_pipelined", "1001",
	  "'limits.max_pipelined' = 1001 is out of range (1..1000)" },
	{ "limits", "max_recipients", "0",
	  "'limits.max_recipients' = 0 is out of range (1..100000)" },
	{ "limits", "max_recipients", "100000", NULL },
	{ "limits", "max_recipients", "100001",
	  "'limits.max_recipients' = 100001 is out of range (1..100000)" },
	{ "limits", "max_recipients", "-1",
	  "'limits.max_recipients' = -1 must not be negative (write integers "
	  "above 2147483647 with an L suffix)" },
	{ "limits", "max_bdat_chunk", "\"1K\"", NULL },
	{ "limits", "max_bdat_chunk", "1023",
	  "'limits.max_bdat_chunk' = 1023 is out of range (1K..16M)" },
	{ "limits", "max_bdat_chunk", "\"16M\"", NULL },
	{ "limits", "max_bdat_chunk", "\"17M\"",
	  "'limits.max_bdat_chunk' = 17M is out of range (1K..16M)" },
	{ "limits", "session_buffer", "\"4K\"", NULL },
	{ "limits", "session_buffer", "4095",
	  "'limits.session_buffer' = 4095 is out of range (4K..16M)" },
	{ "limits", "max_message_size", "1024", NULL },
	{ "limits", "max_message_size", "\"1024G\"", NULL },
	{ "limits", "max_message_size", "1099511627777L",
	  "'limits.max_message_size' = 1099511627777 is out of range (1K..1024G)" },
	{ "limits", "max_message_size", "\"50Q\"",
	  "'limits.max_message_size' = \"50Q\": not a size (a number, "
	  "optionally followed by K, M or G)" },
	{ "limits", "max_message_size", "\"99999999999999999999\"",
	  "'limits.max_message_size' = \"99999999999999999999\": size too large" },
	{ "limits", "max_message_size", "\"\"",
	  "'limits.max_message_size' = \"\": not a size (a number, "
	  "optionally followed by K, M or G)" },
	{ "limits", "max_bad_commands", "0",
	  "'limits.max_bad_commands' = 0 is out of range (1..1000)" },
	{ "limits", "max_connections", "0",
	  "'limits.max_connections' = 0 is out of range (1..1000000)" },
	{ "timeouts", "command", "0",
	  "'timeouts.command' = 0 is out of range (1..86400)" },
	{ "timeouts", "shutdown", "86400", NULL },
	{ "timeouts", "backend_data", "86401",
	  "'timeouts.backend_data' = 86401 is out of range (1..86400)" },
	{ "backend", "capability_refresh", "0",
	  "'backend.capability_refresh' = 0 is out of range (1..86400)" },
	{ "log", "level", "\"loud\"",
	  "'log.level' = \"loud\" is not one of \"err\", \"warning\", "
	  "\"notice\", \"info\", \"debug\"" },
	{ "log", "facility", "\"local8\"",
	  "'log.facility' = \"local8\" is not one of \"mail\", \"daemon\", "
	  "\"user\", \"local0\", \"local1\", \"local2\", \"local3\", "
	  "\"local4\", \"local5\", \"local6\", \"local7\"" },
	{ "log", "destination", "\"journal\"",
	  "'log.destination' = \"journal\" is not one of \"stderr\", "
	  "\"syslog\", \"file\"" },
	{ NULL, "bare_newline", "\"strip\"",
	  "'bare_newline' = \"strip\" is not one of \"reject\", \"normalize\"" },
	{ NULL, "bare_newline", "\"normalize\"", NULL },
	{ "sasl", "max_failures", "0",
	  "'sasl.max_failures' = 0 is out of range (1..100)" },
	{ "sasl", "max_failures", "1", NULL },
	{ "sasl", "max_failures", "100", NULL },
	{ "sasl", "max_failures", "101",
	  "'sasl.max_failures' = 101 is out of range (1..100)" },
	{ "sasl", "failure_delay_ms", "0", NULL },
	{ "sasl", "failure_delay_ms", "60000", NULL },
	{ "sasl", "failure_delay_ms", "60001",
	  "'sasl.failure_delay_ms' = 60001 is out of range (0..60000)" },
	{ "sasl", "allow_authzid", "1",
	  "'sasl.allow_authzid' must be a boolean (true or false), not an "
	  "integer" },
	{ "sasl", "service", "\"\"", "'sasl.service' = \"\": must not be empty" },
	{ "sasl", "app_name", "\"\"", "'sasl.app_name' = \"\": must not be empty" },
	{ "sasl", "app_name", "\"msa proxy\"",
	  "'sasl.app_name' = \"msa proxy\": only printable characters "
	  "without spaces are allowed" },
	{ "sasl", "hostname", "\"bad host\"",
	  "'sasl.hostname' = \"bad host\": not a domain name (letters, "
	  "digits, '-', '.', '_')" },
	{ "sasl", "mechanisms", "\"\"",
	  "'sasl.mechanisms' = \"\": must name at least one mechanism" },
	{ "sasl", "mechanisms", "\"  \"",
	  "'sasl.mechanisms' = \"  \": must name at least one mechanism" },
	{ "sasl", "mechanisms", "\"PLAIN\"", NULL },
	{ "sasl", "mechanisms", "\" EXTERNAL  PLAIN \"", NULL },
	{ "sasl", "mechanisms", "\"ABCDEFGHIJ-_0123456Z\"", NULL },
	{ "sasl", "mechanisms", "\"ABCDEFGHIJ-_0123456ZZ\"",
	  "'sasl.mechanisms' = \"ABCDEFGHIJ-_0123456ZZ\": a mechanism name "
	  "has at most 20 characters" },
	{ "sasl", "mechanisms", "\"GSSAPI plain\"",
	  "'sasl.mechanisms' = \"GSSAPI plain\": mechanism names are "
	  "space-separated and have only upper-case letters, digits, '-' "
	  "and '_'" },
	{ "sasl", "mechanisms", "\"CRAM/MD5\"",
	  "'sasl.mechanisms' = \"CRAM/MD5\": mechanism names are "
	  "space-separated and have only upper-case letters, digits, '-' "
	  "and '_'" },
	{ "sasl", "mechanisms", "\"PLAIN,LOGIN\"",
	  "'sasl.mechanisms' = \"PLAIN,LOGIN\": mechanism names are "
	  "space-separated and have only upper-case letters, digits, '-' "
	  "and '_'" },
	{ "sasl", "sender_domains", "\"example.org mail.example.net\"", NULL },
	{ "sasl", "sender_domains", "\"example.org [192.0.2.1]\"",
	  "'sasl.sender_domains' = \"example.org [192.0.2.1]\": not a "
	  "domain name" },
	{ "sasl", "sender_domains", "\"example.org,example.net\"",
	  "'sasl.sender_domains' = \"example.org,example.net\": not a "
	  "domain name (letters, digits, '-', '.', '_')" },
	{ "sasl", "realm", "\"EXAMPLE.ORG\"", NULL },
	{ "sasl", "keytab", "\"/etc/a\\nb\"",
	  "'sasl.keytab' = \"/etc/a\\x0ab\": control characters are not "
	  "allowed in a path" },
	{ "sasl", "colour", "true", "unknown key 'colour' in section 'sasl'" },
	{ "audit", "rotate_size", "0", NULL },
	{ "audit", "rotate_size", "\"4K\"", NULL },
	{ "audit", "rotate_size", "\"1K\"",
	  "'audit.rotate_size' must be 0 (no size rotation) or at least 4K" },
	{ "audit", "rotate_interval", "0", NULL },
	{ "audit", "rotate_interval", "2678401",
	  "'audit.rotate_interval' = 2678401 is out of range (0..2678400)" },
	{ "audit", "timeout", "0",
	  "'audit.timeout' = 0 is out of range (1..3600)" },
	{ "audit", "timeout", "3600", NULL },
	{ "audit", "fsync", "1",
	  "'audit.fsync' must be a boolean (true or false), not an integer" },
	{ "audit", "syslog_address", "\"127.0.0.1:514\"", NULL },
	{ "audit", "syslog_address", "\"localhost:514\"",
	  "'audit.syslog_address' = \"localhost:514\": not a numeric IPv4 "
	  "address (host names are not resolved)" },
	{ "audit", "file", "\"relative.log\"", NULL },	/* not enabled */
	{ "audit", "colour", "true", "unknown key 'colour' in section 'audit'" },
};

static void
test_ranges(void **state)
{
	char text[1024];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(range_cases) / sizeof(range_cases[0]); i++) {
		const struct range_case *c = &range_cases[i];
		struct conf *conf;

		/* The key is always on line 4. */
		if (c->section == NULL)
			snprintf(text, sizeof(text), MINIMAL "\n%s = %s;\n",
				 c->key, c->value);
		else if (strcmp(c->section, "backend") == 0)
			snprintf(text, sizeof(text),
				 "listeners = ( { name = \"s\"; "
				 "address = \"127.0.0.1:587\"; } );\n"
				 "backend = {\n  address = \"127.0.0.1:25\";\n"
				 "  %s = %s;\n};\n", c->key, c->value);
		else
			snprintf(text, sizeof(text),
				 MINIMAL "%s = {\n  %s = %s;\n};\n",
				 c->section, c->key, c->value);
		conf = load_text(text);
		if (c->error == NULL) {
			if (conf == NULL)
				fail_msg("%s = %s rejected:\n%s", c->key,
					 c->value, errbuf);
			conf_free(&conf);
		} else {
			if (conf != NULL)
				fail_msg("%s = %s accepted", c->key, c->value);
			assert_error_line(4, c->error);
			assert_int_equal(error_count(), 1);
		}
	}
}

/* The audit section's checks across keys. */
static void
test_audit(void **state)
{
	struct conf *conf;

	(void)state;
	conf = load_ok(MINIMAL "audit = {\n  enabled = true;\n"
		       "  file = \"/var/log/a.log\";\n  verdict_fsync = true;\n"
		       "  syslog = true;\n  syslog_address = \"/run/log\";\n};\n");
	assert_int_equal(conf->audit.enabled, 1);
	assert_string_equal(conf->audit.file, "/var/log/a.log");
	assert_int_equal(conf->audit.verdict_fsync, 1);
	assert_string_equal(conf->audit.syslog_address.text, "/run/log");
	conf_free(&conf);
	conf = load_ok(MINIMAL "audit = {\n  enabled = true;\n"
		       "  pending_sync = \"before_reply\";\n};\n");
	assert_int_equal(conf->audit.pending_sync, AUDIT_PENDING_BEFORE_REPLY);
	conf_free(&conf);
	conf = load_text(MINIMAL "audit = {\n  enabled = true;\n"
			 "  pending_sync = \"later\";\n};\n");
	assert_null(conf);
	/* enabled: the file must be absolute, the key file readable */
	conf = load_text(MINIMAL "audit = {\n  enabled = true;\n"
			 "  file = \"audit.log\";\n};\n");
	assert_null(conf);
	assert_error_line(5, "'audit.file' must be an absolute path");
	conf = load_text(MINIMAL "audit = {\n  enabled = true;\n"
			 "  hmac_key_file = \"/nonexistent/key\";\n};\n");
	assert_null(conf);
	assert_error_line(5, "'audit.hmac_key_file' /nonexistent/key: No such "
			  "file or directory");
	assert_int_equal(error_count(), 1);
}

static void
test_sizes(void **state)
{
	struct conf *conf;

	(void)state;
	conf = load_ok(MINIMAL "limits = {\n"
		       "  max_message_size = 2199023255L;\n"
		       "  max_bdat_chunk = \"1m\";\n"
		       "  session_buffer = 1048576;\n"
		       "  max_line_length = \"2K\";\n"
		       "  max_data_line_length = 1000;\n"
		       "};\n");
	assert_int_equal(conf->limits.max_message_size, 2199023255ULL);
	assert_int_equal(conf->limits.max_bdat_chunk, 1024 * 1024);
	assert_int_equal(conf->limits.session_buffer, 1024 * 1024);
	assert_int_equal(conf->limits.max_line_length, 2048);
	assert_int_equal(conf->limits.max_data_line_length, 1000);
	conf_free(&conf);

	conf = load_ok(MINIMAL "limits = { max_message_size = \"1G\"; };\n");
	assert_int_equal(conf->limits.max_message_size, 1024ULL * 1024 * 1024);
	conf_free(&conf);
	conf = load_ok(MINIMAL "limits = { max_message_size = \"10k\"; };\n");
	assert_int_equal(conf->limits.max_message_size, 10240);
	conf_free(&conf);
	conf = load_ok(MINIMAL "limits = { max_message_size = \"123456\"; };\n");
	assert_int_equal(conf->limits.max_message_size, 123456);
	conf_free(&conf);

	load_fail(MINIMAL "limits = { max_message_size = \"5 M\"; };\n");
	load_fail(MINIMAL "limits = { max_message_size = \"M\"; };\n");
	load_fail(MINIMAL "limits = { max_message_size = \"5MB\"; };\n");
	load_fail(MINIMAL "limits = { max_message_size = \"-5M\"; };\n");

	/* A command line must fit in the session buffer. */
	load_fail(MINIMAL "limits = {\n  max_line_length = \"8K\";\n"
		  "  session_buffer = \"4K\";\n};\n");
	assert_error_line(3, "'limits.max_line_length' (8192) must not exceed "
			  "'limits.session_buffer' (4096)");
	assert_int_equal(error_count(), 1);
}

static void
test_log_names(void **state)
{
	static const struct {
		const char *name;
		int value;
	} levels[] = {
		{ "err", LOG_ERR }, { "warning", LOG_WARNING },
		{ "notice", LOG_NOTICE }, { "info", LOG_INFO },
		{ "debug", LOG_DEBUG },
	}, facilities[] = {
		{ "mail", LOG_MAIL }, { "daemon", LOG_DAEMON },
		{ "user", LOG_USER }, { "local0", LOG_LOCAL0 },
		{ "local1", LOG_LOCAL1 }, { "local2", LOG_LOCAL2 },
		{ "local3", LOG_LOCAL3 }, { "local4", LOG_LOCAL4 },
		{ "local5", LOG_LOCAL5 }, { "local6", LOG_LOCAL6 },
		{ "local7", LOG_LOCAL7 },
	};
	char text[1024];
	struct conf *conf;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		snprintf(text, sizeof(text), MINIMAL "log = { level = \"%s\"; };\n",
			 levels[i].name);
		conf = load_ok(text);
		assert_int_equal(conf->log.level, levels[i].value);
		conf_free(&conf);
	}
	for (i = 0; i < sizeof(facilities) / sizeof(facilities[0]); i++) {
		snprintf(text, sizeof(text),
			 MINIMAL "log = { destination = \"syslog\"; "
			 "facility = \"%s\"; };\n", facilities[i].name);
		conf = load_ok(text);
		assert_int_equal(conf->log.facility, facilities[i].value);
		assert_int_equal(conf->log.dest, LOG_DEST_SYSLOG);
		conf_free(&conf);
	}

	conf = load_ok(MINIMAL "log = { destination = \"file\"; "
		       "file = \"/var/log/msaproxy.log\"; ident = \"msa-1\"; };\n");
	assert_int_equal(conf->log.dest, LOG_DEST_FILE);
	assert_string_equal(conf->log.file, "/var/log/msaproxy.log");
	assert_string_equal(conf->log.ident, "msa-1");
	conf_free(&conf);

	load_fail(MINIMAL "\nlog = {\n  destination = \"file\";\n};\n");
	assert_error_line(4, "'log.file' must be set when 'log.destination' "
			  "is \"file\"");
	load_fail(MINIMAL "log = { ident = \"\"; };\n");
	assert_error_line(3, "'log.ident' must not be empty");
}

static void
test_listeners(void **state)
{
	struct conf *conf;

	(void)state;
	/* "submissions" needs a tls section. */
	conf = load_ok(with_dir("listeners = (\n"
		       "  { name = \"sub\"; address = \"0.0.0.0:587\"; },\n"
		       "  { name = \"subs\"; kind = \"submissions\";\n"
		       "    address = \"[::]:465\"; },\n"
		       "  { name = \"lb\"; kind = \"smtp\"; address = \"/run/msa.sock\";\n"
		       "    proxy_protocol = true;\n"
		       "    proxy_protocol_from = [ \"10.0.0.0/8\", \"2001:db8::/32\",\n"
		       "                            \"192.0.2.7\" ]; },\n"
		       "  { name = \"l\"; kind = \"LMTP\"; address = \"127.0.0.1:24\"; }\n"
		       ");\n"
		       "backend = { address = \"127.0.0.1:25\"; };\n" TLS_ONE));
	assert_int_equal(conf->listener_count, 4);
	assert_int_equal(conf->listeners[0].kind, LISTENER_SUBMISSION);
	assert_int_equal(conf->listeners[0].line, 2);
	assert_int_equal(conf->listeners[1].kind, LISTENER_SUBMISSIONS);
	assert_int_equal(conf->listeners[1].addr.ss.ss_family, AF_INET6);
	assert_int_equal(conf->listeners[1].line, 3);
	assert_int_equal(conf->listeners[2].kind, LISTENER_SMTP);
	assert_true(conf->listeners[2].addr.is_unix);
	assert_int_equal(conf->listeners[2].proxy_protocol, 1);
	assert_int_equal(conf->listeners[2].proxy_from_count, 3);
	assert_int_equal(conf->listeners[2].proxy_from[0].family, AF_INET);
	assert_int_equal(conf->listeners[2].proxy_from[0].prefix, 8);
	assert_int_equal(conf->listeners[2].proxy_from[1].family, AF_INET6);
	assert_int_equal(conf->listeners[2].proxy_from[1].prefix, 32);
	assert_int_equal(conf->listeners[2].proxy_from[2].prefix, 32);
	assert_int_equal(conf->listeners[3].kind, LISTENER_LMTP);
	assert_string_equal(conf->listeners[3].name, "l");
	conf_free(&conf);

	assert_string_equal(conf_listener_kind_name(LISTENER_SUBMISSION),
			    "submission");
	assert_string_equal(conf_listener_kind_name(LISTENER_SUBMISSIONS),
			    "submissions");
	assert_string_equal(conf_listener_kind_name(LISTENER_SMTP), "smtp");
	assert_string_equal(conf_listener_kind_name(LISTENER_LMTP), "lmtp");
}

static void
test_burl(void **state)
{
	struct conf *conf;
	const struct conf_imap_server *is;

	(void)state;
	conf = load_ok(MINIMAL);
	assert_int_equal(conf->burl.enabled, 0);
	conf_free(&conf);
	conf = load_ok(with_dir(MINIMAL
		"burl = {\n"
		"  require_tls = true;\n"
		"  fetch_tls = \"always\";\n"
		"  local_domains = \"example.com EXAMPLE.COM\";\n"
		"  imap_servers = (\n"
		"    { name = \"cyrus\"; authority = \"Imap.Example.COM\";\n"
		"      address = \"192.0.2.10:143\";\n"
		"      keytab = \"@/submit.keytab\"; principal = \"submit@EXAMPLE.COM\"; },\n"
		"    { name = \"dovecot\"; authority = \"mail.example.com:993\";\n"
		"      address = \"192.0.2.11:993\"; tls = \"implicit\";\n"
		"      credentials = \"password\"; user = \"submit\";\n"
		"      password_file = \"@/pw\"; mode = \"proxy-authorization\";\n"
		"      max_connections = 4; max_idle_connections = 2; }\n"
		"  );\n"
		"};\n"));
	assert_int_equal(conf->burl.enabled, 1);
	assert_int_equal(conf->burl.require_auth, 1);
	assert_int_equal(conf->burl.require_tls, 1);
	assert_int_equal(conf->burl.fetch_tls, CONF_BURL_FETCH_TLS_ALWAYS);
	assert_int_equal(conf->burl.fetch_timeout, 60);
	assert_int_equal(conf->burl.max_bad_burl, 10);
	assert_int_equal(conf->burl.server_count, 2);
	is = &conf->burl.servers[0];
	assert_int_equal(is->tls, CONF_IMAP_TLS_STARTTLS);
	assert_int_equal(is->credentials, CONF_IMAP_CRED_KERBEROS);
	assert_int_equal(is->mode, CONF_IMAP_MODE_URLAUTH);
	/* names default to the authority's host */
	assert_string_equal(is->tls_verify_name, "Imap.Example.COM");
	assert_string_equal(is->service_host, "Imap.Example.COM");
	is = &conf->burl.servers[1];
	assert_int_equal(is->mode, CONF_IMAP_MODE_PROXY_AUTH);
	assert_string_equal(is->tls_verify_name, "mail.example.com");
	assert_int_equal(is->max_connections, 4);
	assert_int_equal(is->max_idle_connections, 2);
	conf_free(&conf);

	/* every problem, with its line */
	load_fail(MINIMAL
		"burl = {\n"
		"  imap_servers = (\n"
		"    { name = \"a\"; authority = \"x.example\"; address = \"192.0.2.1:143\"; },\n"
		"    { name = \"a\"; authority = \"X.example\"; address = \"192.0.2.1:143\";\n"
		"      credentials = \"password\"; },\n"
		"    { name = \"b\"; authority = \"bad host\"; address = \"192.0.2.1:143\";\n"
		"      keytab = \"/k\"; max_idle_connections = 9; max_connections = 8; }\n"
		"  );\n"
		"};\n");
	assert_true(strstr(errbuf, "is \"kerberos\" but") != NULL);
	assert_true(strstr(errbuf, "is \"password\" but") != NULL);
	assert_true(strstr(errbuf, "authority \"X.example\" appears twice") != NULL);
	assert_true(strstr(errbuf, "name \"a\" appears twice") != NULL);
	assert_true(strstr(errbuf, "authority") != NULL);
	load_fail(MINIMAL "burl = { imap_servers = (); };\n");
	assert_true(strstr(errbuf, "lists no server") != NULL);
}


/* burl.mailhost: $M's directory. */
#define BURL_ONE \
	"burl = {\n" \
	"  imap_servers = ( { name = \"i\"; authority = \"imap1.example.com\";\n" \
	"    address = \"192.0.2.10:143\"; keytab = \"/k\"; } );\n"

static void
test_burl_mailhost(void **state)
{
	const struct conf_mailhost *m;
	struct conf *conf;

	(void)state;
	/* no group: no directory, defaults in place */
	conf = load_ok(MINIMAL BURL_ONE "};\n");
	m = &conf->burl.mailhost;
	assert_int_equal(m->enabled, 0);
	assert_string_equal(m->ldap_filter, "(uid=%u)");
	assert_string_equal(m->ldap_attribute, "mailHost");
	assert_int_equal(m->cache_ttl, 300);
	assert_int_equal(m->negative_ttl, 60);
	assert_int_equal(m->cache_size, 10000);
	assert_int_equal(m->timeout, 5);
	assert_int_equal(m->ldap_starttls, 0);
	conf_free(&conf);

	/* a map file only */
	conf = load_ok(with_dir(MINIMAL BURL_ONE
		"  mailhost = { map_file = \"@/ca.pem\"; };\n"
		"};\n"));
	m = &conf->burl.mailhost;
	assert_int_equal(m->enabled, 1);
	assert_string_equal(m->ldap_uri, "");
	conf_free(&conf);

	/* every key */
	conf = load_ok(with_dir(MINIMAL BURL_ONE
		"  mailhost = {\n"
		"    map_file = \"@/ca.pem\";\n"
		"    ldap_uri = \"ldap://ldap.example.com:3389/\";\n"
		"    ldap_base = \"ou=people,dc=example,dc=com\";\n"
		"    ldap_filter = \"(&(objectClass=inetOrgPerson)(|(uid=%u)(mail=%u@x)))\";\n"
		"    ldap_attribute = \"mailRoutingHost-2\";\n"
		"    ldap_bind_dn = \"cn=msaproxy,dc=example,dc=com\";\n"
		"    ldap_bind_password_file = \"@/rsa.key\";\n"
		"    ldap_starttls = true;\n"
		"    ldap_ca_file = \"@/ca.pem\";\n"
		"    cache_ttl = 0; negative_ttl = 86400; cache_size = 1000000;\n"
		"    timeout = 300;\n"
		"  };\n"
		"};\n"));
	m = &conf->burl.mailhost;
	assert_int_equal(m->enabled, 1);
	assert_string_equal(m->ldap_uri, "ldap://ldap.example.com:3389/");
	assert_string_equal(m->ldap_base, "ou=people,dc=example,dc=com");
	assert_string_equal(m->ldap_attribute, "mailRoutingHost-2");
	assert_int_equal(m->ldap_starttls, 1);
	assert_int_equal(m->cache_ttl, 0);
	assert_int_equal(m->negative_ttl, 86400);
	assert_int_equal(m->cache_size, 1000000);
	assert_int_equal(m->timeout, 300);
	conf_free(&conf);

	/* URI forms */
	conf = load_ok(MINIMAL BURL_ONE
		"  mailhost = { ldap_uri = \"LDAPS://[2001:db8::1]:636\";\n"
		"    ldap_base = \"dc=x\"; ldap_attribute = \"2.16.840.1.113730.3.1.18\"; };\n"
		"};\n");
	conf_free(&conf);
}

static void
test_burl_mailhost_errors(void **state)
{
	(void)state;
	/* an empty group */
	load_fail(MINIMAL BURL_ONE
		"  mailhost = { };\n"			/* line 5 */
		"};\n");
	assert_error_line(6, "'burl.mailhost' sets neither 'map_file' nor "
	    "'ldap_uri': $M would have no directory");

	/* keys that go together; files that must be readable */
	load_fail(MINIMAL BURL_ONE
		"  mailhost = {\n"			/* 6 */
		"    ldap_uri = \"ldaps://ldap.example.com\";\n"
		"    ldap_starttls = true;\n"
		"    ldap_bind_dn = \"cn=x\";\n"
		"    map_file = \"/nonexistent/map\";\n"	/* 10 */
		"  };\n"
		"};\n");
	assert_error_line(6, "'burl.mailhost.ldap_uri' is set but "
	    "'burl.mailhost.ldap_base' is empty");
	assert_error_line(6, "'burl.mailhost.ldap_starttls' cannot be used "
	    "with an ldaps:// URI (TLS from the start)");
	assert_error_line(6, "'burl.mailhost.ldap_bind_dn' and "
	    "'burl.mailhost.ldap_bind_password_file' go together");
	assert_error_line(10, "'burl.mailhost.map_file' /nonexistent/map: "
	    "No such file or directory");
	assert_int_equal(error_count(), 4);

	/* values, each on its own line */
	load_fail(MINIMAL BURL_ONE
		"  mailhost = {\n"				/* 6 */
		"    ldap_uri = \"http://ldap.example.com\";\n"	/* 7 */
		"    ldap_filter = \"uid=%u\";\n"		/* 8 */
		"    ldap_attribute = \"mail host\";\n"	/* 9 */
		"    timeout = 0;\n"				/* 10 */
		"    cache_size = 1000001;\n"			/* 11 */
		"    negative_ttl = 86401;\n"			/* 12 */
		"    ldap_base = \"dc=x\";\n"
		"  };\n"
		"};\n");
	assert_error_line(7, "'burl.mailhost.ldap_uri' = "
	    "\"http://ldap.example.com\": must start with ldap:// or ldaps://");
	assert_error_line(8, "'burl.mailhost.ldap_filter' = \"uid=%u\": must "
	    "be a parenthesized filter such as \"(uid=%u)\"");
	assert_error_line(9, "'burl.mailhost.ldap_attribute' = \"mail host\": "
	    "not an attribute name (letters, digits, '-'; or a numeric OID)");
	assert_error_line(10, "'burl.mailhost.timeout' = 0 is out of range "
	    "(1..300)");
	assert_error_line(11, "'burl.mailhost.cache_size' = 1000001 is out of "
	    "range (0..1000000)");
	assert_error_line(12, "'burl.mailhost.negative_ttl' = 86401 is out of "
	    "range (0..86400)");

	/* filters */
	load_fail(MINIMAL BURL_ONE
		"  mailhost = { map_file = \"/dev/null\";\n"	/* 6 */
		"    ldap_filter = \"(uid=alice)\"; };\n"	/* 7 */
		"};\n");
	assert_error_line(7, "'burl.mailhost.ldap_filter' = \"(uid=alice)\": "
	    "must contain %u (the user)");
	load_fail(MINIMAL BURL_ONE
		"  mailhost = { map_file = \"/dev/null\";\n"
		"    ldap_filter = \"(&(uid=%u)\"; };\n"
		"};\n");
	assert_error_line(7, "'burl.mailhost.ldap_filter' = \"(&(uid=%u)\": "
	    "unbalanced parentheses");
	load_fail(MINIMAL BURL_ONE
		"  mailhost = { map_file = \"/dev/null\";\n"
		"    ldap_filter = \"(uid=%u)(cn=%u)\"; };\n"
		"};\n");
	assert_error_line(7, "'burl.mailhost.ldap_filter' = \"(uid=%u)(cn=%u)\": "
	    "unbalanced parentheses");
	load_fail(MINIMAL BURL_ONE
		"  mailhost = { map_file = \"/dev/null\";\n"
		"    ldap_filter = \"(uid=%s)\"; };\n"
		"};\n");
	assert_error_line(7, "'burl.mailhost.ldap_filter' = \"(uid=%s)\": "
	    "'%' must be followed by 'u' (the user) or '%'");
	load_fail(MINIMAL BURL_ONE
		"  mailhost = { map_file = \"/dev/null\";\n"
		"    ldap_uri = \"ldap://ldap.example.com/dc=x?mailHost\"; ldap_base = \"dc=x\"; };\n"
		"};\n");
	assert_true(strstr(errbuf, "a DN, attributes or filter in the URI "
	    "are not supported") != NULL);
	load_fail(MINIMAL BURL_ONE
		"  mailhost = { map_file = \"/dev/null\"; unknown = 1; };\n"
		"};\n");
	assert_error_line(6, "unknown key 'unknown' in section 'burl.mailhost'");
}

static void
test_tls(void **state)
{
	struct conf *conf;

	(void)state;
	/* Two default certificates, two SNI sets, every other key set. */
	conf = load_ok(with_dir(MINIMAL
		"tls = {\n"
		"  certificates = (\n"
		"    { cert = \"@/rsa.pem\"; key = \"@/rsa.key\"; },\n"
		"    { cert = \"@/ec.pem\"; key = \"@/ec.key\"; }\n"
		"  );\n"
		"  sni = (\n"
		"    { name = \"mail.example.org\";\n"
		"      certificates = ( { cert = \"@/sni.pem\"; key = \"@/sni.key\"; } ); },\n"
		"    { name = \"*.example.net\";\n"
		"      certificates = ( { cert = \"@/rsa.pem\"; key = \"@/rsa.key\"; },\n"
		"                       { cert = \"@/ec.pem\"; key = \"@/ec.key\"; } ); }\n"
		"  );\n"
		"  min_protocol = \"tlsv1.3\";\n"
		"  ciphers = \"ECDHE+AESGCM:!aNULL\";\n"
		"  ciphersuites = \"TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256\";\n"
		"  groups = \"X25519:P-256\";\n"
		"  client_ca_file = \"@/ca.pem\";\n"
		"  verify_client = \"optional\";\n"
		"  session_tickets = false;\n"
		"  handshake_timeout = 3600;\n"
		"};\n"));
	assert_int_equal(conf->tls.enabled, 1);
	assert_int_equal(conf->tls.sni_count, 3);
	assert_string_equal(conf->tls.sni[0].name, "");
	assert_int_equal(conf->tls.sni[0].cert_count, 2);
	assert_string_equal(conf->tls.sni[0].certs[0].cert_file,
			    with_dir("@/rsa.pem"));
	assert_string_equal(conf->tls.sni[0].certs[0].key_file,
			    with_dir("@/rsa.key"));
	assert_string_equal(conf->tls.sni[0].certs[1].cert_file,
			    with_dir("@/ec.pem"));
	assert_string_equal(conf->tls.sni[0].certs[1].key_file,
			    with_dir("@/ec.key"));
	assert_string_equal(conf->tls.sni[1].name, "mail.example.org");
	assert_int_equal(conf->tls.sni[1].cert_count, 1);
	assert_string_equal(conf->tls.sni[1].certs[0].cert_file,
			    with_dir("@/sni.pem"));
	assert_string_equal(conf->tls.sni[1].certs[0].key_file,
			    with_dir("@/sni.key"));
	assert_string_equal(conf->tls.sni[2].name, "*.example.net");
	assert_int_equal(conf->tls.sni[2].cert_count, 2);
	assert_string_equal(conf->tls.sni[2].certs[1].key_file,
			    with_dir("@/ec.key"));
	/* Written in any case, stored as the TLS module compares it. */
	assert_string_equal(conf->tls.min_protocol, "TLSv1.3");
	assert_string_equal(conf->tls.ciphers, "ECDHE+AESGCM:!aNULL");
	assert_string_equal(conf->tls.ciphersuites,
			    "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
	assert_string_equal(conf->tls.groups, "X25519:P-256");
	assert_string_equal(conf->tls.client_ca_file, with_dir("@/ca.pem"));
	assert_int_equal(conf->tls.verify_client, 1);
	assert_int_equal(conf->tls.session_tickets, 0);
	assert_int_equal(conf->tls.handshake_timeout, 3600);
	/* With TLS, the submission listener offers STARTTLS. */
	assert_int_equal(conf->listeners[0].starttls, 1);
	assert_int_equal(conf->listeners[0].require_auth, 1);
	conf_free(&conf);

	/* The smallest tls section: defaults for the rest. */
	conf = load_ok(with_dir(MINIMAL TLS_ONE));
	assert_int_equal(conf->tls.enabled, 1);
	assert_int_equal(conf->tls.sni_count, 1);
	assert_string_equal(conf->tls.sni[0].name, "");
	assert_int_equal(conf->tls.sni[0].cert_count, 1);
	assert_string_equal(conf->tls.min_protocol, "TLSv1.2");
	assert_string_equal(conf->tls.ciphers, "");
	assert_int_equal(conf->tls.verify_client, 0);
	assert_int_equal(conf->tls.session_tickets, 1);
	assert_int_equal(conf->tls.handshake_timeout, 30);
	conf_free(&conf);

	conf = load_ok(with_dir(MINIMAL
		"tls = {\n"
		"  certificates = ( { cert = \"@/rsa.pem\"; key = \"@/rsa.key\"; } );\n"
		"  min_protocol = \"TLSv1.2\";\n"
		"  client_ca_file = \"@/ca.pem\";\n"
		"  verify_client = \"REQUIRE\";\n"
		"  handshake_timeout = 1;\n"
		"};\n"));
	assert_string_equal(conf->tls.min_protocol, "TLSv1.2");
	assert_int_equal(conf->tls.verify_client, 2);
	assert_int_equal(conf->tls.handshake_timeout, 1);
	assert_int_equal(conf->tls.sni_count, 1);
	conf_free(&conf);

	/* Up to CONF_MAX_CERTS certificates and CONF_MAX_SNI - 1 SNI sets. */
	{
		char text[8192];
		size_t len, i;

		len = (size_t)snprintf(text, sizeof(text), MINIMAL
			"tls = { certificates = (\n");
		for (i = 0; i < CONF_MAX_CERTS; i++)
			len += (size_t)snprintf(text + len, sizeof(text) - len,
				"%s{ cert = \"@/rsa.pem\"; key = \"@/rsa.key\"; }\n",
				i > 0 ? "," : "");
		len += (size_t)snprintf(text + len, sizeof(text) - len,
					");\nsni = (\n");
		for (i = 1; i < CONF_MAX_SNI; i++)
			len += (size_t)snprintf(text + len, sizeof(text) - len,
				"%s{ name = \"h%zu.example.org\"; certificates = "
				"( { cert = \"@/sni.pem\"; key = \"@/sni.key\"; } ); }\n",
				i > 1 ? "," : "", i);
		snprintf(text + len, sizeof(text) - len, "); };\n");
		conf = load_ok(with_dir(text));
		assert_int_equal(conf->tls.sni_count, CONF_MAX_SNI);
		assert_int_equal(conf->tls.sni[0].cert_count, CONF_MAX_CERTS);
		assert_string_equal(conf->tls.sni[CONF_MAX_SNI - 1].name,
				    "h15.example.org");
		conf_free(&conf);
	}
}

static void
test_tls_errors(void **state)
{
	char text[8192];
	size_t len, i;

	(void)state;
	/* A tls section needs certificates. */
	load_fail(MINIMAL "\ntls = {\n  min_protocol = \"TLSv1.3\";\n};\n");
	assert_error_line(4, "missing key 'certificates' in section 'tls'");
	assert_int_equal(error_count(), 1);
	load_fail(MINIMAL "tls = { };\n");
	assert_error_line(3, "missing key 'certificates' in section 'tls'");
	assert_int_equal(error_count(), 1);
	load_fail(MINIMAL "tls = {\n  certificates = ( );\n};\n");
	assert_error_line(4, "'tls.certificates' must have at least one entry");
	assert_int_equal(error_count(), 1);
	load_fail(MINIMAL "tls = {\n  certificates = \"/etc/cert.pem\";\n};\n");
	assert_error_line(4, "'tls.certificates' must be a list of groups "
			  "( { ... }, { ... } ), not a string");
	assert_int_equal(error_count(), 1);
	load_fail(MINIMAL "tls = true;\n");
	assert_error_line(3, "'tls' must be a group { }, not a boolean");
	assert_int_equal(error_count(), 1);

	/* Each entry needs both files, readable now. */
	load_fail(with_dir(MINIMAL "tls = {\n  certificates = (\n"
		  "    { cert = \"@/rsa.pem\"; },\n"
		  "    { key = \"@/rsa.key\"; },\n"
		  "    { cert = \"\"; key = \"@/rsa.key\"; }\n"
		  "  );\n};\n"));
	assert_error_line(5, "missing key 'key' in section 'tls.certificates[0]'");
	assert_error_line(6, "missing key 'cert' in section 'tls.certificates[1]'");
	assert_error_line(7, "'tls.certificates[2].cert' = \"\": must not be empty");
	assert_int_equal(error_count(), 3);

	load_fail(with_dir(MINIMAL "tls = {\n  certificates = (\n"
		  "    { cert = \"@/rsa.pem\"; key = \"@/rsa.key\"; },\n"
		  "    { cert = \"/nonexistent/ecdsa.pem\";\n"
		  "      key = \"@/missing.key\"; }\n"
		  "  );\n};\n"));
	assert_error_line(6, "'tls.certificates[1].cert' /nonexistent/ecdsa.pem: "
			  "No such file or directory");
	snprintf(text, sizeof(text), "'tls.certificates[1].key' %s/missing.key: "
		 "No such file or directory", tls_dir);
	assert_error_line(7, text);
	assert_int_equal(error_count(), 2);

	/* Whatever access() says is reported, here ENOTDIR. */
	load_fail(with_dir(MINIMAL "tls = {\n  certificates = (\n"
		  "    { cert = \"@/rsa.pem/x\"; key = \"@/rsa.key\"; }\n"
		  "  );\n};\n"));
	snprintf(text, sizeof(text), "'tls.certificates[0].cert' %s/rsa.pem/x: "
		 "Not a directory", tls_dir);
	assert_error_line(5, text);
	assert_int_equal(error_count(), 1);

	/* At most CONF_MAX_CERTS certificates. */
	len = (size_t)snprintf(text, sizeof(text), MINIMAL
			       "tls = { certificates = (\n");
	for (i = 0; i < CONF_MAX_CERTS + 1; i++)
		len += (size_t)snprintf(text + len, sizeof(text) - len,
			"%s{ cert = \"@/rsa.pem\"; key = \"@/rsa.key\"; }\n",
			i > 0 ? "," : "");
	snprintf(text + len, sizeof(text) - len, "); };\n");
	load_fail(with_dir(text));
	assert_error_line(3, "'tls.certificates' has 5 entries; at most 4 are "
			  "allowed");
	assert_int_equal(error_count(), 1);

	/* Nothing older than TLS 1.2. */
	load_fail(with_dir(MINIMAL
		  "tls = {\n"
		  "  certificates = ( { cert = \"@/rsa.pem\"; key = \"@/rsa.key\"; } );\n"
		  "  min_protocol = \"TLSv1.1\";\n"
		  "};\n"));
	assert_error_line(5, "'tls.min_protocol' = \"TLSv1.1\": must be "
			  "\"TLSv1.2\" or \"TLSv1.3\" (older protocols are not "
			  "accepted)");
	assert_int_equal(error_count(), 1);
	load_fail(with_dir(MINIMAL
		  "tls = {\n"
		  "  certificates = ( { cert = \"@/rsa.pem\"; key = \"@/rsa.key\"; } );\n"
		  "  min_protocol = \"SSLv3\";\n"
		  "  handshake_timeout = 0;\n"
		  "  verify_client = \"always\";\n"
		  "  ciphers = \"HIGH\\n\";\n"
		  "  session_tickets = \"yes\";\n"
		  "  colour = true;\n"
		  "};\n"));
	assert_error_line(5, "'tls.min_protocol' = \"SSLv3\": must be "
			  "\"TLSv1.2\" or \"TLSv1.3\" (older protocols are not "
			  "accepted)");
	assert_error_line(6, "'tls.handshake_timeout' = 0 is out of range "
			  "(1..3600)");
	assert_error_line(7, "'tls.verify_client' = \"always\" is not one of "
			  "\"none\", \"optional\", \"require\"");
	assert_error_line(8, "'tls.ciphers' = \"HIGH\\x0a\": only printable "
			  "ASCII characters are allowed");
	assert_error_line(9, "'tls.session_tickets' must be a boolean (true or "
			  "false), not a string");
	assert_error_line(10, "unknown key 'colour' in section 'tls'");
	assert_int_equal(error_count(), 6);
	load_fail(with_dir(MINIMAL
		  "tls = { handshake_timeout = 3601;\n"
		  "  certificates = ( { cert = \"@/rsa.pem\"; key = \"@/rsa.key\"; } ); };\n"));
	assert_error_line(3, "'tls.handshake_timeout' = 3601 is out of range "
			  "(1..3600)");
	assert_int_equal(error_count(), 1);

	/* Verifying clients needs something to verify against. */
	load_fail(with_dir(MINIMAL
		  "tls = {\n"
		  "  certificates = ( { cert = \"@/rsa.pem\"; key = \"@/rsa.key\"; } );\n"
		  "  verify_client = \"require\";\n"
		  "};\n"));
	assert_error_line(5, "'tls.verify_client' is \"require\" but "
			  "'tls.client_ca_file' is empty");
	assert_int_equal(error_count(), 1);
	load_fail(with_dir(MINIMAL
		  "tls = {\n"
		  "  certificates = ( { cert = \"@/rsa.pem\"; key = \"@/rsa.key\"; } );\n"
		  "  verify_client = \"optional\";\n"
		  "  client_ca_file = \"\";\n"
		  "};\n"));
	assert_error_line(5, "'tls.verify_client' is \"optional\" but "
			  "'tls.client_ca_file' is empty");
	assert_int_equal(error_count(), 1);
	load_fail(with_dir(MINIMAL
		  "tls = {\n"
		  "  certificates = ( { cert = \"@/rsa.pem\"; key = \"@/rsa.key\"; } );\n"
		  "  client_ca_file = \"/nonexistent/ca.pem\";\n"
		  "};\n"));
	assert_error_line(5, "'tls.client_ca_file' /nonexistent/ca.pem: No such "
			  "file or directory");
	assert_int_equal(error_count(), 1);
}

static void
test_tls_sni_errors(void **state)
{
	char text[8192];
	size_t len, i;

	(void)state;
	load_fail(with_dir(MINIMAL
		  "tls = {\n"
		  "  certificates = ( { cert = \"@/rsa.pem\"; key = \"@/rsa.key\"; } );\n"
		  "  sni = (\n"
		  "    { certificates = ( { cert = \"@/sni.pem\"; key = \"@/sni.key\"; } ); },\n"
		  "    { name = \"a.example.org\"; },\n"
		  "    { name = \"b.example.org\"; certificates = ( ); },\n"
		  "    { name = \"a*.example.org\";\n"
		  "      certificates = ( { cert = \"@/sni.pem\"; key = \"@/sni.key\"; } ); },\n"
		  "    { name = \"*\";\n"
		  "      certificates = ( { cert = \"@/sni.pem\"; key = \"@/sni.key\"; } ); },\n"
		  "    { name = \"[192.0.2.1]\";\n"
		  "      certificates = ( { cert = \"@/sni.pem\"; key = \"@/sni.key\"; } ); },\n"
		  "    { name = \"\";\n"
		  "      certificates = ( { cert = \"@/sni.pem\"; key = \"@/sni.key\"; } ); },\n"
		  "    { name = \"c.example.org\";\n"
		  "      certificates = ( { cert = \"@/sni.pem\"; key = \"/nonexistent/c.key\"; } ); },\n"
		  "    \"d.example.org\"\n"
		  "  );\n"
		  "};\n"));
	assert_error_line(6, "missing key 'name' in section 'tls.sni[0]'");
	assert_error_line(7, "missing key 'certificates' in section 'tls.sni[1]'");
	assert_error_line(8, "'tls.sni[2].certificates' must have at least one "
			  "entry");
	assert_error_line(9, "'tls.sni[3].name' = \"a*.example.org\": a wildcard "
			  "is only allowed as \"*.\" at the start");
	assert_error_line(11, "'tls.sni[4].name' = \"*\": a wildcard is only "
			  "allowed as \"*.\" at the start");
	assert_error_line(13, "'tls.sni[5].name' = \"[192.0.2.1]\": must be a "
			  "host name, not an address literal");
	assert_error_line(15, "'tls.sni[6].name' = \"\": must be a host name or "
			  "\"*.\" and a domain");
	assert_error_line(18, "'tls.sni[7].certificates[0].key' "
			  "/nonexistent/c.key: No such file or directory");
	assert_error_line(20, "'tls.sni[8]' must be a group { }, not a string");
	assert_int_equal(error_count(), 9);

	/* The same name twice (case-blind): the second would never match. */
	load_fail(with_dir(MINIMAL
		  "tls = {\n"
		  "  certificates = ( { cert = \"@/rsa.pem\"; key = \"@/rsa.key\"; } );\n"
		  "  sni = (\n"
		  "    { name = \"*.example.org\";\n"
		  "      certificates = ( { cert = \"@/sni.pem\"; key = \"@/sni.key\"; } ); },\n"
		  "    { name = \"mail.example.org\";\n"
		  "      certificates = ( { cert = \"@/sni.pem\"; key = \"@/sni.key\"; } ); },\n"
		  "    { name = \"*.EXAMPLE.org\";\n"
		  "      certificates = ( { cert = \"@/sni.pem\"; key = \"@/sni.key\"; } ); }\n"
		  "  );\n"
		  "};\n"));
	assert_error_line(10, "duplicate name '*.EXAMPLE.org' in 'tls.sni'");
	assert_int_equal(error_count(), 1);

	/* sni[0] is the default set: CONF_MAX_SNI - 1 entries at most. */
	len = (size_t)snprintf(text, sizeof(text), MINIMAL
		"tls = { certificates = ( { cert = \"@/rsa.pem\"; "
		"key = \"@/rsa.key\"; } );\nsni = (\n");
	for (i = 0; i < CONF_MAX_SNI; i++)
		len += (size_t)snprintf(text + len, sizeof(text) - len,
			"%s{ name = \"h%zu.example.org\"; certificates = "
			"( { cert = \"@/sni.pem\"; key = \"@/sni.key\"; } ); }\n",
			i > 0 ? "," : "", i);
	snprintf(text + len, sizeof(text) - len, "); };\n");
	load_fail(with_dir(text));
	assert_error_line(4, "'tls.sni' has 16 entries; at most 15 are allowed");
	assert_int_equal(error_count(), 1);
}

/* Listener keys that depend on the tls section and on the kind. */
static void
test_listener_tls_auth(void **state)
{
	struct conf *conf;
	size_t i;

	(void)state;
	/* With a tls section: STARTTLS everywhere but on submissions; AUTH
	 * required on submission and submissions only. */
	conf = load_ok(with_dir("listeners = (\n"
		"  { name = \"sub\"; address = \"127.0.0.1:587\"; },\n"
		"  { name = \"subs\"; kind = \"submissions\"; address = \"127.0.0.1:465\"; },\n"
		"  { name = \"mx\"; kind = \"smtp\"; address = \"127.0.0.1:25\"; },\n"
		"  { name = \"lm\"; kind = \"lmtp\"; address = \"127.0.0.1:24\"; }\n"
		");\n"
		"backend = { address = \"127.0.0.1:26\"; };\n" TLS_ONE));
	assert_int_equal(conf->listener_count, 4);
	assert_int_equal(conf->listeners[0].starttls, 1);
	assert_int_equal(conf->listeners[0].require_auth, 1);
	assert_int_equal(conf->listeners[1].starttls, 0);
	assert_int_equal(conf->listeners[1].require_auth, 1);
	assert_int_equal(conf->listeners[2].starttls, 1);
	assert_int_equal(conf->listeners[2].require_auth, 0);
	assert_int_equal(conf->listeners[3].starttls, 1);
	assert_int_equal(conf->listeners[3].require_auth, 0);
	for (i = 0; i < 4; i++) {
		assert_int_equal(conf->listeners[i].require_tls_for_auth, 0);
		assert_string_equal(conf->listeners[i].auth_mechanisms, "");
	}
	conf_free(&conf);

	/* The tls section may come after the listeners: defaults are
	 * resolved once the whole file is read.  Explicit values win. */
	conf = load_ok(with_dir("listeners = (\n"
		"  { name = \"sub\"; address = \"127.0.0.1:587\"; starttls = false;\n"
		"    require_auth = false; require_tls_for_auth = true;\n"
		"    auth_mechanisms = \"SCRAM-SHA-256 GSSAPI\"; },\n"
		"  { name = \"subs\"; kind = \"submissions\"; address = \"127.0.0.1:465\";\n"
		"    starttls = false; require_auth = false; },\n"
		"  { name = \"mx\"; kind = \"smtp\"; address = \"127.0.0.1:25\";\n"
		"    starttls = true; require_auth = true; auth_mechanisms = \"\"; },\n"
		"  { name = \"lm\"; kind = \"lmtp\"; address = \"127.0.0.1:24\";\n"
		"    starttls = false; }\n"
		");\n"
		"backend = { address = \"127.0.0.1:26\"; };\n" TLS_ONE));
	assert_int_equal(conf->listeners[0].starttls, 0);
	assert_int_equal(conf->listeners[0].require_auth, 0);
	assert_int_equal(conf->listeners[0].require_tls_for_auth, 1);
	assert_string_equal(conf->listeners[0].auth_mechanisms,
			    "SCRAM-SHA-256 GSSAPI");
	assert_int_equal(conf->listeners[1].starttls, 0);
	assert_int_equal(conf->listeners[1].require_auth, 0);
	assert_int_equal(conf->listeners[2].starttls, 1);
	assert_int_equal(conf->listeners[2].require_auth, 1);
	assert_int_equal(conf->listeners[3].starttls, 0);
	assert_int_equal(conf->listeners[3].require_auth, 0);
	conf_free(&conf);

	/* Without tls: no STARTTLS; saying so explicitly is fine too. */
	conf = load_ok("listeners = (\n"
		"  { name = \"sub\"; address = \"127.0.0.1:587\"; },\n"
		"  { name = \"mx\"; kind = \"smtp\"; address = \"127.0.0.1:25\"; },\n"
		"  { name = \"lm\"; kind = \"lmtp\"; address = \"127.0.0.1:24\";\n"
		"    starttls = false; require_auth = true; }\n"
		");\n"
		"backend = { address = \"127.0.0.1:26\"; };\n");
	assert_int_equal(conf->tls.enabled, 0);
	assert_int_equal(conf->listeners[0].starttls, 0);
	assert_int_equal(conf->listeners[0].require_auth, 1);
	assert_int_equal(conf->listeners[1].starttls, 0);
	assert_int_equal(conf->listeners[1].require_auth, 0);
	assert_int_equal(conf->listeners[2].starttls, 0);
	assert_int_equal(conf->listeners[2].require_auth, 1);
	conf_free(&conf);
}

static void
test_listener_tls_auth_errors(void **state)
{
	(void)state;
	/* submissions is TLS from the first byte: it needs a tls section. */
	load_fail("listeners = (\n"
		  "  { name = \"subs\";\n"
		  "    kind = \"submissions\";\n"
		  "    address = \"127.0.0.1:465\"; }\n"
		  ");\n"
		  "backend = { address = \"127.0.0.1:26\"; };\n");
	assert_error_line(3, "'listeners[0].kind' is \"submissions\" (implicit "
			  "TLS) but there is no 'tls' section");
	assert_int_equal(error_count(), 1);

	/* STARTTLS needs certificates. */
	load_fail("listeners = (\n"
		  "  { name = \"sub\"; address = \"127.0.0.1:587\"; },\n"
		  "  { name = \"mx\"; kind = \"smtp\"; address = \"127.0.0.1:25\";\n"
		  "    starttls = true; }\n"
		  ");\n"
		  "backend = { address = \"127.0.0.1:26\"; };\n");
	assert_error_line(4, "'listeners[1].starttls' is true but there is no "
			  "'tls' section");
	assert_int_equal(error_count(), 1);

	/* ...and makes no sense on submissions. */
	load_fail(with_dir("listeners = (\n"
		  "  { name = \"subs\"; kind = \"submissions\";\n"
		  "    address = \"127.0.0.1:465\";\n"
		  "    starttls = true; }\n"
		  ");\n"
		  "backend = { address = \"127.0.0.1:26\"; };\n" TLS_ONE));
	assert_error_line(4, "'listeners[0].starttls' must not be true on a "
			  "\"submissions\" listener (TLS starts at connect)");
	assert_int_equal(error_count(), 1);

	/* A broken tls section is reported once, not again per listener. */
	load_fail("listeners = (\n"
		  "  { name = \"subs\"; kind = \"submissions\";\n"
		  "    address = \"127.0.0.1:465\"; }\n"
		  ");\n"
		  "backend = { address = \"127.0.0.1:26\"; };\n"
		  "tls = { };\n");
	assert_error_line(6, "missing key 'certificates' in section 'tls'");
	assert_int_equal(error_count(), 1);

	/* Types and mechanism names. */
	load_fail("listeners = (\n"
		  "  { name = \"sub\"; address = \"127.0.0.1:587\";\n"
		  "    starttls = 1;\n"
		  "    require_auth = \"yes\";\n"
		  "    require_tls_for_auth = 0;\n"
		  "    auth_mechanisms = \"PLAIN, LOGIN\"; }\n"
		  ");\n"
		  "backend = { address = \"127.0.0.1:26\"; };\n");
	assert_error_line(3, "'listeners[0].starttls' must be a boolean (true or "
			  "false), not an integer");
	assert_error_line(4, "'listeners[0].require_auth' must be a boolean (true "
			  "or false), not a string");
	assert_error_line(5, "'listeners[0].require_tls_for_auth' must be a "
			  "boolean (true or false), not an integer");
	assert_error_line(6, "'listeners[0].auth_mechanisms' = \"PLAIN, LOGIN\": "
			  "mechanism names are space-separated and have only "
			  "upper-case letters, digits, '-' and '_'");
	assert_int_equal(error_count(), 4);
}

static void
test_sasl(void **state)
{
	struct conf *conf;

	(void)state;
	conf = load_ok("server_name = \"mx.example.org\";\n" MINIMAL
		"sasl = {\n"
		"  app_name = \"msa-test\";\n"
		"  mechanisms = \"EXTERNAL SCRAM-SHA-256\";\n"
		"  sasldb_path = \"/var/lib/msaproxy/sasldb2\";\n"
		"  plugin_path = \"/usr/lib/sasl2\";\n"
		"  keytab = \"/etc/msaproxy/smtp.keytab\";\n"
		"  service = \"submission\";\n"
		"  hostname = \"smtp.example.org\";\n"
		"  realm = \"EXAMPLE.ORG\";\n"
		"  allow_authzid = true;\n"
		"  max_failures = 5;\n"
		"  failure_delay_ms = 0;\n"
		"  sender_map = \"/etc/msaproxy/senders\";\n"
		"  sender_domains = \"example.org example.net\";\n"
		"  received_auth_comment = true;\n"
		"  received_tls_comment = true;\n"
		"};\n");
	assert_string_equal(conf->sasl.app_name, "msa-test");
	assert_string_equal(conf->sasl.mechanisms, "EXTERNAL SCRAM-SHA-256");
	assert_string_equal(conf->sasl.sasldb_path, "/var/lib/msaproxy/sasldb2");
	assert_string_equal(conf->sasl.plugin_path, "/usr/lib/sasl2");
	assert_string_equal(conf->sasl.keytab, "/etc/msaproxy/smtp.keytab");
	assert_string_equal(conf->sasl.service, "submission");
	assert_string_equal(conf->sasl.hostname, "smtp.example.org");
	assert_string_equal(conf->sasl.realm, "EXAMPLE.ORG");
	assert_int_equal(conf->sasl.allow_authzid, 1);
	assert_int_equal(conf->sasl.max_failures, 5);
	assert_int_equal(conf->sasl.failure_delay_ms, 0);
	assert_string_equal(conf->sasl.sender_map, "/etc/msaproxy/senders");
	assert_string_equal(conf->sasl.sender_domains, "example.org example.net");
	assert_int_equal(conf->sasl.received_auth_comment, 1);
	assert_int_equal(conf->sasl.received_tls_comment, 1);
	assert_string_equal(conf->backend.helo_name, "mx.example.org");
	conf_free(&conf);

	/* hostname defaults to server_name, even when set after sasl. */
	conf = load_ok(MINIMAL "sasl = { realm = \"\"; };\n"
		       "server_name = \"mx.example.org\";\n");
	assert_string_equal(conf->sasl.hostname, "mx.example.org");
	assert_string_equal(conf->sasl.mechanisms,
			    "GSSAPI SCRAM-SHA-256 PLAIN LOGIN");
	conf_free(&conf);

	/* Every problem is reported. */
	load_fail(MINIMAL "sasl = {\n"
		  "  mechanisms = \"GSSAPI DIGEST_MD5 cram-md5\";\n"
		  "  max_failures = 0;\n"
		  "  service = \"\";\n"
		  "  sender_domains = \"example.org bad..example\";\n"
		  "};\n");
	assert_error_line(4, "'sasl.mechanisms' = \"GSSAPI DIGEST_MD5 "
			  "cram-md5\": mechanism names are space-separated and "
			  "have only upper-case letters, digits, '-' and '_'");
	assert_error_line(5, "'sasl.max_failures' = 0 is out of range (1..100)");
	assert_error_line(6, "'sasl.service' = \"\": must not be empty");
	assert_error_line(7, "'sasl.sender_domains' = \"example.org "
			  "bad..example\": not a domain name");
	assert_int_equal(error_count(), 4);
	load_fail(MINIMAL "sasl = \"GSSAPI\";\n");
	assert_error_line(3, "'sasl' must be a group { }, not a string");
	assert_int_equal(error_count(), 1);
}

static void
test_listener_errors(void **state)
{
	(void)state;
	/* Duplicate name and duplicate address: reported at the second. */
	load_fail("listeners = (\n"
		  "  { name = \"a\"; address = \"127.0.0.1:587\"; },\n"
		  "  { name = \"b\"; address = \"127.0.0.1:588\"; },\n"
		  "  { name = \"a\"; address = \"127.0.0.1:589\"; },\n"
		  "  { name = \"c\"; address = \"127.0.0.1:588\"; }\n"
		  ");\n"
		  "backend = { address = \"127.0.0.1:25\"; };\n");
	assert_error_line(4, "duplicate listener name 'a' (first used at line 2)");
	assert_error_line(5, "address \"127.0.0.1:588\" is already used by the "
			  "listener at line 3");
	assert_int_equal(error_count(), 2);

	/* No listeners. */
	load_fail("workers = 1;\nlisteners = ( );\n"
		  "backend = { address = \"127.0.0.1:25\"; };\n");
	assert_error_line(2, "no listeners defined");
	assert_int_equal(error_count(), 1);
	load_fail("backend = { address = \"127.0.0.1:25\"; };\n");
	assert_error_line(0, "no listeners defined (add a 'listeners' list)");
	assert_int_equal(error_count(), 1);

	/* Required keys and bad values. */
	load_fail("listeners = (\n  { kind = \"smtp\";\n"
		  "    address = \"127.0.0.1:25\"; }\n);\n"
		  "backend = { address = \"127.0.0.1:26\"; };\n");
	assert_error_line(2, "missing key 'name' in section 'listeners[0]'");
	assert_int_equal(error_count(), 1);
	load_fail("listeners = (\n  { name = \"x\"; kind = \"smtps\";\n"
		  "    address = \"localhost:25\"; },\n  17\n);\n"
		  "backend = { address = \"127.0.0.1:26\"; };\n");
	assert_error_line(2, "'listeners[0].kind' = \"smtps\" is not one of "
			  "\"submission\", \"submissions\", \"smtp\", \"lmtp\"");
	assert_error_line(3, "'listeners[0].address' = \"localhost:25\": not a "
			  "numeric IPv4 address (host names are not resolved)");
	assert_error_line(4, "'listeners[1]' must be a group { }, not an integer");
	assert_int_equal(error_count(), 3);
	load_fail("listeners = ( { name = \"a b\"; address = \"127.0.0.1:25\"; } );\n"
		  "backend = { address = \"127.0.0.1:26\"; };\n");
	assert_error_line(1, "'listeners[0].name' = \"a b\": only letters, "
			  "digits, '-', '_' and '.' are allowed");

	/* PROXY protocol needs trusted peers. */
	load_fail("listeners = ( {\n  name = \"a\"; address = \"127.0.0.1:25\";\n"
		  "  proxy_protocol = true; } );\n"
		  "backend = { address = \"127.0.0.1:26\"; };\n");
	assert_error_line(1, "'listeners[0].proxy_protocol' is true but "
			  "'listeners[0].proxy_protocol_from' is empty");
	load_fail("listeners = ( {\n  name = \"a\"; address = \"127.0.0.1:25\";\n"
		  "  proxy_protocol = true;\n"
		  "  proxy_protocol_from = [ \"10.0.0.0/8\",\n"
		  "    \"10.1.2.3/16\" ]; } );\n"
		  "backend = { address = \"127.0.0.1:26\"; };\n");
	assert_error_line(5, "'listeners[0].proxy_protocol_from' entry "
			  "\"10.1.2.3/16\": address has bits set beyond the "
			  "prefix length");
	assert_int_equal(error_count(), 1);
}

static void
test_too_many_listeners(void **state)
{
	char text[8192];
	size_t len, i;

	(void)state;
	len = (size_t)snprintf(text, sizeof(text), "listeners = (\n");
	for (i = 0; i < CONF_MAX_LISTENERS + 1; i++)
		len += (size_t)snprintf(text + len, sizeof(text) - len,
					"%s{ name = \"l%zu\"; address = \"127.0.0.1:%zu\"; }\n",
					i > 0 ? "," : "", i, 1000 + i);
	snprintf(text + len, sizeof(text) - len,
		 ");\nbackend = { address = \"127.0.0.1:25\"; };\n");
	load_fail(text);
	assert_error_line(1, "'listeners' has 33 entries; at most 32 are allowed");
	assert_int_equal(error_count(), 1);
}

static void
test_backend_errors(void **state)
{
	(void)state;
	load_fail("listeners = ( { name = \"a\"; address = \"127.0.0.1:25\"; } );\n"
		  "\nbackend = {\n  protocol = \"lmtp\";\n};\n");
	assert_error_line(3, "missing key 'address' in section 'backend'");
	assert_int_equal(error_count(), 1);

	load_fail("listeners = ( { name = \"a\"; address = \"127.0.0.1:25\"; } );\n");
	assert_error_line(0, "missing section 'backend' (it needs at least the "
			  "key 'address')");
	assert_int_equal(error_count(), 1);

	load_fail("listeners = ( { name = \"a\"; address = \"127.0.0.1:25\"; } );\n"
		  "backend = {\n  address = \"[::1]:99999\";\n"
		  "  protocol = \"esmtp\";\n};\n");
	assert_error_line(3, "'backend.address' = \"[::1]:99999\": port out of "
			  "range (1..65535)");
	assert_error_line(4, "'backend.protocol' = \"esmtp\" is not one of "
			  "\"smtp\", \"lmtp\"");
	assert_int_equal(error_count(), 2);
}

static void
test_multiple_errors(void **state)
{
	(void)state;
	load_fail("workers = 1000;\n"
		  "listeners = ( { name = \"a\"; address = \"127.0.0.1\"; } );\n"
		  "backend = { address = \"127.0.0.1:25\"; nonsense = 1; };\n"
		  "limits = {\n"
		  "  max_recipients = 0;\n"
		  "  max_message_size = \"lots\";\n"
		  "};\n"
		  "timeouts = { command = 100000; };\n"
		  "log = { level = \"chatty\"; };\n");
	assert_error_line(1, "'workers' = 1000 is out of range (0..256)");
	assert_error_line(2, "'listeners[0].address' = \"127.0.0.1\": missing "
			  "':port' (or a unix socket path starting with '/')");
	assert_error_line(3, "unknown key 'nonsense' in section 'backend'");
	assert_error_line(5, "'limits.max_recipients' = 0 is out of range "
			  "(1..100000)");
	assert_error_line(6, "'limits.max_message_size' = \"lots\": not a size "
			  "(a number, optionally followed by K, M or G)");
	assert_error_line(8, "'timeouts.command' = 100000 is out of range "
			  "(1..86400)");
	assert_error_line(9, "'log.level' = \"chatty\" is not one of \"err\", "
			  "\"warning\", \"notice\", \"info\", \"debug\"");
	assert_int_equal(error_count(), 7);
}

static void
test_errbuf_small(void **state)
{
	char small[40];
	struct conf *conf;

	(void)state;
	write_conf("workers = 1000;\nfoo = 1;\nbar = 2;\n");
	memset(small, 'x', sizeof(small));
	conf = conf_load(tmp_path, small, sizeof(small));
	assert_null(conf);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_string_equal(small + sizeof(small) - 4, "...");
	/* No buffer at all is allowed too. */
	conf = conf_load(tmp_path, NULL, 0);
	assert_null(conf);
	unlink(tmp_path);
}

static void
test_parse_addr(void **state)
{
	static const struct {
		const char *text;
		const char *error;
	} bad[] = {
		{ "", "empty address" },
		{ "localhost:25", "not a numeric IPv4 address (host names are "
		  "not resolved)" },
		{ "127.0.0.1", "missing ':port' (or a unix socket path "
		  "starting with '/')" },
		{ "127.0.0.1:", "missing port number after ':'" },
		{ "127.0.0.1:0", "port out of range (1..65535)" },
		{ "127.0.0.1:65536", "port out of range (1..65535)" },
		{ "127.0.0.1:99999999999999999999", "port out of range (1..65535)" },
		{ "127.0.0.1:2x", "port must be a number" },
		{ "127.0.0.1:-1", "port must be a number" },
		{ ":25", "not a numeric IPv4 address (host names are not "
		  "resolved)" },
		{ "::1:25", "IPv6 addresses go in brackets: \"[::1]:587\"" },
		{ "[::1]", "missing ':port' after ']'" },
		{ "[::1:25", "missing ']' after IPv6 address" },
		{ "[]:25", "not a numeric IPv6 address" },
		{ "[127.0.0.1]:25", "not a numeric IPv6 address" },
		{ "[fe80::1%eth0]:25", "not a numeric IPv6 address" },
	};
	struct conf_addr addr;
	const struct sockaddr_in *sin = (const void *)&addr.ss;
	const struct sockaddr_in6 *sin6 = (const void *)&addr.ss;
	const struct sockaddr_un *sun = (const void *)&addr.ss;
	const char *error;
	char path[200];
	size_t i;

	(void)state;
	assert_int_equal(conf_parse_addr("127.0.0.1:587", &addr, &error), 0);
	assert_false(addr.is_unix);
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohs(sin->sin_port), 587);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x7f000001);
	assert_int_equal(addr.sslen, sizeof(*sin));
	assert_string_equal(addr.text, "127.0.0.1:587");

	assert_int_equal(conf_parse_addr("[::1]:587", &addr, &error), 0);
	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_int_equal(ntohs(sin6->sin6_port), 587);
	assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
	assert_int_equal(addr.sslen, sizeof(*sin6));
	assert_int_equal(conf_parse_addr("[::ffff:10.0.0.1]:65535", &addr,
					 &error), 0);
	assert_int_equal(ntohs(sin6->sin6_port), 65535);

	assert_int_equal(conf_parse_addr("/run/x.sock", &addr, &error), 0);
	assert_true(addr.is_unix);
	assert_int_equal(sun->sun_family, AF_UNIX);
	assert_string_equal(sun->sun_path, "/run/x.sock");
	assert_int_equal(addr.sslen, offsetof(struct sockaddr_un, sun_path) +
			 strlen("/run/x.sock") + 1);
	assert_string_equal(addr.text, "/run/x.sock");

	/* sun_path is 108 bytes with its NUL: 107 characters fit. */
	memset(path, 'a', sizeof(path));
	path[0] = '/';
	path[sizeof(sun->sun_path) - 1] = '\0';
	assert_int_equal(conf_parse_addr(path, &addr, &error), 0);
	assert_string_equal(sun->sun_path, path);
	path[sizeof(sun->sun_path) - 1] = 'a';
	path[sizeof(sun->sun_path)] = '\0';
	assert_int_equal(conf_parse_addr(path, &addr, &error), -1);
	assert_string_equal(error,
			    "unix socket path too long (sun_path holds 107 bytes)");

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		error = NULL;
		if (conf_parse_addr(bad[i].text, &addr, &error) != -1)
			fail_msg("\"%s\" accepted", bad[i].text);
		if (error == NULL || strcmp(error, bad[i].error) != 0)
			fail_msg("\"%s\": got \"%s\", want \"%s\"", bad[i].text,
				 error != NULL ? error : "(null)",
				 bad[i].error);
	}
}

static void
make_sin(struct sockaddr_storage *ss, const char *ip)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
	}
}

static void
test_cidr(void **state)
{
	static const char *nets_text[] = {
		"10.0.0.0/8", "192.168.16.0/20", "2001:db8::/32",
		"198.51.100.7", "fe80::1",
	};
	static const struct {
		const char *ip;
		int match;
	} cases[] = {
		{ "10.1.2.3", 1 },
		{ "11.0.0.1", 0 },
		{ "192.168.16.1", 1 },
		{ "192.168.31.255", 1 },
		{ "192.168.32.0", 0 },
		{ "192.168.15.255", 0 },
		{ "198.51.100.7", 1 },
		{ "198.51.100.8", 0 },
		{ "2001:db8:1::5", 1 },
		{ "2001:db9::1", 0 },
		{ "fe80::1", 1 },
		{ "fe80::2", 0 },
		/* IPv4-mapped IPv6 clients match IPv4 networks. */
		{ "::ffff:10.9.8.7", 1 },
		{ "::ffff:192.168.20.1", 1 },
		{ "::ffff:198.51.100.7", 1 },
		{ "::ffff:11.0.0.1", 0 },
		/* ...but IPv4-compatible or NAT64 forms do not. */
		{ "::10.9.8.7", 0 },
		{ "64:ff9b::10.9.8.7", 0 },
	};
	struct conf_cidr nets[5], any;
	struct sockaddr_storage ss;
	struct sockaddr_un sun;
	const char *error;
	size_t i;

	(void)state;
	for (i = 0; i < 5; i++) {
		if (conf_parse_cidr(nets_text[i], &nets[i], &error) != 0)
			fail_msg("%s: %s", nets_text[i], error);
	}
	assert_int_equal(nets[0].family, AF_INET);
	assert_int_equal(nets[0].prefix, 8);
	assert_int_equal(nets[3].prefix, 32);
	assert_int_equal(nets[4].family, AF_INET6);
	assert_int_equal(nets[4].prefix, 128);

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		make_sin(&ss, cases[i].ip);
		if (conf_cidr_match_any(nets, 5, (struct sockaddr *)&ss) !=
		    cases[i].match)
			fail_msg("%s: want %d", cases[i].ip, cases[i].match);
	}

	/* An IPv6 network written in mapped form matches mapped clients. */
	assert_int_equal(conf_parse_cidr("::ffff:10.0.0.0/104", &any, &error), 0);
	make_sin(&ss, "::ffff:10.1.1.1");
	assert_true(conf_cidr_match_any(&any, 1, (struct sockaddr *)&ss));

	/* /0 matches everything of its family. */
	assert_int_equal(conf_parse_cidr("0.0.0.0/0", &any, &error), 0);
	make_sin(&ss, "203.0.113.9");
	assert_true(conf_cidr_match_any(&any, 1, (struct sockaddr *)&ss));
	make_sin(&ss, "::ffff:203.0.113.9");
	assert_true(conf_cidr_match_any(&any, 1, (struct sockaddr *)&ss));
	make_sin(&ss, "2001:db8::1");
	assert_false(conf_cidr_match_any(&any, 1, (struct sockaddr *)&ss));

	/* Empty list, unix peer, NULL. */
	make_sin(&ss, "10.1.2.3");
	assert_false(conf_cidr_match_any(nets, 0, (struct sockaddr *)&ss));
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	assert_false(conf_cidr_match_any(nets, 5, (struct sockaddr *)&sun));
	assert_false(conf_cidr_match_any(nets, 5, NULL));

	/* Bad networks. */
	assert_int_equal(conf_parse_cidr("10.0.0.0/33", &any, &error), -1);
	assert_string_equal(error, "prefix length too large (max 32 for "
			    "IPv4, 128 for IPv6)");
	assert_int_equal(conf_parse_cidr("::/129", &any, &error), -1);
	assert_int_equal(conf_parse_cidr("::/128", &any, &error), 0);
	assert_int_equal(conf_parse_cidr("10.0.0.0/", &any, &error), -1);
	assert_string_equal(error, "missing prefix length after '/'");
	assert_int_equal(conf_parse_cidr("10.0.0.0/8x", &any, &error), -1);
	assert_string_equal(error, "bad prefix length");
	assert_int_equal(conf_parse_cidr("10.0.0.0/99999999999999999999",
					 &any, &error), -1);
	assert_int_equal(conf_parse_cidr("10.0.0/8", &any, &error), -1);
	assert_string_equal(error, "not a numeric IP address");
	assert_int_equal(conf_parse_cidr("/8", &any, &error), -1);
	assert_int_equal(conf_parse_cidr("example.com/8", &any, &error), -1);
	assert_int_equal(conf_parse_cidr("192.168.17.0/20", &any, &error), -1);
	assert_string_equal(error,
			    "address has bits set beyond the prefix length");
	assert_int_equal(conf_parse_cidr("2001:db8::1/64", &any, &error), -1);
}

/* ------------------------------------------------------------------ */
/* etrn */

#define ETRN_LISTENERS \
	"listeners = (\n" \
	"  { name = \"sub\"; address = \"127.0.0.1:587\"; },\n" \
	"  { name = \"mx\"; kind = \"smtp\"; address = \"127.0.0.1:25\"; },\n" \
	"  { name = \"lm\"; kind = \"lmtp\"; address = \"127.0.0.1:24\"; }\n" \
	");\nbackend = { address = \"127.0.0.1:2525\"; };\n"	/* lines 1-6 */

static void
test_etrn(void **state)
{
	struct conf *conf;
	const struct conf_etrn_rule *r;

	(void)state;
	/* No section: ETRN offered nowhere. */
	conf = load_ok(ETRN_LISTENERS);
	assert_int_equal(conf->etrn.listener_count, 0);
	assert_int_equal(conf->etrn.rule_count, 0);
	assert_int_equal(conf->etrn.allow_wildcard_tld, 0);
	assert_int_equal(conf->listeners[0].etrn, 0);
	assert_int_equal(conf->listeners[1].etrn, 0);
	conf_free(&conf);

	conf = load_ok(ETRN_LISTENERS
		       "etrn = {\n"					/* 7 */
		       "  listeners = [ \"mx\", \"sub\" ];\n"
		       "  rules = (\n"
		       "    { identity = \"alice\";\n"			/* 10 */
		       "      allow = [ \"alice.example\", \"@alice.org\",\n"
		       "                \"#alicequeue\" ]; },\n"
		       "    { networks = [ \"192.0.2.0/24\", \"2001:db8::/32\" ];\n"
		       "      allow = [ \"relay.example.net\" ]; },\n"
		       "    { identity = \"*\"; networks = [ \"198.51.100.0/24\" ];\n"
		       "      allow = [ \"@office.example\" ]; }\n"
		       "  );\n"
		       "};\n");
	assert_int_equal(conf->etrn.listener_count, 2);
	assert_string_equal(conf->etrn.listeners[0], "mx");
	assert_int_equal(conf->listeners[0].etrn, 1);
	assert_int_equal(conf->listeners[1].etrn, 1);
	assert_int_equal(conf->listeners[2].etrn, 0);
	assert_int_equal(conf->etrn.allow_wildcard_tld, 0);
	assert_int_equal(conf->etrn.rule_count, 3);
	r = &conf->etrn.rules[0];
	assert_string_equal(r->identity, "alice");
	assert_int_equal(r->network_count, 0);
	assert_int_equal(r->allow_count, 3);
	assert_string_equal(r->allow[0], "alice.example");
	assert_string_equal(r->allow[1], "@alice.org");
	assert_string_equal(r->allow[2], "#alicequeue");
	assert_int_equal(r->line, 10);
	r = &conf->etrn.rules[1];
	assert_string_equal(r->identity, "");
	assert_int_equal(r->network_count, 2);
	assert_int_equal(r->networks[1].family, AF_INET6);
	assert_int_equal(r->allow_count, 1);
	assert_int_equal(r->line, 13);
	r = &conf->etrn.rules[2];
	assert_string_equal(r->identity, "*");
	assert_int_equal(r->network_count, 1);
	conf_free(&conf);

	/* "@com" with allow_wildcard_tld, in either order */
	conf = load_ok(ETRN_LISTENERS
		       "etrn = {\n"
		       "  rules = ( { identity = \"root\"; allow = [ \"@com\" ]; } );\n"
		       "  allow_wildcard_tld = true;\n"
		       "};\n");
	assert_int_equal(conf->etrn.allow_wildcard_tld, 1);
	assert_string_equal(conf->etrn.rules[0].allow[0], "@com");
	assert_int_equal(conf->listeners[0].etrn, 0);
	conf_free(&conf);

	/* listeners named before they are defined */
	conf = load_ok("etrn = { listeners = [ \"mx\" ]; };\n" ETRN_LISTENERS);
	assert_int_equal(conf->listeners[1].etrn, 1);
	conf_free(&conf);
}

static void
test_etrn_errors(void **state)
{
	(void)state;
	load_fail(ETRN_LISTENERS
		  "etrn = {\n"						/* 7 */
		  "  listeners = [ \"mx\",\n"
		  "    \"nosuch\",\n"					/* 9 */
		  "    \"lm\" ];\n"					/* 10 */
		  "  rules = (\n"
		  "    { allow = [ \"example.org\" ]; },\n"		/* 12 */
		  "    { identity = \"bob\"; },\n"			/* 13 */
		  "    { identity = \"carol\"; allow = [ ]; },\n"	/* 14 */
		  "    { identity = \"dave\";\n"			/* 15 */
		  "      allow = [ \"dave.example\",\n"
		  "                \"localname\",\n"			/* 17 */
		  "                \"@com\",\n"				/* 18 */
		  "                \"#q;rm\" ]; },\n"			/* 19 */
		  "    { identity = \"a b\"; allow = [ \"x.example\" ]; },\n"
		  "    { networks = [ ]; allow = [ \"x.example\" ]; },\n"
		  "    { networks = [ \"10.1.2.3/8\" ]; allow = [ \"x.example\" ]; },\n"
		  "    { identity = \"erin\"; allow = \"x.example\"; },\n"	/* 23 */
		  "    { identity = \"\"; allow = [ \"x.example\" ]; }\n"
		  "  );\n"
		  "  color = true;\n"					/* 26 */
		  "};\n");
	assert_error_line(9, "'etrn.listeners' entry \"nosuch\" is not the "
			  "name of a listener");
	assert_error_line(10, "'etrn.listeners' entry \"lm\": ETRN is not "
			  "offered on \"lmtp\" listeners");
	assert_error_line(12, "'etrn.rules[0]' needs 'identity' or 'networks' "
			  "(whom the rule is for)");
	assert_error_line(13, "missing key 'allow' in section 'etrn.rules[1]'");
	assert_error_line(14, "'etrn.rules[2].allow' must have at least one "
			  "entry");
	assert_error_line(17, "'etrn.rules[3].allow' entry \"localname\": not a "
			  "domain name of two or more labels, \"@\" and a "
			  "domain, or \"#\" and a queue name (RFC 1985)");
	assert_error_line(18, "'etrn.rules[3].allow' entry \"@com\" releases a "
			  "whole top-level domain (RFC 1985 section 8); set "
			  "'etrn.allow_wildcard_tld' to true to permit it");
	assert_error_line(19, "'etrn.rules[3].allow' entry \"#q;rm\": not a "
			  "domain name of two or more labels, \"@\" and a "
			  "domain, or \"#\" and a queue name (RFC 1985)");
	assert_error_line(20, "'etrn.rules[4].identity' = \"a b\": only "
			  "printable characters without spaces are allowed");
	assert_error_line(21, "'etrn.rules[5].networks' must have at least one "
			  "entry (leave it out to match any address)");
	assert_error_line(22, "'etrn.rules[6].networks' entry \"10.1.2.3/8\": "
			  "address has bits set beyond the prefix length");
	assert_error_line(23, "'etrn.rules[7].allow' must be an array of "
			  "strings [ \"...\", ... ], not a string");
	assert_error_line(24, "'etrn.rules[8].identity' must not be empty");
	assert_error_line(26, "unknown key 'color' in section 'etrn'");
	assert_int_equal(error_count(), 14);

	/* ETRN is relayed: not to an LMTP backend */
	load_fail("listeners = ( { name = \"mx\"; kind = \"smtp\";\n"
		  "  address = \"127.0.0.1:25\"; } );\n"
		  "backend = { address = \"127.0.0.1:24\"; protocol = \"lmtp\"; };\n"
		  "etrn = {\n  listeners = [ \"mx\" ];\n};\n");
	assert_error_line(5, "'etrn.listeners' is not empty but "
			  "'backend.protocol' is \"lmtp\" (ETRN needs an SMTP "
			  "backend)");
	assert_int_equal(error_count(), 1);

	/* limits */
	{
		char text[8192];
		size_t o, i;

		o = (size_t)snprintf(text, sizeof(text), "%s",
		    ETRN_LISTENERS "etrn = {\n  rules = (\n"
		    "    { identity = \"x\"; allow = [ ");
		for (i = 0; i <= CONF_MAX_ETRN_ALLOW; i++)
			o += (size_t)snprintf(text + o, sizeof(text) - o,
			    "%s\"n%zu.example\"", i ? ", " : "", i);
		snprintf(text + o, sizeof(text) - o, " ]; }\n  );\n};\n");
		load_fail(text);
		assert_error_line(9, "'etrn.rules[0].allow' has 17 entries; at "
				  "most 16 are allowed");
		assert_int_equal(error_count(), 1);
	}
	{
		char text[8192], name[300];

		memset(name, 'a', 63);
		memcpy(name + 63, ".", 1);
		memset(name + 64, 'b', 63);
		memcpy(name + 127, ".", 1);
		memset(name + 128, 'c', 63);
		memcpy(name + 191, ".", 1);
		memset(name + 192, 'd', 63);		/* 255 octets */
		name[255] = '\0';
		snprintf(text, sizeof(text), ETRN_LISTENERS "etrn = {\n"
			 "  rules = ( { identity = \"x\";\n"
			 "    allow = [ \"@%s\", \"%s\" ]; } );\n};\n",
			 name, name);
		conf_free(&(struct conf *){ load_ok(text) });
	}
}

/* rate_limits: defaults (everything off but url_reuse), per-limit keys,
 * names, and the errors. */
static void
test_rate_limits(void **state)
{
	struct conf *conf;
	const struct conf_rate_limits *rl;
	int i;

	(void)state;
	conf = load_ok(MINIMAL);
	rl = &conf->rate_limits;
	for (i = 0; i < CONF_LIMIT_COUNT; i++) {
		assert_int_equal(rl->limit[i].max, i == CONF_LIMIT_URL_REUSE ? 5 : 0);
		assert_int_equal(rl->limit[i].on_redis_error, CONF_LIMIT_FAIL_OPEN);
		assert_string_not_equal(conf_limit_name((enum conf_limit_id)i),
		    "unknown");
	}
	assert_int_equal(rl->limit[CONF_LIMIT_URL_REUSE].window, 86400);
	assert_int_equal(rl->limit[CONF_LIMIT_MESSAGES].window, 3600);
	assert_int_equal(rl->limit[CONF_LIMIT_AUTH_ADDRESS].window, 900);
	assert_int_equal(rl->limit[CONF_LIMIT_CONNECTION_RATE].window, 60);
	assert_int_equal(rl->max_keys, 10000);
	assert_int_equal(rl->ipv6_prefix, 64);
	assert_false(rl->redis.enabled);
	assert_string_equal(conf_limit_name(CONF_LIMIT_MESSAGES),
	    "messages_per_identity");
	assert_string_equal(conf_limit_name(CONF_LIMIT_CONNECTION_RATE),
	    "connection_rate_per_address");
	assert_string_equal(conf_limit_name(CONF_LIMIT_URL_REUSE), "url_reuse");
	conf_free(&conf);

	conf = load_ok(MINIMAL "rate_limits = {\n"
	    "  messages_per_identity = { max = 100; window = 600; };\n"
	    "  bytes_per_identity = { max = \"500M\"; on_redis_error = \"closed\"; };\n"
	    "  sessions_per_identity = { max = 20; };\n"
	    "  url_reuse = { max = 0; };\n"
	    "  max_keys = 50;\n"
	    "};\n");
	rl = &conf->rate_limits;
	assert_int_equal(rl->limit[CONF_LIMIT_MESSAGES].max, 100);
	assert_int_equal(rl->limit[CONF_LIMIT_MESSAGES].window, 600);
	assert_int_equal(rl->limit[CONF_LIMIT_BYTES].max, 500 * 1024 * 1024);
	assert_int_equal(rl->limit[CONF_LIMIT_BYTES].window, 3600);
	assert_int_equal(rl->limit[CONF_LIMIT_BYTES].on_redis_error,
	    CONF_LIMIT_FAIL_CLOSED);
	assert_int_equal(rl->limit[CONF_LIMIT_SESSIONS].max, 20);
	assert_int_equal(rl->limit[CONF_LIMIT_URL_REUSE].max, 0);
	assert_int_equal(rl->max_keys, 50);
	assert_false(rl->redis.enabled);
	conf_free(&conf);

#define REDIS_GROUP "rate_limits = { redis = { address = \"127.0.0.1:6379\";\n" \
	"  prefix = \"a:b:\"; command_timeout_ms = 100; lease = 60; }; };\n"
#ifdef HAVE_HIREDIS
	conf = load_ok(MINIMAL REDIS_GROUP);
	rl = &conf->rate_limits;
	assert_true(rl->redis.enabled);
	assert_string_equal(rl->redis.prefix, "a:b:");
	assert_int_equal(rl->redis.command_timeout_ms, 100);
	assert_int_equal(rl->redis.connect_timeout_ms, 500);
	assert_int_equal(rl->redis.retry_interval_ms, 1000);
	assert_int_equal(rl->redis.lease, 60);
	conf_free(&conf);
#else
	load_fail(MINIMAL REDIS_GROUP);
	assert_error_line(3, "'rate_limits.redis': this msaproxy was built "
	    "without Redis support (install libhiredis-dev, then configure "
	    "--with-redis)");
#endif

	load_fail(MINIMAL "rate_limits = {\n"
	    "  messages_per_identity = { max = 1; window = 0; };\n"
	    "  sessions_per_identity = { max = 1; window = 60; };\n"
	    "  url_reuse = { on_redis_error = \"maybe\"; };\n"
	    "  redis = { prefix = \"has space\"; };\n"
	    "  speed_limit = { max = 1; };\n"
	    "};\n");
	assert_error_line(4, "'rate_limits.messages_per_identity.window' = 0 is "
	    "out of range (1..2592000)");
	assert_error_line(5, "unknown key 'window' in section "
	    "'rate_limits.sessions_per_identity'");
	assert_error_line(6, "'rate_limits.url_reuse.on_redis_error' = \"maybe\" "
	    "is not one of \"open\", \"closed\"");
	assert_error_line(7, "missing key 'address' in section 'rate_limits.redis'");
	assert_error_line(8, "unknown key 'speed_limit' in section 'rate_limits'");
	load_fail(MINIMAL "rate_limits = { url_key_file = \"/nonexistent/key\"; };\n");
	assert_error_line(3, "'rate_limits.url_key_file' /nonexistent/key: No such "
	    "file or directory");
	load_fail(MINIMAL "rate_limits = { redis = { address = \"127.0.0.1:6379\";\n"
	    "  user = \"msa\"; }; };\n");
	assert_error_line(4, "'rate_limits.redis.user' is set but "
	    "'rate_limits.redis.password_file' is empty");
}

/* What a reload may not change (conf_restart_setting), and what it may. */
#define RELOAD_BASE(extra) \
	"listeners = ( { name = \"sub\"; address = \"127.0.0.1:587\"; } );\n" \
	"backend = { address = \"127.0.0.1:25\"; };\n" \
	"user = \"msaproxy\";\n" \
	"sasl = { mechanisms = \"SCRAM-SHA-256\"; " \
	"keytab = \"/etc/msaproxy/smtp.keytab\"; };\n" \
	"audit = { enabled = true; file = \"/var/log/msaproxy/audit.log\"; };\n" \
	"rate_limits = { messages_per_identity = { max = 10; window = 60; }; };\n" \
	extra

static void
test_restart_setting(void **state)
{
	static const struct {
		const char *extra;
		const char *what;	/* NULL: a reload may take it */
	} cases[] = {
		{ "", NULL },
		{ "limits = { max_recipients = 5; };\n", NULL },
		{ "timeouts = { command = 30; };\n", NULL },
		{ "log = { level = \"debug\"; };\n", NULL },
		{ "etrn = { listeners = [ \"sub\" ]; };\n", NULL },
		/* SASL's host name: set once per instance */
		{ "server_name = \"mx.example.org\";\n",
		  "sasl.hostname (its default is server_name)" },
		{ "workers = 3;\n", "workers" },
		{ "group = \"mail\";\n", "user/group" },
		{ "chroot = \"/var/empty\";\n", "chroot" },
		{ "pid_file = \"/run/msaproxy.pid\";\n", "pid_file" },
		{ "limits = { max_connections = 10; };\n",
		  "limits.max_connections" },
	};
	const char *base = RELOAD_BASE("");
	struct conf *run, *next;
	size_t i;

	(void)state;
	run = load_ok(base);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[4096];
		const char *what;

		snprintf(text, sizeof(text), "%s%s", base, cases[i].extra);
		next = load_ok(text);
		what = conf_restart_setting(run, next, run->sasl.keytab);
		if (cases[i].what == NULL && what != NULL)
			fail_msg("case %zu: %s", i, what);
		if (cases[i].what != NULL)
			assert_string_equal(what != NULL ? what : "(null)",
					    cases[i].what);
		conf_free(&next);
	}
	/* a section that differs in one setting */
	{
		static const struct {
			const char *text;
			const char *what;
		} sections[] = {
			{ "listeners = ( { name = \"sub\"; address = "
			  "\"127.0.0.1:588\"; } );\n", "listeners (\"sub\": "
			  "name, kind or address)" },
			{ "listeners = ( { name = \"sub\"; address = "
			  "\"127.0.0.1:587\"; require_auth = false; } );\n",
			  NULL },
			{ "sasl = { mechanisms = \"PLAIN\"; "
			  "keytab = \"/etc/msaproxy/smtp.keytab\"; };\n", "sasl" },
			{ "sasl = { mechanisms = \"SCRAM-SHA-256\"; "
			  "keytab = \"/etc/msaproxy/other.keytab\"; };\n", "sasl" },
			{ "audit = { enabled = true; file = "
			  "\"/var/log/msaproxy/audit.log\"; fsync = false; };\n",
			  "audit" },
			{ "rate_limits = { messages_per_identity = { max = 11; "
			  "window = 60; }; };\n", "rate_limits" },
		};

		for (i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
			char text[4096];
			const char *what, *key = sections[i].text;
			const char *line = strstr(base, key[0] == 'l' ?
			    "listeners" : key[0] == 's' ? "sasl" : key[0] == 'a' ?
			    "audit" : "rate_limits");
			size_t before = (size_t)(line - base);
			const char *after = strchr(line, '\n') + 1;

			/* the base with that section's line replaced */
			snprintf(text, sizeof(text), "%.*s%s%s", (int)before,
			    base, key, after);
			next = load_ok(text);
			what = conf_restart_setting(run, next, run->sasl.keytab);
			if (sections[i].what == NULL && what != NULL)
				fail_msg("section %zu: %s", i, what);
			if (sections[i].what != NULL)
				assert_string_equal(what != NULL ? what :
				    "(null)", sections[i].what);
			conf_free(&next);
		}
	}
	conf_free(&run);
	/* without a sasl section, server_name is free to change */
	run = load_ok(MINIMAL);
	next = load_ok(MINIMAL "server_name = \"mx.example.org\";\n");
	assert_null(conf_restart_setting(run, next, run->sasl.keytab));
	conf_free(&next);
	next = load_ok(MINIMAL "sasl = { mechanisms = \"PLAIN\"; };\n");
	assert_string_equal(conf_restart_setting(run, next, run->sasl.keytab),
	    "sasl");
	conf_free(&next);
	conf_free(&run);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_example_loads),
		cmocka_unit_test(test_minimal_defaults),
		cmocka_unit_test(test_helo_name),
		cmocka_unit_test(test_syntax_error),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_unknown_key),
		cmocka_unit_test(test_wrong_type),
		cmocka_unit_test(test_ranges),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_log_names),
		cmocka_unit_test_setup_teardown(test_listeners,
						tls_files_setup,
						tls_files_teardown),
		cmocka_unit_test_setup_teardown(test_tls, tls_files_setup,
						tls_files_teardown),
		cmocka_unit_test_setup_teardown(test_tls_errors,
						tls_files_setup,
						tls_files_teardown),
		cmocka_unit_test_setup_teardown(test_tls_sni_errors,
						tls_files_setup,
						tls_files_teardown),
		cmocka_unit_test_setup_teardown(test_listener_tls_auth,
						tls_files_setup,
						tls_files_teardown),
		cmocka_unit_test_setup_teardown(test_listener_tls_auth_errors,
						tls_files_setup,
						tls_files_teardown),
		cmocka_unit_test(test_sasl),
		cmocka_unit_test(test_listener_errors),
		cmocka_unit_test(test_too_many_listeners),
		cmocka_unit_test(test_backend_errors),
		cmocka_unit_test(test_multiple_errors),
		cmocka_unit_test(test_errbuf_small),
		cmocka_unit_test(test_parse_addr),
		cmocka_unit_test(test_cidr),
		cmocka_unit_test(test_burl),
		cmocka_unit_test_setup_teardown(test_burl_mailhost,
						tls_files_setup,
						tls_files_teardown),
		cmocka_unit_test(test_burl_mailhost_errors),
		cmocka_unit_test(test_etrn),
		cmocka_unit_test(test_etrn_errors),
		cmocka_unit_test(test_audit),
		cmocka_unit_test(test_rate_limits),
		cmocka_unit_test(test_restart_setting),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
