/* SPDX-License-Identifier: MIT
 *
 * test_trust.c - what the session must never do whatever the host or the
 * client sends: overflow its own arrays building EHLO, leave credentials
 * in session memory on any AUTH path, keep pointers into a callback's
 * dead stack frame, put configuration text on the wire unchecked, or
 * answer HELP with a list that disagrees with EHLO.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"

/* Feeds a string one byte at a time, so every line is assembled in the
 * session's own line buffer. Returns the last status. */
static int
feed_bytes(llsmtp_server *s, const char *p, size_t n)
{
    size_t i, used;
    int rc = LLSMTP_OK;
    for (i = 0; i < n; i++) {
        rc = llsmtp_server_feed(s, p + i, 1, &used);
        if (rc != LLSMTP_OK)
            return rc;
    }
    return rc;
}

/* ---- 1. EHLO with everything on ---------------------------------------- */

static int
step_refuse(llsmtp_server *s, const llsmtp_auth_step *st, llsmtp_reply *r)
{
    (void)s;
    (void)st;
    llsmtp_reply_set(r, 535, NULL, NULL);
    return LLSMTP_OK;
}

static void
ehlo_everything(int tls)
{
    llsmtp_callbacks cb;
    llsmtp_config cfg;
    th_host h;
    llsmtp_server *s;
    size_t olen;
    const char *out;
    th_buf got = {0};
    static const char *const kw[] = {
        "250-PIPELINING\r\n",
        "250-SIZE 10485760\r\n",
        "250-VRFY\r\n",
        "250-HELP\r\n",
        "250-ETRN\r\n",
        "250-AUTH PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256 XOAUTH2 "
        "GSSAPI NTLM\r\n",
        "250-AUTH=PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256 XOAUTH2 "
        "GSSAPI NTLM\r\n",
        "250-ENHANCEDSTATUSCODES\r\n",
        "250-8BITMIME\r\n",
        "250-BINARYMIME\r\n",
        "250-CHUNKING\r\n",
        "250-DSN\r\n",
        "250 SMTPUTF8\r\n"};
    size_t i;
    memset(&cb, 0, sizeof cb);
    cb.on_auth_step = step_refuse; /* so every mechanism is offered */
    llsmtp_config_init(&cfg);
    cfg.hostname = "mx.example.test";
    cfg.callbacks = &cb;
    cfg.extensions = LLSMTP_EXT_PIPELINING | LLSMTP_EXT_SIZE |
                     LLSMTP_EXT_8BITMIME | LLSMTP_EXT_ENHANCEDSTATUS |
                     LLSMTP_EXT_VRFY | LLSMTP_EXT_HELP | LLSMTP_EXT_AUTH |
                     LLSMTP_EXT_STARTTLS | LLSMTP_EXT_CHUNKING |
                     LLSMTP_EXT_BINARYMIME | LLSMTP_EXT_DSN |
                     LLSMTP_EXT_SMTPUTF8 | LLSMTP_EXT_ETRN;
    cfg.max_size = 10485760;
    cfg.flags |= LLSMTP_CFG_AUTH_CLEARTEXT | LLSMTP_CFG_AUTH_LEGACY;
    cfg.auth_mechanisms = "PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256 "
                          "XOAUTH2 GSSAPI NTLM";
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    if (tls)
        assert_int_equal(llsmtp_server_tls_started(s), LLSMTP_OK);
    assert_int_equal(llsmtp_server_start(s), LLSMTP_OK);
    /* a client name as long as a command line allows */
    th_buf_adds(&got, "EHLO ");
    for (i = 0; i < 40; i++)
        th_buf_adds(&got, "abcdefghi.");
    th_buf_adds(&got, "example\r\n");
    assert_int_equal(feed_bytes(s, got.p, got.n), LLSMTP_OK);
    out = th_output(s, &olen);
    for (i = 0; i < sizeof kw / sizeof kw[0]; i++)
        if (!th_contains(out, olen, kw[i]))
            fail_msg("missing %s in %.*s", kw[i], (int)olen, out);
    assert_int_equal(th_contains(out, olen, "250-STARTTLS\r\n"), !tls);
    th_buf_free(&got);
    free(s);
}

static void
test_ehlo_everything_on(void **state)
{
    (void)state;
    ehlo_everything(0);
    ehlo_everything(1);
}

/* ---- 2. credentials never stay in session memory ------------------------ */

enum {
    W_CLEARTEXT = 0,  /* 538: AUTH not offered without TLS */
    W_IN_MAIL,        /* 503: inside a transaction */
    W_AUTHED,         /* 503: already authenticated */
    W_UNKNOWN_MECH,   /* 504 */
    W_NO_EHLO,        /* 503: HELO, not EHLO */
    W_AUTH_OFF,       /* 502: AUTH not configured at all */
    W_TOO_LONG,       /* 500 5.5.6 */
    W_BARE_LF,        /* 500 under bare_lf=reject */
    W_BAD_B64,        /* 501 */
    W_CANCEL,         /* LOGIN user name, then "*" */
    W_CB_FAIL,        /* on_auth fails */
    W_EOF,            /* half an AUTH line, then eof */
    W_SHUTDOWN,       /* half an AUTH line, then shutdown */
    W_TIMEOUT,        /* half an AUTH line, then the timer */
    W_RESET,          /* half an AUTH line, then llsmtp_server_reset */
    W_SYNTAX_REFUSED, /* 501 syntax ("AUTH  <b64>", no mechanism) */
    W_OFF_TOO_LONG,   /* AUTH off: 500 5.5.2 line too long, then NOOP */
    W_LAST
};

static int
fail_on_auth(llsmtp_server *s, const llsmtp_auth *c, llsmtp_reply *r)
{
    (void)s;
    (void)c;
    (void)r;
    return LLSMTP_E_CALLBACK;
}

static void
test_auth_secrets_wiped(void **state)
{
    char b64[64], user64[64];
    size_t n;
    int path, leaked = 0;
    (void)state;
    llsmtp_b64_encode("\0joe\0Sw0rdf1shSw0rdf1sh", 23, b64, sizeof b64, &n);
    b64[n] = '\0';
    llsmtp_b64_encode("MrSecretUserName", 16, user64, sizeof user64, &n);
    user64[n] = '\0';
    for (path = 0; path < W_LAST; path++) {
        llsmtp_callbacks cb;
        llsmtp_config cfg;
        th_host h;
        llsmtp_server *s;
        th_buf in = {0};
        size_t sz;
        int rc;
        memset(&cb, 0, sizeof cb);
        if (path == W_CB_FAIL)
            cb.on_auth = fail_on_auth;
        llsmtp_config_init(&cfg);
        cfg.hostname = "mx.example.test";
        cfg.callbacks = &cb;
        cfg.extensions |= LLSMTP_EXT_AUTH;
        if (path != W_CLEARTEXT)
            cfg.flags |= LLSMTP_CFG_AUTH_CLEARTEXT;
        if (path == W_AUTH_OFF || path == W_OFF_TOO_LONG)
            cfg.extensions &= ~(unsigned)LLSMTP_EXT_AUTH;
        if (path == W_BARE_LF)
            cfg.bare_lf = LLSMTP_BARE_LF_REJECT;
        memset(&h, 0, sizeof h);
        s = th_session(&cfg, &h);
        sz = llsmtp_server_size(&cfg);
        llsmtp_server_start(s);
        if (path == W_AUTHED)
            llsmtp_server_set_authenticated(s, 1);
        th_buf_adds(&in, path == W_NO_EHLO ? "HELO c\r\n" : "EHLO c\r\n");
        if (path == W_IN_MAIL)
            th_buf_adds(&in, "MAIL FROM:<a@example.test>\r\n");
        switch (path) {
        case W_UNKNOWN_MECH:
            th_buf_adds(&in, "AUTH X-UNKNOWN ");
            break;
        case W_SYNTAX_REFUSED:
            th_buf_adds(&in, "AUTH  ");
            break;
        case W_CANCEL:
            th_buf_adds(&in, "AUTH LOGIN ");
            th_buf_adds(&in, user64);
            th_buf_adds(&in, "\r\n*\r\n");
            break;
        default:
            th_buf_adds(&in, "AUTH PLAIN ");
            break;
        }
        if (path != W_CANCEL)
            th_buf_adds(&in, b64);
        if (path == W_BAD_B64)
            th_buf_adds(&in, "!!!!");
        if (path == W_TOO_LONG || path == W_OFF_TOO_LONG) {
            size_t i;
            for (i = 0; i < (path == W_TOO_LONG ? 13000u : 500u); i++)
                th_buf_add(&in, "A", 1);
        }
        if (path == W_BARE_LF)
            th_buf_adds(&in, "\n");
        else if (path < W_EOF || path >= W_SYNTAX_REFUSED)
            th_buf_adds(&in, "\r\n");
        if (path == W_OFF_TOO_LONG)
            th_buf_adds(&in, "NOOP\r\n"); /* the session goes on */
        rc = feed_bytes(s, in.p, in.n);
        if (rc < 0 && path != W_CB_FAIL)
            fail_msg("path %d: %s", path, llsmtp_errname(rc));
        switch (path) {
        case W_EOF:
            assert_int_equal(llsmtp_server_eof(s), LLSMTP_CLOSE);
            break;
        case W_SHUTDOWN:
            assert_int_equal(llsmtp_server_shutdown(s, NULL), LLSMTP_CLOSE);
            break;
        case W_TIMEOUT:
            assert_int_equal(llsmtp_server_timeout_expired(s), LLSMTP_CLOSE);
            break;
        case W_RESET:
            assert_int_equal(llsmtp_server_reset(s), LLSMTP_OK);
            break;
        default:
            break;
        }
        assert_false(llsmtp_server_authenticated(s) && path != W_AUTHED);
        if (th_contains((const char *)s, sz, "Sw0rdf1sh") ||
            th_contains((const char *)s, sz, b64 + 8) ||
            th_contains((const char *)s, sz, "MrSecretUser") ||
            th_contains((const char *)s, sz, user64 + 4)) {
            print_error("path %d left a credential in session memory\n", path);
            leaked++;
        }
        th_buf_free(&in);
        th_host_free(&h);
        free(s);
    }
    assert_int_equal(leaked, 0);
}

/* ---- 3. reply text and queue id are copied ------------------------------ */

static char trust_resume_buf[64];

static int
stack_on_rcpt(llsmtp_server *s, const llsmtp_path *to, const llsmtp_params *ps,
              llsmtp_reply *r)
{
    char text[64];
    (void)s;
    (void)ps;
    if (to->mailbox.n && to->mailbox.p[0] == 'o')
        return LLSMTP_OK;
    if (to->mailbox.n && to->mailbox.p[0] == 'd') {
        /* deferred: the host's reply is built later, see below */
        return LLSMTP_PAUSED;
    }
    snprintf(text, sizeof text, "Mailbox %s is full", "joe");
    llsmtp_reply_set(r, 452, "4.2.2", text);
    memset(text, 'X', sizeof text - 1); /* the frame dies anyway */
    return LLSMTP_OK;
}

static int
stack_on_data_end(llsmtp_server *s, llsmtp_reply *r)
{
    char id[16], text[64];
    int n;
    (void)s;
    n = snprintf(id, sizeof id, "Q%08X", 0xC0FFEEu);
    llsmtp_reply_set_id(r, id, (size_t)n);
    memset(id, 'Y', sizeof id);
    (void)text;
    return LLSMTP_OK;
}

static int
stack_on_vrfy(llsmtp_server *s, llsmtp_span a, llsmtp_reply *r)
{
    char text[64];
    (void)s;
    (void)a;
    snprintf(text, sizeof text, "Verified %s", "carefully");
    llsmtp_reply_setn(r, 250, NULL, text, strlen(text));
    memset(text, 'Z', sizeof text);
    return LLSMTP_OK;
}

static void
test_reply_text_copied(void **state)
{
    llsmtp_callbacks cb;
    llsmtp_config cfg;
    th_host h;
    llsmtp_server *s;
    size_t olen;
    const char *out;
    llsmtp_reply r = LLSMTP_REPLY_INIT;
    static const char in1[] =
        "EHLO c\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<joe@example.test>\r\n"
        "RCPT TO:<ann@example.test>\r\nVRFY ann\r\nRCPT TO:<dan@example.test>\r\n";
    static const char in1b[] = "RCPT TO:<ok@example.test>\r\n";
    static const char in2[] = "DATA\r\nhi\r\n.\r\n";
    size_t used;
    (void)state;
    memset(&cb, 0, sizeof cb);
    cb.on_rcpt = stack_on_rcpt;
    cb.on_data_end = stack_on_data_end;
    cb.on_vrfy = stack_on_vrfy;
    llsmtp_config_init(&cfg);
    cfg.hostname = "mx.example.test";
    cfg.callbacks = &cb;
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    llsmtp_server_start(s);
    assert_int_equal(llsmtp_server_feed(s, in1, sizeof in1 - 1, &used),
                     LLSMTP_PAUSED);
    /* the deferred decision: text from a buffer the host reuses before
     * it calls resume */
    snprintf(trust_resume_buf, sizeof trust_resume_buf, "Try %s later",
             "much");
    assert_int_equal(llsmtp_reply_set(&r, 451, NULL, trust_resume_buf),
                     LLSMTP_OK);
    memset(trust_resume_buf, 'W', sizeof trust_resume_buf - 1);
    assert_int_equal(llsmtp_server_resume(s, &r), LLSMTP_OK);
    assert_int_equal(llsmtp_server_feed(s, in1 + used, sizeof in1 - 1 - used,
                                        &used),
                     LLSMTP_OK);
    assert_int_equal(llsmtp_server_feed(s, in1b, sizeof in1b - 1, &used),
                     LLSMTP_OK);
    assert_int_equal(llsmtp_server_feed(s, in2, sizeof in2 - 1, &used),
                     LLSMTP_OK);
    out = th_output(s, &olen);
    if (!th_contains(out, olen, "452 4.2.2 Mailbox joe is full\r\n") ||
        !th_contains(out, olen, "250 2.0.0 Verified carefully\r\n") ||
        !th_contains(out, olen, "451 4.0.0 Try much later\r\n") ||
        !th_contains(out, olen,
                     "250 2.6.0 Q00C0FFEE Queued mail for delivery\r\n"))
        fail_msg("got %.*s", (int)olen, out);
    assert_false(th_contains(out, olen, "XXX"));
    free(s);
}

/* A challenge from a stack buffer is copied as well. */
static int
stack_on_auth_step(llsmtp_server *s, const llsmtp_auth_step *st,
                   llsmtp_reply *r)
{
    char chal[32];
    (void)s;
    if (st->step > 0) {
        llsmtp_reply_set(r, 535, NULL, NULL);
        return LLSMTP_OK;
    }
    snprintf(chal, sizeof chal, "<%d.%d@mx>", 1896, 697170952);
    llsmtp_reply_challenge(r, chal, strlen(chal));
    memset(chal, 0, sizeof chal);
    return LLSMTP_OK;
}

static void
test_challenge_copied(void **state)
{
    llsmtp_callbacks cb;
    llsmtp_config cfg;
    th_host h;
    llsmtp_server *s;
    size_t olen, used;
    const char *out;
    char want[64];
    size_t n;
    (void)state;
    memset(&cb, 0, sizeof cb);
    cb.on_auth_step = stack_on_auth_step;
    llsmtp_config_init(&cfg);
    cfg.hostname = "mx.example.test";
    cfg.callbacks = &cb;
    cfg.extensions |= LLSMTP_EXT_AUTH;
    cfg.flags |= LLSMTP_CFG_AUTH_CLEARTEXT;
    cfg.auth_mechanisms = "CRAM-MD5";
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    llsmtp_server_start(s);
    assert_int_equal(TH_FEED(s, "EHLO c\r\nAUTH CRAM-MD5\r\n", &used),
                     LLSMTP_OK);
    memcpy(want, "334 ", 4);
    llsmtp_b64_encode("<1896.697170952@mx>", 19, want + 4, 50, &n);
    memcpy(want + 4 + n, "\r\n", 3);
    out = th_output(s, &olen);
    if (!th_contains(out, olen, want))
        fail_msg("got %.*s", (int)olen, out);
    free(s);
}

/* ---- 4. configuration is validated -------------------------------------- */

static void
test_config_refused(void **state)
{
    static const char *const bad_hosts[] = {"evil.test\r\n250 injected",
                                            "evil.test\n250-AUTH PLAIN",
                                            "a b",
                                            "",
                                            "x\x01y",
                                            "[192.0.2.1",
                                            "[300.1.1.1]",
                                            "-bad.test",
                                            "bad..test",
                                            "[IPv6:zz::1]"};
    static const char *const good_hosts[] = {"localhost", "mx.example.test",
                                             "[192.0.2.1]",
                                             "[IPv6:2001:db8::1]",
                                             "MX1.Example.TEST"};
    llsmtp_config cfg;
    size_t i, sz;
    char *mem;
    (void)state;
    for (i = 0; i < sizeof bad_hosts / sizeof bad_hosts[0]; i++) {
        char block[1];
        llsmtp_config_init(&cfg);
        cfg.hostname = bad_hosts[i];
        if (llsmtp_server_size(&cfg) != 0)
            fail_msg("hostname \"%s\" accepted", bad_hosts[i]);
        assert_null(llsmtp_server_init(block, 1u << 30, &cfg, NULL));
    }
    for (i = 0; i < sizeof good_hosts / sizeof good_hosts[0]; i++) {
        llsmtp_config_init(&cfg);
        cfg.hostname = good_hosts[i];
        if (llsmtp_server_size(&cfg) == 0)
            fail_msg("hostname \"%s\" refused", good_hosts[i]);
    }
    llsmtp_config_init(&cfg);
    cfg.banner = "ok\r\n250 injected";
    assert_int_equal(llsmtp_server_size(&cfg), 0);
    llsmtp_config_init(&cfg);
    cfg.extensions |= LLSMTP_EXT_AUTH;
    cfg.auth_mechanisms = "PLAIN\r\n250-AUTH LOGIN";
    assert_int_equal(llsmtp_server_size(&cfg), 0);
    cfg.auth_mechanisms = "A B C D E F G H I"; /* nine */
    assert_int_equal(llsmtp_server_size(&cfg), 0);
    cfg.auth_mechanisms = "ABCDEFGHIJKLMNOPQRSTU"; /* 21 characters */
    assert_int_equal(llsmtp_server_size(&cfg), 0);
    cfg.auth_mechanisms = "";
    assert_int_equal(llsmtp_server_size(&cfg), 0);
    cfg.auth_mechanisms = "PLAIN LOGIN CRAM-MD5 X_OAUTH-2";
    assert_int_not_equal(llsmtp_server_size(&cfg), 0);

    /* llsmtp_config_check says which field and why */
    {
        const char *why = "unset";
        llsmtp_config_init(&cfg);
        assert_int_equal(llsmtp_config_check(&cfg, &why), LLSMTP_OK);
        assert_null(why);
        cfg.hostname = "evil.test\r\n250 injected";
        assert_int_equal(llsmtp_config_check(&cfg, &why), LLSMTP_E_INVAL);
        assert_non_null(why);
        assert_memory_equal(why, "hostname:", 9);
        llsmtp_config_init(&cfg);
        cfg.max_line = 100;
        assert_int_equal(llsmtp_config_check(&cfg, &why), LLSMTP_E_INVAL);
        assert_memory_equal(why, "max_line:", 9);
        llsmtp_config_init(&cfg);
        cfg.extensions |= LLSMTP_EXT_AUTH;
        cfg.auth_mechanisms = "PLAIN LOG\x01IN";
        assert_int_equal(llsmtp_config_check(&cfg, &why), LLSMTP_E_INVAL);
        assert_memory_equal(why, "auth_mechanisms:", 16);
        assert_int_equal(llsmtp_config_check(NULL, NULL), LLSMTP_E_INVAL);
        /* RFC 4954 3: AUTH lists the mechanisms offered; CRAM-MD5 with
         * no on_auth_step would leave "250-AUTH" with none */
        {
            llsmtp_callbacks cb;
            memset(&cb, 0, sizeof cb);
            llsmtp_config_init(&cfg);
            cfg.extensions |= LLSMTP_EXT_AUTH;
            cfg.flags |= LLSMTP_CFG_AUTH_CLEARTEXT | LLSMTP_CFG_AUTH_LEGACY;
            cfg.auth_mechanisms = "CRAM-MD5";
            assert_int_equal(llsmtp_config_check(&cfg, &why), LLSMTP_E_INVAL);
            assert_memory_equal(why, "auth_mechanisms:", 16);
            cfg.callbacks = &cb;
            assert_int_equal(llsmtp_config_check(&cfg, &why), LLSMTP_E_INVAL);
            assert_int_equal(llsmtp_server_size(&cfg), 0);
            cb.on_auth_step = step_refuse;
            assert_int_equal(llsmtp_config_check(&cfg, &why), LLSMTP_OK);
            cb.on_auth_step = NULL;
            cfg.auth_mechanisms = "CRAM-MD5 login";
            assert_int_equal(llsmtp_config_check(&cfg, &why), LLSMTP_OK);
        }
    }

    /* memory not aligned like malloc's is refused, as documented */
    llsmtp_config_init(&cfg);
    sz = llsmtp_server_size(&cfg);
    mem = (char *)malloc(sz + 16);
    assert_non_null(mem);
    assert_null(llsmtp_server_init(mem + 1, sz, &cfg, NULL));
    /* half a pointer off: misaligned on every target (malloc's alignment
     * is only 4 on i386, where mem + 4 would be fine) */
    assert_null(llsmtp_server_init(mem + sizeof(void *) / 2, sz, &cfg, NULL));
    assert_non_null(llsmtp_server_init(mem, sz, &cfg, NULL));
    free(mem);
}

/* ---- 5. HELP agrees with EHLO ------------------------------------------- */

static void
help_for(unsigned ext, unsigned flags, int tls, th_buf *outb)
{
    llsmtp_config cfg;
    th_host h;
    llsmtp_server *s;
    size_t olen, used;
    const char *out;
    llsmtp_config_init(&cfg);
    cfg.hostname = "mx.example.test";
    cfg.extensions = ext;
    cfg.flags = flags;
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    if (tls)
        llsmtp_server_tls_started(s);
    llsmtp_server_start(s);
    th_output(s, &olen);
    (void)llsmtp_server_consume(s, olen);
    assert_int_equal(TH_FEED(s, "HELP\r\n", &used), LLSMTP_OK);
    out = th_output(s, &olen);
    outb->n = 0;
    th_buf_add(outb, out, olen);
    free(s);
}

static void
test_help_matches_ehlo(void **state)
{
    th_buf o = {0};
    unsigned all = LLSMTP_EXT_DEFAULT | LLSMTP_EXT_STARTTLS | LLSMTP_EXT_AUTH |
                   LLSMTP_EXT_CHUNKING | LLSMTP_EXT_ETRN;
    (void)state;
    help_for(all, LLSMTP_CFG_AUTH_CLEARTEXT, 0, &o);
    if (!th_contains(o.p, o.n, " STARTTLS") ||
        !th_contains(o.p, o.n, " AUTH") || !th_contains(o.p, o.n, " BDAT") ||
        !th_contains(o.p, o.n, " ETRN") || !th_contains(o.p, o.n, " EHLO"))
        fail_msg("got %s", o.p);
    /* after TLS no STARTTLS; AUTH without cleartext only under TLS */
    help_for(all, 0, 1, &o);
    if (th_contains(o.p, o.n, "STARTTLS") || !th_contains(o.p, o.n, " AUTH"))
        fail_msg("got %s", o.p);
    help_for(all, 0, 0, &o);
    if (th_contains(o.p, o.n, " AUTH"))
        fail_msg("got %s", o.p);
    /* the defaults offer none of them */
    help_for(LLSMTP_EXT_DEFAULT, 0, 0, &o);
    if (th_contains(o.p, o.n, "STARTTLS") || th_contains(o.p, o.n, "AUTH") ||
        th_contains(o.p, o.n, "BDAT") || th_contains(o.p, o.n, "ETRN"))
        fail_msg("got %s", o.p);
    /* LMTP: LHLO, not HELO/EHLO */
    help_for(LLSMTP_EXT_DEFAULT, LLSMTP_CFG_LMTP, 0, &o);
    if (!th_contains(o.p, o.n, " LHLO") || th_contains(o.p, o.n, "EHLO"))
        fail_msg("got %s", o.p);
    th_buf_free(&o);
}

/* ---- 7. on_reply: one report per reply, never a credential ------------- */

static th_buf ri_log;

static void
ri_record(llsmtp_server *s, const llsmtp_reply_info *ri)
{
    char num[64];
    (void)s;
    th_buf_adds(&ri_log, ri->verb);
    th_buf_adds(&ri_log, "|");
    th_escape(&ri_log, ri->arg.p, ri->arg.n);
    snprintf(num, sizeof num, "|%d|%s|%d|%ld|", ri->code, ri->enhanced,
             ri->phase, ri->rcpt);
    th_buf_adds(&ri_log, num);
    th_escape(&ri_log, ri->text.p, ri->text.n);
    th_buf_adds(&ri_log, "\n");
}

/* Runs input through a session with on_reply, whole or byte by byte;
 * returns the output (caller frees). */
static void
ri_run(llsmtp_config *cfg, const char *in, int bytewise, th_buf *out)
{
    th_host h;
    llsmtp_server *s;
    size_t used, i;
    int rc = LLSMTP_OK;
    memset(&h, 0, sizeof h);
    s = th_session(cfg, &h);
    th_buf_free(&ri_log);
    th_buf_adds(&ri_log, "");
    assert_int_equal(llsmtp_server_start(s), LLSMTP_OK);
    if (bytewise) {
        for (i = 0; in[i] && rc == LLSMTP_OK; i++) {
            rc = llsmtp_server_feed(s, in + i, 1, &used);
            th_drain(s, &h);
        }
    } else {
        rc = llsmtp_server_feed(s, in, strlen(in), &used);
        th_drain(s, &h);
    }
    (void)rc;
    th_buf_add(out, h.out.p, h.out.n);
    free(s);
    th_host_free(&h);
}

/* Runs in whole and byte by byte: the on_reply log must be want both times. */
static void
ri_expect(llsmtp_config *cfg, const char *in, const char *want)
{
    int bytewise;
    for (bytewise = 0; bytewise < 2; bytewise++) {
        th_buf out = {0};
        ri_run(cfg, in, bytewise, &out);
        if (strcmp(ri_log.p, want) != 0)
            fail_msg("got\n%s", ri_log.p);
        th_buf_free(&out);
    }
    th_buf_free(&ri_log);
}

static void
ri_config(llsmtp_config *cfg, llsmtp_callbacks *cb)
{
    *cb = th_callbacks;
    cb->on_reply = ri_record;
    llsmtp_config_init(cfg);
    cfg->hostname = "mx.example.test";
    cfg->callbacks = cb;
}

static void
test_on_reply_pipelined(void **state)
{
    static const char in[] =
        "EHLO client.example\r\nMAIL FROM:<a@b.example> SIZE=10\r\n"
        "RCPT TO:<c@d.example>\r\nRCPT TO:<bad\r\nnoop x\r\n"
        "XYZZY s3cr3t\r\nDATA\r\nhello\r\n.\r\nQUIT\r\n";
    static const char want[] =
        "||220||1|-1|mx.example.test ESMTP llsmtp\n"
        "EHLO|client.example|250||0|-1|mx.example.test Hello client.example\n"
        "MAIL|FROM:<a@b.example> SIZE=10|250|2.1.0|0|-1|Sender "
        "<a@b.example> OK\n"
        "RCPT|TO:<c@d.example>|250|2.1.5|0|-1|Recipient <c@d.example> OK\n"
        "RCPT|TO:<bad|501|5.1.3|0|-1|Bad recipient address syntax\n"
        "NOOP|x|250|2.0.0|0|-1|OK\n"
        "||500|5.5.1|0|-1|Error: command not recognized\n"
        "DATA||354||0|-1|Start mail input; end with <CRLF>.<CRLF>\n"
        "DATA||250|2.6.0|3|-1|Queued mail for delivery\n"
        "QUIT||221|2.0.0|0|-1|mx.example.test Service closing transmission "
        "channel\n";
    llsmtp_config cfg;
    llsmtp_callbacks cb;
    (void)state;
    ri_config(&cfg, &cb);
    ri_expect(&cfg, in, want);
}

static int
ri_auth_ok(llsmtp_server *s, const llsmtp_auth *c, llsmtp_reply *r)
{
    (void)s;
    (void)c;
    llsmtp_reply_set(r, 235, NULL, NULL);
    return LLSMTP_OK;
}

static void
test_on_reply_no_credentials(void **state)
{
    /* "\0alice\0sesame" and "alice" / "sesame" */
    static const char *const ins[] = {
        "EHLO x\r\nAUTH PLAIN AGFsaWNlAHNlc2FtZQ==\r\nQUIT\r\n",
        "EHLO x\r\nAUTH PLAIN\r\nAGFsaWNlAHNlc2FtZQ==\r\nQUIT\r\n",
        "EHLO x\r\nAUTH LOGIN YWxpY2U=\r\nc2VzYW1l\r\nQUIT\r\n",
        /* refused (already authenticated is not possible: use HELO), the
         * client sends its response anyway: an unknown verb */
        "HELO x\r\nAUTH PLAIN\r\nAGFsaWNlAHNlc2FtZQ==\r\nQUIT\r\n",
        /* the response where the mechanism goes: not a mechanism, so
         * not shown; then one unknown, lower case, cancelled */
        ("EHLO x\r\nAUTH  AGFsaWNlAHNlc2FtZQ\r\nAUTH X-UNKNOWN "
         "AGFsaWNlAHNlc2FtZQ==\r\nauth login\r\nYWxpY2U=\r\n*\r\nQUIT\r\n")};
    static const char *const secrets[] = {"AGFsaWNlAHNlc2FtZQ", "YWxpY2U",
                                          "c2VzYW1l", "sesame", "alice"};
    llsmtp_config cfg;
    llsmtp_callbacks cb;
    size_t i, k;
    int bytewise;
    (void)state;
    ri_config(&cfg, &cb);
    cb.on_auth = ri_auth_ok;
    cfg.extensions |= LLSMTP_EXT_AUTH;
    cfg.flags |= LLSMTP_CFG_AUTH_CLEARTEXT;
    for (i = 0; i < sizeof ins / sizeof ins[0]; i++)
        for (bytewise = 0; bytewise < 2; bytewise++) {
            th_buf out = {0};
            ri_run(&cfg, ins[i], bytewise, &out);
            for (k = 0; k < sizeof secrets / sizeof secrets[0]; k++)
                if (strstr(ri_log.p, secrets[k]) != NULL)
                    fail_msg("case %zu: %s in\n%s", i, secrets[k], ri_log.p);
            /* the AUTH line shows its mechanism, never the initial
             * response; the exchange's lines are AUTH_STEP (5) */
            if (i == 0 &&
                strstr(ri_log.p, "AUTH|PLAIN|235|2.7.0|0|-1|") == NULL)
                fail_msg("case %zu: no 235 in\n%s", i, ri_log.p);
            if (i == 1 &&
                (strstr(ri_log.p, "AUTH|PLAIN|334||0|-1|\n") == NULL ||
                 strstr(ri_log.p, "AUTH||235|2.7.0|5|-1|") == NULL))
                fail_msg("case %zu: no 334, 235 in\n%s", i, ri_log.p);
            if (i == 2 &&
                (strstr(ri_log.p, "AUTH|LOGIN|334||0|-1|UGFzc3dvcmQ6\n") ==
                     NULL ||
                 strstr(ri_log.p, "AUTH||235|2.7.0|5|-1|") == NULL))
                fail_msg("case %zu: no 334, 235 in\n%s", i, ri_log.p);
            if (i == 3 &&
                (strstr(ri_log.p, "AUTH|PLAIN|503|5.5.1|0|-1|") == NULL ||
                 strstr(ri_log.p, "||500|5.5.1|0|-1|") == NULL))
                fail_msg("case %zu: no 503, 500 in\n%s", i, ri_log.p);
            if (i == 4 && (strstr(ri_log.p, "AUTH||504|5.5.4|0|-1|") == NULL ||
                           strstr(ri_log.p, "AUTH||504|5.5.4|0|-1|") ==
                               strrchr(ri_log.p, '\n') ||
                           strstr(ri_log.p, "AUTH|login|334||0|-1|") == NULL ||
                           strstr(ri_log.p, "AUTH||334||5|-1|") == NULL ||
                           strstr(ri_log.p, "AUTH||501|5.0.0|5|-1|") == NULL))
                fail_msg("case %zu: got\n%s", i, ri_log.p);
            th_buf_free(&out);
        }
    th_buf_free(&ri_log);
}

static void
test_on_reply_bdat_lmtp(void **state)
{
    static const char in[] =
        "LHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"
        "RCPT TO:<e@d.example>\r\nBDAT 3\r\nabcBDAT 2 NOW\r\nxyBDAT 1\r\nz"
        "RSET\r\nMAIL FROM:<>\r\nRCPT TO:<c@d.example>\r\nBDAT 2 LAST\r\n"
        "ok";
    static const char want[] =
        "||220||1|-1|mx.example.test LMTP llsmtp\n"
        "LHLO|x|250||0|-1|mx.example.test Hello x\n"
        "MAIL|FROM:<a@b.example>|250|2.1.0|0|-1|Sender <a@b.example> OK\n"
        "RCPT|TO:<c@d.example>|250|2.1.5|0|-1|Recipient <c@d.example> OK\n"
        "RCPT|TO:<e@d.example>|250|2.1.5|0|-1|Recipient <e@d.example> OK\n"
        "BDAT|3|250|2.0.0|2|-1|3 octets received\n"
        "BDAT|2 NOW|501|5.5.4|0|-1|Syntax: BDAT size [LAST]\n"
        "BDAT|1|503|5.5.1|0|-1|Error: need MAIL command\n"
        "RSET||250|2.0.0|0|-1|Flushed\n"
        "MAIL|FROM:<>|250|2.1.0|0|-1|Sender <> OK\n"
        "RCPT|TO:<c@d.example>|250|2.1.5|0|-1|Recipient <c@d.example> OK\n"
        "BDAT|2 LAST|250|2.6.0|3|0|Queued mail for delivery\n";
    llsmtp_config cfg;
    llsmtp_callbacks cb;
    (void)state;
    ri_config(&cfg, &cb);
    cfg.extensions |= LLSMTP_EXT_CHUNKING;
    cfg.flags |= LLSMTP_CFG_LMTP;
    ri_expect(&cfg, in, want);
}

/* on_reply across a deferral: the reply the host gives at resume still
 * names the command it answers, with its argument, whether the line was
 * in the host's buffer or assembled in the session's. */
static int
ri_defer_rcpt(llsmtp_server *s, const llsmtp_path *to, const llsmtp_params *ps,
              llsmtp_reply *r)
{
    (void)s;
    (void)ps;
    (void)r;
    return to->mailbox.n && to->mailbox.p[0] == 'd' ? LLSMTP_PAUSED
                                                    : LLSMTP_OK;
}

static int
ri_defer_auth(llsmtp_server *s, const llsmtp_auth *c, llsmtp_reply *r)
{
    (void)s;
    (void)c;
    (void)r;
    return LLSMTP_PAUSED;
}

static void
test_on_reply_deferred(void **state)
{
    static const char in[] =
        "EHLO x\r\nAUTH PLAIN AGFsaWNlAHNlc2FtZQ==\r\n"
        "MAIL FROM:<a@b.example>\r\nRCPT TO:<dan@d.example>\r\n"
        "RCPT TO:<ok@d.example>\r\nQUIT\r\n";
    static const char want[] =
        "||220||1|-1|mx.example.test ESMTP llsmtp\n"
        "EHLO|x|250||0|-1|mx.example.test Hello x\n"
        "AUTH|PLAIN|235|2.7.0|0|-1|Authentication successful\n"
        "MAIL|FROM:<a@b.example>|250|2.1.0|0|-1|Sender <a@b.example> OK\n"
        "RCPT|TO:<dan@d.example>|451|4.3.0|0|-1|Try later\n"
        "RCPT|TO:<ok@d.example>|250|2.1.5|0|-1|Recipient <ok@d.example> OK\n"
        "QUIT||221|2.0.0|0|-1|mx.example.test Service closing transmission "
        "channel\n";
    llsmtp_config cfg;
    llsmtp_callbacks cb;
    int bytewise;
    (void)state;
    ri_config(&cfg, &cb);
    cb.on_rcpt = ri_defer_rcpt;
    cb.on_auth = ri_defer_auth;
    cfg.extensions |= LLSMTP_EXT_AUTH;
    cfg.flags |= LLSMTP_CFG_AUTH_CLEARTEXT;
    for (bytewise = 0; bytewise < 2; bytewise++) {
        th_host h;
        llsmtp_server *s;
        size_t off = 0, n = sizeof in - 1, used;
        int rc;
        memset(&h, 0, sizeof h);
        s = th_session(&cfg, &h);
        th_buf_free(&ri_log);
        th_buf_adds(&ri_log, "");
        assert_int_equal(llsmtp_server_start(s), LLSMTP_OK);
        while (off < n) {
            rc = llsmtp_server_feed(s, in + off, bytewise ? 1 : n - off,
                                    &used);
            off += used;
            if (rc == LLSMTP_PAUSED) {
                llsmtp_reply r = LLSMTP_REPLY_INIT;
                if (llsmtp_server_pending(s) == LLSMTP_PENDING_AUTH)
                    llsmtp_reply_set(&r, 235, NULL, NULL);
                else
                    llsmtp_reply_set(&r, 451, "4.3.0", "Try later");
                /* the line is gone from the host's buffer by now */
                assert_int_equal(llsmtp_server_resume(s, &r), LLSMTP_OK);
            } else if (rc != LLSMTP_OK) {
                break;
            }
            th_drain(s, &h);
        }
        if (strcmp(ri_log.p, want) != 0)
            fail_msg("bytewise %d: got\n%s", bytewise, ri_log.p);
        free(s);
        th_host_free(&h);
    }
    th_buf_free(&ri_log);
}

/* ---- 8. an AUTH line is wiped even when on_data_abort fails ------------- */

static int
failing_data_abort(llsmtp_server *s, int why)
{
    (void)s;
    (void)why;
    return LLSMTP_E_CALLBACK;
}

/* eof, timeout_expired and shutdown returned before wiping a
 * half-received AUTH line when on_data_abort failed (a message open
 * between BDAT chunks), so the credential stayed in the session memory
 * the host then frees. */
static void
test_auth_line_wiped_when_abort_fails(void **state)
{
    int how;
    (void)state;
    for (how = 0; how < 3; how++) {
        llsmtp_callbacks cb;
        llsmtp_config cfg;
        th_host h;
        llsmtp_server *s;
        size_t sz, used;
        memset(&cb, 0, sizeof cb);
        cb.on_data_abort = failing_data_abort;
        llsmtp_config_init(&cfg);
        cfg.hostname = "mx.example.test";
        cfg.callbacks = &cb;
        cfg.extensions |= LLSMTP_EXT_CHUNKING | LLSMTP_EXT_AUTH;
        cfg.flags |= LLSMTP_CFG_AUTH_CLEARTEXT;
        memset(&h, 0, sizeof h);
        s = th_session(&cfg, &h);
        sz = llsmtp_server_size(&cfg);
        assert_int_equal(llsmtp_server_start(s), LLSMTP_OK);
        th_drain(s, &h);
        (void)TH_FEED(s,
                      "EHLO a\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n"
                      "BDAT 3\r\nabc",
                      &used);
        th_drain(s, &h);
        /* "\0user\0secretpass", its CRLF not yet received */
        (void)TH_FEED(s, "AUTH PLAIN AHVzZXIAc2VjcmV0cGFzcw==", &used);
        assert_true(th_contains((const char *)s, sz, "AHVzZXIAc2Vj"));
        (void)(how == 0   ? llsmtp_server_eof(s)
               : how == 1 ? llsmtp_server_timeout_expired(s)
                          : llsmtp_server_shutdown(s, NULL));
        assert_false(th_contains((const char *)s, sz, "AHVzZXIAc2Vj"));
        th_host_free(&h);
        free(s);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ehlo_everything_on),
        cmocka_unit_test(test_auth_secrets_wiped),
        cmocka_unit_test(test_reply_text_copied),
        cmocka_unit_test(test_challenge_copied),
        cmocka_unit_test(test_config_refused),
        cmocka_unit_test(test_help_matches_ehlo),
        cmocka_unit_test(test_on_reply_pipelined),
        cmocka_unit_test(test_on_reply_no_credentials),
        cmocka_unit_test(test_on_reply_bdat_lmtp),
        cmocka_unit_test(test_on_reply_deferred),
        cmocka_unit_test(test_auth_line_wiped_when_abort_fails),
    };
    return cmocka_run_group_tests_name("trust", tests, NULL, NULL);
}
