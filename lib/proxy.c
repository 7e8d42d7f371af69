/* SPDX-License-Identifier: MIT
 *
 * proxy.c - the PROXY protocol header (HAProxy proxy-protocol.txt, v1
 * and v2) a load balancer puts before the SMTP dialogue: parsed from
 * bytes the session gathered, into the real client's address and port.
 * Pure functions: no session, no state. The session (server.c) reads the
 * header from its input and skips v2's TLVs; what is in it is decided
 * here. Invariant: an address the header does not vouch for (UNKNOWN,
 * LOCAL, UNSPEC) is never left as the client's.
 */
#include "internal.h"

static const char proxy_v2_sig[12] = {'\r', '\n', '\r', '\n', '\0', '\r',
                                      '\n', 'Q',  'U',  'I',  'T',  '\n'};

/* A decimal port, 0..65535, no leading zeros (as the spec writes them). */
static int
proxy_port(const char *p, size_t n, uint16_t *out)
{
    size_t i;
    unsigned v = 0;
    if (n == 0 || n > 5 || (n > 1 && p[0] == '0'))
        return 0;
    for (i = 0; i < n; i++) {
        if (!llsmtp__is_digit((unsigned char)p[i]))
            return 0;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v > 65535)
        return 0;
    *out = (uint16_t)v;
    return 1;
}

/* "PROXY TCP4 <src> <dst> <sport> <dport>" or "PROXY UNKNOWN ...";
 * line excludes the CRLF. */
static int
proxy_v1(const char *line, size_t n, llsmtp_ip *client, uint16_t *port)
{
    llsmtp_span f[6];
    size_t nf = 0, i = 0, k;
    llsmtp_ip src, dst;
    uint16_t sport, dport;
    while (i <= n && nf < 6) {
        k = i;
        while (k < n && line[k] != ' ')
            k++;
        f[nf].p = line + i;
        f[nf++].n = k - i;
        i = k + 1;
        if (k >= n)
            break;
    }
    if (nf < 2 || f[0].n != 5 || memcmp(f[0].p, "PROXY", 5) != 0)
        return 0;
    if (f[1].n == 7 && memcmp(f[1].p, "UNKNOWN", 7) == 0) {
        /* a health check, or a protocol it cannot name: the socket's
         * address is the balancer's, never to be trusted as the client */
        memset(client, 0, sizeof *client);
        *port = 0;
        return 1;
    }
    if (nf != 6 || i <= n || f[1].n != 4 ||
        (memcmp(f[1].p, "TCP4", 4) != 0 && memcmp(f[1].p, "TCP6", 4) != 0))
        return 0;
    if (llsmtp_ip_parse(f[2].p, f[2].n, &src) != LLSMTP_OK ||
        llsmtp_ip_parse(f[3].p, f[3].n, &dst) != LLSMTP_OK ||
        src.family != (f[1].p[3] == '4' ? 4 : 6) || dst.family != src.family ||
        !proxy_port(f[4].p, f[4].n, &sport) ||
        !proxy_port(f[5].p, f[5].n, &dport))
        return 0;
    *client = src;
    *port = sport;
    return 1;
}

/* The fixed part and the address block of a v2 header; len is the
 * address length the header declares. */
static int
proxy_v2(const unsigned char *h, size_t len, llsmtp_ip *client, uint16_t *port)
{
    unsigned cmd = h[12] & 0x0F, fam = h[13];
    const unsigned char *a = h + LLSMTP__PROXY_V2_HDR;
    if ((h[12] & 0xF0) != 0x20 || cmd > 1)
        return 0;
    /* LOCAL (the proxy's own health check) and UNSPEC carry no client:
     * forget the balancer's address rather than trust it */
    memset(client, 0, sizeof *client);
    *port = 0;
    if (cmd == 0)
        return 1;
    switch (fam) {
    case 0x00: /* UNSPEC */
        return 1;
    case 0x11: /* TCP over IPv4 */
        if (len < 12)
            return 0;
        memset(client, 0, sizeof *client);
        client->family = 4;
        memcpy(client->addr, a, 4);
        *port = (uint16_t)(a[8] << 8 | a[9]);
        return 1;
    case 0x21: /* TCP over IPv6 */
        if (len < 36)
            return 0;
        client->family = 6;
        memcpy(client->addr, a, 16);
        *port = (uint16_t)(a[32] << 8 | a[33]);
        return 1;
    default:
        return 0; /* UDP or UNIX: not an SMTP client */
    }
}

int
llsmtp__proxy_v2_sig(const char *h, size_t n)
{
    return n < sizeof proxy_v2_sig ||
           memcmp(h, proxy_v2_sig, sizeof proxy_v2_sig) == 0;
}

size_t
llsmtp__proxy_len(const char *h)
{
    return LLSMTP__PROXY_V2_HDR +
           (size_t)((unsigned char)h[14] << 8 | (unsigned char)h[15]);
}

size_t
llsmtp__proxy_v2_addr(const char *h)
{
    size_t alen = llsmtp__proxy_len(h) - LLSMTP__PROXY_V2_HDR;
    return alen < LLSMTP__PROXY_V2_ADDR ? alen : LLSMTP__PROXY_V2_ADDR;
}

int
llsmtp__proxy_parse(const char *h, size_t n, llsmtp_ip *client, uint16_t *port)
{
    if (n > 0 && h[0] == 'P')
        return n >= 2 && h[n - 2] == '\r' && h[n - 1] == '\n' &&
               proxy_v1(h, n - 2, client, port);
    if (n < LLSMTP__PROXY_V2_HDR || !llsmtp__proxy_v2_sig(h, n) ||
        n < LLSMTP__PROXY_V2_HDR + llsmtp__proxy_v2_addr(h))
        return 0;
    return proxy_v2((const unsigned char *)h,
                    llsmtp__proxy_len(h) - LLSMTP__PROXY_V2_HDR, client, port);
}
