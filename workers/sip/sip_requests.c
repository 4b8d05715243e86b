/*
 * sip_requests.c — the platform's own requests to devices, asked for in SQL
 * (vms.sip_request): Catalog, DeviceInfo and DeviceStatus queries, and
 * Catalog/Alarm/MobilePosition subscriptions kept alive by renewal.
 *
 * A query is a MESSAGE the device acknowledges with 200 and answers with
 * MESSAGEs of its own carrying the same SN.  Catalog answers come in pages
 * (SumNum items in all): duplicates are dropped, and when pages stop
 * coming (vms.sip_page_timeout) what arrived is applied as a partial
 * answer; no answer at all within vms.sip_catalog_timeout is a timeout.
 * Over UDP, requests are retransmitted (0.5, 1, 2, 4 s) until answered.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/pg_prng.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include <osipparser2/sdp_message.h>

#include "manscdp.h"
#include "sip_control.h"
#include "sip_core.h"
#include "sip_db.h"
#include "sip_net.h"
#include "sip_requests.h"
#include "sip_sql.h"
#include "../worker_tx.h"

#define MAX_TX 4096
#define MAX_QUERIES 1024
#define TX_GIVE_UP_MS 16000

typedef enum Kind
{
	K_CATALOG, K_INFO, K_STATUS, K_SUBSCRIBE, K_UNSUBSCRIBE, K_INVITE, K_BYE,
	K_CONTROL,					/* sip_control.c: DeviceControl, DeviceConfig, other queries, RecordInfo */
	K_MANSRTSP					/* INFO with MANSRTSP in a playback session: pause, play, seek, scale */
} Kind;

typedef struct OutTx
{
	bool		used;
	char		call_id[64];
	uint32		cseq;
	Kind		kind;
	int64		request_id;
	char		dev[21];
	char		target[21];		/* Request-URI user: the device, or a channel (INVITE) */
	char		branch[20];
	char		from_tag[24];
	int			sub;			/* subscriptions: index */
	Peer		peer;
	char	   *msg;
	size_t		len;
	TimestampTz sent_at;
	TimestampTz next_retx;
	int			retx_ms;
	bool		provisional;
	bool		tcp_active;		/* INVITE: the media server connects to the device */
} OutTx;

typedef struct PendingQuery
{
	bool		used;
	int64		request_id;
	char		dev[21];
	Kind		kind;
	char		sn[16];
	long		sum_num;
	int			received;
	int			pages;
	HTAB	   *seen;
	SBuf		items;
	TimestampTz deadline;
	TimestampTz last_page;
} PendingQuery;

typedef struct Sub
{
	bool		used;
	char		dev[21];
	char		event[16];
	int			expires;
	char		call_id[64];
	uint32		cseq;
	char		from_tag[24];
	char		to_tag[64];
	bool		active;
	bool		in_flight;
	TimestampTz renew_at;
	int64		request_id;		/* the SQL request waiting on the next answer, 0 if none */
} Sub;

static OutTx txs[MAX_TX];
static PendingQuery queries[MAX_QUERIES];
static Sub *subs;
static int	n_subs,
			subs_cap;
static uint32 next_sn = 1;

static const char *
cmd_for(Kind k)
{
	switch (k)
	{
		case K_CATALOG:
			return "Catalog";
		case K_INFO:
			return "DeviceInfo";
		case K_STATUS:
			return "DeviceStatus";
		default:
			return "";
	}
}

/*
 * Build and send a request; remember it for answers and retransmission.
 * extra: header lines; body: MANSCDP XML or NULL.
 */
static OutTx *
send_request_to(const char *method, Dev *d, const char *target, Kind kind, int64 request_id, const char *call_id,
				uint32 cseq, const char *from_tag, const char *to_tag, const char *extra, const char *ctype,
				const char *body)
{
	OutTx	   *tx = NULL;
	char		branch[20];
	char		dom[11];
	const char *me = sip_local_ip_for(&d->peer);
	bool		tcp = d->peer.transport == TRANSPORT_TCP;

	for (int i = 0; i < MAX_TX; i++)
		if (!txs[i].used)
		{
			tx = &txs[i];
			break;
		}
	if (tx == NULL)
	{
		sip_log_limited(LOG_OTHER, "too many requests in flight; %s to %s not sent", method, d->code);
		return NULL;
	}
	sip_random_hex(branch, 16);
	snprintf(dom, sizeof(dom), "%.10s", d->code);
	sbuf_reset(sip_scratch());
	sbuf_printf(sip_scratch(), "%s sip:%s@%s:%d SIP/2.0\r\n", method, target, d->peer.ip, d->peer.port);
	sbuf_printf(sip_scratch(), "Via: SIP/2.0/%s %s:%d;rport;branch=z9hG4bK%s\r\n", tcp ? "TCP" : "UDP", me, sip_local_port(), branch);
	sbuf_printf(sip_scratch(), "From: <sip:%s@%s>;tag=%s\r\n", vms_sip_id, sip_realm(), from_tag);
	if (to_tag && to_tag[0])
		sbuf_printf(sip_scratch(), "To: <sip:%s@%s>;tag=%s\r\n", target, dom, to_tag);
	else
		sbuf_printf(sip_scratch(), "To: <sip:%s@%s>\r\n", target, dom);
	sbuf_printf(sip_scratch(), "Call-ID: %s\r\n", call_id);
	sbuf_printf(sip_scratch(), "CSeq: %u %s\r\n", cseq, method);
	sbuf_puts(sip_scratch(), "Max-Forwards: 70\r\nUser-Agent: vms\r\n");
	if (extra)
		sbuf_puts(sip_scratch(), extra);
	if (body)
	{
		sbuf_printf(sip_scratch(), "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n", ctype, strlen(body));
		sbuf_puts(sip_scratch(), body);
	}
	else
		sbuf_puts(sip_scratch(), "Content-Length: 0\r\n\r\n");
	if (sip_scratch()->overflow)
		return NULL;

	memset(tx, 0, sizeof(*tx));
	tx->used = true;
	strlcpy(tx->call_id, call_id, sizeof(tx->call_id));
	tx->cseq = cseq;
	tx->kind = kind;
	tx->request_id = request_id;
	strlcpy(tx->dev, d->code, sizeof(tx->dev));
	strlcpy(tx->target, target, sizeof(tx->target));
	strlcpy(tx->branch, branch, sizeof(tx->branch));
	strlcpy(tx->from_tag, from_tag, sizeof(tx->from_tag));
	tx->sub = -1;
	tx->peer = d->peer;
	tx->msg = MemoryContextAlloc(vms_worker_cxt, sip_scratch()->len);
	memcpy(tx->msg, sip_scratch()->data, sip_scratch()->len);
	tx->len = sip_scratch()->len;
	tx->sent_at = sip_now;
	tx->retx_ms = 500;
	tx->next_retx = tcp ? DT_NOEND : TimestampTzPlusMilliseconds(sip_now, 500);
	sip_send(&tx->peer, tx->msg, tx->len);
	return tx;
}

static OutTx *
send_request(const char *method, Dev *d, Kind kind, int64 request_id, const char *call_id, uint32 cseq,
			 const char *from_tag, const char *to_tag, const char *extra, const char *body)
{
	return send_request_to(method, d, d->code, kind, request_id, call_id, cseq, from_tag, to_tag, extra,
						   "Application/MANSCDP+xml", body);
}

static void
free_tx(OutTx *tx)
{
	if (tx->msg)
		pfree(tx->msg);
	tx->msg = NULL;
	tx->used = false;
}

static void
fail_request(int64 id, const char *state, const char *error)
{
	if (id > 0)
		sip_request_update(id, state, NULL, NULL, error);
}

/* ---------------------------------------------------------------- queries */

static PendingQuery *
new_query(int64 id, Dev *d, Kind kind)
{
	for (int i = 0; i < MAX_QUERIES; i++)
		if (!queries[i].used)
		{
			PendingQuery	   *q = &queries[i];
			HASHCTL		ctl;

			memset(q, 0, sizeof(*q));
			q->used = true;
			q->request_id = id;
			strlcpy(q->dev, d->code, sizeof(q->dev));
			q->kind = kind;
			snprintf(q->sn, sizeof(q->sn), "%u", next_sn++);
			q->sum_num = -1;
			q->deadline = TimestampTzPlusMilliseconds(sip_now, (int64) vms_sip_catalog_timeout * 1000);
			if (kind == K_CATALOG)
			{
				memset(&ctl, 0, sizeof(ctl));
				ctl.keysize = 24;
				ctl.entrysize = 24;
				ctl.hcxt = vms_worker_cxt;
				q->seen = hash_create("vms sip catalog items", 256, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
				sbuf_init(&q->items, (size_t) 256 << 20);
			}
			return q;
		}
	return NULL;
}

static void
free_query(PendingQuery *q)
{
	if (q->seen)
		hash_destroy(q->seen);
	if (q->kind == K_CATALOG)
		sbuf_free(&q->items);
	q->used = false;
}

static char *
progress_json(PendingQuery *q)
{
	return psprintf("{\"received\":%d,\"sum_num\":%ld,\"pages\":%d}", q->received, q->sum_num, q->pages);
}

/* a catalog answer is complete, or stopped coming: apply what arrived */
static void
finish_catalog(PendingQuery *q, const char *state, const char *error)
{
	SBuf		b;

	sbuf_init(&b, (size_t) 256 << 20);
	sbuf_printf(&b, "{\"request\":%lld,\"state\":\"%s\",\"progress\":%s,\"items\":[",
				(long long) q->request_id, state, progress_json(q));
	sbuf_append(&b, q->items.data, q->items.len);
	sbuf_puts(&b, "]");
	if (error)
	{
		sbuf_puts(&b, ",\"error\":");
		sbuf_json_string(&b, error);
	}
	sbuf_puts(&b, "}");
	if (b.overflow)
		fail_request(q->request_id, "failed", "catalog answer too large");
	else
		sip_db_queue(SIP_SQL_CATALOG_RESULT, q->dev, b.data);
	sbuf_free(&b);
	free_query(q);
}

static void
start_query(int64 id, Dev *d, Kind kind)
{
	PendingQuery	   *q = new_query(id, d, kind);
	char	   *body;
	char		call_id[64];
	char		tag[20];

	if (q == NULL)
	{
		fail_request(id, "failed", "too many queries in flight");
		return;
	}
	body = psprintf("<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Query>\r\n<CmdType>%s</CmdType>\r\n"
					"<SN>%s</SN>\r\n<DeviceID>%s</DeviceID>\r\n</Query>\r\n", cmd_for(kind), q->sn, d->code);
	sip_random_hex(call_id, 24);
	sip_random_hex(tag, 10);
	if (send_request("MESSAGE", d, kind, id, call_id, 1, tag, NULL, NULL, body) == NULL)
	{
		free_query(q);
		fail_request(id, "failed", "could not send the query");
		return;
	}
	sip_request_update(id, "sent", psprintf("{\"sn\":%s}", q->sn), NULL, NULL);
}

/* a MANSCDP Response from a device: part of an answer to one of our queries? */
bool
sip_requests_manscdp(Dev *d, const char *from_code, void *arg)
{
	Manscdp    *m = (Manscdp *) arg;
	PendingQuery	   *q = NULL;

	if (sip_control_manscdp(d, m))
		return true;
	for (int i = 0; i < MAX_QUERIES; i++)
		if (queries[i].used && strcmp(queries[i].dev, d->code) == 0 &&
			strcmp(queries[i].sn, m->sn) == 0 && strcmp(cmd_for(queries[i].kind), m->cmd_type) == 0)
		{
			q = &queries[i];
			break;
		}
	if (q == NULL)
		return false;

	if (q->kind != K_CATALOG)
	{
		char	   *payload = psprintf("{\"request\":%lld,\"kind\":\"%s\",\"answer\":%s}", (long long) q->request_id,
									   q->kind == K_INFO ? "device_info" : "device_status", m->json.data);

		sip_db_queue(SIP_SQL_INFO_RESULT, q->dev, payload);
		free_query(q);
		return true;
	}

	if (q->sum_num < 0 && m->sum_num >= 0)
		q->sum_num = m->sum_num;
	q->pages++;
	q->last_page = sip_now;
	for (int i = 0; i < m->nitems; i++)
	{
		bool		found = false;

		/* a page sent twice (or an item listed twice) counts once */
		if (m->items[i].device_id[0])
			hash_search(q->seen, m->items[i].device_id, HASH_ENTER, &found);
		if (found)
			continue;
		if (q->items.len > 0)
			sbuf_append(&q->items, ",", 1);
		sbuf_puts(&q->items, m->items[i].json);
		q->received++;
		sip_count(C_CATALOG_ITEMS, 1);
	}
	if (q->items.overflow)
	{
		fail_request(q->request_id, "failed", "catalog answer too large");
		free_query(q);
		return true;
	}
	if (q->sum_num >= 0 && q->received >= q->sum_num)
		finish_catalog(q, "done", NULL);
	else
		sip_request_update(q->request_id, "receiving", progress_json(q), NULL, NULL);
	return true;
}

/* ---------------------------------------------------------------- subscriptions */

static Sub *
find_sub(const char *dev, const char *event, bool create)
{
	for (int i = 0; i < n_subs; i++)
		if (subs[i].used && strcmp(subs[i].dev, dev) == 0 && strcmp(subs[i].event, event) == 0)
			return &subs[i];
	if (!create)
		return NULL;
	for (int i = 0; i < n_subs; i++)
		if (!subs[i].used)
		{
			memset(&subs[i], 0, sizeof(Sub));
			subs[i].used = true;
			strlcpy(subs[i].dev, dev, sizeof(subs[i].dev));
			strlcpy(subs[i].event, event, sizeof(subs[i].event));
			return &subs[i];
		}
	if (n_subs == subs_cap)
	{
		subs_cap = subs_cap ? subs_cap * 2 : 256;
		subs = subs ? repalloc(subs, sizeof(Sub) * subs_cap) : MemoryContextAlloc(vms_worker_cxt, sizeof(Sub) * subs_cap);
	}
	memset(&subs[n_subs], 0, sizeof(Sub));
	subs[n_subs].used = true;
	strlcpy(subs[n_subs].dev, dev, sizeof(subs[n_subs].dev));
	strlcpy(subs[n_subs].event, event, sizeof(subs[n_subs].event));
	return &subs[n_subs++];
}

static void
record_sub(Sub *s, const char *state, int64 request_id, const char *error)
{
	SBuf		b;

	sbuf_init(&b, 4096);
	sbuf_printf(&b, "{\"event\":\"%s\",\"state\":\"%s\",\"expires\":%d,\"call_id\":\"%s\",\"cseq\":%u",
				s->event, state, s->expires, s->call_id, s->cseq);
	if (request_id > 0)
		sbuf_printf(&b, ",\"request\":%lld", (long long) request_id);
	if (error)
	{
		sbuf_puts(&b, ",\"error\":");
		sbuf_json_string(&b, error);
	}
	sbuf_puts(&b, "}");
	sip_db_queue(SIP_SQL_SUBSCRIPTION_RECORD, s->dev, b.data);
	sbuf_free(&b);
}

/* SUBSCRIBE: a new dialog, or a refresh (or Expires 0) within the current one */
static void
send_subscribe(Sub *s, Dev *d, int expires, Kind kind)
{
	char		extra[256];
	char	   *body;
	const char *query;
	OutTx	   *tx;

	if (!s->active || s->call_id[0] == '\0')
	{
		sip_random_hex(s->call_id, 24);
		sip_random_hex(s->from_tag, 10);
		s->to_tag[0] = '\0';
		s->cseq = 0;
	}
	s->cseq++;
	if (strcmp(s->event, "Alarm") == 0)
		query = "<StartAlarmPriority>1</StartAlarmPriority>\r\n<EndAlarmPriority>4</EndAlarmPriority>\r\n<AlarmMethod>0</AlarmMethod>\r\n";
	else if (strcmp(s->event, "MobilePosition") == 0)
		query = "<Interval>5</Interval>\r\n";
	else
		query = "";
	body = psprintf("<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Query>\r\n<CmdType>%s</CmdType>\r\n"
					"<SN>%u</SN>\r\n<DeviceID>%s</DeviceID>\r\n%s</Query>\r\n", s->event, next_sn++, d->code, query);
	snprintf(extra, sizeof(extra), "Contact: <sip:%s@%s:%d>\r\nEvent: %s;id=%u\r\nExpires: %d\r\n",
			 vms_sip_id, sip_local_ip_for(&d->peer), sip_local_port(), s->event, next_sn, expires);
	tx = send_request("SUBSCRIBE", d, kind, s->request_id, s->call_id, s->cseq, s->from_tag, s->to_tag, extra, body);
	if (tx)
	{
		tx->sub = (int) (s - subs);
		s->in_flight = true;
	}
}

static void
start_subscribe(int64 id, Dev *d, const char *event, int expires, bool unsubscribe)
{
	Sub		   *s = find_sub(d->code, event, !unsubscribe);

	if (s == NULL)
	{
		sip_request_update(id, "done", NULL, "{\"note\":\"no such subscription\"}", NULL);
		return;
	}
	if (s->in_flight)
	{
		fail_request(id, "failed", "a SUBSCRIBE for this device and event is already in flight");
		return;
	}
	s->request_id = id;
	if (!unsubscribe)
		s->expires = expires;
	send_subscribe(s, d, unsubscribe ? 0 : expires, unsubscribe ? K_UNSUBSCRIBE : K_SUBSCRIBE);
	if (!s->in_flight)
		fail_request(id, "failed", "could not send SUBSCRIBE");
}


/* ---------------------------------------------------------------- live media (INVITE / BYE) */

#define MAX_DIALOGS 256			/* the most vms.sip_max_media_sessions may say */

typedef struct Dialog
{
	bool		used;
	char		call_id[64];
	char		from_tag[24];
	char		to_tag[64];
	uint32		cseq;
	char		dev[21];
	char		channel[21];
	char		ssrc[11];
	TimestampTz started;
} Dialog;

static Dialog dialogs[MAX_DIALOGS];

static void start_bye(int64 id, Dev *d, const char *call_id);
static uint32 next_ssrc = 1;

/* a free dialog slot, or NULL when vms.sip_max_media_sessions are open */
static Dialog *
free_dialog(void)
{
	Dialog	   *free_slot = NULL;
	int			open = 0;

	for (int i = 0; i < MAX_DIALOGS; i++)
		if (dialogs[i].used)
			open++;
		else if (free_slot == NULL)
			free_slot = &dialogs[i];
	return open < vms_sip_max_media_sessions ? free_slot : NULL;
}

/*
 * End at once a call the device accepted that we keep no dialog for (the
 * dialog slots full): a BYE in that call, no request waiting for it.
 */
static void
bye_unkept(Dev *d, const char *channel, const char *call_id, const char *from_tag, const char *to_tag, uint32 cseq)
{
	char	   *extra = psprintf("Contact: <sip:%s@%s:%d>\r\n", vms_sip_id, sip_local_ip_for(&d->peer), sip_local_port());

	(void) send_request_to("BYE", d, channel, K_BYE, 0, call_id, cseq + 1, from_tag, to_tag, extra, NULL, NULL);
}

/*
 * INVITEs that got no final answer in time: a device that accepts one
 * later gets an ACK and a BYE at once, so that nothing streams unasked.
 */
#define MAX_GIVEN_UP 64

typedef struct GivenUp
{
	char		call_id[64];
	char		from_tag[24];
	char		dev[21];
	char		channel[21];
	uint32		cseq;
} GivenUp;

static GivenUp given_up[MAX_GIVEN_UP];
static int	next_given_up;

/*
 * INVITE a channel to send its live stream (PS over RTP) to ip:port.
 * The SSRC follows GB/T 28181: 0 (live) or 1 (Playback, Download), digits
 * 4-8 of the domain, a four-digit sequence.  transport (GB/T 28181-2016/2022 media over TCP,
 * RTP framed per RFC 4571, m=video <port> TCP/RTP/AVP, a=connection:new):
 * "udp"; "tcp_passive" (or "tcp"): the media server listens at ip:port and
 * the device connects (a=setup:passive); "tcp_active": the device listens
 * (its answer's c= and m= say where) and the media server connects
 * (a=setup:active).
 */

/* params: vms.playback/vms.download add mode Playback/Download, start and end (epoch seconds), speed */
static void
start_invite(int64 id, Dev *d, const char *channel, const char *ip, int port, const char *transport, const char *params)
{
	bool		tcp_passive = transport && (strcmp(transport, "tcp") == 0 || strcmp(transport, "tcp_passive") == 0);
	bool		tcp_active = transport && strcmp(transport, "tcp_active") == 0;
	bool		tcp = tcp_passive || tcp_active;
	char		call_id[64];
	char		tag[20];
	char		ssrc[11];
	char	   *sdp;
	char	   *extra;
	char	   *mode = params ? sip_json_field(params, "mode") : NULL;
	char	   *t_start = params ? sip_json_field(params, "start") : NULL;
	char	   *t_end = params ? sip_json_field(params, "end") : NULL;
	char	   *speed = params ? sip_json_field(params, "speed") : NULL;
	bool		recorded = mode && (strcmp(mode, "Playback") == 0 || strcmp(mode, "Download") == 0);
	OutTx	   *tx;

	if (recorded && (t_start == NULL || t_end == NULL || strspn(t_start, "0123456789") != strlen(t_start) ||
					 strspn(t_end, "0123456789") != strlen(t_end) || !t_start[0] || !t_end[0]))
	{
		fail_request(id, "failed", "a playback or download needs its start and end");
		return;
	}
	if (speed && strspn(speed, "0123456789") != strlen(speed))
		speed = NULL;
	if (transport && !tcp && strcmp(transport, "udp") != 0)
	{
		fail_request(id, "failed", "unknown media transport");
		return;
	}

	if (!sip_is_gbcode(channel))
	{
		fail_request(id, "failed", "not a channel code");
		return;
	}
	if (!sip_ssrc(sip_realm(), recorded, next_ssrc++, ssrc))
	{
		fail_request(id, "failed",
					 psprintf("the realm \"%s\" is not a 10-digit domain code, which a GB/T 28181 SSRC is built from; "
							  "set vms.sip_realm (or vms.sip_id) accordingly", sip_realm()));
		return;
	}
	sip_random_hex(call_id, 24);
	sip_random_hex(tag, 10);
	/* recordings (GB/T 28181 9.8, 9.9): s=Playback or Download, u=channel:0, t=start end, a=downloadspeed */
	sdp = psprintf("v=0\r\no=%s 0 0 IN IP4 %s\r\ns=%s\r\n%s%s%sc=IN IP4 %s\r\nt=%s %s\r\n"
				   "m=video %d %s 96\r\na=recvonly\r\na=rtpmap:96 PS/90000\r\n%s%s%s%sy=%s\r\n",
				   vms_sip_id, ip, recorded ? mode : "Play", recorded ? "u=" : "", recorded ? channel : "",
				   recorded ? ":0\r\n" : "", ip, recorded ? t_start : "0", recorded ? t_end : "0",
				   port, tcp ? "TCP/RTP/AVP" : "RTP/AVP",
				   recorded && speed && strcmp(mode, "Download") == 0 ? "a=downloadspeed:" : "",
				   recorded && speed && strcmp(mode, "Download") == 0 ? speed : "",
				   recorded && speed && strcmp(mode, "Download") == 0 ? "\r\n" : "",
				   tcp_active ? "a=setup:active\r\na=connection:new\r\n" :
				   tcp_passive ? "a=setup:passive\r\na=connection:new\r\n" : "", ssrc);
	extra = psprintf("Contact: <sip:%s@%s:%d>\r\nSubject: %s:%s,%s:0\r\n",
					 vms_sip_id, sip_local_ip_for(&d->peer), sip_local_port(), channel, ssrc, vms_sip_id);
	tx = send_request_to("INVITE", d, channel, K_INVITE, id, call_id, 1, tag, NULL, extra, "APPLICATION/SDP", sdp);
	if (tx == NULL)
		fail_request(id, "failed", "could not send INVITE");
	else
	{
		tx->tcp_active = tcp_active;
		sip_request_update(id, "sent", psprintf("{\"call_id\":\"%s\",\"ssrc\":\"%s\"}", call_id, ssrc), NULL, NULL);
	}
}

/*
 * ACK a final answer to our INVITE.  For a 2xx it is a request of its own
 * (new branch); for 3xx-6xx it belongs to the INVITE transaction (same
 * branch, RFC 3261 17.1.1.3).
 */
static void
send_ack(Dev *d, const char *target, const char *from_tag, const char *to_tag, const char *call_id,
		 uint32 cseq, const char *branch)
{
	char		fresh[20];
	char		dom[11];

	if (d == NULL || !d->has_peer)
		return;
	if (branch == NULL)
	{
		sip_random_hex(fresh, 16);
		branch = fresh;
	}
	snprintf(dom, sizeof(dom), "%.10s", target);
	sbuf_reset(sip_scratch());
	sbuf_printf(sip_scratch(), "ACK sip:%s@%s:%d SIP/2.0\r\n", target, d->peer.ip, d->peer.port);
	sbuf_printf(sip_scratch(), "Via: SIP/2.0/%s %s:%d;rport;branch=z9hG4bK%s\r\n",
				d->peer.transport == TRANSPORT_TCP ? "TCP" : "UDP", sip_local_ip_for(&d->peer), sip_local_port(), branch);
	sbuf_printf(sip_scratch(), "From: <sip:%s@%s>;tag=%s\r\n", vms_sip_id, sip_realm(), from_tag);
	sbuf_printf(sip_scratch(), "To: <sip:%s@%s>%s%s\r\n", target, dom, to_tag[0] ? ";tag=" : "", to_tag);
	sbuf_printf(sip_scratch(), "Call-ID: %s\r\nCSeq: %u ACK\r\nMax-Forwards: 70\r\nUser-Agent: vms\r\nContent-Length: 0\r\n\r\n",
				call_id, cseq);
	if (!sip_scratch()->overflow)
		sip_send(&d->peer, sip_scratch()->data, sip_scratch()->len);
}

/*
 * Where the device's video is, from its SDP answer (libosip2's parser; the
 * GB/T 28181 y= and f= lines, unknown to it, left out): the video medium's
 * c= (else the session's) and port.  For tcp_active the media server
 * connects there.  False when the answer has none.
 */
static bool
answer_media(const SipIn *in, char *ip, size_t iplen, int *port)
{
	sdp_message_t *sdp = NULL;
	char	   *text;
	size_t		n = 0;
	bool		ok = false;

	if (in->body == NULL || in->body_len == 0 || in->body_len > 8192)
		return false;
	text = palloc(in->body_len + 1);
	for (size_t i = 0; i < in->body_len;)
	{
		size_t		e = i;

		while (e < in->body_len && in->body[e] != '\n')
			e++;
		if (e < in->body_len)
			e++;
		if (!(e - i >= 2 && in->body[i + 1] == '=' && (in->body[i] == 'y' || in->body[i] == 'f')))
		{
			memcpy(text + n, in->body + i, e - i);
			n += e - i;
		}
		i = e;
	}
	text[n] = '\0';
	if (sdp_message_init(&sdp) == 0 && sdp_message_parse(sdp, text) == 0)
	{
		for (int m = 0; !sdp_message_endof_media(sdp, m); m++)
		{
			char	   *media = sdp_message_m_media_get(sdp, m);
			char	   *p = sdp_message_m_port_get(sdp, m);
			char	   *a = sdp_message_c_addr_get(sdp, m, 0);
			struct in_addr v4;

			if (media == NULL || strcmp(media, "video") != 0 || p == NULL)
				continue;
			if (a == NULL || a[0] == '\0')
				a = sdp_message_c_addr_get(sdp, -1, 0);
			*port = strspn(p, "0123456789") == strlen(p) && strlen(p) <= 5 ? atoi(p) : 0;
			if (a && inet_pton(AF_INET, a, &v4) == 1 && *port > 0 && *port <= 65535)
			{
				strlcpy(ip, a, iplen);
				ok = true;
			}
			break;
		}
	}
	if (sdp)
		sdp_message_free(sdp);
	pfree(text);
	return ok;
}

/*
 * Why a device's SDP answer may not say where the media server connects
 * (tcp_active), or NULL: it must be the address the device registered from
 * (so a device cannot point the media server at another host, or at the
 * media server's own loopback), never an unspecified, loopback (unless the
 * device itself is there), multicast, reserved or broadcast address, with a
 * port 1-65535.
 */
static const char *
device_media_refused(const char *ip, int port, const Dev *d)
{
	struct in_addr a;
	uint32		h;

	if (inet_pton(AF_INET, ip, &a) != 1 || port < 1 || port > 65535)
		return "not an IPv4 address and a port 1-65535";
	h = ntohl(a.s_addr);
	if ((h >> 24) == 0 || (h >> 28) >= 14)
		return "an unspecified, multicast, reserved or broadcast address";
	if ((h >> 24) == 127 && strncmp(d->peer.ip, "127.", 4) != 0)
		return "a loopback address";
	if (strcmp(ip, d->peer.ip) != 0)
		return "not the address the device registered from";
	return NULL;
}

/* the 200 to an INVITE: ACK it, keep the dialog for BYE */
static void
invite_answered(OutTx *tx, const SipIn *in)
{
	Dev		   *d = sip_device(tx->dev, false);
	Dialog	   *dlg = NULL;
	char		mip[64];
	int			mport = 0;

	if (d == NULL || !d->has_peer)
	{
		fail_request(tx->request_id, "failed", "device gone before the ACK");
		return;
	}
	send_ack(d, tx->target, tx->from_tag, in->to_tag, tx->call_id, tx->cseq, NULL);

	dlg = free_dialog();
	if (dlg == NULL)
	{
		/* the device streams once ACKed: end the call at once, or it streams unasked */
		bye_unkept(d, tx->target, tx->call_id, tx->from_tag, in->to_tag, tx->cseq);
		fail_request(tx->request_id, "failed",
					 psprintf("too many media sessions (vms.sip_max_media_sessions = %d open): the device's 200 was answered with ACK and BYE",
							  vms_sip_max_media_sessions));
		return;
	}
	memset(dlg, 0, sizeof(*dlg));
	dlg->used = true;
	strlcpy(dlg->call_id, tx->call_id, sizeof(dlg->call_id));
	strlcpy(dlg->from_tag, tx->from_tag, sizeof(dlg->from_tag));
	strlcpy(dlg->to_tag, in->to_tag, sizeof(dlg->to_tag));
	dlg->cseq = tx->cseq;
	strlcpy(dlg->dev, tx->dev, sizeof(dlg->dev));
	strlcpy(dlg->channel, tx->target, sizeof(dlg->channel));
	dlg->started = sip_now;
	if (tx->tcp_active)
	{
		/* the media server will connect where the answer says: only to the device */
		const char *why;
		char	   *reason = NULL;

		if (!answer_media(in, mip, sizeof(mip), &mport))
			reason = pstrdup("tcp_active: the device's SDP answer has no video address and port to connect to");
		else if ((why = device_media_refused(mip, mport, d)) != NULL)
			reason = psprintf("tcp_active: the device's SDP answer names %s:%d to connect to, %s", mip, mport, why);
		if (reason)
		{
			int64		rid = tx->request_id;

			start_bye(0, d, dlg->call_id);	/* ends the call the ACK opened, frees the dialog */
			fail_request(rid, "failed", reason);
			return;
		}
	}
	if (answer_media(in, mip, sizeof(mip), &mport))
		sip_request_update(tx->request_id, "done", NULL,
						   psprintf("{\"call_id\":\"%s\",\"channel\":\"%s\",\"device_media\":{\"ip\":\"%s\",\"port\":%d}}",
									tx->call_id, tx->target, mip, mport), NULL);
	else
		sip_request_update(tx->request_id, "done", NULL,
						   psprintf("{\"call_id\":\"%s\",\"channel\":\"%s\"}", tx->call_id, tx->target), NULL);
}

static void
start_bye(int64 id, Dev *d, const char *call_id)
{
	Dialog	   *dlg = NULL;
	char	   *extra;

	for (int i = 0; call_id && i < MAX_DIALOGS; i++)
		if (dialogs[i].used && strcmp(dialogs[i].call_id, call_id) == 0)
			dlg = &dialogs[i];
	if (dlg == NULL)
	{
		sip_request_update(id, "done", NULL, "{\"note\":\"no such media session\"}", NULL);
		return;
	}
	/* the dialog's own device, whatever device the request named */
	d = sip_device(dlg->dev, false);
	if (d == NULL || !d->has_peer)
	{
		dlg->used = false;
		fail_request(id, "failed", "the device of that media session is gone");
		return;
	}
	extra = psprintf("Contact: <sip:%s@%s:%d>\r\n", vms_sip_id, sip_local_ip_for(&d->peer), sip_local_port());
	if (send_request_to("BYE", d, dlg->channel, K_BYE, id, dlg->call_id, ++dlg->cseq, dlg->from_tag, dlg->to_tag,
						extra, NULL, NULL) == NULL)
		fail_request(id, "failed", "could not send BYE");
	dlg->used = false;
}

/* playback control: INFO carrying a MANSRTSP request (built by vms.playback_control) within the session's dialog */
static void
start_mansrtsp(int64 id, const char *call_id, const char *body)
{
	Dialog	   *dlg = NULL;
	Dev		   *d;
	char	   *extra;

	for (int i = 0; call_id && i < MAX_DIALOGS; i++)
		if (dialogs[i].used && strcmp(dialogs[i].call_id, call_id) == 0)
			dlg = &dialogs[i];
	if (dlg == NULL || body == NULL)
	{
		fail_request(id, "failed", "no such media session");
		return;
	}
	d = sip_device(dlg->dev, false);
	if (d == NULL || !d->has_peer)
	{
		fail_request(id, "failed", "the device of that media session is gone");
		return;
	}
	extra = psprintf("Contact: <sip:%s@%s:%d>\r\n", vms_sip_id, sip_local_ip_for(&d->peer), sip_local_port());
	if (send_request_to("INFO", d, dlg->channel, K_MANSRTSP, id, dlg->call_id, ++dlg->cseq, dlg->from_tag, dlg->to_tag,
						extra, "Application/MANSRTSP", body) == NULL)
		fail_request(id, "failed", "could not send INFO");
}

/*
 * A device ended a media session itself: forget it (1).  0 if the dialog is
 * unknown; -1 if the BYE did not come from the dialog's device as
 * registered (counted and logged, the dialog stays).
 */
int
sip_requests_bye_from_device(const char *call_id, const Peer *peer)
{
	for (int i = 0; i < MAX_DIALOGS; i++)
		if (dialogs[i].used && strcmp(dialogs[i].call_id, call_id) == 0)
		{
			Dev		   *d = sip_device(dialogs[i].dev, false);

			if (d == NULL || !sip_peer_is_device(d, peer))
			{
				if (d)
					sip_wrong_source(d, "BYE", peer);
				return -1;
			}
			dialogs[i].used = false;
			return 1;
		}
	return 0;
}

/* media sessions nobody ended: BYE after ten minutes */
static void
expire_dialogs(void)
{
	for (int i = 0; i < MAX_DIALOGS; i++)
	{
		Dev		   *d;

		if (!dialogs[i].used || sip_now < TimestampTzPlusMilliseconds(dialogs[i].started, 600000))
			continue;
		d = sip_device(dialogs[i].dev, false);
		if (d && d->has_peer)
			start_bye(0, d, dialogs[i].call_id);
		dialogs[i].used = false;
	}
}

void
sip_requests_start(int64 id, const char *device, const char *kind, const char *params)
{
	Dev		   *d = sip_device(device, true);

	if (d == NULL || !d->in_ledger)
	{
		fail_request(id, "failed", "device is not in the ledger");
		return;
	}
	if (!d->registered || !d->online || !d->has_peer)
	{
		fail_request(id, "failed", "device is not online");
		return;
	}
	if (strcmp(kind, "catalog") == 0)
		start_query(id, d, K_CATALOG);
	else if (strcmp(kind, "device_info") == 0)
		start_query(id, d, K_INFO);
	else if (strcmp(kind, "device_status") == 0)
		start_query(id, d, K_STATUS);
	else if (strcmp(kind, "invite") == 0)
	{
		char	   *channel = sip_json_field(params, "channel");
		char	   *ip = sip_json_field(params, "ip");
		char	   *port = sip_json_field(params, "port");
		char	   *transport = sip_json_field(params, "transport");

		if (channel == NULL || ip == NULL || port == NULL)
			fail_request(id, "failed", "INVITE needs channel, ip and port");
		else
			start_invite(id, d, channel, ip, atoi(port), transport, params);
	}
	else if (strcmp(kind, "bye") == 0)
		start_bye(id, d, sip_json_field(params, "call_id"));
	else if (strcmp(kind, "mansrtsp") == 0)
		start_mansrtsp(id, sip_json_field(params, "call_id"), sip_json_field(params, "body"));
	else if (sip_control_kind(kind))
	{
		char	   *body = sip_control_start(id, d, kind, params);
		char		call_id[64];
		char		tag[20];

		sip_random_hex(call_id, 24);
		sip_random_hex(tag, 10);
		if (body && send_request("MESSAGE", d, K_CONTROL, id, call_id, 1, tag, NULL, NULL, body) == NULL)
			sip_control_sent(id, -1);
	}
	else if (strcmp(kind, "subscribe") == 0 || strcmp(kind, "unsubscribe") == 0)
	{
		char	   *event = sip_json_field(params, "event");
		char	   *expires = sip_json_field(params, "expires");

		if (event == NULL)
			fail_request(id, "failed", "no event in the request");
		else
			start_subscribe(id, d, event, expires ? atoi(expires) : 3600, strcmp(kind, "unsubscribe") == 0);
	}
	else
		fail_request(id, "failed", "unknown request kind");
}

/* ---------------------------------------------------------------- answers to our requests */

static long
answer_expires(const SipIn *in, long fallback)
{
	return in->expires >= 0 ? in->expires : fallback;
}

/*
 * An answer to one of our requests.  Only the device the request went to,
 * as registered now (address, port and transport, or its TCP connection),
 * can answer it; an answer from anywhere else is counted, logged and
 * ignored (a response cannot be answered with a 403).
 */
bool
sip_requests_response(const SipIn *in, const Peer *peer)
{
	OutTx	   *tx = NULL;
	Dev		   *d;

	for (int i = 0; i < MAX_TX; i++)
		if (txs[i].used && txs[i].cseq == in->cseq && strcmp(txs[i].call_id, in->call_id) == 0)
		{
			tx = &txs[i];
			break;
		}
	if (tx == NULL)
	{
		/* a 2xx to an INVITE sent again: our ACK was lost, ACK again */
		if (in->status >= 200 && in->status < 300 && strcmp(in->cseq_method, "INVITE") == 0)
			for (int i = 0; i < MAX_DIALOGS; i++)
				if (dialogs[i].used && strcmp(dialogs[i].call_id, in->call_id) == 0)
				{
					d = sip_device(dialogs[i].dev, false);
					if (d && sip_peer_is_device(d, peer))
						send_ack(d, dialogs[i].channel, dialogs[i].from_tag,
								 dialogs[i].to_tag, dialogs[i].call_id, 1, NULL);
					else if (d)
						sip_wrong_source(d, "a response", peer);
					return false;
				}
		/* a 2xx to an INVITE we gave up on: ACK it and end it at once */
		if (in->status >= 200 && in->status < 300 && strcmp(in->cseq_method, "INVITE") == 0)
			for (int i = 0; i < MAX_GIVEN_UP; i++)
				if (given_up[i].call_id[0] && strcmp(given_up[i].call_id, in->call_id) == 0)
				{
					GivenUp    *g = &given_up[i];
					Dialog	   *dlg = NULL;

					d = sip_device(g->dev, false);
					if (d == NULL || !sip_peer_is_device(d, peer))
					{
						if (d)
							sip_wrong_source(d, "a response", peer);
						return false;
					}
					send_ack(d, g->channel, g->from_tag, in->to_tag, g->call_id, g->cseq, NULL);
					dlg = free_dialog();
					if (dlg == NULL)
						bye_unkept(d, g->channel, g->call_id, g->from_tag, in->to_tag, g->cseq);
					else
					{
						memset(dlg, 0, sizeof(*dlg));
						dlg->used = true;
						strlcpy(dlg->call_id, g->call_id, sizeof(dlg->call_id));
						strlcpy(dlg->from_tag, g->from_tag, sizeof(dlg->from_tag));
						strlcpy(dlg->to_tag, in->to_tag, sizeof(dlg->to_tag));
						dlg->cseq = g->cseq;
						strlcpy(dlg->dev, g->dev, sizeof(dlg->dev));
						strlcpy(dlg->channel, g->channel, sizeof(dlg->channel));
						dlg->started = sip_now;
						start_bye(0, d, g->call_id);
					}
					g->call_id[0] = '\0';
					return true;
				}
		return false;			/* a late retransmission of an answer */
	}
	d = sip_device(tx->dev, false);
	if (d == NULL || !sip_peer_is_device(d, peer))
	{
		if (d)
			sip_wrong_source(d, "a response", peer);
		return false;
	}
	if (in->status < 200)
	{
		tx->provisional = true;
		tx->next_retx = DT_NOEND;
		return true;
	}

	if (tx->kind == K_INVITE)
	{
		if (in->status < 300)
			invite_answered(tx, in);
		else
		{
			char	   *why = in->msg ? osip_message_get_reason_phrase(in->msg) : NULL;
			SBuf		res;

			send_ack(sip_device(tx->dev, false), tx->target, tx->from_tag, in->to_tag, tx->call_id, tx->cseq, tx->branch);
			/* the device's status and reason phrase are kept (result) and said (error) */
			if (why && (strlen(why) > 100 || !pg_verifymbstr(why, strlen(why), true)))
				why = NULL;
			sbuf_init(&res, 512);
			sbuf_printf(&res, "{\"status\":%d,\"reason\":", in->status);
			sbuf_json_string(&res, why ? why : "");
			sbuf_puts(&res, "}");
			if (tx->request_id > 0)
				sip_request_update(tx->request_id, "failed", NULL, res.data,
								   psprintf("device answered %d%s%s to INVITE", in->status, why && why[0] ? " " : "",
											why ? why : ""));
			sbuf_free(&res);
		}
	}
	else if (tx->kind == K_CONTROL)
		sip_control_sent(tx->request_id, in->status);
	else if (tx->kind == K_BYE || tx->kind == K_MANSRTSP)
	{
		if (tx->request_id > 0)
			sip_request_update(tx->request_id, in->status < 300 ? "done" : "failed", NULL,
							   psprintf("{\"status\":%d}", in->status), NULL);
	}
	else if (tx->kind == K_SUBSCRIBE || tx->kind == K_UNSUBSCRIBE)
	{
		Sub		   *s = tx->sub >= 0 && tx->sub < n_subs ? &subs[tx->sub] : NULL;

		if (s && s->used)
		{
			s->in_flight = false;
			if (in->status < 300 && tx->kind == K_UNSUBSCRIBE)
			{
				record_sub(s, "ended", s->request_id, NULL);
				s->used = false;
			}
			else if (in->status < 300)
			{
				long		exp = answer_expires(in, s->expires);

				s->active = true;
				if (in->to_tag[0])
					strlcpy(s->to_tag, in->to_tag, sizeof(s->to_tag));
				s->expires = (int) Max(60, Min(exp, 86400));
				/* renew ahead of the end: a fifth of the time, at most a minute */
				s->renew_at = TimestampTzPlusMilliseconds(sip_now, (int64) s->expires * 1000 - Min(60000L, s->expires * 200L));
				record_sub(s, "active", s->request_id, NULL);
			}
			else
			{
				char	   *err = psprintf("device answered %d", in->status);

				s->active = false;
				s->renew_at = TimestampTzPlusMilliseconds(sip_now, 60000);
				record_sub(s, "failed", s->request_id, err);
			}
			s->request_id = 0;
		}
	}
	else if (in->status >= 300)
	{
		/* the device refused the query */
		for (int i = 0; i < MAX_QUERIES; i++)
			if (queries[i].used && queries[i].request_id == tx->request_id)
				free_query(&queries[i]);
		fail_request(tx->request_id, "failed", psprintf("device answered %d", in->status));
	}
	free_tx(tx);
	return true;
}

bool
sip_requests_notify(const SipIn *in, Dev *d, void *arg)
{
	for (int i = 0; i < n_subs; i++)
		if (subs[i].used && strcmp(subs[i].call_id, in->call_id) == 0)
			return true;
	return false;
}

/* ---------------------------------------------------------------- timers */

void
sip_requests_tick(void)
{
	expire_dialogs();
	sip_control_tick();
	for (int i = 0; i < MAX_TX; i++)
	{
		OutTx	   *tx = &txs[i];

		if (!tx->used)
			continue;
		if (sip_now >= TimestampTzPlusMilliseconds(tx->sent_at, TX_GIVE_UP_MS))
		{
			if (tx->kind == K_SUBSCRIBE || tx->kind == K_UNSUBSCRIBE)
			{
				Sub		   *s = tx->sub >= 0 && tx->sub < n_subs ? &subs[tx->sub] : NULL;

				if (s && s->used)
				{
					s->in_flight = false;
					s->active = false;
					s->renew_at = TimestampTzPlusMilliseconds(sip_now, 60000);
					record_sub(s, "failed", s->request_id, "no answer to SUBSCRIBE");
					s->request_id = 0;
				}
			}
			else if (tx->kind == K_INVITE || tx->kind == K_BYE)
			{
				fail_request(tx->request_id, "timeout", psprintf("no final answer to %s", tx->kind == K_INVITE ? "INVITE" : "BYE"));
				if (tx->kind == K_INVITE)
				{
					GivenUp    *g = &given_up[next_given_up++ % MAX_GIVEN_UP];

					strlcpy(g->call_id, tx->call_id, sizeof(g->call_id));
					strlcpy(g->from_tag, tx->from_tag, sizeof(g->from_tag));
					strlcpy(g->dev, tx->dev, sizeof(g->dev));
					strlcpy(g->channel, tx->target, sizeof(g->channel));
					g->cseq = tx->cseq;
				}
			}
			else if (tx->kind == K_CONTROL)
				sip_control_sent(tx->request_id, 0);
			else if (tx->kind == K_MANSRTSP)
				fail_request(tx->request_id, "timeout", "no final answer to INFO");
			else if (!tx->provisional)
			{
				for (int k = 0; k < MAX_QUERIES; k++)
					if (queries[k].used && queries[k].request_id == tx->request_id && queries[k].received == 0 &&
						queries[k].pages == 0)
					{
						free_query(&queries[k]);
						fail_request(tx->request_id, "timeout", "no answer to the MESSAGE");
					}
			}
			free_tx(tx);
			continue;
		}
		if (sip_now >= tx->next_retx)
		{
			sip_send(&tx->peer, tx->msg, tx->len);
			tx->retx_ms = Min(tx->retx_ms * 2, 4000);
			tx->next_retx = TimestampTzPlusMilliseconds(sip_now, tx->retx_ms);
		}
	}

	for (int i = 0; i < MAX_QUERIES; i++)
	{
		PendingQuery	   *q = &queries[i];

		if (!q->used)
			continue;
		if (q->pages > 0 && q->kind == K_CATALOG &&
			sip_now >= TimestampTzPlusMilliseconds(q->last_page, (int64) vms_sip_page_timeout * 1000))
			finish_catalog(q, "partial", psprintf("%ld of %ld items arrived; the device stopped sending pages",
												  (long) q->received, q->sum_num));
		else if (q->pages == 0 && sip_now >= q->deadline)
		{
			fail_request(q->request_id, "timeout", "no answer within vms.sip_catalog_timeout");
			free_query(q);
		}
	}

	for (int i = 0; i < n_subs; i++)
	{
		Sub		   *s = &subs[i];
		Dev		   *d;

		if (!s->used || s->in_flight || s->renew_at == 0 || sip_now < s->renew_at)
			continue;
		d = sip_device(s->dev, false);
		if (d == NULL || !d->online || !d->has_peer)
		{
			s->renew_at = TimestampTzPlusMilliseconds(sip_now, 60000);
			continue;
		}
		send_subscribe(s, d, s->expires, K_SUBSCRIBE);
	}
}

/* after a start: keep renewing what the previous worker subscribed (as new dialogs) */
void
sip_requests_load_subscriptions(void)
{
	int			rc;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	rc = sip_sql_run(SIP_SQL_SUBSCRIPTIONS, NULL, NULL, true, 0);
	for (uint64 i = 0; rc == SPI_OK_SELECT && i < SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		char	   *code = SPI_getvalue(t, td, 1);
		char	   *event = SPI_getvalue(t, td, 2);
		char	   *expires = SPI_getvalue(t, td, 3);
		MemoryContext old;
		Sub		   *s;

		/* NOT NULL columns of vms.sip_subscription; a row without them is skipped, not dereferenced */
		if (code == NULL || event == NULL || expires == NULL)
			continue;
		old = MemoryContextSwitchTo(vms_worker_cxt);
		s = find_sub(code, event, true);
		MemoryContextSwitchTo(old);
		if (s == NULL)
			continue;
		s->expires = atoi(expires);
		s->active = false;		/* the old dialog's tags are gone: a new one */
		/* give devices time to register again first */
		s->renew_at = TimestampTzPlusMilliseconds(sip_now, 5000);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

int
sip_requests_open(void)
{
	int			n = 0;

	for (int i = 0; i < MAX_QUERIES; i++)
		n += queries[i].used;
	return n + sip_control_open();
}

void
sip_requests_reset(void)
{
	for (int i = 0; i < MAX_TX; i++)
		if (txs[i].used)
			free_tx(&txs[i]);
}

/* ---------------------------------------------------------------- the queue */

/* after a start: requests a previous worker left in flight are ended (vms._sip_recover_requests) */
void
sip_requests_recover(void)
{
	vms_worker_begin_tx("vms sip: recovering requests");
	sip_sql_run(SIP_SQL_RECOVER_REQUESTS, NULL, NULL, false, 0);
	vms_worker_end_tx();
}

/* queued requests from SQL: claimed in one short transaction, then started outside it */
void
sip_requests_claim(void)
{
	int64	   *ids;
	char	  **devs,
			  **kinds,
			  **params;
	int			n;

	vms_worker_begin_tx("vms sip: claiming requests");
	if (sip_sql_run(SIP_SQL_CLAIM_REQUESTS, NULL, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "vms sip: could not claim requests");
	n = (int) SPI_processed;
	/* in the caller's context: SPI's own is gone after end_tx() */
	ids = MemoryContextAlloc(vms_tx_caller_cxt, sizeof(int64) * (n + 1));
	devs = MemoryContextAlloc(vms_tx_caller_cxt, sizeof(char *) * (n + 1));
	kinds = MemoryContextAlloc(vms_tx_caller_cxt, sizeof(char *) * (n + 1));
	params = MemoryContextAlloc(vms_tx_caller_cxt, sizeof(char *) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;

		char	   *id = SPI_getvalue(t, d, 1);
		char	   *dev = SPI_getvalue(t, d, 2);
		char	   *kind = SPI_getvalue(t, d, 3);
		char	   *par = SPI_getvalue(t, d, 4);

		/* id, device and kind are NOT NULL columns; params may be NULL: an empty object */
		if (id == NULL || dev == NULL || kind == NULL)
			elog(ERROR, "vms sip: a claimed request has a NULL id, device or kind");
		ids[i] = atoll(id);
		devs[i] = MemoryContextStrdup(vms_tx_caller_cxt, dev);
		kinds[i] = MemoryContextStrdup(vms_tx_caller_cxt, kind);
		params[i] = MemoryContextStrdup(vms_tx_caller_cxt, par ? par : "{}");
	}
	vms_worker_end_tx();
	for (int i = 0; i < n; i++)
	{
		MemoryContext cxt = CurrentMemoryContext;

		/* a request that errors fails alone; the others still go out */
		PG_TRY();
		{
			sip_requests_start(ids[i], devs[i], kinds[i], params[i]);
		}
		PG_CATCH();
		{
			sip_request_update(ids[i], "failed", NULL, NULL, vms_worker_take_error(cxt));
		}
		PG_END_TRY();
	}
}
