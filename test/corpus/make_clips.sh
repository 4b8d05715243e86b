#!/usr/bin/env bash
# make_clips.sh OUTDIR — a small labelled video corpus for the quality checks.
#
# Six synthetic scenes (lavfi sources; every one has something moving and a
# camera OSD clock unless it is a monitor feed), each rendered once to a
# lossless intermediate, then clips of 2 s at 640x360, 25 fps, H.264
# (libx264 veryfast, crf 21, like a camera at a decent bit rate):
#   clean     day, night (IR monochrome or low-light colour, more sensor
#             noise), dusk, low bit rate, slow pan
#   defects   each at three strengths, on different scenes and day/night
#   scene     baseline JPEGs and clips of the same or a moved/replaced view
# plus two 1080p 2 s clips (H.264 and H.265) for throughput.
#
# OUTDIR/manifest.tsv, tab-separated, header line first:
#   file content condition strength expected_abnormal_checks tolerated_checks baseline
# expected_abnormal_checks: checks that must be abnormal (comma list, "-" none);
# every other check must be normal, except tolerated_checks, which are left
# out of scoring for that clip (a defect that genuinely implies another one,
# e.g. heavy compression mosaic also blurs).  baseline: a JPEG to pass as the
# scene-change baseline, or "-".
#
# Idempotent: clips that exist are kept (delete OUTDIR to rebuild).  Runs two
# encodes at a time.
set -euo pipefail
OUT=${1:?usage: make_clips.sh OUTDIR}
JOBS=${VMS_CORPUS_JOBS:-2}
mkdir -p "$OUT/src"
# the corpus's definition changed (issue 14: single-threaded bit-exact encodes,
# freeze frozen at the source, mosaic = corruption; version 3: the street
# scene's cellular automata are seeded, they were filled at random, so every
# build drew other street clips): clips cached by an older definition are
# rebuilt (the real corpus, OUTDIR/real and OUTDIR/debs, is kept)
CORPUS_VERSION=3
if [ "$(cat "$OUT/.version" 2>/dev/null)" != "$CORPUS_VERSION" ]; then
  rm -f "$OUT"/*.mp4 "$OUT"/*.jpg "$OUT"/*.tmp* "$OUT/manifest.tsv" "$OUT"/src/*.mkv
  echo "$CORPUS_VERSION" > "$OUT/.version"
fi
FONT=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
[ -f "$FONT" ] || FONT=$(fc-match -f '%{file}' sans 2>/dev/null || true)
FF="ffmpeg -hide_banner -loglevel error -nostdin -y -threads 1"   # one thread everywhere: the same bytes on every build
ENC="-c:v libx264 -preset veryfast -crf 21 -g 50 -threads 1 -pix_fmt yuv420p -an -fflags +bitexact -flags:v +bitexact -map_metadata -1"

# ---------- scenes (day, 3 s, lossless) ----------
declare -A SCENE
SCENE[chart]="testsrc2=s=640x360:r=25"
SCENE[fractal]="mandelbrot=s=640x360:r=25:maxiter=160:start_x=-0.743643887037151:start_y=0.13182590420533:start_scale=0.012:end_scale=0.010:end_pts=3:inner=mincol,format=yuv420p"
SCENE[monitor]="smptehdbars=s=640x360:r=25[b];testsrc2=s=176x100:r=25[w];[b][w]overlay=x='mod(t*140,464)':y=230"
SCENE[foliage]="life=s=214x120:r=4:ratio=0.45:mold=25:seed=7:death_color=0x1d3a1d:life_color=0xc8d890:mold_color=0x6a7a3a,fps=25,scale=640:360:flags=bicubic,gblur=sigma=0.7[l];
color=c=0x8c8a84:s=640x70:r=25,noise=alls=25:allf=u,gblur=sigma=1[path];color=c=0xd8d8d0:s=90x24:r=25[bench];color=c=0x9a6a40:s=40x80:r=25[p];
[l][path]overlay=0:250[l2];[l2][bench]overlay=480:225[l3];[l3][p]overlay=x='40+t*90':y=200"
SCENE[street]="gradients=s=640x140:r=25:c0=0x4a7fc0:c1=0xc8dcef:x0=0:y0=0:x1=0:y1=140:speed=0.00001:seed=1[sky];
color=c=0x5b5f63:s=640x220:r=25,noise=alls=30:allf=u,gblur=sigma=1.2[g];
cellauto=s=80x60:rule=150:r=25:scroll=0:start_full=1:seed=11,scale=160:180:flags=neighbor,format=rgb24,colorchannelmixer=rr=0.5:gg=0.45:bb=0.4,eq=brightness=0.25[b1];
cellauto=s=50x45:rule=90:r=25:scroll=0:start_full=1:seed=12,scale=150:180:flags=neighbor,format=rgb24,colorchannelmixer=rr=0.6:gg=0.55:bb=0.5,eq=brightness=0.15[b2];
color=c=0xb03030:s=70x30:r=25[c1];color=c=0xe0e0d0:s=60x28:r=25[c2];
[sky]pad=640:360[s0];[s0][g]overlay=0:140[a];[a][b1]overlay=30:40[a2];[a2][b2]overlay=430:50[a3];
[a3]drawbox=x=0:y=250:w=640:h=4:c=0xd0d0d0:t=fill,drawbox=x=0:y=300:w=640:h=3:c=0xd0c060:t=fill[a4];
[a4][c1]overlay=x='mod(t*150,740)-80':y=262[a5];[a5][c2]overlay=x='560-mod(t*110,700)':y=310,gblur=sigma=0.5"
SCENE[hills]="mandelbrot=s=640x360:r=25:maxiter=96:start_x=-0.7453:start_y=0.1127:start_scale=0.004:end_scale=0.004:end_pts=100:inner=mincol,gblur=sigma=0.8,format=yuv420p[m];
color=c=0xf0f0f0:s=90x36:r=25[boat];color=c=0x303848:s=60x20:r=25[b2];[m][boat]overlay=x='500-t*80':y='270+6*sin(t*3)'[m2];[m2][b2]overlay=x='60+t*70':y=28"
SCENES="chart fractal monitor foliage street hills"

for s in $SCENES; do
  f="$OUT/src/$s.mkv"
  [ -s "$f" ] && continue
  $FF -filter_complex "${SCENE[$s]},format=yuv420p" -t 3 -c:v libx264 -qp 0 -preset ultrafast -threads 1 -fflags +bitexact -flags:v +bitexact "$f.tmp.mkv"
  mv "$f.tmp.mkv" "$f"
done

# ---------- camera stages ----------
osd() {  # the camera's clock, running
  echo "drawtext=fontfile=$FONT:text='%{pts\\:gmtime\\:1700000000}':x=10:y=10:fontsize=15:fontcolor=white:box=1:boxcolor=black@0.35"
}
cam()   { local n=$1; if [ "$2" = monitor ]; then echo "noise=alls=$n:allf=t"; else echo "noise=alls=$n:allf=t,$(osd)"; fi; }
day()   { echo "null"; }
night_mono()   { echo "hue=s=0,eq=brightness=-0.16:contrast=0.85:gamma=0.9"; }
night_colour() { echo "eq=brightness=-0.18:contrast=0.8:saturation=0.55"; }
dusk()  { echo "eq=brightness=-0.08:gamma=0.9:saturation=0.8,colorbalance=bm=0.06"; }

MAN="$OUT/manifest.tsv"
JOBF="$OUT/.jobs"
printf 'file\tcontent\tcondition\tstrength\texpected_abnormal_checks\ttolerated_checks\tbaseline\n' > "$MAN.tmp"
: > "$JOBF"

# clip FILE CONTENT CONDITION STRENGTH EXPECTED TOLERATED BASELINE FILTERGRAPH [SS] [MODE]
# MODE mpeg2:Q re-encodes through MPEG-2 at quantiser Q first (block artefacts)
clip() {
  local file=$1 content=$2 cond=$3 strength=$4 exp=$5 tol=$6 base=$7 vf=$8 ss=${9:-0} mode=${10:-}
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$file" "$content" "$cond" "$strength" "$exp" "$tol" "$base" >> "$MAN.tmp"
  [ -s "$OUT/$file" ] && return 0
  local src="$OUT/src/$content.mkv" cmd
  case "$mode" in
    mpeg2:*)
      cmd="$FF -ss $ss -t 2 -i '$src' -filter_complex \"$vf\" -c:v mpeg2video -q:v ${mode#mpeg2:} -qmin ${mode#mpeg2:} -g 50 -bf 0 -f mpeg2video - | $FF -f mpegvideo -i - $ENC -crf 18 '$OUT/$file.tmp.mp4'" ;;
    x264nodeblock:*)
      cmd="$FF -ss $ss -t 2 -i '$src' -filter_complex \"$vf\" -c:v libx264 -preset veryfast -qp ${mode#x264nodeblock:} -x264-params no-deblock=1 -g 50 -threads 1 -pix_fmt yuv420p -an -fflags +bitexact -flags:v +bitexact -map_metadata -1 '$OUT/$file.tmp.mp4'" ;;
    corrupt:*)
      cmd="$FF -ss $ss -t 2 -i '$src' -filter_complex \"$vf\" $ENC -f mpegts - | $FF -i - -c copy -bsf:v noise=amount=${mode#corrupt:} -fflags +bitexact -flags:v +bitexact -f mp4 '$OUT/$file.tmp.mp4'" ;;
    crf:*)
      cmd="$FF -ss $ss -t 2 -i '$src' -filter_complex \"$vf\" $ENC -crf ${mode#crf:} '$OUT/$file.tmp.mp4'" ;;
    *)
      cmd="$FF -ss $ss -t 2 -i '$src' -filter_complex \"$vf\" $ENC '$OUT/$file.tmp.mp4'" ;;
  esac
  printf '%s && mv %q %q\n' "$cmd" "$OUT/$file.tmp.mp4" "$OUT/$file" >> "$JOBF"
}

# ---------- clean ----------
for s in $SCENES; do
  clip "clean_${s}_day.mp4"   $s clean day   - - - "$(day),$(cam 3 $s)"
  clip "clean_${s}_night.mp4" $s clean night - - - "$( [ $s = chart ] || [ $s = street ] || [ $s = hills ] && night_mono || night_colour),$(cam 7 $s)"
  clip "clean_${s}_dusk.mp4"  $s clean dusk  - - - "$(dusk),$(cam 4 $s)"
done
for s in chart street foliage; do   # a tighter bit rate, and a slow pan
  clip "clean_${s}_lowrate.mp4" $s clean lowrate - - - "$(cam 3 $s)" 0 crf:30
  clip "clean_${s}_pan.mp4"     $s clean pan     - - - "crop=560:315:x='t*30':y='t*8',scale=640:360,$(cam 3 $s)"
done

# ---------- defects ----------
# blur: gaussian sigma (pixels at 640x360)
i=0
for s in chart street foliage; do for sg in 2 4 8; do
  v=$([ $((i % 3)) = 2 ] && night_mono || day); i=$((i+1))
  clip "blur_${s}_s${sg}.mp4" $s blur $sg blur - - "gblur=sigma=$sg,$v,$(cam 3 $s)"
done; done
# noise: temporal sensor noise strength (ffmpeg noise alls)
for s in fractal hills monitor; do for n in 20 40 60; do
  clip "noise_${s}_n$n.mp4" $s noise $n noise - - "noise=alls=$n:allf=t,$( [ $s = monitor ] && echo null || osd)"
done; done
# stripes: interference bars, amplitude in luma levels; period and direction vary
k=0
for s in chart street hills; do for a in 5 10 20; do
  case $((k % 3)) in
    0) e="lum(X,Y)+$a*sin(2*PI*Y/9+T*4)" ;;      # horizontal, rolling
    1) e="lum(X,Y)+$a*sin(2*PI*X/16)" ;;         # vertical
    2) e="lum(X,Y)+$a*sin(2*PI*Y/34+T*2)" ;;     # wide horizontal bars
  esac
  k=$((k+1))
  clip "stripes_${s}_a$a.mp4" $s stripes $a stripes - - "geq=lum='clip($e,0,255)':cb='cb(X,Y)':cr='cr(X,Y)',$(cam 3 $s)"
done; done
# colour cast: channel gains (red, blue, green, yellow, magenta)
k=0
for s in street foliage hills monitor; do for g in 1 2 3; do
  d=$(echo "0.12*$g" | bc -l)
  case $((k % 5)) in
    0) m="rr=1:gg=1-$d:bb=1-$d*1.5" ;;   # red
    1) m="rr=1-$d*1.5:gg=1-$d*0.5:bb=1" ;; # blue
    2) m="rr=1-$d:gg=1:bb=1-$d" ;;         # green
    3) m="rr=1:gg=1:bb=1-$d*2" ;;          # yellow
    4) m="rr=1:gg=1-$d*1.5:bb=1" ;;        # magenta
  esac
  k=$((k+1))
  clip "cast_${s}_g$g.mp4" $s color_cast $g color_cast - - "format=rgb24,colorchannelmixer=$m,format=yuv420p,$(cam 3 $s)"
done; done
# too dark: luma gain (exposure); too bright: washed out / over-exposed
for s in chart street foliage; do for f in 0.30 0.22 0.15; do
  clip "dark_${s}_f$f.mp4" $s dark $f brightness - - "lutyuv=y='16+(val-16)*$f',$(cam 3 $s)"
done; done
for s in chart hills monitor; do for f in 0.45 0.30 0.18; do
  clip "bright_${s}_f$f.mp4" $s bright $f brightness - - "lutyuv=y='235-(235-val)*$f',$(cam 3 $s)"
done; done
# black screen: plain, with the OSD, with night sensor noise
clip "black_plain.mp4"  chart black plain black_screen - - "lutyuv=y=16:u=128:v=128"
clip "black_osd.mp4"    street black osd black_screen - - "lutyuv=y=16:u=128:v=128,$(osd)"
clip "black_noise.mp4"  hills black noise black_screen - - "lutyuv=y=18:u=128:v=128,noise=alls=8:allf=t,$(osd)"
# signal loss: solid blue/grey/black-blue screens with and without text
clip "nosignal_blue.mp4"     chart signal_loss blue signal_loss - - "lutrgb=r=0:g=0:b=192"
clip "nosignal_blue_text.mp4" street signal_loss blue_text signal_loss - - "lutrgb=r=0:g=0:b=200,drawtext=fontfile=$FONT:text='NO SIGNAL':x=(w-tw)/2:y=(h-th)/2:fontsize=40:fontcolor=white,$(osd)"
clip "nosignal_grey_text.mp4" hills signal_loss grey_text signal_loss - - "lutrgb=r=110:g=110:b=110,drawtext=fontfile=$FONT:text='VIDEO LOSS':x=(w-tw)/2:y=(h-th)/2:fontsize=36:fontcolor=white,noise=alls=3:allf=t"
clip "nosignal_blue_noise.mp4" foliage signal_loss blue_noise signal_loss - - "lutrgb=r=16:g=32:b=160,noise=alls=5:allf=t,$(osd)"
# freeze: the source stops on its first picture (sensor noise 0/3/6 frozen with
# it) and is coded again and again; the OSD clock keeps running
for s in chart street foliage; do for n in 0 3 6; do
  head=$( [ $n = 0 ] && echo "null" || echo "noise=alls=$n:allf=t")
  clip "freeze_${s}_n$n.mp4" $s freeze $n freeze - - "$head,trim=end_frame=1,loop=loop=49:size=1,setpts=N/25/TB,$(osd)"
done; done
# jitter: random (or 5 Hz) displacement of A pixels each frame
k=0
for s in chart street hills; do for a in 3 6 12; do
  if [ $((k % 2)) = 0 ]; then xe="20+$a*(2*random(0)-1)"; ye="11+$a*(2*random(1)-1)";
  else xe="20+$a*sin(2*PI*5*t)"; ye="11+$a*0.6*cos(2*PI*5*t)"; fi
  k=$((k+1))
  clip "jitter_${s}_a$a.mp4" $s jitter $a jitter - - "crop=600:338:x='$xe':y='$ye',scale=640:360:flags=lanczos,$(cam 3 $s)"
done; done
# compression blocking: MPEG-2 at high quantisers (8x8 block edges), H.264
# without deblocking -- an encoder starved of bits, not mosaic (花屏): no alarm
# but blur, which heavy quantisation implies
for s in street hills fractal foliage; do for q in 16 24 31; do
  clip "blocking_${s}_q$q.mp4" $s blocking q$q - blur - "$(cam 3 $s)" 0 mpeg2:$q
done; done
for s in fractal street; do
  clip "blocking_${s}_h264qp46.mp4" $s blocking h264qp46 - blur - "$(cam 3 $s)" 0 x264nodeblock:46
done
# mosaic: the coded stream damaged (bytes overwritten, FFmpeg's noise
# bitstream filter, as a lossy link or failing recorder would): the decoder
# reports errors and conceals; three amounts of damage
for s in street hills fractal foliage; do for a in 60000 12000 2500; do
  clip "mosaic_${s}_c$a.mp4" $s mosaic c$a mosaic blur - "$(cam 3 $s)" 0 corrupt:$a
done; done
# occlusion: something near the lens covering 40-70% (dark cloth, leaf, card)
k=0
for s in chart street foliage hills; do for pct in 40 55 70; do
  case $((k % 4)) in
    0) box="drawbox=x=0:y=0:w=iw*$pct/100:h=ih:c=0x202020:t=fill" ;;
    1) box="drawbox=x=0:y=ih*(1-$pct/100):w=iw:h=ih*$pct/100:c=0x3a2a1a:t=fill" ;;
    2) box="drawbox=x=iw*(1-sqrt($pct/100)):y=ih*(1-sqrt($pct/100)):w=iw*sqrt($pct/100):h=ih*sqrt($pct/100):c=0x2d4a22:t=fill" ;;
    3) box="drawbox=x=0:y=0:w=iw:h=ih*$pct/100:c=0x807868:t=fill" ;;
  esac
  k=$((k+1))
  clip "occlusion_${s}_p$pct.mp4" $s occlusion $pct occlusion - - "$box,$(cam 3 $s)"
done; done

# ---------- scene change ----------
# baselines: a picture of each day scene at 0.5 s, as the inspector stores it
for s in chart street foliage hills; do
  b="$OUT/baseline_$s.jpg"
  [ -s "$b" ] || $FF -ss 0.5 -i "$OUT/src/$s.mkv" -frames:v 1 -q:v 4 "$b"
done
# the same view a second later, at night, a little darker: not a change
clip "scene_same_chart.mp4"   chart scene_same later - - baseline_chart.jpg "$(cam 3 chart)" 1
clip "scene_same_street.mp4"  street scene_same night - - baseline_street.jpg "$(night_mono),$(cam 7 street)" 1
clip "scene_same_foliage.mp4" foliage scene_same later - - baseline_foliage.jpg "$(cam 3 foliage)" 1
clip "scene_same_hills.mp4"   hills scene_same dusk - - baseline_hills.jpg "$(dusk),$(cam 4 hills)" 1
# camera turned or zoomed (a 2x digital zoom is soft: blur not scored), or another view on the channel
clip "scene_moved_chart.mp4"   chart scene_change turned scene_change - baseline_chart.jpg "crop=400:225:x=240:y=135,scale=640:360,$(cam 3 chart)"
clip "scene_moved_street.mp4"  street scene_change turned scene_change - baseline_street.jpg "crop=420:236:x=200:y=40,scale=640:360,$(cam 3 street)"
clip "scene_moved_hills.mp4"   hills scene_change zoomed scene_change blur baseline_hills.jpg "crop=320:180:x=160:y=90,scale=640:360,$(cam 3 hills)"
clip "scene_other_chart.mp4"   foliage scene_change replaced scene_change - baseline_chart.jpg "$(cam 3 foliage)"
clip "scene_other_street.mp4"  hills scene_change replaced scene_change - baseline_street.jpg "$(cam 3 hills)"
clip "scene_other_foliage.mp4" street scene_change replaced scene_change - baseline_foliage.jpg "$(cam 3 street)"

# ---------- throughput: 1080p, 2 s ----------
T1080="testsrc2=s=1920x1080:r=25,noise=alls=3:allf=t"
if [ ! -s "$OUT/throughput_1080p_h264.mp4" ]; then
  echo "$FF -f lavfi -i '$T1080' -t 2 -c:v libx264 -preset veryfast -crf 23 -g 50 -threads 1 -pix_fmt yuv420p -fflags +bitexact -flags:v +bitexact '$OUT/t264.tmp.mp4' && mv '$OUT/t264.tmp.mp4' '$OUT/throughput_1080p_h264.mp4'" >> "$JOBF"
fi
encoders=$(ffmpeg -hide_banner -encoders 2>/dev/null || true)
if [[ $encoders == *libx265* ]]; then
  if [ ! -s "$OUT/throughput_1080p_h265.mp4" ]; then
    echo "$FF -f lavfi -i '$T1080' -t 2 -c:v libx265 -preset ultrafast -crf 26 -x265-params log-level=error:keyint=50:pools=none:frame-threads=1:wpp=0 -pix_fmt yuv420p -tag:v hvc1 '$OUT/t265.tmp.mp4' && mv '$OUT/t265.tmp.mp4' '$OUT/throughput_1080p_h265.mp4'" >> "$JOBF"
  fi
else
  echo "make_clips: libx265 not available, no H.265 throughput clip" >&2
fi

# ---------- run ----------
if [ -s "$JOBF" ]; then
  tr '\n' '\0' < "$JOBF" | xargs -0 -P "$JOBS" -n 1 bash -c 'eval "$0" || { echo "make_clips: failed: $0" >&2; exit 255; }'
fi
rm -f "$JOBF"
mv "$MAN.tmp" "$MAN"
echo "make_clips: $(($(wc -l < "$MAN") - 1)) clips in $OUT" >&2
