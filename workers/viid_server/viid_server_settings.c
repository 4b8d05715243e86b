/*
 * viid_server_settings.c — the GA/T 1400 server worker's settings (GUCs).
 * Defined when vms is preloaded (the launcher defines them).  The server is
 * off while vms.viid_server_port is 0 (the default): the launcher then does
 * not start the worker; a port and a reload start it.  Clients themselves
 * are rows of vms.viid_client, not settings.
 */
#include "postgres.h"

#include "utils/guc.h"

#include "viid_server_settings.h"

bool		vms_viid_server_enabled = false;
int			vms_viid_server_port = 0;
char	   *vms_viid_server_listen = NULL;
char	   *vms_viid_server_realm = NULL;
char	   *vms_viid_server_id = NULL;
int			vms_viid_server_max_connections = 1000;
int			vms_viid_server_max_per_ip = 0;
int			vms_viid_server_max_body_kb = 16384;
int			vms_viid_server_rate = 100;
int			vms_viid_server_timeout_s = 30;
int			vms_viid_server_request_timeout_s = 120;
char	   *vms_viid_server_tls_cert = NULL;
char	   *vms_viid_server_tls_key = NULL;

/* the launcher starts the worker when a port is set, stops it at 0 */
static void
assign_port(int newval, void *extra)
{
	vms_viid_server_enabled = newval > 0;
}

void
vms_viid_server_define_settings(void)
{
	DefineCustomIntVariable("vms.viid_server_port",
							"TCP port of the GA/T 1400 server (view library ingest); 0 turns the server off.",
							"Setting a port and reloading starts the viid-server worker; 0 stops it.",
							&vms_viid_server_port, 0, 0, 65535, PGC_SIGHUP, 0, NULL, assign_port, NULL);
	DefineCustomStringVariable("vms.viid_server_listen",
							   "Address the GA/T 1400 server listens on (* for every address).",
							   NULL, &vms_viid_server_listen, "*", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("vms.viid_server_realm",
							   "HTTP Digest realm of the GA/T 1400 server.",
							   "Client passwords are stored as HA1 for this realm (vms.viid_client_add): changing it needs the passwords again.",
							   &vms_viid_server_realm, "vms", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("vms.viid_server_id",
							   "The server's own 20-digit view library id, shown in SystemTimeObject.",
							   NULL, &vms_viid_server_id, "", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.viid_server_max_connections",
							"Connections the GA/T 1400 server accepts at once; more are refused.",
							NULL, &vms_viid_server_max_connections, 1000, 1, 100000, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.viid_server_max_per_ip",
							"Connections one address may hold at once (0: no limit but max_connections).",
							NULL, &vms_viid_server_max_per_ip, 0, 0, 100000, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.viid_server_max_body",
							"Largest request body the GA/T 1400 server accepts; larger ones get 413.",
							"At most 256MB: every body held at once, all connections together, is at most that much too (more get 503).",
							&vms_viid_server_max_body_kb, 16384, 1, 256 * 1024, PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.viid_server_rate",
							"Requests per second one client may make (a burst of as many); more get 429. 0: no limit.",
							NULL, &vms_viid_server_rate, 100, 0, 1000000, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.viid_server_timeout",
							"A connection idle this long is closed (slow clients).",
							NULL, &vms_viid_server_timeout_s, 30, 1, 3600, PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.viid_server_request_timeout",
							"A request whose headers and body are not all in this long after it began is cut off (slow-loris clients).",
							"It began when the connection opened or its previous request was answered; a client trickling bytes resets vms.viid_server_timeout but not this.",
							&vms_viid_server_request_timeout_s, 120, 1, 3600, PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomStringVariable("vms.viid_server_tls_cert",
							   "PEM certificate file: when set with vms.viid_server_tls_key the server speaks HTTPS only.",
							   NULL, &vms_viid_server_tls_cert, "", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("vms.viid_server_tls_key",
							   "PEM private key file of vms.viid_server_tls_cert.",
							   NULL, &vms_viid_server_tls_key, "", PGC_SIGHUP, 0, NULL, NULL, NULL);
}
