/* SPDX-License-Identifier: MIT
 *
 * harness.c - the recording host of harness.h: the callbacks, the rules,
 * the runner. Test code only: it allocates freely.
 */
#include "harness.h"

void
th_buf_add(th_buf *b, const char *p, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        b->p = (char *)realloc(b->p, cap);
        if (b->p == NULL)
            abort();
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void
th_buf_adds(th_buf *b, const char *str)
{
    th_buf_add(b, str, strlen(str));
}

void
th_buf_free(th_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* Escapes bytes for an event line: \r \n \t \\ and \xHH. */
void
th_escape(th_buf *b, const char *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        char tmp[8];
        if (c == '\r')
            th_buf_add(b, "\\r", 2);
        else if (c == '\n')
            th_buf_add(b, "\\n", 2);
        else if (c == '\t')
            th_buf_add(b, "\\t", 2);
        else if (c == '\\')
            th_buf_add(b, "\\\\", 2);
        else if (c < 0x20 || c >= 0x7f) {
            snprintf(tmp, sizeof tmp, "\\x%02x", c);
            th_buf_add(b, tmp, 4);
        } else
            th_buf_add(b, (const char *)&c, 1);
    }
}

void
th_event(th_host *h, const char *kind, const char *arg, size_t argn)
{
    th_buf_add(&h->events, kind, strlen(kind));
    if (arg != NULL && argn > 0) {
        th_buf_add(&h->events, " ", 1);
        th_escape(&h->events, arg, argn);
    }
    th_buf_add(&h->events, "\n", 1);
}

static const th_rule *
th_find(const th_host *h, const char *kind, const char *arg, size_t argn)
{
    size_t i;
    for (i = 0; i < h->nrules; i++) {
        const th_rule *r = &h->rules[i];
        size_t ml = strlen(r->match), k;
        if (strcmp(r->kind, kind) != 0)
            continue;
        if (strcmp(r->match, "*") == 0)
            return r;
        if (arg == NULL || ml > argn)
            continue;
        for (k = 0; k + ml <= argn; k++)
            if (memcmp(arg + k, r->match, ml) == 0)
                return r;
    }
    return NULL;
}

/* Applies a rule to a callback's reply; returns the callback result. */
static int
th_decide(th_host *h, const char *kind, const char *arg, size_t argn,
          llsmtp_reply *r)
{
    const th_rule *rule = th_find(h, kind, arg, argn);
    llsmtp_reply d = LLSMTP_REPLY_INIT;
    if (rule == NULL)
        return LLSMTP_OK;
    if (rule->fail)
        return LLSMTP_E_CALLBACK;
    if (rule->defer) {
        h->have_resume = 1;
        h->resume = d;
        if (rule->code) {
            snprintf(h->resume_text, sizeof h->resume_text, "%s", rule->text);
            if (llsmtp_reply_set(&h->resume, rule->code,
                                 rule->enh[0] ? rule->enh : NULL,
                                 rule->text[0] ? h->resume_text : NULL) !=
                LLSMTP_OK)
                abort();
        }
        if (rule->id[0]) {
            snprintf(h->resume_id, sizeof h->resume_id, "%s", rule->id);
            llsmtp_reply_set_id(&h->resume, h->resume_id,
                                strlen(h->resume_id));
        }
        return LLSMTP_PAUSED;
    }
    if (rule->code &&
        llsmtp_reply_set(r, rule->code, rule->enh[0] ? rule->enh : NULL,
                         rule->text[0] ? rule->text : NULL) != LLSMTP_OK)
        abort();
    if (rule->id[0])
        llsmtp_reply_set_id(r, rule->id, strlen(rule->id));
    return LLSMTP_OK;
}


/* Whether needle occurs in p[0..n) (output spans are not strings). */
int
th_contains(const char *p, size_t n, const char *needle)
{
    size_t k = strlen(needle), i;
    for (i = 0; i + k <= n; i++)
        if (memcmp(p + i, needle, k) == 0)
            return 1;
    return 0;
}


static int
th_on_connect(llsmtp_server *s, llsmtp_reply *r)
{
    th_event(TH_HOST(s), "connect", NULL, 0);
    return th_decide(TH_HOST(s), "connect", "", 0, r);
}

static int
th_on_helo(llsmtp_server *s, llsmtp_span d, int is_ehlo, llsmtp_reply *r)
{
    th_event(TH_HOST(s), is_ehlo ? "ehlo" : "helo", d.p, d.n);
    return th_decide(TH_HOST(s), is_ehlo ? "ehlo" : "helo", d.p, d.n, r);
}

static void
th_path_event(th_host *h, const char *kind, const llsmtp_path *p,
              const llsmtp_params *ps)
{
    th_buf line = {0};
    size_t i;
    th_buf_add(&line, "<", 1);
    th_buf_add(&line, p->mailbox.p, p->mailbox.n);
    th_buf_add(&line, ">", 1);
    if (p->flags & LLSMTP_PATH_ROUTE) {
        th_buf_add(&line, " route=", 7);
        th_buf_add(&line, p->route.p, p->route.n);
    }
    for (i = 0; i < ps->n; i++) {
        th_buf_add(&line, " ", 1);
        th_buf_add(&line, ps->v[i].key.p, ps->v[i].key.n);
        if (ps->v[i].value.p != NULL) {
            th_buf_add(&line, "=", 1);
            th_buf_add(&line, ps->v[i].value.p, ps->v[i].value.n);
        }
    }
    th_event(h, kind, line.p, line.n);
    th_buf_free(&line);
}

static int
th_on_mail(llsmtp_server *s, const llsmtp_path *p, const llsmtp_params *ps,
           llsmtp_reply *r)
{
    th_path_event(TH_HOST(s), "mail", p, ps);
    return th_decide(TH_HOST(s), "mail", p->mailbox.p, p->mailbox.n, r);
}

static int
th_on_rcpt(llsmtp_server *s, const llsmtp_path *p, const llsmtp_params *ps,
           llsmtp_reply *r)
{
    th_path_event(TH_HOST(s), "rcpt", p, ps);
    return th_decide(TH_HOST(s), "rcpt", p->mailbox.p, p->mailbox.n, r);
}

static int
th_on_param(llsmtp_server *s, int is_rcpt, const llsmtp_param *p,
            llsmtp_reply *r)
{
    th_host *h = TH_HOST(s);
    th_event(h, is_rcpt ? "param RCPT" : "param MAIL", p->key.p, p->key.n);
    return th_decide(h, "param", p->key.p, p->key.n, r);
}

static int
th_on_data_start(llsmtp_server *s, llsmtp_reply *r)
{
    th_host *h = TH_HOST(s);
    th_event(h, "data_start", NULL, 0);
    h->msg.n = 0;
    return th_decide(h, "data_start", "", 0, r);
}

static int
th_on_data(llsmtp_server *s, const char *p, size_t n)
{
    th_host *h = TH_HOST(s);
    const th_rule *rule = th_find(h, "data", "", 0);
    th_buf_add(&h->msg, p, n);
    if (rule != NULL && rule->fail)
        return LLSMTP_E_CALLBACK;
    if (rule != NULL && rule->pause) {
        h->data_pauses++;
        return LLSMTP_PAUSED;
    }
    return LLSMTP_OK;
}

static int
th_on_data_end(llsmtp_server *s, llsmtp_reply *r)
{
    th_host *h = TH_HOST(s);
    th_event(h, "data_end", h->msg.p ? h->msg.p : "", h->msg.n);
    return th_decide(h, "data_end", h->msg.p ? h->msg.p : "", h->msg.n, r);
}

static int
th_on_data_abort(llsmtp_server *s, int why)
{
    th_host *h = TH_HOST(s);
    const char *w = why == LLSMTP_ABORT_SIZE      ? "size"
                    : why == LLSMTP_ABORT_BARE_LF ? "bare_lf"
                    : why == LLSMTP_ABORT_RESET   ? "reset"
                    : why == LLSMTP_ABORT_CLOSED  ? "closed"
                                                  : "unknown";
    th_event(h, "abort", w, strlen(w));
    h->msg.n = 0;
    return LLSMTP_OK;
}

static int
th_on_rset(llsmtp_server *s, llsmtp_reply *r)
{
    th_event(TH_HOST(s), "rset", NULL, 0);
    return th_decide(TH_HOST(s), "rset", "", 0, r);
}

static int
th_on_vrfy(llsmtp_server *s, llsmtp_span a, llsmtp_reply *r)
{
    th_event(TH_HOST(s), "vrfy", a.p, a.n);
    return th_decide(TH_HOST(s), "vrfy", a.p, a.n, r);
}

static int
th_on_expn(llsmtp_server *s, llsmtp_span a, llsmtp_reply *r)
{
    th_event(TH_HOST(s), "expn", a.p, a.n);
    return th_decide(TH_HOST(s), "expn", a.p, a.n, r);
}

static int
th_on_help(llsmtp_server *s, llsmtp_span a, llsmtp_reply *r)
{
    th_event(TH_HOST(s), "help", a.p, a.n);
    return th_decide(TH_HOST(s), "help", a.p, a.n, r);
}

static int
th_on_turn(llsmtp_server *s, llsmtp_reply *r)
{
    th_event(TH_HOST(s), "turn", NULL, 0);
    return th_decide(TH_HOST(s), "turn", "", 0, r);
}

static int
th_on_quit(llsmtp_server *s, llsmtp_reply *r)
{
    th_event(TH_HOST(s), "quit", NULL, 0);
    return th_decide(TH_HOST(s), "quit", "", 0, r);
}

static int
th_on_auth(llsmtp_server *s, const llsmtp_auth *c, llsmtp_reply *r)
{
    th_host *h = TH_HOST(s);
    th_buf line = {0};
    int rc;
    th_buf_add(&line, c->mechanism.p, c->mechanism.n);
    th_buf_adds(&line, " authzid=");
    th_buf_add(&line, c->authzid.p, c->authzid.n);
    th_buf_adds(&line, " user=");
    th_buf_add(&line, c->user.p, c->user.n);
    th_buf_adds(&line, " pass=");
    th_buf_add(&line, c->password.p, c->password.n);
    th_event(h, "auth", line.p, line.n);
    th_buf_free(&line);
    rc = th_decide(h, "auth", c->user.p, c->user.n, r);
    return rc;
}

static int
th_on_auth_step(llsmtp_server *s, const llsmtp_auth_step *st, llsmtp_reply *r)
{
    th_host *h = TH_HOST(s);
    th_buf line = {0};
    char num[32];
    const th_rule *rule;
    th_buf_add(&line, st->mechanism.p, st->mechanism.n);
    snprintf(num, sizeof num, " step=%u%s", st->step,
             st->has_data ? "" : " (none)");
    th_buf_adds(&line, num);
    if (st->data.n) {
        th_buf_adds(&line, " ");
        th_buf_add(&line, st->data.p, st->data.n);
    }
    th_event(h, "auth_step", line.p, line.n);
    th_buf_free(&line);
    /* rule text "challenge:XYZ" sends XYZ as a challenge */
    rule = th_find(h, "auth_step", st->data.p, st->data.n);
    if (rule != NULL && strncmp(rule->text, "challenge:", 10) == 0 &&
        !rule->defer) {
        llsmtp_reply_challenge(r, rule->text + 10, strlen(rule->text + 10));
        return LLSMTP_OK;
    }
    return th_decide(h, "auth_step", st->data.p, st->data.n, r);
}

static int
th_on_starttls(llsmtp_server *s, llsmtp_reply *r)
{
    th_event(TH_HOST(s), "starttls", NULL, 0);
    return th_decide(TH_HOST(s), "starttls", "", 0, r);
}

static int
th_on_relay_denied(llsmtp_server *s, const llsmtp_path *to)
{
    th_event(TH_HOST(s), "relay_denied", to->mailbox.p, to->mailbox.n);
    return LLSMTP_OK;
}

static int
th_on_lmtp_rcpt(llsmtp_server *s, size_t index, llsmtp_reply *r)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%zu", index);
    th_event(TH_HOST(s), "lmtp_rcpt", num, (size_t)n);
    return th_decide(TH_HOST(s), "lmtp_rcpt", num, (size_t)n, r);
}

static int
th_on_etrn(llsmtp_server *s, llsmtp_span a, llsmtp_reply *r)
{
    th_event(TH_HOST(s), "etrn", a.p, a.n);
    return th_decide(TH_HOST(s), "etrn", a.p, a.n, r);
}

const llsmtp_callbacks th_callbacks = {th_on_connect,
                                       th_on_helo,
                                       th_on_mail,
                                       th_on_rcpt,
                                       th_on_param,
                                       th_on_data_start,
                                       th_on_data,
                                       th_on_data_end,
                                       th_on_data_abort,
                                       th_on_rset,
                                       th_on_vrfy,
                                       th_on_expn,
                                       th_on_help,
                                       th_on_turn,
                                       th_on_quit,
                                       th_on_auth,
                                       th_on_auth_step,
                                       th_on_starttls,
                                       th_on_relay_denied,
                                       th_on_etrn,
                                       th_on_lmtp_rcpt,
                                       NULL,
                                       NULL};

/* Drains the session's output into h->out. */
void
th_drain(llsmtp_server *s, th_host *h)
{
    size_t n;
    const char *o = th_output(s, &n);
    th_buf_add(&h->out, o, n);
    (void)llsmtp_server_consume(s, n);
}

/* Resumes a paused session the way its rule says. */
int
th_resume(llsmtp_server *s, th_host *h)
{
    int rc;
    if (llsmtp_server_pending(s) == LLSMTP_PENDING_DATA)
        return llsmtp_server_resume(s, NULL);
    if (!h->have_resume)
        abort();
    h->have_resume = 0;
    rc = llsmtp_server_resume(s, &h->resume);
    return rc;
}

/* Feeds in[0..n) cut at the given chunk sizes (NULL: whole), handling
 * PAUSED, BLOCKED and CLOSE as a host would. tls[0..ntls) are offsets
 * where the client finished a TLS handshake: chunks never cross them and
 * llsmtp_server_tls_started is called there. eof: call llsmtp_server_eof
 * after the input. Returns the last status. */
int
th_run_tls(llsmtp_server *s, th_host *h, const char *in, size_t n,
           const size_t *cuts, size_t ncuts, int eof, const size_t *tls,
           size_t ntls)
{
    size_t off = 0, c = 0, t = 0;
    int rc = llsmtp_server_start(s);
    while (rc == LLSMTP_PAUSED)
        rc = th_resume(s, h);
    if (rc < 0) {
        th_event(h, "error", llsmtp_errname(rc), strlen(llsmtp_errname(rc)));
        th_drain(s, h);
        return rc;
    }
    for (;;) {
        size_t seg_end = t < ntls ? tls[t] : n;
        while (rc != LLSMTP_CLOSE && off < seg_end) {
            size_t len = seg_end - off, used = 0;
            if (cuts != NULL && c < ncuts && cuts[c] < len)
                len = cuts[c];
            c++;
            for (;;) {
                rc = llsmtp_server_feed(s, in + off, len, &used);
                off += used;
                len -= used;
                if (rc == LLSMTP_PAUSED) {
                    do
                        rc = th_resume(s, h);
                    while (rc == LLSMTP_PAUSED);
                }
                if (rc == LLSMTP_BLOCKED) {
                    /* drain, then feed again, even zero bytes */
                    th_drain(s, h);
                    continue;
                }
                if (rc < 0) {
                    th_event(h, "error", llsmtp_errname(rc),
                             strlen(llsmtp_errname(rc)));
                    th_drain(s, h);
                    return rc;
                }
                if (rc == LLSMTP_CLOSE || len == 0)
                    break;
            }
        }
        if (t >= ntls || rc == LLSMTP_CLOSE)
            break;
        /* the client read the 220 and did the handshake */
        off = seg_end;
        t++;
        {
            int trc = llsmtp_server_tls_started(s);
            th_event(h, "tls", trc == LLSMTP_OK ? NULL : llsmtp_errname(trc),
                     trc == LLSMTP_OK ? 0 : strlen(llsmtp_errname(trc)));
        }
    }
    if (rc != LLSMTP_CLOSE && eof)
        rc = llsmtp_server_eof(s);
    th_drain(s, h);
    return rc;
}

/* LLSMTP_CFG_LENT_OUTPUT: lends the next buffer unless one is held. */
static void
th_lend(llsmtp_server *s, th_host *h)
{
    int rc;
    if (h->lend[0] == NULL)
        return;
    rc = llsmtp_server_lend(s, h->lend[h->lends % 2], h->lend_cap);
    if (rc == LLSMTP_E_STATE)
        return; /* still holding the last one: output waits */
    if (rc != LLSMTP_OK)
        abort();
    h->lends++;
}

/* Takes the loan back once everything was written, and scribbles over
 * it: a session that read it later would write garbage. */
static void
th_reclaim(llsmtp_server *s, th_host *h)
{
    char *b;
    if (h->lend[0] == NULL)
        return;
    b = llsmtp_server_reclaim(s);
    if (llsmtp_server_output(s).n != 0) {
        if (b != NULL)
            abort(); /* taken back with bytes unwritten */
        return;
    }
    if (b == NULL)
        return; /* nothing was lent */
    if (b != h->lend[0] && b != h->lend[1])
        abort();
    memset(b, '#', h->lend_cap);
    if (llsmtp_server_output(s).n != 0)
        abort();
}

/* A failure status, as th_run_tls logs it. */
static int
th_error(th_host *h, int rc)
{
    th_event(h, "error", llsmtp_errname(rc), strlen(llsmtp_errname(rc)));
    return rc;
}

/* The same dialogue driven the way llsmtp_server_wants() tells a host
 * to: no status is looked at but failures, the input is "read" in the
 * chunks cuts gives and fed only when the session wants to read, and
 * every bit of wants() is checked against what the next call does. */
int
th_run_wants(llsmtp_server *s, th_host *h, const char *in, size_t n,
             const size_t *cuts, size_t ncuts, int eof, const size_t *tls,
             size_t ntls)
{
    size_t off = 0, avail = 0, c = 0, t = 0;
    int rc, closed = 0;
    th_lend(s, h);
    rc = llsmtp_server_start(s);
    if (rc < 0) {
        th_drain(s, h);
        return th_error(h, rc);
    }
    for (;;) {
        unsigned w = llsmtp_server_wants(s);
        size_t seg_end = t < ntls ? tls[t] : n;
        int more_input = off < avail || avail < seg_end;
        if ((w & LLSMTP_WANT_WRITE) &&
            !(h->reads_first && (w & LLSMTP_WANT_READ) && more_input)) {
            llsmtp_span o = llsmtp_server_output(s);
            if (o.n == 0)
                abort(); /* WRITE with nothing to write */
            th_buf_add(&h->out, o.p, o.n);
            rc = llsmtp_server_consume(s, o.n);
            if (rc < 0) {
                th_drain(s, h);
                return th_error(h, rc);
            }
            th_reclaim(s, h);
            continue;
        }
        if (llsmtp_server_output(s).n != 0 && !(w & LLSMTP_WANT_WRITE))
            abort(); /* output waiting, and no WRITE */
        if (w & LLSMTP_WANT_CLOSE) {
            closed = 1;
            break;
        }
        if (w & LLSMTP_WANT_TLS) {
            int trc;
            if (t >= ntls)
                break;             /* the client never did the handshake */
            off = avail = seg_end; /* what came before it is dropped */
            t++;
            trc = llsmtp_server_tls_started(s);
            th_event(h, "tls", trc == LLSMTP_OK ? NULL : llsmtp_errname(trc),
                     trc == LLSMTP_OK ? 0 : strlen(llsmtp_errname(trc)));
            continue;
        }
        if (w & LLSMTP_WANT_RESUME) {
            if (llsmtp_server_pending(s) == LLSMTP_PENDING_NONE)
                abort(); /* RESUME with nothing pending */
            th_lend(s, h);
            rc = th_resume(s, h);
            if (rc < 0) {
                th_drain(s, h);
                return th_error(h, rc);
            }
            continue;
        }
        if (llsmtp_server_pending(s) != LLSMTP_PENDING_NONE)
            abort(); /* a decision pending, and no RESUME */
        if (!(w & LLSMTP_WANT_READ))
            abort(); /* the session wants nothing: a host would hang */
        if (off < avail) {
            size_t used = 0;
            th_lend(s, h);
            rc = llsmtp_server_feed(s, in + off, avail - off, &used);
            off += used;
            if (rc < 0) {
                th_drain(s, h);
                return th_error(h, rc);
            }
            if (used == 0 && rc != LLSMTP_PAUSED && rc != LLSMTP_CLOSE &&
                rc != LLSMTP_START_TLS)
                abort(); /* READ, and nothing taken */
            continue;
        }
        if (avail >= seg_end)
            break; /* all read: the client waits, or hangs up */
        avail += cuts != NULL && c < ncuts && cuts[c] < seg_end - avail
                     ? cuts[c]
                     : seg_end - avail;
        c++;
    }
    if (!closed && eof)
        rc = llsmtp_server_eof(s);
    else if (closed)
        rc = LLSMTP_CLOSE;
    th_drain(s, h);
    th_reclaim(s, h);
    th_lend(s, h); /* for what the caller does next (a timeout's 421) */
    return rc;
}

int
th_run(llsmtp_server *s, th_host *h, const char *in, size_t n,
       const size_t *cuts, size_t ncuts, int eof)
{
    return th_run_tls(s, h, in, n, cuts, ncuts, eof, NULL, 0);
}

/* A session in malloc'd memory with the recording callbacks. */
llsmtp_server *
th_session(const llsmtp_config *cfg, th_host *h)
{
    size_t sz = llsmtp_server_size(cfg);
    void *mem = calloc(1, sz); /* zeroed: tests scan session memory */
    llsmtp_server *s;
    if (mem == NULL)
        abort();
    s = llsmtp_server_init(mem, sz, cfg, h);
    if (s == NULL)
        abort();
    return s;
}

void
th_host_free(th_host *h)
{
    th_buf_free(&h->events);
    th_buf_free(&h->msg);
    th_buf_free(&h->out);
}

/* Deterministic PRNG for splits (xorshift64*). */
uint64_t
th_rand(uint64_t *st)
{
    uint64_t x = *st;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *st = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* ---- generated paths (differential tests) ----------------------------- */

typedef struct th_gen {
    char *p;
    size_t n, cap;
} th_gen;

static void
th_gen_put(th_gen *g, const char *p, size_t n)
{
    if (n > g->cap - g->n)
        n = g->cap - g->n;
    memcpy(g->p + g->n, p, n);
    g->n += n;
}

static void
th_gen_puts(th_gen *g, const char *str)
{
    th_gen_put(g, str, strlen(str));
}

static void
th_gen_c(th_gen *g, char c)
{
    th_gen_put(g, &c, 1);
}

/* One of a string's octets. */
static char
th_pick(uint64_t *seed, const char *set)
{
    return set[th_rand(seed) % strlen(set)];
}

static const char th_atext[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRS"
                               "TUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~";
static const char th_ldh[] = "-abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU"
                             "VWXYZ0123456789"; /* from +1: no '-' */
/* UTF-8, valid and not: overlong, surrogate, past U+10FFFF, cut short */
static const char *const th_utf8[] = {
    "\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x98\x80", "\xc3",
    "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe0\x80\xaf",
    "\x80",     "\xff",         "\xc3\xa9\xc3\xa9", "b\xc3\xbc"};
static const char th_hostile[] = "\r\n\t\x01\x7f <>@.,:;\"\\[]()";

static void
th_gen_octet(uint64_t *seed, th_gen *g)
{
    uint64_t r = th_rand(seed) % 20;
    if (r == 0)
        th_gen_c(g, (char)(th_rand(seed) % 256)); /* any, NUL too */
    else if (r == 1)
        th_gen_c(g, th_pick(seed, th_hostile));
    else
        th_gen_puts(
            g, th_utf8[th_rand(seed) % (sizeof th_utf8 / sizeof th_utf8[0])]);
}

static void
th_gen_dom(uint64_t *seed, th_gen *g)
{
    uint64_t r = th_rand(seed) % 20;
    size_t labels, l, k, len;
    if (r == 0) {
        static const char *const lits[] = {"[192.0.2.1]",
                                           "[IPv6:2001:db8::1]",
                                           "[ipv6:::ffff:192.0.2.1]",
                                           "[tag:some-thing]",
                                           "[300.1.1.1]",
                                           "[]",
                                           "[192.0.2.1",
                                           "[010.0.0.1]",
                                           "[IPv6:1:2:3:4:5:6:7:8:9]",
                                           "[x-:y]"};
        th_gen_puts(g, lits[th_rand(seed) % (sizeof lits / sizeof lits[0])]);
        return;
    }
    if (r == 1) {
        th_gen_puts(g, th_rand(seed) % 2 ? "example.test" : "EXAMPLE.Test");
        return;
    }
    labels = 1 + (size_t)(th_rand(seed) % 4);
    for (l = 0; l < labels; l++) {
        if (l)
            th_gen_c(g, '.');
        len = th_rand(seed) % 30 == 0 ? 55 + (size_t)(th_rand(seed) % 15)
                                      : 1 + (size_t)(th_rand(seed) % 12);
        if (th_rand(seed) % 40 == 0)
            len = 0; /* an empty label */
        for (k = 0; k < len; k++) {
            if (th_rand(seed) % 150 == 0)
                th_gen_octet(seed, g);
            else if ((k == 0 || k + 1 == len) && th_rand(seed) % 4 != 0)
                th_gen_c(g, th_pick(seed, th_ldh + 1)); /* no '-' */
            else
                th_gen_c(g, th_pick(seed, th_ldh));
        }
    }
    if (th_rand(seed) % 15 == 0)
        th_gen_c(g, '.');        /* a trailing dot */
    if (th_rand(seed) % 60 == 0) /* past 255 octets */
        for (k = 0; k < 25; k++)
            th_gen_puts(g, ".abcdefghi");
}

size_t
th_gen_domain(uint64_t *seed, char *buf, size_t cap)
{
    th_gen g;
    g.p = buf;
    g.n = 0;
    g.cap = cap;
    th_gen_dom(seed, &g);
    return g.n;
}

size_t
th_gen_path(uint64_t *seed, char *buf, size_t cap)
{
    th_gen g;
    uint64_t r = th_rand(seed) % 100;
    size_t atoms, a, k, len;
    g.p = buf;
    g.n = 0;
    g.cap = cap;
    if (r <= 1) {
        th_gen_puts(&g, r == 0                   ? "<>"
                        : th_rand(seed) % 2 == 0 ? "<Postmaster>"
                                                 : "<postMASTER>");
        return g.n;
    }
    if (th_rand(seed) % 50 != 0)
        th_gen_c(&g, '<');
    if (th_rand(seed) % 10 == 0) { /* a source route */
        th_gen_c(&g, '@');
        th_gen_dom(seed, &g);
        if (th_rand(seed) % 2) {
            th_gen_puts(&g, ",@");
            th_gen_dom(seed, &g);
        }
        th_gen_c(&g, ':');
    }
    r = th_rand(seed) % 10;
    if (r == 0) { /* Quoted-string */
        th_gen_c(&g, '"');
        len = (size_t)(th_rand(seed) % 12);
        for (k = 0; k < len; k++) {
            uint64_t q = th_rand(seed) % 10;
            if (q == 0)
                th_gen_puts(&g, th_rand(seed) % 2 ? "\\\"" : "\\\\");
            else if (q == 1)
                th_gen_octet(seed, &g);
            else
                th_gen_c(&g, th_pick(seed, "ab >@,.:Xy"));
        }
        if (th_rand(seed) % 20 != 0)
            th_gen_c(&g, '"');
    } else if (r == 1) {
        th_gen_puts(&g, th_rand(seed) % 2 ? "postmaster" : "PostMaster");
    } else { /* Dot-string */
        atoms = 1 + (size_t)(th_rand(seed) % 3);
        for (a = 0; a < atoms; a++) {
            if (a)
                th_gen_c(&g, '.');
            len = th_rand(seed) % 20 == 0 ? (size_t)(th_rand(seed) % 600)
                                          : 1 + (size_t)(th_rand(seed) % 10);
            for (k = 0; k < len; k++) {
                if (th_rand(seed) % 150 == 0)
                    th_gen_octet(seed, &g);
                else
                    th_gen_c(&g, th_pick(seed, th_atext));
            }
        }
        if (th_rand(seed) % 30 == 0)
            th_gen_c(&g, '.');
    }
    if (th_rand(seed) % 30 != 0) {
        th_gen_c(&g, '@');
        th_gen_dom(seed, &g);
    }
    if (th_rand(seed) % 40 != 0)
        th_gen_c(&g, '>');
    return g.n;
}
