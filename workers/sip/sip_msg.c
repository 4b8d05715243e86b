/*
 * sip_msg.c — SIP framing, parsing and answers (see sip_msg.h).
 *
 * libosip2 parses; before it runs, the start line and header block are
 * checked and Content-Length is compared with the bytes that arrived, so a
 * message claiming a huge body or cut short is refused rather than read
 * past its end.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE				/* dladdr() */
#endif
#include "sip_msg.h"

#include <ctype.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * libosip2's parser_init(), which must run before any parsing.  The
 * postgres executable exports a parser_init() of its own (its SQL parser)
 * that would win a plain symbol lookup, so the function is taken from the
 * very library that holds osip_message_parse: dladdr() names that file,
 * dlopen(RTLD_NOLOAD) returns the handle of the loaded copy, dlsym() finds
 * parser_init in it, and dladdr() confirms the result lies in the same
 * library.  Anything else is an error: false, with the reason in err.
 */
bool
sip_msg_init(char *err, size_t errlen)
{
	static bool done = false;
	Dl_info		lib_info,
				init_info;
	void	   *lib;
	int			(*osip_parser_init) (void);

	if (done)
		return true;
	if (dladdr((void *) osip_message_parse, &lib_info) == 0 || lib_info.dli_fname == NULL)
	{
		snprintf(err, errlen, "dladdr() found no library holding osip_message_parse");
		return false;
	}
	lib = dlopen(lib_info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
	if (lib == NULL)
	{
		snprintf(err, errlen, "dlopen(\"%s\", RTLD_NOLOAD) failed: %s", lib_info.dli_fname, dlerror());
		return false;
	}
	osip_parser_init = (int (*) (void)) dlsym(lib, "parser_init");
	if (osip_parser_init == NULL ||
		dladdr((void *) osip_parser_init, &init_info) == 0 || init_info.dli_fbase != lib_info.dli_fbase)
	{
		snprintf(err, errlen, "no parser_init in %s, the library of osip_message_parse", lib_info.dli_fname);
		dlclose(lib);
		return false;
	}
	/* the library stays loaded: it is linked in; this only drops NOLOAD's reference */
	dlclose(lib);
	osip_parser_init();
	/* libosip2 prints its own errors to stderr: the worker reports them itself */
	for (int level = 0; level < END_TRACE_LEVEL; level++)
		osip_trace_disable_level((osip_trace_level_t) level);
	done = true;
	return true;
}

bool
sip_is_gbcode(const char *s)
{
	for (int i = 0; i < 20; i++)
		if (!isdigit((unsigned char) s[i]))
			return false;
	return s[20] == '\0';
}

static void
copy_bounded(char *dst, size_t dstlen, const char *src)
{
	if (src == NULL)
	{
		dst[0] = '\0';
		return;
	}
	snprintf(dst, dstlen, "%s", src);
}

/*
 * End of the header block: offset of the body, or 0 when not (yet) there.
 * The first empty line ends it, whether lines end in CRLF or (leniently)
 * LF alone: on a TCP connection the buffer may already hold the next
 * message, and only the earliest terminator belongs to this one.
 */
static size_t
header_end(const char *buf, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++)
	{
		if (buf[i] != '\n')
			continue;
		if (buf[i + 1] == '\n')
			return i + 2;
		if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/*
 * Content-Length (or its compact form "l") from the header block; -1 when
 * absent, -2 when unreadable.
 */
static long
content_length(const char *buf, size_t hlen)
{
	const char *p = buf;
	const char *end = buf + hlen;

	while (p < end)
	{
		const char *eol = memchr(p, '\n', end - p);
		size_t		n = eol ? (size_t) (eol - p) : (size_t) (end - p);
		const char *colon = memchr(p, ':', n);

		if (colon)
		{
			size_t		nl = colon - p;

			while (nl > 0 && (p[nl - 1] == ' ' || p[nl - 1] == '\t'))
				nl--;
			if ((nl == 14 && strncasecmp(p, "Content-Length", 14) == 0) ||
				(nl == 1 && (p[0] == 'l' || p[0] == 'L')))
			{
				const char *v = colon + 1;
				long		val = 0;
				int			digits = 0;

				while (v < p + n && (*v == ' ' || *v == '\t'))
					v++;
				while (v < p + n && isdigit((unsigned char) *v))
				{
					if (++digits > 9)
						return -2;
					val = val * 10 + (*v - '0');
					v++;
				}
				return digits ? val : -2;
			}
		}
		if (!eol)
			break;
		p = eol + 1;
	}
	return -1;
}

/*
 * For stream transports: length of the first complete message in buf,
 * 0 if more bytes are needed, -1 if it can never be framed (no
 * Content-Length, or over the limit).
 */
long
sip_frame_length(const char *buf, size_t len, size_t limit)
{
	size_t		h = header_end(buf, len);
	long		cl;

	if (h == 0)
		return len > limit ? -1 : 0;
	cl = content_length(buf, h);
	if (cl < 0 || (size_t) cl + h > limit)
		return -1;
	if (h + (size_t) cl > len)
		return 0;
	return (long) (h + cl);
}

/*
 * The next message on a stream (TCP): CR/LF keep-alive pings (RFC 5626)
 * before it are counted in *skip; then as sip_frame_length().
 */
long
sip_stream_next(const char *buf, size_t len, size_t limit, size_t *skip)
{
	size_t		k = 0;

	while (k < len && (buf[k] == '\r' || buf[k] == '\n'))
		k++;
	*skip = k;
	return sip_frame_length(buf + k, len - k, limit);
}

/*
 * A GB/T 28181 SSRC (10 digits, GB/T 28181-2016 annex on the SSRC): the
 * first 0 for a live stream, 1 for a recorded one (Playback, Download);
 * then digits 4-8 of the domain code (3402000000 -> 20000); then a
 * four-digit sequence.  False when the realm is not a 10-digit domain code.
 */
bool
sip_ssrc(const char *realm, bool history, unsigned int seq, char out[11])
{
	if (realm == NULL || strlen(realm) != 10 || strspn(realm, "0123456789") != 10)
		return false;
	snprintf(out, 11, "%c%.5s%04u", history ? '1' : '0', realm + 3, seq % 10000);
	return true;
}

/* "REGISTER sip:..." or "SIP/2.0 200 OK": a token of letters, then a space */
static bool
plausible_start_line(const char *buf, size_t len)
{
	size_t		i = 0;

	if (len >= 8 && memcmp(buf, "SIP/2.0 ", 8) == 0)
		return true;
	while (i < len && i < 32 && isupper((unsigned char) buf[i]))
		i++;
	return i > 0 && i < len && buf[i] == ' ';
}

static void
header_value(osip_message_t *m, const char *name, char *dst, size_t dstlen)
{
	osip_header_t *h = NULL;

	dst[0] = '\0';
	if (osip_message_header_get_byname(m, name, 0, &h) >= 0 && h && h->hvalue)
		copy_bounded(dst, dstlen, h->hvalue);
}

SipParseStatus
sip_parse(const char *buf, size_t len, size_t limit, SipIn *in)
{
	size_t		h;
	long		cl;
	osip_generic_param_t *tag = NULL;
	char		tmp[32];

	memset(in, 0, sizeof(*in));
	in->expires = -1;
	if (len > limit)
	{
		snprintf(in->why, sizeof(in->why), "message of %zu bytes is over the %zu-byte limit", len, limit);
		return SIPP_TOO_LARGE;
	}
	if (!plausible_start_line(buf, len))
	{
		snprintf(in->why, sizeof(in->why), "no SIP start line");
		return SIPP_MALFORMED;
	}
	h = header_end(buf, len);
	if (h == 0)
	{
		snprintf(in->why, sizeof(in->why), "header block not terminated");
		return SIPP_MALFORMED;
	}
	cl = content_length(buf, h);
	if (cl == -2 || (cl >= 0 && (size_t) cl > len - h))
	{
		snprintf(in->why, sizeof(in->why), "Content-Length does not match the %zu body bytes", len - h);
		return SIPP_BAD_LENGTH;
	}
	in->raw = buf;
	in->raw_hlen = h;
	in->body = buf + h;
	in->body_len = cl >= 0 ? (size_t) cl : len - h;

	if (osip_message_init(&in->msg) != 0)
		return SIPP_MALFORMED;
	if (osip_message_parse(in->msg, buf, h + in->body_len) != 0)
	{
		snprintf(in->why, sizeof(in->why), "libosip2 could not parse the message");
		sip_in_free(in);
		return SIPP_MALFORMED;
	}
	in->is_request = MSG_IS_REQUEST(in->msg);
	in->method = in->msg->sip_method;
	in->status = in->msg->status_code;
	if (in->is_request && (in->method == NULL || in->msg->req_uri == NULL))
	{
		snprintf(in->why, sizeof(in->why), "request without method or Request-URI");
		return SIPP_MISSING_HEADER;
	}
	if (osip_list_size(&in->msg->vias) == 0 || in->msg->from == NULL || in->msg->to == NULL ||
		in->msg->call_id == NULL || in->msg->cseq == NULL ||
		in->msg->cseq->number == NULL || in->msg->cseq->method == NULL)
	{
		snprintf(in->why, sizeof(in->why), "missing Via, From, To, Call-ID or CSeq");
		return SIPP_MISSING_HEADER;
	}
	if (in->msg->call_id->number == NULL)
	{
		snprintf(in->why, sizeof(in->why), "empty Call-ID");
		return SIPP_MISSING_HEADER;
	}
	snprintf(in->call_id, sizeof(in->call_id), "%s%s%s", in->msg->call_id->number,
			 in->msg->call_id->host ? "@" : "", in->msg->call_id->host ? in->msg->call_id->host : "");
	if (strlen(in->msg->cseq->number) > 10)
	{
		snprintf(in->why, sizeof(in->why), "CSeq number too long");
		return SIPP_MISSING_HEADER;
	}
	in->cseq = (unsigned int) strtoul(in->msg->cseq->number, NULL, 10);
	copy_bounded(in->cseq_method, sizeof(in->cseq_method), in->msg->cseq->method);
	if (in->msg->from->url)
	{
		copy_bounded(in->from_user, sizeof(in->from_user), in->msg->from->url->username);
		copy_bounded(in->from_host, sizeof(in->from_host), in->msg->from->url->host);
	}
	if (osip_from_get_tag(in->msg->from, &tag) >= 0 && tag && tag->gvalue)
		copy_bounded(in->from_tag, sizeof(in->from_tag), tag->gvalue);
	if (in->msg->to->url)
		copy_bounded(in->to_user, sizeof(in->to_user), in->msg->to->url->username);
	tag = NULL;
	if (osip_to_get_tag(in->msg->to, &tag) >= 0 && tag && tag->gvalue)
		copy_bounded(in->to_tag, sizeof(in->to_tag), tag->gvalue);
	if (in->is_request)
	{
		/* the Request-URI as sent, for the digest uri check */
		const char *sp = memchr(buf, ' ', h);
		const char *eol = sp ? memchr(sp + 1, '\n', h - (size_t) (sp + 1 - buf)) : NULL;
		const char *sp2 = NULL;

		for (const char *q = sp ? sp + 1 : NULL; q && q < (eol ? eol : buf + h); q++)
			if (*q == ' ')
				sp2 = q;
		if (sp && sp2 && (size_t) (sp2 - sp - 1) < sizeof(in->req_uri))
			snprintf(in->req_uri, sizeof(in->req_uri), "%.*s", (int) (sp2 - sp - 1), sp + 1);
		copy_bounded(in->uri_user, sizeof(in->uri_user), in->msg->req_uri->username);
		copy_bounded(in->uri_host, sizeof(in->uri_host), in->msg->req_uri->host);
	}

	header_value(in->msg, "expires", tmp, sizeof(tmp));
	if (tmp[0])
		in->expires = (strspn(tmp, "0123456789 ") == strlen(tmp) && strlen(tmp) <= 9) ? atol(tmp) : -2;
	else
	{
		osip_contact_t *c = NULL;
		osip_generic_param_t *e = NULL;

		if (osip_message_get_contact(in->msg, 0, &c) >= 0 && c &&
			osip_contact_param_get_byname(c, "expires", &e) >= 0 && e && e->gvalue)
			in->expires = (strspn(e->gvalue, "0123456789") == strlen(e->gvalue) && strlen(e->gvalue) <= 9) ?
				atol(e->gvalue) : -2;
	}
	header_value(in->msg, "event", in->event, sizeof(in->event));
	if (in->event[0] == '\0')
		header_value(in->msg, "o", in->event, sizeof(in->event));
	in->event[strcspn(in->event, "; \t")] = '\0';
	{
		osip_header_t *ua = NULL;

		/* device text: UTF-8 (converted from GB18030 if need be), else left out */
		if (osip_message_header_get_byname(in->msg, "user-agent", 0, &ua) >= 0 && ua && ua->hvalue &&
			!text_to_utf8(ua->hvalue, strlen(ua->hvalue), in->user_agent, sizeof(in->user_agent)))
			in->user_agent_refused = true;
	}
	if (in->msg->content_type && in->msg->content_type->type)
		snprintf(in->content_type, sizeof(in->content_type), "%s/%s", in->msg->content_type->type,
				 in->msg->content_type->subtype ? in->msg->content_type->subtype : "");
	return SIPP_OK;
}

void
sip_in_free(SipIn *in)
{
	if (in->msg)
		osip_message_free(in->msg);
	in->msg = NULL;
}

/* enough of the request survived to address an answer to it */
bool
sip_answerable(const SipIn *in)
{
	/* the fast path took only messages with all of these (sip_fastpath.c) */
	if (in->fast)
		return in->is_request && in->raw != NULL;
	return in->msg && in->is_request && osip_list_size(&in->msg->vias) > 0 &&
		in->msg->from && in->msg->to && in->msg->call_id && in->msg->call_id->number &&
		in->msg->cseq && in->msg->cseq->number && in->msg->cseq->method;
}

/*
 * An answer to a request: Via (with received/rport filled in, RFC 3581),
 * From, To (with our tag), Call-ID and CSeq copied, then extra headers
 * (CRLF-terminated lines) and the body.
 */
bool
sip_response(const SipIn *in, int code, const char *reason, const char *to_tag,
			 const char *src_ip, int src_port, const char *extra_headers,
			 const char *content_type, const char *body, SBuf *out)
{
	osip_message_t *r = NULL;
	char	   *str = NULL;
	size_t		len = 0;
	char	   *hend;
	int			pos = 0;
	osip_via_t *via;
	bool		ok = false;

	if (!sip_answerable(in) || osip_message_init(&r) != 0)
		return false;
	osip_message_set_version(r, osip_strdup("SIP/2.0"));
	osip_message_set_status_code(r, code);
	osip_message_set_reason_phrase(r, osip_strdup(reason));
	while (!osip_list_eol(&in->msg->vias, pos))
	{
		osip_via_t *copy = NULL;

		via = osip_list_get(&in->msg->vias, pos);
		if (osip_via_clone(via, &copy) != 0)
			goto done;
		if (pos == 0 && src_ip)
		{
			osip_generic_param_t *rport = NULL;

			osip_via_set_received(copy, osip_strdup(src_ip));
			if (osip_via_param_get_byname(copy, "rport", &rport) >= 0 && rport)
			{
				char		p[8];

				snprintf(p, sizeof(p), "%d", src_port);
				osip_free(rport->gvalue);
				rport->gvalue = osip_strdup(p);
			}
		}
		osip_list_add(&r->vias, copy, -1);
		pos++;
	}
	if (osip_from_clone(in->msg->from, &r->from) != 0 || osip_to_clone(in->msg->to, &r->to) != 0 ||
		osip_call_id_clone(in->msg->call_id, &r->call_id) != 0 || osip_cseq_clone(in->msg->cseq, &r->cseq) != 0)
		goto done;
	if (to_tag && in->to_tag[0] == '\0')
		osip_to_set_tag(r->to, osip_strdup(to_tag));
	osip_message_set_header(r, "User-Agent", "vms");
	if (body && content_type)
	{
		osip_message_set_content_type(r, content_type);
		osip_message_set_body(r, body, strlen(body));
	}
	if (osip_message_to_str(r, &str, &len) != 0)
		goto done;
	/* our extra header lines go at the end of the header block */
	hend = strstr(str, "\r\n\r\n");
	if (hend == NULL)
		goto done;
	sbuf_reset(out);
	sbuf_append(out, str, hend - str + 2);
	if (extra_headers)
		sbuf_puts(out, extra_headers);
	sbuf_append(out, hend + 2, len - (hend + 2 - str));
	ok = !out->overflow;
done:
	osip_free(str);
	osip_message_free(r);
	return ok;
}

/*
 * A body-less answer built from the request's own header lines: Via (the
 * first with received and rport filled in, RFC 3581), From, To (with our
 * tag), Call-ID and CSeq copied as they came, continuation lines included.
 * The request was parsed and checked by sip_parse() first; this only saves
 * libosip2's rebuilding of headers that are sent back unchanged, which is
 * most of the cost of answering a keepalive.
 */
typedef enum
{
	H_OTHER, H_VIA, H_FROM, H_TO, H_CALLID, H_CSEQ
} HeaderKind;

static HeaderKind
header_kind(const char *name, size_t n)
{
	if ((n == 3 && strncasecmp(name, "Via", 3) == 0) || (n == 1 && (*name == 'v' || *name == 'V')))
		return H_VIA;
	if ((n == 4 && strncasecmp(name, "From", 4) == 0) || (n == 1 && (*name == 'f' || *name == 'F')))
		return H_FROM;
	if ((n == 2 && strncasecmp(name, "To", 2) == 0) || (n == 1 && (*name == 't' || *name == 'T')))
		return H_TO;
	if ((n == 7 && strncasecmp(name, "Call-ID", 7) == 0) || (n == 1 && (*name == 'i' || *name == 'I')))
		return H_CALLID;
	if (n == 4 && strncasecmp(name, "CSeq", 4) == 0)
		return H_CSEQ;
	return H_OTHER;
}

/* a number in decimal, without printf: answers are built for every keepalive */
static void
append_uint(SBuf *out, unsigned int v)
{
	char		d[12];
	int			k = sizeof(d);

	do
	{
		d[--k] = (char) ('0' + v % 10);
		v /= 10;
	} while (v > 0);
	sbuf_append(out, d + k, sizeof(d) - k);
}

/* the first Via value with ;received and a filled-in ;rport */
static void
append_top_via(SBuf *out, const char *v, size_t n, const char *ip, int port)
{
	size_t		end = 0;
	bool		quoted = false;
	const char *r = NULL;

	while (end < n && (quoted || v[end] != ','))
	{
		if (v[end] == '"')
			quoted = !quoted;
		end++;
	}
	/* an ;rport without a value gets the source port */
	for (size_t i = 0; i + 6 <= end; i++)
		if (v[i] == ';' && strncasecmp(v + i + 1, "rport", 5) == 0 &&
			(i + 6 == end || v[i + 6] == ';' || v[i + 6] == ' ' || v[i + 6] == '\r'))
		{
			r = v + i + 6;
			break;
		}
	if (r)
	{
		sbuf_append(out, v, r - v);
		sbuf_append(out, "=", 1);
		append_uint(out, (unsigned int) port);
		sbuf_append(out, r, (v + end) - r);
	}
	else
		sbuf_append(out, v, end);
	sbuf_puts(out, ";received=");
	sbuf_puts(out, ip);
	sbuf_append(out, v + end, n - end);
}

bool
sip_answer_text(const SipIn *in, int code, const char *reason, const char *to_tag,
				const char *src_ip, int src_port, const char *extra_headers, SBuf *out)
{
	const char *p = in->raw;
	const char *end = in->raw + in->raw_hlen;
	bool		first_via = true;
	HeaderKind	current = H_OTHER;
	bool		seen[6] = {false};

	if (!sip_answerable(in) || in->raw == NULL)
		return false;
	sbuf_reset(out);
	sbuf_puts(out, "SIP/2.0 ");
	append_uint(out, (unsigned int) code);
	sbuf_append(out, " ", 1);
	sbuf_puts(out, reason);
	sbuf_append(out, "\r\n", 2);
	/* skip the request line */
	while (p < end && *p != '\n')
		p++;
	p++;
	while (p < end)
	{
		const char *eol = memchr(p, '\n', end - p);
		size_t		len = eol ? (size_t) (eol - p) : (size_t) (end - p);
		size_t		vlen = len;

		if (vlen > 0 && p[vlen - 1] == '\r')
			vlen--;
		if (vlen == 0)
			break;				/* the blank line */
		if (*p == ' ' || *p == '\t')
		{
			/* a continuation belongs to the header before it */
			if (current != H_OTHER)
			{
				sbuf_append(out, p, vlen);
				sbuf_append(out, "\r\n", 2);
			}
		}
		else
		{
			const char *colon = memchr(p, ':', vlen);
			size_t		nlen;

			current = H_OTHER;
			if (colon)
			{
				nlen = colon - p;
				while (nlen > 0 && (p[nlen - 1] == ' ' || p[nlen - 1] == '\t'))
					nlen--;
				current = header_kind(p, nlen);
			}
			if (current == H_VIA && first_via)
			{
				const char *v = colon + 1;

				sbuf_append(out, p, v - p);
				append_top_via(out, v, (p + vlen) - v, src_ip, src_port);
				sbuf_append(out, "\r\n", 2);
				first_via = false;
			}
			else if (current == H_TO && to_tag && in->to_tag[0] == '\0' && !seen[H_TO])
			{
				sbuf_append(out, p, vlen);
				sbuf_puts(out, ";tag=");
				sbuf_puts(out, to_tag);
				sbuf_append(out, "\r\n", 2);
			}
			else if (current != H_OTHER && (current == H_VIA || !seen[current]))
			{
				sbuf_append(out, p, vlen);
				sbuf_append(out, "\r\n", 2);
			}
			seen[current] = true;
		}
		if (!eol)
			break;
		p = eol + 1;
	}
	sbuf_puts(out, "User-Agent: vms\r\n");
	if (extra_headers)
		sbuf_puts(out, extra_headers);
	sbuf_puts(out, "Content-Length: 0\r\n\r\n");
	return !out->overflow;
}
