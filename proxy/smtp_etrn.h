/*
 * smtp_etrn.h - the ETRN command (RFC 1985) in the session: "may I" (where
 * it is offered, sequence, syntax, policy) apart from "do it" (relay it to
 * the backend MTA and map the backend's answer).  See smtp_etrn.c.
 */
#ifndef MSA_SMTP_ETRN_H
#define MSA_SMTP_ETRN_H

#include "backend_reply.h"
#include "smtp_reply.h"

struct session;

/*
 * Is ETRN offered to this session?  The one predicate behind both the EHLO
 * keyword and the command's 502: the listener is named in etrn.listeners,
 * and the backend is not known to lack ETRN (while its capabilities are
 * unknown, ETRN is offered and a backend that cannot be reached gives
 * 458 4.4.1).
 */
int smtp_etrn_offered(const struct session *s);

/* The command (V_ETRN in smtp_cmds.c's table). */
void cmd_etrn(struct session *s, char *args);

/*
 * The backend's reply to our ETRN (session.c, TAG_ETRN), and the backend's
 * failure before it replied.  The caller has already decremented
 * s->outstanding; these write the client's reply.  The reply handler may
 * free s->be (421).
 */
void smtp_etrn_backend_reply(struct session *s, const struct backend_reply *r);
void smtp_etrn_backend_error(struct session *s, enum smtp_reply_id why);

#endif
