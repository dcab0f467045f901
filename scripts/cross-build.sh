#!/usr/bin/env bash
# Cross-builds lavabox for the Raspberry Pi (aarch64-unknown-linux-gnu) with Debian's Rust 1.96,
# so no dependency that cannot reach the Pi slips in. Recipe: shared/reference/appliance-build.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    apt-get update -q
fi
apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends \
    gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross rustc-web cargo-web libstd-rust-web-dev:arm64
# rustup's cargo comes first on PATH; the cross build needs Debian's, which has the arm64 std.
export PATH=/usr/bin:$PATH RUSTC=/usr/bin/rustc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
# libzmq (vendored by zmq-sys) is C++.
export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cross}
# CI only needs to prove the crate compiles and links for the Pi: CROSS_PROFILE=dev skips the
# slow optimised build. The appliance image uses the default, release.
profile=${CROSS_PROFILE:-release}
/usr/bin/cargo build --locked --profile "$profile" --target aarch64-unknown-linux-gnu "$@"
dir=$profile
[ "$profile" = dev ] && dir=debug
bin="$CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/$dir/lavabox"
file "$bin" 2>/dev/null || true
printf 'aarch64 binary: %s (%s bytes)\n' "$bin" "$(stat -c %s "$bin")"
