/* The staging directory and each book's staging file, written through the loop. */
#include "staging.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quire/base/privdir.h"
#include "quire/base/util.h"

int staging_open(struct staging *st, const char *path, uint64_t max, uint64_t max_book, char *msg,
                 size_t msglen)
{
        *st = (struct staging){.dirfd = -1, .lockfd = -1, .max = max, .max_book = max_book};
        if (snprintf(st->path, sizeof st->path, "%s", path) >= (int)sizeof st->path) {
                snprintf(msg, msglen, "--staging: path too long");
                return -ENAMETOOLONG;
        }
        int fd = privdir_open("--staging", path, 1, msg, msglen);
        if (fd < 0)
                return fd;
        st->dirfd = fd;
        int err = privdir_lock(fd, "--staging", path, &st->lockfd, msg, msglen);
        if (err)
                return err;
        /* Files a killed run left are never resumed: remove them, now that no other run
         * can own them. */
        int removed = privdir_sweep(fd, STAGE_SUFFIX);
        if (removed < 0) {
                snprintf(msg, msglen, "--staging %s: %s", path, strerror(-removed));
                return removed;
        }
        if (removed)
                qlog("removed %d staging files left by an earlier run", removed);
        return 0;
}

void staging_close(struct staging *st)
{
        privdir_unlock(st->dirfd, st->lockfd);
        if (st->dirfd >= 0)
                close(st->dirfd);
        st->lockfd = st->dirfd = -1;
}

bool staging_has_room(struct staging *st)
{
        uint64_t used = atomic_load(&st->used);
        if (used && atomic_load(&st->full))
                return false;
        return !st->max || used < st->max;
}

/* ---- one book's file ----------------------------------------------------------------- */

static void try_sync(struct stage *s);

/* The rest of this file goes through the page cache: before a write that is not aligned
 * (a short write's rest, a synchronous write, the book's last piece). Mixing the two on
 * one file is coherent: the kernel writes back and drops cached pages a direct write
 * covers. */
static int stage_go_buffered(struct stage *s)
{
        s->buffered = true;
        if (!s->direct)
                return 0;
        int flags = fcntl(s->fd, F_GETFL);
        if (flags < 0 || fcntl(s->fd, F_SETFL, flags & ~O_DIRECT) < 0)
                return -errno;
        s->direct = false;
        return 0;
}

static void on_write_done(struct loop_op *op, int res)
{
        struct stage_buf *sb = container_of(op, struct stage_buf, op);
        struct stage *s = sb->stage;
        s->pending--;
        if (res < 0) {
                if (!s->error)
                        s->error = res;
        } else if ((size_t)res < sb->len) {
                /* A short write to a regular file: finish it synchronously (rare). */
                int err = stage_go_buffered(s);
                if (!err)
                        err = util_pwrite_all(s->fd, sb->data + res, sb->len - (size_t)res,
                                              sb->off + (uint64_t)res);
                if (err && !s->error)
                        s->error = err;
        }
        sb->len = 0;
        if (s->finishing)
                try_sync(s);
        s->on_room(s->owner);
}

static void on_sync_done(struct loop_op *op, int res)
{
        struct stage *s = container_of(op, struct stage, sync_op);
        s->finishing = s->syncing = false;
        s->on_synced(s->owner, res < 0 ? res : 0);
}

int stage_init(struct stage *s, struct staging *st, struct loop *loop, void (*on_room)(void *),
               void (*on_synced)(void *, int), void *owner)
{
        *s = (struct stage){.st = st,
                            .loop = loop,
                            .fd = -1,
                            .on_room = on_room,
                            .on_synced = on_synced,
                            .owner = owner};
        s->sync_op.fn = on_sync_done;
        for (unsigned i = 0; i < STAGE_BUFS; i++) {
                s->bufs[i].stage = s;
                s->bufs[i].op.fn = on_write_done;
                /* Touched only when used: a page costs nothing until then. */
                s->bufs[i].data = aligned_alloc(STAGE_ALIGN, STAGE_BUF_SIZE);
                if (!s->bufs[i].data)
                        return -ENOMEM;
        }
        return 0;
}

void stage_destroy(struct stage *s)
{
        for (unsigned i = 0; i < STAGE_BUFS; i++)
                free(s->bufs[i].data);
}

int stage_open(struct stage *s, const char *barcode)
{
        char name[128];
        int n = snprintf(name, sizeof name, "%s%s", barcode, STAGE_SUFFIX);
        if (n < 0 || (size_t)n >= sizeof name)
                return -ENAMETOOLONG;
        snprintf(s->path, sizeof s->path, "%s/%s", s->st->path, name);
        s->size = 0;
        s->cur = 0;
        s->error = 0;
        s->finishing = s->syncing = false;
        s->made = false;
        for (unsigned i = 0; i < STAGE_BUFS; i++)
                s->bufs[i].len = 0;
        s->direct = s->buffered = false;
        return 0;
}

/* Never over an existing file: the directory is this user's, locked, swept at start, and a
 * barcode is in one slot at a time, so an existing name means some other writer, whose
 * file this book must not share, replace or remove. */
int stage_create(struct stage *s)
{
        if (s->made)
                return 0;
        const char *name = strrchr(s->path, '/') + 1;
        s->fd =
            openat(s->st->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (s->fd < 0)
                return -errno;
        s->made = true;
        return 0;
}

size_t stage_room(const struct stage *s)
{
        size_t room = 0;
        for (unsigned k = 0; k < STAGE_BUFS; k++) {
                const struct stage_buf *sb = &s->bufs[(s->cur + k) % STAGE_BUFS];
                if (sb->op.pending)
                        break;
                room += STAGE_BUF_SIZE - sb->len;
        }
        return room;
}

/* The file goes around the page cache from its first whole buffer on (at offset 0), so
 * a book smaller than one buffer never changes its flags. A filesystem that refuses
 * O_DIRECT (EINVAL) is not asked again. */
static void stage_go_direct(struct stage *s, const struct stage_buf *sb)
{
        if (s->direct || s->buffered || sb->len != STAGE_BUF_SIZE || sb->off % STAGE_ALIGN ||
            !atomic_load(&s->st->direct))
                return;
        int flags = fcntl(s->fd, F_GETFL);
        if (flags >= 0 && fcntl(s->fd, F_SETFL, flags | O_DIRECT) == 0)
                s->direct = true;
        else if (errno == EINVAL)
                atomic_store(&s->st->direct, false);
}

static void submit(struct stage *s, struct stage_buf *sb)
{
        stage_go_direct(s, sb);
        s->pending++;
        loop_write(s->loop, &sb->op, s->fd, sb->data, sb->len, sb->off);
}

int stage_write(struct stage *s, const uint8_t *p, size_t n)
{
        if (s->error)
                return s->error; /* a full disk: stop the transfer now, not at its end */
        if (s->st->max_book && s->size + n > s->st->max_book)
                return -EFBIG;
        int made = stage_create(s);
        if (made)
                return made;
        atomic_fetch_add(&s->st->used, n);
        s->counted += n;
        while (n) {
                struct stage_buf *sb = &s->bufs[s->cur];
                if (sb->op.pending) {
                        int err = stage_go_buffered(s);
                        if (!err)
                                err = util_pwrite_all(s->fd, p, n, s->size);
                        if (err)
                                return err;
                        s->size += n;
                        return 0;
                }
                if (sb->len == 0)
                        sb->off = s->size;
                size_t k = STAGE_BUF_SIZE - sb->len;
                if (k > n)
                        k = n;
                memcpy(sb->data + sb->len, p, k);
                sb->len += k;
                s->size += k;
                p += k;
                n -= k;
                if (sb->len == STAGE_BUF_SIZE) {
                        submit(s, sb);
                        s->cur = (s->cur + 1) % STAGE_BUFS;
                }
        }
        return 0;
}

/* Once every staged byte is written, make it durable before it can be published: a
 * journal line must never claim a book the disk does not hold. */
static void try_sync(struct stage *s)
{
        if (s->pending || s->syncing)
                return;
        if (s->error) {
                s->finishing = false;
                s->on_synced(s->owner, s->error);
                return;
        }
        s->syncing = true;
        loop_fdatasync(s->loop, &s->sync_op, s->fd);
}

void stage_finish(struct stage *s)
{
        /* A book of no plaintext at all still needs its (empty) file. */
        int err = stage_create(s);
        if (err) {
                if (!s->error)
                        s->error = err;
                s->finishing = true;
                try_sync(s);
                return;
        }
        /* Full buffers start at multiples of their size, the last piece ends the file at
         * any length; and the sink may read the file back through this fd, from buffers
         * of its own. */
        err = stage_go_buffered(s);
        if (err && !s->error)
                s->error = err;
        struct stage_buf *sb = &s->bufs[s->cur];
        if (sb->len && !sb->op.pending)
                submit(s, sb);
        s->finishing = true;
        try_sync(s);
}

bool stage_remove(struct stage *s, bool taken)
{
        loop_cancel(s->loop, &s->sync_op);
        s->finishing = s->syncing = false;
        bool room_back = false;
        if (s->counted) {
                atomic_fetch_sub(&s->st->used, s->counted);
                s->counted = 0;
                room_back = atomic_exchange(&s->st->full, false) || s->st->max;
        }
        if (s->fd >= 0) {
                loop_flush(s->loop); /* queued writes name this fd: submit before close */
                close(s->fd);
                s->fd = -1;
        }
        if (s->made && !taken)
                unlink(s->path);
        s->made = false;
        s->path[0] = 0;
        return room_back;
}

bool stage_busy(const struct stage *s)
{
        return s->pending > 0;
}

bool stage_disk_full_shared(const struct stage *s, int err)
{
        return (err == -ENOSPC || err == -EDQUOT) && atomic_load(&s->st->used) > s->counted;
}
