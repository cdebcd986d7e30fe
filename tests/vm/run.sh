#!/usr/bin/env bash
# The host driver in a real Linux kernel: boots Debian's kernel under QEMU (-accel tcg) with the emulated
# card's bus memory as an ivshmem-plain PCI device, loads hostdriver/cm.ko in a busybox initramfs and runs
# the scenario there (tests/vm/init.sh: the driver's self-test cm_selftest.c, dmesg checks, unload).
# The guest prints PASS/FAIL lines on its serial console; this script parses them.
#
# Exit: 0 pass, 1 fail, 77 skipped (not root, or no qemu-system-x86_64 / Debian kernel image + headers /
# busybox-static / cpio: `tools/install-deps.sh vm`).
# Environment: CMEMU (tools/cmemu), CMFW (cmfw binary), CC (default cc), VM_TIMEOUT (seconds, default 150),
# VM_KEEP=1 keeps the scratch directory, VM_KVER picks the kernel version.
set -euo pipefail

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$VM_DIR/../.." && pwd)
: "${CMEMU:=$SRC/tools/cmemu}"
: "${CC:=cc}"
: "${VM_TIMEOUT:=150}"
if [[ -n ${CMFW-} ]]; then export CMFW; fi

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

NAME=vm$$
WORK=$(mktemp -d /tmp/cm-vm.XXXXXX)
QEMU_PID=""
cleanup() {
    local rc=$?
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

# ---- initramfs: busybox, the module, the test programs, /init
R=$WORK/root
mkdir -p "$R"/{bin,dev,proc,sys,tmp}
cp "$BUSYBOX" "$R/bin/busybox"
cp "$WORK/mod/cm.ko" "$WORK/cm_selftest" "$R/"
cp "$VM_DIR/init.sh" "$R/init"
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1 >"$WORK/initrd.gz")

# ---- the card: cmfw with the echo service, lending 4 queue pairs to the VM's driver
"$CMEMU" up "$NAME" --bus-size 64 --fw-arg --bus-echo --fw-arg --bus-memory-peer-qps --fw-arg 4 >"$WORK/cmemu.log" 2>&1 ||
    { cat "$WORK/cmemu.log"; echo "FAIL: cmemu up"; exit 1; }
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

# ---- boot
timeout -k 5 "$VM_TIMEOUT" qemu-system-x86_64 -accel tcg -m 512 -smp 1 -nographic -no-reboot \
    -kernel "/boot/vmlinuz-$KVER" -initrd "$WORK/initrd.gz" \
    -append "console=ttyS0 quiet panic=-1 cm_expect_fw=$FW_VERSION" \
    -object memory-backend-file,id=m,share=on,mem-path="$MEM",size="$SIZE" -device ivshmem-plain,memdev=m \
    -object memory-backend-file,id=o,share=on,mem-path="$WORK/other-ivshmem",size=1M -device ivshmem-plain,memdev=o \
    -net none -monitor none -serial stdio </dev/null >"$WORK/console.log" 2>&1 &
QEMU_PID=$!
rc=0
wait "$QEMU_PID" || rc=$?
QEMU_PID=""
t_end=$(date +%s.%N)
tr -d '\r' <"$WORK/console.log" >"$WORK/console.txt"
grep -E '^(PASS|FAIL|INFO|COUNTERS|SELFTEST|DMESG|VM:)' "$WORK/console.txt" || true

fails=$(grep -c '^FAIL' "$WORK/console.txt" || true)
passes=$(grep -c '^PASS' "$WORK/console.txt" || true)
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
