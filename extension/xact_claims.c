/*
 * xact_claims.c — claims held until the taking (sub)transaction ends; see
 * xact_claims.h.  One pair of transaction callbacks, registered when the
 * first list opens, serves every list of the backend.
 *
 * Also vms._sip_position_first_wake(), a mark once a transaction kept here
 * rather than in a setting a session could set itself.
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "utils/memutils.h"

#include "xact_claims.h"

static XactClaims *lists = NULL;	/* the lists in use in this backend */
static bool callbacks_registered = false;

/* the claims of level >= level go to the owner's release, then are dropped */
static void
release_from(XactClaims *c, int level, bool committed)
{
	int			first = c->n;
	int			n;

	while (first > 0 && c->level[first - 1] >= level)
		first--;
	if (first == c->n)
		return;
	/* dropped before release runs: should it raise an error, none is released twice */
	n = c->n - first;
	c->n = first;
	c->release(c->items + (Size) first * c->item_size, n, committed);
}

static void
claims_xact_callback(XactEvent event, void *arg)
{
	for (XactClaims *c = lists; c != NULL; c = c->next)
	{
		switch (event)
		{
			case XACT_EVENT_COMMIT:
			case XACT_EVENT_PARALLEL_COMMIT:
			case XACT_EVENT_PREPARE:	/* none by then: see PRE_PREPARE */
				release_from(c, 0, true);
				break;
			case XACT_EVENT_ABORT:
			case XACT_EVENT_PARALLEL_ABORT:
				release_from(c, 0, false);
				break;
			case XACT_EVENT_PRE_PREPARE:
				/* a later ROLLBACK PREPARED would lose them */
				if (c->n > 0 && c->what != NULL)
					ereport(ERROR,
							(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							 errmsg("cannot PREPARE a transaction that took %s", c->what),
							 errhint("Run %s() in a transaction of its own.", c->flush)));
				break;
			default:
				break;
		}
	}
}

static void
claims_subxact_callback(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	for (XactClaims *c = lists; c != NULL; c = c->next)
	{
		/* a rolled-back subtransaction's writes are gone: its claims go back */
		if (event == SUBXACT_EVENT_ABORT_SUB)
			release_from(c, level, false);
		/* a released one's writes now belong to its parent, and so do its claims */
		else if (event == SUBXACT_EVENT_COMMIT_SUB)
			for (int i = c->n - 1; i >= 0 && c->level[i] >= level; i--)
				c->level[i] = level - 1;
	}
}

void
xact_claims_open(XactClaims *c)
{
	if (c->items != NULL)
		return;
	c->items = MemoryContextAlloc(TopMemoryContext, c->item_size * c->capacity);
	c->level = MemoryContextAlloc(TopMemoryContext, sizeof(int) * c->capacity);
	c->n = 0;
	c->next = lists;
	lists = c;
	if (!callbacks_registered)
	{
		RegisterXactCallback(claims_xact_callback, NULL);
		RegisterSubXactCallback(claims_subxact_callback, NULL);
		callbacks_registered = true;
	}
}

void *
xact_claims_add(XactClaims *c)
{
	int			level = GetCurrentTransactionNestLevel();

	Assert(c->items != NULL);
	if (c->n >= c->capacity)
		return NULL;
	Assert(c->n == 0 || c->level[c->n - 1] <= level);
	c->level[c->n] = level;
	return c->items + (Size) (c->n++) * c->item_size;
}

bool
xact_claims_full(XactClaims *c)
{
	return c->n >= c->capacity;
}

int
xact_claims_count(XactClaims *c)
{
	return c->n;
}

void *
xact_claims_item(XactClaims *c, int i)
{
	Assert(i >= 0 && i < c->n);
	return c->items + (Size) i * c->item_size;
}

/*
 * vms._sip_position_first_wake(): true the first time in this transaction,
 * false after, so that vms._sip_position_touched wakes the SIP worker once a
 * transaction however many statements report positions.  A mark made in a
 * savepoint that rolls back goes with it (as the wake it stood for), one
 * made in a released savepoint stays.  The mark is a claim of a list of
 * one that nothing releases; PREPARE TRANSACTION is allowed.
 */
static void
mark_release(void *items, int n, bool committed)
{
}

static XactClaims position_woken = {
	.what = NULL,				/* PREPARE allowed */
	.item_size = 1,
	.capacity = 1,
	.release = mark_release,
};

PG_FUNCTION_INFO_V1(vms_sip_position_first_wake);
Datum
vms_sip_position_first_wake(PG_FUNCTION_ARGS)
{
	xact_claims_open(&position_woken);
	PG_RETURN_BOOL(xact_claims_add(&position_woken) != NULL);
}
