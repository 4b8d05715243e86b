/*
 * sip_worker.c — the "vms sip" worker (GB/T 28181): its start and its event
 * loop, which wires the parts of workers/sip together (see sip_core.h for
 * the layout).  One process, one event loop: UDP and TCP sockets behind an
 * epoll set that sits in the worker's WaitEventSet beside its latch.
 * Device sessions live in memory and are written to the database in
 * batches; nothing waits on the database while a packet waits on the
 * worker, and no transaction spans a network wait.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "sip_core.h"
#include "sip_db.h"
#include "sip_devices.h"
#include "sip_digest.h"
#include "sip_net.h"
#include "sip_requests.h"
#include "sip_server.h"
#include "sip_upstream.h"
#include "../worker_tx.h"

PGDLLEXPORT void vms_sip_main(Datum arg);

/* timings of the main loop, in milliseconds */
#define IDENTITY_WAIT_MS 2000	/* waiting for vms.sip_id or the extension */
#define LOOP_MAX_WAIT_MS 100	/* the longest the loop sleeps between looks at the network */
#define TICK_MS 1000			/* keepalive deadlines, request timers, idle connections */
#define CLAIM_MS 2000			/* queued requests from SQL are claimed at least this often */
#define PUBLISH_MS 100			/* counters copied to vms.worker_status */
#define ERROR_PAUSE_MS 1000		/* after a failed round, the next flush waits this long */
#define RETX_MIN_WAIT_MS 10		/* the shortest wait for a retransmission due (a due time past never spins) */

static VmsWorkerSlot *slot;
static MemoryContext loop_cxt;

/*
 * A commit that woke the worker while it was reading the network (a
 * password change, a deleted device): the committing backend sets the
 * latch before its client hears of the commit, so a message sent after
 * that commit finds the latch set once it has been received.  Checked
 * after each receive, before the messages are handled: the change applies
 * to them.  The wake is remembered for the main loop (request claims).
 */
static bool woken_while_reading = false;
static bool flushing = false;	/* in sip_db_flush(): see the main loop */
static bool round_ok = true;	/* the last round of the main loop completed (no error) */

static void
changes_before_messages(void)
{
	pg_memory_barrier();
	if (!MyLatch->is_set)
		return;
	ResetLatch(MyLatch);
	woken_while_reading = true;
	sip_devices_load_changed();
}

static const SipNetHooks net_hooks = {
	.before_messages = changes_before_messages,
	.message = sip_handle,
};

/* vms.worker_status shows each upstream's state beside "running" */
static void
describe_upstreams(void)
{
	static char shown[VMS_WORKER_STATE] = "running";
	char		desc[VMS_WORKER_STATE];
	char		state[VMS_WORKER_STATE];

	sip_upstream_describe(desc, sizeof(desc));
	snprintf(state, sizeof(state), desc[0] ? "running; %s" : "running", desc);
	if (strcmp(state, shown) != 0)
	{
		vms_worker_set_state(slot, state);
		strlcpy(shown, state, sizeof(shown));
	}
}

static void
shutdown_worker(int code, Datum arg)
{
	/* what is still queued is written if the database is still usable */
	sip_net_close();
}

static void
reload_settings(void)
{
	ProcessConfigFile(PGC_SIGHUP);
	if (sip_net_settings_changed())
		sip_net_open();
}

void
vms_sip_main(Datum arg)
{
	WaitEventSet *wes;
	TimestampTz next_tick = 0,
				next_flush = 0,
				next_claim = 0,
				next_publish = 0;

	slot = vms_worker_init("vms sip");
	/*
	 * The worker's statements are small batches (a flush, an alarm, a
	 * lookup): compiling them with LLVM costs more than running them, and
	 * the loop answers no packet meanwhile (an alarm's triggers took seconds
	 * of JIT on a loaded machine).  Nothing in this process is JIT-compiled.
	 */
	SetConfigOption("jit", "off", PGC_SUSET, PGC_S_OVERRIDE);

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
	sip_devices_init();
	sip_core_init();
	sip_net_init(&net_hooks);
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
		sip_clock_update();
		if (vms_sip_id == NULL || vms_sip_id[0] == '\0')
			vms_worker_set_state(slot, "waiting for vms.sip_id");
		else if (vms_worker_ready(slot))	/* else it shows what it waits for */
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, IDENTITY_WAIT_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}

	sip_clock_update();
	MemoryContextSwitchTo(loop_cxt);
	/* changes queued before this start are in the full load: the queue is emptied first */
	sip_devices_load_changed();
	sip_devices_load_all();
	sip_requests_recover();
	sip_requests_load_subscriptions();
	sip_upstream_load();
	MemoryContextSwitchTo(vms_worker_cxt);
	sip_net_open();

	wes = CreateWaitEventSet(vms_worker_cxt, 3);
	AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wes, WL_SOCKET_READABLE, sip_net_wait_fd(), NULL, NULL);
	vms_worker_set_state(slot, "running");

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
		sip_clock_update();
		timeout = Max(0, Min((long) LOOP_MAX_WAIT_MS, (long) ((next_flush - sip_now) / 1000)));
		if (round_ok)
		{
			/*
			 * A retransmission due sooner (T1 = 500 ms doubling): the wait
			 * ends then, not a whole wait later.  Only after a round that
			 * completed (after a failed one the loop waits as usual, up to
			 * LOOP_MAX_WAIT_MS; the retransmissions go out at the start of
			 * the next round, before its SQL steps), and never less
			 * than RETX_MIN_WAIT_MS: a due time that stays in the past never
			 * makes the loop spin.
			 */
			TimestampTz due = sip_upstream_next_due();

			if (due != DT_NOEND)
				timeout = Min(timeout, Max((long) RETX_MIN_WAIT_MS, (long) ((due - sip_now + 999) / 1000)));
		}
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

			sip_clock_update();
			/*
			 * A commit woke the worker: a deleted device or a changed
			 * password is applied before any datagram that arrived after
			 * that commit is read.
			 */
			if (woken)
				sip_devices_load_changed();
			sip_net_drain();
			/* retransmissions due: network only, before any SQL step (one that fails delays none) */
			sip_clock_update();
			sip_upstream_retransmit();
			if (woken_while_reading)
			{
				woken_while_reading = false;
				woken = true;
			}
			sip_clock_update();
			if (sip_now >= next_tick)
			{
				sip_server_tick();
				sip_devices_check_deadlines();
				sip_requests_tick();
				sip_net_expire();
				next_tick = TimestampTzPlusMilliseconds(sip_now, TICK_MS);
			}
			if (woken || sip_now >= next_claim)
			{
				if (!woken)
					sip_devices_load_changed();
				sip_requests_claim();
				sip_upstream_load();
				next_claim = TimestampTzPlusMilliseconds(sip_now, CLAIM_MS);
			}
			sip_upstream_tick();
			describe_upstreams();
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
				flushing = sip_db_pending();
				sip_db_flush();
				sip_upstream_flush();
				if (flushing)
					SetLatch(MyLatch);
				flushing = false;
				next_flush = TimestampTzPlusMilliseconds(sip_now, vms_sip_flush_interval);
			}
			if (sip_now >= next_publish)
			{
				sip_counters_publish(slot);
				next_publish = TimestampTzPlusMilliseconds(sip_now, PUBLISH_MS);
			}
			round_ok = true;
			MemoryContextSwitchTo(old);
		}
		PG_CATCH();
		{
			char	   *message = vms_worker_recover(slot, loop_cxt);

			if (flushing)
				SetLatch(MyLatch);
			flushing = false;
			sip_net_abort_batch();
			/*
			 * Retransmissions due are network only: a round that failed
			 * before reaching them (a SQL step run when a commit woke the
			 * worker) delays none of them.
			 */
			sip_clock_update();
			sip_upstream_retransmit();
			round_ok = false;
			sip_log_limited(LOG_OTHER, "%s", message);
			next_flush = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ERROR_PAUSE_MS);
		}
		PG_END_TRY();
	}
}
