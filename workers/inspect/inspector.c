/*
 * inspector.c — the "vms inspector N" workers (vms.inspector_workers of
 * them): start the rounds of due inspection plans, take one task at a time
 * (FOR UPDATE SKIP LOCKED, within the plan's concurrency), sample the
 * channel's stream with FFmpeg (extension/inspect/vqd_*.c) outside any
 * transaction, and record the result, its JPEG snapshot and its alarms in a
 * short transaction (vms._inspection_record).
 *
 * A task whose worker died is taken again once twice its timeout has
 * passed; a result already recorded is not recorded twice.
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "../../extension/inspect/vqd.h"
#include "../sip/sbuf.h"
#include "../worker_registry.h"
#include "../worker_tx.h"
#include "inspector.h"

PGDLLEXPORT void vms_inspector_main(Datum arg);

bool		vms_inspect_enabled = true;
int			vms_inspector_workers = 2;

enum
{
	C_ROUNDS_STARTED, C_TASKS, C_STREAM_OK, C_STREAM_FAILED, C_ABNORMAL, C_SNAPSHOTS, C_ERRORS, C_SAMPLE_MS
};

static VmsWorkerSlot *slot;
static MemoryContext loop_cxt;
#define begin_tx(what) vms_worker_begin_tx(what)
#define end_tx() vms_worker_end_tx()
#define tx_caller_cxt vms_tx_caller_cxt

/* a SIGTERM or a DBA's stop interrupts sampling at once */
static int
stop_requested(void *arg)
{
	return ProcDiePending || QueryCancelPending;
}

typedef struct Task
{
	int64		id;
	char	   *channel;
	char	   *source;
	char	   *profile;
	int			nth;
	char	  **th_names;
	double	   *th_values;
	double		seconds;
	int			frames;
	int			timeout_ms;
	unsigned char *baseline;
	size_t		baseline_len;
} Task;

static bool
claim(Task *t)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	bool		got = false;

	values[0] = CStringGetTextDatum(MyBgworkerEntry->bgw_extra);
	begin_tx("vms inspector: claiming a task");
	if (SPI_execute_with_args("SELECT * FROM vms._inspection_claim($1)", 1, types, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "vms inspector: could not claim a task");
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	d = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(tx_caller_cxt);
		bool		isnull;
		Datum		v;
		char	   *s;

		memset(t, 0, sizeof(*t));
		t->id = DatumGetInt64(SPI_getbinval(tup, d, 1, &isnull));
		t->channel = pstrdup(SPI_getvalue(tup, d, 2));
		s = SPI_getvalue(tup, d, 3);
		t->source = s ? pstrdup(s) : NULL;
		t->profile = pstrdup(SPI_getvalue(tup, d, 4));
		v = SPI_getbinval(tup, d, 5, &isnull);
		if (!isnull)
		{
			Datum	   *names,
					   *vals;
			int			n1,
						n2;
			Datum		v2 = SPI_getbinval(tup, d, 6, &isnull);

			deconstruct_array(DatumGetArrayTypeP(v), TEXTOID, -1, false, TYPALIGN_INT, &names, NULL, &n1);
			deconstruct_array(DatumGetArrayTypeP(v2), FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &vals, NULL, &n2);
			t->nth = Min(n1, n2);
			t->th_names = palloc(sizeof(char *) * (t->nth + 1));
			t->th_values = palloc(sizeof(double) * (t->nth + 1));
			for (int i = 0; i < t->nth; i++)
			{
				t->th_names[i] = TextDatumGetCString(names[i]);
				t->th_values[i] = DatumGetFloat8(vals[i]);
			}
		}
		t->seconds = DatumGetFloat8(SPI_getbinval(tup, d, 7, &isnull));
		t->frames = DatumGetInt32(SPI_getbinval(tup, d, 8, &isnull));
		t->timeout_ms = DatumGetInt32(SPI_getbinval(tup, d, 9, &isnull));
		v = SPI_getbinval(tup, d, 10, &isnull);
		if (!isnull)
		{
			bytea	   *b = DatumGetByteaPP(v);

			t->baseline_len = VARSIZE_ANY_EXHDR(b);
			t->baseline = palloc(t->baseline_len);
			memcpy(t->baseline, VARDATA_ANY(b), t->baseline_len);
		}
		MemoryContextSwitchTo(old);
		got = true;
	}
	end_tx();
	return got;
}

static void
result_json(SBuf *b, const Task *t, const vqd_report *rep)
{
	sbuf_puts(b, "{\"profile\":");
	sbuf_json_string(b, t->profile);
	sbuf_printf(b, ",\"frames\":%d,\"width\":%d,\"height\":%d,\"fps\":%.2f,\"elapsed_ms\":%.1f,\"first_frame_ms\":%.1f,\"codec\":",
				rep->frames, rep->width, rep->height, rep->fps, rep->elapsed_ms, rep->first_frame_ms);
	sbuf_json_string(b, rep->codec);
	sbuf_puts(b, ",\"checks\":{");
	for (int i = 0; i < rep->nresults; i++)
	{
		const vqd_result *r = &rep->r[i];

		if (i > 0)
			sbuf_append(b, ",", 1);
		sbuf_json_string(b, r->check);
		if (r->evaluated && isfinite(r->metric))
			sbuf_printf(b, ":{\"metric\":%.6g,\"abnormal\":%s,\"detail\":", r->metric, r->abnormal ? "true" : "false");
		else
			sbuf_puts(b, ":{\"metric\":null,\"abnormal\":null,\"detail\":");
		sbuf_json_string(b, r->detail);
		sbuf_append(b, "}", 1);
	}
	sbuf_puts(b, "}}");
}

/* one task: sample outside any transaction, then record */
static void
inspect(Task *t)
{
	vqd_options o;
	vqd_report rep;
	SBuf		b;
	Oid			types[3] = {INT8OID, TEXTOID, BYTEAOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	bool		abnormal = false;

	vqd_options_init(&o);
	if (vqd_profile_load(t->profile, &o.th) != 0)
		vqd_profile_load("normal", &o.th);
	for (int i = 0; i < t->nth; i++)
		if (vqd_threshold_set(&o.th, t->th_names[i], t->th_values[i]) != 0)
			ereport(LOG, (errmsg("vms inspector: ignoring threshold \"%s\" = %g of task %lld",
								 t->th_names[i], t->th_values[i], (long long) t->id)));
	o.max_frames = t->frames;
	o.max_seconds = t->seconds;
	o.timeout_ms = t->timeout_ms;
	o.snapshot = 1;
	o.baseline = t->baseline;
	o.baseline_len = t->baseline_len;
	o.interrupt = stop_requested;
	memset(&rep, 0, sizeof(rep));

	vms_worker_set_state(slot, psprintf("sampling %s", t->channel));
	pgstat_report_activity(STATE_RUNNING, psprintf("vms inspector: sampling %s", t->channel));
	if (t->source == NULL || t->source[0] == '\0')
	{
		/* nothing to open: a failed stream pull, said plainly */
		rep.nresults = 1;
		rep.r[0].check = vqd_check_name(VQD_STREAM);
		rep.r[0].evaluated = 1;
		rep.r[0].metric = 0;
		rep.r[0].abnormal = 1;
		snprintf(rep.r[0].detail, sizeof(rep.r[0].detail), "the channel has no stream URL");
	}
	else
		vqd_diagnose(t->source, &o, &rep);
	pgstat_report_activity(STATE_IDLE, NULL);
	CHECK_FOR_INTERRUPTS();

	sbuf_init(&b, 1 << 20);
	result_json(&b, t, &rep);
	for (int i = 0; i < rep.nresults; i++)
		if (rep.r[i].evaluated && rep.r[i].abnormal)
			abnormal = true;
	values[0] = Int64GetDatum(t->id);
	values[1] = CStringGetTextDatum(b.overflow ? "{}" : b.data);
	if (rep.snapshot && rep.snapshot_len > 0)
	{
		bytea	   *jpeg = palloc(VARHDRSZ + rep.snapshot_len);

		SET_VARSIZE(jpeg, VARHDRSZ + rep.snapshot_len);
		memcpy(VARDATA(jpeg), rep.snapshot, rep.snapshot_len);
		values[2] = PointerGetDatum(jpeg);
		vms_worker_count(slot, C_SNAPSHOTS, 1);
	}
	else
		nulls[2] = 'n';
	sbuf_free(&b);

	begin_tx("vms inspector: recording a result");
	if (SPI_execute_with_args("SELECT vms._inspection_record($1, $2::jsonb, $3)", 3, types, values, nulls, false, 0) < 0)
		elog(ERROR, "vms inspector: could not record task %lld", (long long) t->id);
	end_tx();

	vms_worker_count(slot, C_TASKS, 1);
	vms_worker_count(slot, rep.nresults > 0 && rep.r[0].evaluated && !rep.r[0].abnormal ? C_STREAM_OK : C_STREAM_FAILED, 1);
	if (abnormal)
		vms_worker_count(slot, C_ABNORMAL, 1);
	vms_worker_count(slot, C_SAMPLE_MS, (int64) rep.elapsed_ms);
	vqd_report_free(&rep);
}

static bool
extension_ready(void)
{
	bool		ready;

	begin_tx("vms inspector: checking for the extension");
	ready = SPI_execute("SELECT 1 FROM pg_catalog.pg_proc WHERE proname = '_inspection_claim'", true, 1) == SPI_OK_SELECT &&
		SPI_processed > 0;
	end_tx();
	return ready;
}

/* one round of the loop: start due rounds, then inspect one task; true if it did one */
static bool
one_round(void)
{
	Task		t;

	if (!extension_ready())
	{
		vms_worker_set_state(slot, "waiting for CREATE EXTENSION vms");
		return false;
	}
	begin_tx("vms inspector: scheduling plans");
	if (SPI_execute("SELECT vms._inspection_schedule()", false, 0) == SPI_OK_SELECT && SPI_processed == 1)
	{
		char	   *n = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (n && atoi(n) > 0)
			vms_worker_count(slot, C_ROUNDS_STARTED, 1);
	}
	end_tx();
	if (!claim(&t))
	{
		vms_worker_set_state(slot, "idle");
		return false;
	}
	inspect(&t);
	vms_worker_set_state(slot, "running");
	return true;
}

void
vms_inspector_main(Datum arg)
{
	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	slot = vms_worker_attach(MyBgworkerEntry->bgw_extra);
	BackgroundWorkerInitializeConnection(vms_database, NULL, 0);
	vqd_quiet_libav();
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "vms inspector loop", ALLOCSET_DEFAULT_SIZES);
	vms_worker_set_state(slot, "running");

	for (;;)
	{
		bool		worked = false;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextReset(loop_cxt);
		PG_TRY();
		{
			MemoryContext old = MemoryContextSwitchTo(loop_cxt);

			worked = one_round();
			MemoryContextSwitchTo(old);
		}
		PG_CATCH();
		{
			char	   *message = vms_worker_recover(slot, loop_cxt);

			vms_worker_count(slot, C_ERRORS, 1);
			ereport(LOG, (errmsg("vms inspector: %s", message)));
			pg_usleep(1000000L);
		}
		PG_END_TRY();
		if (worked)
			continue;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
