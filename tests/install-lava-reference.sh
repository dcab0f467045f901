#!/bin/sh
# Installs LAVA 2023.01's own Python validation code (Debian bookworm packages lava-common and
# lava-server, unpacked, not installed) plus the two Python libraries it needs, for the
# differential test in tests/it/validate.rs (tests/lava_schema_check.py).
#
#   sh tests/install-lava-reference.sh            # unpacks into /opt/lava-reference
#   LAVA_REFERENCE_DIR=/somewhere sh tests/install-lava-reference.sh
#
# The test looks in $LAVA_REFERENCE_ROOT, default /opt/lava-reference/usr/lib/python3/dist-packages.
set -eu
dest=${LAVA_REFERENCE_DIR:-/opt/lava-reference}
version=2023.01

if [ -d "$dest/usr/lib/python3/dist-packages/lava_common/schemas" ]; then
    echo "LAVA reference already in $dest"
    exit 0
fi
apt-get update -o DPkg::Lock::Timeout=600 >/dev/null
apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends python3-yaml python3-voluptuous
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
chmod 777 "$work"
apt-get download lava-common lava-server
for deb in lava-common_*.deb lava-server_*.deb; do
    case "$deb" in
        *_"$version"*) ;;
        *) echo "warning: $deb is not LAVA $version; the differential check expects $version" >&2 ;;
    esac
    dpkg -x "$deb" "$dest"
done
echo "LAVA reference unpacked into $dest"
