/*
 * coord.c — conversions between the coordinate systems Chinese field data
 * arrives in: WGS-84 (GPS), CGCS2000 (national datum; within centimetres of
 * WGS-84, treated as equal), GCJ-02 (the obfuscated "Mars" grid used by
 * Amap/Tencent maps) and BD-09 (Baidu's offset of GCJ-02).
 *
 * GCJ-02 has no closed-form inverse; gcj02 → wgs84 iterates the forward
 * transform until it agrees to 1e-9 degrees (well below a millimetre).
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"

#define GCJ_A	6378245.0
#define GCJ_EE	0.00669342162296594323
#define BD_XPI	(M_PI * 3000.0 / 180.0)

typedef enum Crs
{
	CRS_WGS84,
	CRS_GCJ02,
	CRS_BD09
} Crs;

/* GCJ-02 offsets apply only inside the rectangle the algorithm defines for China. */
static bool
outside_china(double lon, double lat)
{
	return lon < 72.004 || lon > 137.8347 || lat < 0.8293 || lat > 55.8271;
}

static double
transform_lat(double x, double y)
{
	double		r = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt(fabs(x));

	r += (20.0 * sin(6.0 * x * M_PI) + 20.0 * sin(2.0 * x * M_PI)) * 2.0 / 3.0;
	r += (20.0 * sin(y * M_PI) + 40.0 * sin(y / 3.0 * M_PI)) * 2.0 / 3.0;
	r += (160.0 * sin(y / 12.0 * M_PI) + 320.0 * sin(y * M_PI / 30.0)) * 2.0 / 3.0;
	return r;
}

static double
transform_lon(double x, double y)
{
	double		r = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt(fabs(x));

	r += (20.0 * sin(6.0 * x * M_PI) + 20.0 * sin(2.0 * x * M_PI)) * 2.0 / 3.0;
	r += (20.0 * sin(x * M_PI) + 40.0 * sin(x / 3.0 * M_PI)) * 2.0 / 3.0;
	r += (150.0 * sin(x / 12.0 * M_PI) + 300.0 * sin(x / 30.0 * M_PI)) * 2.0 / 3.0;
	return r;
}

static void
wgs84_to_gcj02(double lon, double lat, double *olon, double *olat)
{
	double		dlat,
				dlon,
				radlat,
				magic,
				sqrtmagic;

	if (outside_china(lon, lat))
	{
		*olon = lon;
		*olat = lat;
		return;
	}
	dlat = transform_lat(lon - 105.0, lat - 35.0);
	dlon = transform_lon(lon - 105.0, lat - 35.0);
	radlat = lat / 180.0 * M_PI;
	magic = sin(radlat);
	magic = 1 - GCJ_EE * magic * magic;
	sqrtmagic = sqrt(magic);
	dlat = (dlat * 180.0) / ((GCJ_A * (1 - GCJ_EE)) / (magic * sqrtmagic) * M_PI);
	dlon = (dlon * 180.0) / (GCJ_A / sqrtmagic * cos(radlat) * M_PI);
	*olon = lon + dlon;
	*olat = lat + dlat;
}

static void
gcj02_to_wgs84(double lon, double lat, double *olon, double *olat)
{
	double		wlon = lon,
				wlat = lat;

	if (outside_china(lon, lat))
	{
		*olon = lon;
		*olat = lat;
		return;
	}
	for (int i = 0; i < 30; i++)
	{
		double		glon,
					glat,
					elon,
					elat;

		wgs84_to_gcj02(wlon, wlat, &glon, &glat);
		elon = glon - lon;
		elat = glat - lat;
		wlon -= elon;
		wlat -= elat;
		if (fabs(elon) < 1e-9 && fabs(elat) < 1e-9)
			break;
	}
	*olon = wlon;
	*olat = wlat;
}

static void
gcj02_to_bd09(double lon, double lat, double *olon, double *olat)
{
	double		z = sqrt(lon * lon + lat * lat) + 0.00002 * sin(lat * BD_XPI);
	double		theta = atan2(lat, lon) + 0.000003 * cos(lon * BD_XPI);

	*olon = z * cos(theta) + 0.0065;
	*olat = z * sin(theta) + 0.006;
}

static void
bd09_to_gcj02(double lon, double lat, double *olon, double *olat)
{
	double		x = lon - 0.0065;
	double		y = lat - 0.006;
	double		z = sqrt(x * x + y * y) - 0.00002 * sin(y * BD_XPI);
	double		theta = atan2(y, x) - 0.000003 * cos(x * BD_XPI);

	*olon = z * cos(theta);
	*olat = z * sin(theta);
}

static Crs
parse_crs(text *name_t)
{
	char	   *name = text_to_cstring(name_t);
	char		norm[32];
	int			n = 0;

	/* case-insensitive, ignoring '-', '_' and spaces: "GCJ-02" = "gcj02" */
	for (char *p = name; *p && n < (int) sizeof(norm) - 1; p++)
		if (*p != '-' && *p != '_' && *p != ' ')
			norm[n++] = pg_ascii_tolower((unsigned char) *p);
	norm[n] = '\0';

	if (strcmp(norm, "wgs84") == 0 || strcmp(norm, "epsg:4326") == 0 ||
		strcmp(norm, "cgcs2000") == 0 || strcmp(norm, "epsg:4490") == 0)
		return CRS_WGS84;
	if (strcmp(norm, "gcj02") == 0)
		return CRS_GCJ02;
	if (strcmp(norm, "bd09") == 0 || strcmp(norm, "bd09ll") == 0)
		return CRS_BD09;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown coordinate system \"%s\"", name),
			 errhint("Use one of WGS84, CGCS2000, GCJ02, BD09.")));
	return CRS_WGS84;			/* keep compiler quiet */
}

static void
check_lonlat(double lon, double lat)
{
	if (isnan(lon) || isnan(lat) || lon < -180 || lon > 180 || lat < -90 || lat > 90)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("coordinate out of range"),
				 errdetail("Longitude %g must lie in [-180, 180] and latitude %g in [-90, 90].",
						   lon, lat)));
}

/*
 * Convert (lon, lat) between systems by way of GCJ-02, which both offset
 * systems are defined against.
 */
static void
convert(Crs from, Crs to, double lon, double lat, double *olon, double *olat)
{
	double		glon = lon,
				glat = lat;

	if (from == to)
	{
		*olon = lon;
		*olat = lat;
		return;
	}
	if (from == CRS_WGS84)
		wgs84_to_gcj02(lon, lat, &glon, &glat);
	else if (from == CRS_BD09)
		bd09_to_gcj02(lon, lat, &glon, &glat);

	if (to == CRS_WGS84)
		gcj02_to_wgs84(glon, glat, olon, olat);
	else if (to == CRS_BD09)
		gcj02_to_bd09(glon, glat, olon, olat);
	else
	{
		*olon = glon;
		*olat = glat;
	}
}

/* vms.coord_convert(lon, lat, from_crs, to_crs) → float8[2] {lon, lat} */
PG_FUNCTION_INFO_V1(coord_convert);
Datum
coord_convert(PG_FUNCTION_ARGS)
{
	double		lon = PG_GETARG_FLOAT8(0);
	double		lat = PG_GETARG_FLOAT8(1);
	Crs			from = parse_crs(PG_GETARG_TEXT_PP(2));
	Crs			to = parse_crs(PG_GETARG_TEXT_PP(3));
	Datum		out[2];
	double		olon,
				olat;

	check_lonlat(lon, lat);
	convert(from, to, lon, lat, &olon, &olat);
	out[0] = Float8GetDatum(olon);
	out[1] = Float8GetDatum(olat);
	PG_RETURN_ARRAYTYPE_P(construct_array(out, 2, FLOAT8OID, sizeof(float8),
										  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}
