/*
 * gbcode.h — the 20-digit GB/T 28181 code as a fixed-size binary value.
 *
 * Layout CCCCCCCC II TTT N SSSSSS is kept as three unsigned integers:
 * the 8-digit centre code, the 6 digits industry+type+network, and the
 * 6-digit serial.  Comparing the three in order gives the text order of
 * the 20 digits, and the struct has no padding so its 12 bytes can be
 * hashed directly.
 */
#ifndef VMS_GBCODE_H
#define VMS_GBCODE_H

#include "postgres.h"
#include "fmgr.h"

#define GBCODE_DIGITS 20

typedef struct GbCode
{
	uint32		centre;			/* digits 1-8: civil region + grassroots unit */
	uint32		itn;			/* digits 9-14: industry(2) type(3) network(1) */
	uint32		serial;			/* digits 15-20 */
} GbCode;

StaticAssertDecl(sizeof(GbCode) == 12, "GbCode must be 12 bytes without padding");

#define DatumGetGbCodeP(X)	((GbCode *) DatumGetPointer(X))
#define GbCodePGetDatum(X)	PointerGetDatum(X)
#define PG_GETARG_GBCODE_P(n) DatumGetGbCodeP(PG_GETARG_DATUM(n))
#define PG_RETURN_GBCODE_P(x) return GbCodePGetDatum(x)

#define GBCODE_INDUSTRY(c)	((int) ((c)->itn / 10000))
#define GBCODE_TYPE(c)		((int) (((c)->itn / 10) % 1000))
#define GBCODE_NETWORK(c)	((int) ((c)->itn % 10))

/*
 * Parse text into *out.  Returns NULL on success, otherwise a palloc'd
 * sentence saying what is wrong and where (used as errdetail and by the
 * import's row reasons).
 */
extern char *gbcode_parse(const char *str, size_t len, GbCode *out);
extern void gbcode_format(const GbCode *code, char *buf);	/* buf: 21 bytes */
extern int	gbcode_cmp_internal(const GbCode *a, const GbCode *b);

/* Reference tables from GB/T 28181 (gbcode_tables.c). */
extern const char *gbcode_type_name_en(int type);
extern const char *gbcode_type_name_zh(int type);
extern const char *gbcode_industry_name_en(int industry);
extern bool gbcode_network_reserved(int network);

#endif
