#!/usr/bin/env bash
# What `make test` runs: every test, in every configuration CI checks, then one closing line.
#   build/       RelWithDebInfo, warnings as errors: unit + integration tests
#   build-aarch64/  the firmware cross-built for the card, packed into build/cm-firmware-aarch64.img (boot_aarch64)
#   build-asan/  the same tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   build-fuzz/  clang libFuzzer targets over their seed corpus plus a bounded number of new inputs
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
passed=0
failed=0
status=0

# configure_and_build DIR CMAKE_ARGS...
configure_and_build() {
    local dir=$1
    shift
    cmake -S . -B "$dir" -DCM_WERROR=ON "$@" >"$dir/configure.log" 2>&1 || { cat "$dir/configure.log"; return 1; }
    cmake --build "$dir" -j"$jobs"
}

# run_ctest DIR LABEL: runs ctest, adds its counts to the totals.
run_ctest() {
    local dir=$1 log
    shift
    log=$(mktemp)
    ctest --test-dir "$dir" --output-on-failure -j1 "$@" 2>&1 | tee "$log"
    local summary
    summary=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$log" | tail -n 1)
    if [[ -n "$summary" ]]; then
        local fails total
        fails=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/' <<<"$summary")
        total=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\2/' <<<"$summary")
        passed=$((passed + total - fails))
        failed=$((failed + fails))
        [[ "$fails" -eq 0 ]] || status=1
    elif ! grep -q 'No tests were found' "$log"; then
        status=1
    fi
    rm -f "$log"
}

mkdir -p build build-asan build-fuzz

echo "== build (warnings are errors) =="
if configure_and_build build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCM_SANITIZE= -DCM_BUILD_TESTS=ON -DCM_BUILD_FUZZERS=OFF; then
    # The aarch64 image (make image: cross build, signed with the development key) for the boot_aarch64 test.
    echo "== image (aarch64 cross build, tools/make-image.sh) =="
    image_env=()
    if CMFLASH=build/tools/flash/cmflash tools/make-image.sh build/cm-firmware-aarch64.img; then
        image_env=(CM_IMAGE_AARCH64="$PWD/build/cm-firmware-aarch64.img" CM_IMAGE_KEY="$PWD/build/keys/cm-dev.pub")
    else
        echo "FAILED: the aarch64 image did not build"
        status=1; failed=$((failed + 1))
    fi
    if ((${#image_env[@]})); then export "${image_env[@]}"; fi
    run_ctest build
    unset CM_IMAGE_AARCH64 CM_IMAGE_KEY
else
    status=1; failed=$((failed + 1))
fi

echo "== build-asan (AddressSanitizer + UndefinedBehaviorSanitizer) =="
if configure_and_build build-asan -DCMAKE_BUILD_TYPE=Debug -DCM_SANITIZE=address,undefined \
    -DCM_BUILD_TESTS=ON -DCM_BUILD_FUZZERS=OFF; then
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 run_ctest build-asan
else
    status=1; failed=$((failed + 1))
fi

echo "== build-fuzz (libFuzzer, clang) =="
if configure_and_build build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCM_SANITIZE=address,undefined -DCM_BUILD_FUZZERS=ON -DCM_BUILD_TESTS=OFF; then
    run_ctest build-fuzz -L fuzz
else
    status=1; failed=$((failed + 1))
fi

echo
echo "$passed passed, $failed failed"
exit $status
