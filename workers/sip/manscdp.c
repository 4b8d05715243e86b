/*
 * manscdp.c — MANSCDP XML → JSON (see manscdp.h).
 *
 * A body is read as UTF-8 when it is valid UTF-8 and as GB18030 otherwise,
 * whatever its declaration says: devices declare GB2312 and send UTF-8, or
 * declare GB2312 and send GBK/GB18030 characters; GB18030 is a superset of
 * both.
 */
#include "manscdp.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/dict.h>
#include <libxml/tree.h>

#define MANSCDP_MAX_TEXT 4096
/*
 * The parser context is reused between bodies (its buffers and name
 * dictionary are what make a keepalive cheap), but every new element name
 * stays in the dictionary, and libxml2 refuses new names once it holds 10
 * MB: bodies full of made-up names would end all parsing.  Past this many
 * names the context is replaced.
 */
#define MANSCDP_DICT_NAMES 50000

static xmlParserCtxtPtr ctxt = NULL;

/* after a body: the context goes when its dictionary is full of names (freed with its documents) */
static void
retire_context(bool retire)
{
	if (retire && ctxt)
	{
		xmlFreeParserCtxt(ctxt);
		ctxt = NULL;
	}
}

static void
quiet_errors(void *ctx, const char *msg,...)
{
	(void) ctx;
	(void) msg;
}

static void
init_once(void)
{
	static bool done = false;

	if (!done)
	{
		xmlInitParser();
		xmlSetGenericErrorFunc(NULL, quiet_errors);
		done = true;
	}
}

bool
manscdp_is_utf8(const char *s, size_t len)
{
	return text_is_utf8(s, len);
}

/* "<!" starts only comments and CDATA in MANSCDP; DOCTYPE/ENTITY are refused */
static bool
has_declarations(const char *s, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++)
	{
		if (s[i] != '<' || s[i + 1] != '!')
			continue;
		if (i + 3 < len && s[i + 2] == '-' && s[i + 3] == '-')
			continue;
		if (i + 8 < len && memcmp(s + i + 2, "[CDATA[", 7) == 0)
			continue;
		return true;
	}
	return false;
}

static void
copy_trimmed(char *dst, size_t dstlen, const char *src)
{
	size_t		n;

	while (*src && isspace((unsigned char) *src))
		src++;
	n = strlen(src);
	while (n > 0 && isspace((unsigned char) src[n - 1]))
		n--;
	if (n >= dstlen)
	{
		n = dstlen - 1;
		/* never cut a UTF-8 character in two */
		while (n > 0 && (((unsigned char) src[n]) & 0xC0) == 0x80)
			n--;
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static bool
all_digits(const char *s, size_t n)
{
	if (strlen(s) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char) s[i]))
			return false;
	return true;
}

static bool
has_element_children(xmlNode *n)
{
	for (xmlNode *c = n->children; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE)
			return true;
	return false;
}

/* a list: an element with a Num attribute, or whose children are all <Item> */
static bool
is_list(xmlNode *n)
{
	bool		any = false;

	if (xmlHasProp(n, (const xmlChar *) "Num"))
		return true;
	for (xmlNode *c = n->children; c; c = c->next)
	{
		if (c->type != XML_ELEMENT_NODE)
			continue;
		if (strcmp((const char *) c->name, "Item") != 0)
			return false;
		any = true;
	}
	return any;
}

static void
leaf_text(SBuf *b, xmlNode *n)
{
	xmlChar    *t = xmlNodeGetContent(n);
	char		text[MANSCDP_MAX_TEXT];

	copy_trimmed(text, sizeof(text), t ? (const char *) t : "");
	sbuf_json_string(b, text);
	xmlFree(t);
}

static ManscdpStatus to_json(SBuf *b, xmlNode *n, int depth, Manscdp *m, bool collect);

/* an element's element children as "key": value pairs of an object */
static ManscdpStatus
object_json(SBuf *b, xmlNode *n, int depth, Manscdp *m, bool collect)
{
	bool		first = true;

	if (depth > MANSCDP_MAX_DEPTH)
		return MANSCDP_TOO_DEEP;
	sbuf_append(b, "{", 1);
	for (xmlNode *c = n->children; c; c = c->next)
	{
		ManscdpStatus st;

		if (c->type != XML_ELEMENT_NODE)
			continue;
		if (!first)
			sbuf_append(b, ",", 1);
		first = false;
		sbuf_json_string(b, (const char *) c->name);
		sbuf_append(b, ":", 1);
		st = to_json(b, c, depth + 1, m, collect);
		if (st != MANSCDP_OK)
			return st;
	}
	sbuf_append(b, "}", 1);
	return MANSCDP_OK;
}

static ManscdpStatus
to_json(SBuf *b, xmlNode *n, int depth, Manscdp *m, bool collect)
{
	if (depth > MANSCDP_MAX_DEPTH)
		return MANSCDP_TOO_DEEP;
	if (is_list(n))
	{
		bool		first = true;
		/* the first list of the document holds the items a query pages */
		bool		mine = collect && m->items == NULL;

		if (mine)
		{
			m->items = calloc(MANSCDP_MAX_ITEMS, sizeof(ManscdpItem));
			if (m->items == NULL)
				return MANSCDP_TOO_LARGE;
		}
		sbuf_append(b, "[", 1);
		for (xmlNode *c = n->children; c; c = c->next)
		{
			ManscdpStatus st;
			size_t		start;

			if (c->type != XML_ELEMENT_NODE)
				continue;
			if (!first)
				sbuf_append(b, ",", 1);
			first = false;
			start = b->len;
			st = has_element_children(c) ? object_json(b, c, depth + 1, m, false) : (leaf_text(b, c), MANSCDP_OK);
			if (st != MANSCDP_OK)
				return st;
			if (mine && !b->overflow)
			{
				ManscdpItem *it;

				if (m->nitems >= MANSCDP_MAX_ITEMS)
					return MANSCDP_TOO_MANY_ITEMS;
				it = &m->items[m->nitems];
				it->json = strndup(b->data + start, b->len - start);
				if (it->json == NULL)
					return MANSCDP_TOO_LARGE;
				for (xmlNode *f = c->children; f; f = f->next)
					if (f->type == XML_ELEMENT_NODE && strcmp((const char *) f->name, "DeviceID") == 0)
					{
						xmlChar    *t = xmlNodeGetContent(f);

						copy_trimmed(it->device_id, sizeof(it->device_id), t ? (const char *) t : "");
						xmlFree(t);
					}
				m->nitems++;
			}
		}
		sbuf_append(b, "]", 1);
		return MANSCDP_OK;
	}
	if (has_element_children(n))
		return object_json(b, n, depth, m, collect);
	leaf_text(b, n);
	return MANSCDP_OK;
}

static void
field(xmlNode *root, const char *name, char *dst, size_t dstlen)
{
	dst[0] = '\0';
	for (xmlNode *c = root->children; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE && strcmp((const char *) c->name, name) == 0)
		{
			xmlChar    *t = xmlNodeGetContent(c);

			copy_trimmed(dst, dstlen, t ? (const char *) t : "");
			xmlFree(t);
			return;
		}
}

/*
 * A request (Control, Query) must be unambiguous: what the worker reads of
 * it (field() takes the first of a name) is what SQL reads of its JSON
 * (jsonb keeps the last) and what a device would.  The first element named
 * twice at the top level, or a CmdType, SN or DeviceID below it, into
 * m->repeated.  Past MANSCDP_MAX_TOP elements at the top it is refused too
 * (no request has that many; the pairwise check stays cheap).  A Response
 * (a device's answer relayed to an upper platform) is checked at the top
 * level only: its items have DeviceIDs of their own.
 */
#define MANSCDP_MAX_TOP 200

static void
nested_ids(xmlNode *n, int depth, Manscdp *m)
{
	for (xmlNode *c = n->children; c && !m->repeated[0] && depth <= MANSCDP_MAX_DEPTH; c = c->next)
	{
		if (c->type != XML_ELEMENT_NODE)
			continue;
		if (xmlStrEqual(c->name, (const xmlChar *) "CmdType") || xmlStrEqual(c->name, (const xmlChar *) "SN") ||
			xmlStrEqual(c->name, (const xmlChar *) "DeviceID"))
			snprintf(m->repeated, sizeof(m->repeated), "<%s> nested", (const char *) c->name);
		else
			nested_ids(c, depth + 1, m);
	}
}

static void
check_repeated(xmlNode *root, Manscdp *m, bool nested)
{
	int			n = 0;

	for (xmlNode *c = root->children; c && !m->repeated[0]; c = c->next)
	{
		if (c->type != XML_ELEMENT_NODE)
			continue;
		if (++n > MANSCDP_MAX_TOP)
		{
			snprintf(m->repeated, sizeof(m->repeated), "more than %d elements", MANSCDP_MAX_TOP);
			return;
		}
		for (xmlNode *o = root->children; o != c; o = o->next)
			if (o->type == XML_ELEMENT_NODE && xmlStrEqual(o->name, c->name))
			{
				snprintf(m->repeated, sizeof(m->repeated), "<%.32s> twice", (const char *) c->name);
				break;
			}
	}
	for (xmlNode *c = root->children; c && nested && !m->repeated[0]; c = c->next)
		if (c->type == XML_ELEMENT_NODE)
			nested_ids(c, 2, m);
}

ManscdpStatus
manscdp_parse(const char *body, size_t len, size_t limit, Manscdp *m)
{
	xmlDoc	   *doc;
	xmlNode    *root;
	ManscdpStatus st;
	char		num[24];
	bool		retire_ctxt = false;
	int			options = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA;

	memset(m, 0, sizeof(*m));
	m->sum_num = -1;
	sbuf_init(&m->json, limit * 2 + 1024);
	if (len > limit || len > (size_t) 0x7fffffff)
		return MANSCDP_TOO_LARGE;
	if (has_declarations(body, len))
		return MANSCDP_DTD;
	init_once();
	m->encoding = manscdp_is_utf8(body, len) ? "UTF-8" : "GB18030";
	/* one parser context, reset for each body: its dictionary and buffers are reused */
	if (ctxt == NULL)
		ctxt = xmlNewParserCtxt();
	if (ctxt == NULL)
		return MANSCDP_TOO_LARGE;
	/* UTF-8 needs no conversion at all, whatever the declaration claims */
	if (strcmp(m->encoding, "UTF-8") == 0)
		doc = xmlCtxtReadMemory(ctxt, body, (int) len, "manscdp.xml", NULL, options | XML_PARSE_IGNORE_ENC);
	else
		doc = xmlCtxtReadMemory(ctxt, body, (int) len, "manscdp.xml", m->encoding, options);
	/* a body that failed may have filled the dictionary all the same */
	if (ctxt->dict && xmlDictSize(ctxt->dict) > MANSCDP_DICT_NAMES)
		retire_ctxt = true;
	if (doc == NULL)
	{
		retire_context(retire_ctxt);
		return MANSCDP_MALFORMED;
	}
	root = xmlDocGetRootElement(doc);
	if (root == NULL)
	{
		xmlFreeDoc(doc);
		retire_context(retire_ctxt);
		return MANSCDP_MALFORMED;
	}
	copy_trimmed(m->root, sizeof(m->root), (const char *) root->name);
	field(root, "CmdType", m->cmd_type, sizeof(m->cmd_type));
	field(root, "SN", m->sn, sizeof(m->sn));
	if (!all_digits(m->sn, strlen(m->sn)) || strlen(m->sn) > 10)
		m->sn[0] = '\0';
	field(root, "DeviceID", m->device_id, sizeof(m->device_id));
	if (!all_digits(m->device_id, 20))
		m->device_id[0] = '\0';
	field(root, "SumNum", num, sizeof(num));
	if (num[0] && strlen(num) <= 9 && all_digits(num, strlen(num)))
		m->sum_num = atol(num);
	if (strcmp(m->root, "Control") == 0 || strcmp(m->root, "Query") == 0)
		check_repeated(root, m, true);
	else if (strcmp(m->root, "Response") == 0)
		check_repeated(root, m, false);

	/* a keepalive needs no JSON: it is the bulk of the traffic */
	if (strcmp(m->root, "Notify") == 0 && strcmp(m->cmd_type, "Keepalive") == 0)
	{
		sbuf_puts(&m->json, "{}");
		st = MANSCDP_OK;
	}
	else
		st = object_json(&m->json, root, 0, m, true);
	xmlFreeDoc(doc);
	retire_context(retire_ctxt);
	if (st == MANSCDP_OK && m->json.overflow)
		st = MANSCDP_TOO_LARGE;
	if (st == MANSCDP_OK && m->cmd_type[0] == '\0')
		st = MANSCDP_NO_CMDTYPE;
	return st;
}

void
manscdp_free(Manscdp *m)
{
	for (int i = 0; i < m->nitems; i++)
		free(m->items[i].json);
	free(m->items);
	m->items = NULL;
	m->nitems = 0;
	sbuf_free(&m->json);
}

const char *
manscdp_status_text(ManscdpStatus s)
{
	switch (s)
	{
		case MANSCDP_OK:
			return "ok";
		case MANSCDP_TOO_LARGE:
			return "body too large";
		case MANSCDP_DTD:
			return "DOCTYPE or ENTITY declarations are not accepted";
		case MANSCDP_MALFORMED:
			return "malformed XML";
		case MANSCDP_TOO_DEEP:
			return "XML nested too deeply";
		case MANSCDP_NO_CMDTYPE:
			return "no CmdType";
		case MANSCDP_TOO_MANY_ITEMS:
			return "too many items";
	}
	return "?";
}
