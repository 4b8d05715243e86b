/*
 * sip_db.c — the SIP worker's database queue (sip_db.h).
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "sip_db.h"
#include "sip_devices.h"
#include "../worker_tx.h"

#define begin_tx(what) vms_worker_begin_tx(what)
#define end_tx() vms_worker_end_tx()

typedef struct DbOp
{
	SipSql		op;				/* one of the queued operations of sip_sql.h */
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

/* something for SQL that is not session state: applied after the session flush */
void
sip_db_queue(SipSql op_, const char *code, const char *json)
{
	DbOp	   *op;

	if (n_ops >= 100000)
	{
		sip_log_limited(LOG_OTHER, "database queue full; dropped a %s", sip_sql_text(op_));
		return;
	}
	if (n_ops == ops_cap)
	{
		ops_cap = ops_cap ? ops_cap * 2 : 256;
		ops = ops ? repalloc(ops, sizeof(DbOp) * ops_cap) : MemoryContextAlloc(vms_worker_cxt, sizeof(DbOp) * ops_cap);
	}
	op = &ops[n_ops++];
	op->op = op_;
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


/* positions by device code, each device's in the order they came */
static int
position_cmp(const void *a, const void *b)
{
	int			x = *(const int *) a,
				y = *(const int *) b;
	int			c = strcmp(ops[x].code, ops[y].code);

	return c != 0 ? c : (x > y) - (x < y);
}

/*
 * Queued SQL operations, each in a subtransaction so one bad item does not
 * take the others with it.  New devices (adds) go first, before the
 * sessions that refer to them.  Positions come last, ordered by device
 * code: each report's trigger locks its device's row of
 * vms.sip_position_change until the transaction ends, and every reporter
 * taking them in code order (the trigger does within a statement) cannot
 * deadlock with another.
 */
static void
apply_ops(bool adds)
{
	int			kept = 0;
	int			n = 0,
				n_positions = 0;
	int		   *order;

	for (int i = 0; i < n_ops; i++)
		if ((ops[i].op == SIP_SQL_ADD_DEVICE) == adds)
			n++;
	if (n == 0)
		return;
	order = palloc(sizeof(int) * n);
	n = 0;
	for (int i = 0; i < n_ops; i++)
		if ((ops[i].op == SIP_SQL_ADD_DEVICE) == adds && ops[i].op != SIP_SQL_POSITION)
			order[n++] = i;
	for (int i = 0; i < n_ops; i++)
		if (ops[i].op == SIP_SQL_POSITION && !adds)
			order[n + n_positions++] = i;
	qsort(order + n, n_positions, sizeof(int), position_cmp);
	n += n_positions;
	begin_tx(adds ? "vms sip: adding devices" : "vms sip: applying device reports");
	for (int k = 0; k < n; k++)
	{
		MemoryContext cxt = CurrentMemoryContext;
		ResourceOwner owner = CurrentResourceOwner;
		int			i = order[k];

		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(cxt);
		PG_TRY();
		{
			Datum		values[2];

			values[0] = CStringGetTextDatum(ops[i].code);
			values[1] = CStringGetTextDatum(ops[i].json);
			sip_sql_exec(ops[i].op, values, NULL);
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
			sip_log_limited(LOG_OTHER, "%s for %s failed: %s", sip_sql_text(ops[i].op), ops[i].code, e->message);
			FreeErrorData(e);
		}
		PG_END_TRY();
	}
	end_tx();
	pfree(order);
	/* done: keep only the other kind */
	for (int i = 0; i < n_ops; i++)
	{
		if ((ops[i].op == SIP_SQL_ADD_DEVICE) == adds)
			pfree(ops[i].json);
		else
			ops[kept++] = ops[i];
	}
	n_ops = kept;
}

bool
sip_db_pending(void)
{
	return sip_devices_pending() || n_req_updates > 0 || n_ops > 0;
}

/*
 * Sessions, transitions and request updates in one transaction; then the
 * queued SQL operations (catalog items, alarms, positions), each in a
 * subtransaction so one bad item does not take the others with it.
 */
void
sip_db_flush(void)
{
	static SBuf batch;
	int			n;
	Datum		jval[1];

	if (!sip_db_pending())
		return;
	/* sessions, then events (at most vms.sip_max_batch), then flips: never more than this */
	if (batch.data == NULL)
		sbuf_init(&batch, 0);
	batch.limit = 3 * sip_batch_limit() + 64;
	sbuf_reset(&batch);
	n = sip_devices_batch(&batch);
	if (batch.overflow)
	{
		/* cannot happen within the bounds above, short of memory: drop, never write a cut document */
		sip_devices_drop_events();
		return;
	}
	apply_ops(true);

	begin_tx("vms sip: writing sessions");
	jval[0] = CStringGetTextDatum(batch.data);
	sip_sql_exec(SIP_SQL_FLUSH, jval, NULL);
	for (int i = 0; i < n_req_updates; i++)
	{
		ReqUpdate  *u = &req_updates[i];
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
		if (sip_sql_run(SIP_SQL_REQUEST_UPDATE, values, nulls, false, 0) < 0)
			elog(ERROR, "vms sip: could not record a request");
	}
	end_tx();

	/* written: forget it (a failure above leaves everything queued for the next try) */
	sip_devices_batch_written(n);
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
