/*
 * sip_control.h — device control, configuration and the queries answered
 * by one Response or by pages of records (issue 17): the request kinds
 * device_control, device_query and record_info of vms.sip_request.
 *
 * SQL (extension/sql/26_device_control.sql) has already checked the input,
 * the right and the device, and built the command's MANSCDP elements; this
 * file wraps them in <Control>/<Query> with CmdType, SN and DeviceID, and
 * follows the answer: the MESSAGE's final status, then (when one is
 * expected) the Response with the same SN and CmdType, or RecordInfo's
 * pages up to SumNum.  The MESSAGE itself is sent and retransmitted by
 * sip_requests.c, which calls the functions below.
 */
#ifndef VMS_SIP_CONTROL_H
#define VMS_SIP_CONTROL_H

#include "sip_devices.h"

/* is kind one of this file's request kinds */
extern bool sip_control_kind(const char *kind);

/*
 * Start request id of that kind to device d: the MESSAGE body to send
 * (palloc'd in the caller's context), or NULL when the request could not
 * start (it is then already failed, with the reason).
 */
extern char *sip_control_start(int64 id, Dev *d, const char *kind, const char *params);

/* <root> with CmdType, SN, DeviceID and then xml (elements built by SQL, escaped), palloc'd */
extern char *sip_manscdp_request(const char *root, const char *cmd, const char *sn, const char *target, const char *xml);

/* the MESSAGE's final SIP status; 0: no final answer (timed out), -1: could not be sent */
extern void sip_control_sent(int64 id, int status);

/* a MANSCDP Response from device d: an answer to one of ours? (Manscdp *) */
extern bool sip_control_manscdp(Dev *d, void *manscdp);

/* deadlines: no Response, or pages that stopped coming */
extern void sip_control_tick(void);

/* REGISTER: the device's X-GB-Ver (digits and dots), queued for device_session.gb_version; false when it sent none */
extern bool sip_control_gb_version(const SipIn *in, Dev *d);

/* requests waiting on an answer */
extern int	sip_control_open(void);

#endif
