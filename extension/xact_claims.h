/*
 * xact_claims.h — a list of things this backend took from a shared queue,
 * held until the transaction (or subtransaction) that took them ends
 * (xact_claims.c).
 *
 * Each claim carries item_size bytes of the caller's (a copy of a row, a
 * slot number) and the nest level that took it.  When a subtransaction
 * commits, its claims pass to its parent; when one aborts, its claims are
 * handed to release(items, n, false) and dropped; when the top transaction
 * commits or aborts, all of them are, with committed true or false.  A
 * PREPARE TRANSACTION with claims is refused (a later ROLLBACK PREPARED would
 * lose them): "cannot PREPARE a transaction that took <what>", with the hint
 * to run <flush>() in a transaction of its own; with what NULL it is allowed
 * and the claims end as at a commit.
 *
 * Claims are appended at the current nest level, which is never below the
 * level of any claim still held (deeper ones have passed up or been
 * released), so the claims of a level and those below it always form the
 * end of the list: release gets one contiguous array, in the order taken.
 */
#ifndef VMS_XACT_CLAIMS_H
#define VMS_XACT_CLAIMS_H

/* items[0 .. n-1], in the order taken; called from transaction callbacks */
typedef void (*XactClaimsRelease) (void *items, int n, bool committed);

typedef struct XactClaims
{
	/* set by the owner, statically */
	const char *what;			/* "rows from the search history queue"; NULL: PREPARE allowed */
	const char *flush;			/* "vms.search_history_flush" */
	Size		item_size;
	int			capacity;
	XactClaimsRelease release;
	/* private to xact_claims.c */
	char	   *items;
	int		   *level;
	int			n;
	struct XactClaims *next;
} XactClaims;

/* allocate the list and register it, once per backend: before any add, outside locks */
extern void xact_claims_open(XactClaims *claims);
/* room for a new claim at the current nest level; NULL when full */
extern void *xact_claims_add(XactClaims *claims);
extern bool xact_claims_full(XactClaims *claims);
extern int	xact_claims_count(XactClaims *claims);
extern void *xact_claims_item(XactClaims *claims, int i);

#endif
