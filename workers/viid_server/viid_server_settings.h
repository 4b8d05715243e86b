/*
 * viid_server_settings.h — the GA/T 1400 server worker's settings (GUCs),
 * for the launcher as well as the worker.
 */
#ifndef VMS_VIID_SERVER_SETTINGS_H
#define VMS_VIID_SERVER_SETTINGS_H

extern bool vms_viid_server_enabled;	/* vms.viid_server_port > 0 */
extern int	vms_viid_server_port;
extern char *vms_viid_server_listen;
extern char *vms_viid_server_realm;
extern char *vms_viid_server_id;
extern int	vms_viid_server_max_connections;
extern int	vms_viid_server_max_per_ip;
extern int	vms_viid_server_max_body_kb;
extern int	vms_viid_server_rate;
extern int	vms_viid_server_timeout_s;
extern int	vms_viid_server_request_timeout_s;
extern char *vms_viid_server_tls_cert;
extern char *vms_viid_server_tls_key;

extern void vms_viid_server_define_settings(void);

#endif
