#!/usr/bin/python3
"""An RTSP camera farm for the inspection tests (GStreamer's RTSP server).

    /usr/bin/python3 test/peers/rtsp_server.py --dir CLIPDIR --port 8554 [--loops 5]
        [--clips a.mp4,b.mp4]

Mounts, on 127.0.0.1 only:
  /<name>    every *.mp4 (H.264 or H.265) of CLIPDIR, <name> = file name
             without .mp4; the clip is first remuxed (no re-encode) --loops
             times back to back so a sample never runs off its end; each
             client gets its own pipeline from the start
  /stall     a camera that answers DESCRIBE, SETUP and PLAY, then sends no
             media (its RTP packets and end of stream are dropped)
  /refuse    not mounted: the server answers 404 Not Found, like a camera
             that refuses the stream
Prints "ready" on stdout when listening, "stall: prepared" when a client
has described /stall; exits on SIGTERM or SIGINT.
Needs gir1.2-gst-rtsp-server-1.0, python3-gst-1.0 and
gstreamer1.0-plugins-good/-bad (qtdemux, h264parse/h265parse, payloaders),
x264enc (gstreamer1.0-plugins-ugly) for /stall; ffmpeg for the remux.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def codec_of(path):
    """h264 or h265, from ffprobe (falls back on the file name)."""
    if shutil.which("ffprobe"):
        try:
            out = subprocess.run(
                ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                 "stream=codec_name", "-of", "default=nw=1:nk=1", path],
                capture_output=True, text=True, timeout=20).stdout.strip()
            if out in ("h264", "hevc"):
                return "h265" if out == "hevc" else "h264"
        except (OSError, subprocess.SubprocessError):
            pass
    return "h265" if "265" in os.path.basename(path) or "hevc" in path else "h264"


def looped(path, loops, tmpdir):
    """The clip repeated `loops` times without re-encoding (or the clip itself)."""
    if loops <= 1 or not shutil.which("ffmpeg"):
        return path
    out = os.path.join(tmpdir, os.path.basename(path))
    r = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
                        "-stream_loop", str(loops - 1), "-i", path, "-c", "copy", "-an", out],
                       timeout=120)
    return out if r.returncode == 0 and os.path.getsize(out) > 0 else path


def quote(path):
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def drop_after_prepare(factory, media):
    """media-configure handler for /stall: once the media is prepared (the
    server has held the first packet to describe the stream), every packet,
    that one too, is dropped."""
    def probe(pad, info):
        if info.type & Gst.PadProbeType.EVENT_DOWNSTREAM and info.get_event().type != Gst.EventType.EOS:
            return Gst.PadProbeReturn.OK
        return Gst.PadProbeReturn.DROP      # buffers, and the end of stream (no RTCP BYE)

    def on_prepared(m):
        pay = m.get_element().get_by_name("pay0")
        pay.get_static_pad("src").add_probe(
            Gst.PadProbeType.BUFFER | Gst.PadProbeType.BUFFER_LIST | Gst.PadProbeType.EVENT_DOWNSTREAM, probe)
        # a marker for tests: a client is in its network phase on /stall
        print("stall: prepared", flush=True)
    media.connect("prepared", on_prepared)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True, help="directory of .mp4 clips")
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--loops", type=int, default=5, help="times each clip is repeated")
    ap.add_argument("--clips", default="", help="comma list of file names to serve (default: all)")
    args = ap.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    tmpdir = tempfile.mkdtemp(prefix="vms_rtsp_")

    wanted = {c for c in args.clips.split(",") if c}
    names = sorted(f for f in os.listdir(args.dir) if f.endswith(".mp4") and (not wanted or f in wanted))
    launch = "( filesrc location=%s ! qtdemux ! %sparse ! rtp%spay name=pay0 pt=96 config-interval=-1 )"
    for f in names:
        src = looped(os.path.join(args.dir, f), args.loops, tmpdir)
        c = codec_of(src)
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch % (quote(src), c, c))
        factory.set_shared(False)
        mounts.add_factory("/" + f[:-4], factory)

    # the first clip (or a test pattern), with every packet and the end of stream dropped
    stall = GstRtspServer.RTSPMediaFactory()
    if names:
        src = os.path.join(args.dir, names[0])
        c = codec_of(src)
        stall.set_launch(launch % (quote(src), c, c))
    else:
        stall.set_launch("( videotestsrc num-buffers=50 ! video/x-raw,width=320,height=240,framerate=25/1 "
                         "! x264enc speed-preset=ultrafast ! rtph264pay name=pay0 pt=96 config-interval=1 )")
    stall.set_shared(False)
    stall.connect("media-configure", drop_after_prepare)
    mounts.add_factory("/stall", stall)
    # /refuse is deliberately not mounted: 404 Not Found

    if server.attach(None) == 0:
        print("rtsp_server: cannot listen on 127.0.0.1:%d" % args.port, file=sys.stderr)
        shutil.rmtree(tmpdir, ignore_errors=True)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print("ready", flush=True)
    try:
        loop.run()
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
