#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/abi-next-minor.sh - the other half of the ABI promise: abi-check
# lets a minor release append members to the structs the host fills;
# this builds that next minor library (the same sources, one member
# appended to llsmtp_config, llsmtp_callbacks and llsmtp_relay_policy,
# the minor version one higher) into build/abi-next and runs a host
# compiled with today's header against it (tests/abi_next_minor_host.c):
# its structs, smaller than the library's, must be taken.
set -eu
cd "$(dirname "$0")/.."
d=build/abi-next
rm -rf "$d"
mkdir -p "$d/include" "$d/obj"
minor=$(sed -n 's/^#define LLSMTP_VERSION_MINOR \([0-9]*\).*/\1/p' include/llsmtp.h)
sed -e "s/^#define LLSMTP_VERSION_MINOR $minor\$/#define LLSMTP_VERSION_MINOR $((minor + 1))/" \
    -e 's/^} llsmtp_config;$/    unsigned appended_in_the_next_minor;\n} llsmtp_config;/' \
    -e 's/^} llsmtp_callbacks;$/    void (*on_appended_in_the_next_minor)(void);\n} llsmtp_callbacks;/' \
    -e 's/^} llsmtp_relay_policy;$/    int appended_in_the_next_minor;\n} llsmtp_relay_policy;/' \
    include/llsmtp.h >"$d/include/llsmtp.h"
n=$(grep -c appended_in_the_next_minor "$d/include/llsmtp.h")
[ "$n" = 3 ] || { echo "abi-next-minor: the header edit matched $n of 3 structs"; exit 1; }
CC=${CC:-cc}
for f in $(sed 's/#.*//' lib/modules.txt | grep '\.c$'); do
    $CC -std=c99 -O1 -I"$d/include" -Ilib -c "$f" -o "$d/obj/$(basename "$f" .c).o"
done
ar rcs "$d/libllsmtp.a" "$d"/obj/*.o
$CC -std=c99 -Wall -Wextra -Werror -Iinclude tests/abi_next_minor_host.c \
    "$d/libllsmtp.a" -o "$d/host"
if "$d/host"; then
    echo "abi-next-minor: a host of today's header runs on the next minor library"
else
    echo "abi-next-minor: FAILED: the next minor library refuses today's host"
    exit 1
fi
