/* SPDX-License-Identifier: MIT
 *
 * test_server.c - the server session's API contract: memory and
 * configuration checks, feed/used/pause/blocked semantics, resume rules,
 * re-entrancy guard, sticky failure, the synchronization check, timeouts
 * and accessors. Dialogue behaviour lives in the transcripts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"

/* lib/server_cmd.c's tables (LLSMTP_TEST_INTERNALS in the amalgamation) */
int llsmtp__server_kind_row(size_t i, const char **cb);
const char *llsmtp__server_cmd_row(size_t i);
long llsmtp__server_cmd_find(const char *v, size_t n);

static llsmtp_config
cfg_default(const llsmtp_callbacks *cb)
{
    llsmtp_config cfg;
    llsmtp_config_init(&cfg);
    cfg.hostname = "mx.example.test";
    cfg.callbacks = cb;
    return cfg;
}

static int
feed_str(llsmtp_server *s, const char *str, size_t *used)
{
    return llsmtp_server_feed(s, str, strlen(str), used);
}

static void
test_config_validation(void **state)
{
    llsmtp_config cfg = cfg_default(NULL);
    char mem[64];
    (void)state;
    assert_true(llsmtp_server_size(&cfg) > 0);
    assert_null(llsmtp_server_size(NULL) ? (void *)1 : NULL);
    cfg.max_line = 511;
    assert_int_equal(llsmtp_server_size(&cfg), 0);
    cfg = cfg_default(NULL);
    cfg.max_rcpt = 99; /* RFC 5321 4.5.3.1.8: at least 100 */
    assert_int_equal(llsmtp_server_size(&cfg), 0);
    cfg = cfg_default(NULL);
    cfg.hostname = NULL;
    assert_int_equal(llsmtp_server_size(&cfg), 0);
    cfg = cfg_default(NULL);
    cfg.bare_lf = 7;
    assert_int_equal(llsmtp_server_size(&cfg), 0);
    cfg = cfg_default(NULL);
    assert_null(llsmtp_server_init(mem, sizeof mem, &cfg, NULL));
    assert_null(llsmtp_server_init(NULL, 100000, &cfg, NULL));
}

static void
test_memory_size(void **state)
{
    llsmtp_config cfg = cfg_default(NULL);
    size_t sz = llsmtp_server_size(&cfg);
    (void)state;
    /* state + 512-byte line buffer + output queue */
    print_message("session size with defaults: %zu bytes\n", sz);
    assert_true(sz < 8192);
    cfg.max_line = 4096;
    assert_true(llsmtp_server_size(&cfg) > sz);
}

static void
test_feed_before_start_and_args(void **state)
{
    llsmtp_config cfg = cfg_default(NULL);
    th_host h;
    llsmtp_server *s;
    size_t used = 99;
    (void)state;
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    assert_int_equal(feed_str(s, "NOOP\r\n", &used), LLSMTP_E_STATE);
    assert_int_equal(used, 0);
    assert_int_equal(TH_FEED(s, "x", NULL), LLSMTP_E_INVAL);
    assert_int_equal(llsmtp_server_feed(s, NULL, 1, &used), LLSMTP_E_INVAL);
    assert_int_equal(llsmtp_server_start(s), LLSMTP_OK);
    assert_int_equal(llsmtp_server_start(s), LLSMTP_E_STATE);
    assert_int_equal(llsmtp_server_feed(s, NULL, 0, &used), LLSMTP_OK);
    assert_int_equal(llsmtp_server_resume(s, NULL), LLSMTP_E_STATE);
    free(s);
}

/* A deferred RCPT: feed stops exactly after that line, consumes nothing
 * while paused, and the default reply keeps the address. */
static void
test_pause_position(void **state)
{
    static const char in[] = "EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n"
                             "RCPT TO:<deferred@x.test>\r\nRCPT TO:<n@x.test>"
                             "\r\nQUIT\r\n";
    th_host h;
    llsmtp_config cfg = cfg_default(&th_callbacks);
    llsmtp_server *s;
    size_t used = 0, off, olen;
    const char *out, *rcpt_end;
    (void)state;
    memset(&h, 0, sizeof h);
    snprintf(h.rules[0].kind, sizeof h.rules[0].kind, "rcpt");
    snprintf(h.rules[0].match, sizeof h.rules[0].match, "deferred@");
    h.rules[0].defer = 1;
    h.nrules = 1;
    s = th_session(&cfg, &h);
    assert_int_equal(llsmtp_server_start(s), LLSMTP_OK);
    assert_int_equal(llsmtp_server_feed(s, in, sizeof in - 1, &used),
                     LLSMTP_PAUSED);
    rcpt_end = strstr(in, "RCPT TO:<n@");
    assert_int_equal(used, (size_t)(rcpt_end - in));
    assert_int_equal(llsmtp_server_pending(s), LLSMTP_PENDING_RCPT);
    assert_int_equal(llsmtp_server_timeout(s, NULL), LLSMTP_TIMEOUT_NONE);
    off = used;
    /* paused: nothing consumed, repeatedly */
    assert_int_equal(llsmtp_server_feed(s, in + off, sizeof in - 1 - off,
                                        &used),
                     LLSMTP_PAUSED);
    assert_int_equal(used, 0);
    /* an invalid decision is refused and changes nothing */
    {
        llsmtp_reply bad = LLSMTP_REPLY_INIT;
        bad.code = 700;
        assert_int_equal(llsmtp_server_resume(s, &bad), LLSMTP_E_REPLY);
        assert_int_equal(llsmtp_server_pending(s), LLSMTP_PENDING_RCPT);
    }
    assert_int_equal(llsmtp_server_resume(s, NULL), LLSMTP_OK);
    assert_int_equal(llsmtp_server_pending(s), LLSMTP_PENDING_NONE);
    assert_int_equal(llsmtp_server_feed(s, in + off, sizeof in - 1 - off,
                                        &used),
                     LLSMTP_CLOSE);
    assert_int_equal(off + used, sizeof in - 1);
    out = th_output(s, &olen);
    assert_true(th_contains(out, olen,
                            "250 2.1.5 Recipient <deferred@x.test> OK"
                            "\r\n250 2.1.5 Recipient <n@x.test> OK\r\n"));
    free(s);
    th_host_free(&h);
}

/* Output backpressure: feed returns BLOCKED at a line boundary and goes
 * on after the host drains. */
static void
test_blocked(void **state)
{
    llsmtp_config cfg = cfg_default(NULL);
    th_host h;
    llsmtp_server *s;
    th_buf in = {0};
    size_t used = 0, off = 0, olen, total = 0;
    int i, rc, blocked = 0;
    (void)state;
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    assert_int_equal(llsmtp_server_start(s), LLSMTP_OK);
    for (i = 0; i < 1000; i++)
        th_buf_adds(&in, "NOOP\r\n");
    for (;;) {
        rc = llsmtp_server_feed(s, in.p + off, in.n - off, &used);
        off += used;
        if (rc == LLSMTP_BLOCKED) {
            blocked++;
            assert_int_equal(off % 6, 0); /* stops at a line boundary */
            th_output(s, &olen);
            total += olen;
            (void)llsmtp_server_consume(s, olen);
            continue;
        }
        assert_int_equal(rc, LLSMTP_OK);
        break;
    }
    assert_int_equal(off, in.n);
    assert_true(blocked > 0);
    th_output(s, &olen);
    total += olen;
    /* greeting + 1000 x "250 2.0.0 OK\r\n" */
    assert_int_equal(total, strlen("220 mx.example.test ESMTP llsmtp\r\n") +
                                1000 * 14);
    free(s);
    th_buf_free(&in);
}

/* Calling into the session from a callback is refused. */
static int reentrant_rc[4];
static int
reentrant_on_helo(llsmtp_server *s, llsmtp_span d, int e, llsmtp_reply *r)
{
    size_t used;
    (void)d;
    (void)e;
    (void)r;
    reentrant_rc[0] = TH_FEED(s, "NOOP\r\n", &used);
    reentrant_rc[1] = llsmtp_server_resume(s, NULL);
    reentrant_rc[2] = llsmtp_server_reset(s);
    reentrant_rc[3] = llsmtp_server_eof(s);
    return LLSMTP_OK;
}

static void
test_reentrancy_guard(void **state)
{
    llsmtp_callbacks cb;
    llsmtp_config cfg;
    th_host h;
    llsmtp_server *s;
    size_t used;
    int i;
    (void)state;
    memset(&cb, 0, sizeof cb);
    cb.on_helo = reentrant_on_helo;
    cfg = cfg_default(&cb);
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    llsmtp_server_start(s);
    assert_int_equal(feed_str(s, "HELO x\r\n", &used), LLSMTP_OK);
    for (i = 0; i < 4; i++)
        assert_int_equal(reentrant_rc[i], LLSMTP_E_REENTRANT);
    free(s);
}

static int
fail_on_data(llsmtp_server *s, const char *p, size_t n)
{
    (void)s;
    (void)p;
    (void)n;
    return LLSMTP_E_CALLBACK;
}

static void
test_sticky_failure(void **state)
{
    llsmtp_callbacks cb;
    llsmtp_config cfg;
    th_host h;
    llsmtp_server *s;
    size_t used;
    (void)state;
    memset(&cb, 0, sizeof cb);
    cb.on_data = fail_on_data;
    cfg = cfg_default(&cb);
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    llsmtp_server_start(s);
    assert_int_equal(feed_str(s,
                              "HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b.c>"
                              "\r\nDATA\r\nhello\r\n",
                              &used),
                     LLSMTP_E_CALLBACK);
    assert_string_equal(llsmtp_server_failed_cb(s), "on_data");
    assert_int_equal(feed_str(s, "more\r\n", &used), LLSMTP_E_CALLBACK);
    assert_int_equal(used, 0);
    assert_int_equal(llsmtp_server_reset(s), LLSMTP_OK);
    assert_null(llsmtp_server_failed_cb(s));
    assert_int_equal(llsmtp_server_start(s), LLSMTP_OK);
    free(s);
}

/* A callback that writes a bad reply straight into the struct fails. */
static int
bad_reply_on_mail(llsmtp_server *s, const llsmtp_path *p,
                  const llsmtp_params *ps, llsmtp_reply *r)
{
    (void)s;
    (void)p;
    (void)ps;
    r->code = 354; /* not a MAIL reply */
    return LLSMTP_OK;
}

static int
direct_code_on_rcpt(llsmtp_server *s, const llsmtp_path *p,
                    const llsmtp_params *ps, llsmtp_reply *r)
{
    (void)s;
    (void)p;
    (void)ps;
    r->code = 550; /* edited without llsmtp_reply_set: generic text */
    return LLSMTP_OK;
}

static void
test_reply_struct_edits(void **state)
{
    llsmtp_callbacks cb;
    llsmtp_config cfg;
    th_host h;
    llsmtp_server *s;
    size_t used, olen;
    const char *out;
    (void)state;
    memset(&cb, 0, sizeof cb);
    cb.on_rcpt = direct_code_on_rcpt;
    cfg = cfg_default(&cb);
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    llsmtp_server_start(s);
    assert_int_equal(feed_str(s,
                              "HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b.c>"
                              "\r\n",
                              &used),
                     LLSMTP_OK);
    out = th_output(s, &olen);
    assert_true(th_contains(out, olen,
                            "\r\n550 5.0.0 Requested action not taken: "
                            "mailbox unavailable\r\n"));
    free(s);

    cb.on_rcpt = NULL;
    cb.on_mail_from = bad_reply_on_mail;
    cfg = cfg_default(&cb);
    s = th_session(&cfg, &h);
    llsmtp_server_start(s);
    assert_int_equal(feed_str(s, "HELO x\r\nMAIL FROM:<>\r\n", &used),
                     LLSMTP_E_CALLBACK);
    assert_string_equal(llsmtp_server_failed_cb(s), "on_mail_from");
    free(s);
}

/* RFC 2920 3.1 and early talkers, with LLSMTP_CFG_SYNC_CHECK. */
static void
test_sync_check(void **state)
{
    llsmtp_config cfg = cfg_default(NULL);
    th_host h;
    llsmtp_server *s;
    size_t used, olen;
    const char *out;
    (void)state;
    cfg.flags |= LLSMTP_CFG_SYNC_CHECK;
    memset(&h, 0, sizeof h);

    /* early talker: data before the greeting was written */
    s = th_session(&cfg, &h);
    llsmtp_server_start(s);
    assert_int_equal(feed_str(s, "EHLO x\r\n", &used), LLSMTP_CLOSE);
    out = th_output(s, &olen);
    assert_true(
        th_contains(out, olen, "554 5.5.0 SMTP protocol synchronization"));
    free(s);

    /* a well-behaved client */
    s = th_session(&cfg, &h);
    llsmtp_server_start(s);
    th_output(s, &olen);
    (void)llsmtp_server_consume(s, olen);
    assert_int_equal(feed_str(s, "EHLO x\r\n", &used), LLSMTP_OK);
    llsmtp_server_input_drained(s);
    /* PIPELINING in force: MAIL and RCPT may share a read */
    assert_int_equal(feed_str(s, "MAIL FROM:<>\r\nRCPT TO:<a@b.c>\r\nDATA\r\n",
                              &used),
                     LLSMTP_OK);
    llsmtp_server_input_drained(s);
    /* but nothing may follow DATA in the same read */
    th_output(s, &olen);
    (void)llsmtp_server_consume(s, olen);
    assert_int_equal(feed_str(s, "x\r\n.\r\n", &used), LLSMTP_OK);
    llsmtp_server_input_drained(s);
    assert_int_equal(feed_str(s, "NOOP\r\nNOOP\r\n", &used), LLSMTP_CLOSE);
    out = th_output(s, &olen);
    assert_true(th_contains(out, olen, "250 2.0.0 OK\r\n554 5.5.0"));
    free(s);

    /* HELO: no pipelining at all */
    s = th_session(&cfg, &h);
    llsmtp_server_start(s);
    th_output(s, &olen);
    (void)llsmtp_server_consume(s, olen);
    assert_int_equal(feed_str(s, "HELO x\r\nMAIL FROM:<>\r\n", &used),
                     LLSMTP_CLOSE);
    free(s);
}

/* Which lines end a pipelined group (RFC 2920 3.1) under the sync check:
 * the client must wait after a line that ends one, so a second line in
 * the same read is improper pipelining (554 and close) exactly when the
 * first ends a group. Each row: the extensions changed from the
 * default, reads the client waits on before (each its own read), then the
 * read tried. */
static void
test_sync_check_groups(void **state)
{
    static const struct {
        unsigned ext_on, ext_off;
        const char *before[3], *read;
        int ends; /* 1: the read's first line ends a group */
    } rows[] = {
        /* clang-format off */
        /* RFC 4954 4: an initial response may be pipelined past when the
         * exchange completes in one round trip; a 334 says it did not */
        {LLSMTP_EXT_AUTH, 0, {NULL},
         "AUTH PLAIN AHUAcA==\r\nMAIL FROM:<>\r\n", 0},
        {LLSMTP_EXT_AUTH, 0, {NULL}, "auth  plain AHUAcA== \r\nNOOP\r\n", 0},
        {LLSMTP_EXT_AUTH, 0, {NULL}, "AUTH EXTERNAL =\r\nNOOP\r\n", 0},
        {LLSMTP_EXT_AUTH, 0, {NULL}, "AUTH ANONYMOUS dHJhY2U=\r\nNOOP\r\n", 0},
        {LLSMTP_EXT_AUTH, 0, {NULL}, "AUTH PLAIN\r\nAHUAcA==\r\n", 1},
        {LLSMTP_EXT_AUTH, 0, {NULL}, "AUTH PLAIN \t\r\nAHUAcA==\r\n", 1},
        {LLSMTP_EXT_AUTH, 0, {NULL}, "AUTH LOGIN dQ==\r\ncA==\r\n", 1},
        /* each SASL response waits for the next challenge or outcome */
        {LLSMTP_EXT_AUTH, 0, {"AUTH LOGIN\r\n"}, "dQ==\r\ncA==\r\n", 1},
        /* RFC 1985 says nothing otherwise: ETRN ends a group */
        {LLSMTP_EXT_ETRN, 0, {NULL}, "ETRN example.test\r\nNOOP\r\n", 1},
        {0, 0, {NULL}, "MAIL FROM:<>\r\nRCPT TO:<a@b.c>\r\n", 0},
        /* a line refused unread says no command: it ends no group... */
        {0, 0, {NULL}, "\r\nNOOP\r\n", 0},
        /* ...but without PIPELINING every line does (RFC 5321 4.3.1) */
        {0, LLSMTP_EXT_PIPELINING, {NULL}, "\r\nNOOP\r\n", 1},
        {0, LLSMTP_EXT_PIPELINING, {NULL}, "RSET\r\nNOOP\r\n", 1},
        /* and so does the end of a message or of a chunk */
        {0, LLSMTP_EXT_PIPELINING,
         {"MAIL FROM:<>\r\n", "RCPT TO:<a@b.c>\r\n", "DATA\r\n"},
         "hi\r\n.\r\nNOOP\r\n", 1},
        {0, 0, {"MAIL FROM:<>\r\nRCPT TO:<a@b.c>\r\nDATA\r\n"},
         "hi\r\n.\r\nNOOP\r\n", 0},
        {LLSMTP_EXT_CHUNKING, LLSMTP_EXT_PIPELINING,
         {"MAIL FROM:<>\r\n", "RCPT TO:<a@b.c>\r\n", "BDAT 5\r\n"},
         "helloNOOP\r\n", 1},
        {LLSMTP_EXT_CHUNKING, LLSMTP_EXT_PIPELINING,
         {"MAIL FROM:<>\r\n", "RCPT TO:<a@b.c>\r\n"},
         "BDAT 5\r\nhelloNOOP\r\n", 1},
        {LLSMTP_EXT_CHUNKING, 0, {"MAIL FROM:<>\r\nRCPT TO:<a@b.c>\r\n"},
         "BDAT 5\r\nhelloBDAT 0 LAST\r\n", 0},
        /* clang-format on */
    };
    size_t i, k;
    (void)state;
    for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        llsmtp_config cfg = cfg_default(NULL);
        th_host h;
        llsmtp_server *s;
        size_t used, olen;
        const char *out;
        int rc;
        cfg.flags |= LLSMTP_CFG_SYNC_CHECK | LLSMTP_CFG_AUTH_CLEARTEXT;
        cfg.extensions = (cfg.extensions | rows[i].ext_on) & ~rows[i].ext_off;
        cfg.auth_mechanisms = "PLAIN LOGIN";
        memset(&h, 0, sizeof h);
        s = th_session(&cfg, &h);
        llsmtp_server_start(s);
        th_output(s, &olen);
        (void)llsmtp_server_consume(s, olen);
        assert_int_equal(feed_str(s, "EHLO x\r\n", &used), LLSMTP_OK);
        llsmtp_server_input_drained(s);
        for (k = 0; k < 3 && rows[i].before[k] != NULL; k++) {
            assert_int_equal(feed_str(s, rows[i].before[k], &used), LLSMTP_OK);
            llsmtp_server_input_drained(s);
        }
        th_output(s, &olen);
        (void)llsmtp_server_consume(s, olen);
        rc = feed_str(s, rows[i].read, &used);
        out = th_output(s, &olen);
        if (rows[i].ends != th_contains(out, olen, "554 5.5.0") ||
            rc != (rows[i].ends ? LLSMTP_CLOSE : LLSMTP_OK))
            fail_msg("row %zu (%s): rc %d, output %.*s", i, rows[i].read, rc,
                     (int)olen, out);
        free(s);
    }
}

static void
test_timeouts(void **state)
{
    llsmtp_config cfg = cfg_default(NULL);
    th_host h;
    llsmtp_server *s;
    size_t used;
    unsigned sec = 0;
    (void)state;
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    assert_int_equal(llsmtp_server_timeout(s, &sec), LLSMTP_TIMEOUT_GREETING);
    llsmtp_server_start(s);
    assert_int_equal(llsmtp_server_timeout(s, &sec), LLSMTP_TIMEOUT_IDLE);
    assert_true(sec >= 300); /* RFC 5321 4.5.3.2.7 */
    feed_str(s, "HELO x\r\n", &used);
    assert_int_equal(llsmtp_server_timeout(s, NULL), LLSMTP_TIMEOUT_MAIL);
    feed_str(s, "MAIL FROM:<>\r\nRCPT TO:<a@b.c>\r\n", &used);
    assert_int_equal(llsmtp_server_timeout(s, NULL), LLSMTP_TIMEOUT_RCPT);
    feed_str(s, "DATA\r\n", &used);
    assert_int_equal(llsmtp_server_timeout(s, NULL), LLSMTP_TIMEOUT_DATA_INIT);
    feed_str(s, "abc", &used);
    assert_int_equal(llsmtp_server_timeout(s, &sec),
                     LLSMTP_TIMEOUT_DATA_BLOCK);
    assert_true(sec >= 180);
    assert_int_equal(llsmtp_server_timeout_expired(s), LLSMTP_CLOSE);
    assert_int_equal(llsmtp_server_timeout(s, NULL), LLSMTP_TIMEOUT_NONE);
    assert_int_equal(feed_str(s, "x", &used), LLSMTP_CLOSE);
    free(s);
}

/* The client vanishes while the host decides: the late decision must not
 * bring the session back. */
static void
test_resume_after_eof(void **state)
{
    th_host h;
    llsmtp_config cfg = cfg_default(&th_callbacks);
    llsmtp_server *s;
    size_t used, olen;
    (void)state;
    memset(&h, 0, sizeof h);
    snprintf(h.rules[0].kind, sizeof h.rules[0].kind, "data_end");
    snprintf(h.rules[0].match, sizeof h.rules[0].match, "*");
    h.rules[0].defer = 1;
    h.nrules = 1;
    s = th_session(&cfg, &h);
    llsmtp_server_start(s);
    assert_int_equal(feed_str(s,
                              "HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b.c>"
                              "\r\nDATA\r\nhi\r\n.\r\n",
                              &used),
                     LLSMTP_PAUSED);
    th_output(s, &olen);
    (void)llsmtp_server_consume(s, olen);
    assert_int_equal(llsmtp_server_eof(s), LLSMTP_CLOSE);
    assert_int_equal(llsmtp_server_pending(s), LLSMTP_PENDING_NONE);
    assert_int_equal(llsmtp_server_resume(s, NULL), LLSMTP_CLOSE);
    assert_int_equal(feed_str(s, "NOOP\r\n", &used), LLSMTP_CLOSE);
    th_output(s, &olen);
    assert_int_equal(olen, 0); /* no 250 for a message already dropped */
    assert_non_null(strstr(h.events.p, "data_end hi\\r\\n\nabort closed\n"));
    free(s);
    th_host_free(&h);
}

static void
test_shutdown(void **state)
{
    th_host h;
    llsmtp_config cfg = cfg_default(&th_callbacks);
    llsmtp_server *s;
    llsmtp_reply r = LLSMTP_REPLY_INIT;
    size_t used;
    (void)state;
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    llsmtp_server_start(s);
    feed_str(s, "HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b.c>\r\nDATA\r\npart",
             &used);
    th_drain(s, &h);
    llsmtp_reply_set(&r, 250, NULL, "fine");
    assert_int_equal(llsmtp_server_shutdown(s, &r), LLSMTP_E_REPLY);
    assert_int_equal(llsmtp_server_shutdown(s, NULL), LLSMTP_CLOSE);
    th_drain(s, &h);
    assert_non_null(strstr(h.out.p, "\r\n421 4.3.2 mx.example.test Service "
                                    "shutting down\r\n"));
    assert_non_null(strstr(h.events.p, "data_start\nabort closed\n"));
    assert_int_equal(feed_str(s, "x\r\n", &used), LLSMTP_CLOSE);
    free(s);
    th_host_free(&h);

    /* with the host's own reply */
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    llsmtp_server_start(s);
    llsmtp_reply_set(&r, 554, "5.7.1", "Your address is now blocked");
    assert_int_equal(llsmtp_server_shutdown(s, &r), LLSMTP_CLOSE);
    th_drain(s, &h);
    assert_non_null(strstr(h.out.p, "\r\n554 5.7.1 Your address is now "
                                    "blocked\r\n"));
    free(s);
    th_host_free(&h);
}

static void
test_accessors(void **state)
{
    llsmtp_config cfg = cfg_default(NULL);
    th_host h;
    llsmtp_server *s;
    size_t used;
    (void)state;
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    assert_ptr_equal(llsmtp_server_user(s), &h);
    assert_ptr_equal(llsmtp_server_config(s), &cfg);
    llsmtp_server_start(s);
    assert_int_equal(llsmtp_server_helo_kind(s), -1);
    feed_str(s,
             "EHLO x\r\nMAIL FROM:<> BODY=8BITMIME\r\nRCPT TO:<a@b.c>\r\n"
             "RCPT TO:<d@b.c>\r\n",
             &used);
    assert_int_equal(llsmtp_server_helo_kind(s), 1);
    assert_int_equal(llsmtp_server_body_type(s), 8);
    assert_int_equal(llsmtp_server_rcpt_count(s), 2);
    feed_str(s, "RSET\r\n", &used);
    assert_int_equal(llsmtp_server_rcpt_count(s), 0);
    free(s);
}

static void
test_strerror(void **state)
{
    (void)state;
    assert_string_equal(llsmtp_errname(LLSMTP_E_STATE), "LLSMTP_E_STATE");
    assert_string_equal(llsmtp_errname(LLSMTP_PAUSED), "LLSMTP_PAUSED");
    assert_string_equal(llsmtp_strerror(LLSMTP_E_REENTRANT),
                        "called from inside a callback");
    assert_non_null(llsmtp_strerror(-12345));
    assert_string_equal(llsmtp_errname(-12345), "LLSMTP_E_UNKNOWN");
    assert_int_equal(llsmtp_version(), LLSMTP_VERSION_NUM);
}

/* Two sessions share one configuration and do not disturb each other. */
static void
test_two_sessions_share_config(void **state)
{
    llsmtp_config cfg = cfg_default(&th_callbacks);
    th_host h1, h2;
    llsmtp_server *a, *b;
    size_t used;
    (void)state;
    memset(&h1, 0, sizeof h1);
    memset(&h2, 0, sizeof h2);
    a = th_session(&cfg, &h1);
    b = th_session(&cfg, &h2);
    llsmtp_server_start(a);
    llsmtp_server_start(b);
    feed_str(a, "HELO one\r\nMAIL FROM:<", &used);
    feed_str(b, "HELO two\r\n", &used);
    feed_str(a, "x@y.z>\r\n", &used);
    th_drain(a, &h1);
    th_drain(b, &h2);
    assert_non_null(strstr(h1.out.p, "Sender <x@y.z> OK"));
    assert_null(strstr(h2.out.p, "Sender"));
    assert_string_equal(h1.events.p, "connect\nhelo one\nmail <x@y.z>\n");
    assert_string_equal(h2.events.p, "connect\nhelo two\n");
    free(a);
    free(b);
    th_host_free(&h1);
    th_host_free(&h2);
}

/* Feeds all of in, draining the output whenever the session blocks, as a
 * host would; returns the last status. */
static int
feed_all_drained(llsmtp_server *s, th_host *h, const char *in, size_t n)
{
    size_t off = 0, used;
    int rc;
    for (;;) {
        rc = llsmtp_server_feed(s, in + off, n - off, &used);
        off += used;
        if (rc != LLSMTP_BLOCKED)
            return rc;
        th_drain(s, h);
        if (off == n)
            return llsmtp_server_feed(s, in + off, 0, &used);
    }
}

/* LMTP: the per-recipient replies of an accepted message do not fit the
 * output queue; the client then closes, or the host times out or shuts
 * down. on_data_end accepted the message: it must never be aborted. */
static void
test_lmtp_blocked_then_closed(void **state)
{
    th_buf env = {0};
    int how;
    (void)state;
    th_buf_adds(&env, "LHLO x\r\nMAIL FROM:<a@b.test>\r\n");
    for (how = 0; how < 150; how++) {
        char line[64];
        snprintf(line, sizeof line, "RCPT TO:<u%d@x.test>\r\n", how);
        th_buf_adds(&env, line);
    }
    th_buf_adds(&env, "DATA\r\nhello\r\n");
    for (how = 0; how < 3; how++) {
        llsmtp_config cfg = cfg_default(&th_callbacks);
        th_host h;
        llsmtp_server *s;
        size_t used, olen;
        int rc;
        cfg.flags |= LLSMTP_CFG_LMTP;
        memset(&h, 0, sizeof h);
        s = th_session(&cfg, &h);
        assert_int_equal(llsmtp_server_start(s), LLSMTP_OK);
        assert_int_equal(feed_all_drained(s, &h, env.p, env.n), LLSMTP_OK);
        th_drain(s, &h);
        /* 150 replies of 36 bytes: more than the queue holds */
        assert_int_equal(feed_str(s, ".\r\n", &used), LLSMTP_BLOCKED);
        assert_int_equal(used, 3);
        assert_non_null(strstr(h.events.p, "data_end hello\\r\\n\n"));
        th_output(s, &olen);
        assert_true(olen > 0);
        rc = how == 0   ? llsmtp_server_eof(s)
             : how == 1 ? llsmtp_server_timeout_expired(s)
                        : llsmtp_server_shutdown(s, NULL);
        assert_int_equal(rc, LLSMTP_CLOSE);
        assert_null(strstr(h.events.p, "abort"));
        free(s);
        th_host_free(&h);
    }
    th_buf_free(&env);
}

/* LMTP replies that wait for room are queued by consume itself: draining
 * the output is all a host does, no zero-byte feed; wants() says WRITE
 * until the last of them is out. */
static void
test_lmtp_replies_follow_consume(void **state)
{
    th_buf env = {0};
    llsmtp_config cfg = cfg_default(&th_callbacks);
    th_host h;
    llsmtp_server *s;
    size_t used, rounds = 0;
    int i;
    (void)state;
    th_buf_adds(&env, "LHLO x\r\nMAIL FROM:<a@b.test>\r\n");
    for (i = 0; i < 150; i++) {
        char line[64];
        snprintf(line, sizeof line, "RCPT TO:<u%d@x.test>\r\n", i);
        th_buf_adds(&env, line);
    }
    th_buf_adds(&env, "DATA\r\nhello\r\n");
    cfg.flags |= LLSMTP_CFG_LMTP;
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    assert_int_equal(llsmtp_server_wants(s), 0); /* start comes first */
    assert_int_equal(llsmtp_server_start(s), LLSMTP_OK);
    assert_int_equal(feed_all_drained(s, &h, env.p, env.n), LLSMTP_OK);
    th_drain(s, &h);
    assert_int_equal(llsmtp_server_wants(s), LLSMTP_WANT_READ);
    assert_int_equal(feed_str(s, ".\r\n", &used), LLSMTP_BLOCKED);
    assert_int_equal(used, 3);
    while (llsmtp_server_wants(s) & LLSMTP_WANT_WRITE) {
        llsmtp_span o = llsmtp_server_output(s);
        assert_true(o.n > 0);
        th_buf_add(&h.out, o.p, o.n);
        rounds++;
        assert_true(llsmtp_server_consume(s, o.n) >= 0);
    }
    assert_true(rounds > 1); /* they did not fit at once */
    assert_int_equal(llsmtp_server_wants(s), LLSMTP_WANT_READ);
    /* one "250 2.6.0" per recipient, none lost, none twice */
    {
        size_t k = 0;
        const char *p = h.out.p, *end = h.out.p + h.out.n;
        while ((p = (const char *)memchr(p, '2', (size_t)(end - p))) != NULL) {
            if ((size_t)(end - p) >= 9 && memcmp(p, "250 2.6.0", 9) == 0)
                k++;
            p++;
        }
        assert_int_equal(k, 150);
    }
    free(s);
    th_host_free(&h);
    th_buf_free(&env);
}

/* A deciding callback that sets a reply and then defers: the reply would
 * be lost at resume, so the session fails at once (421, failed_cb). */
static int
reply_then_defer(llsmtp_server *s, const llsmtp_path *to,
                 const llsmtp_params *ps, llsmtp_reply *r)
{
    (void)s;
    (void)to;
    (void)ps;
    llsmtp_reply_set(r, 550, "5.1.1", "No such user");
    return LLSMTP_PAUSED;
}

static int
id_then_defer(llsmtp_server *s, llsmtp_reply *r)
{
    (void)s;
    llsmtp_reply_set_id(r, "ABC", 3);
    return LLSMTP_PAUSED;
}

static void
test_defer_with_a_reply_fails(void **state)
{
    llsmtp_callbacks cb;
    llsmtp_config cfg;
    llsmtp_server *s;
    size_t used, n;
    const char *o;
    (void)state;
    memset(&cb, 0, sizeof cb);
    cb.on_rcpt = reply_then_defer;
    cfg = cfg_default(&cb);
    s = (llsmtp_server *)malloc(llsmtp_server_size(&cfg));
    assert_non_null(
        llsmtp_server_init(s, llsmtp_server_size(&cfg), &cfg, NULL));
    llsmtp_server_start(s);
    assert_int_equal(
        feed_str(s, "HELO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n",
                 &used),
        LLSMTP_E_CALLBACK);
    assert_string_equal(llsmtp_server_failed_cb(s), "on_rcpt");
    assert_int_equal(llsmtp_server_pending(s), LLSMTP_PENDING_NONE);
    assert_int_equal(llsmtp_server_wants(s),
                     LLSMTP_WANT_WRITE | LLSMTP_WANT_CLOSE);
    o = th_output(s, &n);
    assert_true(th_contains(o, n, "421 4.3.0"));
    assert_false(th_contains(o, n, "550"));
    /* the queue id too: set before deferring, it would vanish */
    memset(&cb, 0, sizeof cb);
    cb.on_data_end = id_then_defer;
    assert_non_null(
        llsmtp_server_init(s, llsmtp_server_size(&cfg), &cfg, NULL));
    llsmtp_server_start(s);
    assert_int_equal(feed_str(s,
                              "HELO x\r\nMAIL FROM:<a@b.c>\r\nRCPT "
                              "TO:<d@e.f>\r\nDATA\r\nx\r\n.\r\n",
                              &used),
                     LLSMTP_E_CALLBACK);
    assert_string_equal(llsmtp_server_failed_cb(s), "on_data_end");
    free(s);
}

/* A deferred decision's argument stays readable until it is delivered;
 * a decision that can never be delivered is cancelled, once, and said. */
static int cancels, cancel_kind;

static void
count_cancel(llsmtp_server *s, int pending)
{
    (void)s;
    cancels++;
    cancel_kind = pending;
}

static int
defer_rcpt(llsmtp_server *s, const llsmtp_path *to, const llsmtp_params *ps,
           llsmtp_reply *r)
{
    (void)s;
    (void)to;
    (void)ps;
    (void)r;
    return LLSMTP_PAUSED;
}

static void
test_pending_arg_and_cancel(void **state)
{
    llsmtp_callbacks cb;
    llsmtp_config cfg;
    llsmtp_server *s;
    size_t used, sz;
    int how;
    (void)state;
    memset(&cb, 0, sizeof cb);
    cb.on_rcpt = defer_rcpt;
    cb.on_cancel = count_cancel;
    cfg = cfg_default(&cb);
    cfg.extensions |= LLSMTP_EXT_DSN; /* NOTIFY= after the path */
    sz = llsmtp_server_size(&cfg);
    s = (llsmtp_server *)malloc(sz);
    for (how = 0; how < 5; how++) {
        llsmtp_span a;
        char scribble[] = "RCPT TO:<\"x y\"@far.example> NOTIFY=NEVER\r\n";
        assert_non_null(llsmtp_server_init(s, sz, &cfg, NULL));
        llsmtp_server_start(s);
        (void)llsmtp_server_consume(s, llsmtp_server_output(s).n);
        assert_int_equal(feed_str(s, "HELO x\r\nMAIL FROM:<a@b.c>\r\n", &used),
                         LLSMTP_OK);
        assert_int_equal(llsmtp_server_feed(s, scribble, strlen(scribble),
                                            &used),
                         LLSMTP_PAUSED);
        memset(scribble, 'Z', sizeof scribble - 1); /* the host's buffer */
        assert_int_equal(llsmtp_server_pending(s), LLSMTP_PENDING_RCPT);
        assert_true(llsmtp_server_wants(s) & LLSMTP_WANT_RESUME);
        assert_false(llsmtp_server_wants(s) & LLSMTP_WANT_READ);
        a = llsmtp_server_pending_arg(s);
        assert_int_equal(a.n, strlen("\"x y\"@far.example"));
        assert_memory_equal(a.p, "\"x y\"@far.example", a.n);
        cancels = 0;
        if (how == 0) { /* delivered: no cancellation */
            assert_int_equal(llsmtp_server_resume(s, NULL), LLSMTP_OK);
            assert_int_equal(llsmtp_server_pending_arg(s).n, 0);
            assert_int_equal(llsmtp_server_eof(s), LLSMTP_CLOSE);
            assert_int_equal(cancels, 0);
            continue;
        }
        if (how == 1)
            assert_int_equal(llsmtp_server_eof(s), LLSMTP_CLOSE);
        else if (how == 2)
            assert_int_equal(llsmtp_server_timeout_expired(s), LLSMTP_CLOSE);
        else if (how == 3)
            assert_int_equal(llsmtp_server_shutdown(s, NULL), LLSMTP_CLOSE);
        else
            assert_int_equal(llsmtp_server_reset(s), LLSMTP_OK);
        assert_int_equal(cancels, 1);
        assert_int_equal(cancel_kind, LLSMTP_PENDING_RCPT);
        assert_int_equal(llsmtp_server_pending(s), LLSMTP_PENDING_NONE);
        assert_int_equal(llsmtp_server_pending_arg(s).n, 0);
        assert_true(llsmtp_server_resume(s, NULL) == LLSMTP_CLOSE ||
                    llsmtp_server_resume(s, NULL) == LLSMTP_E_STATE);
        if (how != 4)
            assert_true(llsmtp_server_wants(s) & LLSMTP_WANT_CLOSE);
        (void)llsmtp_server_eof(s);
        assert_int_equal(cancels, 1); /* once */
    }
    free(s);
}

/* Structs from a header the library does not take are refused by name. */
static void
test_versioned_structs(void **state)
{
    llsmtp_config cfg;
    const char *why = NULL;
    (void)state;
    assert_int_equal(llsmtp_config_init(&cfg), LLSMTP_OK);
    assert_int_equal(llsmtp_config_check(&cfg, &why), LLSMTP_OK);
    assert_null(why);
    /* a newer header's bigger struct, another major, another callbacks
     * size: refused, and the struct stays refused */
    assert_int_equal(llsmtp_config_init_(&cfg, LLSMTP_VERSION_NUM,
                                         sizeof cfg + 8,
                                         sizeof(llsmtp_callbacks)),
                     LLSMTP_E_VERSION);
    assert_int_equal(llsmtp_config_check(&cfg, &why), LLSMTP_E_VERSION);
    assert_non_null(strstr(why, "abi"));
    assert_int_equal(llsmtp_server_size(&cfg), 0);
    assert_int_equal(llsmtp_config_init_(&cfg, LLSMTP_VERSION_NUM + 0x10000,
                                         sizeof cfg, sizeof(llsmtp_callbacks)),
                     LLSMTP_E_VERSION);
    assert_int_equal(llsmtp_server_size(&cfg), 0);
    assert_int_equal(llsmtp_config_init_(&cfg, LLSMTP_VERSION_NUM, sizeof cfg,
                                         sizeof(llsmtp_callbacks) + 8),
                     LLSMTP_E_VERSION);
    assert_int_equal(llsmtp_server_size(&cfg), 0);
    /* filled by hand, no init: no tag */
    memset(&cfg, 0, sizeof cfg);
    cfg.hostname = "mx.example.test";
    cfg.max_line = 512;
    cfg.max_rcpt = 100;
    assert_int_equal(llsmtp_config_check(&cfg, NULL), LLSMTP_E_VERSION);
    assert_int_equal(llsmtp_server_size(&cfg), 0);
#ifndef LLSMTP_NO_RELAY
    {
        llsmtp_relay_policy p;
        llsmtp_path to;
        size_t end;
        assert_int_equal(llsmtp_relay_policy_init(&p), LLSMTP_OK);
        assert_int_equal(llsmtp_path_parse("<a@b.c>", 7, 0, &to, &end),
                         LLSMTP_OK);
        assert_int_equal(llsmtp_relay_check(&p, NULL, 0, &to),
                         LLSMTP_RELAY_DENIED);
        llsmtp_config_init(&cfg);
        cfg.relay = &p;
        assert_int_equal(llsmtp_config_check(&cfg, NULL), LLSMTP_OK);
        assert_int_equal(llsmtp_relay_policy_init_(&p, LLSMTP_VERSION_NUM,
                                                   sizeof p + 4),
                         LLSMTP_E_VERSION);
        assert_int_equal(llsmtp_relay_check(&p, NULL, 0, &to),
                         LLSMTP_E_VERSION);
        assert_int_equal(llsmtp_config_check(&cfg, &why), LLSMTP_E_VERSION);
        assert_non_null(strstr(why, "relay"));
    }
#endif
}

/* A client that pipelines BDAT chunks (or DATA) and never reads its
 * replies: whenever wants() says READ, feed takes bytes; once the queue
 * is full it says WRITE and not READ, so a host neither spins nor grows. */
static void
test_wants_read_means_progress(void **state)
{
    int round;
    (void)state;
    for (round = 0; round < 2; round++) {
        llsmtp_config cfg = cfg_default(NULL);
        th_buf in = {0};
        llsmtp_server *s;
        size_t off = 0, used, i;
        unsigned w;
        cfg.extensions |= LLSMTP_EXT_CHUNKING;
        s = (llsmtp_server *)malloc(llsmtp_server_size(&cfg));
        assert_non_null(
            llsmtp_server_init(s, llsmtp_server_size(&cfg), &cfg, NULL));
        th_buf_adds(&in, "EHLO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n");
        for (i = 0; i < 300; i++)
            th_buf_adds(&in, round == 0 ? "BDAT 10\r\n0123456789"
                                        : "DATA\r\nx\r\n.\r\nMAIL FROM:<a@b.c>"
                                          "\r\nRCPT TO:<d@e.f>\r\n");
        llsmtp_server_start(s);
        while (((w = llsmtp_server_wants(s)) & LLSMTP_WANT_READ) &&
               off < in.n) {
            int rc = llsmtp_server_feed(s, in.p + off, in.n - off, &used);
            assert_true(rc >= 0);
            assert_true(used > 0); /* READ: bytes taken */
            off += used;
        }
        assert_true(off < in.n);            /* it stopped reading */
        assert_true(w & LLSMTP_WANT_WRITE); /* to have its replies read */
        assert_false(w & LLSMTP_WANT_READ);
        free(s);
        th_buf_free(&in);
    }
}

/* LLSMTP_CFG_LENT_OUTPUT: the session holds no output queue; the calls
 * that may queue a reply refuse to run without a loan; the loan comes
 * back only when every byte was written, and survives a reset. */
static void
test_lent_output(void **state)
{
    llsmtp_config cfg = cfg_default(NULL);
    size_t own = llsmtp_server_size(&cfg), sz, lsz, used;
    char *a, *b;
    llsmtp_server *s;
    llsmtp_span o;
    (void)state;
    cfg.flags |= LLSMTP_CFG_LENT_OUTPUT;
    sz = llsmtp_server_size(&cfg);
    lsz = llsmtp_server_lend_size(&cfg);
    print_message("session size with lent output: %zu bytes\n", sz);
    assert_true(sz + lsz <= own + 64 && sz < 1024);
    s = (llsmtp_server *)malloc(sz);
    a = (char *)malloc(lsz);
    b = (char *)malloc(lsz + 100);
    assert_non_null(llsmtp_server_init(s, sz, &cfg, NULL));
    assert_int_equal(llsmtp_server_start(s), LLSMTP_E_STATE); /* no loan */
    assert_null(llsmtp_server_reclaim(s));
    assert_int_equal(llsmtp_server_lend(s, a, lsz - 1), LLSMTP_E_INVAL);
    assert_int_equal(llsmtp_server_lend(s, NULL, lsz), LLSMTP_E_INVAL);
    assert_int_equal(llsmtp_server_lend(s, a, lsz), LLSMTP_OK);
    assert_int_equal(llsmtp_server_lend(s, a, lsz), LLSMTP_OK); /* again */
    assert_int_equal(llsmtp_server_lend(s, b, lsz), LLSMTP_E_STATE);
    assert_int_equal(llsmtp_server_start(s), LLSMTP_OK);
    o = llsmtp_server_output(s);
    assert_true(o.p == a && o.n > 0);      /* the greeting, in the loan */
    assert_null(llsmtp_server_reclaim(s)); /* not written yet */
    assert_int_equal(llsmtp_server_consume(s, o.n - 1), LLSMTP_OK);
    assert_null(llsmtp_server_reclaim(s));
    assert_int_equal(llsmtp_server_consume(s, 1), LLSMTP_OK);
    assert_ptr_equal(llsmtp_server_reclaim(s), a);
    assert_null(llsmtp_server_reclaim(s));
    assert_int_equal(feed_str(s, "NOOP\r\n", &used), LLSMTP_E_STATE);
    assert_int_equal(used, 0);
    assert_int_equal(llsmtp_server_wants(s), LLSMTP_WANT_READ);
    assert_int_equal(llsmtp_server_lend(s, b, lsz + 100), LLSMTP_OK);
    assert_int_equal(feed_str(s, "NOOP\r\n", &used), LLSMTP_OK);
    o = llsmtp_server_output(s);
    assert_true(o.p == b && th_contains(o.p, o.n, "250 2.0.0"));
    assert_int_equal(llsmtp_server_reset(s), LLSMTP_OK); /* bytes dropped */
    assert_int_equal(llsmtp_server_output(s).n, 0);
    assert_ptr_equal(llsmtp_server_reclaim(s), b);
    /* without a loan a timeout closes without its 421 */
    assert_int_equal(llsmtp_server_lend(s, a, lsz), LLSMTP_OK);
    assert_int_equal(llsmtp_server_start(s), LLSMTP_OK);
    (void)llsmtp_server_consume(s, llsmtp_server_output(s).n);
    assert_ptr_equal(llsmtp_server_reclaim(s), a);
    assert_int_equal(llsmtp_server_timeout_expired(s), LLSMTP_CLOSE);
    assert_int_equal(llsmtp_server_output(s).n, 0);
    assert_int_equal(llsmtp_server_wants(s), LLSMTP_WANT_CLOSE);
    /* not in this mode: nothing to lend */
    cfg.flags &= ~(unsigned)LLSMTP_CFG_LENT_OUTPUT;
    free(s);
    s = (llsmtp_server *)malloc(own);
    assert_non_null(llsmtp_server_init(s, own, &cfg, NULL));
    assert_int_equal(llsmtp_server_lend(s, a, lsz), LLSMTP_E_STATE);
    assert_null(llsmtp_server_reclaim(s));
    free(s);
    free(a);
    free(b);
}

/* A callback leaves an impossible reply code: the session fails, but the
 * client still hears 421 before the close, and a later shutdown neither
 * aborts the message again nor queues a second farewell. */
static int
bad_code_on_data_end(llsmtp_server *s, llsmtp_reply *r)
{
    th_event(TH_HOST(s), "data_end", NULL, 0);
    r->code = 999;
    return LLSMTP_OK;
}

static void
test_callback_bad_code_closes_with_421(void **state)
{
    llsmtp_callbacks cb = th_callbacks;
    llsmtp_config cfg;
    th_host h;
    llsmtp_server *s;
    size_t used, olen;
    const char *out;
    (void)state;
    cb.on_data_end = bad_code_on_data_end;
    cfg = cfg_default(&cb);
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    llsmtp_server_start(s);
    th_drain(s, &h);
    assert_int_equal(feed_str(s,
                              "HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b.c>"
                              "\r\nDATA\r\nhi\r\n.\r\n",
                              &used),
                     LLSMTP_E_CALLBACK);
    assert_string_equal(llsmtp_server_failed_cb(s), "on_data_end");
    out = th_output(s, &olen);
    assert_true(olen > 0);
    assert_true(th_contains(out, olen,
                            "354 Start mail input; end with <CRLF>.<CRLF>\r\n"
                            "421 4.3.0 mx.example.test Service not "
                            "available, closing transmission channel\r\n"));
    assert_int_equal(llsmtp_server_shutdown(s, NULL), LLSMTP_CLOSE);
    assert_int_equal(llsmtp_server_eof(s), LLSMTP_CLOSE);
    th_output(s, &used);
    assert_int_equal(used, olen); /* nothing more queued */
    assert_string_equal(h.events.p, "connect\nhelo x\nmail <>\nrcpt <a@b.c>\n"
                                    "data_start\ndata_end\nabort closed\n");
    assert_int_equal(feed_str(s, "NOOP\r\n", &used), LLSMTP_E_CALLBACK);
    free(s);
    th_host_free(&h);
}

/* on_data pauses on a BDAT chunk's last octet; everything has been fed.
 * The chunk's reply must not wait for input the client will not send. */
static void
test_bdat_paused_last_octet(void **state)
{
    static const char env[] = "EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b.c>\r\n";
    th_host h;
    llsmtp_config cfg = cfg_default(&th_callbacks);
    llsmtp_server *s;
    size_t used;
    int last;
    (void)state;
    cfg.extensions |= LLSMTP_EXT_CHUNKING;
    for (last = 0; last < 2; last++) {
        memset(&h, 0, sizeof h);
        snprintf(h.rules[0].kind, sizeof h.rules[0].kind, "data");
        snprintf(h.rules[0].match, sizeof h.rules[0].match, "*");
        h.rules[0].pause = 1;
        h.nrules = 1;
        s = th_session(&cfg, &h);
        llsmtp_server_start(s);
        assert_int_equal(feed_str(s, env, &used), LLSMTP_OK);
        th_drain(s, &h);
        h.out.n = 0; /* only the chunk's reply is of interest */
        assert_int_equal(
            feed_str(s, last ? "BDAT 3 LAST\r\nabc" : "BDAT 3\r\nabc", &used),
            LLSMTP_PAUSED);
        assert_int_equal(used, last ? 16 : 11);
        assert_int_equal(llsmtp_server_pending(s), LLSMTP_PENDING_DATA);
        assert_int_equal(llsmtp_server_resume(s, NULL), LLSMTP_OK);
        /* the header's advice: feed the rest, here zero bytes */
        assert_int_equal(llsmtp_server_feed(s, "", 0, &used), LLSMTP_OK);
        th_drain(s, &h);
        th_buf_add(&h.out, "", 0);
        assert_string_equal(h.out.p, last ? "250 2.6.0 Queued mail for "
                                            "delivery\r\n"
                                          : "250 2.0.0 3 octets received\r\n");
        free(s);
        th_host_free(&h);
    }
}

/* A chunk that cannot fit under max_size is refused from its BDAT line:
 * none of it reaches on_data, however the bytes are split. */
static int bdat_over_octets;
static int
count_on_data(llsmtp_server *s, const char *p, size_t n)
{
    (void)s;
    (void)p;
    bdat_over_octets += (int)n;
    return LLSMTP_OK;
}

static void
test_bdat_over_limit_not_delivered(void **state)
{
    static const char in[] = "EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b.c>\r\n"
                             "BDAT 6\r\n123456BDAT 6 LAST\r\n789012NOOP\r\n";
    llsmtp_callbacks cb = th_callbacks;
    llsmtp_config cfg;
    th_host h;
    llsmtp_server *s;
    size_t i, used;
    (void)state;
    cb.on_data = count_on_data;
    cfg = cfg_default(&cb);
    cfg.extensions |= LLSMTP_EXT_CHUNKING;
    cfg.max_size = 10;
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    llsmtp_server_start(s);
    bdat_over_octets = 0;
    for (i = 0; i < sizeof in - 1; i++) {
        assert_int_equal(llsmtp_server_feed(s, in + i, 1, &used), LLSMTP_OK);
        assert_int_equal(used, 1);
    }
    th_drain(s, &h);
    assert_int_equal(bdat_over_octets, 6);
    assert_non_null(strstr(h.out.p, "250 2.0.0 6 octets received\r\n"
                                    "552 5.3.4 Message size exceeds fixed "
                                    "maximum message size\r\n"
                                    "250 2.0.0 OK\r\n"));
    assert_non_null(strstr(h.events.p, "abort size\n"));
    free(s);
    th_host_free(&h);
}

/* RFC 5321 4.5.3.1.8: a client pipelining more recipients than max_rcpt
 * gets 452 for the rest and retries them later; that is not a bad
 * command, so it never counts towards max_errors (no 421). */
static void
test_452_not_an_error(void **state)
{
    llsmtp_callbacks cb = th_callbacks;
    llsmtp_config cfg;
    th_host h;
    llsmtp_server *s;
    size_t i, used;
    char line[64];
    (void)state;
    cfg = cfg_default(&cb);
    cfg.max_rcpt = 100;
    cfg.max_errors = 3;
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    llsmtp_server_start(s);
    assert_int_equal(feed_str(s, "EHLO x\r\nMAIL FROM:<a@b.example>\r\n",
                              &used),
                     LLSMTP_OK);
    th_drain(s, &h);
    for (i = 0; i < 110; i++) {
        snprintf(line, sizeof line, "RCPT TO:<r%zu@b.example>\r\n", i);
        assert_int_equal(feed_str(s, line, &used), LLSMTP_OK);
        th_drain(s, &h);
    }
    assert_int_equal(feed_str(s, "NOOP\r\n", &used), LLSMTP_OK);
    th_drain(s, &h);
    assert_int_equal(llsmtp_server_rcpt_count(s), 100);
    assert_null(strstr(h.out.p, "421"));
    assert_non_null(strstr(h.out.p, "452 4.5.3 Too many recipients\r\n"
                                    "250 2.0.0 OK\r\n"));
    free(s);
    th_host_free(&h);
}

/* The decision-kind table is indexed by enum llsmtp_pending: its rows
 * must be in enum order, one per value (C++ has no designated array
 * initialisers to say so in the table itself). */
static void
test_kind_table_in_enum_order(void **state)
{
    static const char *const names[] = {
        "none",    "on_connect",    "on_helo", "on_mail_from",
        "on_rcpt", "on_data_start", "on_data", "on_data_end",
        "on_rset", "on_vrfy",       "on_expn", "on_help",
        "on_turn", "on_quit",       "on_auth", "on_starttls",
        "on_etrn"};
    size_t i;
    const char *cb = NULL;
    (void)state;
    for (i = 0; llsmtp__server_kind_row(i, &cb) >= 0; i++) {
        assert_int_equal(llsmtp__server_kind_row(i, NULL), (int)i);
        assert_true(i < sizeof names / sizeof names[0]);
        assert_string_equal(cb, names[i]);
    }
    assert_int_equal(i, LLSMTP_PENDING_ETRN + 1);
    assert_int_equal(i, sizeof names / sizeof names[0]);
}

/* Each verb has one row of the command table. */
static void
test_cmd_table_verbs_unique(void **state)
{
    size_t i, j;
    (void)state;
    assert_non_null(llsmtp__server_cmd_row(0));
    for (i = 0; llsmtp__server_cmd_row(i) != NULL; i++)
        for (j = i + 1; llsmtp__server_cmd_row(j) != NULL; j++)
            assert_true(strcmp(llsmtp__server_cmd_row(i),
                               llsmtp__server_cmd_row(j)) != 0);
}

/* The figures the README quotes about session memory, printed for
 * tools/doc-check (make doc-check), which compares them with the README's
 * text: the defaults (test_memory_size) and lent output (test_lent_output)
 * are printed there; this adds AUTH on, whose line buffer grows to
 * max_auth_line plus room for an AUTH LOGIN user name. */
static void
test_readme_memory_figures(void **state)
{
    llsmtp_config cfg = cfg_default(NULL);
    size_t plain = llsmtp_server_size(&cfg), sz;
    (void)state;
    cfg.extensions |= LLSMTP_EXT_AUTH;
    sz = llsmtp_server_size(&cfg);
    print_message("session size with AUTH: %zu bytes\n", sz);
    assert_true(sz >= plain - cfg.max_line + cfg.max_auth_line);
}

/* ---- after the adversarial review: one test per defect it found -------- */

static int rv_tls_on, rv_injected, rv_cancels;

static int
rv_defer_starttls(llsmtp_server *s, llsmtp_reply *r)
{
    (void)s;
    (void)r;
    return LLSMTP_PAUSED;
}

static int
rv_count_mail(llsmtp_server *s, const llsmtp_path *p, const llsmtp_params *ps,
              llsmtp_reply *r)
{
    (void)s;
    (void)p;
    (void)ps;
    (void)r;
    if (rv_tls_on)
        rv_injected++;
    return LLSMTP_OK;
}

/* CVE-2011-0411 through a deferral: a paused on_starttls used to leave
 * the commands read in the clear behind STARTTLS for the host to feed
 * again, and a host driven by wants() ran them inside the TLS session.
 * The rest of the read goes as it does without a deferral. */
static void
test_deferred_starttls_drops_the_rest_of_its_read(void **state)
{
    llsmtp_callbacks cb = {0};
    llsmtp_config cfg = cfg_default(&cb);
    th_host h;
    llsmtp_server *s;
    const char *rd = "STARTTLS\r\nEHLO evil.example\r\n"
                     "MAIL FROM:<injected@attacker.example>\r\n";
    size_t off = 0, len = strlen(rd), used;
    int guard;
    (void)state;
    memset(&cb, 0, sizeof cb);
    cb.on_starttls = rv_defer_starttls;
    cb.on_mail_from = rv_count_mail;
    cfg.extensions |= LLSMTP_EXT_STARTTLS;
    memset(&h, 0, sizeof h);
    rv_tls_on = rv_injected = 0;
    s = th_session(&cfg, &h);
    assert_int_equal(llsmtp_server_start(s), LLSMTP_OK);
    assert_int_equal(feed_str(s, "EHLO c.example\r\n", &used), LLSMTP_OK);
    th_drain(s, &h);
    /* the host loop of the header: write, close, TLS, resume, read */
    for (guard = 0; guard < 50; guard++) {
        unsigned w = llsmtp_server_wants(s);
        if (w & LLSMTP_WANT_WRITE) {
            th_drain(s, &h);
        } else if (w & LLSMTP_WANT_CLOSE) {
            break;
        } else if (w & LLSMTP_WANT_TLS) {
            assert_int_equal(llsmtp_server_tls_started(s), LLSMTP_OK);
            rv_tls_on = 1;
        } else if (w & LLSMTP_WANT_RESUME) {
            (void)llsmtp_server_resume(s, NULL);
        } else if ((w & LLSMTP_WANT_READ) && off < len) {
            (void)llsmtp_server_feed(s, rd + off, len - off, &used);
            off += used;
        } else {
            break;
        }
    }
    assert_true(rv_tls_on);
    assert_int_equal(rv_injected, 0);
    free(s);
    th_host_free(&h);
}

/* The relay verdict failed open: an error from llsmtp_relay_check (a
 * policy re-filled in place after llsmtp_relay_policy_init, so untagged)
 * was taken as "not denied" and the foreign recipient accepted. */
static void
test_relay_verdict_fails_closed(void **state)
{
    static const char *const local[] = {"here.example"};
    int variant;
    (void)state;
    for (variant = 0; variant < 2; variant++) {
        static llsmtp_relay_policy pol;
        llsmtp_config cfg = cfg_default(NULL);
        th_host h;
        llsmtp_server *s;
        size_t used;
        llsmtp_relay_policy_init(&pol);
        pol.local_domains = local;
        pol.nlocal = 1;
        cfg.relay = &pol;
        memset(&h, 0, sizeof h);
        s = th_session(&cfg, &h);
        if (variant) { /* the host reloads its policy field by field */
            memset(&pol, 0, sizeof pol);
            pol.local_domains = local;
            pol.nlocal = 1;
            pol.deny_code = 550;
            pol.deny_enhanced = "5.7.1";
        }
        (void)llsmtp_server_start(s);
        (void)feed_str(s,
                       "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n"
                       "RCPT TO:<victim@elsewhere.example>\r\n",
                       &used);
        th_drain(s, &h);
        assert_false(th_contains(h.out.p, h.out.n,
                                 "Recipient <victim@elsewhere.example> OK"));
        assert_int_equal(llsmtp_server_rcpt_count(s), 0);
        free(s);
        th_host_free(&h);
    }
}

static int
rv_defer_data_end(llsmtp_server *s, llsmtp_reply *r)
{
    (void)s;
    (void)r;
    return LLSMTP_PAUSED;
}

static int
rv_failing_abort(llsmtp_server *s, int why)
{
    (void)s;
    (void)why;
    return LLSMTP_E_CALLBACK; /* e.g. unlinking the spool file failed */
}

static void
rv_count_cancel(llsmtp_server *s, int kind)
{
    (void)s;
    assert_int_equal(kind, LLSMTP_PENDING_DATA_END);
    rv_cancels++;
}

/* eof, timeout_expired and shutdown returned early when on_data_abort
 * failed: the pending decision was never cancelled (no on_cancel, the
 * host's job kept pointing at a session about to be freed) and the
 * session did not close. (test_trust.c checks the AUTH line is wiped on
 * the same path.) */
static void
test_cancel_and_wipe_when_abort_fails(void **state)
{
    int how;
    (void)state;
    for (how = 0; how < 3; how++) {
        llsmtp_callbacks cb = {0};
        llsmtp_config cfg = cfg_default(&cb);
        th_host h;
        llsmtp_server *s;
        size_t used;
        memset(&cb, 0, sizeof cb);
        cb.on_data_end = rv_defer_data_end;
        cb.on_data_abort = rv_failing_abort;
        cb.on_cancel = rv_count_cancel;
        memset(&h, 0, sizeof h);
        rv_cancels = 0;
        s = th_session(&cfg, &h);
        (void)llsmtp_server_start(s);
        (void)feed_str(s,
                       "EHLO a\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n"
                       "DATA\r\n",
                       &used);
        th_drain(s, &h);
        assert_int_equal(feed_str(s, "x\r\n.\r\n", &used), LLSMTP_PAUSED);
        (void)(how == 0   ? llsmtp_server_eof(s)
               : how == 1 ? llsmtp_server_timeout_expired(s)
                          : llsmtp_server_shutdown(s, NULL));
        assert_int_equal(rv_cancels, 1);
        assert_int_equal(llsmtp_server_pending(s), LLSMTP_PENDING_NONE);
        assert_true(llsmtp_server_wants(s) & LLSMTP_WANT_CLOSE);
        free(s);
        th_host_free(&h);
    }
}

/* output_size was never checked: near SIZE_MAX it passed config_check
 * and llsmtp_server_size wrapped to a few hundred octets, so the
 * greeting was written past the end of the host's allocation. */
static void
test_output_size_bounded(void **state)
{
    llsmtp_config cfg = cfg_default(NULL);
    const char *why = NULL;
    size_t sz;
    int rc;
    (void)state;
    cfg.output_size = SIZE_MAX - 100;
    rc = llsmtp_config_check(&cfg, &why);
    sz = llsmtp_server_size(&cfg);
    assert_true(rc != LLSMTP_OK || sz > cfg.output_size);
    assert_true(sz == 0 || sz > cfg.output_size);
}

static int
rv_defer_span(llsmtp_server *s, llsmtp_span a, llsmtp_reply *r)
{
    (void)s;
    (void)a;
    (void)r;
    return LLSMTP_PAUSED;
}

/* pending_arg is documented for VRFY, EXPN, HELP and ETRN, but only
 * ETRN's argument was kept: a deferred VRFY had nothing to look up. */
static void
test_pending_arg_vrfy_expn_help(void **state)
{
    static const struct {
        const char *line, *arg;
        int kind;
    } t[] = {{"VRFY someone@here.example\r\n", "someone@here.example",
              LLSMTP_PENDING_VRFY},
             {"EXPN staff\r\n", "staff", LLSMTP_PENDING_EXPN},
             {"HELP MAIL\r\n", "MAIL", LLSMTP_PENDING_HELP},
             {"ETRN here.example\r\n", "here.example", LLSMTP_PENDING_ETRN}};
    llsmtp_callbacks cb = {0};
    llsmtp_config cfg = cfg_default(&cb);
    th_host h;
    llsmtp_server *s;
    size_t used, i;
    (void)state;
    memset(&cb, 0, sizeof cb);
    cb.on_vrfy = cb.on_expn = cb.on_help = cb.on_etrn = rv_defer_span;
    cfg.extensions |= LLSMTP_EXT_ETRN;
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    (void)llsmtp_server_start(s);
    assert_int_equal(feed_str(s, "EHLO c.example\r\n", &used), LLSMTP_OK);
    th_drain(s, &h);
    for (i = 0; i < sizeof t / sizeof t[0]; i++) {
        llsmtp_span a;
        assert_int_equal(feed_str(s, t[i].line, &used), LLSMTP_PAUSED);
        assert_int_equal(llsmtp_server_pending(s), t[i].kind);
        a = llsmtp_server_pending_arg(s);
        assert_int_equal(a.n, strlen(t[i].arg));
        assert_memory_equal(a.p, t[i].arg, a.n);
        assert_int_equal(llsmtp_server_resume(s, NULL), LLSMTP_OK);
        th_drain(s, &h);
    }
    free(s);
    th_host_free(&h);
}

static int
rv_failing_rcpt(llsmtp_server *s, const llsmtp_path *p,
                const llsmtp_params *ps, llsmtp_reply *r)
{
    (void)s;
    (void)p;
    (void)ps;
    (void)r;
    return LLSMTP_E_CALLBACK;
}

/* consume returned OK for a failed or closed session while feed said
 * E_CALLBACK or CLOSE: a host driven by statuses that wrote the 421 or
 * the 221 with consume was told to go on. */
static void
test_consume_reports_close_and_failure(void **state)
{
    static const char *const in[] = {
        "EHLO a\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n", "QUIT\r\n"};
    static const int want[] = {LLSMTP_E_CALLBACK, LLSMTP_CLOSE};
    int i;
    (void)state;
    for (i = 0; i < 2; i++) {
        llsmtp_callbacks cb = {0};
        llsmtp_config cfg = cfg_default(&cb);
        th_host h;
        llsmtp_server *s;
        llsmtp_span o;
        size_t used;
        memset(&cb, 0, sizeof cb);
        cb.on_rcpt = rv_failing_rcpt;
        memset(&h, 0, sizeof h);
        s = th_session(&cfg, &h);
        (void)llsmtp_server_start(s);
        th_drain(s, &h);
        assert_int_equal(feed_str(s, in[i], &used), want[i]);
        o = llsmtp_server_output(s);
        assert_true(o.n > 0);
        assert_int_equal(llsmtp_server_consume(s, o.n), want[i]);
        free(s);
        th_host_free(&h);
    }
}

static int
rv_lmtp_421_first(llsmtp_server *s, size_t i, llsmtp_reply *r)
{
    (void)s;
    if (i == 0)
        llsmtp_reply_set(r, 421, "4.3.0", "mailbox store going down");
    return LLSMTP_OK;
}

/* A 421 from on_lmtp_rcpt did not close: later recipients got their
 * 250 and the next pipelined command was answered (RFC 5321 3.8: 421
 * closes the channel, as on every other decision path). */
static void
test_lmtp_rcpt_421_closes(void **state)
{
    llsmtp_callbacks cb = {0};
    llsmtp_config cfg = cfg_default(&cb);
    th_host h;
    llsmtp_server *s;
    size_t used;
    const char *p;
    (void)state;
    memset(&cb, 0, sizeof cb);
    cb.on_lmtp_rcpt = rv_lmtp_421_first;
    cfg.flags |= LLSMTP_CFG_LMTP;
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    (void)llsmtp_server_start(s);
    (void)feed_str(s,
                   "LHLO a\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n"
                   "RCPT TO:<g@e.f>\r\nDATA\r\nx\r\n.\r\nNOOP\r\n",
                   &used);
    th_drain(s, &h);
    p = strstr(h.out.p, "421 4.3.0 mailbox store going down\r\n");
    assert_non_null(p);
    assert_ptr_equal(strstr(p, "\r\n") + 2, h.out.p + h.out.n);
    assert_true(llsmtp_server_wants(s) & LLSMTP_WANT_CLOSE);
    free(s);
    th_host_free(&h);
}

static int
rv_enh_then_defer(llsmtp_server *s, const llsmtp_path *p,
                  const llsmtp_params *ps, llsmtp_reply *r)
{
    (void)s;
    (void)p;
    (void)ps;
    memcpy(r->enhanced, "4.7.1", 6);
    return LLSMTP_PAUSED;
}

/* A reply set before deferring is lost, so it is refused as a failure;
 * the check compared the code, the default flag and the id only, and
 * an enhanced code written into the reply before PAUSED was dropped. */
static void
test_defer_with_changed_enhanced_fails(void **state)
{
    llsmtp_callbacks cb = {0};
    llsmtp_config cfg = cfg_default(&cb);
    th_host h;
    llsmtp_server *s;
    size_t used;
    (void)state;
    memset(&cb, 0, sizeof cb);
    cb.on_rcpt = rv_enh_then_defer;
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    (void)llsmtp_server_start(s);
    th_drain(s, &h);
    assert_int_equal(
        feed_str(s, "EHLO a\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n",
                 &used),
        LLSMTP_E_CALLBACK);
    free(s);
    th_host_free(&h);
}

/* llsmtp_server_peer gives port 0 for an address set with set_peer,
 * but set_peer kept the port of an earlier PROXY header. */
static void
test_set_peer_forgets_proxy_port(void **state)
{
    llsmtp_config cfg = cfg_default(NULL);
    th_host h;
    llsmtp_server *s;
    llsmtp_ip ip, other;
    uint16_t port = 0;
    size_t used;
    (void)state;
    cfg.flags |= LLSMTP_CFG_PROXY;
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    (void)llsmtp_server_start(s);
    (void)feed_str(s, "PROXY TCP4 192.0.2.1 198.51.100.1 40000 25\r\n", &used);
    th_drain(s, &h);
    assert_int_equal(llsmtp_server_peer(s, &ip, &port), 1);
    assert_int_equal(port, 40000);
    memset(&other, 0, sizeof other);
    other.family = 4;
    other.addr[0] = 203;
    other.addr[2] = 113;
    other.addr[3] = 7;
    llsmtp_server_set_peer(s, &other);
    port = 1;
    assert_int_equal(llsmtp_server_peer(s, &ip, &port), 1);
    assert_int_equal(ip.addr[0], 203);
    assert_int_equal(port, 0);
    free(s);
    th_host_free(&h);
}

/* wants() said READ all through DATA, but the final dot needs room for
 * the reply: with the replies of a pipelining client that reads nothing
 * left in the queue, every feed took 0 octets and returned BLOCKED while
 * wants() kept saying READ, and a host feeding on READ spun. */
static void
test_wants_read_at_the_final_dot(void **state)
{
    llsmtp_config cfg = cfg_default(NULL);
    th_host h;
    llsmtp_server *s;
    size_t used, room, off = 0, len, have, fixed, local;
    char line[600], lp[200];
    const char *msg = "Subject: x\r\n\r\nbody\r\n.\r\n";
    int i, spins = 0;
    (void)state;
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    (void)llsmtp_server_start(s);
    th_drain(s, &h);
    (void)feed_str(s, "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n", &used);
    /* lib/server.c: a line is read while the output holds at most
     * output_size - reserve octets (reserve: max_line + max_line / 32 +
     * 2048); fill the output to exactly that */
    room = cfg.output_size - (cfg.max_line + cfg.max_line / 32 + 2048);
    for (i = 0; llsmtp_server_output(s).n + 120 < room; i++) {
        snprintf(line, sizeof line, "RCPT TO:<r%02d@d.example>\r\n", i);
        assert_int_equal(feed_str(s, line, &used), LLSMTP_OK);
    }
    have = llsmtp_server_output(s).n;
    fixed = strlen("250 2.1.5 Recipient <@d.example> OK\r\n");
    local = room - have - fixed;
    assert_true(local > 0 && local < sizeof lp);
    memset(lp, 'x', local);
    lp[local] = '\0';
    snprintf(line, sizeof line, "RCPT TO:<%s@d.example>\r\n", lp);
    assert_int_equal(feed_str(s, line, &used), LLSMTP_OK);
    assert_int_equal(llsmtp_server_output(s).n, room);
    (void)feed_str(s, "DATA\r\n", &used);
    /* the message arrives; the socket is not writable, nothing drains */
    len = strlen(msg);
    while (off < len && spins < 5) {
        if (!(llsmtp_server_wants(s) & LLSMTP_WANT_READ))
            break;
        (void)llsmtp_server_feed(s, msg + off, len - off, &used);
        off += used;
        if (used == 0)
            spins++;
    }
    assert_int_equal(spins, 0);
    free(s);
    th_host_free(&h);
}

/* With lent output and nothing lent, output() computed NULL + 0 and the
 * 421 of a failing on_data_abort at eof did the same in the reply
 * writer: undefined in C (clang's UBSan stops on it; make SANITIZE=1
 * CC=clang runs this test so). */
static void
test_no_output_pointer_without_a_loan(void **state)
{
    llsmtp_callbacks cb = {0};
    llsmtp_config cfg = cfg_default(&cb);
    size_t sz, lsz, used;
    char *buf;
    llsmtp_server *s;
    llsmtp_span o;
    (void)state;
    memset(&cb, 0, sizeof cb);
    cb.on_data_abort = rv_failing_abort;
    cfg.flags |= LLSMTP_CFG_LENT_OUTPUT;
    sz = llsmtp_server_size(&cfg);
    lsz = llsmtp_server_lend_size(&cfg);
    s = (llsmtp_server *)malloc(sz);
    buf = (char *)malloc(lsz);
    assert_non_null(llsmtp_server_init(s, sz, &cfg, NULL));
    o = llsmtp_server_output(s);
    assert_null(o.p);
    assert_int_equal(o.n, 0);
    /* a message open, its replies written and the loan taken back */
    assert_int_equal(llsmtp_server_lend(s, buf, lsz), LLSMTP_OK);
    (void)llsmtp_server_start(s);
    (void)feed_str(s,
                   "EHLO a\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n"
                   "DATA\r\nx\r\n",
                   &used);
    o = llsmtp_server_output(s);
    assert_int_equal(llsmtp_server_consume(s, o.n), LLSMTP_OK);
    assert_ptr_equal(llsmtp_server_reclaim(s), buf);
    (void)llsmtp_server_eof(s); /* on_data_abort fails: a 421, unlent */
    o = llsmtp_server_output(s);
    assert_null(o.p);
    assert_int_equal(o.n, 0);
    free(buf);
    free(s);
}

/* RCPT accepted with the default reply goes the fast way (lib/
 * server_cmd.c, sess_rcpt_accepted); the same decision deferred and
 * resumed with the default goes the general way (llsmtp__sess_apply,
 * sess_put_default). The two give the same octets, the same on_reply
 * reports and the same session state, for generated paths (mixed case,
 * quoted local parts, UTF-8 with and without SMTPUTF8, literals, routes,
 * Postmaster, long paths, hostile octets) with and without parameters,
 * enhanced status codes on and off, a short and a long line limit, and
 * a relay policy (refused recipients go neither way, the same). */
static void
rd_on_reply(llsmtp_server *s, const llsmtp_reply_info *ri)
{
    th_host *h = TH_HOST(s);
    char head[96];
    int n = snprintf(head, sizeof head, "%s %d %s %d %ld ", ri->verb, ri->code,
                     ri->enhanced, (int)ri->phase, ri->rcpt);
    th_buf_add(&h->events, head, (size_t)n);
    th_escape(&h->events, ri->arg.p, ri->arg.n);
    th_buf_add(&h->events, " | ", 3);
    th_escape(&h->events, ri->text.p, ri->text.n);
    th_buf_add(&h->events, "\n", 1);
}

static void
test_rcpt_fast_matches_general(void **state)
{
    static const char *const params[] = {"",
                                         " NOTIFY=SUCCESS,DELAY",
                                         " ORCPT=rfc822;a+20b@c.d",
                                         " NOTIFY=BOGUS",
                                         " FOO=bar",
                                         "  ",
                                         " NOTIFY=NEVER ORCPT=rfc822;x"};
    static const char *const local[] = {"example.test", "company.test"};
    llsmtp_callbacks cb = th_callbacks;
    llsmtp_relay_policy policy;
    th_buf in = {0};
    uint64_t seed = 31337;
    char path[1400];
    int round;
    size_t accepted = 0;
    (void)state;
    cb.on_reply = rd_on_reply;
    llsmtp_relay_policy_init(&policy);
    policy.local_domains = local;
    policy.nlocal = 2;
    for (round = 0; round < 400; round++) {
        llsmtp_config cfg = cfg_default(&cb);
        th_host fast, general;
        llsmtp_server *a, *b;
        int k, ra, rb;
        memset(&fast, 0, sizeof fast);
        memset(&general, 0, sizeof general);
        cfg.extensions |= LLSMTP_EXT_ENHANCEDSTATUS | LLSMTP_EXT_SMTPUTF8 |
                          LLSMTP_EXT_DSN | LLSMTP_EXT_PIPELINING;
        if (round % 2)
            cfg.extensions &= ~(unsigned)LLSMTP_EXT_ENHANCEDSTATUS;
        if (round % 3 == 1)
            cfg.max_line = 2048; /* paths past one reply line */
        if (round % 5 == 2)
            cfg.relay = &policy;
        cfg.max_rcpt_rejects = 0;
        cfg.max_errors = 0;
        /* the general host defers every RCPT; th_run resumes it with
         * the default reply */
        snprintf(general.rules[0].kind, sizeof general.rules[0].kind, "rcpt");
        snprintf(general.rules[0].match, sizeof general.rules[0].match, "*");
        general.rules[0].defer = 1;
        general.nrules = 1;
        in.n = 0;
        th_buf_adds(&in, "EHLO client.test\r\nMAIL FROM:<s@a.test>");
        th_buf_adds(&in, round % 4 ? " SMTPUTF8\r\n" : "\r\n");
        for (k = 0; k < 60; k++) {
            size_t n = th_gen_path(&seed, path, cfg.max_line - 40);
            th_buf_adds(&in, th_rand(&seed) % 7 ? "RCPT TO:" : "rcpt to: ");
            th_buf_add(&in, path, n);
            th_buf_adds(
                &in,
                params[th_rand(&seed) % (sizeof params / sizeof params[0])]);
            th_buf_adds(&in, "\r\n");
        }
        if (cfg.max_line > 600) /* around one reply line's 512 octets */
            for (k = 470; k < 500; k++) {
                th_buf_adds(&in, "RCPT TO:<");
                memset(path, 'a', (size_t)k);
                th_buf_add(&in, path, (size_t)k);
                th_buf_adds(&in, "@example.test>\r\n");
            }
        th_buf_adds(&in, "DATA\r\nx\r\n.\r\nQUIT\r\n");
        a = th_session(&cfg, &fast);
        b = th_session(&cfg, &general);
        ra = th_run(a, &fast, in.p, in.n, NULL, 0, 1);
        rb = th_run(b, &general, in.p, in.n, NULL, 0, 1);
        assert_int_equal(ra, rb);
        assert_int_equal(fast.out.n, general.out.n);
        assert_memory_equal(fast.out.p, general.out.p, fast.out.n);
        assert_int_equal(fast.events.n, general.events.n);
        assert_memory_equal(fast.events.p, general.events.p, fast.events.n);
        for (k = 0; (size_t)k + 11 <= fast.out.n; k++)
            accepted += memcmp(fast.out.p + k, "Recipient <", 11) == 0;
        free(a);
        free(b);
        th_host_free(&fast);
        th_host_free(&general);
    }
    th_buf_free(&in);
    print_message("%zu recipients accepted\n", accepted);
    assert_true(accepted > 5000);
}

/* The dispatcher finds a verb by its first letter and octets folded
 * with | 0x20, which is exact only for letters: every name must be
 * upper-case letters, and each name with any octet replaced by any
 * other, cut short or made longer, finds what an ASCII case-insensitive
 * comparison with every row finds. */
static long
verb_reference(const char *v, size_t n)
{
    size_t i, k;
    const char *name;
    for (i = 0; (name = llsmtp__server_cmd_row(i)) != NULL; i++) {
        if (strlen(name) != n)
            continue;
        for (k = 0; k < n; k++) {
            unsigned char a = (unsigned char)v[k], b = (unsigned char)name[k];
            if (a >= 'A' && a <= 'Z')
                a = (unsigned char)(a + 32);
            if (b >= 'A' && b <= 'Z')
                b = (unsigned char)(b + 32);
            if (a != b)
                break;
        }
        if (k == n)
            return (long)i;
    }
    return -1;
}

static void
test_verb_lookup(void **state)
{
    size_t i, k, n;
    const char *name;
    char v[16];
    int c;
    (void)state;
    for (i = 0; (name = llsmtp__server_cmd_row(i)) != NULL; i++) {
        n = strlen(name);
        for (k = 0; k < n; k++)
            assert_true(name[k] >= 'A' && name[k] <= 'Z');
        for (k = 0; k < n; k++)
            for (c = 0; c < 256; c++) {
                memcpy(v, name, n);
                v[k] = (char)c;
                assert_int_equal(llsmtp__server_cmd_find(v, n),
                                 verb_reference(v, n));
            }
        for (c = 0; c < 256; c++) { /* one octet more, NUL too */
            memcpy(v, name, n);
            v[n] = (char)c;
            assert_int_equal(llsmtp__server_cmd_find(v, n + 1),
                             verb_reference(v, n + 1));
        }
        for (k = 0; k < n; k++) /* cut short */
            assert_int_equal(llsmtp__server_cmd_find(name, k),
                             verb_reference(name, k));
        for (k = 0; k < n; k++) /* mixed case */
            v[k] = (char)(k % 2 ? name[k] | 0x20 : name[k]);
        assert_int_equal(llsmtp__server_cmd_find(v, n), (long)i);
    }
    assert_int_equal(llsmtp__server_cmd_find("RCPTTOOLONGVERB", 15), -1);
    assert_int_equal(llsmtp__server_cmd_find("", 0), -1);
}

/* MAIL's "FROM:" and RCPT's "TO:" match in any case and nothing else
 * does: each octet of each keyword replaced by every other, the reply
 * compared with an ASCII case-insensitive comparison's verdict. */
static void
test_path_keywords(void **state)
{
    static const char *const kws[] = {"FROM:", "TO:"};
    llsmtp_config cfg = cfg_default(&th_callbacks);
    size_t k, w;
    int c;
    (void)state;
    cfg.max_errors = 0;
    for (w = 0; w < 2; w++)
        for (k = 0; k < strlen(kws[w]); k++)
            for (c = 1; c < 256; c++) {
                th_host h;
                llsmtp_server *s;
                char kw[8], line[64];
                int match, n;
                if (c == '\n' || c == '\r')
                    continue;
                memcpy(kw, kws[w], strlen(kws[w]) + 1);
                kw[k] = (char)c;
                match = (c | 0x20) == (kws[w][k] | 0x20) &&
                        (kws[w][k] != ':' || c == ':');
                memset(&h, 0, sizeof h);
                s = th_session(&cfg, &h);
                n = snprintf(line, sizeof line, "EHLO x\r\n%s%s<a@b.c>\r\n%s",
                             w ? "MAIL FROM:<s@b.c>\r\nRCPT " : "MAIL ", kw,
                             "QUIT\r\n");
                (void)th_run(s, &h, line, (size_t)n, NULL, 0, 1);
                assert_int_equal(th_contains(h.out.p, h.out.n,
                                             w ? "Syntax: RCPT"
                                               : "Syntax: MAIL"),
                                 !match);
                free(s);
                th_host_free(&h);
            }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_rcpt_fast_matches_general),
        cmocka_unit_test(test_verb_lookup),
        cmocka_unit_test(test_path_keywords),
        cmocka_unit_test(test_memory_size),
        cmocka_unit_test(test_feed_before_start_and_args),
        cmocka_unit_test(test_pause_position),
        cmocka_unit_test(test_blocked),
        cmocka_unit_test(test_reentrancy_guard),
        cmocka_unit_test(test_sticky_failure),
        cmocka_unit_test(test_reply_struct_edits),
        cmocka_unit_test(test_sync_check),
        cmocka_unit_test(test_sync_check_groups),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_resume_after_eof),
        cmocka_unit_test(test_shutdown),
        cmocka_unit_test(test_accessors),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_two_sessions_share_config),
        cmocka_unit_test(test_lmtp_blocked_then_closed),
        cmocka_unit_test(test_lmtp_replies_follow_consume),
        cmocka_unit_test(test_defer_with_a_reply_fails),
        cmocka_unit_test(test_pending_arg_and_cancel),
        cmocka_unit_test(test_versioned_structs),
        cmocka_unit_test(test_lent_output),
        cmocka_unit_test(test_wants_read_means_progress),
        cmocka_unit_test(test_callback_bad_code_closes_with_421),
        cmocka_unit_test(test_bdat_paused_last_octet),
        cmocka_unit_test(test_bdat_over_limit_not_delivered),
        cmocka_unit_test(test_452_not_an_error),
        cmocka_unit_test(test_kind_table_in_enum_order),
        cmocka_unit_test(test_cmd_table_verbs_unique),
        cmocka_unit_test(test_readme_memory_figures),
        cmocka_unit_test(test_deferred_starttls_drops_the_rest_of_its_read),
        cmocka_unit_test(test_relay_verdict_fails_closed),
        cmocka_unit_test(test_cancel_and_wipe_when_abort_fails),
        cmocka_unit_test(test_output_size_bounded),
        cmocka_unit_test(test_pending_arg_vrfy_expn_help),
        cmocka_unit_test(test_consume_reports_close_and_failure),
        cmocka_unit_test(test_lmtp_rcpt_421_closes),
        cmocka_unit_test(test_defer_with_changed_enhanced_fails),
        cmocka_unit_test(test_set_peer_forgets_proxy_port),
        cmocka_unit_test(test_wants_read_at_the_final_dot),
        cmocka_unit_test(test_no_output_pointer_without_a_loan),
    };
    return cmocka_run_group_tests_name("server", tests, NULL, NULL);
}
