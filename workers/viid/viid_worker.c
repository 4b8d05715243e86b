/*
 * viid_worker.c — the GA/T 1400 push worker ("vms viid").
 *
 * One process serves every enabled upstream view library: Register with
 * HTTP Digest, Keepalive, Time, UnRegister on clean shutdown; and pushes the
 * outbox in list-object batches over one libcurl multi handle (connections
 * kept alive, several batches in flight).
 *
 * The database does the bookkeeping: SQL builds the batches
 * (vms._viid_batches) and applies each answer (vms._viid_results), so the
 * JSON is parsed with PostgreSQL's own jsonb.  Transactions are short and
 * never span a network wait; an answer lost to a crash means the batch is
 * sent again (at-least-once, stable object IDs let the receiver
 * de-duplicate).
 */
#include "postgres.h"

#include <curl/curl.h>

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "../../extension/vms.h"
#include "../worker_registry.h"
#include "../worker_tx.h"

PGDLLEXPORT void vms_viid_main(Datum arg);

/* limits */
#define MAX_UPSTREAMS 32
#define MAX_BODY (4 * 1024 * 1024)	/* a larger answer aborts its request */
#define MAX_INFLIGHT 64			/* batches in flight at once, over every upstream */
#define MAX_CONNECTS 64			/* connections libcurl keeps open */
#define MAX_BATCH_RECORDS 1000	/* an upstream's batch_size is capped here */
#define KEEPALIVE_FAILURES 3	/* missed keepalives before registering again */

/* timings, in milliseconds unless named _S */
#define SETTINGS_RELOAD_MS 1000	/* vms.viid_upstream is read at most this often */
#define PUSH_SLICE_MS 5000		/* a backlog is pushed in slices, so keepalives keep their time */
#define CURL_POLL_MS 100		/* interrupts are checked this often during a request */
#define MIN_TIMEOUT_MS 100		/* an upstream's timeout_ms is clamped to these */
#define MAX_CONNECT_TIMEOUT_MS 5000
#define MAX_TIMEOUT_MS 120000
#define UNREGISTER_TIMEOUT_MS 2000	/* best-effort UnRegister at shutdown */
#define MAX_REGISTER_BACKOFF_S 300	/* register retries: 1 s doubling to 5 min */

/*
 * The SQL this worker runs, named: a grep for a function finds its caller
 * here.  Each runs in a short transaction of its own, never across a network
 * wait.
 */
#define SQL_UPSTREAMS \
	"SELECT name, base_url, system_id::text, username, password_enc, " \
	"  coalesce((options->>'keepalive_s')::int, 60), coalesce((options->>'batch_size')::int, 100), " \
	"  coalesce((options->>'concurrency')::int, 4), coalesce((options->>'timeout_ms')::int, 10000) " \
	"FROM vms.viid_upstream WHERE enabled ORDER BY name"
#define SQL_SESSION_EVENT "SELECT vms._viid_session_event($1, $2, $3, $4, $5)"
#define SQL_BATCHES \
	"SELECT path, ids::text, body, cardinality(ids), last_at, last_id " \
	"FROM vms._viid_batches($1, $2, $3, $4, $5)"
#define SQL_RESULTS "SELECT delivered, failed, dead FROM vms._viid_results($1, $2::bigint[], $3, $4, $5)"

enum
{
	C_REQUESTS, C_SENT, C_DELIVERED, C_FAILED, C_DEAD, C_REGISTRATIONS, C_KEEPALIVES, C_HTTP_ERRORS
};

typedef struct Upstream
{
	char		name[64];
	char		base_url[512];
	char		system_id[21];
	char		username[128];
	char		password[256];
	int			keepalive_s;
	int			batch_size;
	int			concurrency;
	int			timeout_ms;
	/* session, kept in memory; vms.viid_session mirrors it */
	bool		registered;
	TimestampTz last_keepalive;
	TimestampTz next_register;
	int			register_failures;
	int			keepalive_failures;
	bool		seen;
} Upstream;

/*
 * An answer as it arrives.  libcurl's write callback fills it: it must not
 * raise an ERROR (a longjmp through libcurl's frames would leave the multi
 * handle inconsistent), so it grows the buffer with allocations that return
 * NULL instead of failing, and tells libcurl to abort when out of room.
 */
typedef struct Body
{
	char	   *data;			/* NUL-terminated */
	size_t		len;
	size_t		cap;
	MemoryContext cxt;
} Body;

typedef struct Request
{
	CURL	   *easy;
	bool		in_multi;		/* added to the multi handle */
	Body		body;			/* answer */
	struct curl_slist *headers;
	char	   *payload;
	char	   *ids;			/* the batch's outbox ids, as SQL array text */
	char		error[CURL_ERROR_SIZE];
} Request;

static Upstream upstreams[MAX_UPSTREAMS];

/*
 * Every request with a curl handle: those in flight (MAX_INFLIGHT), the
 * batches claimed ahead of them (fewer than MAX_READY) and a session request.  If a
 * round fails they are detached and freed before its memory is reset.
 */
#define MAX_READY (2 * MAX_INFLIGHT)
#define MAX_LIVE (MAX_INFLIGHT + MAX_READY + 2)
static Request *live[MAX_LIVE];
static int	n_live = 0;
/* the push's two statements, prepared once for the worker's life */
static SPIPlanPtr batches_plan = NULL;
static SPIPlanPtr results_plan = NULL;
static int	n_upstreams = 0;
static VmsWorkerSlot *slot;
static CURLM *multi;
static MemoryContext loop_cxt;

static void
body_init(Body *b)
{
	b->cxt = CurrentMemoryContext;
	b->cap = 1024;
	b->data = palloc(b->cap);
	b->data[0] = '\0';
	b->len = 0;
}

/* libcurl's write callback: never ereports (see Body) */
static size_t
collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	Body	   *b = (Body *) userdata;
	size_t		n = size * nmemb;

	if (n > MAX_BODY || b->len + n > MAX_BODY)
		return 0;				/* an answer this large is an error: abort it */
	if (b->len + n + 1 > b->cap)
	{
		size_t		cap = Max(b->cap * 2, b->len + n + 1);
		char	   *grown = MemoryContextAllocExtended(b->cxt, Min(cap, MAX_BODY + 1), MCXT_ALLOC_NO_OOM);

		if (grown == NULL)
			return 0;			/* out of memory: libcurl ends the transfer with an error */
		memcpy(grown, b->data, b->len + 1);
		pfree(b->data);
		b->data = grown;
		b->cap = Min(cap, MAX_BODY + 1);
	}
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

static Request *
make_request(Upstream *u, const char *method, const char *path, const char *payload, bool digest)
{
	Request    *r = palloc0(sizeof(Request));
	char	   *url = psprintf("%s%s", u->base_url, path);

	if (n_live >= MAX_LIVE)
		elog(ERROR, "vms viid: more than %d requests at once", MAX_LIVE);
	body_init(&r->body);
	r->easy = curl_easy_init();
	if (r->easy == NULL)
		elog(ERROR, "vms viid: curl_easy_init failed");
	live[n_live++] = r;
	r->payload = payload ? pstrdup(payload) : NULL;
	r->headers = curl_slist_append(NULL, "Content-Type: application/VIID+JSON;charset=UTF-8");
	r->headers = curl_slist_append(r->headers, psprintf("User-Identify: %s", u->system_id));
	r->headers = curl_slist_append(r->headers, "Expect:");
	curl_easy_setopt(r->easy, CURLOPT_URL, url);
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, &r->body);
	curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->error);
	/* never 0, which libcurl reads as "no timeout" */
	curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, (long) Min(Max(u->timeout_ms, MIN_TIMEOUT_MS), MAX_CONNECT_TIMEOUT_MS));
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long) Min(Max(u->timeout_ms, MIN_TIMEOUT_MS), MAX_TIMEOUT_MS));
	curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	if (strcmp(method, "POST") == 0)
	{
		curl_easy_setopt(r->easy, CURLOPT_POST, 1L);
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->payload ? r->payload : "");
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, (long) (r->payload ? strlen(r->payload) : 0));
	}
	if (digest)
	{
		curl_easy_setopt(r->easy, CURLOPT_HTTPAUTH, CURLAUTH_DIGEST);
		curl_easy_setopt(r->easy, CURLOPT_USERNAME, u->username);
		curl_easy_setopt(r->easy, CURLOPT_PASSWORD, u->password);
	}
	return r;
}

static void
attach(Request *r)
{
	curl_multi_add_handle(multi, r->easy);
	r->in_multi = true;
}

/* detach from the multi handle (if attached) and free the curl side */
static void
free_request(Request *r)
{
	for (int i = 0; i < n_live; i++)
		if (live[i] == r)
		{
			live[i] = live[--n_live];
			break;
		}
	if (r->in_multi)
		curl_multi_remove_handle(multi, r->easy);
	r->in_multi = false;
	curl_slist_free_all(r->headers);
	curl_easy_cleanup(r->easy);
}

/* after an error: nothing may keep pointing into memory about to be reset */
static void
free_attached(void)
{
	while (n_live > 0)
		free_request(live[n_live - 1]);
}

/* Run requests to completion, waking for interrupts every CURL_POLL_MS. */
static void
run_requests(Request **reqs, int n)
{
	int			running = 0;

	for (int i = 0; i < n; i++)
		attach(reqs[i]);
	do
	{
		CHECK_FOR_INTERRUPTS();
		curl_multi_perform(multi, &running);
		if (running)
			curl_multi_poll(multi, NULL, 0, CURL_POLL_MS, NULL);
	} while (running > 0);
	vms_worker_count(slot, C_REQUESTS, n);
}

static long
http_status(Request *r)
{
	long		code = 0;

	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
	return code;
}

/* SQL in a short transaction; returns the first column of the first row as text */
static char *
sql_text(const char *query, int nargs, Oid *types, Datum *values, const char *nulls)
{
	char	   *result = NULL;

	vms_worker_begin_tx(NULL);
	pgstat_report_activity(STATE_RUNNING, query);
	if (SPI_execute_with_args(query, nargs, types, values, nulls, false, 0) < 0)
		elog(ERROR, "vms viid: query failed: %s", query);
	if (SPI_processed > 0 && SPI_tuptable)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (v)
			result = MemoryContextStrdup(loop_cxt, v);
	}
	vms_worker_end_tx();
	pgstat_report_activity(STATE_IDLE, NULL);
	return result;
}

/* Report a session event to SQL; it parses the answer and says whether it succeeded. */
static bool
session_event(Upstream *u, const char *event, Request *r)
{
	Oid			types[5] = {TEXTOID, TEXTOID, INT4OID, TEXTOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	char	   *ok;

	values[0] = CStringGetTextDatum(u->name);
	values[1] = CStringGetTextDatum(event);
	values[2] = Int32GetDatum((int32) (r ? http_status(r) : 0));
	values[3] = CStringGetTextDatum(r ? r->body.data : "");
	values[4] = CStringGetTextDatum(r && r->error[0] ? r->error : "");
	if (!r || !r->error[0])
		nulls[4] = 'n';
	ok = sql_text(SQL_SESSION_EVENT, 5, types, values, nulls);
	return ok && strcmp(ok, "t") == 0;
}

/* an integer column of an SPI row, or dflt when it is NULL */
static int
spi_int(HeapTuple t, TupleDesc d, int col, int dflt)
{
	char	   *v = SPI_getvalue(t, d, col);

	return v ? atoi(v) : dflt;
}

static void
load_upstreams(void)
{
	MemoryContext old;

	for (int i = 0; i < n_upstreams; i++)
		upstreams[i].seen = false;

	vms_worker_begin_tx(NULL);
	if (SPI_execute(SQL_UPSTREAMS, true, MAX_UPSTREAMS) != SPI_OK_SELECT)
		elog(ERROR, "vms viid: could not read upstreams");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		char	   *name = SPI_getvalue(t, d, 1);
		char	   *base_url = SPI_getvalue(t, d, 2);
		char	   *system_id = SPI_getvalue(t, d, 3);
		char	   *username = SPI_getvalue(t, d, 4);
		Upstream   *u = NULL;
		bool		isnull;
		Datum		pw;

		/* the table's NOT NULLs say these are there; a row without them is skipped */
		if (name == NULL || base_url == NULL || system_id == NULL || username == NULL)
			continue;
		for (int k = 0; k < n_upstreams; k++)
			if (strcmp(upstreams[k].name, name) == 0)
				u = &upstreams[k];
		if (u == NULL)
		{
			if (n_upstreams >= MAX_UPSTREAMS)
				break;
			u = &upstreams[n_upstreams++];
			memset(u, 0, sizeof(*u));
			strlcpy(u->name, name, sizeof(u->name));
		}
		u->seen = true;
		strlcpy(u->base_url, base_url, sizeof(u->base_url));
		strlcpy(u->system_id, system_id, sizeof(u->system_id));
		strlcpy(u->username, username, sizeof(u->username));
		pw = SPI_getbinval(t, d, 5, &isnull);
		explicit_bzero(u->password, sizeof(u->password));
		if (!isnull)
		{
			bytea	   *b = DatumGetByteaPP(pw);
			char	   *context = psprintf("viid_upstream.password_enc:%s", name);
			ResourceOwner owner = CurrentResourceOwner;

			/*
			 * A password that does not decrypt (no key, another key, a value
			 * copied from another row) fails this upstream only: in a
			 * subtransaction, so the error is cleaned up (the key file it
			 * opened, its memory) before the transaction goes on.
			 */
			old = CurrentMemoryContext;
			BeginInternalSubTransaction(NULL);
			MemoryContextSwitchTo(old);
			PG_TRY();
			{
				char	   *plain = vms_secret_decrypt_bytes((unsigned char *) VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b),
															 context, (int) strlen(context));

				strlcpy(u->password, plain, sizeof(u->password));
				explicit_bzero(plain, strlen(plain));
				ReleaseCurrentSubTransaction();
				MemoryContextSwitchTo(old);
				CurrentResourceOwner = owner;
			}
			PG_CATCH();
			{
				ErrorData  *e;

				MemoryContextSwitchTo(loop_cxt);
				e = CopyErrorData();
				FlushErrorState();
				RollbackAndReleaseCurrentSubTransaction();
				MemoryContextSwitchTo(old);
				CurrentResourceOwner = owner;
				vms_worker_error(slot, "upstream %s: %s", u->name, e->message);
			}
			PG_END_TRY();
		}
		u->keepalive_s = spi_int(t, d, 6, 60);
		u->batch_size = spi_int(t, d, 7, 100);
		u->concurrency = spi_int(t, d, 8, 4);
		u->timeout_ms = spi_int(t, d, 9, 10000);
	}
	vms_worker_end_tx();

	/* drop upstreams that were removed or disabled */
	for (int i = 0; i < n_upstreams;)
		if (!upstreams[i].seen)
			upstreams[i] = upstreams[--n_upstreams];
		else
			i++;
}

static void
do_register(Upstream *u, TimestampTz now)
{
	Request    *r = make_request(u, "POST", "/VIID/System/Register",
								 psprintf("{\"RegisterObject\":{\"DeviceID\":\"%s\"}}", u->system_id), true);

	run_requests(&r, 1);
	if (session_event(u, "register", r))
	{
		Request    *t;

		u->registered = true;
		u->register_failures = 0;
		u->keepalive_failures = 0;
		u->last_keepalive = now;
		vms_worker_count(slot, C_REGISTRATIONS, 1);
		t = make_request(u, "GET", "/VIID/System/Time", NULL, false);
		run_requests(&t, 1);
		session_event(u, "time", t);
		free_request(t);
	}
	else
	{
		/* exponential backoff, 1 s doubling to MAX_REGISTER_BACKOFF_S */
		int			delay = Min(MAX_REGISTER_BACKOFF_S, 1 << Min(u->register_failures, 8));

		u->register_failures++;
		u->next_register = TimestampTzPlusMilliseconds(now, delay * 1000L);
		vms_worker_count(slot, C_HTTP_ERRORS, 1);
		vms_worker_error(slot, "upstream %s: register failed (HTTP %ld%s%s)", u->name, http_status(r),
						 r->error[0] ? ", " : "", r->error);
	}
	free_request(r);
}

static void
do_keepalive(Upstream *u, TimestampTz now)
{
	Request    *r = make_request(u, "POST", "/VIID/System/Keepalive",
								 psprintf("{\"KeepaliveObject\":{\"DeviceID\":\"%s\"}}", u->system_id), false);

	run_requests(&r, 1);
	u->last_keepalive = now;
	if (session_event(u, "keepalive", r))
	{
		u->keepalive_failures = 0;
		vms_worker_count(slot, C_KEEPALIVES, 1);
	}
	else if (http_status(r) == 401 || ++u->keepalive_failures >= KEEPALIVE_FAILURES)
	{
		/* the upstream forgot us (restart) or is gone: register again */
		u->registered = false;
		u->next_register = now;
		vms_worker_error(slot, "upstream %s: keepalive failed, registering again", u->name);
	}
	free_request(r);
}

/* a statement of the push, prepared once (inside a transaction) and kept */
static SPIPlanPtr
push_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "vms viid: could not prepare: %s", sql);
		*plan = p;
	}
	return *plan;
}

/*
 * Claim up to n due batches for an upstream after the cursor (at, id), which
 * is moved past them, inside the caller's transaction; adds them to reqs[]
 * from position *count, not yet sent.  Returns how many records they hold.
 */
static int
claim_batches(Upstream *u, Request **reqs, int *count, int n, char **cursor_at, int64 *cursor_id)
{
	Oid			types[5] = {TEXTOID, INT4OID, INT4OID, TIMESTAMPTZOID, INT8OID};
	Datum		values[5];
	int			records = 0;
	SPIPlanPtr	plan = push_plan(&batches_plan, SQL_BATCHES, 5, types);

	values[0] = CStringGetTextDatum(u->name);
	values[1] = Int32GetDatum(Max(1, Min(u->batch_size, MAX_BATCH_RECORDS)));
	values[2] = Int32GetDatum(n);
	values[3] = DirectFunctionCall3(timestamptz_in, CStringGetDatum(*cursor_at),
									ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	values[4] = Int64GetDatum(*cursor_id);

	/* not read-only: a fresh snapshot sees the answers recorded just before */
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "vms viid: could not build batches");
	for (uint64 i = 0; i < SPI_processed && i < (uint64) n; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		char	   *path = SPI_getvalue(t, d, 1);
		char	   *ids = SPI_getvalue(t, d, 2);
		char	   *body = SPI_getvalue(t, d, 3);
		char	   *last_at = SPI_getvalue(t, d, 5);
		char	   *last_id = SPI_getvalue(t, d, 6);
		MemoryContext old;
		Request    *r;

		if (path == NULL || ids == NULL || body == NULL || last_at == NULL || last_id == NULL)
			elog(ERROR, "vms viid: vms._viid_batches returned a batch with NULLs");
		old = MemoryContextSwitchTo(loop_cxt);
		r = make_request(u, "POST", path, body, false);
		r->ids = pstrdup(ids);
		records += spi_int(t, d, 4, 0);
		if (i == 0)
		{
			*cursor_at = pstrdup(last_at);
			*cursor_id = atoll(last_id);
		}
		reqs[(*count)++] = r;
		MemoryContextSwitchTo(old);
	}
	vms_worker_count(slot, C_SENT, records);
	return records;
}

/*
 * Record the answer to one batch, inside the caller's transaction; returns
 * true when the upstream said 401.
 */
static bool
apply_answer(Upstream *u, Request *r)
{
	Oid			types[5] = {TEXTOID, TEXTOID, INT4OID, TEXTOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	long		status = http_status(r);
	SPIPlanPtr	plan = push_plan(&results_plan, SQL_RESULTS, 5, types);

	values[0] = CStringGetTextDatum(u->name);
	values[1] = CStringGetTextDatum(r->ids);
	values[2] = Int32GetDatum((int32) status);
	values[3] = CStringGetTextDatum(r->body.data);
	values[4] = CStringGetTextDatum(r->error);
	if (!r->error[0])
		nulls[4] = 'n';
	if (status != 200)
		vms_worker_count(slot, C_HTTP_ERRORS, 1);

	if (SPI_execute_plan(plan, values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "vms viid: could not record results");
	if (SPI_processed == 1)
	{
		HeapTuple	t = SPI_tuptable->vals[0];
		TupleDesc	d = SPI_tuptable->tupdesc;

		vms_worker_count(slot, C_DELIVERED, spi_int(t, d, 1, 0));
		vms_worker_count(slot, C_FAILED, spi_int(t, d, 2, 0));
		vms_worker_count(slot, C_DEAD, spi_int(t, d, 3, 0));
	}
	vms_worker_count(slot, C_REQUESTS, 1);
	return status == 401;
}

/*
 * Push an upstream's due records as a pipeline: keep `concurrency` batches
 * in flight, and as answers come, send the next batches at once and only
 * then record the answers, so the receiver works on new batches while the
 * database work is done.  Batches are claimed a window (`concurrency`) at a
 * time, ahead of the free slots (a new window when half of the claimed ones
 * are out), in the same short transaction as the answers that have arrived:
 * one claim query per window instead of one per batch, and about one
 * transaction per answer instead of two.  A claimed batch is only in
 * memory until its answer is recorded: a crash before that leaves its
 * records pending, to be sent again (at-least-once).  Returns how many
 * records were claimed.
 */
static int
push(Upstream *u)
{
	Request    *reqs[MAX_INFLIGHT];		/* in flight */
	Request    *ready[MAX_READY];	/* claimed, not yet sent */
	Request    *done[MAX_INFLIGHT];
	int			ndone;
	int			n = 0,
				nready = 0,
				sent = 0,
				concurrency = Max(1, Min(u->concurrency, MAX_INFLIGHT));
	bool		more = true,
				unauthorized = false;
	char	   *cursor_at = "-infinity";
	int64		cursor_id = 0;
	/* a long backlog is pushed in slices, so keepalives keep their time */
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), PUSH_SLICE_MS);

	for (;;)
	{
		int			running;
		CURLMsg    *msg;
		int			left;
		bool		claim;

		CHECK_FOR_INTERRUPTS();
		if (more && GetCurrentTimestamp() >= until)
			more = false;
		/* the answers that have arrived leave their slots */
		ndone = 0;
		if (n > 0)
		{
			curl_multi_perform(multi, &running);
			while ((msg = curl_multi_info_read(multi, &left)) != NULL)
			{
				Request    *r = NULL;

				if (msg->msg != CURLMSG_DONE)
					continue;
				curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &r);
				done[ndone++] = r;
				for (int i = 0; i < n; i++)
					if (reqs[i] == r)
					{
						reqs[i] = reqs[--n];
						break;
					}
			}
		}
		/* fill the free slots, oldest claimed first, and send at once */
		if (!unauthorized && n < concurrency && nready > 0)
		{
			while (n < concurrency && nready > 0)
			{
				Request    *r = ready[0];

				memmove(ready, ready + 1, sizeof(Request *) * --nready);
				attach(r);
				reqs[n++] = r;
			}
			curl_multi_perform(multi, &running);
		}
		/* then the database work: answers, and the next window if due */
		claim = more && !unauthorized && nready <= concurrency / 2;
		if (ndone > 0 || claim)
		{
			vms_worker_begin_tx(NULL);
			for (int k = 0; k < ndone; k++)
				if (apply_answer(u, done[k]))
					unauthorized = true;
			if (claim && !unauthorized)
			{
				int			got = claim_batches(u, ready, &nready, concurrency, &cursor_at, &cursor_id);

				sent += got;
				more = got > 0;
			}
			vms_worker_end_tx();
		}
		for (int k = 0; k < ndone; k++)
			free_request(done[k]);
		if (unauthorized)
		{
			/* nothing more is sent; what is claimed and unsent stays pending */
			while (nready > 0)
				free_request(ready[--nready]);
			more = false;
		}
		if (n < concurrency && nready > 0)
			continue;			/* a claim just came: fill the slots */
		if (n == 0)
		{
			if (nready == 0 && !more)
				break;
			continue;
		}
		curl_multi_poll(multi, NULL, 0, CURL_POLL_MS, NULL);
	}

	if (unauthorized)
	{
		u->registered = false;
		u->next_register = GetCurrentTimestamp();
	}
	return sent;
}

/* One round: session upkeep and one push per upstream; returns records sent. */
static int
one_round(void)
{
	static TimestampTz last_load = 0;
	TimestampTz now = GetCurrentTimestamp();
	int			sent = 0;

	/* no SQL until the extension is there, at this library's version */
	if (!vms_worker_ready(slot))
		return 0;
	/* settings change rarely: read them once a second, not every batch */
	if (now >= TimestampTzPlusMilliseconds(last_load, SETTINGS_RELOAD_MS))
	{
		load_upstreams();
		last_load = now;
	}
	for (int i = 0; i < n_upstreams; i++)
	{
		Upstream   *u = &upstreams[i];

		if (!u->registered && now >= u->next_register)
			do_register(u, now);
		if (u->registered && now >= TimestampTzPlusMilliseconds(u->last_keepalive, u->keepalive_s * 1000L))
			do_keepalive(u, now);
		if (u->registered)
			sent += push(u);
	}
	vms_worker_set_state(slot, n_upstreams == 0 ? "idle (no upstream)" : (sent > 0 ? "pushing" : "running"));
	return sent;
}

static void
unregister_all(int code, Datum arg)
{
	for (int i = 0; i < n_upstreams; i++)
	{
		Upstream   *u = &upstreams[i];
		Request    *r;

		if (!u->registered)
			continue;
		u->timeout_ms = UNREGISTER_TIMEOUT_MS;
		r = make_request(u, "POST", "/VIID/System/UnRegister",
						 psprintf("{\"UnRegisterObject\":{\"DeviceID\":\"%s\"}}", u->system_id), false);
		curl_easy_perform(r->easy);		/* best effort, bounded by the timeout */
		free_request(r);
		u->registered = false;
	}
}

/* a round did work when it sent records: more may be waiting */
static bool
viid_round(void)
{
	return one_round() > 0;
}

void
vms_viid_main(Datum arg)
{
	slot = vms_worker_init("vms viid");

	curl_global_init(CURL_GLOBAL_DEFAULT);
	multi = curl_multi_init();
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) MAX_CONNECTS);
	loop_cxt = AllocSetContextCreate(vms_worker_cxt, "vms viid loop", ALLOCSET_DEFAULT_SIZES);
	before_shmem_exit(unregister_all, (Datum) 0);
	vms_worker_set_state(slot, "running");
	vms_worker_run_rounds(slot, loop_cxt, "vms viid", viid_round, free_attached);
}
