/* SPDX-License-Identifier: MIT
 *
 * errors.c - the one error table (LLSMTP_ERRNO_MAP) turned into text and
 * names, and the runtime version. Statuses are non-negative, errors
 * negative; unknown values get a fixed string, never NULL.
 */
#include "internal.h"

unsigned long
llsmtp_version(void)
{
    return (unsigned long)LLSMTP_VERSION_NUM;
}

const char *
llsmtp_strerror(int err)
{
    switch (err) {
#define LLSMTP_X_TEXT(name, value, text)                                      \
    case value:                                                               \
        return text;
        LLSMTP_ERRNO_MAP(LLSMTP_X_TEXT)
#undef LLSMTP_X_TEXT
    default:
        return "unknown error";
    }
}

const char *
llsmtp_errname(int err)
{
    switch (err) {
#define LLSMTP_X_NAME(name, value, text)                                      \
    case value:                                                               \
        return "LLSMTP_" #name;
        LLSMTP_ERRNO_MAP(LLSMTP_X_NAME)
#undef LLSMTP_X_NAME
    default:
        return "LLSMTP_E_UNKNOWN";
    }
}
