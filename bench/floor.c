/* SPDX-License-Identifier: MIT
 *
 * floor.c - the cost floor for bench/compare.sh: a responder that speaks
 * just enough SMTP for bench/smtp-load (pipelined, R recipients a
 * message) with the system calls a server needs for it, those
 * examples/smtpd makes (strace -c over 2,000 messages of 50 recipients:
 * the same sendto and recvfrom counts), and no parsing.
 * One poll() loop over non-blocking sockets (TCP_NODELAY, as smtpd);
 * per connection one recv() of up to 64 KiB
 * when poll says so, and one send() of canned replies when the bytes
 * read so far end a pipelined group: the envelope ("DATA" CRLF: R + 1
 * times 250 and a 354), the message (CRLF "." CRLF: a 250), or the first
 * line (EHLO); a group starting with "QUIT" gets 221 and the close. Only
 * the last octets of each read are looked at. Whatever smtpd costs above
 * this is parsing, callbacks, logging and its own bookkeeping.
 *
 * usage: floor ADDR:PORT RECIPIENTS
 */
#define _POSIX_C_SOURCE 200809L
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
#include <sys/socket.h>
#include <unistd.h>

enum { S_EHLO, S_ENV, S_MSG };

typedef struct fconn {
    int fd, state, closing;
    char tail[8]; /* the last octets read, across reads */
    size_t ntail;
    const char *out; /* canned replies not written yet */
    size_t nout;
} fconn;

static const char greet[] = "220 floor.test ESMTP floor\r\n";
static const char ehlo[] = "250-floor.test\r\n250-PIPELINING\r\n"
                           "250-8BITMIME\r\n250 SIZE 20000000\r\n";
static const char queued[] = "250 2.6.0 <0123456789ABCDEF0123456789> "
                             "Queued mail for delivery\r\n";
static const char bye[] = "221 2.0.0 floor.test closing connection\r\n";
static char *envelope; /* MAIL's 250, R RCPT 250s, the 354 */
static size_t nenvelope;
static volatile sig_atomic_t stop;

static void
on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static int
ends(const fconn *c, const char *s)
{
    size_t n = strlen(s);
    return c->ntail >= n && memcmp(c->tail + c->ntail - n, s, n) == 0;
}

static void
reply(fconn *c, const char *p, size_t n)
{
    c->out = p;
    c->nout = n;
}

/* Returns -1 when the connection is done. */
static int
flush(fconn *c)
{
    while (c->nout > 0) {
        ssize_t w = send(c->fd, c->out, c->nout, MSG_NOSIGNAL);
        if (w < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        c->out += w;
        c->nout -= (size_t)w;
    }
    return c->closing ? -1 : 0;
}

static int
readable(fconn *c)
{
    static char buf[65536];
    ssize_t r = recv(c->fd, buf, sizeof buf, 0);
    size_t n, keep;
    if (r < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    if (r == 0)
        return -1;
    n = (size_t)r;
    if (c->state == S_ENV && c->ntail == 0 && buf[0] == 'Q') {
        c->closing = 1; /* QUIT */
        reply(c, bye, sizeof bye - 1);
        return flush(c);
    }
    /* the last octets of what was read so far */
    if (n >= sizeof c->tail) {
        memcpy(c->tail, buf + n - sizeof c->tail, sizeof c->tail);
        c->ntail = sizeof c->tail;
    } else {
        keep = c->ntail + n > sizeof c->tail ? sizeof c->tail - n : c->ntail;
        memmove(c->tail, c->tail + c->ntail - keep, keep);
        memcpy(c->tail + keep, buf, n);
        c->ntail = keep + n;
    }
    if (c->state == S_EHLO && ends(c, "\r\n")) {
        c->state = S_ENV;
        reply(c, ehlo, sizeof ehlo - 1);
    } else if (c->state == S_ENV && ends(c, "DATA\r\n")) {
        c->state = S_MSG;
        reply(c, envelope, nenvelope);
    } else if (c->state == S_MSG && ends(c, "\r\n.\r\n")) {
        c->state = S_ENV;
        reply(c, queued, sizeof queued - 1);
    } else {
        return 0; /* the rest of the group is on its way */
    }
    c->ntail = 0;
    return flush(c);
}

int
main(int argc, char **argv)
{
    static const char mail[] = "250 2.1.0 Ok\r\n", rcpt[] = "250 2.1.5 Ok\r\n",
                      data[] = "354 End data with <CR><LF>.<CR><LF>\r\n";
    struct sockaddr_in sa;
    fconn **cs = NULL;
    struct pollfd *pf = NULL;
    size_t nc = 0, cap = 0, ccap = 0, i;
    int lfd, one = 1, nrcpt;
    char host[64], *colon;
    if (argc != 3 || (colon = strrchr(argv[1], ':')) == NULL ||
        (size_t)(colon - argv[1]) >= sizeof host ||
        (nrcpt = atoi(argv[2])) < 1) {
        fputs("usage: floor ADDR:PORT RECIPIENTS\n", stderr);
        return 2;
    }
    memcpy(host, argv[1], (size_t)(colon - argv[1]));
    host[colon - argv[1]] = '\0';
    nenvelope = sizeof mail - 1 + (size_t)nrcpt * (sizeof rcpt - 1) +
                sizeof data - 1;
    envelope = malloc(nenvelope);
    if (envelope == NULL)
        return 1;
    memcpy(envelope, mail, sizeof mail - 1);
    for (i = 0; i < (size_t)nrcpt; i++)
        memcpy(envelope + sizeof mail - 1 + i * (sizeof rcpt - 1), rcpt,
               sizeof rcpt - 1);
    memcpy(envelope + nenvelope - (sizeof data - 1), data, sizeof data - 1);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return 2;
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(lfd, 4096) != 0) {
        perror("floor: listen");
        return 1;
    }
    fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
    signal(SIGTERM, on_term);
    signal(SIGPIPE, SIG_IGN);
    while (!stop) {
        size_t np = 1, k;
        if (cap < nc + 1) {
            cap = (nc + 1) * 2;
            pf = realloc(pf, cap * sizeof *pf);
            if (pf == NULL)
                return 1;
        }
        pf[0].fd = lfd;
        pf[0].events = POLLIN;
        for (i = 0; i < nc; i++, np++) {
            pf[np].fd = cs[i]->fd;
            pf[np].events = cs[i]->nout > 0 ? POLLOUT : POLLIN;
        }
        if (poll(pf, (nfds_t)np, -1) < 0)
            continue;
        for (i = 0, k = 0; i < nc; i++) {
            fconn *c = cs[i];
            short re = pf[i + 1].revents;
            int dead = (re & (POLLERR | POLLNVAL)) != 0;
            if (!dead && (re & POLLOUT))
                dead = flush(c) < 0;
            else if (!dead && (re & (POLLIN | POLLHUP)))
                dead = readable(c) < 0;
            if (dead) {
                close(c->fd);
                free(c);
            } else {
                cs[k++] = c;
            }
        }
        nc = k;
        if (pf[0].revents & POLLIN)
            for (;;) {
                int fd = accept(lfd, NULL, NULL);
                fconn *c;
                if (fd < 0)
                    break;
                fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                if (nc == ccap) {
                    ccap = ccap * 2 + 16;
                    cs = realloc(cs, ccap * sizeof *cs);
                    if (cs == NULL)
                        return 1;
                }
                c = calloc(1, sizeof *c);
                if (c == NULL) {
                    close(fd);
                    continue;
                }
                c->fd = fd;
                cs[nc++] = c;
                reply(c, greet, sizeof greet - 1);
                if (flush(c) < 0) {
                    close(fd);
                    free(c);
                    nc--;
                }
            }
    }
    for (i = 0; i < nc; i++) {
        close(cs[i]->fd);
        free(cs[i]);
    }
    free(cs);
    free(pf);
    free(envelope);
    close(lfd);
    return 0;
}
