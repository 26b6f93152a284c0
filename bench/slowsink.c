/*
 * slowsink.c - an SMTP sink on 127.0.0.1 that answers the end of data
 * after DELAY_US microseconds (as a backend that writes and syncs its
 * queue file before its 250 would: Postfix's cleanup), everything else at
 * once.  No PIPELINING, no CHUNKING.  For measuring audit.pending_sync
 * (docs/PERFORMANCE.md, "The audit trail"); smtp-sink's delays are whole
 * seconds.
 *
 * usage: bench/slowsink PORT DELAY_US
 */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

static struct event_base *base;
static long delay_us;
static unsigned long queued;

struct conn {
	struct bufferevent *bev;
	int data;		/* in DATA content */
	struct event *timer;
	int waiting;		/* the dot's reply is due */
};

static void readcb(struct bufferevent *bev, void *arg);

static void
say(struct conn *c, const char *s)
{
	bufferevent_write(c->bev, s, strlen(s));
}

static void
done(struct conn *c)
{
	if (c->timer)
		event_free(c->timer);
	bufferevent_free(c->bev);
	free(c);
}

static void
timercb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	char buf[80];

	(void)fd;
	(void)what;
	c->waiting = 0;
	snprintf(buf, sizeof(buf), "250 2.0.0 Ok: queued as S%lu\r\n", ++queued);
	say(c, buf);
	readcb(c->bev, c);	/* what came meanwhile */
}

static void
readcb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n;
	char *line;

	while (!c->waiting &&
	    (line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF)) != NULL) {
		if (c->data) {
			if (strcmp(line, ".") == 0) {
				struct timeval tv = { delay_us / 1000000,
				    delay_us % 1000000 };

				c->data = 0;
				c->waiting = 1;
				evtimer_add(c->timer, &tv);
			}
		} else if (!strncasecmp(line, "EHLO", 4) || !strncasecmp(line, "LHLO", 4)) {
			say(c, "250-slowsink\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE 100000000\r\n");
		} else if (!strncasecmp(line, "HELO", 4)) {
			say(c, "250 slowsink\r\n");
		} else if (!strncasecmp(line, "DATA", 4)) {
			c->data = 1;
			say(c, "354 End data with <CR><LF>.<CR><LF>\r\n");
		} else if (!strncasecmp(line, "QUIT", 4)) {
			say(c, "221 2.0.0 Bye\r\n");
		} else {
			say(c, "250 2.0.0 Ok\r\n");
		}
		free(line);
	}
}

static void
eventcb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		done(arg);
}

static void
acceptcb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
	 int len, void *arg)
{
	struct conn *c = calloc(1, sizeof(*c));

	(void)l;
	(void)sa;
	(void)len;
	(void)arg;
	c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->timer = evtimer_new(base, timercb, c);
	bufferevent_setcb(c->bev, readcb, NULL, eventcb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	say(c, "220 slowsink ESMTP\r\n");
}

int
main(int argc, char **argv)
{
	struct sockaddr_in sin;

	if (argc != 3)
		return 2;
	delay_us = atol(argv[2]);
	base = event_base_new();
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((unsigned short)atoi(argv[1]));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (evconnlistener_new_bind(base, acceptcb, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 4096,
	    (struct sockaddr *)&sin, sizeof(sin)) == NULL) {
		perror("bind");
		return 1;
	}
	event_base_dispatch(base);
	return 0;
}
