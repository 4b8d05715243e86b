/*
 * sip_requests.h — the SQL request queue: the platform's own requests to
 * devices, asked for in SQL (vms.sip_request) and claimed by the worker.
 *
 * A new request kind: a K_* value and a start_* function in sip_requests.c,
 * one `else if` in sip_requests_start(), its answers in
 * sip_requests_response() (SIP status) or sip_requests_manscdp() (MANSCDP
 * Response), and any SQL it needs as a named operation in sip_sql.h/.c.
 */
#ifndef VMS_SIP_REQUESTS_H
#define VMS_SIP_REQUESTS_H

#include "sip_devices.h"

/* the queue */
extern void sip_requests_claim(void);	/* queued rows of vms.sip_request, started */
extern void sip_requests_recover(void); /* after a start: what a previous worker left in flight */
extern void sip_requests_load_subscriptions(void);
extern void sip_requests_start(int64 id, const char *device, const char *kind, const char *params);

/* what devices send back (called by the server role) */
extern bool sip_requests_response(const SipIn *in, const Peer *peer);
extern bool sip_requests_manscdp(Dev *d, const char *from_code, void *manscdp);
extern bool sip_requests_notify(const SipIn *in, Dev *d, void *manscdp);
extern int	sip_requests_bye_from_device(const char *call_id, const Peer *peer);

/* timers: retransmissions, timeouts, renewals */
extern void sip_requests_tick(void);
extern void sip_requests_reset(void);
extern int	sip_requests_open(void);

#endif
