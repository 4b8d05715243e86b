/*
 * notifier_settings.h — the notifier worker's settings (GUCs), for the
 * launcher as well as the worker.
 */
#ifndef VMS_NOTIFIER_SETTINGS_H
#define VMS_NOTIFIER_SETTINGS_H

#include "postgres.h"

/* bounds of the settings, shared with the worker's limits */
#define NOTIFIER_MAX_CONCURRENCY 64	/* requests in flight at once */
#define NOTIFIER_MAX_BATCH 1000		/* notifications claimed at once */

extern bool vms_notifier_enabled;
extern bool vms_notifier_run_schedule;
extern int	vms_notifier_concurrency;
extern int	vms_notifier_batch;
extern int	vms_notifier_timeout_ms;
extern int	vms_notifier_poll_ms;
extern char *vms_notifier_mail_from;

extern void vms_notifier_define_settings(void);

#endif
