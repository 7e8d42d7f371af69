/* SPDX-License-Identifier: MIT
 *
 * hello.c - the README's host example: one SMTP session over a pair of
 * file descriptors (inetd style: stdin/stdout), blocking I/O for brevity.
 * Messages are written to stderr as received (dot-unstuffed). The loop
 * asks the session what it wants and does it (llsmtp_server_wants).
 * Compiles as C99 and as C++17.
 * Try: printf 'HELO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n' | build/examples/hello
 */
#include <llsmtp.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    llsmtp_callbacks cb;
    llsmtp_config cfg;
    memset(&cb, 0, sizeof cb); /* every callback NULL: the defaults */
    cb.on_data = on_data;
    llsmtp_config_init(&cfg);
    cfg.hostname = "mx.example.test";
    cfg.callbacks = &cb;
    size_t size = llsmtp_server_size(&cfg), off = 0, len = 0, used;
    llsmtp_server *s = llsmtp_server_init(malloc(size), size, &cfg, NULL);
    char buf[4096];
    llsmtp_server_start(s);
    for (;;) {
        unsigned want = llsmtp_server_wants(s);
        if (want & LLSMTP_WANT_WRITE) { /* replies to send */
            llsmtp_span o = llsmtp_server_output(s);
            if (write(out, o.p, o.n) != (ssize_t)o.n)
                break;
            llsmtp_server_consume(s, o.n);
        } else if (want & LLSMTP_WANT_READ) { /* bytes to feed */
            if (off == len) {
                ssize_t n = read(in, buf, sizeof buf);
                if (n <= 0) {
                    llsmtp_server_eof(s);
                    break;
                }
                off = 0;
                len = (size_t)n;
            }
            llsmtp_server_feed(s, buf + off, len - off, &used);
            off += used;
        } else { /* CLOSE; no TLS here, no deferred decision */
            break;
        }
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
