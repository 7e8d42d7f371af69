/* SPDX-License-Identifier: MIT
 *
 * smtpd.c - a real SMTP server on llsmtp: one poll() event loop,
 * non-blocking sockets, a durable spool (each message written under
 * DIR/tmp, fsync'ed and linked into DIR before "250 ... Queued" is
 * sent, by commit.c's storage thread, which flushes a whole batch of
 * messages at once), local domains, RFC 5321 timeouts, graceful
 * shutdown. POSIX C.
 * The library does the protocol; this file does sockets, files, policy.
 */
#include "commit.h"
#include "queue.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_OPENSSL
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

#define MAX_LISTEN 8
#define MAX_DOMAINS 64
#define READ_BUF 65536
#define MAX_OWN 64 /* own addresses for user@[addr] */
#define ARG_SHOWN 200 /* octets of a command's argument in the log */
#define TEXT_SHOWN 300 /* octets of a reply's text in the log */
#define MEM_MSG (128 * 1024) /* a message up to this stays in memory */

typedef struct options {
    const char *listen[MAX_LISTEN]; /* "ADDR:PORT" (",proxy" cut off) */
    int listen_proxy[MAX_LISTEN];   /* that listener expects PROXY */
    char listen_buf[MAX_LISTEN][128];
    int nlisten;
    const char *hostname;
    const char *local_domains[MAX_DOMAINS];
    int nlocal;
    const char *relay_domains[MAX_DOMAINS];
    int nrelay;
    llsmtp_cidr relay_nets[MAX_DOMAINS];
    int nnets;
    llsmtp_cidr proxy_from[MAX_DOMAINS]; /* whose PROXY header counts */
    int nproxy_from;
    const char *spool;
    const char *tls_cert, *tls_key;
    const char *tls_ciphers; /* TLS 1.2 list (OpenSSL syntax) */
    int tls_min;             /* 12 or 13 */
    int discard, no_fsync, verbose, insecure_auth, proxy, lmtp;
    unsigned no_ext; /* extensions switched off with --no-... */
    char **users; /* "name:password" */
    size_t nusers;
    unsigned long long max_size;
    size_t max_rcpt;
    int max_clients;
    int timeout; /* seconds; 0 = RFC 5321 defaults from the library */
    int quiet_checks; /* --log-health-checks no */
    int proxy_timeout; /* seconds for the PROXY header */
    int drain_timeout; /* seconds sessions may finish after SIGTERM */
    unsigned max_hops; /* Received: headers before 554 5.4.6 */
    /* Recipient verification (Postfix's local_recipient_maps and
     * relay_recipient_maps): lower-case "local@domain" and "@domain"
     * entries, sorted; NULL when not asked for. */
    char **rcpts_local, **rcpts_relay;
    size_t nrcpts_local, nrcpts_relay;
    int verify_local, verify_relay;
    queue_conf q; /* onward delivery (queue.c) */
    const char *dns;
} options;

typedef struct conn {
    int fd;
    unsigned long sid;  /* "session=N": never reused while smtpd runs */
    llsmtp_server *s;
    char peer[64];      /* the client (the PROXY header's, if any) */
    char via[64];       /* behind a balancer: the balancer's address */
    char *held;         /* log lines held back: a health check's, maybe */
    size_t held_len;
    int hold;           /* a check's: lines go to held (see slogf_) */
    char helo[256];
    int is_ehlo;
    char auth_user[256]; /* who authenticated, or "" */
    char *sender;       /* reverse path of the transaction */
    char **rcpts;       /* forward paths */
    char *relay;        /* per recipient: 1 relayed, 0 local */
    char **rcpt_params; /* per recipient: its ESMTP parameters */
    size_t nrcpt, rcpt_cap;
    char *params;       /* MAIL parameters as text */
    int write_errno;    /* why storing the message failed, or 0 */
    FILE *msg;          /* the message while receiving: in memory (mem),
                           or past MEM_MSG octets DIR/tmp/<id>.eml */
    int mem;            /* msg writes to mbuf (open_memstream) */
    char *mbuf;
    size_t mlen;
    commit_job *job;    /* the message being stored (commit.c), or NULL */
    char id[40];
    char *pending;      /* input not yet consumed (BLOCKED) */
    size_t pending_len;
    time_t deadline;
    int closing;        /* flush output, then close */
    int tls;            /* TLS_NONE .. TLS_ON */
    unsigned hops;      /* Received: headers in the message so far */
    char rcpt_text[600]; /* a refusal's text, kept for the library */
    /* ETRN: a child process scans the queue (reading every envelope
     * would stall every session); its ids come through this pipe. */
    int etrn_fd;        /* -1 when none */
    size_t etrn_pi;     /* its place in this round's poll set */
    char *etrn_buf;
    size_t etrn_len, etrn_cap;
    char etrn_node[256];
    unsigned char hdr_pos; /* header scan: see count_hops */
    short ssl_want;     /* poll events the TLS layer waits for */
    int tls_dead;       /* a fatal TLS error: no close_notify then */
    int proxied;        /* came to a PROXY listener */
    int spoke;          /* the client's first octets came */
    int awaiting_header; /* its PROXY header is not complete yet */
    long long header_deadline; /* mono_ms() */
    unsigned char hdr_seen[16]; /* the header's first octets: why it */
    size_t hdr_seen_n;          /* was refused, for the log */
    int drained;                /* told the drain's 421 4.3.2 */
#ifdef HAVE_OPENSSL
    SSL *ssl;
#endif
} conn;

/* STARTTLS progress of a connection. */
enum { TLS_NONE = 0, TLS_FLUSH, TLS_HANDSHAKE, TLS_ON };

static options opt;
static int lfds[MAX_LISTEN];
static llsmtp_config cfg, cfg_proxy; /* cfg_proxy: PROXY listeners' */
static llsmtp_relay_policy policy;
static conn **conns;
static size_t nconns, conns_cap;
static volatile sig_atomic_t stop_flag;
/* The self-pipe: the signal handler writes a byte, the loop polls the read
 * end, so a signal that comes between the loop's look at stop_flag and
 * poll() still wakes it (else poll could wait forever). */
static int sig_pipe[2] = {-1, -1};
/* The drain has begun (the loop saw stop_flag and closed the listeners):
 * stop_flag itself may come in the middle of a round. */
static int draining;
/* Sessions told 421 4.3.2 by the drain, at a boundary: "N sessions
 * drained" (one that quits on its own, or never sent its PROXY header,
 * is neither drained nor cut). */
static size_t ndrained;

static void
drain_told(conn *c)
{
    if (!c->drained)
        ndrained++;
    c->drained = 1;
}
#ifdef HAVE_OPENSSL
static SSL_CTX *tls_ctx;
#endif
static unsigned long id_counter;
static unsigned long next_sid; /* the last session's id */
/* TLS 1.2: forward secrecy and AEAD only, in the server's order (no CBC:
 * LUCKY13, no RSA key exchange, no SHA-1 MAC); TLS 1.3 keeps OpenSSL's
 * defaults, all AEAD. */
#define TLS_CIPHERS                                                          \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"             \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"             \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
static llsmtp_ip own_addrs[MAX_OWN];
static size_t nown;

/* The log's prefix is cached: the time string changes once a second and
 * the pid only in a queue runner (runner_setup resets it), and both
 * cost more than the line itself when a message has 50 recipients. */
static long log_pid;
static time_t log_sec = -1;
static char log_ts[32];

/* Milliseconds on a clock that never jumps: the PROXY header's and the
 * drain's deadlines (whole seconds of time() fired up to 1 s early). */
static long long
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long
self_pid(void)
{
    if (log_pid == 0)
        log_pid = (long)getpid();
    return log_pid;
}

static const char *
log_stamp(void)
{
    time_t now = time(NULL);
    if (now != log_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(log_ts, sizeof log_ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
        log_sec = now;
    }
    return log_ts;
}

static void
logf_(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s smtpd[%ld]: ", log_stamp(), self_pid());
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

#define HELD_MAX 16384 /* a session that logs more is not a check */

/* The held lines of a session, out in the log now; no more holding. */
static void
log_release(struct conn *c)
{
    if (c->held != NULL)
        fwrite(c->held, 1, c->held_len, stderr);
    free(c->held);
    c->held = NULL;
    c->held_len = 0;
    c->hold = 0;
}

/* A session's log line. --log-health-checks no: a session on a PROXY
 * listener whose header named no client (v2 LOCAL, v1 UNKNOWN: the
 * balancer's own check, e.g. HAProxy's "option smtpchk") keeps its lines
 * while it says only EHLO/HELO/NOOP/RSET/QUIT and hears no 4xx/5xx
 * (see on_reply); they are dropped if it ends so. */
static void
slogf_(struct conn *c, const char *fmt, ...)
{
    va_list ap;
    char line[1024];
    int n, m;
    char *h;
    va_start(ap, fmt);
    if (!c->hold) {
        fprintf(stderr, "%s smtpd[%ld]: ", log_stamp(), self_pid());
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        return;
    }
    n = snprintf(line, sizeof line, "%s smtpd[%ld]: ", log_stamp(),
                 self_pid());
    m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += (size_t)m < sizeof line - (size_t)n - 1
             ? m
             : (int)(sizeof line - (size_t)n - 2);
    line[n++] = '\n';
    h = c->held_len + (size_t)n <= HELD_MAX
            ? realloc(c->held, c->held_len + (size_t)n)
            : NULL;
    if (h == NULL) {
        log_release(c);
        fwrite(line, 1, (size_t)n, stderr);
        return;
    }
    memcpy(h + c->held_len, line, (size_t)n);
    c->held = h;
    c->held_len += (size_t)n;
}

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
           v & 0xff,
#ifdef HAVE_OPENSSL
           OpenSSL_version(OPENSSL_VERSION)
#else
           "none"
#endif
    );
}

static void
die_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "smtpd: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(2);
}

static void
add_user(const char *spec, const char *where)
{
    char **v;
    const char *colon = strchr(spec, ':');
    if (colon == NULL || colon == spec || colon[1] == '\0')
        die_usage("bad user %s (want NAME:PASSWORD)", where);
    v = realloc(opt.users, (opt.nusers + 1) * sizeof *v);
    if (v == NULL || (v[opt.nusers] = strdup(spec)) == NULL) {
        perror("smtpd");
        exit(1);
    }
    opt.users = v;
    opt.nusers++;
}

static void
read_users(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    if (f == NULL) {
        fprintf(stderr, "smtpd: cannot read --users %s: %s\n", path,
                strerror(errno));
        exit(2);
    }
    while (fgets(line, sizeof line, f)) {
        size_t n = strcspn(line, "\r\n");
        line[n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        add_user(line, path);
    }
    fclose(f);
}

/* ASCII lower case in place (never tolower: locales). */
static void
ascii_lower(char *p)
{
    for (; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* --recipients / --relay-recipients FILE: "user@domain" or "@domain"
 * lines, '#' comments, blank lines; kept lower-case and sorted. */
static void
read_recipients(const char *opt_name, const char *path, char ***out,
                size_t *n)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    unsigned lineno = 0;
    if (f == NULL) {
        fprintf(stderr, "smtpd: cannot read %s %s: %s\n", opt_name, path,
                strerror(errno));
        exit(2);
    }
    while (fgets(line, sizeof line, f)) {
        char *p = line, *e, *at, **v;
        lineno++;
        p[strcspn(p, "\r\n#")] = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        e = p + strlen(p);
        while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
            *--e = '\0';
        if (*p == '\0')
            continue;
        at = strrchr(p, '@');
        if (at == NULL || at[1] == '\0' || strchr(p, ' ') != NULL) {
            fprintf(stderr, "smtpd: %s %s line %u: want user@domain or "
                            "@domain, not \"%s\"\n",
                    opt_name, path, lineno, p);
            exit(2);
        }
        ascii_lower(p);
        v = realloc(*out, (*n + 1) * sizeof *v);
        if (v == NULL || (v[*n] = strdup(p)) == NULL) {
            perror("smtpd");
            exit(1);
        }
        *out = v;
        (*n)++;
    }
    fclose(f);
    if (*n > 1)
        qsort(*out, *n, sizeof **out, cmp_str);
}

static int
rcpt_listed(char **v, size_t n, const char *key)
{
    return n > 0 && bsearch(&key, v, n, sizeof *v, cmp_str) != NULL;
}

static unsigned long long
parse_num(const char *name, const char *v)
{
    char *end;
    unsigned long long n;
    errno = 0;
    if (v == NULL || *v < '0' || *v > '9')
        die_usage("bad value for %s", name);
    n = strtoull(v, &end, 10);
    if (errno || *end)
        die_usage("bad value for %s", name);
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
        die_usage("bad time for %s", name);
    n = strtoul(v, &end, 10);
    if (errno || n > 100000000UL)
        die_usage("bad time for %s", name);
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
        die_usage("bad time for %s", name);
    /* the queue adds durations to times and keeps them in 32 bits: what
     * does not fit must not wrap into a short delay */
    if (n > (unsigned long)INT_MAX) {
        fprintf(stderr, "smtpd: %s %s is too long (at most %d seconds, "
                "about 68 years)\n", name, v, INT_MAX);
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
        fprintf(stderr, "smtpd: %s %s is out of range (%lld..%lld)\n", name,
                v, min, max);
        exit(2);
    }
    return (int)n;
}

static void
parse_retry(const char *v)
{
    char buf[512], *tok, *save = NULL;
    if (strlen(v) >= sizeof buf)
        die_usage("bad --retry %s", v);
    strcpy(buf, v);
    opt.q.nretry = 0;
    for (tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (opt.q.nretry == QUEUE_RETRY_MAX)
            die_usage("too many --retry delays in %s", v);
        opt.q.retry[opt.q.nretry++] = (unsigned)parse_time("--retry", tok);
    }
    if (opt.q.nretry == 0)
        die_usage("bad --retry %s", v);
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
choose_hostname(const char *given)
{
    static char host[256];
    const char *why = NULL;
    size_t n;
    if (given != NULL) {
        if (!hostname_ok(given, &why)) {
            fprintf(stderr, "smtpd: --hostname %s is refused: %s\n", given,
                    why != NULL ? why : "invalid");
            exit(2);
        }
        return given;
    }
    if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0')
        return "localhost";
    host[sizeof host - 1] = '\0';
    n = strlen(host);
    if (n > 1 && host[n - 1] == '.')
        host[n - 1] = '\0';
    if (!hostname_ok(host, &why)) {
        fprintf(stderr,
                "smtpd: warning: this host's name \"%s\" is refused (%s): "
                "going by \"localhost\"; give --hostname NAME\n",
                host, why != NULL ? why : "invalid");
        return "localhost";
    }
    return host;
}

static void
parse_args(int argc, char **argv)
{
    int i;
    memset(&opt, 0, sizeof opt);
    opt.spool = "./spool";
    opt.max_size = 10485760;
    opt.max_rcpt = 1000;
    opt.max_clients = 1000;
    opt.max_hops = 50; /* Postfix's hopcount_limit */
    opt.proxy_timeout = 5; /* a balancer sends it at once */
    opt.drain_timeout = 30; /* within Kubernetes' default 30 s grace */
    opt.tls_ciphers = TLS_CIPHERS;
    opt.tls_min = 12;
    parse_retry("5m,10m,20m,40m,1h,2h,4h");
    opt.q.max_queue_time = 5UL * 24 * 3600;
    opt.q.mx_port = 25;
    opt.q.max_runners = 8;
    opt.q.bounce_size_limit = 50000;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV()                                                              \
    do {                                                                     \
        if (v == NULL)                                                       \
            die_usage("%s needs a value", a);                                \
        i++;                                                                 \
    } while (0)
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--version") == 0) {
            version();
            exit(0);
        } else if (strcmp(a, "--listen") == 0) {
            NEEDV();
            if (opt.nlisten == MAX_LISTEN)
                die_usage("too many %s", a);
            {
                /* "ADDR:PORT,proxy": behind a balancer, this one only */
                const char *comma = strchr(v, ',');
                char *b = opt.listen_buf[opt.nlisten];
                if (comma != NULL) {
                    if (strcmp(comma, ",proxy") != 0 ||
                        (size_t)(comma - v) >= sizeof opt.listen_buf[0])
                        die_usage("bad --listen %s (ADDR:PORT or "
                                  "ADDR:PORT,proxy)", v);
                    memcpy(b, v, (size_t)(comma - v));
                    b[comma - v] = '\0';
                    opt.listen_proxy[opt.nlisten] = 1;
                    v = b;
                }
            }
            opt.listen[opt.nlisten++] = v;
        } else if (strcmp(a, "--hostname") == 0) {
            NEEDV();
            opt.hostname = v;
        } else if (strcmp(a, "--local-domain") == 0) {
            NEEDV();
            if (opt.nlocal == MAX_DOMAINS)
                die_usage("too many %s", a);
            if (llsmtp_domain_check(v, strlen(v), 0) != LLSMTP_OK)
                die_usage("bad domain for --local-domain: %s", v);
            opt.local_domains[opt.nlocal++] = v;
        } else if (strcmp(a, "--relay-domain") == 0) {
            NEEDV();
            if (opt.nrelay == MAX_DOMAINS)
                die_usage("too many %s", a);
            if (llsmtp_domain_check(v[0] == '.' ? v + 1 : v,
                                    strlen(v) - (v[0] == '.'), 0) !=
                LLSMTP_OK)
                die_usage("bad domain for --relay-domain: %s", v);
            opt.relay_domains[opt.nrelay++] = v;
        } else if (strcmp(a, "--relay-net") == 0) {
            int rc;
            NEEDV();
            if (opt.nnets == MAX_DOMAINS)
                die_usage("too many %s", a);
            rc = llsmtp_cidr_parse(v, strlen(v), &opt.relay_nets[opt.nnets]);
            if (rc != LLSMTP_OK) {
                fprintf(stderr, "smtpd: bad --relay-net %s: %s\n", v,
                        llsmtp_strerror(rc));
                exit(2);
            }
            opt.nnets++;
        } else if (strcmp(a, "--user") == 0) {
            NEEDV();
            add_user(v, "given to --user");
        } else if (strcmp(a, "--users") == 0) {
            NEEDV();
            read_users(v);
        } else if (strcmp(a, "--recipients") == 0) {
            NEEDV();
            read_recipients(a, v, &opt.rcpts_local, &opt.nrcpts_local);
            opt.verify_local = 1;
        } else if (strcmp(a, "--relay-recipients") == 0) {
            NEEDV();
            read_recipients(a, v, &opt.rcpts_relay, &opt.nrcpts_relay);
            opt.verify_relay = 1;
        } else if (strcmp(a, "--insecure-auth") == 0) {
            opt.insecure_auth = 1;
        } else if (strcmp(a, "--lmtp") == 0) {
            opt.lmtp = 1;
        } else if (strcmp(a, "--proxy-protocol") == 0) {
            opt.proxy = 1;
        } else if (strcmp(a, "--proxy-timeout") == 0) {
            NEEDV();
            opt.proxy_timeout = (int)parse_time(a, v);
        } else if (strcmp(a, "--drain-timeout") == 0) {
            NEEDV();
            opt.drain_timeout = (int)parse_time(a, v);
        } else if (strcmp(a, "--proxy-from") == 0) {
            int rc;
            NEEDV();
            if (opt.nproxy_from == MAX_DOMAINS)
                die_usage("too many %s", a);
            rc = llsmtp_cidr_parse(v, strlen(v),
                                   &opt.proxy_from[opt.nproxy_from]);
            if (rc != LLSMTP_OK) {
                fprintf(stderr, "smtpd: bad --proxy-from %s: %s\n", v,
                        llsmtp_strerror(rc));
                exit(2);
            }
            if (opt.proxy_from[opt.nproxy_from].bits == 0)
                fprintf(stderr, "smtpd: warning: --proxy-from %s trusts "
                                "every address: whoever reaches a PROXY "
                                "listener can claim any client address "
                                "(a --relay-net one too)\n",
                        v);
            opt.nproxy_from++;
        } else if (strcmp(a, "--no-chunking") == 0) {
            opt.no_ext |= LLSMTP_EXT_CHUNKING | LLSMTP_EXT_BINARYMIME;
        } else if (strcmp(a, "--no-binarymime") == 0) {
            opt.no_ext |= LLSMTP_EXT_BINARYMIME;
        } else if (strcmp(a, "--no-dsn") == 0) {
            opt.no_ext |= LLSMTP_EXT_DSN;
        } else if (strcmp(a, "--no-smtputf8") == 0) {
            opt.no_ext |= LLSMTP_EXT_SMTPUTF8;
        } else if (strcmp(a, "--no-etrn") == 0) {
            opt.no_ext |= LLSMTP_EXT_ETRN;
        } else if (strcmp(a, "--tls-cert") == 0) {
            NEEDV();
            opt.tls_cert = v;
        } else if (strcmp(a, "--tls-ciphers") == 0) {
            NEEDV();
            opt.tls_ciphers = v;
        } else if (strcmp(a, "--tls-min") == 0) {
            NEEDV();
            if (strcmp(v, "1.2") == 0)
                opt.tls_min = 12;
            else if (strcmp(v, "1.3") == 0)
                opt.tls_min = 13;
            else
                die_usage("bad --tls-min %s (1.2 or 1.3)", v);
        } else if (strcmp(a, "--tls-key") == 0) {
            NEEDV();
            opt.tls_key = v;
        } else if (strcmp(a, "--smarthost") == 0) {
            llsmtp_relayhost rh;
            NEEDV();
            if (llsmtp_relayhost_parse(v, strlen(v), &rh, NULL) != LLSMTP_OK)
                die_usage("bad --smarthost %s (HOST:PORT or [HOST]:PORT)", v);
            opt.q.smarthost = v;
        } else if (strcmp(a, "--dns") == 0) {
            NEEDV();
            if (route_dns_set(&opt.q.dns, v) != 0)
                die_usage("bad --dns %s (an address, e.g. 127.0.0.1:53)", v);
            opt.dns = v;
        } else if (strcmp(a, "--mx-port") == 0) {
            NEEDV();
            opt.q.mx_port = (unsigned)parse_int(a, v, 1, 65535);
        } else if (strcmp(a, "--retry") == 0) {
            NEEDV();
            parse_retry(v);
        } else if (strcmp(a, "--max-queue-time") == 0) {
            NEEDV();
            opt.q.max_queue_time = parse_time(a, v);
        } else if (strcmp(a, "--next-hop-tls") == 0) {
            NEEDV();
            if (strcmp(v, "may") == 0)
                opt.q.tls = 0;
            else if (strcmp(v, "encrypt") == 0)
                opt.q.tls = 1;
            else if (strcmp(v, "verify") == 0)
                opt.q.tls = 2;
            else
                die_usage("bad --next-hop-tls %s (may, encrypt or verify)", v);
        } else if (strcmp(a, "--next-hop-ca") == 0) {
            NEEDV();
            opt.q.ca_file = v;
        } else if (strcmp(a, "--runners") == 0) {
            NEEDV();
            opt.q.max_runners = parse_int(a, v, 1, 1000);
        } else if (strcmp(a, "--bounce-size-limit") == 0) {
            NEEDV();
            opt.q.bounce_size_limit = (size_t)parse_int(a, v, 0, INT_MAX);
        } else if (strcmp(a, "--spool") == 0) {
            NEEDV();
            opt.spool = v;
        } else if (strcmp(a, "--discard") == 0) {
            opt.discard = 1;
        } else if (strcmp(a, "--no-fsync") == 0) {
            opt.no_fsync = 1;
        } else if (strcmp(a, "--verbose") == 0) {
            opt.verbose = 1;
        } else if (strcmp(a, "--log-health-checks") == 0) {
            NEEDV();
            if (strcmp(v, "yes") == 0)
                opt.quiet_checks = 0;
            else if (strcmp(v, "no") == 0)
                opt.quiet_checks = 1;
            else
                die_usage("bad --log-health-checks %s (yes or no)", v);
        } else if (strcmp(a, "--max-size") == 0) {
            NEEDV();
            opt.max_size = parse_num(a, v);
        } else if (strcmp(a, "--max-rcpt") == 0) {
            NEEDV();
            opt.max_rcpt = (size_t)parse_num(a, v);
            if (opt.max_rcpt < 100)
                die_usage("%s must be at least 100 (RFC 5321 4.5.3.1.8)", a);
        } else if (strcmp(a, "--max-clients") == 0) {
            NEEDV();
            opt.max_clients = parse_int(a, v, 1, 1000000);
        } else if (strcmp(a, "--max-hops") == 0) {
            NEEDV();
            opt.max_hops = (unsigned)parse_int(a, v, 1, 10000);
        } else if (strcmp(a, "--timeout") == 0) {
            NEEDV();
            opt.timeout = parse_int(a, v, 1, 86400 * 365);
        } else {
            die_usage("unknown option %s (see --help)", a);
        }
#undef NEEDV
    }
    if ((opt.tls_cert == NULL) != (opt.tls_key == NULL))
        die_usage("--tls-cert and --tls-key go together%s", "");
    /* A PROXY header names any client it likes: believed from anyone,
     * it makes whoever reaches the port a --relay-net client. */
    if (opt.nlisten == 0)
        opt.listen[opt.nlisten++] = "127.0.0.1:2525";
    for (i = 0; i < opt.nlisten; i++) {
        if (opt.proxy) /* the old switch: every listener */
            opt.listen_proxy[i] = 1;
        if (opt.listen_proxy[i] && opt.nproxy_from == 0)
            die_usage("PROXY protocol needs --proxy-from CIDR: the "
                      "balancers whose header is believed%s", "");
    }
#ifndef HAVE_OPENSSL
    if (opt.q.tls != 0)
        die_usage("built without OpenSSL: %s is not available",
                  "--next-hop-tls encrypt/verify");
    if (opt.tls_cert != NULL)
        die_usage("built without OpenSSL: %s is not available "
                  "(install libssl-dev and rebuild)", "--tls-cert");
#endif
    opt.hostname = choose_hostname(opt.hostname);
    if (opt.nlocal == 0) {
        /* like Postfix's mydestination: this host's own names */
        opt.local_domains[opt.nlocal++] = opt.hostname;
        opt.local_domains[opt.nlocal++] = "localhost";
    }
}

/* ---- listening ------------------------------------------------------ */

static void
own_add(const struct sockaddr *sa)
{
    llsmtp_ip ip;
    size_t i;
    memset(&ip, 0, sizeof ip);
    if (sa == NULL || nown == MAX_OWN)
        return;
    if (sa->sa_family == AF_INET) {
        ip.family = 4;
        memcpy(ip.addr, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        ip.family = 6;
        memcpy(ip.addr,
               &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
    } else {
        return;
    }
    for (i = 0; i < nown; i++)
        if (memcmp(&own_addrs[i], &ip, sizeof ip) == 0)
            return;
    own_addrs[nown++] = ip;
}

/* RFC 5321 4.1.3: user@[addr] is local when addr is this server's: the
 * address it listens on or, for a wildcard listener, every address of
 * the host's interfaces of that family. */
static void
own_from_listener(const struct sockaddr_storage *ss)
{
    static const unsigned char any6[16];
    int wild = 0;
    if (ss->ss_family == AF_INET)
        wild = ((const struct sockaddr_in *)(const void *)ss)->sin_addr.s_addr ==
               htonl(INADDR_ANY);
    else if (ss->ss_family == AF_INET6)
        wild = memcmp(&((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr,
                      any6, 16) == 0;
    if (!wild) {
        own_add((const struct sockaddr *)(const void *)ss);
        return;
    }
    {
        struct ifaddrs *ifa, *i;
        if (getifaddrs(&ifa) != 0) {
            fprintf(stderr, "smtpd: getifaddrs: %s (own address literals "
                            "not known)\n", strerror(errno));
            return;
        }
        for (i = ifa; i != NULL; i = i->ifa_next)
            if (i->ifa_addr != NULL && i->ifa_addr->sa_family == ss->ss_family)
                own_add(i->ifa_addr);
        freeifaddrs(ifa);
    }
}

/* How many times bind() is tried, 100 ms apart, while the address is in
 * use (see open_listener). */
#define BIND_TRIES 50

static int
open_listener(const char *spec)
{
    char host[128];
    const char *colon, *port;
    struct sockaddr_storage ss;
    socklen_t sl;
    int fd, one = 1, tries;
    long p;
    char *end;
    memset(&ss, 0, sizeof ss);
    if (spec[0] == '[') {
        const char *rb = strchr(spec, ']');
        if (rb == NULL || rb[1] != ':' || (size_t)(rb - spec - 1) >= sizeof host)
            die_usage("bad --listen %s", spec);
        memcpy(host, spec + 1, (size_t)(rb - spec - 1));
        host[rb - spec - 1] = '\0';
        port = rb + 2;
    } else {
        colon = strrchr(spec, ':');
        if (colon == NULL || (size_t)(colon - spec) >= sizeof host)
            die_usage("bad --listen %s", spec);
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
        port = colon + 1;
    }
    p = strtol(port, &end, 10);
    if (*port == '\0' || *end || p < 0 || p > 65535)
        die_usage("bad port in --listen %s", spec);
    if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)p);
        sl = sizeof *sin;
    } else if (inet_pton(AF_INET6, host,
                         &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)p);
        sl = sizeof *sin6;
    } else {
        die_usage("bad address in --listen %s (give an IP address)", spec);
        return -1;
    }
    fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0) {
        perror("smtpd: socket");
        exit(1);
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    /* A restart after a kill -9 can find the port still taken by the
     * dead server's socket: a child forked just before the kill holds a
     * copy until it closes it (runner_setup) or dies, which is a matter
     * of moments; there is no way to fork without the descriptors.
     * Refusing at once would leave the spool without a server, so the
     * port is asked for again for a few seconds. */
    for (tries = 0;; tries++) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        if (bind(fd, (struct sockaddr *)&ss, sl) == 0)
            break;
        if (errno != EADDRINUSE || tries == BIND_TRIES) {
            fprintf(stderr, "smtpd: cannot listen on %s: %s\n", spec,
                    strerror(errno));
            exit(1);
        }
        if (tries == 0)
            fprintf(stderr, "smtpd: %s is in use; trying again for %ds\n",
                    spec, BIND_TRIES / 10);
        nanosleep(&ts, NULL);
    }
    if (listen(fd, 511) != 0) {
        fprintf(stderr, "smtpd: cannot listen on %s: %s\n", spec,
                strerror(errno));
        exit(1);
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    own_from_listener(&ss);
    return fd;
}

/* ---- spool ------------------------------------------------------------ */

static void
new_id(char *buf, size_t n)
{
    /* Unique across restarts: time, pid and a counter, and 40 random
     * bits, since a restart in the same second can have the same pid
     * (pid 1 in a container) and starts the counter again. */
    unsigned char r[5] = {0, 0, 0, 0, 0};
    if (route_random(r, sizeof r) != 0)
        r[0] = (unsigned char)clock(); /* the files are made O_EXCL too */
    snprintf(buf, n, "%08lX%06lX%04lX%02X%02X%02X%02X%02X",
             (unsigned long)time(NULL), (unsigned long)self_pid() & 0xffffff,
             id_counter++ & 0xffff, r[0], r[1], r[2], r[3], r[4]);
}

static void
tmp_path(char *buf, size_t n, const conn *c, const char *ext)
{
    snprintf(buf, n, "%s/tmp/%s.%s", opt.spool, c->id, ext);
}

static void
drop_message(conn *c)
{
    char path[4096];
    if (c->msg != NULL) {
        fclose(c->msg);
        c->msg = NULL;
        if (c->mem) {
            free(c->mbuf);
            c->mbuf = NULL;
            c->mem = 0;
        } else {
            tmp_path(path, sizeof path, c, "eml");
            unlink(path);
        }
    }
}

/* A message grown past MEM_MSG goes on in DIR/tmp/<id>.eml (a file of
 * its own, never another message's: O_EXCL). Smaller ones never make a
 * file here: creating one can wait for the disk (the file system's
 * journal), and the poll loop must not; commit.c's thread makes it. */
static int
spill_message(conn *c)
{
    char path[4096];
    FILE *f = NULL;
    int fd, ok;
    if (fflush(c->msg) != 0)
        return -1;
    tmp_path(path, sizeof path, c, "eml");
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0640);
    if (fd >= 0 && (f = fdopen(fd, "wb")) == NULL) {
        close(fd);
        unlink(path);
    }
    if (f == NULL)
        return -1;
    setvbuf(f, NULL, _IOFBF, 65536);
    ok = fwrite(c->mbuf, 1, c->mlen, f) == c->mlen;
    fclose(c->msg);
    free(c->mbuf);
    c->mbuf = NULL;
    c->mem = 0;
    c->msg = f; /* dropped (and unlinked) with the file's name */
    return ok ? 0 : -1;
}

static void
free_tx(conn *c)
{
    size_t i;
    drop_message(c);
    free(c->sender);
    c->sender = NULL;
    free(c->params);
    c->params = NULL;
    for (i = 0; i < c->nrcpt; i++) {
        free(c->rcpts[i]);
        free(c->rcpt_params[i]);
    }
    c->nrcpt = 0;
}

static char *
dupspan(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s == NULL)
        return NULL;
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* ---- callbacks ---------------------------------------------------------- */

#define CONN(s) ((conn *)llsmtp_server_user(s))

static int
on_helo(llsmtp_server *s, llsmtp_span d, int is_ehlo, llsmtp_reply *r)
{
    conn *c = CONN(s);
    (void)r;
    snprintf(c->helo, sizeof c->helo, "%.*s", (int)d.n, d.p);
    c->is_ehlo = is_ehlo;
    free_tx(c);
    slogf_(c, "session=%lu helo=%s", c->sid, c->helo);
    return LLSMTP_CB_OK;
}

/* "KEY=VALUE KEY" as given, for the envelope file. */
static char *
params_text(const llsmtp_params *ps)
{
    size_t i, len = 0;
    char *t;
    for (i = 0; i < ps->n; i++)
        len += ps->v[i].key.n + ps->v[i].value.n + 2;
    t = malloc(len + 1);
    if (t == NULL)
        return NULL;
    t[0] = '\0';
    for (i = 0; i < ps->n; i++) {
        size_t o = strlen(t);
        snprintf(t + o, len + 1 - o, "%s%.*s%s%.*s", o ? " " : "",
                 (int)ps->v[i].key.n, ps->v[i].key.p,
                 ps->v[i].value.p ? "=" : "", (int)ps->v[i].value.n,
                 ps->v[i].value.p ? ps->v[i].value.p : "");
    }
    return t;
}

static int
on_mail(llsmtp_server *s, const llsmtp_path *from, const llsmtp_params *ps,
        llsmtp_reply *r)
{
    conn *c = CONN(s);
    free_tx(c);
    if (draining) {
        /* draining: no new transaction (a pipelined MAIL after the last
         * message's reply); 421 closes the session */
        static char text[300];
        snprintf(text, sizeof text, "%s Service shutting down",
                 opt.hostname);
        llsmtp_reply_set(r, 421, "4.3.2", text);
        drain_told(c);
        return LLSMTP_CB_OK;
    }
    c->sender = dupspan(from->mailbox.p, from->mailbox.n);
    c->params = params_text(ps);
    if (c->sender == NULL || c->params == NULL)
        return LLSMTP_CB_FAIL;
    log_release(c); /* not a health check */
    logf_("session=%lu mail=<%s>", c->sid, c->sender);
    return LLSMTP_CB_OK;
}

/* Whether domain (not NUL-terminated) is one of list, as the relay
 * policy matches: case-insensitive, ".d" for every subdomain of d. */
static int
domain_in(const char *d, size_t dn, const char *const *list, int n)
{
    int i;
    for (i = 0; i < n; i++) {
        const char *e = list[i];
        size_t en = strlen(e);
        if (e[0] == '.' ? dn > en && strncasecmp(d + dn - en, e, en) == 0
                        : dn == en && strncasecmp(d, e, en) == 0)
            return 1;
    }
    return 0;
}

/* Recipient verification, as Postfix's local_recipient_maps and
 * relay_recipient_maps: with --recipients a local recipient must be
 * listed (or its domain listed as "@domain", or its local part be a
 * --user name, or be postmaster: RFC 5321 4.5.1); with
 * --relay-recipients the same for the relay domains. Domains and local
 * parts compare case-insensitively (ASCII), as Postfix's tables do.
 * Returns 1 for a known recipient. */
/* RFC 5321 4.1.2: "alice"@d and alice@d name one mailbox. A quoted local
 * part at the start of key (ln octets) whose content is a plain
 * dot-string is rewritten unquoted in place (the rest of key moves up);
 * returns the local part's new length. Anything else stays as written. */
static size_t
unquote_local(char *key, size_t ln)
{
    size_t i;
    int dot = 1; /* the previous octet was a dot (or the start) */
    if (ln < 3 || key[0] != '"' || key[ln - 1] != '"')
        return ln;
    for (i = 1; i + 1 < ln; i++) {
        unsigned char ch = (unsigned char)key[i];
        if (ch == '.') {
            if (dot)
                return ln;
            dot = 1;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   (ch >= '0' && ch <= '9') ||
                   (ch != 0 && strchr("!#$%&'*+-/=?^_`{|}~", ch))) {
            dot = 0;
        } else {
            return ln; /* needs its quotes: keep them */
        }
    }
    if (dot)
        return ln;
    memmove(key, key + 1, ln - 2);
    memmove(key + ln - 2, key + ln, strlen(key + ln) + 1);
    return ln - 2;
}

static int
rcpt_known(const llsmtp_path *to, int relay)
{
    char key[600], *at;
    size_t i, ln = to->local.n;
    if (to->flags & LLSMTP_PATH_POSTMASTER)
        return 1;
    if (to->mailbox.n + 2 > sizeof key)
        return 0;
    if (relay) {
        /* only the relay domains' recipients are known here; mail that
         * a trusted or authenticated client relays elsewhere is theirs */
        if (!opt.verify_relay ||
            !domain_in(to->domain.p, to->domain.n, opt.relay_domains,
                       opt.nrelay))
            return 1;
    } else if (!opt.verify_local) {
        return 1;
    }
    snprintf(key, sizeof key, "%.*s", (int)to->mailbox.n, to->mailbox.p);
    ln = unquote_local(key, ln);
    ascii_lower(key);
    at = key + ln; /* local part (unquoted when it can be), then "@domain" */
    if (*at != '@')
        return 0;
    if (relay)
        return rcpt_listed(opt.rcpts_relay, opt.nrcpts_relay, key) ||
               rcpt_listed(opt.rcpts_relay, opt.nrcpts_relay, at);
    if (ln == 10 && strncmp(key, "postmaster", 10) == 0)
        return 1;
    for (i = 0; i < opt.nusers; i++) {
        const char *u = opt.users[i];
        size_t un = strcspn(u, ":");
        if ((un == ln && strncasecmp(u, key, ln) == 0) ||
            (un == strlen(key) && strncasecmp(u, key, un) == 0))
            return 1;
    }
    if (to->flags & LLSMTP_PATH_LITERAL) {
        /* user@[own address]: the local part in any local domain */
        for (i = 0; i < opt.nrcpts_local; i++) {
            const char *e = opt.rcpts_local[i];
            if (strncmp(e, key, ln) == 0 && e[ln] == '@')
                return 1;
        }
        return 0;
    }
    return rcpt_listed(opt.rcpts_local, opt.nrcpts_local, key) ||
           rcpt_listed(opt.rcpts_local, opt.nrcpts_local, at);
}

static int
on_rcpt(llsmtp_server *s, const llsmtp_path *to, const llsmtp_params *ps,
        llsmtp_reply *r)
{
    conn *c = CONN(s);
    /* The library's relay policy already refused recipients we may not
     * take (and then this callback is not called). */
    int relay = llsmtp_server_rcpt_verdict(s) == LLSMTP_RELAY_ALLOWED;
    if (!rcpt_known(to, relay)) {
        /* refused here, not bounced later: no backscatter */
        snprintf(c->rcpt_text, sizeof c->rcpt_text,
                 "<%.*s>: Recipient address rejected: User unknown",
                 (int)to->mailbox.n, to->mailbox.p);
        llsmtp_reply_set(r, 550, "5.1.1", c->rcpt_text);
        return LLSMTP_CB_OK;
    }
    if (c->nrcpt == c->rcpt_cap) {
        size_t cap = c->rcpt_cap ? c->rcpt_cap * 2 : 4;
        char **v = realloc(c->rcpts, cap * sizeof *v);
        char *rl;
        if (v == NULL)
            return LLSMTP_CB_FAIL;
        c->rcpts = v;
        rl = realloc(c->relay, cap);
        if (rl == NULL)
            return LLSMTP_CB_FAIL;
        c->relay = rl;
        v = realloc(c->rcpt_params, cap * sizeof *v);
        if (v == NULL)
            return LLSMTP_CB_FAIL;
        c->rcpt_params = v;
        c->rcpt_cap = cap;
    }
    c->rcpts[c->nrcpt] = dupspan(to->mailbox.p, to->mailbox.n);
    c->rcpt_params[c->nrcpt] = params_text(ps);
    if (c->rcpts[c->nrcpt] == NULL || c->rcpt_params[c->nrcpt] == NULL) {
        free(c->rcpts[c->nrcpt]);
        free(c->rcpt_params[c->nrcpt]);
        return LLSMTP_CB_FAIL;
    }
    c->relay[c->nrcpt] = (char)relay;
    c->nrcpt++;
    logf_("session=%lu rcpt=<%.*s> accepted=%s", c->sid, (int)to->mailbox.n,
          to->mailbox.p, relay ? "relay" : "local");
    return LLSMTP_CB_OK;
}

static void
rfc5322_date(char *buf, size_t n)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, n, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

/* RFC 3848: ESMTP, ESMTPA (authenticated), ESMTPS (TLS), ESMTPSA. */
static const char *
protocol(const conn *c)
{
    int tls = llsmtp_server_tls_active(c->s), auth = c->auth_user[0] != 0;
    if (opt.lmtp)
        return tls ? (auth ? "LMTPSA" : "LMTPS") : (auth ? "LMTPA" : "LMTP");
    if (!c->is_ehlo)
        return "SMTP";
    return tls ? (auth ? "ESMTPSA" : "ESMTPS") : (auth ? "ESMTPA" : "ESMTP");
}

static int
on_data_start(llsmtp_server *s, llsmtp_reply *r)
{
    conn *c = CONN(s);
    char date[64];
    c->write_errno = 0;
    new_id(c->id, sizeof c->id);
    c->hops = 0;
    c->hdr_pos = 0;
    if (opt.discard)
        return LLSMTP_CB_OK;
    /* in memory first (spill_message) */
    c->mbuf = NULL;
    c->mlen = 0;
    c->msg = open_memstream(&c->mbuf, &c->mlen);
    if (c->msg == NULL) {
        logf_("session=%lu cannot queue: %s", c->sid, strerror(errno));
        llsmtp_reply_set(r, 451, "4.3.0", "Local error: cannot queue");
        return LLSMTP_CB_OK;
    }
    c->mem = 1;
    rfc5322_date(date, sizeof date);
    /* RFC 5321 4.4: trace information. */
    fprintf(c->msg, "Return-Path: <%s>\r\n", c->sender ? c->sender : "");
    fprintf(c->msg,
            "Received: from %s (%s)\r\n\tby %s with %s id %s",
            c->helo, c->peer, opt.hostname, protocol(c), c->id);
    if (c->nrcpt == 1)
        fprintf(c->msg, "\r\n\tfor <%s>", c->rcpts[0]);
    fprintf(c->msg, "; %s\r\n", date);
    return LLSMTP_CB_OK;
}

/* Header scan states besides 0..9 (that many octets of "received:"
 * matched at the start of a line). */
enum { HDR_SKIP = 10, HDR_CR = 11, HDR_DONE = 12 };

/* Counts the Received: headers (RFC 5321 6.3: a mail loop shows as too
 * many of them) up to the blank line that ends the header, across any
 * split of the message; folded lines and the body do not count. */
static void
count_hops(conn *c, const char *p, size_t n)
{
    static const char rcv[] = "received:";
    size_t i;
    for (i = 0; i < n && c->hdr_pos != HDR_DONE; i++) {
        char ch = p[i];
        if (ch == '\n') {
            c->hdr_pos = c->hdr_pos == 0 || c->hdr_pos == HDR_CR ? HDR_DONE : 0;
        } else if (c->hdr_pos == 0 && ch == '\r') {
            c->hdr_pos = HDR_CR;
        } else if (c->hdr_pos < 9) {
            if (c->hdr_pos == 8 && (ch == ' ' || ch == '\t'))
                continue; /* RFC 5322 4.5 obs-optional: "Received :" */
            if (ch >= 'A' && ch <= 'Z')
                ch = (char)(ch - 'A' + 'a');
            if (ch != rcv[c->hdr_pos])
                c->hdr_pos = HDR_SKIP;
            else if (++c->hdr_pos == 9) {
                c->hops++;
                c->hdr_pos = HDR_SKIP;
            }
        } else if (c->hdr_pos == HDR_CR) {
            c->hdr_pos = HDR_SKIP;
        }
    }
}

static int
on_data(llsmtp_server *s, const char *p, size_t n)
{
    conn *c = CONN(s);
    if (c->hdr_pos != HDR_DONE)
        count_hops(c, p, n);
    if (c->msg != NULL && c->mem && (size_t)ftell(c->msg) + n > MEM_MSG &&
        spill_message(c) != 0) {
        c->write_errno = errno;
        logf_("session=%lu cannot create DIR/tmp/%s.eml: %s", c->sid, c->id,
              strerror(errno));
        drop_message(c);
        c->id[0] = '\0';
    }
    if (c->msg != NULL && fwrite(p, 1, n, c->msg) != n) {
        c->write_errno = errno;
        logf_("session=%lu write failed: %s", c->sid, strerror(errno));
        drop_message(c);
        c->id[0] = '\0';
    }
    return LLSMTP_CB_OK;
}

/* The envelope of the local (relay == 0) or relayed (relay == 1)
 * recipients, as text (commit.c writes it), or NULL. */
static char *
envelope_text(conn *c, int relay, size_t *len)
{
    /* README "Envelope files": every value from the client is xtext, so
     * a quoted local part with ">" or a space in it stays one field */
#define ENV_PUT(s) queue_xtext_put(f, (s), strlen(s))
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    size_t i;
    int ok;
    if (f == NULL)
        return NULL;
    fprintf(f, "version %d\nid %s\nreceived %ld\nclient ", QUEUE_ENV_VERSION,
            c->id, (long)time(NULL));
    ENV_PUT(c->peer);
    fputs("\nhelo ", f);
    ENV_PUT(c->helo);
    fprintf(f, "\nprotocol %s\nfrom <", protocol(c));
    ENV_PUT(c->sender ? c->sender : "");
    fputs(">\n", f);
    if (c->auth_user[0]) {
        fputs("auth ", f);
        ENV_PUT(c->auth_user);
        fputc('\n', f);
    }
#ifdef HAVE_OPENSSL
    if (c->tls == TLS_ON)
        fprintf(f, "tls %s %s\n", SSL_get_version(c->ssl),
                SSL_get_cipher_name(c->ssl));
#endif
    if (c->params && c->params[0]) {
        fputs("mail-params ", f);
        queue_params_put(f, c->params);
        fputc('\n', f);
    }
    {
        int body = llsmtp_server_body_type(c->s);
        if (body)
            fprintf(f, "body %s\n",
                    body == 7 ? "7BIT" : body == 8 ? "8BITMIME" : "BINARYMIME");
        if (llsmtp_server_smtputf8(c->s))
            fprintf(f, "smtputf8 yes\n");
    }
    for (i = 0; i < c->nrcpt; i++)
        if (c->relay[i] == relay) {
            fputs("rcpt <", f);
            ENV_PUT(c->rcpts[i]);
            fprintf(f, "> %s%s", relay ? "relay" : "local",
                    c->rcpt_params[i][0] ? " " : "");
            queue_params_put(f, c->rcpt_params[i]);
            fputc('\n', f);
        }
#undef ENV_PUT
    ok = !ferror(f);
    ok = fclose(f) == 0 && ok;
    if (!ok) {
        free(text);
        return NULL;
    }
    return text;
}

static void store_failed(conn *c, llsmtp_reply *r, int err);

static int
on_data_end(llsmtp_server *s, llsmtp_reply *r)
{
    conn *c = CONN(s);
    if (c->hops > opt.max_hops) {
        /* a mail loop: the refusal is logged with the reply */
        llsmtp_reply_set(r, 554, "5.4.6", "Too many hops");
        free_tx(c);
        return LLSMTP_CB_OK;
    }
    if (opt.discard) {
        llsmtp_reply_set_id(r, c->id, strlen(c->id));
        logf_("session=%lu queued=%s discarded", c->sid, c->id);
        free_tx(c);
        return LLSMTP_CB_OK;
    }
    if (c->msg != NULL) {
        /* The storage thread writes the envelopes, flushes this message
         * with the others of its batch and links it in; stored() sends
         * the 250 once that is done. */
        commit_job *j = commit_new();
        size_t i, nrelay = 0;
        for (i = 0; i < c->nrcpt; i++)
            nrelay += c->relay[i] != 0;
        if (j != NULL && nrelay > 0)
            j->env_relay = envelope_text(c, 1, &j->env_relay_n);
        if (j != NULL && nrelay < c->nrcpt)
            j->env_local = envelope_text(c, 0, &j->env_local_n);
        if (j != NULL && (j->env_relay != NULL) == (nrelay > 0) &&
            (j->env_local != NULL) == (nrelay < c->nrcpt)) {
            snprintf(j->id, sizeof j->id, "%s", c->id);
            if (c->mem) { /* in memory: the thread makes its file */
                int ok = fclose(c->msg) == 0; /* mbuf and mlen final */
                c->msg = NULL;
                c->mem = 0;
                j->mem = c->mbuf;
                j->mem_n = c->mlen;
                c->mbuf = NULL;
                if (!ok) {
                    c->write_errno = errno;
                    commit_free(j);
                    store_failed(c, r, c->write_errno);
                    return LLSMTP_CB_OK;
                }
            } else {
                j->msg = c->msg;
                c->msg = NULL;
            }
            j->owner = c;
            c->job = j;
            if (j->env_relay != NULL)
                queue_hold(j->id); /* no runner before the flush */
            commit_submit(j);
            return LLSMTP_CB_PENDING;
        }
        c->write_errno = ENOMEM;
        commit_free(j);
    }
    store_failed(c, r, c->write_errno ? c->write_errno : errno);
    return LLSMTP_CB_OK;
}

/* The message was not stored: 451, or 452 when the disk is full. */
static void
store_failed(conn *c, llsmtp_reply *r, int err)
{
    logf_("session=%lu queue write failed: %s", c->sid, strerror(err));
    /* RFC 3463 4.3.1: mail system full; try again later */
    if (err == ENOSPC || err == EDQUOT)
        llsmtp_reply_set(r, 452, "4.3.1",
                         "Insufficient system storage: message not queued");
    else
        llsmtp_reply_set(r, 451, "4.3.0", "Local error: message not queued");
    free_tx(c);
}

static int
on_data_abort(llsmtp_server *s, int why)
{
    conn *c = CONN(s);
    if (c->job != NULL) {
        /* ended before its 250: the storage thread drops the message if
         * it has not taken it yet, else stores it (see stored()) */
        logf_("session=%lu connection lost while queue=%s was being stored",
              c->sid, c->job->id);
        commit_cancel(c->job);
        c->job = NULL;
        return LLSMTP_CB_OK;
    }
    logf_("session=%lu message dropped (%s)", c->sid,
          why == LLSMTP_ABORT_SIZE      ? "too big"
          : why == LLSMTP_ABORT_BARE_LF ? "bare LF"
                                        : "connection lost");
    drop_message(c);
    return LLSMTP_CB_OK;
}

static int
on_rset(llsmtp_server *s, llsmtp_reply *r)
{
    (void)r;
    free_tx(CONN(s));
    return LLSMTP_CB_OK;
}

/* Compares without an early exit, so timing says nothing about where a
 * guess went wrong. */
static int
same(const char *a, size_t an, const char *b, size_t bn)
{
    size_t i;
    unsigned char d = (unsigned char)(an != bn);
    for (i = 0; i < an && i < bn; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

static int
on_auth(llsmtp_server *s, const llsmtp_auth *cred, llsmtp_reply *r)
{
    conn *c = CONN(s);
    size_t i;
    for (i = 0; i < opt.nusers; i++) {
        const char *u = opt.users[i], *colon = strchr(u, ':');
        size_t un = (size_t)(colon - u);
        if (same(u, un, cred->user.p, cred->user.n) &&
            same(colon + 1, strlen(colon + 1), cred->password.p,
                 cred->password.n) &&
            (cred->authzid.n == 0 ||
             same(cred->authzid.p, cred->authzid.n, u, un))) {
            snprintf(c->auth_user, sizeof c->auth_user, "%.*s", (int)un, u);
            llsmtp_reply_set(r, 235, "2.7.0", NULL);
            slogf_(c, "session=%lu auth=%s", c->sid, c->auth_user);
            return LLSMTP_CB_OK;
        }
    }
    /* the default reply refuses (535 5.7.8), and that is logged */
    return LLSMTP_CB_OK;
}

#define MAX_ETRN 4 /* queue scans at once */
static int etrn_running;
static void runner_setup(void);
static void arm_timer(conn *c);

/* ETRN (RFC 1985): a queue run now for what waits for the node. Finding
 * those entries means reading every envelope, so a child process does
 * it while this session waits (its decision deferred) and every other
 * session goes on; etrn_done() answers. */
static int
on_etrn(llsmtp_server *s, llsmtp_span arg, llsmtp_reply *r)
{
    static char text[300];
    conn *c = CONN(s);
    int p[2];
    pid_t pid;
    slogf_(c, "session=%lu etrn=%.*s", c->sid, (int)arg.n, arg.p);
    if (opt.discard || (arg.n > 0 && arg.p[0] == '#') ||
        arg.n >= sizeof c->etrn_node || etrn_running >= MAX_ETRN) {
        snprintf(text, sizeof text, "Unable to queue messages for node %.*s",
                 (int)arg.n, arg.p);
        llsmtp_reply_set(r, 458, "4.3.0", text);
        return LLSMTP_CB_OK;
    }
    if (queue_entries() == 0) {
        snprintf(text, sizeof text, "No messages waiting for node %.*s",
                 (int)arg.n, arg.p);
        llsmtp_reply_set(r, 251, "2.0.0", text);
        return LLSMTP_CB_OK;
    }
    memcpy(c->etrn_node, arg.p, arg.n);
    c->etrn_node[arg.n] = '\0';
    if (pipe(p) != 0) {
        llsmtp_reply_set(r, 458, "4.3.0", "Unable to queue messages now");
        return LLSMTP_CB_OK;
    }
    fflush(stderr); /* or the child writes the parent's lines too */
    pid = fork();
    if (pid == 0) {
        runner_setup();
        close(p[0]);
        signal(SIGTERM, SIG_DFL);
        _exit(queue_etrn_scan(c->etrn_node, arg.n, p[1]) == 0 ? 0 : 1);
    }
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        llsmtp_reply_set(r, 458, "4.3.0", "Unable to queue messages now");
        return LLSMTP_CB_OK;
    }
    fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
    c->etrn_fd = p[0];
    c->etrn_len = 0;
    etrn_running++;
    return LLSMTP_CB_PENDING; /* the child's runner is reaped by queue.c */
}

/* Reads the ETRN child's ids; at its end makes those entries due and
 * answers the deferred ETRN. Returns -1 when the session is lost. */
static int
etrn_read(conn *c)
{
    char text[300], *line, *nl;
    size_t due = 0;
    int rc;
    llsmtp_reply r = LLSMTP_REPLY_INIT;
    for (;;) {
        ssize_t k;
        if (c->etrn_cap - c->etrn_len < 4096) {
            char *b = realloc(c->etrn_buf, c->etrn_cap + 65536);
            if (b == NULL)
                return -1;
            c->etrn_buf = b;
            c->etrn_cap += 65536;
        }
        k = read(c->etrn_fd, c->etrn_buf + c->etrn_len,
                 c->etrn_cap - c->etrn_len - 1);
        if (k > 0) {
            c->etrn_len += (size_t)k;
            continue;
        }
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
            return 0; /* more to come */
        break; /* the scan is over (EOF), or failed (then: what came) */
    }
    close(c->etrn_fd);
    c->etrn_fd = -1;
    etrn_running--;
    c->etrn_buf[c->etrn_len] = '\0';
    for (line = c->etrn_buf; (nl = strchr(line, '\n')) != NULL;
         line = nl + 1) {
        *nl = '\0';
        due += (size_t)queue_make_due(line);
    }
    free(c->etrn_buf);
    c->etrn_buf = NULL;
    c->etrn_len = c->etrn_cap = 0;
    slogf_(c, "session=%lu etrn=%s due=%zu", c->sid, c->etrn_node, due);
    if (due == 0) {
        snprintf(text, sizeof text, "No messages waiting for node %s",
                 c->etrn_node);
        llsmtp_reply_set(&r, 251, "2.0.0", text);
    } else {
        snprintf(text, sizeof text, "Queuing for node %s started",
                 c->etrn_node);
        llsmtp_reply_set(&r, 250, "2.0.0", text);
    }
    rc = llsmtp_server_resume(c->s, &r);
    if (rc == LLSMTP_CLOSE)
        c->closing = 1;
    else if (rc < 0)
        return -1;
    arm_timer(c);
    return 0;
}

/* Whether ip is one of the --proxy-from networks (a balancer). */
static int
proxy_trusted(const llsmtp_ip *ip)
{
    int i;
    for (i = 0; ip->family != 0 && i < opt.nproxy_from; i++)
        if (llsmtp_cidr_match(&opt.proxy_from[i], ip))
            return 1;
    return 0;
}

/* Behind a load balancer the PROXY header names the real client. */
static int
on_connect(llsmtp_server *s, llsmtp_reply *r)
{
    conn *c = CONN(s);
    llsmtp_ip ip;
    uint16_t port;
    (void)r;
    c->awaiting_header = 0;
    if (c->proxied) {
        /* one line with both: the client, and the balancer it came by */
        if (llsmtp_server_client(s, &ip, &port)) {
            llsmtp_ip_format(&ip, c->peer, sizeof c->peer);
        } else {
            /* PROXY LOCAL (HAProxy's own check) or UNKNOWN: held back
             * until it does more than a check does */
            snprintf(c->peer, sizeof c->peer, "unknown");
            c->hold = opt.quiet_checks;
        }
        slogf_(c, "session=%lu connect from %s via %s", c->sid, c->peer,
               c->via);
    }
    return LLSMTP_CB_OK;
}

/* The log shows client text with anything unprintable as '?'. */
static void
printable(char *dst, size_t cap, const char *p, size_t n)
{
    size_t i;
    if (n >= cap)
        n = cap - 1;
    for (i = 0; i < n; i++)
        dst[i] = p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '?';
    dst[n] = '\0';
}

/* Every reply the session queues, with what it answers as the library
 * tells it (verb, argument, phase; never a credential: AUTH comes with
 * its mechanism only, every line of its exchange with no argument, as
 * "C: AUTH"), so smtpd keeps no model
 * of the session of its own and whole reads are fed at once. A refusal
 * leaves one line, --verbose or not, for operators and fail2ban: a
 * command's 4xx/5xx, a message's or a chunk's, and those no client line
 * caused (421: timeout, shutdown, a failed callback).
 * --verbose adds a line for every reply, beside what it answers. */
static void
on_reply(llsmtp_server *s, const llsmtp_reply_info *ri)
{
    conn *c = CONN(s);
    const char *verb = ri->verb[0] != '\0' ? ri->verb : "-";
    const char *sp = ri->enhanced[0] != '\0' ? " " : "";
    char arg[ARG_SHOWN + 1], text[TEXT_SHOWN + 1], what[ARG_SHOWN + 40];
    int refused = ri->code >= 400 && ri->phase != LLSMTP_RI_GREETING;
    if (c->hold &&
        (ri->code >= 400 ||
         (ri->phase != LLSMTP_RI_GREETING &&
          !(ri->phase == LLSMTP_RI_COMMAND &&
            (strcmp(verb, "EHLO") == 0 || strcmp(verb, "HELO") == 0 ||
             strcmp(verb, "NOOP") == 0 || strcmp(verb, "RSET") == 0 ||
             strcmp(verb, "QUIT") == 0)))))
        log_release(c); /* more than a health check does: all of it */
    if (!refused && !opt.verbose)
        return;
    printable(arg, sizeof arg, ri->arg.p, ri->arg.n);
    printable(text, sizeof text, ri->text.p, ri->text.n);
    if (refused)
        slogf_(c, "session=%lu refused client=%s cmd=%s%s%s reply=%d%s%s %s",
               c->sid, c->peer, verb, arg[0] ? " arg=" : "", arg, ri->code,
               sp, ri->enhanced, text);
    if (!opt.verbose)
        return;
    switch (ri->phase) {
    case LLSMTP_RI_AUTH_STEP: /* verb "AUTH", no argument */
    case LLSMTP_RI_COMMAND:
        if (ri->verb[0] == '\0')
            snprintf(what, sizeof what, "C: (line not shown) ");
        else
            snprintf(what, sizeof what, "C: %s%s%s ", ri->verb,
                     arg[0] ? " " : "", arg);
        break;
    case LLSMTP_RI_CHUNK:
        snprintf(what, sizeof what, "C: (BDAT chunk) ");
        break;
    case LLSMTP_RI_MESSAGE:
        if (ri->rcpt >= 0)
            snprintf(what, sizeof what, "C: (%s message, rcpt %ld) ",
                     ri->verb, ri->rcpt);
        else
            snprintf(what, sizeof what, "C: (%s message) ", ri->verb);
        break;
    default: /* the greeting, or no client line */
        what[0] = '\0';
        break;
    }
    slogf_(c, "session=%lu %sS: %d%s%s %s", c->sid, what, ri->code, sp,
           ri->enhanced, text);
}

static const llsmtp_callbacks callbacks = {
    .on_connect = on_connect,
    .on_etrn = on_etrn,
    .on_auth = on_auth,
    .on_helo = on_helo,
    .on_mail_from = on_mail,
    .on_rcpt = on_rcpt,
    .on_data_start = on_data_start,
    .on_data = on_data,
    .on_data_end = on_data_end,
    .on_data_abort = on_data_abort,
    .on_rset = on_rset,
    .on_reply = on_reply,
};

/* ---- connections -------------------------------------------------------- */

static void
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
    if (opt.timeout)
        sec = (unsigned)opt.timeout;
    c->deadline = sec ? time(NULL) + (time_t)sec : 0;
}

static void
conn_free(conn *c)
{
    if (c->s != NULL && (c->msg != NULL || c->job != NULL))
        llsmtp_server_eof(c->s);
    if (c->job != NULL) {
        commit_cancel(c->job);
        c->job = NULL;
    }
    free_tx(c);
    free(c->rcpts);
    free(c->rcpt_params);
    free(c->relay);
    free(c->pending);
    if (c->etrn_fd >= 0) {
        close(c->etrn_fd); /* the child's next write fails: it ends */
        etrn_running--;
    }
    free(c->etrn_buf);
#ifdef HAVE_OPENSSL
    if (c->ssl != NULL) {
        /* close_notify (RFC 8446 6.1), so the client can tell our close
         * from a truncation; one try, never waiting for the peer's */
        if (c->tls == TLS_ON && !c->tls_dead) {
            ERR_clear_error();
            if (SSL_shutdown(c->ssl) < 0)
                ERR_clear_error();
        }
        SSL_free(c->ssl);
    }
#endif
    close(c->fd);
    free(c->s);
    slogf_(c, "session=%lu close", c->sid);
    free(c->held); /* a health check's lines: dropped */
    free(c);
}

#define IO_AGAIN (-2)

#ifdef HAVE_OPENSSL
/* Maps an SSL result to bytes, 0 (closed), -1 (error) or IO_AGAIN with
 * the poll events the TLS layer needs next. */
static ssize_t
tls_result(conn *c, int r)
{
    if (r > 0) {
        c->ssl_want = 0;
        return r;
    }
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        c->ssl_want = POLLIN;
        return IO_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        c->ssl_want = POLLOUT;
        return IO_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        c->tls_dead = 1; /* SSL_shutdown must not follow */
        return -1;
    }
}
#endif

/* recv() or SSL_read(): bytes, 0 at EOF, -1 on error, IO_AGAIN. */
static ssize_t
conn_recv(conn *c, char *buf, size_t n)
{
    ssize_t r;
#ifdef HAVE_OPENSSL
    if (c->tls == TLS_ON) {
        ERR_clear_error();
        return tls_result(c, SSL_read(c->ssl, buf, n > INT32_MAX ? INT32_MAX
                                                                 : (int)n));
    }
#endif
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
#ifdef HAVE_OPENSSL
    if (c->tls == TLS_ON) {
        ERR_clear_error();
        return tls_result(c, SSL_write(c->ssl, buf, n > INT32_MAX ? INT32_MAX
                                                                  : (int)n));
    }
#endif
    w = send(c->fd, buf, n, MSG_NOSIGNAL);
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return IO_AGAIN;
    return w;
}

/* Writes what the session has queued. Returns -1 when the peer is gone. */
static int
flush_out(conn *c)
{
    size_t n;
    const char *o = llsmtp_server_output(c->s, &n);
    if (c->tls == TLS_HANDSHAKE)
        return 0;
    while (n > 0) {
        ssize_t w = conn_send(c, o, n);
        if (w == IO_AGAIN)
            return 0;
        if (w < 0)
            return -1;
        llsmtp_server_consume(c->s, (size_t)w);
        o = llsmtp_server_output(c->s, &n);
    }
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
    log_release(c); /* the balancer's header broken: never quiet */
    if (why != NULL) {
        /* nothing wrong with what came: too little of it */
    } else if (n >= 6 && memcmp(h, "PROXY ", 6) == 0) {
        why = "malformed PROXY v1 header";
    } else if (n >= 14 && memcmp(h, v2sig, 12) == 0) {
        /* the library's refusals, in its order (lib/proxy.c) */
        unsigned alen = n >= 16 ? (unsigned)(h[14] << 8 | h[15]) : 0;
        why = (h[12] >> 4) != 2    ? "PROXY v2 header of another version"
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
        printable(first, sizeof first, (const char *)h, n);
        logf_("session=%lu bad PROXY header from %s: not a PROXY header "
              "(\"%s\")", c->sid, c->peer, first);
        return;
    }
    logf_("session=%lu bad PROXY header from %s: %s", c->sid, c->peer, why);
}

/* Feeds bytes; keeps what the session could not take yet. */
static int
feed(conn *c, const char *buf, size_t len)
{
    if (!c->proxied && !c->spoke) {
        /* A v2 header on a direct listener (a balancer sent to the wrong
         * port): read as commands, its binary signature would end in a
         * "QUIT" line, logged as if the client had said it. Closed,
         * never shown. Its octets may come in several reads: while all
         * that came is a prefix of the signature it is kept in hdr_seen
         * (unused on a direct listener), not fed (the greeting's timeout
         * bounds the wait). */
        size_t have = c->hdr_seen_n, k = sizeof v2sig - have;
        if (k > len)
            k = len;
        memcpy(c->hdr_seen + have, buf, k);
        if (memcmp(c->hdr_seen, v2sig, have + k) == 0) {
            if (have + k < sizeof v2sig) {
                c->hdr_seen_n = have + k;
                return 0;
            }
            log_release(c);
            logf_("session=%lu PROXY v2 header from %s on a listener "
                  "without proxy: closed", c->sid, c->peer);
            c->closing = 1;
            return 0;
        }
        c->spoke = 1;
        if (have > 0) {
            /* the octets kept were no signature: fed before these */
            char *p = malloc(have + len);
            int rc;
            if (p == NULL)
                return -1;
            memcpy(p, c->hdr_seen, have);
            memcpy(p + have, buf, len);
            rc = feed(c, p, have + len);
            free(p);
            return rc;
        }
    }
    if (c->awaiting_header && c->hdr_seen_n < sizeof c->hdr_seen) {
        size_t k = sizeof c->hdr_seen - c->hdr_seen_n;
        memcpy(c->hdr_seen + c->hdr_seen_n, buf, k < len ? k : len);
        c->hdr_seen_n += k < len ? k : len;
    }
    for (;;) {
        size_t used = 0;
        int rc = llsmtp_server_feed(c->s, buf, len, &used);
        buf += used;
        len -= used;
        if (rc == LLSMTP_BLOCKED || rc == LLSMTP_PAUSED) {
            size_t n = 1;
            char *p;
            if (rc == LLSMTP_BLOCKED) {
                if (flush_out(c) < 0)
                    return -1;
                llsmtp_server_output(c->s, &n);
            }
            if (n == 0)
                continue; /* all written: go on */
            /* The peer is not reading its replies, or a decision is
             * awaited: keep the rest (maybe nothing, the session still
             * has replies to make). */
            p = malloc(len + 1);
            if (p == NULL)
                return -1;
            memcpy(p, buf, len);
            free(c->pending);
            c->pending = p;
            c->pending_len = len;
            return 0;
        }
        if (rc == LLSMTP_CLOSE) {
            if (c->awaiting_header)
                header_refused(c, NULL);
            c->awaiting_header = 0;
            c->closing = 1;
            return 0;
        }
        if (rc == LLSMTP_TLS) {
            /* 220 queued; the session dropped the rest of this read
             * (CVE-2011-0411). Flush it, then handshake. */
            c->tls = TLS_FLUSH;
            return 0;
        }
        if (rc < 0) {
            slogf_(c, "session=%lu library error %s (%s)", c->sid,
                   llsmtp_errname(rc),
                   llsmtp_server_failed_cb(c->s) ? llsmtp_server_failed_cb(c->s)
                                                 : "-");
            /* the session queued a 421 for the client: write it first */
            c->closing = 1;
            return 0;
        }
        if (len == 0)
            return 0;
    }
}

#ifdef HAVE_OPENSSL
/* RFC 3207 4.2: the library forgot HELO/EHLO, AUTH and the transaction
 * learnt in the clear; so does everything smtpd records about them
 * (Received header, .env), or a cleartext AUTH would be claimed for a
 * session that never authenticated over TLS. */
static void
session_forget(conn *c)
{
    free_tx(c);
    c->helo[0] = '\0';
    c->is_ehlo = 0;
    c->auth_user[0] = '\0';
}
#endif

/* Advances STARTTLS: once the 220 is written, the handshake; once done,
 * the session starts afresh. Returns -1 when the connection is lost. */
static int
tls_step(conn *c)
{
#ifdef HAVE_OPENSSL
    size_t out;
    int r;
    if (c->tls == TLS_FLUSH) {
        llsmtp_server_output(c->s, &out);
        if (out > 0)
            return 0;
        c->ssl = SSL_new(tls_ctx);
        if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
            return -1;
        SSL_set_accept_state(c->ssl);
        c->tls = TLS_HANDSHAKE;
    }
    if (c->tls != TLS_HANDSHAKE)
        return 0;
    ERR_clear_error();
    r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->tls = TLS_ON;
        c->ssl_want = 0;
        if (llsmtp_server_tls_started(c->s) != LLSMTP_OK)
            return -1;
        session_forget(c);
        slogf_(c, "session=%lu tls=%s cipher=%s", c->sid,
               SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl));
        arm_timer(c);
        return 0;
    }
    if (tls_result(c, r) == IO_AGAIN)
        return 0;
    {
        /* what OpenSSL says went wrong: no shared cipher, wrong version,
         * a client that does not like the certificate... */
        unsigned long e = ERR_get_error();
        char why[256];
        if (e != 0)
            ERR_error_string_n(e, why, sizeof why);
        else
            snprintf(why, sizeof why, "%s",
                     errno ? strerror(errno) : "connection closed");
        slogf_(c, "session=%lu tls handshake failed client=%s: %s", c->sid,
               c->peer, why);
        ERR_clear_error();
    }
    return -1;
#else
    (void)c;
    return -1;
#endif
}

/* The storage thread is done with j: the session hears its 250 now (or
 * 451/452), and gets on with what its client sent meanwhile. */
static void
stored(commit_job *j)
{
    conn *c = j->owner;
    llsmtp_reply r = LLSMTP_REPLY_INIT;
    int rc;
    if (j->env_relay != NULL)
        queue_release(j->id);
    if (j->err == 0 && j->env_relay != NULL)
        queue_add(j->id);
    if (c == NULL) {
        /* duplicate at worst: the client saw no 250 and may send it
         * again; a loss never */
        if (j->err == 0)
            logf_("queue=%s stored after its session ended: no 250 sent",
                  j->id);
        commit_free(j);
        return;
    }
    c->job = NULL;
    if (j->err != 0) {
        store_failed(c, &r, j->err);
    } else {
        llsmtp_reply_set_id(&r, j->id, strlen(j->id));
        logf_("session=%lu queued=%s from=<%s> nrcpt=%zu", c->sid, j->id,
              c->sender ? c->sender : "", c->nrcpt);
        free_tx(c);
    }
    commit_free(j);
    rc = llsmtp_server_resume(c->s, &r);
    if (rc == LLSMTP_CLOSE) {
        c->closing = 1;
    } else if (rc < 0) {
        logf_("session=%lu library error %s", c->sid, llsmtp_errname(rc));
        c->closing = 1;
    }
    arm_timer(c);
    flush_out(c); /* a lost peer shows again in the loop */
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

static void
accept_clients(int li)
{
    int lfd = lfds[li], proxied = opt.listen_proxy[li];
    const llsmtp_config *lc = proxied ? &cfg_proxy : &cfg;
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept(lfd, (struct sockaddr *)&ss, &sl), one = 1;
        conn *c;
        llsmtp_ip ip;
        size_t sz;
        char peer[sizeof c->peer];
        if (fd < 0)
            return;
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, peer,
                      sizeof peer);
        else if (ss.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr,
                      peer, sizeof peer);
        else
            snprintf(peer, sizeof peer, "unknown");
        if (llsmtp_ip_parse(peer, strlen(peer), &ip) != LLSMTP_OK)
            memset(&ip, 0, sizeof ip);
        if (proxied && !proxy_trusted(&ip)) {
            /* not a balancer: its header would be believed (any client
             * address, a --relay-net one too); no reply, not SMTP yet,
             * and before the 421 below, which would name the host to
             * whoever reaches the port */
            logf_("session=%lu refused connection from %s: not a "
                  "--proxy-from address (PROXY listener)", ++next_sid, peer);
            close(fd);
            continue;
        }
        if ((int)nconns >= opt.max_clients || stop_flag) {
            char msg[300];
            int n = snprintf(msg, sizeof msg,
                             "421 4.7.0 %s Too many connections, try again "
                             "later\r\n",
                             opt.hostname);
            if (send(fd, msg, (size_t)n, MSG_NOSIGNAL) < 0) {
                /* nothing more to do for this peer */
            }
            close(fd);
            continue;
        }
        c = calloc(1, sizeof *c);
        sz = llsmtp_server_size(lc);
        if (c == NULL || (c->s = malloc(sz)) == NULL) {
            free(c);
            close(fd);
            continue;
        }
        c->fd = fd;
        c->sid = ++next_sid;
        c->etrn_fd = -1;
        memcpy(c->peer, peer, sizeof c->peer);
        llsmtp_server_init(c->s, sz, lc, c);
        c->proxied = proxied;
        c->awaiting_header = proxied;
        c->header_deadline = mono_ms() + (long long)opt.proxy_timeout * 1000;
        if (ip.family != 0)
            llsmtp_server_set_client(c->s, &ip);
        /* before the greeting, which --verbose logs; behind a balancer
         * once the header has named the client (on_connect) */
        if (proxied)
            snprintf(c->via, sizeof c->via, "%s", c->peer);
        else
            slogf_(c, "session=%lu connect from %s", c->sid, c->peer);
        if (llsmtp_server_start(c->s) == LLSMTP_CLOSE)
            c->closing = 1;
        arm_timer(c);
        if (nconns == conns_cap) {
            size_t cap = conns_cap ? conns_cap * 2 : 64;
            conn **v = realloc(conns, cap * sizeof *v);
            if (v == NULL) {
                conn_free(c);
                continue;
            }
            conns = v;
            conns_cap = cap;
        }
        conns[nconns++] = c;
        flush_out(c);
    }
}

/* SIGTERM seen: the listeners close, and each session gets 421 at its
 * next transaction boundary (the loop); what is still open after the
 * grace is cut. */
static void
drain_begin(long long now_ms, long long *stop_at)
{
    int i;
    logf_("stopping: draining %zu sessions for up to %ds", nconns,
          opt.drain_timeout);
    draining = 1;
    *stop_at = now_ms + (long long)opt.drain_timeout * 1000;
    for (i = 0; i < opt.nlisten; i++)
        close(lfds[i]);
}

static void
on_signal(int sig)
{
    int e = errno;
    (void)sig;
    stop_flag = 1;
    if (sig_pipe[1] >= 0) {
        ssize_t w = write(sig_pipe[1], "", 1); /* full: a wake-up waits */
        (void)w;
    }
    errno = e;
}

/* In a queue runner: the sockets belong to the server. */
static void
runner_setup(void)
{
    size_t k;
    int i;
    log_pid = 0; /* a new process */
    queue_child(); /* the spool's lock stays the server's */
    if (sig_pipe[0] >= 0) {
        close(sig_pipe[0]);
        close(sig_pipe[1]);
        sig_pipe[0] = sig_pipe[1] = -1;
    }
    for (i = 0; i < opt.nlisten; i++)
        close(lfds[i]);
    for (k = 0; k < nconns; k++) {
        close(conns[k]->fd);
        if (conns[k]->etrn_fd >= 0)
            close(conns[k]->etrn_fd);
    }
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

int
main(int argc, char **argv)
{
    int i;
    struct pollfd *pfds = NULL;
    size_t pcap = 0;
    static char rbuf[READ_BUF];
    long long stop_at = 0; /* mono_ms() */
    struct sigaction sa;

    parse_args(argc, argv);
    llsmtp_config_init(&cfg);
    cfg.hostname = opt.hostname;
    cfg.banner = "llsmtp " LLSMTP_VERSION_STRING;
    cfg.max_size = opt.max_size;
    cfg.max_rcpt = opt.max_rcpt;
    cfg.callbacks = &callbacks;
    llsmtp_relay_policy_init(&policy);
    policy.local_domains = opt.local_domains;
    policy.nlocal = (size_t)opt.nlocal;
    policy.relay_domains = opt.relay_domains;
    policy.nrelay = (size_t)opt.nrelay;
    policy.networks = opt.relay_nets;
    policy.nnetworks = (size_t)opt.nnets;
    cfg.relay = &policy;
    if (opt.lmtp)
        cfg.flags |= LLSMTP_CFG_LMTP;
    /* RFC 3030, 3461, 6531, 1985: on unless switched off */
    cfg.extensions |= (LLSMTP_EXT_CHUNKING | LLSMTP_EXT_BINARYMIME |
                       LLSMTP_EXT_DSN | LLSMTP_EXT_SMTPUTF8 |
                       LLSMTP_EXT_ETRN) &
                      ~opt.no_ext;
#ifdef HAVE_OPENSSL
    if (opt.tls_cert != NULL) {
        tls_ctx = SSL_CTX_new(TLS_server_method());
        if (tls_ctx == NULL ||
            !SSL_CTX_set_min_proto_version(tls_ctx, opt.tls_min == 13
                                                        ? TLS1_3_VERSION
                                                        : TLS1_2_VERSION) ||
            SSL_CTX_set_cipher_list(tls_ctx, opt.tls_ciphers) != 1 ||
            SSL_CTX_use_certificate_chain_file(tls_ctx, opt.tls_cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(tls_ctx, opt.tls_key,
                                        SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(tls_ctx) != 1) {
            fprintf(stderr, "smtpd: cannot use --tls-cert %s / --tls-key %s "
                            "/ --tls-ciphers %s: ",
                    opt.tls_cert, opt.tls_key, opt.tls_ciphers);
            ERR_print_errors_fp(stderr);
            return 2;
        }
        SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        /* our order, not the client's; no renegotiation (a client-driven
         * CPU cost, and nothing SMTP needs); no compression (CRIME) */
        SSL_CTX_set_options(tls_ctx, SSL_OP_CIPHER_SERVER_PREFERENCE |
                                         SSL_OP_NO_RENEGOTIATION |
                                         SSL_OP_NO_COMPRESSION);
        cfg.extensions |= LLSMTP_EXT_STARTTLS;
    }
#endif
    if (opt.nusers > 0) {
        cfg.extensions |= LLSMTP_EXT_AUTH;
        if (opt.insecure_auth)
            cfg.flags |= LLSMTP_CFG_AUTH_CLEARTEXT;
    }
    {
        const char *why = NULL;
        if (llsmtp_config_check(&cfg, &why) != LLSMTP_OK)
            die_usage("invalid configuration: %s", why);
        cfg_proxy = cfg;
        cfg_proxy.flags |= LLSMTP_CFG_PROXY;
        if (llsmtp_config_check(&cfg_proxy, &why) != LLSMTP_OK)
            die_usage("invalid configuration: %s", why);
    }
    if (!opt.discard) {
        char tmp[4096];
        long holder = 0;
        snprintf(tmp, sizeof tmp, "%s/tmp", opt.spool);
        if (mkdir(opt.spool, 0750) != 0 && errno != EEXIST) {
            fprintf(stderr, "smtpd: cannot create spool %s: %s\n", opt.spool,
                    strerror(errno));
            return 1;
        }
        /* one smtpd per spool, before anything in it is touched */
        if (queue_lock(opt.spool, &holder) != 0) {
            if (errno == EWOULDBLOCK) {
                fprintf(stderr,
                        "smtpd: spool %s is in use by another smtpd "
                        "(pid %ld holds %s/smtpd.lock): not started\n",
                        opt.spool, holder, opt.spool);
                return 2;
            }
            fprintf(stderr, "smtpd: warning: cannot lock %s/smtpd.lock: %s; "
                            "going on without the lock\n",
                    opt.spool, strerror(errno));
        }
        if (mkdir(tmp, 0750) != 0 && errno != EEXIST) {
            fprintf(stderr, "smtpd: cannot create spool %s: %s\n", opt.spool,
                    strerror(errno));
            return 1;
        }
        opt.q.spool = opt.spool;
        opt.q.hostname = opt.hostname;
        opt.q.local_domains = opt.local_domains;
        opt.q.nlocal = (size_t)opt.nlocal;
        opt.q.timeout = opt.timeout;
        opt.q.no_fsync = opt.no_fsync;
        opt.q.verbose = opt.verbose;
        opt.q.child_setup = runner_setup;
        opt.q.log = logf_;
        opt.q.listen = opt.listen;
        opt.q.nlisten = (size_t)opt.nlisten;
        if (opt.dns == NULL)
            route_dns_default(&opt.q.dns);
        if (queue_open(&opt.q) != 0) {
            fprintf(stderr, "smtpd: cannot create %s/queue: %s\n", opt.spool,
                    strerror(errno));
            return 1;
        }
        if (commit_open(opt.spool, opt.no_fsync) != 0) {
            fprintf(stderr, "smtpd: cannot start the storage thread: %s\n",
                    strerror(errno));
            return 1;
        }
    }
    raise_nofile();
    /* log lines are gathered and written before each poll(): a message
     * with 50 recipients costs one write(2), not 55 */
    setvbuf(stderr, NULL, _IOFBF, 1 << 16);
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
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    for (i = 0; i < opt.nlisten; i++) {
        lfds[i] = open_listener(opt.listen[i]);
        logf_("listening on %s%s as %s", opt.listen[i],
              opt.listen_proxy[i] ? ",proxy" : "", opt.hostname);
    }
    policy.own_addrs = own_addrs; /* filled by open_listener */
    policy.nown = nown;

    for (;;) {
        size_t k, np = 0, npolled, nlpolled = 0, commit_pi = (size_t)-1;
        size_t sig_pi;
        int more = 0;
        time_t now = time(NULL), next = 0;
        long long now_ms = mono_ms(), hdr_next = 0;
        int timeout_ms;
        if (!opt.discard)
            queue_reap(now);
        if (draining && ((nconns == 0 && queue_busy() == 0) ||
                          now_ms >= stop_at)) {
            size_t ncut = 0;
            for (k = 0; k < nconns; k++)
                ncut += !conns[k]->drained; /* told, yet still writing */
            logf_("stopping: %zu sessions drained, %zu cut", ndrained, ncut);
            for (k = 0; k < nconns; k++) {
                llsmtp_server_shutdown(conns[k]->s, NULL);
                flush_out(conns[k]);
                conn_free(conns[k]);
            }
            free(conns);
            free(pfds);
            for (k = 0; k < opt.nusers; k++)
                free(opt.users[k]);
            free(opt.users);
            for (k = 0; k < opt.nrcpts_local; k++)
                free(opt.rcpts_local[k]);
            free(opt.rcpts_local);
            for (k = 0; k < opt.nrcpts_relay; k++)
                free(opt.rcpts_relay[k]);
            free(opt.rcpts_relay);
#ifdef HAVE_OPENSSL
            SSL_CTX_free(tls_ctx);
#endif
            commit_close(); /* what it had taken is stored */
            if (queue_busy() > 0)
                logf_("stopping with %zu deliveries under way: they finish "
                      "on their own", queue_busy());
            queue_close();
            logf_("stopped");
            return 0;
        }
        if (pcap < 2 * nconns + MAX_LISTEN + 2) {
            pcap = (2 * nconns + MAX_LISTEN + 2) * 2;
            pfds = realloc(pfds, pcap * sizeof *pfds);
            if (pfds == NULL)
                return 1;
        }
        if (!stop_flag)
            for (i = 0; i < opt.nlisten; i++) {
                pfds[np].fd = lfds[i];
                pfds[np].events = POLLIN;
                np++;
                nlpolled++;
            }
        for (k = 0; k < nconns; k++) {
            conn *c = conns[k];
            size_t out;
            llsmtp_server_output(c->s, &out);
            pfds[np].fd = c->fd;
            pfds[np].events = c->ssl_want;
            if (c->tls == TLS_HANDSHAKE) {
                /* only what the handshake asks for */
            } else {
                if (!c->closing && c->pending == NULL &&
                    c->tls != TLS_FLUSH &&
                    llsmtp_server_pending(c->s) == LLSMTP_PENDING_NONE)
                    pfds[np].events |= POLLIN;
                if (out > 0)
                    pfds[np].events |= POLLOUT;
            }
#ifdef HAVE_OPENSSL
            if (c->tls == TLS_ON && SSL_pending(c->ssl) > 0)
                more = 1; /* decrypted bytes poll cannot see */
#endif
            if (c->pending != NULL && out == 0 &&
                llsmtp_server_pending(c->s) == LLSMTP_PENDING_NONE)
                more = 1; /* resumed: the input kept meanwhile is due */
            np++;
            if (c->deadline && (next == 0 || c->deadline < next))
                next = c->deadline;
            if (c->awaiting_header &&
                (hdr_next == 0 || c->header_deadline < hdr_next))
                hdr_next = c->header_deadline;
        }
        npolled = nconns; /* sessions accepted below were not polled */
        for (k = 0; k < nconns; k++) { /* ETRN scans after the sessions */
            conn *c = conns[k];
            c->etrn_pi = (size_t)-1;
            if (c->etrn_fd >= 0) {
                c->etrn_pi = np;
                pfds[np].fd = c->etrn_fd;
                pfds[np].events = POLLIN;
                np++;
            }
        }
        sig_pi = np; /* a signal: read below, acted on through stop_flag */
        pfds[np].fd = sig_pipe[0];
        pfds[np].events = POLLIN;
        np++;
        if (commit_fd() >= 0) { /* messages stored: their 250s are due */
            commit_pi = np;
            pfds[np].fd = commit_fd();
            pfds[np].events = POLLIN;
            np++;
        }
        timeout_ms = next ? (int)((next > now ? next - now : 0) * 1000) : -1;
        if (hdr_next && (timeout_ms < 0 || hdr_next - now_ms < timeout_ms))
            timeout_ms = hdr_next > now_ms ? (int)(hdr_next - now_ms) : 0;
        if (!opt.discard && !stop_flag) {
            int q = queue_run(now); /* starts what is due */
            if (q >= 0 && (timeout_ms < 0 || q < timeout_ms))
                timeout_ms = q;
        } else if (queue_busy() > 0 && timeout_ms < 0) {
            timeout_ms = 500;
        }
        if (stop_flag && (timeout_ms < 0 || timeout_ms > 1000))
            timeout_ms = 1000;
        if (stop_at && (timeout_ms < 0 || stop_at - now_ms < timeout_ms))
            timeout_ms = stop_at > now_ms ? (int)(stop_at - now_ms) : 0;
        if (more || (stop_flag && !draining))
            timeout_ms = 0; /* the signal came meanwhile: drain now */
        fflush(stderr); /* the log: one write per loop, not per line */
        if (poll(pfds, (nfds_t)np, timeout_ms) < 0) {
            if (errno != EINTR) {
                perror("smtpd: poll");
                return 1;
            }
            /* a signal (SIGTERM: the drain starts): no event came, and
             * revents still hold an earlier round's (a POLLERR of
             * another connection) */
            for (k = 0; k < np; k++)
                pfds[k].revents = 0;
        }
        now = time(NULL);
        now_ms = mono_ms();
        /* the drain begins in the round that saw the signal: an idle
         * session hears its 421 at once, not after the next poll */
        if (stop_flag && !draining)
            drain_begin(now_ms, &stop_at);
        k = 0;
        for (i = 0; i < (int)nlpolled; i++, k++) /* polled, maybe closed */
            if (!draining && (pfds[k].revents & POLLIN))
                accept_clients(i);
        if (pfds[sig_pi].revents != 0) {
            char drain[64];
            while (read(sig_pipe[0], drain, sizeof drain) > 0)
                ;
        }
        if (commit_pi != (size_t)-1 && pfds[commit_pi].revents != 0) {
            commit_job *j = commit_done(), *next;
            for (; j != NULL; j = next) {
                next = j->next;
                stored(j);
            }
        }
        {
            size_t ci, base = k, nc = npolled;
            for (ci = 0; ci < nc; ci++) {
                conn *c = conns[ci];
                short re = pfds[base + ci].revents;
                int dead = 0;
                if (re & (POLLERR | POLLNVAL))
                    dead = 1;
                if (!dead && c->etrn_fd >= 0 && c->etrn_pi != (size_t)-1 &&
                    pfds[c->etrn_pi].revents != 0 && etrn_read(c) < 0)
                    dead = 1;
#ifdef HAVE_OPENSSL
                if (!dead && c->tls == TLS_ON && SSL_pending(c->ssl) > 0)
                    re |= POLLIN;
#endif
                if (!dead && (c->tls == TLS_FLUSH || c->tls == TLS_HANDSHAKE)) {
                    if ((re & POLLOUT) && flush_out(c) < 0)
                        dead = 1;
                    if (!dead && tls_step(c) < 0)
                        dead = 1;
                    if (!dead && c->tls != TLS_ON) {
                        if (c->deadline && now >= c->deadline)
                            dead = 1; /* a handshake that never ends */
                        goto next_conn;
                    }
                    re &= (short)~POLLIN; /* nothing read yet in TLS */
                }
                if (!dead && (re & POLLOUT) && flush_out(c) < 0)
                    dead = 1;
                if (!dead && c->pending != NULL) {
                    size_t out;
                    llsmtp_server_output(c->s, &out);
                    if (out == 0 && llsmtp_server_pending(c->s) ==
                                        LLSMTP_PENDING_NONE) {
                        char *p = c->pending;
                        size_t n = c->pending_len;
                        c->pending = NULL;
                        c->pending_len = 0;
                        if (feed(c, p, n) < 0)
                            dead = 1;
                        free(p);
                    }
                }
                if (!dead && (re & (POLLIN | POLLHUP)) && !c->closing &&
                    c->pending == NULL) {
                    ssize_t r = conn_recv(c, rbuf, sizeof rbuf);
                    if (r > 0) {
                        if (feed(c, rbuf, (size_t)r) < 0)
                            dead = 1;
                        arm_timer(c);
                        if (!dead && c->tls == TLS_FLUSH && flush_out(c) == 0 &&
                            tls_step(c) < 0)
                            dead = 1;
                    } else if (r != IO_AGAIN) {
                        if (c->awaiting_header)
                            log_release(c);
                        if (c->awaiting_header && c->hdr_seen_n == 0)
                            logf_("session=%lu no PROXY header from %s: "
                                  "closed by the peer", c->sid, c->peer);
                        else if (c->awaiting_header)
                            header_refused(c, "closed by the peer in its "
                                              "middle");
                        llsmtp_server_eof(c->s);
                        dead = 1;
                    }
                }
                if (!dead && c->awaiting_header &&
                    now_ms >= c->header_deadline) {
                    /* closed without a word, as a bad header is */
                    log_release(c);
                    logf_("session=%lu no PROXY header from %s within %ds",
                          c->sid, c->peer, opt.proxy_timeout);
                    dead = 1;
                }
                if (!dead && c->deadline && now >= c->deadline) {
                    slogf_(c, "session=%lu timeout", c->sid);
                    llsmtp_server_timeout_expired(c->s);
                    c->closing = 1;
                }
                if (!dead && draining && c->awaiting_header)
                    dead = 1; /* no SMTP yet: nothing to say */
                else if (!dead && draining && drain_point(c)) {
                    llsmtp_server_shutdown(c->s, NULL); /* 421 4.3.2 */
                    drain_told(c);
                    c->closing = 1;
                }
                if (!dead && flush_out(c) < 0)
                    dead = 1;
                if (!dead && c->closing) {
                    size_t out;
                    llsmtp_server_output(c->s, &out);
                    if (out == 0)
                        dead = 1;
                }
            next_conn:
                if (dead) {
                    conn_free(c);
                    conns[ci] = NULL;
                }
            }
            /* compact */
            for (ci = 0, k = 0; ci < nc; ci++)
                if (conns[ci] != NULL)
                    conns[k++] = conns[ci];
            for (ci = nc; ci < nconns; ci++) /* accepted meanwhile */
                conns[k++] = conns[ci];
            nconns = k;
        }
    }
}
