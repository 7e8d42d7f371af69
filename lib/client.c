/* SPDX-License-Identifier: MIT
 *
 * client.c - the sending side's building blocks: a strict, bounded,
 * incremental reply parser (no reply can make it buffer without limit:
 * lines are at most 512 octets and replies a configured number of lines),
 * the EHLO keyword reader, and the body encoder that dot-stuffs and turns
 * every line ending into CRLF so a message can neither end early nor carry
 * a bare LF to the next hop; and the client session on top of them:
 * greeting, EHLO with HELO fallback, STARTTLS, AUTH PLAIN/LOGIN,
 * PIPELINING, SIZE, 8BITMIME, SMTPUTF8, DSN pass-through, per-recipient
 * results, LMTP, several messages per connection, QUIT.
 */
#include "internal.h"

#ifndef LLSMTP_NO_CLIENT

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
        /* RFC 1870 4: "SIZE" [SP 1*20DIGIT]; 0 or none: no fixed limit.
         * Twenty digits can exceed 2^64 - 1: a value that would wrap is
         * "no limit known", never the small number the wrap leaves
         * (every message would be refused here with a permanent 552). */
        uint64_t v = 0;
        int big = 0;
        for (a = k + 1; a < text.n && a <= k + 20 &&
                        llsmtp__is_digit((unsigned char)text.p[a]);
             a++) {
            unsigned d = (unsigned)(text.p[a] - '0');
            if (v > (UINT64_MAX - d) / 10)
                big = 1;
            else
                v = v * 10 + d;
        }
        if (a == text.n)
            info->max_size = big ? 0 : v;
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

/* ---- the client session (RFC 5321 3.3, 4.5.3.2; RFC 2920, 3207, 4954,
 * 1870, 6152, 6531, 3461, 2033) ------------------------------------------ */

enum {
    CS_GREET,
    CS_EHLO,
    CS_HELO,
    CS_STARTTLS,
    CS_TLS_WAIT,
    CS_AUTH,
    CS_LOGIN_USER,
    CS_LOGIN_PASS,
    CS_READY,
    CS_TXN,
    CS_BODY,
    CS_DOT,
    CS_QUIT,
    CS_DEAD
};

/* Positions in a transaction's command sequence: 0 RSET (only after a
 * transaction left open), 1 MAIL, 2..nto+1 RCPT, nto+2 DATA. */
#define CP_RSET 0u
#define CP_MAIL 1u
#define CP_DATA(m) ((m)->nto + 2)

static int
cli_clean(const char *p, size_t n, int angle)
{
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch < 0x20 || ch == 0x7f || (angle && (ch == '<' || ch == '>')))
            return 0;
    }
    return 1;
}

/* A mailbox the host wants in MAIL FROM:<...> or RCPT TO:<...>: checked
 * with the library's own path parser (RFC 5321 4.1.2), so a quoted local
 * part may hold "<", ">" or spaces ("x> y"@far.test is legal and must be
 * relayable) while CR, LF, NUL and anything else that could end or split
 * the command line is refused: the parser admits none of them, and the
 * whole "<mailbox>" must be one Path. Empty: the null reverse path. */
static int
cli_path_ok(llsmtp_span mb, int is_rcpt)
{
    char buf[258];
    llsmtp_path path;
    size_t end = 0;
    unsigned opts = LLSMTP_PARSE_UTF8 |
                    (is_rcpt ? LLSMTP_PARSE_ALLOW_POSTMASTER : 0);
    if (mb.n == 0)
        return !is_rcpt;
    if (mb.n > 254)
        return 0;
    buf[0] = '<';
    memcpy(buf + 1, mb.p, mb.n);
    buf[mb.n + 1] = '>';
    return llsmtp_path_parse(buf, mb.n + 2, opts, &path, &end) == LLSMTP_OK &&
           end == mb.n + 2;
}

static void
cli_event(llsmtp_client *c, int type, int code, int local, long rcpt,
          const char *text, size_t n)
{
    llsmtp_client_event *e;
    if (c->nev_ >= sizeof c->ev_ / sizeof c->ev_[0])
        return; /* cannot happen: at most three per reply (RCPT, MESSAGE,
                   READY) */
    e = &c->ev_[c->nev_++];
    e->type = type;
    e->code = code;
    e->local = local;
    e->rcpt = rcpt;
    if (text != NULL) { /* a local reason */
        e->text.p = text;
        e->text.n = n;
    } else {
        e->text.p = c->text_;
        e->text.n = c->text_n_;
    }
}

/* Queues one command line made of up to four pieces; 0 when no room. */
static int
cli_cmd(llsmtp_client *c, const char *a, size_t an, const char *b, size_t bn,
        const char *d, size_t dn)
{
    size_t need = an + bn + dn + 2;
    if (c->out_off_ > 0 && c->out_len_ + need > LLSMTP_CLIENT_OUT) {
        memmove(c->out_, c->out_ + c->out_off_, c->out_len_ - c->out_off_);
        c->out_len_ -= c->out_off_;
        c->out_off_ = 0;
    }
    if (c->out_len_ + need > LLSMTP_CLIENT_OUT)
        return 0;
    memcpy(c->out_ + c->out_len_, a, an);
    c->out_len_ += an;
    if (bn)
        memcpy(c->out_ + c->out_len_, b, bn);
    c->out_len_ += bn;
    if (dn)
        memcpy(c->out_ + c->out_len_, d, dn);
    c->out_len_ += dn;
    memcpy(c->out_ + c->out_len_, "\r\n", 2);
    c->out_len_ += 2;
    return 1;
}

#define CLI_LIT(s) (s), sizeof(s) - 1

static void
cli_fail_local(llsmtp_client *c, int code, const char *why, int quit)
{
    cli_event(c, LLSMTP_CEV_FAIL, code, 1, -1, why, strlen(why));
    if (quit)
        cli_cmd(c, CLI_LIT("QUIT"), NULL, 0, NULL, 0);
    c->state_ = CS_DEAD;
}

/* The server refused something that ends the session. */
static void
cli_fail_reply(llsmtp_client *c, int code)
{
    cli_event(c, LLSMTP_CEV_FAIL, code, 0, -1, NULL, 0);
    /* RFC 5321 3.8: after 421 the server closes; otherwise say goodbye */
    if (code != 421)
        cli_cmd(c, CLI_LIT("QUIT"), NULL, 0, NULL, 0);
    c->state_ = CS_DEAD;
}

/* Command lines queued but not yet written in full. Every line in the
 * queue ends in LF and no command holds one (cli_clean refuses control
 * characters), so counting LFs counts commands. */
static size_t
cli_unwritten(const llsmtp_client *c)
{
    size_t i, k = 0;
    for (i = c->out_off_; i < c->out_len_; i++)
        k += c->out_[i] == '\n';
    return k;
}

/* A reply that answers no command the server has received, or that no
 * server may give to it: a protocol error. The server is not following
 * the dialogue, so nothing it says can be trusted to mean what it says
 * (a 250 to DATA may not mean the message was taken: it was never sent).
 * The open transaction fails temporarily (451 for every recipient with
 * no result yet), and nothing more is sent, not even QUIT: close. The
 * text goes in text_, as a server's would. */
static void
cli_protocol(llsmtp_client *c, const char *cmd, int code, const char *why)
{
    size_t n = 0, k;
    const char *parts[4];
    char num[4];
    parts[0] = "4.5.0 ";
    parts[1] = cmd;
    parts[2] = code ? " answered with " : NULL;
    parts[3] = why;
    num[0] = (char)('0' + code / 100);
    num[1] = (char)('0' + code / 10 % 10);
    num[2] = (char)('0' + code % 10);
    num[3] = '\0';
    for (k = 0; k < 4; k++) {
        size_t l = parts[k] ? strlen(parts[k]) : 0;
        memcpy(c->text_ + n, parts[k] ? parts[k] : "", l);
        n += l;
        if (k == 2 && code) {
            memcpy(c->text_ + n, num, 3);
            n += 3;
        }
    }
    c->text_n_ = n;
    cli_event(c, LLSMTP_CEV_FAIL, 451, 1, -1, c->text_, n);
    c->state_ = CS_DEAD;
}

static void
cli_hello(llsmtp_client *c, int helo)
{
    const char *verb = c->flags_ & LLSMTP_CLI_LMTP ? "LHLO "
                       : helo                      ? "HELO "
                                                   : "EHLO ";
    memset(&c->caps_, 0, sizeof c->caps_);
    cli_cmd(c, verb, 5, c->helo_, c->helo_n_, NULL, 0);
    c->state_ = helo ? CS_HELO : CS_EHLO;
}

static void
cli_ready(llsmtp_client *c)
{
    c->state_ = CS_READY;
    c->msg_ = NULL;
    cli_event(c, LLSMTP_CEV_READY, 0, 1, -1, "", 0);
}

/* After a greeting: STARTTLS, then AUTH, then ready (RFC 3207, 4954). */
static void
cli_next(llsmtp_client *c)
{
    unsigned want_tls = c->flags_ &
                        (LLSMTP_CLI_STARTTLS | LLSMTP_CLI_REQUIRE_TLS);
    if (!c->tls_ && want_tls && !c->tls_tried_ &&
        (c->caps_.extensions & LLSMTP_EXT_STARTTLS)) {
        c->tls_tried_ = 1;
        cli_cmd(c, CLI_LIT("STARTTLS"), NULL, 0, NULL, 0);
        c->state_ = CS_STARTTLS;
        return;
    }
    if (!c->tls_ && (c->flags_ & LLSMTP_CLI_REQUIRE_TLS)) {
        cli_fail_local(c, 530, "5.7.10 TLS required but not available", 1);
        return;
    }
    if (c->user_n_ > 0 && !c->authed_) {
        char raw[2 + 255 + 255], b64[700];
        size_t rn = 0, bn = 0;
        if (!c->tls_ && !(c->flags_ & LLSMTP_CLI_AUTH_CLEARTEXT)) {
            cli_fail_local(c, 530,
                           "5.7.0 will not send credentials in cleartext", 1);
            return;
        }
        if (c->caps_.mechanisms & LLSMTP_MECH_PLAIN) {
            /* RFC 4616: [authzid] NUL authcid NUL passwd, as the initial
             * response (RFC 4954 4) */
            raw[rn++] = '\0';
            memcpy(raw + rn, c->user_, c->user_n_);
            rn += c->user_n_;
            raw[rn++] = '\0';
            memcpy(raw + rn, c->pass_, c->pass_n_);
            rn += c->pass_n_;
            llsmtp_b64_encode(raw, rn, b64, sizeof b64, &bn);
            cli_cmd(c, CLI_LIT("AUTH PLAIN "), b64, bn, NULL, 0);
            llsmtp__wipe(raw, sizeof raw);
            llsmtp__wipe(b64, sizeof b64);
            c->state_ = CS_AUTH;
            return;
        }
        if (c->caps_.mechanisms & LLSMTP_MECH_LOGIN) {
            cli_cmd(c, CLI_LIT("AUTH LOGIN"), NULL, 0, NULL, 0);
            c->state_ = CS_LOGIN_USER;
            return;
        }
        cli_fail_local(c, 530,
                       "5.7.4 the server offers no AUTH PLAIN or LOGIN", 1);
        return;
    }
    cli_ready(c);
}

static void
cli_b64_line(llsmtp_client *c, const char *p, size_t n)
{
    char b64[400];
    size_t bn = 0;
    llsmtp_b64_encode(p, n, b64, sizeof b64, &bn);
    cli_cmd(c, b64, bn, NULL, 0, NULL, 0);
    llsmtp__wipe(b64, sizeof b64);
}

static int
cli_is_bit(const llsmtp_client *c, size_t i)
{
    return (c->ok_[i / 8] >> (i % 8)) & 1;
}

/* Appends k bytes to a command being built. */
static void
cli_app(char *line, size_t *n, const char *src, size_t k)
{
    if (k)
        memcpy(line + *n, src, k);
    *n += k;
}

/* Queues as much of the transaction as may go now: everything that fits
 * with PIPELINING, otherwise the next command once all before it are
 * answered. */
static void
cli_pump(llsmtp_client *c)
{
    const llsmtp_client_msg *m = c->msg_;
    int pipe = (c->caps_.extensions & LLSMTP_EXT_PIPELINING) &&
               !(c->flags_ & LLSMTP_CLI_NO_PIPELINING);
    while (c->state_ == CS_TXN && c->sent_ <= CP_DATA(m)) {
        size_t pos = c->sent_;
        if (!pipe && c->got_ < pos)
            return;
        if (!c->mail_ok_ && c->got_ > CP_MAIL)
            return; /* MAIL was refused: send nothing more */
        if (pos == CP_RSET) {
            if (!cli_cmd(c, CLI_LIT("RSET"), NULL, 0, NULL, 0))
                return;
        } else if (pos == CP_MAIL) {
            char line[LLSMTP_CLIENT_OUT / 2];
            size_t n = 0;
            cli_app(line, &n, CLI_LIT("MAIL FROM:<"));
            cli_app(line, &n, m->from.p, m->from.n);
            line[n++] = '>';
            if (m->size && (c->caps_.extensions & LLSMTP_EXT_SIZE)) {
                char d[20];
                size_t k = 0;
                uint64_t v = m->size;
                cli_app(line, &n, CLI_LIT(" SIZE="));
                while (v > 0) {
                    d[k++] = (char)('0' + v % 10);
                    v /= 10;
                }
                while (k > 0)
                    line[n++] = d[--k];
            }
            if ((m->flags & LLSMTP_MSG_8BIT) &&
                (c->caps_.extensions & LLSMTP_EXT_8BITMIME)) {
                cli_app(line, &n, CLI_LIT(" BODY=8BITMIME"));
            }
            if (m->flags & LLSMTP_MSG_SMTPUTF8) {
                cli_app(line, &n, CLI_LIT(" SMTPUTF8"));
            }
            if (m->mail_params.n && (c->caps_.extensions & LLSMTP_EXT_DSN)) {
                line[n++] = ' ';
                cli_app(line, &n, m->mail_params.p, m->mail_params.n);
            }
            if (!cli_cmd(c, line, n, NULL, 0, NULL, 0))
                return;
        } else if (pos < CP_DATA(m)) {
            size_t i = pos - 2, n = 0;
            char line[LLSMTP_CLIENT_OUT / 2];
            cli_app(line, &n, CLI_LIT("RCPT TO:<"));
            cli_app(line, &n, m->to[i].p, m->to[i].n);
            line[n++] = '>';
            if (m->rcpt_params != NULL && m->rcpt_params[i].n &&
                (c->caps_.extensions & LLSMTP_EXT_DSN)) {
                line[n++] = ' ';
                cli_app(line, &n, m->rcpt_params[i].p, m->rcpt_params[i].n);
            }
            if (!cli_cmd(c, line, n, NULL, 0, NULL, 0))
                return;
        } else {
            /* DATA ends a pipelined group (RFC 2920 3.1); otherwise it
             * goes only when a recipient was accepted */
            if (c->got_ == pos && c->nok_ == 0)
                return;
            if (!cli_cmd(c, CLI_LIT("DATA"), NULL, 0, NULL, 0))
                return;
        }
        c->sent_++;
    }
}

/* The transaction is over: its result, then ready for the next one. */
static void
cli_done(llsmtp_client *c, int code, int local, const char *why)
{
    cli_event(c, LLSMTP_CEV_MESSAGE, code, local, -1, why,
              why ? strlen(why) : 0);
    cli_ready(c);
}

/* The transaction ends without a message: MAIL's refusal is the result
 * for everyone, or no recipient was accepted. */
static void
cli_no_message(llsmtp_client *c)
{
    if (!c->mail_ok_) {
        memcpy(c->text_, c->mail_text_, c->mail_text_n_);
        c->text_n_ = c->mail_text_n_;
        cli_done(c, c->mail_code_, 0, NULL);
    } else {
        cli_done(c, 554, 1, "5.5.0 no recipient was accepted");
    }
}

/* One whole reply in a transaction, in command order. */
static void
cli_txn_reply(llsmtp_client *c, int code)
{
    const llsmtp_client_msg *m = c->msg_;
    size_t pos = c->got_;
    static const char *const names[] = {"RSET", "MAIL", "RCPT", "DATA"};
    const char *name = names[pos < CP_DATA(m) ? (pos < 2 ? pos : 2) : 3];
    /* RFC 2920 3.1: replies come in command order, one for each command
     * the server has received; the command this one answers must have
     * been written, all of it */
    if (pos >= c->sent_) {
        cli_protocol(c, "", 0, "reply to a command that was not sent");
        return;
    }
    if (cli_unwritten(c) > c->sent_ - pos - 1) {
        cli_protocol(c, name, 0, " reply before the command was sent");
        return;
    }
    /* RFC 5321 4.3.2: 354 to DATA and nothing else starts the body; no
     * other 2xx/3xx fits DATA, and no 3xx fits MAIL, RCPT or RSET */
    if (pos == CP_DATA(m) ? code != 354 && code / 100 <= 3 : code / 100 == 3) {
        cli_protocol(c, name, code,
                     pos == CP_DATA(m) ? ", not 354: no message was sent"
                                       : ": no message was sent");
        return;
    }
    c->got_++;
    if (pos == CP_RSET) {
        if (code / 100 == 2)
            c->dirty_ = 0;
    } else if (pos == CP_MAIL) {
        c->mail_ok_ = code / 100 == 2;
        if (c->mail_ok_) {
            c->dirty_ = 1;
        } else {
            /* no transaction was opened; keep this reply for the end */
            c->dirty_ = 0;
            c->mail_code_ = code;
            memcpy(c->mail_text_, c->text_, c->text_n_);
            c->mail_text_n_ = c->text_n_;
        }
    } else if (pos < CP_DATA(m)) {
        size_t i = pos - 2;
        if (c->mail_ok_) {
            if (code / 100 == 2) {
                c->ok_[i / 8] |= (unsigned char)(1u << (i % 8));
                c->nok_++;
            }
            cli_event(c, LLSMTP_CEV_RCPT, code, 0, (long)i, NULL, 0);
        }
    } else if (code == 354) {
        if (c->mail_ok_ && c->nok_ > 0) {
            llsmtp_dot_init(&c->enc_);
            c->state_ = CS_BODY;
            cli_event(c, LLSMTP_CEV_BODY, code, 0, -1, NULL, 0);
            return;
        }
        if (c->flags_ & LLSMTP_CLI_LMTP) {
            /* RFC 2033 4.2: DATA MUST fail without a recipient, and no
             * reply would follow an empty message */
            cli_fail_local(c, 0,
                           "LMTP server accepted DATA without a recipient", 1);
            return;
        }
        /* RFC 2920 3.1: DATA accepted though nothing can be delivered:
         * end it at once with an empty message */
        cli_cmd(c, CLI_LIT("."), NULL, 0, NULL, 0);
        c->state_ = CS_DOT;
        c->lmtp_left_ = 1;
        c->throwaway_ = 1;
        return;
    } else { /* DATA refused */
        if (c->mail_ok_ && c->nok_ > 0)
            cli_done(c, code, 0, NULL);
        else
            cli_no_message(c);
        return;
    }
    /* nothing more will be sent when MAIL failed, or when every RCPT
     * was answered and none accepted; end once all sent are answered */
    if (c->got_ == c->sent_ && c->got_ > CP_MAIL &&
        (!c->mail_ok_ || (c->got_ == CP_DATA(m) && c->nok_ == 0))) {
        cli_no_message(c);
        return;
    }
    cli_pump(c);
}

/* The reply(ies) after the final dot: one, or one per accepted recipient
 * in LMTP (RFC 2033 4.2). */
static void
cli_dot_reply(llsmtp_client *c, int code)
{
    if (c->out_off_ < c->out_len_) {
        cli_protocol(c, "", 0, "reply before the end of data was sent");
        return;
    }
    if (code / 100 == 3) { /* RFC 5321 4.1.1.4: 250 or a failure */
        cli_protocol(c, "end of data", code, "");
        return;
    }
    if (c->throwaway_) { /* the empty message of RFC 2920 3.1 */
        c->throwaway_ = 0;
        c->dirty_ = 0;
        cli_no_message(c);
        return;
    }
    c->dirty_ = 0;
    if (c->flags_ & LLSMTP_CLI_LMTP) {
        size_t i = c->lmtp_next_;
        while (i < c->msg_->nto && !cli_is_bit(c, i))
            i++;
        c->lmtp_next_ = i + 1;
        if (--c->lmtp_left_ > 0) {
            cli_event(c, LLSMTP_CEV_MESSAGE, code, 0, (long)i, NULL, 0);
            return;
        }
        cli_event(c, LLSMTP_CEV_MESSAGE, code, 0, (long)i, NULL, 0);
        cli_ready(c);
        return;
    }
    cli_done(c, code, 0, NULL);
}

/* One complete reply. */
static void
cli_reply(llsmtp_client *c, int code)
{
    int ok = code / 100 == 2;
    if (code == 421 && c->state_ != CS_QUIT) {
        cli_fail_reply(c, code); /* RFC 5321 3.8: service closing */
        return;
    }
    if (c->state_ != CS_TXN && c->state_ != CS_DOT && c->state_ != CS_QUIT &&
        cli_unwritten(c) > 0) {
        /* one command at a time here, and it was not written yet */
        cli_protocol(c, "", 0, "reply before the command was sent");
        return;
    }
    switch (c->state_) {
    case CS_GREET:
        if (code == 220)
            cli_hello(c, 0);
        else
            cli_fail_reply(c, code); /* RFC 5321 3.1: 554, then QUIT */
        break;
    case CS_EHLO:
        if (ok) {
            cli_next(c);
        } else if (code / 100 == 5 && !(c->flags_ & LLSMTP_CLI_LMTP)) {
            cli_hello(c, 1); /* RFC 5321 3.2: fall back to HELO */
        } else {
            cli_fail_reply(c, code);
        }
        break;
    case CS_HELO:
        if (ok) {
            cli_next(c); /* no extensions: cli_hello cleared them */
        } else {
            cli_fail_reply(c, code);
        }
        break;
    case CS_STARTTLS:
        if (code == 220) {
            c->state_ = CS_TLS_WAIT;
            cli_event(c, LLSMTP_CEV_TLS, code, 0, -1, NULL, 0);
        } else if (c->flags_ & LLSMTP_CLI_REQUIRE_TLS) {
            cli_fail_reply(c, code);
        } else {
            cli_next(c); /* RFC 3207 4.1: carry on without TLS */
        }
        break;
    case CS_AUTH:
        if (code == 235) {
            c->authed_ = 1;
            cli_next(c);
        } else if (code == 334) {
            /* RFC 4954 4: the initial response was sent; cancel */
            cli_cmd(c, CLI_LIT("*"), NULL, 0, NULL, 0);
        } else {
            cli_fail_reply(c, code);
        }
        break;
    case CS_LOGIN_USER:
    case CS_LOGIN_PASS:
        if (code != 334) {
            cli_fail_reply(c, code);
        } else if (c->state_ == CS_LOGIN_USER) {
            cli_b64_line(c, c->user_, c->user_n_);
            c->state_ = CS_LOGIN_PASS;
        } else {
            cli_b64_line(c, c->pass_, c->pass_n_);
            c->state_ = CS_AUTH;
        }
        break;
    case CS_TXN:
        cli_txn_reply(c, code);
        break;
    case CS_DOT:
        cli_dot_reply(c, code);
        break;
    case CS_QUIT:
        c->state_ = CS_DEAD;
        cli_event(c, LLSMTP_CEV_CLOSED, code, 0, -1, NULL, 0);
        break;
    default: /* READY, BODY, TLS_WAIT: nothing was asked */
        cli_protocol(c, "", 0, "unexpected reply from the server");
        break;
    }
}

int
llsmtp_client_init(llsmtp_client *c, const llsmtp_client_cfg *cfg)
{
    if (c == NULL || cfg == NULL || cfg->helo.n == 0 || cfg->helo.n > 255 ||
        cfg->helo.p == NULL || cfg->user.n > 255 || cfg->password.n > 255 ||
        (cfg->user.n && cfg->user.p == NULL) ||
        (cfg->password.n && cfg->password.p == NULL) ||
        (cfg->user.n == 0) != (cfg->password.n == 0) ||
        !cli_clean(cfg->helo.p, cfg->helo.n, 0) ||
        memchr(cfg->user.p ? cfg->user.p : "", '\0', cfg->user.n) ||
        memchr(cfg->password.p ? cfg->password.p : "", '\0', cfg->password.n))
        return LLSMTP_E_INVAL;
    memset(c, 0, sizeof *c);
    llsmtp_reply_parser_init(&c->rp_, cfg->max_reply_lines);
    memcpy(c->helo_, cfg->helo.p, cfg->helo.n);
    c->helo_n_ = (unsigned char)cfg->helo.n;
    if (cfg->user.n) {
        memcpy(c->user_, cfg->user.p, cfg->user.n);
        memcpy(c->pass_, cfg->password.p, cfg->password.n);
    }
    c->user_n_ = (unsigned char)cfg->user.n;
    c->pass_n_ = (unsigned char)cfg->password.n;
    c->flags_ = cfg->flags;
    c->state_ = CS_GREET;
    return LLSMTP_OK;
}

static int
cli_pop(llsmtp_client *c, llsmtp_client_event *ev)
{
    unsigned i;
    *ev = c->ev_[0];
    for (i = 1; i < c->nev_; i++)
        c->ev_[i - 1] = c->ev_[i];
    c->nev_--;
    return 1;
}

int
llsmtp_client_feed(llsmtp_client *c, const char *buf, size_t len, size_t *used,
                   llsmtp_client_event *ev)
{
    if (used == NULL)
        return LLSMTP_E_INVAL;
    *used = 0;
    if (c == NULL || ev == NULL || (buf == NULL && len))
        return LLSMTP_E_INVAL;
    if (c->nev_ > 0)
        return cli_pop(c, ev);
    while (*used < len && c->state_ != CS_DEAD) {
        llsmtp_reply_line l;
        size_t u;
        int rc;
        if (c->state_ == CS_TLS_WAIT) {
            /* bytes after "220" to STARTTLS and before the handshake
             * were injected (the client side of CVE-2011-0411) */
            *used = len;
            cli_fail_local(c, 0, "data after the STARTTLS reply", 0);
            break;
        }
        rc = llsmtp_reply_parser_feed(&c->rp_, buf + *used, len - *used, &u,
                                      &l);
        *used += u;
        if (rc == LLSMTP_OK)
            break;
        if (rc != 1) {
            *used = len;
            cli_fail_local(c, 0, "malformed reply from the server", 0);
            break;
        }
        if (l.index == 0) {
            size_t n = l.text.n < sizeof c->text_ ? l.text.n : sizeof c->text_;
            memcpy(c->text_, l.text.p, n);
            c->text_n_ = n;
        } else if (c->state_ == CS_EHLO) {
            llsmtp_ehlo_keyword(&c->caps_, l.text);
        }
        if (l.last) {
            cli_reply(c, l.code);
            if (c->state_ == CS_TLS_WAIT && *used < len) {
                /* more bytes behind "220" to STARTTLS: injected in
                 * cleartext (the client side of CVE-2011-0411) */
                c->nev_ = 0;
                *used = len;
                cli_fail_local(c, 0, "data after the STARTTLS reply", 0);
            }
            if (c->nev_ > 0)
                break;
        }
    }
    if (c->state_ == CS_DEAD && *used < len)
        *used = len; /* nothing more is read */
    if (c->nev_ > 0)
        return cli_pop(c, ev);
    return LLSMTP_OK;
}

llsmtp_span
llsmtp_client_output(const llsmtp_client *c)
{
    llsmtp_span s = {NULL, 0};
    if (c != NULL) {
        s.p = c->out_ + c->out_off_;
        s.n = c->out_len_ - c->out_off_;
    }
    return s;
}

void
llsmtp_client_consume(llsmtp_client *c, size_t n)
{
    if (c == NULL)
        return;
    if (n > c->out_len_ - c->out_off_)
        n = c->out_len_ - c->out_off_;
    /* written bytes may hold AUTH credentials: they do not linger */
    llsmtp__wipe(c->out_ + c->out_off_, n);
    c->out_off_ += n;
    if (c->out_off_ == c->out_len_)
        c->out_off_ = c->out_len_ = 0;
    cli_pump(c); /* more pipelined RCPTs may fit now */
}

int
llsmtp_client_mail(llsmtp_client *c, const llsmtp_client_msg *m)
{
    size_t i;
    if (c == NULL || m == NULL || (m->nto && m->to == NULL))
        return LLSMTP_E_INVAL;
    if (c->state_ != CS_READY || c->nev_ > 0)
        return LLSMTP_E_STATE;
    if (m->nto == 0 || m->nto > LLSMTP_CLIENT_RCPT_MAX)
        return LLSMTP_E_RANGE;
    /* RFC 5321 4.5.3.1.3: a path is at most 256 octets with its <> */
    if (!cli_path_ok(m->from, 0) || m->mail_params.n > 400 ||
        !cli_clean(m->mail_params.p, m->mail_params.n, 1))
        return LLSMTP_E_SYNTAX;
    for (i = 0; i < m->nto; i++) {
        if (!cli_path_ok(m->to[i], 1))
            return LLSMTP_E_SYNTAX;
        if (m->rcpt_params != NULL &&
            (m->rcpt_params[i].n > 400 ||
             !cli_clean(m->rcpt_params[i].p, m->rcpt_params[i].n, 1)))
            return LLSMTP_E_SYNTAX;
    }
    /* what the server cannot take is refused here, never corrupted */
    if (c->caps_.max_size && m->size > c->caps_.max_size) {
        cli_done(c, 552, 1, "5.3.4 message larger than the server's SIZE");
        return LLSMTP_OK;
    }
    if ((m->flags & LLSMTP_MSG_8BIT) &&
        !(c->caps_.extensions & LLSMTP_EXT_8BITMIME)) {
        /* RFC 6152 3: no 8-bit data to a server without 8BITMIME */
        cli_done(c, 554, 1,
                 "5.6.3 8-bit message and the server lacks 8BITMIME");
        return LLSMTP_OK;
    }
    if ((m->flags & LLSMTP_MSG_SMTPUTF8) &&
        !(c->caps_.extensions & LLSMTP_EXT_SMTPUTF8)) {
        cli_done(c, 553, 1,
                 "5.6.7 SMTPUTF8 message and the server lacks SMTPUTF8");
        return LLSMTP_OK;
    }
    c->msg_ = m;
    memset(c->ok_, 0, sizeof c->ok_);
    c->nok_ = 0;
    c->lmtp_next_ = 0;
    c->mail_ok_ = 0;
    c->throwaway_ = 0;
    c->sent_ = c->got_ = c->dirty_ ? CP_RSET : CP_MAIL;
    c->state_ = CS_TXN;
    cli_pump(c);
    return LLSMTP_OK;
}

int
llsmtp_client_body(llsmtp_client *c, const char *in, size_t n, char *out,
                   size_t cap, size_t *outlen)
{
    size_t i;
    if (outlen == NULL)
        return LLSMTP_E_INVAL;
    *outlen = 0;
    if (c == NULL || (in == NULL && n) || out == NULL)
        return LLSMTP_E_INVAL;
    if (c->state_ != CS_BODY)
        return LLSMTP_E_STATE;
    if (n == 0)
        return LLSMTP_OK;
    if (cap < llsmtp_dot_encoded_max(n))
        return LLSMTP_E_BUFFER;
    if (!(c->msg_->flags & LLSMTP_MSG_8BIT))
        for (i = 0; i < n; i++)
            if ((unsigned char)in[i] > 127) {
                c->state_ = CS_DEAD;
                return LLSMTP_E_SYNTAX;
            }
    *outlen = llsmtp_dot_encode(&c->enc_, in, n, out, cap);
    return LLSMTP_OK;
}

int
llsmtp_client_body_end(llsmtp_client *c)
{
    char tail[5];
    size_t n;
    if (c == NULL)
        return LLSMTP_E_INVAL;
    if (c->state_ != CS_BODY)
        return LLSMTP_E_STATE;
    n = llsmtp_dot_finish(&c->enc_, tail, sizeof tail);
    /* the CRLF written by cli_cmd ends the "." line */
    if (!cli_cmd(c, tail, n - 2, NULL, 0, NULL, 0))
        return LLSMTP_E_BUFFER;
    c->state_ = CS_DOT;
    c->lmtp_left_ = (c->flags_ & LLSMTP_CLI_LMTP) ? c->nok_ : 1;
    c->lmtp_next_ = 0;
    return LLSMTP_OK;
}

int
llsmtp_client_quit(llsmtp_client *c)
{
    if (c == NULL)
        return LLSMTP_E_INVAL;
    if (c->state_ != CS_READY || c->nev_ > 0)
        return LLSMTP_E_STATE;
    cli_cmd(c, CLI_LIT("QUIT"), NULL, 0, NULL, 0);
    c->state_ = CS_QUIT;
    return LLSMTP_OK;
}

int
llsmtp_client_tls_started(llsmtp_client *c)
{
    if (c == NULL)
        return LLSMTP_E_INVAL;
    if (c->state_ != CS_TLS_WAIT)
        return LLSMTP_E_STATE;
    c->tls_ = 1;
    llsmtp_reply_parser_init(&c->rp_, c->rp_.max_lines_);
    cli_hello(c, 0); /* RFC 3207 4.2: forget everything, EHLO again */
    return LLSMTP_OK;
}

const llsmtp_ehlo_info *
llsmtp_client_caps(const llsmtp_client *c)
{
    return c == NULL ? NULL : &c->caps_;
}

unsigned
llsmtp_client_timeout(const llsmtp_client *c)
{
    if (c == NULL)
        return 0;
    switch (c->state_) {
    case CS_GREET: /* RFC 5321 4.5.3.2.1 */
    case CS_EHLO:
    case CS_HELO:
    case CS_STARTTLS:
    case CS_AUTH:
    case CS_LOGIN_USER:
    case CS_LOGIN_PASS:
    case CS_QUIT:
        return 300;
    case CS_TXN: /* 4.5.3.2.2-4: MAIL, RCPT 5 min; DATA 2 min */
        return c->msg_ != NULL && c->got_ == CP_DATA(c->msg_) ? 120 : 300;
    case CS_BODY: /* 4.5.3.2.5: each data block */
        return 180;
    case CS_DOT: /* 4.5.3.2.6 */
        return 600;
    default:
        return 0;
    }
}

#endif /* LLSMTP_NO_CLIENT */
