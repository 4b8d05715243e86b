/*
 * fuzz_sip_fastpath.c — differential libFuzzer target for the keepalive
 * fast path (workers/sip/sip_fastpath.c).  On every input: whenever the
 * fast path accepts, the full path (libosip2's sip_parse, then libxml2's
 * manscdp_parse, as the worker runs them) must accept too, with a Notify
 * Keepalive, every field of SipIn and Manscdp the same, and the same bytes
 * in the answers built from each (200 OK and a 403 with an extra header).
 * Any difference aborts.  The reverse is not required: a message the fast
 * path refuses is parsed in full by the worker.
 *
 *   make -C test/fuzz run    (see test/fuzz/Makefile)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manscdp.h"
#include "sip_fastpath.h"
#include "sip_msg.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LIMIT 65535

static void
differ(const char *what, const char *fast, const char *full)
{
	fprintf(stderr, "fast path and full path differ in %s: fast \"%s\", full \"%s\"\n", what, fast, full);
	abort();
}

static void
same_str(const char *what, const char *a, const char *b)
{
	if (strcmp(a ? a : "(null)", b ? b : "(null)") != 0)
		differ(what, a ? a : "(null)", b ? b : "(null)");
}

static void
same_long(const char *what, long a, long b)
{
	if (a != b)
	{
		char		x[32],
					y[32];

		snprintf(x, sizeof(x), "%ld", a);
		snprintf(y, sizeof(y), "%ld", b);
		differ(what, x, y);
	}
}

static void
same_answer(const SipIn *fast, const SipIn *full, int code, const char *reason, const char *extra)
{
	SBuf		a,
				b;
	bool		oka,
				okb;

	sbuf_init(&a, 1 << 20);
	sbuf_init(&b, 1 << 20);
	oka = sip_answer_text(fast, code, reason, "vms1234abcd", "127.0.0.1", 5060, extra, &a);
	okb = sip_answer_text(full, code, reason, "vms1234abcd", "127.0.0.1", 5060, extra, &b);
	same_long("answer built", oka, okb);
	if (!oka)
		differ("answer", "(none)", "(none)");
	if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
		differ("answer bytes", a.data, b.data);
	sbuf_free(&a);
	sbuf_free(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int	initialised = 0;
	char	   *buf;
	SipIn		fast,
				full;
	Manscdp		fm,
				m;
	SipParseStatus st;
	ManscdpStatus ms;

	if (!initialised)
	{
		char		err[512];

		if (!sip_msg_init(err, sizeof(err)))
		{
			fprintf(stderr, "%s\n", err);
			abort();
		}
		initialised = 1;
	}
	if (size > 200000)
		return 0;
	/* the worker hands parsers a NUL-terminated copy of each datagram */
	buf = malloc(size + 1);
	memcpy(buf, data, size);
	buf[size] = '\0';

	if (!sip_fastpath_keepalive(buf, size, LIMIT, &fast, &fm))
	{
		free(buf);
		return 0;
	}
	if (fast.msg != NULL || !fast.fast)
		differ("fast flag", "set", "not set");

	st = sip_parse(buf, size, LIMIT, &full);
	if (st != SIPP_OK)
		differ("SIP verdict", "ok", full.why);
	same_long("is_request", fast.is_request, full.is_request);
	same_str("method", fast.method, full.method);
	same_long("status", fast.status, full.status);
	same_str("Call-ID", fast.call_id, full.call_id);
	same_long("CSeq", fast.cseq, full.cseq);
	same_str("CSeq method", fast.cseq_method, full.cseq_method);
	same_str("From user", fast.from_user, full.from_user);
	same_str("From host", fast.from_host, full.from_host);
	same_str("From tag", fast.from_tag, full.from_tag);
	same_str("To user", fast.to_user, full.to_user);
	same_str("To tag", fast.to_tag, full.to_tag);
	same_str("Request-URI user", fast.uri_user, full.uri_user);
	same_str("Request-URI host", fast.uri_host, full.uri_host);
	same_long("expires", fast.expires, full.expires);
	same_str("Event", fast.event, full.event);
	same_str("User-Agent", fast.user_agent, full.user_agent);
	same_long("User-Agent refused", fast.user_agent_refused, full.user_agent_refused);
	same_str("Request-URI", fast.req_uri, full.req_uri);
	same_str("Content-Type", fast.content_type, full.content_type);
	same_long("raw", (long) (fast.raw - buf), (long) (full.raw - buf));
	same_long("header length", (long) fast.raw_hlen, (long) full.raw_hlen);
	same_long("body", (long) (fast.body - buf), (long) (full.body - buf));
	same_long("body length", (long) fast.body_len, (long) full.body_len);
	same_str("why", fast.why, full.why);
	/* the Via a 200 goes back to: the same count, libosip2 found exactly one */
	same_long("Via count", 1, osip_list_size(&full.msg->vias));

	/* the worker answers with the request's own lines: byte for byte the same */
	same_answer(&fast, &full, 200, "OK", NULL);
	same_answer(&fast, &full, 403, "Register Again", "Date: 2026-01-01T00:00:00.000\r\n");

	if (full.body_len == 0)
		differ("body", "present", "empty");
	ms = manscdp_parse(full.body, full.body_len, LIMIT, &m);
	if (ms != MANSCDP_OK)
		differ("MANSCDP verdict", "ok", manscdp_status_text(ms));
	same_str("root", fm.root, m.root);
	same_str("CmdType", fm.cmd_type, m.cmd_type);
	if (strcmp(m.root, "Notify") != 0 || strcmp(m.cmd_type, "Keepalive") != 0)
		differ("kind", "Notify Keepalive", m.cmd_type);
	same_str("SN", fm.sn, m.sn);
	same_str("DeviceID", fm.device_id, m.device_id);
	same_long("SumNum", fm.sum_num, m.sum_num);
	same_str("encoding", fm.encoding, m.encoding);
	same_str("JSON", fm.json.data, m.json.data);
	same_long("items", fm.nitems, m.nitems);

	manscdp_free(&m);
	manscdp_free(&fm);
	sip_in_free(&full);
	sip_in_free(&fast);
	free(buf);
	return 0;
}
