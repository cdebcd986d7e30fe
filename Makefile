# The two commands the README promises, plus the ones developers use every day. CMake does the building;
# this file only names the jobs. Every job installs the Debian packages it needs first (idempotent).
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all build test demo bench image deps clean

all: build

## build: configure and compile everything into build/
build:
	tools/install-deps.sh build
	cmake -S . -B $(BUILD) >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

## test: every test: unit + integration + the driver VM test, again under ASan/UBSan, and the fuzz targets (tools/run-tests.sh)
test:
	tools/install-deps.sh test vm image
	tools/run-tests.sh

## demo: the main job: the emulated card with its HTTP proxy, the example server on libcm, curl and wrk (tools/demo.sh)
demo: build
	tools/install-deps.sh demo
	CMFW=$(BUILD)/firmware/app/cmfw CMHTTPD=$(BUILD)/tools/cm-httpd tools/demo.sh

## bench: benchmarks; they print figures and never fail on time
bench: build
	tools/install-deps.sh bench
	CMFW=$(BUILD)/firmware/app/cmfw bash tests/bench/ping_flood.sh
	CMFW=$(BUILD)/firmware/app/cmfw BUS_BENCH=$(BUILD)/tests/bench/bus_bench bash tests/bench/bus_bench.sh
	CMFW=$(BUILD)/firmware/app/cmfw CM_TCPLOAD=$(BUILD)/tools/cm-tcpload CM_TCPSERVICES=$(BUILD)/tools/cm-tcpservices \
	    bash tests/bench/tcp_bench.sh
	CMFW=$(BUILD)/firmware/app/cmfw CMHTTPD=$(BUILD)/tools/cm-httpd CMHTTPLOAD=$(BUILD)/tools/cm-httpload \
	    bash tests/bench/proxy_bench.sh

## image: the signed aarch64 firmware image build/cm-firmware-aarch64.img (cross build; development key on first use)
image: build
	tools/install-deps.sh image
	tools/make-image.sh

deps:
	tools/install-deps.sh build test demo bench vm image

clean:
	rm -rf build build-asan build-fuzz build-aarch64 build-sysroot-aarch64
