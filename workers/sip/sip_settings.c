/*
 * sip_settings.c — the SIP worker's settings (GUCs).  Defined in every
 * backend that loads vms, so SHOW and ALTER SYSTEM know them; the worker
 * re-reads them on reload (pg_ctl reload / pg_reload_conf()).
 */
#include "postgres.h"

#include "utils/guc.h"

#include "sip_msg.h"
/* libosip2 names a header WARNING; PostgreSQL's log level must win */
#undef WARNING
#define WARNING 19
#include "sip_settings.h"

bool		vms_sip_enabled = true;
char	   *vms_sip_listen = NULL;
int			vms_sip_port = 5060;
char	   *vms_sip_id = NULL;
char	   *vms_sip_realm = NULL;
char	   *vms_sip_password = NULL;
int			vms_sip_keepalive_interval = 60;
int			vms_sip_keepalive_count = 3;
bool		vms_sip_keepalive_revives = true;
int			vms_sip_min_expires = 60;
int			vms_sip_max_expires = 86400;
int			vms_sip_unknown_devices = UNKNOWN_REJECT;
int			vms_sip_ban_failures = 3;
int			vms_sip_ban_minutes = 10;
int			vms_sip_max_message = 65535;
int			vms_sip_max_connections = 1024;
int			vms_sip_restart_grace = 180;
int			vms_sip_catalog_timeout = 120;
int			vms_sip_page_timeout = 5;
int			vms_sip_flush_interval = 1000;
int			vms_sip_max_batch = 262144;
int			vms_sip_max_media_sessions = 256;

static const struct config_enum_entry unknown_options[] = {
	{"reject", UNKNOWN_REJECT, false},
	{"accept", UNKNOWN_ACCEPT, false},
	{NULL, 0, false}
};

static bool
check_sip_id(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0' || sip_is_gbcode(*newval))
		return true;
	GUC_check_errdetail("vms.sip_id must be the platform's 20-digit GB/T 28181 code.");
	return false;
}

/* the digest realm: vms.sip_realm, else the first 10 digits of vms.sip_id */
const char *
sip_realm(void)
{
	static char realm[64];

	if (vms_sip_realm && vms_sip_realm[0])
		return vms_sip_realm;
	snprintf(realm, sizeof(realm), "%.10s", vms_sip_id ? vms_sip_id : "");
	return realm;
}

void
vms_sip_define_settings(void)
{
	DefineCustomBoolVariable("vms.sip_enabled", "Run the GB/T 28181 SIP worker.",
							 "Turning it off and reloading stops the worker; on starts it.",
							 &vms_sip_enabled, true, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("vms.sip_listen", "Address the SIP worker listens on (UDP and TCP); * for all.",
							   NULL, &vms_sip_listen, "*", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.sip_port", "SIP port (UDP and TCP).", NULL,
							&vms_sip_port, 5060, 1, 65535, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("vms.sip_id", "The platform's 20-digit GB/T 28181 code (SIP server ID).",
							   "Empty: the SIP worker waits.  Its first 10 digits are the default realm.",
							   &vms_sip_id, "", PGC_SUSET, 0, check_sip_id, NULL, NULL);
	DefineCustomStringVariable("vms.sip_realm", "SIP digest realm; empty means the first 10 digits of vms.sip_id.",
							   NULL, &vms_sip_realm, "", PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("vms.sip_password", "Default password of devices without their own credential.",
							   "Empty: such devices are refused.  Per-device passwords are set with vms.device_set_password().",
							   &vms_sip_password, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.sip_keepalive_interval", "Default seconds between device keepalives.", NULL,
							&vms_sip_keepalive_interval, 60, 5, 3600, PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.sip_keepalive_count", "Missed keepalives before a device is offline.", NULL,
							&vms_sip_keepalive_count, 3, 1, 100, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("vms.sip_keepalive_revives", "A keepalive brings an offline (still registered) device back online.",
							 "Off: the device is answered 403 and must register again.",
							 &vms_sip_keepalive_revives, true, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.sip_min_expires", "Shortest registration accepted (423 below it).", NULL,
							&vms_sip_min_expires, 60, 1, 86400, PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.sip_max_expires", "Longest registration granted; longer requests are shortened.", NULL,
							&vms_sip_max_expires, 86400, 60, 7 * 86400, PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomEnumVariable("vms.sip_unknown_devices", "What to do with a device not in the ledger: reject, or accept it for governance.",
							 "accept needs vms.sip_password; the device enters vms.device named by its code.",
							 &vms_sip_unknown_devices, UNKNOWN_REJECT, unknown_options, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.sip_ban_failures", "Failed authentications after which a device ID is banned.", NULL,
							&vms_sip_ban_failures, 3, 1, 1000, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.sip_ban_minutes", "How long a banned device ID is refused.", NULL,
							&vms_sip_ban_minutes, 10, 0, 10080, PGC_SIGHUP, GUC_UNIT_MIN, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.sip_max_message", "Largest SIP message accepted, headers and body.", NULL,
							&vms_sip_max_message, 65535, 1024, 1048576, PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.sip_max_connections", "Most TCP connections the SIP worker keeps open.", NULL,
							&vms_sip_max_connections, 1024, 1, 65536, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.sip_restart_grace", "After a worker start, devices online before it are not marked offline for this long.",
							"State comes from the last keepalive plus this grace, so live devices survive a restart.",
							&vms_sip_restart_grace, 180, 0, 3600, PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.sip_catalog_timeout", "Seconds to wait for the first answer to a device query.", NULL,
							&vms_sip_catalog_timeout, 120, 1, 3600, PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.sip_page_timeout", "Seconds of silence between catalog pages before the answer is taken as complete (partial).", NULL,
							&vms_sip_page_timeout, 5, 1, 600, PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.sip_flush_interval", "How often the SIP worker writes session changes, in one transaction.", NULL,
							&vms_sip_flush_interval, 1000, 50, 60000, PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.sip_max_batch", "Most device events the SIP worker keeps waiting for a write, and most sessions written at once.",
							"Past it (the database unreachable for long), new events are dropped and counted (batch_dropped); sessions wait for the next write.",
							&vms_sip_max_batch, 262144, 16, 1048576, PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.sip_max_media_sessions", "Most media sessions (calls from INVITEs: live view, playback, download, inspection, snapshot) the SIP worker keeps open at once.",
							"A device that answers an INVITE 200 when this many are open gets ACK and BYE at once; the request fails with that reason.",
							&vms_sip_max_media_sessions, 256, 1, 256, PGC_SIGHUP, 0, NULL, NULL, NULL);
}
