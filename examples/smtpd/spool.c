/* SPDX-License-Identifier: MIT
 *
 * spool.c - where smtpd's messages go: the spool directory (made and
 * locked at start, with the queue and the storage thread), message ids,
 * the message while it comes (in memory up to MEM_MSG octets, then
 * DIR/tmp/<id>.eml), its envelopes, and the hand-over to commit.c's
 * thread, which writes, fsyncs and renames; stored() answers the
 * session once that is done. Nothing here waits for the disk but
 * spill_message, for a message too big to keep in memory.
 */
#include "smtpd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* DIR/tmp holds a file only while it is written (a message, its
 * envelopes, a bounce) and linked into DIR or DIR/queue; a crash leaves
 * what was under way there, never a message anyone acknowledged (its
 * names are linked in before its 250). With the spool's lock held, files
 * older than TMP_STALE are removed at start-up; younger ones are left:
 * a queue runner of the server that died may still be writing one. */
#define TMP_STALE (15 * 60)

static void
spool_clean_tmp(const char *tmp)
{
    DIR *dir = opendir(tmp);
    struct dirent *e;
    struct stat st;
    char path[4400];
    size_t n = 0;
    time_t now = time(NULL);
    if (dir == NULL)
        return;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", tmp, e->d_name);
        if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
            st.st_mtime < now - TMP_STALE && unlink(path) == 0)
            n++;
    }
    closedir(dir);
    if (n > 0)
        log_line("spool: removed %zu stale files from %s", n, tmp);
}

/* Makes DIR and DIR/tmp, takes the spool's lock, opens the queue and
 * starts the storage thread. Returns 0, or the exit status. */
int
spool_open(smtpd *d)
{
    options *o = &d->opt;
    char tmp[4096];
    long holder = 0;
    int locked;
    snprintf(tmp, sizeof tmp, "%s/tmp", o->spool);
    if (mkdir(o->spool, 0750) != 0 && errno != EEXIST) {
        log_say("cannot create spool %s: %s", o->spool, strerror(errno));
        return 1;
    }
    /* one smtpd per spool, before anything in it is touched */
    d->outq = queue_new();
    if (d->outq == NULL) {
        perror("smtpd");
        return 1;
    }
    locked = queue_lock(d->outq, o->spool, &holder) == 0;
    if (!locked) {
        if (errno == EWOULDBLOCK) {
            log_say("spool %s is in use by another smtpd "
                    "(pid %ld holds %s/smtpd.lock): not started",
                    o->spool, holder, o->spool);
            return 2;
        }
        log_say("warning: cannot lock %s/smtpd.lock: %s; "
                "going on without the lock",
                o->spool, strerror(errno));
    }
    if (mkdir(tmp, 0750) != 0 && errno != EEXIST) {
        log_say("cannot create spool %s: %s", o->spool, strerror(errno));
        return 1;
    }
    if (locked) /* without the lock, another smtpd may be writing */
        spool_clean_tmp(tmp);
    o->q.spool = o->spool;
    o->q.hostname = o->hostname;
    o->q.local_domains = o->local_domains;
    o->q.nlocal = (size_t)o->nlocal;
    o->q.timeout = o->timeout;
    o->q.no_fsync = o->no_fsync;
    o->q.verbose = o->verbose;
    o->q.child_setup = runner_setup;
    o->q.child_arg = d;
    o->q.listen = o->listen;
    o->q.nlisten = (size_t)o->nlisten;
    if (o->dns == NULL)
        route_dns_default(&o->q.dns);
    if (queue_open(d->outq, &o->q) != 0) {
        log_say("cannot create %s/queue: %s", o->spool, strerror(errno));
        return 1;
    }
    d->commit = commit_open(o->spool, o->no_fsync, o->flush_each_file);
    if (d->commit == NULL) {
        log_say("cannot start the storage thread: %s", strerror(errno));
        return 1;
    }
    log_line("spool: %s, a batch of messages made durable by %s", o->spool,
             commit_flush_how(d->commit));
    return 0;
}

/* v's low 4 * digits bits as that many upper-case hex digits at p. */
static char *
hex_put(char *p, unsigned long v, int digits)
{
    static const char hex[] = "0123456789ABCDEF";
    int i;
    for (i = digits - 1; i >= 0; i--, v >>= 4)
        p[i] = hex[v & 15u];
    return p + digits;
}

void
new_id(smtpd *d, char *buf, size_t n)
{
    /* Unique across restarts: time, pid and a counter, and 40 random
     * bits, since a restart in the same second can have the same pid
     * (pid 1 in a container) and starts the counter again. */
    unsigned char r[5] = {0, 0, 0, 0, 0};
    char id[8 + 6 + 4 + 10 + 1], *p = id;
    size_t i;
    if (d->id_rand_at < sizeof r) {
        if (route_random(d->id_rand, sizeof d->id_rand) == 0)
            d->id_rand_at = sizeof d->id_rand;
        else
            r[0] = (unsigned char)clock(); /* the files are O_EXCL too */
    }
    if (d->id_rand_at >= sizeof r) {
        d->id_rand_at -= sizeof r;
        memcpy(r, d->id_rand + d->id_rand_at, sizeof r);
    }
    /* What "%08lX%06lX%04lX" and five "%02X" would print (the time's low
     * 32 bits: 8 digits until 2106), without snprintf's parsing: it was
     * 3% of smtpd's instructions for a 50-recipient message, 11% for a
     * one-recipient one (bench/rcpt-cost.sh). */
    p = hex_put(p, (unsigned long)time(NULL) & 0xffffffffUL, 8);
    p = hex_put(p, (unsigned long)log_pid() & 0xffffffUL, 6);
    p = hex_put(p, d->id_counter++ & 0xffffUL, 4);
    for (i = 0; i < sizeof r; i++)
        p = hex_put(p, r[i], 2);
    *p = '\0';
    if (n > 0) {
        i = n - 1 < sizeof id - 1 ? n - 1 : sizeof id - 1;
        memcpy(buf, id, i);
        buf[i] = '\0';
    }
}

static void
tmp_path(char *buf, size_t n, const conn *c, const char *ext)
{
    snprintf(buf, n, "%s/tmp/%s.%s", c->d->opt.spool, c->id, ext);
}

void
drop_message(conn *c)
{
    char path[4096];
    if (c->msg != NULL) {
        fclose(c->msg);
        c->msg = NULL;
        if (c->mem) {
            free(c->mbuf);
            c->mbuf = NULL;
            c->mem = 0;
        } else {
            tmp_path(path, sizeof path, c, "eml");
            unlink(path);
        }
    }
}

/* A message grown past MEM_MSG goes on in DIR/tmp/<id>.eml (a file of
 * its own, never another message's: O_EXCL). Smaller ones never make a
 * file here: creating one can wait for the disk (the file system's
 * journal), and the poll loop must not; commit.c's thread makes it. */
static int
spill_message(conn *c)
{
    char path[4096];
    FILE *f = NULL;
    int fd, ok;
    if (fflush(c->msg) != 0)
        return -1;
    tmp_path(path, sizeof path, c, "eml");
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0640);
    if (fd >= 0 && (f = fdopen(fd, "wb")) == NULL) {
        close(fd);
        unlink(path);
    }
    if (f == NULL)
        return -1;
    setvbuf(f, NULL, _IOFBF, 65536);
    ok = fwrite(c->mbuf, 1, c->mlen, f) == c->mlen;
    fclose(c->msg);
    free(c->mbuf);
    c->mbuf = NULL;
    c->mem = 0;
    c->msg = f; /* dropped (and unlinked) with the file's name */
    return ok ? 0 : -1;
}

static void
rfc5322_date(char *buf, size_t n)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, n, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

/* A message begins (DATA, BDAT): in memory first (spill_message), with
 * its trace header. A failure is the reply r (451). */
int
spool_begin(conn *c, llsmtp_reply *r)
{
    char date[64];
    c->mbuf = NULL;
    c->mlen = 0;
    c->msg = open_memstream(&c->mbuf, &c->mlen);
    if (c->msg == NULL) {
        log_line("session=%lu cannot queue: %s", c->sid, strerror(errno));
        llsmtp_reply_set(r, 451, "4.3.0", "Local error: cannot queue");
        return LLSMTP_OK;
    }
    c->mem = 1;
    rfc5322_date(date, sizeof date);
    /* RFC 5321 4.4: trace information. */
    fprintf(c->msg, "Return-Path: <%s>\r\n", c->sender ? c->sender : "");
    fprintf(c->msg, "Received: from %s (%s)\r\n\tby %s with %s id %s",
            TEXT(c->helo), c->peer, c->d->opt.hostname, protocol(c), c->id);
    if (c->nrcpt == 1)
        fprintf(c->msg, "\r\n\tfor <%s>", rcpt_path(c, 0));
    fprintf(c->msg, "; %s\r\n", date);
    return LLSMTP_OK;
}

/* Octets of the message; a failure drops it (the reply says so at its
 * end). */
int
spool_write(conn *c, const char *p, size_t n)
{
    if (c->msg != NULL && c->mem && (size_t)ftell(c->msg) + n > MEM_MSG &&
        spill_message(c) != 0) {
        c->write_errno = errno;
        log_line("session=%lu cannot create DIR/tmp/%s.eml: %s", c->sid, c->id,
                 strerror(errno));
        drop_message(c);
        c->id[0] = '\0';
    }
    if (c->msg != NULL && fwrite(p, 1, n, c->msg) != n) {
        c->write_errno = errno;
        log_line("session=%lu write failed: %s", c->sid, strerror(errno));
        drop_message(c);
        c->id[0] = '\0';
    }
    return LLSMTP_OK;
}
/* The envelope of the local (relay == 0) or relayed (relay == 1)
 * recipients, as text (commit.c writes it), or NULL. */
static char *
envelope_text(conn *c, int relay, size_t *len)
{
    /* README "Envelope files": every value from the client is xtext, so
     * a quoted local part with ">" or a space in it stays one field */
#define ENV_PUT(s) queue_xtext_put(f, (s), strlen(s))
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    size_t i;
    int ok;
    const char *tls_version, *tls_cipher;
    if (f == NULL)
        return NULL;
    fprintf(f, "version %d\nid %s\nreceived %ld\nclient ", QUEUE_ENV_VERSION,
            c->id, (long)time(NULL));
    ENV_PUT(c->peer);
    fputs("\nhelo ", f);
    ENV_PUT(TEXT(c->helo));
    fprintf(f, "\nprotocol %s\nfrom <", protocol(c));
    ENV_PUT(c->sender ? c->sender : "");
    fputs(">\n", f);
    if (c->auth_user != NULL) {
        fputs("auth ", f);
        ENV_PUT(c->auth_user);
        fputc('\n', f);
    }
    if (tls_names(c, &tls_version, &tls_cipher))
        fprintf(f, "tls %s %s\n", tls_version, tls_cipher);
    if (c->params && c->params[0]) {
        fputs("mail-params ", f);
        queue_params_put(f, c->params);
        fputc('\n', f);
    }
    {
        int body = llsmtp_server_body_type(c->s);
        if (body)
            fprintf(f, "body %s\n",
                    body == 7   ? "7BIT"
                    : body == 8 ? "8BITMIME"
                                : "BINARYMIME");
        if (llsmtp_server_smtputf8(c->s))
            fprintf(f, "smtputf8 yes\n");
    }
    for (i = 0; i < c->nrcpt; i++)
        if (c->relay[i] == relay) {
            const char *params = rcpt_params(c, i);
            fputs("rcpt <", f);
            ENV_PUT(rcpt_path(c, i));
            fprintf(f, "> %s%s", relay ? "relay" : "local",
                    params[0] ? " " : "");
            queue_params_put(f, params);
            fputc('\n', f);
        }
#undef ENV_PUT
    ok = !ferror(f);
    ok = fclose(f) == 0 && ok;
    if (!ok) {
        free(text);
        return NULL;
    }
    return text;
}

/* The message, its envelopes and its session to the storage thread
 * (on_data_end): LLSMTP_PAUSED until stored() answers, or the
 * refusal in r at once. */
int
spool_submit(conn *c, llsmtp_reply *r)
{
    if (c->msg != NULL) {
        /* The storage thread writes the envelopes, flushes this message
         * with the others of its batch and links it in; stored() sends
         * the 250 once that is done. */
        commit_job *j = commit_new();
        size_t i, nrelay = 0;
        for (i = 0; i < c->nrcpt; i++)
            nrelay += c->relay[i] != 0;
        if (j != NULL && nrelay > 0)
            j->env_relay = envelope_text(c, 1, &j->env_relay_n);
        if (j != NULL && nrelay < c->nrcpt)
            j->env_local = envelope_text(c, 0, &j->env_local_n);
        if (j != NULL && (j->env_relay != NULL) == (nrelay > 0) &&
            (j->env_local != NULL) == (nrelay < c->nrcpt)) {
            snprintf(j->id, sizeof j->id, "%s", c->id);
            if (c->mem) { /* in memory: the thread makes its file */
                int ok = fclose(c->msg) == 0; /* mbuf and mlen final */
                c->msg = NULL;
                c->mem = 0;
                j->mem = c->mbuf;
                j->mem_n = c->mlen;
                c->mbuf = NULL;
                if (!ok) {
                    c->write_errno = errno;
                    commit_free(j);
                    store_failed(c, r, c->write_errno);
                    return LLSMTP_OK;
                }
            } else {
                j->msg = c->msg;
                c->msg = NULL;
            }
            j->owner = c;
            c->job = j;
            if (j->env_relay != NULL)
                queue_hold(c->d->outq, j->id); /* no runner before the flush */
            commit_submit(c->d->commit, j);
            return LLSMTP_PAUSED;
        }
        c->write_errno = ENOMEM;
        commit_free(j);
    }
    store_failed(c, r, c->write_errno ? c->write_errno : errno);
    return LLSMTP_OK;
}

/* The message was not stored: 451, or 452 when the disk is full. */
void
store_failed(conn *c, llsmtp_reply *r, int err)
{
    log_line("session=%lu queue write failed: %s", c->sid, strerror(err));
    /* RFC 3463 4.3.1: mail system full; try again later */
    if (err == ENOSPC || err == EDQUOT)
        llsmtp_reply_set(r, 452, "4.3.1",
                         "Insufficient system storage: message not queued");
    else
        llsmtp_reply_set(r, 451, "4.3.0", "Local error: message not queued");
    free_tx(c);
}

/* The storage thread is done with j: the session hears its 250 now (or
 * 451/452), and gets on with what its client sent meanwhile. */
void
stored(smtpd *d, commit_job *j)
{
    conn *c = (conn *)j->owner;
    llsmtp_reply r = LLSMTP_REPLY_INIT;
    int rc;
    if (j->env_relay != NULL)
        queue_release(d->outq, j->id);
    if (j->err == 0 && j->env_relay != NULL)
        queue_add(d->outq, j->id);
    if (c == NULL) {
        /* duplicate at worst: the client saw no 250 and may send it
         * again; a loss never */
        if (j->err == 0)
            log_line("queue=%s stored after its session ended: no 250 sent",
                     j->id);
        commit_free(j);
        return;
    }
    c->job = NULL;
    if (j->err != 0) {
        store_failed(c, &r, j->err);
    } else {
        llsmtp_reply_set_id(&r, j->id, strlen(j->id));
        log_line("session=%lu queued=%s from=<%s> nrcpt=%zu", c->sid, j->id,
                 c->sender ? c->sender : "", c->nrcpt);
        free_tx(c);
    }
    commit_free(j);
    if (conn_lend(c) != 0) { /* no memory for the reply: closed */
        c->closing = 1;
        return;
    }
    rc = llsmtp_server_resume(c->s, &r);
    if (rc == LLSMTP_CLOSE) {
        c->closing = 1;
    } else if (rc < 0) {
        log_line("session=%lu library error %s", c->sid, llsmtp_errname(rc));
        c->closing = 1;
    }
    arm_timer(c);
    flush_out(c); /* a lost peer shows again in the loop */
}
