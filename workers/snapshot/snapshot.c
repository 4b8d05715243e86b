/*
 * snapshot.c — vms.snapshot(channel): one JPEG of a channel (issue 17).
 *
 * The caller's function cannot hand a request to the SIP worker and wait for
 * it in the same transaction (the worker sees only committed requests), so
 * vms._snapshot_take() starts a short-lived background worker, "vms
 * snapshot", and waits for it to exit.  The worker runs its own short
 * transactions and holds none across a network wait:
 *
 *   1. vms._snapshot_begin records the request (vms.snapshot_request) and
 *      says how to take it: "device" for a device that speaks GB/T
 *      28181-2022, else "invite".
 *   2. device: an HTTP server (libmicrohttpd, in this process, no threads)
 *      listens on vms.snapshot_http_ip and a port of
 *      vms.snapshot_http_port_min..max (0: any free one) for one upload to
 *      /snapshot/<token>, the token 128 random bits that are also the
 *      SessionID; vms._snapshot_device_config queues DeviceConfig
 *      SnapShotConfig (SnapNum 1, UploadURL) for the SIP worker.  Only the
 *      device's registered address may upload (others: 403); the first
 *      upload that is a JPEG FFmpeg decodes, at most SNAP_MAX_BYTES and
 *      SNAP_MAX_PIXELS, ends the wait; anything else is refused (403, 404,
 *      405, 413, 415) and the token is single-use.  When the device refuses
 *      SnapShotConfig, or refuses and then sends a bad upload to its URL, or
 *      nothing valid arrives within vms.snapshot_device_wait, the INVITE
 *      path takes over.
 *   3. invite: a frame sampled as the inspector samples a GB/T 28181 channel
 *      (workers/inspect: INVITE, RTP/PS over UDP or TCP, FFmpeg decode, one
 *      frame encoded by FFmpeg's mjpeg encoder).
 *   4. vms._snapshot_finish stores the JPEG or the reason.
 *
 * The whole thing is bounded by vms.snapshot_timeout; a cancel of the caller
 * terminates the worker.  The use of the right is audited by the worker's
 * first transaction (vms._snapshot_begin, as the caller's session role),
 * committed before the device is asked anything, so the caller's rollback
 * or cancel cannot undo it.  Before starting a worker the caller takes
 * session-level advisory locks, never waiting: one for the channel (one
 * snapshot of a channel at a time), one of vms.snapshot_max_per_role slots
 * of its session role, one of vms.snapshot_max_concurrent slots of the
 * cluster (snapshots cannot take every background-worker slot).
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <sys/select.h>

#include <libavcodec/avcodec.h>
#include <libavutil/frame.h>
#include <libavutil/mem.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "common/hashfn.h"
#include "storage/ipc.h"
#include "storage/lock.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "../../extension/inspect/vqd.h"
#include "../inspect/inspector.h"
#include "../worker_tx.h"
#include "snapshot.h"

PGDLLEXPORT void vms_snapshot_main(Datum arg);

#define SNAP_MAX_BYTES (4 * 1024 * 1024)	/* the largest upload taken */
#define SNAP_MAX_PIXELS (8192 * 8192)	/* the largest picture decoded */
#define SNAP_CONN_TIMEOUT_S 3	/* an upload connection idle this long is closed */
#define SNAP_POLL_MS 100		/* the HTTP server and the request are looked at this often */
#define SNAP_STATE_MS 250		/* the DeviceConfig request's state, this often */

/* what travels in bgw_extra (BGW_EXTRALEN 128) */
#define X_CHANNEL 0				/* 20 digits + NUL */
#define X_TOKEN 24				/* 32 hex digits + NUL */
#define X_ROLE 60				/* requester's name, up to 63 bytes + NUL */
#define X_SESSION 124			/* the caller's session user (Oid) */

/* the caller's advisory locks (locktag_field4; user locks use 1 and 2) */
#define SNAP_LOCK_CHANNEL 0x5301	/* database, channel hash (2 x 32 bits) */
#define SNAP_LOCK_ROLE 0x5302	/* 0, session user, slot */
#define SNAP_LOCK_GLOBAL 0x5303	/* 0, 'vms', slot */

int			vms_snapshot_timeout = 20;
char	   *vms_snapshot_http_ip = NULL;
int			vms_snapshot_http_port_min = 0;
int			vms_snapshot_http_port_max = 0;
int			vms_snapshot_max_concurrent = 4;
int			vms_snapshot_max_per_role = 2;
int			vms_snapshot_min_interval = 2;
int			vms_snapshot_device_wait = 10;

void
vms_snapshot_define_settings(void)
{
	DefineCustomIntVariable("vms.snapshot_timeout",
							"Seconds vms.snapshot waits for a picture, by every path.",
							NULL, &vms_snapshot_timeout, 20, 3, 120, PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomStringVariable("vms.snapshot_http_ip",
							   "Address devices upload GB/T 28181-2022 snapshots to (vms listens there); empty: vms.inspect_media_ip.",
							   NULL, &vms_snapshot_http_ip, "", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.snapshot_http_port_min",
							"First TCP port for snapshot uploads; 0: any free port.",
							NULL, &vms_snapshot_http_port_min, 0, 0, 65535, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.snapshot_http_port_max",
							"Last TCP port for snapshot uploads.",
							NULL, &vms_snapshot_http_port_max, 0, 0, 65535, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.snapshot_max_concurrent",
							"Snapshots taken at once in the cluster (each has a background worker while it waits); more are refused.",
							NULL, &vms_snapshot_max_concurrent, 4, 1, 64, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.snapshot_max_per_role",
							"Snapshots one session role takes at once; more are refused.",
							NULL, &vms_snapshot_max_per_role, 2, 1, 64, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.snapshot_min_interval",
							"Seconds between the starts of two snapshots of one channel; 0: no limit.",
							NULL, &vms_snapshot_min_interval, 2, 0, 3600, PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("vms.snapshot_device_wait",
							"Seconds a GB/T 28181-2022 device has to upload its own snapshot before the INVITE path.",
							NULL, &vms_snapshot_device_wait, 10, 1, 120, PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
}

/* ------------------------------------------------------------ the caller's side */

/* take one advisory lock of tag's kind, slot 0..n-1 (field3), without waiting */
static bool
take_slot(LOCKTAG *tag, uint32 f1, uint32 f2, uint16 kind, int n)
{
	for (int i = 0; i < n; i++)
	{
		LockAcquireResult r;

		SET_LOCKTAG_ADVISORY(*tag, f1, f2, (uint32) i, kind);
		r = LockAcquire(tag, ExclusiveLock, true, true);
		if (r == LOCKACQUIRE_OK || r == LOCKACQUIRE_ALREADY_CLEAR)
			return true;
		if (r == LOCKACQUIRE_ALREADY_HELD)	/* ours already: not a free slot */
			LockRelease(tag, ExclusiveLock, true);
	}
	return false;
}

/*
 * vms._snapshot_take(channel text, requester name) → text: run the
 * snapshot worker with a fresh token (128 bits of pg_strong_random) and wait
 * for it to exit (interruptible: a cancel terminates it); returns the
 * token.  The outcome is the vms.snapshot_request row of that token,
 * committed by the worker, which the caller reads in its next statement.
 * Refused at once (55P03, 53400) while a snapshot of the channel is being
 * taken, or the session role or the cluster takes as many as allowed.
 */
PG_FUNCTION_INFO_V1(vms_snapshot_take);
Datum
vms_snapshot_take(PG_FUNCTION_ARGS)
{
	char	   *channel = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *role = NameStr(*PG_GETARG_NAME(1));
	Oid			session = GetSessionUserId();
	char		token[33];
	uint8		random[16];
	BackgroundWorker w;
	BackgroundWorkerHandle *h;
	pid_t		pid;
	uint64		ch_hash;
	LOCKTAG		lk_channel,
				lk_role,
				lk_global;
	volatile bool held_channel = false,
				held_role = false,
				held_global = false;

	if (strlen(channel) != 20 || strspn(channel, "0123456789") != 20 || strlen(role) >= NAMEDATALEN)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("invalid snapshot request")));
	if (!pg_strong_random(random, sizeof(random)))
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not generate a snapshot token")));
	for (int i = 0; i < 16; i++)
		snprintf(token + 2 * i, 3, "%02x", random[i]);
	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(w.bgw_library_name, "vms", BGW_MAXLEN);
	strlcpy(w.bgw_function_name, "vms_snapshot_main", BGW_MAXLEN);
	snprintf(w.bgw_name, BGW_MAXLEN, "vms snapshot %s", channel);
	strlcpy(w.bgw_type, "vms snapshot", BGW_MAXLEN);
	w.bgw_main_arg = ObjectIdGetDatum(MyDatabaseId);
	strlcpy(w.bgw_extra + X_CHANNEL, channel, 21);
	strlcpy(w.bgw_extra + X_TOKEN, token, 33);
	strlcpy(w.bgw_extra + X_ROLE, role, NAMEDATALEN);
	memcpy(w.bgw_extra + X_SESSION, &session, sizeof(Oid));
	w.bgw_notify_pid = MyProcPid;

	ch_hash = hash_bytes_extended((const unsigned char *) channel, 20, 0);
	PG_TRY();
	{
		held_channel = take_slot(&lk_channel, MyDatabaseId, (uint32) (ch_hash >> 32), SNAP_LOCK_CHANNEL, 1);
		if (!held_channel)
			ereport(ERROR,
					(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
					 errmsg("a snapshot of channel %s is being taken", channel),
					 errdetail("One snapshot of a channel is taken at a time."),
					 errhint("Try again when it has finished.")));
		held_role = take_slot(&lk_role, InvalidOid, session, SNAP_LOCK_ROLE, vms_snapshot_max_per_role);
		if (!held_role)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("too many snapshots in progress for role \"%s\"", GetUserNameFromId(session, false)),
					 errdetail("The role takes %d snapshots at once, as many as vms.snapshot_max_per_role allows.",
							   vms_snapshot_max_per_role),
					 errhint("Try again when one has finished.")));
		held_global = take_slot(&lk_global, InvalidOid, 0x766d73, SNAP_LOCK_GLOBAL, vms_snapshot_max_concurrent);
		if (!held_global)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("too many snapshots in progress"),
					 errdetail("%d snapshots are being taken, as many as vms.snapshot_max_concurrent allows; each has a background worker while it waits.",
							   vms_snapshot_max_concurrent),
					 errhint("Try again when one has finished.")));
		if (!RegisterDynamicBackgroundWorker(&w, &h))
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("could not start a snapshot worker"),
					 errdetail("All background worker slots are in use."),
					 errhint("Raise max_worker_processes, or try again.")));
		PG_TRY();
		{
			if (WaitForBackgroundWorkerStartup(h, &pid) == BGWH_STARTED)
				(void) WaitForBackgroundWorkerShutdown(h);
		}
		PG_CATCH();
		{
			TerminateBackgroundWorker(h);
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	PG_FINALLY();
	{
		if (held_global)
			LockRelease(&lk_global, ExclusiveLock, true);
		if (held_role)
			LockRelease(&lk_role, ExclusiveLock, true);
		if (held_channel)
			LockRelease(&lk_channel, ExclusiveLock, true);
	}
	PG_END_TRY();
	PG_RETURN_TEXT_P(cstring_to_text(token));
}

/* ------------------------------------------------------------ the HTTP upload */

typedef struct Upload
{
	unsigned char *data;		/* malloc'd */
	size_t		len;
	bool		too_big;
	struct MHD_PostProcessor *pp;	/* multipart/form-data */
	char		part[64];		/* the form field whose file is taken */
} Upload;

static char path_expected[64];	/* /snapshot/<token> */
static struct in_addr device_addr;	/* the only address an upload is taken from */
static unsigned char *accepted;	/* the JPEG taken (malloc'd) */
static size_t accepted_len;
static int	refused_uploads;	/* refused uploads from the device to its URL */

/* does buf hold a picture FFmpeg's mjpeg decoder decodes */
static bool
decodes_as_jpeg(const unsigned char *buf, size_t len)
{
	const AVCodec *codec = avcodec_find_decoder(AV_CODEC_ID_MJPEG);
	AVCodecContext *cx;
	AVPacket   *pkt;
	AVFrame    *frame;
	uint8_t    *copy;
	bool		ok = false;

	if (len < 4 || buf[0] != 0xFF || buf[1] != 0xD8 || buf[2] != 0xFF || codec == NULL)
		return false;
	cx = avcodec_alloc_context3(codec);
	pkt = av_packet_alloc();
	frame = av_frame_alloc();
	copy = av_malloc(len + AV_INPUT_BUFFER_PADDING_SIZE);
	if (cx && pkt && frame && copy)
	{
		memcpy(copy, buf, len);
		memset(copy + len, 0, AV_INPUT_BUFFER_PADDING_SIZE);
		cx->err_recognition = AV_EF_EXPLODE;
		cx->max_pixels = SNAP_MAX_PIXELS;	/* a bigger picture is refused, not decoded */
		if (avcodec_open2(cx, codec, NULL) == 0 && av_packet_from_data(pkt, copy, (int) len) == 0)
		{
			copy = NULL;		/* the packet owns it */
			if (avcodec_send_packet(cx, pkt) == 0)
			{
				(void) avcodec_send_packet(cx, NULL);
				ok = avcodec_receive_frame(cx, frame) == 0 && frame->width > 0 && frame->height > 0;
			}
		}
	}
	av_free(copy);
	av_frame_free(&frame);
	av_packet_free(&pkt);
	avcodec_free_context(&cx);
	return ok;
}

static void
upload_append(Upload *u, const char *data, size_t size)
{
	unsigned char *grown;

	if (u->too_big || size == 0)
		return;
	if (u->len + size > SNAP_MAX_BYTES)
	{
		u->too_big = true;
		return;
	}
	grown = realloc(u->data, u->len + size);
	if (grown == NULL)
	{
		u->too_big = true;
		return;
	}
	u->data = grown;
	memcpy(u->data + u->len, data, size);
	u->len += size;
}

/* multipart/form-data: the first part that is a file or an image */
static enum MHD_Result
on_part(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename, const char *content_type,
		const char *transfer_encoding, const char *data, uint64_t off, size_t size)
{
	Upload	   *u = (Upload *) cls;

	if (key == NULL)
		return MHD_YES;
	if (u->part[0] == '\0' && (filename != NULL || (content_type && strncmp(content_type, "image/", 6) == 0)))
		strlcpy(u->part, key, sizeof(u->part));
	if (u->part[0] != '\0' && strcmp(u->part, key) == 0)
		upload_append(u, data, size);
	return MHD_YES;
}

static enum MHD_Result
answer(struct MHD_Connection *c, unsigned int status, const char *text)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *) text, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* did the connection come from the device's registered address */
static bool
from_device(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;

	return sa != NULL && sa->sa_family == AF_INET &&
		((const struct sockaddr_in *) sa)->sin_addr.s_addr == device_addr.s_addr;
}

/* constant time: the token is a secret */
static bool
same_path(const char *url)
{
	size_t		n = strlen(path_expected);
	unsigned char diff = 0;

	if (url == NULL || strlen(url) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char) url[i] ^ (unsigned char) path_expected[i];
	return diff == 0;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method, const char *version,
		   const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	Upload	   *u = (Upload *) *con_cls;

	if (u == NULL)
	{
		const char *ctype = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
		const char *clen = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);

		/* only the device's refused uploads to its URL count (they end the wait early) */
		if (!from_device(c))
			return answer(c, MHD_HTTP_FORBIDDEN, "uploads are taken from the device only\n");
		if (!same_path(url))
			return answer(c, MHD_HTTP_NOT_FOUND, "no such upload\n");
		if (strcmp(method, "POST") != 0 && strcmp(method, "PUT") != 0)
			return answer(c, MHD_HTTP_METHOD_NOT_ALLOWED, "POST the picture\n");
		if (accepted != NULL)
			return answer(c, MHD_HTTP_GONE, "this upload URL was used\n");
		if (clen && strtoull(clen, NULL, 10) > SNAP_MAX_BYTES + 65536)
		{
			refused_uploads++;
			return answer(c, 413, "too large\n");
		}
		u = calloc(1, sizeof(Upload));
		if (u == NULL)
			return MHD_NO;
		if (ctype && strncasecmp(ctype, "multipart/form-data", 19) == 0)
		{
			u->pp = MHD_create_post_processor(c, 65536, on_part, u);
			if (u->pp == NULL)
			{
				free(u);
				return answer(c, MHD_HTTP_BAD_REQUEST, "bad multipart body\n");
			}
		}
		*con_cls = u;
		return MHD_YES;
	}
	if (*upload_data_size > 0)
	{
		if (u->pp)
			(void) MHD_post_process(u->pp, upload_data, *upload_data_size);
		else
			upload_append(u, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	/* the whole body is in */
	if (u->too_big)
	{
		refused_uploads++;
		return answer(c, 413, "too large\n");
	}
	if (accepted != NULL)
		return answer(c, MHD_HTTP_GONE, "this upload URL was used\n");
	if (!decodes_as_jpeg(u->data, u->len))
	{
		refused_uploads++;
		return answer(c, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "not a JPEG picture\n");
	}
	accepted = u->data;
	accepted_len = u->len;
	u->data = NULL;
	return answer(c, MHD_HTTP_OK, "OK\n");
}

static void
on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	Upload	   *u = (Upload *) *con_cls;

	if (u == NULL)
		return;
	if (u->pp)
		MHD_destroy_post_processor(u->pp);
	free(u->data);
	free(u);
	*con_cls = NULL;
}

/* ------------------------------------------------------------ the worker */

static MemoryContext work_cxt;

/* one statement with text arguments in a short transaction; its one value (or NULL) */
static char *
sql_value(const char *query, int nargs, Oid *types, Datum *values, const char *nulls)
{
	char	   *v = NULL;

	vms_worker_begin_tx(query);
	if (SPI_execute_with_args(query, nargs, types, values, nulls, false, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		char	   *x = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (x)
			v = MemoryContextStrdup(vms_tx_caller_cxt, x);
	}
	vms_worker_end_tx();
	return v;
}

static char *
sql_text(const char *query, int nargs, const char *a, const char *b, const char *c)
{
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];
	const char *args[3] = {a, b, c};

	for (int i = 0; i < nargs; i++)
		values[i] = CStringGetTextDatum(args[i]);
	return sql_value(query, nargs, types, values, NULL);
}

static const char *
http_ip(void)
{
	if (vms_snapshot_http_ip && vms_snapshot_http_ip[0])
		return vms_snapshot_http_ip;
	return vms_inspect_media_ip && vms_inspect_media_ip[0] ? vms_inspect_media_ip : "127.0.0.1";
}

/*
 * The device's own snapshot (2022 SnapShotConfig): the JPEG (malloc'd), or
 * NULL with why in *why.
 */
static unsigned char *
device_snapshot(const char *token, TimestampTz deadline, size_t *len, char **why)
{
	struct MHD_Daemon *d = NULL;
	struct sockaddr_in sa;
	int			port = 0;
	int			lo = vms_snapshot_http_port_min,
				hi = Max(vms_snapshot_http_port_max, vms_snapshot_http_port_min);
	char	   *url,
			   *rid,
			   *state = NULL;
	TimestampTz device_deadline = Min(deadline, TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																			   (int64) vms_snapshot_device_wait * 1000));
	TimestampTz next_state = 0;
	bool		answered = false;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	if (inet_pton(AF_INET, http_ip(), &sa.sin_addr) != 1)
	{
		*why = psprintf("vms.snapshot_http_ip \"%s\" is not an IPv4 address", http_ip());
		return NULL;
	}
	snprintf(path_expected, sizeof(path_expected), "/snapshot/%s", token);
	{
		char	   *dev_ip = sql_text("SELECT pg_catalog.host(s.address) FROM vms.device_session s"
									  " JOIN vms.snapshot_request r ON r.device_code = s.device_code WHERE r.token = $1",
									  1, token, NULL, NULL);

		if (dev_ip == NULL || inet_pton(AF_INET, dev_ip, &device_addr) != 1)
		{
			*why = psprintf("the device's registered address (%s) is not an IPv4 address to take an upload from",
							dev_ip ? dev_ip : "none");
			return NULL;
		}
	}
	for (int k = 0; k < 32 && d == NULL; k++)
	{
		int			p = lo == 0 ? 0 : lo + (int) (pg_prng_uint64(&pg_global_prng_state) % (uint64) (hi - lo + 1));

		sa.sin_port = htons(p);
		HOLD_INTERRUPTS();
		d = MHD_start_daemon(MHD_USE_ERROR_LOG, (uint16_t) p, NULL, NULL, on_request, NULL,
							 MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &sa,
							 MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
							 MHD_OPTION_CONNECTION_LIMIT, (unsigned int) 8,
							 MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int) 2,
							 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) SNAP_CONN_TIMEOUT_S,
							 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) 131072,
							 MHD_OPTION_END);
		RESUME_INTERRUPTS();
		if (d)
		{
			const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);

			port = info ? info->port : p;
		}
		if (lo == 0)
			break;
	}
	if (d == NULL || port == 0)
	{
		if (d)
			MHD_stop_daemon(d);
		*why = psprintf("no HTTP port for the upload on %s (vms.snapshot_http_port_min..max)", http_ip());
		return NULL;
	}
	url = psprintf("http://%s:%d%s", http_ip(), port, path_expected);
	rid = sql_text("SELECT vms._snapshot_device_config($1, $2)", 2, token, url, NULL);
	if (rid == NULL)
	{
		MHD_stop_daemon(d);
		*why = pstrdup("the DeviceConfig SnapShotConfig could not be queued");
		return NULL;
	}

	while (accepted == NULL && GetCurrentTimestamp() < device_deadline)
	{
		fd_set		rs,
					ws,
					es;
		MHD_socket	max = 0;
		struct timeval tv = {0, SNAP_POLL_MS * 1000};

		CHECK_FOR_INTERRUPTS();
		FD_ZERO(&rs);
		FD_ZERO(&ws);
		FD_ZERO(&es);
		if (MHD_get_fdset(d, &rs, &ws, &es, &max) != MHD_YES)
			break;
		(void) select(max + 1, &rs, &ws, &es, &tv);
		HOLD_INTERRUPTS();
		MHD_run(d);
		RESUME_INTERRUPTS();
		if (accepted || GetCurrentTimestamp() < next_state)
			continue;
		next_state = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), SNAP_STATE_MS);
		state = sql_text("SELECT state || ':' || coalesce(error, '') FROM vms.sip_request WHERE id = $1::bigint",
						 1, rid, NULL, NULL);
		if (state && strncmp(state, "done", 4) == 0)
		{
			answered = true;
			/* it answered and what it sent was refused: a device uploads each picture once */
			if (refused_uploads > 0)
				break;
		}
		else if (state == NULL || strncmp(state, "failed", 6) == 0 || strncmp(state, "timeout", 7) == 0)
			break;
	}
	/* a last look: an upload may be in flight as the answer came */
	HOLD_INTERRUPTS();
	MHD_run(d);
	MHD_stop_daemon(d);
	RESUME_INTERRUPTS();
	if (accepted)
	{
		unsigned char *jpeg = accepted;

		*len = accepted_len;
		accepted = NULL;
		return jpeg;
	}
	if (!answered)
		*why = psprintf("the device did not take SnapShotConfig (%s)", state ? state : "no answer");
	else
		*why = psprintf("the device accepted SnapShotConfig but uploaded no JPEG within %d s%s",
						vms_snapshot_device_wait, refused_uploads ? " (its uploads were refused: not a JPEG, too large or too many pixels)" : "");
	return NULL;
}

static void
finish(const char *token, const char *method, const unsigned char *jpeg, size_t len, const char *error)
{
	Oid			types[4] = {TEXTOID, TEXTOID, BYTEAOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	values[0] = CStringGetTextDatum(token);
	values[1] = CStringGetTextDatum(method ? method : "none");
	if (jpeg)
	{
		bytea	   *b = palloc(VARHDRSZ + len);

		SET_VARSIZE(b, VARHDRSZ + len);
		memcpy(VARDATA(b), jpeg, len);
		values[2] = PointerGetDatum(b);
	}
	else
		nulls[2] = 'n';
	if (error)
		values[3] = CStringGetTextDatum(error);
	else
		nulls[3] = 'n';
	(void) sql_value("SELECT vms._snapshot_finish($1, $2, $3, $4)", 4, types, values, nulls);
}

void
vms_snapshot_main(Datum arg)
{
	char		channel[21],
				token[33],
				role[NAMEDATALEN],
				session[16];
	Oid			session_oid;
	char	   *method = NULL;
	char	   *why_device = NULL;
	unsigned char *jpeg = NULL;
	size_t		len = 0;
	TimestampTz deadline;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	memcpy(channel, MyBgworkerEntry->bgw_extra + X_CHANNEL, sizeof(channel));
	memcpy(token, MyBgworkerEntry->bgw_extra + X_TOKEN, sizeof(token));
	strlcpy(role, MyBgworkerEntry->bgw_extra + X_ROLE, sizeof(role));
	memcpy(&session_oid, MyBgworkerEntry->bgw_extra + X_SESSION, sizeof(Oid));
	snprintf(session, sizeof(session), "%u", session_oid);
	channel[20] = token[32] = '\0';
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(arg), InvalidOid, 0);
	/* never wait for a lock longer than the snapshot may take (the caller may hold one) */
	SetConfigOption("lock_timeout", psprintf("%d", vms_snapshot_timeout * 1000), PGC_SUSET, PGC_S_OVERRIDE);
	vqd_quiet_libav();			/* FFmpeg's own messages stay out of the server log */
	work_cxt = AllocSetContextCreate(TopMemoryContext, "vms snapshot", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(work_cxt);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (int64) vms_snapshot_timeout * 1000);

	PG_TRY();
	{
		/* recorded and audited (as the caller's session role), committed before the device is asked */
		{
			Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
			Datum		values[4] = {CStringGetTextDatum(channel), CStringGetTextDatum(token),
			CStringGetTextDatum(role), CStringGetTextDatum(session)};

			method = sql_value("SELECT vms._snapshot_begin($1::vms.gbcode, $2, $3::name,"
							   " (SELECT a.rolname FROM pg_catalog.pg_authid a WHERE a.oid = $4::oid))",
							   4, types, values, NULL);
		}
		if (method && strcmp(method, "device") == 0)
		{
			pgstat_report_activity(STATE_RUNNING, "vms snapshot: waiting for the device's upload");
			jpeg = device_snapshot(token, deadline, &len, &why_device);
			if (jpeg == NULL)
				method = "invite";
		}
		if (jpeg == NULL && method && strcmp(method, "invite") == 0)
		{
			long		left = (long) ((deadline - GetCurrentTimestamp()) / 1000);
			char	   *why = NULL;

			pgstat_report_activity(STATE_RUNNING, "vms snapshot: sampling over INVITE");
			if (left < 1000)
				why = pstrdup("no time left for an INVITE");
			else
				jpeg = vms_inspect_gb28181_jpeg(channel, (int) left, &len, &why);
			if (jpeg == NULL)
				why_device = why_device ? psprintf("%s; INVITE: %s", why_device, why) : psprintf("INVITE: %s", why);
		}
		if (method == NULL)
			why_device = pstrdup("the request could not start");
		/* with a picture, why the device's own snapshot was not it (if so) stays as a note */
		finish(token, method, jpeg, len, why_device);
	}
	PG_CATCH();
	{
		char	   *message = vms_worker_take_error(work_cxt);

		finish(token, method, NULL, 0, message);
	}
	PG_END_TRY();
	proc_exit(0);
}
