/*
 * smtp_auth.h - SMTP AUTH in the session (RFC 4954) and sender
 * authorization.  See smtp_auth.c.
 */
#ifndef MSA_SMTP_AUTH_H
#define MSA_SMTP_AUTH_H

struct conf;
struct session;

/* Master, before fork: Cyrus SASL, the sender map.  -1 with *error_r. */
int smtp_auth_init(const struct conf *conf, const char **error_r);

/* The mechanisms EHLO offers this session now ("" = none); the AUTH
 * command accepts exactly these. */
const char *auth_mechanisms(const struct session *s);

void cmd_auth(struct session *s, char *args);
/* A line sent in answer to our 334 (session state S_AUTH). */
void smtp_auth_response(struct session *s, char *line);

void smtp_auth_session_init(struct session *s);
void smtp_auth_session_free(struct session *s);

/*
 * May the authenticated identity use `addr` as MAIL FROM?  Rules, in
 * order: no sender policy configured (no sender_map, no sender_domains):
 * yes; the null sender: yes; the identity itself when it is an address;
 * identity@D for each D in sasl.sender_domains; the sender_map entries for
 * the identity (an address, "@domain", a glob, "%u" = the identity).
 */
int smtp_sender_allowed(const struct session *s, const char *addr);

#endif
