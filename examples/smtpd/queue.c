/* SPDX-License-Identifier: MIT
 *
 * queue.c - smtpd's onward delivery (see queue.h). An entry is
 * SPOOL/queue/<id>.eml (the message as stored, Return-Path first), its
 * .env (sender, relay recipients, parameters: smtpd's format) and an
 * append-only .st log of what happened to each recipient:
 *   D <i> <code> <remote> <text>   delivered (final)
 *   F <i> <code> <remote> <text>   refused for good (final)
 *   X <i> <code> <remote> <text>   still failing at --max-queue-time (final)
 *   T <i> <code> <remote> <text>   failed for now (the last one counts)
 *   N <time> <attempts>            when to try again
 *   R <time>                       arrival, when .env's was in the future
 *   B                              the bounce is written
 * A runner is a child process per attempt: it delivers the recipients
 * without a final line, appends to the log (fsync'ed before anything
 * else happens), writes the bounce when everything is final and then
 * removes the entry, .eml first. So a crash loses nothing: at worst a
 * recipient whose 250 came in just before the crash gets it twice
 * (RFC 5321 6.1 prefers that to losing it).
 */
#include "queue.h"

#include "deliver.h"
#include "log.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* A runner's exit status when another runner holds the entry. */
#define RUNNER_BUSY 75

typedef struct entry {
    char id[64];
    time_t next;
    pid_t pid; /* its runner, or 0 */
} entry;

/* this host's addresses: an MX host at one of them is this host */
#define SELF_MAX 64

/* The queue: one per queue_new, passed to whatever needs it (a runner
 * works on its copy after the fork). */
struct queue {
    const queue_conf *cf;
    route_dns dns; /* a runner's copy: asking changes its state */
    char qdir[4096], tmpdir[4096];
    entry *ents;
    size_t nents, ents_cap, nbusy;
    llsmtp_ip self_ip[SELF_MAX];
    size_t nself;
    char (*held)[64]; /* ids being stored (queue_hold) */
    size_t nheld, held_cap;
    int lock_fd; /* SPOOL/smtpd.lock, or -1 */
};

static void
entry_path(queue *qu, char *buf, size_t n, const char *id, const char *ext)
{
    snprintf(buf, n, "%s/%s.%s", qu->qdir, id, ext);
}

int
queue_sync_dir(const char *dir, int no_fsync)
{
    int fd, rc = 0;
    if (no_fsync)
        return 0;
    fd = open(dir, O_RDONLY);
    if (fd < 0)
        return -1;
    if (fsync(fd) != 0)
        rc = -1;
    close(fd);
    return rc;
}

/* ---- the log ------------------------------------------------------------ */

typedef struct rcpt {
    char *addr, *params;
    int state; /* 0 open, or 'D', 'F', 'X' */
    int code;  /* the final reply, or the last temporary one */
    char remote[LLSMTP_NAME_MAX + 1];
    char text[LLSMTP_REPLY_LINE_MAX + 1];
} rcpt;

typedef struct envelope {
    char *from, *mail_params, *client;
    long received;
    int body; /* 7, 8 or 9 (BINARYMIME); 0 not declared */
    int smtputf8;
    rcpt *r;
    size_t n;
    long next, attempts;
    int bounced;
} envelope;

static void
env_free(envelope *e)
{
    size_t i;
    for (i = 0; i < e->n; i++) {
        free(e->r[i].addr);
        free(e->r[i].params);
    }
    free(e->r);
    free(e->from);
    free(e->mail_params);
    free(e->client);
    memset(e, 0, sizeof *e);
}

static char *
dup_until(const char *p, int stop)
{
    size_t n = 0;
    char *s;
    while (p[n] && p[n] != stop && p[n] != '\n')
        n++;
    s = (char *)malloc(n + 1);
    if (s != NULL) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

/* ---- envelope files ------------------------------------------------------ */

void
queue_xtext_put(FILE *f, const char *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 33 || c == 127 || c == '+' || c == '=' || c == '>' || c == '<')
            fprintf(f, "+%02X", c);
        else
            fputc(c, f); /* UTF-8 (SMTPUTF8) stays readable */
    }
}

void
queue_params_put(FILE *f, const char *params)
{
    const char *s = params;
    int first = 1;
    while (s != NULL && *s) {
        size_t n = strcspn(s, " "), j;
        int ok = n > 0;
        /* esmtp-values (RFC 5321 4.1.2) hold no space nor control
         * character; one that did could not be kept in one field */
        for (j = 0; j < n; j++)
            if ((unsigned char)s[j] < 33 || s[j] == 127)
                ok = 0;
        if (ok) {
            if (!first)
                fputc(' ', f);
            first = 0;
            fwrite(s, 1, n, f);
        }
        s += n;
        while (*s == ' ')
            s++;
    }
}

/* A version 2 value (queue_xtext_put) decoded into a string, or NULL.
 * A NUL in it is refused: it could not be a C string. */
static char *
xtext_dup(const char *p, size_t n)
{
    char *s = (char *)malloc(n + 1);
    size_t i, o = 0;
    if (s == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        unsigned c = (unsigned char)p[i];
        if (c == '+') {
            unsigned hi, lo;
            if (n - i < 3 || sscanf(p + i + 1, "%1x%1x", &hi, &lo) != 2 ||
                (hi << 4 | lo) == 0) {
                free(s);
                return NULL;
            }
            c = hi << 4 | lo;
            i += 2;
        }
        s[o++] = (char)c;
    }
    s[o] = '\0';
    return s;
}

/* A version 1 "rcpt <ADDR> KIND [PARAMS]" line held the address raw, so
 * a quoted local part with a ">" in it is found by the kind after it. */
static const char *
v1_rcpt_close(const char *p)
{
    const char *best = NULL, *q = p;
    while ((q = strchr(q, '>')) != NULL) {
        if (strncmp(q, "> relay", 7) == 0 || strncmp(q, "> local", 7) == 0)
            best = q;
        q++;
    }
    return best != NULL ? best : strchr(p, '>');
}

/* Reads <id>.env and, when there is one, <id>.st. Returns 0 or -1. */
static int
env_load(queue *qu, const char *id, envelope *e)
{
    char path[4200], line[8192];
    FILE *f;
    int v2 = 0;
    memset(e, 0, sizeof *e);
    entry_path(qu, path, sizeof path, id, "env");
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "version ", 8) == 0) {
            v2 = atoi(line + 8) >= 2;
        } else if (strncmp(line, "from <", 6) == 0) {
            const char *close_ = v2 ? strchr(line + 6, '>')
                                    : strrchr(line + 6, '>');
            free(e->from);
            e->from = close_ == NULL ? NULL
                      : v2 ? xtext_dup(line + 6, (size_t)(close_ - line - 6))
                           : dup_until(line + 6, '\0');
            if (e->from != NULL && !v2)
                e->from[close_ - line - 6] = '\0';
        } else if (strncmp(line, "received ", 9) == 0) {
            e->received = atol(line + 9);
        } else if (strncmp(line, "client ", 7) == 0) {
            free(e->client);
            e->client = v2 ? xtext_dup(line + 7, strlen(line + 7))
                           : dup_until(line + 7, 0);
        } else if (strncmp(line, "mail-params ", 12) == 0) {
            free(e->mail_params);
            e->mail_params = dup_until(line + 12, 0);
        } else if (strncmp(line, "body ", 5) == 0) {
            e->body = line[5] == '7' ? 7 : line[5] == '8' ? 8 : 9;
        } else if (strcmp(line, "smtputf8 yes") == 0) {
            e->smtputf8 = 1;
        } else if (strncmp(line, "rcpt <", 6) == 0) {
            const char *close_ = v2 ? strchr(line + 6, '>')
                                    : v1_rcpt_close(line + 6),
                       *kind, *sp;
            rcpt *v;
            if (close_ == NULL)
                continue;
            v = (rcpt *)realloc(e->r, (e->n + 1) * sizeof *v);
            if (v == NULL)
                break;
            e->r = v;
            memset(&v[e->n], 0, sizeof v[e->n]);
            v[e->n].addr = v2 ? xtext_dup(line + 6,
                                          (size_t)(close_ - line - 6))
                              : dup_until(line + 6, '\0');
            if (v[e->n].addr == NULL) {
                env_free(e);
                fclose(f);
                return -1;
            }
            if (!v2)
                v[e->n].addr[close_ - line - 6] = '\0';
            /* "rcpt <a> relay PARAMS": the parameters after the kind */
            kind = close_[1] == ' ' ? close_ + 2 : close_ + 1;
            sp = strchr(kind, ' ');
            v[e->n].params = dup_until(sp != NULL ? sp + 1 : "", 0);
            e->n++;
            if (v[e->n - 1].params == NULL)
                break;
        }
    }
    fclose(f);
    if (e->from == NULL || e->n == 0 || e->r[e->n - 1].params == NULL) {
        env_free(e);
        return -1;
    }
    entry_path(qu, path, sizeof path, id, "st");
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long i;
        int code, off = 0;
        char remote[LLSMTP_NAME_MAX + 1]; /* %253s below */
        size_t ln = strlen(line);
        if (ln == 0 || line[ln - 1] != '\n')
            break; /* torn by a crash: never fsync'ed, never acted on */
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == 'N') {
            sscanf(line, "N %ld %ld", &e->next, &e->attempts);
        } else if (line[0] == 'R') { /* the arrival, clamped to a run */
            sscanf(line, "R %ld", &e->received);
        } else if (line[0] == 'B') {
            e->bounced = 1;
        } else if (strchr("DFXT", line[0]) != NULL && line[0] &&
                   sscanf(line + 1, " %lu %d %253s %n", &i, &code, remote,
                          &off) == 3 &&
                   off > 0 && i < e->n && e->r[i].state == 0) {
            rcpt *r = &e->r[i];
            r->state = line[0] == 'T' ? 0 : line[0];
            r->code = code;
            snprintf(r->remote, sizeof r->remote, "%s",
                     strcmp(remote, "-") == 0 ? "" : remote);
            snprintf(r->text, sizeof r->text, "%s", line + 1 + off);
        }
    }
    fclose(f);
    return 0;
}

/* Where the text of fd (end octets) stops being whole lines: after its
 * last newline, or 0. Returns -1 (errno) when it cannot be read. */
static off_t
st_whole_end(int fd, off_t end)
{
    char buf[4096];
    off_t pos = end;
    while (pos > 0) {
        size_t n = pos < (off_t)sizeof buf ? (size_t)pos : sizeof buf;
        ssize_t r = pread(fd, buf, n, pos - (off_t)n), i;
        if (r != (ssize_t)n)
            return -1;
        for (i = r; i > 0 && buf[i - 1] != '\n'; i--)
            ;
        if (i > 0)
            return pos - (off_t)n + i;
        pos -= (off_t)n;
    }
    return pos;
}

/* Cuts a torn last line off the entry's log fd and goes to its end.
 * Returns 0, or -1 (errno). */
static int
st_cut_torn(queue *qu, int fd, const char *id)
{
    struct stat st;
    off_t pos;
    if (fstat(fd, &st) != 0 || (pos = st_whole_end(fd, st.st_size)) < 0)
        return -1;
    if (pos != st.st_size) {
        log_line("queue=%s its log ended in a torn line (%ld octets): cut", id,
                 (long)(st.st_size - pos));
        if (ftruncate(fd, pos) != 0 || (!qu->cf->no_fsync && fsync(fd) != 0))
            return -1;
    }
    return lseek(fd, 0, SEEK_END) < 0 ? -1 : 0;
}

/* Opens the entry's log for writing at its end, first cutting a torn
 * last line (one without its newline: a crash in the middle of a write).
 * The loader ignores such a fragment, but a line appended right after it
 * would be glued to it, and a "D" hidden that way means a recipient
 * delivered again. Returns the descriptor, or -1 (errno). */
static int
st_open(queue *qu, const char *id)
{
    char path[4200];
    int fd, err;
    entry_path(qu, path, sizeof path, id, "st");
    fd = open(path, O_RDWR | O_CREAT, 0640);
    if (fd < 0 || st_cut_torn(qu, fd, id) == 0)
        return fd;
    err = errno;
    close(fd);
    errno = err;
    return -1;
}

int
queue_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Appends lines to the log and makes them durable. Returns 0, or -1
 * (errno) when they may not all be on disk. */
static int
st_append(queue *qu, const char *id, const char *text)
{
    int fd = st_open(qu, id), ok, err;
    if (fd < 0)
        return -1;
    ok = queue_write_all(fd, text, strlen(text)) == 0 &&
         (qu->cf->no_fsync || fsync(fd) == 0);
    err = errno;
    if (close(fd) != 0)
        ok = 0;
    else
        errno = err;
    return ok ? 0 : -1;
}

/* Lines a reservation is made of: "#...\n" the loader ignores, short
 * enough for its line buffer; the last octet is always a newline. */
static void
st_padding(char *p, size_t n)
{
    while (n > 0) {
        size_t m = n > 4000 ? 4000 : n;
        memset(p, '#', m - 1);
        p[m - 1] = '\n';
        p += m;
        n -= m;
    }
}

/* Room in the log for what one transaction will say, taken before the
 * message is sent and filled in afterwards by st_fill(): the disk can
 * fill up while the next hop takes the message, and a "D" that could not
 * be written would send the message again at every retry. Overwriting
 * octets already allocated needs no new space. Sets *at. Returns 0, or
 * -1 (errno; nothing reserved). */
static int
st_reserve(queue *qu, const char *id, size_t n, off_t *at)
{
    char *pad = (char *)malloc(n);
    int fd, ok, err;
    if (pad == NULL)
        return -1;
    st_padding(pad, n);
    fd = st_open(qu, id);
    if (fd < 0) {
        free(pad);
        return -1;
    }
    *at = lseek(fd, 0, SEEK_END);
    ok = *at >= 0 && queue_write_all(fd, pad, n) == 0 &&
         (qu->cf->no_fsync || fsync(fd) == 0);
    err = errno;
    if (!ok && *at >= 0 && ftruncate(fd, *at) == 0 && !qu->cf->no_fsync)
        fsync(fd); /* give back what was taken */
    close(fd);
    free(pad);
    errno = err;
    return ok ? 0 : -1;
}

/* Writes text (at most n octets of lines) over the reservation at at,
 * then cuts the log back to the end of the text: what was reserved and
 * not used is given back (shrinking a file needs no space), so the log
 * holds what happened and nothing more. Returns 0, or -1 (errno). */
static int
st_fill(queue *qu, const char *id, off_t at, size_t n, const char *text)
{
    char path[4200];
    size_t t = strlen(text);
    int fd, ok, err;
    if (t > n) {
        errno = EOVERFLOW;
        return -1;
    }
    entry_path(qu, path, sizeof path, id, "st");
    fd = open(path, O_WRONLY);
    if (fd < 0)
        return -1;
    ok = pwrite(fd, text, t, at) == (ssize_t)t &&
         ftruncate(fd, at + (off_t)t) == 0 &&
         (qu->cf->no_fsync || fsync(fd) == 0);
    err = errno;
    close(fd);
    errno = err;
    return ok ? 0 : -1;
}

/* ---- the parent: which entries exist, when each is due ----------------- */

static entry *
find(queue *qu, const char *id)
{
    size_t i;
    for (i = 0; i < qu->nents; i++)
        if (strcmp(qu->ents[i].id, id) == 0)
            return &qu->ents[i];
    return NULL;
}

/* The time of the log's last "N" line, looked for in its last 64 KiB
 * (the "N" line ends every attempt): the parent asks at every reap, and
 * the log of an entry with many recipients is large. The whole log only
 * when a crash left more than that after it. 0 when there is none. */
static long
st_next(queue *qu, const char *id)
{
    static char buf[65536];
    char path[4200], line[8192];
    struct stat st;
    long next = 0, attempts;
    size_t i, n;
    ssize_t r;
    off_t start;
    FILE *f;
    entry_path(qu, path, sizeof path, id, "st");
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    if (fstat(fileno(f), &st) != 0) {
        fclose(f);
        return 0;
    }
    start = st.st_size > (off_t)sizeof buf ? st.st_size - (off_t)sizeof buf
                                           : 0;
    r = pread(fileno(f), buf, (size_t)(st.st_size - start), start);
    n = r > 0 ? (size_t)r : 0;
    /* complete lines only (a torn one was never acted on, as env_load);
     * the first one in the window may be a line's tail */
    for (i = 0; i < n;) {
        char *eol = (char *)memchr(buf + i, '\n', n - i);
        if (eol == NULL)
            break;
        if ((i > 0 || start == 0) && buf[i] == 'N') {
            size_t ln = (size_t)(eol - buf) - i;
            memcpy(line, buf + i, ln < sizeof line ? ln : sizeof line - 1);
            line[ln < sizeof line ? ln : sizeof line - 1] = '\0';
            sscanf(line, "N %ld %ld", &next, &attempts);
        }
        i = (size_t)(eol - buf) + 1;
    }
    if (next == 0 && start > 0) /* further back: read it all */
        while (fgets(line, sizeof line, f))
            if (line[0] == 'N' && strchr(line, '\n') != NULL)
                sscanf(line, "N %ld %ld", &next, &attempts);
    fclose(f);
    return next;
}

static long
due_time(queue *qu, const char *id)
{
    long next = st_next(qu, id), now = (long)time(NULL), longest = 0;
    size_t i;
    /* further away than any retry delay: planned before the clock
     * stepped back */
    for (i = 0; i < qu->cf->nretry; i++)
        if ((long)qu->cf->retry[i] > longest)
            longest = (long)qu->cf->retry[i];
    return next > now + longest ? now + longest : next;
}

/* Ids the storage thread holds (queue_hold): at most the messages of a
 * batch or two, so a list. */

static int
is_held(queue *qu, const char *id)
{
    size_t i;
    for (i = 0; i < qu->nheld; i++)
        if (strcmp(qu->held[i], id) == 0)
            return 1;
    return 0;
}

void
queue_hold(queue *qu, const char *id)
{
    if (qu->nheld == qu->held_cap) {
        size_t cap = qu->held_cap ? qu->held_cap * 2 : 64;
        char(*v)[64] = (char(*)[64])realloc(qu->held, cap * sizeof *v);
        if (v == NULL)
            abort(); /* a message no runner must see would be seen */
        qu->held = v;
        qu->held_cap = cap;
    }
    snprintf(qu->held[qu->nheld++], sizeof qu->held[0], "%s", id);
}

void
queue_release(queue *qu, const char *id)
{
    size_t i;
    for (i = 0; i < qu->nheld; i++)
        if (strcmp(qu->held[i], id) == 0) {
            memcpy(qu->held[i], qu->held[--qu->nheld], sizeof qu->held[0]);
            return;
        }
}

void
queue_add(queue *qu, const char *id)
{
    entry *v;
    if (find(qu, id) != NULL || is_held(qu, id))
        return;
    if (qu->nents == qu->ents_cap) {
        size_t cap = qu->ents_cap ? qu->ents_cap * 2 : 64;
        v = (entry *)realloc(qu->ents, cap * sizeof *v);
        if (v == NULL)
            return; /* found again by the next scan */
        qu->ents = v;
        qu->ents_cap = cap;
    }
    v = &qu->ents[qu->nents++];
    snprintf(v->id, sizeof v->id, "%s", id);
    v->next = (time_t)due_time(qu, id);
    v->pid = 0;
}

/* The spool's lock (queue_lock), or -1. */

/* Files of an entry without its .eml younger than this are left alone by
 * a start-up scan that does not hold the spool's lock: they may be
 * another smtpd's, in the middle of something. */
#define SCAN_SAFE_AGE (15 * 60)

queue *
queue_new(void)
{
    queue *qu = (queue *)calloc(1, sizeof *qu);
    if (qu != NULL)
        qu->lock_fd = -1;
    return qu;
}

int
queue_lock(queue *qu, const char *spool, long *holder)
{
    char path[4200], buf[32];
    struct flock fl;
    int fd, err;
    ssize_t r;
    *holder = 0;
    snprintf(path, sizeof path, "%s/smtpd.lock", spool);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -1;
    /* A POSIX record lock, not flock(): it belongs to this process, is
     * not inherited by fork() and goes when this process dies, whatever
     * its children do. A flock() belongs to the open file description,
     * which every child shares from fork() until it closes its copy: a
     * runner or ETRN child forked just before a kill -9 (killed with
     * it, or left running) could hold the lock after the server was
     * gone, and the restart was refused ("spool in use"). Nothing else
     * in this process may open and close this file: closing any
     * descriptor of it would let go of the lock. */
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        err = errno == EACCES || errno == EAGAIN ? EWOULDBLOCK : errno;
        memset(&fl, 0, sizeof fl);
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK &&
            fl.l_pid > 0) {
            *holder = (long)fl.l_pid;
        } else {
            r = pread(fd, buf, sizeof buf - 1, 0);
            if (r > 0) {
                buf[r] = '\0';
                *holder = atol(buf);
            }
        }
        close(fd);
        errno = err;
        return -1;
    }
    /* the pid is a courtesy to whoever is refused: not checked */
    r = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) == 0 && pwrite(fd, buf, (size_t)r, 0) != r)
        errno = 0;
    qu->lock_fd = fd;
    return 0;
}

void
queue_child(queue *qu)
{
    /* a child never held the lock (a record lock is not inherited); the
     * descriptor is the parent's business only */
    if (qu == NULL)
        return;
    if (qu->lock_fd >= 0)
        close(qu->lock_fd);
    qu->lock_fd = -1;
}

/* Adds every complete entry (one with its .eml) not known yet; at start
 * also removes what a crash left half-removed: an entry's other files
 * without its .eml (the .eml appears first and goes first, see
 * queue_store). An .eml without its .env is an entry being stored: it
 * is left alone, and its runner says so until the .env is there. */
static void
scan(queue *qu, int cleanup)
{
    DIR *d = opendir(qu->qdir);
    struct dirent *de;
    char path[4200];
    time_t now = time(NULL);
    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        char id[64];
        const char *dot = strrchr(de->d_name, '.');
        size_t n;
        struct stat st;
        if (dot == NULL || de->d_name[0] == '.')
            continue;
        n = (size_t)(dot - de->d_name);
        if (n >= sizeof id)
            continue;
        memcpy(id, de->d_name, n);
        id[n] = '\0';
        if (strcmp(dot, ".eml") == 0) {
            queue_add(qu, id);
        } else if (cleanup) {
            entry_path(qu, path, sizeof path, id, "eml");
            if (stat(path, &st) != 0 && errno == ENOENT) {
                entry_path(qu, path, sizeof path, id, dot + 1);
                if (qu->lock_fd >= 0 || (lstat(path, &st) == 0 &&
                                         st.st_mtime < now - SCAN_SAFE_AGE))
                    unlink(path);
            }
        }
    }
    closedir(d);
}

static void
self_add(queue *qu, const llsmtp_ip *given)
{
    size_t i;
    static const uint8_t any[16] = {0};
    llsmtp_ip ip = *given;
    route_ip_norm(&ip); /* ::ffff:127.0.0.1 is 127.0.0.1 */
    if (ip.family == 0 || qu->nself == SELF_MAX ||
        memcmp(ip.addr, any, ip.family == 4 ? 4 : 16) == 0)
        return; /* 0.0.0.0 and :: are covered by the interfaces */
    for (i = 0; i < qu->nself; i++)
        if (route_ip_same(&qu->self_ip[i], &ip))
            return;
    qu->self_ip[qu->nself++] = ip;
}

/* The addresses smtpd listens on and those of the interfaces. */
static void
self_find(queue *qu)
{
    struct ifaddrs *ifs, *it;
    size_t i;
    for (i = 0; i < qu->cf->nlisten; i++) {
        llsmtp_relayhost rh;
        if (llsmtp_relayhost_parse(qu->cf->listen[i],
                                   strlen(qu->cf->listen[i]), &rh,
                                   NULL) == LLSMTP_OK)
            self_add(qu, &rh.ip);
    }
    if (getifaddrs(&ifs) != 0)
        return;
    for (it = ifs; it != NULL; it = it->ifa_next) {
        llsmtp_ip ip;
        memset(&ip, 0, sizeof ip);
        if (it->ifa_addr == NULL)
            continue;
        if (it->ifa_addr->sa_family == AF_INET) {
            ip.family = 4;
            memcpy(ip.addr, &((struct sockaddr_in *)it->ifa_addr)->sin_addr,
                   4);
        } else if (it->ifa_addr->sa_family == AF_INET6) {
            ip.family = 6;
            memcpy(ip.addr, &((struct sockaddr_in6 *)it->ifa_addr)->sin6_addr,
                   16);
        }
        self_add(qu, &ip);
    }
    freeifaddrs(ifs);
}

int
queue_open(queue *qu, const queue_conf *qc)
{
    qu->cf = qc;
    self_find(qu);
    snprintf(qu->qdir, sizeof qu->qdir, "%s/queue", qc->spool);
    snprintf(qu->tmpdir, sizeof qu->tmpdir, "%s/tmp", qc->spool);
    if (mkdir(qu->qdir, 0750) != 0 && errno != EEXIST)
        return -1;
    scan(qu, 1);
    if (qu->nents > 0)
        log_line("queue: %zu entries waiting", qu->nents);
    return 0;
}

static void run_entry(queue *qu, const char *id);

int
queue_run(queue *qu, time_t now)
{
    size_t i;
    time_t next = 0;
    for (i = 0; i < qu->nents; i++) {
        entry *e = &qu->ents[i];
        if (e->pid != 0)
            continue;
        if (e->next <= now && (int)qu->nbusy < qu->cf->max_runners) {
            pid_t pid;
            fflush(stderr); /* or the runner writes the parent's lines too */
            pid = fork();
            if (pid == 0) {
                queue_child(qu);
                if (qu->cf->child_setup)
                    qu->cf->child_setup(qu->cf->child_arg);
                signal(SIGTERM, SIG_DFL);
                signal(SIGINT, SIG_IGN);
                run_entry(qu, e->id);
                fflush(stderr);
                _exit(0);
            }
            if (pid > 0) {
                e->pid = pid;
                qu->nbusy++;
                continue;
            }
            log_line("queue: cannot start a runner: %s", strerror(errno));
        }
        if (next == 0 || e->next < next)
            next = e->next;
    }
    if (qu->nbusy > 0)
        return 500; /* look for finished runners */
    if (next == 0)
        return -1;
    return next > now
               ? (int)((next - now) * 1000 > 60000 ? 60000
                                                   : (next - now) * 1000)
               : 1000;
}

void
queue_reap(queue *qu, time_t now, void (*other)(void *arg, pid_t pid),
           void *arg)
{
    int status, any = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        size_t i;
        for (i = 0; i < qu->nents && qu->ents[i].pid != pid; i++)
            ;
        if (i == qu->nents && other != NULL)
            other(arg, pid); /* not a runner */
        for (; i < qu->nents; i++) {
            char path[4200];
            struct stat st;
            entry *e = &qu->ents[i];
            if (e->pid != pid)
                continue;
            e->pid = 0;
            qu->nbusy--;
            any = 1;
            entry_path(qu, path, sizeof path, e->id, "eml");
            if (stat(path, &st) != 0) {
                qu->ents[i] = qu->ents[--qu->nents]; /* done and removed */
            } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
                e->next = (time_t)due_time(qu, e->id);
                if (e->next <= now) /* it could not even start: wait */
                    e->next = now + (time_t)qu->cf->retry[0];
            } else if (WIFEXITED(status) &&
                       WEXITSTATUS(status) == RUNNER_BUSY) {
                e->next = now + 1; /* a runner from before a restart */
            } else {
                log_line("queue=%s runner died (status %d); retry in %us",
                         e->id, status, qu->cf->retry[0]);
                e->next = now + (time_t)qu->cf->retry[0];
            }
            break;
        }
    }
    if (any)
        scan(qu, 0); /* bounces the runners queued */
}

size_t
queue_busy(const queue *qu)
{
    return qu != NULL ? qu->nbusy : 0;
}

void
queue_close(queue *qu)
{
    if (qu == NULL)
        return;
    free(qu->ents);
    qu->ents = NULL;
    qu->nents = qu->ents_cap = 0;
    free(qu->held);
    qu->held = NULL;
    qu->nheld = qu->held_cap = 0;
    free(qu);
}

/* ---- storing a message (bounces) ---------------------------------------- */

static int
write_file(const char *path, const char *p, size_t n, int no_fsync)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640), ok;
    size_t off = 0;
    if (fd < 0)
        return -1;
    while (off < n) {
        ssize_t w = write(fd, p + off, n - off);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    ok = no_fsync || fsync(fd) == 0;
    return close(fd) == 0 && ok ? 0 : -1;
}

int
queue_store(const char *dir, const char *tdir, const char *id, const char *env,
            const char *eml, size_t emln, int env_last, int no_fsync)
{
    char te[4200], tv[4200], fe[4200], fv[4200];
    snprintf(te, sizeof te, "%s/%s.env", tdir, id);
    snprintf(tv, sizeof tv, "%s/%s.eml", tdir, id);
    snprintf(fe, sizeof fe, "%s/%s.env", dir, id);
    snprintf(fv, sizeof fv, "%s/%s.eml", dir, id);
    if (write_file(tv, eml, emln, no_fsync) != 0 ||
        write_file(te, env, strlen(env), no_fsync) != 0 ||
        rename(env_last ? tv : te, env_last ? fv : fe) != 0 ||
        rename(env_last ? te : tv, env_last ? fe : fv) != 0) {
        unlink(te);
        unlink(tv);
        unlink(env_last ? fv : fe);
        return -1;
    }
    queue_sync_dir(dir, no_fsync);
    return 0;
}

/* ---- a runner ----------------------------------------------------------- */

static void
date_now(char *buf, size_t n, time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

static int
is_local(queue *qu, const char *addr)
{
    const char *at = strrchr(addr, '@');
    size_t i;
    if (at == NULL)
        return 1; /* "postmaster" alone is ours (RFC 5321 4.5.1) */
    for (i = 0; i < qu->cf->nlocal; i++)
        if (strcasecmp(at + 1, qu->cf->local_domains[i]) == 0)
            return 1;
    return 0;
}

/* The value of KEY= in "K=V K=V", as a span into s. */
static llsmtp_span
param(const char *s, const char *key)
{
    llsmtp_span v = {NULL, 0};
    size_t kn = strlen(key);
    while (s != NULL && *s) {
        size_t n = strcspn(s, " ");
        if (n > kn && s[kn] == '=' && strncasecmp(s, key, kn) == 0) {
            v.p = s + kn + 1;
            v.n = n - kn - 1;
            return v;
        }
        s += n;
        while (*s == ' ')
            s++;
    }
    return v;
}

/* A failed recipient gets a bounce unless its NOTIFY says otherwise
 * (RFC 3461 4.1: NEVER, or a list without FAILURE). */
static int
wants_bounce(const rcpt *r)
{
    llsmtp_span v = param(r->params, "NOTIFY");
    unsigned flags;
    if (v.p == NULL)
        return 1;
    if (llsmtp_dsn_notify_parse(v.p, v.n, &flags) != LLSMTP_OK)
        return 1;
    return (flags & LLSMTP_NOTIFY_FAILURE) != 0;
}

/* Status: the enhanced code at the start of the reply text, else the
 * class of the reply code (RFC 3464 2.3.4). */
static void
status_of(const rcpt *r, char *buf, size_t n)
{
    const char *t = r->text;
    size_t k = strspn(t, "0123456789.");
    if (r->state == 'X') {
        snprintf(buf, n, "4.4.7");
    } else if (k >= 5 && k < 12 && (t[0] == '4' || t[0] == '5') &&
               t[1] == '.' && (t[k] == ' ' || t[k] == '\0')) {
        snprintf(buf, n, "%.*s", (int)k, t);
    } else {
        snprintf(buf, n, "%d.0.0", r->code / 100);
    }
}

/* A value for a header field or a DSN field: control characters (CR and
 * LF above all, which would end the field and start one of the sender's
 * choosing) become "?". The envelope file decodes to any octet, and a
 * next hop's reply text is not ours either. */
static const char *
field_safe(const char *s, char *buf, size_t cap)
{
    size_t i;
    for (i = 0; s[i] && i + 1 < cap; i++)
        buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    buf[i] = '\0';
    return buf;
}

/* An ENVID or ORCPT value in its DSN field: as xtext (RFC 3461 4.2 and
 * 4.4, RFC 3464 2.2.1 and 2.3.1), re-encoded from the decoded value, so
 * "+0D+0A" stays six harmless characters instead of a line break.
 * Returns 0, or -1 for a value that is not xtext. */
static int
xtext_field(FILE *f, const char *p, size_t n)
{
    char dec[1024];
    size_t dn;
    size_t i;
    if (llsmtp_xtext_decode(p, n, dec, sizeof dec, &dn) != LLSMTP_OK)
        return -1;
    for (i = 0; i < dn; i++) {
        unsigned char c = (unsigned char)dec[i];
        if (c < 33 || c > 126 || c == '+' || c == '=')
            fprintf(f, "+%02X", c);
        else
            fputc(c, f);
    }
    return 0;
}

/* The end of the longest part of msg[0..lim) that ends a line (after an
 * LF), at least from; or from when there is no LF between. */
static size_t
cut_at_line(const char *msg, size_t from, size_t lim)
{
    size_t k = lim;
    while (k > from && msg[k - 1] != '\n')
        k--;
    return k;
}

/* A multipart/report (RFC 3464, RFC 6522) for the failed recipients.
 * What it returns of the message is bounded, as Postfix's
 * bounce_size_limit: at most --bounce-size-limit octets in all, header
 * included (a message without an empty line is all header), cut at a
 * line end, so a forged sender cannot be sent an attacker's payload in
 * full, nor half a line (a bare CR, a split UTF-8 sequence). */
static char *
make_bounce(queue *qu, const char *id, const char *bid, const envelope *e,
            const char *msg, size_t msgn, size_t *outn)
{
    char *out = NULL, date[64], arrival[64], st[16], a1[1024], t1[600],
         h1[LLSMTP_NAME_MAX + 1];
    size_t i, hdr_end = msgn, body_at, returned,
              limit = qu->cf->bounce_size_limit;
    FILE *f = open_memstream(&out, outn);
    llsmtp_span ret = param(e->mail_params, "RET");
    llsmtp_span envid = param(e->mail_params, "ENVID");
    int headers_only = (ret.p && ret.n == 4 &&
                        strncasecmp(ret.p, "HDRS", 4) == 0) ||
                       e->body == 9;
    int cut = 0; /* 1 body cut, 2 no body (its first line is too long),
                    3 header cut */
    if (f == NULL)
        return NULL;
    /* the header ends at the first empty line; msg is a mapping of the
     * file, not a C string, so the search stays inside msgn */
    for (i = 0; i + 4 <= msgn; i++)
        if (memcmp(msg + i, "\r\n\r\n", 4) == 0) {
            hdr_end = i + 2;
            break;
        }
    body_at = hdr_end + 2 <= msgn ? hdr_end + 2
                                  : msgn; /* after the empty line */
    returned = headers_only ? hdr_end : msgn;
    if (returned > limit) {
        if (body_at <= limit && !headers_only) {
            returned = cut_at_line(msg, body_at, limit);
            cut = returned > body_at ? 1 : 2;
        } else { /* the header alone is over the limit */
            returned = cut_at_line(msg, 0, hdr_end < limit ? hdr_end : limit);
            cut = 3;
        }
    }
    date_now(date, sizeof date, time(NULL));
    date_now(arrival, sizeof arrival, (time_t)e->received);
    fprintf(f,
            "Return-Path: <>\r\n"
            "Date: %s\r\n"
            "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n"
            "To: <%s>\r\n"
            "Subject: Undelivered Mail Returned to Sender\r\n"
            "Message-ID: <%s.bounce@%s>\r\n"
            "Auto-Submitted: auto-replied\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=delivery-status;\r\n"
            "\tboundary=\"%s/%s\"\r\n"
            "\r\n"
            "This is a MIME-encapsulated message.\r\n"
            "\r\n"
            "--%s/%s\r\n"
            "Content-Description: Notification\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n"
            "\r\n"
            "This is the mail system at host %s.\r\n"
            "\r\n"
            "Your message %s could not be delivered to one or more\r\n"
            "recipients. The reasons are below.\r\n"
            "\r\n",
            date, qu->cf->hostname, field_safe(e->from, a1, sizeof a1), bid,
            qu->cf->hostname, id, qu->cf->hostname, id, qu->cf->hostname,
            qu->cf->hostname, id);
    for (i = 0; i < e->n; i++) {
        const rcpt *r = &e->r[i];
        if ((r->state != 'F' && r->state != 'X') || !wants_bounce(r))
            continue;
        fprintf(f, "<%s>: %s%s%s%d %s\r\n", field_safe(r->addr, a1, sizeof a1),
                r->state == 'X' ? "still failing after the maximum time in "
                                  "the queue; last: "
                                : "",
                field_safe(r->remote, h1, sizeof h1),
                r->remote[0] ? " said: " : "", r->code,
                field_safe(r->text, t1, sizeof t1));
    }
    if (cut == 1)
        fprintf(f,
                "\r\nThe message below is truncated: its header, and the "
                "first %zu octets\r\nof its body.\r\n",
                returned - body_at);
    else if (cut == 2)
        fprintf(f,
                "\r\nThe message below is truncated: its header only; its "
                "body is not included\r\n(its first line is longer than "
                "the %zu octets returned at most).\r\n",
                limit);
    else if (cut == 3)
        fprintf(f,
                "\r\nThe message below is truncated: the first %zu octets "
                "of its header,\r\nand no body.\r\n",
                returned);
    fprintf(f,
            "\r\n--%s/%s\r\n"
            "Content-Description: Delivery report\r\n"
            "Content-Type: message/delivery-status\r\n"
            "\r\n"
            "Reporting-MTA: dns; %s\r\n"
            "X-Llsmtp-Queue-ID: %s\r\n",
            id, qu->cf->hostname, qu->cf->hostname, id);
    if (envid.p != NULL &&
        llsmtp_xtext_decode(envid.p, envid.n, NULL, 0, NULL) == LLSMTP_OK) {
        fputs("Original-Envelope-Id: ", f);
        xtext_field(f, envid.p, envid.n);
        fputs("\r\n", f);
    }
    fprintf(f, "Arrival-Date: %s\r\n", arrival);
    for (i = 0; i < e->n; i++) {
        const rcpt *r = &e->r[i];
        llsmtp_span orcpt = param(r->params, "ORCPT"), type, xt;
        if ((r->state != 'F' && r->state != 'X') || !wants_bounce(r))
            continue;
        status_of(r, st, sizeof st);
        fprintf(f, "\r\nFinal-Recipient: rfc822; %s\r\n",
                field_safe(r->addr, a1, sizeof a1));
        if (orcpt.p != NULL &&
            llsmtp_dsn_orcpt_parse(orcpt.p, orcpt.n, &type, &xt) ==
                LLSMTP_OK &&
            llsmtp_xtext_decode(xt.p, xt.n, NULL, 0, NULL) == LLSMTP_OK) {
            /* addr-type is an atom (the parser checked) */
            snprintf(h1, sizeof h1, "%.*s", type.n < 64 ? (int)type.n : 0,
                     type.p);
            fprintf(f, "Original-Recipient: %s;",
                    field_safe(h1, t1, sizeof t1));
            xtext_field(f, xt.p, xt.n);
            fputs("\r\n", f);
        }
        fprintf(f, "Action: failed\r\nStatus: %s\r\n", st);
        if (r->remote[0])
            fprintf(f, "Remote-MTA: dns; %s\r\n",
                    field_safe(r->remote, h1, sizeof h1));
        if (r->remote[0]) /* RFC 3464 2.3.6: what the remote MTA said */
            fprintf(f, "Diagnostic-Code: smtp; %d %s\r\n", r->code,
                    field_safe(r->text, t1, sizeof t1));
        fprintf(f, "Last-Attempt-Date: %s\r\n", date);
    }
    fprintf(f,
            "\r\n--%s/%s\r\n"
            "Content-Description: %s\r\n"
            "Content-Type: %s\r\n"
            "\r\n",
            id, qu->cf->hostname,
            headers_only ? "Undelivered Message Headers"
                         : "Undelivered Message",
            headers_only ? "text/rfc822-headers" : "message/rfc822");
    fwrite(msg, 1, returned, f);
    if (returned > 0 && msg[returned - 1] != '\n')
        fputs("\r\n", f);
    fprintf(f, "\r\n--%s/%s--\r\n", id, qu->cf->hostname);
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* Writes the bounce: to the local spool when the sender is ours, else as
 * a new queue entry with a null sender (which never bounces again). */
static int
bounce(queue *qu, const char *id, const envelope *e, const char *msg,
       size_t msgn)
{
    char bid[64], *env = NULL, a1[1024];
    size_t i, n, envn, want = 0;
    char *text;
    int local, rc;
    FILE *f;
    for (i = 0; i < e->n; i++)
        want += (e->r[i].state == 'F' || e->r[i].state == 'X') &&
                wants_bounce(&e->r[i]);
    if (want == 0 || e->from[0] == '\0' || e->bounced)
        return 0; /* RFC 5321 6.1: never to a null reverse-path */
    snprintf(bid, sizeof bid, "%.40sB%lX", id,
             (unsigned long)time(NULL) & 0xffff);
    text = make_bounce(qu, id, bid, e, msg, msgn, &n);
    if (text == NULL)
        return -1;
    local = is_local(qu, e->from);
    f = open_memstream(&env, &envn);
    if (f == NULL) {
        free(text);
        return -1;
    }
    fprintf(f, "version %d\nid %s\nreceived %ld\nclient 127.0.0.1\nhelo ",
            QUEUE_ENV_VERSION, bid, (long)time(NULL));
    queue_xtext_put(f, qu->cf->hostname, strlen(qu->cf->hostname));
    fprintf(f, "\nprotocol local\nfrom <>\n%s%srcpt <",
            e->body >= 8 ? "body 8BITMIME\n" : "",
            e->smtputf8 ? "smtputf8 yes\n" : "");
    queue_xtext_put(f, e->from, strlen(e->from));
    fprintf(f, "> %s\n", local ? "local" : "relay");
    if (fclose(f) != 0) {
        free(text);
        free(env);
        return -1;
    }
    /* the local copy keeps its Return-Path; a queued one skips it anyway */
    rc = queue_store(local ? qu->cf->spool : qu->qdir, qu->tmpdir, bid, env,
                     text, n, !local, qu->cf->no_fsync);
    free(text);
    free(env);
    if (rc == 0)
        log_line("queue=%s bounce=%s to=<%s> %s", id, bid,
                 field_safe(e->from, a1, sizeof a1),
                 local ? "stored" : "queued");
    return rc;
}

/* The addresses of a smart host named in brackets (or by address, or
 * "localhost"): the system's resolver, so /etc/hosts counts. */
static int
direct_target(const llsmtp_relayhost *rh, llsmtp_mx *mx, size_t *nmx,
              char *why, size_t whycap)
{
    struct addrinfo hints, *res, *ai;
    memset(mx, 0, sizeof *mx);
    snprintf(mx[0].host, sizeof mx[0].host, "%s", rh->host);
    *nmx = 1;
    if (rh->ip.family) {
        mx[0].addrs[0] = rh->ip;
        mx[0].naddrs = 1;
        return 0;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(rh->host, NULL, &hints, &res) != 0) {
        snprintf(why, whycap, "4.4.3 cannot resolve %s", rh->host);
        return 451;
    }
    for (ai = res; ai && mx[0].naddrs < LLSMTP_MX_ADDRS_MAX;
         ai = ai->ai_next) {
        char ip[64];
        const void *a =
            ai->ai_family == AF_INET
                ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)
                      ->sin6_addr;
        if (inet_ntop(ai->ai_family, a, ip, sizeof ip) != NULL &&
            llsmtp_ip_parse(ip, strlen(ip), &mx[0].addrs[mx[0].naddrs]) ==
                LLSMTP_OK)
            mx[0].naddrs++;
    }
    freeaddrinfo(res);
    return 0;
}

/* The targets for a domain: the smart host, or its MX hosts. */
static int
route_for(queue *qu, const char *domain, llsmtp_mx *mx, size_t *nmx,
          uint16_t *port, char *why, size_t whycap)
{
    llsmtp_mx_opts o;
    const char *self = qu->cf->hostname;
    llsmtp_mx_opts_init(&o);
    o.local_names = &self;
    o.nlocal_names = 1;
    o.local_addrs = qu->self_ip;
    o.nlocal_addrs = qu->nself;
    if (route_random(&o.seed, sizeof o.seed) != 0)
        o.seed = qu->dns.rng ^ (uint64_t)getpid();
    *port = (uint16_t)qu->cf->mx_port;
    if (qu->cf->smarthost != NULL) {
        llsmtp_relayhost rh;
        size_t hn;
        int rc;
        if (llsmtp_relayhost_parse(qu->cf->smarthost,
                                   strlen(qu->cf->smarthost), &rh,
                                   NULL) != LLSMTP_OK) {
            snprintf(why, whycap, "4.3.5 bad --smarthost");
            return 451;
        }
        *port = rh.port ? rh.port : 25;
        hn = strlen(rh.host);
        /* an address has no MX; "localhost" is never asked of DNS (RFC
         * 6761 6.3) */
        if (rh.no_mx || rh.ip.family ||
            strcasecmp(rh.host, "localhost") == 0 ||
            (hn > 10 && strcasecmp(rh.host + hn - 10, ".localhost") == 0))
            return direct_target(&rh, mx, nmx, why, whycap);
        rc = route_mx(&qu->dns, rh.host, &o, mx, ROUTE_MX_MAX, nmx, why,
                      whycap);
        if (rc != 0 && direct_target(&rh, mx, nmx, why, whycap) == 0 &&
            mx[0].naddrs > 0)
            return 0; /* no usable MX: the name's own address (5.1) */
        return rc;
    }
    return route_mx(&qu->dns, domain, &o, mx, ROUTE_MX_MAX, nmx, why, whycap);
}

static const char *
domain_of(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at ? at + 1 : "";
}

/* A log line is at most this long: "K <i> <code> <remote> <text>\n". */
#define ST_LINE_MAX (24 + LLSMTP_NAME_MAX + LLSMTP_REPLY_LINE_MAX + 8)

/* Delivers the open recipients of one domain (all of them through a
 * smart host), at most LLSMTP_CLIENT_RCPT_MAX per transaction. Returns
 * 0, or -1 when the log could not be written: the attempt stops there
 * (the entry stays deferred), since going on would act on outcomes the
 * next run does not know of. */
static int
deliver_group(queue *qu, const char *id, envelope *e, const char *domain,
              const char *body, size_t bodyn, char *log, size_t logcap)
{
    static llsmtp_mx mx[ROUTE_MX_MAX];
    static llsmtp_span to[LLSMTP_CLIENT_RCPT_MAX],
        params[LLSMTP_CLIENT_RCPT_MAX];
    static dlv_result res[LLSMTP_CLIENT_RCPT_MAX];
    static size_t idx[LLSMTP_CLIENT_RCPT_MAX];
    static char mparams[600];
    char why[LLSMTP_REPLY_LINE_MAX - 8];
    size_t nmx = 0, i, k, used = 0;
    uint16_t port;
    int rc = route_for(qu, domain, mx, &nmx, &port, why, sizeof why);
    dlv_conf dc;
    llsmtp_client_msg m;
    llsmtp_span ret = param(e->mail_params, "RET"),
                envid = param(e->mail_params, "ENVID");

    memset(&dc, 0, sizeof dc);
    llsmtp_client_cfg_init(&dc.cfg);
    dc.cfg.helo.p = qu->cf->hostname;
    dc.cfg.helo.n = strlen(qu->cf->hostname);
    /* opportunistic by default (RFC 3207); --next-hop-tls can demand it
     * and a certificate naming the host (RFC 6125) */
    dc.cfg.flags = qu->cf->tls ? LLSMTP_CLI_REQUIRE_TLS : LLSMTP_CLI_STARTTLS;
    dc.tls_verify = qu->cf->tls == 2;
    dc.ca_file = qu->cf->ca_file;
    dc.timeout = qu->cf->timeout;
    dc.trace = qu->cf->verbose ? stderr : NULL;
    llsmtp_client_msg_init(&m);
    m.from.p = e->from;
    m.from.n = strlen(e->from);
    m.size = bodyn;
    if (e->body >= 8)
        m.flags |= LLSMTP_MSG_8BIT;
    if (e->smtputf8)
        m.flags |= LLSMTP_MSG_SMTPUTF8;
    /* RFC 3461 6.2: DSN requests travel on when the next hop takes them */
    snprintf(mparams, sizeof mparams, "%s%.*s%s%s%.*s", ret.p ? "RET=" : "",
             (int)ret.n, ret.p ? ret.p : "", ret.p && envid.p ? " " : "",
             envid.p ? "ENVID=" : "", (int)envid.n, envid.p ? envid.p : "");
    m.mail_params.p = mparams;
    m.mail_params.n = strlen(mparams);
    for (;;) {
        off_t at = 0;
        size_t resn = 0;
        for (i = 0, k = 0; i < e->n && k < LLSMTP_CLIENT_RCPT_MAX; i++) {
            rcpt *r = &e->r[i];
            if (r->state || r->code == -1 ||
                (qu->cf->smarthost == NULL &&
                 strcasecmp(domain_of(r->addr), domain) != 0))
                continue;
            to[k].p = r->addr;
            to[k].n = strlen(r->addr);
            params[k].p = r->params;
            params[k].n = strlen(r->params);
            idx[k++] = i;
        }
        if (k == 0)
            return 0;
        if (e->body == 9) {
            rc = 554;
            snprintf(why, sizeof why,
                     "5.6.3 binary (BINARYMIME) content cannot be relayed "
                     "over DATA");
        }
        m.to = to;
        m.nto = k;
        m.rcpt_params = params;
        if (rc != 0) {
            for (i = 0; i < k; i++) {
                res[i].code = rc;
                snprintf(res[i].text, sizeof res[i].text, "%s", why);
                res[i].remote[0] = '\0';
            }
        } else {
            /* the outcome's place in the log first: a message sent is
             * a message recorded, even on a disk that fills meanwhile */
            resn = k * ST_LINE_MAX;
            if (st_reserve(qu, id, resn, &at) != 0) {
                log_line("queue=%s cannot make room in its log: %s; not "
                         "sending now, the entry stays deferred",
                         id, strerror(errno));
                return -1;
            }
            dlv_send_mx(mx, nmx, port, &dc, &m, body, bodyn, res);
        }
        dlv_tls_unoffered(&dc, res, k); /* wait for the next hop to be fixed */
        for (i = 0; i < k; i++) {
            rcpt *r = &e->r[idx[i]];
            int kind;
            size_t w;
            kind = res[i].code / 100 == 2   ? 'D'
                   : res[i].code / 100 == 5 ? 'F'
                                            : 'T';
            r->state = kind == 'T' ? 0 : kind;
            r->code = res[i].code;
            snprintf(r->remote, sizeof r->remote, "%s", res[i].remote);
            snprintf(r->text, sizeof r->text, "%s", res[i].text);
            w = (size_t)snprintf(log + used, logcap - used,
                                 "%c %zu %d %s %s\n", kind, idx[i], r->code,
                                 r->remote[0] ? r->remote : "-", r->text);
            if (used + w < logcap)
                used += w;
            log_line("queue=%s to=<%s> relay=%s status=%s %d %s", id, r->addr,
                     r->remote[0] ? r->remote : "none",
                     kind == 'D'   ? "sent"
                     : kind == 'F' ? "bounced"
                                   : "deferred",
                     r->code, r->text);
            if (kind == 'T')
                r->code = -1; /* tried in this run: not again */
        }
        /* what this transaction did is durable before the next begins */
        if ((resn > 0 ? st_fill(qu, id, at, resn, log)
                      : st_append(qu, id, log)) != 0) {
            log_line("queue=%s cannot write its log: %s; the attempt stops, "
                     "the entry stays deferred",
                     id, strerror(errno));
            return -1;
        }
        log[0] = '\0';
        used = 0;
    }
}

static void
run_entry(queue *qu, const char *id)
{
    envelope e;
    char path[4200], *log;
    size_t logcap = LLSMTP_CLIENT_RCPT_MAX * ST_LINE_MAX + 4096, i, open_ = 0,
           msgn = 0;
    const char *msg = NULL, *body;
    void *map = MAP_FAILED;
    struct stat st;
    time_t now = time(NULL);
    int fd, mfd, stopped = 0;

    qu->dns = qu->cf->dns;
    /* one runner per entry, even across a restart that left an old
     * runner working (the lock goes when its holder exits) */
    entry_path(qu, path, sizeof path, id, "env");
    fd = open(path, O_RDONLY);
    if (fd < 0) {
        /* the .eml is there (the entry exists), its .env not yet: being
         * stored (it comes last), or lost; looked at again later */
        log_line("queue=%s has no envelope (%s.env: %s): not delivered now, "
                 "looked at again in %us",
                 id, id, strerror(errno), qu->cf->retry[0]);
        fflush(stderr);
        _exit(0);
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        _exit(RUNNER_BUSY);
    }
    if (env_load(qu, id, &e) != 0) {
        log_line("queue=%s unreadable envelope: left alone", id);
        return;
    }
    /* A received time in the future means the clock stepped back since:
     * the message counts as received now, so no age below wraps around
     * to something older than --max-queue-time; and that "now" is kept in
     * the log ("R"), or every attempt would make it younger again and it
     * would never expire. */
    if (e.received > (long)now) {
        char line[64];
        snprintf(line, sizeof line, "R %ld\n", (long)now);
        log_line("queue=%s received in the future (%ld): counted from now", id,
                 e.received);
        e.received = (long)now;
        if (st_append(qu, id, line) != 0)
            log_line("queue=%s cannot write its log: %s", id, strerror(errno));
    }
    entry_path(qu, path, sizeof path, id, "eml");
    mfd = open(path, O_RDONLY);
    if (mfd >= 0 && fstat(mfd, &st) == 0 && st.st_size > 0)
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, mfd, 0);
    if (mfd >= 0)
        close(mfd);
    if (map == MAP_FAILED) {
        log_line("queue=%s cannot read the message: %s", id, strerror(errno));
        env_free(&e);
        return;
    }
    msg = (const char *)map;
    msgn = (size_t)st.st_size;
    /* Return-Path is for final delivery only (RFC 5321 4.4) */
    body = msg;
    if (msgn > 13 && memcmp(msg, "Return-Path: ", 13) == 0) {
        const char *eol = (const char *)memchr(msg, '\n', msgn);
        if (eol != NULL)
            body = eol + 1;
    }
    log = (char *)malloc(logcap);
    if (log == NULL) {
        munmap(map, msgn);
        env_free(&e);
        return;
    }
    log[0] = '\0';
    if ((unsigned long)((long)now - e.received) < qu->cf->max_queue_time ||
        e.attempts == 0)
        for (i = 0; i < e.n && !stopped; i++) {
            if (e.r[i].state || e.r[i].code == -1)
                continue;
            stopped = deliver_group(qu, id, &e,
                                    qu->cf->smarthost ? ""
                                                      : domain_of(e.r[i].addr),
                                    body, msgn - (size_t)(body - msg), log,
                                    logcap) != 0;
        }
    log[0] = '\0'; /* (what a stopped transaction could not write) */
    now = time(NULL);
    if (e.received > (long)now)
        e.received = (long)now;
    for (i = 0; i < e.n; i++) {
        if (e.r[i].code == -1)
            e.r[i].code = 451;
        open_ += e.r[i].state == 0;
    }
    e.attempts++;
    if (stopped) {
        /* outcomes may be missing from the log: nothing final now (no
         * bounce, no removal); the next attempt sees what is written */
        open_ = open_ > 0 ? open_ : 1;
    } else if (open_ > 0 && (unsigned long)((long)now - e.received) >=
                                qu->cf->max_queue_time) {
        /* RFC 5321 4.5.4.1: give up, and say so to the sender */
        for (i = 0; i < e.n; i++) {
            size_t used = strlen(log);
            rcpt *r = &e.r[i];
            if (r->state)
                continue;
            r->state = 'X';
            snprintf(log + used, logcap - used, "X %zu %d %s %s\n", i,
                     r->code ? r->code : 451, r->remote[0] ? r->remote : "-",
                     r->text[0] ? r->text : "4.4.7 no attempt succeeded");
            log_line(
                "queue=%s to=<%s> status=expired (in the queue since %ld)", id,
                r->addr, e.received);
        }
        open_ = 0;
    }
    if (open_ == 0) {
        if (st_append(qu, id, log) != 0 ||
            bounce(qu, id, &e, body, msgn - (size_t)(body - msg)) != 0 ||
            st_append(qu, id, "B\n") != 0) {
            log_line("queue=%s cannot finish: %s (kept)", id, strerror(errno));
        } else {
            /* the .eml first: without it the entry no longer exists */
            entry_path(qu, path, sizeof path, id, "eml");
            unlink(path);
            entry_path(qu, path, sizeof path, id, "env");
            unlink(path);
            entry_path(qu, path, sizeof path, id, "st");
            unlink(path);
            queue_sync_dir(qu->qdir, qu->cf->no_fsync);
            log_line("queue=%s removed", id);
        }
    } else {
        size_t k = (size_t)e.attempts - 1 < qu->cf->nretry
                       ? (size_t)e.attempts - 1
                       : qu->cf->nretry - 1;
        long next = (long)now + (long)qu->cf->retry[k],
             used = (long)strlen(log);
        long last = e.received + (long)qu->cf->max_queue_time;
        if (next > last)
            next = last > (long)now ? last : (long)now + 1;
        snprintf(log + used, logcap - (size_t)used, "N %ld %ld\n", next,
                 e.attempts);
        if (st_append(qu, id, log) != 0)
            log_line("queue=%s cannot write its log: %s", id, strerror(errno));
        log_line("queue=%s %zu recipients deferred; next attempt in %lds", id,
                 open_, next - (long)now);
    }
    free(log);
    munmap(map, msgn);
    env_free(&e);
}

/* ---- ETRN off the event loop (smtpd scans in a child process) ---------- */

size_t
queue_entries(queue *qu)
{
    return qu->nents;
}

/* Whether the entry has an open recipient in node (or, for "@node", in
 * node and its subdomains). */
static int
etrn_match(const envelope *e, const char *node, size_t n, int subdomains)
{
    size_t k;
    for (k = 0; k < e->n; k++) {
        const char *at = strrchr(e->r[k].addr, '@');
        size_t dn;
        if (e->r[k].state || at == NULL)
            continue;
        at++;
        dn = strlen(at);
        if ((dn == n && strncasecmp(at, node, n) == 0) ||
            (subdomains && dn > n && at[dn - n - 1] == '.' &&
             strncasecmp(at + dn - n, node, n) == 0))
            return 1;
    }
    return 0;
}

int
queue_etrn_scan(queue *qu, const char *node, size_t n, int fd)
{
    size_t i;
    int subdomains = n > 0 && node[0] == '@';
    if (subdomains) {
        node++;
        n--;
    }
    for (i = 0; i < qu->nents; i++) {
        envelope e;
        int hit;
        if (env_load(qu, qu->ents[i].id, &e) != 0)
            continue;
        hit = etrn_match(&e, node, n, subdomains);
        env_free(&e);
        if (hit) {
            char line[80];
            int len = snprintf(line, sizeof line, "%s\n", qu->ents[i].id);
            if (write(fd, line, (size_t)len) != len)
                return -1;
        }
    }
    return 0;
}

int
queue_make_due(queue *qu, const char *id)
{
    size_t i;
    for (i = 0; i < qu->nents; i++)
        if (strcmp(qu->ents[i].id, id) == 0) {
            qu->ents[i].next = 0;
            return 1;
        }
    return 0;
}
