/* Destination: a local directory. A book appears only whole: its synced staging file is
 * renamed into place (copied to DEST/.quire-incoming first when staging is on another
 * filesystem), and the directory is synced before the book counts as delivered. An
 * unnamed staging file (the derived outputs', made by stage_file in DEST itself) is linked
 * in under its name, or, to replace a file of that name, linked into .quire-incoming and
 * renamed over it. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quire/base/privdir.h"
#include "quire/base/util.h"
#include "quire/engine/loop.h"
#include "quire/engine/worker.h"
#include "quire/io/sinks.h"

#define INCOMING ".quire-incoming"
#define PART     ".quire-part"

struct dir_sink {
        struct sink base;
        const char *dest;
        const char *what; /* the option, for messages */
        int dirfd;
        mode_t mode; /* delivered files get the mode the umask gives */
        /* DEST/.quire-incoming, made (and locked) when a first copy needs it */
        pthread_mutex_t incoming_lock;
        int incoming_fd, incoming_lockfd;
};

struct dir_slot {
        struct dir_sink *ds;
        struct worker *w;
        struct delivery *d;
        struct lookup *lk;
        struct loop_op sync_op;
        struct loop_op later_op; /* reports a failure from the loop */
        int err;
        bool transient;
        char detail[600];
};

static struct dir_slot *slot_of(struct sink_slot *ss)
{
        return (struct dir_slot *)ss;
}

/* For a destination that does not exist yet: 0 when the nearest existing directory above
 * it lets this user make it, else -errno. */
static int nearest_writable(const char *dest)
{
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", dest);
        for (;;) {
                char *slash = strrchr(buf, '/');
                if (!slash || slash == buf) {
                        snprintf(buf, sizeof buf, "%s", slash ? "/" : ".");
                        break;
                }
                *slash = 0;
                if (access(buf, F_OK) == 0)
                        break;
        }
        return access(buf, W_OK | X_OK) == 0 ? 0 : -errno;
}

/* Opens, checks and locks DEST/.quire-incoming, sweeping what a killed run left. */
static int incoming_open(struct dir_sink *ds, char *msg, size_t msglen)
{
        char path[4096 + sizeof INCOMING];
        snprintf(path, sizeof path, "%s/%s", ds->dest, INCOMING);
        int fd = privdir_open(ds->what, path, 0, msg, msglen);
        if (fd < 0)
                return fd;
        int err = privdir_lock(fd, ds->what, path, &ds->incoming_lockfd, msg, msglen);
        if (err) {
                close(fd);
                return err;
        }
        ds->incoming_fd = fd;
        int removed = privdir_sweep(fd, PART);
        if (removed > 0)
                qlog("removed %d partial copies left by an earlier run in %s", removed, path);
        return 0;
}

static int copy_fd(int in, int out)
{
        off_t off = 0;
        for (;;) {
                ssize_t n = sendfile(out, in, &off, 1 << 30);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return 0;
        }
}

/* Staging on another filesystem: copy into DEST/.quire-incoming (same filesystem as the
 * target), sync, and rename, so the target still appears only whole and what a killed
 * run leaves is found without scanning the whole destination. Synchronous: the rare
 * case, and one a same-filesystem --staging avoids. */
static int incoming(struct dir_sink *ds, char *msg, size_t msglen)
{
        pthread_mutex_lock(&ds->incoming_lock);
        int err = ds->incoming_fd >= 0 ? 0 : incoming_open(ds, msg, msglen);
        pthread_mutex_unlock(&ds->incoming_lock);
        return err;
}

static int copy_into_place(struct dir_sink *ds, const struct delivery *d, char *msg, size_t msglen)
{
        int err = incoming(ds, msg, msglen);
        if (err)
                return err;
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s%s", d->name, PART);
        int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
        int out = openat(ds->incoming_fd, tmp, flags, 0600);
        if (out < 0 && errno == EEXIST && unlinkat(ds->incoming_fd, tmp, 0) == 0)
                out = openat(ds->incoming_fd, tmp, flags, 0600);
        err = out < 0 ? -errno : copy_fd(d->fd, out);
        if (!err && (fchmod(out, ds->mode) < 0 || fdatasync(out) < 0))
                err = -errno;
        if (!err && renameat(ds->incoming_fd, tmp, ds->dirfd, d->name) < 0)
                err = -errno;
        if (err && out >= 0)
                unlinkat(ds->incoming_fd, tmp, 0);
        if (out >= 0)
                close(out);
        if (err)
                snprintf(msg, msglen, "%s %s/%s: %s", ds->what, ds->dest, d->name, strerror(-err));
        return err;
}

/* An unnamed file (O_TMPFILE) gets its name by a link: at once when the name is free,
 * else through .quire-incoming and a rename over the old file, so that a reader sees the
 * old file or the whole new one. A file on another filesystem is copied. */
static int link_into_place(struct dir_sink *ds, const struct delivery *d, char *msg, size_t msglen)
{
        char proc[64], tmp[256];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", d->fd);
        if (linkat(AT_FDCWD, proc, ds->dirfd, d->name, AT_SYMLINK_FOLLOW) == 0)
                return 0;
        if (errno == EXDEV || errno == ENOENT)
                return copy_into_place(ds, d, msg, msglen); /* elsewhere, or not linkable */
        if (errno != EEXIST)
                return -errno;
        int err = incoming(ds, msg, msglen);
        if (err)
                return err;
        snprintf(tmp, sizeof tmp, "%s%s", d->name, PART);
        if (unlinkat(ds->incoming_fd, tmp, 0) < 0 && errno != ENOENT)
                return -errno;
        if (linkat(AT_FDCWD, proc, ds->incoming_fd, tmp, AT_SYMLINK_FOLLOW) < 0)
                return -errno;
        if (renameat(ds->incoming_fd, tmp, ds->dirfd, d->name) < 0) {
                err = -errno;
                unlinkat(ds->incoming_fd, tmp, 0);
        }
        return err;
}

static void on_synced(struct loop_op *op, int res)
{
        struct dir_slot *s = container_of(op, struct dir_slot, sync_op);
        if (res < 0) {
                snprintf(s->detail, sizeof s->detail, "%s %s: fsync: %s", s->ds->what, s->ds->dest,
                         strerror(-res));
                s->d->done(s->d, res, true, s->detail);
                return;
        }
        s->d->done(s->d, 0, false, NULL);
}

static void on_later(struct loop_op *op, int res)
{
        struct dir_slot *s = container_of(op, struct dir_slot, later_op);
        if (s->lk) {
                struct lookup *lk = s->lk;
                s->lk = NULL;
                lk->done(lk, s->err, s->err ? s->detail : NULL);
                return;
        }
        s->d->done(s->d, s->err, s->transient, s->detail);
}

static void dir_deliver(struct sink_slot *ss, struct delivery *d)
{
        struct dir_slot *s = slot_of(ss);
        struct dir_sink *ds = s->ds;
        s->d = d;
        int err = 0;
        s->detail[0] = 0;
        if (fchmod(d->fd, ds->mode) < 0)
                err = -errno;
        else if (!d->staging_path)
                err = link_into_place(ds, d, s->detail, sizeof s->detail);
        else if (renameat(AT_FDCWD, d->staging_path, ds->dirfd, d->name) == 0)
                d->staging_taken = true;
        else if (errno == EXDEV)
                err = copy_into_place(ds, d, s->detail, sizeof s->detail);
        else
                err = -errno;
        if (err) {
                if (!s->detail[0])
                        snprintf(s->detail, sizeof s->detail, "%s %s/%s: %s", ds->what, ds->dest,
                                 d->name,
                                 err == -ENOENT ? "the staging file is gone (removed "
                                                  "by someone else?)"
                                                : strerror(-err));
                s->err = err;
                s->transient = err == -ENOSPC || err == -EDQUOT;
                loop_timer(worker_loop(s->w), &s->later_op, 0);
                return;
        }
        loop_fdatasync(worker_loop(s->w), &s->sync_op, ds->dirfd);
}

/* Whether the name is taken: a file there stores no source ETag, so this only tells the
 * derived outputs' reruns what is missing. */
static void dir_lookup(struct sink_slot *ss, struct lookup *lk)
{
        struct dir_slot *s = slot_of(ss);
        struct stat st;
        s->lk = lk;
        s->err = 0;
        lk->source_etag[0] = 0;
        lk->found =
            fstatat(s->ds->dirfd, lk->name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
        if (!lk->found && errno != ENOENT) {
                s->err = -errno;
                snprintf(s->detail, sizeof s->detail, "%s %s/%s: %s", s->ds->what, s->ds->dest,
                         lk->name, strerror(errno));
        }
        loop_timer(worker_loop(s->w), &s->later_op, 0);
}

static int dir_stage_file(struct sink *sk)
{
        struct dir_sink *ds = (struct dir_sink *)sk;
        int fd = openat(ds->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0)
                return fd;
        return errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL ? -EOPNOTSUPP : -errno;
}

static void dir_abort(struct sink_slot *ss)
{
        struct dir_slot *s = slot_of(ss);
        loop_cancel(worker_loop(s->w), &s->sync_op);
        loop_cancel(worker_loop(s->w), &s->later_op);
        s->lk = NULL;
}

static int dir_slot_new(struct sink *sk, struct worker *w, struct sink_slot **out)
{
        struct dir_slot *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->ds = (struct dir_sink *)sk;
        s->w = w;
        s->sync_op.fn = on_synced;
        s->later_op.fn = on_later;
        *out = (struct sink_slot *)s;
        return 0;
}

static void dir_slot_free(struct sink_slot *ss)
{
        free(ss);
}

static void dir_close(struct sink *sk)
{
        struct dir_sink *ds = (struct dir_sink *)sk;
        if (ds->dirfd >= 0)
                close(ds->dirfd);
        privdir_unlock(ds->incoming_fd, ds->incoming_lockfd);
        if (ds->incoming_fd >= 0)
                close(ds->incoming_fd);
        pthread_mutex_destroy(&ds->incoming_lock);
        free(ds);
}

static const struct sink_ops dir_ops = {
    .slot_new = dir_slot_new,
    .slot_free = dir_slot_free,
    .deliver = dir_deliver,
    .lookup = dir_lookup,
    .abort = dir_abort,
    .stage_file = dir_stage_file,
    .close = dir_close,
};

int sink_dir_open(struct sink **out, const struct sink_config *cfg, char *msg, size_t msglen)
{
        struct dir_sink *ds = calloc(1, sizeof *ds);
        if (!ds) {
                snprintf(msg, msglen, "out of memory");
                return -ENOMEM;
        }
        ds->base = (struct sink){.ops = &dir_ops, .kind = "directory"};
        ds->dest = cfg->dest;
        ds->what = cfg->what ? cfg->what : "--dest";
        ds->dirfd = ds->incoming_fd = ds->incoming_lockfd = -1;
        pthread_mutex_init(&ds->incoming_lock, NULL);
        mode_t mask = umask(0);
        umask(mask);
        ds->mode = 0666 & ~mask;
        int err = cfg->check_only ? 0 : util_mkdirs(cfg->dest, true);
        if (!err && cfg->check_only && access(cfg->dest, F_OK) < 0) {
                /* A dry run creates nothing: the nearest existing parent must be writable. */
                err = nearest_writable(cfg->dest);
                if (!err) {
                        *out = &ds->base;
                        return 0;
                }
        } else if (!err) {
                ds->dirfd = open(cfg->dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (ds->dirfd < 0 || faccessat(ds->dirfd, ".", W_OK, AT_EACCESS) < 0)
                        err = -errno;
        }
        if (err) {
                snprintf(msg, msglen, "%s %s: %s", ds->what, cfg->dest, strerror(-err));
                dir_close(&ds->base);
                return err;
        }
        /* What a killed run left in the copy area goes now, under its lock. */
        struct stat st;
        if (!cfg->check_only && fstatat(ds->dirfd, INCOMING, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            (err = incoming_open(ds, msg, msglen)) < 0) {
                dir_close(&ds->base);
                return err;
        }
        *out = &ds->base;
        return 0;
}
