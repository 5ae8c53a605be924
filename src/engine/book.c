/* One book's way through a worker: [ask the destination] ─ wait for a download slot ─
 * fetch and decrypt inline into a stage ─ verify the MDC ─ sync ─ wait for an upload slot
 * ─ deliver ─ journal. Transient failures go back through a backoff timer; permanent ones
 * end the book and the run goes on.
 *
 * With derived outputs (derived.h) the plaintext is also teed into the slot's contents
 * reader; the reader's verdict and outputs are awaited beside the stage's sync, and the
 * outputs are delivered before the raw archive, so a destination that holds a book holds
 * what could be read out of it. With a plaintext source (quire extract) there is no
 * decryptor, no stage and no raw delivery: the source's bytes go to the reader alone. */
#include "book.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "derived_int.h"
#include "digest.h"
#include "keypool.h"
#include "quire/base/util.h"
#include "quire/engine/journal.h"
#include "quire/engine/sink.h"
#include "quire/engine/source.h"
#include "quire/pgp/pgp.h"
#include "run_int.h"
#include "staging.h"
#include "worker_int.h"

/* Plaintext out can exceed ciphertext in by the decryptor's held-back MDC tail. */
#define STAGING_SLACK 64
#define BOOK_META_MAX 5

enum book_state {
        BOOK_IDLE,
        BOOK_LOOKUP, /* asking the destination whether it holds the book already */
        BOOK_WAIT_DOWNLOAD,
        BOOK_DOWNLOADING,
        BOOK_FINISHING, /* flushing staged plaintext, syncing it */
        BOOK_WAIT_UPLOAD,
        BOOK_UPLOADING,
        BOOK_BACKOFF,
};

struct book {
        struct worker *w;
        struct run *r;
        enum book_state state;
        struct queue_item item;
        unsigned attempt;
        struct pgp_dec *dec;
        struct digest digest;
        struct stage stage;
        /* source */
        struct source_slot *src;
        bool head;      /* the request in flight is a HEAD (skip-unchanged) */
        uint64_t fed;   /* body bytes handed to the decryptor */
        bool room_wait; /* the source is paused until the stage has room */
        size_t room_need;
        int feed_error;  /* what stopped the transfer from our side */
        int restart_err; /* a new stage could not be made when starting over */
        int first_byte;  /* of the body, -1 before it: names an HTML page for what it is */
        char etag[SOURCE_ETAG_MAX];
        /* the key, derived beside the loop */
        struct key_req key;
        bool key_out;  /* the pool owns key */
        bool key_wait; /* the source is paused until the key is back */
        /* destination */
        struct sink_slot *snk;
        struct lookup lookup;
        struct delivery delivery;
        struct delivery_meta meta[BOOK_META_MAX];
        char name[BARCODE_MAX + 16], original[FEEDER_FILE_MAX + 1], acquired[21];
        char dest_etag[SINK_ETAG_MAX];
        /* retries */
        struct loop_op timer;
        unsigned retry_after_s;
        bool retry_upload; /* the backoff leads back to the upload, the stage kept */
        /* Resuming a broken download: the decryptor, digests and stage stay as they were
         * at `fed`, and the retry asks for the rest (If-Range: resume_etag). */
        bool resume, resuming, restart_wait, no_resume;
        char resume_etag[SOURCE_ETAG_MAX];
        unsigned resumes;
        uint64_t resumed_bytes; /* not fetched again thanks to resuming */
        bool space_wait;        /* the failure was a full staging disk others will free */
        const char *cause;      /* the failure's label, should it be retried (metrics) */
        uint64_t started_ns, dl_started_ns, ul_started_ns;
        bool holds_download, holds_upload;
        char detail[512];
        /* derived outputs (NULL: the run makes none) */
        struct derived *der;
        bool der_wait;        /* the source is paused until the reader has room */
        unsigned finish_wait; /* of the stage's sync and the reader's end, those to come */
        bool verdict;         /* the attempt's digest is final (an extract journals it) */
        int plain_err;        /* a plaintext source's bytes refused (-errno) */
        bool der_failed;      /* the attempt's derived outputs could not be set up */
        bool der_after_raw;   /* the derived outputs' lookup follows the raw one's */
};

static void book_failed(struct book *b, bool transient, bool run_level, bool upload,
                        const char *detail);
static void wait_download(struct book *b);
static void lookup_begin(struct book *b);

/* quire extract: the source's bytes are the plaintext, and only derived outputs leave. */
static bool plain(const struct book *b)
{
        return b->r->derived.plaintext_source;
}

/* Moves the book from one stage counter of the status line to another. */
static void set_stage(struct book *b, enum book_state to)
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

static void release_download(struct book *b)
{
        if (!b->holds_download)
                return;
        uint64_t now = util_now_ns();
        slot_time_close(&b->r->stats.download_time, b->dl_started_ns, now);
        atomic_store(&b->r->stats.last_download_end_ns, now);
        b->holds_download = false;
        run_slots_release(b->r, &b->r->downloads);
}

static void release_upload(struct book *b)
{
        if (!b->holds_upload)
                return;
        slot_time_close(&b->r->stats.upload_time, b->ul_started_ns, util_now_ns());
        b->holds_upload = false;
        run_slots_release(b->r, &b->r->uploads);
}

/* The attempt's staged plaintext goes, and its derived outputs with it. */
static void stage_drop(struct book *b)
{
        if (stage_remove(&b->stage, b->delivery.staging_taken))
                run_wake_download_waiters(b->r);
        b->delivery.staging_taken = false;
        if (b->der)
                derived_drop(b->der);
}

/* ---- outcomes ---------------------------------------------------------------------- */

static void book_end(struct book *b)
{
        set_stage(b, BOOK_IDLE);
        run_inflight_remove(&b->r->inflight, b->item.barcode);
        worker_book_ended(b->w);
}

/* The destination holds this very book already (same source ETag). */
static void book_skip(struct book *b)
{
        char detail[SOURCE_ETAG_MAX + 64];
        snprintf(detail, sizeof detail, "unchanged at the source (ETag %s)", b->etag);
        set_stage(b, BOOK_IDLE); /* the status line must not count it in a stage */
        struct journal_rec rec = {.barcode = b->item.barcode,
                                  .outcome = "skipped",
                                  .detail = detail,
                                  .duration_ns = util_now_ns() - b->started_ns};
        journal_append(b->r->journal, &rec);
        progress_count(b->r, OUTCOME_SKIPPED, 0);
        book_end(b);
}

static void book_finish(struct book *b, bool ok, bool run_level, const char *detail)
{
        uint64_t bytes = plain(b) ? b->digest.len : b->stage.size;
        /* An extract journals what it read even when it could not read inside it. */
        bool measured = ok || (plain(b) && b->verdict);
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
        stage_drop(b);
        set_stage(b, BOOK_IDLE);
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

/* A failed attempt: retried when transient and attempts remain, else the book fails.
 * While other books hold staging space, a full disk pauses new downloads until one of
 * them leaves, and this book waits for that too without spending a retry. */
static void book_failed(struct book *b, bool transient, bool run_level, bool upload,
                        const char *detail)
{
        bool space_wait = b->space_wait;
        const char *cause = b->cause;
        b->space_wait = false;
        b->cause = NULL;
        if (!transient || (b->attempt >= b->r->cfg.retries && !space_wait) ||
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
                stage_drop(b);
        set_stage(b, BOOK_BACKOFF);
        if (space_wait) {
                atomic_store(&b->r->staging.full, true); /* after this book's space is freed */
                qlog("%s: %s; waiting for staging space", b->item.barcode, detail);
                progress_retry(b->r, cause);
                loop_timer(b->w->loop, &b->timer, backoff_ns(1, 0));
                return;
        }
        b->attempt++;
        progress_retry(b->r, cause);
        uint64_t delay = backoff_ns(b->attempt, b->retry_after_s);
        qlog("%s: attempt %u failed (%s); retrying in %.1f s", b->item.barcode, b->attempt, detail,
             (double)delay / 1e9);
        loop_timer(b->w->loop, &b->timer, delay);
}

/* A staging write failed: a full disk is worth a retry, anything else is not. */
static void staging_failed(struct book *b, int err)
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

/* ---- the destination --------------------------------------------------------------- */

static void on_delivered(struct delivery *d, int rc, bool transient, const char *detail)
{
        struct book *b = container_of(d, struct book, delivery);
        release_upload(b);
        if (rc == 0) {
                book_finish(b, true, false, NULL);
        } else {
                b->cause = "upload";
                book_failed(b, transient, true, true, detail);
        }
}

static void add_meta(struct book *b, const char *name, const char *value)
{
        assert(b->delivery.nmeta < BOOK_META_MAX);
        b->meta[b->delivery.nmeta++] = (struct delivery_meta){name, value};
}

/* The object carries what both quire and the Python pipeline read back (its spelling,
 * underscores): a bucket either filled can be taken over by the other. */
static void deliver_raw(struct book *b)
{
        if (plain(b)) { /* nothing leaves but the derived outputs */
                release_upload(b);
                book_finish(b, true, false, NULL);
                return;
        }
        struct delivery *d = &b->delivery;
        *d = (struct delivery){
            .barcode = b->item.barcode,
            .name = b->name,
            .content_type = "application/gzip",
            .fd = b->stage.fd,
            .staging_path = b->stage.path,
            .size = b->stage.size,
            .part_sha256 = (const uint8_t(*)[32])b->digest.parts,
            .nparts = b->digest.nparts,
            .meta = b->meta,
            .done = on_delivered,
        };
        memcpy(d->sha256, b->digest.sha256, sizeof d->sha256);
        add_meta(b, "barcode", b->item.barcode);
        add_meta(b, "acquisition_date", b->acquired);
        if (b->etag[0])
                add_meta(b, "encrypted_etag", b->etag);
        add_meta(b, "original_filename", b->original);
        add_meta(b, "plaintext-sha256", b->digest.sha256_hex);
        b->r->sink->ops->deliver(b->snk, d);
}

static void on_derived_delivered(void *owner, int rc, bool transient, const char *detail)
{
        struct book *b = owner;
        if (rc) {
                release_upload(b);
                book_failed(b, transient, true, true, detail);
                return;
        }
        deliver_raw(b);
}

/* The derived outputs first (those a retry still owes), then the raw archive. */
static void upload_begin(struct book *b)
{
        b->holds_upload = true;
        b->ul_started_ns = util_now_ns();
        slot_time_open(&b->r->stats.upload_time, b->ul_started_ns);
        set_stage(b, BOOK_UPLOADING);
        util_utc_iso8601(b->acquired);
        if (b->der && derived_deliver(b->der, b->acquired))
                return;
        deliver_raw(b);
}

static void on_lookup_done(struct lookup *lk, int rc, const char *detail)
{
        struct book *b = container_of(lk, struct book, lookup);
        /* A failed lookup only costs a download: the delivery will report a broken
         * destination if it is one. */
        bool compare = rc == 0 && lk->found && lk->source_etag[0];
        snprintf(b->dest_etag, sizeof b->dest_etag, "%s", compare ? lk->source_etag : "");
        if (compare && b->der) {
                /* Unchanged at the source skips the book only when its derived outputs are
                 * there too: a rerun makes the missing ones (and delivers the book again). */
                b->der_after_raw = true;
                derived_lookup(b->der, b->item.barcode);
                return;
        }
        wait_download(b);
}

/* After a raw lookup that found the book: without all its derived outputs, no skip. A
 * recheck (derived.h's recheck_delivered) that finds them all skips the book as the
 * journal's skip would have, counted and not journaled again; else the book is read
 * again. */
static void on_derived_looked_up(void *owner, bool all_found)
{
        struct book *b = owner;
        if (b->der_after_raw) {
                b->der_after_raw = false;
                if (!all_found)
                        b->dest_etag[0] = 0;
                wait_download(b);
        } else if (!all_found) {
                lookup_begin(b);
        } else {
                set_stage(b, BOOK_IDLE);
                progress_count(b->r, OUTCOME_DELIVERED_BEFORE, 0);
                book_end(b);
        }
}

/* ---- the download ------------------------------------------------------------------ */

/* The decryptor's sink: hash the plaintext, tee it to the contents reader, stage it. */
static int on_plaintext(void *ctx, const uint8_t *p, size_t n)
{
        struct book *b = ctx;
        if (digest_update(&b->digest, p, n) < 0)
                return -ENOMEM;
        if (b->der)
                derived_feed(b->der, p, n);
        return plain(b) ? 0 : stage_write(&b->stage, p, n);
}

/* A plaintext source's bytes, as the decryptor's sink would have them. */
static int plain_feed(struct book *b, const uint8_t *p, size_t n)
{
        b->plain_err = on_plaintext(b, p, n);
        return b->plain_err ? PGP_ESINK : 0;
}

/* A new attempt's outputs: the stage, the derived outputs' files and reader. */
static int attempt_open(struct book *b)
{
        int err = plain(b) ? 0 : stage_open(&b->stage, b->item.barcode);
        if (!err && b->der) {
                err = derived_begin(b->der, b->item.barcode, b->item.recheck);
                b->der_failed = err != 0;
        }
        if (err)
                stage_drop(b);
        b->verdict = false;
        b->plain_err = 0;
        return err;
}

static void attempt_reset(struct book *b)
{
        if (!plain(b)) /* no decryptor for a plaintext source */
                pgp_reset(b->dec, b->r->cfg.passphrase, b->r->cfg.passlen, on_plaintext, b);
        digest_reset(&b->digest);
}

/* The decryptor stopped at a symmetric-key packet whose key it needs: the key pool
 * derives it while this worker serves its other transfers, and the rest of the bytes
 * wait at the source (the decryptor never derives on the loop: a message that asks for
 * more than PGP_MAX_DERIVE keys fails). */
static void key_ask(struct book *b)
{
        pgp_key_wanted(b->dec, &b->key.job);
        b->key_out = b->key_wait = true;
        b->w->keys_out++;
        keypool_submit(b->r->keypool, &b->key, &b->w->key_done);
}

/* The source sent the whole body again instead of the rest (no ranges, or the object
 * changed): start this book over, once the stage's last writes are done. */
static int restart_body(struct book *b)
{
        if (stage_busy(&b->stage)) {
                b->restart_wait = true;
                return SOURCE_PAUSE;
        }
        b->restart_wait = false;
        stage_drop(b);
        int err = attempt_open(b);
        if (err) {
                b->feed_error = PGP_ESINK;
                b->restart_err = err;
                return -1;
        }
        b->resumed_bytes -= b->fed < b->resumed_bytes ? b->fed : b->resumed_bytes;
        b->fed = 0;
        b->first_byte = -1;
        attempt_reset(b);
        return 0;
}

static int on_src_data(void *owner, uint64_t off, const uint8_t *p, size_t n)
{
        struct book *b = owner;
        if (b->resuming) {
                if (off == 0 && b->fed > 0) {
                        int rc = restart_body(b);
                        if (rc)
                                return rc;
                } else {
                        b->resumes++;
                        b->resumed_bytes += b->fed;
                        atomic_fetch_add(&b->r->stats.bytes_resumed, b->fed);
                }
                b->resuming = false;
        }
        if (off + n <= b->fed)
                return 0; /* delivered again after a pause: taken already */
        assert(off <= b->fed);
        p += b->fed - off;
        n -= (size_t)(b->fed - off);
        if (b->key_wait)
                return SOURCE_PAUSE; /* handed over again once the key is back */
        size_t need = n + STAGING_SLACK;
        if (need > STAGE_BUFS * STAGE_BUF_SIZE)
                need = STAGE_BUFS * STAGE_BUF_SIZE;
        if (stage_room(&b->stage) < need) {
                /* Staging writes still in flight: the source keeps these bytes and stops
                 * reading until on_stage_room() resumes it. */
                b->room_wait = true;
                b->room_need = need;
                return SOURCE_PAUSE;
        }
        if (b->der && !derived_has_room(b->der, need)) {
                b->der_wait = true; /* on_derived_room() resumes it */
                return SOURCE_PAUSE;
        }
        int rc = plain(b) ? plain_feed(b, p, n) : pgp_feed(b->dec, p, n);
        size_t took = rc == PGP_NEEDKEY ? pgp_consumed(b->dec) : n;
        atomic_fetch_add(&b->r->stats.bytes_in, took);
        if (b->fed == 0 && n)
                b->first_byte = p[0];
        b->fed += took;
        if (rc == PGP_NEEDKEY) {
                key_ask(b);
                return SOURCE_PAUSE; /* the source keeps the rest; fed says what was taken */
        }
        if (rc) {
                b->feed_error = rc;
                return rc;
        }
        return 0;
}

/* The ciphertext's length bounds the plaintext's from below: OpenPGP's framing adds a few
 * dozen bytes, and compressed data incompressible to begin with grows by well under 1/64
 * (deflate's stored blocks, bzip2's worst case). A book already too large for the
 * destination's or the run's bound is refused before a byte of it is fetched. */
static int on_src_length(void *owner, uint64_t length)
{
        struct book *b = owner;
        uint64_t max = b->r->staging.max_book;
        if (!max || length <= max + max / 64 + 4096)
                return 0;
        b->feed_error = PGP_ESINK;
        b->restart_err = -EFBIG;
        return -EFBIG;
}

static void on_stage_room(void *owner)
{
        struct book *b = owner;
        if (b->restart_wait && !stage_busy(&b->stage)) {
                b->restart_wait = false;
                b->r->source->ops->resume(b->src);
        }
        if (b->room_wait && stage_room(&b->stage) >= b->room_need) {
                b->room_wait = false;
                b->r->source->ops->resume(b->src);
        }
        if (b->state == BOOK_IDLE && !stage_busy(&b->stage))
                worker_pump_soon(b->w); /* the slot can take a new book now */
}

static void on_derived_room(void *owner)
{
        struct book *b = owner;
        if (b->der_wait) {
                b->der_wait = false;
                b->r->source->ops->resume(b->src);
        }
}

/* The reader's verdict decides what of the book may leave. Run: an archive that cannot be
 * read, or whose checksums do not match, is still GRIN's authentic object (its MDC
 * passed), so it goes, with the verdict in its journal line, unless --require-checksums.
 * Extract: only what could be read. Either way a disk that failed the outputs is a
 * failure worth a retry, not a verdict. */
static bool verdict_refuses(struct book *b)
{
        char why[sizeof b->detail];
        struct derived *d = b->der;
        if (derived_io_failed(d)) {
                book_failed(b, true, true, false, derived_detail(d));
                return true;
        }
        if (b->r->derived.require_checksums && !derived_checksums_ok(d)) {
                snprintf(why, sizeof why, "%s refused=--require-checksums", derived_detail(d));
                book_failed(b, false, false, false, why);
                return true;
        }
        if (plain(b) && !derived_readable(d)) {
                snprintf(why, sizeof why, "%s", derived_detail(d));
                book_failed(b, false, false, false, why);
                return true;
        }
        return false;
}

/* One of the stage's sync and the reader's end has come; after the last, the book waits
 * for an upload slot. */
static void finish_step(struct book *b)
{
        assert(b->finish_wait > 0);
        if (--b->finish_wait)
                return;
        if (digest_final(&b->digest) < 0) {
                book_failed(b, true, false, false, "out of memory");
                return;
        }
        b->verdict = true;
        if (b->der && verdict_refuses(b))
                return;
        set_stage(b, BOOK_WAIT_UPLOAD);
        atomic_fetch_add(&b->w->waiting_ul, 1);
        book_pump(b);
}

static void on_derived_done(void *owner)
{
        finish_step(owner);
}

static void on_stage_synced(void *owner, int rc)
{
        struct book *b = owner;
        if (rc < 0) {
                staging_failed(b, rc);
                return;
        }
        finish_step(b);
}

/* The source lacks the book, and its catalog says why (GRIN: the conversion failed, is
 * in process, or was requested now): journaled as such, not as a failure of the run. */
static bool book_missing(struct book *b)
{
        struct source *src = b->r->source;
        struct source_missing m = {0};
        if (!src->ops->missing)
                return false;
        src->ops->missing(src, b->item.barcode, &m);
        if (!m.outcome)
                return false;
        stage_drop(b);
        set_stage(b, BOOK_IDLE);
        struct journal_rec rec = {.barcode = b->item.barcode,
                                  .outcome = m.outcome,
                                  .detail = m.detail[0] ? m.detail : NULL,
                                  .duration_ns = util_now_ns() - b->started_ns};
        journal_append(b->r->journal, &rec);
        enum outcome o = !strcmp(m.outcome, "requested")           ? OUTCOME_REQUESTED
                         : !strcmp(m.outcome, "in-process")        ? OUTCOME_IN_PROCESS
                         : !strcmp(m.outcome, "conversion-failed") ? OUTCOME_CONVERSION_FAILED
                                                                   : OUTCOME_SKIPPED;
        if (o == OUTCOME_CONVERSION_FAILED) {
                qlog("%s (line %llu): conversion failed at the source: %s", b->item.barcode,
                     (unsigned long long)b->item.line, m.detail);
                progress_failure(b->r, b->item.barcode, m.detail);
        }
        progress_count(b->r, o, 0);
        book_end(b);
        return true;
}

static void download_failed(struct book *b, const struct source_result *res)
{
        if (res->status == SOURCE_NOT_FOUND && book_missing(b))
                return;
        if (res->status == SOURCE_STOPPED && b->feed_error == PGP_ESINK) {
                int err = b->restart_err ? b->restart_err
                          : b->plain_err ? b->plain_err
                                         : -pgp_sink_errno(b->dec);
                b->restart_err = 0;
                staging_failed(b, err);
                return;
        }
        if (res->status == SOURCE_STOPPED || res->status == SOURCE_OK) {
                /* A wrong passphrase, or a source that serves something else than OpenPGP
                 * (a login page), concerns every book; a tampered book only itself. */
                int rc = b->feed_error;
                const char *why = pgp_detail(b->dec);
                if (rc == PGP_ENOTPGP && b->first_byte == '<')
                        why = "the source sent an HTML or XML page, not an archive (a login or "
                              "error page: check the credentials)";
                book_failed(b, false, rc == PGP_EBADPASS || rc == PGP_ENOTPGP, false, why);
                return;
        }
        b->retry_after_s = res->retry_after_s;
        b->cause = progress_source_cause(res);
        if (res->range_refused)
                b->no_resume = true;
        /* A transfer that broke after some bytes continues from there: the decryptor
         * holds its state at exactly `fed`. Only against the same object: HTTP needs a
         * strong ETag for If-Range. */
        b->resume = res->status == SOURCE_TRANSIENT && b->fed > 0 && !b->no_resume &&
                    (!strcmp(b->r->source->kind, "file") || (res->etag[0] && !res->etag_weak));
        if (b->resume)
                snprintf(b->resume_etag, sizeof b->resume_etag, "%s", res->etag);
        book_failed(b, res->status == SOURCE_TRANSIENT, res->run_level, false, res->detail);
}

static void download_done(struct book *b, const struct source_result *res)
{
        release_download(b);
        b->room_wait = b->key_wait = false; /* the source is done: nothing to resume */
        b->der_wait = false;
        snprintf(b->etag, sizeof b->etag, "%s", res->etag);
        if (res->status == SOURCE_OK && !b->feed_error && !plain(b))
                b->feed_error = pgp_finish(b->dec);
        if (res->status != SOURCE_OK || b->feed_error) {
                download_failed(b, res);
                return;
        }
        /* Verified (the MDC matched): the reader may finish now, never before. */
        set_stage(b, BOOK_FINISHING);
        b->finish_wait = !plain(b) + (b->der != NULL);
        if (b->der)
                derived_finish(b->der);
        if (!plain(b))
                stage_finish(&b->stage);
}

/* The retry of a broken download asks for the rest. */
static void resume_begin(struct book *b)
{
        b->resume = false;
        b->resuming = true;
        b->feed_error = 0;
        b->room_wait = false;
        b->head = false;
        struct source_request req = {.barcode = b->item.barcode,
                                     .file = b->original,
                                     .offset = b->fed,
                                     .if_range = b->resume_etag[0] ? b->resume_etag : NULL};
        b->r->source->ops->begin(b->src, &req);
}

static void fetch_begin(struct book *b)
{
        if (b->resume) {
                resume_begin(b);
                return;
        }
        b->resuming = false;
        b->fed = 0;
        b->feed_error = 0;
        b->first_byte = -1;
        b->room_wait = b->der_wait = false;
        int err = attempt_open(b);
        if (err) {
                release_download(b);
                staging_failed(b, err);
                return;
        }
        attempt_reset(b);
        b->head = false;
        struct source_request req = {.barcode = b->item.barcode, .file = b->original};
        b->r->source->ops->begin(b->src, &req);
}

static void head_done(struct book *b, const struct source_result *res)
{
        if (res->status == SOURCE_OK && res->etag[0] && !strcmp(res->etag, b->dest_etag)) {
                snprintf(b->etag, sizeof b->etag, "%s", res->etag);
                release_download(b);
                book_skip(b);
                return;
        }
        if (res->status == SOURCE_OK || res->status == SOURCE_NOT_FOUND ||
            (res->status == SOURCE_FAILED && res->http_status >= 400 && res->http_status < 500)) {
                /* Changed, or a source that does not answer HEAD the way it answers GET
                 * (404, 405): the fetch decides. */
                if (res->status != SOURCE_OK && !atomic_exchange(&b->r->head_refused, true))
                        qlog("notice: the source answered HEAD with HTTP %ld; fetching books "
                             "the destination holds instead of comparing ETags",
                             res->http_status);
                fetch_begin(b); /* keeps the download slot */
                return;
        }
        release_download(b);
        b->retry_after_s = res->retry_after_s;
        b->cause = progress_source_cause(res);
        book_failed(b, res->status == SOURCE_TRANSIENT, res->run_level, false, res->detail);
}

static void on_src_done(void *owner, const struct source_result *res)
{
        struct book *b = owner;
        if (b->head)
                head_done(b, res);
        else
                download_done(b, res);
}

static void download_begin(struct book *b)
{
        b->holds_download = true;
        b->dl_started_ns = util_now_ns();
        slot_time_open(&b->r->stats.download_time, b->dl_started_ns);
        uint_fast64_t zero = 0;
        atomic_compare_exchange_strong(&b->r->stats.first_download_ns, &zero, b->dl_started_ns);
        set_stage(b, BOOK_DOWNLOADING);
        b->retry_after_s = 0;
        if (!b->dest_etag[0] || atomic_load(&b->r->head_refused)) {
                fetch_begin(b);
                return;
        }
        /* HEAD first: the destination may hold this very book. */
        b->head = true;
        struct source_request req = {.barcode = b->item.barcode, .file = b->original, .head = true};
        b->r->source->ops->begin(b->src, &req);
}

static void wait_download(struct book *b)
{
        set_stage(b, BOOK_WAIT_DOWNLOAD);
        /* Announce the wait before trying, so a slot freed meanwhile wakes this worker. */
        atomic_fetch_add(&b->w->waiting_dl, 1);
        book_pump(b);
}

void book_key_done(struct key_req *req)
{
        struct book *b = container_of(req, struct book, key);
        b->key_out = false;
        b->w->keys_out--;
        atomic_fetch_add(&b->r->stats.s2k_ns, req->derive_ns);
        bool wanted = b->key_wait && b->state == BOOK_DOWNLOADING;
        b->key_wait = false;
        if (wanted && req->job.ready)
                pgp_key_offer(b->dec, &req->job);
        explicit_bzero(&req->job, sizeof req->job);
        if (wanted)
                b->r->source->ops->resume(b->src);
        else if (b->state == BOOK_WAIT_DOWNLOAD)
                book_pump(b);
        else if (b->state == BOOK_IDLE)
                worker_pump_soon(b->w);
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
                download_begin(b);
        } else if (b->state == BOOK_WAIT_UPLOAD && run_slots_try_acquire(&r->uploads)) {
                atomic_fetch_sub(&b->w->waiting_ul, 1);
                upload_begin(b);
        }
}

bool book_idle(const struct book *b)
{
        return b->state == BOOK_IDLE && !stage_busy(&b->stage) && !b->key_out;
}

void book_start(struct book *b, const struct queue_item *item)
{
        b->item = *item;
        b->attempt = 0;
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
                set_stage(b, BOOK_LOOKUP);
                derived_lookup(b->der, b->item.barcode);
                return;
        }
        lookup_begin(b);
}

static void lookup_begin(struct book *b)
{
        const struct sink *s = b->r->sink;
        if (s && s->ops->lookup && s->lookup_etag && !b->r->cfg.force) {
                set_stage(b, BOOK_LOOKUP);
                b->lookup = (struct lookup){
                    .barcode = b->item.barcode, .name = b->name, .done = on_lookup_done};
                s->ops->lookup(b->snk, &b->lookup);
                return;
        }
        wait_download(b);
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
        release_download(b);
        release_upload(b);
        stage_drop(b);
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
        static const struct source_events events = {
            .data = on_src_data, .done = on_src_done, .length = on_src_length};
        static const struct derived_events derived_events = {.room = on_derived_room,
                                                             .done = on_derived_done,
                                                             .delivered = on_derived_delivered,
                                                             .looked_up = on_derived_looked_up};
        const struct sink *sink = b->r->sink;
        int err = pgp_new(&b->dec) < 0 ? -ENOMEM : 0;
        if (!err)
                pgp_set_defer_keys(b->dec, true); /* every S2K beside the loop */
        if (!err)
                err = digest_init(&b->digest, sink ? sink->part_size : 0);
        if (!err)
                err = stage_init(&b->stage, &b->r->staging, w->loop, on_stage_room, on_stage_synced,
                                 b);
        if (!err)
                err = b->r->source->ops->slot_new(b->r->source, w, &events, b, &b->src);
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
