#!/usr/bin/env bash
# The host driver in a real Linux kernel: boots Debian's kernel under QEMU (-accel tcg) with the emulated
# card's bus memory as an ivshmem-plain PCI device, loads hostdriver/cm.ko in a busybox initramfs and runs
# the scenario there (tests/vm/init.sh: the driver's self-test cm_selftest.c, dmesg checks, unload).
# The guest prints PASS/FAIL lines on its serial console; this script parses them.
#
#   run.sh            the card runs cmfw directly (no flash): CM_IOC_FW_LOAD is EOPNOTSUPP
#   run.sh --fwload   the card boots from a flash through the boot ROM (cmemu up --flash), so its bus has a
#                     firmware-load window: the guest loads images through /dev/cm0 (tests/vm/cm_fwload.c),
#                     then this script checks the flash (only the good image was written, into slot B, on
#                     trial) and resets the card, which must boot the loaded image from slot B.
#   run.sh --httpd    the card runs its HTTP proxy (cmfw --proxy-http 80) and lends queue pairs to the VM;
#                     the guest runs cm-httpd (static, libcm over /dev/cm0) and this script is its client:
#                     curl and wrk from the card's client namespace, bodies checked by SHA-256; then the
#                     guest's server is killed with a large response in flight and a new one started, which
#                     must serve again (the driver released the queue pair, the card reset and re-lent it).
#                     Last, the same cm-httpd on this host over the emulator backend, for comparison.
#                     Host and guest synchronise over a second serial port (a QEMU pipe): the guest
#                     prints "VM: httpd ready N" on the console, this script answers "kill" or "done".
#   run.sh --httpd-msix  the same with the card behind QEMU's ivshmem-doorbell instead of ivshmem-plain:
#                     QEMU connects to the card's attach socket (cmfw speaks the ivshmem-server protocol),
#                     the card's notifications are MSI-X interrupts in the guest (no polling timer), and the
#                     guest's doorbells (CM_IOC_DOORBELL) wake the card, which then does not poll the rings
#                     (its bus.memory_peer_polls must stay low while wrk runs).
#   run.sh --garbage  garbage in the bus memory from this side while the driver is bound (tests/vm/cm_garbage.c):
#                     random ring indices in an attached queue pair, then random bytes over the control
#                     block's magic, sizes and offsets; the driver must refuse them (EIO, EPOLLERR, EPROTO on
#                     CM_IOC_RESET), count them, never oops, and work again once the card's control block
#                     is back (written back as the card does when it formats) and CM_IOC_RESET re-reads it.
#
# Exit: 0 pass, 1 fail, 77 skipped (not root, or no qemu-system-x86_64 / Debian kernel image + headers /
# busybox-static / cpio: `tools/install-deps.sh vm`).
# Environment: CMEMU (tools/cmemu), CMFW (cmfw binary), CMFLASH and CMBOOTROM (--fwload: cmflash and
# cm-bootrom), CMHTTPD_STATIC and CMHTTPD (--httpd: cm-httpd-static for the guest, cm-httpd for the host
# comparison; default under build/tools), CC (default cc), VM_TIMEOUT (seconds, default 150), VM_KEEP=1 keeps the scratch directory,
# VM_KVER picks the kernel version.
set -euo pipefail

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$VM_DIR/../.." && pwd)
: "${CMEMU:=$SRC/tools/cmemu}"
: "${CC:=cc}"
: "${VM_TIMEOUT:=150}"
if [[ -n ${CMFW-} ]]; then export CMFW; fi
FWLOAD=0
HTTPD=0
MSIX=0
GARBAGE=0
case ${1-} in
"") ;;
--fwload) FWLOAD=1 ;;
--httpd) HTTPD=1 ;;
--httpd-msix) HTTPD=1 MSIX=1 ;;
--garbage) GARBAGE=1 ;;
*) echo "usage: $0 [--fwload|--httpd|--httpd-msix|--garbage]" >&2; exit 2 ;;
esac

skip() { echo "SKIP: $*"; exit 77; }

[[ $(id -u) -eq 0 ]] || skip "needs root (cmemu)"
command -v qemu-system-x86_64 >/dev/null || skip "no qemu-system-x86_64 (tools/install-deps.sh vm)"
command -v cpio >/dev/null || skip "no cpio"
BUSYBOX=$(command -v busybox || true)
[[ -n $BUSYBOX ]] && file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' || BUSYBOX=/bin/busybox
[[ -x $BUSYBOX ]] || skip "no busybox (busybox-static)"
# A kernel we can both boot and build for: /boot/vmlinuz-V with /lib/modules/V/build.
KVER=${VM_KVER-}
if [[ -z $KVER ]]; then
    for k in $(ls -1 /boot/vmlinuz-* 2>/dev/null | sed 's|/boot/vmlinuz-||' | sort -V -r); do
        if [[ -d /lib/modules/$k/build ]]; then KVER=$k; break; fi
    done
fi
[[ -n $KVER && -r /boot/vmlinuz-$KVER && -d /lib/modules/$KVER/build ]] ||
    skip "no kernel image with headers (linux-image-amd64 linux-headers-amd64)"
if ((FWLOAD)); then
    : "${CMFLASH:=$SRC/build/tools/flash/cmflash}" "${CMBOOTROM:=$SRC/build/tools/flash/cm-bootrom}"
    : "${CMFW:=$SRC/build/firmware/app/cmfw}"
    for tool in CMFLASH CMBOOTROM CMFW; do
        [[ -x ${!tool} ]] || { echo "FAIL: --fwload: $tool not executable: ${!tool}"; exit 1; }
    done
fi

if ((HTTPD)); then
    : "${CMHTTPD_STATIC:=$SRC/build/tools/cm-httpd-static}" "${CMHTTPD:=$SRC/build/tools/cm-httpd}"
    [[ -x $CMHTTPD_STATIC ]] || { echo "FAIL: --httpd: CMHTTPD_STATIC not executable: $CMHTTPD_STATIC"; exit 1; }
    file -L "$CMHTTPD_STATIC" | grep -q 'statically linked' || { echo "FAIL: $CMHTTPD_STATIC is not static"; exit 1; }
    command -v curl >/dev/null || skip "no curl"
fi

NAME=vm$$
FLASH=""
host_passes=0
host_fails=0
host_check() { # host_check NAME COMMAND...: a check on the host side, counted with the guest's
    local name=$1
    shift
    if "$@"; then
        echo "PASS host: $name"
        host_passes=$((host_passes + 1))
    else
        echo "FAIL host: $name"
        host_fails=$((host_fails + 1))
    fi
}
eq() { [[ $1 == "$2" ]] || { echo "#   got '$1', want '$2'"; return 1; }; }
WORK=$(mktemp -d /tmp/cm-vm.XXXXXX)
QEMU_PID=""
HOST_HTTPD_PID=""
cleanup() {
    local rc=$?
    if [[ -n $HOST_HTTPD_PID ]]; then kill -9 "$HOST_HTTPD_PID" 2>/dev/null || true; wait "$HOST_HTTPD_PID" 2>/dev/null || true; fi
    exec 9>&- 2>/dev/null || true
    if [[ -n $QEMU_PID ]] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill "$QEMU_PID" 2>/dev/null || true
        sleep 0.5
        kill -9 "$QEMU_PID" 2>/dev/null || true
        wait "$QEMU_PID" 2>/dev/null || true
    fi
    "$CMEMU" down "$NAME" >/dev/null 2>&1 || true
    if [[ ${VM_KEEP-0} == 1 ]]; then echo "scratch kept: $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

t0=$(date +%s.%N)
# ---- build: the module against the guest kernel's headers (in our scratch dir), the static test programs
make -s -C "$SRC" -f Makefile.kbuild dkms-tree DKMS_DIR="$WORK/mod" >/dev/null
if ! make -s -C "/lib/modules/$KVER/build" M="$WORK/mod" W=1 modules >"$WORK/kbuild.log" 2>&1; then
    cat "$WORK/kbuild.log"; echo "FAIL: module build"; exit 1
fi
if grep -qi 'warning:' "$WORK/kbuild.log"; then cat "$WORK/kbuild.log"; echo "FAIL: module build warnings"; exit 1; fi
"$CC" -static -O2 -Wall -Wextra -Werror -I"$SRC/hostdriver/include/uapi" -I"$SRC/libcm/include" \
    -o "$WORK/cm_selftest" "$VM_DIR/cm_selftest.c"
"$CC" -static -O2 -Wall -Wextra -Werror -I"$SRC/hostdriver/include/uapi" -o "$WORK/cm_fwload" "$VM_DIR/cm_fwload.c"
for prog in cm_reload cm_garbage; do
    "$CC" -static -O2 -Wall -Wextra -Werror -I"$SRC/hostdriver/include/uapi" -I"$SRC/libcm/include" \
        -o "$WORK/$prog" "$VM_DIR/$prog.c"
done

# ---- initramfs: busybox, the module, the test programs, /init
R=$WORK/root
mkdir -p "$R"/{bin,dev,proc,sys,tmp}
cp "$BUSYBOX" "$R/bin/busybox"
cp "$WORK/mod/cm.ko" "$WORK/cm_selftest" "$WORK/cm_fwload" "$WORK/cm_reload" "$WORK/cm_garbage" "$R/"
if ((HTTPD)); then strip -o "$R/cm-httpd" "$CMHTTPD_STATIC"; fi
if ((FWLOAD)); then
    # A signing key, the image the card boots from (slot A) and the one the guest loads (another version).
    FLASH=$WORK/flash.bin
    "$CMFLASH" keygen "$WORK/dev" >/dev/null
    # Stripped, as an image would be: the sanitizer build's cmfw is over 40 MB with its debug information.
    # 32 MiB slots: init.sh's "larger than a slot" image is 32 MiB + 1.
    strip -o "$WORK/cmfw" "$CMFW"
    "$CMFLASH" build "$WORK/cmfw" --key "$WORK/dev.key" -o "$WORK/boot.img" >/dev/null 2>&1
    "$CMFLASH" build "$WORK/cmfw" --key "$WORK/dev.key" --version 0.1.1-vm -o "$R/good.img" >/dev/null 2>&1
    "$CMFLASH" write "$WORK/boot.img" --flash "$FLASH" --create --slot-size 32 --key "$WORK/dev.pub" >/dev/null
    GOOD_SIZE=$(stat -c %s "$R/good.img")
    GOOD_BUILD_ID=$("$CMFLASH" info "$R/good.img" --kv | sed -n 's/^build_id=//p')
fi
cp "$VM_DIR/init.sh" "$R/init"
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1 >"$WORK/initrd.gz")

# ---- the card: cmfw with the echo service, lending 4 queue pairs to the VM's driver (--fwload: booted by
# the boot ROM from slot A of the flash)
card=(--bus-size 64 --fw-arg --bus-echo --fw-arg --bus-memory-peer-qps --fw-arg 4)
if ((FWLOAD)); then card+=(--flash "$FLASH" --boot-key "$WORK/dev.pub" --bootrom "$CMBOOTROM"); fi
# --httpd: the card's HTTP proxy on port 80 in front of the bus port 80, 2 queue pairs lent to the VM
if ((HTTPD)); then card=(--bus-size 64 --fw-arg --proxy-http --fw-arg 80 --fw-arg --bus-memory-peer-qps --fw-arg 2); fi
"$CMEMU" up "$NAME" "${card[@]}" >"$WORK/cmemu.log" 2>&1 ||
    { cat "$WORK/cmemu.log"; echo "FAIL: cmemu up"; exit 1; }
flash_kv() { "$CMFLASH" info "$FLASH" --key "$WORK/dev.pub" --kv | sed -n "s/^$1=//p"; }
# slot_sum SLOT BYTES: SHA-256 of the first BYTES of a flash slot (2 slots after 64 KiB; docs/image.md)
slot_sum() {
    dd if="$FLASH" iflag=skip_bytes,count_bytes skip=$((65536 + $1 * (($(stat -c %s "$FLASH") - 65536) / 2))) count="$2" bs=1M status=none |
        sha256sum | cut -d' ' -f1
}
if ((FWLOAD)); then
    # slot A must have confirmed its boot, or every load is refused (EBUSY: the running slot on trial)
    for _ in $(seq 100); do [[ $(flash_kv slot_a_state) == confirmed ]] && break; sleep 0.1; done
    host_check "the card booted slot A of the flash and confirmed it" eq "$(flash_kv slot_a_state)" confirmed
    GEN_BEFORE=$(flash_kv generation)
    SLOT_A_SUM=$(slot_sum 0 "$(stat -c %s "$WORK/boot.img")")
fi
MEM=$("$CMEMU" status "$NAME" | sed -n 's/^bus_memory=//p')
[[ -f $MEM ]] || { echo "FAIL: no bus memory ($MEM)"; exit 1; }
for _ in $(seq 50); do   # formatted: magic "MBUS" at 0, fw_state READY (2) at 20
    [[ $(od -An -tx4 -N4 "$MEM" | tr -d ' ') == 5355424d && $(od -An -tu4 -j20 -N4 "$MEM" | tr -d ' ') == 2 ]] && break
    sleep 0.1
done
FW_VERSION=$(od -An -tu4 -j32 -N4 "$MEM" | tr -d ' ')
SIZE=$(stat -c %s "$MEM")
# a second ivshmem device that is not cm's (zeros): the driver must leave it alone
truncate -s 1M "$WORK/other-ivshmem"
t_build=$(date +%s.%N)

# ---- --httpd: the client side, while the VM runs
CARD_IP=198.18.0.2
in_client() { "$CMEMU" exec "$NAME" client -- "$@"; }
# wait_console TEXT SECONDS: the guest printed TEXT on its console
wait_console() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        tr -d '\r' <"$WORK/console.log" | grep -qF -- "$1" && return 0
        kill -0 "$QEMU_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
guest() { printf '%s\n' "$1" >&9; }   # a command line on the guest's ttyS1
pattern_sha() { # sha256 of cm-httpd's /bytes/N body ("0123456789abcdef" repeated)
    python3 -c 'import hashlib, sys
n = int(sys.argv[1]); h = hashlib.sha256(); block = b"0123456789abcdef" * 65536
while n > 0:
    h.update(block[:min(n, len(block))]); n -= len(block)
print(h.hexdigest())' "$1"
}
url_sha() { # url_sha PATH: sha256 of the body curl got from the card (or curl's error)
    local out
    out=$(in_client curl -sS --max-time 60 -o "$WORK/body" "http://$CARD_IP$1" 2>&1) || { echo "curl-failed: $out"; return 0; }
    sha256sum "$WORK/body" | cut -d' ' -f1
}
# measure LABEL: curl latency (median of 20 GET / on a new connection each) and wrk -t1 -c16 -d3s
measure() {
    local times out rps lat
    times=$(for _ in $(seq 20); do in_client curl -sS -o /dev/null -w '%{time_total}\n' "http://$CARD_IP/" 2>/dev/null; done | sort -n)
    echo "# $1: curl GET / median $(sed -n 10p <<<"$times") s (min $(head -n1 <<<"$times"), max $(tail -n1 <<<"$times"))"
    if command -v wrk >/dev/null; then
        out=$(in_client wrk -t1 -c16 -d3s "http://$CARD_IP/" 2>&1)
        sed 's/^/#   /' <<<"$out"
        rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' <<<"$out")
        lat=$(awk '$1 == "Latency" { print $2; exit }' <<<"$out")
        echo "# $1: wrk -t1 -c16 -d3s: ${rps:-?} requests/s, latency avg ${lat:-?}"
        host_check "$1: wrk served requests" test -n "${rps:-}"
        host_check "$1: wrk: no socket errors, no non-2xx" bash -c '! grep -qE "Socket errors|Non-2xx" <<<"$1"' _ "$out"
    fi
}
qp_dump() { # the memory peer's queue pair headers in the bus memory (diagnostics)
    python3 - "$MEM" <<'PY'
import struct, sys
m = open(sys.argv[1], "rb").read()
qp_count, qp_offset, qp_stride = struct.unpack_from("<I", m, 36)[0], struct.unpack_from("<Q", m, 40)[0], struct.unpack_from("<I", m, 48)[0]
for q in range(qp_count):
    b = qp_offset + q * qp_stride
    state, owner, gen, fault = struct.unpack_from("<4I", m, b)
    if owner != 0x7fffffff:
        continue
    sq_prod, = struct.unpack_from("<I", m, b + 64); sq_cons, cnw = struct.unpack_from("<2I", m, b + 128)
    eq_prod, = struct.unpack_from("<I", m, b + 192); eq_cons, hnw = struct.unpack_from("<2I", m, b + 256)
    hf, pid, rel = struct.unpack_from("<3I", m, b + 320)
    print(f"# qp {q}: state {state} gen {gen} fault {fault} sq {sq_prod}/{sq_cons} card_need_wakeup {cnw} "
          f"eq {eq_prod}/{eq_cons} host_need_wakeup {hnw} host_fault {hf} host_pid {pid} release_req {rel}")
PY
}
card_counter() { "$CMEMU" counters "$NAME" 2>/dev/null | awk -v k="$1" '$1 == k { print $2 }'; }
httpd_host_steps() {
    if ! wait_console "VM: httpd ready 1" 120; then
        host_check "the guest's cm-httpd became ready" false
        return 0
    fi
    local big=$((2 * 1024 * 1024)) rc
    host_check "GET / through the card to the VM's cm-httpd" eq "$(url_sha /)" "$(pattern_sha 1024)"
    host_check "GET /bytes/$big byte-exact" eq "$(url_sha "/bytes/$big")" "$(pattern_sha $big)"
    head -c 3000000 /dev/urandom >"$WORK/upload.bin"
    host_check "POST /sha256 (3 MB) hashed by the guest byte-exact" \
        eq "$(in_client curl -sS --max-time 60 --data-binary "@$WORK/upload.bin" "http://$CARD_IP/sha256" 2>&1)" \
        "$(sha256sum "$WORK/upload.bin" | cut -d' ' -f1)"
    local polls0 polls1 rung0 rung1
    polls0=$(card_counter bus.memory_peer_polls) rung0=$(card_counter bus.memory_peer_doorbells)
    measure "VM (card -> ivshmem -> /dev/cm0)"
    polls1=$(card_counter bus.memory_peer_polls) rung1=$(card_counter bus.memory_peer_doorbells)
    echo "# card: while measuring: bus.memory_peer_polls +$((polls1 - polls0)), bus.memory_peer_doorbells +$((rung1 - rung0))"
    if ((MSIX)); then
        # the guest rings (CM_IOC_DOORBELL): the card sleeps until then instead of polling every 100 us
        host_check "the guest rang the card's doorbells (+$((rung1 - rung0)))" test $((rung1 - rung0)) -gt 0
        host_check "the card did not poll the memory peer's rings while serving (+$((polls1 - polls0)) polls)" \
            test $((polls1 - polls0)) -lt 100
    fi
    # Robustness: a large response in flight when the guest's server is killed.
    in_client curl -sS --max-time 60 -o "$WORK/cut.bin" "http://$CARD_IP/bytes/500000000" >"$WORK/cut.log" 2>&1 &
    local curl_pid=$! i
    for ((i = 0; i < 100; i++)); do [[ -s $WORK/cut.bin ]] && break; sleep 0.1; done
    host_check "a large response was in flight" test -s "$WORK/cut.bin"
    [[ -s $WORK/cut.bin ]] || { head -c 300 "$WORK/cut.log"; qp_dump; "$CMEMU" counters "$NAME" | grep -E '^(bus|proxy)\.' | sed 's/^/# card: /'; }
    guest kill
    rc=0
    wait "$curl_pid" || rc=$?
    host_check "the client of the killed server got an error, not a hang (curl exit $rc, $(stat -c %s "$WORK/cut.bin") bytes)" \
        test "$rc" -ne 0
    if ! wait_console "VM: httpd ready 2" 60; then
        host_check "the guest's second cm-httpd became ready" false
        guest done
        return 0
    fi
    host_check "after the kill: GET /bytes/$big byte-exact from the new server" eq "$(url_sha "/bytes/$big")" "$(pattern_sha $big)"
    host_check "after the kill: POST /sha256 byte-exact" \
        eq "$(in_client curl -sS --max-time 60 --data-binary "@$WORK/upload.bin" "http://$CARD_IP/sha256" 2>&1)" \
        "$(sha256sum "$WORK/upload.bin" | cut -d' ' -f1)"
    host_check "the card released and re-lent the queue pair (bus.qp_released >= 1)" test "$(card_counter bus.qp_released)" -ge 1
    "$CMEMU" counters "$NAME" 2>/dev/null | grep -E '^(bus\.(qp_released|qp_in_use|conns_reclaimed|doorbells|notifications|memory_peer_polls|memory_peer_doorbells)|proxy\.(requests|responses_cut|bus_open|errors_502|bus_lost)) ' | sed 's/^/# card: /' || true
    guest done
}

# ---- --garbage: this side of tests/vm/cm_garbage.c
garbage() { # garbage indices QP | ctrl | restore: writes into the bus file the VM maps
    python3 - "$MEM" "$WORK/ctrl.saved" "$@" <<'PY'
import os, struct, sys
mem, saved, what = sys.argv[1], sys.argv[2], sys.argv[3]
with open(mem, "r+b") as f:
    if what == "indices":
        qp = int(sys.argv[4])
        f.seek(36); qp_count, = struct.unpack("<I", f.read(4))
        qp_offset, qp_stride = struct.unpack("<QI", (f.seek(40), f.read(12))[1])
        base = qp_offset + qp * qp_stride
        for off in (64, 192, 256):         # sq_prod, eq_prod, eq_cons
            f.seek(base + off); f.write(os.urandom(4))
    elif what == "ctrl":
        f.seek(0); block = f.read(4096)
        open(saved, "wb").write(block)
        f.seek(0); f.write(os.urandom(64))  # magic, versions, sizes, offsets, counts
    elif what == "restore":
        block = open(saved, "rb").read()
        f.seek(0); f.write(block[:64])      # the card's own values (the rest it kept writing itself)
PY
}
garbage_host_steps() {
    local step
    for step in indices ctrl restore; do
        if ! wait_console "VM: garbage $step" 60; then
            host_check "the guest reached step '$step'" false
            return 0
        fi
        if [[ $step == indices ]]; then
            garbage indices "$(tr -d '\r' <"$WORK/console.log" | sed -n 's/^VM: garbage indices //p')"
        else
            garbage "$step"
        fi
        guest "$step"
    done
}

# ---- boot (--httpd: a second serial port, ttyS1 in the guest, is a pipe for this script's commands)
extra=()
mode=selftest
card_dev=(-object memory-backend-file,id=m,share=on,mem-path="$MEM",size="$SIZE" -device ivshmem-plain,memdev=m)
if ((HTTPD || GARBAGE)); then
    mkfifo "$WORK/ctl.in" "$WORK/ctl.out"
    extra=(-serial "pipe:$WORK/ctl")
    mode=httpd
    ((GARBAGE)) && mode=garbage
fi
if ((MSIX)); then
    # ivshmem-doorbell: the memory and one eventfd per vector (= queue pair) both ways from the attach socket
    BUS_SOCKET=$("$CMEMU" status "$NAME" | sed -n 's/^bus_socket=//p')
    card_dev=(-chardev "socket,path=$BUS_SOCKET,id=cmbus" -device "ivshmem-doorbell,chardev=cmbus,vectors=${VM_VECTORS:-16}")
fi
timeout -k 5 "$VM_TIMEOUT" qemu-system-x86_64 -accel "${VM_ACCEL:-tcg}" -m 512 -smp "${VM_SMP:-1}" -nographic -no-reboot \
    -kernel "/boot/vmlinuz-$KVER" -initrd "$WORK/initrd.gz" \
    -append "console=ttyS0 quiet panic=-1 cm_expect_fw=$FW_VERSION cm_mode=$mode cm_poll_us=${VM_POLL_US:-200}" \
    "${card_dev[@]}" \
    -object memory-backend-file,id=o,share=on,mem-path="$WORK/other-ivshmem",size=1M -device ivshmem-plain,memdev=o \
    -net none -monitor none -serial stdio "${extra[@]}" </dev/null >"$WORK/console.log" 2>&1 &
QEMU_PID=$!
if ((HTTPD || GARBAGE)); then
    exec 9<>"$WORK/ctl.in"   # kept open: the guest's reads never see end of file
    exec 8<>"$WORK/ctl.out"  # drained by nobody, opened so QEMU never blocks on it
    if ((HTTPD)); then httpd_host_steps; else garbage_host_steps; fi
fi
rc=0
wait "$QEMU_PID" || rc=$?
QEMU_PID=""
t_end=$(date +%s.%N)
tr -d '\r' <"$WORK/console.log" >"$WORK/console.txt"
grep -E '^(PASS|FAIL|INFO|COUNTERS|SELFTEST|DMESG|VM:|HTTPD)' "$WORK/console.txt" || true

if ((HTTPD)) && grep -q '^VM: done' "$WORK/console.txt"; then
    irqs=$(sed -n 's/^INFO cm0 interrupts //p' "$WORK/console.txt")
    if ((MSIX)); then
        host_check "the driver took the card's MSI-X vectors" grep -q 'queue pairs, MSI-X$' "$WORK/console.txt"
        host_check "the card's notifications arrived as interrupts ($irqs)" test "${irqs:-0}" -gt 0
    else
        host_check "the driver polls (ivshmem-plain has no interrupts)" grep -q 'queue pairs, polling$' "$WORK/console.txt"
    fi
    # The same cm-httpd on this host over the emulator backend (the card's attach socket), same card.
    if [[ -x $CMHTTPD ]]; then
        "$CMHTTPD" --backend cm --device "$("$CMEMU" status "$NAME" | sed -n 's/^bus_socket=//p')" --port 80 --body-size 1024 \
            --ready-file "$WORK/host.ready" --quiet >"$WORK/host-httpd.log" 2>&1 &
        HOST_HTTPD_PID=$!
        for _ in $(seq 100); do [[ -s $WORK/host.ready ]] && break; sleep 0.1; done
        host_check "host cm-httpd (emulator backend): GET /bytes/2097152 byte-exact" \
            eq "$(url_sha /bytes/2097152)" "$(pattern_sha 2097152)"
        measure "host (card -> attach socket, emulator backend)"
        kill "$HOST_HTTPD_PID" 2>/dev/null || true
        wait "$HOST_HTTPD_PID" 2>/dev/null || true
        HOST_HTTPD_PID=""
    else
        echo "# no host cm-httpd ($CMHTTPD): comparison skipped"
    fi
fi

if ((FWLOAD)) && grep -q '^VM: done' "$WORK/console.txt"; then
    # What the guest's loads did to the flash: the refused ones nothing, the good one slot B, on trial.
    host_check "flash: only the good image was written (metadata generation +2)" \
        eq "$(flash_kv generation)" "$((GEN_BEFORE + 2))"
    host_check "flash: slot B on trial" eq "$(flash_kv slot_b_state)" trial
    host_check "flash: slot B holds the loaded image's build id" eq "$(flash_kv slot_b_build_id)" "$GOOD_BUILD_ID"
    host_check "flash: slot B holds the loaded image's version" eq "$(flash_kv slot_b_version)" 0.1.1-vm
    host_check "flash: slot B's image verifies (signature)" eq "$(flash_kv slot_b_verdict)" ok
    host_check "flash: slot B is byte for byte the image" \
        eq "$(slot_sum 1 "$GOOD_SIZE")" "$(sha256sum "$R/good.img" | cut -d' ' -f1)"
    host_check "flash: running slot A untouched and still confirmed" \
        eq "$(flash_kv slot_a_state) $(slot_sum 0 "$(stat -c %s "$WORK/boot.img")")" "confirmed $SLOT_A_SUM"
    "$CMFLASH" info "$FLASH" --key "$WORK/dev.pub" | sed 's/^/#   /'
    # The card's next boot runs what the driver loaded.
    t_reset=$(date +%s.%N)
    if "$CMEMU" reset "$NAME" >"$WORK/reset.log" 2>&1; then
        for _ in $(seq 100); do [[ $(flash_kv slot_b_state) == confirmed ]] && break; sleep 0.1; done
        st=$("$CMEMU" status "$NAME" || true)
        host_check "after a reset the card runs the loaded image from slot B" \
            eq "$(sed -n 's/^fw_slot=//p' <<<"$st") $(sed -n 's/^fw_version=//p' <<<"$st")" "B 0.1.1-vm"
        host_check "flash: slot B confirmed its boot" eq "$(flash_kv slot_b_state)" confirmed
    else
        cat "$WORK/reset.log"
        host_check "cmemu reset" false
    fi
    printf 'vm: card reset and boot of the loaded image %.1f s\n' "$(echo "$(date +%s.%N) - $t_reset" | bc)"
    grep -E 'fwload:' "$("$CMEMU" status "$NAME" | sed -n 's/^log=//p')" | sed 's/^/# card: /' || true
fi
fails=$(($(grep -c '^FAIL' "$WORK/console.txt" || true) + host_fails))
passes=$(($(grep -c '^PASS' "$WORK/console.txt" || true) + host_passes))
printf 'vm: build+card %.1f s, boot+scenario %.1f s (qemu exit %d, kernel %s)\n' \
    "$(echo "$t_build - $t0" | bc)" "$(echo "$t_end - $t_build" | bc)" "$rc" "$KVER"
if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "--- console (timed out after ${VM_TIMEOUT}s) ---"; tail -n 40 "$WORK/console.txt"; echo "FAIL: timeout"; exit 1
fi
if ! grep -q '^VM: done' "$WORK/console.txt"; then
    echo "--- console ---"; tail -n 60 "$WORK/console.txt"; echo "FAIL: the scenario did not finish"; exit 1
fi
if [[ $fails -ne 0 || $passes -eq 0 ]]; then
    echo "--- console ---"; tail -n 60 "$WORK/console.txt"; echo "FAIL: $fails failed, $passes passed"; exit 1
fi
echo "vm: PASS ($passes checks)"
