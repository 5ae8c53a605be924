/* A book slot's download: the source's bytes through the decryptor (or, for a plaintext
 * source, straight) into the digests, the contents reader and the stage; the key pool's
 * S2K beside the loop; a HEAD that may skip the book; a broken transfer resumed where the
 * decryptor stands; the verdict once the MDC matched and the stage is synced. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "book_int.h"
#include "quire/base/util.h"
#include "quire/engine/journal.h"
#include "quire/pgp/pgp.h"
#include "worker_int.h"

/* The decryptor's sink: hash the plaintext, tee it to the contents reader, stage it. */
static int on_plaintext(void *ctx, const uint8_t *p, size_t n)
{
        struct book *b = ctx;
        if (digest_update(&b->digest, p, n) < 0)
                return -ENOMEM;
        if (b->der)
                derived_feed(b->der, p, n);
        return book_plain(b) ? 0 : stage_write(&b->stage, p, n);
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
        int err = book_plain(b) ? 0 : stage_open(&b->stage, b->item.barcode);
        if (!err && b->der) {
                err = derived_begin(b->der, b->item.barcode, b->item.recheck);
                b->der_failed = err != 0;
        }
        if (err)
                book_stage_drop(b);
        b->verdict = false;
        b->plain_err = 0;
        return err;
}

static void attempt_reset(struct book *b)
{
        if (!book_plain(b)) /* no decryptor for a plaintext source */
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
        book_stage_drop(b);
        int err = attempt_open(b);
        if (err) {
                b->feed_error = PGP_ESINK;
                b->restart_err = err;
                return -1;
        }
        b->resumed_bytes -= b->fed < b->resumed_bytes ? b->fed : b->resumed_bytes;
        b->fed = b->attempt_fed0 = 0;
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
        int made = book_plain(b) ? 0 : stage_create(&b->stage); /* at the body's first byte */
        if (made) {
                b->feed_error = PGP_ESINK;
                b->restart_err = made;
                return -1;
        }
        size_t need = n + STAGING_SLACK;
        if (need > STAGE_BUFS * STAGE_BUF_SIZE)
                need = STAGE_BUFS * STAGE_BUF_SIZE;
        if (stage_room(&b->stage) < need) {
                /* Staging writes still in flight: the source keeps these bytes and stops
                 * reading until book_on_stage_room() resumes it. */
                b->room_wait = true;
                b->room_need = need;
                return SOURCE_PAUSE;
        }
        if (b->der && !derived_has_room(b->der, need)) {
                b->der_wait = true; /* book_on_derived_room() resumes it */
                return SOURCE_PAUSE;
        }
        int rc = book_plain(b) ? plain_feed(b, p, n) : pgp_feed(b->dec, p, n);
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

void book_on_stage_room(void *owner)
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

void book_on_derived_room(void *owner)
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
        if (book_plain(b) && !derived_readable(d)) {
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
        book_set_stage(b, BOOK_WAIT_UPLOAD);
        atomic_fetch_add(&b->w->waiting_ul, 1);
        book_pump(b);
}

void book_on_derived_done(void *owner)
{
        finish_step(owner);
}

void book_on_stage_synced(void *owner, int rc)
{
        struct book *b = owner;
        if (rc < 0) {
                book_staging_failed(b, rc);
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
        book_stage_drop(b);
        book_set_stage(b, BOOK_IDLE);
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
                book_staging_failed(b, err);
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
                if (b->resumes && !b->no_resume &&
                    (rc == PGP_EMDC || rc == PGP_ECORRUPT || rc == PGP_ETRUNC)) {
                        /* The bytes after a resume did not fit those before it: a server that
                         * served a changed object to a ranged request (ignoring If-Range).
                         * Once more from byte 0, never resumed, before the book is called
                         * damaged. */
                        char msg[sizeof b->detail];
                        snprintf(msg, sizeof msg, "%s after a resume", why);
                        b->no_resume = true;
                        b->cause = "resume";
                        book_failed(b, true, false, false, msg);
                        return;
                }
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
        /* Cut after moving the book on (a link that resets): resumed without spending a
         * retry, so a long book over a bad link is not lost to its number of cuts, while
         * a source that fails without progress still runs out of retries. */
        b->progressed = b->resume && b->fed >= b->attempt_fed0 + BOOK_PROGRESS_FREE;
        book_failed(b, res->status == SOURCE_TRANSIENT, res->run_level, false, res->detail);
}

static void download_done(struct book *b, const struct source_result *res)
{
        book_release_download(b);
        b->room_wait = b->key_wait = false; /* the source is done: nothing to resume */
        b->der_wait = false;
        snprintf(b->etag, sizeof b->etag, "%s", res->etag);
        if (res->status == SOURCE_OK && !b->feed_error && !book_plain(b))
                b->feed_error = pgp_finish(b->dec);
        if (res->status != SOURCE_OK || b->feed_error) {
                download_failed(b, res);
                return;
        }
        /* Verified (the MDC matched): the reader may finish now, never before. */
        book_set_stage(b, BOOK_FINISHING);
        b->finish_wait = !book_plain(b) + (b->der != NULL);
        if (b->der)
                derived_finish(b->der);
        if (!book_plain(b))
                stage_finish(&b->stage);
}

/* The retry of a broken download asks for the rest. */
static void resume_begin(struct book *b)
{
        b->resume = false;
        b->resuming = true;
        b->attempt_fed0 = b->fed;
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
        b->fed = b->attempt_fed0 = 0;
        b->feed_error = 0;
        b->first_byte = -1;
        b->room_wait = b->der_wait = false;
        int err = attempt_open(b);
        if (err) {
                book_release_download(b);
                book_staging_failed(b, err);
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
                book_release_download(b);
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
        book_release_download(b);
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

void book_download_begin(struct book *b)
{
        b->holds_download = true;
        b->dl_started_ns = util_now_ns();
        slot_time_open(&b->r->stats.download_time, b->dl_started_ns);
        uint_fast64_t zero = 0;
        atomic_compare_exchange_strong(&b->r->stats.first_download_ns, &zero, b->dl_started_ns);
        book_set_stage(b, BOOK_DOWNLOADING);
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

void book_wait_download(struct book *b)
{
        book_set_stage(b, BOOK_WAIT_DOWNLOAD);
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

const struct source_events book_source_events = {
    .data = on_src_data, .done = on_src_done, .length = on_src_length};
