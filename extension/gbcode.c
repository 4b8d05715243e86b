/*
 * gbcode.c — input/output, comparison and hashing for vms.gbcode.
 *
 * Whitespace rule: leading and trailing ASCII whitespace is ignored (as
 * PostgreSQL does for numbers); everything between must be exactly 20 ASCII
 * digits.  Full-width digits, separators and inner spaces are rejected.
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "libpq/pqformat.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/sortsupport.h"

#include "gbcode.h"

PG_FUNCTION_INFO_V1(gbcode_in);
PG_FUNCTION_INFO_V1(gbcode_out);
PG_FUNCTION_INFO_V1(gbcode_recv);
PG_FUNCTION_INFO_V1(gbcode_send);
PG_FUNCTION_INFO_V1(gbcode_lt);
PG_FUNCTION_INFO_V1(gbcode_le);
PG_FUNCTION_INFO_V1(gbcode_eq);
PG_FUNCTION_INFO_V1(gbcode_ne);
PG_FUNCTION_INFO_V1(gbcode_ge);
PG_FUNCTION_INFO_V1(gbcode_gt);
PG_FUNCTION_INFO_V1(gbcode_cmp);
PG_FUNCTION_INFO_V1(gbcode_sortsupport);
PG_FUNCTION_INFO_V1(gbcode_hash);
PG_FUNCTION_INFO_V1(gbcode_hash_extended);
PG_FUNCTION_INFO_V1(gbcode_parse_error);

static inline bool
is_ascii_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

char *
gbcode_parse(const char *str, size_t len, GbCode *out)
{
	size_t		start = 0;
	size_t		end = len;
	uint64		parts[3] = {0, 0, 0};

	while (start < end && is_ascii_space(str[start]))
		start++;
	while (end > start && is_ascii_space(str[end - 1]))
		end--;

	if (start == end)
		return psprintf(len == 0 ? "The input is empty."
						: "The input contains only whitespace.");

	for (size_t i = start; i < end; i++)
	{
		if (str[i] < '0' || str[i] > '9')
		{
			int			charpos = pg_mbstrlen_with_len(str, (int) i) + 1;
			int			clen = pg_mblen(str + i);

			if (i + clen > len)
				clen = (int) (len - i);
			return psprintf("Character \"%.*s\" at position %d is not an ASCII digit.",
							clen, str + i, charpos);
		}
	}

	if (end - start != GBCODE_DIGITS)
		return psprintf("The code has %d digits; a GB/T 28181 code has exactly %d.",
						(int) (end - start), GBCODE_DIGITS);

	for (int i = 0; i < GBCODE_DIGITS; i++)
	{
		int			part = i < 8 ? 0 : (i < 14 ? 1 : 2);

		parts[part] = parts[part] * 10 + (str[start + i] - '0');
	}
	out->centre = (uint32) parts[0];
	out->itn = (uint32) parts[1];
	out->serial = (uint32) parts[2];
	return NULL;
}

void
gbcode_format(const GbCode *code, char *buf)
{
	snprintf(buf, GBCODE_DIGITS + 1, "%08u%06u%06u",
			 code->centre, code->itn, code->serial);
}

Datum
gbcode_in(PG_FUNCTION_ARGS)
{
	char	   *str = PG_GETARG_CSTRING(0);
	GbCode	   *result = palloc(sizeof(GbCode));
	char	   *problem = gbcode_parse(str, strlen(str), result);

	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type gbcode: \"%s\"", str),
				 errdetail_internal("%s", problem),
				 errhint("A GB/T 28181 code is 20 ASCII digits: centre code (8), industry (2), type (3), network (1), serial (6).")));
	PG_RETURN_GBCODE_P(result);
}

Datum
gbcode_out(PG_FUNCTION_ARGS)
{
	GbCode	   *code = PG_GETARG_GBCODE_P(0);
	char	   *buf = palloc(GBCODE_DIGITS + 1);

	gbcode_format(code, buf);
	PG_RETURN_CSTRING(buf);
}

/*
 * Binary form: the three parts as big-endian int4, 12 bytes.  Values out
 * of range are refused so a binary COPY cannot smuggle in a 21-digit code.
 */
Datum
gbcode_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	GbCode	   *result = palloc(sizeof(GbCode));

	result->centre = (uint32) pq_getmsgint(buf, 4);
	result->itn = (uint32) pq_getmsgint(buf, 4);
	result->serial = (uint32) pq_getmsgint(buf, 4);
	if (result->centre > 99999999 || result->itn > 999999 || result->serial > 999999)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid external gbcode value"),
				 errdetail("Parts %u, %u, %u exceed 8, 6 and 6 decimal digits.",
						   result->centre, result->itn, result->serial)));
	PG_RETURN_GBCODE_P(result);
}

Datum
gbcode_send(PG_FUNCTION_ARGS)
{
	GbCode	   *code = PG_GETARG_GBCODE_P(0);
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendint32(&buf, code->centre);
	pq_sendint32(&buf, code->itn);
	pq_sendint32(&buf, code->serial);
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

int
gbcode_cmp_internal(const GbCode *a, const GbCode *b)
{
	if (a->centre != b->centre)
		return a->centre < b->centre ? -1 : 1;
	if (a->itn != b->itn)
		return a->itn < b->itn ? -1 : 1;
	if (a->serial != b->serial)
		return a->serial < b->serial ? -1 : 1;
	return 0;
}

#define GBCODE_CMP_FN(name, op) \
Datum \
name(PG_FUNCTION_ARGS) \
{ \
	PG_RETURN_BOOL(gbcode_cmp_internal(PG_GETARG_GBCODE_P(0), PG_GETARG_GBCODE_P(1)) op 0); \
}

GBCODE_CMP_FN(gbcode_lt, <)
GBCODE_CMP_FN(gbcode_le, <=)
GBCODE_CMP_FN(gbcode_eq, ==)
GBCODE_CMP_FN(gbcode_ne, !=)
GBCODE_CMP_FN(gbcode_ge, >=)
GBCODE_CMP_FN(gbcode_gt, >)

Datum
gbcode_cmp(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(gbcode_cmp_internal(PG_GETARG_GBCODE_P(0), PG_GETARG_GBCODE_P(1)));
}

static int
gbcode_fastcmp(Datum a, Datum b, SortSupport ssup)
{
	return gbcode_cmp_internal(DatumGetGbCodeP(a), DatumGetGbCodeP(b));
}

/* Sort support skips the fmgr call per comparison; sorts and index builds use it. */
Datum
gbcode_sortsupport(PG_FUNCTION_ARGS)
{
	SortSupport ssup = (SortSupport) PG_GETARG_POINTER(0);

	ssup->comparator = gbcode_fastcmp;
	PG_RETURN_VOID();
}

Datum
gbcode_hash(PG_FUNCTION_ARGS)
{
	return hash_any((const unsigned char *) PG_GETARG_GBCODE_P(0), sizeof(GbCode));
}

Datum
gbcode_hash_extended(PG_FUNCTION_ARGS)
{
	return hash_any_extended((const unsigned char *) PG_GETARG_GBCODE_P(0),
							 sizeof(GbCode), PG_GETARG_INT64(1));
}

/*
 * vms.gbcode_parse_error(text) → text: NULL when the text is a valid code,
 * otherwise the same sentence gbcode_in would give as errdetail.  Lets
 * batch validation report a row's problem without an exception per row.
 */
Datum
gbcode_parse_error(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	GbCode		dummy;
	char	   *problem = gbcode_parse(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &dummy);

	if (problem == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(problem));
}
