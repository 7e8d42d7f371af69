/* SPDX-License-Identifier: MIT
 *
 * base64.c - strict RFC 4648 section 4 Base64: no whitespace, padding
 * exactly as the length requires, no bits set in the unused tail of the
 * last character, nothing outside the alphabet. Decoding may write in
 * place (out == in) because output never overtakes input. No allocation.
 */
#include "internal.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0..63, or 64 for anything else (a 256-entry table, no locale). */
static unsigned
b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return (unsigned)(c - 'A');
    if (c >= 'a' && c <= 'z')
        return (unsigned)(c - 'a' + 26);
    if (c >= '0' && c <= '9')
        return (unsigned)(c - '0' + 52);
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return 64;
}

size_t
llsmtp_b64_encoded_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

size_t
llsmtp_b64_decoded_max(size_t n)
{
    return n / 4 * 3;
}

int
llsmtp_b64_encode(const void *in, size_t n, char *out, size_t cap,
                  size_t *outlen)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t i, o = 0;
    if ((in == NULL && n) || outlen == NULL || (out == NULL && cap))
        return LLSMTP_E_INVAL;
    *outlen = 0;
    if (n == 0)
        return LLSMTP_OK;
    if (out == NULL || n > (SIZE_MAX - 2) / 4 * 3 ||
        cap < llsmtp_b64_encoded_len(n))
        return LLSMTP_E_BUFFER;
    for (i = 0; i + 2 < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (i < n) {
        unsigned v = (unsigned)p[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)p[i + 1] << 8;
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = b64_alphabet[(v >> 6) & 63];
        else
            out[o++] = '=';
        out[o++] = '=';
    }
    *outlen = o;
    return LLSMTP_OK;
}

int
llsmtp_b64_decode(const char *in, size_t n, void *out, size_t cap,
                  size_t *outlen)
{
    unsigned char *q = (unsigned char *)out;
    size_t i, o = 0, pad = 0;
    if ((in == NULL && n) || outlen == NULL || (out == NULL && cap))
        return LLSMTP_E_INVAL;
    *outlen = 0;
    if (n % 4)
        return LLSMTP_E_SYNTAX;
    if (n >= 1 && in[n - 1] == '=')
        pad = n >= 2 && in[n - 2] == '=' ? 2 : 1;
    if (n == 0)
        return LLSMTP_OK;
    if (q == NULL || cap < n / 4 * 3 - pad)
        return LLSMTP_E_BUFFER;
    for (i = 0; i < n; i += 4) {
        unsigned a = b64_value((unsigned char)in[i]);
        unsigned b = b64_value((unsigned char)in[i + 1]);
        unsigned c, d, v;
        int last = i + 4 == n;
        c = last && pad == 2 ? 0 : b64_value((unsigned char)in[i + 2]);
        d = last && pad >= 1 ? 0 : b64_value((unsigned char)in[i + 3]);
        if (a > 63 || b > 63 || c > 63 || d > 63)
            return LLSMTP_E_SYNTAX; /* outside the alphabet, or '=' early */
        v = a << 18 | b << 12 | c << 6 | d;
        /* RFC 4648 3.5: the unused bits of the last character are 0 */
        if (last && ((pad == 2 && (b & 15)) || (pad == 1 && (c & 3))))
            return LLSMTP_E_SYNTAX;
        q[o++] = (unsigned char)(v >> 16);
        if (!(last && pad == 2))
            q[o++] = (unsigned char)(v >> 8);
        if (!(last && pad >= 1))
            q[o++] = (unsigned char)v;
    }
    *outlen = o;
    return LLSMTP_OK;
}
