#!/bin/sh
# mingw-cmocka.sh - builds cmocka for win64 (mingw-w64) from Debian's own
# source package, because Debian ships no mingw build of it. Usage:
#   tools/mingw-cmocka.sh OUT
# leaves OUT/include/cmocka.h, OUT/lib/libcmocka.a (static only, so the
# test programs need no DLL next to them) and OUT/lib/pkgconfig/cmocka.pc,
# and does nothing when OUT/lib/libcmocka.a is already there (CI caches it
# under build/). The source comes from `apt-get source --download-only
# cmocka` (deb-src entries for Debian's mirror: .ci/run adds them); an
# already downloaded cmocka_*.orig.tar.* in OUT/src is reused.
set -eu
out=$1
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
[ -f "$out/lib/libcmocka.a" ] && exit 0
cc=${MINGW_CC:-x86_64-w64-mingw32-gcc}
command -v "$cc" >/dev/null || { echo "$0: $cc not found" >&2; exit 1; }
command -v cmake >/dev/null || { echo "$0: cmake not found" >&2; exit 1; }

mkdir -p "$out/src"
cd "$out/src"
if ! ls cmocka_*.orig.tar.* >/dev/null 2>&1; then
    apt-get source --download-only -qq cmocka || {
        echo "$0: apt-get source cmocka failed (deb-src entries missing?)" >&2
        exit 1
    }
fi
rm -rf tree build
mkdir tree
tar -xf "$(ls cmocka_*.orig.tar.* | grep -v '\.asc$' | head -n 1)" \
    -C tree --strip-components=1

cat > mingw.cmake <<EOF
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(CMAKE_C_COMPILER $cc)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
EOF
# mingw's C99 printf (%zu, %lld) inside cmocka: the tests print size_t.
cmake -S tree -B build -DCMAKE_TOOLCHAIN_FILE="$out/src/mingw.cmake" \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS=-D__USE_MINGW_ANSI_STDIO=1 \
    -DWITH_STATIC_LIB=ON -DWITH_EXAMPLES=OFF -DUNIT_TESTING=OFF \
    -DCMAKE_INSTALL_PREFIX="$out" >build.log 2>&1 ||
    { cat build.log >&2; exit 1; }
cmake --build build >>build.log 2>&1 || { cat build.log >&2; exit 1; }
cmake --install build >>build.log 2>&1 || { cat build.log >&2; exit 1; }
# Static only: -lcmocka must find libcmocka.a, not the DLL's import library.
rm -f "$out/lib/libcmocka.dll.a" "$out/bin/cmocka.dll"
mv "$out/lib/libcmocka-static.a" "$out/lib/libcmocka.a"
# A system header, as Debian's /usr/include/cmocka.h is: its macros use
# GNU extensions (fail_msg's ", ##__VA_ARGS__") that -Wpedantic reports.
sed -i 's|^Cflags: -I|Cflags: -isystem |' "$out/lib/pkgconfig/cmocka.pc"
echo "cmocka for mingw-w64 in $out"
