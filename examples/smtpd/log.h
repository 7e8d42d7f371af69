/* SPDX-License-Identifier: MIT
 *
 * log.h - the one log of smtpd, its queue runners and smtp-send: lines
 * "<UTC time> <prog>[<pid>]: <text>" on stderr, a session's lines held
 * back while it may be a balancer's health check, and "<prog>: <text>"
 * for a refusal that ends the program.
 */
#ifndef LLSMTP_EXAMPLES_LOG_H
#define LLSMTP_EXAMPLES_LOG_H

#include <stddef.h>

/* The program's name in every line ("smtpd"); call first. */
void log_init(const char *prog);
/* In a child process: its lines carry its own pid from now on. */
void log_forked(void);
/* The pid the log shows (cached). */
long log_pid(void);

/* One line: "<time> <prog>[<pid>]: " and the text. */
void log_line(const char *fmt, ...);
/* stderr fully buffered (64 KiB), written out by log_flush, or before a
 * line would not fit: never in the middle of a line. */
void log_buffer(void);
void log_flush(void);

/* A transaction's accepted recipients, a line for as many as fit in
 * 1,024 octets: "session=SID rcpt=<PATH> [rcpt=<PATH>...]
 * accepted=local|relay", the local ones and the relayed ones on lines
 * of their own (one recipient: the line of one per recipient that smtpd
 * wrote before). Built without a format to parse: log_rcpts_start, a
 * log_rcpts_add per recipient, log_rcpts_end. */
typedef struct log_rcpts {
    char line[1024];
    size_t len; /* 0: no line started */
    unsigned long sid;
    int relay; /* the started line's */
} log_rcpts;
void log_rcpts_start(log_rcpts *b, unsigned long sid);
void log_rcpts_add(log_rcpts *b, const char *path, size_t n, int relay);
void log_rcpts_end(log_rcpts *b);

/* A session's lines held back (see log_held); zeroed: not holding. */
typedef struct log_hold {
    char *buf; /* lines not yet written */
    size_t len;
    int on; /* lines go to buf, not to the log */
} log_hold;
/* One line of a session: written, or kept in h while h->on (at most
 * LOG_HELD_MAX octets: past that, all of it is written). */
void log_held(log_hold *h, const char *fmt, ...);
/* The held lines out in the log now; no more holding. */
void log_release(log_hold *h);
/* The held lines dropped unwritten (a health check's). */
void log_hold_free(log_hold *h);

/* Client text for the log: anything unprintable as '?', cut to cap-1. */
void log_printable(char *dst, size_t cap, const char *p, size_t n);

/* "<prog>: <text>" on stderr (a command-line tool's message). */
void log_say(const char *fmt, ...);
/* The same, then exit(code). */
void log_die(int code, const char *fmt, ...);

#endif
