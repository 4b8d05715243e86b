/*
 * validate.c — small validators used by batch imports, so a bad value is a
 * row's reason rather than an error that aborts the whole load.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <math.h>

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "gbcode.h"

/* true when p[0..len) is an IPv4 or IPv6 address (inet_pton) */
static bool
is_ip_str(const char *p, int len)
{
	char		buf[64];
	unsigned char addr[16];

	if (len == 0 || len >= (int) sizeof(buf))
		return false;
	memcpy(buf, p, len);
	buf[len] = '\0';
	return inet_pton(AF_INET, buf, addr) == 1 || inet_pton(AF_INET6, buf, addr) == 1;
}

PG_FUNCTION_INFO_V1(vms_is_ip);
Datum
vms_is_ip(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);

	PG_RETURN_BOOL(is_ip_str(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)));
}

/*
 * The number in p[0..len), or false when it is not a plain finite decimal
 * (spaces and tabs around it allowed): vms.try_float8's test, shared with
 * vms.ledger_check_rows.
 */
static bool
try_float8_str(const char *p, int len, double *out)
{
	char		buf[64];
	char	   *end;
	double		v;
	int			start = 0;

	while (start < len && (p[start] == ' ' || p[start] == '\t'))
		start++;
	while (len > start && (p[len - 1] == ' ' || p[len - 1] == '\t'))
		len--;
	if (len == start || len - start >= (int) sizeof(buf))
		return false;
	for (int i = start; i < len; i++)
	{
		char		c = p[i];

		if (!((c >= '0' && c <= '9') || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E'))
			return false;
	}
	memcpy(buf, p + start, len - start);
	buf[len - start] = '\0';
	errno = 0;
	v = strtod(buf, &end);
	if (*end != '\0' || end == buf || errno != 0 || !isfinite(v))
		return false;
	*out = v;
	return true;
}

PG_FUNCTION_INFO_V1(vms_try_float8);
Datum
vms_try_float8(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	double		v;

	if (!try_float8_str(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &v))
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

/*
 * The arguments in the order of their keys in a jsonb object (shorter key
 * first, then bytewise): pushed in this order, the object's keys are
 * already sorted, and the sort at its end (uniqueifyJsonbObject, a quarter
 * of the time when pushed in argument order) finds them so.  The value is
 * the same either way.
 */
static const int channel_doc_order[CHANNEL_DOC_NARGS] = {
	0 /* code */ , 17 /* geom */ , 2 /* name */ , 3 /* alias */ , 6 /* street */ ,
	4 /* address */ , 10 /* azimuth */ , 15 /* unit_id */ , 11 /* fov_angle */ ,
	5 /* civil_code */ , 7 /* place_type */ , 8 /* point_type */ , 9 /* resolution */ ,
	16 /* stream_url */ , 1 /* device_code */ , 12 /* fov_range_m */ ,
	14 /* capabilities */ , 18 /* coord_source */ , 13 /* install_height_m */
};

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
	for (int o = 0; o < CHANNEL_DOC_NARGS; o++)
	{
		int			i = channel_doc_order[o];
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

/*
 * vms.ledger_check_rows(header_line bigint, columns jsonb, header_fields int,
 * point_types jsonb): the row check of a ledger import, one pass in C over
 * the records staged in pg_temp._ledger_csv (line_no, fields, error) after
 * the header line.  It returns, per record, the template's 26 columns as the
 * import reads them (nullif(btrim(fields[coalesce(columns->>key, 0)]), '')), the typed
 * values, the list of reasons and the channel values (ch_*): what the SQL
 * definition it replaces (about sixty expressions a row, three of them
 * regular expressions) gave, value for value; the regress test import_check
 * keeps that SQL and compares the two on tricky rows.  columns maps template
 * keys to field numbers (an absent key reads subscript 0: NULL but in an
 * array whose lower bound is 0, as in SQL);
 * point_types maps lower-case point type names and codes to codes.
 * Runs with the caller's rights: it reads the caller's own temporary table
 * and vms.catalog_node (for the catalog column) through SPI.
 */
#define LK_NCOLS 26
enum
{
	LK_CODE, LK_NAME, LK_DEVICE_CODE, LK_DEVICE_NAME, LK_MANUFACTURER, LK_MODEL,
	LK_IP, LK_PORT, LK_ALIAS, LK_ADDRESS, LK_CIVIL, LK_STREET, LK_PLACE_TYPE,
	LK_POINT_TYPE, LK_RESOLUTION, LK_LON, LK_LAT, LK_CRS, LK_AZIMUTH, LK_FOV_ANGLE,
	LK_FOV_RANGE, LK_HEIGHT, LK_CAPABILITIES, LK_UNIT, LK_STREAM_URL, LK_CATALOG
};
static const char *const lc_keys[LK_NCOLS] = {
	"code", "name", "device_code", "device_name", "manufacturer", "model",
	"ip_address", "port", "alias", "address", "civil_code", "street", "place_type",
	"point_type", "resolution", "longitude", "latitude", "coord_system", "azimuth", "fov_angle",
	"fov_range_m", "install_height_m", "capabilities", "unit", "stream_url", "catalog"
};

/* output columns: line_no, error, nfields, the 26, then these */
enum
{
	LO_LINE, LO_ERROR, LO_NFIELDS, LO_FIRST_COL,
	LO_DEV_CODE = LO_FIRST_COL + LK_NCOLS, LO_POINT_TYPE_CODE, LO_PORT_I, LO_LON_F, LO_LAT_F,
	LO_AZIMUTH_F, LO_FOV_ANGLE_F, LO_FOV_RANGE_F, LO_HEIGHT_F, LO_CRS, LO_REASONS,
	LO_CH_CAPABILITIES, LO_CH_COORD_SOURCE, LO_CH_OVERRIDDEN, LO_REPEATED, LO_NATTS
};

typedef struct LcField
{
	const char *p;				/* NULL: SQL NULL */
	int			len;
} LcField;

typedef struct LcState
{
	Jsonb	   *point_types;	/* may be NULL */
	SPIPlanPtr	catalog_plan;
	text	   *url_re;
	const char *semicolon_wide; /* '；' in the server encoding */
	int			semicolon_wide_len;
	HTAB	   *seen;			/* codes of rows without reasons so far */
} LcState;

static Datum
lc_text(const char *p, int len)
{
	return PointerGetDatum(cstring_to_text_with_len(p, len));
}

/* all bytes ASCII digits */
static bool
lc_digits(const char *p, int len)
{
	for (int i = 0; i < len; i++)
		if (p[i] < '0' || p[i] > '9')
			return false;
	return true;
}

/* '^[0-9]{1,5}$' and 1-65535: the port, else 0 */
static int
lc_port(LcField f)
{
	int			v = 0;

	if (f.len < 1 || f.len > 5 || !lc_digits(f.p, f.len))
		return 0;
	for (int i = 0; i < f.len; i++)
		v = v * 10 + (f.p[i] - '0');
	return (v >= 1 && v <= 65535) ? v : 0;
}

/*
 * stream_url ~ '^(rtsps?|https?)://[^[:space:][:cntrl:]/?#][^[:space:][:cntrl:]]*$'
 * and length <= 2048.  For printable ASCII (no space, no control) the
 * classes cannot match, so the test is the prefix and the first character
 * after it; anything else goes to the regular expression itself.
 */
static bool
lc_url_ok(LcState *st, LcField f)
{
	static const char *const prefixes[] = {"rtsp://", "rtsps://", "http://", "https://"};
	bool		ascii = true;

	for (int i = 0; i < f.len; i++)
		if ((unsigned char) f.p[i] <= 0x20 || (unsigned char) f.p[i] >= 0x7F)
		{
			ascii = false;
			break;
		}
	if (ascii)
	{
		if (f.len > 2048)
			return false;
		for (int k = 0; k < 4; k++)
		{
			int			pl = strlen(prefixes[k]);

			if (f.len > pl && memcmp(f.p, prefixes[k], pl) == 0)
				return f.p[pl] != '/' && f.p[pl] != '?' && f.p[pl] != '#';
		}
		return false;
	}
	if (pg_mbstrlen_with_len(f.p, f.len) > 2048)
		return false;
	return DatumGetBool(DirectFunctionCall2Coll(textregexeq, DEFAULT_COLLATION_OID,
												lc_text(f.p, f.len), PointerGetDatum(st->url_re)));
}

/* some element of string_to_array(catalog, '|') is no code or no catalogue node */
static bool
lc_catalog_bad(LcState *st, LcField f)
{
	int			start = 0;

	for (int i = 0; i <= f.len; i++)
	{
		if (i < f.len && f.p[i] != '|')
			continue;
		{
			const char *e = f.p + start;
			int			el = i - start;
			GbCode		dummy;
			Datum		arg;
			int			rc;
			bool		found;

			while (el > 0 && e[0] == ' ')
				e++, el--;
			while (el > 0 && e[el - 1] == ' ')
				el--;
			if (gbcode_parse(e, el, &dummy) != NULL)
				return true;
			arg = lc_text(e, el);
			rc = SPI_execute_plan(st->catalog_plan, &arg, NULL, true, 1);
			if (rc != SPI_OK_SELECT)
				elog(ERROR, "vms.ledger_check_rows: catalogue lookup failed: %s", SPI_result_code_string(rc));
			found = SPI_processed > 0;
			SPI_freetuptable(SPI_tuptable);
			if (!found)
				return true;
		}
		start = i + 1;
	}
	return false;
}

/* append one element of a text[] being built */
static void
lc_push(Datum *elems, int *n, const char *s)
{
	elems[(*n)++] = CStringGetTextDatum(s);
}

static Datum
lc_array(Datum *elems, int n)
{
	if (n == 0)
		return PointerGetDatum(construct_empty_array(TEXTOID));
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

static void
lc_check_row(LcState *st, const int *colpos, int header_fields, Datum line,
			 Datum fields_d, bool fields_null, Datum error_d, bool error_null,
			 Datum *values, bool *nulls)
{
	LcField		c[LK_NCOLS];
	Datum	   *elems = NULL;
	bool	   *enulls = NULL;
	int			nelems = 0;
	int			lbound = 1;
	bool		one_dim = false;
	int32		nfields = 0;
	Datum		reasons[32];
	int			nreasons = 0;
	double		lon = 0, lat = 0, az = 0, fova = 0, fovr = 0, height = 0;
	bool		lon_ok = false, lat_ok = false, az_ok = false, fova_ok = false, fovr_ok = false, height_ok = false;
	int			port_i = 0;
	const char *crs = NULL;
	const char *ptcode = NULL;
	int			ptcode_len = 0;
	GbCode		code = {0};

	for (int i = 0; i < LO_NATTS; i++)
		nulls[i] = true;
	values[LO_LINE] = line;
	nulls[LO_LINE] = false;
	if (!error_null)
	{
		values[LO_ERROR] = error_d;
		nulls[LO_ERROR] = false;
	}
	if (!fields_null)
	{
		ArrayType  *a = DatumGetArrayTypeP(fields_d);

		if (ARR_ELEMTYPE(a) != TEXTOID)
			elog(ERROR, "vms.ledger_check_rows: fields must be text[]");
		nfields = ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
		values[LO_NFIELDS] = Int32GetDatum(nfields);
		nulls[LO_NFIELDS] = false;
		if (ARR_NDIM(a) == 1)
		{
			one_dim = true;
			lbound = ARR_LBOUND(a)[0];
			deconstruct_array(a, TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, &nelems);
		}
	}
	/* nullif(btrim(fields[k]), '') */
	for (int k = 0; k < LK_NCOLS; k++)
	{
		int64		idx = (int64) colpos[k] - lbound;	/* both any int: no overflow */

		c[k].p = NULL;
		c[k].len = 0;
		if (one_dim && idx >= 0 && idx < nelems && !enulls[idx])
		{
			text	   *t = DatumGetTextPP(elems[idx]);
			const char *p = VARDATA_ANY(t);
			int			len = VARSIZE_ANY_EXHDR(t);

			while (len > 0 && p[0] == ' ')
				p++, len--;
			while (len > 0 && p[len - 1] == ' ')
				len--;
			if (len > 0)
			{
				c[k].p = p;
				c[k].len = len;
				values[LO_FIRST_COL + k] = lc_text(p, len);
				nulls[LO_FIRST_COL + k] = false;
			}
		}
	}
#define HAS(k) (c[k].p != NULL)
#define STR(k) pnstrdup(c[k].p, c[k].len)

	/* typed values */
	if (HAS(LK_DEVICE_CODE))
		values[LO_DEV_CODE] = values[LO_FIRST_COL + LK_DEVICE_CODE], nulls[LO_DEV_CODE] = false;
	else if (HAS(LK_CODE))
		values[LO_DEV_CODE] = values[LO_FIRST_COL + LK_CODE], nulls[LO_DEV_CODE] = false;
	if (HAS(LK_POINT_TYPE) && st->point_types != NULL)
	{
		text	   *low = DatumGetTextPP(DirectFunctionCall1Coll(lower, DEFAULT_COLLATION_OID,
																 values[LO_FIRST_COL + LK_POINT_TYPE]));
		JsonbValue	v;

		if (getKeyJsonValueFromContainer(&st->point_types->root, VARDATA_ANY(low), VARSIZE_ANY_EXHDR(low), &v))
		{
			if (v.type == jbvString)
			{
				ptcode = v.val.string.val;
				ptcode_len = v.val.string.len;
				values[LO_POINT_TYPE_CODE] = lc_text(ptcode, ptcode_len);
				nulls[LO_POINT_TYPE_CODE] = false;
			}
			else if (v.type != jbvNull)
				elog(ERROR, "vms.ledger_check_rows: point_types must map names to text codes");
		}
	}
	if (HAS(LK_PORT) && (port_i = lc_port(c[LK_PORT])) != 0)
		values[LO_PORT_I] = Int32GetDatum(port_i), nulls[LO_PORT_I] = false;
	if (HAS(LK_LON) && try_float8_str(c[LK_LON].p, c[LK_LON].len, &lon) && lon >= -180 && lon <= 180)
		lon_ok = true, values[LO_LON_F] = Float8GetDatum(lon), nulls[LO_LON_F] = false;
	if (HAS(LK_LAT) && try_float8_str(c[LK_LAT].p, c[LK_LAT].len, &lat) && lat >= -90 && lat <= 90)
		lat_ok = true, values[LO_LAT_F] = Float8GetDatum(lat), nulls[LO_LAT_F] = false;
	if (HAS(LK_AZIMUTH) && try_float8_str(c[LK_AZIMUTH].p, c[LK_AZIMUTH].len, &az) && az >= 0 && az < 360)
		az_ok = true, values[LO_AZIMUTH_F] = Float8GetDatum(az), nulls[LO_AZIMUTH_F] = false;
	if (HAS(LK_FOV_ANGLE) && try_float8_str(c[LK_FOV_ANGLE].p, c[LK_FOV_ANGLE].len, &fova) && fova > 0 && fova <= 360)
		fova_ok = true, values[LO_FOV_ANGLE_F] = Float8GetDatum(fova), nulls[LO_FOV_ANGLE_F] = false;
	if (HAS(LK_FOV_RANGE) && try_float8_str(c[LK_FOV_RANGE].p, c[LK_FOV_RANGE].len, &fovr) && fovr > 0)
		fovr_ok = true, values[LO_FOV_RANGE_F] = Float8GetDatum(fovr), nulls[LO_FOV_RANGE_F] = false;
	if (HAS(LK_HEIGHT) && try_float8_str(c[LK_HEIGHT].p, c[LK_HEIGHT].len, &height) && height >= 0)
		height_ok = true, values[LO_HEIGHT_F] = Float8GetDatum(height), nulls[LO_HEIGHT_F] = false;
	/* upper(replace(replace(coalesce(coord_system, 'WGS84'), '-', ''), '_', '')) */
	if (!HAS(LK_CRS))
		crs = "WGS84";
	else
	{
		char	   *buf = palloc(c[LK_CRS].len + 1);
		int			n = 0;
		char	   *up;

		for (int i = 0; i < c[LK_CRS].len; i++)
			if (c[LK_CRS].p[i] != '-' && c[LK_CRS].p[i] != '_')
				buf[n++] = c[LK_CRS].p[i];
		up = TextDatumGetCString(DirectFunctionCall1Coll(upper, DEFAULT_COLLATION_OID, lc_text(buf, n)));
		if (strcmp(up, "WGS84") == 0)
			crs = "WGS84";
		else if (strcmp(up, "CGCS2000") == 0)
			crs = "CGCS2000";
		else if (strcmp(up, "GCJ02") == 0)
			crs = "GCJ02";
		else if (strcmp(up, "BD09") == 0)
			crs = "BD09";
	}
	if (crs != NULL)
		values[LO_CRS] = CStringGetTextDatum(crs), nulls[LO_CRS] = false;

	/* the reasons, in the order the SQL definition lists them */
	if (!error_null)
		reasons[nreasons++] = error_d;
	if (error_null && !fields_null && nfields != header_fields)
		lc_push(reasons, &nreasons, psprintf("row has %d fields, the header has %d", nfields, header_fields));
	if (error_null && !HAS(LK_CODE))
		lc_push(reasons, &nreasons, "code is missing");
	if (HAS(LK_CODE))
	{
		char	   *problem = gbcode_parse(c[LK_CODE].p, c[LK_CODE].len, &code);

		if (problem)
			lc_push(reasons, &nreasons, psprintf("code: %s", problem));
	}
	if (error_null && !HAS(LK_NAME))
		lc_push(reasons, &nreasons, "name is missing");
	if (HAS(LK_NAME) && c[LK_NAME].len > 200 && pg_mbstrlen_with_len(c[LK_NAME].p, c[LK_NAME].len) > 200)
		lc_push(reasons, &nreasons, "name is longer than 200 characters");
	if (HAS(LK_DEVICE_CODE))
	{
		GbCode		dummy;
		char	   *problem = gbcode_parse(c[LK_DEVICE_CODE].p, c[LK_DEVICE_CODE].len, &dummy);

		if (problem)
			lc_push(reasons, &nreasons, psprintf("device_code: %s", problem));
	}
	if (HAS(LK_IP) && !is_ip_str(c[LK_IP].p, c[LK_IP].len))
		lc_push(reasons, &nreasons, psprintf("ip_address \"%s\" is not an IP address", STR(LK_IP)));
	if (HAS(LK_PORT) && port_i == 0)
		lc_push(reasons, &nreasons, psprintf("port \"%s\" is not in 1-65535", STR(LK_PORT)));
	/* '^([0-9]{2}){1,4}$' */
	if (HAS(LK_CIVIL) && !((c[LK_CIVIL].len == 2 || c[LK_CIVIL].len == 4 || c[LK_CIVIL].len == 6 ||
							c[LK_CIVIL].len == 8) && lc_digits(c[LK_CIVIL].p, c[LK_CIVIL].len)))
		lc_push(reasons, &nreasons,
				psprintf("civil_code \"%s\" is not a 2/4/6/8-digit GB/T 2260 code", STR(LK_CIVIL)));
	if (HAS(LK_POINT_TYPE) && ptcode == NULL)
		lc_push(reasons, &nreasons, psprintf("point_type \"%s\" is unknown", STR(LK_POINT_TYPE)));
	/* '^[0-9]{2,4}W$' */
	if (HAS(LK_RESOLUTION) && !(c[LK_RESOLUTION].len >= 3 && c[LK_RESOLUTION].len <= 5 &&
								c[LK_RESOLUTION].p[c[LK_RESOLUTION].len - 1] == 'W' &&
								lc_digits(c[LK_RESOLUTION].p, c[LK_RESOLUTION].len - 1)))
		lc_push(reasons, &nreasons, psprintf("resolution \"%s\" is not like 200W", STR(LK_RESOLUTION)));
	if (HAS(LK_LON) != HAS(LK_LAT))
		lc_push(reasons, &nreasons, "longitude and latitude must be given together");
	if (HAS(LK_LON) && !lon_ok)
		lc_push(reasons, &nreasons, psprintf("longitude \"%s\" is not a number in [-180, 180]", STR(LK_LON)));
	if (HAS(LK_LAT) && !lat_ok)
		lc_push(reasons, &nreasons, psprintf("latitude \"%s\" is not a number in [-90, 90]", STR(LK_LAT)));
	if (HAS(LK_CRS) && crs == NULL)
		lc_push(reasons, &nreasons,
				psprintf("coord_system \"%s\" is not WGS84, CGCS2000, GCJ02 or BD09", STR(LK_CRS)));
	if (HAS(LK_AZIMUTH) && !az_ok)
		lc_push(reasons, &nreasons, psprintf("azimuth \"%s\" is not a number in [0, 360)", STR(LK_AZIMUTH)));
	if (HAS(LK_FOV_ANGLE) && !fova_ok)
		lc_push(reasons, &nreasons, psprintf("fov_angle \"%s\" is not a number in (0, 360]", STR(LK_FOV_ANGLE)));
	if (HAS(LK_FOV_RANGE) && !fovr_ok)
		lc_push(reasons, &nreasons, psprintf("fov_range_m \"%s\" is not a positive number", STR(LK_FOV_RANGE)));
	if (HAS(LK_HEIGHT) && !height_ok)
		lc_push(reasons, &nreasons,
				psprintf("install_height_m \"%s\" is not a number >= 0", STR(LK_HEIGHT)));
	if (HAS(LK_CATALOG) && lc_catalog_bad(st, c[LK_CATALOG]))
		lc_push(reasons, &nreasons,
				psprintf("catalog \"%s\" names an unknown catalogue node", STR(LK_CATALOG)));
	if (HAS(LK_STREAM_URL) && !lc_url_ok(st, c[LK_STREAM_URL]))
		lc_push(reasons, &nreasons,
				psprintf("stream_url \"%s\" is not an rtsp://, rtsps://, http:// or https:// address",
						 STR(LK_STREAM_URL)));
	values[LO_REASONS] = lc_array(reasons, nreasons);
	nulls[LO_REASONS] = false;

	/*
	 * repeated: a row without reasons whose code (as a code) an earlier such
	 * row had.  Codes equal as text are equal as codes, so no repeated code
	 * goes unflagged; the import looks for repeated codes (as text) only
	 * when some row is flagged.
	 */
	{
		bool		found = false;

		if (nreasons == 0 && HAS(LK_CODE))
			hash_search(st->seen, &code, HASH_ENTER, &found);
		values[LO_REPEATED] = BoolGetDatum(found);
		nulls[LO_REPEATED] = false;
	}

	/*
	 * ch_capabilities: the names between |, ; or ；, spaces trimmed, empty
	 * ones dropped (the SQL's usual-list shortcut gives the same array)
	 */
	{
		Datum	   *caps = NULL;
		int			ncaps = 0;

		if (HAS(LK_CAPABILITIES))
		{
			const char *p = c[LK_CAPABILITIES].p;
			int			len = c[LK_CAPABILITIES].len;
			int			start = 0;
			int			i = 0;

			caps = palloc(sizeof(Datum) * (len + 1));
			while (i <= len)
			{
				int			sep = 0;	/* separator length at i, 0 if none */
				int			ml = 1;

				if (i < len)
				{
					ml = pg_mblen(p + i);
					if (p[i] == '|' || p[i] == ';')
						sep = 1;
					else if (ml == st->semicolon_wide_len && i + ml <= len &&
							 memcmp(p + i, st->semicolon_wide, ml) == 0)
						sep = ml;
				}
				if (i == len || sep > 0)
				{
					const char *e = p + start;
					int			el = i - start;

					while (el > 0 && e[0] == ' ')
						e++, el--;
					while (el > 0 && e[el - 1] == ' ')
						el--;
					if (el > 0)
						caps[ncaps++] = lc_text(e, el);
					if (i == len)
						break;
					i += sep;
					start = i;
				}
				else
					i += ml;
			}
		}
		values[LO_CH_CAPABILITIES] = lc_array(caps, ncaps);
		nulls[LO_CH_CAPABILITIES] = false;
	}
	if (HAS(LK_LON) && crs != NULL)
		values[LO_CH_COORD_SOURCE] = CStringGetTextDatum(crs), nulls[LO_CH_COORD_SOURCE] = false;
	{
		Datum		ov[LK_NCOLS];
		int			n = 0;

		lc_push(ov, &n, "name");
		if (HAS(LK_ALIAS)) lc_push(ov, &n, "alias");
		if (HAS(LK_ADDRESS)) lc_push(ov, &n, "address");
		if (HAS(LK_CIVIL)) lc_push(ov, &n, "civil_code");
		if (HAS(LK_STREET)) lc_push(ov, &n, "street");
		if (HAS(LK_PLACE_TYPE)) lc_push(ov, &n, "place_type");
		if (HAS(LK_POINT_TYPE)) lc_push(ov, &n, "point_type");
		if (HAS(LK_RESOLUTION)) lc_push(ov, &n, "resolution");
		if (HAS(LK_AZIMUTH)) lc_push(ov, &n, "azimuth");
		if (HAS(LK_FOV_ANGLE)) lc_push(ov, &n, "fov_angle");
		if (HAS(LK_FOV_RANGE)) lc_push(ov, &n, "fov_range_m");
		if (HAS(LK_HEIGHT)) lc_push(ov, &n, "install_height_m");
		if (HAS(LK_CAPABILITIES)) lc_push(ov, &n, "capabilities");
		if (HAS(LK_UNIT)) lc_push(ov, &n, "unit_id");
		if (HAS(LK_STREAM_URL)) lc_push(ov, &n, "stream_url");
		if (HAS(LK_LON)) lc_push(ov, &n, "geom");
		values[LO_CH_OVERRIDDEN] = lc_array(ov, n);
		nulls[LO_CH_OVERRIDDEN] = false;
	}
#undef HAS
#undef STR
}

PG_FUNCTION_INFO_V1(vms_ledger_check_rows);
Datum
vms_ledger_check_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	LcState		st;
	int			colpos[LK_NCOLS];
	int			header_fields;
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1];
	SPIPlanPtr	plan;
	Portal		portal;
	MemoryContext rowcxt;
	MemoryContext oldcxt;
	Datum		values[LO_NATTS];
	bool		nulls[LO_NATTS];
	char	   *wide;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("header line, columns and header field count are required")));
	InitMaterializedSRF(fcinfo, 0);
	if (rsinfo->setDesc->natts != LO_NATTS)
		elog(ERROR, "vms.ledger_check_rows: expected %d output columns, got %d", LO_NATTS, rsinfo->setDesc->natts);
	header_fields = PG_GETARG_INT32(2);
	{
		Jsonb	   *cols = PG_GETARG_JSONB_P(1);

		/* the lookups below read the container as an object's pairs */
		if (!JB_ROOT_IS_OBJECT(cols))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("columns must be a JSON object"),
					 errdetail("It maps template keys to field positions, as {\"code\": 1, \"name\": 2}.")));
		for (int k = 0; k < LK_NCOLS; k++)
		{
			JsonbValue	v;

			colpos[k] = 0;
			if (getKeyJsonValueFromContainer(&cols->root, lc_keys[k], strlen(lc_keys[k]), &v) &&
				v.type == jbvNumeric)
				colpos[k] = DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(v.val.numeric)));
		}
	}
	st.point_types = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P_COPY(3);
	if (st.point_types != NULL && !JB_ROOT_IS_OBJECT(st.point_types))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("point types must be a JSON object"),
				 errdetail("It maps lower-case point type names and codes to codes.")));
	st.url_re = cstring_to_text("^(rtsps?|https?)://[^[:space:][:cntrl:]/?#][^[:space:][:cntrl:]]*$");
	wide = pg_any_to_server("\xEF\xBC\x9B", 3, PG_UTF8);	/* ； U+FF1B */
	st.semicolon_wide = wide;
	st.semicolon_wide_len = strlen(wide);
	args[0] = PG_GETARG_DATUM(0);
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(GbCode);
		ctl.entrysize = sizeof(GbCode);
		ctl.hcxt = CurrentMemoryContext;
		st.seen = hash_create("ledger_check_rows codes", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}

	SPI_connect();
	st.catalog_plan = SPI_prepare("SELECT 1 FROM vms.catalog_node n WHERE n.code = $1::vms.gbcode",
								  1, (Oid[]) {TEXTOID});
	if (st.catalog_plan == NULL)
		elog(ERROR, "vms.ledger_check_rows: could not prepare the catalogue lookup");
	plan = SPI_prepare("SELECT line_no, fields, error FROM pg_temp._ledger_csv WHERE line_no > $1",
					   1, argtypes);
	if (plan == NULL)
		elog(ERROR, "vms.ledger_check_rows: could not read pg_temp._ledger_csv");
	portal = SPI_cursor_open(NULL, plan, args, NULL, true);
	if (portal->tupDesc->natts != 3 || TupleDescAttr(portal->tupDesc, 0)->atttypid != INT8OID ||
		TupleDescAttr(portal->tupDesc, 1)->atttypid != TEXTARRAYOID ||
		TupleDescAttr(portal->tupDesc, 2)->atttypid != TEXTOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("pg_temp._ledger_csv must have the columns line_no bigint, fields text[], error text"),
				 errhint("vms.ledger_import and vms.ledger_import_file stage the records so.")));
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "ledger_check_rows row", ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		SPITupleTable *tt;
		uint64		nrows;

		SPI_cursor_fetch(portal, true, 1000);
		if (SPI_processed == 0)
			break;
		tt = SPI_tuptable;
		nrows = SPI_processed;
		for (uint64 r = 0; r < nrows; r++)
		{
			bool		line_null, fields_null, error_null;
			Datum		line = SPI_getbinval(tt->vals[r], tt->tupdesc, 1, &line_null);
			Datum		fields = SPI_getbinval(tt->vals[r], tt->tupdesc, 2, &fields_null);
			Datum		error = SPI_getbinval(tt->vals[r], tt->tupdesc, 3, &error_null);

			CHECK_FOR_INTERRUPTS();
			oldcxt = MemoryContextSwitchTo(rowcxt);
			lc_check_row(&st, colpos, header_fields, line, fields, fields_null, error, error_null,
						 values, nulls);
			nulls[LO_LINE] = line_null;
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
			MemoryContextSwitchTo(oldcxt);
			MemoryContextReset(rowcxt);
		}
		SPI_freetuptable(tt);
	}
	SPI_cursor_close(portal);
	SPI_finish();
	return (Datum) 0;
}
