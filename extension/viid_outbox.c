/*
 * viid_outbox.c — the insert behind vms.viid_enqueue_many (issue 20).
 *
 * vms._viid_outbox_insert(upstream, kind, id_path, docs) inserts one outbox
 * row per document with one INSERT ... SELECT over unnest and returns the
 * new ids in the order of the documents.  The caller (vms.viid_enqueue_many)
 * has already checked the kind and the upstream; the documents are checked
 * here, in one pass that also takes each one's id (the checks and errors
 * of vms.viid_enqueue, naming the first bad document's position).
 *
 * Half of a plain INSERT's time over many documents went to its two
 * foreign-key checks (viid_outbox -> viid_upstream and -> viid_kind): per
 * row PostgreSQL 15 queues an after-row trigger that runs
 *     SELECT 1 FROM ONLY <parent> x WHERE key = $1 FOR KEY SHARE OF x
 * through SPI, starting an executor for it each time.  Here every row has
 * the same upstream and kind, so that check is the same for all of them:
 * it is run once for each parent (as the parent's owner, as the foreign-key
 * trigger does) before the insert, and the per-row triggers are not queued
 * for this one statement.  The parent rows stay locked FOR KEY SHARE until
 * the end of the transaction exactly as after the per-row checks, so a
 * concurrent delete or key change of the upstream or the kind waits for us
 * and then meets the parent-side foreign-key triggers, which are untouched.
 *
 * The per-row triggers are left out only when they provably are nothing
 * else: the outbox has no rules and every trigger on it is the insert or
 * update check of one of exactly these two foreign keys (upstream ->
 * viid_upstream.name, kind -> viid_kind.kind).  Any other trigger, rule or
 * foreign key (a user's audit trigger, say) and the insert runs as a plain
 * INSERT with all its triggers.  The relation is locked (ROW EXCLUSIVE, as
 * the INSERT takes it) before the triggers are inspected, so no trigger can
 * be added between the look and the insert.
 *
 * The triggers are left out through session_replication_role's variable,
 * set to replica for the INSERT alone and restored even on error; the GUC
 * itself is not set (it is superuser-only, and setting it flushes the
 * session's plan cache, which matters only for rules, and there are none).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(vms_viid_outbox_insert);

/* one foreign key of the outbox: its column and the parent's key column */
typedef struct OutboxParent
{
	const char *column;			/* in vms.viid_outbox */
	const char *parent;			/* table in schema vms */
	const char *key;			/* its key column */
	Oid			parent_oid;
	Oid			conoid;			/* the constraint found, or InvalidOid */
} OutboxParent;

#define OUTBOX_PARENTS 2

static SPIPlanPtr insert_plan = NULL;

/* the single column of an int2[] catalog array, or 0 */
static AttrNumber
single_attnum(HeapTuple tup, int attno)
{
	bool		isnull;
	Datum		d = SysCacheGetAttr(CONSTROID, tup, attno, &isnull);
	ArrayType  *a;

	if (isnull)
		return 0;
	a = DatumGetArrayTypeP(d);
	if (ARR_NDIM(a) != 1 || ARR_DIMS(a)[0] != 1 || ARR_HASNULL(a) || ARR_ELEMTYPE(a) != INT2OID)
		return 0;
	return ((int16 *) ARR_DATA_PTR(a))[0];
}

/*
 * Whether every trigger of the outbox is the check of one of its two
 * foreign keys, and it has no rules; fills in the constraints found.
 */
static bool
only_fk_checks(Relation rel, OutboxParent *parents)
{
	TriggerDesc *td = rel->trigdesc;

	if (rel->rd_rules != NULL)
		return false;
	for (int i = 0; td != NULL && i < td->numtriggers; i++)
	{
		Trigger    *t = &td->triggers[i];
		HeapTuple	tup;
		Form_pg_constraint con;
		bool		known = false;

		if ((t->tgfoid != F_RI_FKEY_CHECK_INS && t->tgfoid != F_RI_FKEY_CHECK_UPD) ||
			!OidIsValid(t->tgconstraint))
			return false;
		tup = SearchSysCache1(CONSTROID, ObjectIdGetDatum(t->tgconstraint));
		if (!HeapTupleIsValid(tup))
			return false;
		con = (Form_pg_constraint) GETSTRUCT(tup);
		for (int p = 0; p < OUTBOX_PARENTS && !known; p++)
		{
			OutboxParent *op = &parents[p];

			known = con->contype == CONSTRAINT_FOREIGN
				&& con->conrelid == RelationGetRelid(rel)
				&& con->confrelid == op->parent_oid
				&& single_attnum(tup, Anum_pg_constraint_conkey) == get_attnum(RelationGetRelid(rel), op->column)
				&& single_attnum(tup, Anum_pg_constraint_confkey) == get_attnum(op->parent_oid, op->key);
			if (known)
				op->conoid = con->oid;
		}
		ReleaseSysCache(tup);
		if (!known)
			return false;
	}
	/* both foreign keys must be there: their checks are what we do here */
	for (int p = 0; p < OUTBOX_PARENTS; p++)
		if (!OidIsValid(parents[p].conoid))
			return false;
	return true;
}

/* the owner of a table, as RelationGetForm(rel)->relowner */
static Oid
rel_owner(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * What the foreign-key trigger does for each row, once: the parent row with
 * this key, locked FOR KEY SHARE, read as the parent's owner (row security
 * of the parent does not apply, as for a foreign key).
 */
static void
lock_parent(Relation rel, const OutboxParent *op, text *value)
{
	Oid			save_userid;
	int			save_sec_context;
	char	   *sql;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {PointerGetDatum(value)};
	int			rc;

	sql = psprintf("SELECT 1 FROM ONLY vms.%s x WHERE x.%s OPERATOR(pg_catalog.=) $1 FOR KEY SHARE OF x",
				   quote_identifier(op->parent), quote_identifier(op->key));
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(rel_owner(op->parent_oid),
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE | SECURITY_NOFORCE_RLS);
	rc = SPI_execute_with_args(sql, 1, argtypes, args, NULL, false, 1);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
				 errmsg("insert or update on table \"%s\" violates foreign key constraint \"%s\"",
						RelationGetRelationName(rel), get_constraint_name(op->conoid)),
				 errdetail("Key (%s)=(%s) is not present in table \"%s\".",
						   op->column, text_to_cstring(value), op->parent)));
}

/*
 * Each document's id (doc #>> id_path), after the checks of
 * vms.viid_enqueue: a JSON object, with a non-empty id.  The first document
 * that fails them fails the call, naming its position.
 */
static ArrayType *
document_ids(ArrayType *docs, ArrayType *id_path, const char *kind)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	Datum	   *path;
	bool	   *path_nulls;
	int			npath;
	Datum	   *ids;

	deconstruct_array(id_path, TEXTOID, -1, false, TYPALIGN_INT, &path, &path_nulls, &npath);
	for (int k = 0; k < npath; k++)
		if (path_nulls[k])
			elog(ERROR, "vms._viid_outbox_insert: id path has a null");
	deconstruct_array(docs, JSONBOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	ids = palloc(sizeof(Datum) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		Jsonb	   *jb;
		bool		isnull;
		Datum		id;

		jb = nulls[i] ? NULL : DatumGetJsonbP(elems[i]);
		if (jb == NULL || !JB_ROOT_IS_OBJECT(jb))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("document %d must be a JSON object", i + 1)));
		id = jsonb_get_element(jb, path, npath, &isnull, true);
		if (isnull || VARSIZE_ANY_EXHDR(DatumGetPointer(id)) == 0)
		{
			StringInfoData p;

			initStringInfo(&p);
			for (int k = 0; k < npath; k++)
				appendStringInfo(&p, "%s%s", k > 0 ? "." : "", TextDatumGetCString(path[k]));
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s document %d lacks its id field \"%s\"", kind, i + 1, p.data),
					 errhint("Records need stable ids so the receiver can de-duplicate repeated deliveries.")));
		}
		ids[i] = id;
	}
	return construct_array(ids, n, TEXTOID, -1, false, TYPALIGN_INT);
}

Datum
vms_viid_outbox_insert(PG_FUNCTION_ARGS)
{
	OutboxParent parents[OUTBOX_PARENTS] = {
		{"upstream", "viid_upstream", "name", InvalidOid, InvalidOid},
		{"kind", "viid_kind", "kind", InvalidOid, InvalidOid},
	};
	Oid			nsp;
	Oid			outbox;
	Relation	rel;
	bool		fast;
	Datum		args[4];
	int			rc;
	uint64		n;
	Datum	   *ids;
	MemoryContext callcxt = CurrentMemoryContext;
	MemoryContext spicxt;
	ArrayType  *object_ids;

	/*
	 * Not declared STRICT, so that a call without EXECUTE is refused even
	 * with null arguments (the planner folds a strict call of nulls to null
	 * without checking); nulls give null as a strict function would.
	 */
	for (int i = 0; i < 4; i++)
		if (PG_ARGISNULL(i))
			PG_RETURN_NULL();
	object_ids = document_ids(PG_GETARG_ARRAYTYPE_P(3), PG_GETARG_ARRAYTYPE_P(2), text_to_cstring(PG_GETARG_TEXT_PP(1)));
	nsp = get_namespace_oid("vms", false);
	outbox = get_relname_relid("viid_outbox", nsp);
	for (int p = 0; p < OUTBOX_PARENTS; p++)
		parents[p].parent_oid = get_relname_relid(parents[p].parent, nsp);
	if (!OidIsValid(outbox) || !OidIsValid(parents[0].parent_oid) || !OidIsValid(parents[1].parent_oid))
		elog(ERROR, "vms.viid_outbox or its parent tables are missing");

	/* the INSERT's own lock, taken before the triggers are looked at */
	rel = table_open(outbox, RowExclusiveLock);
	fast = only_fk_checks(rel, parents);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (fast)
	{
		lock_parent(rel, &parents[0], PG_GETARG_TEXT_PP(0));
		lock_parent(rel, &parents[1], PG_GETARG_TEXT_PP(1));
	}
	table_close(rel, NoLock);

	if (insert_plan == NULL)
	{
		Oid			argtypes[4] = {TEXTOID, TEXTOID, TEXTARRAYOID, JSONBOID};
		SPIPlanPtr	plan;

		argtypes[3] = get_array_type(JSONBOID);
		plan = SPI_prepare("INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc) "
						   "SELECT $1, $2, u.o, u.d "
						   "FROM ROWS FROM (pg_catalog.unnest($3), pg_catalog.unnest($4)) WITH ORDINALITY u(o, d, n) ORDER BY u.n "
						   "RETURNING id", 4, argtypes);
		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		insert_plan = plan;
	}
	for (int i = 0; i < 4; i++)
		args[i] = PG_GETARG_DATUM(i);
	args[2] = PointerGetDatum(object_ids);

	if (fast)
	{
		int			save_role = SessionReplicationRole;
		volatile int fast_rc = 0;

		/* the foreign-key checks were done above for every row */
		SessionReplicationRole = SESSION_REPLICATION_ROLE_REPLICA;
		PG_TRY();
		{
			fast_rc = SPI_execute_plan(insert_plan, args, NULL, false, 0);
		}
		PG_FINALLY();
		{
			SessionReplicationRole = save_role;
		}
		PG_END_TRY();
		rc = fast_rc;
	}
	else
		rc = SPI_execute_plan(insert_plan, args, NULL, false, 0);
	if (rc != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));

	n = SPI_processed;
	spicxt = MemoryContextSwitchTo(callcxt);
	ids = palloc(sizeof(Datum) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		ids[i] = Int64GetDatum(DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull)));
	}
	MemoryContextSwitchTo(spicxt);
	SPI_finish();
	PG_RETURN_ARRAYTYPE_P(construct_array(ids, (int) n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}
