#!/usr/bin/env bash
# Boots the amd64 stand-in image (image/build-image.sh standin) in qemu-system-x86_64 under
# TCG, its kernel and initramfs given directly, and checks the appliance from outside through
# port forwards: `lavacli system version`, XML-RPC /RPC2, the web UI (its login page shows the
# first-boot credentials), and a job on the image's virtual board (qemu-virt-01) passes.
# Prints: power-on → /RPC2 answering, lavabox's VmRSS after boot, the job's time.
#   image/boot-check.sh [IMAGE]    (default target/image/lavabox-standin.img)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
img=$(readlink -f "${1:-$here/target/image/lavabox-standin.img}")
dir=$(dirname "$img")
base=${img%.img}
work=$(mktemp -d "${TMPDIR:-/tmp}/lavabox-boot.XXXXXX")
qemu_pid=
cleanup() {
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then kill "$qemu_pid"; wait "$qemu_pid" 2>/dev/null || true; fi
    [ -n "${KEEP_BOOT_DIR:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
log() { echo "boot-check: $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
fail() { log "FAILED: $*"; log "console (last 40 lines):"; tail -n 40 "$work/console.log" >&2 || true; exit 1; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# A throw-away overlay: the image stays as built, the guest's writes (first boot) go here,
# larger than the image so the first boot grows the data partition.
qemu-img create -q -f qcow2 -F raw -b "$img" "$work/disk.qcow2" 2G
http=$(free_port)
ssh_free=$(free_port)
cmdline=$(cat "$base.cmdline" 2>/dev/null || echo "root=LABEL=lavabox-root ro rootwait console=ttyS0,115200 quiet fsck.repair=yes")
powered=$(now)
qemu-system-x86_64 -accel tcg -m 2048 -smp 2 -nographic -nodefaults \
    -kernel "$base.vmlinuz" -initrd "$base.initrd.img" -append "$cmdline" \
    -drive "file=$work/disk.qcow2,if=virtio,format=qcow2" \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$http-:80,hostfwd=tcp:127.0.0.1:$ssh_free-:22" \
    -device virtio-net-pci,netdev=n0 \
    -serial "file:$work/console.log" -monitor none </dev/null &
qemu_pid=$!
log "booting $img (qemu pid $qemu_pid, HTTP on 127.0.0.1:$http)"

# Power-on → /RPC2 answering: the first successful system.version call.
rpc() {
    curl -s -m 5 -H 'Content-Type: text/xml' --data \
        "<?xml version='1.0'?><methodCall><methodName>$1</methodName><params></params></methodCall>" \
        "http://127.0.0.1:$http/RPC2"
}
deadline=$(( $(date +%s) + ${BOOT_TIMEOUT:-300} ))
until rpc system.version 2>/dev/null | grep -q '<string>'; do
    kill -0 "$qemu_pid" 2>/dev/null || fail "QEMU exited"
    [ "$(date +%s)" -lt "$deadline" ] || fail "no /RPC2 answer within ${BOOT_TIMEOUT:-300} s"
    sleep 0.2
done
boot_s=$(since "$powered")
log "power-on → /RPC2 answering: $boot_s s"

# The first-boot credentials the console shows.
token=$(sed -n 's/.*API token *\([^ \r]*\).*/\1/p' "$work/console.log" | head -n 1)
password=$(sed -n 's/.*web UI login *admin \/ *\([^ \r]*\).*/\1/p' "$work/console.log" | head -n 1)
[ -n "$token" ] && [ -n "$password" ] || fail "no first-boot credentials on the console"
grep -q 'hostname lavabox-[0-9a-f]\{4\}' "$work/console.log" || fail "no lavabox-XXXX hostname on the console"
log "first-boot credentials on the console (admin, token ${token:0:6}…)"

uri="http://admin:$token@127.0.0.1:$http/RPC2"
version=$(lavacli --uri "$uri" system version) || fail "lavacli system version"
log "lavacli system version: $version"
rpc system.listMethods | grep -q 'scheduler.jobs.submit' || fail "/RPC2 system.listMethods"
login=$(curl -s -m 10 "http://127.0.0.1:$http/accounts/login") || fail "web UI login page"
grep -q "$password" <<<"$login" || fail "the login page does not show the first-boot password"
curl -s -m 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http/" | grep -q 200 || fail "web UI dashboard"
log "web UI answers; its login page shows the first-boot credentials"

# lavabox's memory after boot, printed on the console once it is ready
# (lavabox-ready-report.service).
rss=$(sed -n 's/.*lavabox: ready on.*VmRSS: *\([0-9]*\) kB.*/\1/p' "$work/console.log" | head -n 1)
up=$(sed -n 's/.*lavabox: ready on.* up \([0-9.]*\) s.*/\1/p' "$work/console.log" | head -n 1)
log "lavabox VmRSS after boot: $(awk -v k="${rss:-0}" 'BEGIN { printf "%.1f", k / 1024 }') MB (guest uptime at READY=1: ${up:-?} s)"
# The health check of the image's device type, submitted as a job to the virtual board.
job=$(lavacli --uri "$uri" jobs submit /dev/stdin <<JOB
$(sed 's/^job_name: .*/job_name: boot-check on the virtual board/' "$here/device-types/health-checks/qemu.yaml")
JOB
) || fail "job submission"
log "job $job submitted to qemu-virt-01"
started=$(now)
job_deadline=$(( $(date +%s) + ${JOB_TIMEOUT:-900} ))
while :; do
    show=$(lavacli --uri "$uri" jobs show "$job") || fail "jobs show"
    state=$(sed -n 's/^state *: *//p' <<<"$show")
    health=$(sed -n 's/^Health *: *//p' <<<"$show")
    [ "$state" = Finished ] && break
    [ "$(date +%s)" -lt "$job_deadline" ] || fail "job $job still $state after ${JOB_TIMEOUT:-900} s"
    sleep 2
done
job_s=$(since "$started")
[ "$health" = Complete ] || { lavacli --uri "$uri" jobs logs "$job" | tail -n 30 >&2; fail "job $job ended $health"; }
results=$(lavacli --uri "$uri" results "$job")
grep -q 'uname.*pass' <<<"$results" || fail "job results: $results"
log "job $job Complete in $job_s s"
echo "boot-check: image $(basename "$img") $(( $(stat -c %s "$img") / 1048576 )) MiB; power-on → /RPC2 $boot_s s (TCG); lavabox VmRSS ${rss:-?} kB; job on the virtual board $job_s s"
