/* SPDX-License-Identifier: MIT
 *
 * path.c - RFC 5321 4.1.2 syntax: Path and Mailbox (dot-string or quoted
 * local parts, domains, IPv4/IPv6/general address literals, source routes
 * that are parsed and ignored per 4.1.1.3 and Appendix C), ESMTP
 * parameters as key/value spans, and UTF-8 (RFC 6531) when asked for.
 * Pure functions over (pointer, length); nothing is copied or allocated.
 */
#include "internal.h"

/* RFC 1035 2.3.4 / RFC 5321 4.5.3.1.2 */
#define PATH_LABEL_MAX 63
#define PATH_DOMAIN_MAX 255

size_t
llsmtp__utf8_len(const unsigned char *p, size_t n)
{
    unsigned char c;
    if (n == 0)
        return 0;
    c = p[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return n >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (n < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
            return 0;
        if (c == 0xe0 && p[1] < 0xa0)
            return 0; /* overlong */
        if (c == 0xed && p[1] >= 0xa0)
            return 0; /* surrogates */
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (n < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 ||
            (p[3] & 0xc0) != 0x80)
            return 0;
        if (c == 0xf0 && p[1] < 0x90)
            return 0; /* overlong */
        if (c == 0xf4 && p[1] >= 0x90)
            return 0; /* > U+10FFFF */
        return 4;
    }
    return 0;
}

int
llsmtp_ipv4_parse(const char *p, size_t n, uint8_t out[4])
{
    size_t i = 0;
    int k;
    for (k = 0; k < 4; k++) {
        unsigned v = 0;
        size_t start = i;
        if (k > 0) {
            if (i >= n || p[i] != '.')
                return LLSMTP_E_SYNTAX;
            start = ++i;
        }
        while (i < n && llsmtp__is_digit((unsigned char)p[i]) && i - start < 3)
            v = v * 10 + (unsigned)(p[i++] - '0');
        /* RFC 5321 Snum allows "010", but other software reads it as
         * octal 8: refuse the ambiguity rather than guess. */
        if (i == start || v > 255 || (i - start > 1 && p[start] == '0'))
            return LLSMTP_E_SYNTAX;
        out[k] = (uint8_t)v;
    }
    return i == n ? LLSMTP_OK : LLSMTP_E_SYNTAX;
}

static unsigned
path_hexval(unsigned char c)
{
    return llsmtp__is_digit(c) ? (unsigned)(c - '0')
                               : (unsigned)(llsmtp__lower(c) - 'a' + 10);
}

int
llsmtp_ipv6_parse(const char *p, size_t n, uint8_t out[16])
{
    uint16_t g[8];
    int ng = 0, dc = -1, k;
    size_t i = 0;

    if (n >= 2 && p[0] == ':' && p[1] == ':') {
        dc = 0;
        i = 2;
    } else if (n == 0 || p[0] == ':') {
        return LLSMTP_E_SYNTAX;
    }
    while (i < n) {
        size_t j = i;
        unsigned v = 0;
        if (ng == 8)
            return LLSMTP_E_SYNTAX;
        while (j < n && llsmtp__is_xdigit((unsigned char)p[j]))
            j++;
        if (j < n && p[j] == '.') {
            uint8_t v4[4];
            if (ng > 6 || llsmtp_ipv4_parse(p + i, n - i, v4) != LLSMTP_OK)
                return LLSMTP_E_SYNTAX;
            g[ng++] = (uint16_t)(v4[0] << 8 | v4[1]);
            g[ng++] = (uint16_t)(v4[2] << 8 | v4[3]);
            break;
        }
        if (j == i || j - i > 4)
            return LLSMTP_E_SYNTAX;
        for (; i < j; i++)
            v = v << 4 | path_hexval((unsigned char)p[i]);
        g[ng++] = (uint16_t)v;
        if (j == n)
            break;
        if (p[j] != ':')
            return LLSMTP_E_SYNTAX;
        j++;
        if (j < n && p[j] == ':') {
            if (dc >= 0)
                return LLSMTP_E_SYNTAX;
            dc = ng;
            j++;
        } else if (j == n) {
            return LLSMTP_E_SYNTAX;
        }
        i = j;
    }
    if ((dc < 0 && ng != 8) || (dc >= 0 && ng > 7))
        return LLSMTP_E_SYNTAX;
    memset(out, 0, 16);
    for (k = 0; k < ng; k++) {
        size_t pos = (size_t)((dc >= 0 && k >= dc) ? 8 - (ng - k) : k);
        out[2 * pos] = (uint8_t)(g[k] >> 8);
        out[2 * pos + 1] = (uint8_t)(g[k] & 0xff);
    }
    return LLSMTP_OK;
}

/* Domain at p[*i..n): sub-domain *("." sub-domain), each Let-dig
 * [Ldh-str] (or UTF-8 U-labels when allowed). Stops at the first byte
 * that cannot continue it. */
static int
path_domain(const char *p, size_t n, size_t *i, unsigned opts)
{
    size_t start = *i, j = *i;
    for (;;) {
        size_t lab = j;
        int last_hyphen = 0;
        while (j < n) {
            unsigned char c = (unsigned char)p[j];
            if (llsmtp__is_alnum(c)) {
                last_hyphen = 0;
                j++;
            } else if (c == '-' && j > lab) {
                last_hyphen = 1;
                j++;
            } else if (c >= 0x80 && (opts & LLSMTP_PARSE_UTF8)) {
                size_t l = llsmtp__utf8_len((const unsigned char *)p + j,
                                            n - j);
                if (l == 0) {
                    *i = j;
                    return LLSMTP_E_SYNTAX;
                }
                last_hyphen = 0;
                j += l;
            } else {
                break;
            }
        }
        if (j == lab || last_hyphen) {
            *i = j == lab ? j : j - 1;
            return LLSMTP_E_SYNTAX;
        }
        if (j - lab > PATH_LABEL_MAX) {
            *i = lab;
            return LLSMTP_E_RANGE;
        }
        if (j < n && p[j] == '.') {
            j++;
            continue;
        }
        break;
    }
    if (j - start > PATH_DOMAIN_MAX) {
        *i = start;
        return LLSMTP_E_RANGE;
    }
    *i = j;
    return LLSMTP_OK;
}

int
llsmtp__host_name_ok(const char *h, size_t n)
{
    uint8_t a[16];
    if (n > 2 && h[0] == '[' && h[n - 1] == ']') {
        if (n > 7 && llsmtp__ieq(h + 1, "ipv6:", 5))
            return llsmtp_ipv6_parse(h + 6, n - 7, a) == LLSMTP_OK;
        return llsmtp_ipv4_parse(h + 1, n - 2, a) == LLSMTP_OK;
    }
    return llsmtp_domain_check(h, n, 0) == LLSMTP_OK;
}

int
llsmtp_domain_check(const char *p, size_t n, unsigned opts)
{
    size_t i = 0;
    int rc;
    if (p == NULL)
        return LLSMTP_E_INVAL;
    rc = path_domain(p, n, &i, opts);
    if (rc != LLSMTP_OK)
        return rc;
    return i == n ? LLSMTP_OK : LLSMTP_E_SYNTAX;
}

/* address-literal = "[" ( IPv4 / "IPv6:" IPv6 / tag ":" 1*dcontent ) "]" */
static int
path_literal(const char *p, size_t n, size_t *i, unsigned *flags)
{
    size_t start = *i + 1, j = start, k;
    uint8_t a[16];
    while (j < n && p[j] != ']') {
        unsigned char c = (unsigned char)p[j];
        if (c < 33 || c > 126 || c == '[' || c == '\\') {
            *i = j;
            return LLSMTP_E_SYNTAX;
        }
        j++;
    }
    if (j >= n || j == start) {
        *i = j;
        return LLSMTP_E_SYNTAX;
    }
    if (llsmtp__is_digit((unsigned char)p[start]) &&
        llsmtp_ipv4_parse(p + start, j - start, a) == LLSMTP_OK) {
        *flags |= LLSMTP_PATH_IPV4;
    } else if (j - start > 5 && llsmtp__ieq(p + start, "ipv6:", 5)) {
        if (llsmtp_ipv6_parse(p + start + 5, j - start - 5, a) != LLSMTP_OK) {
            *i = start + 5;
            return LLSMTP_E_SYNTAX;
        }
        *flags |= LLSMTP_PATH_IPV6;
    } else {
        /* General-address-literal: Standardized-tag ":" 1*dcontent */
        for (k = start; k < j && p[k] != ':'; k++)
            if (!llsmtp__is_alnum((unsigned char)p[k]) && p[k] != '-')
                break;
        if (k == start || k >= j - 1 || p[k] != ':' || p[k - 1] == '-') {
            *i = k;
            return LLSMTP_E_SYNTAX;
        }
    }
    *flags |= LLSMTP_PATH_LITERAL;
    *i = j + 1;
    return LLSMTP_OK;
}

/* One UTF-8 character at p[*j] when RFC 6531 is in force: advances *j and
 * flags the path, or reports the offset of a bad sequence. */
static int
path_utf8(const char *p, size_t n, size_t *j, size_t *err, unsigned *flags)
{
    size_t l = llsmtp__utf8_len((const unsigned char *)p + *j, n - *j);
    if (l == 0) {
        *err = *j;
        return LLSMTP_E_SYNTAX;
    }
    *flags |= LLSMTP_PATH_UTF8;
    *j += l;
    return LLSMTP_OK;
}

/* Local-part = Dot-string / Quoted-string */
static int
path_local(const char *p, size_t n, size_t *i, unsigned opts, unsigned *flags)
{
    size_t j = *i;
    if (j < n && p[j] == '"') {
        j++;
        while (j < n && p[j] != '"') {
            unsigned char c = (unsigned char)p[j];
            if (c == '\\') {
                if (j + 1 >= n || (unsigned char)p[j + 1] < 32 ||
                    (unsigned char)p[j + 1] > 126) {
                    *i = j;
                    return LLSMTP_E_SYNTAX;
                }
                j += 2;
            } else if (c >= 32 && c <= 126) {
                j++;
            } else if (c >= 0x80 && (opts & LLSMTP_PARSE_UTF8)) {
                if (path_utf8(p, n, &j, i, flags) != LLSMTP_OK)
                    return LLSMTP_E_SYNTAX;
            } else {
                *i = j;
                return LLSMTP_E_SYNTAX;
            }
        }
        if (j >= n) {
            *i = j;
            return LLSMTP_E_SYNTAX;
        }
        *flags |= LLSMTP_PATH_QUOTED;
        *i = j + 1;
        return LLSMTP_OK;
    }
    for (;;) {
        size_t atom = j;
        while (j < n) {
            unsigned char c = (unsigned char)p[j];
            if (llsmtp__is_atext(c)) {
                j++;
            } else if (c >= 0x80 && (opts & LLSMTP_PARSE_UTF8)) {
                if (path_utf8(p, n, &j, i, flags) != LLSMTP_OK)
                    return LLSMTP_E_SYNTAX;
            } else {
                break;
            }
        }
        if (j == atom) {
            *i = j;
            return LLSMTP_E_SYNTAX;
        }
        if (j < n && p[j] == '.') {
            j++;
            continue;
        }
        break;
    }
    *i = j;
    return LLSMTP_OK;
}

/* The octets of the common path, by class: atext (RFC 5322 3.2.3, a
 * Dot-string's atoms) and Let-dig / "-" (a domain's labels). */
enum { PATH_ATEXT = 1, PATH_LDH = 2 };

/* clang-format off */
static const unsigned char path_cls[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 3, 0, 1, /*  !"#$%&'()*+,-./ */
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 0, 0, 1, 0, 1, /* 0-9 :;<=>? */
    0, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, /* @ A-O */
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 0, 0, 1, 1, /* P-Z [\]^_ */
    1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, /* ` a-o */
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 1, 1, 1, 1, 0, /* p-z {|}~ DEL */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
/* clang-format on */

/* Where the run of octets of class cls from u[i] ends, before n; with
 * term, at the first octet not of the class, which is there at the
 * latest at u[n] (then four are tested a round, each read only after the
 * one before it passed: none past that octet). */
static inline size_t
path_scan(const unsigned char *u, size_t i, size_t n, int term, unsigned cls)
{
    if (!term) {
        while (i < n && (path_cls[u[i]] & cls))
            i++;
        return i;
    }
    for (;; i += 4) {
        if (!(path_cls[u[i]] & cls))
            return i;
        if (!(path_cls[u[i + 1]] & cls))
            return i + 1;
        if (!(path_cls[u[i + 2]] & cls))
            return i + 2;
        if (!(path_cls[u[i + 3]] & cls))
            return i + 3;
    }
}

/* The common path, "<Dot-string@Domain>" in ASCII with no route: parsed
 * in one pass over the octets' classes. Returns 1 with *out and *end as
 * the general parser sets them, or 0 for any other input (a route, a
 * quoted local part, an address literal, UTF-8, <>, <Postmaster>, and
 * every error), which the general parser then parses from the start:
 * it alone says what is wrong and where. tests/test_path.c compares the
 * two on generated paths. With term, p[n] is readable and of neither
 * class (a command line's space, CR or LF after its argument), so a
 * scan stops there at the latest with no bound to check an octet. */
static inline int
path_fast(const char *p, size_t n, int term, llsmtp_path *out, size_t *end)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t i = 1, dom, lab;
    if (n < 5 || u[0] != '<')
        return 0;
    for (;;) { /* Atom *("." Atom) */
        lab = i;
        i = path_scan(u, i, n, term, PATH_ATEXT);
        if (i == lab || i >= n)
            return 0;
        if (u[i] != '.')
            break;
        i++;
    }
    if (u[i] != '@')
        return 0;
    dom = ++i;
    for (;;) { /* sub-domain *("." sub-domain), Let-dig [Ldh-str] */
        lab = i;
        i = path_scan(u, i, n, term, PATH_LDH);
        if (i == lab || i >= n || u[lab] == '-' || u[i - 1] == '-' ||
            i - lab > PATH_LABEL_MAX)
            return 0;
        if (u[i] != '.')
            break;
        i++;
    }
    if (u[i] != '>' || i - dom > PATH_DOMAIN_MAX)
        return 0;
    out->mailbox.p = p + 1;
    out->mailbox.n = i - 1;
    out->local.p = p + 1;
    out->local.n = dom - 2;
    out->domain.p = p + dom;
    out->domain.n = i - dom;
    out->route.p = NULL;
    out->route.n = 0;
    out->flags = 0;
    *end = i + 1;
    return 1;
}

int
llsmtp_path_parse(const char *p, size_t n, unsigned opts, llsmtp_path *out,
                  size_t *end)
{
    size_t dummy;
    if (end == NULL)
        end = &dummy;
    if (p != NULL && out != NULL && path_fast(p, n, 0, out, end))
        return LLSMTP_OK;
    return llsmtp__path_parse_general(p, n, opts, out, end);
}

int
llsmtp__path_parse_line(const char *p, size_t n, unsigned opts,
                        llsmtp_path *out, size_t *end)
{
    if (path_fast(p, n, 1, out, end))
        return LLSMTP_OK;
    return llsmtp__path_parse_general(p, n, opts, out, end);
}

int
llsmtp__path_parse_general(const char *p, size_t n, unsigned opts,
                           llsmtp_path *out, size_t *end)
{
    size_t i = 0, dummy;
    int rc;
    llsmtp_path path;

    if (end == NULL)
        end = &dummy;
    if (p == NULL || out == NULL) {
        *end = 0;
        return LLSMTP_E_INVAL;
    }
    memset(&path, 0, sizeof path);
    if (n == 0 || p[0] != '<') {
        *end = 0;
        return LLSMTP_E_SYNTAX;
    }
    i = 1;
    if (i < n && p[i] == '>') {
        if (!(opts & LLSMTP_PARSE_ALLOW_NULL)) {
            *end = i;
            return LLSMTP_E_SYNTAX;
        }
        path.flags = LLSMTP_PATH_NULL;
        path.mailbox.p = p + 1;
        *out = path;
        *end = 2;
        return LLSMTP_OK;
    }
    /* A-d-l = At-domain *( "," At-domain ) ":"  (4.1.1.3: ignored) */
    if (i < n && p[i] == '@') {
        size_t r0 = i;
        for (;;) {
            if (i >= n || p[i] != '@') {
                *end = i;
                return LLSMTP_E_SYNTAX;
            }
            i++;
            rc = path_domain(p, n, &i, opts);
            if (rc != LLSMTP_OK) {
                *end = i;
                return rc;
            }
            if (i < n && p[i] == ',') {
                i++;
                continue;
            }
            break;
        }
        if (i >= n || p[i] != ':') {
            *end = i;
            return LLSMTP_E_SYNTAX;
        }
        path.route.p = p + r0;
        path.route.n = i - r0;
        path.flags |= LLSMTP_PATH_ROUTE;
        i++;
    }
    path.mailbox.p = p + i;
    path.local.p = p + i;
    rc = path_local(p, n, &i, opts, &path.flags);
    if (rc != LLSMTP_OK) {
        *end = i;
        return rc;
    }
    path.local.n = (size_t)(p + i - path.local.p);
    if (i < n && p[i] == '>' && (opts & LLSMTP_PARSE_ALLOW_POSTMASTER) &&
        !(path.flags & (LLSMTP_PATH_ROUTE | LLSMTP_PATH_QUOTED)) &&
        path.local.n == 10 && llsmtp__ieq(path.local.p, "postmaster", 10)) {
        /* RFC 5321 4.1.1.3: "<Postmaster>" without a domain. */
        path.flags |= LLSMTP_PATH_POSTMASTER;
        path.mailbox.n = path.local.n;
        *out = path;
        *end = i + 1;
        return LLSMTP_OK;
    }
    if (i >= n || p[i] != '@') {
        *end = i;
        return LLSMTP_E_SYNTAX;
    }
    i++;
    path.domain.p = p + i;
    if (i < n && p[i] == '[')
        rc = path_literal(p, n, &i, &path.flags);
    else
        rc = path_domain(p, n, &i, opts);
    if (rc != LLSMTP_OK) {
        *end = i;
        return rc;
    }
    path.domain.n = (size_t)(p + i - path.domain.p);
    if (i >= n || p[i] != '>') {
        *end = i;
        return LLSMTP_E_SYNTAX;
    }
    path.mailbox.n = (size_t)(p + i - path.mailbox.p);
    if ((path.flags & LLSMTP_PATH_UTF8) == 0 && (opts & LLSMTP_PARSE_UTF8)) {
        size_t k;
        for (k = 0; k < path.domain.n; k++)
            if ((unsigned char)path.domain.p[k] >= 0x80)
                path.flags |= LLSMTP_PATH_UTF8;
    }
    *out = path;
    *end = i + 1;
    return LLSMTP_OK;
}

/* esmtp-param = esmtp-keyword ["=" esmtp-value]
 * esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
 * esmtp-value = 1*(%d33-60 / %d62-126) (plus UTF-8 under RFC 6531) */
int
llsmtp_params_parse(const char *p, size_t n, unsigned opts, llsmtp_params *out,
                    size_t *end)
{
    size_t i = 0, dummy;
    if (end == NULL)
        end = &dummy;
    if (out == NULL || (p == NULL && n != 0)) {
        *end = 0;
        return LLSMTP_E_INVAL;
    }
    out->n = 0;
    for (;;) {
        llsmtp_param *pp;
        size_t k0;
        while (i < n && p[i] == ' ')
            i++;
        if (i >= n)
            break;
        if (out->n == LLSMTP_PARAMS_MAX) {
            *end = i;
            return LLSMTP_E_RANGE;
        }
        pp = &out->v[out->n];
        k0 = i;
        if (!llsmtp__is_alnum((unsigned char)p[i])) {
            *end = i;
            return LLSMTP_E_SYNTAX;
        }
        while (i < n && (llsmtp__is_alnum((unsigned char)p[i]) || p[i] == '-'))
            i++;
        pp->key.p = p + k0;
        pp->key.n = i - k0;
        pp->value.p = NULL;
        pp->value.n = 0;
        if (i < n && p[i] == '=') {
            size_t v0 = ++i;
            while (i < n) {
                unsigned char c = (unsigned char)p[i];
                if (c >= 33 && c <= 126 && c != '=') {
                    i++;
                } else if (c >= 0x80 && (opts & LLSMTP_PARSE_UTF8)) {
                    size_t l = llsmtp__utf8_len((const unsigned char *)p + i,
                                                n - i);
                    if (l == 0)
                        break;
                    i += l;
                } else {
                    break;
                }
            }
            if (i == v0) {
                *end = i;
                return LLSMTP_E_SYNTAX;
            }
            pp->value.p = p + v0;
            pp->value.n = i - v0;
        }
        if (i < n && p[i] != ' ') {
            *end = i;
            return LLSMTP_E_SYNTAX;
        }
        out->n++;
    }
    *end = i;
    return LLSMTP_OK;
}

const llsmtp_param *
llsmtp_params_get(const llsmtp_params *ps, const char *key)
{
    size_t i, klen;
    if (ps == NULL || key == NULL)
        return NULL;
    klen = strlen(key);
    for (i = 0; i < ps->n; i++)
        if (llsmtp__iequal(ps->v[i].key.p, ps->v[i].key.n, key, klen))
            return &ps->v[i];
    return NULL;
}

/* RFC 3461 4: xtext = *( xchar / hexchar ), xchar = "!".."~" except "+"
 * and "=", hexchar = "+" 2 upper-case HEXDIG. */
int
llsmtp_xtext_decode(const char *p, size_t n, char *out, size_t cap,
                    size_t *outlen)
{
    size_t i, o = 0;
    if ((p == NULL && n) || (out == NULL && cap))
        return LLSMTP_E_INVAL;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '+') {
            unsigned char h1, h2;
            if (n - i < 3)
                return LLSMTP_E_SYNTAX;
            h1 = (unsigned char)p[i + 1];
            h2 = (unsigned char)p[i + 2];
            if (!((llsmtp__is_digit(h1) || (h1 >= 'A' && h1 <= 'F')) &&
                  (llsmtp__is_digit(h2) || (h2 >= 'A' && h2 <= 'F'))))
                return LLSMTP_E_SYNTAX;
            c = (unsigned char)(path_hexval(h1) << 4 | path_hexval(h2));
            i += 2;
        } else if (c < 33 || c > 126 || c == '=') {
            return LLSMTP_E_SYNTAX;
        }
        if (out != NULL) {
            if (o >= cap)
                return LLSMTP_E_BUFFER;
            out[o] = (char)c;
        }
        o++;
    }
    if (outlen != NULL)
        *outlen = o;
    return LLSMTP_OK;
}

int
llsmtp_dsn_notify_parse(const char *p, size_t n, unsigned *flags)
{
    static const struct {
        const char *name;
        unsigned bit;
    } words[] = {{"never", LLSMTP_NOTIFY_NEVER},
                 {"success", LLSMTP_NOTIFY_SUCCESS},
                 {"failure", LLSMTP_NOTIFY_FAILURE},
                 {"delay", LLSMTP_NOTIFY_DELAY}};
    size_t i = 0, k;
    unsigned f = 0;
    if (p == NULL || flags == NULL)
        return LLSMTP_E_INVAL;
    for (;;) {
        size_t start = i;
        unsigned bit = 0;
        while (i < n && p[i] != ',')
            i++;
        for (k = 0; k < sizeof words / sizeof words[0]; k++)
            if (llsmtp__iequal(p + start, i - start, words[k].name,
                               strlen(words[k].name)))
                bit = words[k].bit;
        if (bit == 0 || (f & bit))
            return LLSMTP_E_SYNTAX;
        f |= bit;
        if (i >= n)
            break;
        i++; /* the comma */
    }
    /* RFC 3461 4.1: NEVER must appear alone */
    if ((f & LLSMTP_NOTIFY_NEVER) && f != LLSMTP_NOTIFY_NEVER)
        return LLSMTP_E_SYNTAX;
    *flags = f;
    return LLSMTP_OK;
}

int
llsmtp_dsn_orcpt_parse(const char *p, size_t n, llsmtp_span *addr_type,
                       llsmtp_span *xtext)
{
    size_t i = 0;
    if (p == NULL || addr_type == NULL || xtext == NULL)
        return LLSMTP_E_INVAL;
    while (i < n && p[i] != ';') {
        if (!llsmtp__is_atext((unsigned char)p[i]))
            return LLSMTP_E_SYNTAX;
        i++;
    }
    if (i == 0 || i >= n - 1)
        return LLSMTP_E_SYNTAX;
    if (llsmtp_xtext_decode(p + i + 1, n - i - 1, NULL, 0, NULL) != LLSMTP_OK)
        return LLSMTP_E_SYNTAX;
    addr_type->p = p;
    addr_type->n = i;
    xtext->p = p + i + 1;
    xtext->n = n - i - 1;
    return LLSMTP_OK;
}
