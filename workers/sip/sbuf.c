/*
 * sbuf.c — bounded growable strings (see sbuf.h).
 */
#include "sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
sbuf_init(SBuf *b, size_t limit)
{
	b->cap = 256;
	b->data = malloc(b->cap);
	b->len = 0;
	b->limit = limit;
	b->overflow = (b->data == NULL);
	if (b->data)
		b->data[0] = '\0';
}

void
sbuf_free(SBuf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void
sbuf_reset(SBuf *b)
{
	b->len = 0;
	b->overflow = (b->data == NULL);
	if (b->data)
		b->data[0] = '\0';
}

void
sbuf_append(SBuf *b, const char *s, size_t n)
{
	if (b->overflow)
		return;
	if (b->len + n + 1 > b->limit)
	{
		b->overflow = true;
		return;
	}
	if (b->len + n + 1 > b->cap)
	{
		size_t		cap = b->cap;
		char	   *d;

		while (cap < b->len + n + 1)
			cap *= 2;
		d = realloc(b->data, cap);
		if (d == NULL)
		{
			b->overflow = true;
			return;
		}
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
sbuf_puts(SBuf *b, const char *s)
{
	sbuf_append(b, s, strlen(s));
}

void
sbuf_printf(SBuf *b, const char *fmt,...)
{
	char		tmp[1024];
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t) n >= sizeof(tmp))
	{
		b->overflow = true;		/* callers format short things only */
		return;
	}
	sbuf_append(b, tmp, (size_t) n);
}

/* a JSON string literal; control characters escaped, UTF-8 passed through */
void
sbuf_json_string(SBuf *b, const char *s)
{
	sbuf_append(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
	{
		switch (*p)
		{
			case '"':
				sbuf_append(b, "\\\"", 2);
				break;
			case '\\':
				sbuf_append(b, "\\\\", 2);
				break;
			case '\n':
				sbuf_append(b, "\\n", 2);
				break;
			case '\r':
				sbuf_append(b, "\\r", 2);
				break;
			case '\t':
				sbuf_append(b, "\\t", 2);
				break;
			default:
				if (*p < 0x20)
					sbuf_printf(b, "\\u%04x", *p);
				else
					sbuf_append(b, (const char *) p, 1);
		}
	}
	sbuf_append(b, "\"", 1);
}
