/*
 * sip_msg.h — SIP messages for the GB/T 28181 worker: framing, parsing with
 * libosip2 plus the checks a hostile peer calls for, and building answers.
 * Plain C (no PostgreSQL), so it builds into the fuzz target as well.
 */
#ifndef VMS_SIP_MSG_H
#define VMS_SIP_MSG_H

#include <stdbool.h>
#include <stddef.h>

#include <osipparser2/osip_parser.h>

#include "sbuf.h"

typedef enum SipParseStatus
{
	SIPP_OK = 0,
	SIPP_TOO_LARGE,				/* over the size limit: 513 */
	SIPP_MALFORMED,				/* not SIP at all, or libosip2 refused it: dropped */
	SIPP_MISSING_HEADER,			/* Via/From/To/Call-ID/CSeq missing: 400 when answerable */
	SIPP_BAD_LENGTH				/* Content-Length disagrees with the datagram: 400 */
} SipParseStatus;

typedef struct SipIn
{
	osip_message_t *msg;
	bool		is_request;
	const char *method;			/* requests */
	int			status;			/* responses */
	char		call_id[128];
	unsigned int cseq;
	char		cseq_method[16];
	char		from_user[48];
	char		from_host[64];
	char		from_tag[64];
	char		to_user[48];
	char		to_tag[64];
	char		uri_user[48];
	char		uri_host[64];
	long		expires;		/* Expires header, else Contact ;expires=, else -1 */
	char		event[64];		/* Event header without parameters */
	char		user_agent[96];	/* UTF-8, cut at a character boundary */
	bool		user_agent_refused; /* neither UTF-8 nor GB18030: left out */
	char		req_uri[256];	/* Request-URI as sent; empty when longer */
	char		content_type[64];
	const char *raw;			/* the message, in the caller's buffer */
	size_t		raw_hlen;		/* its header block, up to the blank line */
	const char *body;			/* points into the caller's buffer */
	size_t		body_len;
	char		why[96];		/* what was wrong, for logs and reason phrases */
	bool		fast;			/* read by sip_fastpath_keepalive(), not libosip2: msg is NULL */
} SipIn;

extern bool sip_msg_init(char *err, size_t errlen);
extern long sip_frame_length(const char *buf, size_t len, size_t limit);
extern long sip_stream_next(const char *buf, size_t len, size_t limit, size_t *skip);
extern bool sip_ssrc(const char *realm, bool history, unsigned int seq, char out[11]);
extern SipParseStatus sip_parse(const char *buf, size_t len, size_t limit, SipIn *in);
extern void sip_in_free(SipIn *in);
extern bool sip_answerable(const SipIn *in);
extern bool sip_response(const SipIn *in, int code, const char *reason, const char *to_tag,
						 const char *src_ip, int src_port, const char *extra_headers,
						 const char *content_type, const char *body, SBuf *out);
extern bool sip_answer_text(const SipIn *in, int code, const char *reason, const char *to_tag,
							const char *src_ip, int src_port, const char *extra_headers, SBuf *out);
extern bool sip_is_gbcode(const char *s);

#endif
