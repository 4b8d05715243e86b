/*
 * validate.c — small validators used by batch imports, so a bad value is a
 * row's reason rather than an error that aborts the whole load.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <math.h>

#include "fmgr.h"
#include "utils/builtins.h"

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
