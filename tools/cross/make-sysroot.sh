#!/usr/bin/env bash
# Builds the private arm64 sysroot the aarch64 firmware cross build links against, idempotently:
#
#   tools/cross/make-sysroot.sh [SYSROOT]     default: <repo>/build-sysroot-aarch64 (or $CM_SYSROOT)
#   tools/cross/make-sysroot.sh --refresh [SYSROOT]   rebuild it even when it is up to date
#
# What goes in: Debian 12's arm64 .debs of the libraries cmfw links, fetched with `apt-get download` and
# unpacked with `dpkg -x`. Nothing arm64 is installed system-wide: libnet1-dev and friends are not
# Multi-Arch, and installing a foreign -dev package can remove the amd64 one the native build needs.
# The C library is not in here: it is the cross toolchain's own (libc6-dev-arm64-cross, pulled in by
# g++-aarch64-linux-gnu under /usr/aarch64-linux-gnu), which cmake/toolchains/aarch64-linux-gnu.cmake
# searches next to this sysroot.
#
# The architecture-independent packages (CLI11's headers, llhttp's C sources from node-llhttp) are
# unpacked here too rather than taken from the host's /usr: then the cross build reads nothing from the
# host but the compiler, and it does not need the native `build` profile installed.
#
# libnet is not in the list: the firmware does not use it (link/ transmits with pcap_inject; see
# docs/firmware.md). Add packages to PACKAGES below if cmfw ever links more.
#
# Up to date means: the stamp file names the same package list as PACKAGES below. Then nothing is
# fetched (no network). The stamp also records the exact versions unpacked (dpkg-deb -f), so a build can
# say what it linked. Run as root (for `dpkg --add-architecture` and `apt-get update`, needed only once).
set -euo pipefail

PACKAGES=(
    libpcap0.8-dev libpcap0.8    # libpcap.a, <pcap/pcap.h>, libpcap.pc
    libdbus-1-dev libdbus-1-3    # libpcap.a needs libdbus-1.a (Requires.private: dbus-1)
    libfmt-dev libfmt9           # fmt's headers (the static build uses fmt header-only)
)
PACKAGES_ALL=(                   # Architecture: all (fetched without an :arm64 qualifier)
    libcli11-dev                 # CLI11's headers and CMake package
    node-llhttp                  # llhttp's C sources (/usr/share/llhttp)
)
ARCH=arm64

die() { echo "make-sysroot: error: $*" >&2; exit 1; }
log() { echo "make-sysroot: $*"; }

refresh=0
if [[ ${1:-} == --refresh ]]; then refresh=1; shift; fi
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
sysroot=${1:-${CM_SYSROOT:-$repo/build-sysroot-aarch64}}
sysroot=$(realpath -m -- "$sysroot")
stamp=$sysroot/.cm-sysroot-stamp
want="packages=${PACKAGES[*]} ${PACKAGES_ALL[*]}"

if ((refresh == 0)) && [[ -f $stamp ]] && [[ $(head -n1 "$stamp") == "$want" ]]; then
    log "$sysroot is up to date ($(($(wc -l <"$stamp") - 1)) packages; --refresh to fetch again)"
    exit 0
fi

for tool in apt-get dpkg dpkg-deb; do command -v "$tool" >/dev/null || die "needs $tool (Debian)"; done
sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)

# arm64 must be a known architecture for apt to have arm64 package lists. Adding it changes nothing
# installed; apt-get update then also fetches the arm64 lists.
if ! dpkg --print-foreign-architectures | grep -qx "$ARCH"; then
    log "adding dpkg architecture $ARCH and updating the package lists"
    "${sudo_cmd[@]}" dpkg --add-architecture "$ARCH"
    "${sudo_cmd[@]}" apt-get update -qq || die "apt-get update failed"
fi

mkdir -p -- "$(dirname -- "$sysroot")"
work=$(mktemp -d "${sysroot%/}.tmp.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
mkdir -p "$work/debs" "$work/root"
# apt-get download as root drops to the _apt user: let it write into the download folder.
if id _apt >/dev/null 2>&1; then chown _apt "$work/debs"; fi

specs=()
for p in "${PACKAGES[@]}"; do specs+=("$p:$ARCH"); done
specs+=("${PACKAGES_ALL[@]}")
download() { (cd "$work/debs" && apt-get download -q "${specs[@]}") >"$work/download.log" 2>&1; }
log "downloading ${#specs[@]} $ARCH packages"
if ! download; then
    # Known architecture but stale or missing lists (fresh container, lists cleaned): update once, retry.
    log "apt-get download failed; updating the package lists and trying again"
    "${sudo_cmd[@]}" apt-get update -qq || die "apt-get update failed"
    download || { cat "$work/download.log" >&2; die "apt-get download ${specs[*]} failed"; }
fi

shopt -s nullglob
debs=("$work"/debs/*.deb)
((${#debs[@]} == ${#specs[@]})) || die "expected ${#specs[@]} .debs, got ${#debs[@]}"
{
    echo "$want"
    for deb in "${debs[@]}"; do
        dpkg-deb -x "$deb" "$work/root"
        dpkg-deb -f "$deb" Package Architecture Version | awk -F': ' '{v[NR] = $2} END {print v[1] ":" v[2] "=" v[3]}'
    done
} >"$work/root/.cm-sysroot-stamp"

# The -dev packages' libfoo.so links are absolute (/usr/lib/...) in a few packages: make every absolute
# symlink relative so it resolves inside the sysroot, never to the host's file.
while IFS= read -r -d '' link; do
    target=$(readlink -- "$link")
    [[ $target == /* ]] || continue
    ln -sfn -- "$(realpath -m --relative-to="$(dirname -- "$link")" -- "$work/root$target")" "$link"
done < <(find "$work/root" -type l -print0)

# Sanity: what the firmware's static link needs.
multiarch=usr/lib/aarch64-linux-gnu
for f in "$multiarch/libpcap.a" "$multiarch/libdbus-1.a" "$multiarch/pkgconfig/libpcap.pc" \
         usr/include/pcap/pcap.h usr/include/fmt/format.h usr/include/CLI/CLI.hpp usr/share/llhttp/llhttp.c; do
    [[ -e $work/root/$f ]] || die "the unpacked packages lack $f"
done

rm -rf -- "$sysroot"
mv -- "$work/root" "$sysroot"
log "$sysroot ready:"
tail -n +2 "$stamp" | sed 's/^/  /'
