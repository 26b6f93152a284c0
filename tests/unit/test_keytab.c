/*
 * test_keytab.c - keytabs copied into memory (auth/keytab.h): the copy has
 * the file's keys, survives a fork (what a worker inherits), is read again
 * on reload (a rotated key), and keeps its keys when the file is gone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <krb5.h>

#include "keytab.h"

static char path[64];

/* Append a key (aes128-cts, 16 bytes of `fill`) for svc/host@T.TEST. */
static void
add_key(const char *ktname, int kvno, int fill)
{
	krb5_context k;
	krb5_keytab kt;
	krb5_keytab_entry e;
	unsigned char key[16];

	memset(key, fill, sizeof(key));
	assert_int_equal(krb5_init_context(&k), 0);
	assert_int_equal(krb5_kt_resolve(k, ktname, &kt), 0);
	memset(&e, 0, sizeof(e));
	assert_int_equal(krb5_parse_name(k, "svc/host@T.TEST", &e.principal), 0);
	e.vno = (krb5_kvno)kvno;
	e.key.enctype = ENCTYPE_AES128_CTS_HMAC_SHA1_96;
	e.key.length = sizeof(key);
	e.key.contents = key;
	assert_int_equal(krb5_kt_add_entry(k, kt, &e), 0);
	krb5_free_principal(k, e.principal);
	krb5_kt_close(k, kt);
	krb5_free_context(k);
}

/* Keys in the keytab; -1 if it cannot be read. */
static int
count_keys(const char *ktname)
{
	krb5_context k;
	krb5_keytab kt;
	krb5_kt_cursor cur;
	krb5_keytab_entry e;
	int n = 0;

	if (krb5_init_context(&k) != 0)
		return -1;
	if (krb5_kt_resolve(k, ktname, &kt) != 0) {
		krb5_free_context(k);
		return -1;
	}
	if (krb5_kt_start_seq_get(k, kt, &cur) != 0) {
		n = -1;
	} else {
		while (krb5_kt_next_entry(k, kt, &e, &cur) == 0) {
			n++;
			krb5_free_keytab_entry_contents(k, &e);
		}
		krb5_kt_end_seq_get(k, kt, &cur);
	}
	krb5_kt_close(k, kt);
	krb5_free_context(k);
	return n;
}

static int
setup(void **state)
{
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "/tmp/msaproxy-kt-XXXXXX");
	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	close(fd);
	unlink(path);		/* MIT writes a new keytab into a missing file */
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	keytab_free_all();
	unlink(path);
	return 0;
}

static void
test_copy_fork_reload(void **state)
{
	char file[80], mem[700], mem2[700], err[300];
	const char *error = NULL;
	pid_t pid;
	int status;

	(void)state;
	snprintf(file, sizeof(file), "FILE:%s", path);
	add_key(file, 1, 0x11);
	add_key(file, 1, 0x22);

	assert_int_equal(keytab_to_memory(path, mem, sizeof(mem), &error), 0);
	assert_true(strncmp(mem, "MEMORY:", 7) == 0);
	assert_string_equal(mem + 7, path);
	assert_int_equal(count_keys(mem), 2);
	/* the same file, named either way, is the same copy */
	assert_int_equal(keytab_to_memory(file, mem2, sizeof(mem2), &error), 0);
	assert_string_equal(mem, mem2);
	assert_int_equal(count_keys(mem), 2);
	/* a memory name is taken as it is */
	assert_int_equal(keytab_to_memory(mem, mem2, sizeof(mem2), &error), 0);
	assert_string_equal(mem, mem2);

	/* a forked child (a worker) has the copy, without the file */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		unlink(path);
		_exit(count_keys(mem) == 2 ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	unlink(path);
	add_key(file, 1, 0x11);
	add_key(file, 1, 0x22);

	/* a rotated key: the reload replaces the copy's keys */
	unlink(path);
	add_key(file, 2, 0x33);
	assert_int_equal(count_keys(mem), 2);
	assert_int_equal(keytab_reload_all(err, sizeof(err)), 0);
	assert_int_equal(count_keys(mem), 1);

	/* the file gone: the reload fails and the copy keeps its keys */
	unlink(path);
	assert_int_equal(keytab_reload_all(err, sizeof(err)), -1);
	assert_non_null(strstr(err, "keeping the keys read before"));
	assert_int_equal(count_keys(mem), 1);
}

static void
test_refused(void **state)
{
	char mem[700];
	const char *error = NULL;

	(void)state;
	/* missing file */
	assert_int_equal(keytab_to_memory("/nonexistent/msaproxy.keytab", mem,
	    sizeof(mem), &error), -1);
	assert_non_null(error);
	/* too small a buffer for the name */
	{
		char file[80];

		snprintf(file, sizeof(file), "FILE:%s", path);
		add_key(file, 1, 0x44);
		error = NULL;
		assert_int_equal(keytab_to_memory(path, mem, 8, &error), -1);
		assert_string_equal(error, "keytab name too long");
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_copy_fork_reload, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
