/* SPDX-License-Identifier: MIT
 *
 * test_reply.c - reply validation (codes, RFC 3463 enhanced codes, text
 * limits) and the writer: sanitising, multiline, folding at 512 octets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"
#include "internal.h"

static void
test_reply_set_validation(void **state)
{
    llsmtp_reply r = LLSMTP_REPLY_INIT;
    char big[LLSMTP_REPLY_TEXT_MAX + 2];
    (void)state;
    assert_int_equal(llsmtp_reply_set(&r, 550, "5.1.1", "No such user"),
                     LLSMTP_OK);
    assert_int_equal(r.code, 550);
    assert_string_equal(r.enhanced, "5.1.1");
    assert_int_equal(llsmtp_reply_set(&r, 199, NULL, "x"), LLSMTP_E_REPLY);
    assert_int_equal(llsmtp_reply_set(&r, 600, NULL, "x"), LLSMTP_E_REPLY);
    assert_int_equal(r.code, 550); /* unchanged on error */
    assert_int_equal(llsmtp_reply_set(&r, 550, "4.1.1", "x"), LLSMTP_E_REPLY);
    assert_int_equal(llsmtp_reply_set(&r, 550, "5.01.1", "x"), LLSMTP_E_REPLY);
    assert_int_equal(llsmtp_reply_set(&r, 550, "5.1000.1", "x"),
                     LLSMTP_E_REPLY);
    assert_int_equal(llsmtp_reply_set(&r, 550, "5.1", "x"), LLSMTP_E_REPLY);
    assert_int_equal(llsmtp_reply_set(&r, 550, "5.1.1x", "x"), LLSMTP_E_REPLY);
    assert_int_equal(llsmtp_reply_set(&r, 354, "3.0.0", "x"), LLSMTP_E_REPLY);
    assert_int_equal(llsmtp_reply_set(&r, 354, NULL, "go"), LLSMTP_OK);
    assert_string_equal(r.enhanced, "");
    assert_int_equal(llsmtp_reply_set(&r, 451, NULL, NULL), LLSMTP_OK);
    assert_string_equal(r.enhanced, "4.0.0");
    assert_int_equal(llsmtp_reply_set(&r, 250, "2.999.999", "ok"), LLSMTP_OK);
    memset(big, 'x', sizeof big);
    big[sizeof big - 1] = '\0';
    assert_int_equal(llsmtp_reply_set(&r, 550, NULL, big), LLSMTP_E_REPLY);
    assert_int_equal(
        llsmtp_reply_set(
            &r, 550, NULL,
            "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n16\n17"),
        LLSMTP_E_REPLY);
    assert_int_equal(llsmtp_reply_set_id(&r, "ABC", 3), LLSMTP_OK);
    assert_int_equal(llsmtp_reply_set_id(&r, "A C", 3), LLSMTP_E_REPLY);
    assert_int_equal(llsmtp_reply_set_id(&r, "A\r\n", 3), LLSMTP_E_REPLY);
}

static size_t
fmt(const llsmtp_reply *r, int enh, char *buf, size_t n)
{
    memset(buf, 'X', n); /* the NUL must come from the library */
    return llsmtp_reply_format(r, enh, buf, n);
}

static void
test_format(void **state)
{
    llsmtp_reply r = LLSMTP_REPLY_INIT;
    char buf[4096];
    (void)state;
    llsmtp_reply_set(&r, 550, "5.7.1", "Relaying denied");
    fmt(&r, 1, buf, sizeof buf);
    assert_string_equal(buf, "550 5.7.1 Relaying denied\r\n");
    fmt(&r, 0, buf, sizeof buf);
    assert_string_equal(buf, "550 Relaying denied\r\n");
    llsmtp_reply_set(&r, 250, NULL, "line1\nline2\r\nline3\n");
    fmt(&r, 1, buf, sizeof buf);
    assert_string_equal(buf, "250-2.0.0 line1\r\n250-2.0.0 line2\r\n"
                             "250 2.0.0 line3\r\n");
    /* injection attempts: CR alone, NUL, other controls */
    /* clang-format off */
    llsmtp_reply_setn(&r, 550, NULL, "a\rb\0c\x1b" "d\te", 9);
    /* clang-format on */
    fmt(&r, 0, buf, sizeof buf);
    assert_string_equal(buf, "550 a b?c?d e\r\n");
    llsmtp_reply_setn(&r, 550, NULL, "x\r\n250 fake", 11);
    fmt(&r, 0, buf, sizeof buf);
    assert_string_equal(buf, "550-x\r\n550 250 fake\r\n");
    /* generic text when none is given */
    llsmtp_reply_set(&r, 421, "4.3.2", NULL);
    fmt(&r, 1, buf, sizeof buf);
    assert_string_equal(buf, "421 4.3.2 Service not available, closing "
                             "transmission channel\r\n");
    /* too small a buffer writes nothing but the NUL */
    assert_int_equal(llsmtp_reply_format(&r, 1, buf, 10), 0);
    assert_string_equal(buf, "");
    /* exactly enough room: the text and its NUL */
    assert_int_equal(llsmtp_reply_format(&r, 1, buf, 64), 63);
    assert_int_equal(llsmtp_reply_format(&r, 1, buf, 63), 0);
}

static void
test_folding(void **state)
{
    llsmtp_reply r = LLSMTP_REPLY_INIT;
    char text[1002], buf[4096];
    size_t i, w, line = 0, lines = 0;
    (void)state;
    /* no spaces: hard breaks; 500 text octets fit one line with
     * "550-5.7.1 " and CRLF, so 1001 octets take three lines */
    memset(text, 'q', 1001);
    text[1001] = '\0';
    llsmtp_reply_set(&r, 550, "5.7.1", text);
    w = fmt(&r, 1, buf, sizeof buf);
    for (i = 0; i < w; i++) {
        line++;
        if (buf[i] == '\n') {
            assert_true(line <= 512); /* RFC 5321 4.5.3.1.5 */
            line = 0;
            lines++;
        }
    }
    assert_int_equal(lines, 3);
    assert_memory_equal(buf, "550-5.7.1 qqq", 13);
    assert_non_null(strstr(buf, "\r\n550 5.7.1 q"));
}

/* The writer copies runs of plain octets at once and falls back to one
 * octet at a time at control octets, line ends and folds: the output must
 * not depend on how the text is cut into parts (one part, one part per
 * octet, random cuts), and every line stays within 512 octets. */
static void
test_rendering_independent_of_parts(void **state)
{
    static const char alpha[] = "ab  \r\n\t\x01\x7f\x80xyz0123<>@.";
    static char text[1400], a[4096], b[4096];
    static llsmtp_span parts[1400];
    uint64_t seed = 12345;
    int round;
    (void)state;
    for (round = 0; round < 3000; round++) {
        size_t n, i, np = 0, wa, wb, cap, line = 0;
        int mode;
        const char *enh;
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        n = (size_t)((seed >> 33) % (round % 4 == 0 ? 1400 : 80));
        mode = (int)((seed >> 20) % 3);
        enh = (seed >> 40) % 2 ? "2.1.5" : NULL;
        cap = (seed >> 41) % 3 == 0 ? (size_t)((seed >> 45) % 1200) : sizeof a;
        for (i = 0; i < n; i++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            text[i] = mode == 0
                          ? alpha[(size_t)((seed >> 33) % (sizeof alpha - 1))]
                      : mode == 1 ? ((seed >> 33) % 8 ? 'q' : ' ')
                                  : (char)(seed >> 33);
        }
        parts[0].p = text;
        parts[0].n = n;
        wa = llsmtp__reply_write(a, cap, 250, enh, parts, 1);
        for (i = 0; i < n; np++) {
            size_t k = round % 2 ? 1 : 1 + (size_t)((seed >> (np % 40)) % 7);
            if (k > n - i)
                k = n - i;
            parts[np].p = text + i;
            parts[np].n = k;
            i += k;
        }
        wb = llsmtp__reply_write(b, cap, 250, enh, parts, np);
        assert_int_equal(wa, wb);
        assert_memory_equal(a, b, wa);
        for (i = 0; i < wa; i++) {
            assert_true(a[i] == '\r' || a[i] == '\n' ||
                        (a[i] >= 0x20 && a[i] < 0x7f));
            line++;
            if (a[i] == '\n') {
                assert_true(line <= 512 && a[i - 1] == '\r');
                line = 0;
            }
        }
    }
}

/* The fast way (one line of plain text, llsmtp__reply_write_plain) and
 * the general way (octet by octet) write the same octets: generated
 * replies of every shape, plain or not (control octets, DEL, UTF-8 and
 * other high octets, CR, LF, tabs, spaces at the fold), lengths around
 * the 512-octet line, with and without an enhanced code, any code, and
 * output buffers from too small to ample. */
static void
test_fast_writer_matches_general(void **state)
{
    static const char *const enhs[] = {NULL,     "",         "2.1.5",
                                       "5.7.1",  "4.5.3",    "2.0.0",
                                       "5.1.10", "2.999.999"};
    static const char hostile[] = " \r\n\t\x01\x7f\x80\xc3\xa9\xff\0<>@.\"\\";
    static char text[1200], a[2048], b[2048];
    llsmtp_span parts[6];
    uint64_t seed = 20260715;
    int round, plain_rounds = 0;
    (void)state;
    for (round = 0; round < 200000; round++) {
        size_t np = (size_t)(th_rand(&seed) % 5), used = 0, i, j, cap;
        size_t wa, wb, wp, elen, total = 0;
        int code = (int)(150 + th_rand(&seed) % 500), plain = 1;
        unsigned mix = (unsigned)(th_rand(&seed) % 4);
        const char *enh = enhs[th_rand(&seed) % (sizeof enhs / sizeof *enhs)];
        for (i = 0; i < np; i++) {
            /* short parts mostly, some near a whole line */
            size_t n = th_rand(&seed) % 4 == 0
                           ? 480 + (size_t)(th_rand(&seed) % 60)
                           : (size_t)(th_rand(&seed) % 40);
            if (n > sizeof text - used)
                n = sizeof text - used;
            for (j = 0; j < n; j++) {
                uint64_t r = th_rand(&seed);
                char c = (char)(0x21 + r % 94);
                if (mix != 0 && r % 97 == 0)
                    c = hostile[(r >> 8) % (sizeof hostile - 1)];
                else if (r % 11 == 0)
                    c = ' ';
                text[used + j] = c;
                if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f)
                    plain = 0;
            }
            parts[i].p = n ? text + used : (th_rand(&seed) % 2 ? NULL : text);
            parts[i].n = n;
            used += n;
            total += n;
        }
        cap = th_rand(&seed) % 3 == 0 ? (size_t)(th_rand(&seed) % 560)
                                      : sizeof a;
        elen = enh != NULL ? strlen(enh) : 0;
        memset(a, 'X', sizeof a);
        memset(b, 'X', sizeof b);
        wa = llsmtp__reply_write(a, cap, code, enh, parts, np);
        wb = llsmtp__reply_write_general(b, cap, code, enh, parts, np);
        assert_int_equal(wa, wb);
        assert_memory_equal(a, b, sizeof a); /* nothing past the reply */
        if (!plain)
            continue;
        memset(a, 'X', sizeof a);
        wp = llsmtp__reply_write_plain(a, cap, code, enh, elen, parts, np);
        if (wp == 0) {
            /* only when it takes more than a line, or does not fit */
            assert_true(wb == 0 ||
                        total > 512 - 2 - 4 - (elen ? elen + 1 : 0));
            continue;
        }
        plain_rounds++;
        assert_int_equal(wp, wb);
        assert_memory_equal(a, b, sizeof a);
    }
    assert_true(plain_rounds > 10000);
}

/* Every code has a text and a well-formed line; 3xx carry no enhanced
 * code, others the class or the code's usual one. */
static void
test_every_code(void **state)
{
    int code;
    (void)state;
    for (code = 200; code <= 599; code++) {
        llsmtp_reply r = LLSMTP_REPLY_INIT;
        char buf[600];
        size_t n;
        assert_int_equal(llsmtp_reply_set(&r, code, NULL, NULL), LLSMTP_OK);
        n = llsmtp_reply_format(&r, 1, buf, sizeof buf);
        assert_true(n > 6 && buf[3] == ' ' && buf[n - 2] == '\r' &&
                    buf[n - 1] == '\n');
        assert_int_equal(buf[0] - '0', code / 100);
        if (code / 100 == 3)
            assert_int_equal(r.enhanced[0], '\0');
        else
            assert_int_equal(r.enhanced[0] - '0', code / 100);
        assert_true(n - 2 > 4 + strlen(r.enhanced) + 1); /* some text */
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_code),
        cmocka_unit_test(test_reply_set_validation),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_folding),
        cmocka_unit_test(test_rendering_independent_of_parts),
        cmocka_unit_test(test_fast_writer_matches_general),
    };
    return cmocka_run_group_tests_name("reply", tests, NULL, NULL);
}
