#!/bin/sh
# install.sh - installs into a temporary DESTDIR, builds examples/hello.c
# out of the tree with pkg-config (shared, then --static), runs both, and
# checks that uninstall removes exactly what install put there.
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=/opt/llsmtp-test
# The soname's major is the header's (libllsmtp.so.1 since 1.0.0).
major=$(sed -n 's/^#define LLSMTP_VERSION_MAJOR \([0-9]*\)$/\1/p' include/llsmtp.h)
make -s install DESTDIR="$tmp" PREFIX=$prefix >/dev/null
find "$tmp" -type f -o -type l | sed "s|^$tmp||" | sort > "$tmp/installed"
for f in $prefix/include/llsmtp.h $prefix/lib/libllsmtp.a \
         $prefix/lib/libllsmtp.so $prefix/lib/libllsmtp.so.$major \
         $prefix/lib/pkgconfig/llsmtp.pc; do
    grep -qx "$f" "$tmp/installed" || { echo "missing $f"; exit 1; }
done
soname=$(readelf -d "$tmp$prefix/lib/libllsmtp.so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ "$soname" = libllsmtp.so.$major ] || { echo "soname $soname"; exit 1; }
export PKG_CONFIG_PATH="$tmp$prefix/lib/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$tmp"
[ "$(pkg-config --modversion llsmtp)" = "$(sed -n 's/^#define LLSMTP_VERSION_STRING "\(.*\)"$/\1/p' include/llsmtp.h)" ]
mkdir "$tmp/app"
cp examples/hello.c "$tmp/app/"
input='HELO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n'
# shared
cc -std=c99 -D_POSIX_C_SOURCE=200809L $(pkg-config --cflags llsmtp) \
    "$tmp/app/hello.c" -o "$tmp/app/hello" $(pkg-config --libs llsmtp)
out=$(printf "$input" | LD_LIBRARY_PATH="$tmp$prefix/lib" "$tmp/app/hello" 2>/dev/null)
echo "$out" | grep -q '^250 2.6.0 Queued mail for delivery' || { echo "shared: $out"; exit 1; }
LD_LIBRARY_PATH="$tmp$prefix/lib" ldd "$tmp/app/hello" | grep -q "libllsmtp.so.$major =>"
# the program binds to the versioned symbols (lib/llsmtp.map)
readelf --dyn-syms -W "$tmp/app/hello" | grep -q ' llsmtp_[a-z0-9_]*@LLSMTP_1\.0' ||
    { echo "shared: no llsmtp_*@LLSMTP_1.0 reference"; exit 1; }
# static
cc -std=c99 -D_POSIX_C_SOURCE=200809L $(pkg-config --cflags --static llsmtp) \
    "$tmp/app/hello.c" -o "$tmp/app/hello-static" \
    "$tmp$prefix/lib/libllsmtp.a" $(pkg-config --libs --static llsmtp | sed 's/-lllsmtp//')
out=$(printf "$input" | "$tmp/app/hello-static" 2>/dev/null)
echo "$out" | grep -q '^221 2.0.0' || { echo "static: $out"; exit 1; }
! ldd "$tmp/app/hello-static" | grep -q llsmtp
make -s uninstall DESTDIR="$tmp" PREFIX=$prefix >/dev/null
left=$(find "$tmp$prefix" -type f -o -type l)
[ -z "$left" ] || { echo "left after uninstall: $left"; exit 1; }
echo "install: ok (header, static, shared with soname libllsmtp.so.$major and symbols versioned LLSMTP_1.0, pkg-config; uninstall clean)"
