/* SPDX-License-Identifier: MIT
 *
 * queue.h - smtpd's onward delivery: queue entries in SPOOL/queue, a
 * runner process per entry attempt, retries, and RFC 3464 bounces.
 */
#ifndef LLSMTP_EXAMPLES_QUEUE_H
#define LLSMTP_EXAMPLES_QUEUE_H

#include "route.h"

#include <stdio.h>
#include <time.h>

#define QUEUE_RETRY_MAX 16

/* The queue (queue_new); opaque. */
typedef struct queue queue;

typedef struct queue_conf {
    const char *spool;    /* entries live in SPOOL/queue */
    const char *hostname; /* HELO name, Reporting-MTA, bounce From: */
    const char *const *local_domains; /* bounces to these stay here */
    size_t nlocal;
    const char *smarthost; /* "host:port" (MX of host), "[host]:port", NULL */
    route_dns dns;
    unsigned mx_port;                /* 25 unless set (tests) */
    unsigned retry[QUEUE_RETRY_MAX]; /* seconds; the last one repeats */
    size_t nretry;
    unsigned long max_queue_time; /* seconds (RFC 5321 4.5.4.1) */
    int max_runners;              /* deliveries at once */
    int timeout;                  /* client waits; 0: RFC 5321 */
    int tls;                      /* 0 may, 1 encrypt, 2 verify */
    const char *ca_file;          /* for verify; NULL: system CAs */
    int no_fsync;
    int verbose;                 /* log each dialogue */
    void (*child_setup)(void *); /* in a runner: close what it
                                         must not hold */
    void *child_arg;             /* child_setup's argument */
    size_t bounce_size_limit;    /* body octets a bounce returns */
    const char *const *listen;   /* "ADDR:PORT" smtpd listens on: */
    size_t nlisten;              /* MX hosts there are this host */
} queue_conf;

/* The envelope files' format (README: "Envelope files"): every value
 * from a client is xtext (RFC 3461), so no byte of it can end a field
 * or a line; version 1 files (raw values) are still read. */
#define QUEUE_ENV_VERSION 2
/* Writes p[0..n) as xtext: "+", "=", "<", ">", space, control
 * characters as "+HH"; UTF-8 as it is. */
void queue_xtext_put(FILE *f, const char *p, size_t n);
/* Writes "K=V K=V" (ESMTP parameters as given, which hold no space nor
 * control character; a parameter that does is left out). */
void queue_params_put(FILE *f, const char *params);

/* A new queue, not open yet; NULL when out of memory. */
queue *queue_new(void);
/* Takes SPOOL/smtpd.lock (a POSIX record lock: this process's, held
 * until it exits, never inherited by its children): one smtpd per spool,
 * or its start-up scan could remove what the other is writing. Returns
 * 0, or -1 (errno; EWOULDBLOCK: another process holds it, its pid in
 * *holder when known). Call before queue_open. */
int queue_lock(queue *qu, const char *spool, long *holder);
/* In a child process: closes the lock's descriptor. The lock is the
 * parent's alone and goes when the parent dies, so a restart after a
 * crash never waits for runners left from before. */
void queue_child(queue *qu);

/* Creates SPOOL/queue and reads the entries already there. Returns 0, or
 * -1 (errno) when the directory cannot be made. */
int queue_open(queue *qu, const queue_conf *qc);
/* A new entry (its .env and .eml are in SPOOL/queue): due now. Not while
 * the id is held. */
void queue_add(queue *qu, const char *id);
/* The storage thread is making id's files durable: they may already have
 * their names in SPOOL/queue, but no runner may take them (a scan skips
 * them) until queue_release; then queue_add when they were stored. */
void queue_hold(queue *qu, const char *id);
void queue_release(queue *qu, const char *id);
/* Starts runners for due entries. Returns the poll timeout in ms until
 * the next thing to do, or -1 for nothing. */
int queue_run(queue *qu, time_t now);
/* Collects every ended child process: its runners, and any other (an
 * ETRN scan) handed to other(arg, pid) once it is reaped. */
void queue_reap(queue *qu, time_t now, void (*other)(void *arg, pid_t pid),
                void *arg);
/* ETRN (RFC 1985) without blocking the server (smtpd scans in a child
 * process): how many entries there are; in the child, the ids of the
 * entries with an open recipient in node (or, for "@d", in d and its
 * subdomains), one per line to fd (0, or -1 when fd fails); in the
 * server, make one entry due now (1 when it exists). */
size_t queue_entries(queue *qu);
int queue_etrn_scan(queue *qu, const char *node, size_t n, int fd);
int queue_make_due(queue *qu, const char *id);
/* Runners still working (0 for NULL: no queue). */
size_t queue_busy(const queue *qu);
/* Frees the queue (runners are left to finish); NULL: nothing. */
void queue_close(queue *qu);

/* Writes all n octets to fd (retrying after EINTR and short writes).
 * Returns 0, or -1 (errno). */
int queue_write_all(int fd, const char *p, size_t n);

/* fsync()s a directory, so the renames into it survive a crash. Returns
 * 0, or -1 (errno). With no_fsync: nothing, 0. */
int queue_sync_dir(const char *dir, int no_fsync);

/* Writes an envelope+message pair durably into dir: tmpdir/<id>.{env,
 * eml} first, then renamed in. Into the queue (env_last), the .env last,
 * as smtpd's store_message does there: an .eml without its .env is only
 * ever an entry being stored, and an .env without its .eml only ever one
 * half removed (the .eml goes first), which the start-up scan removes.
 * Into the local spool, the .env first (README: a reader never finds an
 * .eml without its envelope). Used for bounces. */
int queue_store(const char *dir, const char *tmpdir, const char *id,
                const char *env, const char *eml, size_t emln, int env_last,
                int no_fsync);

#endif
