#!/bin/sh
# cross-deps.sh - installs what `make test-cross` needs on Debian 12 (root,
# or through sudo); `make cross-deps` runs it with the package list:
#   tools/cross-deps.sh PACKAGE...
# Adds the s390x architecture (multiarch cmocka and libc for qemu-s390x)
# and deb-src entries for Debian's mirror when there are none (cmocka is
# built for i386 and win64 from Debian's source package), updates apt's
# lists, installs, then checks that the toolchains answer. Any step that
# fails stops it, with the reason on stderr: a half-installed setup would
# only fail later in test-cross, far from the cause.
# No i386 architecture: -m32 needs gcc-12-multilib alone, and i386 indexes
# bring their own failures into apt-get update (a mirror's inconsistent
# bookworm-security i386 index) and Multi-Arch: same version skew that
# makes apt remove host packages.
set -eu
[ $# -gt 0 ] || { echo "usage: $0 PACKAGE..." >&2; exit 2; }
if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
die() { echo "cross-deps: $*" >&2; exit 1; }

$SUDO dpkg --add-architecture s390x || die "dpkg --add-architecture s390x failed"

if ! grep -rqsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list \
        /etc/apt/sources.list.d/; then
    . /etc/os-release
    printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$VERSION_CODENAME" |
        $SUDO tee /etc/apt/sources.list.d/debian-src.sources >/dev/null ||
        die "could not write /etc/apt/sources.list.d/debian-src.sources"
fi

# --error-on=any: without it apt-get update exits 0 when some index only
# failed transiently ("W: Some index files failed to download"), and the
# install below would pick from stale or missing lists.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! $SUDO apt-get update -q --error-on=any >"$log" 2>&1; then
    {
        echo "cross-deps: apt-get update failed; nothing was installed. apt said:"
        grep -E '^(E|W|Err):' "$log" || tail -n 20 "$log"
        echo "cross-deps: dpkg architectures: $(dpkg --print-architecture)" \
            "$(dpkg --print-foreign-architectures | tr '\n' ' ')"
        if dpkg --print-foreign-architectures | grep -qvx s390x; then
            echo "cross-deps: test-cross needs no foreign architecture but" \
                "s390x; an index failing for another one (e.g. i386, added" \
                "by an older cross-deps) can be dropped with" \
                "'dpkg --remove-architecture ARCH' once its packages are removed."
        fi
    } >&2
    exit 1
fi

# gcc-multilib (the metapackage) conflicts with every cross gcc;
# gcc-12-multilib gives -m32 without it.
if dpkg -s gcc-multilib >/dev/null 2>&1; then
    $SUDO apt-get remove -y -qq gcc-multilib || die "apt-get remove gcc-multilib failed"
fi
# --no-remove: a foreign-architecture package whose version the mirror does
# not have for the host too (Multi-Arch: same) makes apt remove the host's
# one and everything above it (libc6-dev, gcc, clang); stop instead.
$SUDO apt-get install -y -qq --no-install-recommends --no-remove "$@" ||
    die "apt-get install failed (see above); packages: $*"

# The toolchains answer: each compiler links a program for its target.
tmp=$(mktemp -d)
trap 'rm -f "$log"; rm -rf "$tmp"' EXIT
printf '#include <stdio.h>\nint main(void) { puts("ok"); return 0; }\n' > "$tmp/t.c"
gcc -m32 "$tmp/t.c" -o "$tmp/t32" && [ "$("$tmp/t32")" = ok ] ||
    die "gcc -m32 cannot build and run a program (gcc-12-multilib)"
s390x-linux-gnu-gcc "$tmp/t.c" -o "$tmp/ts390x" &&
    [ "$(qemu-s390x "$tmp/ts390x")" = ok ] ||
    die "s390x-linux-gnu-gcc and qemu-s390x cannot build and run a program"
[ -f /usr/lib/s390x-linux-gnu/pkgconfig/cmocka.pc ] ||
    die "no cmocka.pc for s390x (libcmocka-dev:s390x)"
x86_64-w64-mingw32-gcc "$tmp/t.c" -o "$tmp/t.exe" ||
    die "x86_64-w64-mingw32-gcc cannot build a program"
for t in wine cmake xz; do
    command -v $t >/dev/null || die "$t not found after install"
done
echo "cross-deps: i386, s390x and win64 toolchains installed"
