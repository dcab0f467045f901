#!/usr/bin/env bash
# Install the host packages lavabox's virtual lab needs (QEMU, U-Boot, console and
# initramfs tools, a TFTP client for tests). Idempotent; run as root on Debian 12.
#
# Quirk: some Debian 12 images ship qemu-utils from bookworm-backports (~bpo12),
# whose Breaks: qemu-system-common (<< 8.0) makes bookworm's qemu-system 7.2
# uninstallable. In that case QEMU comes from bookworm-backports too.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps.sh: must run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
APT_INSTALL=(apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=600)

common=(u-boot-qemu cpio socat curl tftp-hpa gzip ca-certificates ipxe-qemu qemu-system-data)
qemu=(qemu-system-arm qemu-system-x86)

# Everything already there: nothing to do (keeps CI re-runs fast and offline-safe).
missing=0
for p in "${common[@]}" "${qemu[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing=1
    fi
done
if [[ $missing -eq 0 ]]; then
    echo "install-deps.sh: all packages present"
    exit 0
fi

backports=0
if dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null | grep -q '~bpo12'; then
    backports=1
    list=/etc/apt/sources.list.d/lavabox-bookworm-backports.list
    if ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo 'deb http://deb.debian.org/debian bookworm-backports main' >"$list"
    fi
fi

# apt-get update takes the lists lock, which DPkg::Lock::Timeout does not cover:
# retry while another apt run holds it (bounded: 10 minutes).
for attempt in $(seq 1 120); do
    if apt-get update -o DPkg::Lock::Timeout=600; then
        break
    fi
    if [[ $attempt -eq 120 ]]; then
        echo "install-deps.sh: apt-get update kept failing" >&2
        exit 1
    fi
    echo "install-deps.sh: apt-get update failed (lock held?), retrying" >&2
    sleep 5
done
"${APT_INSTALL[@]}" "${common[@]}"
if [[ $backports -eq 1 ]]; then
    "${APT_INSTALL[@]}" -t bookworm-backports "${qemu[@]}"
else
    "${APT_INSTALL[@]}" "${qemu[@]}"
fi
echo "install-deps.sh: done"
