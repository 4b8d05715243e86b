/*
 * viid_http.c — request checks of the GA/T 1400 server that need no
 * database (see viid_http.h).  No PostgreSQL calls, no allocation.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "viid_http.h"

static const char *const system_posts[] = {
	"/VIID/System/Register", "/VIID/System/UnRegister", "/VIID/System/Keepalive", NULL
};
static const char *const object_posts[] = {
	"/VIID/MotorVehicles", "/VIID/NonMotorVehicles", "/VIID/Persons", "/VIID/Faces", "/VIID/Images", NULL
};

static const char *const directory_gets[] = {
	"/VIID/APEs", "/VIID/Tollgates", "/VIID/Lanes", NULL
};

static bool
in_list(const char *path, const char *const *list)
{
	for (int i = 0; list[i]; i++)
		if (strcmp(path, list[i]) == 0)
			return true;
	return false;
}

ViidRoute
viid_route(const char *method, const char *path)
{
	bool		post,
				get;

	if (method == NULL || path == NULL)
		return VIID_ROUTE_UNKNOWN;
	for (const char *p = path; *p; p++)
		if ((unsigned char) *p < 0x20 || *p == 0x7f || *p == '\\')
			return VIID_ROUTE_TRAVERSAL;
	if (strstr(path, "..") || strstr(path, "//") || strstr(path, "%2e") || strstr(path, "%2E"))
		return VIID_ROUTE_TRAVERSAL;
	post = strcmp(method, "POST") == 0;
	get = strcmp(method, "GET") == 0;
	if (in_list(path, system_posts))
		return post ? VIID_ROUTE_SYSTEM_POST : VIID_ROUTE_BAD_METHOD;
	if (in_list(path, object_posts))
		return post ? VIID_ROUTE_OBJECTS : VIID_ROUTE_BAD_METHOD;
	if (in_list(path, directory_gets))
		return get ? VIID_ROUTE_DIRECTORY : VIID_ROUTE_BAD_METHOD;
	if (strcmp(path, "/VIID/Subscribes") == 0)
		return post || strcmp(method, "PUT") == 0 || strcmp(method, "DELETE") == 0 ?
			VIID_ROUTE_SUBSCRIBES : VIID_ROUTE_BAD_METHOD;
	if (strcmp(path, "/VIID/System/Time") == 0)
		return get ? VIID_ROUTE_TIME : VIID_ROUTE_BAD_METHOD;
	return VIID_ROUTE_UNKNOWN;
}

const char *
viid_route_reason(ViidRoute r)
{
	switch (r)
	{
		case VIID_ROUTE_TRAVERSAL:
			return "path traversal or control characters in the path";
		case VIID_ROUTE_BAD_METHOD:
			return "method not allowed on this resource";
		case VIID_ROUTE_UNKNOWN:
			return "unknown resource";
		default:
			return "OK";
	}
}

bool
viid_json_content_type(const char *value)
{
	size_t		n;

	if (value == NULL)
		return false;
	while (*value == ' ' || *value == '\t')
		value++;
	n = strcspn(value, "; \t");
	return (n == strlen("application/VIID+JSON") && strncasecmp(value, "application/VIID+JSON", n) == 0) ||
		(n == strlen("application/json") && strncasecmp(value, "application/json", n) == 0);
}

bool
viid_bucket_take(ViidBucket *b, int rate, int64_t now_us)
{
	if (rate <= 0)
		return true;
	if (b->at_us == 0)
		b->tokens = rate;
	else if (now_us > b->at_us)
	{
		b->tokens += (double) (now_us - b->at_us) * rate / 1000000.0;
		if (b->tokens > rate)
			b->tokens = rate;
	}
	b->at_us = now_us;
	if (b->tokens < 1.0)
		return false;
	b->tokens -= 1.0;
	return true;
}

bool
viid_hex16(const char *hex, uint8_t out[16])
{
	if (hex == NULL || strlen(hex) != 32)
		return false;
	for (int i = 0; i < 16; i++)
	{
		int			v = 0;

		for (int j = 0; j < 2; j++)
		{
			char		c = hex[2 * i + j];

			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= c - '0';
			else if (c >= 'a' && c <= 'f')
				v |= c - 'a' + 10;
			else if (c >= 'A' && c <= 'F')
				v |= c - 'A' + 10;
			else
				return false;
		}
		out[i] = (uint8_t) v;
	}
	return true;
}

/*
 * The Authorization header's digest fields, read the way libmicrohttpd
 * 0.9.75 reads them (lookup_sub_value: "Digest " then key=value pairs split
 * at commas, a quoted value ending at the next quote, no escapes, the first
 * pair of a key caselessly), but strictly: anything that version could read
 * differently from this parser (a duplicate key, a backslash, a space or
 * control character inside a bare value, spaces before a key but after a
 * comma) is refused, so that the (nonce, cnonce, nc) remembered after
 * libmicrohttpd accepts a request are the ones it checked.
 */
static bool
key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		c == '-' || c == '_' || c == '*';
}

static bool
bare_char(char c)
{
	return c > 0x20 && c < 0x7f && c != ',' && c != '"' && c != '\\';
}

typedef struct DigestField
{
	const char *name;
	size_t		offset;			/* in ViidDigest; (size_t) -1: not copied (uri) */
	size_t		max;			/* longest value taken */
} DigestField;

#define F(member, max) offsetof(ViidDigest, member), max
static const DigestField digest_fields[] = {
	{"username", F(username, VIID_DIGEST_MAX_USERNAME)},
	{"realm", F(realm, VIID_DIGEST_MAX_REALM)},
	{"nonce", F(nonce, VIID_DIGEST_MAX_NONCE)},
	{"cnonce", F(cnonce, VIID_DIGEST_MAX_CNONCE)},
	{"response", F(response, VIID_DIGEST_MAX_RESPONSE)},
	{"qop", F(qop, sizeof(((ViidDigest *) 0)->qop) - 1)},
	{"nc", F(nc, sizeof(((ViidDigest *) 0)->nc) - 1)},
	{"uri", (size_t) -1, VIID_DIGEST_MAX_URI},
};
#undef F
#define N_DIGEST_FIELDS (sizeof(digest_fields) / sizeof(digest_fields[0]))

const char *
viid_digest_parse(const char *header, ViidDigest *d)
{
	const char *p;
	bool		seen[N_DIGEST_FIELDS] = {false};
	int			params = 0;

	memset(d, 0, sizeof(*d));
	if (header == NULL)
		return "digest authentication required";
	if (strncmp(header, "Digest ", 7) != 0)
		return "the Authorization header is not HTTP Digest";
	p = header + 7;
	for (;;)
	{
		const char *key = p,
				   *value;
		size_t		keylen,
					len;
		int			f;

		if (++params > VIID_DIGEST_MAX_PARAMS)
			return "digest Authorization: too many fields";
		while (key_char(*p))
			p++;
		keylen = p - key;
		if (keylen == 0 || *p != '=')
			return "digest Authorization: malformed (a field is not key=value)";
		p++;
		while (*p == ' ')
			p++;
		if (*p == '"')
		{
			value = ++p;
			while (*p && *p != '"')
			{
				if ((unsigned char) *p < 0x20 || *p == 0x7f || *p == '\\')
					return "digest Authorization: a control character or backslash in a quoted value";
				p++;
			}
			if (*p != '"')
				return "digest Authorization: malformed (a quoted value has no end)";
			len = p - value;
			p++;
			while (*p == ' ')
				p++;
		}
		else
		{
			value = p;
			while (bare_char(*p))
				p++;
			len = p - value;
			if (len == 0)
				return "digest Authorization: malformed (an empty bare value)";
		}
		if (*p != ',' && *p != '\0')
			return "digest Authorization: malformed (junk after a value)";
		for (f = 0; f < (int) N_DIGEST_FIELDS; f++)
			if (strlen(digest_fields[f].name) == keylen && strncasecmp(key, digest_fields[f].name, keylen) == 0)
				break;
		if (f < (int) N_DIGEST_FIELDS)
		{
			if (seen[f])
				return "digest Authorization: a field is given twice";
			seen[f] = true;
			if (len > digest_fields[f].max)
				return "digest Authorization: a field is too long";
			if (digest_fields[f].offset != (size_t) -1)
				memcpy((char *) d + digest_fields[f].offset, value, len);	/* d is zeroed: terminated */
			else
				d->uri_len = len;
		}
		if (*p == '\0')
			break;
		p++;					/* the comma */
		while (*p == ' ')
			p++;
	}
	for (int f = 0; f < (int) N_DIGEST_FIELDS; f++)
		if (!seen[f] || (digest_fields[f].offset != (size_t) -1 &&
						 ((char *) d + digest_fields[f].offset)[0] == '\0') ||
			(digest_fields[f].offset == (size_t) -1 && d->uri_len == 0))
			return "digest Authorization: username, realm, nonce, uri, response, qop, nc and cnonce are all required";
	if (strcmp(d->qop, "auth") != 0)
		return "digest Authorization: qop must be auth";
	if (strlen(d->nc) != 8)
		return "digest Authorization: nc must be exactly 8 hex digits";
	d->nc_value = 0;
	for (int i = 0; i < 8; i++)
	{
		char		c = d->nc[i];
		int			v;

		if (c >= '0' && c <= '9')
			v = c - '0';
		else if (c >= 'a' && c <= 'f')
			v = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v = c - 'A' + 10;
		else
			return "digest Authorization: nc must be exactly 8 hex digits";
		d->nc_value = (d->nc_value << 4) | (uint32_t) v;
	}
	if (d->nc_value == 0)
		return "digest Authorization: nc 00000000 is not a nonce count (counts start at 1)";
	return NULL;
}
