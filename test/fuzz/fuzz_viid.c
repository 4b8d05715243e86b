/*
 * fuzz_viid.c — libFuzzer target for what a GA/T 1400 client's bytes reach
 * in the viid-server worker before the database: libmicrohttpd's HTTP
 * parsing (request line, headers, chunked and Content-Length bodies,
 * pipelining), its digest Authorization parsing and checking, and our
 * checks (viid_http.c: route and path traversal, Content-Type, rate
 * bucket, the digest header's fields read before libmicrohttpd's check:
 * the username both read must be the same), with the worker's suspend /
 * answer / resume cycle.  Each input
 * is one TCP stream: it goes into a socketpair handed to an in-process
 * daemon (no listening socket, driven by MHD_run as the worker drives it).
 * The documents themselves are parsed by PostgreSQL's jsonb in
 * vms._viid_server_request, not here.
 *
 *   make -C test/fuzz run    (see test/fuzz/Makefile)
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "viid_http.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REALM "vms"
#define CLIENT "34020000002000000001"
#define MAX_BODY (64 * 1024)

typedef struct Req
{
	struct MHD_Connection *conn;
	char	   *body;
	size_t		len;
	int			fail;
	int			answered;
	struct Req *next;
} Req;

static struct MHD_Daemon *daemon_;
static uint8_t ha1[16];
static ViidBucket bucket;
static Req *queue;
static int64_t fake_now;

static enum MHD_Result
reply(struct MHD_Connection *c, int status, const char *body)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *) body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/VIID+JSON;charset=UTF-8");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result
challenge(struct MHD_Connection *c, int stale)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(2, (void *) "{}", MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret = MHD_queue_auth_fail_response2(c, REALM, "opaque", r, stale, MHD_DIGEST_ALG_MD5);

	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method, const char *version,
		   const char *upload, size_t *upload_size, void **con_cls)
{
	Req		   *r = *con_cls;

	if (r == NULL)
	{
		ViidRoute route = viid_route(method, url);
		char	   *user;
		int			ok;
		const char *clen,
				   *ident,
				   *auth;
		ViidDigest	d;

		r = calloc(1, sizeof(Req));
		r->conn = c;
		*con_cls = r;
		if (route == VIID_ROUTE_UNKNOWN || route == VIID_ROUTE_TRAVERSAL)
			return reply(c, 404, viid_route_reason(route));
		if (route == VIID_ROUTE_BAD_METHOD)
			return reply(c, 405, viid_route_reason(route));
		if (strcmp(method, "POST") == 0 &&
			!viid_json_content_type(MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE)))
			return reply(c, 415, "Content-Type");
		clen = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (clen && strtoull(clen, NULL, 10) > MAX_BODY)
			return reply(c, 413, "too large");
		/* as the worker: a header viid_digest_parse refuses never reaches libmicrohttpd's check */
		auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
		if (auth && viid_digest_parse(auth, &d) != NULL)
			return challenge(c, MHD_NO);
		user = MHD_digest_auth_get_username(c);
		/* what it passes, libmicrohttpd reads the same way */
		if (auth && (user == NULL || strcmp(user, d.username) != 0))
			abort();
		ident = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "User-Identify");
		if (user)
		{
			ok = strcmp(user, CLIENT) == 0 ?
				MHD_digest_auth_check_digest2(c, REALM, user, ha1, sizeof(ha1), 300, MHD_DIGEST_ALG_MD5) : MHD_NO;
			MHD_free(user);
		}
		/*
		 * A nonce is random and timed, so no input can carry a valid digest:
		 * an input that names the client in User-Identify and sends no
		 * Authorization passes as authenticated, to reach the body paths.
		 */
		else if (ident && strcmp(ident, CLIENT) == 0)
			ok = MHD_YES;
		else
			return challenge(c, MHD_NO);
		if (ok != MHD_YES)
			return challenge(c, ok == MHD_INVALID_NONCE ? MHD_YES : MHD_NO);
		fake_now += 1000;
		if (!viid_bucket_take(&bucket, 5, fake_now))
			return reply(c, 429, "rate");
		return MHD_YES;
	}
	if (r->answered)
		return reply(c, 200, "{\"ResponseStatusListObject\": {\"ResponseStatusObject\": []}}");
	if (*upload_size)
	{
		if (!r->fail && r->len + *upload_size <= MAX_BODY)
		{
			r->body = realloc(r->body, r->len + *upload_size + 1);
			memcpy(r->body + r->len, upload, *upload_size);
			r->len += *upload_size;
			r->body[r->len] = '\0';
		}
		else
			r->fail = 1;
		*upload_size = 0;
		return MHD_YES;
	}
	if (r->fail)
		return reply(c, 413, "too large");
	r->next = queue;
	queue = r;
	MHD_suspend_connection(c);
	return MHD_YES;
}

static void
on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	Req		   *r = *con_cls;

	if (r)
	{
		free(r->body);
		free(r);
	}
	*con_cls = NULL;
}

static void
quiet(void *cls, const char *fmt, va_list ap)
{
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int			sv[2];
	struct sockaddr_in peer;
	size_t		off = 0;
	char		sink[65536];
	int			closed = 0;

	if (daemon_ == NULL)
	{
		static char random[32] = "fuzz-viid-server-digest-random!";

		/* HA1 of CLIENT:vms:pw, as vms.viid_client_add stores it */
		if (!viid_hex16("e8d3b4458731885c75480ece1c4e7866", ha1))
			abort();
		daemon_ = MHD_start_daemon(MHD_USE_NO_LISTEN_SOCKET | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
								   0, NULL, NULL, on_request, NULL,
								   MHD_OPTION_EXTERNAL_LOGGER, quiet, NULL,
								   MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) (64 * 1024),
								   MHD_OPTION_DIGEST_AUTH_RANDOM, sizeof(random), random,
								   MHD_OPTION_NONCE_NC_SIZE, (unsigned int) 64,
								   MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
								   MHD_OPTION_END);
		if (daemon_ == NULL)
			abort();
	}
	if (size > 200000)
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		return 0;
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	memset(&peer, 0, sizeof(peer));
	peer.sin_family = AF_INET;
	peer.sin_addr.s_addr = htonl(0x7f000001);
	if (MHD_add_connection(daemon_, sv[0], (struct sockaddr *) &peer, sizeof(peer)) != MHD_YES)
	{
		close(sv[1]);
		return 0;
	}
	for (int round = 0; round < 400 && !closed; round++)
	{
		ssize_t		n;

		if (off < size)
		{
			n = write(sv[1], data + off, size - off);
			if (n > 0)
				off += n;
			if (off == size)
				shutdown(sv[1], SHUT_WR);
		}
		else if (size == 0 && round == 0)
			shutdown(sv[1], SHUT_WR);
		MHD_run(daemon_);
		/* the worker answers what is complete after MHD_run, then resumes */
		while (queue)
		{
			Req		   *r = queue;

			queue = r->next;
			r->answered = 1;
			MHD_resume_connection(r->conn);
		}
		MHD_run(daemon_);
		while ((n = read(sv[1], sink, sizeof(sink))) > 0)
			;
		if (n == 0)
			closed = 1;
	}
	close(sv[1]);
	/* let the daemon notice the closed peer and free the connection */
	for (int i = 0; i < 4; i++)
		MHD_run(daemon_);
	return 0;
}
