/*
 * diagnose_fn.c — vms.diagnose(source text, options jsonb DEFAULT '{}')
 *   RETURNS TABLE (check_name text, metric double precision, abnormal boolean, detail text)
 *
 * The SQL face of vqd (vqd.h): one row per check, in a fixed order; metric
 * and abnormal are NULL when a check could not be evaluated (no pictures,
 * or scene_change without a baseline, which is then left out).
 *
 * options (all optional):
 *   profile             'strict' | 'normal' (default) | 'loose'
 *   frames              frames to analyse, 1..150 (default 50)
 *   seconds             stream seconds to sample, > 0 and <= 60 (default 2)
 *   timeout_ms          overall deadline, 100..600000 (default 10000)
 *   connect_timeout_ms  opening and probing (default 5000)
 *   read_timeout_ms     longest wait for a packet (default 3000)
 *   thresholds          object of threshold name -> number, overriding the
 *                       profile (names: THRESHOLDS.md)
 *   baseline            the baseline snapshot for scene_change, as a hex
 *                       string of JPEG/PNG bytes (encode(bytea, 'hex'), with
 *                       or without a leading \x); pass a stored snapshot
 *                       with jsonb_build_object('baseline', encode(jpeg, 'hex'))
 * Unknown keys are errors, so a typo never silently falls back to a default.
 *
 * Sources that are not URLs (file paths) read the server's files: only
 * members of pg_read_server_files may use them, as for COPY FROM a file.
 *
 * Cancel: vqd polls interrupt_pending() together with its own deadlines, so
 * a query cancel or terminate stops the network wait at once; the function
 * then calls CHECK_FOR_INTERRUPTS() to raise it.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_authid.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/tuplestore.h"

#include "vqd.h"

PG_FUNCTION_INFO_V1(vms_diagnose);

/* polled by vqd between network reads and frames */
static int
interrupt_pending(void *arg)
{
	(void) arg;
	return InterruptPending && (QueryCancelPending || ProcDiePending);
}

static char *
jbv_text(JsonbValue *v)
{
	return pnstrdup(v->val.string.val, v->val.string.len);
}

static double
jbv_number(const char *key, JsonbValue *v)
{
	if (v->type != jbvNumeric)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be a number", key)));
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v->val.numeric)));
}

static int
int_option(const char *key, JsonbValue *v, int lo, int hi)
{
	double		d = jbv_number(key, v);

	if (!(d >= lo && d <= hi) || d != floor(d))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be an integer between %d and %d", key, lo, hi),
				 errdetail("The value given was %g.", d)));
	return (int) d;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static unsigned char *
decode_hex_option(JsonbValue *v, size_t *len)
{
	const char *s = v->val.string.val;
	int			n = v->val.string.len;
	unsigned char *out;

	if (n >= 2 && s[0] == '\\' && s[1] == 'x')
		s += 2, n -= 2;
	if (n % 2 != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"baseline\" is not valid hex"),
				 errdetail("It has an odd number of digits."),
				 errhint("Pass encode(snapshot, 'hex').")));
	out = palloc(n / 2 + 1);
	for (int i = 0; i < n; i += 2)
	{
		int			h = hexval(s[i]),
					l = hexval(s[i + 1]);

		if (h < 0 || l < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"baseline\" is not valid hex"),
					 errdetail("Character %d is not a hex digit.", i + 1 + (h < 0 ? 0 : 1)),
					 errhint("Pass encode(snapshot, 'hex').")));
		out[i / 2] = (unsigned char) (h * 16 + l);
	}
	*len = n / 2;
	return out;
}

static void
apply_thresholds(vqd_options *o, JsonbValue *v)
{
	JsonbIterator *it;
	JsonbValue	k,
				val;
	JsonbIteratorToken tok;

	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"thresholds\" must be an object"),
				 errhint("For example '{\"thresholds\": {\"blur_min\": 0.55}}'.")));
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *name;
		double		d;
		int			r;

		if (tok != WJB_KEY)
			continue;
		name = jbv_text(&k);
		tok = JsonbIteratorNext(&it, &val, true);
		if (val.type != jbvNumeric)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("threshold \"%s\" must be a number", name)));
		d = jbv_number(name, &val);
		r = vqd_threshold_set(&o->th, name, d);
		if (r == -1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown threshold \"%s\"", name),
					 errhint("The thresholds are listed in THRESHOLDS.md, for example \"blur_min\" or \"noise_sigma_min\".")));
		if (r == -2)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("threshold \"%s\" is out of range", name),
					 errdetail("The value given was %g.", d)));
	}
}

/* options jsonb -> vqd_options (profile first, so thresholds override it) */
static void
parse_options(Jsonb *opts, vqd_options *o)
{
	JsonbIterator *it;
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;
	JsonbValue *thresholds = NULL;

	vqd_options_init(o);
	if (!JB_ROOT_IS_OBJECT(opts) || JB_ROOT_IS_SCALAR(opts))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("diagnose options must be a JSON object")));
	it = JsonbIteratorInit(&opts->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		key = jbv_text(&k);
		tok = JsonbIteratorNext(&it, &v, true);
		if (strcmp(key, "profile") == 0)
		{
			char	   *p;

			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("option \"profile\" must be a string")));
			p = jbv_text(&v);
			if (vqd_profile_load(p, &o->th) < 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unknown profile \"%s\"", p),
						 errhint("The profiles are \"strict\", \"normal\" and \"loose\".")));
		}
		else if (strcmp(key, "frames") == 0)
			o->max_frames = int_option(key, &v, 1, VQD_MAX_FRAMES);
		else if (strcmp(key, "seconds") == 0)
		{
			o->max_seconds = jbv_number(key, &v);
			if (!(o->max_seconds > 0 && o->max_seconds <= 60))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("option \"seconds\" must be greater than 0 and at most 60")));
		}
		else if (strcmp(key, "timeout_ms") == 0)
			o->timeout_ms = int_option(key, &v, 100, 600000);
		else if (strcmp(key, "connect_timeout_ms") == 0)
			o->connect_timeout_ms = int_option(key, &v, 100, 600000);
		else if (strcmp(key, "read_timeout_ms") == 0)
			o->read_timeout_ms = int_option(key, &v, 100, 600000);
		else if (strcmp(key, "thresholds") == 0)
		{
			thresholds = palloc(sizeof(JsonbValue));
			*thresholds = v;
		}
		else if (strcmp(key, "baseline") == 0)
		{
			if (v.type == jbvNull)
				continue;
			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("option \"baseline\" must be a hex string"),
						 errhint("Pass encode(snapshot, 'hex').")));
			o->baseline = decode_hex_option(&v, &o->baseline_len);
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown diagnose option \"%s\"", key),
					 errhint("The options are profile, frames, seconds, timeout_ms, connect_timeout_ms, read_timeout_ms, thresholds and baseline.")));
	}
	/* the profile may come after the thresholds in the object: apply them last */
	if (thresholds)
		apply_thresholds(o, thresholds);
}

static bool
is_url(const char *s)
{
	const char *c = strstr(s, "://");

	if (!c || c == s)
		return false;
	for (const char *p = s; p < c; p++)
		if (!isalnum((unsigned char) *p) && *p != '+' && *p != '-' && *p != '.')
			return false;
	return true;
}

Datum
vms_diagnose(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *source;
	vqd_options o;
	vqd_report	rep;
	int			r;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("source must not be null")));
	source = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (source[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("source must not be empty")));
	if (PG_ARGISNULL(1))
		vqd_options_init(&o);
	else
		parse_options(PG_GETARG_JSONB_P(1), &o);

	if (!is_url(source) && !has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to diagnose a server file"),
				 errdetail("Only roles with privileges of the \"%s\" role may read files on the server.",
						   "pg_read_server_files"),
				 errhint("Give the camera's rtsp://, http:// or https:// address instead.")));

	o.interrupt = interrupt_pending;
	o.interrupt_arg = NULL;
	o.snapshot = 0;

	InitMaterializedSRF(fcinfo, 0);

	vqd_quiet_libav();
	r = vqd_diagnose(source, &o, &rep);
	CHECK_FOR_INTERRUPTS();
	if (r < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while diagnosing \"%s\"", source)));

	for (int c = 0; c < rep.nresults; c++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};
		const vqd_result *res = &rep.r[c];

		values[0] = CStringGetTextDatum(res->check);
		if (res->evaluated && isfinite(res->metric))
			values[1] = Float8GetDatum(res->metric);
		else
			nulls[1] = true;
		if (res->evaluated)
			values[2] = BoolGetDatum(res->abnormal != 0);
		else
			nulls[2] = true;
		values[3] = CStringGetTextDatum(res->detail);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	vqd_report_free(&rep);
	return (Datum) 0;
}
