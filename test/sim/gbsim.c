/*
 * gbsim - GB/T 28181 device simulator, a TEST PEER for the vms SIP worker.
 *
 * One single-threaded process simulates up to a million devices (tested with
 * 100,000) spread over a number of local UDP sockets (or one TCP connection
 * per device).  Each device registers with digest authentication, refreshes
 * its registration, sends Keepalive MESSAGEs and answers the platform's
 * Catalog / DeviceInfo / DeviceStatus queries and subscriptions.  Other modes:
 * flood (keepalive throughput), echo (raw UDP echo baseline) and hostile
 * (malformed-message suite).  Run `gbsim --help` for the options.
 *
 * SIP is formatted by hand; this is a test peer, not a SIP stack.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <iconv.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#define UA "gbsim/1.0"
#define MAX_UDP 65507
#define RBUF_SZ 65536
#define T1_MS 500
#define T2_MS 4000
#define MAX_TRIES 7
#define TCP_MAX_MSG (1 << 20)

/* ------------------------------------------------------------------ */
/* configuration                                                       */

enum { MODE_DEVICES, MODE_FLOOD, MODE_ECHO, MODE_HOSTILE };

static struct cfg {
	int mode;
	struct sockaddr_in server;
	int server_set;
	char server_id[32];
	char domain[64];
	uint32_t ndev;
	char first_code[32];
	const char *password;
	const char *password_file;
	uint32_t wrong_every;
	int want_sha256;
	uint32_t expires;
	double keepalive;
	double jitter;
	double reg_rate;
	uint32_t reg_window;
	double reg_retry;
	double duration;
	int duration_set;
	uint32_t channels;
	uint32_t page_size;
	int fault_dup, fault_drop1, fault_gbk;
	double alarm_every;
	double stop_ka_after;
	struct in_addr bind_addr;
	int bind_set;
	uint32_t nsockets;
	uint32_t bind_spread; /* UDP socket i binds to --bind + (i % bind_spread): devices from many addresses */
	int tcp;
	double stats_every;
	int no_register;
	int any_reply;
	uint32_t window;
	struct sockaddr_in listen;
	int listen_set;
	int verbose;
	const char *media;
	const char *control_log;	/* --control-log: every Control/Query body received, one line each */
	char gb_version[16];		/* --gb-version: X-GB-Ver header on REGISTER */
	char silent[256];		/* --silent: CmdTypes answered 200 but never with a Response */
	char control_fail[256];		/* --control-fail: control elements answered Result ERROR */
	char answer_twice[256];		/* --answer-twice: CmdTypes whose Response names its elements twice */
	char answer_other[256];		/* --answer-other: CmdTypes answered with a Response of CmdType DeviceStatus */
	uint32_t record_gap;		/* --record-gap: the hour (0-based) missing from RecordInfo answers */
	uint32_t invite_delay;		/* --invite-delay: ms before an INVITE is answered at all */
	char sdp_ip[INET_ADDRSTRLEN];	/* --sdp-ip: the c= of SDP answers (default: the local address) */
	const char *snapshot;		/* --snapshot: the file a SnapShotConfig uploads to its UploadURL */
} C;

static char g_local_ip[INET_ADDRSTRLEN];
static char g_runid[9];
static volatile sig_atomic_t g_stop;

/* ------------------------------------------------------------------ */
/* statistics                                                          */

static struct stats {
	uint64_t reg_failed, auth_403, date_missing, reg_timeouts, reg_attempts;
	uint64_t ka_sent, ka_ok, ka_timeout, ka_failed;
	uint64_t queries, catalog_pages, subscriptions, renewals, notifies, alarms;
	uint64_t requests_in, responses_in, unknown_device, dup_requests;
	uint64_t send_errors, parse_errors, retransmits, txn_timeouts, txn_failed;
	uint64_t flood_sent, flood_replies, flood_non2xx, flood_timeouts;
	uint64_t echoed;
	uint64_t invites, media_packets, byes, media_connect_failed;
	uint64_t controls, record_pages;
	uint32_t registered;
	uint32_t initial_ok, initial_done;
	uint32_t first_reg_ms, last_initial_ok_ms;
	int64_t flood_start_us, flood_end_us;
} S;

/* ------------------------------------------------------------------ */
/* small utilities                                                     */

static int64_t g_start_us;

static int64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* milliseconds since start, never 0 (0 means "no timer") */
static uint32_t now_ms(void)
{
	return (uint32_t)((mono_us() - g_start_us) / 1000) + 1;
}

static uint64_t g_rng;

static uint64_t rnd64(void)
{
	g_rng ^= g_rng << 13;
	g_rng ^= g_rng >> 7;
	g_rng ^= g_rng << 17;
	return g_rng;
}

static double rnd01(void)
{
	return (double)(rnd64() >> 11) * (1.0 / 9007199254740992.0);
}

static uint64_t fnv64(const void *p, size_t n, uint64_t h)
{
	const unsigned char *s = p;
	if (!h)
		h = 1469598103934665603ULL;
	while (n--) {
		h ^= *s++;
		h *= 1099511628211ULL;
	}
	return h;
}

static void warnx_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warnx_(const char *fmt, ...)
{
	va_list ap;
	fputs("gbsim: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...)
{
	va_list ap;
	fputs("gbsim: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n(try gbsim --help)\n", stderr);
	exit(2);
}

static void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fatal(const char *fmt, ...)
{
	va_list ap;
	fputs("gbsim: fatal: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		fatal("out of memory (%zu bytes)", n);
	return p;
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		fatal("out of memory (%zu bytes)", n);
	return p;
}

static int all_digits(const char *s, size_t n)
{
	if (!n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

/* case-insensitive memmem */
static const char *memcasemem(const char *h, size_t hn, const char *n, size_t nn)
{
	if (nn == 0 || hn < nn)
		return NULL;
	for (size_t i = 0; i + nn <= hn; i++)
		if (strncasecmp(h + i, n, nn) == 0)
			return h + i;
	return NULL;
}

static void iso_time(char *out, size_t cap)
{
	time_t t = time(NULL);
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
}

/* growing byte buffer */
struct buf {
	char *p;
	size_t n, cap;
};

static void buf_reserve(struct buf *b, size_t extra)
{
	if (b->n + extra + 1 > b->cap) {
		size_t c = b->cap ? b->cap : 4096;
		while (c < b->n + extra + 1)
			c *= 2;
		b->p = xrealloc(b->p, c);
		b->cap = c;
	}
}

static void buf_add(struct buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->p + b->n, p, n);
	b->n += n;
	b->p[b->n] = 0;
}

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	for (;;) {
		size_t room;
		int k;
		buf_reserve(b, 256);
		room = b->cap - b->n;
		va_start(ap, fmt);
		k = vsnprintf(b->p + b->n, room, fmt, ap);
		va_end(ap);
		if (k < 0)
			fatal("vsnprintf failed");
		if ((size_t)k < room) {
			b->n += (size_t)k;
			return;
		}
		buf_reserve(b, (size_t)k + 1);
	}
}

/* ------------------------------------------------------------------ */
/* option parsing helpers                                              */

static long long parse_ll(const char *opt, const char *s, long long lo, long long hi)
{
	char *end;
	long long v;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		usage_error("--%s: expected an integer in [%lld, %lld], got '%s'", opt, lo, hi, s);
	return v;
}

static double parse_dbl(const char *opt, const char *s, double lo, double hi)
{
	char *end;
	double v;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo && v <= hi))
		usage_error("--%s: expected a number in [%g, %g], got '%s'", opt, lo, hi, s);
	return v;
}

static void parse_hostport(const char *opt, const char *s, struct sockaddr_in *out)
{
	char host[256];
	const char *colon = strrchr(s, ':');
	struct addrinfo hints, *res = NULL;
	long long port;
	int rc;
	if (!colon || colon == s || (size_t)(colon - s) >= sizeof host)
		usage_error("--%s: expected HOST:PORT, got '%s'", opt, s);
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	port = parse_ll(opt, colon + 1, 1, 65535);
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_INET;
	hints.ai_socktype = SOCK_DGRAM;
	rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc || !res)
		usage_error("--%s: cannot resolve '%s': %s", opt, host, gai_strerror(rc));
	memcpy(out, res->ai_addr, sizeof *out);
	out->sin_port = htons((uint16_t)port);
	freeaddrinfo(res);
}

/* ------------------------------------------------------------------ */
/* device codes                                                        */

static char g_prefix[15];     /* first 14 digits of the device codes */
static char g_chan_type[4];   /* type digits of channel codes */
static uint32_t g_first_serial;

static void put6(char *out, uint32_t v)
{
	for (int i = 5; i >= 0; i--) {
		out[i] = (char)('0' + v % 10);
		v /= 10;
	}
}

static uint32_t get6(const char *p)
{
	uint32_t v = 0;
	for (int i = 0; i < 6; i++)
		v = v * 10 + (uint32_t)(p[i] - '0');
	return v;
}

static void dev_code(uint32_t d, char *out)
{
	memcpy(out, g_prefix, 14);
	put6(out + 14, g_first_serial + d);
	out[20] = 0;
}

/* channel j of device d: same centre/industry/network, type 131 (or 132
 * when the devices themselves are 131), serial (device serial * K + j). */
static void chan_code(uint32_t d, uint32_t j, char *out)
{
	memcpy(out, g_prefix, 10);
	memcpy(out + 10, g_chan_type, 3);
	out[13] = g_prefix[13];
	put6(out + 14, (g_first_serial + d) * C.channels + j);
	out[20] = 0;
}

/* device index for a device or channel code, -1 if not ours */
static int64_t code_lookup(const char *p, size_t n)
{
	uint32_t s;
	if (n != 20 || !all_digits(p, 20))
		return -1;
	s = get6(p + 14);
	if (memcmp(p, g_prefix, 14) == 0 && s >= g_first_serial && s - g_first_serial < C.ndev)
		return s - g_first_serial;
	if (C.channels && memcmp(p, g_prefix, 10) == 0 && memcmp(p + 10, g_chan_type, 3) == 0 &&
	    p[13] == g_prefix[13]) {
		s /= C.channels;
		if (s >= g_first_serial && s - g_first_serial < C.ndev)
			return s - g_first_serial;
	}
	return -1;
}

static void code_lonlat(const char *code, double *lon, double *lat)
{
	uint64_t h = fnv64(code, 20, 0);
	*lon = 120.1 + ((double)(h % 200001) - 100000.0) / 1e6;
	*lat = 30.2 + ((double)((h >> 32) % 200001) - 100000.0) / 1e6;
}

/* ------------------------------------------------------------------ */
/* passwords                                                           */

static char *g_pwpool;
static size_t g_pwpool_n, g_pwpool_cap;

struct dev;
static void load_password_file(const char *path);

/* ------------------------------------------------------------------ */
/* digest                                                              */

static void hex_digest(const EVP_MD *md, const char *s, size_t n, char *out)
{
	unsigned char h[EVP_MAX_MD_SIZE];
	unsigned int hl = 0;
	static const char hx[] = "0123456789abcdef";
	if (!EVP_Digest(s, n, h, &hl, md, NULL))
		fatal("EVP_Digest failed");
	for (unsigned i = 0; i < hl; i++) {
		out[2 * i] = hx[h[i] >> 4];
		out[2 * i + 1] = hx[h[i] & 15];
	}
	out[2 * hl] = 0;
}

struct chal {
	char realm[128];
	char nonce[256];
	char opaque[256];
	char algorithm[24];
	int qop_auth;
	int stale;
	int toolong;
	int valid;
};

/* parse one "Digest k=v, k="v"" challenge */
static void parse_challenge(const char *p, size_t n, struct chal *c)
{
	const char *e = p + n;
	memset(c, 0, sizeof *c);
	while (p < e && isspace((unsigned char)*p))
		p++;
	if ((size_t)(e - p) < 6 || strncasecmp(p, "Digest", 6) != 0)
		return;
	p += 6;
	strcpy(c->algorithm, "MD5");
	while (p < e) {
		const char *k, *v;
		size_t kn, vn;
		char val[512];
		size_t vl = 0;
		while (p < e && (isspace((unsigned char)*p) || *p == ','))
			p++;
		k = p;
		while (p < e && *p != '=' && *p != ',' && !isspace((unsigned char)*p))
			p++;
		kn = (size_t)(p - k);
		while (p < e && isspace((unsigned char)*p))
			p++;
		if (p >= e || *p != '=') {
			if (p < e && *p != ',')
				p++;
			continue;
		}
		p++;
		while (p < e && isspace((unsigned char)*p))
			p++;
		if (p < e && *p == '"') {
			p++;
			while (p < e && *p != '"') {
				if (*p == '\\' && p + 1 < e)
					p++;
				if (vl < sizeof val - 1)
					val[vl++] = *p;
				p++;
			}
			if (p < e)
				p++;
		} else {
			v = p;
			while (p < e && *p != ',' && !isspace((unsigned char)*p))
				p++;
			vn = (size_t)(p - v);
			if (vn > sizeof val - 1)
				vn = sizeof val - 1;
			memcpy(val, v, vn);
			vl = vn;
		}
		val[vl] = 0;
#define SETF(name, field)                                                        \
	if (kn == strlen(name) && strncasecmp(k, name, kn) == 0) {               \
		if (vl >= sizeof c->field)                                       \
			c->toolong = 1;                                          \
		else                                                             \
			memcpy(c->field, val, vl + 1);                           \
		continue;                                                        \
	}
		SETF("realm", realm)
		SETF("nonce", nonce)
		SETF("opaque", opaque)
		SETF("algorithm", algorithm)
#undef SETF
		if (kn == 3 && strncasecmp(k, "qop", 3) == 0) {
			/* list like "auth,auth-int" */
			const char *q = val;
			while (*q) {
				size_t l = strcspn(q, ", ");
				if (l == 4 && strncasecmp(q, "auth", 4) == 0)
					c->qop_auth = 1;
				q += l;
				while (*q == ',' || *q == ' ')
					q++;
			}
		} else if (kn == 5 && strncasecmp(k, "stale", 5) == 0) {
			c->stale = strcasecmp(val, "true") == 0;
		}
	}
	c->valid = c->nonce[0] != 0 && !c->toolong;
}

static int chal_is_sha256(const struct chal *c)
{
	return strcasecmp(c->algorithm, "SHA-256") == 0;
}

/*
 * Builds the Authorization header value (without the header name).
 * HA1 = H(user:realm:pass), HA2 = H(method:uri),
 * response = H(HA1:nonce:HA2) or H(HA1:nonce:nc:cnonce:qop:HA2).
 */
static size_t digest_authorization(char *out, size_t cap, const struct chal *c, const char *user,
				   const char *pass, const char *method, const char *uri)
{
	const EVP_MD *md = chal_is_sha256(c) ? EVP_sha256() : EVP_md5();
	char ha1[EVP_MAX_MD_SIZE * 2 + 1], ha2[EVP_MAX_MD_SIZE * 2 + 1], resp[EVP_MAX_MD_SIZE * 2 + 1];
	char tmp[1024], cnonce[17];
	int k;
	k = snprintf(tmp, sizeof tmp, "%s:%s:%s", user, c->realm, pass);
	hex_digest(md, tmp, (size_t)k, ha1);
	k = snprintf(tmp, sizeof tmp, "%s:%s", method, uri);
	hex_digest(md, tmp, (size_t)k, ha2);
	if (c->qop_auth) {
		snprintf(cnonce, sizeof cnonce, "%016" PRIx64, rnd64());
		k = snprintf(tmp, sizeof tmp, "%s:%s:00000001:%s:auth:%s", ha1, c->nonce, cnonce, ha2);
	} else {
		k = snprintf(tmp, sizeof tmp, "%s:%s:%s", ha1, c->nonce, ha2);
	}
	if (k < 0 || (size_t)k >= sizeof tmp)
		k = (int)sizeof tmp - 1;
	hex_digest(md, tmp, (size_t)k, resp);
	k = snprintf(out, cap, "Digest username=\"%s\", realm=\"%s\", nonce=\"%s\", uri=\"%s\", response=\"%s\", algorithm=%s",
		     user, c->realm, c->nonce, uri, resp, chal_is_sha256(c) ? "SHA-256" : "MD5");
	if (c->qop_auth)
		k += snprintf(out + k, cap - (size_t)k, ", cnonce=\"%s\", qop=auth, nc=00000001", cnonce);
	if (c->opaque[0])
		k += snprintf(out + k, cap - (size_t)k, ", opaque=\"%s\"", c->opaque);
	return (size_t)k;
}

/* ------------------------------------------------------------------ */
/* SIP parsing                                                         */

struct sv {
	const char *p;
	size_t n;
};

#define MAX_VIA 32
#define MAX_AUTH 4

struct sipmsg {
	int is_resp;
	int status;
	struct sv method, ruri;
	struct sv via[MAX_VIA];
	int nvia;
	struct sv from, to, callid, cseq, contact, ctype, event, date, expires;
	struct sv www[MAX_AUTH];
	int nwww;
	struct sv proxy[MAX_AUTH];
	int nproxy;
	uint32_t cseq_num;
	struct sv cseq_method;
	long clen;
	const char *body;
	size_t body_len;
};

static int sv_eq(struct sv a, const char *s)
{
	size_t n = strlen(s);
	return a.n == n && strncasecmp(a.p, s, n) == 0;
}

static int hname_is(const char *p, size_t n, const char *full, const char *compact)
{
	if (n == strlen(full) && strncasecmp(p, full, n) == 0)
		return 1;
	if (compact && n == 1 && tolower((unsigned char)*p) == compact[0])
		return 1;
	return 0;
}

/* parses a complete SIP message (datagram or framed TCP message) */
static int sip_parse(const char *buf, size_t len, struct sipmsg *m)
{
	const char *p = buf, *e = buf + len, *le, *sp1, *sp2;
	memset(m, 0, sizeof *m);
	m->clen = -1;
	/* skip leading CRLFs (keepalive pings) */
	while (p < e && (*p == '\r' || *p == '\n'))
		p++;
	le = memchr(p, '\n', (size_t)(e - p));
	if (!le)
		return -1;
	{
		const char *lend = le;
		if (lend > p && lend[-1] == '\r')
			lend--;
		sp1 = memchr(p, ' ', (size_t)(lend - p));
		if (!sp1)
			return -1;
		if (lend - p > 8 && memcmp(p, "SIP/2.0 ", 8) == 0) {
			m->is_resp = 1;
			if (lend - p < 11 || !all_digits(p + 8, 3))
				return -1;
			m->status = (p[8] - '0') * 100 + (p[9] - '0') * 10 + (p[10] - '0');
		} else {
			sp2 = memchr(sp1 + 1, ' ', (size_t)(lend - sp1 - 1));
			if (!sp2 || (size_t)(lend - sp2 - 1) != 7 || memcmp(sp2 + 1, "SIP/2.0", 7) != 0)
				return -1;
			m->method.p = p;
			m->method.n = (size_t)(sp1 - p);
			m->ruri.p = sp1 + 1;
			m->ruri.n = (size_t)(sp2 - sp1 - 1);
		}
	}
	p = le + 1;
	for (;;) {
		const char *ls = p, *lend, *colon, *v, *ve;
		if (p >= e)
			return -1; /* no end of headers */
		le = memchr(p, '\n', (size_t)(e - p));
		if (!le)
			return -1;
		lend = le;
		if (lend > ls && lend[-1] == '\r')
			lend--;
		p = le + 1;
		if (lend == ls)
			break; /* end of headers */
		colon = memchr(ls, ':', (size_t)(lend - ls));
		if (!colon)
			continue;
		ve = colon;
		while (ve > ls && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		v = colon + 1;
		while (v < lend && (*v == ' ' || *v == '\t'))
			v++;
		{
			size_t hn = (size_t)(ve - ls);
			struct sv val = { v, (size_t)(lend - v) };
			while (val.n && (val.p[val.n - 1] == ' ' || val.p[val.n - 1] == '\t'))
				val.n--;
			if (hname_is(ls, hn, "Via", "v")) {
				if (m->nvia < MAX_VIA)
					m->via[m->nvia++] = val;
			} else if (hname_is(ls, hn, "From", "f"))
				m->from = val;
			else if (hname_is(ls, hn, "To", "t"))
				m->to = val;
			else if (hname_is(ls, hn, "Call-ID", "i"))
				m->callid = val;
			else if (hname_is(ls, hn, "CSeq", NULL))
				m->cseq = val;
			else if (hname_is(ls, hn, "Contact", "m"))
				m->contact = val;
			else if (hname_is(ls, hn, "Content-Type", "c"))
				m->ctype = val;
			else if (hname_is(ls, hn, "Event", "o"))
				m->event = val;
			else if (hname_is(ls, hn, "Date", NULL))
				m->date = val;
			else if (hname_is(ls, hn, "Expires", NULL))
				m->expires = val;
			else if (hname_is(ls, hn, "WWW-Authenticate", NULL)) {
				if (m->nwww < MAX_AUTH)
					m->www[m->nwww++] = val;
			} else if (hname_is(ls, hn, "Proxy-Authenticate", NULL)) {
				if (m->nproxy < MAX_AUTH)
					m->proxy[m->nproxy++] = val;
			} else if (hname_is(ls, hn, "Content-Length", "l")) {
				char tmp[24];
				size_t k = val.n < sizeof tmp - 1 ? val.n : sizeof tmp - 1;
				char *end;
				memcpy(tmp, val.p, k);
				tmp[k] = 0;
				m->clen = strtol(tmp, &end, 10);
				if (end == tmp || *end || m->clen < 0)
					m->clen = -2;
			}
		}
	}
	m->body = p;
	m->body_len = (size_t)(e - p);
	if (m->clen >= 0 && (size_t)m->clen < m->body_len)
		m->body_len = (size_t)m->clen;
	if (m->cseq.n) {
		const char *q = m->cseq.p, *qe = m->cseq.p + m->cseq.n;
		uint64_t v = 0;
		while (q < qe && isdigit((unsigned char)*q)) {
			v = v * 10 + (uint64_t)(*q - '0');
			if (v > UINT32_MAX)
				v = UINT32_MAX;
			q++;
		}
		m->cseq_num = (uint32_t)v;
		while (q < qe && isspace((unsigned char)*q))
			q++;
		m->cseq_method.p = q;
		m->cseq_method.n = (size_t)(qe - q);
	}
	return 0;
}

/* user part of a SIP URI found in s (first "sip:" ... "@") */
static struct sv uri_user(struct sv s)
{
	struct sv r = { NULL, 0 };
	const char *p = memcasemem(s.p, s.n, "sip:", 4), *e = s.p + s.n, *q;
	if (!p)
		return r;
	p += 4;
	q = p;
	while (q < e && *q != '@' && *q != '>' && *q != ';' && *q != ' ')
		q++;
	if (q >= e || *q != '@')
		return r;
	r.p = p;
	r.n = (size_t)(q - p);
	return r;
}

/* the URI inside <...>, or the value up to ';' */
static struct sv header_uri(struct sv s)
{
	const char *lt = memchr(s.p, '<', s.n), *gt;
	struct sv r = s;
	if (lt) {
		gt = memchr(lt, '>', (size_t)(s.p + s.n - lt));
		if (gt) {
			r.p = lt + 1;
			r.n = (size_t)(gt - lt - 1);
			return r;
		}
	}
	{
		const char *semi = memchr(s.p, ';', s.n);
		if (semi)
			r.n = (size_t)(semi - s.p);
	}
	return r;
}

static int header_has_tag(struct sv s)
{
	const char *gt = memchr(s.p, '>', s.n);
	const char *st = gt ? gt : s.p;
	return memcasemem(st, (size_t)(s.p + s.n - st), ";tag=", 5) != NULL;
}

/* integer value of a header (Expires) or -1 */
static long sv_long(struct sv s)
{
	long v = 0;
	size_t i = 0;
	if (!s.n || !isdigit((unsigned char)s.p[0]))
		return -1;
	for (; i < s.n && isdigit((unsigned char)s.p[i]); i++) {
		v = v * 10 + (s.p[i] - '0');
		if (v > 1000000000L)
			return 1000000000L;
	}
	return v;
}

/* top Via branch */
static struct sv via_branch(const struct sipmsg *m)
{
	struct sv r = { NULL, 0 };
	const char *p, *e;
	if (!m->nvia)
		return r;
	p = memcasemem(m->via[0].p, m->via[0].n, "branch=", 7);
	if (!p)
		return r;
	p += 7;
	e = m->via[0].p + m->via[0].n;
	r.p = p;
	while (p < e && *p != ';' && *p != ',' && *p != ' ')
		p++;
	r.n = (size_t)(p - r.p);
	return r;
}

/* text of <tag>...</tag> in an XML body, trimmed; returns length or -1 */
static int xml_get(const char *body, size_t n, const char *tag, char *out, size_t cap)
{
	char open[64];
	int ol = snprintf(open, sizeof open, "<%s>", tag);
	const char *p = memmem(body, n, open, (size_t)ol), *q, *e = body + n;
	size_t l;
	if (!p)
		return -1;
	p += ol;
	q = memchr(p, '<', (size_t)(e - p));
	if (!q)
		return -1;
	while (p < q && isspace((unsigned char)*p))
		p++;
	while (q > p && isspace((unsigned char)q[-1]))
		q--;
	l = (size_t)(q - p);
	if (l >= cap)
		l = cap - 1;
	memcpy(out, p, l);
	out[l] = 0;
	return (int)l;
}

/* name of the XML root element */
static int xml_root(const char *body, size_t n, char *out, size_t cap)
{
	const char *p = body, *e = body + n;
	while (p < e) {
		p = memchr(p, '<', (size_t)(e - p));
		if (!p || p + 1 >= e)
			return -1;
		if (p[1] == '?' || p[1] == '!') {
			p++;
			continue;
		}
		{
			const char *s = p + 1, *q = s;
			size_t l;
			while (q < e && (isalnum((unsigned char)*q) || *q == '_' || *q == ':' || *q == '-'))
				q++;
			l = (size_t)(q - s);
			if (l >= cap)
				l = cap - 1;
			memcpy(out, s, l);
			out[l] = 0;
			return (int)l;
		}
	}
	return -1;
}

/* keeps only digits (SN echo) */
static void digits_only(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++)
		if (isdigit((unsigned char)*r))
			*w++ = *r;
	*w = 0;
}

/* ------------------------------------------------------------------ */
/* devices, sockets, timers, transactions                              */

enum {
	F_REGISTERED = 1, /* currently registered */
	F_QUEUED = 2,     /* waiting in the registration queue */
	F_INPROG = 4,     /* REGISTER transaction outstanding */
	F_EVER_OK = 8,    /* initial registration succeeded */
	F_EVER_DONE = 16, /* initial registration has an outcome */
};

struct dev {                /* keep small: 100,000 of these */
	uint32_t ka_due;    /* ms, 0 = none */
	uint32_t reg_due;   /* refresh */
	uint32_t alarm_due;
	uint32_t retry_due;
	uint32_t reg_cseq;
	uint32_t cseq;      /* CSeq for other requests */
	uint32_t sn;        /* SN for device-originated MANSCDP */
	uint32_t pw_off;    /* 1 + offset in g_pwpool, 0 = --password */
	int32_t reg_txn;
	int32_t ka_txn;
	uint8_t flags;
};

static struct dev *g_dev;

struct usock {
	int fd;
	uint16_t port;
	char hp[32]; /* "ip:port" */
};
static struct usock *g_us;
static uint32_t g_nus;

struct tconn {
	int fd;
	uint8_t state; /* 0 closed, 1 connecting, 2 connected */
	uint16_t port;
	char *rb;
	uint32_t rl, rc;
	char *wb;
	uint32_t wl, wc;
};
static struct tconn *g_tc;

static int g_ep = -1;

#define EPD(type, idx) (((uint64_t)(type) << 32) | (uint32_t)(idx))
enum { EP_UDP = 1, EP_TCP = 2, EP_MEDIA = 3 };

/* a place to send a reply to */
struct peer {
	int tcp;
	uint32_t idx; /* udp socket index or device index (tcp) */
	struct sockaddr_in addr;
};

/* --- timers: binary min-heap with lazy deletion --- */
enum { EV_TXN = 1, EV_KA, EV_REG, EV_ALARM, EV_RETRY, EV_MEDIA };

struct tev {
	uint32_t t, id, aux, kind;
};
static struct tev *g_heap;
static size_t g_hn, g_hcap;

static void heap_push(uint32_t t, uint32_t kind, uint32_t id, uint32_t aux)
{
	size_t i;
	if (g_hn == g_hcap) {
		g_hcap = g_hcap ? g_hcap * 2 : 1024;
		g_heap = xrealloc(g_heap, g_hcap * sizeof *g_heap);
	}
	i = g_hn++;
	while (i) {
		size_t par = (i - 1) / 2;
		if (g_heap[par].t <= t)
			break;
		g_heap[i] = g_heap[par];
		i = par;
	}
	g_heap[i] = (struct tev){ t, id, aux, kind };
}

static struct tev heap_pop(void)
{
	struct tev top = g_heap[0], last = g_heap[--g_hn];
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, s = i;
		struct tev *sv = &last;
		if (l < g_hn && g_heap[l].t < sv->t) {
			s = l;
			sv = &g_heap[l];
		}
		if (r < g_hn && g_heap[r].t < sv->t) {
			s = r;
			sv = &g_heap[r];
		}
		if (s == i)
			break;
		g_heap[i] = g_heap[s];
		i = s;
	}
	if (g_hn)
		g_heap[i] = last;
	return top;
}

/* --- client transactions --- */
enum { TK_REG = 1, TK_KA, TK_MSG, TK_NOTIFY };

struct txn {
	uint32_t next_t;
	uint32_t dev;
	uint32_t gen;
	char *msg;
	uint32_t len;
	uint8_t kind, tries, used, authed;
};
static struct txn *g_tx;
static uint32_t g_ntx, g_txcap, *g_txfree, g_nfree, g_txlive;

static uint32_t txn_alloc(uint32_t d, uint8_t kind)
{
	uint32_t s;
	if (g_nfree)
		s = g_txfree[--g_nfree];
	else {
		if (g_ntx == g_txcap) {
			g_txcap = g_txcap ? g_txcap * 2 : 1024;
			g_tx = xrealloc(g_tx, g_txcap * sizeof *g_tx);
			g_txfree = xrealloc(g_txfree, g_txcap * sizeof *g_txfree);
		}
		s = g_ntx++;
		g_tx[s].gen = 0;
	}
	g_tx[s].gen++;
	g_tx[s].dev = d;
	g_tx[s].kind = kind;
	g_tx[s].tries = 0;
	g_tx[s].used = 1;
	g_tx[s].authed = 0;
	g_tx[s].msg = NULL;
	g_tx[s].len = 0;
	g_tx[s].next_t = 0;
	g_txlive++;
	return s;
}

static void txn_free(uint32_t s)
{
	free(g_tx[s].msg);
	g_tx[s].msg = NULL;
	g_tx[s].used = 0;
	g_tx[s].gen++;
	g_txfree[g_nfree++] = s;
	g_txlive--;
}

static void txn_branch(uint32_t s, char *out, size_t cap)
{
	snprintf(out, cap, "z9hG4bK%s.%x.%x", g_runid, s, g_tx[s].gen);
}

/* slot of a response's transaction, or -1 */
static int64_t txn_match(const struct sipmsg *m)
{
	struct sv b = via_branch(m);
	char tmp[64];
	unsigned s, g;
	int n;
	if (b.n < 7 + 8 + 4 || b.n >= sizeof tmp)
		return -1;
	memcpy(tmp, b.p, b.n);
	tmp[b.n] = 0;
	if (strncmp(tmp, "z9hG4bK", 7) != 0 || strncmp(tmp + 7, g_runid, 8) != 0 || tmp[15] != '.')
		return -1;
	n = 0;
	if (sscanf(tmp + 16, "%x.%x%n", &s, &g, &n) != 2 || tmp[16 + n] != 0)
		return -1;
	if (s >= g_ntx || !g_tx[s].used || g_tx[s].gen != g)
		return -1;
	return s;
}

/* --- sending --- */
static void tcp_queue(uint32_t d, const char *b, size_t n);

static void udp_sendto(int fd, const struct sockaddr_in *to, const char *b, size_t n)
{
	if (sendto(fd, b, n, MSG_DONTWAIT, (const struct sockaddr *)to, sizeof *to) < 0) {
		S.send_errors++;
		if (C.verbose)
			warnx_("sendto: %s", strerror(errno));
	}
}

static void dev_send(uint32_t d, const char *b, size_t n)
{
	if (C.tcp)
		tcp_queue(d, b, n);
	else
		udp_sendto(g_us[d % g_nus].fd, &C.server, b, n);
}

static void peer_send(const struct peer *p, const char *b, size_t n)
{
	if (p->tcp)
		tcp_queue(p->idx, b, n);
	else
		udp_sendto(g_us[p->idx].fd, &p->addr, b, n);
}

static void tcp_open(uint32_t d);

/* local "ip:port" a device's messages come from */
static const char *dev_hostport(uint32_t d)
{
	static char hp[48];
	if (!C.tcp)
		return g_us[d % g_nus].hp;
	if (g_tc[d].state == 0)
		tcp_open(d);
	snprintf(hp, sizeof hp, "%s:%u", g_local_ip, g_tc[d].port);
	return hp;
}

static const char *transport_name(void)
{
	return C.tcp ? "TCP" : "UDP";
}

static void txn_launch(uint32_t s, const char *msg, size_t len, uint32_t now)
{
	struct txn *t = &g_tx[s];
	free(t->msg);
	t->msg = xmalloc(len);
	memcpy(t->msg, msg, len);
	t->len = (uint32_t)len;
	t->tries = 1;
	dev_send(t->dev, msg, len);
	t->next_t = now + T1_MS;
	heap_push(t->next_t, EV_TXN, s, t->gen);
}

/* --- message builders --- */
static struct buf g_out, g_body, g_conv;
static char g_tmp[4096];

static void new_callid(char *out, size_t cap)
{
	static uint32_t ctr;
	snprintf(out, cap, "%s%08x@%s", g_runid, ++ctr, g_local_ip);
}

static uint32_t new_tag(void)
{
	return (uint32_t)rnd64() | 1;
}

/*
 * A request from device d.  from/to are full header values; ctype may be
 * NULL when there is no body; extra holds extra header lines (each ending
 * in CRLF) or is NULL.
 */
static void build_request(struct buf *o, uint32_t d, const char *hp, const char *method, const char *ruri,
			  const char *from, const char *to, const char *callid, uint32_t cseq, const char *branch,
			  const char *extra, const char *ctype, const char *body, size_t blen)
{
	char code[21];
	dev_code(d, code);
	o->n = 0;
	buf_printf(o,
		   "%s %s SIP/2.0\r\n"
		   "Via: SIP/2.0/%s %s;rport;branch=%s\r\n"
		   "Max-Forwards: 70\r\n"
		   "From: %s\r\n"
		   "To: %s\r\n"
		   "Call-ID: %s\r\n"
		   "CSeq: %u %s\r\n"
		   "Contact: <sip:%s@%s%s>\r\n"
		   "%s"
		   "%s%s%s"
		   "User-Agent: " UA "\r\n"
		   "Content-Length: %zu\r\n\r\n",
		   method, ruri, transport_name(), hp, branch, from, to, callid, cseq, method, code, hp,
		   C.tcp ? ";transport=tcp" : "", extra ? extra : "", ctype ? "Content-Type: " : "",
		   ctype ? ctype : "", ctype ? "\r\n" : "", blen);
	if (blen)
		buf_add(o, body, blen);
}

static const char *server_ruri(void)
{
	static char r[128];
	if (!r[0])
		snprintf(r, sizeof r, "sip:%s@%s", C.server_id, C.domain);
	return r;
}

static const char *password_of(uint32_t d, char *tmp, size_t cap)
{
	const char *pw = g_dev && g_dev[d].pw_off ? g_pwpool + g_dev[d].pw_off - 1 : C.password;
	if (C.wrong_every && (d + 1) % C.wrong_every == 0) {
		snprintf(tmp, cap, "%s-wrong", pw);
		return tmp;
	}
	return pw;
}

static uint32_t reg_tag(uint32_t d)
{
	return (uint32_t)fnv64(&d, sizeof d, fnv64(g_runid, 8, 0)) | 1;
}

/* REGISTER for device d, optionally answering challenge ch */
static void build_register(struct buf *o, uint32_t d, const char *hp, const char *branch, uint32_t cseq,
			   long expires, const struct chal *ch, int proxy)
{
	char code[21], from[128], callid[96], extra[2048];
	size_t k = 0;
	dev_code(d, code);
	snprintf(from, sizeof from, "<sip:%s@%s>;tag=%08x", code, C.domain, reg_tag(d));
	snprintf(callid, sizeof callid, "reg%x.%s@%s", d, g_runid, g_local_ip);
	extra[0] = 0;
	if (ch) {
		char pwtmp[300];
		k += (size_t)snprintf(extra, sizeof extra, "%s: ", proxy ? "Proxy-Authorization" : "Authorization");
		k += digest_authorization(extra + k, sizeof extra - k - 2, ch, code, password_of(d, pwtmp, sizeof pwtmp),
					  "REGISTER", server_ruri());
		k += (size_t)snprintf(extra + k, sizeof extra - k, "\r\n");
	}
	if (expires >= 0)
		k += (size_t)snprintf(extra + k, sizeof extra - k, "Expires: %ld\r\n", expires);
	if (C.gb_version[0] && k < sizeof extra)
		snprintf(extra + k, sizeof extra - k, "X-GB-Ver: %s\r\n", C.gb_version);
	{
		char to[128];
		snprintf(to, sizeof to, "<sip:%s@%s>", code, C.domain);
		build_request(o, d, hp, "REGISTER", server_ruri(), from, to, callid, cseq, branch, extra, NULL, NULL, 0);
	}
}

/* chooses the challenge to answer: the configured algorithm when offered */
static int pick_challenge(const struct sipmsg *m, struct chal *out, int *proxy)
{
	const struct sv *hs = m->nwww ? m->www : m->proxy;
	int n = m->nwww ? m->nwww : m->nproxy, found = 0;
	*proxy = m->nwww ? 0 : 1;
	for (int i = 0; i < n; i++) {
		struct chal c;
		parse_challenge(hs[i].p, hs[i].n, &c);
		if (!c.valid)
			continue;
		if (strcasecmp(c.algorithm, "MD5") != 0 && !chal_is_sha256(&c))
			continue; /* MD5-sess etc. not supported */
		if (!found || (chal_is_sha256(&c) == C.want_sha256 && chal_is_sha256(out) != C.want_sha256)) {
			*out = c;
			found = 1;
		}
	}
	return found;
}

/* ------------------------------------------------------------------ */
/* registration                                                        */

static uint32_t *g_rq; /* ring of queued devices */
static uint32_t g_rq_head, g_rq_len;
static uint32_t g_reg_out; /* outstanding REGISTER transactions */
static double g_tokens;
static int64_t g_tokens_us;

static void reg_enqueue(uint32_t d)
{
	struct dev *v = &g_dev[d];
	if (v->flags & (F_QUEUED | F_INPROG))
		return;
	v->flags |= F_QUEUED;
	g_rq[(g_rq_head + g_rq_len) % C.ndev] = d;
	g_rq_len++;
}

static void reg_start(uint32_t d, uint32_t now)
{
	struct dev *v = &g_dev[d];
	char branch[64];
	uint32_t s = txn_alloc(d, TK_REG);
	const char *hp = dev_hostport(d);
	v->flags |= F_INPROG;
	v->reg_txn = (int32_t)s;
	g_reg_out++;
	S.reg_attempts++;
	if (!S.first_reg_ms)
		S.first_reg_ms = now;
	txn_branch(s, branch, sizeof branch);
	build_register(&g_out, d, hp, branch, ++v->reg_cseq, C.expires, NULL, 0);
	txn_launch(s, g_out.p, g_out.n, now);
}

static void reg_pump(uint32_t now)
{
	int64_t us = mono_us();
	if (C.reg_rate > 0) {
		double cap = C.reg_rate / 50.0;
		if (cap < 1)
			cap = 1;
		g_tokens += C.reg_rate * (double)(us - g_tokens_us) / 1e6;
		if (g_tokens > cap)
			g_tokens = cap;
	}
	g_tokens_us = us;
	while (g_rq_len && g_reg_out < C.reg_window && (C.reg_rate <= 0 || g_tokens >= 1.0)) {
		uint32_t d = g_rq[g_rq_head];
		g_rq_head = (g_rq_head + 1) % C.ndev;
		g_rq_len--;
		g_dev[d].flags &= ~F_QUEUED;
		if (C.reg_rate > 0)
			g_tokens -= 1.0;
		reg_start(d, now);
	}
}

static void schedule_dev(uint32_t d, int kind, uint32_t t)
{
	struct dev *v = &g_dev[d];
	if (!t)
		t = 1;
	switch (kind) {
	case EV_KA: v->ka_due = t; break;
	case EV_REG: v->reg_due = t; break;
	case EV_ALARM: v->alarm_due = t; break;
	case EV_RETRY: v->retry_due = t; break;
	}
	heap_push(t, (uint32_t)kind, d, 0);
}

static uint32_t ka_interval_ms(void)
{
	double f = 1.0 + C.jitter * (2.0 * rnd01() - 1.0);
	double ms = C.keepalive * 1000.0 * f;
	return ms < 1 ? 1 : (uint32_t)ms;
}

static void reg_done(uint32_t d, int ok, long granted, uint32_t now)
{
	struct dev *v = &g_dev[d];
	if (v->reg_txn >= 0)
		txn_free((uint32_t)v->reg_txn);
	v->reg_txn = -1;
	v->flags &= ~F_INPROG;
	g_reg_out--;
	if (ok) {
		if (!(v->flags & F_REGISTERED)) {
			v->flags |= F_REGISTERED;
			S.registered++;
			if (C.mode == MODE_DEVICES) {
				if (C.keepalive > 0)
					schedule_dev(d, EV_KA, now + ka_interval_ms());
				if (C.alarm_every > 0)
					schedule_dev(d, EV_ALARM, now + (uint32_t)(rnd01() * C.alarm_every * 1000.0) + 1);
			}
		}
		if (!(v->flags & F_EVER_OK)) {
			v->flags |= F_EVER_OK;
			S.initial_ok++;
			S.last_initial_ok_ms = now;
		}
		if (granted <= 0)
			granted = C.expires;
		schedule_dev(d, EV_REG, now + (uint32_t)((double)granted * 800.0));
	} else {
		if (v->flags & F_REGISTERED) {
			v->flags &= ~F_REGISTERED;
			S.registered--;
		}
		v->ka_due = v->alarm_due = v->reg_due = 0;
		if (C.reg_retry > 0)
			schedule_dev(d, EV_RETRY, now + (uint32_t)(C.reg_retry * 1000.0));
	}
	if (!(v->flags & F_EVER_DONE)) {
		v->flags |= F_EVER_DONE;
		S.initial_done++;
	}
}

/* expires granted by a 200 to REGISTER: Expires header, else ;expires= in Contact */
static long granted_expires(const struct sipmsg *m)
{
	long e = sv_long(m->expires);
	if (e >= 0)
		return e;
	if (m->contact.n) {
		const char *p = memcasemem(m->contact.p, m->contact.n, "expires=", 8);
		if (p) {
			struct sv s = { p + 8, (size_t)(m->contact.p + m->contact.n - p - 8) };
			return sv_long(s);
		}
	}
	return -1;
}

static void on_reg_response(uint32_t s, const struct sipmsg *m, uint32_t now)
{
	struct txn *t = &g_tx[s];
	uint32_t d = t->dev;
	if (m->status == 401 || m->status == 407) {
		struct chal ch;
		int proxy;
		char branch[64];
		if (!pick_challenge(m, &ch, &proxy)) {
			warnx_("device %u: 401 without a usable Digest challenge", d);
			S.reg_failed++;
			reg_done(d, 0, 0, now);
			return;
		}
		if (t->authed && !ch.stale) {
			/* credentials refused with a new challenge */
			S.reg_failed++;
			reg_done(d, 0, 0, now);
			return;
		}
		/* same slot, new generation -> new branch */
		t->gen++;
		t->authed = 1;
		txn_branch(s, branch, sizeof branch);
		build_register(&g_out, d, dev_hostport(d), branch, ++g_dev[d].reg_cseq, C.expires, &ch, proxy);
		txn_launch(s, g_out.p, g_out.n, now);
		return;
	}
	if (m->status >= 200 && m->status < 300) {
		if (!m->date.n)
			S.date_missing++;
		reg_done(d, 1, granted_expires(m), now);
		return;
	}
	if (m->status == 403)
		S.auth_403++;
	if (C.verbose)
		warnx_("device %u: REGISTER answered %d", d, m->status);
	S.reg_failed++;
	reg_done(d, 0, 0, now);
}

/* ------------------------------------------------------------------ */
/* device-originated MESSAGE / NOTIFY                                  */

static const char *XML_HEAD = "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n";

static uint32_t dev_message(uint32_t d, uint8_t kind, const char *body, size_t blen, uint32_t now)
{
	char code[21], from[128], to[128], callid[96], branch[64];
	uint32_t s = txn_alloc(d, kind);
	const char *hp = dev_hostport(d);
	dev_code(d, code);
	snprintf(from, sizeof from, "<sip:%s@%s>;tag=%08x", code, C.domain, new_tag());
	snprintf(to, sizeof to, "<sip:%s@%s>", C.server_id, C.domain);
	new_callid(callid, sizeof callid);
	txn_branch(s, branch, sizeof branch);
	build_request(&g_out, d, hp, "MESSAGE", server_ruri(), from, to, callid, ++g_dev[d].cseq, branch, NULL,
		      "Application/MANSCDP+xml", body, blen);
	txn_launch(s, g_out.p, g_out.n, now);
	return s;
}

static size_t keepalive_body(char *out, size_t cap, uint32_t sn, const char *code)
{
	return (size_t)snprintf(out, cap,
				"%s<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>%u</SN>\r\n<DeviceID>%s</DeviceID>\r\n"
				"<Status>OK</Status>\r\n</Notify>\r\n",
				XML_HEAD, sn, code);
}

static void send_keepalive(uint32_t d, uint32_t now)
{
	char code[21];
	size_t n;
	dev_code(d, code);
	n = keepalive_body(g_tmp, sizeof g_tmp, ++g_dev[d].sn, code);
	g_dev[d].ka_txn = (int32_t)dev_message(d, TK_KA, g_tmp, n, now);
	S.ka_sent++;
}

static void send_alarm(uint32_t d, uint32_t now)
{
	char code[21], ts[32];
	double lon, lat;
	uint32_t sn = ++g_dev[d].sn;
	size_t n;
	if (C.channels && (sn & 1))
		chan_code(d, 0, code);
	else
		dev_code(d, code);
	code_lonlat(code, &lon, &lat);
	iso_time(ts, sizeof ts);
	n = (size_t)snprintf(g_tmp, sizeof g_tmp,
			     "%s<Notify>\r\n<CmdType>Alarm</CmdType>\r\n<SN>%u</SN>\r\n<DeviceID>%s</DeviceID>\r\n"
			     "<AlarmPriority>%u</AlarmPriority>\r\n<AlarmMethod>5</AlarmMethod>\r\n"
			     "<AlarmTime>%s</AlarmTime>\r\n<AlarmDescription>gbsim alarm %u</AlarmDescription>\r\n"
			     "<Longitude>%.6f</Longitude>\r\n<Latitude>%.6f</Latitude>\r\n"
			     "<Info>\r\n<AlarmType>2</AlarmType>\r\n</Info>\r\n</Notify>\r\n",
			     XML_HEAD, sn, code, sn % 4 + 1, ts, sn, lon, lat);
	dev_message(d, TK_MSG, g_tmp, n, now);
	S.alarms++;
}

/* ------------------------------------------------------------------ */
/* catalog                                                             */

static iconv_t g_iconv = (iconv_t)-1;

/* UTF-8 -> GB18030 of b into g_conv; returns 0 on success */
static int to_gb18030(const struct buf *b)
{
	char *in = b->p, *out;
	size_t inl = b->n, outl;
	g_conv.n = 0;
	buf_reserve(&g_conv, b->n * 2 + 16);
	out = g_conv.p;
	outl = g_conv.cap - 1;
	if (g_iconv == (iconv_t)-1) {
		g_iconv = iconv_open("GB18030", "UTF-8");
		if (g_iconv == (iconv_t)-1)
			fatal("iconv_open(GB18030, UTF-8): %s", strerror(errno));
	}
	iconv(g_iconv, NULL, NULL, NULL, NULL);
	if (iconv(g_iconv, &in, &inl, &out, &outl) == (size_t)-1)
		return -1;
	g_conv.n = (size_t)(out - g_conv.p);
	g_conv.p[g_conv.n] = 0;
	return 0;
}

static void catalog_item(struct buf *b, uint32_t d, uint32_t j, int gbk, const char *event)
{
	char code[21], ch[21];
	double lon, lat;
	dev_code(d, code);
	chan_code(d, j, ch);
	code_lonlat(ch, &lon, &lat);
	buf_printf(b, "<Item>\r\n<DeviceID>%s</DeviceID>\r\n", ch);
	if (gbk)
		buf_printf(b, "<Name>模拟摄像机%s-%u</Name>\r\n", code + 14, j + 1);
	else
		buf_printf(b, "<Name>Camera %s-%u</Name>\r\n", code + 14, j + 1);
	buf_printf(b,
		   "<Manufacturer>gbsim</Manufacturer>\r\n<Model>GBSIM-IPC</Model>\r\n<Owner>%s</Owner>\r\n"
		   "<CivilCode>%.6s</CivilCode>\r\n",
		   gbk ? "模拟单位" : "Owner", code);
	if (gbk)
		buf_printf(b, "<Address>模拟路%u号</Address>\r\n", (g_first_serial + d) % 1000 + 1);
	else
		buf_printf(b, "<Address>Sim Road %u</Address>\r\n", (g_first_serial + d) % 1000 + 1);
	buf_printf(b,
		   "<Parental>0</Parental>\r\n<ParentID>%s</ParentID>\r\n<SafetyWay>0</SafetyWay>\r\n"
		   "<RegisterWay>1</RegisterWay>\r\n<Secrecy>0</Secrecy>\r\n<Status>ON</Status>\r\n"
		   "<Longitude>%.6f</Longitude>\r\n<Latitude>%.6f</Latitude>\r\n<PTZType>%u</PTZType>\r\n",
		   code, lon, lat, j % 4 + 1);
	if (event)
		buf_printf(b, "<Event>%s</Event>\r\n", event);
	buf_printf(b, "</Item>\r\n");
}

static void send_catalog(uint32_t d, const char *sn, uint32_t now)
{
	uint32_t K = C.channels, P = C.page_size;
	uint32_t pages = K ? (K + P - 1) / P : 1;
	char code[21];
	dev_code(d, code);
	for (uint32_t pg = 0; pg < pages; pg++) {
		uint32_t first = pg * P, cnt = K ? (K - first < P ? K - first : P) : 0;
		const struct buf *b = &g_body;
		if (C.fault_drop1 && pg == 1)
			continue;
		g_body.n = 0;
		buf_printf(&g_body,
			   "%s<Response>\r\n<CmdType>Catalog</CmdType>\r\n<SN>%s</SN>\r\n<DeviceID>%s</DeviceID>\r\n"
			   "<SumNum>%u</SumNum>\r\n<DeviceList Num=\"%u\">\r\n",
			   XML_HEAD, sn, code, K, cnt);
		for (uint32_t j = first; j < first + cnt; j++)
			catalog_item(&g_body, d, j, C.fault_gbk, NULL);
		buf_printf(&g_body, "</DeviceList>\r\n</Response>\r\n");
		if (C.fault_gbk) {
			if (to_gb18030(&g_body) != 0)
				warnx_("iconv to GB18030 failed; sending UTF-8");
			else
				b = &g_conv;
		}
		for (int rep = 0; rep < ((C.fault_dup && pg == 0) ? 2 : 1); rep++) {
			dev_message(d, TK_MSG, b->p, b->n, now);
			S.catalog_pages++;
		}
	}
}

static void send_devinfo(uint32_t d, const char *sn, uint32_t now)
{
	char code[21];
	size_t n;
	dev_code(d, code);
	n = (size_t)snprintf(g_tmp, sizeof g_tmp,
			     "%s<Response>\r\n<CmdType>DeviceInfo</CmdType>\r\n<SN>%s</SN>\r\n<DeviceID>%s</DeviceID>\r\n"
			     "<DeviceName>gbsim-%s</DeviceName>\r\n<Result>OK</Result>\r\n"
			     "<Manufacturer>gbsim</Manufacturer>\r\n<Model>GBSIM-IPC</Model>\r\n"
			     "<Firmware>1.0.0</Firmware>\r\n<Channel>%u</Channel>\r\n</Response>\r\n",
			     XML_HEAD, sn, code, code + 14, C.channels);
	dev_message(d, TK_MSG, g_tmp, n, now);
}

static void send_devstatus(uint32_t d, const char *sn, uint32_t now)
{
	char code[21], ts[32];
	size_t n;
	dev_code(d, code);
	iso_time(ts, sizeof ts);
	n = (size_t)snprintf(g_tmp, sizeof g_tmp,
			     "%s<Response>\r\n<CmdType>DeviceStatus</CmdType>\r\n<SN>%s</SN>\r\n<DeviceID>%s</DeviceID>\r\n"
			     "<Result>OK</Result>\r\n<Online>ONLINE</Online>\r\n<Status>OK</Status>\r\n"
			     "<Encode>ON</Encode>\r\n<Record>OFF</Record>\r\n<DeviceTime>%s</DeviceTime>\r\n"
			     "<Alarmstatus Num=\"0\">\r\n</Alarmstatus>\r\n</Response>\r\n",
			     XML_HEAD, sn, code, ts);
	dev_message(d, TK_MSG, g_tmp, n, now);
}

/* ------------------------------------------------------------------ */
/* incoming requests                                                   */

/* recently seen requests (retransmissions get the 200 again, no side effects) */
#define DEDUP_BITS 16
static struct {
	uint64_t key;
	uint32_t t;
} g_dedup[1u << DEDUP_BITS];

static int dedup_seen(const struct sipmsg *m, uint32_t now)
{
	struct sv b = via_branch(m);
	uint64_t k = fnv64(m->callid.p, m->callid.n, 0);
	k = fnv64(m->cseq.p, m->cseq.n, k);
	k = fnv64(b.p ? b.p : "", b.n, k) | 1;
	uint32_t i = (uint32_t)(k >> 20) & ((1u << DEDUP_BITS) - 1);
	if (g_dedup[i].key == k && now - g_dedup[i].t < 32000)
		return 1;
	g_dedup[i].key = k;
	g_dedup[i].t = now;
	return 0;
}

/* Call-IDs of subscriptions seen (renewal detection) */
static uint64_t *g_subs;
static size_t g_subs_n, g_subs_cap;

static int subs_check_add(uint64_t k)
{
	size_t i;
	k |= 1;
	if ((g_subs_n + 1) * 2 > g_subs_cap) {
		size_t oc = g_subs_cap, nc = oc ? oc * 2 : 1024;
		uint64_t *old = g_subs;
		g_subs = calloc(nc, sizeof *g_subs);
		if (!g_subs)
			fatal("out of memory");
		g_subs_cap = nc;
		for (size_t j = 0; j < oc; j++)
			if (old[j]) {
				i = old[j] & (nc - 1);
				while (g_subs[i])
					i = (i + 1) & (nc - 1);
				g_subs[i] = old[j];
			}
		free(old);
	}
	i = k & (g_subs_cap - 1);
	while (g_subs[i]) {
		if (g_subs[i] == k)
			return 1;
		i = (i + 1) & (g_subs_cap - 1);
	}
	g_subs[i] = k;
	g_subs_n++;
	return 0;
}

static uint32_t to_tag_for(const struct sipmsg *m)
{
	return (uint32_t)fnv64(m->callid.p, m->callid.n, 0) | 1;
}

static void send_response(const struct peer *pr, const struct sipmsg *m, int code, const char *reason, const char *extra)
{
	struct buf *o = &g_out;
	o->n = 0;
	buf_printf(o, "SIP/2.0 %d %s\r\n", code, reason);
	for (int i = 0; i < m->nvia; i++)
		buf_printf(o, "Via: %.*s\r\n", (int)m->via[i].n, m->via[i].p);
	buf_printf(o, "From: %.*s\r\n", (int)m->from.n, m->from.p);
	if (header_has_tag(m->to) || code == 100)
		buf_printf(o, "To: %.*s\r\n", (int)m->to.n, m->to.p);
	else
		buf_printf(o, "To: %.*s;tag=%08x\r\n", (int)m->to.n, m->to.p, to_tag_for(m));
	buf_printf(o, "Call-ID: %.*s\r\nCSeq: %.*s\r\n%sUser-Agent: " UA "\r\nContent-Length: 0\r\n\r\n", (int)m->callid.n,
		   m->callid.p, (int)m->cseq.n, m->cseq.p, extra ? extra : "");
	peer_send(pr, o->p, o->n);
}

/* ------------------------------------------------------------------ */
/* live media: INVITE -> 200 (SDP) -> ACK -> RTP/PS stream -> BYE      */

#define MEDIA_FRAME_MS 40     /* 25 fps */
#define MEDIA_TS_STEP 3600    /* 90 kHz ticks per frame */
#define MEDIA_MAX_MS 60000    /* a stream stops after 60 s */
#define MEDIA_RTP_MAX 1400    /* RTP payload bytes */
#define MEDIA_PES_MAX 65000   /* access-unit bytes per PES packet */
#define MEDIA_NOACK_MS (64 * T1_MS)
#define MEDIA_CONNECT_MS 10000 /* TCP media: connect must finish within 10 s */
#define MEDIA_WQ_MAX (4u << 20) /* TCP media: end the call past 4 MB unsent */

/* --media file: the whole H.264 Annex-B stream, split at AUD NALs */
static unsigned char *g_media;
static size_t g_media_n;
static struct au {
	uint32_t off, len;
	uint8_t idr;
} *g_au;
static uint32_t g_nau;

/* reads --media FILE and indexes its access units (each starts at an AUD) */
static void media_load(const char *path)
{
	FILE *f = fopen(path, "rb");
	size_t cap = 0, k;
	uint32_t aucap = 0;
	if (!f)
		usage_error("--media: cannot open '%s': %s", path, strerror(errno));
	for (;;) {
		if (g_media_n == cap) {
			cap = cap ? cap * 2 : 1 << 20;
			if (cap > ((size_t)1 << 31))
				usage_error("--media: '%s' is larger than 2 GB", path);
			g_media = xrealloc(g_media, cap);
		}
		k = fread(g_media + g_media_n, 1, cap - g_media_n, f);
		if (!k)
			break;
		g_media_n += k;
	}
	if (ferror(f))
		usage_error("--media: cannot read '%s': %s", path, strerror(errno));
	fclose(f);
	for (size_t i = 0; i + 3 < g_media_n; i++) {
		size_t s;
		unsigned t;
		if (g_media[i] || g_media[i + 1] || g_media[i + 2] != 1)
			continue;
		s = (i && !g_media[i - 1]) ? i - 1 : i; /* 4-byte start code */
		t = g_media[i + 3] & 0x1f;
		if (t == 9) {
			if (g_nau == aucap) {
				aucap = aucap ? aucap * 2 : 256;
				g_au = xrealloc(g_au, aucap * sizeof *g_au);
			}
			if (g_nau)
				g_au[g_nau - 1].len = (uint32_t)(s - g_au[g_nau - 1].off);
			g_au[g_nau].off = (uint32_t)s;
			g_au[g_nau].idr = 0;
			g_nau++;
		} else if (t == 5 && g_nau)
			g_au[g_nau - 1].idr = 1;
		i += 2;
	}
	if (!g_nau)
		usage_error("--media: '%s' has no access-unit delimiter (NAL type 9); make it with "
			    "-x264-params aud=1 -f h264", path);
	g_au[g_nau - 1].len = (uint32_t)(g_media_n - g_au[g_nau - 1].off);
}

/* MPEG-2 CRC32: poly 0x04C11DB7, init 0xFFFFFFFF, no reflection, no final xor */
static uint32_t crc32_mpeg(const unsigned char *p, size_t n)
{
	uint32_t c = 0xFFFFFFFFu;
	while (n--) {
		c ^= (uint32_t)*p++ << 24;
		for (int b = 0; b < 8; b++)
			c = (c & 0x80000000u) ? (c << 1) ^ 0x04C11DB7u : c << 1;
	}
	return c;
}

/* 5-byte PTS/DTS field with the 4-bit prefix */
static void put_ts(unsigned char *o, unsigned prefix, uint64_t ts)
{
	ts &= 0x1FFFFFFFFULL;
	o[0] = (unsigned char)((prefix << 4) | ((ts >> 29) & 0x0E) | 1);
	o[1] = (unsigned char)(ts >> 22);
	o[2] = (unsigned char)(((ts >> 14) & 0xFE) | 1);
	o[3] = (unsigned char)(ts >> 7);
	o[4] = (unsigned char)(((ts << 1) & 0xFE) | 1);
}

/* one access unit as MPEG-2 Program Stream: pack header [+ system header +
 * PSM on IDR units] + PES packets of at most MEDIA_PES_MAX payload bytes */
static void ps_build(struct buf *o, const struct au *a, uint64_t clk)
{
	const uint32_t mux = 20000; /* x 50 bytes/s = 8 Mbit/s */
	uint64_t scr = clk & 0x1FFFFFFFFULL, pts = clk + 2 * MEDIA_TS_STEP;
	unsigned char h[32];
	const unsigned char *p = g_media + a->off;
	size_t left = a->len;
	int first = 1;
	o->n = 0;
	h[0] = 0, h[1] = 0, h[2] = 1, h[3] = 0xBA;
	h[4] = (unsigned char)(0x44 | ((scr >> 27) & 0x38) | ((scr >> 28) & 0x03));
	h[5] = (unsigned char)(scr >> 20);
	h[6] = (unsigned char)(((scr >> 12) & 0xF8) | 0x04 | ((scr >> 13) & 0x03));
	h[7] = (unsigned char)(scr >> 5);
	h[8] = (unsigned char)(((scr << 3) & 0xF8) | 0x04); /* SCR extension 0 */
	h[9] = 0x01;
	h[10] = (unsigned char)(mux >> 14);
	h[11] = (unsigned char)(mux >> 6);
	h[12] = (unsigned char)(((mux << 2) & 0xFC) | 0x03);
	h[13] = 0xF8; /* reserved, stuffing length 0 */
	buf_add(o, h, 14);
	if (a->idr) {
		static const unsigned char sys[15] = {
			0x00, 0x00, 0x01, 0xBB, 0x00, 0x09, /* header_length 9 */
			0x80 | ((20000 >> 15) & 0x7F), (20000 >> 7) & 0xFF, ((20000 << 1) & 0xFE) | 1, /* rate_bound */
			0x00,       /* audio_bound 0, fixed 0, CSPS 0 */
			0xE1,       /* audio lock, video lock, marker, video_bound 1 */
			0x7F,       /* packet_rate_restriction 0, reserved */
			0xE0, 0xE4, 0x00, /* stream 0xE0: P-STD scale 1 (x 1024), size 1024 -> 1 MB */
		};
		unsigned char psm[18] = {
			0x00, 0x00, 0x01, 0xBC, 0x00, 0x0E, /* program_stream_map_length 14 */
			0xE0,       /* current_next 1, reserved, version 0 */
			0xFF,       /* reserved, marker */
			0x00, 0x00, /* program_stream_info_length */
			0x00, 0x04, /* elementary_stream_map_length */
			0x1B, 0xE0, 0x00, 0x00, /* H.264, stream 0xE0, no descriptors */
		};
		uint32_t crc = crc32_mpeg(psm, 16);
		buf_add(o, sys, sizeof sys);
		buf_add(o, psm, 16);
		h[0] = (unsigned char)(crc >> 24), h[1] = (unsigned char)(crc >> 16);
		h[2] = (unsigned char)(crc >> 8), h[3] = (unsigned char)crc;
		buf_add(o, h, 4);
	}
	while (left || first) {
		size_t k = left > MEDIA_PES_MAX ? MEDIA_PES_MAX : left, hl = first ? 10 : 0, plen = 3 + hl + k;
		h[0] = 0, h[1] = 0, h[2] = 1, h[3] = 0xE0;
		h[4] = (unsigned char)(plen >> 8), h[5] = (unsigned char)plen;
		h[6] = first ? 0x84 : 0x80; /* '10', data_alignment on the first */
		h[7] = first ? 0xC0 : 0x00; /* PTS + DTS */
		h[8] = (unsigned char)hl;
		if (first) {
			put_ts(h + 9, 3, pts);
			put_ts(h + 14, 1, pts);
		}
		buf_add(o, h, 9 + hl);
		buf_add(o, p, k);
		p += k;
		left -= k;
		first = 0;
	}
}

enum { MS_FREE = 0, MS_INVITED, MS_STREAMING };

struct msess {
	uint8_t state;
	uint32_t gen, next_t, tries, t0, frame, au, cseq;
	uint64_t key; /* fnv64 of the Call-ID */
	char *callid, *resp;
	size_t resp_n;
	struct peer pr;      /* where the 200 goes (retransmissions) */
	struct sockaddr_in dst;
	int fd;
	uint16_t lport, seq;
	uint32_t ssrc, ts0;
	uint8_t tcp;    /* RTP over TCP (RFC 4571), we connect (a=setup:active) */
	uint8_t listening; /* tcp: the platform connects to us (its offer a=setup:active, we answer passive) */
	uint8_t tstate; /* tcp: 0 not yet, 1 connecting (or listening), 2 connected */
	uint8_t wout;   /* tcp: EPOLLOUT armed */
	struct buf wq;  /* tcp: framed packets not yet written */
	size_t woff;
};
static int word_in(const char *list, const char *w);
static struct msess *g_ms;
static uint32_t g_nms;
static struct buf g_ps, g_rtp;

static int64_t msess_find(const struct sipmsg *m)
{
	uint64_t k = fnv64(m->callid.p, m->callid.n, 0);
	for (uint32_t i = 0; i < g_nms; i++)
		if (g_ms[i].state != MS_FREE && g_ms[i].key == k && strlen(g_ms[i].callid) == m->callid.n &&
		    memcmp(g_ms[i].callid, m->callid.p, m->callid.n) == 0)
			return i;
	return -1;
}

static void msess_free(uint32_t i)
{
	struct msess *s = &g_ms[i];
	if (s->fd >= 0)
		close(s->fd);
	free(s->callid);
	free(s->resp);
	free(s->wq.p);
	memset(&s->wq, 0, sizeof s->wq);
	s->woff = 0;
	s->tcp = s->tstate = s->wout = s->listening = 0;
	s->callid = s->resp = NULL;
	s->fd = -1;
	s->state = MS_FREE;
	s->gen++;
	s->next_t = 0;
}

static void msess_arm(uint32_t i, uint32_t t)
{
	g_ms[i].next_t = t;
	heap_push(t, EV_MEDIA, i, g_ms[i].gen);
}

/* TCP media: write what the socket takes; EPOLLOUT while some is left.
 * -1 if the connection is gone */
static int media_flush(uint32_t i)
{
	struct msess *s = &g_ms[i];
	while (s->woff < s->wq.n) {
		ssize_t k = send(s->fd, s->wq.p + s->woff, s->wq.n - s->woff, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (k <= 0) {
			warnx_("stream %s: TCP send: %s", s->callid, k < 0 ? strerror(errno) : "closed");
			return -1;
		}
		s->woff += (size_t)k;
	}
	if (s->woff == s->wq.n)
		s->wq.n = s->woff = 0;
	else if (s->woff > (1u << 16)) {
		memmove(s->wq.p, s->wq.p + s->woff, s->wq.n - s->woff);
		s->wq.n -= s->woff;
		s->woff = 0;
	}
	if (s->wout != (s->wq.n > 0)) {
		struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | (s->wq.n ? EPOLLOUT : 0),
					  .data.u64 = EPD(EP_MEDIA, i) };
		s->wout = s->wq.n > 0;
		epoll_ctl(g_ep, EPOLL_CTL_MOD, s->fd, &ev);
	}
	return 0;
}

/* TCP media: a refused/failed connect, or a lost connection, ends the call */
static void media_tcp_fail(uint32_t i, const char *what, int err)
{
	struct msess *s = &g_ms[i];
	warnx_("stream %s: TCP %s %s:%u: %s", s->callid, what, inet_ntoa(s->dst.sin_addr), ntohs(s->dst.sin_port),
	       err ? strerror(err) : "failed");
	if (s->tstate != 2)
		S.media_connect_failed++;
	msess_free(i);
}

/* one frame of session i: PS of the access unit in RTP packets */
static void media_frame(uint32_t i)
{
	struct msess *s = &g_ms[i];
	const struct au *a = &g_au[s->au];
	uint32_t ts = s->ts0 + s->frame * MEDIA_TS_STEP;
	size_t off = 0;
	ps_build(&g_ps, a, (uint64_t)s->frame * MEDIA_TS_STEP + MEDIA_TS_STEP);
	while (off < g_ps.n) {
		size_t k = g_ps.n - off > MEDIA_RTP_MAX ? MEDIA_RTP_MAX : g_ps.n - off;
		unsigned char h[12];
		int last = off + k == g_ps.n;
		h[0] = 0x80;
		h[1] = (unsigned char)((last ? 0x80 : 0) | 96);
		h[2] = (unsigned char)(s->seq >> 8), h[3] = (unsigned char)s->seq;
		h[4] = (unsigned char)(ts >> 24), h[5] = (unsigned char)(ts >> 16);
		h[6] = (unsigned char)(ts >> 8), h[7] = (unsigned char)ts;
		h[8] = (unsigned char)(s->ssrc >> 24), h[9] = (unsigned char)(s->ssrc >> 16);
		h[10] = (unsigned char)(s->ssrc >> 8), h[11] = (unsigned char)s->ssrc;
		if (s->tcp) { /* RFC 4571: 2-byte big-endian length, then the RTP packet */
			unsigned char l2[2] = { (unsigned char)((12 + k) >> 8), (unsigned char)(12 + k) };
			buf_add(&s->wq, l2, 2);
			buf_add(&s->wq, h, 12);
			buf_add(&s->wq, g_ps.p + off, k);
			S.media_packets++;
			s->seq++;
			off += k;
			continue;
		}
		g_rtp.n = 0;
		buf_add(&g_rtp, h, 12);
		buf_add(&g_rtp, g_ps.p + off, k);
		if (sendto(s->fd, g_rtp.p, g_rtp.n, MSG_DONTWAIT, (const struct sockaddr *)&s->dst, sizeof s->dst) < 0)
			S.send_errors++;
		else
			S.media_packets++;
		s->seq++;
		off += k;
	}
	s->frame++;
	if (++s->au == g_nau)
		s->au = 0; /* loop the file */
}

static void media_timer(uint32_t i, uint32_t now)
{
	struct msess *s = &g_ms[i];
	if (s->state == MS_STREAMING && s->tcp && s->tstate != 2) {
		if (now - s->t0 >= MEDIA_CONNECT_MS)
			media_tcp_fail(i, "connect to", ETIMEDOUT);
		else
			msess_arm(i, s->t0 + MEDIA_CONNECT_MS);
		return;
	}
	if (s->state == MS_INVITED) {
		/* 200 OK not yet ACKed: Timer G retransmissions, give up at 64*T1 */
		uint32_t iv;
		if (now - s->t0 >= MEDIA_NOACK_MS) {
			if (C.verbose)
				warnx_("INVITE %s: no ACK, session dropped", s->callid);
			msess_free(i);
			return;
		}
		if (!s->pr.tcp || (C.invite_delay && s->tries == 0)) { /* over TCP only the delayed first 200 */
			peer_send(&s->pr, s->resp, s->resp_n);
			S.retransmits++;
		}
		iv = (uint32_t)T1_MS << (s->tries < 4 ? s->tries : 4);
		if (iv > T2_MS)
			iv = T2_MS;
		s->tries++;
		msess_arm(i, now + iv);
		return;
	}
	if (s->state != MS_STREAMING)
		return;
	if (now - s->t0 >= MEDIA_MAX_MS) {
		if (C.verbose)
			warnx_("stream %s: %u frames, 60 s limit reached", s->callid, s->frame);
		msess_free(i);
		return;
	}
	media_frame(i);
	if (s->tcp) {
		if (media_flush(i) != 0) {
			S.send_errors++;
			msess_free(i);
			return;
		}
		if (s->wq.n - s->woff > MEDIA_WQ_MAX) {
			warnx_("stream %s: TCP peer not reading (%zu bytes queued), call ended", s->callid,
			       s->wq.n - s->woff);
			S.send_errors++;
			msess_free(i);
			return;
		}
	}
	{
		uint32_t due = s->t0 + s->frame * MEDIA_FRAME_MS;
		msess_arm(i, due > now ? due : now + 1);
	}
}

/* the SDP answer + 200 of session i, kept for retransmissions */
static void media_answer(uint32_t i, const struct sipmsg *m, uint32_t d, const char *chan, const char *y)
{
	struct msess *s = &g_ms[i];
	char body[512];
	int bn = snprintf(body, sizeof body,
			  "v=0\r\no=%s 0 0 IN IP4 %s\r\ns=Play\r\nc=IN IP4 %s\r\nt=0 0\r\n"
			  "m=video %u %sRTP/AVP 96\r\n%sa=sendonly\r\na=rtpmap:96 PS/90000\r\ny=%s\r\n",
			  chan, g_local_ip, C.sdp_ip[0] ? C.sdp_ip : g_local_ip, s->lport, s->tcp ? "TCP/" : "",
			  s->listening ? "a=setup:passive\r\na=connection:new\r\n" :
			  s->tcp ? "a=setup:active\r\na=connection:new\r\n" : "", y);
	struct buf *o = &g_out;
	o->n = 0;
	buf_printf(o, "SIP/2.0 200 OK\r\n");
	for (int k = 0; k < m->nvia; k++)
		buf_printf(o, "Via: %.*s\r\n", (int)m->via[k].n, m->via[k].p);
	buf_printf(o, "From: %.*s\r\n", (int)m->from.n, m->from.p);
	if (header_has_tag(m->to))
		buf_printf(o, "To: %.*s\r\n", (int)m->to.n, m->to.p);
	else
		buf_printf(o, "To: %.*s;tag=%08x\r\n", (int)m->to.n, m->to.p, to_tag_for(m));
	buf_printf(o,
		   "Call-ID: %.*s\r\nCSeq: %.*s\r\nContact: <sip:%s@%s%s>\r\nUser-Agent: " UA "\r\n"
		   "Content-Type: APPLICATION/SDP\r\nContent-Length: %d\r\n\r\n%s",
		   (int)m->callid.n, m->callid.p, (int)m->cseq.n, m->cseq.p, chan, dev_hostport(d),
		   C.tcp ? ";transport=tcp" : "", bn, body);
	free(s->resp);
	s->resp = xmalloc(o->n);
	memcpy(s->resp, o->p, o->n);
	s->resp_n = o->n;
}

/* SDP offer: video destination, transport (*tcp: TCP/RTP/AVP, 1 the platform
 * passive: we connect; 2 the platform active: we listen) and y= SSRC; 0 if usable */
static int sdp_offer(const char *b, size_t n, struct sockaddr_in *dst, int *tcp, char *y, size_t ycap)
{
	const char *p = b, *e = b + n;
	char cs[64] = "", cm[64] = "";
	long port = -1;
	int in_video = 0, peer_active = 0;
	strcpy(y, "0000000000");
	*tcp = 0;
	while (p < e) {
		const char *le = memchr(p, '\n', (size_t)(e - p)), *ln = p;
		size_t l;
		if (!le)
			le = e;
		l = (size_t)(le - p);
		if (l && ln[l - 1] == '\r')
			l--;
		p = le + 1;
		if (l >= 2 && ln[0] == 'm' && ln[1] == '=') {
			char media[16], proto[32];
			long pt = -1;
			char tmp[128];
			snprintf(tmp, sizeof tmp, "%.*s", (int)(l < 127 ? l : 127), ln + 2);
			in_video = sscanf(tmp, "%15s %ld %31s", media, &pt, proto) == 3 && strcmp(media, "video") == 0;
			if (in_video) {
				if (strcasecmp(proto, "TCP/RTP/AVP") == 0)
					*tcp = 1;
				else if (strcasecmp(proto, "RTP/AVP") != 0)
					return -1;
				port = pt;
			}
		} else if (in_video && l >= 14 && strncasecmp(ln, "a=setup:active", 14) == 0) {
			peer_active = 1; /* the platform connects to us: we listen */
		} else if (l > 9 && strncasecmp(ln, "c=IN IP4 ", 9) == 0) {
			char *dstc = in_video ? cm : cs;
			snprintf(dstc, 64, "%.*s", (int)(l - 9 < 63 ? l - 9 : 63), ln + 9);
			dstc[strcspn(dstc, " /")] = 0;
		} else if (l >= 3 && ln[0] == 'y' && ln[1] == '=') {
			size_t k = l - 2;
			if (k && k < ycap && all_digits(ln + 2, k)) {
				memcpy(y, ln + 2, k);
				y[k] = 0;
			}
		}
	}
	memset(dst, 0, sizeof *dst);
	dst->sin_family = AF_INET;
	if (*tcp && peer_active)
		*tcp = 2;
	if (port <= 0 || port > 65535 || inet_pton(AF_INET, cm[0] ? cm : cs, &dst->sin_addr) != 1)
		return -1;
	dst->sin_port = htons((uint16_t)port);
	return 0;
}

static void on_invite(const struct peer *pr, uint32_t d, struct sv user, const struct sipmsg *m, int dup, uint32_t now)
{
	char y[16], chan[21];
	struct sockaddr_in dst, a = { .sin_family = AF_INET, .sin_addr = C.bind_addr };
	socklen_t al = sizeof a;
	int64_t found = msess_find(m);
	uint32_t i;
	int fd, tcp;
	if (!dup)
		S.invites++;
	if (word_in(C.silent, "INVITE"))
		return; /* --silent INVITE: never answered */
	if (!g_nau) {
		send_response(pr, m, 488, "Not Acceptable Here", NULL);
		return;
	}
	if (user.n == 20)
		snprintf(chan, sizeof chan, "%.*s", 20, user.p);
	else
		dev_code(d, chan);
	if (found >= 0) { /* retransmission or re-INVITE: answer again, same stream */
		struct msess *s = &g_ms[found];
		char ys[16];
		if (s->state == MS_INVITED && now - s->t0 < C.invite_delay)
			return; /* --invite-delay: not yet */
		snprintf(ys, sizeof ys, "%010u", s->ssrc);
		if (sdp_offer(m->body, m->body_len, &dst, &tcp, y, sizeof y) != 0)
			strcpy(y, ys);
		media_answer((uint32_t)found, m, d, chan, y);
		peer_send(pr, s->resp, s->resp_n);
		return;
	}
	if (!m->body_len || sdp_offer(m->body, m->body_len, &dst, &tcp, y, sizeof y) != 0) {
		send_response(pr, m, 488, "Not Acceptable Here", NULL);
		return;
	}
	/* TCP: bound now (its port goes in the answer), connected after ACK */
	fd = socket(AF_INET, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &al) != 0 ||
	    (tcp == 2 && listen(fd, 1) != 0)) {
		warnx_("media socket: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		send_response(pr, m, 500, "Server Internal Error", NULL);
		return;
	}
	for (i = 0; i < g_nms && g_ms[i].state != MS_FREE; i++)
		;
	if (i == g_nms) {
		g_ms = xrealloc(g_ms, (g_nms + 1) * sizeof *g_ms);
		memset(&g_ms[i], 0, sizeof g_ms[i]);
		g_ms[i].fd = -1;
		g_nms++;
	}
	{
		struct msess *s = &g_ms[i];
		s->state = MS_INVITED;
		s->key = fnv64(m->callid.p, m->callid.n, 0);
		s->callid = xmalloc(m->callid.n + 1);
		memcpy(s->callid, m->callid.p, m->callid.n);
		s->callid[m->callid.n] = 0;
		s->pr = *pr;
		s->dst = dst;
		s->fd = fd;
		s->lport = ntohs(a.sin_port);
		s->ssrc = (uint32_t)strtoull(y, NULL, 10);
		s->seq = (uint16_t)rnd64();
		s->ts0 = (uint32_t)rnd64();
		s->t0 = now;
		s->tries = 0;
		s->frame = s->au = 0;
		s->tcp = (uint8_t)(tcp != 0);
		s->listening = (uint8_t)(tcp == 2);
		s->tstate = s->wout = 0;
		media_answer(i, m, d, chan, y);
		if (C.invite_delay) { /* --invite-delay: the 200 goes out with the first timer */
			msess_arm(i, now + C.invite_delay);
		} else {
			send_response(pr, m, 100, "Trying", NULL);
			peer_send(pr, s->resp, s->resp_n);
			msess_arm(i, now + T1_MS);
		}
		if (C.verbose)
			warnx_("INVITE %s: %s -> %s:%u%s ssrc %s", s->callid, chan, inet_ntoa(dst.sin_addr),
			       ntohs(dst.sin_port), tcp ? " (TCP)" : "", y);
	}
}

static void on_ack(const struct sipmsg *m, uint32_t now)
{
	int64_t i = m->callid.n ? msess_find(m) : -1;
	struct msess *s;
	if (i < 0)
		return;
	s = &g_ms[i];
	if (s->state != MS_INVITED)
		return;
	s->state = MS_STREAMING;
	s->t0 = now;
	s->gen++; /* cancels the 200 retransmissions */
	if (s->tcp && s->listening) { /* wait for the platform's connection; the stream starts once accepted */
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EPD(EP_MEDIA, (uint32_t)i) };
		s->tstate = 1;
		if (epoll_ctl(g_ep, EPOLL_CTL_ADD, s->fd, &ev) != 0) {
			media_tcp_fail((uint32_t)i, "epoll for", errno);
			return;
		}
		msess_arm((uint32_t)i, now + MEDIA_CONNECT_MS);
		return;
	}
	if (s->tcp) { /* connect; the stream starts once it is established */
		int one = 1;
		struct epoll_event ev = { .events = EPOLLOUT | EPOLLRDHUP, .data.u64 = EPD(EP_MEDIA, (uint32_t)i) };
		setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (connect(s->fd, (const struct sockaddr *)&s->dst, sizeof s->dst) != 0 && errno != EINPROGRESS) {
			media_tcp_fail((uint32_t)i, "connect to", errno);
			return;
		}
		s->tstate = 1;
		s->wout = 1;
		if (epoll_ctl(g_ep, EPOLL_CTL_ADD, s->fd, &ev) != 0) {
			media_tcp_fail((uint32_t)i, "epoll for", errno);
			return;
		}
		msess_arm((uint32_t)i, now + MEDIA_CONNECT_MS);
		return;
	}
	media_timer((uint32_t)i, now);
}

/* TCP media socket event: connect finished, writable again, or peer closed */
static void media_event(uint32_t i, uint32_t events)
{
	struct msess *s;
	uint32_t now = now_ms();
	if (i >= g_nms)
		return;
	s = &g_ms[i];
	if (s->state != MS_STREAMING || !s->tcp || !s->tstate || s->fd < 0)
		return; /* stale event of a freed session */
	if (s->tstate == 1 && s->listening) {
		int one = 1, c = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.u64 = EPD(EP_MEDIA, i) };
		if (c < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return;
			media_tcp_fail(i, "accept on", errno);
			return;
		}
		close(s->fd); /* the listening socket: one connection per call */
		s->fd = c;
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (epoll_ctl(g_ep, EPOLL_CTL_ADD, c, &ev) != 0) {
			media_tcp_fail(i, "epoll for", errno);
			return;
		}
		s->tstate = 2;
		s->wout = 0;
		if (C.verbose)
			warnx_("stream %s: TCP connection accepted on port %u", s->callid, s->lport);
		s->t0 = now;
		s->gen++;
		media_timer(i, now);
		return;
	}
	if (s->tstate == 1) {
		int err = 0;
		socklen_t el = sizeof err;
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
			err = errno;
		if (err || (events & (EPOLLERR | EPOLLHUP))) {
			media_tcp_fail(i, "connect to", err);
			return;
		}
		s->tstate = 2;
		if (C.verbose)
			warnx_("stream %s: TCP connected to %s:%u", s->callid, inet_ntoa(s->dst.sin_addr),
			       ntohs(s->dst.sin_port));
		s->t0 = now; /* pacing and the 60 s limit count from here */
		s->gen++;    /* drops the connect-timeout timer */
		media_timer(i, now); /* first frame; flush sets EPOLLOUT as needed */
		return;
	}
	if (events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
		warnx_("stream %s: TCP connection closed by peer after %u frames", s->callid, s->frame);
		msess_free(i);
		return;
	}
	if (events & EPOLLIN) { /* RTCP or anything else: read and ignore */
		char junk[4096];
		ssize_t k = recv(s->fd, junk, sizeof junk, MSG_DONTWAIT);
		if (k == 0) {
			warnx_("stream %s: TCP connection closed by peer after %u frames", s->callid, s->frame);
			msess_free(i);
			return;
		}
	}
	if ((events & EPOLLOUT) && media_flush(i) != 0) {
		S.send_errors++;
		msess_free(i);
	}
}

/* NOTIFY inside the dialog a SUBSCRIBE created */
static void send_notify(uint32_t d, const struct sipmsg *m, long expires, const char *body, size_t blen, uint32_t now)
{
	char from[512], to[512], callid[256], ruri[256], extra[512], branch[64];
	struct sv target = header_uri(m->contact.n ? m->contact : m->from);
	uint32_t s = txn_alloc(d, TK_NOTIFY);
	const char *hp = dev_hostport(d);
	if (header_has_tag(m->to))
		snprintf(from, sizeof from, "%.*s", (int)m->to.n, m->to.p);
	else
		snprintf(from, sizeof from, "%.*s;tag=%08x", (int)m->to.n, m->to.p, to_tag_for(m));
	snprintf(to, sizeof to, "%.*s", (int)m->from.n, m->from.p);
	snprintf(callid, sizeof callid, "%.*s", (int)m->callid.n, m->callid.p);
	snprintf(ruri, sizeof ruri, "%.*s", (int)target.n, target.p);
	snprintf(extra, sizeof extra, "Event: %.*s\r\nSubscription-State: active;expires=%ld\r\n",
		 (int)(m->event.n ? m->event.n : 7), m->event.n ? m->event.p : "presence", expires);
	txn_branch(s, branch, sizeof branch);
	build_request(&g_out, d, hp, "NOTIFY", ruri, from, to, callid, ++g_dev[d].cseq, branch, extra,
		      "Application/MANSCDP+xml", body, blen);
	txn_launch(s, g_out.p, g_out.n, now);
	S.notifies++;
}

static void on_subscribe(const struct peer *pr, uint32_t d, const struct sipmsg *m, uint32_t now)
{
	char cmd[64] = "", sn[32] = "", extra[256], code[21];
	long expires = sv_long(m->expires);
	int renewal;
	if (expires < 0)
		expires = 3600;
	xml_get(m->body, m->body_len, "CmdType", cmd, sizeof cmd);
	xml_get(m->body, m->body_len, "SN", sn, sizeof sn);
	digits_only(sn);
	if (!sn[0])
		snprintf(sn, sizeof sn, "%u", ++g_dev[d].sn);
	if (!cmd[0] && m->event.n >= 7 && strncasecmp(m->event.p, "Catalog", 7) == 0)
		strcpy(cmd, "Catalog");
	dev_code(d, code);
	snprintf(extra, sizeof extra, "Expires: %ld\r\nContact: <sip:%s@%s%s>\r\n", expires, code, dev_hostport(d),
		 C.tcp ? ";transport=tcp" : "");
	send_response(pr, m, 200, "OK", extra);
	renewal = subs_check_add(fnv64(m->callid.p, m->callid.n, 0));
	if (renewal)
		S.renewals++;
	else
		S.subscriptions++;
	if (expires == 0 || renewal)
		return;
	if (strcmp(cmd, "Catalog") == 0) {
		g_body.n = 0;
		buf_printf(&g_body,
			   "%s<Notify>\r\n<CmdType>Catalog</CmdType>\r\n<SN>%s</SN>\r\n<DeviceID>%s</DeviceID>\r\n"
			   "<SumNum>1</SumNum>\r\n<DeviceList Num=\"1\">\r\n",
			   XML_HEAD, sn, code);
		if (C.channels)
			catalog_item(&g_body, d, 0, 0, "UPDATE");
		else {
			double lon, lat;
			code_lonlat(code, &lon, &lat);
			buf_printf(&g_body,
				   "<Item>\r\n<DeviceID>%s</DeviceID>\r\n<Name>gbsim-%s</Name>\r\n<Status>ON</Status>\r\n"
				   "<Longitude>%.6f</Longitude>\r\n<Latitude>%.6f</Latitude>\r\n<Event>UPDATE</Event>\r\n</Item>\r\n",
				   code, code + 14, lon, lat);
		}
		buf_printf(&g_body, "</DeviceList>\r\n</Notify>\r\n");
		send_notify(d, m, expires, g_body.p, g_body.n, now);
	} else if (strcmp(cmd, "MobilePosition") == 0) {
		char ts[32];
		double lon, lat;
		size_t n;
		code_lonlat(code, &lon, &lat);
		iso_time(ts, sizeof ts);
		n = (size_t)snprintf(g_tmp, sizeof g_tmp,
				     "%s<Notify>\r\n<CmdType>MobilePosition</CmdType>\r\n<SN>%s</SN>\r\n<DeviceID>%s</DeviceID>\r\n"
				     "<Time>%s</Time>\r\n<Longitude>%.6f</Longitude>\r\n<Latitude>%.6f</Latitude>\r\n"
				     "<Speed>0.0</Speed>\r\n<Direction>0.0</Direction>\r\n<Altitude>0</Altitude>\r\n</Notify>\r\n",
				     XML_HEAD, sn, code, ts, lon, lat);
		send_notify(d, m, expires, g_tmp, n, now);
	}
	/* Alarm subscriptions: nothing to send until an alarm happens */
}

/* ------------------------------------------------------------------ */
/* device control, configuration, presets and recordings              */

/* is w one of the comma-separated words of list */
static int word_in(const char *list, const char *w)
{
	size_t l = strlen(w);
	for (const char *p = list; p && *p;) {
		const char *c = strchr(p, ',');
		size_t n = c ? (size_t)(c - p) : strlen(p);
		if (n == l && strncmp(p, w, l) == 0)
			return 1;
		p = c ? c + 1 : NULL;
	}
	return 0;
}

static int has_elem(const char *body, size_t n, const char *name)
{
	char t[64];
	int l = snprintf(t, sizeof t, "<%s>", name);
	return memmem(body, n, t, (size_t)l) != NULL;
}

/* --control-log: one line per Control/Query (or INVITE) received,
 * tab-separated: root, CmdType, DeviceID, then the body exactly as received
 * with CR left out and LF left out (XML: the bytes the platform sent, e.g.
 * <PTZCmd>A50F...</PTZCmd>) or written as '|' (SDP: its lines) */
static void control_log_lines(const char *root, const char *cmd, const char *target, const char *body, size_t n,
			      int bars)
{
	FILE *f;
	if (!C.control_log)
		return;
	f = fopen(C.control_log, "a");
	if (!f) {
		warnx_("--control-log %s: %s", C.control_log, strerror(errno));
		return;
	}
	fprintf(f, "%s\t%s\t%s\t", root, cmd, target);
	for (size_t i = 0; i < n; i++)
		if (body[i] == '\n' && bars)
			fputc('|', f);
		else if (body[i] != '\r' && body[i] != '\n')
			fputc(body[i], f);
	fputc('\n', f);
	fclose(f);
}

static void control_log(const char *root, const char *cmd, const char *target, const char *body, size_t n)
{
	control_log_lines(root, cmd, target, body, n, 0);
}

static void send_answer(uint32_t d, const char *cmd, const char *sn, const char *target, const char *inner, uint32_t now)
{
	int twice = word_in(C.answer_twice, cmd);
	g_body.n = 0;
	buf_printf(&g_body, "%s<Response>\r\n<CmdType>%s</CmdType>\r\n<SN>%s</SN>\r\n<DeviceID>%s</DeviceID>\r\n%s%s</Response>\r\n",
		   XML_HEAD, word_in(C.answer_other, cmd) ? "DeviceStatus" : cmd, sn, target, inner, twice ? inner : "");
	dev_message(d, TK_MSG, g_body.p, g_body.n, now);
}

/* yyyy-MM-ddTHH:mm:ss (no zone: the device's clock) as seconds, UTC-naive */
static int parse_gbtime(const char *s, time_t *out)
{
	struct tm tm;
	const char *e;
	memset(&tm, 0, sizeof tm);
	e = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!e || *e)
		return -1;
	*out = timegm(&tm);
	return 0;
}

static void fmt_gbtime(time_t t, char *out, size_t cap)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
}

/* RecordInfo: one record per hour of the period asked for, except hour
 * --record-gap (default 2, the third), in pages of --page-size with SumNum */
static void send_records(uint32_t d, const char *sn, const char *target, const char *body, size_t blen, uint32_t now)
{
	char st[40] = "", et[40] = "", a[32], b[32];
	time_t t0, t1;
	uint32_t hours, total = 0, P = C.page_size, sent = 0;
	uint32_t idx[512];
	xml_get(body, blen, "StartTime", st, sizeof st);
	xml_get(body, blen, "EndTime", et, sizeof et);
	if (parse_gbtime(st, &t0) < 0 || parse_gbtime(et, &t1) < 0 || t1 <= t0) {
		send_answer(d, "RecordInfo", sn, target, "<SumNum>0</SumNum>\r\n<RecordList Num=\"0\">\r\n</RecordList>\r\n", now);
		return;
	}
	hours = (uint32_t)((t1 - t0 + 3599) / 3600);
	if (hours > 512)
		hours = 512;
	for (uint32_t i = 0; i < hours; i++)
		if ((int64_t)i != (int64_t)C.record_gap)
			idx[total++] = i;
	do {
		uint32_t cnt = total - sent < P ? total - sent : P;
		g_body.n = 0;
		buf_printf(&g_body,
			   "%s<Response>\r\n<CmdType>RecordInfo</CmdType>\r\n<SN>%s</SN>\r\n<DeviceID>%s</DeviceID>\r\n"
			   "<Name>gbsim %s</Name>\r\n<SumNum>%u</SumNum>\r\n<RecordList Num=\"%u\">\r\n",
			   XML_HEAD, sn, target, target + 14, total, cnt);
		for (uint32_t k = sent; k < sent + cnt; k++) {
			time_t s = t0 + (time_t)idx[k] * 3600, e = s + 3600 > t1 ? t1 : s + 3600;
			fmt_gbtime(s, a, sizeof a);
			fmt_gbtime(e, b, sizeof b);
			buf_printf(&g_body,
				   "<Item>\r\n<DeviceID>%s</DeviceID>\r\n<Name>gbsim %s</Name>\r\n<FilePath>/gbsim/%s/%u.ps</FilePath>\r\n"
				   "<Address>Sim Road</Address>\r\n<StartTime>%s</StartTime>\r\n<EndTime>%s</EndTime>\r\n"
				   "<Secrecy>0</Secrecy>\r\n<Type>time</Type>\r\n<RecorderID>%s</RecorderID>\r\n"
				   "<FileSize>%u</FileSize>\r\n<StreamNumber>0</StreamNumber>\r\n</Item>\r\n",
				   target, target + 14, target, idx[k], a, b, target, (uint32_t)(e - s) * 1000);
		}
		buf_printf(&g_body, "</RecordList>\r\n</Response>\r\n");
		dev_message(d, TK_MSG, g_body.p, g_body.n, now);
		S.record_pages++;
		sent += cnt;
	} while (sent < total);
}

/*
 * --snapshot: the 2022 device's own snapshot: POST the file to the
 * SnapShotConfig's UploadURL from a child (the SIP loop goes on), then log
 * the HTTP status as a control-log line "Upload<TAB>status<TAB>url".
 */
static void upload_snapshot(const char *body, size_t blen)
{
	char url[512];
	pid_t pid;
	if (!C.snapshot || xml_get(body, blen, "UploadURL", url, sizeof url) <= 0)
		return;
	/* the URL came XML-escaped */
	for (char *a; (a = strstr(url, "&amp;")) != NULL;)
		memmove(a + 1, a + 5, strlen(a + 5) + 1);
	signal(SIGCHLD, SIG_IGN);
	pid = fork();
	if (pid != 0)
		return;
	{
		CURL *c = curl_easy_init();
		struct curl_slist *h = curl_slist_append(NULL, "Content-Type: image/jpeg");
		FILE *f = fopen(C.snapshot, "rb"), *log;
		long status = 0, size;
		char *data;
		if (!c || !f || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
			_exit(1);
		data = malloc((size_t)size + 1);
		if (!data || fread(data, 1, (size_t)size, f) != (size_t)size)
			_exit(1);
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, data);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, size);
		curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
		if (curl_easy_perform(c) == CURLE_OK)
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		if (C.control_log && (log = fopen(C.control_log, "a")) != NULL) {
			fprintf(log, "Upload\t%ld\t%s\n", status, url);
			fclose(log);
		}
		_exit(0);
	}
}

/* a Control, or a Query other than Catalog/DeviceInfo/DeviceStatus */
static void on_control(uint32_t d, const char *root, const char *cmd, const char *sn, const char *target,
		       const char *body, size_t blen, uint32_t now)
{
	static const char *const answered[] = { "GuardCmd", "RecordCmd", "AlarmCmd", "HomePosition", "PTZPreciseCtrl",
						"BasicParam", "SnapShotConfig", NULL };
	char what[64] = "", inner[1024];
	S.controls++;
	control_log(root, cmd, target, body, blen);
	if (word_in(C.silent, cmd))
		return;
	if (strcmp(root, "Control") == 0) {
		/* PTZCmd and TeleBoot get no Response (the MESSAGE's 200 is all) */
		for (int i = 0; answered[i]; i++)
			if (has_elem(body, blen, answered[i])) {
				strcpy(what, answered[i]);
				break;
			}
		if (!what[0])
			return;
		snprintf(inner, sizeof inner, "<Result>%s</Result>\r\n", word_in(C.control_fail, what) ? "ERROR" : "OK");
		send_answer(d, cmd, sn, target, inner, now);
		if (strcmp(what, "SnapShotConfig") == 0 && !word_in(C.control_fail, what))
			upload_snapshot(body, blen);
		return;
	}
	if (strcmp(cmd, "RecordInfo") == 0) {
		send_records(d, sn, target, body, blen, now);
		return;
	}
	if (strcmp(cmd, "PresetQuery") == 0)
		snprintf(inner, sizeof inner,
			 "<PresetList Num=\"2\">\r\n<Item>\r\n<PresetID>1</PresetID>\r\n<PresetName>gate</PresetName>\r\n</Item>\r\n"
			 "<Item>\r\n<PresetID>7</PresetID>\r\n<PresetName>road</PresetName>\r\n</Item>\r\n</PresetList>\r\n");
	else if (strcmp(cmd, "HomePositionQuery") == 0)
		snprintf(inner, sizeof inner,
			 "<HomePosition>\r\n<Enabled>1</Enabled>\r\n<ResetTime>60</ResetTime>\r\n<PresetIndex>1</PresetIndex>\r\n"
			 "</HomePosition>\r\n");
	else if (strcmp(cmd, "CruiseTrackListQuery") == 0)
		snprintf(inner, sizeof inner, "<SumNum>0</SumNum>\r\n<CruiseTrackList Num=\"0\">\r\n</CruiseTrackList>\r\n");
	else if (strcmp(cmd, "ConfigDownload") == 0) {
		xml_get(body, blen, "ConfigType", what, sizeof what);
		if (strcmp(what, "BasicParam") == 0)
			snprintf(inner, sizeof inner,
				 "<Result>OK</Result>\r\n<BasicParam>\r\n<Name>gbsim %s</Name>\r\n<Expiration>%u</Expiration>\r\n"
				 "<HeartBeatInterval>%u</HeartBeatInterval>\r\n<HeartBeatCount>3</HeartBeatCount>\r\n</BasicParam>\r\n",
				 target + 14, C.expires, C.keepalive >= 5 ? (uint32_t)C.keepalive : 60);
		else if (strcmp(what, "VideoRecordPlan") == 0)
			snprintf(inner, sizeof inner,
				 "<Result>OK</Result>\r\n<VideoRecordPlan>\r\n<RecordEnable>1</RecordEnable>\r\n"
				 "<RecordScheduleSumNum>2</RecordScheduleSumNum>\r\n<RecordSchedule>\r\n<WeekDayNum>1</WeekDayNum>\r\n"
				 "<TimeSegmentSumNum>2</TimeSegmentSumNum>\r\n<TimeSegment>\r\n<StartHour>0</StartHour>\r\n"
				 "<StartMin>0</StartMin>\r\n<StartSec>0</StartSec>\r\n<StopHour>8</StopHour>\r\n<StopMin>0</StopMin>\r\n"
				 "<StopSec>0</StopSec>\r\n</TimeSegment>\r\n<TimeSegment>\r\n<StartHour>12</StartHour>\r\n"
				 "<StartMin>0</StartMin>\r\n<StartSec>0</StartSec>\r\n<StopHour>23</StopHour>\r\n<StopMin>59</StopMin>\r\n"
				 "<StopSec>59</StopSec>\r\n</TimeSegment>\r\n</RecordSchedule>\r\n<RecordSchedule>\r\n"
				 "<WeekDayNum>7</WeekDayNum>\r\n<TimeSegmentSumNum>1</TimeSegmentSumNum>\r\n<TimeSegment>\r\n"
				 "<StartHour>0</StartHour>\r\n<StartMin>0</StartMin>\r\n<StartSec>0</StartSec>\r\n<StopHour>23</StopHour>\r\n"
				 "<StopMin>59</StopMin>\r\n<StopSec>59</StopSec>\r\n</TimeSegment>\r\n</RecordSchedule>\r\n"
				 "<StreamNumber>0</StreamNumber>\r\n</VideoRecordPlan>\r\n");
		else
			snprintf(inner, sizeof inner, "<Result>ERROR</Result>\r\n");
	} else
		return;
	send_answer(d, cmd, sn, target, inner, now);
}

static void on_request(const struct peer *pr, const struct sipmsg *m, uint32_t now)
{
	struct sv user = uri_user(m->ruri);
	int64_t d = code_lookup(user.p, user.n);
	int dup;
	S.requests_in++;
	if (sv_eq(m->method, "ACK")) {
		on_ack(m, now);
		return;
	}
	if (!m->nvia || !m->from.n || !m->to.n || !m->callid.n || !m->cseq.n) {
		S.parse_errors++;
		return;
	}
	if (d < 0) {
		user = uri_user(m->to);
		d = code_lookup(user.p, user.n);
	}
	if (d < 0) {
		S.unknown_device++;
		send_response(pr, m, 404, "Not Found", NULL);
		return;
	}
	dup = dedup_seen(m, now);
	if (sv_eq(m->method, "INVITE")) {
		if (dup)
			S.dup_requests++;
		else {
			char who[32];
			snprintf(who, sizeof who, "%.*s", (int)(user.n < 31 ? user.n : 31), user.p);
			control_log_lines("INVITE", "SDP", who, m->body, m->body_len, 1);
		}
		if (user.n && code_lookup(user.p, user.n) != d)
			user.n = 0;
		on_invite(pr, (uint32_t)d, user, m, dup, now);
		return;
	}
	if (dup) {
		S.dup_requests++;
		send_response(pr, m, 200, "OK", NULL);
		return;
	}
	if (sv_eq(m->method, "BYE")) {
		int64_t i = msess_find(m);
		char who[32];
		snprintf(who, sizeof who, "%.*s", (int)(user.n < 31 ? user.n : 31), user.p);
		control_log_lines("BYE", "Call-ID", who, m->callid.p, m->callid.n, 1);
		S.byes++;
		if (i >= 0) {
			if (C.verbose)
				warnx_("BYE %s: stream stopped after %u frames", g_ms[i].callid, g_ms[i].frame);
			msess_free((uint32_t)i);
		}
		send_response(pr, m, 200, "OK", NULL);
		return;
	}
	if (sv_eq(m->method, "SUBSCRIBE")) {
		on_subscribe(pr, (uint32_t)d, m, now);
		return;
	}
	if (sv_eq(m->method, "INFO")) {
		char who[32];
		snprintf(who, sizeof who, "%.*s", (int)(user.n < 31 ? user.n : 31), user.p);
		control_log_lines("INFO", "MANSRTSP", who, m->body, m->body_len, 1);
	}
	send_response(pr, m, 200, "OK", NULL);
	if (sv_eq(m->method, "MESSAGE") && m->body_len) {
		char root[32], cmd[64], sn[32] = "", target[32] = "";
		if (xml_root(m->body, m->body_len, root, sizeof root) < 0
		    || (strcmp(root, "Query") != 0 && strcmp(root, "Control") != 0))
			return;
		if (xml_get(m->body, m->body_len, "CmdType", cmd, sizeof cmd) < 0)
			return;
		xml_get(m->body, m->body_len, "SN", sn, sizeof sn);
		digits_only(sn);
		if (!sn[0])
			strcpy(sn, "0");
		if (xml_get(m->body, m->body_len, "DeviceID", target, sizeof target) != 20 || !all_digits(target, 20))
			dev_code((uint32_t)d, target);
		if (strcmp(root, "Control") == 0
		    || (strcmp(cmd, "Catalog") != 0 && strcmp(cmd, "DeviceInfo") != 0 && strcmp(cmd, "DeviceStatus") != 0)) {
			on_control((uint32_t)d, root, cmd, sn, target, m->body, m->body_len, now);
			return;
		}
		if (strcmp(cmd, "Catalog") == 0) {
			S.queries++;
			send_catalog((uint32_t)d, sn, now);
		} else if (strcmp(cmd, "DeviceInfo") == 0) {
			S.queries++;
			send_devinfo((uint32_t)d, sn, now);
		} else if (strcmp(cmd, "DeviceStatus") == 0) {
			S.queries++;
			send_devstatus((uint32_t)d, sn, now);
		}
	}
}

/* ------------------------------------------------------------------ */
/* responses and timers                                                */

static void txn_timeout(uint32_t s, uint32_t now)
{
	struct txn *t = &g_tx[s];
	uint32_t d = t->dev;
	switch (t->kind) {
	case TK_REG:
		S.reg_failed++;
		S.reg_timeouts++;
		if (C.verbose)
			warnx_("device %u: REGISTER timed out", d);
		reg_done(d, 0, 0, now); /* frees the transaction */
		return;
	case TK_KA:
		S.ka_timeout++;
		g_dev[d].ka_txn = -1;
		break;
	default:
		S.txn_timeouts++;
		break;
	}
	txn_free(s);
}

/* Timer E (T1 doubling, capped at T2), give up after MAX_TRIES sends */
static void txn_timer(uint32_t s, uint32_t now)
{
	struct txn *t = &g_tx[s];
	uint32_t iv;
	if (t->tries >= MAX_TRIES) {
		txn_timeout(s, now);
		return;
	}
	if (!C.tcp) {
		dev_send(t->dev, t->msg, t->len);
		S.retransmits++;
	}
	iv = (uint32_t)T1_MS << t->tries;
	if (iv > T2_MS)
		iv = T2_MS;
	t->tries++;
	t->next_t = now + iv;
	heap_push(t->next_t, EV_TXN, s, t->gen);
}

static void on_response(const struct sipmsg *m, uint32_t now)
{
	int64_t s;
	struct txn *t;
	S.responses_in++;
	s = txn_match(m);
	if (s < 0 || m->status < 200)
		return;
	t = &g_tx[s];
	switch (t->kind) {
	case TK_REG:
		on_reg_response((uint32_t)s, m, now);
		return;
	case TK_KA:
		if (m->status < 300)
			S.ka_ok++;
		else
			S.ka_failed++;
		g_dev[t->dev].ka_txn = -1;
		break;
	default:
		if (m->status >= 300)
			S.txn_failed++;
		break;
	}
	txn_free((uint32_t)s);
}

static uint32_t stop_ka_ms(void)
{
	return C.stop_ka_after >= 0 ? (uint32_t)(C.stop_ka_after * 1000.0) + 1 : UINT32_MAX;
}

static void run_timers(uint32_t now)
{
	while (g_hn && g_heap[0].t <= now) {
		struct tev e = heap_pop();
		struct dev *v;
		if (e.kind == EV_TXN) {
			if (e.id < g_ntx && g_tx[e.id].used && g_tx[e.id].gen == e.aux && g_tx[e.id].next_t == e.t)
				txn_timer(e.id, now);
			continue;
		}
		if (e.kind == EV_MEDIA) {
			if (e.id < g_nms && g_ms[e.id].state != MS_FREE && g_ms[e.id].gen == e.aux && g_ms[e.id].next_t == e.t)
				media_timer(e.id, now);
			continue;
		}
		v = &g_dev[e.id];
		switch (e.kind) {
		case EV_KA:
			if (v->ka_due != e.t)
				break;
			v->ka_due = 0;
			if (!(v->flags & F_REGISTERED) || now >= stop_ka_ms())
				break;
			if (v->ka_txn < 0)
				send_keepalive(e.id, now);
			schedule_dev(e.id, EV_KA, now + ka_interval_ms());
			break;
		case EV_REG:
			if (v->reg_due != e.t)
				break;
			v->reg_due = 0;
			reg_enqueue(e.id);
			break;
		case EV_ALARM:
			if (v->alarm_due != e.t)
				break;
			v->alarm_due = 0;
			if (!(v->flags & F_REGISTERED))
				break;
			send_alarm(e.id, now);
			schedule_dev(e.id, EV_ALARM, now + (uint32_t)(C.alarm_every * 1000.0));
			break;
		case EV_RETRY:
			if (v->retry_due != e.t)
				break;
			v->retry_due = 0;
			if (!(v->flags & F_REGISTERED))
				reg_enqueue(e.id);
			break;
		}
	}
}

/* ------------------------------------------------------------------ */
/* flood                                                               */

struct fslot {
	int64_t sent_us;
	uint32_t seq;
	uint8_t busy;
};
static struct fslot *g_fs;
static uint32_t *g_factive, g_nfactive, g_frr, g_fseq;
static int g_flood_on;
static char g_fprefix[48];
static size_t g_fprefix_n;

static void flood_send(uint32_t s)
{
	uint32_t d = g_factive[g_frr++ % g_nfactive];
	char code[21], from[128], to[128], callid[96], branch[64];
	const char *hp = dev_hostport(d);
	size_t n;
	dev_code(d, code);
	n = keepalive_body(g_tmp, sizeof g_tmp, ++g_dev[d].sn, code);
	g_fs[s].seq = ++g_fseq;
	snprintf(branch, sizeof branch, "z9hG4bK%sF%x.%x", g_runid, s, g_fs[s].seq);
	snprintf(from, sizeof from, "<sip:%s@%s>;tag=%08x", code, C.domain, g_fs[s].seq);
	snprintf(to, sizeof to, "<sip:%s@%s>", C.server_id, C.domain);
	snprintf(callid, sizeof callid, "%sF%x@%s", g_runid, g_fs[s].seq, g_local_ip);
	build_request(&g_out, d, hp, "MESSAGE", server_ruri(), from, to, callid, ++g_dev[d].cseq, branch, NULL,
		      "Application/MANSCDP+xml", g_tmp, n);
	g_fs[s].busy = 1;
	g_fs[s].sent_us = mono_us();
	dev_send(d, g_out.p, g_out.n);
	S.flood_sent++;
	S.ka_sent++;
}

/* 1 if the message was a flood reply (consumed) */
static int flood_try(const char *buf, size_t n)
{
	const char *p = memmem(buf, n, g_fprefix, g_fprefix_n), *e = buf + n;
	uint32_t s = 0, seq = 0;
	int ok;
	if (!p) {
		if (!C.any_reply)
			return 0;
		/* any datagram counts: complete the oldest outstanding slot */
		int64_t best = INT64_MAX;
		uint32_t bi = UINT32_MAX;
		for (uint32_t i = 0; i < C.window; i++)
			if (g_fs[i].busy && g_fs[i].sent_us < best) {
				best = g_fs[i].sent_us;
				bi = i;
			}
		if (bi == UINT32_MAX)
			return 1;
		S.flood_replies++;
		S.ka_ok++;
		g_fs[bi].busy = 0;
		flood_send(bi);
		return 1;
	}
	p += g_fprefix_n;
	while (p < e && isxdigit((unsigned char)*p))
		s = s * 16 + (uint32_t)(isdigit((unsigned char)*p) ? *p - '0' : (tolower((unsigned char)*p) - 'a' + 10)), p++;
	if (p < e && *p == '.')
		p++;
	while (p < e && isxdigit((unsigned char)*p))
		seq = seq * 16 + (uint32_t)(isdigit((unsigned char)*p) ? *p - '0' : (tolower((unsigned char)*p) - 'a' + 10)), p++;
	if (C.any_reply)
		ok = 1;
	else {
		if (n < 12 || memcmp(buf, "SIP/2.0 ", 8) != 0)
			return 0; /* a request carrying our branch? not a reply */
		if (buf[8] == '1')
			return 1; /* provisional */
		ok = buf[8] == '2';
	}
	if (s >= C.window || !g_fs[s].busy || g_fs[s].seq != seq)
		return 1; /* late reply after a timeout */
	S.flood_replies++;
	if (ok)
		S.ka_ok++;
	else
		S.flood_non2xx++;
	g_fs[s].busy = 0;
	flood_send(s);
	return 1;
}

static void flood_sweep(void)
{
	int64_t now = mono_us();
	for (uint32_t i = 0; i < C.window; i++)
		if (g_fs[i].busy && now - g_fs[i].sent_us > 1000000) {
			S.flood_timeouts++;
			S.ka_timeout++;
			flood_send(i);
		}
}

static void flood_start(void)
{
	g_fs = calloc(C.window, sizeof *g_fs);
	g_factive = xmalloc((size_t)C.ndev * sizeof *g_factive);
	if (!g_fs)
		fatal("out of memory");
	for (uint32_t d = 0; d < C.ndev; d++)
		if (g_dev[d].flags & F_REGISTERED)
			g_factive[g_nfactive++] = d;
	if (!g_nfactive) {
		if (!C.no_register)
			warnx_("flood: no device registered; flooding from all devices anyway");
		for (uint32_t d = 0; d < C.ndev; d++)
			g_factive[g_nfactive++] = d;
	}
	g_fprefix_n = (size_t)snprintf(g_fprefix, sizeof g_fprefix, "branch=z9hG4bK%sF", g_runid);
	g_flood_on = 1;
	S.flood_start_us = mono_us();
	for (uint32_t i = 0; i < C.window; i++)
		flood_send(i);
}

/* ------------------------------------------------------------------ */
/* I/O                                                                 */

static void handle_message(const struct peer *pr, char *buf, size_t n, uint32_t now)
{
	struct sipmsg m;
	if (g_flood_on && flood_try(buf, n))
		return;
	if (sip_parse(buf, n, &m) != 0) {
		size_t i = 0;
		while (i < n && (buf[i] == '\r' || buf[i] == '\n'))
			i++;
		if (i < n) {
			S.parse_errors++;
			if (C.verbose)
				warnx_("unparsable message (%zu bytes)", n);
		}
		return;
	}
	if (m.is_resp)
		on_response(&m, now);
	else
		on_request(pr, &m, now);
}

#define BATCH 32
static char *g_rbufs;
static struct mmsghdr g_mm[BATCH];
static struct iovec g_iov[BATCH];
static struct sockaddr_in g_from[BATCH];

static void udp_readable(uint32_t si)
{
	for (int round = 0; round < 8; round++) {
		int r;
		uint32_t now;
		for (int i = 0; i < BATCH; i++) {
			g_iov[i].iov_base = g_rbufs + (size_t)i * (RBUF_SZ + 1);
			g_iov[i].iov_len = RBUF_SZ;
			memset(&g_mm[i].msg_hdr, 0, sizeof g_mm[i].msg_hdr);
			g_mm[i].msg_hdr.msg_iov = &g_iov[i];
			g_mm[i].msg_hdr.msg_iovlen = 1;
			g_mm[i].msg_hdr.msg_name = &g_from[i];
			g_mm[i].msg_hdr.msg_namelen = sizeof g_from[i];
		}
		r = recvmmsg(g_us[si].fd, g_mm, BATCH, MSG_DONTWAIT, NULL);
		if (r <= 0)
			return;
		now = now_ms();
		for (int i = 0; i < r; i++) {
			struct peer pr = { 0, si, g_from[i] };
			char *b = g_iov[i].iov_base;
			b[g_mm[i].msg_len] = 0;
			handle_message(&pr, b, g_mm[i].msg_len, now);
		}
		if (r < BATCH)
			return;
	}
}

static void tcp_close(uint32_t d)
{
	struct tconn *c = &g_tc[d];
	if (c->fd >= 0) {
		epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	c->fd = -1;
	c->state = 0;
	free(c->rb);
	free(c->wb);
	c->rb = c->wb = NULL;
	c->rl = c->rc = c->wl = c->wc = 0;
}

static void tcp_set_events(uint32_t d, int want_out)
{
	struct epoll_event ev = { .events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.u64 = EPD(EP_TCP, d) };
	epoll_ctl(g_ep, EPOLL_CTL_MOD, g_tc[d].fd, &ev);
}

static void tcp_open(uint32_t d)
{
	struct tconn *c = &g_tc[d];
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr = C.bind_addr };
	socklen_t al = sizeof a;
	int one = 1, fd;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.u64 = EPD(EP_TCP, d) };
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		warnx_("device %u: socket: %s", d, strerror(errno));
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
		warnx_("device %u: bind: %s", d, strerror(errno));
		close(fd);
		return;
	}
	c->port = ntohs(a.sin_port);
	if (connect(fd, (struct sockaddr *)&C.server, sizeof C.server) != 0 && errno != EINPROGRESS) {
		warnx_("device %u: connect: %s", d, strerror(errno));
		close(fd);
		return;
	}
	c->fd = fd;
	c->state = 1;
	epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev);
}

static void tcp_queue(uint32_t d, const char *b, size_t n)
{
	struct tconn *c = &g_tc[d];
	if (c->state == 0)
		tcp_open(d);
	if (c->state == 0) {
		S.send_errors++;
		return;
	}
	if (c->state == 2 && c->wl == 0) {
		ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			S.send_errors++;
			tcp_close(d);
			return;
		}
		if (w > 0) {
			b += w;
			n -= (size_t)w;
		}
		if (!n)
			return;
	}
	if (c->wl + n > c->wc) {
		uint32_t nc = c->wc ? c->wc : 4096;
		while (nc < c->wl + n)
			nc *= 2;
		c->wb = xrealloc(c->wb, nc);
		c->wc = nc;
	}
	memcpy(c->wb + c->wl, b, n);
	c->wl += (uint32_t)n;
	if (c->state == 2)
		tcp_set_events(d, 1);
}

static void tcp_frames(uint32_t d, uint32_t now)
{
	struct tconn *c = &g_tc[d];
	size_t off = 0;
	while (off < c->rl) {
		const char *base, *he, *cl;
		size_t avail, hlen;
		long clen = 0;
		while (off < c->rl && (c->rb[off] == '\r' || c->rb[off] == '\n'))
			off++;
		base = c->rb + off;
		avail = c->rl - off;
		he = memmem(base, avail, "\r\n\r\n", 4);
		if (!he) {
			if (avail > 65536) {
				warnx_("device %u: TCP header block too large, closing", d);
				tcp_close(d);
				return;
			}
			break;
		}
		hlen = (size_t)(he - base) + 4;
		cl = memcasemem(base, hlen, "\ncontent-length:", 16);
		if (cl)
			clen = strtol(cl + 16, NULL, 10);
		else if ((cl = memcasemem(base, hlen, "\nl:", 3)) != NULL)
			clen = strtol(cl + 3, NULL, 10);
		if (clen < 0 || clen > TCP_MAX_MSG) {
			warnx_("device %u: bad TCP Content-Length, closing", d);
			tcp_close(d);
			return;
		}
		if (avail < hlen + (size_t)clen)
			break;
		{
			struct peer pr = { .tcp = 1, .idx = d };
			handle_message(&pr, (char *)base, hlen + (size_t)clen, now);
		}
		if (c->state == 0)
			return; /* closed while handling */
		off += hlen + (size_t)clen;
	}
	if (off) {
		memmove(c->rb, c->rb + off, c->rl - off);
		c->rl -= (uint32_t)off;
	}
}

static void tcp_event(uint32_t d, uint32_t events)
{
	struct tconn *c = &g_tc[d];
	uint32_t now = now_ms();
	if (c->state == 1) {
		int err = 0;
		socklen_t el = sizeof err;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err) {
			warnx_("device %u: TCP connect: %s", d, strerror(err));
			tcp_close(d);
			return;
		}
		if (!(events & EPOLLOUT))
			return;
		c->state = 2;
	}
	if ((events & EPOLLOUT) && c->wl) {
		ssize_t w = send(c->fd, c->wb, c->wl, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			tcp_close(d);
			return;
		}
		if (w > 0) {
			memmove(c->wb, c->wb + w, c->wl - (uint32_t)w);
			c->wl -= (uint32_t)w;
		}
	}
	if (events & EPOLLOUT)
		tcp_set_events(d, c->wl > 0);
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		for (;;) {
			ssize_t r;
			if (c->rc - c->rl < 16384) {
				uint32_t nc = c->rc ? c->rc * 2 : 65536;
				if (nc > 2 * TCP_MAX_MSG + 65536) {
					warnx_("device %u: TCP input too large, closing", d);
					tcp_close(d);
					return;
				}
				c->rb = xrealloc(c->rb, nc + 1);
				c->rc = nc;
			}
			r = recv(c->fd, c->rb + c->rl, c->rc - c->rl, MSG_DONTWAIT);
			if (r > 0) {
				c->rl += (uint32_t)r;
				c->rb[c->rl] = 0;
				continue;
			}
			if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			/* EOF or error */
			tcp_frames(d, now);
			if (c->state)
				tcp_close(d);
			return;
		}
		tcp_frames(d, now);
	}
}

/* ------------------------------------------------------------------ */
/* stats                                                               */

static void print_stats(void)
{
	struct rusage ru;
	long storm = (S.first_reg_ms && S.last_initial_ok_ms) ? (long)S.last_initial_ok_ms - (long)S.first_reg_ms : -1;
	getrusage(RUSAGE_SELF, &ru);
	printf("devices=%u registered=%u reg_failed=%" PRIu64 " auth_403=%" PRIu64 " date_missing=%" PRIu64
	       " reg_storm_ms=%ld keepalive_sent=%" PRIu64 " keepalive_ok=%" PRIu64 " keepalive_timeout=%" PRIu64
	       " queries_answered=%" PRIu64 " catalog_pages_sent=%" PRIu64 " subscriptions=%" PRIu64
	       " renewals=%" PRIu64 " notifies_sent=%" PRIu64 " alarms_sent=%" PRIu64 " cpu_user_s=%.3f cpu_sys_s=%.3f",
	       C.ndev, S.registered, S.reg_failed, S.auth_403, S.date_missing, storm, S.ka_sent, S.ka_ok, S.ka_timeout,
	       S.queries, S.catalog_pages, S.subscriptions, S.renewals, S.notifies, S.alarms,
	       (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
	printf(" mode=%s elapsed_s=%.3f reg_attempts=%" PRIu64 " reg_timeouts=%" PRIu64 " keepalive_failed=%" PRIu64
	       " requests_in=%" PRIu64 " responses_in=%" PRIu64 " unknown_device=%" PRIu64 " dup_requests=%" PRIu64
	       " retransmits=%" PRIu64 " txn_timeouts=%" PRIu64 " txn_failed=%" PRIu64 " send_errors=%" PRIu64
	       " parse_errors=%" PRIu64 " invites=%" PRIu64 " media_packets=%" PRIu64 " byes=%" PRIu64 " media_connect_failed=%" PRIu64
	       " controls=%" PRIu64 " record_pages=%" PRIu64,
	       C.mode == MODE_FLOOD ? "flood" : "devices", (double)(mono_us() - g_start_us) / 1e6, S.reg_attempts,
	       S.reg_timeouts, S.ka_failed, S.requests_in, S.responses_in, S.unknown_device, S.dup_requests,
	       S.retransmits, S.txn_timeouts, S.txn_failed, S.send_errors, S.parse_errors, S.invites, S.media_packets,
	       S.byes, S.media_connect_failed, S.controls, S.record_pages);
	if (C.mode == MODE_FLOOD) {
		int64_t end = S.flood_end_us ? S.flood_end_us : mono_us();
		double secs = S.flood_start_us ? (double)(end - S.flood_start_us) / 1e6 : 0;
		printf(" flood_sent=%" PRIu64 " flood_replies=%" PRIu64 " flood_non2xx=%" PRIu64 " flood_timeouts=%" PRIu64
		       " flood_seconds=%.3f keepalive_rate=%.1f",
		       S.flood_sent, S.flood_replies, S.flood_non2xx, S.flood_timeouts, secs,
		       secs > 0 ? (double)S.flood_replies / secs : 0.0);
	}
	printf("\n");
	fflush(stdout);
}

/* ------------------------------------------------------------------ */
/* main loop                                                           */

static int reg_phase_done(void)
{
	return S.initial_done >= C.ndev;
}

/* runs until the deadline (ms), a signal, or done() */
static void run_loop(uint32_t deadline, int (*done)(void))
{
	struct epoll_event evs[256];
	uint32_t next_stats = C.stats_every > 0 ? now_ms() + (uint32_t)(C.stats_every * 1000) : UINT32_MAX;
	uint32_t next_sweep = 0;
	while (!g_stop) {
		uint32_t now = now_ms();
		int timeout, n;
		if (now >= deadline)
			break;
		if (done && done())
			break;
		run_timers(now);
		reg_pump(now);
		if (g_flood_on && now >= next_sweep) {
			flood_sweep();
			next_sweep = now + 100;
		}
		if (now >= next_stats) {
			print_stats();
			next_stats = now + (uint32_t)(C.stats_every * 1000);
		}
		timeout = 100;
		if (g_hn && g_heap[0].t > now && g_heap[0].t - now < (uint32_t)timeout)
			timeout = (int)(g_heap[0].t - now);
		else if (g_hn && g_heap[0].t <= now)
			timeout = 0;
		if (g_rq_len && g_reg_out < C.reg_window)
			timeout = timeout > 2 ? 2 : timeout;
		if (deadline - now < (uint32_t)timeout)
			timeout = (int)(deadline - now);
		n = epoll_wait(g_ep, evs, 256, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fatal("epoll_wait: %s", strerror(errno));
		}
		for (int i = 0; i < n; i++) {
			uint32_t type = (uint32_t)(evs[i].data.u64 >> 32), idx = (uint32_t)evs[i].data.u64;
			if (type == EP_UDP)
				udp_readable(idx);
			else if (type == EP_TCP)
				tcp_event(idx, evs[i].events);
			else if (type == EP_MEDIA)
				media_event(idx, evs[i].events);
		}
	}
}

/* ------------------------------------------------------------------ */
/* password file                                                       */

static void load_password_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	unsigned lineno = 0, used = 0, ignored = 0;
	if (!f)
		usage_error("--password-file: cannot open '%s': %s", path, strerror(errno));
	while (fgets(line, sizeof line, f)) {
		char *code, *pw, *save = NULL;
		int64_t d;
		size_t pl;
		lineno++;
		code = strtok_r(line, " \t\r\n", &save);
		if (!code || code[0] == '#')
			continue;
		pw = strtok_r(NULL, " \t\r\n", &save);
		if (!pw || strtok_r(NULL, " \t\r\n", &save))
			usage_error("--password-file %s:%u: expected 'CODE PASSWORD'", path, lineno);
		if (strlen(code) != 20 || !all_digits(code, 20))
			usage_error("--password-file %s:%u: '%s' is not a 20-digit code", path, lineno, code);
		if (strpbrk(pw, "\"\\"))
			usage_error("--password-file %s:%u: password must not contain '\"' or '\\'", path, lineno);
		d = code_lookup(code, 20);
		if (d < 0 || memcmp(code, g_prefix, 14) != 0) {
			ignored++;
			continue;
		}
		pl = strlen(pw) + 1;
		if (g_pwpool_n + pl > g_pwpool_cap) {
			g_pwpool_cap = g_pwpool_cap ? g_pwpool_cap * 2 : 65536;
			while (g_pwpool_n + pl > g_pwpool_cap)
				g_pwpool_cap *= 2;
			g_pwpool = xrealloc(g_pwpool, g_pwpool_cap);
		}
		memcpy(g_pwpool + g_pwpool_n, pw, pl);
		g_dev[d].pw_off = (uint32_t)g_pwpool_n + 1;
		g_pwpool_n += pl;
		used++;
	}
	fclose(f);
	fprintf(stderr, "gbsim: password file: %u entries used, %u for codes outside the simulated range\n", used, ignored);
}

/* ------------------------------------------------------------------ */
/* echo mode: raw UDP echo baseline                                    */

static int run_echo(void)
{
	enum { EB = 64 };
	static char bufs[EB][RBUF_SZ];
	static struct mmsghdr rm[EB], sm[EB];
	static struct iovec riov[EB], siov[EB];
	static struct sockaddr_in from[EB];
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), sz = 8 << 20;
	int64_t end = g_start_us + (int64_t)(C.duration * 1e6);
	struct rusage ru;
	if (fd < 0)
		fatal("socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
	if (bind(fd, (struct sockaddr *)&C.listen, sizeof C.listen) != 0)
		fatal("echo: bind %s:%u: %s", inet_ntoa(C.listen.sin_addr), ntohs(C.listen.sin_port), strerror(errno));
	fprintf(stderr, "gbsim: echo listening on %s:%u\n", inet_ntoa(C.listen.sin_addr), ntohs(C.listen.sin_port));
	while (!g_stop && mono_us() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, 100);
		if (r <= 0)
			continue;
		for (;;) {
			int k, sent = 0;
			for (int i = 0; i < EB; i++) {
				riov[i].iov_base = bufs[i];
				riov[i].iov_len = RBUF_SZ;
				memset(&rm[i].msg_hdr, 0, sizeof rm[i].msg_hdr);
				rm[i].msg_hdr.msg_iov = &riov[i];
				rm[i].msg_hdr.msg_iovlen = 1;
				rm[i].msg_hdr.msg_name = &from[i];
				rm[i].msg_hdr.msg_namelen = sizeof from[i];
			}
			k = recvmmsg(fd, rm, EB, MSG_DONTWAIT, NULL);
			if (k <= 0)
				break;
			for (int i = 0; i < k; i++) {
				siov[i].iov_base = bufs[i];
				siov[i].iov_len = rm[i].msg_len;
				memset(&sm[i].msg_hdr, 0, sizeof sm[i].msg_hdr);
				sm[i].msg_hdr.msg_iov = &siov[i];
				sm[i].msg_hdr.msg_iovlen = 1;
				sm[i].msg_hdr.msg_name = &from[i];
				sm[i].msg_hdr.msg_namelen = rm[i].msg_hdr.msg_namelen;
			}
			while (sent < k) {
				int w = sendmmsg(fd, sm + sent, (unsigned)(k - sent), 0);
				if (w <= 0) {
					S.send_errors += (uint64_t)(k - sent);
					break;
				}
				sent += w;
			}
			S.echoed += (uint64_t)sent;
			if (k < EB)
				break;
		}
	}
	getrusage(RUSAGE_SELF, &ru);
	printf("mode=echo echoed=%" PRIu64 " send_errors=%" PRIu64 " elapsed_s=%.3f cpu_user_s=%.3f cpu_sys_s=%.3f\n",
	       S.echoed, S.send_errors, (double)(mono_us() - g_start_us) / 1e6,
	       (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
	close(fd);
	return 0;
}

/* ------------------------------------------------------------------ */
/* hostile mode                                                        */

static int h_fd = -1;   /* UDP socket, or the current TCP connection */
static char h_hp[48];
static char h_resp[RBUF_SZ + 1];
static size_t h_resp_n;
static unsigned h_idx;
static int64_t h_deadline_us; /* --duration */
static int h_skipping;

/* cases stop 3 s before the deadline so the liveness check still runs */
static int h_time_left(void)
{
	if (!h_skipping && (g_stop || mono_us() + 3000000 > h_deadline_us)) {
		h_skipping = 1;
		warnx_("hostile: --duration nearly over, skipping the remaining cases");
	}
	return !h_skipping;
}

/* TCP: a fresh connection per case (so a stuck one cannot block the rest) */
static void h_prepare(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr = C.bind_addr };
	socklen_t al = sizeof a;
	if (!C.tcp)
		return;
	if (h_fd >= 0)
		close(h_fd);
	h_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (h_fd < 0)
		fatal("socket: %s", strerror(errno));
	if (bind(h_fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(h_fd, (struct sockaddr *)&a, &al) != 0)
		fatal("bind: %s", strerror(errno));
	snprintf(h_hp, sizeof h_hp, "%s:%u", g_local_ip, ntohs(a.sin_port));
	{
		int fl = fcntl(h_fd, F_GETFL);
		struct pollfd p = { .fd = h_fd, .events = POLLOUT };
		fcntl(h_fd, F_SETFL, fl | O_NONBLOCK);
		if (connect(h_fd, (struct sockaddr *)&C.server, sizeof C.server) != 0 && errno != EINPROGRESS)
			warnx_("hostile: connect: %s", strerror(errno));
		else if (poll(&p, 1, 1000) != 1)
			warnx_("hostile: connect timed out");
	}
}

/* status of a complete response in h_resp that contains token, 0 if not yet */
static int h_match(const char *token)
{
	if (h_resp_n < 12 || memcmp(h_resp, "SIP/2.0 ", 8) != 0 || !all_digits(h_resp + 8, 3))
		return 0;
	if (token && !memmem(h_resp, h_resp_n, token, strlen(token)))
		return 0;
	return (h_resp[8] - '0') * 100 + (h_resp[9] - '0') * 10 + (h_resp[10] - '0');
}

/* sends buf; waits up to wait_ms for a final response (containing token when
 * given); returns its status, 0 for none */
static int h_exchange(const char *buf, size_t len, const char *token, int wait_ms)
{
	int64_t end;
	if (!C.tcp) {
		while (recv(h_fd, h_resp, RBUF_SZ, MSG_DONTWAIT) > 0)
			;
		if (sendto(h_fd, buf, len, 0, (struct sockaddr *)&C.server, sizeof C.server) < 0) {
			warnx_("hostile: sendto (%zu bytes): %s", len, strerror(errno));
			return -1;
		}
	} else {
		size_t off = 0;
		int64_t wend = mono_us() + 1000000;
		while (off < len && mono_us() < wend) {
			struct pollfd p = { .fd = h_fd, .events = POLLOUT };
			ssize_t w;
			if (poll(&p, 1, 100) != 1)
				continue;
			w = send(h_fd, buf + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w < 0 && errno != EAGAIN) {
				warnx_("hostile: send: %s", strerror(errno));
				break;
			}
			if (w > 0)
				off += (size_t)w;
		}
		h_resp_n = 0;
	}
	end = mono_us() + (int64_t)wait_ms * 1000;
	if (end > h_deadline_us)
		end = h_deadline_us;
	for (;;) {
		int64_t left = end - mono_us();
		struct pollfd p = { .fd = h_fd, .events = POLLIN };
		ssize_t r;
		int st;
		if (left <= 0 || g_stop)
			return 0;
		if (poll(&p, 1, (int)((left + 999) / 1000)) != 1)
			continue;
		if (!C.tcp) {
			r = recv(h_fd, h_resp, RBUF_SZ, MSG_DONTWAIT);
			if (r <= 0)
				continue;
			h_resp_n = (size_t)r;
			h_resp[h_resp_n] = 0;
			st = h_match(token);
			if (st >= 200)
				return st;
		} else {
			r = recv(h_fd, h_resp + h_resp_n, RBUF_SZ - h_resp_n, MSG_DONTWAIT);
			if (r == 0 || (r < 0 && errno != EAGAIN)) {
				/* peer closed: report what we have */
				return h_match(token) >= 200 ? h_match(token) : 0;
			}
			if (r < 0)
				continue;
			h_resp_n += (size_t)r;
			h_resp[h_resp_n] = 0;
			/* consume complete messages until one matches */
			for (;;) {
				char *he = memmem(h_resp, h_resp_n, "\r\n\r\n", 4);
				const char *cl;
				size_t tot;
				if (!he)
					break;
				cl = memcasemem(h_resp, (size_t)(he - h_resp), "\ncontent-length:", 16);
				tot = (size_t)(he - h_resp) + 4 + (cl ? (size_t)strtol(cl + 16, NULL, 10) : 0);
				if (tot > h_resp_n)
					break;
				{
					size_t keep = h_resp_n;
					h_resp_n = tot;
					st = h_match(token);
					h_resp_n = keep;
				}
				if (st >= 200)
					return st;
				memmove(h_resp, h_resp + tot, h_resp_n - tot);
				h_resp_n -= tot;
			}
			if (h_resp_n >= RBUF_SZ)
				h_resp_n = 0;
		}
	}
}

static void h_print(const char *name, int st)
{
	if (st > 0)
		printf("hostile %s %d\n", name, st);
	else
		printf("hostile %s none\n", name);
	fflush(stdout);
}

enum { H_NOVIA = 1, H_NOFROM = 2, H_NOCALLID = 4, H_NOCSEQ = 8, H_NOCLEN = 16, H_BADSTART = 32, H_NOTO = 64 };

struct hreq {
	const char *method;     /* default MESSAGE */
	const char *ruri;       /* default sip:SERVERID@DOMAIN */
	const char *code;       /* From user, default device 0 */
	const char *domain;     /* From/To domain, default --domain */
	const char *startline;  /* overrides the request line entirely */
	const char *maxfwd;     /* default 70 */
	const char *cseq;       /* default "<n> METHOD" */
	const char *clen;       /* Content-Length value override */
	const char *ctype;      /* default Application/MANSCDP+xml when a body exists */
	const char *extra;      /* extra header lines */
	const char *body;
	size_t blen;
	unsigned omit;
};

/* token (branch suffix and Call-ID) identifying the current case */
static char h_token[48];

static void h_build(struct buf *o, const struct hreq *r)
{
	char code0[21];
	const char *method = r->method ? r->method : "MESSAGE";
	const char *code = r->code;
	const char *dom = r->domain ? r->domain : C.domain;
	int is_reg = strcmp(method, "REGISTER") == 0;
	if (!code) {
		dev_code(0, code0);
		code = code0;
	}
	o->n = 0;
	if (r->startline)
		buf_printf(o, "%s\r\n", r->startline);
	else
		buf_printf(o, "%s %s SIP/2.0\r\n", method, r->ruri ? r->ruri : server_ruri());
	if (!(r->omit & H_NOVIA))
		buf_printf(o, "Via: SIP/2.0/%s %s;rport;branch=z9hG4bK%s\r\n", transport_name(), h_hp, h_token);
	buf_printf(o, "Max-Forwards: %s\r\n", r->maxfwd ? r->maxfwd : "70");
	if (!(r->omit & H_NOFROM))
		buf_printf(o, "From: <sip:%s@%s>;tag=%08x\r\n", code, dom, new_tag());
	if (!(r->omit & H_NOTO)) {
		if (is_reg)
			buf_printf(o, "To: <sip:%s@%s>\r\n", code, dom);
		else
			buf_printf(o, "To: <sip:%s@%s>\r\n", C.server_id, dom);
	}
	if (!(r->omit & H_NOCALLID))
		buf_printf(o, "Call-ID: %s@%s\r\n", h_token, g_local_ip);
	if (!(r->omit & H_NOCSEQ)) {
		if (r->cseq)
			buf_printf(o, "CSeq: %s\r\n", r->cseq);
		else
			buf_printf(o, "CSeq: %u %s\r\n", 20 + h_idx, method);
	}
	buf_printf(o, "Contact: <sip:%s@%s>\r\n", code, h_hp);
	if (r->extra)
		buf_add(o, r->extra, strlen(r->extra));
	if (r->blen || r->ctype)
		buf_printf(o, "Content-Type: %s\r\n", r->ctype ? r->ctype : "Application/MANSCDP+xml");
	buf_printf(o, "User-Agent: " UA "\r\n");
	if (!(r->omit & H_NOCLEN)) {
		if (r->clen)
			buf_printf(o, "Content-Length: %s\r\n", r->clen);
		else
			buf_printf(o, "Content-Length: %zu\r\n", r->blen);
	}
	buf_add(o, "\r\n", 2);
	if (r->blen)
		buf_add(o, r->body, r->blen);
}

static void h_next(void)
{
	h_idx++;
	snprintf(h_token, sizeof h_token, "h%u.%s", h_idx, g_runid);
	h_prepare();
}

/* runs one case built from r; prints and returns the status */
static int h_case(const char *name, const struct hreq *r)
{
	int st;
	if (!h_time_left()) {
		printf("hostile %s skipped\n", name);
		return 0;
	}
	h_next();
	h_build(&g_out, r);
	st = h_exchange(g_out.p, g_out.n, r->omit & (H_NOVIA | H_NOCALLID) ? NULL : h_token, 1000);
	h_print(name, st);
	return st;
}

/* raw bytes, any response counts */
static int h_raw(const char *name, const char *b, size_t n)
{
	int st;
	if (!h_time_left()) {
		printf("hostile %s skipped\n", name);
		return 0;
	}
	h_next();
	st = h_exchange(b, n, NULL, 1000);
	h_print(name, st);
	return st;
}

/* REGISTER with digest for device d; returns the final status */
static int h_register(uint32_t d, long expires)
{
	struct sipmsg m;
	char branch[64], callid[96];
	struct chal ch;
	int proxy, st;
	h_next();
	snprintf(callid, sizeof callid, "reg%x.%s@", d, g_runid);
	snprintf(branch, sizeof branch, "z9hG4bK%s.r1", h_token);
	build_register(&g_out, d, h_hp, branch, 1, expires, NULL, 0);
	st = h_exchange(g_out.p, g_out.n, callid, 2000);
	if (st != 401 && st != 407)
		return st;
	if (sip_parse(h_resp, h_resp_n, &m) != 0 || !pick_challenge(&m, &ch, &proxy))
		return st;
	snprintf(branch, sizeof branch, "z9hG4bK%s.r2", h_token);
	build_register(&g_out, d, h_hp, branch, 2, expires, &ch, proxy);
	return h_exchange(g_out.p, g_out.n, callid, 2000);
}

static void h_fill(struct buf *b, char c, size_t n)
{
	buf_reserve(b, n);
	memset(b->p + b->n, c, n);
	b->n += n;
	b->p[b->n] = 0;
}

static int run_hostile(void)
{
	struct buf b = { 0 }, x = { 0 };
	char code0[21], other[21], tmp[512], ruri[128];
	struct hreq r;
	int st, alive = 0;
	static const char *keep_fmt = "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n"
				      "<SN>1</SN>\r\n<DeviceID>%s</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n";
	char keep[512];
	size_t keepn;
	if (!C.tcp) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr = C.bind_addr };
		socklen_t al = sizeof a;
		h_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (h_fd < 0 || bind(h_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
		    getsockname(h_fd, (struct sockaddr *)&a, &al) != 0)
			fatal("hostile: socket/bind: %s", strerror(errno));
		snprintf(h_hp, sizeof h_hp, "%s:%u", g_local_ip, ntohs(a.sin_port));
	}
	h_deadline_us = g_start_us + (int64_t)(C.duration * 1e6);
	dev_code(0, code0);
	keepn = (size_t)snprintf(keep, sizeof keep, keep_fmt, code0);

	/* a registered device first, so MESSAGE cases reach the MANSCDP parser */
	st = h_register(0, C.expires);
	h_print("register_valid", st);

#define RESET() memset(&r, 0, sizeof r)
	/* --- transport / framing --- */
	for (int i = 0; i < 512; i++)
		tmp[i] = (char)(rnd64() & 0xff);
	h_raw("garbage_bytes", tmp, 512);
	h_raw("crlf_ping", "\r\n\r\n", 4);
	h_raw("empty_datagram_like", "\r\n", 2);
	RESET(); r.startline = "REGISTER\x01\x02 garbage"; r.method = "REGISTER"; r.extra = "Expires: 3600\r\n";
	h_case("broken_start_line", &r);
	RESET(); snprintf(tmp, sizeof tmp, "REGISTER %s SIP/3.0", server_ruri()); r.startline = tmp; r.method = "REGISTER";
	r.extra = "Expires: 3600\r\n";
	h_case("bad_sip_version", &r);
	RESET(); r.startline = "REGISTER  SIP/2.0"; r.method = "REGISTER"; r.extra = "Expires: 3600\r\n";
	h_case("empty_request_uri", &r);
	RESET(); r.body = keep; r.blen = keepn; r.omit = H_NOVIA;
	h_case("missing_via", &r);
	RESET(); r.body = keep; r.blen = keepn; r.omit = H_NOFROM;
	h_case("missing_from", &r);
	RESET(); r.body = keep; r.blen = keepn; r.omit = H_NOTO;
	h_case("missing_to", &r);
	RESET(); r.body = keep; r.blen = keepn; r.omit = H_NOCALLID;
	h_case("missing_callid", &r);
	RESET(); r.body = keep; r.blen = keepn; r.omit = H_NOCSEQ;
	h_case("missing_cseq", &r);
	RESET(); r.body = keep; r.blen = keepn; r.extra = "This line is not a header\r\n";
	h_case("header_without_colon", &r);
	RESET(); r.body = keep; r.blen = keepn;
	if (h_time_left()) {
		static const char nul_hdr[] = "X-Nul: a\0b\r\n";
		h_next();
		h_build(&g_out, &r);
		/* splice a header containing a NUL byte after the request line */
		{
			char *eol = memchr(g_out.p, '\n', g_out.n);
			size_t at = (size_t)(eol - g_out.p) + 1, add = sizeof nul_hdr - 1;
			buf_reserve(&g_out, add);
			memmove(g_out.p + at + add, g_out.p + at, g_out.n - at);
			memcpy(g_out.p + at, nul_hdr, add);
			g_out.n += add;
		}
		h_print("nul_byte_in_header", h_exchange(g_out.p, g_out.n, h_token, 1000));
	}
	snprintf(tmp, sizeof tmp, "%zu", keepn + 500);
	RESET(); r.body = keep; r.blen = keepn; r.clen = tmp;
	h_case("content_length_larger_than_body", &r);
	RESET(); r.body = keep; r.blen = keepn; r.clen = "10000000";
	h_case("content_length_10m", &r);
	RESET(); r.body = keep; r.blen = keepn; r.clen = "-5";
	h_case("content_length_negative", &r);
	RESET(); r.body = keep; r.blen = keepn; r.clen = "12abc";
	h_case("content_length_garbage", &r);
	RESET(); r.body = keep; r.blen = keepn; r.clen = "99999999999999999999999";
	h_case("content_length_overflow", &r);
	/* oversize: 70 KB body; over UDP the kernel refuses > 65507, then the largest datagram */
	b.n = 0;
	buf_printf(&b, "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>1</SN>\r\n"
		       "<DeviceID>%s</DeviceID>\r\n<Status>OK</Status>\r\n<!-- ", code0);
	h_fill(&b, 'x', 70000);
	buf_printf(&b, " -->\r\n</Notify>\r\n");
	RESET(); r.body = b.p; r.blen = b.n;
	if (h_time_left()) {
		h_next();
		h_build(&g_out, &r);
		st = h_exchange(g_out.p, g_out.n, h_token, 1000);
		if (st < 0 && !C.tcp) {
			warnx_("hostile: %zu-byte datagram refused by the kernel; sending %d bytes instead", g_out.n, MAX_UDP);
			st = h_exchange(g_out.p, MAX_UDP, h_token, 1000);
		}
		h_print("oversize_70k", st);
	}
	/* many Via headers */
	x.n = 0;
	for (int i = 0; i < 400; i++)
		buf_printf(&x, "Via: SIP/2.0/UDP 10.%d.%d.%d:5060;branch=z9hG4bKvia%d\r\n", i / 65536, (i / 256) % 256, i % 256, i);
	RESET(); r.body = keep; r.blen = keepn; r.extra = x.p;
	h_case("many_via_headers", &r);
	RESET(); r.body = keep; r.blen = keepn; r.cseq = "99999999999999999999 MESSAGE";
	h_case("cseq_overflow", &r);
	RESET(); r.body = keep; r.blen = keepn; r.cseq = "1 INVITE";
	h_case("cseq_method_mismatch", &r);
	RESET(); r.method = "FOOBAR";
	h_case("unknown_method", &r);
	RESET(); r.body = keep; r.blen = keepn; r.maxfwd = "0";
	h_case("max_forwards_zero", &r);
	RESET(); r.body = "hello"; r.blen = 5; r.ctype = "text/plain";
	h_case("wrong_content_type", &r);

	/* --- XML --- */
	b.n = 0;
	buf_printf(&b, "<?xml version=\"1.0\"?>\r\n<!DOCTYPE lolz [\r\n<!ENTITY lol \"lol\">\r\n");
	for (int i = 1; i <= 9; i++) {
		buf_printf(&b, "<!ENTITY lol%d \"", i);
		for (int j = 0; j < 10; j++)
			buf_printf(&b, "&lol%s;", i == 1 ? "" : (snprintf(tmp, sizeof tmp, "%d", i - 1), tmp));
		buf_printf(&b, "\">\r\n");
	}
	buf_printf(&b, "]>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>1</SN>\r\n<DeviceID>%s</DeviceID>\r\n"
		       "<Status>&lol9;</Status>\r\n</Notify>\r\n", code0);
	RESET(); r.body = b.p; r.blen = b.n;
	h_case("xml_billion_laughs", &r);
	b.n = 0;
	buf_printf(&b, "<?xml version=\"1.0\"?>\r\n<!DOCTYPE n [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\r\n"
		       "<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>1</SN>\r\n<DeviceID>%s</DeviceID>\r\n"
		       "<Status>&xxe;</Status>\r\n</Notify>\r\n", code0);
	RESET(); r.body = b.p; r.blen = b.n;
	h_case("xml_external_entity", &r);
	b.n = 0;
	buf_printf(&b, "<?xml version=\"1.0\"?>\r\n<!DOCTYPE n [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\r\n"
		       "<Response>\r\n<CmdType>Catalog</CmdType>\r\n<SN>1</SN>\r\n<DeviceID>%s</DeviceID>\r\n<SumNum>1</SumNum>\r\n"
		       "<DeviceList Num=\"1\">\r\n<Item>\r\n<DeviceID>%.14s999998</DeviceID>\r\n<Name>&xxe;</Name>\r\n"
		       "<Status>ON</Status>\r\n</Item>\r\n</DeviceList>\r\n</Response>\r\n", code0, code0);
	RESET(); r.body = b.p; r.blen = b.n;
	h_case("xml_external_entity_catalog", &r);
	b.n = 0;
	buf_printf(&b, "<?xml version=\"1.0\"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>1</SN>\r\n<DeviceID>%s</DeviceID>\r\n", code0);
	/* as deep as fits in one UDP datagram */
	for (int i = 0; i < 7000; i++)
		buf_add(&b, "<a>", 3);
	for (int i = 0; i < 7000; i++)
		buf_add(&b, "</a>", 4);
	buf_printf(&b, "<Status>OK</Status>\r\n</Notify>\r\n");
	RESET(); r.body = b.p; r.blen = b.n;
	h_case("xml_deep_nesting", &r);
	b.n = 0;
	buf_printf(&b, "<?xml version=\"1.0\"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>1</SN>\r\n<DeviceID>%s", code0);
	RESET(); r.body = b.p; r.blen = b.n;
	h_case("xml_truncated", &r);
	b.n = 0;
	buf_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<Response>\r\n<CmdType>Catalog</CmdType>\r\n<SN>2</SN>\r\n"
		       "<DeviceID>%s</DeviceID>\r\n<SumNum>1</SumNum>\r\n<DeviceList Num=\"1\">\r\n<Item>\r\n"
		       "<DeviceID>%.14s999997</DeviceID>\r\n<Name>bad \xff\xfe\xc3\x28 \xe2\x82 utf8</Name>\r\n"
		       "<Status>ON</Status>\r\n</Item>\r\n</DeviceList>\r\n</Response>\r\n", code0, code0);
	RESET(); r.body = b.p; r.blen = b.n;
	h_case("non_utf8_bytes_utf8_declared", &r);
	b.n = 0;
	buf_printf(&b, "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Response>\r\n<CmdType>Catalog</CmdType>\r\n<SN>3</SN>\r\n"
		       "<DeviceID>%s</DeviceID>\r\n<SumNum>1</SumNum>\r\n<DeviceList Num=\"1\">\r\n<Item>\r\n"
		       "<DeviceID>%.14s999996</DeviceID>\r\n<Name>x'); DROP TABLE t; -- \\ %%s %%n</Name>\r\n"
		       "<Longitude>NaN</Longitude>\r\n<Latitude>1e999</Latitude>\r\n"
		       "<Status>ON</Status>\r\n</Item>\r\n</DeviceList>\r\n</Response>\r\n", code0, code0);
	RESET(); r.body = b.p; r.blen = b.n;
	h_case("sql_and_format_chars_in_catalog", &r);

	/* --- identities, domains, registration --- */
	RESET(); r.method = "REGISTER"; r.code = "3402000000132000001"; r.extra = "Expires: 3600\r\n";
	h_case("code_19_digits", &r);
	RESET(); r.method = "REGISTER"; r.code = "340200000013200000AB"; r.extra = "Expires: 3600\r\n";
	h_case("code_with_letters", &r);
	RESET(); r.method = "REGISTER"; r.code = "34020000001320000001340200000013200000013402000000132000000134020000001320000001";
	r.extra = "Expires: 3600\r\n";
	h_case("code_80_digits", &r);
	snprintf(ruri, sizeof ruri, "sip:%s@1111111111", C.server_id);
	RESET(); r.method = "REGISTER"; r.ruri = ruri; r.extra = "Expires: 3600\r\n";
	h_case("wrong_domain_request_uri", &r);
	RESET(); r.method = "REGISTER"; r.domain = "1111111111"; r.extra = "Expires: 3600\r\n";
	h_case("wrong_domain_to_from", &r);
	snprintf(ruri, sizeof ruri, "sip:%.14s999999@%s", C.server_id, C.domain);
	RESET(); r.method = "REGISTER"; r.ruri = ruri; r.extra = "Expires: 3600\r\n";
	h_case("wrong_server_id", &r);
	RESET(); r.method = "REGISTER";
	h_case("register_without_expires", &r);
	/* a code of ours that is outside the simulated range */
	memcpy(other, code0, 14);
	put6(other + 14, g_first_serial + C.ndev <= 999999 ? g_first_serial + C.ndev : (g_first_serial ? g_first_serial - 1 : 999999));
	other[20] = 0;
	RESET(); r.method = "REGISTER"; r.code = other; r.extra = "Expires: 0\r\n";
	h_case("register_expires0_unregistered", &r);
	RESET(); r.method = "REGISTER"; r.extra = "Expires: 99999999999999999999\r\n";
	h_case("register_expires_overflow", &r);
	RESET(); r.method = "REGISTER"; r.extra = "Expires: -1\r\n";
	h_case("register_expires_negative", &r);
	x.n = 0;
	buf_printf(&x, "Authorization: Digest username=\"");
	h_fill(&x, 'A', 20000);
	buf_printf(&x, "\", realm=\"");
	h_fill(&x, 'R', 5000);
	buf_printf(&x, "\", nonce=\"");
	h_fill(&x, 'N', 20000);
	buf_printf(&x, "\", uri=\"%s\", response=\"", server_ruri());
	h_fill(&x, 'f', 5000);
	buf_printf(&x, "\", algorithm=MD5\r\nExpires: 3600\r\n");
	RESET(); r.method = "REGISTER"; r.extra = x.p;
	h_case("authorization_absurd_lengths", &r);
	RESET(); r.method = "REGISTER";
	r.extra = "Authorization: Digest username=\"34020000001320000001, realm=, nonce=\"\r\nExpires: 3600\r\n";
	h_case("authorization_unterminated_quote", &r);
	snprintf(tmp, sizeof tmp,
		 "Authorization: Digest username=\"%s\", realm=\"%s\", nonce=\"deadbeefdeadbeef\", uri=\"%s\", "
		 "response=\"00000000000000000000000000000000\", algorithm=MD5\r\nExpires: 3600\r\n",
		 code0, C.domain, server_ruri());
	RESET(); r.method = "REGISTER"; r.extra = tmp;
	h_case("authorization_forged_nonce", &r);
	{
		char ex[512];
		snprintf(ex, sizeof ex,
			 "Authorization: Digest username=\"' OR '1'='1\", realm=\"%s\", nonce=\"x\", uri=\"%s\", "
			 "response=\"00000000000000000000000000000000\", algorithm=MD5\r\nExpires: 3600\r\n",
			 C.domain, server_ruri());
		RESET(); r.method = "REGISTER"; r.extra = ex;
		h_case("authorization_sql_username", &r);
	}
	{
		char kb[512];
		size_t kn = (size_t)snprintf(kb, sizeof kb, keep_fmt, other);
		RESET(); r.code = other; r.body = kb; r.blen = kn;
		h_case("keepalive_unregistered_device", &r);
	}
	if (h_time_left()) {
		char resp[512];
		int n;
		h_next();
		n = snprintf(resp, sizeof resp,
			     "SIP/2.0 200 OK\r\nVia: SIP/2.0/%s %s;branch=z9hG4bK%s\r\nFrom: <sip:%s@%s>;tag=1\r\n"
			     "To: <sip:%s@%s>;tag=2\r\nCall-ID: %s@%s\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n",
			     transport_name(), h_hp, h_token, C.server_id, C.domain, code0, C.domain, h_token, g_local_ip);
		h_print("stray_response", h_exchange(resp, (size_t)n, NULL, 1000));
	}
#undef RESET

	/* --- is the server still alive? --- */
	h_skipping = 0;
	for (int attempt = 0; attempt < 3 && !alive && !g_stop && mono_us() < h_deadline_us; attempt++) {
		memset(&r, 0, sizeof r);
		r.method = "OPTIONS";
		h_next();
		h_build(&g_out, &r);
		st = h_exchange(g_out.p, g_out.n, h_token, 1000);
		h_print("alive_options", st);
		if (st > 0)
			alive = 1;
		h_next();
		{
			char branch[64], callid[96];
			snprintf(branch, sizeof branch, "z9hG4bK%s", h_token);
			snprintf(callid, sizeof callid, "reg%x.%s@", C.ndev > 1 ? 1u : 0u, g_runid);
			build_register(&g_out, C.ndev > 1 ? 1 : 0, h_hp, branch, 100 + (uint32_t)attempt, C.expires, NULL, 0);
			st = h_exchange(g_out.p, g_out.n, callid, 1000);
		}
		h_print("alive_register", st);
		if (st > 0)
			alive = 1;
	}
	printf("alive=%d\n", alive);
	fflush(stdout);
	free(b.p);
	free(x.p);
	return alive ? 0 : 1;
}

/* ------------------------------------------------------------------ */
/* options                                                             */

static void usage(FILE *f)
{
	fputs(
	    "usage: gbsim --duration S [--mode devices|flood|echo|hostile] [options]\n"
	    "  --server HOST:PORT          platform SIP address (required except for echo)\n"
	    "  --server-id CODE            platform 20-digit code (default 34020000002000000001)\n"
	    "  --domain D                  SIP domain / realm (default 3402000000)\n"
	    "  --devices N                 number of devices (default 1)\n"
	    "  --first-code CODE           code of device 0; device i = serial + i (default 34020000001320000001)\n"
	    "  --password P                default password (default 12345678)\n"
	    "  --password-file F           lines 'CODE PASSWORD' overriding --password\n"
	    "  --wrong-password-every K    every Kth device (K, 2K, ...) uses a wrong password\n"
	    "  --algorithm MD5|SHA-256     challenge to answer when both are offered (default MD5)\n"
	    "  --expires S                 REGISTER Expires (default 3600); refresh at 0.8 x granted\n"
	    "  --keepalive S               keepalive interval, 0 = none (default 60)\n"
	    "  --keepalive-jitter F        relative jitter of the interval (default 0.2)\n"
	    "  --reg-rate R                REGISTER starts per second, 0 = unlimited (default 2000)\n"
	    "  --reg-window W              outstanding registrations (default 500)\n"
	    "  --reg-retry S               retry a failed registration after S seconds (default 0 = never)\n"
	    "  --duration S                hard upper bound of the run time (required)\n"
	    "  --channels K                channels per device (default 2)\n"
	    "  --page-size P               catalog items per Response MESSAGE (default 2)\n"
	    "  --catalog-faults LIST       dup,drop1,gbk\n"
	    "  --alarm-every S             each device sends an Alarm every S seconds (default off)\n"
	    "  --stop-keepalive-after S    stop sending keepalives S seconds after start\n"
	    "  --bind IP                   local address (default: the one routing to --server)\n"
	    "  --sockets M                 local UDP sockets (default 1 per 1000 devices)\n"
	    "  --bind-spread K             UDP socket i binds to the --bind address + (i mod K), e.g. 127.0.0.1..\n"
	    "                              127.0.1.44 for K 300: devices come from K addresses (default 1)\n"
	    "  --transport udp|tcp         (tcp: one connection per device)\n"
	    "  --stats-every S             print the stats line every S seconds\n"
	    "  --media FILE                H.264 Annex-B file with AUDs: answer INVITE with SDP, stream it\n"
	    "                              as RTP/PS (PT 96, 25 fps, looped, max 60 s) after ACK; without\n"
	    "                              --media INVITE gets 488\n"
	    "  --gb-version V              send X-GB-Ver: V with REGISTER (2.0 = 2016, 3.0 = 2022)\n"
	    "  --control-log FILE          append each Control/Query received: root, CmdType, DeviceID and\n"
	    "                              the body with CR/LF left out, tab-separated, one line each\n"
	    "  --silent LIST               CmdTypes (e.g. RecordInfo,PresetQuery) answered 200, never a Response;\n"
	    "                              INVITE in the list: INVITEs are never answered at all\n"
	    "  --invite-delay MS           answer an INVITE (100 and 200) only MS ms after it came (max 30000)\n"
	    "  --sdp-ip ADDR               the c= address SDP answers name (default the local address)\n"
	    "  --control-fail LIST         control elements (GuardCmd, RecordCmd, AlarmCmd, HomePosition,\n"
	    "                              PTZPreciseCtrl, BasicParam, SnapShotConfig) answered Result ERROR\n"
	    "  --answer-twice LIST         CmdTypes (e.g. PresetQuery) whose Response names its elements twice (a hostile device)\n"
	    "  --answer-other LIST         CmdTypes answered with a Response of CmdType DeviceStatus (a hostile device)\n"
	    "  --record-gap H              RecordInfo: hour H (0-based) of the period has no record (default 2;\n"
	    "                              a large H: none missing)\n"
	    "  --snapshot FILE             DeviceConfig SnapShotConfig: after the OK answer, POST FILE (image/jpeg)\n"
	    "                              to its UploadURL (from a child process, libcurl); the HTTP status is\n"
	    "                              logged to --control-log as an 'Upload' line\n"
	    "  flood:   --window W (default 256) --no-register --any-reply\n"
	    "  echo:    --listen IP:PORT\n"
	    "  --verbose                   more diagnostics on stderr\n"
	    "Output: one key=value stats line on stdout (hostile: 'hostile NAME STATUS|none' lines, alive=0|1).\n",
	    f);
}

enum {
	O_SERVER = 256, O_SERVER_ID, O_DOMAIN, O_DEVICES, O_FIRST_CODE, O_PASSWORD, O_PASSWORD_FILE, O_WRONG_EVERY,
	O_ALGORITHM, O_EXPIRES, O_KEEPALIVE, O_JITTER, O_REG_RATE, O_REG_WINDOW, O_REG_RETRY, O_DURATION, O_CHANNELS,
	O_PAGE_SIZE, O_FAULTS, O_ALARM_EVERY, O_STOP_KA, O_MODE, O_BIND, O_SOCKETS, O_TRANSPORT, O_STATS_EVERY,
	O_NO_REGISTER, O_ANY_REPLY, O_WINDOW, O_LISTEN, O_VERBOSE, O_HELP, O_MEDIA, O_CONTROL_LOG, O_GB_VERSION,
	O_SILENT, O_CONTROL_FAIL, O_RECORD_GAP, O_BIND_SPREAD, O_SNAPSHOT
};
enum { O_INVITE_DELAY = 1000, O_SDP_IP, O_ANSWER_TWICE, O_ANSWER_OTHER };

static const struct option LONGOPTS[] = {
	{ "server", required_argument, NULL, O_SERVER },
	{ "server-id", required_argument, NULL, O_SERVER_ID },
	{ "domain", required_argument, NULL, O_DOMAIN },
	{ "devices", required_argument, NULL, O_DEVICES },
	{ "first-code", required_argument, NULL, O_FIRST_CODE },
	{ "password", required_argument, NULL, O_PASSWORD },
	{ "password-file", required_argument, NULL, O_PASSWORD_FILE },
	{ "wrong-password-every", required_argument, NULL, O_WRONG_EVERY },
	{ "algorithm", required_argument, NULL, O_ALGORITHM },
	{ "expires", required_argument, NULL, O_EXPIRES },
	{ "keepalive", required_argument, NULL, O_KEEPALIVE },
	{ "keepalive-jitter", required_argument, NULL, O_JITTER },
	{ "reg-rate", required_argument, NULL, O_REG_RATE },
	{ "reg-window", required_argument, NULL, O_REG_WINDOW },
	{ "reg-retry", required_argument, NULL, O_REG_RETRY },
	{ "duration", required_argument, NULL, O_DURATION },
	{ "channels", required_argument, NULL, O_CHANNELS },
	{ "page-size", required_argument, NULL, O_PAGE_SIZE },
	{ "catalog-faults", required_argument, NULL, O_FAULTS },
	{ "alarm-every", required_argument, NULL, O_ALARM_EVERY },
	{ "stop-keepalive-after", required_argument, NULL, O_STOP_KA },
	{ "mode", required_argument, NULL, O_MODE },
	{ "bind", required_argument, NULL, O_BIND },
	{ "sockets", required_argument, NULL, O_SOCKETS },
	{ "bind-spread", required_argument, NULL, O_BIND_SPREAD },
	{ "transport", required_argument, NULL, O_TRANSPORT },
	{ "stats-every", required_argument, NULL, O_STATS_EVERY },
	{ "no-register", no_argument, NULL, O_NO_REGISTER },
	{ "any-reply", no_argument, NULL, O_ANY_REPLY },
	{ "window", required_argument, NULL, O_WINDOW },
	{ "listen", required_argument, NULL, O_LISTEN },
	{ "verbose", no_argument, NULL, O_VERBOSE },
	{ "help", no_argument, NULL, O_HELP },
	{ "media", required_argument, NULL, O_MEDIA },
	{ "control-log", required_argument, NULL, O_CONTROL_LOG },
	{ "gb-version", required_argument, NULL, O_GB_VERSION },
	{ "silent", required_argument, NULL, O_SILENT },
	{ "control-fail", required_argument, NULL, O_CONTROL_FAIL },
	{ "record-gap", required_argument, NULL, O_RECORD_GAP },
	{ "snapshot", required_argument, NULL, O_SNAPSHOT },
	{ "invite-delay", required_argument, NULL, O_INVITE_DELAY },
	{ "sdp-ip", required_argument, NULL, O_SDP_IP },
	{ "answer-twice", required_argument, NULL, O_ANSWER_TWICE },
	{ "answer-other", required_argument, NULL, O_ANSWER_OTHER },
	{ NULL, 0, NULL, 0 },
};

static void parse_options(int argc, char **argv)
{
	int c, window_set = 0;
	C.mode = MODE_DEVICES;
	strcpy(C.server_id, "34020000002000000001");
	strcpy(C.domain, "3402000000");
	strcpy(C.first_code, "34020000001320000001");
	C.ndev = 1;
	C.password = "12345678";
	C.expires = 3600;
	C.keepalive = 60;
	C.jitter = 0.2;
	C.reg_rate = 2000;
	C.reg_window = 500;
	C.channels = 2;
	C.page_size = 2;
	C.stop_ka_after = -1;
	C.window = 256;
	C.record_gap = 2;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", LONGOPTS, NULL)) != -1) {
		switch (c) {
		case O_SERVER:
			parse_hostport("server", optarg, &C.server);
			C.server_set = 1;
			break;
		case O_SERVER_ID:
			if (strlen(optarg) != 20 || !all_digits(optarg, 20))
				usage_error("--server-id: expected a 20-digit code, got '%s'", optarg);
			strcpy(C.server_id, optarg);
			break;
		case O_DOMAIN: {
			size_t l = strlen(optarg);
			if (!l || l >= sizeof C.domain || strspn(optarg, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-") != l)
				usage_error("--domain: expected 1-63 letters, digits, '.' or '-', got '%s'", optarg);
			strcpy(C.domain, optarg);
			break;
		}
		case O_DEVICES:
			C.ndev = (uint32_t)parse_ll("devices", optarg, 1, 1000000);
			break;
		case O_FIRST_CODE:
			if (strlen(optarg) != 20 || !all_digits(optarg, 20))
				usage_error("--first-code: expected a 20-digit code, got '%s'", optarg);
			strcpy(C.first_code, optarg);
			break;
		case O_PASSWORD:
			if (!*optarg || strlen(optarg) > 128 || strpbrk(optarg, "\"\\\r\n"))
				usage_error("--password: 1-128 characters without '\"', '\\' or line breaks");
			C.password = optarg;
			break;
		case O_PASSWORD_FILE:
			C.password_file = optarg;
			break;
		case O_WRONG_EVERY:
			C.wrong_every = (uint32_t)parse_ll("wrong-password-every", optarg, 1, 1000000);
			break;
		case O_ALGORITHM:
			if (strcasecmp(optarg, "MD5") == 0)
				C.want_sha256 = 0;
			else if (strcasecmp(optarg, "SHA-256") == 0 || strcasecmp(optarg, "SHA256") == 0)
				C.want_sha256 = 1;
			else
				usage_error("--algorithm: expected MD5 or SHA-256, got '%s'", optarg);
			break;
		case O_EXPIRES:
			C.expires = (uint32_t)parse_ll("expires", optarg, 1, 31536000);
			break;
		case O_KEEPALIVE:
			C.keepalive = parse_dbl("keepalive", optarg, 0, 86400);
			break;
		case O_JITTER:
			C.jitter = parse_dbl("keepalive-jitter", optarg, 0, 0.95);
			break;
		case O_REG_RATE:
			C.reg_rate = parse_dbl("reg-rate", optarg, 0, 1e7);
			break;
		case O_REG_WINDOW:
			C.reg_window = (uint32_t)parse_ll("reg-window", optarg, 1, 1000000);
			break;
		case O_REG_RETRY:
			C.reg_retry = parse_dbl("reg-retry", optarg, 0, 86400);
			break;
		case O_DURATION:
			C.duration = parse_dbl("duration", optarg, 0.1, 31536000);
			C.duration_set = 1;
			break;
		case O_CHANNELS:
			C.channels = (uint32_t)parse_ll("channels", optarg, 0, 10000);
			break;
		case O_CONTROL_LOG:
			C.control_log = optarg;
			break;
		case O_GB_VERSION:
			if (!*optarg || strlen(optarg) >= sizeof C.gb_version || strspn(optarg, "0123456789.") != strlen(optarg))
				usage_error("--gb-version: expected a version such as 2.0 or 3.0, got '%s'", optarg);
			strcpy(C.gb_version, optarg);
			break;
		case O_SILENT:
		case O_CONTROL_FAIL:
			if (strlen(optarg) >= sizeof C.silent || strspn(optarg, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz,") != strlen(optarg))
				usage_error("--%s: expected comma-separated element names", c == O_SILENT ? "silent" : "control-fail");
			strcpy(c == O_SILENT ? C.silent : C.control_fail, optarg);
			break;
		case O_RECORD_GAP:
			C.record_gap = (uint32_t)parse_ll("record-gap", optarg, 0, 4294967295LL);
			break;
		case O_PAGE_SIZE:
			C.page_size = (uint32_t)parse_ll("page-size", optarg, 1, 1000);
			break;
		case O_FAULTS: {
			char *dup = strdup(optarg), *save = NULL, *t;
			for (t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
				if (strcmp(t, "dup") == 0)
					C.fault_dup = 1;
				else if (strcmp(t, "drop1") == 0)
					C.fault_drop1 = 1;
				else if (strcmp(t, "gbk") == 0)
					C.fault_gbk = 1;
				else if (strcmp(t, "none") != 0)
					usage_error("--catalog-faults: unknown fault '%s' (dup, drop1, gbk)", t);
			}
			free(dup);
			break;
		}
		case O_ALARM_EVERY:
			C.alarm_every = parse_dbl("alarm-every", optarg, 0, 86400);
			if (C.alarm_every > 0 && C.alarm_every < 0.01)
				usage_error("--alarm-every: at least 0.01 s (or 0 for off)");
			break;
		case O_STOP_KA:
			C.stop_ka_after = parse_dbl("stop-keepalive-after", optarg, 0, 31536000);
			break;
		case O_MODE:
			if (strcmp(optarg, "devices") == 0)
				C.mode = MODE_DEVICES;
			else if (strcmp(optarg, "flood") == 0)
				C.mode = MODE_FLOOD;
			else if (strcmp(optarg, "echo") == 0)
				C.mode = MODE_ECHO;
			else if (strcmp(optarg, "hostile") == 0)
				C.mode = MODE_HOSTILE;
			else
				usage_error("--mode: expected devices, flood, echo or hostile, got '%s'", optarg);
			break;
		case O_BIND:
			if (inet_pton(AF_INET, optarg, &C.bind_addr) != 1)
				usage_error("--bind: expected an IPv4 address, got '%s'", optarg);
			C.bind_set = 1;
			break;
		case O_SOCKETS:
			C.nsockets = (uint32_t)parse_ll("sockets", optarg, 1, 60000);
			break;
		case O_BIND_SPREAD:
			C.bind_spread = (uint32_t)parse_ll("bind-spread", optarg, 1, 60000);
			break;
		case O_TRANSPORT:
			if (strcasecmp(optarg, "udp") == 0)
				C.tcp = 0;
			else if (strcasecmp(optarg, "tcp") == 0)
				C.tcp = 1;
			else
				usage_error("--transport: expected udp or tcp, got '%s'", optarg);
			break;
		case O_STATS_EVERY:
			C.stats_every = parse_dbl("stats-every", optarg, 0, 86400);
			if (C.stats_every > 0 && C.stats_every < 0.1)
				usage_error("--stats-every: at least 0.1 s (or 0 for off)");
			break;
		case O_NO_REGISTER:
			C.no_register = 1;
			break;
		case O_ANY_REPLY:
			C.any_reply = 1;
			break;
		case O_WINDOW:
			C.window = (uint32_t)parse_ll("window", optarg, 1, 65536);
			window_set = 1;
			break;
		case O_LISTEN:
			parse_hostport("listen", optarg, &C.listen);
			C.listen_set = 1;
			break;
		case O_VERBOSE:
			C.verbose = 1;
			break;
		case O_HELP:
			usage(stdout);
			exit(0);
		case O_MEDIA:
			C.media = optarg;
			break;
		case O_SNAPSHOT:
			if (access(optarg, R_OK) != 0)
				usage_error("--snapshot: cannot read '%s': %s", optarg, strerror(errno));
			C.snapshot = optarg;
			break;
		case O_INVITE_DELAY:
			C.invite_delay = (uint32_t)parse_ll("invite-delay", optarg, 0, 30000);
			break;
		case O_ANSWER_TWICE:
		case O_ANSWER_OTHER:
			if (strlen(optarg) >= sizeof C.answer_twice || strspn(optarg, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz,") != strlen(optarg))
				usage_error("--%s: expected comma-separated CmdTypes", c == O_ANSWER_TWICE ? "answer-twice" : "answer-other");
			strcpy(c == O_ANSWER_TWICE ? C.answer_twice : C.answer_other, optarg);
			break;
		case O_SDP_IP: {
			struct in_addr a;
			if (inet_pton(AF_INET, optarg, &a) != 1)
				usage_error("--sdp-ip: '%s' is not an IPv4 address", optarg);
			snprintf(C.sdp_ip, sizeof C.sdp_ip, "%s", optarg);
			break;
		}
		case '?':
		default:
			if (optopt && optopt < 256)
				usage_error("unknown option '-%c'", optopt);
			usage_error("unknown option or missing argument: '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	if (!C.duration_set)
		usage_error("--duration is required");
	if (C.mode == MODE_ECHO) {
		if (!C.listen_set)
			usage_error("--mode echo needs --listen IP:PORT");
		return;
	}
	if (C.listen_set)
		usage_error("--listen is only for --mode echo");
	if (C.media && C.mode == MODE_HOSTILE)
		usage_error("--media is only for --mode devices or flood");
	if (C.media)
		media_load(C.media);
	if (!C.server_set)
		usage_error("--server HOST:PORT is required");
	if (C.mode != MODE_FLOOD && (C.no_register || C.any_reply || window_set))
		usage_error("--no-register, --any-reply and --window are only for --mode flood");
	if (C.wrong_every > C.ndev)
		warnx_("--wrong-password-every %u > --devices %u: no device gets a wrong password", C.wrong_every, C.ndev);
	{
		uint32_t first = get6(C.first_code + 14);
		if ((uint64_t)first + C.ndev - 1 > 999999)
			usage_error("--first-code %s + --devices %u overflows the 6-digit serial (max %u devices)", C.first_code,
				    C.ndev, 999999 - first + 1);
		if (C.channels && ((uint64_t)first + C.ndev - 1) * C.channels + C.channels - 1 > 999999)
			usage_error("channel codes overflow: (serial %u + %u devices) x %u channels must stay <= 999999; "
				    "lower --channels/--devices or the first serial",
				    first, C.ndev, C.channels);
	}
	if (C.nsockets > C.ndev)
		C.nsockets = C.ndev;
}

/* ------------------------------------------------------------------ */
/* main                                                                */

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

static void local_address(void)
{
	if (C.bind_set && C.bind_addr.s_addr != htonl(INADDR_ANY)) {
		inet_ntop(AF_INET, &C.bind_addr, g_local_ip, sizeof g_local_ip);
		return;
	}
	/* the address that routes to the server */
	{
		int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in a;
		socklen_t al = sizeof a;
		if (fd < 0 || connect(fd, (struct sockaddr *)&C.server, sizeof C.server) != 0 ||
		    getsockname(fd, (struct sockaddr *)&a, &al) != 0)
			fatal("cannot find a local address towards the server: %s", strerror(errno));
		close(fd);
		if (!C.bind_set)
			C.bind_addr = a.sin_addr;
		inet_ntop(AF_INET, &a.sin_addr, g_local_ip, sizeof g_local_ip);
	}
}

static void setup_udp(void)
{
	g_nus = C.nsockets ? C.nsockets : (C.ndev + 999) / 1000;
	g_us = calloc(g_nus, sizeof *g_us);
	if (!g_us)
		fatal("out of memory");
	for (uint32_t i = 0; i < g_nus; i++) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr = C.bind_addr };
		socklen_t al = sizeof a;
		int sz = 4 << 20;
		char ip[INET_ADDRSTRLEN];
		if (C.bind_spread > 1)
			a.sin_addr.s_addr = htonl(ntohl(C.bind_addr.s_addr) + i % C.bind_spread);
		inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EPD(EP_UDP, i) };
		int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			fatal("socket: %s", strerror(errno));
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
		if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &al) != 0)
			fatal("bind %s: %s", g_local_ip, strerror(errno));
		g_us[i].fd = fd;
		g_us[i].port = ntohs(a.sin_port);
		snprintf(g_us[i].hp, sizeof g_us[i].hp, "%s:%u", ip, g_us[i].port);
		if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) != 0)
			fatal("epoll_ctl: %s", strerror(errno));
	}
}

static void setup_tcp(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && C.ndev + 64 > rl.rlim_cur)
		usage_error("--transport tcp with %u devices needs %u file descriptors (limit %lu)", C.ndev, C.ndev + 64,
			    (unsigned long)rl.rlim_cur);
	g_tc = calloc(C.ndev, sizeof *g_tc);
	if (!g_tc)
		fatal("out of memory");
	for (uint32_t d = 0; d < C.ndev; d++)
		g_tc[d].fd = -1;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	uint32_t deadline;
	parse_options(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);
	g_start_us = mono_us();
	g_rng = (uint64_t)g_start_us ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ULL;
	for (int i = 0; i < 4; i++)
		rnd64();
	snprintf(g_runid, sizeof g_runid, "%08x", (uint32_t)rnd64());
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (C.mode == MODE_ECHO)
		return run_echo();

	memcpy(g_prefix, C.first_code, 14);
	g_first_serial = get6(C.first_code + 14);
	memcpy(g_chan_type, memcmp(C.first_code + 10, "131", 3) == 0 ? "132" : "131", 3);
	local_address();
	g_dev = calloc(C.ndev, sizeof *g_dev);
	if (!g_dev)
		fatal("out of memory for %u devices", C.ndev);
	for (uint32_t d = 0; d < C.ndev; d++)
		g_dev[d].reg_txn = g_dev[d].ka_txn = -1;
	if (C.password_file)
		load_password_file(C.password_file);

	if (C.mode == MODE_HOSTILE)
		return run_hostile();

	g_ep = epoll_create1(EPOLL_CLOEXEC);
	if (g_ep < 0)
		fatal("epoll_create1: %s", strerror(errno));
	if (C.tcp)
		setup_tcp();
	else
		setup_udp();
	g_rq = xmalloc((size_t)C.ndev * sizeof *g_rq);
	g_rbufs = xmalloc((size_t)BATCH * (RBUF_SZ + 1));
	g_tokens_us = mono_us();
	deadline = (uint32_t)(C.duration * 1000.0) + 1;
	{
		char last[21];
		dev_code(C.ndev - 1, last);
		fprintf(stderr, "gbsim: %s mode, %u devices %s..%s from %s (%s, %u socket%s), server %s:%u, run %s\n",
		C.mode == MODE_FLOOD ? "flood" : "devices", C.ndev, C.first_code, last, g_local_ip,
		C.tcp ? "tcp" : "udp", C.tcp ? C.ndev : g_nus, (C.tcp ? C.ndev : g_nus) == 1 ? "" : "s",
		inet_ntoa(C.server.sin_addr), ntohs(C.server.sin_port), g_runid);
	}

	if (C.mode == MODE_FLOOD) {
		if (!C.no_register) {
			for (uint32_t d = 0; d < C.ndev; d++)
				reg_enqueue(d);
			run_loop(deadline, reg_phase_done);
			fprintf(stderr, "gbsim: flood: %u of %u devices registered\n", S.registered, C.ndev);
		}
		if (!g_stop && now_ms() < deadline) {
			flood_start();
			run_loop(deadline, NULL);
		}
		S.flood_end_us = mono_us();
	} else {
		for (uint32_t d = 0; d < C.ndev; d++)
			reg_enqueue(d);
		run_loop(deadline, NULL);
	}
	print_stats();
	return 0;
}
