/* SPDX-License-Identifier: MIT
 *
 * smtp-load.c - an SMTP load generator on the llsmtp client session, the
 * counterpart of Postfix's smtp-source: N concurrent sessions share M
 * messages of L octets with R recipients each, over reused connections
 * (or one message per connection), pipelined when the server offers it
 * (unless --no-pipelining). One poll() loop, non-blocking sockets, each
 * session driven by llsmtp_client_wants(); the message goes through the
 * session's output (llsmtp_client_body), 64 KiB at a time. Prints messages/s, MB/s, recipients/s and its
 * own CPU time, so its cost can be set beside smtp-source's.
 */
#define _POSIX_C_SOURCE 200809L
#include <llsmtp.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct sess {
    int fd;   /* -1: not connected */
    int used; /* a message was started on this connection */
    llsmtp_client *c;
    const char *body; /* message bytes not yet handed to the session */
    size_t body_left;
    int in_body; /* BODY came: the message is being sent */
    char in[4096];
    size_t in_off, in_len;
} sess;

static struct sockaddr_in server;
static llsmtp_client_cfg ccfg;
static llsmtp_client_msg msg;
static char *raw; /* the message, CRLF line endings */
static size_t raw_len, client_size;
static unsigned long total, started, done_ok, done_fail, rcpt_ok, rcpt_fail,
    connects;
static int one_per_conn;
static unsigned long fails;

static void
usage(void)
{
    fputs("usage: smtp-load --server ADDR:PORT [-s sessions] [-m messages]\n"
          "                 [-l length] [-r recipients] [--no-pipelining]\n"
          "                 [--one-per-conn] [--quiet]\n"
          "  defaults: -s 1 -m 1 -l 1024 -r 1; recipients are\n"
          "  <n>rcpt@example.test, the sender load@example.test\n",
          stderr);
    exit(2);
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
sess_open(sess *s)
{
    int one = 1;
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (s->fd < 0) {
        perror("smtp-load: socket");
        exit(1);
    }
    fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_NONBLOCK);
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(s->fd, (struct sockaddr *)&server, sizeof server) != 0 &&
        errno != EINPROGRESS) {
        perror("smtp-load: connect");
        exit(1);
    }
    s->c = llsmtp_client_init(s->c, client_size, &ccfg, s);
    if (s->c == NULL) {
        fputs("smtp-load: llsmtp_client_init failed\n", stderr);
        exit(1);
    }
    s->used = 0;
    s->body_left = 0;
    s->in_body = 0;
    s->in_off = s->in_len = 0;
    connects++;
}

static void
sess_close(sess *s)
{
    close(s->fd);
    s->fd = -1;
}

static int sess_event(sess *s, const llsmtp_client_event *ev);

/* Does what the session wants until it waits for the socket: writes its
 * output, hands over events, streams the body, reads what the server
 * sent (readable: poll said so). Returns -1 to close the connection. */
static int
sess_run(sess *s, int readable)
{
    for (;;) {
        unsigned w = llsmtp_client_wants(s->c);
        llsmtp_client_event ev;
        if (w & LLSMTP_WANT_WRITE) {
            llsmtp_span o = llsmtp_client_output(s->c);
            ssize_t k = send(s->fd, o.p, o.n, MSG_NOSIGNAL);
            if (k < 0)
                return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
            llsmtp_client_consume(s->c, (size_t)k);
            if ((size_t)k < o.n)
                return 0; /* the socket is full: POLLOUT */
        } else if (w & LLSMTP_WANT_EVENT) {
            llsmtp_client_next_event(s->c, &ev);
            if (sess_event(s, &ev) < 0)
                return -1;
        } else if ((w & LLSMTP_WANT_RESUME) && s->in_body) {
            size_t used;
            int rc = llsmtp_client_body(s->c, s->body, s->body_left, &used);
            s->body += used;
            s->body_left -= used;
            if (rc == LLSMTP_OK) {
                llsmtp_client_body_end(s->c);
                s->in_body = 0;
            }
        } else if (w & LLSMTP_WANT_READ) {
            size_t used;
            int rc;
            if (s->in_off == s->in_len) {
                ssize_t r;
                if (!readable)
                    return 0;
                r = recv(s->fd, s->in, sizeof s->in, 0);
                readable = 0;
                if (r < 0)
                    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
                if (r == 0)
                    return -1;
                s->in_off = 0;
                s->in_len = (size_t)r;
            }
            rc = llsmtp_client_feed(s->c, s->in + s->in_off,
                                    s->in_len - s->in_off, &used, &ev);
            s->in_off += used;
            if (rc == LLSMTP_EVENT && sess_event(s, &ev) < 0)
                return -1;
        } else {
            return -1; /* CLOSE (no TLS here) */
        }
    }
}

/* Acts on one event. Returns -1 to close the connection. */
static int
sess_event(sess *s, const llsmtp_client_event *ev)
{
    switch (ev->type) {
    case LLSMTP_CEV_READY:
        if (started < total && !(one_per_conn && s->used)) {
            started++;
            s->used = 1;
            if (llsmtp_client_mail(s->c, &msg) != LLSMTP_OK)
                return -1;
        } else {
            llsmtp_client_quit(s->c);
        }
        return 0;
    case LLSMTP_CEV_BODY:
        s->body = raw;
        s->body_left = raw_len;
        s->in_body = 1;
        return 0;
    case LLSMTP_CEV_RCPT:
        if (ev->code / 100 == 2)
            rcpt_ok++;
        else
            rcpt_fail++;
        return 0;
    case LLSMTP_CEV_MESSAGE:
        if (ev->code / 100 == 2)
            done_ok++;
        else
            done_fail++;
        return 0;
    case LLSMTP_CEV_FAIL:
        if (++fails <= 3)
            fprintf(stderr, "smtp-load: session failed: %d %s%s%.*s\n",
                    ev->code, ev->enhanced, ev->enhanced[0] ? " " : "",
                    (int)ev->text.n, ev->text.p);
        return -1;
    case LLSMTP_CEV_CLOSED:
        return -1;
    default:
        return 0; /* no TLS here */
    }
}

static void
build_message(size_t len, size_t nrcpt, const char *domain)
{
    static const char head[] = "From: <load@example.test>\r\n"
                               "To: <rcpt@example.test>\r\n"
                               "Subject: smtp-load\r\n\r\n";
    llsmtp_span *to = (llsmtp_span *)calloc(nrcpt, sizeof *to);
    size_t n, i;
    raw = (char *)malloc(len + sizeof head + 80);
    if (raw == NULL || to == NULL) {
        perror("smtp-load");
        exit(1);
    }
    n = strlen(head);
    memcpy(raw, head, n);
    while (n < len) { /* 78-octet lines, every 50th begins with a dot */
        size_t k, line = len - n < 80 ? len - n : 80;
        for (k = 0; k + 2 < line; k++)
            raw[n + k] = k == 0 && (n / 80) % 50 == 0 ? '.' : 'x';
        raw[n + line - 2] = '\r';
        raw[n + line - 1] = '\n';
        if (line < 2)
            raw[n] = '\n';
        n += line;
    }
    if (n < 2 || raw[n - 1] != '\n') {
        raw[n++] = '\r';
        raw[n++] = '\n';
    }
    raw_len = n;
    for (i = 0; i < nrcpt; i++) {
        char *a = (char *)malloc(64);
        if (a == NULL)
            exit(1);
        snprintf(a, 64, "%zurcpt@%s", i + 1, domain);
        to[i].p = a;
        to[i].n = strlen(a);
    }
    llsmtp_client_msg_init(&msg);
    msg.from.p = "load@example.test";
    msg.from.n = strlen(msg.from.p);
    msg.to = to;
    msg.nto = nrcpt;
    msg.size = n;
}

int
main(int argc, char **argv)
{
    unsigned long nsess = 1, len = 1024, nrcpt = 1;
    const char *spec = NULL;
    int quiet = 0, a;
    sess *ss;
    struct pollfd *pf;
    double t0, t1;
    struct rusage ru;
    size_t i;

    total = 1;
    if (llsmtp_client_cfg_init(&ccfg) != LLSMTP_OK)
        return 1;
    ccfg.output_size = 1 << 20; /* the body in large writes */
    ccfg.helo.p = "load.example.test";
    ccfg.helo.n = strlen(ccfg.helo.p);
    for (a = 1; a < argc; a++) {
        const char *o = argv[a], *v = a + 1 < argc ? argv[a + 1] : NULL;
        if (strcmp(o, "--server") == 0 && v) {
            spec = argv[++a];
        } else if (strcmp(o, "-s") == 0 && v) {
            nsess = strtoul(argv[++a], NULL, 10);
        } else if (strcmp(o, "-m") == 0 && v) {
            total = strtoul(argv[++a], NULL, 10);
        } else if (strcmp(o, "-l") == 0 && v) {
            len = strtoul(argv[++a], NULL, 10);
        } else if (strcmp(o, "-r") == 0 && v) {
            nrcpt = strtoul(argv[++a], NULL, 10);
        } else if (strcmp(o, "--no-pipelining") == 0) {
            ccfg.flags |= LLSMTP_CLI_NO_PIPELINING;
        } else if (strcmp(o, "--one-per-conn") == 0) {
            one_per_conn = 1;
        } else if (strcmp(o, "--quiet") == 0) {
            quiet = 1;
        } else {
            usage();
        }
    }
    if (spec == NULL || nsess == 0 || total == 0 || nrcpt == 0 ||
        nrcpt > LLSMTP_CLIENT_RCPT_MAX || len == 0)
        usage();
    {
        char host[64];
        const char *colon = strrchr(spec, ':');
        if (colon == NULL || (size_t)(colon - spec) >= sizeof host)
            usage();
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
        server.sin_family = AF_INET;
        server.sin_port = htons((uint16_t)atoi(colon + 1));
        if (inet_pton(AF_INET, host, &server.sin_addr) != 1)
            usage();
    }
    signal(SIGPIPE, SIG_IGN);
    build_message(len, nrcpt, "example.test");
    if (nsess > total)
        nsess = total;
    ss = (sess *)calloc(nsess, sizeof *ss);
    pf = (struct pollfd *)calloc(nsess, sizeof *pf);
    client_size = llsmtp_client_size(&ccfg);
    if (ss == NULL || pf == NULL || client_size == 0)
        return 1;
    for (i = 0; i < nsess; i++)
        if ((ss[i].c = (llsmtp_client *)malloc(client_size)) == NULL)
            return 1;
    t0 = now_s();
    for (i = 0; i < nsess; i++)
        sess_open(&ss[i]);
    for (;;) {
        size_t live = 0;
        for (i = 0; i < nsess; i++) {
            sess *s = &ss[i];
            pf[i].fd = s->fd;
            pf[i].events = POLLIN;
            pf[i].revents = 0;
            if (s->fd >= 0) {
                live++;
                if (llsmtp_client_wants(s->c) & LLSMTP_WANT_WRITE)
                    pf[i].events |= POLLOUT;
            }
        }
        if (live == 0)
            break;
        if (poll(pf, (nfds_t)nsess, 30000) <= 0) {
            fprintf(stderr, "smtp-load: no progress for 30 s\n");
            return 1;
        }
        for (i = 0; i < nsess; i++) {
            sess *s = &ss[i];
            int dead = 0;
            if (s->fd < 0 || pf[i].revents == 0)
                continue;
            if (pf[i].revents & (POLLERR | POLLNVAL))
                dead = 1;
            if (!dead)
                dead = sess_run(s, (pf[i].revents & (POLLIN | POLLHUP)) != 0) <
                       0;
            if (dead) {
                sess_close(s);
                /* reconnect while messages are left */
                if (started < total && fails < 100)
                    sess_open(s);
            }
        }
    }
    t1 = now_s();
    getrusage(RUSAGE_SELF, &ru);
    if (!quiet || done_ok != total) {
        double el = t1 - t0;
        double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                     ((double)ru.ru_utime.tv_usec +
                      (double)ru.ru_stime.tv_usec) /
                         1e6;
        printf("messages %lu ok %lu failed %lu recipients ok %lu refused %lu "
               "connections %lu\n",
               total, done_ok, done_fail, rcpt_ok, rcpt_fail, connects);
        printf("elapsed %.3f s  %.0f msg/s  %.2f MB/s  %.0f rcpt/s  "
               "client cpu %.3f s\n",
               el, (double)done_ok / el,
               (double)done_ok * (double)msg.size / el / 1e6,
               (double)rcpt_ok / el, cpu);
    }
    return done_ok == total ? 0 : 1;
}
