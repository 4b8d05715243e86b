/*
 * sip_core.h — the core of the "vms sip" worker (GB/T 28181) that every
 * role builds on: the clock of the current round, the counters shown in
 * vms.worker_status, rate-limited logging, the scratch buffer messages are
 * built in, and the Peer a message came from or goes to.
 *
 * Layout of workers/sip (each file includes only the headers below it;
 * test/scripts/sip_layout_check.sh fails on an include or call cycle):
 *
 *   sip_worker.c     the event loop: wires the parts below together
 *   sip_server.c     server role for devices: REGISTER, MESSAGE, NOTIFY, BYE, OPTIONS
 *   sip_requests.c   the SQL request queue: the platform's requests to devices
 *   sip_db.c         the database queue: batched sessions, events, request updates, reports
 *   sip_devices.c    the device cache (memory + ledger), sessions, deadlines
 *   sip_net.c        sockets: UDP/TCP receive and send
 *   sip_sql.c        the named SQL operations the worker runs
 *   sip_core.c       clock, counters, logging, scratch buffer
 *   sip_fastpath.c   a keepalive of the common shape read without libosip2/libxml2
 *   sip_msg.c, manscdp.c, sip_digest.c, sbuf.c, sip_settings.c: parsing, auth, settings
 */
#ifndef VMS_SIP_CORE_H
#define VMS_SIP_CORE_H

#include "postgres.h"

#include <sys/socket.h>

#include "datatype/timestamp.h"

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
	C_KEEPALIVES_FAST,			/* keepalives read by the fast path (sip_fastpath.c), counted in C_KEEPALIVES too */
	C_SIP_COUNTERS
};
StaticAssertDecl(C_SIP_COUNTERS <= VMS_COUNTERS, "the sip worker's counters must fit in a worker slot");

/* log kinds, each rate-limited on its own */
enum
{
	LOG_PARSE, LOG_AUTH, LOG_DOMAIN, LOG_SEND, LOG_TCP, LOG_OTHER, LOG_SOURCE, LOG_KINDS
};

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

/* the clock: read the time once per step of the loop (sip_clock_update), everyone reads sip_now */
extern void sip_clock_update(void);
extern TimestampTz sip_clock_now(void);
#define sip_now (sip_clock_now())
extern double sip_epoch(TimestampTz t);
extern TimestampTz sip_from_epoch(double e);

/* counters: owned by sip_core.c, copied to the worker's slot by sip_counters_publish */
extern void sip_count(int counter, int64 delta);
extern void sip_counters_publish(VmsWorkerSlot *slot);

/* at most 10 lines per kind per 10 s */
extern void sip_log_limited(int kind, const char *fmt,...) pg_attribute_printf(2, 3);

/* the scratch buffer outgoing messages are built in (one at a time) */
extern void sip_core_init(void);
extern SBuf *sip_scratch(void);

/* small helpers shared by the roles */
extern void sip_random_hex(char *out, int n);
extern char *sip_json_field(const char *json, const char *key);

#endif
