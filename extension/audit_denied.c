/*
 * audit_denied.c — refused rights reach the audit log although the refusal
 * rolls its transaction back.
 *
 * vms.exercise_right raises 42501 when a role lacks a right, and an audit
 * row written in that transaction would vanish with it.  So the refusal is
 * recorded outside the transaction: in the server log at once, and in a
 * queue in shared memory that a committing transaction later empties into
 * the hash-chained audit log (vms.audit_flush_denied(); the notifier worker
 * calls it when woken, in the database it serves).  An entry taken from the
 * queue is only claimed until the taking transaction ends: freed when it
 * commits, back in the queue when it (or the subtransaction that took it)
 * rolls back, so a flush that fails loses nothing.  Bounded: 512 entries of
 * bounded size, of which one database holds at most 128 and one role in it
 * at most 16, so that refusals in one database, or by one role, cannot keep
 * others' out.  A refusal repeating a queued one (same database, role,
 * action and object) counts on it; past its role's quota a refusal counts on
 * the role's "denied_more" entry; past its database's, on the database's
 * ("*" for the role).  Only with no slot left at all is a refusal dropped
 * from the audit log (it is still in the server log) and counted.  Entries
 * of a database that was dropped can never be flushed (their audit log went
 * with it): a refusal that finds no free slot, a flush and
 * vms.audit_denied_status() free them, count their refusals in "discarded"
 * and say so in the server log (see reclaim_dropped).  A server crash
 * empties the queue, as it does every shared memory; the server log keeps
 * the refusals.
 * Without shared_preload_libraries = 'vms' there is no queue: the server log
 * only.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"
#include "utils/inval.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "audit_denied.h"
#include "xact_claims.h"
#include "../workers/worker_registry.h"

#define DENIED_SLOTS	512
#define DENIED_PER_DB	128		/* entries one database may hold */
#define DENIED_PER_ROLE	16		/* entries one role may hold in a database */
#define DENIED_MORE		"denied_more"
#define DENIED_ACTION	64
#define DENIED_OBJECT	128
#define DENIED_DETAIL	1024

typedef enum DeniedState
{
	DENIED_FREE = 0,
	DENIED_PENDING,
	DENIED_CLAIMED
} DeniedState;

typedef struct DeniedEntry
{
	DeniedState state;
	Oid			dboid;
	uint64		order;			/* queue order: entries come out as they went in */
	int			claimer;		/* MyProcPid of the taking backend */
	int			count;			/* refusals this entry stands for */
	TimestampTz at;				/* the first */
	TimestampTz last_at;		/* the last */
	char		role[NAMEDATALEN];
	char		action[DENIED_ACTION];
	char		object[DENIED_OBJECT];
	char		detail[DENIED_DETAIL];	/* jsonb as text, or "" when it did not fit */
	int			detail_len;		/* the original length, when cut */
} DeniedEntry;

typedef struct DeniedQueue
{
	LWLock	   *lock;
	uint64		next_order;
	uint64		queued;			/* ever queued */
	uint64		dropped;		/* refused while full */
	uint64		discarded;		/* queued, freed when their database was dropped */
	DeniedEntry entries[DENIED_SLOTS];
} DeniedQueue;

static DeniedQueue *queue = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void release_claims(void *items, int n, bool committed);

/* this backend's claims (slot numbers), until the (sub)transaction that took them ends */
static XactClaims claims = {
	.what = "refusals from the audit queue",
	.flush = "vms.audit_flush_denied",
	.item_size = sizeof(int),
	.capacity = DENIED_SLOTS,
	.release = release_claims,
};

static void
denied_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(DeniedQueue)));
	RequestNamedLWLockTranche("vms audit denied", 1);
}

static void
denied_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	queue = ShmemInitStruct("vms audit denied", sizeof(DeniedQueue), &found);
	if (!found)
	{
		memset(queue, 0, sizeof(DeniedQueue));
		queue->lock = &(GetNamedLWLockTranche("vms audit denied"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

void
vms_audit_denied_request(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = denied_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = denied_shmem_startup;
}

/*
 * Claims whose (sub)transaction ended: freed (commit) or queued again
 * (abort: its audit rows are gone).
 */
static void
release_claims(void *items, int n, bool committed)
{
	int		   *slot = items;

	if (queue == NULL)
		return;
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (int i = 0; i < n; i++)
	{
		DeniedEntry *e = &queue->entries[slot[i]];

		if (e->state == DENIED_CLAIMED && e->claimer == MyProcPid)
		{
			e->state = committed ? DENIED_FREE : DENIED_PENDING;
			e->claimer = 0;
		}
	}
	LWLockRelease(queue->lock);
}

/*
 * Free the pending entries of databases that no longer exist.  Nobody can
 * flush them: a flush takes only its own database's entries, and no backend
 * is left in a dropped database (DROP DATABASE waits for them to exit; one
 * exiting in a flush puts its claims back, so only pending entries are
 * freed, a claimed one at a later call).  Without this they would hold
 * their slots until the server restarts, and the queue's 512 slots are
 * shared: four dropped databases at their quota would fill it, and every
 * later refusal would be dropped.  Their refusals are counted in
 * "discarded" and logged, per database.
 *
 * The catalog is not read under the queue's lock: the candidates (slot,
 * database, order) are copied under a shared lock, pg_database is asked
 * without it, and an entry is freed under the exclusive lock only if it is
 * still the same pending entry (its order unchanged), so an entry queued
 * meanwhile, even by a new database that got the old OID, stays.  Needs a
 * transaction (the callers are SQL functions).
 */
static void
reclaim_dropped(void)
{
	int			slot[DENIED_SLOTS];
	uint64		order[DENIED_SLOTS];
	Oid			dboid[DENIED_SLOTS];
	Oid			db[DENIED_SLOTS];
	bool		gone[DENIED_SLOTS];
	int64		entries[DENIED_SLOTS];
	int64		refusals[DENIED_SLOTS];
	int			n = 0,
				ndb = 0,
				ngone = 0;

	if (queue == NULL || !IsTransactionState())
		return;
	LWLockAcquire(queue->lock, LW_SHARED);
	for (int i = 0; i < DENIED_SLOTS; i++)
	{
		DeniedEntry *e = &queue->entries[i];

		if (e->state != DENIED_PENDING || e->dboid == MyDatabaseId)
			continue;
		slot[n] = i;
		order[n] = e->order;
		dboid[n] = e->dboid;
		n++;
	}
	LWLockRelease(queue->lock);
	if (n == 0)
		return;

	/* each database once (oid_cmp: utils/builtins.h), asked outside the lock */
	memcpy(db, dboid, sizeof(Oid) * n);
	qsort(db, n, sizeof(Oid), oid_cmp);
	for (int i = 0; i < n; i++)
		if (ndb == 0 || db[ndb - 1] != db[i])
			db[ndb++] = db[i];
	/*
	 * The syscache answers from this backend's catalog view: take the
	 * invalidations queued since (a database created meanwhile must not look
	 * dropped to a long transaction that has not read them yet).
	 */
	AcceptInvalidationMessages();
	for (int j = 0; j < ndb; j++)
	{
		gone[j] = !SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(db[j]));
		entries[j] = refusals[j] = 0;
		ngone += gone[j];
	}
	if (ngone == 0)
		return;

	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (int i = 0; i < n; i++)
	{
		DeniedEntry *e = &queue->entries[slot[i]];
		Oid		   *found = bsearch(&dboid[i], db, ndb, sizeof(Oid), oid_cmp);
		int			j = found - db;

		if (!gone[j] || e->state != DENIED_PENDING || e->order != order[i] || e->dboid != dboid[i])
			continue;
		entries[j]++;
		refusals[j] += e->count;
		queue->discarded += e->count;
		e->state = DENIED_FREE;
		e->claimer = 0;
	}
	LWLockRelease(queue->lock);
	for (int j = 0; j < ndb; j++)
		if (entries[j] > 0)
			ereport(LOG,
					(errmsg("vms: %lld refusals queued for the audit log of dropped database %u discarded (%lld queue entries freed)",
							(long long) refusals[j], db[j], (long long) entries[j]),
					 errdetail("Their database, and with it its audit log, no longer exists; the server log has each refusal."),
					 errhidestmt(true)));
}

/* a free slot, with the queue's lock held */
static bool
queue_has_free(void)
{
	for (int i = 0; i < DENIED_SLOTS; i++)
		if (queue->entries[i].state == DENIED_FREE)
			return true;
	return false;
}

static void
copy_bounded(char *dst, size_t size, const char *src)
{
	size_t		len = strlen(src);

	if (len >= size)
	{
		/* cut on a character boundary */
		len = pg_mbcliplen(src, len, size - 1);
	}
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/*
 * Where a refusal goes, with the queue's lock held: the pending entry it
 * repeats; else a new entry (state FREE, role and database filled in, action
 * DENIED_MORE when it starts an overflow entry); else the overflow entry it
 * counts on; NULL when it must be dropped.
 */
static DeniedEntry *
queue_place(const char *role, const char *action, const char *object)
{
	int			n_db = 0,
				n_role = 0,
				free_slot = -1;
	DeniedEntry *role_more = NULL,
			   *db_more = NULL,
			   *e;

	for (int i = 0; i < DENIED_SLOTS; i++)
	{
		e = &queue->entries[i];
		if (e->state == DENIED_FREE)
		{
			if (free_slot < 0)
				free_slot = i;
			continue;
		}
		if (e->dboid != MyDatabaseId)
			continue;
		n_db++;
		if (strncmp(e->role, role, NAMEDATALEN - 1) == 0)
		{
			n_role++;
			if (e->state == DENIED_PENDING && strcmp(e->action, DENIED_MORE) == 0)
				role_more = e;
			else if (e->state == DENIED_PENDING && strncmp(e->action, action, DENIED_ACTION - 1) == 0
					 && strncmp(e->object, object, DENIED_OBJECT - 1) == 0)
				return e;
		}
		else if (e->state == DENIED_PENDING && strcmp(e->role, "*") == 0)
			db_more = e;
	}
	if (free_slot >= 0 && n_db < DENIED_PER_DB - 1 && n_role < DENIED_PER_ROLE - 1)
	{
		e = &queue->entries[free_slot];
		e->action[0] = '\0';	/* the caller fills it in */
	}
	else if (role_more != NULL && n_db < DENIED_PER_DB)
		return role_more;
	else if (free_slot >= 0 && n_db < DENIED_PER_DB - 1)
	{
		/* the role's quota is used: its overflow entry */
		e = &queue->entries[free_slot];
		strlcpy(e->action, DENIED_MORE, sizeof(e->action));
		e->object[0] = '\0';
	}
	else if (db_more != NULL)
		return db_more;
	else if (free_slot >= 0)
	{
		/* the database's quota is used: its overflow entry, for any role */
		e = &queue->entries[free_slot];
		strlcpy(e->action, DENIED_MORE, sizeof(e->action));
		e->object[0] = '\0';
		strlcpy(e->role, "*", sizeof(e->role));
		return e;
	}
	else
		return NULL;
	copy_bounded(e->role, sizeof(e->role), role);
	return e;
}

PG_FUNCTION_INFO_V1(vms_audit_denied);
/*
 * vms._audit_denied(action text, object text, detail jsonb): record a
 * refusal outside the transaction (server log now, audit log later).
 */
Datum
vms_audit_denied(PG_FUNCTION_ARGS)
{
	char	   *action = PG_ARGISNULL(0) ? pstrdup("denied") : text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *object = PG_ARGISNULL(1) ? pstrdup("") : text_to_cstring(PG_GETARG_TEXT_PP(1));
	Jsonb	   *jb = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	char	   *detail = jb == NULL ? pstrdup("{}") : JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	char	   *role = GetUserNameFromId(GetSessionUserId(), false);
	bool		queued = false;
	uint64		dropped = 0;

	if (queue != NULL)
	{
		TimestampTz now = GetCurrentTimestamp();
		DeniedEntry *e;

		LWLockAcquire(queue->lock, LW_EXCLUSIVE);
		if (!queue_has_free())
		{
			/* full: entries of dropped databases make room, if any */
			LWLockRelease(queue->lock);
			reclaim_dropped();
			LWLockAcquire(queue->lock, LW_EXCLUSIVE);
		}
		e = queue_place(role, action, object);
		if (e != NULL && e->state == DENIED_FREE)
		{
			/* a new entry: this refusal itself, or the overflow entry it starts */
			bool		more = strcmp(e->action, DENIED_MORE) == 0;
			size_t		dlen = strlen(detail);

			e->dboid = MyDatabaseId;
			e->order = queue->next_order++;
			e->claimer = 0;
			e->count = 1;
			e->at = e->last_at = now;
			if (more)
				e->detail[0] = '\0', e->detail_len = 0;
			else
			{
				copy_bounded(e->action, sizeof(e->action), action);
				copy_bounded(e->object, sizeof(e->object), object);
				if (dlen < sizeof(e->detail))
				{
					memcpy(e->detail, detail, dlen + 1);
					e->detail_len = 0;
				}
				else
				{
					e->detail[0] = '\0';
					e->detail_len = (int) Min(dlen, (size_t) INT_MAX);
				}
			}
			e->state = DENIED_PENDING;
		}
		else if (e != NULL)
		{
			e->count++;
			e->last_at = now;
		}
		if (e != NULL)
		{
			queue->queued++;
			queued = true;
		}
		else
			dropped = ++queue->dropped;
		LWLockRelease(queue->lock);
	}
	ereport(queued || queue == NULL ? LOG : WARNING,
			(errmsg("vms: permission denied: role \"%s\", %s %s", role, action, object),
			 queue == NULL ? errdetail("Not in the audit log: vms is not in shared_preload_libraries.") :
			 queued ? errdetail("Queued for the audit log.") :
			 errdetail("Not in the audit log: its queue is full (%llu refusals dropped so far).",
					   (unsigned long long) dropped),
			 queued || queue == NULL ? 0 :
			 errhint("Run SELECT vms.audit_flush_denied(); in this database, or start the notifier worker."),
			 errhidestmt(true)));
	/* the notifier empties the queue in the database it serves */
	if (queued)
		vms_worker_wake("notifier");
	PG_RETURN_VOID();
}

static int
order_cmp(const void *a, const void *b)
{
	uint64		x = ((const DeniedEntry *) a)->order;
	uint64		y = ((const DeniedEntry *) b)->order;

	return x < y ? -1 : x > y ? 1 : 0;
}

PG_FUNCTION_INFO_V1(vms_audit_denied_take);
/*
 * vms._audit_denied_take(): the queued refusals of this database, oldest
 * first, claimed until this transaction ends (see release_claims).
 */
Datum
vms_audit_denied_take(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DeniedEntry *taken;
	int			n = 0;

	InitMaterializedSRF(fcinfo, 0);
	if (queue == NULL)
		return (Datum) 0;
	reclaim_dropped();
	xact_claims_open(&claims);
	taken = palloc(sizeof(DeniedEntry) * DENIED_SLOTS);
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (int i = 0; i < DENIED_SLOTS && !xact_claims_full(&claims); i++)
	{
		DeniedEntry *e = &queue->entries[i];

		if (e->state != DENIED_PENDING || e->dboid != MyDatabaseId)
			continue;
		e->state = DENIED_CLAIMED;
		e->claimer = MyProcPid;
		*(int *) xact_claims_add(&claims) = i;
		memcpy(&taken[n++], e, sizeof(DeniedEntry));
	}
	LWLockRelease(queue->lock);
	qsort(taken, n, sizeof(DeniedEntry), order_cmp);
	for (int i = 0; i < n; i++)
	{
		Datum		values[7];
		bool		nulls[7] = {false, false, false, false, false, false, false};
		char	   *detail = taken[i].detail_len > 0
			? psprintf("{\"detail_cut\": %d}", taken[i].detail_len) : taken[i].detail;

		values[0] = TimestampTzGetDatum(taken[i].at);
		values[1] = TimestampTzGetDatum(taken[i].last_at);
		values[2] = Int32GetDatum(taken[i].count);
		values[3] = CStringGetTextDatum(taken[i].role);
		values[4] = CStringGetTextDatum(taken[i].action);
		values[5] = CStringGetTextDatum(taken[i].object);
		values[6] = DirectFunctionCall1(jsonb_in, CStringGetDatum(detail[0] ? detail : "{}"));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(vms_audit_denied_status);
/*
 * vms.audit_denied_status(): the queue's pending and claimed entries, the
 * refusals queued, dropped (queue full) and discarded (their database
 * dropped) since the server started.  Frees the entries of dropped databases
 * first, so that pending counts only what a flush can still write.
 */
Datum
vms_audit_denied_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	int64		pending = 0,
				claimed = 0;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts > lengthof(values))
		elog(ERROR, "vms.audit_denied_status: %d result columns, at most %d expected",
			 tupdesc->natts, (int) lengthof(values));
	if (queue == NULL)
	{
		for (int i = 0; i < lengthof(nulls); i++)
			nulls[i] = true;
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
	}
	reclaim_dropped();
	LWLockAcquire(queue->lock, LW_SHARED);
	for (int i = 0; i < DENIED_SLOTS; i++)
	{
		if (queue->entries[i].state == DENIED_PENDING)
			pending++;
		else if (queue->entries[i].state == DENIED_CLAIMED)
			claimed++;
	}
	values[2] = Int64GetDatum((int64) queue->queued);
	values[3] = Int64GetDatum((int64) queue->dropped);
	values[4] = Int64GetDatum((int64) queue->discarded);
	LWLockRelease(queue->lock);
	values[0] = Int64GetDatum(pending);
	values[1] = Int64GetDatum(claimed);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

/* for the notifier: are refusals of this database waiting? (no lock: a hint) */
bool
vms_audit_denied_waiting(void)
{
	if (queue == NULL)
		return false;
	for (int i = 0; i < DENIED_SLOTS; i++)
		if (queue->entries[i].state == DENIED_PENDING && queue->entries[i].dboid == MyDatabaseId)
			return true;
	return false;
}

/*
 * vms._audit_chain_head(OUT seq bigint, OUT hash bytea): the chain's last
 * entry (the last archived one when every entry is archived), as committed
 * now.  vms._audit_as calls it holding the chain's lock, so every other
 * append has committed or waits; reading through the latest snapshot, not
 * the transaction's, a REPEATABLE READ or SERIALIZABLE transaction appends
 * after the entries committed since its snapshot was taken instead of
 * failing on a duplicate seq (the ledger's entries are appended at commit,
 * long after such a transaction's snapshot).  The transaction's own
 * earlier appends are seen (the snapshot's command id is the current one).
 */
PG_FUNCTION_INFO_V1(vms_audit_chain_head);
Datum
vms_audit_chain_head(PG_FUNCTION_ARGS)
{
	static const char *const queries[] = {
		"SELECT seq, hash FROM vms.audit_log ORDER BY seq DESC LIMIT 1",
		"SELECT last_seq, last_hash FROM vms.audit_archive ORDER BY last_seq DESC LIMIT 1"
	};
	TupleDesc	tupdesc;
	Datum		values[2] = {0, 0};
	bool		nulls[2] = {true, true};
	int64		seq = 0;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "vms._audit_chain_head: return type must be a row type");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "vms._audit_chain_head: SPI_connect failed");
	for (int i = 0; i < lengthof(queries); i++)
	{
		SPIPlanPtr	plan = SPI_prepare(queries[i], 0, NULL);
		int			ret;
		bool		isnull;
		Datum		d;

		if (plan == NULL)
			elog(ERROR, "vms._audit_chain_head: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		ret = SPI_execute_snapshot(plan, NULL, NULL, GetLatestSnapshot(), InvalidSnapshot, true, false, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "vms._audit_chain_head: SPI_execute_snapshot failed: %s", SPI_result_code_string(ret));
		if (SPI_processed == 0)
			continue;
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
		{
			seq = DatumGetInt64(d);
			nulls[0] = false;
		}
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		if (!isnull)
		{
			values[1] = SPI_datumTransfer(d, false, -1);
			nulls[1] = false;
		}
		break;
	}
	SPI_finish();
	if (!nulls[0])
		values[0] = Int64GetDatum(seq);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}
