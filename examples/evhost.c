/* SPDX-License-Identifier: MIT
 *
 * evhost.c - a non-blocking host to learn from: one thread, epoll, many
 * sessions, every step taken because llsmtp_server_wants() asked for it
 * (a connection keeps only its unfed input and its TLS object). BLOCKED:
 * a peer that does not read fills the output queue, the session stops
 * wanting READ, epoll stops watching for input. PAUSED: on_rcpt defers,
 * a timerfd decides 10 ms later from llsmtp_server_pending_arg() and
 * resumes. STARTTLS: a non-blocking OpenSSL handshake once the 220 is
 * out, then llsmtp_server_tls_started(). RFC 5321 4.5.3.2 timers: the
 * same timerfd, armed after each step from llsmtp_server_timeout().
 * No spool: messages are counted. Linux; C99 and C++17.
 * Usage: evhost [port [divisor [cert.pem key.pem]]] (127.0.0.1:2526; the
 * divisor shortens the RFC's timeouts: 300 makes 5 minutes 1 s; STARTTLS
 * is offered only with a certificate).
 */
#define _GNU_SOURCE 1 /* accept4 */
#include <llsmtp.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

typedef struct conn {
    llsmtp_server *s;     /* in malloc'd memory of llsmtp_server_size() */
    int fd, tfd;          /* the socket; its timer (decision or RFC 5321) */
    SSL *ssl;             /* from STARTTLS's handshake on */
    unsigned long octets; /* of the message coming in */
    size_t off, len;      /* in[off..len): read, not yet fed */
    char in[16384];       /* a whole TLS record: OpenSSL keeps none back */
} conn;

#define MAXFD 4096
static conn *tab[MAXFD];        /* socket and timer fds to their connection */
static int ep;                  /* the epoll set */
static SSL_CTX *ctx;            /* NULL without a certificate: no STARTTLS */
static unsigned long scale = 1; /* divides the RFC timeouts (tests) */

static void
arm(conn *c, unsigned long ms) /* 0 disarms */
{
    struct itimerspec t = {
        {0, 0}, {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L}};
    timerfd_settime(c->tfd, 0, &t, NULL); /* also forgets an expiry */
}

static int
on_rcpt(llsmtp_server *s, const llsmtp_path *to, const llsmtp_params *p,
        llsmtp_reply *r)
{
    (void)to, (void)p, (void)r; /* decided in expire(), from pending_arg */
    arm((conn *)llsmtp_server_user(s), 10);
    return LLSMTP_PAUSED;
}

static void
on_cancel(llsmtp_server *s, int pending)
{
    (void)pending; /* the session ended first: no decision to deliver */
    arm((conn *)llsmtp_server_user(s), 0);
}

static int
on_data(llsmtp_server *s, const char *p, size_t n)
{
    (void)p;
    ((conn *)llsmtp_server_user(s))->octets += n;
    return LLSMTP_OK;
}

static int
on_data_end(llsmtp_server *s, llsmtp_reply *r)
{
    conn *c = (conn *)llsmtp_server_user(s);
    (void)r; /* accepted; no size limit or BDAT here, so no abort either */
    fprintf(stderr, "evhost: accepted %lu octets for %lu recipients\n",
            c->octets, (unsigned long)llsmtp_server_rcpt_count(s));
    c->octets = 0;
    return LLSMTP_OK;
}

/* Reads (wr 0) or writes, through TLS once started: bytes, 0 for "not now"
 * (EAGAIN, or OpenSSL waits for the socket), -1 at EOF or on an error. */
static long
io(conn *c, int wr, char *p, size_t n)
{
    long k;
    if (c->ssl != NULL) {
        ERR_clear_error();
        k = wr ? SSL_write(c->ssl, p, (int)n) : SSL_read(c->ssl, p, (int)n);
        if (k > 0)
            return k;
        k = SSL_get_error(c->ssl, (int)k);
        return k == SSL_ERROR_WANT_READ || k == SSL_ERROR_WANT_WRITE ? 0 : -1;
    }
    k = (long)(wr ? send(c->fd, p, n, 0) : recv(c->fd, p, n, 0));
    return k > 0 ? k : k < 0 && errno == EAGAIN ? 0 : -1;
}

/* WANT_TLS: 1 once the handshake is done, 0 to wait, -1 when it failed. */
static int
handshake(conn *c)
{
    int r;
    if (c->ssl == NULL) {
        c->off = c->len = 0; /* nothing sent before TLS counts (RFC 3207) */
        if ((c->ssl = SSL_new(ctx)) == NULL || !SSL_set_fd(c->ssl, c->fd))
            return -1;
    }
    ERR_clear_error();
    if ((r = SSL_accept(c->ssl)) == 1)
        return llsmtp_server_tls_started(c->s) == LLSMTP_OK ? 1 : -1;
    r = SSL_get_error(c->ssl, r);
    return r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

/* Closes; last_words: one try to send the 421 of a timeout. Returns 0. */
static int
conn_close(conn *c, int last_words)
{
    llsmtp_span o = llsmtp_server_output(c->s);
    if (last_words && o.n > 0)
        io(c, 1, (char *)o.p, o.n);
    SSL_free(c->ssl);
    tab[c->fd] = tab[c->tfd] = NULL;
    close(c->fd); /* which takes it out of the epoll set */
    close(c->tfd);
    free(c->s);
    free(c);
    return 0;
}

/* Does what the session wants until nothing moves (one read at most: the
 * sessions take turns), then tells epoll and the timer; 0 once closed. */
static int
drive(conn *c)
{
    struct epoll_event ev;
    unsigned w = 0, sec;
    int again = 1, reads = 0;
    long k;
    size_t used;
    while (again) {
        llsmtp_span o = llsmtp_server_output(c->s);
        w = llsmtp_server_wants(c->s);
        if (w & LLSMTP_WANT_WRITE) /* replies: what the socket takes */
            k = io(c, 1, (char *)o.p, o.n);
        else if (w & LLSMTP_WANT_TLS) /* all written: hand over */
            k = handshake(c);
        else /* CLOSE once all is written */
            k = w & LLSMTP_WANT_CLOSE ? -1 : 0;
        if (k < 0)
            return conn_close(c, 0);
        if (w & LLSMTP_WANT_WRITE)
            llsmtp_server_consume(c->s, (size_t)k);
        again = k > 0;
        if (!(w & LLSMTP_WANT_READ)) /* BLOCKED, PAUSED, TLS or closing */
            continue;
        if (c->off < c->len) { /* first what was read and not yet taken */
            llsmtp_server_feed(c->s, c->in + c->off, c->len - c->off, &used);
            c->off += used;
            again = 1;
        } else if (reads++ == 0) {
            if ((k = io(c, 0, c->in, sizeof c->in)) < 0)
                llsmtp_server_eof(c->s); /* the peer is gone or half-closed */
            c->off = 0;
            c->len = k > 0 ? (size_t)k : 0;
            again = k != 0;
        }
    }
    memset(&ev, 0, sizeof ev); /* epoll: what the session (or TLS) wants */
    ev.data.fd = c->fd;
    if ((w & LLSMTP_WANT_WRITE) || (c->ssl && SSL_want_write(c->ssl)))
        ev.events |= EPOLLOUT;
    if ((w & LLSMTP_WANT_READ) ||
        (w & (LLSMTP_WANT_TLS | LLSMTP_WANT_WRITE)) == LLSMTP_WANT_TLS)
        ev.events |= EPOLLIN;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    if (!(w & LLSMTP_WANT_RESUME)) {       /* else on_rcpt's timer runs */
        llsmtp_server_timeout(c->s, &sec); /* 0 in the TLS handshake */
        arm(c, (sec ? sec : 300) * 1000UL / scale);
    }
    return 1;
}

/* The connection's timer fired: the deferred decision is due, or an RFC
 * 5321 timeout (or the handshake's) expired. */
static int
expire(conn *c)
{
    uint64_t n;
    llsmtp_reply r = LLSMTP_REPLY_INIT;
    unsigned w = llsmtp_server_wants(c->s);
    if (read(c->tfd, &n, sizeof n) != (ssize_t)sizeof n)
        return 1; /* re-armed or disarmed since it fired */
    if (w & LLSMTP_WANT_RESUME) {
        llsmtp_span a = llsmtp_server_pending_arg(c->s); /* the mailbox */
        if (a.n >= 6 && memcmp(a.p, "nobody", 6) == 0)
            llsmtp_reply_set(&r, 550, "5.1.1", "No such user here");
        llsmtp_server_resume(c->s, &r); /* r as it came accepts */
        return drive(c);
    }
    if (!(w & LLSMTP_WANT_TLS)) /* no cleartext inside a handshake */
        llsmtp_server_timeout_expired(c->s);
    return conn_close(c, 1);
}

static void
accept_all(int lfd, const llsmtp_config *cfg)
{
    struct epoll_event ev;
    size_t size = llsmtp_server_size(cfg);
    int fd, tfd;
    while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
        conn *c = (conn *)calloc(1, sizeof *c);
        void *mem = malloc(size);
        if ((tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK)) < 0 ||
            c == NULL || mem == NULL || fd >= MAXFD || tfd >= MAXFD) {
            free(c), free(mem), close(fd), close(tfd); /* refused */
            continue;
        }
        c->fd = fd, c->tfd = tfd, tab[fd] = tab[tfd] = c;
        c->s = llsmtp_server_init(mem, size, cfg, c);
        memset(&ev, 0, sizeof ev);
        ev.events = EPOLLIN, ev.data.fd = tfd;
        epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
        ev.events = 0, ev.data.fd = fd; /* drive() says what for */
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        llsmtp_server_start(c->s); /* the greeting */
        drive(c);
    }
}

int
main(int argc, char **argv)
{
    llsmtp_callbacks cb;
    llsmtp_config cfg;
    struct sockaddr_in sa;
    struct epoll_event ev, evs[64];
    int port = argc > 1 ? atoi(argv[1]) : 2526, lfd, one = 1, i, n;
    memset(&cb, 0, sizeof cb); /* the rest: the library's defaults */
    cb.on_rcpt = on_rcpt;
    cb.on_cancel = on_cancel;
    cb.on_data = on_data;
    cb.on_data_end = on_data_end;
    llsmtp_config_init(&cfg);
    cfg.hostname = "evhost.example.test";
    cfg.callbacks = &cb;
    if (argc > 2 && (scale = strtoul(argv[2], NULL, 10)) == 0)
        return 2;
    if (argc > 4) {
        if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL ||
            SSL_CTX_use_certificate_chain_file(ctx, argv[3]) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, argv[4], SSL_FILETYPE_PEM) != 1)
            return ERR_print_errors_fp(stderr), 1;
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        cfg.extensions |= LLSMTP_EXT_STARTTLS;
    }
    signal(SIGPIPE, SIG_IGN); /* a write to a closed peer: EPIPE */
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) < 0 ||
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(lfd, 128) < 0 || (ep = epoll_create1(0)) < 0)
        return perror("evhost: 127.0.0.1"), 1;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN, ev.data.fd = lfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    fprintf(stderr, "evhost: listening on 127.0.0.1:%d (STARTTLS %s)\n", port,
            ctx ? "on" : "off");
    for (;;) { /* until killed */
        n = epoll_wait(ep, evs, 64, -1);
        for (i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            conn *c = fd < MAXFD ? tab[fd] : NULL; /* NULL: closed */
            if (fd == lfd)
                accept_all(lfd, &cfg);
            else if (c != NULL && fd == c->tfd)
                expire(c);
            else if (c != NULL && (evs[i].events & (EPOLLERR | EPOLLHUP)))
                llsmtp_server_eof(c->s), drive(c); /* reset: cancels */
            else if (c != NULL)
                drive(c);
        }
    }
}
