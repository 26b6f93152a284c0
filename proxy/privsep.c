/*
 * privsep.c - giving up root (see privsep.h).
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>

#include "privsep.h"

#if defined(__SANITIZE_ADDRESS__)
#define MSA_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MSA_SANITIZER 1
#endif
#endif

int
privsep_resolve(const char *user, const char *group, struct privsep_id *id,
		char *err, size_t errsize)
{
	struct passwd *pw;

	memset(id, 0, sizeof(*id));
	if (geteuid() != 0) {
		struct passwd *me = getpwuid(geteuid());

		/* nothing to give up; a name that is not ours is a mistake */
		if (user[0] != '\0' && (me == NULL ||
		    strcmp(me->pw_name, user) != 0)) {
			snprintf(err, errsize, "user = \"%s\": msaproxy is not "
			    "running as root and cannot become %s", user, user);
			return -1;
		}
		return 0;
	}
	if (user[0] == '\0' || strcmp(user, "root") == 0) {
		snprintf(err, errsize, "running as root: set user to the "
		    "unprivileged account the workers run as (e.g. user = "
		    "\"msaproxy\"); msaproxy does not serve clients as root");
		return -1;
	}
	pw = getpwnam(user);
	if (pw == NULL) {
		snprintf(err, errsize, "user %s: no such user (create it, e.g. "
		    "useradd --system --no-create-home --shell "
		    "/usr/sbin/nologin %s)", user, user);
		return -1;
	}
	if (pw->pw_uid == 0) {
		snprintf(err, errsize, "user %s has uid 0: choose an "
		    "unprivileged account", user);
		return -1;
	}
	id->gid = pw->pw_gid;
	if (group[0] != '\0') {
		struct group *gr = getgrnam(group);

		if (gr == NULL) {
			snprintf(err, errsize, "group %s: no such group", group);
			return -1;
		}
		id->gid = gr->gr_gid;
	}
	if (id->gid == 0) {
		snprintf(err, errsize, "user %s: group 0 (root) is not an "
		    "unprivileged group: set group", user);
		return -1;
	}
	id->uid = pw->pw_uid;
	id->drop = 1;
	snprintf(id->name, sizeof(id->name), "%s", user);
	return 0;
}

int
privsep_drop(const struct privsep_id *id, const char *chroot_dir, char *err,
	     size_t errsize)
{
	if (!id->drop) {
		if (chroot_dir[0] != '\0') {
			snprintf(err, errsize, "chroot %s needs root",
			    chroot_dir);
			return -1;
		}
		/* unprivileged already; keep it that way across exec */
		(void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
		return 0;
	}
	if (chroot_dir[0] != '\0' && (chdir(chroot_dir) == -1 ||
	    chroot(".") == -1 || chdir("/") == -1)) {
		snprintf(err, errsize, "chroot %s: %s", chroot_dir,
		    strerror(errno));
		return -1;
	}
	if (setgroups(1, &id->gid) == -1 ||
	    setresgid(id->gid, id->gid, id->gid) == -1 ||
	    setresuid(id->uid, id->uid, id->uid) == -1) {
		snprintf(err, errsize, "becoming %s: %s", id->name,
		    strerror(errno));
		return -1;
	}
	/* No way back: root is gone from the real, effective and saved ids. */
	if (setuid(0) == 0 || seteuid(0) == 0) {
		snprintf(err, errsize, "could become root again after "
		    "becoming %s", id->name);
		return -1;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
		snprintf(err, errsize, "no_new_privs: %s", strerror(errno));
		return -1;
	}
	/*
	 * The uid change left the process non-dumpable, so that another
	 * process of the same user cannot ptrace it or read its memory (the
	 * workers' keys, the audit writer's HMAC key).  LeakSanitizer needs to
	 * ptrace its own process at exit: sanitizer builds only (tests) make
	 * it dumpable again.
	 */
#ifdef MSA_SANITIZER
	(void)prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
#endif
	return 0;
}
