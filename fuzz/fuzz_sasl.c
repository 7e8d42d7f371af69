/* SPDX-License-Identifier: MIT
 *
 * fuzz_sasl.c - libFuzzer target for SASL PLAIN parsing and xtext: parts
 * lie inside the input, user and password are never empty and never hold
 * NUL, CR or LF; decoded xtext is never longer than its text.
 */
#include <llsmtp.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void
inside(const uint8_t *d, size_t n, llsmtp_span sp)
{
    if (sp.n &&
        ((const uint8_t *)sp.p < d || (const uint8_t *)sp.p + sp.n > d + n))
        abort();
}

static int
clean(llsmtp_span sp)
{
    return memchr(sp.p, 0, sp.n) == NULL && memchr(sp.p, '\r', sp.n) == NULL &&
           memchr(sp.p, '\n', sp.n) == NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    llsmtp_auth a;
    char out[512];
    size_t n;
    if (llsmtp_sasl_plain_parse((const char *)data, size, &a) == LLSMTP_OK) {
        inside(data, size, a.authzid);
        inside(data, size, a.user);
        inside(data, size, a.password);
        if (a.user.n == 0 || a.password.n == 0 || !clean(a.user) ||
            !clean(a.password) || !clean(a.authzid))
            abort();
        if (a.authzid.n + a.user.n + a.password.n + 2 != size)
            abort();
    }
    if (llsmtp_xtext_decode((const char *)data, size, out, sizeof out, &n) ==
        LLSMTP_OK) {
        size_t m;
        if (n > size || n > sizeof out)
            abort();
        if (llsmtp_xtext_decode((const char *)data, size, NULL, 0, &m) !=
                LLSMTP_OK ||
            m != n)
            abort();
    }
    return 0;
}
