/*
 * worker_registry.h — shared memory slots for the vms background workers:
 * who runs, since when, whether a DBA wants it running, its counters and
 * its last error.  The launcher keeps wanted workers alive; vms.worker_status
 * reads the slots.
 */
#ifndef VMS_WORKER_REGISTRY_H
#define VMS_WORKER_REGISTRY_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "storage/lwlock.h"

#define VMS_MAX_WORKERS 16
#define VMS_WORKER_NAME 32
#define VMS_COUNTERS 16
#define VMS_WORKER_STATE 128	/* room for "waiting for ALTER EXTENSION vms UPDATE (installed ..., library ...)" */

typedef struct VmsWorkerSlot
{
	bool		in_use;
	char		name[VMS_WORKER_NAME];	/* "viid", "sip", "inspector 1" ... */
	char		entry[64];		/* C entry point in vms.so */
	char		bgw_type[BGW_MAXLEN];
	bool		wanted;			/* false after vms.worker_stop() */
	pid_t		pid;			/* 0 when not running */
	TimestampTz started;
	int			restarts;
	char		state[VMS_WORKER_STATE];
	char		counter_names[VMS_COUNTERS][24];
	int64		counters[VMS_COUNTERS];
	char		last_error[256];
	TimestampTz last_error_at;
	Latch	   *latch;			/* the worker's, to wake it */
} VmsWorkerSlot;

typedef struct VmsShared
{
	LWLock	   *lock;
	Latch	   *launcher_latch;
	pid_t		launcher_pid;
	pg_atomic_uint32 extension_changes; /* bumped by ALTER/DROP EXTENSION vms: workers look again */
	VmsWorkerSlot slots[VMS_MAX_WORKERS];
} VmsShared;

extern VmsShared *vms_shared;

extern void vms_registry_request(void);		/* from _PG_init */
extern VmsWorkerSlot *vms_worker_attach(const char *name);	/* from a worker */
extern void vms_worker_set_state(VmsWorkerSlot *slot, const char *state);
extern void vms_worker_count(VmsWorkerSlot *slot, int counter, int64 n);
extern void vms_worker_error(VmsWorkerSlot *slot, const char *fmt,...) pg_attribute_printf(2, 3);
extern void vms_worker_wake(const char *name);
extern void vms_worker_wake_all(void);
extern void vms_register_launcher(void);

extern char *vms_database;		/* vms.database: where the workers connect */

#endif
