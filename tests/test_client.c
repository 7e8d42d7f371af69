/* SPDX-License-Identifier: MIT
 *
 * test_client.c - the client building blocks: the reply parser (strict,
 * bounded, split-invariant), EHLO keywords, and the body encoder, checked
 * against the server session itself: whatever the encoder emits, an
 * llsmtp server delivers exactly the CRLF-normalised input and ends the
 * message exactly where the encoder ended it; and the client session:
 * scripted servers in every chunk size, what wants() says at each step,
 * enhanced codes, the body through a small output queue, versioned
 * structs and init refusals, and the session against the llsmtp server
 * in memory, driven by wants() alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"

/* Runs input through a parser in the given chunk size; returns the lines
 * as "code|last|text\n" records, or "ERROR" appended on a syntax error. */
/* Memory for the one parser or client session a test has at a time. */
static union {
    long double ld;
    void *p;
    uint64_t u;
    char b[1 << 17];
} tc_mem;

static llsmtp_reply_parser *
parser_new(unsigned max)
{
    llsmtp_reply_parser *p;
    assert_true(llsmtp_reply_parser_size() <= sizeof tc_mem);
    p = llsmtp_reply_parser_init(&tc_mem, sizeof tc_mem, max);
    assert_non_null(p);
    return p;
}

static void
parse_all(const char *in, size_t n, size_t chunk, unsigned max, th_buf *out)
{
    llsmtp_reply_parser *p = parser_new(max);
    size_t off = 0;
    while (off < n) {
        size_t len = n - off < chunk ? n - off : chunk, used;
        while (len > 0) {
            llsmtp_reply_line l;
            char head[32];
            int rc = llsmtp_reply_parser_feed(p, in + off, len, &used, &l);
            off += used;
            len -= used;
            if (rc == LLSMTP_E_SYNTAX) {
                th_buf_adds(out, "ERROR\n");
                return;
            }
            if (rc == LLSMTP_EVENT) {
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
        llsmtp_reply_parser *p = parser_new(0);
        llsmtp_reply_line l;
        size_t used;
        assert_int_equal(llsmtp_reply_parser_feed(p, "xyz\r\n", 5, &used, &l),
                         LLSMTP_E_SYNTAX);
        assert_int_equal(llsmtp_reply_parser_feed(p, "250 ok\r\n", 8, &used,
                                                  &l),
                         LLSMTP_E_SYNTAX);
        /* placed again: a new parser */
        p = parser_new(0);
        assert_int_equal(llsmtp_reply_parser_feed(p, "250 ok\r\n", 8, &used,
                                                  &l),
                         LLSMTP_EVENT);
        assert_int_equal(l.code, 250);
        /* refused memory */
        assert_null(llsmtp_reply_parser_init(NULL, sizeof tc_mem, 0));
        assert_null(llsmtp_reply_parser_init(&tc_mem,
                                             llsmtp_reply_parser_size() - 1,
                                             0));
        assert_null(
            llsmtp_reply_parser_init(tc_mem.b + 1, sizeof tc_mem - 1, 0));
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
    assert_int_equal(i.extensions, LLSMTP_EXT_PIPELINING | LLSMTP_EXT_SIZE |
                                       LLSMTP_EXT_8BITMIME | LLSMTP_EXT_AUTH |
                                       LLSMTP_EXT_STARTTLS |
                                       LLSMTP_EXT_ENHANCEDSTATUS |
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
    /* RFC 1870 allows 20 digits, more than uint64_t holds: a value that
     * would wrap is "no limit known", never a small number */
    memset(&i, 0, sizeof i);
    llsmtp_ehlo_keyword(&i, sp("SIZE 18446744073709551615"));
    assert_true(i.max_size == UINT64_MAX);
    llsmtp_ehlo_keyword(&i, sp("SIZE 18446744073709551617"));
    assert_true(i.max_size == 0);
    llsmtp_ehlo_keyword(&i, sp("SIZE 10"));
    llsmtp_ehlo_keyword(&i, sp("SIZE 99999999999999999999"));
    assert_true(i.max_size == 0);
    llsmtp_ehlo_keyword(&i, sp("SIZE 00000000000000000010"));
    assert_true(i.max_size == 10);
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
        th_buf_adds(&in,
                    "HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b.c>\r\nDATA\r\n");
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

/* ---- the client session -------------------------------------------------- */

static const char *const cev_names[] = {"?",    "READY",   "TLS",  "RCPT",
                                        "BODY", "MESSAGE", "FAIL", "CLOSED"};

static void
cli_flush(llsmtp_client *c, th_buf *log)
{
    llsmtp_span o = llsmtp_client_output(c);
    if (o.n) {
        th_buf_adds(log, "C: ");
        th_escape(log, o.p, o.n);
        th_buf_adds(log, "\n");
        llsmtp_client_consume(c, o.n);
    }
}

static llsmtp_client *
cli_try(const llsmtp_client_cfg *cfg)
{
    return llsmtp_client_init(&tc_mem, sizeof tc_mem, cfg, NULL);
}

static llsmtp_client *
cli_new(const llsmtp_client_cfg *cfg)
{
    llsmtp_client *c;
    assert_true(llsmtp_client_size(cfg) > 0);
    assert_true(llsmtp_client_size(cfg) <= sizeof tc_mem);
    c = cli_try(cfg);
    assert_non_null(c);
    return c;
}

/* One event in the log: "E: TYPE code[L] rcpt [enhanced|]text". */
static void
cli_log_event(th_buf *log, const llsmtp_client_event *ev)
{
    char head[64];
    snprintf(head, sizeof head, "E: %s %d%s %ld ", cev_names[ev->type],
             ev->code, ev->local ? "L" : "", ev->rcpt);
    th_buf_adds(log, head);
    if (ev->enhanced[0]) {
        th_buf_adds(log, ev->enhanced);
        th_buf_adds(log, "|");
    }
    th_buf_add(log, ev->text.p, ev->text.n);
    th_buf_adds(log, "\n");
}

/* Streams a body through the session's output (writing, i.e. logging,
 * whenever it is BLOCKED), then ends it. */
static void
cli_send_body(llsmtp_client *c, const char *body, size_t n, th_buf *log)
{
    size_t off = 0, used;
    int rc;
    do {
        rc = llsmtp_client_body(c, body + off, n - off, &used);
        off += used;
        assert_true(rc == LLSMTP_OK || rc == LLSMTP_BLOCKED);
        if (rc == LLSMTP_BLOCKED)
            cli_flush(c, log);
    } while (rc == LLSMTP_BLOCKED);
    assert_int_equal(off, n);
    while ((rc = llsmtp_client_body_end(c)) == LLSMTP_BLOCKED)
        cli_flush(c, log);
    assert_int_equal(rc, LLSMTP_OK);
}

/* Runs a client against canned server segments (each fed whole before the
 * next, in the given chunk size), sending msgs in turn with body, and logs
 * what it writes and every event. */
static void
cli_drive(const llsmtp_client_cfg *cfg, const char *const *segs,
          const llsmtp_client_msg *msgs, size_t nmsg, const char *body,
          size_t chunk, th_buf *log)
{
    llsmtp_client *c = cli_new(cfg);
    size_t next = 0, si;
    for (si = 0; segs[si] != NULL; si++) {
        const char *in = segs[si];
        size_t n = strlen(in), off = 0;
        for (;;) {
            size_t len = n - off < chunk ? n - off : chunk, used;
            llsmtp_client_event ev;
            int rc = llsmtp_client_feed(c, in + off, len, &used, &ev);
            off += used;
            if (rc == LLSMTP_OK) {
                assert_int_equal(used, len);
                assert_false(llsmtp_client_wants(c) & LLSMTP_WANT_EVENT);
                cli_flush(c, log);
                if (off >= n)
                    break;
                continue;
            }
            assert_int_equal(rc, LLSMTP_EVENT);
            cli_log_event(log, &ev);
            cli_flush(c, log);
            if (ev.type == LLSMTP_CEV_READY) {
                if (next < nmsg)
                    assert_int_equal(llsmtp_client_mail(c, &msgs[next++]),
                                     LLSMTP_OK);
                else
                    assert_int_equal(llsmtp_client_quit(c), LLSMTP_OK);
            } else if (ev.type == LLSMTP_CEV_TLS) {
                assert_int_equal(llsmtp_client_wants(c), LLSMTP_WANT_TLS);
                assert_int_equal(llsmtp_client_tls_started(c), LLSMTP_OK);
            } else if (ev.type == LLSMTP_CEV_BODY) {
                assert_int_equal(llsmtp_client_wants(c), LLSMTP_WANT_RESUME);
                cli_send_body(c, body, strlen(body), log);
            }
            cli_flush(c, log);
        }
    }
}

/* The same log whatever the chunk size. */
static void
cli_expect(const llsmtp_client_cfg *cfg, const char *const *segs,
           const llsmtp_client_msg *msgs, size_t nmsg, const char *body,
           const char *want)
{
    size_t chunk;
    for (chunk = 1; chunk <= 64; chunk = chunk < 8 ? chunk + 1 : chunk * 2) {
        th_buf log = {0};
        cli_drive(cfg, segs, msgs, nmsg, body, chunk, &log);
        th_buf_add(&log, "", 0);
        if (want == NULL) {
            printf("----\n%s", log.p);
            th_buf_free(&log);
            return;
        }
        if (strcmp(log.p, want) != 0)
            fail_msg("chunk %zu:\ngot:\n%s\nwant:\n%s", chunk, log.p, want);
        th_buf_free(&log);
    }
}

static llsmtp_client_cfg
cli_cfg(unsigned flags)
{
    llsmtp_client_cfg cfg;
    assert_int_equal(llsmtp_client_cfg_init(&cfg), LLSMTP_OK);
    cfg.helo = sp("client.example.test");
    cfg.flags = flags;
    return cfg;
}

static void
test_client_pipelined(void **state)
{
    static const char *const segs[] = {
        "220 mx.example.test ESMTP\r\n",
        "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
        "250-8BITMIME\r\n250 DSN\r\n",
        "250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n"
        "250 2.1.5 ok\r\n354 go\r\n",
        "250 2.0.0 queued as X\r\n",
        "221 2.0.0 bye\r\n",
        NULL};
    llsmtp_span to[3];
    llsmtp_client_msg m;
    llsmtp_client_cfg cfg = cli_cfg(0);
    (void)state;
    to[0] = sp("a@example.test");
    to[1] = sp("nobody@example.test");
    to[2] = sp("c@example.test");
    llsmtp_client_msg_init(&m);
    m.from = sp("s@example.org");
    m.to = to;
    m.nto = 3;
    m.size = 20;
    m.flags = LLSMTP_MSG_8BIT;
    m.mail_params = sp("RET=HDRS");
    cli_expect(&cfg, segs, &m, 1, "Hi\n.dot\r\nend\xc3\xa9",
               "C: EHLO client.example.test\\r\\n\n"
               "E: READY 0L -1 \n"
               "C: MAIL FROM:<s@example.org> SIZE=20 BODY=8BITMIME RET=HDRS"
               "\\r\\nRCPT TO:<a@example.test>\\r\\nRCPT TO:<nobody@"
               "example.test>\\r\\nRCPT TO:<c@example.test>\\r\\nDATA"
               "\\r\\n\n"
               "E: RCPT 250 0 2.1.5 ok\n"
               "E: RCPT 550 1 5.1.1 no such user\n"
               "E: RCPT 250 2 2.1.5 ok\n"
               "E: BODY 354 -1 go\n"
               "C: Hi\\r\\n..dot\\r\\nend\\xc3\\xa9\\r\\n.\\r\\n\n"
               "E: MESSAGE 250 -1 2.0.0 queued as X\n"
               "E: READY 0L -1 \n"
               "C: QUIT\\r\\n\n"
               "E: CLOSED 221 -1 2.0.0 bye\n");
}


/* Two messages without PIPELINING to a HELO-only server: the 8-bit one is
 * refused here (RFC 6152 3), the next goes one command at a time. */
static void
test_client_helo_fallback(void **state)
{
    static const char *const segs[] = {"220 old.example.test\r\n",
                                       "502 what?\r\n",
                                       "250 old\r\n",
                                       "250 ok\r\n",
                                       "550 no\r\n",
                                       "250 ok\r\n",
                                       "354 go\r\n",
                                       "250 kept\r\n",
                                       "221 bye\r\n",
                                       NULL};
    llsmtp_span to[2];
    llsmtp_client_msg m[2];
    llsmtp_client_cfg cfg = cli_cfg(0);
    (void)state;
    to[0] = sp("x@old.example.test");
    to[1] = sp("y@old.example.test");
    llsmtp_client_msg_init(&m[0]);
    llsmtp_client_msg_init(&m[1]);
    m[0].from = sp("s@example.org");
    m[0].to = to;
    m[0].nto = 2;
    m[0].flags = LLSMTP_MSG_8BIT;
    m[1] = m[0];
    m[1].flags = 0;
    m[1].size = 99; /* no SIZE offered: not declared */
    cli_expect(&cfg, segs, m, 2, "plain\r\n",
               "C: EHLO client.example.test\\r\\n\n"
               "C: HELO client.example.test\\r\\n\n"
               "E: READY 0L -1 \n"
               "E: MESSAGE 554L -1 5.6.3|8-bit message and the server "
               "lacks 8BITMIME\n"
               "E: READY 0L -1 \n"
               "C: MAIL FROM:<s@example.org>\\r\\n\n"
               "C: RCPT TO:<x@old.example.test>\\r\\n\n"
               "E: RCPT 550 0 no\n"
               "C: RCPT TO:<y@old.example.test>\\r\\n\n"
               "E: RCPT 250 1 ok\n"
               "C: DATA\\r\\n\n"
               "E: BODY 354 -1 go\n"
               "C: plain\\r\\n.\\r\\n\n"
               "E: MESSAGE 250 -1 kept\n"
               "E: READY 0L -1 \n"
               "C: QUIT\\r\\n\n"
               "E: CLOSED 221 -1 bye\n");
}

/* RFC 2920: MAIL refused (its reply is the result), then every RCPT
 * refused (DATA refused too; the open transaction is RSET first). */
static void
test_client_pipelined_refusals(void **state)
{
    static const char *const segs[] = {
        "220 mx\r\n",
        "250-mx\r\n250 PIPELINING\r\n",
        "451 4.3.0 try later\r\n503 5.5.1 no MAIL\r\n503 5.5.1 no RCPT\r\n",
        "250 ok\r\n550 5.1.1 no\r\n554 5.5.1 no valid recipients\r\n",
        "250 reset\r\n250 ok\r\n250 ok\r\n354 go\r\n250 done\r\n",
        "221 bye\r\n",
        NULL};
    llsmtp_span to = sp("r@mx.test");
    llsmtp_client_msg m;
    llsmtp_client_cfg cfg = cli_cfg(0);
    (void)state;
    llsmtp_client_msg_init(&m);
    m.to = &to; /* null reverse-path */
    m.nto = 1;
    {
        llsmtp_client_msg ms[3];
        ms[0] = ms[1] = ms[2] = m;
        cli_expect(&cfg, segs, ms, 3, "x",
                   "C: EHLO client.example.test\\r\\n\n"
                   "E: READY 0L -1 \n"
                   "C: MAIL FROM:<>\\r\\nRCPT TO:<r@mx.test>\\r\\nDATA\\r\\n\n"
                   "E: MESSAGE 451 -1 4.3.0 try later\n"
                   "E: READY 0L -1 \n"
                   "C: MAIL FROM:<>\\r\\nRCPT TO:<r@mx.test>\\r\\nDATA\\r\\n\n"
                   "E: RCPT 550 0 5.1.1 no\n"
                   "E: MESSAGE 554L -1 5.5.0|no recipient was accepted\n"
                   "E: READY 0L -1 \n"
                   "C: RSET\\r\\nMAIL FROM:<>\\r\\nRCPT TO:<r@mx.test>\\r\\n"
                   "DATA\\r\\n\n"
                   "E: RCPT 250 0 ok\n"
                   "E: BODY 354 -1 go\n"
                   "C: x\\r\\n.\\r\\n\n"
                   "E: MESSAGE 250 -1 done\n"
                   "E: READY 0L -1 \n"
                   "C: QUIT\\r\\n\n"
                   "E: CLOSED 221 -1 bye\n");
    }
}

/* STARTTLS, EHLO again, AUTH PLAIN; LMTP gives one result per accepted
 * recipient (RFC 2033 4.2). */
static void
test_client_tls_auth_lmtp(void **state)
{
    static const char *const segs[] = {
        "220 lmtp\r\n",
        "250-lmtp\r\n250-STARTTLS\r\n250 PIPELINING\r\n",
        "220 2.0.0 go ahead\r\n",
        "250-lmtp\r\n250-AUTH LOGIN PLAIN\r\n250 PIPELINING\r\n",
        "235 2.7.0 ok\r\n",
        "250 ok\r\n250 ok\r\n550 no\r\n250 ok\r\n354 go\r\n",
        "250 2.0.0 a done\r\n452 4.2.2 c over quota\r\n",
        "221 bye\r\n",
        NULL};
    llsmtp_span to[3];
    llsmtp_client_msg m;
    llsmtp_client_cfg cfg = cli_cfg(LLSMTP_CLI_STARTTLS | LLSMTP_CLI_LMTP);
    (void)state;
    cfg.user = sp("user");
    cfg.password = sp("secret");
    to[0] = sp("a@l");
    to[1] = sp("b@l");
    to[2] = sp("c@l");
    llsmtp_client_msg_init(&m);
    m.from = sp("s@l");
    m.to = to;
    m.nto = 3;
    cli_expect(&cfg, segs, &m, 1, "y\r\n",
               "C: LHLO client.example.test\\r\\n\n"
               "C: STARTTLS\\r\\n\n"
               "E: TLS 220 -1 2.0.0 go ahead\n"
               "C: LHLO client.example.test\\r\\n\n"
               "C: AUTH PLAIN AHVzZXIAc2VjcmV0\\r\\n\n"
               "E: READY 0L -1 \n"
               "C: MAIL FROM:<s@l>\\r\\nRCPT TO:<a@l>\\r\\nRCPT TO:<b@l>\\r\\n"
               "RCPT TO:<c@l>\\r\\nDATA\\r\\n\n"
               "E: RCPT 250 0 ok\n"
               "E: RCPT 550 1 no\n"
               "E: RCPT 250 2 ok\n"
               "E: BODY 354 -1 go\n"
               "C: y\\r\\n.\\r\\n\n"
               "E: MESSAGE 250 0 2.0.0 a done\n"
               "E: MESSAGE 452 2 4.2.2 c over quota\n"
               "E: READY 0L -1 \n"
               "C: QUIT\\r\\n\n"
               "E: CLOSED 221 -1 bye\n");
}

static void
test_client_auth_login(void **state)
{
    static const char *const segs[] = {"220 s\r\n",
                                       "250-s\r\n250 AUTH LOGIN\r\n",
                                       "334 VXNlcm5hbWU6\r\n",
                                       "334 UGFzc3dvcmQ6\r\n",
                                       "535 5.7.8 bad credentials\r\n",
                                       NULL};
    llsmtp_client_cfg cfg = cli_cfg(LLSMTP_CLI_AUTH_CLEARTEXT);
    (void)state;
    cfg.user = sp("u");
    cfg.password = sp("p");
    cli_expect(&cfg, segs, NULL, 0, "",
               "C: EHLO client.example.test\\r\\n\n"
               "C: AUTH LOGIN\\r\\n\n"
               "C: dQ==\\r\\n\n"
               "C: cA==\\r\\n\n"
               "E: FAIL 535 -1 5.7.8 bad credentials\n"
               "C: QUIT\\r\\n\n");
}

/* What must stop a session: credentials or TLS the server cannot honour,
 * injected bytes after 220 to STARTTLS, malformed replies, 421, and a
 * message over the SIZE the server announced. */
static void
test_client_failures(void **state)
{
    static const char *const no_tls[] = {"220 s\r\n", "250 s\r\n", NULL};
    static const char *const inject[] = {
        "220 s\r\n", "250-s\r\n250 STARTTLS\r\n",
        "220 go\r\n250-s\r\n250 AUTH PLAIN\r\n", NULL};
    static const char *const bad[] = {"220 s\r\n", "250-s\r\n25O x\r\n", NULL};
    static const char *const closing[] = {"220 s\r\n", "250 s\r\n",
                                          "421 4.3.2 shutting down\r\n", NULL};
    static const char *const greet554[] = {"554 5.7.1 go away\r\n", NULL};
    static const char *const sized[] = {"220 s\r\n",
                                        "250-s\r\n250 SIZE 10\r\n",
                                        "221 bye\r\n", NULL};
    llsmtp_client_cfg cfg = cli_cfg(LLSMTP_CLI_REQUIRE_TLS);
    llsmtp_span to = sp("r@s");
    llsmtp_client_msg m;
    (void)state;
    llsmtp_client_msg_init(&m);
    m.to = &to;
    m.nto = 1;
    m.size = 11;
    cli_expect(&cfg, no_tls, NULL, 0, "",
               "C: EHLO client.example.test\\r\\n\n"
               "E: FAIL 530L -1 5.7.10|TLS required but not available\n"
               "C: QUIT\\r\\n\n");
    cfg = cli_cfg(LLSMTP_CLI_STARTTLS);
    {
        /* a host feeds all it has read before the handshake; whatever came
         * with the 220 was written in cleartext by someone */
        th_buf log = {0};
        cli_drive(&cfg, inject, NULL, 0, "", 4096, &log);
        th_buf_add(&log, "", 0);
        assert_string_equal(log.p,
                            "C: EHLO client.example.test\\r\\n\n"
                            "C: STARTTLS\\r\\n\n"
                            "E: FAIL 0L -1 data after the STARTTLS reply\n");
        th_buf_free(&log);
    }
    cfg = cli_cfg(0);
    cfg.user = sp("u");
    cfg.password = sp("p");
    cli_expect(&cfg, no_tls, NULL, 0, "",
               "C: EHLO client.example.test\\r\\n\n"
               "E: FAIL 530L -1 5.7.0|will not send credentials in "
               "cleartext\n"
               "C: QUIT\\r\\n\n");
    cfg = cli_cfg(0);
    cli_expect(&cfg, bad, NULL, 0, "",
               "C: EHLO client.example.test\\r\\n\n"
               "E: FAIL 0L -1 malformed reply from the server\n");
    cli_expect(&cfg, closing, &m, 1, "",
               "C: EHLO client.example.test\\r\\n\n"
               "E: READY 0L -1 \n"
               "C: MAIL FROM:<>\\r\\n\n"
               "E: FAIL 421 -1 4.3.2 shutting down\n");
    cli_expect(&cfg, greet554, NULL, 0, "",
               "E: FAIL 554 -1 5.7.1 go away\n"
               "C: QUIT\\r\\n\n");
    cli_expect(&cfg, sized, &m, 1, "",
               "C: EHLO client.example.test\\r\\n\n"
               "E: READY 0L -1 \n"
               "E: MESSAGE 552L -1 5.3.4|message larger than the server's "
               "SIZE\n"
               "E: READY 0L -1 \n"
               "C: QUIT\\r\\n\n"
               "E: CLOSED 221 -1 bye\n");
}

/* Arguments that could inject commands are refused, and 8-bit bytes in a
 * body declared 7-bit stop the session rather than go out unannounced. */
static void
test_client_api_guards(void **state)
{
    static const char *const segs[] = {"220 s\r\n",
                                       "250-s\r\n250 8BITMIME\r\n", NULL};
    llsmtp_client_cfg cfg = cli_cfg(0);
    llsmtp_client *c;
    llsmtp_client_event ev;
    llsmtp_span to = sp("a@b\r\nRSET"), good = sp("a@b");
    llsmtp_client_msg m;
    size_t used, olen;
    (void)state;
    cfg.helo = sp("x\r\nQUIT");
    assert_null(cli_try(&cfg));
    cfg = cli_cfg(0);
    c = cli_new(&cfg);
    assert_int_equal(llsmtp_client_timeout(c), 300);
    llsmtp_client_msg_init(&m);
    m.to = &to;
    m.nto = 1;
    assert_int_equal(llsmtp_client_mail(c, &m), LLSMTP_E_STATE);
    assert_int_equal(llsmtp_client_feed(c, segs[0], strlen(segs[0]), &used,
                                        &ev),
                     LLSMTP_OK);
    /* a host writes the commands before it reads their replies */
    llsmtp_client_consume(c, llsmtp_client_output(c).n);
    assert_int_equal(llsmtp_client_feed(c, segs[1], strlen(segs[1]), &used,
                                        &ev),
                     LLSMTP_EVENT);
    assert_int_equal(ev.type, LLSMTP_CEV_READY);
    assert_int_equal(used, strlen(segs[1]));
    assert_int_equal(llsmtp_client_feed(c, NULL, 0, &used, &ev), LLSMTP_OK);
    assert_true(llsmtp_client_caps(c)->extensions & LLSMTP_EXT_8BITMIME);
    assert_int_equal(llsmtp_client_mail(c, &m), LLSMTP_E_SYNTAX);
    m.to = &good;
    m.from = sp("<x>");
    assert_int_equal(llsmtp_client_mail(c, &m), LLSMTP_E_SYNTAX);
    m.from = sp("");
    m.nto = 0;
    assert_int_equal(llsmtp_client_mail(c, &m), LLSMTP_E_RANGE);
    m.nto = 1;
    assert_int_equal(llsmtp_client_mail(c, &m), LLSMTP_OK);
    llsmtp_client_consume(c, llsmtp_client_output(c).n);
    assert_int_equal(llsmtp_client_feed(c, "250 a\r\n", 7, &used, &ev),
                     LLSMTP_OK);
    llsmtp_client_consume(c, llsmtp_client_output(c).n);
    assert_int_equal(llsmtp_client_feed(c, "250 b\r\n", 7, &used, &ev),
                     LLSMTP_EVENT);
    assert_int_equal(ev.type, LLSMTP_CEV_RCPT);
    assert_int_equal(llsmtp_client_timeout(c), 120);
    llsmtp_client_consume(c, llsmtp_client_output(c).n);
    assert_int_equal(llsmtp_client_feed(c, "354 go\r\n", 8, &used, &ev),
                     LLSMTP_EVENT);
    assert_int_equal(ev.type, LLSMTP_CEV_BODY);
    assert_int_equal(llsmtp_client_timeout(c), 180);
    assert_int_equal(llsmtp_client_body(c, "ok\n", 3, &olen), LLSMTP_OK);
    assert_int_equal(olen, 3);
    olen = llsmtp_client_output(c).n;
    assert_int_equal(llsmtp_client_body(c, "caf\xc3\xa9", 5, &used),
                     LLSMTP_E_SYNTAX);
    assert_int_equal(used, 0);
    /* nothing of that call was queued; the session is over */
    assert_int_equal(llsmtp_client_output(c).n, olen);
    assert_int_equal(llsmtp_client_wants(c),
                     LLSMTP_WANT_WRITE | LLSMTP_WANT_CLOSE);
    assert_int_equal(llsmtp_client_body_end(c), LLSMTP_E_STATE);
    assert_int_equal(llsmtp_client_timeout(c), 0);
}

/* RFC 5321 4.1.2: a quoted local part may hold "<", ">" and spaces; such
 * a mailbox is relayed as it is. What could break the command line (CR,
 * LF, NUL, an unquoted ">" or space) is still refused. */
static void
test_client_quoted_local_part(void **state)
{
    static const char *const bad[] = {
        "\"x\r\n\"@far.test", "a@b> SIZE=1",     "a b@far.test",
        "<a@far.test>",       "\"x> y@far.test", "a@far.test\r\nRSET",
        "\"x\\\r\"@far.test"};
    llsmtp_client_cfg cfg = cli_cfg(0);
    llsmtp_client *c;
    llsmtp_client_event ev;
    llsmtp_span to[2], nul = {"\"a\0b\"@far.test", 14};
    llsmtp_client_msg m;
    llsmtp_span o;
    size_t used, i;
    (void)state;
    c = cli_new(&cfg);
    assert_int_equal(llsmtp_client_feed(c, "220 s\r\n", 7, &used, &ev),
                     LLSMTP_OK);
    llsmtp_client_consume(c, llsmtp_client_output(c).n);
    assert_int_equal(llsmtp_client_feed(c, "250 s\r\n", 7, &used, &ev),
                     LLSMTP_EVENT);
    assert_int_equal(ev.type, LLSMTP_CEV_READY);
    llsmtp_client_msg_init(&m);
    m.to = to;
    m.nto = 1;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        to[0] = sp(bad[i]);
        m.from = sp("");
        if (llsmtp_client_mail(c, &m) != LLSMTP_E_SYNTAX)
            fail_msg("rcpt %s accepted", bad[i]);
        to[0] = sp("a@far.test");
        m.from = sp(bad[i]);
        if (llsmtp_client_mail(c, &m) != LLSMTP_E_SYNTAX)
            fail_msg("from %s accepted", bad[i]);
    }
    to[0] = nul;
    assert_int_equal(llsmtp_client_mail(c, &m), LLSMTP_E_SYNTAX);
    m.from = sp("\"q<t>e\\\"d\"@here.test");
    to[0] = sp("\"x> y\"@far.test");
    to[1] = sp("Postmaster");
    m.nto = 2;
    assert_int_equal(llsmtp_client_mail(c, &m), LLSMTP_OK);
    o = llsmtp_client_output(c);
    if (!(o.n > 0 &&
          strstr(o.p, "MAIL FROM:<\"q<t>e\\\"d\"@here.test>\r\n") != NULL))
        fail_msg("got %.*s", (int)o.n, o.p);
}


/* RFC 5321 4.3.2: only 354 may be followed by the body. A next hop that
 * answers DATA with 250 received no message: that is a protocol error
 * and a temporary failure for every open recipient, never a delivery
 * (smtp-send printed 250 and exited 0). The connection is closed: no
 * body, no ".", no QUIT. LMTP took the same path. 4xx/5xx to DATA stays
 * the server's refusal. */
static void
test_client_data_not_354(void **state)
{
    static const char *const smtp250[] = {
        "220 s\r\n",          "250 s\r\n",   "250 ok\r\n", "250 ok\r\n",
        "250 2.0.0 fine\r\n", "221 bye\r\n", NULL};
    static const char *const smtp3xx[] = {"220 s\r\n",    "250 s\r\n",
                                          "250 ok\r\n",   "250 ok\r\n",
                                          "334 what\r\n", NULL};
    static const char *const lmtp250[] = {
        "220 l\r\n", "250-l\r\n250 PIPELINING\r\n",
        "250 ok\r\n250 ok\r\n250 2.0.0 fine\r\n", NULL};
    static const char *const refused[] = {
        "220 s\r\n", "250-s\r\n250 PIPELINING\r\n",
        "250 ok\r\n250 ok\r\n451 4.3.0 later\r\n", "221 bye\r\n", NULL};
    static const char *const rcpt3xx[] = {"220 s\r\n", "250 s\r\n",
                                          "250 ok\r\n", "354 go\r\n", NULL};
    llsmtp_span to = sp("b@s");
    llsmtp_client_msg m;
    llsmtp_client_cfg cfg = cli_cfg(0);
    (void)state;
    llsmtp_client_msg_init(&m);
    m.from = sp("a@s");
    m.to = &to;
    m.nto = 1;
    cli_expect(&cfg, smtp250, &m, 1, "x\r\n",
               "C: EHLO client.example.test\\r\\n\n"
               "E: READY 0L -1 \n"
               "C: MAIL FROM:<a@s>\\r\\n\n"
               "C: RCPT TO:<b@s>\\r\\n\n"
               "E: RCPT 250 0 ok\n"
               "C: DATA\\r\\n\n"
               "E: FAIL 451L -1 4.5.0|DATA answered with 250, not 354: "
               "no message was sent\n");
    cli_expect(&cfg, smtp3xx, &m, 1, "x\r\n",
               "C: EHLO client.example.test\\r\\n\n"
               "E: READY 0L -1 \n"
               "C: MAIL FROM:<a@s>\\r\\n\n"
               "C: RCPT TO:<b@s>\\r\\n\n"
               "E: RCPT 250 0 ok\n"
               "C: DATA\\r\\n\n"
               "E: FAIL 451L -1 4.5.0|DATA answered with 334, not 354: "
               "no message was sent\n");
    cli_expect(&cfg, refused, &m, 1, "x\r\n",
               "C: EHLO client.example.test\\r\\n\n"
               "E: READY 0L -1 \n"
               "C: MAIL FROM:<a@s>\\r\\nRCPT TO:<b@s>\\r\\nDATA\\r\\n\n"
               "E: RCPT 250 0 ok\n"
               "E: MESSAGE 451 -1 4.3.0 later\n"
               "E: READY 0L -1 \n"
               "C: QUIT\\r\\n\n"
               "E: CLOSED 221 -1 bye\n");
    cli_expect(&cfg, rcpt3xx, &m, 1, "x\r\n",
               "C: EHLO client.example.test\\r\\n\n"
               "E: READY 0L -1 \n"
               "C: MAIL FROM:<a@s>\\r\\n\n"
               "C: RCPT TO:<b@s>\\r\\n\n"
               "E: FAIL 451L -1 4.5.0|RCPT answered with 354: no message "
               "was sent\n");
    cfg = cli_cfg(LLSMTP_CLI_LMTP);
    cli_expect(&cfg, lmtp250, &m, 1, "x\r\n",
               "C: LHLO client.example.test\\r\\n\n"
               "E: READY 0L -1 \n"
               "C: MAIL FROM:<a@s>\\r\\nRCPT TO:<b@s>\\r\\nDATA\\r\\n\n"
               "E: RCPT 250 0 ok\n"
               "E: FAIL 451L -1 4.5.0|DATA answered with 250, not 354: "
               "no message was sent\n");
}

/* Feeds s whole; returns the first event's type (0: none) into *ev. */
static int
feed_str(llsmtp_client *c, const char *s, llsmtp_client_event *ev)
{
    size_t used;
    int rc = llsmtp_client_feed(c, s, strlen(s), &used, ev);
    assert_true(rc == LLSMTP_EVENT || rc == LLSMTP_OK);
    return rc == LLSMTP_EVENT ? ev->type : 0;
}

/* A reply can only answer a command the server has received: one that
 * arrives before its command was written (or for a command never sent)
 * is not the server's answer to it, and must not be taken as one. */
static void
test_client_reply_before_command(void **state)
{
    llsmtp_client *c;
    llsmtp_client_event ev;
    llsmtp_client_cfg cfg = cli_cfg(0);
    llsmtp_span to[2];
    llsmtp_client_msg m;
    llsmtp_span o;
    (void)state;
    to[0] = sp("a@s");
    to[1] = sp("b@s");
    llsmtp_client_msg_init(&m);
    m.from = sp("f@s");
    m.to = to;
    m.nto = 2;
    /* the EHLO reply before EHLO was written */
    c = cli_new(&cfg);
    assert_int_equal(feed_str(c, "220 s\r\n250 s\r\n", &ev), LLSMTP_CEV_FAIL);
    assert_int_equal(ev.code, 451);
    /* pipelined: MAIL written, RCPTs and DATA not yet */
    c = cli_new(&cfg);
    assert_int_equal(feed_str(c, "220 s\r\n", &ev), 0);
    llsmtp_client_consume(c, llsmtp_client_output(c).n);
    assert_int_equal(feed_str(c, "250-s\r\n250 PIPELINING\r\n", &ev),
                     LLSMTP_CEV_READY);
    assert_int_equal(llsmtp_client_mail(c, &m), LLSMTP_OK);
    o = llsmtp_client_output(c);
    assert_true(o.n > 17);
    assert_memory_equal(o.p, "MAIL FROM:<f@s>\r\n", 17);
    llsmtp_client_consume(c, 17);
    assert_int_equal(feed_str(c, "250 ok\r\n", &ev), 0);
    assert_int_equal(feed_str(c, "250 ok\r\n", &ev), LLSMTP_CEV_FAIL);
    assert_int_equal(ev.code, 451);
    assert_int_equal(ev.local, 1);
    assert_int_equal(llsmtp_client_output(c).n, o.n - 17); /* no QUIT */
    /* without PIPELINING: the RCPT reply came with MAIL's, before the
     * RCPT could have been written */
    c = cli_new(&cfg);
    assert_int_equal(feed_str(c, "220 s\r\n", &ev), 0);
    llsmtp_client_consume(c, llsmtp_client_output(c).n);
    assert_int_equal(feed_str(c, "250 s\r\n", &ev), LLSMTP_CEV_READY);
    assert_int_equal(llsmtp_client_mail(c, &m), LLSMTP_OK);
    llsmtp_client_consume(c, llsmtp_client_output(c).n);
    assert_int_equal(feed_str(c, "250 ok\r\n250 ok\r\n", &ev),
                     LLSMTP_CEV_FAIL);
    assert_int_equal(ev.code, 451);
    /* the reply to "." before "." was written */
    c = cli_new(&cfg);
    assert_int_equal(feed_str(c, "220 s\r\n", &ev), 0);
    llsmtp_client_consume(c, llsmtp_client_output(c).n);
    assert_int_equal(feed_str(c, "250-s\r\n250 PIPELINING\r\n", &ev),
                     LLSMTP_CEV_READY);
    assert_int_equal(llsmtp_client_mail(c, &m), LLSMTP_OK);
    llsmtp_client_consume(c, llsmtp_client_output(c).n);
    assert_int_equal(feed_str(c, "250 ok\r\n", &ev), 0);
    assert_int_equal(feed_str(c, "250 ok\r\n", &ev), LLSMTP_CEV_RCPT);
    assert_int_equal(feed_str(c, "250 ok\r\n", &ev), LLSMTP_CEV_RCPT);
    assert_int_equal(feed_str(c, "354 go\r\n", &ev), LLSMTP_CEV_BODY);
    /* a reply in the middle of the body */
    assert_int_equal(feed_str(c, "250 ok\r\n", &ev), LLSMTP_CEV_FAIL);
    assert_int_equal(ev.code, 451);
    c = cli_new(&cfg);
    assert_int_equal(feed_str(c, "220 s\r\n", &ev), 0);
    llsmtp_client_consume(c, llsmtp_client_output(c).n);
    assert_int_equal(feed_str(c, "250-s\r\n250 PIPELINING\r\n", &ev),
                     LLSMTP_CEV_READY);
    assert_int_equal(llsmtp_client_mail(c, &m), LLSMTP_OK);
    llsmtp_client_consume(c, llsmtp_client_output(c).n);
    assert_int_equal(feed_str(c, "250 ok\r\n", &ev), 0);
    assert_int_equal(feed_str(c, "250 ok\r\n", &ev), LLSMTP_CEV_RCPT);
    assert_int_equal(feed_str(c, "250 ok\r\n", &ev), LLSMTP_CEV_RCPT);
    assert_int_equal(feed_str(c, "354 go\r\n", &ev), LLSMTP_CEV_BODY);
    assert_int_equal(llsmtp_client_body_end(c), LLSMTP_OK);
    assert_int_equal(feed_str(c, "250 queued\r\n", &ev), LLSMTP_CEV_FAIL);
    assert_int_equal(ev.code, 451);
}

/* A SIZE too large for 64 bits must not wrap to a tiny limit that would
 * make every message a local permanent 552. */
static void
test_client_size_overflow(void **state)
{
    static const char *const segs[] = {
        "220 s\r\n",   "250-s\r\n250 SIZE 18446744073709551617\r\n",
        "250 ok\r\n",  "250 ok\r\n",
        "354 go\r\n",  "250 done\r\n",
        "221 bye\r\n", NULL};
    llsmtp_span to = sp("b@s");
    llsmtp_client_msg m;
    llsmtp_client_cfg cfg = cli_cfg(0);
    (void)state;
    llsmtp_client_msg_init(&m);
    m.from = sp("a@s");
    m.to = &to;
    m.nto = 1;
    m.size = 100;
    cli_expect(&cfg, segs, &m, 1, "x\r\n",
               "C: EHLO client.example.test\\r\\n\n"
               "E: READY 0L -1 \n"
               "C: MAIL FROM:<a@s> SIZE=100\\r\\n\n"
               "C: RCPT TO:<b@s>\\r\\n\n"
               "E: RCPT 250 0 ok\n"
               "C: DATA\\r\\n\n"
               "E: BODY 354 -1 go\n"
               "C: x\\r\\n.\\r\\n\n"
               "E: MESSAGE 250 -1 done\n"
               "E: READY 0L -1 \n"
               "C: QUIT\\r\\n\n"
               "E: CLOSED 221 -1 bye\n");
}

/* Without PIPELINING the only recipient refused: no DATA is sent, the
 * message fails here, and the next command is QUIT (Postfix's smtp-sink
 * -r rcpt found the case where three events follow one reply). */
static void
test_client_single_rcpt_refused(void **state)
{
    static const char *const segs[] = {"220 s\r\n",
                                       "250-s\r\n250 8BITMIME\r\n",
                                       "250 ok\r\n",
                                       "450 4.3.0 later\r\n",
                                       "221 bye\r\n",
                                       NULL};
    llsmtp_span to = sp("b@s");
    llsmtp_client_msg m;
    llsmtp_client_cfg cfg = cli_cfg(0);
    (void)state;
    llsmtp_client_msg_init(&m);
    m.from = sp("a@s");
    m.to = &to;
    m.nto = 1;
    cli_expect(&cfg, segs, &m, 1, "",
               "C: EHLO client.example.test\\r\\n\n"
               "E: READY 0L -1 \n"
               "C: MAIL FROM:<a@s>\\r\\n\n"
               "C: RCPT TO:<b@s>\\r\\n\n"
               "E: RCPT 450 0 4.3.0 later\n"
               "E: MESSAGE 554L -1 5.5.0|no recipient was accepted\n"
               "E: READY 0L -1 \n"
               "C: QUIT\\r\\n\n"
               "E: CLOSED 221 -1 bye\n");
}


/* The client against the llsmtp server itself, through memory: 300
 * pipelined recipients overflow the client's output queue (refilled as it
 * drains) and the server's recipient limit; then a refused MAIL with the
 * RCPTs already in flight; every reply lands where it belongs. */
/* Connects a client session to an llsmtp server in memory and runs both
 * until the client session is over, driven by llsmtp_client_wants()
 * alone: events, writes (as much as the server takes), reads (the
 * server's output, as much as the client takes), the body (body[0..n)
 * streamed through the client's output on RESUME after BODY); every
 * client event also goes to on_event, which acts on READY. Each bit is
 * checked against what the next call does, and a round that moves
 * nothing fails. Returns 1 when the client saw CLOSED. */
typedef void (*cs_event_fn)(llsmtp_client *c, llsmtp_server *s,
                            const llsmtp_client_event *ev, void *ctx);

static int
cs_run(llsmtp_client *c, llsmtp_server *s, int max_rounds,
       cs_event_fn on_event, void *ctx, const char *body, size_t body_n)
{
    int closed = 0, rounds, in_body = 0;
    size_t body_off = 0;
    for (rounds = 0; rounds < max_rounds; rounds++) {
        unsigned w = llsmtp_client_wants(c);
        size_t n, used;
        const char *o;
        int moved = 0;
        if (w & LLSMTP_WANT_EVENT) {
            llsmtp_client_event ev;
            assert_int_equal(w & ~(unsigned)LLSMTP_WANT_WRITE,
                             LLSMTP_WANT_EVENT);
            assert_int_equal(llsmtp_client_next_event(c, &ev), LLSMTP_EVENT);
            if (ev.type == LLSMTP_CEV_CLOSED)
                closed = 1;
            if (ev.type == LLSMTP_CEV_BODY) {
                in_body = 1;
                body_off = 0;
            }
            on_event(c, s, &ev, ctx);
            continue;
        }
        assert_int_equal(llsmtp_client_next_event(c, NULL), LLSMTP_E_INVAL);
        if (w & LLSMTP_WANT_WRITE) { /* client -> server */
            llsmtp_span co = llsmtp_client_output(c);
            int rc = llsmtp_server_feed(s, co.p, co.n, &used);
            assert_true(co.n > 0);
            assert_true(rc == LLSMTP_OK || rc == LLSMTP_BLOCKED ||
                        rc == LLSMTP_CLOSE);
            llsmtp_client_consume(c, used);
            moved |= used > 0;
        } else {
            assert_int_equal(llsmtp_client_output(c).n, 0);
        }
        o = th_output(s, &n);
        if ((w & LLSMTP_WANT_READ) && n > 0) { /* server -> client */
            llsmtp_client_event ev;
            int rc = llsmtp_client_feed(c, o, n, &used, &ev);
            assert_true(rc == LLSMTP_OK || rc == LLSMTP_EVENT);
            assert_true(rc == LLSMTP_EVENT || used == n);
            (void)llsmtp_server_consume(s, used);
            if (rc == LLSMTP_EVENT) {
                if (ev.type == LLSMTP_CEV_CLOSED)
                    closed = 1;
                if (ev.type == LLSMTP_CEV_BODY) {
                    in_body = 1;
                    body_off = 0;
                }
                on_event(c, s, &ev, ctx);
            }
            continue;
        }
        if ((w & LLSMTP_WANT_RESUME) && in_body) {
            int rc = llsmtp_client_body(c, body + body_off, body_n - body_off,
                                        &used);
            assert_true(rc == LLSMTP_OK || rc == LLSMTP_BLOCKED);
            body_off += used;
            moved |= used > 0;
            if (rc == LLSMTP_OK && llsmtp_client_body_end(c) == LLSMTP_OK) {
                in_body = 0;
                moved = 1;
            }
        }
        if (w & LLSMTP_WANT_CLOSE)
            return closed;
        if (!moved)
            fail_msg("round %d: wants %#x and nothing moves", rounds, w);
    }
    return 0;
}

typedef struct against_ctx {
    const llsmtp_client_msg *m;
    size_t ok, refused, next, results;
} against_ctx;

static void
against_event(llsmtp_client *c, llsmtp_server *s,
              const llsmtp_client_event *ev, void *vctx)
{
    against_ctx *x = (against_ctx *)vctx;
    (void)s;
    if (ev->type == LLSMTP_CEV_FAIL)
        fail_msg("FAIL %d %.*s", ev->code, (int)ev->text.n, ev->text.p);
    if (ev->type == LLSMTP_CEV_READY) {
        if (x->next < 2)
            assert_int_equal(llsmtp_client_mail(c, &x->m[x->next++]),
                             LLSMTP_OK);
        else
            assert_int_equal(llsmtp_client_quit(c), LLSMTP_OK);
    } else if (ev->type == LLSMTP_CEV_RCPT) {
        if (ev->code == 250)
            x->ok++;
        else
            x->refused++;
    } else if (ev->type == LLSMTP_CEV_MESSAGE) {
        x->results++;
        assert_int_equal(ev->code, x->results == 1 ? 250 : 550);
    }
}

static void
test_client_against_server(void **state)
{
    static char names[300][32];
    llsmtp_span to[300];
    llsmtp_client_msg m[2];
    llsmtp_client_cfg ccfg = cli_cfg(0);
    llsmtp_client *c;
    llsmtp_config cfg;
    llsmtp_server *s;
    th_host h;
    against_ctx x;
    size_t i;
    (void)state;
    for (i = 0; i < 300; i++) {
        snprintf(names[i], sizeof names[i], "r%zu@example.test", i);
        to[i] = sp(names[i]);
    }
    llsmtp_client_msg_init(&m[0]);
    llsmtp_client_msg_init(&m[1]);
    m[0].from = sp("s@example.org");
    m[0].to = to;
    m[0].nto = 300;
    m[1] = m[0];
    m[1].from = sp("refused@example.org");
    llsmtp_config_init(&cfg);
    cfg.callbacks = &th_callbacks;
    cfg.max_rcpt = 100;    /* the other 200 get 452 */
    cfg.max_errors = 1000; /* RCPTs after a refused MAIL are errors */
    cfg.max_rcpt_rejects = 0;
    memset(&h, 0, sizeof h);
    strcpy(h.rules[0].kind, "mail");
    strcpy(h.rules[0].match, "refused@example.org");
    h.rules[0].code = 550;
    strcpy(h.rules[0].enh, "5.7.1");
    strcpy(h.rules[0].text, "not you");
    h.nrules = 1;
    s = th_session(&cfg, &h);
    llsmtp_server_start(s);
    c = cli_new(&ccfg);
    memset(&x, 0, sizeof x);
    x.m = m;
    assert_true(cs_run(c, s, 10000, against_event, &x, ".x\n", 3));
    assert_int_equal(x.results, 2);
    /* RCPT events only when MAIL ok */
    assert_int_equal(x.ok + x.refused, 300);
    assert_int_equal(x.ok, 100);
    assert_non_null(strstr(h.events.p, "data_end"));
    free(s);
    th_host_free(&h);
}

typedef struct tiny_ctx {
    const llsmtp_client_msg *m;
    const char *want;
    size_t want_n, results;
    int sent;
    const th_host *h;
} tiny_ctx;

static void
tiny_event(llsmtp_client *c, llsmtp_server *s, const llsmtp_client_event *ev,
           void *vctx)
{
    tiny_ctx *x = (tiny_ctx *)vctx;
    (void)s;
    if (ev->type == LLSMTP_CEV_READY) {
        if (x->sent++ < 2)
            assert_int_equal(llsmtp_client_mail(c, x->m), LLSMTP_OK);
        else
            assert_int_equal(llsmtp_client_quit(c), LLSMTP_OK);
    } else if (ev->type == LLSMTP_CEV_MESSAGE) {
        x->results++;
        assert_int_equal(ev->code, 250);
        /* the server offers ENHANCEDSTATUSCODES: parsed */
        assert_string_equal(ev->enhanced, "2.6.0");
        assert_int_equal(x->h->msg.n, x->want_n);
        assert_memory_equal(x->h->msg.p, x->want, x->want_n);
    } else if (ev->type != LLSMTP_CEV_CLOSED) {
        assert_int_not_equal(ev->type, LLSMTP_CEV_FAIL);
    }
}

/* The body goes through the client's own output, so it can never pass
 * the commands: with the smallest output queue a 200 KB body (8-bit,
 * dots at line starts, bare LF and CR) is streamed in pieces as the queue
 * drains (BLOCKED, resumed on RESUME), twice on one connection, and the
 * llsmtp server receives exactly its CRLF-normalised bytes. */
static void
test_client_body_through_tiny_output(void **state)
{
    static const char alphabet[] = "ab.\r\n\xc3\xa9";
    char *body;
    size_t n = 200000, k;
    uint64_t seed = 7;
    llsmtp_span to[1];
    llsmtp_client_msg m;
    llsmtp_client_cfg ccfg = cli_cfg(0);
    llsmtp_client *c;
    llsmtp_config cfg;
    llsmtp_server *s;
    th_host h;
    th_buf want = {0};
    tiny_ctx x;
    (void)state;
    body = (char *)malloc(n);
    assert_non_null(body);
    for (k = 0; k < n; k++)
        body[k] = alphabet[th_rand(&seed) % (sizeof alphabet - 1)];
    normalise(body, n, &want);
    ccfg.output_size = 1024;
    to[0] = sp("r@example.test");
    llsmtp_client_msg_init(&m);
    m.from = sp("s@example.org");
    m.to = to;
    m.nto = 1;
    m.size = want.n;
    m.flags = LLSMTP_MSG_8BIT;
    llsmtp_config_init(&cfg);
    cfg.callbacks = &th_callbacks;
    cfg.bare_lf = LLSMTP_BARE_LF_REJECT; /* any bare LF would show */
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    llsmtp_server_start(s);
    c = cli_new(&ccfg);
    memset(&x, 0, sizeof x);
    x.m = &m;
    x.want = want.p;
    x.want_n = want.n;
    x.h = &h;
    assert_true(cs_run(c, s, 100000, tiny_event, &x, body, n));
    assert_int_equal(x.results, 2);
    free(s);
    free(body);
    th_buf_free(&want);
    th_host_free(&h);
}

/* ---- the 1.0 shape: wants(), enhanced codes, body through the output,
 * versioned structs, init refusals ------------------------------------- */

/* Feeds s whole and expects rc; returns what was taken. */
static size_t
feed_rc(llsmtp_client *c, const char *s, int rc, llsmtp_client_event *ev)
{
    size_t used;
    assert_int_equal(llsmtp_client_feed(c, s, strlen(s), &used, ev), rc);
    return used;
}

#define W_(x) LLSMTP_WANT_##x

/* A whole LMTP session with STARTTLS and AUTH, and what wants() says at
 * every step: a host that only asks and does what is asked needs no
 * flags, no zero-byte feed, and never blocks on a read that no reply
 * will answer. */
static void
test_client_wants_session(void **state)
{
    llsmtp_client_cfg cfg = cli_cfg(LLSMTP_CLI_STARTTLS | LLSMTP_CLI_LMTP);
    llsmtp_client *c;
    llsmtp_client_event ev;
    llsmtp_client_msg m;
    llsmtp_span to[3];
    size_t used;
    (void)state;
    cfg.user = sp("u");
    cfg.password = sp("p");
    to[0] = sp("a@l");
    to[1] = sp("b@l");
    to[2] = sp("c@l");
    llsmtp_client_msg_init(&m);
    m.from = sp("s@l");
    m.to = to;
    m.nto = 3;
    assert_int_equal(llsmtp_client_wants(NULL), 0);
    c = cli_new(&cfg);
    assert_int_equal(llsmtp_client_wants(c), W_(READ)); /* the greeting */
    assert_int_equal(llsmtp_client_next_event(c, &ev), LLSMTP_OK);
    feed_rc(c, "220 l\r\n", LLSMTP_OK, &ev);
    assert_int_equal(llsmtp_client_wants(c), W_(WRITE) | W_(READ)); /* LHLO */
    llsmtp_client_consume(c, 3);
    assert_int_equal(llsmtp_client_wants(c), W_(WRITE) | W_(READ));
    llsmtp_client_consume(c, (size_t)-1);
    assert_int_equal(llsmtp_client_wants(c), W_(READ));
    feed_rc(c, "250-l\r\n250-STARTTLS\r\n250 PIPELINING\r\n", LLSMTP_OK, &ev);
    assert_int_equal(llsmtp_client_wants(c), W_(WRITE) | W_(READ));
    llsmtp_client_consume(c, (size_t)-1);
    /* the 220 to STARTTLS: an event, then the handshake; no read */
    feed_rc(c, "220 2.0.0 go\r\n", LLSMTP_EVENT, &ev);
    assert_int_equal(ev.type, LLSMTP_CEV_TLS);
    assert_int_equal(llsmtp_client_wants(c), W_(TLS));
    assert_int_equal(llsmtp_client_tls_started(c), LLSMTP_OK);
    assert_int_equal(llsmtp_client_wants(c), W_(WRITE) | W_(READ));
    llsmtp_client_consume(c, (size_t)-1);
    feed_rc(c,
            "250-l\r\n250-AUTH PLAIN\r\n250-ENHANCEDSTATUSCODES\r\n"
            "250 PIPELINING\r\n",
            LLSMTP_OK, &ev);
    assert_int_equal(llsmtp_client_wants(c), W_(WRITE) | W_(READ)); /* AUTH */
    llsmtp_client_consume(c, (size_t)-1);
    feed_rc(c, "235 2.7.0 ok\r\n", LLSMTP_EVENT, &ev);
    assert_int_equal(ev.type, LLSMTP_CEV_READY);
    assert_int_equal(llsmtp_client_wants(c), W_(RESUME)); /* mail or quit */
    assert_int_equal(llsmtp_client_mail(c, &m), LLSMTP_OK);
    assert_int_equal(llsmtp_client_wants(c), W_(WRITE) | W_(READ));
    llsmtp_client_consume(c, (size_t)-1);
    /* one read, five replies: feed stops at each event, and the bytes
     * it left are what READ asks for next */
    {
        static const char rd[] = "250 2.1.0 ok\r\n250 2.1.5 ok\r\n"
                                 "550 5.1.1 no\r\n250 2.1.5 ok\r\n354 go\r\n";
        size_t off = 0;
        long k;
        for (k = 0; k < 3; k++) {
            assert_int_equal(llsmtp_client_feed(c, rd + off,
                                                sizeof rd - 1 - off, &used,
                                                &ev),
                             LLSMTP_EVENT);
            off += used;
            assert_int_equal(ev.type, LLSMTP_CEV_RCPT);
            assert_int_equal(ev.rcpt, k);
            assert_int_equal(llsmtp_client_wants(c), W_(READ));
            if (k == 1) {
                assert_int_equal(ev.code, 550);
                assert_string_equal(ev.enhanced, "5.1.1");
                assert_true(ev.text.n == 2 && memcmp(ev.text.p, "no", 2) == 0);
            }
        }
        assert_int_equal(llsmtp_client_feed(c, rd + off, sizeof rd - 1 - off,
                                            &used, &ev),
                         LLSMTP_EVENT);
        assert_int_equal(off + used, sizeof rd - 1);
        assert_int_equal(ev.type, LLSMTP_CEV_BODY);
    }
    assert_int_equal(llsmtp_client_next_event(c, &ev), LLSMTP_OK);
    assert_int_equal(llsmtp_client_wants(c), W_(RESUME)); /* the body */
    assert_int_equal(llsmtp_client_body(c, "hi\n", 3, &used), LLSMTP_OK);
    assert_int_equal(llsmtp_client_wants(c), W_(WRITE) | W_(RESUME));
    assert_int_equal(llsmtp_client_body_end(c), LLSMTP_OK);
    assert_int_equal(llsmtp_client_wants(c), W_(WRITE) | W_(READ));
    assert_int_equal(llsmtp_client_output(c).n, 7);
    assert_memory_equal(llsmtp_client_output(c).p, "hi\r\n.\r\n", 7);
    llsmtp_client_consume(c, (size_t)-1);
    /* LMTP: one reply per accepted recipient */
    feed_rc(c, "250 2.0.0 a done\r\n", LLSMTP_EVENT, &ev);
    assert_int_equal(ev.type, LLSMTP_CEV_MESSAGE);
    assert_int_equal(llsmtp_client_wants(c), W_(READ));
    feed_rc(c, "452 4.2.2 c over quota\r\n", LLSMTP_EVENT, &ev);
    assert_int_equal(ev.type, LLSMTP_CEV_MESSAGE);
    assert_int_equal(ev.rcpt, 2);
    /* one reply, two events: the second is queued, and said so */
    assert_int_equal(llsmtp_client_wants(c), W_(EVENT)); /* READY */
    assert_int_equal(llsmtp_client_quit(c), LLSMTP_E_STATE);
    /* feed hands over a queued event first and takes no bytes */
    assert_int_equal(llsmtp_client_feed(c, "250 x\r\n", 7, &used, &ev),
                     LLSMTP_EVENT);
    assert_int_equal(used, 0);
    assert_int_equal(ev.type, LLSMTP_CEV_READY);
    assert_int_equal(llsmtp_client_next_event(c, &ev), LLSMTP_OK);
    assert_int_equal(llsmtp_client_wants(c), W_(RESUME));
    assert_int_equal(llsmtp_client_quit(c), LLSMTP_OK);
    assert_int_equal(llsmtp_client_wants(c), W_(WRITE) | W_(READ));
    llsmtp_client_consume(c, (size_t)-1);
    feed_rc(c, "221 2.0.0 bye\r\n", LLSMTP_EVENT, &ev);
    assert_int_equal(ev.type, LLSMTP_CEV_CLOSED);
    assert_int_equal(llsmtp_client_wants(c), W_(CLOSE));
    /* a failure: its event first, then QUIT written, then close */
    cfg = cli_cfg(0);
    c = cli_new(&cfg);
    feed_rc(c, "554 5.7.1 go away\r\n", LLSMTP_EVENT, &ev);
    assert_int_equal(ev.type, LLSMTP_CEV_FAIL);
    assert_int_equal(llsmtp_client_wants(c), W_(WRITE) | W_(CLOSE));
    /* 421: no QUIT; the event is taken with next_event */
    c = cli_new(&cfg);
    feed_rc(c, "220 s\r\n", LLSMTP_OK, &ev);
    llsmtp_client_consume(c, (size_t)-1);
    assert_int_equal(llsmtp_client_feed(c, "421 4.3.2 bye\r\n250 x\r\n", 22,
                                        &used, &ev),
                     LLSMTP_EVENT);
    assert_int_equal(used, 22); /* nothing more is read */
    assert_int_equal(llsmtp_client_wants(c), W_(CLOSE));
    /* a message refused here: MESSAGE and READY queued by mail() */
    c = cli_new(&cfg);
    feed_rc(c, "220 s\r\n", LLSMTP_OK, &ev);
    llsmtp_client_consume(c, (size_t)-1);
    feed_rc(c, "250-s\r\n250 SIZE 10\r\n", LLSMTP_EVENT, &ev);
    m.size = 11;
    assert_int_equal(llsmtp_client_mail(c, &m), LLSMTP_OK);
    assert_int_equal(llsmtp_client_wants(c), W_(EVENT));
    assert_int_equal(llsmtp_client_next_event(c, &ev), LLSMTP_EVENT);
    assert_int_equal(ev.type, LLSMTP_CEV_MESSAGE);
    assert_int_equal(ev.code, 552);
    assert_string_equal(ev.enhanced, "5.3.4");
    assert_int_equal(llsmtp_client_next_event(c, &ev), LLSMTP_EVENT);
    assert_int_equal(ev.type, LLSMTP_CEV_READY);
    assert_int_equal(llsmtp_client_wants(c), W_(RESUME));
}

/* RFC 2034 / 3463: the enhanced code is parsed when the server offers
 * ENHANCEDSTATUSCODES and only when its class is the reply's; the text
 * is what follows it and its space. Without the extension nothing is
 * taken from the text. */
/* The replies to MAIL, nine RCPTs and DATA, the same with and without
 * ENHANCEDSTATUSCODES offered. */
#define EC_REPLIES                                                            \
    "250 2.1.0 sender ok\r\n"                                                 \
    "250 2.1.5 ok\r\n"                                                        \
    "550 4.1.1 class mismatch\r\n"                                            \
    "250 no code\r\n"                                                         \
    "250 2.1.5\r\n"                                                           \
    "550 5.1.10 three digits\r\n"                                             \
    "550 5.1.1000 four digits\r\n"                                            \
    "250 2.1.5x glued\r\n"                                                    \
    "451 4.3.0  two spaces\r\n"                                               \
    "550 5..1 empty subject\r\n"                                              \
    "554 5.5.1 no valid recipients\r\n"

static void
test_client_enhanced_codes(void **state)
{
    static const char *const with[] = {
        "220 s\r\n", "250-s\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n",
        EC_REPLIES, "221 2.0.0 bye\r\n", NULL};
    static const char *const without[] = {"220 s\r\n",
                                          "250-s\r\n250 PIPELINING\r\n",
                                          EC_REPLIES, "221 2.0.0 bye\r\n",
                                          NULL};
    static const char *const names[9] = {"a@s", "b@s", "c@s", "d@s", "e@s",
                                         "f@s", "g@s", "h@s", "i@s"};
    llsmtp_span to[9];
    llsmtp_client_msg m;
    llsmtp_client_cfg cfg = cli_cfg(0);
    size_t i;
    (void)state;
    for (i = 0; i < 9; i++)
        to[i] = sp(names[i]);
    llsmtp_client_msg_init(&m);
    m.from = sp("f@s");
    m.to = to;
    m.nto = 9;
    cli_expect(&cfg, with, &m, 1, "",
               "C: EHLO client.example.test\\r\\n\n"
               "E: READY 0L -1 \n"
               "C: MAIL FROM:<f@s>\\r\\nRCPT TO:<a@s>\\r\\nRCPT TO:<b@s>"
               "\\r\\nRCPT TO:<c@s>\\r\\nRCPT TO:<d@s>\\r\\nRCPT TO:<e@s>"
               "\\r\\nRCPT TO:<f@s>\\r\\nRCPT TO:<g@s>\\r\\nRCPT TO:<h@s>"
               "\\r\\nRCPT TO:<i@s>\\r\\nDATA\\r\\n\n"
               "E: RCPT 250 0 2.1.5|ok\n"
               "E: RCPT 550 1 4.1.1 class mismatch\n"
               "E: RCPT 250 2 no code\n"
               "E: RCPT 250 3 2.1.5|\n"
               "E: RCPT 550 4 5.1.10|three digits\n"
               "E: RCPT 550 5 5.1.1000 four digits\n"
               "E: RCPT 250 6 2.1.5x glued\n"
               "E: RCPT 451 7 4.3.0| two spaces\n"
               "E: RCPT 550 8 5..1 empty subject\n"
               "E: MESSAGE 554 -1 5.5.1|no valid recipients\n"
               "E: READY 0L -1 \n"
               "C: QUIT\\r\\n\n"
               "E: CLOSED 221 -1 2.0.0|bye\n");
    cli_expect(&cfg, without, &m, 1, "",
               "C: EHLO client.example.test\\r\\n\n"
               "E: READY 0L -1 \n"
               "C: MAIL FROM:<f@s>\\r\\nRCPT TO:<a@s>\\r\\nRCPT TO:<b@s>"
               "\\r\\nRCPT TO:<c@s>\\r\\nRCPT TO:<d@s>\\r\\nRCPT TO:<e@s>"
               "\\r\\nRCPT TO:<f@s>\\r\\nRCPT TO:<g@s>\\r\\nRCPT TO:<h@s>"
               "\\r\\nRCPT TO:<i@s>\\r\\nDATA\\r\\n\n"
               "E: RCPT 250 0 2.1.5 ok\n"
               "E: RCPT 550 1 4.1.1 class mismatch\n"
               "E: RCPT 250 2 no code\n"
               "E: RCPT 250 3 2.1.5\n"
               "E: RCPT 550 4 5.1.10 three digits\n"
               "E: RCPT 550 5 5.1.1000 four digits\n"
               "E: RCPT 250 6 2.1.5x glued\n"
               "E: RCPT 451 7 4.3.0  two spaces\n"
               "E: RCPT 550 8 5..1 empty subject\n"
               "E: MESSAGE 554 -1 5.5.1 no valid recipients\n"
               "E: READY 0L -1 \n"
               "C: QUIT\\r\\n\n"
               "E: CLOSED 221 -1 2.0.0 bye\n");
}

/* Body bytes through a small output queue, in random pieces, the queue
 * drained by random amounts: BLOCKED until written, then resumed with the
 * rest; what leaves the session after DATA is byte for byte what
 * llsmtp_dot_encode and llsmtp_dot_finish make of the whole body. */
static void
test_client_body_random_splits(void **state)
{
    static const char alphabet[] = "ab..\r\r\n\n\xc3";
    uint64_t seed = 2026;
    unsigned it;
    llsmtp_client_cfg cfg = cli_cfg(0);
    llsmtp_span to = sp("r@s");
    llsmtp_client_msg m;
    char *body, *want;
    size_t cap = 6000;
    (void)state;
    cfg.output_size = 1024;
    llsmtp_client_msg_init(&m);
    m.to = &to;
    m.nto = 1;
    m.flags = LLSMTP_MSG_8BIT;
    body = (char *)malloc(cap);
    want = (char *)malloc(llsmtp_dot_encoded_max(cap) + 5);
    assert_non_null(body);
    assert_non_null(want);
    for (it = 0; it < (getenv("LLSMTP_QUICK") ? 100u : 1000u); it++) {
        size_t n = (size_t)(th_rand(&seed) % cap), k, wn, off = 0, used;
        llsmtp_dot_encoder e;
        llsmtp_client *c = cli_new(&cfg);
        llsmtp_client_event ev;
        th_buf got = {0};
        int rc, blocked = 0;
        for (k = 0; k < n; k++)
            body[k] = alphabet[th_rand(&seed) % (sizeof alphabet - 1)];
        llsmtp_dot_init(&e);
        wn = llsmtp_dot_encode(&e, body, n, want,
                               llsmtp_dot_encoded_max(n) + 5);
        wn += llsmtp_dot_finish(&e, want + wn, 5);
        feed_rc(c, "220 s\r\n", LLSMTP_OK, &ev);
        llsmtp_client_consume(c, (size_t)-1);
        feed_rc(c, "250-s\r\n250-8BITMIME\r\n250 PIPELINING\r\n", LLSMTP_EVENT,
                &ev);
        assert_int_equal(llsmtp_client_mail(c, &m), LLSMTP_OK);
        llsmtp_client_consume(c, (size_t)-1);
        feed_rc(c, "250 ok\r\n", LLSMTP_OK, &ev);
        feed_rc(c, "250 ok\r\n", LLSMTP_EVENT, &ev);
        feed_rc(c, "354 go\r\n", LLSMTP_EVENT, &ev);
        assert_int_equal(ev.type, LLSMTP_CEV_BODY);
        while (off < n) {
            size_t piece = 1 + (size_t)(th_rand(&seed) % 3000);
            llsmtp_span o;
            if (piece > n - off)
                piece = n - off;
            rc = llsmtp_client_body(c, body + off, piece, &used);
            assert_true(used <= piece);
            off += used;
            if (rc == LLSMTP_BLOCKED) {
                blocked++;
                assert_true(used < piece);
                assert_int_equal(llsmtp_client_wants(c),
                                 W_(WRITE) | W_(RESUME));
            } else {
                assert_int_equal(rc, LLSMTP_OK);
                assert_int_equal(used, piece);
            }
            /* the host writes a random part of what waits */
            o = llsmtp_client_output(c);
            k = o.n ? (size_t)(th_rand(&seed) % (o.n + 1)) : 0;
            if (rc == LLSMTP_BLOCKED && k == 0 && o.n)
                k = 1;
            th_buf_add(&got, o.p, k);
            llsmtp_client_consume(c, k);
        }
        while ((rc = llsmtp_client_body_end(c)) == LLSMTP_BLOCKED) {
            llsmtp_span o = llsmtp_client_output(c);
            th_buf_add(&got, o.p, o.n);
            llsmtp_client_consume(c, o.n);
        }
        assert_int_equal(rc, LLSMTP_OK);
        {
            llsmtp_span o = llsmtp_client_output(c);
            th_buf_add(&got, o.p, o.n);
            llsmtp_client_consume(c, o.n);
        }
        if (got.n != wn || memcmp(got.p, want, wn) != 0)
            fail_msg("iteration %u: %zu octets, want %zu", it, got.n, wn);
        if (n > 3000 && it > 100)
            assert_true(blocked > 0 || n < 400);
        assert_int_equal(llsmtp_client_wants(c), W_(READ));
        th_buf_free(&got);
    }
    free(body);
    free(want);
}

/* Versioned structs, zlib's way: a struct from a larger (newer) header,
 * another major version, or none at all (never initialised, or garbage)
 * is refused with LLSMTP_E_VERSION everywhere, never read. */
static void
test_client_versioned_structs(void **state)
{
    llsmtp_client_cfg cfg, bad;
    llsmtp_client_msg m, mbad;
    llsmtp_client *c;
    llsmtp_client_event ev;
    llsmtp_span to = sp("r@s");
    const char *why = "x";
    unsigned long other_major = ((unsigned long)LLSMTP_VERSION_MAJOR + 1)
                                << 16;
    (void)state;
    assert_int_equal(llsmtp_client_cfg_init(&cfg), LLSMTP_OK);
    assert_int_equal(llsmtp_client_cfg_check(&cfg, &why), LLSMTP_OK);
    assert_null(why);
    /* a newer header's larger struct */
    assert_int_equal(llsmtp_client_cfg_init_(&bad, LLSMTP_VERSION_NUM,
                                             sizeof bad + 8),
                     LLSMTP_E_VERSION);
    assert_int_equal(llsmtp_client_cfg_check(&bad, &why), LLSMTP_E_VERSION);
    assert_non_null(strstr(why, "abi"));
    assert_int_equal(llsmtp_client_size(&bad), 0);
    /* another major version */
    assert_int_equal(llsmtp_client_cfg_init_(&bad, other_major, sizeof bad),
                     LLSMTP_E_VERSION);
    assert_int_equal(llsmtp_client_cfg_check(&bad, NULL), LLSMTP_E_VERSION);
    /* a newer minor of this major: larger by definition, refused */
    assert_int_equal(llsmtp_client_cfg_init_(&bad, LLSMTP_VERSION_NUM + 0x100,
                                             sizeof bad),
                     LLSMTP_E_VERSION);
    /* a tag edited after init, and a struct never initialised */
    bad = cfg;
    bad.abi.size += 4;
    assert_int_equal(llsmtp_client_cfg_check(&bad, NULL), LLSMTP_E_VERSION);
    bad = cfg;
    bad.abi.version ^= 1u << 20;
    assert_int_equal(llsmtp_client_cfg_check(&bad, NULL), LLSMTP_E_VERSION);
    memset(&bad, 0, sizeof bad);
    bad.helo = sp("client.example.test");
    bad.max_reply_lines = 100;
    bad.output_size = 4096;
    assert_int_equal(llsmtp_client_cfg_check(&bad, &why), LLSMTP_E_VERSION);
    assert_int_equal(llsmtp_client_size(&bad), 0);
    assert_null(cli_try(&bad));
    memset(&bad, 0xa5, sizeof bad);
    assert_int_equal(llsmtp_client_cfg_check(&bad, NULL), LLSMTP_E_VERSION);
    assert_int_equal(llsmtp_client_cfg_init_(NULL, LLSMTP_VERSION_NUM,
                                             sizeof bad),
                     LLSMTP_E_INVAL);
    /* messages: refused by mail() */
    assert_int_equal(llsmtp_client_msg_init_(&mbad, LLSMTP_VERSION_NUM,
                                             sizeof mbad + 1),
                     LLSMTP_E_VERSION);
    assert_int_equal(llsmtp_client_msg_init_(&mbad, other_major, sizeof mbad),
                     LLSMTP_E_VERSION);
    assert_int_equal(llsmtp_client_msg_init(&m), LLSMTP_OK);
    m.to = &to;
    m.nto = 1;
    c = cli_new(&cfg);
    feed_rc(c, "220 s\r\n", LLSMTP_OK, &ev);
    llsmtp_client_consume(c, (size_t)-1);
    feed_rc(c, "250 s\r\n", LLSMTP_EVENT, &ev);
    mbad = m;
    mbad.abi.size = (uint32_t)sizeof mbad + 8;
    assert_int_equal(llsmtp_client_mail(c, &mbad), LLSMTP_E_VERSION);
    mbad = m;
    mbad.abi.version = (uint32_t)other_major;
    assert_int_equal(llsmtp_client_mail(c, &mbad), LLSMTP_E_VERSION);
    memset(&mbad, 0, sizeof mbad);
    mbad.to = &to;
    mbad.nto = 1;
    assert_int_equal(llsmtp_client_mail(c, &mbad), LLSMTP_E_VERSION);
    assert_int_equal(llsmtp_client_output(c).n, 0); /* nothing sent */
    assert_int_equal(llsmtp_client_mail(c, &m), LLSMTP_OK);
}

/* llsmtp_client_init refuses what it cannot use, and cfg_check names the
 * field; the user pointer can be read and moved. */
static void
test_client_init_refusals(void **state)
{
    static const struct {
        const char *helo, *user, *pass;
        size_t pass_n;
        unsigned flags, lines;
        size_t out;
        const char *why;
    } bad[] = {
        {"", "", "", 0, 0, 100, 4096, "helo:"},
        {"a b", "", "", 0, 0, 100, 4096, "helo:"},
        {"x\r\nQUIT", "", "", 0, 0, 100, 4096, "helo:"},
        {"x.", "", "", 0, 0, 100, 4096, "helo:"},
        {"[300.1.1.1]", "", "", 0, 0, 100, 4096, "helo:"},
        {"ok.test", "u", "", 0, 0, 100, 4096, "user, password:"},
        {"ok.test", "", "p", 1, 0, 100, 4096, "user, password:"},
        {"ok.test", "u", "p\0q", 3, 0, 100, 4096, "user, password:"},
        {"ok.test", "", "", 0, 1u << 9, 100, 4096, "flags:"},
        {"ok.test", "", "", 0, 0, 0, 4096, "max_reply_lines:"},
        {"ok.test", "", "", 0, 0, 100, 1023, "output_size:"},
        {"ok.test", "", "", 0, 0, 100, ((size_t)1 << 30) + 1, "output_size:"},
    };
    static const char *const good[] = {"client.example.test", "localhost",
                                       "[192.0.2.1]", "[IPv6:2001:db8::1]"};
    char longname[300];
    llsmtp_client_cfg cfg;
    llsmtp_client *c;
    size_t i, size;
    const char *why;
    int dummy;
    (void)state;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        llsmtp_client_cfg_init(&cfg);
        cfg.helo = sp(bad[i].helo);
        cfg.user = sp(bad[i].user);
        cfg.password.p = bad[i].pass;
        cfg.password.n = bad[i].pass_n;
        cfg.flags = bad[i].flags;
        cfg.max_reply_lines = bad[i].lines;
        cfg.output_size = bad[i].out;
        if (llsmtp_client_cfg_check(&cfg, &why) != LLSMTP_E_INVAL ||
            strncmp(why, bad[i].why, strlen(bad[i].why)) != 0)
            fail_msg("case %zu (%s): %s", i, bad[i].why, why ? why : "ok");
        assert_int_equal(llsmtp_client_size(&cfg), 0);
        assert_null(cli_try(&cfg));
    }
    memset(longname, 'a', sizeof longname);
    llsmtp_client_cfg_init(&cfg);
    cfg.helo.p = longname;
    cfg.helo.n = 256;
    assert_int_equal(llsmtp_client_cfg_check(&cfg, &why), LLSMTP_E_INVAL);
    assert_int_equal(llsmtp_client_cfg_check(NULL, &why), LLSMTP_E_INVAL);
    assert_int_equal(llsmtp_client_size(NULL), 0);
    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        llsmtp_client_cfg_init(&cfg);
        cfg.helo = sp(good[i]);
        if (llsmtp_client_cfg_check(&cfg, &why) != LLSMTP_OK)
            fail_msg("%s: %s", good[i], why);
    }
    /* the defaults are a valid configuration */
    llsmtp_client_cfg_init(&cfg);
    assert_true(cfg.helo.n == 9 && memcmp(cfg.helo.p, "localhost", 9) == 0);
    assert_int_equal(cfg.flags, 0);
    assert_int_equal(cfg.max_reply_lines, 100);
    assert_int_equal(cfg.output_size, 4096);
    size = llsmtp_client_size(&cfg);
    assert_true(size > 4096);
    /* memory: NULL, too small, misaligned */
    assert_null(llsmtp_client_init(NULL, size, &cfg, NULL));
    assert_null(llsmtp_client_init(&tc_mem, size - 1, &cfg, NULL));
    assert_null(llsmtp_client_init(tc_mem.b + 1, size, &cfg, NULL));
    assert_null(llsmtp_client_init(&tc_mem, size, NULL, NULL));
    c = llsmtp_client_init(&tc_mem, size, &cfg, &dummy);
    assert_ptr_equal(c, &tc_mem);
    assert_ptr_equal(llsmtp_client_user(c), &dummy);
    llsmtp_client_set_user(c, &i);
    assert_ptr_equal(llsmtp_client_user(c), &i);
    assert_null(llsmtp_client_user(NULL));
    /* the cfg is copied: it may go away */
    memset(longname, 'b', sizeof longname);
    memcpy(longname, "copied.test", 11);
    cfg.helo.p = longname;
    cfg.helo.n = 11;
    c = llsmtp_client_init(&tc_mem, sizeof tc_mem, &cfg, NULL);
    memset(longname, 'x', sizeof longname);
    memset(&cfg, 0, sizeof cfg);
    {
        llsmtp_client_event ev;
        feed_rc(c, "220 s\r\n", LLSMTP_OK, &ev);
        assert_int_equal(llsmtp_client_output(c).n, 18);
        assert_memory_equal(llsmtp_client_output(c).p, "EHLO copied.test\r\n",
                            18);
    }
}

/* The user name and password do not outlive their use: wiped from the
 * session once AUTH succeeded (LOGIN and PLAIN), once it was refused, and
 * with a queued AUTH line when the session dies before it was written. */
static const char *
cr_find(const void *h, size_t hn, const char *n)
{
    size_t k = strlen(n), i;
    for (i = 0; i + k <= hn; i++)
        if (memcmp((const char *)h + i, n, k) == 0)
            return (const char *)h + i;
    return NULL;
}

static int
cr_feed(llsmtp_client *c, const char *str)
{
    size_t used, off = 0, len = strlen(str);
    llsmtp_client_event ev;
    int last = 0;
    while (llsmtp_client_feed(c, str + off, len - off, &used, &ev) ==
           LLSMTP_EVENT) {
        off += used;
        last = ev.type;
    }
    while (llsmtp_client_next_event(c, &ev) == LLSMTP_EVENT)
        last = ev.type;
    return last;
}

static void
cr_drain(llsmtp_client *c)
{
    llsmtp_client_consume(c, llsmtp_client_output(c).n);
}

static void
test_client_credentials_wiped(void **state)
{
    static const char *const pw = "Sup3rS3cretPassw0rd";
    static const char *const b64pw = "U3VwM3JTM2NyZXRQYXNzdzByZA==";
    llsmtp_client_cfg cfg;
    llsmtp_client *c;
    void *mem;
    size_t sz;
    int how;
    (void)state;
    llsmtp_client_cfg_init(&cfg);
    cfg.user.p = "alice@example.test";
    cfg.user.n = strlen(cfg.user.p);
    cfg.password.p = pw;
    cfg.password.n = strlen(pw);
    cfg.flags = LLSMTP_CLI_AUTH_CLEARTEXT;
    sz = llsmtp_client_size(&cfg);
    mem = calloc(1, sz); /* scanned whole: no uninitialised octets */
    for (how = 0; how < 4; how++) {
        c = llsmtp_client_init(mem, sz, &cfg, NULL);
        assert_non_null(c);
        cr_feed(c, "220 mx ESMTP\r\n");
        cr_drain(c);
        cr_feed(c, how == 1 ? "250-mx\r\n250 AUTH LOGIN\r\n"
                            : "250-mx\r\n250 AUTH PLAIN LOGIN\r\n");
        if (how == 3) { /* dies with the AUTH line unwritten */
            assert_int_equal(cr_feed(c, "421 4.3.2 going away\r\n"),
                             LLSMTP_CEV_FAIL);
        } else {
            cr_drain(c);
            if (how == 1) {
                cr_feed(c, "334 VXNlcm5hbWU6\r\n");
                cr_drain(c);
                cr_feed(c, "334 UGFzc3dvcmQ6\r\n");
                cr_drain(c);
            }
            assert_int_equal(cr_feed(c, how == 2 ? "535 5.7.8 no\r\n"
                                                 : "235 2.7.0 ok\r\n"),
                             how == 2 ? LLSMTP_CEV_FAIL : LLSMTP_CEV_READY);
        }
        assert_null(cr_find(mem, sz, pw));
        assert_null(cr_find(mem, sz, "alice@example.test"));
        assert_null(cr_find(mem, sz, b64pw));
        assert_null(cr_find(mem, sz, "AGFsaWNl")); /* PLAIN's base64 */
    }
    free(mem);
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
        cmocka_unit_test(test_client_pipelined),
        cmocka_unit_test(test_client_helo_fallback),
        cmocka_unit_test(test_client_pipelined_refusals),
        cmocka_unit_test(test_client_tls_auth_lmtp),
        cmocka_unit_test(test_client_auth_login),
        cmocka_unit_test(test_client_failures),
        cmocka_unit_test(test_client_api_guards),
        cmocka_unit_test(test_client_quoted_local_part),
        cmocka_unit_test(test_client_body_through_tiny_output),
        cmocka_unit_test(test_client_single_rcpt_refused),
        cmocka_unit_test(test_client_size_overflow),
        cmocka_unit_test(test_client_data_not_354),
        cmocka_unit_test(test_client_reply_before_command),
        cmocka_unit_test(test_client_against_server),
        cmocka_unit_test(test_client_wants_session),
        cmocka_unit_test(test_client_enhanced_codes),
        cmocka_unit_test(test_client_body_random_splits),
        cmocka_unit_test(test_client_versioned_structs),
        cmocka_unit_test(test_client_init_refusals),
        cmocka_unit_test(test_client_credentials_wiped),
    };
    return cmocka_run_group_tests_name("client", tests, NULL, NULL);
}
