/* SPDX-License-Identifier: MIT
 *
 * log.c - the log of smtpd, its queue runners and smtp-send. It owns the
 * line prefix (UTC time and pid, cached: the time string changes once a
 * second and the pid only in a child, and both cost more than the line
 * itself when a message has 50 recipients) and the held lines of a
 * session that may be a health check. Everything goes to stderr, which
 * smtpd buffers and flushes once per poll round.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_HELD_MAX 16384 /* a session that logs more is not a check */
#define LOG_BUF (1 << 16)  /* stderr's buffer, see log_buffer */
#define LOG_LINE_MAX 8192  /* a longer line is cut */

/* The prefix cache: one per process, like stderr itself. The prefix
 * ("TIME PROG[PID]: ") is rebuilt when the second or the pid changes. */
static struct {
    const char *prog;
    long pid;
    time_t sec;
    char prefix[96];
    size_t prefix_len;
    size_t pending; /* octets in stderr's buffer, at most */
} lg = {"smtpd", 0, -1, "", 0, 0};

void
log_buffer(void)
{
    /* our own buffer: given NULL, glibc ignores the size and takes the
     * file's block size (4 KiB), and log_put's count would be wrong */
    static char buf[LOG_BUF];
    setvbuf(stderr, buf, _IOFBF, sizeof buf);
    lg.pending = 0;
}

void
log_flush(void)
{
    fflush(stderr);
    lg.pending = 0;
}

/* Whole lines into stderr's buffer, which is written out before a line
 * would not fit: never in the middle of a line, so a queue runner's
 * line, or the storage thread's, can only land between two. */
static void
log_put(const char *p, size_t n)
{
    if (lg.pending + n > LOG_BUF)
        log_flush();
    fwrite(p, 1, n, stderr);
    lg.pending += n;
}

void
log_init(const char *prog)
{
    lg.prog = prog;
    lg.sec = -1;
}

void
log_forked(void)
{
    lg.pid = 0;
    lg.sec = -1;
}

long
log_pid(void)
{
    if (lg.pid == 0)
        lg.pid = (long)getpid();
    return lg.pid;
}

static const char *
log_prefix(size_t *len)
{
    time_t now = time(NULL);
    if (now != lg.sec) {
        struct tm tm;
        char ts[32];
        int n;
        gmtime_r(&now, &tm);
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
        n = snprintf(lg.prefix, sizeof lg.prefix, "%s %s[%ld]: ", ts, lg.prog,
                     log_pid());
        lg.prefix_len = n > 0 && (size_t)n < sizeof lg.prefix
                            ? (size_t)n
                            : strlen(lg.prefix);
        lg.sec = now;
    }
    *len = lg.prefix_len;
    return lg.prefix;
}

static size_t log_format(char *line, size_t cap, const char *fmt, va_list ap);

static void
log_vline(const char *fmt, va_list ap)
{
    char line[LOG_LINE_MAX];
    log_put(line, log_format(line, sizeof line, fmt, ap));
}

void
log_line(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vline(fmt, ap);
    va_end(ap);
}

void
log_rcpts_start(log_rcpts *b, unsigned long sid)
{
    b->len = 0;
    b->sid = sid;
    b->relay = 0;
}

/* ">" and what the line's recipients are; the line out. */
static void
log_rcpts_flush(log_rcpts *b)
{
    const char *how = b->relay ? "> accepted=relay\n" : "> accepted=local\n";
    if (b->len == 0)
        return;
    memcpy(b->line + b->len, how, 17);
    log_put(b->line, b->len + 17);
    b->len = 0;
}

/* A line's start: the prefix and "session=SID" (out of line: once a
 * line). */
static void
log_rcpts_begin(log_rcpts *b, int relay)
{
    char num[24];
    size_t k = sizeof num, pn;
    const char *p = log_prefix(&pn);
    unsigned long sid = b->sid;
    do
        num[--k] = (char)('0' + sid % 10);
    while ((sid /= 10) != 0);
    memcpy(b->line, p, pn);
    memcpy(b->line + pn, "session=", 8);
    memcpy(b->line + pn + 8, num + k, sizeof num - k);
    b->len = pn + 8 + sizeof num - k;
    b->relay = relay;
}

void
log_rcpts_add(log_rcpts *b, const char *path, size_t n, int relay)
{
    size_t room;
    /* a line has room for ">", " rcpt=<", the path, "> accepted=...\n" */
    if (b->len != 0 &&
        (relay != b->relay || b->len + 1 + 7 + n + 17 > sizeof b->line))
        log_rcpts_flush(b);
    if (b->len == 0)
        log_rcpts_begin(b, relay);
    else
        b->line[b->len++] = '>';
    room = sizeof b->line - b->len - 7 - 17;
    if (n > room)
        n = room; /* one path longer than a line: cut, as always */
    memcpy(b->line + b->len, " rcpt=<", 7);
    memcpy(b->line + b->len + 7, path, n);
    b->len += 7 + n;
}

void
log_rcpts_end(log_rcpts *b)
{
    log_rcpts_flush(b);
}

void
log_release(log_hold *h)
{
    if (h->buf != NULL)
        log_put(h->buf, h->len);
    log_hold_free(h);
}

void
log_hold_free(log_hold *h)
{
    free(h->buf);
    h->buf = NULL;
    h->len = 0;
    h->on = 0;
}

/* The conversion at fmt (just past its '%') if it is one log_simple
 * writes: 's', 'd', 'u', 'l' ("%ld", "%lu"), 'z' ("%zu"), '.' ("%.*s"),
 * '%'; else 0. Returns its length in *len. */
static char
log_simple_conv(const char *fmt, size_t *len)
{
    *len = 1;
    switch (fmt[0]) {
    case 's':
    case 'd':
    case 'u':
    case '%':
        return fmt[0];
    case 'l':
        *len = 2;
        return fmt[1] == 'd' || fmt[1] == 'u' ? 'l' : 0;
    case 'z':
        *len = 2;
        return fmt[1] == 'u' ? 'z' : 0;
    case '.':
        *len = 3;
        return fmt[1] == '*' && fmt[2] == 's' ? '.' : 0;
    default:
        return 0;
    }
}

/* Whether every conversion in fmt is one log_simple writes. */
static int
log_simple_ok(const char *fmt)
{
    size_t len;
    for (; *fmt != '\0'; fmt++)
        if (*fmt == '%') {
            if (!log_simple_conv(fmt + 1, &len))
                return 0;
            fmt += len;
        }
    return 1;
}

/* Appends p[n] to out (at *at, at most room octets in all). */
static void
log_simple_put(char *out, size_t room, size_t *at, const char *p, size_t n)
{
    if (n > room - *at)
        n = room - *at;
    memcpy(out + *at, p, n);
    *at += n;
}

/* Appends v in decimal, '-' first if neg. */
static void
log_simple_num(char *out, size_t room, size_t *at, unsigned long v, int neg)
{
    char d[24];
    size_t k = sizeof d;
    do
        d[--k] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    if (neg)
        d[--k] = '-';
    log_simple_put(out, room, at, d + k, sizeof d - k);
}

/* |v|, LONG_MIN's too. */
static unsigned long
log_simple_abs(long v)
{
    return v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;
}

/* What vsnprintf(out, room + 1, fmt, ap) writes, for a format whose
 * conversions log_simple_ok accepts (every line smtpd writes per message),
 * without vsnprintf's parsing (about 700 instructions a line more than
 * this, bench/rcpt-cost.sh). Returns the octets written (at most room).
 * A null string shows as glibc shows it. */
static size_t
log_simple(char *out, size_t room, const char *fmt, va_list ap)
{
    size_t at = 0, len;
    while (*fmt != '\0' && at < room) {
        const char *pct = strchr(fmt, '%'), *s;
        long sv;
        int prec;
        if (pct == NULL) {
            log_simple_put(out, room, &at, fmt, strlen(fmt));
            break;
        }
        log_simple_put(out, room, &at, fmt, (size_t)(pct - fmt));
        switch (log_simple_conv(pct + 1, &len)) {
        case '%':
            log_simple_put(out, room, &at, "%", 1);
            break;
        case 's':
            s = va_arg(ap, const char *);
            s = s != NULL ? s : "(null)";
            log_simple_put(out, room, &at, s, strlen(s));
            break;
        case '.':
            prec = va_arg(ap, int);
            s = va_arg(ap, const char *);
            if (s == NULL) /* glibc: all of "(null)" or nothing */
                s = prec >= 0 && prec < 6 ? "" : "(null)";
            log_simple_put(out, room, &at, s,
                           prec < 0 ? strlen(s) : strnlen(s, (size_t)prec));
            break;
        case 'd':
            sv = va_arg(ap, int);
            log_simple_num(out, room, &at, log_simple_abs(sv), sv < 0);
            break;
        case 'u':
            log_simple_num(out, room, &at, va_arg(ap, unsigned), 0);
            break;
        case 'z':
            log_simple_num(out, room, &at, va_arg(ap, size_t), 0);
            break;
        default: /* 'l' */
            if (pct[2] == 'u') {
                log_simple_num(out, room, &at, va_arg(ap, unsigned long), 0);
            } else {
                sv = va_arg(ap, long);
                log_simple_num(out, room, &at, log_simple_abs(sv), sv < 0);
            }
            break;
        }
        fmt = pct + 1 + len;
    }
    return at;
}

/* The line, formatted into line[cap] with its '\n' (cut to fit).
 * Returns its length. */
static size_t
log_format(char *line, size_t cap, const char *fmt, va_list ap)
{
    size_t n;
    const char *p = log_prefix(&n);
    int m;
    if (n > cap - 2)
        n = cap - 2;
    memcpy(line, p, n);
    if (log_simple_ok(fmt)) {
        n += log_simple(line + n, cap - n - 2, fmt, ap);
    } else {
        m = vsnprintf(line + n, cap - n - 1, fmt, ap);
        if (m < 0)
            m = 0;
        n += (size_t)m < cap - n - 1 ? (size_t)m : cap - n - 2;
    }
    line[n++] = '\n';
    return n;
}

void
log_held(log_hold *h, const char *fmt, ...)
{
    va_list ap;
    char line[1024], *b;
    size_t n;
    va_start(ap, fmt);
    if (!h->on) {
        log_vline(fmt, ap);
        va_end(ap);
        return;
    }
    n = log_format(line, sizeof line, fmt, ap);
    va_end(ap);
    b = h->len + n <= LOG_HELD_MAX ? (char *)realloc(h->buf, h->len + n)
                                   : NULL;
    if (b == NULL) {
        log_release(h);
        log_put(line, n);
        return;
    }
    memcpy(b + h->len, line, n);
    h->buf = b;
    h->len += n;
}

void
log_printable(char *dst, size_t cap, const char *p, size_t n)
{
    size_t i;
    if (n >= cap)
        n = cap - 1;
    for (i = 0; i < n; i++)
        dst[i] = p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '?';
    dst[n] = '\0';
}

static void
log_vsay(const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: ", lg.prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void
log_say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vsay(fmt, ap);
    va_end(ap);
}

void
log_die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vsay(fmt, ap);
    va_end(ap);
    exit(code);
}
