/*
 * worker_tx.h — what every vms worker does around the database: short
 * transactions that leave the caller's memory context current (the loop's,
 * reset each round), and the recovery from an error that ends one round
 * but not the worker.
 */
#ifndef VMS_WORKER_TX_H
#define VMS_WORKER_TX_H

#include "postgres.h"

#include "worker_registry.h"

/* the context current at vms_worker_begin_tx(): results that outlive the transaction go here */
extern MemoryContext vms_tx_caller_cxt;

extern void vms_worker_begin_tx(const char *activity);
extern void vms_worker_end_tx(void);
extern char *vms_worker_take_error(MemoryContext cxt);
extern char *vms_worker_recover(VmsWorkerSlot *slot, MemoryContext cxt);

extern void vms_worker_run_rounds(VmsWorkerSlot *slot, MemoryContext loop_cxt, const char *who,
								  bool (*round) (void), void (*after_error) (void)) pg_attribute_noreturn();

#endif
