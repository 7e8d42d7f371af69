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
 * results, LMTP, several messages per connection, QUIT. The session
 * and the parser are opaque and live in the host's memory; the session
 * says what it wants next (llsmtp_client_wants), keeps the events of a
 * reply queued until the host takes them, and sends the body through its
 * own output queue, behind the commands, so nothing leaves out of order.
 */
#include "internal.h"

#ifndef LLSMTP_NO_CLIENT

/* ---- replies ----------------------------------------------------------- */

/* The reply parser (opaque: its layout may change in any version). */
struct llsmtp_reply_parser {
    char buf[LLSMTP_REPLY_LINE_MAX]; /* a line split across feeds */
    size_t len;
    unsigned lines, max_lines; /* lines of this reply so far, and limit */
    int code, failed;          /* this reply's code; sticky error */
};

/* The strictest alignment an object may need (what malloc gives). */
typedef union cli_max_align {
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
} cli_max_align;
typedef struct cli_align_probe {
    /* cppcheck-suppress unusedStructMember ; only measured */
    char c;
    /* cppcheck-suppress unusedStructMember ; only measured */
    cli_max_align a;
} cli_align_probe;
#define CLI_MAX_ALIGN offsetof(cli_align_probe, a)
#define CLI_ALIGN(n)                                                          \
    (((n) + CLI_MAX_ALIGN - 1) / CLI_MAX_ALIGN * CLI_MAX_ALIGN)

static void
cli_parser_reset(llsmtp_reply_parser *p, unsigned max_lines)
{
    memset(p, 0, sizeof *p);
    p->max_lines = max_lines ? max_lines : 100;
}

size_t
llsmtp_reply_parser_size(void)
{
    return sizeof(llsmtp_reply_parser);
}

llsmtp_reply_parser *
llsmtp_reply_parser_init(void *mem, size_t memlen, unsigned max_lines)
{
    llsmtp_reply_parser *p = (llsmtp_reply_parser *)mem;
    if (mem == NULL || memlen < sizeof *p ||
        (uintptr_t)mem % CLI_MAX_ALIGN != 0)
        return NULL;
    cli_parser_reset(p, max_lines);
    return p;
}

static int
cli_fail(llsmtp_reply_parser *p)
{
    p->failed = 1;
    p->len = 0;
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
    if (p->lines > 0 && code != p->code)
        return cli_fail(p); /* continuation codes must match */
    if (p->lines >= p->max_lines)
        return cli_fail(p);
    p->code = code;
    last = m == 3 || d[3] == ' ';
    line->code = code;
    line->last = last;
    line->index = p->lines;
    line->text.p = d + (m > 3 ? 4 : 3);
    line->text.n = m > 3 ? m - 4 : 0;
    p->lines = last ? 0 : p->lines + 1;
    return LLSMTP_EVENT;
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
    if (p->failed)
        return LLSMTP_E_SYNTAX;
    if (len == 0)
        return LLSMTP_OK;
    lf = (const char *)memchr(buf, '\n', len);
    if (lf == NULL) {
        if (p->len + len >= LLSMTP_REPLY_LINE_MAX)
            return cli_fail(p); /* no room left for its CRLF */
        memcpy(p->buf + p->len, buf, len);
        p->len += len;
        *used = len;
        return LLSMTP_OK;
    }
    k = (size_t)(lf - buf) + 1;
    *used = k;
    if (p->len == 0) {
        if (k > LLSMTP_REPLY_LINE_MAX)
            return cli_fail(p);
        return cli_line(p, buf, k, line); /* in place: no copy */
    }
    if (p->len + k > LLSMTP_REPLY_LINE_MAX)
        return cli_fail(p);
    memcpy(p->buf + p->len, buf, k);
    k += p->len;
    p->len = 0;
    return cli_line(p, p->buf, k, line);
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

/* The encoder's state bits: at the beginning of a line (a "." there is
 * doubled), and a CR held back until the next byte says whether it ends
 * a CRLF or stands alone (CRLF either way). */
#define CLI_DOT_BOL 1u
#define CLI_DOT_CR 2u

void
llsmtp_dot_init(llsmtp_dot_encoder *e)
{
    if (e != NULL)
        e->state = CLI_DOT_BOL;
}

size_t
llsmtp_dot_encoded_max(size_t n)
{
    /* each byte may double ("." at a line start, LF to CRLF); a CR held
     * over from the last call adds its CRLF */
    return n > (SIZE_MAX - 2) / 2 ? SIZE_MAX : 2 * n + 2;
}

/* Encodes as much of in[0..n) as fits in out[0..cap), never part of
 * what one input byte becomes; *used says how much was taken. Returns
 * the bytes written. Both llsmtp_dot_encode and the session's body go
 * through here. */
static size_t
cli_dot_some(llsmtp_dot_encoder *e, const char *in, size_t n, char *out,
             size_t cap, size_t *used)
{
    size_t i, o = 0;
    unsigned st = e->state;
    for (i = 0; i < n; i++) {
        char ch;
        size_t need;
        if (st == 0) {
            /* inside a line: what comes before its CR or LF is copied
             * as it is, at memchr's speed (a body is mostly this) */
            size_t lim = n - i < cap - o ? n - i : cap - o, run;
            const char *lf = (const char *)memchr(in + i, '\n', lim);
            const char *cr;
            run = lf != NULL ? (size_t)(lf - (in + i)) : lim;
            cr = (const char *)memchr(in + i, '\r', run);
            if (cr != NULL)
                run = (size_t)(cr - (in + i));
            memcpy(out + o, in + i, run);
            o += run;
            i += run;
            if (i == n || cap == o)
                break;
        }
        ch = in[i];
        need = (st & CLI_DOT_CR) ? 2 : 0;
        if (ch == '\n')
            need = 2; /* CR LF or a bare LF: one CRLF */
        else if (ch != '\r')
            need += ((st & (CLI_DOT_BOL | CLI_DOT_CR)) && ch == '.') ? 2 : 1;
        if (cap - o < need)
            break;
        if (st & CLI_DOT_CR) {
            /* CRLF, or a bare CR: either way one CRLF */
            out[o++] = '\r';
            out[o++] = '\n';
            st = CLI_DOT_BOL;
            if (ch == '\n')
                continue;
        }
        if (ch == '\r') {
            st |= CLI_DOT_CR;
            continue;
        }
        if (ch == '\n') {
            out[o++] = '\r';
            out[o++] = '\n';
            st = CLI_DOT_BOL;
            continue;
        }
        if ((st & CLI_DOT_BOL) && ch == '.')
            out[o++] = '.'; /* RFC 5321 4.5.2: transparency */
        out[o++] = ch;
        st = 0;
    }
    e->state = st;
    *used = i;
    return o;
}

size_t
llsmtp_dot_encode(llsmtp_dot_encoder *e, const char *in, size_t n, char *out,
                  size_t cap)
{
    size_t used;
    if (e == NULL || (in == NULL && n) || out == NULL ||
        cap < llsmtp_dot_encoded_max(n))
        return 0;
    return cli_dot_some(e, in, n, out, cap, &used); /* all fits */
}

size_t
llsmtp_dot_finish(llsmtp_dot_encoder *e, char *out, size_t cap)
{
    size_t o = 0;
    if (e == NULL || out == NULL || cap < 5)
        return 0;
    if (e->state != CLI_DOT_BOL) { /* a CR held, or the line is open */
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
    CS_GREET,      /* waiting for the greeting */
    CS_EHLO,       /* EHLO (or LHLO) sent */
    CS_HELO,       /* HELO sent, after EHLO was refused */
    CS_STARTTLS,   /* STARTTLS sent */
    CS_TLS_WAIT,   /* 220 to STARTTLS: the host does the handshake */
    CS_AUTH,       /* AUTH PLAIN sent, or LOGIN's password */
    CS_LOGIN_USER, /* AUTH LOGIN sent: the user name is asked for */
    CS_LOGIN_PASS, /* the user name sent: the password is asked for */
    CS_READY,      /* waiting for the host: mail or quit */
    CS_TXN,        /* MAIL, RCPTs, DATA sent or being sent */
    CS_BODY,       /* 354 came: the host sends the body */
    CS_DOT,        /* the final "." queued: its reply(ies) awaited */
    CS_QUIT,       /* QUIT sent */
    CS_DEAD        /* over: FAIL, CLOSED, or a body refused */
};

#define CLI_LINE_MAX                                                          \
    1024 /* the longest command line: MAIL with 254
                             octets of mailbox, SIZE, BODY, SMTPUTF8 and
                             400 of DSN parameters is 718 octets */
#define CLI_EVENTS                                                            \
    4 /* at most three per reply (RCPT, MESSAGE,
                             READY) */

/* The session (opaque: its layout may change in any version). The
 * output queue follows it in the host's memory. */
struct llsmtp_client {
    llsmtp_reply_parser rp;
    llsmtp_ehlo_info caps; /* what the last EHLO offered */
    llsmtp_dot_encoder enc;
    const llsmtp_client_msg *msg; /* the host's, until its MESSAGE */
    void *user;
    char *out; /* out[out_off..out_len) waits to be written */
    size_t out_cap, out_off, out_len;
    int secret; /* the queue held AUTH credentials since it was empty */
    char helo[256], auth_user[256], auth_pass[256];
    unsigned char helo_n, auth_user_n, auth_pass_n;
    unsigned flags;
    char text[LLSMTP_REPLY_LINE_MAX]; /* the last reply's first line */
    size_t text_n;
    llsmtp_client_event ev[CLI_EVENTS]; /* queued, oldest first */
    unsigned nev;
    char mail_text[LLSMTP_REPLY_LINE_MAX]; /* MAIL's refusal, for the end */
    size_t mail_text_n;
    int state, tls, tls_tried, authed, dirty, mail_ok, mail_code, throwaway;
    size_t sent, got, nok, lmtp_left, lmtp_next;
    unsigned char ok[(LLSMTP_CLIENT_RCPT_MAX + 7) / 8]; /* accepted RCPTs */
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

/* RFC 2034 / RFC 3463: "class.subject.detail" and a space (or the end)
 * at the start of a reply's text, its class the code's first digit (the
 * rule the server's replies follow: llsmtp__enhanced_check). Copies it
 * into e->enhanced and returns the octets it and its space take; 0 (and
 * "") when the text starts otherwise. */
static size_t
cli_enhanced(int code, const char *t, size_t n, llsmtp_client_event *e)
{
    size_t k = 0;
    e->enhanced[0] = '\0';
    while (k < n && k < sizeof e->enhanced && t[k] != ' ')
        k++;
    if (k == 0 || k >= sizeof e->enhanced || (k < n && t[k] != ' ') ||
        !llsmtp__enhanced_check(code, t, k))
        return 0;
    memcpy(e->enhanced, t, k);
    e->enhanced[k] = '\0';
    return k < n ? k + 1 : k;
}

static void
cli_event(llsmtp_client *c, int type, int code, int local, long rcpt,
          const char *text, size_t n)
{
    llsmtp_client_event *e;
    size_t skip;
    if (c->nev >= CLI_EVENTS)
        return; /* cannot happen: at most three per reply */
    e = &c->ev[c->nev++];
    e->type = type;
    e->code = code;
    e->local = local;
    e->rcpt = rcpt;
    if (text == NULL) { /* the server's reply */
        text = c->text;
        n = c->text_n;
        local = (c->caps.extensions & LLSMTP_EXT_ENHANCEDSTATUS) != 0;
    }
    /* a local reason starts with its own code; a server's only counts
     * when it offered ENHANCEDSTATUSCODES */
    skip = local && code ? cli_enhanced(code, text, n, e) : 0;
    if (!(local && code))
        e->enhanced[0] = '\0';
    e->text.p = text + skip;
    e->text.n = n - skip;
}

/* Moves what waits to be written to the front of the queue. Stale
 * credentials behind it are wiped. Returns the room left. */
static size_t
cli_room(llsmtp_client *c)
{
    if (c->out_off > 0) {
        size_t n = c->out_len - c->out_off;
        memmove(c->out, c->out + c->out_off, n);
        if (c->secret)
            llsmtp__wipe(c->out + n, c->out_len - n);
        c->out_len = n;
        c->out_off = 0;
    }
    return c->out_cap - c->out_len;
}

/* Queues one command line made of up to three pieces; 0 when no room. */
static int
cli_cmd(llsmtp_client *c, const char *a, size_t an, const char *b, size_t bn,
        const char *d, size_t dn)
{
    size_t need = an + bn + dn + 2;
    if (c->out_cap - c->out_len < need && cli_room(c) < need)
        return 0;
    memcpy(c->out + c->out_len, a, an);
    c->out_len += an;
    if (bn)
        memcpy(c->out + c->out_len, b, bn);
    c->out_len += bn;
    if (dn)
        memcpy(c->out + c->out_len, d, dn);
    c->out_len += dn;
    memcpy(c->out + c->out_len, "\r\n", 2);
    c->out_len += 2;
    return 1;
}

#define CLI_LIT(s) (s), sizeof(s) - 1

/* AUTH is over (235, a refusal) or the session is: the user name and
 * password are wiped, and so is an AUTH line still queued when the
 * session dies (written after a FAIL it would only reach a server that
 * is not listening; kept, it would linger in the host's memory). */
static void
cli_forget_secrets(llsmtp_client *c, int dying)
{
    llsmtp__wipe(c->auth_user, sizeof c->auth_user);
    llsmtp__wipe(c->auth_pass, sizeof c->auth_pass);
    c->auth_user_n = c->auth_pass_n = 0;
    if (dying && c->secret) {
        llsmtp__wipe(c->out, c->out_len);
        c->out_off = c->out_len = 0;
        c->secret = 0;
    }
}

static void
cli_fail_local(llsmtp_client *c, int code, const char *why, int quit)
{
    cli_forget_secrets(c, 1);
    cli_event(c, LLSMTP_CEV_FAIL, code, 1, -1, why, strlen(why));
    if (quit)
        cli_cmd(c, CLI_LIT("QUIT"), NULL, 0, NULL, 0);
    c->state = CS_DEAD;
}

/* The server refused something that ends the session. */
static void
cli_fail_reply(llsmtp_client *c, int code)
{
    cli_forget_secrets(c, 1);
    cli_event(c, LLSMTP_CEV_FAIL, code, 0, -1, NULL, 0);
    /* RFC 5321 3.8: after 421 the server closes; otherwise say goodbye */
    if (code != 421)
        cli_cmd(c, CLI_LIT("QUIT"), NULL, 0, NULL, 0);
    c->state = CS_DEAD;
}

/* Command lines queued but not yet written in full. Every line in the
 * queue ends in LF and no command holds one (cli_clean refuses control
 * characters), so counting LFs counts commands. */
static size_t
cli_unwritten(const llsmtp_client *c)
{
    size_t i, k = 0;
    for (i = c->out_off; i < c->out_len; i++)
        k += c->out[i] == '\n';
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
        memcpy(c->text + n, parts[k] ? parts[k] : "", l);
        n += l;
        if (k == 2 && code) {
            memcpy(c->text + n, num, 3);
            n += 3;
        }
    }
    c->text_n = n;
    cli_forget_secrets(c, 1);
    cli_event(c, LLSMTP_CEV_FAIL, 451, 1, -1, c->text, n);
    c->state = CS_DEAD;
}

static void
cli_hello(llsmtp_client *c, int helo)
{
    const char *verb = c->flags & LLSMTP_CLI_LMTP ? "LHLO "
                       : helo                     ? "HELO "
                                                  : "EHLO ";
    memset(&c->caps, 0, sizeof c->caps);
    cli_cmd(c, verb, 5, c->helo, c->helo_n, NULL, 0);
    c->state = helo ? CS_HELO : CS_EHLO;
}

static void
cli_ready(llsmtp_client *c)
{
    c->state = CS_READY;
    c->msg = NULL;
    cli_event(c, LLSMTP_CEV_READY, 0, 1, -1, "", 0);
}

/* After a greeting: STARTTLS, then AUTH, then ready (RFC 3207, 4954). */
static void
cli_next(llsmtp_client *c)
{
    unsigned want_tls = c->flags &
                        (LLSMTP_CLI_STARTTLS | LLSMTP_CLI_REQUIRE_TLS);
    if (!c->tls && want_tls && !c->tls_tried &&
        (c->caps.extensions & LLSMTP_EXT_STARTTLS)) {
        c->tls_tried = 1;
        cli_cmd(c, CLI_LIT("STARTTLS"), NULL, 0, NULL, 0);
        c->state = CS_STARTTLS;
        return;
    }
    if (!c->tls && (c->flags & LLSMTP_CLI_REQUIRE_TLS)) {
        cli_fail_local(c, 530, "5.7.10 TLS required but not available", 1);
        return;
    }
    if (c->auth_user_n > 0 && !c->authed) {
        char raw[2 + 255 + 255], b64[700];
        size_t rn = 0, bn = 0;
        if (!c->tls && !(c->flags & LLSMTP_CLI_AUTH_CLEARTEXT)) {
            cli_fail_local(c, 530,
                           "5.7.0 will not send credentials in cleartext", 1);
            return;
        }
        if (c->caps.mechanisms & LLSMTP_MECH_PLAIN) {
            /* RFC 4616: [authzid] NUL authcid NUL passwd, as the initial
             * response (RFC 4954 4) */
            raw[rn++] = '\0';
            memcpy(raw + rn, c->auth_user, c->auth_user_n);
            rn += c->auth_user_n;
            raw[rn++] = '\0';
            memcpy(raw + rn, c->auth_pass, c->auth_pass_n);
            rn += c->auth_pass_n;
            llsmtp_b64_encode(raw, rn, b64, sizeof b64, &bn);
            c->secret = 1;
            cli_cmd(c, CLI_LIT("AUTH PLAIN "), b64, bn, NULL, 0);
            llsmtp__wipe(raw, sizeof raw);
            llsmtp__wipe(b64, sizeof b64);
            c->state = CS_AUTH;
            return;
        }
        if (c->caps.mechanisms & LLSMTP_MECH_LOGIN) {
            cli_cmd(c, CLI_LIT("AUTH LOGIN"), NULL, 0, NULL, 0);
            c->state = CS_LOGIN_USER;
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
    c->secret = 1;
    cli_cmd(c, b64, bn, NULL, 0, NULL, 0);
    llsmtp__wipe(b64, sizeof b64);
}

static int
cli_is_bit(const llsmtp_client *c, size_t i)
{
    return (c->ok[i / 8] >> (i % 8)) & 1;
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
    const llsmtp_client_msg *m = c->msg;
    int pipe = (c->caps.extensions & LLSMTP_EXT_PIPELINING) &&
               !(c->flags & LLSMTP_CLI_NO_PIPELINING);
    while (c->state == CS_TXN && c->sent <= CP_DATA(m)) {
        size_t pos = c->sent;
        if (!pipe && c->got < pos)
            return;
        if (!c->mail_ok && c->got > CP_MAIL)
            return; /* MAIL was refused: send nothing more */
        if (pos == CP_RSET) {
            if (!cli_cmd(c, CLI_LIT("RSET"), NULL, 0, NULL, 0))
                return;
        } else if (pos == CP_MAIL) {
            char line[CLI_LINE_MAX];
            size_t n = 0;
            cli_app(line, &n, CLI_LIT("MAIL FROM:<"));
            cli_app(line, &n, m->from.p, m->from.n);
            line[n++] = '>';
            if (m->size && (c->caps.extensions & LLSMTP_EXT_SIZE)) {
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
                (c->caps.extensions & LLSMTP_EXT_8BITMIME)) {
                cli_app(line, &n, CLI_LIT(" BODY=8BITMIME"));
            }
            if (m->flags & LLSMTP_MSG_SMTPUTF8) {
                cli_app(line, &n, CLI_LIT(" SMTPUTF8"));
            }
            if (m->mail_params.n && (c->caps.extensions & LLSMTP_EXT_DSN)) {
                line[n++] = ' ';
                cli_app(line, &n, m->mail_params.p, m->mail_params.n);
            }
            if (!cli_cmd(c, line, n, NULL, 0, NULL, 0))
                return;
        } else if (pos < CP_DATA(m)) {
            size_t i = pos - 2, n = 0;
            char line[CLI_LINE_MAX];
            cli_app(line, &n, CLI_LIT("RCPT TO:<"));
            cli_app(line, &n, m->to[i].p, m->to[i].n);
            line[n++] = '>';
            if (m->rcpt_params != NULL && m->rcpt_params[i].n &&
                (c->caps.extensions & LLSMTP_EXT_DSN)) {
                line[n++] = ' ';
                cli_app(line, &n, m->rcpt_params[i].p, m->rcpt_params[i].n);
            }
            if (!cli_cmd(c, line, n, NULL, 0, NULL, 0))
                return;
        } else {
            /* DATA ends a pipelined group (RFC 2920 3.1); otherwise it
             * goes only when a recipient was accepted */
            if (c->got == pos && c->nok == 0)
                return;
            if (!cli_cmd(c, CLI_LIT("DATA"), NULL, 0, NULL, 0))
                return;
        }
        c->sent++;
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
    if (!c->mail_ok) {
        memcpy(c->text, c->mail_text, c->mail_text_n);
        c->text_n = c->mail_text_n;
        cli_done(c, c->mail_code, 0, NULL);
    } else {
        cli_done(c, 554, 1, "5.5.0 no recipient was accepted");
    }
}

/* One whole reply in a transaction, in command order. */
static void
cli_txn_reply(llsmtp_client *c, int code)
{
    const llsmtp_client_msg *m = c->msg;
    size_t pos = c->got;
    static const char *const names[] = {"RSET", "MAIL", "RCPT", "DATA"};
    const char *name = names[pos < CP_DATA(m) ? (pos < 2 ? pos : 2) : 3];
    /* RFC 2920 3.1: replies come in command order, one for each command
     * the server has received; the command this one answers must have
     * been written, all of it */
    if (pos >= c->sent) {
        cli_protocol(c, "", 0, "reply to a command that was not sent");
        return;
    }
    if (cli_unwritten(c) > c->sent - pos - 1) {
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
    c->got++;
    if (pos == CP_RSET) {
        if (code / 100 == 2)
            c->dirty = 0;
    } else if (pos == CP_MAIL) {
        c->mail_ok = code / 100 == 2;
        if (c->mail_ok) {
            c->dirty = 1;
        } else {
            /* no transaction was opened; keep this reply for the end */
            c->dirty = 0;
            c->mail_code = code;
            memcpy(c->mail_text, c->text, c->text_n);
            c->mail_text_n = c->text_n;
        }
    } else if (pos < CP_DATA(m)) {
        size_t i = pos - 2;
        if (c->mail_ok) {
            if (code / 100 == 2) {
                c->ok[i / 8] |= (unsigned char)(1u << (i % 8));
                c->nok++;
            }
            cli_event(c, LLSMTP_CEV_RCPT, code, 0, (long)i, NULL, 0);
        }
    } else if (code == 354) {
        if (c->mail_ok && c->nok > 0) {
            llsmtp_dot_init(&c->enc);
            c->state = CS_BODY;
            cli_event(c, LLSMTP_CEV_BODY, code, 0, -1, NULL, 0);
            return;
        }
        if (c->flags & LLSMTP_CLI_LMTP) {
            /* RFC 2033 4.2: DATA MUST fail without a recipient, and no
             * reply would follow an empty message */
            cli_fail_local(c, 0,
                           "LMTP server accepted DATA without a recipient", 1);
            return;
        }
        /* RFC 2920 3.1: DATA accepted though nothing can be delivered:
         * end it at once with an empty message */
        cli_cmd(c, CLI_LIT("."), NULL, 0, NULL, 0);
        c->state = CS_DOT;
        c->lmtp_left = 1;
        c->throwaway = 1;
        return;
    } else { /* DATA refused */
        if (c->mail_ok && c->nok > 0)
            cli_done(c, code, 0, NULL);
        else
            cli_no_message(c);
        return;
    }
    /* nothing more will be sent when MAIL failed, or when every RCPT
     * was answered and none accepted; end once all sent are answered */
    if (c->got == c->sent && c->got > CP_MAIL &&
        (!c->mail_ok || (c->got == CP_DATA(m) && c->nok == 0))) {
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
    if (c->out_off < c->out_len) {
        cli_protocol(c, "", 0, "reply before the end of data was sent");
        return;
    }
    if (code / 100 == 3) { /* RFC 5321 4.1.1.4: 250 or a failure */
        cli_protocol(c, "end of data", code, "");
        return;
    }
    if (c->throwaway) { /* the empty message of RFC 2920 3.1 */
        c->throwaway = 0;
        c->dirty = 0;
        cli_no_message(c);
        return;
    }
    c->dirty = 0;
    if (c->flags & LLSMTP_CLI_LMTP) {
        size_t i = c->lmtp_next;
        while (i < c->msg->nto && !cli_is_bit(c, i))
            i++;
        c->lmtp_next = i + 1;
        if (--c->lmtp_left > 0) {
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
    if (code == 421 && c->state != CS_QUIT) {
        cli_fail_reply(c, code); /* RFC 5321 3.8: service closing */
        return;
    }
    if (c->state != CS_TXN && c->state != CS_DOT && c->state != CS_QUIT &&
        cli_unwritten(c) > 0) {
        /* one command at a time here, and it was not written yet */
        cli_protocol(c, "", 0, "reply before the command was sent");
        return;
    }
    switch (c->state) {
    case CS_GREET:
        if (code == 220)
            cli_hello(c, 0);
        else
            cli_fail_reply(c, code); /* RFC 5321 3.1: 554, then QUIT */
        break;
    case CS_EHLO:
        if (ok) {
            cli_next(c);
        } else if (code / 100 == 5 && !(c->flags & LLSMTP_CLI_LMTP)) {
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
            c->state = CS_TLS_WAIT;
            cli_event(c, LLSMTP_CEV_TLS, code, 0, -1, NULL, 0);
        } else if (c->flags & LLSMTP_CLI_REQUIRE_TLS) {
            cli_fail_reply(c, code);
        } else {
            cli_next(c); /* RFC 3207 4.1: carry on without TLS */
        }
        break;
    case CS_AUTH:
        if (code == 235) {
            c->authed = 1;
            cli_forget_secrets(c, 0); /* one AUTH per session */
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
        } else if (c->state == CS_LOGIN_USER) {
            cli_b64_line(c, c->auth_user, c->auth_user_n);
            c->state = CS_LOGIN_PASS;
        } else {
            cli_b64_line(c, c->auth_pass, c->auth_pass_n);
            c->state = CS_AUTH;
        }
        break;
    case CS_TXN:
        cli_txn_reply(c, code);
        break;
    case CS_DOT:
        cli_dot_reply(c, code);
        break;
    case CS_QUIT:
        c->state = CS_DEAD;
        cli_event(c, LLSMTP_CEV_CLOSED, code, 0, -1, NULL, 0);
        break;
    default: /* READY, BODY, TLS_WAIT: nothing was asked */
        cli_protocol(c, "", 0, "unexpected reply from the server");
        break;
    }
}

/* ---- configuration, memory, and the host's calls ------------------------ */

/* Where the 1.0 members end (lib/internal.h, llsmtp__abi_fits). */
#define CLI_CFG_MIN LLSMTP__END(llsmtp_client_cfg, output_size)
#define CLI_MSG_MIN                                                           \
    (offsetof(llsmtp_client_msg, rcpt_params) + sizeof(const llsmtp_span *))

int
llsmtp_client_cfg_init_(llsmtp_client_cfg *cfg, unsigned long version,
                        size_t size)
{
    if (cfg == NULL)
        return LLSMTP_E_INVAL;
    if (!llsmtp__abi_fits(version, size, CLI_CFG_MIN, sizeof *cfg))
        return llsmtp__abi_refuse(&cfg->abi);
    memset(cfg, 0, size);
    cfg->helo.p = "localhost";
    cfg->helo.n = 9;
    cfg->max_reply_lines = 100;
    cfg->output_size = 4096;
    return llsmtp__abi_tag(&cfg->abi, version, size, CLI_CFG_MIN, sizeof *cfg,
                           0, 0, 0);
}

int
llsmtp_client_msg_init_(llsmtp_client_msg *m, unsigned long version,
                        size_t size)
{
    if (m == NULL)
        return LLSMTP_E_INVAL;
    if (!llsmtp__abi_fits(version, size, CLI_MSG_MIN, sizeof *m))
        return llsmtp__abi_refuse(&m->abi);
    memset(m, 0, size);
    return llsmtp__abi_tag(&m->abi, version, size, CLI_MSG_MIN, sizeof *m, 0,
                           0, 0);
}

/* Every flag this version knows. */
#define CLI_FLAG_ALL ((unsigned)LLSMTP_CLI_NO_PIPELINING * 2u - 1u)

static const char cli_why_version[] =
    "abi: not set up with llsmtp_client_cfg_init of a header this library "
    "takes (LLSMTP_E_VERSION)";

static const char *
cli_cfg_why(const llsmtp_client_cfg *cfg)
{
    if (cfg == NULL)
        return "cfg: NULL";
    if (!llsmtp__abi_ok(&cfg->abi, CLI_CFG_MIN, sizeof *cfg, 0, 0))
        return cli_why_version;
    if (cfg->helo.p == NULL || cfg->helo.n == 0 || cfg->helo.n > 255)
        return "helo: empty or longer than 255 octets";
    if (!llsmtp__host_name_ok(cfg->helo.p, cfg->helo.n))
        return "helo: not a domain name or address literal";
    if (cfg->user.n > 255 || cfg->password.n > 255)
        return "user, password: longer than 255 octets";
    if ((cfg->user.n && cfg->user.p == NULL) ||
        (cfg->password.n && cfg->password.p == NULL))
        return "user, password: NULL with a length";
    if ((cfg->user.n == 0) != (cfg->password.n == 0))
        return "user, password: one set without the other";
    if ((cfg->user.n && memchr(cfg->user.p, '\0', cfg->user.n)) ||
        (cfg->password.n && memchr(cfg->password.p, '\0', cfg->password.n)))
        return "user, password: a NUL (RFC 4616 separates fields with it)";
    if (cfg->flags & ~CLI_FLAG_ALL)
        return "flags: a bit this version does not know";
    if (cfg->max_reply_lines == 0)
        return "max_reply_lines: 0 (a reply has at least one line)";
    if (cfg->output_size < CLI_LINE_MAX || cfg->output_size > (size_t)1 << 30)
        return "output_size: outside 1024..2^30 (the longest command line "
               "must fit)";
    return NULL;
}

int
llsmtp_client_cfg_check(const llsmtp_client_cfg *cfg, const char **why)
{
    const char *w = cli_cfg_why(cfg);
    if (why != NULL)
        *why = w;
    if (w == NULL)
        return LLSMTP_OK;
    return w == cli_why_version ? LLSMTP_E_VERSION : LLSMTP_E_INVAL;
}

size_t
llsmtp_client_size(const llsmtp_client_cfg *cfg)
{
    if (cli_cfg_why(cfg) != NULL)
        return 0;
    return CLI_ALIGN(sizeof(llsmtp_client)) + cfg->output_size;
}

llsmtp_client *
llsmtp_client_init(void *mem, size_t memlen, const llsmtp_client_cfg *cfg,
                   void *user)
{
    llsmtp_client *c = (llsmtp_client *)mem;
    size_t need = llsmtp_client_size(cfg);
    if (mem == NULL || need == 0 || memlen < need ||
        (uintptr_t)mem % CLI_MAX_ALIGN != 0)
        return NULL;
    memset(c, 0, sizeof *c);
    c->user = user;
    c->out = (char *)mem + CLI_ALIGN(sizeof(llsmtp_client));
    c->out_cap = cfg->output_size;
    cli_parser_reset(&c->rp, cfg->max_reply_lines);
    memcpy(c->helo, cfg->helo.p, cfg->helo.n);
    c->helo_n = (unsigned char)cfg->helo.n;
    if (cfg->user.n) {
        memcpy(c->auth_user, cfg->user.p, cfg->user.n);
        memcpy(c->auth_pass, cfg->password.p, cfg->password.n);
    }
    c->auth_user_n = (unsigned char)cfg->user.n;
    c->auth_pass_n = (unsigned char)cfg->password.n;
    c->flags = cfg->flags;
    llsmtp_dot_init(&c->enc);
    c->state = CS_GREET;
    return c;
}

void *
llsmtp_client_user(const llsmtp_client *c)
{
    return c == NULL ? NULL : c->user;
}

void
llsmtp_client_set_user(llsmtp_client *c, void *user)
{
    if (c != NULL)
        c->user = user;
}

unsigned
llsmtp_client_wants(const llsmtp_client *c)
{
    unsigned w = 0;
    if (c == NULL)
        return 0;
    if (c->out_off < c->out_len)
        w |= LLSMTP_WANT_WRITE;
    if (c->nev > 0)
        return w | LLSMTP_WANT_EVENT; /* first the host hears what happened */
    switch (c->state) {
    case CS_DEAD:
        return w | LLSMTP_WANT_CLOSE;
    case CS_TLS_WAIT:
        return w | LLSMTP_WANT_TLS;
    case CS_READY:
    case CS_BODY:
        return w | LLSMTP_WANT_RESUME;
    case CS_TXN:
        /* a reply is awaited once a command is queued (the host writes
         * first); none while MAIL waits for room in the queue */
        return c->got < c->sent ? w | LLSMTP_WANT_READ : w;
    default: /* greeting, EHLO, HELO, STARTTLS, AUTH, ".", QUIT */
        return w | LLSMTP_WANT_READ;
    }
}

static int
cli_pop(llsmtp_client *c, llsmtp_client_event *ev)
{
    unsigned i;
    *ev = c->ev[0];
    for (i = 1; i < c->nev; i++)
        c->ev[i - 1] = c->ev[i];
    c->nev--;
    return LLSMTP_EVENT;
}

int
llsmtp_client_next_event(llsmtp_client *c, llsmtp_client_event *ev)
{
    if (c == NULL || ev == NULL)
        return LLSMTP_E_INVAL;
    return c->nev > 0 ? cli_pop(c, ev) : LLSMTP_OK;
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
    if (c->nev > 0)
        return cli_pop(c, ev);
    while (*used < len && c->state != CS_DEAD) {
        llsmtp_reply_line l;
        size_t u;
        int rc;
        if (c->state == CS_TLS_WAIT) {
            /* bytes after "220" to STARTTLS and before the handshake
             * were injected (the client side of CVE-2011-0411) */
            *used = len;
            cli_fail_local(c, 0, "data after the STARTTLS reply", 0);
            break;
        }
        rc = llsmtp_reply_parser_feed(&c->rp, buf + *used, len - *used, &u,
                                      &l);
        *used += u;
        if (rc == LLSMTP_OK)
            break;
        if (rc != LLSMTP_EVENT) {
            *used = len;
            cli_fail_local(c, 0, "malformed reply from the server", 0);
            break;
        }
        if (l.index == 0) {
            size_t n = l.text.n < sizeof c->text ? l.text.n : sizeof c->text;
            memcpy(c->text, l.text.p, n);
            c->text_n = n;
        } else if (c->state == CS_EHLO) {
            llsmtp_ehlo_keyword(&c->caps, l.text);
        }
        if (l.last) {
            cli_reply(c, l.code);
            if (c->state == CS_TLS_WAIT && *used < len) {
                /* more bytes behind "220" to STARTTLS: injected in
                 * cleartext (the client side of CVE-2011-0411) */
                c->nev = 0;
                *used = len;
                cli_fail_local(c, 0, "data after the STARTTLS reply", 0);
            }
            if (c->nev > 0)
                break;
        }
    }
    if (c->state == CS_DEAD && *used < len)
        *used = len; /* nothing more is read */
    if (c->nev > 0)
        return cli_pop(c, ev);
    return LLSMTP_OK;
}

llsmtp_span
llsmtp_client_output(const llsmtp_client *c)
{
    llsmtp_span s = {NULL, 0};
    if (c != NULL) {
        s.p = c->out + c->out_off;
        s.n = c->out_len - c->out_off;
    }
    return s;
}

void
llsmtp_client_consume(llsmtp_client *c, size_t n)
{
    if (c == NULL)
        return;
    if (n > c->out_len - c->out_off)
        n = c->out_len - c->out_off;
    /* written bytes that held AUTH credentials do not linger */
    if (c->secret)
        llsmtp__wipe(c->out + c->out_off, n);
    c->out_off += n;
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        c->secret = 0;
    }
    cli_pump(c); /* more pipelined RCPTs may fit now */
}

int
llsmtp_client_mail(llsmtp_client *c, const llsmtp_client_msg *m)
{
    size_t i;
    if (c == NULL || m == NULL)
        return LLSMTP_E_INVAL;
    if (!llsmtp__abi_ok(&m->abi, CLI_MSG_MIN, sizeof *m, 0, 0))
        return LLSMTP_E_VERSION;
    if ((m->nto && m->to == NULL) || (m->from.n && m->from.p == NULL) ||
        (m->mail_params.n && m->mail_params.p == NULL))
        return LLSMTP_E_INVAL;
    if (c->state != CS_READY || c->nev > 0)
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
    if (c->caps.max_size && m->size > c->caps.max_size) {
        cli_done(c, 552, 1, "5.3.4 message larger than the server's SIZE");
        return LLSMTP_OK;
    }
    if ((m->flags & LLSMTP_MSG_8BIT) &&
        !(c->caps.extensions & LLSMTP_EXT_8BITMIME)) {
        /* RFC 6152 3: no 8-bit data to a server without 8BITMIME */
        cli_done(c, 554, 1,
                 "5.6.3 8-bit message and the server lacks 8BITMIME");
        return LLSMTP_OK;
    }
    if ((m->flags & LLSMTP_MSG_SMTPUTF8) &&
        !(c->caps.extensions & LLSMTP_EXT_SMTPUTF8)) {
        cli_done(c, 553, 1,
                 "5.6.7 SMTPUTF8 message and the server lacks SMTPUTF8");
        return LLSMTP_OK;
    }
    c->msg = m;
    memset(c->ok, 0, sizeof c->ok);
    c->nok = 0;
    c->lmtp_next = 0;
    c->mail_ok = 0;
    c->throwaway = 0;
    c->sent = c->got = c->dirty ? CP_RSET : CP_MAIL;
    c->state = CS_TXN;
    cli_pump(c);
    return LLSMTP_OK;
}

int
llsmtp_client_body(llsmtp_client *c, const char *in, size_t n, size_t *used)
{
    size_t room, take, k, w, len0;
    llsmtp_dot_encoder e0;
    if (used == NULL)
        return LLSMTP_E_INVAL;
    *used = 0;
    if (c == NULL || (in == NULL && n))
        return LLSMTP_E_INVAL;
    if (c->state != CS_BODY)
        return LLSMTP_E_STATE;
    if (n == 0)
        return LLSMTP_OK;
    room = c->out_cap - c->out_len;
    if (room < 4 || c->out_off > c->out_cap / 2)
        room = cli_room(c);
    len0 = c->out_len;
    e0 = c->enc;
    w = cli_dot_some(&c->enc, in, n, c->out + c->out_len, room, &take);
    if (!(c->msg->flags & LLSMTP_MSG_8BIT))
        for (k = 0; k < take; k++) {
            uint64_t x;
            if (take - k >= 8) { /* eight octets at a time */
                memcpy(&x, in + k, 8);
                if (!(x & 0x8080808080808080ULL)) {
                    k += 7;
                    continue;
                }
            }
            if ((unsigned char)in[k] > 127) {
                /* RFC 6152 3: never 8-bit data the server was not told
                 * of; nothing of this call goes out, and no end of data
                 * ever will */
                c->enc = e0;
                c->out_len = len0;
                c->state = CS_DEAD;
                return LLSMTP_E_SYNTAX;
            }
        }
    c->out_len += w;
    *used = take;
    return take == n ? LLSMTP_OK : LLSMTP_BLOCKED;
}

int
llsmtp_client_body_end(llsmtp_client *c)
{
    char tail[5];
    size_t n;
    llsmtp_dot_encoder e;
    if (c == NULL)
        return LLSMTP_E_INVAL;
    if (c->state != CS_BODY)
        return LLSMTP_E_STATE;
    e = c->enc;
    n = llsmtp_dot_finish(&e, tail, sizeof tail);
    /* the CRLF written by cli_cmd ends the "." line */
    if (!cli_cmd(c, tail, n - 2, NULL, 0, NULL, 0))
        return LLSMTP_BLOCKED;
    c->enc = e;
    c->state = CS_DOT;
    c->lmtp_left = (c->flags & LLSMTP_CLI_LMTP) ? c->nok : 1;
    c->lmtp_next = 0;
    return LLSMTP_OK;
}

int
llsmtp_client_quit(llsmtp_client *c)
{
    if (c == NULL)
        return LLSMTP_E_INVAL;
    if (c->state != CS_READY || c->nev > 0)
        return LLSMTP_E_STATE;
    cli_cmd(c, CLI_LIT("QUIT"), NULL, 0, NULL, 0);
    c->state = CS_QUIT;
    return LLSMTP_OK;
}

int
llsmtp_client_tls_started(llsmtp_client *c)
{
    if (c == NULL)
        return LLSMTP_E_INVAL;
    if (c->state != CS_TLS_WAIT)
        return LLSMTP_E_STATE;
    c->tls = 1;
    cli_parser_reset(&c->rp, c->rp.max_lines);
    cli_hello(c, 0); /* RFC 3207 4.2: forget everything, EHLO again */
    return LLSMTP_OK;
}

const llsmtp_ehlo_info *
llsmtp_client_caps(const llsmtp_client *c)
{
    return c == NULL ? NULL : &c->caps;
}

unsigned
llsmtp_client_timeout(const llsmtp_client *c)
{
    if (c == NULL)
        return 0;
    switch (c->state) {
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
        return c->msg != NULL && c->got == CP_DATA(c->msg) ? 120 : 300;
    case CS_BODY: /* 4.5.3.2.5: each data block */
        return 180;
    case CS_DOT: /* 4.5.3.2.6 */
        return 600;
    default:
        return 0;
    }
}

#endif /* LLSMTP_NO_CLIENT */
