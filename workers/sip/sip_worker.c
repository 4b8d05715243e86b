/*
 * sip_worker.c — the "vms sip" worker: sockets, the event loop, the device
 * cache and the batched database writes.  Message handling is in
 * sip_handlers.c, the platform's own requests in sip_requests.c.
 *
 * Restart safety: sessions are written about once a second; a starting
 * worker loads them and gives every device that was online a grace period
 * (vms.sip_restart_grace) before the keepalive deadline applies again, so a
 * device that keeps sending keepalives is never marked offline by a
 * restart.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "manscdp.h"
#include "sip_digest.h"
#include "sip_worker.h"
#include "../worker_tx.h"

PGDLLEXPORT void vms_sip_main(Datum arg);

#define MAX_BATCH 64			/* datagrams read per recvmmsg */
#define DGRAM_MAX 65536
#define TCP_IDLE_S 600

/* timings of the main loop, in milliseconds */
#define IDENTITY_WAIT_MS 2000	/* waiting for vms.sip_id or the extension */
#define LOOP_MAX_WAIT_MS 100	/* the longest the loop sleeps between looks at the network */
#define TICK_MS 1000			/* keepalive deadlines, request timers, idle connections */
#define CLAIM_MS 2000			/* queued requests from SQL are claimed at least this often */
#define PUBLISH_MS 100			/* counters copied to vms.worker_status */
#define ERROR_PAUSE_MS 1000		/* after a failed round, the next flush waits this long */

typedef struct Conn
{
	int			fd;				/* -1: free */
	uint32		gen;
	SBuf		in;
	Peer		peer;
	TimestampTz last_active;
} Conn;

HTAB	   *sip_devices = NULL;
TimestampTz sip_now;
SBuf		sip_out;
int64		sip_counters[VMS_COUNTERS];

static VmsWorkerSlot *slot;
static MemoryContext loop_cxt;
static int	udp_fd = -1;
static int	listen_fd = -1;
static int	epoll_fd = -1;
static Conn *conns;
static int	n_conns_max;
static uint32 conn_gen = 1;
static char bound_listen[256];
static int	bound_port;
static char local_ip[64] = "127.0.0.1";
static TimestampTz started_at;

/* what waits for the next flush */
static Dev **dirty;
static int	n_dirty,
			dirty_cap;
static SBuf events;				/* JSON objects, comma-separated */
static int	n_events;
typedef struct DbOp
{
	const char *sql;			/* one of the SQL_* statements of sip_worker.h */
	char		code[21];
	char	   *json;
} DbOp;
static DbOp *ops;
static int	n_ops,
			ops_cap;
typedef struct ReqUpdate
{
	int64		id;
	char		state[16];
	char	   *progress;
	char	   *result;
	char	   *error;
} ReqUpdate;
static ReqUpdate *req_updates;
static int	n_req_updates,
			req_updates_cap;

static int64 published[VMS_COUNTERS];

/* ---------------------------------------------------------------- time */

double
sip_epoch(TimestampTz t)
{
	return (double) t / 1000000.0 + (double) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
}

static TimestampTz
from_epoch(double e)
{
	return (TimestampTz) ((e - (double) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY) * 1000000.0);
}

/* ---------------------------------------------------------------- logs */

/* at most 10 lines per kind per 10 s, then one line saying how many were dropped */
void
sip_log_limited(int kind, const char *fmt,...)
{
	static TimestampTz window[LOG_KINDS];
	static int	count[LOG_KINDS];
	static int	dropped[LOG_KINDS];
	char		buf[512];
	va_list		ap;

	if (sip_now >= TimestampTzPlusMilliseconds(window[kind], 10000))
	{
		if (dropped[kind] > 0)
			ereport(LOG, (errmsg("vms sip: %d similar messages suppressed", dropped[kind])));
		window[kind] = sip_now;
		count[kind] = 0;
		dropped[kind] = 0;
	}
	if (++count[kind] > 10)
	{
		dropped[kind]++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	ereport(LOG, (errmsg("vms sip: %s", buf)));
}

/* ---------------------------------------------------------------- transactions */

#define begin_tx(what) vms_worker_begin_tx(what)
#define end_tx() vms_worker_end_tx()
#define tx_caller_cxt vms_tx_caller_cxt

/* ---------------------------------------------------------------- devices */

static void
load_row(HeapTuple t, TupleDesc d)
{
	bool		isnull,
				found;
	char	   *code = SPI_getvalue(t, d, 1);
	Dev		   *dev;
	Datum		v;

	if (code == NULL || strlen(code) != 20)
		return;
	dev = hash_search(sip_devices, code, HASH_ENTER, &found);
	if (!found)
	{
		memset(((char *) dev) + sizeof(dev->code), 0, sizeof(Dev) - sizeof(dev->code));
		/* session state comes from the database only for a device new to memory */
		dev->online = DatumGetBool(SPI_getbinval(t, d, 5, &isnull));
		v = SPI_getbinval(t, d, 6, &isnull);
		dev->registered_at = isnull ? 0 : from_epoch(DatumGetFloat8(v));
		v = SPI_getbinval(t, d, 7, &isnull);
		dev->expires_at = isnull ? 0 : from_epoch(DatumGetFloat8(v));
		dev->registered = !isnull && dev->expires_at > sip_now;
		v = SPI_getbinval(t, d, 8, &isnull);
		dev->last_keepalive = isnull ? 0 : from_epoch(DatumGetFloat8(v));
		v = SPI_getbinval(t, d, 14, &isnull);
		dev->auth_failures = isnull ? 0 : DatumGetInt32(v);
		v = SPI_getbinval(t, d, 15, &isnull);
		dev->banned_until = isnull ? 0 : from_epoch(DatumGetFloat8(v));
		if (dev->online)
			dev->grace_until = TimestampTzPlusMilliseconds(sip_now, vms_sip_restart_grace * 1000L);
		/* where to reach it until it speaks again */
		{
			char	   *tr = SPI_getvalue(t, d, 11);
			char	   *ip = SPI_getvalue(t, d, 12);
			char	   *port = SPI_getvalue(t, d, 13);

			if (ip && port && tr && strcmp(tr, "UDP") == 0)
			{
				struct sockaddr_in *sin = (struct sockaddr_in *) &dev->peer.addr;

				if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1)
				{
					sin->sin_family = AF_INET;
					sin->sin_port = htons(atoi(port));
					dev->peer.addrlen = sizeof(*sin);
					dev->peer.transport = TRANSPORT_UDP;
					strlcpy(dev->peer.ip, ip, sizeof(dev->peer.ip));
					dev->peer.port = atoi(port);
					dev->has_peer = true;
				}
			}
		}
		if (dev->online)
			sip_counters[C_ONLINE]++;
	}
	dev->in_ledger = true;
	dev->negative_until = 0;
	/* column 17: device_session.digest_qop (NULL: no session row yet, qop offered) */
	v = SPI_getbinval(t, d, 17, &isnull);
	dev->no_qop = !isnull && !DatumGetBool(v);
	v = SPI_getbinval(t, d, 9, &isnull);
	dev->ka_interval = isnull ? 0 : DatumGetInt32(v);
	v = SPI_getbinval(t, d, 10, &isnull);
	dev->ka_count = isnull ? 0 : DatumGetInt32(v);
	{
		char	   *realm = SPI_getvalue(t, d, 2);
		char	   *md5 = SPI_getvalue(t, d, 3);
		char	   *sha = SPI_getvalue(t, d, 4);
		bool		had_cred = dev->has_cred;
		bool		changed;

		if (realm && md5 && sha)
			changed = !had_cred || strcmp(dev->realm, realm) != 0 || strcmp(dev->ha1_md5, md5) != 0 ||
				strcmp(dev->ha1_sha256, sha) != 0;
		else
			changed = had_cred;
		dev->has_cred = false;
		if (realm && md5 && sha)
		{
			strlcpy(dev->realm, realm, sizeof(dev->realm));
			strlcpy(dev->ha1_md5, md5, sizeof(dev->ha1_md5));
			strlcpy(dev->ha1_sha256, sha, sizeof(dev->ha1_sha256));
			dev->has_cred = true;
		}

		/*
		 * A device in memory whose credential changed, appeared or was
		 * deleted: its session was authenticated by the old one, so it ends
		 * now, and the device registers again (with the new password, or
		 * vms.sip_password once its own is gone).  A re-keyed, perhaps
		 * compromised, device keeps nothing of the old session.
		 */
		if (found && changed && dev->registered)
		{
			const char *cause = !dev->has_cred ? "credential deleted: the device must register again"
				: had_cred ? "credential changed: the device must register again with the new password"
				: "credential set: the device must register again with its own password";

			dev->registered = false;
			dev->expires_at = sip_now;
			dev->grace_until = 0;
			sip_event(dev, "unregistered", cause);
			sip_flip(dev, false, cause);
			sip_mark_dirty(dev);
		}
	}
}

#define MAX_UNKNOWN 50000		/* codes not in the ledger kept in memory */
#define MAX_LOOKUPS_PER_S 200	/* ledger lookups of codes not in memory */
static int	n_unknown = 0;
static int	lookups = 0;
static TimestampTz lookup_window = 0;

static void load_changed_devices(void);

/*
 * A commit that woke the worker while it was reading the network (a
 * password change, a deleted device): the committing backend sets the
 * latch before its client hears of the commit, so a message sent after
 * that commit finds the latch set once it has been received.  Checked
 * after each receive, before the messages are handled: the change applies
 * to them.  The wake is remembered for the main loop (request claims).
 */
static bool woken_while_reading = false;
static bool flushing = false;	/* in flush(): see the main loop */

static void
changes_before_messages(void)
{
	pg_memory_barrier();
	if (!MyLatch->is_set)
		return;
	ResetLatch(MyLatch);
	woken_while_reading = true;
	load_changed_devices();
}

/* every device of the ledger, at start */
static void
load_devices(void)
{
	Oid			types[1] = {TIMESTAMPTZOID};
	Datum		values[1];

	values[0] = TimestampTzGetDatum(DT_NOBEGIN);
	begin_tx("vms sip: loading devices");
	if (SPI_execute_with_args("SELECT * FROM vms._sip_devices($1)", 1, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "vms sip: could not load devices");
	for (uint64 i = 0; i < SPI_processed; i++)
		load_row(SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
	end_tx();
}

/* a device deleted from the ledger: it authenticates no more and is not online */
static void
forget_device(const char *code)
{
	Dev		   *d = hash_search(sip_devices, code, HASH_FIND, NULL);

	if (d == NULL || !d->in_ledger)
		return;
	if (d->online)
		sip_counters[C_ONLINE]--;
	d->online = false;
	d->flip_pending = false;
	d->registered = false;
	d->in_ledger = false;
	d->has_cred = false;
	d->has_peer = false;
	d->negative_until = TimestampTzPlusMilliseconds(sip_now, 10000);
	ereport(LOG, (errmsg("vms sip: device %s was deleted from the ledger; its session ends", code)));
}

/*
 * Devices whose credential, device row or session settings changed: the
 * triggers queue their codes in vms.sip_device_change at commit and wake
 * the worker.  The worker takes the queue (DELETE ... RETURNING: exactly
 * the rows its snapshot sees, so a change that commits later stays queued
 * for the next time, whatever the order its transaction started in), then
 * reloads those devices in a later statement, which sees at least as much.
 * A code with no device row any more is a deleted device.
 */
static void
load_changed_devices(void)
{
	Datum		codes;
	bool		isnull;
	Oid			types[1] = {TEXTARRAYOID};
	Datum		values[1];
	HTAB	   *present;
	HASHCTL		ctl;

	begin_tx("vms sip: loading changed devices");
	if (SPI_execute("SELECT array_agg(c) FROM vms._sip_take_device_changes() c", false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "vms sip: could not take device changes");
	codes = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
	{
		end_tx();
		return;
	}
	values[0] = codes;
	/* read-write: a snapshot newer than the one that took the queue */
	if (SPI_execute_with_args("SELECT d.* FROM unnest($1::text[]) c(code) "
							  "CROSS JOIN LATERAL vms._sip_devices('-infinity', c.code) d",
							  1, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "vms sip: could not load changed devices");
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = 21;
	ctl.entrysize = 21;
	ctl.hcxt = CurrentMemoryContext;
	present = hash_create("vms sip changed devices", 64, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *code = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		load_row(SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
		if (code && strlen(code) == 20)
			hash_search(present, code, HASH_ENTER, NULL);
	}
	{
		ArrayType  *arr = DatumGetArrayTypeP(codes);
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
		for (int i = 0; i < n; i++)
		{
			char	   *code;

			if (nulls[i])
				continue;
			code = TextDatumGetCString(elems[i]);
			if (strlen(code) == 20 && hash_search(present, code, HASH_FIND, NULL) == NULL)
				forget_device(code);
		}
	}
	end_tx();
}

/*
 * The device for a code: from memory, else (lookup_db) from the ledger, so
 * devices added since the last load are found at once.  Codes not in the
 * ledger are remembered for 10 s so a flood of them costs no queries.
 */
Dev *
sip_device(const char *code, bool lookup_db)
{
	Dev		   *d;
	bool		found;

	if (!sip_is_gbcode(code))
		return NULL;
	d = hash_search(sip_devices, code, HASH_FIND, &found);
	if (d && d->in_ledger)
		return d;
	if (d && sip_now < d->negative_until)
		return d;
	if (!lookup_db)
		return d;
	/* a flood of made-up codes must cost neither unbounded memory nor a query each */
	if (d == NULL && n_unknown >= MAX_UNKNOWN)
	{
		sip_log_limited(LOG_DOMAIN, "more than %d unknown device codes seen; %s refused without lookup", MAX_UNKNOWN, code);
		return NULL;
	}
	if (sip_now >= TimestampTzPlusMilliseconds(lookup_window, 1000))
	{
		lookup_window = sip_now;
		lookups = 0;
	}
	if (++lookups > MAX_LOOKUPS_PER_S)
		return d;
	{
		Oid			types[2] = {TIMESTAMPTZOID, TEXTOID};
		Datum		values[2];

		values[0] = TimestampTzGetDatum(DT_NOBEGIN);
		values[1] = CStringGetTextDatum(code);
		begin_tx("vms sip: looking up a device");
		if (SPI_execute_with_args("SELECT * FROM vms._sip_devices($1, $2)", 2, types, values, NULL, true, 1) == SPI_OK_SELECT &&
			SPI_processed == 1)
			load_row(SPI_tuptable->vals[0], SPI_tuptable->tupdesc);
		end_tx();
	}
	d = hash_search(sip_devices, code, HASH_ENTER, &found);
	if (!found)
		memset(((char *) d) + sizeof(d->code), 0, sizeof(Dev) - sizeof(d->code));
	if (!d->in_ledger)
	{
		if (!found)
			n_unknown++;
		d->negative_until = TimestampTzPlusMilliseconds(sip_now, 10000);
	}
	return d;
}

void
sip_mark_dirty(Dev *d)
{
	if (d->dirty)
		return;
	if (n_dirty == dirty_cap)
	{
		dirty_cap = dirty_cap ? dirty_cap * 2 : 1024;
		dirty = dirty ? repalloc(dirty, sizeof(Dev *) * dirty_cap) :
			MemoryContextAlloc(vms_worker_cxt, sizeof(Dev *) * dirty_cap);
	}
	dirty[n_dirty++] = d;
	d->dirty = true;
}

/* how many bytes of events wait for a flush at most (vms.sip_max_batch); beyond it they are dropped */
static size_t
batch_limit(void)
{
	return (size_t) vms_sip_max_batch * 1024;
}

/*
 * A transition for vms.device_event.  Each goes in whole or not at all:
 * when vms.sip_max_batch of them wait for a flush (the database has been
 * unreachable for long), new ones are dropped and counted, and the flush
 * never sees a cut document.
 */
void
sip_event(Dev *d, const char *event, const char *cause)
{
	SBuf		one;

	sbuf_init(&one, 8192);
	sbuf_printf(&one, "{\"d\":\"%s\",\"at\":%.3f,\"ev\":\"%s\",\"c\":", d->code, sip_epoch(sip_now), event);
	sbuf_json_string(&one, cause);
	if (d->has_peer)
		sbuf_printf(&one, ",\"ad\":\"%s:%d\"}", d->peer.ip, d->peer.port);
	else
		sbuf_append(&one, "}", 1);
	if (one.overflow || events.len + one.len + 1 > batch_limit())
	{
		sip_counters[C_DROPPED]++;
		sip_log_limited(LOG_OTHER, "event \"%s\" of %s dropped: vms.sip_max_batch of events wait for the database",
						event, d->code);
	}
	else
	{
		if (events.len > 0)
			sbuf_append(&events, ",", 1);
		sbuf_append(&events, one.data, one.len);
		n_events++;
	}
	sbuf_free(&one);
}

/*
 * An online/offline transition: the device, its channels and an event.
 * The device's latest state and time go with its session at the next
 * flush (memory bounded by the devices, whatever the flapping).
 */
void
sip_flip(Dev *d, bool online, const char *cause)
{
	if (d->online == online)
		return;
	d->online = online;
	sip_counters[C_ONLINE] += online ? 1 : -1;
	d->flip_pending = true;
	d->flip_at = sip_now;
	sip_event(d, online ? "online" : "offline", cause);
	sip_mark_dirty(d);
}

/* something for SQL that is not session state: applied after the session flush */
void
sip_queue_db(const char *sql, const char *code, const char *json)
{
	DbOp	   *op;

	if (n_ops >= 100000)
	{
		sip_log_limited(LOG_OTHER, "database queue full; dropped a %s", sql);
		return;
	}
	if (n_ops == ops_cap)
	{
		ops_cap = ops_cap ? ops_cap * 2 : 256;
		ops = ops ? repalloc(ops, sizeof(DbOp) * ops_cap) : MemoryContextAlloc(vms_worker_cxt, sizeof(DbOp) * ops_cap);
	}
	op = &ops[n_ops++];
	op->sql = sql;
	strlcpy(op->code, code, sizeof(op->code));
	op->json = MemoryContextStrdup(vms_worker_cxt, json);
}

void
sip_request_update(int64 id, const char *state, const char *progress, const char *result, const char *error)
{
	ReqUpdate  *u = NULL;

	/* a newer update of the same request replaces the queued one */
	for (int i = 0; i < n_req_updates; i++)
		if (req_updates[i].id == id)
			u = &req_updates[i];
	if (u == NULL)
	{
		if (n_req_updates == req_updates_cap)
		{
			req_updates_cap = req_updates_cap ? req_updates_cap * 2 : 64;
			req_updates = req_updates ? repalloc(req_updates, sizeof(ReqUpdate) * req_updates_cap) :
				MemoryContextAlloc(vms_worker_cxt, sizeof(ReqUpdate) * req_updates_cap);
		}
		u = &req_updates[n_req_updates++];
		memset(u, 0, sizeof(*u));
		u->id = id;
	}
	strlcpy(u->state, state, sizeof(u->state));
	if (progress)
	{
		if (u->progress)
			pfree(u->progress);
		u->progress = MemoryContextStrdup(vms_worker_cxt, progress);
	}
	if (result)
	{
		if (u->result)
			pfree(u->result);
		u->result = MemoryContextStrdup(vms_worker_cxt, result);
	}
	if (error)
	{
		if (u->error)
			pfree(u->error);
		u->error = MemoryContextStrdup(vms_worker_cxt, error);
	}
}

/* ---------------------------------------------------------------- flush */

static void
session_json(SBuf *b, Dev *d)
{
	sbuf_printf(b, "{\"d\":\"%s\",\"o\":%s,\"af\":%d", d->code, d->online ? "true" : "false", d->auth_failures);
	if (d->has_peer)
		sbuf_printf(b, ",\"tr\":\"%s\",\"ad\":\"%s\",\"pt\":%d",
					d->peer.transport == TRANSPORT_TCP ? "TCP" : "UDP", d->peer.ip, d->peer.port);
	if (d->user_agent[0])
	{
		sbuf_puts(b, ",\"ua\":");
		sbuf_json_string(b, d->user_agent);
	}
	if (d->registered_at)
		sbuf_printf(b, ",\"ra\":%.3f", sip_epoch(d->registered_at));
	if (d->expires_at)
		sbuf_printf(b, ",\"ex\":%.3f", sip_epoch(d->expires_at));
	if (d->last_keepalive)
		sbuf_printf(b, ",\"ka\":%.3f", sip_epoch(d->last_keepalive));
	if (d->banned_until)
		sbuf_printf(b, ",\"bu\":%.3f", sip_epoch(d->banned_until));
	sbuf_append(b, "}", 1);
}

static void
run_sql(const char *query, int nargs, Oid *types, Datum *values)
{
	if (SPI_execute_with_args(query, nargs, types, values, NULL, false, 0) < 0)
		elog(ERROR, "vms sip: query failed: %s", query);
}

/*
 * Queued SQL operations, each in a subtransaction so one bad item does not
 * take the others with it.  New devices (adds) go first, before the
 * sessions that refer to them.
 */
static void
apply_ops(bool adds)
{
	int			kept = 0;
	bool		any = false;

	for (int i = 0; i < n_ops; i++)
		if ((strcmp(ops[i].sql, SQL_ADD_DEVICE) == 0) == adds)
			any = true;
	if (!any)
		return;
	begin_tx(adds ? "vms sip: adding devices" : "vms sip: applying device reports");
	for (int i = 0; i < n_ops; i++)
	{
		MemoryContext cxt = CurrentMemoryContext;
		ResourceOwner owner = CurrentResourceOwner;

		if ((strcmp(ops[i].sql, SQL_ADD_DEVICE) == 0) != adds)
			continue;
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(cxt);
		PG_TRY();
		{
			Oid			types[2] = {TEXTOID, TEXTOID};
			Datum		values[2];
			values[0] = CStringGetTextDatum(ops[i].code);
			values[1] = CStringGetTextDatum(ops[i].json);
			run_sql(ops[i].sql, 2, types, values);
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
		}
		PG_CATCH();
		{
			ErrorData  *e;

			MemoryContextSwitchTo(cxt);
			e = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
			sip_log_limited(LOG_OTHER, "%s for %s failed: %s", ops[i].sql, ops[i].code, e->message);
			FreeErrorData(e);
		}
		PG_END_TRY();
	}
	end_tx();
	/* done: keep only the other kind */
	for (int i = 0; i < n_ops; i++)
	{
		if ((strcmp(ops[i].sql, SQL_ADD_DEVICE) == 0) == adds)
			pfree(ops[i].json);
		else
			ops[kept++] = ops[i];
	}
	n_ops = kept;
}

/*
 * Sessions, transitions and request updates in one transaction; then the
 * queued SQL operations (catalog items, alarms, positions), each in a
 * subtransaction so one bad item does not take the others with it.
 */
static void
flush(void)
{
	static SBuf batch;
	SBuf		one;
	int			n;
	bool		first;
	Oid			jtype[1] = {TEXTOID};
	Datum		jval[1];

	if (n_dirty == 0 && events.len == 0 && n_req_updates == 0 && n_ops == 0)
		return;
	/* sessions, then events (at most vms.sip_max_batch), then flips: never more than this */
	if (batch.data == NULL)
		sbuf_init(&batch, 0);
	batch.limit = 3 * batch_limit() + 64;
	sbuf_reset(&batch);
	sbuf_init(&one, 8192);
	sbuf_puts(&batch, "{\"s\":[");
	/* as many sessions as fit in vms.sip_max_batch; the rest stay dirty for the next flush */
	first = true;
	for (n = 0; n < n_dirty; n++)
	{
		if (!dirty[n]->in_ledger)
			continue;
		sbuf_reset(&one);
		session_json(&one, dirty[n]);
		if (one.overflow || (!first && batch.len + one.len + 1 > batch_limit()))
			break;
		if (!first)
			sbuf_append(&batch, ",", 1);
		first = false;
		sbuf_append(&batch, one.data, one.len);
	}
	sbuf_puts(&batch, "],\"e\":[");
	sbuf_append(&batch, events.data, events.len);
	sbuf_puts(&batch, "],\"f\":[");
	first = true;
	for (int i = 0; i < n; i++)
	{
		Dev		   *d = dirty[i];

		if (!d->flip_pending || !d->in_ledger)
			continue;
		if (!first)
			sbuf_append(&batch, ",", 1);
		first = false;
		sbuf_printf(&batch, "{\"d\":\"%s\",\"o\":%s,\"at\":%.3f}", d->code, d->online ? "true" : "false",
					sip_epoch(d->flip_at));
	}
	sbuf_puts(&batch, "]}");
	sbuf_free(&one);
	if (batch.overflow)
	{
		/* cannot happen within the bounds above, short of memory: drop, never write a cut document */
		sip_counters[C_DROPPED] += n_events;
		sip_log_limited(LOG_OTHER, "session batch did not fit in memory: %d events dropped", n_events);
		sbuf_reset(&events);
		n_events = 0;
		return;
	}
	apply_ops(true);

	begin_tx("vms sip: writing sessions");
	jval[0] = CStringGetTextDatum(batch.data);
	run_sql("SELECT vms._sip_flush($1::jsonb)", 1, jtype, jval);
	for (int i = 0; i < n_req_updates; i++)
	{
		ReqUpdate  *u = &req_updates[i];
		Oid			types[5] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
		Datum		values[5];
		char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

		values[0] = Int64GetDatum(u->id);
		values[1] = CStringGetTextDatum(u->state);
		values[2] = u->progress ? CStringGetTextDatum(u->progress) : (Datum) 0;
		values[3] = u->result ? CStringGetTextDatum(u->result) : (Datum) 0;
		values[4] = u->error ? CStringGetTextDatum(u->error) : (Datum) 0;
		nulls[2] = u->progress ? ' ' : 'n';
		nulls[3] = u->result ? ' ' : 'n';
		nulls[4] = u->error ? ' ' : 'n';
		if (SPI_execute_with_args("SELECT vms._sip_request_update($1, $2, $3::jsonb, $4::jsonb, $5)",
								  5, types, values, nulls, false, 0) < 0)
			elog(ERROR, "vms sip: could not record a request");
	}
	end_tx();

	/* written: forget it (a failure above leaves everything queued for the next try) */
	for (int i = 0; i < n; i++)
	{
		dirty[i]->dirty = false;
		dirty[i]->flip_pending = false;
	}
	memmove(dirty, dirty + n, sizeof(Dev *) * (n_dirty - n));
	n_dirty -= n;
	sbuf_reset(&events);
	n_events = 0;
	for (int i = 0; i < n_req_updates; i++)
	{
		if (req_updates[i].progress)
			pfree(req_updates[i].progress);
		if (req_updates[i].result)
			pfree(req_updates[i].result);
		if (req_updates[i].error)
			pfree(req_updates[i].error);
	}
	n_req_updates = 0;

	apply_ops(false);
}

/* ---------------------------------------------------------------- deadlines */

static TimestampTz
keepalive_deadline(Dev *d)
{
	int			interval = d->ka_interval > 0 ? d->ka_interval : vms_sip_keepalive_interval;
	int			count = d->ka_count > 0 ? d->ka_count : vms_sip_keepalive_count;

	return TimestampTzPlusMilliseconds(d->last_keepalive, (int64) interval * count * 1000);
}

/* once a second: devices whose keepalives or registration ran out go offline */
static void
check_deadlines(void)
{
	HASH_SEQ_STATUS it;
	Dev		   *d;

	sip_auth_sources_expire();
	hash_seq_init(&it, sip_devices);
	while ((d = hash_seq_search(&it)) != NULL)
	{
		TimestampTz ka;

		if (d->banned_until && sip_now >= d->banned_until)
		{
			d->banned_until = 0;
			d->auth_failures = 0;
			sip_mark_dirty(d);
		}
		if (!d->online && !d->registered)
			continue;
		if (sip_now < d->grace_until)
			continue;
		if (d->registered && d->expires_at <= sip_now)
		{
			d->registered = false;
			sip_event(d, "expired", "registration expired");
			sip_flip(d, false, "registration expired");
			sip_mark_dirty(d);
			continue;
		}
		ka = keepalive_deadline(d);
		if (d->online && ka <= sip_now)
			sip_flip(d, false, d->grace_until ? "no keepalive within the restart grace" : "keepalive timeout");
	}
}

/* ---------------------------------------------------------------- sockets */

static void
set_nonblocking(int fd)
{
	int			flags = fcntl(fd, F_GETFL, 0);

	fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	fcntl(fd, F_SETFD, FD_CLOEXEC);
}

static void
close_sockets(void)
{
	if (udp_fd >= 0)
		close(udp_fd);
	if (listen_fd >= 0)
		close(listen_fd);
	for (int i = 0; i < n_conns_max; i++)
		if (conns[i].fd >= 0)
		{
			close(conns[i].fd);
			conns[i].fd = -1;
			sbuf_free(&conns[i].in);
		}
	udp_fd = listen_fd = -1;
}

static void
open_sockets(void)
{
	struct addrinfo hints,
			   *res = NULL;
	char		port[8];
	const char *host = (vms_sip_listen && vms_sip_listen[0] && strcmp(vms_sip_listen, "*") != 0) ? vms_sip_listen : NULL;
	int			on = 1;
	int			rcvbuf = 8 * 1024 * 1024;
	struct epoll_event ev;

	close_sockets();
	snprintf(port, sizeof(port), "%d", vms_sip_port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_INET;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
	hints.ai_socktype = SOCK_DGRAM;
	if (getaddrinfo(host, port, &hints, &res) != 0 || res == NULL)
		ereport(ERROR, (errcode(ERRCODE_CONFIG_FILE_ERROR),
						errmsg("vms.sip_listen \"%s\" is not a numeric IPv4 address", vms_sip_listen),
						errhint("Use * for all addresses, or an address such as 127.0.0.1.")));

	udp_fd = socket(AF_INET, SOCK_DGRAM, 0);
	setsockopt(udp_fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	setsockopt(udp_fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	setsockopt(udp_fd, SOL_SOCKET, SO_SNDBUF, &rcvbuf, sizeof(rcvbuf));
	if (bind(udp_fd, res->ai_addr, res->ai_addrlen) != 0)
	{
		int			e = errno;

		freeaddrinfo(res);
		close(udp_fd);
		udp_fd = -1;
		errno = e;
		ereport(ERROR, (errcode_for_socket_access(),
						errmsg("vms sip could not bind UDP %s:%d: %m", host ? host : "*", vms_sip_port)));
	}
	listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (bind(listen_fd, res->ai_addr, res->ai_addrlen) != 0 || listen(listen_fd, 512) != 0)
	{
		int			e = errno;

		freeaddrinfo(res);
		close_sockets();
		errno = e;
		ereport(ERROR, (errcode_for_socket_access(),
						errmsg("vms sip could not listen on TCP %s:%d: %m", host ? host : "*", vms_sip_port)));
	}
	freeaddrinfo(res);
	set_nonblocking(udp_fd);
	set_nonblocking(listen_fd);
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.u64 = (uint64) -1;
	epoll_ctl(epoll_fd, EPOLL_CTL_ADD, udp_fd, &ev);
	ev.data.u64 = (uint64) -2;
	epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &ev);
	strlcpy(bound_listen, vms_sip_listen ? vms_sip_listen : "*", sizeof(bound_listen));
	bound_port = vms_sip_port;
	strlcpy(local_ip, host ? host : "127.0.0.1", sizeof(local_ip));
	ereport(LOG, (errmsg("vms sip listening on %s:%d (UDP and TCP) as %s, realm %s",
						 host ? host : "*", vms_sip_port, vms_sip_id, sip_realm())));
}

const char *
sip_local_ip(void)
{
	return local_ip;
}

int
sip_local_port(void)
{
	return bound_port;
}

static void
fill_peer(Peer *p, int transport, struct sockaddr_storage *addr, socklen_t len)
{
	p->transport = transport;
	memcpy(&p->addr, addr, len);
	p->addrlen = len;
	if (addr->ss_family == AF_INET)
	{
		struct sockaddr_in *sin = (struct sockaddr_in *) addr;

		inet_ntop(AF_INET, &sin->sin_addr, p->ip, sizeof(p->ip));
		p->port = ntohs(sin->sin_port);
	}
	else
	{
		strlcpy(p->ip, "?", sizeof(p->ip));
		p->port = 0;
	}
}

static void
close_conn(int i)
{
	epoll_ctl(epoll_fd, EPOLL_CTL_DEL, conns[i].fd, NULL);
	close(conns[i].fd);
	conns[i].fd = -1;
	sbuf_free(&conns[i].in);
}

/*
 * UDP answers to one batch of datagrams go out together with sendmmsg():
 * one system call for the batch instead of one per answer.
 */
#define OUT_SLOT 2048
static bool batching = false;
static int	n_out = 0;
static char *out_buf[MAX_BATCH];
static struct mmsghdr out_msgs[MAX_BATCH];
static struct iovec out_iov[MAX_BATCH];
static struct sockaddr_storage out_addr[MAX_BATCH];

static void
flush_out(void)
{
	int			sent = 0;

	while (sent < n_out)
	{
		int			n = sendmmsg(udp_fd, out_msgs + sent, n_out - sent, MSG_DONTWAIT);

		if (n <= 0)
		{
			/* one unreachable address must not cost the others their answers */
			sip_log_limited(LOG_SEND, "UDP send of an answer failed: %m");
			n = 1;
		}
		sent += n;
	}
	n_out = 0;
}

void
sip_send(const Peer *peer, const char *data, size_t len)
{
	ssize_t		n;

	if (peer->transport == TRANSPORT_UDP && batching && len <= OUT_SLOT)
	{
		if (n_out == MAX_BATCH)
			flush_out();
		if (out_buf[n_out] == NULL)
			out_buf[n_out] = MemoryContextAlloc(vms_worker_cxt, OUT_SLOT);
		memcpy(out_buf[n_out], data, len);
		memcpy(&out_addr[n_out], &peer->addr, peer->addrlen);
		out_iov[n_out].iov_base = out_buf[n_out];
		out_iov[n_out].iov_len = len;
		memset(&out_msgs[n_out], 0, sizeof(out_msgs[n_out]));
		out_msgs[n_out].msg_hdr.msg_iov = &out_iov[n_out];
		out_msgs[n_out].msg_hdr.msg_iovlen = 1;
		out_msgs[n_out].msg_hdr.msg_name = &out_addr[n_out];
		out_msgs[n_out].msg_hdr.msg_namelen = peer->addrlen;
		n_out++;
		sip_counters[C_OUT]++;
		return;
	}

	if (peer->transport == TRANSPORT_TCP)
	{
		Conn	   *c;

		if (peer->conn < 0 || peer->conn >= n_conns_max)
			return;
		c = &conns[peer->conn];
		if (c->fd < 0 || c->gen != peer->conn_gen)
		{
			sip_log_limited(LOG_SEND, "TCP connection to %s:%d is gone", peer->ip, peer->port);
			return;
		}
		/* a SIP message is small: a full send buffer means a stuck peer, which is dropped */
		n = send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n != (ssize_t) len)
		{
			sip_log_limited(LOG_TCP, "closing TCP connection from %s:%d: send failed", peer->ip, peer->port);
			close_conn(peer->conn);
			return;
		}
	}
	else
	{
		n = sendto(udp_fd, data, len, MSG_DONTWAIT, (struct sockaddr *) &peer->addr, peer->addrlen);
		if (n < 0)
		{
			sip_log_limited(LOG_SEND, "UDP send to %s:%d failed: %m", peer->ip, peer->port);
			return;
		}
	}
	sip_counters[C_OUT]++;
}

static void
read_udp(void)
{
	static char *buf[MAX_BATCH];
	struct mmsghdr msgs[MAX_BATCH];
	struct iovec iov[MAX_BATCH];
	struct sockaddr_storage addrs[MAX_BATCH];
	int			rounds = 0;

	if (buf[0] == NULL)
		for (int i = 0; i < MAX_BATCH; i++)
			buf[i] = MemoryContextAlloc(vms_worker_cxt, DGRAM_MAX + 1);
	/* bounded: other work (flushes, timers, latch) must not starve */
	while (rounds++ < 64)
	{
		int			n;

		for (int i = 0; i < MAX_BATCH; i++)
		{
			iov[i].iov_base = buf[i];
			iov[i].iov_len = DGRAM_MAX;
			memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
			msgs[i].msg_hdr.msg_name = &addrs[i];
			msgs[i].msg_hdr.msg_namelen = sizeof(addrs[i]);
		}
		n = recvmmsg(udp_fd, msgs, MAX_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			return;
		changes_before_messages();
		for (int i = 0; i < n; i++)
		{
			Peer		peer;

			memset(&peer, 0, sizeof(peer));
			fill_peer(&peer, TRANSPORT_UDP, &addrs[i], msgs[i].msg_hdr.msg_namelen);
			peer.conn = -1;
			sip_counters[C_IN]++;
			if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC)
			{
				sip_counters[C_PARSE_ERRORS]++;
				sip_log_limited(LOG_PARSE, "dropped a truncated datagram from %s:%d", peer.ip, peer.port);
				continue;
			}
			buf[i][msgs[i].msg_len] = '\0';
			batching = true;
			sip_handle(buf[i], msgs[i].msg_len, &peer);
			batching = false;
		}
		flush_out();
		if (n < MAX_BATCH)
			return;
	}
}

static void
accept_conns(void)
{
	for (int k = 0; k < 64; k++)
	{
		struct sockaddr_storage addr;
		socklen_t	len = sizeof(addr);
		int			fd = accept(listen_fd, (struct sockaddr *) &addr, &len);
		int			i;
		struct epoll_event ev;

		if (fd < 0)
			return;
		for (i = 0; i < n_conns_max; i++)
			if (conns[i].fd < 0)
				break;
		if (i == n_conns_max)
		{
			sip_log_limited(LOG_TCP, "refusing a TCP connection: vms.sip_max_connections (%d) reached", n_conns_max);
			close(fd);
			continue;
		}
		set_nonblocking(fd);
		conns[i].fd = fd;
		conns[i].gen = conn_gen++;
		/* room for one message under the limit plus the read that completes it */
		sbuf_init(&conns[i].in, (size_t) vms_sip_max_message + 16384 + 1);
		memset(&conns[i].peer, 0, sizeof(Peer));
		fill_peer(&conns[i].peer, TRANSPORT_TCP, &addr, len);
		conns[i].peer.conn = i;
		conns[i].peer.conn_gen = conns[i].gen;
		conns[i].last_active = sip_now;
		memset(&ev, 0, sizeof(ev));
		ev.events = EPOLLIN;
		ev.data.u64 = (uint64) i;
		epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev);
	}
}

/* read what a TCP peer sent and handle each complete message (framed by Content-Length) */
static void
read_conn(int i)
{
	Conn	   *c = &conns[i];
	char		buf[16384];

	for (int k = 0; k < 64 && c->fd >= 0; k++)
	{
		ssize_t		n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
		{
			close_conn(i);
			return;
		}
		if (n < 0)
			break;
		c->last_active = sip_now;
		sbuf_append(&c->in, buf, n);
		if (c->in.overflow)
		{
			sip_counters[C_PARSE_ERRORS]++;
			sip_log_limited(LOG_TCP, "closing TCP connection from %s:%d: message over vms.sip_max_message", c->peer.ip, c->peer.port);
			close_conn(i);
			return;
		}
		for (;;)
		{
			size_t		skip = 0;
			long		len;

			/* CRLF keep-alive pings (RFC 5626) between messages, then one message */
			len = sip_stream_next(c->in.data, c->in.len, (size_t) vms_sip_max_message, &skip);
			if (skip > 0)
			{
				memmove(c->in.data, c->in.data + skip, c->in.len - skip);
				c->in.len -= skip;
				c->in.data[c->in.len] = '\0';
			}
			if (len == 0)
				break;
			sip_counters[C_IN]++;
			if (len < 0)
			{
				sip_counters[C_PARSE_ERRORS]++;
				sip_log_limited(LOG_TCP, "closing TCP connection from %s:%d: message cannot be framed", c->peer.ip, c->peer.port);
				close_conn(i);
				return;
			}
			changes_before_messages();
			{
				char	   *msg = palloc(len + 1);
				Peer		peer = c->peer;

				memcpy(msg, c->in.data, len);
				msg[len] = '\0';
				memmove(c->in.data, c->in.data + len, c->in.len - len);
				c->in.len -= len;
				c->in.data[c->in.len] = '\0';
				sip_handle(msg, len, &peer);
				pfree(msg);
			}
			if (c->fd < 0)
				return;
		}
	}
}

static void
expire_conns(void)
{
	for (int i = 0; i < n_conns_max; i++)
		if (conns[i].fd >= 0 && sip_now > TimestampTzPlusMilliseconds(conns[i].last_active, TCP_IDLE_S * 1000L))
			close_conn(i);
}

static void
drain_network(void)
{
	struct epoll_event evs[64];
	int			n = epoll_wait(epoll_fd, evs, 64, 0);

	for (int i = 0; i < n; i++)
	{
		uint64		tag = evs[i].data.u64;

		if (tag == (uint64) -1)
			read_udp();
		else if (tag == (uint64) -2)
			accept_conns();
		else if (tag < (uint64) n_conns_max && conns[tag].fd >= 0)
			read_conn((int) tag);
	}
}

/* ---------------------------------------------------------------- requests from SQL */

static void
claim_requests(void)
{
	int64	   *ids;
	char	  **devs,
			  **kinds,
			  **params;
	int			n;

	begin_tx("vms sip: claiming requests");
	if (SPI_execute("SELECT id, device_code, kind, params::text FROM vms._sip_claim_requests(100)", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "vms sip: could not claim requests");
	n = (int) SPI_processed;
	/* in the caller's context: SPI's own is gone after end_tx() */
	ids = MemoryContextAlloc(tx_caller_cxt, sizeof(int64) * (n + 1));
	devs = MemoryContextAlloc(tx_caller_cxt, sizeof(char *) * (n + 1));
	kinds = MemoryContextAlloc(tx_caller_cxt, sizeof(char *) * (n + 1));
	params = MemoryContextAlloc(tx_caller_cxt, sizeof(char *) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;

		char	   *id = SPI_getvalue(t, d, 1);
		char	   *dev = SPI_getvalue(t, d, 2);
		char	   *kind = SPI_getvalue(t, d, 3);
		char	   *par = SPI_getvalue(t, d, 4);

		/* id, device and kind are NOT NULL columns; params may be NULL: an empty object */
		if (id == NULL || dev == NULL || kind == NULL)
			elog(ERROR, "vms sip: a claimed request has a NULL id, device or kind");
		ids[i] = atoll(id);
		devs[i] = MemoryContextStrdup(tx_caller_cxt, dev);
		kinds[i] = MemoryContextStrdup(tx_caller_cxt, kind);
		params[i] = MemoryContextStrdup(tx_caller_cxt, par ? par : "{}");
	}
	end_tx();
	for (int i = 0; i < n; i++)
	{
		MemoryContext cxt = CurrentMemoryContext;

		/* a request that errors fails alone; the others still go out */
		PG_TRY();
		{
			sip_requests_start(ids[i], devs[i], kinds[i], params[i]);
		}
		PG_CATCH();
		{
			sip_request_update(ids[i], "failed", NULL, NULL, vms_worker_take_error(cxt));
		}
		PG_END_TRY();
	}
}

/* ---------------------------------------------------------------- main */

static void
publish_counters(void)
{
	for (int c = 0; c < VMS_COUNTERS; c++)
		if (sip_counters[c] != published[c])
		{
			vms_worker_count(slot, c, sip_counters[c] - published[c]);
			published[c] = sip_counters[c];
		}
}

static void
setup_memory(void)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = 21;
	ctl.entrysize = sizeof(Dev);
	ctl.hcxt = vms_worker_cxt;
	sip_devices = hash_create("vms sip devices", 65536, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	/* bounded by vms.sip_max_batch in sip_event(); the buffer's own limit only backs that up */
	sbuf_init(&events, (size_t) 1 << 31);
	sbuf_init(&sip_out, (size_t) 2 << 20);
	n_conns_max = vms_sip_max_connections;
	conns = MemoryContextAllocZero(vms_worker_cxt, sizeof(Conn) * n_conns_max);
	for (int i = 0; i < n_conns_max; i++)
		conns[i].fd = -1;
}

static void
shutdown_worker(int code, Datum arg)
{
	/* what is still queued is written if the database is still usable */
	close_sockets();
}

static void
reload_settings(void)
{
	ProcessConfigFile(PGC_SIGHUP);
	if (strcmp(bound_listen, vms_sip_listen ? vms_sip_listen : "*") != 0 || bound_port != vms_sip_port)
		open_sockets();
}

void
vms_sip_main(Datum arg)
{
	WaitEventSet *wes;
	TimestampTz next_tick = 0,
				next_flush = 0,
				next_claim = 0,
				next_publish = 0;
	bool		ready = false;

	slot = vms_worker_init("vms sip");

	{
		char		err[512];

		if (!sip_msg_init(err, sizeof(err)))
			ereport(FATAL, (errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
							errmsg("vms sip cannot initialise libosip2: %s", err),
							errdetail("libosip2's parser_init() is looked up in the library that holds osip_message_parse(); "
									  "the postgres executable has a parser_init() of its own that must never be called instead."),
							errhint("Check that vms.so is linked against libosipparser2 (ldd vms.so).")));
	}
	digest_init_secret();
	loop_cxt = AllocSetContextCreate(vms_worker_cxt, "vms sip loop", ALLOCSET_DEFAULT_SIZES);
	setup_memory();
	epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	before_shmem_exit(shutdown_worker, (Datum) 0);

	/* wait for an identity and the extension before listening */
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		sip_now = GetCurrentTimestamp();
		if (vms_sip_id == NULL || vms_sip_id[0] == '\0')
			vms_worker_set_state(slot, "waiting for vms.sip_id");
		else if (vms_worker_ready(slot))	/* else it shows what it waits for */
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, IDENTITY_WAIT_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}

	started_at = sip_now = GetCurrentTimestamp();
	MemoryContextSwitchTo(loop_cxt);
	/* changes queued before this start are in the full load: the queue is emptied first */
	load_changed_devices();
	load_devices();
	begin_tx("vms sip: recovering requests");
	SPI_execute("SELECT vms._sip_recover_requests()", false, 0);
	end_tx();
	sip_requests_load_subscriptions();
	MemoryContextSwitchTo(vms_worker_cxt);
	open_sockets();

	wes = CreateWaitEventSet(vms_worker_cxt, 3);
	AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wes, WL_SOCKET_READABLE, epoll_fd, NULL, NULL);
	vms_worker_set_state(slot, "running");
	ready = true;

	for (;;)
	{
		WaitEvent	ev[3];
		long		timeout;
		bool		woken = false;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			reload_settings();
		}
		/* an ALTER EXTENSION vms UPDATE (or DROP) under the running worker: no SQL until it matches again */
		if (!vms_worker_ready(slot))
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, VMS_READY_RECHECK_MS, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}
		sip_now = GetCurrentTimestamp();
		timeout = Max(0, Min((long) LOOP_MAX_WAIT_MS, (long) ((next_flush - sip_now) / 1000)));
		{
			int			n = WaitEventSetWait(wes, timeout, ev, 3, PG_WAIT_EXTENSION);

			for (int i = 0; i < n; i++)
				if (ev[i].events & WL_LATCH_SET)
				{
					ResetLatch(MyLatch);
					woken = true;
				}
		}
		MemoryContextReset(loop_cxt);

		/* an error ends this round, not the worker: report it and carry on */
		PG_TRY();
		{
			MemoryContext old = MemoryContextSwitchTo(loop_cxt);

			sip_now = GetCurrentTimestamp();
			/*
			 * A commit woke the worker: a deleted device or a changed
			 * password is applied before any datagram that arrived after
			 * that commit is read.
			 */
			if (woken)
				load_changed_devices();
			drain_network();
			if (woken_while_reading)
			{
				woken_while_reading = false;
				woken = true;
			}
			sip_now = GetCurrentTimestamp();
			if (sip_now >= next_tick)
			{
				check_deadlines();
				sip_requests_tick();
				expire_conns();
				next_tick = TimestampTzPlusMilliseconds(sip_now, TICK_MS);
			}
			if (woken || sip_now >= next_claim)
			{
				if (!woken)
					load_changed_devices();
				claim_requests();
				next_claim = TimestampTzPlusMilliseconds(sip_now, CLAIM_MS);
			}
			if (sip_now >= next_flush)
			{
				/*
				 * The flush can wait on a row lock (a device being deleted),
				 * and a lock wait resets the latch: a commit's wake that came
				 * meanwhile would be lost.  Wake ourselves, so that the next
				 * round takes the change queue before reading the network
				 * (after the flush, failed or not: a latch set before it
				 * would be reset by the lock wait too).
				 */
				flushing = n_dirty > 0 || events.len > 0 || n_req_updates > 0 || n_ops > 0;
				flush();
				if (flushing)
					SetLatch(MyLatch);
				flushing = false;
				next_flush = TimestampTzPlusMilliseconds(sip_now, vms_sip_flush_interval);
			}
			if (sip_now >= next_publish)
			{
				publish_counters();
				next_publish = TimestampTzPlusMilliseconds(sip_now, PUBLISH_MS);
			}
			MemoryContextSwitchTo(old);
		}
		PG_CATCH();
		{
			char	   *message = vms_worker_recover(slot, loop_cxt);

			if (flushing)
				SetLatch(MyLatch);
			flushing = false;
			batching = false;
			n_out = 0;
			sip_log_limited(LOG_OTHER, "%s", message);
			next_flush = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ERROR_PAUSE_MS);
		}
		PG_END_TRY();
	}
	(void) ready;
}
