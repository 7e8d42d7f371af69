/* SPDX-License-Identifier: MIT
 *
 * test_client.c - the client building blocks: the reply parser (strict,
 * bounded, split-invariant), EHLO keywords, and the body encoder, checked
 * against the server session itself: whatever the encoder emits, an
 * llsmtp server delivers exactly the CRLF-normalised input and ends the
 * message exactly where the encoder ended it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"

/* Runs input through a parser in the given chunk size; returns the lines
 * as "code|last|text\n" records, or "ERROR" appended on a syntax error. */
static void
parse_all(const char *in, size_t n, size_t chunk, unsigned max, th_buf *out)
{
    llsmtp_reply_parser p;
    size_t off = 0;
    llsmtp_reply_parser_init(&p, max);
    while (off < n) {
        size_t len = n - off < chunk ? n - off : chunk, used;
        while (len > 0) {
            llsmtp_reply_line l;
            char head[32];
            int rc = llsmtp_reply_parser_feed(&p, in + off, len, &used, &l);
            off += used;
            len -= used;
            if (rc == LLSMTP_E_SYNTAX) {
                th_buf_adds(out, "ERROR\n");
                return;
            }
            if (rc == 1) {
                snprintf(head, sizeof head, "%d|%d|%u|", l.code, l.last,
                         l.index);
                th_buf_adds(out, head);
                th_buf_add(out, l.text.p, l.text.n);
                th_buf_adds(out, "\n");
            }
        }
    }
}

static void
expect_lines(const char *in, unsigned max, const char *want)
{
    size_t chunk, n = strlen(in);
    for (chunk = 1; chunk <= n; chunk++) {
        th_buf got = {0};
        parse_all(in, n, chunk, max, &got);
        th_buf_add(&got, "", 0);
        if (strcmp(got.p, want) != 0)
            fail_msg("chunk %zu of %s:\ngot  %s\nwant %s", chunk, in, got.p,
                     want);
        th_buf_free(&got);
    }
}

static void
test_reply_parser(void **state)
{
    (void)state;
    expect_lines("220 mx.example.test ESMTP\r\n", 0,
                 "220|1|0|mx.example.test ESMTP\n");
    expect_lines("250-mx.example.test\r\n250-PIPELINING\r\n250 SIZE 100\r\n",
                 0,
                 "250|0|0|mx.example.test\n250|0|1|PIPELINING\n"
                 "250|1|2|SIZE 100\n");
    expect_lines("250\r\n354 go\r\n", 0, "250|1|0|\n354|1|0|go\n");
    expect_lines("250-\r\n250 \r\n", 0, "250|0|0|\n250|1|1|\n");
    /* hostile or broken */
    expect_lines("250-a\r\n251 b\r\n", 0, "250|0|0|a\nERROR\n");
    expect_lines("25x ok\r\n", 0, "ERROR\n");
    expect_lines("199 ok\r\n", 0, "ERROR\n");
    expect_lines("600 ok\r\n", 0, "ERROR\n");
    expect_lines("260 ok\r\n", 0, "ERROR\n");
    expect_lines("250?ok\r\n", 0, "ERROR\n");
    expect_lines("25\r\n", 0, "ERROR\n");
    expect_lines("250 ok\n", 0, "ERROR\n");
    expect_lines("250 o\rk\r\n", 0, "ERROR\n");
    expect_lines("250-1\r\n250-2\r\n250-3\r\n250 4\r\n", 3,
                 "250|0|0|1\n250|0|1|2\n250|0|2|3\nERROR\n");
    expect_lines("250-1\r\n250-2\r\n250 3\r\n250-1\r\n250 2\r\n", 3,
                 "250|0|0|1\n250|0|1|2\n250|1|2|3\n250|0|0|1\n250|1|1|2\n");
}

static void
test_reply_line_limit(void **state)
{
    char line[600];
    th_buf got = {0};
    size_t chunk;
    (void)state;
    memset(line, 'x', sizeof line);
    memcpy(line, "250 ", 4);
    memcpy(line + 510, "\r\n", 3); /* 512 octets */
    for (chunk = 1; chunk <= 512; chunk *= 2) {
        got.n = 0;
        parse_all(line, 512, chunk, 0, &got);
        assert_int_equal(got.n, 9 + 506);
        assert_memory_equal(got.p, "250|1|0|", 8);
    }
    memcpy(line + 511, "\r\n", 3); /* 513 octets */
    for (chunk = 1; chunk <= 513; chunk *= 2) {
        got.n = 0;
        parse_all(line, 513, chunk, 0, &got);
        th_buf_add(&got, "", 0);
        assert_string_equal(got.p, "ERROR\n");
    }
    th_buf_free(&got);
    /* sticky */
    {
        llsmtp_reply_parser p;
        llsmtp_reply_line l;
        size_t used;
        llsmtp_reply_parser_init(&p, 0);
        assert_int_equal(llsmtp_reply_parser_feed(&p, "xyz\r\n", 5, &used, &l),
                         LLSMTP_E_SYNTAX);
        assert_int_equal(llsmtp_reply_parser_feed(&p, "250 ok\r\n", 8, &used,
                                                  &l),
                         LLSMTP_E_SYNTAX);
    }
}

static llsmtp_span
sp(const char *s)
{
    llsmtp_span x;
    x.p = s;
    x.n = strlen(s);
    return x;
}

static void
test_ehlo_keywords(void **state)
{
    llsmtp_ehlo_info i;
    (void)state;
    memset(&i, 0, sizeof i);
    llsmtp_ehlo_keyword(&i, sp("PIPELINING"));
    llsmtp_ehlo_keyword(&i, sp("SIZE 10240000"));
    llsmtp_ehlo_keyword(&i, sp("8bitmime"));
    llsmtp_ehlo_keyword(&i, sp("AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2"));
    llsmtp_ehlo_keyword(&i, sp("STARTTLS"));
    llsmtp_ehlo_keyword(&i, sp("ENHANCEDSTATUSCODES"));
    llsmtp_ehlo_keyword(&i, sp("DSN"));
    llsmtp_ehlo_keyword(&i, sp("SMTPUTF8"));
    llsmtp_ehlo_keyword(&i, sp("CHUNKING"));
    llsmtp_ehlo_keyword(&i, sp("X-EXPS GSSAPI NTLM"));
    llsmtp_ehlo_keyword(&i, sp("PIPELININGX"));
    assert_int_equal(i.extensions,
                     LLSMTP_EXT_PIPELINING | LLSMTP_EXT_SIZE |
                         LLSMTP_EXT_8BITMIME | LLSMTP_EXT_AUTH |
                         LLSMTP_EXT_STARTTLS | LLSMTP_EXT_ENHANCEDSTATUS |
                         LLSMTP_EXT_DSN | LLSMTP_EXT_SMTPUTF8 |
                         LLSMTP_EXT_CHUNKING);
    assert_true(i.max_size == 10240000);
    assert_int_equal(i.mechanisms, LLSMTP_MECH_PLAIN | LLSMTP_MECH_LOGIN |
                                       LLSMTP_MECH_CRAM_MD5 |
                                       LLSMTP_MECH_OTHER);
    memset(&i, 0, sizeof i);
    llsmtp_ehlo_keyword(&i, sp("AUTH=LOGIN"));
    llsmtp_ehlo_keyword(&i, sp("SIZE"));
    assert_int_equal(i.mechanisms, LLSMTP_MECH_LOGIN);
    assert_true(i.max_size == 0);
    assert_true(i.extensions & LLSMTP_EXT_SIZE);
}

static size_t
encode(const char *in, size_t n, size_t chunk, char *out)
{
    llsmtp_dot_encoder e;
    size_t off = 0, o = 0;
    llsmtp_dot_init(&e);
    while (off < n) {
        size_t len = n - off < chunk ? n - off : chunk;
        o += llsmtp_dot_encode(&e, in + off, len, out + o, 1 << 20);
        off += len;
    }
    o += llsmtp_dot_finish(&e, out + o, 8);
    return o;
}

static void
test_dot_encoder(void **state)
{
    static const char *const v[][2] = {
        {"", ".\r\n"},
        {"abc", "abc\r\n.\r\n"},
        {"abc\r\n", "abc\r\n.\r\n"},
        {".", "..\r\n.\r\n"},
        {".\r\n", "..\r\n.\r\n"},
        {"a\n.b\r\n..c", "a\r\n..b\r\n...c\r\n.\r\n"},
        {"a\r.\rb", "a\r\n..\r\nb\r\n.\r\n"},
        {"a\r\r\n", "a\r\n\r\n.\r\n"},
        {"\r\n.\r\n", "\r\n..\r\n.\r\n"},
    };
    size_t i, chunk;
    char out[256];
    (void)state;
    for (i = 0; i < sizeof v / sizeof v[0]; i++)
        for (chunk = 1; chunk <= 8; chunk++) {
            size_t n = encode(v[i][0], strlen(v[i][0]), chunk, out);
            out[n] = '\0';
            if (strcmp(out, v[i][1]) != 0)
                fail_msg("%zu chunk %zu: got %s", i, chunk, out);
        }
    {
        llsmtp_dot_encoder e;
        llsmtp_dot_init(&e);
        assert_int_equal(llsmtp_dot_encode(&e, "ab", 2, out, 5), 0);
        assert_int_equal(llsmtp_dot_finish(&e, out, 4), 0);
    }
}

/* CRLF-normalised input with its last line closed: what the next hop
 * must receive. */
static void
normalise(const char *in, size_t n, th_buf *out)
{
    size_t i;
    int bol = 1;
    for (i = 0; i < n; i++) {
        if (in[i] == '\r' && i + 1 < n && in[i + 1] == '\n')
            i++;
        if (in[i] == '\r' || in[i] == '\n') {
            th_buf_adds(out, "\r\n");
            bol = 1;
        } else {
            th_buf_add(out, in + i, 1);
            bol = 0;
        }
    }
    if (!bol)
        th_buf_adds(out, "\r\n");
}

static void
test_encoder_against_server(void **state)
{
    static const char alphabet[] = "ab..\r\r\n\n";
    uint64_t seed = 99;
    unsigned it;
    llsmtp_config cfg;
    (void)state;
    llsmtp_config_init(&cfg);
    cfg.callbacks = &th_callbacks;
    cfg.bare_lf = LLSMTP_BARE_LF_REJECT; /* any bare LF would show */
    for (it = 0; it < (getenv("LLSMTP_QUICK") ? 300u : 3000u); it++) {
        char body[300], *enc;
        size_t n = (size_t)(th_rand(&seed) % 300), k, elen, used;
        th_host h;
        th_buf in = {0}, want = {0}, ev = {0};
        llsmtp_server *s;
        for (k = 0; k < n; k++)
            body[k] = alphabet[th_rand(&seed) % (sizeof alphabet - 1)];
        enc = (char *)malloc(llsmtp_dot_encoded_max(n) + 8);
        elen = encode(body, n, 1 + (size_t)(th_rand(&seed) % 16), enc);
        th_buf_adds(&in, "HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b.c>\r\nDATA\r\n");
        th_buf_add(&in, enc, elen);
        memset(&h, 0, sizeof h);
        s = th_session(&cfg, &h);
        llsmtp_server_start(s);
        assert_int_equal(llsmtp_server_feed(s, in.p, in.n, &used), LLSMTP_OK);
        assert_int_equal(used, in.n);
        /* the message ended exactly at the encoder's end */
        assert_int_equal(llsmtp_server_timeout(s, NULL), LLSMTP_TIMEOUT_MAIL);
        normalise(body, n, &want);
        th_buf_adds(&ev, "data_end");
        if (want.n) {
            th_buf_adds(&ev, " ");
            th_escape(&ev, want.p, want.n);
        }
        th_buf_adds(&ev, "\n");
        if (strstr(h.events.p, ev.p) == NULL)
            fail_msg("iteration %u: %s\nwant %s", it, h.events.p, ev.p);
        free(s);
        free(enc);
        th_host_free(&h);
        th_buf_free(&in);
        th_buf_free(&want);
        th_buf_free(&ev);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_parser),
        cmocka_unit_test(test_reply_line_limit),
        cmocka_unit_test(test_ehlo_keywords),
        cmocka_unit_test(test_dot_encoder),
        cmocka_unit_test(test_encoder_against_server),
    };
    return cmocka_run_group_tests_name("client", tests, NULL, NULL);
}
