/* SPDX-License-Identifier: MIT
 *
 * sasl.c - the SASL messages llsmtp understands itself: PLAIN (RFC 4616,
 * authzid NUL authcid NUL passwd) and the LOGIN prompts
 * (draft-murchison-sasl-login). The parts are spans into the decoded
 * message; nothing is copied. Names and passwords holding NUL, CR or LF
 * are refused, as are an empty user or password.
 */
#include "internal.h"

LLSMTP_DATA_DEF const char llsmtp_sasl_login_user_prompt[13] =
    "VXNlcm5hbWU6"; /* Username: */
LLSMTP_DATA_DEF const char llsmtp_sasl_login_pass_prompt[13] =
    "UGFzc3dvcmQ6"; /* Password: */

static int
sasl_clean(const char *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (p[i] == '\0' || p[i] == '\r' || p[i] == '\n')
            return 0;
    return 1;
}

int
llsmtp_sasl_plain_parse(const char *p, size_t n, llsmtp_auth *out)
{
    const char *nul1, *nul2;
    if (p == NULL || out == NULL)
        return LLSMTP_E_INVAL;
    memset(out, 0, sizeof *out);
    nul1 = (const char *)memchr(p, '\0', n);
    if (nul1 == NULL)
        return LLSMTP_E_SYNTAX;
    nul2 = (const char *)memchr(nul1 + 1, '\0', n - (size_t)(nul1 + 1 - p));
    if (nul2 == NULL)
        return LLSMTP_E_SYNTAX;
    out->mechanism.p = "PLAIN";
    out->mechanism.n = 5;
    out->authzid.p = p;
    out->authzid.n = (size_t)(nul1 - p);
    out->user.p = nul1 + 1;
    out->user.n = (size_t)(nul2 - nul1 - 1);
    out->password.p = nul2 + 1;
    out->password.n = n - (size_t)(nul2 + 1 - p);
    if (out->user.n == 0 || out->password.n == 0 ||
        !sasl_clean(out->authzid.p, out->authzid.n) ||
        !sasl_clean(out->user.p, out->user.n) ||
        !sasl_clean(out->password.p, out->password.n)) {
        memset(out, 0, sizeof *out);
        return LLSMTP_E_SYNTAX;
    }
    return LLSMTP_OK;
}

int
llsmtp__sasl_name_ok(const char *p, size_t n)
{
    return n > 0 && sasl_clean(p, n);
}
