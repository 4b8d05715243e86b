#!/usr/bin/env bash
# Install the Debian packages vms needs to build, run and test.
# As root: apt-get installs what is missing.  Otherwise: print the exact
# command to run and stop.
set -euo pipefail

PACKAGES=(
  build-essential
  postgresql-15 postgresql-server-dev-15 postgresql-15-postgis-3 postgresql-contrib
  libipc-run-perl curl python3 bc
  faketime  # libfaketime: the pg_regress suite runs again on a fake clock
  libssl-dev libcurl4-openssl-dev
)
# clang and llvm: PGXS compiles LLVM bitcode for JIT, as Debian's server
# was built with LLVM.
PACKAGES+=(clang-14 llvm-14)
# SIP worker: libosip2 parses SIP, libxml2 MANSCDP; sipp plays devices in tests;
# libclang-rt gives libFuzzer for the parser fuzz target.
PACKAGES+=(libosip2-dev libxml2-dev sip-tester libclang-rt-14-dev)
# GA/T 1400 server (viid-server worker): libmicrohttpd serves HTTP
PACKAGES+=(libmicrohttpd-dev openssl)  # openssl: the TLS test makes a certificate
# inspection: FFmpeg libraries and tools; GStreamer's RTSP server for test cameras
PACKAGES+=(ffmpeg libavformat-dev libavcodec-dev libavutil-dev libswscale-dev
           gir1.2-gst-rtsp-server-1.0 python3-gst-1.0 gstreamer1.0-plugins-base
           gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav)
# reports: headless Chromium renders and prints them; a CJK font, without
# which every Chinese label is an empty box; pdftotext reads the PDF back
PACKAGES+=(chromium fonts-noto-cjk poppler-utils fontconfig)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "vms needs Debian packages that are not installed. Run as root:" >&2
  echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi

echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian creates and may start a default cluster; vms uses its own.
if command -v pg_ctlcluster >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q '^15 main .* online'; then
  pg_ctlcluster 15 main stop || true
fi
