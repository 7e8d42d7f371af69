/* SPDX-License-Identifier: MIT
 *
 * deliver.c - one message to one server over a blocking socket (see
 * deliver.h). The llsmtp client session says what to write and what the
 * replies mean; this file moves the bytes, waits with timeouts, and
 * starts TLS when the session asks for it.
 */
#include "deliver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#ifdef HAVE_OPENSSL
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

typedef struct link_ {
    int fd;
    const dlv_conf *dc;
    /* the server's name: SNI, and what --tls-verify checks */
    const char *name;
    char why[300]; /* why TLS failed */
    int broken;    /* a write failed: the server is gone */
    int tls_on;    /* the handshake succeeded */
    int tls_dead;  /* a fatal TLS error: no close_notify then */
    int in_auth;   /* the last command began AUTH: hide what follows */
    int in_body;   /* the output holds message bytes: not shown */
    FILE *trace;
#ifdef HAVE_OPENSSL
    SSL_CTX *ctx;
    SSL *ssl;
#endif
} link_;

void
dlv_fill(dlv_result *res, size_t n, int code, const char *text)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (res[i].code == 0) {
            res[i].code = code;
            snprintf(res[i].text, sizeof res[i].text, "%s", text);
        }
}

static int
connect_addr(const struct sockaddr *sa, socklen_t sl, int timeout, char *err,
             size_t errcap)
{
    int fd = socket(sa->sa_family, SOCK_STREAM, 0), flags, e = 0;
    struct pollfd pfd;
    socklen_t el = sizeof e;
    if (fd < 0) {
        snprintf(err, errcap, "socket: %s", strerror(errno));
        return -1;
    }
    flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    if (connect(fd, sa, sl) != 0 && errno != EINPROGRESS) {
        snprintf(err, errcap, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    pfd.fd = fd;
    pfd.events = POLLOUT;
    pfd.revents = 0;
    if (poll(&pfd, 1, (timeout > 0 ? timeout : 30) * 1000) != 1) {
        snprintf(err, errcap, "connection timed out");
        close(fd);
        return -1;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0 || e != 0) {
        snprintf(err, errcap, "%s", strerror(e ? e : errno));
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, flags);
    return fd;
}

int
dlv_connect_ip(const llsmtp_ip *ip, uint16_t port, int timeout, char *err,
               size_t errcap)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (ip->family == 4) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        memcpy(&sin->sin_addr, ip->addr, 4);
        return connect_addr((struct sockaddr *)sin, sizeof *sin, timeout, err,
                            errcap);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        memcpy(&sin6->sin6_addr, ip->addr, 16);
        return connect_addr((struct sockaddr *)sin6, sizeof *sin6, timeout,
                            err, errcap);
    }
}

int
dlv_connect_name(const char *spec, int timeout, char *err, size_t errcap)
{
    char host[300], *colon;
    const char *port = "25";
    struct addrinfo hints, *res, *ai;
    int rc, fd = -1;
    if (strlen(spec) >= sizeof host) {
        snprintf(err, errcap, "server name too long");
        return -1;
    }
    strcpy(host, spec);
    colon = strrchr(host, ':');
    if (host[0] == '[') { /* [IPv6]:port or [host]:port */
        char *rb = strrchr(host, ']');
        if (rb == NULL || (rb[1] != '\0' && rb[1] != ':')) {
            snprintf(err, errcap, "bad server %s", spec);
            return -1;
        }
        if (rb[1] == ':')
            port = rb + 2;
        *rb = '\0';
        memmove(host, host + 1, strlen(host));
    } else if (colon != NULL && strchr(host, ':') == colon) {
        *colon = '\0';
        port = colon + 1;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errcap, "%s: %s", spec, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next)
        fd = connect_addr(ai->ai_addr, ai->ai_addrlen, timeout, err, errcap);
    freeaddrinfo(res);
    return fd;
}

/* One trace line per protocol line; what follows AUTH is not shown. */
static void
show(link_ *l, const char *prefix, const char *p, size_t n)
{
    size_t a = 0, i;
    if (l->trace == NULL)
        return;
    for (i = 0; i < n; i++) {
        size_t e;
        int client = prefix[0] == 'C', auth;
        if (p[i] != '\n')
            continue;
        e = i > a && p[i - 1] == '\r' ? i - 1 : i;
        auth = e - a >= 4 && memcmp(p + a, "AUTH", 4) == 0;
        if (client && l->in_auth && !auth)
            fprintf(l->trace, "C: ****\n");
        else if (client && e - a > 11 && memcmp(p + a, "AUTH PLAIN ", 11) == 0)
            fprintf(l->trace, "C: AUTH PLAIN ****\n");
        else
            fprintf(l->trace, "%s%.*s\n", prefix, (int)(e - a), p + a);
        if (client && auth)
            l->in_auth = 1;
        a = i + 1;
    }
}

static void
write_all(link_ *l, const char *p, size_t n)
{
    while (n > 0 && !l->broken) {
        ssize_t w;
#ifdef HAVE_OPENSSL
        if (l->ssl != NULL) {
            int r = SSL_write(l->ssl, p, n > 65536 ? 65536 : (int)n);
            w = r > 0 ? r : -1;
            if (r <= 0)
                l->tls_dead = 1;
        } else
#endif
            w = send(l->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            l->broken = 1;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Bytes read, 0 when the server closed, -1 when it said nothing in time. */
static ssize_t
read_some(link_ *l, char *buf, size_t cap)
{
    for (;;) {
        ssize_t r;
#ifdef HAVE_OPENSSL
        if (l->ssl != NULL) {
            int k = SSL_read(l->ssl, buf, (int)cap), e;
            if (k > 0)
                return k;
            e = SSL_get_error(l->ssl, k);
            if (e != SSL_ERROR_ZERO_RETURN)
                l->tls_dead = 1; /* SSL_shutdown must not follow */
            if (e == SSL_ERROR_SYSCALL &&
                (errno == EAGAIN || errno == EWOULDBLOCK))
                return -1; /* SO_RCVTIMEO expired */
            return 0;
        }
#endif
        r = recv(l->fd, buf, cap, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return -1;
        return r < 0 ? 0 : r;
    }
}

/* Writes what the session has queued; body bytes are not shown. */
static void
flush(link_ *l, llsmtp_client *c)
{
    llsmtp_span o = llsmtp_client_output(c);
    if (o.n == 0)
        return;
    if (!l->in_body)
        show(l, "C: ", o.p, o.n);
    write_all(l, o.p, o.n);
    llsmtp_client_consume(c, o.n);
}

static void
set_timeouts(link_ *l, unsigned sec)
{
    struct timeval tv;
    tv.tv_sec = (time_t)(sec ? sec : 300);
    tv.tv_usec = 0;
    setsockopt(l->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(l->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

#ifdef HAVE_OPENSSL
/* The client context: TLS 1.2 or later; with tls_verify, the CA
 * certificates loaded. Returns -1 when it cannot be made (l->why). */
static int
tls_client_ctx(link_ *l)
{
    l->ctx = SSL_CTX_new(TLS_client_method());
    if (l->ctx == NULL ||
        !SSL_CTX_set_min_proto_version(l->ctx, TLS1_2_VERSION))
        return -1;
    if (!l->dc->tls_verify)
        return 0;
    SSL_CTX_set_verify(l->ctx, SSL_VERIFY_PEER, NULL);
    if ((l->dc->ca_file != NULL
             ? SSL_CTX_load_verify_locations(l->ctx, l->dc->ca_file, NULL)
             : SSL_CTX_set_default_verify_paths(l->ctx)) != 1) {
        snprintf(l->why, sizeof l->why,
                 "4.7.5 cannot load the CA certificates %.150s",
                 l->dc->ca_file ? l->dc->ca_file : "(system)");
        return -1;
    }
    return 0;
}

/* The handshake on l->fd: SNI, and with tls_verify the name (or the
 * address) the certificate must show. Returns -1 when it fails
 * (l->why). */
static int
tls_client_connect(link_ *l)
{
    llsmtp_ip ip;
    int is_ip = l->name != NULL &&
                llsmtp_ip_parse(l->name, strlen(l->name), &ip) == LLSMTP_OK;
    long v;
    if ((l->ssl = SSL_new(l->ctx)) == NULL || SSL_set_fd(l->ssl, l->fd) != 1)
        return -1;
    if (l->name != NULL && !is_ip)
        SSL_set_tlsext_host_name(l->ssl, l->name); /* SNI (RFC 6066 3) */
    if (l->dc->tls_verify && l->name != NULL &&
        (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(l->ssl), l->name)
               : SSL_set1_host(l->ssl, l->name)) != 1)
        return -1;
    if (SSL_connect(l->ssl) == 1)
        return 0;
    v = SSL_get_verify_result(l->ssl);
    if (l->dc->tls_verify && v != X509_V_OK)
        snprintf(l->why, sizeof l->why,
                 "4.7.5 certificate of %.100s not accepted: %.80s",
                 l->name ? l->name : "the server",
                 X509_verify_cert_error_string(v));
    return -1;
}
#endif

/* The session asked for TLS (its STARTTLS got 220). With tls_verify the
 * certificate must chain to ca_file (or the system's CAs) and name the
 * server (RFC 6125; an address must be in the certificate as one). */
static int
start_tls(link_ *l)
{
#ifdef HAVE_OPENSSL
    snprintf(l->why, sizeof l->why, "4.7.5 TLS handshake failed");
    if (tls_client_ctx(l) != 0 || tls_client_connect(l) != 0) {
        ERR_clear_error();
        return -1;
    }
    if (l->trace)
        fprintf(l->trace, "-- TLS %s %s\n", SSL_get_version(l->ssl),
                SSL_get_cipher_name(l->ssl));
    l->tls_on = 1;
    return 0;
#else
    (void)l;
    snprintf(l->why, sizeof l->why, "4.7.5 built without TLS");
    return -1;
#endif
}

/* A result's text as the server wrote it: enhanced code, then text. */
static void
set_result(dlv_result *r, int code, const llsmtp_client_event *ev)
{
    if (r->code != 0)
        return;
    r->code = code;
    r->local = ev->local;
    snprintf(r->text, sizeof r->text, "%s%s%.*s", ev->enhanced,
             ev->enhanced[0] ? " " : "", (int)ev->text.n, ev->text.p);
}

/* What one delivery holds while its session runs. */
typedef struct run_ {
    link_ *l;
    llsmtp_client *c;
    const llsmtp_client_msg *m;
    const char *body;
    size_t n, off; /* body bytes handed to the session so far */
    dlv_result *res;
    int sent, done;
} run_;

/* Acts on one event of the session. */
static void
on_event(run_ *r, const llsmtp_client_event *ev)
{
    size_t i;
    if (ev->code != 334)
        r->l->in_auth = 0;
    switch (ev->type) {
    case LLSMTP_CEV_READY:
        if (!r->sent) {
            r->sent = 1;
            if (llsmtp_client_mail(r->c, r->m) != LLSMTP_OK) {
                dlv_fill(r->res, r->m->nto, 553, "5.1.3 bad address");
                llsmtp_client_quit(r->c);
            }
        } else {
            llsmtp_client_quit(r->c);
        }
        break;
    case LLSMTP_CEV_RCPT:
        if (ev->code / 100 != 2)
            set_result(&r->res[ev->rcpt], ev->code, ev);
        break;
    case LLSMTP_CEV_BODY:
        if (r->l->trace)
            fprintf(r->l->trace, "C: (%zu octets of message)\n", r->n);
        r->off = 0;
        break;
    case LLSMTP_CEV_MESSAGE:
        if (ev->rcpt >= 0) {
            set_result(&r->res[ev->rcpt], ev->code, ev);
        } else {
            for (i = 0; i < r->m->nto; i++)
                set_result(&r->res[i], ev->code, ev);
        }
        break;
    case LLSMTP_CEV_FAIL:
        for (i = 0; i < r->m->nto; i++)
            set_result(&r->res[i], ev->code ? ev->code : 451, ev);
        break;
    default: /* TLS, CLOSED: wants() says what follows */
        break;
    }
}

/* The next body bytes into the session's output (after BODY), then its
 * end; the output is written by the loop as the session asks. */
static int
send_body(run_ *r)
{
    size_t used;
    int rc;
    r->l->in_body = 1;
    rc = llsmtp_client_body(r->c, r->body + r->off, r->n - r->off, &used);
    r->off += used;
    if (rc == LLSMTP_OK)
        rc = llsmtp_client_body_end(r->c);
    if (rc == LLSMTP_BLOCKED)
        return 0;
    if (rc != LLSMTP_OK) {
        /* 8-bit bytes in a 7-bit message: the session stops */
        dlv_fill(r->res, r->m->nto, 554,
                 "5.6.3 8-bit content in a message declared 7-bit");
        return -1;
    }
    return 0;
}

void
dlv_send(int fd, const dlv_conf *dc, const char *name,
         const llsmtp_client_msg *m, const char *body, size_t n,
         dlv_result *res)
{
    llsmtp_client_cfg cfg = dc->cfg;
    llsmtp_client *c = NULL;
    link_ l;
    run_ r;
    static char buf[16384];
    size_t have = 0, off = 0, i, size;

    memset(&l, 0, sizeof l);
    l.fd = fd;
    l.dc = dc;
    l.name = name;
    l.trace = dc->trace;
    for (i = 0; i < m->nto; i++) {
        res[i].code = 0;
        res[i].local = 0;
    }
    /* a larger output queue: the body leaves in fewer, larger writes */
    if (cfg.output_size < 65536)
        cfg.output_size = 65536;
    size = llsmtp_client_size(&cfg);
    if (size == 0) {
        dlv_fill(res, m->nto, 554, "5.3.5 bad HELO name or credentials");
        close(fd);
        return;
    }
    c = llsmtp_client_init(malloc(size), size, &cfg, NULL);
    if (c == NULL) {
        dlv_fill(res, m->nto, 451, "4.3.0 out of memory");
        close(fd);
        return;
    }
    memset(&r, 0, sizeof r);
    r.l = &l;
    r.c = c;
    r.m = m;
    r.body = body;
    r.n = n;
    r.res = res;
    /* the session says what it wants; this loop does it */
    while (!r.done) {
        unsigned w = llsmtp_client_wants(c);
        llsmtp_client_event ev;
        if (w & LLSMTP_WANT_WRITE) {
            flush(&l, c);
            if (l.broken) {
                dlv_fill(res, m->nto, 451,
                         "4.4.2 connection closed by the server");
                break;
            }
        } else if (w & LLSMTP_WANT_EVENT) {
            if (llsmtp_client_next_event(c, &ev) == LLSMTP_EVENT)
                on_event(&r, &ev);
        } else if (w & LLSMTP_WANT_RESUME) {
            /* READY is answered at its event: here the body goes on */
            if (send_body(&r) != 0)
                break;
        } else if (w & LLSMTP_WANT_TLS) {
            l.in_body = 0;
            if (start_tls(&l) != 0) {
                dlv_fill(res, m->nto, 451, l.why);
                break;
            }
            llsmtp_client_tls_started(c);
        } else if (w & LLSMTP_WANT_READ) {
            size_t used;
            l.in_body = 0;
            if (off == have) {
                ssize_t k;
                set_timeouts(&l, dc->timeout > 0 ? (unsigned)dc->timeout
                                                 : llsmtp_client_timeout(c));
                k = l.broken ? 0 : read_some(&l, buf, sizeof buf);
                if (k <= 0) {
                    dlv_fill(res, m->nto, 451,
                             k < 0 ? "4.4.2 timeout waiting for the server"
                                   : "4.4.2 connection closed by the server");
                    break;
                }
                off = 0;
                have = (size_t)k;
                show(&l, "S: ", buf, have);
            }
            if (llsmtp_client_feed(c, buf + off, have - off, &used, &ev) ==
                LLSMTP_EVENT)
                on_event(&r, &ev);
            off += used;
        } else { /* CLOSE: after FAIL or CLOSED */
            r.done = 1;
        }
    }
    free(c);
    dlv_fill(res, m->nto, 451, "4.4.2 connection lost");
#ifdef HAVE_OPENSSL
    /* close_notify (RFC 8446 6.1): the server can tell our end from a
     * truncation. Sent once; the server's own is not waited for. */
    if (l.tls_on && !l.tls_dead && !l.broken && SSL_shutdown(l.ssl) < 0)
        ERR_clear_error();
    if (l.ssl != NULL)
        SSL_free(l.ssl);
    if (l.ctx != NULL)
        SSL_CTX_free(l.ctx);
#endif
    close(fd);
}

void
dlv_tls_unoffered(const dlv_conf *dc, dlv_result *res, size_t n)
{
    size_t i;
    if (!(dc->cfg.flags & LLSMTP_CLI_REQUIRE_TLS))
        return; /* (a 530 of its own for AUTH without TLS stays) */
    for (i = 0; i < n; i++)
        if (res[i].local && res[i].code == 530) {
            char host[LLSMTP_NAME_MAX + 1];
            memcpy(host, res[i].remote, sizeof host);
            res[i].code = 451;
            snprintf(res[i].text, sizeof res[i].text,
                     "4.7.4 TLS is required, but was not offered by %.200s",
                     host[0] ? host : "the server");
        }
}

void
dlv_send_mx(const llsmtp_mx *mx, size_t nmx, uint16_t port, const dlv_conf *dc,
            const llsmtp_client_msg *m, const char *body, size_t n,
            dlv_result *res)
{
    static llsmtp_span to[LLSMTP_CLIENT_RCPT_MAX],
        params[LLSMTP_CLIENT_RCPT_MAX];
    static dlv_result sub[LLSMTP_CLIENT_RCPT_MAX];
    static size_t map[LLSMTP_CLIENT_RCPT_MAX];
    char err[200], ip[64];
    size_t t, a, i, k;
    int left = 1;
    for (i = 0; i < m->nto; i++) {
        res[i].code = 0;
        res[i].remote[0] = '\0';
    }
    for (t = 0; t < nmx && left; t++) {
        for (a = 0; a < mx[t].naddrs && left; a++) {
            llsmtp_client_msg sm = *m;
            int fd;
            llsmtp_ip_format(&mx[t].addrs[a], ip, sizeof ip);
            if (dc->trace)
                fprintf(dc->trace, "-- trying %s [%s]:%u\n", mx[t].host, ip,
                        port ? port : 25);
            fd = dlv_connect_ip(&mx[t].addrs[a], port ? port : 25,
                                dc->connect_timeout, err, sizeof err);
            /* only the recipients that are still open */
            for (i = 0, k = 0; i < m->nto; i++) {
                if (res[i].code / 100 == 2 || res[i].code / 100 == 5)
                    continue;
                if (fd < 0) {
                    /* a server's own 4xx says more than "cannot connect"
                     * to the next one, and that a server answered */
                    if (res[i].remote[0] == '\0') {
                        res[i].code = 451;
                        snprintf(res[i].text, sizeof res[i].text,
                                 "4.4.1 cannot connect to %.253s[%.63s]: "
                                 "%.150s",
                                 mx[t].host, ip, err);
                    }
                    continue;
                }
                to[k] = m->to[i];
                if (m->rcpt_params != NULL)
                    params[k] = m->rcpt_params[i];
                map[k++] = i;
            }
            if (fd < 0)
                continue;
            sm.to = to;
            sm.nto = k;
            sm.rcpt_params = m->rcpt_params != NULL ? params : NULL;
            dlv_send(fd, dc, mx[t].host, &sm, body, n, sub);
            left = 0;
            for (k = 0; k < sm.nto; k++) {
                res[map[k]] = sub[k];
                snprintf(res[map[k]].remote, sizeof res[map[k]].remote, "%s",
                         mx[t].host);
                left |= sub[k].code / 100 == 4;
            }
        }
    }
    dlv_fill(res, m->nto, 451, "4.4.4 no address to deliver to");
}
