/* SPDX-License-Identifier: MIT
 *
 * tls.c - smtpd's STARTTLS (RFC 3207), and every OpenSSL call of the
 * server: the context from --tls-cert/--tls-key/--tls-ciphers/--tls-min,
 * a connection's handshake, reads and writes, close_notify. Built without
 * OpenSSL (no HAVE_OPENSSL), each function says "no TLS": STARTTLS is
 * never offered then, so a connection never gets here.
 */
#include "smtpd.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#ifdef HAVE_OPENSSL
#include <openssl/err.h>
#include <openssl/ssl.h>

/* The OpenSSL objects behind smtpd.h's void pointers (smtpd.h includes
 * no OpenSSL header: a build without it has the same structs). */
static SSL_CTX *
ctx_of(const smtpd *d)
{
    return (SSL_CTX *)d->tls_ctx;
}

static SSL *
ssl_of(const conn *c)
{
    return (SSL *)c->ssl;
}

const char *
tls_library(void)
{
    return OpenSSL_version(OPENSSL_VERSION);
}

/* The server's context, when --tls-cert is given; STARTTLS is offered
 * then. Returns 0, or 2 (the exit status) when it cannot be used. */
int
tls_setup(smtpd *d)
{
    const options *o = &d->opt;
    SSL_CTX *ctx;
    if (o->tls_cert == NULL)
        return 0;
    ctx = SSL_CTX_new(TLS_server_method());
    d->tls_ctx = ctx;
    if (ctx == NULL ||
        !SSL_CTX_set_min_proto_version(ctx, o->tls_min == 13
                                                ? TLS1_3_VERSION
                                                : TLS1_2_VERSION) ||
        SSL_CTX_set_cipher_list(ctx, o->tls_ciphers) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, o->tls_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, o->tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        fprintf(stderr,
                "smtpd: cannot use --tls-cert %s / --tls-key %s "
                "/ --tls-ciphers %s: ",
                o->tls_cert, o->tls_key, o->tls_ciphers);
        ERR_print_errors_fp(stderr);
        return 2;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* our order, not the client's; no renegotiation (a client-driven
     * CPU cost, and nothing SMTP needs); no compression (CRIME) */
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_NO_COMPRESSION);
    d->cfg.extensions |= LLSMTP_EXT_STARTTLS;
    return 0;
}

void
tls_free(smtpd *d)
{
    SSL_CTX_free(ctx_of(d));
    d->tls_ctx = NULL;
}

/* Maps an SSL result to bytes, 0 (closed), -1 (error) or IO_AGAIN with
 * the poll events the TLS layer needs next. */
static ssize_t
tls_result(conn *c, int r)
{
    if (r > 0) {
        c->ssl_want = 0;
        return r;
    }
    switch (SSL_get_error(ssl_of(c), r)) {
    case SSL_ERROR_WANT_READ:
        c->ssl_want = POLLIN;
        return IO_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        c->ssl_want = POLLOUT;
        return IO_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        c->tls_dead = 1; /* SSL_shutdown must not follow */
        return -1;
    }
}

/* SSL_read(): bytes, 0 at EOF, -1 on error, IO_AGAIN. */
ssize_t
tls_recv(conn *c, char *buf, size_t n)
{
    ERR_clear_error();
    return tls_result(c, SSL_read(ssl_of(c), buf,
                                  n > INT32_MAX ? INT32_MAX : (int)n));
}

/* SSL_write(): bytes, -1 on error, IO_AGAIN. */
ssize_t
tls_send(conn *c, const char *buf, size_t n)
{
    ERR_clear_error();
    return tls_result(c, SSL_write(ssl_of(c), buf,
                                   n > INT32_MAX ? INT32_MAX : (int)n));
}

/* Whether decrypted bytes wait that poll() cannot see. */
int
tls_pending(const conn *c)
{
    return c->tls == TLS_ON && SSL_pending(ssl_of(c)) > 0;
}

/* The version and cipher of a connection in TLS; 0 when it is not. */
int
tls_names(const conn *c, const char **version, const char **cipher)
{
    if (c->tls != TLS_ON)
        return 0;
    *version = SSL_get_version(ssl_of(c));
    *cipher = SSL_get_cipher_name(ssl_of(c));
    return 1;
}

/* A failed handshake in the log: what OpenSSL says went wrong (no shared
 * cipher, wrong version, a client that does not like the
 * certificate...). */
static void
tls_log_failure(conn *c)
{
    unsigned long e = ERR_get_error();
    char why[256];
    if (e != 0)
        ERR_error_string_n(e, why, sizeof why);
    else
        snprintf(why, sizeof why, "%s",
                 errno ? strerror(errno) : "connection closed");
    log_held(&c->log, "session=%lu tls handshake failed client=%s: %s", c->sid,
             c->peer, why);
    ERR_clear_error();
}

/* Advances STARTTLS: once the 220 is written, the handshake; once done,
 * the session starts afresh. Returns -1 when the connection is lost. */
int
tls_step(conn *c)
{
    int r;
    const char *v = "", *ci = "";
    if (c->tls == TLS_FLUSH) {
        if (llsmtp_server_output(c->s).n > 0)
            return 0;
        SSL *ssl = SSL_new(ctx_of(c->d));
        c->ssl = ssl;
        if (ssl == NULL || SSL_set_fd(ssl, c->fd) != 1)
            return -1;
        SSL_set_accept_state(ssl);
        c->tls = TLS_HANDSHAKE;
    }
    if (c->tls != TLS_HANDSHAKE)
        return 0;
    ERR_clear_error();
    r = SSL_do_handshake(ssl_of(c));
    if (r == 1) {
        c->tls = TLS_ON;
        c->ssl_want = 0;
        if (llsmtp_server_tls_started(c->s) != LLSMTP_OK)
            return -1;
        session_forget(c);
        tls_names(c, &v, &ci);
        log_held(&c->log, "session=%lu tls=%s cipher=%s", c->sid, v, ci);
        arm_timer(c);
        return 0;
    }
    if (tls_result(c, r) == IO_AGAIN)
        return 0;
    tls_log_failure(c);
    return -1;
}

/* close_notify (RFC 8446 6.1), so the client can tell our close from a
 * truncation; one try, never waiting for the peer's. Then freed. */
void
tls_close(conn *c)
{
    SSL *ssl = ssl_of(c);
    if (ssl == NULL)
        return;
    if (c->tls == TLS_ON && !c->tls_dead) {
        ERR_clear_error();
        if (SSL_shutdown(ssl) < 0)
            ERR_clear_error();
    }
    SSL_free(ssl);
    c->ssl = NULL;
}

#else /* no OpenSSL: no STARTTLS */

const char *
tls_library(void)
{
    return "none";
}

int
tls_setup(smtpd *d)
{
    (void)d;
    return 0;
}

void
tls_free(smtpd *d)
{
    (void)d;
}

ssize_t
tls_recv(conn *c, char *buf, size_t n)
{
    (void)c, (void)buf, (void)n;
    return -1;
}

ssize_t
tls_send(conn *c, const char *buf, size_t n)
{
    (void)c, (void)buf, (void)n;
    return -1;
}

int
tls_pending(const conn *c)
{
    (void)c;
    return 0;
}

int
tls_names(const conn *c, const char **version, const char **cipher)
{
    (void)c, (void)version, (void)cipher;
    return 0;
}

int
tls_step(conn *c)
{
    (void)c;
    return -1;
}

void
tls_close(conn *c)
{
    (void)c;
}

#endif
