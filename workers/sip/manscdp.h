/*
 * manscdp.h — MANSCDP (GB/T 28181 XML bodies) parsed with libxml2 into
 * JSON for the database.  Network access and entity expansion are off,
 * DTDs are refused, size and depth are bounded, and GB2312/GB18030 bodies
 * are converted to UTF-8.  Plain C: it builds into the fuzz target as well.
 */
#ifndef VMS_MANSCDP_H
#define VMS_MANSCDP_H

#include "sbuf.h"

#define MANSCDP_MAX_ITEMS 20000
#define MANSCDP_MAX_DEPTH 8

typedef enum ManscdpStatus
{
	MANSCDP_OK = 0,
	MANSCDP_TOO_LARGE,
	MANSCDP_DTD,				/* DOCTYPE/ENTITY: never used by MANSCDP, refused */
	MANSCDP_MALFORMED,
	MANSCDP_TOO_DEEP,
	MANSCDP_NO_CMDTYPE,
	MANSCDP_TOO_MANY_ITEMS
} ManscdpStatus;

typedef struct ManscdpItem
{
	char		device_id[24];	/* as sent, at most 20 characters kept */
	char	   *json;			/* the item as a JSON object (malloc'd) */
} ManscdpItem;

typedef struct Manscdp
{
	char		root[16];		/* Query, Response, Notify, Control */
	char		cmd_type[32];
	char		sn[16];			/* digits only, else empty */
	char		device_id[24];	/* 20 digits, else empty */
	long		sum_num;		/* -1 when absent */
	const char *encoding;		/* "UTF-8" or "GB18030": how the body was read */
	SBuf		json;			/* the document as one JSON object, lists as arrays */
	int			nitems;			/* <Item>s of the first list (DeviceList, AlarmList...) */
	ManscdpItem *items;
	char		repeated[48];	/* a Control or Query that names an element twice at the top level, or has a
								 * CmdType, SN or DeviceID below it (a Response: an element twice at the top
								 * level): which (e.g. "<CmdType> twice"); else empty */
} Manscdp;

extern ManscdpStatus manscdp_parse(const char *body, size_t len, size_t limit, Manscdp *out);
extern void manscdp_free(Manscdp *m);
extern const char *manscdp_status_text(ManscdpStatus s);
extern bool manscdp_is_utf8(const char *s, size_t len);

#endif
