/* SPDX-License-Identifier: MIT
 *
 * test_path.c - RFC 5321 4.1.2 path syntax, address literals, IPv4/IPv6
 * text, ESMTP parameters and UTF-8 validation, table-driven.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"
#include "internal.h"

typedef struct path_case {
    const char *in;
    unsigned opts;
    int rc;
    const char *local, *domain;
    unsigned flags;
} path_case;

#define N LLSMTP_PARSE_ALLOW_NULL
#define P LLSMTP_PARSE_ALLOW_POSTMASTER
#define U LLSMTP_PARSE_UTF8

static const path_case cases[] = {
    {"<a@example.org>", 0, LLSMTP_OK, "a", "example.org", 0},
    {"<first.last+tag@sub.example.org>", 0, LLSMTP_OK, "first.last+tag",
     "sub.example.org", 0},
    {"<!#$%&'*+-/=?^_`{|}~@x.y>", 0, LLSMTP_OK, "!#$%&'*+-/=?^_`{|}~", "x.y",
     0},
    {"<>", N, LLSMTP_OK, "", "", LLSMTP_PATH_NULL},
    {"<>", 0, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<\"john doe\"@x.y>", 0, LLSMTP_OK, "\"john doe\"", "x.y",
     LLSMTP_PATH_QUOTED},
    {"<\"a\\\"b\"@x.y>", 0, LLSMTP_OK, "\"a\\\"b\"", "x.y",
     LLSMTP_PATH_QUOTED},
    {"<\"\"@x.y>", 0, LLSMTP_OK, "\"\"", "x.y", LLSMTP_PATH_QUOTED},
    {"<\"a\"b@x.y>", 0, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<a@[192.0.2.1]>", 0, LLSMTP_OK, "a", "[192.0.2.1]",
     LLSMTP_PATH_LITERAL | LLSMTP_PATH_IPV4},
    {"<a@[IPv6:::1]>", 0, LLSMTP_OK, "a", "[IPv6:::1]",
     LLSMTP_PATH_LITERAL | LLSMTP_PATH_IPV6},
    {"<a@[ipv6:2001:db8:0:0:0:0:0:1]>", 0, LLSMTP_OK, "a",
     "[ipv6:2001:db8:0:0:0:0:0:1]", LLSMTP_PATH_LITERAL | LLSMTP_PATH_IPV6},
    {"<a@[tag:some-thing]>", 0, LLSMTP_OK, "a", "[tag:some-thing]",
     LLSMTP_PATH_LITERAL},
    {"<a@[256.1.1.1]>", 0, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<a@[1.2.3]>", 0, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<a@[IPv6:1:2:3:4:5:6:7:8:9]>", 0, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<a@[tag:]>", 0, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<a@[a b]>", 0, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<@r.example:a@x.y>", 0, LLSMTP_OK, "a", "x.y", LLSMTP_PATH_ROUTE},
    {"<@r1.example,@r2.example:a@x.y>", 0, LLSMTP_OK, "a", "x.y",
     LLSMTP_PATH_ROUTE},
    {"<@r1.example,r2.example:a@x.y>", 0, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<@r1.example>", 0, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<Postmaster>", P, LLSMTP_OK, "Postmaster", "", LLSMTP_PATH_POSTMASTER},
    {"<postmaster>", 0, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<postmaster2>", P, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<a>", 0, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"a@x.y", 0, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<a@x.y", 0, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<a.@x.y>", 0, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<.a@x.y>", 0, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<a..b@x.y>", 0, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<a@x..y>", 0, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<a@x.y.>", 0, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<a@-x.y>", 0, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<a@x-.y>", 0, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<a@x-y.z>", 0, LLSMTP_OK, "a", "x-y.z", 0},
    {"<a@1.2.3.4>", 0, LLSMTP_OK, "a", "1.2.3.4", 0},
    {"<a@b@x.y>", 0, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<a b@x.y>", 0, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<j\xc3\xb6rg@x.y>", 0, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<j\xc3\xb6rg@x.y>", U, LLSMTP_OK, "j\xc3\xb6rg", "x.y",
     LLSMTP_PATH_UTF8},
    /* clang-format off */
    {"<a@b\xc3\xbc" "cher.example>", U, LLSMTP_OK, "a", "b\xc3\xbc" "cher.example",
     LLSMTP_PATH_UTF8},
    /* clang-format on */
    {"<j\xc0\xafrg@x.y>", U, LLSMTP_E_SYNTAX, NULL, NULL, 0},   /* overlong */
    {"<j\xed\xa0\x80@x.y>", U, LLSMTP_E_SYNTAX, NULL, NULL, 0}, /* surrogate */
    {"<j\xf4\x90\x80\x80@x.y>", U, LLSMTP_E_SYNTAX, NULL, NULL, 0},
    {"<j\xc3@x.y>", U, LLSMTP_E_SYNTAX, NULL, NULL, 0}, /* truncated */
};

static void
test_path_table(void **state)
{
    size_t i;
    (void)state;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const path_case *c = &cases[i];
        llsmtp_path p;
        size_t end = 0;
        int rc = llsmtp_path_parse(c->in, strlen(c->in), c->opts, &p, &end);
        if (rc != c->rc)
            fail_msg("case %zu %s: rc %d want %d", i, c->in, rc, c->rc);
        if (rc != LLSMTP_OK)
            continue;
        assert_int_equal(end, strlen(c->in));
        assert_int_equal(p.flags, c->flags);
        if (!(p.flags & LLSMTP_PATH_NULL)) {
            assert_int_equal(p.local.n, strlen(c->local));
            assert_memory_equal(p.local.p, c->local, p.local.n);
        }
        assert_int_equal(p.domain.n, strlen(c->domain));
        if (p.domain.n)
            assert_memory_equal(p.domain.p, c->domain, p.domain.n);
    }
}

static void
test_path_limits(void **state)
{
    char buf[600];
    llsmtp_path p;
    size_t end;
    (void)state;
    /* label of 63 ok, 64 too long */
    snprintf(
        buf, sizeof buf, "<a@%.*s.x>", 63,
        "lllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll");
    assert_int_equal(llsmtp_path_parse(buf, strlen(buf), 0, &p, &end),
                     LLSMTP_OK);
    snprintf(
        buf, sizeof buf, "<a@%.*sl.x>", 63,
        "lllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll");
    assert_int_equal(llsmtp_path_parse(buf, strlen(buf), 0, &p, &end),
                     LLSMTP_E_RANGE);
    /* domain of 256 octets is too long */
    {
        size_t k = 0;
        int l;
        k += (size_t)snprintf(buf, sizeof buf, "<a@");
        for (l = 0; l < 32; l++)
            k += (size_t)snprintf(buf + k, sizeof buf - k, "abcdefg.");
        snprintf(buf + k, sizeof buf - k, "x>");
        assert_int_equal(llsmtp_path_parse(buf, strlen(buf), 0, &p, &end),
                         LLSMTP_E_RANGE);
    }
    /* parsing stops at the closing bracket; the end offset says where */
    assert_int_equal(llsmtp_path_parse("<a@b.c> SIZE=1", 14, 0, &p, &end),
                     LLSMTP_OK);
    assert_int_equal(end, 7);
    /* the error offset points at the offending byte */
    assert_int_equal(llsmtp_path_parse("<a@b,c>", 7, 0, &p, &end),
                     LLSMTP_E_SYNTAX);
    assert_int_equal(end, 4);
    assert_int_equal(llsmtp_path_parse(NULL, 0, 0, &p, &end), LLSMTP_E_INVAL);
}

static void
test_domain_check(void **state)
{
    (void)state;
    assert_int_equal(llsmtp_domain_check("example.org", 11, 0), LLSMTP_OK);
    assert_int_equal(llsmtp_domain_check("example.org.", 12, 0),
                     LLSMTP_E_SYNTAX);
    assert_int_equal(llsmtp_domain_check("", 0, 0), LLSMTP_E_SYNTAX);
    assert_int_equal(llsmtp_domain_check("a_b.c", 5, 0), LLSMTP_E_SYNTAX);
    assert_int_equal(llsmtp_domain_check("xn--bcher-kva.example", 21, 0),
                     LLSMTP_OK);
}

static void
test_ip_text(void **state)
{
    uint8_t a4[4], a6[16];
    static const uint8_t v6_1[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
                                     0,    0,    0,    0,    0, 0, 0, 1};
    /* clang-format off */
    static const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0,
                                       0, 0, 0xff, 0xff, 10, 1, 2, 3};
    /* clang-format on */
    (void)state;
    assert_int_equal(llsmtp_ipv4_parse("192.0.2.255", 11, a4), LLSMTP_OK);
    assert_int_equal(a4[0], 192);
    assert_int_equal(a4[3], 255);
    assert_int_equal(llsmtp_ipv4_parse("192.0.2.256", 11, a4),
                     LLSMTP_E_SYNTAX);
    assert_int_equal(llsmtp_ipv4_parse("192.0.2", 7, a4), LLSMTP_E_SYNTAX);
    assert_int_equal(llsmtp_ipv4_parse("1.2.3.4.", 8, a4), LLSMTP_E_SYNTAX);
    assert_int_equal(llsmtp_ipv4_parse("1..3.4", 6, a4), LLSMTP_E_SYNTAX);
    assert_int_equal(llsmtp_ipv4_parse("1234.1.1.1", 10, a4), LLSMTP_E_SYNTAX);
    /* leading zeros: octal to some parsers, so refused */
    assert_int_equal(llsmtp_ipv4_parse("192.0.2.010", 11, a4),
                     LLSMTP_E_SYNTAX);
    assert_int_equal(llsmtp_ipv4_parse("0.0.0.0", 7, a4), LLSMTP_OK);
    assert_int_equal(llsmtp_ipv6_parse("2001:db8::1", 11, a6), LLSMTP_OK);
    assert_memory_equal(a6, v6_1, 16);
    assert_int_equal(llsmtp_ipv6_parse("::ffff:10.1.2.3", 15, a6), LLSMTP_OK);
    assert_memory_equal(a6, mapped, 16);
    assert_int_equal(llsmtp_ipv6_parse("::", 2, a6), LLSMTP_OK);
    assert_int_equal(llsmtp_ipv6_parse("1::", 3, a6), LLSMTP_OK);
    assert_int_equal(llsmtp_ipv6_parse("1:2:3:4:5:6:7:8", 15, a6), LLSMTP_OK);
    assert_int_equal(llsmtp_ipv6_parse("1:2:3:4:5:6:7", 13, a6),
                     LLSMTP_E_SYNTAX);
    assert_int_equal(llsmtp_ipv6_parse("1::2::3", 7, a6), LLSMTP_E_SYNTAX);
    assert_int_equal(llsmtp_ipv6_parse(":1::", 4, a6), LLSMTP_E_SYNTAX);
    assert_int_equal(llsmtp_ipv6_parse("1:", 2, a6), LLSMTP_E_SYNTAX);
    assert_int_equal(llsmtp_ipv6_parse("12345::", 7, a6), LLSMTP_E_SYNTAX);
    assert_int_equal(llsmtp_ipv6_parse("1:2:3:4:5:6:7:1.2.3.4", 21, a6),
                     LLSMTP_E_SYNTAX);
    assert_int_equal(llsmtp_ipv6_parse("g::", 3, a6), LLSMTP_E_SYNTAX);
    assert_int_equal(llsmtp_ipv6_parse("", 0, a6), LLSMTP_E_SYNTAX);
}

static void
test_params(void **state)
{
    llsmtp_params ps;
    size_t end;
    const llsmtp_param *p;
    const char *in = " SIZE=100 BODY=8BITMIME  X-FLAG";
    (void)state;
    assert_int_equal(llsmtp_params_parse(in, strlen(in), 0, &ps, &end),
                     LLSMTP_OK);
    assert_int_equal(ps.n, 3);
    p = llsmtp_params_get(&ps, "size");
    assert_non_null(p);
    assert_int_equal(p->value.n, 3);
    assert_memory_equal(p->value.p, "100", 3);
    p = llsmtp_params_get(&ps, "X-FLAG");
    assert_non_null(p);
    assert_null(p->value.p);
    assert_null(llsmtp_params_get(&ps, "NOTIFY"));
    assert_int_equal(llsmtp_params_parse("", 0, 0, &ps, &end), LLSMTP_OK);
    assert_int_equal(ps.n, 0);
    assert_int_equal(llsmtp_params_parse("A=b=c", 5, 0, &ps, &end),
                     LLSMTP_E_SYNTAX);
    assert_int_equal(llsmtp_params_parse("-A=1", 4, 0, &ps, &end),
                     LLSMTP_E_SYNTAX);
    assert_int_equal(llsmtp_params_parse("A=\x01", 3, 0, &ps, &end),
                     LLSMTP_E_SYNTAX);
    assert_int_equal(end, 2);
    assert_int_equal(llsmtp_params_parse("A=\xc3\xa9", 4, 0, &ps, &end),
                     LLSMTP_E_SYNTAX);
    assert_int_equal(llsmtp_params_parse("A=\xc3\xa9", 4, U, &ps, &end),
                     LLSMTP_OK);
    assert_int_equal(llsmtp_params_parse("A B C D E F G H I J K L M N O P Q",
                                         33, 0, &ps, &end),
                     LLSMTP_E_RANGE);
}

/* The fast parser of the common path (lib/path.c, path_fast) and the
 * general one agree on everything: status, end offset (an error's too)
 * and every span and flag, for generated paths under every option, with
 * and without parameters after them, and for each octet in each place
 * of a path (the fast parser's class table). */
static void
path_same_as(const char *p, size_t n, unsigned opts, int line)
{
    llsmtp_path a, b;
    size_t ea = 777, eb = 777;
    int ra, rb;
    memset(&a, 0x5a, sizeof a);
    memset(&b, 0x5a, sizeof b);
    ra = line ? llsmtp__path_parse_line(p, n, opts, &a, &ea)
              : llsmtp_path_parse(p, n, opts, &a, &ea);
    rb = llsmtp__path_parse_general(p, n, opts, &b, &eb);
    assert_int_equal(ra, rb);
    assert_int_equal(ea, eb);
    /* field by field (padding is not the parsers'); untouched alike
     * on error */
    assert_ptr_equal(a.mailbox.p, b.mailbox.p);
    assert_int_equal(a.mailbox.n, b.mailbox.n);
    assert_ptr_equal(a.local.p, b.local.p);
    assert_int_equal(a.local.n, b.local.n);
    assert_ptr_equal(a.domain.p, b.domain.p);
    assert_int_equal(a.domain.n, b.domain.n);
    assert_ptr_equal(a.route.p, b.route.p);
    assert_int_equal(a.route.n, b.route.n);
    assert_int_equal(a.flags, b.flags);
}

/* The same through the public parser, and when p[n] is what ends a
 * command line's argument (p is writable then, one octet past n) through
 * the session's (llsmtp__path_parse_line) too. */
static void
path_same(const char *p, size_t n, unsigned opts)
{
    path_same_as(p, n, opts, 0);
}

static void
path_same_in_line(char *p, size_t n, unsigned opts, char term)
{
    p[n] = term;
    path_same_as(p, n, opts, 0);
    path_same_as(p, n, opts, 1);
}

static void
test_fast_path_matches_general(void **state)
{
    static const char *const tails[] = {"",  " NOTIFY=SUCCESS",  " ", "x",
                                        ">", " ORCPT=rfc822;a@b"};
    static const char *const shapes[] = {"<%@a.b>",  "<a%b@c.d>", "<a.%@b.c>",
                                         "<a@%.b>",  "<a@b%.c>",  "<a@b.%>",
                                         "<a@b.c%>", "<%>",       "%<a@b.c>"};
    char buf[1400], p[16];
    uint64_t seed = 77;
    unsigned opts;
    int round, c;
    size_t k, ok = 0;
    (void)state;
    for (round = 0; round < 300000; round++) {
        size_t n = th_gen_path(&seed, buf, 1200);
        const char *t = tails[th_rand(&seed) % (sizeof tails / sizeof *tails)];
        memcpy(buf + n, t, strlen(t));
        n += strlen(t);
        opts = (unsigned)(th_rand(&seed) % 8);
        path_same_in_line(buf, n, opts, " \t\r\n"[th_rand(&seed) % 4]);
        path_same(buf, (size_t)(th_rand(&seed) % (n + 1)),
                  opts); /* cut anywhere */
        {
            llsmtp_path x;
            ok += llsmtp_path_parse(buf, n, opts, &x, NULL) == LLSMTP_OK;
        }
    }
    print_message("%zu of 300000 parsed\n", ok);
    assert_true(ok > 100000); /* most were the common path */
    for (c = 0; c < 256; c++)
        for (k = 0; k < sizeof shapes / sizeof *shapes; k++) {
            const char *sh = shapes[k], *pc = strchr(sh, '%');
            size_t pre = (size_t)(pc - sh), n = strlen(sh);
            memcpy(p, sh, pre);
            p[pre] = (char)c;
            memcpy(p + pre + 1, pc + 1, n - pre - 1);
            for (opts = 0; opts < 8; opts++)
                path_same_in_line(p, n, opts, '\r');
        }
    path_same(NULL, 5, 0);
    path_same("<a@b>", 5, 0);
    path_same("<a@b>", 4, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_table),
        cmocka_unit_test(test_path_limits),
        cmocka_unit_test(test_domain_check),
        cmocka_unit_test(test_ip_text),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_fast_path_matches_general),
    };
    return cmocka_run_group_tests_name("path", tests, NULL, NULL);
}
