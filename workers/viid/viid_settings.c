/*
 * viid_settings.c — the GA/T 1400 push worker's settings (GUCs).  Defined
 * when vms is preloaded (the launcher defines them); the worker re-reads
 * them on reload.  Upstream view libraries themselves are rows of
 * vms.viid_upstream, not settings.
 */
#include "postgres.h"

#include "utils/guc.h"

#include "viid_settings.h"

bool		vms_viid_enabled = true;

void
vms_viid_define_settings(void)
{
	DefineCustomBoolVariable("vms.viid_enabled",
							 "Run the GA/T 1400 push worker.",
							 "Turning it off and reloading stops the worker; on starts it.",
							 &vms_viid_enabled, true, PGC_SIGHUP, 0, NULL, NULL, NULL);
}
