/* SPDX-License-Identifier: MIT
 *
 * loop.c - smtpd's event loop: the listeners, one poll() set a round
 * (sessions, ETRN pipes, the signal pipe, the storage thread's pipe),
 * accept, each connection's reads and writes (through tls.c once in
 * TLS), its timeouts and PROXY header octets, and the drain after
 * SIGTERM. Whole reads are fed to the session; the library answers.
 */
#include "smtpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* What the signal handler reaches, so file-scope (a handler gets no
 * argument): the stop flag, and the self-pipe: the handler writes a
 * byte, the loop polls the read end, so a signal that comes between the
 * loop's look at stop_flag and poll() still wakes it (else poll could
 * wait forever). Nothing else here is file-scope: the rest is smtpd's. */
static volatile sig_atomic_t stop_flag;
static int sig_pipe[2] = {-1, -1};

static void
on_signal(int sig)
{
    int e = errno;
    (void)sig;
    if (stop_flag < 2)
        stop_flag++; /* 1: drain; 2: the drain ends now */
    if (sig_pipe[1] >= 0) {
        ssize_t w = write(sig_pipe[1], "", 1); /* full: a wake-up waits */
        (void)w;
    }
    errno = e;
}

/* SIGTERM and SIGINT start the drain, a second one ends it at once;
 * SIGPIPE is ignored (a peer gone
 * shows as EPIPE). Returns 0, or 1 (the exit status). */
int
signals_init(void)
{
    struct sigaction sa;
    int i;
    if (pipe(sig_pipe) != 0) {
        perror("smtpd: pipe");
        return 1;
    }
    for (i = 0; i < 2; i++) {
        fcntl(sig_pipe[i], F_SETFL, fcntl(sig_pipe[i], F_GETFL) | O_NONBLOCK);
        fcntl(sig_pipe[i], F_SETFD, FD_CLOEXEC);
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    /* one handler at a time: stop_flag++ is not atomic */
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* In a queue runner or an ETRN scan (arg: the smtpd): the sockets belong
 * to the server. */
void
runner_setup(void *arg)
{
    smtpd *d = (smtpd *)arg;
    size_t k;
    int i;
    log_forked();         /* a new process */
    queue_child(d->outq); /* the spool's lock stays the server's */
    if (sig_pipe[0] >= 0) {
        close(sig_pipe[0]);
        close(sig_pipe[1]);
        sig_pipe[0] = sig_pipe[1] = -1;
    }
    for (i = 0; i < d->opt.nlisten; i++)
        close(d->lfds[i]);
    for (k = 0; k < d->nconns; k++) {
        if (d->conns[k] == NULL)
            continue; /* ended earlier in this poll round */
        close(d->conns[k]->fd);
        if (d->conns[k]->etrn_fd >= 0)
            close(d->conns[k]->etrn_fd);
    }
}

/* ---- listening ------------------------------------------------------ */

/* Milliseconds on a clock that never jumps: the PROXY header's and the
 * drain's deadlines (whole seconds of time() fired up to 1 s early). */
static long long
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
own_add(smtpd *d, const struct sockaddr *sa)
{
    llsmtp_ip ip;
    size_t i;
    memset(&ip, 0, sizeof ip);
    if (sa == NULL || d->nown == MAX_OWN)
        return;
    if (sa->sa_family == AF_INET) {
        ip.family = 4;
        memcpy(ip.addr,
               &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        ip.family = 6;
        memcpy(ip.addr,
               &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
               16);
    } else {
        return;
    }
    for (i = 0; i < d->nown; i++)
        if (memcmp(&d->own_addrs[i], &ip, sizeof ip) == 0)
            return;
    d->own_addrs[d->nown++] = ip;
}

/* RFC 5321 4.1.3: user@[addr] is local when addr is this server's: the
 * address it listens on or, for a wildcard listener, every address of
 * the host's interfaces of that family. */
static void
own_from_listener(smtpd *d, const struct sockaddr_storage *ss)
{
    static const unsigned char any6[16] = {0};
    int wild = 0;
    if (ss->ss_family == AF_INET)
        wild =
            ((const struct sockaddr_in *)(const void *)ss)->sin_addr.s_addr ==
            htonl(INADDR_ANY);
    else if (ss->ss_family == AF_INET6)
        wild = memcmp(
                   &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr,
                   any6, 16) == 0;
    if (!wild) {
        own_add(d, (const struct sockaddr *)(const void *)ss);
        return;
    }
    {
        struct ifaddrs *ifa, *i;
        if (getifaddrs(&ifa) != 0) {
            log_say("getifaddrs: %s (own address literals "
                    "not known)",
                    strerror(errno));
            return;
        }
        for (i = ifa; i != NULL; i = i->ifa_next)
            if (i->ifa_addr != NULL && i->ifa_addr->sa_family == ss->ss_family)
                own_add(d, i->ifa_addr);
        freeifaddrs(ifa);
    }
}


/* How many times bind() is tried, 100 ms apart, while the address is in
 * use (see open_listener). */
#define BIND_TRIES 50

/* --listen's "ADDR:PORT" or "[ADDR6]:PORT" as a socket address into ss
 * (exit 2 when it is not one); returns its length. */
static socklen_t
listen_addr(const char *spec, struct sockaddr_storage *ss)
{
    char host[128];
    const char *colon, *port;
    long p;
    char *end;
    memset(ss, 0, sizeof *ss);
    if (spec[0] == '[') {
        const char *rb = strchr(spec, ']');
        if (rb == NULL || rb[1] != ':' ||
            (size_t)(rb - spec - 1) >= sizeof host)
            log_die(2, "bad --listen %s", spec);
        memcpy(host, spec + 1, (size_t)(rb - spec - 1));
        host[rb - spec - 1] = '\0';
        port = rb + 2;
    } else {
        colon = strrchr(spec, ':');
        if (colon == NULL || (size_t)(colon - spec) >= sizeof host)
            log_die(2, "bad --listen %s", spec);
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
        port = colon + 1;
    }
    p = strtol(port, &end, 10);
    if (*port == '\0' || *end || p < 0 || p > 65535)
        log_die(2, "bad port in --listen %s", spec);
    if (inet_pton(AF_INET, host, &((struct sockaddr_in *)ss)->sin_addr) == 1) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)p);
        return sizeof *sin;
    }
    if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)ss)->sin6_addr) ==
        1) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)p);
        return sizeof *sin6;
    }
    log_die(2, "bad address in --listen %s (give an IP address)", spec);
    return 0;
}

/* bind(), asked again while the address is in use. A restart after a
 * kill -9 can find the port still taken by the dead server's socket: a
 * child forked just before the kill holds a copy until it closes it
 * (runner_setup) or dies, which is a matter of moments; there is no way
 * to fork without the descriptors. Refusing at once would leave the
 * spool without a server, so the port is asked for again for a few
 * seconds. Exits 1 when it cannot be had. */
static void
bind_retrying(int fd, const char *spec, const struct sockaddr_storage *ss,
              socklen_t sl)
{
    int tries;
    for (tries = 0;; tries++) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        if (bind(fd, (const struct sockaddr *)ss, sl) == 0)
            return;
        if (errno != EADDRINUSE || tries == BIND_TRIES) {
            log_say("cannot listen on %s: %s", spec, strerror(errno));
            exit(1);
        }
        if (tries == 0)
            log_say("%s is in use; trying again for %ds", spec,
                    BIND_TRIES / 10);
        nanosleep(&ts, NULL);
    }
}

/* A listening socket for spec (non-blocking); exits when there is
 * none. */
static int
open_listener(smtpd *d, const char *spec)
{
    struct sockaddr_storage ss;
    socklen_t sl = listen_addr(spec, &ss);
    int fd, one = 1;
    fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0) {
        perror("smtpd: socket");
        exit(1);
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    bind_retrying(fd, spec, &ss, sl);
    if (listen(fd, 511) != 0) {
        log_say("cannot listen on %s: %s", spec, strerror(errno));
        exit(1);
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    own_from_listener(d, &ss);
    return fd;
}


/* Every --listen, logged; then the policy knows the addresses that are
 * this host's (user@[addr]). */
void
listeners_open(smtpd *d)
{
    int i;
    for (i = 0; i < d->opt.nlisten; i++) {
        d->lfds[i] = open_listener(d, d->opt.listen[i]);
        log_line("listening on %s%s as %s", d->opt.listen[i],
                 d->opt.listen_proxy[i] ? ",proxy" : "", d->opt.hostname);
    }
    d->policy.own_addrs = d->own_addrs; /* filled by open_listener */
    d->policy.nown = d->nown;
}

/* ---- connections -------------------------------------------------------- */

void
arm_timer(conn *c)
{
    unsigned sec = 0;
    if (c->awaiting_header) {
        /* its own short deadline (header_deadline, which the loop
         * watches), never extended by a trickle of bytes: a silent or
         * slow peer would hold a --max-clients slot for the greeting's
         * 5 minutes */
        c->deadline = 0;
        return;
    }
    llsmtp_server_timeout(c->s, &sec);
    if (c->d->opt.timeout)
        sec = (unsigned)c->d->opt.timeout;
    c->deadline = sec ? time(NULL) + (time_t)sec : 0;
}

static void conn_reclaim(conn *c);

static void
conn_free(conn *c)
{
    if (c->s != NULL && (c->msg != NULL || c->job != NULL))
        llsmtp_server_eof(c->s);
    if (c->job != NULL) {
        commit_cancel(c->d->commit, c->job);
        c->job = NULL;
    }
    free_tx(c);
    free(c->helo);
    free(c->auth_user);
    free(c->rtext);
    free(c->rcpt_at);
    free(c->relay);
    free(c->pending);
    if (c->s != NULL) { /* what was never written: dropped, its buffer */
        llsmtp_span o;
        (void)llsmtp_server_eof(c->s);
        while ((o = llsmtp_server_output(c->s)).n != 0)
            (void)llsmtp_server_consume(c->s, o.n);
        conn_reclaim(c);
        free(c->loan); /* NULL once taken back; the session goes too */
    }
    if (c->etrn_fd >= 0) {
        close(c->etrn_fd);
        etrn_forget(c); /* its scan ends now, not after every envelope */
    }
    free(c->etrn_buf);
    tls_close(c);
    close(c->fd);
    free(c->s);
    log_held(&c->log, "session=%lu close", c->sid);
    log_hold_free(&c->log); /* a health check's lines: dropped */
    free(c);
}


/* recv() or SSL_read(): bytes, 0 at EOF, -1 on error, IO_AGAIN. */
static ssize_t
conn_recv(conn *c, char *buf, size_t n)
{
    ssize_t r;
    if (c->tls == TLS_ON)
        return tls_recv(c, buf, n);
    r = recv(c->fd, buf, n, 0);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return IO_AGAIN;
    return r;
}

/* send() or SSL_write(): bytes, -1 on error, IO_AGAIN. */
static ssize_t
conn_send(conn *c, const char *buf, size_t n)
{
    ssize_t w;
    if (c->tls == TLS_ON)
        return tls_send(c, buf, n);
    w = send(c->fd, buf, n, MSG_NOSIGNAL);
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return IO_AGAIN;
    return w;
}

/* Octets the session has queued for the peer. */
static size_t
conn_out(conn *c)
{
    return llsmtp_server_output(c->s).n;
}

static void feed_stop(conn *c, int rc);

/* Lends the session an output buffer before a call that may queue a
 * reply (it keeps one while replies wait). 0, or -1 when memory runs
 * out. */
int
conn_lend(conn *c)
{
    smtpd *d = c->d;
    char *b;
    if (c->loan != NULL)
        return 0; /* it holds one: replies are waiting */
    b = d->nspare > 0 ? d->spare[--d->nspare] : (char *)malloc(d->lend_cap);
    if (b == NULL)
        return -1;
    if (llsmtp_server_lend(c->s, b, d->lend_cap) != LLSMTP_OK) {
        d->spare[d->nspare++] = b;
        return -1;
    }
    c->loan = b;
    return 0;
}

/* Every byte written: the buffer goes back to the spares. */
static void
conn_reclaim(conn *c)
{
    smtpd *d = c->d;
    char *b = c->loan != NULL ? llsmtp_server_reclaim(c->s) : NULL;
    if (b == NULL)
        return; /* nothing lent, or replies still waiting */
    c->loan = NULL;
    if (d->nspare < LEND_SPARES)
        d->spare[d->nspare++] = b;
    else
        free(b);
}

/* Writes what the session has queued. Returns -1 when the peer is gone. */
int
flush_out(conn *c)
{
    llsmtp_span o = llsmtp_server_output(c->s);
    int rc;
    if (c->tls == TLS_HANDSHAKE)
        return 0;
    while (o.n > 0) {
        ssize_t w = conn_send(c, o.p, o.n);
        if (w == IO_AGAIN)
            return 0;
        if (w < 0)
            return -1;
        /* LMTP replies waiting for room are queued here (and looped) */
        rc = llsmtp_server_consume(c->s, (size_t)w);
        if ((rc == LLSMTP_CLOSE || rc < 0) && !c->closing)
            feed_stop(c, rc);
        o = llsmtp_server_output(c->s);
    }
    conn_reclaim(c);
    return 0;
}


/* The PROXY v2 signature (proxy-protocol.txt 2.2). */
static const unsigned char v2sig[12] = {'\r', '\n', '\r', '\n', 0,   '\r',
                                        '\n', 'Q',  'U',  'I',  'T', '\n'};

/* Why the library refused a PROXY header (it closes without a word),
 * from its first octets; never the octets themselves but as printable
 * text (a v2 header is binary). */
static void
header_refused(conn *c, const char *why)
{
    const unsigned char *h = c->hdr_seen;
    size_t n = c->hdr_seen_n;
    char first[sizeof c->hdr_seen + 1], block[100];
    log_release(&c->log); /* the balancer's header broken: never quiet */
    if (why != NULL) {
        /* nothing wrong with what came: too little of it */
    } else if (n >= 6 && memcmp(h, "PROXY ", 6) == 0) {
        why = "malformed PROXY v1 header";
    } else if (n >= 14 && memcmp(h, v2sig, 12) == 0) {
        /* the library's refusals, in its order (lib/proxy.c) */
        unsigned alen = n >= 16 ? (unsigned)(h[14] << 8 | h[15]) : 0;
        why = (h[12] >> 4) != 2   ? "PROXY v2 header of another version"
              : (h[12] & 0xF) > 1 ? "PROXY v2 header with an unknown command"
                                  : "PROXY v2 header for neither TCP over "
                                    "IPv4 nor IPv6";
        if (h[12] == 0x21 && n >= 16 &&
            ((h[13] == 0x11 && alen < 12) || (h[13] == 0x21 && alen < 36))) {
            snprintf(block, sizeof block,
                     "PROXY v2 header for TCP over IPv%c with a %u-octet "
                     "address block (%u needed)",
                     h[13] == 0x11 ? '4' : '6', alen,
                     h[13] == 0x11 ? 12u : 36u);
            why = block;
        }
    } else {
        log_printable(first, sizeof first, (const char *)h, n);
        log_line("session=%lu bad PROXY header from %s: not a PROXY header "
                 "(\"%s\")",
                 c->sid, c->peer, first);
        return;
    }
    log_line("session=%lu bad PROXY header from %s: %s", c->sid, c->peer, why);
}

static int feed(conn *c, const char *buf, size_t len);

/* A direct listener's first octets. A v2 header there (a balancer sent
 * to the wrong port): read as commands, its binary signature would end
 * in a "QUIT" line, logged as if the client had said it. Closed, never
 * shown. Its octets may come in several reads: while all that came is a
 * prefix of the signature it is kept in hdr_seen (unused on a direct
 * listener), not fed (the greeting's timeout bounds the wait). */
static int
feed_first(conn *c, const char *buf, size_t len)
{
    size_t have = c->hdr_seen_n, k = sizeof v2sig - have;
    char *p;
    int rc;
    if (k > len)
        k = len;
    memcpy(c->hdr_seen + have, buf, k);
    if (memcmp(c->hdr_seen, v2sig, have + k) == 0) {
        if (have + k < sizeof v2sig) {
            c->hdr_seen_n = have + k;
            return 0;
        }
        log_release(&c->log);
        log_line("session=%lu PROXY v2 header from %s on a listener "
                 "without proxy: closed",
                 c->sid, c->peer);
        c->closing = 1;
        return 0;
    }
    c->spoke = 1;
    if (have == 0)
        return feed(c, buf, len);
    /* the octets kept were no signature: fed before these */
    p = (char *)malloc(have + len);
    if (p == NULL)
        return -1;
    memcpy(p, c->hdr_seen, have);
    memcpy(p + have, buf, len);
    rc = feed(c, p, have + len);
    free(p);
    return rc;
}

/* The session took part of the input (BLOCKED: its output is full;
 * PAUSED: a decision of ours is awaited). Returns 1 to feed the rest
 * now (all written), 0 when the rest is kept in c->pending for later
 * (maybe nothing: the session still has replies to make), -1 when the
 * peer is lost. */
static int
feed_hold(conn *c, int rc, const char *buf, size_t len)
{
    size_t n = 1;
    char *p;
    if (rc == LLSMTP_BLOCKED) {
        if (flush_out(c) < 0)
            return -1;
        n = conn_out(c);
    }
    if (n == 0)
        return 1; /* all written: go on */
    p = (char *)malloc(len + 1);
    if (p == NULL)
        return -1;
    memcpy(p, buf, len);
    free(c->pending);
    c->pending = p;
    c->pending_len = len;
    return 0;
}

/* The session ends (LLSMTP_CLOSE, an error) or starts TLS: no more
 * input is fed. */
static void
feed_stop(conn *c, int rc)
{
    if (rc == LLSMTP_CLOSE) {
        if (c->awaiting_header)
            header_refused(c, NULL);
        c->awaiting_header = 0;
        c->closing = 1;
    } else if (rc == LLSMTP_START_TLS) {
        /* 220 queued; the session dropped the rest of this read
         * (CVE-2011-0411). Flush it, then handshake. */
        c->tls = TLS_FLUSH;
    } else {
        log_held(&c->log, "session=%lu library error %s (%s)", c->sid,
                 llsmtp_errname(rc),
                 llsmtp_server_failed_cb(c->s) ? llsmtp_server_failed_cb(c->s)
                                               : "-");
        /* the session queued a 421 for the client: write it first */
        c->closing = 1;
    }
}

/* Feeds bytes; keeps what the session could not take yet. Returns -1
 * when the connection is lost. */
static int
feed(conn *c, const char *buf, size_t len)
{
    if (!c->proxied && !c->spoke)
        return feed_first(c, buf, len);
    if (c->awaiting_header && c->hdr_seen_n < sizeof c->hdr_seen) {
        size_t k = sizeof c->hdr_seen - c->hdr_seen_n;
        memcpy(c->hdr_seen + c->hdr_seen_n, buf, k < len ? k : len);
        c->hdr_seen_n += k < len ? k : len;
    }
    for (;;) {
        size_t used = 0;
        int rc;
        if (conn_lend(c) != 0)
            return -1;
        rc = llsmtp_server_feed(c->s, buf, len, &used);
        buf += used;
        len -= used;
        if (rc == LLSMTP_BLOCKED || rc == LLSMTP_PAUSED) {
            int h = feed_hold(c, rc, buf, len);
            if (h != 1)
                return h;
        } else if (rc == LLSMTP_CLOSE || rc == LLSMTP_START_TLS || rc < 0) {
            feed_stop(c, rc);
            return 0;
        } else if (len == 0) {
            return 0;
        }
    }
}

/* ---- the drain (SIGTERM) ------------------------------------------------ */

void
drain_told(conn *c)
{
    if (!c->drained)
        c->d->ndrained++;
    c->drained = 1;
}

/* Draining (SIGTERM): whether 421 4.3.2 now loses nothing, as the
 * session is between transactions (before MAIL, or after a message's
 * final reply or RSET), awaits no decision of ours and is neither in a
 * STARTTLS handshake nor behind on reading its replies. */
static int
drain_point(const conn *c)
{
    int t = llsmtp_server_timeout(c->s, NULL);
    return !c->closing && c->pending == NULL && c->tls != TLS_FLUSH &&
           c->tls != TLS_HANDSHAKE &&
           llsmtp_server_pending(c->s) == LLSMTP_PENDING_NONE &&
           (t == LLSMTP_TIMEOUT_IDLE || t == LLSMTP_TIMEOUT_MAIL);
}

/* SIGTERM seen: the listeners close, and each session gets 421 at its
 * next transaction boundary (the loop); what is still open after the
 * grace is cut. */
static void
drain_begin(smtpd *d, long long now_ms)
{
    int i;
    log_line("stopping: draining %zu sessions for up to %ds", d->nconns,
             d->opt.drain_timeout);
    d->draining = 1;
    d->stop_at = now_ms + (long long)d->opt.drain_timeout * 1000;
    for (i = 0; i < d->opt.nlisten; i++)
        close(d->lfds[i]);
}

/* Whether the drain is over: every session gone and every delivery
 * done, or the grace spent. */
static int
drain_over(const smtpd *d, long long now_ms)
{
    return d->draining && ((d->nconns == 0 && queue_busy(d->outq) == 0) ||
                           now_ms >= d->stop_at);
}

/* The drain is over: what is still open is cut (421, written if it can
 * be). */
static void
loop_cut(smtpd *d)
{
    size_t k, ncut = 0;
    for (k = 0; k < d->nconns; k++)
        ncut += !d->conns[k]->drained; /* told, yet still writing */
    log_line("stopping: %zu sessions drained, %zu cut", d->ndrained, ncut);
    for (k = 0; k < d->nconns; k++) {
        conn_lend(d->conns[k]);
        llsmtp_server_shutdown(d->conns[k]->s, NULL);
        flush_out(d->conns[k]);
        conn_free(d->conns[k]);
    }
    free(d->conns);
    d->conns = NULL;
    d->nconns = d->conns_cap = 0;
    free(d->ps.fds);
    d->ps.fds = NULL;
    d->ps.cap = 0;
    while (d->nspare > 0)
        free(d->spare[--d->nspare]);
}

/* ---- accepting ---------------------------------------------------------- */

/* The peer's address as text ("unknown" for another family). */
static void
peer_name(const struct sockaddr_storage *ss, char *peer, size_t n)
{
    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, peer,
                  (socklen_t)n);
    else if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr,
                  peer, (socklen_t)n);
    else
        snprintf(peer, n, "unknown");
}

/* At --max-clients, or stopping: 421 and closed. */
static void
refuse_busy(smtpd *d, int fd)
{
    char msg[300];
    int n = snprintf(msg, sizeof msg,
                     "421 4.7.0 %s Too many connections, try again "
                     "later\r\n",
                     d->opt.hostname);
    if (send(fd, msg, (size_t)n, MSG_NOSIGNAL) < 0) {
        /* nothing more to do for this peer */
    }
    close(fd);
}

/* A session for fd, greeted (the greeting queued) and logged; NULL when
 * memory runs out. */
static conn *
conn_new(smtpd *d, int fd, const char *peer, const llsmtp_ip *ip, int proxied)
{
    const llsmtp_config *lc = proxied ? &d->cfg_proxy : &d->cfg;
    size_t sz = llsmtp_server_size(lc);
    conn *c = (conn *)calloc(1, sizeof *c);
    if (c == NULL || (c->s = (llsmtp_server *)malloc(sz)) == NULL) {
        free(c);
        return NULL;
    }
    c->d = d;
    c->fd = fd;
    c->sid = ++d->next_sid;
    c->etrn_fd = -1;
    memcpy(c->peer, peer, sizeof c->peer);
    llsmtp_server_init(c->s, sz, lc, c);
    c->proxied = proxied;
    c->awaiting_header = proxied;
    c->header_deadline = mono_ms() + (long long)d->opt.proxy_timeout * 1000;
    if (ip->family != 0)
        llsmtp_server_set_peer(c->s, ip);
    if (conn_lend(c) != 0) {
        free(c->s);
        free(c);
        return NULL;
    }
    /* before the greeting, which --verbose logs; behind a balancer
     * once the header has named the client (on_connect) */
    if (proxied)
        snprintf(c->via, sizeof c->via, "%s", c->peer);
    else
        log_held(&c->log, "session=%lu connect from %s", c->sid, c->peer);
    if (llsmtp_server_start(c->s) == LLSMTP_CLOSE)
        c->closing = 1;
    arm_timer(c);
    return c;
}

/* c joins the sessions; 0, or -1 when memory runs out. */
static int
conns_add(smtpd *d, conn *c)
{
    if (d->nconns == d->conns_cap) {
        size_t cap = d->conns_cap ? d->conns_cap * 2 : 64;
        conn **v = (conn **)realloc(d->conns, cap * sizeof *v);
        if (v == NULL)
            return -1;
        d->conns = v;
        d->conns_cap = cap;
    }
    d->conns[d->nconns++] = c;
    return 0;
}

/* A connection accepted on listener li. */
static void
accept_one(smtpd *d, int li, int fd, const struct sockaddr_storage *ss)
{
    int one = 1, proxied = d->opt.listen_proxy[li];
    char peer[sizeof((conn *)0)->peer];
    llsmtp_ip ip;
    conn *c;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    peer_name(ss, peer, sizeof peer);
    if (llsmtp_ip_parse(peer, strlen(peer), &ip) != LLSMTP_OK)
        memset(&ip, 0, sizeof ip);
    if (proxied && !proxy_trusted(d, &ip)) {
        /* not a balancer: its header would be believed (any client
         * address, a --relay-net one too); no reply, not SMTP yet,
         * and before the 421 below, which would name the host to
         * whoever reaches the port */
        log_line("session=%lu refused connection from %s: not a "
                 "--proxy-from address (PROXY listener)",
                 ++d->next_sid, peer);
        close(fd);
        return;
    }
    if ((int)d->nconns >= d->opt.max_clients || stop_flag) {
        refuse_busy(d, fd);
        return;
    }
    c = conn_new(d, fd, peer, &ip, proxied);
    if (c == NULL) {
        close(fd);
        return;
    }
    if (conns_add(d, c) != 0) {
        conn_free(c);
        return;
    }
    flush_out(c);
}

/* Every connection waiting on listener li. */
static void
accept_clients(smtpd *d, int li)
{
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept(d->lfds[li], (struct sockaddr *)&ss, &sl);
        if (fd < 0)
            return;
        accept_one(d, li, fd, &ss);
    }
}

/* ---- one connection's round --------------------------------------------- */

/* A session in STARTTLS: its 220 written, then the handshake. Returns
 * -1 when the connection is lost, 0 while the handshake goes on, 1 once
 * in TLS. */
static int
conn_starttls(conn *c, short re, time_t now)
{
    if ((re & POLLOUT) && flush_out(c) < 0)
        return -1;
    if (tls_step(c) < 0)
        return -1;
    if (c->tls == TLS_ON)
        return 1;
    if (c->deadline && now >= c->deadline)
        return -1; /* a handshake that never ends */
    return 0;
}

/* Input kept while the session could not take it, fed once it wants to
 * read (no decision awaited, room for replies). Returns -1 when lost. */
static int
conn_resume(conn *c)
{
    char *p = c->pending;
    size_t n = c->pending_len;
    int rc;
    if (p == NULL || !(llsmtp_server_wants(c->s) & LLSMTP_WANT_READ))
        return 0;
    c->pending = NULL;
    c->pending_len = 0;
    rc = feed(c, p, n);
    free(p);
    return rc;
}

/* The peer closed (or the read failed): said in the log when it left
 * before its PROXY header was whole. */
static void
conn_peer_gone(conn *c)
{
    if (c->awaiting_header)
        log_release(&c->log);
    if (c->awaiting_header && c->hdr_seen_n == 0)
        log_line("session=%lu no PROXY header from %s: "
                 "closed by the peer",
                 c->sid, c->peer);
    else if (c->awaiting_header)
        header_refused(c, "closed by the peer in its middle");
    llsmtp_server_eof(c->s);
}

/* One read, fed to the session. Returns -1 when the connection is
 * lost. */
static int
conn_input(conn *c)
{
    ssize_t r = conn_recv(c, c->d->rbuf, sizeof c->d->rbuf);
    int rc;
    if (r == IO_AGAIN)
        return 0;
    if (r <= 0) {
        conn_peer_gone(c);
        return -1;
    }
    rc = feed(c, c->d->rbuf, (size_t)r);
    arm_timer(c);
    if (rc < 0)
        return -1;
    if (c->tls == TLS_FLUSH && flush_out(c) == 0 && tls_step(c) < 0)
        return -1;
    return 0;
}

/* The PROXY header's deadline (closed without a word, as a bad header
 * is: -1) and the session's (421, then closed). */
static int
conn_timers(conn *c, time_t now, long long now_ms)
{
    if (c->awaiting_header && now_ms >= c->header_deadline) {
        log_release(&c->log);
        log_line("session=%lu no PROXY header from %s within %ds", c->sid,
                 c->peer, c->d->opt.proxy_timeout);
        return -1;
    }
    if (c->deadline && now >= c->deadline) {
        log_held(&c->log, "session=%lu timeout", c->sid);
        conn_lend(c); /* without one, closed without its 421 */
        llsmtp_server_timeout_expired(c->s);
        c->closing = 1;
        c->deadline = 0; /* spent: left in the poll set, poll would spin */
    }
    if (c->close_by && now >= c->close_by) {
        log_held(&c->log, "session=%lu cut: its last replies unread for %ds",
                 c->sid, CLOSE_GRACE);
        return -1;
    }
    return 0;
}

/* One round of a session: what poll() said of it (re), its ETRN pipe,
 * STARTTLS, its input, its timers, the drain, its output. Returns 1
 * when the connection is to be closed now. */
static int
conn_round(conn *c, short re, time_t now, long long now_ms)
{
    smtpd *d = c->d;
    if (re & (POLLERR | POLLNVAL))
        return 1;
    if (c->etrn_fd >= 0 && c->etrn_pi != (size_t)-1 &&
        d->ps.fds[c->etrn_pi].revents != 0 && etrn_read(c) < 0)
        return 1;
    if (tls_pending(c))
        re |= POLLIN; /* decrypted bytes poll cannot see */
    if (c->tls == TLS_FLUSH || c->tls == TLS_HANDSHAKE) {
        int t = conn_starttls(c, re, now);
        if (t <= 0)
            return t < 0;
        re &= (short)~POLLIN; /* nothing read yet in TLS */
    }
    if ((re & POLLOUT) && flush_out(c) < 0)
        return 1;
    if (conn_resume(c) < 0)
        return 1;
    if ((re & (POLLIN | POLLHUP)) && !c->closing && c->pending == NULL &&
        conn_input(c) < 0)
        return 1;
    if (conn_timers(c, now, now_ms) < 0)
        return 1;
    if (d->draining && c->awaiting_header)
        return 1; /* no SMTP yet: nothing to say */
    if (d->draining && drain_point(c)) {
        conn_lend(c);
        llsmtp_server_shutdown(c->s, NULL); /* 421 4.3.2 */
        drain_told(c);
        c->closing = 1;
    }
    if (flush_out(c) < 0)
        return 1;
    if (c->closing && conn_out(c) != 0 && c->close_by == 0)
        c->close_by = now + CLOSE_GRACE; /* a client that does not read */
    return c->closing && conn_out(c) == 0;
}

/* ---- the poll set ------------------------------------------------------- */

static void
pollset_add(pollset *ps, int fd, short events)
{
    ps->fds[ps->n].fd = fd;
    ps->fds[ps->n].events = events;
    ps->fds[ps->n].revents = 0;
    ps->n++;
}

/* A session's place in the set: what it waits for, and its deadlines. */
static void
pollset_conn(pollset *ps, conn *c)
{
    /* what the session wants: its replies written, bytes read (not
     * while input it could not take yet is kept), a decision of ours
     * (stored(), etrn_read()), TLS, the close */
    unsigned want = llsmtp_server_wants(c->s);
    short ev = c->ssl_want;
    if (c->tls != TLS_HANDSHAKE) { /* else only what the handshake asks */
        if ((want & LLSMTP_WANT_READ) && !c->closing && c->pending == NULL &&
            c->tls != TLS_FLUSH)
            ev |= POLLIN;
        if (want & LLSMTP_WANT_WRITE)
            ev |= POLLOUT;
    }
    if (tls_pending(c))
        ps->more = 1; /* decrypted bytes poll cannot see */
    if (c->pending != NULL && (want & LLSMTP_WANT_READ))
        ps->more = 1; /* resumed: the input kept meanwhile is due */
    pollset_add(ps, c->fd, ev);
    if (c->deadline && (ps->next == 0 || c->deadline < ps->next))
        ps->next = c->deadline;
    if (c->close_by && (ps->next == 0 || c->close_by < ps->next))
        ps->next = c->close_by;
    if (c->awaiting_header &&
        (ps->hdr_next == 0 || c->header_deadline < ps->hdr_next))
        ps->hdr_next = c->header_deadline;
}

/* This round's set: listeners (not once stopping), sessions, ETRN
 * scans, the signal pipe, the storage thread. Returns -1 when memory
 * runs out. */
static int
pollset_build(smtpd *d)
{
    pollset *ps = &d->ps;
    size_t k, need = 2 * d->nconns + MAX_LISTEN + 2;
    int i;
    if (ps->cap < need) {
        ps->cap = need * 2;
        ps->fds = (struct pollfd *)realloc(ps->fds, ps->cap * sizeof *ps->fds);
        if (ps->fds == NULL)
            return -1;
    }
    ps->n = ps->nlisten = 0;
    ps->more = 0;
    ps->next = 0;
    ps->hdr_next = 0;
    ps->commit_i = (size_t)-1;
    if (!stop_flag)
        for (i = 0; i < d->opt.nlisten; i++, ps->nlisten++)
            pollset_add(ps, d->lfds[i], POLLIN);
    for (k = 0; k < d->nconns; k++)
        pollset_conn(ps, d->conns[k]);
    ps->nconn = d->nconns; /* sessions accepted later were not polled */
    for (k = 0; k < d->nconns; k++) { /* ETRN scans after the sessions */
        conn *c = d->conns[k];
        c->etrn_pi = c->etrn_fd >= 0 ? ps->n : (size_t)-1;
        if (c->etrn_fd >= 0)
            pollset_add(ps, c->etrn_fd, POLLIN);
    }
    ps->sig_i = ps->n; /* a signal: read below, acted on through stop_flag */
    pollset_add(ps, sig_pipe[0], POLLIN);
    if (commit_fd(d->commit) >= 0) { /* messages stored: their 250s are due */
        ps->commit_i = ps->n;
        pollset_add(ps, commit_fd(d->commit), POLLIN);
    }
    return 0;
}

/* How long poll() may wait: until the next deadline, the queue's next
 * due entry (queue_run starts what is due now), a second while stopping,
 * the drain's end; not at all when input is due or the stop is new. */
static int
round_timeout(smtpd *d, time_t now, long long now_ms)
{
    const pollset *ps = &d->ps;
    int t = ps->next ? (int)((ps->next > now ? ps->next - now : 0) * 1000)
                     : -1;
    if (ps->hdr_next && (t < 0 || ps->hdr_next - now_ms < t))
        t = ps->hdr_next > now_ms ? (int)(ps->hdr_next - now_ms) : 0;
    if (!d->opt.discard && !stop_flag) {
        int q = queue_run(d->outq, now); /* starts what is due */
        if (q >= 0 && (t < 0 || q < t))
            t = q;
    } else if (queue_busy(d->outq) > 0 && t < 0) {
        t = 500;
    }
    if (stop_flag && (t < 0 || t > 1000))
        t = 1000;
    if (d->stop_at && (t < 0 || d->stop_at - now_ms < t))
        t = d->stop_at > now_ms ? (int)(d->stop_at - now_ms) : 0;
    if (ps->more || (stop_flag && !d->draining) ||
        (stop_flag >= 2 && d->stop_at > now_ms))
        t = 0; /* the signal came meanwhile: drain (or end it) now */
    return t;
}

/* poll(), the log written first (one write per round, not per line).
 * Returns 0, or 1 (the exit status) when poll fails. */
static int
round_poll(smtpd *d, int timeout_ms)
{
    size_t k;
    log_flush();
    if (poll(d->ps.fds, (nfds_t)d->ps.n, timeout_ms) >= 0)
        return 0;
    if (errno != EINTR) {
        perror("smtpd: poll");
        return 1;
    }
    /* a signal (SIGTERM: the drain starts): no event came, and revents
     * still hold an earlier round's (a POLLERR of another connection) */
    for (k = 0; k < d->ps.n; k++)
        d->ps.fds[k].revents = 0;
    return 0;
}

/* The sessions polled, each its round; the closed ones leave the list
 * (those accepted in this round stay, at its end). */
static void
round_conns(smtpd *d, time_t now, long long now_ms)
{
    size_t ci, k, nc = d->ps.nconn, base = d->ps.nlisten;
    for (ci = 0; ci < nc; ci++) {
        conn *c = d->conns[ci];
        if (conn_round(c, d->ps.fds[base + ci].revents, now, now_ms)) {
            conn_free(c);
            d->conns[ci] = NULL;
        }
    }
    for (ci = 0, k = 0; ci < nc; ci++)
        if (d->conns[ci] != NULL)
            d->conns[k++] = d->conns[ci];
    for (ci = nc; ci < d->nconns; ci++) /* accepted meanwhile */
        d->conns[k++] = d->conns[ci];
    d->nconns = k;
}

/* What poll() said: the drain begins in the round that saw the signal
 * (an idle session hears its 421 at once, not after the next poll), new
 * connections, the signal pipe emptied, messages stored, sessions. */
static void
round_events(smtpd *d)
{
    pollset *ps = &d->ps;
    time_t now = time(NULL);
    long long now_ms = mono_ms();
    size_t k;
    if (stop_flag && !d->draining)
        drain_begin(d, now_ms);
    if (stop_flag >= 2 && d->stop_at > now_ms) {
        /* a second SIGTERM or SIGINT: the operator will not wait */
        log_line("stopping: a second signal: the drain ends now");
        d->stop_at = now_ms;
    }
    for (k = 0; k < ps->nlisten; k++) /* polled, maybe closed */
        if (!d->draining && (ps->fds[k].revents & POLLIN))
            accept_clients(d, (int)k);
    if (ps->fds[ps->sig_i].revents != 0) {
        char drain[64];
        while (read(sig_pipe[0], drain, sizeof drain) > 0)
            ;
    }
    if (ps->commit_i != (size_t)-1 && ps->fds[ps->commit_i].revents != 0) {
        commit_job *j = commit_done(d->commit), *next;
        for (; j != NULL; j = next) {
            next = j->next;
            stored(d, j);
        }
    }
    round_conns(d, now, now_ms);
}

/* The loop: a round at a time until the drain after SIGTERM is over
 * (0), or poll() fails (1). */
int
loop_run(smtpd *d)
{
    for (;;) {
        time_t now = time(NULL);
        long long now_ms = mono_ms();
        if (!d->opt.discard)
            queue_reap(d->outq, now, etrn_reaped, d);
        if (drain_over(d, now_ms)) {
            loop_cut(d);
            return 0;
        }
        if (pollset_build(d) != 0)
            return 1;
        if (round_poll(d, round_timeout(d, now, now_ms)) != 0)
            return 1;
        round_events(d);
    }
}
