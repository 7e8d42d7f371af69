/* SPDX-License-Identifier: MIT
 *
 * harness.h - a recording host for the server session, shared by the
 * tests: every callback appends one line to an event log, host decisions
 * come from rules ("H:" lines in transcripts), deferred decisions are
 * resumed by the driver, and a runner feeds an input in any split and
 * collects the output. Test code only: it allocates freely. The code is
 * in harness.c, linked into every test.
 */
#ifndef LLSMTP_TEST_HARNESS_H
#define LLSMTP_TEST_HARNESS_H

#include <llsmtp.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TH_MAX_RULES 32

typedef struct th_rule {
    char kind[16];   /* event kind: mail, rcpt, data_end, ... */
    char match[128]; /* substring of the event argument, or "*" */
    int defer;       /* return PENDING, then resume with the reply */
    int fail;        /* return LLSMTP_E_CALLBACK */
    int pause;       /* on_data: return PENDING each time */
    int code;        /* 0: keep the default reply */
    char enh[12];
    char text[1100];
    char id[65];
} th_rule;

typedef struct th_buf {
    char *p;
    size_t n, cap;
} th_buf;

typedef struct th_host {
    th_buf events; /* one line per callback */
    th_buf msg;    /* the message being received */
    th_buf out;    /* everything the session wrote */
    th_rule rules[TH_MAX_RULES];
    size_t nrules;
    int have_resume;     /* a deferral is waiting for the driver */
    llsmtp_reply resume; /* ... with this decision */
    char resume_text[1100];
    char resume_id[65];
    int data_pauses; /* on_data PENDING count */
    /* LLSMTP_CFG_LENT_OUTPUT under th_run_wants: two buffers of lend_cap
     * octets, lent in turn before each call and taken back (and
     * scribbled over) once drained */
    char *lend[2];
    size_t lend_cap;
    unsigned lends;
    /* th_run_wants: feed whenever the session wants to read, and write
     * only when it does not (a peer that reads its replies late) */
    int reads_first;
} th_host;

#define TH_HOST(s) ((th_host *)llsmtp_server_user(s))

/* Feeds a string literal (its length counted by the compiler). */
#define TH_FEED(s, lit, used)                                                 \
    llsmtp_server_feed((s), (lit), sizeof(lit) - 1, (used))

/* The recording callbacks: each logs an event and decides by the rules. */
extern const llsmtp_callbacks th_callbacks;

void th_buf_add(th_buf *b, const char *p, size_t n);
void th_buf_adds(th_buf *b, const char *str);
void th_buf_free(th_buf *b);
/* Escapes bytes for an event line: \r \n \t \\ and \xHH. */
void th_escape(th_buf *b, const char *p, size_t n);
void th_event(th_host *h, const char *kind, const char *arg, size_t argn);
/* Whether needle occurs in p[0..n) (output spans are not strings). */
int th_contains(const char *p, size_t n, const char *needle);
/* Drains the session's output into h->out. */
void th_drain(llsmtp_server *s, th_host *h);
/* Resumes a paused session the way its rule says. */
int th_resume(llsmtp_server *s, th_host *h);
/* Feeds in[0..n) cut at the given chunk sizes (NULL: whole), handling
 * PAUSED, BLOCKED and CLOSE as a host would. tls[0..ntls) are offsets
 * where the client finished a TLS handshake: chunks never cross them and
 * llsmtp_server_tls_started is called there. eof: call llsmtp_server_eof
 * after the input. Returns the last status. */
int th_run_tls(llsmtp_server *s, th_host *h, const char *in, size_t n,
               const size_t *cuts, size_t ncuts, int eof, const size_t *tls,
               size_t ntls);
/* The same, driven by llsmtp_server_wants() alone (a host loop keeping
 * no flags), checking each bit against what the next call does. */
int th_run_wants(llsmtp_server *s, th_host *h, const char *in, size_t n,
                 const size_t *cuts, size_t ncuts, int eof, const size_t *tls,
                 size_t ntls);
int th_run(llsmtp_server *s, th_host *h, const char *in, size_t n,
           const size_t *cuts, size_t ncuts, int eof);
/* A session in malloc'd memory with the recording callbacks. */
llsmtp_server *th_session(const llsmtp_config *cfg, th_host *h);
void th_host_free(th_host *h);
/* Deterministic PRNG for splits (xorshift64*). */
uint64_t th_rand(uint64_t *st);
/* A generated path for the differential tests (a fast path against the
 * general one), at most cap octets, its length returned: mostly the
 * common "<local@domain>" in mixed case, often not (quoted local parts
 * with spaces, '>', '@' and escapes; UTF-8, valid and not; address
 * literals; source routes; <>, <Postmaster>; empty, long and hyphenated
 * labels; trailing dots; long paths; hostile octets, NUL included;
 * missing brackets). */
size_t th_gen_path(uint64_t *seed, char *buf, size_t cap);
/* A generated domain (the same kinds), at most cap octets. */
size_t th_gen_domain(uint64_t *seed, char *buf, size_t cap);

/* The session's pending output as pointer and length. */
static inline const char *
th_output(const llsmtp_server *s, size_t *n)
{
    llsmtp_span o = llsmtp_server_output(s);
    if (n != NULL)
        *n = o.n;
    return o.p;
}

#endif /* LLSMTP_TEST_HARNESS_H */
