/* SPDX-License-Identifier: MIT
 *
 * client.c - the sending side's building blocks: a strict, bounded,
 * incremental reply parser (no reply can make it buffer without limit:
 * lines are at most 512 octets and replies a configured number of lines),
 * the EHLO keyword reader, and the body encoder that dot-stuffs and turns
 * every line ending into CRLF so a message can neither end early nor carry
 * a bare LF to the next hop. The client session state machine will sit on
 * these (issue 9).
 */
#include "internal.h"

/* ---- replies ----------------------------------------------------------- */

void
llsmtp_reply_parser_init(llsmtp_reply_parser *p, unsigned max_lines)
{
    if (p == NULL)
        return;
    memset(p, 0, sizeof *p);
    p->max_lines_ = max_lines ? max_lines : 100;
}

static int
cli_fail(llsmtp_reply_parser *p)
{
    p->failed_ = 1;
    p->len_ = 0;
    return LLSMTP_E_SYNTAX;
}

/* RFC 5321 4.2: Reply-line = *( Reply-code "-" [ textstring ] CRLF )
 * Reply-code [ SP textstring ] CRLF. */
static int
cli_line(llsmtp_reply_parser *p, const char *d, size_t n,
         llsmtp_reply_line *line)
{
    size_t m, i;
    int code, last;
    if (n < 2 || d[n - 2] != '\r')
        return cli_fail(p); /* a bare LF */
    m = n - 2;
    if (m < 3 || d[0] < '2' || d[0] > '5' || d[1] < '0' || d[1] > '5' ||
        !llsmtp__is_digit((unsigned char)d[2]))
        return cli_fail(p);
    code = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
    if (m > 3 && d[3] != ' ' && d[3] != '-')
        return cli_fail(p);
    for (i = 4; i < m; i++)
        if (d[i] == '\r' || d[i] == '\0')
            return cli_fail(p);
    if (p->lines_ > 0 && code != p->code_)
        return cli_fail(p); /* continuation codes must match */
    if (p->lines_ >= p->max_lines_)
        return cli_fail(p);
    p->code_ = code;
    last = m == 3 || d[3] == ' ';
    line->code = code;
    line->last = last;
    line->index = p->lines_;
    line->text.p = d + (m > 3 ? 4 : 3);
    line->text.n = m > 3 ? m - 4 : 0;
    p->lines_ = last ? 0 : p->lines_ + 1;
    return 1;
}

int
llsmtp_reply_parser_feed(llsmtp_reply_parser *p, const char *buf, size_t len,
                         size_t *used, llsmtp_reply_line *line)
{
    const char *lf;
    size_t k;
    if (used == NULL)
        return LLSMTP_E_INVAL;
    *used = 0;
    if (p == NULL || line == NULL || (buf == NULL && len))
        return LLSMTP_E_INVAL;
    if (p->failed_)
        return LLSMTP_E_SYNTAX;
    if (len == 0)
        return LLSMTP_OK;
    lf = (const char *)memchr(buf, '\n', len);
    if (lf == NULL) {
        if (p->len_ + len >= LLSMTP_REPLY_LINE_MAX)
            return cli_fail(p); /* no room left for its CRLF */
        memcpy(p->buf_ + p->len_, buf, len);
        p->len_ += len;
        *used = len;
        return LLSMTP_OK;
    }
    k = (size_t)(lf - buf) + 1;
    *used = k;
    if (p->len_ == 0) {
        if (k > LLSMTP_REPLY_LINE_MAX)
            return cli_fail(p);
        return cli_line(p, buf, k, line); /* in place: no copy */
    }
    if (p->len_ + k > LLSMTP_REPLY_LINE_MAX)
        return cli_fail(p);
    memcpy(p->buf_ + p->len_, buf, k);
    k += p->len_;
    p->len_ = 0;
    return cli_line(p, p->buf_, k, line);
}

/* ---- EHLO keywords (RFC 5321 4.1.1.1, and each extension's RFC) ------- */

static unsigned
cli_mech(const char *p, size_t n)
{
    if (llsmtp__iequal(p, n, "PLAIN", 5))
        return LLSMTP_MECH_PLAIN;
    if (llsmtp__iequal(p, n, "LOGIN", 5))
        return LLSMTP_MECH_LOGIN;
    if (llsmtp__iequal(p, n, "CRAM-MD5", 8))
        return LLSMTP_MECH_CRAM_MD5;
    return n ? LLSMTP_MECH_OTHER : 0;
}

void
llsmtp_ehlo_keyword(llsmtp_ehlo_info *info, llsmtp_span text)
{
    static const struct {
        const char *name;
        unsigned ext;
    } kw[] = {{"PIPELINING", LLSMTP_EXT_PIPELINING},
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
    size_t k = 0, i, a;
    unsigned ext = 0;
    if (info == NULL || (text.p == NULL && text.n))
        return;
    while (k < text.n && text.p[k] != ' ' && text.p[k] != '=')
        k++;
    for (i = 0; i < sizeof kw / sizeof kw[0]; i++)
        if (llsmtp__iequal(text.p, k, kw[i].name, strlen(kw[i].name)))
            ext = kw[i].ext;
    if (ext == 0)
        return;
    info->extensions |= ext;
    if (ext == LLSMTP_EXT_SIZE) {
        /* RFC 1870 4: "SIZE" [SP 1*20DIGIT]; 0 or none: no fixed limit */
        uint64_t v = 0;
        for (a = k + 1; a < text.n && a <= k + 20 &&
                        llsmtp__is_digit((unsigned char)text.p[a]);
             a++)
            v = v * 10 + (uint64_t)(text.p[a] - '0');
        if (a == text.n)
            info->max_size = v;
    } else if (ext == LLSMTP_EXT_AUTH) {
        /* "AUTH PLAIN LOGIN", or the legacy "AUTH=PLAIN LOGIN" */
        for (a = k + 1; a < text.n;) {
            size_t b = a;
            while (b < text.n && text.p[b] != ' ')
                b++;
            info->mechanisms |= cli_mech(text.p + a, b - a);
            a = b + 1;
        }
    }
}

/* ---- the outgoing body (RFC 5321 4.5.2) ---------------------------------- */

void
llsmtp_dot_init(llsmtp_dot_encoder *e)
{
    if (e != NULL) {
        e->bol_ = 1;
        e->cr_ = 0;
    }
}

size_t
llsmtp_dot_encoded_max(size_t n)
{
    /* each byte may double ("." at a line start, LF to CRLF); a CR held
     * over from the last call adds its CRLF */
    return n > (SIZE_MAX - 2) / 2 ? SIZE_MAX : 2 * n + 2;
}

size_t
llsmtp_dot_encode(llsmtp_dot_encoder *e, const char *in, size_t n, char *out,
                  size_t cap)
{
    size_t i, o = 0;
    if (e == NULL || (in == NULL && n) || out == NULL ||
        cap < llsmtp_dot_encoded_max(n))
        return 0;
    for (i = 0; i < n; i++) {
        char c = in[i];
        if (e->cr_) {
            /* CRLF, or a bare CR: either way one CRLF */
            e->cr_ = 0;
            out[o++] = '\r';
            out[o++] = '\n';
            e->bol_ = 1;
            if (c == '\n')
                continue;
        }
        if (c == '\r') {
            e->cr_ = 1;
            continue;
        }
        if (c == '\n') {
            out[o++] = '\r';
            out[o++] = '\n';
            e->bol_ = 1;
            continue;
        }
        if (e->bol_ && c == '.')
            out[o++] = '.'; /* transparency */
        out[o++] = c;
        e->bol_ = 0;
    }
    return o;
}

size_t
llsmtp_dot_finish(llsmtp_dot_encoder *e, char *out, size_t cap)
{
    size_t o = 0;
    if (e == NULL || out == NULL || cap < 5)
        return 0;
    if (e->cr_ || !e->bol_) {
        out[o++] = '\r';
        out[o++] = '\n';
    }
    out[o++] = '.';
    out[o++] = '\r';
    out[o++] = '\n';
    llsmtp_dot_init(e);
    return o;
}
