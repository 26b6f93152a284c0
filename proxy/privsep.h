/*
 * privsep.h - giving up root: who the workers and the audit writer run as.
 *
 * The master stays root: it reads no network input, and it needs root to
 * load certificates, keys and keytabs again on SIGHUP for the workers it
 * forks then.  Every child gives root up right after the fork, before it
 * reads any input: chroot (optional, workers only), supplementary groups,
 * gid, uid (real, effective and saved: no way back), then no_new_privs.
 *
 * The names are resolved once, in the master (getpwnam does not work
 * inside a chroot).
 */
#ifndef MSA_PRIVSEP_H
#define MSA_PRIVSEP_H

#include <stddef.h>
#include <sys/types.h>

struct privsep_id {
	int drop;			/* 0: started unprivileged, stay as is */
	uid_t uid;
	gid_t gid;
	char name[64];			/* for the log */
};

/*
 * Resolve user (and group, "" = the user's primary group) into id.  Running
 * as root, user must name an unprivileged account: "" or "root" is an
 * error.  Not running as root, "" keeps the current identity (a developer's
 * run, or a service manager that started msaproxy unprivileged) and any
 * other name must be the current user.  0, or -1 with err filled in.
 */
int privsep_resolve(const char *user, const char *group,
		    struct privsep_id *id, char *err, size_t errsize);

/*
 * Become id for good.  chroot_dir ("" = none) is entered first.  0, or -1
 * with err filled in: the caller must then exit, never go on as root.
 */
int privsep_drop(const struct privsep_id *id, const char *chroot_dir,
		 char *err, size_t errsize);

#endif
