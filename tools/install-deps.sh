#!/usr/bin/env bash
# Installs the Debian 12 packages cm needs, idempotently: packages already present are not touched, and
# apt-get runs (once, after one `apt-get update`) only when something is missing.
#
#   tools/install-deps.sh build          compilers, CMake, the libraries the firmware links
#   tools/install-deps.sh test           + what the tests drive: namespaces, ping/arping, tcpdump, clang fuzzers
#   tools/install-deps.sh demo           + what the demo drives
#   tools/install-deps.sh bench          + what the benchmarks drive
#   tools/install-deps.sh vm             + the host driver VM test: kernel image and headers, QEMU, busybox
#   tools/install-deps.sh image          + the aarch64 firmware cross build (tools/cross/build-aarch64.sh) and
#                                        the flash image tooling: cross g++, qemu-user-static, libsodium
set -euo pipefail

declare -A profile
profile[build]="build-essential cmake pkg-config libpcap-dev libfmt-dev libcli11-dev catch2 node-llhttp libssl-dev"
profile[test]="iproute2 iputils-ping iputils-arping ethtool tcpdump procps python3 clang libclang-rt-14-dev curl wrk apache2-utils slowhttptest"
profile[demo]="iproute2 iputils-ping iputils-arping ethtool procps curl wrk"
profile[bench]="iproute2 iputils-ping ethtool procps curl wrk nginx-light"
profile[vm]="linux-headers-amd64 linux-image-amd64 qemu-system-x86 busybox-static cpio kmod bc"
profile[image]="g++-aarch64-linux-gnu qemu-user-static libsodium-dev file"

want=()
for p in "${@:-build}"; do
    [[ -n "${profile[$p]:-}" ]] || { echo "install-deps: unknown profile '$p' (build, test, demo, bench, vm, image)" >&2; exit 2; }
    # every profile builds the project first
    read -r -a pkgs <<<"${profile[build]} ${profile[$p]}"
    want+=("${pkgs[@]}")
done

missing=()
for pkg in $(printf '%s\n' "${want[@]}" | sort -u); do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
