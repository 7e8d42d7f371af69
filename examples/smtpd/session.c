/* SPDX-License-Identifier: MIT
 *
 * session.c - smtpd's side of an SMTP session: the llsmtp callbacks (what
 * the library asks the host: HELO, MAIL, RCPT, DATA, AUTH, ETRN, each
 * reply for the log), the users (--user, --users) and the recipients
 * (--recipients, --relay-recipients) they check against, and the
 * transaction they build up (sender, recipients, parameters). The
 * library does the protocol; this file does policy. No I/O but ETRN's
 * child process and its pipe.
 */
#include "smtpd.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

void
add_user(smtpd *d, const char *spec, const char *where)
{
    char **v;
    const char *colon = strchr(spec, ':');
    if (colon == NULL || colon == spec || colon[1] == '\0')
        log_die(2, "bad user %s (want NAME:PASSWORD)", where);
    v = (char **)realloc(d->opt.users, (d->opt.nusers + 1) * sizeof *v);
    if (v == NULL || (v[d->opt.nusers] = strdup(spec)) == NULL) {
        perror("smtpd");
        exit(1);
    }
    d->opt.users = v;
    d->opt.nusers++;
}

void
read_users(smtpd *d, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    if (f == NULL) {
        log_say("cannot read --users %s: %s", path, strerror(errno));
        exit(2);
    }
    while (fgets(line, sizeof line, f)) {
        size_t n = strcspn(line, "\r\n");
        line[n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        add_user(d, line, path);
    }
    fclose(f);
}

/* ASCII lower case in place (never tolower: locales). */
static void
ascii_lower(char *p)
{
    for (; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* --recipients / --relay-recipients FILE: "user@domain" or "@domain"
 * lines, '#' comments, blank lines; kept lower-case and sorted. */
void
read_recipients(const char *opt_name, const char *path, char ***out, size_t *n)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    unsigned lineno = 0;
    if (f == NULL) {
        log_say("cannot read %s %s: %s", opt_name, path, strerror(errno));
        exit(2);
    }
    while (fgets(line, sizeof line, f)) {
        char *p = line, *e, *at, **v;
        lineno++;
        p[strcspn(p, "\r\n#")] = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        e = p + strlen(p);
        while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
            *--e = '\0';
        if (*p == '\0')
            continue;
        at = strrchr(p, '@');
        if (at == NULL || at[1] == '\0' || strchr(p, ' ') != NULL) {
            log_say("%s %s line %u: want user@domain or "
                    "@domain, not \"%s\"",
                    opt_name, path, lineno, p);
            exit(2);
        }
        ascii_lower(p);
        v = (char **)realloc(*out, (*n + 1) * sizeof *v);
        if (v == NULL || (v[*n] = strdup(p)) == NULL) {
            perror("smtpd");
            exit(1);
        }
        *out = v;
        (*n)++;
    }
    fclose(f);
    if (*n > 1)
        qsort(*out, *n, sizeof **out, cmp_str);
}

static int
rcpt_listed(char **v, size_t n, const char *key)
{
    return n > 0 && bsearch(&key, v, n, sizeof *v, cmp_str) != NULL;
}

static char *
dupspan(const char *p, size_t n)
{
    char *s = (char *)malloc(n + 1);
    if (s == NULL)
        return NULL;
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* The recipients accepted since the last call, into the log: lines of
 * as many as fit (log_rcpts_add). Called when the list is complete, at
 * the message's start (DATA, the first BDAT chunk), and when the
 * transaction ends however it ends (free_tx): every accepted recipient
 * is logged once, without a line and a write per recipient (with 50
 * recipients a message, that line was an eighth of smtpd's instructions).
 * Refused ones have their own line (on_reply). */
static void
log_accepted(conn *c)
{
    log_rcpts b;
    size_t i;
    if (c->rcpt_logged >= c->nrcpt)
        return;
    log_rcpts_start(&b, c->sid);
    for (i = c->rcpt_logged; i < c->nrcpt; i++) {
        const char *p = rcpt_path(c, i);
        log_rcpts_add(&b, p, strlen(p), c->relay[i]);
    }
    log_rcpts_end(&b);
    c->rcpt_logged = c->nrcpt;
}

void
free_tx(conn *c)
{
    log_accepted(c);
    drop_message(c);
    free(c->sender);
    c->sender = NULL;
    free(c->params);
    c->params = NULL;
    c->nrcpt = 0;
    c->rcpt_logged = 0;
    c->rtext_len = 0;
    if (c->rtext_cap > 64 * 1024) {
        /* a transaction with hundreds of long paths: not kept idle */
        free(c->rtext);
        free(c->rcpt_at);
        free(c->relay);
        c->rtext = c->relay = NULL;
        c->rcpt_at = NULL;
        c->rtext_cap = c->rcpt_cap = 0;
    }
}

/* Keeps p[0..n) as a string in *dst (replacing what it held): 0, or -1
 * when memory runs out. */
int
keep_text(char **dst, const char *p, size_t n)
{
    char *t = (char *)malloc(n + 1);
    if (t == NULL)
        return -1;
    memcpy(t, p, n);
    t[n] = '\0';
    free(*dst);
    *dst = t;
    return 0;
}

/* "KEY=VALUE KEY" as given (what %.*s would print of each span), into
 * t, which has room for params_len(ps) octets; returns the end. */
static char *
params_put(char *t, const llsmtp_params *ps)
{
    size_t i, n;
    const char *z;
    for (i = 0; i < ps->n; i++) {
        const llsmtp_span *k = &ps->v[i].key, *v = &ps->v[i].value;
        if (i)
            *t++ = ' ';
        z = (const char *)memchr(k->p, '\0', k->n);
        n = z != NULL ? (size_t)(z - k->p) : k->n;
        memcpy(t, k->p, n);
        t += n;
        if (v->p != NULL) {
            *t++ = '=';
            z = (const char *)memchr(v->p, '\0', v->n);
            n = z != NULL ? (size_t)(z - v->p) : v->n;
            memcpy(t, v->p, n);
            t += n;
        }
    }
    return t;
}

static size_t
params_len(const llsmtp_params *ps)
{
    size_t i, len = 0;
    for (i = 0; i < ps->n; i++)
        len += ps->v[i].key.n + ps->v[i].value.n + 2;
    return len;
}

/* "KEY=VALUE KEY" as given, for the envelope file. */
static char *
params_text(const llsmtp_params *ps)
{
    char *t = (char *)malloc(params_len(ps) + 1);
    if (t != NULL)
        *params_put(t, ps) = '\0';
    return t;
}

const char *
rcpt_path(const conn *c, size_t i)
{
    return c->rtext + c->rcpt_at[i];
}

const char *
rcpt_params(const conn *c, size_t i)
{
    const char *p = rcpt_path(c, i);
    return p + strlen(p) + 1;
}

/* Room for one more recipient whose path and parameters take need
 * octets (NULs included). */
static int
rcpt_room(conn *c, size_t need)
{
    if (c->nrcpt == c->rcpt_cap) {
        size_t cap = c->rcpt_cap ? c->rcpt_cap * 2 : 4;
        size_t *at = (size_t *)realloc(c->rcpt_at, cap * sizeof *at);
        char *rl;
        if (at == NULL)
            return 0;
        c->rcpt_at = at;
        rl = (char *)realloc(c->relay, cap);
        if (rl == NULL)
            return 0;
        c->relay = rl;
        c->rcpt_cap = cap;
    }
    if (c->rtext_cap - c->rtext_len < need) {
        size_t cap = c->rtext_cap ? c->rtext_cap : 1024;
        char *t;
        while (cap - c->rtext_len < need)
            cap *= 2;
        t = (char *)realloc(c->rtext, cap);
        if (t == NULL)
            return 0;
        c->rtext = t;
        c->rtext_cap = cap;
    }
    return 1;
}

static int
on_helo(llsmtp_server *s, llsmtp_span d, int is_ehlo, llsmtp_reply *r)
{
    conn *c = CONN(s);
    (void)r;
    if (keep_text(&c->helo, d.p, d.n) != 0)
        return LLSMTP_E_CALLBACK;
    c->is_ehlo = is_ehlo;
    free_tx(c);
    log_held(&c->log, "session=%lu helo=%s", c->sid, c->helo);
    return LLSMTP_OK;
}

static int
on_mail(llsmtp_server *s, const llsmtp_path *from, const llsmtp_params *ps,
        llsmtp_reply *r)
{
    conn *c = CONN(s);
    free_tx(c);
    if (c->d->draining) {
        /* draining: no new transaction (a pipelined MAIL after the last
         * message's reply); 421 closes the session */
        char text[300];
        snprintf(text, sizeof text, "%s Service shutting down",
                 c->d->opt.hostname);
        llsmtp_reply_set(r, 421, "4.3.2", text);
        drain_told(c);
        return LLSMTP_OK;
    }
    c->sender = dupspan(from->mailbox.p, from->mailbox.n);
    c->params = params_text(ps);
    if (c->sender == NULL || c->params == NULL)
        return LLSMTP_E_CALLBACK;
    log_release(&c->log); /* not a health check */
    log_line("session=%lu mail=<%s>", c->sid, c->sender);
    return LLSMTP_OK;
}

/* Whether domain (not NUL-terminated) is one of list, as the relay
 * policy matches: case-insensitive, ".d" for every subdomain of d. */
static int
domain_in(const char *d, size_t dn, const char *const *list, int n)
{
    int i;
    for (i = 0; i < n; i++) {
        const char *e = list[i];
        size_t en = strlen(e);
        if (e[0] == '.' ? dn > en && strncasecmp(d + dn - en, e, en) == 0
                        : dn == en && strncasecmp(d, e, en) == 0)
            return 1;
    }
    return 0;
}

/* Recipient verification, as Postfix's local_recipient_maps and
 * relay_recipient_maps: with --recipients a local recipient must be
 * listed (or its domain listed as "@domain", or its local part be a
 * --user name, or be postmaster: RFC 5321 4.5.1); with
 * --relay-recipients the same for the relay domains. Domains and local
 * parts compare case-insensitively (ASCII), as Postfix's tables do.
 * Returns 1 for a known recipient. */
/* RFC 5321 4.1.2: "alice"@d and alice@d name one mailbox. A quoted local
 * part at the start of key (ln octets) whose content is a plain
 * dot-string is rewritten unquoted in place (the rest of key moves up);
 * returns the local part's new length. Anything else stays as written. */
static size_t
unquote_local(char *key, size_t ln)
{
    size_t i;
    int dot = 1; /* the previous octet was a dot (or the start) */
    if (ln < 3 || key[0] != '"' || key[ln - 1] != '"')
        return ln;
    for (i = 1; i + 1 < ln; i++) {
        unsigned char ch = (unsigned char)key[i];
        if (ch == '.') {
            if (dot)
                return ln;
            dot = 1;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   (ch >= '0' && ch <= '9') ||
                   (ch != 0 && strchr("!#$%&'*+-/=?^_`{|}~", ch))) {
            dot = 0;
        } else {
            return ln; /* needs its quotes: keep them */
        }
    }
    if (dot)
        return ln;
    memmove(key, key + 1, ln - 2);
    memmove(key + ln - 2, key + ln, strlen(key + ln) + 1);
    return ln - 2;
}

#define RCPT_KEY_MAX 600 /* a longer path is never known */

static int rcpt_listed_as(const options *o, const llsmtp_path *to, int relay);

static int
rcpt_known(const options *o, const llsmtp_path *to, int relay)
{
    if (to->flags & LLSMTP_PATH_POSTMASTER)
        return 1;
    if (to->mailbox.n + 2 > RCPT_KEY_MAX)
        return 0;
    if (relay) {
        /* only the relay domains' recipients are known here; mail that
         * a trusted or authenticated client relays elsewhere is theirs */
        if (!o->verify_relay || !domain_in(to->domain.p, to->domain.n,
                                           o->relay_domains, o->nrelay))
            return 1;
    } else if (!o->verify_local) {
        return 1;
    }
    return rcpt_listed_as(o, to, relay);
}

/* rcpt_known's lookup in the lists, out of line (its key buffer is for
 * the servers that verify recipients only). */
static int
rcpt_listed_as(const options *o, const llsmtp_path *to, int relay)
{
    char key[RCPT_KEY_MAX], *at;
    size_t i, ln = to->local.n;
    snprintf(key, sizeof key, "%.*s", (int)to->mailbox.n, to->mailbox.p);
    ln = unquote_local(key, ln);
    ascii_lower(key);
    at = key + ln; /* local part (unquoted when it can be), then "@domain" */
    if (*at != '@')
        return 0;
    if (relay)
        return rcpt_listed(o->rcpts_relay, o->nrcpts_relay, key) ||
               rcpt_listed(o->rcpts_relay, o->nrcpts_relay, at);
    if (ln == 10 && strncmp(key, "postmaster", 10) == 0)
        return 1;
    for (i = 0; i < o->nusers; i++) {
        const char *u = o->users[i];
        size_t un = strcspn(u, ":");
        if ((un == ln && strncasecmp(u, key, ln) == 0) ||
            (un == strlen(key) && strncasecmp(u, key, un) == 0))
            return 1;
    }
    if (to->flags & LLSMTP_PATH_LITERAL) {
        /* user@[own address]: the local part in any local domain */
        for (i = 0; i < o->nrcpts_local; i++) {
            const char *e = o->rcpts_local[i];
            if (strncmp(e, key, ln) == 0 && e[ln] == '@')
                return 1;
        }
        return 0;
    }
    return rcpt_listed(o->rcpts_local, o->nrcpts_local, key) ||
           rcpt_listed(o->rcpts_local, o->nrcpts_local, at);
}

/* An unknown recipient: refused here, not bounced later (no
 * backscatter; the reply copies the text). */
static int
rcpt_unknown(const llsmtp_path *to, llsmtp_reply *r)
{
    char text[600];
    snprintf(text, sizeof text,
             "<%.*s>: Recipient address rejected: User unknown",
             (int)to->mailbox.n, to->mailbox.p);
    llsmtp_reply_set(r, 550, "5.1.1", text);
    return LLSMTP_OK;
}

static int
on_rcpt(llsmtp_server *s, const llsmtp_path *to, const llsmtp_params *ps,
        llsmtp_reply *r)
{
    conn *c = CONN(s);
    char *t;
    /* The library's relay policy already refused recipients we may not
     * take (and then this callback is not called). */
    int relay = llsmtp_server_rcpt_verdict(s) == LLSMTP_RELAY_ALLOWED;
    if (!rcpt_known(&c->d->opt, to, relay))
        return rcpt_unknown(to, r);
    if (!rcpt_room(c, to->mailbox.n + params_len(ps) + 2))
        return LLSMTP_E_CALLBACK;
    t = c->rtext + c->rtext_len;
    c->rcpt_at[c->nrcpt] = c->rtext_len;
    memcpy(t, to->mailbox.p, to->mailbox.n);
    t += to->mailbox.n;
    *t++ = '\0';
    if (ps->n != 0)
        t = params_put(t, ps);
    *t++ = '\0';
    c->rtext_len = (size_t)(t - c->rtext);
    c->relay[c->nrcpt] = (char)relay;
    c->nrcpt++; /* logged with the others (log_accepted) */
    return LLSMTP_OK;
}

/* RFC 3848: ESMTP, ESMTPA (authenticated), ESMTPS (TLS), ESMTPSA. */
const char *
protocol(const conn *c)
{
    int tls = llsmtp_server_tls_active(c->s), auth = c->auth_user != NULL;
    if (c->d->opt.lmtp)
        return tls ? (auth ? "LMTPSA" : "LMTPS") : (auth ? "LMTPA" : "LMTP");
    if (!c->is_ehlo)
        return "SMTP";
    return tls ? (auth ? "ESMTPSA" : "ESMTPS") : (auth ? "ESMTPA" : "ESMTP");
}

static int
on_data_start(llsmtp_server *s, llsmtp_reply *r)
{
    conn *c = CONN(s);
    log_accepted(c); /* the list is complete */
    c->write_errno = 0;
    new_id(c->d, c->id, sizeof c->id);
    c->hops = 0;
    c->hdr_pos = 0;
    if (c->d->opt.discard)
        return LLSMTP_OK;
    return spool_begin(c, r);
}

/* Header scan states besides 0..9 (that many octets of "received:"
 * matched at the start of a line). */
enum { HDR_SKIP = 10, HDR_CR = 11, HDR_DONE = 12 };

/* Counts the Received: headers (RFC 5321 6.3: a mail loop shows as too
 * many of them) up to the blank line that ends the header, across any
 * split of the message; folded lines and the body do not count. */
static void
count_hops(conn *c, const char *p, size_t n)
{
    static const char rcv[] = "received:";
    size_t i;
    for (i = 0; i < n && c->hdr_pos != HDR_DONE; i++) {
        char ch = p[i];
        if (ch == '\n') {
            c->hdr_pos = c->hdr_pos == 0 || c->hdr_pos == HDR_CR ? HDR_DONE
                                                                 : 0;
        } else if (c->hdr_pos == 0 && ch == '\r') {
            c->hdr_pos = HDR_CR;
        } else if (c->hdr_pos < 9) {
            if (c->hdr_pos == 8 && (ch == ' ' || ch == '\t'))
                continue; /* RFC 5322 4.5 obs-optional: "Received :" */
            if (ch >= 'A' && ch <= 'Z')
                ch = (char)(ch - 'A' + 'a');
            if (ch != rcv[c->hdr_pos])
                c->hdr_pos = HDR_SKIP;
            else if (++c->hdr_pos == 9) {
                c->hops++;
                c->hdr_pos = HDR_SKIP;
            }
        } else if (c->hdr_pos == HDR_CR) {
            c->hdr_pos = HDR_SKIP;
        }
    }
}

static int
on_data(llsmtp_server *s, const char *p, size_t n)
{
    conn *c = CONN(s);
    if (c->hdr_pos != HDR_DONE)
        count_hops(c, p, n);
    return spool_write(c, p, n);
}

static int
on_data_end(llsmtp_server *s, llsmtp_reply *r)
{
    conn *c = CONN(s);
    if (c->hops > c->d->opt.max_hops) {
        /* a mail loop: the refusal is logged with the reply */
        llsmtp_reply_set(r, 554, "5.4.6", "Too many hops");
        free_tx(c);
        return LLSMTP_OK;
    }
    if (c->d->opt.discard) {
        llsmtp_reply_set_id(r, c->id, strlen(c->id));
        log_line("session=%lu queued=%s discarded", c->sid, c->id);
        free_tx(c);
        return LLSMTP_OK;
    }
    return spool_submit(c, r);
}

static int
on_data_abort(llsmtp_server *s, int why)
{
    conn *c = CONN(s);
    if (c->job != NULL) {
        /* ended before its 250: the storage thread drops the message if
         * it has not taken it yet, else stores it (see stored()) */
        log_line("session=%lu connection lost while queue=%s was being stored",
                 c->sid, c->job->id);
        commit_cancel(c->d->commit, c->job);
        c->job = NULL;
        return LLSMTP_OK;
    }
    log_line("session=%lu message dropped (%s)", c->sid,
             why == LLSMTP_ABORT_SIZE      ? "too big"
             : why == LLSMTP_ABORT_BARE_LF ? "bare LF"
                                           : "connection lost");
    drop_message(c);
    return LLSMTP_OK;
}

static int
on_rset(llsmtp_server *s, llsmtp_reply *r)
{
    (void)r;
    free_tx(CONN(s));
    return LLSMTP_OK;
}

/* Compares without an early exit, so timing says nothing about where a
 * guess went wrong. */
static int
same(const char *a, size_t an, const char *b, size_t bn)
{
    size_t i;
    unsigned char d = (unsigned char)(an != bn);
    for (i = 0; i < an && i < bn; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

static int
on_auth(llsmtp_server *s, const llsmtp_auth *cred, llsmtp_reply *r)
{
    conn *c = CONN(s);
    size_t i;
    for (i = 0; i < c->d->opt.nusers; i++) {
        const char *u = c->d->opt.users[i], *colon = strchr(u, ':');
        size_t un = (size_t)(colon - u);
        if (same(u, un, cred->user.p, cred->user.n) &&
            same(colon + 1, strlen(colon + 1), cred->password.p,
                 cred->password.n) &&
            (cred->authzid.n == 0 ||
             same(cred->authzid.p, cred->authzid.n, u, un))) {
            if (keep_text(&c->auth_user, u, un) != 0)
                return LLSMTP_E_CALLBACK;
            llsmtp_reply_set(r, 235, "2.7.0", NULL);
            log_held(&c->log, "session=%lu auth=%s", c->sid, c->auth_user);
            return LLSMTP_OK;
        }
    }
    /* the default reply refuses (535 5.7.8), and that is logged */
    return LLSMTP_OK;
}

/* A free ETRN slot, or NULL when MAX_ETRN scans run. A scan runs while
 * a session waits for it: one that has answered (its pipe at end of
 * file) or was killed with its session does no more work, though its
 * child may not be reaped yet (nothing wakes poll() when a child ends:
 * that is the next round's queue_reap, maybe a minute away). Its pid is
 * then forgotten with the slot; only a waited-for scan's is ever
 * killed, and etrn_reaped clears the waiter before its pid can be
 * reused. */
static etrn_scan *
etrn_slot(smtpd *d)
{
    size_t k;
    for (k = 0; k < MAX_ETRN; k++)
        if (d->etrn[k].waiter == NULL)
            return &d->etrn[k];
    return NULL;
}

void
etrn_forget(conn *c)
{
    size_t k;
    for (k = 0; k < MAX_ETRN; k++)
        if (c->d->etrn[k].waiter == c) {
            /* not reaped yet (etrn_reaped clears waiter first), so the
             * pid is still this child's */
            kill(c->d->etrn[k].pid, SIGKILL);
            c->d->etrn[k].waiter = NULL;
        }
}

void
etrn_reaped(void *arg, pid_t pid)
{
    smtpd *d = (smtpd *)arg;
    size_t k;
    for (k = 0; k < MAX_ETRN; k++)
        if (d->etrn[k].pid == pid) {
            d->etrn[k].pid = 0;
            d->etrn[k].waiter = NULL;
        }
}

/* ETRN (RFC 1985): a queue run now for what waits for the node. Finding
 * those entries means reading every envelope, so a child process does
 * it while this session waits (its decision deferred) and every other
 * session goes on; etrn_read() answers. At most MAX_ETRN scans run: a
 * session that goes takes its scan with it (etrn_forget), so clients
 * that ask and hang up cannot leave scans behind. */
static int
on_etrn(llsmtp_server *s, llsmtp_span arg, llsmtp_reply *r)
{
    char text[300];
    conn *c = CONN(s);
    int p[2];
    pid_t pid;
    etrn_scan *slot = etrn_slot(c->d);
    log_held(&c->log, "session=%lu etrn=%.*s", c->sid, (int)arg.n, arg.p);
    if (c->d->opt.discard || (arg.n > 0 && arg.p[0] == '#') || arg.n > 255 ||
        slot == NULL) {
        snprintf(text, sizeof text, "Unable to queue messages for node %.*s",
                 (int)arg.n, arg.p);
        llsmtp_reply_set(r, 458, "4.3.0", text);
        return LLSMTP_OK;
    }
    if (queue_entries(c->d->outq) == 0) {
        snprintf(text, sizeof text, "No messages waiting for node %.*s",
                 (int)arg.n, arg.p);
        llsmtp_reply_set(r, 251, "2.0.0", text);
        return LLSMTP_OK;
    }
    if (pipe(p) != 0) {
        llsmtp_reply_set(r, 458, "4.3.0", "Unable to queue messages now");
        return LLSMTP_OK;
    }
    fflush(stderr); /* or the child writes the parent's lines too */
    pid = fork();
    if (pid == 0) {
        runner_setup(c->d);
        close(p[0]);
        signal(SIGTERM, SIG_DFL);
        _exit(queue_etrn_scan(c->d->outq, arg.p, arg.n, p[1]) == 0 ? 0 : 1);
    }
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        llsmtp_reply_set(r, 458, "4.3.0", "Unable to queue messages now");
        return LLSMTP_OK;
    }
    fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
    c->etrn_fd = p[0];
    c->etrn_len = 0;
    slot->pid = pid;
    slot->waiter = c;
    return LLSMTP_PAUSED; /* the child is reaped by queue_reap */
}

/* Reads the ETRN child's ids; at its end makes those entries due and
 * answers the deferred ETRN. Returns -1 when the session is lost. */
int
etrn_read(conn *c)
{
    char text[300], *line, *nl;
    size_t due = 0;
    int rc;
    llsmtp_span node;
    llsmtp_reply r = LLSMTP_REPLY_INIT;
    for (;;) {
        ssize_t k;
        if (c->etrn_cap - c->etrn_len < 4096) {
            char *b = (char *)realloc(c->etrn_buf, c->etrn_cap + 65536);
            if (b == NULL)
                return -1;
            c->etrn_buf = b;
            c->etrn_cap += 65536;
        }
        k = read(c->etrn_fd, c->etrn_buf + c->etrn_len,
                 c->etrn_cap - c->etrn_len - 1);
        if (k > 0) {
            c->etrn_len += (size_t)k;
            continue;
        }
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
            return 0; /* more to come */
        break;        /* the scan is over (EOF), or failed (then: what came) */
    }
    close(c->etrn_fd);
    c->etrn_fd = -1;
    etrn_forget(c); /* its answer is in: the scan has no more to say */
    c->etrn_buf[c->etrn_len] = '\0';
    for (line = c->etrn_buf; (nl = strchr(line, '\n')) != NULL;
         line = nl + 1) {
        *nl = '\0';
        due += (size_t)queue_make_due(c->d->outq, line);
    }
    free(c->etrn_buf);
    c->etrn_buf = NULL;
    c->etrn_len = c->etrn_cap = 0;
    /* the node, as the session keeps it until the decision */
    node = llsmtp_server_pending_arg(c->s);
    if (node.p == NULL)
        node.p = "";
    log_held(&c->log, "session=%lu etrn=%.*s due=%zu", c->sid, (int)node.n,
             node.p, due);
    if (due == 0) {
        snprintf(text, sizeof text, "No messages waiting for node %.*s",
                 (int)node.n, node.p);
        llsmtp_reply_set(&r, 251, "2.0.0", text);
    } else {
        snprintf(text, sizeof text, "Queuing for node %.*s started",
                 (int)node.n, node.p);
        llsmtp_reply_set(&r, 250, "2.0.0", text);
    }
    if (conn_lend(c) != 0)
        return -1;
    rc = llsmtp_server_resume(c->s, &r);
    if (rc == LLSMTP_CLOSE)
        c->closing = 1;
    else if (rc < 0)
        return -1;
    arm_timer(c);
    return 0;
}

/* Whether ip is one of the --proxy-from networks (a balancer). */
int
proxy_trusted(const smtpd *d, const llsmtp_ip *ip)
{
    int i;
    for (i = 0; ip->family != 0 && i < d->opt.nproxy_from; i++)
        if (llsmtp_cidr_match(&d->opt.proxy_from[i], ip))
            return 1;
    return 0;
}

/* Behind a load balancer the PROXY header names the real client. */
static int
on_connect(llsmtp_server *s, llsmtp_reply *r)
{
    conn *c = CONN(s);
    llsmtp_ip ip;
    uint16_t port;
    (void)r;
    c->awaiting_header = 0;
    if (c->proxied) {
        /* one line with both: the client, and the balancer it came by */
        if (llsmtp_server_peer(s, &ip, &port)) {
            llsmtp_ip_format(&ip, c->peer, sizeof c->peer);
        } else {
            /* PROXY LOCAL (HAProxy's own check) or UNKNOWN: held back
             * until it does more than a check does */
            snprintf(c->peer, sizeof c->peer, "unknown");
            c->log.on = c->d->opt.quiet_checks;
        }
        log_held(&c->log, "session=%lu connect from %s via %s", c->sid,
                 c->peer, c->via);
    }
    return LLSMTP_OK;
}

/* Every reply the session queues, with what it answers as the library
 * tells it (verb, argument, phase; never a credential: AUTH comes with
 * its mechanism only, every line of its exchange with no argument, as
 * "C: AUTH"), so smtpd keeps no model
 * of the session of its own and whole reads are fed at once. A refusal
 * leaves one line, --verbose or not, for operators and fail2ban: a
 * command's 4xx/5xx, a message's or a chunk's, and those no client line
 * caused (421: timeout, shutdown, a failed callback).
 * --verbose adds a line for every reply, beside what it answers. */
static void reply_log(conn *c, const llsmtp_reply_info *ri);

static void
on_reply(llsmtp_server *s, const llsmtp_reply_info *ri)
{
    conn *c = CONN(s);
    /* most replies (a 2xx or 3xx, no --verbose, no lines held): nothing */
    if (ri->code < 400 && !c->log.on && !c->d->opt.verbose)
        return;
    reply_log(c, ri);
}

static void
reply_log(conn *c, const llsmtp_reply_info *ri)
{
    const char *verb = ri->verb[0] != '\0' ? ri->verb : "-";
    const char *sp = ri->enhanced[0] != '\0' ? " " : "";
    char arg[ARG_SHOWN + 1], text[TEXT_SHOWN + 1], what[ARG_SHOWN + 40];
    int refused = ri->code >= 400 && ri->phase != LLSMTP_RI_GREETING;
    if (c->log.on &&
        (ri->code >= 400 ||
         (ri->phase != LLSMTP_RI_GREETING &&
          !(ri->phase == LLSMTP_RI_COMMAND &&
            (strcmp(verb, "EHLO") == 0 || strcmp(verb, "HELO") == 0 ||
             strcmp(verb, "NOOP") == 0 || strcmp(verb, "RSET") == 0 ||
             strcmp(verb, "QUIT") == 0)))))
        log_release(&c->log); /* more than a health check does: all of it */
    if (!refused && !c->d->opt.verbose)
        return;
    log_printable(arg, sizeof arg, ri->arg.p, ri->arg.n);
    log_printable(text, sizeof text, ri->text.p, ri->text.n);
    if (refused) {
        /* the client's text between quotes, with no quote or backslash
         * inside (a parser that honours \" escapes): its " reply=250"
         * can never pass for the server's */
        char *q;
        for (q = arg; (q = strpbrk(q, "\"\\")) != NULL;)
            *q = '?';
        log_held(&c->log,
                 "session=%lu refused client=%s cmd=%s%s%s%s reply=%d%s%s %s",
                 c->sid, c->peer, verb, arg[0] ? " arg=\"" : "", arg,
                 arg[0] ? "\"" : "", ri->code, sp, ri->enhanced, text);
    }
    if (!c->d->opt.verbose)
        return;
    switch (ri->phase) {
    case LLSMTP_RI_AUTH_STEP: /* verb "AUTH", no argument */
    case LLSMTP_RI_COMMAND:
        if (ri->verb[0] == '\0')
            snprintf(what, sizeof what, "C: (line not shown) ");
        else
            snprintf(what, sizeof what, "C: %s%s%s ", ri->verb,
                     arg[0] ? " " : "", arg);
        break;
    case LLSMTP_RI_CHUNK:
        snprintf(what, sizeof what, "C: (BDAT chunk) ");
        break;
    case LLSMTP_RI_MESSAGE:
        if (ri->rcpt >= 0)
            snprintf(what, sizeof what, "C: (%s message, rcpt %ld) ", ri->verb,
                     ri->rcpt);
        else
            snprintf(what, sizeof what, "C: (%s message) ", ri->verb);
        break;
    default: /* the greeting, or no client line */
        what[0] = '\0';
        break;
    }
    log_held(&c->log, "session=%lu %sS: %d%s%s %s", c->sid, what, ri->code, sp,
             ri->enhanced, text);
}

/* RFC 3207 4.2: the library forgot HELO/EHLO, AUTH and the transaction
 * learnt in the clear; so does everything smtpd records about them
 * (Received header, .env), or a cleartext AUTH would be claimed for a
 * session that never authenticated over TLS. */
void
session_forget(conn *c)
{
    free_tx(c);
    free(c->helo);
    c->helo = NULL;
    c->is_ehlo = 0;
    free(c->auth_user);
    c->auth_user = NULL;
}

/* Fills smtpd's callback table (main.c keeps it in struct smtpd): member
 * by member, since the examples compile as C++17 too, which has no
 * designated initialisers. */
void
session_callbacks_init(llsmtp_callbacks *cb)
{
    memset(cb, 0, sizeof *cb);
    cb->on_connect = on_connect;
    cb->on_etrn = on_etrn;
    cb->on_auth = on_auth;
    cb->on_helo = on_helo;
    cb->on_mail_from = on_mail;
    cb->on_rcpt = on_rcpt;
    cb->on_data_start = on_data_start;
    cb->on_data = on_data;
    cb->on_data_end = on_data_end;
    cb->on_data_abort = on_data_abort;
    cb->on_rset = on_rset;
    cb->on_reply = on_reply;
}
