#!/bin/sh
# abi-diff.sh OLD NEW SUPPR - compares two ABI descriptions with abidiff
# (libabigail) the one way make abi-check and tests/abi-selftest.sh do,
# prints its report and what its exit status means, and exits with that
# status: 0 when nothing changed that 1.x forbids.
#   OLD    the baseline, abi/libllsmtp.abi
#   NEW    the library to judge, described by make abi-dump (both sides
#          are abidw's XML written with the same flags, so both hold the
#          same kinds of types: only include/llsmtp.h's)
#   SUPPR  abi/llsmtp.suppr: the changes 1.x allows
# --non-reachable-types: a type no function names (an enum whose values
# the host passes as int) is compared too.
# The status is abidiff's bit field: 1 ABIDIFF_ERROR, 2 ABIDIFF_USAGE_ERROR,
# 4 ABIDIFF_ABI_CHANGE (a change the suppressions did not allow: a type's
# layout, a function's signature, an enumerator's value, the soname, a
# symbol's version), 8 ABIDIFF_ABI_INCOMPATIBLE_CHANGE (4 is set too):
# what libabigail knows to be incompatible, a function or variable
# removed, and with 2.x also a changed or removed type no function
# reaches (an enum, llsmtp_span through llsmtp_auth_step).
set -u
[ $# = 3 ] || { echo "usage: $0 OLD NEW SUPPR" >&2; exit 2; }
old=$1 new=$2 suppr=$3
for f in "$old" "$new" "$suppr"; do
    [ -f "$f" ] || { echo "abi: no $f" >&2; exit 1; }
done
out=$(abidiff --no-default-suppression --suppressions "$suppr" \
    --non-reachable-types --no-show-locs "$old" "$new" 2>&1)
rc=$?
if [ $rc = 0 ]; then
    echo "abi: $new against $old: no change that 1.x forbids (abidiff exit 0)"
    exit 0
fi
what=
[ $((rc & 1)) = 0 ] || what="$what+ERROR"
[ $((rc & 2)) = 0 ] || what="$what+USAGE_ERROR"
[ $((rc & 4)) = 0 ] || what="$what+ABI_CHANGE"
[ $((rc & 8)) = 0 ] || what="$what+ABI_INCOMPATIBLE_CHANGE"
printf '%s\n' "$out"
echo "abi: $new against $old: abidiff exit $rc (${what#+})"
if [ $((rc & 3)) != 0 ]; then
    echo "abi: abidiff itself failed (see above)"
elif [ $((rc & 8)) != 0 ]; then
    echo "abi: incompatible (a removed function or variable, or a changed type no function reaches; see above)"
else
    echo "abi: a change 1.x does not allow (abi/llsmtp.suppr lists what it may do)"
fi
exit $rc
