/* SPDX-License-Identifier: MIT
 *
 * server_int.h - the server session's private header, shared by the
 * server*.c files and never installed (DESIGN.md 1; nghttp2's
 * nghttp2_session.h is the precedent): the session struct and its
 * states, and what one part of the session calls in another, as
 * llsmtp__ functions (static in the amalgamation).
 */
#ifndef LLSMTP_SERVER_INT_H
#define LLSMTP_SERVER_INT_H

#include "internal.h"

/* Session phases: what the next input byte is. sess_enter is the one
 * place the phase changes. Other states have names too:
 *   the transaction          s->tx.in_mail (sess_tx; llsmtp__sess_tx_reset)
 *   a message is in progress sess_msg_open: the host opened it and it was
 *                            neither accepted nor abandoned
 *   inside a BDAT transaction sess_in_bdat: the first chunk was accepted,
 *                            and DATA and RCPT are refused until LAST
 *   an AUTH exchange         sess_in_auth: the next line answers a 334
 *   a deferred decision      s->pend.kind (llsmtp_server_pending)
 *   LMTP replies due         s->lmtp.active (RFC 2033 4.2) */
enum {
    PH_NEW = 0,  /* initialised, llsmtp_server_start not called */
    PH_CMD,      /* reading command lines */
    PH_DATA,     /* reading message data after 354 */
    PH_REFUSED,  /* 554 greeting: 503 to all but QUIT (RFC 5321 3.1) */
    PH_BDAT,     /* reading a BDAT chunk (RFC 3030), byte-exact */
    PH_PROXY,    /* reading a PROXY protocol header, before greeting */
    PH_TLS_WAIT, /* 220 to STARTTLS queued: input discarded until
                    llsmtp_server_tls_started (CVE-2011-0411) */
    PH_CLOSED    /* a 221/421 was queued: nothing more */
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
 * llsmtp__sess_tx_reset clears it in one go. */
typedef struct sess_tx {
    size_t rcpt_count, rcpt_tried;
    uint64_t decl_size;     /* MAIL's SIZE= */
    unsigned char in_mail;  /* MAIL accepted */
    unsigned char body;     /* MAIL's BODY=: 0, 7, 8 or 9 (BINARYMIME) */
    unsigned char msg;      /* MSG_*: the message open in this transaction */
    unsigned char smtputf8; /* MAIL's SMTPUTF8 */
} sess_tx;

/* A decision the host deferred (LLSMTP_PAUSED), and what applying
 * it will need: the command's argument kept in line[], MAIL's parameters. */
typedef struct sess_pend {
    size_t arg_len;     /* the decision's argument, kept in line[] */
    size_t arg_off;     /* ... at this offset */
    size_t rv_len;      /* the command's argument (on_reply), in line[] */
    uint64_t size;      /* MAIL's SIZE=, BODY= and SMTPUTF8 until the */
    unsigned char body; /* decision (then sess_tx) */
    unsigned char utf8;
    unsigned char ehlo;    /* HELO's decision is for EHLO or LHLO */
    unsigned char kind;    /* enum llsmtp_pending: 0 when none */
    unsigned char rv_kept; /* a deferral's rv_arg is rv_keep */
    unsigned char msg_cmd; /* MSG_DATA or MSG_BDAT: whose on_data_start
                              decision is being made */
} sess_pend;

/* AUTH (RFC 4954): the exchange and its outcome. */
typedef struct sess_auth {
    char *user;      /* SESS_AUTH_USER_MAX bytes when AUTH is on */
    size_t user_len; /* AUTH LOGIN's user name, between lines */
    unsigned failures, step;
    unsigned char authenticated, state, is_step;
    char mech[SESS_MECH_MAX + 1];
} sess_auth;

/* The message being read (DATA or BDAT chunks). */
typedef struct sess_msgdata {
    uint64_t size;         /* octets of the message so far */
    unsigned char state;   /* D_*: the DATA scanner */
    unsigned char abort;   /* LLSMTP_ABORT_* once abandoned, else 0 */
    unsigned char bare_cr; /* what the bare-line-end refusal names */
} sess_msgdata;

/* The BDAT chunk being read (RFC 3030). */
typedef struct sess_bdat {
    uint64_t left;         /* octets of the current chunk still to come */
    uint64_t size;         /* size of the current chunk */
    unsigned char last;    /* BDAT ... LAST */
    unsigned char discard; /* refused: read and dropped */
} sess_bdat;

/* LMTP (RFC 2033 4.2): the message decision, replayed per recipient. */
typedef struct sess_lmtp {
    size_t next;             /* next recipient to reply for */
    size_t text_len, id_len; /* the decision's text and id, in line[] */
    int code;
    char enh[12];
    unsigned char active, is_default;
} sess_lmtp;

struct llsmtp_server {
    const llsmtp_config *cfg;
    const llsmtp_callbacks *cb;
    void *user;
    const char *failed_cb;
    char *line; /* line buffer, cfg->max_line bytes */
    char *out;  /* output queue */
    size_t line_cap, line_len;
    size_t out_cap, out_start, out_end;
    size_t lend_min;   /* LLSMTP_CFG_LENT_OUTPUT: the smallest loan */
    size_t reserve;    /* free output needed before a command is read */
    size_t greet_left; /* greeting bytes not yet consumed (sync check) */
    unsigned errors, rcpt_rejects;
    llsmtp_ip client; /* for the relay policy; family 0 = unknown */
    uint16_t client_port;
    uint16_t proxy_skip; /* v2 header bytes past the addresses, skipped */
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
static inline void
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
static inline int
sess_in_bdat(const llsmtp_server *s)
{
    return s->tx.msg == MSG_BDAT;
}

/* The next line answers a 334 (RFC 4954 4), not a command. */
static inline int
sess_in_auth(const llsmtp_server *s)
{
    return s->auth.state != AUTH_NONE;
}

/* The sync check (RFC 2920 3.1): after a line that ends a group the
 * client must wait for its reply, so anything more in this input is
 * improper pipelining. Without PIPELINING in force every line ends one
 * (RFC 5321 4.3.1), and so does the end of a message or chunk; with it, a
 * line refused before it is read as a command (empty, too long, bare LF)
 * does not, since nothing says which command it was. */
static inline void
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

/* Calls a deciding callback with the re-entrancy guard set. */
#define SESS_CALL(s, rcvar, expr)                                             \
    do {                                                                      \
        (s)->in_cb = 1;                                                       \
        (rcvar) = (expr);                                                     \
        (s)->in_cb = 0;                                                       \
    } while (0)

/* p[0..n) without the spaces and tabs around it. */
static inline llsmtp_span
llsmtp__sess_trim(const char *p, size_t n)
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

/* Free room in the output queue. */
static inline size_t
sess_out_free(const llsmtp_server *s)
{
    return s->out_cap - (s->out_end - s->out_start);
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

static inline void
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

static inline void
sess_parts_add(sess_parts *ps, const char *str)
{
    sess_part(ps, str, strlen(str));
}

/* RCPT's default text, "Recipient <path> OK": sess_kinds' row, and
 * what llsmtp__sess_put_rcpt_ok writes pre-rendered. */
#define SESS_RCPT_PRE "Recipient <"
#define SESS_RCPT_POST "> OK"

/* How a decision kind's default text is put together (sess_kinds). */
enum {
    RK_ARG = 1,   /* pre, the decision's argument, post */
    RK_HOST = 2,  /* the hostname first */
    RK_ID = 4,    /* the queue id and a space first, when the host set one */
    RK_NO_ENH = 8 /* no enhanced code, even with ENHANCEDSTATUSCODES */
};

/* A row of sess_kinds: a deciding callback and its default reply. */
typedef struct sess_kind_row {
    const char *cb; /* the callback, as llsmtp_server_failed_cb names it */
    int kind;       /* enum llsmtp_pending: the row's own index */
    int code;       /* the default reply */
    const char *enh;
    const char *pre; /* its text (NULL: the code's generic text) */
    const char *post;
    /* builds the default text instead, when there is more to it */
    void (*build)(const llsmtp_server *s, sess_parts *ps, llsmtp_span arg);
    /* what an applied decision changes, after its reply (or NULL) */
    int (*apply)(llsmtp_server *s, const llsmtp_reply *r);
    unsigned shape; /* RK_* */
} sess_kind_row;

/* A message the host opened (on_data_start accepted) that has neither
 * been accepted by on_data_end nor abandoned: the one on_data_abort is
 * owed if the session ends now. */
static inline int
sess_msg_open(const llsmtp_server *s)
{
    return s->tx.msg != MSG_NONE && !s->data.abort;
}

/* ---- server.c: the session's lifecycle ---------------------------------- */

LLSMTP_INTERNAL int llsmtp__sess_continue(llsmtp_server *s);
LLSMTP_INTERNAL int llsmtp__sess_fail(llsmtp_server *s, const char *cb,
                                      int err);

/* ---- server_reply.c: output queue and replies -------------------------- */

LLSMTP_INTERNAL int llsmtp__sess_count(llsmtp_server *s, unsigned *count,
                                       unsigned limit, const char *text);
LLSMTP_INTERNAL int llsmtp__sess_err(llsmtp_server *s, int code,
                                     const char *enh, const char *text);
LLSMTP_INTERNAL int llsmtp__sess_ext_on(const llsmtp_server *s, unsigned ext);
LLSMTP_INTERNAL int llsmtp__sess_put(llsmtp_server *s, int code,
                                     const char *enh, const llsmtp_span *parts,
                                     size_t np);
LLSMTP_INTERNAL int llsmtp__sess_put_rcpt_ok(llsmtp_server *s,
                                             llsmtp_span path);
LLSMTP_INTERNAL int llsmtp__sess_put_challenge(llsmtp_server *s,
                                               const char *data, size_t n);
LLSMTP_INTERNAL int llsmtp__sess_put_reply(llsmtp_server *s, int kind,
                                           const llsmtp_reply *r,
                                           llsmtp_span arg);
LLSMTP_INTERNAL void llsmtp__sess_rv_data(llsmtp_server *s, int phase,
                                          int is_bdat);
LLSMTP_INTERNAL void llsmtp__sess_rv_keep(llsmtp_server *s, const char *p,
                                          size_t n);
LLSMTP_INTERNAL void llsmtp__sess_rv_session(llsmtp_server *s);
LLSMTP_INTERNAL int llsmtp__sess_say(llsmtp_server *s, int code,
                                     const char *enh, const char *text);
LLSMTP_INTERNAL int llsmtp__sess_say_host(llsmtp_server *s, int code,
                                          const char *enh, const char *text);
LLSMTP_INTERNAL void llsmtp__sess_text_ehlo(const llsmtp_server *s,
                                            sess_parts *ps, llsmtp_span arg);
LLSMTP_INTERNAL void llsmtp__sess_text_greeting(const llsmtp_server *s,
                                                sess_parts *ps,
                                                llsmtp_span arg);
LLSMTP_INTERNAL void llsmtp__sess_u64(char *buf, size_t cap, uint64_t v,
                                      llsmtp_span *out);

/* ---- server_cmd.c: commands and decisions ------------------------------ */

LLSMTP_INTERNAL int llsmtp__sess_apply(llsmtp_server *s, int kind,
                                       const llsmtp_reply *r, llsmtp_span arg);
LLSMTP_INTERNAL int llsmtp__sess_code_fits(const llsmtp_server *s, int kind,
                                           int code);
LLSMTP_INTERNAL int llsmtp__sess_decided(llsmtp_server *s, int kind, int cbrc,
                                         llsmtp_reply *r, llsmtp_span arg);
LLSMTP_INTERNAL void llsmtp__sess_default_reply(llsmtp_reply *r, int code,
                                                const char *enh);
LLSMTP_INTERNAL const sess_kind_row *llsmtp__sess_kind(int kind);
LLSMTP_INTERNAL void llsmtp__sess_kind_default(int kind, llsmtp_reply *r);
LLSMTP_INTERNAL int llsmtp__sess_line(llsmtp_server *s, const char *line,
                                      size_t n, int truncated);
LLSMTP_INTERNAL void llsmtp__sess_normalize(int kind, llsmtp_reply *r);
LLSMTP_INTERNAL int llsmtp__sess_reply_ok(const llsmtp_reply *r);
LLSMTP_INTERNAL int llsmtp__sess_tx_end(llsmtp_server *s);
LLSMTP_INTERNAL void llsmtp__sess_tx_reset(llsmtp_server *s);

/* ---- server_auth.c: AUTH ----------------------------------------------- */

LLSMTP_INTERNAL int llsmtp__sess_auth_abort(llsmtp_server *s, int code,
                                            const char *enh, const char *text);
LLSMTP_INTERNAL int llsmtp__sess_auth_line(llsmtp_server *s, const char *line,
                                           size_t len);
LLSMTP_INTERNAL void llsmtp__sess_auth_list(const llsmtp_server *s,
                                            sess_parts *ps, const char *head);
LLSMTP_INTERNAL int llsmtp__sess_auth_offered(const llsmtp_server *s);
LLSMTP_INTERNAL void llsmtp__sess_auth_wipe(llsmtp_server *s);
LLSMTP_INTERNAL int llsmtp__sess_cmd_auth(llsmtp_server *s, llsmtp_span arg);
LLSMTP_INTERNAL size_t llsmtp__sess_mech_next_cfg(const llsmtp_config *cfg,
                                                  size_t pos,
                                                  llsmtp_span *tok);
LLSMTP_INTERNAL void llsmtp__sess_rv_auth(llsmtp_server *s, llsmtp_span arg);

/* ---- server_data.c: message data, BDAT, LMTP --------------------------- */

LLSMTP_INTERNAL int llsmtp__sess_abort(llsmtp_server *s, int why);
LLSMTP_INTERNAL int llsmtp__sess_bdat_end(llsmtp_server *s);
LLSMTP_INTERNAL int llsmtp__sess_bdat_fits(llsmtp_server *s);
LLSMTP_INTERNAL int llsmtp__sess_cmd_bdat(llsmtp_server *s, llsmtp_span arg);
LLSMTP_INTERNAL int llsmtp__sess_data(llsmtp_server *s, const char *buf,
                                      size_t n, size_t *used);
LLSMTP_INTERNAL int llsmtp__sess_emit(llsmtp_server *s, const char *p,
                                      size_t n);
LLSMTP_INTERNAL int llsmtp__sess_lmtp_emit(llsmtp_server *s);
LLSMTP_INTERNAL int llsmtp__sess_lmtp_start(llsmtp_server *s,
                                            const llsmtp_reply *r);
LLSMTP_INTERNAL int llsmtp__sess_over_size(const llsmtp_server *s);

/* ---- the server session's tables, for the unit tests ------------------ */

#if !defined(LLSMTP_AMALGAMATION) || defined(LLSMTP_TEST_INTERNALS)
/* Row i of the decision-kind table: its enum llsmtp_pending value and
 * callback name; -1 past the last row. */
LLSMTP_INTERNAL int llsmtp__server_kind_row(size_t i, const char **cb);
/* Row i of the command table: its verb; NULL past the last row. */
LLSMTP_INTERNAL const char *llsmtp__server_cmd_row(size_t i);
/* The row a line's verb v[0..n) dispatches to, or -1 (unknown). */
LLSMTP_INTERNAL long llsmtp__server_cmd_find(const char *v, size_t n);
#endif

#endif /* LLSMTP_SERVER_INT_H */
