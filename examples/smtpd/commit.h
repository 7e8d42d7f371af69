/* SPDX-License-Identifier: MIT
 *
 * commit.h - smtpd's group commit: messages that became ready while the
 * previous flush ran are made durable together by one storage thread,
 * off the poll loop, which goes on serving every session meanwhile.
 *
 * A job is one message: its DIR/tmp/<id>.eml (written through the FILE,
 * not yet flushed), or the message in memory, and the text of its
 * envelopes. The thread takes every
 * job waiting (a batch: no timer, a lonely message goes at once), writes
 * the envelopes under DIR/tmp, flushes every file of the batch (a batch
 * of several messages by one syncfs of the spool's file system; a lonely
 * message, or any with each_file, by fdatasync, side by side with 7
 * helper threads), links the files into DIR (local recipients: .env first)
 * and DIR/queue (relayed ones: .eml first), fsyncs each directory once
 * for the whole batch, and only then hands the jobs back (a byte on the
 * pipe commit_fd() returns). So no final name ever points at a file that
 * is not on stable storage, and a killed server leaves a batch it had not
 * flushed in DIR/tmp only, where no reader looks.
 */
#ifndef LLSMTP_EXAMPLES_COMMIT_H
#define LLSMTP_EXAMPLES_COMMIT_H

#include <stdio.h>

/* The storage thread (commit_open); opaque. */
typedef struct committer committer;

typedef struct commit_job {
    struct commit_job *next;
    void *owner;  /* the session waiting; NULL once it is gone */
    FILE *msg;    /* DIR/tmp/<id>.eml, written; closed by the thread */
    char *mem;    /* or, when msg is NULL, the message in memory: */
    size_t mem_n; /* the thread writes DIR/tmp/<id>.eml itself */
    char id[64];
    char *env_local; /* envelope of the local recipients, or NULL */
    char *env_relay; /* of the relayed ones (DIR/queue), or NULL */
    size_t env_local_n, env_relay_n;
    int err;       /* when handed back: 0 stored, else an errno */
    int cancelled; /* its session ended before the thread took it */
} commit_job;

/* Starts the storage thread for spool (DIR), whose tmp/ and queue/
 * exist; each_file: never syncfs (smtpd's --flush-each-file; nor where
 * syncfs is not known to be as good as fdatasync, see commit.c). Returns
 * it, or NULL (errno). The environment variable
 * LLSMTP_TEST_KILL_BEFORE_FLUSH=N (tests only: tests/integration.py)
 * makes the server kill itself with SIGKILL after writing the first batch
 * of at least N messages and before flushing it, having first written
 * "commit: killed before the flush of a batch of K" to standard error.
 * LLSMTP_TEST_DIR_FSYNC_DELAY_MS=N (tests only) waits N ms after a
 * batch's files have their final names and before the directories are
 * flushed: a slow disk, so tests can see what happens in that window.
 * LLSMTP_TEST_FLUSH_FAIL=N (tests only) fails the flush of the first
 * batch of at least N messages with EIO, as a disk's write error would. */
committer *commit_open(const char *spool, int no_fsync, int each_file);
/* How batches are made durable, for the log: "syncfs ...", "fdatasync"
 * (--flush-each-file, or a file system where syncfs is not used) or
 * "nothing (--no-fsync)". */
const char *commit_flush_how(const committer *cm);
/* The descriptor to poll for POLLIN: jobs are done. -1 when cm is NULL
 * (not open). */
int commit_fd(const committer *cm);
/* A new job, all zero (NULL when out of memory); free it with
 * commit_free. */
commit_job *commit_new(void);
/* Hands a job over (its msg, mem, env_local and env_relay belong to the
 * committer from now on). */
void commit_submit(committer *cm, commit_job *j);
/* The session of j is gone: a job the thread has not taken yet is
 * dropped (its files removed); one it has taken is finished (stored,
 * with no 250 sent: a duplicate at worst, never a loss). Either way it
 * comes back through commit_done with owner NULL. */
void commit_cancel(committer *cm, commit_job *j);
/* The jobs handed back since the last call, in the order they were
 * submitted (empties the pipe). Free each with commit_free. */
commit_job *commit_done(committer *cm);
void commit_free(commit_job *j);
/* Finishes every job submitted, stops the thread and frees what is left
 * (nobody is told), cm too. NULL: nothing to do. */
void commit_close(committer *cm);

#endif
