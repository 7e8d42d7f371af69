/* SPDX-License-Identifier: MIT
 *
 * commit.c - smtpd's group commit (see commit.h): one storage thread
 * (and its flush helpers) makes every message of a batch durable with
 * one pass of flushes and one fsync per directory, while the poll loop
 * goes on.
 *
 * These threads touch files and their own lists only: no stdio but the
 * message's own FILE, no log (errors go back in the job), no malloc, so
 * a fork() in the main thread (queue runners, ETRN scans) never inherits
 * a lock they hold but the mutexes below, which no child uses.
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sync_file_range */
#endif
#include "commit.h"
#include "queue.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A job's files; private to this file. */
enum { F_EML, F_ENV, F_QENV, F_N };
/* Names a job made in DIR and DIR/queue (bits of its made field). */
enum { M_LENV = 1, M_LEML = 2, M_QEML = 4, M_QENV = 8 };

typedef struct job_priv {
    commit_job pub; /* first: a commit_job * is a job_priv * */
    int fd[F_N];
    unsigned made;
} job_priv;

static char spool[4096];
static int no_fsync, kill_at, pipe_r = -1, pipe_w = -1;
static int fsync_delay_ms; /* LLSMTP_TEST_DIR_FSYNC_DELAY_MS */
static int dir_fd = -1, qdir_fd = -1;
static pthread_t thread;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

/* The flushes of a batch run side by side: the storage thread and
 * FLUSHERS - 1 helpers each take the next file. A disk serves many
 * flushes at once about as fast as one (measured here with a busy disk:
 * 20 files fdatasync'ed one after another, 64 ms; by 4 threads, 4.7 ms),
 * as Postfix's many cleanup processes get for free. */
#define FLUSHERS 8
#define FLUSH_MAX 256 /* files handed out at a time */
static pthread_t helper[FLUSHERS - 1];
static int nhelpers;
static pthread_mutex_t fmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fwork = PTHREAD_COND_INITIALIZER;
static pthread_cond_t fdone = PTHREAD_COND_INITIALIZER;
/* Guarded by fmu: the files to flush, the next one to take, how many are
 * done; each one's errno (0: on stable storage). */
static int ffd[FLUSH_MAX], ferr[FLUSH_MAX];
static size_t fn, fnext, fdone_n;
static int fclosing;
/* Guarded by mu: submitted and not taken yet; handed back; stopping. */
static commit_job *waiting, **waiting_tail = &waiting;
static commit_job *done, **done_tail = &done;
static int closing;

static void
path_of(char *buf, size_t n, const char *dir, const char *id,
        const char *ext)
{
    snprintf(buf, n, "%s%s/%s.%s", spool, dir, id, ext);
}

/* DIR/tmp/<id>.<ext> with text in it (not flushed yet), or -1. */
static int
put_tmp(const char *id, const char *ext, const char *text, size_t n)
{
    char path[4200];
    int fd;
    path_of(path, sizeof path, "/tmp", id, ext);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0640);
    if (fd < 0)
        return -1;
    if (queue_write_all(fd, text, n) != 0) {
        int err = errno;
        close(fd);
        unlink(path);
        errno = err;
        return -1;
    }
    return fd;
}

/* Links DIR/tmp/<id>.<from> to DIR<dir>/<id>.<to> (link() never replaces
 * a file: an id already there fails this message, never another's). */
static int
link_in(const char *id, const char *from, const char *dir, const char *to)
{
    char a[4200], b[4200];
    path_of(a, sizeof a, "/tmp", id, from);
    path_of(b, sizeof b, dir, id, to);
    return link(a, b);
}

/* Removes what a job made in DIR and DIR/queue, .eml first: a reader
 * never finds a local .eml without its .env, and the queue's start-up
 * scan removes an .env left without its .eml. */
static void
unmake(job_priv *p)
{
    static const struct {
        unsigned bit;
        const char *dir, *ext;
    } names[] = {{M_LEML, "", "eml"},
                 {M_LENV, "", "env"},
                 {M_QEML, "/queue", "eml"},
                 {M_QENV, "/queue", "env"}};
    char path[4200];
    size_t i;
    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        if (p->made & names[i].bit) {
            path_of(path, sizeof path, names[i].dir, p->pub.id,
                    names[i].ext);
            unlink(path);
        }
    p->made = 0;
}

static void
fail(job_priv *p, int err)
{
    if (p->pub.err == 0)
        p->pub.err = err ? err : EIO;
    unmake(p);
}

/* Closes the job's files and removes its names under DIR/tmp (what was
 * linked in stays: one inode, one copy). */
static void
finish(job_priv *p)
{
    static const char *const ext[F_N] = {"eml", "env", "qenv"};
    char path[4200];
    int i;
    for (i = 0; i < F_N; i++) {
        if (i == F_EML && p->pub.msg != NULL) {
            if (fclose(p->pub.msg) != 0 && p->pub.err == 0)
                fail(p, errno);
            p->pub.msg = NULL;
        } else if (p->fd[i] >= 0) {
            close(p->fd[i]);
        } else {
            continue;
        }
        p->fd[i] = -1;
        path_of(path, sizeof path, "/tmp", p->pub.id, ext[i]);
        unlink(path);
    }
}

static int
flush_file(int fd)
{
    if (no_fsync)
        return 0;
    while (fdatasync(fd) != 0)
        if (errno != EINTR)
            return -1;
    return 0;
}

static int
flush_dir(int fd)
{
    if (no_fsync)
        return 0;
    while (fsync(fd) != 0)
        if (errno != EINTR)
            return -1;
    return 0;
}

/* Takes files off the list until none is left; called with fmu held. */
static void
flush_some(void)
{
    while (fnext < fn) {
        size_t i = fnext++;
        int r;
        pthread_mutex_unlock(&fmu);
        r = flush_file(ffd[i]) == 0 ? 0 : errno ? errno : EIO;
        pthread_mutex_lock(&fmu);
        ferr[i] = r;
        if (++fdone_n == fn)
            pthread_cond_signal(&fdone);
    }
}

static void *
helper_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&fmu);
    while (!fclosing) {
        if (fnext < fn)
            flush_some();
        else
            pthread_cond_wait(&fwork, &fmu);
    }
    pthread_mutex_unlock(&fmu);
    return NULL;
}

/* fdatasyncs fds[0..n) side by side; errs[i] gets each one's errno. */
static void
flush_files(const int *fds, int *errs, size_t n)
{
    size_t at, k, i;
    for (at = 0; at < n; at += k) {
        k = n - at < FLUSH_MAX ? n - at : FLUSH_MAX;
        pthread_mutex_lock(&fmu);
        for (i = 0; i < k; i++)
            ffd[i] = fds[at + i];
        fn = k;
        fnext = fdone_n = 0;
        pthread_cond_broadcast(&fwork);
        flush_some();
        while (fdone_n < fn)
            pthread_cond_wait(&fdone, &fmu);
        for (i = 0; i < k; i++)
            errs[at + i] = ferr[i];
        fn = fnext = 0;
        pthread_mutex_unlock(&fmu);
    }
}

/* One batch, start to end. */
static void
commit_batch(commit_job *batch)
{
    commit_job *j;
    size_t n = 0;
    int any_local = 0, any_relay = 0, i;
    /* 1. the message's last buffer, the envelopes: written, not flushed */
    for (j = batch; j != NULL; j = j->next) {
        job_priv *p = (job_priv *)j;
        if (j->err != 0)
            continue; /* cancelled */
        if (j->msg != NULL ? fflush(j->msg) != 0
                           : (p->fd[F_EML] = put_tmp(j->id, "eml", j->mem,
                                                     j->mem_n)) < 0) {
            fail(p, errno);
            continue;
        }
        if (j->msg != NULL)
            p->fd[F_EML] = fileno(j->msg);
        if (j->env_local != NULL &&
            (p->fd[F_ENV] = put_tmp(j->id, "env", j->env_local,
                                    j->env_local_n)) < 0) {
            fail(p, errno);
            continue;
        }
        if (j->env_relay != NULL &&
            (p->fd[F_QENV] = put_tmp(j->id, "qenv", j->env_relay,
                                     j->env_relay_n)) < 0) {
            fail(p, errno);
            continue;
        }
        n++;
    }
    if (kill_at > 0 && n >= (size_t)kill_at) {
        /* tests only (commit.h): the batch is written, nothing flushed */
        char line[80];
        int len = snprintf(line, sizeof line,
                           "commit: killed before the flush of a batch "
                           "of %zu\n", n);
        if (write(2, line, (size_t)len) < 0) {
            /* the kill says it anyway */
        }
        kill(getpid(), SIGKILL);
    }
#ifdef SYNC_FILE_RANGE_WRITE
    /* Start the writeback of every file before waiting for any: the
     * first fdatasync then commits the file system's journal for the
     * whole batch, and the others find their data on the disk already
     * (ext4: 2 journal commits per message become about 1 per batch). */
    if (!no_fsync)
        for (j = batch; j != NULL; j = j->next) {
            job_priv *p = (job_priv *)j;
            if (j->err == 0)
                for (i = 0; i < F_N; i++)
                    if (p->fd[i] >= 0)
                        sync_file_range(p->fd[i], 0, 0,
                                        SYNC_FILE_RANGE_WRITE);
        }
#endif
    /* 2. every file on stable storage, the flushes side by side */
    if (!no_fsync) {
        static int fds[FLUSH_MAX], errs[FLUSH_MAX];
        commit_job *from = batch;
        while (from != NULL) {
            size_t nf = 0, k = 0;
            commit_job *to;
            /* as many jobs as fit (F_N files each at most) */
            for (to = from; to != NULL && nf + F_N <= FLUSH_MAX;
                 to = to->next) {
                job_priv *p = (job_priv *)to;
                if (to->err == 0)
                    for (i = 0; i < F_N; i++)
                        if (p->fd[i] >= 0)
                            fds[nf++] = p->fd[i];
            }
            flush_files(fds, errs, nf);
            for (j = from; j != to; j = j->next) {
                job_priv *p = (job_priv *)j;
                if (j->err == 0)
                    for (i = 0; i < F_N; i++)
                        if (p->fd[i] >= 0 && errs[k++] != 0 && j->err == 0)
                            fail(p, errs[k - 1]);
            }
            from = to;
        }
    }
    /* 3. the names readers look for, only now */
    for (j = batch; j != NULL; j = j->next) {
        job_priv *p = (job_priv *)j;
        if (j->err != 0)
            continue;
        if (j->env_relay != NULL) {
            /* in the queue the .env comes last: an .eml alone there is
             * being stored, an .env alone half removed (queue.h) */
            if (link_in(j->id, "eml", "/queue", "eml") != 0) {
                fail(p, errno);
                continue;
            }
            p->made |= M_QEML;
            if (link_in(j->id, "qenv", "/queue", "env") != 0) {
                fail(p, errno);
                continue;
            }
            p->made |= M_QENV;
            any_relay = 1;
        }
        if (j->env_local != NULL) {
            /* in DIR the .env comes first: a reader never finds an .eml
             * without its envelope */
            if (link_in(j->id, "env", "", "env") != 0) {
                fail(p, errno);
                continue;
            }
            p->made |= M_LENV;
            if (link_in(j->id, "eml", "", "eml") != 0) {
                fail(p, errno);
                continue;
            }
            p->made |= M_LEML;
            any_local = 1;
        }
    }
    if (fsync_delay_ms > 0) { /* tests only: a slow disk (commit.h) */
        struct timespec ts;
        ts.tv_sec = fsync_delay_ms / 1000;
        ts.tv_nsec = (long)(fsync_delay_ms % 1000) * 1000000L;
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    /* 4. one fsync per directory for the whole batch */
    if (any_relay && flush_dir(qdir_fd) != 0) {
        int err = errno;
        for (j = batch; j != NULL; j = j->next)
            if (((job_priv *)j)->made & (M_QEML | M_QENV))
                fail((job_priv *)j, err);
    }
    if (any_local && flush_dir(dir_fd) != 0) {
        int err = errno;
        for (j = batch; j != NULL; j = j->next)
            if (((job_priv *)j)->made & (M_LEML | M_LENV))
                fail((job_priv *)j, err);
    }
    for (j = batch; j != NULL; j = j->next)
        finish((job_priv *)j);
}

static void *
commit_main(void *arg)
{
    (void)arg;
    for (;;) {
        commit_job *batch, *j;
        pthread_mutex_lock(&mu);
        while (waiting == NULL && !closing)
            pthread_cond_wait(&cv, &mu);
        batch = waiting;
        waiting = NULL;
        waiting_tail = &waiting;
        for (j = batch; j != NULL; j = j->next)
            if (j->cancelled)
                j->err = ECANCELED; /* nothing of it is stored */
        pthread_mutex_unlock(&mu);
        if (batch == NULL)
            break; /* closing, and nothing left */
        commit_batch(batch);
        pthread_mutex_lock(&mu);
        *done_tail = batch;
        for (j = batch; j->next != NULL; j = j->next)
            ;
        done_tail = &j->next;
        pthread_mutex_unlock(&mu);
        if (write(pipe_w, "", 1) < 0) {
            /* EAGAIN: the pipe is full of wake-ups already */
        }
    }
    return NULL;
}

/* commit_open failed: what it had opened is closed; errno kept.
 * Returns -1. */
static int
commit_unopen(void)
{
    int err = errno;
    if (dir_fd >= 0)
        close(dir_fd);
    if (qdir_fd >= 0)
        close(qdir_fd);
    if (pipe_r >= 0) {
        close(pipe_r);
        close(pipe_w);
    }
    dir_fd = qdir_fd = pipe_r = pipe_w = -1;
    errno = err;
    return -1;
}

int
commit_open(const char *dir, int nofsync)
{
    char path[4200];
    const char *k = getenv("LLSMTP_TEST_KILL_BEFORE_FLUSH");
    int p[2], err;
    sigset_t all, old;
    snprintf(spool, sizeof spool, "%s", dir);
    no_fsync = nofsync;
    kill_at = k != NULL ? atoi(k) : 0;
    k = getenv("LLSMTP_TEST_DIR_FSYNC_DELAY_MS");
    fsync_delay_ms = k != NULL ? atoi(k) : 0;
    snprintf(path, sizeof path, "%s/queue", dir);
    dir_fd = open(dir, O_RDONLY);
    qdir_fd = open(path, O_RDONLY);
    if (dir_fd < 0 || qdir_fd < 0 || pipe(p) != 0)
        return commit_unopen();
    pipe_r = p[0];
    pipe_w = p[1];
    fcntl(pipe_r, F_SETFL, fcntl(pipe_r, F_GETFL) | O_NONBLOCK);
    fcntl(pipe_w, F_SETFL, fcntl(pipe_w, F_GETFL) | O_NONBLOCK);
    /* every signal goes to the poll loop, whose poll() it must wake */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    err = pthread_create(&thread, NULL, commit_main, NULL);
    /* helpers for the flushes: fewer (or none) only slows them down */
    for (nhelpers = 0; err == 0 && !no_fsync && nhelpers < FLUSHERS - 1 &&
                       pthread_create(&helper[nhelpers], NULL, helper_main,
                                      NULL) == 0;
         nhelpers++)
        ;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err == 0)
        return 0;
    errno = err;
    return commit_unopen();
}

int
commit_fd(void)
{
    return pipe_r;
}

void
commit_submit(commit_job *j)
{
    job_priv *p = (job_priv *)j;
    int i;
    for (i = 0; i < F_N; i++)
        p->fd[i] = -1;
    p->made = 0;
    j->next = NULL;
    j->err = 0;
    j->cancelled = 0;
    pthread_mutex_lock(&mu);
    *waiting_tail = j;
    waiting_tail = &j->next;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

void
commit_cancel(commit_job *j)
{
    pthread_mutex_lock(&mu);
    j->cancelled = 1; /* too late once the thread took it */
    pthread_mutex_unlock(&mu);
    j->owner = NULL;
}

commit_job *
commit_done(void)
{
    char buf[256];
    commit_job *list;
    while (read(pipe_r, buf, sizeof buf) > 0)
        ;
    pthread_mutex_lock(&mu);
    list = done;
    done = NULL;
    done_tail = &done;
    pthread_mutex_unlock(&mu);
    return list;
}

/* A job is a job_priv: its private part comes with it. */
commit_job *
commit_new(void)
{
    job_priv *p = calloc(1, sizeof *p);
    return p != NULL ? &p->pub : NULL;
}

void
commit_free(commit_job *j)
{
    if (j == NULL)
        return;
    free(j->mem);
    free(j->env_local);
    free(j->env_relay);
    free((job_priv *)j);
}

void
commit_close(void)
{
    commit_job *j, *next;
    if (pipe_r < 0)
        return;
    pthread_mutex_lock(&mu);
    closing = 1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(thread, NULL);
    pthread_mutex_lock(&fmu);
    fclosing = 1;
    pthread_cond_broadcast(&fwork);
    pthread_mutex_unlock(&fmu);
    while (nhelpers > 0)
        pthread_join(helper[--nhelpers], NULL);
    for (j = commit_done(); j != NULL; j = next) {
        next = j->next;
        commit_free(j);
    }
    close(pipe_r);
    close(pipe_w);
    close(dir_fd);
    close(qdir_fd);
    pipe_r = pipe_w = dir_fd = qdir_fd = -1;
}
