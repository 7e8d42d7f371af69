/* SPDX-License-Identifier: MIT
 *
 * server_auth.c - AUTH (RFC 4954) in the server session: which
 * mechanisms are offered, the AUTH command, and the exchange that follows
 * it (PLAIN, LOGIN, or any mechanism through on_auth_step). Invariant:
 * credentials are wiped from the session's buffers once answered.
 */
#include "server_int.h"

static int sess_auth_login_user(llsmtp_server *s, llsmtp_span data);

/* ---- mechanisms ---------------------------------------------------------- */

/* Mechanisms llsmtp handles itself; others need on_auth_step. */
static int
sess_mech_builtin(const char *p, size_t n)
{
    return llsmtp__iequal(p, n, "PLAIN", 5) ||
           llsmtp__iequal(p, n, "LOGIN", 5);
}

/* The one rule for which mechanisms are offered, used by the
 * configuration check, EHLO, HELP and the AUTH command alike: the names
 * of cfg->auth_mechanisms that something can run, PLAIN and LOGIN here,
 * any other through on_auth_step. Finds the next one from pos; returns
 * the position after it, or 0 when there is none. */
size_t
llsmtp__sess_mech_next_cfg(const llsmtp_config *cfg, size_t pos,
                           llsmtp_span *tok)
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
    return llsmtp__sess_mech_next_cfg(s->cfg, pos, tok);
}

/* RFC 4954 4 and 538: PLAIN/LOGIN only over TLS unless the host allows
 * cleartext. RFC 4954 3: the AUTH keyword's parameter is the list of
 * mechanisms, so with none to list there is no AUTH at all (the
 * configuration check refuses that; this keeps EHLO, HELP and the AUTH
 * command agreeing even so). */
int
llsmtp__sess_auth_offered(const llsmtp_server *s)
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
void
llsmtp__sess_rv_auth(llsmtp_server *s, llsmtp_span arg)
{
    size_t m = 0;
    while (m < arg.n && arg.p[m] != ' ')
        m++;
    if (m > 0 && m <= SESS_MECH_MAX && sess_mech_offered(s, arg.p, m))
        llsmtp__sess_rv_keep(s, arg.p, m);
}

/* Appends "\nAUTH MECH MECH" to the EHLO parts (at most
 * LLSMTP_AUTH_MECHS_MAX tokens, which the configuration check enforces). */
void
llsmtp__sess_auth_list(const llsmtp_server *s, sess_parts *ps,
                       const char *head)
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

void
llsmtp__sess_auth_wipe(llsmtp_server *s)
{
    llsmtp__wipe(s->line, s->line_cap);
    if (s->auth.user != NULL)
        llsmtp__wipe(s->auth.user, SESS_AUTH_USER_MAX);
    s->auth.user_len = 0;
    s->line_len = 0;
}

/* ---- the AUTH command and exchange (RFC 4954 4) ------------------------- */

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
    if (llsmtp_b64_decode(in.p, in.n, s->line, s->line_cap, &n) != LLSMTP_OK)
        return -1;
    out->p = s->line;
    out->n = n;
    return 0;
}

/* Ends an exchange with a library error reply (not a failed attempt). */
int
llsmtp__sess_auth_abort(llsmtp_server *s, int code, const char *enh,
                        const char *text)
{
    s->auth.state = AUTH_NONE;
    llsmtp__sess_auth_wipe(s);
    return llsmtp__sess_err(s, code, enh, text);
}

static int
sess_auth_prompt(llsmtp_server *s, int state, const char *b64)
{
    llsmtp_span sp;
    s->auth.state = (unsigned char)state;
    sp.p = b64;
    sp.n = strlen(b64);
    sess_sync_mark(s, 1); /* the client waits for a challenge */
    return llsmtp__sess_put(s, 334, NULL, &sp, 1);
}

/* Hands PLAIN/LOGIN credentials to on_auth; wipes them afterwards. */
static int
sess_auth_decide(llsmtp_server *s, const llsmtp_auth *cred)
{
    llsmtp_reply r;
    llsmtp_span none = {NULL, 0};
    int cbrc = LLSMTP_OK, rc;
    s->auth.is_step = 0;
    llsmtp__sess_kind_default(LLSMTP_PENDING_AUTH, &r);
    if (s->cb->on_auth != NULL)
        SESS_CALL(s, cbrc, s->cb->on_auth(s, cred, &r));
    llsmtp__sess_auth_wipe(s);
    rc = llsmtp__sess_decided(s, LLSMTP_PENDING_AUTH, cbrc, &r, none);
    return rc;
}

static int
sess_auth_plain(llsmtp_server *s, llsmtp_span data)
{
    llsmtp_auth cred;
    if (llsmtp_sasl_plain_parse(data.p, data.n, &cred) != LLSMTP_OK)
        return llsmtp__sess_auth_abort(s, 501, "5.5.2",
                                       "Invalid AUTH PLAIN data");
    return sess_auth_decide(s, &cred);
}

/* One step of a host-driven mechanism. */
static int
sess_auth_hoststep(llsmtp_server *s, llsmtp_span data, int has_data)
{
    llsmtp_auth_step st;
    llsmtp_reply r;
    llsmtp_span none = {NULL, 0};
    int cbrc = LLSMTP_OK;
    s->auth.is_step = 1;
    st.mechanism.p = s->auth.mech;
    st.mechanism.n = strlen(s->auth.mech);
    st.data = data;
    st.step = s->auth.step++;
    st.has_data = has_data;
    llsmtp__sess_kind_default(LLSMTP_PENDING_AUTH, &r);
    SESS_CALL(s, cbrc, s->cb->on_auth_step(s, &st, &r));
    llsmtp__sess_auth_wipe(s);
    return llsmtp__sess_decided(s, LLSMTP_PENDING_AUTH, cbrc, &r, none);
}

int
llsmtp__sess_cmd_auth(llsmtp_server *s, llsmtp_span arg)
{
    size_t m = 0;
    llsmtp_span mech, ir, data = {NULL, 0};
    int has_ir, is_plain, is_login;
    if (s->auth.authenticated)
        return llsmtp__sess_err(s, 503, "5.5.1",
                                "Error: already authenticated");
    if (s->tx.in_mail)
        return llsmtp__sess_err(s, 503, "5.5.1",
                                "Error: MAIL transaction in progress");
    if (!llsmtp__sess_auth_offered(s))
        return llsmtp__sess_say(
            s, 538, "5.7.11",
            "Encryption required for requested authentication "
            "mechanism");
    while (m < arg.n && arg.p[m] != ' ')
        m++;
    mech.p = arg.p;
    mech.n = m;
    ir = llsmtp__sess_trim(arg.p + m, arg.n - m);
    has_ir = ir.n > 0;
    if (mech.n == 0)
        return llsmtp__sess_err(s, 501, "5.5.4",
                                "Syntax: AUTH mechanism [initial-response]");
    if (!sess_mech_offered(s, mech.p, mech.n))
        return llsmtp__sess_err(s, 504, "5.5.4",
                                "Unrecognized authentication type");
    /* Decide before decoding: the response is decoded into the line
     * buffer, which may be where this line (and the name) still is. */
    is_plain = llsmtp__iequal(mech.p, mech.n, "PLAIN", 5);
    is_login = llsmtp__iequal(mech.p, mech.n, "LOGIN", 5);
    memcpy(s->auth.mech, mech.p, mech.n);
    s->auth.mech[mech.n] = '\0';
    if (has_ir && sess_auth_decode(s, ir, &data) != 0)
        return llsmtp__sess_auth_abort(s, 501, "5.5.2",
                                       "Cannot decode response");
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
        return llsmtp__sess_auth_abort(s, 501, "5.5.2", "Invalid user name");
    memcpy(s->auth.user, data.p, data.n);
    s->auth.user_len = data.n;
    llsmtp__wipe(s->line, s->line_cap);
    return sess_auth_prompt(s, AUTH_LOGIN_PASS, llsmtp_sasl_login_pass_prompt);
}

/* A line answering a 334 (RFC 4954 4). */
int
llsmtp__sess_auth_line(llsmtp_server *s, const char *line, size_t len)
{
    llsmtp_span in, data;
    in.p = line;
    in.n = len;
    if (len == 1 && line[0] == '*')
        return llsmtp__sess_auth_abort(s, 501, "5.0.0",
                                       "Authentication cancelled");
    if (len == 0) {
        data.p = s->line;
        data.n = 0;
    } else if (sess_auth_decode(s, in, &data) != 0) {
        return llsmtp__sess_auth_abort(s, 501, "5.5.2",
                                       "Cannot decode response");
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
            return llsmtp__sess_auth_abort(s, 501, "5.5.2",
                                           "Invalid password");
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
