/* SPDX-License-Identifier: MIT
 *
 * test_dns.c - DNS wire format: query building, response parsing with
 * compression, glue, CNAME chains, RCODEs, TC, TCP framing, and hostile
 * packets (pointer loops, forward pointers, truncation at every length,
 * oversized labels and names, rdata overruns, spoofed id or question).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"

/* A tiny packet builder. */
typedef struct pk {
    uint8_t b[2048];
    size_t n;
} pk;

static void
u8(pk *p, unsigned v)
{
    p->b[p->n++] = (uint8_t)v;
}
static void
u16(pk *p, unsigned v)
{
    u8(p, v >> 8);
    u8(p, v & 0xff);
}
static void
u32(pk *p, unsigned long v)
{
    u16(p, (unsigned)(v >> 16));
    u16(p, (unsigned)(v & 0xffff));
}
/* a dotted name, uncompressed */
static void
name(pk *p, const char *s)
{
    while (*s) {
        const char *dot = strchr(s, '.');
        size_t l = dot ? (size_t)(dot - s) : strlen(s);
        u8(p, (unsigned)l);
        memcpy(p->b + p->n, s, l);
        p->n += l;
        s += l + (dot ? 1 : 0);
    }
    u8(p, 0);
}
static void
ptr(pk *p, unsigned off)
{
    u16(p, 0xC000 | off);
}
static void
hdr(pk *p, unsigned id, unsigned flags, unsigned qd, unsigned an, unsigned ns,
    unsigned ar)
{
    p->n = 0;
    u16(p, id);
    u16(p, flags);
    u16(p, qd);
    u16(p, an);
    u16(p, ns);
    u16(p, ar);
}
static void
question(pk *p, const char *q, unsigned type)
{
    name(p, q);
    u16(p, type);
    u16(p, 1);
}
/* RR header after the owner name; returns where rdlength is. */
static size_t
rr(pk *p, unsigned type, unsigned rdlen)
{
    size_t at;
    u16(p, type);
    u16(p, 1);
    u32(p, 3600);
    at = p->n;
    u16(p, rdlen);
    return at;
}
static void
fix_rdlen(pk *p, size_t at)
{
    size_t l = p->n - at - 2;
    p->b[at] = (uint8_t)(l >> 8);
    p->b[at + 1] = (uint8_t)l;
}

#define RESP 0x8180 /* QR, RD, RA, NOERROR */

/* example.org MX: two MX (compressed), glue A + AAAA */
static void
build_mx(pk *p)
{
    size_t at;
    hdr(p, 0x1234, RESP, 1, 2, 0, 2);
    question(p, "example.org", 15); /* name at offset 12 */
    ptr(p, 12);
    at = rr(p, 15, 0);
    u16(p, 10);
    u8(p, 3);
    memcpy(p->b + p->n, "mx1", 3);
    p->n += 3;
    ptr(p, 12); /* mx1.example.org, label at offset 43 */
    fix_rdlen(p, at);
    ptr(p, 12);
    at = rr(p, 15, 0);
    u16(p, 20);
    name(p, "mx2.example.org");
    fix_rdlen(p, at);
    ptr(p, 43); /* mx1.example.org */
    rr(p, 1, 4);
    u8(p, 192), u8(p, 0), u8(p, 2), u8(p, 1);
    ptr(p, 43);
    rr(p, 28, 16);
    u16(p, 0x2001), u16(p, 0xdb8), u32(p, 0), u32(p, 0), u16(p, 0), u16(p, 1);
}

static int
parse(const pk *p, const char *q, unsigned qtype, llsmtp_dns_rr *rrs,
      size_t cap, size_t *n)
{
    size_t total;
    return llsmtp_dns_parse(p->b, p->n, 0, 0x1234, q, strlen(q),
                            (uint16_t)qtype, rrs, cap, n, &total);
}

static void
test_query(void **state)
{
    uint8_t buf[512];
    size_t len;
    static const uint8_t want[] = {0x12, 0x34, 0x01, 0x00, 0, 1,   0,   0,
                                   0,    0,    0,    0,    7, 'e', 'x', 'a',
                                   'm',  'p',  'l',  'e',  3, 'o', 'r', 'g',
                                   0,    0,    15,   0,    1};
    char big[300];
    (void)state;
    assert_int_equal(llsmtp_dns_query(0x1234, "example.org.", 12, 15, 0, buf,
                                      sizeof buf, &len),
                     LLSMTP_OK);
    assert_int_equal(len, sizeof want);
    assert_memory_equal(buf, want, sizeof want);
    assert_int_equal(llsmtp_dns_query(0x1234, "example.org", 11, 15, 1, buf,
                                      sizeof buf, &len),
                     LLSMTP_OK);
    assert_int_equal(len, sizeof want + 2);
    assert_int_equal(buf[0] << 8 | buf[1], sizeof want);
    assert_memory_equal(buf + 2, want, sizeof want);
    assert_int_equal(llsmtp_dns_query(1, "a..b", 4, 15, 0, buf, sizeof buf,
                                      &len),
                     LLSMTP_E_SYNTAX);
    assert_int_equal(llsmtp_dns_query(1, "a b", 3, 15, 0, buf, sizeof buf,
                                      &len),
                     LLSMTP_E_SYNTAX);
    memset(big, 'a', 64);
    memcpy(big + 64, ".org", 5);
    assert_int_equal(llsmtp_dns_query(1, big, 68, 15, 0, buf, sizeof buf,
                                      &len),
                     LLSMTP_E_SYNTAX); /* label of 64 */
    assert_int_equal(llsmtp_dns_query(1, "example.org", 11, 15, 0, buf, 20,
                                      &len),
                     LLSMTP_E_BUFFER);
}

static void
test_parse_mx_with_glue(void **state)
{
    pk p;
    llsmtp_dns_rr rrs[8];
    llsmtp_mx mx[4];
    size_t n, nmx;
    char ip[64];
    (void)state;
    build_mx(&p);
    assert_int_equal(parse(&p, "Example.ORG", 15, rrs, 8, &n),
                     LLSMTP_DNS_NOERROR);
    assert_int_equal(n, 4);
    assert_int_equal(rrs[0].type, LLSMTP_DNS_MX);
    assert_string_equal(rrs[0].owner, "example.org");
    assert_string_equal(rrs[0].target, "mx1.example.org");
    assert_int_equal(rrs[0].pref, 10);
    assert_int_equal(rrs[0].ttl, 3600);
    assert_string_equal(rrs[1].target, "mx2.example.org");
    assert_int_equal(rrs[2].in_answer, 0);
    assert_int_equal(llsmtp_dns_mx(rrs, n, "example.org", 11, mx, 4, &nmx),
                     LLSMTP_OK);
    assert_int_equal(nmx, 2);
    assert_int_equal(mx[0].naddrs, 2);
    llsmtp_ip_format(&mx[0].addrs[1], ip, sizeof ip);
    assert_string_equal(ip, "2001:db8::1");
    assert_int_equal(mx[1].naddrs, 0);
    /* fewer slots than records: stored what fits, counted all */
    {
        size_t total;
        assert_int_equal(llsmtp_dns_parse(p.b, p.n, 0, 0x1234, "example.org",
                                          11, 15, rrs, 1, &n, &total),
                         LLSMTP_DNS_NOERROR);
        assert_int_equal(n, 1);
        assert_int_equal(total, 4);
    }
}

/* The response dnsmasq 2.90 sent for company.test MX (captured). */
static const char dnsmasq_hex[] =
    "12348580000100020000000307636f6d70616e79047465737400000f0001c00c000f"
    "00010000000000140014036d783207636f6d70616e79047465737400c00c000f00010"
    "00000000014000a036d783107636f6d70616e79047465737400c02c00010001000000"
    "000004c0000202c02c001c000100000000001020010db800000000000000000000000"
    "2c04c00010001000000000004c0000201";

static void
test_real_dnsmasq_response(void **state)
{
    pk p;
    size_t i, n, nmx;
    llsmtp_dns_rr rrs[8];
    llsmtp_mx mx[4];
    (void)state;
    p.n = strlen(dnsmasq_hex) / 2;
    for (i = 0; i < p.n; i++) {
        unsigned v;
        sscanf(dnsmasq_hex + 2 * i, "%2x", &v);
        p.b[i] = (uint8_t)v;
    }
    assert_int_equal(parse(&p, "company.test", 15, rrs, 8, &n),
                     LLSMTP_DNS_NOERROR);
    assert_int_equal(llsmtp_dns_mx(rrs, n, "company.test", 12, mx, 4, &nmx),
                     LLSMTP_OK);
    assert_int_equal(nmx, 2);
    assert_string_equal(mx[0].host, "mx2.company.test");
    assert_int_equal(mx[0].pref, 20);
    assert_int_equal(mx[0].naddrs, 2);
    assert_string_equal(mx[1].host, "mx1.company.test");
    assert_int_equal(mx[1].naddrs, 1);
    /* every truncation of it is refused, never read past */
    for (i = 0; i < p.n; i++) {
        size_t total;
        int rc = llsmtp_dns_parse(p.b, i, 0, 0x1234, "company.test", 12, 15,
                                  rrs, 8, &n, &total);
        assert_true(rc == LLSMTP_E_SYNTAX);
    }
}

static void
test_rcodes_and_flags(void **state)
{
    pk p;
    llsmtp_dns_rr rrs[4];
    size_t n, total;
    (void)state;
    hdr(&p, 0x1234, 0x8183, 1, 0, 0, 0);
    question(&p, "nosuch.example", 15);
    assert_int_equal(parse(&p, "nosuch.example", 15, rrs, 4, &n),
                     LLSMTP_DNS_NXDOMAIN);
    hdr(&p, 0x1234, 0x8182, 1, 0, 0, 0);
    question(&p, "x.example", 15);
    assert_int_equal(parse(&p, "x.example", 15, rrs, 4, &n),
                     LLSMTP_DNS_SERVFAIL);
    hdr(&p, 0x1234, 0x8185, 1, 0, 0, 0);
    question(&p, "x.example", 15);
    assert_int_equal(parse(&p, "x.example", 15, rrs, 4, &n),
                     LLSMTP_DNS_REFUSED);
    /* TC: retry over TCP */
    hdr(&p, 0x1234, 0x8380, 1, 5, 0, 0);
    question(&p, "x.example", 15);
    assert_int_equal(parse(&p, "x.example", 15, rrs, 4, &n),
                     LLSMTP_DNS_TRUNCATED);
    /* NOERROR, no records: NODATA */
    hdr(&p, 0x1234, RESP, 1, 0, 0, 0);
    question(&p, "x.example", 15);
    assert_int_equal(parse(&p, "x.example", 15, rrs, 4, &n),
                     LLSMTP_DNS_NOERROR);
    assert_int_equal(n, 0);
    /* not our answer: id, QR, question name, type */
    hdr(&p, 0x4321, RESP, 1, 0, 0, 0);
    question(&p, "x.example", 15);
    assert_int_equal(parse(&p, "x.example", 15, rrs, 4, &n),
                     LLSMTP_DNS_MISMATCH);
    hdr(&p, 0x1234, 0x0100, 1, 0, 0, 0);
    question(&p, "x.example", 15);
    assert_int_equal(parse(&p, "x.example", 15, rrs, 4, &n),
                     LLSMTP_DNS_MISMATCH);
    hdr(&p, 0x1234, RESP, 1, 0, 0, 0);
    question(&p, "evil.example", 15);
    assert_int_equal(parse(&p, "x.example", 15, rrs, 4, &n),
                     LLSMTP_DNS_MISMATCH);
    hdr(&p, 0x1234, RESP, 1, 0, 0, 0);
    question(&p, "x.example", 1);
    assert_int_equal(parse(&p, "x.example", 15, rrs, 4, &n),
                     LLSMTP_DNS_MISMATCH);
    /* TCP framing */
    {
        pk t;
        build_mx(&p);
        t.n = 0;
        u16(&t, (unsigned)p.n);
        memcpy(t.b + 2, p.b, p.n);
        t.n += p.n;
        assert_int_equal(llsmtp_dns_parse(t.b, t.n, 1, 0x1234, "example.org",
                                          11, 15, rrs, 4, &n, &total),
                         LLSMTP_DNS_NOERROR);
        assert_int_equal(n, 4);
        t.b[1]++; /* claims one byte more than there is */
        assert_int_equal(llsmtp_dns_parse(t.b, t.n, 1, 0x1234, "example.org",
                                          11, 15, rrs, 4, &n, &total),
                         LLSMTP_E_SYNTAX);
    }
}

static void
test_hostile_names(void **state)
{
    pk p;
    llsmtp_dns_rr rrs[4];
    size_t n, at, i;
    (void)state;
    /* a pointer to itself */
    hdr(&p, 0x1234, RESP, 1, 1, 0, 0);
    question(&p, "x.example", 15);
    at = p.n;
    ptr(&p, (unsigned)at);
    rr(&p, 1, 4);
    u32(&p, 0);
    assert_int_equal(parse(&p, "x.example", 15, rrs, 4, &n), LLSMTP_E_SYNTAX);
    /* a pointer forward */
    hdr(&p, 0x1234, RESP, 1, 1, 0, 0);
    question(&p, "x.example", 15);
    ptr(&p, (unsigned)p.n + 2);
    name(&p, "y.example");
    rr(&p, 1, 4);
    u32(&p, 0);
    assert_int_equal(parse(&p, "x.example", 15, rrs, 4, &n), LLSMTP_E_SYNTAX);
    /* ping-pong: label then pointer back to its own start */
    hdr(&p, 0x1234, RESP, 1, 1, 0, 0);
    question(&p, "x.example", 15);
    at = p.n;
    u8(&p, 1);
    u8(&p, 'a');
    ptr(&p, (unsigned)at);
    rr(&p, 1, 4);
    u32(&p, 0);
    assert_int_equal(parse(&p, "x.example", 15, rrs, 4, &n), LLSMTP_E_SYNTAX);
    /* label type bits 01 (extended labels) */
    hdr(&p, 0x1234, RESP, 1, 1, 0, 0);
    question(&p, "x.example", 15);
    u8(&p, 0x41);
    rr(&p, 1, 4);
    u32(&p, 0);
    assert_int_equal(parse(&p, "x.example", 15, rrs, 4, &n), LLSMTP_E_SYNTAX);
    /* a name over 255 octets via a chain of labels */
    hdr(&p, 0x1234, RESP, 1, 1, 0, 0);
    question(&p, "x.example", 15);
    for (i = 0; i < 5; i++) {
        u8(&p, 63);
        memset(p.b + p.n, 'a', 63);
        p.n += 63;
    }
    u8(&p, 0);
    rr(&p, 1, 4);
    u32(&p, 0);
    assert_int_equal(parse(&p, "x.example", 15, rrs, 4, &n), LLSMTP_E_SYNTAX);
    /* MX rdata shorter than its name */
    hdr(&p, 0x1234, RESP, 1, 1, 0, 0);
    question(&p, "x.example", 15);
    ptr(&p, 12);
    at = rr(&p, 15, 0);
    u16(&p, 10);
    name(&p, "mx.example");
    fix_rdlen(&p, at);
    p.b[at + 1] = (uint8_t)(p.b[at + 1] - 3);
    assert_int_equal(parse(&p, "x.example", 15, rrs, 4, &n), LLSMTP_E_SYNTAX);
    /* A record of 5 octets */
    hdr(&p, 0x1234, RESP, 1, 1, 0, 0);
    question(&p, "x.example", 15);
    ptr(&p, 12);
    rr(&p, 1, 5);
    u32(&p, 0);
    u8(&p, 0);
    assert_int_equal(parse(&p, "x.example", 15, rrs, 4, &n), LLSMTP_E_SYNTAX);
    /* more records announced than present */
    hdr(&p, 0x1234, RESP, 1, 3, 0, 0);
    question(&p, "x.example", 15);
    ptr(&p, 12);
    rr(&p, 1, 4);
    u32(&p, 0);
    assert_int_equal(parse(&p, "x.example", 15, rrs, 4, &n), LLSMTP_E_SYNTAX);
    /* a name that cannot be text (a dot inside a label): record skipped */
    hdr(&p, 0x1234, RESP, 1, 2, 0, 0);
    question(&p, "x.example", 15);
    ptr(&p, 12);
    at = rr(&p, 15, 0);
    u16(&p, 10);
    u8(&p, 3);
    memcpy(p.b + p.n, "a.b", 3);
    p.n += 3;
    u8(&p, 0);
    fix_rdlen(&p, at);
    ptr(&p, 12);
    at = rr(&p, 15, 0);
    u16(&p, 20);
    name(&p, "good.example");
    fix_rdlen(&p, at);
    assert_int_equal(parse(&p, "x.example", 15, rrs, 4, &n),
                     LLSMTP_DNS_NOERROR);
    assert_int_equal(n, 1);
    assert_string_equal(rrs[0].target, "good.example");
}

static void
test_cname_chain(void **state)
{
    pk p;
    llsmtp_dns_rr rrs[8];
    llsmtp_mx mx[2];
    size_t n, nmx, at;
    (void)state;
    hdr(&p, 0x1234, RESP, 1, 2, 0, 0);
    question(&p, "alias.example", 15);
    ptr(&p, 12);
    at = rr(&p, 5, 0);
    name(&p, "real.example");
    fix_rdlen(&p, at);
    name(&p, "real.example");
    at = rr(&p, 15, 0);
    u16(&p, 5);
    name(&p, "mx.real.example");
    fix_rdlen(&p, at);
    assert_int_equal(parse(&p, "alias.example", 15, rrs, 8, &n),
                     LLSMTP_DNS_NOERROR);
    assert_int_equal(n, 2);
    assert_int_equal(llsmtp_dns_mx(rrs, n, "alias.example", 13, mx, 2, &nmx),
                     LLSMTP_OK);
    assert_int_equal(nmx, 1);
    assert_string_equal(mx[0].host, "mx.real.example");
    /* a CNAME loop */
    hdr(&p, 0x1234, RESP, 1, 2, 0, 0);
    question(&p, "a.example", 15);
    ptr(&p, 12);
    at = rr(&p, 5, 0);
    name(&p, "b.example");
    fix_rdlen(&p, at);
    name(&p, "b.example");
    at = rr(&p, 5, 0);
    name(&p, "a.example");
    fix_rdlen(&p, at);
    assert_int_equal(parse(&p, "a.example", 15, rrs, 8, &n),
                     LLSMTP_DNS_NOERROR);
    assert_int_equal(llsmtp_dns_mx(rrs, n, "a.example", 9, mx, 2, &nmx),
                     LLSMTP_E_RANGE);
}

/* 40 MX records (a truncated UDP answer asked again over TCP) for an
 * array of 32: the 32 best preferences are kept whatever the wire order,
 * and the caller is told that records were dropped. */
static void
test_mx_more_than_cap(void **state)
{
    pk p;
    llsmtp_dns_rr rrs[64];
    llsmtp_mx mx[40];
    size_t n, nmx, i, at;
    unsigned seen[64];
    (void)state;
    hdr(&p, 0x1234, RESP, 1, 40, 0, 0);
    question(&p, "example.org", 15);
    for (i = 0; i < 40; i++) {
        /* wire order: preferences 13..44, then the best ones 5..12 */
        unsigned pref = i < 32 ? (unsigned)i + 13 : (unsigned)i - 27;
        char label[8];
        ptr(&p, 12);
        at = rr(&p, 15, 0);
        u16(&p, pref);
        snprintf(label, sizeof label, "mx%02u", pref);
        u8(&p, 4);
        memcpy(p.b + p.n, label, 4);
        p.n += 4;
        ptr(&p, 12);
        fix_rdlen(&p, at);
    }
    assert_int_equal(parse(&p, "example.org", 15, rrs, 64, &n),
                     LLSMTP_DNS_NOERROR);
    assert_int_equal(n, 40);
    assert_int_equal(llsmtp_dns_mx(rrs, n, "example.org", 11, mx, 32, &nmx),
                     LLSMTP_DNS_PARTIAL);
    assert_int_equal(nmx, 32);
    memset(seen, 0, sizeof seen);
    for (i = 0; i < nmx; i++) {
        char want[32];
        assert_true(mx[i].pref >= 5 && mx[i].pref <= 36);
        snprintf(want, sizeof want, "mx%02u.example.org", mx[i].pref);
        assert_string_equal(mx[i].host, want);
        assert_int_equal(seen[mx[i].pref]++, 0);
    }
    /* room for all: nothing dropped */
    assert_int_equal(llsmtp_dns_mx(rrs, n, "example.org", 11, mx, 40, &nmx),
                     LLSMTP_OK);
    assert_int_equal(nmx, 40);
    /* equal preferences: the first seen stay (mx.c shuffles equals) */
    for (i = 0; i < n; i++)
        rrs[i].pref = 7;
    assert_int_equal(llsmtp_dns_mx(rrs, n, "example.org", 11, mx, 3, &nmx),
                     LLSMTP_DNS_PARTIAL);
    assert_int_equal(nmx, 3);
    assert_string_equal(mx[0].host, "mx13.example.org");
    assert_string_equal(mx[2].host, "mx15.example.org");
    /* a worse record after a better one is dropped, a better replaces
     * the worst, and wire order is kept among those kept */
    rrs[0].pref = 30;
    rrs[1].pref = 10;
    rrs[2].pref = 20;
    rrs[3].pref = 40;
    rrs[4].pref = 5;
    assert_int_equal(llsmtp_dns_mx(rrs, 5, "example.org", 11, mx, 3, &nmx),
                     LLSMTP_DNS_PARTIAL);
    assert_int_equal(nmx, 3);
    assert_int_equal(mx[0].pref, 10);
    assert_int_equal(mx[1].pref, 20);
    assert_int_equal(mx[2].pref, 5);
    /* cap 0: nothing stored, but the caller learns there were records */
    assert_int_equal(llsmtp_dns_mx(rrs, 5, "example.org", 11, NULL, 0, &nmx),
                     LLSMTP_DNS_PARTIAL);
    assert_int_equal(nmx, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_parse_mx_with_glue),
        cmocka_unit_test(test_real_dnsmasq_response),
        cmocka_unit_test(test_rcodes_and_flags),
        cmocka_unit_test(test_hostile_names),
        cmocka_unit_test(test_cname_chain),
        cmocka_unit_test(test_mx_more_than_cap),
    };
    return cmocka_run_group_tests_name("dns", tests, NULL, NULL);
}
