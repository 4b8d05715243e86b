/*
 * snapshot.h — vms.snapshot's worker (issue 17): one JPEG of a channel, the
 * device's own GB/T 28181-2022 snapshot uploaded over HTTP, else a frame
 * sampled over INVITE.  See snapshot.c.
 */
#ifndef VMS_SNAPSHOT_H
#define VMS_SNAPSHOT_H

extern int	vms_snapshot_timeout;
extern char *vms_snapshot_http_ip;
extern int	vms_snapshot_http_port_min;
extern int	vms_snapshot_http_port_max;
extern int	vms_snapshot_max_concurrent;
extern int	vms_snapshot_max_per_role;
extern int	vms_snapshot_min_interval;
extern int	vms_snapshot_device_wait;

extern void vms_snapshot_define_settings(void);

#endif
