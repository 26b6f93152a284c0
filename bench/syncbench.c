/*
 * syncbench.c - what one append + fdatasync() costs on a file system, three
 * ways (docs/PERFORMANCE.md, "The audit trail"):
 *
 *   append       write() at the end of the file, fdatasync(): the file
 *                grows, so the sync writes the data, allocates blocks and
 *                writes the inode (the new size)
 *   keep_size    the same into space reserved ahead with
 *                fallocate(FALLOC_FL_KEEP_SIZE), as the audit writer does:
 *                no allocation, still the inode (the size)
 *   overwrite    write() over zeros written (and synced) beforehand: the
 *                size does not change, the sync writes the data only
 *
 * usage: bench/syncbench DIR [COUNT [BYTES]]   (2000 appends of 3000 octets)
 * DIR must be on the file system to measure (not a tmpfs).  Prints, per
 * way, the wall time per write+sync (mean, p50, p90) and this process's
 * CPU time (user + system) per write+sync.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double
now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double
cpu(void)
{
	struct rusage r;

	getrusage(RUSAGE_SELF, &r);
	return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
	    (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	static const char *names[] = { "append", "keep_size", "overwrite" };
	const char *dir;
	size_t sz, total, o;
	char *buf, *zero, path[4096];
	double *lat, c0, t0, t1, c1;
	int n, mode, i, fd;

	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR [COUNT [BYTES]]\n", argv[0]);
		return 2;
	}
	dir = argv[1];
	n = argc > 2 ? atoi(argv[2]) : 2000;
	sz = argc > 3 ? (size_t)atol(argv[3]) : 3000;
	if (n <= 0 || sz == 0)
		return 2;
	buf = malloc(sz);
	zero = calloc(1, 1 << 20);
	lat = malloc((size_t)n * sizeof(*lat));
	if (buf == NULL || zero == NULL || lat == NULL)
		return 1;
	memset(buf, 'x', sz);
	buf[sz - 1] = '\n';
	total = (size_t)n * sz + (1 << 20);
	for (mode = 0; mode < 3; mode++) {
		snprintf(path, sizeof(path), "%s/syncbench.%d", dir, mode);
		unlink(path);
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (fd < 0) {
			perror(path);
			return 1;
		}
		if (mode == 1 &&
		    fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)total) < 0) {
			perror("fallocate");
			return 1;
		}
		if (mode == 2) {
			for (o = 0; o < total; o += 1 << 20)
				if (write(fd, zero, 1 << 20) != 1 << 20) {
					perror("write");
					return 1;
				}
			if (fsync(fd) < 0 || lseek(fd, 0, SEEK_SET) < 0) {
				perror("fsync");
				return 1;
			}
		}
		c0 = cpu();
		t0 = now();
		for (i = 0; i < n; i++) {
			double a = now();

			if (write(fd, buf, sz) != (ssize_t)sz || fdatasync(fd) < 0) {
				perror("write/fdatasync");
				return 1;
			}
			lat[i] = now() - a;
		}
		t1 = now();
		c1 = cpu();
		qsort(lat, (size_t)n, sizeof(*lat), cmp);
		printf("%-10s n=%d bytes=%zu: mean %.3f ms, p50 %.3f ms, "
		    "p90 %.3f ms, CPU %.3f ms per write+sync\n", names[mode], n,
		    sz, (t1 - t0) * 1e3 / n, lat[n / 2] * 1e3,
		    lat[n * 9 / 10] * 1e3, (c1 - c0) * 1e3 / n);
		close(fd);
		unlink(path);
	}
	free(buf);
	free(zero);
	free(lat);
	return 0;
}
