/* SPDX-License-Identifier: MIT
 *
 * fuzz_proxy.c - libFuzzer target for the PROXY protocol header parser
 * (lib/proxy.c): it reads only the bytes it is given, the same input
 * gives the same answer, and what it accepts names an IPv4 or IPv6
 * client or none at all (family 0, port 0), from a v1 line ending in
 * CRLF or a v2 header with its signature and its address block.
 */
#include <llsmtp.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *h = (const char *)data;
    llsmtp_ip ip, ip2;
    uint16_t port = 7, port2 = 7;
    int ok, ok2;
    memset(&ip, 0xA5, sizeof ip);
    memset(&ip2, 0xA5, sizeof ip2);
    ok = llsmtp__proxy_parse(h, size, &ip, &port);
    ok2 = llsmtp__proxy_parse(h, size, &ip2, &port2);
    if (ok != ok2 || (ok != 0 && ok != 1))
        abort();
    if (!ok)
        return 0;
    if (memcmp(&ip, &ip2, sizeof ip) != 0 || port != port2)
        abort();
    if (ip.family != 0 && ip.family != 4 && ip.family != 6)
        abort();
    if (ip.family == 0 && port != 0)
        abort();
    if (h[0] == 'P') {
        /* v1: "PROXY " and the rest of a line ending in CRLF (the
         * session finds the LF and keeps the line under
         * LLSMTP__PROXY_V1_MAX) */
        if (size < 8 || memcmp(h, "PROXY ", 6) != 0 ||
            memcmp(h + size - 2, "\r\n", 2) != 0)
            abort();
    } else {
        /* v2: the signature, then at least the address block it needs */
        if (size < LLSMTP__PROXY_V2_HDR || !llsmtp__proxy_v2_sig(h, size) ||
            size < LLSMTP__PROXY_V2_HDR + llsmtp__proxy_v2_addr(h) ||
            llsmtp__proxy_v2_addr(h) > LLSMTP__PROXY_V2_ADDR ||
            llsmtp__proxy_len(h) < LLSMTP__PROXY_V2_HDR)
            abort();
        if ((data[12] & 0xF0) != 0x20)
            abort();
    }
    return 0;
}
