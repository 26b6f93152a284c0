/*
 * burl_access.c - BURL_ACCESS probes and flags (see burl_access.h).
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "burl_access.h"
#include "conf.h"
#include "mapping.h"

static void
make_probe(const struct conf_burl *cb, const struct burl_access_in *in,
	   const char *url, char *buf, size_t size, int *bar)
{
	struct mapping_probe p;
	char authid[600];

	if (in->identity[0] != '\0' && cb->access_domain[0] != '\0' &&
	    strchr(in->identity, '@') == NULL)
		snprintf(authid, sizeof(authid), "%s@%s", in->identity,
		    cb->access_domain);
	else
		snprintf(authid, sizeof(authid), "%s", in->identity);
	memset(&p, 0, sizeof(p));
	p.server_addr = in->server_addr;
	p.server_port = in->server_port;
	p.client_addr = in->client_addr;
	p.client_port = in->client_port;
	p.channel = in->channel;
	p.authid = authid;
	p.url = url;
	p.paranoia = cb->access_paranoia[0];
	*bar = 0;
	if (mapping_burl_probe(&p, buf, size, bar) < 0)
		buf[0] = '\0';
}

static int
eval(const struct conf_burl *cb, const struct burl_access_in *in,
     const char *url, struct mapping_result *r)
{
	const struct mapping_table *t;
	struct mapping_ctx ctx;
	char probe[MAPPING_MAX_PROBE];
	int bar;

	memset(r, 0, sizeof(*r));
	t = cb->access != NULL ? mapping_table(cb->access, cb->access_table) :
	    NULL;
	if (t == NULL)
		return -1;
	make_probe(cb, in, url, probe, sizeof(probe), &bar);
	if (probe[0] == '\0')
		return -1;	/* does not fit: refuse */
	memset(&ctx, 0, sizeof(ctx));
	ctx.sasl_used = in->sasl;
	ctx.tls_used = in->tls;
	ctx.url_had_bar = bar;
	return mapping_eval(cb->access, t, probe, &ctx, r);
}

int
burl_access_ehlo(const struct conf_burl *cb, const struct burl_access_in *in,
		 char *types, size_t size)
{
	struct mapping_result r;
	size_t i, n = 0;

	if (eval(cb, in, NULL, &r) < 0 || !(r.flags & MAPPING_FLAG_Y) ||
	    (r.flags & MAPPING_FLAG_N))
		return 0;
	/* the URL types go on the EHLO line: printable, one space apart */
	for (i = 0; r.out[i] != '\0' && n + 1 < size; i++) {
		unsigned char c = (unsigned char)r.out[i];

		if (c == ' ' || c == '\t') {
			if (n > 0 && types[n - 1] != ' ')
				types[n++] = ' ';
		} else if (c > 0x20 && c < 0x7f) {
			types[n++] = (char)c;
		}
	}
	while (n > 0 && types[n - 1] == ' ')
		n--;
	types[n] = '\0';
	if (n == 0)
		snprintf(types, size, "imap");
	return 1;
}

int
burl_access_reply_text(const char *text, char *out, size_t size)
{
	const char *p = text;
	size_t i;

	while (*p == ' ')
		p++;
	if ((p[0] != '4' && p[0] != '5') || !isdigit((unsigned char)p[1]) ||
	    !isdigit((unsigned char)p[2]) || (p[3] != ' ' && p[3] != '\0'))
		return 0;
	for (i = 0; p[i] != '\0'; i++)
		if ((unsigned char)p[i] < 0x20 || (unsigned char)p[i] >= 0x7f)
			return 0;
	{
		/* an enhanced code (class digit . digits . digits) after it? */
		const char *e = p[3] == ' ' ? p + 4 : p + 3;
		int has = e[0] == p[0] && e[1] == '.' &&
		    isdigit((unsigned char)e[2]);

		if (has)
			snprintf(out, size, "%s", p);
		else
			snprintf(out, size, "%.3s %c.7.1%s%s", p, p[0],
			    *e != '\0' ? " " : "", e);
	}
	return 1;
}

void
burl_access_check(const struct conf_burl *cb, const struct burl_access_in *in,
		  const char *url, struct burl_access_verdict *v)
{
	struct mapping_result r;
	char flags[32];

	memset(v, 0, sizeof(*v));
	v->reply = R_BURL_ACCESS_TABLE_DENIED;
	if (eval(cb, in, url, &r) < 0) {
		snprintf(v->why, sizeof(v->why), "BURL_ACCESS evaluation failed"
		    " (%s): refused", r.detail[0] ? r.detail : "no table");
		return;
	}
	mapping_flags_string(r.flags, flags, sizeof(flags));
	snprintf(v->why, sizeof(v->why), "BURL_ACCESS %s:%d flags %s",
	    r.file != NULL ? r.file : "-", r.file != NULL ? r.line : 0,
	    flags[0] ? flags : "none");
	if (r.flags & MAPPING_FLAG_N) {
		if (r.out[0] != '\0' &&
		    !burl_access_reply_text(r.out, v->reply_text,
		    sizeof(v->reply_text)))
			v->reply_text[0] = '\0';
		v->disconnect = (r.flags & MAPPING_FLAG_I) != 0;
		return;
	}
	if (!(r.flags & MAPPING_FLAG_Y))
		return;
	if (r.flags & MAPPING_FLAG_D) {
		size_t n = strlen(r.out);

		if (n == 0 || n >= sizeof(v->url)) {
			snprintf(v->why + strlen(v->why), sizeof(v->why) -
			    strlen(v->why), ": $D URL empty or too long");
			return;
		}
		v->rewritten = 1;
		memcpy(v->url, r.out, n + 1);
	}
	v->allowed = 1;
	v->use_mailhost = (r.flags & MAPPING_FLAG_M) != 0;
	v->force_tls = (r.flags & MAPPING_FLAG_T) != 0;
	v->no_tls = (r.flags & MAPPING_FLAG_X) != 0;
}
