/* SPDX-License-Identifier: MIT
 *
 * test_mx.c - RFC 5321 5.1 MX ordering (preference, seeded shuffle of
 * equal preferences, duplicates), implicit and null MX (RFC 7505), this
 * host's pruning, relay-host syntax, IP text formatting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"

static llsmtp_mx
mk(uint16_t pref, const char *host)
{
    llsmtp_mx m;
    memset(&m, 0, sizeof m);
    m.pref = pref;
    snprintf(m.host, sizeof m.host, "%s", host);
    return m;
}

static void
add_ip(llsmtp_mx *m, const char *text)
{
    assert_int_equal(llsmtp_ip_parse(text, strlen(text), &m->addrs[m->naddrs]),
                     LLSMTP_OK);
    m->naddrs++;
}

static void
test_order_by_preference(void **state)
{
    llsmtp_mx v[4];
    size_t n = 3;
    (void)state;
    v[0] = mk(20, "mx2.example");
    v[1] = mk(10, "mx1.example");
    v[2] = mk(30, "mx3.example");
    assert_int_equal(llsmtp_mx_order("example", 7, v, &n, 4, NULL),
                     LLSMTP_MX_OK);
    assert_int_equal(n, 3);
    assert_string_equal(v[0].host, "mx1.example");
    assert_string_equal(v[1].host, "mx2.example");
    assert_string_equal(v[2].host, "mx3.example");
}

static void
test_equal_preferences_shuffled(void **state)
{
    unsigned first[3] = {0, 0, 0}, s;
    (void)state;
    for (s = 0; s < 10000; s++) {
        llsmtp_mx v[4];
        llsmtp_mx_opts o;
        size_t n = 4;
        llsmtp_mx_opts_init(&o);
        o.seed = s;
        v[0] = mk(10, "a.example");
        v[1] = mk(10, "b.example");
        v[2] = mk(10, "c.example");
        v[3] = mk(5, "best.example");
        assert_int_equal(llsmtp_mx_order("example", 7, v, &n, 4, &o),
                         LLSMTP_MX_OK);
        assert_string_equal(v[0].host, "best.example");
        first[v[1].host[0] - 'a']++;
    }
    /* each a third of the time: 3333 +- 5 sigma (5 * 47) */
    print_message("first among equals: a %u b %u c %u\n", first[0], first[1],
                  first[2]);
    for (s = 0; s < 3; s++)
        assert_true(first[s] > 3100 && first[s] < 3570);
}

static void
test_same_seed_same_order(void **state)
{
    llsmtp_mx a[5], b[5];
    llsmtp_mx_opts o;
    size_t na = 5, nb = 5, i;
    (void)state;
    llsmtp_mx_opts_init(&o);
    o.seed = 42;
    for (i = 0; i < 5; i++) {
        char h[16];
        snprintf(h, sizeof h, "h%zu.example", i);
        a[i] = b[i] = mk(10, h);
    }
    llsmtp_mx_order("example", 7, a, &na, 5, &o);
    llsmtp_mx_order("example", 7, b, &nb, 5, &o);
    for (i = 0; i < 5; i++)
        assert_string_equal(a[i].host, b[i].host);
}

static void
test_duplicates_merged(void **state)
{
    llsmtp_mx v[3];
    size_t n = 3;
    (void)state;
    v[0] = mk(20, "MX1.Example.");
    add_ip(&v[0], "192.0.2.1");
    v[1] = mk(10, "mx1.example");
    add_ip(&v[1], "192.0.2.1");
    add_ip(&v[1], "2001:db8::1");
    v[2] = mk(30, "mx2.example");
    assert_int_equal(llsmtp_mx_order("example", 7, v, &n, 3, NULL),
                     LLSMTP_MX_OK);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].pref, 10);
    assert_int_equal(v[0].naddrs, 2);
    assert_string_equal(v[1].host, "mx2.example");
}

static void
test_implicit_mx(void **state)
{
    llsmtp_mx v[1];
    size_t n = 0;
    (void)state;
    assert_int_equal(llsmtp_mx_order("Example.ORG.", 12, v, &n, 1, NULL),
                     LLSMTP_MX_IMPLICIT);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].host, "example.org");
    assert_int_equal(v[0].pref, 0);
    n = 0;
    assert_int_equal(llsmtp_mx_order("example.org", 11, v, &n, 0, NULL),
                     LLSMTP_E_INVAL);
}

static void
test_null_mx(void **state)
{
    llsmtp_mx v[3];
    llsmtp_reply r = LLSMTP_REPLY_INIT;
    size_t n = 1;
    char buf[128];
    (void)state;
    v[0] = mk(0, ".");
    assert_int_equal(llsmtp_mx_order("nomail.example", 14, v, &n, 3, NULL),
                     LLSMTP_MX_NULL);
    n = 1;
    v[0] = mk(0, "");
    assert_int_equal(llsmtp_mx_order("nomail.example", 14, v, &n, 3, NULL),
                     LLSMTP_MX_NULL);
    assert_int_equal(llsmtp_mx_reply(LLSMTP_MX_NULL, &r), LLSMTP_OK);
    llsmtp_reply_format(&r, 1, buf, sizeof buf);
    assert_string_equal(buf, "556 5.1.10 Recipient address has null MX\r\n");
    /* RFC 7505 3: "." with other records is a misconfiguration */
    n = 2;
    v[0] = mk(0, ".");
    v[1] = mk(10, "mx.example");
    assert_int_equal(llsmtp_mx_order("x.example", 9, v, &n, 3, NULL),
                     LLSMTP_MX_BAD);
    assert_int_equal(llsmtp_mx_reply(LLSMTP_MX_BAD, &r), LLSMTP_OK);
    assert_int_equal(r.code, 451);
    assert_int_equal(llsmtp_mx_reply(LLSMTP_MX_OK, &r), LLSMTP_E_INVAL);
}

/* Options not made by llsmtp_mx_opts_init (or from a newer header) are
 * refused by name, never read as garbage. */
static void
test_opts_versioned(void **state)
{
    llsmtp_mx v[2];
    llsmtp_mx_opts o;
    size_t n = 1;
    (void)state;
    v[0] = mk(10, "mx1.example");
    memset(&o, 0, sizeof o);
    assert_int_equal(llsmtp_mx_order("example", 7, v, &n, 2, &o),
                     LLSMTP_E_VERSION);
    assert_int_equal(llsmtp_mx_opts_init_(&o, LLSMTP_VERSION_NUM,
                                          sizeof o + 8),
                     LLSMTP_E_VERSION);
    assert_int_equal(llsmtp_mx_order("example", 7, v, &n, 2, &o),
                     LLSMTP_E_VERSION);
    assert_int_equal(llsmtp_mx_opts_init(&o), LLSMTP_OK);
    assert_int_equal(llsmtp_mx_order("example", 7, v, &n, 2, &o),
                     LLSMTP_MX_OK);
    assert_int_equal(llsmtp_mx_order("example", 7, v, &n, 2, NULL),
                     LLSMTP_MX_OK);
}

static void
test_local_host_pruning(void **state)
{
    static const char *const names[] = {"MX2.example."};
    llsmtp_mx v[4];
    llsmtp_mx_opts o;
    llsmtp_ip me;
    size_t n;
    (void)state;
    llsmtp_mx_opts_init(&o);
    o.local_names = names;
    o.nlocal_names = 1;
    /* we are mx2 (pref 20): keep only better ones */
    n = 4;
    v[0] = mk(10, "mx1.example");
    v[1] = mk(20, "mx2.example");
    v[2] = mk(20, "mx2b.example");
    v[3] = mk(30, "mx3.example");
    assert_int_equal(llsmtp_mx_order("example", 7, v, &n, 4, &o),
                     LLSMTP_MX_OK);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].host, "mx1.example");
    /* we are the best: mail would loop */
    n = 2;
    v[0] = mk(10, "mx2.example");
    v[1] = mk(20, "backup.example");
    assert_int_equal(llsmtp_mx_order("example", 7, v, &n, 4, &o),
                     LLSMTP_MX_LOOP);
    assert_int_equal(n, 0);
    /* equal to the best counts too (RFC 5321 5.1 "equal or greater") */
    n = 2;
    v[0] = mk(10, "other.example");
    v[1] = mk(10, "mx2.example");
    assert_int_equal(llsmtp_mx_order("example", 7, v, &n, 4, &o),
                     LLSMTP_MX_LOOP);
    /* matched by address */
    llsmtp_mx_opts_init(&o);
    assert_int_equal(llsmtp_ip_parse("192.0.2.9", 9, &me), LLSMTP_OK);
    o.local_addrs = &me;
    o.nlocal_addrs = 1;
    n = 2;
    v[0] = mk(10, "a.example");
    v[1] = mk(20, "b.example");
    add_ip(&v[1], "192.0.2.9");
    assert_int_equal(llsmtp_mx_order("example", 7, v, &n, 4, &o),
                     LLSMTP_MX_OK);
    assert_int_equal(n, 1);
    /* implicit MX that is this host */
    o.local_names = names;
    o.nlocal_names = 1;
    n = 0;
    assert_int_equal(llsmtp_mx_order("mx2.example", 11, v, &n, 4, &o),
                     LLSMTP_MX_LOOP);
}

typedef struct rh_case {
    const char *in;
    int rc;
    const char *host;
    unsigned port;
    int no_mx;
    int family;
} rh_case;

static void
test_relayhost(void **state)
{
    static const rh_case cases[] = {
        {"mail.example.com", LLSMTP_OK, "mail.example.com", 0, 0, 0},
        {"mail.example.com.", LLSMTP_OK, "mail.example.com", 0, 0, 0},
        {"mail.example.com:587", LLSMTP_OK, "mail.example.com", 587, 0, 0},
        {"[mail.example.com]", LLSMTP_OK, "mail.example.com", 0, 1, 0},
        {"[mail.example.com]:2525", LLSMTP_OK, "mail.example.com", 2525, 1, 0},
        {"[192.0.2.1]", LLSMTP_OK, "192.0.2.1", 0, 1, 4},
        {"192.0.2.1:25", LLSMTP_OK, "192.0.2.1", 25, 1, 4},
        {"[2001:db8::1]:587", LLSMTP_OK, "2001:db8::1", 587, 1, 6},
        {"[IPv6:2001:db8::1]", LLSMTP_OK, "2001:db8::1", 0, 1, 6},
        {"2001:db8::1", LLSMTP_E_SYNTAX, NULL, 0, 0, 0},
        {"host:0", LLSMTP_E_RANGE, NULL, 0, 0, 0},
        {"host:65536", LLSMTP_E_RANGE, NULL, 0, 0, 0},
        {"host:99999999999999999999", LLSMTP_E_RANGE, NULL, 0, 0, 0},
        {"host:", LLSMTP_E_SYNTAX, NULL, 0, 0, 0},
        {"host:2a", LLSMTP_E_SYNTAX, NULL, 0, 0, 0},
        {"[host", LLSMTP_E_SYNTAX, NULL, 0, 0, 0},
        {"[host]x", LLSMTP_E_SYNTAX, NULL, 0, 0, 0},
        {"[]", LLSMTP_E_SYNTAX, NULL, 0, 0, 0},
        {"", LLSMTP_E_SYNTAX, NULL, 0, 0, 0},
        {"bad_host.example", LLSMTP_E_SYNTAX, NULL, 0, 0, 0},
        {"[IPv6:zz]", LLSMTP_E_SYNTAX, NULL, 0, 0, 0},
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        llsmtp_relayhost rh;
        size_t at = 0;
        int rc = llsmtp_relayhost_parse(cases[i].in, strlen(cases[i].in), &rh,
                                        &at);
        if (rc != cases[i].rc)
            fail_msg("%s: rc %d want %d", cases[i].in, rc, cases[i].rc);
        if (rc != LLSMTP_OK)
            continue;
        assert_string_equal(rh.host, cases[i].host);
        assert_int_equal(rh.port, cases[i].port);
        assert_int_equal(rh.no_mx, cases[i].no_mx);
        assert_int_equal(rh.ip.family, cases[i].family);
    }
    {
        llsmtp_relayhost rh;
        size_t at = 0;
        assert_int_equal(llsmtp_relayhost_parse("host:2a", 7, &rh, &at),
                         LLSMTP_E_SYNTAX);
        assert_int_equal(at, 6);
    }
}

static void
test_ip_format(void **state)
{
    static const char *const in[][2] = {
        {"192.0.2.1", "192.0.2.1"},
        {"2001:db8::1", "2001:db8::1"},
        {"2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"},
        {"::1", "::1"},
        {"::", "::"},
        {"1::", "1::"},
        {"2001:db8:0:1:0:0:0:1", "2001:db8:0:1::1"},
        {"2001:0:0:1:0:0:0:1", "2001:0:0:1::1"},
        {"2001:db8:1:1:1:1:0:1", "2001:db8:1:1:1:1:0:1"},
        {"::ffff:192.0.2.1", "::ffff:192.0.2.1"},
        {"FE80::ABCD", "fe80::abcd"},
    };
    size_t i;
    char buf[64];
    llsmtp_ip ip;
    (void)state;
    for (i = 0; i < sizeof in / sizeof in[0]; i++) {
        assert_int_equal(llsmtp_ip_parse(in[i][0], strlen(in[i][0]), &ip),
                         LLSMTP_OK);
        assert_int_equal(llsmtp_ip_format(&ip, buf, sizeof buf),
                         strlen(in[i][1]));
        assert_string_equal(buf, in[i][1]);
    }
    assert_int_equal(llsmtp_ip_format(&ip, buf, 4), 0);
    assert_int_equal(llsmtp_ip_parse("1.2.3", 5, &ip), LLSMTP_E_SYNTAX);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_by_preference),
        cmocka_unit_test(test_equal_preferences_shuffled),
        cmocka_unit_test(test_same_seed_same_order),
        cmocka_unit_test(test_duplicates_merged),
        cmocka_unit_test(test_implicit_mx),
        cmocka_unit_test(test_null_mx),
        cmocka_unit_test(test_local_host_pruning),
        cmocka_unit_test(test_opts_versioned),
        cmocka_unit_test(test_relayhost),
        cmocka_unit_test(test_ip_format),
    };
    return cmocka_run_group_tests_name("mx", tests, NULL, NULL);
}
