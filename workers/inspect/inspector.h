/*
 * inspector.h — settings of the inspector workers, for the module entry
 * point and the launcher.
 */
#ifndef VMS_INSPECTOR_H
#define VMS_INSPECTOR_H

extern bool vms_inspect_enabled;
extern int	vms_inspector_workers;

#endif
