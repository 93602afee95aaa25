#!/usr/bin/env bash
# Unpacks libonnxruntime-dev (ONNX Runtime's C/C++ headers) into DEST without installing it.
#   scripts/dev/fetch_ort_headers.sh DEST
# The package comes from the machine's own apt sources: first the releases they name (Debian trixie
# and newer have it); else, on an older Debian (bookworm), the same Debian mirror's trixie suite.
# Everything apt needs goes to a private folder (lists, cache, a source list), so the machine's apt
# state is left untouched and no root rights are needed.
set -euo pipefail
dest=${1:?usage: fetch_ort_headers.sh DEST}
command -v apt-get >/dev/null || { echo "fetch_ort_headers: no apt-get here; install ONNX Runtime's C headers and pass -DORT_INCLUDE_DIR" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/sources.list.d" "$dest"
private=(-o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User="$(id -un)")

download() {  # download libonnxruntime-dev with the given extra apt options; 0 on success
    apt-get "${private[@]}" "$@" update -qq >/dev/null 2>&1 || return 1
    (cd "$work" && apt-get "${private[@]}" "$@" download -qq libonnxruntime-dev >/dev/null 2>&1)
}

if ! download; then
    # The Debian archive the machine already uses (its URI, not a host named here), trixie suite.
    mirror=$(apt-get indextargets --no-release-info 'Identifier: Packages' --format '$(REPO_URI) $(RELEASE)' \
             | awk '$2 !~ /-/ && $1 ~ /debian\/?$/ {print $1; exit}')
    if [[ -z "$mirror" ]]; then
        echo "fetch_ort_headers: libonnxruntime-dev is not in this machine's apt sources and none of them is a" \
             "Debian archive; install ONNX Runtime's C headers and pass -DORT_INCLUDE_DIR" >&2
        exit 2
    fi
    cat > "$work/sources.list.d/trixie.sources" <<SRC
Types: deb
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    download -o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/sources.list.d" || {
        echo "fetch_ort_headers: could not download libonnxruntime-dev from $mirror (trixie)" >&2
        exit 2
    }
fi
dpkg -x "$work"/libonnxruntime-dev_*.deb "$dest"
test -f "$dest/usr/include/onnxruntime/onnxruntime_c_api.h"
echo "ONNX Runtime headers in $dest/usr/include/onnxruntime"
