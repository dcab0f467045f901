#!/usr/bin/env bash
# Re-vendors the web UI's JavaScript into src/web/static/ from npm tarballs pinned by
# sha256. Run by a developer when bumping a version; cargo build and CI never run npm: the
# files are committed, and src/web/assets.rs checks their hashes in a unit test.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out="$here/src/web/static"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
fetch() { # package@version tarball-sha256 dist-file target
    npm pack --silent "$1" >/dev/null
    local tgz
    tgz=$(ls ./*.tgz)
    echo "$2  $tgz" | sha256sum -c - >/dev/null
    tar xzf "$tgz"
    cp "package/$3" "$out/$4"
    cp package/LICENSE "$out/LICENSE.${4%%-[0-9]*}"
    rm -rf package "$tgz"
}
fetch htmx.org@2.0.11 165a2655073e9e6e55e307a7c74e8ebcdb76afb7701f9c16cfd106a13add408e \
    dist/htmx.min.js htmx-2.0.11.min.js
fetch htmx-ext-sse@2.2.4 90b46f5ab915ba2f64e6348448c8dba509277a47e15c125ffb65754eb4f6b5dc \
    dist/sse.min.js htmx-ext-sse-2.2.4.min.js
(cd "$out" && sha256sum htmx-2.0.11.min.js htmx-ext-sse-2.2.4.min.js > SHA256SUMS)
echo "vendored into $out; update the pins in src/web/assets.rs from SHA256SUMS"
