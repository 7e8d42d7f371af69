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

/* The prefix cache: one per process, like stderr itself. */
static struct {
    const char *prog;
    long pid;
    time_t sec;
    char ts[32];
} lg = {"smtpd", 0, -1, ""};

void
log_init(const char *prog)
{
    lg.prog = prog;
}

void
log_forked(void)
{
    lg.pid = 0;
}

long
log_pid(void)
{
    if (lg.pid == 0)
        lg.pid = (long)getpid();
    return lg.pid;
}

static const char *
log_stamp(void)
{
    time_t now = time(NULL);
    if (now != lg.sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(lg.ts, sizeof lg.ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
        lg.sec = now;
    }
    return lg.ts;
}

static void
log_vline(const char *fmt, va_list ap)
{
    fprintf(stderr, "%s %s[%ld]: ", log_stamp(), lg.prog, log_pid());
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
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
log_release(log_hold *h)
{
    if (h->buf != NULL)
        fwrite(h->buf, 1, h->len, stderr);
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

/* The line, formatted into line[cap] with its '\n' (cut to fit).
 * Returns its length. */
static size_t
log_format(char *line, size_t cap, const char *fmt, va_list ap)
{
    int n, m;
    n = snprintf(line, cap, "%s %s[%ld]: ", log_stamp(), lg.prog, log_pid());
    m = vsnprintf(line + n, cap - (size_t)n - 1, fmt, ap);
    if (m < 0)
        m = 0;
    n += (size_t)m < cap - (size_t)n - 1 ? m : (int)(cap - (size_t)n - 2);
    line[n++] = '\n';
    return (size_t)n;
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
    b = h->len + n <= LOG_HELD_MAX ? realloc(h->buf, h->len + n) : NULL;
    if (b == NULL) {
        log_release(h);
        fwrite(line, 1, n, stderr);
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
