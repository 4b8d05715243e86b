/*
 * sip_db.h — the SIP worker's database queue.  Nothing waits on the
 * database while a packet waits on the worker: state changes, request
 * updates and device reports are queued in memory and written in one short
 * transaction per flush (vms.sip_flush_interval), sessions first, then the
 * queued operations, each in a subtransaction of its own.
 */
#ifndef VMS_SIP_DB_H
#define VMS_SIP_DB_H

#include "sip_core.h"
#include "sip_sql.h"

/* one of the queued operations of sip_sql.h, for a device code, with a jsonb document */
extern void sip_db_queue(SipSql op, const char *code, const char *json);

/* the state of a request from SQL (vms.sip_request); a newer update of the same request replaces a queued one */
extern void sip_request_update(int64 id, const char *state, const char *progress, const char *result, const char *error);

/* something waits for the next flush */
extern bool sip_db_pending(void);

/* write what waits: sessions, events, flips, request updates, then the queued operations */
extern void sip_db_flush(void);

#endif
