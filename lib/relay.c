/* SPDX-License-Identifier: MIT
 *
 * relay.c - who may send mail where: local domains, relay domains, trusted
 * networks (CIDR), authenticated clients. Never an open relay: recipients
 * from untrusted, unauthenticated clients are judged by where the mail
 * would really go, and the classic routing tricks ("%" hack, "!" paths,
 * quoted "@", address literals) are refused even behind a local domain
 * (RFC 5321 3.6, 7.1, Appendix C; RFC 2505 2). Pure functions.
 */
#include "internal.h"

#ifndef LLSMTP_NO_RELAY
/* clang-format off */
static const uint8_t relay_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         0xff, 0xff};
/* clang-format on */

/* IPv4-mapped IPv6 becomes IPv4, so both spellings match each other. */
static llsmtp_ip
relay_norm(const llsmtp_ip *ip)
{
    llsmtp_ip o = *ip;
    if (ip->family == 6 && memcmp(ip->addr, relay_mapped, 12) == 0) {
        memset(&o, 0, sizeof o);
        o.family = 4;
        memcpy(o.addr, ip->addr + 12, 4);
    }
    return o;
}

int
llsmtp_cidr_parse(const char *p, size_t n, llsmtp_cidr *out)
{
    const char *slash;
    size_t alen;
    unsigned bits, maxbits, i;
    llsmtp_ip ip;
    if (p == NULL || out == NULL)
        return LLSMTP_E_INVAL;
    memset(out, 0, sizeof *out);
    slash = (const char *)memchr(p, '/', n);
    alen = slash != NULL ? (size_t)(slash - p) : n;
    if (llsmtp_ip_parse(p, alen, &ip) != LLSMTP_OK)
        return LLSMTP_E_SYNTAX;
    maxbits = ip.family == 4 ? 32 : 128;
    bits = maxbits;
    if (slash != NULL) {
        size_t k = alen + 1;
        if (k >= n || n - k > 3)
            return k >= n ? LLSMTP_E_SYNTAX : LLSMTP_E_RANGE;
        bits = 0;
        for (; k < n; k++) {
            if (!llsmtp__is_digit((unsigned char)p[k]))
                return LLSMTP_E_SYNTAX;
            bits = bits * 10 + (unsigned)(p[k] - '0');
        }
        if (bits > maxbits)
            return LLSMTP_E_RANGE;
    }
    /* Host bits beyond the prefix: a typo worth an error, as Postfix
     * says for mynetworks. */
    for (i = bits; i < maxbits; i++)
        if (ip.addr[i / 8] & (0x80u >> (i % 8)))
            return LLSMTP_E_HOSTBITS;
    if (ip.family == 6 && bits >= 96 &&
        memcmp(ip.addr, relay_mapped, 12) == 0) {
        ip = relay_norm(&ip);
        bits -= 96;
    }
    out->ip = ip;
    out->bits = (uint8_t)bits;
    return LLSMTP_OK;
}

int
llsmtp_cidr_match(const llsmtp_cidr *net, const llsmtp_ip *ip)
{
    llsmtp_ip a;
    unsigned i, full, rest;
    if (net == NULL || ip == NULL)
        return 0;
    a = relay_norm(ip);
    if (a.family != net->ip.family || a.family == 0)
        return 0;
    full = net->bits / 8u;
    rest = net->bits % 8u;
    for (i = 0; i < full; i++)
        if (a.addr[i] != net->ip.addr[i])
            return 0;
    if (rest) {
        unsigned mask = (0xFFu << (8 - rest)) & 0xFFu;
        if ((a.addr[full] & mask) != (net->ip.addr[full] & mask))
            return 0;
    }
    return 1;
}

/* Where the 1.0 members end (lib/internal.h, llsmtp__abi_fits). */
#define RELAY_MIN LLSMTP__END(llsmtp_relay_policy, deny_text)

int
llsmtp_relay_policy_init_(llsmtp_relay_policy *p, unsigned long version,
                          size_t size)
{
    if (p == NULL)
        return LLSMTP_E_INVAL;
    if (!llsmtp__abi_fits(version, size, RELAY_MIN, sizeof *p))
        return llsmtp__abi_refuse(&p->abi);
    memset(p, 0, size);
    p->auth_may_relay = 1;
    p->trusted_may_relay = 1;
    p->deny_code = 550;
    p->deny_enhanced = "5.7.1";
    return llsmtp__abi_tag(&p->abi, version, size, RELAY_MIN, sizeof *p, 0, 0,
                           0);
}

/* Whether entry e (en octets) names domain d as written, octet for
 * octet (the client wrote the configured case, the common case): then
 * it is a match of relay_entry_match's, found without folding case.
 * Unless e is a ".parent" entry, or d ends in two dots (one trailing dot
 * is stripped from d, up to two from e). */
static int
relay_entry_same(const char *d, size_t dn, const char *e, size_t en)
{
    return en == dn && e[0] != '.' && memcmp(d, e, dn) == 0 &&
           !(dn >= 2 && d[dn - 1] == '.' && d[dn - 2] == '.');
}

/* Does domain d match entry e (en octets): exactly, or as a subdomain
 * of ".x"? */
static int
relay_entry_match(const char *d, size_t dn, const char *e, size_t en)
{
    if (en && e[en - 1] == '.')
        en--;
    if (en > 1 && e[0] == '.') {
        /* ".company.test": any x.company.test, never company.test */
        return dn > en && d[dn - en] == '.' &&
               llsmtp__iequal(d + dn - en + 1, en - 1, e + 1, en - 1);
    }
    return llsmtp__name_eq(d, dn, e, en);
}

/* Does domain d match an entry of the list? The exact spelling first
 * (relay_entry_same), the general match when it is not. */
int
llsmtp__relay_domain_in(const char *d, size_t dn, const char *const *list,
                        size_t nlist)
{
    size_t i, en;
    for (i = 0; i < nlist; i++) {
        if (list[i] == NULL)
            continue;
        en = strlen(list[i]);
        if (relay_entry_same(d, dn, list[i], en) ||
            relay_entry_match(d, dn, list[i], en))
            return 1;
    }
    return 0;
}

#if !defined(LLSMTP_AMALGAMATION) || defined(LLSMTP_TEST_INTERNALS)
/* The same by the general match alone (tests/test_relay.c compares). */
int
llsmtp__relay_domain_in_general(const char *d, size_t dn,
                                const char *const *list, size_t nlist)
{
    size_t i;
    for (i = 0; i < nlist; i++)
        if (list[i] != NULL &&
            relay_entry_match(d, dn, list[i], strlen(list[i])))
            return 1;
    return 0;
}
#endif

/* Routing inside the local part: "%" hack, "!" bang path, and in a
 * quoted local part also "@": the octets 0x21 + 0, 4 and 31, a bit each
 * of a mask (one test an octet). */
static int
relay_local_routes(const llsmtp_path *r)
{
    uint32_t mask = 1u << ('!' - 0x21) | 1u << ('%' - 0x21);
    size_t i;
    if (r->flags & LLSMTP_PATH_QUOTED)
        mask |= 1u << ('@' - 0x21);
    for (i = 0; i < r->local.n; i++) {
        unsigned c = (unsigned char)r->local.p[i] - 0x21u;
        if (c < 32 && (mask >> c & 1u))
            return 1;
    }
    return 0;
}

/* user@[addr]: local only when addr is one of this server's. */
static int
relay_literal_is_own(const llsmtp_relay_policy *p, const llsmtp_path *r)
{
    llsmtp_ip ip;
    size_t i, skip = (r->flags & LLSMTP_PATH_IPV6) ? 6 : 1;
    if (!(r->flags & (LLSMTP_PATH_IPV4 | LLSMTP_PATH_IPV6)) ||
        r->domain.n < skip + 1)
        return 0;
    if (llsmtp_ip_parse(r->domain.p + skip, r->domain.n - skip - 1, &ip) !=
        LLSMTP_OK)
        return 0;
    ip = relay_norm(&ip);
    for (i = 0; i < p->nown; i++) {
        llsmtp_ip own = relay_norm(&p->own_addrs[i]);
        if (own.family == ip.family &&
            memcmp(own.addr, ip.addr, ip.family == 4 ? 4 : 16) == 0)
            return 1;
    }
    return 0;
}

int
llsmtp_relay_check(const llsmtp_relay_policy *p, const llsmtp_ip *ip,
                   int authenticated, const llsmtp_path *rcpt)
{
    int trusted = 0, local, tricks;
    size_t i;
    if (p == NULL || rcpt == NULL)
        return LLSMTP_E_INVAL;
    if (!llsmtp__abi_ok(&p->abi, RELAY_MIN, sizeof *p, 0, 0))
        return LLSMTP_E_VERSION;
    if (rcpt->flags & LLSMTP_PATH_NULL)
        return LLSMTP_RELAY_DENIED;
    if (rcpt->flags & LLSMTP_PATH_POSTMASTER)
        return LLSMTP_RELAY_LOCAL; /* RFC 5321 4.1.1.3 */
    if (ip != NULL && p->trusted_may_relay)
        for (i = 0; i < p->nnetworks && !trusted; i++)
            trusted = llsmtp_cidr_match(&p->networks[i], ip);
    if (authenticated && p->auth_may_relay)
        trusted = 1;
    /* The route (if any) is ignored: rcpt->domain is the final mailbox's
     * domain, which is where the mail would go. */
    if (rcpt->flags & LLSMTP_PATH_LITERAL)
        local = relay_literal_is_own(p, rcpt);
    else
        local = llsmtp__relay_domain_in(rcpt->domain.p, rcpt->domain.n,
                                        p->local_domains, p->nlocal);
    tricks = relay_local_routes(rcpt);
    if (trusted)
        return local && !tricks ? LLSMTP_RELAY_LOCAL : LLSMTP_RELAY_ALLOWED;
    if (tricks)
        return LLSMTP_RELAY_DENIED;
    if (local)
        return LLSMTP_RELAY_LOCAL;
    if (!(rcpt->flags & LLSMTP_PATH_LITERAL) &&
        llsmtp__relay_domain_in(rcpt->domain.p, rcpt->domain.n,
                                p->relay_domains, p->nrelay))
        return LLSMTP_RELAY_ALLOWED;
    return LLSMTP_RELAY_DENIED;
}
#else
typedef int llsmtp__llsmtp_no_relay_left_out; /* ISO C: no empty file */
#endif /* LLSMTP_NO_RELAY */
