/*
 * viid_server.c — the GA/T 1400 server worker ("vms viid-server"): capture
 * devices and lower view libraries register with vms and post records.
 *
 * libmicrohttpd parses HTTP and does the digest authentication; it runs in
 * this process with no threads of its own (MHD_USE_EPOLL, driven by
 * MHD_run): its epoll descriptor is one socket event of the worker's wait,
 * next to the latch.  The libmicrohttpd callbacks never call PostgreSQL:
 * they check the request (route, Content-Type, size, digest against the
 * cached HA1 of vms.viid_client, rate), collect the body, and suspend the
 * connection.  After each MHD_run the worker answers every suspended
 * request in one short transaction (vms._viid_server_request per request:
 * per-item validation, mapping and storage in SQL), commits, and only then
 * queues the answers and resumes the connections: a client hears "stored"
 * only for what is committed, and no transaction spans a network wait.
 *
 * Settings: viid_server_settings.c.  Counters: the launcher's kinds table.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <malloc.h>
#include <microhttpd.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <sys/socket.h>
#include <time.h>

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "../worker_registry.h"
#include "../worker_tx.h"
#include "viid_http.h"
#include "viid_server_settings.h"

PGDLLEXPORT void vms_viid_server_main(Datum arg);

/* limits */
#define MAX_CLIENTS 100000		/* clients cached for digest checks */
#define MAX_PATH 256			/* a longer path is an unknown resource */
#define MAX_BATCH_REQUESTS 64	/* requests answered in one transaction */
#define NONCE_NC_SIZE 65536		/* nonce/nc pairs libmicrohttpd remembers (not replay protection: see Seen) */
#define SEEN_MAX (1024 * 1024)	/* accepted digests remembered at once (Seen); more get 503 */
#define CONNECTION_MEMORY (64 * 1024)	/* libmicrohttpd's buffer per connection (headers) */
#define MAX_BUFFERED_BYTES ((size_t) 256 * 1024 * 1024)	/* request bodies held at once, all connections;
														 * more get 503 (vms.viid_server_max_body is at
														 * most as much) */

/* timings, in milliseconds unless named _S */
#define CLIENT_REFRESH_MS 1000	/* vms.viid_client is read this often */
#define CLIENT_STALE_REFRESH_MS 100	/* and again this soon after an unknown client or a wrong digest, */
#define CLIENT_STALE_EVERY_MS 1000	/* but such an early read at most this often (anyone can ask for it) */
#define NONCE_TIMEOUT_S 300		/* a nonce older than this is stale: the client gets a new one */
#define SEEN_KEEP_S (NONCE_TIMEOUT_S + 2)	/* an accepted digest is remembered this many whole seconds
											 * of the monotonic clock, i.e. over NONCE_TIMEOUT_S + 1 s:
											 * libmicrohttpd calls its nonce stale by then */
#define SEEN_RING (SEEN_KEEP_S + 1)	/* one list of accepted digests per second */
#define LOG_EVERY_MS 10000		/* each kind of bad input is logged at most this often */
#define NOT_READY_WAIT_MS 1000

#define SQL_CLIENTS "SELECT client_id, ha1_md5 FROM vms._viid_server_clients($1)"
#define SQL_REQUEST \
	"SELECT http_status, response, stored, rejected, event FROM vms._viid_server_request($1, $2, $3, $4, $5)"

#define CONTENT_TYPE "application/VIID+JSON;charset=UTF-8"
#define OPAQUE "vms-viid-server"

enum
{
	C_REQUESTS, C_STORED, C_REJECTED, C_REGISTRATIONS, C_KEEPALIVES, C_AUTH_FAILURES, C_STALE_NONCES,
	C_BAD_REQUESTS, C_TOO_LARGE, C_BAD_CONTENT_TYPE, C_NOT_FOUND, C_RATE_LIMITED, C_TIMEOUTS,
	C_CONNECTIONS, C_INTERNAL_ERRORS, C_BATCHES, C_COUNT
};
static const char *const counter_what[C_COUNT] = {
	"request", "stored", "rejected record", "registration", "keepalive", "authentication failure",
	"stale or replayed nonce", "bad request", "body over the limit", "wrong Content-Type",
	"unknown resource", "rate limited", "connection timed out", "connection", "internal error", "batch"
};

typedef struct Client
{
	char		id[21];
	uint8_t		ha1[16];
	ViidBucket	bucket;
} Client;

/*
 * One request.  Made and filled by the libmicrohttpd callbacks with malloc
 * (they must not raise an ERROR), freed when libmicrohttpd is done with it.
 */
typedef struct Req
{
	struct MHD_Connection *conn;
	ViidRoute	route;
	char		method[8];
	char		path[MAX_PATH];
	char		client[21];
	char		remote[64];
	char	   *body;			/* VARHDRSZ bytes after the start of its malloc'ed
								 * block (body_grow): the batch hands it to SQL as
								 * text without copying it */
	size_t		len;
	size_t		cap;
	size_t		announced;		/* Content-Length: the body's buffer is made that big at once */
	int			fail_status;	/* an error found while the body came in */
	int			fail_counter;
	const char *fail_reason;
	bool		answered;		/* status and answer are ready: queue them when resumed */
	int			status;
	char	   *answer;
	struct Req *next;			/* waiting for the batch */
} Req;

/*
 * One connection, for the request deadline: libmicrohttpd's timeout
 * (vms.viid_server_timeout) is reset by every byte, so a client trickling a
 * header a byte at a time would hold its connection for ever.  A request
 * not all in within vms.viid_server_request_timeout of its start (the
 * connection's opening, or the answer to its previous request) is cut off:
 * shutdown() on its socket, which libmicrohttpd then closes.
 */
typedef struct Conn
{
	struct MHD_Connection *conn;
	int			fd;
	TimestampTz since;			/* the current request began */
	bool		busy;			/* it is all in: the batch answers it */
	bool		cut;			/* shut down, libmicrohttpd closes it */
	char		remote[64];
	struct Conn *prev;
	struct Conn *next;
} Conn;

/*
 * Replay protection.  libmicrohttpd 0.9.75 has none that holds: its nonce is
 * a hash of the second, method, URI, realm and its random seed, so every
 * challenge for the same method and URI within a second is the same nonce,
 * and each challenge (any 401), like any request with nc=00000000 (checked
 * before the response), resets that nonce's count: a captured Authorization
 * header was accepted again, with any body (qop=auth does not cover it).
 * So the worker remembers every (client, nonce, cnonce, nc) libmicrohttpd
 * accepted, as the SHA-256 of the four, for SEEN_KEEP_S seconds (the nonce
 * is stale by then), and refuses one seen before.  The entries live in a
 * dynahash (HASH_ENTER_NULL: no ERROR inside a libmicrohttpd callback), one
 * list per second of the monotonic clock in a ring of SEEN_RING lists: a
 * second's list is dropped whole once it is SEEN_KEEP_S old.  At most
 * SEEN_MAX entries (about 64 MB): when full, requests get 503 with
 * Retry-After, and no entry is forgotten early.  One client holds at most
 * what its rate lets it send in that time (vms.viid_server_rate ×
 * (SEEN_KEEP_S + 1), the burst included; beyond: 429), so one client with
 * valid credentials cannot fill the table and lock the others out.  The
 * tables allocate without ERROR (seen_alloc): HASH_ENTER_NULL needs that.
 */
typedef struct SeenClient
{
	char		id[21];			/* key */
	int64		live;			/* its entries in Seen */
} SeenClient;

typedef struct Seen
{
	uint8		key[32];		/* SHA-256 of client id, nonce, cnonce, nc (each NUL-ended) */
	struct Seen *next;			/* same second */
	SeenClient *owner;			/* stays while live > 0 */
} Seen;

typedef enum
{
	SEEN_NEW, SEEN_REPLAY, SEEN_FULL, SEEN_CLIENT_FULL
} SeenResult;

static HTAB *seen = NULL;
static HTAB *seen_clients = NULL;
static MemoryContext seen_cxt = NULL;
static Seen *seen_ring[SEEN_RING];
static int64 seen_ring_sec[SEEN_RING];	/* the second whose list each is */
static int64 seen_dropped_upto = 0;	/* the lists of every second up to this one are dropped */

static VmsWorkerSlot *slot;
static MemoryContext loop_cxt;
static struct MHD_Daemon *daemon_ = NULL;
static WaitEventSet *wait_set = NULL;
static int	daemon_port = 0;	/* the settings the daemon was started with */
static bool daemon_tls = false;
static bool was_ready = false;	/* the last round found the extension ready */
static char daemon_sig[1024];

static Client *clients = NULL;
static int	n_clients = 0;
static TimestampTz clients_loaded_at = 0;
static TimestampTz clients_stale_read_at = 0;	/* the last early read for clients_stale */
static bool clients_stale = false;	/* a callback met an unknown client: read them again soon */
static char clients_realm[256];

static Conn *conns = NULL;		/* every open connection */
static TimestampTz conns_swept_at = 0;
static TimestampTz conns_next_due = 0;	/* the earliest deadline at the last sweep */
static size_t buffered_bytes = 0;	/* sum of every Req's cap */
static Req *queue_head = NULL;
static Req *queue_tail = NULL;
static int	n_queued = 0;
static Req **batch_reqs = NULL;	/* off the queue, in a batch: resumed on exit too */
static int	n_batch_reqs = 0;
static int64 pending_counts[C_COUNT];

/*
 * SQL_REQUEST, prepared once with a generic plan: planned afresh for each
 * request (SPI_execute_with_args), the body became a constant the planner
 * copied (2.7 MB for 100 records with images).  Kept across transactions;
 * PostgreSQL replans it when what it names changes.
 */
static SPIPlanPtr request_plan = NULL;

/* bad input is logged at most every LOG_EVERY_MS per kind, with how many were not */
static TimestampTz logged_at[C_COUNT];
static int64 unlogged[C_COUNT];

static void
note(int counter, const char *remote, const char *detail)
{
	TimestampTz now = GetCurrentTimestamp();

	pending_counts[counter]++;
	if (counter == C_REQUESTS || counter == C_CONNECTIONS || counter == C_STORED ||
		counter == C_REGISTRATIONS || counter == C_KEEPALIVES || counter == C_BATCHES)
		return;
	if (now < TimestampTzPlusMilliseconds(logged_at[counter], LOG_EVERY_MS))
	{
		unlogged[counter]++;
		return;
	}
	/*
	 * In a libmicrohttpd callback: errfinish() ends with
	 * CHECK_FOR_INTERRUPTS(), which could longjmp through libmicrohttpd's
	 * frames; every call into libmicrohttpd that can call back (MHD_run,
	 * MHD_stop_daemon, MHD_start_daemon) runs between HOLD_INTERRUPTS() and
	 * RESUME_INTERRUPTS() (mhd_run, mhd_stop), so a LOG here returns.
	 */
	ereport(LOG,
			(errmsg("vms viid-server: %s from %s: %s", counter_what[counter], remote ? remote : "?", detail),
			 unlogged[counter] > 0 ? errdetail("%lld more since the last such message.", (long long) unlogged[counter]) : 0));
	logged_at[counter] = now;
	unlogged[counter] = 0;
}

static void
flush_counts(void)
{
	for (int c = 0; c < C_COUNT; c++)
		if (pending_counts[c])
		{
			vms_worker_count(slot, c, pending_counts[c]);
			pending_counts[c] = 0;
		}
}

/* ---------------------------------------------------------------- answers */

/* s as a JSON string body (no quotes) into buf; non-ASCII bytes become '?' */
static void
json_escape(char *buf, size_t size, const char *s)
{
	size_t		o = 0;

	for (; s && *s && o + 7 < size; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (c == '"' || c == '\\')
		{
			buf[o++] = '\\';
			buf[o++] = c;
		}
		else if (c < 0x20 || c == 0x7f)
			o += snprintf(buf + o, size - o, "\\u%04x", c);
		else
			buf[o++] = c >= 0x80 ? '?' : c;
	}
	buf[o] = '\0';
}

static char *
status_json(const char *path, int code, const char *reason)
{
	char		p[2 * MAX_PATH],
				r[512],
				local[32];
	time_t		t = time(NULL) + 8 * 3600;	/* China Standard Time, as the SQL answers */
	struct tm	tm;
	char	   *out = malloc(1024 + sizeof(p) + sizeof(r));

	if (out == NULL)
		return NULL;
	gmtime_r(&t, &tm);
	strftime(local, sizeof(local), "%Y%m%d%H%M%S", &tm);
	json_escape(p, sizeof(p), path);
	json_escape(r, sizeof(r), reason);
	snprintf(out, 1024 + sizeof(p) + sizeof(r),
			 "{\"ResponseStatusObject\": {\"RequestURL\": \"%s\", \"StatusCode\": \"%d\", "
			 "\"StatusString\": \"%s\", \"Id\": \"\", \"LocalTime\": \"%s\"}}", p, code, r, local);
	return out;
}

static struct MHD_Response *
make_response(const char *body)
{
	struct MHD_Response *resp;

	resp = MHD_create_response_from_buffer(body ? strlen(body) : 0, (void *) (body ? body : ""), MHD_RESPMEM_MUST_COPY);
	if (resp)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE);
	return resp;
}

/* answer a request the callbacks refuse: HTTP status, ResponseStatus with the reason, counted, logged */
static enum MHD_Result
refuse(Req *r, int http_status, int counter, const char *reason)
{
	char	   *body = status_json(r->path, http_status == 404 || http_status == 405 ? 4 : 1, reason);
	struct MHD_Response *resp = make_response(body);
	enum MHD_Result ret;

	free(body);
	note(counter, r->remote, reason);
	if (resp == NULL)
		return MHD_NO;
	if (http_status == 503)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
	if (http_status == 413 || http_status == 429 || http_status == 503)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	ret = MHD_queue_response(r->conn, http_status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result
challenge(Req *r, bool stale, int counter, const char *reason)
{
	char	   *body = status_json(r->path, 4, reason);
	struct MHD_Response *resp = make_response(body);
	enum MHD_Result ret;

	free(body);
	if (counter >= 0)
		note(counter, r->remote, reason);
	if (resp == NULL)
		return MHD_NO;
	ret = MHD_queue_auth_fail_response2(r->conn, vms_viid_server_realm, OPAQUE, resp,
										stale ? MHD_YES : MHD_NO, MHD_DIGEST_ALG_MD5);
	MHD_destroy_response(resp);
	return ret;
}

/*
 * Calls into libmicrohttpd that may call our callbacks back hold interrupts:
 * a cancel or SIGTERM noticed by a LOG in a callback must not longjmp through
 * libmicrohttpd (nor a FATAL stop the daemon from inside its own callback).
 * What arrived meanwhile is served right after, by CHECK_FOR_INTERRUPTS.
 */
static void
mhd_run(void)
{
	HOLD_INTERRUPTS();
	MHD_run(daemon_);
	RESUME_INTERRUPTS();
	CHECK_FOR_INTERRUPTS();
}

static void
mhd_stop(void)
{
	struct MHD_Daemon *d = daemon_;

	daemon_ = NULL;
	HOLD_INTERRUPTS();
	MHD_stop_daemon(d);
	RESUME_INTERRUPTS();
}

/* ---------------------------------------------------------------- callbacks */

static void
remote_of(struct MHD_Connection *conn, char *buf, size_t size)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

	buf[0] = '\0';
	if (ci && ci->client_addr)
	{
		if (ci->client_addr->sa_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *) ci->client_addr)->sin_addr, buf, size);
		else if (ci->client_addr->sa_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *) ci->client_addr)->sin6_addr, buf, size);
	}
}

static Conn *
conn_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci ? (Conn *) ci->socket_context : NULL;
}

static Client *
find_client(const char *id)
{
	int			lo = 0,
				hi = n_clients - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		int			c = strcmp(id, clients[mid].id);

		if (c == 0)
			return &clients[mid];
		if (c < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return NULL;
}

/*
 * r->body's malloc'ed block: the body with room for a varlena header before
 * it.  A request of 100 records with images is a 2.7 MB body: handed to SQL
 * as it is, it is not copied once more into a text.
 */
static bool
body_grow(Req *r, size_t cap)
{
	char	   *grown = realloc(r->body ? r->body - VARHDRSZ : NULL, cap + VARHDRSZ);

	if (grown == NULL)
		return false;
	r->body = grown + VARHDRSZ;
	return true;
}

static void
body_free(Req *r)
{
	if (r->body)
		free(r->body - VARHDRSZ);
	r->body = NULL;
}

/* the body as a text datum, in place (its varlena header set now) */
static Datum
body_text(Req *r)
{
	SET_VARSIZE(r->body - VARHDRSZ, r->len + VARHDRSZ);
	return PointerGetDatum(r->body - VARHDRSZ);
}

static int64
monotonic_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64) ts.tv_sec;
}

/* dynahash's allocator for Seen: NULL when out of memory, never an ERROR */
static void *
seen_alloc(Size size)
{
	return MemoryContextAllocExtended(seen_cxt, size, MCXT_ALLOC_NO_OOM);
}

static void
seen_drop_list(int i)
{
	Seen	   *e = seen_ring[i];

	while (e)
	{
		Seen	   *next = e->next;
		SeenClient *owner = e->owner;

		(void) hash_search(seen, e->key, HASH_REMOVE, NULL);
		if (--owner->live <= 0)
			(void) hash_search(seen_clients, owner->id, HASH_REMOVE, NULL);
		e = next;
	}
	seen_ring[i] = NULL;
}

/* drop the lists of seconds at least SEEN_KEEP_S old */
static void
seen_expire(int64 now_s)
{
	int64		upto = now_s - SEEN_KEEP_S;

	if (upto <= seen_dropped_upto)
		return;
	if (upto - seen_dropped_upto >= SEEN_RING)
	{
		for (int i = 0; i < SEEN_RING; i++)
			if (seen_ring[i] && seen_ring_sec[i] <= upto)
				seen_drop_list(i);
	}
	else
		for (int64 s = seen_dropped_upto + 1; s <= upto; s++)
		{
			int			i = (int) (s % SEEN_RING);

			if (seen_ring[i] && seen_ring_sec[i] <= upto)
				seen_drop_list(i);
		}
	seen_dropped_upto = upto;
}

/* remember an accepted digest; SEEN_REPLAY when it was accepted before */
static SeenResult
seen_add(const char *client, const ViidDigest *d)
{
	uint8		key[EVP_MAX_MD_SIZE];
	unsigned int keylen = 0;
	char		buf[21 + sizeof(d->nonce) + sizeof(d->cnonce) + sizeof(d->nc)];
	size_t		n = 0;
	int64		now_s = monotonic_s();
	bool		found;
	Seen	   *e;
	SeenClient *owner;
	char		cid[sizeof(owner->id)];
	int			i;

	for (const char *part[4] = {client, d->nonce, d->cnonce, d->nc}, **p = part; p < part + 4; p++)
	{
		size_t		len = strlen(*p) + 1;

		memcpy(buf + n, *p, len);
		n += len;
	}
	if (EVP_Digest(buf, n, key, &keylen, EVP_sha256(), NULL) != 1 || keylen != sizeof(e->key))
		return SEEN_FULL;
	seen_expire(now_s);
	e = hash_search(seen, key, HASH_FIND, NULL);
	if (e)
		return SEEN_REPLAY;
	if (hash_get_num_entries(seen) >= SEEN_MAX)
		return SEEN_FULL;
	memset(cid, 0, sizeof(cid));
	strlcpy(cid, client, sizeof(cid));
	owner = hash_search(seen_clients, cid, HASH_ENTER_NULL, &found);
	if (owner == NULL)
		return SEEN_FULL;		/* out of memory */
	if (!found)
		owner->live = 0;
	if (vms_viid_server_rate > 0 &&
		owner->live >= (int64) vms_viid_server_rate * (SEEN_KEEP_S + 1))
		return SEEN_CLIENT_FULL;
	e = hash_search(seen, key, HASH_ENTER_NULL, &found);
	if (e == NULL)
	{
		if (owner->live == 0)
			(void) hash_search(seen_clients, cid, HASH_REMOVE, NULL);
		return SEEN_FULL;		/* out of memory */
	}
	e->owner = owner;
	owner->live++;
	i = (int) (now_s % SEEN_RING);
	if (seen_ring[i] && seen_ring_sec[i] != now_s)
		seen_drop_list(i);		/* SEEN_RING or more seconds old: seen_expire dropped it already */
	seen_ring_sec[i] = now_s;
	e->next = seen_ring[i];
	seen_ring[i] = e;
	return SEEN_NEW;
}

/* headers are in: route, Content-Type, size, digest, rate */
static enum MHD_Result
check_headers(Req *r, const char *url, const char *method)
{
	const char *ctype,
			   *clen;
	char	   *user;
	Client	   *c;
	int			ok;
	ViidDigest	d;
	const char *why;

	strlcpy(r->method, method, sizeof(r->method));
	if (strlen(url) >= MAX_PATH)
	{
		strlcpy(r->path, "(too long)", sizeof(r->path));
		return refuse(r, 404, C_NOT_FOUND, "unknown resource (path too long)");
	}
	strlcpy(r->path, url, sizeof(r->path));
	remote_of(r->conn, r->remote, sizeof(r->remote));
	r->route = viid_route(method, url);
	switch (r->route)
	{
		case VIID_ROUTE_UNKNOWN:
		case VIID_ROUTE_TRAVERSAL:
			return refuse(r, 404, C_NOT_FOUND, viid_route_reason(r->route));
		case VIID_ROUTE_BAD_METHOD:
			return refuse(r, 405, C_BAD_REQUESTS, viid_route_reason(r->route));
		default:
			break;
	}
	if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0)
	{
		ctype = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
		if (!viid_json_content_type(ctype))
			return refuse(r, 415, C_BAD_CONTENT_TYPE, "Content-Type must be application/VIID+JSON");
		clen = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (clen && strtoull(clen, NULL, 10) > (unsigned long long) vms_viid_server_max_body_kb * 1024)
			return refuse(r, 413, C_TOO_LARGE, "body over vms.viid_server_max_body");
		if (clen && buffered_bytes + strtoull(clen, NULL, 10) > MAX_BUFFERED_BYTES)
			return refuse(r, 503, C_RATE_LIMITED, "server busy: too many request bodies held at once; send it again");
		if (clen)
			r->announced = (size_t) strtoull(clen, NULL, 10);
	}

	/*
	 * The Authorization header is checked before libmicrohttpd's digest
	 * check: every field there and bounded, and nc exactly 8 hex digits, not
	 * 0 (libmicrohttpd would reset the nonce's counts for nc 0 even with a
	 * wrong response).
	 */
	why = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (why == NULL)
		return challenge(r, false, -1, "digest authentication required");
	why = viid_digest_parse(why, &d);
	if (why)
		return challenge(r, false, C_AUTH_FAILURES, why);
	user = MHD_digest_auth_get_username(r->conn);
	if (user == NULL)
		return challenge(r, false, C_AUTH_FAILURES, "digest Authorization without a username");
	c = find_client(user);
	if (c == NULL)
	{
		char		u[64],
					reason[96];

		json_escape(u, sizeof(u), user);
		MHD_free(user);
		clients_stale = true;
		snprintf(reason, sizeof(reason), "unknown client \"%s\"", u);
		return challenge(r, false, C_AUTH_FAILURES, reason);
	}
	ok = MHD_digest_auth_check_digest2(r->conn, vms_viid_server_realm, user, c->ha1, sizeof(c->ha1),
									   NONCE_TIMEOUT_S, MHD_DIGEST_ALG_MD5);
	MHD_free(user);
	if (ok == MHD_INVALID_NONCE)
		return challenge(r, true, C_STALE_NONCES, "nonce stale, unknown or replayed");
	if (ok != MHD_YES)
	{
		/*
		 * stale=true for a known client: libmicrohttpd 0.9.75 gives every
		 * client challenged within the same second the same nonce (and one
		 * slot of its nonce-count array), so a good client whose nonce count
		 * collides with another's is refused here; told "stale" it answers
		 * the new challenge instead of giving up.  Said for every failure of
		 * a known client, it tells nothing about the password.
		 */
		clients_stale = true;	/* the password may have changed */
		return challenge(r, true, C_AUTH_FAILURES, "digest does not match, or its nonce count was used before");
	}
	/* libmicrohttpd accepted it: refuse it if it did so before (see Seen) */
	switch (seen_add(c->id, &d))
	{
		case SEEN_NEW:
			break;
		case SEEN_REPLAY:
			return challenge(r, true, C_STALE_NONCES,
							 "replayed digest: this nonce, cnonce and nonce count were accepted before");
		case SEEN_CLIENT_FULL:
			return refuse(r, 429, C_RATE_LIMITED,
						  "request rate over vms.viid_server_rate within the nonce lifetime");
		case SEEN_FULL:
			return refuse(r, 503, C_RATE_LIMITED,
						  "server busy: too many authenticated requests within the nonce lifetime; send it again");
	}
	strlcpy(r->client, c->id, sizeof(r->client));
	if (r->route == VIID_ROUTE_SUBSCRIBES && strcmp(method, "DELETE") == 0)
	{
		/* DELETE /VIID/Subscribes?IDList=a,b: the SQL takes the list as the body */
		const char *ids = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "IDList");

		if (ids && strlen(ids) < 65536 && body_grow(r, strlen(ids) + 1))
		{
			memcpy(r->body, ids, strlen(ids) + 1);
			r->len = strlen(ids);
			r->cap = r->len + 1;
			buffered_bytes += r->cap;
		}
	}
	if (!viid_bucket_take(&c->bucket, vms_viid_server_rate, GetCurrentTimestamp()))
		return refuse(r, 429, C_RATE_LIMITED, "request rate over vms.viid_server_rate");
	return MHD_YES;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
		   const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
	Req		   *r = *con_cls;

	if (r == NULL)
	{
		r = calloc(1, sizeof(Req));
		if (r == NULL)
			return MHD_NO;
		r->conn = conn;
		*con_cls = r;
		note(C_REQUESTS, NULL, NULL);
		return check_headers(r, url, method);
	}
	if (r->answered)
	{
		struct MHD_Response *resp = make_response(r->answer);
		enum MHD_Result ret;

		if (resp == NULL)
			return MHD_NO;
		if (r->status == 503)
			MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
		ret = MHD_queue_response(conn, r->status, resp);
		MHD_destroy_response(resp);
		return ret;
	}
	if (*upload_size > 0)
	{
		size_t		n = *upload_size;
		size_t		max = (size_t) vms_viid_server_max_body_kb * 1024;

		*upload_size = 0;
		if (r->fail_status)
			return MHD_YES;		/* drain what is already sent */
		if (r->len + n > max)
		{
			r->fail_status = 413;
			r->fail_counter = C_TOO_LARGE;
			r->fail_reason = "body over vms.viid_server_max_body";
			body_free(r);
			buffered_bytes -= r->cap;
			r->len = r->cap = 0;
			return MHD_YES;
		}
		if (r->len + n + 1 > r->cap)
		{
			size_t		cap = Min(Max(Max(r->cap * 2, r->len + n + 1), r->announced + 1), max + 1);

			if (buffered_bytes - r->cap + cap > MAX_BUFFERED_BYTES)
			{
				/* all connections together: no more than MAX_BUFFERED_BYTES */
				r->fail_status = 503;
				r->fail_counter = C_RATE_LIMITED;
				r->fail_reason = "server busy: too many request bodies held at once; send it again";
				body_free(r);
				buffered_bytes -= r->cap;
				r->len = r->cap = 0;
				return MHD_YES;
			}
			if (!body_grow(r, cap))
				return MHD_NO;
			buffered_bytes += cap - r->cap;
			r->cap = cap;
		}
		memcpy(r->body + r->len, upload_data, n);
		r->len += n;
		r->body[r->len] = '\0';
		return MHD_YES;
	}
	if (r->fail_status)
		return refuse(r, r->fail_status, r->fail_counter, r->fail_reason);
	/* the body (or DELETE's IDList) becomes SQL text: UTF-8, no NUL byte */
	if (r->body && memchr(r->body, '\0', r->len) != NULL)
		return refuse(r, 400, C_BAD_REQUESTS, "the body contains a NUL byte");
	if (r->body && (!pg_verify_mbstr(PG_UTF8, r->body, (int) r->len, true) ||
					(GetDatabaseEncoding() != PG_UTF8 && !pg_verifymbstr(r->body, (int) r->len, true))))
		return refuse(r, 400, C_BAD_REQUESTS, "the body is not valid UTF-8");
	/* the whole request is in: the batch answers it after its commit */
	r->next = NULL;
	if (queue_tail)
		queue_tail->next = r;
	else
		queue_head = r;
	queue_tail = r;
	n_queued++;
	{
		Conn	   *c = conn_of(conn);

		if (c)
			c->busy = true;		/* all in: no deadline while it is answered */
	}
	MHD_suspend_connection(conn);
	return MHD_YES;
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	Req		   *r = *con_cls;
	Conn	   *c = conn_of(conn);

	if (c)
	{
		/* the next request on this connection starts its clock now */
		c->busy = false;
		c->since = GetCurrentTimestamp();
	}
	if (toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED)
		note(C_TIMEOUTS, r ? r->remote : NULL, "no data within vms.viid_server_timeout");
	if (r == NULL)
		return;
	body_free(r);
	buffered_bytes -= r->cap;
	free(r->answer);
	free(r);
	*con_cls = NULL;
}

static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_context, enum MHD_ConnectionNotificationCode toe)
{
	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
	{
		Conn	   *c = calloc(1, sizeof(Conn));
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

		note(C_CONNECTIONS, NULL, NULL);
		*socket_context = c;
		if (c == NULL)
			return;				/* no deadline for it: the idle timeout still holds */
		c->conn = conn;
		c->fd = ci ? ci->connect_fd : -1;
		c->since = GetCurrentTimestamp();
		remote_of(conn, c->remote, sizeof(c->remote));
		c->next = conns;
		if (conns)
			conns->prev = c;
		conns = c;
	}
	else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context)
	{
		Conn	   *c = *socket_context;

		if (c->prev)
			c->prev->next = c->next;
		else
			conns = c->next;
		if (c->next)
			c->next->prev = c->prev;
		free(c);
		*socket_context = NULL;
	}
}

/*
 * Cut off every request not all in within vms.viid_server_request_timeout
 * (see Conn).  Sweeps when the earliest deadline is due, and at least every
 * second (the setting may have changed); returns milliseconds until the
 * next deadline (-1: none).
 */
static long
cut_slow_requests(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = 0;

	if (now < conns_next_due && now < TimestampTzPlusMilliseconds(conns_swept_at, 1000))
		return (long) ((conns_next_due - now) / 1000) + 1;
	conns_swept_at = now;
	for (Conn *c = conns; c; c = c->next)
	{
		TimestampTz due;

		if (c->busy || c->cut || c->fd < 0)
			continue;
		due = TimestampTzPlusMilliseconds(c->since, (int64) vms_viid_server_request_timeout_s * 1000);
		if (now >= due)
		{
			c->cut = true;
			shutdown(c->fd, SHUT_RDWR);
			note(C_TIMEOUTS, c->remote, "request not all in within vms.viid_server_request_timeout (slow client)");
		}
		else if (next == 0 || due < next)
			next = due;
	}
	conns_next_due = next ? next : TimestampTzPlusMilliseconds(now, 1000);
	return next ? (long) ((next - now) / 1000) + 1 : -1;
}

/* libmicrohttpd's own messages (malformed requests among them): logged rate-limited, not counted */
static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	static TimestampTz at = 0;
	static int64 skipped = 0;
	TimestampTz now = GetCurrentTimestamp();
	char		buf[512];

	if (now < TimestampTzPlusMilliseconds(at, LOG_EVERY_MS))
	{
		skipped++;
		return;
	}
	vsnprintf(buf, sizeof(buf), fmt, ap);
	buf[strcspn(buf, "\n")] = '\0';
	ereport(LOG, (errmsg("vms viid-server: libmicrohttpd: %s", buf),
				  skipped > 0 ? errdetail("%lld more since the last such message.", (long long) skipped) : 0));
	at = now;
	skipped = 0;
}

/* ---------------------------------------------------------------- the batch */

static void
answer(Req *r, int status, const char *body)
{
	free(r->answer);
	r->answer = body ? strdup(body) : NULL;
	r->status = status;
	r->answered = true;
}

/* run n requests in one transaction; true when committed (answers set) */
static bool
run_batch(Req **reqs, int n)
{
	MemoryContext cxt = CurrentMemoryContext;
	int		   *status = palloc0(sizeof(int) * n);
	char	  **body = palloc0(sizeof(char *) * n);
	int		   *stored = palloc0(sizeof(int) * n);
	int		   *rejected = palloc0(sizeof(int) * n);
	char	  **event = palloc0(sizeof(char *) * n);
	volatile bool ok = true;

	PG_TRY();
	{
		vms_worker_begin_tx("vms viid-server: requests");

		/*
		 * An answer says "stored": the commit must be on disk before it goes,
		 * whatever the server's synchronous_commit (off would acknowledge
		 * records a crash can still lose).  "local" for this transaction only
		 * (SET LOCAL); a setting that waits for more (on, remote_write,
		 * remote_apply) is kept.  One WAL flush per batch of requests.
		 */
		if (synchronous_commit < SYNCHRONOUS_COMMIT_LOCAL_FLUSH)
			(void) set_config_option("synchronous_commit", "local", PGC_SUSET, PGC_S_SESSION,
									 GUC_ACTION_LOCAL, true, 0, false);
		if (request_plan == NULL)
		{
			Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
			SPIPlanPtr	plan = SPI_prepare_cursor(SQL_REQUEST, 5, types, CURSOR_OPT_GENERIC_PLAN);

			if (plan == NULL || SPI_keepplan(plan) != 0)
				elog(ERROR, "vms viid-server: could not prepare the request statement: %s",
					 SPI_result_code_string(SPI_result));
			request_plan = plan;
		}
		for (int i = 0; i < n; i++)
		{
			Req		   *r = reqs[i];
			Datum		values[5];
			char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
			bool		isnull;
			MemoryContext spi_cxt;

			values[0] = CStringGetTextDatum(r->client);
			values[1] = CStringGetTextDatum(r->method);
			values[2] = CStringGetTextDatum(r->path);
			if (r->body)
				values[3] = body_text(r);
			else
				values[3] = CStringGetTextDatum("");
			values[4] = CStringGetTextDatum(r->remote);
			if (SPI_execute_plan(request_plan, values, nulls, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
				elog(ERROR, "vms viid-server: vms._viid_server_request returned no row");
			spi_cxt = MemoryContextSwitchTo(cxt);
			status[i] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			body[i] = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
			stored[i] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
			rejected[i] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
			event[i] = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5);
			MemoryContextSwitchTo(spi_cxt);
		}
		vms_worker_end_tx();	/* committed: now the answers may go */
	}
	PG_CATCH();
	{
		char	   *message = vms_worker_recover(slot, cxt);

		note(C_INTERNAL_ERRORS, n == 1 ? reqs[0]->remote : NULL, message);
		ok = false;
	}
	PG_END_TRY();
	if (!ok)
		return false;
	pending_counts[C_BATCHES]++;
	/* first every answer (nothing here raises an ERROR), then the notes */
	for (int i = 0; i < n; i++)
	{
		answer(reqs[i], status[i], body[i]);
		pending_counts[C_STORED] += stored[i];
	}
	for (int i = 0; i < n; i++)
	{
		Req		   *r = reqs[i];
		const char *e = event[i] ? event[i] : "";

		if (rejected[i] > 0)
		{
			pending_counts[C_REJECTED] += rejected[i] - 1;
			note(C_REJECTED, r->remote, psprintf("%d of %d records of %s refused (the answer names why)",
												 rejected[i], stored[i] + rejected[i], r->client));
		}
		if (strcmp(e, "register") == 0)
			note(C_REGISTRATIONS, r->remote, r->client);
		else if (strcmp(e, "keepalive") == 0)
			note(C_KEEPALIVES, r->remote, r->client);
		else if (strcmp(e, "bad_request") == 0)
			note(C_BAD_REQUESTS, r->remote, body[i] ? body[i] : "");
		else if (strcmp(e, "not_found") == 0)
			note(C_NOT_FOUND, r->remote, r->path);
		else if (strcmp(e, "auth") == 0 || strcmp(e, "not_registered") == 0)
			note(C_AUTH_FAILURES, r->remote, body[i] ? body[i] : "");
		else if (strcmp(e, "internal") == 0)
			note(C_INTERNAL_ERRORS, r->remote, body[i] ? body[i] : "");
	}
	return true;
}

/* answer every waiting request with an error, without the database */
static void
refuse_queue(int http_status, const char *reason)
{
	while (queue_head)
	{
		Req		   *r = queue_head;
		char	   *body = status_json(r->path, 1, reason);

		queue_head = r->next;
		n_queued--;
		answer(r, http_status, body);
		free(body);
		note(C_INTERNAL_ERRORS, r->remote, reason);
		MHD_resume_connection(r->conn);
	}
	queue_tail = NULL;
}

/* answer every waiting request: together if they can, else one by one */
static void
answer_queue(void)
{
	while (queue_head)
	{
		Req		   *reqs[MAX_BATCH_REQUESTS];
		int			n = 0;

		while (queue_head && n < MAX_BATCH_REQUESTS)
		{
			reqs[n++] = queue_head;
			queue_head = queue_head->next;
			n_queued--;
		}
		if (queue_head == NULL)
			queue_tail = NULL;

		/*
		 * Off the queue, these requests are answered and resumed here
		 * whatever happens (an ERROR after a commit included): a suspended
		 * connection nobody resumes would hang until the daemon stops.
		 */
		batch_reqs = reqs;
		n_batch_reqs = n;
		PG_TRY();
		{
			if (!run_batch(reqs, n))
			{
				for (int i = 0; i < n; i++)
					if (n == 1 || !run_batch(&reqs[i], 1))
					{
						char	   *body = status_json(reqs[i]->path, 1, "internal error: the request was not stored; send it again");

						answer(reqs[i], 500, body);
						free(body);
					}
			}
		}
		PG_FINALLY();
		{
			for (int i = 0; i < n; i++)
			{
				if (!reqs[i]->answered)
				{
					char	   *body = status_json(reqs[i]->path, 1, "internal error: the request was not stored; send it again");

					answer(reqs[i], 500, body);
					free(body);
				}
				MHD_resume_connection(reqs[i]->conn);
			}
			batch_reqs = NULL;
			n_batch_reqs = 0;
		}
		PG_END_TRY();
	}
}

/* ---------------------------------------------------------------- clients */

static void
load_clients(void)
{
	Client	   *fresh;
	int			n = 0;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	vms_worker_begin_tx("vms viid-server: clients");
	values[0] = CStringGetTextDatum(vms_viid_server_realm);
	if (SPI_execute_with_args(SQL_CLIENTS, 1, types, values, NULL, true, MAX_CLIENTS) != SPI_OK_SELECT)
		elog(ERROR, "vms viid-server: reading clients failed");
	fresh = MemoryContextAllocZero(vms_worker_cxt, sizeof(Client) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *id = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *ha1 = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		Client	   *old;

		if (id == NULL || strlen(id) != 20 || !viid_hex16(ha1, fresh[n].ha1))
			continue;
		strlcpy(fresh[n].id, id, sizeof(fresh[n].id));
		old = find_client(id);
		if (old)
			fresh[n].bucket = old->bucket;
		n++;
	}
	vms_worker_end_tx();
	if (clients)
		pfree(clients);
	clients = fresh;
	n_clients = n;
	strlcpy(clients_realm, vms_viid_server_realm, sizeof(clients_realm));
}

/* ---------------------------------------------------------------- the daemon */

static char *
read_file(const char *path)
{
	FILE	   *f = AllocateFile(path, "r");
	StringInfoData s;
	char		buf[4096];
	size_t		n;

	if (f == NULL)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not read \"%s\": %m", path),
						errhint("Check vms.viid_server_tls_cert and vms.viid_server_tls_key.")));
	initStringInfo(&s);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		appendBinaryStringInfo(&s, buf, n);
	FreeFile(f);
	return s.data;
}

static void
settings_signature(char *buf, size_t size)
{
	snprintf(buf, size, "%d|%s|%d|%d|%d|%s|%s", vms_viid_server_port, vms_viid_server_listen,
			 vms_viid_server_max_connections, vms_viid_server_max_per_ip, vms_viid_server_timeout_s,
			 vms_viid_server_tls_cert, vms_viid_server_tls_key);
}

static void
stop_daemon(void)
{
	if (wait_set)
	{
		FreeWaitEventSet(wait_set);
		wait_set = NULL;
	}
	if (daemon_)
	{
		/* suspended connections must be resumed before the daemon stops */
		for (Req *r = queue_head; r; r = r->next)
			MHD_resume_connection(r->conn);
		queue_head = queue_tail = NULL;
		n_queued = 0;
		mhd_stop();
	}
}

static void
start_daemon(void)
{
	unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	struct sockaddr_storage addr;
	struct sockaddr *sa = NULL;
	char		random[32];
	char	   *cert = NULL,
			   *key = NULL;
	const union MHD_DaemonInfo *info;
	struct MHD_OptionItem opts[16];
	int			o = 0;
	bool		tls = vms_viid_server_tls_cert[0] && vms_viid_server_tls_key[0];

	if (!pg_strong_random(random, sizeof(random)))
		elog(ERROR, "vms viid-server: no random bytes for digest nonces");
	if (strcmp(vms_viid_server_listen, "*") == 0 || vms_viid_server_listen[0] == '\0')
		flags |= MHD_USE_DUAL_STACK;
	else
	{
		struct addrinfo hints,
				   *res;
		char		port[8];
		int			rc;

		memset(&hints, 0, sizeof(hints));
		hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
		hints.ai_socktype = SOCK_STREAM;
		snprintf(port, sizeof(port), "%d", vms_viid_server_port);
		rc = getaddrinfo(vms_viid_server_listen, port, &hints, &res);
		if (rc != 0)
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							errmsg("vms.viid_server_listen \"%s\" is not an address: %s", vms_viid_server_listen, gai_strerror(rc)),
							errhint("Give a numeric IPv4 or IPv6 address, or * for every address.")));
		memcpy(&addr, res->ai_addr, res->ai_addrlen);
		if (res->ai_family == AF_INET6)
			flags |= MHD_USE_IPv6;
		freeaddrinfo(res);
		sa = (struct sockaddr *) &addr;
	}
	if (tls)
	{
		cert = read_file(vms_viid_server_tls_cert);
		key = read_file(vms_viid_server_tls_key);
		flags |= MHD_USE_TLS;
		opts[o++] = (struct MHD_OptionItem) {MHD_OPTION_HTTPS_MEM_CERT, 0, cert};
		opts[o++] = (struct MHD_OptionItem) {MHD_OPTION_HTTPS_MEM_KEY, 0, key};
	}
	if (sa)
		opts[o++] = (struct MHD_OptionItem) {MHD_OPTION_SOCK_ADDR, 0, sa};
	opts[o++] = (struct MHD_OptionItem) {MHD_OPTION_END, 0, NULL};

	HOLD_INTERRUPTS();			/* it may log through mhd_log */
	daemon_ = MHD_start_daemon(flags, (uint16_t) vms_viid_server_port, NULL, NULL, on_request, NULL,
							   MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
							   MHD_OPTION_CONNECTION_LIMIT, (unsigned int) vms_viid_server_max_connections,
							   MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int) vms_viid_server_max_per_ip,
							   MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) vms_viid_server_timeout_s,
							   MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) CONNECTION_MEMORY,
							   MHD_OPTION_DIGEST_AUTH_RANDOM, sizeof(random), random,
							   MHD_OPTION_NONCE_NC_SIZE, (unsigned int) NONCE_NC_SIZE,
							   MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
							   MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
							   MHD_OPTION_ARRAY, opts,
							   MHD_OPTION_END);
	RESUME_INTERRUPTS();
	if (cert)
		pfree(cert);
	if (key)
		pfree(key);
	if (daemon_ == NULL)
		ereport(ERROR,
				(errmsg("vms viid-server could not listen on %s port %d", vms_viid_server_listen, vms_viid_server_port),
				 errhint("Is the port in use, or the TLS certificate and key unreadable or not a pair?")));
	info = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_EPOLL_FD);
	if (info == NULL)
	{
		stop_daemon();
		elog(ERROR, "vms viid-server: libmicrohttpd has no epoll descriptor");
	}
	wait_set = CreateWaitEventSet(vms_worker_cxt, 3);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, info->epoll_fd, NULL, NULL);
	daemon_port = vms_viid_server_port;
	daemon_tls = tls;
	settings_signature(daemon_sig, sizeof(daemon_sig));
	ereport(LOG, (errmsg("vms viid-server listening on %s port %d%s", vms_viid_server_listen,
						 vms_viid_server_port, tls ? " (HTTPS)" : "")));
	vms_worker_set_state(slot, tls ? "listening (HTTPS)" : "listening");
}

/*
 * on exit: suspended connections must be resumed before the daemon stops
 * (else libmicrohttpd panics), those of a batch a FATAL interrupted too
 */
static void
shutdown_daemon(int code, Datum arg)
{
	if (daemon_ == NULL)
		return;
	for (int i = 0; i < n_batch_reqs; i++)
		MHD_resume_connection(batch_reqs[i]->conn);
	batch_reqs = NULL;
	n_batch_reqs = 0;
	for (Req *r = queue_head; r; r = r->next)
		MHD_resume_connection(r->conn);
	queue_head = queue_tail = NULL;
	n_queued = 0;
	mhd_stop();
}

/* ---------------------------------------------------------------- the loop */

static long
one_round(void)
{
	char		sig[sizeof(daemon_sig)];
	TimestampTz now = GetCurrentTimestamp();
	MHD_UNSIGNED_LONG_LONG mhd_timeout = 0;
	long		timeout;
	long		cut;
	bool		stale_due;

	if (vms_viid_server_port == 0)
	{
		stop_daemon();
		vms_worker_set_state(slot, "off (vms.viid_server_port = 0)");
		return VMS_IDLE_WAIT_MS;
	}
	if (!vms_worker_ready(slot))
	{
		/* no SQL now (ALTER or DROP EXTENSION vms): keep listening, answer 503 */
		was_ready = false;
		if (daemon_ == NULL)
			return NOT_READY_WAIT_MS;
		mhd_run();
		if (queue_head)
		{
			refuse_queue(503, "the database is being changed (ALTER or DROP EXTENSION vms): nothing was stored; send it again");
			mhd_run();
		}
		flush_counts();
		if (MHD_get_timeout(daemon_, &mhd_timeout) == MHD_YES)
			return Min(NOT_READY_WAIT_MS, (long) mhd_timeout);
		return NOT_READY_WAIT_MS;
	}
	if (!was_ready && daemon_)
		vms_worker_set_state(slot, daemon_tls ? "listening (HTTPS)" : "listening");
	was_ready = true;
	settings_signature(sig, sizeof(sig));
	if (daemon_ && strcmp(sig, daemon_sig) != 0)
		stop_daemon();
	stale_due = clients_stale &&
		now >= TimestampTzPlusMilliseconds(clients_loaded_at, CLIENT_STALE_REFRESH_MS) &&
		now >= TimestampTzPlusMilliseconds(clients_stale_read_at, CLIENT_STALE_EVERY_MS);
	if (now >= TimestampTzPlusMilliseconds(clients_loaded_at, CLIENT_REFRESH_MS) || stale_due ||
		strcmp(clients_realm, vms_viid_server_realm) != 0)
	{
		if (stale_due)
			clients_stale_read_at = now;
		clients_stale = false;
		load_clients();
		clients_loaded_at = now;
	}
	if (daemon_ == NULL)
		start_daemon();

	mhd_run();
	if (queue_head)
	{
		answer_queue();
		mhd_run();				/* the resumed connections send their answers */
	}
	cut = cut_slow_requests();
	flush_counts();
	if (queue_head)
		return 0;
	timeout = CLIENT_REFRESH_MS;
	if (MHD_get_timeout(daemon_, &mhd_timeout) == MHD_YES)
		timeout = Min(timeout, (long) mhd_timeout);
	if (cut >= 0)
		timeout = Min(timeout, cut);
	return timeout;
}

void
vms_viid_server_main(Datum arg)
{
	slot = vms_worker_init("vms viid-server");

	/*
	 * A request of 100 records with images is a few MB, copied a few times
	 * on its way (body, text, decoded images, rows): glibc would map and
	 * unmap each such block afresh, and the page faults of touching it again
	 * cost as much as the copies.  Kept in the heap, they are reused.
	 */
	mallopt(M_MMAP_THRESHOLD, 64 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);

	loop_cxt = AllocSetContextCreate(vms_worker_cxt, "vms viid-server loop", ALLOCSET_DEFAULT_SIZES);
	{
		HASHCTL		ctl;

		/* for the life of the process, in a context of its own */
		seen_cxt = AllocSetContextCreate(TopMemoryContext, "vms viid-server accepted digests",
										 ALLOCSET_DEFAULT_SIZES);
		ctl.keysize = sizeof(((Seen *) 0)->key);
		ctl.entrysize = sizeof(Seen);
		ctl.alloc = seen_alloc;
		seen = hash_create("vms viid-server accepted digests", 4096, &ctl, HASH_ELEM | HASH_BLOBS | HASH_ALLOC);
		ctl.keysize = sizeof(((SeenClient *) 0)->id);
		ctl.entrysize = sizeof(SeenClient);
		seen_clients = hash_create("vms viid-server accepted digests per client", 256, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_ALLOC);
		/*
		 * nothing older than this second exists: its list is the first to
		 * drop (the monotonic clock counts from boot, so it may be less
		 * than SEEN_KEEP_S: no negative second ever reaches the ring)
		 */
		seen_dropped_upto = Max(monotonic_s() - 1, 0);
	}
	before_shmem_exit(shutdown_daemon, (Datum) 0);
	vms_worker_set_state(slot, "starting");

	for (;;)
	{
		long		timeout = VMS_ERROR_PAUSE_MS;

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextReset(loop_cxt);
		PG_TRY();
		{
			MemoryContext old = MemoryContextSwitchTo(loop_cxt);

			/* SIGTERM ends the process (FATAL); a cancel ends only this round */
			CHECK_FOR_INTERRUPTS();
			timeout = one_round();
			MemoryContextSwitchTo(old);
		}
		PG_CATCH();
		{
			char	   *message = vms_worker_recover(slot, loop_cxt);

			ereport(LOG, (errmsg("vms viid-server: %s", message)));
			/*
			 * requests a batch took off the queue were answered and resumed
			 * (answer_queue); those still queued are answered next round
			 */
			timeout = VMS_ERROR_PAUSE_MS;
		}
		PG_END_TRY();
		if (timeout == 0)
			continue;
		if (wait_set)
		{
			WaitEvent	ev;

			(void) WaitEventSetWait(wait_set, timeout, &ev, 1, PG_WAIT_EXTENSION);
		}
		else
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
