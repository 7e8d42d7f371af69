/* SPDX-License-Identifier: MIT
 *
 * test_log.c - examples/smtpd/log.c's line formatter: the conversions it
 * writes itself (log_simple: %s %d %u %ld %lu %zu %.*s %%) must give what
 * vsnprintf gives, octet for octet and cut at the same place, for
 * generated values and line sizes; any other format goes to vsnprintf.
 * log.c is included whole, so its static functions are reachable. POSIX
 * (gmtime_r, getpid), like smtpd: not built for win64.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../examples/smtpd/log.c"

static unsigned long long rng = 0x9e3779b97f4a7c15ULL;

static unsigned long
next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned long)(rng >> 11);
}

/* What log_format wrote for fmt and its arguments, against the line the
 * formatter before log_simple made: the prefix, vsnprintf's text cut to
 * fit, '\n'. */
static void
check(size_t cap, const char *fmt, ...)
{
    static char got[LOG_LINE_MAX], want[LOG_LINE_MAX];
    va_list ap, ap2;
    size_t n, w;
    int m;
    assert_true(cap >= 2 && cap <= sizeof got);
    va_start(ap, fmt);
    va_copy(ap2, ap);
    n = log_format(got, cap, fmt, ap);
    va_end(ap);
    /* the prefix log_format used (rebuilt at most once a second) */
    w = lg.prefix_len > cap - 2 ? cap - 2 : lg.prefix_len;
    memcpy(want, lg.prefix, w);
    m = vsnprintf(want + w, cap - w - 1, fmt, ap2);
    va_end(ap2);
    assert_true(m >= 0);
    w += (size_t)m < cap - w - 1 ? (size_t)m : cap - w - 2;
    want[w++] = '\n';
    if (n != w || memcmp(got, want, n) != 0)
        fail_msg("format \"%s\", cap %zu: got %zu octets, want %zu", fmt, cap,
                 n, w);
}

/* A line size: most of the time one with room, else one that cuts the
 * line anywhere in it (the prefix is about 40 octets). */
static size_t
some_cap(void)
{
    if (next() % 3 != 0)
        return LOG_LINE_MAX;
    return 2 + next() % 120;
}

/* A string of 0 to 30 octets (or, now and then, longer than a line). */
static const char *
some_text(char *buf, size_t cap)
{
    size_t n = next() % 8 == 0 ? cap - 1 : next() % 31, i;
    for (i = 0; i < n; i++)
        buf[i] = (char)(1 + next() % 255);
    buf[n] = '\0';
    return buf;
}

static long
some_long(void)
{
    static const long edge[] = {0,   1,        -1,       9,       10,
                                -10, LONG_MAX, LONG_MIN, INT_MAX, INT_MIN};
    if (next() % 2)
        return edge[next() % (sizeof edge / sizeof edge[0])];
    return (long)(next() >> 1) * (next() % 2 ? 1 : -1); /* no overflow */
}

static unsigned long
some_ulong(void)
{
    static const unsigned long edge[] = {0,  1,   9,         10,
                                         99, 100, ULONG_MAX, UINT_MAX};
    if (next() % 2)
        return edge[next() % (sizeof edge / sizeof edge[0])];
    return next() >> (next() % (sizeof(unsigned long) * CHAR_BIT));
}

static void
test_simple_matches_vsnprintf(void **state)
{
    static char a[LOG_LINE_MAX + 100], b[64];
    int i;
    (void)state;
    log_init("smtpd");
    for (i = 0; i < 40000; i++) {
        size_t cap = some_cap();
        long l = some_long();
        unsigned long u = some_ulong();
        int prec = (int)(next() % 40) - 5;
        switch (i % 8) {
        case 0: /* smtpd's lines a message */
            check(cap, "session=%lu mail=<%s>", u, some_text(a, sizeof a));
            break;
        case 1:
            check(cap, "session=%lu queued=%s from=<%s> nrcpt=%zu", u,
                  some_text(a, sizeof a), some_text(b, sizeof b),
                  (size_t)some_ulong());
            break;
        case 2:
            check(cap, "%d|%u|%ld|%lu|%zu", (int)l, (unsigned)u, l, u,
                  (size_t)u);
            break;
        case 3:
            check(cap, "%.*s>%.*s", prec, some_text(a, sizeof a),
                  (int)(next() % 5), some_text(b, sizeof b));
            break;
        case 4:
            check(cap, "100%% %s%%%d%%", some_text(b, sizeof b), (int)l);
            break;
        case 5:
            check(cap, "%s%s", some_text(a, sizeof a), some_text(b, sizeof b));
            break;
        case 6: /* no conversion at all; none at all */
            check(cap, "plain text, no conversion");
            check(cap, "");
            break;
        default: /* not log_simple's: vsnprintf's */
            check(cap, "%5d %x %-4s %c %lx %02X %zd", (int)l, (unsigned)u,
                  some_text(b, sizeof b), 'q', u, (unsigned)(u & 0xff),
                  (ptrdiff_t)l);
            break;
        }
    }
}

static void
test_which_formats_are_simple(void **state)
{
    (void)state;
    assert_true(log_simple_ok("session=%lu mail=<%s>"));
    assert_true(log_simple_ok("session=%lu queued=%s discarded"));
    assert_true(log_simple_ok("a %d %u %ld %lu %zu %.*s %% b"));
    assert_true(log_simple_ok(""));
    assert_false(log_simple_ok("%5d"));
    assert_false(log_simple_ok("%x"));
    assert_false(log_simple_ok("%-s"));
    assert_false(log_simple_ok("%.3s"));
    assert_false(log_simple_ok("%lx"));
    assert_false(log_simple_ok("%zd"));
    assert_false(log_simple_ok("%c"));
    assert_false(log_simple_ok("%"));
    assert_false(log_simple_ok("%l"));
    assert_false(log_simple_ok("%.*"));
}

#ifdef __GLIBC__
/* glibc prints a null string as "(null)"; log_simple does the same. */
static void
test_null_string(void **state)
{
    const char *none = NULL;
    (void)state;
    check(LOG_LINE_MAX, "x=%s y=%.*s", none, 3, none);
}
#endif

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_matches_vsnprintf),
        cmocka_unit_test(test_which_formats_are_simple),
#ifdef __GLIBC__
        cmocka_unit_test(test_null_string),
#endif
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
