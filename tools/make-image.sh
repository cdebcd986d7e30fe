#!/usr/bin/env bash
# make image: the signed aarch64 firmware image, ready for `cmflash write` (docs/image.md).
#
#   tools/make-image.sh [OUTPUT]        default: build/cm-firmware-aarch64.img
#
#  1. tools/cross/build-aarch64.sh build-aarch64: the fully static aarch64 cmfw, stripped (build-aarch64/cmfw-aarch64)
#  2. the signing key: $CM_IMAGE_SIGNING_KEY, else the development key build/keys/cm-dev.key, made on first use
#     (cmflash keygen; its public half build/keys/cm-dev.pub is what cmemu's boot ROM trusts by default)
#  3. cmflash build with firmware/app/default.conf as the default configuration, then cmflash info
# Needs the native tools built first (build/tools/flash/cmflash: `make build`).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
output=${1:-build/cm-firmware-aarch64.img}
cmflash=${CMFLASH:-build/tools/flash/cmflash}
[[ -x $cmflash ]] || { echo "make-image: $cmflash not built (make build)" >&2; exit 1; }

tools/cross/build-aarch64.sh build-aarch64

key=${CM_IMAGE_SIGNING_KEY:-build/keys/cm-dev.key}
if [[ ! -e $key ]]; then
    [[ -z ${CM_IMAGE_SIGNING_KEY-} ]] || { echo "make-image: no signing key $key" >&2; exit 1; }
    mkdir -p "$(dirname "$key")"
    echo "make-image: no development key yet: making ${key%.key}.key and .pub"
    "$cmflash" keygen "${key%.key}"
fi
"$cmflash" build build-aarch64/cmfw-aarch64 --key "$key" --arch aarch64 --config firmware/app/default.conf -o "$output"
"$cmflash" info "$output" --key "$key"
