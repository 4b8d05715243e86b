/*
 * sip_devices.h — the SIP worker's device cache: every device of the ledger
 * in memory (a dynahash keyed by the 20-digit code), its session, the
 * transitions waiting for the next batched write, and the deadlines that
 * take a silent device offline.  Sessions are written by the database
 * queue (sip_db.c), which asks this file for the batch.
 */
#ifndef VMS_SIP_DEVICES_H
#define VMS_SIP_DEVICES_H

#include "sip_core.h"

typedef struct Dev
{
	char		code[21];		/* hash key */
	bool		in_ledger;
	bool		has_cred;
	char		realm[64];
	char		ha1_md5[33];
	char		ha1_sha256[65];
	bool		registered;
	bool		online;
	TimestampTz registered_at;
	TimestampTz expires_at;
	TimestampTz last_keepalive;
	TimestampTz grace_until;	/* after a restart: not offline before this */
	int			ka_interval;	/* 0 = setting */
	int			ka_count;
	Peer		peer;
	bool		has_peer;
	char		user_agent[64];
	bool		no_qop;			/* digest without qop: device_session.digest_qop = false */
	uint32		nonce_seq;		/* the last accepted nonce's sequence number */
	uint32		nonce_nc;		/* and its nonce count (UINT32_MAX: no reuse) */
	int			auth_failures;
	TimestampTz banned_until;
	bool		dirty;			/* session to write */
	bool		flip_pending;	/* online changed since the last write */
	TimestampTz flip_at;		/* when it last changed */
	TimestampTz negative_until; /* not in the ledger: no lookup before this */
} Dev;

extern void sip_devices_init(void);
extern void sip_devices_load_all(void);
extern void sip_devices_load_changed(void);
extern Dev *sip_device(const char *code, bool lookup_db);
extern void sip_devices_check_deadlines(void);

/* what changed, for the next batched write */
extern void sip_mark_dirty(Dev *d);
extern void sip_event(Dev *d, const char *event, const char *cause);
extern void sip_flip(Dev *d, bool online, const char *cause);

/* where a device's messages must come from */
extern bool sip_peer_is_device(const Dev *d, const Peer *peer);
extern void sip_wrong_source(const Dev *d, const char *what, const Peer *peer);

/* the batch for vms._sip_flush (sip_db.c) */
extern size_t sip_batch_limit(void);
extern bool sip_devices_pending(void);
extern int	sip_devices_batch(SBuf *batch);
extern void sip_devices_batch_written(int n);
extern void sip_devices_drop_events(void);

#endif
