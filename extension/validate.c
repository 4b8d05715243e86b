/*
 * validate.c — small validators used by batch imports, so a bad value is a
 * row's reason rather than an error that aborts the whole load.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <math.h>

#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

PG_FUNCTION_INFO_V1(vms_is_ip);
Datum
vms_is_ip(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	int			len = VARSIZE_ANY_EXHDR(t);
	char		buf[64];
	unsigned char addr[16];

	if (len == 0 || len >= (int) sizeof(buf))
		PG_RETURN_BOOL(false);
	memcpy(buf, VARDATA_ANY(t), len);
	buf[len] = '\0';
	PG_RETURN_BOOL(inet_pton(AF_INET, buf, addr) == 1 || inet_pton(AF_INET6, buf, addr) == 1);
}

/*
 * vms.try_float8(text) → float8: the number, or NULL when the text is not a
 * plain finite decimal number (no NaN, Infinity or hex).  One parse serves
 * both validation and conversion in batch imports.
 */
PG_FUNCTION_INFO_V1(vms_try_float8);
Datum
vms_try_float8(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	int			len = VARSIZE_ANY_EXHDR(t);
	const char *p = VARDATA_ANY(t);
	char		buf[64];
	char	   *end;
	double		v;
	int			start = 0;

	while (start < len && (p[start] == ' ' || p[start] == '\t'))
		start++;
	while (len > start && (p[len - 1] == ' ' || p[len - 1] == '\t'))
		len--;
	if (len == start || len - start >= (int) sizeof(buf))
		PG_RETURN_NULL();
	for (int i = start; i < len; i++)
	{
		char		c = p[i];

		if (!((c >= '0' && c <= '9') || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E'))
			PG_RETURN_NULL();
	}
	memcpy(buf, p + start, len - start);
	buf[len - start] = '\0';
	errno = 0;
	v = strtod(buf, &end);
	if (*end != '\0' || end == buf || errno != 0 || !isfinite(v))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(v);
}

/*
 * vms._channel_doc(code, device_code, ..., geom_ewkt, coord_source) → jsonb:
 * the history jsonb of a channel row (vms._channel_jsonb), the same value
 * jsonb_build_object makes of the same nineteen arguments: text as strings,
 * real and bigint as numbers (their output text; a value that is no valid
 * JSON number, NaN or Infinity, as a string), text[] as an array of strings
 * (nested for more dimensions), SQL NULL as null.  jsonb_build_object looks
 * up each argument's type category and output function on every call, about
 * 7 µs a row; a ledger load writes a million of these.
 */
static const char *const channel_doc_keys[] = {
	"code", "device_code", "name", "alias", "address", "civil_code", "street",
	"place_type", "point_type", "resolution", "azimuth", "fov_angle", "fov_range_m",
	"install_height_m", "capabilities", "unit_id", "stream_url", "geom", "coord_source"
};
#define CHANNEL_DOC_NARGS 19

static void
doc_push_key(JsonbParseState **st, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(st, WJB_KEY, &k);
}

/*
 * A string value: jsonb stores a string's length in 28 bits and
 * convertJsonbScalar does not check it, so refuse longer ones here, as
 * jsonb_build_object does (checkStringLen), instead of writing a corrupt jsonb.
 */
static void
doc_string(JsonbValue *v, char *val, int len)
{
	if (len > JENTRY_OFFLENMASK)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("string too long to represent as jsonb string"),
				 errdetail("Due to an implementation restriction, jsonb strings cannot exceed %d bytes.",
						   JENTRY_OFFLENMASK)));
	v->type = jbvString;
	v->val.string.val = val;
	v->val.string.len = len;
}

static void
doc_number(JsonbValue *v, char *out)
{
	int			len = strlen(out);

	if (IsValidJsonNumber(out, len))
	{
		v->type = jbvNumeric;
		v->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(out),
															  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	}
	else
		doc_string(v, out, len);
}

/* one dimension of a text array, as array_to_jsonb does */
static void
doc_text_array_dim(JsonbParseState **st, int dim, int ndims, int *dims, Datum *vals, bool *nulls, int *idx)
{
	pushJsonbValue(st, WJB_BEGIN_ARRAY, NULL);
	for (int i = 1; i <= dims[dim]; i++)
	{
		if (dim + 1 == ndims)
		{
			JsonbValue	v;

			if (nulls[*idx])
				v.type = jbvNull;
			else
			{
				text	   *t = DatumGetTextPP(vals[*idx]);

				doc_string(&v, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
			}
			(*idx)++;
			pushJsonbValue(st, WJB_ELEM, &v);
		}
		else
			doc_text_array_dim(st, dim + 1, ndims, dims, vals, nulls, idx);
	}
	pushJsonbValue(st, WJB_END_ARRAY, NULL);
}

PG_FUNCTION_INFO_V1(vms_channel_doc);
Datum
vms_channel_doc(PG_FUNCTION_ARGS)
{
	JsonbParseState *st = NULL;
	JsonbValue *res;

	if (PG_NARGS() != CHANNEL_DOC_NARGS)
		elog(ERROR, "vms._channel_doc takes %d arguments", CHANNEL_DOC_NARGS);
	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < CHANNEL_DOC_NARGS; i++)
	{
		JsonbValue	v;

		doc_push_key(&st, channel_doc_keys[i]);
		if (PG_ARGISNULL(i))
		{
			v.type = jbvNull;
			pushJsonbValue(&st, WJB_VALUE, &v);
			continue;
		}
		switch (i)
		{
			case 10:			/* azimuth .. install_height_m: real */
			case 11:
			case 12:
			case 13:
				doc_number(&v, DatumGetCString(DirectFunctionCall1(float4out, PG_GETARG_DATUM(i))));
				break;
			case 15:			/* unit_id: bigint */
				doc_number(&v, DatumGetCString(DirectFunctionCall1(int8out, PG_GETARG_DATUM(i))));
				break;
			case 14:			/* capabilities: text[] */
				{
					ArrayType  *a = PG_GETARG_ARRAYTYPE_P(i);
					int			ndims = ARR_NDIM(a);
					Datum	   *vals;
					bool	   *nulls;
					int			n;
					int			idx = 0;

					if (ARR_ELEMTYPE(a) != TEXTOID)
						elog(ERROR, "vms._channel_doc: capabilities must be text[]");
					if (ndims <= 0 || ArrayGetNItems(ndims, ARR_DIMS(a)) == 0)
					{
						pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
						pushJsonbValue(&st, WJB_END_ARRAY, NULL);
						continue;
					}
					deconstruct_array(a, TEXTOID, -1, false, TYPALIGN_INT, &vals, &nulls, &n);
					doc_text_array_dim(&st, 0, ndims, ARR_DIMS(a), vals, nulls, &idx);
					continue;
				}
			default:			/* text */
				{
					text	   *t = PG_GETARG_TEXT_PP(i);

					doc_string(&v, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
				}
				break;
		}
		pushJsonbValue(&st, WJB_VALUE, &v);
	}
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	PG_RETURN_POINTER(JsonbValueToJsonb(res));
}
