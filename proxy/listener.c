/*
 * listener.c - see listener.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "conf.h"
#include "listener.h"

#define LISTEN_BACKLOG 1024

static int
bind_one(const struct conf_listener *l, int reuseport, char *err, size_t errsize)
{
	int fd, one = 1;

	fd = socket(l->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(err, errsize, "listener %s: socket: %s", l->name,
		    strerror(errno));
		return -1;
	}
	if (l->addr.is_unix) {
		const struct sockaddr_un *sun = (const struct sockaddr_un *)&l->addr.ss;
		struct stat st;

		/* Replace a stale socket, never another kind of file. */
		if (lstat(sun->sun_path, &st) == 0) {
			if (!S_ISSOCK(st.st_mode)) {
				snprintf(err, errsize, "listener %s: %s exists and "
				    "is not a socket", l->name, sun->sun_path);
				close(fd);
				return -1;
			}
			unlink(sun->sun_path);
		}
	} else {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (reuseport &&
		    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1) {
			snprintf(err, errsize, "listener %s: SO_REUSEPORT: %s",
			    l->name, strerror(errno));
			close(fd);
			return -1;
		}
		if (l->addr.ss.ss_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	}
	if (bind(fd, (const struct sockaddr *)&l->addr.ss, l->addr.sslen) == -1) {
		snprintf(err, errsize, "listener %s: bind %s: %s", l->name,
		    l->addr.text, strerror(errno));
		close(fd);
		return -1;
	}
	if (l->addr.is_unix)
		chmod(((const struct sockaddr_un *)&l->addr.ss)->sun_path, 0666);
	if (listen(fd, LISTEN_BACKLOG) == -1) {
		snprintf(err, errsize, "listener %s: listen: %s", l->name,
		    strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int
listener_bind_all(const struct conf *conf, unsigned workers,
		  struct listener_set *set, char *err, size_t errsize)
{
	size_t l;
	unsigned w;

	set->listener_count = conf->listener_count;
	set->worker_count = workers;
	set->fds = calloc(conf->listener_count * workers, sizeof(int));
	if (set->fds == NULL) {
		snprintf(err, errsize, "out of memory");
		return -1;
	}
	for (l = 0; l < conf->listener_count * workers; l++)
		set->fds[l] = -1;
	for (l = 0; l < conf->listener_count; l++) {
		const struct conf_listener *cl = &conf->listeners[l];

		for (w = 0; w < workers; w++) {
			int fd;

			if (cl->addr.is_unix && w > 0) {
				set->fds[l * workers + w] = set->fds[l * workers];
				continue;
			}
			fd = bind_one(cl, workers > 1, err, errsize);
			if (fd == -1) {
				listener_close_all(set);
				return -1;
			}
			set->fds[l * workers + w] = fd;
		}
	}
	return 0;
}

void
listener_fds_for_worker(const struct listener_set *set, unsigned w, int *out)
{
	size_t l;

	for (l = 0; l < set->listener_count; l++)
		out[l] = set->fds[l * set->worker_count + w];
}

void
listener_close_all(struct listener_set *set)
{
	size_t i, j;

	if (set->fds == NULL)
		return;
	for (i = 0; i < set->listener_count * set->worker_count; i++) {
		int fd = set->fds[i];
		if (fd < 0)
			continue;
		/* shared unix sockets appear several times: close once */
		for (j = i; j < set->listener_count * set->worker_count; j++)
			if (set->fds[j] == fd)
				set->fds[j] = -1;
		close(fd);
	}
	free(set->fds);
	set->fds = NULL;
}
