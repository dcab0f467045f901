#!/usr/bin/env bash
# Installs every system package lavabox's build, tests and virtual lab need on Debian 12.
# Idempotent: packages already present are not fetched again. Run as root.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
export DEBIAN_FRONTEND=noninteractive
apt_install() { apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends "$@"; }

apt-get update -q
# Build: a C compiler for rusqlite's bundled SQLite; tests: real clients and tools.
apt_install ca-certificates gcc g++ libc6-dev pkg-config curl cpio busybox python3 python3-yaml
# Real peers and clients for the integration tests: Debian's lavacli, pyzmq (event
# subscriber), an SMTP sink and an IRC server for notifications.
apt_install lavacli python3-zmq python3-aiosmtpd ngircd
# Test definitions from git: the dispatcher runs Debian's git; the tests serve repositories
# with its git daemon and git http-backend (tests/it/testdef.rs).
apt_install git
# SQUAD 1.98 (its LAVA backend is a client tests/it/clients.rs drives) in its own virtualenv
# from PyPI; LAVABOX_SQUAD_PYTHON may point the test at another one.
apt_install python3-venv
squad_venv=/opt/lavabox-tests/squad-venv
if ! "$squad_venv/bin/python3" -c 'import squad' >/dev/null 2>&1; then
    python3 -m venv "$squad_venv"
    "$squad_venv/bin/pip" install -q 'squad==1.98'
fi
# Power peers (tests/it/power.rs): Debian's pdudaemon (localcmdline driver), telnet for the
# console, and pdudaemon's own `pduclient` script, which only its PyPI sdist carries.
apt_install pdudaemon telnet python3-pip
if ! command -v pduclient >/dev/null 2>&1; then
    pdu_tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps --no-binary :all: 'pdudaemon==1.1.1' -d "$pdu_tmp"
    tar -xzf "$pdu_tmp"/pdudaemon-1.1.1.tar.gz -C "$pdu_tmp" pdudaemon-1.1.1/pduclient
    install -m 0755 "$pdu_tmp"/pdudaemon-1.1.1/pduclient /usr/local/bin/pduclient
    rm -rf "$pdu_tmp"
fi
# The lava-lxc protocol: Debian's LXC tools, the debian template (lxc-templates) and
# debootstrap; containers are loopback-only (no lxcbr0 bridge on these machines).
apt_install lxc lxc-templates debootstrap
mkdir -p /etc/lxc
printf '%s\n' '# lavabox: loopback-only containers' 'lxc.net.0.type = empty' \
    'lxc.apparmor.profile = unconfined' > /etc/lxc/default.conf
# The web UI's end-to-end tests: Debian's headless Chromium driven through chromedriver.
apt_install chromium chromium-driver
# The virtual QEMU lab (U-Boot ARM board and x86 board).
if [ -x "$here/lab/install-deps.sh" ]; then
    "$here/lab/install-deps.sh"
fi
# LAVA 2023.01's own validation code, unpacked (not installed), for the differential tests.
sh "$here/tests/install-lava-reference.sh"
# A Rust toolchain: rustup's if present, else Debian's rustc-web/cargo-web (1.96, bookworm-security).
if ! command -v cargo >/dev/null 2>&1; then
    apt_install rustc-web cargo-web
fi
