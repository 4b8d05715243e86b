/*
 * gbcode_parts.c — accessors, the constructor, civil-region ranges and the
 * semantic check of a syntactically valid code.
 */
#include "postgres.h"

#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"

#include "gbcode.h"

static text *
digits_text(uint32 value, int width)
{
	char		buf[16];

	snprintf(buf, sizeof(buf), "%0*u", width, value);
	return cstring_to_text(buf);
}

PG_FUNCTION_INFO_V1(gbcode_centre);
Datum
gbcode_centre(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(digits_text(PG_GETARG_GBCODE_P(0)->centre, 8));
}

PG_FUNCTION_INFO_V1(gbcode_province);
Datum
gbcode_province(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(digits_text(PG_GETARG_GBCODE_P(0)->centre / 1000000, 2));
}

PG_FUNCTION_INFO_V1(gbcode_city);
Datum
gbcode_city(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(digits_text(PG_GETARG_GBCODE_P(0)->centre / 10000, 4));
}

PG_FUNCTION_INFO_V1(gbcode_county);
Datum
gbcode_county(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(digits_text(PG_GETARG_GBCODE_P(0)->centre / 100, 6));
}

PG_FUNCTION_INFO_V1(gbcode_industry);
Datum
gbcode_industry(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(digits_text(GBCODE_INDUSTRY(PG_GETARG_GBCODE_P(0)), 2));
}

PG_FUNCTION_INFO_V1(gbcode_type);
Datum
gbcode_type(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(GBCODE_TYPE(PG_GETARG_GBCODE_P(0)));
}

PG_FUNCTION_INFO_V1(gbcode_type_name);
Datum
gbcode_type_name(PG_FUNCTION_ARGS)
{
	const char *name = gbcode_type_name_en(GBCODE_TYPE(PG_GETARG_GBCODE_P(0)));

	if (name == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(name));
}

PG_FUNCTION_INFO_V1(gbcode_network);
Datum
gbcode_network(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(GBCODE_NETWORK(PG_GETARG_GBCODE_P(0)));
}

PG_FUNCTION_INFO_V1(gbcode_serial);
Datum
gbcode_serial(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(digits_text(PG_GETARG_GBCODE_P(0)->serial, 6));
}

static void
check_part_range(const char *part, int64 value, int64 max, int digits)
{
	if (value < 0 || value > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("gbcode part \"%s\" is out of range", part),
				 errdetail("Value " INT64_FORMAT " does not fit in %d decimal digits.",
						   value, digits)));
}

/*
 * vms.gbcode_make(centre text, industry int, type int, network int, serial int)
 * The centre is text because its leading zeros matter and it must be exactly
 * 8 digits; the others are numbers checked against their widths.
 */
PG_FUNCTION_INFO_V1(gbcode_make);
Datum
gbcode_make(PG_FUNCTION_ARGS)
{
	text	   *centre_t = PG_GETARG_TEXT_PP(0);
	const char *centre = VARDATA_ANY(centre_t);
	int			clen = VARSIZE_ANY_EXHDR(centre_t);
	int32		industry = PG_GETARG_INT32(1);
	int32		type = PG_GETARG_INT32(2);
	int32		network = PG_GETARG_INT32(3);
	int32		serial = PG_GETARG_INT32(4);
	GbCode	   *result = palloc(sizeof(GbCode));
	uint32		c = 0;

	if (clen != 8)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("gbcode part \"centre\" must be 8 digits"),
				 errdetail("The centre code given has %d characters.", clen)));
	for (int i = 0; i < 8; i++)
	{
		if (centre[i] < '0' || centre[i] > '9')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("gbcode part \"centre\" must be 8 digits"),
					 errdetail("Character at position %d is not an ASCII digit.", i + 1)));
		c = c * 10 + (centre[i] - '0');
	}
	check_part_range("industry", industry, 99, 2);
	check_part_range("type", type, 999, 3);
	check_part_range("network", network, 9, 1);
	check_part_range("serial", serial, 999999, 6);

	result->centre = c;
	result->itn = (uint32) (industry * 10000 + type * 10 + network);
	result->serial = (uint32) serial;
	PG_RETURN_GBCODE_P(result);
}

/*
 * Bounds of the codes inside a civil region given as a 2-, 4-, 6- or 8-digit
 * prefix.  vms.gbcode_in_region() is an inlinable SQL function comparing the
 * code against these, so the planner turns it into a btree range scan.
 */
static uint32
region_prefix_centre(text *prefix_t, bool upper)
{
	const char *p = VARDATA_ANY(prefix_t);
	int			len = VARSIZE_ANY_EXHDR(prefix_t);
	uint32		v = 0;

	if (len != 2 && len != 4 && len != 6 && len != 8)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("civil region prefix must have 2, 4, 6 or 8 digits"),
				 errdetail("The prefix \"%.*s\" has %d characters.", len, p, len),
				 errhint("Use a GB/T 2260 code: 2 digits for a province, 4 for a city, 6 for a county, 8 for a grassroots unit.")));
	for (int i = 0; i < 8; i++)
	{
		int			d;

		if (i < len)
		{
			if (p[i] < '0' || p[i] > '9')
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("civil region prefix must have 2, 4, 6 or 8 digits"),
						 errdetail("Character at position %d of \"%.*s\" is not an ASCII digit.",
								   i + 1, len, p)));
			d = p[i] - '0';
		}
		else
			d = upper ? 9 : 0;
		v = v * 10 + d;
	}
	return v;
}

PG_FUNCTION_INFO_V1(gbcode_region_lower);
Datum
gbcode_region_lower(PG_FUNCTION_ARGS)
{
	GbCode	   *result = palloc0(sizeof(GbCode));

	result->centre = region_prefix_centre(PG_GETARG_TEXT_PP(0), false);
	PG_RETURN_GBCODE_P(result);
}

PG_FUNCTION_INFO_V1(gbcode_region_upper);
Datum
gbcode_region_upper(PG_FUNCTION_ARGS)
{
	GbCode	   *result = palloc(sizeof(GbCode));

	result->centre = region_prefix_centre(PG_GETARG_TEXT_PP(0), true);
	result->itn = 999999;
	result->serial = 999999;
	PG_RETURN_GBCODE_P(result);
}

/*
 * What is wrong with a code that parsed: up to four problem keys and their
 * details, in a fixed order; returns how many.
 */
static int
gbcode_problems_collect(GbCode *code, const char **problems, char **details)
{
	int			type = GBCODE_TYPE(code);
	int			industry = GBCODE_INDUSTRY(code);
	int			network = GBCODE_NETWORK(code);
	int			n = 0;

	if (code->centre / 1000000 == 0)
	{
		problems[n] = "invalid_province";
		details[n++] = psprintf("Province code 00 in the centre code %08u is not a GB/T 2260 province.",
								code->centre);
	}
	if (gbcode_industry_name_en(industry) == NULL)
	{
		problems[n] = "unknown_industry";
		details[n++] = psprintf("Industry code %02d is not assigned in GB/T 28181.", industry);
	}
	if (gbcode_type_name_en(type) == NULL)
	{
		problems[n] = "unknown_type";
		details[n++] = psprintf("Type code %03d is not assigned in GB/T 28181.", type);
	}
	if (gbcode_network_reserved(network))
	{
		problems[n] = "reserved_network";
		details[n++] = psprintf("Network identifier %d is reserved.", network);
	}
	return n;
}

/*
 * vms.gbcode_check(code) → TABLE(problem text, detail text): what is wrong
 * with a code that parsed.  Problem keys are stable (governance rules and
 * reports key on them); details are for people.
 */
PG_FUNCTION_INFO_V1(gbcode_check);
Datum
gbcode_check(PG_FUNCTION_ARGS)
{
	GbCode	   *code = PG_GETARG_GBCODE_P(0);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const char *problems[4];
	char	   *details[4];
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	n = gbcode_problems_collect(code, problems, details);

	for (int i = 0; i < n; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = CStringGetTextDatum(problems[i]);
		values[1] = CStringGetTextDatum(details[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * vms._gbcode_check_details(code) → text: the details of vms.gbcode_check
 * joined by "; " in its order, NULL when the code is fine.  The governance
 * rule code_role calls it once a channel: a scalar, where a set-returning
 * call a channel cost 2 s over a million channels (issue 20).
 */
PG_FUNCTION_INFO_V1(gbcode_check_details);
Datum
gbcode_check_details(PG_FUNCTION_ARGS)
{
	GbCode	   *code = PG_GETARG_GBCODE_P(0);
	const char *problems[4];
	char	   *details[4];
	int			n = gbcode_problems_collect(code, problems, details);
	StringInfoData buf;

	if (n == 0)
		PG_RETURN_NULL();
	initStringInfo(&buf);
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, "; ");
		appendStringInfoString(&buf, details[i]);
	}
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}
