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
 */
#include "internal.h"

#if defined(__SSE2__) && defined(__GNUC__) && !defined(LLSMTP_NO_SIMD)
#include <emmintrin.h>
#define SESS_SSE2 1
#endif

/* Session phases: what the next input byte is. sess_enter is the one
 * place the phase changes. Other states have names too:
 *   the transaction          s->tx.in_mail (sess_tx; sess_tx_reset)
 *   a message is in progress sess_msg_open: the host opened it and it was
 *                            neither accepted nor abandoned
 *   inside a BDAT transaction sess_in_bdat: the first chunk was accepted,
 *                            and DATA and RCPT are refused until LAST
 *   an AUTH exchange         sess_in_auth: the next line answers a 334
 *   a deferred decision      s->pend.kind (llsmtp_server_pending)
 *   LMTP replies due         s->lmtp.active (RFC 2033 4.2) */
enum {
    PH_NEW = 0,   /* initialised, llsmtp_server_start not called */
    PH_CMD,       /* reading command lines */
    PH_DATA,      /* reading message data after 354 */
    PH_REFUSED,   /* 554 greeting: 503 to all but QUIT (RFC 5321 3.1) */
    PH_BDAT,      /* reading a BDAT chunk (RFC 3030), byte-exact */
    PH_PROXY,     /* reading a PROXY protocol header, before greeting */
    PH_TLS_WAIT,  /* 220 to STARTTLS queued: input discarded until
                     llsmtp_server_tls_started (CVE-2011-0411) */
    PH_CLOSED     /* a 221/421 was queued: nothing more */
};

/* AUTH exchange states (RFC 4954 4): what the next line answers. */
enum {
    AUTH_NONE = 0,
    AUTH_PLAIN_WAIT, /* "334 " sent for PLAIN without initial response */
    AUTH_LOGIN_USER, /* "334 VXNlcm5hbWU6" sent */
    AUTH_LOGIN_PASS, /* "334 UGFzc3dvcmQ6" sent */
    AUTH_STEP        /* a host challenge sent (on_auth_step) */
};

#define SESS_AUTH_USER_MAX 256 /* AUTH LOGIN user name kept between lines */
#define SESS_MECH_MAX 20       /* RFC 4422 3.1: SASL names are 1-20 chars */
#define SESS_RV_KEEP 32

/* DATA scanner states (RFC 5321 4.5.2 transparency, 4.1.1.4 end). */
enum {
    D_BOL = 0, /* line start after a real CRLF: "." may begin the end */
    D_BOLX,    /* line start after a normalised bare CR/LF: never the end */
    D_MID,     /* inside a line */
    D_CR,      /* a CR seen, not yet delivered: CRLF or bare CR? */
    D_DOT,     /* "." at D_BOL, dropped: stuffing or the end? */
    D_DOTX,    /* "." at D_BOLX */
    D_DOTCR,   /* "." CR at D_BOL: LF ends the message */
    D_DOTCRX   /* "." CR at D_BOLX: LF ends only that line */
};

/* Helo state. */
enum { HELO_NONE = 0, HELO_HELO = 1, HELO_EHLO = 2 };

/* The message of the transaction, and which command opens it. Named, not
 * inferred from chunk sizes: "BDAT 0" is a BDAT message too (RFC 3030 2),
 * and taking it for DATA would read the next chunk as dot-terminated text
 * and run what follows a <CRLF>.<CRLF> in it as commands. */
enum {
    MSG_NONE = 0, /* no message open: envelope only, or the message ended
                     (on_data_end accepted it, or on_data_abort ran) */
    MSG_DATA,     /* DATA accepted (354): text until <CRLF>.<CRLF> */
    MSG_BDAT      /* the first BDAT accepted: chunks until BDAT LAST */
};

/* The transaction (RFC 5321 3.3): from an accepted MAIL to its end;
 * sess_tx_reset clears it in one go. */
typedef struct sess_tx {
    size_t rcpt_count, rcpt_tried;
    uint64_t decl_size;     /* MAIL's SIZE= */
    unsigned char in_mail;  /* MAIL accepted */
    unsigned char body;     /* MAIL's BODY=: 0, 7, 8 or 9 (BINARYMIME) */
    unsigned char msg;      /* MSG_*: the message open in this transaction */
    unsigned char smtputf8; /* MAIL's SMTPUTF8 */
} sess_tx;

/* A decision the host deferred (LLSMTP_CB_PENDING), and what applying
 * it will need: the command's argument kept in line[], MAIL's parameters. */
typedef struct sess_pend {
    size_t arg_len;         /* the decision's argument, kept in line[] */
    size_t arg_off;         /* ... at this offset */
    size_t rv_len;          /* the command's argument (on_reply), in line[] */
    uint64_t size;          /* MAIL's SIZE=, BODY= and SMTPUTF8 until the */
    unsigned char body;     /* decision (then sess_tx) */
    unsigned char utf8;
    unsigned char ehlo;     /* HELO's decision is for EHLO or LHLO */
    unsigned char kind;     /* enum llsmtp_pending: 0 when none */
    unsigned char rv_kept;  /* a deferral's rv_arg is rv_keep */
    unsigned char msg_cmd;  /* MSG_DATA or MSG_BDAT: whose on_data_start
                               decision is being made */
} sess_pend;

/* AUTH (RFC 4954): the exchange and its outcome. */
typedef struct sess_auth {
    char *user;             /* SESS_AUTH_USER_MAX bytes when AUTH is on */
    size_t user_len;        /* AUTH LOGIN's user name, between lines */
    unsigned failures, step;
    unsigned char authenticated, state, is_step;
    char mech[SESS_MECH_MAX + 1];
} sess_auth;

/* The message being read (DATA or BDAT chunks). */
typedef struct sess_msgdata {
    uint64_t size;          /* octets of the message so far */
    unsigned char state;    /* D_*: the DATA scanner */
    unsigned char abort;    /* LLSMTP_ABORT_* once abandoned, else 0 */
    unsigned char bare_cr;  /* what the bare-line-end refusal names */
} sess_msgdata;

/* The BDAT chunk being read (RFC 3030). */
typedef struct sess_bdat {
    uint64_t left;          /* octets of the current chunk still to come */
    uint64_t size;          /* size of the current chunk */
    unsigned char last;     /* BDAT ... LAST */
    unsigned char discard;  /* refused: read and dropped */
} sess_bdat;

/* LMTP (RFC 2033 4.2): the message decision, replayed per recipient. */
typedef struct sess_lmtp {
    size_t next;              /* next recipient to reply for */
    size_t text_len, id_len;  /* the decision's text and id, in line[] */
    int code;
    char enh[12];
    unsigned char active, is_default;
} sess_lmtp;

struct llsmtp_server {
    const llsmtp_config *cfg;
    const llsmtp_callbacks *cb;
    void *user;
    const char *failed_cb;
    char *line;           /* line buffer, cfg->max_line bytes */
    char *out;            /* output queue */
    size_t line_cap, line_len;
    size_t out_cap, out_start, out_end;
    size_t reserve;       /* free output needed before a command is read */
    size_t greet_left;    /* greeting bytes not yet consumed (sync check) */
    unsigned errors, rcpt_rejects;
    llsmtp_ip client;     /* for the relay policy; family 0 = unknown */
    uint16_t client_port;
    uint16_t proxy_skip;  /* v2 header bytes past the addresses, skipped */
    signed char rcpt_verdict;
    unsigned char tls_active;
    unsigned char phase, helo;
    unsigned char in_cb, failed;
    unsigned char discarding, sync_wait;
    sess_tx tx;
    sess_pend pend;
    sess_auth auth;
    sess_msgdata data;
    sess_bdat bdat;
    sess_lmtp lmtp;
    /* What the next queued reply answers, for on_reply: verb (static
     * text), the command's argument (valid while its line is being
     * handled, or copied into line[] across a deferral) and phase. */
    const char *rv_verb;
    llsmtp_span rv_arg;
    unsigned char rv_phase;
    /* rv_arg's own copy when its line is gone by the reply (a BDAT chunk's
     * size and LAST) or may be overwritten by decoded credentials (AUTH's
     * mechanism): at most 20 digits and " LAST", or a 20-character name */
    unsigned char rv_keep_len;
    char rv_keep[SESS_RV_KEEP];
};

/* The one place the phase changes. Entering TLS_WAIT (after the 220 to
 * STARTTLS) or PROXY (before the greeting) empties the line buffer: what
 * was read before does not count (CVE-2011-0411), and the PROXY header
 * is read into it. */
static void
sess_enter(llsmtp_server *s, int phase)
{
    s->phase = (unsigned char)phase;
    if (phase == PH_TLS_WAIT || phase == PH_PROXY) {
        s->line_len = 0;
        s->discarding = 0;
    }
}

/* The first BDAT chunk of this transaction was accepted: its message
 * goes on in chunks until BDAT LAST (RFC 3030 2), DATA and RCPT are
 * refused meanwhile. */
static int
sess_in_bdat(const llsmtp_server *s)
{
    return s->tx.msg == MSG_BDAT;
}

/* The next line answers a 334 (RFC 4954 4), not a command. */
static int
sess_in_auth(const llsmtp_server *s)
{
    return s->auth.state != AUTH_NONE;
}

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

/* Calls a deciding callback with the re-entrancy guard set. */
#define SESS_CALL(s, rcvar, expr)                                            \
    do {                                                                     \
        (s)->in_cb = 1;                                                      \
        (rcvar) = (expr);                                                    \
        (s)->in_cb = 0;                                                      \
    } while (0)


/* ---- configuration and memory ----------------------------------------- */

void
llsmtp_config_init(llsmtp_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof *cfg);
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
}

/* Every extension and flag this version knows. */
#define SESS_EXT_ALL ((unsigned)LLSMTP_EXT_ETRN * 2u - 1u)
#define SESS_FLAG_ALL ((unsigned)LLSMTP_CFG_LMTP * 2u - 1u)

/* The hostname goes verbatim into the greeting, EHLO, 221 and 421: a
 * domain (RFC 5321 4.1.2) or an address literal, nothing that could
 * start another reply line. */
static int
sess_cfg_hostname_ok(const char *h, size_t n)
{
    uint8_t a[16];
    if (n > 2 && h[0] == '[' && h[n - 1] == ']') {
        if (n > 7 && llsmtp__ieq(h + 1, "ipv6:", 5))
            return llsmtp_ipv6_parse(h + 6, n - 7, a) == LLSMTP_OK;
        return llsmtp_ipv4_parse(h + 1, n - 2, a) == LLSMTP_OK;
    }
    return llsmtp_domain_check(h, n, 0) == LLSMTP_OK;
}

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

static size_t sess_mech_next_cfg(const llsmtp_config *cfg, size_t pos,
                                 llsmtp_span *tok);

static const char *
sess_cfg_why(const llsmtp_config *cfg)
{
    size_t n, i;
    if (cfg == NULL)
        return "config: NULL";
    if (cfg->hostname == NULL)
        return "hostname: NULL";
    n = strlen(cfg->hostname);
    if (n == 0 || n > 255)
        return "hostname: empty or longer than 255 octets";
    if (!sess_cfg_hostname_ok(cfg->hostname, n))
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
    if (cfg->extensions & LLSMTP_EXT_AUTH) {
        const char *why = sess_cfg_mechs_why(cfg->auth_mechanisms);
        llsmtp_span tok;
        if (why != NULL)
            return why;
        if (sess_mech_next_cfg(cfg, 0, &tok) == 0)
            return "auth_mechanisms: none can be offered (only PLAIN and "
                   "LOGIN run without callbacks->on_auth_step)";
        if (cfg->max_auth_line < 512 || cfg->max_auth_line > (size_t)1 << 20)
            return "max_auth_line: outside 512..1048576";
    }
#ifdef LLSMTP_NO_RELAY
    if (cfg->relay != NULL) /* compiled out: refuse rather than relay */
        return "relay: built with LLSMTP_NO_RELAY";
#endif
    return NULL;
}

int
llsmtp_config_check(const llsmtp_config *cfg, const char **why)
{
    const char *w = sess_cfg_why(cfg);
    if (why != NULL)
        *why = w;
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

size_t
llsmtp_server_size(const llsmtp_config *cfg)
{
    if (!sess_cfg_ok(cfg))
        return 0;
    return SESS_ALIGN(sizeof(llsmtp_server)) +
           SESS_ALIGN(sess_line_cap(cfg)) + SESS_ALIGN(sess_out_cap(cfg)) +
           sess_auth_area(cfg);
}

static void
sess_clear(llsmtp_server *s)
{
    const llsmtp_config *cfg = s->cfg;
    void *user = s->user;
    char *base = (char *)s;
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->user = user;
    s->cb = cfg->callbacks != NULL ? cfg->callbacks : &sess_no_callbacks;
    s->line = base + SESS_ALIGN(sizeof(llsmtp_server));
    s->line_cap = sess_line_cap(cfg);
    s->out = s->line + SESS_ALIGN(s->line_cap);
    s->out_cap = sess_out_cap(cfg);
    s->auth.user = sess_auth_area(cfg)
                       ? s->out + SESS_ALIGN(s->out_cap)
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
    sess_clear(s);
    return s;
}

static void sess_auth_wipe(llsmtp_server *s);

int
llsmtp_server_reset(llsmtp_server *s)
{
    if (s == NULL)
        return LLSMTP_E_INVAL;
    if (s->in_cb)
        return LLSMTP_E_REENTRANT;
    sess_auth_wipe(s); /* nothing of the old client survives a reset */
    sess_clear(s);
    return LLSMTP_OK;
}

/* ---- output queue ------------------------------------------------------ */

static size_t
sess_out_free(const llsmtp_server *s)
{
    return s->out_cap - (s->out_end - s->out_start);
}

/* Makes the free space contiguous at the end of the queue. */
static char *
sess_out_tail(llsmtp_server *s, size_t *avail)
{
    if (s->out_start > 0) {
        size_t used = s->out_end - s->out_start;
        memmove(s->out, s->out + s->out_start, used);
        s->out_start = 0;
        s->out_end = used;
    }
    *avail = s->out_cap - s->out_end;
    return s->out + s->out_end;
}

static int sess_fail(llsmtp_server *s, const char *cb, int err);

/* The next replies are not caused by a client line (on_reply verb "-"). */
static void
sess_rv_session(llsmtp_server *s)
{
    s->rv_verb = "-";
    s->rv_arg.p = NULL;
    s->rv_arg.n = 0;
    s->rv_phase = LLSMTP_RI_SESSION;
}

/* The next replies answer message data (a chunk, or the message). A
 * BDAT chunk's reply gives its BDAT line's argument, which sess_bdat_end
 * kept in rv_keep; DATA has none. */
static void
sess_rv_data(llsmtp_server *s, int phase, int is_bdat)
{
    s->rv_verb = is_bdat ? "BDAT" : "DATA";
    s->rv_arg.p = is_bdat ? s->rv_keep : NULL;
    s->rv_arg.n = is_bdat ? s->rv_keep_len : 0;
    s->rv_phase = (unsigned char)phase;
}

/* on_reply's argument is a copy in rv_keep (n <= SESS_RV_KEEP). */
static void
sess_rv_keep(llsmtp_server *s, const char *p, size_t n)
{
    memcpy(s->rv_keep, p, n);
    s->rv_keep_len = (unsigned char)n;
    s->rv_arg.p = s->rv_keep;
    s->rv_arg.n = n;
}

/* Tells on_reply about the reply just queued at w[0..n): "ddd" SP or
 * "-", the enhanced code when printed, the first line's text. Read back
 * from the queue, so it is what the client gets. */
static void
sess_report(llsmtp_server *s, int code, const char *enh, const char *w,
            size_t n)
{
    llsmtp_reply_info ri;
    const char *cr = (const char *)memchr(w, '\r', n);
    size_t end = cr != NULL ? (size_t)(cr - w) : n, start = 4;
    unsigned char in_cb = s->in_cb;
    if (enh != NULL)
        start += strlen(enh) + 1;
    if (start > end)
        start = end;
    ri.verb = s->rv_verb != NULL ? s->rv_verb : "";
    ri.arg = s->rv_arg;
    if (ri.arg.p == NULL)
        ri.arg.p = "";
    ri.code = code;
    ri.enhanced = enh != NULL ? enh : "";
    ri.text.p = w + start;
    ri.text.n = end - start;
    ri.phase = s->rv_phase;
    ri.rcpt = s->lmtp.active && s->rv_phase == LLSMTP_RI_MESSAGE
                  ? (long)s->lmtp.next
                  : -1;
    s->in_cb = 1; /* an observer: feed/resume from here is refused */
    s->cb->on_reply(s, &ri);
    s->in_cb = in_cb;
}

/* Queues one reply. enh is printed only when ENHANCEDSTATUSCODES is on. */
static int
/* NOLINTNEXTLINE(misc-no-recursion): ends at the failed flag */
sess_put(llsmtp_server *s, int code, const char *enh,
         const llsmtp_span *parts, size_t np)
{
    size_t avail, w;
    char *tail = sess_out_tail(s, &avail);
    if (!(s->cfg->extensions & LLSMTP_EXT_ENHANCEDSTATUS) ||
        (enh != NULL && enh[0] == '\0'))
        enh = NULL;
    w = llsmtp__reply_write(tail, avail, code, enh, parts, np);
    if (w == 0)
        return sess_fail(s, NULL, LLSMTP_E_BUFFER);
    s->out_end += w;
    if (s->cb->on_reply != NULL)
        sess_report(s, code, enh, tail, w);
    return LLSMTP_OK;
}

/* Queues a reply whose text is one C string. */
static int
sess_say(llsmtp_server *s, int code, const char *enh, const char *text)
{
    llsmtp_span sp;
    sp.p = text;
    sp.n = strlen(text);
    return sess_put(s, code, enh, &sp, 1);
}

/* Queues "code enh <hostname> text" (221, 421). */
static int
/* NOLINTNEXTLINE(misc-no-recursion): ends at the failed flag */
sess_say_host(llsmtp_server *s, int code, const char *enh, const char *text)
{
    llsmtp_span sp[3];
    sp[0].p = s->cfg->hostname;
    sp[0].n = strlen(s->cfg->hostname);
    sp[1].p = " ";
    sp[1].n = 1;
    sp[2].p = text;
    sp[2].n = strlen(text);
    return sess_put(s, code, enh, sp, 3);
}

const char *
llsmtp_server_output(const llsmtp_server *s, size_t *len)
{
    if (s == NULL) {
        if (len != NULL)
            *len = 0;
        return NULL;
    }
    if (len != NULL)
        *len = s->out_end - s->out_start;
    return s->out + s->out_start;
}

void
llsmtp_server_consume(llsmtp_server *s, size_t n)
{
    size_t have;
    if (s == NULL)
        return;
    have = s->out_end - s->out_start;
    if (n > have)
        n = have;
    s->out_start += n;
    if (s->out_start == s->out_end)
        s->out_start = s->out_end = 0;
    s->greet_left = s->greet_left > n ? s->greet_left - n : 0;
}

void
llsmtp_server_input_drained(llsmtp_server *s)
{
    if (s != NULL)
        s->sync_wait = 0;
}

/* ---- failures and callbacks ---------------------------------------------- */

static int sess_msg_open(const llsmtp_server *s);
static int sess_abort(llsmtp_server *s, int why);
static int sess_settle(llsmtp_server *s, int rc);

/* The session fails for good (sticky until reset): a callback failed or
 * left a reply it may not give, or a reply did not fit. The host is going
 * to close, so the open message is abandoned here, once (never one that
 * on_data_end accepted), and the client hears 421 before the close
 * (RFC 5321 3.8) instead of silence. The first failure is the one
 * llsmtp_server_failed_cb reports: on_data_abort failing in turn, or the
 * 421 not fitting, comes back here and changes nothing. */
static int
/* NOLINTNEXTLINE(misc-no-recursion): ends at the failed flag */
sess_fail(llsmtp_server *s, const char *cb, int err)
{
    if (s->failed)
        return err;
    s->failed = 1;
    s->failed_cb = cb;
    if (sess_msg_open(s))
        (void)sess_abort(s, LLSMTP_ABORT_CLOSED);
    sess_rv_session(s);
    if (s->phase != PH_CLOSED)
        (void)sess_say_host(s, 421, "4.3.0",
                            "Service not available, closing transmission "
                            "channel");
    sess_enter(s, PH_CLOSED);
    return err;
}

const char *
llsmtp_server_failed_cb(const llsmtp_server *s)
{
    return s != NULL ? s->failed_cb : NULL;
}

static void
sess_default_reply(llsmtp_reply *r, int code, const char *enh)
{
    size_t n = strlen(enh);
    r->code = code;
    memcpy(r->enhanced, enh, n + 1);
    r->text[0] = '\0';
    r->text_len = 0;
    r->has_text_ = 0;
    r->id[0] = '\0';
    r->id_len = 0;
    r->is_default_ = 1;
}

/* Checks a reply a callback left us. */
static int
sess_reply_ok(const llsmtp_reply *r)
{
    if (r->code < 200 || r->code > 599)
        return 0;
    if (!llsmtp__enhanced_check(r->code, r->enhanced, strlen(r->enhanced)))
        return 0;
    if (r->text_len > LLSMTP_REPLY_TEXT_MAX ||
        r->id_len > LLSMTP_REPLY_ID_MAX)
        return 0;
    return 1;
}

static void
sess_tx_reset(llsmtp_server *s)
{
    memset(&s->tx, 0, sizeof s->tx); /* MSG_NONE too */
}

/* The client ended the transaction (RSET, HELO/EHLO/LHLO again): a
 * message the host opened is abandoned first, so that what it stored is
 * never continued by the next transaction's data. */
static int
sess_tx_end(llsmtp_server *s)
{
    if (sess_msg_open(s)) {
        int rc = sess_abort(s, LLSMTP_ABORT_RESET);
        if (rc < 0)
            return rc;
    }
    sess_tx_reset(s);
    return LLSMTP_OK;
}

/* Counts one more of something the session tolerates only so often; at
 * the limit (0: none) queues 421 with text and closes. */
static int
sess_count(llsmtp_server *s, unsigned *count, unsigned limit,
           const char *text)
{
    int rc;
    ++*count;
    if (limit == 0 || *count < limit)
        return LLSMTP_OK;
    rc = sess_say_host(s, 421, "4.7.0", text);
    if (rc < 0)
        return rc;
    sess_enter(s, PH_CLOSED);
    return LLSMTP_CLOSE;
}

/* Counts a client error. */
static int
sess_error(llsmtp_server *s)
{
    return sess_count(s, &s->errors, s->cfg->max_errors,
                      "Too many errors, closing connection");
}

/* Queues a library-generated error reply and counts it. */
static int
sess_err(llsmtp_server *s, int code, const char *enh, const char *text)
{
    int rc = sess_say(s, code, enh, text);
    if (rc < 0)
        return rc;
    return sess_error(s);
}

static int sess_lmtp_start(llsmtp_server *s, const llsmtp_reply *r);
static int sess_bdat_fits(llsmtp_server *s);

static void
sess_u64(char *buf, size_t cap, uint64_t v, llsmtp_span *out)
{
    size_t i = cap;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v && i > 0);
    out->p = buf + i;
    out->n = cap - i;
}

/* ---- AUTH helpers ------------------------------------------------------ */

/* Mechanisms llsmtp handles itself; others need on_auth_step. */
static int
sess_mech_builtin(const char *p, size_t n)
{
    return llsmtp__iequal(p, n, "PLAIN", 5) || llsmtp__iequal(p, n, "LOGIN", 5);
}

/* The one rule for which mechanisms are offered, used by the
 * configuration check, EHLO, HELP and the AUTH command alike: the names
 * of cfg->auth_mechanisms that something can run, PLAIN and LOGIN here,
 * any other through on_auth_step. Finds the next one from pos; returns
 * the position after it, or 0 when there is none. */
static size_t
sess_mech_next_cfg(const llsmtp_config *cfg, size_t pos, llsmtp_span *tok)
{
    const char *m = cfg->auth_mechanisms;
    size_t n, i;
    int step = cfg->callbacks != NULL && cfg->callbacks->on_auth_step != NULL;
    if (m == NULL)
        return 0;
    n = strlen(m);
    for (;;) {
        while (pos < n && m[pos] == ' ')
            pos++;
        if (pos >= n)
            return 0;
        i = pos;
        while (i < n && m[i] != ' ')
            i++;
        tok->p = m + pos;
        tok->n = i - pos;
        if (tok->n <= SESS_MECH_MAX &&
            (step || sess_mech_builtin(tok->p, tok->n)))
            return i;
        pos = i;
    }
}

static size_t
sess_mech_next(const llsmtp_server *s, size_t pos, llsmtp_span *tok)
{
    return sess_mech_next_cfg(s->cfg, pos, tok);
}

/* RFC 4954 4 and 538: PLAIN/LOGIN only over TLS unless the host allows
 * cleartext. RFC 4954 3: the AUTH keyword's parameter is the list of
 * mechanisms, so with none to list there is no AUTH at all (the
 * configuration check refuses that; this keeps EHLO, HELP and the AUTH
 * command agreeing even so). */
static int
sess_auth_offered(const llsmtp_server *s)
{
    llsmtp_span tok;
    return (s->cfg->extensions & LLSMTP_EXT_AUTH) &&
           (s->tls_active || (s->cfg->flags & LLSMTP_CFG_AUTH_CLEARTEXT)) &&
           sess_mech_next(s, 0, &tok) != 0;
}

static int
sess_mech_offered(const llsmtp_server *s, const char *p, size_t n)
{
    llsmtp_span tok;
    size_t pos = 0;
    while ((pos = sess_mech_next(s, pos, &tok)) != 0)
        if (llsmtp__iequal(tok.p, tok.n, p, n))
            return 1;
    return 0;
}

/* on_reply's argument for an AUTH line: the mechanism alone, never the
 * initial response after it (RFC 4954 4: a credential), and only when it
 * names a mechanism this configuration offers, since a client that
 * misplaces its response ("AUTH  <base64>") puts a credential where the
 * name goes. A copy, because decoding the response may overwrite the
 * line buffer the name is in. */
static void
sess_rv_auth(llsmtp_server *s, llsmtp_span arg)
{
    size_t m = 0;
    while (m < arg.n && arg.p[m] != ' ')
        m++;
    if (m > 0 && m <= SESS_MECH_MAX && sess_mech_offered(s, arg.p, m))
        sess_rv_keep(s, arg.p, m);
}

/* Reply text is gathered as spans before the writer folds it. The array
 * is bounded and sized from what can go in (below); an append past its
 * end is dropped and remembered, never written. */
typedef struct sess_parts {
    llsmtp_span *v;
    size_t n, cap;
    int full;
    char num[24]; /* digits a part may point to (SIZE's value) */
} sess_parts;

static void
sess_part(sess_parts *ps, const char *p, size_t n)
{
    if (ps->n >= ps->cap) {
        ps->full = 1;
        return;
    }
    ps->v[ps->n].p = p;
    ps->v[ps->n].n = n;
    ps->n++;
}

static void
sess_parts_add(sess_parts *ps, const char *str)
{
    sess_part(ps, str, strlen(str));
}

/* How a decision kind's default text is put together (sess_kinds). */
enum {
    RK_ARG = 1,    /* pre, the decision's argument, post */
    RK_HOST = 2,   /* the hostname first */
    RK_ID = 4,     /* the queue id and a space first, when the host set one */
    RK_NO_ENH = 8  /* no enhanced code, even with ENHANCEDSTATUSCODES */
};

/* A row of sess_kinds: a deciding callback and its default reply. */
typedef struct sess_kind_row {
    int kind;          /* enum llsmtp_pending: the row's own index */
    const char *cb;    /* the callback, as llsmtp_server_failed_cb names it */
    int code;          /* the default reply */
    const char *enh;
    const char *pre;   /* its text (NULL: the code's generic text) */
    const char *post;
    unsigned shape;    /* RK_* */
    /* builds the default text instead, when there is more to it */
    void (*build)(const llsmtp_server *s, sess_parts *ps, llsmtp_span arg);
    /* what an applied decision changes, after its reply (or NULL) */
    int (*apply)(llsmtp_server *s, const llsmtp_reply *r);
} sess_kind_row;

static const sess_kind_row *sess_kind(int kind);

/* One source for what this session offers: the EHLO keywords (RFC 5321
 * 4.1.1.1) in the order they are listed. */
typedef struct sess_ext_row {
    unsigned ext;        /* enum llsmtp_ext bit */
    const char *keyword; /* EHLO line */
} sess_ext_row;

static const sess_ext_row sess_ext_rows[] = {
    {LLSMTP_EXT_PIPELINING, "PIPELINING"},
    {LLSMTP_EXT_SIZE, "SIZE"},
    {LLSMTP_EXT_VRFY, "VRFY"},
    {LLSMTP_EXT_HELP, "HELP"},
    {LLSMTP_EXT_ETRN, "ETRN"},
    {LLSMTP_EXT_STARTTLS, "STARTTLS"},
    {LLSMTP_EXT_AUTH, "AUTH"},
    {LLSMTP_EXT_ENHANCEDSTATUS, "ENHANCEDSTATUSCODES"},
    {LLSMTP_EXT_8BITMIME, "8BITMIME"},
    {LLSMTP_EXT_BINARYMIME, "BINARYMIME"},
    {LLSMTP_EXT_CHUNKING, "CHUNKING"},
    {LLSMTP_EXT_DSN, "DSN"},
    {LLSMTP_EXT_SMTPUTF8, "SMTPUTF8"}};

#define SESS_EXT_ROWS (sizeof sess_ext_rows / sizeof sess_ext_rows[0])

/* Parts of the largest EHLO reply: "<host> Hello <arg>", "\n" and the
 * keyword per row, " <n>" after SIZE, and per AUTH line (plain and the
 * legacy "AUTH=") " MECH" for each mechanism. */
#define SESS_EHLO_PARTS                                                      \
    (3 + 2 * SESS_EXT_ROWS + 2 + 2 * (1 + 2 * (size_t)LLSMTP_AUTH_MECHS_MAX))

/* Whether an extension is on offer now: STARTTLS until TLS is active,
 * AUTH where sess_auth_offered says, BINARYMIME only with CHUNKING. */
static int
sess_ext_on(const llsmtp_server *s, unsigned ext)
{
    unsigned cfg = s->cfg->extensions;
    if (!(cfg & ext))
        return 0;
    if (ext == LLSMTP_EXT_STARTTLS)
        return !s->tls_active;
    if (ext == LLSMTP_EXT_AUTH)
        return sess_auth_offered(s);
    if (ext == LLSMTP_EXT_BINARYMIME)
        return (cfg & LLSMTP_EXT_CHUNKING) != 0;
    return 1;
}

/* Appends "\nAUTH MECH MECH" to the EHLO parts (at most
 * LLSMTP_AUTH_MECHS_MAX tokens, which the configuration check enforces). */
static void
sess_auth_list(const llsmtp_server *s, sess_parts *ps, const char *head)
{
    llsmtp_span tok;
    size_t pos = 0, k = 0;
    sess_parts_add(ps, head);
    while ((pos = sess_mech_next(s, pos, &tok)) != 0 &&
           k < LLSMTP_AUTH_MECHS_MAX) {
        if (k++ > 0 || head[strlen(head) - 1] != '=')
            sess_part(ps, " ", 1);
        sess_part(ps, tok.p, tok.n);
    }
}

static void
sess_auth_wipe(llsmtp_server *s)
{
    llsmtp__wipe(s->line, s->line_cap);
    if (s->auth.user != NULL)
        llsmtp__wipe(s->auth.user, SESS_AUTH_USER_MAX);
    s->auth.user_len = 0;
    s->line_len = 0;
}

/* The greeting's default text: "<host> ESMTP|LMTP [banner]". */
static void
sess_text_greeting(const llsmtp_server *s, sess_parts *ps, llsmtp_span arg)
{
    (void)arg;
    sess_parts_add(ps, s->cfg->hostname);
    sess_parts_add(ps, (s->cfg->flags & LLSMTP_CFG_LMTP) ? " LMTP" : " ESMTP");
    if (s->cfg->banner != NULL && s->cfg->banner[0]) {
        sess_parts_add(ps, " ");
        sess_parts_add(ps, s->cfg->banner);
    }
}

/* HELO's "<host> Hello <arg>"; EHLO (and LHLO) add a line per keyword
 * on offer, from sess_ext_rows. */
static void
sess_text_ehlo(const llsmtp_server *s, sess_parts *ps, llsmtp_span arg)
{
    size_t i;
    sess_parts_add(ps, s->cfg->hostname);
    sess_parts_add(ps, " Hello ");
    sess_part(ps, arg.p, arg.n);
    for (i = 0; s->pend.ehlo && i < SESS_EXT_ROWS; i++) {
        const sess_ext_row *row = &sess_ext_rows[i];
        if (!sess_ext_on(s, row->ext))
            continue;
        if (row->ext == LLSMTP_EXT_AUTH) {
            sess_auth_list(s, ps, "\nAUTH");
            if (s->cfg->flags & LLSMTP_CFG_AUTH_LEGACY)
                sess_auth_list(s, ps, "\nAUTH=");
            continue;
        }
        sess_parts_add(ps, "\n");
        sess_parts_add(ps, row->keyword);
        if (row->ext == LLSMTP_EXT_SIZE && s->cfg->max_size) {
            llsmtp_span v;
            sess_parts_add(ps, " ");
            sess_u64(ps->num, sizeof ps->num, s->cfg->max_size, &v);
            sess_part(ps, v.p, v.n);
        }
    }
}

/* The library's default text for a decision: for builder rows the
 * function's parts, otherwise [hostname] [queue id " "] pre [arg post],
 * or the code's generic text when the row has none. */
static void sess_text_greeting(const llsmtp_server *s, sess_parts *ps,
                               llsmtp_span arg);
static void sess_text_ehlo(const llsmtp_server *s, sess_parts *ps,
                           llsmtp_span arg);
static void sess_text_help(const llsmtp_server *s, sess_parts *ps,
                           llsmtp_span arg);

/* Writes the library's default reply for a decision kind. */
static int
sess_put_default(llsmtp_server *s, int kind, const llsmtp_reply *r,
                 llsmtp_span arg)
{
    const sess_kind_row *k = sess_kind(kind);
    llsmtp_span sp[SESS_EHLO_PARTS];
    sess_parts ps;

    ps.v = sp;
    ps.n = 0;
    ps.cap = sizeof sp / sizeof sp[0];
    ps.full = 0;
    if (k->build != NULL) {
        k->build(s, &ps, arg);
    } else {
        if (k->shape & RK_HOST)
            sess_parts_add(&ps, s->cfg->hostname);
        if ((k->shape & RK_ID) && r->id_len) {
            sess_part(&ps, r->id, r->id_len);
            sess_parts_add(&ps, " ");
        }
        sess_parts_add(&ps, k->pre != NULL
                                ? k->pre
                                : llsmtp__reply_generic_text(r->code));
        if (k->shape & RK_ARG) {
            sess_part(&ps, arg.p, arg.n);
            sess_parts_add(&ps, k->post);
        }
    }
    if (ps.full)
        return sess_fail(s, NULL, LLSMTP_E_BUFFER); /* cannot happen */
    return sess_put(s, r->code, (k->shape & RK_NO_ENH) ? NULL : r->enhanced,
                    sp, ps.n);
}

/* A recipient was refused for good: at the limit (a dictionary attack or
 * a relay prober) queue 421 and close. */
static int
sess_rcpt_refused(llsmtp_server *s)
{
    return sess_count(s, &s->rcpt_rejects, s->cfg->max_rcpt_rejects,
                      "Too many rejected recipients, closing connection");
}

/* "334 <base64>" on one line, never folded (RFC 4954 4: a SASL
 * continuation is a single line). */
static int
sess_put_challenge(llsmtp_server *s, const char *data, size_t n)
{
    size_t avail, w;
    char *tail = sess_out_tail(s, &avail);
    if (llsmtp_b64_encoded_len(n) + 6 > avail)
        return sess_fail(s, NULL, LLSMTP_E_BUFFER);
    memcpy(tail, "334 ", 4); /* NOLINT(bugprone-not-null-terminated-result): wire bytes, not a string */
    if (llsmtp_b64_encode(data, n, tail + 4, avail - 6, &w) != LLSMTP_OK)
        return sess_fail(s, NULL, LLSMTP_E_BUFFER);
    tail[4 + w] = '\r';
    tail[5 + w] = '\n';
    s->out_end += w + 6;
    if (s->cb->on_reply != NULL)
        sess_report(s, 334, NULL, tail, w + 6);
    s->auth.state = AUTH_STEP;
    return LLSMTP_OK;
}

/* Applies a decision: queues its reply and changes state. */
/* Writes a decision's reply: the library's default, or the host's. */
static int
sess_put_reply(llsmtp_server *s, int kind, const llsmtp_reply *r,
               llsmtp_span arg)
{
    int rc;
    if (r->is_default_) {
        rc = sess_put_default(s, kind, r, arg);
    } else {
        llsmtp_span sp[3];
        size_t np = 0;
        const char *enh = r->enhanced;
        if (r->id_len && r->code / 100 == 2) { /* a queue id means success */
            sp[np].p = r->id;
            sp[np++].n = r->id_len;
            sp[np].p = " ";
            sp[np++].n = 1;
        }
        if (r->has_text_) {
            sp[np].p = r->text;
            sp[np++].n = r->text_len;
        } else {
            sp[np].p = llsmtp__reply_generic_text(r->code);
            sp[np].n = strlen(sp[np].p);
            np++;
        }
        rc = sess_put(s, r->code, enh, sp, np);
    }
    return rc;
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
    int rc = sess_tx_end(s);
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
            return sess_bdat_fits(s);
    } else if (s->pend.msg_cmd == MSG_BDAT) {
        /* refused, but the chunk is on its way: read and drop it */
        sess_tx_reset(s);
        s->bdat.discard = 1;
        sess_enter(s, PH_BDAT);
    }
    return LLSMTP_OK;
}

static int
sess_apply_data_end(llsmtp_server *s, const llsmtp_reply *r)
{
    (void)r;
    sess_tx_reset(s);
    sess_enter(s, PH_CMD);
    return LLSMTP_OK;
}

static int
sess_apply_rset(llsmtp_server *s, const llsmtp_reply *r)
{
    (void)r;
    return sess_tx_end(s);
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
            int rc = sess_say_host(s, 421, "4.7.0",
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
    {LLSMTP_PENDING_NONE, "none", 250, "2.0.0", NULL, NULL, 0, NULL, NULL},
    {LLSMTP_PENDING_CONNECT, "on_connect", 220, "", NULL, NULL, RK_NO_ENH,
     sess_text_greeting, sess_apply_connect},
    {LLSMTP_PENDING_HELO, "on_helo", 250, "", NULL, NULL, RK_NO_ENH,
     sess_text_ehlo, sess_apply_helo},
    {LLSMTP_PENDING_MAIL, "on_mail_from", 250, "2.1.0", "Sender <", "> OK",
     RK_ARG, NULL, sess_apply_mail},
    {LLSMTP_PENDING_RCPT, "on_rcpt", 250, "2.1.5", "Recipient <", "> OK",
     RK_ARG, NULL, sess_apply_rcpt},
    {LLSMTP_PENDING_DATA_START, "on_data_start", 354, "",
     "Start mail input; end with <CRLF>.<CRLF>", NULL, RK_NO_ENH, NULL,
     sess_apply_data_start},
    {LLSMTP_PENDING_DATA, "on_data", 250, "2.0.0", NULL, NULL, 0, NULL,
     NULL},
    {LLSMTP_PENDING_DATA_END, "on_data_end", 250, "2.6.0",
     "Queued mail for delivery", NULL, RK_ID, NULL, sess_apply_data_end},
    {LLSMTP_PENDING_RSET, "on_rset", 250, "2.0.0", "Flushed", NULL, 0, NULL,
     sess_apply_rset},
    {LLSMTP_PENDING_VRFY, "on_vrfy", 252, "2.5.2",
     "Cannot VRFY user, but will accept message and attempt delivery", NULL,
     0, NULL, NULL},
    {LLSMTP_PENDING_EXPN, "on_expn", 502, "5.5.1", "EXPN not available",
     NULL, 0, NULL, NULL},
    {LLSMTP_PENDING_HELP, "on_help", 214, "2.0.0", NULL, NULL, 0,
     sess_text_help, NULL},
    {LLSMTP_PENDING_TURN, "on_turn", 502, "5.5.1", "TURN not available",
     NULL, 0, NULL, NULL},
    {LLSMTP_PENDING_QUIT, "on_quit", 221, "2.0.0",
     " Service closing transmission channel", NULL, RK_HOST, NULL,
     sess_apply_quit},
    /* refused unless the host says yes (RFC 4954 6: 535 5.7.8); the text
     * is the code's own (235 or 535: sess_normalize) */
    {LLSMTP_PENDING_AUTH, "on_auth", 535, "5.7.8", NULL, NULL, 0, NULL,
     sess_apply_auth},
    {LLSMTP_PENDING_STARTTLS, "on_starttls", 220, "2.0.0",
     "Ready to start TLS", NULL, 0, NULL, sess_apply_starttls},
    {LLSMTP_PENDING_ETRN, "on_etrn", 250, "2.0.0", "Queuing for node ",
     " started", RK_ARG, NULL, NULL}};

#define SESS_KINDS (sizeof sess_kinds / sizeof sess_kinds[0])

static const sess_kind_row *
sess_kind(int kind)
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

static int
sess_apply(llsmtp_server *s, int kind, const llsmtp_reply *r,
           llsmtp_span arg)
{
    const sess_kind_row *k = sess_kind(kind);
    int rc, cls = r->code / 100;
    if (kind == LLSMTP_PENDING_AUTH && r->code == 334)
        return sess_put_challenge(s, r->text, r->text_len);
    if (kind == LLSMTP_PENDING_DATA_END && (s->cfg->flags & LLSMTP_CFG_LMTP))
        return sess_lmtp_start(s, r); /* RFC 2033 4.2: a reply each */
    if (kind == LLSMTP_PENDING_DATA_START && cls == 3 &&
        s->pend.msg_cmd == MSG_BDAT)
        rc = LLSMTP_OK; /* BDAT answers after its chunk, not with 354 */
    else
        rc = sess_put_reply(s, kind, r, arg);
    if (rc < 0)
        return rc;
    if (k->apply != NULL && (rc = k->apply(s, r)) != LLSMTP_OK)
        return rc;
    if (r->code == 421)
        sess_enter(s, PH_CLOSED);
    if (s->phase == PH_TLS_WAIT)
        return LLSMTP_TLS;
    return s->phase == PH_CLOSED ? LLSMTP_CLOSE : LLSMTP_OK;
}

static void sess_kind_default(int kind, llsmtp_reply *r);
static int sess_bdat_end(llsmtp_server *s);

/* A 354 belongs to DATA only; DATA cannot be answered with 2xx; 334
 * continues only a host-driven SASL exchange. */
static int
sess_code_fits(const llsmtp_server *s, int kind, int code)
{
    if (kind == LLSMTP_PENDING_DATA_START)
        return code / 100 != 2;
    if (kind == LLSMTP_PENDING_AUTH && code == 334)
        return s->auth.is_step;
    return code / 100 != 3;
}

/* A host that edited r->code directly, without llsmtp_reply_set(), gets a
 * generic text and enhanced code instead of the default's. */
static void
sess_normalize(int kind, llsmtp_reply *r)
{
    llsmtp_reply d;
    if (!r->is_default_)
        return;
    sess_kind_default(kind, &d);
    if (d.code == r->code)
        return;
    if (kind == LLSMTP_PENDING_AUTH && r->code == 235) {
        memcpy(r->enhanced, "2.7.0", 6); /* the default success reply */
        return;
    }
    r->is_default_ = 0;
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

/* ---- LMTP (RFC 2033) ---------------------------------------------------- */

/* Replies for the accepted recipients, from lmtp_next on; stops with
 * LLSMTP_BLOCKED when the output queue is full (the next feed goes on). */
static int
sess_lmtp_emit(llsmtp_server *s)
{
    while (s->lmtp.next < s->tx.rcpt_count) {
        llsmtp_reply r;
        llsmtp_span none = {NULL, 0};
        int rc, cbrc = LLSMTP_CB_OK;
        if (sess_out_free(s) < s->reserve)
            return LLSMTP_BLOCKED;
        memset(&r, 0, sizeof r);
        r.code = s->lmtp.code;
        memcpy(r.enhanced, s->lmtp.enh, sizeof r.enhanced);
        r.is_default_ = s->lmtp.is_default;
        r.id_len = s->lmtp.id_len;
        memcpy(r.id, s->line, s->lmtp.id_len);
        r.text_len = s->lmtp.text_len;
        r.has_text_ = s->lmtp.text_len != 0;
        memcpy(r.text, s->line + s->lmtp.id_len, s->lmtp.text_len);
        if (s->lmtp.code / 100 == 2 && s->cb->on_lmtp_rcpt != NULL) {
            SESS_CALL(s, cbrc, s->cb->on_lmtp_rcpt(s, s->lmtp.next, &r));
            if (cbrc != LLSMTP_CB_OK)
                return sess_fail(s, "on_lmtp_rcpt", LLSMTP_E_CALLBACK);
            sess_normalize(LLSMTP_PENDING_DATA_END, &r);
            if (!sess_reply_ok(&r) || r.code / 100 == 3)
                return sess_fail(s, "on_lmtp_rcpt", LLSMTP_E_CALLBACK);
        }
        rc = sess_put_reply(s, LLSMTP_PENDING_DATA_END, &r, none);
        if (rc < 0)
            return rc;
        s->lmtp.next++;
    }
    s->lmtp.active = 0;
    sess_tx_reset(s);
    sess_enter(s, PH_CMD);
    return LLSMTP_OK;
}

/* Keeps the message decision (its text and id copied into the free line
 * buffer) and starts the per-recipient replies. */
static int
sess_lmtp_start(llsmtp_server *s, const llsmtp_reply *r)
{
    /* The message is decided (on_data_end accepted it, or it was already
     * abandoned): it is no longer open, so a close while the replies wait
     * for room (BLOCKED) never aborts what the host stored. */
    s->tx.msg = MSG_NONE;
    s->lmtp.code = r->code;
    memcpy(s->lmtp.enh, r->enhanced, sizeof s->lmtp.enh);
    s->lmtp.is_default = (unsigned char)r->is_default_;
    s->lmtp.id_len = 0;
    s->lmtp.text_len = 0;
    if (r->id_len && r->id_len <= s->line_cap) {
        memcpy(s->line, r->id, r->id_len);
        s->lmtp.id_len = r->id_len;
    }
    if (!r->is_default_ && r->has_text_ &&
        s->lmtp.id_len + r->text_len <= s->line_cap) {
        memmove(s->line + s->lmtp.id_len, r->text, r->text_len);
        s->lmtp.text_len = r->text_len;
    }
    /* text too long to keep: the generic text of the code is used */
    s->lmtp.next = 0;
    s->lmtp.active = 1;
    return sess_lmtp_emit(s);
}

static const char *
sess_cb_name(const llsmtp_server *s, int kind)
{
    if (kind == LLSMTP_PENDING_AUTH && s->auth.is_step)
        return "on_auth_step";
    return sess_kind(kind)->cb;
}

/* Handles a deciding callback's return: apply, defer or fail. */
static int
sess_decided(llsmtp_server *s, int kind, int cbrc, llsmtp_reply *r,
             llsmtp_span arg)
{
    if (cbrc == LLSMTP_CB_PENDING) {
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
    if (cbrc != LLSMTP_CB_OK)
        return sess_fail(s, sess_cb_name(s, kind), LLSMTP_E_CALLBACK);
    sess_normalize(kind, r);
    if (!sess_reply_ok(r) || !sess_code_fits(s, kind, r->code))
        return sess_fail(s, sess_cb_name(s, kind), LLSMTP_E_CALLBACK);
    return sess_apply(s, kind, r, arg);
}


/* ---- start, resume, queries ---------------------------------------------- */

/* on_connect and the greeting. */
static int
sess_greet(llsmtp_server *s)
{
    llsmtp_reply r;
    llsmtp_span none = {NULL, 0};
    int cbrc = LLSMTP_CB_OK;
    sess_enter(s, PH_NEW);
    s->rv_verb = "";
    s->rv_phase = LLSMTP_RI_GREETING;
    sess_default_reply(&r, 220, "");
    if (s->cb->on_connect != NULL)
        SESS_CALL(s, cbrc, s->cb->on_connect(s, &r));
    return sess_decided(s, LLSMTP_PENDING_CONNECT, cbrc, &r, none);
}

int
llsmtp_server_start(llsmtp_server *s)
{
    if (s == NULL)
        return LLSMTP_E_INVAL;
    if (s->in_cb)
        return LLSMTP_E_REENTRANT;
    if (s->phase != PH_NEW || s->pend.kind)
        return LLSMTP_E_STATE;
    if (s->cfg->flags & LLSMTP_CFG_PROXY) {
        /* the greeting waits for the real client address */
        sess_enter(s, PH_PROXY);
        return LLSMTP_OK;
    }
    return sess_greet(s);
}

static void
sess_kind_default(int kind, llsmtp_reply *r)
{
    sess_default_reply(r, sess_kind(kind)->code, sess_kind(kind)->enh);
}

static int sess_over_size(const llsmtp_server *s);

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
    if (!s->pend.kind)
        return LLSMTP_E_STATE;
    kind = s->pend.kind;
    if (kind == LLSMTP_PENDING_DATA) {
        s->pend.kind = 0;
        /* the piece that paused was the part of the message that fitted
         * under max_size: the rest is not delivered (sess_emit) */
        if (sess_over_size(s) && !s->data.abort) {
            int rc = sess_abort(s, LLSMTP_ABORT_SIZE);
            if (rc != LLSMTP_OK)
                return sess_settle(s, rc);
        }
        /* on_data paused on a chunk's last octet: the chunk is complete
         * and its reply is due now (RFC 3030 2); the client sends nothing
         * more before it reads that reply, so no later feed would come to
         * finish it. The octet was passed only with room for the reply. */
        if (s->phase == PH_BDAT && s->bdat.left == 0)
            return sess_settle(s, sess_bdat_end(s));
        return LLSMTP_OK;
    }
    sess_kind_default(kind, &r);
    if (decision != NULL && decision->code != 0) {
        r = *decision;
        sess_normalize(kind, &r);
        if (!sess_reply_ok(&r) || !sess_code_fits(s, kind, r.code))
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
        int rc = sess_apply(s, kind, &r, arg);
        if (rc == LLSMTP_OK && s->phase == PH_BDAT && s->bdat.left == 0)
            rc = sess_bdat_end(s); /* "BDAT 0 LAST" after a deferral */
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
llsmtp_server_set_client(llsmtp_server *s, const llsmtp_ip *ip)
{
    if (s == NULL)
        return;
    if (ip != NULL && (ip->family == 4 || ip->family == 6))
        s->client = *ip;
    else
        memset(&s->client, 0, sizeof s->client);
}

void
llsmtp_server_set_authenticated(llsmtp_server *s, int yes)
{
    if (s != NULL)
        s->auth.authenticated = yes != 0;
}

int
llsmtp_server_client(const llsmtp_server *s, llsmtp_ip *ip, uint16_t *port)
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
    } else if (s == NULL || s->phase == PH_CLOSED ||
               s->phase == PH_TLS_WAIT || s->failed || s->pend.kind) {
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

/* A message the host opened (on_data_start accepted) that has neither
 * been accepted by on_data_end nor abandoned: the one on_data_abort is
 * owed if the session ends now. */
static int
sess_msg_open(const llsmtp_server *s)
{
    return s->tx.msg != MSG_NONE && !s->data.abort;
}

/* Tells the host to drop a message that will not be completed. */
static int
/* NOLINTNEXTLINE(misc-no-recursion): ends at the failed flag */
sess_abort(llsmtp_server *s, int why)
{
    int cbrc = LLSMTP_CB_OK;
    if (s->data.abort)
        return LLSMTP_OK;
    s->data.abort = (unsigned char)why;
    if (s->cb->on_data_abort != NULL)
        SESS_CALL(s, cbrc, s->cb->on_data_abort(s, why));
    if (cbrc != LLSMTP_CB_OK)
        return sess_fail(s, "on_data_abort", LLSMTP_E_CALLBACK);
    return LLSMTP_OK;
}

/* Every path that closes the session (QUIT, a 421 from an error limit,
 * an HTTP verb, the sync check, a host's 421) ends here before feed or
 * resume returns: a message the host opened and that is still open is
 * owed its on_data_abort (CLOSED), exactly once. */
static int
sess_settle(llsmtp_server *s, int rc)
{
    if (s->phase == PH_CLOSED && !s->failed && sess_msg_open(s)) {
        int a = sess_abort(s, LLSMTP_ABORT_CLOSED);
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
    int rc;
    if (s->in_cb)
        return LLSMTP_E_REENTRANT;
    if (s->phase == PH_CLOSED)
        return LLSMTP_CLOSE;
    if (sess_msg_open(s) && (rc = sess_abort(s, LLSMTP_ABORT_CLOSED)) < 0)
        return rc;
    s->pend.kind = 0; /* a late decision has no one to go to */
    sess_auth_wipe(s); /* also a half-sent AUTH line, AUTH on or not */
    sess_rv_session(s);
    /* The queue may be full of replies the client never read; then the
     * connection just closes. */
    if (sess_out_free(s) >= s->reserve / 2 && !s->failed) {
        if (r != NULL) {
            llsmtp_span none = {NULL, 0};
            (void)sess_apply(s, LLSMTP_PENDING_NONE, r, none);
        } else {
            (void)sess_say_host(s, 421, enh, text);
        }
    }
    sess_enter(s, PH_CLOSED);
    return LLSMTP_CLOSE;
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
        copy.is_default_ = 0;
        if (!sess_reply_ok(&copy) || copy.code < 400)
            return LLSMTP_E_REPLY;
        r = &copy;
    }
    return sess_close_with(s, r, "4.3.2", "Service shutting down");
}

int
llsmtp_server_eof(llsmtp_server *s)
{
    int rc;
    if (s == NULL)
        return LLSMTP_E_INVAL;
    if (s->in_cb)
        return LLSMTP_E_REENTRANT;
    if (sess_msg_open(s) && (rc = sess_abort(s, LLSMTP_ABORT_CLOSED)) < 0)
        return rc;
    sess_auth_wipe(s); /* a half-sent AUTH line may hold a password */
    s->pend.kind = 0;
    sess_enter(s, PH_CLOSED);
    return LLSMTP_CLOSE;
}

/* ---- commands ------------------------------------------------------------ */

static llsmtp_span
sess_trim(const char *p, size_t n)
{
    llsmtp_span sp;
    while (n && (*p == ' ' || *p == '\t')) {
        p++;
        n--;
    }
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    sp.p = p;
    sp.n = n;
    return sp;
}

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
    int cbrc = LLSMTP_CB_OK;
    if (arg.n == 0 || sess_has_ctl(arg))
        return sess_err(s, 501, "5.5.4",
                        is_ehlo ? "Syntax: EHLO hostname"
                                : "Syntax: HELO hostname");
    s->pend.ehlo = (unsigned char)is_ehlo;
    sess_default_reply(&r, 250, "");
    if (s->cb->on_helo != NULL)
        SESS_CALL(s, cbrc, s->cb->on_helo(s, arg, is_ehlo, &r));
    return sess_decided(s, LLSMTP_PENDING_HELO, cbrc, &r, arg);
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
    int cbrc = LLSMTP_CB_OK;
    *done = 0;
    sess_default_reply(&r, 555, "5.5.4");
    if (s->cb->on_param != NULL)
        SESS_CALL(s, cbrc, s->cb->on_param(s, is_rcpt, p, &r));
    if (cbrc != LLSMTP_CB_OK || !sess_reply_ok(&r) || r.code / 100 == 3)
        return sess_fail(s, "on_param", LLSMTP_E_CALLBACK);
    if (r.code / 100 == 2)
        return LLSMTP_OK;
    *done = 1;
    if (r.is_default_ && r.code == 555) {
        sp[0].p = "Unsupported parameter ";
        sp[0].n = strlen(sp[0].p);
        sp[1] = p->key;
        return sess_put(s, r.code, r.enhanced, sp, 2);
    }
    r.is_default_ = 0;
    return sess_apply(s, LLSMTP_PENDING_NONE, &r, p->key);
}

/* Checks for duplicate keywords (RFC 1870 and friends: one each). */
static int
sess_params_dup(const llsmtp_params *ps)
{
    size_t i, j;
    for (i = 0; i < ps->n; i++)
        for (j = i + 1; j < ps->n; j++)
            if (llsmtp__iequal(ps->v[i].key.p, ps->v[i].key.n,
                               ps->v[j].key.p, ps->v[j].key.n))
                return 1;
    return 0;
}

static int
sess_key_is(const llsmtp_param *p, const char *lower)
{
    size_t n = strlen(lower);
    return p->key.n == n && llsmtp__ieq(p->key.p, lower, n);
}

/* Parses "FROM:" / "TO:", the path and the parameters. On a client
 * error queues the reply and sets *done; returns OK, CLOSE or <0. */
static int
sess_parse_path_cmd(llsmtp_server *s, llsmtp_span arg, int is_rcpt,
                    llsmtp_path *path, llsmtp_params *params, int *done)
{
    const char *kw = is_rcpt ? "to:" : "from:";
    size_t kwn = strlen(kw), end = 0, i;
    unsigned opts = is_rcpt ? LLSMTP_PARSE_ALLOW_POSTMASTER
                            : LLSMTP_PARSE_ALLOW_NULL;
    int rc;

    if (s->cfg->extensions & LLSMTP_EXT_SMTPUTF8)
        opts |= LLSMTP_PARSE_UTF8; /* RFC 6531; checked against the
                                      transaction by the caller */
    *done = 1;
    if (arg.n < kwn || !llsmtp__ieq(arg.p, kw, kwn))
        return sess_err(s, 501, "5.5.4",
                        is_rcpt ? "Syntax: RCPT TO:<address>"
                                : "Syntax: MAIL FROM:<address>");
    i = kwn;
    /* Tolerate spaces after the colon, as most servers do. */
    while (i < arg.n && arg.p[i] == ' ')
        i++;
    rc = llsmtp_path_parse(arg.p + i, arg.n - i, opts, path, &end);
    if (rc == LLSMTP_OK && i + end < arg.n && arg.p[i + end] != ' ')
        rc = LLSMTP_E_SYNTAX;
    if (rc != LLSMTP_OK)
        return sess_err(s, 501, is_rcpt ? "5.1.3" : "5.1.7",
                        is_rcpt ? "Bad recipient address syntax"
                                : "Bad sender address syntax");
    i += end;
    rc = llsmtp_params_parse(arg.p + i, arg.n - i, opts & LLSMTP_PARSE_UTF8,
                             params, &end);
    if (rc != LLSMTP_OK || sess_params_dup(params))
        return sess_err(s, 501, "5.5.4",
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
    int rc, done, cbrc = LLSMTP_CB_OK;
    unsigned ext = s->cfg->extensions;

    if ((s->cfg->flags & LLSMTP_CFG_REQUIRE_TLS) && !s->tls_active)
        return sess_say(s, 530, "5.7.0",
                        "Must issue a STARTTLS command first");
    if ((s->cfg->flags & LLSMTP_CFG_REQUIRE_AUTH) && !s->auth.authenticated)
        return sess_say(s, 530, "5.7.0", "Authentication required");
    if (s->tx.in_mail)
        return sess_err(s, 503, "5.5.1", "Error: nested MAIL command");
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
                return sess_err(s, 501, "5.5.4", "Bad SIZE value");
            for (k = 0; k < p->value.n; k++) {
                unsigned d = (unsigned)(unsigned char)p->value.p[k] - '0';
                if (d > 9)
                    return sess_err(s, 501, "5.5.4", "Bad SIZE value");
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
                return sess_say(s, 552, "5.3.4",
                                "Message size exceeds fixed maximum message "
                                "size");
            }
            s->pend.size = v;
        } else if ((ext & LLSMTP_EXT_AUTH) && sess_key_is(p, "auth")) {
            /* RFC 4954 5: AUTH=<> or AUTH=xtext; the host decides. A
             * bare "AUTH" has no value at all: a syntax error. */
            if (p->value.p == NULL)
                return sess_err(s, 501, "5.5.4", "Bad AUTH value");
            if (!(p->value.n == 2 && p->value.p[0] == '<' &&
                  p->value.p[1] == '>') &&
                llsmtp_xtext_decode(p->value.p, p->value.n, NULL, 0, NULL) !=
                    LLSMTP_OK)
                return sess_err(s, 501, "5.5.4", "Bad AUTH value");
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
                return sess_err(s, 501, "5.5.4", "Bad BODY value");
        } else if ((ext & LLSMTP_EXT_SMTPUTF8) && sess_key_is(p, "smtputf8")) {
            if (p->value.p != NULL) /* RFC 6531 3.4: no value */
                return sess_err(s, 501, "5.5.4", "SMTPUTF8 takes no value");
            s->pend.utf8 = 1;
        } else if ((ext & LLSMTP_EXT_DSN) && sess_key_is(p, "ret")) {
            /* RFC 3461 4.3 */
            if (!(p->value.n == 4 && llsmtp__ieq(p->value.p, "full", 4)) &&
                !(p->value.n == 4 && llsmtp__ieq(p->value.p, "hdrs", 4)))
                return sess_err(s, 501, "5.5.4", "Bad RET value");
        } else if ((ext & LLSMTP_EXT_DSN) && sess_key_is(p, "envid")) {
            /* RFC 3461 4.4: xtext, at most 100 characters */
            if (p->value.n == 0 || p->value.n > 100 ||
                llsmtp_xtext_decode(p->value.p, p->value.n, NULL, 0, NULL) !=
                    LLSMTP_OK)
                return sess_err(s, 501, "5.5.4", "Bad ENVID value");
        } else {
            rc = sess_unknown_param(s, 0, p, &done);
            if (done || rc != LLSMTP_OK)
                return rc;
        }
    }
    if ((path.flags & LLSMTP_PATH_UTF8) && !s->pend.utf8)
        return sess_say(s, 553, "5.6.7",
                        "Non-ASCII address requires the SMTPUTF8 parameter");
    sess_default_reply(&r, 250, "2.1.0");
    if (s->cb->on_mail_from != NULL)
        SESS_CALL(s, cbrc, s->cb->on_mail_from(s, &path, &params, &r));
    return sess_decided(s, LLSMTP_PENDING_MAIL, cbrc, &r, path.mailbox);
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
    rc = sess_put(s, code, enh, sp, np);
    if (rc < 0)
        return rc;
    s->tx.rcpt_tried++;
    if (s->cb->on_relay_denied != NULL) {
        int cbrc;
        SESS_CALL(s, cbrc, s->cb->on_relay_denied(s, path));
        if (cbrc != LLSMTP_CB_OK)
            return sess_fail(s, "on_relay_denied", LLSMTP_E_CALLBACK);
    }
    if (code / 100 == 5)
        return sess_rcpt_refused(s);
    return LLSMTP_OK;
}
#endif

static int
sess_cmd_rcpt(llsmtp_server *s, llsmtp_span arg)
{
    llsmtp_path path;
    llsmtp_params params;
    llsmtp_reply r;
    size_t i;
    int rc, done, cbrc = LLSMTP_CB_OK;

    if (!s->tx.in_mail)
        return sess_err(s, 503, "5.5.1", "Error: need MAIL command");
    /* RFC 3030 2: the recipients come before the data. Once a chunk has
     * been accepted the recipient list is fixed (in LMTP it is also the
     * number of replies due at the end). */
    if (sess_in_bdat(s))
        return sess_err(s, 503, "5.5.1", "Error: BDAT in progress");
    rc = sess_parse_path_cmd(s, arg, 1, &path, &params, &done);
    if (done || rc != LLSMTP_OK)
        return rc;
    if (s->tx.rcpt_count >= s->cfg->max_rcpt) {
        /* RFC 5321 4.5.3.1.10: 452 lets the client retry the rest in
         * another transaction (4.5.3.1.8); a client pipelining more than
         * max_rcpt recipients does nothing wrong, so this is not counted
         * towards max_errors. */
        s->tx.rcpt_tried++;
        return sess_say(s, 452, "4.5.3", "Too many recipients");
    }
    if ((path.flags & LLSMTP_PATH_UTF8) && !s->tx.smtputf8)
        return sess_say(s, 553, "5.6.7",
                        "Non-ASCII address requires the SMTPUTF8 parameter");
    for (i = 0; i < params.n; i++) {
        const llsmtp_param *p = &params.v[i];
        if ((s->cfg->extensions & LLSMTP_EXT_DSN) && sess_key_is(p, "notify")) {
            unsigned fl;
            if (llsmtp_dsn_notify_parse(p->value.p != NULL ? p->value.p : "",
                                        p->value.n, &fl) != LLSMTP_OK)
                return sess_err(s, 501, "5.5.4", "Bad NOTIFY value");
            continue;
        }
        if ((s->cfg->extensions & LLSMTP_EXT_DSN) && sess_key_is(p, "orcpt")) {
            llsmtp_span at, xt;
            if (llsmtp_dsn_orcpt_parse(p->value.p != NULL ? p->value.p : "",
                                       p->value.n, &at, &xt) != LLSMTP_OK)
                return sess_err(s, 501, "5.5.4", "Bad ORCPT value");
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
        if (v == LLSMTP_RELAY_DENIED)
            return sess_relay_denied(s, &path);
        s->rcpt_verdict = (signed char)v;
    }
#endif
    sess_default_reply(&r, 250, "2.1.5");
    if (s->cb->on_rcpt != NULL)
        SESS_CALL(s, cbrc, s->cb->on_rcpt(s, &path, &params, &r));
    return sess_decided(s, LLSMTP_PENDING_RCPT, cbrc, &r, path.mailbox);
}

static int
sess_cmd_data(llsmtp_server *s, llsmtp_span arg)
{
    llsmtp_reply r;
    llsmtp_span none = {NULL, 0};
    int cbrc = LLSMTP_CB_OK;
    (void)arg; /* none: CMD_NO_ARG */
    if (!s->tx.in_mail)
        return sess_err(s, 503, "5.5.1", "Error: need MAIL command");
    /* RFC 3030 3: DATA and BDAT do not mix; BINARYMIME needs BDAT */
    if (sess_in_bdat(s))
        return sess_err(s, 503, "5.5.1", "Error: BDAT in progress");
    if (s->tx.body == 9)
        return sess_err(s, 503, "5.5.1", "Error: BINARYMIME requires BDAT");
    if (s->tx.rcpt_count == 0) {
        /* RFC 5321 3.3: 554 when every RCPT failed, 503 when none came. */
        if (s->tx.rcpt_tried)
            return sess_err(s, 554, "5.5.1", "Error: no valid recipients");
        return sess_err(s, 503, "5.5.1", "Error: need RCPT command");
    }
    s->pend.msg_cmd = MSG_DATA;
    sess_default_reply(&r, 354, "");
    if (s->cb->on_data_start != NULL)
        SESS_CALL(s, cbrc, s->cb->on_data_start(s, &r));
    return sess_decided(s, LLSMTP_PENDING_DATA_START, cbrc, &r, none);
}

static int
sess_cmd_rset(llsmtp_server *s, llsmtp_span arg)
{
    llsmtp_reply r;
    llsmtp_span none = {NULL, 0};
    int cbrc = LLSMTP_CB_OK;
    (void)arg;
    sess_kind_default(LLSMTP_PENDING_RSET, &r);
    if (s->cb->on_rset != NULL)
        SESS_CALL(s, cbrc, s->cb->on_rset(s, &r));
    return sess_decided(s, LLSMTP_PENDING_RSET, cbrc, &r, none);
}

/* RFC 5321 4.1.1.9: a parameter, if any, is ignored. */
static int
sess_cmd_noop(llsmtp_server *s, llsmtp_span arg)
{
    (void)arg;
    return sess_say(s, 250, "2.0.0", "OK");
}

static int
sess_cmd_quit(llsmtp_server *s, llsmtp_span arg)
{
    llsmtp_reply r;
    llsmtp_span none = {NULL, 0};
    int cbrc = LLSMTP_CB_OK;
    (void)arg;
    sess_kind_default(LLSMTP_PENDING_QUIT, &r);
    if (s->cb->on_quit != NULL)
        SESS_CALL(s, cbrc, s->cb->on_quit(s, &r));
    return sess_decided(s, LLSMTP_PENDING_QUIT, cbrc, &r, none);
}

static int
sess_cmd_vrfy(llsmtp_server *s, llsmtp_span arg)
{
    llsmtp_reply r;
    llsmtp_span none = {NULL, 0};
    int cbrc = LLSMTP_CB_OK;
    sess_kind_default(LLSMTP_PENDING_VRFY, &r);
    if (s->cb->on_vrfy != NULL)
        SESS_CALL(s, cbrc, s->cb->on_vrfy(s, arg, &r));
    return sess_decided(s, LLSMTP_PENDING_VRFY, cbrc, &r, none);
}

static int
sess_cmd_expn(llsmtp_server *s, llsmtp_span arg)
{
    llsmtp_reply r;
    llsmtp_span none = {NULL, 0};
    int cbrc = LLSMTP_CB_OK;
    sess_kind_default(LLSMTP_PENDING_EXPN, &r);
    if (s->cb->on_expn != NULL)
        SESS_CALL(s, cbrc, s->cb->on_expn(s, arg, &r));
    return sess_decided(s, LLSMTP_PENDING_EXPN, cbrc, &r, none);
}

static int
sess_cmd_help(llsmtp_server *s, llsmtp_span arg)
{
    llsmtp_reply r;
    llsmtp_span none = {NULL, 0};
    int cbrc = LLSMTP_CB_OK;
    sess_kind_default(LLSMTP_PENDING_HELP, &r);
    if (s->cb->on_help != NULL)
        SESS_CALL(s, cbrc, s->cb->on_help(s, arg, &r));
    return sess_decided(s, LLSMTP_PENDING_HELP, cbrc, &r, none);
}

/* RFC 821 4.1.1 (and RFC 1985 5): TURN takes no argument */
static int
sess_cmd_turn(llsmtp_server *s, llsmtp_span arg)
{
    llsmtp_reply r;
    llsmtp_span none = {NULL, 0};
    int cbrc = LLSMTP_CB_OK;
    (void)arg;
    sess_kind_default(LLSMTP_PENDING_TURN, &r);
    if (s->cb->on_turn != NULL)
        SESS_CALL(s, cbrc, s->cb->on_turn(s, &r));
    return sess_decided(s, LLSMTP_PENDING_TURN, cbrc, &r, none);
}

/* Known SMTP commands this session does not offer (RFC 5321 4.2.4: 502,
 * not 500). */
static int
sess_cmd_notimpl(llsmtp_server *s, llsmtp_span arg)
{
    (void)arg;
    return sess_err(s, 502, "5.5.1", "Error: command not implemented");
}

/* Cross-protocol attacks: an HTTP request sent to port 25. */
static int
sess_cmd_http(llsmtp_server *s, llsmtp_span arg)
{
    int rc = sess_say_host(s, 421, "4.7.0",
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
        return sess_err(s, 502, "5.5.1", "Error: command not recognized");
    return sess_err(s, 500, "5.5.1", "Error: command not recognized");
}

static int sess_data_end(llsmtp_server *s);
static int sess_emit(llsmtp_server *s, const char *p, size_t n);

/* ---- AUTH (RFC 4954) and STARTTLS (RFC 3207) --------------------------- */

static int sess_auth_login_user(llsmtp_server *s, llsmtp_span data);

/* Decodes a client response into the line buffer (in place when it is
 * already there). "=" is an empty response. Returns 0 or -1. */
static int
sess_auth_decode(llsmtp_server *s, llsmtp_span in, llsmtp_span *out)
{
    size_t n = 0;
    if (in.n == 1 && in.p[0] == '=') {
        out->p = s->line;
        out->n = 0;
        return 0;
    }
    if (llsmtp_b64_decode(in.p, in.n, s->line, s->line_cap, &n) !=
        LLSMTP_OK)
        return -1;
    out->p = s->line;
    out->n = n;
    return 0;
}

/* Ends an exchange with a library error reply (not a failed attempt). */
static int
sess_auth_abort(llsmtp_server *s, int code, const char *enh,
                const char *text)
{
    s->auth.state = AUTH_NONE;
    sess_auth_wipe(s);
    return sess_err(s, code, enh, text);
}

static int
sess_auth_prompt(llsmtp_server *s, int state, const char *b64)
{
    llsmtp_span sp;
    s->auth.state = (unsigned char)state;
    sp.p = b64;
    sp.n = strlen(b64);
    return sess_put(s, 334, NULL, &sp, 1);
}

/* Hands PLAIN/LOGIN credentials to on_auth; wipes them afterwards. */
static int
sess_auth_decide(llsmtp_server *s, const llsmtp_auth *cred)
{
    llsmtp_reply r;
    llsmtp_span none = {NULL, 0};
    int cbrc = LLSMTP_CB_OK, rc;
    s->auth.is_step = 0;
    sess_kind_default(LLSMTP_PENDING_AUTH, &r);
    if (s->cb->on_auth != NULL)
        SESS_CALL(s, cbrc, s->cb->on_auth(s, cred, &r));
    sess_auth_wipe(s);
    rc = sess_decided(s, LLSMTP_PENDING_AUTH, cbrc, &r, none);
    return rc;
}

static int
sess_auth_plain(llsmtp_server *s, llsmtp_span data)
{
    llsmtp_auth cred;
    if (llsmtp_sasl_plain_parse(data.p, data.n, &cred) != LLSMTP_OK)
        return sess_auth_abort(s, 501, "5.5.2", "Invalid AUTH PLAIN data");
    return sess_auth_decide(s, &cred);
}

/* One step of a host-driven mechanism. */
static int
sess_auth_hoststep(llsmtp_server *s, llsmtp_span data, int has_data)
{
    llsmtp_auth_step st;
    llsmtp_reply r;
    llsmtp_span none = {NULL, 0};
    int cbrc = LLSMTP_CB_OK;
    s->auth.is_step = 1;
    st.mechanism.p = s->auth.mech;
    st.mechanism.n = strlen(s->auth.mech);
    st.data = data;
    st.step = s->auth.step++;
    st.has_data = has_data;
    sess_kind_default(LLSMTP_PENDING_AUTH, &r);
    SESS_CALL(s, cbrc, s->cb->on_auth_step(s, &st, &r));
    sess_auth_wipe(s);
    return sess_decided(s, LLSMTP_PENDING_AUTH, cbrc, &r, none);
}

static int
sess_cmd_auth(llsmtp_server *s, llsmtp_span arg)
{
    size_t m = 0;
    llsmtp_span mech, ir, data = {NULL, 0};
    int has_ir, is_plain, is_login;
    if (s->auth.authenticated)
        return sess_err(s, 503, "5.5.1", "Error: already authenticated");
    if (s->tx.in_mail)
        return sess_err(s, 503, "5.5.1",
                        "Error: MAIL transaction in progress");
    if (!sess_auth_offered(s))
        return sess_say(s, 538, "5.7.11",
                        "Encryption required for requested authentication "
                        "mechanism");
    while (m < arg.n && arg.p[m] != ' ')
        m++;
    mech.p = arg.p;
    mech.n = m;
    ir = sess_trim(arg.p + m, arg.n - m);
    has_ir = ir.n > 0;
    if (mech.n == 0)
        return sess_err(s, 501, "5.5.4",
                        "Syntax: AUTH mechanism [initial-response]");
    if (!sess_mech_offered(s, mech.p, mech.n))
        return sess_err(s, 504, "5.5.4", "Unrecognized authentication type");
    /* Decide before decoding: the response is decoded into the line
     * buffer, which may be where this line (and the name) still is. */
    is_plain = llsmtp__iequal(mech.p, mech.n, "PLAIN", 5);
    is_login = llsmtp__iequal(mech.p, mech.n, "LOGIN", 5);
    memcpy(s->auth.mech, mech.p, mech.n);
    s->auth.mech[mech.n] = '\0';
    if (has_ir && sess_auth_decode(s, ir, &data) != 0)
        return sess_auth_abort(s, 501, "5.5.2", "Cannot decode response");
    if (is_plain) {
        if (!has_ir)
            return sess_auth_prompt(s, AUTH_PLAIN_WAIT, "");
        return sess_auth_plain(s, data);
    }
    if (is_login) {
        if (!has_ir)
            return sess_auth_prompt(s, AUTH_LOGIN_USER,
                                    llsmtp_sasl_login_user_prompt);
        /* an initial response is the user name */
        return sess_auth_login_user(s, data);
    }
    s->auth.step = 0;
    return sess_auth_hoststep(s, data, has_ir);
}

static int
sess_auth_login_user(llsmtp_server *s, llsmtp_span data)
{
    if (data.n == 0 || data.n > SESS_AUTH_USER_MAX ||
        !llsmtp__sasl_name_ok(data.p, data.n))
        return sess_auth_abort(s, 501, "5.5.2", "Invalid user name");
    memcpy(s->auth.user, data.p, data.n);
    s->auth.user_len = data.n;
    llsmtp__wipe(s->line, s->line_cap);
    return sess_auth_prompt(s, AUTH_LOGIN_PASS,
                            llsmtp_sasl_login_pass_prompt);
}

/* A line answering a 334 (RFC 4954 4). */
static int
sess_auth_line(llsmtp_server *s, const char *line, size_t len)
{
    llsmtp_span in, data;
    in.p = line;
    in.n = len;
    if (len == 1 && line[0] == '*')
        return sess_auth_abort(s, 501, "5.0.0", "Authentication cancelled");
    if (len == 0) {
        data.p = s->line;
        data.n = 0;
    } else if (sess_auth_decode(s, in, &data) != 0) {
        return sess_auth_abort(s, 501, "5.5.2", "Cannot decode response");
    }
    switch (s->auth.state) {
    case AUTH_PLAIN_WAIT:
        s->auth.state = AUTH_NONE;
        return sess_auth_plain(s, data);
    case AUTH_LOGIN_USER:
        return sess_auth_login_user(s, data);
    case AUTH_LOGIN_PASS: {
        llsmtp_auth cred;
        s->auth.state = AUTH_NONE;
        if (data.n == 0 || !llsmtp__sasl_name_ok(data.p, data.n))
            return sess_auth_abort(s, 501, "5.5.2", "Invalid password");
        memset(&cred, 0, sizeof cred);
        cred.mechanism.p = "LOGIN";
        cred.mechanism.n = 5;
        cred.authzid.p = "";
        cred.user.p = s->auth.user;
        cred.user.n = s->auth.user_len;
        cred.password = data;
        return sess_auth_decide(s, &cred);
    }
    default:
        s->auth.state = AUTH_NONE;
        return sess_auth_hoststep(s, data, 1);
    }
}

static int
sess_cmd_starttls(llsmtp_server *s, llsmtp_span arg)
{
    llsmtp_reply r;
    llsmtp_span none = {NULL, 0};
    int cbrc = LLSMTP_CB_OK;
    (void)arg; /* none: CMD_NO_ARG */
    if (s->tls_active)
        return sess_err(s, 503, "5.5.1", "Error: TLS already active");
    if (s->tx.in_mail)
        return sess_err(s, 503, "5.5.1",
                        "Error: MAIL transaction in progress");
    sess_kind_default(LLSMTP_PENDING_STARTTLS, &r);
    if (s->cb->on_starttls != NULL)
        SESS_CALL(s, cbrc, s->cb->on_starttls(s, &r));
    return sess_decided(s, LLSMTP_PENDING_STARTTLS, cbrc, &r, none);
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
    sess_tx_reset(s);
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

/* ---- BDAT (RFC 3030) and ETRN (RFC 1985) ------------------------------- */

/* A chunk was read completely: its reply. */
static int
sess_bdat_end(llsmtp_server *s)
{
    llsmtp_span sp[2];
    char num[24];
    int rc;
    sess_enter(s, PH_CMD);
    /* the argument of the BDAT line this answers, rebuilt from what it
     * said (its digits may have had leading zeros) */
    sess_u64(num, sizeof num, s->bdat.size, &sp[0]);
    memcpy(s->rv_keep, sp[0].p, sp[0].n);
    s->rv_keep_len = (unsigned char)sp[0].n;
    if (s->bdat.last) {
        memcpy(s->rv_keep + sp[0].n, " LAST", 5);
        s->rv_keep_len = (unsigned char)(sp[0].n + 5);
    }
    sess_rv_data(s, s->bdat.last ? LLSMTP_RI_MESSAGE : LLSMTP_RI_CHUNK, 1);
    if (s->bdat.discard) {
        /* refused at the BDAT line; the reply went out then */
        s->bdat.discard = 0;
        s->bdat.size = 0;
        s->bdat.last = 0;
        return LLSMTP_OK;
    }
    if (s->bdat.last) {
        s->bdat.last = 0;
        s->bdat.size = 0;
        return sess_data_end(s); /* the message decision (RFC 3030 2) */
    }
    if (s->data.abort) {
        /* over the size limit: the transaction is over; later chunks are
         * read and refused with 503 */
        rc = sess_say(s, 552, "5.3.4",
                      "Message size exceeds fixed maximum message size");
        sess_tx_reset(s);
        s->bdat.size = 0;
        return rc;
    }
    sess_u64(num, sizeof num, s->bdat.size, &sp[0]);
    sp[1].p = " octets received";
    sp[1].n = 16;
    s->bdat.size = 0;
    return sess_put(s, 250, "2.0.0", sp, 2);
}

/* A BDAT whose chunk cannot be counted off closes the connection: the
 * client sends the chunk without waiting (RFC 3030 2), so reading on would
 * take its octets for commands. One reply refuses the BDAT, then 421, as
 * RFC 5321 3.8 has a server that must close do. */
typedef struct sess_bdat_close {
    int why;            /* on_data_abort reason for an open message */
    int code;           /* the reply to the BDAT line */
    const char *enh;
    const char *text;
    const char *closing; /* the 421 text */
} sess_bdat_close;

/* A size that is not there or not digits. */
static const sess_bdat_close sess_bdat_unparsable = {
    LLSMTP_ABORT_CLOSED, 501, "5.5.4", "Syntax: BDAT size [LAST]",
    "Error: chunk size unreadable, closing connection"};

/* A chunk size past 2^64 - 1. RFC 3030 2 puts no bound on chunk-size
 * (1*DIGIT), and a refused chunk must still be read and dropped to stay in
 * sync; a count that cannot be held cannot be counted off, and taking it
 * modulo 2^64 would read the client's octets as commands. So 552 answers
 * the BDAT (larger than any message this server takes). */
static const sess_bdat_close sess_bdat_unreadable = {
    LLSMTP_ABORT_SIZE, 552, "5.3.4",
    "Message size exceeds fixed maximum message size",
    "Error: chunk size out of range, closing connection"};

static int
sess_bdat_closing(llsmtp_server *s, const sess_bdat_close *c)
{
    int rc;
    if (sess_msg_open(s) && (rc = sess_abort(s, c->why)) < 0)
        return rc;
    rc = sess_say(s, c->code, c->enh, c->text);
    if (rc < 0)
        return rc;
    rc = sess_say_host(s, 421, "4.5.2", c->closing);
    if (rc < 0)
        return rc;
    sess_tx_reset(s);
    sess_enter(s, PH_CLOSED);
    return LLSMTP_CLOSE;
}

/* "BDAT <size> <junk>": RFC 3030 2 has the chunk read whatever the reply
 * ("the chunk ... must be read"), so its size octets are dropped and
 * never parsed as commands, and 501 answers it. The client counts this
 * chunk as failed (RFC 3030 2: the transaction should be considered
 * failed), so a message already open is abandoned (LLSMTP_ABORT_RESET)
 * rather than delivered with a hole in it. */
static int
sess_bdat_junk(llsmtp_server *s, uint64_t size)
{
    int rc;
    if (sess_in_bdat(s) && (rc = sess_tx_end(s)) < 0)
        return rc;
    s->bdat.size = size;
    s->bdat.left = size;
    s->bdat.last = 0;
    s->bdat.discard = 1;
    sess_enter(s, PH_BDAT);
    rc = sess_err(s, 501, "5.5.4", "Syntax: BDAT size [LAST]");
    if (rc != LLSMTP_OK) {
        s->bdat.discard = 0;
        s->bdat.left = 0;
        return rc;
    }
    return size == 0 ? sess_bdat_end(s) : LLSMTP_OK;
}

/* A chunk that takes the message past max_size is refused from its BDAT
 * line, whatever the reads: none of it reaches on_data, it is read and
 * dropped (RFC 3030 2) and 552 5.3.4 follows it (sess_bdat_end). */
static int
sess_bdat_fits(llsmtp_server *s)
{
    uint64_t max = s->cfg->max_size;
    if (max == 0 || s->data.abort)
        return LLSMTP_OK;
    if (s->data.size > max || s->bdat.size > max - s->data.size)
        return sess_abort(s, LLSMTP_ABORT_SIZE);
    return LLSMTP_OK;
}

static int
sess_cmd_bdat(llsmtp_server *s, llsmtp_span arg)
{
    uint64_t size = 0;
    size_t i = 0;
    int last = 0, big = 0, rc, cbrc = LLSMTP_CB_OK;
    llsmtp_span rest;
    llsmtp_reply r;
    llsmtp_span none = {NULL, 0};
    const char *err = NULL, *err_enh = "5.5.1";
    int err_code = 503;

    /* chunk-size = 1*DIGIT: leading zeros make no digit count a limit */
    while (i < arg.n && llsmtp__is_digit((unsigned char)arg.p[i])) {
        unsigned d = (unsigned)(arg.p[i] - '0');
        if (size > (UINT64_MAX - d) / 10)
            big = 1;
        else if (!big)
            size = size * 10 + d;
        i++;
    }
    rest = sess_trim(arg.p + i, arg.n - i);
    if (i == 0 || (i < arg.n && arg.p[i] != ' '))
        /* RFC 3030 2: without a size nobody knows where the chunk ends,
         * and the client sends it without waiting: reading on would take
         * its octets for commands (the smuggling class). Close. */
        return sess_bdat_closing(s, &sess_bdat_unparsable);
    if (big)
        return sess_bdat_closing(s, &sess_bdat_unreadable);
    if (rest.n && !llsmtp__iequal(rest.p, rest.n, "LAST", 4))
        /* RFC 3030 2: the chunk of a refused BDAT must still be read;
         * the size is known, so it is read and dropped */
        return sess_bdat_junk(s, size);
    last = rest.n != 0;
    s->bdat.size = size;
    s->bdat.left = size;
    s->bdat.last = (unsigned char)last;
    s->bdat.discard = 0;
    if (!s->tx.in_mail)
        err = "Error: need MAIL command";
    else if (s->tx.rcpt_count == 0 && s->tx.rcpt_tried) {
        err_code = 554;
        err = "Error: no valid recipients";
    } else if (s->tx.rcpt_count == 0)
        err = "Error: need RCPT command";
    if (err != NULL) {
        /* the chunk is still read (and dropped) to stay in sync */
        s->bdat.discard = 1;
        sess_enter(s, PH_BDAT);
        rc = sess_err(s, err_code, err_enh, err);
        if (rc != LLSMTP_OK)
            return rc;
        return size == 0 ? sess_bdat_end(s) : LLSMTP_OK;
    }
    if (!sess_in_bdat(s)) {
        /* the first chunk: the host opens the message */
        s->pend.msg_cmd = MSG_BDAT;
        sess_default_reply(&r, 354, "");
        if (s->cb->on_data_start != NULL)
            SESS_CALL(s, cbrc, s->cb->on_data_start(s, &r));
        rc = sess_decided(s, LLSMTP_PENDING_DATA_START, cbrc, &r, none);
        if (rc != LLSMTP_OK)
            return rc;
    } else {
        sess_enter(s, PH_BDAT);
        if ((rc = sess_bdat_fits(s)) != LLSMTP_OK)
            return rc;
    }
    if (s->phase == PH_BDAT && s->bdat.left == 0)
        return sess_bdat_end(s);
    return LLSMTP_OK;
}

static int
sess_cmd_etrn(llsmtp_server *s, llsmtp_span arg)
{
    llsmtp_reply r;
    int cbrc = LLSMTP_CB_OK;
    size_t k;
    if (s->tx.in_mail)
        return sess_err(s, 503, "5.5.1",
                        "Error: MAIL transaction in progress");
    /* RFC 1985: "domain", "@domain" (and subdomains), "#queue" */
    if (arg.n > 1 && arg.p[0] == '#') {
        for (k = 1; k < arg.n; k++)
            if ((unsigned char)arg.p[k] <= 0x20 ||
                (unsigned char)arg.p[k] >= 0x7f)
                break;
        if (k < arg.n)
            arg.n = 0;
    } else if (arg.n == 0 ||
               llsmtp_domain_check(arg.p + (arg.p[0] == '@'),
                                   arg.n - (arg.p[0] == '@'), 0) !=
                   LLSMTP_OK) {
        arg.n = 0;
    }
    if (arg.n == 0)
        return sess_err(s, 501, "5.5.4", "Syntax: ETRN domain");
    sess_kind_default(LLSMTP_PENDING_ETRN, &r);
    if (s->cb->on_etrn != NULL)
        SESS_CALL(s, cbrc, s->cb->on_etrn(s, arg, &r));
    return sess_decided(s, LLSMTP_PENDING_ETRN, cbrc, &r, arg);
}

/* ---- the command table -------------------------------------------------- */

/* What the dispatcher (sess_line) checks before a command's handler, in
 * this order, and what else it needs to know about a verb. */
enum {
    /* RFC 2920 3.1: last in a pipelined group, and so are the commands
     * of other extensions unless they say otherwise: STARTTLS (RFC 3207
     * 4.2), ETRN (RFC 1985 says nothing otherwise) and AUTH */
    CMD_ENDS_GROUP = 1 << 0,
    /* ... except (RFC 4954 4) with an initial response for a mechanism
     * that completes in one round trip and negotiates no security layer:
     * PLAIN and EXTERNAL (sess_ends_group) */
    CMD_ENDS_GROUP_NO_IR = 1 << 1,
    CMD_CLOSES = 1 << 2,      /* handled first, before the sync check */
    CMD_REFUSED_OK = 1 << 3,  /* answered after a 554 greeting */
    CMD_NOT_LMTP = 1 << 4,    /* 500 under LMTP */
    CMD_LMTP_ONLY = 1 << 5,   /* 502 unless LMTP */
    CMD_NEEDS_HELO = 1 << 6,  /* 503 before HELO/EHLO/LHLO */
    CMD_NEEDS_EHLO = 1 << 7,  /* 503 before EHLO/LHLO */
    CMD_NO_ARG = 1 << 8,      /* 501 with the row's syntax if an argument */
    CMD_NEEDS_ARG = 1 << 9,   /* 501 with the row's syntax if none */
    /* the argument may carry a credential (RFC 4954 4): lines up to
     * max_auth_line, and on_reply sees the mechanism only */
    CMD_SECRET = 1 << 10,
    CMD_NO_ECHO = 1 << 11,    /* on_reply gets no argument */
    CMD_HELP = 1 << 12        /* HELP lists it (when its extension is on) */
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
    {"DATA", CMD_G | CMD_NO_ARG | CMD_HELP, 0, "Syntax: DATA",
     sess_cmd_data},
    {"RSET", CMD_NO_ARG | CMD_HELP, 0, "Syntax: RSET", sess_cmd_rset},
    {"NOOP", CMD_G | CMD_HELP, 0, NULL, sess_cmd_noop},
    {"QUIT", CMD_G | CMD_REFUSED_OK | CMD_NO_ARG | CMD_HELP, 0,
     "Syntax: QUIT", sess_cmd_quit},
    {"VRFY", CMD_G | CMD_NEEDS_ARG | CMD_HELP, 0, "Syntax: VRFY address",
     sess_cmd_vrfy},
    {"HELP", CMD_HELP, 0, NULL, sess_cmd_help},
    {"ETRN", CMD_G | CMD_NEEDS_HELO | CMD_HELP, LLSMTP_EXT_ETRN, NULL,
     sess_cmd_etrn},
    {"STARTTLS", CMD_G | CMD_NO_ARG | CMD_HELP, LLSMTP_EXT_STARTTLS,
     "Syntax: STARTTLS", sess_cmd_starttls},
    {"AUTH", CMD_G | CMD_ENDS_GROUP_NO_IR | CMD_NEEDS_EHLO | CMD_SECRET |
                 CMD_HELP,
     LLSMTP_EXT_AUTH, NULL, sess_cmd_auth},
    {"BDAT", CMD_HELP, LLSMTP_EXT_CHUNKING, NULL, sess_cmd_bdat},
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

static const sess_cmd *
sess_verb(const char *v, size_t n)
{
    size_t i;
    for (i = 0; i < SESS_CMDS; i++)
        if (llsmtp__iequal(v, n, sess_cmds[i].name,
                           strlen(sess_cmds[i].name)))
            return &sess_cmds[i];
    return &sess_cmd_none;
}

#if !defined(LLSMTP_AMALGAMATION) || defined(LLSMTP_TEST_INTERNALS)
const char *
llsmtp__server_cmd_row(size_t i)
{
    return i < SESS_CMDS ? sess_cmds[i].name : NULL;
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
        if (!(c->flags & CMD_HELP) ||
            (lmtp && (c->flags & CMD_NOT_LMTP)) ||
            (!lmtp && (c->flags & CMD_LMTP_ONLY)) ||
            (c->ext != 0 && !sess_ext_on(s, c->ext)))
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
    if (!((m == 5 && llsmtp__ieq(arg.p, "plain", 5)) ||
          (m == 8 && llsmtp__ieq(arg.p, "external", 8))))
        return 1;
    return m == arg.n; /* (arg is trimmed) no initial response: 334 next */
}

/* The checks the table's flags ask for, in order; 0 when the handler
 * runs, else what the line's reply returned. */
static int
sess_cmd_refused(llsmtp_server *s, const sess_cmd *c, llsmtp_span arg,
                 int *rc)
{
    unsigned lmtp = s->cfg->flags & LLSMTP_CFG_LMTP;
    if (s->phase == PH_REFUSED && !(c->flags & CMD_REFUSED_OK))
        *rc = sess_err(s, 503, "5.5.1",
                       "Bad sequence of commands: no service here");
    else if (lmtp && (c->flags & CMD_NOT_LMTP))
        *rc = sess_err(s, 500, "5.5.1", "Error: this is LMTP, use LHLO");
    else if ((!lmtp && (c->flags & CMD_LMTP_ONLY)) ||
             (c->ext != 0 && !(s->cfg->extensions & c->ext)))
        *rc = sess_err(s, 502, "5.5.1", "Error: command not implemented");
    else if ((c->flags & CMD_NEEDS_HELO) && s->helo == HELO_NONE)
        *rc = sess_err(s, 503, "5.5.1", "Error: send HELO/EHLO first");
    else if ((c->flags & CMD_NEEDS_EHLO) && s->helo != HELO_EHLO)
        *rc = sess_err(s, 503, "5.5.1", "Error: send EHLO first");
    else if (((c->flags & CMD_NO_ARG) && arg.n) ||
             ((c->flags & CMD_NEEDS_ARG) && !arg.n))
        *rc = sess_err(s, 501, "5.5.4", c->syntax);
    else
        return 0;
    return 1;
}

/* The sync check (RFC 2920 3.1): after a line that ends a group the
 * client must wait for its reply, so anything more in this input is
 * improper pipelining. Without PIPELINING in force every line ends one;
 * with it, a line refused before it is read as a command (empty, too
 * long, bare LF) does not, since nothing says which command it was. */
static void
sess_sync_mark(llsmtp_server *s, int ends_group)
{
    int piped;
    if (!(s->cfg->flags & LLSMTP_CFG_SYNC_CHECK))
        return;
    piped = s->helo == HELO_EHLO &&
            (s->cfg->extensions & LLSMTP_EXT_PIPELINING);
    if (!piped || ends_group)
        s->sync_wait = 1;
}

/* One complete command line, terminator included. */
static int
sess_line(llsmtp_server *s, const char *line, size_t n, int truncated)
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
            (sess_in_auth(s) ||
             (n >= 5 && llsmtp__ieq(line, "auth ", 5)))) {
            s->rv_verb = "AUTH";
            if (sess_in_auth(s))
                s->rv_phase = LLSMTP_RI_AUTH_STEP;
            return sess_auth_abort(s, 500, "5.5.6",
                                   "Authentication exchange line is too "
                                   "long");
        }
        return sess_err(s, 500, "5.5.2", "Error: line too long");
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
            return sess_auth_abort(s, 500, "5.5.2",
                                   "Error: bare <LF> received");
        return sess_err(s, 500, "5.5.2", "Error: bare <LF> received");
    }
    if (sess_in_auth(s))
        return sess_auth_line(s, line, len);
    for (v = 0; v < len && line[v] != ' '; v++)
        ;
    if (len == 0)
        return sess_err(s, 500, "5.5.2", "Error: bad syntax");
    c = sess_verb(line, v);
    s->rv_verb = c->name;
    arg = sess_trim(line + v, len - v);
    if (c->flags & CMD_SECRET)
        sess_rv_auth(s, arg);
    else if (!(c->flags & CMD_NO_ECHO))
        s->rv_arg = arg;
    /* Only AUTH lines may be longer than a command line. */
    if (n > s->cfg->max_line && !(c->flags & CMD_SECRET))
        return sess_err(s, 500, "5.5.2", "Error: line too long");
    if (c->flags & CMD_CLOSES)
        return c->handler(s, arg);
    sess_sync_mark(s, sess_ends_group(c, arg));
    if (sess_cmd_refused(s, c, arg, &rc))
        return rc;
    return c->handler(s, arg);
}

/* ---- DATA ---------------------------------------------------------------- */

/* First CR or LF in [p, end), or end. */
LLSMTP_INTERNAL const char *llsmtp__scan_crlf_scalar(const char *p,
                                                     const char *end);
LLSMTP_INTERNAL const char *llsmtp__scan_crlf(const char *p, const char *end);

const char *
llsmtp__scan_crlf_scalar(const char *p, const char *end)
{
    const char *cr = (const char *)memchr(p, '\r', (size_t)(end - p));
    const char *lf = (const char *)memchr(
        p, '\n', (size_t)((cr != NULL ? cr : end) - p));
    return lf != NULL ? lf : (cr != NULL ? cr : end);
}

const char *
llsmtp__scan_crlf(const char *p, const char *end)
{
#ifdef SESS_SSE2
    const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
    while (end - p >= 32) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(p + 16));
        unsigned ma = (unsigned)_mm_movemask_epi8(
            _mm_or_si128(_mm_cmpeq_epi8(a, cr), _mm_cmpeq_epi8(a, lf)));
        unsigned mb = (unsigned)_mm_movemask_epi8(
            _mm_or_si128(_mm_cmpeq_epi8(b, cr), _mm_cmpeq_epi8(b, lf)));
        unsigned m = ma | mb << 16;
        if (m)
            return p + __builtin_ctz(m);
        p += 32;
    }
    return llsmtp__scan_crlf_scalar(p, end); /* the last < 32 bytes */
#else
    return llsmtp__scan_crlf_scalar(p, end);
#endif
}

/* Whether the message has gone past max_size: it is then abandoned as
 * soon as what fitted has been delivered. */
static int
sess_over_size(const llsmtp_server *s)
{
    return s->cfg->max_size != 0 && s->data.size > s->cfg->max_size;
}

/* Delivers a piece of the message (or counts it when abandoned). Over
 * max_size, exactly the octets up to the limit are delivered and then
 * the message is abandoned (SIZE): where the limit falls must not depend
 * on how the input was cut into pieces (DESIGN 3: any split, the same
 * callbacks). */
static int
sess_emit(llsmtp_server *s, const char *p, size_t n)
{
    int cbrc = LLSMTP_CB_OK;
    if (n == 0 || s->data.abort)
        return LLSMTP_OK;
    if (s->cfg->max_size && s->data.size + n > s->cfg->max_size) {
        size_t fits = s->data.size < s->cfg->max_size
                          ? (size_t)(s->cfg->max_size - s->data.size)
                          : 0;
        s->data.size += n;
        n = fits;
        if (n == 0)
            return sess_abort(s, LLSMTP_ABORT_SIZE);
    }
    if (!sess_over_size(s))
        s->data.size += n;
    if (s->cb->on_data != NULL)
        SESS_CALL(s, cbrc, s->cb->on_data(s, p, n));
    if (cbrc == LLSMTP_CB_PENDING) {
        /* resume abandons the message if this was its last piece that
         * fitted (sess_over_size) */
        s->pend.kind = LLSMTP_PENDING_DATA;
        return LLSMTP_PAUSED;
    }
    if (cbrc != LLSMTP_CB_OK)
        return sess_fail(s, "on_data", LLSMTP_E_CALLBACK);
    if (sess_over_size(s))
        return sess_abort(s, LLSMTP_ABORT_SIZE);
    return LLSMTP_OK;
}

/* A bare CR or LF was seen under the REJECT policy. */
static int
sess_bare(llsmtp_server *s, int is_cr)
{
    if (s->cfg->bare_lf != LLSMTP_BARE_LF_REJECT || s->data.abort)
        return LLSMTP_OK;
    s->data.bare_cr = (unsigned char)is_cr;
    return sess_abort(s, LLSMTP_ABORT_BARE_LF);
}

/* End of data: the final reply (RFC 5321 4.1.1.4). */
static int
sess_data_end(llsmtp_server *s)
{
    llsmtp_reply r;
    llsmtp_span none = {NULL, 0};
    int cbrc = LLSMTP_CB_OK, rc;
    sess_rv_data(s, LLSMTP_RI_MESSAGE, sess_in_bdat(s));
    if (s->data.abort) {
        if (s->cfg->flags & LLSMTP_CFG_LMTP) {
            /* every recipient hears the same refusal (RFC 2033 4.2) */
            llsmtp_reply e = LLSMTP_REPLY_INIT;
            if (s->data.abort == LLSMTP_ABORT_SIZE)
                llsmtp_reply_set(&e, 552, "5.3.4",
                                 "Message size exceeds fixed maximum "
                                 "message size");
            else
                llsmtp_reply_set(&e, 550, "5.5.2",
                                 s->data.bare_cr ? "Message contains bare CR"
                                             : "Message contains bare LF");
            return sess_lmtp_start(s, &e);
        }
        if (s->data.abort == LLSMTP_ABORT_SIZE)
            rc = sess_say(s, 552, "5.3.4",
                          "Message size exceeds fixed maximum message size");
        else
            rc = sess_say(s, 550, "5.5.2",
                          s->data.bare_cr ? "Message contains bare CR"
                                      : "Message contains bare LF");
        if (rc < 0)
            return rc;
        sess_tx_reset(s);
        sess_enter(s, PH_CMD);
        return LLSMTP_OK;
    }
    sess_default_reply(&r, 250, "2.6.0");
    if (s->cb->on_data_end != NULL)
        SESS_CALL(s, cbrc, s->cb->on_data_end(s, &r));
    return sess_decided(s, LLSMTP_PENDING_DATA_END, cbrc, &r, none);
}

/* Scans message data. Sets *used; returns like feed. Each step first
 * flushes the pending run (stopping before the step if the host pauses),
 * then changes state, then may emit one static piece. */
static int
sess_data(llsmtp_server *s, const char *buf, size_t n, size_t *used)
{
    const char *p = buf, *end = buf + n, *run = buf;
    int st = s->data.state, rc = LLSMTP_OK, cr_in_run = 0;
    int policy = s->cfg->bare_lf;

#define FLUSH_TO(x)                                                          \
    do {                                                                     \
        rc = sess_emit(s, run, (size_t)((x) - run));                         \
        run = (x);                                                           \
        if (rc != LLSMTP_OK)                                                 \
            goto out;                                                        \
    } while (0)
#define EMIT_STATIC(str)                                                     \
    do {                                                                     \
        rc = sess_emit(s, str, sizeof(str) - 1);                             \
        if (rc != LLSMTP_OK)                                                 \
            goto out;                                                        \
    } while (0)
#define CHECK(x)                                                             \
    do {                                                                     \
        rc = (x);                                                            \
        if (rc != LLSMTP_OK)                                                 \
            goto out;                                                        \
    } while (0)

    while (p < end) {
        switch (st) {
        case D_MID: {
            const char *q = llsmtp__scan_crlf(p, end);
            if (q == end) {
                p = end;
                break;
            }
            if (*q == '\r') {
                p = q + 1;
                st = D_CR;
                cr_in_run = 1;
                break;
            }
            /* A bare LF inside a line. */
            if (policy == LLSMTP_BARE_LF_PASS) {
                p = q + 1;
                break;
            }
            p = q;
            FLUSH_TO(q);
            p = q + 1;
            run = p;
            st = D_BOLX;
            CHECK(sess_bare(s, 0));
            EMIT_STATIC("\r\n");
            break;
        }
        case D_CR:
            if (*p == '\n') {
                if (!cr_in_run) {
                    p++;
                    run = p;
                    st = D_BOL;
                    EMIT_STATIC("\r\n");
                } else {
                    p++;
                    st = D_BOL;
                    cr_in_run = 0;
                }
                break;
            }
            /* A bare CR. */
            if (policy == LLSMTP_BARE_LF_PASS) {
                st = D_MID;
                if (!cr_in_run) {
                    run = p;
                    EMIT_STATIC("\r");
                }
                cr_in_run = 0;
                break;
            }
            if (cr_in_run) {
                /* Deliver the line up to the CR; stop before it if the
                 * host pauses, so the CR is handled again later. */
                rc = sess_emit(s, run, (size_t)(p - 1 - run));
                run = p;
                cr_in_run = 0;
                if (rc != LLSMTP_OK)
                    goto out_cr; /* CR consumed, still undecided */
            }
            run = p;
            st = D_BOLX;
            CHECK(sess_bare(s, 1));
            EMIT_STATIC("\r\n");
            break;
        case D_BOL:
        case D_BOLX:
            if (*p == '.') {
                FLUSH_TO(p);
                p++;
                run = p;
                st = st == D_BOL ? D_DOT : D_DOTX;
                break;
            }
            st = D_MID;
            break;
        case D_DOT:
        case D_DOTX:
            if (*p == '\r') {
                p++;
                run = p;
                st = st == D_DOT ? D_DOTCR : D_DOTCRX;
                break;
            }
            if (*p == '\n' && policy != LLSMTP_BARE_LF_PASS) {
                /* "." ended by a bare LF: content, never the end. */
                p++;
                run = p;
                st = D_BOLX;
                CHECK(sess_bare(s, 0));
                EMIT_STATIC(".\r\n");
                break;
            }
            /* RFC 5321 4.5.2: a leading "." before other characters is
             * deleted; the rest of the line follows. */
            st = D_MID;
            break;
        case D_DOTCR:
        case D_DOTCRX:
            if (*p == '\n') {
                if (st == D_DOTCR) {
                    /* <CRLF>.<CRLF>: the end of the message. */
                    if (sess_out_free(s) < s->reserve) {
                        rc = LLSMTP_BLOCKED;
                        goto out;
                    }
                    p++;
                    s->data.state = D_BOL;
                    *used = (size_t)(p - buf);
                    return sess_data_end(s);
                }
                p++;
                run = p;
                st = D_BOL;
                EMIT_STATIC(".\r\n");
                break;
            }
            /* "." followed by a bare CR. */
            if (policy == LLSMTP_BARE_LF_PASS) {
                run = p;
                st = D_MID;
                EMIT_STATIC("\r");
                break;
            }
            run = p;
            st = D_BOLX;
            CHECK(sess_bare(s, 1));
            EMIT_STATIC(".\r\n");
            break;
        default:
            st = D_MID;
            break;
        }
    }
    /* End of input: deliver the run, keeping back an undecided CR. */
    if (st == D_CR && cr_in_run) {
        rc = sess_emit(s, run, (size_t)(p - 1 - run));
    } else {
        rc = sess_emit(s, run, (size_t)(p - run));
    }
    run = p;
    goto out;
out_cr:
    st = D_CR;
out:
#undef FLUSH_TO
#undef EMIT_STATIC
#undef CHECK
    s->data.state = (unsigned char)st;
    *used = (size_t)(p - buf);
    (void)run;
    return rc;
}

/* ---- PROXY protocol (HAProxy proxy-protocol.txt v1 and v2) ------------ */

#define PROXY_V1_MAX 107 /* the longest v1 line, CRLF included */
#define PROXY_V2_HDR 16
#define PROXY_V2_ADDR 216 /* the largest address block (AF_UNIX) */

static const char proxy_v2_sig[12] = {'\r', '\n', '\r', '\n', '\0', '\r',
                                      '\n', 'Q',  'U',  'I',  'T', '\n'};

/* A decimal port, 0..65535, no leading zeros (as the spec writes them). */
static int
proxy_port(const char *p, size_t n, uint16_t *out)
{
    size_t i;
    unsigned v = 0;
    if (n == 0 || n > 5 || (n > 1 && p[0] == '0'))
        return 0;
    for (i = 0; i < n; i++) {
        if (!llsmtp__is_digit((unsigned char)p[i]))
            return 0;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v > 65535)
        return 0;
    *out = (uint16_t)v;
    return 1;
}

/* "PROXY TCP4 <src> <dst> <sport> <dport>" or "PROXY UNKNOWN ...";
 * line excludes the CRLF. */
static int
proxy_v1(llsmtp_server *s, const char *line, size_t n)
{
    llsmtp_span f[6];
    size_t nf = 0, i = 0, k;
    llsmtp_ip src, dst;
    uint16_t sport, dport;
    while (i <= n && nf < 6) {
        k = i;
        while (k < n && line[k] != ' ')
            k++;
        f[nf].p = line + i;
        f[nf++].n = k - i;
        i = k + 1;
        if (k >= n)
            break;
    }
    if (nf < 2 || f[0].n != 5 || memcmp(f[0].p, "PROXY", 5) != 0)
        return 0;
    if (f[1].n == 7 && memcmp(f[1].p, "UNKNOWN", 7) == 0) {
        /* a health check, or a protocol it cannot name: the socket's
         * address is the balancer's, never to be trusted as the client */
        memset(&s->client, 0, sizeof s->client);
        s->client_port = 0;
        return 1;
    }
    if (nf != 6 || i <= n || f[1].n != 4 ||
        (memcmp(f[1].p, "TCP4", 4) != 0 && memcmp(f[1].p, "TCP6", 4) != 0))
        return 0;
    if (llsmtp_ip_parse(f[2].p, f[2].n, &src) != LLSMTP_OK ||
        llsmtp_ip_parse(f[3].p, f[3].n, &dst) != LLSMTP_OK ||
        src.family != (f[1].p[3] == '4' ? 4 : 6) || dst.family != src.family ||
        !proxy_port(f[4].p, f[4].n, &sport) ||
        !proxy_port(f[5].p, f[5].n, &dport))
        return 0;
    s->client = src;
    s->client_port = sport;
    return 1;
}

/* The fixed part and the address block of a v2 header are in s->line. */
static int
proxy_v2(llsmtp_server *s, const unsigned char *h, size_t len)
{
    unsigned cmd = h[12] & 0x0F, fam = h[13];
    const unsigned char *a = h + PROXY_V2_HDR;
    if ((h[12] & 0xF0) != 0x20 || cmd > 1)
        return 0;
    /* LOCAL (the proxy's own health check) and UNSPEC carry no client:
     * forget the balancer's address rather than trust it */
    memset(&s->client, 0, sizeof s->client);
    s->client_port = 0;
    if (cmd == 0)
        return 1;
    switch (fam) {
    case 0x00: /* UNSPEC */
        return 1;
    case 0x11: /* TCP over IPv4 */
        if (len < 12)
            return 0;
        memset(&s->client, 0, sizeof s->client);
        s->client.family = 4;
        memcpy(s->client.addr, a, 4);
        s->client_port = (uint16_t)(a[8] << 8 | a[9]);
        return 1;
    case 0x21: /* TCP over IPv6 */
        if (len < 36)
            return 0;
        s->client.family = 6;
        memcpy(s->client.addr, a, 16);
        s->client_port = (uint16_t)(a[32] << 8 | a[33]);
        return 1;
    default:
        return 0; /* UDP or UNIX: not an SMTP client */
    }
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
            if (s->line_len + k > PROXY_V1_MAX) {
                ok = 0;
                break;
            }
            memcpy(s->line + s->line_len, buf + i, k);
            s->line_len += k;
            i += k;
            if (lf != NULL) {
                size_t L = s->line_len;
                ok = L >= 2 && s->line[L - 2] == '\r' &&
                     proxy_v1(s, s->line, L - 2);
            }
        } else {
            /* v2: 16 fixed bytes, then the address block */
            size_t want = PROXY_V2_HDR, k;
            if (s->line_len >= PROXY_V2_HDR) {
                size_t alen = (size_t)((unsigned char)s->line[14] << 8 |
                                       (unsigned char)s->line[15]);
                want += alen < PROXY_V2_ADDR ? alen : PROXY_V2_ADDR;
            }
            k = want - s->line_len < n - i ? want - s->line_len : n - i;
            memcpy(s->line + s->line_len, buf + i, k);
            s->line_len += k;
            i += k;
            if (s->line_len >= 12 &&
                memcmp(s->line, proxy_v2_sig, 12) != 0) {
                ok = 0;
                break;
            }
            if (s->line_len < PROXY_V2_HDR)
                continue;
            {
                size_t alen = (size_t)((unsigned char)s->line[14] << 8 |
                                       (unsigned char)s->line[15]);
                size_t have = alen < PROXY_V2_ADDR ? alen : PROXY_V2_ADDR;
                if (s->line_len < PROXY_V2_HDR + have)
                    continue;
                if (!proxy_v2(s, (const unsigned char *)s->line, alen)) {
                    ok = 0;
                    break;
                }
                s->proxy_skip = (uint16_t)(alen - have); /* TLVs */
                if (s->proxy_skip == 0)
                    ok = 1;
            }
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

int
llsmtp_server_feed(llsmtp_server *s, const char *buf, size_t len,
                   size_t *used)
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
    if (s->pend.kind)
        return LLSMTP_PAUSED;
    if (s->phase == PH_NEW)
        return LLSMTP_E_STATE;
    if (s->phase == PH_TLS_WAIT) {
        /* CVE-2011-0411: nothing sent before the handshake counts */
        *used = len;
        return LLSMTP_TLS;
    }
    if (s->lmtp.active && (rc = sess_lmtp_emit(s)) != LLSMTP_OK)
        return rc; /* LMTP replies still waiting for room */

    while (i < len) {
        const char *lf;
        size_t k;
        if (s->phase == PH_PROXY) {
            rc = sess_proxy(s, buf + i, len - i, &k);
            i += k;
            if (rc != LLSMTP_OK)
                break;
            continue;
        }
        if (s->phase == PH_DATA && !s->sync_wait) {
            rc = sess_data(s, buf + i, len - i, &k);
            i += k;
            if (rc != LLSMTP_OK)
                break;
            continue;
        }
        if (s->phase == PH_BDAT) {
            /* RFC 3030: exactly bdat_left octets, byte-exact */
            k = len - i;
            if ((uint64_t)k > s->bdat.left)
                k = (size_t)s->bdat.left;
            if ((uint64_t)k == s->bdat.left && sess_out_free(s) < s->reserve) {
                /* the chunk would end with no room for its reply: keep its
                 * last byte for after the host drains */
                if (k <= 1) {
                    rc = LLSMTP_BLOCKED;
                    break;
                }
                k--;
            }
            s->bdat.left -= k;
            i += k;
            if (!s->bdat.discard) {
                rc = sess_emit(s, buf + i - k, k);
                if (rc != LLSMTP_OK)
                    break; /* paused after this piece, or failed */
            }
            if (s->bdat.left == 0) {
                rc = sess_bdat_end(s);
                if (rc != LLSMTP_OK)
                    break;
            }
            continue; /* the rest of the chunk comes in later feeds */
        }
        if (s->phase == PH_CLOSED) {
            rc = LLSMTP_CLOSE;
            break;
        }
        if ((s->cfg->flags & LLSMTP_CFG_SYNC_CHECK) &&
            (s->greet_left || s->sync_wait)) {
            /* Early talker or improper pipelining (RFC 2920 3.1). */
            sess_rv_session(s);
            rc = sess_say(s, 554, "5.5.0", "SMTP protocol synchronization");
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
        lf = (const char *)memchr(buf + i, '\n', len - i);
        if (lf == NULL) {
            /* A partial line: keep it (or drop it once too long). */
            k = len - i;
            if (!s->discarding && s->line_len + k < s->line_cap) {
                memcpy(s->line + s->line_len, buf + i, k);
                s->line_len += k;
            } else {
                sess_keep_prefix(s, buf + i, k);
            }
            i = len;
            break;
        }
        k = (size_t)(lf - (buf + i)) + 1;
        if (s->line_len || s->discarding) {
            int truncated = 0, secret;
            if (!s->discarding && s->line_len + k <= s->line_cap) {
                memcpy(s->line + s->line_len, buf + i, k);
                s->line_len += k;
            } else {
                sess_keep_prefix(s, buf + i, k);
                truncated = 1;
            }
            i += k;
            k = s->line_len;
            s->line_len = 0;
            /* An AUTH line may carry credentials (RFC 4954 4 initial
             * response) whatever becomes of it: refused, too long,
             * cancelled. Once answered, its copy here is wiped. */
            secret = sess_in_auth(s) ||
                     (k >= 4 && llsmtp__ieq(s->line, "auth", 4));
            rc = sess_line(s, s->line, k, truncated);
            if (secret)
                llsmtp__wipe(s->line, k);
        } else {
            i += k;
            rc = sess_line(s, buf + i - k, k, 0);
        }
        s->rv_arg.p = NULL; /* the line is gone (a deferral copied it) */
        s->rv_arg.n = 0;
        if (rc == LLSMTP_TLS) {
            i = len; /* CVE-2011-0411: the rest of this read is dropped */
            break;
        }
        if (rc != LLSMTP_OK)
            break;
    }
    *used = i;
    return sess_settle(s, rc);
}
