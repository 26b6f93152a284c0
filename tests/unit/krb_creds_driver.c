/*
 * krb_creds_driver.c - runs trust/krb_creds.c in a process of its own so
 * that tests/integration/test_krb_creds.py can put it in front of a real
 * KDC and a real GSSAPI acceptor (python3-gssapi), stop and start the KDC
 * under it, and read its log.
 *
 *   krb_creds_driver -k KEYTAB [-p PRINCIPAL] [-s service@host ...]
 *
 * krb_creds_new() at start (exit 2 with the error if it fails), then one
 * command per line on stdin, one answer line on stdout:
 *
 *   WAIT <secs>                 -> READY | NOTREADY (polls krb_creds_ready)
 *   READY?                      -> READY 1 | READY 0
 *   AUTH <service> <host> [authzid]
 *                               -> the RFC 4752 exchange:
 *        "C <base64>"  a response to send (GSSAPI_CONTINUE; may be empty),
 *                      answered by a line "S <base64>" (the challenge)
 *        "D <base64>"  the last response (GSSAPI_DONE)
 *        "F <error>"   GSSAPI_FAIL or gssapi_client_new() refused
 *   QUIT                        -> krb_creds_free(), exit 0
 *
 * The log (proxy/log.c) goes to stderr.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "krb_creds.h"
#include "log.h"
#include "util.h"

#define LINE_MAX_LEN	65536

static char line[LINE_MAX_LEN];

static int
read_line(void)
{
	size_t n;

	if (fgets(line, sizeof(line), stdin) == NULL)
		return -1;
	n = strlen(line);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	return 0;
}

static void
say_b64(char kind, const unsigned char *p, size_t len)
{
	static char b64[LINE_MAX_LEN];

	if (util_b64_encode(p, len, b64, sizeof(b64)) < 0) {
		printf("F token too long for the driver\n");
		return;
	}
	printf("%c %s\n", kind, b64);
}

static void
do_auth(struct krb_creds *c, char *args)
{
	static unsigned char in[LINE_MAX_LEN];
	char *service, *host, *authzid, *save = NULL;
	struct gssapi_client *g;
	const char *err = NULL;
	long inlen = 0;
	int first = 1;

	service = strtok_r(args, " ", &save);
	host = strtok_r(NULL, " ", &save);
	authzid = strtok_r(NULL, "", &save);
	if (service == NULL || host == NULL) {
		printf("F usage: AUTH service host [authzid]\n");
		return;
	}
	g = gssapi_client_new(c, service, host, authzid ? authzid : "", &err);
	if (g == NULL) {
		printf("F %s\n", err);
		return;
	}
	for (;;) {
		unsigned char *out = NULL;
		size_t outlen = 0;
		enum gssapi_step st;

		st = gssapi_client_step(g, first ? NULL : in,
					first ? 0 : (size_t)inlen, &out, &outlen,
					&err);
		first = 0;
		if (st == GSSAPI_FAIL) {
			printf("F %s\n", err);
			break;
		}
		say_b64(st == GSSAPI_DONE ? 'D' : 'C', out, outlen);
		free(out);
		if (st == GSSAPI_DONE)
			break;
		if (read_line() < 0 || strncmp(line, "S ", 2) != 0) {
			printf("F driver: expected S <base64>\n");
			break;
		}
		inlen = util_b64_decode(line + 2, strlen(line + 2), in,
					sizeof(in));
		if (inlen < 0) {
			printf("F driver: bad base64\n");
			break;
		}
	}
	gssapi_client_free(&g);
}

int
main(int argc, char **argv)
{
	const char *keytab = NULL, *principal = "";
	const char *services[KRB_CREDS_MAX_SERVICES];
	size_t count = 0;
	struct krb_creds *c;
	const char *err = NULL;
	int opt;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((opt = getopt(argc, argv, "k:p:s:")) != -1) {
		switch (opt) {
		case 'k':
			keytab = optarg;
			break;
		case 'p':
			principal = optarg;
			break;
		case 's':
			if (count == KRB_CREDS_MAX_SERVICES) {
				fprintf(stderr, "too many -s\n");
				return 2;
			}
			services[count++] = optarg;
			break;
		default:
			fprintf(stderr, "usage: %s -k keytab [-p principal] "
				"[-s service@host ...]\n", argv[0]);
			return 2;
		}
	}
	if (keytab == NULL) {
		fprintf(stderr, "-k keytab is required\n");
		return 2;
	}
	log_level = LOG_DEBUG;
	c = krb_creds_new(principal, keytab, services, count, &err);
	if (c == NULL) {
		fprintf(stderr, "krb_creds_new: %s\n", err);
		printf("ERROR %s\n", err);
		return 2;
	}
	while (read_line() == 0) {
		if (strncmp(line, "WAIT ", 5) == 0) {
			double secs = atof(line + 5);
			struct timespec ts = { 0, 20 * 1000000L };
			uint64_t end = util_now_ms() + (uint64_t)(secs * 1000);

			while (!krb_creds_ready(c) && util_now_ms() < end)
				nanosleep(&ts, NULL);
			printf("%s\n", krb_creds_ready(c) ? "READY" : "NOTREADY");
		} else if (strcmp(line, "READY?") == 0) {
			printf("READY %d\n", krb_creds_ready(c));
		} else if (strncmp(line, "AUTH ", 5) == 0) {
			do_auth(c, line + 5);
		} else if (strcmp(line, "QUIT") == 0) {
			break;
		} else {
			printf("F unknown command\n");
		}
	}
	krb_creds_free(&c);
	printf("BYE\n");
	return 0;
}
