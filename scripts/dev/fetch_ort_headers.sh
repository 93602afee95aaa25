#!/usr/bin/env bash
# Unpacks Debian's libonnxruntime-dev (ONNX Runtime's C/C++ headers) into DEST without installing
# it. The package is in Debian trixie and newer; on bookworm a private apt source list for trixie
# is used, so the machine's own apt configuration is left untouched.
set -euo pipefail
dest=${1:?usage: fetch_ort_headers.sh DEST}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/sources.list.d" "$work/lists/partial" "$work/cache/archives/partial" "$dest"
cat > "$work/sources.list.d/trixie.sources" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/sources.list.d"
          -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
apt-get "${apt_opts[@]}" update -qq
(cd "$work" && apt-get "${apt_opts[@]}" download -qq libonnxruntime-dev)
dpkg -x "$work"/libonnxruntime-dev_*.deb "$dest"
test -f "$dest/usr/include/onnxruntime/onnxruntime_c_api.h"
echo "ONNX Runtime headers in $dest/usr/include/onnxruntime"
