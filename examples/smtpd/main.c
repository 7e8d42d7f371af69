/* SPDX-License-Identifier: MIT
 *
 * main.c - smtpd, a real SMTP server on llsmtp: one poll() event loop,
 * non-blocking sockets, a durable spool (each message written under
 * DIR/tmp, fsync'ed and linked into DIR before "250 ... Queued" is
 * sent, by commit.c's storage thread, which flushes a whole batch of
 * messages at once), local domains, RFC 5321 timeouts, graceful
 * shutdown. POSIX C. This file owns the options (into struct smtpd),
 * the library's configuration and policy, set-up and clean-up; main()
 * is the outline. The files it calls are listed in smtpd.h. The library
 * does the protocol; the folder does sockets, files, policy.
 */
#include "smtpd.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void
usage(FILE *f)
{
    fputs(
        "usage: smtpd [options]\n"
        "  --listen ADDR:PORT     default 127.0.0.1:2525; repeatable; IPv6 as "
        "[::1]:2525;\n"
        "                         ADDR:PORT,proxy: that port expects a PROXY "
        "header\n"
        "  --hostname NAME        name in the greeting, EHLO and Received\n"
        "  --local-domain D       repeatable: mail for D is accepted and "
        "stored\n"
        "                         (default: the hostname and localhost)\n"
        "  --relay-domain D       repeatable: mail for D is accepted and "
        "queued for onward delivery\n"
        "                         (.D: every subdomain of D)\n"
        "  --relay-net CIDR       repeatable: clients from here may relay "
        "anywhere\n"
        "  --user NAME:PASSWORD   repeatable: accept AUTH PLAIN/LOGIN for "
        "this user\n"
        "  --users FILE           NAME:PASSWORD lines ('#' comments)\n"
        "  --recipients FILE      the mailboxes of the local domains, one a "
        "line: user@domain,\n"
        "                         or @domain for all of it; --user names "
        "count; others get\n"
        "                         550 5.1.1 at RCPT (default: any)\n"
        "  --relay-recipients FILE  the same for the relay domains\n"
        "  --insecure-auth        offer AUTH without TLS (loopback and "
        "tests only)\n"
        "  --tls-cert F --tls-key F   offer STARTTLS with this certificate "
        "chain and key (PEM)\n"
        "  --tls-ciphers LIST     TLS 1.2 ciphers, server's order (default: "
        "ECDHE with AES-GCM\n"
        "                         or ChaCha20-Poly1305 only)\n"
        "  --tls-min 1.2|1.3      oldest TLS version accepted (default "
        "1.2)\n"
        "  --lmtp                 speak LMTP (RFC 2033): LHLO, a reply per "
        "recipient\n"
        "  --proxy-protocol       every --listen expects a PROXY v1/v2 "
        "header (behind HAProxy\n"
        "                         or a TCP load balancer)\n"
        "  --proxy-from CIDR      repeatable, required with PROXY: the "
        "balancers; a connection\n"
        "                         from anywhere else is closed without a "
        "reply\n"
        "  --proxy-timeout T      time for the PROXY header (default 5s); "
        "then closed\n"
        "  --drain-timeout T      on SIGTERM: time for the messages under way "
        "(default 30s);\n"
        "                         each session gets 421 4.3.2 when its "
        "transaction is over\n"
        "  --no-chunking --no-binarymime --no-dsn --no-smtputf8 --no-etrn\n"
        "                         switch off an extension (all on by "
        "default)\n"
        "  --smarthost HOST:PORT  deliver relayed mail there ([HOST]:PORT: "
        "no MX lookup)\n"
        "                         instead of to each domain's MX hosts\n"
        "  --dns ADDR:PORT        DNS server for MX lookups (default: first "
        "nameserver in /etc/resolv.conf)\n"
        "  --mx-port N            port of MX hosts (default 25; for tests)\n"
        "  --retry LIST           retry delays, e.g. 1m,5m,15m,1h (default "
        "5m,10m,20m,40m,1h,2h,4h);\n"
        "                         the last one repeats; s, m, h, d suffixes\n"
        "  --max-queue-time T     give up and bounce after T (default 5d, "
        "RFC 5321 4.5.4.1)\n"
        "  --runners N            deliveries at once (default 8)\n"
        "  --bounce-size-limit N  body octets a bounce returns (default "
        "50000; the header always)\n"
        "  --next-hop-tls L       may (STARTTLS when offered, default), "
        "encrypt (required),\n"
        "                         verify (required, certificate must name "
        "the host)\n"
        "  --next-hop-ca FILE     CA certificates (PEM) for verify (default: "
        "the system's)\n"
        "  --spool DIR            default ./spool (relayed mail waits in "
        "DIR/queue)\n"
        "  --discard              accept and drop messages (benchmarks); no "
        "disk writes\n"
        "  --max-size BYTES       message size limit (default 10485760)\n"
        "  --max-rcpt N           recipients per message (default 1000)\n"
        "  --max-clients N        concurrent sessions (default 1000)\n"
        "  --max-hops N           refuse a message with more Received: "
        "headers (554 5.4.6;\n"
        "                         a mail loop; default 50)\n"
        "  --timeout SECONDS      idle/command timeout, for clients and for "
        "the queue's next hops\n"
        "                         (default: RFC 5321, 5 min; 10 min in "
        "DATA)\n"
        "  --no-fsync             skip fsync (benchmarks only; UNSAFE: "
        "acknowledged mail may be lost)\n"
        "  --flush-each-file      make each message durable by its files' "
        "own fdatasync,\n"
        "                         never by one syncfs of the spool's file "
        "system for a\n"
        "                         batch (for a spool that shares its file "
        "system with\n"
        "                         busy writers)\n"
        "  --verbose              one log line per command and reply\n"
        "  --log-health-checks yes|no  no: a PROXY LOCAL/UNKNOWN session "
        "(a balancer's\n"
        "                         check) that says only EHLO/HELO/NOOP/RSET/"
        "QUIT and hears\n"
        "                         no 4xx/5xx leaves no lines\n"
        "  --version              the library's version and whether TLS is "
        "built in\n"
        "  --help                 this text\n",
        f);
}

/* --version: what this binary can do, for scripts and tests (the
 * integration suites skip TLS cases when it says "tls none"). */
static void
version(void)
{
    unsigned long v = llsmtp_version();
    printf("smtpd llsmtp %lu.%lu.%lu tls %s\n", v >> 16, (v >> 8) & 0xff,
           v & 0xff, tls_library());
}

static unsigned long long
parse_num(const char *name, const char *v)
{
    char *end;
    unsigned long long n;
    errno = 0;
    if (v == NULL || *v < '0' || *v > '9')
        log_die(2, "bad value for %s", name);
    n = strtoull(v, &end, 10);
    if (errno || *end)
        log_die(2, "bad value for %s", name);
    return n;
}

/* "90", "90s", "5m", "2h", "5d" in seconds. */
static unsigned long
parse_time(const char *name, const char *v)
{
    char *end;
    unsigned long n;
    errno = 0;
    if (v == NULL || *v < '0' || *v > '9')
        log_die(2, "bad time for %s", name);
    n = strtoul(v, &end, 10);
    if (errno || n > 100000000UL)
        log_die(2, "bad time for %s", name);
    switch (*end) {
    case 'd':
        n *= 24;
        /* fall through */
    case 'h':
        n *= 60;
        /* fall through */
    case 'm':
        n *= 60;
        /* fall through */
    case 's':
        end++;
        break;
    default:
        break;
    }
    if (*end != '\0' || n == 0)
        log_die(2, "bad time for %s", name);
    /* the queue adds durations to times and keeps them in 32 bits: what
     * does not fit must not wrap into a short delay */
    if (n > (unsigned long)INT_MAX) {
        log_say("%s %s is too long (at most %d seconds, "
                "about 68 years)",
                name, v, INT_MAX);
        exit(2);
    }
    return n;
}

/* A number for an int-sized option, refused (exit 2) outside min..max
 * before any cast could wrap it. */
static int
parse_int(const char *name, const char *v, long long min, long long max)
{
    unsigned long long n = parse_num(name, v);
    if (n < (unsigned long long)min || n > (unsigned long long)max) {
        log_say("%s %s is out of range (%lld..%lld)", name, v, min, max);
        exit(2);
    }
    return (int)n;
}

static void
parse_retry(queue_conf *q, const char *v)
{
    char buf[512], *tok, *save = NULL;
    if (strlen(v) >= sizeof buf)
        log_die(2, "bad --retry %s", v);
    strcpy(buf, v);
    q->nretry = 0;
    for (tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (q->nretry == QUEUE_RETRY_MAX)
            log_die(2, "too many --retry delays in %s", v);
        q->retry[q->nretry++] = (unsigned)parse_time("--retry", tok);
    }
    if (q->nretry == 0)
        log_die(2, "bad --retry %s", v);
}

/* Whether the library takes name as the server's name (RFC 5321 2.3.5:
 * a domain name or an address literal); *why says why not. */
static int
hostname_ok(const char *name, const char **why)
{
    llsmtp_config c;
    llsmtp_config_init(&c);
    c.hostname = name;
    return llsmtp_config_check(&c, why) == LLSMTP_OK;
}

/* The name smtpd goes by: --hostname as given (exit 2 when it is not a
 * domain name), else this host's name without a trailing dot ("host.
 * example." is "host.example"), else "localhost" with a warning: a
 * machine called "host_name" or "DESKTOP_PC" still runs smtpd. */
static const char *
choose_hostname(options *o, const char *given)
{
    char *host = o->host_buf;
    const char *why = NULL;
    size_t n;
    if (given != NULL) {
        if (!hostname_ok(given, &why)) {
            log_say("--hostname %s is refused: %s", given,
                    why != NULL ? why : "invalid");
            exit(2);
        }
        return given;
    }
    if (gethostname(host, sizeof o->host_buf - 1) != 0 || host[0] == '\0')
        return "localhost";
    host[sizeof o->host_buf - 1] = '\0';
    n = strlen(host);
    if (n > 1 && host[n - 1] == '.')
        host[n - 1] = '\0';
    if (!hostname_ok(host, &why)) {
        log_say("warning: this host's name \"%s\" is refused (%s): "
                "going by \"localhost\"; give --hostname NAME",
                host, why != NULL ? why : "invalid");
        return "localhost";
    }
    return host;
}

static void
raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}


/* The option's value; exit 2 when there is none. */
static const char *
need(const char *a, const char *v)
{
    if (v == NULL)
        log_die(2, "%s needs a value", a);
    return v;
}

/* A CIDR for --relay-net / --proxy-from into *out (exit 2 if bad). */
static void
parse_cidr(const char *a, const char *v, llsmtp_cidr *out)
{
    int rc = llsmtp_cidr_parse(v, strlen(v), out);
    if (rc != LLSMTP_OK) {
        log_say("bad %s %s: %s", a, v, llsmtp_strerror(rc));
        exit(2);
    }
}

/* Each opt_* takes the options of one kind: it returns 0 when a is
 * none of them, else how many arguments it took (1, or 2 with v). */
#define IS(name) (strcmp(a, (name)) == 0)

/* --listen "ADDR:PORT" or "ADDR:PORT,proxy" (behind a balancer, this
 * one only). */
static void
add_listen(options *o, const char *v)
{
    const char *comma = strchr(v, ',');
    char *b;
    if (o->nlisten == MAX_LISTEN)
        log_die(2, "too many %s", "--listen");
    b = o->listen_buf[o->nlisten];
    if (comma != NULL) {
        if (strcmp(comma, ",proxy") != 0 ||
            (size_t)(comma - v) >= sizeof o->listen_buf[0])
            log_die(2, "bad --listen %s (ADDR:PORT or ADDR:PORT,proxy)", v);
        memcpy(b, v, (size_t)(comma - v));
        b[comma - v] = '\0';
        o->listen_proxy[o->nlisten] = 1;
        v = b;
    }
    o->listen[o->nlisten++] = v;
}

/* Listeners, PROXY, the drain, LMTP. */
static int
opt_listen(options *o, const char *a, const char *v)
{
    if (IS("--listen"))
        add_listen(o, need(a, v));
    else if (IS("--hostname"))
        o->hostname = need(a, v);
    else if (IS("--lmtp"))
        return o->lmtp = 1;
    else if (IS("--proxy-protocol"))
        return o->proxy = 1;
    else if (IS("--proxy-timeout"))
        o->proxy_timeout = (int)parse_time(a, need(a, v));
    else if (IS("--drain-timeout"))
        o->drain_timeout = (int)parse_time(a, need(a, v));
    else if (IS("--proxy-from")) {
        need(a, v);
        if (o->nproxy_from == MAX_DOMAINS)
            log_die(2, "too many %s", a);
        parse_cidr(a, v, &o->proxy_from[o->nproxy_from]);
        if (o->proxy_from[o->nproxy_from].bits == 0)
            log_say("warning: --proxy-from %s trusts "
                    "every address: whoever reaches a PROXY "
                    "listener can claim any client address "
                    "(a --relay-net one too)",
                    v);
        o->nproxy_from++;
    } else
        return 0;
    return 2;
}

/* Domains and networks. */
static int
opt_domains(options *o, const char *a, const char *v)
{
    if (IS("--local-domain")) {
        need(a, v);
        if (o->nlocal == MAX_DOMAINS)
            log_die(2, "too many %s", a);
        if (llsmtp_domain_check(v, strlen(v), 0) != LLSMTP_OK)
            log_die(2, "bad domain for --local-domain: %s", v);
        o->local_domains[o->nlocal++] = v;
    } else if (IS("--relay-domain")) {
        need(a, v);
        if (o->nrelay == MAX_DOMAINS)
            log_die(2, "too many %s", a);
        if (llsmtp_domain_check(v[0] == '.' ? v + 1 : v,
                                strlen(v) - (v[0] == '.'), 0) != LLSMTP_OK)
            log_die(2, "bad domain for --relay-domain: %s", v);
        o->relay_domains[o->nrelay++] = v;
    } else if (IS("--relay-net")) {
        need(a, v);
        if (o->nnets == MAX_DOMAINS)
            log_die(2, "too many %s", a);
        parse_cidr(a, v, &o->relay_nets[o->nnets]);
        o->nnets++;
    } else
        return 0;
    return 2;
}

/* Users, recipients, extensions. */
static int
opt_users(smtpd *d, const char *a, const char *v)
{
    options *o = &d->opt;
    if (IS("--user"))
        add_user(d, need(a, v), "given to --user");
    else if (IS("--users"))
        read_users(d, need(a, v));
    else if (IS("--recipients")) {
        read_recipients(a, need(a, v), &o->rcpts_local, &o->nrcpts_local);
        o->verify_local = 1;
    } else if (IS("--relay-recipients")) {
        read_recipients(a, need(a, v), &o->rcpts_relay, &o->nrcpts_relay);
        o->verify_relay = 1;
    } else if (IS("--insecure-auth"))
        return o->insecure_auth = 1;
    else if (IS("--no-chunking"))
        o->no_ext |= LLSMTP_EXT_CHUNKING | LLSMTP_EXT_BINARYMIME;
    else if (IS("--no-binarymime"))
        o->no_ext |= LLSMTP_EXT_BINARYMIME;
    else if (IS("--no-dsn"))
        o->no_ext |= LLSMTP_EXT_DSN;
    else if (IS("--no-smtputf8"))
        o->no_ext |= LLSMTP_EXT_SMTPUTF8;
    else if (IS("--no-etrn"))
        o->no_ext |= LLSMTP_EXT_ETRN;
    else
        return 0;
    return strncmp(a, "--no-", 5) == 0 ? 1 : 2;
}

/* STARTTLS. */
static int
opt_tls(options *o, const char *a, const char *v)
{
    if (IS("--tls-cert"))
        o->tls_cert = need(a, v);
    else if (IS("--tls-key"))
        o->tls_key = need(a, v);
    else if (IS("--tls-ciphers"))
        o->tls_ciphers = need(a, v);
    else if (IS("--tls-min")) {
        if (strcmp(need(a, v), "1.2") == 0)
            o->tls_min = 12;
        else if (strcmp(v, "1.3") == 0)
            o->tls_min = 13;
        else
            log_die(2, "bad --tls-min %s (1.2 or 1.3)", v);
    } else
        return 0;
    return 2;
}

/* --next-hop-tls may|encrypt|verify. */
static int
parse_next_hop_tls(const char *v)
{
    if (strcmp(v, "may") == 0)
        return 0;
    if (strcmp(v, "encrypt") == 0)
        return 1;
    if (strcmp(v, "verify") == 0)
        return 2;
    log_die(2, "bad --next-hop-tls %s (may, encrypt or verify)", v);
    return -1;
}

/* Onward delivery: the queue's options. */
static int
opt_queue(options *o, const char *a, const char *v)
{
    queue_conf *q = &o->q;
    llsmtp_relayhost rh;
    if (IS("--smarthost")) {
        v = need(a, v); /* before strlen(v): no value is an error */
        if (llsmtp_relayhost_parse(v, strlen(v), &rh, NULL) != LLSMTP_OK)
            log_die(2, "bad --smarthost %s (HOST:PORT or [HOST]:PORT)", v);
        q->smarthost = v;
    } else if (IS("--dns")) {
        if (route_dns_set(&q->dns, need(a, v)) != 0)
            log_die(2, "bad --dns %s (an address, e.g. 127.0.0.1:53)", v);
        o->dns = v;
    } else if (IS("--mx-port"))
        q->mx_port = (unsigned)parse_int(a, need(a, v), 1, 65535);
    else if (IS("--retry"))
        parse_retry(q, need(a, v));
    else if (IS("--max-queue-time"))
        q->max_queue_time = parse_time(a, need(a, v));
    else if (IS("--next-hop-tls"))
        q->tls = parse_next_hop_tls(need(a, v));
    else if (IS("--next-hop-ca"))
        q->ca_file = need(a, v);
    else if (IS("--runners"))
        q->max_runners = parse_int(a, need(a, v), 1, 1000);
    else if (IS("--bounce-size-limit"))
        q->bounce_size_limit = (size_t)parse_int(a, need(a, v), 0, INT_MAX);
    else
        return 0;
    return 2;
}

/* The spool, limits, the log. */
static int
opt_limits(options *o, const char *a, const char *v)
{
    if (IS("--spool"))
        o->spool = need(a, v);
    else if (IS("--discard"))
        return o->discard = 1;
    else if (IS("--no-fsync"))
        return o->no_fsync = 1;
    else if (IS("--flush-each-file"))
        return o->flush_each_file = 1;
    else if (IS("--verbose"))
        return o->verbose = 1;
    else if (IS("--log-health-checks")) {
        if (strcmp(need(a, v), "yes") != 0 && strcmp(v, "no") != 0)
            log_die(2, "bad --log-health-checks %s (yes or no)", v);
        o->quiet_checks = strcmp(v, "no") == 0;
    } else if (IS("--max-size"))
        o->max_size = parse_num(a, need(a, v));
    else if (IS("--max-rcpt")) {
        o->max_rcpt = (size_t)parse_num(a, need(a, v));
        if (o->max_rcpt < 100)
            log_die(2, "%s must be at least 100 (RFC 5321 4.5.3.1.8)", a);
    } else if (IS("--max-clients"))
        o->max_clients = parse_int(a, need(a, v), 1, 1000000);
    else if (IS("--max-hops"))
        o->max_hops = (unsigned)parse_int(a, need(a, v), 1, 10000);
    else if (IS("--timeout"))
        o->timeout = parse_int(a, need(a, v), 1, 86400 * 365);
    else
        return 0;
    return 2;
}

/* One option at argv[i] (its value, if any, at argv[i + 1]). Returns how
 * many arguments it took; exits for --help, --version and what is not an
 * option. */
static int
parse_option(smtpd *d, int argc, char **argv, int i)
{
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    options *o = &d->opt;
    int n;
    if (IS("--help") || IS("-h")) {
        usage(stdout);
        exit(0);
    }
    if (IS("--version")) {
        version();
        exit(0);
    }
    if ((n = opt_listen(o, a, v)) == 0 && (n = opt_domains(o, a, v)) == 0 &&
        (n = opt_users(d, a, v)) == 0 && (n = opt_tls(o, a, v)) == 0 &&
        (n = opt_queue(o, a, v)) == 0 && (n = opt_limits(o, a, v)) == 0)
        log_die(2, "unknown option %s (see --help)", a);
    return n;
}
#undef IS

static void
options_defaults(options *o)
{
    memset(o, 0, sizeof *o);
    o->spool = "./spool";
    o->max_size = 10485760;
    o->max_rcpt = 1000;
    o->max_clients = 1000;
    o->max_hops = 50;      /* Postfix's hopcount_limit */
    o->proxy_timeout = 5;  /* a balancer sends it at once */
    o->drain_timeout = 30; /* within Kubernetes' default 30 s grace */
    o->tls_ciphers = TLS_CIPHERS;
    o->tls_min = 12;
    parse_retry(&o->q, "5m,10m,20m,40m,1h,2h,4h");
    o->q.max_queue_time = 5UL * 24 * 3600;
    o->q.mx_port = 25;
    o->q.max_runners = 8;
    o->q.bounce_size_limit = 50000;
}

/* What no single option can check: pairs, PROXY's trust, what a build
 * without OpenSSL lacks; then the defaults that depend on others. */
static void
options_check(options *o)
{
    int i;
    if ((o->tls_cert == NULL) != (o->tls_key == NULL))
        log_die(2, "--tls-cert and --tls-key go together%s", "");
    /* A PROXY header names any client it likes: believed from anyone,
     * it makes whoever reaches the port a --relay-net client. */
    if (o->nlisten == 0)
        o->listen[o->nlisten++] = "127.0.0.1:2525";
    for (i = 0; i < o->nlisten; i++) {
        if (o->proxy) /* the old switch: every listener */
            o->listen_proxy[i] = 1;
        if (o->listen_proxy[i] && o->nproxy_from == 0)
            log_die(2,
                    "PROXY protocol needs --proxy-from CIDR: the "
                    "balancers whose header is believed%s",
                    "");
    }
#ifndef HAVE_OPENSSL
    if (o->q.tls != 0)
        log_die(2, "built without OpenSSL: %s is not available",
                "--next-hop-tls encrypt/verify");
    if (o->tls_cert != NULL)
        log_die(2,
                "built without OpenSSL: %s is not available "
                "(install libssl-dev and rebuild)",
                "--tls-cert");
#endif
    o->hostname = choose_hostname(o, o->hostname);
    if (o->nlocal == 0) {
        /* like Postfix's mydestination: this host's own names */
        o->local_domains[o->nlocal++] = o->hostname;
        o->local_domains[o->nlocal++] = "localhost";
    }
}

static void
parse_args(smtpd *d, int argc, char **argv)
{
    int i;
    options_defaults(&d->opt);
    for (i = 1; i < argc; i += parse_option(d, argc, argv, i))
        ;
    options_check(&d->opt);
}

/* The library's configuration (cfg, and cfg_proxy for PROXY listeners)
 * and the relay policy, from the options. Returns 0, or the exit
 * status. */
static int
config_setup(smtpd *d)
{
    const options *o = &d->opt;
    llsmtp_config *cfg = &d->cfg;
    llsmtp_relay_policy *policy = &d->policy;
    const char *why = NULL;
    int rc;
    llsmtp_config_init(cfg);
    cfg->hostname = o->hostname;
    cfg->banner = "llsmtp " LLSMTP_VERSION_STRING;
    cfg->max_size = o->max_size;
    cfg->max_rcpt = o->max_rcpt;
    session_callbacks_init(&d->callbacks);
    cfg->callbacks = &d->callbacks;
    llsmtp_relay_policy_init(policy);
    policy->local_domains = o->local_domains;
    policy->nlocal = (size_t)o->nlocal;
    policy->relay_domains = o->relay_domains;
    policy->nrelay = (size_t)o->nrelay;
    policy->networks = o->relay_nets;
    policy->nnetworks = (size_t)o->nnets;
    cfg->relay = policy;
    if (o->lmtp)
        cfg->flags |= LLSMTP_CFG_LMTP;
    /* an idle session keeps no output buffer: one is lent while its
     * replies wait (loop.c, conn_lend) */
    cfg->flags |= LLSMTP_CFG_LENT_OUTPUT;
    /* RFC 3030, 3461, 6531, 1985: on unless switched off */
    cfg->extensions |= (LLSMTP_EXT_CHUNKING | LLSMTP_EXT_BINARYMIME |
                        LLSMTP_EXT_DSN | LLSMTP_EXT_SMTPUTF8 |
                        LLSMTP_EXT_ETRN) &
                       ~o->no_ext;
    if ((rc = tls_setup(d)) != 0)
        return rc;
    if (o->nusers > 0) {
        cfg->extensions |= LLSMTP_EXT_AUTH;
        if (o->insecure_auth)
            cfg->flags |= LLSMTP_CFG_AUTH_CLEARTEXT;
    }
    if (llsmtp_config_check(cfg, &why) != LLSMTP_OK)
        log_die(2, "invalid configuration: %s", why);
    d->cfg_proxy = *cfg;
    d->cfg_proxy.flags |= LLSMTP_CFG_PROXY;
    d->lend_cap = llsmtp_server_lend_size(&d->cfg_proxy);
    if (d->lend_cap < LEND_BUF)
        d->lend_cap = LEND_BUF;
    if (llsmtp_config_check(&d->cfg_proxy, &why) != LLSMTP_OK)
        log_die(2, "invalid configuration: %s", why);
    return 0;
}

/* Everything before the loop: configuration, spool and queue, signals,
 * listeners. Returns 0, or the exit status. */
static int
setup(smtpd *d)
{
    int rc = config_setup(d);
    if (rc == 0 && !d->opt.discard)
        rc = spool_open(d);
    if (rc != 0)
        return rc;
    raise_nofile();
    /* log lines are gathered and written before each poll(): a message
     * with 50 recipients costs one write(2), not 55 */
    log_buffer();
    if (signals_init() != 0)
        return 1;
    listeners_open(d);
    return 0;
}

static void
free_list(char **v, size_t n)
{
    size_t k;
    for (k = 0; k < n; k++)
        free(v[k]);
    free(v);
}

/* After the drain: the storage thread (what it had taken is stored),
 * the queue (runners are left to finish). */
static void
stop(smtpd *d)
{
    commit_close(d->commit); /* what it had taken is stored */
    d->commit = NULL;
    if (queue_busy(d->outq) > 0)
        log_line("stopping with %zu deliveries under way: they finish "
                 "on their own",
                 queue_busy(d->outq));
    queue_close(d->outq);
    d->outq = NULL;
    log_line("stopped");
}

/* On the way out, stopped or not: what set-up made, and d. */
static void
smtpd_free(smtpd *d)
{
    free_list(d->opt.users, d->opt.nusers);
    free_list(d->opt.rcpts_local, d->opt.nrcpts_local);
    free_list(d->opt.rcpts_relay, d->opt.nrcpts_relay);
    tls_free(d);
    commit_close(d->commit);
    queue_close(d->outq);
    free(d);
}

int
main(int argc, char **argv)
{
    smtpd *d = (smtpd *)calloc(1, sizeof *d);
    int rc;
    if (d == NULL) {
        perror("smtpd");
        return 1;
    }
    log_init("smtpd");
    parse_args(d, argc, argv);
    rc = setup(d);
    if (rc == 0)
        rc = loop_run(d);
    if (rc == 0)
        stop(d);
    smtpd_free(d);
    return rc;
}
