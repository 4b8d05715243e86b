/*
 * inspector.h — settings of the inspector workers, for the module entry
 * point and the launcher.
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

#endif
