#!/bin/sh
# cross-cmocka.sh - builds a static cmocka for a test-cross target from
# Debian's own cmocka source package (the orig tarball), for targets whose
# cmocka Debian does not ship or that we do not want through multiarch:
#   win64  mingw-w64 (x86_64-w64-mingw32-gcc): Debian has no mingw build.
#   i386   gcc -m32: libcmocka-dev:i386 would need the i386 architecture
#          in dpkg and apt (its own indexes, version skew with the host's
#          Multi-Arch: same packages); -m32 only needs gcc-12-multilib.
# Usage:
#   tools/cross-cmocka.sh TARGET OUT
# leaves OUT/include/cmocka.h, OUT/lib/libcmocka.a (static only, so the
# test programs need no shared library or DLL beside them) and
# OUT/lib/pkgconfig/cmocka.pc, and does nothing when OUT/lib/libcmocka.a
# is already there (kept under build/). The source comes from `apt-get
# source --download-only cmocka` (deb-src entries for Debian's mirror:
# make cross-deps adds them); an already downloaded cmocka_*.orig.tar.* in
# OUT/src is reused. CROSS_CC overrides the target's compiler.
set -eu
[ $# = 2 ] || { echo "usage: $0 i386|win64 OUT" >&2; exit 2; }
target=$1
out=$2
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
[ -f "$out/lib/libcmocka.a" ] && exit 0

# Per target: compiler, its flags, and the CMake system it builds for.
case $target in
win64)
    cc=${CROSS_CC:-x86_64-w64-mingw32-gcc}
    # mingw's C99 printf (%zu, %lld) inside cmocka: the tests print size_t.
    cflags=-D__USE_MINGW_ANSI_STDIO=1 ldflags=
    system=Windows processor=x86_64
    ;;
i386)
    cc=${CROSS_CC:-gcc}
    cflags=-m32 ldflags=-m32
    system=Linux processor=i686
    ;;
*)
    echo "$0: unknown target '$target' (i386 or win64)" >&2; exit 2 ;;
esac
command -v "$cc" >/dev/null || { echo "$0: $cc not found" >&2; exit 1; }
command -v cmake >/dev/null || { echo "$0: cmake not found" >&2; exit 1; }

mkdir -p "$out/src"
cd "$out/src"
if ! ls cmocka_*.orig.tar.* >/dev/null 2>&1; then
    apt-get source --download-only -qq cmocka || {
        echo "$0: apt-get source cmocka failed (deb-src entries missing? run make cross-deps)" >&2
        exit 1
    }
fi
rm -rf tree build
mkdir tree
tar -xf "$(ls cmocka_*.orig.tar.* | grep -v '\.asc$' | head -n 1)" \
    -C tree --strip-components=1

cat > toolchain.cmake <<TC
set(CMAKE_SYSTEM_NAME $system)
set(CMAKE_SYSTEM_PROCESSOR $processor)
set(CMAKE_C_COMPILER $cc)
set(CMAKE_C_FLAGS_INIT "$cflags")
set(CMAKE_EXE_LINKER_FLAGS_INIT "$ldflags")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "$ldflags")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
TC
# CMAKE_INSTALL_LIBDIR=lib: not lib64 nor lib/<multiarch>, whatever
# GNUInstallDirs would guess for the prefix.
cmake -S tree -B build -DCMAKE_TOOLCHAIN_FILE="$out/src/toolchain.cmake" \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_LIBDIR=lib \
    -DWITH_STATIC_LIB=ON -DWITH_EXAMPLES=OFF -DUNIT_TESTING=OFF \
    -DCMAKE_INSTALL_PREFIX="$out" >build.log 2>&1 ||
    { cat build.log >&2; exit 1; }
cmake --build build >>build.log 2>&1 || { cat build.log >&2; exit 1; }
cmake --install build >>build.log 2>&1 || { cat build.log >&2; exit 1; }
# Static only: -lcmocka must find libcmocka.a, not the shared library
# (libcmocka.so*) or the DLL's import library.
rm -f "$out"/lib/libcmocka.so* "$out/lib/libcmocka.dll.a" "$out/bin/cmocka.dll"
mv "$out/lib/libcmocka-static.a" "$out/lib/libcmocka.a"
# A system header, as Debian's /usr/include/cmocka.h is: its macros use
# GNU extensions (fail_msg's ", ##__VA_ARGS__") that -Wpedantic reports.
sed -i 's|^Cflags: -I|Cflags: -isystem |' "$out/lib/pkgconfig/cmocka.pc"
echo "cmocka for $target in $out"
