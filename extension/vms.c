/*
 * vms.c — module entry point.  The SQL API needs nothing at load time;
 * background workers (registered here when vms is in
 * shared_preload_libraries) come with the worker issues.
 */
#include "postgres.h"

#include "fmgr.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
}
