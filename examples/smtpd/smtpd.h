/* SPDX-License-Identifier: MIT
 *
 * smtpd.h - private to examples/smtpd: the server's one state (struct
 * smtpd: options, listeners, sessions, policy, drain), a connection
 * (struct conn), and what the files of the folder call across:
 *   main.c     options, set-up, clean-up: the program's outline
 *   loop.c     listeners, the poll set, accept, per-connection I/O
 *   session.c  the llsmtp callbacks, users and recipients, ETRN
 *   spool.c    ids, paths, the message while it comes, envelopes, store
 *   tls.c      STARTTLS: every OpenSSL call
 *   log.c      the log (shared with the queue and smtp-send)
 *   commit.c   the storage thread (group commit: fsync, rename)
 *   queue.c    onward delivery: entries, runners, retries, bounces
 *   deliver.c  the SMTP client of the queue and of smtp-send
 *   route.c    DNS and MX routing (also smtp-send's and mxlookup's)
 * No mutable state is file-scope but what a signal handler must reach
 * (loop.c) and the log's prefix cache (log.c); queue.c, deliver.c and
 * route.c keep some large scratch buffers static inside functions.
 */
#ifndef LLSMTP_EXAMPLES_SMTPD_H
#define LLSMTP_EXAMPLES_SMTPD_H

#include "commit.h"
#include "log.h"
#include "queue.h"

#include <llsmtp.h>
#include <poll.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#define MAX_LISTEN 8
#define MAX_DOMAINS 64
#define READ_BUF 65536
/* The output lent to a session with replies to write: room for the
 * replies to a whole pipelined batch (50 recipients: 2.8 KB), so they
 * leave in one write. */
#define LEND_BUF 16384
#define LEND_SPARES 16
/* Seconds a closing session's last replies (221, 421) may wait for a
 * client that does not read them before the connection is cut. */
#define CLOSE_GRACE 10
#define MAX_OWN 64           /* own addresses for user@[addr] */
#define ARG_SHOWN 200        /* octets of a command's argument in the log */
#define TEXT_SHOWN 300       /* octets of a reply's text in the log */
#define MEM_MSG (128 * 1024) /* a message up to this stays in memory */
#define MAX_ETRN 4           /* queue scans at once */

/* TLS 1.2: forward secrecy and AEAD only, in the server's order (no CBC:
 * LUCKY13, no RSA key exchange, no SHA-1 MAC); TLS 1.3 keeps OpenSSL's
 * defaults, all AEAD. */
#define TLS_CIPHERS                                                           \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"              \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"              \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

typedef struct options {
    const char *listen[MAX_LISTEN]; /* "ADDR:PORT" (",proxy" cut off) */
    int listen_proxy[MAX_LISTEN];   /* that listener expects PROXY */
    char listen_buf[MAX_LISTEN][128];
    int nlisten;
    const char *hostname;
    char host_buf[256]; /* this host's name, when hostname is it */
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
    int discard, no_fsync, flush_each_file, verbose, insecure_auth, proxy,
        lmtp;
    unsigned no_ext; /* extensions switched off with --no-... */
    char **users;    /* "name:password" */
    size_t nusers;
    unsigned long long max_size;
    size_t max_rcpt;
    int max_clients;
    int timeout;       /* seconds; 0 = RFC 5321 defaults from the library */
    int quiet_checks;  /* --log-health-checks no */
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

typedef struct conn conn;

/* An ETRN scan's slot: the session that waits for its answer (NULL: a
 * free slot) and the scan's child (kept to kill it with the session;
 * 0 once reaped). */
typedef struct etrn_scan {
    pid_t pid;
    conn *waiter;
} etrn_scan;

/* One poll round's set: listeners, sessions, ETRN pipes, the signal
 * pipe, the storage thread's pipe, in that order. */
typedef struct pollset {
    struct pollfd *fds;
    size_t cap, n;
    size_t nlisten;     /* listeners polled (none while draining) */
    size_t nconn;       /* sessions polled: those accepted later were not */
    size_t sig_i;       /* the signal pipe's place */
    size_t commit_i;    /* the storage thread's, or (size_t)-1 */
    int more;           /* input is due that poll() cannot see */
    time_t next;        /* the earliest session deadline, or 0 */
    long long hdr_next; /* the earliest PROXY header deadline, or 0 */
} pollset;

/* The server: everything it keeps, passed to whoever needs it. */
typedef struct smtpd {
    options opt;
    llsmtp_config cfg, cfg_proxy; /* cfg_proxy: PROXY listeners' */
    llsmtp_callbacks callbacks;   /* what both point to (session.c) */
    llsmtp_relay_policy policy;
    int lfds[MAX_LISTEN];
    conn **conns;
    size_t nconns, conns_cap;
    pollset ps;
    /* The drain has begun (the loop saw the stop flag and closed the
     * listeners): the flag itself may come in the middle of a round. */
    int draining;
    long long stop_at; /* mono_ms() when the drain is over, or 0 */
    /* Sessions told 421 4.3.2 by the drain, at a boundary: "N sessions
     * drained" (one that quits on its own, or never sent its PROXY
     * header, is neither drained nor cut). */
    size_t ndrained;
    void *tls_ctx;     /* SSL_CTX * (tls.c), or NULL */
    committer *commit; /* the storage thread, or NULL (--discard) */
    queue *outq;       /* onward delivery, or NULL (--discard) */
    unsigned long id_counter;
    unsigned char id_rand[250]; /* random octets for ids, used from the */
    size_t id_rand_at;          /* back: one getrandom per 50 ids */
    unsigned long next_sid;     /* the last session's id */
    llsmtp_ip own_addrs[MAX_OWN];
    size_t nown;
    /* ETRN scans (child processes, session.c): a slot is taken at the
     * fork and given back when its session stops waiting (the answer
     * came, or the session went and the scan was killed with it) or its
     * child was reaped: the slots count the scans that work, not the
     * sessions that were once served by one. */
    etrn_scan etrn[MAX_ETRN];
    char rbuf[READ_BUF];
    /* Output buffers lent to sessions while their replies wait
     * (LLSMTP_CFG_LENT_OUTPUT): the spares, and their size. One is
     * enough while every session writes all it has at once. */
    char *spare[LEND_SPARES];
    size_t nspare, lend_cap;
} smtpd;

struct conn {
    smtpd *d; /* the server it belongs to */
    int fd;
    unsigned long sid; /* "session=N": never reused while smtpd runs */
    llsmtp_server *s;
    char peer[64]; /* the client (the PROXY header's, if any) */
    char via[64];  /* behind a balancer: the balancer's address */
    log_hold log;  /* lines held back: a health check's, maybe */
    char *helo;    /* HELO/EHLO argument (NULL: none yet; TEXT() prints "") */
    int is_ehlo;
    char *auth_user; /* who authenticated, or NULL */
    char *sender;    /* reverse path of the transaction */
    /* The recipients: rtext holds each one's forward path and then its
     * ESMTP parameters ("KEY=VALUE KEY", as given), both NUL-terminated;
     * rcpt_at[i] is where recipient i begins (rcpt_path, rcpt_params).
     * One growing buffer per session: no allocation per recipient. */
    char *rtext;
    size_t rtext_len, rtext_cap;
    size_t *rcpt_at;
    char *relay; /* per recipient: 1 relayed, 0 local */
    size_t nrcpt, rcpt_cap;
    /* recipients [0, rcpt_logged) are in the log (log_accepted) */
    size_t rcpt_logged;
    char *params;    /* MAIL parameters as text */
    int write_errno; /* why storing the message failed, or 0 */
    FILE *msg;       /* the message while receiving: in memory (mem),
                           or past MEM_MSG octets DIR/tmp/<id>.eml */
    int mem;         /* msg writes to mbuf (open_memstream) */
    char *mbuf;
    size_t mlen;
    commit_job *job; /* the message being stored (commit.c), or NULL */
    char id[40];
    char *pending; /* input not yet consumed (BLOCKED) */
    size_t pending_len;
    time_t deadline;
    int closing;   /* flush output, then close */
    int tls;       /* TLS_NONE .. TLS_ON */
    unsigned hops; /* Received: headers in the message so far */
    /* ETRN: a child process scans the queue (reading every envelope
     * would stall every session); its ids come through this pipe. */
    int etrn_fd;    /* -1 when none */
    size_t etrn_pi; /* its place in this round's poll set */
    char *etrn_buf;
    size_t etrn_len, etrn_cap;
    unsigned char hdr_pos;      /* header scan: see count_hops */
    short ssl_want;             /* poll events the TLS layer waits for */
    int tls_dead;               /* a fatal TLS error: no close_notify then */
    int proxied;                /* came to a PROXY listener */
    int spoke;                  /* the client's first octets came */
    int awaiting_header;        /* its PROXY header is not complete yet */
    long long header_deadline;  /* mono_ms() */
    unsigned char hdr_seen[16]; /* the header's first octets: why it */
    size_t hdr_seen_n;          /* was refused, for the log */
    int drained;                /* told the drain's 421 4.3.2 */
    time_t close_by; /* closing with replies unread: cut then, or 0 */
    char *loan;      /* the output buffer lent to the session, or NULL */
    void *ssl;       /* SSL * (tls.c), or NULL */
};

/* STARTTLS progress of a connection. */
enum { TLS_NONE = 0, TLS_FLUSH, TLS_HANDSHAKE, TLS_ON };

/* conn_recv / conn_send / tls_recv / tls_send: try again later. */
#define IO_AGAIN (-2)

#define CONN(s) ((conn *)llsmtp_server_user(s))

/* A string a connection keeps only when it has one: "" otherwise. An
 * idle session after EHLO costs what it holds, not what it might. */
#define TEXT(p) ((p) != NULL ? (p) : "")

/* loop.c */
void listeners_open(smtpd *d);
int signals_init(void);
int loop_run(smtpd *d);
void runner_setup(void *arg);
void arm_timer(conn *c);
int conn_lend(conn *c);
int flush_out(conn *c);
void drain_told(conn *c);

/* session.c */
void session_callbacks_init(llsmtp_callbacks *cb);
void add_user(smtpd *d, const char *spec, const char *where);
void read_users(smtpd *d, const char *path);
void read_recipients(const char *opt_name, const char *path, char ***out,
                     size_t *n);
void free_tx(conn *c);
int keep_text(char **dst, const char *p, size_t n);
void session_forget(conn *c);
int proxy_trusted(const smtpd *d, const llsmtp_ip *ip);
int etrn_read(conn *c);
/* A session stops waiting for its scan (it went, or the answer came):
 * the scan is killed if it still runs, its slot given back. */
void etrn_forget(conn *c);
/* queue_reap's hook for a child that was no runner (arg: the smtpd). */
void etrn_reaped(void *arg, pid_t pid);
const char *protocol(const conn *c);
const char *rcpt_path(const conn *c, size_t i);
const char *rcpt_params(const conn *c, size_t i);

/* spool.c */
int spool_open(smtpd *d);
void new_id(smtpd *d, char *buf, size_t n);
int spool_begin(conn *c, llsmtp_reply *r);
int spool_write(conn *c, const char *p, size_t n);
void drop_message(conn *c);
int spool_submit(conn *c, llsmtp_reply *r);
void store_failed(conn *c, llsmtp_reply *r, int err);
void stored(smtpd *d, commit_job *j);

/* tls.c */
const char *tls_library(void);
int tls_setup(smtpd *d);
void tls_free(smtpd *d);
ssize_t tls_recv(conn *c, char *buf, size_t n);
ssize_t tls_send(conn *c, const char *buf, size_t n);
int tls_pending(const conn *c);
int tls_step(conn *c);
int tls_names(const conn *c, const char **version, const char **cipher);
void tls_close(conn *c);

#endif
