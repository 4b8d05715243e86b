/*
 * sip_devices.c — the SIP worker's device cache (sip_devices.h).
 *
 * Restart safety: sessions are written about once a second; a starting
 * worker loads them and gives every device that was online a grace period
 * (vms.sip_restart_grace) before the keepalive deadline applies again, so a
 * device that keeps sending keepalives is never marked offline by a
 * restart.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "sip_devices.h"
#include "sip_sql.h"
#include "../worker_tx.h"

#define begin_tx(what) vms_worker_begin_tx(what)
#define end_tx() vms_worker_end_tx()

static HTAB *devices = NULL;

/* what waits for the next flush */
static Dev **dirty;
static int	n_dirty,
			dirty_cap;
static SBuf events;				/* JSON objects, comma-separated */
static int	n_events;

void
sip_devices_init(void)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = 21;
	ctl.entrysize = sizeof(Dev);
	ctl.hcxt = vms_worker_cxt;
	devices = hash_create("vms sip devices", 65536, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	/* bounded by vms.sip_max_batch in sip_event(); the buffer's own limit only backs that up */
	sbuf_init(&events, (size_t) 1 << 31);
}

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
	dev = hash_search(devices, code, HASH_ENTER, &found);
	if (!found)
	{
		memset(((char *) dev) + sizeof(dev->code), 0, sizeof(Dev) - sizeof(dev->code));
		/* session state comes from the database only for a device new to memory */
		dev->online = DatumGetBool(SPI_getbinval(t, d, 5, &isnull));
		v = SPI_getbinval(t, d, 6, &isnull);
		dev->registered_at = isnull ? 0 : sip_from_epoch(DatumGetFloat8(v));
		v = SPI_getbinval(t, d, 7, &isnull);
		dev->expires_at = isnull ? 0 : sip_from_epoch(DatumGetFloat8(v));
		dev->registered = !isnull && dev->expires_at > sip_now;
		v = SPI_getbinval(t, d, 8, &isnull);
		dev->last_keepalive = isnull ? 0 : sip_from_epoch(DatumGetFloat8(v));
		v = SPI_getbinval(t, d, 14, &isnull);
		dev->auth_failures = isnull ? 0 : DatumGetInt32(v);
		v = SPI_getbinval(t, d, 15, &isnull);
		dev->banned_until = isnull ? 0 : sip_from_epoch(DatumGetFloat8(v));
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
			sip_count(C_ONLINE, 1);
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

/* every device of the ledger, at start */
void
sip_devices_load_all(void)
{
	Datum		values[1];

	values[0] = TimestampTzGetDatum(DT_NOBEGIN);
	begin_tx("vms sip: loading devices");
	if (sip_sql_run(SIP_SQL_DEVICES, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "vms sip: could not load devices");
	for (uint64 i = 0; i < SPI_processed; i++)
		load_row(SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
	end_tx();
}

/* a device deleted from the ledger: it authenticates no more and is not online */
static void
forget_device(const char *code)
{
	Dev		   *d = hash_search(devices, code, HASH_FIND, NULL);

	if (d == NULL || !d->in_ledger)
		return;
	if (d->online)
		sip_count(C_ONLINE, -1);
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
#define CHANGED_ONE_BY_ONE 100	/* more changed codes than this: one pass over the ledger */

void
sip_devices_load_changed(void)
{
	Datum		codes;
	bool		isnull;
	Datum		values[1];
	HTAB	   *present;
	HASHCTL		ctl;
	bool		many;

	begin_tx("vms sip: loading changed devices");
	if (sip_sql_run(SIP_SQL_TAKE_DEVICE_CHANGES, NULL, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "vms sip: could not take device changes");
	codes = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
	{
		end_tx();
		return;
	}
	values[0] = codes;
	/*
	 * Each code's lookup is a call of vms._sip_devices (not inlined: it sets
	 * its search_path) that reads the device table: many codes at once (a
	 * bulk insert of 100,000 devices) take one pass over the table instead,
	 * which is what kept a restarted worker "starting" for over ten minutes.
	 */
	{
		ArrayType  *a = DatumGetArrayTypeP(codes);

		many = ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a)) > CHANGED_ONE_BY_ONE;
	}
	/* read-write: a snapshot newer than the one that took the queue */
	if (sip_sql_run(many ? SIP_SQL_CHANGED_DEVICES_MANY : SIP_SQL_CHANGED_DEVICES, values, NULL, false, 0) != SPI_OK_SELECT)
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
	d = hash_search(devices, code, HASH_FIND, &found);
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
		Datum		values[2];

		values[0] = TimestampTzGetDatum(DT_NOBEGIN);
		values[1] = CStringGetTextDatum(code);
		begin_tx("vms sip: looking up a device");
		if (sip_sql_run(SIP_SQL_DEVICE, values, NULL, true, 1) == SPI_OK_SELECT &&
			SPI_processed == 1)
			load_row(SPI_tuptable->vals[0], SPI_tuptable->tupdesc);
		end_tx();
	}
	d = hash_search(devices, code, HASH_ENTER, &found);
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
size_t
sip_batch_limit(void)
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
	if (one.overflow || events.len + one.len + 1 > sip_batch_limit())
	{
		sip_count(C_DROPPED, 1);
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
	sip_count(C_ONLINE, online ? 1 : -1);
	d->flip_pending = true;
	d->flip_at = sip_now;
	sip_event(d, online ? "online" : "offline", cause);
	sip_mark_dirty(d);
}

/* ---------------------------------------------------------------- the batch */

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

/* ---------------------------------------------------------------- deadlines */

static TimestampTz
keepalive_deadline(Dev *d)
{
	int			interval = d->ka_interval > 0 ? d->ka_interval : vms_sip_keepalive_interval;
	int			count = d->ka_count > 0 ? d->ka_count : vms_sip_keepalive_count;

	return TimestampTzPlusMilliseconds(d->last_keepalive, (int64) interval * count * 1000);
}

/* once a second (after sip_server_tick): devices whose keepalives or registration ran out go offline */
void
sip_devices_check_deadlines(void)
{
	HASH_SEQ_STATUS it;
	Dev		   *d;

	hash_seq_init(&it, devices);
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

/* something waits for the next flush */
bool
sip_devices_pending(void)
{
	return n_dirty > 0 || events.len > 0;
}

/*
 * The flush's document: sessions, then events (at most vms.sip_max_batch),
 * then flips: {"s":[...],"e":[...],"f":[...]}.  Returns how many of the
 * dirty devices it holds; the rest stay dirty for the next flush.
 */
int
sip_devices_batch(SBuf *batch)
{
	SBuf		one;
	int			n;
	bool		first;

	sbuf_init(&one, 8192);
	sbuf_puts(batch, "{\"s\":[");
	/* as many sessions as fit in vms.sip_max_batch; the rest stay dirty for the next flush */
	first = true;
	for (n = 0; n < n_dirty; n++)
	{
		if (!dirty[n]->in_ledger)
			continue;
		sbuf_reset(&one);
		session_json(&one, dirty[n]);
		if (one.overflow || (!first && batch->len + one.len + 1 > sip_batch_limit()))
			break;
		if (!first)
			sbuf_append(batch, ",", 1);
		first = false;
		sbuf_append(batch, one.data, one.len);
	}
	sbuf_puts(batch, "],\"e\":[");
	sbuf_append(batch, events.data, events.len);
	sbuf_puts(batch, "],\"f\":[");
	first = true;
	for (int i = 0; i < n; i++)
	{
		Dev		   *d = dirty[i];

		if (!d->flip_pending || !d->in_ledger)
			continue;
		if (!first)
			sbuf_append(batch, ",", 1);
		first = false;
		sbuf_printf(batch, "{\"d\":\"%s\",\"o\":%s,\"at\":%.3f}", d->code, d->online ? "true" : "false",
					sip_epoch(d->flip_at));
	}
	sbuf_puts(batch, "]}");
	sbuf_free(&one);
	return n;
}

/* the batch of sip_devices_batch() was written: forget it */
void
sip_devices_batch_written(int n)
{
	for (int i = 0; i < n; i++)
	{
		dirty[i]->dirty = false;
		dirty[i]->flip_pending = false;
	}
	memmove(dirty, dirty + n, sizeof(Dev *) * (n_dirty - n));
	n_dirty -= n;
	sbuf_reset(&events);
	n_events = 0;
}

/* the batch did not fit in memory: drop the events, never write a cut document */
void
sip_devices_drop_events(void)
{
	sip_count(C_DROPPED, n_events);
	sip_log_limited(LOG_OTHER, "session batch did not fit in memory: %d events dropped", n_events);
	sbuf_reset(&events);
	n_events = 0;
}

/* ---------------------------------------------------------------- sources */

/*
 * The message came the way the device registered: from the same UDP
 * address and port, or over its TCP connection.
 */
bool
sip_peer_is_device(const Dev *d, const Peer *peer)
{
	if (d == NULL || !d->has_peer || d->peer.transport != peer->transport)
		return false;
	if (peer->transport == TRANSPORT_TCP)
		return d->peer.conn == peer->conn && d->peer.conn_gen == peer->conn_gen;
	return d->peer.port == peer->port && strcmp(d->peer.ip, peer->ip) == 0;
}

/* a device's message from elsewhere: counted and logged (the caller answers 403 where it can) */
void
sip_wrong_source(const Dev *d, const char *what, const Peer *peer)
{
	sip_count(C_WRONG_SOURCE, 1);
	if (d->has_peer)
		sip_log_limited(LOG_SOURCE, "%s for %s from %s %s:%d refused: the device is registered over %s from %s:%d",
						what, d->code, peer->transport == TRANSPORT_TCP ? "TCP" : "UDP", peer->ip, peer->port,
						d->peer.transport == TRANSPORT_TCP ? "TCP" : "UDP", d->peer.ip, d->peer.port);
	else
		sip_log_limited(LOG_SOURCE, "%s for %s from %s %s:%d refused: the device has no current registration",
						what, d->code, peer->transport == TRANSPORT_TCP ? "TCP" : "UDP", peer->ip, peer->port);
}
