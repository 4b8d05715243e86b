/*
 * sbuf.h — a bounded growable string for the SIP and MANSCDP parsers.
 * Plain C (no PostgreSQL), so the parsers build into the fuzz target too.
 * Appends past `limit` set `overflow` instead of growing.  Also the checks
 * every string from a device passes before it is stored: valid UTF-8,
 * converted from GB18030 when it is not, cut at a character boundary.
 */
#ifndef VMS_SBUF_H
#define VMS_SBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct SBuf
{
	char	   *data;
	size_t		len;
	size_t		cap;
	size_t		limit;
	bool		overflow;
} SBuf;

extern void sbuf_init(SBuf *b, size_t limit);
extern void sbuf_free(SBuf *b);
extern void sbuf_reset(SBuf *b);
extern void sbuf_append(SBuf *b, const char *s, size_t n);
extern void sbuf_puts(SBuf *b, const char *s);
extern void sbuf_printf(SBuf *b, const char *fmt,...) __attribute__((format(printf, 2, 3)));
extern void sbuf_json_string(SBuf *b, const char *s);

/* text from devices */
extern bool text_is_utf8(const char *s, size_t len);
extern size_t text_utf8_clip(const char *s, size_t len, size_t max);
extern bool text_to_utf8(const char *src, size_t len, char *dst, size_t dstlen);

#endif
