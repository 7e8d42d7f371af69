/* SPDX-License-Identifier: MIT
 *
 * mxlookup.c - where would mail for DOMAIN go? Asks a DNS server for the
 * MX records (UDP, TCP when truncated or with --tcp; route.c asks,
 * lib/dns.c reads the packets), looks up addresses the answer did not
 * carry, orders the targets with lib/mx.c (RFC 5321 5.1, RFC 7505) and
 * prints them the way nslookup does. Exit: 0 targets found, 1 error, 2 null MX, 3 no such domain,
 * 4 mail would loop back to this host.
 */
#include "smtpd/route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MX 32
#define MAX_LOCAL 16

static route_dns dns;

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
    case ROUTE_NO_ANSWER:
        fail(1, "%s: no answer from the DNS server (timeout)", name);
        break;
    default:
        fail(1, "%s: malformed answer from the DNS server", name);
    }
}

/* Adds A and AAAA addresses of m->host. */
static void
resolve(llsmtp_mx *m)
{
    if (route_addrs(&dns, m) != 0)
        check(ROUTE_NO_ANSWER, m->host);
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
    static llsmtp_dns_rr rrs[ROUTE_RR_MAX];
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
            if (route_dns_set(&dns, v) != 0)
                fail(1,
                     "bad --server %s (give an address, e.g. "
                     "127.0.0.1:53)",
                     v);
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
            dns.tcp = 1;
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
        route_dns_default(&dns);
    if (!have_seed)
        seed = dns.rng;

    rc = route_ask(&dns, domain, LLSMTP_DNS_MX, rrs, ROUTE_RR_MAX, &n);
    check(rc, domain);
    rc = llsmtp_dns_mx(rrs, n, domain, strlen(domain), mx, MAX_MX, &nmx);
    if (rc != LLSMTP_OK && rc != LLSMTP_DNS_PARTIAL)
        fail(1, "%s: CNAME chain too long or looping", domain);
    if (rc == LLSMTP_DNS_PARTIAL)
        printf("%s    more than %d MX records: only the %zu with the "
               "lowest preference are kept, the others were dropped\n",
               domain, MAX_MX, nmx);
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

    llsmtp_mx_opts_init(&o);
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
