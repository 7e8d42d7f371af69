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
#define _GNU_SOURCE /* sync_file_range, syncfs */
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

/* The flushes of a batch run side by side: the storage thread and
 * FLUSHERS - 1 helpers each take the next file. A disk serves many
 * flushes at once about as fast as one (measured here with a busy disk:
 * 20 files fdatasync'ed one after another, 64 ms; by 4 threads, 4.7 ms),
 * as Postfix's many cleanup processes get for free. */
#define FLUSHERS 8
#define FLUSH_MAX 256 /* files handed out at a time */

/* A batch of more than one message is made durable by one syncfs() of
 * the spool's file system instead (Linux 5.8 and later report its write
 * errors): one pass over the dirty inodes and one cache flush for the
 * whole batch, where each fdatasync of a new file writes its inode, its
 * directory's (ext4 without a journal: DIR/tmp's blocks once per file,
 * every flush waiting on the same buffer) and flushes the disk's cache.
 * Measured by bench/compare.sh (scenario e): see README "Performance".
 * Its price is that it also writes whatever else is dirty on that file
 * system, hence --flush-each-file. A lonely message keeps its own
 * fdatasyncs: no other writer's data ever delays it. Only where syncfs
 * is known to promise what fdatasync does: Linux 5.8 or later, and a
 * local disk file system (not FUSE, whose syncfs does not ask the daemon
 * to flush; not NFS). */
#if defined(__linux__)
#define HAVE_SYNCFS 1
#include <stdio.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#endif

static int
syncfs_ok(int fd)
{
#ifdef HAVE_SYNCFS
    struct utsname u;
    struct statfs sf;
    int major = 0, minor = 0;
    if (uname(&u) != 0 || sscanf(u.release, "%d.%d", &major, &minor) != 2 ||
        major < 5 || (major == 5 && minor < 8) || fstatfs(fd, &sf) != 0)
        return 0;
    switch ((unsigned long)sf.f_type) {
    case 0xEF53UL:     /* ext2, ext3, ext4 */
    case 0x58465342UL: /* XFS */
    case 0x9123683EUL: /* btrfs */
    case 0xF2F52010UL: /* F2FS */
    case 0x01021994UL: /* tmpfs (nothing to flush either way) */
        return 1;
    default:
        return 0;
    }
#else
    (void)fd;
    return 0;
#endif
}

/* The storage thread and its helpers: everything they share with the
 * poll loop, one per commit_open. */
struct committer {
    char spool[4096];
    int no_fsync, kill_at;
    int use_syncfs;     /* see syncfs_ok; never with --flush-each-file */
    int fsync_delay_ms; /* LLSMTP_TEST_DIR_FSYNC_DELAY_MS */
    int fail_at;        /* LLSMTP_TEST_FLUSH_FAIL */
    int pipe_r, pipe_w; /* jobs handed back: the poll loop's wake-up */
    int dir_fd, qdir_fd, tmp_fd;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Guarded by mu: submitted and not taken yet; handed back;
     * stopping. */
    commit_job *waiting, **waiting_tail;
    commit_job *done, **done_tail;
    int closing;
    /* The flushes of a batch run side by side: the storage thread and
     * FLUSHERS - 1 helpers each take the next file. */
    pthread_t helper[FLUSHERS - 1];
    int nhelpers;
    pthread_mutex_t fmu;
    pthread_cond_t fwork, fdone;
    /* Guarded by fmu: the files to flush, the next one to take, how many
     * are done; each one's errno (0: on stable storage). */
    int ffd[FLUSH_MAX], ferr[FLUSH_MAX];
    size_t fn, fnext, fdone_n;
    int fclosing;
    int fds[FLUSH_MAX], errs[FLUSH_MAX]; /* commit_batch's, per round */
};

static void
path_of(committer *cm, char *buf, size_t n, const char *dir, const char *id,
        const char *ext)
{
    snprintf(buf, n, "%s%s/%s.%s", cm->spool, dir, id, ext);
}

/* DIR/tmp/<id>.<ext> with text in it (not flushed yet), or -1. */
static int
put_tmp(committer *cm, const char *id, const char *ext, const char *text,
        size_t n)
{
    char path[4200];
    int fd;
    path_of(cm, path, sizeof path, "/tmp", id, ext);
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
link_in(committer *cm, const char *id, const char *from, const char *dir,
        const char *to)
{
    char a[4200], b[4200];
    path_of(cm, a, sizeof a, "/tmp", id, from);
    path_of(cm, b, sizeof b, dir, id, to);
    return link(a, b);
}

/* Removes what a job made in DIR and DIR/queue, .eml first: a reader
 * never finds a local .eml without its .env, and the queue's start-up
 * scan removes an .env left without its .eml. */
static void
unmake(committer *cm, job_priv *p)
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
            path_of(cm, path, sizeof path, names[i].dir, p->pub.id,
                    names[i].ext);
            unlink(path);
        }
    p->made = 0;
}

static void
fail(committer *cm, job_priv *p, int err)
{
    if (p->pub.err == 0)
        p->pub.err = err ? err : EIO;
    unmake(cm, p);
}

/* Closes the job's files and removes its names under DIR/tmp (what was
 * linked in stays: one inode, one copy). */
static void
finish(committer *cm, job_priv *p)
{
    static const char *const ext[F_N] = {"eml", "env", "qenv"};
    char path[4200];
    int i;
    for (i = 0; i < F_N; i++) {
        if (i == F_EML && p->pub.msg != NULL) {
            if (fclose(p->pub.msg) != 0 && p->pub.err == 0)
                fail(cm, p, errno);
            p->pub.msg = NULL;
        } else if (p->fd[i] >= 0) {
            close(p->fd[i]);
        } else {
            continue;
        }
        p->fd[i] = -1;
        path_of(cm, path, sizeof path, "/tmp", p->pub.id, ext[i]);
        unlink(path);
    }
}

static int
flush_file(committer *cm, int fd)
{
    if (cm->no_fsync)
        return 0;
    while (fdatasync(fd) != 0)
        if (errno != EINTR)
            return -1;
    return 0;
}

static int
flush_dir(committer *cm, int fd)
{
    if (cm->no_fsync)
        return 0;
    while (fsync(fd) != 0)
        if (errno != EINTR)
            return -1;
    return 0;
}

/* Takes files off the list until none is left; called with fmu held. */
static void
flush_some(committer *cm)
{
    while (cm->fnext < cm->fn) {
        size_t i = cm->fnext++;
        int r;
        pthread_mutex_unlock(&cm->fmu);
        r = flush_file(cm, cm->ffd[i]) == 0 ? 0 : errno ? errno : EIO;
        pthread_mutex_lock(&cm->fmu);
        cm->ferr[i] = r;
        if (++cm->fdone_n == cm->fn)
            pthread_cond_signal(&cm->fdone);
    }
}

static void *
helper_main(void *arg)
{
    committer *cm = (committer *)arg;
    pthread_mutex_lock(&cm->fmu);
    while (!cm->fclosing) {
        if (cm->fnext < cm->fn)
            flush_some(cm);
        else
            pthread_cond_wait(&cm->fwork, &cm->fmu);
    }
    pthread_mutex_unlock(&cm->fmu);
    return NULL;
}

/* fdatasyncs fds[0..n) side by side; errs[i] gets each one's errno. */
static void
flush_files(committer *cm, const int *fds, int *errs, size_t n)
{
    size_t at, k, i;
    for (at = 0; at < n; at += k) {
        k = n - at < FLUSH_MAX ? n - at : FLUSH_MAX;
        pthread_mutex_lock(&cm->fmu);
        for (i = 0; i < k; i++)
            cm->ffd[i] = fds[at + i];
        cm->fn = k;
        cm->fnext = cm->fdone_n = 0;
        pthread_cond_broadcast(&cm->fwork);
        flush_some(cm);
        while (cm->fdone_n < cm->fn)
            pthread_cond_wait(&cm->fdone, &cm->fmu);
        for (i = 0; i < k; i++)
            errs[at + i] = cm->ferr[i];
        cm->fn = cm->fnext = 0;
        pthread_mutex_unlock(&cm->fmu);
    }
}

/* Fails every job of the batch still going with err. */
static void
fail_batch(committer *cm, commit_job *batch, int err)
{
    commit_job *j;
    for (j = batch; j != NULL; j = j->next)
        if (j->err == 0)
            fail(cm, (job_priv *)j, err);
}

/* Whether flush_each takes file i of p: every file, or (spilled_only)
 * the message of a job that wrote it to a file while it came. */
static int
takes(const job_priv *p, int i, int spilled_only)
{
    return p->fd[i] >= 0 &&
           (!spilled_only || (i == F_EML && p->pub.msg != NULL));
}

/* The files of the batch that takes() says on stable storage, each by
 * its own fdatasync, side by side (see FLUSHERS); broken: each fails
 * with EIO whatever its fdatasync said (LLSMTP_TEST_FLUSH_FAIL). */
static void
flush_each(committer *cm, commit_job *batch, int spilled_only, int broken)
{
    int *fds = cm->fds, *errs = cm->errs, i;
    size_t k;
    commit_job *from = batch, *j;
#ifdef SYNC_FILE_RANGE_WRITE
    /* Start the writeback of every file before waiting for any: the
     * first fdatasync then commits the file system's journal for the
     * whole batch, and the others find their data on the disk already
     * (ext4: 2 journal commits per message become about 1 per batch). */
    for (j = batch; j != NULL; j = j->next)
        if (j->err == 0)
            for (i = 0; i < F_N; i++)
                if (takes((job_priv *)j, i, spilled_only))
                    sync_file_range(((job_priv *)j)->fd[i], 0, 0,
                                    SYNC_FILE_RANGE_WRITE);
#endif
    while (from != NULL) {
        size_t nf = 0;
        commit_job *to;
        /* as many jobs as fit (F_N files each at most) */
        for (to = from; to != NULL && nf + F_N <= FLUSH_MAX; to = to->next)
            if (to->err == 0)
                for (i = 0; i < F_N; i++)
                    if (takes((job_priv *)to, i, spilled_only))
                        fds[nf++] = ((job_priv *)to)->fd[i];
        flush_files(cm, fds, errs, nf);
        for (k = 0; broken && k < nf; k++)
            errs[k] = EIO;
        for (k = 0, j = from; j != to; j = j->next) {
            job_priv *p = (job_priv *)j;
            if (j->err == 0)
                for (i = 0; i < F_N; i++)
                    if (takes(p, i, spilled_only) && errs[k++] != 0 &&
                        j->err == 0)
                        fail(cm, p, errs[k - 1]);
        }
        from = to;
    }
}

/* tests only (commit.h): whether the flush of this batch of n messages
 * is to fail, as on a write error (the first one of at least N). */
static int
test_flush_fails(committer *cm, size_t n)
{
    if (cm->fail_at <= 0 || n < (size_t)cm->fail_at)
        return 0;
    cm->fail_at = 0;
    return 1;
}

/* Every file of a batch of n messages on stable storage. */
static void
flush_batch(committer *cm, commit_job *batch, size_t n)
{
    int broken;
    if (cm->no_fsync || n == 0)
        return;
    broken = test_flush_fails(cm, n);
#ifdef HAVE_SYNCFS
    if (cm->use_syncfs && n > 1) {
        /* Every file of the batch is under DIR/tmp: one file system.
         * syncfs reports a write error that happened since the previous
         * one, which is right for every file made since (the envelopes,
         * the messages kept in memory), not for a message the poll loop
         * wrote to a file while it came: an error in its early writeback
         * may have gone to an earlier batch's syncfs. So those also get
         * their own fdatasync (their data is on the disk by then: a
         * cache flush each), whose error is that file's own. */
        if (syncfs(cm->tmp_fd) != 0 || broken) {
            fail_batch(cm, batch, broken ? EIO : errno ? errno : EIO);
            return;
        }
        flush_each(cm, batch, 1, 0);
        return;
    }
#endif
    flush_each(cm, batch, 0, broken);
}

/* One batch, start to end. */
static void
commit_batch(committer *cm, commit_job *batch)
{
    commit_job *j;
    size_t n = 0;
    int any_local = 0, any_relay = 0;
    /* 1. the message's last buffer, the envelopes: written, not flushed */
    for (j = batch; j != NULL; j = j->next) {
        job_priv *p = (job_priv *)j;
        if (j->err != 0)
            continue; /* cancelled */
        if (j->msg != NULL ? fflush(j->msg) != 0
                           : (p->fd[F_EML] = put_tmp(cm, j->id, "eml", j->mem,
                                                     j->mem_n)) < 0) {
            fail(cm, p, errno);
            continue;
        }
        if (j->msg != NULL)
            p->fd[F_EML] = fileno(j->msg);
        if (j->env_local != NULL &&
            (p->fd[F_ENV] = put_tmp(cm, j->id, "env", j->env_local,
                                    j->env_local_n)) < 0) {
            fail(cm, p, errno);
            continue;
        }
        if (j->env_relay != NULL &&
            (p->fd[F_QENV] = put_tmp(cm, j->id, "qenv", j->env_relay,
                                     j->env_relay_n)) < 0) {
            fail(cm, p, errno);
            continue;
        }
        n++;
    }
    if (cm->kill_at > 0 && n >= (size_t)cm->kill_at) {
        /* tests only (commit.h): the batch is written, nothing flushed */
        char line[80];
        int len = snprintf(line, sizeof line,
                           "commit: killed before the flush of a batch "
                           "of %zu\n",
                           n);
        if (write(2, line, (size_t)len) < 0) {
            /* the kill says it anyway */
        }
        kill(getpid(), SIGKILL);
    }
    /* 2. every file on stable storage */
    flush_batch(cm, batch, n);
    /* 3. the names readers look for, only now */
    for (j = batch; j != NULL; j = j->next) {
        job_priv *p = (job_priv *)j;
        if (j->err != 0)
            continue;
        if (j->env_relay != NULL) {
            /* in the queue the .env comes last: an .eml alone there is
             * being stored, an .env alone half removed (queue.h) */
            if (link_in(cm, j->id, "eml", "/queue", "eml") != 0) {
                fail(cm, p, errno);
                continue;
            }
            p->made |= M_QEML;
            if (link_in(cm, j->id, "qenv", "/queue", "env") != 0) {
                fail(cm, p, errno);
                continue;
            }
            p->made |= M_QENV;
            any_relay = 1;
        }
        if (j->env_local != NULL) {
            /* in DIR the .env comes first: a reader never finds an .eml
             * without its envelope */
            if (link_in(cm, j->id, "env", "", "env") != 0) {
                fail(cm, p, errno);
                continue;
            }
            p->made |= M_LENV;
            if (link_in(cm, j->id, "eml", "", "eml") != 0) {
                fail(cm, p, errno);
                continue;
            }
            p->made |= M_LEML;
            any_local = 1;
        }
    }
    if (cm->fsync_delay_ms > 0) { /* tests only: a slow disk (commit.h) */
        struct timespec ts;
        ts.tv_sec = cm->fsync_delay_ms / 1000;
        ts.tv_nsec = (long)(cm->fsync_delay_ms % 1000) * 1000000L;
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    /* 4. one fsync per directory for the whole batch */
    if (any_relay && flush_dir(cm, cm->qdir_fd) != 0) {
        int err = errno;
        for (j = batch; j != NULL; j = j->next)
            if (((job_priv *)j)->made & (M_QEML | M_QENV))
                fail(cm, (job_priv *)j, err);
    }
    if (any_local && flush_dir(cm, cm->dir_fd) != 0) {
        int err = errno;
        for (j = batch; j != NULL; j = j->next)
            if (((job_priv *)j)->made & (M_LEML | M_LENV))
                fail(cm, (job_priv *)j, err);
    }
    for (j = batch; j != NULL; j = j->next)
        finish(cm, (job_priv *)j);
}

static void *
commit_main(void *arg)
{
    committer *cm = (committer *)arg;
    for (;;) {
        commit_job *batch, *j;
        pthread_mutex_lock(&cm->mu);
        while (cm->waiting == NULL && !cm->closing)
            pthread_cond_wait(&cm->cv, &cm->mu);
        batch = cm->waiting;
        cm->waiting = NULL;
        cm->waiting_tail = &cm->waiting;
        for (j = batch; j != NULL; j = j->next)
            if (j->cancelled)
                j->err = ECANCELED; /* nothing of it is stored */
        pthread_mutex_unlock(&cm->mu);
        if (batch == NULL)
            break; /* closing, and nothing left */
        commit_batch(cm, batch);
        pthread_mutex_lock(&cm->mu);
        *cm->done_tail = batch;
        for (j = batch; j->next != NULL; j = j->next)
            ;
        cm->done_tail = &j->next;
        pthread_mutex_unlock(&cm->mu);
        if (write(cm->pipe_w, "", 1) < 0) {
            /* EAGAIN: the pipe is full of wake-ups already */
        }
    }
    return NULL;
}

/* commit_open failed: what it had opened is closed, cm freed; errno
 * kept. Returns NULL. */
static committer *
commit_unopen(committer *cm)
{
    int err = errno;
    if (cm->dir_fd >= 0)
        close(cm->dir_fd);
    if (cm->qdir_fd >= 0)
        close(cm->qdir_fd);
    if (cm->tmp_fd >= 0)
        close(cm->tmp_fd);
    if (cm->pipe_r >= 0) {
        close(cm->pipe_r);
        close(cm->pipe_w);
    }
    pthread_mutex_destroy(&cm->mu);
    pthread_cond_destroy(&cm->cv);
    pthread_mutex_destroy(&cm->fmu);
    pthread_cond_destroy(&cm->fwork);
    pthread_cond_destroy(&cm->fdone);
    free(cm);
    errno = err;
    return NULL;
}

committer *
commit_open(const char *dir, int nofsync, int each_file)
{
    char path[4200];
    const char *k = getenv("LLSMTP_TEST_KILL_BEFORE_FLUSH");
    int p[2], err;
    sigset_t all, old;
    committer *cm = (committer *)calloc(1, sizeof *cm);
    if (cm == NULL)
        return NULL;
    cm->pipe_r = cm->pipe_w = cm->dir_fd = cm->qdir_fd = cm->tmp_fd = -1;
    cm->waiting_tail = &cm->waiting;
    cm->done_tail = &cm->done;
    pthread_mutex_init(&cm->mu, NULL);
    pthread_cond_init(&cm->cv, NULL);
    pthread_mutex_init(&cm->fmu, NULL);
    pthread_cond_init(&cm->fwork, NULL);
    pthread_cond_init(&cm->fdone, NULL);
    snprintf(cm->spool, sizeof cm->spool, "%s", dir);
    cm->no_fsync = nofsync;
    cm->kill_at = k != NULL ? atoi(k) : 0;
    k = getenv("LLSMTP_TEST_FLUSH_FAIL");
    cm->fail_at = k != NULL ? atoi(k) : 0;
    k = getenv("LLSMTP_TEST_DIR_FSYNC_DELAY_MS");
    cm->fsync_delay_ms = k != NULL ? atoi(k) : 0;
    snprintf(path, sizeof path, "%s/queue", dir);
    cm->dir_fd = open(dir, O_RDONLY);
    cm->qdir_fd = open(path, O_RDONLY);
    snprintf(path, sizeof path, "%s/tmp", dir);
    cm->tmp_fd = open(path, O_RDONLY);
    if (cm->dir_fd < 0 || cm->qdir_fd < 0 || cm->tmp_fd < 0 || pipe(p) != 0)
        return commit_unopen(cm);
    cm->use_syncfs = !each_file && !nofsync && syncfs_ok(cm->tmp_fd);
    cm->pipe_r = p[0];
    cm->pipe_w = p[1];
    fcntl(cm->pipe_r, F_SETFL, fcntl(cm->pipe_r, F_GETFL) | O_NONBLOCK);
    fcntl(cm->pipe_w, F_SETFL, fcntl(cm->pipe_w, F_GETFL) | O_NONBLOCK);
    /* every signal goes to the poll loop, whose poll() it must wake */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    err = pthread_create(&cm->thread, NULL, commit_main, cm);
    /* helpers for the flushes: fewer (or none) only slows them down */
    for (cm->nhelpers = 0;
         err == 0 && !cm->no_fsync && cm->nhelpers < FLUSHERS - 1 &&
         pthread_create(&cm->helper[cm->nhelpers], NULL, helper_main, cm) == 0;
         cm->nhelpers++)
        ;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err == 0)
        return cm;
    errno = err;
    return commit_unopen(cm);
}

const char *
commit_flush_how(const committer *cm)
{
    if (cm->no_fsync)
        return "nothing (--no-fsync)";
    return cm->use_syncfs ? "syncfs (a lonely message: fdatasync)"
                          : "fdatasync";
}

int
commit_fd(const committer *cm)
{
    return cm != NULL ? cm->pipe_r : -1;
}

void
commit_submit(committer *cm, commit_job *j)
{
    job_priv *p = (job_priv *)j;
    int i;
    for (i = 0; i < F_N; i++)
        p->fd[i] = -1;
    p->made = 0;
    j->next = NULL;
    j->err = 0;
    j->cancelled = 0;
    pthread_mutex_lock(&cm->mu);
    *cm->waiting_tail = j;
    cm->waiting_tail = &j->next;
    pthread_cond_signal(&cm->cv);
    pthread_mutex_unlock(&cm->mu);
}

void
commit_cancel(committer *cm, commit_job *j)
{
    pthread_mutex_lock(&cm->mu);
    j->cancelled = 1; /* too late once the thread took it */
    pthread_mutex_unlock(&cm->mu);
    j->owner = NULL;
}

commit_job *
commit_done(committer *cm)
{
    char buf[256];
    commit_job *list;
    while (read(cm->pipe_r, buf, sizeof buf) > 0)
        ;
    pthread_mutex_lock(&cm->mu);
    list = cm->done;
    cm->done = NULL;
    cm->done_tail = &cm->done;
    pthread_mutex_unlock(&cm->mu);
    return list;
}

/* A job is a job_priv: its private part comes with it. */
commit_job *
commit_new(void)
{
    job_priv *p = (job_priv *)calloc(1, sizeof *p);
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
commit_close(committer *cm)
{
    commit_job *j, *next;
    if (cm == NULL)
        return;
    pthread_mutex_lock(&cm->mu);
    cm->closing = 1;
    pthread_cond_signal(&cm->cv);
    pthread_mutex_unlock(&cm->mu);
    pthread_join(cm->thread, NULL);
    pthread_mutex_lock(&cm->fmu);
    cm->fclosing = 1;
    pthread_cond_broadcast(&cm->fwork);
    pthread_mutex_unlock(&cm->fmu);
    while (cm->nhelpers > 0)
        pthread_join(cm->helper[--cm->nhelpers], NULL);
    for (j = commit_done(cm); j != NULL; j = next) {
        next = j->next;
        commit_free(j);
    }
    close(cm->pipe_r);
    close(cm->pipe_w);
    close(cm->dir_fd);
    close(cm->qdir_fd);
    close(cm->tmp_fd);
    pthread_mutex_destroy(&cm->mu);
    pthread_cond_destroy(&cm->cv);
    pthread_mutex_destroy(&cm->fmu);
    pthread_cond_destroy(&cm->fwork);
    pthread_cond_destroy(&cm->fdone);
    free(cm);
}
