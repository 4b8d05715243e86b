/*
 * sip_core.c — the SIP worker's core: the clock of the current round, the
 * counters, rate-limited logging and the scratch buffer for outgoing
 * messages.  Everything else in workers/sip builds on these; this file
 * depends on nothing of the worker.
 */
#include "postgres.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "sip_core.h"
#include "../worker_tx.h"

static TimestampTz now;
static int64 counters[VMS_COUNTERS];
static int64 published[VMS_COUNTERS];
static SBuf scratch;

/* ---------------------------------------------------------------- time */

void
sip_clock_update(void)
{
	now = GetCurrentTimestamp();
}

TimestampTz
sip_clock_now(void)
{
	return now;
}

double
sip_epoch(TimestampTz t)
{
	return (double) t / 1000000.0 + (double) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
}

TimestampTz
sip_from_epoch(double e)
{
	return (TimestampTz) ((e - (double) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY) * 1000000.0);
}

/* ---------------------------------------------------------------- counters */

void
sip_count(int counter, int64 delta)
{
	Assert(counter >= 0 && counter < C_SIP_COUNTERS);
	counters[counter] += delta;
}

void
sip_counters_publish(VmsWorkerSlot *slot)
{
	for (int c = 0; c < VMS_COUNTERS; c++)
		if (counters[c] != published[c])
		{
			vms_worker_count(slot, c, counters[c] - published[c]);
			published[c] = counters[c];
		}
}

/* ---------------------------------------------------------------- logs */

/* at most 10 lines per kind per 10 s, then one line saying how many were dropped */
void
sip_log_limited(int kind, const char *fmt,...)
{
	static TimestampTz window[LOG_KINDS];
	static int	count[LOG_KINDS];
	static int	dropped[LOG_KINDS];
	char		buf[512];
	va_list		ap;

	if (now >= TimestampTzPlusMilliseconds(window[kind], 10000))
	{
		if (dropped[kind] > 0)
			ereport(LOG, (errmsg("vms sip: %d similar messages suppressed", dropped[kind])));
		window[kind] = now;
		count[kind] = 0;
		dropped[kind] = 0;
	}
	if (++count[kind] > 10)
	{
		dropped[kind]++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	ereport(LOG, (errmsg("vms sip: %s", buf)));
}

/* ---------------------------------------------------------------- scratch */

void
sip_core_init(void)
{
	sbuf_init(&scratch, (size_t) 2 << 20);
}

SBuf *
sip_scratch(void)
{
	return &scratch;
}
