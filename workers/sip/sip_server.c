/*
 * sip_server.c — the server role (sip_server.h): what the SIP worker does with each message a device
 * sends: REGISTER (digest, bans, expiry), MESSAGE (keepalive, query
 * answers, alarms, positions), NOTIFY (subscribed events), OPTIONS.
 *
 * Nothing here waits on the database except the lookup of a device code
 * not yet in memory; state changes are queued for the next batched write.
 * Bad input is answered 400/403 where the message can be answered at all,
 * else dropped; either way it is counted and logged (rate-limited).
 */
#include "postgres.h"

#include "pgtime.h"
#include "utils/datetime.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "manscdp.h"
#include "sip_db.h"
#include "sip_devices.h"
#include "sip_digest.h"
#include "sip_fastpath.h"
#include "sip_net.h"
#include "sip_control.h"
#include "sip_requests.h"
#include "sip_server.h"
#include "sip_upstream.h"
#include "../worker_tx.h"

#define NONCE_MAX_AGE_S 300

/* what the message being handled holds outside PostgreSQL's memory, freed even after an error */
static SipIn cur_in;
static Manscdp cur_m;
static bool cur_m_live = false;
static MemoryContext msg_cxt = NULL;

/* Date: as GB/T 28181 devices expect it (local time, milliseconds, no zone): their clock source */
static void
date_header(char *buf, size_t len)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			tz;

	if (timestamp2tm(sip_now, &tz, &tm, &fsec, NULL, NULL) != 0)
	{
		buf[0] = '\0';
		return;
	}
	snprintf(buf, len, "Date: %04d-%02d-%02dT%02d:%02d:%02d.%03d\r\n",
			 tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (fsec / 1000));
}

static void
remember_peer(Dev *d, const Peer *peer, const SipIn *in)
{
	if (!d->has_peer || d->peer.transport != peer->transport || d->peer.port != peer->port ||
		strcmp(d->peer.ip, peer->ip) != 0 || d->peer.conn_gen != peer->conn_gen)
	{
		d->peer = *peer;
		d->has_peer = true;
		sip_mark_dirty(d);
	}
	if (in->user_agent[0])
	{
		/* valid UTF-8 already (sip_parse); cut at a character boundary to fit */
		char		ua[sizeof(d->user_agent)];
		size_t		n = text_utf8_clip(in->user_agent, strlen(in->user_agent), sizeof(ua) - 1);

		memcpy(ua, in->user_agent, n);
		ua[n] = '\0';
		if (strcmp(d->user_agent, ua) != 0)
		{
			strlcpy(d->user_agent, ua, sizeof(d->user_agent));
			sip_mark_dirty(d);
		}
	}
}

/* what a nonce is bound to: the device and the address and transport the challenge went to */
static void
nonce_binding(const Dev *d, const Peer *peer, char *buf, size_t len)
{
	snprintf(buf, len, "%s|%s|%s|%d", d->code, peer->transport == TRANSPORT_TCP ? "TCP" : "UDP", peer->ip, peer->port);
}

/*
 * A 401 is about twice the size of the REGISTER that asks for it, so
 * challenges to a spoofed source would reflect traffic at it: each source
 * IP address gets CHALLENGE_BURST challenges, refilled at CHALLENGE_RATE
 * per second; beyond that the REGISTER gets no answer (devices retry) and
 * is counted (challenges_limited).  At most MAX_CHALLENGE_SOURCES addresses
 * are tracked; an address is forgotten once its allowance is full again,
 * and while the table is full of busy addresses a new one is not answered.
 */
#define CHALLENGE_RATE 20
#define CHALLENGE_BURST 400
#define MAX_CHALLENGE_SOURCES 10000

typedef struct ChallengeSource
{
	char		ip[64];			/* hash key */
	double		tokens;
	TimestampTz at;
} ChallengeSource;

static HTAB *challenge_sources = NULL;

static double
challenge_tokens(const ChallengeSource *c)
{
	double		s = (double) (sip_now - c->at) / 1000000.0;

	return Min((double) CHALLENGE_BURST, c->tokens + Max(s, 0) * CHALLENGE_RATE);
}

static void
challenge_sources_expire(void)
{
	HASH_SEQ_STATUS it;
	ChallengeSource *c;

	if (challenge_sources == NULL)
		return;
	hash_seq_init(&it, challenge_sources);
	while ((c = hash_seq_search(&it)) != NULL)
		if (challenge_tokens(c) >= CHALLENGE_BURST)
			hash_search(challenge_sources, c->ip, HASH_REMOVE, NULL);
}

static bool
challenge_allowed(const Peer *peer)
{
	char		key[64];
	ChallengeSource *c;
	bool		found;

	if (challenge_sources == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(key);
		ctl.entrysize = sizeof(ChallengeSource);
		ctl.hcxt = vms_worker_cxt;
		challenge_sources = hash_create("vms sip challenge sources", 256, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	memset(key, 0, sizeof(key));
	strlcpy(key, peer->ip, sizeof(key));
	c = hash_search(challenge_sources, key, HASH_FIND, NULL);
	if (c == NULL)
	{
		if (hash_get_num_entries(challenge_sources) >= MAX_CHALLENGE_SOURCES)
		{
			challenge_sources_expire();
			if (hash_get_num_entries(challenge_sources) >= MAX_CHALLENGE_SOURCES)
				return false;
		}
		c = hash_search(challenge_sources, key, HASH_ENTER, &found);
		c->tokens = CHALLENGE_BURST;
		c->at = sip_now;
	}
	c->tokens = challenge_tokens(c);
	c->at = sip_now;
	if (c->tokens < 1)
		return false;
	c->tokens -= 1;
	return true;
}

static void
challenge(const Dev *d, const SipIn *in, const Peer *peer, bool stale)
{
	char		nonce[DIGEST_NONCE_LEN + 1];
	char		bind[128];
	char		hdr[600];
	const char *qop = d->no_qop ? "" : ", qop=\"auth\"";

	if (!challenge_allowed(peer))
	{
		sip_count(C_CHALLENGES_LIMITED, 1);
		sip_log_limited(LOG_AUTH, "REGISTER from %s (%s:%d) not challenged: over %d challenges a second for that address",
						d->code, peer->ip, peer->port, CHALLENGE_RATE);
		return;
	}

	nonce_binding(d, peer, bind, sizeof(bind));
	digest_make_nonce((time_t) (sip_epoch(sip_now)), bind, nonce);
	snprintf(hdr, sizeof(hdr),
			 "WWW-Authenticate: Digest realm=\"%s\", nonce=\"%s\", algorithm=MD5%s%s\r\n"
			 "WWW-Authenticate: Digest realm=\"%s\", nonce=\"%s\", algorithm=SHA-256%s%s\r\n",
			 sip_realm(), nonce, qop, stale ? ", stale=TRUE" : "",
			 sip_realm(), nonce, qop, stale ? ", stale=TRUE" : "");
	sip_answer(in, peer, 401, "Unauthorized", hdr);
}

/*
 * Failed authentications and bans are kept per (device, source IP address):
 * a failure counts only for an answer to a nonce this worker gave that
 * device at that address, and a ban refuses that address only, so nobody
 * can lock a device out from elsewhere.  The table is bounded; entries go
 * when their ban ends or, without a ban, vms.sip_ban_minutes after their
 * last failure.  It lives in memory: a worker restart lifts every ban.
 */
#define MAX_AUTH_SOURCES 10000
#define AUTH_SOURCE_KEY 88

typedef struct AuthSource
{
	char		key[AUTH_SOURCE_KEY];	/* "device|ip": hash key */
	int			failures;
	TimestampTz last_failure;
	TimestampTz banned_until;
} AuthSource;

static HTAB *auth_sources = NULL;

static void auth_sources_expire(void);

static AuthSource *
auth_source(const Dev *d, const Peer *peer, bool create)
{
	char		key[AUTH_SOURCE_KEY];
	AuthSource *a;
	bool		found;

	if (auth_sources == NULL)
	{
		HASHCTL		ctl;

		if (!create)
			return NULL;
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = AUTH_SOURCE_KEY;
		ctl.entrysize = sizeof(AuthSource);
		ctl.hcxt = vms_worker_cxt;
		auth_sources = hash_create("vms sip auth sources", 256, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	memset(key, 0, sizeof(key));
	snprintf(key, sizeof(key), "%s|%s", d->code, peer->ip);
	a = hash_search(auth_sources, key, HASH_FIND, NULL);
	if (a != NULL || !create)
		return a;
	if (hash_get_num_entries(auth_sources) >= MAX_AUTH_SOURCES)
	{
		auth_sources_expire();
		if (hash_get_num_entries(auth_sources) >= MAX_AUTH_SOURCES)
		{
			sip_log_limited(LOG_AUTH, "failed authentications of %s from %s not tracked: %d sources are",
							d->code, peer->ip, MAX_AUTH_SOURCES);
			return NULL;
		}
	}
	a = hash_search(auth_sources, key, HASH_ENTER, &found);
	a->failures = 0;
	a->last_failure = 0;
	a->banned_until = 0;
	return a;
}

/* once a second: ended bans and old failures are forgotten */
static void
auth_sources_expire(void)
{
	HASH_SEQ_STATUS it;
	AuthSource *a;
	int64		keep_ms = (int64) Max(vms_sip_ban_minutes, 1) * 60000;

	challenge_sources_expire();
	if (auth_sources == NULL)
		return;
	hash_seq_init(&it, auth_sources);
	while ((a = hash_seq_search(&it)) != NULL)
	{
		if (a->banned_until ? sip_now >= a->banned_until
			: TimestampTzPlusMilliseconds(a->last_failure, keep_ms) <= sip_now)
			hash_search(auth_sources, a->key, HASH_REMOVE, NULL);
	}
}

/* this source is banned for this device */
static bool
source_banned(const Dev *d, const Peer *peer)
{
	AuthSource *a = auth_source(d, peer, false);

	return a != NULL && a->banned_until && sip_now < a->banned_until;
}

/*
 * A wrong answer to a valid nonce of this device and source: counted for
 * the device (device_session.auth_failures, every source) and for the
 * source, which is banned after vms.sip_ban_failures of them.
 */
static void
auth_failed(Dev *d, const SipIn *in, const Peer *peer, const char *why)
{
	AuthSource *a = auth_source(d, peer, true);

	sip_count(C_AUTH_FAILURES, 1);
	d->auth_failures++;
	sip_event(d, "auth_failed", psprintf("%s (from %s:%d)", why, peer->ip, peer->port));
	if (a != NULL)
	{
		a->failures++;
		a->last_failure = sip_now;
		if (a->failures >= vms_sip_ban_failures && vms_sip_ban_minutes > 0 && !a->banned_until)
		{
			a->banned_until = TimestampTzPlusMilliseconds(sip_now, (int64) vms_sip_ban_minutes * 60000);
			/* the session row shows the latest ban of any source */
			d->banned_until = Max(d->banned_until, a->banned_until);
			sip_event(d, "banned", psprintf("%d failed authentications from %s", a->failures, peer->ip));
		}
	}
	sip_mark_dirty(d);
	sip_log_limited(LOG_AUTH, "REGISTER from %s (%s:%d) refused: %s", d->code, peer->ip, peer->port, why);
	sip_answer(in, peer, 403, "Forbidden", NULL);
}

static const char *
unquote(const char *s, char *buf, size_t len)
{
	size_t		n;

	if (s == NULL)
		return "";
	n = strlen(s);
	if (n >= 2 && s[0] == '"' && s[n - 1] == '"')
		snprintf(buf, len, "%.*s", (int) (n - 2), s + 1);
	else
		snprintf(buf, len, "%s", s);
	return buf;
}

static void
handle_register(const SipIn *in, const Peer *peer)
{
	Dev		   *d;
	osip_authorization_t *auth = NULL;
	char		b1[128],
				b2[128];
	DigestAlg	alg;
	const char *ha1;
	char		default_ha1[65];
	NonceCheck	nc;
	char		bind[128];
	unsigned long seq = 0,
				count = 0;
	bool		has_qop;
	char		extra[256];
	int			granted;

	if (in->expires == -1)
	{
		sip_answer(in, peer, 400, "Missing Expires", NULL);
		return;
	}
	if (in->expires < 0)
	{
		sip_answer(in, peer, 400, "Bad Expires", NULL);
		return;
	}
	d = sip_device(in->from_user, true);
	if (d == NULL)
	{
		sip_answer(in, peer, 403, "Forbidden", NULL);
		return;
	}
	if (!d->in_ledger && vms_sip_unknown_devices == UNKNOWN_REJECT)
	{
		sip_log_limited(LOG_AUTH, "REGISTER from unknown device %s (%s:%d) refused (vms.sip_unknown_devices = reject)",
						in->from_user, peer->ip, peer->port);
		sip_answer(in, peer, 403, "Unknown Device", NULL);
		return;
	}
	if (source_banned(d, peer))
	{
		sip_count(C_AUTH_FAILURES, 1);
		sip_answer(in, peer, 403, "Forbidden (banned)", NULL);
		return;
	}
	if (osip_message_get_authorization(in->msg, 0, &auth) < 0 || auth == NULL)
	{
		challenge(d, in, peer, false);
		return;
	}

	/*
	 * The nonce first: an old nonce, or one made for another device or
	 * address, is not a wrong password, and anything else wrong in an answer
	 * to it proves nothing about who sent it: challenge again, count
	 * nothing.  Only an answer to this device's nonce at this address counts
	 * as a failure below.
	 */
	nonce_binding(d, peer, bind, sizeof(bind));
	nc = digest_check_nonce(unquote(auth->nonce, b1, sizeof(b1)), bind, (time_t) sip_epoch(sip_now),
							NONCE_MAX_AGE_S, &seq);
	if (nc != NONCE_OK)
	{
		challenge(d, in, peer, nc == NONCE_STALE);
		return;
	}

	/* the credential: the device's own HA1, else one from vms.sip_password */
	if (!digest_alg_from_name(unquote(auth->algorithm, b1, sizeof(b1)), &alg))
	{
		auth_failed(d, in, peer, "unsupported digest algorithm");
		return;
	}
	if (d->has_cred)
	{
		if (strcmp(unquote(auth->realm, b2, sizeof(b2)), d->realm) != 0)
		{
			auth_failed(d, in, peer, "wrong realm");
			return;
		}
		ha1 = alg == DIGEST_MD5 ? d->ha1_md5 : d->ha1_sha256;
	}
	else if (vms_sip_password && vms_sip_password[0])
	{
		if (strcmp(unquote(auth->realm, b2, sizeof(b2)), sip_realm()) != 0)
		{
			auth_failed(d, in, peer, "wrong realm");
			return;
		}
		digest_ha1(alg, d->code, sip_realm(), vms_sip_password, default_ha1, sizeof(default_ha1));
		ha1 = default_ha1;
	}
	else
	{
		auth_failed(d, in, peer, "no credential for the device and no vms.sip_password");
		return;
	}
	if (strcmp(unquote(auth->username, b1, sizeof(b1)), d->code) != 0)
	{
		auth_failed(d, in, peer, "digest username is not the device code");
		return;
	}
	/* the digest covers the Request-URI it names: it must be this request's */
	if (in->req_uri[0] == '\0' || strcmp(unquote(auth->uri, b1, sizeof(b1)), in->req_uri) != 0)
	{
		auth_failed(d, in, peer, "digest uri is not the Request-URI");
		return;
	}
	has_qop = auth->message_qop && unquote(auth->message_qop, b2, sizeof(b2))[0];
	if (has_qop && (strcasecmp(b2, "auth") != 0 || !digest_parse_nc(auth->nonce_count, &count) ||
					auth->cnonce == NULL))
	{
		auth_failed(d, in, peer, "digest qop is not auth with an 8-hex-digit nc and a cnonce");
		return;
	}
	if (!has_qop && !d->no_qop)
	{
		auth_failed(d, in, peer, "digest without qop=auth (device_session.digest_qop is on for this device)");
		return;
	}
	if (!digest_verify(alg, ha1, auth->nonce, auth->nonce_count, auth->cnonce, auth->message_qop,
					   "REGISTER", auth->uri, auth->response))
	{
		auth_failed(d, in, peer, "wrong password");
		return;
	}
	/* each (nonce, nc) once: an older nonce, or this one without a higher nc, is a replay */
	if (seq < d->nonce_seq || (seq == d->nonce_seq && (!has_qop || count <= d->nonce_nc)))
	{
		sip_count(C_REPLAYED, 1);
		sip_log_limited(LOG_AUTH, "REGISTER from %s (%s:%d) refused: nonce %s with nc %s was used before",
						d->code, peer->ip, peer->port, auth->nonce ? auth->nonce : "", has_qop ? auth->nonce_count : "(none)");
		challenge(d, in, peer, true);
		return;
	}
	d->nonce_seq = (uint32) seq;
	d->nonce_nc = has_qop ? (uint32) count : PG_UINT32_MAX;
	if (auth_sources != NULL)
	{
		char		key[AUTH_SOURCE_KEY];

		memset(key, 0, sizeof(key));
		snprintf(key, sizeof(key), "%s|%s", d->code, peer->ip);
		hash_search(auth_sources, key, HASH_REMOVE, NULL);
	}
	if (d->auth_failures != 0)
	{
		d->auth_failures = 0;
		sip_mark_dirty(d);
	}

	if (in->expires == 0)
	{
		bool		was = d->registered;

		d->registered = false;
		d->expires_at = sip_now;
		remember_peer(d, peer, in);
		if (was)
			sip_event(d, "unregistered", "Expires: 0");
		sip_flip(d, false, "unregistered");
		sip_mark_dirty(d);
		date_header(extra, sizeof(extra));
		sip_answer(in, peer, 200, "OK", extra);
		return;
	}
	if (in->expires < vms_sip_min_expires)
	{
		snprintf(extra, sizeof(extra), "Min-Expires: %d\r\n", vms_sip_min_expires);
		sip_answer(in, peer, 423, "Interval Too Brief", extra);
		return;
	}
	granted = (int) Min(in->expires, (long) vms_sip_max_expires);

	if (!d->in_ledger)
	{
		/* vms.sip_unknown_devices = accept: into the ledger for governance */
		sip_db_queue(SIP_SQL_ADD_DEVICE, d->code, psprintf("{\"address\":\"%s\"}", peer->ip));
		d->in_ledger = true;
	}
	remember_peer(d, peer, in);
	if (!d->registered)
	{
		d->registered_at = sip_now;
		sip_event(d, "registered", psprintf("expires %d s", granted));
	}
	d->registered = true;
	d->expires_at = TimestampTzPlusMilliseconds(sip_now, (int64) granted * 1000);
	d->last_keepalive = sip_now;	/* a registration is a sign of life */
	d->grace_until = 0;
	sip_flip(d, true, "registered");
	sip_mark_dirty(d);
	sip_count(C_REGISTRATIONS, 1);

	date_header(extra, sizeof(extra));
	snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), "Expires: %d\r\n", granted);
	/* GB/T 28181-2022: the version the device speaks (device_session.gb_version); the answer says ours */
	if (sip_control_gb_version(in, d))
		snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), "X-GB-Ver: 3.0\r\n");
	sip_answer(in, peer, 200, "OK", extra);
}

/* a keepalive from a registered device over its registered transport */
static void
handle_keepalive(const SipIn *in, const Peer *peer, Dev *d)
{
	sip_count(C_KEEPALIVES, 1);
	if (in->fast)
		sip_count(C_KEEPALIVES_FAST, 1);
	if (!d->online)
	{
		if (!vms_sip_keepalive_revives)
		{
			sip_answer(in, peer, 403, "Register Again", NULL);
			return;
		}
		sip_flip(d, true, "keepalive");
	}
	d->last_keepalive = sip_now;
	d->grace_until = 0;
	remember_peer(d, peer, in);
	sip_mark_dirty(d);
	sip_answer(in, peer, 200, "OK", NULL);
}

/* the items of a catalog document as one JSON array */
static char *
items_array(Manscdp *m)
{
	SBuf		b;
	char	   *s;

	sbuf_init(&b, (size_t) 64 << 20);
	sbuf_append(&b, "[", 1);
	for (int i = 0; i < m->nitems; i++)
	{
		if (i > 0)
			sbuf_append(&b, ",", 1);
		sbuf_puts(&b, m->items[i].json);
	}
	sbuf_append(&b, "]", 1);
	s = pstrdup(b.overflow ? "[]" : b.data);
	sbuf_free(&b);
	return s;
}

/* events a device reports on its own: catalog changes, alarms, positions */
static bool
device_report(Dev *d, Manscdp *m)
{
	if (strcmp(m->cmd_type, "Catalog") == 0)
	{
		sip_db_queue(SIP_SQL_CATALOG_APPLY, d->code, items_array(m));
		sip_count(C_CATALOG_ITEMS, m->nitems);
		return true;
	}
	if (strcmp(m->cmd_type, "Alarm") == 0)
	{
		sip_db_queue(SIP_SQL_ALARM, d->code, m->json.data);
		return true;
	}
	if (strcmp(m->cmd_type, "MobilePosition") == 0)
	{
		sip_db_queue(SIP_SQL_POSITION, d->code, m->json.data);
		return true;
	}
	return false;
}

/*
 * MESSAGE and NOTIFY: only from a registered device, over the transport
 * and from the address of its registration (or its TCP connection); the
 * body is parsed only then.  Anything else is 403: an unregistered device
 * registers again, a message from elsewhere is counted and logged.
 */
static void
handle_manscdp(const SipIn *in, const Peer *peer, bool is_notify)
{
	ManscdpStatus st;
	Dev		   *d = sip_device(in->from_user, true);

	if (d == NULL || !d->in_ledger || !d->registered || d->expires_at <= sip_now)
	{
		/* not registered (or expired): 403 makes devices register again */
		sip_answer(in, peer, 403, "Not Registered", NULL);
		return;
	}
	if (!sip_peer_is_device(d, peer))
	{
		sip_wrong_source(d, in->method, peer);
		sip_answer(in, peer, 403, "Forbidden (not the registered source)", NULL);
		return;
	}
	if (in->body_len == 0)
	{
		sip_answer(in, peer, 400, "Missing Body", NULL);
		return;
	}
	/* the fast path read the body already (sip_fastpath.c): the same fields manscdp_parse gives */
	st = in->fast ? MANSCDP_OK : manscdp_parse(in->body, in->body_len, (size_t) vms_sip_max_message, &cur_m);
	cur_m_live = true;
	if (st != MANSCDP_OK)
	{
		sip_count(C_PARSE_ERRORS, 1);
		sip_log_limited(LOG_PARSE, "%s from %s (%s:%d): %s", in->method, in->from_user, peer->ip, peer->port,
						manscdp_status_text(st));
		sip_answer(in, peer, 400, st == MANSCDP_TOO_LARGE ? "Body Too Large" : "Bad MANSCDP Body", NULL);
	}
	else if (strcmp(cur_m.root, "Notify") == 0 && strcmp(cur_m.cmd_type, "Keepalive") == 0)
		handle_keepalive(in, peer, d);
	else if (strcmp(cur_m.root, "Response") == 0)
	{
		/* answers to our queries (or to an upper platform's, relayed); unsolicited ones are acknowledged and ignored */
		remember_peer(d, peer, in);
		if (!sip_upstream_device_answer(d->code, &cur_m, in->body, in->body_len))
			sip_requests_manscdp(d, in->from_user, &cur_m);
		sip_answer(in, peer, 200, "OK", NULL);
	}
	else if (strcmp(cur_m.root, "Notify") == 0)
	{
		if (is_notify)
			sip_requests_notify(in, d, &cur_m);
		device_report(d, &cur_m);
		sip_answer(in, peer, 200, "OK", NULL);
	}
	else
		sip_answer(in, peer, 200, "OK", NULL);
	manscdp_free(&cur_m);
	cur_m_live = false;
}

/* the request is for this platform: Request-URI user and From domain */
static bool
our_domain(const SipIn *in)
{
	const char *realm = sip_realm();

	if (in->uri_user[0] && strcmp(in->uri_user, vms_sip_id) != 0 && strcmp(in->uri_user, realm) != 0)
		return false;
	/* a 10-digit host is a GB/T 28181 domain: it must be ours */
	if (strlen(in->uri_host) == 10 && strspn(in->uri_host, "0123456789") == 10 &&
		strcmp(in->uri_host, realm) != 0)
		return false;
	if (strlen(in->from_host) == 10 && strspn(in->from_host, "0123456789") == 10 &&
		strcmp(in->from_host, realm) != 0)
		return false;
	return true;
}

static void
handle_one(const char *buf, size_t len, const Peer *peer)
{
	SipIn	   *in = &cur_in;
	SipParseStatus st;

	/*
	 * A keepalive of the common shape is read without libosip2 and libxml2
	 * (sip_fastpath.c: same fields, and the same handling below); anything
	 * else is parsed in full.
	 */
	if (sip_fastpath_keepalive(buf, len, (size_t) vms_sip_max_message, in, &cur_m))
	{
		cur_m_live = true;
		st = SIPP_OK;
	}
	else
		st = sip_parse(buf, len, (size_t) vms_sip_max_message, in);
	if (st != SIPP_OK)
	{
		sip_count(C_PARSE_ERRORS, 1);
		sip_log_limited(LOG_PARSE, "dropped a message from %s:%d: %s", peer->ip, peer->port, in->why);
		/* missing headers may still leave enough to address a 400 */
		if (st == SIPP_MISSING_HEADER && sip_answerable(in))
			sip_answer(in, peer, 400, "Bad Request", NULL);
		return;
	}
	if (in->user_agent_refused)
		sip_log_limited(LOG_PARSE, "User-Agent from %s:%d left out: neither UTF-8 nor GB18030", peer->ip, peer->port);
	if (!in->is_request)
	{
		/* an answer to the client role (upper platforms), else to a request to a device */
		if (!sip_upstream_response(in, peer))
			sip_requests_response(in, peer);
		return;
	}
	/* from an upper platform: the client role answers it */
	if (sip_upstream_request(in, peer))
		return;
	if (strcmp(in->method, "ACK") == 0)
		return;
	if (!sip_is_gbcode(in->from_user))
	{
		sip_count(C_PARSE_ERRORS, 1);
		sip_log_limited(LOG_DOMAIN, "%s from %s:%d refused: \"%s\" is not a 20-digit code",
						in->method, peer->ip, peer->port, in->from_user);
		sip_answer(in, peer, 403, "Invalid Device ID", NULL);
	}
	else if (!our_domain(in))
	{
		sip_log_limited(LOG_DOMAIN, "%s from %s (%s:%d) refused: addressed to another domain (%s@%s)",
						in->method, in->from_user, peer->ip, peer->port, in->uri_user, in->uri_host);
		sip_answer(in, peer, 403, "Wrong Domain", NULL);
	}
	else if (strcmp(in->method, "REGISTER") == 0)
		handle_register(in, peer);
	else if (strcmp(in->method, "MESSAGE") == 0)
		handle_manscdp(in, peer, false);
	else if (strcmp(in->method, "NOTIFY") == 0)
		handle_manscdp(in, peer, true);
	else if (strcmp(in->method, "BYE") == 0 && sip_upstream_bye_from_device(in, peer))
		sip_answer(in, peer, 200, "OK", NULL);	/* a call an upper platform made through us */
	else if (strcmp(in->method, "BYE") == 0)
	{
		/* the device ended a media session: only the dialog's own device may */
		switch (sip_requests_bye_from_device(in->call_id, peer))
		{
			case 1:
				sip_answer(in, peer, 200, "OK", NULL);
				break;
			case -1:
				sip_answer(in, peer, 403, "Forbidden (not the registered source)", NULL);
				break;
			default:
				sip_answer(in, peer, 481, "Call/Transaction Does Not Exist", NULL);
		}
	}
	else if (strcmp(in->method, "OPTIONS") == 0)
		sip_answer(in, peer, 200, "OK", "Allow: REGISTER, MESSAGE, NOTIFY, SUBSCRIBE, OPTIONS\r\n");
	else
		sip_answer(in, peer, 501, "Not Implemented", NULL);
}

/*
 * One message, in a memory context of its own that is emptied afterwards.
 * An error while handling it (a failed lookup, say) ends only this
 * message: what libosip2 and libxml2 allocated for it is freed, any
 * transaction is rolled back, the sender gets a 500 where it can be
 * answered, and the next message is handled as usual.
 */
void
sip_handle(const char *buf, size_t len, const Peer *peer)
{
	MemoryContext caller = CurrentMemoryContext;

	if (msg_cxt == NULL)
		msg_cxt = AllocSetContextCreate(vms_worker_cxt, "vms sip message", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(msg_cxt);
	PG_TRY();
	{
		handle_one(buf, len, peer);
	}
	PG_CATCH();
	{
		char	   *why = vms_worker_take_error(msg_cxt);

		sip_count(C_HANDLER_ERRORS, 1);
		sip_log_limited(LOG_OTHER, "a message from %s:%d failed: %s", peer->ip, peer->port, why);
		if ((cur_in.msg || cur_in.fast) && cur_in.is_request && cur_in.method && strcmp(cur_in.method, "ACK") != 0)
			sip_answer(&cur_in, peer, 500, "Server Internal Error", NULL);
	}
	PG_END_TRY();
	if (cur_m_live)
	{
		manscdp_free(&cur_m);
		cur_m_live = false;
	}
	sip_in_free(&cur_in);
	MemoryContextSwitchTo(caller);
	MemoryContextReset(msg_cxt);
}

void
sip_server_tick(void)
{
	auth_sources_expire();
}
