/* SPDX-License-Identifier: MIT
 *
 * test_overread.c - over-read tests in the style of picohttpparser: every
 * parser is fed inputs that end exactly where a PROT_NONE guard page
 * begins, and every prefix of each input too, so that reading one byte
 * past what it was given crashes the test instead of going unnoticed
 * (ASan does not see reads past the caller's span inside a larger buffer;
 * this does). Streaming parsers (server session, reply parser, client)
 * also get the rest of the input in a second call that ends at the guard,
 * the buffer of the first call having been overwritten in between.
 * POSIX only (mmap, mprotect); lib/ stays ISO C.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

int llsmtp__sasl_name_ok(const char *p, size_t n); /* lib/sasl.c */

#define OV_PAGES 4 /* readable pages before the guard */

static char *ov_base;  /* OV_PAGES readable pages, then the guard */
static size_t ov_span; /* bytes before the guard */

static int
ov_setup(void **state)
{
    long pg = sysconf(_SC_PAGESIZE);
    char *m;
    int fd;
    (void)state;
    if (pg <= 0)
        return -1;
    ov_span = (size_t)pg * OV_PAGES;
    /* /dev/zero, not MAP_ANONYMOUS: the tests build as POSIX.1-2008 */
    fd = open("/dev/zero", O_RDWR);
    if (fd < 0)
        return -1;
    m = mmap(NULL, ov_span + (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE,
             fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return -1;
    if (mprotect(m + ov_span, (size_t)pg, PROT_NONE) != 0)
        return -1;
    ov_base = m;
    return 0;
}

static int
ov_teardown(void **state)
{
    (void)state;
    munmap(ov_base, ov_span + (size_t)sysconf(_SC_PAGESIZE));
    return 0;
}

/* Copies p[0..n) so that it ends at the guard page; returns the copy.
 * The bytes before it are filled with something a parser could mistake
 * for a continuation, so that reading backwards is as visible as it can
 * be without a second guard. */
static char *
ov_place(const void *p, size_t n)
{
    char *at;
    assert_true(n <= ov_span);
    at = ov_base + ov_span - n;
    memset(ov_base + ov_span - (n + 64 <= ov_span ? n + 64 : ov_span), 'A',
           n + 64 <= ov_span ? 64 : ov_span - n);
    if (n)
        memcpy(at, p, n);
    return at;
}

/* The guard is real: a read one byte past a placed input faults. */
static void
test_guard_works(void **state)
{
    pid_t pid;
    int st;
    (void)state;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const volatile char *p = ov_place("x", 1);
        signal(SIGSEGV, SIG_DFL); /* not cmocka's handler */
        signal(SIGBUS, SIG_DFL);
        _exit(p[1] == 'y' ? 3 : 0); /* must not get here */
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_false(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ---- stateless parsers: every prefix of every input ------------------- */

static void
test_path_and_params(void **state)
{
    static const char *const paths[] = {
        "<a@b.example>",
        "<>",
        "<Postmaster>",
        "<postmaster@x.example>",
        "<@r1.example,@r2.example:u@d.example>",
        "<\"q x\\\"y\"@d.example>",
        "<u@[192.0.2.1]>",
        "<u@[IPv6:2001:db8::1]>",
        "<u@[IPv6:::ffff:192.0.2.1]>",
        "<u@[tag:abc]>",
        "<\xc3\xbc@ex\xc3\xa4mple.example>",
        "<a.b.c@d-e.f-g.example> SIZE=1",
        "a@b",
        "<a@b",
        "<a@b.>",
        "<a..b@c>",
        "<\"\">"};
    static const char *const params[] = {
        "SIZE=100 BODY=8BITMIME",
        "RET=HDRS ENVID=a+2Bb",
        "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40b.example",
        "SMTPUTF8",
        "A= B",
        "X-Y=\xc3\xa9",
        "AUTH=<>",
        "K=v  K2"};
    static const char *const xtexts[] = {"abc+2B+3Ddef", "+2", "+", "a+4",
                                         "rfc822;a+40b", "+2b"};
    static const char *const notify[] = {"NEVER", "SUCCESS,DELAY",
                                         "FAILURE,SUCCESS,DELAY", "NEV"};
    static const char *const domains[] = {"example.com", "a-b.c-d.example",
                                          "[192.0.2.1]", "x"};
    static const char *const ips[] = {
        "192.0.2.1", "2001:db8::1",        "::ffff:1.2.3.4", "1::",
        "::",        "fe80:0:0:0:0:0:0:1", "255.255.255.255"};
    static const char *const cidrs[] = {"10.0.0.0/8", "2001:db8::/32",
                                        "::ffff:10.0.0.0/104", "192.0.2.1"};
    static const char *const hosts[] = {"smtp.example:587", "[host.example]",
                                        "[192.0.2.1]:25",
                                        "[IPv6:2001:db8::1]:587",
                                        "[2001:db8::1]"};
    static const unsigned popts[] = {0, LLSMTP_PARSE_ALLOW_NULL |
                                            LLSMTP_PARSE_ALLOW_POSTMASTER |
                                            LLSMTP_PARSE_UTF8};
    size_t i, l, k;
    (void)state;
    for (i = 0; i < sizeof paths / sizeof paths[0]; i++)
        for (l = 0; l <= strlen(paths[i]); l++)
            for (k = 0; k < 2; k++) {
                llsmtp_path out;
                size_t end;
                llsmtp_path_parse(ov_place(paths[i], l), l, popts[k], &out,
                                  &end);
            }
    for (i = 0; i < sizeof params / sizeof params[0]; i++)
        for (l = 0; l <= strlen(params[i]); l++)
            for (k = 0; k < 2; k++) {
                llsmtp_params out;
                size_t end;
                llsmtp_params_parse(ov_place(params[i], l), l, popts[k], &out,
                                    &end);
            }
    for (i = 0; i < sizeof xtexts / sizeof xtexts[0]; i++)
        for (l = 0; l <= strlen(xtexts[i]); l++) {
            char out[64];
            size_t on;
            llsmtp_xtext_decode(ov_place(xtexts[i], l), l, out, sizeof out,
                                &on);
            llsmtp_xtext_decode(ov_place(xtexts[i], l), l, NULL, 0, NULL);
            {
                llsmtp_span a, x;
                llsmtp_dsn_orcpt_parse(ov_place(xtexts[i], l), l, &a, &x);
            }
        }
    for (i = 0; i < sizeof notify / sizeof notify[0]; i++)
        for (l = 0; l <= strlen(notify[i]); l++) {
            unsigned f;
            llsmtp_dsn_notify_parse(ov_place(notify[i], l), l, &f);
        }
    for (i = 0; i < sizeof domains / sizeof domains[0]; i++)
        for (l = 0; l <= strlen(domains[i]); l++)
            for (k = 0; k < 2; k++)
                llsmtp_domain_check(ov_place(domains[i], l), l, popts[k]);
    for (i = 0; i < sizeof ips / sizeof ips[0]; i++)
        for (l = 0; l <= strlen(ips[i]); l++) {
            uint8_t a4[4], a6[16];
            llsmtp_ip ip;
            llsmtp_ipv4_parse(ov_place(ips[i], l), l, a4);
            llsmtp_ipv6_parse(ov_place(ips[i], l), l, a6);
            llsmtp_ip_parse(ov_place(ips[i], l), l, &ip);
        }
    for (i = 0; i < sizeof cidrs / sizeof cidrs[0]; i++)
        for (l = 0; l <= strlen(cidrs[i]); l++) {
            llsmtp_cidr c;
            llsmtp_cidr_parse(ov_place(cidrs[i], l), l, &c);
        }
    for (i = 0; i < sizeof hosts / sizeof hosts[0]; i++)
        for (l = 0; l <= strlen(hosts[i]); l++) {
            llsmtp_relayhost rh;
            size_t at;
            llsmtp_relayhost_parse(ov_place(hosts[i], l), l, &rh, &at);
        }
}

static void
test_base64_and_sasl(void **state)
{
    static const char *const b64[] = {
        "dGVzdA==", "AHVzZXIAc2VjcmV0", "YQ==", "YWI=", "*", "=",
        "YW=j",     "VXNlcm5hbWU6"};
    static const char plain[] = "authz\0user@example\0secret";
    static const char *const names[] = {"user@example", "u", "a b"};
    size_t i, l;
    (void)state;
    for (i = 0; i < sizeof b64 / sizeof b64[0]; i++)
        for (l = 0; l <= strlen(b64[i]); l++) {
            char out[64], *in;
            size_t on;
            llsmtp_b64_decode(ov_place(b64[i], l), l, out, sizeof out, &on);
            in = ov_place(b64[i], l); /* in place, as the server does */
            llsmtp_b64_decode(in, l, in, l, &on);
        }
    for (l = 0; l <= sizeof plain - 1; l++) {
        llsmtp_auth a;
        llsmtp_sasl_plain_parse(ov_place(plain, l), l, &a);
        llsmtp_sasl_plain_parse(ov_place(plain + 5, l > 5 ? l - 5 : 0),
                                l > 5 ? l - 5 : 0, &a);
    }
    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        for (l = 0; l <= strlen(names[i]); l++)
            llsmtp__sasl_name_ok(ov_place(names[i], l), l);
    /* the LOGIN prompts a client decodes */
    for (l = 0; l <= 12; l++) {
        char out[16];
        size_t on;
        llsmtp_b64_decode(ov_place(llsmtp_sasl_login_user_prompt, l), l, out,
                          sizeof out, &on);
        llsmtp_b64_decode(ov_place(llsmtp_sasl_login_pass_prompt, l), l, out,
                          sizeof out, &on);
    }
}

static void
test_ehlo_keyword(void **state)
{
    static const char *const kws[] = {
        "SIZE 10240000", "AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2",
        "AUTH=LOGIN",    "PIPELINING",
        "8BITMIME",      "SIZE 18446744073709551617",
        "STARTTLS",      "SIZE",
        "AUTH ",         "ENHANCEDSTATUSCODES",
        "X-UNKNOWN arg"};
    size_t i, l;
    (void)state;
    for (i = 0; i < sizeof kws / sizeof kws[0]; i++)
        for (l = 0; l <= strlen(kws[i]); l++) {
            llsmtp_ehlo_info info;
            llsmtp_span t;
            memset(&info, 0, sizeof info);
            t.p = ov_place(kws[i], l);
            t.n = l;
            llsmtp_ehlo_keyword(&info, t);
        }
}

/* ---- DNS --------------------------------------------------------------- */

/* dnsmasq's answer for company.test MX (two MX, compressed, glue A and
 * AAAA), the same capture test_dns.c checks. */
static const char ov_dns_hex[] =
    "12348580000100020000000307636f6d70616e79047465737400000f0001c00c000f"
    "00010000000000140014036d783207636f6d70616e79047465737400c00c000f00010"
    "00000000014000a036d783107636f6d70616e79047465737400c02c00010001000000"
    "000004c0000202c02c001c000100000000001020010db800000000000000000000000"
    "2c04c00010001000000000004c0000201";

static void
test_dns(void **state)
{
    uint8_t pkt[512], tcp[514];
    size_t n = strlen(ov_dns_hex) / 2, i, l;
    (void)state;
    for (i = 0; i < n; i++) {
        unsigned v;
        sscanf(ov_dns_hex + 2 * i, "%2x", &v);
        pkt[i] = (uint8_t)v;
    }
    tcp[0] = (uint8_t)(n >> 8);
    tcp[1] = (uint8_t)n;
    memcpy(tcp + 2, pkt, n);
    for (l = 0; l <= n + 2; l++) {
        llsmtp_dns_rr rrs[8];
        llsmtp_mx mx[4];
        size_t nrr, total, nmx;
        int rc;
        if (l <= n) {
            rc = llsmtp_dns_parse((const uint8_t *)ov_place(pkt, l), l, 0,
                                  0x1234, "company.test", 12, 15, rrs, 8, &nrr,
                                  &total);
            if (l == n) {
                assert_int_equal(rc, LLSMTP_DNS_NOERROR);
                assert_int_equal(llsmtp_dns_mx(rrs, nrr, "company.test", 12,
                                               mx, 4, &nmx),
                                 LLSMTP_OK);
                assert_int_equal(nmx, 2);
                /* one slot: the best kept */
                assert_int_equal(llsmtp_dns_mx(rrs, nrr, "company.test", 12,
                                               mx, 1, &nmx),
                                 LLSMTP_DNS_PARTIAL);
            }
        }
        rc = llsmtp_dns_parse((const uint8_t *)ov_place(tcp, l), l, 1, 0x1234,
                              "company.test", 12, 15, rrs, 8, &nrr, &total);
        if (l == n + 2)
            assert_int_equal(rc, LLSMTP_DNS_NOERROR);
    }
    /* the name the caller asks for, at the guard too */
    for (l = 0; l <= 13; l++) {
        uint8_t q[300];
        size_t qn, nrr, total;
        llsmtp_dns_rr rrs[8];
        llsmtp_dns_query(1, ov_place("company.test.", l), l, 15, 0, q,
                         sizeof q, &qn);
        llsmtp_dns_parse(pkt, n, 0, 0x1234, ov_place("company.test.", l), l,
                         15, rrs, 8, &nrr, &total);
    }
}

/* ---- streaming parsers: prefix at the guard, then the rest ------------ */

/* Feeds the reply parser all of p[0..n) (already at the guard). */
static void
ov_reply_feed(llsmtp_reply_parser *rp, const char *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        llsmtp_reply_line line;
        size_t used;
        int rc = llsmtp_reply_parser_feed(rp, p + off, n - off, &used, &line);
        off += used;
        if (rc < 0 || (rc == LLSMTP_OK && used == 0))
            return;
    }
}

static void
test_reply_parser(void **state)
{
    static const char *const in[] = {
        "220 mx.example ESMTP\r\n",
        "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 100\r\n250 8BITMIME\r\n",
        "354 go\r\n",
        "250 \r\n250\r\n",
        "550-x\r\n551 y\r\n",
        "25",
        "250 a\n",
        "250-\r\n250 \r\n"};
    size_t i, l;
    void *mem = malloc(llsmtp_reply_parser_size());
    (void)state;
    assert_non_null(mem);
    for (i = 0; i < sizeof in / sizeof in[0]; i++) {
        size_t n = strlen(in[i]);
        for (l = 0; l <= n; l++) {
            llsmtp_reply_parser *rp = llsmtp_reply_parser_init(
                mem, llsmtp_reply_parser_size(), 0);
            assert_non_null(rp);
            ov_reply_feed(rp, ov_place(in[i], l), l);
            ov_reply_feed(rp, ov_place(in[i] + l, n - l), n - l);
        }
    }
    free(mem);
}

/* A client whose host does what llsmtp_client_wants() says, fed server
 * bytes at the guard. */
static void
ov_client_feed(llsmtp_client *c, const llsmtp_client_msg *m, const char *p,
               size_t n)
{
    size_t off = 0;
    int spins = 0;
    while (spins++ < 1000) {
        unsigned w = llsmtp_client_wants(c);
        llsmtp_client_event ev;
        size_t used;
        int rc = LLSMTP_OK;
        if (w & LLSMTP_WANT_WRITE) {
            llsmtp_client_consume(c, llsmtp_client_output(c).n);
            continue;
        }
        if (w & LLSMTP_WANT_EVENT) {
            rc = llsmtp_client_next_event(c, &ev);
        } else if (w & LLSMTP_WANT_TLS) {
            llsmtp_client_tls_started(c);
            continue;
        } else if (w & LLSMTP_WANT_RESUME) {
            if (llsmtp_client_body_end(c) != LLSMTP_OK)
                llsmtp_client_quit(c);
            continue;
        } else if (w & LLSMTP_WANT_READ) {
            if (off >= n)
                return;
            rc = llsmtp_client_feed(c, p + off, n - off, &used, &ev);
            off += used;
        } else {
            return; /* CLOSE */
        }
        if (rc == LLSMTP_EVENT && ev.type == LLSMTP_CEV_READY)
            llsmtp_client_mail(c, m);
    }
}

static void
test_client_session(void **state)
{
    static const char script[] =
        "220 mx ESMTP\r\n"
        "250-mx\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n"
        "250-ENHANCEDSTATUSCODES\r\n250 AUTH PLAIN LOGIN\r\n"
        "235 2.7.0 ok\r\n"
        "250 2.1.0 ok\r\n250 ok\r\n550 5.1 no\r\n354 go\r\n"
        "250 2.0.0 queued\r\n"
        "250 ok\r\n";
    llsmtp_span to[2];
    llsmtp_client_msg m;
    llsmtp_client_cfg cfg;
    size_t n = sizeof script - 1, l, size;
    void *mem;
    (void)state;
    to[0].p = "a@b";
    to[0].n = 3;
    to[1].p = "c@d";
    to[1].n = 3;
    llsmtp_client_msg_init(&m);
    m.to = to;
    m.nto = 2;
    llsmtp_client_cfg_init(&cfg);
    cfg.helo.p = "client";
    cfg.helo.n = 6;
    cfg.user.p = "u";
    cfg.user.n = 1;
    cfg.password.p = "p";
    cfg.password.n = 1;
    cfg.flags = LLSMTP_CLI_AUTH_CLEARTEXT;
    size = llsmtp_client_size(&cfg);
    mem = malloc(size);
    assert_non_null(mem);
    for (l = 0; l <= n; l++) {
        llsmtp_client *c = llsmtp_client_init(mem, size, &cfg, NULL);
        assert_non_null(c);
        ov_client_feed(c, &m, ov_place(script, l), l);
        ov_client_feed(c, &m, ov_place(script + l, n - l), n - l);
    }
    free(mem);
}

/* ---- the server session ------------------------------------------------ */

/* Feeds p[0..n) (at the guard) as a host would: drains on BLOCKED, does
 * the "handshake" on TLS, resumes what a callback deferred. Returns 0
 * once the session wants to close. */
static int
ov_server_feed(llsmtp_server *s, th_host *h, const char *p, size_t n)
{
    size_t off = 0;
    int spins = 0;
    while (spins++ < 100000) {
        size_t used;
        int rc = llsmtp_server_feed(s, p + off, n - off, &used);
        assert_true(used <= n - off);
        off += used;
        th_drain(s, h);
        if (rc == LLSMTP_CLOSE || rc < 0)
            return 0;
        if (rc == LLSMTP_START_TLS)
            llsmtp_server_tls_started(s);
        else if (rc == LLSMTP_PAUSED && th_resume(s, h) < 0)
            return 0;
        else if (off >= n && rc == LLSMTP_OK)
            return 1;
    }
    fail_msg("the session made no progress");
    return 0;
}

typedef struct ov_dialogue {
    const char *text;
    size_t len; /* 0: strlen(text) */
    unsigned ext, flags;
    const char *want; /* in the replies to the whole dialogue */
} ov_dialogue;

/* clang-format off */
static const char ov_proxy_v2_tcp4[] =
    "\r\n\r\n\0\r\nQUIT\n"      /* signature */
    "\x21\x11\x00\x11"          /* v2 PROXY, TCP over IPv4, 17 bytes */
    "\xc0\x00\x02\x01\xc0\x00\x02\x02\x30\x39\x00\x19" /* addresses, ports */
    "\x01\x00\x02h2"            /* a TLV (ALPN) */
    "EHLO x\r\nQUIT\r\n";
static const char ov_proxy_v2_tcp6[] =
    "\r\n\r\n\0\r\nQUIT\n"
    "\x21\x21\x00\x24"
    "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01"
    "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x02"
    "\x30\x39\x00\x19"
    "HELO x\r\nQUIT\r\n";
static const char ov_proxy_v2_local[] =
    "\r\n\r\n\0\r\nQUIT\n"
    "\x20\x00\x00\x00"
    "HELO x\r\n";
/* clang-format on */

static void
ov_run_dialogue(const ov_dialogue *d)
{
    size_t n = d->len ? d->len : strlen(d->text), l;
    llsmtp_config cfg;
    llsmtp_config_init(&cfg);
    cfg.callbacks = &th_callbacks;
    cfg.extensions |= d->ext;
    cfg.flags |= d->flags;
    cfg.max_size = 10000;
    for (l = 0; l <= n; l++) {
        th_host h;
        llsmtp_server *s;
        memset(&h, 0, sizeof h);
        s = th_session(&cfg, &h);
        llsmtp_server_start(s);
        th_drain(s, &h);
        if (ov_server_feed(s, &h, ov_place(d->text, l), l) &&
            ov_server_feed(s, &h, ov_place(d->text + l, n - l), n - l))
            llsmtp_server_eof(s);
        th_drain(s, &h);
        th_buf_add(&h.out, "", 1);
        if (strstr(h.out.p, d->want) == NULL) /* it got where it should */
            fail_msg("cut at %zu of %.20s...: no \"%s\" in:\n%s", l, d->text,
                     d->want, h.out.p);
        free(s);
        th_host_free(&h);
    }
}

static void
test_server_session(void **state)
{
    static char longline[1400];
    const ov_dialogue ds[] = {
        {"EHLO client.example\r\n"
         "MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME RET=HDRS "
         "ENVID=x+2By\r\n"
         "RCPT TO:<c@d.example> NOTIFY=SUCCESS,FAILURE "
         "ORCPT=rfc822;c+40d.example\r\n"
         "DATA\r\nSubject: x\r\n\r\n..dot\r\nbare\nlf\rcr\r\n.\r\nQUIT\r\n",
         0, LLSMTP_EXT_DSN, 0, "354 "},
        {"EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster>\r\n"
         "RCPT TO:<\"q x\"@[192.0.2.1]>\r\n"
         "RCPT TO:<@r1,@r2:u@[IPv6:2001:db8::1]>\r\nDATA\r\nbody\r\n.\r\n"
         "RSET\r\nNOOP\r\nVRFY x\r\nEXPN y\r\nHELP\r\nFOO\r\nmail from:<x>"
         "\r\nQUIT\r\n",
         0, 0, 0, "221 "},
        {"EHLO x\r\nMAIL FROM:<a@b> BODY=BINARYMIME\r\nRCPT TO:<c@d>\r\n"
         "BDAT 5\r\nhe\r\nlBDAT 0 LAST\r\nMAIL FROM:<a@b>\r\n"
         "RCPT TO:<c@d>\r\nBDAT 3 LAST\r\nabcBDAT 1 x\r\nZBDAT 2\r\n\r\n"
         "QUIT\r\n",
         0, LLSMTP_EXT_CHUNKING | LLSMTP_EXT_BINARYMIME, 0, "221 "},
        {"EHLO x\r\nAUTH PLAIN AHVzZXIAc2VjcmV0\r\nAUTH LOGIN\r\n"
         "dXNlcg==\r\nc2VjcmV0\r\nAUTH PLAIN\r\n*\r\n"
         "AUTH LOGIN dXNlcg==\r\nc2VjcmV0\r\nAUTH PLAIN =\r\n"
         "AUTH CRAM-MD5\r\n*\r\nAUTH PLAIN !!!!\r\nQUIT\r\n",
         0, LLSMTP_EXT_AUTH, LLSMTP_CFG_AUTH_CLEARTEXT, "334 UGFzc3dvcmQ6"},
        {"EHLO x\r\nMAIL FROM:<\xc3\xbc@ex\xc3\xa4mple> SMTPUTF8\r\n"
         "RCPT TO:<\xce\xb4@\xcf\x80.example>\r\nDATA\r\n.\r\n",
         0, LLSMTP_EXT_SMTPUTF8, 0, "354 "},
        {"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\n"
         "DATA\r\nx\r\n.\r\nQUIT\r\n",
         0, 0, LLSMTP_CFG_LMTP, "221 "},
        {"EHLO x\r\nETRN @example.com\r\nSTARTTLS\r\nEHLO y\r\nQUIT\r\n", 0,
         LLSMTP_EXT_STARTTLS | LLSMTP_EXT_ETRN, 0, "220 2.0.0 Ready"},
        {"PROXY TCP4 192.0.2.1 192.0.2.2 12345 25\r\nEHLO x\r\nQUIT\r\n", 0, 0,
         LLSMTP_CFG_PROXY, "221 "},
        {"PROXY TCP6 2001:db8::1 2001:db8::2 1 25\r\nHELO x\r\n", 0, 0,
         LLSMTP_CFG_PROXY, "250 "},
        {"PROXY UNKNOWN\r\nHELO x\r\n", 0, 0, LLSMTP_CFG_PROXY, "250 "},
        {ov_proxy_v2_tcp4, sizeof ov_proxy_v2_tcp4 - 1, 0, LLSMTP_CFG_PROXY,
         "221 "},
        {ov_proxy_v2_tcp6, sizeof ov_proxy_v2_tcp6 - 1, 0, LLSMTP_CFG_PROXY,
         "221 "},
        {ov_proxy_v2_local, sizeof ov_proxy_v2_local - 1, 0, LLSMTP_CFG_PROXY,
         "250 "},
        {longline, 0, 0, 0, "221 "},
    };
    size_t i;
    (void)state;
    /* a command line too long, junk, then a good one */
    memcpy(longline, "HELO x\r\nMAIL FROM:<", 19);
    memset(longline + 19, 'a', 600);
    memcpy(longline + 619, ">\r\n\x01\xff\r\nRCPT TO:<a@b>\r\nQUIT\r\n",
           sizeof ">\r\n\x01\xff\r\nRCPT TO:<a@b>\r\nQUIT\r\n");
    for (i = 0; i < sizeof ds / sizeof ds[0]; i++)
        ov_run_dialogue(&ds[i]);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_guard_works),
        cmocka_unit_test(test_path_and_params),
        cmocka_unit_test(test_base64_and_sasl),
        cmocka_unit_test(test_ehlo_keyword),
        cmocka_unit_test(test_dns),
        cmocka_unit_test(test_reply_parser),
        cmocka_unit_test(test_client_session),
        cmocka_unit_test(test_server_session),
    };
    return cmocka_run_group_tests_name("overread", tests, ov_setup,
                                       ov_teardown);
}
