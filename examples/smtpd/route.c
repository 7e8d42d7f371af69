/* SPDX-License-Identifier: MIT
 *
 * route.c - DNS questions and MX routes for the example programs (see
 * route.h). The protocol work is the library's (lib/dns.c builds and
 * checks packets, lib/mx.c orders targets); this file does sockets.
 */
#include "route.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__) || defined(__FreeBSD__) || defined(__OpenBSD__)
#include <sys/random.h>
#define ROUTE_HAVE_GETRANDOM 1
#endif

int
route_dns_set(route_dns *d, const char *spec)
{
    llsmtp_relayhost rh;
    llsmtp_ip ip;
    uint16_t port = 53;
    memset(&d->addr, 0, sizeof d->addr);
    if (d->rng == 0)
        d->rng = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^
                 0x9E3779B97F4A7C15ULL;
    if (llsmtp_ip_parse(spec, strlen(spec), &ip) == LLSMTP_OK) {
        /* a bare address, IPv6 included */
    } else if (llsmtp_relayhost_parse(spec, strlen(spec), &rh, NULL) ==
                   LLSMTP_OK &&
               rh.ip.family) {
        ip = rh.ip;
        if (rh.port)
            port = rh.port;
    } else {
        return -1;
    }
    if (ip.family == 4) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&d->addr;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        memcpy(&sin->sin_addr, ip.addr, 4);
        d->len = sizeof *sin;
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&d->addr;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        memcpy(&sin6->sin6_addr, ip.addr, 16);
        d->len = sizeof *sin6;
    }
    return 0;
}

void
route_dns_default(route_dns *d)
{
    FILE *f = fopen("/etc/resolv.conf", "r");
    char line[512], addr[256];
    if (f != NULL) {
        while (fgets(line, sizeof line, f)) {
            if (sscanf(line, " nameserver %255s", addr) == 1 &&
                route_dns_set(d, addr) == 0) {
                fclose(f);
                return;
            }
        }
        fclose(f);
    }
    route_dns_set(d, "127.0.0.1");
}

int
route_random(void *buf, size_t n)
{
    unsigned char *p = (unsigned char *)buf;
    int fd;
#ifdef ROUTE_HAVE_GETRANDOM
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        p += r;
        n -= (size_t)r;
    }
    if (n == 0)
        return 0;
#endif
    fd = open("/dev/urandom", O_RDONLY);
    if (fd < 0)
        return -1;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        p += r;
        n -= (size_t)r;
    }
    close(fd);
    return n == 0 ? 0 : -1;
}

/* A query id (RFC 5452 4.3): from the system's random source, so that
 * processes forked from one parent (smtpd's queue runners) never send
 * the same ids; the generator is a fallback only. */
static uint16_t
new_id(route_dns *d)
{
    uint16_t id;
    if (route_random(&id, sizeof id) == 0)
        return id;
    d->rng ^= (uint64_t)getpid() << 16;
    d->rng ^= d->rng << 13;
    d->rng ^= d->rng >> 7;
    d->rng ^= d->rng << 17;
    return (uint16_t)(d->rng >> 16);
}

/* A UDP socket of its own for one query, bound to port 0: the kernel
 * picks a random source port (RFC 5452 9.2), and an answer to an
 * earlier query can never be taken for this one's. */
static int
udp_socket(const route_dns *d)
{
    struct sockaddr_storage any;
    int fd = socket(d->addr.ss_family, SOCK_DGRAM, 0);
    if (fd < 0)
        return -1;
    memset(&any, 0, sizeof any);
    any.ss_family = d->addr.ss_family;
    if (bind(fd, (struct sockaddr *)&any,
             d->addr.ss_family == AF_INET6
                 ? sizeof(struct sockaddr_in6)
                 : sizeof(struct sockaddr_in)) != 0 ||
        connect(fd, (struct sockaddr *)&d->addr, d->len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int
read_full(int fd, uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd pfd = {fd, POLLIN, 0};
        ssize_t r;
        if (poll(&pfd, 1, 5000) <= 0)
            return -1;
        r = read(fd, buf + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

/* One question over TCP (RFC 1035 4.2.2). */
static int
ask_tcp(route_dns *d, const char *name, uint16_t qtype, llsmtp_dns_rr *rrs,
        size_t cap, size_t *n)
{
    static uint8_t buf[65537];
    uint8_t q[600];
    size_t qlen, mlen, total;
    uint16_t id = new_id(d);
    int fd, rc;
    if (llsmtp_dns_query(id, name, strlen(name), qtype, 1, q, sizeof q,
                         &qlen) != LLSMTP_OK)
        return LLSMTP_E_SYNTAX;
    fd = socket(d->addr.ss_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&d->addr, d->len) != 0 ||
        write(fd, q, qlen) != (ssize_t)qlen) {
        if (fd >= 0)
            close(fd);
        return ROUTE_NO_ANSWER;
    }
    if (read_full(fd, buf, 2) != 0) {
        close(fd);
        return ROUTE_NO_ANSWER;
    }
    mlen = (size_t)buf[0] << 8 | buf[1];
    if (read_full(fd, buf + 2, mlen) != 0) {
        close(fd);
        return ROUTE_NO_ANSWER;
    }
    close(fd);
    rc = llsmtp_dns_parse(buf, mlen + 2, 1, id, name, strlen(name), qtype, rrs,
                          cap, n, &total);
    return rc == LLSMTP_DNS_MISMATCH ? LLSMTP_E_SYNTAX : rc;
}

/* UDP, three tries of two seconds; TCP when the answer is truncated. */
int
route_ask(route_dns *d, const char *name, uint16_t qtype, llsmtp_dns_rr *rrs,
          size_t cap, size_t *n)
{
    uint8_t q[600], buf[4096];
    size_t qlen;
    int tries, fd = -1;
    *n = 0;
    if (d->tcp)
        return ask_tcp(d, name, qtype, rrs, cap, n);
    for (tries = 0; tries < 3; tries++) {
        uint16_t id = new_id(d);
        time_t until = time(NULL) + 2;
        if (fd >= 0)
            close(fd);
        fd = udp_socket(d);
        if (fd < 0)
            return ROUTE_NO_ANSWER;
        if (llsmtp_dns_query(id, name, strlen(name), qtype, 0, q, sizeof q,
                             &qlen) != LLSMTP_OK) {
            close(fd);
            return LLSMTP_E_SYNTAX;
        }
        if (send(fd, q, qlen, 0) < 0)
            break;
        while (time(NULL) <= until) {
            struct pollfd pfd = {fd, POLLIN, 0};
            ssize_t r;
            size_t total;
            int rc;
            if (poll(&pfd, 1, 1000) <= 0)
                continue;
            r = recv(fd, buf, sizeof buf, 0);
            if (r < 0) {
                if (errno == ECONNREFUSED) {
                    close(fd);
                    return ROUTE_NO_ANSWER;
                }
                continue;
            }
            rc = llsmtp_dns_parse(buf, (size_t)r, 0, id, name, strlen(name),
                                  qtype, rrs, cap, n, &total);
            if (rc == LLSMTP_DNS_MISMATCH)
                continue; /* not ours: keep waiting */
            close(fd);
            if (rc == LLSMTP_DNS_TRUNCATED)
                return ask_tcp(d, name, qtype, rrs, cap, n);
            return rc;
        }
    }
    close(fd);
    return ROUTE_NO_ANSWER;
}

int
route_addrs(route_dns *d, llsmtp_mx *m)
{
    static const uint16_t types[2] = {LLSMTP_DNS_A, LLSMTP_DNS_AAAA};
    static llsmtp_dns_rr rrs[ROUTE_RR_MAX];
    size_t t, n;
    int failed = 0;
    for (t = 0; t < 2; t++) {
        int rc = route_ask(d, m->host, types[t], rrs, ROUTE_RR_MAX, &n);
        if (rc == LLSMTP_DNS_NOERROR)
            llsmtp_dns_addrs(rrs, n, m);
        else if (rc == ROUTE_NO_ANSWER || rc == LLSMTP_DNS_SERVFAIL)
            failed = 1;
    }
    return failed && m->naddrs == 0 ? -1 : 0;
}

void
route_ip_norm(llsmtp_ip *ip)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0,    0,
                                       0, 0, 0, 0, 0xff, 0xff};
    if (ip->family == 6 && memcmp(ip->addr, mapped, 12) == 0) {
        memmove(ip->addr, ip->addr + 12, 4);
        memset(ip->addr + 4, 0, 12);
        ip->family = 4;
    }
}

int
route_ip_same(const llsmtp_ip *a, const llsmtp_ip *b)
{
    llsmtp_ip x = *a, y = *b;
    route_ip_norm(&x);
    route_ip_norm(&y);
    return x.family != 0 && x.family == y.family &&
           memcmp(x.addr, y.addr, x.family == 4 ? 4 : 16) == 0;
}

/* Whether one of m's addresses is one of this host's (an IPv4-mapped
 * IPv6 address is its IPv4 address: the same host). */
static int
route_is_self(const llsmtp_mx *m, const llsmtp_mx_opts *o)
{
    size_t i, j;
    for (i = 0; i < m->naddrs && i < LLSMTP_MX_ADDRS_MAX; i++)
        for (j = 0; j < o->nlocal_addrs; j++)
            if (route_ip_same(&m->addrs[i], &o->local_addrs[j]))
                return 1;
    return 0;
}

static int
say(char *why, size_t cap, int code, const char *fmt, const char *domain)
{
    snprintf(why, cap, fmt, domain);
    return code;
}

int
route_mx(route_dns *d, const char *domain, const llsmtp_mx_opts *o,
         llsmtp_mx *mx, size_t cap, size_t *n, char *why, size_t whycap)
{
    static llsmtp_dns_rr rrs[ROUTE_RR_MAX];
    size_t nrr, i, with_addr = 0;
    int rc, temp = 0;
    *n = 0;
    rc = route_ask(d, domain, LLSMTP_DNS_MX, rrs, ROUTE_RR_MAX, &nrr);
    switch (rc) {
    case LLSMTP_DNS_NOERROR:
        break;
    case LLSMTP_DNS_NXDOMAIN: /* RFC 3463: 5.1.2 bad destination system */
        return say(why, whycap, 550, "5.1.2 %s: no such domain", domain);
    case LLSMTP_E_SYNTAX:
        return say(why, whycap, 451,
                   "4.4.3 %s: malformed answer from the DNS server", domain);
    default:
        return say(why, whycap, 451,
                   "4.4.3 %s: DNS lookup failed, will try again", domain);
    }
    rc = llsmtp_dns_mx(rrs, nrr, domain, strlen(domain), mx, cap, n);
    if (rc != LLSMTP_OK && rc != LLSMTP_DNS_PARTIAL) /* PARTIAL: the best */
        return say(why, whycap, 451, "4.4.3 %s: CNAME chain too long", domain);
    rc = llsmtp_mx_order(domain, strlen(domain), mx, n, cap, o);
    switch (rc) {
    case LLSMTP_MX_OK:
    case LLSMTP_MX_IMPLICIT:
        break;
    case LLSMTP_MX_NULL:
        return say(why, whycap, 556,
                   "5.1.10 %s does not accept mail (null MX, RFC 7505)",
                   domain);
    case LLSMTP_MX_LOOP:
        return say(why, whycap, 554, "5.4.6 mail for %s loops back to me",
                   domain);
    default:
        return say(why, whycap, 451, "4.4.4 %s: invalid MX records", domain);
    }
    /* RFC 5321 5.1: each target's addresses, in order; the first few are
     * enough to deliver or to conclude "try later". A target at one of
     * this host's own addresses is this host, whatever its name: it and
     * every record of its preference and worse are discarded ("If a
     * matching record is found, all records at that preference level and
     * higher-numbered ones MUST be discarded from consideration. If
     * there are no records left at that point, it is an error condition,
     * and the message MUST be returned as undeliverable."). */
    for (i = 0; i < *n && i < 8; i++) {
        if (mx[i].naddrs == 0 && route_addrs(d, &mx[i]) != 0)
            temp = 1;
        if (o != NULL && route_is_self(&mx[i], o)) {
            size_t j = i;
            while (j > 0 && mx[j - 1].pref >= mx[i].pref)
                j--;
            *n = j;
            if (j == 0)
                return say(why, whycap, 554,
                           "5.4.6 mail for %s loops back to me (an MX host "
                           "is at my own address)",
                           domain);
            break;
        }
        with_addr += mx[i].naddrs > 0;
    }
    for (with_addr = 0, i = 0; i < *n && i < 8; i++)
        with_addr += mx[i].naddrs > 0;
    if (with_addr == 0)
        return temp
                   ? say(why, whycap, 451,
                         "4.4.3 %s: DNS lookup failed, will try again", domain)
                   : say(why, whycap, rc == LLSMTP_MX_IMPLICIT ? 550 : 451,
                         rc == LLSMTP_MX_IMPLICIT
                             ? "5.1.2 %s: no MX and no address"
                             : "4.4.4 %s: no address for any MX host",
                         domain);
    return 0;
}
