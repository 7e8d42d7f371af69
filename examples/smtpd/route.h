/* SPDX-License-Identifier: MIT
 *
 * route.h - where mail for a domain goes, for the example programs
 * (mxlookup, smtp-send, smtpd): DNS questions over UDP, and TCP when the
 * answer is truncated, built and read by lib/dns.c; MX targets ordered by
 * lib/mx.c with their addresses looked up. Blocking, with timeouts.
 */
#ifndef LLSMTP_EXAMPLES_ROUTE_H
#define LLSMTP_EXAMPLES_ROUTE_H

#include <llsmtp.h>

#include <netinet/in.h>
#include <sys/socket.h>

#define ROUTE_RR_MAX 128
#define ROUTE_MX_MAX 32
#define ROUTE_NO_ANSWER (-2) /* route_ask: nothing came back in time */

typedef struct route_dns {
    struct sockaddr_storage addr;
    socklen_t len;
    int tcp;      /* ask over TCP from the start */
    uint64_t rng; /* query ids */
} route_dns;

/* Fills buf with n octets from the system's random source (getrandom,
 * else /dev/urandom). Returns 0, or -1 when there is none. */
int route_random(void *buf, size_t n);

/* "ADDR", "ADDR:PORT" or "[IPv6]:PORT" (port 53 when not given).
 * Returns 0, or -1 for a bad spec. */
int route_dns_set(route_dns *d, const char *spec);
/* The first nameserver of /etc/resolv.conf, else 127.0.0.1. */
void route_dns_default(route_dns *d);

/* One question. Returns an enum llsmtp_dns_status, LLSMTP_E_SYNTAX (a
 * malformed answer or name), or ROUTE_NO_ANSWER. */
int route_ask(route_dns *d, const char *name, uint16_t qtype,
              llsmtp_dns_rr *rrs, size_t cap, size_t *n);

/* Adds the A and AAAA addresses of m->host. Returns 0, or -1 when the DNS
 * server failed to answer (a temporary condition). */
int route_addrs(route_dns *d, llsmtp_mx *m);

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d, RFC 4291 2.5.5.2) made
 * its IPv4 address; any other address is left as it is. */
void route_ip_norm(llsmtp_ip *ip);
/* Whether a and b are the same address, the mapped form included. */
int route_ip_same(const llsmtp_ip *a, const llsmtp_ip *b);

/* Where mail for domain goes: mx[0..*n) in delivery order, each with
 * its addresses (targets without any are kept: the caller skips them).
 * Returns 0, or a reply code with its text in why ("5.1.10 ..."): 556
 * null MX (RFC 7505), 550 no such domain, 554 mail would loop back, 451
 * the DNS failed (try later). */
int route_mx(route_dns *d, const char *domain, const llsmtp_mx_opts *o,
             llsmtp_mx *mx, size_t cap, size_t *n, char *why, size_t whycap);

#endif
