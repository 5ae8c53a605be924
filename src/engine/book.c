/* One book's way through a worker: [ask the destination] ─ wait for a download slot ─
 * fetch and decrypt inline into a stage ─ verify the MDC ─ sync ─ wait for an upload slot
 * ─ deliver ─ journal. Transient failures go back through a backoff timer; permanent ones
 * end the book and the run goes on.
 *
 * With derived outputs (derived.h) the plaintext is also teed into the slot's contents
 * reader; the reader's verdict and outputs are awaited beside the stage's sync, and the
 * outputs are delivered before the raw archive, so a destination that holds a book holds
 * what could be read out of it. With a plaintext source (quire extract) there is no
 * decryptor, no stage and no raw delivery: the source's bytes go to the reader alone.
 *
 * This file holds the state machine: the stages, the download and upload slots, the
 * outcomes and retries, and the slot's life; book_fetch.c the download and book_deliver.c
 * the destination (book_int.h: what the three share). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "book_int.h"
#include "quire/base/util.h"
#include "quire/engine/journal.h"
#include "quire/pgp/pgp.h"
#include "worker_int.h"

/* quire extract: the source's bytes are the plaintext, and only derived outputs leave. */
bool book_plain(const struct book *b)
{
        return b->r->derived.plaintext_source;
}

/* Moves the book from one stage counter of the status line to another. */
void book_set_stage(struct book *b, enum book_state to)
{
        struct stats *s = &b->r->stats;
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

/* ---- slots ------------------------------------------------------------------------- */

void book_release_download(struct book *b)
{
        if (!b->holds_download)
                return;
        uint64_t now = util_now_ns();
        slot_time_close(&b->r->stats.download_time, b->dl_started_ns, now);
        atomic_store(&b->r->stats.last_download_end_ns, now);
        b->holds_download = false;
        run_slots_release(b->r, &b->r->downloads);
}

void book_release_upload(struct book *b)
{
        if (!b->holds_upload)
                return;
        slot_time_close(&b->r->stats.upload_time, b->ul_started_ns, util_now_ns());
        b->holds_upload = false;
        run_slots_release(b->r, &b->r->uploads);
}

/* The attempt's staged plaintext goes, and its derived outputs with it. */
void book_stage_drop(struct book *b)
{
        if (stage_remove(&b->stage, b->delivery.staging_taken))
                run_wake_download_waiters(b->r);
        b->delivery.staging_taken = false;
        if (b->der)
                derived_drop(b->der);
}

/* ---- outcomes ---------------------------------------------------------------------- */

void book_end(struct book *b)
{
        book_set_stage(b, BOOK_IDLE);
        run_inflight_remove(&b->r->inflight, b->item.barcode);
        worker_book_ended(b->w);
}

/* The destination holds this very book already (same source ETag). */
void book_skip(struct book *b)
{
        char detail[SOURCE_ETAG_MAX + 64];
        snprintf(detail, sizeof detail, "unchanged at the source (ETag %s)", b->etag);
        book_set_stage(b, BOOK_IDLE); /* the status line must not count it in a stage */
        struct journal_rec rec = {.barcode = b->item.barcode,
                                  .outcome = "skipped",
                                  .detail = detail,
                                  .duration_ns = util_now_ns() - b->started_ns};
        journal_append(b->r->journal, &rec);
        progress_count(b->r, OUTCOME_SKIPPED, 0);
        book_end(b);
}

void book_finish(struct book *b, bool ok, bool run_level, const char *detail)
{
        uint64_t bytes = book_plain(b) ? b->digest.len : b->stage.size;
        /* An extract journals what it read even when it could not read inside it. */
        bool measured = ok || (book_plain(b) && b->verdict);
        char text[1024];
        const char *contents = ok && b->der ? derived_detail(b->der) : "";
        if (ok && (b->resumes || contents[0])) {
                int n = snprintf(text, sizeof text, "%s", contents);
                if (b->resumes)
                        snprintf(text + n, sizeof text - (size_t)n,
                                 "%sresumed %u time(s): %llu bytes not fetched again", n ? " " : "",
                                 b->resumes, (unsigned long long)b->resumed_bytes);
                detail = text;
        }
        if (b->der)
                derived_count(b->der);
        book_stage_drop(b);
        book_set_stage(b, BOOK_IDLE);
        struct journal_rec rec = {
            .barcode = b->item.barcode,
            .line = b->item.line,
            .outcome = ok ? "ok" : "failed",
            .bytes = measured ? bytes : 0,
            .sha256_hex = measured ? b->digest.sha256_hex : NULL,
            .detail = detail,
            .duration_ns = util_now_ns() - b->started_ns,
        };
        journal_append(b->r->journal, &rec);
        if (!ok) {
                qlog("%s (line %llu): failed: %s", b->item.barcode,
                     (unsigned long long)b->item.line, detail);
                progress_failure(b->r, b->item.barcode, detail);
        }
        b->resume = false;
        progress_count(b->r, ok ? OUTCOME_OK : OUTCOME_FAILED, ok ? bytes : 0);
        run_note_outcome(b->r, ok, run_level, detail ? detail : "");
        book_end(b);
}

static void on_backoff_done(struct loop_op *op, int res)
{
        struct book *b = container_of(op, struct book, timer);
        if (stage_busy(&b->stage)) {
                loop_timer(b->w->loop, &b->timer, 10000000u); /* its last writes first */
                return;
        }
        if (b->retry_upload) {
                book_set_stage(b, BOOK_WAIT_UPLOAD);
                atomic_fetch_add(&b->w->waiting_ul, 1);
                book_pump(b);
        } else {
                book_wait_download(b);
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

/* A failed attempt: retried when transient and attempts remain, else the book fails.
 * While other books hold staging space, a full disk pauses new downloads until one of
 * them leaves, and this book waits for that too without spending a retry; so does a
 * transfer cut after moving the book on by BOOK_PROGRESS_FREE, resumed from there. */
void book_failed(struct book *b, bool transient, bool run_level, bool upload, const char *detail)
{
        bool space_wait = b->space_wait, progressed = b->progressed;
        const char *cause = b->cause;
        b->space_wait = b->progressed = false;
        b->cause = NULL;
        if (!transient ||
            (b->attempt - b->free_attempts >= b->r->cfg.retries && !space_wait && !progressed) ||
            atomic_load(&b->r->aborting)) {
                if (transient && b->attempt)
                        snprintf(b->detail, sizeof b->detail, "%s (after %u retries)", detail,
                                 b->attempt);
                else
                        snprintf(b->detail, sizeof b->detail, "%s", detail);
                book_finish(b, false, run_level, b->detail);
                return;
        }
        b->retry_upload = upload;
        if (!upload && !b->resume)
                book_stage_drop(b);
        book_set_stage(b, BOOK_BACKOFF);
        if (space_wait) {
                atomic_store(&b->r->staging.full, true); /* after this book's space is freed */
                qlog("%s: %s; waiting for staging space", b->item.barcode, detail);
                progress_retry(b->r, cause);
                loop_timer(b->w->loop, &b->timer, backoff_ns(1, 0));
                return;
        }
        b->attempt++;
        b->free_attempts += progressed;
        progress_retry(b->r, cause);
        uint64_t delay =
            backoff_ns(progressed ? 1 : b->attempt - b->free_attempts, b->retry_after_s);
        qlog("%s: attempt %u failed (%s); %s in %.1f s%s", b->item.barcode, b->attempt, detail,
             progressed ? "resuming" : "retrying", (double)delay / 1e9,
             progressed ? " (it moved the book on: not counted as a retry)" : "");
        loop_timer(b->w->loop, &b->timer, delay);
}

/* A staging write failed: a full disk is worth a retry, anything else is not. */
void book_staging_failed(struct book *b, int err)
{
        char msg[sizeof b->stage.path + 96];
        b->cause = "staging";
        b->space_wait = stage_disk_full_shared(&b->stage, err);
        if (err == -EFBIG) {
                const struct run_config *cfg = &b->r->cfg;
                uint64_t max = b->r->staging.max_book;
                snprintf(msg, sizeof msg, "larger than %s (%llu bytes)",
                         max == cfg->max_book_size ? "--max-book-size"
                         : max == cfg->staging_max ? "--staging-max"
                                                   : "the destination takes",
                         (unsigned long long)max);
                book_failed(b, false, false, false, msg);
                return;
        }
        bool full = err == -ENOSPC || err == -EDQUOT;
        bool transient = full || err == -EMFILE || err == -ENFILE;
        if (b->der_failed) { /* its outputs' files, or a reader thread */
                b->der_failed = false;
                snprintf(msg, sizeof msg, "reading inside the book: %s", strerror(-err));
                book_failed(b, transient || err == -EAGAIN || err == -ENOMEM, true, false, msg);
                return;
        }
        snprintf(msg, sizeof msg, "staging %s: %s", b->stage.path[0] ? b->stage.path : "file",
                 strerror(-err));
        book_failed(b, transient, true, false, msg);
}

/* ---- slot lifecycle ---------------------------------------------------------------- */

void book_pump(struct book *b)
{
        struct run *r = b->r;
        if (b->state == BOOK_WAIT_DOWNLOAD) {
                /* A key job of the last attempt still out would be overwritten. */
                if (b->key_out || !staging_has_room(&r->staging) ||
                    !run_slots_try_acquire(&r->downloads))
                        return;
                atomic_fetch_sub(&b->w->waiting_dl, 1);
                book_download_begin(b);
        } else if (b->state == BOOK_WAIT_UPLOAD && run_slots_try_acquire(&r->uploads)) {
                atomic_fetch_sub(&b->w->waiting_ul, 1);
                book_upload_begin(b);
        }
}

bool book_idle(const struct book *b)
{
        return b->state == BOOK_IDLE && !stage_busy(&b->stage) && !b->key_out;
}

void book_start(struct book *b, const struct queue_item *item)
{
        b->item = *item;
        b->attempt = b->free_attempts = 0;
        b->retry_upload = false;
        b->resume = b->resuming = b->restart_wait = b->no_resume = false;
        b->resumes = 0;
        b->resumed_bytes = 0;
        b->started_ns = util_now_ns();
        b->etag[0] = b->dest_etag[0] = 0;
        b->der_after_raw = false;
        snprintf(b->name, sizeof b->name, "%s.tar.gz", item->barcode);
        if (item->file[0])
                snprintf(b->original, sizeof b->original, "%s", item->file);
        else
                snprintf(b->original, sizeof b->original, "%s.tar.gz.gpg", item->barcode);
        if (item->recheck) {
                /* An earlier run delivered it: is every derived output still there? */
                book_set_stage(b, BOOK_LOOKUP);
                derived_lookup(b->der, b->item.barcode);
                return;
        }
        book_lookup_begin(b);
}

void book_abort(struct book *b)
{
        switch (b->state) {
        case BOOK_IDLE:
                return;
        case BOOK_WAIT_DOWNLOAD:
                atomic_fetch_sub(&b->w->waiting_dl, 1);
                break;
        case BOOK_WAIT_UPLOAD:
                atomic_fetch_sub(&b->w->waiting_ul, 1);
                break;
        case BOOK_DOWNLOADING:
                b->r->source->ops->abort(b->src);
                break;
        case BOOK_UPLOADING:
        case BOOK_LOOKUP:
                if (b->snk)
                        b->r->sink->ops->abort(b->snk);
                break;
        default:
                break;
        }
        b->key_wait = b->room_wait = b->restart_wait = b->resume = b->der_wait = false;
        if (b->der)
                derived_abort(b->der);
        loop_cancel(b->w->loop, &b->timer);
        book_release_download(b);
        book_release_upload(b);
        book_stage_drop(b);
        book_end(b);
}

int book_new(struct book **out, struct worker *w)
{
        struct book *b = calloc(1, sizeof *b);
        if (!b)
                return -ENOMEM;
        *out = b;
        b->w = w;
        b->r = w->run;
        b->timer.fn = on_backoff_done;
        static const struct derived_events derived_events = {.room = book_on_derived_room,
                                                             .done = book_on_derived_done,
                                                             .delivered = book_on_derived_delivered,
                                                             .looked_up =
                                                                 book_on_derived_looked_up};
        const struct sink *sink = b->r->sink;
        int err = pgp_new(&b->dec) < 0 ? -ENOMEM : 0;
        if (!err)
                pgp_set_defer_keys(b->dec, true); /* every S2K beside the loop */
        if (!err)
                err = digest_init(&b->digest, sink ? sink->part_size : 0);
        if (!err)
                err = stage_init(&b->stage, &b->r->staging, w->loop, book_on_stage_room,
                                 book_on_stage_synced, b);
        if (!err)
                err = b->r->source->ops->slot_new(b->r->source, w, &book_source_events, b, &b->src);
        if (!err && sink)
                err = sink->ops->slot_new(b->r->sink, w, &b->snk);
        if (!err && b->r->derived_on)
                err = derived_new(&b->der, w, &derived_events, b);
        return err;
}

void book_free(struct book *b)
{
        if (!b)
                return;
        derived_free(b->der);
        if (b->snk)
                b->r->sink->ops->slot_free(b->snk);
        if (b->src)
                b->r->source->ops->slot_free(b->src);
        stage_destroy(&b->stage);
        digest_destroy(&b->digest);
        pgp_free(b->dec);
        free(b);
}
