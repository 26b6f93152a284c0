/*
 * fuzz_mailhost.c - libFuzzer target for the mailHost directory's parsers
 * (trust/mailhost.h, trust/mailhost_ldap.h): the map file, host[:port]
 * validation, RFC 4515 filter escaping, and the cache.
 *
 *   tests/fuzz/build.sh && $OUT/fuzz_mailhost -dict=tests/fuzz/mailhost.dict \
 *       tests/fuzz/corpus/mailhost
 *
 * Beyond memory safety (the sanitizers), it checks:
 *   - the map file (the input, through a memfd): loaded or refused with a
 *     non-empty error; when loaded, every line's first word that the map
 *     knows maps to a host mailhost_valid_host() accepts, found again in
 *     upper case;
 *   - the filter for the input as a user name: printable ASCII only, one
 *     '(' and one ')' (the template's), no '*', and unescaping it gives
 *     the user back exactly; -1 only when it cannot fit;
 *   - the cache: each line of the input is put with a made-up answer and
 *     read back at once; the count never passes its bound.
 */
#include <sys/mman.h>

#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "mailhost.h"
#include "mailhost_ldap.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
check_map(const uint8_t *data, size_t size)
{
	struct mailhost_map *m;
	const char *err = NULL;
	char path[64], *text, *line, *save = NULL;
	int fd = memfd_create("fuzz_mailhost", 0);

	if (fd < 0)
		abort();
	if (size > 0 && write(fd, data, size) != (ssize_t)size)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	m = mailhost_map_load(path, &err);
	close(fd);
	if (m == NULL) {
		if (err == NULL || err[0] == '\0')
			abort();
		return;
	}
	text = malloc(size + 1);
	if (text == NULL)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	for (line = strtok_r(text, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		char user[300], *p;
		const char *host;

		if (sscanf(line, "%299s", user) != 1 || strchr(user, '#'))
			continue;
		host = mailhost_map_get(m, user);
		if (host == NULL)
			continue;
		if (!mailhost_valid_host(host))
			abort();
		for (p = user; *p != '\0'; p++)
			*p = (char)toupper((unsigned char)*p);
		if (mailhost_map_get(m, user) != host)
			abort();
	}
	free(text);
	mailhost_map_free(&m);
}

static int
hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ?
	    c - 'a' + 10 : -1;
}

static void
check_filter(const uint8_t *data, size_t size)
{
	char user[512], out[2048], back[512];
	size_t len = size < sizeof(user) - 1 ? size : sizeof(user) - 1, o = 0;
	int n, i, parens = 0;

	memcpy(user, data, len);
	user[len] = '\0';
	len = strlen(user);		/* a C string stops at NUL */
	n = mailhost_ldap_filter("(uid=%u)", user, out, sizeof(out));
	if (n < 0) {
		if (len * 3 + 7 < sizeof(out))
			abort();
		return;
	}
	if ((size_t)n != strlen(out) || strncmp(out, "(uid=", 5) != 0 ||
	    out[n - 1] != ')')
		abort();
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)out[i];

		if (c < 0x20 || c >= 0x7f || c == '*')
			abort();
		parens += c == '(' || c == ')';
	}
	if (parens != 2)
		abort();
	/* unescape the value: the user again */
	for (i = 5; i < n - 1; i++) {
		if (out[i] == '\\') {
			int hi = hexval(out[i + 1]), lo = hexval(out[i + 2]);

			if (hi < 0 || lo < 0)
				abort();
			back[o++] = (char)(hi * 16 + lo);
			i += 2;
		} else {
			back[o++] = out[i];
		}
	}
	back[o] = '\0';
	if (strcmp(back, user) != 0)
		abort();
	(void)mailhost_valid_host(user);
}

static void
check_cache(const uint8_t *data, size_t size)
{
	struct mailhost_cache *c = mailhost_cache_new(8);
	enum mailhost_result r;
	char host[MAILHOST_MAX_HOST], user[MAILHOST_MAX_USER + 1];
	size_t i = 0;
	time_t now = 0;

	if (c == NULL)
		abort();
	while (i < size) {
		size_t j = i, len;

		while (j < size && data[j] != '\n')
			j++;
		len = j - i < MAILHOST_MAX_USER ? j - i : MAILHOST_MAX_USER;
		memcpy(user, data + i, len);
		user[len] = '\0';
		now++;
		mailhost_cache_put(c, user, len % 2 ? MAILHOST_FOUND :
		    MAILHOST_NOT_FOUND, "imap.example", now + 5);
		if (user[0] != '\0' || len == 0) {
			if (!mailhost_cache_get(c, user, now, &r, host))
				abort();
			if (r != (len % 2 ? MAILHOST_FOUND : MAILHOST_NOT_FOUND))
				abort();
		}
		if (mailhost_cache_count(c) > 8)
			abort();
		i = j + 1;
	}
	mailhost_cache_free(&c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_map(data, size);
	check_filter(data, size);
	check_cache(data, size);
	return 0;
}
