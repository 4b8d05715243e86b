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
