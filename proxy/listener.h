/*
 * listener.h - listening sockets.
 *
 * The master binds every socket before it drops privileges and forks.  A TCP
 * listener gets one socket per worker, all bound to the same address with
 * SO_REUSEPORT, so the kernel spreads connections over the workers and a
 * restarted worker takes over its predecessor's socket (the master keeps all
 * of them open).  A unix socket cannot be shared that way: all workers
 * accept on the one socket.
 */
#ifndef MSA_LISTENER_H
#define MSA_LISTENER_H

#include <stddef.h>

struct conf;

struct listener_set {
	size_t listener_count;		/* = conf->listener_count */
	unsigned worker_count;
	int *fds;			/* [listener * worker_count + worker] */
};

/* Bind everything.  On failure returns -1 with a message in err. */
int listener_bind_all(const struct conf *conf, unsigned workers,
		      struct listener_set *set, char *err, size_t errsize);

/* The fds worker `w` accepts on, one per listener, into out[]. */
void listener_fds_for_worker(const struct listener_set *set, unsigned w,
			     int *out);

void listener_close_all(struct listener_set *set);

#endif
