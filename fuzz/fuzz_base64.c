/* SPDX-License-Identifier: MIT
 *
 * fuzz_base64.c - libFuzzer target for lib/base64.c: decode(encode(x)) ==
 * x for any bytes; decoding arbitrary text never writes past the buffer
 * it was given (the buffer is sized exactly) and, when it succeeds,
 * re-encodes to the same text (strict decoding is canonical).
 */
#include <llsmtp.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t elen = llsmtp_b64_encoded_len(size), n, m;
    char *enc = (char *)malloc(elen + 1);
    unsigned char *dec = (unsigned char *)malloc(size + 1);
    size_t cap = llsmtp_b64_decoded_max(size);
    unsigned char *out = (unsigned char *)malloc(cap ? cap : 1);
    int rc;
    if (enc == NULL || dec == NULL || out == NULL)
        abort();
    if (llsmtp_b64_encode(data, size, enc, elen, &n) != LLSMTP_OK || n != elen)
        abort();
    if (llsmtp_b64_decode(enc, n, dec, size, &m) != LLSMTP_OK || m != size ||
        memcmp(dec, data, size) != 0)
        abort();
    /* arbitrary input as Base64 text, into a buffer of the exact bound */
    rc = llsmtp_b64_decode((const char *)data, size, out, cap, &m);
    if (rc == LLSMTP_OK) {
        char *again = (char *)malloc(llsmtp_b64_encoded_len(m) + 1);
        size_t k;
        if (again == NULL || m > cap)
            abort();
        if (llsmtp_b64_encode(out, m, again, llsmtp_b64_encoded_len(m), &k) !=
                LLSMTP_OK ||
            k != size || memcmp(again, data, size) != 0)
            abort();
        free(again);
    } else if (rc != LLSMTP_E_SYNTAX) {
        abort();
    }
    free(enc);
    free(dec);
    free(out);
    return 0;
}
