/*
 * sip_digest.c — Digest authentication (see sip_digest.h).
 */
#include "sip_digest.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

static unsigned char secret[32];

void
digest_init_secret(void)
{
	if (RAND_bytes(secret, sizeof(secret)) != 1)
	{
		/* no entropy source: fall back to something still unguessable remotely */
		unsigned long t = (unsigned long) time(NULL) ^ (unsigned long) (size_t) &secret;

		memcpy(secret, &t, sizeof(t));
	}
}

static void
to_hex(const unsigned char *in, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++)
	{
		out[2 * i] = hex[in[i] >> 4];
		out[2 * i + 1] = hex[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static void
nonce_mac(unsigned long stamp, char out[33])
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char		msg[24];

	snprintf(msg, sizeof(msg), "%08lx", stamp);
	HMAC(EVP_sha256(), secret, sizeof(secret), (unsigned char *) msg, strlen(msg), mac, &maclen);
	to_hex(mac, 16, out);
}

void
digest_make_nonce(time_t now, char out[DIGEST_NONCE_LEN + 1])
{
	char		mac[33];

	nonce_mac((unsigned long) now & 0xffffffffUL, mac);
	snprintf(out, DIGEST_NONCE_LEN + 1, "%08lx%s", (unsigned long) now & 0xffffffffUL, mac);
}

NonceCheck
digest_check_nonce(const char *nonce, time_t now, int max_age_s)
{
	char		stamp_hex[9];
	char		mac[33];
	unsigned long stamp;
	char	   *end;

	if (nonce == NULL || strlen(nonce) != DIGEST_NONCE_LEN)
		return NONCE_BAD;
	memcpy(stamp_hex, nonce, 8);
	stamp_hex[8] = '\0';
	stamp = strtoul(stamp_hex, &end, 16);
	if (*end != '\0')
		return NONCE_BAD;
	nonce_mac(stamp, mac);
	if (CRYPTO_memcmp(mac, nonce + 8, 32) != 0)
		return NONCE_BAD;
	if ((long) (((unsigned long) now & 0xffffffffUL) - stamp) > max_age_s ||
		(long) (((unsigned long) now & 0xffffffffUL) - stamp) < -5)
		return NONCE_STALE;
	return NONCE_OK;
}

bool
digest_alg_from_name(const char *name, DigestAlg *alg)
{
	if (name == NULL || name[0] == '\0' || strcasecmp(name, "MD5") == 0)
		*alg = DIGEST_MD5;
	else if (strcasecmp(name, "SHA-256") == 0)
		*alg = DIGEST_SHA256;
	else
		return false;
	return true;
}

static void
hash_hex(DigestAlg alg, const char *s, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	EVP_Digest(s, strlen(s), md, &n, alg == DIGEST_MD5 ? EVP_md5() : EVP_sha256(), NULL);
	to_hex(md, n, out);
}

void
digest_ha1(DigestAlg alg, const char *user, const char *realm, const char *password, char *out, size_t outlen)
{
	char		buf[512];
	char		hex[2 * EVP_MAX_MD_SIZE + 1];

	snprintf(buf, sizeof(buf), "%s:%s:%s", user, realm, password);
	hash_hex(alg, buf, hex);
	snprintf(out, outlen, "%s", hex);
}

/* Strip the quotes libosip2 leaves on quoted-string parameters. */
static const char *
unq(const char *s, char *buf, size_t buflen)
{
	size_t		n;

	if (s == NULL)
		return NULL;
	n = strlen(s);
	if (n >= 2 && s[0] == '"' && s[n - 1] == '"')
	{
		snprintf(buf, buflen, "%.*s", (int) (n - 2), s + 1);
		return buf;
	}
	snprintf(buf, buflen, "%s", s);
	return buf;
}

bool
digest_verify(DigestAlg alg, const char *ha1_hex, const char *nonce, const char *nc,
			  const char *cnonce, const char *qop, const char *method, const char *uri,
			  const char *response)
{
	char		b_nonce[128],
				b_nc[32],
				b_cnonce[128],
				b_qop[32],
				b_uri[256],
				b_resp[128];
	char		ha2[2 * EVP_MAX_MD_SIZE + 1];
	char		expect[2 * EVP_MAX_MD_SIZE + 1];
	char		buf[1024];

	if (!ha1_hex || !nonce || !method || !uri || !response)
		return false;
	nonce = unq(nonce, b_nonce, sizeof(b_nonce));
	uri = unq(uri, b_uri, sizeof(b_uri));
	response = unq(response, b_resp, sizeof(b_resp));
	nc = unq(nc, b_nc, sizeof(b_nc));
	cnonce = unq(cnonce, b_cnonce, sizeof(b_cnonce));
	qop = unq(qop, b_qop, sizeof(b_qop));

	snprintf(buf, sizeof(buf), "%s:%s", method, uri);
	hash_hex(alg, buf, ha2);
	if (qop && qop[0])
	{
		if (strcasecmp(qop, "auth") != 0 || !nc || !cnonce)
			return false;
		snprintf(buf, sizeof(buf), "%s:%s:%s:%s:%s:%s", ha1_hex, nonce, nc, cnonce, qop, ha2);
	}
	else
		snprintf(buf, sizeof(buf), "%s:%s:%s", ha1_hex, nonce, ha2);
	hash_hex(alg, buf, expect);
	/* hex digits may arrive in upper case */
	for (char *p = b_resp; *p; p++)
		if (*p >= 'A' && *p <= 'F')
			*p = *p - 'A' + 'a';
	return strlen(expect) == strlen(response) &&
		CRYPTO_memcmp(expect, response, strlen(expect)) == 0;
}
