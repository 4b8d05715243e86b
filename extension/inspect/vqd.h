/*
 * vqd.h — video quality diagnosis: open a source with FFmpeg, sample a few
 * seconds, and judge the picture with a fixed set of checks.
 *
 * Plain C (C99) over libavformat/libavcodec/libavutil/libswscale, with no
 * PostgreSQL headers, so that vms.diagnose(), the inspector workers, the
 * command-line tool (test/inspect/vqd_cli.c) and fuzzers share one copy.
 *
 * Never hangs: every blocking libav call runs under an AVIOInterruptCB that
 * enforces an overall deadline, a connect deadline, a read (stall) deadline
 * and an optional caller hook (the PostgreSQL wrapper checks for query
 * cancel there).  Memory is bounded by VQD_MAX_FRAMES analysis frames of at
 * most VQD_MAX_GRID_W x VQD_MAX_GRID_H, three native luma crops of at most
 * 1920x1088, one reference-counted decoded frame and a bounded JPEG.
 *
 * Thresholds are data: three named profiles (strict, normal, loose) plus
 * per-threshold overrides by name; see THRESHOLDS.md.
 */
#ifndef VQD_H
#define VQD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* the checks, in output order; names are fixed (vqd_check_name) */
typedef enum vqd_check
{
	VQD_STREAM = 0,
	VQD_SIGNAL_LOSS,
	VQD_BLACK_SCREEN,
	VQD_BRIGHTNESS,
	VQD_BLUR,
	VQD_COLOR_CAST,
	VQD_NOISE,
	VQD_STRIPES,
	VQD_FREEZE,
	VQD_JITTER,
	VQD_MOSAIC,
	VQD_OCCLUSION,
	VQD_SCENE_CHANGE,
	VQD_NCHECKS
} vqd_check;

/* thresholds, by index; names and per-profile defaults in vqd_profile.c */
typedef enum vqd_threshold
{
	VQD_T_STREAM_MIN_FRAMES = 0,
	VQD_T_SIGNAL_UNIFORM_MIN,
	VQD_T_BLACK_LUMA_MAX,
	VQD_T_BLACK_FRACTION_MIN,
	VQD_T_DARK_MEAN_MAX,
	VQD_T_BRIGHT_MEAN_MIN,
	VQD_T_BLUR_MIN,
	VQD_T_CAST_WHITE_MIN,
	VQD_T_CAST_SUPPORT_MIN,
	VQD_T_NOISE_SIGMA_MIN,
	VQD_T_STRIPE_RATIO_MIN,
	VQD_T_STRIPE_AMPLITUDE_MIN,
	VQD_T_FREEZE_BLOCK_DIFF,
	VQD_T_FREEZE_CHANGED_MAX,
	VQD_T_FREEZE_FRACTION_MIN,
	VQD_T_JITTER_SHAKE_MIN,
	VQD_T_MOSAIC_MIN,
	VQD_T_OCCLUSION_TEXTURE_MAX,
	VQD_T_OCCLUSION_AREA_MIN,
	VQD_T_OCCLUSION_UNIFORMITY_MAX,
	VQD_T_SCENE_CORRELATION_MIN,
	VQD_T_MOSAIC_MIN_FRAMES,
	VQD_T_FREEZE_TOUCHED_MAX,
	VQD_T_CAST_GREY_GAIN_MIN,
	VQD_T_CAST_LIT_MIN,
	VQD_T_BRIGHT_FLOOR_MIN,
	VQD_NTHRESHOLDS
} vqd_threshold;

typedef struct vqd_thresholds
{
	double		v[VQD_NTHRESHOLDS];
} vqd_thresholds;

/* one threshold's documentation (vqd_threshold_info) */
typedef struct vqd_threshold_def
{
	const char *name;			/* e.g. "blur_min"; used by overrides */
	vqd_check	check;			/* the check it belongs to */
	const char *unit;
	double		strict, normal, loose;
	const char *meaning;
} vqd_threshold_def;

/* bounds */
#define VQD_MAX_FRAMES		150		/* analysis frames kept */
#define VQD_MAX_GRID_W		704		/* analysis grid, luma */
#define VQD_MAX_GRID_H		576
#define VQD_DETAIL_FRAMES	3		/* native luma crops for blur/noise/mosaic/stripes */
#define VQD_DETAIL_MAX_W	1920
#define VQD_DETAIL_MAX_H	1088
#define VQD_SNAPSHOT_MAX	(8 * 1024 * 1024)
#define VQD_DETAIL_LEN		200

typedef struct vqd_options
{
	int			max_frames;			/* frames to analyse (default 50, 1..VQD_MAX_FRAMES) */
	double		max_seconds;		/* stream time to sample (default 2.0) */
	int			timeout_ms;			/* overall deadline, open to verdict (default 10000) */
	int			connect_timeout_ms; /* opening and probing (default 5000, capped by timeout_ms) */
	int			read_timeout_ms;	/* longest wait without a packet (default 3000) */
	int			analysis_width;		/* analysis grid width (default 352, 64..VQD_MAX_GRID_W) */
	int			snapshot;			/* non-zero: encode a JPEG of one full frame */
	int			snapshot_max_width; /* default 1920; larger frames are scaled down */
	int			snapshot_max_bytes; /* default 1 MiB; quality is lowered to fit */
	const unsigned char *baseline;	/* baseline snapshot (JPEG or PNG bytes) or NULL */
	size_t		baseline_len;
	vqd_thresholds th;				/* filled from the "normal" profile by vqd_options_init */
	/*
	 * Demuxer to use (e.g. "mpeg" for a program stream the caller assembled
	 * itself), or NULL to probe.  Forcing it means the content cannot pick a
	 * demuxer that opens further files (playlists, concat scripts).
	 */
	const char *input_format;
	/* caller hook polled with the deadline; non-zero aborts (e.g. query cancel) */
	int			(*interrupt) (void *arg);
	void	   *interrupt_arg;
} vqd_options;

typedef struct vqd_result
{
	const char *check;			/* fixed name */
	int			evaluated;		/* 0: not evaluated (no frames, or no baseline) */
	double		metric;			/* NaN when not evaluated */
	int			abnormal;
	char		detail[VQD_DETAIL_LEN];
	int			has_vec;		/* vec is set (color_cast: the picture's median Cb, Cr offsets) */
	double		vec[2];
} vqd_result;

typedef struct vqd_report
{
	vqd_result	r[VQD_NCHECKS]; /* r[i].check == vqd_check_name(i) */
	int			nresults;		/* VQD_NCHECKS, or one less without baseline */
	/* what was sampled */
	int			width, height;	/* native */
	int			frames;			/* frames analysed */
	double		fps;			/* average, from timestamps (0 if unknown) */
	char		codec[32];
	double		elapsed_ms;
	double		first_frame_ms; /* open to first decoded frame; -1 if none */
	int			interrupted;	/* the caller hook asked to stop */
	/* JPEG snapshot (malloc'd, free with vqd_report_free) */
	unsigned char *snapshot;
	size_t		snapshot_len;
} vqd_report;

/* profiles and thresholds (vqd_profile.c) */
extern const char *vqd_check_name(vqd_check c);
extern int	vqd_check_from_name(const char *name);	/* -1 if unknown */
extern int	vqd_profile_count(void);
extern const char *vqd_profile_name(int i);
extern int	vqd_profile_load(const char *name, vqd_thresholds *th); /* 0, or -1 if unknown */
extern int	vqd_threshold_count(void);
extern const vqd_threshold_def *vqd_threshold_info(int i);
extern int	vqd_threshold_index(const char *name);	/* -1 if unknown */
extern int	vqd_threshold_set(vqd_thresholds *th, const char *name, double value);	/* -1 unknown, -2 out of range */
extern int	vqd_threshold_valid(int i, double value);

/* diagnosis (vqd_sample.c) */
extern void vqd_options_init(vqd_options *o);
extern int	vqd_diagnose(const char *source, const vqd_options *o, vqd_report *rep);
extern void vqd_report_free(vqd_report *rep);
/* silence libav's own logging (it writes to stderr); call once per process */
extern void vqd_quiet_libav(void);

/* ---- analysis core, usable without libav (vqd_checks.c) ---- */

/* what the sampler hands to the checks */
typedef struct vqd_sample
{
	/* analysis grid: nframes frames of gw x gh luma, cw x ch chroma (4:2:0) */
	int			gw, gh, cw, ch;
	int			nframes;
	uint8_t    *y[VQD_MAX_FRAMES];
	uint8_t    *u[VQD_MAX_FRAMES];
	uint8_t    *v[VQD_MAX_FRAMES];
	double		t[VQD_MAX_FRAMES];	/* seconds from the first frame */
	/* native luma crops (central, aligned to 16), for detail-scale checks */
	int			ndetail;
	int			dw, dh;				/* crop size */
	int			native_w, native_h; /* full frame size */
	uint8_t    *detail[VQD_DETAIL_FRAMES];
	/* baseline, scaled to the analysis grid (gw x gh luma) or NULL */
	uint8_t    *baseline;
	/* stream outcome */
	int			stream_ok;			/* got at least the minimum frames */
	char		stream_detail[VQD_DETAIL_LEN];
	double		stream_metric;		/* frames decoded */
	/* what the decoder reported (mosaic: corruption, not compression) */
	int			decode_errors;		/* error messages and refused packets */
	int			concealed;			/* concealment messages among them */
	int			damaged_frames;		/* frames decoded from damaged data */
	int			corrupt_frames;		/* frames the decoder flagged corrupt */
} vqd_sample;

/* fills rep->r[] from a sample; no allocation escapes */
extern void vqd_analyse(const vqd_sample *s, const vqd_thresholds *th, vqd_report *rep);

#ifdef __cplusplus
}
#endif

#endif							/* VQD_H */
