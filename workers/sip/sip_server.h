/*
 * sip_server.h — the server role: what the SIP worker does with each message
 * a device (or lower platform) sends.  Answers to the platform's own
 * requests are handed to the request queue (sip_requests.h).
 *
 * A new message handler: a handle_* function in sip_server.c called from
 * handle_one() (by method) or handle_manscdp() (by MANSCDP root and
 * CmdType); a device report that goes to SQL is a named operation of
 * sip_sql.h queued with sip_db_queue().
 */
#ifndef VMS_SIP_SERVER_H
#define VMS_SIP_SERVER_H

#include "sip_core.h"

/* one message from the network (the hook sip_net calls) */
extern void sip_handle(const char *buf, size_t len, const Peer *peer);

/* once a second: ended bans and old failures are forgotten */
extern void sip_server_tick(void);

#endif
