/*
 * sip_upstream.h — the client role: vms as a lower platform of upper GB/T
 * 28181 platforms (vms.sip_upstream).  It REGISTERs up with digest (MD5 or
 * SHA-256, qop=auth when offered), keeps alive at the upstream's interval,
 * registers again with backoff after missed keepalives, a refusal or a
 * restart, and answers the upper platform's Catalog, DeviceInfo and
 * DeviceStatus queries with what vms.sip_share gives it.  States and
 * transitions go to vms.sip_upstream_state/_event in batches.
 */
#ifndef VMS_SIP_UPSTREAM_H
#define VMS_SIP_UPSTREAM_H

#include "sip_core.h"

/* the upstreams from SQL (at start, when woken, every claim round) */
extern void sip_upstream_load(void);

/* timers (every round): registrations, keepalives, retransmissions, answers to send */
extern void sip_upstream_tick(void);

/* the retransmissions due (network only, no SQL; also at each tick) */
extern void sip_upstream_retransmit(void);

/* when the next retransmission of the client role is due (the worker's wait ends then), DT_NOEND: none */
extern TimestampTz sip_upstream_next_due(void);

/* states and transitions to the database (at each flush) */
extern void sip_upstream_flush(void);

/* a response to one of the client role's requests: true when it was one */
extern bool sip_upstream_response(const SipIn *in, const Peer *peer);

/* a device's BYE for a call relayed from an upper platform: true when it was one */
extern bool sip_upstream_bye_from_device(const SipIn *in, const Peer *peer);

/* a device's answer to a control or query relayed from an upper platform: true when it was one */
struct Manscdp;
extern bool sip_upstream_device_answer(const char *device, const struct Manscdp *m, const char *body, size_t len);

/* a request from an upper platform: true when it was one (and it is answered) */
extern bool sip_upstream_request(const SipIn *in, const Peer *peer);

/* "upstream city registered, town failing" for vms.worker_status; empty without upstreams */
extern void sip_upstream_describe(char *buf, size_t len);

#endif
