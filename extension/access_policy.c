/*
 * access_policy.c — row-level security for the ledger, fast enough to sit in
 * every scan and every write of vms.channel.
 *
 * vms.channel_visible(code, civil_code) answers "may the current user see
 * this channel": some grant of theirs (directly or through a role they are
 * a member of), valid now and not revoked, covers the channel — all,
 * its civil region, its catalogue subtree, one of its tags, or the channel
 * itself — at a security level at least the channel's.
 * vms.can_manage(code, civil_code) answers the same for the grants that
 * carry manage_ledger, for the role the session acts as: the write
 * policies of vms.channel, which a bulk import evaluates for every row it
 * writes.
 *
 * Each question's grants are compiled once into hash tables and kept across
 * statements and transactions.  They are thrown away when a grant, a
 * security assignment, a catalogue membership or a tag assignment changes
 * (triggers call vms._policy_changed(), which queues a relcache invalidation
 * that every backend receives at commit), when role membership changes, when
 * the user changes, and when a grant starts or expires.
 *
 * Whose grants they are is decided in SQL, by vms._grant_scope_action
 * (policy_query below): pg_has_role(user, vms.grantee_role(grantee,
 * grantee_oid)), so a grant counts only for members of the role it was made
 * to, not for a later role of the same name.  A role created, dropped or
 * renamed changes pg_authid, whose syscache callback (AUTHOID) throws the
 * compiled grants away, so the next check sees the change.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "nodes/makefuncs.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "gbcode.h"
#include "vms.h"

typedef struct CodeLevel
{
	GbCode		code;			/* hash key */
	int16		level;
} CodeLevel;

typedef struct RegionLevel
{
	char		prefix[9];		/* hash key: 2-8 digits, NUL padded */
	int16		level;
} RegionLevel;

typedef struct PolicyCache
{
	bool		valid;
	Oid			user;
	TimestampTz next_change;	/* a grant starts or ends: rebuild then */
	int16		all_level;		/* from grants on everything */
	HTAB	   *channels;		/* code → highest level granted */
	HTAB	   *regions;		/* civil prefix → highest level granted */
	HTAB	   *restricted;		/* code → its security level, when above 1 */
	MemoryContext cxt;
} PolicyCache;

/*
 * One compiled policy per question: what a user may see (grants of any
 * action) and what the acting role may write (grants with manage_ledger).
 */
typedef enum PolicyKind
{
	POLICY_VIEW,
	POLICY_MANAGE,
	POLICY_KINDS
} PolicyKind;

static PolicyCache caches[POLICY_KINDS];
static const char *const policy_query[POLICY_KINDS] = {
	"SELECT kind, ref, level, next_change FROM vms._grant_scope($1, $2)",
	"SELECT kind, ref, level, next_change FROM vms._grant_scope_action($1, $2, 'manage_ledger')",
};
static bool callbacks_registered = false;
static uint64 invalidations = 0;	/* bumped by every callback */
static bool building = false;
static Oid	grant_relid = InvalidOid;

static void
invalidate_all(void)
{
	for (int k = 0; k < POLICY_KINDS; k++)
		caches[k].valid = false;
	invalidations++;
}

static void
policy_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == grant_relid)
		invalidate_all();
}

static void
policy_syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	invalidate_all();
}

static void
register_callbacks(void)
{
	if (callbacks_registered)
		return;
	CacheRegisterRelcacheCallback(policy_relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHMEMMEMROLE, policy_syscache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, policy_syscache_callback, (Datum) 0);
	callbacks_registered = true;
}

static Oid
lookup_grant_relid(void)
{
	return RangeVarGetRelid(makeRangeVar("vms", "access_grant", -1), NoLock, false);
}

static HTAB *
make_table(MemoryContext cxt, const char *name, Size keysize, Size entrysize, bool blobs)
{
	HASHCTL		ctl;

	ctl.keysize = keysize;
	ctl.entrysize = entrysize;
	ctl.hcxt = cxt;
	return hash_create(name, 256, &ctl, HASH_ELEM | HASH_CONTEXT | (blobs ? HASH_BLOBS : HASH_STRINGS));
}

static void
put_code_level(HTAB *t, const char *code, int16 level)
{
	GbCode		key;
	CodeLevel  *e;
	bool		found;

	if (gbcode_parse(code, strlen(code), &key) != NULL)
		return;
	e = hash_search(t, &key, HASH_ENTER, &found);
	if (!found || e->level < level)
		e->level = level;
}

/*
 * Compile the current user's grants.  Runs as the owner of vms.access_grant,
 * as referential integrity checks do, so users need no access to others'
 * grants.
 */
static void
build_cache(PolicyKind kind, Oid user, TimestampTz now)
{
	Oid			save_userid;
	int			save_sec;
	Oid			owner;
	Datum		args[2];
	Oid			argtypes[2] = {OIDOID, TIMESTAMPTZOID};
	uint64		start_invalidations;
	PolicyCache *cache = &caches[kind];

	if (cache->cxt == NULL)
		cache->cxt = AllocSetContextCreate(TopMemoryContext, "vms policy cache", ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(cache->cxt);
	cache->valid = false;
	cache->channels = make_table(cache->cxt, "vms granted channels", sizeof(GbCode), sizeof(CodeLevel), true);
	cache->regions = make_table(cache->cxt, "vms granted regions", 9, sizeof(RegionLevel), false);
	cache->restricted = make_table(cache->cxt, "vms restricted channels", sizeof(GbCode), sizeof(CodeLevel), true);
	cache->all_level = 0;
	cache->next_change = DT_NOEND;

	grant_relid = lookup_grant_relid();
	owner = vms_rel_owner(grant_relid);
	args[0] = ObjectIdGetDatum(user);
	args[1] = TimestampTzGetDatum(now);

	if (building)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_RECURSION),
				 errmsg("vms access policy refers to itself"),
				 errdetail("Compiling a user's grants needed the compiled grants.")));
	building = true;
	start_invalidations = invalidations;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	/*
	 * Read the newest committed grants, not this transaction's snapshot: a
	 * revocation committed after a REPEATABLE READ transaction began must
	 * not be compiled away and then kept by later transactions.
	 */
	PushActiveSnapshot(GetLatestSnapshot());
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute_with_args(policy_query[kind], 2, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read grants");
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	td = SPI_tuptable->tupdesc;
			char	   *kind = SPI_getvalue(tup, td, 1);
			char	   *ref = SPI_getvalue(tup, td, 2);
			bool		isnull;
			int16		level = DatumGetInt16(SPI_getbinval(tup, td, 3, &isnull));
			Datum		nc = SPI_getbinval(tup, td, 4, &isnull);

			if (!isnull && DatumGetTimestampTz(nc) < cache->next_change)
				cache->next_change = DatumGetTimestampTz(nc);
			if (kind == NULL)
				continue;
			if (strcmp(kind, "all") == 0)
				cache->all_level = Max(cache->all_level, level);
			else if (strcmp(kind, "region") == 0 && ref && strlen(ref) <= 8)
			{
				char		key[9] = {0};
				RegionLevel *e;
				bool		found;

				strlcpy(key, ref, sizeof(key));
				e = hash_search(cache->regions, key, HASH_ENTER, &found);
				if (!found || e->level < level)
					e->level = level;
			}
			else if (strcmp(kind, "channel") == 0 && ref)
				put_code_level(cache->channels, ref, level);
			else if (strcmp(kind, "restricted") == 0 && ref)
				put_code_level(cache->restricted, ref, level);
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		PopActiveSnapshot();
		SetUserIdAndSecContext(save_userid, save_sec);
		building = false;
	}
	PG_END_TRY();

	cache->user = user;
	/* a change that arrived while compiling makes the result stale at once */
	cache->valid = (invalidations == start_invalidations);
}

static PolicyCache *
ensure_cache(PolicyKind kind, Oid user)
{
	TimestampTz now = GetCurrentStatementStartTimestamp();	/* grants expire mid-transaction too */
	PolicyCache *cache = &caches[kind];

	register_callbacks();
	AcceptInvalidationMessages();
	if (!cache->valid || cache->user != user || now >= cache->next_change)
		build_cache(kind, user, now);
	return cache;
}

static int16
code_level(HTAB *t, GbCode *code)
{
	CodeLevel  *e = hash_search(t, code, HASH_FIND, NULL);

	return e ? e->level : 0;
}

/*
 * Does the compiled policy of this kind let the user at the channel whose
 * code and civil code are arguments code_arg and code_arg + 1?  A region
 * grant covers the civil codes it is a prefix of (as LIKE ref || '%' does,
 * at any length up to the 8 digits of a civil code).
 */
static bool
allowed_to(PolicyKind kind, Oid user, FunctionCallInfo fcinfo, int code_arg)
{
	GbCode	   *code;
	int16		allowed;
	int16		needed;
	PolicyCache *cache;

	if (PG_ARGISNULL(code_arg))
		return false;
	code = PG_GETARG_GBCODE_P(code_arg);
	cache = ensure_cache(kind, user);

	needed = Max(code_level(cache->restricted, code), 1);
	allowed = Max(cache->all_level, code_level(cache->channels, code));
	if (allowed < needed && !PG_ARGISNULL(code_arg + 1) && hash_get_num_entries(cache->regions) > 0)
	{
		text	   *civil = PG_GETARG_TEXT_PP(code_arg + 1);
		int			len = Min(VARSIZE_ANY_EXHDR(civil), 8);
		char		key[9];

		for (int k = 1; k <= len; k++)
		{
			RegionLevel *e;

			memset(key, 0, sizeof(key));
			memcpy(key, VARDATA_ANY(civil), k);
			e = hash_search(cache->regions, key, HASH_FIND, NULL);
			if (e && e->level > allowed)
				allowed = e->level;
		}
	}
	return allowed >= needed;
}

/* vms.channel_visible(code gbcode, civil_code text) → boolean, for the current user */
PG_FUNCTION_INFO_V1(vms_channel_visible);
Datum
vms_channel_visible(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(allowed_to(POLICY_VIEW, GetUserId(), fcinfo, 0));
}

/*
 * vms.can_manage(code gbcode, civil_code text) → boolean: may the role the
 * session acts as (SET ROLE, else the session user; also inside SECURITY
 * DEFINER functions) write this channel — the write policies of
 * vms.channel.  A manage_ledger grant covers it as vms._can_for(role,
 * 'manage_ledger', code, civil_code) says, with one difference: the region
 * is always the civil code given, the row's as it will be, so that an
 * update may not move a channel out of the regions the role may write.
 */
PG_FUNCTION_INFO_V1(vms_can_manage);
Datum
vms_can_manage(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(allowed_to(POLICY_MANAGE, GetOuterUserId(), fcinfo, 0));
}

/*
 * vms.channel_visible_to(role oid, code, civil_code) → boolean: the same for
 * a role the session user can act as.  Search and tiles run as the owner and
 * check each candidate with this, so the spatial index is used: under
 * row-level security PostGIS's operators, not being leakproof, could only
 * filter rows the policy had already passed.
 *
 * Who may ask about a role: the session user must be a member of it (the
 * role itself, one it may SET ROLE to, or any role when the session user is
 * a superuser) — the same rule as vms._can_for.  The definer callers pass
 * vms._acting_role(), the role the session acts as (SET ROLE, else the
 * session user), which always passes.  This check comes first: a
 * superuser's OID is answered "everything visible" only to a session that
 * could become that superuser anyway.
 */
PG_FUNCTION_INFO_V1(vms_channel_visible_to);
Datum
vms_channel_visible_to(PG_FUNCTION_ARGS)
{
	Oid			role;

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(false);
	role = PG_GETARG_OID(0);
	if (!is_member_of_role(GetSessionUserId(), role))
	{
		char	   *name = GetUserNameFromId(role, true);

		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 name ? errmsg("permission denied to check channel visibility for role \"%s\"", name)
				 : errmsg("permission denied to check channel visibility for role %u", role),
				 errdetail("Session user \"%s\" is not a member of that role.",
						   GetUserNameFromId(GetSessionUserId(), false)),
				 errhint("Ask about a role you can SET ROLE to, or use vms.search_points and vms.channel_tiles.")));
	}
	if (superuser_arg(role))
		PG_RETURN_BOOL(true);	/* superusers bypass row-level security too */
	PG_RETURN_BOOL(allowed_to(POLICY_VIEW, role, fcinfo, 1));
}

/*
 * vms._acting_role() → oid: the role this session acts as — the role of SET
 * ROLE, else the session user — also inside SECURITY DEFINER functions,
 * where current_user is the owner.  Definer functions that act on the
 * caller's behalf (search, tiles, vms.can) use it as "the caller".
 */
PG_FUNCTION_INFO_V1(vms_acting_role);
Datum
vms_acting_role(PG_FUNCTION_ARGS)
{
	PG_RETURN_OID(GetOuterUserId());
}

/*
 * Statement-level trigger on the tables the policy is compiled from: every
 * backend drops its compiled policy when this transaction commits.
 */
PG_FUNCTION_INFO_V1(vms_policy_changed);
Datum
vms_policy_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("vms._policy_changed() must be called as a trigger")));
	CacheInvalidateRelcacheByRelid(lookup_grant_relid());
	invalidate_all();			/* this backend sees its own change at once */
	return PointerGetDatum(NULL);
}
