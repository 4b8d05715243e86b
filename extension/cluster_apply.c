/*
 * cluster_apply.c: the city side of a district's replicated device,
 * channel, catalogue node or checkpoint (issue 16, 27_cluster_sync.sql).
 *
 * A BEFORE row trigger, ENABLE REPLICA, so it fires in the apply worker of
 * each district subscription.  It was PL/pgSQL; in the apply worker, which
 * sets up an executor per replicated row, that cost about half of the
 * city's apply time for a large import.  The rules are unchanged:
 *   INSERT  claims the code for the sending district (vms.cluster_owner)
 *           unless another district owns it or the city holds a row of its
 *           own under it; the owner sending a row it already has (a table
 *           copied again after a re-subscription) replaces it;
 *           (a device's or channel's availability runs that another
 *           district, or the city itself, wrote before go then);
 *   UPDATE, DELETE apply only to rows the sending district owns (an UPDATE
 *           that changes the code: the old and the new code both, else a
 *           district could move another's row under a code of its own);
 * anything else is recorded with vms._cluster_conflict and not applied.
 * A DELETE releases the code's claim and applies the foreign keys' actions
 * to the city's own rows under it: both set-based, for every code the
 * transaction deletes (deleted_buffer_add, below; one SPI DELETE a row was
 * 0.8 s of the city's apply time of 100,000 deletes).
 * The lookups (the code's owner, a row of the city's under it, stray
 * availability runs) probe the primary keys' indexes directly (pk_scan);
 * the writes (claim, the strays' DELETE, run only when the probe
 * found some) are prepared once per backend and run with enable_seqscan =
 * off (as the PL/pgSQL function's SET clause did; the apply worker's
 * search_path is empty: every name is qualified, the code's = is in
 * pg_catalog): planned while a table is small they would otherwise scan
 * it, and keep scanning it as it grows.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "replication/logicalworker.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(vms_cluster_apply_owned);

#define KIND_N 4
static const char *const kind_names[KIND_N] = {"device", "channel", "catalog_node", "checkpoint"};

static SPIPlanPtr claim_plan;
static SPIPlanPtr claim_again_plan;
/* a device's or channel's availability runs sent by anyone but its owner */
static SPIPlanPtr strays_plan[2];

static SPIPlanPtr
keep(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

	if (p == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
	SPI_keepplan(p);
	return p;
}

static void
prepare_plans(Oid gbcode)
{
	Oid			tct[3] = {TEXTOID, gbcode, TEXTOID};
	Oid			ct[2] = {gbcode, TEXTOID};

	if (claim_plan != NULL)
		return;
	claim_plan = keep("INSERT INTO vms.cluster_owner (kind, code, district) VALUES ($1, $2, $3)", 3, tct);
	claim_again_plan = keep("INSERT INTO vms.cluster_owner (kind, code, district) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
							3, tct);
	strays_plan[0] = keep("DELETE FROM vms.availability_run r WHERE r.source = 'device' AND r.code = $1"
						  " AND r.district IS DISTINCT FROM $2", 2, ct);
	strays_plan[1] = keep("DELETE FROM vms.availability_run r WHERE r.source IN ('catalog', 'stream') AND r.code = $1"
						  " AND r.district IS DISTINCT FROM $2", 2, ct);
}

static void
run(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only)
{
	int			rc = SPI_execute_plan(plan, values, nulls, read_only, 0);

	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
}

/*
 * The lookups of every replicated row go straight to a primary key's index
 * (an equality on its first nkeys columns, with the index's own operators
 * and collations) rather than through SPI: an executor set up and torn down
 * for a one-row probe was most of their cost.  The caller closes the scan.
 */
static SysScanDesc
pk_scan(Relation heap, int nkeys, const Datum *vals, Snapshot snap)
{
	Oid			idx = RelationGetPrimaryKeyIndex(heap);
	Relation	irel;
	ScanKeyData keys[3];
	int			i;

	Assert(nkeys <= 3);
	if (!OidIsValid(idx))
		elog(ERROR, "vms.%s has no primary key", RelationGetRelationName(heap));
	irel = index_open(idx, AccessShareLock);
	if (IndexRelationGetNumberOfKeyAttributes(irel) < nkeys)
		elog(ERROR, "the primary key of vms.%s has fewer than %d columns", RelationGetRelationName(heap), nkeys);
	for (i = 0; i < nkeys; i++)
	{
		Oid			type = irel->rd_opcintype[i];
		Oid			opno = get_opfamily_member(irel->rd_opfamily[i], type, type, BTEqualStrategyNumber);

		if (!OidIsValid(opno))
			elog(ERROR, "no equality operator in the primary key of vms.%s", RelationGetRelationName(heap));
		/* a heap column number: systable_beginscan maps it to the index's */
		ScanKeyEntryInitialize(&keys[i], 0, irel->rd_index->indkey.values[i], BTEqualStrategyNumber, InvalidOid,
							   irel->rd_indcollation[i], get_opcode(opno), vals[i]);
	}
	index_close(irel, NoLock);
	return systable_beginscan(heap, idx, true, snap, nkeys, keys);
}

/* the column of a table by name */
static int
column(Relation rel, const char *name)
{
	int			attno = SPI_fnumber(RelationGetDescr(rel), name);

	if (attno <= 0)
		elog(ERROR, "vms.%s has no column %s", RelationGetRelationName(rel), name);
	return attno;
}

/* vms.<name> opened for reading, locked until the transaction ends */
static Relation
open_vms(Oid ns, const char *name)
{
	Oid			relid = get_relname_relid(name, ns);

	if (!OidIsValid(relid))
		elog(ERROR, "relation vms.%s does not exist", name);
	return table_open(relid, AccessShareLock);
}

/*
 * the district owning a code (vms.cluster_owner), or NULL; as the read-only
 * SPI lookup it replaced, with the statement's snapshot, unless the trigger
 * has just released claims itself (deleted_flush)
 */
static char *
owner_of(Oid ns, int kind, Datum code, Snapshot snap)
{
	Relation	rel = open_vms(ns, "cluster_owner");
	Datum		vals[2];
	SysScanDesc scan;
	HeapTuple	tup;
	char	   *owner = NULL;

	vals[0] = CStringGetTextDatum(kind_names[kind]);
	vals[1] = code;
	scan = pk_scan(rel, 2, vals, snap);
	if (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, column(rel, "district"), RelationGetDescr(rel), &isnull);

		if (!isnull)
			owner = TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, NoLock);
	return owner;
}

/* does the city hold a row under this code (the trigger's own table) */
static bool
code_present(Relation rel, Datum code, Snapshot snap)
{
	SysScanDesc scan = pk_scan(rel, 1, &code, snap);
	bool		found = HeapTupleIsValid(systable_getnext(scan));

	systable_endscan(scan);
	return found;
}

/*
 * availability runs of a device (kind 0) or channel (1) code from anyone
 * but the district: only when there are some does the DELETE run
 */
static bool
strays_present(Oid ns, int kind, Datum code, const char *district)
{
	static const char *const sources[] = {"device", "catalog", "stream"};
	Relation	rel = open_vms(ns, "availability_run");
	int			d_att = column(rel, "district");
	bool		found = false;
	int			s;

	for (s = kind == 0 ? 0 : 1; s < (kind == 0 ? 1 : 3) && !found; s++)
	{
		Datum		vals[2];
		SysScanDesc scan;
		HeapTuple	tup;

		vals[0] = CStringGetTextDatum(sources[s]);
		vals[1] = code;
		/* as the DELETE would see them: the latest snapshot */
		scan = pk_scan(rel, 2, vals, GetLatestSnapshot());
		while (!found && HeapTupleIsValid(tup = systable_getnext(scan)))
		{
			bool		isnull;
			Datum		d = heap_getattr(tup, d_att, RelationGetDescr(rel), &isnull);

			found = isnull || strcmp(TextDatumGetCString(d), district) != 0;
		}
		systable_endscan(scan);
	}
	table_close(rel, NoLock);
	return found;
}

/* the row as jsonb, recorded with the conflict */
static void
record_conflict(const char *district, const char *owner, Relation rel, const char *op,
				Oid gbcode, Datum code, HeapTuple row)
{
	Oid			typoutput;
	bool		typisvarlena;
	Oid			types[6] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, rel->rd_rel->reltype};
	Datum		values[6];
	char		nulls[7] = "      ";
	TupleDesc	desc = RelationGetDescr(rel);
	int			rc;

	values[0] = CStringGetTextDatum(district);
	values[1] = owner ? CStringGetTextDatum(owner) : (Datum) 0;
	nulls[1] = owner ? ' ' : 'n';
	values[2] = CStringGetTextDatum(RelationGetRelationName(rel));
	values[3] = CStringGetTextDatum(op);
	getTypeOutputInfo(gbcode, &typoutput, &typisvarlena);
	values[4] = CStringGetTextDatum(OidOutputFunctionCall(typoutput, code));
	values[5] = heap_copy_tuple_as_datum(row, desc);
	rc = SPI_execute_with_args("SELECT vms._cluster_conflict($1, $2, $3, $4, $5, pg_catalog.to_jsonb($6))",
							   6, types, values, nulls, false, 0);
	if (rc < 0)
		elog(ERROR, "recording a conflict failed: %s", SPI_result_code_string(rc));
}

/*
 * Both buffers below (deleted codes, map cells) hold rows only in a logical
 * replication worker at the top level of its transaction, and only while
 * their deferred flush trigger is there, fires in replica mode and for the
 * event: otherwise nothing would flush them before the commit.
 */
static bool
apply_top_level(void)
{
	return SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA && IsLogicalWorker()
		&& GetCurrentTransactionNestLevel() == 1;
}

static bool
flush_trigger_enabled(Relation rel, const char *name, bool del)
{
	TriggerDesc *trigdesc = rel->trigdesc;
	int			i;

	if (trigdesc == NULL)
		return false;
	for (i = 0; i < trigdesc->numtriggers; i++)
	{
		Trigger    *t = &trigdesc->triggers[i];

		if (strcmp(t->tgname, name) == 0)
			return t->tgdeferrable && t->tginitdeferred
				&& (del ? TRIGGER_FOR_DELETE(t->tgtype) : TRIGGER_FOR_INSERT(t->tgtype))
				&& (t->tgenabled == TRIGGER_FIRES_ON_REPLICA || t->tgenabled == TRIGGER_FIRES_ALWAYS);
	}
	return false;
}

/*
 * A code a district deletes: its claim is released, and the city's own
 * rows under it follow (vms._cluster_cascade, 27_cluster_sync.sql): the apply worker runs in
 * replica mode, where the foreign keys' actions (ON DELETE CASCADE, SET
 * NULL: ordinary triggers) do not fire, so the city's rows hanging on a
 * deleted device, channel, catalogue node or checkpoint (share codes, tags,
 * tasks, plans, members...) would stay, orphaned, and hang on the code again
 * if it came back.  The deleted codes are buffered per kind in the
 * transaction's memory, their claims released (one DELETE of
 * vms.cluster_owner a kind) and handed to vms._cluster_cascade set-based (one
 * statement a foreign key, not one a row): by the deferred constraint
 * trigger <table>_cluster_apply_deleted at the transaction's commit, before
 * a replicated INSERT or UPDATE in the same transaction that depends on them
 * (the same code or, for an UPDATE, its new code: a code deleted and sent
 * again must not take the new row's children with it, nor lose its claim;
 * an INSERT of a code the city holds a row under, which the cascade may
 * delete), or when a kind's buffer holds DELETED_BUFFER_MAX codes.  By then the district's own child
 * rows, which its own cascade deleted in the same transaction, are gone
 * already (they follow the parent's DELETE in the stream).  Anywhere else
 * (a session in replica mode, a subtransaction, the flush trigger disabled)
 * a deleted code is handed over at once.
 */
PG_FUNCTION_INFO_V1(vms_cluster_apply_deleted_due);
PG_FUNCTION_INFO_V1(vms_cluster_apply_deleted_flush);

#define DELETED_BUFFER_MAX 100000
#define DELETED_KEY_MAX 32

/* a buffered code, looked up by the next replicated row of its kind */
typedef struct DeletedKey
{
	int32		kind;
	char		code[DELETED_KEY_MAX];	/* a fixed-length code's bytes, zero-padded */
}			DeletedKey;

static SPIPlanPtr release_many_plan;
static SPIPlanPtr cascade_plan;

static struct
{
	LocalTransactionId lxid;	/* the transaction they belong to */
	bool		flush_queued;	/* the deferred flush trigger is queued */
	bool		callback;		/* deleted_xact_callback registered */
	MemoryContext cxt;			/* under TopTransactionContext */
	char	   *district;
	Oid			gbcode;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			total;
	int			n[KIND_N];
	int			cap[KIND_N];
	Datum	   *codes[KIND_N];
	HTAB	   *keys;			/* the codes, for deleted_pending; NULL for a varlena type */
}			db;

/* no code buffered (the memory they were in is reset or gone) */
static void
deleted_buffer_empty(void)
{
	int			k;

	db.district = NULL;
	db.total = 0;
	db.keys = NULL;
	for (k = 0; k < KIND_N; k++)
	{
		db.n[k] = db.cap[k] = 0;
		db.codes[k] = NULL;
	}
}

static void
deleted_buffer_current(void)
{
	if (db.lxid == MyProc->lxid)
		return;
	/* a transaction that ended without flushing aborted: its memory is gone */
	db.lxid = MyProc->lxid;
	db.flush_queued = false;
	db.cxt = NULL;
	deleted_buffer_empty();
}

/* the key of a code of a fixed-length type (typlen <= DELETED_KEY_MAX) */
static void
deleted_key(DeletedKey *key, int kind, Datum code)
{
	memset(key, 0, sizeof(*key));
	key->kind = kind;
	memcpy(key->code, db.typbyval ? (char *) &code : DatumGetPointer(code), db.typlen);
}

/*
 * is a code of this kind among those buffered (its claim not yet released,
 * the city's rows under it not yet gone); true whenever the codes are of a
 * type the buffer cannot look up
 */
static bool
deleted_pending(int kind, Datum code)
{
	DeletedKey	key;

	deleted_buffer_current();
	if (db.total == 0)
		return false;
	if (db.keys == NULL)
		return true;
	deleted_key(&key, kind, code);
	return hash_search(db.keys, &key, HASH_FIND, NULL) != NULL;
}

/* the flush trigger of the table's deletes (<table>_cluster_apply_deleted) will take them */
static bool
deleted_buffering(Relation rel)
{
	char		name[NAMEDATALEN];

	if (!apply_top_level())
		return false;
	snprintf(name, sizeof(name), "%s_cluster_apply_deleted", RelationGetRelationName(rel));
	return flush_trigger_enabled(rel, name, true);
}

/*
 * the codes the district deleted, per kind (n[k] codes in codes[k]): their
 * claims released (one statement a kind, in replica mode), then the city's
 * own rows under them (vms._cluster_cascade, a call a kind).  The cascade
 * runs in origin mode, so that the foreign keys of the rows it deletes act
 * in turn: switched once for all the kinds of a flush (a change of
 * session_replication_role resets the plan cache), with vms.change_reason
 * saying why for vms.ledger_history; both restored after.
 */
static void
deleted_apply_kinds(const int *n, Datum *const *codes, const char *district, Oid gbcode)
{
	Datum		values[KIND_N][3];
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			rc;
	int			k;
	int			save_nestlevel;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (cascade_plan == NULL)
	{
		Oid			types[3] = {TEXTOID, get_array_type(gbcode), TEXTOID};

		if (!OidIsValid(types[1]))
			elog(ERROR, "no array type for type %u", gbcode);
		release_many_plan = keep("DELETE FROM vms.cluster_owner o WHERE o.kind = $1 AND o.code = ANY ($2) AND o.district = $3",
								 3, types);
		cascade_plan = keep("SELECT vms._cluster_cascade($1, $2, $3)", 3, types);
	}
	get_typlenbyvalalign(gbcode, &typlen, &typbyval, &typalign);
	for (k = 0; k < KIND_N; k++)
	{
		if (n[k] == 0)
			continue;
		values[k][0] = CStringGetTextDatum(kind_names[k]);
		values[k][1] = PointerGetDatum(construct_array(codes[k], n[k], gbcode, typlen, typbyval, typalign));
		values[k][2] = CStringGetTextDatum(district);
		rc = SPI_execute_plan(release_many_plan, values[k], NULL, false, 0);
		if (rc < 0)
			elog(ERROR, "releasing the claims of deleted codes failed: %s", SPI_result_code_string(rc));
	}
	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("session_replication_role", "origin",
							 superuser() ? PGC_SUSET : PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/* the caller (a replicated row's apply) may have turned it off for its own lookups */
	(void) set_config_option("enable_seqscan", "on", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	for (k = 0; k < KIND_N; k++)
	{
		char	   *reason;
		Oid			outfunc;
		bool		isvarlena;

		if (n[k] == 0)
			continue;
		getTypeOutputInfo(gbcode, &outfunc, &isvarlena);
		reason = n[k] == 1
			? psprintf("district %s deleted %s %s", district, kind_names[k],
					   OidOutputFunctionCall(outfunc, codes[k][0]))
			: psprintf("cascade of district %s's delete of %d %s codes", district, n[k], kind_names[k]);
		(void) set_config_option("vms.change_reason", reason, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		rc = SPI_execute_plan(cascade_plan, values[k], NULL, false, 0);
		if (rc < 0)
			elog(ERROR, "vms._cluster_cascade failed: %s", SPI_result_code_string(rc));
	}
	AtEOXact_GUC(true, save_nestlevel);
	SPI_finish();
}

/* n codes of one kind the district deleted (not buffered: at once) */
static void
deleted_apply(int kind, int n, Datum *codes, const char *district, Oid gbcode)
{
	int			ns[KIND_N] = {0};
	Datum	   *cs[KIND_N] = {NULL};

	ns[kind] = n;
	cs[kind] = codes;
	deleted_apply_kinds(ns, cs, district, gbcode);
}

/* hands the buffered codes over, all kinds at once, and empties the buffer */
static void
deleted_flush(void)
{
	deleted_buffer_current();
	if (db.total == 0)
		return;
	deleted_apply_kinds(db.n, db.codes, db.district, db.gbcode);
	MemoryContextReset(db.cxt);
	deleted_buffer_empty();
}

/* a safety net, as tiles_xact_callback: nothing buffered goes missing */
static void
deleted_xact_callback(XactEvent event, void *arg)
{
	if ((event == XACT_EVENT_PRE_COMMIT || event == XACT_EVENT_PRE_PREPARE)
		&& db.lxid == MyProc->lxid && db.total > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("%d replicated deletes were not applied to the city's rows under them", db.total),
				 errdetail("The deferred trigger <table>_cluster_apply_deleted did not fire before the commit.")));
}

static void
deleted_buffer_add(int kind, Datum code, const char *district, Oid gbcode)
{
	MemoryContext old;

	deleted_buffer_current();
	if (!db.callback)
	{
		RegisterXactCallback(deleted_xact_callback, NULL);
		db.callback = true;
	}
	/* one transaction applies one subscription: one district */
	if (db.total > 0 && strcmp(db.district, district) != 0)
		deleted_flush();
	if (db.cxt == NULL)
		db.cxt = AllocSetContextCreate(TopTransactionContext, "vms deleted codes", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(db.cxt);
	if (db.district == NULL)
	{
		db.district = pstrdup(district);
		db.gbcode = gbcode;
		get_typlenbyvalalign(gbcode, &db.typlen, &db.typbyval, &db.typalign);
		if (db.typlen > 0 && db.typlen <= DELETED_KEY_MAX && (!db.typbyval || db.typlen <= sizeof(Datum)))
		{
			HASHCTL		ctl;

			ctl.keysize = sizeof(DeletedKey);
			ctl.entrysize = sizeof(DeletedKey);
			ctl.hcxt = db.cxt;
			db.keys = hash_create("vms deleted codes", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		}
	}
	if (db.n[kind] == db.cap[kind])
	{
		int			cap = db.cap[kind] == 0 ? 1024 : db.cap[kind] * 2;

		db.codes[kind] = db.cap[kind] == 0 ? palloc(cap * sizeof(Datum)) : repalloc(db.codes[kind], cap * sizeof(Datum));
		db.cap[kind] = cap;
	}
	db.codes[kind][db.n[kind]++] = datumCopy(code, db.typbyval, db.typlen);
	db.total++;
	if (db.keys != NULL)
	{
		DeletedKey	key;

		deleted_key(&key, kind, code);
		(void) hash_search(db.keys, &key, HASH_ENTER, NULL);
	}
	MemoryContextSwitchTo(old);
	if (db.n[kind] >= DELETED_BUFFER_MAX)
		deleted_flush();
}

/*
 * vms._cluster_apply_deleted_due(): the WHEN of the flush triggers: true for
 * the first code of a transaction buffered since the last flush event, so
 * that one event is queued, not one a row.
 */
Datum
vms_cluster_apply_deleted_due(PG_FUNCTION_ARGS)
{
	deleted_buffer_current();
	if (db.total == 0 || db.flush_queued)
		PG_RETURN_BOOL(false);
	db.flush_queued = true;
	PG_RETURN_BOOL(true);
}

/* vms._cluster_apply_deleted_flush(): the deferred flush at commit */
Datum
vms_cluster_apply_deleted_flush(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("vms._cluster_apply_deleted_flush() must be an AFTER row trigger")));
	deleted_buffer_current();
	db.flush_queued = false;
	deleted_flush();
	return PointerGetDatum(NULL);
}

/* a re-copied row replacing the city's copy: its DELETE is no district's delete */
static bool replacing = false;

Datum
vms_cluster_apply_owned(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	HeapTuple	ret;
	HeapTuple	keyrow;
	const char *src;
	const char *district;
	const char *tbl;
	const char *op;
	char	   *owner = NULL;
	int			kind;
	int			attno;
	bool		isnull;
	Datum		code;
	Oid			gbcode;
	Datum		args[3];
	int			save_nestlevel;
	Oid			ns;
	Snapshot	snap;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("vms._cluster_apply_owned() must be a BEFORE row trigger")));
	rel = td->tg_relation;
	desc = RelationGetDescr(rel);
	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
		ret = keyrow = td->tg_trigtuple, op = "INSERT";
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		ret = td->tg_newtuple, keyrow = td->tg_trigtuple, op = "UPDATE";
	else
		ret = keyrow = td->tg_trigtuple, op = "DELETE";

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* which subscription this backend applies, cached in the session */
	src = GetConfigOption("vms.cluster_applying", true, false);
	if (src == NULL || src[0] == '\0')
	{
		if (SPI_execute("SELECT vms._cluster_applying()", false, 0) < 0)
			elog(ERROR, "vms._cluster_applying() failed");
		src = GetConfigOption("vms.cluster_applying", true, false);
	}
	if (src == NULL || strncmp(src, "district:", 9) != 0)
	{
		SPI_finish();
		return PointerGetDatum(ret);
	}
	district = pstrdup(src + 9);

	tbl = RelationGetRelationName(rel);
	for (kind = 0; kind < KIND_N; kind++)
		if (strcmp(tbl, kind_names[kind]) == 0)
			break;
	if (kind == KIND_N)
		elog(ERROR, "vms._cluster_apply_owned() fired for vms.%s", tbl);
	attno = SPI_fnumber(desc, "code");
	if (attno <= 0)
		elog(ERROR, "vms.%s has no code column", tbl);
	gbcode = SPI_gettypeid(desc, attno);
	code = SPI_getbinval(keyrow, desc, attno, &isnull);
	if (isnull)
		elog(ERROR, "a replicated row of vms.%s without a code", tbl);

	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	prepare_plans(gbcode);

	args[0] = CStringGetTextDatum(kind_names[kind]);
	args[1] = code;
	args[2] = CStringGetTextDatum(district);
	ns = RelationGetNamespace(rel);
	/* the re-copy's DELETE of the city's copy (below): the row comes back at once */
	if (replacing && TRIGGER_FIRED_BY_DELETE(td->tg_event))
		goto apply;
	/*
	 * codes deleted earlier in this transaction are done with before a row
	 * whose fate depends on them comes: the code itself or, for an UPDATE,
	 * its new code (their claims are released), or a code the city holds a
	 * row under (the pending cascade may delete it); the lookups must then
	 * see it.  Other rows leave the buffer alone, so that deletes mixed
	 * with other changes stay set-based.
	 */
	snap = GetActiveSnapshot();
	if (!TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		bool		due = deleted_pending(kind, code);

		if (!due && db.total > 0 && TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		{
			Datum		nc = SPI_getbinval(ret, desc, attno, &isnull);

			due = !isnull && deleted_pending(kind, nc);
		}
		if (!due && db.total > 0 && TRIGGER_FIRED_BY_INSERT(td->tg_event))
			due = code_present(rel, code, snap);
		if (due)
		{
			deleted_flush();
			snap = GetLatestSnapshot();
		}
	}
	owner = owner_of(ns, kind, code, snap);

	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
	{
		bool		present = code_present(rel, code, snap);

		if (owner == NULL && !present)
		{
			run(claim_plan, args, NULL, false);
			/*
			 * availability runs of the code that arrived before it was
			 * anyone's (tables are first copied in parallel) from another
			 * district, or the city's own: only the owner's are counted
			 */
			if (kind <= 1 && strays_present(ns, kind, code, district))
				run(strays_plan[kind], args + 1, NULL, false);
			goto apply;
		}
		if (owner != NULL && strcmp(owner, district) == 0)
		{
			if (present)
			{
				/* copied again: the district's row replaces the city's copy */
				char		sql[200];
				int			rc;

				snprintf(sql, sizeof(sql), "DELETE FROM vms.%s x WHERE x.code = $1", kind_names[kind]);
				/*
				 * that delete goes through this trigger, which lets it pass
				 * as it is: the claim stays, and the city's rows under the
				 * code stay with the row that replaces it
				 */
				replacing = true;
				PG_TRY();
				{
					rc = SPI_execute_with_args(sql, 1, &gbcode, &code, NULL, false, 0);
				}
				PG_FINALLY();
				{
					replacing = false;
				}
				PG_END_TRY();
				if (rc < 0)
					elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
				run(claim_again_plan, args, NULL, false);
			}
			goto apply;
		}
		goto conflict;
	}
	if (owner == NULL || strcmp(owner, district) != 0)
		goto conflict;
	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		Datum		newcode = SPI_getbinval(ret, desc, attno, &isnull);
		Form_pg_attribute att = TupleDescAttr(desc, attno - 1);

		if (isnull)
			elog(ERROR, "a replicated row of vms.%s without a code", tbl);
		/* the code changed: the sender must own the new one too */
		if (!datumIsEqual(code, newcode, att->attbyval, att->attlen))
		{
			code = newcode;
			args[1] = code;
			owner = owner_of(ns, kind, code, snap);
			if (owner == NULL || strcmp(owner, district) != 0)
				goto conflict;
		}
	}
	if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		/*
		 * the claim is released, and the city's own rows under the code
		 * follow (vms._cluster_cascade), with the other codes this
		 * transaction deletes: one statement each for all of them
		 */
		if (deleted_buffering(rel))
			deleted_buffer_add(kind, code, district, gbcode);
		else
			deleted_apply(kind, 1, &code, district, gbcode);
	}

apply:
	AtEOXact_GUC(true, save_nestlevel);
	SPI_finish();
	return PointerGetDatum(ret);

conflict:
	record_conflict(district, owner, rel, op, gbcode, code, ret);
	AtEOXact_GUC(true, save_nestlevel);
	SPI_finish();
	return PointerGetDatum(NULL);
}

/*
 * vms._cluster_apply_tiles_insert(): the map's cluster cells for a channel
 * the apply worker inserts or deletes (vms._cluster_apply_tiles keeps
 * UPDATE).  AFTER INSERT OR DELETE row trigger, ENABLE REPLICA; a local
 * session's inserts and deletes are counted by the statement triggers of
 * 11_tiles.sql.  The cells' arithmetic is vms._channel_cells's
 * (11_tiles.sql), as for every other writer of the cells: an inserted
 * channel joins its cells (n 1, its online flag, its code), a deleted one
 * leaves them (n -1, minus its online flag, no code).
 *
 * In a logical replication worker (outside a subtransaction) the channel's
 * point, n, online change and code are only buffered in the transaction's
 * memory, and folded into vms.channel_cluster_delta set-based, as the
 * statement trigger does for a local statement: by the deferred constraint
 * trigger channel_cluster_apply_tiles_flush at the transaction's commit
 * (before it: the cells commit with the channels or not at all, so a crash
 * loses nothing and counts nothing twice), or at once when the buffer holds
 * TILES_BUFFER_MAX rows.  Per row that replaced an INSERT of 13 signed rows
 * (one a level of zooms 6-18) through SPI, which was a third of the city's
 * apply time for a large district import; for a delete the same INSERT
 * (from PL/pgSQL) was four fifths of the city's apply time of a district's
 * mass delete (100,000 channels: 7.5 s, 0.9 s with the replica triggers
 * off).  Anywhere else (a session in
 * replica mode, a subtransaction, or the flush trigger disabled) each row
 * is appended at once, through the same statement.
 */
PG_FUNCTION_INFO_V1(vms_cluster_apply_tiles_insert);
PG_FUNCTION_INFO_V1(vms_cluster_apply_tiles_flush);
PG_FUNCTION_INFO_V1(vms_cluster_apply_tiles_due);

#define TILES_BUFFER_MAX 50000
#define TILES_FLUSH_TRIGGER "channel_cluster_apply_tiles_flush"

static SPIPlanPtr tiles_plan;

/* the apply worker's buffered channels of the current transaction */
static struct
{
	LocalTransactionId lxid;	/* the transaction they belong to */
	bool		flush_queued;	/* the deferred flush trigger is queued */
	bool		callback;		/* tiles_xact_callback registered */
	MemoryContext cxt;			/* under TopTransactionContext */
	int			n;
	int			cap;
	Datum	   *xs;				/* the Web-Mercator points */
	Datum	   *ys;
	Datum	   *dn;				/* 1 joining (insert), -1 leaving (delete) */
	Datum	   *online;			/* the online change: 0/1, 0/-1 */
	Datum	   *codes;
	bool	   *nocode;			/* a leaving channel has no code */
}			tb;

/* the buffer of this transaction (forgotten when it belonged to another) */
static void
tiles_buffer_current(void)
{
	if (tb.lxid == MyProc->lxid)
		return;
	/* a transaction that ended without flushing aborted: its memory is gone */
	tb.lxid = MyProc->lxid;
	tb.flush_queued = false;
	tb.cxt = NULL;
	tb.n = tb.cap = 0;
	tb.xs = tb.ys = tb.dn = tb.online = tb.codes = NULL;
	tb.nocode = NULL;
}

/* PostGIS's ST_X and ST_Y, for the points' coordinates */
static FmgrInfo st_x_fn;
static FmgrInfo st_y_fn;
static Oid	st_geom_type;

/*
 * The Web-Mercator x and y of a point (geom_3857, of PostGIS's type
 * geom_type); false for an empty point, which counts nowhere (as a NULL x
 * in vms._channel_cells).
 */
static bool
tiles_point(Oid geom_type, Datum geom, Datum *x, Datum *y)
{
	LOCAL_FCINFO(fcinfo, 1);

	if (st_geom_type != geom_type)
	{
		HeapTuple	tt = SearchSysCache1(TYPEOID, ObjectIdGetDatum(geom_type));
		char	   *ns;

		if (!HeapTupleIsValid(tt))
			elog(ERROR, "cache lookup failed for type %u", geom_type);
		ns = get_namespace_name(((Form_pg_type) GETSTRUCT(tt))->typnamespace);
		ReleaseSysCache(tt);
		fmgr_info_cxt(LookupFuncName(list_make2(makeString(ns), makeString("st_x")), 1, &geom_type, false),
					  &st_x_fn, TopMemoryContext);
		fmgr_info_cxt(LookupFuncName(list_make2(makeString(ns), makeString("st_y")), 1, &geom_type, false),
					  &st_y_fn, TopMemoryContext);
		st_geom_type = geom_type;
	}
	InitFunctionCallInfoData(*fcinfo, &st_x_fn, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = geom;
	fcinfo->args[0].isnull = false;
	*x = FunctionCallInvoke(fcinfo);
	if (fcinfo->isnull)
		return false;
	InitFunctionCallInfoData(*fcinfo, &st_y_fn, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = geom;
	fcinfo->args[0].isnull = false;
	*y = FunctionCallInvoke(fcinfo);
	return !fcinfo->isnull;
}

/*
 * Appends n channels (Web-Mercator x, y as float8, n as 1 joining or -1
 * leaving, online changes, codes, NULL where nocode) to
 * vms.channel_cluster_delta: vms._channel_cells's rows, as the statement
 * triggers append them.
 */
static void
tiles_append(int n, Datum *xs, Datum *ys, Datum *dn, Datum *online, Datum *codes, bool *nocode)
{
	Datum		values[5];
	int			rc;
	int			dims[1];
	int			lbs[1] = {1};

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (tiles_plan == NULL)
	{
		Oid			types[5] = {FLOAT8ARRAYOID, FLOAT8ARRAYOID, INT4ARRAYOID, INT4ARRAYOID, TEXTARRAYOID};

		tiles_plan = keep("INSERT INTO vms.channel_cluster_delta (level, cx, cy, n, n_online, sx, sy, code, gone) "
						  "SELECT c.level, c.cx, c.cy, c.n, c.n_online, c.sx, c.sy, c.code, c.gone "
						  "FROM vms._channel_cells($1, $2, $3, $4, $5) c", 5, types);
	}
	/* the arrays in SPI's memory, gone at SPI_finish */
	dims[0] = n;
	values[0] = PointerGetDatum(construct_array(xs, n, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[1] = PointerGetDatum(construct_array(ys, n, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[2] = PointerGetDatum(construct_array(dn, n, INT4OID, sizeof(int32), true, TYPALIGN_INT));
	values[3] = PointerGetDatum(construct_array(online, n, INT4OID, sizeof(int32), true, TYPALIGN_INT));
	values[4] = PointerGetDatum(construct_md_array(codes, nocode, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
	rc = SPI_execute_plan(tiles_plan, values, NULL, false, 0);
	if (rc < 0)
		elog(ERROR, "appending to the map's cluster cells failed: %s", SPI_result_code_string(rc));
	SPI_finish();
}

/* appends the buffered channels (tiles_append) and empties the buffer */
static void
tiles_flush(void)
{
	tiles_buffer_current();
	if (tb.n == 0)
		return;
	tiles_append(tb.n, tb.xs, tb.ys, tb.dn, tb.online, tb.codes, tb.nocode);
	MemoryContextReset(tb.cxt);
	tb.n = tb.cap = 0;
	tb.xs = tb.ys = tb.dn = tb.online = tb.codes = NULL;
	tb.nocode = NULL;
}

/*
 * A safety net: buffered channels the flush trigger did not fold in (it
 * always does, but for a bug) stop the commit rather than go missing.
 */
static void
tiles_xact_callback(XactEvent event, void *arg)
{
	if ((event == XACT_EVENT_PRE_COMMIT || event == XACT_EVENT_PRE_PREPARE)
		&& tb.lxid == MyProc->lxid && tb.n > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("%d replicated channels were not counted in the map's cluster cells", tb.n),
				 errdetail("The deferred trigger %s on vms.channel did not fire before the commit.", TILES_FLUSH_TRIGGER)));
}

/* buffers a channel joining (n 1, with its code) or leaving (n -1, without) */
static void
tiles_buffer_add(Relation rel, Datum x, Datum y, int n, int online, HeapTuple row, int code_att)
{
	TupleDesc	desc = RelationGetDescr(rel);
	MemoryContext old;

	tiles_buffer_current();
	if (!tb.callback)
	{
		RegisterXactCallback(tiles_xact_callback, NULL);
		tb.callback = true;
	}
	if (tb.cxt == NULL)
	{
		tb.cxt = AllocSetContextCreate(TopTransactionContext, "vms map cells", ALLOCSET_DEFAULT_SIZES);
	}
	old = MemoryContextSwitchTo(tb.cxt);
	if (tb.n == tb.cap)
	{
		int			cap = tb.cap == 0 ? 1024 : tb.cap * 2;

		if (tb.cap == 0)
		{
			tb.xs = palloc(cap * sizeof(Datum));
			tb.ys = palloc(cap * sizeof(Datum));
			tb.dn = palloc(cap * sizeof(Datum));
			tb.online = palloc(cap * sizeof(Datum));
			tb.codes = palloc(cap * sizeof(Datum));
			tb.nocode = palloc(cap * sizeof(bool));
		}
		else
		{
			tb.xs = repalloc(tb.xs, cap * sizeof(Datum));
			tb.ys = repalloc(tb.ys, cap * sizeof(Datum));
			tb.dn = repalloc(tb.dn, cap * sizeof(Datum));
			tb.online = repalloc(tb.online, cap * sizeof(Datum));
			tb.codes = repalloc(tb.codes, cap * sizeof(Datum));
			tb.nocode = repalloc(tb.nocode, cap * sizeof(bool));
		}
		tb.cap = cap;
	}
	/* copied into the buffer's context: float8 is by reference on 32-bit */
	tb.xs[tb.n] = Float8GetDatum(DatumGetFloat8(x));
	tb.ys[tb.n] = Float8GetDatum(DatumGetFloat8(y));
	tb.dn[tb.n] = Int32GetDatum(n);
	tb.online[tb.n] = Int32GetDatum(online);
	tb.nocode[tb.n] = n < 0;
	tb.codes[tb.n] = n < 0 ? (Datum) 0 : CStringGetTextDatum(SPI_getvalue(row, desc, code_att));
	tb.n++;
	MemoryContextSwitchTo(old);
	if (tb.n >= TILES_BUFFER_MAX)
		tiles_flush();
}

Datum
vms_cluster_apply_tiles_insert(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	int			g_att;
	int			on_att;
	int			code_att;
	bool		isnull;
	bool		del;
	bool		nocode;
	Datum		geom;
	Datum		values[5];		/* x, y, n (1/-1), online change, code */

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event)
		|| !(TRIGGER_FIRED_BY_INSERT(td->tg_event) || TRIGGER_FIRED_BY_DELETE(td->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("vms._cluster_apply_tiles_insert() must be an AFTER INSERT or DELETE row trigger")));
	/* the inserted row, or the deleted one */
	del = TRIGGER_FIRED_BY_DELETE(td->tg_event);
	/* only the apply worker's rows (ENABLE TRIGGER USER would count a local insert twice) */
	if (SessionReplicationRole != SESSION_REPLICATION_ROLE_REPLICA)
		return PointerGetDatum(NULL);
	desc = RelationGetDescr(td->tg_relation);
	g_att = SPI_fnumber(desc, "geom_3857");
	on_att = SPI_fnumber(desc, "online");
	code_att = SPI_fnumber(desc, "code");
	if (g_att <= 0 || on_att <= 0 || code_att <= 0)
		elog(ERROR, "vms._cluster_apply_tiles_insert() fired for a table without geom_3857, online and code");
	geom = SPI_getbinval(td->tg_trigtuple, desc, g_att, &isnull);
	if (isnull || !tiles_point(SPI_gettypeid(desc, g_att), geom, &values[0], &values[1]))
		return PointerGetDatum(NULL);
	values[2] = Int32GetDatum(del ? -1 : 1);
	values[3] = Int32GetDatum((DatumGetBool(SPI_getbinval(td->tg_trigtuple, desc, on_att, &isnull)) && !isnull ? 1 : 0)
							  * (del ? -1 : 1));

	if (apply_top_level() && flush_trigger_enabled(td->tg_relation, TILES_FLUSH_TRIGGER, del))
	{
		tiles_buffer_add(td->tg_relation, values[0], values[1], DatumGetInt32(values[2]), DatumGetInt32(values[3]),
						 td->tg_trigtuple, code_att);
		return PointerGetDatum(NULL);
	}

	nocode = del;
	values[4] = del ? (Datum) 0 : CStringGetTextDatum(SPI_getvalue(td->tg_trigtuple, desc, code_att));
	tiles_append(1, &values[0], &values[1], &values[2], &values[3], &values[4], &nocode);
	return PointerGetDatum(NULL);
}

/*
 * vms._cluster_apply_tiles_due(): the WHEN of the flush trigger: true for
 * the first channel of a transaction that the apply worker buffers (and the
 * first after each flush), so that one flush event is queued, not one a row.
 */
Datum
vms_cluster_apply_tiles_due(PG_FUNCTION_ARGS)
{
	if (!apply_top_level())
		PG_RETURN_BOOL(false);
	tiles_buffer_current();
	if (tb.flush_queued)
		PG_RETURN_BOOL(false);
	tb.flush_queued = true;
	PG_RETURN_BOOL(true);
}

/*
 * vms._cluster_apply_tiles_flush(): the deferred constraint trigger that
 * folds the buffered channels into vms.channel_cluster_delta at commit.
 */
Datum
vms_cluster_apply_tiles_flush(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("vms._cluster_apply_tiles_flush() must be an AFTER row trigger")));
	tiles_buffer_current();
	tb.flush_queued = false;
	tiles_flush();
	return PointerGetDatum(NULL);
}

/*
 * vms._cluster_has_levels(district): has this district sent security
 * levels above 1 (vms.cluster_security_assignment).  The WHEN of the
 * trigger that drops the compiled policy when a district with levels
 * claims or lets go of a channel: it runs for every code a district claims,
 * where a PL/pgSQL function and its query cost more than the probe of the
 * primary key's index (district first) it is now.  As the STABLE function
 * it replaces, it reads with the statement's snapshot.
 */
PG_FUNCTION_INFO_V1(vms_cluster_has_levels);

Datum
vms_cluster_has_levels(PG_FUNCTION_ARGS)
{
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tup;
	Datum		district;
	int			level_att;
	bool		found = false;

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(false);
	district = PG_GETARG_DATUM(0);
	rel = open_vms(get_func_namespace(fcinfo->flinfo->fn_oid), "cluster_security_assignment");
	level_att = column(rel, "level");
	scan = pk_scan(rel, 1, &district, ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot());
	while (!found && HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		level = heap_getattr(tup, level_att, RelationGetDescr(rel), &isnull);

		found = !isnull && DatumGetInt16(level) > 1;
	}
	systable_endscan(scan);
	table_close(rel, NoLock);
	PG_RETURN_BOOL(found);
}
