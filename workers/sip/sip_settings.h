/*
 * sip_settings.h — the SIP worker's settings (GUCs), for the module entry
 * point and the launcher as well as the worker.
 */
#ifndef VMS_SIP_SETTINGS_H
#define VMS_SIP_SETTINGS_H

extern bool vms_sip_enabled;
extern char *vms_sip_listen;
extern int	vms_sip_port;
extern char *vms_sip_id;
extern char *vms_sip_realm;
extern char *vms_sip_password;
extern int	vms_sip_keepalive_interval;
extern int	vms_sip_keepalive_count;
extern bool vms_sip_keepalive_revives;
extern int	vms_sip_min_expires;
extern int	vms_sip_max_expires;
extern int	vms_sip_unknown_devices;
extern int	vms_sip_ban_failures;
extern int	vms_sip_ban_minutes;
extern int	vms_sip_max_message;
extern int	vms_sip_max_connections;
extern int	vms_sip_restart_grace;
extern int	vms_sip_catalog_timeout;
extern int	vms_sip_page_timeout;
extern int	vms_sip_flush_interval;
extern int	vms_sip_max_batch;
extern int	vms_sip_max_media_sessions;

enum
{
	UNKNOWN_REJECT, UNKNOWN_ACCEPT
};

extern void vms_sip_define_settings(void);
extern const char *sip_realm(void);

#endif
