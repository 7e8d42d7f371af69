/* SPDX-License-Identifier: MIT
 *
 * server_data.c - message data in the server session: the DATA scanner
 * (RFC 5321 4.5.2 transparency; only <CRLF>.<CRLF> ends a message; bare
 * CR and LF by the configured policy), BDAT chunks (RFC 3030), the size
 * limit, the end of a message and LMTP's reply per recipient (RFC 2033
 * 4.2). Invariant: every octet of a message goes to on_data exactly once
 * or the message is abandoned, whatever the input's split.
 */
#include "server_int.h"

#if defined(__SSE2__) && defined(__GNUC__) && !defined(LLSMTP_NO_SIMD)
#include <emmintrin.h>
#define SESS_SSE2 1
#endif

static int sess_data_end(llsmtp_server *s);

/* ---- LMTP (RFC 2033) ---------------------------------------------------- */

/* Replies for the accepted recipients, from lmtp_next on; stops with
 * LLSMTP_BLOCKED when the output queue is full (the next feed goes on). */
int
llsmtp__sess_lmtp_emit(llsmtp_server *s)
{
    while (s->lmtp.next < s->tx.rcpt_count) {
        llsmtp_reply r;
        llsmtp_span none = {NULL, 0};
        int rc, cbrc = LLSMTP_OK;
        if (sess_out_free(s) < s->reserve)
            return LLSMTP_BLOCKED;
        memset(&r, 0, sizeof r);
        r.code = s->lmtp.code;
        memcpy(r.enhanced, s->lmtp.enh, sizeof r.enhanced);
        r.is_default = s->lmtp.is_default;
        r.id_len = s->lmtp.id_len;
        memcpy(r.id, s->line, s->lmtp.id_len);
        r.text_len = s->lmtp.text_len;
        r.has_text = s->lmtp.text_len != 0;
        memcpy(r.text, s->line + s->lmtp.id_len, s->lmtp.text_len);
        if (s->lmtp.code / 100 == 2 && s->cb->on_lmtp_rcpt != NULL) {
            SESS_CALL(s, cbrc, s->cb->on_lmtp_rcpt(s, s->lmtp.next, &r));
            if (cbrc != LLSMTP_OK)
                return llsmtp__sess_fail(s, "on_lmtp_rcpt", LLSMTP_E_CALLBACK);
            llsmtp__sess_normalize(LLSMTP_PENDING_DATA_END, &r);
            if (!llsmtp__sess_reply_ok(&r) || r.code / 100 == 3)
                return llsmtp__sess_fail(s, "on_lmtp_rcpt", LLSMTP_E_CALLBACK);
        }
        rc = llsmtp__sess_put_reply(s, LLSMTP_PENDING_DATA_END, &r, none);
        if (rc < 0)
            return rc;
        s->lmtp.next++;
        if (r.code == 421) {
            /* 421 closes the channel (RFC 5321 3.8), whichever reply it
             * is; the recipients not answered yet count as not
             * delivered (RFC 2033 4.2) */
            s->lmtp.active = 0;
            llsmtp__sess_tx_reset(s);
            sess_enter(s, PH_CLOSED);
            return LLSMTP_CLOSE;
        }
    }
    s->lmtp.active = 0;
    llsmtp__sess_tx_reset(s);
    sess_enter(s, PH_CMD);
    return LLSMTP_OK;
}

/* Keeps the message decision (its text and id copied into the free line
 * buffer) and starts the per-recipient replies. */
int
llsmtp__sess_lmtp_start(llsmtp_server *s, const llsmtp_reply *r)
{
    /* The message is decided (on_data_end accepted it, or it was already
     * abandoned): it is no longer open, so a close while the replies wait
     * for room (BLOCKED) never aborts what the host stored. */
    s->tx.msg = MSG_NONE;
    s->lmtp.code = r->code;
    memcpy(s->lmtp.enh, r->enhanced, sizeof s->lmtp.enh);
    s->lmtp.is_default = (unsigned char)r->is_default;
    s->lmtp.id_len = 0;
    s->lmtp.text_len = 0;
    if (r->id_len && r->id_len <= s->line_cap) {
        memcpy(s->line, r->id, r->id_len);
        s->lmtp.id_len = r->id_len;
    }
    if (!r->is_default && r->has_text &&
        s->lmtp.id_len + r->text_len <= s->line_cap) {
        memmove(s->line + s->lmtp.id_len, r->text, r->text_len);
        s->lmtp.text_len = r->text_len;
    }
    /* text too long to keep: the generic text of the code is used */
    s->lmtp.next = 0;
    s->lmtp.active = 1;
    return llsmtp__sess_lmtp_emit(s);
}

/* Tells the host to drop a message that will not be completed. */
int
/* NOLINTNEXTLINE(misc-no-recursion): ends at the failed flag */
llsmtp__sess_abort(llsmtp_server *s, int why)
{
    int cbrc = LLSMTP_OK;
    if (s->data.abort)
        return LLSMTP_OK;
    s->data.abort = (unsigned char)why;
    if (s->cb->on_data_abort != NULL)
        SESS_CALL(s, cbrc, s->cb->on_data_abort(s, why));
    if (cbrc != LLSMTP_OK)
        return llsmtp__sess_fail(s, "on_data_abort", LLSMTP_E_CALLBACK);
    return LLSMTP_OK;
}

/* ---- BDAT (RFC 3030) ----------------------------------------------------- */

/* A chunk was read completely: its reply. */
int
llsmtp__sess_bdat_end(llsmtp_server *s)
{
    llsmtp_span sp[2];
    char num[24];
    int rc;
    sess_enter(s, PH_CMD);
    sess_sync_mark(s, 0); /* RFC 5321 4.3.1: without PIPELINING, wait */
    /* the argument of the BDAT line this answers, rebuilt from what it
     * said (its digits may have had leading zeros) */
    llsmtp__sess_u64(num, sizeof num, s->bdat.size, &sp[0]);
    memcpy(s->rv_keep, sp[0].p, sp[0].n);
    s->rv_keep_len = (unsigned char)sp[0].n;
    if (s->bdat.last) {
        memcpy(s->rv_keep + sp[0].n, " LAST", 5);
        s->rv_keep_len = (unsigned char)(sp[0].n + 5);
    }
    llsmtp__sess_rv_data(s, s->bdat.last ? LLSMTP_RI_MESSAGE : LLSMTP_RI_CHUNK,
                         1);
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
        rc = llsmtp__sess_say(
            s, 552, "5.3.4",
            "Message size exceeds fixed maximum message size");
        llsmtp__sess_tx_reset(s);
        s->bdat.size = 0;
        return rc;
    }
    llsmtp__sess_u64(num, sizeof num, s->bdat.size, &sp[0]);
    sp[1].p = " octets received";
    sp[1].n = 16;
    s->bdat.size = 0;
    return llsmtp__sess_put(s, 250, "2.0.0", sp, 2);
}

/* A BDAT whose chunk cannot be counted off closes the connection: the
 * client sends the chunk without waiting (RFC 3030 2), so reading on would
 * take its octets for commands. One reply refuses the BDAT, then 421, as
 * RFC 5321 3.8 has a server that must close do. */
typedef struct sess_bdat_close {
    int why;  /* on_data_abort reason for an open message */
    int code; /* the reply to the BDAT line */
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
    if (sess_msg_open(s) && (rc = llsmtp__sess_abort(s, c->why)) < 0)
        return rc;
    rc = llsmtp__sess_say(s, c->code, c->enh, c->text);
    if (rc < 0)
        return rc;
    rc = llsmtp__sess_say_host(s, 421, "4.5.2", c->closing);
    if (rc < 0)
        return rc;
    llsmtp__sess_tx_reset(s);
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
    if (sess_in_bdat(s) && (rc = llsmtp__sess_tx_end(s)) < 0)
        return rc;
    s->bdat.size = size;
    s->bdat.left = size;
    s->bdat.last = 0;
    s->bdat.discard = 1;
    sess_enter(s, PH_BDAT);
    rc = llsmtp__sess_err(s, 501, "5.5.4", "Syntax: BDAT size [LAST]");
    if (rc != LLSMTP_OK) {
        s->bdat.discard = 0;
        s->bdat.left = 0;
        return rc;
    }
    return size == 0 ? llsmtp__sess_bdat_end(s) : LLSMTP_OK;
}

/* A chunk that takes the message past max_size is refused from its BDAT
 * line, whatever the reads: none of it reaches on_data, it is read and
 * dropped (RFC 3030 2) and 552 5.3.4 follows it (llsmtp__sess_bdat_end). */
int
llsmtp__sess_bdat_fits(llsmtp_server *s)
{
    uint64_t max = s->cfg->max_size;
    if (max == 0 || s->data.abort)
        return LLSMTP_OK;
    if (s->data.size > max || s->bdat.size > max - s->data.size)
        return llsmtp__sess_abort(s, LLSMTP_ABORT_SIZE);
    return LLSMTP_OK;
}

int
llsmtp__sess_cmd_bdat(llsmtp_server *s, llsmtp_span arg)
{
    uint64_t size = 0;
    size_t i = 0;
    int last = 0, big = 0, rc, cbrc = LLSMTP_OK;
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
    rest = llsmtp__sess_trim(arg.p + i, arg.n - i);
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
        rc = llsmtp__sess_err(s, err_code, err_enh, err);
        if (rc != LLSMTP_OK)
            return rc;
        return size == 0 ? llsmtp__sess_bdat_end(s) : LLSMTP_OK;
    }
    if (!sess_in_bdat(s)) {
        /* the first chunk: the host opens the message */
        s->pend.msg_cmd = MSG_BDAT;
        llsmtp__sess_default_reply(&r, 354, "");
        if (s->cb->on_data_start != NULL)
            SESS_CALL(s, cbrc, s->cb->on_data_start(s, &r));
        rc = llsmtp__sess_decided(s, LLSMTP_PENDING_DATA_START, cbrc, &r,
                                  none);
        if (rc != LLSMTP_OK)
            return rc;
    } else {
        sess_enter(s, PH_BDAT);
        if ((rc = llsmtp__sess_bdat_fits(s)) != LLSMTP_OK)
            return rc;
    }
    if (s->phase == PH_BDAT && s->bdat.left == 0)
        return llsmtp__sess_bdat_end(s);
    return LLSMTP_OK;
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
int
llsmtp__sess_over_size(const llsmtp_server *s)
{
    return s->cfg->max_size != 0 && s->data.size > s->cfg->max_size;
}

/* Delivers a piece of the message (or counts it when abandoned). Over
 * max_size, exactly the octets up to the limit are delivered and then
 * the message is abandoned (SIZE): where the limit falls must not depend
 * on how the input was cut into pieces (DESIGN 3: any split, the same
 * callbacks). */
int
llsmtp__sess_emit(llsmtp_server *s, const char *p, size_t n)
{
    int cbrc = LLSMTP_OK;
    if (n == 0 || s->data.abort)
        return LLSMTP_OK;
    if (s->cfg->max_size && s->data.size + n > s->cfg->max_size) {
        size_t fits = s->data.size < s->cfg->max_size
                          ? (size_t)(s->cfg->max_size - s->data.size)
                          : 0;
        s->data.size += n;
        n = fits;
        if (n == 0)
            return llsmtp__sess_abort(s, LLSMTP_ABORT_SIZE);
    }
    if (!llsmtp__sess_over_size(s))
        s->data.size += n;
    if (s->cb->on_data != NULL)
        SESS_CALL(s, cbrc, s->cb->on_data(s, p, n));
    if (cbrc == LLSMTP_PAUSED) {
        /* resume abandons the message if this was its last piece that
         * fitted (llsmtp__sess_over_size) */
        s->pend.kind = LLSMTP_PENDING_DATA;
        return LLSMTP_PAUSED;
    }
    if (cbrc != LLSMTP_OK)
        return llsmtp__sess_fail(s, "on_data", LLSMTP_E_CALLBACK);
    if (llsmtp__sess_over_size(s))
        return llsmtp__sess_abort(s, LLSMTP_ABORT_SIZE);
    return LLSMTP_OK;
}

/* A bare CR or LF was seen under the REJECT policy. */
static int
sess_bare(llsmtp_server *s, int is_cr)
{
    if (s->cfg->bare_lf != LLSMTP_BARE_LF_REJECT || s->data.abort)
        return LLSMTP_OK;
    s->data.bare_cr = (unsigned char)is_cr;
    return llsmtp__sess_abort(s, LLSMTP_ABORT_BARE_LF);
}

/* End of data: the final reply (RFC 5321 4.1.1.4). */
static int
sess_data_end(llsmtp_server *s)
{
    llsmtp_reply r;
    llsmtp_span none = {NULL, 0};
    int cbrc = LLSMTP_OK, rc;
    llsmtp__sess_rv_data(s, LLSMTP_RI_MESSAGE, sess_in_bdat(s));
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
            return llsmtp__sess_lmtp_start(s, &e);
        }
        if (s->data.abort == LLSMTP_ABORT_SIZE)
            rc = llsmtp__sess_say(
                s, 552, "5.3.4",
                "Message size exceeds fixed maximum message size");
        else
            rc = llsmtp__sess_say(s, 550, "5.5.2",
                                  s->data.bare_cr
                                      ? "Message contains bare CR"
                                      : "Message contains bare LF");
        if (rc < 0)
            return rc;
        llsmtp__sess_tx_reset(s);
        sess_enter(s, PH_CMD);
        return LLSMTP_OK;
    }
    llsmtp__sess_default_reply(&r, 250, "2.6.0");
    if (s->cb->on_data_end != NULL)
        SESS_CALL(s, cbrc, s->cb->on_data_end(s, &r));
    return llsmtp__sess_decided(s, LLSMTP_PENDING_DATA_END, cbrc, &r, none);
}

/* Scans message data. Sets *used; returns like feed. Each step first
 * flushes the pending run (stopping before the step if the host pauses),
 * then changes state, then may emit one static piece. */
int
llsmtp__sess_data(llsmtp_server *s, const char *buf, size_t n, size_t *used)
{
    const char *p = buf, *end = buf + n, *run = buf;
    int st = s->data.state, rc = LLSMTP_OK, cr_in_run = 0;
    int policy = s->cfg->bare_lf;

#define FLUSH_TO(x)                                                           \
    do {                                                                      \
        rc = llsmtp__sess_emit(s, run, (size_t)((x)-run));                    \
        run = (x);                                                            \
        if (rc != LLSMTP_OK)                                                  \
            goto out;                                                         \
    } while (0)
#define EMIT_STATIC(str)                                                      \
    do {                                                                      \
        rc = llsmtp__sess_emit(s, str, sizeof(str) - 1);                      \
        if (rc != LLSMTP_OK)                                                  \
            goto out;                                                         \
    } while (0)
#define CHECK(x)                                                              \
    do {                                                                      \
        rc = (x);                                                             \
        if (rc != LLSMTP_OK)                                                  \
            goto out;                                                         \
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
                rc = llsmtp__sess_emit(s, run, (size_t)(p - 1 - run));
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
                    /* RFC 5321 4.3.1: without PIPELINING, wait */
                    sess_sync_mark(s, 0);
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
        rc = llsmtp__sess_emit(s, run, (size_t)(p - 1 - run));
    } else {
        rc = llsmtp__sess_emit(s, run, (size_t)(p - run));
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
