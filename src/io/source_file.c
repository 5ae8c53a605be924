/* Books from local files (file:// or a plain path template), read through the worker's
 * loop into one buffer per book slot. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quire/base/util.h"
#include "quire/engine/loop.h"
#include "quire/engine/worker.h"
#include "quire/io/sources.h"

#define FILE_READ_SIZE (256 * 1024)

struct file_source {
        struct source base;
        const char *tmpl;
};

struct file_slot {
        struct file_source *src;
        struct worker *w;
        const struct source_events *ev;
        void *owner;
        int fd;
        uint8_t *buf;
        uint64_t off; /* file offset of buf[0] */
        size_t held;  /* bytes in buf the owner has not taken (it paused) */
        struct loop_op read_op;
        struct loop_op later_op; /* delivers again after a pause, or reports the end */
        struct source_result end;
        char detail[300];
};

static struct file_slot *slot_of(struct source_slot *ss)
{
        return (struct file_slot *)ss;
}

static void file_close(struct file_slot *f)
{
        if (f->fd >= 0) {
                loop_flush(worker_loop(f->w)); /* a queued read names this fd */
                close(f->fd);
                f->fd = -1;
        }
}

static void finish(struct file_slot *f)
{
        file_close(f);
        f->end.detail = f->detail;
        f->ev->done(f->owner, &f->end);
}

/* Reports the end from the loop's next turn, never from inside begin(). */
static void finish_later(struct file_slot *f)
{
        f->held = 0;
        loop_timer(worker_loop(f->w), &f->later_op, 0);
}

static void read_next(struct file_slot *f)
{
        loop_read(worker_loop(f->w), &f->read_op, f->fd, f->buf, FILE_READ_SIZE, f->off);
}

/* Hands buf to the owner: on to the next read, or held until resume(). */
static void deliver(struct file_slot *f)
{
        int rc = f->ev->data(f->owner, f->off, f->buf, f->held);
        if (rc == SOURCE_PAUSE)
                return;
        if (rc < 0) {
                f->end = (struct source_result){.status = SOURCE_STOPPED, .length = -1};
                snprintf(f->detail, sizeof f->detail, "source: stopped");
                finish(f);
                return;
        }
        f->off += f->held;
        f->held = 0;
        read_next(f);
}

static void on_read(struct loop_op *op, int res)
{
        struct file_slot *f = container_of(op, struct file_slot, read_op);
        if (res > 0) {
                f->held = (size_t)res;
                deliver(f);
                return;
        }
        f->end = (struct source_result){.status = SOURCE_OK, .length = (int64_t)f->off};
        f->detail[0] = 0;
        if (res < 0) {
                f->end.status = res == -EIO || res == -EINTR ? SOURCE_TRANSIENT : SOURCE_FAILED;
                snprintf(f->detail, sizeof f->detail, "source: read at offset %llu: %s",
                         (unsigned long long)f->off, strerror(-res));
        }
        finish(f);
}

static void on_later(struct loop_op *op, int res)
{
        struct file_slot *f = container_of(op, struct file_slot, later_op);
        if (f->held) /* resumed after a pause */
                deliver(f);
        else
                finish(f);
}

static void file_begin(struct source_slot *ss, const struct source_request *req)
{
        struct file_slot *f = slot_of(ss);
        char path[4096];
        const char *tmpl = f->src->tmpl;
        if (!strncmp(tmpl, "file://", 7))
                tmpl += 7;
        f->off = req->head ? 0 : req->offset; /* a file resumes where the read failed */
        f->held = 0;
        f->end = (struct source_result){.status = SOURCE_FAILED, .length = -1};
        if (source_expand(tmpl, req->barcode, req->file, path, sizeof path) < 0) {
                snprintf(f->detail, sizeof f->detail, "source: path longer than %zu bytes",
                         sizeof path);
                finish_later(f);
                return;
        }
        f->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (f->fd < 0) {
                int err = errno;
                if (err == ENOENT) {
                        f->end.status = SOURCE_NOT_FOUND;
                        snprintf(f->detail, sizeof f->detail,
                                 "not available from the source (no such file)");
                } else {
                        f->end.status = err == EMFILE || err == ENFILE || err == EINTR
                                            ? SOURCE_TRANSIENT
                                            : SOURCE_FAILED;
                        snprintf(f->detail, sizeof f->detail, "source: %s", strerror(err));
                }
                finish_later(f);
                return;
        }
        struct stat st;
        if (fstat(f->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                snprintf(f->detail, sizeof f->detail, "source: %.200s is not a regular file", path);
                finish_later(f);
                return;
        }
        if (req->head) {
                /* Files have no ETag: the book is always fetched. */
                f->end.status = SOURCE_OK;
                f->detail[0] = 0;
                finish_later(f);
                return;
        }
        posix_fadvise(f->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        if (f->ev->length && f->ev->length(f->owner, (uint64_t)st.st_size) < 0) {
                f->end = (struct source_result){.status = SOURCE_STOPPED, .length = -1};
                snprintf(f->detail, sizeof f->detail, "source: stopped");
                finish_later(f);
                return;
        }
        read_next(f);
}

static void file_resume(struct source_slot *ss)
{
        struct file_slot *f = slot_of(ss);
        if (f->held && !f->later_op.timer_armed)
                loop_timer(worker_loop(f->w), &f->later_op, 0);
}

static void file_abort(struct source_slot *ss)
{
        struct file_slot *f = slot_of(ss);
        struct loop *l = worker_loop(f->w);
        loop_cancel(l, &f->read_op);
        loop_cancel(l, &f->later_op);
        f->held = 0;
        file_close(f);
}

static int file_slot_new(struct source *s, struct worker *w, const struct source_events *ev,
                         void *owner, struct source_slot **out)
{
        struct file_slot *f = calloc(1, sizeof *f);
        if (!f)
                return -ENOMEM;
        *f = (struct file_slot){
            .src = (struct file_source *)s, .w = w, .ev = ev, .owner = owner, .fd = -1};
        f->read_op.fn = on_read;
        f->later_op.fn = on_later;
        /* Touched only when used: a page costs nothing until then. */
        f->buf = malloc(FILE_READ_SIZE);
        *out = (struct source_slot *)f;
        return f->buf ? 0 : -ENOMEM;
}

static void file_slot_free(struct source_slot *ss)
{
        struct file_slot *f = slot_of(ss);
        if (f->fd >= 0)
                close(f->fd);
        free(f->buf);
        free(f);
}

static void file_source_close(struct source *s)
{
        free(s);
}

static const struct source_ops file_ops = {
    .slot_new = file_slot_new,
    .slot_free = file_slot_free,
    .begin = file_begin,
    .resume = file_resume,
    .abort = file_abort,
    .close = file_source_close,
};

int source_file_open(struct source **out, const struct source_config *cfg, char *msg, size_t msglen)
{
        struct file_source *fs = calloc(1, sizeof *fs);
        if (!fs) {
                snprintf(msg, msglen, "out of memory");
                return -ENOMEM;
        }
        fs->base = (struct source){.ops = &file_ops, .kind = "file"};
        fs->tmpl = cfg->tmpl;
        *out = &fs->base;
        return 0;
}
