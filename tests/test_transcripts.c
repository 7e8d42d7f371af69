/* SPDX-License-Identifier: MIT
 *
 * test_transcripts.c - replays every tests/transcripts/NAME.txt dialogue
 * through the server session whole, byte by byte and in random splits
 * (fixed seed), and checks that the output and the callback events equal
 * the expected ones in every run. Format: tests/transcripts/README.md.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#ifdef _WIN32
#include <io.h> /* _findfirst: Windows has no dirent.h (mingw's is its own) */
#else
#include <dirent.h>
#endif

#include "harness.h"

typedef struct tr_case {
    char name[256];
    llsmtp_config cfg;
    char hostname[256];
    char banner[256];
    th_rule rules[TH_MAX_RULES];
    size_t nrules;
    th_buf input, expect_out, expect_ev;
    int eof, timeout;
    size_t tls[8];
    size_t ntls;
    char mechs[256];
} tr_case;

/* Expands {{c*N}} (N copies of the byte c; c may be an escape). */
static size_t
tr_repeat(const char *p, size_t n, size_t i, th_buf *b, int escape_c)
{
    /* p[i] == '{' && p[i+1] == '{' */
    size_t j = i + 2, cnt = 0, k;
    char c;
    if (j < n && p[j] == '\\' && escape_c && j + 1 < n) {
        char e = p[j + 1];
        c = e == 'r' ? '\r' : e == 'n' ? '\n' : e == 't' ? '\t' : e;
        j += 2;
    } else {
        c = p[j++];
    }
    if (j >= n || p[j] != '*')
        return 0;
    j++;
    while (j < n && p[j] >= '0' && p[j] <= '9')
        cnt = cnt * 10 + (size_t)(p[j++] - '0');
    if (j + 1 >= n || p[j] != '}' || p[j + 1] != '}')
        return 0;
    for (k = 0; k < cnt; k++)
        th_buf_add(b, &c, 1);
    return j + 2 - i;
}

/* Unescapes \r \n \t \\ \0 \xHH and expands {{c*N}}. */
static void
tr_unescape(const char *p, size_t n, th_buf *b)
{
    size_t i = 0;
    while (i < n) {
        char c = p[i];
        if (c == '{' && i + 1 < n && p[i + 1] == '{') {
            size_t used = tr_repeat(p, n, i, b, 1);
            if (used) {
                i += used;
                continue;
            }
        }
        if (c == '\\' && i + 1 < n) {
            char e = p[i + 1];
            i += 2;
            switch (e) {
            case 'r':
                c = '\r';
                break;
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case '0':
                c = '\0';
                break;
            case 'x': {
                unsigned v = 0;
                int k;
                for (k = 0; k < 2 && i < n; k++, i++) {
                    char h = p[i];
                    v = v * 16 +
                        (unsigned)(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
                }
                c = (char)v;
                break;
            }
            default:
                c = e;
                break;
            }
            th_buf_add(b, &c, 1);
            continue;
        }
        th_buf_add(b, &c, 1);
        i++;
    }
}

/* Expands {{c*N}} only (event lines are compared in escaped form). */
static void
tr_expand(const char *p, size_t n, th_buf *b)
{
    size_t i = 0;
    while (i < n) {
        if (p[i] == '{' && i + 1 < n && p[i + 1] == '{') {
            size_t used = tr_repeat(p, n, i, b, 0);
            if (used) {
                i += used;
                continue;
            }
        }
        th_buf_add(b, p + i, 1);
        i++;
    }
}

static void
tr_rule(tr_case *tc, char *spec)
{
    th_rule *r;
    char *tok, *save = NULL;
    assert_true(tc->nrules < TH_MAX_RULES);
    r = &tc->rules[tc->nrules++];
    memset(r, 0, sizeof *r);
    tok = strtok_r(spec, " ", &save);
    assert_non_null(tok);
    snprintf(r->kind, sizeof r->kind, "%s", tok);
    tok = strtok_r(NULL, " ", &save);
    assert_non_null(tok);
    snprintf(r->match, sizeof r->match, "%s", tok);
    while ((tok = strtok_r(NULL, " ", &save)) != NULL) {
        if (strcmp(tok, "defer") == 0)
            r->defer = 1;
        else if (strcmp(tok, "fail") == 0)
            r->fail = 1;
        else if (strcmp(tok, "pause") == 0)
            r->pause = 1;
        else if (strncmp(tok, "id=", 3) == 0)
            snprintf(r->id, sizeof r->id, "%s", tok + 3);
        else
            break;
    }
    if (tok != NULL && strlen(tok) == 3 && tok[0] >= '1' && tok[0] <= '9') {
        r->code = atoi(tok);
        tok = strtok_r(NULL, " ", &save);
        if (tok != NULL && tok[0] >= '2' && tok[0] <= '5' && tok[1] == '.') {
            snprintf(r->enh, sizeof r->enh, "%s", tok);
            tok = strtok_r(NULL, "", &save);
        } else if (tok != NULL) {
            char *rest = strtok_r(NULL, "", &save);
            if (rest != NULL)
                tok[strlen(tok)] = ' ';
        }
        if (tok != NULL) {
            th_buf t = {0};
            tr_unescape(tok, strlen(tok), &t);
            snprintf(r->text, sizeof r->text, "%s", t.p);
            th_buf_free(&t);
        }
    }
}

static unsigned
tr_ext(const char *v)
{
    unsigned ext = LLSMTP_EXT_DEFAULT;
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"PIPELINING", LLSMTP_EXT_PIPELINING},
                 {"SIZE", LLSMTP_EXT_SIZE},
                 {"8BITMIME", LLSMTP_EXT_8BITMIME},
                 {"ENHANCEDSTATUSCODES", LLSMTP_EXT_ENHANCEDSTATUS},
                 {"VRFY", LLSMTP_EXT_VRFY},
                 {"HELP", LLSMTP_EXT_HELP},
                 {"AUTH", LLSMTP_EXT_AUTH},
                 {"STARTTLS", LLSMTP_EXT_STARTTLS},
                 {"CHUNKING", LLSMTP_EXT_CHUNKING},
                 {"BINARYMIME", LLSMTP_EXT_BINARYMIME},
                 {"DSN", LLSMTP_EXT_DSN},
                 {"SMTPUTF8", LLSMTP_EXT_SMTPUTF8},
                 {"ETRN", LLSMTP_EXT_ETRN}};
    char buf[256], *tok, *save = NULL;
    snprintf(buf, sizeof buf, "%s", v);
    if (strcmp(buf, "none") == 0)
        return 0;
    for (tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        size_t i;
        int minus = tok[0] == '-';
        if (tok[0] == '+')
            tok++;
        for (i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strcmp(tok + minus, names[i].name) == 0) {
                if (minus)
                    ext &= ~names[i].bit;
                else
                    ext |= names[i].bit;
            }
    }
    return ext;
}

static void
tr_option(tr_case *tc, const char *kv)
{
    const char *eq = strchr(kv, '=');
    char key[64];
    const char *v;
    assert_non_null(eq);
    snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
    v = eq + 1;
    if (strcmp(key, "max_rcpt") == 0)
        tc->cfg.max_rcpt = (size_t)strtoull(v, NULL, 10);
    else if (strcmp(key, "max_size") == 0)
        tc->cfg.max_size = strtoull(v, NULL, 10);
    else if (strcmp(key, "max_errors") == 0)
        tc->cfg.max_errors = (unsigned)strtoul(v, NULL, 10);
    else if (strcmp(key, "max_line") == 0)
        tc->cfg.max_line = (size_t)strtoull(v, NULL, 10);
    else if (strcmp(key, "output_size") == 0)
        tc->cfg.output_size = (size_t)strtoull(v, NULL, 10);
    else if (strcmp(key, "bare_lf") == 0)
        tc->cfg.bare_lf = strcmp(v, "reject") == 0 ? LLSMTP_BARE_LF_REJECT
                          : strcmp(v, "pass") == 0 ? LLSMTP_BARE_LF_PASS
                                                   : LLSMTP_BARE_LF_NORMALIZE;
    else if (strcmp(key, "ext") == 0)
        tc->cfg.extensions = tr_ext(v);
    else if (strcmp(key, "hostname") == 0) {
        snprintf(tc->hostname, sizeof tc->hostname, "%s", v);
        tc->cfg.hostname = tc->hostname;
    } else if (strcmp(key, "banner") == 0) {
        snprintf(tc->banner, sizeof tc->banner, "%s", v);
        tc->cfg.banner = tc->banner;
    } else if (strcmp(key, "flags") == 0) {
        if (strstr(v, "502"))
            tc->cfg.flags |= LLSMTP_CFG_502_UNKNOWN;
        if (strstr(v, "cleartext"))
            tc->cfg.flags |= LLSMTP_CFG_AUTH_CLEARTEXT;
        if (strstr(v, "legacy"))
            tc->cfg.flags |= LLSMTP_CFG_AUTH_LEGACY;
        if (strstr(v, "require_auth"))
            tc->cfg.flags |= LLSMTP_CFG_REQUIRE_AUTH;
        if (strstr(v, "require_tls"))
            tc->cfg.flags |= LLSMTP_CFG_REQUIRE_TLS;
        if (strstr(v, "proxy"))
            tc->cfg.flags |= LLSMTP_CFG_PROXY;
        if (strstr(v, "lmtp"))
            tc->cfg.flags |= LLSMTP_CFG_LMTP;
    } else if (strcmp(key, "auth_mechanisms") == 0) {
        snprintf(tc->mechs, sizeof tc->mechs, "%s", v);
        tc->cfg.auth_mechanisms = tc->mechs;
    } else if (strcmp(key, "max_auth_failures") == 0) {
        tc->cfg.max_auth_failures = (unsigned)strtoul(v, NULL, 10);
    } else if (strcmp(key, "max_auth_line") == 0) {
        tc->cfg.max_auth_line = (size_t)strtoull(v, NULL, 10);
    } else
        fail_msg("unknown option %s", key);
}

/* Reads one line of any length into *line (grown as needed), newline
 * kept; returns its length, or -1 at the end. getline() is POSIX, and the
 * suite runs on Windows too. */
static long
tr_getline(char **line, size_t *cap, FILE *f)
{
    size_t n = 0;
    int c;
    while ((c = getc(f)) != EOF) {
        if (n + 2 > *cap) {
            *cap = *cap ? *cap * 2 : 256;
            *line = (char *)realloc(*line, *cap);
            if (*line == NULL)
                abort();
        }
        (*line)[n++] = (char)c;
        if (c == '\n')
            break;
    }
    if (n == 0)
        return -1;
    (*line)[n] = '\0';
    return (long)n;
}

static void
tr_load(tr_case *tc, const char *path)
{
    FILE *f = fopen(path, "rb");
    char *line = NULL;
    size_t cap = 0;
    long got;
    assert_non_null(f);
    llsmtp_config_init(&tc->cfg);
    snprintf(tc->hostname, sizeof tc->hostname, "mx.example.test");
    tc->cfg.hostname = tc->hostname;
    tc->cfg.callbacks = &th_callbacks;
    while ((got = tr_getline(&line, &cap, f)) != -1) {
        size_t n = (size_t)got;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n < 2 || line[0] == '#')
            continue;
        if (line[1] != ':')
            fail_msg("%s: bad line: %s", path, line);
        {
            const char *body = line + 2;
            size_t bn = n - 2;
            if (bn && *body == ' ') {
                body++;
                bn--;
            }
            switch (line[0]) {
            case 'C':
                tr_unescape(body, bn, &tc->input);
                th_buf_add(&tc->input, "\r\n", 2);
                break;
            case 'R':
                tr_unescape(body, bn, &tc->input);
                break;
            case 'S':
                tr_expand(body, bn, &tc->expect_out);
                th_buf_add(&tc->expect_out, "\r\n", 2);
                break;
            case 'E':
                tr_expand(body, bn, &tc->expect_ev);
                th_buf_add(&tc->expect_ev, "\n", 1);
                break;
            case 'O':
                tr_option(tc, body);
                break;
            case 'H': {
                char spec[2048];
                snprintf(spec, sizeof spec, "%s", body);
                tr_rule(tc, spec);
                break;
            }
            case 'T':
                /* the client finished a TLS handshake here */
                assert_true(tc->ntls < 8);
                tc->tls[tc->ntls++] = tc->input.n;
                break;
            case 'X':
                if (strcmp(body, "eof") == 0)
                    tc->eof = 1;
                else if (strcmp(body, "timeout") == 0)
                    tc->timeout = 1;
                else
                    fail_msg("%s: bad X: %s", path, body);
                break;
            default:
                fail_msg("%s: bad line: %s", path, line);
            }
        }
    }
    free(line);
    fclose(f);
    if (tc->expect_out.p == NULL)
        th_buf_add(&tc->expect_out, "", 0);
    if (tc->expect_ev.p == NULL)
        th_buf_add(&tc->expect_ev, "", 0);
}

static void
tr_first_diff(const char *what, const char *mode, const th_buf *got,
              const th_buf *want)
{
    size_t i = 0, start;
    while (i < got->n && i < want->n && got->p[i] == want->p[i])
        i++;
    start = i > 60 ? i - 60 : 0;
    print_error("%s differs (%s) at byte %zu\n--- want: ...%.*s\n"
                "--- got:  ...%.*s\n",
                what, mode, i,
                (int)(want->n - start > 200 ? 200 : want->n - start),
                want->p + start,
                (int)(got->n - start > 200 ? 200 : got->n - start),
                got->p + start);
}

/* One run in one split; fails the test on any difference. */
static void
tr_run_mode(const tr_case *tc, const char *mode, const size_t *cuts,
            size_t ncuts)
{
    int by_wants = strncmp(mode, "wants", 5) == 0;
    int lent = strstr(mode, "lent") != NULL;
    llsmtp_config cfg = tc->cfg;
    th_host h;
    llsmtp_server *s;
    int ok;
    memset(&h, 0, sizeof h);
    memcpy(h.rules, tc->rules, sizeof h.rules);
    h.reads_first = strstr(mode, "reads first") != NULL;
    h.nrules = tc->nrules;
    if (lent) {
        cfg.flags |= LLSMTP_CFG_LENT_OUTPUT;
        h.lend_cap = llsmtp_server_lend_size(&cfg);
        h.lend[0] = (char *)malloc(h.lend_cap);
        h.lend[1] = (char *)malloc(h.lend_cap);
    }
    s = th_session(&cfg, &h);
    if (by_wants)
        th_run_wants(s, &h, tc->input.p, tc->input.n, cuts, ncuts, tc->eof,
                     tc->tls, tc->ntls);
    else
        th_run_tls(s, &h, tc->input.p, tc->input.n, cuts, ncuts, tc->eof,
                   tc->tls, tc->ntls);
    if (tc->timeout) {
        llsmtp_server_timeout_expired(s);
        th_drain(s, &h);
    }
    if (h.out.p == NULL)
        th_buf_add(&h.out, "", 0);
    if (h.events.p == NULL)
        th_buf_add(&h.events, "", 0);
    ok = 1;
    if (h.out.n != tc->expect_out.n ||
        memcmp(h.out.p, tc->expect_out.p, h.out.n) != 0) {
        tr_first_diff("output", mode, &h.out, &tc->expect_out);
        ok = 0;
    }
    if (h.events.n != tc->expect_ev.n ||
        memcmp(h.events.p, tc->expect_ev.p, h.events.n) != 0) {
        tr_first_diff("events", mode, &h.events, &tc->expect_ev);
        ok = 0;
    }
    free(s);
    free(h.lend[0]);
    free(h.lend[1]);
    th_host_free(&h);
    if (!ok)
        fail_msg("%s: mismatch in mode %s", tc->name, mode);
}

static void
test_transcript(void **state)
{
    const char *path = (const char *)*state;
    tr_case *tc = (tr_case *)calloc(1, sizeof *tc);
    size_t *cuts, i, n;
    int r, rounds = getenv("LLSMTP_QUICK") ? 10 : 100;
    uint64_t seed = 0x9e3779b97f4a7c15ULL;

    assert_non_null(tc);
    snprintf(tc->name, sizeof tc->name, "%s", path);
    tr_load(tc, path);
    n = tc->input.n;
    cuts = (size_t *)calloc(n + 1, sizeof *cuts);
    assert_non_null(cuts);

    tr_run_mode(tc, "whole", NULL, 0);
    tr_run_mode(tc, "wants", NULL, 0);
    tr_run_mode(tc, "wants, lent", NULL, 0);
    for (i = 0; i < n; i++)
        cuts[i] = 1;
    tr_run_mode(tc, "bytewise", cuts, n);
    for (r = 0; r < rounds; r++) {
        size_t k = 0, left = n, maxc = n / 4 + 2;
        char mode[48];
        while (left > 0) {
            size_t c = 1 + (size_t)(th_rand(&seed) % maxc);
            if (th_rand(&seed) % 4 == 0)
                c = 1 + (size_t)(th_rand(&seed) % 3);
            if (c > left)
                c = left;
            cuts[k++] = c;
            left -= c;
        }
        snprintf(mode, sizeof mode, "random split %d", r);
        tr_run_mode(tc, mode, cuts, k);
        snprintf(mode, sizeof mode, "wants, random split %d", r);
        tr_run_mode(tc, mode, cuts, k);
        snprintf(mode, sizeof mode, "wants, lent, random split %d", r);
        tr_run_mode(tc, mode, cuts, k);
        snprintf(mode, sizeof mode, "wants, reads first, random split %d", r);
        tr_run_mode(tc, mode, cuts, k);
    }
    free(cuts);
    th_buf_free(&tc->input);
    th_buf_free(&tc->expect_out);
    th_buf_free(&tc->expect_ev);
    free(tc);
}

static int
tr_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Adds dir/name to the list when name ends in .txt. */
static void
tr_add(char ***names, size_t *n, const char *dir, const char *name)
{
    size_t l = strlen(name);
    if (l < 5 || strcmp(name + l - 4, ".txt") != 0)
        return;
    *names = (char **)realloc(*names, (*n + 1) * sizeof **names);
    if (*names == NULL)
        abort();
    (*names)[*n] = (char *)malloc(strlen(dir) + l + 2);
    if ((*names)[*n] == NULL)
        abort();
    sprintf((*names)[*n], "%s/%s", dir, name);
    (*n)++;
}

/* Lists dir's *.txt files; returns -1 when dir cannot be read. */
static int
tr_list(const char *dir, char ***names, size_t *n)
{
#ifdef _WIN32
    struct _finddata_t fd;
    intptr_t h;
    char *pat = (char *)malloc(strlen(dir) + 7);
    if (pat == NULL)
        abort();
    sprintf(pat, "%s/*.txt", dir);
    h = _findfirst(pat, &fd);
    free(pat);
    if (h == -1)
        return -1;
    do
        tr_add(names, n, dir, fd.name);
    while (_findnext(h, &fd) == 0);
    _findclose(h);
#else
    DIR *d = opendir(dir);
    struct dirent *e;
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        tr_add(names, n, dir, e->d_name);
    closedir(d);
#endif
    return 0;
}

int
main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "transcripts";
    char **names = NULL;
    size_t n = 0, i;
    struct CMUnitTest *tests;
    int rc;

    if (tr_list(dir, &names, &n) != 0) {
        fprintf(stderr, "cannot open %s\n", dir);
        return 1;
    }
    qsort(names, n, sizeof *names, tr_cmp);
    tests = (struct CMUnitTest *)calloc(n, sizeof *tests);
    for (i = 0; i < n; i++) {
        tests[i].name = names[i];
        tests[i].test_func = test_transcript;
        tests[i].initial_state = names[i];
    }
    rc = _cmocka_run_group_tests("transcripts", tests, n, NULL, NULL);
    for (i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(tests);
    return rc;
}
