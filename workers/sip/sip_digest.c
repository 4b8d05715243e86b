/*
 * sip_digest.c — Digest authentication (see sip_digest.h).
 */
#include "sip_digest.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
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

static unsigned long nonce_seq = 0;

static void
nonce_mac(unsigned long stamp, unsigned long seq, const char *bind, char out[33])
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char		msg[512];

	snprintf(msg, sizeof(msg), "%08lx:%08lx:%s", stamp, seq, bind ? bind : "");
	HMAC(EVP_sha256(), secret, sizeof(secret), (unsigned char *) msg, strlen(msg), mac, &maclen);
	to_hex(mac, 16, out);
}

/* a new nonce for a challenge to `bind` (device code, transport, address): time, sequence, HMAC */
void
digest_make_nonce(time_t now, const char *bind, char out[DIGEST_NONCE_LEN + 1])
{
	char		mac[33];
	unsigned long stamp = (unsigned long) now & 0xffffffffUL;
	unsigned long seq;

	nonce_seq = (nonce_seq + 1) & 0xffffffffUL;
	if (nonce_seq == 0)
		nonce_seq = 1;
	seq = nonce_seq;
	nonce_mac(stamp, seq, bind, mac);
	snprintf(out, DIGEST_NONCE_LEN + 1, "%08lx%08lx%s", stamp, seq, mac);
}

static bool
hex8(const char *s, unsigned long *out)
{
	char		buf[9];
	char	   *end;

	for (int i = 0; i < 8; i++)
		if (!isxdigit((unsigned char) s[i]))
			return false;
	memcpy(buf, s, 8);
	buf[8] = '\0';
	*out = strtoul(buf, &end, 16);
	return *end == '\0';
}

/*
 * A nonce of ours, made for this binding and not too old; *seq receives its
 * sequence number.  Someone else's nonce (another device, address or
 * transport, or a previous worker) is NONCE_BAD.
 */
NonceCheck
digest_check_nonce(const char *nonce, const char *bind, time_t now, int max_age_s, unsigned long *seq)
{
	char		mac[33];
	unsigned long stamp;
	long		age;

	if (nonce == NULL || strlen(nonce) != DIGEST_NONCE_LEN || !hex8(nonce, &stamp) || !hex8(nonce + 8, seq))
		return NONCE_BAD;
	nonce_mac(stamp, *seq, bind, mac);
	if (CRYPTO_memcmp(mac, nonce + 16, 32) != 0)
		return NONCE_BAD;
	age = (long) (((unsigned long) now & 0xffffffffUL) - stamp);
	if (age > max_age_s || age < -5)
		return NONCE_STALE;
	return NONCE_OK;
}

/* nc: exactly 8 hex digits (RFC 7616), not zero */
bool
digest_parse_nc(const char *nc, unsigned long *out)
{
	char		b[16];
	size_t		n;

	if (nc == NULL)
		return false;
	n = strlen(nc);
	if (n == 10 && nc[0] == '"' && nc[9] == '"')
	{
		memcpy(b, nc + 1, 8);
		b[8] = '\0';
		nc = b;
		n = 8;
	}
	return n == 8 && hex8(nc, out) && *out > 0;
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

/*
 * The client side (vms registering to an upper platform): the response for
 * a challenge, as digest_verify() checks it.  qop NULL or empty: without
 * qop (RFC 2069 style), else "auth" with nc and cnonce.
 */
void
digest_response(DigestAlg alg, const char *ha1_hex, const char *nonce, const char *nc, const char *cnonce,
				const char *qop, const char *method, const char *uri, char *out, size_t outlen)
{
	char		ha2[2 * EVP_MAX_MD_SIZE + 1];
	char		hex[2 * EVP_MAX_MD_SIZE + 1];
	char		buf[1024];

	snprintf(buf, sizeof(buf), "%s:%s", method, uri);
	hash_hex(alg, buf, ha2);
	if (qop && qop[0])
		snprintf(buf, sizeof(buf), "%s:%s:%s:%s:%s:%s", ha1_hex, nonce, nc, cnonce, qop, ha2);
	else
		snprintf(buf, sizeof(buf), "%s:%s:%s", ha1_hex, nonce, ha2);
	hash_hex(alg, buf, hex);
	snprintf(out, outlen, "%s", hex);
}
