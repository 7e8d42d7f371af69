/* SPDX-License-Identifier: MIT
 *
 * smtp-send.c - sends one message (a file, or standard input) to one SMTP
 * or LMTP server, or to a domain's MX hosts, with the llsmtp client
 * session, and prints one line per recipient with its final reply.
 * deliver.c drives the session over a blocking socket, route.c finds MX
 * hosts. --verbose prints the dialogue with C:/S: prefixes (credentials
 * and the body are not shown).
 * Exit: see usage() (and README): one status per outcome.
 */
#include "smtpd/deliver.h"
#include "smtpd/log.h"
#include "smtpd/route.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TO LLSMTP_CLIENT_RCPT_MAX

static void
usage(FILE *f)
{
    fprintf(
        f,
        "usage: smtp-send (--server HOST:PORT | --mx DOMAIN [--dns ADDR:PORT]\n"
        "                  [--mx-port N]) [--starttls|--require-tls]\n"
        "                 [--tls-verify [--ca-file PEM]]\n"
        "                 [--user U --password P] [--insecure-auth] [--lmtp]\n"
        "                 [--helo NAME] [--timeout SECONDS] [--verbose]\n"
        "                 --from ADDR --to ADDR [--to ADDR ...] [FILE|-]\n"
        "Sends one message and prints \"<recipient> <code> <text>\" per\n"
        "recipient. --from '' sends a null reverse-path. --mx delivers to\n"
        "DOMAIN's MX hosts in RFC 5321 5.1 order, asking --dns (default:\n"
        "the first nameserver in /etc/resolv.conf), falling over to the\n"
        "next host on a connection failure or a 4xx reply. STARTTLS\n"
        "encrypts; --tls-verify also requires a certificate that chains\n"
        "to --ca-file (or the system's CAs) and names the server (the\n"
        "--server host, or the MX host).\n"
        "Exit: 0 every recipient delivered;\n"
        "      1 some refused for good (5xx), the others delivered;\n"
        "      2 every recipient refused for good, or nothing sent: a bad\n"
        "        option, an unreadable file;\n"
        "      3 some deferred (4xx from a server, or --require-tls and\n"
        "        no STARTTLS offered: 451 4.7.4; try those again later),\n"
        "        whatever happened to the others;\n"
        "      4 no server could be tried (no connection, DNS failure):\n"
        "        nothing was sent, try again later.\n");
}

/* Exit 4 for what may work later (nothing could be tried), 2 for what
 * will not (a bad option, a file that cannot be read). */
static void
die(int code, const char *msg, const char *arg)
{
    log_die(code, "%s%s%s", msg, arg ? ": " : "", arg ? arg : "");
}

static int
has_8bit(const char *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if ((unsigned char)p[i] > 127)
            return 1;
    return 0;
}

static char *
read_message(const char *path, size_t *n)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0;
    if (f == NULL)
        die(2, "cannot open", path);
    *n = 0;
    for (;;) {
        size_t r;
        if (*n == cap) {
            cap = cap ? cap * 2 : 65536;
            buf = (char *)realloc(buf, cap);
            if (buf == NULL)
                die(4, "out of memory", NULL);
        }
        r = fread(buf + *n, 1, cap - *n, f);
        *n += r;
        if (r == 0)
            break;
    }
    if (ferror(f))
        die(2, "cannot read", path);
    if (f != stdin)
        fclose(f);
    return buf;
}

/* The host part of --server: "host:port", "[v6]:port", "host". */
static const char *
host_of(const char *spec, char *buf, size_t cap)
{
    const char *colon = strrchr(spec, ':');
    size_t n = strlen(spec);
    if (spec[0] == '[') {
        const char *rb = strchr(spec, ']');
        n = rb != NULL ? (size_t)(rb - spec - 1) : n - 1;
        spec++;
    } else if (colon != NULL && strchr(spec, ':') == colon) {
        n = (size_t)(colon - spec);
    }
    snprintf(buf, cap, "%.*s", (int)n, spec);
    return buf;
}

static unsigned long
number(const char *name, const char *v, unsigned long max)
{
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    if (*v < '0' || *v > '9' || *end || n > max)
        die(2, "bad value for", name);
    return n;
}

int
main(int argc, char **argv)
{
    dlv_conf dc;
    llsmtp_client_msg m;
    static llsmtp_span to[MAX_TO];
    static dlv_result res[MAX_TO];
    const char *server = NULL, *mx_domain = NULL, *dns = NULL, *from = NULL,
               *file = "-";
    char *body;
    size_t body_n, i, ok = 0, temp = 0, heard = 0;
    unsigned long mx_port = 25;
    int a;

    log_init("smtp-send");
    memset(&dc, 0, sizeof dc);
    if (llsmtp_client_cfg_init(&dc.cfg) != LLSMTP_OK ||
        llsmtp_client_msg_init(&m) != LLSMTP_OK)
        die(2, "the llsmtp library linked is of another version", NULL);
    dc.cfg.helo.p = "localhost";
    dc.cfg.helo.n = 9;
    for (a = 1; a < argc; a++) {
        const char *o = argv[a];
        const char *v = a + 1 < argc ? argv[a + 1] : NULL;
#define TAKES(name) (strcmp(o, name) == 0 && v != NULL && ++a)
        if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (TAKES("--server")) {
            server = v;
        } else if (TAKES("--mx")) {
            mx_domain = v;
        } else if (TAKES("--dns")) {
            dns = v;
        } else if (TAKES("--mx-port")) {
            mx_port = number(o, v, 65535);
        } else if (TAKES("--timeout")) {
            dc.timeout = dc.connect_timeout = (int)number(o, v, 86400);
        } else if (TAKES("--from")) {
            from = v;
        } else if (TAKES("--to")) {
            if (m.nto == MAX_TO)
                die(2, "too many recipients", NULL);
            to[m.nto].p = v;
            to[m.nto++].n = strlen(v);
        } else if (TAKES("--helo")) {
            dc.cfg.helo.p = v;
            dc.cfg.helo.n = strlen(v);
        } else if (TAKES("--user")) {
            dc.cfg.user.p = v;
            dc.cfg.user.n = strlen(v);
        } else if (TAKES("--password")) {
            dc.cfg.password.p = v;
            dc.cfg.password.n = strlen(v);
        } else if (strcmp(o, "--starttls") == 0) {
            dc.cfg.flags |= LLSMTP_CLI_STARTTLS;
        } else if (strcmp(o, "--require-tls") == 0) {
            dc.cfg.flags |= LLSMTP_CLI_REQUIRE_TLS;
        } else if (strcmp(o, "--tls-verify") == 0) {
            dc.cfg.flags |= LLSMTP_CLI_REQUIRE_TLS;
            dc.tls_verify = 1;
        } else if (TAKES("--ca-file")) {
            dc.ca_file = v;
        } else if (strcmp(o, "--insecure-auth") == 0) {
            dc.cfg.flags |= LLSMTP_CLI_AUTH_CLEARTEXT;
        } else if (strcmp(o, "--lmtp") == 0) {
            dc.cfg.flags |= LLSMTP_CLI_LMTP;
        } else if (strcmp(o, "--verbose") == 0 || strcmp(o, "-v") == 0) {
            dc.trace = stderr;
        } else if (o[0] != '-' || strcmp(o, "-") == 0) {
            file = o;
        } else {
            usage(stderr);
            log_say("unknown or incomplete option %s", o);
            return 2;
        }
#undef TAKES
    }
    if ((server == NULL) == (mx_domain == NULL) || from == NULL ||
        m.nto == 0 || (dns != NULL && mx_domain == NULL)) {
        usage(stderr);
        return 2;
    }
#ifndef HAVE_OPENSSL
    if (dc.cfg.flags & (LLSMTP_CLI_STARTTLS | LLSMTP_CLI_REQUIRE_TLS))
        die(2, "built without OpenSSL: no STARTTLS", NULL);
#endif
    signal(SIGPIPE, SIG_IGN); /* a server that hangs up is a result */
    body = read_message(file, &body_n);
    m.from.p = from;
    m.from.n = strlen(from);
    m.to = to;
    m.size = body_n;
    if (has_8bit(body, body_n))
        m.flags |= LLSMTP_MSG_8BIT;

    if (server != NULL) {
        char err[300], name[300];
        int fd = dlv_connect_name(server, dc.connect_timeout, err, sizeof err);
        if (fd >= 0) {
            host_of(server, name, sizeof name);
            dlv_send(fd, &dc, name, &m, body, body_n, res);
            for (i = 0; i < m.nto; i++)
                snprintf(res[i].remote, sizeof res[i].remote, "%.253s", name);
            heard = 1;
        } else { /* every recipient still gets its line */
            char text[400];
            log_say("cannot connect: %s", err);
            snprintf(text, sizeof text,
                     "4.4.1 cannot connect to %.100s: %.200s", server, err);
            for (i = 0; i < m.nto; i++)
                res[i].code = 0;
            dlv_fill(res, m.nto, 451, text);
        }
    } else {
        static llsmtp_mx mx[ROUTE_MX_MAX];
        route_dns d;
        size_t nmx;
        char why[LLSMTP_REPLY_LINE_MAX - 8];
        int rc;
        memset(&d, 0, sizeof d);
        if (dns == NULL)
            route_dns_default(&d);
        else if (route_dns_set(&d, dns) != 0)
            die(2, "bad --dns (give an address, e.g. 127.0.0.1:53)", dns);
        rc = route_mx(&d, mx_domain, NULL, mx, ROUTE_MX_MAX, &nmx, why,
                      sizeof why);
        if (rc != 0) {
            for (i = 0; i < m.nto; i++) {
                res[i].code = rc;
                snprintf(res[i].text, sizeof res[i].text, "%s", why);
            }
        } else {
            dlv_send_mx(mx, nmx, (uint16_t)mx_port, &dc, &m, body, body_n,
                        res);
        }
    }
    free(body);
    /* --require-tls and no STARTTLS: deferred (451 4.7.4), as the queue */
    dlv_tls_unoffered(&dc, res, m.nto);
    for (i = 0; i < m.nto; i++) {
        printf("%.*s %d %s\n", (int)to[i].n, to[i].p, res[i].code,
               res[i].text);
        if (res[i].code / 100 == 2)
            ok++;
        else if (res[i].code / 100 == 4)
            temp++;
        heard += res[i].remote[0] != '\0'; /* (--mx) a server answered */
    }
    fflush(stdout);
    if (ok == m.nto)
        return 0;
    if (temp > 0) /* what the caller must act on first: try again */
        return heard == 0 ? 4 : 3;
    return ok > 0 ? 1 : 2;
}
