/* SPDX-License-Identifier: MIT
 *
 * test_proxy.c - the PROXY protocol header parser (lib/proxy.c) on its
 * own: v1 lines and v2 headers it takes (with the client they name, or
 * none), and those it refuses. The session's reading of the header from
 * its input is in the proxy_*.txt transcripts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"
#include "internal.h"

static int
parse(const char *h, size_t n, llsmtp_ip *ip, uint16_t *port)
{
    memset(ip, 0xA5, sizeof *ip);
    *port = 7;
    return llsmtp__proxy_parse(h, n, ip, port);
}

static int
parse_str(const char *line, llsmtp_ip *ip, uint16_t *port)
{
    return parse(line, strlen(line), ip, port);
}

static void
test_v1_accepted(void **state)
{
    llsmtp_ip ip;
    uint16_t port;
    static const uint8_t v4[4] = {192, 0, 2, 1};
    (void)state;
    assert_int_equal(
        parse_str("PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n", &ip,
                  &port),
        1);
    assert_int_equal(ip.family, 4);
    assert_memory_equal(ip.addr, v4, 4);
    assert_int_equal(port, 56324);
    assert_int_equal(parse_str("PROXY TCP6 2001:db8::1 2001:db8::2 0 25\r\n",
                               &ip, &port),
                     1);
    assert_int_equal(ip.family, 6);
    assert_int_equal(ip.addr[0], 0x20);
    assert_int_equal(ip.addr[15], 1);
    assert_int_equal(port, 0);
    /* UNKNOWN names no client, whatever follows */
    assert_int_equal(parse_str("PROXY UNKNOWN\r\n", &ip, &port), 1);
    assert_int_equal(ip.family, 0);
    assert_int_equal(port, 0);
    assert_int_equal(
        parse_str("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 "
                  "65535\r\n",
                  &ip, &port),
        1);
    assert_int_equal(ip.family, 0);
}

static void
test_v1_refused(void **state)
{
    static const char *const bad[] = {
        "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\n",    /* no CR */
        "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25",      /* no CRLF */
        "PROXY TCP4 192.0.2.1 198.51.100.2 056324 25\r\n", /* leading 0 */
        "PROXY TCP4 192.0.2.1 198.51.100.2 65536 25\r\n",  /* > 65535 */
        "PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n",     /* a field more */
        "PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n",         /* one less */
        "PROXY TCP4 2001:db8::1 2001:db8::2 1 25\r\n",     /* family */
        "PROXY TCP6 192.0.2.1 2001:db8::2 1 25\r\n",       /* mixed */
        "PROXY TCP4 192.0.2.999 198.51.100.2 1 25\r\n",    /* address */
        "PROXY UDP4 192.0.2.1 198.51.100.2 1 25\r\n",      /* protocol */
        "PROXY  TCP4 192.0.2.1 198.51.100.2 1 25\r\n",     /* two spaces */
        "PROXY\r\n",
        "proxy TCP4 192.0.2.1 198.51.100.2 1 25\r\n", /* case */
        "P\r\n",
        ""};
    size_t i;
    llsmtp_ip ip;
    uint16_t port;
    (void)state;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        print_message("%s\n", bad[i]);
        assert_int_equal(parse_str(bad[i], &ip, &port), 0);
    }
}

/* A v2 header: signature, version 2 and cmd, family, the address length
 * len, then the block (and TLVs: the parser needs only what it names). */
static size_t
v2(char *h, unsigned ver_cmd, unsigned fam, size_t len, const char *block,
   size_t have)
{
    static const char sig[12] = {'\r', '\n', '\r', '\n', '\0', '\r',
                                 '\n', 'Q',  'U',  'I',  'T',  '\n'};
    memcpy(h, sig, 12);
    h[12] = (char)ver_cmd;
    h[13] = (char)fam;
    h[14] = (char)(len >> 8);
    h[15] = (char)(len & 0xff);
    memcpy(h + 16, block, have);
    return 16 + have;
}

static void
test_v2(void **state)
{
    char h[16 + 300];
    char block[300];
    llsmtp_ip ip;
    uint16_t port;
    size_t n;
    static const uint8_t v4[4] = {192, 0, 2, 1};
    (void)state;
    memset(block, 0, sizeof block);
    memcpy(block, "\xc0\x00\x02\x01\xc6\x33\x64\x02\xdc\x04\x00\x19", 12);
    /* PROXY, TCP over IPv4 */
    n = v2(h, 0x21, 0x11, 12, block, 12);
    assert_int_equal(llsmtp__proxy_len(h), 28);
    assert_int_equal(llsmtp__proxy_v2_addr(h), 12);
    assert_int_equal(parse(h, n, &ip, &port), 1);
    assert_int_equal(ip.family, 4);
    assert_memory_equal(ip.addr, v4, 4);
    assert_int_equal(port, 0xdc04);
    /* TLVs after the addresses: not needed, not read */
    n = v2(h, 0x21, 0x11, 12 + 40, block, 12);
    assert_int_equal(llsmtp__proxy_len(h), 16 + 52);
    assert_int_equal(llsmtp__proxy_v2_addr(h), 52);
    assert_int_equal(parse(h, n, &ip, &port), 0); /* 40 bytes short */
    n = v2(h, 0x21, 0x11, 12 + 40, block, 52);
    assert_int_equal(parse(h, n, &ip, &port), 1);
    assert_int_equal(ip.family, 4);
    /* a block longer than LLSMTP__PROXY_V2_ADDR: only that much read */
    n = v2(h, 0x21, 0x11, 1000, block, LLSMTP__PROXY_V2_ADDR);
    assert_int_equal(llsmtp__proxy_v2_addr(h), LLSMTP__PROXY_V2_ADDR);
    assert_int_equal(parse(h, n, &ip, &port), 1);
    /* TCP over IPv6 */
    memset(block, 0, 36);
    block[0] = 0x20;
    block[32] = 0x0f;
    block[33] = (char)0xa0;
    n = v2(h, 0x21, 0x21, 36, block, 36);
    assert_int_equal(parse(h, n, &ip, &port), 1);
    assert_int_equal(ip.family, 6);
    assert_int_equal(ip.addr[0], 0x20);
    assert_int_equal(port, 0x0fa0);
    /* LOCAL and UNSPEC: no client */
    n = v2(h, 0x20, 0x11, 12, block, 12);
    assert_int_equal(parse(h, n, &ip, &port), 1);
    assert_int_equal(ip.family, 0);
    assert_int_equal(port, 0);
    n = v2(h, 0x21, 0x00, 0, block, 0);
    assert_int_equal(parse(h, n, &ip, &port), 1);
    assert_int_equal(ip.family, 0);
    /* refused: short blocks, UDP, UNIX, version 1, cmd 2, signature */
    n = v2(h, 0x21, 0x11, 11, block, 11);
    assert_int_equal(parse(h, n, &ip, &port), 0);
    n = v2(h, 0x21, 0x21, 35, block, 35);
    assert_int_equal(parse(h, n, &ip, &port), 0);
    n = v2(h, 0x21, 0x12, 12, block, 12);
    assert_int_equal(parse(h, n, &ip, &port), 0);
    n = v2(h, 0x21, 0x31, 216, block, 216);
    assert_int_equal(parse(h, n, &ip, &port), 0);
    n = v2(h, 0x11, 0x11, 12, block, 12);
    assert_int_equal(parse(h, n, &ip, &port), 0);
    n = v2(h, 0x22, 0x11, 12, block, 12);
    assert_int_equal(parse(h, n, &ip, &port), 0);
    n = v2(h, 0x21, 0x11, 12, block, 12);
    assert_int_equal(llsmtp__proxy_v2_sig(h, 11), 1);
    assert_int_equal(llsmtp__proxy_v2_sig(h, n), 1);
    h[7] = 'q';
    assert_int_equal(llsmtp__proxy_v2_sig(h, 12), 0);
    /* judged once all 12 bytes are in, as the session reads them */
    assert_int_equal(llsmtp__proxy_v2_sig(h, 11), 1);
    assert_int_equal(parse(h, n, &ip, &port), 0);
    h[7] = 'Q';
    assert_int_equal(parse(h, 15, &ip, &port), 0); /* fixed part cut */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_accepted),
        cmocka_unit_test(test_v1_refused),
        cmocka_unit_test(test_v2),
    };
    return cmocka_run_group_tests_name("proxy", tests, NULL, NULL);
}
