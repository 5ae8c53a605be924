/* The contents reader: where the caller's push meets libarchive's pull. Each context owns
 * one thread that runs libarchive over a byte ring the caller fills with contents_feed().
 * A thread per book in flight, not a pool: libarchive's read callback must return data
 * or block, so a reader whose input has not arrived yet holds its stack, and the number of
 * such readers is the number of books in flight anyway (bounded by the caller). The ring
 * is handed to libarchive in place (the block it was given stays valid until its next
 * call, as libarchive requires), so bytes are copied once, on the caller's side. What the
 * thread does with the archive's members is in members.c. */
#include "reader_int.h"

#include <assert.h>
#include <errno.h>
#include <libxml/parser.h>
#include <stdlib.h>
#include <string.h>

#define RING_DEFAULT (1u << 20)

static void call_ready(struct contents *c)
{
        if (c->cfg.ready)
                c->cfg.ready(c->cfg.arg);
}

size_t contents_feed(struct contents *c, const void *p, size_t n)
{
        pthread_mutex_lock(&c->lock);
        assert(!c->finished);
        if (c->settled) {
                pthread_mutex_unlock(&c->lock);
                return n;
        }
        size_t k = c->cap - c->count < n ? c->cap - c->count : n;
        size_t head = (c->tail + c->count) % c->cap;
        if (k < n)
                c->want_ready = true;
        pthread_mutex_unlock(&c->lock);
        /* [head, head+k) is ours: the reader only reads up to count. */
        size_t first = c->cap - head < k ? c->cap - head : k;
        memcpy(c->ring + head, p, first);
        memcpy(c->ring, (const uint8_t *)p + first, k - first);
        pthread_mutex_lock(&c->lock);
        c->count += k;
        pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->lock);
        return k;
}

bool contents_has_room(struct contents *c, size_t n)
{
        pthread_mutex_lock(&c->lock);
        bool room = c->settled || c->cap - c->count >= (n < c->cap ? n : c->cap);
        if (!room)
                c->want_ready = true;
        pthread_mutex_unlock(&c->lock);
        return room;
}

void contents_feed_all(struct contents *c, const void *p, size_t n)
{
        const uint8_t *b = p;
        for (;;) {
                size_t k = contents_feed(c, b, n);
                b += k;
                n -= k;
                if (!n)
                        return;
                pthread_mutex_lock(&c->lock);
                while (c->count == c->cap && !c->settled)
                        pthread_cond_wait(&c->room, &c->lock);
                pthread_mutex_unlock(&c->lock);
        }
}

void contents_finish(struct contents *c)
{
        pthread_mutex_lock(&c->lock);
        c->finished = true;
        pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->lock);
}

bool contents_done(struct contents *c)
{
        pthread_mutex_lock(&c->lock);
        bool d = c->done;
        pthread_mutex_unlock(&c->lock);
        return d;
}

void contents_wait(struct contents *c)
{
        pthread_mutex_lock(&c->lock);
        while (!c->done)
                pthread_cond_wait(&c->done_cond, &c->lock);
        pthread_mutex_unlock(&c->lock);
}

const struct contents_result *contents_result(const struct contents *c)
{
        return &c->res;
}

/* libarchive's read callback: gives back the block lent last time, then lends the next
 * contiguous run of the ring, waiting for one. */
static la_ssize_t ring_read(struct archive *a, void *arg, const void **buf)
{
        struct contents *c = arg;
        pthread_mutex_lock(&c->lock);
        c->tail = (c->tail + c->lent) % c->cap;
        c->count -= c->lent;
        bool wake_feeder = c->lent && c->want_ready;
        if (wake_feeder)
                c->want_ready = false;
        if (c->lent)
                pthread_cond_broadcast(&c->room);
        c->lent = 0;
        while (!c->count && !c->finished && !c->aborting) {
                if (wake_feeder) {
                        pthread_mutex_unlock(&c->lock);
                        call_ready(c);
                        wake_feeder = false;
                        pthread_mutex_lock(&c->lock);
                        continue;
                }
                pthread_cond_wait(&c->wake, &c->lock);
        }
        la_ssize_t n;
        if (c->aborting) {
                archive_set_error(a, ECANCELED, "stopped");
                n = -1;
        } else {
                c->lent = c->count < c->cap - c->tail ? c->count : c->cap - c->tail;
                *buf = c->ring + c->tail;
                n = (la_ssize_t)c->lent;
                c->eof_seen = n == 0;
        }
        pthread_mutex_unlock(&c->lock);
        if (wake_feeder)
                call_ready(c);
        return n;
}

/* Once the archive's outcome is known the rest of the input is dropped, so a caller that
 * is still streaming (the raw delivery) never waits on us. */
static void settle(struct contents *c)
{
        pthread_mutex_lock(&c->lock);
        c->settled = true;
        c->count = c->lent = 0;
        pthread_cond_broadcast(&c->room);
        bool wake = c->want_ready;
        c->want_ready = false;
        pthread_mutex_unlock(&c->lock);
        if (wake)
                call_ready(c);
}

static void *reader_main(void *arg)
{
        struct contents *c = arg;
        if (archive_read_open(c->a, c, NULL, ring_read, NULL) == ARCHIVE_OK)
                contents_read_archive(c);
        else
                contents_archive_failed(c, false);
        settle(c);
        pthread_mutex_lock(&c->lock);
        while (!c->finished && !c->aborting)
                pthread_cond_wait(&c->wake, &c->lock);
        bool abort = c->aborting;
        pthread_mutex_unlock(&c->lock);
        if (!abort)
                contents_write_outputs(c);
        pthread_mutex_lock(&c->lock);
        c->done = true;
        pthread_cond_broadcast(&c->done_cond);
        pthread_mutex_unlock(&c->lock);
        if (!abort)
                call_ready(c);
        return NULL;
}

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

static void xml_init(void)
{
        xmlInitParser();
}

static int setup(struct contents *c)
{
        c->cap = c->cfg.ring_bytes ? c->cfg.ring_bytes : RING_DEFAULT;
        c->ring = malloc(c->cap);
        c->a = archive_read_new();
        c->md5 = EVP_MD_CTX_new();
        if (!c->ring || !c->a || !c->md5)
                return -ENOMEM;
        if (archive_read_support_filter_gzip(c->a) != ARCHIVE_OK ||
            archive_read_support_format_tar(c->a) != ARCHIVE_OK)
                return -ENOMEM;
        int r = 0;
        if (c->cfg.ocr_fd >= 0)
                r = ocr_new(&c->ocr, c->cfg.spill_dir);
        if (!r && c->cfg.marc_fd >= 0) {
                pthread_once(&xml_once, xml_init);
                r = marc_new(&c->marc);
        }
        if (!r && c->cfg.verify)
                r = sums_new(&c->sums);
        return r;
}

static void release(struct contents *c)
{
        if (c->a)
                archive_read_free(c->a);
        EVP_MD_CTX_free(c->md5);
        ocr_free(c->ocr);
        marc_free(c->marc);
        sums_free(c->sums);
        free(c->ring);
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->wake);
        pthread_cond_destroy(&c->done_cond);
        pthread_cond_destroy(&c->room);
        free(c);
}

int contents_new(struct contents **out, const struct contents_cfg *cfg)
{
        struct contents *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->cfg = *cfg;
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->wake, NULL);
        pthread_cond_init(&c->done_cond, NULL);
        pthread_cond_init(&c->room, NULL);
        int r = setup(c);
        if (!r && pthread_create(&c->thread, NULL, reader_main, c))
                r = -EAGAIN;
        if (r) {
                release(c);
                return r;
        }
        *out = c;
        return 0;
}

void contents_free(struct contents *c)
{
        if (!c)
                return;
        pthread_mutex_lock(&c->lock);
        c->aborting = true;
        pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->thread, NULL);
        release(c);
}
