/* SPDX-License-Identifier: MIT
 *
 * hello.c - the README's host example: one SMTP session over a pair of
 * file descriptors (inetd style: stdin/stdout), blocking I/O for brevity.
 * Messages are written to stderr as received (dot-unstuffed).
 * Try: printf 'HELO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n' | build/examples/hello
 */
#include <llsmtp.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#ifdef _WIN32
#include <fcntl.h> /* _O_BINARY */
#include <io.h>    /* _setmode */
#endif

static int
on_data(llsmtp_server *s, const char *p, size_t n)
{
    (void)s;
    fwrite(p, 1, n, stderr); /* the message, dot-unstuffed, CRLF kept */
    return LLSMTP_OK;
}

static void
serve(int in, int out)
{
    static const llsmtp_callbacks cb = {.on_data = on_data};
    llsmtp_config cfg;
    llsmtp_config_init(&cfg);
    cfg.hostname = "mx.example.test";
    cfg.callbacks = &cb;
    size_t size = llsmtp_server_size(&cfg), len, used, off = 0;
    llsmtp_server *s = llsmtp_server_init(malloc(size), size, &cfg, NULL);
    char buf[4096];
    ssize_t n = 0;
    int rc = llsmtp_server_start(s);
    for (;;) {
        const char *o = llsmtp_server_output(s, &len); /* replies to send */
        if (len > 0 && write(out, o, len) != (ssize_t)len)
            break;
        llsmtp_server_consume(s, len);
        if (rc == LLSMTP_CLOSE || rc < 0)
            break;
        if (off == (size_t)n) { /* all fed: read more */
            if ((n = read(in, buf, sizeof buf)) <= 0)
                break;
            off = 0;
        }
        rc = llsmtp_server_feed(s, buf + off, (size_t)n - off, &used);
        off += used; /* BLOCKED: the loop drains, then feeds the rest */
    }
    free(s);
}

int
main(void)
{
#ifdef _WIN32
    /* The C runtime opens the standard streams in text mode: CRLF would
     * come in as LF (so no <CRLF>.<CRLF> ever ends DATA) and replies would
     * go out as CR CR LF. SMTP is bytes. */
    _setmode(_fileno(stdin), _O_BINARY);
    _setmode(_fileno(stdout), _O_BINARY);
    _setmode(_fileno(stderr), _O_BINARY);
#endif
    serve(0, 1);
    return 0;
}
