/* SPDX-License-Identifier: MIT
 *
 * test_relay.c - relay policy: CIDR text (v4, v6, mapped, /0, /32, /128,
 * host bits), domain matching, and a table of recipient / client / AUTH
 * cases covering every relay trick in several spellings, checked through
 * llsmtp_relay_check() and again through the session's RCPT replies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"
#include "internal.h"

typedef struct cidr_case {
    const char *in;
    int rc;
    int family;
    unsigned bits;
} cidr_case;

static void
test_cidr_parse(void **state)
{
    static const cidr_case cases[] = {
        {"192.168.0.0/16", LLSMTP_OK, 4, 16},
        {"10.1.2.3", LLSMTP_OK, 4, 32},
        {"10.1.2.3/32", LLSMTP_OK, 4, 32},
        {"0.0.0.0/0", LLSMTP_OK, 4, 0},
        {"10.0.0.0/08", LLSMTP_OK, 4, 8},
        {"010.0.0.0/8", LLSMTP_E_SYNTAX, 0, 0},
        {"2001:db8::/32", LLSMTP_OK, 6, 32},
        {"2001:db8::1/128", LLSMTP_OK, 6, 128},
        {"2001:db8::1", LLSMTP_OK, 6, 128},
        {"::/0", LLSMTP_OK, 6, 0},
        {"::ffff:10.0.0.0/104", LLSMTP_OK, 4, 8},
        {"::ffff:10.1.2.3", LLSMTP_OK, 4, 32},
        {"10.1.2.3/33", LLSMTP_E_RANGE, 0, 0},
        {"2001:db8::/129", LLSMTP_E_RANGE, 0, 0},
        {"10.0.0.0/0008", LLSMTP_E_RANGE, 0, 0},
        {"10.1.2.3/8", LLSMTP_E_HOSTBITS, 0, 0},
        {"192.168.1.0/16", LLSMTP_E_HOSTBITS, 0, 0},
        {"2001:db8::1/32", LLSMTP_E_HOSTBITS, 0, 0},
        {"0.0.0.1/0", LLSMTP_E_HOSTBITS, 0, 0},
        {"garbage", LLSMTP_E_SYNTAX, 0, 0},
        {"10.0.0.0/", LLSMTP_E_SYNTAX, 0, 0},
        {"10.0.0.0/x", LLSMTP_E_SYNTAX, 0, 0},
        {"10.0.0.0/-1", LLSMTP_E_SYNTAX, 0, 0},
        {"/8", LLSMTP_E_SYNTAX, 0, 0},
        {" 10.0.0.0/8", LLSMTP_E_SYNTAX, 0, 0},
        {"10.0.0.0/8 ", LLSMTP_E_SYNTAX, 0, 0},
        {"10.0.0/8", LLSMTP_E_SYNTAX, 0, 0},
        {"", LLSMTP_E_SYNTAX, 0, 0},
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        llsmtp_cidr c;
        int rc = llsmtp_cidr_parse(cases[i].in, strlen(cases[i].in), &c);
        if (rc != cases[i].rc)
            fail_msg("%s: rc %d want %d", cases[i].in, rc, cases[i].rc);
        if (rc == LLSMTP_OK) {
            assert_int_equal(c.ip.family, cases[i].family);
            assert_int_equal(c.bits, cases[i].bits);
        }
    }
    assert_string_equal(llsmtp_strerror(LLSMTP_E_HOSTBITS),
                        "address has bits set beyond its prefix length");
}

static int
in_net(const char *net, const char *addr)
{
    llsmtp_cidr c;
    llsmtp_ip ip;
    assert_int_equal(llsmtp_cidr_parse(net, strlen(net), &c), LLSMTP_OK);
    assert_int_equal(llsmtp_ip_parse(addr, strlen(addr), &ip), LLSMTP_OK);
    return llsmtp_cidr_match(&c, &ip);
}

static void
test_cidr_match(void **state)
{
    (void)state;
    assert_true(in_net("192.168.0.0/16", "192.168.255.1"));
    assert_false(in_net("192.168.0.0/16", "192.169.0.1"));
    assert_true(in_net("10.0.0.0/9", "10.127.0.1"));
    assert_false(in_net("10.0.0.0/9", "10.128.0.1"));
    assert_true(in_net("0.0.0.0/0", "203.0.113.9"));
    assert_false(in_net("0.0.0.0/0", "2001:db8::1"));
    assert_true(in_net("10.1.2.3", "10.1.2.3"));
    assert_false(in_net("10.1.2.3", "10.1.2.4"));
    assert_true(in_net("2001:db8::/32", "2001:db8:ffff::1"));
    assert_false(in_net("2001:db8::/32", "2001:db9::1"));
    assert_true(in_net("::/0", "::1"));
    /* mapped addresses and mapped networks count as IPv4 */
    assert_true(in_net("192.168.0.0/16", "::ffff:192.168.3.4"));
    assert_true(in_net("::ffff:10.0.0.0/104", "10.200.0.1"));
    assert_true(in_net("::ffff:10.0.0.0/104", "::ffff:10.200.0.1"));
    assert_false(in_net("::ffff:10.0.0.0/104", "11.0.0.1"));
}

typedef struct relay_case {
    const char *rcpt;
    const char *client; /* NULL: unknown */
    int auth;
    char want; /* L local, A allowed, D denied, S syntax error */
} relay_case;

static const relay_case relay_cases[] = {
    {"<user@company.test>", "203.0.113.7", 0, 'L'},
    {"<USER@COMPANY.TEST>", "203.0.113.7", 0, 'L'},
    {"<user@Company.Test>", "203.0.113.7", 0, 'L'},
    {"<user@mail.company2.test>", "203.0.113.7", 0, 'L'},
    {"<user@x.hosted.test>", "203.0.113.7", 0, 'L'},
    {"<user@a.b.hosted.test>", "203.0.113.7", 0, 'L'},
    {"<user@hosted.test>", "203.0.113.7", 0, 'D'},
    {"<user@xhosted.test>", "203.0.113.7", 0, 'D'},
    {"<user@outside.test>", "203.0.113.7", 0, 'D'},
    {"<user@outside.test>", "192.168.1.5", 0, 'A'},
    {"<user@outside.test>", "::ffff:192.168.1.5", 0, 'A'},
    {"<user@outside.test>", "10.1.2.3", 0, 'A'},
    {"<user@outside.test>", "::ffff:10.9.9.9", 0, 'A'},
    {"<user@outside.test>", "2001:db8:1::7", 0, 'A'},
    {"<user@outside.test>", "2001:db8:2::7", 0, 'D'},
    {"<user@outside.test>", NULL, 0, 'D'},
    {"<user@outside.test>", "203.0.113.7", 1, 'A'},
    {"<user@outside.test>", NULL, 1, 'A'},
    {"<user@partner.test>", "203.0.113.7", 0, 'A'},
    {"<user@mx.partner2.test>", "203.0.113.7", 0, 'A'},
    {"<user@partner2.test>", "203.0.113.7", 0, 'D'},
    /* "%" hack */
    {"<user%outside.test@company.test>", "203.0.113.7", 0, 'D'},
    {"<user%company.test@company.test>", "203.0.113.7", 0, 'D'},
    {"<user%outside.test@partner.test>", "203.0.113.7", 0, 'D'},
    {"<user%outside.test@company.test>", "192.168.1.5", 0, 'A'},
    /* bang paths */
    {"<outside.test!user@company.test>", "203.0.113.7", 0, 'D'},
    {"<a!b!user@company.test>", NULL, 0, 'D'},
    /* quoted local parts holding routing */
    {"<\"user@outside.test\"@company.test>", "203.0.113.7", 0, 'D'},
    {"<\"user%outside.test\"@company.test>", "203.0.113.7", 0, 'D'},
    {"<\"outside.test!user\"@company.test>", "203.0.113.7", 0, 'D'},
    {"<\"a@b\"@partner.test>", "203.0.113.7", 0, 'D'},
    {"<\"john doe\"@company.test>", "203.0.113.7", 0, 'L'},
    /* source routes: the final mailbox decides */
    {"<@company.test:user@outside.test>", "203.0.113.7", 0, 'D'},
    {"<@company.test,@company.test:user@outside.test>", NULL, 0, 'D'},
    {"<@outside.test:user@company.test>", "203.0.113.7", 0, 'L'},
    {"<@company.test:user@outside.test>", "192.168.9.9", 0, 'A'},
    /* address literals */
    {"<user@[192.0.2.1]>", "203.0.113.7", 0, 'D'},
    {"<user@[192.0.2.25]>", "203.0.113.7", 0, 'L'},
    {"<user@[IPv6:2001:db8::25]>", "203.0.113.7", 0, 'L'},
    {"<user@[IPv6:::ffff:192.0.2.25]>", "203.0.113.7", 0, 'L'},
    {"<user@[IPv6:2001:db8::99]>", "203.0.113.7", 0, 'D'},
    {"<user@[x-tag:foo]>", "203.0.113.7", 0, 'D'},
    {"<user@[192.0.2.1]>", "192.168.1.5", 0, 'A'},
    {"<user@[192.0.2.025]>", "203.0.113.7", 0, 'S'},
    /* local domain as a prefix or suffix of an outside one */
    {"<user@company.test.outside.test>", "203.0.113.7", 0, 'D'},
    {"<user@outside.company.test>", "203.0.113.7", 0, 'D'},
    {"<user@xcompany.test>", "203.0.113.7", 0, 'D'},
    {"<user@partner.test.evil.test>", "203.0.113.7", 0, 'D'},
    /* trailing dots are not valid in a path (RFC 5321 4.1.2) */
    {"<user@company.test.>", "203.0.113.7", 0, 'S'},
    {"<user@outside.test.>", "203.0.113.7", 0, 'S'},
    /* postmaster */
    {"<Postmaster>", "203.0.113.7", 0, 'L'},
    {"<postmaster@outside.test>", "203.0.113.7", 0, 'D'},
    {"<postmaster@company.test>", NULL, 0, 'L'},
};

static const char *const local_domains[] = {"company.test",
                                            "Mail.Company2.TEST.",
                                            ".hosted.test"};
static const char *const relay_domains[] = {"partner.test", ".partner2.test"};

static void
make_policy(llsmtp_relay_policy *p, llsmtp_cidr *nets, llsmtp_ip *own)
{
    static const char *const netspecs[] = {"192.168.0.0/16", "2001:db8:1::/48",
                                           "::ffff:10.0.0.0/104"};
    size_t i;
    llsmtp_relay_policy_init(p);
    for (i = 0; i < 3; i++)
        assert_int_equal(llsmtp_cidr_parse(netspecs[i], strlen(netspecs[i]),
                                           &nets[i]),
                         LLSMTP_OK);
    assert_int_equal(llsmtp_ip_parse("192.0.2.25", 10, &own[0]), LLSMTP_OK);
    assert_int_equal(llsmtp_ip_parse("2001:db8::25", 12, &own[1]), LLSMTP_OK);
    p->local_domains = local_domains;
    p->nlocal = 3;
    p->relay_domains = relay_domains;
    p->nrelay = 2;
    p->networks = nets;
    p->nnetworks = 3;
    p->own_addrs = own;
    p->nown = 2;
}

static void
test_relay_table(void **state)
{
    llsmtp_relay_policy p;
    llsmtp_cidr nets[3];
    llsmtp_ip own[2];
    size_t i;
    (void)state;
    make_policy(&p, nets, own);
    for (i = 0; i < sizeof relay_cases / sizeof relay_cases[0]; i++) {
        const relay_case *c = &relay_cases[i];
        llsmtp_path path;
        llsmtp_ip ip;
        size_t end;
        int rc, v;
        char got;
        rc = llsmtp_path_parse(c->rcpt, strlen(c->rcpt),
                               LLSMTP_PARSE_ALLOW_POSTMASTER, &path, &end);
        if (rc != LLSMTP_OK) {
            got = 'S';
        } else {
            if (c->client != NULL)
                assert_int_equal(llsmtp_ip_parse(c->client, strlen(c->client),
                                                 &ip),
                                 LLSMTP_OK);
            v = llsmtp_relay_check(&p, c->client ? &ip : NULL, c->auth, &path);
            got = v == LLSMTP_RELAY_LOCAL     ? 'L'
                  : v == LLSMTP_RELAY_ALLOWED ? 'A'
                  : v == LLSMTP_RELAY_DENIED  ? 'D'
                                              : '?';
        }
        if (got != c->want)
            fail_msg("case %zu %s from %s auth %d: got %c want %c", i, c->rcpt,
                     c->client ? c->client : "?", c->auth, got, c->want);
    }
    /* policy switches */
    {
        llsmtp_path path;
        llsmtp_ip ip;
        size_t end;
        llsmtp_path_parse("<u@outside.test>", 16, 0, &path, &end);
        llsmtp_ip_parse("192.168.1.1", 11, &ip);
        p.trusted_may_relay = 0;
        assert_int_equal(llsmtp_relay_check(&p, &ip, 0, &path),
                         LLSMTP_RELAY_DENIED);
        p.auth_may_relay = 0;
        assert_int_equal(llsmtp_relay_check(&p, NULL, 1, &path),
                         LLSMTP_RELAY_DENIED);
        assert_int_equal(llsmtp_relay_check(NULL, NULL, 1, &path),
                         LLSMTP_E_INVAL);
    }
}

/* The same table through a session: the RCPT reply says the verdict. */
static int verdict_seen, denied_seen;
static int
count_on_relay_denied(llsmtp_server *s, const llsmtp_path *to)
{
    (void)s;
    (void)to;
    denied_seen++;
    return LLSMTP_OK;
}
static int
verdict_on_rcpt(llsmtp_server *s, const llsmtp_path *to,
                const llsmtp_params *ps, llsmtp_reply *r)
{
    (void)to;
    (void)ps;
    (void)r;
    verdict_seen = llsmtp_server_rcpt_verdict(s);
    return LLSMTP_OK;
}

static void
test_relay_table_in_session(void **state)
{
    llsmtp_relay_policy p;
    llsmtp_cidr nets[3];
    llsmtp_ip own[2];
    llsmtp_callbacks cb;
    llsmtp_config cfg;
    size_t i;
    (void)state;
    make_policy(&p, nets, own);
    memset(&cb, 0, sizeof cb);
    cb.on_rcpt = verdict_on_rcpt;
    cb.on_relay_denied = count_on_relay_denied;
    llsmtp_config_init(&cfg);
    cfg.hostname = "mx.company.test";
    cfg.callbacks = &cb;
    cfg.relay = &p;
    for (i = 0; i < sizeof relay_cases / sizeof relay_cases[0]; i++) {
        const relay_case *c = &relay_cases[i];
        th_host h;
        llsmtp_server *s;
        llsmtp_ip ip;
        th_buf in = {0};
        char want[600];
        size_t used;
        memset(&h, 0, sizeof h);
        s = th_session(&cfg, &h);
        if (c->client != NULL) {
            llsmtp_ip_parse(c->client, strlen(c->client), &ip);
            llsmtp_server_set_peer(s, &ip);
        }
        llsmtp_server_set_authenticated(s, c->auth);
        llsmtp_server_start(s);
        th_buf_adds(&in,
                    "EHLO client.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:");
        th_buf_adds(&in, c->rcpt);
        th_buf_adds(&in, "\r\n");
        verdict_seen = -2;
        denied_seen = 0;
        assert_int_equal(llsmtp_server_feed(s, in.p, in.n, &used), LLSMTP_OK);
        assert_int_equal(denied_seen, c->want == 'D');
        th_drain(s, &h);
        switch (c->want) {
        case 'L':
        case 'A':
            snprintf(want, sizeof want, "\r\n250 2.1.5 Recipient %.*s OK\r\n",
                     (int)strlen(c->rcpt), c->rcpt);
            if (strncmp(c->rcpt, "<@", 2) != 0 &&
                strstr(h.out.p, want) == NULL)
                fail_msg("case %zu %s: no 250 in %s", i, c->rcpt, h.out.p);
            assert_int_equal(verdict_seen, c->want == 'L'
                                               ? LLSMTP_RELAY_LOCAL
                                               : LLSMTP_RELAY_ALLOWED);
            break;
        case 'D':
            if (strstr(h.out.p, "\r\n550 5.7.1 Unable to relay for <") == NULL)
                fail_msg("case %zu %s: no 550 in %s", i, c->rcpt, h.out.p);
            assert_int_equal(verdict_seen, -2); /* on_rcpt not asked */
            break;
        default:
            assert_non_null(strstr(h.out.p, "\r\n501 5.1.3 "));
        }
        free(s);
        th_host_free(&h);
        th_buf_free(&in);
    }
}

/* Relay denials count towards max_rcpt_rejects, not max_errors. */
static void
test_rejected_recipient_limit(void **state)
{
    llsmtp_relay_policy p;
    llsmtp_config cfg;
    th_host h;
    llsmtp_server *s;
    size_t used;
    static const char *const local[] = {"company.test"};
    (void)state;
    llsmtp_relay_policy_init(&p);
    p.local_domains = local;
    p.nlocal = 1;
    p.deny_text = "Relaying denied. Proper authentication required.";
    llsmtp_config_init(&cfg);
    cfg.hostname = "mx.company.test";
    cfg.relay = &p;
    cfg.max_rcpt_rejects = 3;
    cfg.max_errors = 2;
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    llsmtp_server_start(s);
    {
        static const char in[] =
            "EHLO x\r\nMAIL FROM:<a@b.test>\r\n"
            "RCPT TO:<a@o1.test>\r\nRCPT TO:<b@o2.test>\r\n"
            "RCPT TO:<ok@company.test>\r\n"
            "RCPT TO:<c@o3.test>\r\nRCPT TO:<d@o4.test>\r\n";
        assert_int_equal(llsmtp_server_feed(s, in, sizeof in - 1, &used),
                         LLSMTP_CLOSE);
    }
    th_drain(s, &h);
    assert_non_null(strstr(h.out.p, "550 5.7.1 Relaying denied. Proper "
                                    "authentication required.\r\n"
                                    "550 5.7.1 Relaying denied."));
    assert_non_null(strstr(h.out.p, "250 2.1.5 Recipient <ok@company.test> "
                                    "OK\r\n550 5.7.1 Relaying denied. Proper "
                                    "authentication required.\r\n421 4.7.0 "
                                    "mx.company.test Too many rejected "
                                    "recipients, closing connection\r\n"));
    assert_null(strstr(h.out.p, "o4.test"));
    free(s);
    th_host_free(&h);
}

/* Behind a load balancer the relay policy judges the address from the
 * PROXY header, not the balancer's. */
static void
test_proxy_address_drives_relay(void **state)
{
    static const char *const local[] = {"company.test"};
    llsmtp_relay_policy p;
    llsmtp_cidr net;
    llsmtp_config cfg;
    th_host h;
    llsmtp_server *s;
    llsmtp_ip ip;
    uint16_t port = 0;
    size_t used;
    char text[32];
    (void)state;
    llsmtp_relay_policy_init(&p);
    p.local_domains = local;
    p.nlocal = 1;
    assert_int_equal(llsmtp_cidr_parse("10.0.0.0/8", 10, &net), LLSMTP_OK);
    p.networks = &net;
    p.nnetworks = 1;
    llsmtp_config_init(&cfg);
    cfg.hostname = "mx.company.test";
    cfg.relay = &p;
    cfg.flags |= LLSMTP_CFG_PROXY;
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    assert_int_equal(llsmtp_server_start(s), LLSMTP_OK);
    assert_int_equal(llsmtp_server_timeout(s, NULL), LLSMTP_TIMEOUT_GREETING);
    assert_int_equal(TH_FEED(s,
                             "PROXY TCP4 10.1.2.3 192.0.2.25 40000 25\r\n"
                             "EHLO x\r\nMAIL FROM:<a@b.test>\r\n"
                             "RCPT TO:<far@outside.test>\r\n",
                             &used),
                     LLSMTP_OK);
    assert_int_equal(llsmtp_server_peer(s, &ip, &port), 1);
    llsmtp_ip_format(&ip, text, sizeof text);
    assert_string_equal(text, "10.1.2.3");
    assert_int_equal(port, 40000);
    th_drain(s, &h);
    assert_non_null(
        strstr(h.out.p, "250 2.1.5 Recipient <far@outside.test> OK"));
    free(s);
    th_host_free(&h);
    /* the same client without PROXY mode is just unknown: denied */
    cfg.flags &= ~(unsigned)LLSMTP_CFG_PROXY;
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    llsmtp_server_start(s);
    TH_FEED(s,
            "EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<far@outside.test>\r\n",
            &used);
    th_drain(s, &h);
    assert_non_null(strstr(h.out.p, "550 5.7.1 Unable to relay"));
    free(s);
    th_host_free(&h);
}

/* The relay check's domain match takes a domain spelt as configured
 * the fast way (octet for octet) and any other the general way (case,
 * trailing dots, ".parent" entries): the two agree for generated domains
 * against generated lists holding the domain as it is, in another case,
 * with trailing dots, as a ".parent" entry, cut short, and unrelated
 * names, empty ones, "." and NULL. */
static void
relay_mangle(uint64_t *seed, char *e, const char *d, size_t dn)
{
    size_t k, n = dn;
    uint64_t r = th_rand(seed) % 8;
    if (r == 0 && dn > 0) { /* a ".parent" of d, or of anything */
        k = (size_t)(th_rand(seed) % dn);
        e[0] = '.';
        memcpy(e + 1, d + k, dn - k);
        n = dn - k + 1;
    } else if (r == 1) {
        n = th_gen_domain(seed, e, 300);
    } else {
        memcpy(e, d, dn);
        if (r == 2 && dn > 0)
            n = (size_t)(th_rand(seed) % dn); /* cut short */
    }
    for (k = 0; k < n; k++) /* ASCII case games */
        if (th_rand(seed) % 4 == 0 &&
            ((e[k] | 0x20) >= 'a' && (e[k] | 0x20) <= 'z'))
            e[k] = (char)(e[k] ^ 0x20);
    r = th_rand(seed) % 6;
    while (r-- > 3)
        e[n++] = '.'; /* up to two trailing dots */
    e[n] = '\0';
}

static void
test_domain_match_fast_matches_general(void **state)
{
    static char d[400], es[5][700];
    const char *list[5];
    uint64_t seed = 4242;
    int round;
    size_t hits = 0;
    (void)state;
    for (round = 0; round < 300000; round++) {
        size_t dn = th_gen_domain(&seed, d, 300), n, i;
        int a, b;
        if (th_rand(&seed) % 8 == 0)
            d[dn++] = '.';
        if (th_rand(&seed) % 16 == 0)
            d[dn++] = '.';
        n = (size_t)(th_rand(&seed) % 5);
        for (i = 0; i < n; i++) {
            uint64_t r = th_rand(&seed) % 16;
            if (r == 0) {
                list[i] = NULL;
            } else if (r == 1) {
                list[i] = th_rand(&seed) % 2   ? ""
                          : th_rand(&seed) % 2 ? "."
                                               : "..";
            } else {
                relay_mangle(&seed, es[i], d, dn);
                list[i] = es[i];
            }
        }
        a = llsmtp__relay_domain_in(d, dn, list, n);
        b = llsmtp__relay_domain_in_general(d, dn, list, n);
        assert_int_equal(a, b);
        hits += (size_t)a;
    }
    print_message("%zu of 300000 matched\n", hits);
    assert_true(hits > 50000);
}

/* The routing octets in a local part, whatever else it holds: "%" and
 * "!" always, "@" when quoted; every other octet is none (the relay
 * check finds them with a bit mask an octet). */
static void
test_local_route_octets(void **state)
{
    static const char *const local[] = {"company.test"};
    llsmtp_relay_policy p;
    char lp[3];
    int c, quoted;
    (void)state;
    llsmtp_relay_policy_init(&p);
    p.local_domains = local;
    p.nlocal = 1;
    for (quoted = 0; quoted < 2; quoted++)
        for (c = 0; c < 256; c++) {
            llsmtp_path r;
            int routes = c == '%' || c == '!' || (c == '@' && quoted);
            memset(&r, 0, sizeof r);
            lp[0] = 'a';
            lp[1] = (char)c;
            lp[2] = 'b';
            r.local.p = lp;
            r.local.n = 3;
            r.domain.p = "company.test";
            r.domain.n = 12;
            r.mailbox = r.local; /* not read by the check */
            r.flags = quoted ? LLSMTP_PATH_QUOTED : 0;
            assert_int_equal(llsmtp_relay_check(&p, NULL, 0, &r),
                             routes ? LLSMTP_RELAY_DENIED
                                    : LLSMTP_RELAY_LOCAL);
        }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cidr_parse),
        cmocka_unit_test(test_cidr_match),
        cmocka_unit_test(test_relay_table),
        cmocka_unit_test(test_relay_table_in_session),
        cmocka_unit_test(test_rejected_recipient_limit),
        cmocka_unit_test(test_proxy_address_drives_relay),
        cmocka_unit_test(test_domain_match_fast_matches_general),
        cmocka_unit_test(test_local_route_octets),
    };
    return cmocka_run_group_tests_name("relay", tests, NULL, NULL);
}
