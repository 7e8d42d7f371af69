/* SPDX-License-Identifier: MIT
 *
 * dns.c - DNS wire format for mail routing (RFC 1035): build an MX, A or
 * AAAA query, parse the response into records, and gather an MX set with
 * its glue. Sans-IO: the host sends the bytes over UDP or TCP. Never
 * reads outside the packet: every length is checked, compression pointers
 * must point strictly backwards (so they cannot loop), names stay within
 * 255 octets and labels within 63.
 */
#include "internal.h"

#ifndef LLSMTP_NO_DNS
#define DNS_HDR 12
#define DNS_CLASS_IN 1
#define DNS_WIRE_NAME_MAX 255 /* RFC 1035 2.3.4 */
#define DNS_CNAME_HOPS 8

static uint16_t
dns_u16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t
dns_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

/* Bytes a name may hold and still be written as plain text. */
static int
dns_text_ok(uint8_t c)
{
    return c > 0x20 && c < 0x7f && c != '.' && c != '\\';
}

/* Reads the (possibly compressed) name at off. On success *next is the
 * offset after the name in place, out gets lower-case text without the
 * trailing dot, *plain says whether it had only printable bytes. */
static int
dns_name(const uint8_t *pkt, size_t len, size_t off, size_t *next, char *out,
         int *plain)
{
    size_t pos = off, run = off, wire = 0, o = 0;
    int jumped = 0, hops = 0;
    *plain = 1;
    for (;;) {
        uint8_t c;
        if (pos >= len)
            return LLSMTP_E_SYNTAX;
        c = pkt[pos];
        if (c == 0) {
            if (!jumped)
                *next = pos + 1;
            break;
        }
        if ((c & 0xC0) == 0xC0) {
            size_t ptr;
            if (pos + 1 >= len)
                return LLSMTP_E_SYNTAX;
            ptr = (size_t)(c & 0x3F) << 8 | pkt[pos + 1];
            /* strictly before the run we are reading: no loops */
            if (ptr >= run || ++hops > 127)
                return LLSMTP_E_SYNTAX;
            if (!jumped)
                *next = pos + 2;
            jumped = 1;
            pos = run = ptr;
            continue;
        }
        if (c & 0xC0)
            return LLSMTP_E_SYNTAX; /* extended label types (RFC 6891) */
        if (pos + 1 + c > len)
            return LLSMTP_E_SYNTAX;
        wire += (size_t)c + 1;
        if (wire + 1 > DNS_WIRE_NAME_MAX)
            return LLSMTP_E_SYNTAX;
        if (o)
            out[o++] = '.';
        {
            size_t i;
            for (i = 0; i < c; i++) {
                uint8_t b = pkt[pos + 1 + i];
                if (!dns_text_ok(b))
                    *plain = 0;
                out[o++] = (char)llsmtp__lower(b);
            }
        }
        pos += 1 + (size_t)c;
    }
    out[o] = '\0';
    return LLSMTP_OK;
}

int
llsmtp_dns_query(uint16_t id, const char *name, size_t name_len,
                 uint16_t qtype, int tcp, uint8_t *buf, size_t cap,
                 size_t *len)
{
    size_t o, i, lab;
    size_t need;
    if (name == NULL || buf == NULL || len == NULL)
        return LLSMTP_E_INVAL;
    if (name_len && name[name_len - 1] == '.')
        name_len--;
    if (name_len == 0 || name_len > LLSMTP_NAME_MAX)
        return LLSMTP_E_SYNTAX;
    need = (tcp ? 2u : 0u) + DNS_HDR + name_len + 2 + 4;
    if (cap < need)
        return LLSMTP_E_BUFFER;
    o = tcp ? 2 : 0;
    memset(buf + o, 0, DNS_HDR);
    buf[o] = (uint8_t)(id >> 8);
    buf[o + 1] = (uint8_t)id;
    buf[o + 2] = 0x01; /* RD */
    buf[o + 5] = 1;    /* QDCOUNT */
    o += DNS_HDR;
    lab = o++;
    for (i = 0; i <= name_len; i++) {
        if (i == name_len || name[i] == '.') {
            size_t l = o - lab - 1;
            if (l == 0 || l > 63)
                return LLSMTP_E_SYNTAX;
            buf[lab] = (uint8_t)l;
            lab = o++;
            continue;
        }
        if (!dns_text_ok((uint8_t)name[i]))
            return LLSMTP_E_SYNTAX;
        buf[o++] = (uint8_t)name[i];
    }
    buf[lab] = 0; /* root label */
    buf[o++] = (uint8_t)(qtype >> 8);
    buf[o++] = (uint8_t)qtype;
    buf[o++] = 0;
    buf[o++] = DNS_CLASS_IN;
    if (tcp) {
        buf[0] = (uint8_t)((o - 2) >> 8);
        buf[1] = (uint8_t)(o - 2);
    }
    *len = o;
    return LLSMTP_OK;
}

int
llsmtp_dns_parse(const uint8_t *pkt, size_t len, int tcp, uint16_t id,
                 const char *name, size_t name_len, uint16_t qtype,
                 llsmtp_dns_rr *rrs, size_t cap, size_t *nrr, size_t *total)
{
    size_t off, sec, dummy;
    unsigned counts[3];
    int rcode, plain;
    char qn[LLSMTP_NAME_MAX + 3];

    if (total == NULL)
        total = &dummy;
    if (pkt == NULL || nrr == NULL || name == NULL || (cap && rrs == NULL))
        return LLSMTP_E_INVAL;
    *nrr = 0;
    *total = 0;
    if (tcp) {
        size_t mlen;
        if (len < 2)
            return LLSMTP_E_SYNTAX;
        mlen = dns_u16(pkt);
        if (mlen > len - 2)
            return LLSMTP_E_SYNTAX;
        pkt += 2;
        len = mlen;
    }
    if (len < DNS_HDR)
        return LLSMTP_E_SYNTAX;
    /* Not our answer: wrong id, not a response, or another question. */
    if (dns_u16(pkt) != id || !(pkt[2] & 0x80) || (pkt[2] & 0x78) ||
        dns_u16(pkt + 4) != 1)
        return LLSMTP_DNS_MISMATCH;
    if (dns_name(pkt, len, DNS_HDR, &off, qn, &plain) != LLSMTP_OK)
        return LLSMTP_E_SYNTAX;
    if (off + 4 > len)
        return LLSMTP_E_SYNTAX;
    if (!llsmtp__name_eq(qn, strlen(qn), name, name_len) ||
        dns_u16(pkt + off) != qtype || dns_u16(pkt + off + 2) != DNS_CLASS_IN)
        return LLSMTP_DNS_MISMATCH;
    off += 4;
    if (pkt[2] & 0x02)
        return LLSMTP_DNS_TRUNCATED;
    rcode = pkt[3] & 0x0F;
    if (rcode == 3)
        return LLSMTP_DNS_NXDOMAIN;
    if (rcode == 2)
        return LLSMTP_DNS_SERVFAIL;
    if (rcode != 0)
        return LLSMTP_DNS_REFUSED;
    counts[0] = dns_u16(pkt + 6);  /* answer */
    counts[1] = dns_u16(pkt + 8);  /* authority */
    counts[2] = dns_u16(pkt + 10); /* additional */
    for (sec = 0; sec < 3; sec++) {
        unsigned k;
        for (k = 0; k < counts[sec]; k++) {
            llsmtp_dns_rr rr;
            size_t rd, rdlen, end;
            uint16_t type, cls;
            int ok = 1;
            memset(&rr, 0, sizeof rr);
            if (dns_name(pkt, len, off, &off, rr.owner, &plain) != LLSMTP_OK)
                return LLSMTP_E_SYNTAX;
            ok = plain;
            if (off + 10 > len)
                return LLSMTP_E_SYNTAX;
            type = dns_u16(pkt + off);
            cls = dns_u16(pkt + off + 2);
            rr.ttl = dns_u32(pkt + off + 4);
            rdlen = dns_u16(pkt + off + 8);
            rd = off + 10;
            end = rd + rdlen;
            if (end > len)
                return LLSMTP_E_SYNTAX;
            off = end;
            if (sec == 1 || cls != DNS_CLASS_IN)
                continue;
            rr.type = type;
            rr.in_answer = sec == 0;
            switch (type) {
            case LLSMTP_DNS_A:
                if (rdlen != 4)
                    return LLSMTP_E_SYNTAX;
                rr.ip.family = 4;
                memcpy(rr.ip.addr, pkt + rd, 4);
                break;
            case LLSMTP_DNS_AAAA:
                if (rdlen != 16)
                    return LLSMTP_E_SYNTAX;
                rr.ip.family = 6;
                memcpy(rr.ip.addr, pkt + rd, 16);
                break;
            case LLSMTP_DNS_MX:
            case LLSMTP_DNS_CNAME: {
                size_t nameoff = rd, after;
                if (type == LLSMTP_DNS_MX) {
                    if (rdlen < 3)
                        return LLSMTP_E_SYNTAX;
                    rr.pref = dns_u16(pkt + rd);
                    nameoff += 2;
                }
                /* the name must end inside the rdata */
                if (dns_name(pkt, end, nameoff, &after, rr.target, &plain) !=
                        LLSMTP_OK ||
                    after != end)
                    return LLSMTP_E_SYNTAX;
                ok = ok && plain;
                break;
            }
            default:
                continue; /* other types are not ours */
            }
            if (!ok)
                continue; /* names we cannot write as text */
            if (*nrr < cap)
                rrs[(*nrr)++] = rr;
            (*total)++;
        }
    }
    return LLSMTP_DNS_NOERROR;
}

/* Follows CNAMEs from name; returns the final owner name (into buf). */
static int
dns_follow(const llsmtp_dns_rr *rrs, size_t nrr, const char *name,
           size_t name_len, char *buf)
{
    int hops;
    size_t i, n = name_len;
    if (n && name[n - 1] == '.')
        n--;
    if (n > LLSMTP_NAME_MAX)
        return LLSMTP_E_RANGE;
    memcpy(buf, name, n);
    buf[n] = '\0';
    for (hops = 0;; hops++) {
        for (i = 0; i < nrr; i++)
            if (rrs[i].type == LLSMTP_DNS_CNAME &&
                llsmtp__name_eq(rrs[i].owner, strlen(rrs[i].owner), buf,
                                strlen(buf)))
                break;
        if (i == nrr)
            return LLSMTP_OK;
        if (hops == DNS_CNAME_HOPS)
            return LLSMTP_E_RANGE; /* too long, or a loop */
        memmove(buf, rrs[i].target, strlen(rrs[i].target) + 1);
    }
}

size_t
llsmtp_dns_addrs(const llsmtp_dns_rr *rrs, size_t nrr, llsmtp_mx *mx)
{
    char owner[LLSMTP_NAME_MAX + 1];
    size_t i, added = 0;
    if (rrs == NULL || mx == NULL ||
        dns_follow(rrs, nrr, mx->host, strlen(mx->host), owner) != LLSMTP_OK)
        return 0;
    for (i = 0; i < nrr; i++) {
        size_t k;
        const llsmtp_dns_rr *r = &rrs[i];
        if ((r->type != LLSMTP_DNS_A && r->type != LLSMTP_DNS_AAAA) ||
            !llsmtp__name_eq(r->owner, strlen(r->owner), owner, strlen(owner)))
            continue;
        for (k = 0; k < mx->naddrs; k++)
            if (mx->addrs[k].family == r->ip.family &&
                memcmp(mx->addrs[k].addr, r->ip.addr,
                       r->ip.family == 4 ? 4 : 16) == 0)
                break;
        if (k < mx->naddrs || mx->naddrs >= LLSMTP_MX_ADDRS_MAX)
            continue;
        mx->addrs[mx->naddrs++] = r->ip;
        added++;
    }
    return added;
}

int
llsmtp_dns_mx(const llsmtp_dns_rr *rrs, size_t nrr, const char *name,
              size_t name_len, llsmtp_mx *v, size_t cap, size_t *n)
{
    char owner[LLSMTP_NAME_MAX + 1];
    size_t i;
    int rc, dropped = 0;
    if (rrs == NULL || name == NULL || n == NULL || (cap && v == NULL))
        return LLSMTP_E_INVAL;
    *n = 0;
    rc = dns_follow(rrs, nrr, name, name_len, owner);
    if (rc != LLSMTP_OK)
        return rc;
    for (i = 0; i < nrr; i++) {
        const llsmtp_dns_rr *r = &rrs[i];
        llsmtp_mx *m;
        if (r->type != LLSMTP_DNS_MX || !r->in_answer ||
            !llsmtp__name_eq(r->owner, strlen(r->owner), owner, strlen(owner)))
            continue;
        if (*n == cap) {
            /* Full. Stopping here would keep the wire order's first
             * records, which may be the worst (RFC 5321 5.1 tries the
             * lowest preference first): a better record replaces the
             * worst kept one (the last of equals: the first seen stay),
             * whose slot closes up so the rest keep their order. */
            size_t k, worst = 0;
            dropped = 1;
            for (k = 1; k < cap; k++)
                if (v[k].pref >= v[worst].pref)
                    worst = k;
            if (cap == 0 || r->pref >= v[worst].pref)
                continue;
            memmove(&v[worst], &v[worst + 1], (cap - worst - 1) * sizeof *v);
            (*n)--;
        }
        m = &v[(*n)++];
        memset(m, 0, sizeof *m);
        m->pref = r->pref;
        memcpy(m->host, r->target, strlen(r->target) + 1);
        llsmtp_dns_addrs(rrs, nrr, m);
    }
    if (dropped) /* not ?: with two enum types: C++ warns (amalgamation) */
        return LLSMTP_DNS_PARTIAL;
    return LLSMTP_OK;
}
#else
typedef int llsmtp__llsmtp_no_dns_left_out; /* ISO C: no empty file */
#endif /* LLSMTP_NO_DNS */
