/*
 * sip_sql.h — every statement the SIP worker runs, by name.
 *
 * The worker calls SQL only through these operations: an enum value names
 * each, and sip_sql.c holds its text and argument types in one table, so
 * that `grep -rn _sip_flush workers/sip` finds the one place a function is
 * called from, and a new operation is one line in the table.  The queued
 * operations (SIP_SQL_ADD_DEVICE .. SIP_SQL_SUBSCRIPTION_RECORD) take a
 * device code and a jsonb document and go through the database queue
 * (sip_db_queue); the others run where the worker needs their answer.
 */
#ifndef VMS_SIP_SQL_H
#define VMS_SIP_SQL_H

#include "postgres.h"

typedef enum SipSql
{
	/* queued with a device code and a jsonb document (sip_db_queue) */
	SIP_SQL_ADD_DEVICE,
	SIP_SQL_CATALOG_APPLY,
	SIP_SQL_ALARM,
	SIP_SQL_POSITION,
	SIP_SQL_CATALOG_RESULT,
	SIP_SQL_INFO_RESULT,
	SIP_SQL_SUBSCRIPTION_RECORD,
	SIP_SQL_RECORDS_RESULT,		/* device control (sip_control.c): RecordInfo pages */
	SIP_SQL_CONTROL_RESULT,		/* device control: a command's or query's outcome */
	SIP_SQL_GB_VERSION,			/* the X-GB-Ver a device registered with */
	/* run directly */
	SIP_SQL_DEVICES,			/* ($1 timestamptz): every device of the ledger */
	SIP_SQL_DEVICE,				/* ($1 timestamptz, $2 code): one device */
	SIP_SQL_TAKE_DEVICE_CHANGES,	/* the codes queued by the ledger's triggers */
	SIP_SQL_CHANGED_DEVICES,	/* ($1 text[]): those devices, or nothing for a deleted one */
	SIP_SQL_CHANGED_DEVICES_MANY,	/* the same for many codes: one pass over the ledger, not one per code */
	SIP_SQL_FLUSH,				/* ($1 jsonb): sessions, events, flips */
	SIP_SQL_REQUEST_UPDATE,		/* ($1 id, $2 state, $3 progress, $4 result, $5 error) */
	SIP_SQL_CLAIM_REQUESTS,		/* queued requests from SQL, at most 100 */
	SIP_SQL_RECOVER_REQUESTS,	/* after a start: requests a previous worker left in flight */
	SIP_SQL_SUBSCRIPTIONS,		/* subscriptions to keep renewing */
	SIP_SQL_MEDIA_LAPSED_READY,	/* does this database have vms._media_sessions_lapsed() (0.3.0 on) */
	SIP_SQL_MEDIA_LAPSED,		/* BYE the media sessions whose owner lost the right (sip_control.c) */
	SIP_SQL_UPSTREAMS,			/* upper platforms and their options (sip_upstream.c) */
	SIP_SQL_UPSTREAM_FLUSH,		/* ($1 jsonb): their registration states and transitions */
	SIP_SQL_UPSTREAM_ANSWER,	/* ($1 upstream, $2 CmdType, $3 SN, $4 DeviceID): MANSCDP bodies */
	SIP_SQL_UPSTREAM_RELAY,		/* ($1 upstream, $2 code it knows, $3 SDP media addresses, $4 source): channel, device, refusal; audited */
	SIP_SQL_UPSTREAM_BYE,		/* ($1 upstream, $2 code, $3 channel, $4 media, $5 source, $6 ended by): audited */
	SIP_SQL_UPSTREAM_ALARMS,	/* ($1 upstream, $2 first SN, $3 subscription's filter): Alarm notifications of shared channels */
	SIP_SQL_UPSTREAM_CHANGES,	/* ($1 upstream, $2 SN, $3 baseline, $4 whole share): Catalog NOTIFY bodies of what changed */
	SIP_SQL_UPSTREAM_POSITIONS, /* ($1 upstream, $2 first SN, $3 all again, $4 Interval, $5 the whole share, else the
								 * devices reported since and the changes held back): MobilePosition notifications of
								 * what changed, and when the next held back is due */
	SIP_SQL_UPSTREAM_SUBSCRIPTIONS,	/* after a start: the upper platforms' subscriptions still running, to serve on */
	SIP_SQL_UPSTREAM_TAKE_CHANGES,	/* how many share and position changes the ledger's triggers queued (taken) */
	SIP_SQL_UPSTREAM_CONTROL,	/* ($1 upstream, $2 code, $3 SN, $4 root, $5 CmdType, $6 request, $7 source): channel, device,
								 * refusal, answer, body (rebuilt); audited */
	SIP_SQL_UPSTREAM_CONTROL_ANSWER,	/* ($1 upstream, $2 code, $3 channel, $4 SN, $5 CmdType, $6 the device's answer):
										 * the answer rebuilt for the upper platform, in pages (rows) */
	SIP_SQL_N
} SipSql;

/* the statement's text (for logs) */
extern const char *sip_sql_text(SipSql op);

/* SPI_execute_with_args on the operation's text and argument types; returns SPI's code */
extern int	sip_sql_run(SipSql op, Datum *values, const char *nulls, bool read_only, long count);

/* the same, raising an error when SPI fails */
extern void sip_sql_exec(SipSql op, Datum *values, const char *nulls);

#endif
