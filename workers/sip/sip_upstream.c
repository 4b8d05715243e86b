/*
 * sip_upstream.c — the client role (sip_upstream.h): vms registering to
 * upper GB/T 28181 platforms and answering their queries.
 *
 * Per upstream a small state machine, the same as vms.sip_upstream_transition:
 *
 *   unregistered ─┐          ┌──────────── 200 ───────────┐
 *   failing ──────┴─ due ──▶ registering                   ▼
 *       ▲                        │ 401: answer the challenge; registered
 *       │                        │ 401 to our answer, 4xx-6xx,   │ refresh at 4/5 of the grant,
 *       └──── backoff 5 s .. 5 min, doubling ◀─ no answer ──────┘ keepalive every interval;
 *                                                  keepalive_count of them unanswered, or refused
 *   disabled ◀──▶ (vms.sip_alter_upstream(enabled => ...))
 *
 * Every change of state (and every answered keepalive) is a snapshot queued
 * for vms._sip_upstream_flush at the next flush, in order, so no transition
 * is lost between two flushes.  Answers an upper platform did not ask for,
 * or from elsewhere, are ignored and logged; nothing it sends stops the
 * worker.  Query answers are built in SQL (vms._sip_upstream_answer) and
 * sent as MESSAGEs, at most PAGE_WINDOW unacknowledged at a time.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <osipparser2/sdp_message.h>

#include "access/xact.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "../../extension/vms.h"
#include "manscdp.h"
#include "sip_control.h"
#include "sip_devices.h"
#include "sip_digest.h"
#include "sip_net.h"
#include "sip_sql.h"
#include "sip_upstream.h"
#include "../worker_tx.h"

#define MAX_UPSTREAMS 32
#define MAX_UP_TX 256
#define MAX_PENDING 64
#define TX_GIVE_UP_MS 16000
#define PAGE_WINDOW 4
#define BACKOFF_FIRST_S 5
#define BACKOFF_MAX_S 300
#define MAX_SNAPSHOTS_BYTES (1 << 20)

/* RFC 3261 17.1.1.1 timers (UDP): T1, T2, and 64*T1 (Timer H, and the 2xx's own limit, 13.3.1.4) */
#define T1_MS 500
#define T2_MS 4000
#define TIMER_H_MS (64 * T1_MS)
/* Timer I (17.2.1): a non-2xx answer's transaction lingers T4 after its ACK over UDP (0 over TCP) */
#define T4_MS 5000

/* a Via branch vms keeps to match a CANCEL or an ACK (RFC 3261 allows any token; other headers are bounded alike) */
#define MAX_BRANCH 256

typedef enum UpState
{
	US_UNREGISTERED, US_REGISTERING, US_REGISTERED, US_FAILING, US_DISABLED
} UpState;

static const char *const state_names[] = {"unregistered", "registering", "registered", "failing", "disabled"};

typedef enum UpKind
{
	UK_REGISTER, UK_UNREGISTER, UK_KEEPALIVE, UK_ANSWER, UK_NOTIFY,
	UK_RELAY_INVITE,			/* to the device that owns a channel the upper platform INVITEd */
	UK_RELAY_BYE,				/* ending such a call, on either side */
	UK_RELAY_CANCEL,			/* CANCEL of the relayed INVITE (same branch), when the relay gives it up */
	UK_RELAY_CTL				/* a control or query of the upper platform, to the device */
} UpKind;

/*
 * An INVITE from an upper platform relayed to the device that owns the
 * channel: signalling only, the media flows from the device to the address
 * in the upper platform's SDP.  The upper platform's INVITE is kept as it
 * came, to answer it (and its retransmissions) when the device has.
 */
#define MAX_RELAYS 64
typedef struct Relay
{
	bool		used;
	int			up;
	uint32		up_gen;			/* the upstream's generation (Upstream.gen) when it came */
	uint32		serial;			/* this relay's own number: a queued lookup is for it, not the slot's next */
	char	   *raw;			/* the upper platform's INVITE */
	size_t		raw_len;
	Peer		upper_peer;
	char		up_call_id[128];
	char		up_our_tag[16];
	char		up_their_tag[64];
	char		up_from_user[48];
	uint32		up_cseq;		/* the upper platform's INVITE: its CSeq number and top Via branch (a CANCEL's match) */
	char		up_branch[MAX_BRANCH];
	char		presented[24];	/* the code the upper platform asked for */
	char		channel[21];	/* the ledger's */
	char		device[21];
	char		subject[256];
	char	   *final;			/* the final answer sent to the upper platform, for its retransmissions */
	size_t		final_len;
	TimestampTz final_at;
	TimestampTz final_next;		/* over UDP, until the upper platform's ACK: its next retransmission (0: none) */
	int			final_interval_ms;	/* T1 doubling to T2 (17.2.1 Timer G; 13.3.1.4 for a 2xx) */
	TimestampTz free_at;		/* a non-2xx final answer ACKed: the relay is freed then (Timer I), 0: not ACKed */
	bool		established;
	bool		dev_invited;	/* the INVITE went to the device (branch dev_branch, CSeq 1) */
	bool		cancelling;		/* given up (CANCEL, timeout, upstream dropped or disabled): the device's answer is ended, not relayed */
	bool		dev_provisional;	/* the device answered its INVITE 1xx: a CANCEL may go (RFC 3261 9.1) */
	bool		cancel_deferred;	/* given up before that: the CANCEL goes at the first 1xx */
	char		ended_by[12];	/* why, for the audit (queued once the channel is known) */
	char		dev_branch[20];
	char		dev_call_id[32];
	char		dev_from_tag[16];
	char		dev_to_tag[64];
	Peer		dev_peer;
	TimestampTz started;
	char		media[200];		/* the SDP's connection addresses (c=), comma-separated */
	char		refusal[128];	/* why the audit step refused it (media outside media_nets) */
} Relay;

/* a control or query of an upper platform relayed to a device (see "relayed controls and queries") */
#define MAX_CTLS 64
#define CTL_IDLE_MS 30000

typedef struct CtlRelay
{
	bool		used;
	bool		looked_up;
	bool		sent;			/* to the device */
	int			up;
	uint32		up_gen;			/* the upstream's generation (Upstream.gen) when it came */
	char		up_sn[16];
	char		our_sn[16];
	char		cmd[32];		/* the CmdType the worker read (its first) */
	char		root[16];
	char		presented[24];
	char		channel[21];
	char		device[21];
	char		source[64];
	char		refusal[128];
	char	   *request;		/* the body as JSON (duplicate keys kept), for the check and the audit */
	char	   *body;			/* the command's elements SQL rebuilt from the allowed fields */
	char	   *refused;		/* the answer when refused or unreachable */
	size_t		refused_len;
	long		items;			/* answered so far (RecordInfo, PresetQuery pages) */
	TimestampTz last;
	struct CtlAnswer *answers;	/* the device's answers (parsed, as JSON), to rebuild for the upper platform */
	struct CtlAnswer *answers_tail;
	bool		done;			/* the device answered all of it: freed once its answers went up */
} CtlRelay;

/* a device's answer to a relayed control or query, as the worker parsed it, waiting to be rebuilt in SQL */
typedef struct CtlAnswer
{
	struct CtlAnswer *next;
	size_t		len;
	char		json[FLEXIBLE_ARRAY_MEMBER];
} CtlAnswer;

/* at most this much of devices' answers waits for the next round (beyond: dropped, logged) */
#define MAX_CTL_ANSWER_BYTES (8 << 20)
static size_t ctl_answer_bytes = 0;


/*
 * A Catalog subscription's share is compared with what was told when a
 * change is queued (vms.sip_share_change wakes the worker), at most every
 * CHANGE_GAP_MS, and every reconcile_interval whatever the queue says
 * (changes no trigger sees, such as a tag's subtree); alarms are looked for
 * every ALARM_CHECK_MS and when a change is queued.
 */
#define CHANGE_GAP_MS 200
#define ALARM_CHECK_MS 2000

/*
 * MobilePosition: a compare at most every POSITION_GAP_MS, however often
 * positions are reported (each report wakes the worker); one woken by a
 * report, or by a change held back falling due, looks only at the channels
 * of the devices that reported since and those held back; the periodic one
 * (every reconcile_interval, at least the Interval) at the whole share.
 */
#define POSITION_GAP_MS 1000

/* the upper platform's subscriptions: one dialog per event */
typedef enum SubKind
{
	SUB_CATALOG, SUB_ALARM, SUB_POSITION, SUB_KINDS
} SubKind;

static const char *const sub_events[] = {"Catalog", "Alarm", "MobilePosition"};

typedef struct UpSub
{
	bool		active;
	char		call_id[128];
	char		their_tag[64];
	char		our_tag[16];
	uint32		cseq;
	TimestampTz expires_at;
	char		filter[1024];	/* the SUBSCRIBE body as JSON (Alarm: priorities, methods), else empty */
	int			interval_s;		/* MobilePosition: its Interval */
	TimestampTz next_check;
	TimestampTz last_check;
	bool		pending;		/* a check is queued */
	bool		fresh;			/* MobilePosition: a new subscription, every latest position is sent */
	TimestampTz next_whole;		/* MobilePosition: the next compare of the whole share */
	int64		checks;			/* MobilePosition: compares made (in the state's subscriptions, "checks") */
} UpSub;

/* a MANSCDP body waiting to go to an upper platform */
typedef struct OutPage
{
	struct OutPage *next;
	int			sub;			/* a NOTIFY in that subscription's dialog (SubKind), else -1: a MESSAGE */
	size_t		len;
	char		data[FLEXIBLE_ARRAY_MEMBER];
} OutPage;

typedef struct Upstream
{
	bool		used;
	uint32		gen;			/* a new one for every upstream a slot holds: relays are of the one they came from */
	bool		seen;			/* in the last load */
	bool		enabled;
	char		name[64];
	char		host[64];
	int			port;
	char		platform_id[21];
	char		password[257];
	bool		password_ok;
	char		local_id[21];
	char		realm[65];
	int			expires;
	int			ka_interval;
	int			ka_count;
	int			page_size;
	Peer		peer;

	UpState		state;
	TimestampTz registered_at;
	TimestampTz expires_at;
	TimestampTz refresh_at;
	TimestampTz last_ka_ok;
	TimestampTz next_attempt;
	TimestampTz next_ka;
	int			missed;
	int			failures;
	int			last_status;
	char		last_error[200];

	/* the registration's dialog */
	char		call_id[64];
	char		from_tag[24];
	uint32		cseq;
	bool		reg_in_flight;
	bool		ka_in_flight;

	/* over TCP: a connection being opened (it does not block), or why opening one failed (failed next tick) */
	bool		tcp_connecting;
	char		conn_failed[160];

	/* the last challenge */
	bool		have_chal;
	char		nonce[256];
	char		chal_realm[128];
	char		opaque[256];
	DigestAlg	alg;
	bool		qop;
	uint32		nc;
	int			challenges;		/* answered in this registration */

	OutPage	   *pages;
	OutPage	   *pages_tail;
	int			pages_in_flight;

	/* the upper platform's subscriptions (Catalog, Alarm, MobilePosition) */
	UpSub		subs[SUB_KINDS];
	int			push_interval;	/* s between full Catalog pushes; 0: never */
	int			reconcile_ms;	/* a subscribed share is compared this often besides on a change */
	TimestampTz next_push;

	/* alarms of shared channels forwarded */
	TimestampTz next_alarm_check;
	bool		alarm_pending;
} Upstream;

typedef struct UpTx
{
	bool		used;
	int			up;
	int			relay;			/* UK_RELAY_*: its Relay; UK_RELAY_CTL: its CtlRelay */
	int			sub;			/* UK_NOTIFY: its subscription */
	Peer		peer;			/* where it went */
	char		branch[20];
	UpKind		kind;
	bool		with_auth;
	char		call_id[128];
	uint32		cseq;
	char	   *msg;
	size_t		len;
	TimestampTz sent_at;
	TimestampTz next_retx;
	int			retx_ms;
	int			give_up_ms;
} UpTx;

typedef struct PendingAnswer
{
	bool		used;
	bool		changes;		/* the subscription's changes (baseline: its start), not a query */
	bool		push;			/* with changes: the whole share (the periodic full push) */
	int			relay;			/* > 0: the channel of relay (relay - 1) to look up */
	uint32		relay_serial;	/* with relay: its serial (Relay.serial) when queued */
	int			ctl;			/* > 0: the channel of control relay (ctl - 1) to look up */
	bool		alarms;			/* the new alarms of shared channels */
	bool		positions;		/* the new positions of shared channels */
	bool		whole;			/* with positions: every shared channel, not only those reported since */
	bool		baseline;
	int			up;
	char		name[64];
	char		cmd[32];
	char		sn[16];
	char		device_id[24];
	/* a relayed call ended: audited */
	bool		bye;
	char		by[12];
	char		channel[21];
	char		media[200];
	char		source[64];
} PendingAnswer;

/* queries lately taken, so that a retransmission is answered 200 but not answered again */
#define SEEN_QUERIES 128
typedef struct SeenQuery
{
	char		call_id[128];
	uint32		cseq;
	TimestampTz at;
} SeenQuery;

static Upstream ups[MAX_UPSTREAMS];
static Relay relays[MAX_RELAYS];
static SeenQuery seen_queries[SEEN_QUERIES];
static int	seen_next = 0;
static UpTx txs[MAX_UP_TX];
static PendingAnswer pending[MAX_PENDING];
static SBuf snapshots;			/* JSON objects, comma-separated, for the next flush */
static bool snapshots_ready = false;
static uint32 next_sn = 1;
static uint32 up_generation = 0;
static uint32 relay_serial = 0;

static PendingAnswer *new_pending(Upstream *u);
static void drop_relays(int up, const char *by);
static CtlRelay ctls[MAX_CTLS];
static uint32 ctl_serial = 0;
static void ctl_refuse(CtlRelay *c, const char *why);

/* ---------------------------------------------------------------- helpers */

/* a quoted-string parameter without its quotes; false when it holds what a header must not */
static bool
param(const char *s, char *buf, size_t len)
{
	size_t		n;

	buf[0] = '\0';
	if (s == NULL)
		return true;
	n = strlen(s);
	if (n >= 2 && s[0] == '"' && s[n - 1] == '"')
	{
		s++;
		n -= 2;
	}
	if (n >= len)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] == '"' || s[i] == '\\' || s[i] == '\r' || s[i] == '\n' || (unsigned char) s[i] < 0x20)
			return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return true;
}

static int
backoff_s(int failures)
{
	int			s = BACKOFF_FIRST_S;

	for (int i = 1; i < failures && s < BACKOFF_MAX_S; i++)
		s *= 2;
	return Min(s, BACKOFF_MAX_S);
}

/* ---------------------------------------------------------------- states */

/* the upstream as it is now, for vms._sip_upstream_flush, in order */
static void
snapshot(Upstream *u, const char *cause)
{
	SBuf		one;

	if (!snapshots_ready)
	{
		sbuf_init(&snapshots, (size_t) 2 * MAX_SNAPSHOTS_BYTES);
		snapshots_ready = true;
	}
	sbuf_init(&one, 4096);
	sbuf_puts(&one, "{\"u\":");
	sbuf_json_string(&one, u->name);
	sbuf_printf(&one, ",\"st\":\"%s\",\"at\":%.3f,\"mk\":%d,\"f\":%d", state_names[u->state], sip_epoch(sip_now),
				u->missed, u->failures);
	if (cause)
	{
		sbuf_puts(&one, ",\"c\":");
		sbuf_json_string(&one, cause);
	}
	if (u->registered_at)
		sbuf_printf(&one, ",\"ra\":%.3f", sip_epoch(u->registered_at));
	if (u->expires_at)
		sbuf_printf(&one, ",\"ex\":%.3f", sip_epoch(u->expires_at));
	if (u->last_ka_ok)
		sbuf_printf(&one, ",\"ka\":%.3f", sip_epoch(u->last_ka_ok));
	if (u->last_status)
		sbuf_printf(&one, ",\"ls\":%d", u->last_status);
	if (u->last_error[0])
	{
		sbuf_puts(&one, ",\"le\":");
		sbuf_json_string(&one, u->last_error);
	}
	if ((u->state == US_FAILING || u->state == US_UNREGISTERED) && u->next_attempt)
		sbuf_printf(&one, ",\"na\":%.3f", sip_epoch(u->next_attempt));
	sbuf_puts(&one, ",\"sb\":{");
	for (int k = 0, n = 0; k < SUB_KINDS; k++)
	{
		UpSub	   *sb = &u->subs[k];

		if (!sb->active)
			continue;
		sbuf_printf(&one, "%s\"%s\":{\"expires_at\":%.3f", n++ ? "," : "", sub_events[k], sip_epoch(sb->expires_at));
		if (k == SUB_POSITION)
			sbuf_printf(&one, ",\"interval\":%d,\"checks\":" INT64_FORMAT ",\"checks_at\":%.3f", sb->interval_s, sb->checks,
						sip_epoch(sip_now));
		sbuf_printf(&one, ",\"cseq\":%u,\"call_id\":", sb->cseq);
		sbuf_json_string(&one, sb->call_id);
		sbuf_puts(&one, ",\"their_tag\":");
		sbuf_json_string(&one, sb->their_tag);
		sbuf_puts(&one, ",\"our_tag\":");
		sbuf_json_string(&one, sb->our_tag);
		if (sb->filter[0])
		{
			sbuf_puts(&one, ",\"filter\":");
			sbuf_puts(&one, sb->filter);
		}
		sbuf_puts(&one, "}");
	}
	sbuf_puts(&one, "}}");
	if (one.overflow || snapshots.len + one.len + 1 > MAX_SNAPSHOTS_BYTES)
	{
		sip_count(C_DROPPED, 1);
		sip_log_limited(LOG_OTHER, "upstream \"%s\": a state record was dropped, too many wait for the database", u->name);
	}
	else
	{
		if (snapshots.len > 0)
			sbuf_append(&snapshots, ",", 1);
		sbuf_append(&snapshots, one.data, one.len);
	}
	sbuf_free(&one);
}

static void
set_state(Upstream *u, UpState st, const char *cause)
{
	if (u->state != st)
		ereport(LOG, (errmsg("vms sip: upstream \"%s\" %s -> %s: %s", u->name, state_names[u->state], state_names[st],
							 cause ? cause : "")));
	u->state = st;
	snapshot(u, cause);
}

static void
free_pages(Upstream *u)
{
	while (u->pages)
	{
		OutPage	   *p = u->pages;

		u->pages = p->next;
		pfree(p);
	}
	u->pages_tail = NULL;
}

static void
free_tx(UpTx *tx)
{
	if (tx->msg)
		pfree(tx->msg);
	tx->msg = NULL;
	tx->used = false;
}

/* the upstream's transactions end (it failed, changed or went) */
static void
drop_txs(int up, bool answers_too)
{
	for (int i = 0; i < MAX_UP_TX; i++)
		if (txs[i].used && txs[i].up == up && (answers_too || txs[i].kind != UK_ANSWER) &&
			txs[i].kind != UK_RELAY_INVITE && txs[i].kind != UK_RELAY_BYE && txs[i].kind != UK_RELAY_CANCEL)
			free_tx(&txs[i]);		/* (a relayed call's transactions are the device's: its relay ends them) */
	ups[up].reg_in_flight = false;
	ups[up].ka_in_flight = false;
	if (answers_too)
		ups[up].pages_in_flight = 0;
}

/* a registration that failed: back off, then try again */
static void
fail(Upstream *u, int status, const char *why)
{
	u->failures++;
	u->last_status = status;
	strlcpy(u->last_error, why, sizeof(u->last_error));
	u->next_attempt = TimestampTzPlusMilliseconds(sip_now, (int64) backoff_s(u->failures) * 1000);
	u->have_chal = false;
	for (int k = 0; k < SUB_KINDS; k++)
		u->subs[k].active = false;
	drop_txs((int) (u - ups), true);
	free_pages(u);
	sip_log_limited(LOG_OTHER, "upstream \"%s\": %s; registering again in %d s", u->name, why, backoff_s(u->failures));
	set_state(u, US_FAILING, why);
}

/* ---------------------------------------------------------------- sending */

/*
 * A request to the upper platform, remembered for its answer and resent
 * over UDP (0.5, 1, 2, 4 s) until answered or given up.
 */
static UpTx *
send_request(Upstream *u, UpKind kind, const char *method, const char *ruri, const char *to_uri, const char *to_tag,
			 const char *call_id, const char *from_tag, uint32 cseq, const char *extra, const char *body, size_t body_len,
			 bool with_auth)
{
	SBuf	   *out = sip_scratch();
	UpTx	   *tx = NULL;
	char		branch[20];

	for (int i = 0; i < MAX_UP_TX; i++)
		if (!txs[i].used)
		{
			tx = &txs[i];
			break;
		}
	if (tx == NULL)
	{
		sip_log_limited(LOG_OTHER, "upstream \"%s\": too many requests in flight; %s not sent", u->name, method);
		return NULL;
	}
	/*
	 * Over TCP: the connection vms opens to the upper platform (again, when
	 * it was closed).  The connect does not block: what is sent meanwhile
	 * waits for it.  One that fails is a failure of the upstream (the next
	 * tick fails it: registering again after the backoff), and nothing is
	 * sent or connected until then: at most one attempt a backoff.
	 */
	if (u->peer.transport == TRANSPORT_TCP && !sip_net_conn_alive(&u->peer))
	{
		if (u->conn_failed[0])
			return NULL;
		if (!sip_net_connect(&u->peer))
		{
			snprintf(u->conn_failed, sizeof(u->conn_failed), "could not connect over TCP: %s", sip_net_conn_error(&u->peer));
			return NULL;
		}
		u->tcp_connecting = sip_net_conn_connecting(&u->peer);
	}
	sip_random_hex(branch, 16);
	sbuf_reset(out);
	sbuf_printf(out, "%s %s SIP/2.0\r\n", method, ruri);
	sbuf_printf(out, "Via: SIP/2.0/%s %s:%d;rport;branch=z9hG4bK%s\r\n", u->peer.transport == TRANSPORT_TCP ? "TCP" : "UDP",
				sip_local_ip_for(&u->peer), sip_local_port(), branch);
	sbuf_printf(out, "From: <sip:%s@%.10s>;tag=%s\r\n", u->local_id, u->local_id, from_tag);
	sbuf_printf(out, "To: <%s>%s%s\r\n", to_uri, to_tag ? ";tag=" : "", to_tag ? to_tag : "");
	sbuf_printf(out, "Call-ID: %s\r\nCSeq: %u %s\r\n", call_id, cseq, method);
	sbuf_puts(out, "Max-Forwards: 70\r\nUser-Agent: vms\r\n");
	if (extra)
		sbuf_puts(out, extra);
	if (body)
	{
		sbuf_printf(out, "Content-Type: Application/MANSCDP+xml\r\nContent-Length: %zu\r\n\r\n", body_len);
		sbuf_append(out, body, body_len);
	}
	else
		sbuf_puts(out, "Content-Length: 0\r\n\r\n");
	if (out->overflow)
		return NULL;

	memset(tx, 0, sizeof(*tx));
	tx->used = true;
	tx->up = (int) (u - ups);
	tx->kind = kind;
	tx->with_auth = with_auth;
	tx->peer = u->peer;
	strlcpy(tx->branch, branch, sizeof(tx->branch));
	strlcpy(tx->call_id, call_id, sizeof(tx->call_id));
	tx->cseq = cseq;
	tx->msg = MemoryContextAlloc(vms_worker_cxt, out->len);
	memcpy(tx->msg, out->data, out->len);
	tx->len = out->len;
	tx->sent_at = sip_now;
	tx->retx_ms = 500;
	tx->next_retx = u->peer.transport == TRANSPORT_TCP ? DT_NOEND : TimestampTzPlusMilliseconds(sip_now, 500);
	tx->give_up_ms = kind == UK_KEEPALIVE ? Min(TX_GIVE_UP_MS, u->ka_interval * 1000) : TX_GIVE_UP_MS;
	sip_send(&u->peer, tx->msg, tx->len);
	return tx;
}

/* REGISTER (expires 0: unregister), with our answer to the last challenge when there is one */
static bool
send_register(Upstream *u, int expires)
{
	SBuf		extra;
	char		ruri[128];
	char		me[64];
	bool		ok;

	snprintf(ruri, sizeof(ruri), "sip:%s@%s", u->platform_id, u->realm);
	snprintf(me, sizeof(me), "sip:%s@%.10s", u->local_id, u->local_id);
	sbuf_init(&extra, 4096);
	sbuf_printf(&extra, "Contact: <sip:%s@%s:%d%s>\r\nExpires: %d\r\n", u->local_id, sip_local_ip_for(&u->peer),
				sip_local_port(), u->peer.transport == TRANSPORT_TCP ? ";transport=tcp" : "", expires);
	if (u->have_chal)
	{
		char		ha1[2 * 32 + 1];
		char		cnonce[17];
		char		nc[9];
		char		response[2 * 32 + 1];

		digest_ha1(u->alg, u->local_id, u->chal_realm, u->password, ha1, sizeof(ha1));
		sip_random_hex(cnonce, 16);
		snprintf(nc, sizeof(nc), "%08x", ++u->nc);
		digest_response(u->alg, ha1, u->nonce, nc, cnonce, u->qop ? "auth" : NULL, "REGISTER", ruri,
						response, sizeof(response));
		sbuf_printf(&extra, "Authorization: Digest username=\"%s\", realm=\"%s\", nonce=\"%s\", uri=\"%s\", "
					"response=\"%s\", algorithm=%s",
					u->local_id, u->chal_realm, u->nonce, ruri, response, u->alg == DIGEST_MD5 ? "MD5" : "SHA-256");
		if (u->qop)
			sbuf_printf(&extra, ", cnonce=\"%s\", qop=auth, nc=%s", cnonce, nc);
		if (u->opaque[0])
			sbuf_printf(&extra, ", opaque=\"%s\"", u->opaque);
		sbuf_puts(&extra, "\r\n");
		explicit_bzero(ha1, sizeof(ha1));
	}
	ok = !extra.overflow &&
		send_request(u, expires == 0 ? UK_UNREGISTER : UK_REGISTER, "REGISTER", ruri, me, NULL, u->call_id, u->from_tag,
					 ++u->cseq, extra.data, NULL, 0, u->have_chal) != NULL;
	sbuf_free(&extra);
	if (ok && expires > 0)
		u->reg_in_flight = true;
	return ok;
}

/* why a request could not be sent: a failed connect (taken: it is failed now, not again next tick), else dflt */
static const char *
send_failure(Upstream *u, const char *dflt)
{
	static char why[160];

	if (!u->conn_failed[0])
		return dflt;
	strlcpy(why, u->conn_failed, sizeof(why));
	u->conn_failed[0] = '\0';
	return why;
}

/* a new registration: a new dialog, no challenge yet */
static void
start_register(Upstream *u, const char *cause)
{
	sip_random_hex(u->call_id, 24);
	sip_random_hex(u->from_tag, 10);
	u->cseq = 0;
	u->have_chal = false;
	u->challenges = 0;
	u->nonce[0] = '\0';
	u->missed = 0;
	if (!u->password_ok)
	{
		fail(u, 0, "the password does not decrypt (vms.secret_key_file?)");
		return;
	}
	set_state(u, US_REGISTERING, cause);
	if (!send_register(u, u->expires))
		fail(u, 0, send_failure(u, "could not send REGISTER"));
}

/* a MESSAGE with a MANSCDP body */
static UpTx *
send_message(Upstream *u, UpKind kind, const char *body, size_t len)
{
	char		ruri[128];
	char		to[128];
	char		call_id[32];
	char		tag[12];

	snprintf(ruri, sizeof(ruri), "sip:%s@%s:%d", u->platform_id, u->host, u->port);
	snprintf(to, sizeof(to), "sip:%s@%s", u->platform_id, u->realm);
	sip_random_hex(call_id, 24);
	sip_random_hex(tag, 10);
	return send_request(u, kind, "MESSAGE", ruri, to, NULL, call_id, tag, 1, NULL, body, len, false);
}

/* a NOTIFY in a subscription's dialog */
static UpTx *
send_notify(Upstream *u, int k, const char *body, size_t len)
{
	UpSub	   *sb = &u->subs[k];
	char		ruri[128];
	char		to[128];
	char		extra[128];
	long		left = (long) ((sb->expires_at - sip_now) / 1000000);
	UpTx	   *tx;

	snprintf(ruri, sizeof(ruri), "sip:%s@%s:%d", u->platform_id, u->host, u->port);
	snprintf(to, sizeof(to), "sip:%s@%s", u->platform_id, u->realm);
	snprintf(extra, sizeof(extra), "Event: %s\r\nSubscription-State: active;expires=%ld\r\n", sub_events[k], Max(left, 0));
	tx = send_request(u, UK_NOTIFY, "NOTIFY", ruri, to, sb->their_tag, sb->call_id, sb->our_tag,
					  ++sb->cseq, extra, body, len, false);
	if (tx)
		tx->sub = k;
	return tx;
}

static void
send_keepalive(Upstream *u)
{
	char	   *body = psprintf("<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n"
								"<SN>%u</SN>\r\n<DeviceID>%s</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n",
								next_sn++, u->local_id);

	if (send_message(u, UK_KEEPALIVE, body, strlen(body)) != NULL)
		u->ka_in_flight = true;
	pfree(body);
}

static void
send_pages(Upstream *u)
{
	while (u->pages && u->pages_in_flight < PAGE_WINDOW)
	{
		OutPage	   *p = u->pages;

		int			k = p->sub;

		/* an alarm whose subscription ended meanwhile goes as a MESSAGE, as without one */
		if (k == SUB_ALARM && !u->subs[k].active)
			k = -1;
		if (k >= 0 && !u->subs[k].active)
			;					/* the subscription ended: its changes are not sent */
		else if ((k >= 0 ? send_notify(u, k, p->data, p->len) : send_message(u, UK_ANSWER, p->data, p->len)) == NULL)
			return;
		else
			u->pages_in_flight++;
		u->pages = p->next;
		if (u->pages == NULL)
			u->pages_tail = NULL;
		pfree(p);
	}
}

/* ---------------------------------------------------------------- loading */

static void
decrypt_password(Upstream *u, bytea *b)
{
	char	   *context = psprintf("sip_upstream.password_enc:%s", u->name);
	MemoryContext old = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	explicit_bzero(u->password, sizeof(u->password));
	u->password_ok = false;
	/* a password that does not decrypt fails this upstream only */
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(old);
	PG_TRY();
	{
		char	   *plain = vms_secret_decrypt_bytes((unsigned char *) VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b),
													 context, (int) strlen(context));

		strlcpy(u->password, plain, sizeof(u->password));
		explicit_bzero(plain, strlen(plain));
		u->password_ok = true;
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(old);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(old);
		e = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(old);
		CurrentResourceOwner = owner;
		sip_log_limited(LOG_OTHER, "upstream \"%s\": %s", u->name, e->message);
		FreeErrorData(e);
	}
	PG_END_TRY();
}

static UpState
state_from_name(const char *s)
{
	for (int i = 0; i < (int) lengthof(state_names); i++)
		if (s && strcmp(s, state_names[i]) == 0)
			return (UpState) i;
	return US_UNREGISTERED;
}

/* one row of SIP_SQL_UPSTREAM_SUBSCRIPTIONS: a subscription of a just-loaded upstream, served on */
static void
restore_subscription(HeapTuple t, TupleDesc d, const bool *added)
{
	char	   *name = SPI_getvalue(t, d, 1);
	char	   *event = SPI_getvalue(t, d, 2);
	char	   *call_id = SPI_getvalue(t, d, 4);
	char	   *their = SPI_getvalue(t, d, 5);
	char	   *ours = SPI_getvalue(t, d, 6);
	char	   *filter = SPI_getvalue(t, d, 8);
	bool		isnull;
	double		expires;
	int64		cseq;
	int			k;
	UpSub	   *sb;

	if (name == NULL || event == NULL || call_id == NULL || their == NULL || ours == NULL)
		return;
	for (k = 0; k < SUB_KINDS; k++)
		if (strcmp(event, sub_events[k]) == 0)
			break;
	if (k == SUB_KINDS)
		return;
	for (int i = 0; i < MAX_UPSTREAMS; i++)
	{
		if (!ups[i].used || !added[i] || strcmp(ups[i].name, name) != 0)
			continue;
		sb = &ups[i].subs[k];
		expires = DatumGetFloat8(SPI_getbinval(t, d, 3, &isnull));
		if (isnull)
			return;
		cseq = DatumGetInt64(SPI_getbinval(t, d, 7, &isnull));
		memset(sb, 0, sizeof(*sb));
		strlcpy(sb->call_id, call_id, sizeof(sb->call_id));
		strlcpy(sb->their_tag, their, sizeof(sb->their_tag));
		strlcpy(sb->our_tag, ours, sizeof(sb->our_tag));
		sb->cseq = (uint32) ((isnull ? 0 : cseq) + 1000000);
		if (filter && strlen(filter) < sizeof(sb->filter) && strcmp(filter, "null") != 0)
			strlcpy(sb->filter, filter, sizeof(sb->filter));
		sb->interval_s = DatumGetInt32(SPI_getbinval(t, d, 9, &isnull));
		if (isnull || sb->interval_s <= 0)
			sb->interval_s = 5;
		sb->expires_at = sip_from_epoch(expires);
		sb->next_check = sip_now;
		sb->active = true;
		if (k == SUB_CATALOG && ups[i].push_interval > 0)
			ups[i].next_push = TimestampTzPlusMilliseconds(sip_now, (int64) ups[i].push_interval * 1000);
		ereport(LOG, (errmsg("vms sip: upstream \"%s\": its %s subscription is served on after the start", name, event)));
		return;
	}
}

void
sip_upstream_load(void)
{
	bool		changed[MAX_UPSTREAMS];
	bool		added[MAX_UPSTREAMS];
	bool		changes_queued = false;
	bool		positions_queued = false;
	bool		any_added = false;

	memset(changed, 0, sizeof(changed));
	memset(added, 0, sizeof(added));
	for (int i = 0; i < MAX_UPSTREAMS; i++)
		ups[i].seen = false;
	vms_worker_begin_tx("vms sip: loading upstreams");
	if (sip_sql_run(SIP_SQL_UPSTREAMS, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "vms sip: could not load upstreams");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	t = SPI_tuptable->vals[r];
		TupleDesc	d = SPI_tuptable->tupdesc;
		char	   *name = SPI_getvalue(t, d, 1);
		char	   *host = SPI_getvalue(t, d, 2);
		char	   *port = SPI_getvalue(t, d, 3);
		char	   *pid = SPI_getvalue(t, d, 4);
		char	   *local_id = SPI_getvalue(t, d, 7);
		char	   *realm = SPI_getvalue(t, d, 8);
		bool		isnull;
		Datum		pw;
		Upstream   *u = NULL;
		int			slot = -1;
		char		old_password[257];
		struct sockaddr_in *sin;
		Peer		kept_conn;

		if (name == NULL || host == NULL || port == NULL || pid == NULL)
			continue;
		for (int i = 0; i < MAX_UPSTREAMS; i++)
			if (ups[i].used && strcmp(ups[i].name, name) == 0)
				slot = i;
		if (slot < 0)
		{
			for (int i = 0; i < MAX_UPSTREAMS && slot < 0; i++)
				if (!ups[i].used)
					slot = i;
			if (slot < 0)
			{
				sip_log_limited(LOG_OTHER, "upstream \"%s\" not served: at most %d upstreams", name, MAX_UPSTREAMS);
				continue;
			}
			memset(&ups[slot], 0, sizeof(Upstream));
			ups[slot].used = true;
			ups[slot].gen = ++up_generation;
			strlcpy(ups[slot].name, name, sizeof(ups[slot].name));
			ups[slot].state = state_from_name(SPI_getvalue(t, d, 15));
			ups[slot].failures = DatumGetInt32(SPI_getbinval(t, d, 16, &isnull));
			if (isnull)
				ups[slot].failures = 0;
			ups[slot].next_attempt = sip_now;
			added[slot] = true;
			any_added = true;
		}
		u = &ups[slot];
		u->seen = true;
		if (local_id == NULL || strlen(local_id) != 20)
		{
			sip_log_limited(LOG_OTHER, "upstream \"%s\" not served: no local_id and no vms.sip_id", name);
			u->enabled = false;
			continue;
		}
		changed[slot] = strcmp(u->host, host) != 0 || u->port != atoi(port) || strcmp(u->platform_id, pid) != 0 ||
			strcmp(u->local_id, local_id) != 0 || strcmp(u->realm, realm ? realm : "") != 0 ||
			u->expires != DatumGetInt32(SPI_getbinval(t, d, 9, &isnull));
		strlcpy(old_password, u->password, sizeof(old_password));
		strlcpy(u->host, host, sizeof(u->host));
		u->port = atoi(port);
		strlcpy(u->platform_id, pid, sizeof(u->platform_id));
		strlcpy(u->local_id, local_id, sizeof(u->local_id));
		strlcpy(u->realm, realm ? realm : pid, sizeof(u->realm));
		u->enabled = DatumGetBool(SPI_getbinval(t, d, 6, &isnull));
		u->expires = DatumGetInt32(SPI_getbinval(t, d, 9, &isnull));
		u->ka_interval = DatumGetInt32(SPI_getbinval(t, d, 10, &isnull));
		u->ka_count = DatumGetInt32(SPI_getbinval(t, d, 11, &isnull));
		u->page_size = DatumGetInt32(SPI_getbinval(t, d, 14, &isnull));
		{
			int			was = u->push_interval;

			u->push_interval = DatumGetInt32(SPI_getbinval(t, d, 17, &isnull));
			if (isnull)
				u->push_interval = 0;
			/* a new interval counts from now */
			if (u->push_interval != was && u->subs[SUB_CATALOG].active)
				u->next_push = u->push_interval > 0 ?
					TimestampTzPlusMilliseconds(sip_now, (int64) u->push_interval * 1000) : 0;
		}
		{
			int			was = u->reconcile_ms;

			u->reconcile_ms = DatumGetInt32(SPI_getbinval(t, d, 18, &isnull)) * 1000;
			if (isnull || u->reconcile_ms <= 0)
				u->reconcile_ms = 10000;
			/* a shorter interval counts from now */
			if (u->reconcile_ms < was && u->subs[SUB_CATALOG].active)
				u->subs[SUB_CATALOG].next_check = Min(u->subs[SUB_CATALOG].next_check,
													  TimestampTzPlusMilliseconds(sip_now, u->reconcile_ms));
		}
		pw = SPI_getbinval(t, d, 5, &isnull);
		if (!isnull)
			decrypt_password(u, DatumGetByteaPP(pw));
		if (strcmp(old_password, u->password) != 0)
			changed[slot] = true;
		explicit_bzero(old_password, sizeof(old_password));
		{
			char	   *tr = SPI_getvalue(t, d, 19);
			int			transport = tr && strcmp(tr, "TCP") == 0 ? TRANSPORT_TCP : TRANSPORT_UDP;

			if (transport != u->peer.transport)
				changed[slot] = true;
			/* an open TCP connection to the same address is kept */
			if (!changed[slot] && sip_net_conn_alive(&u->peer))
				kept_conn = u->peer;
			else
			{
				memset(&kept_conn, 0, sizeof(kept_conn));
				u->tcp_connecting = false;
				u->conn_failed[0] = '\0';
			}
			memset(&u->peer, 0, sizeof(Peer));
			u->peer.transport = transport;
		}
		sin = (struct sockaddr_in *) &u->peer.addr;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(u->port);
		if (inet_pton(AF_INET, u->host, &sin->sin_addr) != 1)
			u->enabled = false;
		u->peer.addrlen = sizeof(*sin);
		u->peer.conn = -1;
		strlcpy(u->peer.ip, u->host, sizeof(u->peer.ip));
		u->peer.port = u->port;
		if (kept_conn.transport == TRANSPORT_TCP)
		{
			u->peer.conn = kept_conn.conn;
			u->peer.conn_gen = kept_conn.conn_gen;
		}
	}
	/*
	 * A start: the subscriptions the previous worker served and that have
	 * not run out are served on, in their dialogs (CSeq well above any it
	 * may have used since it was written); what changed meanwhile is
	 * compared at once.
	 */
	if (any_added && sip_sql_run(SIP_SQL_UPSTREAM_SUBSCRIPTIONS, NULL, NULL, true, 0) == SPI_OK_SELECT)
		for (uint64 r = 0; r < SPI_processed; r++)
			restore_subscription(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, added);
	/* statements that changed what upper platforms may be told (the ledger's triggers) */
	if (sip_sql_run(SIP_SQL_UPSTREAM_TAKE_CHANGES, NULL, NULL, false, 0) == SPI_OK_SELECT && SPI_processed == 1)
	{
		bool		isnull;
		int64		n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

		changes_queued = !isnull && n > 0;
		n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		positions_queued = !isnull && n > 0;
	}
	vms_worker_end_tx();

	/* compare at once (at most every CHANGE_GAP_MS), and look for alarms */
	for (int i = 0; i < MAX_UPSTREAMS && changes_queued; i++)
		if (ups[i].used && ups[i].state == US_REGISTERED)
		{
			UpSub	   *sb = &ups[i].subs[SUB_CATALOG];

			if (sb->active)
				sb->next_check = Max(sip_now, TimestampTzPlusMilliseconds(sb->last_check, CHANGE_GAP_MS));
			ups[i].next_alarm_check = sip_now;
		}
	/* a position was reported: the changes go at once (each channel at most once an Interval) */
	for (int i = 0; i < MAX_UPSTREAMS && positions_queued; i++)
		if (ups[i].used && ups[i].state == US_REGISTERED && ups[i].subs[SUB_POSITION].active)
		{
			UpSub	   *sb = &ups[i].subs[SUB_POSITION];

			sb->next_check = Min(sb->next_check, Max(sip_now, TimestampTzPlusMilliseconds(sb->last_check, POSITION_GAP_MS)));
		}

	for (int i = 0; i < MAX_UPSTREAMS; i++)
	{
		Upstream   *u = &ups[i];

		if (!u->used)
			continue;
		if (!u->seen)
		{
			/* dropped: say goodbye, forget it, and its relays with it (the slot may be another's next) */
			if (u->state == US_REGISTERED)
				send_register(u, 0);
			drop_txs(i, true);
			drop_relays(i, "dropped");
			free_pages(u);
			explicit_bzero(u->password, sizeof(u->password));
			ereport(LOG, (errmsg("vms sip: upstream \"%s\" was dropped", u->name)));
			u->used = false;
			continue;
		}
		if (!u->enabled)
		{
			if (u->state != US_DISABLED)
			{
				if (u->state == US_REGISTERED)
					send_register(u, 0);
				drop_txs(i, true);
				/* its calls end as a dropped upstream's do (the devices get their CANCEL or BYE) */
				drop_relays(i, "disabled");
				free_pages(u);
				set_state(u, US_DISABLED, "disabled");
			}
			continue;
		}
		if (u->state == US_DISABLED)
		{
			u->failures = 0;
			u->next_attempt = sip_now;
			set_state(u, US_UNREGISTERED, "enabled");
		}
		else if (added[i])
		{
			/* a start (or a new upstream): register now, whatever the last state was */
			u->next_attempt = sip_now;
			if (u->state == US_REGISTERED || u->state == US_REGISTERING)
			{
				u->registered_at = u->expires_at = 0;
				start_register(u, "worker start: registering again");
			}
		}
		else if (changed[i] && (u->state == US_REGISTERED || u->state == US_REGISTERING))
		{
			drop_txs(i, true);
			free_pages(u);
			start_register(u, "settings changed: registering again");
		}
		else if (changed[i])
			u->next_attempt = sip_now;
	}
}

/* ---------------------------------------------------------------- answers */

static void
answered_register(Upstream *u, bool with_auth, const SipIn *in)
{
	u->reg_in_flight = false;
	if (in->status == 401)
	{
		osip_www_authenticate_t *wa = NULL;
		bool		stale = false;
		bool		found = false;
		char		nonce[256],
					realm[128],
					opaque[256],
					b[64];

		/* the strongest usable challenge: SHA-256 before MD5 */
		for (int pass = 0; pass < 2 && !found; pass++)
			for (int i = 0; !found && osip_message_get_www_authenticate(in->msg, i, &wa) >= 0 && wa; i++)
			{
				DigestAlg	alg;

				if (!param(wa->algorithm, b, sizeof(b)) || !digest_alg_from_name(b, &alg) ||
					(pass == 0) != (alg == DIGEST_SHA256))
					continue;
				if (!param(wa->nonce, nonce, sizeof(nonce)) || nonce[0] == '\0' ||
					!param(wa->realm, realm, sizeof(realm)) || !param(wa->opaque, opaque, sizeof(opaque)))
					continue;
				found = true;
				u->alg = alg;
				u->qop = false;
				if (wa->qop_options && param(wa->qop_options, b, sizeof(b)))
				{
					/* a list such as "auth,auth-int": auth among them */
					for (char *tok = strtok(b, ", "); tok; tok = strtok(NULL, ", "))
						if (strcasecmp(tok, "auth") == 0)
							u->qop = true;
				}
				stale = wa->stale && param(wa->stale, b, sizeof(b)) && strcasecmp(b, "true") == 0;
			}
		if (!found)
		{
			fail(u, 401, "401 without a usable digest challenge");
			return;
		}
		/*
		 * A 401 to our answer is a refusal, unless it brings a new nonce
		 * (stale, or an old one we reused on a refresh): that is answered,
		 * at most 3 times per registration, so a platform that challenges
		 * for ever is backed off like one that refuses.
		 */
		if (with_auth && ((!stale && strcmp(nonce, u->nonce) == 0) || ++u->challenges > 3))
		{
			fail(u, 401, "401 to our credentials: the upper platform refused the id or password");
			return;
		}
		strlcpy(u->nonce, nonce, sizeof(u->nonce));
		strlcpy(u->chal_realm, realm, sizeof(u->chal_realm));
		strlcpy(u->opaque, opaque, sizeof(u->opaque));
		u->nc = 0;
		u->have_chal = true;
		if (!send_register(u, u->expires))
			fail(u, 0, "could not send REGISTER");
		return;
	}
	if (in->status >= 200 && in->status < 300)
	{
		bool		refresh = u->state == US_REGISTERED;
		long		granted = in->expires > 0 ? in->expires : u->expires;

		/* a grant out of bounds is taken within them: never a tight loop, never a day-long silence */
		granted = Max(60, Min(granted, 86400L));
		u->last_status = in->status;
		u->last_error[0] = '\0';
		u->failures = 0;
		u->missed = 0;
		u->challenges = 0;
		u->registered_at = refresh ? u->registered_at : sip_now;
		u->expires_at = TimestampTzPlusMilliseconds(sip_now, granted * 1000);
		u->refresh_at = TimestampTzPlusMilliseconds(sip_now, granted * 800);
		if (!refresh)
		{
			u->next_ka = sip_now;
			set_state(u, US_REGISTERED, psprintf("%d: registered for %ld s", in->status, granted));
		}
		else
			snapshot(u, NULL);
		return;
	}
	fail(u, in->status, psprintf("%d to REGISTER", in->status));
}

/* ---------------------------------------------------------------- relayed calls */

/*
 * The connection addresses (c=, the session's and each medium's) of an SDP
 * body, comma-separated, parsed by libosip2: where the device would stream.
 * Unparseable or too many: a marker that no network contains.
 */
static void
sdp_media_addresses(const char *body, size_t len, char *out, size_t outlen)
{
	sdp_message_t *sdp = NULL;
	char	   *text = palloc(len + 1);
	size_t		n = 0;
	int			raw_c = 0,
				parsed_c = 0;
	SBuf		b;

	/* GB/T 28181's own lines (y= SSRC, f= media format) are unknown to libosip2's parser: left out */
	for (size_t i = 0; i < len;)
	{
		size_t		e = i;

		while (e < len && body[e] != '\n')
			e++;
		if (e < len)
			e++;
		if (e - i >= 2 && body[i] == 'c' && body[i + 1] == '=')
			raw_c++;
		if (!(e - i >= 2 && body[i + 1] == '=' && (body[i] == 'y' || body[i] == 'f')))
		{
			memcpy(text + n, body + i, e - i);
			n += e - i;
		}
		i = e;
	}
	text[n] = '\0';
	out[0] = '\0';
	sbuf_init(&b, outlen + 1);
	if (sdp_message_init(&sdp) == 0 && sdp_message_parse(sdp, text) == 0)
	{
		for (int m = -1; m == -1 || !sdp_message_endof_media(sdp, m); m++)
		{
			/* every c= of the session and of each media, not only the first */
			for (int pos = 0;; pos++)
			{
				char	   *a = sdp_message_c_addr_get(sdp, m, pos);

				if (a == NULL)
					break;
				parsed_c++;
				if (a[0])
					sbuf_printf(&b, "%s%s", b.len ? "," : "", a);
				if (m == -1)
					break;		/* the session has one connection field */
			}
		}
		/*
		 * The body goes to the device as it came: a c= line the parser did
		 * not keep (a second session-level one, say) is an address nobody
		 * checked, which the device's own parser may take.
		 */
		if (raw_c != parsed_c)
			strlcpy(out, "(ambiguous SDP)", outlen);
		else if (b.overflow || b.len >= outlen)
			strlcpy(out, "(too many addresses)", outlen);
		else if (b.len)
			strlcpy(out, b.data, outlen);
	}
	else
		strlcpy(out, "(unparseable SDP)", outlen);
	if (sdp)
		sdp_message_free(sdp);
	sbuf_free(&b);
	pfree(text);
}

/* a relayed call ended (by the upper platform, the device, or the relay: cancel, timeout, dropped, disabled, no ack): audited at the next round */
static void
queue_bye_audit(Relay *r, const char *by)
{
	PendingAnswer *p = new_pending(&ups[r->up]);

	if (p == NULL)
	{
		sip_log_limited(LOG_OTHER, "the end of upstream \"%s\"'s call %s could not be audited: queue full",
						ups[r->up].name, r->presented);
		return;
	}
	p->bye = true;
	strlcpy(p->by, by, sizeof(p->by));
	strlcpy(p->device_id, r->presented, sizeof(p->device_id));
	strlcpy(p->channel, r->channel, sizeof(p->channel));
	strlcpy(p->media, r->media, sizeof(p->media));
	snprintf(p->source, sizeof(p->source), "%s:%d", r->upper_peer.ip, r->upper_peer.port);
}

static bool up_current(int up, uint32 gen);

/* the relayed call of the upper platform's Call-ID (of an upstream that is still there) */
static Relay *
relay_by_upper_call(const char *call_id)
{
	for (int i = 0; i < MAX_RELAYS; i++)
		if (relays[i].used && strcmp(relays[i].up_call_id, call_id) == 0 && up_current(relays[i].up, relays[i].up_gen))
			return &relays[i];
	return NULL;
}

/* the relay's INVITE to the device while it is not answered finally, else NULL */
static UpTx *
relay_invite_tx(const Relay *r)
{
	for (int i = 0; i < MAX_UP_TX; i++)
		if (txs[i].used && txs[i].kind == UK_RELAY_INVITE && txs[i].relay == (int) (r - relays))
			return &txs[i];
	return NULL;
}

static void
relay_free(Relay *r)
{
	for (int i = 0; i < MAX_UP_TX; i++)
		if (txs[i].used && (txs[i].kind == UK_RELAY_INVITE || txs[i].kind == UK_RELAY_CANCEL) &&
			txs[i].relay == (int) (r - relays))
			free_tx(&txs[i]);
	if (r->raw)
		pfree(r->raw);
	if (r->final)
		pfree(r->final);
	memset(r, 0, sizeof(*r));
}

/* answer the upper platform's INVITE (kept as it came); a final answer is kept for its retransmissions */
static void
relay_answer_upper(Relay *r, int code, const char *reason, const char *ctype, const char *body)
{
	SipIn		in;
	SBuf	   *out = sip_scratch();
	char		extra[160];

	memset(&in, 0, sizeof(in));
	if (sip_parse(r->raw, r->raw_len, r->raw_len + 1, &in) != SIPP_OK)
	{
		sip_in_free(&in);
		return;
	}
	snprintf(extra, sizeof(extra), "Contact: <sip:%s@%s:%d>\r\n", r->presented, sip_local_ip_for(&r->upper_peer),
			 sip_local_port());
	sbuf_reset(out);
	if (sip_response(&in, code, reason, r->up_our_tag, r->upper_peer.ip, r->upper_peer.port, code < 300 ? extra : NULL,
					 ctype, body, out))
	{
		sip_send(&r->upper_peer, out->data, out->len);
		if (code >= 200)
		{
			if (r->final)
				pfree(r->final);
			r->final = MemoryContextAlloc(vms_worker_cxt, out->len);
			memcpy(r->final, out->data, out->len);
			r->final_len = out->len;
			r->final_at = sip_now;
			/*
			 * Over UDP the final answer is retransmitted until the upper
			 * platform's ACK: a non-2xx by the server transaction (Timer G,
			 * 17.2.1), a 2xx by the UAS core (13.3.1.4), both from T1
			 * doubling to T2, for 64*T1 at most.  A 2xx is retransmitted
			 * over TCP too (13.3.1.4: the UAS core's, whatever the
			 * transport), a non-2xx only over UDP (Timer G).  Timed from
			 * the clock now, not the round's: no retransmission comes early.
			 */
			r->final_interval_ms = T1_MS;
			r->free_at = 0;
			r->final_next = (r->upper_peer.transport == TRANSPORT_UDP || code < 300) ?
				TimestampTzPlusMilliseconds(GetCurrentTimestamp(), T1_MS) : 0;
		}
	}
	sip_in_free(&in);
}

/*
 * The ACKs vms sent a device for its final answers to relayed INVITEs, kept
 * 64*T1: a device that did not get one retransmits its answer, and every
 * retransmission is ACKed again with the same ACK (RFC 3261 13.2.2.4 for a
 * 2xx, 17.1.1.2 for the others), nothing else: no second BYE, nothing up.
 * Kept apart from the relays, which may have ended since.
 */
#define MAX_DEV_ACKS MAX_RELAYS
typedef struct DevAck
{
	bool		used;
	char		call_id[32];
	uint32		cseq;
	Peer		peer;
	char	   *msg;
	size_t		len;
	TimestampTz until;
} DevAck;

static DevAck dev_acks[MAX_DEV_ACKS];

static void
dev_ack_free(DevAck *a)
{
	if (a->msg)
		pfree(a->msg);
	memset(a, 0, sizeof(*a));
}

/* an ACK sent to a device: kept (the same call and CSeq's replaced; full: the one nearest its end) */
static void
dev_ack_keep(const Relay *r, uint32 cseq, const char *msg, size_t len)
{
	DevAck	   *a = NULL;

	for (int i = 0; i < MAX_DEV_ACKS && a == NULL; i++)
		if (dev_acks[i].used && dev_acks[i].cseq == cseq && strcmp(dev_acks[i].call_id, r->dev_call_id) == 0)
			a = &dev_acks[i];
	for (int i = 0; i < MAX_DEV_ACKS && a == NULL; i++)
		if (!dev_acks[i].used)
			a = &dev_acks[i];
	if (a == NULL)
	{
		a = &dev_acks[0];
		for (int i = 1; i < MAX_DEV_ACKS; i++)
			if (dev_acks[i].until < a->until)
				a = &dev_acks[i];
	}
	dev_ack_free(a);
	a->used = true;
	strlcpy(a->call_id, r->dev_call_id, sizeof(a->call_id));
	a->cseq = cseq;
	a->peer = r->dev_peer;
	a->msg = MemoryContextAlloc(vms_worker_cxt, len);
	memcpy(a->msg, msg, len);
	a->len = len;
	a->until = TimestampTzPlusMilliseconds(sip_now, TIMER_H_MS);
}

/* a device's final answer to a relayed INVITE that was ACKed already: ACKed again (true when it was one) */
static bool
dev_ack_again(const SipIn *in, const Peer *peer)
{
	if (in->status < 200 || pg_strcasecmp(in->cseq_method, "INVITE") != 0)
		return false;
	for (int i = 0; i < MAX_DEV_ACKS; i++)
	{
		DevAck	   *a = &dev_acks[i];

		if (!a->used || a->cseq != in->cseq || strcmp(a->call_id, in->call_id) != 0)
			continue;
		if (strcmp(peer->ip, a->peer.ip) != 0 || (peer->transport == TRANSPORT_UDP && peer->port != a->peer.port))
		{
			sip_count(C_WRONG_SOURCE, 1);
			return true;
		}
		sip_send(&a->peer, a->msg, a->len);
		return true;
	}
	return false;
}

/* a request to the device in the relayed call's dialog */
static UpTx *
relay_send(Relay *r, UpKind kind, const char *method, uint32 cseq, const char *branch, const char *extra,
		   const char *ctype, const char *body)
{
	SBuf	   *out = sip_scratch();
	UpTx	   *tx = NULL;
	char		fresh[20];
	bool		tcp = r->dev_peer.transport == TRANSPORT_TCP;
	bool		cancel;

	if (branch == NULL)
	{
		sip_random_hex(fresh, 16);
		branch = fresh;
	}
	sbuf_reset(out);
	sbuf_printf(out, "%s sip:%s@%s:%d SIP/2.0\r\n", method, r->channel, r->dev_peer.ip, r->dev_peer.port);
	sbuf_printf(out, "Via: SIP/2.0/%s %s:%d;rport;branch=z9hG4bK%s\r\n", tcp ? "TCP" : "UDP",
				sip_local_ip_for(&r->dev_peer), sip_local_port(), branch);
	sbuf_printf(out, "From: <sip:%s@%s>;tag=%s\r\n", vms_sip_id, sip_realm(), r->dev_from_tag);
	/* a CANCEL's To is its INVITE's: no tag */
	cancel = strcmp(method, "CANCEL") == 0;
	sbuf_printf(out, "To: <sip:%s@%.10s>%s%s\r\n", r->channel, r->channel, r->dev_to_tag[0] && !cancel ? ";tag=" : "",
				cancel ? "" : r->dev_to_tag);
	sbuf_printf(out, "Call-ID: %s\r\nCSeq: %u %s\r\nMax-Forwards: 70\r\nUser-Agent: vms\r\n", r->dev_call_id, cseq,
				strcmp(method, "ACK") == 0 ? "ACK" : method);
	if (extra)
		sbuf_puts(out, extra);
	if (body)
		sbuf_printf(out, "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n%s", ctype, strlen(body), body);
	else
		sbuf_puts(out, "Content-Length: 0\r\n\r\n");
	if (out->overflow)
		return NULL;
	if (kind != UK_RELAY_INVITE && kind != UK_RELAY_BYE && kind != UK_RELAY_CANCEL)
	{
		sip_send(&r->dev_peer, out->data, out->len);	/* ACK: no transaction */
		dev_ack_keep(r, cseq, out->data, out->len);		/* for the device's retransmissions of its answer */
		return NULL;
	}
	for (int i = 0; i < MAX_UP_TX; i++)
		if (!txs[i].used)
		{
			tx = &txs[i];
			break;
		}
	if (tx == NULL)
		return NULL;
	memset(tx, 0, sizeof(*tx));
	tx->used = true;
	tx->up = r->up;
	tx->relay = (int) (r - relays);
	tx->kind = kind;
	tx->peer = r->dev_peer;
	strlcpy(tx->branch, branch, sizeof(tx->branch));
	strlcpy(tx->call_id, r->dev_call_id, sizeof(tx->call_id));
	tx->cseq = cseq;
	tx->msg = MemoryContextAlloc(vms_worker_cxt, out->len);
	memcpy(tx->msg, out->data, out->len);
	tx->len = out->len;
	tx->sent_at = sip_now;
	tx->retx_ms = 500;
	tx->next_retx = tcp ? DT_NOEND : TimestampTzPlusMilliseconds(sip_now, 500);
	tx->give_up_ms = TX_GIVE_UP_MS;
	sip_send(&tx->peer, tx->msg, tx->len);
	return tx;
}

/* the channel was looked up: INVITE its device with the upper platform's SDP */
static void
relay_start(Relay *r)
{
	Dev		   *d = r->device[0] ? sip_device(r->device, false) : NULL;
	SipIn		in;
	char	   *sdp;
	SBuf		extra;

	if (r->cancelling)
	{
		/* CANCELled before its lookup: answered 487, nothing goes to the device */
		queue_bye_audit(r, r->ended_by);
		return;
	}
	if (r->channel[0] == '\0')
	{
		relay_answer_upper(r, 404, "Not Found", NULL, NULL);
		return;
	}
	if (r->refusal[0])
	{
		sip_log_limited(LOG_OTHER, "upstream \"%s\"'s INVITE for %s refused: %s", ups[r->up].name, r->presented, r->refusal);
		relay_answer_upper(r, 488, "Not Acceptable Here (media address not allowed)", NULL, NULL);
		return;
	}
	if (d == NULL || !d->online || !d->has_peer || !d->registered)
	{
		relay_answer_upper(r, 480, "Temporarily Unavailable", NULL, NULL);
		return;
	}
	memset(&in, 0, sizeof(in));
	if (sip_parse(r->raw, r->raw_len, r->raw_len + 1, &in) != SIPP_OK || in.body_len == 0)
	{
		sip_in_free(&in);
		relay_answer_upper(r, 400, "Missing SDP", NULL, NULL);
		return;
	}
	sdp = pnstrdup(in.body, in.body_len);
	sip_in_free(&in);
	r->dev_peer = d->peer;
	sip_random_hex(r->dev_call_id, 24);
	sip_random_hex(r->dev_from_tag, 10);
	sbuf_init(&extra, 1024);
	sbuf_printf(&extra, "Contact: <sip:%s@%s:%d>\r\n", vms_sip_id, sip_local_ip_for(&r->dev_peer), sip_local_port());
	if (r->subject[0])
		sbuf_printf(&extra, "Subject: %s\r\n", r->subject);
	sip_random_hex(r->dev_branch, 16);
	if (extra.overflow ||
		relay_send(r, UK_RELAY_INVITE, "INVITE", 1, r->dev_branch, extra.data, "APPLICATION/SDP", sdp) == NULL)
		relay_answer_upper(r, 500, "Server Internal Error", NULL, NULL);
	else
	{
		r->dev_invited = true;
		ereport(LOG, (errmsg("vms sip: upstream \"%s\" INVITEs %s: relayed to device %s, media to %s", ups[r->up].name,
							 r->presented, r->device, r->media)));
	}
	sbuf_free(&extra);
	pfree(sdp);
}

/* BYE to the upper platform in its dialog (the device ended the call) */
static void
relay_bye_upper(Relay *r)
{
	Upstream   *u = &ups[r->up];
	SBuf	   *out = sip_scratch();
	char		branch[20];

	sip_random_hex(branch, 16);
	sbuf_reset(out);
	sbuf_printf(out, "BYE sip:%s@%s:%d SIP/2.0\r\n", r->up_from_user, r->upper_peer.ip, r->upper_peer.port);
	sbuf_printf(out, "Via: SIP/2.0/%s %s:%d;rport;branch=z9hG4bK%s\r\n", r->upper_peer.transport == TRANSPORT_TCP ? "TCP" : "UDP",
				sip_local_ip_for(&r->upper_peer), sip_local_port(), branch);
	sbuf_printf(out, "From: <sip:%s@%.10s>;tag=%s\r\n", r->presented, u->local_id, r->up_our_tag);
	sbuf_printf(out, "To: <sip:%s@%s>;tag=%s\r\n", r->up_from_user, u->realm, r->up_their_tag);
	sbuf_printf(out, "Call-ID: %s\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\nUser-Agent: vms\r\nContent-Length: 0\r\n\r\n", r->up_call_id);
	if (!out->overflow)
		sip_send(&r->upper_peer, out->data, out->len);
}

/* the device ended a relayed call: 1 when it was one (the upper platform is told) */
bool
sip_upstream_bye_from_device(const SipIn *in, const Peer *peer)
{
	for (int i = 0; i < MAX_RELAYS; i++)
	{
		Relay	   *r = &relays[i];

		if (!r->used || strcmp(r->dev_call_id, in->call_id) != 0)
			continue;
		if (strcmp(peer->ip, r->dev_peer.ip) != 0 || peer->port != r->dev_peer.port)
			return false;
		relay_bye_upper(r);
		queue_bye_audit(r, "device");
		relay_free(r);
		return true;
	}
	return false;
}

/* the CANCEL of the device's INVITE, with its branch; the INVITE is not sent again */
static void
relay_send_cancel(Relay *r, UpTx *inv, const char *by)
{
	r->cancel_deferred = false;
	if (relay_send(r, UK_RELAY_CANCEL, "CANCEL", 1, r->dev_branch, NULL, NULL, NULL) == NULL)
		sip_log_limited(LOG_OTHER, "upstream \"%s\"'s call %s: the CANCEL to device %s could not be sent", ups[r->up].name,
						r->presented, r->device);
	inv->give_up_ms = (int) Min((int64) INT_MAX / 2, (sip_now - inv->sent_at) / 1000) + 2 * TX_GIVE_UP_MS;
	inv->next_retx = DT_NOEND;	/* the INVITE is not sent again once CANCELled */
	ereport(LOG, (errmsg("vms sip: upstream \"%s\"'s call %s: the INVITE to device %s is CANCELled (%s)", ups[r->up].name,
						 r->presented, r->device, by)));
}

/*
 * The relay gives up on the device's INVITE before its final answer (the
 * upper platform CANCELled it, the device did not answer in time, the
 * upstream was dropped or disabled; the upper platform, when there is one, is answered
 * by the caller): the end is audited (ended_by), and the device gets a
 * CANCEL with the INVITE's branch (RFC 3261 9.1) -- once it has answered
 * the INVITE provisionally: before that a CANCEL must not be sent, so the
 * INVITE goes on being retransmitted and the CANCEL follows its first 1xx
 * (no answer at all: the INVITE's transaction times out).  The relay stays
 * until the device's final answer to the INVITE (64*T1 after the CANCEL at
 * most): a 487 is ACKed, a 200 that crossed the CANCEL is ACKed and ended
 * with a BYE, and neither goes up.
 */
static void
relay_cancel(Relay *r, const char *by)
{
	UpTx	   *inv = relay_invite_tx(r);

	if (r->cancelling)
		return;
	r->cancelling = true;
	strlcpy(r->ended_by, by, sizeof(r->ended_by));
	if (!r->dev_invited)
		return;					/* before its lookup: audited then (relay_start), nothing goes to the device */
	queue_bye_audit(r, by);
	if (inv == NULL)
		return;					/* the device answered already */
	if (!r->dev_provisional)
	{
		r->cancel_deferred = true;
		ereport(LOG, (errmsg("vms sip: upstream \"%s\"'s call %s: the INVITE to device %s is CANCELled at its first provisional answer (%s)",
							 ups[r->up].name, r->presented, r->device, by)));
		return;
	}
	relay_send_cancel(r, inv, by);
}

/* the device's answer to the relayed INVITE */
static void
relay_answered(Relay *r, UpTx *tx, const SipIn *in)
{
	if (r->cancelling)
	{
		/* given up: ended here, nothing relayed (the upper platform has its final answer) */
		strlcpy(r->dev_to_tag, in->to_tag, sizeof(r->dev_to_tag));
		if (in->status < 300)
		{
			relay_send(r, UK_ANSWER /* no transaction */ , "ACK", tx->cseq, NULL, NULL, NULL, NULL);
			relay_send(r, UK_RELAY_BYE, "BYE", 2, NULL, NULL, NULL, NULL);
			sip_log_limited(LOG_OTHER, "device %s answered %d to a CANCELled INVITE of upstream \"%s\": ACKed and ended (BYE)",
							r->device, in->status, ups[r->up].name);
		}
		else
			relay_send(r, UK_ANSWER, "ACK", tx->cseq, tx->branch, NULL, NULL, NULL);
		/* the upper platform's final answer stays for its retransmissions (freed in sip_upstream_tick) */
		if (r->final == NULL)
			relay_free(r);
		return;
	}
	if (in->status < 300)
	{
		char	   *sdp = in->body_len ? pnstrdup(in->body, in->body_len) : NULL;

		strlcpy(r->dev_to_tag, in->to_tag, sizeof(r->dev_to_tag));
		relay_send(r, UK_ANSWER /* no transaction */ , "ACK", tx->cseq, NULL, NULL, NULL, NULL);
		r->established = true;
		relay_answer_upper(r, in->status, "OK", sdp ? "APPLICATION/SDP" : NULL, sdp);
		if (sdp)
			pfree(sdp);
	}
	else
	{
		char		reason[32];

		strlcpy(r->dev_to_tag, in->to_tag, sizeof(r->dev_to_tag));
		relay_send(r, UK_ANSWER, "ACK", tx->cseq, tx->branch, NULL, NULL, NULL);
		snprintf(reason, sizeof(reason), "Device Answered %d", in->status);
		relay_answer_upper(r, in->status, reason, NULL, NULL);
		/* kept for the answer's retransmissions until the ACK (freed in sip_upstream_tick) */
		if (r->final == NULL)
			relay_free(r);		/* it could not be sent: nothing to keep */
	}
}

bool
sip_upstream_response(const SipIn *in, const Peer *peer)
{
	UpTx	   *tx = NULL;
	Upstream   *u;

	for (int i = 0; i < MAX_UP_TX; i++)
		if (txs[i].used && txs[i].cseq == in->cseq && strcmp(txs[i].call_id, in->call_id) == 0 &&
			(txs[i].kind == UK_RELAY_CANCEL) == (pg_strcasecmp(in->cseq_method, "CANCEL") == 0))
		{
			tx = &txs[i];
			break;
		}
	if (tx == NULL)
		return dev_ack_again(in, peer);
	u = &ups[tx->up];
	if (tx->kind == UK_RELAY_CANCEL || tx->kind == UK_RELAY_CTL || tx->kind == UK_RELAY_INVITE || tx->kind == UK_RELAY_BYE)
	{
		/* a device's answer to what a relay sent it: from that device only; a 1xx stops retransmissions */
		if (strcmp(peer->ip, tx->peer.ip) != 0 || (peer->transport == TRANSPORT_UDP && peer->port != tx->peer.port))
		{
			sip_count(C_WRONG_SOURCE, 1);
			return true;
		}
		if (in->status < 200)
		{
			tx->next_retx = DT_NOEND;
			if (tx->kind == UK_RELAY_INVITE && relays[tx->relay].used)
			{
				Relay	   *r = &relays[tx->relay];

				r->dev_provisional = true;
				if (r->cancel_deferred)
					relay_send_cancel(r, tx, r->ended_by);
			}
			return true;
		}
	}
	if (tx->kind == UK_RELAY_CANCEL)
	{
		/* the device's final answer to our CANCEL (200, or 481 when it had answered the INVITE): the INVITE's answer ends it */
		free_tx(tx);
		return true;
	}
	if (tx->kind == UK_RELAY_CTL)
	{
		CtlRelay   *c = &ctls[tx->relay];

		free_tx(tx);
		if (in->status >= 300 && c->used)
			ctl_refuse(c, psprintf("the device answered %d", in->status));
		return true;
	}
	if (tx->kind == UK_RELAY_INVITE || tx->kind == UK_RELAY_BYE)
	{
		Relay	   *r = &relays[tx->relay];

		if (tx->kind == UK_RELAY_INVITE && r->used)
		{
			UpTx		copy = *tx;

			free_tx(tx);
			relay_answered(r, &copy, in);
		}
		else
			free_tx(tx);
		return true;
	}
	if (strcmp(peer->ip, u->host) != 0 || peer->port != u->port || peer->transport != u->peer.transport)
	{
		sip_count(C_WRONG_SOURCE, 1);
		sip_log_limited(LOG_SOURCE, "a response to upstream \"%s\" from %s:%d ignored: the upstream is %s:%d",
						u->name, peer->ip, peer->port, u->host, u->port);
		return true;
	}
	if (in->status < 200)
	{
		tx->next_retx = DT_NOEND;
		return true;
	}
	switch (tx->kind)
	{
		case UK_REGISTER:
			{
				bool		with_auth = tx->with_auth;

				free_tx(tx);
				answered_register(u, with_auth, in);
				return true;
			}
		case UK_UNREGISTER:
			break;
		case UK_KEEPALIVE:
			u->ka_in_flight = false;
			if (in->status < 300)
			{
				u->missed = 0;
				u->last_ka_ok = sip_now;
				snapshot(u, NULL);
			}
			else
			{
				/* the upper platform no longer knows us (restarted, expired us): register again */
				free_tx(tx);
				fail(u, in->status, psprintf("%d to a keepalive", in->status));
				return true;
			}
			break;
		case UK_RELAY_INVITE:
		case UK_RELAY_BYE:
		case UK_RELAY_CANCEL:
		case UK_RELAY_CTL:
			break;				/* handled above */
		case UK_ANSWER:
		case UK_NOTIFY:
			u->pages_in_flight = Max(0, u->pages_in_flight - 1);
			if (tx->kind == UK_NOTIFY && in->status == 481 && u->subs[tx->sub].active &&
				strcmp(u->subs[tx->sub].call_id, tx->call_id) == 0)
			{
				/* the upper platform no longer has the subscription */
				u->subs[tx->sub].active = false;
				snapshot(u, NULL);
				sip_log_limited(LOG_OTHER, "upstream \"%s\" ended its %s subscription (481 to a NOTIFY)", u->name,
								sub_events[tx->sub]);
			}
			else if (in->status >= 300)
				sip_log_limited(LOG_OTHER, "upstream \"%s\" answered %d to a %s", u->name, in->status,
								tx->kind == UK_NOTIFY ? "NOTIFY" : "query answer");
			break;
	}
	free_tx(tx);
	return true;
}

/* ---------------------------------------------------------------- relayed controls and queries */

/*
 * A DeviceControl (PTZ...), RecordInfo or PresetQuery of an upper platform
 * for a channel it is shared, relayed to the device that owns the channel:
 * never the body as it came, but the command's allowed elements that
 * vms._sip_upstream_control rebuilt from the parsed body (refused: an
 * element named twice at the top, a nested CmdType/SN/DeviceID, an element
 * not allowed), wrapped as vms's own commands are (sip_manscdp_request) with
 * the ledger's channel code and an SN of ours; the device's answers are
 * rebuilt by vms._sip_upstream_control_answer from their listed fields, under
 * the upper platform's code, name and SN.  Looked up (and audited) by
 * vms._sip_upstream_control; refused, or the device not reachable: the
 * upper platform gets the answer that function built (Result ERROR, or
 * SumNum 0).  Kept until the device has answered all of it, or for
 * CTL_IDLE_MS after the last answer (PTZCmd has none).
 */

/* a body for an upper platform, queued (sub: a NOTIFY of that subscription, -1: a MESSAGE) */
static void
queue_page(Upstream *u, int sub, const char *data, size_t len)
{
	OutPage    *page = MemoryContextAlloc(vms_worker_cxt, offsetof(OutPage, data) + len);

	page->next = NULL;
	page->sub = sub;
	page->len = len;
	memcpy(page->data, data, len);
	if (u->pages_tail)
		u->pages_tail->next = page;
	else
		u->pages = page;
	u->pages_tail = page;
}

static void
ctl_free(CtlRelay *c)
{
	for (int i = 0; i < MAX_UP_TX; i++)
		if (txs[i].used && txs[i].kind == UK_RELAY_CTL && txs[i].relay == (int) (c - ctls))
			free_tx(&txs[i]);
	if (c->request)
		pfree(c->request);
	if (c->body)
		pfree(c->body);
	if (c->refused)
		pfree(c->refused);
	while (c->answers)
	{
		CtlAnswer  *a = c->answers;

		c->answers = a->next;
		ctl_answer_bytes -= a->len;
		pfree(a);
	}
	memset(c, 0, sizeof(*c));
}

/* the upstream a relay came from is still the one in its slot (not dropped, its slot not another's) */
static bool
up_current(int up, uint32 gen)
{
	return up >= 0 && up < MAX_UPSTREAMS && ups[up].used && ups[up].gen == gen;
}

/*
 * An upstream dropped or disabled: its relays in progress end with it (an
 * established call's device gets a BYE, a pending INVITE a CANCEL, and the
 * call's end is audited, ended by "dropped" or "disabled"), and what it
 * asked that was not looked at yet is forgotten: nothing of them goes to
 * whatever upstream takes the slot.  The audits of calls that ended are kept
 * (they carry their own names, not the slot's).  A disabled upstream's
 * address is still known: its upper platform is told that its calls ended
 * (a BYE for an established call, 487 for a pending INVITE); a dropped one's
 * is not told.  No final answer goes up again: its ACK could not match any
 * more (ACKs are looked up among enabled upstreams).
 */
static Relay *pending_relay(const PendingAnswer *p);

static void
drop_relays(int up, const char *by)
{
	bool		tell = strcmp(by, "disabled") == 0;

	/*
	 * First, so that the queue has room for the audits queued below; a call
	 * still waiting for its channel's lookup (its audit was to come then) is
	 * audited now.
	 */
	for (int i = 0; i < MAX_PENDING; i++)
		if (pending[i].used && pending[i].up == up && !pending[i].bye)
		{
			Relay	   *r = pending[i].relay > 0 ? pending_relay(&pending[i]) : NULL;

			pending[i].used = false;
			if (r != NULL)
				queue_bye_audit(r, r->cancelling ? r->ended_by : by);
		}
	for (int i = 0; i < MAX_RELAYS; i++)
		if (relays[i].used && relays[i].up == up)
		{
			Relay	   *r = &relays[i];

			if (tell && r->established)
				relay_bye_upper(r);
			else if (tell && r->final == NULL)
				relay_answer_upper(r, 487, "Request Terminated", NULL, NULL);
			r->final_next = 0;
			if (r->established)
			{
				relay_send(r, UK_RELAY_BYE, "BYE", 2, NULL, NULL, NULL, NULL);
				queue_bye_audit(r, by);
			}
			else if (r->dev_invited && !r->cancelling && relay_invite_tx(r) != NULL)
			{
				/* its INVITE is CANCELled; the relay waits for the device's answer (to end it, not to relay it) */
				relay_cancel(r, by);
				continue;
			}
			if (relays[i].cancelling && relay_invite_tx(&relays[i]) != NULL)
				continue;
			relay_free(&relays[i]);
		}
	for (int i = 0; i < MAX_CTLS; i++)
		if (ctls[i].used && ctls[i].up == up)
			ctl_free(&ctls[i]);
}

/* the relay a queued lookup is for, or NULL when it ended (its slot free or another's since) */
static Relay *
pending_relay(const PendingAnswer *p)
{
	Relay	   *r;

	if (p->relay <= 0 || p->relay > MAX_RELAYS)
		return NULL;
	r = &relays[p->relay - 1];
	if (!r->used || r->up != p->up || r->serial != p->relay_serial || !up_current(r->up, r->up_gen))
		return NULL;
	return r;
}

/* refused, unreachable or failed: the upper platform gets the refusal's answer */
static void
ctl_refuse(CtlRelay *c, const char *why)
{
	Upstream   *u = &ups[c->up];

	if (up_current(c->up, c->up_gen))
	{
		sip_log_limited(LOG_OTHER, "upstream \"%s\"'s %s for %s not relayed: %s", u->name, c->cmd, c->presented, why);
		if (c->refused && c->refused_len > 0)
			queue_page(u, -1, c->refused, c->refused_len);
	}
	ctl_free(c);
}

/* a MESSAGE from the upper platform that is a control or a relayed query */
static void
upstream_control(Upstream *u, const SipIn *in, const Peer *peer, const Manscdp *m)
{
	CtlRelay   *c = NULL;
	PendingAnswer *p;

	for (int i = 0; i < MAX_CTLS && c == NULL; i++)
		if (!ctls[i].used)
			c = &ctls[i];
	p = c && !m->json.overflow ? new_pending(u) : NULL;
	if (p == NULL)
	{
		sip_answer(in, peer, 503, "Service Unavailable", "Retry-After: 5\r\n");
		return;
	}
	memset(c, 0, sizeof(*c));
	c->used = true;
	c->up = (int) (u - ups);
	c->up_gen = u->gen;
	strlcpy(c->up_sn, m->sn, sizeof(c->up_sn));
	strlcpy(c->cmd, m->cmd_type, sizeof(c->cmd));
	strlcpy(c->root, m->root, sizeof(c->root));
	strlcpy(c->presented, m->device_id, sizeof(c->presented));
	snprintf(c->source, sizeof(c->source), "%s:%d", peer->ip, peer->port);
	c->request = MemoryContextStrdup(vms_worker_cxt, m->json.data);
	c->last = sip_now;
	p->ctl = (int) (c - ctls) + 1;
	sip_answer(in, peer, 200, "OK", NULL);
}

/* in the answering transaction: which channel and device, or why not (audited) */
static void
ctl_lookup(CtlRelay *c)
{
	Datum		values[7];
	Upstream   *u = &ups[c->up];

	if (!c->used)
		return;
	if (!up_current(c->up, c->up_gen))
	{
		ctl_free(c);
		return;
	}
	values[0] = CStringGetTextDatum(u->name);
	values[1] = CStringGetTextDatum(c->presented);
	values[2] = CStringGetTextDatum(c->up_sn);
	values[3] = CStringGetTextDatum(c->root);
	values[4] = CStringGetTextDatum(c->cmd);
	values[5] = CStringGetTextDatum(c->request);
	values[6] = CStringGetTextDatum(c->source);
	if (sip_sql_run(SIP_SQL_UPSTREAM_CONTROL, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "vms sip: could not look up a control of upstream \"%s\"", u->name);
	c->looked_up = true;
	if (SPI_processed != 1)
	{
		strlcpy(c->refusal, "not answered (unknown upstream or bad SN)", sizeof(c->refusal));
		return;
	}
	{
		HeapTuple	t = SPI_tuptable->vals[0];
		TupleDesc	d = SPI_tuptable->tupdesc;
		char	   *ch = SPI_getvalue(t, d, 1);
		char	   *dev = SPI_getvalue(t, d, 2);
		char	   *why = SPI_getvalue(t, d, 3);
		char	   *body = SPI_getvalue(t, d, 5);
		bool		isnull;
		Datum		a = SPI_getbinval(t, d, 4, &isnull);

		strlcpy(c->channel, ch ? ch : "", sizeof(c->channel));
		strlcpy(c->device, dev ? dev : "", sizeof(c->device));
		strlcpy(c->refusal, why ? why : "", sizeof(c->refusal));
		if (body)
			c->body = MemoryContextStrdup(vms_worker_cxt, body);
		else if (!why)
			strlcpy(c->refusal, "no body was built", sizeof(c->refusal));
		if (!isnull)
		{
			bytea	   *b = DatumGetByteaPP(a);

			c->refused_len = VARSIZE_ANY_EXHDR(b);
			c->refused = MemoryContextAlloc(vms_worker_cxt, c->refused_len + 1);
			memcpy(c->refused, VARDATA_ANY(b), c->refused_len);
		}
	}
}

/* out of the transaction: on to the device, or the refusal back */
static void
ctl_start(CtlRelay *c)
{
	Dev		   *d;
	char	   *body;
	SBuf	   *out;
	char		branch[20],
				call_id[32],
				tag[12];
	bool		tcp;
	UpTx	   *tx = NULL;

	if (c->refusal[0])
	{
		ctl_refuse(c, c->refusal);
		return;
	}
	d = sip_device(c->device, false);
	if (d == NULL || !d->online || !d->has_peer || !d->registered)
	{
		ctl_refuse(c, "the device is not online");
		return;
	}
	snprintf(c->our_sn, sizeof(c->our_sn), "%u", 1000000000u + (ctl_serial++ % 1000000000u));
	/* the elements SQL rebuilt, under the channel's code and our SN: nothing else of the upper platform's body */
	body = sip_manscdp_request(c->root, c->cmd, c->our_sn, c->channel, c->body);
	for (int i = 0; i < MAX_UP_TX && tx == NULL; i++)
		if (!txs[i].used)
			tx = &txs[i];
	if (tx == NULL)
	{
		pfree(body);
		ctl_refuse(c, "too many requests in flight");
		return;
	}
	tcp = d->peer.transport == TRANSPORT_TCP;
	sip_random_hex(branch, 16);
	sip_random_hex(call_id, 24);
	sip_random_hex(tag, 10);
	out = sip_scratch();
	sbuf_reset(out);
	sbuf_printf(out, "MESSAGE sip:%s@%s:%d SIP/2.0\r\n", c->channel, d->peer.ip, d->peer.port);
	sbuf_printf(out, "Via: SIP/2.0/%s %s:%d;rport;branch=z9hG4bK%s\r\n", tcp ? "TCP" : "UDP",
				sip_local_ip_for(&d->peer), sip_local_port(), branch);
	sbuf_printf(out, "From: <sip:%s@%s>;tag=%s\r\n", vms_sip_id, sip_realm(), tag);
	sbuf_printf(out, "To: <sip:%s@%.10s>\r\n", c->channel, c->channel);
	sbuf_printf(out, "Call-ID: %s\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nUser-Agent: vms\r\n", call_id);
	sbuf_printf(out, "Content-Type: Application/MANSCDP+xml\r\nContent-Length: %zu\r\n\r\n", strlen(body));
	sbuf_puts(out, body);
	pfree(body);
	if (out->overflow)
	{
		ctl_refuse(c, "too large");
		return;
	}
	memset(tx, 0, sizeof(*tx));
	tx->used = true;
	tx->up = c->up;
	tx->relay = (int) (c - ctls);
	tx->kind = UK_RELAY_CTL;
	tx->peer = d->peer;
	strlcpy(tx->branch, branch, sizeof(tx->branch));
	strlcpy(tx->call_id, call_id, sizeof(tx->call_id));
	tx->cseq = 1;
	tx->msg = MemoryContextAlloc(vms_worker_cxt, out->len);
	memcpy(tx->msg, out->data, out->len);
	tx->len = out->len;
	tx->sent_at = sip_now;
	tx->retx_ms = 500;
	tx->next_retx = tcp ? DT_NOEND : TimestampTzPlusMilliseconds(sip_now, 500);
	tx->give_up_ms = TX_GIVE_UP_MS;
	sip_send(&tx->peer, tx->msg, tx->len);
	c->sent = true;
	c->last = sip_now;
	ereport(LOG, (errmsg("vms sip: upstream \"%s\"'s %s for %s relayed to device %s (channel %s)", ups[c->up].name,
						 c->cmd, c->presented, c->device, c->channel)));
}

/*
 * A device's answer (MESSAGE Response) to a relayed control or query: queued
 * (its parsed JSON) for the next round, where vms._sip_upstream_control_answer
 * rebuilds it for the upper platform from the listed fields only, under the
 * code and name it knows the channel by and its SN; nothing of the device's
 * body goes up as it came.  true when it was one.  Only a Response of the
 * relayed CmdType with no element twice at the top level is taken; anything
 * else is dropped (logged) and the upper platform gets the refusal's answer,
 * as for a failed relay.
 */
bool
sip_upstream_device_answer(const char *device, const struct Manscdp *m, const char *body, size_t len)
{
	(void) body;
	(void) len;
	if (m->sn[0] == '\0')
		return false;
	for (int i = 0; i < MAX_CTLS; i++)
	{
		CtlRelay   *c = &ctls[i];
		Upstream   *u;

		if (!c->used || !c->sent || c->done || strcmp(c->our_sn, m->sn) != 0 || strcmp(c->device, device) != 0)
			continue;
		/* its upstream was dropped (its slot may be another's now): the answer goes nowhere */
		if (!up_current(c->up, c->up_gen))
		{
			ctl_free(c);
			return true;
		}
		u = &ups[c->up];
		if (strcmp(m->root, "Response") != 0 || strcmp(m->cmd_type, c->cmd) != 0 || m->repeated[0])
		{
			char		why[160];

			/* one line a relayed query at most: the relay ends here */
			snprintf(why, sizeof(why), "device %s answered with %s %s%s%s", device, m->root, m->cmd_type,
					 m->repeated[0] ? ", " : "", m->repeated);
			ereport(LOG, (errmsg("vms sip: upstream \"%s\"'s %s for %s: the answer was dropped: %s", u->name, c->cmd,
								 c->presented, why)));
			ctl_refuse(c, why);
			return true;
		}
		if (u->state != US_REGISTERED || m->json.overflow || m->json.len == 0 ||
			ctl_answer_bytes + m->json.len > MAX_CTL_ANSWER_BYTES)
			sip_log_limited(LOG_OTHER, "device %s's answer to upstream \"%s\"'s %s not relayed", device, u->name, c->cmd);
		else
		{
			CtlAnswer  *a = MemoryContextAlloc(vms_worker_cxt, offsetof(CtlAnswer, json) + m->json.len + 1);

			a->next = NULL;
			a->len = m->json.len;
			memcpy(a->json, m->json.data, m->json.len);
			a->json[m->json.len] = '\0';
			if (c->answers_tail)
				c->answers_tail->next = a;
			else
				c->answers = a;
			c->answers_tail = a;
			ctl_answer_bytes += a->len;
		}
		c->items += m->nitems;
		c->last = sip_now;
		/* a control has one answer; a query's pages end at SumNum */
		if (strcmp(c->cmd, "DeviceControl") == 0 || m->sum_num <= 0 || c->items >= m->sum_num)
		{
			c->done = true;
			if (c->answers == NULL)
				ctl_free(c);
		}
		return true;
	}
	return false;
}

/* in the answering transaction: the device's answers to a relayed control or query, rebuilt and queued up */
static void
ctl_answers_up(CtlRelay *c)
{
	Upstream   *u = &ups[c->up];

	if (!up_current(c->up, c->up_gen))
	{
		ctl_free(c);
		return;
	}
	while (c->answers)
	{
		CtlAnswer  *a = c->answers;
		Datum		values[6];

		c->answers = a->next;
		if (c->answers == NULL)
			c->answers_tail = NULL;
		values[0] = CStringGetTextDatum(u->name);
		values[1] = CStringGetTextDatum(c->presented);
		values[2] = CStringGetTextDatum(c->channel);
		values[3] = CStringGetTextDatum(c->up_sn);
		values[4] = CStringGetTextDatum(c->cmd);
		values[5] = CStringGetTextDatum(a->json);
		ctl_answer_bytes -= a->len;
		pfree(a);
		/* a page (row) each: a long list goes in several MESSAGEs, each with the whole answer's SumNum */
		if (sip_sql_run(SIP_SQL_UPSTREAM_CONTROL_ANSWER, values, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "vms sip: could not rebuild a device's answer for upstream \"%s\"", u->name);
		if (SPI_processed > 0 && u->state == US_REGISTERED)
		{
			uint64		queued = 0;

			for (uint64 r = 0; r < SPI_processed; r++)
			{
				bool		isnull;
				Datum		v = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull);

				if (!isnull)
				{
					bytea	   *b = DatumGetByteaPP(v);

					queue_page(u, -1, VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b));
					queued++;
				}
			}
			if (queued > 0)
				continue;
		}
		sip_log_limited(LOG_OTHER, "a device's answer to upstream \"%s\"'s %s for %s not relayed", u->name, c->cmd,
						c->presented);
	}
}

static bool
any_ctl_answers(void)
{
	for (int i = 0; i < MAX_CTLS; i++)
		if (ctls[i].used && ctls[i].answers)
			return true;
	return false;
}

/* ---------------------------------------------------------------- requests from upper platforms */

static PendingAnswer *
new_pending(Upstream *u)
{
	for (int i = 0; i < MAX_PENDING; i++)
		if (!pending[i].used)
		{
			PendingAnswer *p = &pending[i];

			memset(p, 0, sizeof(*p));
			p->used = true;
			p->up = (int) (u - ups);
			strlcpy(p->name, u->name, sizeof(p->name));
			return p;
		}
	return NULL;
}

/*
 * SUBSCRIBE from the upper platform: Event Catalog, Alarm or MobilePosition,
 * one subscription per event and upstream, refreshed in its dialog, ended by
 * Expires: 0, its expiry or a 481 to a NOTIFY.  Catalog: what changes in
 * its share from then on is NOTIFYed (ADD, DEL, UPDATE, ON, OFF), and the
 * whole share every catalog_push_interval.  Alarm: the alarms of shared
 * channels go as NOTIFYs in its dialog, filtered by the body's priorities
 * and methods (without one they go as MESSAGEs).  MobilePosition: the
 * latest position of each shared channel when it changed, at once when a
 * report wakes the worker, at most once per channel every Interval seconds
 * (a change held back goes when its Interval ends).
 */
static void
upstream_subscribe(Upstream *u, const SipIn *in, const Peer *peer)
{
	long		expires = in->expires >= 0 ? in->expires : 3600;
	int			k;
	UpSub	   *sb;
	bool		same;
	char		extra[64];
	char		filter[sizeof(((UpSub *) 0)->filter)];
	int			interval = 5;

	if (u->state != US_REGISTERED)
	{
		sip_answer(in, peer, 403, "Not Registered", NULL);
		return;
	}
	for (k = 0; k < SUB_KINDS; k++)
		if (strcasecmp(in->event, sub_events[k]) == 0)
			break;
	if (k == SUB_KINDS)
	{
		sip_answer(in, peer, 489, "Bad Event", "Allow-Events: Catalog, Alarm, MobilePosition\r\n");
		return;
	}
	sb = &u->subs[k];
	same = sb->active && strcmp(sb->call_id, in->call_id) == 0;
	expires = Min(expires, 86400L);
	if (expires == 0)
	{
		if (same)
		{
			sb->active = false;
			snapshot(u, NULL);
			ereport(LOG, (errmsg("vms sip: upstream \"%s\" ended its %s subscription", u->name, sub_events[k])));
		}
		sip_answer(in, peer, 200, "OK", "Expires: 0\r\n");
		return;
	}
	/* the body (a MANSCDP Query) of an Alarm or MobilePosition subscription: its conditions */
	filter[0] = '\0';
	if (k != SUB_CATALOG && in->body_len > 0)
	{
		Manscdp		m;

		if (manscdp_parse(in->body, in->body_len, (size_t) vms_sip_max_message, &m) != MANSCDP_OK ||
			m.json.overflow || m.json.len >= sizeof(filter) || m.repeated[0])
		{
			manscdp_free(&m);
			sip_count(C_PARSE_ERRORS, 1);
			sip_answer(in, peer, 400, "Bad MANSCDP Body", NULL);
			return;
		}
		strlcpy(filter, m.json.data, sizeof(filter));
		if (k == SUB_POSITION)
		{
			char	   *iv = sip_json_field(m.json.data, "Interval");

			if (iv && strspn(iv, "0123456789") == strlen(iv) && strlen(iv) > 0 && strlen(iv) < 6)
				interval = Max(1, Min(atoi(iv), 3600));
		}
		manscdp_free(&m);
	}
	if (!same)
	{
		if (k == SUB_CATALOG)
		{
			PendingAnswer *p = new_pending(u);

			if (p == NULL)
			{
				sip_answer(in, peer, 503, "Service Unavailable", "Retry-After: 5\r\n");
				return;
			}
			p->changes = true;
			p->baseline = true;
			strlcpy(p->sn, "0", sizeof(p->sn));
			sb->pending = true;
			u->next_push = u->push_interval > 0 ? TimestampTzPlusMilliseconds(sip_now, (int64) u->push_interval * 1000) : 0;
		}
		strlcpy(sb->call_id, in->call_id, sizeof(sb->call_id));
		strlcpy(sb->their_tag, in->from_tag, sizeof(sb->their_tag));
		sip_to_tag(in->call_id, sb->our_tag, sizeof(sb->our_tag));
		sb->cseq = 0;
		sb->fresh = true;
		sb->next_check = k == SUB_CATALOG ? TimestampTzPlusMilliseconds(sip_now, u->reconcile_ms) : sip_now;
		ereport(LOG, (errmsg("vms sip: upstream \"%s\" subscribed to %s for %ld s", u->name, sub_events[k], expires)));
	}
	sb->active = true;
	sb->expires_at = TimestampTzPlusMilliseconds(sip_now, expires * 1000);
	if (k != SUB_CATALOG && (!same || in->body_len > 0))
	{
		strlcpy(sb->filter, filter, sizeof(sb->filter));
		sb->interval_s = interval;
	}
	snapshot(u, NULL);
	snprintf(extra, sizeof(extra), "Expires: %ld\r\n", expires);
	sip_answer(in, peer, 200, "OK", extra);
}

/* the branch of a request's top Via (libosip2 parsed it): false when it has none or it is longer than len - 1 (MAX_BRANCH) */
static bool
top_branch(const SipIn *in, char *buf, size_t len)
{
	osip_via_t *via = NULL;
	osip_generic_param_t *b = NULL;

	buf[0] = '\0';
	if (in->msg == NULL || osip_message_get_via(in->msg, 0, &via) < 0 || via == NULL ||
		osip_via_param_get_byname(via, "branch", &b) != 0 || b == NULL || b->gvalue == NULL ||
		b->gvalue[0] == '\0' || strlen(b->gvalue) >= len)
		return false;
	strlcpy(buf, b->gvalue, len);
	return true;
}

/*
 * CANCEL from the upper platform (RFC 3261 9.2): for its relayed INVITE
 * (the same Call-ID, From tag, CSeq number and top Via branch) still
 * without a final answer: 200 to the CANCEL, 487 to the INVITE, and the
 * device's INVITE CANCELled (relay_cancel).  One that matches no INVITE:
 * 481; for one answered finally already: 200, and nothing changes.
 */
static void
upstream_cancel(Upstream *u, const SipIn *in, const Peer *peer)
{
	Relay	   *r = relay_by_upper_call(in->call_id);
	char		branch[MAX_BRANCH];

	if (!top_branch(in, branch, sizeof(branch)))
	{
		sip_count(C_PARSE_ERRORS, 1);
		sip_answer(in, peer, 400, "Bad Request (no Via branch, or one of 256 characters or more)", NULL);
		return;
	}
	if (r == NULL || r->up != (int) (u - ups) || strcmp(r->up_their_tag, in->from_tag) != 0 || r->up_cseq != in->cseq ||
		r->up_branch[0] == '\0' || strcmp(r->up_branch, branch) != 0)
	{
		sip_answer(in, peer, 481, "Call/Transaction Does Not Exist", NULL);
		return;
	}
	sip_answer(in, peer, 200, "OK", NULL);
	if (r->final != NULL)
		return;					/* answered already: a CANCEL has no effect */
	relay_answer_upper(r, 487, "Request Terminated", NULL, NULL);
	relay_cancel(r, "cancel");
}

/*
 * ACK from the upper platform for the final answer to its relayed INVITE
 * (the INVITE's Call-ID, From tag and CSeq number; for a non-2xx its
 * transaction's, 17.2.3, for a 2xx a new one in the dialog, 13.2.2.4),
 * from the address, port and transport the INVITE came from (the
 * upstream's may have changed since): the answer's retransmissions stop.
 * A non-2xx's relay is freed Timer I (T4) later over UDP, at once over
 * TCP (17.2.1); an INVITE retransmitted meanwhile gets the same answer.
 */
static void
upstream_ack(Upstream *u, const SipIn *in, const Peer *peer)
{
	Relay	   *r = relay_by_upper_call(in->call_id);

	if (r == NULL || r->up != (int) (u - ups) || strcmp(r->up_their_tag, in->from_tag) != 0 || r->up_cseq != in->cseq ||
		r->final == NULL)
		return;
	if (strcmp(peer->ip, r->upper_peer.ip) != 0 || peer->port != r->upper_peer.port ||
		peer->transport != r->upper_peer.transport)
	{
		sip_count(C_WRONG_SOURCE, 1);	/* one from elsewhere stops nothing */
		return;
	}
	r->final_next = 0;
	if (!r->established && r->free_at == 0)
		r->free_at = r->upper_peer.transport == TRANSPORT_UDP ? TimestampTzPlusMilliseconds(sip_now, T4_MS) : sip_now;
}

/*
 * INVITE from the upper platform for a channel it is shared: 100 at once,
 * the channel looked up (by the code the upstream knows it by) at the next
 * round, then relayed to its device; a retransmission gets the same answer.
 */
static void
upstream_invite(Upstream *u, const SipIn *in, const Peer *peer)
{
	Relay	   *r = relay_by_upper_call(in->call_id);
	PendingAnswer *p;
	osip_header_t *subject = NULL;
	size_t		len;

	if (r != NULL)
	{
		if (r->final)
			sip_send(&r->upper_peer, r->final, r->final_len);
		else
			sip_answer(in, peer, 100, "Trying", NULL);
		return;
	}
	if (u->state != US_REGISTERED)
	{
		sip_answer(in, peer, 403, "Not Registered", NULL);
		return;
	}
	for (int i = 0; i < MAX_RELAYS && r == NULL; i++)
		if (!relays[i].used)
			r = &relays[i];
	p = r ? new_pending(u) : NULL;
	if (p == NULL)
	{
		sip_answer(in, peer, 486, "Busy Here", NULL);
		return;
	}
	memset(r, 0, sizeof(*r));
	r->used = true;
	r->up = (int) (u - ups);
	r->up_gen = u->gen;
	r->serial = ++relay_serial;
	len = in->body ? (size_t) (in->body - in->raw) + in->body_len : in->raw_hlen;
	r->raw = MemoryContextAlloc(vms_worker_cxt, len + 1);
	memcpy(r->raw, in->raw, len);
	r->raw[len] = '\0';
	r->raw_len = len;
	r->upper_peer = *peer;
	strlcpy(r->up_call_id, in->call_id, sizeof(r->up_call_id));
	sip_to_tag(in->call_id, r->up_our_tag, sizeof(r->up_our_tag));
	strlcpy(r->up_their_tag, in->from_tag, sizeof(r->up_their_tag));
	strlcpy(r->up_from_user, in->from_user, sizeof(r->up_from_user));
	r->up_cseq = in->cseq;
	if (!top_branch(in, r->up_branch, sizeof(r->up_branch)))
		r->up_branch[0] = '\0';	/* none, or too long: no CANCEL matches it */
	strlcpy(r->presented, in->uri_user, sizeof(r->presented));
	if (in->body_len > 0)
		sdp_media_addresses(in->body, in->body_len, r->media, sizeof(r->media));
	if (osip_message_header_get_byname(in->msg, "subject", 0, &subject) >= 0 && subject && subject->hvalue &&
		strpbrk(subject->hvalue, "\r\n") == NULL)
		strlcpy(r->subject, subject->hvalue, sizeof(r->subject));
	r->started = sip_now;
	p->relay = (int) (r - relays) + 1;
	p->relay_serial = r->serial;
	sip_answer(in, peer, 100, "Trying", NULL);
}

bool
sip_upstream_request(const SipIn *in, const Peer *peer)
{
	Upstream   *u = NULL;
	Manscdp		m;
	ManscdpStatus st;
	PendingAnswer *p = NULL;

	for (int i = 0; i < MAX_UPSTREAMS && u == NULL; i++)
		if (ups[i].used && ups[i].enabled && strcmp(ups[i].platform_id, in->from_user) == 0)
			u = &ups[i];
	if (u == NULL)
		return false;
	/* the address, port and transport registered to: From and the address alone are forged easily over UDP */
	if (strcmp(in->method, "ACK") == 0)
	{
		upstream_ack(u, in, peer);	/* never answered */
		return true;
	}
	if (strcmp(peer->ip, u->host) != 0 || peer->port != u->port || peer->transport != u->peer.transport)
	{
		sip_count(C_WRONG_SOURCE, 1);
		sip_log_limited(LOG_SOURCE, "%s from upstream \"%s\"'s id at %s:%d refused: the upstream is %s:%d",
						in->method, u->name, peer->ip, peer->port, u->host, u->port);
		sip_answer(in, peer, 403, "Forbidden (not the upstream's address and port)", NULL);
		return true;
	}
	if (strcmp(in->method, "OPTIONS") == 0)
	{
		sip_answer(in, peer, 200, "OK", "Allow: MESSAGE, OPTIONS\r\n");
		return true;
	}
	if (strcmp(in->method, "SUBSCRIBE") == 0)
	{
		upstream_subscribe(u, in, peer);
		return true;
	}
	if (strcmp(in->method, "INVITE") == 0)
	{
		upstream_invite(u, in, peer);
		return true;
	}
	if (strcmp(in->method, "CANCEL") == 0)
	{
		upstream_cancel(u, in, peer);
		return true;
	}
	if (strcmp(in->method, "BYE") == 0)
	{
		Relay	   *r = relay_by_upper_call(in->call_id);

		/* a device's error answer kept for its retransmissions is no dialog either */
		if (r == NULL || r->up != (int) (u - ups) || strcmp(r->up_their_tag, in->from_tag) != 0 ||
			(!r->established && !r->cancelling && r->final != NULL))
		{
			sip_answer(in, peer, 481, "Call/Transaction Does Not Exist", NULL);
			return true;
		}
		sip_answer(in, peer, 200, "OK", NULL);
		if (r->cancelling)
			return true;		/* given up already (audited); the device's answer ends it */
		if (!r->established && r->final == NULL && r->dev_invited)
		{
			/* before the device answered: its INVITE is CANCELled, the upper platform's answered 487 */
			relay_answer_upper(r, 487, "Request Terminated", NULL, NULL);
			relay_cancel(r, "upstream");
			return true;
		}
		if (r->established)
			relay_send(r, UK_RELAY_BYE, "BYE", 2, NULL, NULL, NULL, NULL);
		queue_bye_audit(r, "upstream");
		relay_free(r);
		return true;
	}
	if (strcmp(in->method, "MESSAGE") != 0)
	{
		sip_answer(in, peer, 501, "Not Implemented", NULL);
		return true;
	}
	if (u->state != US_REGISTERED)
	{
		sip_answer(in, peer, 403, "Not Registered", NULL);
		return true;
	}
	if (in->body_len == 0)
	{
		sip_answer(in, peer, 400, "Missing Body", NULL);
		return true;
	}
	st = manscdp_parse(in->body, in->body_len, (size_t) vms_sip_max_message, &m);
	if (st != MANSCDP_OK)
	{
		sip_count(C_PARSE_ERRORS, 1);
		sip_log_limited(LOG_PARSE, "MESSAGE from upstream \"%s\": %s", u->name, manscdp_status_text(st));
		manscdp_free(&m);
		sip_answer(in, peer, 400, "Bad MANSCDP Body", NULL);
		return true;
	}
	for (int i = 0; i < SEEN_QUERIES; i++)
		if (seen_queries[i].cseq == in->cseq && strcmp(seen_queries[i].call_id, in->call_id) == 0 &&
			sip_now < TimestampTzPlusMilliseconds(seen_queries[i].at, 64000))
		{
			/* a retransmission: our 200 was lost, the answer is on its way */
			manscdp_free(&m);
			sip_answer(in, peer, 200, "OK", NULL);
			return true;
		}
	if (m.sn[0] && m.device_id[0] && strcmp(m.device_id, u->local_id) != 0 &&
		((strcmp(m.root, "Control") == 0 && strcmp(m.cmd_type, "DeviceControl") == 0) ||
		 (strcmp(m.root, "Query") == 0 &&
		  (strcmp(m.cmd_type, "RecordInfo") == 0 || strcmp(m.cmd_type, "PresetQuery") == 0))))
	{
		/* for a channel: relayed to its device (answered 200 there) */
		strlcpy(seen_queries[seen_next].call_id, in->call_id, sizeof(seen_queries[seen_next].call_id));
		seen_queries[seen_next].cseq = in->cseq;
		seen_queries[seen_next].at = sip_now;
		seen_next = (seen_next + 1) % SEEN_QUERIES;
		upstream_control(u, in, peer, &m);
		manscdp_free(&m);
		return true;
	}
	/*
	 * Ambiguous (an element twice at the top, a CmdType, SN or DeviceID below
	 * it): a relayed control or query is refused and audited by
	 * vms._sip_upstream_control, which sees the same; anything else is refused
	 * here, before what the worker read (the first) and what SQL would read of
	 * its JSON (the last) can differ.
	 */
	if (m.repeated[0])
	{
		sip_count(C_PARSE_ERRORS, 1);
		sip_log_limited(LOG_PARSE, "MESSAGE from upstream \"%s\" (%s): %s, refused", u->name, m.cmd_type, m.repeated);
		manscdp_free(&m);
		sip_answer(in, peer, 400, "Bad MANSCDP Body", NULL);
		return true;
	}
	if (strcmp(m.root, "Query") == 0 &&
		(strcmp(m.cmd_type, "Catalog") == 0 || strcmp(m.cmd_type, "DeviceInfo") == 0 ||
		 strcmp(m.cmd_type, "DeviceStatus") == 0) && m.sn[0])
	{
		p = new_pending(u);
		if (p == NULL)
		{
			manscdp_free(&m);
			sip_answer(in, peer, 503, "Service Unavailable", "Retry-After: 5\r\n");
			return true;
		}
		strlcpy(p->cmd, m.cmd_type, sizeof(p->cmd));
		strlcpy(p->sn, m.sn, sizeof(p->sn));
		strlcpy(p->device_id, m.device_id, sizeof(p->device_id));
		strlcpy(seen_queries[seen_next].call_id, in->call_id, sizeof(seen_queries[seen_next].call_id));
		seen_queries[seen_next].cseq = in->cseq;
		seen_queries[seen_next].at = sip_now;
		seen_next = (seen_next + 1) % SEEN_QUERIES;
	}
	else if (strcmp(m.root, "Query") == 0)
		sip_log_limited(LOG_OTHER, "upstream \"%s\" asked for %s: not answered (not supported)", u->name, m.cmd_type);
	manscdp_free(&m);
	sip_answer(in, peer, 200, "OK", NULL);
	return true;
}

/* the queries that came in: their answers from SQL, queued to send */
static void
answer_pending(void)
{
	PendingAnswer todo[MAX_PENDING];
	int			n = 0;

	for (int i = 0; i < MAX_PENDING; i++)
		if (pending[i].used)
		{
			todo[n++] = pending[i];
			pending[i].used = false;
		}
	if (n == 0 && !any_ctl_answers())
		return;
	/* taken off the queue first: an answer that fails is not retried forever */
	vms_worker_begin_tx("vms sip: answering an upper platform");
	for (int k = 0; k < n; k++)
	{
		Upstream   *u = &ups[todo[k].up];
		Datum		values[5];
		int			rc;
		int			sub = -1;	/* the bodies go as NOTIFYs of this subscription, else as MESSAGEs */

		/* a call's end is audited even when its upstream was dropped since (the names are its own) */
		if (todo[k].bye)
		{
			Datum		bv[6];

			bv[0] = CStringGetTextDatum(todo[k].name);
			bv[1] = CStringGetTextDatum(todo[k].device_id);
			bv[2] = CStringGetTextDatum(todo[k].channel);
			bv[3] = CStringGetTextDatum(todo[k].media);
			bv[4] = CStringGetTextDatum(todo[k].source);
			bv[5] = CStringGetTextDatum(todo[k].by);
			if (sip_sql_run(SIP_SQL_UPSTREAM_BYE, bv, NULL, false, 0) != SPI_OK_SELECT)
				elog(ERROR, "vms sip: could not audit the end of a call of upstream \"%s\"", todo[k].name);
			continue;
		}
		if (!u->used || strcmp(u->name, todo[k].name) != 0)
			continue;
		if (todo[k].relay > 0)
		{
			Relay	   *r = pending_relay(&todo[k]);
			char		source[64];

			/* the call ended before its lookup (the slot may be another upstream's call now) */
			if (r == NULL)
				continue;

			snprintf(source, sizeof(source), "%s:%d", r->upper_peer.ip, r->upper_peer.port);
			values[0] = CStringGetTextDatum(todo[k].name);
			values[1] = CStringGetTextDatum(r->presented);
			values[2] = CStringGetTextDatum(r->media);
			values[3] = CStringGetTextDatum(source);
			/* not read-only: the INVITE is audited, relayed or refused */
			rc = sip_sql_run(SIP_SQL_UPSTREAM_RELAY, values, NULL, false, 1);
			if (rc != SPI_OK_SELECT)
				elog(ERROR, "vms sip: could not look up a channel for upstream \"%s\"", todo[k].name);
			if (SPI_processed == 1)
			{
				char	   *ch = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
				char	   *dev = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
				char	   *why = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);

				strlcpy(r->channel, ch ? ch : "", sizeof(r->channel));
				strlcpy(r->device, dev ? dev : "", sizeof(r->device));
				strlcpy(r->refusal, why ? why : "", sizeof(r->refusal));
			}
			continue;
		}
		if (todo[k].ctl > 0)
		{
			ctl_lookup(&ctls[todo[k].ctl - 1]);
			continue;
		}
		if (todo[k].alarms)
		{
			char		nulls[3] = {' ', ' ', ' '};

			u->alarm_pending = false;
			values[0] = CStringGetTextDatum(todo[k].name);
			values[1] = Int64GetDatum((int64) next_sn);
			next_sn += 100;
			/* with an Alarm subscription its conditions select, and the alarms go as its NOTIFYs */
			sub = u->subs[SUB_ALARM].active ? SUB_ALARM : -1;
			if (sub >= 0)
				values[2] = CStringGetTextDatum(u->subs[SUB_ALARM].filter[0] ? u->subs[SUB_ALARM].filter : "{}");
			else
				nulls[2] = 'n';
			rc = sip_sql_run(SIP_SQL_UPSTREAM_ALARMS, values, nulls, false, 0);
		}
		else if (todo[k].positions)
		{
			u->subs[SUB_POSITION].pending = false;
			if (!u->subs[SUB_POSITION].active)
				continue;
			values[0] = CStringGetTextDatum(todo[k].name);
			values[1] = Int64GetDatum((int64) next_sn);
			values[2] = BoolGetDatum(todo[k].baseline);
			values[3] = Int32GetDatum(Max(1, u->subs[SUB_POSITION].interval_s));
			values[4] = BoolGetDatum(todo[k].whole);
			next_sn += 1000;
			sub = SUB_POSITION;
			rc = sip_sql_run(SIP_SQL_UPSTREAM_POSITIONS, values, NULL, false, 0);
		}
		else if (todo[k].changes)
		{
			u->subs[SUB_CATALOG].pending = false;
			values[0] = CStringGetTextDatum(todo[k].name);
			values[1] = CStringGetTextDatum(todo[k].sn);
			values[2] = BoolGetDatum(todo[k].baseline);
			values[3] = BoolGetDatum(todo[k].push);
			sub = SUB_CATALOG;
			rc = sip_sql_run(SIP_SQL_UPSTREAM_CHANGES, values, NULL, false, 0);
		}
		else
		{
			values[0] = CStringGetTextDatum(todo[k].name);
			values[1] = CStringGetTextDatum(todo[k].cmd);
			values[2] = CStringGetTextDatum(todo[k].sn);
			values[3] = CStringGetTextDatum(todo[k].device_id);
			rc = sip_sql_run(SIP_SQL_UPSTREAM_ANSWER, values, NULL, true, 0);
		}
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "vms sip: could not answer upstream \"%s\"", todo[k].name);
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			bool		isnull;
			Datum		v = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull);
			bytea	   *b;
			OutPage	   *page;

			if (isnull)
			{
				/* positions: when the first change held back (sent less than an Interval ago) is due */
				if (todo[k].positions)
				{
					Datum		due = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &isnull);

					if (!isnull)
						u->subs[SUB_POSITION].next_check =
							Min(u->subs[SUB_POSITION].next_check,
								Max(DatumGetTimestampTz(due),
									TimestampTzPlusMilliseconds(u->subs[SUB_POSITION].last_check, POSITION_GAP_MS)));
				}
				continue;
			}
			b = DatumGetByteaPP(v);
			page = MemoryContextAlloc(vms_worker_cxt, offsetof(OutPage, data) + VARSIZE_ANY_EXHDR(b));
			page->next = NULL;
			page->sub = sub;
			page->len = VARSIZE_ANY_EXHDR(b);
			memcpy(page->data, VARDATA_ANY(b), page->len);
			if (u->pages_tail)
				u->pages_tail->next = page;
			else
				u->pages = page;
			u->pages_tail = page;
		}
	}
	/* devices' answers to relayed controls and queries, rebuilt for their upper platforms */
	for (int i = 0; i < MAX_CTLS; i++)
		if (ctls[i].used && ctls[i].answers)
			ctl_answers_up(&ctls[i]);
	vms_worker_end_tx();
	for (int i = 0; i < MAX_CTLS; i++)
		if (ctls[i].used && ctls[i].done && ctls[i].answers == NULL)
			ctl_free(&ctls[i]);
	/* the looked-up calls and controls go to their devices (out of the transaction) */
	for (int k = 0; k < n; k++)
	{
		Relay	   *r = todo[k].relay > 0 ? pending_relay(&todo[k]) : NULL;

		if (r != NULL)
			relay_start(r);
		if (todo[k].ctl > 0 && ctls[todo[k].ctl - 1].used)
			ctl_start(&ctls[todo[k].ctl - 1]);
	}
}

/* ---------------------------------------------------------------- timers */

static bool
any_pending(void)
{
	for (int i = 0; i < MAX_PENDING; i++)
		if (pending[i].used)
			return true;
	return any_ctl_answers();
}

/*
 * The retransmissions due (network only, no SQL: the worker sends them
 * before any SQL step of its round, so that a failing database delays none):
 * final answers to the upper platform not ACKed yet, at T1, 2*T1, ... at
 * most T2 apart (17.2.1 Timer G, 13.3.1.4) and never past 64*T1 from the
 * first (the last due time is capped there: Timer H is checked then, in
 * sip_upstream_tick), and the relay's requests not answered yet.
 */
void
sip_upstream_retransmit(void)
{
	for (int i = 0; i < MAX_RELAYS; i++)
	{
		Relay	   *r = &relays[i];
		TimestampTz end;

		if (!r->used || r->final == NULL || r->final_next == 0 || sip_now < r->final_next)
			continue;
		end = TimestampTzPlusMilliseconds(r->final_at, TIMER_H_MS);
		if (sip_now >= end)
			continue;			/* Timer H: sip_upstream_tick */
		sip_send(&r->upper_peer, r->final, r->final_len);
		r->final_interval_ms = Min(r->final_interval_ms * 2, T2_MS);
		r->final_next = Min(end, TimestampTzPlusMilliseconds(GetCurrentTimestamp(), r->final_interval_ms));
	}
	for (int i = 0; i < MAX_UP_TX; i++)
	{
		UpTx	   *tx = &txs[i];

		if (!tx->used || tx->next_retx == DT_NOEND || sip_now < tx->next_retx ||
			sip_now >= TimestampTzPlusMilliseconds(tx->sent_at, tx->give_up_ms))
			continue;
		sip_send(&tx->peer, tx->msg, tx->len);
		tx->retx_ms = Min(tx->retx_ms * 2, 4000);
		tx->next_retx = TimestampTzPlusMilliseconds(sip_now, tx->retx_ms);
	}
}

void
sip_upstream_tick(void)
{
	answer_pending();

	/*
	 * Relayed calls answered finally but not established (refused, CANCELled,
	 * timed out, an error of the device): kept 64*T1 for the upper platform's
	 * retransmissions of its INVITE (and CANCEL) and for the answer's own
	 * until the ACK (below), then freed -- or Timer I (T4) after the ACK --
	 * unless the device's INVITE still waits for its final answer (its
	 * transaction ends the relay then).
	 */
	for (int i = 0; i < MAX_RELAYS; i++)
		if (relays[i].used && !relays[i].established && relays[i].final &&
			(sip_now >= TimestampTzPlusMilliseconds(relays[i].final_at, 2 * TX_GIVE_UP_MS) ||
			 (relays[i].free_at != 0 && sip_now >= relays[i].free_at)) &&
			relay_invite_tx(&relays[i]) == NULL)
			relay_free(&relays[i]);

	/*
	 * Final answers to the upper platform not ACKed yet: sent again by
	 * sip_upstream_retransmit for 64*T1 (Timer H).  A 2xx never ACKed ends
	 * its call (13.3.1.4): the device gets a BYE, the upper platform too,
	 * audited as "no ack".
	 */
	sip_upstream_retransmit();
	for (int i = 0; i < MAX_RELAYS; i++)
	{
		Relay	   *r = &relays[i];

		if (!r->used || r->final == NULL || r->final_next == 0 || sip_now < r->final_next)
			continue;
		if (sip_now >= TimestampTzPlusMilliseconds(r->final_at, TIMER_H_MS))
		{
			r->final_next = 0;
			if (r->established)
			{
				sip_log_limited(LOG_OTHER, "upstream \"%s\" never ACKed the 200 to its INVITE for %s: the call is ended",
								ups[r->up].name, r->presented);
				relay_send(r, UK_RELAY_BYE, "BYE", 2, NULL, NULL, NULL, NULL);
				if (up_current(r->up, r->up_gen))
					relay_bye_upper(r);
				queue_bye_audit(r, "no ack");
				relay_free(r);
			}
		}
	}

	/* ACKs of devices' answers past 64*T1: no retransmission of those answers can come any more */
	for (int i = 0; i < MAX_DEV_ACKS; i++)
		if (dev_acks[i].used && sip_now >= dev_acks[i].until)
			dev_ack_free(&dev_acks[i]);

	/* relayed controls and queries the device is done with (PTZCmd is never answered) */
	for (int i = 0; i < MAX_CTLS; i++)
		if (ctls[i].used && ctls[i].looked_up && ctls[i].answers == NULL &&
			sip_now >= TimestampTzPlusMilliseconds(ctls[i].last, CTL_IDLE_MS))
			ctl_free(&ctls[i]);

	for (int i = 0; i < MAX_UP_TX; i++)
	{
		UpTx	   *tx = &txs[i];
		Upstream   *u;

		if (!tx->used)
			continue;
		u = &ups[tx->up];
		if (sip_now >= TimestampTzPlusMilliseconds(tx->sent_at, tx->give_up_ms))
		{
			UpKind		kind = tx->kind;

			if (kind == UK_RELAY_INVITE && relays[tx->relay].used && !relays[tx->relay].cancelling)
			{
				/* no final answer in time: 408 up, the device's INVITE CANCELled (relay_cancel waits on) */
				Relay	   *r = &relays[tx->relay];

				relay_answer_upper(r, 408, "Request Timeout", NULL, NULL);
				relay_cancel(r, "timeout");
				if (tx->used && sip_now < TimestampTzPlusMilliseconds(tx->sent_at, tx->give_up_ms))
					continue;
			}

			free_tx(tx);
			if (kind == UK_REGISTER)
				fail(u, 408, "no answer to REGISTER");
			else if (kind == UK_KEEPALIVE)
			{
				u->ka_in_flight = false;
				u->missed++;
				if (u->missed >= u->ka_count)
					fail(u, 408, psprintf("%d keepalives unanswered", u->missed));
				else
					snapshot(u, NULL);
			}
			else if (kind == UK_RELAY_INVITE && relays[tx->relay].used && relays[tx->relay].final == NULL)
				relay_free(&relays[tx->relay]);	/* CANCELled, and no final answer since */
			/* else its final answer up (408, 487) stays for its retransmissions until the ACK (freed above) */
			else if (kind == UK_RELAY_CTL && ctls[tx->relay].used)
				ctl_refuse(&ctls[tx->relay], "the device did not answer");
			else if (kind == UK_RELAY_BYE || kind == UK_RELAY_INVITE || kind == UK_RELAY_CANCEL || kind == UK_RELAY_CTL)
				;
			else if (kind == UK_ANSWER || kind == UK_NOTIFY)
			{
				u->pages_in_flight = Max(0, u->pages_in_flight - 1);
				sip_log_limited(LOG_OTHER, "upstream \"%s\" did not acknowledge a query answer", u->name);
			}
		}
		/* a transaction still running was retransmitted if due by sip_upstream_retransmit, above */
	}

	for (int i = 0; i < MAX_UPSTREAMS; i++)
	{
		Upstream   *u = &ups[i];

		if (!u->used || !u->enabled)
			continue;
		/* over TCP: the connection being opened is established, or it failed (refused, timed out) */
		if (u->tcp_connecting && !sip_net_conn_connecting(&u->peer))
		{
			u->tcp_connecting = false;
			if (!sip_net_conn_alive(&u->peer) && !u->conn_failed[0])
				snprintf(u->conn_failed, sizeof(u->conn_failed), "could not connect over TCP: %s",
						 sip_net_conn_error(&u->peer));
		}
		if (u->conn_failed[0] && u->state != US_DISABLED)
			fail(u, 0, send_failure(u, NULL));
		u->conn_failed[0] = '\0';
		switch (u->state)
		{
			case US_UNREGISTERED:
			case US_FAILING:
				if (!u->reg_in_flight && sip_now >= u->next_attempt)
					start_register(u, u->state == US_FAILING ? "retry after backoff" : "registering");
				break;
			case US_REGISTERING:
				break;
			case US_REGISTERED:
				if (sip_now >= u->expires_at)
				{
					fail(u, 0, "the registration ran out before it was renewed");
					break;
				}
				if (!u->reg_in_flight && sip_now >= u->refresh_at)
				{
					if (!send_register(u, u->expires))
						fail(u, 0, send_failure(u, "could not send REGISTER"));
					break;
				}
				for (int k = 0; k < SUB_KINDS; k++)
					if (u->subs[k].active && sip_now >= u->subs[k].expires_at)
					{
						u->subs[k].active = false;
						snapshot(u, NULL);
						ereport(LOG, (errmsg("vms sip: upstream \"%s\": its %s subscription expired", u->name,
											 sub_events[k])));
					}
				{
					UpSub	   *sb = &u->subs[SUB_CATALOG];
					bool		push = u->push_interval > 0 && u->next_push && sip_now >= u->next_push;

					if (sb->active && !sb->pending && (push || sip_now >= sb->next_check))
					{
						PendingAnswer *p = new_pending(u);

						if (p)
						{
							p->changes = true;
							p->push = push;
							snprintf(p->sn, sizeof(p->sn), "%u", next_sn++);
							sb->pending = true;
							sb->last_check = sip_now;
							if (push)
								u->next_push = TimestampTzPlusMilliseconds(sip_now, (int64) u->push_interval * 1000);
						}
						sb->next_check = TimestampTzPlusMilliseconds(sip_now, u->reconcile_ms);
					}
				}
				{
					UpSub	   *sb = &u->subs[SUB_POSITION];

					if (sb->active && !sb->pending && sip_now >= sb->next_check &&
						sip_now >= TimestampTzPlusMilliseconds(sb->last_check, POSITION_GAP_MS))
					{
						PendingAnswer *p = new_pending(u);
						bool		whole = sb->fresh || sip_now >= sb->next_whole;

						if (p)
						{
							p->positions = true;
							p->baseline = sb->fresh;
							p->whole = whole;
							sb->fresh = false;
							sb->pending = true;
							sb->last_check = sip_now;
							sb->checks++;
							if (whole)
								sb->next_whole = TimestampTzPlusMilliseconds(sip_now, Max((int64) u->reconcile_ms,
																						  (int64) Max(1, sb->interval_s) * 1000));
						}
						/*
						 * next: when a position is reported (woken; at most every POSITION_GAP_MS), when a
						 * change held back is due (the answer says), and the whole share every
						 * reconcile_interval (at least the Interval) anyway
						 */
						sb->next_check = p == NULL ? TimestampTzPlusMilliseconds(sip_now, CHANGE_GAP_MS) :
							Max(sb->next_whole, TimestampTzPlusMilliseconds(sip_now, POSITION_GAP_MS));
					}
				}
				if (!u->alarm_pending && sip_now >= u->next_alarm_check)
				{
					PendingAnswer *p = new_pending(u);

					if (p)
					{
						p->alarms = true;
						u->alarm_pending = true;
					}
					u->next_alarm_check = TimestampTzPlusMilliseconds(sip_now, ALARM_CHECK_MS);
				}
				if (!u->ka_in_flight && sip_now >= u->next_ka)
				{
					send_keepalive(u);
					u->next_ka = TimestampTzPlusMilliseconds(sip_now, (int64) u->ka_interval * 1000);
				}
				send_pages(u);
				break;
			case US_DISABLED:
				break;
		}
	}

	/* what this round queued (a change's compare, say) is answered and sent now, not a round later */
	if (any_pending())
	{
		answer_pending();
		for (int i = 0; i < MAX_UPSTREAMS; i++)
			if (ups[i].used && ups[i].enabled && ups[i].state == US_REGISTERED)
				send_pages(&ups[i]);
	}
}

/* when the next retransmission is due (a relayed call's final answer or a request's), DT_NOEND: none */
TimestampTz
sip_upstream_next_due(void)
{
	TimestampTz due = DT_NOEND;

	for (int i = 0; i < MAX_RELAYS; i++)
		if (relays[i].used && relays[i].final && relays[i].final_next != 0)
			due = Min(due, relays[i].final_next);
	for (int i = 0; i < MAX_UP_TX; i++)
		if (txs[i].used && txs[i].next_retx != DT_NOEND)
			due = Min(due, txs[i].next_retx);
	return due;
}

void
sip_upstream_flush(void)
{
	Datum		values[1];
	char	   *doc;

	if (!snapshots_ready || snapshots.len == 0)
		return;
	doc = psprintf("[%s]", snapshots.data);
	values[0] = CStringGetTextDatum(doc);
	vms_worker_begin_tx("vms sip: writing upstream states");
	sip_sql_exec(SIP_SQL_UPSTREAM_FLUSH, values, NULL);
	vms_worker_end_tx();
	sbuf_reset(&snapshots);
}

void
sip_upstream_describe(char *buf, size_t len)
{
	size_t		used = 0;

	buf[0] = '\0';
	for (int i = 0; i < MAX_UPSTREAMS && used + 1 < len; i++)
		if (ups[i].used)
		{
			int			n = snprintf(buf + used, len - used, "%s%s %s", used ? ", " : "upstream ", ups[i].name,
									 state_names[ups[i].state]);

			if (n < 0)
				break;
			used += Min((size_t) n, len - used - 1);
		}
}
