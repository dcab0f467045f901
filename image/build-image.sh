#!/usr/bin/env bash
# Builds the lavabox appliance SD-card image from Debian bookworm with mmdebstrap:
#   image/build-image.sh pi      DEB   → target/image/lavabox-pi.img      (Raspberry Pi 4, arm64)
#   image/build-image.sh standin DEB   → target/image/lavabox-standin.img (amd64, for QEMU)
# DEB is the lavabox package of the image's architecture (packaging/build-deb.sh).
#
# Layout (MBR): p1 FAT32 `RASPIFIRM` (Pi firmware, config.txt, cmdline.txt, kernel, initramfs,
# device trees; the stand-in keeps its kernel and initramfs there for a direct kernel boot),
# p2 ext4 `lavabox-root` mounted read-only, p3 ext4 `lavabox-data` on /var/lib/lavabox
# (database, job logs, TFTP and NFS roots), grown to the card's size on the first boot.
# Each boot names the box lavabox-XXXX from the Pi's serial and announces it over mDNS
# (avahi); the first boot makes the admin and prints the credentials on the console, and the
# web UI's login page shows them until the password is changed. firmware-config/ (Pi config.txt
# fragments, cmdline.txt, udev rules), when present in the tree, is installed as it is.
# No loop devices or mounts: mkfs.vfat -C + mcopy, mke2fs -d, sfdisk, dd.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
kind=${1:?usage: image/build-image.sh pi|standin DEB}
deb=$(readlink -f "${2:?usage: image/build-image.sh pi|standin DEB}")
out=${LAVABOX_IMAGE_DIR:-$here/target/image}
mirror=${LAVABOX_DEBIAN_MIRROR:-http://deb.debian.org/debian}
started=$(date +%s.%N)
log() { echo "build-image[$kind]: $*" >&2; }
elapsed() { awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }'; }

common="systemd-sysv,udev,kmod,initramfs-tools,e2fsprogs,dosfstools,cloud-guest-utils,fdisk,\
iproute2,avahi-daemon,libnss-mdns,libnss-myhostname,procps,ca-certificates,adduser,git,util-linux"
case $kind in
    pi)
        arch=arm64
        packages="$common,linux-image-arm64,raspi-firmware,firmware-brcm80211,nfs-kernel-server"
        boot_size=256
        ;;
    standin)
        arch=amd64
        # The stand-in's virtual board (a qemu device defined in the image) runs QEMU.
        packages="$common,linux-image-cloud-amd64,qemu-system-x86,nfs-kernel-server"
        boot_size=64
        ;;
    *) echo "build-image: unknown image kind $kind (pi or standin)" >&2; exit 2 ;;
esac
[ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] || {
    echo "build-image: $deb is not an $arch package" >&2
    exit 2
}
if [ "$arch" != "$(dpkg --print-architecture)" ] && ! [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    echo "build-image: $arch needs binfmt_misc with qemu-user-static (scripts/install-deps.sh)" >&2
    exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/lavabox-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
mkdir -p "$out"
deps=$(dpkg-deb -f "$deb" Depends | sed 's/([^)]*)//g; s/ //g')

log "root file system: mmdebstrap bookworm $arch"
# initramfs: only what a virtio or SD/MMC disk with ext4 needs (MODULES=most under qemu-user
# takes minutes), written before the kernel is installed.
modules="ext4 crc32c_generic vfat nls_cp437 nls_ascii virtio_blk virtio_pci virtio_mmio virtio_net \
sdhci_iproc mmc_block bcm2835_dma"
mmdebstrap --variant=essential --arch="$arch" \
    --components="main non-free-firmware" \
    --include="$packages,${deps//,/,}" \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/lavabox/*' \
    --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d"; echo MODULES=list >"$1/etc/initramfs-tools/conf.d/lavabox"; echo COMPRESS=gzip >>"$1/etc/initramfs-tools/conf.d/lavabox"' \
    --essential-hook="printf '%s\n' $modules >>\"\$1/etc/initramfs-tools/modules\"" \
    --customize-hook="copy-in $deb /tmp" \
    --customize-hook='chroot "$1" env LAVABOX_IMAGE_BUILD=1 dpkg -i /tmp/'"$(basename "$deb")" \
    --customize-hook='rm -f "$1/tmp/"*.deb' \
    --customize-hook='mkdir -p "$1/usr/lib/lavabox/image" "$1/etc/systemd/network"' \
    --customize-hook="copy-in $here/image/rootfs/lavabox-hostname $here/image/rootfs/lavabox-grow-data /usr/lib/lavabox/image" \
    --customize-hook="copy-in $here/image/rootfs/lavabox-hostname.service $here/image/rootfs/lavabox-grow-data.service $here/image/rootfs/lavabox-firstboot.service $here/image/rootfs/lavabox-ready-report.service /etc/systemd/system" \
    --customize-hook="copy-in $here/image/rootfs/20-wired.network /etc/systemd/network" \
    --customize-hook="copy-in $here/image/rootfs/issue /etc" \
    --customize-hook="upload $here/image/rootfs/setup-root.sh /tmp/setup-root.sh" \
    --customize-hook='chroot "$1" sh /tmp/setup-root.sh '"$kind"' && rm "$1/tmp/setup-root.sh"' \
    --customize-hook="sync-out /boot $work/boot-files" \
    --customize-hook="sync-out /var/lib/lavabox $work/data" \
    --customize-hook='rm -rf "$1/var/lib/lavabox/"* "$1/var/lib/lavabox/".[!.]* 2>/dev/null || true' \
    bookworm "$rootfs" "$mirror" >&2
log "root file system done ($(elapsed) s)"

# The boot partition.
boot=$work/boot
mkdir -p "$boot"
kernel=$(ls "$work"/boot-files/vmlinuz-* | sort -V | tail -n 1)
initrd=$(ls "$work"/boot-files/initrd.img-* | sort -V | tail -n 1)
cp "$kernel" "$boot/vmlinuz"
cp "$initrd" "$boot/initrd.img"
cmdline="root=LABEL=lavabox-root ro rootwait console=ttyS0,115200 quiet fsck.repair=yes"
if [ "$kind" = pi ]; then
    # raspi-firmware's files (start4.elf, fixup4.dat, bootcode…) and the Pi 4 device trees.
    if [ -d "$rootfs/usr/lib/raspi-firmware" ]; then cp -r "$rootfs/usr/lib/raspi-firmware/." "$boot/"; fi
    dtbs=$(ls -d "$rootfs"/usr/lib/linux-image-*/broadcom | tail -n 1)
    cp "$dtbs"/bcm2711-rpi-*.dtb "$boot/"
    cmdline="root=LABEL=lavabox-root ro rootwait console=tty1 console=ttyS1,115200 quiet fsck.repair=yes"
    if [ -d "$here/firmware-config" ]; then
        # The hardware issue's Pi configuration, as it is.
        log "installing firmware-config/"
        for f in "$here"/firmware-config/*; do
            case $(basename "$f") in
                *.rules) install -D -m 0644 "$f" "$rootfs/etc/udev/rules.d/$(basename "$f")" ;;
                *) cp -r "$f" "$boot/" ;;
            esac
        done
    fi
    if [ ! -e "$boot/config.txt" ]; then
        # Only what booting needs: the 64-bit kernel and initramfs raspi-firmware expects.
        cat >"$boot/config.txt" <<CONFIG
# lavabox: minimal Raspberry Pi 4 boot configuration.
arm_64bit=1
enable_uart=1
upstream_kernel=1
kernel=vmlinuz
initramfs initrd.img followkernel
CONFIG
    fi
    [ -e "$boot/cmdline.txt" ] || echo "$cmdline" >"$boot/cmdline.txt"
fi
echo "$cmdline" >"$out/lavabox-$kind.cmdline"
cp "$boot/vmlinuz" "$out/lavabox-$kind.vmlinuz"
cp "$boot/initrd.img" "$out/lavabox-$kind.initrd.img"

log "partitions"
root_mb=$(( $(du -sm "$rootfs" | cut -f1) * 120 / 100 + 64 ))
data_mb=$(( $(du -sm "$work/data" | cut -f1) + 64 ))
img=$out/lavabox-$kind.img
rm -f "$img"
mkfs.vfat -n RASPIFIRM -F 32 -C "$work/boot.fat" $((boot_size * 1024)) >/dev/null
mcopy -s -i "$work/boot.fat" "$boot"/* ::/
mke2fs -q -t ext4 -L lavabox-root -d "$rootfs" "$work/root.ext4" "${root_mb}M"
mke2fs -q -t ext4 -L lavabox-data -m 1 -d "$work/data" "$work/data.ext4" "${data_mb}M"
total=$((1 + boot_size + root_mb + data_mb))
truncate -s "${total}M" "$img"
sfdisk -q "$img" <<LAYOUT
label: dos
start=1MiB, size=${boot_size}MiB, type=c, bootable
start=$((1 + boot_size))MiB, size=${root_mb}MiB, type=83
start=$((1 + boot_size + root_mb))MiB, size=${data_mb}MiB, type=83
LAYOUT
dd if="$work/boot.fat" of="$img" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/root.ext4" of="$img" bs=1M seek=$((1 + boot_size)) conv=notrunc,sparse status=none
dd if="$work/data.ext4" of="$img" bs=1M seek=$((1 + boot_size + root_mb)) conv=notrunc,sparse status=none
size=$(stat -c %s "$img")
used=$(du -k "$img" | cut -f1)
echo "build-image: $img  $(awk -v s="$size" 'BEGIN { printf "%.0f", s / 1048576 }') MiB ($((used / 1024)) MiB allocated; root ${root_mb} MiB, data ${data_mb} MiB), built in $(elapsed) s" >&2
echo "$img"
