#!/usr/bin/env bash
# make_real_clips.sh OUTDIR — a labelled corpus from REAL footage and photographs
# shipped in Debian packages (downloaded with `apt-get download`, unpacked with
# `dpkg-deb -x`, never installed):
#   opencv-doc      examples/data: vtest.avi (a fixed camera over a campus plaza,
#                   768x576, people walking), Megamind.avi (720x528), tree.avi
#                   (320x240, Cinepak), and photographs (building, street, room,
#                   aerial, fruit ...)
#   python3-skimage skimage/data: photographs (coffee, astronaut, motorcycle,
#                   rocket, camera ...)
# Photographs become camera-like clips: a slow pan (or none: a static scene
# whose only change is sensor noise), temporal sensor noise, an OSD clock.
#
#   clean    >= 30 clips: day, dusk, night/IR monochrome; crowds and traffic;
#            static scenes; H.264, H.265 and MPEG-2; CIF, 4CIF, 720p, 1080p;
#            bit rates from generous to a 512 kbit/s substream
#   defects  every check at three strengths (1 mild, 2 medium, 3 strong), on
#            several real scenes; mosaic is real bitstream corruption (bytes of
#            the coded stream overwritten, FFmpeg's `noise` bitstream filter)
#   scene    baseline JPEGs and clips of the same or a moved/replaced view
#   bad      bad input: truncated, zero-length, no video track, 10-bit, 4:2:2,
#            odd size, resolution change mid-sample (condition "bad": expected
#            `stream` abnormal with a reason, or a normal stream; never a crash)
#
# OUTDIR/manifest.tsv has the columns of make_clips.sh:
#   file content condition strength expected_abnormal_checks tolerated_checks baseline
# with strength 1/2/3 for defects ("-" for clean).
#
# Reproducible: fixed seeds, single-threaded encoders, bit-exact muxing and no
# metadata, so two builds give the same bytes (VMS_CORPUS_SEED, default 1, and
# VMS_CORPUS_VARIANT, default 0, pick another draw: other noise seeds, pan
# offsets, jitter phases and encoder settings; the bench builds three).
# Idempotent: clips that exist are kept.  Debian packages are cached in
# VMS_DEB_CACHE (default OUTDIR/../debs).  Runs two encodes at a time.
set -euo pipefail
OUT=${1:?usage: make_real_clips.sh OUTDIR}
SEED=${VMS_CORPUS_SEED:-1}
VAR=${VMS_CORPUS_VARIANT:-0}
JOBS=${VMS_CORPUS_JOBS:-2}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DEBS=${VMS_DEB_CACHE:-$OUT/../debs}
mkdir -p "$DEBS"
DEBS=$(cd "$DEBS" && pwd)

# ---------- sources: Debian packages ----------
SRC=$DEBS/x
if [ ! -s "$SRC/.done" ]; then
  for p in opencv-doc python3-skimage; do
    ls "$DEBS"/${p}_*.deb > /dev/null 2>&1 ||
      (cd "$DEBS" && apt-get download "$p" > /dev/null 2>&1) ||
      (apt-get update > /dev/null && cd "$DEBS" && apt-get download "$p" > /dev/null)
  done
  rm -rf "$SRC"; mkdir -p "$SRC"
  for d in "$DEBS"/*.deb; do dpkg-deb -x "$d" "$SRC"; done
  echo ok > "$SRC/.done"
fi
CV=$SRC/usr/share/doc/opencv-doc/examples/data
SK=$SRC/usr/lib/python3/dist-packages/skimage/data
for f in "$CV/vtest.avi" "$CV/Megamind.avi" "$CV/tree.avi" "$CV/building.jpg" "$SK/coffee.png"; do
  [ -s "$f" ] || { echo "make_real_clips: $f missing from the Debian packages" >&2; exit 1; }
done

FONT=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
[ -f "$FONT" ] || FONT=$(fc-match -f '%{file}' sans 2>/dev/null || true)
FF="ffmpeg -hide_banner -loglevel error -nostdin -y -threads 1"
BX="-fflags +bitexact -flags:v +bitexact -map_metadata -1 -an -sn"
D=2.4   # seconds per clip (the diagnosis samples 2 s)

# encoder settings, by variant (robust accuracy: the bench builds variants 0, 1, 2)
case $VAR in
  0) P264=veryfast; CRF=23; P265=ultrafast; GOP=50 ;;
  1) P264=faster;   CRF=26; P265=superfast; GOP=25 ;;
  *) P264=medium;   CRF=20; P265=ultrafast; GOP=75 ;;
esac
# enc MODE -> codec options and extension
#   h264[:crf] h264br:KBIT h265[:crf] mpeg2:KBIT
enc() {
  local m=$1 a=${1#*:}
  case $m in
    h264br:*) echo "-c:v libx264 -preset $P264 -b:v ${a}k -maxrate ${a}k -bufsize $((a*2))k -g $GOP -x264-params threads=1:lookahead-threads=1 -pix_fmt yuv420p|mp4" ;;
    h264:*)   echo "-c:v libx264 -preset $P264 -crf $a -g $GOP -x264-params threads=1:lookahead-threads=1 -pix_fmt yuv420p|mp4" ;;
    h264)     echo "-c:v libx264 -preset $P264 -crf $CRF -g $GOP -x264-params threads=1:lookahead-threads=1 -pix_fmt yuv420p|mp4" ;;
    h265:*)   echo "-c:v libx265 -preset $P265 -crf $a -x265-params log-level=error:keyint=$GOP:pools=none:frame-threads=1:wpp=0 -tag:v hvc1 -pix_fmt yuv420p|mp4" ;;
    h265)     echo "-c:v libx265 -preset $P265 -crf $((CRF+3)) -x265-params log-level=error:keyint=$GOP:pools=none:frame-threads=1:wpp=0 -tag:v hvc1 -pix_fmt yuv420p|mp4" ;;
    mpeg2:*)  echo "-c:v mpeg2video -b:v ${a}k -maxrate ${a}k -bufsize $((a*2))k -g 25 -bf 2 -pix_fmt yuv420p|ts" ;;
  esac
}

# ---------- scenes: input options and a filter giving a W x H picture ----------
# scene NAME W H -> "INPUT_OPTIONS|FILTER"
# seeded offsets: each variant/seed looks at another moment / part of the view
off() { echo $(( (SEED * 7 + VAR * 13 + $1) % $2 )); }
photo() {  # photo FILE W H PAN(0/1): scaled to cover W x H (+12 % when panning), slow pan
  local f=$1 w=$2 h=$3 pan=$4 ph; ph=$(off 3 10)
  if [ "$pan" = 1 ]; then
    echo "-loop 1 -framerate 25 -t $D -i $f|scale=w='max($w*1.12,$h*1.12*iw/ih)':h=-2:flags=bicubic,crop=$w:$h:x='(iw-ow)*(0.$ph/2+t/$D/3)':y='(ih-oh)*(0.3+0.1*t/$D)',setsar=1"
  else
    echo "-loop 1 -framerate 25 -t $D -i $f|scale=w='max($w,$h*iw/ih)':h=-2:flags=bicubic,crop=$w:$h,setsar=1"
  fi
}
scene() {
  local n=$1 w=$2 h=$3
  case $n in
    plaza*)   # the fixed campus camera: people walking; plazaN = another moment
      local k=${n#plaza}; k=${k:-0}
      echo "-ss $(( (k * 11 + $(off 0 6)) % 70 )) -t $D -i $CV/vtest.avi|fps=25,scale=$w:$h:flags=bicubic,setsar=1" ;;
    megamind) echo "-ss $(off 1 5) -t $D -i $CV/Megamind.avi|fps=25,scale=$w:$h:flags=bicubic,setsar=1" ;;
    tree)     echo "-ss $(off 2 20) -t $D -i $CV/tree.avi|fps=25,scale=$w:$h:flags=bicubic,setsar=1" ;;
    building) photo "$CV/building.jpg" "$w" "$h" 1 ;;
    street)   photo "$CV/leuvenA.jpg" "$w" "$h" 1 ;;
    street_static) photo "$CV/leuvenA.jpg" "$w" "$h" 0 ;;
    room)     photo "$CV/home.jpg" "$w" "$h" 1 ;;
    room_static) photo "$CV/home.jpg" "$w" "$h" 0 ;;
    aerial)   photo "$CV/aero3.jpg" "$w" "$h" 1 ;;
    fruit)    photo "$CV/fruits.jpg" "$w" "$h" 1 ;;
    baboon)   photo "$CV/baboon.jpg" "$w" "$h" 0 ;;
    starry)   photo "$CV/starry_night.jpg" "$w" "$h" 1 ;;
    coffee)   photo "$SK/coffee.png" "$w" "$h" 1 ;;
    astronaut) photo "$SK/astronaut.png" "$w" "$h" 0 ;;
    motorcycle) photo "$SK/motorcycle_left.png" "$w" "$h" 1 ;;
    rocket)   photo "$SK/rocket.jpg" "$w" "$h" 1 ;;
    cameraman) photo "$SK/camera.png" "$w" "$h" 0 ;;
    stuff)    photo "$CV/stuff.jpg" "$w" "$h" 1 ;;
    *) echo "make_real_clips: unknown scene $n" >&2; exit 1 ;;
  esac
}

# ---------- camera stages ----------
osd() { echo "drawtext=fontfile=$FONT:text='%{pts\\:gmtime\\:1700000000}':x=10:y=10:fontsize=h/30:fontcolor=white:box=1:boxcolor=black@0.35"; }
sensor() { echo "noise=alls=$1:allf=t:all_seed=$((SEED * 1000 + VAR * 100 + $2))"; }
cam()  { echo "$(sensor "$1" 7),$(osd)"; }
day()   { echo "null"; }
dusk()  { echo "eq=brightness=-0.07:gamma=0.9:saturation=0.8,colorbalance=bm=0.05"; }
night() { echo "hue=s=0,eq=brightness=-0.12:contrast=0.85:gamma=0.9"; }   # IR monochrome

MAN="$OUT/manifest.tsv"
JOBF="$OUT/.jobs"
printf 'file\tcontent\tcondition\tstrength\texpected_abnormal_checks\ttolerated_checks\tbaseline\n' > "$MAN.tmp"
: > "$JOBF"

# clip NAME SCENE WxH CONDITION STRENGTH EXPECTED TOLERATED BASELINE FILTER ENC [BSF]
clip() {
  local name=$1 sc=$2 size=$3 cond=$4 st=$5 exp=$6 tol=$7 base=$8 vf=$9 mode=${10} bsf=${11:-}
  local w=${size%x*} h=${size#*x} e ext in sf file
  e=$(enc "$mode"); ext=${e#*|}; e=${e%|*}
  file=$name.$ext
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$file" "$sc" "$cond" "$st" "$exp" "$tol" "$base" >> "$MAN.tmp"
  [ -s "$OUT/$file" ] && return 0
  in=$(scene "$sc" "$w" "$h"); sf=${in#*|}; in=${in%%|*}
  local fmt=$([ "$ext" = ts ] && echo mpegts || echo mp4)
  if [ -n "$bsf" ]; then   # corrupt the coded stream (as a lossy link or a failing recorder would)
    echo "$FF $in -filter_complex \"$sf,$vf,format=yuv420p\" -t $D $e $BX -f mpegts '$OUT/$name.clean.tmp' && $FF -i '$OUT/$name.clean.tmp' -c copy -bsf:v $bsf $BX -f $fmt '$OUT/$file.tmp' && rm -f '$OUT/$name.clean.tmp' && mv '$OUT/$file.tmp' '$OUT/$file'" >> "$JOBF"
  else
    echo "$FF $in -filter_complex \"$sf,$vf,format=yuv420p\" -t $D $e $BX -f $fmt '$OUT/$file.tmp' && mv '$OUT/$file.tmp' '$OUT/$file'" >> "$JOBF"
  fi
}

# ---------- clean: 36 clips ----------
C=clean
clip clean_plaza_4cif_h264        plaza0 704x576  $C - - - - "$(day),$(cam 3)" h264
clip clean_plaza_native_h264      plaza1 768x576  $C - - - - "$(day),$(cam 3)" h264
clip clean_plaza_cif_512k         plaza2 352x288  $C - - - - "$(day),$(cam 3)" h264br:512
clip clean_plaza_4cif_512k        plaza3 704x576  $C - - - - "$(day),$(cam 3)" h264br:512
clip clean_plaza_720p_h265        plaza4 1280x720 $C - - - - "$(day),$(cam 3)" h265
clip clean_plaza_1080p_h264       plaza5 1920x1080 $C - - - - "$(day),$(cam 3)" h264
clip clean_plaza_4cif_mpeg2       plaza0 704x576  $C - - - - "$(day),$(cam 3)" mpeg2:3000
clip clean_plaza_dusk             plaza1 704x576  $C - - - - "$(dusk),$(cam 5)" h264
clip clean_plaza_night_ir         plaza2 704x576  $C - - - - "$(night),$(cam 8)" h264
clip clean_plaza_night_512k       plaza3 704x576  $C - - - - "$(night),$(cam 8)" h264br:512
clip clean_megamind_4cif          megamind 704x576 $C - - - - "$(day),$(cam 2)" h264
clip clean_megamind_720p_mpeg2    megamind 1280x720 $C - - - - "$(day),$(cam 2)" mpeg2:6000
clip clean_tree_cif               tree 352x288    $C - - - - "$(day),$(cam 3)" h264
clip clean_tree_cif_h265          tree 352x288    $C - - - - "$(day),$(cam 3)" h265
clip clean_building_4cif          building 704x576 $C - - - - "$(day),$(cam 3)" h264
clip clean_building_1080p_h265    building 1920x1080 $C - - - - "$(day),$(cam 3)" h265
clip clean_building_dusk          building 704x576 $C - - - - "$(dusk),$(cam 5)" h264
clip clean_building_night_ir      building 704x576 $C - - - - "$(night),$(cam 8)" h265
clip clean_street_720p            street 1280x720  $C - - - - "$(day),$(cam 3)" h264
clip clean_street_static          street_static 704x576 $C - - - - "$(day),$(cam 3)" h264
clip clean_street_static_night    street_static 704x576 $C - - - - "$(night),$(cam 7)" h264
clip clean_street_cif_512k        street 352x288   $C - - - - "$(dusk),$(cam 4)" h264br:512
clip clean_room_dark_indoor       room 704x576     $C - - - - "eq=brightness=-0.06:gamma=0.85,$(cam 4)" h264
clip clean_room_static            room_static 704x576 $C - - - - "$(day),$(cam 3)" h264
clip clean_aerial_traffic         aerial 704x576   $C - - - - "$(day),$(cam 3)" h264
clip clean_aerial_mpeg2           aerial 704x576   $C - - - - "$(day),$(cam 3)" mpeg2:2000
clip clean_fruit_colourful        fruit 704x576    $C - - - - "$(day),$(cam 3)" h264
clip clean_baboon_colourful       baboon 704x576   $C - - - - "$(day),$(cam 3)" h264
clip clean_starry_colourful       starry 704x576   $C - - - - "$(day),$(cam 3)" h265
clip clean_coffee_indoor          coffee 704x576   $C - - - - "$(day),$(cam 3)" h264
clip clean_astronaut_static       astronaut 704x576 $C - - - - "$(day),$(cam 3)" h264
clip clean_motorcycle_traffic     motorcycle 1280x720 $C - - - - "$(day),$(cam 3)" h264
clip clean_rocket_720p_512k       rocket 1280x720  $C - - - - "$(day),$(cam 3)" h264br:512
clip clean_cameraman_mono         cameraman 704x576 $C - - - - "$(day),$(cam 3)" h264
clip clean_stuff_indoor           stuff 704x576    $C - - - - "$(dusk),$(cam 4)" mpeg2:2000
clip clean_building_cif_512k      building 352x288 $C - - - - "$(night),$(cam 6)" h264br:512

# ---------- defects: three strengths on three real scenes each ----------
# dscenes CHECK -> the scenes a defect is put on (rotating through the real ones)
S3="plaza0 building street"
S3b="plaza1 coffee aerial"
S3c="plaza2 room motorcycle"
defect() {  # defect NAME CHECK SCENES EXPECTED TOLERATED F1 F2 F3 [ENC] [BSF1 BSF2 BSF3]
  local name=$1 chk=$2 scenes=$3 exp=$4 tol=$5 f1=$6 f2=$7 f3=$8 mode=${9:-h264} b1=${10:-} b2=${11:-} b3=${12:-}
  local i=0 st f b
  for sc in $scenes; do
    for st in 1 2 3; do
      f=$([ $st = 1 ] && echo "$f1" || { [ $st = 2 ] && echo "$f2" || echo "$f3"; })
      b=$([ $st = 1 ] && echo "$b1" || { [ $st = 2 ] && echo "$b2" || echo "$b3"; })
      clip "${name}_${sc}_s$st" "$sc" 704x576 "$chk" "$st" "$exp" "$tol" - "$f" "$mode" "$b"
    done
    i=$((i+1))
  done
}
defect blur blur "$S3" blur - "gblur=sigma=2.2,$(cam 3)" "gblur=sigma=4.4,$(cam 3)" "gblur=sigma=8.8,$(cam 3)"
defect noise noise "$S3b" noise - "$(sensor 20 1),$(osd)" "$(sensor 40 1),$(osd)" "$(sensor 60 1),$(osd)"
defect stripes stripes "$S3c" stripes - \
  "geq=lum='clip(lum(X,Y)+6*sin(2*PI*Y/10+T*4),0,255)':cb='cb(X,Y)':cr='cr(X,Y)',$(cam 3)" \
  "geq=lum='clip(lum(X,Y)+11*sin(2*PI*X/18),0,255)':cb='cb(X,Y)':cr='cr(X,Y)',$(cam 3)" \
  "geq=lum='clip(lum(X,Y)+22*sin(2*PI*Y/36+T*2),0,255)':cb='cb(X,Y)':cr='cr(X,Y)',$(cam 3)"
defect cast color_cast "$S3" color_cast - \
  "format=rgb24,colorchannelmixer=rr=1:gg=0.88:bb=0.82,format=yuv420p,$(cam 3)" \
  "format=rgb24,colorchannelmixer=rr=0.64:gg=0.88:bb=1,format=yuv420p,$(cam 3)" \
  "format=rgb24,colorchannelmixer=rr=0.64:gg=1:bb=0.64,format=yuv420p,$(cam 3)"
defect dark brightness "$S3b" brightness - "lutyuv=y='16+(val-16)*0.30',$(cam 3)" "lutyuv=y='16+(val-16)*0.22',$(cam 3)" "lutyuv=y='16+(val-16)*0.15',$(cam 3)"
defect bright brightness "$S3c" brightness - "lutyuv=y='235-(235-val)*0.45',$(cam 3)" "lutyuv=y='235-(235-val)*0.30',$(cam 3)" "lutyuv=y='235-(235-val)*0.18',$(cam 3)"
defect black black_screen "$S3" black_screen - "lutyuv=y=16:u=128:v=128" "lutyuv=y=16:u=128:v=128,$(osd)" "lutyuv=y=19:u=128:v=128,$(sensor 8 2),$(osd)"
defect nosignal signal_loss "$S3b" signal_loss - \
  "lutrgb=r=0:g=0:b=192" \
  "lutrgb=r=0:g=0:b=200,drawtext=fontfile=$FONT:text='NO SIGNAL':x=(w-tw)/2:y=(h-th)/2:fontsize=h/10:fontcolor=white,$(osd)" \
  "lutrgb=r=110:g=110:b=110,drawtext=fontfile=$FONT:text='VIDEO LOSS':x=(w-tw)/2:y=(h-th)/2:fontsize=h/12:fontcolor=white,$(sensor 3 3)"
# freeze: the source stops on one picture (its sensor noise frozen with it) and
# the encoder codes it again and again; the camera's OSD clock keeps running
defect freeze freeze "$S3c" freeze - \
  "$(sensor 3 4),trim=end_frame=1,loop=loop=-1:size=1,setpts=N/25/TB,$(osd)" \
  "$(sensor 6 4),trim=end_frame=1,loop=loop=-1:size=1,setpts=N/25/TB,$(osd)" \
  "trim=end_frame=1,loop=loop=-1:size=1,setpts=N/25/TB,$(osd)"
ph=$(off 4 9)
defect jitter jitter "$S3" jitter - \
  "pad=iw+24:ih+24:12:12:black,crop=iw-24:ih-24:x='12+3*sin(2*PI*5*t+$ph)':y='12+2*cos(2*PI*5*t+$ph)',$(cam 3)" \
  "pad=iw+24:ih+24:12:12:black,crop=iw-24:ih-24:x='12+6*sin(2*PI*4.3*t+$ph)*sin(2*PI*7*t)':y='12+4*cos(2*PI*5.1*t+$ph)',$(cam 3)" \
  "pad=iw+24:ih+24:12:12:black,crop=iw-24:ih-24:x='12+11*sin(2*PI*5*t+$ph)':y='12+7*cos(2*PI*6*t+$ph)',$(cam 3)"
defect mosaic mosaic "$S3b" mosaic "blur" "$(cam 3)" "$(cam 3)" "$(cam 3)" h264 \
  "noise=amount=$((60000 + SEED % 7 * 1000))" "noise=amount=$((12000 + SEED % 7 * 300))" "noise=amount=$((2500 + SEED % 7 * 50))"
defect occlusion occlusion "$S3c" occlusion - \
  "drawbox=x=0:y=0:w=iw*0.40:h=ih:c=0x202020:t=fill,$(cam 3)" \
  "drawbox=x=0:y=ih*0.45:w=iw:h=ih*0.55:c=0x3a2a1a:t=fill,$(cam 3)" \
  "drawbox=x=iw*0.16:y=ih*0.16:w=iw*0.84:h=ih*0.84:c=0x1a1a1a:t=fill,$(cam 3)"

# ---------- scene change ----------
for sc in plaza0 building coffee; do
  b="$OUT/baseline_$sc.jpg"
  if [ ! -s "$b" ]; then
    in=$(scene "$sc" 704 576); sf=${in#*|}; in=${in%%|*}
    eval "$FF $in -filter_complex \"$sf\" -frames:v 1 -q:v 4 $BX '$b.tmp.jpg'" && mv "$b.tmp.jpg" "$b"
  fi
done
clip scene_same_plaza     plaza0 704x576 scene_same - - - baseline_plaza0.jpg "$(dusk),$(cam 5)" h264
clip scene_same_building  building 704x576 scene_same - - - baseline_building.jpg "$(night),$(cam 7)" h264
clip scene_same_coffee    coffee 704x576 scene_same - - - baseline_coffee.jpg "$(cam 3)" h265
clip scene_moved_plaza    plaza0 704x576 scene_change 1 scene_change - baseline_plaza0.jpg "crop=iw*0.7:ih*0.7:iw*0.3:0,scale=704:576,$(cam 3)" h264
clip scene_moved_building building 704x576 scene_change 2 scene_change blur baseline_building.jpg "crop=iw/2:ih/2:iw/4:ih/4,scale=704:576,$(cam 3)" h264
clip scene_other_coffee   street 704x576 scene_change 3 scene_change - baseline_coffee.jpg "$(cam 3)" h264
clip scene_other_plaza    room 704x576 scene_change 3 scene_change - baseline_plaza0.jpg "$(cam 3)" h264

# ---------- bad input ----------
bad() { printf '%s\tbad\tbad\t%s\t%s\t-\t-\n' "$1" "$2" "$3" >> "$MAN.tmp"; }
badjob() { [ -s "$OUT/$1" ] || echo "$2 && mv '$OUT/$1.tmp' '$OUT/$1'" >> "$JOBF"; }
bad bad_zero_length.mp4 zero stream
[ -e "$OUT/bad_zero_length.mp4" ] || : > "$OUT/bad_zero_length.mp4"
bad bad_no_video.m4a audio stream
badjob bad_no_video.m4a "$FF -f lavfi -i sine=f=440:d=2 -c:a aac -fflags +bitexact -flags:a +bitexact -map_metadata -1 -vn -f mp4 '$OUT/bad_no_video.m4a.tmp'"
bad bad_10bit.mp4 10bit -
badjob bad_10bit.mp4 "$FF -ss 3 -t $D -i $CV/vtest.avi -vf \"scale=704:576,$(cam 3)\" -c:v libx264 -preset veryfast -crf 23 -x264-params threads=1 -pix_fmt yuv420p10le $BX -f mp4 '$OUT/bad_10bit.mp4.tmp'"
bad bad_422.mp4 422 -
badjob bad_422.mp4 "$FF -ss 3 -t $D -i $CV/vtest.avi -vf \"scale=704:576,$(cam 3)\" -c:v libx264 -preset veryfast -crf 23 -x264-params threads=1 -pix_fmt yuv422p $BX -f mp4 '$OUT/bad_422.mp4.tmp'"
bad bad_odd_size.mp4 odd -
badjob bad_odd_size.mp4 "$FF -ss 3 -t $D -i $CV/vtest.avi -vf \"scale=353:289,$(cam 3)\" -c:v libx265 -preset ultrafast -x265-params log-level=error:pools=none:frame-threads=1 -pix_fmt yuv444p $BX -f mp4 '$OUT/bad_odd_size.mp4.tmp'"
bad bad_tiny.mp4 tiny stream
badjob bad_tiny.mp4 "$FF -f lavfi -i testsrc2=s=8x8:r=25 -t 1 -c:v libx264 -x264-params threads=1 -pix_fmt yuv444p $BX -f mp4 '$OUT/bad_tiny.mp4.tmp'"
bad bad_res_change.ts reschange -
badjob bad_res_change.ts "{ $FF -ss 3 -t 1 -i $CV/vtest.avi -vf \"scale=704:576,$(cam 3)\" -c:v libx264 -preset veryfast -x264-params threads=1 -pix_fmt yuv420p $BX -f mpegts - ; $FF -ss 9 -t 1.4 -i $CV/vtest.avi -vf \"scale=352:288,$(cam 3)\" -c:v libx264 -preset veryfast -x264-params threads=1 -pix_fmt yuv420p $BX -f mpegts - ; } > '$OUT/bad_res_change.ts.tmp'"

# ---------- run ----------
if [ -s "$JOBF" ]; then
  tr '\n' '\0' < "$JOBF" | xargs -0 -P "$JOBS" -n 1 bash -c 'eval "$0" || { echo "make_real_clips: failed: $0" >&2; exit 255; }'
fi
rm -f "$JOBF"
# truncated: the first 40 % of a clean clip (after the encodes)
printf 'bad_truncated.mp4\tbad\tbad\ttruncated\tstream\t-\t-\n' >> "$MAN.tmp"
if [ ! -s "$OUT/bad_truncated.mp4" ]; then
  sz=$(stat -c %s "$OUT/clean_plaza_4cif_h264.mp4")
  head -c $((sz * 2 / 5)) "$OUT/clean_plaza_4cif_h264.mp4" > "$OUT/bad_truncated.mp4.tmp" && mv "$OUT/bad_truncated.mp4.tmp" "$OUT/bad_truncated.mp4"
fi
printf 'bad_truncated_ts.ts\tbad\tbad\ttruncated\t-\tmosaic\t-\n' >> "$MAN.tmp"
if [ ! -s "$OUT/bad_truncated_ts.ts" ]; then
  sz=$(stat -c %s "$OUT/clean_plaza_4cif_mpeg2.ts")
  head -c $((sz / 2 + 77)) "$OUT/clean_plaza_4cif_mpeg2.ts" > "$OUT/bad_truncated_ts.ts.tmp" && mv "$OUT/bad_truncated_ts.ts.tmp" "$OUT/bad_truncated_ts.ts"
fi
mv "$MAN.tmp" "$MAN"
echo "make_real_clips: $(($(wc -l < "$MAN") - 1)) clips in $OUT" >&2
