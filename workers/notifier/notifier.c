/*
 * notifier.c — the notification worker ("vms notifier").
 *
 * Delivers vms.notify_outbox: each due notification goes to its route, a
 * webhook (a JSON POST of the rendered body, with the notification's id in
 * Idempotency-Key and X-Vms-Notification-Id) or a mail server (SMTP through
 * libcurl: MAIL FROM the route's mail_from or vms.notifier_mail_from, RCPT TO
 * the route's mail_to).
 * Requests run over one libcurl multi handle, vms.notifier_concurrency at a
 * time, connections kept alive.
 *
 * The database does the bookkeeping (extension/sql/24_notify.sql):
 * vms._notify_claim takes due rows in a short transaction, the sends run
 * outside any transaction, and vms._notify_result records the outcomes in
 * batches (delivered, retried with backoff, dead after the route's
 * max_attempts).  A crash between a send and its record sends it again, with
 * the same id: at least once.
 *
 * Once a minute (vms.notifier_run_schedule) the worker also calls
 * vms.ops_run_due() in a transaction of its own: escalation, snapshots,
 * month close, retention and scheduled governance runs.
 */
#include "postgres.h"

#include <curl/curl.h>
#include <time.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
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
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "../../extension/audit_denied.h"
#include "../../extension/search_history_queue.h"
#include "../worker_registry.h"
#include "../worker_tx.h"
#include "notifier_settings.h"

PGDLLEXPORT void vms_notifier_main(Datum arg);

/* limits */
#define MAX_ANSWER 1024			/* a webhook's answer is kept up to this (for the error), the rest ignored */
#define MAX_ERROR_TEXT 200		/* of an answer, kept as the error of a failed delivery */
#define MAX_CONNECTS 64			/* connections libcurl keeps open */

/* timings, in milliseconds */
#define CURL_POLL_MS 100		/* interrupts are checked this often during requests */
#define MAX_CONNECT_TIMEOUT_MS 5000
#define OPS_RUN_INTERVAL_MS 60000	/* vms.ops_run_due() is called this often */

/*
 * The SQL this worker runs, named: a grep for a function finds its caller
 * here.  Each runs in a short transaction of its own, never across a network
 * wait.
 */
#define SQL_CLAIM \
	"SELECT c.id, c.kind, c.url, array_to_string(c.mail_to, ','), c.dedup_key, c.body, " \
	"  concat_ws(' ', '[vms]', o.doc->>'type', o.doc->>'event', o.doc->>'state', o.doc->>'code', " \
	"            o.doc->>'fault_type', 'level ' || (o.doc->>'level')), r.mail_from " \
	"FROM vms._notify_claim($1) c JOIN vms.notify_outbox o ON o.id = c.id " \
	"  JOIN vms.notify_route r ON r.id = o.route_id ORDER BY c.id"
#define SQL_RESULTS \
	"SELECT count(*) FILTER (WHERE r = 'delivered'), count(*) FILTER (WHERE r = 'retry'), " \
	"  count(*) FILTER (WHERE r = 'dead') " \
	"FROM unnest($1::bigint[], $2::boolean[], $3::text[], $4::text[]) x(id, ok, status, error), " \
	"  LATERAL vms._notify_result(x.id, x.ok, x.status, x.error) r"
#define SQL_OPS_RUN_DUE "SELECT vms.ops_run_due()"
#define SQL_FLUSH_DENIED "SELECT vms.audit_flush_denied()"
#define SQL_FLUSH_SEARCHES "SELECT vms.search_history_flush()"

enum
{
	C_SENT, C_DELIVERED, C_RETRIED, C_DEAD, C_WEBHOOK, C_MAIL, C_OPS_RUNS, C_OPS_RAN, C_DENIED_AUDITED, C_SEARCHES_WRITTEN
};

/* the answer or upload of one request; callbacks never ereport (see collect) */
typedef struct NBuffer
{
	char	   *data;
	size_t		len;
	size_t		pos;			/* upload: how much libcurl has read */
} NBuffer;

typedef struct Notification
{
	int64		id;
	bool		mail;
	char	   *url;
	char	   *mail_to;		/* comma-separated, mail only */
	char	   *dedup_key;
	char	   *body;
	char	   *subject;
	char	   *mail_from;		/* the route's, or vms.notifier_mail_from */
	/* the request */
	CURL	   *easy;
	struct curl_slist *headers;
	struct curl_slist *rcpt;
	NBuffer		answer;
	char		answer_buf[MAX_ANSWER + 1];
	NBuffer		upload;			/* the mail message */
	char		error[CURL_ERROR_SIZE];
	bool		attached;
	/* the outcome */
	bool		ok;
	char	   *status;
	char	   *failure;
} Notification;

static VmsWorkerSlot *slot;
static CURLM *multi;
static MemoryContext loop_cxt;
static TimestampTz ops_last_run = 0;
/* requests attached to the multi handle: detached if a round fails */
static Notification **inflight;
static int	n_inflight = 0;

/* libcurl's write callback: keeps the start of the answer, never ereports */
static size_t
collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	Notification *n = (Notification *) userdata;
	size_t		len = size * nmemb;
	size_t		room = MAX_ANSWER - n->answer.len;
	size_t		take = Min(len, room);

	memcpy(n->answer.data + n->answer.len, ptr, take);
	n->answer.len += take;
	n->answer.data[n->answer.len] = '\0';
	return len;
}

/* libcurl's read callback for the mail message */
static size_t
feed(char *buffer, size_t size, size_t nitems, void *userdata)
{
	NBuffer	   *b = (NBuffer *) userdata;
	size_t		n = Min(size * nitems, b->len - b->pos);

	memcpy(buffer, b->data + b->pos, n);
	b->pos += n;
	return n;
}

/* the mail message: headers (RFC 5322) and the body, lines ending in CRLF */
static char *
mail_message(Notification *n)
{
	StringInfoData m;
	char		date[64];
	time_t		now = time(NULL);
	struct tm	tm;

	/* the subject is made of document values (a fault type is free text): one line */
	for (char *p = n->subject; *p; p++)
		if (*p == '\r' || *p == '\n')
			*p = ' ';
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	initStringInfo(&m);
	appendStringInfo(&m, "Date: %s\r\n", date);
	appendStringInfo(&m, "From: <%s>\r\n", n->mail_from);
	appendStringInfo(&m, "To: ");
	for (char *p = n->mail_to; *p; p++)
		appendStringInfoString(&m, *p == ',' ? ", " : pnstrdup(p, 1));
	appendStringInfoString(&m, "\r\n");
	appendStringInfo(&m, "Subject: %s\r\n", n->subject);
	appendStringInfo(&m, "Message-ID: <%s@vms>\r\n", n->dedup_key);
	appendStringInfo(&m, "X-Vms-Notification-Id: %s\r\n", n->dedup_key);
	appendStringInfoString(&m, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
						   "Content-Transfer-Encoding: 8bit\r\n\r\n");
	for (char *p = n->body; *p; p++)
	{
		if (*p == '\n' && (p == n->body || p[-1] != '\r'))
			appendStringInfoChar(&m, '\r');
		appendStringInfoChar(&m, *p);
	}
	appendStringInfoString(&m, "\r\n");
	return m.data;
}

static void
make_request(Notification *n)
{
	long		timeout = vms_notifier_timeout_ms;

	n->answer.data = n->answer_buf;
	n->answer.data[0] = '\0';
	n->easy = curl_easy_init();
	if (n->easy == NULL)
		elog(ERROR, "vms notifier: curl_easy_init failed");
	curl_easy_setopt(n->easy, CURLOPT_URL, n->url);
	curl_easy_setopt(n->easy, CURLOPT_ERRORBUFFER, n->error);
	curl_easy_setopt(n->easy, CURLOPT_CONNECTTIMEOUT_MS, Min(timeout, (long) MAX_CONNECT_TIMEOUT_MS));
	curl_easy_setopt(n->easy, CURLOPT_TIMEOUT_MS, timeout);
	curl_easy_setopt(n->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(n->easy, CURLOPT_PRIVATE, n);
	curl_easy_setopt(n->easy, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(n->easy, CURLOPT_WRITEDATA, n);
	/*
	 * Only the route's own kind of URL is ever fetched: a file:// (or any
	 * other) URL written straight into vms.notify_route fails with
	 * "unsupported protocol" instead of being read, and so would a redirect.
	 */
	curl_easy_setopt(n->easy, CURLOPT_PROTOCOLS_STR, n->mail ? "smtp,smtps" : "http,https");
	curl_easy_setopt(n->easy, CURLOPT_REDIR_PROTOCOLS_STR, n->mail ? "smtp,smtps" : "http,https");
	if (n->mail)
	{
		char	   *list = pstrdup(n->mail_to);
		char	   *save = NULL;

		for (char *a = strtok_r(list, ",", &save); a; a = strtok_r(NULL, ",", &save))
			n->rcpt = curl_slist_append(n->rcpt, psprintf("<%s>", a));
		n->upload.data = mail_message(n);
		n->upload.len = strlen(n->upload.data);
		n->upload.pos = 0;
		curl_easy_setopt(n->easy, CURLOPT_MAIL_FROM, psprintf("<%s>", n->mail_from));
		curl_easy_setopt(n->easy, CURLOPT_MAIL_RCPT, n->rcpt);
		curl_easy_setopt(n->easy, CURLOPT_READFUNCTION, feed);
		curl_easy_setopt(n->easy, CURLOPT_READDATA, &n->upload);
		curl_easy_setopt(n->easy, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(n->easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t) n->upload.len);
	}
	else
	{
		n->headers = curl_slist_append(NULL, "Content-Type: application/json; charset=utf-8");
		n->headers = curl_slist_append(n->headers, psprintf("Idempotency-Key: %s", n->dedup_key));
		n->headers = curl_slist_append(n->headers, psprintf("X-Vms-Notification-Id: %s", n->dedup_key));
		n->headers = curl_slist_append(n->headers, "Expect:");
		curl_easy_setopt(n->easy, CURLOPT_HTTPHEADER, n->headers);
		curl_easy_setopt(n->easy, CURLOPT_POST, 1L);
		curl_easy_setopt(n->easy, CURLOPT_POSTFIELDS, n->body);
		curl_easy_setopt(n->easy, CURLOPT_POSTFIELDSIZE, (long) strlen(n->body));
	}
}

static void
attach(Notification *n)
{
	curl_multi_add_handle(multi, n->easy);
	n->attached = true;
	inflight[n_inflight++] = n;
}

/* detach from the multi handle (if attached) and free the curl side */
static void
free_request(Notification *n)
{
	if (n->easy == NULL)
		return;
	if (n->attached)
	{
		for (int i = 0; i < n_inflight; i++)
			if (inflight[i] == n)
			{
				inflight[i] = inflight[--n_inflight];
				break;
			}
		curl_multi_remove_handle(multi, n->easy);
		n->attached = false;
	}
	curl_slist_free_all(n->headers);
	curl_slist_free_all(n->rcpt);
	curl_easy_cleanup(n->easy);
	n->headers = NULL;
	n->rcpt = NULL;
	n->easy = NULL;
}

/* after an error: nothing may keep pointing into memory about to be reset */
static void
free_inflight(void)
{
	while (n_inflight > 0)
		free_request(inflight[n_inflight - 1]);
}

/* the outcome of a finished request */
static void
judge(Notification *n, CURLcode rc)
{
	long		code = 0;

	curl_easy_getinfo(n->easy, CURLINFO_RESPONSE_CODE, &code);
	n->status = code > 0 ? psprintf("%ld", code) : NULL;	/* NULL: no answer at all */
	if (rc != CURLE_OK)
	{
		n->ok = false;
		n->failure = psprintf("%s", n->error[0] ? n->error : curl_easy_strerror(rc));
	}
	else if (!n->mail && (code < 200 || code > 299))
	{
		n->ok = false;
		n->failure = psprintf("HTTP %ld: %.*s", code, MAX_ERROR_TEXT, n->answer.data);
		/* the answer is the receiver's bytes: keep printable ASCII only */
		for (char *p = n->failure; *p; p++)
			if ((unsigned char) *p < 0x20 || (unsigned char) *p > 0x7e)
				*p = ' ';
	}
	else
	{
		n->ok = true;
		n->failure = NULL;
	}
}

/* no control character (CR, LF ...) that could end a header or an SMTP command */
static bool
header_safe(const char *s)
{
	for (; *s; s++)
		if ((unsigned char) *s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/*
 * The recipients fit for To: and RCPT TO: vms.notify_route_add checks every
 * address, but a row written straight into vms.notify_route is not checked;
 * an address with a line break would add headers or SMTP commands, so it is
 * left out (with a warning) rather than sent.
 */
static char *
safe_recipients(const char *list, const char *dedup_key)
{
	StringInfoData out;
	char	   *copy = pstrdup(list);
	char	   *save = NULL;

	initStringInfo(&out);
	for (char *a = strtok_r(copy, ",", &save); a; a = strtok_r(NULL, ",", &save))
	{
		if (!header_safe(a))
		{
			ereport(WARNING,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("vms notifier: %s: a mail_to address with a control character is left out", dedup_key),
					 errhint("Correct the route's mail_to (vms.notify_route).")));
			continue;
		}
		if (out.len > 0)
			appendStringInfoChar(&out, ',');
		appendStringInfoString(&out, a);
	}
	return out.data;
}

/* claim due notifications in a short transaction; returns how many */
static int
claim(Notification **out)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1];
	int			count = 0;

	values[0] = Int32GetDatum(vms_notifier_batch);
	vms_worker_begin_tx("vms notifier: claim");
	if (SPI_execute_with_args(SQL_CLAIM, 1, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "vms notifier: could not claim notifications");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		char	   *id = SPI_getvalue(t, d, 1);
		char	   *kind = SPI_getvalue(t, d, 2);
		char	   *url = SPI_getvalue(t, d, 3);
		char	   *mail_to = SPI_getvalue(t, d, 4);
		char	   *dedup_key = SPI_getvalue(t, d, 5);
		char	   *body = SPI_getvalue(t, d, 6);
		char	   *subject = SPI_getvalue(t, d, 7);
		char	   *mail_from = SPI_getvalue(t, d, 8);
		MemoryContext old;
		Notification *n;

		/* the tables' NOT NULLs say these are there */
		if (id == NULL || kind == NULL || url == NULL || dedup_key == NULL || body == NULL)
			elog(ERROR, "vms notifier: vms._notify_claim returned a notification with NULLs");
		old = MemoryContextSwitchTo(loop_cxt);
		n = palloc0(sizeof(Notification));
		n->id = atoll(id);
		n->mail = strcmp(kind, "smtp") == 0;
		n->url = pstrdup(url);
		n->mail_to = safe_recipients(mail_to ? mail_to : "", dedup_key);
		n->dedup_key = pstrdup(dedup_key);
		n->body = pstrdup(body);
		n->subject = pstrdup(subject ? subject : "[vms]");
		/* (a route's mail_from with a line break, written past notify_route_add: the default) */
		n->mail_from = pstrdup(mail_from && header_safe(mail_from) ? mail_from : vms_notifier_mail_from);
		out[count++] = n;
		MemoryContextSwitchTo(old);
	}
	vms_worker_end_tx();
	return count;
}

/* record outcomes in one transaction */
static void
record(Notification **done, int n)
{
	Oid			types[4] = {INT8ARRAYOID, BOOLARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		values[4];
	Datum	   *ids = palloc(sizeof(Datum) * n),
			   *oks = palloc(sizeof(Datum) * n),
			   *statuses = palloc(sizeof(Datum) * n),
			   *errors = palloc(sizeof(Datum) * n);
	bool	   *errnulls = palloc(sizeof(bool) * n),
			   *statusnulls = palloc(sizeof(bool) * n);
	int			dims[1] = {n},
				lbs[1] = {1};

	for (int i = 0; i < n; i++)
	{
		ids[i] = Int64GetDatum(done[i]->id);
		oks[i] = BoolGetDatum(done[i]->ok);
		statuses[i] = done[i]->status ? CStringGetTextDatum(done[i]->status) : (Datum) 0;
		statusnulls[i] = done[i]->status == NULL;
		errors[i] = done[i]->failure ? CStringGetTextDatum(done[i]->failure) : (Datum) 0;
		errnulls[i] = done[i]->failure == NULL;
	}
	values[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[1] = PointerGetDatum(construct_array(oks, n, BOOLOID, 1, true, TYPALIGN_CHAR));
	values[2] = PointerGetDatum(construct_md_array(statuses, statusnulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
	values[3] = PointerGetDatum(construct_md_array(errors, errnulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));

	vms_worker_begin_tx("vms notifier: record results");
	if (SPI_execute_with_args(SQL_RESULTS, 4, types, values, NULL, false, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "vms notifier: could not record results");
	else
	{
		HeapTuple	t = SPI_tuptable->vals[0];
		TupleDesc	d = SPI_tuptable->tupdesc;
		char	   *delivered = SPI_getvalue(t, d, 1),
				   *retried = SPI_getvalue(t, d, 2),
				   *dead = SPI_getvalue(t, d, 3);

		vms_worker_count(slot, C_DELIVERED, delivered ? atoll(delivered) : 0);
		vms_worker_count(slot, C_RETRIED, retried ? atoll(retried) : 0);
		vms_worker_count(slot, C_DEAD, dead ? atoll(dead) : 0);
	}
	vms_worker_end_tx();
	for (int i = 0; i < n; i++)
		if (!done[i]->ok)
			vms_worker_error(slot, "%s: %s", done[i]->dedup_key, done[i]->failure);
}

/*
 * Send a claimed batch: vms.notifier_concurrency requests in flight, each
 * answer as it comes freeing room for the next; the outcomes that have
 * arrived are recorded together whenever the network is quiet.
 */
static void
deliver(Notification **batch, int count)
{
	Notification **done = palloc(sizeof(Notification *) * count);
	int			next = 0,
				ndone = 0,
				recorded = 0,
				running = 0;

	vms_worker_set_state(slot, "delivering");
	while (recorded < count)
	{
		CURLMsg    *msg;
		int			left;

		CHECK_FOR_INTERRUPTS();
		while (next < count && n_inflight < vms_notifier_concurrency)
		{
			make_request(batch[next]);
			attach(batch[next]);
			vms_worker_count(slot, batch[next]->mail ? C_MAIL : C_WEBHOOK, 1);
			next++;
		}
		curl_multi_perform(multi, &running);
		while ((msg = curl_multi_info_read(multi, &left)) != NULL)
		{
			Notification *n = NULL;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &n);
			judge(n, msg->data.result);
			free_request(n);
			done[ndone++] = n;
		}
		/* record when every request is done, or room for more is waiting on the database */
		if (ndone > recorded && (n_inflight == 0 || next >= count || ndone - recorded >= vms_notifier_concurrency))
		{
			record(done + recorded, ndone - recorded);
			vms_worker_count(slot, C_SENT, ndone - recorded);
			recorded = ndone;
		}
		if (n_inflight > 0)
			curl_multi_poll(multi, NULL, 0, CURL_POLL_MS, NULL);
	}
}

/*
 * One "SELECT vms.f()" returning a count, in a transaction of its own: the
 * count, read before the transaction ends.
 */
static int64
call_counting(const char *sql)
{
	int64		n = 0;

	vms_worker_begin_tx(sql);
	if (SPI_execute(sql, false, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "vms notifier: %s failed", sql);
	else
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		n = v ? atoll(v) : 0;
	}
	vms_worker_end_tx();
	return n;
}

/* vms.ops_run_due() once a minute */
static void
run_schedule(void)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		ran;

	if (!vms_notifier_run_schedule ||
		(ops_last_run != 0 && now < TimestampTzPlusMilliseconds(ops_last_run, OPS_RUN_INTERVAL_MS)))
		return;
	/* timed before the call: a failing run is not retried at once */
	ops_last_run = now;
	ran = call_counting(SQL_OPS_RUN_DUE);
	vms_worker_count(slot, C_OPS_RUNS, 1);
	vms_worker_count(slot, C_OPS_RAN, ran);
}

/*
 * What backends queued in shared memory, written in one transaction each:
 * refused rights (extension/audit_denied.c; the refusing backend wakes this
 * worker) and vms.search_points' history rows (search_history_queue.c;
 * written at this round instead of one INSERT per search).
 */
static void
flush_side_queues(void)
{
	if (vms_audit_denied_waiting())
		vms_worker_count(slot, C_DENIED_AUDITED, call_counting(SQL_FLUSH_DENIED));
	if (vms_search_history_waiting())
		vms_worker_count(slot, C_SEARCHES_WRITTEN, call_counting(SQL_FLUSH_SEARCHES));
}

/*
 * Nothing due: wait for vms.notifier_poll_interval, or less when the
 * schedule is due sooner, or until the latch is set.  vms._notify_enqueue
 * (and vms.notify_redrive) call vms._wake_worker('notifier'), which sets
 * this worker's latch (found in the worker registry) when the queuing
 * transaction commits, so a new notification goes out at once; the poll
 * picks up retries and ends of quiet hours, and anything queued while the
 * worker was not running.  A latch set during the round is not lost: it is
 * reset only after this wait.  Done here rather than by the generic round
 * loop, whose idle wait is fixed.
 */
static void
idle_wait(void)
{
	long		wait_ms = vms_notifier_poll_ms;

	if (vms_notifier_run_schedule && ops_last_run != 0)
	{
		long		secs;
		int			usecs;

		TimestampDifference(GetCurrentTimestamp(), TimestampTzPlusMilliseconds(ops_last_run, OPS_RUN_INTERVAL_MS),
							&secs, &usecs);
		wait_ms = Min(wait_ms, secs * 1000L + usecs / 1000 + 1);
	}
	vms_worker_set_state(slot, "running");
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, wait_ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
}

/* one round: the schedule when due, then one claimed batch, or the idle wait */
static bool
notifier_round(void)
{
	Notification **batch;
	int			count;

	/* no SQL until the extension is there, at this library's version */
	if (!vms_worker_ready(slot))
		return false;
	flush_side_queues();
	run_schedule();
	batch = palloc(sizeof(Notification *) * vms_notifier_batch);
	count = claim(batch);
	if (count > 0)
		deliver(batch, count);
	vms_worker_set_state(slot, "running");
	if (count == 0)
		idle_wait();
	/* after a batch more may be waiting; after the wait, look again */
	return true;
}

void
vms_notifier_main(Datum arg)
{
	slot = vms_worker_init("vms notifier");

	curl_global_init(CURL_GLOBAL_DEFAULT);
	multi = curl_multi_init();
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) MAX_CONNECTS);
	loop_cxt = AllocSetContextCreate(vms_worker_cxt, "vms notifier loop", ALLOCSET_DEFAULT_SIZES);
	inflight = MemoryContextAllocZero(vms_worker_cxt, sizeof(Notification *) * NOTIFIER_MAX_CONCURRENCY);
	vms_worker_set_state(slot, "running");
	vms_worker_run_rounds(slot, loop_cxt, "vms notifier", notifier_round, free_inflight);
}
