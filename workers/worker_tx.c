/*
 * worker_tx.c — the readiness check, short transactions and error recovery
 * for the vms workers (see worker_tx.h).
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "worker_tx.h"

/* the version of the SQL this library was built for: vms.control's default_version */
#ifndef VMS_EXTVERSION
#error "VMS_EXTVERSION must be defined (the Makefile passes vms.control's default_version)"
#endif

MemoryContext vms_worker_cxt = NULL;

/*
 * The start every vms worker makes, before anything of its own: die on
 * SIGTERM, reload settings on SIGHUP, take its registry slot, connect to
 * vms.database, and make its long-lived memory context (vms_worker_cxt),
 * named after it.  The name must outlive the context: callers pass a string
 * literal (the _Internal call is the macro's, without its compile-time
 * check that the name is a constant, which a parameter cannot pass).
 */
VmsWorkerSlot *
vms_worker_init(const char *name)
{
	VmsWorkerSlot *slot;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	slot = vms_worker_attach(MyBgworkerEntry->bgw_extra);
	BackgroundWorkerInitializeConnection(vms_database, NULL, 0);
	vms_worker_cxt = AllocSetContextCreateInternal(TopMemoryContext, name, ALLOCSET_DEFAULT_SIZES);
	return slot;
}
MemoryContext vms_tx_caller_cxt = NULL;

/* ---------------------------------------------------------------- readiness */

/*
 * The workers and ALTER/DROP EXTENSION vms meet on one lock: the extension
 * object's.  Every worker transaction, once the worker has found the
 * extension ready, holds it in AccessShareLock (taken without waiting, see
 * vms_extension_readiness and vms_worker_begin_tx); DROP EXTENSION takes it in
 * AccessExclusiveLock, and so, through the utility hook below, does ALTER
 * EXTENSION vms, which on its own locks nothing the workers hold.  So an
 * upgrade waits for the workers' transactions in flight, and no worker
 * transaction starts while it runs; afterwards the workers see the new
 * extversion and wait until the library matches it.
 */
static bool ready = false;		/* the last check found the extension ready */
static bool guarded = false;	/* ready once: every transaction checks again (vms_worker_begin_tx) */
static TimestampTz checked_at = 0;
static uint32 changes_seen = 0; /* vms_shared->extension_changes at that check */
static char shown_state[VMS_WORKER_STATE];	/* the waiting state last shown */
static ProcessUtility_hook_type prev_utility_hook = NULL;

/* -1, 0, 1 as dotted version a is older than, equal to, newer than b */
static int
compare_versions(const char *a, const char *b)
{
	while (*a || *b)
	{
		char	   *ea,
				   *eb;
		long		x = strtol(a, &ea, 10),
					y = strtol(b, &eb, 10);

		if (ea == a || eb == b)
			return strcmp(a, b) < 0 ? -1 : strcmp(a, b) > 0;
		if (x != y)
			return x < y ? -1 : 1;
		a = *ea == '.' ? ea + 1 : ea;
		b = *eb == '.' ? eb + 1 : eb;
	}
	return 0;
}

/*
 * Is the extension ready for this library's SQL?  Called inside a
 * transaction: takes the extension's lock in AccessShareLock without
 * waiting (held to the end of the transaction, so DROP and ALTER EXTENSION
 * vms wait for it), then reads extversion.  When not ready, state says what
 * the worker waits for.
 */
VmsReadiness
vms_extension_readiness(char *state, size_t state_len)
{
	Oid			ext = get_extension_oid("vms", true);
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	char		installed[64] = "";
	bool		found = false;
	int			cmp;

	if (!OidIsValid(ext))
	{
		strlcpy(state, "waiting for CREATE EXTENSION vms", state_len);
		return VMS_NOT_INSTALLED;
	}
	if (!ConditionalLockDatabaseObject(ExtensionRelationId, ext, 0, AccessShareLock))
	{
		strlcpy(state, "waiting for ALTER or DROP EXTENSION vms to finish", state_len);
		return VMS_BEING_CHANGED;
	}
	/* under the lock: the row as the last ALTER EXTENSION left it */
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(ext));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		v = heap_getattr(tup, Anum_pg_extension_extversion, RelationGetDescr(rel), &isnull);

		if (!isnull)
			text_to_cstring_buffer(DatumGetTextPP(v), installed, sizeof(installed));
		found = true;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!found)
	{
		/* dropped between the lookup and the lock */
		strlcpy(state, "waiting for CREATE EXTENSION vms", state_len);
		return VMS_NOT_INSTALLED;
	}
	cmp = compare_versions(installed, VMS_EXTVERSION);
	if (cmp < 0)
	{
		snprintf(state, state_len, "waiting for ALTER EXTENSION vms UPDATE (installed %s, library %s)",
				 installed, VMS_EXTVERSION);
		return VMS_SCHEMA_OLDER;
	}
	if (cmp > 0)
	{
		snprintf(state, state_len, "waiting for a restart with the vms %s library (installed %s, library %s)",
				 installed, installed, VMS_EXTVERSION);
		return VMS_SCHEMA_NEWER;
	}
	state[0] = '\0';
	return VMS_READY;
}

/*
 * The one "may I run my SQL?" of every worker, called at the top of each
 * round: looks at the extension in a transaction of its own, at most every
 * VMS_READY_RECHECK_MS (in between it answers from the last look; the
 * guard in vms_worker_begin_tx covers that time).  When not ready it shows
 * what it waits for in vms.worker_status and logs it once; when it becomes
 * ready again the state goes back to "running".
 */
bool
vms_worker_ready(VmsWorkerSlot *slot)
{
	MemoryContext cxt = CurrentMemoryContext;
	TimestampTz now = GetCurrentTimestamp();
	uint32		changes = pg_atomic_read_u32(&vms_shared->extension_changes);
	char		state[VMS_WORKER_STATE];
	VmsReadiness r;

	if (checked_at != 0 && changes == changes_seen &&
		now < TimestampTzPlusMilliseconds(checked_at, VMS_READY_RECHECK_MS))
		return ready;
	checked_at = now;
	changes_seen = changes;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	r = vms_extension_readiness(state, sizeof(state));
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);

	if (r == VMS_READY)
	{
		if (shown_state[0])
		{
			ereport(LOG, (errmsg("%s: vms %s is ready", MyBgworkerEntry->bgw_type, VMS_EXTVERSION)));
			vms_worker_set_state(slot, "running");
			shown_state[0] = '\0';
		}
		ready = true;
		guarded = true;
		return true;
	}
	if (strcmp(state, shown_state) != 0)
	{
		/* a worker that never ran shows the plain wait; a change of schema under it is logged */
		if (r != VMS_NOT_INSTALLED || ready)
			ereport(LOG, (errmsg("%s: %s", MyBgworkerEntry->bgw_type, state)));
		vms_worker_set_state(slot, state);
		strlcpy(shown_state, state, sizeof(shown_state));
	}
	ready = false;
	return false;
}

/*
 * ALTER EXTENSION vms (UPDATE, ADD, DROP, SET SCHEMA) takes the extension's
 * lock in AccessExclusiveLock, as DROP EXTENSION does, so that it waits for
 * the workers' transactions and they for it; both, once they hold it, wake
 * the workers, which look again at once instead of finding out in their
 * next transaction.  Installed with the workers (vms in
 * shared_preload_libraries), so it is in every backend.
 */
static void
vms_utility_hook(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				 ProcessUtilityContext context, ParamListInfo params, QueryEnvironment *queryEnv,
				 DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	const char *extname = NULL;

	if (IsA(stmt, AlterExtensionStmt))
		extname = ((AlterExtensionStmt *) stmt)->extname;
	else if (IsA(stmt, AlterExtensionContentsStmt))
		extname = ((AlterExtensionContentsStmt *) stmt)->extname;
	else if (IsA(stmt, DropStmt) && ((DropStmt *) stmt)->removeType == OBJECT_EXTENSION)
	{
		ListCell   *lc;

		foreach(lc, ((DropStmt *) stmt)->objects)
			if (strcmp(strVal(lfirst(lc)), "vms") == 0)
				extname = "vms";
	}
	if (extname && strcmp(extname, "vms") == 0 && IsTransactionState() && vms_shared)
	{
		Oid			ext = get_extension_oid("vms", true);

		if (OidIsValid(ext))
		{
			LockDatabaseObject(ExtensionRelationId, ext, 0, AccessExclusiveLock);
			pg_atomic_fetch_add_u32(&vms_shared->extension_changes, 1);
			vms_worker_wake_all();
		}
	}
	if (prev_utility_hook)
		prev_utility_hook(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

/* from _PG_init, when vms is preloaded */
void
vms_readiness_init(void)
{
	prev_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = vms_utility_hook;
}

/* ---------------------------------------------------------------- transactions */

/*
 * CommitTransactionCommand leaves TopMemoryContext current; going back to
 * the caller's context keeps every round's memory in the worker's loop
 * context, which is reset each round.
 */
void
vms_worker_begin_tx(const char *activity)
{
	vms_tx_caller_cxt = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (guarded)
	{
		char		state[VMS_WORKER_STATE];

		/*
		 * Hold the extension's lock for this transaction; it may have changed
		 * since the round's check.  Once a worker has run its SQL this holds
		 * for every later transaction too, including the rest of a round whose
		 * earlier transaction found the change.
		 */
		if (vms_extension_readiness(state, sizeof(state)) != VMS_READY)
		{
			ready = false;
			checked_at = 0;		/* the next vms_worker_ready() looks at once */
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("vms changed while a worker round ran"),
					 errdetail("The worker stops its SQL and shows \"%s\".", state)));
		}
	}
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (activity)
		pgstat_report_activity(STATE_RUNNING, activity);
}

void
vms_worker_end_tx(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(vms_tx_caller_cxt);
}

/*
 * In a PG_CATCH where the error ends only one piece of work: take the
 * error, end any transaction and return its message (in cxt).
 */
char *
vms_worker_take_error(MemoryContext cxt)
{
	ErrorData  *e;

	MemoryContextSwitchTo(cxt);
	e = CopyErrorData();
	FlushErrorState();
	AbortOutOfAnyTransaction();
	MemoryContextSwitchTo(cxt);
	return e->message;
}

/*
 * In a PG_CATCH of a worker's round: the same, and the message recorded as
 * the slot's last error; the worker logs it as it sees fit.
 */
char *
vms_worker_recover(VmsWorkerSlot *slot, MemoryContext cxt)
{
	char	   *message = vms_worker_take_error(cxt);

	vms_worker_error(slot, "%s", message);
	return message;
}

/*
 * The loop of a worker that works in rounds (viid, inspectors): settings
 * reloaded on SIGHUP, the loop context reset each round, an error ending
 * the round but not the worker (after_error releases what the round held),
 * the next round at once when this one did work, else after
 * VMS_IDLE_WAIT_MS or a wake-up.  The round itself starts with
 * vms_worker_ready().  Never returns; SIGTERM ends the process through die().
 */
void
vms_worker_run_rounds(VmsWorkerSlot *slot, MemoryContext loop_cxt, const char *who,
					  bool (*round) (void), void (*after_error) (void))
{
	for (;;)
	{
		bool		worked = false;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextReset(loop_cxt);
		PG_TRY();
		{
			MemoryContext old = MemoryContextSwitchTo(loop_cxt);

			worked = round();
			MemoryContextSwitchTo(old);
		}
		PG_CATCH();
		{
			char	   *message = vms_worker_recover(slot, loop_cxt);

			if (after_error)
				after_error();
			ereport(LOG, (errmsg("%s: %s", who, message)));
			worked = false;
			pg_usleep(VMS_ERROR_PAUSE_MS * 1000L);
		}
		PG_END_TRY();
		if (worked)
			continue;			/* more may be waiting */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, VMS_IDLE_WAIT_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
