/* SPDX-License-Identifier: MIT
 *
 * fuzz_path.c - libFuzzer target for lib/path.c: paths, parameters,
 * domains and IP text. The first byte picks parse options. Invariants:
 * offsets never pass the input; spans lie inside it; a parsed mailbox
 * re-parses to the same result; the IP parsers agree with each other on
 * embedded IPv4; the fast parser of the common path (and the session's
 * entry to it, which knows what ends a command line) agrees with the
 * general one in everything.
 */
#include <llsmtp.h>

#include "internal.h" /* llsmtp__path_parse_general, _line */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void
in_range(const char *base, size_t n, llsmtp_span sp)
{
    if (sp.n == 0)
        return;
    if (sp.p < base || sp.p + sp.n > base + n)
        abort();
}

/* The two parsers' results, span by span. */
static void
same_path(int ra, int rb, size_t ea, size_t eb, const llsmtp_path *a,
          const llsmtp_path *b)
{
    if (ra != rb || ea != eb)
        abort();
    if (ra == LLSMTP_OK &&
        (a->mailbox.p != b->mailbox.p || a->mailbox.n != b->mailbox.n ||
         a->local.p != b->local.p || a->local.n != b->local.n ||
         a->domain.p != b->domain.p || a->domain.n != b->domain.n ||
         a->route.p != b->route.p || a->route.n != b->route.n ||
         a->flags != b->flags))
        abort();
}

static void
fast_matches_general(const char *p, size_t n, unsigned opts)
{
    llsmtp_path a, b;
    size_t ea = 0, eb = 0;
    char *line;
    same_path(llsmtp_path_parse(p, n, opts, &a, &ea),
              llsmtp__path_parse_general(p, n, opts, &b, &eb), ea, eb, &a, &b);
    /* in a command line, the argument ends before a space, CR or LF */
    line = (char *)malloc(n + 1);
    if (line == NULL)
        abort();
    if (n)
        memcpy(line, p, n);
    line[n] = "\r\n \t"[opts & 3];
    same_path(llsmtp__path_parse_line(line, n, opts, &a, &ea),
              llsmtp__path_parse_general(line, n, opts, &b, &eb), ea, eb, &a,
              &b);
    free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p;
    size_t n, end = 0;
    unsigned opts;
    llsmtp_path path;
    llsmtp_params ps;
    uint8_t a4[4], a6[16];
    int rc;
    if (size < 1)
        return 0;
    opts = data[0] & 7;
    p = (const char *)data + 1;
    n = size - 1;
    fast_matches_general(p, n, opts);
    rc = llsmtp_path_parse(p, n, opts, &path, &end);
    if (end > n)
        abort();
    if (rc == LLSMTP_OK) {
        llsmtp_path again;
        size_t e2;
        char *copy;
        in_range(p, n, path.mailbox);
        in_range(p, n, path.local);
        in_range(p, n, path.domain);
        in_range(p, n, path.route);
        if (p[0] != '<' || p[end - 1] != '>')
            abort();
        /* "<" mailbox ">" must parse again to the same mailbox */
        copy = (char *)malloc(path.mailbox.n + 2);
        if (copy == NULL)
            abort();
        copy[0] = '<';
        memcpy(copy + 1, path.mailbox.p, path.mailbox.n);
        copy[path.mailbox.n + 1] = '>';
        if (!(path.flags & LLSMTP_PATH_NULL)) {
            if (llsmtp_path_parse(copy, path.mailbox.n + 2, opts, &again,
                                  &e2) != LLSMTP_OK ||
                again.mailbox.n != path.mailbox.n ||
                again.domain.n != path.domain.n)
                abort();
        }
        free(copy);
        rc = llsmtp_params_parse(p + end, n - end, opts, &ps, &e2);
        if (e2 > n - end)
            abort();
        if (rc == LLSMTP_OK) {
            size_t i;
            for (i = 0; i < ps.n; i++) {
                in_range(p, n, ps.v[i].key);
                in_range(p, n, ps.v[i].value);
            }
            llsmtp_params_get(&ps, "SIZE");
        }
    }
    llsmtp_domain_check(p, n, opts);
    if (llsmtp_ipv4_parse(p, n, a4) == LLSMTP_OK) {
        /* "::ffff:" + the same text must be the mapped address */
        char buf[64];
        if (n + 7 < sizeof buf) {
            memcpy(buf, "::ffff:", 7);
            memcpy(buf + 7, p, n);
            if (llsmtp_ipv6_parse(buf, n + 7, a6) != LLSMTP_OK ||
                memcmp(a6 + 12, a4, 4) != 0 || a6[10] != 0xff)
                abort();
        }
    }
    llsmtp_ipv6_parse(p, n, a6);
    return 0;
}
