/* SPDX-License-Identifier: MIT
 *
 * server_cmd.c - the server session's commands: the command table (a row
 * per verb: its checks and its handler) and the dispatcher that reads a
 * command line, the decision-kind table (a row per deciding callback:
 * its default reply and what an applied decision changes), and the
 * handlers of the envelope and session commands. AUTH is in
 * server_auth.c, DATA's and BDAT's message data in server_data.c.
 */
#include "server_int.h"

static void sess_text_help(const llsmtp_server *s, sess_parts *ps,
                           llsmtp_span arg);

/* ---- replies to decisions, the transaction ------------------------------ */

void
llsmtp__sess_default_reply(llsmtp_reply *r, int code, const char *enh)
{
    size_t n = strlen(enh);
    r->code = code;
    memcpy(r->enhanced, enh, n + 1);
    r->text[0] = '\0';
    r->text_len = 0;
    r->has_text = 0;
    r->id[0] = '\0';
    r->id_len = 0;
    r->is_default = 1;
}

/* Checks a reply a callback left us. */
int
llsmtp__sess_reply_ok(const llsmtp_reply *r)
{
    if (r->code < 200 || r->code > 599)
        return 0;
    if (!llsmtp__enhanced_check(r->code, r->enhanced, strlen(r->enhanced)))
        return 0;
    if (r->text_len > LLSMTP_REPLY_TEXT_MAX || r->id_len > LLSMTP_REPLY_ID_MAX)
        return 0;
    return 1;
}

void
llsmtp__sess_tx_reset(llsmtp_server *s)
{
    memset(&s->tx, 0, sizeof s->tx); /* MSG_NONE too */
}

/* The client ended the transaction (RSET, HELO/EHLO/LHLO again): a
 * message the host opened is abandoned first, so that what it stored is
 * never continued by the next transaction's data. */
int
llsmtp__sess_tx_end(llsmtp_server *s)
{
    if (sess_msg_open(s)) {
        int rc = llsmtp__sess_abort(s, LLSMTP_ABORT_RESET);
        if (rc < 0)
            return rc;
    }
    llsmtp__sess_tx_reset(s);
    return LLSMTP_OK;
}

/* A recipient was refused for good: at the limit (a dictionary attack or
 * a relay prober) queue 421 and close. */
static int
sess_rcpt_refused(llsmtp_server *s)
{
    return llsmtp__sess_count(
        s, &s->rcpt_rejects, s->cfg->max_rcpt_rejects,
        "Too many rejected recipients, closing connection");
}

/* ---- decisions: what each kind changes once its reply is queued ---- */

static int
sess_apply_connect(llsmtp_server *s, const llsmtp_reply *r)
{
    if (r->code / 100 == 2)
        sess_enter(s, PH_CMD);
    else if (r->code != 421)
        sess_enter(s, PH_REFUSED);
    s->greet_left = s->out_end - s->out_start;
    return LLSMTP_OK;
}

static int
sess_apply_helo(llsmtp_server *s, const llsmtp_reply *r)
{
    int rc = llsmtp__sess_tx_end(s);
    if (rc < 0)
        return rc;
    s->helo = r->code / 100 == 2 ? (s->pend.ehlo ? HELO_EHLO : HELO_HELO)
                                 : HELO_NONE;
    return LLSMTP_OK;
}

static int
sess_apply_mail(llsmtp_server *s, const llsmtp_reply *r)
{
    if (r->code / 100 == 2) {
        s->tx.in_mail = 1;
        s->tx.decl_size = s->pend.size;
        s->tx.body = s->pend.body;
        s->tx.smtputf8 = s->pend.utf8;
    }
    return LLSMTP_OK;
}

static int
sess_apply_rcpt(llsmtp_server *s, const llsmtp_reply *r)
{
    s->tx.rcpt_tried++;
    if (r->code / 100 == 2)
        s->tx.rcpt_count++;
    else if (r->code / 100 == 5)
        return sess_rcpt_refused(s);
    return LLSMTP_OK;
}

static int
sess_apply_data_start(llsmtp_server *s, const llsmtp_reply *r)
{
    if (r->code / 100 == 3) {
        s->data.state = D_BOL;
        s->data.abort = 0;
        s->data.bare_cr = 0;
        s->data.size = 0;
        s->tx.msg = s->pend.msg_cmd;
        sess_enter(s, sess_in_bdat(s) ? PH_BDAT : PH_DATA);
        if (sess_in_bdat(s))
            return llsmtp__sess_bdat_fits(s);
    } else if (s->pend.msg_cmd == MSG_BDAT) {
        /* refused, but the chunk is on its way: read and drop it */
        llsmtp__sess_tx_reset(s);
        s->bdat.discard = 1;
        sess_enter(s, PH_BDAT);
    }
    return LLSMTP_OK;
}

static int
sess_apply_data_end(llsmtp_server *s, const llsmtp_reply *r)
{
    (void)r;
    llsmtp__sess_tx_reset(s);
    sess_enter(s, PH_CMD);
    return LLSMTP_OK;
}

static int
sess_apply_rset(llsmtp_server *s, const llsmtp_reply *r)
{
    (void)r;
    return llsmtp__sess_tx_end(s);
}

static int
sess_apply_quit(llsmtp_server *s, const llsmtp_reply *r)
{
    (void)r;
    sess_enter(s, PH_CLOSED);
    return LLSMTP_OK;
}

static int
sess_apply_auth(llsmtp_server *s, const llsmtp_reply *r)
{
    s->auth.state = AUTH_NONE;
    if (r->code == 235) {
        s->auth.authenticated = 1;
    } else if (r->code / 100 == 5 && r->code != 501) {
        s->auth.failures++;
        if (s->cfg->max_auth_failures &&
            s->auth.failures >= s->cfg->max_auth_failures) {
            int rc = llsmtp__sess_say_host(s, 421, "4.7.0",
                                           "Too many failed authentication "
                                           "attempts, closing connection");
            if (rc < 0)
                return rc;
            sess_enter(s, PH_CLOSED);
        }
    }
    return LLSMTP_OK;
}

static int
sess_apply_starttls(llsmtp_server *s, const llsmtp_reply *r)
{
    if (r->code / 100 == 2)
        sess_enter(s, PH_TLS_WAIT);
    return LLSMTP_OK;
}

/* One row per enum llsmtp_pending value, in enum order (a unit test
 * checks it: C++ has no designated array initialisers): the deciding
 * callback, the default reply and its text, and what the decision
 * changes. Adding a decision is one row here. */
static const sess_kind_row sess_kinds[] = {
    {"none", LLSMTP_PENDING_NONE, 250, "2.0.0", NULL, NULL, NULL, NULL, 0},
    {"on_connect", LLSMTP_PENDING_CONNECT, 220, "", NULL, NULL,
     llsmtp__sess_text_greeting, sess_apply_connect, RK_NO_ENH},
    {"on_helo", LLSMTP_PENDING_HELO, 250, "", NULL, NULL,
     llsmtp__sess_text_ehlo, sess_apply_helo, RK_NO_ENH},
    {"on_mail_from", LLSMTP_PENDING_MAIL, 250, "2.1.0", "Sender <", "> OK",
     NULL, sess_apply_mail, RK_ARG},
    {"on_rcpt", LLSMTP_PENDING_RCPT, 250, "2.1.5", SESS_RCPT_PRE,
     SESS_RCPT_POST, NULL, sess_apply_rcpt, RK_ARG},
    {"on_data_start", LLSMTP_PENDING_DATA_START, 354, "",
     "Start mail input; end with <CRLF>.<CRLF>", NULL, NULL,
     sess_apply_data_start, RK_NO_ENH},
    {"on_data", LLSMTP_PENDING_DATA, 250, "2.0.0", NULL, NULL, NULL, NULL, 0},
    {"on_data_end", LLSMTP_PENDING_DATA_END, 250, "2.6.0",
     "Queued mail for delivery", NULL, NULL, sess_apply_data_end, RK_ID},
    {"on_rset", LLSMTP_PENDING_RSET, 250, "2.0.0", "Flushed", NULL, NULL,
     sess_apply_rset, 0},
    {"on_vrfy", LLSMTP_PENDING_VRFY, 252, "2.5.2",
     "Cannot VRFY user, but will accept message and attempt delivery", NULL,
     NULL, NULL, 0},
    {"on_expn", LLSMTP_PENDING_EXPN, 502, "5.5.1", "EXPN not available", NULL,
     NULL, NULL, 0},
    {"on_help", LLSMTP_PENDING_HELP, 214, "2.0.0", NULL, NULL, sess_text_help,
     NULL, 0},
    {"on_turn", LLSMTP_PENDING_TURN, 502, "5.5.1", "TURN not available", NULL,
     NULL, NULL, 0},
    {"on_quit", LLSMTP_PENDING_QUIT, 221, "2.0.0",
     " Service closing transmission channel", NULL, NULL, sess_apply_quit,
     RK_HOST},
    /* refused unless the host says yes (RFC 4954 6: 535 5.7.8); the text
     * is the code's own (235 or 535: llsmtp__sess_normalize) */
    {"on_auth", LLSMTP_PENDING_AUTH, 535, "5.7.8", NULL, NULL, NULL,
     sess_apply_auth, 0},
    {"on_starttls", LLSMTP_PENDING_STARTTLS, 220, "2.0.0",
     "Ready to start TLS", NULL, NULL, sess_apply_starttls, 0},
    {"on_etrn", LLSMTP_PENDING_ETRN, 250, "2.0.0", "Queuing for node ",
     " started", NULL, NULL, RK_ARG}};

#define SESS_KINDS (sizeof sess_kinds / sizeof sess_kinds[0])

const sess_kind_row *
llsmtp__sess_kind(int kind)
{
    return &sess_kinds[kind];
}

#if !defined(LLSMTP_AMALGAMATION) || defined(LLSMTP_TEST_INTERNALS)
int
llsmtp__server_kind_row(size_t i, const char **cb)
{
    if (i >= SESS_KINDS)
        return -1;
    if (cb != NULL)
        *cb = sess_kinds[i].cb;
    return sess_kinds[i].kind;
}
#endif

int
llsmtp__sess_apply(llsmtp_server *s, int kind, const llsmtp_reply *r,
                   llsmtp_span arg)
{
    const sess_kind_row *k = llsmtp__sess_kind(kind);
    int rc, cls = r->code / 100;
    if (kind == LLSMTP_PENDING_AUTH && r->code == 334)
        return llsmtp__sess_put_challenge(s, r->text, r->text_len);
    if (kind == LLSMTP_PENDING_DATA_END && (s->cfg->flags & LLSMTP_CFG_LMTP))
        return llsmtp__sess_lmtp_start(s, r); /* RFC 2033 4.2: a reply each */
    if (kind == LLSMTP_PENDING_DATA_START && cls == 3 &&
        s->pend.msg_cmd == MSG_BDAT)
        rc = LLSMTP_OK; /* BDAT answers after its chunk, not with 354 */
    else
        rc = llsmtp__sess_put_reply(s, kind, r, arg);
    if (rc < 0)
        return rc;
    if (k->apply != NULL && (rc = k->apply(s, r)) != LLSMTP_OK)
        return rc;
    if (r->code == 421)
        sess_enter(s, PH_CLOSED);
    if (s->phase == PH_TLS_WAIT)
        return LLSMTP_START_TLS;
    return s->phase == PH_CLOSED ? LLSMTP_CLOSE : LLSMTP_OK;
}

/* A 354 belongs to DATA only; DATA cannot be answered with 2xx; 334
 * continues only a host-driven SASL exchange. */
int
llsmtp__sess_code_fits(const llsmtp_server *s, int kind, int code)
{
    if (kind == LLSMTP_PENDING_DATA_START)
        return code / 100 != 2;
    if (kind == LLSMTP_PENDING_AUTH && code == 334)
        return s->auth.is_step;
    return code / 100 != 3;
}

/* A host that edited r->code directly, without llsmtp_reply_set(), gets a
 * generic text and enhanced code instead of the default's. */
void
llsmtp__sess_normalize(int kind, llsmtp_reply *r)
{
    llsmtp_reply d;
    if (!r->is_default)
        return;
    llsmtp__sess_kind_default(kind, &d);
    if (d.code == r->code)
        return;
    if (kind == LLSMTP_PENDING_AUTH && r->code == 235) {
        memcpy(r->enhanced, "2.7.0", 6); /* the default success reply */
        return;
    }
    r->is_default = 0;
    if (r->code >= 200 && r->code <= 599 &&
        !llsmtp__enhanced_check(r->code, r->enhanced, strlen(r->enhanced))) {
        if (r->code / 100 == 3) {
            r->enhanced[0] = '\0';
        } else {
            r->enhanced[0] = (char)('0' + r->code / 100);
            memcpy(r->enhanced + 1, ".0.0", 5);
        }
    }
}

static const char *
sess_cb_name(const llsmtp_server *s, int kind)
{
    if (kind == LLSMTP_PENDING_AUTH && s->auth.is_step)
        return "on_auth_step";
    return llsmtp__sess_kind(kind)->cb;
}

/* Whether a deciding callback left its reply as the library made it
 * (llsmtp__sess_kind_default): no setter called, nothing edited. */
static int
sess_untouched(int kind, const llsmtp_reply *r)
{
    return r->is_default && r->id_len == 0 && !r->has_text &&
           r->text_len == 0 && r->code == llsmtp__sess_kind(kind)->code &&
           strcmp(r->enhanced, llsmtp__sess_kind(kind)->enh) == 0;
}

/* Handles a deciding callback's return: apply, defer or fail. */
int
llsmtp__sess_decided(llsmtp_server *s, int kind, int cbrc, llsmtp_reply *r,
                     llsmtp_span arg)
{
    int untouched = sess_untouched(kind, r);
    if (cbrc == LLSMTP_OK && untouched)
        return llsmtp__sess_apply(s, kind, r, arg); /* valid as it was made */
    if (cbrc == LLSMTP_PAUSED && !untouched) {
        /* The decision comes with llsmtp_server_resume: a reply set here
         * would be lost, so it is the host's mistake, said at once. */
        return llsmtp__sess_fail(s, sess_cb_name(s, kind), LLSMTP_E_CALLBACK);
    }
    if (cbrc == LLSMTP_PAUSED) {
        /* Keep what the default reply needs; the line is consumed and the
         * line buffer is free until resume (feed consumes nothing). The
         * decision's argument (a path, a domain) lies inside the
         * command's, which on_reply reports: keep the whole command
         * argument then, and find the decision's in it. */
        size_t off = 0;
        llsmtp_span keep = arg;
        s->pend.rv_len = 0;
        /* already a copy of the session's own (and the line buffer may
         * be wiped when an AUTH line has been handled) */
        s->pend.rv_kept = s->rv_arg.p == s->rv_keep && s->rv_arg.n != 0;
        if (!s->pend.rv_kept && s->rv_arg.n && s->rv_arg.n <= s->line_cap &&
            (arg.n == 0 || (arg.p >= s->rv_arg.p &&
                            arg.p + arg.n <= s->rv_arg.p + s->rv_arg.n))) {
            off = arg.n ? (size_t)(arg.p - s->rv_arg.p) : 0;
            keep = s->rv_arg;
            s->pend.rv_len = s->rv_arg.n;
        }
        if (keep.n > s->line_cap)
            keep.n = s->line_cap;
        if (keep.n)
            memmove(s->line, keep.p, keep.n);
        s->pend.arg_off = s->pend.rv_len ? off : 0;
        s->pend.arg_len = s->pend.rv_len ? arg.n : keep.n;
        s->pend.kind = (unsigned char)kind;
        return LLSMTP_PAUSED;
    }
    if (cbrc != LLSMTP_OK)
        return llsmtp__sess_fail(s, sess_cb_name(s, kind), LLSMTP_E_CALLBACK);
    llsmtp__sess_normalize(kind, r);
    if (!llsmtp__sess_reply_ok(r) || !llsmtp__sess_code_fits(s, kind, r->code))
        return llsmtp__sess_fail(s, sess_cb_name(s, kind), LLSMTP_E_CALLBACK);
    return llsmtp__sess_apply(s, kind, r, arg);
}

void
llsmtp__sess_kind_default(int kind, llsmtp_reply *r)
{
    llsmtp__sess_default_reply(r, llsmtp__sess_kind(kind)->code,
                               llsmtp__sess_kind(kind)->enh);
}

/* ---- commands ------------------------------------------------------------ */

static int
sess_has_ctl(llsmtp_span a)
{
    size_t i;
    for (i = 0; i < a.n; i++) {
        unsigned char c = (unsigned char)a.p[i];
        if (c < 0x20 || c == 0x7f)
            return 1;
    }
    return 0;
}

static int
sess_helo(llsmtp_server *s, int is_ehlo, llsmtp_span arg)
{
    llsmtp_reply r;
    int cbrc = LLSMTP_OK;
    if (arg.n == 0 || sess_has_ctl(arg))
        return llsmtp__sess_err(s, 501, "5.5.4",
                                is_ehlo ? "Syntax: EHLO hostname"
                                        : "Syntax: HELO hostname");
    s->pend.ehlo = (unsigned char)is_ehlo;
    llsmtp__sess_default_reply(&r, 250, "");
    if (s->cb->on_helo != NULL)
        SESS_CALL(s, cbrc, s->cb->on_helo(s, arg, is_ehlo, &r));
    return llsmtp__sess_decided(s, LLSMTP_PENDING_HELO, cbrc, &r, arg);
}

static int
sess_cmd_helo(llsmtp_server *s, llsmtp_span arg)
{
    return sess_helo(s, 0, arg);
}

static int
sess_cmd_ehlo(llsmtp_server *s, llsmtp_span arg)
{
    return sess_helo(s, 1, arg);
}

/* RFC 2033 4.1: LHLO follows EHLO's rules */
static int
sess_cmd_lhlo(llsmtp_server *s, llsmtp_span arg)
{
    return sess_helo(s, 1, arg);
}

/* Runs on_param for a parameter the library does not know. When it is
 * refused queues the reply and sets *done; returns OK, CLOSE or <0. */
static int
sess_unknown_param(llsmtp_server *s, int is_rcpt, const llsmtp_param *p,
                   int *done)
{
    llsmtp_reply r;
    llsmtp_span sp[2];
    int cbrc = LLSMTP_OK;
    *done = 0;
    llsmtp__sess_default_reply(&r, 555, "5.5.4");
    if (s->cb->on_param != NULL)
        SESS_CALL(s, cbrc, s->cb->on_param(s, is_rcpt, p, &r));
    if (cbrc != LLSMTP_OK || !llsmtp__sess_reply_ok(&r) || r.code / 100 == 3)
        return llsmtp__sess_fail(s, "on_param", LLSMTP_E_CALLBACK);
    if (r.code / 100 == 2)
        return LLSMTP_OK;
    *done = 1;
    if (r.is_default && r.code == 555) {
        sp[0].p = "Unsupported parameter ";
        sp[0].n = strlen(sp[0].p);
        sp[1] = p->key;
        return llsmtp__sess_put(s, r.code, r.enhanced, sp, 2);
    }
    r.is_default = 0;
    return llsmtp__sess_apply(s, LLSMTP_PENDING_NONE, &r, p->key);
}

/* Checks for duplicate keywords (RFC 1870 and friends: one each). */
static int
sess_params_dup(const llsmtp_params *ps)
{
    size_t i, j;
    for (i = 0; i < ps->n; i++)
        for (j = i + 1; j < ps->n; j++)
            if (llsmtp__iequal(ps->v[i].key.p, ps->v[i].key.n, ps->v[j].key.p,
                               ps->v[j].key.n))
                return 1;
    return 0;
}

static int
sess_key_is(const llsmtp_param *p, const char *lower)
{
    size_t n = strlen(lower);
    return p->key.n == n && llsmtp__ieq(p->key.p, lower, n);
}

/* Four octets folded to lower case (| 0x20: exact where the octets
 * they are compared with are letters, as in every verb and keyword; a
 * unit test checks the verbs), as one number; SESS_K4 is the same for
 * letters at compile time. */
#define SESS_K4(a, b, c, d)                                                   \
    ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 |               \
     (uint32_t)(d) << 24)

static uint32_t
sess_k4(const char *v)
{
    const unsigned char *u = (const unsigned char *)v;
    return SESS_K4(u[0], u[1], u[2], u[3]) | 0x20202020u;
}

/* Parses "FROM:" / "TO:", the path and the parameters. On a client
 * error queues the reply and sets *done; returns OK, CLOSE or <0. */
static int
sess_parse_path_cmd(llsmtp_server *s, llsmtp_span arg, int is_rcpt,
                    llsmtp_path *path, llsmtp_params *params, int *done)
{
    size_t kwn = is_rcpt ? sizeof "to:" - 1 : sizeof "from:" - 1, end = 0, i;
    unsigned opts = is_rcpt ? LLSMTP_PARSE_ALLOW_POSTMASTER
                            : LLSMTP_PARSE_ALLOW_NULL;
    int rc;

    if (s->cfg->extensions & LLSMTP_EXT_SMTPUTF8)
        opts |= LLSMTP_PARSE_UTF8; /* RFC 6531; checked against the
                                      transaction by the caller */
    *done = 1;
    if (arg.n < kwn || arg.p[kwn - 1] != ':' ||
        (is_rcpt ? ((unsigned char)arg.p[0] | 0x20u) != 't' ||
                       ((unsigned char)arg.p[1] | 0x20u) != 'o'
                 : sess_k4(arg.p) != SESS_K4('f', 'r', 'o', 'm')))
        return llsmtp__sess_err(s, 501, "5.5.4",
                                is_rcpt ? "Syntax: RCPT TO:<address>"
                                        : "Syntax: MAIL FROM:<address>");
    i = kwn;
    /* Tolerate spaces after the colon, as most servers do. */
    while (i < arg.n && arg.p[i] == ' ')
        i++;
    /* the line goes on after its argument: spaces, CR, LF */
    rc = llsmtp__path_parse_line(arg.p + i, arg.n - i, opts, path, &end);
    if (rc == LLSMTP_OK && i + end < arg.n && arg.p[i + end] != ' ')
        rc = LLSMTP_E_SYNTAX;
    if (rc != LLSMTP_OK)
        return llsmtp__sess_err(s, 501, is_rcpt ? "5.1.3" : "5.1.7",
                                is_rcpt ? "Bad recipient address syntax"
                                        : "Bad sender address syntax");
    i += end;
    if (i == arg.n) { /* no parameters, as mostly */
        params->n = 0;
        *done = 0;
        return LLSMTP_OK;
    }
    rc = llsmtp_params_parse(arg.p + i, arg.n - i, opts & LLSMTP_PARSE_UTF8,
                             params, &end);
    if (rc != LLSMTP_OK || sess_params_dup(params))
        return llsmtp__sess_err(s, 501, "5.5.4",
                                rc == LLSMTP_E_RANGE ? "Too many parameters"
                                                     : "Bad parameter syntax");
    *done = 0;
    return LLSMTP_OK;
}

static int
sess_cmd_mail(llsmtp_server *s, llsmtp_span arg)
{
    llsmtp_path path;
    llsmtp_params params;
    llsmtp_reply r;
    size_t i;
    int rc, done, cbrc = LLSMTP_OK;
    unsigned ext = s->cfg->extensions;

    if ((s->cfg->flags & LLSMTP_CFG_REQUIRE_TLS) && !s->tls_active)
        return llsmtp__sess_say(s, 530, "5.7.0",
                                "Must issue a STARTTLS command first");
    if ((s->cfg->flags & LLSMTP_CFG_REQUIRE_AUTH) && !s->auth.authenticated)
        return llsmtp__sess_say(s, 530, "5.7.0", "Authentication required");
    if (s->tx.in_mail)
        return llsmtp__sess_err(s, 503, "5.5.1", "Error: nested MAIL command");
    rc = sess_parse_path_cmd(s, arg, 0, &path, &params, &done);
    if (done || rc != LLSMTP_OK)
        return rc;
    s->pend.size = 0;
    s->pend.body = 0;
    s->pend.utf8 = 0;
    for (i = 0; i < params.n; i++) {
        const llsmtp_param *p = &params.v[i];
        if ((ext & LLSMTP_EXT_SIZE) && sess_key_is(p, "size")) {
            /* RFC 1870 6: size-value ::= 1*20DIGIT */
            uint64_t v = 0;
            size_t k;
            int big = 0;
            if (p->value.n == 0 || p->value.n > 20)
                return llsmtp__sess_err(s, 501, "5.5.4", "Bad SIZE value");
            for (k = 0; k < p->value.n; k++) {
                unsigned d = (unsigned)(unsigned char)p->value.p[k] - '0';
                if (d > 9)
                    return llsmtp__sess_err(s, 501, "5.5.4", "Bad SIZE value");
                if (v > (UINT64_MAX - d) / 10)
                    big = 1;
                else
                    v = v * 10 + d;
            }
            /* With no limit configured there is no maximum to exceed:
             * a value past 2^64 - 1 is kept as 2^64 - 1. */
            if (big && s->cfg->max_size == 0)
                v = UINT64_MAX;
            else if (big || (s->cfg->max_size && v > s->cfg->max_size)) {
                return llsmtp__sess_say(
                    s, 552, "5.3.4",
                    "Message size exceeds fixed maximum message "
                    "size");
            }
            s->pend.size = v;
        } else if ((ext & LLSMTP_EXT_AUTH) && sess_key_is(p, "auth")) {
            /* RFC 4954 5: AUTH=<> or AUTH=xtext; the host decides. A
             * bare "AUTH" has no value at all: a syntax error. */
            if (p->value.p == NULL)
                return llsmtp__sess_err(s, 501, "5.5.4", "Bad AUTH value");
            if (!(p->value.n == 2 && p->value.p[0] == '<' &&
                  p->value.p[1] == '>') &&
                llsmtp_xtext_decode(p->value.p, p->value.n, NULL, 0, NULL) !=
                    LLSMTP_OK)
                return llsmtp__sess_err(s, 501, "5.5.4", "Bad AUTH value");
        } else if ((ext & (LLSMTP_EXT_8BITMIME | LLSMTP_EXT_BINARYMIME)) &&
                   sess_key_is(p, "body")) {
            /* RFC 6152, RFC 3030 3 */
            if (p->value.n == 4 && llsmtp__ieq(p->value.p, "7bit", 4))
                s->pend.body = 7;
            else if ((ext & LLSMTP_EXT_8BITMIME) && p->value.n == 8 &&
                     llsmtp__ieq(p->value.p, "8bitmime", 8))
                s->pend.body = 8;
            else if ((ext & LLSMTP_EXT_BINARYMIME) &&
                     (ext & LLSMTP_EXT_CHUNKING) && p->value.n == 10 &&
                     llsmtp__ieq(p->value.p, "binarymime", 10))
                s->pend.body = 9;
            else
                return llsmtp__sess_err(s, 501, "5.5.4", "Bad BODY value");
        } else if ((ext & LLSMTP_EXT_SMTPUTF8) && sess_key_is(p, "smtputf8")) {
            if (p->value.p != NULL) /* RFC 6531 3.4: no value */
                return llsmtp__sess_err(s, 501, "5.5.4",
                                        "SMTPUTF8 takes no value");
            s->pend.utf8 = 1;
        } else if ((ext & LLSMTP_EXT_DSN) && sess_key_is(p, "ret")) {
            /* RFC 3461 4.3 */
            if (!(p->value.n == 4 && llsmtp__ieq(p->value.p, "full", 4)) &&
                !(p->value.n == 4 && llsmtp__ieq(p->value.p, "hdrs", 4)))
                return llsmtp__sess_err(s, 501, "5.5.4", "Bad RET value");
        } else if ((ext & LLSMTP_EXT_DSN) && sess_key_is(p, "envid")) {
            /* RFC 3461 4.4: xtext, at most 100 characters */
            if (p->value.n == 0 || p->value.n > 100 ||
                llsmtp_xtext_decode(p->value.p, p->value.n, NULL, 0, NULL) !=
                    LLSMTP_OK)
                return llsmtp__sess_err(s, 501, "5.5.4", "Bad ENVID value");
        } else {
            rc = sess_unknown_param(s, 0, p, &done);
            if (done || rc != LLSMTP_OK)
                return rc;
        }
    }
    if ((path.flags & LLSMTP_PATH_UTF8) && !s->pend.utf8)
        return llsmtp__sess_say(
            s, 553, "5.6.7",
            "Non-ASCII address requires the SMTPUTF8 parameter");
    llsmtp__sess_default_reply(&r, 250, "2.1.0");
    if (s->cb->on_mail_from != NULL)
        SESS_CALL(s, cbrc, s->cb->on_mail_from(s, &path, &params, &r));
    return llsmtp__sess_decided(s, LLSMTP_PENDING_MAIL, cbrc, &r,
                                path.mailbox);
}

#ifndef LLSMTP_NO_RELAY
/* The relay policy refused a recipient: its reply, and on_rcpt is not
 * asked (no open relay, whatever the host's callback would say). */
static int
sess_relay_denied(llsmtp_server *s, const llsmtp_path *path)
{
    const llsmtp_relay_policy *p = s->cfg->relay;
    llsmtp_span sp[3];
    int code = p->deny_code, rc;
    const char *enh = p->deny_enhanced;
    size_t np = 0;
    if (code < 400 || code > 599)
        code = 550;
    if (enh == NULL || !llsmtp__enhanced_check(code, enh, strlen(enh)))
        enh = code / 100 == 4 ? "4.7.1" : "5.7.1";
    if (p->deny_text != NULL) {
        sp[np].p = p->deny_text;
        sp[np++].n = strlen(p->deny_text);
    } else {
        sp[np].p = "Unable to relay for <";
        sp[np++].n = 21;
        sp[np++] = path->mailbox;
        sp[np].p = ">";
        sp[np++].n = 1;
    }
    rc = llsmtp__sess_put(s, code, enh, sp, np);
    if (rc < 0)
        return rc;
    s->tx.rcpt_tried++;
    if (s->cb->on_relay_denied != NULL) {
        int cbrc;
        SESS_CALL(s, cbrc, s->cb->on_relay_denied(s, path));
        if (cbrc != LLSMTP_OK)
            return llsmtp__sess_fail(s, "on_relay_denied", LLSMTP_E_CALLBACK);
    }
    if (code / 100 == 5)
        return sess_rcpt_refused(s);
    return LLSMTP_OK;
}
#endif

/* A recipient accepted with the default reply, which is most of them:
 * what llsmtp__sess_decided does then (llsmtp__sess_apply: the reply of
 * sess_put_default, sess_apply_rcpt), less the checks of a reply the
 * host did not touch, and with the reply written pre-rendered. tests/
 * test_server.c compares it with the general way (the same decision
 * deferred and resumed). */
static int
sess_rcpt_accepted(llsmtp_server *s, llsmtp_span mailbox)
{
    int rc = llsmtp__sess_put_rcpt_ok(s, mailbox);
    if (rc < 0)
        return rc;
    s->tx.rcpt_tried++;
    s->tx.rcpt_count++;
    if (s->phase == PH_TLS_WAIT)
        return LLSMTP_START_TLS;
    return s->phase == PH_CLOSED ? LLSMTP_CLOSE : LLSMTP_OK;
}

static int
sess_cmd_rcpt(llsmtp_server *s, llsmtp_span arg)
{
    llsmtp_path path;
    llsmtp_params params;
    llsmtp_reply r;
    size_t i;
    int rc, done, cbrc = LLSMTP_OK;

    if (!s->tx.in_mail)
        return llsmtp__sess_err(s, 503, "5.5.1", "Error: need MAIL command");
    /* RFC 3030 2: the recipients come before the data. Once a chunk has
     * been accepted the recipient list is fixed (in LMTP it is also the
     * number of replies due at the end). */
    if (sess_in_bdat(s))
        return llsmtp__sess_err(s, 503, "5.5.1", "Error: BDAT in progress");
    rc = sess_parse_path_cmd(s, arg, 1, &path, &params, &done);
    if (done || rc != LLSMTP_OK)
        return rc;
    if (s->tx.rcpt_count >= s->cfg->max_rcpt) {
        /* RFC 5321 4.5.3.1.10: 452 lets the client retry the rest in
         * another transaction (4.5.3.1.8); a client pipelining more than
         * max_rcpt recipients does nothing wrong, so this is not counted
         * towards max_errors. */
        s->tx.rcpt_tried++;
        return llsmtp__sess_say(s, 452, "4.5.3", "Too many recipients");
    }
    if ((path.flags & LLSMTP_PATH_UTF8) && !s->tx.smtputf8)
        return llsmtp__sess_say(
            s, 553, "5.6.7",
            "Non-ASCII address requires the SMTPUTF8 parameter");
    for (i = 0; i < params.n; i++) {
        const llsmtp_param *p = &params.v[i];
        if ((s->cfg->extensions & LLSMTP_EXT_DSN) &&
            sess_key_is(p, "notify")) {
            unsigned fl;
            if (llsmtp_dsn_notify_parse(p->value.p != NULL ? p->value.p : "",
                                        p->value.n, &fl) != LLSMTP_OK)
                return llsmtp__sess_err(s, 501, "5.5.4", "Bad NOTIFY value");
            continue;
        }
        if ((s->cfg->extensions & LLSMTP_EXT_DSN) && sess_key_is(p, "orcpt")) {
            llsmtp_span at, xt;
            if (llsmtp_dsn_orcpt_parse(p->value.p != NULL ? p->value.p : "",
                                       p->value.n, &at, &xt) != LLSMTP_OK)
                return llsmtp__sess_err(s, 501, "5.5.4", "Bad ORCPT value");
            continue;
        }
        rc = sess_unknown_param(s, 1, p, &done);
        if (done || rc != LLSMTP_OK)
            return rc;
    }
    s->rcpt_verdict = -1;
#ifndef LLSMTP_NO_RELAY
    if (s->cfg->relay != NULL) {
        int v = llsmtp_relay_check(s->cfg->relay,
                                   s->client.family ? &s->client : NULL,
                                   s->auth.authenticated, &path);
        /* fail closed: anything but LOCAL or ALLOWED (DENIED, or an
         * error: a policy re-filled under the sessions' feet) refuses */
        if (v != LLSMTP_RELAY_LOCAL && v != LLSMTP_RELAY_ALLOWED)
            return sess_relay_denied(s, &path);
        s->rcpt_verdict = (signed char)v;
    }
#endif
    llsmtp__sess_default_reply(&r, 250, "2.1.5");
    if (s->cb->on_rcpt != NULL)
        SESS_CALL(s, cbrc, s->cb->on_rcpt(s, &path, &params, &r));
    /* the default untouched, and the path printable ASCII */
    if (cbrc == LLSMTP_OK && !(path.flags & LLSMTP_PATH_UTF8) &&
        r.is_default && r.id_len == 0 && !r.has_text && r.text_len == 0 &&
        r.code == 250 && r.enhanced[0] == '2' && r.enhanced[1] == '.' &&
        r.enhanced[2] == '1' && r.enhanced[3] == '.' && r.enhanced[4] == '5' &&
        r.enhanced[5] == '\0')
        return sess_rcpt_accepted(s, path.mailbox);
    return llsmtp__sess_decided(s, LLSMTP_PENDING_RCPT, cbrc, &r,
                                path.mailbox);
}

static int
sess_cmd_data(llsmtp_server *s, llsmtp_span arg)
{
    llsmtp_reply r;
    llsmtp_span none = {NULL, 0};
    int cbrc = LLSMTP_OK;
    (void)arg; /* none: CMD_NO_ARG */
    if (!s->tx.in_mail)
        return llsmtp__sess_err(s, 503, "5.5.1", "Error: need MAIL command");
    /* RFC 3030 3: DATA and BDAT do not mix; BINARYMIME needs BDAT */
    if (sess_in_bdat(s))
        return llsmtp__sess_err(s, 503, "5.5.1", "Error: BDAT in progress");
    if (s->tx.body == 9)
        return llsmtp__sess_err(s, 503, "5.5.1",
                                "Error: BINARYMIME requires BDAT");
    if (s->tx.rcpt_count == 0) {
        /* RFC 5321 3.3: 554 when every RCPT failed, 503 when none came. */
        if (s->tx.rcpt_tried)
            return llsmtp__sess_err(s, 554, "5.5.1",
                                    "Error: no valid recipients");
        return llsmtp__sess_err(s, 503, "5.5.1", "Error: need RCPT command");
    }
    s->pend.msg_cmd = MSG_DATA;
    llsmtp__sess_default_reply(&r, 354, "");
    if (s->cb->on_data_start != NULL)
        SESS_CALL(s, cbrc, s->cb->on_data_start(s, &r));
    return llsmtp__sess_decided(s, LLSMTP_PENDING_DATA_START, cbrc, &r, none);
}

static int
sess_cmd_rset(llsmtp_server *s, llsmtp_span arg)
{
    llsmtp_reply r;
    llsmtp_span none = {NULL, 0};
    int cbrc = LLSMTP_OK;
    (void)arg;
    llsmtp__sess_kind_default(LLSMTP_PENDING_RSET, &r);
    if (s->cb->on_rset != NULL)
        SESS_CALL(s, cbrc, s->cb->on_rset(s, &r));
    return llsmtp__sess_decided(s, LLSMTP_PENDING_RSET, cbrc, &r, none);
}

/* RFC 5321 4.1.1.9: a parameter, if any, is ignored. */
static int
sess_cmd_noop(llsmtp_server *s, llsmtp_span arg)
{
    (void)arg;
    return llsmtp__sess_say(s, 250, "2.0.0", "OK");
}

static int
sess_cmd_quit(llsmtp_server *s, llsmtp_span arg)
{
    llsmtp_reply r;
    llsmtp_span none = {NULL, 0};
    int cbrc = LLSMTP_OK;
    (void)arg;
    llsmtp__sess_kind_default(LLSMTP_PENDING_QUIT, &r);
    if (s->cb->on_quit != NULL)
        SESS_CALL(s, cbrc, s->cb->on_quit(s, &r));
    return llsmtp__sess_decided(s, LLSMTP_PENDING_QUIT, cbrc, &r, none);
}

static int
sess_cmd_vrfy(llsmtp_server *s, llsmtp_span arg)
{
    llsmtp_reply r;
    int cbrc = LLSMTP_OK;
    llsmtp__sess_kind_default(LLSMTP_PENDING_VRFY, &r);
    if (s->cb->on_vrfy != NULL)
        SESS_CALL(s, cbrc, s->cb->on_vrfy(s, arg, &r));
    return llsmtp__sess_decided(s, LLSMTP_PENDING_VRFY, cbrc, &r, arg);
}

static int
sess_cmd_expn(llsmtp_server *s, llsmtp_span arg)
{
    llsmtp_reply r;
    int cbrc = LLSMTP_OK;
    llsmtp__sess_kind_default(LLSMTP_PENDING_EXPN, &r);
    if (s->cb->on_expn != NULL)
        SESS_CALL(s, cbrc, s->cb->on_expn(s, arg, &r));
    return llsmtp__sess_decided(s, LLSMTP_PENDING_EXPN, cbrc, &r, arg);
}

static int
sess_cmd_help(llsmtp_server *s, llsmtp_span arg)
{
    llsmtp_reply r;
    int cbrc = LLSMTP_OK;
    llsmtp__sess_kind_default(LLSMTP_PENDING_HELP, &r);
    if (s->cb->on_help != NULL)
        SESS_CALL(s, cbrc, s->cb->on_help(s, arg, &r));
    return llsmtp__sess_decided(s, LLSMTP_PENDING_HELP, cbrc, &r, arg);
}

/* RFC 821 4.1.1 (and RFC 1985 5): TURN takes no argument */
static int
sess_cmd_turn(llsmtp_server *s, llsmtp_span arg)
{
    llsmtp_reply r;
    llsmtp_span none = {NULL, 0};
    int cbrc = LLSMTP_OK;
    (void)arg;
    llsmtp__sess_kind_default(LLSMTP_PENDING_TURN, &r);
    if (s->cb->on_turn != NULL)
        SESS_CALL(s, cbrc, s->cb->on_turn(s, &r));
    return llsmtp__sess_decided(s, LLSMTP_PENDING_TURN, cbrc, &r, none);
}

/* Known SMTP commands this session does not offer (RFC 5321 4.2.4: 502,
 * not 500). */
static int
sess_cmd_notimpl(llsmtp_server *s, llsmtp_span arg)
{
    (void)arg;
    return llsmtp__sess_err(s, 502, "5.5.1", "Error: command not implemented");
}

/* Cross-protocol attacks: an HTTP request sent to port 25. */
static int
sess_cmd_http(llsmtp_server *s, llsmtp_span arg)
{
    int rc = llsmtp__sess_say_host(s, 421, "4.7.0",
                                   "HTTP command not accepted, closing "
                                   "connection");
    (void)arg;
    if (rc < 0)
        return rc;
    sess_enter(s, PH_CLOSED);
    return LLSMTP_CLOSE;
}

static int
sess_cmd_unknown(llsmtp_server *s, llsmtp_span arg)
{
    (void)arg;
    if (s->cfg->flags & LLSMTP_CFG_502_UNKNOWN)
        return llsmtp__sess_err(s, 502, "5.5.1",
                                "Error: command not recognized");
    return llsmtp__sess_err(s, 500, "5.5.1", "Error: command not recognized");
}

static int
sess_cmd_starttls(llsmtp_server *s, llsmtp_span arg)
{
    llsmtp_reply r;
    llsmtp_span none = {NULL, 0};
    int cbrc = LLSMTP_OK;
    (void)arg; /* none: CMD_NO_ARG */
    if (s->tls_active)
        return llsmtp__sess_err(s, 503, "5.5.1", "Error: TLS already active");
    if (s->tx.in_mail)
        return llsmtp__sess_err(s, 503, "5.5.1",
                                "Error: MAIL transaction in progress");
    llsmtp__sess_kind_default(LLSMTP_PENDING_STARTTLS, &r);
    if (s->cb->on_starttls != NULL)
        SESS_CALL(s, cbrc, s->cb->on_starttls(s, &r));
    return llsmtp__sess_decided(s, LLSMTP_PENDING_STARTTLS, cbrc, &r, none);
}

static int
sess_cmd_etrn(llsmtp_server *s, llsmtp_span arg)
{
    llsmtp_reply r;
    int cbrc = LLSMTP_OK;
    size_t k;
    if (s->tx.in_mail)
        return llsmtp__sess_err(s, 503, "5.5.1",
                                "Error: MAIL transaction in progress");
    /* RFC 1985: "domain", "@domain" (and subdomains), "#queue" */
    if (arg.n > 1 && arg.p[0] == '#') {
        for (k = 1; k < arg.n; k++)
            if ((unsigned char)arg.p[k] <= 0x20 ||
                (unsigned char)arg.p[k] >= 0x7f)
                break;
        if (k < arg.n)
            arg.n = 0;
    } else if (arg.n == 0 || llsmtp_domain_check(arg.p + (arg.p[0] == '@'),
                                                 arg.n - (arg.p[0] == '@'),
                                                 0) != LLSMTP_OK) {
        arg.n = 0;
    }
    if (arg.n == 0)
        return llsmtp__sess_err(s, 501, "5.5.4", "Syntax: ETRN domain");
    llsmtp__sess_kind_default(LLSMTP_PENDING_ETRN, &r);
    if (s->cb->on_etrn != NULL)
        SESS_CALL(s, cbrc, s->cb->on_etrn(s, arg, &r));
    return llsmtp__sess_decided(s, LLSMTP_PENDING_ETRN, cbrc, &r, arg);
}

/* ---- the command table -------------------------------------------------- */

/* What the dispatcher (llsmtp__sess_line) checks before a command's handler, in
 * this order, and what else it needs to know about a verb. */
enum {
    /* RFC 2920 3.1: last in a pipelined group, and so are the commands
     * of other extensions unless they say otherwise: STARTTLS (RFC 3207
     * 4.2), ETRN (RFC 1985 says nothing otherwise) and AUTH */
    CMD_ENDS_GROUP = 1 << 0,
    /* ... except with an initial response: RFC 4954 4 lets a client
     * pipeline past one for a mechanism that completes in one round trip
     * (PLAIN, EXTERNAL, ANONYMOUS, among others); the session cannot know
     * every mechanism, so such a line ends no group and the 334 that
     * continues an exchange does (sess_sync_mark at the challenge) */
    CMD_ENDS_GROUP_NO_IR = 1 << 1,
    CMD_CLOSES = 1 << 2,     /* handled first, before the sync check */
    CMD_REFUSED_OK = 1 << 3, /* answered after a 554 greeting */
    CMD_NOT_LMTP = 1 << 4,   /* 500 under LMTP */
    CMD_LMTP_ONLY = 1 << 5,  /* 502 unless LMTP */
    CMD_NEEDS_HELO = 1 << 6, /* 503 before HELO/EHLO/LHLO */
    CMD_NEEDS_EHLO = 1 << 7, /* 503 before EHLO/LHLO */
    CMD_NO_ARG = 1 << 8,     /* 501 with the row's syntax if an argument */
    CMD_NEEDS_ARG = 1 << 9,  /* 501 with the row's syntax if none */
    /* the argument may carry a credential (RFC 4954 4): lines up to
     * max_auth_line, and on_reply sees the mechanism only */
    CMD_SECRET = 1 << 10,
    CMD_NO_ECHO = 1 << 11, /* on_reply gets no argument */
    CMD_HELP = 1 << 12     /* HELP lists it (when its extension is on) */
};

typedef struct sess_cmd {
    char name[12];      /* the verb, as on_reply reports it */
    unsigned flags;     /* CMD_* */
    unsigned ext;       /* 502 unless this extension is configured (0: none) */
    const char *syntax; /* the 501 text for CMD_NO_ARG and CMD_NEEDS_ARG */
    int (*handler)(llsmtp_server *s, llsmtp_span arg);
} sess_cmd;

#define CMD_G CMD_ENDS_GROUP

/* Every verb the session knows. Adding a command is a row here and its
 * handler. HELP lists the CMD_HELP rows in this order. */
static const sess_cmd sess_cmds[] = {
    {"HELO", CMD_G | CMD_NOT_LMTP | CMD_HELP, 0, NULL, sess_cmd_helo},
    {"EHLO", CMD_G | CMD_NOT_LMTP | CMD_HELP, 0, NULL, sess_cmd_ehlo},
    {"LHLO", CMD_G | CMD_LMTP_ONLY | CMD_HELP, 0, NULL, sess_cmd_lhlo},
    {"MAIL", CMD_NEEDS_HELO | CMD_HELP, 0, NULL, sess_cmd_mail},
    {"RCPT", CMD_HELP, 0, NULL, sess_cmd_rcpt},
    {"DATA", CMD_G | CMD_NO_ARG | CMD_HELP, 0, "Syntax: DATA", sess_cmd_data},
    {"RSET", CMD_NO_ARG | CMD_HELP, 0, "Syntax: RSET", sess_cmd_rset},
    {"NOOP", CMD_G | CMD_HELP, 0, NULL, sess_cmd_noop},
    {"QUIT", CMD_G | CMD_REFUSED_OK | CMD_NO_ARG | CMD_HELP, 0, "Syntax: QUIT",
     sess_cmd_quit},
    {"VRFY", CMD_G | CMD_NEEDS_ARG | CMD_HELP, 0, "Syntax: VRFY address",
     sess_cmd_vrfy},
    {"HELP", CMD_HELP, 0, NULL, sess_cmd_help},
    {"ETRN", CMD_G | CMD_NEEDS_HELO | CMD_HELP, LLSMTP_EXT_ETRN, NULL,
     sess_cmd_etrn},
    {"STARTTLS", CMD_G | CMD_NO_ARG | CMD_HELP, LLSMTP_EXT_STARTTLS,
     "Syntax: STARTTLS", sess_cmd_starttls},
    {"AUTH",
     CMD_G | CMD_ENDS_GROUP_NO_IR | CMD_NEEDS_EHLO | CMD_SECRET | CMD_HELP,
     LLSMTP_EXT_AUTH, NULL, llsmtp__sess_cmd_auth},
    {"BDAT", CMD_HELP, LLSMTP_EXT_CHUNKING, NULL, llsmtp__sess_cmd_bdat},
    {"EXPN", CMD_G | CMD_NEEDS_ARG, 0, "Syntax: EXPN list", sess_cmd_expn},
    {"TURN", CMD_G | CMD_NO_ARG, 0, "Syntax: TURN", sess_cmd_turn},
    {"ATRN", 0, 0, NULL, sess_cmd_notimpl},
    {"SEND", 0, 0, NULL, sess_cmd_notimpl},
    {"SOML", 0, 0, NULL, sess_cmd_notimpl},
    {"SAML", 0, 0, NULL, sess_cmd_notimpl},
    {"VERB", 0, 0, NULL, sess_cmd_notimpl},
    {"GET", CMD_CLOSES, 0, NULL, sess_cmd_http},
    {"POST", CMD_CLOSES, 0, NULL, sess_cmd_http},
    {"HEAD", CMD_CLOSES, 0, NULL, sess_cmd_http},
    {"PUT", CMD_CLOSES, 0, NULL, sess_cmd_http},
    {"CONNECT", CMD_CLOSES, 0, NULL, sess_cmd_http},
    {"OPTIONS", CMD_CLOSES, 0, NULL, sess_cmd_http},
    {"DELETE", CMD_CLOSES, 0, NULL, sess_cmd_http},
    {"PATCH", CMD_CLOSES, 0, NULL, sess_cmd_http},
    {"TRACE", CMD_CLOSES, 0, NULL, sess_cmd_http}};

#undef CMD_G

#define SESS_CMDS (sizeof sess_cmds / sizeof sess_cmds[0])

/* An unknown verb: not echoed, as a stray SASL response sent after a
 * refused AUTH would arrive as one. */
static const sess_cmd sess_cmd_none = {"", CMD_NO_ECHO, 0, NULL,
                                       sess_cmd_unknown};

/* The row of verb v[0..n), any case. The verbs of a transaction, which
 * clients pipeline, by a switch on their four octets (the rows' indexes:
 * test_verb_lookup finds every name in its own row); any other by its
 * first letter and its octets folded, row by row. */
static const sess_cmd *
sess_verb(const char *v, size_t n)
{
    size_t i, k;
    unsigned c0;
    if (n == 4) {
        switch (sess_k4(v)) {
        case SESS_K4('m', 'a', 'i', 'l'):
            return &sess_cmds[3];
        case SESS_K4('r', 'c', 'p', 't'):
            return &sess_cmds[4];
        case SESS_K4('d', 'a', 't', 'a'):
            return &sess_cmds[5];
        case SESS_K4('r', 's', 'e', 't'):
            return &sess_cmds[6];
        case SESS_K4('b', 'd', 'a', 't'):
            return &sess_cmds[14];
        default:
            break;
        }
    }
    if (n == 0 || n >= sizeof sess_cmds[0].name)
        return &sess_cmd_none;
    c0 = (unsigned char)v[0] | 0x20u;
    for (i = 0; i < SESS_CMDS; i++) {
        const char *name = sess_cmds[i].name;
        if (((unsigned char)name[0] | 0x20u) != c0 || name[n] != '\0' ||
            name[n - 1] == '\0')
            continue;
        for (k = 1; k < n && ((unsigned char)v[k] | 0x20u) ==
                                 ((unsigned char)name[k] | 0x20u);
             k++)
            ;
        if (k == n)
            return &sess_cmds[i];
    }
    return &sess_cmd_none;
}

#if !defined(LLSMTP_AMALGAMATION) || defined(LLSMTP_TEST_INTERNALS)
const char *
llsmtp__server_cmd_row(size_t i)
{
    return i < SESS_CMDS ? sess_cmds[i].name : NULL;
}

long
llsmtp__server_cmd_find(const char *v, size_t n)
{
    const sess_cmd *c = sess_verb(v, n);
    return c == &sess_cmd_none ? -1 : (long)(c - sess_cmds);
}
#endif

/* HELP's default text: the commands offered here, from the same table
 * (and, for extensions, the same rule as EHLO). */
static void
sess_text_help(const llsmtp_server *s, sess_parts *ps, llsmtp_span arg)
{
    int lmtp = (s->cfg->flags & LLSMTP_CFG_LMTP) != 0;
    size_t i;
    (void)arg;
    sess_parts_add(ps, "Commands:");
    for (i = 0; i < SESS_CMDS; i++) {
        const sess_cmd *c = &sess_cmds[i];
        if (!(c->flags & CMD_HELP) || (lmtp && (c->flags & CMD_NOT_LMTP)) ||
            (!lmtp && (c->flags & CMD_LMTP_ONLY)) ||
            (c->ext != 0 && !llsmtp__sess_ext_on(s, c->ext)))
            continue;
        sess_parts_add(ps, " ");
        sess_parts_add(ps, c->name);
    }
    sess_parts_add(ps, "; see RFC 5321");
}

/* Whether this line ends a pipelined group (RFC 2920 3.1). */
static int
sess_ends_group(const sess_cmd *c, llsmtp_span arg)
{
    size_t m;
    if (!(c->flags & CMD_ENDS_GROUP_NO_IR))
        return (c->flags & CMD_ENDS_GROUP) != 0;
    for (m = 0; m < arg.n && arg.p[m] != ' '; m++)
        ;
    return m == arg.n; /* (arg is trimmed) no initial response: 334 next */
}

/* The checks the table's flags ask for, in order; 0 when the handler
 * runs, else what the line's reply returned. */
static int
sess_cmd_refused(llsmtp_server *s, const sess_cmd *c, llsmtp_span arg, int *rc)
{
    unsigned lmtp = s->cfg->flags & LLSMTP_CFG_LMTP;
    if (s->phase == PH_REFUSED && !(c->flags & CMD_REFUSED_OK))
        *rc = llsmtp__sess_err(s, 503, "5.5.1",
                               "Bad sequence of commands: no service here");
    else if (lmtp && (c->flags & CMD_NOT_LMTP))
        *rc = llsmtp__sess_err(s, 500, "5.5.1",
                               "Error: this is LMTP, use LHLO");
    else if ((!lmtp && (c->flags & CMD_LMTP_ONLY)) ||
             (c->ext != 0 && !(s->cfg->extensions & c->ext)))
        *rc = llsmtp__sess_err(s, 502, "5.5.1",
                               "Error: command not implemented");
    else if ((c->flags & CMD_NEEDS_HELO) && s->helo == HELO_NONE)
        *rc = llsmtp__sess_err(s, 503, "5.5.1", "Error: send HELO/EHLO first");
    else if ((c->flags & CMD_NEEDS_EHLO) && s->helo != HELO_EHLO)
        *rc = llsmtp__sess_err(s, 503, "5.5.1", "Error: send EHLO first");
    else if (((c->flags & CMD_NO_ARG) && arg.n) ||
             ((c->flags & CMD_NEEDS_ARG) && !arg.n))
        *rc = llsmtp__sess_err(s, 501, "5.5.4", c->syntax);
    else
        return 0;
    return 1;
}

/* One complete command line, terminator included. */
int
llsmtp__sess_line(llsmtp_server *s, const char *line, size_t n, int truncated)
{
    size_t len = n, v;
    llsmtp_span arg;
    const sess_cmd *c;
    int rc;

    s->rv_verb = "";
    s->rv_arg.p = NULL;
    s->rv_arg.n = 0;
    s->rv_phase = LLSMTP_RI_COMMAND;
    /* RFC 4954 4: the client waits for each challenge or the outcome
     * before its next SASL response */
    sess_sync_mark(s, sess_in_auth(s));
    if (truncated || n > s->line_cap) {
        /* Only the first bytes of a truncated line are kept: enough to
         * tell an AUTH line (RFC 4954 4: 500 5.5.6). */
        s->discarding = 0;
        if ((s->cfg->extensions & LLSMTP_EXT_AUTH) &&
            (sess_in_auth(s) || (n >= 5 && llsmtp__ieq(line, "auth ", 5)))) {
            s->rv_verb = "AUTH";
            if (sess_in_auth(s))
                s->rv_phase = LLSMTP_RI_AUTH_STEP;
            return llsmtp__sess_auth_abort(
                s, 500, "5.5.6", "Authentication exchange line is too long");
        }
        return llsmtp__sess_err(s, 500, "5.5.2", "Error: line too long");
    }
    if (sess_in_auth(s)) {
        s->rv_verb = "AUTH"; /* a SASL response: never its text */
        s->rv_phase = LLSMTP_RI_AUTH_STEP;
    }
    len--; /* the LF */
    if (len && line[len - 1] == '\r') {
        len--;
    } else if (s->cfg->bare_lf == LLSMTP_BARE_LF_REJECT) {
        if (sess_in_auth(s))
            return llsmtp__sess_auth_abort(s, 500, "5.5.2",
                                           "Error: bare <LF> received");
        return llsmtp__sess_err(s, 500, "5.5.2", "Error: bare <LF> received");
    }
    if (sess_in_auth(s))
        return llsmtp__sess_auth_line(s, line, len);
    /* A four-letter verb found in its first four octets ends there (no
     * name has a space); any other verb ends at the first space. */
    if (len >= 4 && (len == 4 || line[4] == ' ') &&
        (c = sess_verb(line, 4)) != &sess_cmd_none) {
        v = 4;
    } else {
        for (v = 0; v < len && line[v] != ' '; v++)
            ;
        if (len == 0)
            return llsmtp__sess_err(s, 500, "5.5.2", "Error: bad syntax");
        c = sess_verb(line, v);
    }
    s->rv_verb = c->name;
    arg = llsmtp__sess_trim(line + v, len - v);
    if (c->flags & CMD_SECRET)
        llsmtp__sess_rv_auth(s, arg);
    else if (!(c->flags & CMD_NO_ECHO))
        s->rv_arg = arg;
    /* Only AUTH lines may be longer than a command line. */
    if (n > s->cfg->max_line && !(c->flags & CMD_SECRET))
        return llsmtp__sess_err(s, 500, "5.5.2", "Error: line too long");
    if (c->flags & CMD_CLOSES)
        return c->handler(s, arg);
    sess_sync_mark(s, sess_ends_group(c, arg));
    if (sess_cmd_refused(s, c, arg, &rc))
        return rc;
    return c->handler(s, arg);
}
