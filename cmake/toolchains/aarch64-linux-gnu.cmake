# Cross toolchain for the card's aarch64 firmware: Debian 12's g++-aarch64-linux-gnu, the libraries from a
# private arm64 sysroot, and qemu-aarch64-static to run what it builds. tools/cross/build-aarch64.sh uses it;
# by hand:
#
#   tools/cross/make-sysroot.sh                       # -> <repo>/build-sysroot-aarch64
#   cmake -S . -B build-aarch64 --toolchain cmake/toolchains/aarch64-linux-gnu.cmake \
#         -DCM_FIRMWARE_ONLY=ON -DCM_STATIC_FIRMWARE=ON
#
# CM_SYSROOT (cache variable, else the environment variable CM_SYSROOT, else <repo>/build-sysroot-aarch64):
# the folder tools/cross/make-sysroot.sh fills with the arm64 .debs of the libraries cmfw links (libpcap,
# libdbus, fmt, CLI11, llhttp's sources), unpacked with dpkg -x and never installed system-wide.
#
# It is not CMAKE_SYSROOT: the C library, libstdc++ and the kernel headers are the cross toolchain's own
# (libc6-dev-arm64-cross and friends under /usr/aarch64-linux-gnu, which the compiler finds by itself), and
# the private sysroot has none of them. Both are the find roots instead, searched ONLY: a library, header,
# CMake package or pkg-config file of the host (/usr/lib/x86_64-linux-gnu, /usr/include) is never used.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(CM_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${CM_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${CM_CROSS_TRIPLE}-g++)

# The default does not depend on CMAKE_BINARY_DIR, which is another folder inside try_compile projects.
if(NOT CM_SYSROOT)
  if(DEFINED ENV{CM_SYSROOT} AND NOT "$ENV{CM_SYSROOT}" STREQUAL "")
    set(CM_SYSROOT "$ENV{CM_SYSROOT}")
  else()
    get_filename_component(CM_SYSROOT "${CMAKE_CURRENT_LIST_DIR}/../../build-sysroot-aarch64" ABSOLUTE)
  endif()
endif()
set(CM_SYSROOT "${CM_SYSROOT}" CACHE PATH "private arm64 sysroot (tools/cross/make-sysroot.sh fills it)")
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES CM_SYSROOT)
if(NOT EXISTS "${CM_SYSROOT}/usr/lib/${CM_CROSS_TRIPLE}/libpcap.a")
  message(FATAL_ERROR "no arm64 sysroot in CM_SYSROOT=${CM_SYSROOT}: run tools/cross/make-sysroot.sh "
                      "${CM_SYSROOT} first (or tools/cross/build-aarch64.sh, which does)")
endif()

set(CMAKE_FIND_ROOT_PATH "${CM_SYSROOT}" /usr/${CM_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)  # build tools (pkg-config, ...) are the host's
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# The library architecture CMake searches under <root>/usr/lib/<arch> (Debian's multiarch layout).
set(CMAKE_LIBRARY_ARCHITECTURE ${CM_CROSS_TRIPLE})

# pkg-config (the host's, run at configure time) reads only the sysroot's .pc files and prefixes the paths
# they give with the sysroot.
set(ENV{PKG_CONFIG_LIBDIR} "${CM_SYSROOT}/usr/lib/${CM_CROSS_TRIPLE}/pkgconfig:${CM_SYSROOT}/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "${CM_SYSROOT}")
unset(ENV{PKG_CONFIG_PATH})

# llhttp's C sources (third_party/llhttp) from the sysroot's node-llhttp rather than the host's.
if(EXISTS "${CM_SYSROOT}/usr/share/llhttp/llhttp.c")
  set(CM_LLHTTP_SOURCE_DIR "${CM_SYSROOT}/usr/share/llhttp" CACHE PATH "llhttp's C sources (Debian: node-llhttp)")
  set(CM_LLHTTP_INCLUDE_DIR "${CM_SYSROOT}/usr/share/include/llhttp" CACHE PATH "llhttp.h (Debian: node-llhttp)")
endif()

# Reproducible: no path of the build machine in the objects (debug info, __FILE__), and so none in the
# binary or its build ID: the same sources give the same cmfw wherever the tree, build and sysroot are.
# For a path under two prefixes GCC takes the last option that matches: the build folder and the sysroot
# (often inside the source tree) come after the source tree.
foreach(lang C CXX)
  string(APPEND CMAKE_${lang}_FLAGS_INIT " -ffile-prefix-map=${CMAKE_SOURCE_DIR}=."
                                         " -ffile-prefix-map=${CMAKE_BINARY_DIR}=build"
                                         " -ffile-prefix-map=${CM_SYSROOT}=sysroot")
endforeach()

# binfmt_misc is not assumed: everything aarch64 (try_run, tests, add_custom_command running a built tool)
# runs through the emulator explicitly.
find_program(CM_QEMU_AARCH64 qemu-aarch64-static)
if(CM_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${CM_QEMU_AARCH64}")
else()
  set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64-static)
endif()
