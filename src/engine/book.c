/* One book's way through a worker: wait for a download slot, fetch and decrypt inline
 * into a staging file, verify the MDC, sync, wait for an upload slot, deliver, journal.
 * Transient failures go back through a backoff timer; permanent ones end the book. */
#include "quire/engine/engine.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quire/engine/journal.h"
#include "quire/pgp/pgp.h"
#include "quire/io/source.h"
#include "quire/base/util.h"

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

static void book_try_sync(struct book *b);

/* Moves the book from one stage counter of the status line to another. */
static void set_stage(struct book *b, enum book_state to)
{
        struct stats *s = &b->w->run->stats;
        atomic_int *counter[] = {
            [BOOK_LOOKUP] = &s->waiting,          [BOOK_WAIT_DOWNLOAD] = &s->waiting,
            [BOOK_DOWNLOADING] = &s->downloading, [BOOK_FINISHING] = &s->finishing,
            [BOOK_WAIT_UPLOAD] = &s->finishing,   [BOOK_UPLOADING] = &s->uploading,
            [BOOK_BACKOFF] = &s->retrying,
        };
        if (b->state != BOOK_IDLE)
                atomic_fetch_sub(counter[b->state], 1);
        if (to != BOOK_IDLE)
                atomic_fetch_add(counter[to], 1);
        b->state = to;
}

/* ---- staging writes ---------------------------------------------------------------- */

static int pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
        while (n) {
                ssize_t w = pwrite(fd, p, n, (off_t)off);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return w < 0 ? -errno : -EIO;
                p += w;
                n -= (size_t)w;
                off += (uint64_t)w;
        }
        return 0;
}

static void on_write_done(struct loop_op *op, int res)
{
        struct wbuf *wb = container_of(op, struct wbuf, op);
        struct book *b = wb->book;
        b->writes_pending--;
        if (res < 0) {
                if (!b->write_error)
                        b->write_error = res;
        } else if ((size_t)res < wb->len) {
                /* A short write to a regular file: finish it synchronously (rare). */
                int err = pwrite_all(b->staging_fd, wb->data + res, wb->len - (size_t)res,
                                     wb->off + (uint64_t)res);
                if (err && !b->write_error)
                        b->write_error = err;
        }
        wb->len = 0;
        if (b->src_waiting && book_staging_room(b) >= b->src_wait_len) {
                b->src_waiting = false;
                source_resume(b);
        }
        if (b->state == BOOK_FINISHING)
                book_try_sync(b);
        else if (b->state == BOOK_IDLE && !b->writes_pending)
                worker_pump_soon(b->w); /* the slot can take a new book now */
}

size_t book_staging_room(const struct book *b)
{
        size_t room = 0;
        for (unsigned k = 0; k < BOOK_WBUFS; k++) {
                const struct wbuf *wb = &b->wbufs[(b->wbuf_cur + k) % BOOK_WBUFS];
                if (wb->op.pending)
                        break;
                room += BOOK_WBUF_SIZE - wb->len;
        }
        return room;
}

static void submit_wbuf(struct book *b, struct wbuf *wb)
{
        b->writes_pending++;
        loop_write(b->w->loop, &wb->op, b->staging_fd, wb->data, wb->len, wb->off);
}

static int part_digest_push(struct book *b)
{
        if (b->nparts == b->parts_cap) {
                unsigned cap = b->parts_cap ? b->parts_cap * 2 : 16;
                void *p = realloc(b->part_sha256, cap * sizeof *b->part_sha256);
                if (!p)
                        return -ENOMEM;
                b->part_sha256 = p;
                b->parts_cap = cap;
        }
        EVP_DigestFinal_ex(b->part_sha256_ctx, b->part_sha256[b->nparts++], NULL);
        EVP_DigestInit_ex(b->part_sha256_ctx, EVP_sha256(), NULL);
        return 0;
}

/* Per-part digests for S3's multipart checksums, computed while the bytes are hot. */
static int hash_parts(struct book *b, const uint8_t *p, size_t n)
{
        uint64_t part = b->w->run->cfg.part_size, off = b->staged;
        while (n) {
                uint64_t room = part - off % part;
                size_t k = room < n ? (size_t)room : n;
                EVP_DigestUpdate(b->part_sha256_ctx, p, k);
                p += k;
                n -= k;
                off += k;
                if (k == room && part_digest_push(b) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* The decryptor's sink: hash the plaintext and stage it through the loop. When every
 * buffer is still being written, the bytes go out synchronously rather than stalling
 * the transfer (offsets are explicit, so order does not matter). */
static int book_sink(void *ctx, const uint8_t *p, size_t n)
{
        struct book *b = ctx;
        if (b->write_error)
                return b->write_error; /* a full disk: stop the transfer now, not at its end */
        atomic_fetch_add(&b->w->run->staging_used, n);
        b->staged_counted += n;
        EVP_DigestUpdate(b->sha256, p, n);
        if (b->part_sha256_ctx && hash_parts(b, p, n) < 0)
                return -ENOMEM;
        while (n) {
                struct wbuf *wb = &b->wbufs[b->wbuf_cur];
                if (wb->op.pending) {
                        int err = pwrite_all(b->staging_fd, p, n, b->staged);
                        if (err)
                                return err;
                        b->staged += n;
                        return 0;
                }
                if (wb->len == 0)
                        wb->off = b->staged;
                size_t k = BOOK_WBUF_SIZE - wb->len;
                if (k > n)
                        k = n;
                memcpy(wb->data + wb->len, p, k);
                wb->len += k;
                b->staged += k;
                p += k;
                n -= k;
                if (wb->len == BOOK_WBUF_SIZE) {
                        submit_wbuf(b, wb);
                        b->wbuf_cur = (b->wbuf_cur + 1) % BOOK_WBUFS;
                }
        }
        return 0;
}

static int staging_open(struct book *b)
{
        const struct run_config *cfg = &b->w->run->cfg;
        int n = snprintf(b->staging_path, sizeof b->staging_path, "%s/%s.tar.gz.quire-part",
                         cfg->staging, b->item.barcode);
        if (n < 0 || (size_t)n >= sizeof b->staging_path)
                return -ENAMETOOLONG;
        b->staging_fd = open(b->staging_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        return b->staging_fd < 0 ? -errno : 0;
}

/* The staged bytes leave the --staging-max account (delivered or dropped). */
static void staging_uncount(struct book *b)
{
        if (!b->staged_counted)
                return;
        struct run *r = b->w->run;
        atomic_fetch_sub(&r->staging_used, b->staged_counted);
        b->staged_counted = 0;
        /* Space came back: downloads held by a full staging disk may start again. */
        if (atomic_exchange(&r->staging_full, false) || r->cfg.staging_max)
                wake_download_waiters(r);
}

/* Room for another download: below --staging-max (a lone book may always start, so an
 * undersized limit slows the run instead of stopping it). */
static bool staging_has_room(const struct run *r)
{
        uint64_t used = atomic_load(&r->staging_used);
        if (used && atomic_load(&r->staging_full))
                return false; /* the staging disk filled up: wait until a book leaves it */
        return !r->cfg.staging_max || used < r->cfg.staging_max;
}

static void staging_remove(struct book *b)
{
        staging_uncount(b);
        if (b->staging_fd >= 0) {
                loop_flush(b->w->loop); /* queued writes name this fd: submit before close */
                close(b->staging_fd);
                b->staging_fd = -1;
        }
        if (b->staging_path[0]) {
                unlink(b->staging_path);
                b->staging_path[0] = 0;
        }
}

/* ---- outcomes ---------------------------------------------------------------------- */

static void release_download(struct book *b)
{
        if (!b->holds_download)
                return;
        struct run *r = b->w->run;
        uint64_t now = now_ns();
        atomic_fetch_add(&r->stats.busy_download_ns, now - b->dl_started_ns);
        atomic_store(&r->stats.last_download_end_ns, now);
        b->holds_download = false;
        slots_release(r, &r->downloads);
}

static void release_upload(struct book *b)
{
        if (!b->holds_upload)
                return;
        struct run *r = b->w->run;
        atomic_fetch_add(&r->stats.busy_upload_ns, now_ns() - b->ul_started_ns);
        b->holds_upload = false;
        slots_release(r, &r->uploads);
}

static void book_end(struct book *b)
{
        struct worker *w = b->w;
        set_stage(b, BOOK_IDLE);
        w->busy_books--;
        worker_pump_soon(w);
        uint64_t one = 1;
        ssize_t n = write(w->run->main_wake_fd, &one, sizeof one);
        (void)n;
}

/* Counts failures that point at the whole run (wrong passphrase, authentication, the
 * destination); after max in a row the run stops taking books. */
static void note_outcome(struct run *r, bool ok, bool run_level, const char *detail)
{
        if (ok) {
                atomic_store(&r->consecutive_failures, 0);
                return;
        }
        if (!run_level)
                return;
        unsigned n = atomic_fetch_add(&r->consecutive_failures, 1) + 1;
        if (r->cfg.max_consecutive_failures && n == r->cfg.max_consecutive_failures) {
                snprintf(r->failure_reason, sizeof r->failure_reason,
                         "%u books in a row failed for a reason that concerns the whole run "
                         "(last: %s)",
                         n, detail);
                atomic_store(&r->failure_stop, true);
                uint64_t one = 1;
                ssize_t wn = write(r->main_wake_fd, &one, sizeof one);
                (void)wn;
        }
}

/* The destination holds this very book already (same source ETag). */
static void book_skip(struct book *b)
{
        struct run *r = b->w->run;
        char detail[200];
        snprintf(detail, sizeof detail, "unchanged at the source (ETag %s)", b->etag);
        set_stage(b, BOOK_IDLE); /* the status line must not count it in a stage */
        struct journal_rec rec = {
            .barcode = b->item.barcode, .outcome = "skipped", .detail = detail};
        journal_append(r->journal, &rec);
        progress_count(r, OUTCOME_SKIPPED, 0);
        book_end(b);
}

static void book_finish(struct book *b, bool ok, bool run_level, const char *detail)
{
        struct run *r = b->w->run;
        staging_remove(b);
        set_stage(b, BOOK_IDLE); /* the status line must not count it in a stage */
        struct journal_rec rec = {
            .barcode = b->item.barcode,
            .outcome = ok ? "ok" : "failed",
            .bytes = ok ? b->staged : 0,
            .sha256_hex = ok ? b->sha256_hex : NULL,
            .detail = detail,
        };
        journal_append(r->journal, &rec);
        if (!ok)
                qlog("%s (line %llu): failed: %s", b->item.barcode,
                     (unsigned long long)b->item.line, detail);
        progress_count(r, ok ? OUTCOME_OK : OUTCOME_FAILED, ok ? b->staged : 0);
        note_outcome(r, ok, run_level, detail ? detail : "");
        book_end(b);
}

static void book_failed(struct book *b, bool transient, bool run_level, bool upload,
                        const char *detail);

/* A staging write failed: a full disk is worth a retry, anything else is not. While other
 * books hold staging space, a full disk pauses new downloads until one of them leaves,
 * and this book waits for that too without spending a retry: the others' space will
 * come back. Alone on a full disk, the book only has its retries. */
static void staging_failed(struct book *b, int err)
{
        static __thread char msg[sizeof b->staging_path + 64];
        struct run *r = b->w->run;
        bool full = err == -ENOSPC || err == -EDQUOT;
        b->space_wait = full && atomic_load(&r->staging_used) > b->staged_counted;
        snprintf(msg, sizeof msg, "staging %s: %s", b->staging_path, strerror(-err));
        book_failed(b, full || err == -EMFILE, true, false, msg);
}

static void wait_download(struct book *b);

static void on_backoff_done(struct loop_op *op, int res)
{
        struct book *b = container_of(op, struct book, timer);
        if (b->writes_pending) {
                loop_timer(b->w->loop, &b->timer, 10000000u);
                return;
        }
        if (b->retry_upload) {
                set_stage(b, BOOK_WAIT_UPLOAD);
                atomic_fetch_add(&b->w->waiting_ul, 1);
                book_pump(b);
        } else {
                wait_download(b);
        }
}

/* Exponential backoff with jitter (0.5x to 1.5x), 1 s doubling up to 60 s, or what the
 * server asked for with Retry-After. */
static uint64_t backoff_ns(unsigned attempt, unsigned retry_after_s)
{
        if (retry_after_s)
                return (uint64_t)retry_after_s * 1000000000u;
        uint64_t base = 1000000000ull << (attempt < 6 ? attempt - 1 : 5);
        return base / 2 + (uint64_t)random() % base;
}

/* A failed attempt: retried when transient and attempts remain, else the book fails. */
static void book_failed(struct book *b, bool transient, bool run_level, bool upload,
                        const char *detail)
{
        struct run *r = b->w->run;
        bool space_wait = b->space_wait;
        b->space_wait = false;
        if (!transient || (b->attempt >= r->cfg.retries && !space_wait) ||
            atomic_load(&r->aborting)) {
                if (transient && b->attempt)
                        snprintf(b->detail, sizeof b->detail, "%s (after %u retries)", detail,
                                 b->attempt);
                else
                        snprintf(b->detail, sizeof b->detail, "%s", detail);
                book_finish(b, false, run_level, b->detail);
                return;
        }
        b->retry_upload = upload;
        if (!upload)
                staging_remove(b);
        if (space_wait) {
                atomic_store(&r->staging_full, true); /* after this book's space is freed */
                qlog("%s: %s; waiting for staging space", b->item.barcode, detail);
                set_stage(b, BOOK_BACKOFF);
                loop_timer(b->w->loop, &b->timer, backoff_ns(1, 0));
                return;
        }
        b->attempt++;
        uint64_t delay = backoff_ns(b->attempt, b->retry_after_s);
        qlog("%s: attempt %u failed (%s); retrying in %.1f s", b->item.barcode, b->attempt, detail,
             (double)delay / 1e9);
        set_stage(b, BOOK_BACKOFF);
        loop_timer(b->w->loop, &b->timer, delay);
}

/* ---- download ---------------------------------------------------------------------- */

static void on_synced(struct loop_op *op, int res)
{
        struct book *b = container_of(op, struct book, sync_op);
        if (res < 0) {
                book_failed(b, true, true, false, strerror(-res));
                return;
        }
        EVP_DigestFinal_ex(b->sha256, b->sha256_raw, NULL);
        hex_encode(b->sha256_raw, sizeof b->sha256_raw, b->sha256_hex);
        uint64_t part = b->w->run->cfg.part_size;
        if (b->part_sha256_ctx && (b->staged == 0 || b->staged % part) && part_digest_push(b) < 0) {
                book_failed(b, true, false, false, "out of memory");
                return;
        }
        set_stage(b, BOOK_WAIT_UPLOAD);
        atomic_fetch_add(&b->w->waiting_ul, 1);
        book_pump(b);
}

/* Once every staged byte is written, make it durable before it can be published: a
 * journal line must never claim a book the disk does not hold. */
static void book_try_sync(struct book *b)
{
        if (b->writes_pending)
                return;
        if (b->write_error) {
                staging_failed(b, b->write_error);
                return;
        }
        loop_fdatasync(b->w->loop, &b->sync_op, b->staging_fd);
}

/* The source delivered its last byte (or failed). */
void book_download_done(struct book *b, const struct source_result *res)
{
        release_download(b);
        if (res->error) {
                book_failed(b, res->transient, res->run_level, false, res->error);
                return;
        }
        int rc = b->feed_error ? b->feed_error : pgp_finish(b->dec);
        if (rc) {
                char msg[200];
                if (rc == PGP_ESINK) {
                        staging_failed(b, -pgp_sink_errno(b->dec)); /* a positive errno */
                        return;
                }
                snprintf(msg, sizeof msg, "%s", pgp_detail(b->dec));
                /* A wrong passphrase or a source that serves something else than OpenPGP (a
                 * login page) concerns every book; a tampered book concerns only itself. */
                book_failed(b, false, rc == PGP_EBADPASS || rc == PGP_ENOTPGP, false, msg);
                return;
        }
        set_stage(b, BOOK_FINISHING);
        struct wbuf *wb = &b->wbufs[b->wbuf_cur];
        if (wb->len && !wb->op.pending)
                submit_wbuf(b, wb);
        book_try_sync(b);
}

/* Feeds ciphertext from the source to the decryptor; 0 or a PGP_E* code. */
int book_feed(struct book *b, const uint8_t *p, size_t n)
{
        atomic_fetch_add(&b->w->run->stats.bytes_in, n);
        int rc = pgp_feed(b->dec, p, n);
        if (rc)
                b->feed_error = rc;
        return rc;
}

/* Opens the staging file and starts the GET; the download slot is held. */
static void fetch_begin(struct book *b)
{
        struct run *r = b->w->run;
        b->staged = 0;
        b->wbuf_cur = 0;
        b->write_error = 0;
        b->feed_error = 0;
        b->src_waiting = false;
        b->key_tried = false;
        b->key_waiting = false;
        for (unsigned i = 0; i < BOOK_WBUFS; i++)
                b->wbufs[i].len = 0;
        int err = staging_open(b);
        if (err) {
                release_download(b);
                staging_failed(b, err);
                return;
        }
        pgp_reset(b->dec, r->cfg.passphrase, r->cfg.passlen, book_sink, b);
        EVP_DigestInit_ex(b->sha256, EVP_sha256(), NULL);
        b->nparts = 0;
        if (b->part_sha256_ctx)
                EVP_DigestInit_ex(b->part_sha256_ctx, EVP_sha256(), NULL);
        source_begin(b);
}

static void download_begin(struct book *b)
{
        struct run *r = b->w->run;
        b->holds_download = true;
        b->dl_started_ns = now_ns();
        uint_fast64_t zero = 0;
        atomic_compare_exchange_strong(&r->stats.first_download_ns, &zero, b->dl_started_ns);
        set_stage(b, BOOK_DOWNLOADING);
        b->retry_after_s = 0;
        if (b->source_head)
                source_begin(b); /* HEAD first: the destination may hold this very book */
        else
                fetch_begin(b);
}

void book_head_done(struct book *b, const struct source_result *res)
{
        if (res->error) {
                release_download(b);
                book_failed(b, res->transient, res->run_level, false, res->error);
                return;
        }
        if (b->etag[0] && !strcmp(b->etag, b->dest_etag)) {
                release_download(b);
                book_skip(b);
                return;
        }
        /* Changed (or no ETag to compare): fetch it, keeping the download slot. */
        b->source_head = false;
        fetch_begin(b);
}

static void wait_download(struct book *b)
{
        set_stage(b, BOOK_WAIT_DOWNLOAD);
        /* Announce the wait before trying, so a slot freed meanwhile wakes this worker. */
        atomic_fetch_add(&b->w->waiting_dl, 1);
        book_pump(b);
}

void book_lookup_done(struct book *b, int rc, const char *etag, const char *detail)
{
        /* A failed lookup only costs a download: the delivery will report a broken
         * destination if it is one. */
        b->source_head = rc == 0 && etag && etag[0];
        snprintf(b->dest_etag, sizeof b->dest_etag, "%s", b->source_head ? etag : "");
        wait_download(b);
}

static void upload_begin(struct book *b)
{
        b->holds_upload = true;
        b->ul_started_ns = now_ns();
        set_stage(b, BOOK_UPLOADING);
        b->w->run->sink->deliver(b);
}

void book_delivered(struct book *b, int rc, bool transient, const char *detail)
{
        release_upload(b);
        if (rc == 0)
                book_finish(b, true, false, NULL);
        else
                book_failed(b, transient, true, true, detail);
}

/* ---- slot lifecycle ---------------------------------------------------------------- */

void book_pump(struct book *b)
{
        struct run *r = b->w->run;
        if (b->state == BOOK_WAIT_DOWNLOAD && staging_has_room(r) &&
            slots_try_acquire(&r->downloads)) {
                atomic_fetch_sub(&b->w->waiting_dl, 1);
                download_begin(b);
        } else if (b->state == BOOK_WAIT_UPLOAD && slots_try_acquire(&r->uploads)) {
                atomic_fetch_sub(&b->w->waiting_ul, 1);
                upload_begin(b);
        }
}

void book_start(struct book *b, const struct queue_item *item)
{
        b->item = *item;
        b->attempt = 0;
        b->retry_upload = false;
        b->started_ns = now_ns();
        b->source_head = false;
        b->etag[0] = 0;
        const struct run *r = b->w->run;
        if (r->sink->lookup && !r->cfg.force) {
                set_stage(b, BOOK_LOOKUP);
                r->sink->lookup(b);
                return;
        }
        wait_download(b);
}

/* Second Ctrl-C: drop the book wherever it is, leaving nothing partial behind. Buffers
 * whose writes are still in flight stay allocated until the worker's loop is drained. */
void book_abort(struct book *b)
{
        struct worker *w = b->w;
        switch (b->state) {
        case BOOK_WAIT_DOWNLOAD:
                atomic_fetch_sub(&w->waiting_dl, 1);
                break;
        case BOOK_WAIT_UPLOAD:
                atomic_fetch_sub(&w->waiting_ul, 1);
                break;
        case BOOK_DOWNLOADING:
                source_abort(b);
                break;
        case BOOK_UPLOADING:
        case BOOK_LOOKUP:
                w->run->sink->abort(b);
                break;
        default:
                break;
        }
        loop_cancel(w->loop, &b->timer);
        loop_cancel(w->loop, &b->sync_op);
        release_download(b);
        release_upload(b);
        staging_remove(b);
        book_end(b);
}

int book_init(struct book *b, struct worker *w)
{
        b->w = w;
        b->staging_fd = -1;
        b->src_fd = -1;
        b->timer.fn = on_backoff_done;
        b->sync_op.fn = on_synced;
        if (pgp_new(&b->dec) < 0)
                return -ENOMEM;
        b->sha256 = EVP_MD_CTX_new();
        if (!b->sha256)
                return -ENOMEM;
        if (w->run->cfg.part_size) {
                b->part_sha256_ctx = EVP_MD_CTX_new();
                if (!b->part_sha256_ctx)
                        return -ENOMEM;
        }
        for (unsigned i = 0; i < BOOK_WBUFS; i++) {
                struct wbuf *wb = &b->wbufs[i];
                wb->book = b;
                wb->op.fn = on_write_done;
                wb->data = malloc(BOOK_WBUF_SIZE);
                if (!wb->data)
                        return -ENOMEM;
        }
        return source_init(b);
}

void book_destroy(struct book *b)
{
        source_destroy(b);
        for (unsigned i = 0; i < BOOK_WBUFS; i++)
                free(b->wbufs[i].data);
        EVP_MD_CTX_free(b->sha256);
        EVP_MD_CTX_free(b->part_sha256_ctx);
        free(b->part_sha256);
        pgp_free(b->dec);
}
