/*
 * crypto.c — the audit chain's digest and the encryption of stored secrets,
 * through OpenSSL.
 *
 * Digest: SM3 (GB/T 32905, required by 密评) when the OpenSSL build has it,
 * SHA-256 otherwise; the name of the one used is returned with it so a
 * chain can be verified with the same algorithm.
 *
 * Secrets (upstream platform passwords, which the protocol needs in clear at
 * use time and so cannot be stored as digests): SM4-GCM when available,
 * AES-256-GCM otherwise, with a key of exactly 32 bytes read from the file
 * named by the superuser-only setting vms.secret_key_file (a file of another
 * length is refused, never cut or padded).  Stored form:
 *   'V2' | alg (1 byte: 1 = SM4-GCM, 2 = AES-256-GCM) | nonce (12) | tag (16) | ciphertext
 * with the context — where the value is stored, "table.column:key", e.g.
 * "viid_upstream.password_enc:district" — as the AEAD's associated data:
 * a value copied to another row or column does not decrypt there.
 *
 * 'V1' (0.1.0) is the same without associated data.  It is still read, so
 * that 0.1.0 values keep working, but never written: the upgrade to 0.2.0
 * re-encrypts them in place when the key is readable, and the tables
 * refuse a V1 value written after that (vms._upstream_secret_check), so
 * a legacy value can only stay in the row it was stored in.
 */
#include "postgres.h"

#include <sys/stat.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "vms.h"

char	   *vms_secret_key_file = NULL;

#define SECRET_NONCE 12
#define SECRET_TAG 16
#define SECRET_HDR (2 + 1 + SECRET_NONCE + SECRET_TAG)
#define SECRET_MAX_PLAIN 4096
#define SECRET_KEY 32
#define SECRET_MAX_CONTEXT 1024

static const EVP_MD *
chain_md(const char **name)
{
	static const EVP_MD *md = NULL;
	static const char *mdname = NULL;

	if (md == NULL)
	{
		md = EVP_MD_fetch(NULL, "SM3", NULL);
		mdname = "sm3";
		if (md == NULL)
		{
			md = EVP_sha256();
			mdname = "sha256";
		}
	}
	*name = mdname;
	return md;
}

/* vms.chain_digest(data bytea) → bytea, vms.chain_digest_name() → text */
PG_FUNCTION_INFO_V1(vms_chain_digest);
Datum
vms_chain_digest(PG_FUNCTION_ARGS)
{
	bytea	   *data = PG_GETARG_BYTEA_PP(0);
	const char *name;
	const EVP_MD *md = chain_md(&name);
	unsigned char out[EVP_MAX_MD_SIZE];
	unsigned int outlen = 0;
	bytea	   *result;

	if (!EVP_Digest(VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data), out, &outlen, md, NULL))
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("%s digest failed", name)));
	result = palloc(VARHDRSZ + outlen);
	SET_VARSIZE(result, VARHDRSZ + outlen);
	memcpy(VARDATA(result), out, outlen);
	PG_RETURN_BYTEA_P(result);
}

PG_FUNCTION_INFO_V1(vms_chain_digest_name);
Datum
vms_chain_digest_name(PG_FUNCTION_ARGS)
{
	const char *name;

	chain_md(&name);
	PG_RETURN_TEXT_P(cstring_to_text(name));
}

/* SM4-GCM is fetched once per process (NULL where this OpenSSL lacks it) */
static const EVP_CIPHER *
sm4_gcm(void)
{
	static bool fetched = false;
	static EVP_CIPHER *c = NULL;

	if (!fetched)
	{
		c = EVP_CIPHER_fetch(NULL, "SM4-GCM", NULL);
		fetched = true;
	}
	return c;
}

static const EVP_CIPHER *
secret_cipher(int alg)
{
	if (alg == 1)
		return sm4_gcm();
	if (alg == 2)
		return EVP_aes_256_gcm();
	return NULL;
}

static int
preferred_alg(void)
{
	return sm4_gcm() ? 1 : 2;
}

/* Read the 32-byte key; the file must hold exactly that and not be readable by others. */
static void
load_key(unsigned char *key)
{
	FILE	   *f;
	struct stat st;
	size_t		n;
	unsigned char extra;

	if (vms_secret_key_file == NULL || vms_secret_key_file[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("vms.secret_key_file is not set"),
				 errdetail("Secrets are encrypted with a key kept outside the database."),
				 errhint("Create a file of 32 random bytes readable only by the server (head -c 32 /dev/urandom > key; chmod 600 key) and set vms.secret_key_file to its path.")));
	f = AllocateFile(vms_secret_key_file, PG_BINARY_R);
	if (f == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open secret key file \"%s\": %m", vms_secret_key_file)));
	if (fstat(fileno(f), &st) != 0)
	{
		FreeFile(f);
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat secret key file \"%s\": %m", vms_secret_key_file)));
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
	{
		FreeFile(f);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("secret key file \"%s\" is readable by others", vms_secret_key_file),
				 errhint("chmod 600 the file.")));
	}
	n = fread(key, 1, SECRET_KEY, f);
	if (n == SECRET_KEY && fread(&extra, 1, 1, f) == 1)
		n++;					/* longer than a key: refused, not cut */
	FreeFile(f);
	if (n != SECRET_KEY)
	{
		explicit_bzero(key, SECRET_KEY);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("secret key file \"%s\" must hold exactly %d bytes", vms_secret_key_file, SECRET_KEY),
				 errdetail("It holds %lld bytes.", (long long) st.st_size),
				 errhint("The key is 32 random bytes, not text: head -c 32 /dev/urandom > key; chmod 600 key.")));
	}
}

/* the context a value is bound to (AEAD associated data) */
static const char *
context_arg(FunctionCallInfo fcinfo, int argno, int *len)
{
	text	   *t;

	/* the 0.1.0 SQL functions have no context argument: the empty one */
	if (PG_NARGS() <= argno)
	{
		*len = 0;
		return "";
	}
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the context of a secret must not be null"),
				 errhint("Name where the value is stored, as \"table.column:key\".")));
	t = PG_GETARG_TEXT_PP(argno);
	*len = VARSIZE_ANY_EXHDR(t);
	if (*len > SECRET_MAX_CONTEXT)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the context of a secret is longer than %d bytes", SECRET_MAX_CONTEXT)));
	return VARDATA_ANY(t);
}

static void
cipher_failed(EVP_CIPHER_CTX *ctx, unsigned char *key, const char *msg)
{
	if (ctx)
		EVP_CIPHER_CTX_free(ctx);
	explicit_bzero(key, 32);
	ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("%s", msg)));
}

/*
 * vms.secret_encrypt(plain text, context text DEFAULT '') → bytea (V2).
 * Called with one argument (the 0.1.0 SQL function), it writes the 0.1.0
 * form (V1) that the 0.1.0 functions read; the upgrade re-encrypts those.
 */
PG_FUNCTION_INFO_V1(vms_secret_encrypt);
Datum
vms_secret_encrypt(PG_FUNCTION_ARGS)
{
	text	   *plain = PG_GETARG_TEXT_PP(0);
	int			plen = VARSIZE_ANY_EXHDR(plain);
	bool		legacy = PG_NARGS() < 2;
	int			clen;
	const char *context = context_arg(fcinfo, 1, &clen);
	unsigned char key[32];
	int			alg = preferred_alg();
	const EVP_CIPHER *cipher = secret_cipher(alg);
	EVP_CIPHER_CTX *ctx;
	bytea	   *out;
	unsigned char *p;
	int			len,
				total = 0;

	if (plen > SECRET_MAX_PLAIN)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("secret is longer than %d bytes", SECRET_MAX_PLAIN)));
	load_key(key);
	out = palloc0(VARHDRSZ + SECRET_HDR + plen + 16);
	p = (unsigned char *) VARDATA(out);
	p[0] = 'V';
	p[1] = legacy ? '1' : '2';
	p[2] = (unsigned char) alg;
	if (RAND_bytes(p + 3, SECRET_NONCE) != 1)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not generate a nonce")));

	ctx = EVP_CIPHER_CTX_new();
	if (!ctx ||
		EVP_EncryptInit_ex(ctx, cipher, NULL, NULL, NULL) != 1 ||
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SECRET_NONCE, NULL) != 1 ||
		EVP_EncryptInit_ex(ctx, NULL, NULL, key, p + 3) != 1 ||
		(!legacy && EVP_EncryptUpdate(ctx, NULL, &len, (const unsigned char *) context, clen) != 1) ||
		EVP_EncryptUpdate(ctx, p + SECRET_HDR, &len, (unsigned char *) VARDATA_ANY(plain), plen) != 1)
		cipher_failed(ctx, key, "secret encryption failed");
	total = len;
	if (EVP_EncryptFinal_ex(ctx, p + SECRET_HDR + total, &len) != 1 ||
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SECRET_TAG, p + 3 + SECRET_NONCE) != 1)
		cipher_failed(ctx, key, "secret encryption failed");
	total += len;
	EVP_CIPHER_CTX_free(ctx);
	explicit_bzero(key, sizeof(key));
	SET_VARSIZE(out, VARHDRSZ + SECRET_HDR + total);
	PG_RETURN_BYTEA_P(out);
}

/*
 * Decrypt for C callers (workers) and the superuser-only SQL function:
 * context is where the value was read from ("table.column:key", clen bytes);
 * a V2 value decrypts only there.
 */
char *
vms_secret_decrypt_bytes(const unsigned char *p, int n, const char *context, int clen)
{
	unsigned char key[32];
	const EVP_CIPHER *cipher;
	EVP_CIPHER_CTX *ctx;
	char	   *plain;
	int			len,
				total;
	bool		legacy;

	if (n < SECRET_HDR || p[0] != 'V' || (p[1] != '1' && p[1] != '2') || (cipher = secret_cipher(p[2])) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("stored secret is not in vms secret format")));
	legacy = p[1] == '1';
	load_key(key);
	plain = palloc(n - SECRET_HDR + 1);
	ctx = EVP_CIPHER_CTX_new();
	if (!ctx ||
		EVP_DecryptInit_ex(ctx, cipher, NULL, NULL, NULL) != 1 ||
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SECRET_NONCE, NULL) != 1 ||
		EVP_DecryptInit_ex(ctx, NULL, NULL, key, p + 3) != 1 ||
		(!legacy && EVP_DecryptUpdate(ctx, NULL, &len, (const unsigned char *) context, clen) != 1) ||
		EVP_DecryptUpdate(ctx, (unsigned char *) plain, &len, p + SECRET_HDR, n - SECRET_HDR) != 1 ||
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SECRET_TAG, (void *) (p + 3 + SECRET_NONCE)) != 1)
		cipher_failed(ctx, key, "secret decryption failed");
	total = len;
	if (EVP_DecryptFinal_ex(ctx, (unsigned char *) plain + total, &len) != 1)
	{
		EVP_CIPHER_CTX_free(ctx);
		explicit_bzero(key, sizeof(key));
		explicit_bzero(plain, n - SECRET_HDR + 1);	/* unauthenticated plaintext */
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("stored secret does not decrypt with the current key"),
				 legacy || clen == 0 ? 0 :
				 errdetail("It was read as \"%.*s\"; a secret decrypts only in the row and column it was stored for.",
						   clen, context),
				 errhint("The key file was changed, the value was altered, or it was copied from elsewhere.")));
	}
	total += len;
	EVP_CIPHER_CTX_free(ctx);
	explicit_bzero(key, sizeof(key));
	plain[total] = '\0';
	return plain;
}

/* vms.secret_decrypt(secret bytea, context text DEFAULT '') → text: superusers only (workers call the C API) */
PG_FUNCTION_INFO_V1(vms_secret_decrypt);
Datum
vms_secret_decrypt(PG_FUNCTION_ARGS)
{
	bytea	   *data = PG_GETARG_BYTEA_PP(0);
	int			clen;
	const char *context;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to decrypt a stored secret"),
				 errdetail("Only superusers and vms workers can read secrets in clear.")));
	context = context_arg(fcinfo, 1, &clen);
	PG_RETURN_TEXT_P(cstring_to_text(vms_secret_decrypt_bytes((unsigned char *) VARDATA_ANY(data),
															  VARSIZE_ANY_EXHDR(data), context, clen)));
}

PG_FUNCTION_INFO_V1(vms_secret_algorithm);
Datum
vms_secret_algorithm(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(preferred_alg() == 1 ? "sm4-gcm" : "aes-256-gcm"));
}
