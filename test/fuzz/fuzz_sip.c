/*
 * fuzz_sip.c — libFuzzer target for everything a device's bytes reach
 * before the database: SIP framing and parsing (libosip2 plus our checks),
 * building an answer, the digest Authorization path, and MANSCDP XML
 * (libxml2 with DTDs refused, encoding detection, JSON conversion).
 *
 *   make -C test/fuzz run    (see test/fuzz/Makefile)
 */
#include <stdint.h>
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
		sip_msg_init();
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

			(void) digest_check_nonce(auth->nonce, 1700000000, 300);
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

	/* the same bytes as a MANSCDP body */
	(void) manscdp_parse(buf, size, 65535, &m);
	manscdp_free(&m);
	free(buf);
	return 0;
}
