/* SPDX-License-Identifier: MIT
 *
 * smtp-send.c - sends one message (a file, or standard input) to one SMTP
 * or LMTP server with the llsmtp client session, and prints one line per
 * recipient with its final reply. Blocking sockets: the session itself
 * does no I/O, this program reads and writes for it. --verbose prints the
 * dialogue with C:/S: prefixes (credentials and the body are not shown).
 * Exit: 0 all delivered, 1 some recipients refused, 2 all refused or a
 * permanent failure, 3 a temporary failure.
 */
#include <llsmtp.h>

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#ifdef HAVE_OPENSSL
#include <openssl/err.h>
#include <openssl/ssl.h>
static SSL *ssl;
#endif

#define MAX_TO LLSMTP_CLIENT_RCPT_MAX

static int fd = -1, verbose, in_auth;

/* one final result per recipient: 0 until known */
static int final_code[MAX_TO];
static char *final_text[MAX_TO];

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: smtp-send --server HOST:PORT [--starttls|--require-tls]\n"
            "                 [--user U --password P] [--insecure-auth] [--lmtp]\n"
            "                 [--helo NAME] [--timeout SECONDS] [--verbose]\n"
            "                 --from ADDR --to ADDR [--to ADDR ...] [FILE|-]\n"
            "Sends one message and prints \"<recipient> <code> <text>\" per\n"
            "recipient. --from '' sends a null reverse-path. STARTTLS\n"
            "encrypts but does not verify the server's certificate.\n"
            "Exit: 0 all delivered, 1 some refused, 2 all refused or a\n"
            "permanent failure, 3 a temporary failure.\n");
}

static void
die(const char *msg, const char *arg)
{
    fprintf(stderr, "smtp-send: %s%s%s\n", msg, arg ? ": " : "",
            arg ? arg : "");
    exit(3);
}

static void
show(const char *prefix, const char *p, size_t n)
{
    /* one output line per protocol line */
    size_t a = 0, i;
    for (i = 0; i < n; i++) {
        if (p[i] != '\n')
            continue;
        size_t e = i > a && p[i - 1] == '\r' ? i - 1 : i;
        if (prefix[0] == 'C' && in_auth && !(e - a >= 4 &&
                                             memcmp(p + a, "AUTH", 4) == 0))
            fprintf(stderr, "C: ****\n");
        else if (prefix[0] == 'C' && e - a > 11 &&
                 memcmp(p + a, "AUTH PLAIN ", 11) == 0)
            fprintf(stderr, "C: AUTH PLAIN ****\n");
        else
            fprintf(stderr, "%s%.*s\n", prefix, (int)(e - a), p + a);
        if (prefix[0] == 'C' && e - a >= 4 && memcmp(p + a, "AUTH", 4) == 0)
            in_auth = 1;
        a = i + 1;
    }
}

static void
write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w;
#ifdef HAVE_OPENSSL
        if (ssl != NULL) {
            int r = SSL_write(ssl, p, n > 65536 ? 65536 : (int)n);
            if (r <= 0)
                die("TLS write failed", NULL);
            w = r;
        } else
#endif
            w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("write failed", strerror(errno));
        p += w;
        n -= (size_t)w;
    }
}

static size_t
read_some(char *buf, size_t cap)
{
    ssize_t r;
    for (;;) {
#ifdef HAVE_OPENSSL
        if (ssl != NULL) {
            int k = SSL_read(ssl, buf, (int)cap);
            if (k <= 0)
                return 0;
            return (size_t)k;
        }
#endif
        r = recv(fd, buf, cap, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            die("timeout waiting for the server", NULL);
        return r <= 0 ? 0 : (size_t)r;
    }
}

static void
flush(llsmtp_client *c)
{
    llsmtp_span o = llsmtp_client_output(c);
    if (o.n == 0)
        return;
    if (verbose)
        show("C: ", o.p, o.n);
    write_all(o.p, o.n);
    llsmtp_client_consume(c, o.n);
}

static void
set_timeout(llsmtp_client *c)
{
    struct timeval tv;
    tv.tv_sec = (time_t)llsmtp_client_timeout(c);
    tv.tv_usec = 0;
    if (tv.tv_sec == 0)
        tv.tv_sec = 300;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static void
connect_to(const char *spec)
{
    char host[256], *colon;
    const char *port = "25";
    struct addrinfo hints, *res, *ai;
    int rc;
    if (strlen(spec) >= sizeof host)
        die("server name too long", spec);
    strcpy(host, spec);
    colon = strrchr(host, ':');
    if (colon != NULL && strchr(host, ':') == colon) {
        *colon = '\0';
        port = colon + 1;
    }
    if (host[0] == '[') { /* [IPv6]:port or [host]:port */
        size_t n = strlen(host);
        if (n < 2 || host[n - 1] != ']') {
            colon = strrchr(host, ']');
            if (colon == NULL || colon[1] != ':')
                die("bad --server", spec);
            colon[0] = '\0';
            port = colon + 2;
        } else {
            host[n - 1] = '\0';
        }
        memmove(host, host + 1, strlen(host));
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0)
        die(gai_strerror(rc), spec);
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        die("cannot connect", spec);
}

#ifdef HAVE_OPENSSL
static void
start_tls(const char *helo)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    (void)helo;
    if (ctx == NULL || (ssl = SSL_new(ctx)) == NULL ||
        SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1)
        die("TLS handshake failed", NULL);
    if (verbose)
        fprintf(stderr, "-- TLS %s %s\n", SSL_get_version(ssl),
                SSL_get_cipher_name(ssl));
}
#endif

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
        die("cannot open", path);
    *n = 0;
    for (;;) {
        size_t r;
        if (*n == cap) {
            cap = cap ? cap * 2 : 65536;
            buf = realloc(buf, cap);
            if (buf == NULL)
                die("out of memory", NULL);
        }
        r = fread(buf + *n, 1, cap - *n, f);
        *n += r;
        if (r == 0)
            break;
    }
    if (ferror(f))
        die("cannot read", path);
    if (f != stdin)
        fclose(f);
    return buf;
}

static void
set_final(size_t i, int code, llsmtp_span text)
{
    if (final_code[i] != 0)
        return;
    final_code[i] = code;
    final_text[i] = malloc(text.n + 1);
    if (final_text[i] == NULL)
        die("out of memory", NULL);
    memcpy(final_text[i], text.p, text.n);
    final_text[i][text.n] = '\0';
}

int
main(int argc, char **argv)
{
    llsmtp_client_cfg cfg;
    llsmtp_client c;
    llsmtp_client_msg m;
    static llsmtp_span to[MAX_TO];
    const char *server = NULL, *from = NULL, *file = "-";
    char *body, buf[16384];
    size_t body_n, i, have = 0, off = 0, ok = 0, temp = 0;
    int sent = 0, done = 0, a;

    memset(&cfg, 0, sizeof cfg);
    memset(&m, 0, sizeof m);
    cfg.helo.p = "localhost";
    cfg.helo.n = 9;
    for (a = 1; a < argc; a++) {
        const char *o = argv[a];
        const char *v = a + 1 < argc ? argv[a + 1] : NULL;
#define TAKES(name) (strcmp(o, name) == 0 && v != NULL && ++a)
        if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (TAKES("--server")) {
            server = v;
        } else if (TAKES("--from")) {
            from = v;
        } else if (TAKES("--to")) {
            if (m.nto == MAX_TO)
                die("too many recipients", NULL);
            to[m.nto].p = v;
            to[m.nto++].n = strlen(v);
        } else if (TAKES("--helo")) {
            cfg.helo.p = v;
            cfg.helo.n = strlen(v);
        } else if (TAKES("--user")) {
            cfg.user.p = v;
            cfg.user.n = strlen(v);
        } else if (TAKES("--password")) {
            cfg.password.p = v;
            cfg.password.n = strlen(v);
        } else if (strcmp(o, "--starttls") == 0) {
            cfg.flags |= LLSMTP_CLI_STARTTLS;
        } else if (strcmp(o, "--require-tls") == 0) {
            cfg.flags |= LLSMTP_CLI_REQUIRE_TLS;
        } else if (strcmp(o, "--insecure-auth") == 0) {
            cfg.flags |= LLSMTP_CLI_AUTH_CLEARTEXT;
        } else if (strcmp(o, "--lmtp") == 0) {
            cfg.flags |= LLSMTP_CLI_LMTP;
        } else if (strcmp(o, "--verbose") == 0 || strcmp(o, "-v") == 0) {
            verbose = 1;
        } else if (o[0] != '-' || strcmp(o, "-") == 0) {
            file = o;
        } else {
            usage(stderr);
            fprintf(stderr, "smtp-send: unknown or incomplete option %s\n",
                    o);
            return 3;
        }
#undef TAKES
    }
    if (server == NULL || from == NULL || m.nto == 0) {
        usage(stderr);
        return 3;
    }
#ifndef HAVE_OPENSSL
    if (cfg.flags & (LLSMTP_CLI_STARTTLS | LLSMTP_CLI_REQUIRE_TLS))
        die("built without OpenSSL: no STARTTLS", NULL);
#endif
    if (llsmtp_client_init(&c, &cfg) != LLSMTP_OK)
        die("bad --helo, --user or --password", NULL);
    body = read_message(file, &body_n);
    m.from.p = from;
    m.from.n = strlen(from);
    m.to = to;
    m.size = body_n;
    if (has_8bit(body, body_n))
        m.flags |= LLSMTP_MSG_8BIT;

    connect_to(server);
    while (!done) {
        llsmtp_client_event ev;
        size_t used;
        int rc;
        rc = llsmtp_client_feed(&c, buf + off, have - off, &used, &ev);
        off += used;
        if (rc != 1) {
            /* everything read was taken and nothing happened: wait for
             * more from the server */
            flush(&c);
            set_timeout(&c);
            have = read_some(buf, sizeof buf);
            off = 0;
            if (have == 0) {
                llsmtp_span why = {"connection closed by the server", 31};
                for (i = 0; i < m.nto; i++)
                    set_final(i, 451, why);
                break;
            }
            if (verbose)
                show("S: ", buf, have);
            continue;
        }
        if (ev.code != 334)
            in_auth = 0;
        switch (ev.type) {
        case LLSMTP_CEV_READY:
            if (!sent) {
                sent = 1;
                rc = llsmtp_client_mail(&c, &m);
                if (rc != LLSMTP_OK)
                    die("bad --from or --to", llsmtp_strerror(rc));
            } else {
                llsmtp_client_quit(&c);
            }
            break;
        case LLSMTP_CEV_TLS:
            flush(&c);
#ifdef HAVE_OPENSSL
            start_tls(cfg.helo.p);
#endif
            llsmtp_client_tls_started(&c);
            break;
        case LLSMTP_CEV_RCPT:
            if (ev.code / 100 != 2)
                set_final((size_t)ev.rcpt, ev.code, ev.text);
            break;
        case LLSMTP_CEV_BODY: {
            size_t k;
            static char enc[2 * 16384 + 2];
            flush(&c);
            if (verbose)
                fprintf(stderr, "C: (%zu octets of message)\n", body_n);
            for (k = 0; k < body_n; k += 16384) {
                size_t n = body_n - k < 16384 ? body_n - k : 16384, w;
                if (llsmtp_client_body(&c, body + k, n, enc, sizeof enc,
                                       &w) != LLSMTP_OK)
                    die("cannot encode the message", NULL);
                write_all(enc, w);
            }
            llsmtp_client_body_end(&c);
            break;
        }
        case LLSMTP_CEV_MESSAGE:
            if (ev.rcpt >= 0) {
                set_final((size_t)ev.rcpt, ev.code, ev.text);
            } else {
                for (i = 0; i < m.nto; i++)
                    set_final(i, ev.code, ev.text);
            }
            break;
        case LLSMTP_CEV_FAIL:
            for (i = 0; i < m.nto; i++)
                set_final(i, ev.code ? ev.code : 451, ev.text);
            flush(&c);
            done = 1;
            break;
        case LLSMTP_CEV_CLOSED:
            done = 1;
            break;
        default:
            break;
        }
        flush(&c);
    }
    close(fd);
#ifdef HAVE_OPENSSL
    if (ssl != NULL) {
        SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
        SSL_free(ssl);
        SSL_CTX_free(ctx);
    }
#endif
    free(body);
    for (i = 0; i < m.nto; i++) {
        int code = final_code[i] ? final_code[i] : 451;
        printf("%.*s %d %s\n", (int)to[i].n, to[i].p, code,
               final_text[i] ? final_text[i] : "no reply");
        free(final_text[i]);
        if (code / 100 == 2)
            ok++;
        else if (code / 100 == 4)
            temp++;
    }
    fflush(stdout);
    if (ok == m.nto)
        return 0;
    if (ok > 0)
        return 1;
    return temp > 0 ? 3 : 2;
}
