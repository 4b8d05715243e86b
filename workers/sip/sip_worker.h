/*
 * sip_worker.h — shared state of the "vms sip" worker (GB/T 28181).
 *
 * One process, one event loop: UDP and TCP sockets behind an epoll set that
 * sits in the worker's WaitEventSet beside its latch.  Device sessions live
 * in memory (a dynahash keyed by the 20-digit code) and are written to the
 * database in batches; nothing waits on the database while a packet waits
 * on the worker, and no transaction spans a network wait.
 */
#ifndef VMS_SIP_WORKER_H
#define VMS_SIP_WORKER_H

#include "postgres.h"

#include <sys/socket.h>

#include "datatype/timestamp.h"
#include "utils/hsearch.h"

#include "sbuf.h"
#include "sip_msg.h"
/* libosip2 names a header WARNING; PostgreSQL's log level must win */
#undef WARNING
#define WARNING 19
#include "sip_settings.h"
#include "../worker_registry.h"

/* counters shown in vms.worker_status */
enum
{
	C_IN, C_OUT, C_REGISTRATIONS, C_KEEPALIVES, C_AUTH_FAILURES, C_PARSE_ERRORS, C_ONLINE, C_CATALOG_ITEMS,
	C_WRONG_SOURCE,				/* a device's message from elsewhere than its registration: 403 */
	C_REPLAYED,					/* a REGISTER whose nonce and nc were used before: challenged again */
	C_DROPPED,					/* events or flips dropped because the batch was full */
	C_HANDLER_ERRORS,			/* messages whose handling raised an error: 500 */
	C_CHALLENGES_LIMITED,		/* 401 challenges not sent: over the rate for their source address */
	C_SIP_COUNTERS
};
StaticAssertDecl(C_SIP_COUNTERS <= VMS_COUNTERS, "the sip worker's counters must fit in a worker slot");
extern int64 sip_counters[VMS_COUNTERS];

#define TRANSPORT_UDP 0
#define TRANSPORT_TCP 1

/* where a message came from, and how to answer it */
typedef struct Peer
{
	int			transport;
	int			conn;			/* TCP: connection slot */
	uint32		conn_gen;		/* TCP: that slot's generation */
	struct sockaddr_storage addr;
	socklen_t	addrlen;
	char		ip[64];
	int			port;
} Peer;

typedef struct Dev
{
	char		code[21];		/* hash key */
	bool		in_ledger;
	bool		has_cred;
	char		realm[64];
	char		ha1_md5[33];
	char		ha1_sha256[65];
	bool		registered;
	bool		online;
	TimestampTz registered_at;
	TimestampTz expires_at;
	TimestampTz last_keepalive;
	TimestampTz grace_until;	/* after a restart: not offline before this */
	int			ka_interval;	/* 0 = setting */
	int			ka_count;
	Peer		peer;
	bool		has_peer;
	char		user_agent[64];
	bool		no_qop;			/* digest without qop: device_session.digest_qop = false */
	uint32		nonce_seq;		/* the last accepted nonce's sequence number */
	uint32		nonce_nc;		/* and its nonce count (UINT32_MAX: no reuse) */
	int			auth_failures;
	TimestampTz banned_until;
	bool		dirty;			/* session to write */
	bool		flip_pending;	/* online changed since the last write */
	TimestampTz flip_at;		/* when it last changed */
	TimestampTz negative_until; /* not in the ledger: no lookup before this */
} Dev;

extern HTAB *sip_devices;
extern TimestampTz sip_now;
extern SBuf sip_out;			/* scratch for building messages */

/* sip_worker.c */
extern void sip_send(const Peer *peer, const char *data, size_t len);
extern void sip_log_limited(int kind, const char *fmt,...) pg_attribute_printf(2, 3);
extern Dev *sip_device(const char *code, bool lookup_db);
extern void sip_mark_dirty(Dev *d);
extern void sip_event(Dev *d, const char *event, const char *cause);
extern void sip_flip(Dev *d, bool online, const char *cause);
extern void sip_queue_db(const char *sql, const char *code, const char *json);
extern void sip_request_update(int64 id, const char *state, const char *progress, const char *result, const char *error);
extern const char *sip_local_ip(void);
extern int	sip_local_port(void);
extern double sip_epoch(TimestampTz t);

/* sip_handlers.c */
extern void sip_auth_sources_expire(void);

/*
 * What the worker hands to SQL after each session flush (sip_queue_db), each
 * named with its full text, so that a grep for the function finds who
 * queues it.  Every one takes the device code and a jsonb document.
 */
#define SQL_ADD_DEVICE		"SELECT vms._sip_add_device($1::vms.gbcode, $2::jsonb)"
#define SQL_CATALOG_APPLY	"SELECT vms._sip_catalog_apply($1::vms.gbcode, $2::jsonb)"
#define SQL_ALARM			"SELECT vms._sip_alarm($1::vms.gbcode, $2::jsonb)"
#define SQL_POSITION			"SELECT vms._sip_position($1::vms.gbcode, $2::jsonb)"
#define SQL_CATALOG_RESULT	"SELECT vms._sip_catalog_result($1::vms.gbcode, $2::jsonb)"
#define SQL_INFO_RESULT		"SELECT vms._sip_info_result($1::vms.gbcode, $2::jsonb)"
#define SQL_SUBSCRIPTION_RECORD	"SELECT vms._sip_subscription_record($1::vms.gbcode, $2::jsonb)"

enum
{
	LOG_PARSE, LOG_AUTH, LOG_DOMAIN, LOG_SEND, LOG_TCP, LOG_OTHER, LOG_SOURCE, LOG_KINDS
};

/* sip_handlers.c: requests and answers from devices */
extern void sip_handle(const char *buf, size_t len, const Peer *peer);
extern void sip_answer(const SipIn *in, const Peer *peer, int code, const char *reason, const char *extra);
extern bool sip_peer_is_device(const Dev *d, const Peer *peer);
extern void sip_wrong_source(const Dev *d, const char *what, const Peer *peer);

/* sip_requests.c: the platform's requests to devices */
extern void sip_requests_start(int64 id, const char *device, const char *kind, const char *params);
extern bool sip_requests_response(const SipIn *in, const Peer *peer);
extern bool sip_requests_manscdp(Dev *d, const char *from_code, void *manscdp);
extern bool sip_requests_notify(const SipIn *in, Dev *d, void *manscdp);
extern void sip_requests_tick(void);
extern int	sip_requests_bye_from_device(const char *call_id, const Peer *peer);
extern void sip_requests_load_subscriptions(void);
extern void sip_requests_reset(void);
extern int	sip_requests_open(void);

#endif
