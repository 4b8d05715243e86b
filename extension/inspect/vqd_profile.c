/*
 * vqd_profile.c — check names, thresholds and the named profiles.
 *
 * Profiles are data: one row per threshold with its value in each profile.
 * A caller (an inspection plan, a night time window) picks a profile by name
 * and may override single thresholds by name.  THRESHOLDS.md documents every
 * row; `vqd_cli --thresholds` prints this table so the two can be compared.
 */
#include <math.h>
#include <string.h>
#include <strings.h>

#include "vqd.h"

static const char *const check_names[VQD_NCHECKS] = {
	"stream", "signal_loss", "black_screen", "brightness", "blur", "color_cast",
	"noise", "stripes", "freeze", "jitter", "mosaic", "occlusion", "scene_change"
};

static const char *const profile_names[] = {"strict", "normal", "loose"};

/* name, check, unit, strict, normal, loose, meaning */
static const vqd_threshold_def defs[VQD_NTHRESHOLDS] = {
	[VQD_T_STREAM_MIN_FRAMES] = {"stream_min_frames", VQD_STREAM, "frames", 5, 1, 1,
		"fewest decoded frames for the stream to count as delivering pictures"},
	[VQD_T_SIGNAL_UNIFORM_MIN] = {"signal_uniform_min", VQD_SIGNAL_LOSS, "fraction", 0.80, 0.88, 0.95,
		"share of pixels within a few levels of the frame's median colour (not black) at or above which the frame is a solid 'no signal' screen"},
	[VQD_T_BLACK_LUMA_MAX] = {"black_luma_max", VQD_BLACK_SCREEN, "luma level (16-235)", 40, 35, 30,
		"luma at or below which a pixel counts as black"},
	[VQD_T_BLACK_FRACTION_MIN] = {"black_fraction_min", VQD_BLACK_SCREEN, "fraction", 0.90, 0.95, 0.98,
		"share of black pixels at or above which the picture is a black screen"},
	[VQD_T_DARK_MEAN_MAX] = {"dark_mean_max", VQD_BRIGHTNESS, "luma level (16-235)", 46, 45, 40,
		"mean luma below which the picture is too dark"},
	[VQD_T_BRIGHT_MEAN_MIN] = {"bright_mean_min", VQD_BRIGHTNESS, "luma level (16-235)", 160, 170, 185,
		"mean luma above which the picture is too bright"},
	[VQD_T_BLUR_MIN] = {"blur_min", VQD_BLUR, "edge width / 8 px (0..1)", 0.475, 0.50, 0.55,
		"edge width of the sharper edges (luma range of a 32x32 block over its steepest step, detail scale; 25th percentile over the 30% blocks sharpest by Crete-Roffet, the block row of an overlay line left out) over 8 pixels, at or above which the picture is blurred (0.5 = 4 px: a step blurred by a gaussian of sigma 1.6)"},
	[VQD_T_CAST_WHITE_MIN] = {"cast_white_min", VQD_COLOR_CAST, "chroma levels", 23, 24, 30,
		"tint of the white patch (the chroma of the 99.5th percentiles of R, G and B: what should be white) at or above which there is a colour cast; a cast tints the whites, a colourful scene has its own whites (a fruit close-up with none reaches 22)"},
	[VQD_T_CAST_SUPPORT_MIN] = {"cast_support_min", VQD_COLOR_CAST, "chroma levels", 12, 12, 16,
		"white-patch tint at or above which a weaker cast counts when white-balancing by the white patch makes greys appear (cast_grey_gain_min)"},
	[VQD_T_NOISE_SIGMA_MIN] = {"noise_sigma_min", VQD_NOISE, "luma levels (std)", 4.0, 5.5, 8.0,
		"noise standard deviation (flattest blocks, detail scale) at or above which the picture is noisy"},
	[VQD_T_STRIPE_RATIO_MIN] = {"stripe_ratio_min", VQD_STRIPES, "ratio", 28, 30, 45,
		"spectral line of the row or column profile, present in each of 4 bands, over the local spectrum (k/2..2k), at or above which there are stripes; a line 7.5 times weaker counts if its amplitude reaches stripe_amplitude_min; lines with harmonics (bars, windows) do not count"},
	[VQD_T_STRIPE_AMPLITUDE_MIN] = {"stripe_amplitude_min", VQD_STRIPES, "luma levels", 4, 4.5, 9,
		"amplitude of a stripe pattern (peak of the sinusoid) at or above which a weaker spectral line counts"},
	[VQD_T_FREEZE_BLOCK_DIFF] = {"freeze_block_diff", VQD_FREEZE, "luma levels", 1.5, 2.0, 3.0,
		"mean absolute difference of an 8x8 block between consecutive frames above which the block changed"},
	[VQD_T_FREEZE_CHANGED_MAX] = {"freeze_changed_max", VQD_FREEZE, "fraction of blocks", 0.004, 0.004, 0.004,
		"share of changed blocks at or below which two consecutive frames count as the same picture (room for an OSD clock)"},
	[VQD_T_FREEZE_FRACTION_MIN] = {"freeze_fraction_min", VQD_FREEZE, "fraction of frame pairs", 0.80, 0.90, 0.97,
		"share of unchanged consecutive pairs at or above which the picture is frozen"},
	[VQD_T_JITTER_SHAKE_MIN] = {"jitter_shake_min", VQD_JITTER, "pixels of a 352-wide frame", 0.8, 0.86, 1.2,
		"mean distance of the picture's position (global shifts summed) from its 5-frame mean path at or above which the picture shakes; pans, zooms and repeated frames follow their path"},
	[VQD_T_MOSAIC_MIN] = {"mosaic_min", VQD_MOSAIC, "fraction of frames", 0.02, 0.04, 0.10,
		"share of the sampled frames decoded from damaged data (the decoder reported an error, concealed, or flagged the frame corrupt; until the next clean key frame) at or above which there is mosaic; compression blocking is not mosaic"},
	[VQD_T_OCCLUSION_TEXTURE_MAX] = {"occlusion_texture_max", VQD_OCCLUSION, "luma levels", 2.0, 2.0, 1.5,
		"mean absolute second difference of a 16x16 block below which the block is blank"},
	[VQD_T_OCCLUSION_AREA_MIN] = {"occlusion_area_min", VQD_OCCLUSION, "fraction of frame", 0.30, 0.30, 0.40,
		"size of the largest connected blank, uniform region at or above which the view is occluded"},
	[VQD_T_OCCLUSION_UNIFORMITY_MAX] = {"occlusion_uniformity_max", VQD_OCCLUSION, "luma levels (std)", 10, 10, 7,
		"spread of block mean luma inside the blank region above which it is a lit surface (sky, wall gradient) rather than an occluder"},
	[VQD_T_SCENE_CORRELATION_MIN] = {"scene_correlation_min", VQD_SCENE_CHANGE, "correlation", 0.35, 0.30, 0.25,
		"correlation of the edge maps of baseline and sample below which the scene changed"},
	[VQD_T_MOSAIC_MIN_FRAMES] = {"mosaic_min_frames", VQD_MOSAIC, "frames", 1, 2, 3,
		"fewest damaged frames for mosaic, whatever the sample's length"},
	[VQD_T_FREEZE_TOUCHED_MAX] = {"freeze_touched_max", VQD_FREEZE, "fraction of blocks", 0.005, 0.004, 0.003,
		"lower quartile over frames of the share of 8x8 blocks with any pixel changed against the nearest of the 4 previous frames, at or below which a still picture is frozen (a frozen source is coded again bit for bit once the encoder has refined it, or drifts to and fro around one picture through a long GOP with B-frames; only the OSD moves) rather than a static scene (its sensor noise survives the encoder in some blocks of nearly every frame)"},
	[VQD_T_CAST_GREY_GAIN_MIN] = {"cast_grey_gain_min", VQD_COLOR_CAST, "fraction of lit pixels", 0.1, 0.15, 0.25,
		"share of the lit pixels (luma 40-230) that become grey (chroma within 8 levels) when the picture is white-balanced by its white patch, beyond those grey already, at or above which a tint from cast_support_min on is a cast: a cast's greys come back, a colourful scene gains none"},
	[VQD_T_CAST_LIT_MIN] = {"cast_lit_min", VQD_COLOR_CAST, "luma level (16-235)", 56, 64, 72,
		"mean luma below which the picture is lamp-lit (its brightest things are lamps, whose colour is the scene's) and colour is not judged by the white patch"},
	[VQD_T_BRIGHT_FLOOR_MIN] = {"bright_floor_min", VQD_BRIGHTNESS, "luma level (16-235)", 90, 100, 120,
		"2nd percentile of luma (the picture's dark end) above which a picture brighter than bright_mean_min is washed out (over-exposed, blinded: its blacks are lifted) rather than a bright scene that keeps its dark details (a white facade with its windows)"},
};

const char *
vqd_check_name(vqd_check c)
{
	return (c >= 0 && c < VQD_NCHECKS) ? check_names[c] : NULL;
}

int
vqd_check_from_name(const char *name)
{
	for (int i = 0; i < VQD_NCHECKS; i++)
		if (strcmp(check_names[i], name) == 0)
			return i;
	return -1;
}

int
vqd_profile_count(void)
{
	return (int) (sizeof(profile_names) / sizeof(profile_names[0]));
}

const char *
vqd_profile_name(int i)
{
	return (i >= 0 && i < vqd_profile_count()) ? profile_names[i] : NULL;
}

int
vqd_profile_load(const char *name, vqd_thresholds *th)
{
	int			p = -1;

	for (int i = 0; i < vqd_profile_count(); i++)
		if (strcasecmp(name, profile_names[i]) == 0)
			p = i;
	if (p < 0)
		return -1;
	for (int i = 0; i < VQD_NTHRESHOLDS; i++)
		th->v[i] = p == 0 ? defs[i].strict : p == 1 ? defs[i].normal : defs[i].loose;
	return 0;
}

int
vqd_threshold_count(void)
{
	return VQD_NTHRESHOLDS;
}

const vqd_threshold_def *
vqd_threshold_info(int i)
{
	return (i >= 0 && i < VQD_NTHRESHOLDS) ? &defs[i] : NULL;
}

int
vqd_threshold_index(const char *name)
{
	for (int i = 0; i < VQD_NTHRESHOLDS; i++)
		if (strcmp(defs[i].name, name) == 0)
			return i;
	return -1;
}

/* ranges an override must respect */
int
vqd_threshold_valid(int i, double v)
{
	if (!isfinite(v) || v < 0)
		return 0;
	switch (i)
	{
		case VQD_T_STREAM_MIN_FRAMES:
			return v >= 1 && v <= VQD_MAX_FRAMES;
		case VQD_T_SIGNAL_UNIFORM_MIN:
		case VQD_T_BLACK_FRACTION_MIN:
		case VQD_T_BLUR_MIN:
		case VQD_T_FREEZE_CHANGED_MAX:
		case VQD_T_FREEZE_TOUCHED_MAX:
		case VQD_T_FREEZE_FRACTION_MIN:
		case VQD_T_MOSAIC_MIN:
		case VQD_T_OCCLUSION_AREA_MIN:
		case VQD_T_CAST_GREY_GAIN_MIN:
			return v <= 1;
		case VQD_T_SCENE_CORRELATION_MIN:
			return v <= 1;
		case VQD_T_BLACK_LUMA_MAX:
		case VQD_T_DARK_MEAN_MAX:
		case VQD_T_BRIGHT_MEAN_MIN:
		case VQD_T_CAST_LIT_MIN:
		case VQD_T_BRIGHT_FLOOR_MIN:
			return v <= 255;
		default:
			return v <= 1e6;
	}
}

int
vqd_threshold_set(vqd_thresholds *th, const char *name, double value)
{
	int			i = vqd_threshold_index(name);

	if (i < 0)
		return -1;
	if (!vqd_threshold_valid(i, value))
		return -2;
	th->v[i] = value;
	return 0;
}
