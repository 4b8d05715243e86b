/*
 * sip_fastpath.c — the keepalive fast path (see sip_fastpath.h).
 *
 * The shape accepted, and nothing else (CRLF line ends throughout):
 *
 *   MESSAGE sip:USER@HOST[:PORT] SIP/2.0
 *   then, in any order, each at most once, names spelled exactly so:
 *     Via: SIP/2.0/UDP|TCP HOST[:PORT](;NAME[=TOKEN])*      (one Via)
 *     From: <sip:USER@HOST[:PORT]>;tag=TOKEN
 *     To: <sip:USER@HOST[:PORT]>[;tag=TOKEN]
 *     Call-ID: TOKEN[@TOKEN]
 *     CSeq: DIGITS MESSAGE
 *     Content-Type: TYPE/SUBTYPE
 *     Content-Length: DIGITS                      (the exact body length; spaces may precede it)
 *     Max-Forwards: DIGITS, Contact: <sip:USER@HOST[:PORT]>, User-Agent: TEXT   (optional)
 *   a blank line, then the body:
 *     [<?xml version="1.0"[ encoding="GB2312|GBK|GB18030|UTF-8"]?>]
 *     <Notify> <CmdType>Keepalive</CmdType> and any of <SN>, <DeviceID>,
 *     <Status> (each at most once, letters and digits inside) </Notify>
 *     with white space between elements.
 *
 * USER is letters and digits, HOST letters, digits, dots and dashes, a
 * TOKEN a subset of RFC 3261's token without '%' (nothing is unescaped;
 * a Call-ID may have '/' as well),
 * TEXT printable ASCII without quotes, commas or separators libosip2 would
 * read.  Lengths are bounded so that every field fits its SipIn/Manscdp
 * array uncut.  The Via, From, To, Call-ID and CSeq lines are not rebuilt
 * here: the answer is made from the request's own lines by
 * sip_answer_text(), as for a message parsed in full.
 */
#include "sip_fastpath.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_USER 32
#define MAX_HOST 60
#define MAX_TOKEN 60
#define MAX_CALLID 120
#define MAX_UA 80
#define MAX_TEXT 32

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool
is_alnum(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
is_host(char c)
{
	return is_alnum(c) || c == '.' || c == '-';
}

static bool
is_token(char c)
{
	return is_alnum(c) || c == '.' || c == '-' || c == '_' || c == '+' || c == '!' || c == '*' || c == '~';
}

/* a Call-ID word: a token, and '/' (sipp's "ka1///..." Call-IDs) */
static bool
is_callid(char c)
{
	return is_token(c) || c == '/';
}

static bool
is_ua(char c)
{
	return is_alnum(c) || c == ' ' || c == '.' || c == '-' || c == '_' || c == '/' || c == '+';
}

static bool
is_subtype(char c)
{
	return is_alnum(c) || c == '+' || c == '.' || c == '-';
}

/* how many characters of a class start at p (before e): between min and max, else 0 */
static size_t
run(const char *p, const char *e, bool (*cls) (char), size_t min, size_t max)
{
	size_t		n = 0;

	while (p + n < e && cls(p[n]))
		if (++n > max)
			return 0;
	return n >= min ? n : 0;
}

/* p starts with the literal s (before e): what follows it, else NULL */
static const char *
lit(const char *p, const char *e, const char *s)
{
	size_t		n = strlen(s);

	if ((size_t) (e - p) < n || memcmp(p, s, n) != 0)
		return NULL;
	return p + n;
}

typedef struct Span
{
	const char *p;
	size_t		n;
} Span;

/* every span is bounded below its array's size (the MAX_ limits): nothing is cut */
static void
span_copy(char *dst, size_t dstlen, Span s)
{
	size_t		n = s.n < dstlen ? s.n : dstlen - 1;

	memcpy(dst, s.p, n);
	dst[n] = '\0';
}

/* HOST[:PORT]: a host of letters, digits, dots and dashes that starts and ends with a letter or digit */
static const char *
hostport(const char *p, const char *e, Span *host)
{
	size_t		n = run(p, e, is_host, 1, MAX_HOST);

	if (n == 0 || !is_alnum(p[0]) || !is_alnum(p[n - 1]))
		return NULL;
	host->p = p;
	host->n = n;
	p += n;
	if (p < e && *p == ':')
	{
		n = run(p + 1, e, is_digit, 1, 5);
		if (n == 0)
			return NULL;
		p += 1 + n;
	}
	return p;
}

/* sip:USER@HOST[:PORT] */
static const char *
sip_uri(const char *p, const char *e, Span *user, Span *host)
{
	size_t		n;

	if ((p = lit(p, e, "sip:")) == NULL)
		return NULL;
	n = run(p, e, is_alnum, 1, MAX_USER);
	if (n == 0)
		return NULL;
	user->p = p;
	user->n = n;
	p += n;
	if ((p = lit(p, e, "@")) == NULL)
		return NULL;
	return hostport(p, e, host);
}

/* <sip:USER@HOST[:PORT]>[;tag=TOKEN]: the whole value */
static bool
name_addr(const char *p, const char *e, Span *user, Span *host, Span *tag, bool tag_required)
{
	size_t		n;

	tag->p = NULL;
	tag->n = 0;
	if ((p = lit(p, e, "<")) == NULL || (p = sip_uri(p, e, user, host)) == NULL || (p = lit(p, e, ">")) == NULL)
		return false;
	if (p == e)
		return !tag_required;
	if ((p = lit(p, e, ";tag=")) == NULL)
		return false;
	n = run(p, e, is_token, 1, MAX_TOKEN);
	tag->p = p;
	tag->n = n;
	return n > 0 && p + n == e;
}

/* SIP/2.0/UDP|TCP HOST[:PORT](;NAME[=TOKEN])* */
static bool
via(const char *p, const char *e)
{
	Span		host;

	if ((p = lit(p, e, "SIP/2.0/")) == NULL)
		return false;
	if (lit(p, e, "UDP ") == NULL && lit(p, e, "TCP ") == NULL)
		return false;
	if ((p = hostport(p + 4, e, &host)) == NULL)
		return false;
	while (p < e)
	{
		size_t		n;

		if (*p++ != ';')
			return false;
		n = run(p, e, is_alnum, 1, MAX_TOKEN);
		if (n == 0)
			return false;
		p += n;
		if (p < e && *p == '=')
		{
			n = run(p + 1, e, is_token, 1, MAX_TOKEN);
			if (n == 0)
				return false;
			p += 1 + n;
		}
	}
	return true;
}

/* the MANSCDP body: a Keepalive Notify; fills m's fields as manscdp_parse() does */
static bool
keepalive_body(const char *p, const char *e, Manscdp *m)
{
	static const char *const names[] = {"CmdType", "SN", "DeviceID", "Status"};
	bool		seen[4] = {false, false, false, false};
	Span		text[4];

	if (lit(p, e, "<?xml") != NULL)
	{
		const char *q;

		if ((p = lit(p, e, "<?xml version=\"1.0\"")) == NULL)
			return false;
		if ((q = lit(p, e, " encoding=\"")) != NULL)
		{
			static const char *const encodings[] = {"GB2312\"", "GBK\"", "GB18030\"", "UTF-8\""};
			const char *r = NULL;

			for (int i = 0; i < 4 && r == NULL; i++)
				r = lit(q, e, encodings[i]);
			if (r == NULL)
				return false;
			p = r;
		}
		if ((p = lit(p, e, "?>")) == NULL)
			return false;
	}
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	if ((p = lit(p, e, "<Notify>")) == NULL)
		return false;
	for (;;)
	{
		const char *q;
		int			k = -1;
		size_t		n;

		while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
			p++;
		if ((q = lit(p, e, "</Notify>")) != NULL)
		{
			p = q;
			break;
		}
		if ((p = lit(p, e, "<")) == NULL)
			return false;
		for (int i = 0; i < 4 && k < 0; i++)
			if ((q = lit(p, e, names[i])) != NULL && q < e && *q == '>')
				k = i;
		if (k < 0 || seen[k])
			return false;
		seen[k] = true;
		p = q + 1;
		n = 0;
		while (p + n < e && is_alnum(p[n]))
			if (++n > MAX_TEXT)
				return false;
		text[k].p = p;
		text[k].n = n;
		p += n;
		if ((p = lit(p, e, "</")) == NULL || (p = lit(p, e, names[k])) == NULL || (p = lit(p, e, ">")) == NULL)
			return false;
	}
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	if (p != e || !seen[0] || text[0].n != 9 || memcmp(text[0].p, "Keepalive", 9) != 0)
		return false;

	strcpy(m->root, "Notify");
	strcpy(m->cmd_type, "Keepalive");
	/* SN: digits, at most 10; DeviceID: 20 digits; else empty (manscdp_parse's rule) */
	if (seen[1] && text[1].n > 0 && text[1].n <= 10 && run(text[1].p, e, is_digit, 1, 10) == text[1].n)
		span_copy(m->sn, sizeof(m->sn), text[1]);
	if (seen[2] && text[2].n == 20 && run(text[2].p, e, is_digit, 20, 20) == 20)
		span_copy(m->device_id, sizeof(m->device_id), text[2]);
	return true;
}

enum
{
	F_VIA, F_FROM, F_TO, F_CALLID, F_CSEQ, F_CTYPE, F_CLEN, F_MAXFWD, F_CONTACT, F_UA, F_N
};

static const char *const header_names[F_N] = {
	"Via", "From", "To", "Call-ID", "CSeq", "Content-Type", "Content-Length", "Max-Forwards", "Contact", "User-Agent"
};

bool
sip_fastpath_keepalive(const char *buf, size_t len, size_t limit, SipIn *in, Manscdp *m)
{
	const char *p = buf;
	const char *e = buf + len;
	const char *eol;
	Span		v[F_N];
	bool		seen[F_N] = {false};
	Span		ruser,
				rhost,
				fuser,
				fhost,
				ftag,
				tuser,
				thost,
				ttag,
				cuser,
				chost,
				ctag;
	size_t		h,
				n;
	long		clen = 0;

	if (len > limit || len < 16)
		return false;
	/* the request line */
	if ((p = lit(p, e, "MESSAGE ")) == NULL)
		return false;
	{
		const char *u = p;

		if ((p = sip_uri(p, e, &ruser, &rhost)) == NULL || (eol = lit(p, e, " SIP/2.0\r\n")) == NULL)
			return false;
		memset(in, 0, sizeof(*in));
		span_copy(in->req_uri, sizeof(in->req_uri), (Span) {u, (size_t) (p - u)});
		p = eol;
	}
	/* header lines */
	for (;;)
	{
		const char *colon;
		const char *val;
		int			k = -1;

		if ((eol = memchr(p, '\r', e - p)) == NULL || eol + 1 >= e || eol[1] != '\n')
			return false;
		if (eol == p)
		{
			p = eol + 2;
			break;				/* the blank line */
		}
		colon = memchr(p, ':', eol - p);
		if (colon == NULL || colon + 2 >= eol || colon[1] != ' ' || eol[-1] == ' ')
			return false;
		for (int i = 0; i < F_N && k < 0; i++)
			if ((size_t) (colon - p) == strlen(header_names[i]) && memcmp(p, header_names[i], colon - p) == 0)
				k = i;
		if (k < 0 || seen[k])
			return false;
		seen[k] = true;
		val = colon + 2;
		/* sipp pads its [len]: "Content-Length:   169" (spaces before the digits only there) */
		if (k == F_CLEN)
			while (val < eol && *val == ' ')
				val++;
		if (*val == ' ')
			return false;
		v[k].p = val;
		v[k].n = eol - val;
		p = eol + 2;
	}
	h = p - buf;
	if (!seen[F_VIA] || !seen[F_FROM] || !seen[F_TO] || !seen[F_CALLID] || !seen[F_CSEQ] ||
		!seen[F_CTYPE] || !seen[F_CLEN])
		return false;

	/* each value, whole */
	if (!via(v[F_VIA].p, v[F_VIA].p + v[F_VIA].n))
		return false;
	if (!name_addr(v[F_FROM].p, v[F_FROM].p + v[F_FROM].n, &fuser, &fhost, &ftag, true) ||
		!name_addr(v[F_TO].p, v[F_TO].p + v[F_TO].n, &tuser, &thost, &ttag, false))
		return false;
	if (seen[F_CONTACT] &&
		!name_addr(v[F_CONTACT].p, v[F_CONTACT].p + v[F_CONTACT].n, &cuser, &chost, &ctag, false))
		return false;
	if (seen[F_CONTACT] && ctag.n > 0)
		return false;			/* a Contact takes no parameters here */
	{
		const char *c = v[F_CALLID].p,
				   *ce = c + v[F_CALLID].n;

		n = run(c, ce, is_callid, 1, MAX_CALLID);
		if (n == 0 || v[F_CALLID].n > MAX_CALLID)
			return false;
		if (c + n < ce)
		{
			size_t		n2;

			if (c[n] != '@')
				return false;
			n2 = run(c + n + 1, ce, is_callid, 1, MAX_CALLID);
			if (n2 == 0 || c + n + 1 + n2 != ce)
				return false;
		}
	}
	{
		const char *c = v[F_CSEQ].p,
				   *ce = c + v[F_CSEQ].n;

		n = run(c, ce, is_digit, 1, 10);
		if (n == 0 || lit(c + n, ce, " MESSAGE") != ce)
			return false;
		in->cseq = (unsigned int) strtoul(c, NULL, 10);
	}
	{
		const char *c = v[F_CTYPE].p,
				   *ce = c + v[F_CTYPE].n;
		size_t		n2;

		n = run(c, ce, is_alnum, 1, 20);
		if (n == 0 || c[n] != '/')
			return false;
		n2 = run(c + n + 1, ce, is_subtype, 1, 30);
		if (n2 == 0 || c + n + 1 + n2 != ce)
			return false;
	}
	if (run(v[F_CLEN].p, v[F_CLEN].p + v[F_CLEN].n, is_digit, 1, 9) != v[F_CLEN].n)
		return false;
	clen = strtol(v[F_CLEN].p, NULL, 10);
	if (clen <= 0 || (size_t) clen != len - h)
		return false;
	if (seen[F_MAXFWD] && run(v[F_MAXFWD].p, v[F_MAXFWD].p + v[F_MAXFWD].n, is_digit, 1, 3) != v[F_MAXFWD].n)
		return false;
	if (seen[F_UA] &&
		(run(v[F_UA].p, v[F_UA].p + v[F_UA].n, is_ua, 1, MAX_UA) != v[F_UA].n || v[F_UA].p[0] == ' '))
		return false;

	/* the body */
	memset(m, 0, sizeof(*m));
	m->sum_num = -1;
	if (!keepalive_body(buf + h, e, m))
		return false;
	m->encoding = "UTF-8";
	sbuf_init(&m->json, limit * 2 + 1024);
	sbuf_puts(&m->json, "{}");

	/* what sip_parse() would give */
	in->fast = true;
	in->is_request = true;
	in->method = "MESSAGE";
	in->expires = -1;
	span_copy(in->call_id, sizeof(in->call_id), v[F_CALLID]);
	strcpy(in->cseq_method, "MESSAGE");
	span_copy(in->from_user, sizeof(in->from_user), fuser);
	span_copy(in->from_host, sizeof(in->from_host), fhost);
	span_copy(in->from_tag, sizeof(in->from_tag), ftag);
	span_copy(in->to_user, sizeof(in->to_user), tuser);
	if (ttag.n > 0)
		span_copy(in->to_tag, sizeof(in->to_tag), ttag);
	span_copy(in->uri_user, sizeof(in->uri_user), ruser);
	span_copy(in->uri_host, sizeof(in->uri_host), rhost);
	if (seen[F_UA])
		span_copy(in->user_agent, sizeof(in->user_agent), v[F_UA]);
	span_copy(in->content_type, sizeof(in->content_type), v[F_CTYPE]);
	in->raw = buf;
	in->raw_hlen = h;
	in->body = buf + h;
	in->body_len = (size_t) clen;
	return true;
}
