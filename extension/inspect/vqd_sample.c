/*
 * vqd_sample.c — open a source, decode a bounded sample, scale it to the
 * analysis grid, keep native luma crops and one frame for the snapshot, then
 * hand the sample to the checks (vqd_checks.c).
 *
 * Time limits: one AVIOInterruptCB polls an overall deadline (timeout_ms),
 * the current phase's deadline (connect_timeout_ms while opening and probing,
 * read_timeout_ms since the last packet while reading) and the caller's hook.
 * libav's own socket timeouts are set too, as a second line.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>
#include <libavutil/time.h>
#include <libswscale/swscale.h>

#include "vqd.h"

enum
{
	STOP_NONE = 0,
	STOP_DEADLINE,				/* overall timeout_ms */
	STOP_CONNECT,				/* connect_timeout_ms while opening */
	STOP_STALL,					/* read_timeout_ms without a packet */
	STOP_USER					/* caller hook */
};

typedef struct vqd_io
{
	int64_t		start;
	int64_t		deadline;
	int64_t		phase_deadline;
	int			phase_stop;		/* STOP_CONNECT or STOP_STALL */
	int			reason;
	int			(*user) (void *);
	void	   *user_arg;
} vqd_io;

static int
interrupt_cb(void *p)
{
	vqd_io	   *io = p;
	int64_t		now;

	if (io->reason)
		return 1;
	if (io->user && io->user(io->user_arg))
	{
		io->reason = STOP_USER;
		return 1;
	}
	now = av_gettime_relative();
	if (now >= io->deadline)
		io->reason = STOP_DEADLINE;
	else if (now >= io->phase_deadline)
		io->reason = io->phase_stop;
	return io->reason != STOP_NONE;
}

/*
 * What the decoder says about the sample.  libav reports damage it concealed
 * ("concealing N DC, N AC, N MV errors", "error while decoding MB ...") only
 * through av_log, so one process-wide log callback counts the messages of a
 * decoder that a running diagnosis owns (its AVCodecContext's opaque points at
 * the sampler's counters, tagged with a magic number) and hands every other
 * message to libav's default callback, which honours av_log_set_level.  It
 * never raises errors, allocates or calls back into the caller: it is safe in
 * a PostgreSQL backend.
 */
#define VQD_LOG_MAGIC 0x76716432u	/* "vqd2" */

typedef struct vqd_declog
{
	unsigned	magic;
	int			errors;			/* error messages since the sample began */
	int			concealed;		/* of which: concealment */
	int			pending;		/* error messages not yet attributed to a frame */
} vqd_declog;

static void
vqd_log_cb(void *avcl, int level, const char *fmt, va_list vl)
{
	if (avcl && level <= AV_LOG_ERROR)
	{
		const AVClass *cls = *(const AVClass **) avcl;

		if (cls == avcodec_get_class())
		{
			vqd_declog *dl = ((AVCodecContext *) avcl)->opaque;

			if (dl && dl->magic == VQD_LOG_MAGIC)
			{
				dl->errors++;
				dl->pending++;
				if (fmt && strstr(fmt, "conceal"))
					dl->concealed++;
				return;
			}
		}
	}
	av_log_default_callback(avcl, level, fmt, vl);
}

void
vqd_quiet_libav(void)
{
	av_log_set_level(AV_LOG_QUIET);
	av_log_set_callback(vqd_log_cb);
}

void
vqd_options_init(vqd_options *o)
{
	memset(o, 0, sizeof(*o));
	o->max_frames = 50;
	o->max_seconds = 2.0;
	o->timeout_ms = 10000;
	o->connect_timeout_ms = 5000;
	o->read_timeout_ms = 3000;
	o->analysis_width = 352;
	o->snapshot = 0;
	o->snapshot_max_width = 1920;
	o->snapshot_max_bytes = 1024 * 1024;
	vqd_profile_load("normal", &o->th);
}

void
vqd_report_free(vqd_report *rep)
{
	free(rep->snapshot);
	rep->snapshot = NULL;
	rep->snapshot_len = 0;
}

static double
ms_since(int64_t t0)
{
	return (av_gettime_relative() - t0) / 1000.0;
}

static int
is_url(const char *s)
{
	const char *c = strstr(s, "://");

	if (!c || c == s)
		return 0;
	for (const char *p = s; p < c; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '+' || *p == '-' || *p == '.'))
			return 0;
	return 1;
}

/* ---------- JPEG snapshot and baseline image ---------- */

static int
encode_jpeg(const AVFrame *src, int max_w, int max_bytes, unsigned char **out, size_t *outlen)
{
	const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_MJPEG);
	int			w = src->width,
				h = src->height;
	int			ret = -1;

	if (!codec || w <= 0 || h <= 0)
		return -1;
	if (max_w < 16)
		max_w = 16;
	for (int attempt = 0; attempt < 6 && ret < 0; attempt++)
	{
		static const int qs[] = {4, 8, 16, 31};
		int			sw = w,
					sh = h;
		struct SwsContext *sws;
		AVFrame    *f;

		if (sw > max_w)
		{
			sh = (int) ((double) h * max_w / w + 0.5);
			sw = max_w;
		}
		/* after two qualities fail, shrink by half each time */
		if (attempt >= 2)
		{
			sw >>= (attempt - 1);
			sh >>= (attempt - 1);
		}
		sw &= ~1;
		sh &= ~1;
		if (sw < 16 || sh < 16)
			break;
		f = av_frame_alloc();
		if (!f)
			break;
		f->format = AV_PIX_FMT_YUVJ420P;
		f->width = sw;
		f->height = sh;
		if (av_frame_get_buffer(f, 0) < 0)
		{
			av_frame_free(&f);
			break;
		}
		sws = sws_getContext(w, h, src->format, sw, sh, AV_PIX_FMT_YUVJ420P,
							 SWS_BILINEAR, NULL, NULL, NULL);
		if (!sws)
		{
			av_frame_free(&f);
			break;
		}
		sws_scale(sws, (const uint8_t *const *) src->data, src->linesize, 0, h, f->data, f->linesize);
		sws_freeContext(sws);

		for (int qi = attempt < 2 ? attempt * 2 : 3; qi < 4; qi++)
		{
			AVCodecContext *c = avcodec_alloc_context3(codec);
			AVPacket   *pkt = av_packet_alloc();
			int			got = 0;

			if (!c || !pkt)
			{
				avcodec_free_context(&c);
				av_packet_free(&pkt);
				break;
			}
			c->width = sw;
			c->height = sh;
			c->pix_fmt = AV_PIX_FMT_YUVJ420P;
			c->time_base = (AVRational) {1, 25};
			c->flags |= AV_CODEC_FLAG_QSCALE;
			c->global_quality = FF_QP2LAMBDA * qs[qi];
			c->thread_count = 1;
			f->quality = c->global_quality;
			f->pts = 0;
			if (avcodec_open2(c, codec, NULL) == 0 &&
				avcodec_send_frame(c, f) == 0 &&
				avcodec_receive_packet(c, pkt) == 0)
				got = 1;
			if (got && pkt->size <= max_bytes)
			{
				*out = malloc(pkt->size);
				if (*out)
				{
					memcpy(*out, pkt->data, pkt->size);
					*outlen = pkt->size;
					ret = 0;
				}
			}
			av_packet_free(&pkt);
			avcodec_free_context(&c);
			if (ret == 0 || !got)
				break;
			if (attempt < 2)
				break;			/* try the next quality at this size first */
		}
		av_frame_free(&f);
	}
	return ret;
}

/* decode a JPEG or PNG and scale its luma to gw x gh; NULL on failure */
static uint8_t *
decode_baseline(const unsigned char *data, size_t len, int gw, int gh, char *why, size_t whylen)
{
	enum AVCodecID id;
	const AVCodec *codec;
	AVCodecContext *c = NULL;
	AVPacket   *pkt = NULL;
	AVFrame    *f = NULL;
	uint8_t    *grey = NULL;

	if (len >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
		id = AV_CODEC_ID_MJPEG;
	else if (len >= 8 && memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0)
		id = AV_CODEC_ID_PNG;
	else
	{
		snprintf(why, whylen, "baseline is not a JPEG or PNG image");
		return NULL;
	}
	if (len > 64 * 1024 * 1024)
	{
		snprintf(why, whylen, "baseline larger than 64 MB");
		return NULL;
	}
	codec = avcodec_find_decoder(id);
	if (!codec || !(c = avcodec_alloc_context3(codec)) || !(pkt = av_packet_alloc()) || !(f = av_frame_alloc()))
	{
		snprintf(why, whylen, "no image decoder");
		goto done;
	}
	c->thread_count = 1;
	c->max_pixels = 8192 * 8192;
	if (avcodec_open2(c, codec, NULL) < 0 || av_new_packet(pkt, (int) len) < 0)
	{
		snprintf(why, whylen, "cannot open the image decoder");
		goto done;
	}
	memcpy(pkt->data, data, len);
	if (avcodec_send_packet(c, pkt) < 0 || (avcodec_send_packet(c, NULL), avcodec_receive_frame(c, f)) < 0
		|| f->width <= 0 || f->height <= 0)
	{
		snprintf(why, whylen, "baseline image does not decode");
		goto done;
	}
	{
		struct SwsContext *sws = sws_getContext(f->width, f->height, f->format, gw, gh, AV_PIX_FMT_GRAY8,
												SWS_AREA, NULL, NULL, NULL);
		uint8_t    *dst[4] = {NULL};
		int			dstride[4] = {gw, 0, 0, 0};

		if (!sws)
		{
			snprintf(why, whylen, "baseline pixel format not supported");
			goto done;
		}
		grey = malloc((size_t) gw * gh);
		if (grey)
		{
			dst[0] = grey;
			sws_scale(sws, (const uint8_t *const *) f->data, f->linesize, 0, f->height, dst, dstride);
		}
		sws_freeContext(sws);
	}
done:
	av_frame_free(&f);
	av_packet_free(&pkt);
	avcodec_free_context(&c);
	return grey;
}

/* ---------- sampling ---------- */

typedef struct sampler
{
	const vqd_options *o;
	vqd_sample *s;
	uint8_t    *pool;			/* analysis planes */
	size_t		frame_bytes;
	struct SwsContext *sws;
	struct SwsContext *grey_sws; /* for detail crops of non-planar formats */
	int			src_w, src_h, src_fmt;
	AVFrame    *snap;			/* full frame for the snapshot */
	int			snap_target;
	int			detail_at[VQD_DETAIL_FRAMES];
	int64_t		first_pts;
	AVRational	tb;
	double		guess_fps;
	double		last_t;
	int			corrupt;		/* frames flagged corrupt by the decoder */
	int			damaged;		/* frames decoded from damaged data (flagged, or after an error until a clean key frame) */
	int			in_damage;		/* an error was reported and no clean key frame followed yet */
	int			packet_errors;	/* packets the decoder refused */
	vqd_declog	log;
	int			done;
} sampler;

static int
setup_grid(sampler *sp, const AVFrame *f)
{
	vqd_sample *s = sp->s;
	int			gw = sp->o->analysis_width,
				gh;
	double		sar = 1.0;

	if (f->sample_aspect_ratio.num > 0 && f->sample_aspect_ratio.den > 0)
		sar = av_q2d(f->sample_aspect_ratio);
	if (sar < 0.25 || sar > 4)
		sar = 1.0;
	if (gw > f->width)
		gw = f->width;
	if (gw > VQD_MAX_GRID_W)
		gw = VQD_MAX_GRID_W;
	gw &= ~1;
	gh = (int) (gw * (double) f->height / (f->width * sar) + 0.5);
	if (gh > VQD_MAX_GRID_H)
		gh = VQD_MAX_GRID_H;
	gh &= ~1;
	if (gw < 16 || gh < 16)
		return -1;
	s->gw = gw;
	s->gh = gh;
	s->cw = gw / 2;
	s->ch = gh / 2;
	sp->frame_bytes = (size_t) gw * gh + 2 * (size_t) s->cw * s->ch;
	sp->pool = malloc(sp->frame_bytes * sp->o->max_frames);
	if (!sp->pool)
		return -1;

	s->native_w = f->width;
	s->native_h = f->height;
	s->dw = (f->width > VQD_DETAIL_MAX_W ? VQD_DETAIL_MAX_W : f->width);
	s->dh = (f->height > VQD_DETAIL_MAX_H ? VQD_DETAIL_MAX_H : f->height);
	for (int k = 0; k < VQD_DETAIL_FRAMES; k++)
	{
		s->detail[k] = malloc((size_t) s->dw * s->dh);
		if (!s->detail[k])
			return -1;
	}
	return 0;
}

/* copy the central native luma crop of f into the next detail slot */
static void
keep_detail(sampler *sp, const AVFrame *f)
{
	vqd_sample *s = sp->s;
	int			k = s->ndetail;
	const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(f->format);
	int			x0 = ((f->width - s->dw) / 2) & ~15,
				y0 = ((f->height - s->dh) / 2) & ~15;

	if (k >= VQD_DETAIL_FRAMES || f->width != s->native_w || f->height != s->native_h)
		return;					/* full, or resolution changed mid-sample */
	if (d && !(d->flags & (AV_PIX_FMT_FLAG_RGB | AV_PIX_FMT_FLAG_PAL | AV_PIX_FMT_FLAG_BITSTREAM | AV_PIX_FMT_FLAG_HWACCEL))
		&& d->nb_components >= 1 && d->comp[0].plane == 0 && d->comp[0].depth == 8
		&& d->comp[0].step == 1 && d->comp[0].offset == 0)
	{
		for (int y = 0; y < s->dh; y++)
			memcpy(s->detail[k] + (size_t) y * s->dw, f->data[0] + (size_t) (y0 + y) * f->linesize[0] + x0, s->dw);
	}
	else
	{
		/* RGB, packed or high bit depth: convert the whole frame to grey once */
		uint8_t    *tmp = malloc((size_t) f->width * f->height);
		uint8_t    *dst[4] = {tmp};
		int			ds[4] = {f->width};

		if (!tmp)
			return;
		sp->grey_sws = sws_getCachedContext(sp->grey_sws, f->width, f->height, f->format,
											f->width, f->height, AV_PIX_FMT_GRAY8, SWS_POINT, NULL, NULL, NULL);
		if (!sp->grey_sws)
		{
			free(tmp);
			return;
		}
		sws_scale(sp->grey_sws, (const uint8_t *const *) f->data, f->linesize, 0, f->height, dst, ds);
		for (int y = 0; y < s->dh; y++)
			memcpy(s->detail[k] + (size_t) y * s->dw, tmp + (size_t) (y0 + y) * f->width + x0, s->dw);
		free(tmp);
	}
	s->ndetail = k + 1;
}

static void
take_frame(sampler *sp, AVFrame *f)
{
	vqd_sample *s = sp->s;
	int			i = s->nframes;
	double		t;
	int64_t		pts = f->best_effort_timestamp;
	uint8_t    *base;
	uint8_t    *dst[4];
	int			ds[4];

	if (sp->done || f->width <= 0 || f->height <= 0)
		return;
	if (i == 0)
	{
		if (setup_grid(sp, f) < 0)
		{
			sp->done = 1;
			snprintf(s->stream_detail, sizeof(s->stream_detail), "frame size %dx%d not supported", f->width, f->height);
			return;
		}
		sp->first_pts = pts;
	}
	if (pts != AV_NOPTS_VALUE && sp->first_pts != AV_NOPTS_VALUE)
		t = (pts - sp->first_pts) * av_q2d(sp->tb);
	else
		t = i / sp->guess_fps;
	if (i > 0 && (t < sp->last_t || t > sp->last_t + 10))
		t = sp->last_t + 1.0 / sp->guess_fps;	/* broken timestamps */
	if (t >= sp->o->max_seconds && i > 0)
	{
		sp->done = 1;
		return;
	}
	sp->last_t = t;

	sp->sws = sws_getCachedContext(sp->sws, f->width, f->height, f->format, s->gw, s->gh,
								   AV_PIX_FMT_YUV420P, SWS_FAST_BILINEAR, NULL, NULL, NULL);
	if (!sp->sws)
	{
		sp->done = 1;
		snprintf(s->stream_detail, sizeof(s->stream_detail), "pixel format %s not supported",
				 av_get_pix_fmt_name(f->format) ? av_get_pix_fmt_name(f->format) : "?");
		return;
	}
	base = sp->pool + sp->frame_bytes * i;
	s->y[i] = base;
	s->u[i] = base + (size_t) s->gw * s->gh;
	s->v[i] = s->u[i] + (size_t) s->cw * s->ch;
	dst[0] = s->y[i];
	dst[1] = s->u[i];
	dst[2] = s->v[i];
	dst[3] = NULL;
	ds[0] = s->gw;
	ds[1] = ds[2] = s->cw;
	ds[3] = 0;
	sws_scale(sp->sws, (const uint8_t *const *) f->data, f->linesize, 0, f->height, dst, ds);
	s->t[i] = t;
	{
		int			flagged = (f->flags & AV_FRAME_FLAG_CORRUPT) || f->decode_error_flags;
		int			logged = sp->log.pending > 0;

		sp->log.pending = 0;
		if (flagged)
			sp->corrupt++;
		if (flagged || logged)
			sp->in_damage = 1;
		else if (f->key_frame)
			sp->in_damage = 0;	/* a clean key frame ends the damage */
		if (sp->in_damage)
			sp->damaged++;
	}

	for (int k = 0; k < VQD_DETAIL_FRAMES; k++)
		if (sp->detail_at[k] == i)
			keep_detail(sp, f);
	if (i <= sp->snap_target)
	{
		av_frame_unref(sp->snap);
		av_frame_ref(sp->snap, f);
	}
	s->nframes = i + 1;
	if (s->nframes >= sp->o->max_frames)
		sp->done = 1;
}

static int
drain(sampler *sp, AVCodecContext *dec, AVFrame *f)
{
	int			r;

	while ((r = avcodec_receive_frame(dec, f)) == 0)
	{
		take_frame(sp, f);
		av_frame_unref(f);
	}
	return r;
}

static const char *
stop_text(int reason)
{
	switch (reason)
	{
		case STOP_DEADLINE:
			return "overall timeout";
		case STOP_CONNECT:
			return "connect timeout";
		case STOP_STALL:
			return "read timeout";
		case STOP_USER:
			return "interrupted";
	}
	return "";
}

int
vqd_diagnose(const char *source, const vqd_options *o, vqd_report *rep)
{
	vqd_sample *s;
	sampler		sp;
	vqd_io		io;
	AVFormatContext *fc = NULL;
	AVCodecContext *dec = NULL;
	AVDictionary *opts = NULL;
	AVPacket   *pkt = NULL;
	AVFrame    *frame = NULL;
	const AVCodec *codec = NULL;
	const AVInputFormat *ifmt = NULL;
	int			vi = -1;
	int			r;
	int			connect_ms, read_ms;
	char		err[128];
	int			url = is_url(source);

	memset(rep, 0, sizeof(*rep));
	rep->first_frame_ms = -1;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -1;
	memset(&sp, 0, sizeof(sp));
	sp.o = o;
	sp.s = s;
	sp.first_pts = AV_NOPTS_VALUE;
	sp.guess_fps = 25;
	sp.snap_target = o->max_frames / 2;
	for (int k = 0; k < VQD_DETAIL_FRAMES; k++)
		sp.detail_at[k] = (int) ((2 * k + 1) * (double) o->max_frames / (2 * VQD_DETAIL_FRAMES));

	memset(&io, 0, sizeof(io));
	io.start = av_gettime_relative();
	io.deadline = io.start + (int64_t) o->timeout_ms * 1000;
	connect_ms = o->connect_timeout_ms > 0 && o->connect_timeout_ms < o->timeout_ms ? o->connect_timeout_ms : o->timeout_ms;
	read_ms = o->read_timeout_ms > 0 && o->read_timeout_ms < o->timeout_ms ? o->read_timeout_ms : o->timeout_ms;
	io.phase_deadline = io.start + (int64_t) connect_ms * 1000;
	io.phase_stop = STOP_CONNECT;
	io.user = o->interrupt;
	io.user_arg = o->interrupt_arg;

	/* ---- open ---- */
	fc = avformat_alloc_context();
	if (!fc)
		goto fail_alloc;
	fc->interrupt_callback.callback = interrupt_cb;
	fc->interrupt_callback.opaque = &io;
	fc->probesize = 2 * 1024 * 1024;
	fc->max_analyze_duration = AV_TIME_BASE;
	{
		char		us[32];

		/* libav's socket timeouts are a backstop: the interrupt callback, which knows why, comes first */
		snprintf(us, sizeof(us), "%lld", (long long) ((connect_ms > read_ms ? connect_ms : read_ms) + 2000) * 1000);
		if (strncmp(source, "rtsp://", 7) == 0 || strncmp(source, "rtsps://", 8) == 0)
		{
			av_dict_set(&opts, "rtsp_transport", "tcp", 0);
			av_dict_set(&opts, "timeout", us, 0);	/* socket I/O timeout */
		}
		else if (strncmp(source, "http://", 7) == 0 || strncmp(source, "https://", 8) == 0)
		{
			av_dict_set(&opts, "timeout", us, 0);
			av_dict_set(&opts, "reconnect", "0", 0);
		}
		av_dict_set(&opts, "rw_timeout", us, 0);
		/* a network source never reaches local files, even through a playlist */
		av_dict_set(&opts, "protocol_whitelist",
					url ? "rtsp,rtsps,rtp,srtp,udp,tcp,tls,http,https,httpproxy,crypto,hls"
					: "file,crypto", 0);
		/*
		 * and only the container formats cameras and platforms send: a
		 * network source cannot pick one of FFmpeg's many other demuxers
		 * (image sequences, concat, playlists of other kinds) by its content
		 */
		if (url)
			av_dict_set(&opts, "format_whitelist",
						"rtsp,sdp,rtp,mpegts,hls,mov,flv,h264,hevc,mpeg,mpegvideo,mjpeg,matroska", 0);
	}
	if (o->input_format)
	{
		ifmt = av_find_input_format(o->input_format);
		if (ifmt == NULL)
		{
			snprintf(s->stream_detail, sizeof(s->stream_detail), "no %s demuxer in this FFmpeg", o->input_format);
			av_dict_free(&opts);
			avformat_free_context(fc);
			fc = NULL;
			goto analyse;
		}
	}
	r = avformat_open_input(&fc, source, ifmt, &opts);
	av_dict_free(&opts);
	if (r < 0)
	{
		if (io.reason)
			snprintf(s->stream_detail, sizeof(s->stream_detail), "could not open: %s after %.0f ms",
					 stop_text(io.reason), ms_since(io.start));
		else
		{
			av_strerror(r, err, sizeof(err));
			snprintf(s->stream_detail, sizeof(s->stream_detail), "could not open: %s", err);
		}
		goto analyse;
	}
	/* connected: from here on, waiting for data is a read stall */
	io.phase_stop = STOP_STALL;
	io.phase_deadline = av_gettime_relative() + (int64_t) read_ms * 1000;
	r = avformat_find_stream_info(fc, NULL);
	if (r < 0 && io.reason)
	{
		snprintf(s->stream_detail, sizeof(s->stream_detail), "no stream information: %s after %.0f ms",
				 stop_text(io.reason), ms_since(io.start));
		goto analyse;
	}
	vi = av_find_best_stream(fc, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
	if (vi < 0 || !codec)
	{
		snprintf(s->stream_detail, sizeof(s->stream_detail), vi == AVERROR_DECODER_NOT_FOUND ?
				 "no decoder for the video stream" : "no video stream");
		goto analyse;
	}
	for (unsigned i = 0; i < fc->nb_streams; i++)
		if ((int) i != vi)
			fc->streams[i]->discard = AVDISCARD_ALL;
	snprintf(rep->codec, sizeof(rep->codec), "%s", codec->name);
	sp.tb = fc->streams[vi]->time_base;
	{
		AVRational	fr = fc->streams[vi]->avg_frame_rate;

		if (fr.num <= 0 || fr.den <= 0)
			fr = fc->streams[vi]->r_frame_rate;
		if (fr.num > 0 && fr.den > 0 && av_q2d(fr) > 0.5 && av_q2d(fr) < 240)
			sp.guess_fps = av_q2d(fr);
	}
	dec = avcodec_alloc_context3(codec);
	if (!dec || avcodec_parameters_to_context(dec, fc->streams[vi]->codecpar) < 0)
		goto fail_alloc;
	dec->thread_count = 1;
	dec->max_pixels = 8192 * 4352;
	dec->pkt_timebase = sp.tb;
	/* count what the decoder reports (vqd_log_cb); concealment stays on */
	sp.log.magic = VQD_LOG_MAGIC;
	dec->opaque = &sp.log;
	av_log_set_callback(vqd_log_cb);
	if (avcodec_open2(dec, codec, NULL) < 0)
	{
		snprintf(s->stream_detail, sizeof(s->stream_detail), "cannot open the %s decoder", codec->name);
		goto analyse;
	}
	pkt = av_packet_alloc();
	frame = av_frame_alloc();
	sp.snap = av_frame_alloc();
	if (!pkt || !frame || !sp.snap)
		goto fail_alloc;

	/* ---- read and decode ---- */
	io.phase_stop = STOP_STALL;
	io.phase_deadline = av_gettime_relative() + (int64_t) read_ms * 1000;
	while (!sp.done)
	{
		r = av_read_frame(fc, pkt);
		if (r < 0)
		{
			if (r == AVERROR_EOF || avio_feof(fc->pb))
			{
				avcodec_send_packet(dec, NULL);
				drain(&sp, dec, frame);
			}
			break;
		}
		io.phase_deadline = av_gettime_relative() + (int64_t) read_ms * 1000;
		if (pkt->stream_index == vi)
		{
			int			sr = avcodec_send_packet(dec, pkt);

			if (sr == AVERROR(EAGAIN))
			{
				drain(&sp, dec, frame);
				sr = avcodec_send_packet(dec, pkt);
			}
			if (sr < 0 && sr != AVERROR(EAGAIN) && sr != AVERROR_EOF)
			{
				sp.packet_errors++;
				sp.log.pending++;
			}
			drain(&sp, dec, frame);
			if (s->nframes > 0 && rep->first_frame_ms < 0)
				rep->first_frame_ms = ms_since(io.start);
		}
		av_packet_unref(pkt);
		if (interrupt_cb(&io))
			break;
	}
	if (s->nframes > 0 && rep->first_frame_ms < 0)
		rep->first_frame_ms = ms_since(io.start);
	/* a short sample (a still image) still gets its detail frame */
	if (s->nframes > 0 && s->ndetail == 0 && sp.snap->width > 0)
		keep_detail(&sp, sp.snap);

	if (!s->stream_detail[0])
	{
		double		span;

		if (s->nframes > 1 && s->t[s->nframes - 1] > 0)
			rep->fps = (s->nframes - 1) / s->t[s->nframes - 1];
		span = rep->fps > 0 ? s->nframes / rep->fps : 0;
		if (s->nframes == 0)
			snprintf(s->stream_detail, sizeof(s->stream_detail), "no frames: %s",
					 io.reason ? stop_text(io.reason) : r < 0 && r != AVERROR_EOF ? "read error" : "nothing decodable");
		else if (io.reason && !sp.done)
			snprintf(s->stream_detail, sizeof(s->stream_detail), "%s after %d frames (%dx%d %s)",
					 stop_text(io.reason), s->nframes, s->native_w, s->native_h, rep->codec);
		else
			snprintf(s->stream_detail, sizeof(s->stream_detail), "%dx%d %s %.1f fps, %d frames over %.2f s%s",
					 s->native_w, s->native_h, rep->codec, rep->fps, s->nframes, span,
					 sp.corrupt ? ", decoder reported corrupt frames" : "");
	}

analyse:
	s->decode_errors = sp.log.errors + sp.packet_errors;
	s->concealed = sp.log.concealed;
	s->damaged_frames = sp.damaged;
	s->corrupt_frames = sp.corrupt;
	if (dec)
		dec->opaque = NULL;
	s->stream_metric = s->nframes;
	s->stream_ok = s->nframes >= (int) o->th.v[VQD_T_STREAM_MIN_FRAMES] && s->nframes > 0;
	rep->frames = s->nframes;
	rep->width = s->native_w;
	rep->height = s->native_h;
	rep->interrupted = io.reason == STOP_USER;
	if (s->nframes > 0 && o->baseline && o->baseline_len > 0)
	{
		char		why[VQD_DETAIL_LEN] = "";

		s->baseline = decode_baseline(o->baseline, o->baseline_len, s->gw, s->gh, why, sizeof(why));
		if (!s->baseline)
			snprintf(rep->r[VQD_SCENE_CHANGE].detail, VQD_DETAIL_LEN, "%s", why);
	}
	vqd_analyse(s, &o->th, rep);
	if (o->baseline && o->baseline_len > 0)
		rep->nresults = VQD_NCHECKS;
	if (o->snapshot && sp.snap && sp.snap->width > 0)
		encode_jpeg(sp.snap, o->snapshot_max_width, o->snapshot_max_bytes > 0 ? o->snapshot_max_bytes : VQD_SNAPSHOT_MAX,
					&rep->snapshot, &rep->snapshot_len);
	rep->elapsed_ms = ms_since(io.start);

	av_frame_free(&sp.snap);
	av_frame_free(&frame);
	av_packet_free(&pkt);
	avcodec_free_context(&dec);
	avformat_close_input(&fc);
	sws_freeContext(sp.sws);
	sws_freeContext(sp.grey_sws);
	free(sp.pool);
	for (int k = 0; k < VQD_DETAIL_FRAMES; k++)
		free(s->detail[k]);
	free(s->baseline);
	free(s);
	return 0;

fail_alloc:
	av_frame_free(&sp.snap);
	av_frame_free(&frame);
	av_packet_free(&pkt);
	avcodec_free_context(&dec);
	avformat_close_input(&fc);
	av_dict_free(&opts);
	sws_freeContext(sp.sws);
	free(sp.pool);
	for (int k = 0; k < VQD_DETAIL_FRAMES; k++)
		free(s->detail[k]);
	free(s);
	return -1;
}
