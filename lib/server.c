/* SPDX-License-Identifier: MIT
 *
 * server.c - the server session: a sans-IO SMTP state machine (RFC 5321,
 * 2920, 1870, 6152, 2034). Bytes come in through llsmtp_server_feed(),
 * replies leave through a bounded output queue, decisions are made by the
 * host's callbacks and may be deferred. Invariants: any split of the same
 * input gives the same callbacks and output; complete command lines are
 * parsed in place and only a partial line is copied; DATA is delivered as
 * zero-copy spans and only <CRLF>.<CRLF> ends it; memory is what the host
 * gave to llsmtp_server_init(), nothing more.
 *
 * This file: configuration and memory, start, resume, the queries, the
 * ways a session ends, the PROXY header's bytes, and feed. The rest of
 * the session is in server_reply.c (output queue, replies),
 * server_cmd.c (the command and decision tables, the commands),
 * server_auth.c (AUTH) and server_data.c (DATA, BDAT, LMTP replies),
 * sharing the session struct in server_int.h.
 */
#include "server_int.h"

static int sess_settle(llsmtp_server *s, int rc);
static void sess_cancel(llsmtp_server *s);

#ifdef __cplusplus /* vendored into C++: a const needs an initializer */
static const llsmtp_callbacks sess_no_callbacks = {};
#else
static const llsmtp_callbacks sess_no_callbacks;
#endif

#define SESS_ALIGN(n) (((n) + 15u) & ~(size_t)15u)

/* The alignment malloc guarantees ("suitably aligned for any object"),
 * C11's max_align_t spelt in C99: session memory must have it. */
typedef union sess_max_align {
    /* cppcheck-suppress unusedStructMember ; only measured */
    long double ld;
    /* cppcheck-suppress unusedStructMember ; only measured */
    double d;
    /* cppcheck-suppress unusedStructMember ; only measured */
    uint64_t u;
    /* cppcheck-suppress unusedStructMember ; only measured */
    void *p;
    /* cppcheck-suppress unusedStructMember ; only measured */
    void (*f)(void);
} sess_max_align;
typedef struct sess_align_probe {
    /* cppcheck-suppress unusedStructMember ; only measured */
    char c;
    /* cppcheck-suppress unusedStructMember ; only measured */
    sess_max_align a;
} sess_align_probe;
#define SESS_MAX_ALIGN offsetof(sess_align_probe, a)

/* ---- configuration and memory ----------------------------------------- */

/* The 1.0 members' ends: a 1.x host's config and callback table have at
 * least these (lib/internal.h, llsmtp__abi_fits). */
#define SESS_CFG_MIN LLSMTP__END(llsmtp_config, max_auth_line)
#define SESS_CB_MIN LLSMTP__END(llsmtp_callbacks, on_cancel)

int
llsmtp_config_init_(llsmtp_config *cfg, unsigned long version, size_t cfg_size,
                    size_t callbacks_size)
{
    if (cfg == NULL)
        return LLSMTP_E_INVAL;
    /* one from an older 1.x header is smaller than ours */
    if (!llsmtp__abi_fits(version, cfg_size, SESS_CFG_MIN, sizeof *cfg))
        return llsmtp__abi_refuse(&cfg->abi);
    memset(cfg, 0, cfg_size);
    cfg->hostname = "localhost";
    cfg->banner = "llsmtp";
    cfg->extensions = LLSMTP_EXT_DEFAULT;
    cfg->bare_lf = LLSMTP_BARE_LF_NORMALIZE;
    cfg->max_line = 512;
    cfg->max_rcpt = 1000;
    cfg->max_size = 0;
    cfg->max_errors = 20;
    cfg->output_size = 4096;
    cfg->max_rcpt_rejects = 100;
    cfg->auth_mechanisms = "PLAIN LOGIN";
    cfg->max_auth_failures = 3;
    cfg->max_auth_line = 12288; /* RFC 4954 4 */
    return llsmtp__abi_tag(&cfg->abi, version, cfg_size, SESS_CFG_MIN,
                           sizeof *cfg, callbacks_size, SESS_CB_MIN,
                           sizeof(llsmtp_callbacks));
}

/* A configuration not made by llsmtp_config_init of a header this library
 * takes (or whose callback table is of another size). */
static const char SESS_WHY_ABI[] =
    "abi: not set up with llsmtp_config_init of a header this library takes "
    "(LLSMTP_E_VERSION)";

/* Every extension and flag this version knows. */
#define SESS_EXT_ALL ((unsigned)LLSMTP_EXT_ETRN * 2u - 1u)
#define SESS_FLAG_ALL ((unsigned)LLSMTP_CFG_LENT_OUTPUT * 2u - 1u)

/* RFC 4422 3.1: 1-20 characters, upper-case letters, digits, "-", "_"
 * (lower case accepted: names compare case-insensitively). */
static const char *
sess_cfg_mechs_why(const char *m)
{
    size_t i = 0, count = 0;
    if (m == NULL)
        return "auth_mechanisms: NULL while LLSMTP_EXT_AUTH is on";
    for (;;) {
        size_t start;
        while (m[i] == ' ')
            i++;
        if (m[i] == '\0')
            break;
        start = i;
        while (m[i] != '\0' && m[i] != ' ') {
            unsigned char c = (unsigned char)m[i];
            if (!llsmtp__is_alnum(c) && c != '-' && c != '_')
                return "auth_mechanisms: a name holds a character other "
                       "than letters, digits, \"-\" and \"_\"";
            i++;
        }
        if (i - start > SESS_MECH_MAX)
            return "auth_mechanisms: a name is longer than 20 characters";
        if (++count > LLSMTP_AUTH_MECHS_MAX)
            return "auth_mechanisms: more than LLSMTP_AUTH_MECHS_MAX names";
    }
    if (count == 0)
        return "auth_mechanisms: empty while LLSMTP_EXT_AUTH is on";
    return NULL;
}

static const char *
sess_cfg_why(const llsmtp_config *cfg)
{
    size_t n, i;
    if (cfg == NULL)
        return "config: NULL";
    if (!llsmtp__abi_ok(&cfg->abi, SESS_CFG_MIN, sizeof *cfg, SESS_CB_MIN,
                        sizeof(llsmtp_callbacks)))
        return SESS_WHY_ABI;
    if (cfg->hostname == NULL)
        return "hostname: NULL";
    n = strlen(cfg->hostname);
    if (n == 0 || n > 255)
        return "hostname: empty or longer than 255 octets";
    /* verbatim in the greeting, EHLO, 221 and 421 */
    if (!llsmtp__host_name_ok(cfg->hostname, n))
        return "hostname: not a domain name or address literal";
    if (cfg->banner != NULL) {
        n = strlen(cfg->banner);
        if (n > 255)
            return "banner: longer than 255 octets";
        for (i = 0; i < n; i++)
            if ((unsigned char)cfg->banner[i] < 0x20 ||
                (unsigned char)cfg->banner[i] >= 0x7f)
                return "banner: a control or non-ASCII character";
    }
    if (cfg->extensions & ~SESS_EXT_ALL)
        return "extensions: a bit this version does not know";
    if (cfg->flags & ~SESS_FLAG_ALL)
        return "flags: a bit this version does not know";
    if (cfg->bare_lf < 0 || cfg->bare_lf > LLSMTP_BARE_LF_PASS)
        return "bare_lf: not an enum llsmtp_bare_lf value";
    if (cfg->max_line < 512 || cfg->max_line > (size_t)1 << 20)
        return "max_line: outside 512..1048576 (RFC 5321 4.5.3.1.4)";
    if (cfg->max_rcpt < 100)
        return "max_rcpt: below 100 (RFC 5321 4.5.3.1.8)";
    if (cfg->output_size > (size_t)1 << 24)
        return "output_size: over 16 MiB";
    if (cfg->extensions & LLSMTP_EXT_AUTH) {
        const char *why = sess_cfg_mechs_why(cfg->auth_mechanisms);
        llsmtp_span tok;
        if (why != NULL)
            return why;
        if (llsmtp__sess_mech_next_cfg(cfg, 0, &tok) == 0)
            return "auth_mechanisms: none can be offered (only PLAIN and "
                   "LOGIN run without callbacks->on_auth_step)";
        if (cfg->max_auth_line < 512 || cfg->max_auth_line > (size_t)1 << 20)
            return "max_auth_line: outside 512..1048576";
    }
#ifdef LLSMTP_NO_RELAY
    if (cfg->relay != NULL) /* compiled out: refuse rather than relay */
        return "relay: built with LLSMTP_NO_RELAY";
#else
    if (cfg->relay != NULL &&
        !llsmtp__abi_ok(&cfg->relay->abi,
                        LLSMTP__END(llsmtp_relay_policy, deny_text),
                        sizeof *cfg->relay, 0, 0))
        return "relay: not set up with llsmtp_relay_policy_init of a header "
               "this library takes (LLSMTP_E_VERSION)";
#endif
    return NULL;
}

int
llsmtp_config_check(const llsmtp_config *cfg, const char **why)
{
    const char *w = sess_cfg_why(cfg);
    if (why != NULL)
        *why = w;
    if (w != NULL && strstr(w, "LLSMTP_E_VERSION") != NULL)
        return LLSMTP_E_VERSION;
    return w == NULL ? LLSMTP_OK : LLSMTP_E_INVAL;
}

static int
sess_cfg_ok(const llsmtp_config *cfg)
{
    return sess_cfg_why(cfg) == NULL;
}

/* The line buffer: command lines, and AUTH lines when AUTH is on. */
static size_t
sess_line_cap(const llsmtp_config *cfg)
{
    if ((cfg->extensions & LLSMTP_EXT_AUTH) &&
        cfg->max_auth_line > cfg->max_line)
        return cfg->max_auth_line;
    return cfg->max_line;
}

static size_t
sess_auth_area(const llsmtp_config *cfg)
{
    return (cfg->extensions & LLSMTP_EXT_AUTH) ? SESS_AUTH_USER_MAX : 0;
}

/* The largest reply one command can produce: an echoed line (EHLO
 * argument, a path) folded, plus hostname, extensions or host text. */
static size_t
sess_reserve(const llsmtp_config *cfg)
{
    return cfg->max_line + cfg->max_line / 32 + 2048;
}

static size_t
sess_out_cap(const llsmtp_config *cfg)
{
    size_t r = sess_reserve(cfg) + 512;
    return cfg->output_size > r ? cfg->output_size : r;
}

/* The output queue inside the session: none when the host lends it. */
static size_t
sess_own_out(const llsmtp_config *cfg)
{
    return (cfg->flags & LLSMTP_CFG_LENT_OUTPUT)
               ? 0
               : SESS_ALIGN(sess_out_cap(cfg));
}

size_t
llsmtp_server_size(const llsmtp_config *cfg)
{
    if (!sess_cfg_ok(cfg))
        return 0;
    return SESS_ALIGN(sizeof(llsmtp_server)) + SESS_ALIGN(sess_line_cap(cfg)) +
           sess_own_out(cfg) + sess_auth_area(cfg);
}

size_t
llsmtp_server_lend_size(const llsmtp_config *cfg)
{
    return sess_cfg_ok(cfg) ? sess_out_cap(cfg) : 0;
}

int
llsmtp_server_lend(llsmtp_server *s, char *buf, size_t cap)
{
    if (s == NULL || buf == NULL)
        return LLSMTP_E_INVAL;
    if (s->in_cb)
        return LLSMTP_E_REENTRANT;
    if (!(s->cfg->flags & LLSMTP_CFG_LENT_OUTPUT))
        return LLSMTP_E_STATE;
    if (s->out == buf && s->out_cap == cap)
        return LLSMTP_OK; /* the same loan again */
    if (s->out != NULL)
        return LLSMTP_E_STATE; /* it still holds the last one */
    if (cap < s->lend_min)
        return LLSMTP_E_INVAL;
    s->out = buf;
    s->out_cap = cap;
    s->out_start = s->out_end = 0;
    return LLSMTP_OK;
}

char *
llsmtp_server_reclaim(llsmtp_server *s)
{
    char *b;
    /* never from a callback: the reply being made needs the room */
    if (s == NULL || !(s->cfg->flags & LLSMTP_CFG_LENT_OUTPUT) || s->in_cb ||
        s->out == NULL || s->out_end != s->out_start)
        return NULL;
    b = s->out;
    s->out = NULL;
    s->out_cap = 0;
    s->out_start = s->out_end = 0;
    return b;
}

/* Lent output (LLSMTP_CFG_LENT_OUTPUT): the calls that may queue a reply
 * need a loan. */
static int
sess_unlent(const llsmtp_server *s)
{
    return (s->cfg->flags & LLSMTP_CFG_LENT_OUTPUT) && s->out == NULL;
}

static void
sess_clear(llsmtp_server *s)
{
    const llsmtp_config *cfg = s->cfg;
    void *user = s->user;
    char *base = (char *)s, *lent = s->out;
    size_t lent_cap = s->out_cap;
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->user = user;
    s->cb = cfg->callbacks != NULL ? cfg->callbacks : &sess_no_callbacks;
    s->line = base + SESS_ALIGN(sizeof(llsmtp_server));
    s->line_cap = sess_line_cap(cfg);
    s->lend_min = sess_out_cap(cfg);
    if (cfg->flags & LLSMTP_CFG_LENT_OUTPUT) {
        s->out = lent; /* a loan outlives a reset; its bytes do not */
        s->out_cap = lent != NULL ? lent_cap : 0;
    } else {
        s->out = s->line + SESS_ALIGN(s->line_cap);
        s->out_cap = s->lend_min;
    }
    s->auth.user = sess_auth_area(cfg)
                       ? s->line + SESS_ALIGN(s->line_cap) + sess_own_out(cfg)
                       : NULL;
    s->reserve = sess_reserve(cfg);
    sess_enter(s, PH_NEW);
}

llsmtp_server *
llsmtp_server_init(void *mem, size_t memlen, const llsmtp_config *cfg,
                   void *user)
{
    llsmtp_server *s = (llsmtp_server *)mem;
    size_t need = llsmtp_server_size(cfg);
    if (mem == NULL || need == 0 || memlen < need ||
        (uintptr_t)mem % SESS_MAX_ALIGN != 0)
        return NULL;
    s->cfg = cfg;
    s->user = user;
    s->out = NULL; /* nothing lent yet */
    s->out_cap = 0;
    sess_clear(s);
    return s;
}

int
llsmtp_server_reset(llsmtp_server *s)
{
    if (s == NULL)
        return LLSMTP_E_INVAL;
    if (s->in_cb)
        return LLSMTP_E_REENTRANT;
    sess_cancel(s);
    llsmtp__sess_auth_wipe(s); /* nothing of the old client survives a reset */
    sess_clear(s);
    return LLSMTP_OK;
}

/* The session fails for good (sticky until reset): a callback failed or
 * left a reply it may not give, or a reply did not fit. The host is going
 * to close, so the open message is abandoned here, once (never one that
 * on_data_end accepted), and the client hears 421 before the close
 * (RFC 5321 3.8) instead of silence. The first failure is the one
 * llsmtp_server_failed_cb reports: on_data_abort failing in turn, or the
 * 421 not fitting, comes back here and changes nothing. */
int
/* NOLINTNEXTLINE(misc-no-recursion): ends at the failed flag */
llsmtp__sess_fail(llsmtp_server *s, const char *cb, int err)
{
    if (s->failed)
        return err;
    s->failed = 1;
    s->failed_cb = cb;
    if (sess_msg_open(s))
        (void)llsmtp__sess_abort(s, LLSMTP_ABORT_CLOSED);
    llsmtp__sess_rv_session(s);
    if (s->phase != PH_CLOSED)
        (void)llsmtp__sess_say_host(
            s, 421, "4.3.0",
            "Service not available, closing transmission channel");
    sess_enter(s, PH_CLOSED);
    return err;
}

const char *
llsmtp_server_failed_cb(const llsmtp_server *s)
{
    return s != NULL ? s->failed_cb : NULL;
}

/* ---- start, resume, queries ---------------------------------------------- */

/* on_connect and the greeting. */
static int
sess_greet(llsmtp_server *s)
{
    llsmtp_reply r;
    llsmtp_span none = {NULL, 0};
    int cbrc = LLSMTP_OK;
    sess_enter(s, PH_NEW);
    s->rv_verb = "";
    s->rv_phase = LLSMTP_RI_GREETING;
    llsmtp__sess_default_reply(&r, 220, "");
    if (s->cb->on_connect != NULL)
        SESS_CALL(s, cbrc, s->cb->on_connect(s, &r));
    return llsmtp__sess_decided(s, LLSMTP_PENDING_CONNECT, cbrc, &r, none);
}

int
llsmtp_server_start(llsmtp_server *s)
{
    if (s == NULL)
        return LLSMTP_E_INVAL;
    if (s->in_cb)
        return LLSMTP_E_REENTRANT;
    if (s->phase != PH_NEW || s->pend.kind || sess_unlent(s))
        return LLSMTP_E_STATE;
    if (s->cfg->flags & LLSMTP_CFG_PROXY) {
        /* the greeting waits for the real client address */
        sess_enter(s, PH_PROXY);
        return LLSMTP_OK;
    }
    return sess_greet(s);
}

int
llsmtp_server_resume(llsmtp_server *s, const llsmtp_reply *decision)
{
    llsmtp_reply r;
    llsmtp_span arg;
    int kind;
    if (s == NULL)
        return LLSMTP_E_INVAL;
    if (s->in_cb)
        return LLSMTP_E_REENTRANT;
    if (s->failed)
        return LLSMTP_E_CALLBACK;
    if (s->phase == PH_CLOSED)
        return LLSMTP_CLOSE;
    if (!s->pend.kind || sess_unlent(s))
        return LLSMTP_E_STATE;
    kind = s->pend.kind;
    if (kind == LLSMTP_PENDING_DATA) {
        s->pend.kind = 0;
        /* the piece that paused was the part of the message that fitted
         * under max_size: the rest is not delivered (llsmtp__sess_emit) */
        if (llsmtp__sess_over_size(s) && !s->data.abort) {
            int rc = llsmtp__sess_abort(s, LLSMTP_ABORT_SIZE);
            if (rc != LLSMTP_OK)
                return sess_settle(s, rc);
        }
        /* on_data paused on a chunk's last octet: the chunk is complete
         * and its reply is due now (RFC 3030 2); the client sends nothing
         * more before it reads that reply, so no later feed would come to
         * finish it. The octet was passed only with room for the reply. */
        if (s->phase == PH_BDAT && s->bdat.left == 0)
            return sess_settle(s, llsmtp__sess_bdat_end(s));
        return LLSMTP_OK;
    }
    llsmtp__sess_kind_default(kind, &r);
    if (decision != NULL && decision->code != 0) {
        r = *decision;
        llsmtp__sess_normalize(kind, &r);
        if (!llsmtp__sess_reply_ok(&r) ||
            !llsmtp__sess_code_fits(s, kind, r.code))
            return LLSMTP_E_REPLY;
    } else if (decision != NULL) {
        if (decision->id_len > LLSMTP_REPLY_ID_MAX)
            return LLSMTP_E_REPLY;
        memcpy(r.id, decision->id, decision->id_len);
        r.id_len = decision->id_len;
    }
    /* The line that deferred found s->reserve free and nothing has been
     * queued since, so the reply fits. */
    s->pend.kind = 0;
    arg.p = s->line + s->pend.arg_off;
    arg.n = s->pend.arg_len;
    s->pend.arg_len = 0;
    s->pend.arg_off = 0;
    s->rv_arg.p = s->pend.rv_kept ? s->rv_keep : s->line;
    s->rv_arg.n = s->pend.rv_kept ? s->rv_keep_len : s->pend.rv_len;
    s->pend.rv_len = 0;
    s->pend.rv_kept = 0;
    {
        int rc = llsmtp__sess_apply(s, kind, &r, arg);
        if (rc == LLSMTP_OK && s->phase == PH_BDAT && s->bdat.left == 0)
            rc = llsmtp__sess_bdat_end(s); /* "BDAT 0 LAST" after a deferral */
        s->rv_arg.p = NULL;
        s->rv_arg.n = 0;
        return sess_settle(s, rc);
    }
}

int
llsmtp_server_pending(const llsmtp_server *s)
{
    return s != NULL ? (int)s->pend.kind : (int)LLSMTP_PENDING_NONE;
}

void
llsmtp_server_set_peer(llsmtp_server *s, const llsmtp_ip *ip)
{
    if (s == NULL)
        return;
    if (ip != NULL && (ip->family == 4 || ip->family == 6))
        s->client = *ip;
    else
        memset(&s->client, 0, sizeof s->client);
    s->client_port = 0; /* the PROXY header's port was for its address */
}

void
llsmtp_server_set_authenticated(llsmtp_server *s, int yes)
{
    if (s != NULL)
        s->auth.authenticated = yes != 0;
}

int
llsmtp_server_peer(const llsmtp_server *s, llsmtp_ip *ip, uint16_t *port)
{
    if (s == NULL || s->client.family == 0)
        return 0;
    if (ip != NULL)
        *ip = s->client;
    if (port != NULL)
        *port = s->client_port;
    return 1;
}

int
llsmtp_server_rcpt_verdict(const llsmtp_server *s)
{
    return s != NULL ? s->rcpt_verdict : -1;
}

void *
llsmtp_server_user(const llsmtp_server *s)
{
    return s != NULL ? s->user : NULL;
}

void
llsmtp_server_set_user(llsmtp_server *s, void *user)
{
    if (s != NULL)
        s->user = user;
}

llsmtp_span
llsmtp_server_pending_arg(const llsmtp_server *s)
{
    llsmtp_span sp = {NULL, 0};
    if (s != NULL && s->pend.kind && s->pend.kind != LLSMTP_PENDING_DATA &&
        s->pend.arg_len) {
        sp.p = s->line + s->pend.arg_off;
        sp.n = s->pend.arg_len;
    }
    return sp;
}

unsigned
llsmtp_server_wants(const llsmtp_server *s)
{
    unsigned w = 0;
    if (s == NULL || (s->phase == PH_NEW && !s->pend.kind))
        return 0; /* llsmtp_server_start comes first */
    if (s->out_end != s->out_start)
        w |= LLSMTP_WANT_WRITE;
    if (s->failed || s->phase == PH_CLOSED)
        return w | LLSMTP_WANT_CLOSE;
    if (s->phase == PH_TLS_WAIT)
        return w | LLSMTP_WANT_TLS;
    if (s->pend.kind)
        return w | LLSMTP_WANT_RESUME;
    /* Whether feed will take bytes now: only with room for the replies
     * they may call for. Message octets need none until the message or
     * chunk ends, but where it ends only feed can tell, and a READ that
     * took nothing would have a host poll for input in a loop; LMTP
     * replies waiting for room come first (consume sends them). */
    if (s->lmtp.active)
        return w;
    if (sess_unlent(s) || sess_out_free(s) >= s->reserve)
        w |= LLSMTP_WANT_READ; /* unlent: once the host lends, as it must */
    return w;
}

int
llsmtp__sess_continue(llsmtp_server *s)
{
    if (s->failed)
        return LLSMTP_E_CALLBACK;
    if (s->phase == PH_CLOSED)
        return LLSMTP_CLOSE;
    if (s->in_cb || s->pend.kind || !s->lmtp.active)
        return LLSMTP_OK;
    return sess_settle(s, llsmtp__sess_lmtp_emit(s));
}

const llsmtp_config *
llsmtp_server_config(const llsmtp_server *s)
{
    return s != NULL ? s->cfg : NULL;
}

int
llsmtp_server_helo_kind(const llsmtp_server *s)
{
    if (s == NULL || s->helo == HELO_NONE)
        return -1;
    return s->helo == HELO_EHLO;
}

size_t
llsmtp_server_rcpt_count(const llsmtp_server *s)
{
    return s != NULL ? s->tx.rcpt_count : 0;
}

uint64_t
llsmtp_server_data_size(const llsmtp_server *s)
{
    return s != NULL ? s->data.size : 0;
}

int
llsmtp_server_body_type(const llsmtp_server *s)
{
    return s != NULL ? s->tx.body : 0;
}

int
llsmtp_server_smtputf8(const llsmtp_server *s)
{
    return s != NULL && s->tx.smtputf8;
}

int
llsmtp_server_timeout(const llsmtp_server *s, unsigned *seconds)
{
    int t;
    unsigned sec = 300; /* RFC 5321 4.5.3.2.7: at least 5 minutes */
    if (s != NULL && s->pend.kind == LLSMTP_PENDING_DATA_END && !s->failed &&
        s->phase != PH_CLOSED) {
        t = LLSMTP_TIMEOUT_FINAL_DOT;
        sec = 600; /* 4.5.3.2.6: the client waits 10 minutes */
    } else if (s == NULL || s->phase == PH_CLOSED || s->phase == PH_TLS_WAIT ||
               s->failed || s->pend.kind) {
        /* closed, the host's handshake, or the host deciding */
        t = LLSMTP_TIMEOUT_NONE;
        sec = 0;
    } else if (s->phase == PH_NEW || s->phase == PH_PROXY) {
        t = LLSMTP_TIMEOUT_GREETING;
    } else if (s->phase == PH_DATA || s->phase == PH_BDAT) {
        /* 4.5.3.2.5: the client's data block timer is 3 minutes; a server
         * waits longer, as the final-dot wait is 10 minutes. */
        t = s->data.size == 0 && s->data.state == D_BOL
                ? LLSMTP_TIMEOUT_DATA_INIT
                : LLSMTP_TIMEOUT_DATA_BLOCK;
        sec = 600;
    } else if (s->helo == HELO_NONE) {
        t = LLSMTP_TIMEOUT_IDLE;
    } else if (!s->tx.in_mail) {
        t = LLSMTP_TIMEOUT_MAIL;
    } else {
        t = LLSMTP_TIMEOUT_RCPT;
    }
    if (seconds != NULL)
        *seconds = sec;
    return t;
}

/* A deferred decision will never be delivered (the session ends or is
 * reset): forgotten, and the host told, so that it does not resume a
 * session that is gone. */
static void
sess_cancel(llsmtp_server *s)
{
    int kind = s->pend.kind;
    if (!kind)
        return;
    s->pend.kind = 0;
    s->pend.arg_len = 0;
    if (s->cb->on_cancel != NULL) {
        s->in_cb = 1;
        s->cb->on_cancel(s, kind);
        s->in_cb = 0;
    }
}

/* Every path that closes the session (QUIT, a 421 from an error limit,
 * an HTTP verb, the sync check, a host's 421) ends here before feed or
 * resume returns: a message the host opened and that is still open is
 * owed its on_data_abort (CLOSED), exactly once. */
static int
sess_settle(llsmtp_server *s, int rc)
{
    if (s->phase == PH_CLOSED && !s->failed && sess_msg_open(s)) {
        int a = llsmtp__sess_abort(s, LLSMTP_ABORT_CLOSED);
        if (a < 0)
            return a;
    }
    return rc;
}

/* Ends the session from the host's side with a final reply. */
static int
sess_close_with(llsmtp_server *s, const llsmtp_reply *r, const char *enh,
                const char *text)
{
    int rc = LLSMTP_CLOSE;
    if (s->in_cb)
        return LLSMTP_E_REENTRANT;
    if (s->phase == PH_CLOSED)
        return LLSMTP_CLOSE;
    /* on_data_abort failing is reported, and the session ends all the
     * same: the decision cancelled, credentials wiped, closed */
    if (sess_msg_open(s)) {
        int a = llsmtp__sess_abort(s, LLSMTP_ABORT_CLOSED);
        if (a < 0)
            rc = a;
    }
    sess_cancel(s);            /* a late decision has no one to go to */
    llsmtp__sess_auth_wipe(s); /* also a half-sent AUTH line, AUTH on or not */
    llsmtp__sess_rv_session(s);
    /* The queue may be full of replies the client never read; then the
     * connection just closes. */
    if (sess_out_free(s) >= s->reserve / 2 && !s->failed) {
        if (r != NULL) {
            llsmtp_span none = {NULL, 0};
            (void)llsmtp__sess_apply(s, LLSMTP_PENDING_NONE, r, none);
        } else {
            (void)llsmtp__sess_say_host(s, 421, enh, text);
        }
    }
    sess_enter(s, PH_CLOSED);
    return rc;
}

int
llsmtp_server_timeout_expired(llsmtp_server *s)
{
    if (s == NULL)
        return LLSMTP_E_INVAL;
    return sess_close_with(s, NULL, "4.4.2", "Error: timeout exceeded");
}

int
llsmtp_server_shutdown(llsmtp_server *s, const llsmtp_reply *r)
{
    llsmtp_reply copy;
    if (s == NULL)
        return LLSMTP_E_INVAL;
    if (r != NULL) {
        copy = *r;
        copy.is_default = 0;
        if (!llsmtp__sess_reply_ok(&copy) || copy.code < 400)
            return LLSMTP_E_REPLY;
        r = &copy;
    }
    return sess_close_with(s, r, "4.3.2", "Service shutting down");
}

int
llsmtp_server_eof(llsmtp_server *s)
{
    int rc = LLSMTP_CLOSE;
    if (s == NULL)
        return LLSMTP_E_INVAL;
    if (s->in_cb)
        return LLSMTP_E_REENTRANT;
    if (sess_msg_open(s)) { /* a failure is reported; the session ends */
        int a = llsmtp__sess_abort(s, LLSMTP_ABORT_CLOSED);
        if (a < 0)
            rc = a;
    }
    llsmtp__sess_auth_wipe(s); /* a half-sent AUTH line may hold a password */
    sess_cancel(s);
    sess_enter(s, PH_CLOSED);
    return rc;
}

int
llsmtp_server_tls_started(llsmtp_server *s)
{
    if (s == NULL)
        return LLSMTP_E_INVAL;
    if (s->in_cb)
        return LLSMTP_E_REENTRANT;
    if (s->phase == PH_NEW && !s->pend.kind) {
        s->tls_active = 1; /* implicit TLS, before the greeting */
        return LLSMTP_OK;
    }
    if (s->phase != PH_TLS_WAIT)
        return LLSMTP_E_STATE;
    /* RFC 3207 4.2: forget everything learnt in the clear */
    s->tls_active = 1;
    sess_enter(s, PH_CMD);
    s->helo = HELO_NONE;
    s->auth.authenticated = 0;
    s->auth.state = AUTH_NONE;
    s->line_len = 0;
    s->discarding = 0;
    s->sync_wait = 0;
    llsmtp__sess_tx_reset(s);
    return LLSMTP_OK;
}

int
llsmtp_server_tls_active(const llsmtp_server *s)
{
    return s != NULL && s->tls_active;
}

int
llsmtp_server_authenticated(const llsmtp_server *s)
{
    return s != NULL && s->auth.authenticated;
}

/* Reads the PROXY header; then the greeting. Sets *used. */
static int
sess_proxy(llsmtp_server *s, const char *buf, size_t n, size_t *used)
{
    size_t i = 0;
    int ok = -1; /* -1: need more, 0: bad, 1: done */
    while (i < n && ok < 0) {
        if (s->proxy_skip) {
            size_t k = n - i < s->proxy_skip ? n - i : s->proxy_skip;
            s->proxy_skip = (uint16_t)(s->proxy_skip - k);
            i += k;
            if (s->proxy_skip == 0)
                ok = 1;
            continue;
        }
        if (s->line_len == 0 && buf[i] != 'P' && buf[i] != '\r') {
            ok = 0;
            break;
        }
        if (s->line_len ? s->line[0] == 'P' : buf[i] == 'P') {
            /* v1: one line */
            const char *lf = (const char *)memchr(buf + i, '\n', n - i);
            size_t k = lf != NULL ? (size_t)(lf - (buf + i)) + 1 : n - i;
            if (s->line_len + k > LLSMTP__PROXY_V1_MAX) {
                ok = 0;
                break;
            }
            memcpy(s->line + s->line_len, buf + i, k);
            s->line_len += k;
            i += k;
            if (lf != NULL)
                ok = llsmtp__proxy_parse(s->line, s->line_len, &s->client,
                                         &s->client_port);
        } else {
            /* v2: 16 fixed bytes, then the address block */
            size_t want = LLSMTP__PROXY_V2_HDR, k;
            if (s->line_len >= LLSMTP__PROXY_V2_HDR)
                want += llsmtp__proxy_v2_addr(s->line);
            k = want - s->line_len < n - i ? want - s->line_len : n - i;
            memcpy(s->line + s->line_len, buf + i, k);
            s->line_len += k;
            i += k;
            if (!llsmtp__proxy_v2_sig(s->line, s->line_len)) {
                ok = 0;
                break;
            }
            if (s->line_len < LLSMTP__PROXY_V2_HDR)
                continue;
            want = LLSMTP__PROXY_V2_HDR + llsmtp__proxy_v2_addr(s->line);
            if (s->line_len < want)
                continue;
            if (!llsmtp__proxy_parse(s->line, s->line_len, &s->client,
                                     &s->client_port)) {
                ok = 0;
                break;
            }
            /* the TLVs past the address block are skipped, not kept */
            s->proxy_skip = (uint16_t)(llsmtp__proxy_len(s->line) - want);
            if (s->proxy_skip == 0)
                ok = 1;
        }
    }
    *used = i;
    if (ok == 0) {
        /* not a PROXY header: close without a word (not SMTP yet) */
        s->line_len = 0;
        sess_enter(s, PH_CLOSED);
        return LLSMTP_CLOSE;
    }
    if (ok < 0)
        return LLSMTP_OK; /* more header to come */
    s->line_len = 0;
    return sess_greet(s);
}

/* ---- feed ---------------------------------------------------------------- */

/* A line overflowed the buffer: keep its first bytes (to tell what it
 * was) and drop the rest until its LF. What it held past the prefix is
 * wiped, not just forgotten: it may be an AUTH initial response (RFC 4954
 * 4) that no AUTH code path will see, e.g. when AUTH is off. */
#define SESS_PREFIX 8
static void
sess_keep_prefix(llsmtp_server *s, const char *p, size_t k)
{
    if (!s->discarding && s->line_len > SESS_PREFIX)
        llsmtp__wipe(s->line + SESS_PREFIX, s->line_len - SESS_PREFIX);
    if (!s->discarding && s->line_len < SESS_PREFIX) {
        size_t take = SESS_PREFIX - s->line_len;
        if (take > k)
            take = k;
        memcpy(s->line + s->line_len, p, take);
        s->line_len += take;
    }
    if (s->line_len > SESS_PREFIX)
        s->line_len = SESS_PREFIX;
    s->discarding = 1;
}

/* BDAT: octets of the chunk, byte-exact (RFC 3030); *used of n taken.
 * The chunk's last octet waits while its reply would not fit. */
static int
sess_feed_bdat(llsmtp_server *s, const char *buf, size_t n, size_t *used)
{
    size_t k = n;
    int rc;
    *used = 0;
    if ((uint64_t)k > s->bdat.left)
        k = (size_t)s->bdat.left;
    if ((uint64_t)k == s->bdat.left && sess_out_free(s) < s->reserve) {
        /* the chunk would end with no room for its reply: keep its last
         * byte for after the host drains */
        if (k <= 1)
            return LLSMTP_BLOCKED;
        k--;
    }
    s->bdat.left -= k;
    *used = k;
    if (!s->bdat.discard && (rc = llsmtp__sess_emit(s, buf, k)) != LLSMTP_OK)
        return rc; /* paused after this piece, or failed */
    if (s->bdat.left == 0)
        return llsmtp__sess_bdat_end(s);
    return LLSMTP_OK;
}

/* A command line from buf[0..n), n > 0: a partial line is kept (or only
 * its prefix, once too long) and all of buf used; a complete one, found
 * in place or completing what was kept, goes to llsmtp__sess_line. */
static int
sess_feed_line(llsmtp_server *s, const char *buf, size_t n, size_t *used)
{
    const char *lf = (const char *)memchr(buf, '\n', n);
    size_t k;
    int rc;
    if (lf == NULL) {
        if (!s->discarding && s->line_len + n < s->line_cap) {
            memcpy(s->line + s->line_len, buf, n);
            s->line_len += n;
        } else {
            sess_keep_prefix(s, buf, n);
        }
        *used = n;
        return LLSMTP_OK;
    }
    k = (size_t)(lf - buf) + 1;
    *used = k;
    if (s->line_len || s->discarding) {
        int truncated = 0, secret;
        size_t ln;
        if (!s->discarding && s->line_len + k <= s->line_cap) {
            memcpy(s->line + s->line_len, buf, k);
            s->line_len += k;
        } else {
            sess_keep_prefix(s, buf, k);
            truncated = 1;
        }
        ln = s->line_len;
        s->line_len = 0;
        /* An AUTH line may carry credentials (RFC 4954 4 initial
         * response) whatever becomes of it: refused, too long,
         * cancelled. Once answered, its copy here is wiped. */
        secret = sess_in_auth(s) ||
                 (ln >= 4 && llsmtp__ieq(s->line, "auth", 4));
        rc = llsmtp__sess_line(s, s->line, ln, truncated);
        if (secret)
            llsmtp__wipe(s->line, ln);
    } else {
        rc = llsmtp__sess_line(s, buf, k, 0);
    }
    s->rv_arg.p = NULL; /* the line is gone (a deferral copied it) */
    s->rv_arg.n = 0;
    /* CVE-2011-0411: the rest of this read is dropped, also when the
     * STARTTLS decision was deferred: fed after the handshake, it would
     * run as if it had come over TLS (and a client may not pipeline past
     * STARTTLS, RFC 3207 4, so nothing is lost if the host refuses) */
    if (rc == LLSMTP_START_TLS ||
        (rc == LLSMTP_PAUSED && s->pend.kind == LLSMTP_PENDING_STARTTLS))
        *used = n;
    return rc;
}

int
llsmtp_server_feed(llsmtp_server *s, const char *buf, size_t len, size_t *used)
{
    size_t i = 0;
    int rc = LLSMTP_OK;

    if (used == NULL)
        return LLSMTP_E_INVAL;
    *used = 0;
    if (s == NULL || (buf == NULL && len != 0))
        return LLSMTP_E_INVAL;
    if (s->in_cb)
        return LLSMTP_E_REENTRANT;
    if (s->failed)
        return LLSMTP_E_CALLBACK;
    if (s->phase == PH_CLOSED)
        return LLSMTP_CLOSE;
    if (s->pend.kind == LLSMTP_PENDING_STARTTLS) {
        /* CVE-2011-0411: while STARTTLS is decided, what comes is dropped
         * (the client may send nothing before its reply, RFC 3207 4):
         * held by the host, it would be fed after the handshake and run
         * as if it had come over TLS */
        *used = len;
        return LLSMTP_PAUSED;
    }
    if (s->pend.kind)
        return LLSMTP_PAUSED;
    if (s->phase == PH_NEW || sess_unlent(s))
        return LLSMTP_E_STATE;
    if (s->phase == PH_TLS_WAIT) {
        /* CVE-2011-0411: nothing sent before the handshake counts */
        *used = len;
        return LLSMTP_START_TLS;
    }
    if (s->lmtp.active && (rc = llsmtp__sess_lmtp_emit(s)) != LLSMTP_OK)
        return rc; /* LMTP replies still waiting for room */

    while (i < len) {
        size_t k;
        if (s->phase == PH_PROXY) {
            rc = sess_proxy(s, buf + i, len - i, &k);
            i += k;
            if (rc != LLSMTP_OK)
                break;
            continue;
        }
        if (s->phase == PH_DATA && !s->sync_wait) {
            rc = llsmtp__sess_data(s, buf + i, len - i, &k);
            i += k;
            if (rc != LLSMTP_OK)
                break;
            continue;
        }
        if (s->phase == PH_BDAT) {
            rc = sess_feed_bdat(s, buf + i, len - i, &k);
            i += k;
            if (rc != LLSMTP_OK)
                break;
            continue; /* the rest of the chunk comes in later feeds */
        }
        if (s->phase == PH_CLOSED) {
            rc = LLSMTP_CLOSE;
            break;
        }
        if ((s->cfg->flags & LLSMTP_CFG_SYNC_CHECK) &&
            (s->greet_left || s->sync_wait)) {
            /* Early talker or improper pipelining (RFC 2920 3.1). */
            llsmtp__sess_rv_session(s);
            rc = llsmtp__sess_say(s, 554, "5.5.0",
                                  "SMTP protocol synchronization");
            if (rc < 0)
                break;
            sess_enter(s, PH_CLOSED);
            rc = LLSMTP_CLOSE;
            break;
        }
        if (sess_out_free(s) < s->reserve) {
            rc = LLSMTP_BLOCKED;
            break;
        }
        rc = sess_feed_line(s, buf + i, len - i, &k);
        i += k;
        if (rc != LLSMTP_OK)
            break;
    }
    *used = i;
    return sess_settle(s, rc);
}
