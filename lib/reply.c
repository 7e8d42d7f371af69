/* SPDX-License-Identifier: MIT
 *
 * reply.c - SMTP replies: validation of codes and RFC 3463 enhanced codes,
 * and the one writer that turns (code, enhanced, text) into wire lines.
 * Invariant: whatever text a host gives, no CR, LF or NUL reaches the wire
 * inside a reply line, and no line exceeds 512 octets (RFC 5321
 * 4.5.3.1.5); "\n" in host text starts a new line of a multiline reply.
 */
#include "internal.h"

#define RPL_LINE_MAX LLSMTP__REPLY_LINE_MAX

const char *
llsmtp__reply_generic_text(int code)
{
    /* clang-format off */
    switch (code) {
    case 211: return "System status";
    case 214: return "Help message";
    case 220: return "Service ready";
    case 221: return "Service closing transmission channel";
    case 235: return "Authentication successful";
    case 250: return "OK";
    case 251: return "User not local; will forward";
    case 252: return "Cannot verify user, but will accept message";
    case 354: return "Start mail input; end with <CRLF>.<CRLF>";
    case 421: return "Service not available, closing transmission channel";
    case 450: return "Requested mail action not taken: mailbox unavailable";
    case 451: return "Requested action aborted: local error in processing";
    case 452: return "Requested action not taken: insufficient storage";
    case 454: return "Temporary authentication failure";
    case 530: return "Authentication required";
    case 534: return "Authentication mechanism is too weak";
    case 535: return "Authentication credentials invalid";
    case 538: return "Encryption required for requested authentication "
                     "mechanism";
    case 500: return "Syntax error, command unrecognized";
    case 501: return "Syntax error in parameters or arguments";
    case 502: return "Command not implemented";
    case 503: return "Bad sequence of commands";
    case 504: return "Command parameter not implemented";
    case 550: return "Requested action not taken: mailbox unavailable";
    case 551: return "User not local";
    case 552: return "Requested mail action aborted: exceeded storage "
                     "allocation";
    case 553: return "Requested action not taken: mailbox name not allowed";
    case 554: return "Transaction failed";
    case 555: return "MAIL FROM/RCPT TO parameters not recognized or not "
                     "implemented";
    default:
        break;
    }
    switch (code / 100) {
    case 2: return "OK";
    case 3: return "Continue";
    case 4: return "Temporary failure, try again later";
    default: return "Permanent failure";
    }
    /* clang-format on */
}

/* The enhanced code a reply code implies when the host gives none (RFC
 * 4954 6 for AUTH, RFC 3463 otherwise). */
static const char *
rpl_generic_enhanced(int code)
{
    /* clang-format off */
    switch (code) {
    case 235: return "2.7.0";
    case 432: return "4.7.12";
    case 454: return "4.7.0";
    case 530: return "5.7.0";
    case 534: return "5.7.9";
    case 535: return "5.7.8";
    case 538: return "5.7.11";
    case 552: return "5.3.4";
    case 500: return "5.5.2";
    case 501: case 504: case 555: return "5.5.4";
    case 502: case 503: return "5.5.1";
    default: return NULL;
    }
    /* clang-format on */
}

/* RFC 3463 2: class "." subject "." detail; subject and detail are 1-3
 * digits without leading zeros; class matches the reply's first digit and
 * 3xx replies carry none. */
static int
rpl_num(const char *e, size_t n, size_t *i)
{
    size_t start = *i;
    while (*i < n && llsmtp__is_digit((unsigned char)e[*i]))
        (*i)++;
    if (*i == start || *i - start > 3)
        return 0;
    if (*i - start > 1 && e[start] == '0')
        return 0;
    return 1;
}

int
llsmtp__enhanced_check(int code, const char *e, size_t n)
{
    size_t i = 1;
    if (n == 0)
        return 1;
    if (code / 100 == 3 || code / 100 == 1)
        return 0;
    if (n < 5 || e[0] != (char)('0' + code / 100) || e[1] != '.')
        return 0;
    i = 2;
    if (!rpl_num(e, n, &i) || i >= n || e[i] != '.')
        return 0;
    i++;
    if (!rpl_num(e, n, &i) || i != n)
        return 0;
    return 1;
}

int
llsmtp_reply_setn(llsmtp_reply *r, int code, const char *enhanced,
                  const char *text, size_t text_len)
{
    size_t elen, i, lines = 1;
    if (r == NULL || code < 200 || code > 599)
        return LLSMTP_E_REPLY;
    if (text == NULL)
        text_len = 0;
    if (text_len > LLSMTP_REPLY_TEXT_MAX)
        return LLSMTP_E_REPLY;
    for (i = 0; i + 1 < text_len; i++)
        if (text[i] == '\n')
            lines++;
    if (lines > LLSMTP_REPLY_LINES_MAX)
        return LLSMTP_E_REPLY;
    if (enhanced != NULL) {
        elen = strlen(enhanced);
        if (elen >= sizeof r->enhanced ||
            !llsmtp__enhanced_check(code, enhanced, elen))
            return LLSMTP_E_REPLY;
        memcpy(r->enhanced, enhanced, elen + 1);
    } else if (code / 100 == 3) {
        r->enhanced[0] = '\0';
    } else if (rpl_generic_enhanced(code) != NULL) {
        memcpy(r->enhanced, rpl_generic_enhanced(code),
               strlen(rpl_generic_enhanced(code)) + 1);
    } else {
        r->enhanced[0] = (char)('0' + code / 100);
        memcpy(r->enhanced + 1, ".0.0", 5);
    }
    r->code = code;
    /* copied: the host's buffer may die when its callback returns */
    if (text_len)
        memmove(r->text, text, text_len);
    r->text[text_len] = '\0';
    r->text_len = text_len;
    r->has_text = text != NULL;
    r->is_default = 0;
    return LLSMTP_OK;
}

int
llsmtp_reply_set(llsmtp_reply *r, int code, const char *enhanced,
                 const char *text)
{
    return llsmtp_reply_setn(r, code, enhanced, text,
                             text != NULL ? strlen(text) : 0);
}

int
llsmtp_reply_challenge(llsmtp_reply *r, const void *data, size_t n)
{
    /* 765 raw octets are 1020 Base64 characters: one 334 line */
    if (r == NULL || (data == NULL && n) || n > 765)
        return LLSMTP_E_REPLY;
    r->code = 334;
    r->enhanced[0] = '\0';
    if (n)
        memmove(r->text, data, n);
    r->text[n] = '\0';
    r->text_len = n;
    r->has_text = 1;
    r->id[0] = '\0';
    r->id_len = 0;
    r->is_default = 0;
    return LLSMTP_OK;
}

int
llsmtp_reply_set_id(llsmtp_reply *r, const char *id, size_t id_len)
{
    size_t i;
    if (r == NULL || (id == NULL && id_len != 0) ||
        id_len > LLSMTP_REPLY_ID_MAX)
        return LLSMTP_E_REPLY;
    for (i = 0; i < id_len; i++)
        if ((unsigned char)id[i] <= 0x20 || (unsigned char)id[i] >= 0x7f)
            return LLSMTP_E_REPLY;
    if (id_len)
        memmove(r->id, id, id_len);
    r->id[id_len] = '\0';
    r->id_len = id_len;
    return LLSMTP_OK;
}

/* Writer state: out[0..o) written; the current line's text starts at
 * text0 and its last space (a fold point) is at sp (0 = none). */
typedef struct rpl_writer {
    char *out;
    size_t cap, o, text0, sp, last_line, prefix, width;
    int code;
    const char *enh;
    size_t elen;
    int overflow;
} rpl_writer;

static void
rpl_begin_line(rpl_writer *w)
{
    if (w->o + w->prefix > w->cap) {
        w->overflow = 1;
        return;
    }
    w->last_line = w->o;
    w->out[w->o++] = (char)('0' + w->code / 100);
    w->out[w->o++] = (char)('0' + w->code / 10 % 10);
    w->out[w->o++] = (char)('0' + w->code % 10);
    w->out[w->o++] = '-';
    if (w->elen) {
        memcpy(w->out + w->o, w->enh, w->elen);
        w->o += w->elen;
        w->out[w->o++] = ' ';
    }
    w->text0 = w->o;
    w->sp = 0;
}

static void
rpl_end_line(rpl_writer *w)
{
    if (w->o + 2 > w->cap) {
        w->overflow = 1;
        return;
    }
    w->out[w->o++] = '\r';
    w->out[w->o++] = '\n';
}

static void
rpl_put(rpl_writer *w, char c)
{
    if (w->overflow)
        return;
    if (w->o - w->text0 >= w->width) {
        if (w->sp != 0) {
            /* Fold at the last space: the space becomes CRLF + prefix. */
            size_t tail = w->o - (w->sp + 1);
            size_t grow = 2 + w->prefix - 1;
            size_t at = w->sp;
            if (w->o + grow > w->cap) {
                w->overflow = 1;
                return;
            }
            memmove(w->out + at + 1 + grow, w->out + at + 1, tail);
            w->o = at;
            rpl_end_line(w);
            rpl_begin_line(w);
            w->o += tail;
        } else {
            rpl_end_line(w);
            rpl_begin_line(w);
        }
        if (w->overflow)
            return;
    }
    if (w->o + 1 > w->cap) {
        w->overflow = 1;
        return;
    }
    if (c == ' ')
        w->sp = w->o;
    w->out[w->o++] = c;
}

size_t
llsmtp__reply_write_general(char *out, size_t cap, int code,
                            const char *enhanced, const llsmtp_span *parts,
                            size_t nparts)
{
    rpl_writer w;
    size_t i, j;
    int pend_cr = 0, pend_nl = 0;

    if (code < 200 || code > 599)
        return 0;
    memset(&w, 0, sizeof w);
    w.out = out;
    w.cap = cap;
    w.code = code;
    w.enh = enhanced;
    w.elen = enhanced != NULL ? strlen(enhanced) : 0;
    w.prefix = 4 + (w.elen ? w.elen + 1 : 0);
    w.width = RPL_LINE_MAX - 2 - w.prefix;
    rpl_begin_line(&w);
    for (i = 0; i < nparts && !w.overflow; i++) {
        for (j = 0; j < parts[i].n; j++) {
            unsigned char c = (unsigned char)parts[i].p[j];
            if (!w.overflow && !pend_cr && !pend_nl && c >= 0x20 && c < 0x7f &&
                w.o - w.text0 < w.width) {
                /* A run of printable octets that fits the line as it
                 * is: copied at once, exactly as rpl_put would put it
                 * octet by octet (no fold, the last space kept as the
                 * fold point). The common reply is one such run. */
                const unsigned char *q = (const unsigned char *)parts[i].p + j;
                size_t lim = parts[i].n - j, room = w.width - (w.o - w.text0),
                       m = 0, sp;
                if (lim > room)
                    lim = room;
                while (m < lim && (unsigned)(q[m] - 0x20) < 0x5f)
                    m++;
                if (w.o + m > w.cap) {
                    w.overflow = 1;
                    break;
                }
                memcpy(w.out + w.o, q, m);
                for (sp = m; sp > 0 && q[sp - 1] != ' '; sp--)
                    ;
                if (sp != 0)
                    w.sp = w.o + sp - 1;
                w.o += m;
                j += m - 1; /* m >= 1: q[0] is c */
                continue;
            }
            if (pend_cr && c != '\n')
                rpl_put(&w, ' ');
            pend_cr = 0;
            if (c == '\r') {
                pend_cr = 1;
                continue;
            }
            if (c == '\n') {
                pend_nl = 1;
                continue;
            }
            if (pend_nl) {
                pend_nl = 0;
                rpl_end_line(&w);
                rpl_begin_line(&w);
            }
            if (c == '\t')
                c = ' ';
            else if (c < 0x20 || c >= 0x7f)
                c = '?';
            rpl_put(&w, (char)c);
        }
    }
    if (pend_cr)
        rpl_put(&w, ' ');
    /* A line must not end in a space we added; trim host trailing space
     * only when the line would otherwise be just the prefix. */
    rpl_end_line(&w);
    if (w.overflow)
        return 0;
    out[w.last_line + 3] = ' ';
    return w.o;
}

/* Whether p[0..n) is plain text: printable ASCII (0x20-0x7e) only, so
 * nothing in it is sanitised. Eight octets at a time: a word has an
 * octet under 0x20 when (x - 0x20..20) & ~x has a high bit set, one
 * over 0x7e when (x + 0x01..01) | x has (exact for the word as a whole,
 * whatever the carries and borrows do to single octets). */
static int
rpl_plain(const char *p, size_t n)
{
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
    uint64_t x, bad = 0;
    size_t i = 0;
    unsigned char t = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&x, p + i, 8);
        bad |= ((x - 0x20 * ones) & ~x) | (x + ones) | x;
    }
    for (; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        t |= (unsigned char)((unsigned char)(c - 0x20) >= 0x5f);
    }
    return (bad & high) == 0 && t == 0;
}

/* The common reply: one line of plain text that fits it, so the writer
 * above would sanitise nothing and fold nothing. It is written as the
 * writer writes it, a part at a time: "ddd", " ", the enhanced code and
 * a space, the text, CRLF. 0 when the text does not fit one line (the
 * caller goes the general way) or the reply does not fit cap. */
size_t
llsmtp__reply_write_plain(char *out, size_t cap, int code, const char *enh,
                          size_t elen, const llsmtp_span *parts, size_t nparts)
{
    size_t prefix = 4 + (elen ? elen + 1 : 0), total = 0, i, o;
    if (code < 200 || code > 599)
        return 0;
    for (i = 0; i < nparts; i++)
        total += parts[i].n;
    if (prefix > RPL_LINE_MAX - 2 || total > RPL_LINE_MAX - 2 - prefix ||
        cap < prefix + 2 || total > cap - prefix - 2)
        return 0;
    out[0] = (char)('0' + code / 100);
    out[1] = (char)('0' + code / 10 % 10);
    out[2] = (char)('0' + code % 10);
    out[3] = ' ';
    o = 4;
    if (elen) {
        memcpy(out + o, enh, elen);
        o += elen;
        out[o++] = ' ';
    }
    for (i = 0; i < nparts; i++) {
        if (parts[i].n)
            memcpy(out + o, parts[i].p, parts[i].n);
        o += parts[i].n;
    }
    out[o++] = '\r';
    out[o++] = '\n';
    return o;
}

size_t
llsmtp__reply_write(char *out, size_t cap, int code, const char *enhanced,
                    const llsmtp_span *parts, size_t nparts)
{
    size_t elen = enhanced != NULL ? strlen(enhanced) : 0, i, w;
    for (i = 0; i < nparts && rpl_plain(parts[i].p, parts[i].n); i++)
        ;
    if (i == nparts &&
        (w = llsmtp__reply_write_plain(out, cap, code, enhanced, elen, parts,
                                       nparts)) != 0)
        return w;
    return llsmtp__reply_write_general(out, cap, code, enhanced, parts,
                                       nparts);
}

size_t
llsmtp__reply_parts(const llsmtp_reply *r, int id_any, llsmtp_span *parts)
{
    size_t np = 0;
    if (r->id_len && r->id_len <= LLSMTP_REPLY_ID_MAX &&
        (id_any || r->code / 100 == 2)) {
        parts[np].p = r->id;
        parts[np++].n = r->id_len;
        parts[np].p = " ";
        parts[np++].n = 1;
    }
    if (r->has_text && !r->is_default &&
        r->text_len <= LLSMTP_REPLY_TEXT_MAX) {
        parts[np].p = r->text;
        parts[np++].n = r->text_len;
    } else {
        parts[np].p = llsmtp__reply_generic_text(r->code);
        parts[np].n = strlen(parts[np].p);
        np++;
    }
    return np;
}

size_t
llsmtp_reply_format(const llsmtp_reply *r, int with_enhanced, char *buf,
                    size_t buflen)
{
    llsmtp_span parts[3];
    size_t np;
    const char *enh;
    size_t w;
    if (r == NULL || buf == NULL || buflen == 0 || r->code < 200 ||
        r->code > 599)
        return 0;
    enh = with_enhanced && r->enhanced[0] ? r->enhanced : NULL;
    if (enh != NULL && !llsmtp__enhanced_check(r->code, enh, strlen(enh)))
        return 0;
    /* the id whatever the code: llsmtp_reply_format has always printed
     * it so (the session prints it on 2xx replies only) */
    np = llsmtp__reply_parts(r, 1, parts);
    w = llsmtp__reply_write(buf, buflen - 1, r->code, enh, parts, np);
    buf[w] = '\0';
    return w;
}
