/*
 * notifier_settings.c — the notifier worker's settings (GUCs).  Defined
 * when vms is preloaded (the launcher defines them); the worker re-reads
 * them on reload.  Routes themselves are rows of vms.notify_route.
 */
#include "postgres.h"

#include "utils/guc.h"

#include "notifier_settings.h"

bool		vms_notifier_enabled = true;
bool		vms_notifier_run_schedule = true;
int			vms_notifier_concurrency = 16;
int			vms_notifier_batch = 100;
int			vms_notifier_timeout_ms = 10000;
int			vms_notifier_poll_ms = 1000;
char	   *vms_notifier_mail_from = NULL;

void
vms_notifier_define_settings(void)
{
	DefineCustomBoolVariable("vms.notifier_enabled",
							 "Run the notifier worker (webhooks and mail from vms.notify_outbox).",
							 "Turning it off and reloading stops the worker; on starts it.",
							 &vms_notifier_enabled, true, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("vms.notifier_run_schedule",
							 "Have the notifier worker call vms.ops_run_due() once a minute.",
							 "Escalation, daily snapshots, month close, retention and scheduled governance runs "
							 "(vms.ops_schedule). Off: call vms.ops_run_due() from cron or pg_cron instead.",
							 &vms_notifier_run_schedule, true, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.notifier_concurrency",
							"Notifications the notifier sends at once.",
							NULL, &vms_notifier_concurrency, 16, 1, NOTIFIER_MAX_CONCURRENCY,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.notifier_batch",
							"Notifications the notifier claims in one transaction.",
							NULL, &vms_notifier_batch, 100, 1, NOTIFIER_MAX_BATCH,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.notifier_timeout_ms",
							"How long the notifier waits for one webhook or mail server.",
							"A request that takes longer fails and is retried with the route's backoff.",
							&vms_notifier_timeout_ms, 10000, 100, 120000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.notifier_poll_interval",
							"Longest idle wait of the notifier between looks at vms.notify_outbox.",
							"Queuing a notification wakes the worker when its transaction commits; the poll "
							"picks up retries and the ends of quiet hours, and is the fallback.",
							&vms_notifier_poll_ms, 1000, 100, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomStringVariable("vms.notifier_mail_from",
							   "Sender address of notification mail (MAIL FROM and From:).",
							   NULL, &vms_notifier_mail_from, "vms@localhost",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
}
