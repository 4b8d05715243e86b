/*
 * audit_denied.h — the queue that carries refused rights into the audit log
 * past the rollback of the refusing transaction (audit_denied.c).
 */
#ifndef VMS_AUDIT_DENIED_H
#define VMS_AUDIT_DENIED_H

extern void vms_audit_denied_request(void);	/* from _PG_init, when preloaded */
extern bool vms_audit_denied_waiting(void);	/* refusals of this database queued? */

#endif
