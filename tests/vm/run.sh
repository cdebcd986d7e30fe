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
#
# Exit: 0 pass, 1 fail, 77 skipped (not root, or no qemu-system-x86_64 / Debian kernel image + headers /
# busybox-static / cpio: `tools/install-deps.sh vm`).
# Environment: CMEMU (tools/cmemu), CMFW (cmfw binary), CMFLASH and CMBOOTROM (--fwload: cmflash and
# cm-bootrom), CC (default cc), VM_TIMEOUT (seconds, default 150), VM_KEEP=1 keeps the scratch directory,
# VM_KVER picks the kernel version.
set -euo pipefail

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$VM_DIR/../.." && pwd)
: "${CMEMU:=$SRC/tools/cmemu}"
: "${CC:=cc}"
: "${VM_TIMEOUT:=150}"
if [[ -n ${CMFW-} ]]; then export CMFW; fi
FWLOAD=0
case ${1-} in
"") ;;
--fwload) FWLOAD=1 ;;
*) echo "usage: $0 [--fwload]" >&2; exit 2 ;;
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
"$CC" -static -O2 -Wall -Wextra -Werror -I"$SRC/hostdriver/include/uapi" -o "$WORK/cm_fwload" "$VM_DIR/cm_fwload.c"

# ---- initramfs: busybox, the module, the test programs, /init
R=$WORK/root
mkdir -p "$R"/{bin,dev,proc,sys,tmp}
cp "$BUSYBOX" "$R/bin/busybox"
cp "$WORK/mod/cm.ko" "$WORK/cm_selftest" "$WORK/cm_fwload" "$R/"
if ((FWLOAD)); then
    # A signing key, the image the card boots from (slot A) and the one the guest loads (another version).
    FLASH=$WORK/flash.bin
    "$CMFLASH" keygen "$WORK/dev" >/dev/null
    "$CMFLASH" build "$CMFW" --key "$WORK/dev.key" -o "$WORK/boot.img" >/dev/null 2>&1
    "$CMFLASH" build "$CMFW" --key "$WORK/dev.key" --version 0.1.1-vm -o "$R/good.img" >/dev/null 2>&1
    "$CMFLASH" write "$WORK/boot.img" --flash "$FLASH" --create --key "$WORK/dev.pub" >/dev/null
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
"$CMEMU" up "$NAME" "${card[@]}" >"$WORK/cmemu.log" 2>&1 ||
    { cat "$WORK/cmemu.log"; echo "FAIL: cmemu up"; exit 1; }
flash_kv() { "$CMFLASH" info "$FLASH" --key "$WORK/dev.pub" --kv | sed -n "s/^$1=//p"; }
# slot_sum SLOT BYTES: SHA-256 of the first BYTES of a flash slot (2 slots of 32 MiB after 64 KiB)
slot_sum() {
    dd if="$FLASH" iflag=skip_bytes,count_bytes skip=$((65536 + $1 * 32 * 1024 * 1024)) count="$2" bs=1M status=none |
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
