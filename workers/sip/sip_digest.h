/*
 * sip_digest.h — HTTP Digest for SIP REGISTER (RFC 2617 / RFC 7616): MD5 as
 * GB/T 28181-2016 uses, SHA-256 where the device offers it.  Nonces are
 * stateless: a timestamp, a sequence number and an HMAC of both and of
 * what the nonce is bound to (the device code and the address and
 * transport the challenge went to) under a per-process secret, so a
 * challenge costs no memory, a nonce is worthless to any other device or
 * address, and a restarted worker simply re-challenges.  The caller keeps,
 * per device, the sequence number and nonce count last accepted, which
 * makes each (nonce, nc) good for one REGISTER.  Plain C with OpenSSL.
 */
#ifndef VMS_SIP_DIGEST_H
#define VMS_SIP_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define DIGEST_NONCE_LEN 48

typedef enum DigestAlg
{
	DIGEST_MD5,
	DIGEST_SHA256
} DigestAlg;

typedef enum NonceCheck
{
	NONCE_OK,
	NONCE_STALE,
	NONCE_BAD
} NonceCheck;

extern void digest_init_secret(void);
extern void digest_make_nonce(time_t now, const char *bind, char out[DIGEST_NONCE_LEN + 1]);
extern NonceCheck digest_check_nonce(const char *nonce, const char *bind, time_t now, int max_age_s,
									 unsigned long *seq);
extern bool digest_parse_nc(const char *nc, unsigned long *out);
extern bool digest_alg_from_name(const char *name, DigestAlg *alg);
extern void digest_ha1(DigestAlg alg, const char *user, const char *realm, const char *password, char *out, size_t outlen);
extern bool digest_verify(DigestAlg alg, const char *ha1_hex, const char *nonce, const char *nc,
						  const char *cnonce, const char *qop, const char *method, const char *uri,
						  const char *response);
extern void digest_response(DigestAlg alg, const char *ha1_hex, const char *nonce, const char *nc,
							const char *cnonce, const char *qop, const char *method, const char *uri,
							char *out, size_t outlen);

#endif
