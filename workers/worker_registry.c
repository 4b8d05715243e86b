/*
 * worker_registry.c — shared memory for the vms workers and the SQL
 * functions DBAs use on them: vms.worker_status(), vms.worker_stop(),
 * vms.worker_start(), vms.worker_restart(); and the warning CREATE
 * EXTENSION gives in a database the workers do not serve.
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "worker_registry.h"

VmsShared  *vms_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
vms_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(VmsShared)));
	RequestNamedLWLockTranche("vms", 1);
}

static void
vms_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	vms_shared = ShmemInitStruct("vms workers", sizeof(VmsShared), &found);
	if (!found)
	{
		memset(vms_shared, 0, sizeof(VmsShared));
		vms_shared->lock = &(GetNamedLWLockTranche("vms"))->lock;
		pg_atomic_init_u32(&vms_shared->extension_changes, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

void
vms_registry_request(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = vms_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = vms_shmem_startup;
}

static VmsWorkerSlot *
find_slot(const char *name)
{
	for (int i = 0; i < VMS_MAX_WORKERS; i++)
		if (vms_shared->slots[i].in_use && strcmp(vms_shared->slots[i].name, name) == 0)
			return &vms_shared->slots[i];
	return NULL;
}

static void
worker_detach(int code, Datum arg)
{
	VmsWorkerSlot *slot = (VmsWorkerSlot *) DatumGetPointer(arg);

	LWLockAcquire(vms_shared->lock, LW_EXCLUSIVE);
	if (slot->pid == MyProcPid)
	{
		slot->pid = 0;
		slot->latch = NULL;
		strlcpy(slot->state, "stopped", sizeof(slot->state));
	}
	LWLockRelease(vms_shared->lock);
	if (vms_shared->launcher_latch)
		SetLatch(vms_shared->launcher_latch);
}

VmsWorkerSlot *
vms_worker_attach(const char *name)
{
	VmsWorkerSlot *slot;

	LWLockAcquire(vms_shared->lock, LW_EXCLUSIVE);
	slot = find_slot(name);
	if (slot == NULL)
	{
		LWLockRelease(vms_shared->lock);
		ereport(FATAL, (errmsg("vms worker \"%s\" has no slot", name)));
	}
	slot->pid = MyProcPid;
	slot->started = GetCurrentTimestamp();
	slot->latch = MyLatch;
	strlcpy(slot->state, "starting", sizeof(slot->state));
	LWLockRelease(vms_shared->lock);
	before_shmem_exit(worker_detach, PointerGetDatum(slot));
	return slot;
}

void
vms_worker_set_state(VmsWorkerSlot *slot, const char *state)
{
	LWLockAcquire(vms_shared->lock, LW_EXCLUSIVE);
	strlcpy(slot->state, state, sizeof(slot->state));
	LWLockRelease(vms_shared->lock);
}

void
vms_worker_count(VmsWorkerSlot *slot, int counter, int64 n)
{
	LWLockAcquire(vms_shared->lock, LW_EXCLUSIVE);
	slot->counters[counter] += n;
	LWLockRelease(vms_shared->lock);
}

void
vms_worker_error(VmsWorkerSlot *slot, const char *fmt,...)
{
	va_list		ap;
	char		buf[256];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	LWLockAcquire(vms_shared->lock, LW_EXCLUSIVE);
	strlcpy(slot->last_error, buf, sizeof(slot->last_error));
	slot->last_error_at = GetCurrentTimestamp();
	LWLockRelease(vms_shared->lock);
}

void
vms_worker_wake(const char *name)
{
	VmsWorkerSlot *slot;

	if (vms_shared == NULL)
		return;
	LWLockAcquire(vms_shared->lock, LW_SHARED);
	slot = find_slot(name);
	if (slot && slot->latch)
		SetLatch(slot->latch);
	LWLockRelease(vms_shared->lock);
}

void
vms_worker_wake_all(void)
{
	if (vms_shared == NULL)
		return;
	LWLockAcquire(vms_shared->lock, LW_SHARED);
	for (int i = 0; i < VMS_MAX_WORKERS; i++)
		if (vms_shared->slots[i].in_use && vms_shared->slots[i].latch)
			SetLatch(vms_shared->slots[i].latch);
	LWLockRelease(vms_shared->lock);
}

/* SQL ----------------------------------------------------------------------- */

static void
require_registry(void)
{
	if (vms_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("vms workers are not available"),
				 errdetail("vms is not in shared_preload_libraries."),
				 errhint("Add vms to shared_preload_libraries and restart the server.")));
}

PG_FUNCTION_INFO_V1(vms_worker_status);
Datum
vms_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	VmsWorkerSlot *copy;

	InitMaterializedSRF(fcinfo, 0);
	if (vms_shared == NULL)
		return (Datum) 0;

	/* copy under the lock, build rows without it: workers update counters often */
	copy = palloc(sizeof(vms_shared->slots));
	LWLockAcquire(vms_shared->lock, LW_SHARED);
	memcpy(copy, vms_shared->slots, sizeof(vms_shared->slots));
	LWLockRelease(vms_shared->lock);
	for (int i = 0; i < VMS_MAX_WORKERS; i++)
	{
		VmsWorkerSlot *s = &copy[i];
		Datum		values[9];
		bool		nulls[9] = {0};
		StringInfoData js;

		if (!s->in_use)
			continue;
		initStringInfo(&js);
		appendStringInfoChar(&js, '{');
		for (int c = 0; c < VMS_COUNTERS; c++)
			if (s->counter_names[c][0])
				appendStringInfo(&js, "%s\"%s\": " INT64_FORMAT, js.len > 1 ? ", " : "",
								 s->counter_names[c], s->counters[c]);
		appendStringInfoChar(&js, '}');

		values[0] = CStringGetTextDatum(s->name);
		values[1] = CStringGetTextDatum(s->bgw_type);
		values[2] = Int32GetDatum(s->pid);
		nulls[2] = s->pid == 0;
		values[3] = TimestampTzGetDatum(s->started);
		nulls[3] = s->pid == 0;
		values[4] = CStringGetTextDatum(s->pid ? s->state : (s->wanted ? "starting" : "stopped"));
		values[5] = BoolGetDatum(s->wanted);
		values[6] = Int32GetDatum(s->restarts);
		values[7] = DirectFunctionCall1(jsonb_in, CStringGetDatum(js.data));
		values[8] = CStringGetTextDatum(s->last_error);
		nulls[8] = s->last_error[0] == '\0';
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

static VmsWorkerSlot *
slot_for_sql(text *name_t)
{
	char	   *name = text_to_cstring(name_t);
	VmsWorkerSlot *slot;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to control vms workers"),
				 errhint("Only superusers start and stop workers.")));
	require_registry();
	slot = find_slot(name);
	if (slot == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("vms worker \"%s\" does not exist", name),
				 errhint("See vms.worker_status for the workers.")));
	return slot;
}

static Datum
control(text *name_t, bool wanted, bool terminate)
{
	VmsWorkerSlot *slot = slot_for_sql(name_t);
	pid_t		pid;
	bool		was_wanted;

	LWLockAcquire(vms_shared->lock, LW_EXCLUSIVE);
	was_wanted = slot->wanted;
	slot->wanted = wanted;
	pid = slot->pid;
	/* under the lock: a worker clears its pid under it, so pid is still ours */
	if (terminate && pid != 0)
		kill(pid, SIGTERM);
	LWLockRelease(vms_shared->lock);
	if (vms_shared->launcher_latch)
		SetLatch(vms_shared->launcher_latch);
	PG_RETURN_BOOL(terminate ? pid != 0 : was_wanted != wanted);
}

PG_FUNCTION_INFO_V1(vms_worker_stop);
Datum
vms_worker_stop(PG_FUNCTION_ARGS)
{
	return control(PG_GETARG_TEXT_PP(0), false, true);
}

PG_FUNCTION_INFO_V1(vms_worker_start);
Datum
vms_worker_start(PG_FUNCTION_ARGS)
{
	return control(PG_GETARG_TEXT_PP(0), true, false);
}

PG_FUNCTION_INFO_V1(vms_worker_restart);
Datum
vms_worker_restart(PG_FUNCTION_ARGS)
{
	return control(PG_GETARG_TEXT_PP(0), true, true);
}

/*
 * Wake a worker when the calling transaction commits (a queued request is
 * visible to it only then).
 */
static char pending_wake[VMS_MAX_WORKERS][VMS_WORKER_NAME];
static int	n_pending_wake = 0;
static bool xact_callback_registered = false;

static void
wake_at_commit(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
		for (int i = 0; i < n_pending_wake; i++)
			vms_worker_wake(pending_wake[i]);
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT || event == XACT_EVENT_PREPARE ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
		n_pending_wake = 0;
}

PG_FUNCTION_INFO_V1(vms_wake_worker);
Datum
vms_wake_worker(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));

	if (vms_shared == NULL)
		PG_RETURN_VOID();
	if (!xact_callback_registered)
	{
		RegisterXactCallback(wake_at_commit, NULL);
		xact_callback_registered = true;
	}
	for (int i = 0; i < n_pending_wake; i++)
		if (strcmp(pending_wake[i], name) == 0)
			PG_RETURN_VOID();
	if (n_pending_wake < VMS_MAX_WORKERS)
		strlcpy(pending_wake[n_pending_wake++], name, VMS_WORKER_NAME);
	PG_RETURN_VOID();
}

/*
 * Called by the install and upgrade scripts: with the workers preloaded, an
 * extension in a database other than vms.database gets none of them, so
 * say so rather than let a DBA wait for them.  Silent without the workers.
 */
PG_FUNCTION_INFO_V1(vms_worker_database_check);
Datum
vms_worker_database_check(PG_FUNCTION_ARGS)
{
	char	   *here = get_database_name(MyDatabaseId);

	if (vms_shared == NULL || vms_database == NULL || here == NULL)
		PG_RETURN_BOOL(true);
	if (strcmp(here, vms_database) == 0)
		PG_RETURN_BOOL(true);
	ereport(WARNING,
			(errcode(ERRCODE_WARNING),
			 errmsg("the vms workers do not serve database \"%s\"", here),
			 errdetail("vms is in shared_preload_libraries and its workers (SIP, GA/T 1400 push, inspection) connect to database \"%s\", set by vms.database.",
					   vms_database),
			 errhint("To have them serve this database, set vms.database = '%s' and restart the server; or use vms in database \"%s\".",
					 here, vms_database)));
	PG_RETURN_BOOL(false);
}
