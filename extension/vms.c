/*
 * vms.c — module entry point: settings.  The SQL API needs nothing else at
 * load time; background workers are registered here when vms is in
 * shared_preload_libraries.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "vms.h"
#include "../workers/worker_registry.h"
#include "../workers/sip/sip_settings.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomStringVariable("vms.secret_key_file",
							   "File holding the 32-byte key that encrypts stored secrets.",
							   "Readable only by the server; superusers set it.",
							   &vms_secret_key_file,
							   NULL,
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);
	vms_sip_define_settings();
	if (process_shared_preload_libraries_in_progress)
		vms_register_launcher();
}
