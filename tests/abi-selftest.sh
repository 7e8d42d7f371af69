#!/bin/sh
# abi-selftest.sh - shows that make abi-check fails when it must and
# passes when 1.x allows the change (make abi-selftest).
#
# The reference is the current tree, described the way abi-check
# describes it (make abi-dump into build/abi-selftest/ref), not the
# committed baseline: the test holds while the API is still changing.
# Each case copies include/ to build/abi-selftest/CASE/include, edits the
# copy with sed, builds the library against it (make abi-lib with
# -I that copy first; lib/ untouched), describes it and runs
# tools/abi-diff.sh, the comparison abi-check runs, and asserts its exit
# status. Nothing is written outside build/abi-selftest.
set -u
cd "$(dirname "$0")/.."
dir=build/abi-selftest
make=${MAKE:-make}
jobs=$(nproc 2>/dev/null || echo 2)
rm -rf "$dir"
mkdir -p "$dir"
fail=0
summary=

say() { printf '%s\n' "$*"; }

dump() { # dump CASE [make variables...]: build and describe a variant
    name=$1
    shift
    $make -s --no-print-directory -j"$jobs" abi-dump ABI_BUILD="$dir/$name" "$@" \
        >"$dir/$name.build.log" 2>&1 || {
        cat "$dir/$name.build.log"
        say "abi-selftest: $name: the variant does not build"
        return 1
    }
}

# header CASE SED-SCRIPT: include/ copied to $dir/CASE/include, edited;
# fails when the edit changed nothing (the header moved on: update the
# pattern here).
header() {
    mkdir -p "$dir/$1"
    cp -R include "$dir/$1/include"
    sed -i "$2" "$dir/$1/include/llsmtp.h"
    if cmp -s include/llsmtp.h "$dir/$1/include/llsmtp.h"; then
        say "abi-selftest: $1: the sed script matched nothing in include/llsmtp.h; update tests/abi-selftest.sh"
        return 1
    fi
}

# judge CASE EXPECT [MUST-APPEAR]: compares CASE with the reference.
# EXPECT: pass (exit 0); fail (bit 4, ABIDIFF_ABI_CHANGE, and no error
# bit: libabigail 2.x adds bit 8 for some, e.g. a changed type no
# function reaches); incompatible (bits 4 and 8: a removed function).
# MUST-APPEAR: text (a grep pattern) the variant's description must
# hold, so that no verdict is vacuous (the edit reached the library).
judge() {
    name=$1 expect=$2 must=${3:-}
    if [ -n "$must" ] && ! grep -q -- "$must" "$dir/$name/libllsmtp.abi"; then
        say "abi-selftest: $name: '$must' is not in the variant's ABI: the edit did not reach the library"
        fail=1
        return
    fi
    sh tools/abi-diff.sh "$dir/ref/libllsmtp.abi" "$dir/$name/libllsmtp.abi" \
        abi/llsmtp.suppr >"$dir/$name.abidiff" 2>&1
    rc=$?
    case $expect in
    pass) ok=$([ $rc = 0 ] && echo y) ;;
    fail) ok=$([ $((rc & 3)) = 0 ] && [ $((rc & 4)) = 4 ] && echo y) ;;
    incompatible) ok=$([ $((rc & 3)) = 0 ] && [ $((rc & 12)) = 12 ] && echo y) ;;
    esac
    if [ "$ok" = y ]; then
        line="ok    $name: abidiff exit $rc, as expected ($expect)"
    else
        cat "$dir/$name.abidiff"
        line="FAIL  $name: abidiff exit $rc, expected $expect"
        fail=1
    fi
    say "$line"
    summary="$summary$line
"
}

# run CASE EXPECT MUST SED-SCRIPT: the library built against an edited
# header copy. -Wno-error: some edits draw warnings from lib/ (a
# positional initialiser such as LLSMTP_REPLY_INIT one member short);
# the variants are only described, never run.
run() {
    name=$1 expect=$2 must=$3 script=$4
    if header "$name" "$script" &&
        dump "$name" ABI_CPPFLAGS="-I$dir/$name/include" \
            ABI_CFLAGS=-Wno-error; then
        judge "$name" "$expect" "$must"
    else
        fail=1
    fi
}

dump ref || exit 1
grep -q "elf-symbol name='llsmtp_version'" "$dir/ref/libllsmtp.abi" || {
    say "abi-selftest: llsmtp_version is not exported; update tests/abi-selftest.sh"
    exit 1
}

# 1. A member inserted in the middle of a public struct the host
#    allocates (llsmtp_reply: deciding callbacks fill it, resume takes
#    one from the host): every later member moves. Must fail.
run reply-middle fail "name='abi_selftest_inserted'" \
    '/^typedef struct llsmtp_reply {$/,/^} llsmtp_reply;$/ s/^\(    int code; .*\)$/\1\n    int abi_selftest_inserted;/'

# 2. The same in llsmtp_span, the (pointer, length) pair everywhere in
#    the API. Must fail.
run span-middle fail "name='abi_selftest_inserted'" \
    '/^typedef struct llsmtp_span {$/,/^} llsmtp_span;$/ s/^\(    const char \*p;\)$/\1\n    int abi_selftest_inserted;/'

# 3. A member inserted at the start of llsmtp_config, a versioned
#    struct: the suppression lets through appending only. Must fail.
run config-start fail "name='abi_selftest_inserted'" \
    '/^typedef struct llsmtp_config {$/a\    int abi_selftest_inserted;'

# 4. A member appended at the end of llsmtp_config: what 1.x allows for
#    the structs the host fills through a versioned init. Must pass.
run config-end pass "name='abi_selftest_appended'" \
    '/^} llsmtp_config;$/i\    int abi_selftest_appended;'

# 5. The same at the end of llsmtp_reply, which is not versioned (the
#    host allocates it at its own sizeof). Must fail.
run reply-end fail "name='abi_selftest_appended'" \
    '/^} llsmtp_reply;$/i\    int abi_selftest_appended;'

# 6. An enumerator's value changed (LLSMTP_E_INVAL): hosts compiled
#    against the old header compare with the old value. Must fail.
run enum-value fail "name='LLSMTP_E_INVAL' value='-1000'" \
    's/^\(    X(E_INVAL, \)-1,/\1-1000,/'

# The last two cases change no header lib/ reads: they relink the
# reference's objects (copied with their times: make only links).
reuse() { mkdir -p "$dir/$1" && cp -Rp "$dir/ref/pic" "$dir/$1/"; }

# 7. A public function removed: the variant's version script makes
#    llsmtp_version local (an exact name outranks the llsmtp_* wildcard).
#    Must fail, and be flagged incompatible (bit 8).
reuse removed
printf 'LLSMTP_1.0 {\n    global:\n        llsmtp_*;\n    local:\n        llsmtp_version;\n        *;\n};\n' \
    >"$dir/removed/llsmtp.map"
if dump removed LLSMTP_MAP="$dir/removed/llsmtp.map"; then
    if nm -D --defined-only "$dir/removed/libllsmtp.so" |
        grep -q ' llsmtp_version@'; then
        say "abi-selftest: removed: llsmtp_version is still exported"
        fail=1
    else
        judge removed incompatible
    fi
else
    fail=1
fi

# 8. A public function added: declared in the header copy, defined in
#    an extra object linked in. Must pass.
reuse added
if header added '/^LLSMTP_API unsigned long llsmtp_version(void);$/a\LLSMTP_API int llsmtp_abi_selftest_added(void);'; then
    printf '#include "llsmtp.h"\nint llsmtp_abi_selftest_added(void) { return 1; }\n' \
        >"$dir/added/added.c"
    if ${ABI_CC:-gcc} -std=c99 -O2 -g -fPIC -fvisibility=hidden \
        -I"$dir/added/include" -c "$dir/added/added.c" \
        -o "$dir/added/added.o" &&
        dump added ABI_CPPFLAGS="-I$dir/added/include" \
            ABI_LDFLAGS="$dir/added/added.o"; then
        judge added pass "elf-symbol name='llsmtp_abi_selftest_added'"
    else
        fail=1
    fi
else
    fail=1
fi

say "--"
printf '%s' "$summary"
if [ $fail = 0 ]; then
    say "abi-selftest: the check fails on every forbidden change and passes the allowed ones (reports in $dir/*.abidiff)"
else
    say "abi-selftest: FAILED"
fi
exit $fail
