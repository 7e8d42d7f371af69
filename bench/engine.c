/* SPDX-License-Identifier: MIT
 *
 * engine.c - what the state machine costs beside the socket. Two runs,
 * each reported as a ratio against a baseline measured in the same run
 * over the same bytes (these machines are noisy; absolute times are only
 * shown for context):
 *   (a) DATA: a 100 MB message of 78-octet lines (1 in 50 dot-stuffed)
 *       fed in 64 KiB chunks, against memchr() finding every LF.
 *   (b) envelope: 1,000,000 pipelined commands (MAIL, RCPT, RSET), against
 *       the same memchr()-per-line pass.
 * Median of 5 repetitions each. Usage: engine [megabytes] [commands]
 */
#define _POSIX_C_SOURCE 200809L
#include <llsmtp.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REPS 5

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double
median(double *v)
{
    qsort(v, REPS, sizeof *v, cmp_double);
    return v[REPS / 2];
}

static volatile size_t sink;
static size_t data_bytes;

static int
on_data(llsmtp_server *s, const char *p, size_t n)
{
    (void)s;
    (void)p;
    data_bytes += n;
    return LLSMTP_OK;
}

/* memchr once per line: the physical limit of a line-aware scan. */
static double
baseline_lines(const char *buf, size_t n)
{
    double t0 = now();
    const char *p = buf, *end = buf + n;
    size_t lines = 0;
    while (p < end) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        if (lf == NULL)
            break;
        lines++;
        p = lf + 1;
    }
    sink = lines;
    return now() - t0;
}

static llsmtp_server *
new_session(const llsmtp_config *cfg)
{
    size_t sz = llsmtp_server_size(cfg);
    llsmtp_server *s = malloc(sz);
    if (s == NULL || llsmtp_server_init(s, sz, cfg, NULL) == NULL)
        exit(1);
    llsmtp_server_start(s);
    llsmtp_server_consume(s, llsmtp_server_output(s).n);
    return s;
}

/* Feeds everything, draining the output whenever the session asks. */
static void
feed_all(llsmtp_server *s, const char *buf, size_t n, size_t chunk)
{
    size_t off = 0;
    while (off < n) {
        size_t len = n - off < chunk ? n - off : chunk, used;
        int rc = llsmtp_server_feed(s, buf + off, len, &used);
        off += used;
        if (rc == LLSMTP_BLOCKED || rc == LLSMTP_OK) {
            llsmtp_server_consume(s, llsmtp_server_output(s).n);
        } else {
            fprintf(stderr, "unexpected status %s\n", llsmtp_errname(rc));
            exit(1);
        }
    }
}

static const char envelope_prefix[] =
    "EHLO bench.example\r\nMAIL FROM:<s@example.org>\r\n"
    "RCPT TO:<r@example.test>\r\nDATA\r\n";

int
main(int argc, char **argv)
{
    size_t mb = argc > 1 ? (size_t)atol(argv[1]) : 100;
    size_t ncmd = argc > 2 ? (size_t)atol(argv[2]) : 1000000;
    size_t body = mb * 1000 * 1000, n, i, k;
    char *buf, *cmds;
    double tb[REPS], te[REPS], cb[REPS], ce[REPS];
    llsmtp_config cfg;
    llsmtp_callbacks cbs;
    int r;
    size_t cmd_bytes = 0;
    static const char *const envelope[3] = {
        "MAIL FROM:<sender.name@example.org> BODY=8BITMIME\r\n",
        "RCPT TO:<recipient.name@example.test>\r\n", "RSET\r\n"};

    memset(&cbs, 0, sizeof cbs);
    cbs.on_data = on_data;
    llsmtp_config_init(&cfg);
    cfg.hostname = "bench.example";
    cfg.callbacks = &cbs;

    /* (a) the message */
    buf = malloc(sizeof envelope_prefix + body + 16);
    if (buf == NULL)
        return 1;
    n = strlen(envelope_prefix);
    memcpy(buf, envelope_prefix, n);
    for (i = 0, k = 0; n + 78 <= body; i++) {
        char *line = buf + n;
        size_t j;
        if (i % 50 == 49) { /* a dot-stuffed line */
            line[0] = '.';
            line[1] = '.';
            j = 2;
        } else {
            j = 0;
        }
        for (; j < 76; j++)
            line[j] = (char)('a' + (j + k++) % 26);
        line[76] = '\r';
        line[77] = '\n';
        n += 78;
    }
    memcpy(buf + n, ".\r\n", 3);
    n += 3;

    for (r = 0; r < REPS; r++) {
        llsmtp_server *s;
        double t0;
        tb[r] = baseline_lines(buf, n);
        s = new_session(&cfg);
        data_bytes = 0;
        t0 = now();
        feed_all(s, buf, n, 65536);
        te[r] = now() - t0;
        if (data_bytes == 0)
            return 1;
        free(s);
    }

    /* (b) pipelined envelope commands */
    for (i = 0; i < ncmd; i++)
        cmd_bytes += strlen(envelope[i % 3]);
    cmds = malloc(cmd_bytes + 64);
    if (cmds == NULL)
        return 1;
    k = (size_t)sprintf(cmds, "EHLO bench.example\r\n");
    for (i = 0; i < ncmd; i++) {
        size_t l = strlen(envelope[i % 3]);
        memcpy(cmds + k, envelope[i % 3], l);
        k += l;
    }
    for (r = 0; r < REPS; r++) {
        llsmtp_server *s;
        double t0;
        cb[r] = baseline_lines(cmds, k);
        s = new_session(&cfg);
        t0 = now();
        feed_all(s, cmds, k, 65536);
        ce[r] = now() - t0;
        free(s);
    }
    {
        double b = median(tb), e = median(te), bc = median(cb),
               ec = median(ce);
        printf("llsmtp engine benchmark (median of %d)\n", REPS);
        printf("session size: %zu bytes (default config)\n",
               llsmtp_server_size(&cfg));
        printf("(a) DATA, %zu MB of 78-octet lines in 64 KiB chunks:\n", mb);
        printf("    memchr per line  %8.0f MB/s\n", (double)n / b / 1e6);
        printf("    llsmtp DATA      %8.0f MB/s\n", (double)n / e / 1e6);
        printf("    ratio            %8.2f x memchr-per-line\n", b / e);
        printf("(b) envelope, %zu pipelined commands:\n", ncmd);
        printf("    llsmtp           %8.2f million commands/s\n",
               (double)ncmd / ec / 1e6);
        printf("    memchr per line  %8.2f million lines/s\n",
               (double)ncmd / bc / 1e6);
        printf("    ratio            %8.3f x memchr-per-line\n", bc / ec);
    }
    free(buf);
    free(cmds);
    return 0;
}
