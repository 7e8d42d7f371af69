/* SPDX-License-Identifier: MIT
 *
 * mxlookup.c - where would mail for DOMAIN go? Asks a DNS server for the
 * MX records (UDP, TCP when truncated or with --tcp) through lib/dns.c,
 * looks up addresses the answer did not carry, orders the targets with
 * lib/mx.c (RFC 5321 5.1, RFC 7505) and prints them the way nslookup
 * does. Exit: 0 targets found, 1 error, 2 null MX, 3 no such domain,
 * 4 mail would loop back to this host.
 */
#include <llsmtp.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_RR 128
#define MAX_MX 32
#define MAX_LOCAL 16

static struct sockaddr_storage server;
static socklen_t server_len;
static int use_tcp;
static uint64_t rng;

static void
usage(FILE *f)
{
    fputs("usage: mxlookup [--server ADDR[:PORT]] [--local NAME] [--seed N] "
          "[--tcp] DOMAIN\n"
          "  --server ADDR[:PORT]  DNS server (default: first nameserver in "
          "/etc/resolv.conf), port 53\n"
          "  --local NAME          a name of this host (repeatable): it and "
          "worse MX hosts are dropped\n"
          "  --seed N              seed for ordering equal preferences\n"
          "  --tcp                 query over TCP\n"
          "exit: 0 targets found, 1 error, 2 null MX, 3 no such domain, "
          "4 mail loops back here\n",
          f);
}

static void
fail(int code, const char *msg, const char *arg)
{
    fprintf(stderr, "mxlookup: ");
    fprintf(stderr, msg, arg);
    fputc('\n', stderr);
    exit(code);
}

static void
set_server(const char *spec)
{
    llsmtp_relayhost rh;
    llsmtp_ip ip;
    uint16_t port = 53;
    memset(&server, 0, sizeof server);
    if (llsmtp_ip_parse(spec, strlen(spec), &ip) == LLSMTP_OK) {
        /* a bare address, IPv6 included */
    } else if (llsmtp_relayhost_parse(spec, strlen(spec), &rh, NULL) ==
                   LLSMTP_OK &&
               rh.ip.family) {
        ip = rh.ip;
        if (rh.port)
            port = rh.port;
    } else {
        fail(1, "bad --server %s (give an address, e.g. 127.0.0.1:53)", spec);
    }
    if (ip.family == 4) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&server;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        memcpy(&sin->sin_addr, ip.addr, 4);
        server_len = sizeof *sin;
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&server;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        memcpy(&sin6->sin6_addr, ip.addr, 16);
        server_len = sizeof *sin6;
    }
}

static void
default_server(void)
{
    FILE *f = fopen("/etc/resolv.conf", "r");
    char line[512], addr[256];
    if (f != NULL) {
        while (fgets(line, sizeof line, f)) {
            if (sscanf(line, " nameserver %255s", addr) == 1) {
                fclose(f);
                set_server(addr);
                return;
            }
        }
        fclose(f);
    }
    set_server("127.0.0.1");
}

static uint16_t
new_id(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint16_t)(rng >> 16);
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

/* One query over TCP (RFC 1035 4.2.2). */
static int
ask_tcp(const char *name, uint16_t qtype, llsmtp_dns_rr *rrs, size_t *n)
{
    uint8_t q[600], buf[65537];
    size_t qlen, mlen, total;
    uint16_t id = new_id();
    int fd, rc;
    if (llsmtp_dns_query(id, name, strlen(name), qtype, 1, q, sizeof q,
                         &qlen) != LLSMTP_OK)
        fail(1, "bad domain name %s", name);
    fd = socket(server.ss_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&server, server_len) != 0 ||
        write(fd, q, qlen) != (ssize_t)qlen) {
        if (fd >= 0)
            close(fd);
        return -2;
    }
    if (read_full(fd, buf, 2) != 0) {
        close(fd);
        return -2;
    }
    mlen = (size_t)buf[0] << 8 | buf[1];
    if (read_full(fd, buf + 2, mlen) != 0) {
        close(fd);
        return -2;
    }
    close(fd);
    rc = llsmtp_dns_parse(buf, mlen + 2, 1, id, name, strlen(name), qtype,
                          rrs, MAX_RR, n, &total);
    return rc == LLSMTP_DNS_MISMATCH ? LLSMTP_E_SYNTAX : rc;
}

/* One query: UDP with retries, then TCP when truncated. Returns an enum
 * llsmtp_dns_status, LLSMTP_E_SYNTAX, or -2 for no answer. */
static int
ask(const char *name, uint16_t qtype, llsmtp_dns_rr *rrs, size_t *n)
{
    uint8_t q[600], buf[4096];
    size_t qlen;
    int tries, fd;
    *n = 0;
    if (use_tcp)
        return ask_tcp(name, qtype, rrs, n);
    fd = socket(server.ss_family, SOCK_DGRAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&server, server_len) != 0)
        return -2;
    for (tries = 0; tries < 3; tries++) {
        uint16_t id = new_id();
        time_t until = time(NULL) + 2;
        if (llsmtp_dns_query(id, name, strlen(name), qtype, 0, q, sizeof q,
                             &qlen) != LLSMTP_OK)
            fail(1, "bad domain name %s", name);
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
                    return -2;
                }
                continue;
            }
            rc = llsmtp_dns_parse(buf, (size_t)r, 0, id, name, strlen(name),
                                  qtype, rrs, MAX_RR, n, &total);
            if (rc == LLSMTP_DNS_MISMATCH)
                continue; /* not ours: keep waiting */
            close(fd);
            if (rc == LLSMTP_DNS_TRUNCATED)
                return ask_tcp(name, qtype, rrs, n);
            return rc;
        }
    }
    close(fd);
    return -2;
}

static void
check(int rc, const char *name)
{
    switch (rc) {
    case LLSMTP_DNS_NOERROR:
        return;
    case LLSMTP_DNS_NXDOMAIN:
        fail(3, "%s: no such domain (NXDOMAIN)", name);
        break;
    case LLSMTP_DNS_SERVFAIL:
        fail(1, "%s: server failure (SERVFAIL)", name);
        break;
    case LLSMTP_DNS_REFUSED:
        fail(1, "%s: query refused by the server", name);
        break;
    case -2:
        fail(1, "%s: no answer from the DNS server (timeout)", name);
        break;
    default:
        fail(1, "%s: malformed answer from the DNS server", name);
    }
}

/* Adds A and AAAA addresses of m->host, printing each. */
static void
resolve(llsmtp_mx *m)
{
    static const uint16_t types[2] = {LLSMTP_DNS_A, LLSMTP_DNS_AAAA};
    static llsmtp_dns_rr rrs[MAX_RR];
    size_t t, n;
    for (t = 0; t < 2; t++) {
        int rc = ask(m->host, types[t], rrs, &n);
        if (rc == LLSMTP_DNS_NOERROR)
            llsmtp_dns_addrs(rrs, n, m);
        else if (rc == -2 || rc == LLSMTP_DNS_SERVFAIL)
            check(rc, m->host);
    }
}

static void
print_addrs(const llsmtp_mx *m)
{
    size_t i;
    char ip[64];
    for (i = 0; i < m->naddrs; i++) {
        llsmtp_ip_format(&m->addrs[i], ip, sizeof ip);
        printf("%s        %s = %s\n", m->host,
               m->addrs[i].family == 4 ? "internet address"
                                       : "AAAA IPv6 address",
               ip);
    }
}

int
main(int argc, char **argv)
{
    const char *domain = NULL, *locals[MAX_LOCAL];
    static llsmtp_dns_rr rrs[MAX_RR];
    static llsmtp_mx mx[MAX_MX];
    llsmtp_mx_opts o;
    size_t nlocal = 0, n, nmx, i, k;
    int have_server = 0, have_seed = 0, rc;
    uint64_t seed = 0;

    for (i = 1; i < (size_t)argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < (size_t)argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--server") == 0 && v) {
            set_server(v);
            have_server = 1;
            i++;
        } else if (strcmp(a, "--local") == 0 && v) {
            if (nlocal == MAX_LOCAL)
                fail(1, "too many --local names%s", "");
            locals[nlocal++] = v;
            i++;
        } else if (strcmp(a, "--seed") == 0 && v) {
            char *end;
            seed = strtoull(v, &end, 10);
            if (*v == '\0' || *end)
                fail(1, "bad --seed %s", v);
            have_seed = 1;
            i++;
        } else if (strcmp(a, "--tcp") == 0) {
            use_tcp = 1;
        } else if (a[0] == '-' || domain != NULL) {
            usage(stderr);
            return 1;
        } else {
            domain = a;
        }
    }
    if (domain == NULL) {
        usage(stderr);
        return 1;
    }
    if (llsmtp_domain_check(domain, strlen(domain), 0) != LLSMTP_OK &&
        !(strlen(domain) > 1 && domain[strlen(domain) - 1] == '.' &&
          llsmtp_domain_check(domain, strlen(domain) - 1, 0) == LLSMTP_OK))
        fail(1, "%s is not a valid domain name", domain);
    if (!have_server)
        default_server();
    rng = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
    if (!have_seed)
        seed = rng;

    rc = ask(domain, LLSMTP_DNS_MX, rrs, &n);
    check(rc, domain);
    if (llsmtp_dns_mx(rrs, n, domain, strlen(domain), mx, MAX_MX, &nmx) !=
        LLSMTP_OK)
        fail(1, "%s: CNAME chain too long or looping", domain);
    for (i = 0; i < nmx; i++)
        printf("%s    MX preference = %u, mail exchanger = %s\n", domain,
               mx[i].pref, mx[i].host[0] ? mx[i].host : ".");
    for (i = 0; i < nmx; i++) {
        for (k = 0; k < i; k++)
            if (strcmp(mx[k].host, mx[i].host) == 0)
                break;
        if (k < i || mx[i].host[0] == '\0')
            continue;
        if (mx[i].naddrs == 0 && i < 8)
            resolve(&mx[i]);
        print_addrs(&mx[i]);
    }

    memset(&o, 0, sizeof o);
    o.local_names = locals;
    o.nlocal_names = nlocal;
    o.seed = seed;
    rc = llsmtp_mx_order(domain, strlen(domain), mx, &nmx, MAX_MX, &o);
    switch (rc) {
    case LLSMTP_MX_NULL:
        fail(2, "%s accepts no mail (null MX, RFC 7505)", domain);
        break;
    case LLSMTP_MX_BAD:
        fail(1, "%s: invalid MX records (a null MX among others)", domain);
        break;
    case LLSMTP_MX_LOOP:
        fail(4, "mail for %s would loop back to this host", domain);
        break;
    case LLSMTP_MX_IMPLICIT:
        printf("%s    no MX records: implicit MX (RFC 5321 5.1)\n", domain);
        resolve(&mx[0]);
        if (mx[0].naddrs == 0)
            fail(1, "%s: no MX records and no address", domain);
        print_addrs(&mx[0]);
        break;
    case LLSMTP_MX_OK:
        break;
    default:
        fail(1, "%s: cannot order the MX records", domain);
    }
    printf("delivery order:\n");
    for (i = 0; i < nmx; i++) {
        char ip[64];
        printf("  %zu. %s (preference %u)", i + 1, mx[i].host, mx[i].pref);
        if (mx[i].naddrs == 0)
            printf(" (no address)");
        for (k = 0; k < mx[i].naddrs; k++) {
            llsmtp_ip_format(&mx[i].addrs[k], ip, sizeof ip);
            printf("%s%s", k ? ", " : " ", ip);
        }
        printf("\n");
    }
    return 0;
}
