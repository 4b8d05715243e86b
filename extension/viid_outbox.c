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
#include "access/xact.h"
#include "catalog/pg_collation.h"
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
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/resowner.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "vms.h"

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
	SetUserIdAndSecContext(vms_rel_owner(op->parent_oid),
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

/* ---------------------------------------------------------------- templates */

/*
 * vms._viid_map_many(template, docs) maps every document as vms.viid_map
 * does, in one call: the PL/pgSQL function costs about 30 µs a document
 * (a loop, a jsonb rebuilt per field), this a few.  It takes only a
 * template of the documented shape (rename: an object of strings; values:
 * an object of objects; dates: an object of strings; defaults: an object;
 * required: an array of strings) and returns NULL for any other, so the
 * caller maps with vms.viid_map, whose meaning for odd shapes is its own.
 * The first document that fails fails the call with vms.viid_map's error
 * (code, message, hint) prefixed by its position ("document 3: ...").
 * The regress test viid checks its rows against vms.viid_map's.
 */
PG_FUNCTION_INFO_V1(vms_viid_map_many);

typedef struct MapPair
{
	char	   *key;
	int			keylen;
	JsonbValue	val;
} MapPair;

typedef struct MapDoc
{
	MapPair    *pairs;
	int			n;
	int			cap;
} MapDoc;

/* a JSON value as ->> gives it: a string's text, other scalars' and containers' JSON text */
static char *
value_text(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		case jbvBinary:
			return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
		default:
			return NULL;		/* null */
	}
}

static MapPair *
map_find(MapDoc *d, const char *key, int keylen)
{
	for (int i = d->n - 1; i >= 0; i--)
		if (d->pairs[i].keylen == keylen && memcmp(d->pairs[i].key, key, keylen) == 0)
			return &d->pairs[i];
	return NULL;
}

/* set key to val: replaces its value if present (jsonb keeps the last of duplicates) */
static void
map_set(MapDoc *d, char *key, int keylen, JsonbValue *val)
{
	MapPair    *p = map_find(d, key, keylen);

	if (p == NULL)
	{
		if (d->n == d->cap)
		{
			d->cap = Max(16, d->cap * 2);
			d->pairs = d->pairs ? repalloc(d->pairs, sizeof(MapPair) * d->cap) : palloc(sizeof(MapPair) * d->cap);
		}
		p = &d->pairs[d->n++];
		p->key = key;
		p->keylen = keylen;
	}
	p->val = *val;
}

/* the pairs of an object container in storage order (values of nested containers as binary) */
static void
object_pairs(JsonbContainer *c, MapDoc *out)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;
	int			keylen = 0;

	out->pairs = NULL;
	out->n = out->cap = 0;
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			key = v.val.string.val;
			keylen = v.val.string.len;
		}
		else if (tok == WJB_VALUE)
		{
			if (out->n == out->cap)
			{
				out->cap = Max(16, out->cap * 2);
				out->pairs = out->pairs ? repalloc(out->pairs, sizeof(MapPair) * out->cap) : palloc(sizeof(MapPair) * out->cap);
			}
			out->pairs[out->n].key = key;
			out->pairs[out->n].keylen = keylen;
			out->pairs[out->n].val = v;
			out->n++;
		}
	}
}

static bool
is_object(JsonbValue *v)
{
	return v != NULL && v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

/* the template part, checked for the plain shape; false when it is not */
static bool
spec_part(Jsonb *spec, const char *name, bool want_object, MapDoc *out)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&spec->root, name, strlen(name), NULL);

	out->pairs = NULL;
	out->n = out->cap = 0;
	if (v == NULL)
		return true;
	if (v->type != jbvBinary || (want_object ? !JsonContainerIsObject(v->val.binary.data)
								 : !JsonContainerIsArray(v->val.binary.data)))
		return false;
	if (want_object)
		object_pairs(v->val.binary.data, out);
	else
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	e;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
			if (tok == WJB_ELEM)
			{
				if (e.type != jbvString)
					return false;
				map_set(out, e.val.string.val, e.val.string.len, &e);
			}
	}
	return true;
}

static void
map_error(int docno, int code, const char *hint, const char *fmt,...) pg_attribute_printf(4, 5);

static void
map_error(int docno, int code, const char *hint, const char *fmt,...)
{
	StringInfoData m;
	va_list		ap;

	initStringInfo(&m);
	appendStringInfo(&m, "document %d: ", docno);
	for (;;)
	{
		int			needed;

		va_start(ap, fmt);
		needed = appendStringInfoVA(&m, fmt, ap);
		va_end(ap);
		if (needed == 0)
			break;
		enlargeStringInfo(&m, needed);
	}
	if (hint)
		ereport(ERROR, (errcode(code), errmsg_internal("%s", m.data), errhint("%s", hint)));
	ereport(ERROR, (errcode(code), errmsg_internal("%s", m.data)));
}

/* to_char(to_timestamp(s, fmt)::timestamp, 'YYYYMMDDHH24MISS'), or NULL if that fails */
static char *
map_date(const char *s, const char *fmt)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	char	   *volatile result = NULL;

	/* as the PL/pgSQL block's EXCEPTION clause: a subtransaction */
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		Datum		tz = DirectFunctionCall2Coll(to_timestamp, DEFAULT_COLLATION_OID,
												 CStringGetTextDatum(s), CStringGetTextDatum(fmt));
		Datum		ts = DirectFunctionCall1(timestamptz_timestamp, tz);
		Datum		t = DirectFunctionCall2Coll(timestamp_to_char, DEFAULT_COLLATION_OID, ts,
												CStringGetTextDatum("YYYYMMDDHH24MISS"));

		result = text_to_cstring(DatumGetTextPP(t));
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		result = NULL;
	}
	PG_END_TRY();
	return result;
}

Datum
vms_viid_map_many(PG_FUNCTION_ARGS)
{
	char	   *tname;
	Jsonb	   *spec;
	MapDoc		rename, values, dates, defaults, required;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	Datum	   *out;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	MemoryContext callcxt = CurrentMemoryContext;
	MemoryContext doccxt;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	tname = text_to_cstring(PG_GETARG_TEXT_PP(0));

	/* the template, read as the caller (as vms.viid_map reads it) */
	args[0] = PG_GETARG_DATUM(0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT spec FROM vms.viid_template WHERE name OPERATOR(pg_catalog.=) $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read template");
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("template \"%s\" does not exist", tname)));
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		MemoryContext spicxt = MemoryContextSwitchTo(callcxt);

		spec = isnull ? NULL : DatumGetJsonbPCopy(d);
		MemoryContextSwitchTo(spicxt);
	}
	SPI_finish();

	if (spec == NULL || !JB_ROOT_IS_OBJECT(spec) ||
		!spec_part(spec, "rename", true, &rename) || !spec_part(spec, "values", true, &values) ||
		!spec_part(spec, "dates", true, &dates) || !spec_part(spec, "defaults", true, &defaults) ||
		!spec_part(spec, "required", false, &required))
		PG_RETURN_NULL();
	for (int i = 0; i < rename.n; i++)
		if (rename.pairs[i].val.type != jbvString && rename.pairs[i].val.type != jbvNull)
			PG_RETURN_NULL();
	for (int i = 0; i < values.n; i++)
		if (!is_object(&values.pairs[i].val))
			PG_RETURN_NULL();
	for (int i = 0; i < dates.n; i++)
		if (dates.pairs[i].val.type != jbvString)
			PG_RETURN_NULL();

	deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), JSONBOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	out = palloc(sizeof(Datum) * Max(n, 1));
	doccxt = AllocSetContextCreate(CurrentMemoryContext, "viid_map_many document", ALLOCSET_DEFAULT_SIZES);
	for (int i = 0; i < n; i++)
	{
		Jsonb	   *doc = nulls[i] ? NULL : DatumGetJsonbP(elems[i]);
		MapDoc		src, m;
		JsonbParseState *ps = NULL;
		JsonbValue *res;
		MemoryContext old;

		if (doc == NULL || !JB_ROOT_IS_OBJECT(doc))
			map_error(i + 1, ERRCODE_INVALID_PARAMETER_VALUE, NULL, "document must be a JSON object");
		old = MemoryContextSwitchTo(doccxt);

		/* renamed fields, in jsonb_each's order; the last of equal names wins */
		object_pairs(&doc->root, &src);
		m.pairs = NULL;
		m.n = m.cap = 0;
		for (int k = 0; k < src.n; k++)
		{
			MapPair    *r = map_find(&rename, src.pairs[k].key, src.pairs[k].keylen);

			if (r != NULL && r->val.type == jbvString)
				map_set(&m, r->val.val.string.val, r->val.val.string.len, &src.pairs[k].val);
			else
				map_set(&m, src.pairs[k].key, src.pairs[k].keylen, &src.pairs[k].val);
		}
		/* value maps, in the order of the template's keys */
		for (int k = 0; k < values.n; k++)
		{
			MapPair    *f = map_find(&m, values.pairs[k].key, values.pairs[k].keylen);
			JsonbContainer *vm = values.pairs[k].val.val.binary.data;
			char	   *s;
			JsonbValue *to;

			if (f == NULL || f->val.type == jbvNull)
				continue;
			s = value_text(&f->val);
			to = getKeyJsonValueFromContainer(vm, s, strlen(s), NULL);
			if (to == NULL)
			{
				MapDoc		known;
				StringInfoData h;

				object_pairs(vm, &known);
				initStringInfo(&h);
				appendStringInfoString(&h, "Known values: ");
				for (int j = 0; j < known.n; j++)
					appendStringInfo(&h, "%s%.*s", j > 0 ? ", " : "", known.pairs[j].keylen, known.pairs[j].key);
				appendStringInfoChar(&h, '.');
				MemoryContextSwitchTo(old);
				map_error(i + 1, ERRCODE_INVALID_PARAMETER_VALUE, h.data,
						  "field \"%.*s\" has value \"%s\" that template \"%s\" cannot map",
						  values.pairs[k].keylen, values.pairs[k].key, s, tname);
			}
			f->val = *to;
		}
		/* dates to yyyyMMddHHmmss */
		for (int k = 0; k < dates.n; k++)
		{
			MapPair    *f = map_find(&m, dates.pairs[k].key, dates.pairs[k].keylen);
			char	   *s;
			char	   *fmt;
			char	   *d;

			if (f == NULL || f->val.type != jbvString)
				continue;
			s = pnstrdup(f->val.val.string.val, f->val.val.string.len);
			fmt = pnstrdup(dates.pairs[k].val.val.string.val, dates.pairs[k].val.val.string.len);
			d = map_date(s, fmt);
			if (d == NULL)
			{
				MemoryContextSwitchTo(old);
				map_error(i + 1, ERRCODE_INVALID_DATETIME_FORMAT, NULL,
						  "field \"%.*s\" value \"%s\" is not a date in format \"%s\"",
						  dates.pairs[k].keylen, dates.pairs[k].key, s, fmt);
			}
			f->val.type = jbvString;
			f->val.val.string.val = d;
			f->val.val.string.len = strlen(d);
		}
		/* defaults for what is missing, then the required fields */
		for (int k = 0; k < defaults.n; k++)
			if (map_find(&m, defaults.pairs[k].key, defaults.pairs[k].keylen) == NULL)
				map_set(&m, defaults.pairs[k].key, defaults.pairs[k].keylen, &defaults.pairs[k].val);
		for (int k = 0; k < required.n; k++)
		{
			MapPair    *f = map_find(&m, required.pairs[k].key, required.pairs[k].keylen);

			if (f == NULL || f->val.type == jbvNull ||
				(f->val.type == jbvString && f->val.val.string.len == 0))
			{
				MemoryContextSwitchTo(old);
				map_error(i + 1, ERRCODE_NOT_NULL_VIOLATION, NULL, "field \"%.*s\" is required by template \"%s\"",
						  required.pairs[k].keylen, required.pairs[k].key, tname);
			}
		}
		pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
		for (int k = 0; k < m.n; k++)
		{
			JsonbValue	key;

			key.type = jbvString;
			key.val.string.val = m.pairs[k].key;
			key.val.string.len = m.pairs[k].keylen;
			pushJsonbValue(&ps, WJB_KEY, &key);
			pushJsonbValue(&ps, WJB_VALUE, &m.pairs[k].val);
		}
		res = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
		MemoryContextSwitchTo(callcxt);
		out[i] = JsonbPGetDatum(JsonbValueToJsonb(res));
		MemoryContextReset(doccxt);
	}
	MemoryContextDelete(doccxt);
	PG_RETURN_ARRAYTYPE_P(construct_array(out, n, JSONBOID, -1, false, TYPALIGN_INT));
}
