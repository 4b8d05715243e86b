/*
 * inspector.c — the "vms inspector N" workers (vms.inspector_workers of
 * them): start the rounds of due inspection plans, take one task at a time
 * (FOR UPDATE SKIP LOCKED, within the plan's concurrency), sample the
 * channel's stream with FFmpeg (extension/inspect/vqd_*.c) outside any
 * transaction, and record the result, its JPEG snapshot and its alarms in a
 * short transaction (vms._inspection_record).
 *
 * A task whose worker died is taken again once twice its timeout has
 * passed; a result already recorded is not recorded twice.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "../../extension/inspect/vqd.h"
#include "../sip/sbuf.h"
#include "../worker_registry.h"
#include "../worker_tx.h"
#include "inspector.h"

PGDLLEXPORT void vms_inspector_main(Datum arg);

/* limits */
#define MAX_RTP_PACKETS 60000	/* below 65536: sequence numbers order them */
#define MAX_RTP_PAYLOAD 65535	/* RFC 4571 allows this much over TCP */

/*
 * The most RTP payload kept for one GB/T 28181 sample.  A 30 s sample of an
 * 8 Mbit/s stream fits; more (a device that floods, or a sample far longer
 * than the analysis needs) ends the receiving, and the diagnosis uses what
 * came so far.  Documented in README (Inspection, GB/T 28181 path).
 */
#define INSPECT_MEDIA_MAX_BYTES (32 * 1024 * 1024)
#define MEDIA_RCVBUF (4 * 1024 * 1024)	/* socket receive buffer for media */
#define MEDIA_PORT_TRIES 32		/* ports tried in vms.inspect_media_ports */
#define RESULT_JSON_MAX (1 << 20)	/* a larger result is recorded as {} */
#define RTP_ORDER_LEAD 1000		/* sequence numbers counted from this far before the first */

/* timings, in milliseconds */
#define INVITE_POLL_MS 50		/* how often the INVITE's request is looked at */
#define MEDIA_POLL_MS 100		/* interrupts are checked this often while receiving */
#define SAMPLE_GRACE_MS 500		/* received after the sample length, for late packets */
#define MEDIA_SILENCE_MS 3000	/* a stream silent this long has ended */

/*
 * The SQL this worker runs, named: a grep for a function finds its caller
 * here.  Each runs in a short transaction of its own; sampling runs outside
 * any.
 */
#define SQL_SCHEDULE "SELECT vms._inspection_schedule()"
#define SQL_CLAIM "SELECT * FROM vms._inspection_claim($1)"
#define SQL_RECORD "SELECT vms._inspection_record($1, $2::jsonb, $3)"
#define SQL_INVITE "SELECT vms.sip_invite($1::vms.gbcode, $2, $3::int, $4)"
#define SQL_REQUEST_STATE "SELECT state || ':' || coalesce(error, '') FROM vms.sip_request WHERE id = $1::bigint"
#define SQL_BYE "SELECT vms.sip_bye($1::bigint)"

enum
{
	C_ROUNDS_STARTED, C_TASKS, C_STREAM_OK, C_STREAM_FAILED, C_ABNORMAL, C_SNAPSHOTS, C_ERRORS, C_SAMPLE_MS
};

static VmsWorkerSlot *slot;
static MemoryContext loop_cxt;
#define begin_tx(what) vms_worker_begin_tx(what)
#define end_tx() vms_worker_end_tx()
#define tx_caller_cxt vms_tx_caller_cxt

/* a SIGTERM or a DBA's stop interrupts sampling at once */
static int
stop_requested(void *arg)
{
	return ProcDiePending || QueryCancelPending;
}

typedef struct Task
{
	int64		id;
	char	   *channel;
	char	   *source;
	char	   *profile;
	int			nth;
	char	  **th_names;
	double	   *th_values;
	double		seconds;
	int			frames;
	int			timeout_ms;
	unsigned char *baseline;
	size_t		baseline_len;
	/* GB/T 28181 path: what the media socket received, for the result */
	bool		media;
	int64		rtp_packets;	/* accepted */
	int64		rtp_bytes;		/* accepted payload */
	int64		rtp_rejected;	/* wrong source address or SSRC, or not RTP */
	bool		rtp_capped;		/* INSPECT_MEDIA_MAX_BYTES reached */
	char		rtp_error[128]; /* the socket error that ended receiving */
} Task;

/*
 * The sources the inspector opens: rtsp://, rtsps://, http:// and https://
 * addresses with a host, without white space or control characters (the
 * check on vms.channel.stream_url allows no others), and the GB/T 28181
 * path ("gb28181:" tasks, sampled through the SIP worker).  Anything else —
 * a server file, or another FFmpeg protocol such as file:, concat:,
 * subfile:, pipe: or data: — is refused without being opened, even when a
 * superuser forced it past the check; vqd_diagnose() then allows FFmpeg only
 * network protocols for it (protocol_whitelist).
 */
static bool
is_stream_url(const char *s)
{
	static const char *const schemes[] = {"rtsp://", "rtsps://", "http://", "https://"};

	for (int i = 0; i < lengthof(schemes); i++)
	{
		size_t		n = strlen(schemes[i]);

		if (strncmp(s, schemes[i], n) != 0)
			continue;
		if (s[n] == '\0' || s[n] == '/' || s[n] == '?' || s[n] == '#' || strlen(s) > 2048)
			return false;
		for (const unsigned char *p = (const unsigned char *) s; *p; p++)
			if (*p <= ' ' || *p == 0x7f)
				return false;
		return true;
	}
	return false;
}

static bool
claim(Task *t)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	bool		got = false;

	values[0] = CStringGetTextDatum(MyBgworkerEntry->bgw_extra);
	begin_tx("vms inspector: claiming a task");
	if (SPI_execute_with_args(SQL_CLAIM, 1, types, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "vms inspector: could not claim a task");
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	d = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(tx_caller_cxt);
		bool		isnull;
		Datum		v;
		char	   *s;

		/*
		 * The claim is committed with what is decoded here: nothing below
		 * may raise an ERROR over the row's contents, or the same task would
		 * be claimed, and fail, again and again.  NULLs take defaults
		 * (vms._inspection_claim already failed tasks of unusable plans).
		 */
		memset(t, 0, sizeof(*t));
		t->id = DatumGetInt64(SPI_getbinval(tup, d, 1, &isnull));
		s = SPI_getvalue(tup, d, 2);
		t->channel = pstrdup(s ? s : "?");
		s = SPI_getvalue(tup, d, 3);
		t->source = s ? pstrdup(s) : NULL;
		s = SPI_getvalue(tup, d, 4);
		t->profile = pstrdup(s ? s : "normal");
		v = SPI_getbinval(tup, d, 5, &isnull);
		if (!isnull)
		{
			Datum	   *names,
					   *vals = NULL;
			bool	   *names_null,
					   *vals_null = NULL;
			int			n1,
						n2 = 0;
			Datum		v2 = SPI_getbinval(tup, d, 6, &isnull);

			deconstruct_array(DatumGetArrayTypeP(v), TEXTOID, -1, false, TYPALIGN_INT, &names, &names_null, &n1);
			if (!isnull)
				deconstruct_array(DatumGetArrayTypeP(v2), FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
								  &vals, &vals_null, &n2);
			t->th_names = palloc(sizeof(char *) * (Min(n1, n2) + 1));
			t->th_values = palloc(sizeof(double) * (Min(n1, n2) + 1));
			for (int i = 0; i < Min(n1, n2); i++)
				if (!names_null[i] && !vals_null[i])
				{
					t->th_names[t->nth] = TextDatumGetCString(names[i]);
					t->th_values[t->nth++] = DatumGetFloat8(vals[i]);
				}
		}
		v = SPI_getbinval(tup, d, 7, &isnull);
		t->seconds = isnull ? 2.0 : DatumGetFloat8(v);
		v = SPI_getbinval(tup, d, 8, &isnull);
		t->frames = isnull ? 50 : DatumGetInt32(v);
		v = SPI_getbinval(tup, d, 9, &isnull);
		t->timeout_ms = isnull ? 10000 : DatumGetInt32(v);
		v = SPI_getbinval(tup, d, 10, &isnull);
		if (!isnull)
		{
			bytea	   *b = DatumGetByteaPP(v);

			t->baseline_len = VARSIZE_ANY_EXHDR(b);
			t->baseline = palloc(t->baseline_len);
			memcpy(t->baseline, VARDATA_ANY(b), t->baseline_len);
		}
		MemoryContextSwitchTo(old);
		got = true;
	}
	end_tx();
	return got;
}

static void
result_json(SBuf *b, const Task *t, const vqd_report *rep)
{
	sbuf_puts(b, "{\"profile\":");
	sbuf_json_string(b, t->profile);
	sbuf_printf(b, ",\"frames\":%d,\"width\":%d,\"height\":%d,\"fps\":%.2f,\"elapsed_ms\":%.1f,\"first_frame_ms\":%.1f,\"codec\":",
				rep->frames, rep->width, rep->height, rep->fps, rep->elapsed_ms, rep->first_frame_ms);
	sbuf_json_string(b, rep->codec);
	sbuf_puts(b, ",\"checks\":{");
	for (int i = 0; i < rep->nresults; i++)
	{
		const vqd_result *r = &rep->r[i];

		if (i > 0)
			sbuf_append(b, ",", 1);
		sbuf_json_string(b, r->check);
		if (r->evaluated && isfinite(r->metric))
			sbuf_printf(b, ":{\"metric\":%.6g,\"abnormal\":%s,\"detail\":", r->metric, r->abnormal ? "true" : "false");
		else
			sbuf_puts(b, ":{\"metric\":null,\"abnormal\":null,\"detail\":");
		sbuf_json_string(b, r->detail);
		/* color_cast: the picture's median chroma, learnt by the channel's baseline */
		if (r->evaluated && r->has_vec && isfinite(r->vec[0]) && isfinite(r->vec[1]))
			sbuf_printf(b, ",\"grey\":[%.1f,%.1f]", r->vec[0], r->vec[1]);
		sbuf_append(b, "}", 1);
	}
	sbuf_puts(b, "}");
	if (t->media)
	{
		sbuf_printf(b, ",\"rtp\":{\"packets\":" INT64_FORMAT ",\"bytes\":" INT64_FORMAT ",\"rejected\":" INT64_FORMAT
					",\"capped\":%s", t->rtp_packets, t->rtp_bytes, t->rtp_rejected, t->rtp_capped ? "true" : "false");
		if (t->rtp_error[0])
		{
			sbuf_puts(b, ",\"error\":");
			sbuf_json_string(b, t->rtp_error);
		}
		sbuf_puts(b, "}");
	}
	sbuf_puts(b, "}");
}


/* ---------------------------------------------------------------- GB/T 28181 live media */

typedef struct RtpPacket
{
	uint16		seq;
	uint16		len;
	unsigned char *data;
} RtpPacket;

static int
rtp_order(const void *a, const void *b, void *arg)
{
	uint16		first = *(uint16 *) arg;
	uint16		x = (uint16) (((const RtpPacket *) a)->seq - first);
	uint16		y = (uint16) (((const RtpPacket *) b)->seq - first);

	return (int) x - (int) y;
}

/*
 * The media sockets of the sample in progress, so that an error or a
 * cancel in the middle of it (which ends the round) does not leak them.
 */
static int	media_fd = -1;
static int	media_conn = -1;

static void
close_media(void)
{
	if (media_conn >= 0)
		close(media_conn);
	if (media_fd >= 0)
		close(media_fd);
	media_conn = media_fd = -1;
}

/*
 * One RTP packet from the expected source into the list, if it carries the
 * SSRC the INVITE asked for; anything else is counted as rejected.  Stops
 * taking packets (and sets rtp_capped) at INSPECT_MEDIA_MAX_BYTES.
 */
static void
add_rtp(Task *t, RtpPacket *pk, int *npk, const unsigned char *buf, ssize_t n, uint32 ssrc)
{
	int			hdr;

	if (n < 12 || (buf[0] >> 6) != 2 ||
		(((uint32) buf[8] << 24) | ((uint32) buf[9] << 16) | ((uint32) buf[10] << 8) | buf[11]) != ssrc)
	{
		t->rtp_rejected++;
		return;
	}
	hdr = 12 + 4 * (buf[0] & 0x0f);
	if (buf[0] & 0x10)			/* header extension */
	{
		if (n < hdr + 4)
		{
			t->rtp_rejected++;
			return;
		}
		hdr += 4 + 4 * ((buf[hdr + 2] << 8) | buf[hdr + 3]);
	}
	if (buf[0] & 0x20)			/* padding: its length is the last byte */
		n -= buf[n - 1];
	if (n <= hdr || n - hdr > MAX_RTP_PAYLOAD)
	{
		t->rtp_rejected++;
		return;
	}
	if (*npk >= MAX_RTP_PACKETS || t->rtp_bytes + (n - hdr) > INSPECT_MEDIA_MAX_BYTES)
	{
		t->rtp_capped = true;
		return;
	}
	pk[*npk].seq = (uint16) ((buf[2] << 8) | buf[3]);
	pk[*npk].len = (uint16) (n - hdr);
	pk[*npk].data = palloc(n - hdr);
	memcpy(pk[*npk].data, buf + hdr, n - hdr);
	(*npk)++;
	t->rtp_packets++;
	t->rtp_bytes += n - hdr;
}

/* a socket error that will not go away by waiting */
static bool
hard_error(int e)
{
	return e != EAGAIN && e != EWOULDBLOCK && e != EINTR;
}

/* a short transaction: one SQL statement with text arguments, returning one text value */
static char *
sql_value(const char *query, int nargs, const char **args)
{
	char	   *v = NULL;
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];

	for (int i = 0; i < nargs && i < 4; i++)
		values[i] = CStringGetTextDatum(args[i]);
	begin_tx(query);
	if (SPI_execute_with_args(query, nargs, types, values, NULL, false, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		char	   *x = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (x)
			v = MemoryContextStrdup(tx_caller_cxt, x);
	}
	end_tx();
	return v;
}

static void
stream_failed(vqd_report *rep, const char *fmt,...) pg_attribute_printf(2, 3);

static void
stream_failed(vqd_report *rep, const char *fmt,...)
{
	va_list		ap;

	rep->nresults = 1;
	rep->r[0].check = vqd_check_name(VQD_STREAM);
	rep->r[0].evaluated = 1;
	rep->r[0].metric = 0;
	rep->r[0].abnormal = 1;
	va_start(ap, fmt);
	vsnprintf(rep->r[0].detail, sizeof(rep->r[0].detail), fmt, ap);
	va_end(ap);
}

/*
 * A channel reachable only through GB/T 28181: open a UDP port from
 * vms.inspect_media_ports, have the SIP worker INVITE the channel to it,
 * receive RTP for the sample length (reordered by sequence number), BYE,
 * and diagnose the program stream the payloads make up.
 *
 * Only RTP from the device's registered address (vms.device_session) with
 * the SSRC of the INVITE's y= line is taken; over TCP, connections from
 * other addresses are closed.  At most INSPECT_MEDIA_MAX_BYTES of payload
 * are kept.  A socket error that waiting cannot cure ends the receiving at
 * once.  What arrived is reported in the result's sample (rtp).
 */
static void
sample_gb28181(Task *t, const char *channel, vqd_options *o, vqd_report *rep)
{
	bool		tcp = vms_inspect_media_transport == MEDIA_TCP;
	int			fd = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
	int			conn = -1;
	unsigned char *stream = NULL;
	size_t		stream_len = 0;
	struct sockaddr_in addr;
	struct in_addr expected_ip;
	uint32		ssrc = 0;
	int			port = 0;
	int			span = Max(1, vms_inspect_media_port_max - vms_inspect_media_port_min + 1);
	char	   *rid,
			   *state = NULL,
			   *expect;
	RtpPacket  *pk;
	int			npk = 0;
	TimestampTz start = GetCurrentTimestamp(),
				first = 0,
				last = 0;
	char		path[MAXPGPATH];
	FILE	   *f;
	int			rcvbuf = 4 * 1024 * 1024;

	t->media = true;
	if (fd < 0)
	{
		stream_failed(rep, "no socket for media: %m");
		return;
	}
	close_media();
	media_fd = fd;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (tcp)
	{
		int			on = 1;

		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	}
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	inet_pton(AF_INET, vms_inspect_media_ip, &addr.sin_addr);
	for (int k = 0; k < 32 && port == 0; k++)
	{
		int			p = vms_inspect_media_port_min +
			(int) (((uint64) MyProcPid * 7919 + (uint64) k * 104729 + (uint64) t->id) % (uint64) span);

		addr.sin_port = htons(p);
		if (bind(fd, (struct sockaddr *) &addr, sizeof(addr)) == 0 && (!tcp || listen(fd, 4) == 0))
			port = p;
	}
	if (port == 0)
	{
		close_media();
		stream_failed(rep, "no free media port in vms.inspect_media_ports");
		return;
	}

	/* ask the SIP worker, then wait for its answer */
	{
		const char *args[4] = {channel, vms_inspect_media_ip, psprintf("%d", port), tcp ? "tcp" : "udp"};
		MemoryContext cxt = CurrentMemoryContext;

		/* a refused request (bad address setting, channel gone) fails this task only */
		PG_TRY();
		{
			rid = sql_value("SELECT vms.sip_invite($1::vms.gbcode, $2, $3::int, $4)", 4, args);
		}
		PG_CATCH();
		{
			char	   *message = vms_worker_take_error(cxt);

			close_media();
			stream_failed(rep, "INVITE not sent: %s", message);
			return;
		}
		PG_END_TRY();
	}
	while (rid && GetCurrentTimestamp() < TimestampTzPlusMilliseconds(start, t->timeout_ms))
	{
		state = sql_value("SELECT state || ':' || coalesce(error, '') FROM vms.sip_request WHERE id = $1::bigint",
						  1, (const char **) &rid);
		if (state && strncmp(state, "queued", 6) != 0 && strncmp(state, "sent", 4) != 0)
			break;
		CHECK_FOR_INTERRUPTS();
		pg_usleep(50000L);
	}
	if (rid == NULL || state == NULL || strncmp(state, "done", 4) != 0)
	{
		close_media();
		/* an INVITE that is still on its way must not leave a stream running */
		if (rid && state && strncmp(state, "failed", 6) != 0 && strncmp(state, "timeout", 7) != 0)
			(void) sql_value("SELECT vms.sip_bye($1::bigint)", 1, (const char **) &rid);
		stream_failed(rep, "INVITE failed: %s", state ? state : "no answer from the SIP worker");
		return;
	}

	/* whom to listen to: the SSRC we offered (y=), the device's registered address */
	expect = sql_value("SELECT coalesce(r.result ->> 'ssrc', r.progress ->> 'ssrc') || ' ' || host(s.address) "
					   "FROM vms.sip_request r JOIN vms.device_session s ON s.device_code = r.device_code "
					   "WHERE r.id = $1::bigint", 1, (const char **) &rid);
	{
		char		ip[64] = "";
		unsigned long long v = 0;
		int			used = 0;
		bool		ok;

		/* "<up to 10 digits> <IPv4 address>" */
		ok = expect != NULL && sscanf(expect, "%10llu %n", &v, &used) == 1 && used > 0 &&
			v <= PG_UINT32_MAX && strlen(expect + used) < sizeof(ip);
		if (ok)
		{
			strlcpy(ip, expect + used, sizeof(ip));
			ok = inet_pton(AF_INET, ip, &expected_ip) == 1;
		}
		if (!ok)
		{
			close_media();
			(void) sql_value("SELECT vms.sip_bye($1::bigint)", 1, (const char **) &rid);
			stream_failed(rep, "no SSRC or no registered IPv4 address to take media from (%s)",
						  expect ? expect : "no session");
			return;
		}
		ssrc = (uint32) v;
	}

	/* receive: the sample length after the first packet, within the timeout */
	pk = palloc0(sizeof(RtpPacket) * MAX_RTP_PACKETS);
	for (;;)
	{
		struct pollfd pfd = {fd, POLLIN, 0};
		unsigned char buf[65536];
		TimestampTz now = GetCurrentTimestamp();
		int64		before = t->rtp_packets;
		ssize_t		n;
		int			ready;

		CHECK_FOR_INTERRUPTS();
		if (now >= TimestampTzPlusMilliseconds(start, t->timeout_ms) ||
			(first && now >= TimestampTzPlusMilliseconds(first, (int64) (t->seconds * 1000) + 500)) ||
			(last && now >= TimestampTzPlusMilliseconds(last, 3000)) || t->rtp_capped)
			break;
		if (conn >= 0)
			pfd.fd = conn;
		ready = poll(&pfd, 1, 100);
		if (ready < 0 && hard_error(errno))
		{
			snprintf(t->rtp_error, sizeof(t->rtp_error), "poll: %m");
			break;
		}
		if (ready <= 0)
			continue;
		if (pfd.revents & POLLNVAL)
		{
			snprintf(t->rtp_error, sizeof(t->rtp_error), "media socket closed");
			break;
		}
		if (tcp && conn < 0)
		{
			/* the device connects to us (setup:passive); no one else may */
			struct sockaddr_in from;
			socklen_t	fromlen = sizeof(from);
			int			c = accept(fd, (struct sockaddr *) &from, &fromlen);

			if (c < 0)
			{
				if (errno == ECONNABORTED || errno == EPROTO || errno == ENETDOWN || errno == EHOSTUNREACH ||
					errno == ENOPROTOOPT || errno == ENONET || errno == ENETUNREACH || !hard_error(errno))
					continue;	/* that connection is gone, not the socket (accept(2)) */
				snprintf(t->rtp_error, sizeof(t->rtp_error), "accept: %m");
				break;
			}
			if (from.sin_family != AF_INET || from.sin_addr.s_addr != expected_ip.s_addr)
			{
				close(c);
				t->rtp_rejected++;
				continue;
			}
			conn = media_conn = c;
			continue;
		}
		if (!tcp)
		{
			struct sockaddr_in from;
			socklen_t	fromlen = sizeof(from);

			n = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *) &from, &fromlen);
			if (n < 0)
			{
				if (!hard_error(errno) || errno == ECONNREFUSED)
					continue;	/* nothing yet, or an ICMP error about an earlier send */
				snprintf(t->rtp_error, sizeof(t->rtp_error), "recv: %m");
				break;
			}
			if (from.sin_family != AF_INET || from.sin_addr.s_addr != expected_ip.s_addr)
			{
				t->rtp_rejected++;
				continue;
			}
			add_rtp(t, pk, &npk, buf, n, ssrc);
		}
		else
		{
			/* RFC 4571: each RTP packet after a 2-byte big-endian length */
			size_t		used = 0;

			n = recv(conn, buf, sizeof(buf), MSG_DONTWAIT);
			if (n == 0)
				break;			/* the device hung up */
			if (n < 0)
			{
				if (!hard_error(errno))
					continue;
				snprintf(t->rtp_error, sizeof(t->rtp_error), "recv: %m");
				break;
			}
			stream = stream ? repalloc(stream, stream_len + n) : palloc(n);
			memcpy(stream + stream_len, buf, n);
			stream_len += n;
			while (stream_len - used >= 2)
			{
				size_t		len = (stream[used] << 8) | stream[used + 1];

				if (stream_len - used < 2 + len)
					break;
				add_rtp(t, pk, &npk, stream + used + 2, (ssize_t) len, ssrc);
				used += 2 + len;
			}
			memmove(stream, stream + used, stream_len - used);
			stream_len -= used;
		}
		if (t->rtp_packets == before)
			continue;			/* nothing taken: the clocks do not start */
		if (!first)
			first = now;
		last = now;
	}
	close_media();
	(void) sql_value("SELECT vms.sip_bye($1::bigint)", 1, (const char **) &rid);

	if (npk == 0)
	{
		if (t->rtp_error[0])
			stream_failed(rep, "media receiving failed: %s", t->rtp_error);
		else if (t->rtp_rejected > 0)
			stream_failed(rep, "INVITE answered but no RTP from the device within %d ms (" INT64_FORMAT
						  " packets from other sources or with another SSRC ignored)", t->timeout_ms, t->rtp_rejected);
		else
			stream_failed(rep, "INVITE answered but no RTP arrived within %d ms", t->timeout_ms);
		return;
	}
	{
		/* order by sequence number counted from a little before the first arrival (wraps at 65536) */
		uint16		origin = (uint16) (pk[0].seq - 1000);

		qsort_arg(pk, npk, sizeof(RtpPacket), rtp_order, &origin);
	}
	/* a file of our own: mkstemp creates it exclusively, no one else's link is followed */
	snprintf(path, sizeof(path), "/tmp/vms_inspect_%d_XXXXXX", MyProcPid);
	{
		int			tfd = mkstemp(path);

		f = tfd >= 0 ? fdopen(tfd, "wb") : NULL;
		if (f == NULL)
		{
			if (tfd >= 0)
				close(tfd);
			stream_failed(rep, "could not create a temporary file for the stream: %m");
			return;
		}
	}
	for (int i = 0; i < npk; i++)
		if (i == 0 || pk[i].seq != pk[i - 1].seq)	/* duplicates once */
			fwrite(pk[i].data, 1, pk[i].len, f);
	fclose(f);
	/* what the device sent is demuxed as a program stream and nothing else */
	o->input_format = "mpeg";
	vqd_diagnose(path, o, rep);
	unlink(path);
	if (rep->nresults > 0)
		snprintf(rep->codec + strlen(rep->codec), sizeof(rep->codec) - strlen(rep->codec), "/ps-rtp");
}

/* one task: sample outside any transaction, then record */
static void
inspect(Task *t)
{
	vqd_options o;
	vqd_report rep;
	SBuf		b;
	Oid			types[3] = {INT8OID, TEXTOID, BYTEAOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	bool		abnormal = false;

	vqd_options_init(&o);
	if (vqd_profile_load(t->profile, &o.th) != 0)
		vqd_profile_load("normal", &o.th);
	for (int i = 0; i < t->nth; i++)
		if (vqd_threshold_set(&o.th, t->th_names[i], t->th_values[i]) != 0)
			ereport(LOG, (errmsg("vms inspector: ignoring threshold \"%s\" = %g of task %lld",
								 t->th_names[i], t->th_values[i], (long long) t->id)));
	o.max_frames = t->frames;
	o.max_seconds = t->seconds;
	o.timeout_ms = t->timeout_ms;
	o.snapshot = 1;
	o.baseline = t->baseline;
	o.baseline_len = t->baseline_len;
	o.interrupt = stop_requested;
	memset(&rep, 0, sizeof(rep));

	vms_worker_set_state(slot, psprintf("sampling %s", t->channel));
	pgstat_report_activity(STATE_RUNNING, psprintf("vms inspector: sampling %s", t->channel));
	if (t->source == NULL || t->source[0] == '\0')
		stream_failed(&rep, "the channel has no stream URL");	/* nothing to open */
	else if (strncmp(t->source, "gb28181:", 8) == 0)
		sample_gb28181(t, t->source + 8, &o, &rep);
	else if (!is_stream_url(t->source))
	{
		/* never opened: see is_stream_url */
		stream_failed(&rep, "refused: the stream URL is not an rtsp://, rtsps://, http:// or https:// address");
		ereport(WARNING,
				(errmsg("vms inspector: refused to open the stream URL of channel %s", t->channel),
				 errdetail("Only rtsp://, rtsps://, http:// and https:// addresses are sampled; task %lld.",
						   (long long) t->id)));
	}
	else
		vqd_diagnose(t->source, &o, &rep);
	pgstat_report_activity(STATE_IDLE, NULL);
	CHECK_FOR_INTERRUPTS();

	sbuf_init(&b, RESULT_JSON_MAX);
	result_json(&b, t, &rep);
	for (int i = 0; i < rep.nresults; i++)
		if (rep.r[i].evaluated && rep.r[i].abnormal)
			abnormal = true;
	values[0] = Int64GetDatum(t->id);
	values[1] = CStringGetTextDatum(b.overflow ? "{}" : b.data);
	if (rep.snapshot && rep.snapshot_len > 0)
	{
		bytea	   *jpeg = palloc(VARHDRSZ + rep.snapshot_len);

		SET_VARSIZE(jpeg, VARHDRSZ + rep.snapshot_len);
		memcpy(VARDATA(jpeg), rep.snapshot, rep.snapshot_len);
		values[2] = PointerGetDatum(jpeg);
		vms_worker_count(slot, C_SNAPSHOTS, 1);
	}
	else
		nulls[2] = 'n';
	sbuf_free(&b);

	begin_tx("vms inspector: recording a result");
	if (SPI_execute_with_args(SQL_RECORD, 3, types, values, nulls, false, 0) < 0)
		elog(ERROR, "vms inspector: could not record task %lld", (long long) t->id);
	end_tx();

	vms_worker_count(slot, C_TASKS, 1);
	vms_worker_count(slot, rep.nresults > 0 && rep.r[0].evaluated && !rep.r[0].abnormal ? C_STREAM_OK : C_STREAM_FAILED, 1);
	if (abnormal)
		vms_worker_count(slot, C_ABNORMAL, 1);
	vms_worker_count(slot, C_SAMPLE_MS, (int64) rep.elapsed_ms);
	vqd_report_free(&rep);
}

/* one round of the loop: start due rounds, then inspect one task; true if it did one */
static bool
one_round(void)
{
	Task		t;

	/* no SQL until the extension is there, at this library's version */
	if (!vms_worker_ready(slot))
		return false;
	begin_tx("vms inspector: scheduling plans");
	if (SPI_execute(SQL_SCHEDULE, false, 0) == SPI_OK_SELECT && SPI_processed == 1)
	{
		char	   *n = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (n && atoi(n) > 0)
			vms_worker_count(slot, C_ROUNDS_STARTED, 1);
	}
	end_tx();
	if (!claim(&t))
	{
		vms_worker_set_state(slot, "idle");
		return false;
	}
	inspect(&t);
	vms_worker_set_state(slot, "running");
	return true;
}

/* an error ended the round: its media sockets go, and it is counted */
static void
after_error(void)
{
	close_media();
	vms_worker_count(slot, C_ERRORS, 1);
}

void
vms_inspector_main(Datum arg)
{
	slot = vms_worker_init("vms inspector");
	vqd_quiet_libav();
	loop_cxt = AllocSetContextCreate(vms_worker_cxt, "vms inspector loop", ALLOCSET_DEFAULT_SIZES);
	vms_worker_set_state(slot, "running");
	vms_worker_run_rounds(slot, loop_cxt, "vms inspector", one_round, after_error);
}

/*
 * One frame of a GB/T 28181 channel as a JPEG, for vms.snapshot's worker
 * (workers/snapshot/snapshot.c): sampled as an inspection task is (an
 * INVITE through the SIP worker, RTP/PS received here from the device's
 * registered address, decoded by FFmpeg, one frame encoded by FFmpeg's
 * mjpeg encoder) within timeout_ms.  NULL with the reason in *error when no
 * frame came.  Runs outside any transaction but its own short ones.
 */
unsigned char *
vms_inspect_gb28181_jpeg(const char *channel, int timeout_ms, size_t *len, char **error)
{
	Task		t;
	vqd_options o;
	vqd_report	rep;
	unsigned char *jpeg = NULL;

	memset(&t, 0, sizeof(t));
	t.timeout_ms = timeout_ms;
	t.seconds = 2;
	t.frames = 10;
	vqd_options_init(&o);
	o.max_frames = t.frames;
	o.max_seconds = t.seconds;
	o.timeout_ms = timeout_ms;
	o.snapshot = 1;
	o.interrupt = stop_requested;
	memset(&rep, 0, sizeof(rep));
	sample_gb28181(&t, channel, &o, &rep);
	if (rep.snapshot && rep.snapshot_len > 0)
	{
		jpeg = palloc(rep.snapshot_len);
		memcpy(jpeg, rep.snapshot, rep.snapshot_len);
		*len = rep.snapshot_len;
	}
	else
		*error = pstrdup(rep.nresults > 0 && rep.r[0].detail[0] ? rep.r[0].detail : "no frame could be decoded");
	vqd_report_free(&rep);
	return jpeg;
}

/*
 * vms._inspection_threshold_problem(name text, value float8) → text: NULL
 * when the inspector takes this threshold, else "unknown" or "out of range"
 * (the plan check names the key; THRESHOLDS.md lists the thresholds).
 */
PG_FUNCTION_INFO_V1(vms_inspection_threshold_problem);
Datum
vms_inspection_threshold_problem(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	double		value = PG_GETARG_FLOAT8(1);
	vqd_thresholds th;
	int			r;

	vqd_profile_load("normal", &th);
	r = vqd_threshold_set(&th, name, value);
	if (r == -1)
		PG_RETURN_TEXT_P(cstring_to_text("unknown"));
	if (r != 0)
		PG_RETURN_TEXT_P(cstring_to_text("out of range"));
	PG_RETURN_NULL();
}
