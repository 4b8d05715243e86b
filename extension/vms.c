/*
 * vms.c — module entry point: settings.  The SQL API needs nothing else at
 * load time; background workers are registered here when vms is in
 * shared_preload_libraries.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_class.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/syscache.h"

#include "vms.h"
#include "audit_denied.h"
#include "search_history_queue.h"
#include "../workers/worker_registry.h"
#include "../workers/sip/sip_settings.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * vms.cluster_city: this node is a city of district ledgers (set for the
 * database by vms.cluster_subscribe).  A superuser's setting: it turns on
 * the refusal of local edits of district rows, which a session must not be
 * able to switch off for itself.
 */
static bool vms_cluster_city = false;

PG_FUNCTION_INFO_V1(vms_cluster_is_city);
PG_FUNCTION_INFO_V1(vms_media_server);

/*
 * vms.media_server: the default media server ('ip:port' or 'ip:port/tcp')
 * of vms.view_live, vms.playback and vms.download.  A superuser's setting:
 * analysts may send media only to it or to an address of the owner's
 * vms.media_server_allowed, so a session must not be able to set it.
 */
static char *vms_media_server_setting = NULL;

/*
 * vms.cluster_is_city(): the setting, read through the library, so that the
 * setting is defined (superuser-only) in the session before it is read: a
 * value a session gave the placeholder before the library was loaded is
 * dropped when it loads.
 */
Datum
vms_cluster_is_city(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(vms_cluster_city);
}

/*
 * vms._media_server(): that setting, read through the library (as
 * vms.cluster_is_city), so that a value a session gave the placeholder before
 * the library was loaded is dropped before it is read.  NULL when empty.
 */
Datum
vms_media_server(PG_FUNCTION_ARGS)
{
	if (vms_media_server_setting == NULL || vms_media_server_setting[0] == '\0')
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(vms_media_server_setting));
}

/*
 * The owner of a table, as RelationGetForm(rel)->relowner without opening
 * it (the access policy runs its grant queries as vms.access_grant's owner,
 * the outbox's key checks as the parent's).
 */
Oid
vms_rel_owner(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

void
_PG_init(void)
{
	DefineCustomStringVariable("vms.secret_key_file",
							   "File holding the 32-byte key that encrypts stored secrets.",
							   "Readable only by the server; superusers set it.",
							   &vms_secret_key_file,
							   NULL,
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);
	DefineCustomBoolVariable("vms.cluster_city",
							 "This node is a city that subscribes to district ledgers.",
							 "Set for the database by vms.cluster_subscribe; turns on the refusal of local edits of district rows.",
							 &vms_cluster_city,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
	DefineCustomStringVariable("vms.media_server",
							   "Default media server (ip:port or ip:port/tcp) of live view, playback and download.",
							   "Superusers set it; other media servers must be listed in vms.media_server_allowed.",
							   &vms_media_server_setting,
							   "",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);
	vms_sip_define_settings();
	if (process_shared_preload_libraries_in_progress)
	{
		vms_register_launcher();
		vms_audit_denied_request();
		vms_search_history_request();
	}
}
