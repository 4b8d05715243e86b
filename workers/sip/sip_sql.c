/*
 * sip_sql.c — the table of the SIP worker's SQL operations (sip_sql.h).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"

#include "sip_sql.h"

typedef struct SipSqlDef
{
	SipSql		op;				/* its index, checked at start */
	const char *text;
	int			nargs;
	Oid			types[7];
} SipSqlDef;

#define CODE_DOC {TEXTOID, TEXTOID}

static const SipSqlDef defs[SIP_SQL_N] = {
	{SIP_SQL_ADD_DEVICE, "SELECT vms._sip_add_device($1::vms.gbcode, $2::jsonb)", 2, CODE_DOC},
	{SIP_SQL_CATALOG_APPLY, "SELECT vms._sip_catalog_apply($1::vms.gbcode, $2::jsonb)", 2, CODE_DOC},
	{SIP_SQL_ALARM, "SELECT vms._sip_alarm($1::vms.gbcode, $2::jsonb)", 2, CODE_DOC},
	{SIP_SQL_POSITION, "SELECT vms._sip_position($1::vms.gbcode, $2::jsonb)", 2, CODE_DOC},
	{SIP_SQL_CATALOG_RESULT, "SELECT vms._sip_catalog_result($1::vms.gbcode, $2::jsonb)", 2, CODE_DOC},
	{SIP_SQL_INFO_RESULT, "SELECT vms._sip_info_result($1::vms.gbcode, $2::jsonb)", 2, CODE_DOC},
	{SIP_SQL_SUBSCRIPTION_RECORD, "SELECT vms._sip_subscription_record($1::vms.gbcode, $2::jsonb)", 2, CODE_DOC},
	{SIP_SQL_RECORDS_RESULT, "SELECT vms._sip_records_result($1::vms.gbcode, $2::jsonb)", 2, CODE_DOC},
	{SIP_SQL_CONTROL_RESULT, "SELECT vms._sip_control_result($1::vms.gbcode, $2::json)", 2, CODE_DOC},
	{SIP_SQL_GB_VERSION, "SELECT vms._sip_gb_version($1::vms.gbcode, $2::jsonb)", 2, CODE_DOC},
	{SIP_SQL_DEVICES, "SELECT * FROM vms._sip_devices($1)", 1, {TIMESTAMPTZOID}},
	{SIP_SQL_DEVICE, "SELECT * FROM vms._sip_devices($1, $2)", 2, {TIMESTAMPTZOID, TEXTOID}},
	{SIP_SQL_TAKE_DEVICE_CHANGES, "SELECT array_agg(c) FROM vms._sip_take_device_changes() c", 0, {InvalidOid}},
	{SIP_SQL_CHANGED_DEVICES, "SELECT d.* FROM unnest($1::text[]) c(code) "
	"CROSS JOIN LATERAL vms._sip_devices('-infinity', c.code) d", 1, {TEXTARRAYOID}},
	{SIP_SQL_CHANGED_DEVICES_MANY, "SELECT d.* FROM vms._sip_devices('-infinity') d WHERE d.code = ANY ($1::text[])",
	1, {TEXTARRAYOID}},
	{SIP_SQL_FLUSH, "SELECT vms._sip_flush($1::jsonb)", 1, {TEXTOID}},
	{SIP_SQL_REQUEST_UPDATE, "SELECT vms._sip_request_update($1, $2, $3::jsonb, $4::jsonb, $5)", 5,
	{INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID}},
	{SIP_SQL_CLAIM_REQUESTS, "SELECT id, device_code, kind, params::text FROM vms._sip_claim_requests(100)", 0, {InvalidOid}},
	{SIP_SQL_RECOVER_REQUESTS, "SELECT vms._sip_recover_requests()", 0, {InvalidOid}},
	{SIP_SQL_SUBSCRIPTIONS, "SELECT device_code, event, expires, state, expires_at FROM vms._sip_subscriptions()", 0, {InvalidOid}},
	{SIP_SQL_MEDIA_LAPSED_READY, "SELECT to_regprocedure('vms._media_sessions_lapsed()') IS NOT NULL", 0, {InvalidOid}},
	{SIP_SQL_MEDIA_LAPSED, "SELECT vms._media_sessions_lapsed()", 0, {InvalidOid}},
	{SIP_SQL_UPSTREAMS, "SELECT name, host, port, platform_id, password_enc, enabled, local_id, realm, expires, "
		"keepalive_interval, keepalive_count, charset, send_status, page_size, state, failures, push_interval, "
		"reconcile_interval, transport FROM vms._sip_upstreams()",
	0, {InvalidOid}},
	{SIP_SQL_UPSTREAM_FLUSH, "SELECT vms._sip_upstream_flush($1::jsonb)", 1, {TEXTOID}},
	{SIP_SQL_UPSTREAM_ANSWER, "SELECT b FROM vms._sip_upstream_answer($1, $2, $3, $4) b", 4,
	{TEXTOID, TEXTOID, TEXTOID, TEXTOID}},
	{SIP_SQL_UPSTREAM_RELAY, "SELECT channel, device, refusal FROM vms._sip_upstream_relay($1, $2, $3, $4)", 4,
	{TEXTOID, TEXTOID, TEXTOID, TEXTOID}},
	{SIP_SQL_UPSTREAM_BYE, "SELECT vms._sip_upstream_bye($1, $2, $3, $4, $5, $6)", 6,
	{TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID}},
	{SIP_SQL_UPSTREAM_ALARMS, "SELECT b FROM vms._sip_upstream_alarms($1, $2, $3::jsonb) b", 3, {TEXTOID, INT8OID, TEXTOID}},
	{SIP_SQL_UPSTREAM_CHANGES, "SELECT b FROM vms._sip_upstream_changes($1, $2, $3, $4) b", 4,
	{TEXTOID, TEXTOID, BOOLOID, BOOLOID}},
	{SIP_SQL_UPSTREAM_POSITIONS, "SELECT body, due FROM vms._sip_upstream_positions($1, $2, $3, $4, $5)", 5,
	{TEXTOID, INT8OID, BOOLOID, INT4OID, BOOLOID}},
	{SIP_SQL_UPSTREAM_SUBSCRIPTIONS, "SELECT s.upstream, e.key, (e.value ->> 'expires_at')::float8, e.value ->> 'call_id', "
		"e.value ->> 'their_tag', e.value ->> 'our_tag', (e.value ->> 'cseq')::bigint, (e.value -> 'filter')::text, "
		"(e.value ->> 'interval')::integer FROM vms.sip_upstream_state s, jsonb_each(s.subscriptions) e "
		"WHERE jsonb_typeof(e.value) = 'object' AND (e.value ->> 'expires_at')::float8 > extract(epoch FROM now())",
	0, {InvalidOid}},
	{SIP_SQL_UPSTREAM_TAKE_CHANGES, "SELECT share, positions FROM vms._sip_take_share_changes()", 0, {InvalidOid}},
	{SIP_SQL_UPSTREAM_CONTROL, "SELECT channel, device, refusal, answer, body "
		"FROM vms._sip_upstream_control($1, $2, $3, $4, $5, $6::json, $7)", 7,
	{TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID}},
	{SIP_SQL_UPSTREAM_CONTROL_ANSWER, "SELECT a FROM vms._sip_upstream_control_answer($1, $2, $3, $4, $5, $6::json) a", 6,
	{TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID}},
};

static const SipSqlDef *
def(SipSql op)
{
	if ((int) op < 0 || op >= SIP_SQL_N || defs[op].op != op)
		elog(ERROR, "vms sip: no SQL operation %d", (int) op);
	return &defs[op];
}

const char *
sip_sql_text(SipSql op)
{
	return def(op)->text;
}

int
sip_sql_run(SipSql op, Datum *values, const char *nulls, bool read_only, long count)
{
	const SipSqlDef *d = def(op);

	return SPI_execute_with_args(d->text, d->nargs, (Oid *) d->types, values, nulls, read_only, count);
}

void
sip_sql_exec(SipSql op, Datum *values, const char *nulls)
{
	if (sip_sql_run(op, values, nulls, false, 0) < 0)
		elog(ERROR, "vms sip: query failed: %s", sip_sql_text(op));
}
