#!/usr/bin/env bash
# The aarch64 firmware image (make image) on the emulated card: flashed with cmflash, verified and booted by the
# boot ROM under qemu-aarch64-static, it passes the same smoke test as the native firmware booted the same way:
# ARP, ping, HTTP through the card's proxy to the libcm example server (cm-httpd), bodies byte-exact, and a
# confirmed boot. Needs CM_IMAGE_AARCH64 (the signed image) and CM_IMAGE_KEY (its public key); tools/run-tests.sh
# builds both (tools/make-image.sh) and this test skips without them.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ITEST_DIR/proxy_lib.sh"
proxy_init boot_aarch64
[[ -n ${CM_IMAGE_AARCH64-} && -n ${CM_IMAGE_KEY-} ]] || skip "no aarch64 image (CM_IMAGE_AARCH64, CM_IMAGE_KEY; make image)"
for tool in CMFLASH CMBOOTROM CMFW; do
    [[ -x ${!tool-} ]] || fail "$tool not set or not executable: ${!tool-}"
done
[[ -r $CM_IMAGE_AARCH64 && -r $CM_IMAGE_KEY ]] || fail "unreadable: $CM_IMAGE_AARCH64 or $CM_IMAGE_KEY"
command -v qemu-aarch64-static >/dev/null || fail "qemu-aarch64-static not installed (tools/install-deps.sh image)"
command -v arping >/dev/null || skip "arping not installed"
export CMBOOTROM
T=$ITEST_TMP
head -c 1000000 /dev/urandom >"$T/upload.bin"
UPLOAD_SHA=$(sha256sum "$T/upload.bin" | cut -d' ' -f1)

"$CMFLASH" info "$CM_IMAGE_AARCH64" --key "$CM_IMAGE_KEY" | sed 's/^/#   /'
check "the aarch64 image verifies" eq "$("$CMFLASH" info "$CM_IMAGE_AARCH64" --key "$CM_IMAGE_KEY" --kv |
    sed -n 's/^verdict=//p')" ok
# The native firmware, packed and signed with the same key... except that the secret key is not ours to use
# here: a key of the test's own signs the native image, and that card trusts it.
"$CMFLASH" keygen "$T/native" >/dev/null
"$CMFLASH" build "$CMFW" --key "$T/native.key" -o "$T/native.img" 2>/dev/null

# smoke IMAGE KEY ARCH READY_TIMEOUT: flash IMAGE into a new flash file, boot it, and run the smoke test.
smoke() {
    local image=$1 key=$2 arch=$3 ready=$4 flash=$T/flash-$3.bin out mac
    "$CMFLASH" write "$image" --flash "$flash" --create --key "$key" --arch "$arch" >/dev/null ||
        fail "cmflash write $image failed"
    local t0=$SECONDS
    emu_up --flash "$flash" --boot-key "$key" --ready-timeout "$ready" --trial-deadline 120 -- --proxy-http 80
    note "$arch: booted and ready in $((SECONDS - t0)) s: $(grep -m1 'bootrom: booting' "$(st log)")"
    check "$arch: the boot ROM booted the $arch image" eq "$(st fw_arch) $(st fw_slot)" "$arch A"
    note "$arch: port: $(grep -m1 -o -E '(pcap|packet socket) link on interface [^:]*' "$(st log)")"
    mac=$(st card_mac)
    out=$(in_client arping -c 3 -w 10 -I "$(st client_if)" 198.18.0.2 2>&1) || true
    check "$arch: arping: 3 replies from the card's MAC" eq "$(grep -ci "reply from 198.18.0.2 \[$mac\]" <<<"$out")" 3
    out=$(in_client ping -n -c 10 -i 0.1 -w 10 198.18.0.2 2>&1) || true
    check "$arch: ping: 10 replies" eq "$(ping_received "$out")" 10
    httpd_start --body-size 20000
    check "$arch: GET / (20000 bytes) byte-exact" eq "$(sha_of_url "http://$CARD/")" "$(pattern_sha 20000)"
    check "$arch: GET /bytes/2000000 byte-exact" eq "$(sha_of_url "http://$CARD/bytes/2000000")" "$(pattern_sha 2000000)"
    check "$arch: POST 1 MB /sha256 byte-exact" eq "$(post_sha "$T/upload.bin" -H 'Expect:')" "$UPLOAD_SHA"
    local i
    for ((i = 0; i < 300; i++)); do
        [[ $(st boot_state) == running ]] && break
        sleep 0.1
    done
    check "$arch: the firmware confirmed its boot" eq "$(st boot_state)" running
    check "$arch: flash: slot A confirmed" eq "$("$CMFLASH" info "$flash" --kv | sed -n 's/^slot_a_state=//p')" confirmed
    httpd_stop
    "$CMEMU" down "$EMU" >/dev/null
}

smoke "$T/native.img" "$T/native.pub" x86_64 10
smoke "$CM_IMAGE_AARCH64" "$CM_IMAGE_KEY" aarch64 90
