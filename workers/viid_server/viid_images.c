/*
 * viid_images.c — vms._viid_split_images(body, list_object, item_object,
 * image_kind): the image data of a GA/T 1400 object list, decoded in C
 * before the body becomes jsonb.
 *
 * A list of 100 records with a 20 KB image each is a 2.7 MB body, nearly
 * all of it base64.  Cast to jsonb as it is, every character of it is
 * de-escaped into a buffer one at a time, the jsonb is copied with each
 * record taken out of it, and SQL's decode() reads it once more.  Here
 * PostgreSQL's own JSON parser (common/jsonapi.h, without de-escaping) walks
 * the body once; each image's Data string at the standard place
 *
 *     {List: {Item: [ {..., "SubImageList": {"SubImageInfoObject": [ {..., "Data": "..."} ]}} ]}}
 *     {"ImageListObject": {"ImageObject": [ {..., "Data": "..."} ]}}   (image_kind)
 *
 * (SubImageInfoObject may also be one object) that holds no escape and is
 * valid base64 is decoded (b64_decode) and replaced by "" in the body.
 * The answer: the body so rewritten, and per image its record (1-based),
 * its place in SubImageInfoObject (1-based, 1 for a single object or an
 * ImageObject) and its bytes.  Anything else (escapes, bad base64, other
 * places) stays in the body for the SQL to judge as before.  Should one
 * place or one key of the path to it appear twice (duplicate keys, where
 * jsonb keeps the last), or the body not be JSON, the body comes back
 * unchanged with no image.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/base64.h"	/* pg_b64_dec_len */
#include "common/jsonapi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "../../extension/gbcode.h"

PG_FUNCTION_INFO_V1(vms_viid_split_images);
PG_FUNCTION_INFO_V1(vms_viid_id_ok);
PG_FUNCTION_INFO_V1(vms_viid_ts_ok);

#define SPLIT_MAX_DEPTH 16		/* deeper levels are not followed (no image lies there) */
#define CONDENSE_MIN 64			/* strings this long or longer are condensed (see condense) */

/* one string of the body that the parser sees as "" (see condense) */
typedef struct Span
{
	size_t		at;				/* its opening quote in the condensed text */
	size_t		shift;			/* bytes the condensed text lacks before it */
	size_t		len;			/* its length in the body, quotes included */
	bytea	   *decoded;		/* what b64_decode made of it, NULL if not base64 */
} Span;

enum
{
	TAG_OTHER = 0, TAG_LIST, TAG_ITEM, TAG_SUBIMAGELIST, TAG_SUBINFO, TAG_DATA
};

typedef struct Frame
{
	bool		is_array;
	int			index;			/* array: elements started so far */
	int			tag;			/* object: what the field being parsed is */
	unsigned	seen;			/* object: the tags of its fields so far (bit per tag) */
} Frame;

typedef struct Split
{
	JsonLexContext *lex;
	const char *list_object;
	const char *item_object;
	bool		image_kind;
	Frame		stack[SPLIT_MAX_DEPTH];
	int			depth;
	int			deeper;			/* levels below SPLIT_MAX_DEPTH */
	char	   *pending;		/* a Data string at an image's place starts here */
	int			pending_i,
				pending_j;
	int			last_i,
				last_j;			/* the last image place seen: places must grow */
	bool		give_up;
	StringInfoData out;			/* the body with decoded Data as "" */
	char	   *copied;			/* input copied into out up to here */
	ArrayBuildState *items,
			   *subs,
			   *formats;
	Datum	   *data;			/* the decoded images, copied once into the result */
	int			n_data;
	int			max_data;
	char	   *input;			/* the body */
	Span	   *spans;			/* the condensed strings, in order */
	int			n_spans;
	int			next_span;		/* the first not yet behind the parser */
} Split;

/* as vms._viid_image_format: the format by magic number, NULL when not an image */
static const char *
image_format(const unsigned char *d, int n)
{
	if (n >= 3 && memcmp(d, "\xff\xd8\xff", 3) == 0)
		return "jpeg";
	if (n >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0)
		return "png";
	if (n >= 4 && memcmp(d, "GIF8", 4) == 0)
		return "gif";
	if (n > 26 && memcmp(d, "BM", 2) == 0)
		return "bmp";
	if (n >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0)
		return "webp";
	return NULL;
}

/*
 * Base64 (RFC 4648, padded, no line breaks) decoded four characters at a
 * time: common/base64.c's pg_b64_decode took a sixth of the ingest's time.
 * One table per place in the quantum holds each character's 6 bits already
 * shifted into place, and bit 24 for a character outside the alphabet, so
 * that a quantum is four loads and three ORs (and bad input is seen once,
 * at the end).  Returns the length, or -1 for anything else (spaces,
 * misplaced '=', other characters), which is left in the body for SQL's
 * decode() to judge.  What it accepts, decode() decodes to the same bytes.
 * dst must have room for pg_b64_dec_len(len) bytes.
 */
#define B64_BAD 0x1000000
static uint32 b64_d0[256],
			b64_d1[256],
			b64_d2[256],
			b64_d3[256];
static bool b64_ready = false;

static int
b64_decode(const char *src, int len, char *dst)
{
	const unsigned char *s = (const unsigned char *) src;
	unsigned char *p = (unsigned char *) dst;
	uint32		bad = 0;
	int			pad = 0,
				full;

	if (!b64_ready)
	{
		const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

		for (int i = 0; i < 256; i++)
			b64_d0[i] = b64_d1[i] = b64_d2[i] = b64_d3[i] = B64_BAD;
		for (int i = 0; i < 64; i++)
		{
			unsigned char c = (unsigned char) alphabet[i];

			b64_d0[c] = (uint32) i << 18;
			b64_d1[c] = (uint32) i << 12;
			b64_d2[c] = (uint32) i << 6;
			b64_d3[c] = (uint32) i;
		}
		b64_ready = true;
	}
	if (len % 4 != 0)
		return -1;
	if (len == 0)
		return 0;
	if (s[len - 1] == '=')
		pad = s[len - 2] == '=' ? 2 : 1;
	full = pad ? len - 4 : len;
	for (int i = 0; i < full; i += 4)
	{
		uint32		v = b64_d0[s[i]] | b64_d1[s[i + 1]] | b64_d2[s[i + 2]] | b64_d3[s[i + 3]];

		bad |= v;
		p[0] = (unsigned char) (v >> 16);
		p[1] = (unsigned char) (v >> 8);
		p[2] = (unsigned char) v;
		p += 3;
	}
	if (pad)
	{
		uint32		v = b64_d0[s[full]] | b64_d1[s[full + 1]] | (pad == 1 ? b64_d2[s[full + 2]] : 0);

		bad |= v;
		*p++ = (unsigned char) (v >> 16);
		if (pad == 1)
			*p++ = (unsigned char) (v >> 8);
	}
	return (bad & B64_BAD) ? -1 : (int) (p - (unsigned char *) dst);
}

/*
 * Where PostgreSQL's JSON lexer spent its time: a list of 100 records with
 * a 20 KB image each is 2.7 MB of base64 in strings, which its string loop
 * walks a byte at a time (an eighth of the worker's time).  The parser gets
 * a condensed copy instead: every string of CONDENSE_MIN bytes or more
 * with no backslash and no control character in it is given as "" (its
 * place kept in s->spans).  Such a string is a valid string token whatever
 * it holds, and the lexer's verdict on everything else does not depend on
 * how long it is, so the parse of the copy succeeds or fails as the body's
 * would, with the same structure; scalar() maps a token back to the body.
 * The strings are found with memchr; a long one is decoded as base64 on
 * the spot (valid base64 holds neither; scalar() then takes those bytes if
 * it is an image's Data), else tested 8 bytes at a time.  A string with a
 * backslash (escapes) or a control character is copied as it is, for the
 * lexer to judge.  Returns the text to parse (the body
 * itself when nothing was condensed) and its length.
 */
#define ONES UINT64CONST(0x0101010101010101)
#define HIGHS UINT64CONST(0x8080808080808080)

/* may [p, p + n) hold a backslash or a byte below 0x20?  (false: it holds none) */
static bool
maybe_special(const char *p, size_t n)
{
	uint64		hit = 0;
	size_t		i = 0;

	for (; i + 8 <= n; i += 8)
	{
		uint64		x,
					b;

		memcpy(&x, p + i, 8);
		b = x ^ (ONES * '\\');
		/* a zero byte of b (a backslash), or a byte of x below 0x20 */
		hit |= ((b - ONES) & ~b & HIGHS) | ((x - ONES * 0x20) & ~x & HIGHS);
	}
	for (; i < n; i++)
		hit |= (p[i] == '\\' || (unsigned char) p[i] < 0x20);
	return hit != 0;
}

static char *
condense(Split *s, char *input, size_t len, size_t *out_len)
{
	char	   *end = input + len;
	char	   *p = input;			/* copied up to here */
	char	   *scan = input;
	StringInfoData c;
	int			max_spans = 0;
	size_t		shift = 0;

	c.data = NULL;
	while (scan < end)
	{
		char	   *q = memchr(scan, '"', end - scan);	/* a string opens */
		char	   *e;

		if (q == NULL)
			break;
		e = memchr(q + 1, '"', end - q - 1);
		if (e == NULL)
			break;				/* unterminated: the lexer says so */
		if ((size_t) (e - q - 1) >= CONDENSE_MIN)
		{
			/*
			 * Decoded now if it is base64 (then it holds neither a backslash
			 * nor a control character), for scalar() should it be an
			 * image's Data: no second pass over it
			 */
			size_t		n = e - q - 1;
			bytea	   *raw = (bytea *) palloc(VARHDRSZ + pg_b64_dec_len(n) + 3);
			int			got = b64_decode(q + 1, (int) n, VARDATA(raw));

			if (got >= 0)
				SET_VARSIZE(raw, VARHDRSZ + got);
			else
			{
				pfree(raw);
				raw = NULL;
			}
			if (raw == NULL && maybe_special(q + 1, n))
				goto verbatim;

			if (c.data == NULL)
				initStringInfo(&c);
			if (s->n_spans == max_spans)
			{
				max_spans = Max(max_spans * 2, 128);
				s->spans = s->spans ? repalloc(s->spans, sizeof(Span) * max_spans) : palloc(sizeof(Span) * max_spans);
			}
			appendBinaryStringInfo(&c, p, q - p);
			s->spans[s->n_spans].at = c.len;
			s->spans[s->n_spans].shift = shift;
			s->spans[s->n_spans].len = e + 1 - q;
			s->spans[s->n_spans].decoded = raw;
			s->n_spans++;
			appendBinaryStringInfo(&c, "\"\"", 2);
			shift += e - q - 1;
			p = e + 1;
			scan = e + 1;
			continue;
		}
verbatim:
		/* the string ends at the first quote no backslash escapes */
		for (e = q + 1; e < end && *e != '"'; e++)
			if (*e == '\\')
				e++;
		scan = e < end ? e + 1 : end;
	}
	if (c.data == NULL)
	{
		*out_len = len;
		return input;
	}
	appendBinaryStringInfo(&c, p, end - p);
	*out_len = c.len;
	return c.data;
}

/*
 * The name of the field whose value the lexer is at: the string token just
 * before the colon.  Without de-escaping the parser gives no name, so it is
 * read back from the input: the closing quote, then back to the opening one
 * (a valid token holds no unescaped quote); a name with a backslash in it
 * is none of ours.
 */
static int
field_tag(Split *s)
{
	char	   *input = s->lex->input;
	char	   *p = s->lex->prev_token_terminator - 1;	/* the colon */
	char	   *q;
	size_t		n;

	while (p > input && (p[-1] == ' ' || p[-1] == '\t' || p[-1] == '\n' || p[-1] == '\r'))
		p--;
	if (p <= input || p[-1] != '"')
		return TAG_OTHER;
	p--;						/* the closing quote */
	for (q = p - 1; q >= input && *q != '"'; q--)
		if (*q == '\\')
		{
			/*
			 * jsonb decodes an escaped name ("\u0044ata" is Data), so a
			 * duplicate could hide behind one: the SQL judges such a body
			 */
			s->give_up = true;
			return TAG_OTHER;
		}
	if (q < input || (q > input && q[-1] == '\\'))
		return TAG_OTHER;
	n = p - q - 1;
#define IS(name) (strlen(name) == n && memcmp(q + 1, (name), n) == 0)
	if (IS("Data"))
		return TAG_DATA;
	if (IS("SubImageList"))
		return TAG_SUBIMAGELIST;
	if (IS("SubImageInfoObject"))
		return TAG_SUBINFO;
	if (IS(s->item_object))
		return TAG_ITEM;
	if (IS(s->list_object))
		return TAG_LIST;
#undef IS
	return TAG_OTHER;
}

static void
push(Split *s, bool is_array)
{
	if (s->depth >= SPLIT_MAX_DEPTH || s->deeper > 0)
	{
		s->deeper++;
		return;
	}
	s->stack[s->depth].is_array = is_array;
	s->stack[s->depth].index = 0;
	s->stack[s->depth].tag = TAG_OTHER;
	s->stack[s->depth].seen = 0;
	s->depth++;
}

static void
pop(void *state)
{
	Split	   *s = state;

	if (s->deeper > 0)
		s->deeper--;
	else if (s->depth > 0)
		s->depth--;
}

static void
object_start(void *state)
{
	push((Split *) state, false);
}

static void
array_start(void *state)
{
	push((Split *) state, true);
}

static void
array_element_start(void *state, bool isnull)
{
	Split	   *s = state;

	if (s->deeper == 0 && s->depth > 0 && s->stack[s->depth - 1].is_array)
		s->stack[s->depth - 1].index++;
}

/* is the stack List: {Item: [i] ...} with the item's level at 3? */
static bool
at_item(Split *s)
{
	return s->depth > 3 && !s->stack[0].is_array && s->stack[0].tag == TAG_LIST &&
		!s->stack[1].is_array && s->stack[1].tag == TAG_ITEM &&
		s->stack[2].is_array && !s->stack[3].is_array;
}

static void
object_field_start(void *state, char *fname, bool isnull)
{
	Split	   *s = state;
	Frame	   *top;
	int			i = 0,
				j = 0;

	if (s->deeper > 0 || s->depth == 0)
		return;
	top = &s->stack[s->depth - 1];
	top->tag = field_tag(s);
	/*
	 * A key of the image path twice in one object (duplicate keys: jsonb
	 * keeps the last copy) would let images decoded from the discarded copy
	 * be attached to another record by place: give up, the SQL judges the
	 * body as it came.
	 */
	if (top->tag != TAG_OTHER)
	{
		if (top->seen & (1u << top->tag))
			s->give_up = true;
		top->seen |= 1u << top->tag;
	}
	if (top->tag != TAG_DATA || !at_item(s))
		return;
	if (s->image_kind && s->depth == 4)
	{
		i = s->stack[2].index;
		j = 1;
	}
	else if (!s->image_kind && s->stack[3].tag == TAG_SUBIMAGELIST && s->depth >= 6 &&
			 !s->stack[4].is_array && s->stack[4].tag == TAG_SUBINFO)
	{
		i = s->stack[2].index;
		if (s->depth == 6 && !s->stack[5].is_array)
			j = 1;				/* "SubImageInfoObject": {...} */
		else if (s->depth == 7 && s->stack[5].is_array && !s->stack[6].is_array)
			j = s->stack[5].index;
	}
	if (j == 0)
		return;
	/*
	 * Every Data at an image's place counts, whatever its value: should a
	 * place come again (duplicate keys: jsonb keeps the last), which one
	 * jsonb sees is not for us to guess, so the SQL gets the body as it came.
	 */
	if (i < s->last_i || (i == s->last_i && j <= s->last_j))
		s->give_up = true;
	s->last_i = i;
	s->last_j = j;
	if (s->lex->token_type != JSON_TOKEN_STRING)
		return;
	s->pending = s->lex->token_start;
	s->pending_i = i;
	s->pending_j = j;
}

static void
scalar(void *state, char *token, JsonTokenType tokentype)
{
	Split	   *s = state;
	char	   *start = s->pending;
	char	   *end = s->lex->prev_token_terminator;	/* after the closing quote */
	size_t		token_len = end - start;
	size_t		at;
	size_t		shift = 0;
	bool		condensed = false;
	bytea	   *decoded = NULL;
	int			len;
	bytea	   *raw;
	int			n;

	if (start == NULL)
		return;
	s->pending = NULL;
	if (s->give_up || tokentype != JSON_TOKEN_STRING || end - start < 2 || *start != '"')
		return;
	/* back to the body: start and end in the condensed text, then in the body */
	at = start - s->lex->input;
	while (s->next_span < s->n_spans && s->spans[s->next_span].at < at)
		s->next_span++;
	if (s->next_span < s->n_spans && s->spans[s->next_span].at == at)
	{
		condensed = true;
		shift = s->spans[s->next_span].shift;
		decoded = s->spans[s->next_span].decoded;
		start = s->input + at + shift;
		end = start + s->spans[s->next_span].len;
	}
	else
	{
		if (s->next_span > 0)
			shift = s->spans[s->next_span - 1].shift + s->spans[s->next_span - 1].len - 2;
		start = s->input + at + shift;
		end = start + token_len;
	}
	len = (int) (end - start - 2);
	if (!condensed && memchr(start + 1, '\\', len) != NULL)
		return;					/* escapes: the SQL decodes it */
	if (condensed)
	{
		/* condense() decoded it already */
		if (decoded == NULL)
			return;				/* not base64: the SQL says so */
		raw = decoded;
		n = VARSIZE(raw) - VARHDRSZ;
	}
	else
	{
		raw = (bytea *) palloc(VARHDRSZ + pg_b64_dec_len(len) + 3);
		n = b64_decode(start + 1, len, VARDATA(raw));
		if (n < 0)
		{
			pfree(raw);
			return;				/* not base64: the SQL says so */
		}
		SET_VARSIZE(raw, VARHDRSZ + n);
	}
	appendBinaryStringInfo(&s->out, s->copied, start - s->copied);
	appendStringInfoString(&s->out, "\"\"");
	s->copied = end;
	s->items = accumArrayResult(s->items, Int32GetDatum(s->pending_i), false, INT4OID, CurrentMemoryContext);
	s->subs = accumArrayResult(s->subs, Int32GetDatum(s->pending_j), false, INT4OID, CurrentMemoryContext);
	if (s->n_data == s->max_data)
	{
		s->max_data = Max(s->max_data * 2, 64);
		s->data = s->data ? repalloc(s->data, sizeof(Datum) * s->max_data) : palloc(sizeof(Datum) * s->max_data);
	}
	s->data[s->n_data++] = PointerGetDatum(raw);
	{
		const char *f = image_format((unsigned char *) VARDATA(raw), n);

		s->formats = accumArrayResult(s->formats, f ? CStringGetTextDatum(f) : (Datum) 0, f == NULL,
									  TEXTOID, CurrentMemoryContext);
	}
}

Datum
vms_viid_split_images(PG_FUNCTION_ARGS)
{
	text	   *body = PG_GETARG_TEXT_PP(0);
	char	   *list_object = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *item_object = text_to_cstring(PG_GETARG_TEXT_PP(2));
	bool		image_kind = PG_GETARG_BOOL(3);
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	JsonSemAction sem;
	Split		s;
	JsonParseErrorType rc;
	char	   *input = VARDATA_ANY(body);
	int			len = VARSIZE_ANY_EXHDR(body);

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "vms._viid_split_images must return a record");
	tupdesc = BlessTupleDesc(tupdesc);

	memset(&s, 0, sizeof(s));
	s.input = input;
	{
		size_t		parse_len;
		char	   *parse = condense(&s, input, len, &parse_len);

		s.lex = makeJsonLexContextCstringLen(parse, (int) parse_len, GetDatabaseEncoding(), false);
	}
	s.list_object = list_object;
	s.item_object = item_object;
	s.image_kind = image_kind;
	s.copied = input;
	initStringInfo(&s.out);
	memset(&sem, 0, sizeof(sem));
	sem.semstate = &s;
	sem.object_start = object_start;
	sem.object_end = pop;
	sem.array_start = array_start;
	sem.array_end = pop;
	sem.array_element_start = array_element_start;
	sem.object_field_start = object_field_start;
	sem.scalar = scalar;
	rc = pg_parse_json(s.lex, &sem);

	if (rc != JSON_SUCCESS || s.give_up || s.items == NULL)
	{
		/* not JSON (the SQL says why), a place twice, or no image: as it came */
		values[0] = PointerGetDatum(body);
		values[1] = PointerGetDatum(construct_empty_array(INT4OID));
		values[2] = PointerGetDatum(construct_empty_array(INT4OID));
		values[3] = PointerGetDatum(construct_empty_array(BYTEAOID));
		values[4] = PointerGetDatum(construct_empty_array(TEXTOID));
	}
	else
	{
		appendBinaryStringInfo(&s.out, s.copied, input + len - s.copied);
		values[0] = PointerGetDatum(cstring_to_text_with_len(s.out.data, s.out.len));
		values[1] = makeArrayResult(s.items, CurrentMemoryContext);
		values[2] = makeArrayResult(s.subs, CurrentMemoryContext);
		values[3] = PointerGetDatum(construct_array(s.data, s.n_data, BYTEAOID, -1, false, TYPALIGN_INT));
		values[4] = makeArrayResult(s.formats, CurrentMemoryContext);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* yyyyMMddHHmmss, a real time (proleptic Gregorian, no leap second) */
static bool
time_ok(const char *t)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int			v[14];
	int			y,
				mo,
				d,
				dim;

	for (int i = 0; i < 14; i++)
	{
		if (t[i] < '0' || t[i] > '9')
			return false;
		v[i] = t[i] - '0';
	}
	y = v[0] * 1000 + v[1] * 100 + v[2] * 10 + v[3];
	mo = v[4] * 10 + v[5];
	d = v[6] * 10 + v[7];
	if (y < 1 || mo < 1 || mo > 12)
		return false;
	dim = days[mo - 1] + (mo == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) ? 1 : 0);
	return d >= 1 && d <= dim && v[8] * 10 + v[9] < 24 && v[10] * 10 + v[11] < 60 && v[12] * 10 + v[13] < 60;
}

/*
 * vms._viid_ts_ok(text) → boolean: a real time yyyyMMddHHmmss.  Never
 * raises, for checking many records in one statement.
 */
Datum
vms_viid_ts_ok(PG_FUNCTION_ARGS)
{
	text	   *t;

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(false);
	t = PG_GETARG_TEXT_PP(0);
	PG_RETURN_BOOL(VARSIZE_ANY_EXHDR(t) == 14 && time_ok(VARDATA_ANY(t)));
}

/*
 * vms._viid_id_ok(text) → boolean: true when vms.viid_id_problems finds
 * nothing wrong (41 or 48 digits, a device part that parses as a code
 * without a vms.gbcode_check problem, a real time part).  Never raises.
 */
Datum
vms_viid_id_ok(PG_FUNCTION_ARGS)
{
	text	   *t;
	const char *s;
	int			n;
	GbCode		code;
	char	   *err;

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(false);
	t = PG_GETARG_TEXT_PP(0);
	s = VARDATA_ANY(t);
	n = VARSIZE_ANY_EXHDR(t);
	if (n != 41 && n != 48)
		PG_RETURN_BOOL(false);
	for (int i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			PG_RETURN_BOOL(false);
	err = gbcode_parse(s, GBCODE_DIGITS, &code);
	if (err != NULL)
	{
		pfree(err);
		PG_RETURN_BOOL(false);
	}
	if (code.centre / 1000000 == 0 || gbcode_industry_name_en(GBCODE_INDUSTRY(&code)) == NULL ||
		gbcode_type_name_en(GBCODE_TYPE(&code)) == NULL || gbcode_network_reserved(GBCODE_NETWORK(&code)))
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(time_ok(s + 22));
}
