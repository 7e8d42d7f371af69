/* SPDX-License-Identifier: MIT
 *
 * fuzz_relay.c - libFuzzer target for lib/relay.c. Input: a flag byte
 * (client choice, AUTH, parse options), a CIDR string up to the first NUL,
 * then a recipient path. Invariants, checked against an independent
 * reading of the policy: a recipient whose final domain is outside is
 * never LOCAL; an untrusted, unauthenticated client never gets anything
 * but LOCAL or ALLOWED for local/relay domains without routing tricks;
 * CIDR results are consistent with matching the network's own address.
 */
#include <llsmtp.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int
lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static int
ieq(const char *a, size_t an, const char *b)
{
    size_t i, bn = strlen(b);
    if (an != bn)
        return 0;
    for (i = 0; i < an; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return 0;
    return 1;
}

/* ends with ".hosted.test" after at least one byte */
static int
hosted(const char *d, size_t n)
{
    static const char suf[] = ".hosted.test";
    size_t sl = sizeof suf - 1;
    return n > sl && ieq(d + n - sl, sl, suf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const local[] = {"company.test", ".hosted.test"};
    static const char *const relay[] = {"partner.test"};
    llsmtp_relay_policy p;
    llsmtp_cidr net, nets[1];
    llsmtp_ip own, client;
    llsmtp_path path;
    const uint8_t *nul;
    size_t cl, end, i;
    int flags, have_net, v, auth, tricks = 0, is_local_dom, is_relay_dom;

    if (size < 2)
        return 0;
    flags = data[0];
    data++;
    size--;
    nul = memchr(data, 0, size);
    cl = nul ? (size_t)(nul - data) : size;
    have_net = llsmtp_cidr_parse((const char *)data, cl, &net) == LLSMTP_OK;
    if (have_net && !llsmtp_cidr_match(&net, &net.ip))
        abort(); /* a network contains its own address */
    if (nul == NULL)
        return 0;
    data = nul + 1;
    size -= cl + 1;

    llsmtp_relay_policy_init(&p);
    llsmtp_ip_parse("192.0.2.25", 10, &own);
    p.local_domains = local;
    p.nlocal = 2;
    p.relay_domains = relay;
    p.nrelay = 1;
    p.own_addrs = &own;
    p.nown = 1;
    if (have_net) {
        nets[0] = net;
        p.networks = nets;
        p.nnetworks = 1;
    }
    auth = flags & 1;
    memset(&client, 0, sizeof client);
    client.family = (flags & 2) ? 6 : 4;
    client.addr[0] = (uint8_t)flags;
    if (llsmtp_path_parse((const char *)data, size, (unsigned)(flags >> 4) & 7,
                          &path, &end) != LLSMTP_OK)
        return 0;
    v = llsmtp_relay_check(&p, (flags & 4) ? &client : NULL, auth, &path);
    if (v < 0 || v > LLSMTP_RELAY_DENIED)
        abort();
    if (path.flags & LLSMTP_PATH_POSTMASTER)
        return 0;
    is_local_dom = !(path.flags & LLSMTP_PATH_LITERAL) &&
                   (ieq(path.domain.p, path.domain.n, "company.test") ||
                    hosted(path.domain.p, path.domain.n));
    is_relay_dom = !(path.flags & LLSMTP_PATH_LITERAL) &&
                   ieq(path.domain.p, path.domain.n, "partner.test");
    if ((path.flags & LLSMTP_PATH_LITERAL) &&
        (ieq(path.domain.p, path.domain.n, "[192.0.2.25]") ||
         ieq(path.domain.p, path.domain.n, "[IPv6:::ffff:192.0.2.25]")))
        is_local_dom = 1;
    for (i = 0; i < path.local.n; i++)
        if (path.local.p[i] == '%' || path.local.p[i] == '!' ||
            path.local.p[i] == '@')
            tricks = 1;
    /* an outside final domain is never LOCAL */
    if (v == LLSMTP_RELAY_LOCAL && !is_local_dom &&
        !(path.flags & LLSMTP_PATH_LITERAL))
        abort();
    /* untrusted and unauthenticated: only clean local/relay recipients */
    if (!auth && !(flags & 4) && v != LLSMTP_RELAY_DENIED &&
        (tricks || !(is_local_dom || is_relay_dom)))
        abort();
    return 0;
}
