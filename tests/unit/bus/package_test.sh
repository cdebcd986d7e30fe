#!/usr/bin/env bash
# package_test.sh BUILD_DIR EXAMPLE_DIR WORK_DIR [SANITIZED]: installs libcm from BUILD_DIR into a scratch
# prefix, then builds the out-of-tree example against it with find_package(cm) and with pkg-config, and runs
# both (not in a sanitizer build: an instrumented libcm wants the sanitizer runtime loaded first).
set -euo pipefail
build=$1 example=$2 work=$3 sanitized=${4:-0}
rm -rf -- "$work"
mkdir -p -- "$work"
cmake --install "$build" --component libcm --prefix "$work/prefix" >"$work/install.log"
cmake -S "$example" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" >"$work/configure.log"
cmake --build "$work/build" >"$work/build.log"
pc_dir=$(dirname "$(find "$work/prefix" -name cm.pc | head -n 1)")
lib_dir=$(dirname "$(find "$work/prefix" -name 'libcm.so' | head -n 1)")
# shellcheck disable=SC2046 # pkg-config's output is a list of flags
cc -std=c99 -Wall -Wextra -Werror -o "$work/hello-pc" "$example/hello.c" $(PKG_CONFIG_PATH=$pc_dir pkg-config --cflags --libs cm)
if [[ $sanitized == 1 ]]; then
    echo "built with find_package and pkg-config (not run: sanitizer build)"
    exit 0
fi
for exe in "$work/build/hello" "$work/hello-pc"; do
    out=$(CM_DEVICE=/nonexistent/bus.sock LD_LIBRARY_PATH=$lib_dir "$exe")
    echo "$exe: $out"
    [[ $out == "hello: no card"* ]]
done
