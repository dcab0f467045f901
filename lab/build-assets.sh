#!/usr/bin/env bash
# Build the guest assets of lavabox's virtual lab into CACHE_DIR (default lab/cache/):
#   armhf/zImage            Debian armmp kernel (for the uboot-arm board)
#   armhf/ramdisk.cpio.gz   busybox initramfs for armhf
#   amd64/vmlinuz           Debian amd64 kernel (for the x86 board)
#   amd64/ramdisk.cpio.gz   busybox initramfs for amd64
# Packages come from Debian bookworm (and bookworm-updates; the security suite is
# left out on purpose: the lab needs a stable kernel, not the newest one) with `apt-get download` and a private apt state per
# architecture, so the host needs no foreign architecture enabled. Idempotent:
# an output that exists is kept (delete it, or the cache, to rebuild).
# Needs: apt-get, dpkg-deb, cpio, gzip (lab/install-deps.sh installs them).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${1:-$here/cache}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
mirror=${LAVABOX_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm

# The shell prompt and ready marker the initramfs prints; the lab tests and the
# example device dictionaries match on them.
ready_marker='lavabox-lab: init ready'

log() { echo "build-assets: $*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# apt_for ARCH ARGS...: run apt-get with a private state for ARCH under $cache/apt/ARCH.
apt_for() {
    local arch=$1
    shift
    local root=$cache/apt/$arch
    apt-get -q \
        -o APT::Architecture="$arch" \
        -o APT::Architectures="$arch" \
        -o Dir::State="$root/state" \
        -o Dir::State::lists="$root/state/lists" \
        -o Dir::State::status="$root/state/status" \
        -o Dir::Cache="$root/cache" \
        -o Dir::Etc::sourcelist="$root/sources.list" \
        -o Dir::Etc::sourceparts="$root/sources.list.d" \
        -o Dir::Etc::preferences="$root/preferences" \
        -o Dir::Etc::preferencesparts="$root/preferences.d" \
        -o Debug::NoLocking=1 \
        -o APT::Sandbox::User=root \
        "$@"
}

# apt_cache_for ARCH ARGS...: apt-cache with the same private state.
apt_cache_for() {
    local arch=$1
    shift
    local root=$cache/apt/$arch
    apt-cache \
        -o APT::Architecture="$arch" \
        -o APT::Architectures="$arch" \
        -o Dir::State="$root/state" \
        -o Dir::State::lists="$root/state/lists" \
        -o Dir::State::status="$root/state/status" \
        -o Dir::Cache="$root/cache" \
        -o Dir::Etc::sourcelist="$root/sources.list" \
        -o Dir::Etc::sourceparts="$root/sources.list.d" \
        -o Dir::Etc::preferences="$root/preferences" \
        -o Dir::Etc::preferencesparts="$root/preferences.d" \
        "$@"
}

# prepare_apt ARCH: private sources and an `apt-get update` for ARCH (once per run).
prepare_apt() {
    local arch=$1
    local root=$cache/apt/$arch
    mkdir -p "$root/state/lists/partial" "$root/cache/archives/partial" \
        "$root/sources.list.d" "$root/preferences.d" "$root/debs"
    touch "$root/state/status"
    cat >"$root/sources.list" <<SOURCES
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite-updates main
SOURCES
    # Only the package lists are needed, not AppStream metadata.
    apt_for "$arch" -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false \
        -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false \
        -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false \
        -o Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false \
        update >&2
}

# download ARCH PACKAGE: fetch PACKAGE's .deb for ARCH into $cache/apt/ARCH/debs; prints its path.
download() {
    local arch=$1 pkg=$2
    local debs=$cache/apt/$arch/debs
    find "$debs" -maxdepth 1 -name "${pkg}_*.deb" -delete
    (cd "$debs" && apt_for "$arch" download "$pkg" >&2)
    local deb
    deb=$(find "$debs" -maxdepth 1 -name "${pkg}_*.deb" -print -quit)
    if [[ -z $deb ]]; then
        log "downloaded $pkg for $arch but found no .deb"
        exit 1
    fi
    echo "$deb"
}

# kernel_package ARCH META: the concrete linux-image package META (e.g. linux-image-armmp) depends on.
kernel_package() {
    local arch=$1 meta=$2
    local dep
    dep=$(apt_cache_for "$arch" depends "$meta" | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    if [[ -z $dep ]]; then
        log "cannot resolve the kernel package behind $meta for $arch"
        exit 1
    fi
    echo "$dep"
}

# build_kernel ARCH META SRC_GLOB OUT: extract the kernel image matching SRC_GLOB (under /boot) to OUT.
build_kernel() {
    local arch=$1 meta=$2 glob=$3 out=$4
    local pkg deb tmp
    pkg=$(kernel_package "$arch" "$meta")
    log "kernel for $arch: $pkg"
    deb=$(download "$arch" "$pkg")
    tmp=$(mktemp -d)
    dpkg-deb -x "$deb" "$tmp"
    local img
    img=$(find "$tmp/boot" -maxdepth 1 -name "$glob" -print -quit)
    if [[ -z $img ]]; then
        rm -rf "$tmp"
        log "no /boot/$glob in $deb"
        exit 1
    fi
    mkdir -p "$(dirname "$out")"
    cp "$img" "$out.tmp"
    mv "$out.tmp" "$out"
    echo "$pkg" >"$out.package"
    rm -rf "$tmp" "$deb"
}

# build_initramfs ARCH OUT: busybox-static initramfs for ARCH (cpio newc, gzip).
build_initramfs() {
    local arch=$1 out=$2
    local deb tmp root
    deb=$(download "$arch" busybox-static)
    tmp=$(mktemp -d)
    dpkg-deb -x "$deb" "$tmp/pkg"
    root=$tmp/root
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,root,etc}
    cp "$tmp/pkg/bin/busybox" "$root/bin/busybox"
    chmod 755 "$root/bin/busybox"
    # The few applets /init needs before `busybox --install` has run.
    for applet in sh mount mkdir setsid cttyhack echo; do
        ln -s busybox "$root/bin/$applet"
    done
    # A console node so the kernel can open /dev/console before devtmpfs is mounted.
    if [[ $(id -u) -eq 0 ]]; then
        mknod -m 600 "$root/dev/console" c 5 1
        mknod -m 666 "$root/dev/null" c 1 3
    fi
    cat >"$root/init" <<INIT
#!/bin/sh
# lavabox virtual-lab init: mount the kernel file systems, announce readiness,
# and keep a root shell on the console.
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
exec 0<>/dev/console 1>&0 2>&0
# Keep kernel messages from interleaving with shell output.
echo 1 >/proc/sys/kernel/printk
hostname lavabox
export HOME=/root PATH=/bin:/sbin:/usr/bin:/usr/sbin TERM=vt100
export PS1='root@lavabox:\$PWD# '
echo '$ready_marker'
while true; do
    setsid cttyhack /bin/sh
    echo 'lavabox-lab: shell exited, respawning'
done
INIT
    chmod 755 "$root/init"
    mkdir -p "$(dirname "$out")"
    (cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet --owner=0:0) \
        | gzip -9 >"$out.tmp"
    mv "$out.tmp" "$out"
    rm -rf "$tmp" "$deb"
}

start=$(now)
built=()

need() { [[ ! -s $1 ]]; }

if need "$cache/armhf/zImage" || need "$cache/armhf/ramdisk.cpio.gz"; then
    t=$(now)
    prepare_apt armhf
    need "$cache/armhf/zImage" && build_kernel armhf linux-image-armmp 'vmlinuz-*' "$cache/armhf/zImage"
    need "$cache/armhf/ramdisk.cpio.gz" && build_initramfs armhf "$cache/armhf/ramdisk.cpio.gz"
    built+=("armhf $(elapsed "$t")s")
fi
if need "$cache/amd64/vmlinuz" || need "$cache/amd64/ramdisk.cpio.gz"; then
    t=$(now)
    prepare_apt amd64
    need "$cache/amd64/vmlinuz" && build_kernel amd64 linux-image-amd64 'vmlinuz-*' "$cache/amd64/vmlinuz"
    need "$cache/amd64/ramdisk.cpio.gz" && build_initramfs amd64 "$cache/amd64/ramdisk.cpio.gz"
    built+=("amd64 $(elapsed "$t")s")
fi

# The private apt state (package lists, ~50 MB) is only needed while building.
rm -rf "$cache/apt"
total=$(elapsed "$start")
if [[ ${#built[@]} -eq 0 ]]; then
    log "assets present in $cache (nothing to do, ${total}s)"
else
    log "built ${built[*]}; total ${total}s"
    echo "$(date -u +%FT%TZ) built ${built[*]}; total ${total}s" >>"$cache/timings.log"
fi
ls -l "$cache/armhf" "$cache/amd64" >&2
