/*
 * sip_control.c — device control, configuration, one-answer queries and
 * RecordInfo (issue 17); see sip_control.h.
 *
 * A request waits in a Pending slot from its start until its outcome is
 * queued for the database: at the MESSAGE's 2xx when no Response is
 * expected (PTZCmd, TeleBoot), else at the Response with the same SN and
 * CmdType (its Result other than OK fails the request with the device's
 * words, in SQL), or for RecordInfo when SumNum records arrived.  Pages
 * that stop coming (vms.sip_page_timeout) end a RecordInfo query as
 * partial; no answer within vms.sip_catalog_timeout is a timeout; a final
 * SIP error or no final answer to the MESSAGE fails it at once.
 *
 * Every few seconds SQL (vms._media_sessions_lapsed) lets go the viewers of
 * media sessions (vms.view_live, vms.playback, vms.download) who no longer
 * hold the right (the grant expired or was revoked), releases the viewers of
 * sessions that ended, failed or timed out, and queues a BYE for each open
 * session left without viewers, which the queue then sends.
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "manscdp.h"
#include "sip_control.h"
#include "sip_core.h"
#include "sip_db.h"
#include "../worker_tx.h"

#define MAX_PENDING 1024
#define MAX_RECORDS_BYTES ((size_t) 64 << 20)

typedef enum CtlKind
{
	CK_CONTROL, CK_QUERY, CK_RECORDS
} CtlKind;

typedef struct Pending
{
	bool		used;
	int64		request_id;
	CtlKind		kind;
	bool		answer;			/* a Response is expected */
	char		dev[21];
	char		cmd[32];
	char		sn[16];
	long		sum_num;
	int			received;
	int			pages;
	HTAB	   *seen;			/* RecordInfo: items already counted (hash of their JSON) */
	SBuf		items;
	TimestampTz deadline;
	TimestampTz last_page;
} Pending;

static Pending pending[MAX_PENDING];
static uint32 next_sn;

bool
sip_control_kind(const char *kind)
{
	return strcmp(kind, "device_control") == 0 || strcmp(kind, "device_query") == 0 ||
		strcmp(kind, "record_info") == 0;
}

/* a string or number member of a JSON object, else NULL */
static bool
is_word(const char *s, size_t max)
{
	size_t		n = s ? strlen(s) : 0;

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z')))
			return false;
	return true;
}

static bool
is_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char) *s >= 0x80)
			return false;
	return true;
}

static void
free_pending(Pending *p)
{
	if (p->seen)
		hash_destroy(p->seen);
	if (p->kind == CK_RECORDS)
		sbuf_free(&p->items);
	p->seen = NULL;
	p->used = false;
}

static Pending *
find_by_request(int64 id)
{
	for (int i = 0; i < MAX_PENDING; i++)
		if (pending[i].used && pending[i].request_id == id)
			return &pending[i];
	return NULL;
}

static char *
progress_json(Pending *p)
{
	return psprintf("{\"sn\":%s,\"received\":%d,\"sum_num\":%ld,\"pages\":%d}", p->sn, p->received, p->sum_num, p->pages);
}

static void
fail(Pending *p, const char *state, const char *error)
{
	sip_request_update(p->request_id, state, p->kind == CK_RECORDS ? progress_json(p) : NULL, NULL, error);
	free_pending(p);
}

/* RecordInfo: what arrived goes to vms._sip_records_result */
static void
finish_records(Pending *p, const char *state, const char *error)
{
	SBuf		b;

	sbuf_init(&b, MAX_RECORDS_BYTES + 4096);
	sbuf_printf(&b, "{\"request\":%lld,\"state\":\"%s\",\"progress\":%s,\"items\":[",
				(long long) p->request_id, state, progress_json(p));
	sbuf_append(&b, p->items.data, p->items.len);
	sbuf_puts(&b, "]");
	if (error)
	{
		sbuf_puts(&b, ",\"error\":");
		sbuf_json_string(&b, error);
	}
	sbuf_puts(&b, "}");
	if (b.overflow)
		sip_request_update(p->request_id, "failed", NULL, NULL, "RecordInfo answer too large");
	else
		sip_db_queue(SIP_SQL_RECORDS_RESULT, p->dev, b.data);
	sbuf_free(&b);
	free_pending(p);
}

char *
sip_control_start(int64 id, Dev *d, const char *kind, const char *params)
{
	char	   *target = sip_json_field(params, "target");
	char	   *root = sip_json_field(params, "root");
	char	   *cmd = sip_json_field(params, "cmd");
	char	   *xml = sip_json_field(params, "xml");
	char	   *answer = sip_json_field(params, "answer");
	Pending    *p = NULL;

	if (target == NULL || !sip_is_gbcode(target) || root == NULL ||
		(strcmp(root, "Control") != 0 && strcmp(root, "Query") != 0) || !is_word(cmd, 31))
	{
		sip_request_update(id, "failed", NULL, NULL, "the request lacks a target, root or CmdType");
		return NULL;
	}
	for (int i = 0; i < MAX_PENDING; i++)
		if (!pending[i].used)
		{
			p = &pending[i];
			break;
		}
	if (p == NULL)
	{
		sip_request_update(id, "failed", NULL, NULL, "too many device controls in flight");
		return NULL;
	}
	if (next_sn == 0)
		next_sn = 100000 + (uint32) (pg_prng_uint64(&pg_global_prng_state) % 800000000);
	memset(p, 0, sizeof(*p));
	p->used = true;
	p->request_id = id;
	p->kind = strcmp(kind, "record_info") == 0 ? CK_RECORDS :
		strcmp(kind, "device_query") == 0 ? CK_QUERY : CK_CONTROL;
	p->answer = p->kind != CK_CONTROL || (answer && strcmp(answer, "true") == 0);
	strlcpy(p->dev, d->code, sizeof(p->dev));
	strlcpy(p->cmd, cmd, sizeof(p->cmd));
	snprintf(p->sn, sizeof(p->sn), "%u", next_sn++);
	p->sum_num = -1;
	p->deadline = TimestampTzPlusMilliseconds(sip_now, (int64) vms_sip_catalog_timeout * 1000);
	if (p->kind == CK_RECORDS)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(uint64);
		ctl.entrysize = sizeof(uint64);
		ctl.hcxt = vms_worker_cxt;
		p->seen = hash_create("vms sip record items", 256, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		sbuf_init(&p->items, MAX_RECORDS_BYTES);
	}
	sip_request_update(id, "sent", psprintf("{\"sn\":%s}", p->sn), NULL, NULL);
	return sip_manscdp_request(root, cmd, p->sn, target, xml);
}

/*
 * A Control/Query body: the command's elements (built by SQL's XML
 * functions, so escaped) wrapped with CmdType, SN and DeviceID.  Also the
 * body of an upper platform's control relayed to a device (sip_upstream.c):
 * its elements rebuilt by vms._sip_upstream_control.  ASCII-only bodies keep
 * the usual GB2312 declaration.
 */
char *
sip_manscdp_request(const char *root, const char *cmd, const char *sn, const char *target, const char *xml)
{
	return psprintf("<?xml version=\"1.0\" encoding=\"%s\"?>\r\n<%s>\r\n<CmdType>%s</CmdType>\r\n<SN>%s</SN>\r\n"
					"<DeviceID>%s</DeviceID>\r\n%s%s</%s>\r\n",
					xml == NULL || is_ascii(xml) ? "GB2312" : "UTF-8", root, cmd, sn, target,
					xml ? xml : "", xml && xml[0] ? "\r\n" : "", root);
}

void
sip_control_sent(int64 id, int status)
{
	Pending    *p = find_by_request(id);

	if (p == NULL)
		return;
	if (status < 0)
		fail(p, "failed", "could not send the MESSAGE");
	else if (status == 0)
	{
		/* no final answer: unless the answer itself came, the device is gone */
		if (p->pages == 0)
			fail(p, "timeout", "no answer to the MESSAGE");
	}
	else if (status >= 300)
		fail(p, "failed", psprintf("device answered %d to the %s MESSAGE", status, p->cmd));
	else if (!p->answer)
	{
		sip_db_queue(SIP_SQL_CONTROL_RESULT, p->dev,
					 psprintf("{\"request\":%lld,\"state\":\"done\",\"answer\":{\"status\":%d}}",
							  (long long) p->request_id, status));
		free_pending(p);
	}
}

bool
sip_control_manscdp(Dev *d, void *arg)
{
	Manscdp    *m = (Manscdp *) arg;
	Pending    *p = NULL;

	if (strcmp(m->root, "Response") != 0 || m->sn[0] == '\0')
		return false;
	for (int i = 0; i < MAX_PENDING; i++)
		if (pending[i].used && strcmp(pending[i].dev, d->code) == 0 && strcmp(pending[i].sn, m->sn) == 0 &&
			strcmp(pending[i].cmd, m->cmd_type) == 0)
		{
			p = &pending[i];
			break;
		}
	if (p == NULL)
		return false;

	if (p->kind != CK_RECORDS)
	{
		sip_db_queue(SIP_SQL_CONTROL_RESULT, p->dev,
					 psprintf("{\"request\":%lld,\"state\":\"done\",\"answer\":%s}", (long long) p->request_id,
							  m->json.data));
		free_pending(p);
		return true;
	}

	if (p->sum_num < 0 && m->sum_num >= 0)
		p->sum_num = m->sum_num;
	p->pages++;
	p->last_page = sip_now;
	for (int i = 0; i < m->nitems; i++)
	{
		uint64		key = hash_bytes_extended((const unsigned char *) m->items[i].json,
											  (int) strlen(m->items[i].json), 17);
		bool		found;

		/* a page sent twice counts once */
		hash_search(p->seen, &key, HASH_ENTER, &found);
		if (found)
			continue;
		if (p->items.len > 0)
			sbuf_append(&p->items, ",", 1);
		sbuf_puts(&p->items, m->items[i].json);
		p->received++;
	}
	if (p->items.overflow)
		fail(p, "failed", "RecordInfo answer too large");
	else if (p->sum_num >= 0 && p->received >= p->sum_num)
		finish_records(p, "done", NULL);
	else
		sip_request_update(p->request_id, "receiving", progress_json(p), NULL, NULL);
	return true;
}

/* every LAPSE_CHECK_MS: viewers whose right lapsed leave, sessions without viewers end (vms._media_sessions_lapsed queues BYEs) */
#define LAPSE_CHECK_MS 5000

static void
check_lapsed_sessions(void)
{
	static TimestampTz next_check;

	if (sip_now < next_check)
		return;
	next_check = TimestampTzPlusMilliseconds(sip_now, LAPSE_CHECK_MS);
	vms_worker_begin_tx("vms sip: media sessions whose right lapsed");
	/* a database still at an older version of vms has no such function */
	if (sip_sql_run(SIP_SQL_MEDIA_LAPSED_READY, NULL, NULL, true, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		bool		isnull;
		Datum		ready = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull && DatumGetBool(ready))
			sip_sql_run(SIP_SQL_MEDIA_LAPSED, NULL, NULL, false, 0);
	}
	vms_worker_end_tx();
}

void
sip_control_tick(void)
{
	check_lapsed_sessions();
	for (int i = 0; i < MAX_PENDING; i++)
	{
		Pending    *p = &pending[i];

		if (!p->used)
			continue;
		if (p->pages > 0 && sip_now >= TimestampTzPlusMilliseconds(p->last_page, (int64) vms_sip_page_timeout * 1000))
			finish_records(p, "partial", psprintf("%d of %ld records arrived; the device stopped sending pages",
												  p->received, p->sum_num));
		else if (p->pages == 0 && sip_now >= p->deadline)
			fail(p, "timeout", psprintf("no %s answer within vms.sip_catalog_timeout", p->cmd));
	}
}

int
sip_control_open(void)
{
	int			n = 0;

	for (int i = 0; i < MAX_PENDING; i++)
		n += pending[i].used;
	return n;
}

bool
sip_control_gb_version(const SipIn *in, Dev *d)
{
	osip_header_t *h = NULL;
	const char *v;
	size_t		n;

	if (in->msg == NULL || osip_message_header_get_byname(in->msg, "X-GB-Ver", 0, &h) < 0 || h == NULL ||
		h->hvalue == NULL)
		v = NULL;
	else
		v = h->hvalue;
	n = v ? strlen(v) : 0;
	if (v && (n == 0 || n > 10 || strspn(v, "0123456789.") != n))
		v = NULL;
	/* a REGISTER without the header (or with a malformed one) is a 2016 device: an earlier 3.0 goes */
	sip_db_queue(SIP_SQL_GB_VERSION, d->code,
				 v ? psprintf("{\"version\":\"%s\"}", v) : pstrdup("{\"version\":null}"));
	return v != NULL;
}
