/*
 * sbuf.c — bounded growable strings (see sbuf.h).
 */
#include "sbuf.h"

#include <errno.h>
#include <iconv.h>
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

/* length of the UTF-8 character at p (at most n bytes left), 0 if invalid */
static size_t
utf8_char(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];
	size_t		k;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		k = 2;
	else if (c >= 0xE0 && c <= 0xEF)
		k = 3;
	else if (c >= 0xF0 && c <= 0xF4)
		k = 4;
	else
		return 0;
	if (k > n)
		return 0;
	for (size_t i = 1; i < k; i++)
		if ((p[i] & 0xC0) != 0x80)
			return 0;
	/* overlong and surrogate forms, and beyond U+10FFFF */
	if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F) ||
		(c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] > 0x8F))
		return 0;
	return k;
}

bool
text_is_utf8(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;

	while (i < len)
	{
		size_t		k = utf8_char(p + i, len - i);

		if (k == 0 || (k == 1 && p[i] == 0))
			return false;
		i += k;
	}
	return true;
}

/* the longest prefix of valid UTF-8 s (len bytes) of at most max bytes that ends on a character boundary */
size_t
text_utf8_clip(const char *s, size_t len, size_t max)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;

	while (i < len)
	{
		size_t		k = utf8_char(p + i, len - i);

		if (k == 0 || i + k > max)
			break;
		i += k;
	}
	return i;
}

/*
 * Text from a device as UTF-8 in dst (NUL-terminated, cut at a character
 * boundary to fit): as it came when it is valid UTF-8, else read as
 * GB18030 (a superset of GB2312 and GBK, what Chinese devices send).
 * False, and dst empty, when it is neither.
 */
bool
text_to_utf8(const char *src, size_t len, char *dst, size_t dstlen)
{
	static iconv_t cd = (iconv_t) -1;
	char	   *tmp;
	char	   *in = (char *) src;
	char	   *out;
	size_t		inleft = len,
				outleft,
				n;

	if (dstlen == 0)
		return false;
	dst[0] = '\0';
	if (memchr(src, '\0', len) != NULL)
		return false;
	if (text_is_utf8(src, len))
	{
		n = text_utf8_clip(src, len, dstlen - 1);
		memcpy(dst, src, n);
		dst[n] = '\0';
		return true;
	}
	if (cd == (iconv_t) -1)
	{
		cd = iconv_open("UTF-8", "GB18030");
		if (cd == (iconv_t) -1)
			return false;
	}
	/* GB18030 takes at most 4 bytes where UTF-8 takes 4: 2x is ample */
	outleft = len * 2 + 4;
	tmp = malloc(outleft);
	if (tmp == NULL)
		return false;
	out = tmp;
	iconv(cd, NULL, NULL, NULL, NULL);
	if (iconv(cd, &in, &inleft, &out, &outleft) == (size_t) -1 || inleft != 0 ||
		!text_is_utf8(tmp, (size_t) (out - tmp)))
	{
		free(tmp);
		return false;
	}
	n = text_utf8_clip(tmp, (size_t) (out - tmp), dstlen - 1);
	memcpy(dst, tmp, n);
	dst[n] = '\0';
	free(tmp);
	return true;
}

/*
 * A JSON string literal; control characters escaped, UTF-8 passed through,
 * and a byte that is not part of valid UTF-8 written as U+FFFD: what goes
 * to the database is always valid text, whatever a device sent.
 */
void
sbuf_json_string(SBuf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		left = strlen(s);

	sbuf_append(b, "\"", 1);
	while (left > 0)
	{
		size_t		k = 1;

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
				else if (*p < 0x80)
					sbuf_append(b, (const char *) p, 1);
				else if ((k = utf8_char(p, left)) > 0)
					sbuf_append(b, (const char *) p, k);
				else
				{
					k = 1;
					sbuf_append(b, "\xEF\xBF\xBD", 3);
				}
		}
		p += k;
		left -= k;
	}
	sbuf_append(b, "\"", 1);
}
