/* SPDX-License-Identifier: MIT
 *
 * fuzz_dns.c - libFuzzer target for the DNS response parser. The packet
 * answers "company.test" (MX, A or AAAA by the first byte; bit 7 = TCP
 * framing) with the id it carries. Invariants: record counts within
 * bounds, every name NUL-terminated and at most 253 bytes, the MX and
 * glue helpers never fail on what the parser accepted (bar CNAME loops).
 */
#include <llsmtp.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint16_t types[] = {LLSMTP_DNS_MX, LLSMTP_DNS_A,
                                     LLSMTP_DNS_AAAA, LLSMTP_DNS_CNAME};
    llsmtp_dns_rr rrs[16];
    llsmtp_mx mx[8];
    size_t n = 99, total = 99, nmx, i;
    uint16_t id, qtype;
    int tcp, rc;
    const uint8_t *pkt;
    if (size < 3)
        return 0;
    qtype = types[data[0] & 3];
    tcp = (data[0] & 0x80) != 0;
    pkt = data + 1;
    size--;
    if (tcp)
        id = size >= 4 ? (uint16_t)((unsigned)pkt[2] << 8 | pkt[3]) : 0;
    else
        id = (uint16_t)((unsigned)pkt[0] << 8 | pkt[1]);
    rc = llsmtp_dns_parse(pkt, size, tcp, id, "company.test", 12, qtype, rrs,
                          16, &n, &total);
    if (rc < LLSMTP_E_SYNTAX || rc > LLSMTP_DNS_REFUSED)
        abort();
    if (rc != LLSMTP_DNS_NOERROR)
        return 0;
    if (n > 16 || total < n)
        abort();
    for (i = 0; i < n; i++) {
        if (memchr(rrs[i].owner, 0, sizeof rrs[i].owner) == NULL ||
            memchr(rrs[i].target, 0, sizeof rrs[i].target) == NULL ||
            strlen(rrs[i].owner) > LLSMTP_NAME_MAX)
            abort();
        if ((rrs[i].type == LLSMTP_DNS_A && rrs[i].ip.family != 4) ||
            (rrs[i].type == LLSMTP_DNS_AAAA && rrs[i].ip.family != 6))
            abort();
    }
    rc = llsmtp_dns_mx(rrs, n, "company.test", 12, mx, 8, &nmx);
    if (rc == LLSMTP_OK || rc == LLSMTP_DNS_PARTIAL) {
        llsmtp_mx_opts o;
        if (nmx > 8 || (rc == LLSMTP_DNS_PARTIAL && nmx != 8))
            abort();
        for (i = 0; i < nmx; i++)
            if (mx[i].naddrs > LLSMTP_MX_ADDRS_MAX)
                abort();
        llsmtp_mx_opts_init(&o);
        o.seed = size;
        llsmtp_mx_order("company.test", 12, mx, &nmx, 8, &o);
    } else if (rc != LLSMTP_E_RANGE) {
        abort();
    }
    return 0;
}
