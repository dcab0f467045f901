#!/usr/bin/env bash
# Builds the lavabox Debian package for one architecture with dpkg-deb:
#   packaging/build-deb.sh amd64|arm64        → target/deb/lavabox_<version>_<arch>.deb
# LAVABOX_PROFILE picks the cargo profile: `release` (default, what releases ship) or
# `appliance` (CI: optimised enough for a TCG guest, built in a fraction of the time).
# arm64 is cross-built with Debian's Rust 1.96 (scripts/cross-build.sh).
#
# Contents: /usr/bin/lavabox, the unit, a default /etc/lavabox/lavabox.toml, the NFS export
# of the boards' roots, the device types and example health checks with their lab assets
# (/usr/share/lavabox), /usr/lib/lavabox/first-admin, and maintainer scripts that create the
# lavabox user, the data directory and the first admin (credentials printed once, root-only).
# Install on Debian / Raspberry Pi OS bookworm: `apt install ./lavabox_<version>_<arch>.deb`.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
arch=${1:?usage: packaging/build-deb.sh amd64|arm64}
profile=${LAVABOX_PROFILE:-release}
started=$(date +%s.%N)
log() { echo "build-deb[$arch]: $*" >&2; }

case $arch in
    amd64)
        export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$here/target}
        cargo build --locked --profile "$profile" --bin lavabox
        dir=$profile; [ "$profile" = dev ] && dir=debug
        bin=$CARGO_TARGET_DIR/$dir/lavabox
        ;;
    arm64)
        export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$here/target/cross}
        CROSS_PROFILE=$profile bash scripts/cross-build.sh --bin lavabox >&2
        dir=$profile; [ "$profile" = dev ] && dir=debug
        bin=$CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/$dir/lavabox
        ;;
    *) echo "build-deb: unknown architecture $arch (amd64 or arm64)" >&2; exit 2 ;;
esac
built=$(date +%s.%N)

# The example health checks' assets (lab/cache, built from Debian packages).
if [ ! -s lab/cache/amd64/vmlinuz ] || [ ! -s lab/cache/armhf/zImage ]; then
    bash lab/build-assets.sh >&2
fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
if rev=$(git rev-list --count HEAD 2>/dev/null); then
    version="$version+git$rev.$(git rev-parse --short=8 HEAD)"
fi
out=$here/target/deb
root=$out/root-$arch
rm -rf "$root"
mkdir -p "$root/DEBIAN" "$out"

install -D -m 0755 "$bin" "$root/usr/bin/lavabox"
case $arch in
    amd64) strip --strip-unneeded "$root/usr/bin/lavabox" ;;
    arm64) aarch64-linux-gnu-strip --strip-unneeded "$root/usr/bin/lavabox" ;;
esac
install -D -m 0644 systemd/lavabox.service "$root/lib/systemd/system/lavabox.service"
install -D -m 0644 packaging/lavabox.toml "$root/etc/lavabox/lavabox.toml"
install -d -m 0755 "$root/etc/lavabox/device-types/health-checks"
install -D -m 0644 packaging/lavabox.exports "$root/etc/exports.d/lavabox.exports"
install -D -m 0755 packaging/first-admin "$root/usr/lib/lavabox/first-admin"
install -d "$root/usr/share/lavabox/device-types/health-checks"
install -m 0644 device-types/*.jinja2 "$root/usr/share/lavabox/device-types/"
install -m 0644 device-types/health-checks/*.yaml "$root/usr/share/lavabox/device-types/health-checks/"
for a in amd64/vmlinuz amd64/ramdisk.cpio.gz armhf/zImage armhf/ramdisk.cpio.gz; do
    install -D -m 0644 "lab/cache/$a" "$root/usr/share/lavabox/lab-assets/$a"
done
install -D -m 0644 README.md "$root/usr/share/doc/lavabox/README.md"
install -D -m 0644 ARCHITECTURE.md "$root/usr/share/doc/lavabox/ARCHITECTURE.md"
gzip -9n -c packaging/changelog >"$root/usr/share/doc/lavabox/changelog.Debian.gz"
install -D -m 0644 packaging/copyright "$root/usr/share/doc/lavabox/copyright"
for s in postinst prerm postrm; do install -m 0755 "packaging/debian/$s" "$root/DEBIAN/$s"; done
install -m 0644 packaging/debian/conffiles "$root/DEBIAN/conffiles"

# Shared libraries the binary links, as package dependencies (what dpkg-shlibdeps would say
# for these few; the binary needs glibc 2.34 for its symbol versions).
needed=$(LC_ALL=C readelf -d "$root/usr/bin/lavabox" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p')
libdeps="libc6 (>= 2.34)"
for lib in $needed; do
    case $lib in
        libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*) ;;
        libgcc_s.so.*) libdeps="$libdeps, libgcc-s1" ;;
        libstdc++.so.*) libdeps="$libdeps, libstdc++6" ;;
        *) echo "build-deb: the binary links $lib, which has no package mapping here" >&2; exit 1 ;;
    esac
done
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: lavabox
Version: $version
Architecture: $arch
Maintainer: lavabox developers <lavabox@localhost>
Installed-Size: $size
Depends: $libdeps, adduser, git, util-linux (>= 2.38)
Recommends: nfs-kernel-server | nfs-ganesha-vfs, lxc, avahi-daemon
Suggests: lavacli, qemu-system-x86, qemu-system-arm
Section: devel
Priority: optional
Homepage: https://github.com/lavabox/lavabox
Description: LAVA-compatible board-farm controller appliance
 lavabox runs the whole of a LAVA 2023.01 instance (scheduler, dispatcher, XML-RPC and
 REST APIs, ZMQ events, web UI, TFTP) as one process on one small box such as a
 Raspberry Pi. LAVA job definitions, device types and clients (lavacli) work unchanged.
CONTROL
# The package's file list checksums, as dpkg-deb leaves them to the build.
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
deb=$out/lavabox_${version}_${arch}.deb
rm -f "$out"/lavabox_*_"$arch".deb
dpkg-deb --root-owner-group -Zxz -z6 --build "$root" "$deb" >&2
done=$(date +%s.%N)
awk -v f="$deb" -v s="$(stat -c %s "$deb")" -v a="$started" -v b="$built" -v c="$done" -v p="$profile" 'BEGIN {
    printf "build-deb: %s  %.1f MB  (cargo %s %.0f s, packaging %.0f s)\n", f, s / 1e6, p, b - a, c - b }' >&2
echo "$deb"
