/*
 * sip_net.h — the SIP worker's sockets: one UDP socket and one TCP listener
 * on vms.sip_listen:vms.sip_port behind an epoll set, TCP connections
 * framed by Content-Length, and sending.  What a message means is not this
 * file's business: each complete message goes to the hook the event loop
 * gave (the server role's dispatcher).
 */
#ifndef VMS_SIP_NET_H
#define VMS_SIP_NET_H

#include "sip_core.h"

typedef struct SipNetHooks
{
	/* after each receive, before its messages are handled */
	void		(*before_messages) (void);
	/* one complete message */
	void		(*message) (const char *buf, size_t len, const Peer *peer);
} SipNetHooks;

extern void sip_net_init(const SipNetHooks *hooks);
extern int	sip_net_wait_fd(void);	/* the epoll set, for the loop's WaitEventSet */
extern void sip_net_open(void);
extern void sip_net_close(void);
extern bool sip_net_settings_changed(void);
extern void sip_net_drain(void);
extern void sip_net_expire(void);
extern void sip_net_abort_batch(void);	/* after an error: UDP answers of the batch not sent */

extern void sip_send(const Peer *peer, const char *data, size_t len);
/* an outgoing TCP connection to p's address (p gets its slot); is p's connection still open */
extern bool sip_net_connect(Peer *p);
extern bool sip_net_conn_alive(const Peer *p);
/* is p's outgoing connection still being established (it does not block); why it failed when it did */
extern bool sip_net_conn_connecting(const Peer *p);
extern const char *sip_net_conn_error(const Peer *p);
/* answer a request (a To tag stable across its retransmissions) */
extern void sip_answer(const SipIn *in, const Peer *peer, int code, const char *reason, const char *extra);
extern void sip_to_tag(const char *call_id, char *tag, size_t len);	/* the To tag sip_answer gives */
extern const char *sip_local_ip(void);
extern const char *sip_local_ip_for(const Peer *peer);	/* as the peer sees us, when listening on all addresses */
extern int	sip_local_port(void);

#endif
