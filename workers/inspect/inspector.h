/*
 * inspector.h — settings of the inspector workers (inspect_settings.c), for
 * the launcher as well as the workers.
 */
#ifndef VMS_INSPECTOR_H
#define VMS_INSPECTOR_H

extern bool vms_inspect_enabled;
extern int	vms_inspector_workers;
extern char *vms_inspect_media_ip;
extern int	vms_inspect_media_port_min;
extern int	vms_inspect_media_port_max;
extern int	vms_inspect_media_transport;

enum
{
	MEDIA_UDP, MEDIA_TCP
};

extern void vms_inspect_define_settings(void);

/* one frame of a GB/T 28181 channel as a JPEG (vms.snapshot), NULL and *error when none */
extern unsigned char *vms_inspect_gb28181_jpeg(const char *channel, int timeout_ms, size_t *len, char **error);

#endif
