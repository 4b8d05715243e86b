/*
 * sip_core.c — the SIP worker's core: the clock of the current round, the
 * counters, rate-limited logging and the scratch buffer for outgoing
 * messages.  Everything else in workers/sip builds on these; this file
 * depends on nothing of the worker.
 */
#include "postgres.h"

#include "common/pg_prng.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "sip_core.h"
#include "../worker_tx.h"

static TimestampTz round_now;	/* the clock of the current round */
static int64 counters[VMS_COUNTERS];
static int64 published[VMS_COUNTERS];
static SBuf scratch;

/* ---------------------------------------------------------------- time */

void
sip_clock_update(void)
{
	round_now = GetCurrentTimestamp();
}

TimestampTz
sip_clock_now(void)
{
	return round_now;
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

	if (round_now >= TimestampTzPlusMilliseconds(window[kind], 10000))
	{
		if (dropped[kind] > 0)
			ereport(LOG, (errmsg("vms sip: %d similar messages suppressed", dropped[kind])));
		window[kind] = round_now;
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

/* ----------------------------------------------------------- helpers */

/* n random lower-case hex digits and a NUL: branches, Call-IDs and tags */
void
sip_random_hex(char *out, int n)
{
	static const char hex[] = "0123456789abcdef";
	uint64		r = pg_prng_uint64(&pg_global_prng_state);

	for (int i = 0; i < n; i++)
	{
		if (i % 16 == 15)
			r = pg_prng_uint64(&pg_global_prng_state);
		out[i] = hex[r & 15];
		r >>= 4;
	}
	out[n] = '\0';
}

/*
 * A top-level field of a request's JSON parameters as text (a string, a
 * number, or true/false), palloc'd; NULL when absent or of another type.
 */
char *
sip_json_field(const char *json, const char *key)
{
	Datum		j = DirectFunctionCall1(jsonb_in, CStringGetDatum(json));
	JsonbValue	k,
			   *v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&DatumGetJsonbP(j)->root, JB_FOBJECT, &k);
	if (v == NULL)
		return NULL;
	if (v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	if (v->type == jbvBool)
		return pstrdup(v->val.boolean ? "true" : "false");
	if (v->type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	return NULL;
}
