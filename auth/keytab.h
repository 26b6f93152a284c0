/*
 * keytab.h - keytabs held in memory, so that unprivileged workers never
 * open a keytab file.
 *
 * MIT krb5's MEMORY keytabs live in the process that made them.  The
 * master (root) copies each keytab file the configuration names into
 * "MEMORY:<path>" before it forks; a worker inherits the copy, and the
 * GSSAPI acceptor (sasl.keytab) and the BURL client credentials
 * (burl.imap_servers[].keytab) use the memory name.  The file can then be
 * readable by root only.  The master keeps a handle open on each copy: MIT
 * destroys a memory keytab when its last handle is closed.
 *
 * On SIGHUP the master reads the files again (keytab_reload_all): workers
 * forked from then on have the new keys (a rotated kvno); the running ones
 * keep theirs.
 */
#ifndef MSA_KEYTAB_H
#define MSA_KEYTAB_H

#include <stddef.h>

/* At most this many distinct keytab files. */
#define KEYTAB_MAX 16

/*
 * Copy the keytab `name` ("FILE:/path", "/path", or already "MEMORY:...",
 * which is left as it is) into memory and write the memory keytab's name
 * into memname.  The same file twice gives the same copy.  0, or -1 with
 * *error_r set (static text).
 */
int keytab_to_memory(const char *name, char *memname, size_t memsize,
		     const char **error_r);

/* Read every file again into its copy.  A copy whose file cannot be read
 * (or is empty) keeps its old keys; -1 then, with err filled in. */
int keytab_reload_all(char *err, size_t errsize);

/* Close every copy (the master, at exit). */
void keytab_free_all(void);

#endif
