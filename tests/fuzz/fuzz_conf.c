/*
 * fuzz_conf.c - libFuzzer target: the configuration parser (conf/conf.c on
 * top of libconfig) with arbitrary file contents.  Invariants: it never
 * crashes or leaks; it returns a configuration or an error text, never
 * both, and every error line starts with the file name.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	char err[4096];
	struct conf *c;
	FILE *f;

	if (size > 64 * 1024)
		return 0;
	if (path[0] == '\0')
		snprintf(path, sizeof(path), "/tmp/msaproxy-fuzz-conf.%ld",
		    (long)getpid());
	f = fopen(path, "w");
	if (f == NULL)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	err[0] = '\0';
	c = conf_load(path, err, sizeof(err));
	if (c != NULL) {
		if (err[0] != '\0' && strncmp(err, path, strlen(path)) == 0)
			abort();	/* an error text with a configuration */
		conf_free(&c);
	} else if (strncmp(err, path, strlen(path)) != 0) {
		abort();		/* every problem names the file */
	}
	return 0;
}
