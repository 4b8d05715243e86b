/*
 * viid_http.h — the GA/T 1400 server's request checks that need no
 * database: which resource a path names, whether a Content-Type is one the
 * standard allows, and the per-client request rate.  Plain C with no
 * PostgreSQL calls, so the worker's libmicrohttpd callbacks (which must not
 * raise an ERROR) and the fuzz target (test/fuzz/fuzz_viid.c) share them.
 */
#ifndef VMS_VIID_HTTP_H
#define VMS_VIID_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* what a request line asks for */
typedef enum ViidRoute
{
	VIID_ROUTE_UNKNOWN = 0,		/* 404 */
	VIID_ROUTE_TRAVERSAL,		/* "..", "//", "\\" or a control character in the path: 404 */
	VIID_ROUTE_BAD_METHOD,		/* a known path with a method it does not take: 405 */
	VIID_ROUTE_SYSTEM_POST,		/* Register, UnRegister, Keepalive */
	VIID_ROUTE_TIME,			/* GET /VIID/System/Time */
	VIID_ROUTE_OBJECTS,			/* POST MotorVehicles, NonMotorVehicles, Persons, Faces, Images */
	VIID_ROUTE_DIRECTORY,		/* GET APEs, Tollgates, Lanes */
	VIID_ROUTE_SUBSCRIBES		/* POST, PUT, DELETE (?IDList=) Subscribes */
} ViidRoute;

extern ViidRoute viid_route(const char *method, const char *path);
extern const char *viid_route_reason(ViidRoute r);

/* application/VIID+JSON or application/json, any parameters, any case */
extern bool viid_json_content_type(const char *value);

/* token bucket: rate tokens a second, a burst of rate */
typedef struct ViidBucket
{
	double		tokens;
	int64_t		at_us;			/* last refill */
} ViidBucket;

extern bool viid_bucket_take(ViidBucket *b, int rate, int64_t now_us);

/* 32 hex digits to 16 bytes; false when it is not that */
extern bool viid_hex16(const char *hex, uint8_t out[16]);

/*
 * The fields of a digest Authorization header, checked before libmicrohttpd
 * sees it: every field present and bounded, qop=auth, nc exactly 8 hex
 * digits and not 0 (libmicrohttpd 0.9.75 takes nc 0 as "a new nonce" and
 * forgets the counts already used, before it checks the response).  The
 * bounds are below libmicrohttpd's own buffers, so it truncates none.
 */
#define VIID_DIGEST_MAX_USERNAME 64
#define VIID_DIGEST_MAX_REALM 255
#define VIID_DIGEST_MAX_NONCE 128
#define VIID_DIGEST_MAX_CNONCE 64
#define VIID_DIGEST_MAX_RESPONSE 64
#define VIID_DIGEST_MAX_URI 16384
#define VIID_DIGEST_MAX_PARAMS 16

typedef struct ViidDigest
{
	char		username[VIID_DIGEST_MAX_USERNAME + 1];
	char		realm[VIID_DIGEST_MAX_REALM + 1];
	char		nonce[VIID_DIGEST_MAX_NONCE + 1];
	char		cnonce[VIID_DIGEST_MAX_CNONCE + 1];
	char		response[VIID_DIGEST_MAX_RESPONSE + 1];
	char		qop[8];
	char		nc[17];
	size_t		uri_len;
	uint32_t	nc_value;
} ViidDigest;

/* NULL when the header passes, else the reason it is refused */
extern const char *viid_digest_parse(const char *header, ViidDigest *d);

#endif
