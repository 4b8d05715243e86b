/*
 * worker_tx.c — short transactions and error recovery for the vms workers
 * (see worker_tx.h).
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "worker_tx.h"

MemoryContext vms_tx_caller_cxt = NULL;

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
 * the next round at once when this one did work, else after a second or a
 * wake-up.  Never returns; SIGTERM ends the process through die().
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
			pg_usleep(1000000L);
		}
		PG_END_TRY();
		if (worked)
			continue;			/* more may be waiting */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
