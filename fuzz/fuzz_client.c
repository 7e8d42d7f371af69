/* SPDX-License-Identifier: MIT
 *
 * fuzz_client.c - libFuzzer target for the client building blocks. The
 * reply parser must give the same lines (and the same error) however the
 * input is split, never a line over 512 octets; the body encoder, fed the
 * input as a message body in fuzzer-chosen pieces, must make a server
 * session deliver exactly the CRLF-normalised body and end the message
 * exactly where the encoder ended it. The client session, fed the input
 * as server replies, must never crash, stall or overflow its output.
 */
#include <llsmtp.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct rec {
    char *p;
    size_t n, cap;
} rec;

static void
rec_add(rec *r, const void *p, size_t n)
{
    if (r->n + n > r->cap) {
        r->cap = (r->n + n) * 2 + 64;
        r->p = (char *)realloc(r->p, r->cap);
        if (r->p == NULL)
            abort();
    }
    memcpy(r->p + r->n, p, n);
    r->n += n;
}

static void
parse(const uint8_t *d, size_t n, size_t step, rec *out)
{
    llsmtp_reply_parser p;
    size_t off = 0;
    llsmtp_reply_parser_init(&p, 8);
    while (off < n) {
        size_t len = n - off < step ? n - off : step, used;
        while (len) {
            llsmtp_reply_line l;
            int rc = llsmtp_reply_parser_feed(&p, (const char *)d + off, len,
                                              &used, &l);
            if (used > len)
                abort();
            off += used;
            len -= used;
            if (rc == LLSMTP_E_SYNTAX) {
                rec_add(out, "E", 1);
                return;
            }
            if (rc == 1) {
                if (l.text.n > 508 || l.code < 200 || l.code > 599)
                    abort();
                rec_add(out, &l.code, sizeof l.code);
                rec_add(out, &l.last, sizeof l.last);
                rec_add(out, l.text.p, l.text.n);
                rec_add(out, "|", 1);
            }
        }
    }
}

static size_t delivered_n;
static char *delivered;

static int
on_data(llsmtp_server *s, const char *p, size_t n)
{
    (void)s;
    delivered = (char *)realloc(delivered, delivered_n + n + 1);
    if (delivered == NULL)
        abort();
    memcpy(delivered + delivered_n, p, n);
    delivered_n += n;
    return LLSMTP_CB_OK;
}

/* The input as everything a server says to a client that acts on every
 * event; the session must always make progress and stay bounded. */
static void
session(const uint8_t *d, size_t n, size_t step)
{
    static const llsmtp_span to[2] = {{"a@b.c", 5}, {"d@e.f", 5}};
    static const llsmtp_span prm[2] = {{"NOTIFY=NEVER", 12}, {"", 0}};
    llsmtp_client c;
    llsmtp_client_cfg cfg;
    llsmtp_client_msg m;
    size_t off = 0, msgs = 0;
    char enc[64];
    memset(&cfg, 0, sizeof cfg);
    cfg.helo.p = "fuzz";
    cfg.helo.n = 4;
    cfg.flags = step % 2 ? LLSMTP_CLI_STARTTLS : LLSMTP_CLI_LMTP;
    if (step % 3 == 0) {
        cfg.user.p = cfg.password.p = "u";
        cfg.user.n = cfg.password.n = 1;
        cfg.flags |= LLSMTP_CLI_AUTH_CLEARTEXT;
    }
    memset(&m, 0, sizeof m);
    m.to = to;
    m.nto = 2;
    m.rcpt_params = prm;
    m.size = 100;
    m.flags = LLSMTP_MSG_8BIT;
    if (llsmtp_client_init(&c, &cfg) != LLSMTP_OK)
        abort();
    for (;;) {
        size_t len = n - off < step ? n - off : step, used, w;
        llsmtp_client_event ev;
        llsmtp_span out;
        int rc = llsmtp_client_feed(&c, (const char *)d + off, len, &used,
                                    &ev);
        if (used > len || (rc != 1 && rc != LLSMTP_OK) ||
            (rc == LLSMTP_OK && used != len))
            abort();
        off += used;
        out = llsmtp_client_output(&c);
        if (out.n > LLSMTP_CLIENT_OUT)
            abort();
        llsmtp_client_consume(&c, out.n);
        if (rc == 1) {
            if (ev.type == LLSMTP_CEV_READY) {
                if (msgs++ < 3)
                    llsmtp_client_mail(&c, &m);
                else
                    llsmtp_client_quit(&c);
            } else if (ev.type == LLSMTP_CEV_TLS) {
                llsmtp_client_tls_started(&c);
            } else if (ev.type == LLSMTP_CEV_BODY) {
                if (llsmtp_client_body(&c, ".x\n", 3, enc, sizeof enc, &w) !=
                        LLSMTP_OK ||
                    llsmtp_client_body_end(&c) != LLSMTP_OK)
                    abort();
            }
            continue;
        }
        if (off >= n)
            break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rec a = {0}, b = {0}, want = {0};
    size_t step = size ? 1 + data[0] % 13 : 1, i, used, o = 0;
    llsmtp_dot_encoder e;
    llsmtp_callbacks cb;
    llsmtp_config cfg;
    llsmtp_server *s;
    char *enc;
    int bol = 1;
    static const char head[] =
        "HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b.c>\r\nDATA\r\n";

    parse(data, size, size ? size : 1, &a);
    parse(data, size, step, &b);
    if (a.n != b.n || (a.n && memcmp(a.p, b.p, a.n) != 0))
        abort(); /* split-invariant */

    session(data, size, step);

    /* the body encoder against the server */
    enc = (char *)malloc(sizeof head + llsmtp_dot_encoded_max(size) + 8);
    if (enc == NULL)
        abort();
    memcpy(enc, head, sizeof head - 1);
    o = sizeof head - 1;
    llsmtp_dot_init(&e);
    for (i = 0; i < size; i += step) {
        size_t len = size - i < step ? size - i : step;
        o += llsmtp_dot_encode(&e, (const char *)data + i, len, enc + o,
                               llsmtp_dot_encoded_max(len));
    }
    o += llsmtp_dot_finish(&e, enc + o, 5);
    for (i = 0; i < size; i++) {
        if (data[i] == '\r' && i + 1 < size && data[i + 1] == '\n')
            i++;
        if (data[i] == '\r' || data[i] == '\n') {
            rec_add(&want, "\r\n", 2);
            bol = 1;
        } else {
            rec_add(&want, data + i, 1);
            bol = 0;
        }
    }
    if (!bol)
        rec_add(&want, "\r\n", 2);
    memset(&cb, 0, sizeof cb);
    cb.on_data = on_data;
    llsmtp_config_init(&cfg);
    cfg.callbacks = &cb;
    cfg.bare_lf = LLSMTP_BARE_LF_REJECT;
    s = (llsmtp_server *)malloc(llsmtp_server_size(&cfg));
    if (s == NULL || llsmtp_server_init(s, llsmtp_server_size(&cfg), &cfg,
                                        NULL) == NULL)
        abort();
    llsmtp_server_start(s);
    delivered_n = 0;
    if (llsmtp_server_feed(s, enc, o, &used) != LLSMTP_OK || used != o ||
        llsmtp_server_timeout(s, NULL) != LLSMTP_TIMEOUT_MAIL ||
        delivered_n != want.n ||
        (want.n && memcmp(delivered, want.p, want.n) != 0))
        abort();
    free(s);
    free(enc);
    free(a.p);
    free(b.p);
    free(want.p);
    return 0;
}
