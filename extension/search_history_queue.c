/*
 * search_history_queue.c — vms.search_points records its history without a
 * synchronous INSERT.
 *
 * One row of vms.search_history per search cost more than the rest of a
 * nearest-ten search (an index entry, a heap page extended now and then, its
 * WAL: 35 µs of 175 at the median, and the tail of the slowest calls when
 * the disk is busy).  So a search in the database the workers serve
 * (vms.database), while the notifier worker runs, puts its row in a queue in
 * shared memory instead, and the notifier writes the queued rows in one
 * statement at its next round, within vms.notifier_poll_interval (1 s by
 * default) or sooner when a quarter of the queue fills
 * (vms.search_history_flush()).  Anywhere else, or
 * when the queue is full or the filter is larger than a slot, the search
 * inserts the row itself, as before.  Rows taken by a flush are held until
 * its transaction ends: dropped at commit, queued again at rollback (or at
 * the rollback of the subtransaction that took them).  What is queued when
 * the server crashes is lost: at most the searches of the last moments.
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "search_history_queue.h"
#include "xact_claims.h"
#include "../workers/worker_registry.h"

#define HQ_SLOTS	2048
#define HQ_FILTER	1024		/* the jsonb of a filter, as stored */

typedef struct HistRow
{
	Oid			dboid;
	TimestampTz at;
	int32		lim;
	int32		off;
	int32		n;
	float8		took_ms;
	char		username[NAMEDATALEN];
	uint32		filter_size;	/* VARSIZE of the jsonb */
	char		filter[HQ_FILTER];
} HistRow;

typedef struct HistQueue
{
	LWLock	   *lock;
	int			n_free;
	int			free_slot[HQ_SLOTS];	/* a stack of free slots */
	bool		used[HQ_SLOTS];
	uint64		queued;			/* ever queued */
	uint64		lost;			/* queued again failed at a rollback: no room */
	HistRow		rows[HQ_SLOTS];
} HistQueue;

static HistQueue *hq = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void hq_release(void *items, int n, bool committed);

/* rows this backend took, until the (sub)transaction that took them ends */
static XactClaims taken = {
	.what = "rows from the search history queue",
	.flush = "vms.search_history_flush",
	.item_size = sizeof(HistRow),
	.capacity = HQ_SLOTS,
	.release = hq_release,
};

static void
hq_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(HistQueue)));
	RequestNamedLWLockTranche("vms search history", 1);
}

static void
hq_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	hq = ShmemInitStruct("vms search history", sizeof(HistQueue), &found);
	if (!found)
	{
		memset(hq, 0, offsetof(HistQueue, rows));
		hq->lock = &(GetNamedLWLockTranche("vms search history"))->lock;
		hq->n_free = HQ_SLOTS;
		for (int i = 0; i < HQ_SLOTS; i++)
			hq->free_slot[i] = HQ_SLOTS - 1 - i;
	}
	LWLockRelease(AddinShmemInitLock);
}

void
vms_search_history_request(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = hq_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = hq_shmem_startup;
}

/* with the lock held: a row into a free slot; false when none is free */
static bool
hq_put(const HistRow *row)
{
	int			slot;

	if (hq->n_free == 0)
		return false;
	slot = hq->free_slot[--hq->n_free];
	memcpy(&hq->rows[slot], row, offsetof(HistRow, filter) + row->filter_size);
	hq->used[slot] = true;
	return true;
}

/* taken rows whose (sub)transaction ended: forgotten (commit) or queued again (abort) */
static void
hq_release(void *items, int n, bool committed)
{
	HistRow    *rows = items;
	int			lost = 0;

	if (committed || hq == NULL)
		return;
	LWLockAcquire(hq->lock, LW_EXCLUSIVE);
	for (int i = 0; i < n; i++)
		if (!hq_put(&rows[i]))
			lost++;
	hq->lost += lost;
	LWLockRelease(hq->lock);
	if (lost > 0)
		ereport(WARNING,
				(errmsg("vms: %d search history rows lost", lost),
				 errdetail("A flush of the search history rolled back and the queue had no room for them again.")));
}

/* are searches here deferred: the workers' database, with the notifier running */
static bool
deferring_here(void)
{
	static int	workers_db = -1;	/* per backend: is this the workers' database */
	bool		running = false;

	if (hq == NULL || vms_shared == NULL || vms_database == NULL || MyDatabaseId == InvalidOid)
		return false;
	if (workers_db < 0)
	{
		char	   *name = get_database_name(MyDatabaseId);

		workers_db = name != NULL && strcmp(name, vms_database) == 0;
	}
	if (!workers_db)
		return false;
	LWLockAcquire(vms_shared->lock, LW_SHARED);
	for (int i = 0; i < VMS_MAX_WORKERS; i++)
		if (vms_shared->slots[i].in_use && strcmp(vms_shared->slots[i].name, "notifier") == 0)
			running = vms_shared->slots[i].pid != 0 && vms_shared->slots[i].latch != NULL;
	LWLockRelease(vms_shared->lock);
	return running;
}

PG_FUNCTION_INFO_V1(vms_search_history_defer);
/*
 * vms._search_history_defer(filter jsonb, lim int, off int, n int, took_ms
 * numeric) → true when the row is queued, false when the caller must insert
 * it (not deferred here, filter too large, queue full).
 */
Datum
vms_search_history_defer(PG_FUNCTION_ARGS)
{
	Jsonb	   *filter;
	HistRow		row;
	bool		queued;
	bool		wake;

	/* at every call: rows queued while no notifier runs would wait for one */
	if (PG_ARGISNULL(0) || !deferring_here())
		PG_RETURN_BOOL(false);
	filter = PG_GETARG_JSONB_P(0);
	if (VARSIZE(filter) > HQ_FILTER)
		PG_RETURN_BOOL(false);
	row.dboid = MyDatabaseId;
	row.at = GetCurrentTimestamp();
	row.lim = PG_ARGISNULL(1) ? -1 : PG_GETARG_INT32(1);
	row.off = PG_ARGISNULL(2) ? -1 : PG_GETARG_INT32(2);
	row.n = PG_ARGISNULL(3) ? 0 : PG_GETARG_INT32(3);
	row.took_ms = PG_ARGISNULL(4) ? 0 : PG_GETARG_FLOAT8(4);
	strlcpy(row.username, GetUserNameFromId(GetSessionUserId(), false), sizeof(row.username));
	row.filter_size = VARSIZE(filter);
	memcpy(row.filter, filter, VARSIZE(filter));

	LWLockAcquire(hq->lock, LW_EXCLUSIVE);
	queued = hq_put(&row);
	if (queued)
		hq->queued++;
	wake = queued && hq->n_free % (HQ_SLOTS / 4) == 0;
	LWLockRelease(hq->lock);
	/*
	 * The notifier writes them at its next round (its idle wait is
	 * vms.notifier_poll_interval, 1 s by default), woken early only when a
	 * quarter of the queue fills: waking it for every search would make it
	 * write a row or two per transaction, beside the searches, for nothing.
	 */
	if (wake)
		vms_worker_wake("notifier");
	PG_RETURN_BOOL(queued);
}

PG_FUNCTION_INFO_V1(vms_search_history_take);
/*
 * vms._search_history_take(): the queued rows of this database, oldest
 * first, held until this transaction ends.
 */
Datum
vms_search_history_take(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			first = xact_claims_count(&taken);

	InitMaterializedSRF(fcinfo, 0);
	if (hq == NULL)
		return (Datum) 0;
	xact_claims_open(&taken);
	LWLockAcquire(hq->lock, LW_EXCLUSIVE);
	for (int i = 0; i < HQ_SLOTS && !xact_claims_full(&taken); i++)
	{
		HistRow    *r = &hq->rows[i];

		if (!hq->used[i] || r->dboid != MyDatabaseId)
			continue;
		memcpy(xact_claims_add(&taken), r, offsetof(HistRow, filter) + r->filter_size);
		hq->used[i] = false;
		hq->free_slot[hq->n_free++] = i;
	}
	LWLockRelease(hq->lock);
	for (int i = first; i < xact_claims_count(&taken); i++)
	{
		HistRow    *r = xact_claims_item(&taken, i);
		Datum		values[7];
		bool		nulls[7] = {false, r->lim < 0, r->off < 0, false, false, false, false};
		Jsonb	   *jb = palloc(r->filter_size);

		memcpy(jb, r->filter, r->filter_size);
		values[0] = CStringGetTextDatum(r->username);
		values[1] = Int32GetDatum(r->lim);
		values[2] = Int32GetDatum(r->off);
		values[3] = Int32GetDatum(r->n);
		values[4] = DirectFunctionCall1(float8_numeric, Float8GetDatum(r->took_ms));
		values[5] = TimestampTzGetDatum(r->at);
		values[6] = JsonbPGetDatum(jb);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* for the notifier: are rows of this database queued? (no lock: a hint) */
bool
vms_search_history_waiting(void)
{
	if (hq == NULL)
		return false;
	if (hq->n_free == HQ_SLOTS)
		return false;
	for (int i = 0; i < HQ_SLOTS; i++)
		if (hq->used[i] && hq->rows[i].dboid == MyDatabaseId)
			return true;
	return false;
}
