/* SPDX-License-Identifier: MIT
 *
 * test_data.c - DATA differential tests: thousands of random bodies made
 * of the bytes that matter ('a', '.', CR, LF) go through the session in
 * random splits under each bare-LF policy, and the delivered message must
 * equal what an independent line-oriented model of RFC 5321 4.5.2 says.
 * Also checks the SIMD CR/LF scanner against the scalar reference.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"

/* Internal symbols of lib/server.c, exported from the static library. */
const char *llsmtp__scan_crlf(const char *p, const char *end);
const char *llsmtp__scan_crlf_scalar(const char *p, const char *end);

/* The model: splits the stream into lines and applies RFC 5321 4.5.2.
 * Returns 1 and fills *out when a terminator is found (and *bad when a
 * bare CR/LF was seen before it), 0 otherwise. */
static int
model(const char *in, size_t n, int policy, th_buf *out, int *bad)
{
    size_t i = 0;
    int prev_crlf = 1; /* the DATA line's CRLF */
    *bad = 0;
    while (i < n) {
        size_t start = i, len;
        int term = 0; /* 1 CRLF, 2 bare LF, 3 bare CR */
        size_t next = 0;
        while (i < n) {
            if (in[i] == '\r' && i + 1 < n && in[i + 1] == '\n') {
                term = 1;
                next = i + 2;
                break;
            }
            if (policy != LLSMTP_BARE_LF_PASS && in[i] == '\n') {
                term = 2;
                next = i + 1;
                break;
            }
            if (policy != LLSMTP_BARE_LF_PASS && in[i] == '\r' && i + 1 < n) {
                term = 3;
                next = i + 1;
                break;
            }
            i++;
        }
        if (term == 0)
            return 0; /* unterminated last line */
        len = i - start;
        if (len == 1 && in[start] == '.' && term == 1 && prev_crlf)
            return 1;
        if (term != 1)
            *bad = 1;
        if (len > 1 && in[start] == '.') {
            start++;
            len--;
        }
        th_buf_add(out, in + start, len);
        th_buf_add(out, "\r\n", 2);
        prev_crlf = term == 1;
        i = next;
    }
    return 0;
}

static void
run_random(int policy, unsigned iterations)
{
    static const char alphabet[] = "aaaa....\r\r\n\n";
    uint64_t seed = 0x1234567ULL + (unsigned)policy;
    unsigned it;
    llsmtp_config cfg;
    llsmtp_config_init(&cfg);
    cfg.hostname = "mx.example.test";
    cfg.callbacks = &th_callbacks;
    cfg.bare_lf = policy;

    for (it = 0; it < iterations; it++) {
        th_buf in = {0}, want = {0}, ev = {0}, expect = {0};
        size_t len = (size_t)(th_rand(&seed) % 200), k, body0;
        int bad = 0, split;
        th_buf_adds(&in, "EHLO x.test\r\nMAIL FROM:<a@b.test>\r\n"
                         "RCPT TO:<c@d.test>\r\nDATA\r\n");
        body0 = in.n;
        for (k = 0; k < len; k++) {
            char c = alphabet[th_rand(&seed) % (sizeof alphabet - 1)];
            th_buf_add(&in, &c, 1);
        }
        th_buf_adds(&in, "\r\n.\r\n");
        if (!model(in.p + body0, in.n - body0, policy, &want, &bad))
            fail_msg("model found no end");
        th_buf_adds(&in, "QUIT\r\n");
        if (policy == LLSMTP_BARE_LF_REJECT && bad) {
            th_buf_add(&expect, "abort bare_lf\n", 14);
        } else {
            th_buf_add(&expect, "data_end", 8);
            if (want.n) {
                th_buf_add(&expect, " ", 1);
                th_escape(&expect, want.p, want.n);
            }
            th_buf_add(&expect, "\n", 1);
        }
        for (split = 0; split < 3; split++) {
            th_host h;
            llsmtp_server *s;
            size_t cuts[512], nc = 0, left = in.n;
            const char *ev_data;
            memset(&h, 0, sizeof h);
            s = th_session(&cfg, &h);
            while (left && nc < 511) {
                size_t c = split == 0 ? left
                                      : 1 + (size_t)(th_rand(&seed) % 9);
                if (c > left)
                    c = left;
                cuts[nc++] = c;
                left -= c;
            }
            if (left)
                cuts[nc++] = left;
            th_run(s, &h, in.p, in.n, cuts, nc, 0);
            ev_data = strstr(h.events.p, "data_start\n");
            assert_non_null(ev_data);
            ev_data += strlen("data_start\n");
            if (strncmp(ev_data, expect.p, expect.n) != 0) {
                ev.n = 0;
                th_escape(&ev, in.p + body0, in.n - body0);
                fail_msg("policy %d input %s\nwant %s got %s", policy, ev.p,
                         expect.p, ev_data);
            }
            free(s);
            th_host_free(&h);
        }
        th_buf_free(&in);
        th_buf_free(&want);
        th_buf_free(&ev);
        th_buf_free(&expect);
    }
}

static unsigned
iterations(void)
{
    return getenv("LLSMTP_QUICK") ? 300 : 4000;
}

static void
test_random_normalize(void **state)
{
    (void)state;
    run_random(LLSMTP_BARE_LF_NORMALIZE, iterations());
}

static void
test_random_reject(void **state)
{
    (void)state;
    run_random(LLSMTP_BARE_LF_REJECT, iterations());
}

static void
test_random_pass(void **state)
{
    (void)state;
    run_random(LLSMTP_BARE_LF_PASS, iterations());
}

/* Under normalize, delivered content has CR only before LF, LF only after
 * CR: checked on raw bytes over random input. */
static int
norm_check_on_data(llsmtp_server *s, const char *p, size_t n)
{
    th_buf *b = &TH_HOST(s)->msg;
    th_buf_add(b, p, n);
    return LLSMTP_OK;
}

static void
test_normalize_no_bare(void **state)
{
    static const char alphabet[] = "a.\r\n";
    uint64_t seed = 77;
    unsigned it;
    llsmtp_callbacks cb = th_callbacks;
    llsmtp_config cfg;
    (void)state;
    cb.on_data = norm_check_on_data;
    llsmtp_config_init(&cfg);
    cfg.callbacks = &cb;
    for (it = 0; it < iterations(); it++) {
        th_host h;
        th_buf in = {0};
        llsmtp_server *s;
        size_t k, len = (size_t)(th_rand(&seed) % 300);
        memset(&h, 0, sizeof h);
        th_buf_adds(&in,
                    "HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<p@q.r>\r\nDATA\r\n");
        for (k = 0; k < len; k++) {
            char c = alphabet[th_rand(&seed) % 4];
            th_buf_add(&in, &c, 1);
        }
        th_buf_adds(&in, "\r\n.\r\n");
        s = th_session(&cfg, &h);
        th_run(s, &h, in.p, in.n, NULL, 0, 0);
        for (k = 0; k < h.msg.n; k++) {
            if (h.msg.p[k] == '\r')
                assert_true(k + 1 < h.msg.n && h.msg.p[k + 1] == '\n');
            if (h.msg.p[k] == '\n')
                assert_true(k > 0 && h.msg.p[k - 1] == '\r');
        }
        free(s);
        th_host_free(&h);
        th_buf_free(&in);
    }
}

static void
test_scan_simd_matches_scalar(void **state)
{
    char buf[300];
    uint64_t seed = 5;
    int it;
    (void)state;
    for (it = 0; it < 20000; it++) {
        size_t n = (size_t)(th_rand(&seed) % sizeof buf), i, start;
        for (i = 0; i < n; i++) {
            unsigned r = (unsigned)(th_rand(&seed) % 100);
            buf[i] = r < 2 ? '\r' : r < 4 ? '\n' : (char)('a' + r % 26);
        }
        start = n ? (size_t)(th_rand(&seed) % n) : 0;
        assert_ptr_equal(llsmtp__scan_crlf(buf + start, buf + n),
                         llsmtp__scan_crlf_scalar(buf + start, buf + n));
    }
}

/* A large message fed whole arrives in few zero-copy pieces. */
static int zc_calls;
static const char *zc_lo, *zc_hi;
static int zc_inside;
static int
zc_on_data(llsmtp_server *s, const char *p, size_t n)
{
    (void)s;
    zc_calls++;
    if (p >= zc_lo && p + n <= zc_hi)
        zc_inside++;
    return LLSMTP_OK;
}

static void
test_zero_copy(void **state)
{
    llsmtp_callbacks cb;
    llsmtp_config cfg;
    th_host h;
    th_buf in = {0};
    llsmtp_server *s;
    size_t used = 0, i;
    int rc;
    static const char line[] = "The quick brown fox jumps over the lazy "
                               "dog, again and again.\r\n";
    (void)state;
    memset(&cb, 0, sizeof cb);
    cb.on_data = zc_on_data;
    llsmtp_config_init(&cfg);
    cfg.callbacks = &cb;
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    assert_int_equal(llsmtp_server_start(s), LLSMTP_OK);
    th_buf_adds(&in, "HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<p@q.r>\r\nDATA\r\n");
    for (i = 0; i < 1000; i++)
        th_buf_adds(&in, line);
    th_buf_adds(&in, ".\r\n");
    zc_lo = in.p;
    zc_hi = in.p + in.n;
    rc = llsmtp_server_feed(s, in.p, in.n, &used);
    assert_int_equal(rc, LLSMTP_OK);
    assert_int_equal(used, in.n);
    assert_int_equal(zc_calls, 1);
    assert_int_equal(zc_inside, 1);
    assert_int_equal(llsmtp_server_data_size(s), 1000 * (sizeof line - 1));
    free(s);
    th_buf_free(&in);
}

/* ---- max_size: the same callbacks for any split ------------------------ */

/* on_data_abort that records what had been delivered before it, so the
 * log compares the octets joined, whatever the pieces were. */
static int
size_on_abort(llsmtp_server *s, int why)
{
    th_host *h = TH_HOST(s);
    th_buf_adds(&h->events, why == LLSMTP_ABORT_SIZE ? "abort size after "
                                                     : "abort other after ");
    th_escape(&h->events, h->msg.p ? h->msg.p : "", h->msg.n);
    th_buf_adds(&h->events, "\n");
    h->msg.n = 0;
    return LLSMTP_OK;
}

/* pause: on_data returns PENDING every time (the host's backpressure),
 * which must not change the log either. */
static void
size_run(const llsmtp_config *cfg, const char *in, size_t n,
         const size_t *cuts, size_t nc, int pause, th_buf *log)
{
    th_host h;
    llsmtp_server *s;
    memset(&h, 0, sizeof h);
    if (pause) {
        snprintf(h.rules[0].kind, sizeof h.rules[0].kind, "data");
        snprintf(h.rules[0].match, sizeof h.rules[0].match, "*");
        h.rules[0].pause = 1;
        h.nrules = 1;
    }
    s = th_session(cfg, &h);
    th_run(s, &h, in, n, cuts, nc, 0);
    log->n = 0;
    th_buf_add(log, h.events.p, h.events.n);
    th_buf_adds(log, "--\n");
    th_buf_add(log, h.out.p, h.out.n);
    th_buf_add(log, "", 1);
    free(s);
    th_host_free(&h);
}

static void
test_size_limit_split(void **state)
{
    /* max_size 10: exactly the first 10 octets of the message as stored
     * are delivered, then on_data_abort(SIZE), however the input is cut;
     * the limit may fall inside a line ending the library wrote */
    static const char in[] =
        "EHLO x.test\r\n"
        "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
        "0123456789\r\n.\r\n"
        "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
        "01234567\r\n.\r\n"
        "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
        "..abcdefgh\nxyz\r\n.\r\n"
        "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
        "012345678\n.\r\n"
        "QUIT\r\n";
    const size_t n = sizeof in - 1;
    llsmtp_callbacks cb = th_callbacks;
    llsmtp_config cfg;
    th_buf want = {0}, got = {0};
    size_t cut, i, *ones;
    int pause;
    (void)state;
    cb.on_data_abort = size_on_abort;
    llsmtp_config_init(&cfg);
    cfg.hostname = "mx.example.test";
    cfg.callbacks = &cb;
    cfg.max_size = 10;
    size_run(&cfg, in, n, NULL, 0, 0, &want);
    if (strstr(want.p, "abort size after 0123456789\n") == NULL ||
        strstr(want.p, "data_end 01234567\\r\\n\n") == NULL ||
        strstr(want.p, "abort size after .abcdefgh\\r\n") == NULL ||
        strstr(want.p, "abort size after 012345678\\r\n") == NULL)
        fail_msg("whole:\n%s", want.p);
    ones = (size_t *)malloc(n * sizeof *ones);
    assert_non_null(ones);
    for (i = 0; i < n; i++)
        ones[i] = 1;
    for (pause = 0; pause < 2; pause++) {
        size_run(&cfg, in, n, NULL, 0, pause, &got);
        if (strcmp(got.p, want.p) != 0)
            fail_msg("whole, pause %d:\n%s\nwant:\n%s", pause, got.p, want.p);
        size_run(&cfg, in, n, ones, n, pause, &got);
        if (strcmp(got.p, want.p) != 0)
            fail_msg("byte by byte, pause %d:\n%s\nwant:\n%s", pause, got.p,
                     want.p);
    }
    for (cut = 1; cut < n; cut++) {
        size_t cuts[2];
        cuts[0] = cut;
        cuts[1] = n - cut;
        size_run(&cfg, in, n, cuts, 2, (int)(cut & 1), &got);
        if (strcmp(got.p, want.p) != 0)
            fail_msg("cut at %zu:\n%s\nwant:\n%s", cut, got.p, want.p);
    }
    free(ones);
    th_buf_free(&want);
    th_buf_free(&got);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_normalize),
        cmocka_unit_test(test_random_reject),
        cmocka_unit_test(test_random_pass),
        cmocka_unit_test(test_normalize_no_bare),
        cmocka_unit_test(test_scan_simd_matches_scalar),
        cmocka_unit_test(test_zero_copy),
        cmocka_unit_test(test_size_limit_split),
    };
    return cmocka_run_group_tests_name("data", tests, NULL, NULL);
}
