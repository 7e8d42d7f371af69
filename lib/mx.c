/* SPDX-License-Identifier: MIT
 *
 * mx.c - choosing where mail for a domain goes (RFC 5321 5.1): MX records
 * ordered by preference with equal preferences shuffled from a seed the
 * host gives (so tests are repeatable and production can pass real
 * randomness), implicit MX, null MX (RFC 7505), removal of this host and
 * everything not better than it, relay host syntax, and IP text. Pure
 * functions over caller memory.
 */
#include "internal.h"

/* ---- IP text ------------------------------------------------------------- */

int
llsmtp_ip_parse(const char *p, size_t n, llsmtp_ip *ip)
{
    if (p == NULL || ip == NULL)
        return LLSMTP_E_INVAL;
    memset(ip, 0, sizeof *ip);
    if (llsmtp_ipv4_parse(p, n, ip->addr) == LLSMTP_OK) {
        ip->family = 4;
        return LLSMTP_OK;
    }
    if (llsmtp_ipv6_parse(p, n, ip->addr) == LLSMTP_OK) {
        ip->family = 6;
        return LLSMTP_OK;
    }
    memset(ip, 0, sizeof *ip);
    return LLSMTP_E_SYNTAX;
}

static size_t
mx_put_dec(char *o, unsigned v)
{
    size_t n = 0;
    if (v >= 100)
        o[n++] = (char)('0' + v / 100);
    if (v >= 10)
        o[n++] = (char)('0' + v / 10 % 10);
    o[n++] = (char)('0' + v % 10);
    return n;
}

static size_t
mx_put_v4(char *o, const uint8_t *a)
{
    size_t n = 0;
    int i;
    for (i = 0; i < 4; i++) {
        if (i)
            o[n++] = '.';
        n += mx_put_dec(o + n, a[i]);
    }
    return n;
}

size_t
llsmtp_ip_format(const llsmtp_ip *ip, char *buf, size_t buflen)
{
    char tmp[64];
    size_t n = 0;
    static const char hex[] = "0123456789abcdef";
    if (ip == NULL || buf == NULL)
        return 0;
    if (ip->family == 4) {
        n = mx_put_v4(tmp, ip->addr);
    } else if (ip->family == 6) {
        /* RFC 5952: lower case, no leading zeros, the longest run of two
         * or more zero groups (the first of equals) as "::" */
        unsigned g[8];
        int best = -1, bestlen = 0, run = 0, i;
        /* clang-format off */
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                           0xff, 0xff};
        /* clang-format on */
        if (memcmp(ip->addr, mapped, 12) == 0) {
            memcpy(tmp, "::ffff:", 8); /* with its NUL */
            n = 7 + mx_put_v4(tmp + 7, ip->addr + 12);
        } else {
            for (i = 0; i < 8; i++)
                g[i] = (unsigned)ip->addr[(size_t)i * 2] << 8 |
                       ip->addr[(size_t)i * 2 + 1];
            for (i = 0; i < 8; i++) {
                run = g[i] == 0 ? run + 1 : 0;
                if (run > bestlen) {
                    bestlen = run;
                    best = i - run + 1;
                }
            }
            if (bestlen < 2)
                best = -1;
            for (i = 0; i < 8; i++) {
                int shift, started = 0;
                if (i == best) {
                    tmp[n++] = ':';
                    tmp[n++] = ':';
                    i += bestlen - 1;
                    continue;
                }
                if (i > 0 && i != best + bestlen)
                    tmp[n++] = ':';
                for (shift = 12; shift >= 0; shift -= 4) {
                    unsigned d = (g[i] >> shift) & 15;
                    if (d || started || shift == 0) {
                        tmp[n++] = hex[d];
                        started = 1;
                    }
                }
            }
        }
    } else {
        return 0;
    }
    if (n + 1 > buflen)
        return 0;
    memcpy(buf, tmp, n);
    buf[n] = '\0';
    return n;
}

#ifndef LLSMTP_NO_MX
/* ---- names --------------------------------------------------------------- */

/* Length of a name without one trailing dot. */
static size_t
mx_trim(const char *p, size_t n)
{
    return n && p[n - 1] == '.' ? n - 1 : n;
}

static int
mx_is_root(const llsmtp_mx *m)
{
    return m->host[0] == '\0' || (m->host[0] == '.' && m->host[1] == '\0');
}

static int
mx_ip_eq(const llsmtp_ip *a, const llsmtp_ip *b)
{
    size_t len = a->family == 4 ? 4 : 16;
    return a->family == b->family && a->family != 0 &&
           memcmp(a->addr, b->addr, len) == 0;
}

static int
mx_is_local(const llsmtp_mx *m, const llsmtp_mx_opts *o)
{
    size_t i, j;
    if (o == NULL)
        return 0;
    for (i = 0; i < o->nlocal_names; i++)
        if (o->local_names[i] != NULL &&
            llsmtp__name_eq(m->host, strlen(m->host), o->local_names[i],
                            strlen(o->local_names[i])))
            return 1;
    for (i = 0; i < m->naddrs && i < LLSMTP_MX_ADDRS_MAX; i++)
        for (j = 0; j < o->nlocal_addrs; j++)
            if (mx_ip_eq(&m->addrs[i], &o->local_addrs[j]))
                return 1;
    return 0;
}

/* splitmix64: a small, good generator for the equal-preference shuffle */
static uint64_t
mx_next(uint64_t *st)
{
    uint64_t z = (*st += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, bound) without modulo bias. */
static size_t
mx_below(uint64_t *st, size_t bound)
{
    uint64_t b = (uint64_t)bound, lim = UINT64_MAX - UINT64_MAX % b, x;
    do
        x = mx_next(st);
    while (x >= lim);
    return (size_t)(x % b);
}

static void
mx_add_addr(llsmtp_mx *m, const llsmtp_ip *ip)
{
    size_t i;
    for (i = 0; i < m->naddrs; i++)
        if (mx_ip_eq(&m->addrs[i], ip))
            return;
    if (m->naddrs < LLSMTP_MX_ADDRS_MAX)
        m->addrs[m->naddrs++] = *ip;
}

/* Where the 1.0 members end (lib/internal.h, llsmtp__abi_fits). */
#define MX_OPTS_MIN LLSMTP__END(llsmtp_mx_opts, seed)

int
llsmtp_mx_opts_init_(llsmtp_mx_opts *o, unsigned long version, size_t size)
{
    if (o == NULL)
        return LLSMTP_E_INVAL;
    if (!llsmtp__abi_fits(version, size, MX_OPTS_MIN, sizeof *o))
        return llsmtp__abi_refuse(&o->abi);
    memset(o, 0, size);
    return llsmtp__abi_tag(&o->abi, version, size, MX_OPTS_MIN, sizeof *o, 0,
                           0, 0);
}

int
llsmtp_mx_order(const char *domain, size_t domain_len, llsmtp_mx *v, size_t *n,
                size_t cap, const llsmtp_mx_opts *opts)
{
    size_t i, j, cnt;
    uint64_t st = opts != NULL ? opts->seed : 0;
    int have_root = 0;

    if (n == NULL || *n > cap || (cap > 0 && v == NULL) ||
        (domain == NULL && domain_len))
        return LLSMTP_E_INVAL;
    if (opts != NULL &&
        !llsmtp__abi_ok(&opts->abi, MX_OPTS_MIN, sizeof *opts, 0, 0))
        return LLSMTP_E_VERSION;
    cnt = *n;
    for (i = 0; i < cnt; i++)
        if (v[i].naddrs > LLSMTP_MX_ADDRS_MAX)
            v[i].naddrs = LLSMTP_MX_ADDRS_MAX;

    if (cnt == 0) {
        /* RFC 5321 5.1: no MX records: the domain itself, preference 0 */
        size_t dl = mx_trim(domain, domain_len);
        if (cap == 0 || dl == 0 || dl > LLSMTP_NAME_MAX)
            return LLSMTP_E_INVAL;
        memset(&v[0], 0, sizeof v[0]);
        for (i = 0; i < dl; i++)
            v[0].host[i] = (char)llsmtp__lower((unsigned char)domain[i]);
        v[0].host[dl] = '\0';
        *n = 1;
        if (mx_is_local(&v[0], opts))
            return LLSMTP_MX_LOOP;
        return LLSMTP_MX_IMPLICIT;
    }

    /* Merge duplicate exchanges: lowest preference, addresses joined. */
    for (i = 0; i < cnt; i++) {
        for (j = 0; j < i; j++) {
            if (llsmtp__name_eq(v[i].host, strlen(v[i].host), v[j].host,
                                strlen(v[j].host))) {
                size_t k;
                if (v[i].pref < v[j].pref)
                    v[j].pref = v[i].pref;
                for (k = 0; k < v[i].naddrs; k++)
                    mx_add_addr(&v[j], &v[i].addrs[k]);
                memmove(&v[i], &v[i + 1], (cnt - i - 1) * sizeof v[0]);
                cnt--;
                i--;
                break;
            }
        }
    }
    *n = cnt;
    for (i = 0; i < cnt; i++)
        if (mx_is_root(&v[i]))
            have_root = 1;
    if (have_root) {
        /* RFC 7505 3: "." alone is a null MX; with others it is an error */
        return cnt == 1 ? LLSMTP_MX_NULL : LLSMTP_MX_BAD;
    }

    /* Ascending preference (insertion sort: n is small, order stable). */
    for (i = 1; i < cnt; i++) {
        llsmtp_mx t = v[i];
        j = i;
        while (j > 0 && v[j - 1].pref > t.pref) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = t;
    }
    /* Equal preferences in random order (RFC 5321 5.1), Fisher-Yates. */
    for (i = 0; i < cnt;) {
        size_t end = i + 1;
        while (end < cnt && v[end].pref == v[i].pref)
            end++;
        for (j = end - 1; j > i; j--) {
            size_t k = i + mx_below(&st, j - i + 1);
            if (k != j) {
                llsmtp_mx t = v[j];
                v[j] = v[k];
                v[k] = t;
            }
        }
        i = end;
    }
    /* RFC 5321 5.1: drop this host and everything not better than it. */
    for (i = 0; i < cnt; i++) {
        if (mx_is_local(&v[i], opts)) {
            uint16_t lp = v[i].pref;
            j = 0;
            while (j < cnt && v[j].pref < lp)
                j++;
            cnt = j;
            *n = cnt;
            return cnt == 0 ? LLSMTP_MX_LOOP : LLSMTP_MX_OK;
        }
    }
    return LLSMTP_MX_OK;
}

int
llsmtp_mx_reply(int result, llsmtp_reply *r)
{
    switch (result) {
    case LLSMTP_MX_NULL:
        /* RFC 7505 4.2 / RFC 7505 3: X.1.10 */
        return llsmtp_reply_set(r, 556, "5.1.10",
                                "Recipient address has null MX");
    case LLSMTP_MX_LOOP:
        return llsmtp_reply_set(r, 554, "5.4.6",
                                "Mail for this domain loops back to myself");
    case LLSMTP_MX_BAD:
        return llsmtp_reply_set(r, 451, "4.4.4",
                                "Invalid MX records for this domain");
    default:
        return LLSMTP_E_INVAL;
    }
}

/* ---- relay hosts ---------------------------------------------------------- */

static int
mx_port(const char *p, size_t n, size_t at, uint16_t *port, size_t *err_at)
{
    size_t i;
    unsigned long v = 0;
    if (n == 0) {
        *err_at = at;
        return LLSMTP_E_SYNTAX;
    }
    for (i = 0; i < n; i++) {
        if (!llsmtp__is_digit((unsigned char)p[i])) {
            *err_at = at + i;
            return LLSMTP_E_SYNTAX;
        }
        if (v <= 65535)
            v = v * 10 + (unsigned long)(p[i] - '0');
    }
    if (v == 0 || v > 65535) {
        *err_at = at;
        return LLSMTP_E_RANGE;
    }
    *port = (uint16_t)v;
    return LLSMTP_OK;
}

int
llsmtp_relayhost_parse(const char *p, size_t n, llsmtp_relayhost *out,
                       size_t *err_at)
{
    size_t dummy, h0, hn, rest;
    int rc;
    if (err_at == NULL)
        err_at = &dummy;
    *err_at = 0;
    if (p == NULL || out == NULL)
        return LLSMTP_E_INVAL;
    memset(out, 0, sizeof *out);
    if (n == 0)
        return LLSMTP_E_SYNTAX;
    if (p[0] == '[') {
        const char *rb = (const char *)memchr(p, ']', n);
        if (rb == NULL) {
            *err_at = n;
            return LLSMTP_E_SYNTAX;
        }
        h0 = 1;
        hn = (size_t)(rb - p) - 1;
        rest = (size_t)(rb - p) + 1;
        out->no_mx = 1;
        if (hn > 5 && llsmtp__ieq(p + 1, "ipv6:", 5)) {
            h0 += 5;
            hn -= 5;
            if (llsmtp_ipv6_parse(p + h0, hn, out->ip.addr) != LLSMTP_OK) {
                *err_at = h0;
                return LLSMTP_E_SYNTAX;
            }
            out->ip.family = 6;
        }
    } else {
        const char *c1 = (const char *)memchr(p, ':', n);
        if (c1 != NULL && memchr(c1 + 1, ':', n - (size_t)(c1 - p) - 1)) {
            /* "2001:db8::1:25" is ambiguous: IPv6 needs brackets */
            *err_at = (size_t)(c1 - p);
            return LLSMTP_E_SYNTAX;
        }
        h0 = 0;
        hn = c1 != NULL ? (size_t)(c1 - p) : n;
        rest = hn;
    }
    if (rest < n) {
        if (p[rest] != ':') {
            *err_at = rest;
            return LLSMTP_E_SYNTAX;
        }
        rc = mx_port(p + rest + 1, n - rest - 1, rest + 1, &out->port, err_at);
        if (rc != LLSMTP_OK)
            return rc;
    }
    if (out->ip.family == 0 &&
        llsmtp_ip_parse(p + h0, hn, &out->ip) == LLSMTP_OK) {
        /* an address needs no MX lookup, bracketed or not */
        out->no_mx = 1;
    } else if (out->ip.family == 0) {
        size_t dl = mx_trim(p + h0, hn);
        rc = llsmtp_domain_check(p + h0, dl, 0);
        if (rc != LLSMTP_OK || dl > LLSMTP_NAME_MAX) {
            *err_at = h0;
            return dl > LLSMTP_NAME_MAX
                       ? LLSMTP_E_RANGE
                       : (rc == LLSMTP_OK ? LLSMTP_E_SYNTAX : rc);
        }
        hn = dl;
    }
    if (hn > LLSMTP_NAME_MAX) {
        *err_at = h0;
        return LLSMTP_E_RANGE;
    }
    memcpy(out->host, p + h0, hn);
    out->host[hn] = '\0';
    return LLSMTP_OK;
}
#endif /* LLSMTP_NO_MX */
