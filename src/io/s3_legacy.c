/* TEMPORARY: the S3 sink (src/io/s3/, driven through engine/sink.h) behind today's engine,
 * which still hands a sink its struct book. Delete this file when the new engine lands;
 * nothing else refers to it but cmd_run.c's &sink_s3.
 *
 * It translates a book into a struct delivery or lookup and back, opens the staging file
 * for reading (today's is write-only), and supplies the worker.h calls today's worker.c
 * lacks as weak symbols (the new worker.c's own definitions win over them). A hold keeps
 * today's worker running by counting as a busy book slot.
 *
 * Both headers define a struct sink: the new one is renamed for this file only. */
#define sink s3_new_sink
#include "quire/io/sinks.h"
#undef sink
#include "quire/engine/engine.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quire/base/util.h"

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

__attribute__((weak)) struct loop *worker_loop(struct worker *w)
{
        return w->loop;
}

__attribute__((weak)) void worker_hold(struct worker *w)
{
        w->busy_books++;
}

__attribute__((weak)) void worker_release(struct worker *w)
{
        w->busy_books--;
}

__attribute__((weak)) bool worker_aborting(const struct worker *w)
{
        return atomic_load(&w->run->aborting);
}

struct legacy_run {
        struct s3_new_sink *sink;
        pthread_mutex_t lock;
        struct legacy *slots;
};

struct legacy {
        struct book *b;
        struct sink_slot *ss;
        struct legacy *next;
        struct delivery d;
        struct lookup lk;
        struct delivery_meta meta[5];
        char name[BARCODE_MAX + 16], original[BARCODE_MAX + 24], acquired[21];
        int fd;
};

/* A signal still pending: the main thread reads them from its signalfd only later. */
static bool pending_signal(void)
{
        sigset_t s;
        return sigpending(&s) == 0 &&
               (sigismember(&s, SIGINT) == 1 || sigismember(&s, SIGTERM) == 1);
}

static int legacy_open(struct run *r, char *msg, size_t msglen)
{
        struct legacy_run *lr = calloc(1, sizeof *lr);
        if (!lr) {
                snprintf(msg, msglen, "out of memory");
                return -ENOMEM;
        }
        pthread_mutex_init(&lr->lock, NULL);
        struct sink_config cfg = {
            .dest = r->cfg.dest,
            .s3_endpoint = r->cfg.s3_endpoint,
            .ca_file = r->cfg.ca_file,
            .part_size = r->cfg.part_size,
            .max_upload_rate = r->cfg.max_upload_rate,
            .stall_timeout_s = r->cfg.stall_timeout_s,
            .interrupted = pending_signal,
        };
        int err = sink_s3_open(&lr->sink, &cfg, msg, msglen);
        if (err) {
                pthread_mutex_destroy(&lr->lock);
                free(lr);
                return err;
        }
        /* Today's book hashes the parts at the run's part size. */
        assert(lr->sink->part_size == r->cfg.part_size);
        r->sink_state = lr;
        return 0;
}

static struct legacy *legacy_of(struct book *b)
{
        if (b->sink_data)
                return b->sink_data;
        struct legacy_run *lr = b->w->run->sink_state;
        struct legacy *lg = calloc(1, sizeof *lg);
        if (!lg)
                return NULL;
        if (lr->sink->ops->slot_new(lr->sink, b->w, &lg->ss) < 0) {
                free(lg);
                return NULL;
        }
        lg->b = b;
        lg->fd = -1;
        pthread_mutex_lock(&lr->lock);
        lg->next = lr->slots;
        lr->slots = lg;
        pthread_mutex_unlock(&lr->lock);
        b->sink_data = lg;
        return lg;
}

static void close_fd(struct legacy *lg)
{
        if (lg->fd >= 0)
                close(lg->fd);
        lg->fd = -1;
}

static void on_delivered(struct delivery *d, int rc, bool transient, const char *detail)
{
        struct legacy *lg = container_of(d, struct legacy, d);
        close_fd(lg);
        book_delivered(lg->b, rc, transient, detail);
}

static void legacy_deliver(struct book *b)
{
        struct legacy *lg = legacy_of(b);
        char detail[600];
        if (!lg) {
                book_delivered(b, -ENOMEM, true, "s3: out of memory");
                return;
        }
        lg->fd = open(b->staging_path, O_RDONLY | O_CLOEXEC);
        if (lg->fd < 0) {
                int err = -errno;
                snprintf(detail, sizeof detail, "s3: staging %.300s: %s", b->staging_path,
                         strerror(-err));
                book_delivered(b, err, err == -EMFILE || err == -ENFILE, detail);
                return;
        }
        const char *bc = b->item.barcode;
        snprintf(lg->name, sizeof lg->name, "%s.tar.gz", bc);
        snprintf(lg->original, sizeof lg->original, "%s.tar.gz.gpg", bc);
        utc_iso8601(lg->acquired);
        lg->meta[0] = (struct delivery_meta){"barcode", bc};
        lg->meta[1] = (struct delivery_meta){"acquisition_date", lg->acquired};
        lg->meta[2] = (struct delivery_meta){"encrypted_etag", b->etag};
        lg->meta[3] = (struct delivery_meta){"original_filename", lg->original};
        lg->meta[4] = (struct delivery_meta){"plaintext-sha256", b->sha256_hex};
        lg->d = (struct delivery){
            .barcode = bc,
            .name = lg->name,
            .content_type = "application/gzip",
            .fd = lg->fd,
            .staging_path = b->staging_path,
            .size = b->staged,
            .part_sha256 = (const uint8_t(*)[32])b->part_sha256,
            .nparts = b->nparts,
            .meta = lg->meta,
            .nmeta = 5,
            .done = on_delivered,
        };
        memcpy(lg->d.sha256, b->sha256_raw, 32);
        struct legacy_run *lr = b->w->run->sink_state;
        lr->sink->ops->deliver(lg->ss, &lg->d);
}

static void on_looked_up(struct lookup *lk, int rc, const char *detail)
{
        struct legacy *lg = container_of(lk, struct legacy, lk);
        book_lookup_done(lg->b, rc, rc == 0 && lk->found ? lk->source_etag : NULL, detail);
}

static void legacy_lookup(struct book *b)
{
        struct legacy *lg = legacy_of(b);
        if (!lg) {
                book_lookup_done(b, -ENOMEM, NULL, "s3: out of memory");
                return;
        }
        snprintf(lg->name, sizeof lg->name, "%s.tar.gz", b->item.barcode);
        lg->lk =
            (struct lookup){.barcode = b->item.barcode, .name = lg->name, .done = on_looked_up};
        struct legacy_run *lr = b->w->run->sink_state;
        lr->sink->ops->lookup(lg->ss, &lg->lk);
}

static void legacy_abort(struct book *b)
{
        struct legacy *lg = b->sink_data;
        if (!lg)
                return;
        struct legacy_run *lr = b->w->run->sink_state;
        lr->sink->ops->abort(lg->ss);
        close_fd(lg);
}

static void legacy_close(struct run *r)
{
        struct legacy_run *lr = r->sink_state;
        if (!lr)
                return;
        while (lr->slots) {
                struct legacy *lg = lr->slots;
                lr->slots = lg->next;
                lr->sink->ops->slot_free(lg->ss);
                close_fd(lg);
                free(lg);
        }
        lr->sink->ops->close(lr->sink);
        pthread_mutex_destroy(&lr->lock);
        free(lr);
        r->sink_state = NULL;
}

const struct sink sink_s3 = {
    .name = "s3",
    .open = legacy_open,
    .deliver = legacy_deliver,
    .abort = legacy_abort,
    .close = legacy_close,
    .lookup = legacy_lookup,
};
