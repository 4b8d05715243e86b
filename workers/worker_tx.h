/*
 * worker_tx.h — what every vms worker does around the database: one check
 * that the extension is ready for it, short transactions that leave the
 * caller's memory context current (the loop's, reset each round), and the
 * recovery from an error that ends one round but not the worker.
 */
#ifndef VMS_WORKER_TX_H
#define VMS_WORKER_TX_H

#include "postgres.h"

#include "worker_registry.h"

/* timings shared by the workers, in milliseconds */
#define VMS_READY_RECHECK_MS	1000	/* a worker looks at the extension again after this */
#define VMS_IDLE_WAIT_MS		1000	/* an idle round loop sleeps this long, or until woken */
#define VMS_ERROR_PAUSE_MS		1000	/* after a round that failed */

/* the extension as a worker finds it */
typedef enum VmsReadiness
{
	VMS_READY,					/* installed, at the library's version, not being changed */
	VMS_NOT_INSTALLED,			/* no CREATE EXTENSION vms in vms.database */
	VMS_BEING_CHANGED,			/* ALTER or DROP EXTENSION vms holds the extension's lock */
	VMS_SCHEMA_OLDER,			/* installed version older than the library: ALTER EXTENSION vms UPDATE */
	VMS_SCHEMA_NEWER			/* installed version newer than the library: a restart loads the new one */
} VmsReadiness;

/* the worker's long-lived memory (a child of TopMemoryContext), made at start */
extern MemoryContext vms_worker_cxt;

/* the context current at vms_worker_begin_tx(): results that outlive the transaction go here */
extern MemoryContext vms_tx_caller_cxt;

extern VmsWorkerSlot *vms_worker_init(const char *name);
extern VmsReadiness vms_extension_readiness(char *state, size_t state_len);
extern bool vms_worker_ready(VmsWorkerSlot *slot);
extern void vms_readiness_init(void);

extern void vms_worker_begin_tx(const char *activity);
extern void vms_worker_end_tx(void);
extern char *vms_worker_take_error(MemoryContext cxt);
extern char *vms_worker_recover(VmsWorkerSlot *slot, MemoryContext cxt);

extern void vms_worker_run_rounds(VmsWorkerSlot *slot, MemoryContext loop_cxt, const char *who,
								  bool (*round) (void), void (*after_error) (void)) pg_attribute_noreturn();

#endif
