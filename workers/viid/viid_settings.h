/*
 * viid_settings.h — the GA/T 1400 push worker's settings (GUCs), for the
 * launcher as well as the worker.
 */
#ifndef VMS_VIID_SETTINGS_H
#define VMS_VIID_SETTINGS_H

extern bool vms_viid_enabled;

extern void vms_viid_define_settings(void);

#endif
