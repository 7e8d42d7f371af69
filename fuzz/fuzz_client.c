/* SPDX-License-Identifier: MIT
 *
 * fuzz_client.c - libFuzzer target for the client building blocks. The
 * reply parser must give the same lines (and the same error) however the
 * input is split, never a line over 512 octets; the body encoder, fed the
 * input as a message body in fuzzer-chosen pieces, must make a server
 * session deliver exactly the CRLF-normalised body and end the message
 * exactly where the encoder ended it. The client session, its
 * configuration, messages and host behaviour chosen by the first bytes
 * and the rest fed as server replies in random splits, must never crash,
 * stall, overflow its output or report a message delivered whose body it
 * never sent.
 */
#include <llsmtp.h>

#include <stdint.h>
#include <stdio.h>
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
    void *mem = malloc(llsmtp_reply_parser_size());
    llsmtp_reply_parser *p = llsmtp_reply_parser_init(
        mem, llsmtp_reply_parser_size(), 8);
    size_t off = 0;
    if (p == NULL)
        abort();
    while (off < n) {
        size_t len = n - off < step ? n - off : step, used;
        while (len) {
            llsmtp_reply_line l;
            int rc = llsmtp_reply_parser_feed(p, (const char *)d + off, len,
                                              &used, &l);
            if (used > len)
                abort();
            off += used;
            len -= used;
            if (rc == LLSMTP_E_SYNTAX) {
                rec_add(out, "E", 1);
                free(mem);
                return;
            }
            if (rc == LLSMTP_EVENT) {
                if (l.text.n > 508 || l.code < 200 || l.code > 599)
                    abort();
                rec_add(out, &l.code, sizeof l.code);
                rec_add(out, &l.last, sizeof l.last);
                rec_add(out, l.text.p, l.text.n);
                rec_add(out, "|", 1);
            }
        }
    }
    free(mem);
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
    return LLSMTP_OK;
}

/* xorshift64*: the host's choices after the configuration bytes. */
static uint64_t
fz_rand(uint64_t *st)
{
    uint64_t x = *st;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *st = x;
    return x * 0x2545F4914F6CDD1DULL;
}

#define FZ_CFG 6 /* configuration bytes after the split byte */

/* What llsmtp_client_wants() says must match the session: WRITE exactly
 * when output waits, EVENT with nothing but WRITE, one of the others
 * otherwise (a session always wants something). */
static void
check_wants(const llsmtp_client *c)
{
    unsigned w = llsmtp_client_wants(c);
    if (((w & LLSMTP_WANT_WRITE) != 0) != (llsmtp_client_output(c).n > 0))
        abort();
    if ((w & LLSMTP_WANT_EVENT) &&
        (w & ~(unsigned)(LLSMTP_WANT_EVENT | LLSMTP_WANT_WRITE)))
        abort();
    if (w == 0)
        abort();
}

/* The input as everything a server says to a client whose configuration,
 * messages and host behaviour the first bytes choose:
 *   c[0] client flags (STARTTLS, REQUIRE_TLS, LMTP, AUTH_CLEARTEXT,
 *        NO_PIPELINING), bit 5 credentials, bits 6-7 messages (1..4)
 *   c[1] message: 8BIT, SMTPUTF8, DSN mail params, DSN rcpt params, null
 *        reverse-path, bits 5-7 SIZE (0, 100, 2^32, 2^63, UINT64_MAX..)
 *   c[2] recipients: 1..16, or 300 (more than the output queue holds)
 *   c[3] host: bits 0-1 drain (all, random part, only at events, never
 *        until the session waits), bit 2 body writes drained in random
 *        parts, bit 3 body in pieces, bit 4 the TLS handshake fails, bit
 *        5 time out at a random point, bit 6 feed empty chunks too, bit 7
 *        replies of at most 3 lines and the smallest output queue
 *   c[4..5] seed for the split sizes and the host's other choices
 * The session must make progress, stay bounded, say in wants() what it
 * is waiting for, and never report a message delivered unless its body
 * was sent after a 354. */
static void
session(const uint8_t *cfgb, const uint8_t *d, size_t n)
{
    static char names[300][16];
    static llsmtp_span to[300], prm[300];
    static const uint64_t sizes[8] = {0,          100, 1ull << 32, 1ull << 63,
                                      UINT64_MAX, 1,   99999999,   5000};
    static const char body[] = ".x\nline\r\n..y\rz\xc3\xa9\r\n.\r\n";
    llsmtp_client *c;
    llsmtp_client_cfg cfg;
    llsmtp_client_msg m;
    size_t off = 0, msgs = 0, nmsgs, i, spins = 0, stop_at, size;
    unsigned drain, host;
    uint64_t rng;
    int body_sent = 0, in_msg = 0, dead = 0;
    void *mem;
    for (i = 0; i < 300 && names[i][0] == '\0'; i++) {
        int k = snprintf(names[i], sizeof names[i], "r%zu@x.y", i);
        to[i].p = names[i];
        to[i].n = (size_t)k;
        prm[i].p = i % 2 ? "NOTIFY=NEVER" : "ORCPT=rfc822;r+40x.y";
        prm[i].n = strlen(prm[i].p);
    }
    if (llsmtp_client_cfg_init(&cfg) != LLSMTP_OK ||
        llsmtp_client_msg_init(&m) != LLSMTP_OK)
        abort();
    cfg.helo.p = "fuzz";
    cfg.helo.n = 4;
    cfg.flags = cfgb[0] & 0x1f;
    if (cfgb[0] & 0x20) {
        cfg.user.p = "user";
        cfg.user.n = 4;
        cfg.password.p = "pass";
        cfg.password.n = 4;
    }
    if (cfgb[3] & 0x80) {
        cfg.max_reply_lines = 3;
        cfg.output_size = 1024;
    }
    nmsgs = 1 + (cfgb[0] >> 6);
    m.to = to;
    m.nto = cfgb[2] >= 0xf0 ? 300 : 1 + cfgb[2] % 16;
    m.flags = cfgb[1] & 3;
    if (cfgb[1] & 4) {
        m.mail_params.p = "RET=HDRS ENVID=a+2Bb";
        m.mail_params.n = 20;
    }
    if (cfgb[1] & 8)
        m.rcpt_params = prm;
    if (!(cfgb[1] & 16)) {
        m.from.p = "s@x.y";
        m.from.n = 5;
    }
    m.size = sizes[cfgb[1] >> 5];
    drain = cfgb[3] & 3;
    host = cfgb[3];
    rng = ((uint64_t)cfgb[4] << 8 | cfgb[5]) * 0x9E3779B97F4A7C15ull + 1;
    stop_at = host & 0x20 ? (size_t)(fz_rand(&rng) % (n + 1)) : (size_t)-1;
    size = llsmtp_client_size(&cfg);
    mem = malloc(size);
    if (size == 0 || mem == NULL ||
        (c = llsmtp_client_init(mem, size, &cfg, NULL)) == NULL)
        abort();
    for (;;) {
        size_t len, used = 0;
        llsmtp_client_event ev;
        llsmtp_span out;
        unsigned t;
        int rc;
        /* gcc -O3 -flto cannot see every path set it */
        memset(&ev, 0, sizeof ev);
        if (++spins > 100000 + 10 * n)
            abort(); /* no progress */
        check_wants(c);
        if (off >= stop_at)
            break; /* the host timed out waiting */
        len = 1 + (size_t)(fz_rand(&rng) % 64);
        if ((host & 0x40) && fz_rand(&rng) % 4 == 0)
            len = 0;
        if (len > n - off)
            len = n - off;
        if ((llsmtp_client_wants(c) & LLSMTP_WANT_EVENT) && fz_rand(&rng) % 2)
            rc = llsmtp_client_next_event(c, &ev);
        else
            rc = llsmtp_client_feed(c, (const char *)d + off, len, &used, &ev);
        if (used > len || (rc != LLSMTP_EVENT && rc != LLSMTP_OK) ||
            (rc == LLSMTP_OK && used != len))
            abort();
        off += used;
        used = 0;
        if (rc == LLSMTP_OK && (llsmtp_client_wants(c) & LLSMTP_WANT_EVENT))
            abort(); /* feed returns a queued event first */
        out = llsmtp_client_output(c);
        if (out.n > cfg.output_size)
            abort();
        t = llsmtp_client_timeout(c);
        if (t != 0 && t != 120 && t != 180 && t != 300 && t != 600)
            abort();
        /* the host writes all, part, or (for a while) nothing */
        if (drain == 0 || (drain == 2 && rc == LLSMTP_EVENT) ||
            (drain == 3 && rc == LLSMTP_OK))
            llsmtp_client_consume(c, out.n);
        else if (drain == 1 && out.n)
            llsmtp_client_consume(c, (size_t)(fz_rand(&rng) % (out.n + 1)));
        if (rc == LLSMTP_EVENT) {
            if (dead && ev.type != LLSMTP_CEV_FAIL)
                abort(); /* nothing happens after the end */
            if (ev.enhanced[11] != '\0' ||
                (ev.enhanced[0] && ev.enhanced[0] != '0' + ev.code / 100))
                abort(); /* an enhanced code of the reply's class */
            switch (ev.type) {
            case LLSMTP_CEV_READY:
                in_msg = 0;
                if (msgs++ < nmsgs) {
                    body_sent = 0;
                    if (llsmtp_client_mail(c, &m) == LLSMTP_OK)
                        in_msg = 1;
                } else {
                    llsmtp_client_quit(c);
                }
                break;
            case LLSMTP_CEV_TLS:
                if (host & 0x10)
                    goto out; /* handshake failed: the host closes */
                llsmtp_client_consume(c, llsmtp_client_output(c).n);
                if (llsmtp_client_wants(c) != LLSMTP_WANT_TLS ||
                    llsmtp_client_tls_started(c) != LLSMTP_OK)
                    abort();
                break;
            case LLSMTP_CEV_RCPT:
                if (!in_msg || ev.rcpt < 0 || (size_t)ev.rcpt >= m.nto)
                    abort();
                break;
            case LLSMTP_CEV_BODY: {
                /* RFC 5321 4.3.2: only 354 starts the body */
                size_t bo = 0, piece = host & 8 ? 5 : sizeof body - 1;
                int brc = LLSMTP_OK;
                if (!in_msg || ev.code != 354 ||
                    llsmtp_client_wants(c) !=
                        (LLSMTP_WANT_RESUME |
                         (llsmtp_client_output(c).n ? LLSMTP_WANT_WRITE : 0)))
                    abort();
                while (bo < sizeof body - 1) {
                    size_t k = sizeof body - 1 - bo < piece
                                   ? sizeof body - 1 - bo
                                   : piece;
                    brc = llsmtp_client_body(c, body + bo, k, &used);
                    bo += used;
                    if (brc == LLSMTP_BLOCKED) {
                        out = llsmtp_client_output(c);
                        if (out.n == 0)
                            abort(); /* blocked on nothing */
                        llsmtp_client_consume(
                            c, host & 4 ? 1 + (size_t)(fz_rand(&rng) % out.n)
                                        : out.n);
                    } else if (brc != LLSMTP_OK) {
                        break;
                    }
                }
                if (brc != LLSMTP_OK) {
                    /* 8-bit octets in a message declared 7-bit */
                    if (brc != LLSMTP_E_SYNTAX ||
                        (m.flags & LLSMTP_MSG_8BIT) ||
                        !(llsmtp_client_wants(c) & LLSMTP_WANT_CLOSE))
                        abort();
                    break;
                }
                while ((brc = llsmtp_client_body_end(c)) == LLSMTP_BLOCKED)
                    llsmtp_client_consume(c, llsmtp_client_output(c).n);
                if (brc != LLSMTP_OK)
                    abort();
                body_sent = 1;
                break;
            }
            case LLSMTP_CEV_MESSAGE:
                if (!in_msg || ev.rcpt >= (long)m.nto || ev.rcpt < -1)
                    abort();
                /* delivered only if the body went out */
                if (ev.code / 100 == 2 && !ev.local && !body_sent)
                    abort();
                break;
            case LLSMTP_CEV_FAIL:
            case LLSMTP_CEV_CLOSED:
                dead = 1;
                break;
            default:
                abort();
            }
            continue;
        }
        if (off >= n)
            break;
    }
out:
    /* written out, the queue empties (refilled with pipelined RCPTs at
     * most until DATA) */
    for (i = 0; i < 1000 && llsmtp_client_output(c).n; i++)
        llsmtp_client_consume(c, (size_t)-1);
    if (llsmtp_client_output(c).n != 0)
        abort();
    free(mem);
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

    if (size > 1 + FZ_CFG)
        session(data + 1, data + 1 + FZ_CFG, size - 1 - FZ_CFG);
    else {
        static const uint8_t none[FZ_CFG];
        session(none, data, size);
    }

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
    if (s == NULL ||
        llsmtp_server_init(s, llsmtp_server_size(&cfg), &cfg, NULL) == NULL)
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
