/*
 * fuzz_sip.c — libFuzzer target for everything a device's bytes reach
 * before the database: SIP framing and parsing (libosip2 plus our checks),
 * building an answer, the digest Authorization path, and MANSCDP XML
 * (libxml2 with DTDs refused, encoding detection, JSON conversion).  The
 * input is also read as a TCP stream, the way the worker's read loop
 * frames it (keep-alive CR/LFs, header end, Content-Length; CRLF and
 * LF-only messages mixed), each frame parsed like a message; and as device
 * text (UTF-8 or GB18030) going into JSON.
 *
 *   make -C test/fuzz run    (see test/fuzz/Makefile)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manscdp.h"
#include "sip_digest.h"
#include "sip_msg.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int	initialised = 0;
	char	   *buf;
	SipIn		in;
	Manscdp		m;

	if (!initialised)
	{
		char		err[512];

		if (!sip_msg_init(err, sizeof(err)))
		{
			fprintf(stderr, "%s\n", err);
			abort();
		}
		digest_init_secret();
		initialised = 1;
	}
	if (size > 200000)
		return 0;
	/* the worker hands parsers a NUL-terminated copy of each datagram */
	buf = malloc(size + 1);
	memcpy(buf, data, size);
	buf[size] = '\0';

	(void) sip_frame_length(buf, size, 65535);
	if (sip_parse(buf, size, 65535, &in) == SIPP_OK)
	{
		SBuf		out;
		osip_authorization_t *auth = NULL;

		sbuf_init(&out, 1 << 20);
		(void) sip_is_gbcode(in.from_user);
		(void) sip_response(&in, 401, "Unauthorized", "vmstag", "127.0.0.1", 5060,
							"WWW-Authenticate: Digest realm=\"3402000000\", nonce=\"x\"\r\n", NULL, NULL, &out);
		(void) sip_answer_text(&in, 200, "OK", "vmstag", "127.0.0.1", 5060, "Expires: 60\r\n", &out);
		if (osip_message_get_authorization(in.msg, 0, &auth) >= 0 && auth)
		{
			DigestAlg	alg;

			unsigned long seq,
						count;

			(void) digest_check_nonce(auth->nonce, "34020000001320000001|UDP|127.0.0.1|5060", 1700000000, 300, &seq);
			(void) digest_parse_nc(auth->nonce_count, &count);
			if (digest_alg_from_name(auth->algorithm, &alg))
				(void) digest_verify(alg, "0123456789abcdef0123456789abcdef", auth->nonce, auth->nonce_count,
									 auth->cnonce, auth->message_qop, "REGISTER", auth->uri, auth->response);
		}
		if (in.body_len > 0)
		{
			(void) manscdp_parse(in.body, in.body_len, 65535, &m);
			manscdp_free(&m);
		}
		sbuf_free(&out);
	}
	sip_in_free(&in);

	/* the same bytes as a TCP stream: frames one after another, as read_conn() takes them */
	{
		size_t		off = 0;

		while (off < size)
		{
			size_t		skip = 0;
			long		n = sip_stream_next(buf + off, size - off, 65535, &skip);
			char	   *frame;

			if (n <= 0)
				break;
			/* a frame lies within what was read, and is not empty */
			if ((size_t) n > size - off - skip)
				abort();
			frame = malloc((size_t) n + 1);
			memcpy(frame, buf + off + skip, (size_t) n);
			frame[n] = '\0';
			if (sip_parse(frame, (size_t) n, 65535, &in) == SIPP_OK && in.body_len > 0)
			{
				(void) manscdp_parse(in.body, in.body_len, 65535, &m);
				manscdp_free(&m);
			}
			sip_in_free(&in);
			free(frame);
			off += skip + (size_t) n;
		}
	}

	/* the same bytes as device text: stored only as valid UTF-8, cut at a character boundary */
	{
		char		text[64];
		SBuf		j;

		if (text_to_utf8(buf, size, text, sizeof(text)) && !text_is_utf8(text, strlen(text)))
			abort();
		sbuf_init(&j, 1 << 20);
		sbuf_json_string(&j, buf);
		if (!j.overflow && !text_is_utf8(j.data, j.len))
			abort();
		sbuf_free(&j);
	}

	/* the same bytes as a MANSCDP body */
	(void) manscdp_parse(buf, size, 65535, &m);
	manscdp_free(&m);
	free(buf);
	return 0;
}
