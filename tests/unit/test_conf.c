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

#include "conf.h"

/* A config with only what conf_load() requires; line 1 and 2. */
#define MINIMAL \
	"listeners = ( { name = \"sub\"; address = \"127.0.0.1:587\"; } );\n" \
	"backend = { address = \"127.0.0.1:25\"; };\n"

static char tmp_path[256];
static char errbuf[8192];

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
	assert_string_equal(conf->user, "");
	assert_string_equal(conf->group, "");
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
	assert_int_equal(conf->listeners[0].line, 43);
	assert_defaults(conf);
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
	conf = load_ok("listeners = (\n"
		       "  { name = \"sub\"; address = \"0.0.0.0:587\"; },\n"
		       "  { name = \"subs\"; kind = \"submissions\";\n"
		       "    address = \"[::]:465\"; },\n"
		       "  { name = \"lb\"; kind = \"smtp\"; address = \"/run/msa.sock\";\n"
		       "    proxy_protocol = true;\n"
		       "    proxy_protocol_from = [ \"10.0.0.0/8\", \"2001:db8::/32\",\n"
		       "                            \"192.0.2.7\" ]; },\n"
		       "  { name = \"l\"; kind = \"LMTP\"; address = \"127.0.0.1:24\"; }\n"
		       ");\n"
		       "backend = { address = \"127.0.0.1:25\"; };\n");
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
		cmocka_unit_test(test_listeners),
		cmocka_unit_test(test_listener_errors),
		cmocka_unit_test(test_too_many_listeners),
		cmocka_unit_test(test_backend_errors),
		cmocka_unit_test(test_multiple_errors),
		cmocka_unit_test(test_errbuf_small),
		cmocka_unit_test(test_parse_addr),
		cmocka_unit_test(test_cidr),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
