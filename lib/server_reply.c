/* SPDX-License-Identifier: MIT
 *
 * server_reply.c - the server session's output: the bounded output
 * queue the host drains, on_reply's report of each reply, and every
 * reply the session writes (the library's default texts, the host's
 * replies, SASL challenges, the counted error replies). Invariant: a
 * reply is queued whole or not at all (a reply that does not fit fails
 * the session), and what on_reply sees is read back from the queue.
 */
#include "server_int.h"

/* ---- output queue ------------------------------------------------------ */

/* Makes the free space contiguous at the end of the queue. */
static char *
sess_out_tail(llsmtp_server *s, size_t *avail)
{
    if (s->out == NULL) { /* lent output, nothing lent: no room */
        *avail = 0;
        return NULL;
    }
    if (s->out_start > 0) {
        size_t used = s->out_end - s->out_start;
        memmove(s->out, s->out + s->out_start, used);
        s->out_start = 0;
        s->out_end = used;
    }
    *avail = s->out_cap - s->out_end;
    return s->out + s->out_end;
}

/* The next replies are not caused by a client line (on_reply verb "-"). */
void
llsmtp__sess_rv_session(llsmtp_server *s)
{
    s->rv_verb = "-";
    s->rv_arg.p = NULL;
    s->rv_arg.n = 0;
    s->rv_phase = LLSMTP_RI_SESSION;
}

/* The next replies answer message data (a chunk, or the message). A
 * BDAT chunk's reply gives its BDAT line's argument, which llsmtp__sess_bdat_end
 * kept in rv_keep; DATA has none. */
void
llsmtp__sess_rv_data(llsmtp_server *s, int phase, int is_bdat)
{
    s->rv_verb = is_bdat ? "BDAT" : "DATA";
    s->rv_arg.p = is_bdat ? s->rv_keep : NULL;
    s->rv_arg.n = is_bdat ? s->rv_keep_len : 0;
    s->rv_phase = (unsigned char)phase;
}

/* on_reply's argument is a copy in rv_keep (n <= SESS_RV_KEEP). */
void
llsmtp__sess_rv_keep(llsmtp_server *s, const char *p, size_t n)
{
    memcpy(s->rv_keep, p, n);
    s->rv_keep_len = (unsigned char)n;
    s->rv_arg.p = s->rv_keep;
    s->rv_arg.n = n;
}

/* Tells on_reply about the reply just queued: its code, its enhanced
 * code when printed, the text of its first line. Read back
 * from the queue, so it is what the client gets. */
static void
sess_report(llsmtp_server *s, int code, const char *enh, const char *text,
            size_t text_n)
{
    llsmtp_reply_info ri;
    unsigned char in_cb = s->in_cb;
    ri.verb = s->rv_verb != NULL ? s->rv_verb : "";
    ri.arg = s->rv_arg;
    if (ri.arg.p == NULL)
        ri.arg.p = "";
    ri.code = code;
    ri.enhanced = enh != NULL ? enh : "";
    ri.text.p = text;
    ri.text.n = text_n;
    ri.phase = s->rv_phase;
    ri.rcpt = s->lmtp.active && s->rv_phase == LLSMTP_RI_MESSAGE
                  ? (long)s->lmtp.next
                  : -1;
    s->in_cb = 1; /* an observer: feed/resume from here is refused */
    s->cb->on_reply(s, &ri);
    s->in_cb = in_cb;
}

/* The same for a reply at w[0..n) of any shape: "ddd" SP or "-", the
 * enhanced code and a space when printed, the first line's text. */
static void
sess_report_at(llsmtp_server *s, int code, const char *enh, const char *w,
               size_t n)
{
    const char *cr = (const char *)memchr(w, '\r', n);
    size_t end = cr != NULL ? (size_t)(cr - w) : n, start = 4;
    if (enh != NULL)
        start += strlen(enh) + 1;
    if (start > end)
        start = end;
    sess_report(s, code, enh, w + start, end - start);
}

/* Queues one reply. enh is printed only when ENHANCEDSTATUSCODES is on. */
int
/* NOLINTNEXTLINE(misc-no-recursion): ends at the failed flag */
llsmtp__sess_put(llsmtp_server *s, int code, const char *enh,
                 const llsmtp_span *parts, size_t np)
{
    size_t avail, w;
    char *tail = sess_out_tail(s, &avail);
    if (!(s->cfg->extensions & LLSMTP_EXT_ENHANCEDSTATUS) ||
        (enh != NULL && enh[0] == '\0'))
        enh = NULL;
    w = llsmtp__reply_write(tail, avail, code, enh, parts, np);
    if (w == 0)
        return llsmtp__sess_fail(s, NULL, LLSMTP_E_BUFFER);
    s->out_end += w;
    if (s->cb->on_reply != NULL)
        sess_report_at(s, code, enh, tail, w);
    return LLSMTP_OK;
}

/* "250 2.1.5 Recipient <path> OK", RCPT's default reply and the reply
 * written most (one per recipient): the line around the path is rendered
 * at compile time, and the path is printable ASCII (the caller's word: a
 * path the parser took without UTF-8), so this is what llsmtp__sess_put
 * writes for it, in three copies. A path too long for one line (a long
 * line limit) goes to llsmtp__sess_put. tests/test_server.c compares
 * the two. */
int
llsmtp__sess_put_rcpt_ok(llsmtp_server *s, llsmtp_span path)
{
    static const char post[] = SESS_RCPT_POST "\r\n";
    int enh = (s->cfg->extensions & LLSMTP_EXT_ENHANCEDSTATUS) != 0;
    size_t head = enh ? sizeof "250 2.1.5 " SESS_RCPT_PRE - 1
                      : sizeof "250 " SESS_RCPT_PRE - 1,
           w = head + path.n + sizeof post - 1, avail;
    char *tail = sess_out_tail(s, &avail);
    if (w > LLSMTP__REPLY_LINE_MAX || w > avail) {
        llsmtp_span sp[3];
        sp[0].p = SESS_RCPT_PRE;
        sp[0].n = sizeof SESS_RCPT_PRE - 1;
        sp[1] = path;
        sp[2].p = SESS_RCPT_POST;
        sp[2].n = sizeof SESS_RCPT_POST - 1;
        return llsmtp__sess_put(s, 250, "2.1.5", sp, 3);
    }
    if (enh)
        memcpy(tail, "250 2.1.5 " SESS_RCPT_PRE,
               sizeof "250 2.1.5 " SESS_RCPT_PRE - 1);
    else
        memcpy(tail, "250 " SESS_RCPT_PRE, sizeof "250 " SESS_RCPT_PRE - 1);
    memcpy(tail + head, path.p, path.n);
    memcpy(tail + head + path.n, post, sizeof post - 1);
    s->out_end += w;
    if (s->cb->on_reply != NULL)
        sess_report(s, 250, enh ? "2.1.5" : NULL, tail + (enh ? 10 : 4),
                    w - (enh ? 10 : 4) - 2);
    return LLSMTP_OK;
}

/* Queues a reply whose text is one C string. */
int
llsmtp__sess_say(llsmtp_server *s, int code, const char *enh, const char *text)
{
    llsmtp_span sp;
    sp.p = text;
    sp.n = strlen(text);
    return llsmtp__sess_put(s, code, enh, &sp, 1);
}

/* Queues "code enh <hostname> text" (221, 421). */
int
/* NOLINTNEXTLINE(misc-no-recursion): ends at the failed flag */
llsmtp__sess_say_host(llsmtp_server *s, int code, const char *enh,
                      const char *text)
{
    llsmtp_span sp[3];
    sp[0].p = s->cfg->hostname;
    sp[0].n = strlen(s->cfg->hostname);
    sp[1].p = " ";
    sp[1].n = 1;
    sp[2].p = text;
    sp[2].n = strlen(text);
    return llsmtp__sess_put(s, code, enh, sp, 3);
}

llsmtp_span
llsmtp_server_output(const llsmtp_server *s)
{
    llsmtp_span o = {NULL, 0};
    if (s != NULL && s->out != NULL) {
        o.p = s->out + s->out_start;
        o.n = s->out_end - s->out_start;
    }
    return o;
}

int
llsmtp_server_consume(llsmtp_server *s, size_t n)
{
    size_t have;
    if (s == NULL)
        return LLSMTP_E_INVAL;
    have = s->out_end - s->out_start;
    if (n > have)
        n = have;
    s->out_start += n;
    if (s->out_start == s->out_end)
        s->out_start = s->out_end = 0;
    s->greet_left = s->greet_left > n ? s->greet_left - n : 0;
    /* LMTP replies that waited for room go out now: no feed is needed */
    return llsmtp__sess_continue(s);
}

void
llsmtp_server_input_drained(llsmtp_server *s)
{
    if (s != NULL)
        s->sync_wait = 0;
}

/* Counts one more of something the session tolerates only so often; at
 * the limit (0: none) queues 421 with text and closes. */
int
llsmtp__sess_count(llsmtp_server *s, unsigned *count, unsigned limit,
                   const char *text)
{
    int rc;
    ++*count;
    if (limit == 0 || *count < limit)
        return LLSMTP_OK;
    rc = llsmtp__sess_say_host(s, 421, "4.7.0", text);
    if (rc < 0)
        return rc;
    sess_enter(s, PH_CLOSED);
    return LLSMTP_CLOSE;
}

/* Counts a client error. */
static int
sess_error(llsmtp_server *s)
{
    return llsmtp__sess_count(s, &s->errors, s->cfg->max_errors,
                              "Too many errors, closing connection");
}

/* Queues a library-generated error reply and counts it. */
int
llsmtp__sess_err(llsmtp_server *s, int code, const char *enh, const char *text)
{
    int rc = llsmtp__sess_say(s, code, enh, text);
    if (rc < 0)
        return rc;
    return sess_error(s);
}

void
llsmtp__sess_u64(char *buf, size_t cap, uint64_t v, llsmtp_span *out)
{
    size_t i = cap;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v && i > 0);
    out->p = buf + i;
    out->n = cap - i;
}

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
#define SESS_EHLO_PARTS                                                       \
    (3 + 2 * SESS_EXT_ROWS + 2 + 2 * (1 + 2 * (size_t)LLSMTP_AUTH_MECHS_MAX))

/* Whether an extension is on offer now: STARTTLS until TLS is active,
 * AUTH where llsmtp__sess_auth_offered says, BINARYMIME only with CHUNKING. */
int
llsmtp__sess_ext_on(const llsmtp_server *s, unsigned ext)
{
    unsigned cfg = s->cfg->extensions;
    if (!(cfg & ext))
        return 0;
    if (ext == LLSMTP_EXT_STARTTLS)
        return !s->tls_active;
    if (ext == LLSMTP_EXT_AUTH)
        return llsmtp__sess_auth_offered(s);
    if (ext == LLSMTP_EXT_BINARYMIME)
        return (cfg & LLSMTP_EXT_CHUNKING) != 0;
    return 1;
}

/* The greeting's default text: "<host> ESMTP|LMTP [banner]". */
void
llsmtp__sess_text_greeting(const llsmtp_server *s, sess_parts *ps,
                           llsmtp_span arg)
{
    (void)arg;
    sess_parts_add(ps, s->cfg->hostname);
    sess_parts_add(ps, (s->cfg->flags & LLSMTP_CFG_LMTP) ? " LMTP" : " ESMTP");
    if (s->cfg->banner != NULL && s->cfg->banner[0]) {
        sess_parts_add(ps, " ");
        sess_parts_add(ps, s->cfg->banner);
    }
}

/* After EHLO/LHLO accepted: "\n" and a keyword per extension on offer
 * (RFC 5321 4.1.1.1), from sess_ext_rows, whoever wrote the first line. */
static void
sess_ehlo_keywords(const llsmtp_server *s, sess_parts *ps)
{
    size_t i;
    for (i = 0; s->pend.ehlo && i < SESS_EXT_ROWS; i++) {
        const sess_ext_row *row = &sess_ext_rows[i];
        if (!llsmtp__sess_ext_on(s, row->ext))
            continue;
        if (row->ext == LLSMTP_EXT_AUTH) {
            llsmtp__sess_auth_list(s, ps, "\nAUTH");
            if (s->cfg->flags & LLSMTP_CFG_AUTH_LEGACY)
                llsmtp__sess_auth_list(s, ps, "\nAUTH=");
            continue;
        }
        sess_parts_add(ps, "\n");
        sess_parts_add(ps, row->keyword);
        if (row->ext == LLSMTP_EXT_SIZE && s->cfg->max_size) {
            llsmtp_span v;
            sess_parts_add(ps, " ");
            llsmtp__sess_u64(ps->num, sizeof ps->num, s->cfg->max_size, &v);
            sess_part(ps, v.p, v.n);
        }
    }
}

/* HELO's "<host> Hello <arg>"; EHLO (and LHLO) add the keywords. */
void
llsmtp__sess_text_ehlo(const llsmtp_server *s, sess_parts *ps, llsmtp_span arg)
{
    sess_parts_add(ps, s->cfg->hostname);
    sess_parts_add(ps, " Hello ");
    sess_part(ps, arg.p, arg.n);
    sess_ehlo_keywords(s, ps);
}

/* Writes the library's default reply for a decision kind. */
static int
sess_put_default(llsmtp_server *s, int kind, const llsmtp_reply *r,
                 llsmtp_span arg)
{
    const sess_kind_row *k = llsmtp__sess_kind(kind);
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
        return llsmtp__sess_fail(s, NULL, LLSMTP_E_BUFFER); /* cannot happen */
    return llsmtp__sess_put(s, r->code,
                            (k->shape & RK_NO_ENH) ? NULL : r->enhanced, sp,
                            ps.n);
}

/* "334 <base64>" on one line, never folded (RFC 4954 4: a SASL
 * continuation is a single line). */
int
llsmtp__sess_put_challenge(llsmtp_server *s, const char *data, size_t n)
{
    size_t avail, w;
    char *tail = sess_out_tail(s, &avail);
    if (llsmtp_b64_encoded_len(n) + 6 > avail)
        return llsmtp__sess_fail(s, NULL, LLSMTP_E_BUFFER);
    /* NOLINTNEXTLINE(bugprone-not-null-terminated-result): wire bytes */
    memcpy(tail, "334 ", 4);
    if (llsmtp_b64_encode(data, n, tail + 4, avail - 6, &w) != LLSMTP_OK)
        return llsmtp__sess_fail(s, NULL, LLSMTP_E_BUFFER);
    tail[4 + w] = '\r';
    tail[5 + w] = '\n';
    s->out_end += w + 6;
    if (s->cb->on_reply != NULL)
        sess_report(s, 334, NULL, tail + 4, w);
    s->auth.state = AUTH_STEP;
    sess_sync_mark(s, 1); /* the client waits for a challenge */
    return LLSMTP_OK;
}

/* Applies a decision: queues its reply and changes state. */
/* Writes a decision's reply: the library's default, or the host's. */
int
llsmtp__sess_put_reply(llsmtp_server *s, int kind, const llsmtp_reply *r,
                       llsmtp_span arg)
{
    int rc;
    if (r->is_default) {
        rc = sess_put_default(s, kind, r, arg);
    } else {
        /* the host's reply, rendered as llsmtp_reply_format renders it,
         * except that a queue id means success: printed on 2xx only */
        llsmtp_span sp[SESS_EHLO_PARTS];
        sess_parts ps;
        const char *enh = r->enhanced;
        ps.v = sp;
        ps.cap = sizeof sp / sizeof sp[0];
        ps.full = 0;
        ps.n = llsmtp__reply_parts(r, 0, sp);
        if (kind == LLSMTP_PENDING_HELO && r->code / 100 == 2) {
            /* The host's own greeting line: the keywords still follow,
             * since the session acts on them whatever the text says,
             * and RFC 2034 3 puts no enhanced code on a HELO/EHLO
             * reply. */
            sess_ehlo_keywords(s, &ps);
            enh = NULL;
        }
        if (ps.full)
            return llsmtp__sess_fail(s, NULL,
                                     LLSMTP_E_BUFFER); /* cannot happen */
        rc = llsmtp__sess_put(s, r->code, enh, sp, ps.n);
    }
    return rc;
}
