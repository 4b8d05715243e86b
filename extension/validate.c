/*
 * validate.c — small validators used by batch imports, so a bad value is a
 * row's reason rather than an error that aborts the whole load.
 */
#include "postgres.h"

#include <arpa/inet.h>

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
