/*
 * vqd_checks.c — the picture checks, on a sample prepared by vqd_sample.c
 * (or by a test or fuzzer that fills a vqd_sample itself).  No libav here.
 *
 * Scales:
 *   analysis grid   every sampled frame at <= 352 wide (temporal checks,
 *                   colour, brightness, uniformity, occlusion, scene change)
 *   detail scale    native luma crops box-averaged by round(width / 640), so a
 *                   1080p and a 640x360 camera are judged at the same scale
 *                   (blur, noise, stripes)
 *   native          the crops as decoded, for the codec's 8-pixel block grid
 *                   (mosaic)
 * Every threshold is in vqd_profile.c and THRESHOLDS.md.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vqd.h"

#define MAX_STAT_FRAMES 8

static int	debug_on = -1;

#if defined(__GNUC__)
#define VQD_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define VQD_PRINTF(f, a)
#endif
static void dbg(const char *fmt,...) VQD_PRINTF(1, 2);
static void set(vqd_report *rep, vqd_check c, double metric, int abnormal, const char *fmt,...) VQD_PRINTF(5, 6);

static void
dbg(const char *fmt,...)
{
	va_list		ap;

	if (debug_on < 0)
		debug_on = getenv("VQD_DEBUG") != NULL;
	if (!debug_on)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

static void
set(vqd_report *rep, vqd_check c, double metric, int abnormal, const char *fmt,...)
{
	va_list		ap;
	vqd_result *r = &rep->r[c];

	r->evaluated = 1;
	r->metric = metric;
	r->abnormal = abnormal;
	va_start(ap, fmt);
	vsnprintf(r->detail, VQD_DETAIL_LEN, fmt, ap);
	va_end(ap);
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

static double
median_of(double *v, int n)
{
	if (n <= 0)
		return NAN;
	qsort(v, n, sizeof(double), cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double
percentile_of(double *v, int n, double p)
{
	double		pos;
	int			i;

	if (n <= 0)
		return NAN;
	qsort(v, n, sizeof(double), cmp_double);
	pos = p * (n - 1);
	i = (int) pos;
	if (i >= n - 1)
		return v[n - 1];
	return v[i] + (pos - i) * (v[i + 1] - v[i]);
}

/* indices of up to MAX_STAT_FRAMES frames spread over the sample */
static int
stat_frames(const vqd_sample *s, int *idx)
{
	int			n = s->nframes < MAX_STAT_FRAMES ? s->nframes : MAX_STAT_FRAMES;

	for (int i = 0; i < n; i++)
		idx[i] = n == 1 ? 0 : (int) ((double) i * (s->nframes - 1) / (n - 1) + 0.5);
	return n;
}

static int
u8_median(const uint8_t *p, size_t n, size_t step)
{
	size_t		h[256] = {0},
				acc = 0,
				cnt = 0;

	for (size_t i = 0; i < n; i += step)
		h[p[i]]++, cnt++;
	for (int v = 0; v < 256; v++)
		if ((acc += h[v]) * 2 >= cnt)
			return v;
	return 128;
}

static const char *
colour_name(double y, double cb, double cr)
{
	double		a = atan2(cr, cb) * 180 / M_PI;

	if (fabs(cb) < 12 && fabs(cr) < 12)
		return y < 60 ? "dark grey" : y > 180 ? "white" : "grey";
	if (a < 0)
		a += 360;
	/* hue wheel on the Cb/Cr plane: magenta 52, red 109, yellow 171, green 232, cyan 289, blue 351 degrees */
	if (a < 21)
		return "blue";
	if (a < 80)
		return "magenta";
	if (a < 140)
		return "red";
	if (a < 201)
		return "yellow";
	if (a < 260)
		return "green";
	if (a < 320)
		return "cyan";
	return "blue";
}

/* ---------- detail scale: box-average a native crop ---------- */

typedef struct img
{
	int			w, h;
	float	   *p;
} img;

static int
detail_image(const vqd_sample *s, int k, img *out)
{
	int			f = (int) (s->native_w / 640.0 + 0.5);
	int			w, h;

	if (f < 1)
		f = 1;
	w = s->dw / f;
	h = s->dh / f;
	out->w = w;
	out->h = h;
	out->p = malloc(sizeof(float) * (size_t) w * h);
	if (!out->p)
		return -1;
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++)
		{
			int			sum = 0;

			for (int j = 0; j < f; j++)
			{
				const uint8_t *row = s->detail[k] + (size_t) (y * f + j) * s->dw + x * f;

				for (int i = 0; i < f; i++)
					sum += row[i];
			}
			out->p[(size_t) y * w + x] = (float) sum / (f * f);
		}
	return 0;
}

/* ---------- blur: edge width of the sharper edges ---------- */

/*
 * A defocused camera widens every edge; a naturally soft scene (a soft
 * photograph, wood grain, a film's shading) has soft texture but its
 * object edges stay narrow.  Crete-Roffet's re-blur ratio alone cannot tell
 * them apart: soft texture and a defocused edge lose the same share of their
 * variation to a 9-tap re-blur (a texture's share depends on its period, not
 * on blur).  So Crete-Roffet only picks the sharper blocks, and what is
 * judged there is the width of their edges: the block's luma range over its
 * steepest step (central difference), in pixels of the detail scale; a step
 * blurred by a gaussian of sigma s is about 2.5 s wide.
 *
 * Per 32x32 block and direction, where the re-blurred picture still has
 * structure (so sensor noise and flat areas do not count): the Crete-Roffet
 * value and the edge width.  The block row holding most of the sharpest
 * tenth of the blocks is dropped (an overlay line: the OSD clock stays sharp
 * on a defocused camera), the sharpest 30 % of the rest by Crete-Roffet are
 * kept, and the metric is the 25th percentile of their edge widths over 8
 * pixels (capped at 1: 0 sharp, 1 edges 8 pixels wide or more).
 */
#define BLUR_BLOCK 32
#define BLUR_OVERLAY_SHARE 0.10
#define BLUR_SHARP_SHARE 0.30
#define BLUR_WIDTH_QUANTILE 0.25
#define BLUR_WIDTH_SCALE 8.0

typedef struct blur_block
{
	double		cr;				/* Crete-Roffet: share of variation kept by a re-blur */
	double		width;			/* luma range / steepest step, pixels */
	int			row;
} blur_block;

static double
blur_edge_width(const img *im, double noise, int *edge_blocks)
{
	int			w = im->w,
				h = im->h;
	int			bw = w / BLUR_BLOCK,
				bh = h / BLUR_BLOCK;
	float	   *bh_,
			   *bv;
	blur_block *blk;
	double	   *vals;
	int		   *rowcount;
	int			nv = 0,
				nk = 0,
				drop = -1;
	double		thr,
				res,
				s1 = 0,
				s2 = 0,
				sd,
				cut;

	*edge_blocks = 0;
	if (w < 3 * BLUR_BLOCK || h < 3 * BLUR_BLOCK)
		return NAN;
	bh_ = malloc(sizeof(float) * (size_t) w * h);
	bv = malloc(sizeof(float) * (size_t) w * h);
	blk = malloc(sizeof(blur_block) * (size_t) bw * bh * 2);
	vals = malloc(sizeof(double) * (size_t) bw * bh * 2);
	rowcount = calloc((size_t) bh, sizeof(int));
	if (!bh_ || !bv || !blk || !vals || !rowcount)
	{
		free(bh_);
		free(bv);
		free(blk);
		free(vals);
		free(rowcount);
		return NAN;
	}
	/*
	 * structure threshold: above the re-blurred noise (about half the noise
	 * sigma) and a small share of the picture's contrast, so that smooth
	 * shading and faint interference do not count as edges
	 */
	for (size_t i = 0; i < (size_t) w * h; i++)
		s1 += im->p[i], s2 += (double) im->p[i] * im->p[i];
	sd = sqrt(fmax(0, s2 / ((double) w * h) - (s1 / ((double) w * h)) * (s1 / ((double) w * h))));
	thr = fmax(1.5, fmax(0.6 * noise, 0.08 * sd));
	for (int y = 0; y < h; y++)
		for (int x = 4; x < w - 4; x++)
		{
			float		a = 0;

			for (int i = -4; i <= 4; i++)
				a += im->p[(size_t) y * w + x + i];
			bh_[(size_t) y * w + x] = a / 9;
		}
	for (int y = 4; y < h - 4; y++)
		for (int x = 0; x < w; x++)
		{
			float		a = 0;

			for (int i = -4; i <= 4; i++)
				a += im->p[(size_t) (y + i) * w + x];
			bv[(size_t) y * w + x] = a / 9;
		}
	for (int by = 0; by < bh; by++)
		for (int bx = 0; bx < bw; bx++)
		{
			double		sf[2] = {0, 0},
						sv[2] = {0, 0},
						steep[2] = {0, 0};
			int			ne[2] = {0, 0};
			float		lo = INFINITY,
						hi = -INFINITY;

			for (int y = by * BLUR_BLOCK; y < (by + 1) * BLUR_BLOCK; y++)
			{
				if (y < 5 || y >= h - 5)
					continue;
				for (int x = bx * BLUR_BLOCK; x < (bx + 1) * BLUR_BLOCK; x++)
				{
					size_t		o = (size_t) y * w + x;
					double		dfh,
								dbh,
								dfv,
								dbv,
								g;
					float		sm;

					if (x < 5 || x >= w - 5)
						continue;
					/* the range on a lightly smoothed picture (noise does not widen it) */
					sm = (4 * im->p[o] + im->p[o - 1] + im->p[o + 1] + im->p[o - w] + im->p[o + w]) / 8;
					lo = fminf(lo, sm);
					hi = fmaxf(hi, sm);
					g = fabs((double) im->p[o + 1] - im->p[o - 1]) / 2;
					steep[0] = fmax(steep[0], g);
					g = fabs((double) im->p[o + w] - im->p[o - w]) / 2;
					steep[1] = fmax(steep[1], g);
					dfh = fabsf(im->p[o] - im->p[o - 1]);
					dbh = fabsf(bh_[o] - bh_[o - 1]);
					dfv = fabsf(im->p[o] - im->p[o - w]);
					dbv = fabsf(bv[o] - bv[o - w]);
					if (dbh >= thr)
					{
						sf[0] += dfh;
						sv[0] += dfh - dbh > 0 ? dfh - dbh : 0;
						ne[0]++;
					}
					if (dbv >= thr)
					{
						sf[1] += dfv;
						sv[1] += dfv - dbv > 0 ? dfv - dbv : 0;
						ne[1]++;
					}
				}
			}
			for (int d = 0; d < 2; d++)
				if (ne[d] >= 24 && sf[d] > 0)
				{
					blk[nv].cr = (sf[d] - sv[d]) / sf[d];
					blk[nv].width = (hi - lo) / fmax(steep[d], 0.5);
					blk[nv].row = by;
					nv++;
				}
		}
	free(bh_);
	free(bv);
	*edge_blocks = nv;
	/* a picture with (almost) no structure left is as blurred as it gets */
	if (nv < 4 || nv < 0.08 * (2 * bw * bh))
	{
		free(blk);
		free(vals);
		free(rowcount);
		return 1.0;
	}
	/* the overlay line: the block row with most of the sharpest tenth */
	for (int i = 0; i < nv; i++)
		vals[i] = blk[i].cr;
	cut = percentile_of(vals, nv, BLUR_OVERLAY_SHARE);
	for (int i = 0; i < nv; i++)
		if (blk[i].cr <= cut)
			rowcount[blk[i].row]++;
	for (int r = 0; r < bh; r++)
		if (rowcount[r] > 0 && (drop < 0 || rowcount[r] > rowcount[drop]))
			drop = r;
	/* the sharper blocks of the rest, by Crete-Roffet */
	for (int i = 0; i < nv; i++)
		if (blk[i].row != drop)
			vals[nk++] = blk[i].cr;
	if (nk < 4)
	{
		drop = -1;
		nk = 0;
		for (int i = 0; i < nv; i++)
			vals[nk++] = blk[i].cr;
	}
	cut = percentile_of(vals, nk, BLUR_SHARP_SHARE);
	nk = 0;
	for (int i = 0; i < nv; i++)
		if (blk[i].row != drop && blk[i].cr <= cut)
			vals[nk++] = blk[i].width;
	res = fmin(1.0, percentile_of(vals, nk, BLUR_WIDTH_QUANTILE) / BLUR_WIDTH_SCALE);
	dbg("blur: edge width %.2f px (q25 of %d sharp blocks; %d edge blocks, overlay row %d dropped)\n",
		res * BLUR_WIDTH_SCALE, nk, nv, drop);
	free(blk);
	free(vals);
	free(rowcount);
	return res;
}

/* ---------- noise: Immerkaer residual in the flattest blocks ---------- */

static double
noise_sigma(const img *im)
{
	int			w = im->w,
				h = im->h,
				nb = 0,
				cap = (w / 8) * (h / 8);
	double	   *sig;
	double		res;

	if (cap <= 0)
		return NAN;
	sig = malloc(sizeof(double) * cap);
	if (!sig)
		return NAN;
	for (int by = 1; by + 8 < h; by += 8)
		for (int bx = 1; bx + 8 < w; bx += 8)
		{
			double		acc = 0;
			int			clipped = 0;

			for (int y = by; y < by + 8; y++)
				for (int x = bx; x < bx + 8; x++)
				{
					const float *p = im->p + (size_t) y * w + x;
					double		r = p[-w - 1] - 2 * p[-w] + p[-w + 1]
					- 2 * p[-1] + 4 * p[0] - 2 * p[1]
					+ p[w - 1] - 2 * p[w] + p[w + 1];

					acc += r * r;
					if (p[0] <= 17 || p[0] >= 250)
						clipped++;
				}
			if (clipped > 16)
				continue;		/* clipped blocks hide noise */
			sig[nb++] = sqrt(acc / 64) / 6.0;
		}
	res = nb >= 8 ? percentile_of(sig, nb, 0.10) : NAN;
	free(sig);
	return res;
}

/* ---------- stripes: periodic profile present in every band ---------- */

#define STRIPE_BANDS 4

/*
 * Profiles along one axis (length n) for STRIPE_BANDS bands across the other
 * axis; power spectra accumulated into pw[band][k].
 */
static void
stripe_spectra(const img *im, int vertical, double *pw, int n, const double *cs, const double *sn, double *raw)
{
	int			m = vertical ? im->h : im->w;	/* extent across the profile */
	double	   *prof = malloc(sizeof(double) * n);

	if (!prof)
		return;
	for (int b = 0; b < STRIPE_BANDS; b++)
	{
		int			a0 = b * m / STRIPE_BANDS,
					a1 = (b + 1) * m / STRIPE_BANDS;
		double		mean = 0,
					sx = 0,
					sxx = 0,
					sxy = 0,
					slope;

		for (int i = 0; i < n; i++)
		{
			double		acc = 0;

			for (int a = a0; a < a1; a++)
				acc += vertical ? im->p[(size_t) a * im->w + i] : im->p[(size_t) i * im->w + a];
			prof[i] = acc / (a1 - a0);
		}
		memcpy(raw + (size_t) b * n, prof, sizeof(double) * n);
		/* remove a linear trend, then Hann window */
		for (int i = 0; i < n; i++)
		{
			mean += prof[i];
			sx += i;
			sxx += (double) i * i;
			sxy += (double) i * prof[i];
		}
		slope = (sxy - sx * mean / n) / (sxx - sx * sx / n);
		mean /= n;
		for (int i = 0; i < n; i++)
			prof[i] = (prof[i] - mean - slope * (i - sx / n)) * (0.5 - 0.5 * cos(2 * M_PI * i / (n - 1)));
		for (int k = 1; k <= n / 2; k++)
		{
			double		re = 0,
						im_ = 0;

			for (int i = 0; i < n; i++)
			{
				int			j = (int) (((long) k * i) % n);

				re += prof[i] * cs[j];
				im_ -= prof[i] * sn[j];
			}
			pw[b * (n / 2 + 1) + k] += re * re + im_ * im_;
		}
	}
	free(prof);
}

typedef struct stripe_found
{
	double		ratio;
	double		amplitude;
	double		period;
	double		score;
} stripe_found;

/* median of the spectrum around k (k/2 .. 2k, without k +- 3) */
static double
local_background(const double *pm, int nk, int k)
{
	double		v[512];
	int			n = 0,
				lo = k / 2 < 2 ? 2 : k / 2,
				hi = 2 * k < nk - 1 ? 2 * k : nk - 1;

	for (int j = lo; j <= hi && n < 512; j++)
		if (abs(j - k) > 3)
			v[n++] = pm[j];
	if (n < 3)
		return INFINITY;
	{
		double		m = median_of(v, n);

		return m > 1e-12 ? m : 1e-12;
	}
}

/* is there a spectral line at k (beyond the spectrum's end: no) */
static int
harmonic_peak(const double *pm, int nk, int k)
{
	if (k + 1 >= nk - 1)
		return 0;
	return (pm[k - 1] + pm[k] + pm[k + 1]) > 3 * 6 * local_background(pm, nk, k);
}

/*
 * Interference covers the whole picture with the same amplitude; scene
 * structure at one spatial frequency (a checkerboard, a fence, a window row)
 * covers part of it.  The line at k is measured in STRIPE_BANDS x STRIPE_SEGS
 * tiles (bands across the profile, segments along it; mean and trend removed,
 * Hann window, amplitude averaged over the frames in power): the result is the
 * weakest tile's amplitude over the median tile's.
 */
#define STRIPE_SEGS 3
#define STRIPE_COVERAGE_MIN 0.2	/* weakest tile over the median tile */
#define STRIPE_ISOLATION_MIN 0.7	/* line over its strongest neighbour 4..7 bins away */

static double
stripe_coverage(const double *raw, int nim, int k, int n, const double *cs, const double *sn)
{
	double		amp[STRIPE_BANDS * STRIPE_SEGS] = {0},
				srt[STRIPE_BANDS * STRIPE_SEGS];
	int			L = n / STRIPE_SEGS,
				nt = STRIPE_BANDS * STRIPE_SEGS;
	double		mn = INFINITY,
				med;

	for (int f = 0; f < nim; f++)
	{
		for (int b = 0; b < STRIPE_BANDS; b++)
		{
			const double *prof = raw + ((size_t) f * STRIPE_BANDS + b) * n;

			for (int g = 0; g < STRIPE_SEGS; g++)
			{
				int			i0 = g * L;
				double		sx = 0,
							sy = 0,
							sxx = 0,
							sxy = 0,
							slope,
							re = 0,
							im_ = 0,
							ws = 0;

				for (int i = 0; i < L; i++)
				{
					sx += i;
					sy += prof[i0 + i];
					sxx += (double) i * i;
					sxy += (double) i * prof[i0 + i];
				}
				slope = (sxy - sx * sy / L) / (sxx - sx * sx / L);
				for (int i = 0; i < L; i++)
				{
					double		w = 0.5 - 0.5 * cos(2 * M_PI * i / (L - 1)),
								v = (prof[i0 + i] - sy / L - slope * (i - sx / L)) * w;
					int			j = (int) (((long) k * (i0 + i)) % n);

					re += v * cs[j];
					im_ -= v * sn[j];
					ws += w;
				}
				/* amplitude 2|X| / sum(w), accumulated in power */
				amp[b * STRIPE_SEGS + g] += 4 * (re * re + im_ * im_) / (ws * ws);
			}
		}
	}
	for (int t = 0; t < nt; t++)
	{
		srt[t] = sqrt(amp[t] / nim);
		if (srt[t] < mn)
			mn = srt[t];
	}
	med = median_of(srt, nt);
	return med > 1e-9 ? mn / med : 1;
}

static stripe_found
stripe_axis(const img *ims, int nim, int vertical, double amp_ref)
{
	stripe_found best = {0, 0, 0, 0};
	int			n = vertical ? ims[0].w : ims[0].h;
	int			nk = n / 2 + 1;
	double	   *pw = calloc((size_t) STRIPE_BANDS * nk, sizeof(double));
	double	   *cs = malloc(sizeof(double) * n),
			   *sn = malloc(sizeof(double) * n),
			   *tmp = malloc(sizeof(double) * nk),
			   *raw = calloc((size_t) nim * STRIPE_BANDS * n, sizeof(double));
	int			kmin = 6;
	int			nt = 0;
	double		med;

	if (!pw || !cs || !sn || !tmp || !raw || n < 32)
		goto out;
	for (int i = 0; i < n; i++)
	{
		cs[i] = cos(2 * M_PI * i / n);
		sn[i] = sin(2 * M_PI * i / n);
	}
	for (int f = 0; f < nim; f++)
		stripe_spectra(&ims[f], vertical, pw, n, cs, sn, raw + (size_t) f * STRIPE_BANDS * n);
	/* mean spectrum over bands, 3-bin sums */
	for (int k = 0; k < nk; k++)
	{
		double		mean = 0;

		for (int b = 0; b < STRIPE_BANDS; b++)
			mean += pw[b * nk + k];
		tmp[k] = mean / STRIPE_BANDS;
	}
	for (int k = kmin; k < nk - 2; k++)
	{
		double		pmin = INFINITY,
					bg,
					ratio,
					cov,
					iso;

		for (int b = 0; b < STRIPE_BANDS; b++)
		{
			double		p = pw[b * nk + k - 1] + pw[b * nk + k] + pw[b * nk + k + 1];

			if (p < pmin)
				pmin = p;
		}
		bg = 3 * local_background(tmp, nk, k);
		ratio = pmin / bg;
		/* rank lines by ratio, weighted up to the amplitude that makes a weak line count */
		if (ratio * fmin(1.0, 4 * sqrt(pmin / nim) / n / amp_ref) <= best.score)
			continue;
		/* a line with its own harmonics is a square pattern in the scene (bars, windows), not interference */
		if (harmonic_peak(tmp, nk, 2 * k) || harmonic_peak(tmp, nk, 3 * k))
			continue;
		/*
		 * a line stands alone: the lobes of a staircase (flat bars, blurred
		 * or not) are several bins wide and come in a row, so the line must
		 * dominate the spectrum 4..7 bins either side
		 */
		{
			double		mx = 1e-12;

			for (int j = k - 7; j <= k + 7; j++)
				if (abs(j - k) >= 4 && j >= 2 && j + 1 < nk)
					mx = fmax(mx, tmp[j - 1] + tmp[j] + tmp[j + 1]);
			iso = (tmp[k - 1] + tmp[k] + tmp[k + 1]) / mx;
		}
		if (iso < STRIPE_ISOLATION_MIN)
			continue;
		/* and it covers the whole picture, not a part of it (a checkerboard, an occluder's edge) */
		cov = stripe_coverage(raw, nim, k, n, cs, sn);
		dbg("stripe cand %s k %d per %.1f ratio %.1f amp %.2f isolation %.2f cover %.2f\n", vertical ? "v" : "h", k,
			(double) n / k, ratio, 4 * sqrt(pmin / nim) / n, iso, cov);
		if (cov < STRIPE_COVERAGE_MIN)
			continue;
		best.ratio = ratio;
		best.score = ratio * fmin(1.0, 4 * sqrt(pmin / nim) / n / amp_ref);
		/* Hann coherent gain 0.5: amplitude = 4|X| / n, per frame */
		best.amplitude = 4 * sqrt(pmin / nim) / n;
		best.period = (double) n / k;
	}
	(void) med;
	(void) nt;
out:
	free(pw);
	free(cs);
	free(sn);
	free(tmp);
	free(raw);
	return best;
}

/* ---------- mosaic: discontinuities on the 8-pixel grid ---------- */

/*
 * For every 8-sample segment of a block edge candidate at each phase of the
 * 8-grid, the segment is a "step" if the difference across it clearly
 * exceeds the differences just inside.  Result: share of steps on phase 0
 * minus the mean share on phases 2 and 6 (content edges fall on every phase
 * alike; phases 2 and 6 have phase 0's parity, so 2x scaled content does not
 * count, and are off H.264's 4x4 grid).
 * *flat: the same between flat blocks only (both 8x8 neighbours with a mean
 * |difference| inside of at most MOSAIC_FLAT_ACT), with the coherent (signed,
 * summed over the 8 lines) difference, so that a quantised DC step counts and
 * texture cancels: share of steps on the grid minus the share on edges
 * shifted by 4 (the same test on a block pair straddling phase 4).  Fine
 * texture hides the steps from the first measure; its flattened blocks do not.
 */
/* mosaic, flat blocks: interior mean |difference| at or below which a block is flat (luma levels) */
#define MOSAIC_FLAT_ACT 1.0
/* a flat block edge is a step when its coherent difference exceeds twice those just inside plus this (levels) */
#define MOSAIC_FLAT_STEP 1.0
/* the flat-edge share counts this many times against mosaic_min */
#define MOSAIC_FLAT_WEIGHT 3.0
/* fewest flat edge pairs per direction and phase for the flat-edge share */
#define MOSAIC_FLAT_PAIRS 50
static double
blockiness(const uint8_t *p, int w, int h, double *flat)
{
	long		steps[8] = {0},
				segs[8] = {0};
	long		fpair[2][2] = {{0}},
				fstep[2][2] = {{0}};
	double		res[2];
	int		   *col = malloc(sizeof(int) * (w > h ? w : h));
	int		   *coh = malloc(sizeof(int) * (w > h ? w : h));

	*flat = 0;
	if (!col || !coh || w < 32 || h < 32)
	{
		free(col);
		free(coh);
		return NAN;
	}
	for (int dir = 0; dir < 2; dir++)
	{
		int			len = dir == 0 ? w : h; /* along the difference */
		int			across = dir == 0 ? h : w;

		memset(steps, 0, sizeof(steps));
		memset(segs, 0, sizeof(segs));
		for (int a0 = 0; a0 + 8 <= across; a0 += 8)
		{
			/* col[x] = sum over the 8 lines of |I(x) - I(x-1)| */
			for (int x = 1; x < len; x++)
			{
				int			acc = 0,
							sacc = 0;

				for (int a = a0; a < a0 + 8; a++)
				{
					int			d = dir == 0 ? p[(size_t) a * w + x] - p[(size_t) a * w + x - 1]
					: p[(size_t) x * w + a] - p[(size_t) (x - 1) * w + a];

					acc += d < 0 ? -d : d;
					sacc += d;
				}
				col[x] = acc;
				coh[x] = sacc < 0 ? -sacc : sacc;
			}
			for (int x = 8; x + 8 < len; x += 4)
			{
				int			ph = (x & 7) ? 1 : 0,
							il = 0,
							ir = 0;

				for (int j = 1; j < 8; j++)
					il += col[x - j], ir += col[x + j];
				if (il > MOSAIC_FLAT_ACT * 56 || ir > MOSAIC_FLAT_ACT * 56)
					continue;
				fpair[dir][ph]++;
				if (coh[x] > 2.0 * (coh[x - 2] + coh[x - 1] + coh[x + 1] + coh[x + 2]) / 4 + MOSAIC_FLAT_STEP * 8)
					fstep[dir][ph]++;
			}
			for (int x = 8; x + 3 < len; x++)
			{
				int			ph = x & 7;
				double		b = col[x] / 8.0,
							n = (col[x - 2] + col[x - 1] + col[x + 1] + col[x + 2]) / 32.0;

				segs[ph]++;
				if (b > 2.0 * n + 1.0)
					steps[ph]++;
			}
		}
		{
			double		f0 = segs[0] ? (double) steps[0] / segs[0] : 0,
						ctl = 0;
			int			nc = 0;

			for (int ph = 2; ph < 8; ph += 4)
				if (segs[ph])
				{
					ctl += (double) steps[ph] / segs[ph];
					nc++;
				}
			res[dir] = f0 - (nc ? ctl / nc : 0);
		}
	}
	free(col);
	free(coh);
	for (int d = 0; d < 2; d++)
		if (fpair[d][0] >= MOSAIC_FLAT_PAIRS && fpair[d][1] >= MOSAIC_FLAT_PAIRS)
			*flat += 0.5 * ((double) fstep[d][0] / fpair[d][0] - (double) fstep[d][1] / fpair[d][1]);
	dbg("mosaic flat: h %ld/%ld %ld/%ld v %ld/%ld %ld/%ld\n", fstep[0][0], fpair[0][0], fstep[0][1], fpair[0][1],
		fstep[1][0], fpair[1][0], fstep[1][1], fpair[1][1]);
	return 0.5 * (res[0] + res[1]);
}

/* ---------- jitter: global shift by integral projections ---------- */

/*
 * The picture is cut into 3x3 regions; in each, the row and column
 * projections (high-passed) of consecutive frames are matched for the shift.
 * A frame pair's global shift is the median over regions when most regions
 * agree (the camera moved); when they disagree (zoom, objects moving, the
 * scene changing) the pair says nothing.
 */
#define JR 3

static void
projection(const uint8_t *y, int stride, int x0, int y0, int w, int h, int rows, double *out)
{
	int			n = rows ? h : w;
	double		raw[VQD_MAX_GRID_W > VQD_MAX_GRID_H ? VQD_MAX_GRID_W : VQD_MAX_GRID_H];

	for (int i = 0; i < n; i++)
		raw[i] = 0;
	for (int j = 0; j < h; j++)
	{
		const uint8_t *r = y + (size_t) (y0 + j) * stride + x0;

		for (int i = 0; i < w; i++)
			raw[rows ? j : i] += r[i];
	}
	for (int i = 0; i < n; i++)
		raw[i] /= rows ? w : h;
	/* high-pass: subtract a 15-sample moving average (lighting changes) */
	for (int i = 0; i < n; i++)
	{
		double		a = 0;
		int			c = 0;

		for (int k = i - 7; k <= i + 7; k++)
			if (k >= 0 && k < n)
				a += raw[k], c++;
		out[i] = raw[i] - a / c;
	}
}

/* shift of b against a; NAN when the profile is flat or the match is poor */
static double
best_shift(const double *a, const double *b, int n, int r)
{
	double		cost[129];
	int			best = 0;
	double		energy = 0;
	int			ce = 0;

	if (r > 64)
		r = 64;
	if (n <= 2 * r + 8)
		return NAN;
	for (int i = r; i < n - r; i++)
		energy += fabs(a[i]), ce++;
	energy /= ce;
	if (energy < 0.4)
		return NAN;				/* nothing to match */
	for (int s = -r; s <= r; s++)
	{
		double		acc = 0;
		int			c = 0;

		for (int i = r; i < n - r; i++)
		{
			acc += fabs(b[i + s] - a[i]);
			c++;
		}
		cost[s + r] = acc / c;
		if (cost[s + r] < cost[best + r])
			best = s;
	}
	if (cost[best + r] > 0.6 * energy)
		return NAN;				/* no shift explains the change */
	if (best > -r && best < r)
	{
		double		l = cost[best + r - 1],
					m = cost[best + r],
					h = cost[best + r + 1],
					den = l - 2 * m + h;

		if (den > 1e-12)
			return best + 0.5 * (l - h) / den;
	}
	return best;
}

/* the median of the regions' shifts if two thirds of them agree, else NAN */
static double
agreed(double *v, int n)
{
	double		m;
	int			a = 0;

	if (n < 3)
		return NAN;
	m = median_of(v, n);
	for (int k = 0; k < n; k++)
		a += fabs(v[k] - m) <= 1.0;
	return a * 3 >= n * 2 ? m : NAN;
}

/* global shift between frames a and b, per axis, or NAN */
static void
global_shift(const vqd_sample *s, int fa, int fb, double *gx, double *gy)
{
	double		xs[JR * JR],
				ys[JR * JR];
	int			nx = 0,
				ny = 0;
	int			rw = s->gw / JR,
				rh = s->gh / JR;
	double		pa[VQD_MAX_GRID_W],
				pb[VQD_MAX_GRID_W];

	for (int j = 0; j < JR; j++)
		for (int i = 0; i < JR; i++)
		{
			double		v;

			projection(s->y[fa], s->gw, i * rw, j * rh, rw, rh, 0, pa);
			projection(s->y[fb], s->gw, i * rw, j * rh, rw, rh, 0, pb);
			v = best_shift(pa, pb, rw, rw / 6);
			if (!isnan(v))
				xs[nx++] = v;
			projection(s->y[fa], s->gw, i * rw, j * rh, rw, rh, 1, pa);
			projection(s->y[fb], s->gw, i * rw, j * rh, rw, rh, 1, pb);
			v = best_shift(pa, pb, rh, rh / 6);
			if (!isnan(v))
				ys[ny++] = v;
		}
	*gx = agreed(xs, nx);
	*gy = agreed(ys, ny);
}

/* ---------- occlusion: largest connected blank region ---------- */

static double
occlusion_area(const float *mean, int gw, int gh, const vqd_thresholds *th,
			   double *uniformity, double *rest_textured, double *region_luma)
{
	double		tthr = th->v[VQD_T_OCCLUSION_TEXTURE_MAX];
	int			bw = gw / 16,
				bh = gh / 16,
				nb = bw * bh;
	double	   *tex = malloc(sizeof(double) * nb),
			   *bm = malloc(sizeof(double) * nb);
	int		   *lab = malloc(sizeof(int) * nb),
			   *stack = malloc(sizeof(int) * nb);
	double		best_area = 0;

	*uniformity = 0;
	*rest_textured = 0;
	*region_luma = 0;
	if (!tex || !bm || !lab || !stack || nb < 4)
		goto out;
	/* texture is judged against the picture's contrast (a dim picture is not a blank one) */
	{
		double		s1 = 0,
					s2 = 0,
					sd;
		size_t		n = (size_t) gw * gh;

		for (size_t i = 0; i < n; i++)
			s1 += mean[i], s2 += (double) mean[i] * mean[i];
		sd = sqrt(fmax(0, s2 / n - (s1 / n) * (s1 / n)));
		tthr *= fmin(1.0, fmax(0.25, sd / 40));
	}
	for (int by = 0; by < bh; by++)
		for (int bx = 0; bx < bw; bx++)
		{
			double		t = 0,
						m = 0;
			int			c = 0;

			for (int y = by * 16; y < by * 16 + 16; y++)
				for (int x = bx * 16; x < bx * 16 + 16; x++)
				{
					const float *p = mean + (size_t) y * gw + x;

					m += p[0];
					if (x > 0 && x < gw - 1 && y > 0 && y < gh - 1)
					{
						t += fabsf(p[-1] - 2 * p[0] + p[1]) + fabsf(p[-gw] - 2 * p[0] + p[gw]);
						c++;
					}
				}
			tex[by * bw + bx] = c ? t / (2 * c) : 0;
			bm[by * bw + bx] = m / 256;
			lab[by * bw + bx] = -1;
		}
	for (int i = 0; i < nb; i++)
	{
		int			sp = 0,
					cnt = 0;
		double		s1 = 0,
					s2 = 0;

		if (lab[i] >= 0 || tex[i] >= tthr)
			continue;
		lab[i] = i;
		stack[sp++] = i;
		while (sp > 0)
		{
			int			c = stack[--sp],
						cx = c % bw,
						cy = c / bw;
			int			nbr[4] = {cx > 0 ? c - 1 : -1, cx < bw - 1 ? c + 1 : -1,
			cy > 0 ? c - bw : -1, cy < bh - 1 ? c + bw : -1};

			cnt++;
			s1 += bm[c];
			s2 += bm[c] * bm[c];
			for (int k = 0; k < 4; k++)
				if (nbr[k] >= 0 && lab[nbr[k]] < 0 && tex[nbr[k]] < tthr)
				{
					lab[nbr[k]] = i;
					stack[sp++] = nbr[k];
				}
		}
		{
			double		area = (double) cnt / nb,
						sd = sqrt(fmax(0, s2 / cnt - (s1 / cnt) * (s1 / cnt)));

			if (sd <= th->v[VQD_T_OCCLUSION_UNIFORMITY_MAX] && area > best_area)
			{
				int			rest = 0,
							rest_tex = 0;

				for (int j = 0; j < nb; j++)
					if (lab[j] != i)
					{
						rest++;
						if (tex[j] >= tthr)
							rest_tex++;
					}
				best_area = area;
				*uniformity = sd;
				*rest_textured = rest ? (double) rest_tex / rest : 0;
				*region_luma = s1 / cnt;
			}
		}
	}
out:
	free(tex);
	free(bm);
	free(lab);
	free(stack);
	return best_area;
}

/* ---------- scene change: correlation of edge maps ---------- */

static void
edge_map(const float *src, int w, int h, double *out, int ow, int oh)
{
	/* 4x4 box down, Sobel magnitude, 3x3 box */
	double	   *small = malloc(sizeof(double) * ow * oh),
			   *mag = malloc(sizeof(double) * ow * oh);

	if (!small || !mag)
	{
		free(small);
		free(mag);
		return;
	}
	for (int y = 0; y < oh; y++)
		for (int x = 0; x < ow; x++)
		{
			double		a = 0;

			for (int j = 0; j < 4; j++)
				for (int i = 0; i < 4; i++)
					a += src[(size_t) (y * 4 + j) * w + x * 4 + i];
			small[y * ow + x] = a / 16;
		}
	for (int y = 0; y < oh; y++)
		for (int x = 0; x < ow; x++)
		{
			if (x == 0 || y == 0 || x == ow - 1 || y == oh - 1)
			{
				mag[y * ow + x] = 0;
				continue;
			}
			{
				const double *p = small + y * ow + x;
				double		gx = (p[-ow + 1] + 2 * p[1] + p[ow + 1]) - (p[-ow - 1] + 2 * p[-1] + p[ow - 1]),
							gy = (p[ow - 1] + 2 * p[ow] + p[ow + 1]) - (p[-ow - 1] + 2 * p[-ow] + p[-ow + 1]);

				mag[y * ow + x] = sqrt(gx * gx + gy * gy);
			}
		}
	for (int y = 0; y < oh; y++)
		for (int x = 0; x < ow; x++)
		{
			double		a = 0;
			int			c = 0;

			for (int j = -1; j <= 1; j++)
				for (int i = -1; i <= 1; i++)
					if (x + i >= 0 && x + i < ow && y + j >= 0 && y + j < oh)
						a += mag[(y + j) * ow + x + i], c++;
			out[y * ow + x] = a / c;
		}
	free(small);
	free(mag);
	(void) h;
}

static double
correlation(const double *a, const double *b, int n)
{
	double		ma = 0,
				mb = 0,
				sab = 0,
				saa = 0,
				sbb = 0;

	for (int i = 0; i < n; i++)
		ma += a[i], mb += b[i];
	ma /= n;
	mb /= n;
	for (int i = 0; i < n; i++)
	{
		sab += (a[i] - ma) * (b[i] - mb);
		saa += (a[i] - ma) * (a[i] - ma);
		sbb += (b[i] - mb) * (b[i] - mb);
	}
	if (saa <= 0 || sbb <= 0)
		return 0;
	return sab / sqrt(saa * sbb);
}

/* ---------- the analysis ---------- */


/* ---------- the checks, one function each, run from one table ---------- */

/* what every check sees: the sample, the thresholds and what earlier checks found */
typedef struct actx
{
	const vqd_sample *s;
	const vqd_thresholds *th;
	const double *T;
	vqd_report *rep;
	int			idx[MAX_STAT_FRAMES];	/* frames for per-frame statistics */
	int			ns;
	size_t		gpx, cpx;		/* analysis grid luma / chroma pixels */
	double		mu, mv;			/* median chroma offsets (signal_loss) */
	float	   *tmean;			/* temporal mean luma, or NULL */
	img			dimg[VQD_DETAIL_FRAMES];	/* detail-scale images */
	int			nd;
	double		noise;			/* noise sigma (noise), used by blur */
	int			suppress;		/* a check explaining every other picture fault, or -1 */
} actx;

/* the context's parts as locals; declarations only, so a check may declare its own after it */
#define CTX_UNUSED __attribute__((unused))
#define CTX \
	CTX_UNUSED const vqd_sample *s = a->s; \
	CTX_UNUSED const vqd_thresholds *th = a->th; \
	CTX_UNUSED const double *T = a->T; \
	CTX_UNUSED vqd_report *rep = a->rep; \
	CTX_UNUSED const int *idx = a->idx; \
	CTX_UNUSED int ns = a->ns; \
	CTX_UNUSED size_t gpx = a->gpx; \
	CTX_UNUSED size_t cpx = a->cpx; \
	CTX_UNUSED float *tmean = a->tmean; \
	CTX_UNUSED const img *dimg = a->dimg; \
	CTX_UNUSED int nd = a->nd


static void
check_signal_loss(actx *a)
{
	CTX;

	/* signal loss: solid colour (a black one is a black screen) */
	{
		double		frac[MAX_STAT_FRAMES],
					my = 0;

		for (int k = 0; k < ns; k++)
		{
			const uint8_t *Y = s->y[idx[k]],
					   *U = s->u[idx[k]],
					   *V = s->v[idx[k]];
			int			yy = u8_median(Y, gpx, 1),
						uu = u8_median(U, cpx, 1),
						vv = u8_median(V, cpx, 1);
			size_t		in = 0;

			for (int cy = 0; cy < s->ch; cy++)
				for (int cx = 0; cx < s->cw; cx++)
				{
					int			yv = Y[(size_t) (2 * cy) * s->gw + 2 * cx];
					int			uv = U[(size_t) cy * s->cw + cx],
								vv2 = V[(size_t) cy * s->cw + cx];

					if (abs(yv - yy) <= 8 && abs(uv - uu) <= 5 && abs(vv2 - vv) <= 5)
						in++;
				}
			frac[k] = (double) in / cpx;
			my += yy;
			a->mu += uu - 128;
			a->mv += vv - 128;
		}
		my /= ns;
		a->mu /= ns;
		a->mv /= ns;
		{
			double		m = median_of(frac, ns);
			int			neutral = fabs(a->mu) < 10 && fabs(a->mv) < 10;
			int			ab = m >= T[VQD_T_SIGNAL_UNIFORM_MIN] && (my > T[VQD_T_BLACK_LUMA_MAX] || !neutral);

			set(rep, VQD_SIGNAL_LOSS, m, ab, ab ? "solid %s screen over %.0f%% of the picture" :
				"largest uniform colour (%s) covers %.0f%%", colour_name(my, a->mu, a->mv), 100 * m);
			if (ab)
				a->suppress = VQD_SIGNAL_LOSS;
		}
	}
}

static void
check_black_brightness(actx *a)
{
	CTX;

	/* black screen and brightness */
	{
		double		frac[MAX_STAT_FRAMES],
					mean = 0;
		size_t		hist[256] = {0};
		int			floor_ = 0;

		for (int k = 0; k < ns; k++)
		{
			const uint8_t *Y = s->y[idx[k]];
			size_t		dark = 0;
			double		acc = 0;

			for (size_t i = 0; i < gpx; i++)
			{
				acc += Y[i];
				hist[Y[i]]++;
				if (Y[i] <= T[VQD_T_BLACK_LUMA_MAX])
					dark++;
			}
			frac[k] = (double) dark / gpx;
			mean += acc / gpx;
		}
		mean /= ns;
		/* the dark end: 2nd percentile of luma over the frames */
		for (size_t c = 0; floor_ < 255 && (c += hist[floor_]) < 0.02 * gpx * ns; floor_++)
			;
		{
			double		m = median_of(frac, ns);
			int			ab = m >= T[VQD_T_BLACK_FRACTION_MIN] && fabs(a->mu) < 10 && fabs(a->mv) < 10;

			set(rep, VQD_BLACK_SCREEN, m, ab, "%.0f%% of the picture is black (luma <= %.0f)",
				100 * m, T[VQD_T_BLACK_LUMA_MAX]);
			if (ab && a->suppress < 0)
				a->suppress = VQD_BLACK_SCREEN;
		}
		if (mean < T[VQD_T_DARK_MEAN_MAX])
			set(rep, VQD_BRIGHTNESS, mean, 1, "too dark: mean luma %.1f", mean);
		else if (mean > T[VQD_T_BRIGHT_MEAN_MIN] && floor_ > T[VQD_T_BRIGHT_FLOOR_MIN])
			set(rep, VQD_BRIGHTNESS, mean, 1, "too bright: mean luma %.1f, dark end %d", mean, floor_);
		else if (mean > T[VQD_T_BRIGHT_MEAN_MIN])
			set(rep, VQD_BRIGHTNESS, mean, 0, "bright scene: mean luma %.1f, its dark end at %d (not washed out)", mean, floor_);
		else
			set(rep, VQD_BRIGHTNESS, mean, 0, "mean luma %.1f", mean);
	}
}

/* BT.601 limited-range YCbCr to 8-bit RGB, and back to chroma */
static inline double
clip255(double x)
{
	return x < 0 ? 0 : x > 255 ? 255 : x;
}

static inline void
yuv_rgb(int y, int u, int v, double *r, double *g, double *b)
{
	double		yy = 1.164 * (y - 16);

	*r = clip255(yy + 1.596 * (v - 128));
	*g = clip255(yy - 0.392 * (u - 128) - 0.813 * (v - 128));
	*b = clip255(yy + 2.017 * (u - 128));
}

static inline void
rgb_chroma(double r, double g, double b, double *cb, double *cr)
{
	*cb = -0.148 * r - 0.291 * g + 0.439 * b;
	*cr = 0.439 * r - 0.368 * g - 0.071 * b;
}

static int
hist_quantile(const size_t *h, size_t n, double q)
{
	size_t		acc = 0;

	for (int v = 0; v < 256; v++)
		if ((double) (acc += h[v]) >= q * n)
			return v;
	return 255;
}

static void
check_color_cast(actx *a)
{
	CTX;

	/*
	 * colour cast: the tint of the white patch.  A cast (white balance, a
	 * failed channel, an IR-cut filter) tints what should be white; a scene
	 * of dominant colours (grass, sky, warm lamps, fruit) still has its own
	 * whites, or at least each of R, G and B reaches up somewhere.  The
	 * white patch is the 99.5th percentile of each of R, G and B over the
	 * sampled frames (max-RGB, robust to a few clipped or OSD pixels); its
	 * chroma, in levels, is the metric.  A weaker tint counts when
	 * white-balancing the picture by it makes greys appear (a cast's greys
	 * come back; a colourful scene gains none).  A lamp-lit picture's
	 * brightest things are its lamps: not judged.  The picture's median
	 * chroma (grey world) is kept for the channel's baseline.
	 */
	static size_t hr[256],
				hg[256],
				hb[256],
				gwu[256],
				gwv[256];
	size_t		nt = 0,
				nlit = 0,
				nraw = 0,
				ncor = 0;
	double		ysum = 0;

	memset(hr, 0, sizeof(hr));
	memset(hg, 0, sizeof(hg));
	memset(hb, 0, sizeof(hb));
	memset(gwu, 0, sizeof(gwu));
	memset(gwv, 0, sizeof(gwv));
	for (int k = 0; k < ns; k++)
	{
		const uint8_t *Y = s->y[idx[k]],
				   *U = s->u[idx[k]],
				   *V = s->v[idx[k]];

		for (int cy = 0; cy < s->ch; cy++)
			for (int cx = 0; cx < s->cw; cx++)
			{
				int			yy = Y[(size_t) (2 * cy) * s->gw + 2 * cx];
				size_t		o = (size_t) cy * s->cw + cx;
				double		r,
							g,
							b;

				yuv_rgb(yy, U[o], V[o], &r, &g, &b);
				hr[(int) lrint(r)]++;
				hg[(int) lrint(g)]++;
				hb[(int) lrint(b)]++;
				ysum += yy;
				nt++;
				if (yy < 40 || yy > 230)
					continue;
				nlit++;
				gwu[U[o]]++;
				gwv[V[o]]++;
				if (abs(U[o] - 128) + abs(V[o] - 128) <= 8)
					nraw++;
			}
	}
	if (nlit < 64)
	{
		snprintf(rep->r[VQD_COLOR_CAST].detail, VQD_DETAIL_LEN, "not evaluated: picture too dark or too bright");
		return;
	}
	{
		int			pr = hist_quantile(hr, nt, 0.995),
					pg = hist_quantile(hg, nt, 0.995),
					pb = hist_quantile(hb, nt, 0.995),
					mx = pr > pg ? (pr > pb ? pr : pb) : (pg > pb ? pg : pb);
		double		wcb,
					wcr,
					W,
					gr,
					gg,
					gb,
					gain,
					ymean = ysum / nt,
					gu = hist_quantile(gwu, nlit, 0.5) - 128,
					gv = hist_quantile(gwv, nlit, 0.5) - 128;

		rgb_chroma(pr, pg, pb, &wcb, &wcr);
		W = sqrt(wcb * wcb + wcr * wcr);
		/* white-balance by the white patch: how many more lit pixels are grey */
		gr = mx / (double) (pr > 1 ? pr : 1);
		gg = mx / (double) (pg > 1 ? pg : 1);
		gb = mx / (double) (pb > 1 ? pb : 1);
		for (int k = 0; k < ns; k++)
		{
			const uint8_t *Y = s->y[idx[k]],
					   *U = s->u[idx[k]],
					   *V = s->v[idx[k]];

			for (int cy = 0; cy < s->ch; cy++)
				for (int cx = 0; cx < s->cw; cx++)
				{
					int			yy = Y[(size_t) (2 * cy) * s->gw + 2 * cx];
					size_t		o = (size_t) cy * s->cw + cx;
					double		r,
								g,
								b,
								cb,
								cr;

					if (yy < 40 || yy > 230)
						continue;
					yuv_rgb(yy, U[o], V[o], &r, &g, &b);
					rgb_chroma(r * gr, g * gg, b * gb, &cb, &cr);
					if (fabs(cb) + fabs(cr) <= 8)
						ncor++;
				}
		}
		gain = ((double) ncor - (double) nraw) / nlit;

		/* the grey world, for a channel's baseline of its usual colour (vms.inspection_baseline) */
		rep->r[VQD_COLOR_CAST].has_vec = 1;
		rep->r[VQD_COLOR_CAST].vec[0] = gu;
		rep->r[VQD_COLOR_CAST].vec[1] = gv;
		dbg("cast: white patch %d/%d/%d W=%.1f (%.1f,%.1f) grey %.3f -> %.3f (gain %+.3f) mean luma %.1f grey world (%.0f,%.0f)\n",
			pr, pg, pb, W, wcb, wcr, (double) nraw / nlit, (double) ncor / nlit, gain, ymean, gu, gv);
		if (ymean < T[VQD_T_CAST_LIT_MIN])
			set(rep, VQD_COLOR_CAST, W, 0, "lamp-lit picture (mean luma %.0f): its brightest things are lamps, colour not judged (white patch Cb %+.0f, Cr %+.0f)",
				ymean, wcb, wcr);
		else if (W >= T[VQD_T_CAST_WHITE_MIN])
			set(rep, VQD_COLOR_CAST, W, 1, "%s cast: the whites are tinted (white patch R %d, G %d, B %d: Cb %+.0f, Cr %+.0f)",
				colour_name(128, wcb, wcr), pr, pg, pb, wcb, wcr);
		else if (W >= T[VQD_T_CAST_SUPPORT_MIN] && gain >= T[VQD_T_CAST_GREY_GAIN_MIN])
			set(rep, VQD_COLOR_CAST, W, 1, "%s cast: the whites are tinted (white patch R %d, G %d, B %d: Cb %+.0f, Cr %+.0f) and correcting it turns %.0f%% more of the picture grey",
				colour_name(128, wcb, wcr), pr, pg, pb, wcb, wcr, 100 * gain);
		else
			set(rep, VQD_COLOR_CAST, W, 0, "white patch R %d, G %d, B %d: tint %.1f (Cb %+.0f, Cr %+.0f)",
				pr, pg, pb, W, wcb, wcr);
	}
}

static void
check_noise(actx *a)
{
	CTX;

	/* noise */
	if (nd > 0)
	{
		double		sg[VQD_DETAIL_FRAMES];
		int			n = 0;

		for (int k = 0; k < nd; k++)
		{
			double		v = noise_sigma(&dimg[k]);

			if (!isnan(v))
				sg[n++] = v;
		}
		if (n > 0)
		{
			double		m = median_of(sg, n);
			int			ab = m >= T[VQD_T_NOISE_SIGMA_MIN];

			a->noise = m;

			set(rep, VQD_NOISE, m, ab, ab ? "noisy: sigma %.1f" : "noise sigma %.1f", m);
		}
		else
			snprintf(rep->r[VQD_NOISE].detail, VQD_DETAIL_LEN, "not evaluated: picture too small or clipped");
	}
}

static void
check_blur(actx *a)
{
	CTX;

	/* blur */
	if (nd > 0)
	{
		double		b[VQD_DETAIL_FRAMES];
		int			eb = 0;

		for (int k = 0; k < nd; k++)
			b[k] = blur_edge_width(&dimg[k], isnan(a->noise) ? 0 : a->noise, &eb);
		{
			double		m = median_of(b, nd);
			int			ab = m >= T[VQD_T_BLUR_MIN];

			if (isnan(m))
				snprintf(rep->r[VQD_BLUR].detail, VQD_DETAIL_LEN, "not evaluated: picture too small");
			else
				set(rep, VQD_BLUR, m, ab, ab ? "blurred (%.2f, %d edge blocks)" : "sharpness ok (%.2f, %d edge blocks)", m, eb);
		}
	}
}

static void
check_stripes(actx *a)
{
	CTX;

	/* stripes */
	if (nd > 0)
	{
		stripe_found v = stripe_axis(dimg, nd, 1, T[VQD_T_STRIPE_AMPLITUDE_MIN]),
					h = stripe_axis(dimg, nd, 0, T[VQD_T_STRIPE_AMPLITUDE_MIN]);
		stripe_found *b = v.score >= h.score ? &v : &h;
		/* a sharp spectral line, or a weaker one of large amplitude */
		int			ab = b->ratio >= T[VQD_T_STRIPE_RATIO_MIN] ||
			(b->ratio >= T[VQD_T_STRIPE_RATIO_MIN] / 7.5 && b->amplitude >= T[VQD_T_STRIPE_AMPLITUDE_MIN]);

		dbg("stripes: v ratio %.1f amp %.2f per %.1f; h ratio %.1f amp %.2f per %.1f\n",
			v.ratio, v.amplitude, v.period, h.ratio, h.amplitude, h.period);
		set(rep, VQD_STRIPES, b->ratio, ab, "%s%s stripes, period %.1f px, amplitude %.1f",
			ab ? "" : "strongest periodic pattern: ", b == &v ? "vertical" : "horizontal",
			b->period, b->amplitude);
	}
}

static void
check_mosaic(actx *a)
{
	CTX;
	double		block = NAN;
	int			n = 0;
	double		frac,
				min_frames;
	int			ab;

	/*
	 * Mosaic (花屏) is a picture decoded from damaged data: what the decoder
	 * reported (errors, concealment, corrupt-frame flags; vqd_sample.c), as a
	 * share of the sampled frames decoded while damage was in force (from an
	 * error until the next clean key frame).  Blocking from coarse
	 * quantisation is the encoder's normal behaviour at a low bit rate and is
	 * only described (block-edge share on the 8-pixel grid).
	 */
	for (int k = 0; k < s->ndetail; k++)
	{
		double		fl,
					v = blockiness(s->detail[k], s->dw, s->dh, &fl);

		if (!isnan(v))
		{
			block = (n == 0 ? 0 : block) + fmax(v, MOSAIC_FLAT_WEIGHT * fl);
			n++;
		}
	}
	if (n > 0)
		block /= n;
	frac = s->nframes > 0 ? (double) s->damaged_frames / s->nframes : 0;
	min_frames = T[VQD_T_MOSAIC_MIN_FRAMES];
	ab = (s->decode_errors > 0 || s->corrupt_frames > 0) && frac >= T[VQD_T_MOSAIC_MIN] && s->damaged_frames >= min_frames;
	dbg("mosaic: errors %d concealed %d damaged %d corrupt %d of %d frames; blocking %.3f\n",
		s->decode_errors, s->concealed, s->damaged_frames, s->corrupt_frames, s->nframes, block);
	if (s->decode_errors > 0 || s->corrupt_frames > 0)
		set(rep, VQD_MOSAIC, frac, ab, "%s: decoder reported %d errors (%d concealed, %d frames flagged corrupt), %d of %d frames damaged",
			ab ? "corrupt picture" : "decoder errors", s->decode_errors, s->concealed, s->corrupt_frames, s->damaged_frames, s->nframes);
	else
		set(rep, VQD_MOSAIC, frac, 0, "no decoding errors (compression blocking %.2f)", isnan(block) ? 0 : block);
	if (ab && a->suppress < 0)
		a->suppress = VQD_MOSAIC;
}

#define FREEZE_LAGS 4

static void
check_freeze(actx *a)
{
	CTX;

	/* freeze */
	if (s->nframes >= 3)
	{
		/* 8x8 blocks tiling the whole frame (the last row/column overlaps: motion at the edge counts too) */
		int			bw = (s->gw + 7) / 8,
					bh = (s->gh + 7) / 8,
					pairs = 0,
					still = 0;

		double		tsh[VQD_MAX_FRAMES],
					tmed;

		for (int i = 1; i < s->nframes; i++)
		{
			int			changed = 0,
						touched = bw * bh;

			for (int by = 0; by < bh; by++)
				for (int bx = 0; bx < bw; bx++)
				{
					int			acc = 0,
								y0 = by * 8 + 8 <= s->gh ? by * 8 : s->gh - 8,
								x0 = bx * 8 + 8 <= s->gw ? bx * 8 : s->gw - 8;

					for (int y = y0; y < y0 + 8; y++)
					{
						const uint8_t *a = s->y[i] + (size_t) y * s->gw + x0,
								   *b = s->y[i - 1] + (size_t) y * s->gw + x0;

						for (int x = 0; x < 8; x++)
							acc += abs(a[x] - b[x]);
					}
					if (acc / 64.0 > T[VQD_T_FREEZE_BLOCK_DIFF])
						changed++;
				}

			/*
			 * blocks touched at all (any pixel changed), against the
			 * nearest of the FREEZE_LAGS previous frames: a frozen source
			 * through a long-GOP encoder with B-frames drifts to and fro
			 * around one picture (its B-frames and references are refined
			 * in turn), so within a few frames one is bit for bit the same
			 * or nearly; sensor noise that survives the encoder makes every
			 * frame differ from all before it
			 */
			for (int k = 1; k <= FREEZE_LAGS && k <= i; k++)
			{
				int			t = 0;

				for (int by = 0; by < bh && t < touched; by++)
					for (int bx = 0; bx < bw; bx++)
					{
						int			y0 = by * 8 + 8 <= s->gh ? by * 8 : s->gh - 8,
									x0 = bx * 8 + 8 <= s->gw ? bx * 8 : s->gw - 8;

						for (int y = y0; y < y0 + 8; y++)
							if (memcmp(s->y[i] + (size_t) y * s->gw + x0, s->y[i - k] + (size_t) y * s->gw + x0, 8) != 0)
							{
								t++;
								break;
							}
					}
				if (t < touched)
					touched = t;
			}
			tsh[pairs] = (double) touched / (bw * bh);
			dbg("freeze pair %d: changed %.4f touched %.4f\n", i, (double) changed / (bw * bh), tsh[pairs]);
			pairs++;
			/*
			 * the same picture: few blocks changed visibly (the OSD clock
			 * changes a few once a second)
			 */
			if ((double) changed / (bw * bh) <= T[VQD_T_FREEZE_CHANGED_MAX])
				still++;
		}
		/*
		 * and bit for bit: a frozen source is coded again and again, so
		 * frame pairs decode identical (only the OSD moves) once the
		 * encoder has refined the picture after each key frame; a static
		 * scene keeps some of its sensor noise through the encoder, in a
		 * few blocks of nearly every pair.  The lower quartile of the
		 * pairs, not the median: a starved encoder refines a frozen picture
		 * for half a GOP (1-2 % of the blocks at the median, as much as a
		 * clean static scene), then codes it bit for bit, or nearly so
		 * against one of the previous frames (above)
		 */
		qsort(tsh, pairs, sizeof(double), cmp_double);
		tmed = tsh[(pairs - 1) / 4];
		dbg("freeze: still %d of %d, touched lower quartile %.4f\n", still, pairs, tmed);
		{
			double		m = (double) still / pairs;
			int			vis = m >= T[VQD_T_FREEZE_FRACTION_MIN];
			int			ab = vis && tmed <= T[VQD_T_FREEZE_TOUCHED_MAX];

			set(rep, VQD_FREEZE, m, ab, ab ? "frozen: %d of %d frame pairs unchanged, %.2f%% of blocks touched (lower quartile)" :
				vis ? "static scene, not frozen: %d of %d frame pairs unchanged, but %.2f%% of blocks change (sensor noise, lower quartile)" :
				"%d of %d frame pairs unchanged, %.2f%% of blocks touched (lower quartile)", still, pairs, 100 * tmed);
		}
	}
	else
		snprintf(rep->r[VQD_FREEZE].detail, VQD_DETAIL_LEN, "not evaluated: fewer than 3 frames");
}

static void
check_jitter(actx *a)
{
	CTX;

	/*
	 * jitter: how far the picture's position (the global shifts summed
	 * frame by frame) wanders from its smooth path (its mean over 5 frames,
	 * 0.2 s at 25 fps).  A pan or a zoom follows its path, and so does a
	 * pan whose frames are repeated or whose shifts are measured in whole
	 * pixels (a 0,2,0,2 step is 0.5 px off a straight line); a shake of
	 * 4-7 Hz moves the picture to and fro within the 5 frames.
	 */
	if (s->nframes >= 6)
	{
		double		dx[VQD_MAX_FRAMES],
					dy[VQD_MAX_FRAMES],
					px[VQD_MAX_FRAMES],
					py[VQD_MAX_FRAMES];
		double		shake = 0,
					scale = 352.0 / s->gw,
					maxs = 0;
		int			n = 0,
					valid = 0;

		px[0] = py[0] = 0;
		for (int i = 1; i < s->nframes; i++)
		{
			global_shift(s, i - 1, i, &dx[i], &dy[i]);
			valid += !isnan(dx[i]) || !isnan(dy[i]);
			/* an axis without structure (vertical bars have no vertical shift) counts as still */
			px[i] = px[i - 1] + (isnan(dx[i]) ? 0 : dx[i]);
			py[i] = py[i - 1] + (isnan(dy[i]) ? 0 : dy[i]);
		}
		for (int i = 2; i + 2 < s->nframes; i++)
		{
			double		mx = (px[i - 2] + px[i - 1] + px[i] + px[i + 1] + px[i + 2]) / 5,
						my = (py[i - 2] + py[i - 1] + py[i] + py[i + 1] + py[i + 2]) / 5,
						e = hypot(px[i] - mx, py[i] - my) * scale;

			shake += e;
			if (e > maxs)
				maxs = e;
			n++;
		}
		if (n > 0 && valid >= (s->nframes - 1) / 4)
		{
			int			ab;

			shake /= n;
			ab = shake >= T[VQD_T_JITTER_SHAKE_MIN];
			set(rep, VQD_JITTER, shake, ab, ab ? "shaking: the picture wanders %.2f px from its smooth path (max %.1f)" :
				"the picture wanders %.2f px from its smooth path (max %.1f)", shake, maxs);
		}
		else
			set(rep, VQD_JITTER, 0, 0, "no global motion measurable (%d of %d frame pairs)", valid, s->nframes - 1);
	}
	else
		snprintf(rep->r[VQD_JITTER].detail, VQD_DETAIL_LEN, "not evaluated: fewer than 6 frames");
}

static void
check_occlusion(actx *a)
{
	CTX;

	/* occlusion */
	if (tmean)
	{
		double		uni,
					rest,
					rl;
		double		area = occlusion_area(tmean, s->gw, s->gh, th, &uni, &rest, &rl);
		/*
		 * the rest of the view must still show a textured scene; a region of
		 * one flat tone (uniform to a quarter of the limit: a solid occluder,
		 * not several flat areas merged) needs only a quarter of it textured
		 * (a chart's flat bars are not texture)
		 */
		int			ab = area >= T[VQD_T_OCCLUSION_AREA_MIN] && area <= 0.85 &&
			(rest >= 0.5 || (uni <= 0.25 * T[VQD_T_OCCLUSION_UNIFORMITY_MAX] && rest >= 0.25));

		dbg("occlusion: area %.2f uniformity %.1f rest textured %.2f luma %.0f\n", area, uni, rest, rl);
		set(rep, VQD_OCCLUSION, area, ab, ab ? "occluded: a blank region covers %.0f%% of the view" :
			"largest blank uniform region %.0f%%", 100 * area);
	}
}

static void
check_scene_change(actx *a)
{
	CTX;

	/* scene change */
	if (s->baseline && tmean)
	{
		int			ow = s->gw / 4,
					oh = s->gh / 4;
		double	   *ea = malloc(sizeof(double) * ow * oh),
				   *eb = malloc(sizeof(double) * ow * oh);
		float	   *bf = malloc(sizeof(float) * gpx);

		if (ea && eb && bf && ow > 4 && oh > 4)
		{
			double		r;
			int			ab;

			for (size_t p = 0; p < gpx; p++)
				bf[p] = s->baseline[p];
			edge_map(bf, s->gw, s->gh, ea, ow, oh);
			edge_map(tmean, s->gw, s->gh, eb, ow, oh);
			r = correlation(ea, eb, ow * oh);
			ab = r < T[VQD_T_SCENE_CORRELATION_MIN];
			set(rep, VQD_SCENE_CHANGE, r, ab, ab ? "scene changed: edge correlation with the baseline %.2f" :
				"edge correlation with the baseline %.2f", r);
		}
		free(ea);
		free(eb);
		free(bf);
	}
}

/* the checks, in the order they run: later ones may use what earlier ones found */
typedef void (*check_fn) (actx *a);
static const struct
{
	vqd_check	check;
	check_fn	fn;
}			check_table[] = {
	{VQD_SIGNAL_LOSS, check_signal_loss},
	{VQD_BLACK_SCREEN, check_black_brightness},	/* and VQD_BRIGHTNESS */
	{VQD_COLOR_CAST, check_color_cast},
	{VQD_NOISE, check_noise},
	{VQD_BLUR, check_blur},		/* uses the noise sigma */
	{VQD_STRIPES, check_stripes},
	{VQD_MOSAIC, check_mosaic},
	{VQD_FREEZE, check_freeze},
	{VQD_JITTER, check_jitter},
	{VQD_OCCLUSION, check_occlusion},
	{VQD_SCENE_CHANGE, check_scene_change},
};

/* report `c` normal, its finding kept in the detail, because `by` explains it */
static void
suppress_by(vqd_report *rep, int c, int by)
{
	char		tmp[VQD_DETAIL_LEN];

	snprintf(tmp, sizeof(tmp), "%s", rep->r[c].detail);
	snprintf(rep->r[c].detail, VQD_DETAIL_LEN, "suppressed by %s: %s", vqd_check_name(by), tmp);
	rep->r[c].abnormal = 0;
}

void
vqd_analyse(const vqd_sample *s, const vqd_thresholds *th, vqd_report *rep)
{
	actx		a;

	memset(&a, 0, sizeof(a));
	a.s = s;
	a.th = th;
	a.T = th->v;
	a.rep = rep;
	a.gpx = (size_t) s->gw * s->gh;
	a.cpx = (size_t) s->cw * s->ch;
	a.noise = NAN;
	a.suppress = -1;

	for (int c = 0; c < VQD_NCHECKS; c++)
	{
		rep->r[c].check = vqd_check_name(c);
		rep->r[c].metric = NAN;
		rep->r[c].abnormal = 0;
		rep->r[c].evaluated = 0;
	}
	rep->nresults = VQD_NCHECKS - 1;
	if (!rep->r[VQD_SCENE_CHANGE].detail[0])
		snprintf(rep->r[VQD_SCENE_CHANGE].detail, VQD_DETAIL_LEN, "no baseline");

	/* stream */
	set(rep, VQD_STREAM, s->stream_metric, !s->stream_ok, "%s", s->stream_detail);
	if (s->nframes <= 0 || s->gw <= 0)
	{
		for (int c = VQD_SIGNAL_LOSS; c < VQD_NCHECKS; c++)
			if (c != VQD_SCENE_CHANGE || s->baseline)
				snprintf(rep->r[c].detail, VQD_DETAIL_LEN, "not evaluated: no pictures");
		if (s->baseline || rep->r[VQD_SCENE_CHANGE].detail[0] == 'n')
			snprintf(rep->r[VQD_SCENE_CHANGE].detail, VQD_DETAIL_LEN, "not evaluated: no pictures");
		return;
	}
	a.ns = stat_frames(s, a.idx);

	/* temporal mean luma (occlusion, scene change) */
	a.tmean = calloc(a.gpx, sizeof(float));
	if (a.tmean)
	{
		for (int i = 0; i < s->nframes; i++)
			for (size_t p = 0; p < a.gpx; p++)
				a.tmean[p] += s->y[i][p];
		for (size_t p = 0; p < a.gpx; p++)
			a.tmean[p] /= s->nframes;
	}
	/* detail-scale images */
	for (int k = 0; k < s->ndetail; k++)
		if (detail_image(s, k, &a.dimg[a.nd]) == 0)
			a.nd++;

	for (size_t i = 0; i < sizeof(check_table) / sizeof(check_table[0]); i++)
		check_table[i].fn(&a);

	/*
	 * a too dark picture is blank nearly everywhere: its blank regions are
	 * the darkness, not an occluder (an occluder leaves the picture's mean
	 * luma at 56 and more in both corpora, a darkened picture found too dark
	 * is at 43 and less; a dark occluder so large that the picture is too
	 * dark is still reported, as too dark); and the structure it has lost
	 * to the darkness, or to heavy noise, is not blur
	 */
	{
		int			dark = rep->r[VQD_BRIGHTNESS].abnormal && rep->r[VQD_BRIGHTNESS].metric < a.T[VQD_T_DARK_MEAN_MAX];

		if (rep->r[VQD_OCCLUSION].abnormal && dark)
			suppress_by(rep, VQD_OCCLUSION, VQD_BRIGHTNESS);
		if (rep->r[VQD_BLUR].abnormal && (dark || rep->r[VQD_NOISE].abnormal))
			suppress_by(rep, VQD_BLUR, dark ? VQD_BRIGHTNESS : VQD_NOISE);
	}

	/* an occluder or a too dark picture leaves no scene colours to judge a cast by */
	if (rep->r[VQD_COLOR_CAST].abnormal &&
		(rep->r[VQD_OCCLUSION].abnormal || (rep->r[VQD_BRIGHTNESS].abnormal && rep->r[VQD_BRIGHTNESS].metric < a.T[VQD_T_DARK_MEAN_MAX])))
		suppress_by(rep, VQD_COLOR_CAST, rep->r[VQD_OCCLUSION].abnormal ? VQD_OCCLUSION : VQD_BRIGHTNESS);

	/* a washed-out picture has blank areas: they are not an occluder */
	if (rep->r[VQD_OCCLUSION].abnormal && rep->r[VQD_BRIGHTNESS].abnormal &&
		rep->r[VQD_BRIGHTNESS].metric > a.T[VQD_T_BRIGHT_MEAN_MIN])
		suppress_by(rep, VQD_OCCLUSION, VQD_BRIGHTNESS);

	/*
	 * a picture decoded from damaged data (mosaic) explains every other
	 * picture fault (a concealed key frame is a grey or green screen, not a
	 * lost signal); so does a solid or black screen
	 */
	if (rep->r[VQD_MOSAIC].abnormal)
		a.suppress = VQD_MOSAIC;
	if (a.suppress >= 0)
		for (int c = VQD_SIGNAL_LOSS; c < VQD_NCHECKS; c++)
			if (c != a.suppress && rep->r[c].evaluated && rep->r[c].abnormal)
				suppress_by(rep, c, a.suppress);

	for (int k = 0; k < a.nd; k++)
		free(a.dimg[k].p);
	free(a.tmean);
}
