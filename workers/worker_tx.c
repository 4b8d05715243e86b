/*
 * worker_tx.c — short transactions and error recovery for the vms workers
 * (see worker_tx.h).
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "pgstat.h"
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
