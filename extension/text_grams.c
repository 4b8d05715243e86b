/*
 * text_grams.c — unigrams and bigrams of text, for keyword search over
 * Chinese names and addresses.
 *
 * pg_trgm needs three characters before its index helps, but Chinese
 * keywords are often two characters (望京, 建外) or one.  Indexing every
 * single character and every pair of adjacent characters (as pg_bigm does)
 * lets a GIN index find any substring of one or more characters: the
 * keyword's grams must all be present, then LIKE rechecks the order.
 * ASCII letters are folded to lower case and whitespace separates words.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"

#define GRAMS_MAX_CHARS 2048		/* texts are names and addresses: bound the work */
#define KEYWORD_MAX_GRAMS 4

typedef struct Chr
{
	const char *p;
	int			len;
} Chr;

static int
cmp_text_datum(const void *a, const void *b)
{
	text	   *x = DatumGetTextPP(*(const Datum *) a);
	text	   *y = DatumGetTextPP(*(const Datum *) b);
	int			lx = VARSIZE_ANY_EXHDR(x),
				ly = VARSIZE_ANY_EXHDR(y);
	int			c = memcmp(VARDATA_ANY(x), VARDATA_ANY(y), Min(lx, ly));

	return c != 0 ? c : lx - ly;
}

static text *
gram_text(const Chr *a, const Chr *b)
{
	int			len = a->len + (b ? b->len : 0);
	text	   *t = palloc(VARHDRSZ + len);
	char	   *d = VARDATA(t);

	SET_VARSIZE(t, VARHDRSZ + len);
	for (int i = 0; i < a->len; i++)
		d[i] = pg_ascii_tolower((unsigned char) a->p[i]);
	if (b)
		for (int i = 0; i < b->len; i++)
			d[a->len + i] = pg_ascii_tolower((unsigned char) b->p[i]);
	return t;
}

/*
 * grams(text, with_unigrams): the bigrams of each whitespace-separated word,
 * plus every character when with_unigrams.  A one-character word always
 * gives its unigram, so a one-character keyword can be searched.
 */
static ArrayType *
grams(text *in, bool with_unigrams)
{
	const char *s = VARDATA_ANY(in);
	int			len = VARSIZE_ANY_EXHDR(in);
	Chr		   *chars = palloc(sizeof(Chr) * Min(len, GRAMS_MAX_CHARS) + sizeof(Chr));
	Datum	   *out;
	int			n = 0,
				nout = 0,
				nuniq = 0;

	for (int i = 0; i < len && n < GRAMS_MAX_CHARS;)
	{
		int			l = pg_mblen(s + i);

		if (i + l > len)
			break;
		chars[n].p = s + i;
		chars[n].len = l;
		n++;
		i += l;
	}

	out = palloc(sizeof(Datum) * (2 * n + 1));
	for (int i = 0; i < n; i++)
	{
		bool		space = chars[i].len == 1 && isspace((unsigned char) chars[i].p[0]);
		bool		next_space = i + 1 >= n ||
			(chars[i + 1].len == 1 && isspace((unsigned char) chars[i + 1].p[0]));
		bool		prev_space = i == 0 ||
			(chars[i - 1].len == 1 && isspace((unsigned char) chars[i - 1].p[0]));

		if (space)
			continue;
		if (with_unigrams || (prev_space && next_space))
			out[nout++] = PointerGetDatum(gram_text(&chars[i], NULL));
		if (!next_space)
			out[nout++] = PointerGetDatum(gram_text(&chars[i], &chars[i + 1]));
	}

	/*
	 * A keyword needs only a few of its grams to be found: each one more
	 * intersects another posting list, and the recheck confirms the match
	 * anyway.  Keep four, spread over the keyword (first and last included).
	 */
	if (!with_unigrams && nout > KEYWORD_MAX_GRAMS)
	{
		Datum		keep[KEYWORD_MAX_GRAMS];

		for (int k = 0; k < KEYWORD_MAX_GRAMS; k++)
			keep[k] = out[(int64) k * (nout - 1) / (KEYWORD_MAX_GRAMS - 1)];
		memcpy(out, keep, sizeof(keep));
		nout = KEYWORD_MAX_GRAMS;
	}

	if (nout > 1)
	{
		qsort(out, nout, sizeof(Datum), cmp_text_datum);
		nuniq = 1;
		for (int i = 1; i < nout; i++)
			if (cmp_text_datum(&out[i], &out[nuniq - 1]) != 0)
				out[nuniq++] = out[i];
	}
	else
		nuniq = nout;

	return construct_array(out, nuniq, TEXTOID, -1, false, TYPALIGN_INT);
}

/* vms.text_grams(text) → text[]: what the index stores for a text */
PG_FUNCTION_INFO_V1(vms_text_grams);
Datum
vms_text_grams(PG_FUNCTION_ARGS)
{
	PG_RETURN_ARRAYTYPE_P(grams(PG_GETARG_TEXT_PP(0), true));
}

/* vms.keyword_grams(text) → text[]: what a keyword needs to find in it */
PG_FUNCTION_INFO_V1(vms_keyword_grams);
Datum
vms_keyword_grams(PG_FUNCTION_ARGS)
{
	PG_RETURN_ARRAYTYPE_P(grams(PG_GETARG_TEXT_PP(0), false));
}

/*
 * vms.text_contains(haystack, needle) → boolean: does the text contain the
 * keyword, ASCII letters compared without case.  The keyword filter's
 * recheck.  Being a function rather than ILIKE matters to the planner: ILIKE
 * '%kw%' is estimated at almost no rows, which makes it sort every match of
 * a common keyword instead of walking the code index; a function gets the
 * default estimate and the gram index's own estimate decides.  UTF-8 is
 * self-synchronising, so a byte search finds only whole characters.
 */
PG_FUNCTION_INFO_V1(vms_text_contains);
Datum
vms_text_contains(PG_FUNCTION_ARGS)
{
	text	   *h = PG_GETARG_TEXT_PP(0);
	text	   *n = PG_GETARG_TEXT_PP(1);
	int			hl = VARSIZE_ANY_EXHDR(h);
	int			nl = VARSIZE_ANY_EXHDR(n);
	const char *hp = VARDATA_ANY(h);
	const char *np = VARDATA_ANY(n);

	if (nl == 0)
		PG_RETURN_BOOL(true);
	/* look where the index looks: the first GRAMS_MAX_CHARS characters */
	hl = pg_mbcharcliplen(hp, hl, GRAMS_MAX_CHARS);
	for (int i = 0; i + nl <= hl; i++)
	{
		int			k = 0;

		if ((i & 4095) == 0)
			CHECK_FOR_INTERRUPTS();
		while (k < nl && pg_ascii_tolower((unsigned char) hp[i + k]) == pg_ascii_tolower((unsigned char) np[k]))
			k++;
		if (k == nl)
			PG_RETURN_BOOL(true);
	}
	PG_RETURN_BOOL(false);
}
