#!/usr/bin/env bash
# Firmware images, flash and boot ROM with native x86-64 images (docs/image.md):
#  - cmflash refuses, with a clear message and the flash file unchanged: a corrupt payload, a truncated
#    image, a wrong and an unknown architecture, a bad signature (another key; a header edited after
#    signing) and an unknown format version; `cmflash info` says the same of each;
#  - the boot ROM boots slot A, which confirms; an image written while the card runs goes to slot B;
#  - a firmware that exits at start is rolled back after a reset, and the previous version serves again;
#  - a trial that never confirms is rolled back at the deadline (and the flash survives a power cycle);
#  - the boot ROM refuses a slot whose bytes rotted in flash and boots the other.
source "$(dirname "$0")/lib.sh"
itest_init boot_flash
for tool in CMFLASH CMBOOTROM CMFW_EXIT_AT_START CMFW; do
    [[ -x ${!tool-} ]] || fail "$tool not set or not executable: ${!tool-}"
done
export CMBOOTROM
T=$ITEST_TMP
FLASH=$T/flash.bin

flash_kv() { "$CMFLASH" info "$FLASH" --key "$T/dev.pub" --kv | sed -n "s/^$1=//p"; }
flash_sum() { sha256sum "$FLASH" | cut -d' ' -f1; }
# patch FILE OFFSET HEXBYTE: overwrite one byte in place.
patch() { printf "\\x$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }
wait_boot_state() { # wait_boot_state KEY VALUE SECONDS
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        [[ $(st "$1") == "$2" ]] && return 0
        sleep 0.1
    done
    echo "# status: $1=$(st "$1") (want $2)" >&2
    return 1
}
# ping_ok: the card answers within 10 s (a firmware the boot ROM just started may still be opening its port:
# the sanitizer build takes a few seconds).
ping_ok() {
    local i
    for ((i = 0; i < 10; i++)); do
        [[ $(ping_received "$(in_client ping -c 1 -W 1 198.18.0.2 2>&1 || true)") -ge 1 ]] && return 0
    done
    return 1
}

# ---- images -------------------------------------------------------------------------------------------
"$CMFLASH" keygen "$T/dev" >/dev/null
"$CMFLASH" keygen "$T/other" >/dev/null
printf 'tcp-time-wait = 500\narp-retries = 4\n' >"$T/defaults.conf"
"$CMFLASH" build "$CMFW" --key "$T/dev.key" --config "$T/defaults.conf" -o "$T/good.img" 2>/dev/null
"$CMFLASH" build "$CMFW_EXIT_AT_START" --key "$T/dev.key" -o "$T/crash.img" 2>/dev/null
"$CMFLASH" build "$CMFW" --key "$T/other.key" -o "$T/other.img" 2>/dev/null
good_build_id=$("$CMFLASH" info "$T/good.img" --kv | sed -n 's/^build_id=//p')
check "the image carries the binary's build id" eq "$good_build_id" \
    "$(readelf -n "$CMFW" | sed -n 's/.*Build ID: //p')"
info=$("$CMFLASH" info "$T/good.img" --key "$T/dev.pub" --show-config)
echo "$info" | sed 's/^/#   /'
check "info: a good image verifies" grep -q 'verdict *ok' <<<"$info"
check "info: the default configuration is in it" grep -q 'arp-retries = 4' <<<"$info"
check "info: the crash build says its version" \
    eq "$("$CMFLASH" info "$T/crash.img" --kv | sed -n 's/^version=//p')" 0.1.1-exit-at-start

size=$(stat -c %s "$T/good.img")
cp "$T/good.img" "$T/corrupt.img" && patch "$T/corrupt.img" $((256 + size / 2)) 5a
head -c $((size - 100)) "$T/good.img" >"$T/truncated.img"
cp "$T/good.img" "$T/unknown-arch.img" && patch "$T/unknown-arch.img" 16 f3 # ELF machine 243 (RISC-V)
cp "$T/good.img" "$T/edited.img" && patch "$T/edited.img" 100 39               # version "0.1.0" -> "0.9.0"
cp "$T/good.img" "$T/format2.img" && patch "$T/format2.img" 8 02

# ---- refusals: clear message, nothing written ---------------------------------------------------------------
"$CMFLASH" write "$T/good.img" --flash "$FLASH" --create --key "$T/dev.pub" >/dev/null
check "first write goes to slot A, on trial" eq "$(flash_kv slot_a_state)" trial
before=$(flash_sum)
refused() { # refused IMAGE EXPECTED-TEXT [extra cmflash write args]
    local img=$1 want=$2 out rc=0
    shift 2
    out=$("$CMFLASH" write "$T/$img" --flash "$FLASH" --key "$T/dev.pub" "$@" 2>&1) || rc=$?
    echo "#   $img: $out"
    ((rc == 1)) && grep -q -- "$want" <<<"$out" && grep -q 'nothing written' <<<"$out" && [[ $(flash_sum) == "$before" ]]
}
check "corrupt payload refused" refused corrupt.img "corrupt payload: its SHA-256 differs"
check "truncated image refused" refused truncated.img "truncated image: .* (100 missing)"
check "wrong architecture refused" refused good.img "wrong architecture: the image is for x86_64, the card runs aarch64" --arch aarch64
check "unknown architecture refused" refused unknown-arch.img "unknown target architecture 243"
check "signature by another key refused" refused other.img "bad signature: signed by key"
check "header edited after signing refused" refused edited.img "bad signature (the header or payload changed"
check "unknown format version refused" refused format2.img "unknown image format version 2"
for img in corrupt truncated unknown-arch other edited format2; do
    out=$("$CMFLASH" info "$T/$img.img" --key "$T/dev.pub" 2>&1) && rc=0 || rc=$?
    check "info refuses $img.img (exit 1, says why)" eval '((rc == 1)) && grep -q "refused: " <<<"$out"'
done

# ---- boot, confirm, flash while running, rollback -----------------------------------------------------------
emu_up --flash "$FLASH" --boot-key "$T/dev.pub" --bus-size 0
check "boots slot A" eq "$(st fw_slot)" A
check "status names the build id" eq "$(st fw_build_id)" "$good_build_id"
check "slot A confirms a healthy start" wait_boot_state boot_state running 10
check "flash: slot A confirmed" eq "$(flash_kv slot_a_state)" confirmed
check "the default configuration was applied" grep -q -- '--config .*/slot-A-config' "$(st log)"
check "ping the card booted from slot A" ping_ok

out=$("$CMFLASH" write "$T/crash.img" --flash "$FLASH" --key "$T/dev.pub")
echo "# $out"
check "a write while A runs goes to slot B" eq "$(flash_kv slot_b_state)" trial
check "slot A untouched" eq "$(flash_kv slot_a_state)" confirmed
out=$("$CMFLASH" write "$T/good.img" --flash "$FLASH" --key "$T/dev.pub" 2>&1) || true
check "a second write still never touches running slot A" eq "$(flash_kv slot_a_state)" confirmed
"$CMFLASH" write "$T/crash.img" --flash "$FLASH" --key "$T/dev.pub" >/dev/null
"$CMEMU" reset "$EMU" >/dev/null || fail "cmemu reset failed"
check "after the crash build's trial: slot A again" eq "$(st fw_slot)" A
check "the previous version is back" eq "$(st fw_version)" 0.1.0
check "one rollback" eq "$(st boot_rollbacks)" 1
check "flash: slot B failed, exited with status 70" \
    eq "$(flash_kv slot_b_state) $(flash_kv slot_b_failure)" "failed exited-before-confirming (status 70)"
check "the log says so" grep -q 'slot B failed its trial (exited-before-confirming, status 70): rolled back' "$(st log)"
check "ping the rolled-back card" ping_ok

# ---- a trial that never confirms: rolled back at the deadline, after a power cycle -----------------------------
"$CMFLASH" write "$T/good.img" --flash "$FLASH" --key "$T/dev.pub" >/dev/null
"$CMEMU" down "$EMU" >/dev/null
emu_up --flash "$FLASH" --boot-key "$T/dev.pub" --bus-size 0 --trial-deadline 3 -- --boot-confirm-after 600000
check "the new image boots on trial from slot B" eq "$(st fw_slot) $(st boot_state)" "B trial"
check "no confirmation within 3 s: back to slot A" wait_boot_state fw_slot A 15
check "flash: slot B failed at the deadline" eq "$(flash_kv slot_b_failure)" no-confirmation-before-deadline
check "ping after the deadline rollback" ping_ok
"$CMEMU" down "$EMU" >/dev/null

# ---- bit rot in the confirmed slot: refused at boot, the other slot boots ------------------------------------
"$CMFLASH" write "$T/good.img" --flash "$FLASH" --key "$T/dev.pub" >/dev/null   # slot B, on trial
patch "$FLASH" $((65536 + 256 + 4096)) 00
patch "$FLASH" $((65536 + 256 + 4097)) ff
emu_up --flash "$FLASH" --boot-key "$T/dev.pub" --bus-size 0
check "boots slot B" eq "$(st fw_slot)" B
check "slot B confirms" wait_boot_state boot_state running 10
check "flash: slot A refused at boot" eq "$(flash_kv slot_a_state) $(flash_kv slot_a_failure)" "failed did-not-verify"
check "the log names the damage" grep -q 'slot A (confirmed) refused: corrupt payload' "$(st log)"
"$CMFLASH" info "$FLASH" --key "$T/dev.pub" | sed 's/^/#   /'
