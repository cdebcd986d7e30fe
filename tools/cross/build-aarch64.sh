#!/usr/bin/env bash
# The aarch64 firmware: a fully static cmfw for the card, cross-built with Debian's toolchain.
#
#   tools/cross/build-aarch64.sh [BUILD_DIR]      default: build-aarch64 (relative to the repository)
#
# Steps: the private arm64 sysroot (tools/cross/make-sysroot.sh; $CM_SYSROOT, default
# <repo>/build-sysroot-aarch64), configure with cmake/toolchains/aarch64-linux-gnu.cmake and
# CM_FIRMWARE_ONLY=ON CM_STATIC_FIRMWARE=ON, build cmfw, then check it: `file` must call it an ARM aarch64
# statically linked ELF, and `qemu-aarch64-static cmfw --version` must print the project's version.
#
# Outputs:
#   BUILD_DIR/firmware/app/cmfw   as linked (RelWithDebInfo: -O2 -g), for debugging and qemu runs
#   BUILD_DIR/cmfw-aarch64        the same, stripped: what goes into a flash image
#
# Host packages: tools/install-deps.sh image (cross g++, qemu-user-static, cmake, pkg-config, file).
# Environment: JOBS (default 2), CM_WERROR (default ON: the cross build is warning-free too).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-build-aarch64}
[[ $build == /* ]] || build=$repo/$build
sysroot=${CM_SYSROOT:-$repo/build-sysroot-aarch64}
[[ $sysroot == /* ]] || sysroot=$repo/$sysroot
jobs=${JOBS:-2}
triple=aarch64-linux-gnu

die() { echo "build-aarch64: FAILED: $*" >&2; exit 1; }
log() { echo "build-aarch64: $*"; }

for tool in cmake pkg-config "$triple-g++" "$triple-strip" "$triple-readelf" qemu-aarch64-static file; do
    command -v "$tool" >/dev/null || die "$tool not found (install the host packages: tools/install-deps.sh image)"
done

start=$SECONDS
"$repo/tools/cross/make-sysroot.sh" "$sysroot" || die "could not build the arm64 sysroot $sysroot"

log "configuring $build"
mkdir -p "$build"
cmake -S "$repo" -B "$build" \
    --toolchain "$repo/cmake/toolchains/aarch64-linux-gnu.cmake" \
    -DCM_SYSROOT="$sysroot" \
    -DCM_FIRMWARE_ONLY=ON -DCM_STATIC_FIRMWARE=ON \
    -DCM_WERROR="${CM_WERROR:-ON}" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build/configure.log" 2>&1 ||
    { cat "$build/configure.log" >&2; die "cmake configure (log: $build/configure.log)"; }

log "building cmfw (-j$jobs)"
cmake --build "$build" -j"$jobs" --target cmfw || die "cmake --build $build --target cmfw"

fw=$build/firmware/app/cmfw
stripped=$build/cmfw-aarch64
[[ -x $fw ]] || die "$fw was not built"
"$triple-strip" --strip-all -o "$stripped" "$fw" || die "$triple-strip $fw"

# The checks: architecture and static linking, then a run under the emulator.
for bin in "$fw" "$stripped"; do
    desc=$(file -b "$bin")
    [[ $desc == *"ELF 64-bit"*"ARM aarch64"* ]] || die "$bin is not an aarch64 ELF: $desc"
    [[ $desc == *"statically linked"* ]] || die "$bin is not statically linked: $desc"
    if "$triple-readelf" -l "$bin" | grep -q INTERP; then die "$bin has a program interpreter (dynamic)"; fi
    want=$(sed -n 's/^project(cm VERSION \([0-9.]*\).*/\1/p' "$repo/CMakeLists.txt")
    got=$(qemu-aarch64-static "$bin" --version 2>&1) || die "qemu-aarch64-static $bin --version failed: $got"
    [[ -z $want || $got == *"$want"* ]] || die "qemu-aarch64-static $bin --version printed '$got', want $want"
done

log "file: $(file -b "$stripped")"
log "qemu-aarch64-static cmfw --version: $got"
log "size: $(stat -c %s "$fw") bytes as linked ($fw)"
log "size: $(stat -c %s "$stripped") bytes stripped ($stripped)"
log "OK in $((SECONDS - start))s"
