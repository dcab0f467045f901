#!/bin/sh
# Runs inside the image's root file system at build time (image/build-image.sh): the read-only
# root, the data partition, the first-boot units, what is not needed switched off, and for the
# stand-in a virtual board (a qemu device) for the boot check's job.
set -eu
kind=$1
cat >/etc/fstab <<FSTAB
# lavabox appliance: read-only root, writable data partition.
LABEL=lavabox-root  /                 ext4   ro,noatime,errors=remount-ro  0 1
LABEL=lavabox-data  /var/lib/lavabox  ext4   rw,noatime,x-systemd.device-timeout=20s  0 2
LABEL=RASPIFIRM     /boot/firmware    vfat   ro,nofail,noauto,x-systemd.automount  0 2
tmpfs               /tmp              tmpfs  mode=1777,size=25%  0 0
tmpfs               /var/tmp          tmpfs  mode=1777,size=10%  0 0
FSTAB
mkdir -p /boot/firmware
# systemd makes a transient machine id on a read-only root.
: >/etc/machine-id
rm -f /var/lib/dbus/machine-id
mkdir -p /etc/systemd/journald.conf.d
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n' >/etc/systemd/journald.conf.d/lavabox.conf
ln -sf /run/systemd/resolve/stub-resolv.conf /etc/resolv.conf 2>/dev/null || true
systemctl enable systemd-networkd lavabox.service lavabox-hostname.service \
    lavabox-grow-data.service lavabox-firstboot.service lavabox-ready-report.service avahi-daemon.service >/dev/null 2>&1
# Nothing on a read-only appliance needs these; each costs boot time under emulation.
for unit in systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
    e2scrub_all.timer e2scrub_reap.service fstrim.timer systemd-timesyncd.service \
    man-db.timer dpkg-db-backup.timer systemd-update-utmp.service \
    systemd-update-utmp-runlevel.service systemd-random-seed.service \
    nfs-blkmap.service rpc-statd-notify.service; do
    systemctl mask "$unit" >/dev/null 2>&1 || true
done
echo 'root:lavabox' | chpasswd
# The boot check's virtual board: a qemu device whose health check is installed (its assets are
# the package's lab assets), so the image runs a real job without hardware.
if [ "$kind" = standin ]; then
    lb() { runuser -u lavabox -- /usr/bin/lavabox --config /etc/lavabox/lavabox.toml "$@"; }
    lb device-type add qemu --description "virtual x86 board (QEMU inside the appliance)" >/dev/null
    printf "{%% extends 'qemu.jinja2' %%}\n{%% set no_kvm = True %%}\n" >/tmp/qemu-virt-01.jinja2
    lb device add qemu-virt-01 --type qemu --dictionary /tmp/qemu-virt-01.jinja2 --health Good >/dev/null
    rm /tmp/qemu-virt-01.jinja2
fi
