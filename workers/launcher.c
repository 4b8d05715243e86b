/*
 * launcher.c — the vms launcher: a static background worker that keeps the
 * wanted vms workers running.  A worker that exits or is killed with
 * pg_terminate_backend() is started again unless a DBA stopped it with
 * vms.worker_stop(); the postmaster restarts the launcher itself.  The
 * launcher connects to no database and runs no SQL, so it needs no
 * readiness check; each worker makes its own (worker_tx.c).
 *
 * Settings: vms.database here; each worker's in its own file
 * (viid/viid_settings.c, sip/sip_settings.c, inspect/inspect_settings.c,
 * notifier/notifier_settings.c).
 */
#include "postgres.h"

#include <signal.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "worker_registry.h"
#include "worker_tx.h"
#include "inspect/inspector.h"
#include "notifier/notifier_settings.h"
#include "snapshot/snapshot.h"
#include "sip/sip_settings.h"
#include "viid/viid_settings.h"
#include "viid_server/viid_server_settings.h"

PGDLLEXPORT void vms_launcher_main(Datum arg);

/* timings of the supervision loop */
#define SUPERVISE_INTERVAL_MS	1000	/* look at the workers at least this often */
#define SHORT_LIVED_MS			10000	/* a worker that dies sooner than this is backed off */
#define MAX_BACKOFF_S			60		/* longest wait before restarting it (1, 2, 4 ... 60 s) */
#define LAUNCHER_RESTART_S		5		/* the postmaster restarts a dead launcher after this */

char	   *vms_database = NULL;

typedef struct WorkerKind
{
	const char *name;
	const char *entry;
	const char *bgw_type;
	const char *counters[VMS_COUNTERS];
	bool	   *enabled;
	int		   *instances;		/* NULL: one worker named as the kind; else "kind 1".."kind N" */
} WorkerKind;

static const WorkerKind kinds[] = {
	{"viid", "vms_viid_main", "vms viid",
	 {"requests", "records_sent", "delivered", "failed", "dead", "registrations", "keepalives", "http_errors"},
	 &vms_viid_enabled},
	{"sip", "vms_sip_main", "vms sip",
	 {"messages_in", "messages_out", "registrations", "keepalives", "auth_failures", "parse_errors", "devices_online", "catalog_items",
	  "wrong_source", "replayed", "batch_dropped", "handler_errors", "challenges_limited", "keepalives_fast"},
	 &vms_sip_enabled},
	{"inspector", "vms_inspector_main", "vms inspector",
	 {"rounds_started", "tasks", "stream_ok", "stream_failed", "abnormal", "snapshots", "errors", "sample_ms"},
	 &vms_inspect_enabled, &vms_inspector_workers},
	/* the GA/T 1400 server: started only while vms.viid_server_port is set */
	{"viid-server", "vms_viid_server_main", "vms viid-server",
	 {"requests", "stored", "rejected", "registrations", "keepalives", "auth_failures", "stale_nonces",
	  "bad_requests", "too_large", "bad_content_type", "not_found", "rate_limited", "timeouts",
	  "connections", "internal_errors", "batches"},
	 &vms_viid_server_enabled},
	/* webhooks and mail from vms.notify_outbox; vms.ops_run_due() once a minute */
	{"notifier", "vms_notifier_main", "vms notifier",
	 {"sent", "delivered", "retried", "dead", "webhook", "mail", "ops_runs", "ops_ran", "denied_audited", "searches_written"},
	 &vms_notifier_enabled},
};

/* a slot belongs to a kind: its name is the kind's, or the kind's and a number */
static bool
slot_of_kind(const VmsWorkerSlot *slot, const WorkerKind *kind)
{
	size_t		n = strlen(kind->name);

	return slot->in_use && strncmp(slot->name, kind->name, n) == 0 &&
		(slot->name[n] == '\0' || (kind->instances && slot->name[n] == ' '));
}

static BackgroundWorkerHandle *handles[VMS_MAX_WORKERS];
/* a worker that dies soon after starting (e.g. vms.database does not exist
 * yet) is restarted after 1, 2, 4 ... MAX_BACKOFF_S s instead of every second */
static TimestampTz last_start[VMS_MAX_WORKERS];
static int	backoff_s[VMS_MAX_WORKERS];
static TimestampTz restart_at[VMS_MAX_WORKERS];

static void
define_slots(void)
{
	LWLockAcquire(vms_shared->lock, LW_EXCLUSIVE);
	for (int k = 0; k < (int) lengthof(kinds); k++)
	{
		int			count = kinds[k].instances ? *kinds[k].instances : 1;

		for (int n = 1; n <= count; n++)
		{
			VmsWorkerSlot *free_slot = NULL;
			bool		exists = false;
			char		name[VMS_WORKER_NAME];

			if (kinds[k].instances)
				snprintf(name, sizeof(name), "%s %d", kinds[k].name, n);
			else
				strlcpy(name, kinds[k].name, sizeof(name));
			for (int i = 0; i < VMS_MAX_WORKERS; i++)
			{
				if (vms_shared->slots[i].in_use && strcmp(vms_shared->slots[i].name, name) == 0)
					exists = true;
				else if (!vms_shared->slots[i].in_use && free_slot == NULL)
					free_slot = &vms_shared->slots[i];
			}
			if (exists || free_slot == NULL)
				continue;
			memset(free_slot, 0, sizeof(*free_slot));
			free_slot->in_use = true;
			free_slot->wanted = *kinds[k].enabled;
			strlcpy(free_slot->name, name, VMS_WORKER_NAME);
			strlcpy(free_slot->entry, kinds[k].entry, sizeof(free_slot->entry));
			strlcpy(free_slot->bgw_type, kinds[k].bgw_type, BGW_MAXLEN);
			strlcpy(free_slot->state, "starting", sizeof(free_slot->state));
			for (int c = 0; c < VMS_COUNTERS; c++)
				if (kinds[k].counters[c])
					strlcpy(free_slot->counter_names[c], kinds[k].counters[c], sizeof(free_slot->counter_names[c]));
		}
	}
	LWLockRelease(vms_shared->lock);
}

/* a vms.<kind>_enabled setting changed by reload starts or stops that worker */
static void
apply_enabled_settings(void)
{
	static bool seen[lengthof(kinds)];
	static bool initialised = false;

	for (int k = 0; k < (int) lengthof(kinds); k++)
	{
		if (initialised && seen[k] != *kinds[k].enabled)
		{
			LWLockAcquire(vms_shared->lock, LW_EXCLUSIVE);
			for (int i = 0; i < VMS_MAX_WORKERS; i++)
				if (slot_of_kind(&vms_shared->slots[i], &kinds[k]))
					vms_shared->slots[i].wanted = *kinds[k].enabled;
			LWLockRelease(vms_shared->lock);
		}
		seen[k] = *kinds[k].enabled;
	}
	initialised = true;
}

static void
start_worker(int i, VmsWorkerSlot *slot)
{
	BackgroundWorker w;

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = BGW_NEVER_RESTART;	/* the launcher restarts it */
	strlcpy(w.bgw_library_name, "vms", BGW_MAXLEN);
	strlcpy(w.bgw_function_name, slot->entry, BGW_MAXLEN);
	snprintf(w.bgw_name, BGW_MAXLEN, "%s", slot->bgw_type);
	strlcpy(w.bgw_type, slot->bgw_type, BGW_MAXLEN);
	strlcpy(w.bgw_extra, slot->name, BGW_EXTRALEN);
	w.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&w, &handles[i]))
	{
		ereport(WARNING,
				(errmsg("vms launcher could not start worker \"%s\"", slot->name),
				 errhint("Raise max_worker_processes.")));
		handles[i] = NULL;
	}
}

static void
supervise(void)
{
	for (int i = 0; i < VMS_MAX_WORKERS; i++)
	{
		VmsWorkerSlot *slot = &vms_shared->slots[i];
		bool		wanted,
					running;
		pid_t		pid;
		BgwHandleStatus status = BGWH_STOPPED;

		LWLockAcquire(vms_shared->lock, LW_SHARED);
		wanted = slot->in_use && slot->wanted;
		pid = slot->pid;
		LWLockRelease(vms_shared->lock);
		if (!slot->in_use)
			continue;

		if (handles[i])
		{
			pid_t		hpid;

			status = GetBackgroundWorkerPid(handles[i], &hpid);
		}
		/* started by an earlier launcher, or by us and not yet stopped */
		running = (pid != 0 && kill(pid, 0) == 0) ||
			(handles[i] && status != BGWH_STOPPED);

		if (wanted && !running)
		{
			TimestampTz now = GetCurrentTimestamp();

			if (handles[i] && restart_at[i] == 0)
			{
				/* it died: soon after starting means back off, else restart at once */
				bool		short_lived = now < TimestampTzPlusMilliseconds(last_start[i], SHORT_LIVED_MS);

				backoff_s[i] = short_lived ? Min(Max(backoff_s[i] * 2, 1), MAX_BACKOFF_S) : 0;
				restart_at[i] = TimestampTzPlusMilliseconds(now, backoff_s[i] * 1000L);
			}
			if (handles[i] && now < restart_at[i])
				continue;
			if (handles[i])
			{
				LWLockAcquire(vms_shared->lock, LW_EXCLUSIVE);
				slot->restarts++;
				LWLockRelease(vms_shared->lock);
			}
			last_start[i] = now;
			restart_at[i] = 0;
			start_worker(i, slot);
		}
		else if (!wanted && running && handles[i])
			TerminateBackgroundWorker(handles[i]);
	}
}

void
vms_launcher_main(Datum arg)
{
	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	/* no database: connecting makes the launcher visible in pg_stat_activity */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	vms_shared->launcher_latch = MyLatch;
	vms_shared->launcher_pid = MyProcPid;
	define_slots();
	apply_enabled_settings();

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			apply_enabled_settings();
		}
		supervise();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, SUPERVISE_INTERVAL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

void
vms_register_launcher(void)
{
	BackgroundWorker w;

	DefineCustomStringVariable("vms.database",
							   "Database the vms workers connect to.",
							   "CREATE EXTENSION vms in another database warns: no worker serves it.",
							   &vms_database, "postgres", PGC_POSTMASTER, 0, NULL, NULL, NULL);
	vms_viid_define_settings();
	vms_viid_server_define_settings();
	vms_inspect_define_settings();
	vms_snapshot_define_settings();
	vms_notifier_define_settings();
	vms_registry_request();
	vms_readiness_init();

	/*
	 * pg_upgrade starts the old and the new cluster with -b (binary upgrade):
	 * nothing may write there.  It reads the old cluster's transaction and
	 * multixact counters before, and sets the new one's from them after; a
	 * worker's row locks in between left multixacts the new cluster had never
	 * heard of ("MultiXactId 3 has not been created yet").  No workers then.
	 */
	if (IsBinaryUpgrade)
		return;

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = LAUNCHER_RESTART_S;
	strlcpy(w.bgw_library_name, "vms", BGW_MAXLEN);
	strlcpy(w.bgw_function_name, "vms_launcher_main", BGW_MAXLEN);
	strlcpy(w.bgw_name, "vms launcher", BGW_MAXLEN);
	strlcpy(w.bgw_type, "vms launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&w);
}
