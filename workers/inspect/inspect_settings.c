/*
 * inspect_settings.c — the inspector workers' settings (GUCs).  Defined
 * when vms is preloaded (the launcher defines them: vms.inspector_workers
 * sizes the worker slots at server start); the workers re-read the others
 * on reload.
 */
#include "postgres.h"

#include "utils/guc.h"

#include "inspector.h"

bool		vms_inspect_enabled = true;
int			vms_inspector_workers = 2;
char	   *vms_inspect_media_ip = NULL;
int			vms_inspect_media_port_min = 30000;
int			vms_inspect_media_port_max = 30999;
int			vms_inspect_media_transport = MEDIA_UDP;

static const struct config_enum_entry media_transports[] = {
	{"udp", MEDIA_UDP, false},
	{"tcp", MEDIA_TCP, false},
	{NULL, 0, false}
};

void
vms_inspect_define_settings(void)
{
	DefineCustomBoolVariable("vms.inspect_enabled",
							 "Run the inspector workers.",
							 "Turning it off and reloading stops them; on starts them.",
							 &vms_inspect_enabled, true, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.inspector_workers",
							"Number of inspector workers (each samples one stream at a time).",
							NULL, &vms_inspector_workers, 2, 0, 8, PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("vms.inspect_media_ip",
							   "Address GB/T 28181 devices send inspection media (RTP/PS) to.",
							   "The inspector binds it and names it in its INVITEs.",
							   &vms_inspect_media_ip, "127.0.0.1", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.inspect_media_port_min", "First UDP port for inspection media.", NULL,
							&vms_inspect_media_port_min, 30000, 1024, 65535, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.inspect_media_port_max", "Last UDP port for inspection media.", NULL,
							&vms_inspect_media_port_max, 30999, 1024, 65535, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("vms.inspect_media_transport",
							 "How GB/T 28181 devices send inspection media: udp, or tcp (RFC 4571, the device connects).",
							 NULL, &vms_inspect_media_transport, MEDIA_UDP, media_transports, PGC_SIGHUP, 0, NULL, NULL, NULL);
}
