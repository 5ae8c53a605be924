/* Destination: a local directory. A book appears only whole: the synced staging file is
 * renamed into place (copied to a temporary name first when staging is on another
 * filesystem), and the directory is synced before the journal may say "ok". */
#include "quire/engine/engine.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quire/base/util.h"

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

#define INCOMING ".quire-incoming"

static mode_t delivered_mode;

static int mkdir_p(const char *path)
{
        char buf[4096];
        size_t n = strlen(path);
        if (n >= sizeof buf)
                return -ENAMETOOLONG;
        memcpy(buf, path, n + 1);
        for (char *p = buf + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = 0;
                if (mkdir(buf, 0777) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        if (mkdir(buf, 0777) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int dir_open(struct run *r, char *msg, size_t msglen)
{
        int err = mkdir_p(r->cfg.dest);
        if (err) {
                snprintf(msg, msglen, "--dest %s: %s", r->cfg.dest, strerror(-err));
                return err;
        }
        r->dest_dir_fd = open(r->cfg.dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (r->dest_dir_fd < 0 || faccessat(r->dest_dir_fd, ".", W_OK, AT_EACCESS) < 0) {
                err = -errno;
                snprintf(msg, msglen, "--dest %s: %s", r->cfg.dest, strerror(errno));
                return err;
        }
        char incoming[4096];
        snprintf(incoming, sizeof incoming, "%s/%s", r->cfg.dest, INCOMING);
        int removed = remove_quire_parts(incoming);
        if (removed > 0)
                qlog("removed %d partial copies left by an earlier run in %s", removed, incoming);
        /* Delivered files get the mode the umask gives; staging files stay 0600. */
        mode_t mask = umask(0);
        umask(mask);
        delivered_mode = 0666 & ~mask;
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
 * run leaves is found without scanning the whole destination. */
static int copy_into_place(struct book *b, int dirfd, const char *name)
{
        char tmp[BARCODE_MAX + 64];
        snprintf(tmp, sizeof tmp, "%s/%s.quire-part", INCOMING, name);
        if (mkdirat(dirfd, INCOMING, 0700) < 0 && errno != EEXIST)
                return -errno;
        int in = open(b->staging_path, O_RDONLY | O_CLOEXEC);
        if (in < 0)
                return -errno;
        int out = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int err = out < 0 ? -errno : copy_fd(in, out);
        if (!err && (fchmod(out, delivered_mode) < 0 || fdatasync(out) < 0))
                err = -errno;
        if (!err && renameat(dirfd, tmp, dirfd, name) < 0)
                err = -errno;
        if (err && out >= 0)
                unlinkat(dirfd, tmp, 0);
        if (out >= 0)
                close(out);
        close(in);
        return err;
}

static void on_dir_synced(struct loop_op *op, int res)
{
        struct book *b = container_of(op, struct book, sink_op);
        if (res < 0) {
                char msg[128];
                snprintf(msg, sizeof msg, "--dest: fsync: %s", strerror(-res));
                book_delivered(b, res, true, msg);
                return;
        }
        book_delivered(b, 0, false, NULL);
}

static void dir_deliver(struct book *b)
{
        struct run *r = b->w->run;
        char name[BARCODE_MAX + 16];
        snprintf(name, sizeof name, "%s.tar.gz", b->item.barcode);
        int err = 0;
        if (fchmod(b->staging_fd, delivered_mode) < 0)
                err = -errno;
        else if (renameat(AT_FDCWD, b->staging_path, r->dest_dir_fd, name) == 0)
                b->staging_path[0] = 0; /* renamed away: nothing left to remove at staging */
        else if (errno == EXDEV)
                err = copy_into_place(b, r->dest_dir_fd, name);
        else
                err = -errno;
        if (err) {
                char msg[200];
                snprintf(msg, sizeof msg, "--dest %s/%s: %s", r->cfg.dest, name, strerror(-err));
                book_delivered(b, err, err == -ENOSPC || err == -EDQUOT, msg);
                return;
        }
        b->sink_op.fn = on_dir_synced;
        loop_fdatasync(b->w->loop, &b->sink_op, r->dest_dir_fd);
}

static void dir_abort(struct book *b)
{
        loop_cancel(b->w->loop, &b->sink_op);
}

static void dir_close(struct run *r)
{
        if (r->dest_dir_fd >= 0)
                close(r->dest_dir_fd);
}

const struct sink sink_dir = {
    .name = "directory",
    .open = dir_open,
    .deliver = dir_deliver,
    .abort = dir_abort,
    .close = dir_close,
};
