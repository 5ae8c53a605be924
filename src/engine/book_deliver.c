/* A book slot's destination: before the download, whether the destination holds the book
 * already (the raw archive's source ETag, and its derived outputs); after it, the derived
 * outputs and then the raw archive as one struct delivery, with the metadata both quire
 * and the Python pipeline read back. */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "book_int.h"
#include "quire/base/util.h"

static void on_delivered(struct delivery *d, int rc, bool transient, const char *detail)
{
        struct book *b = container_of(d, struct book, delivery);
        book_release_upload(b);
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
        if (book_plain(b)) { /* nothing leaves but the derived outputs */
                book_release_upload(b);
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

void book_on_derived_delivered(void *owner, int rc, bool transient, const char *detail)
{
        struct book *b = owner;
        if (rc) {
                book_release_upload(b);
                book_failed(b, transient, true, true, detail);
                return;
        }
        deliver_raw(b);
}

/* The derived outputs first (those a retry still owes), then the raw archive. */
void book_upload_begin(struct book *b)
{
        b->holds_upload = true;
        b->ul_started_ns = util_now_ns();
        slot_time_open(&b->r->stats.upload_time, b->ul_started_ns);
        book_set_stage(b, BOOK_UPLOADING);
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
        book_wait_download(b);
}

/* After a raw lookup that found the book: without all its derived outputs, no skip. A
 * recheck (derived.h's recheck_delivered) that finds them all skips the book as the
 * journal's skip would have, counted and not journaled again; else the book is read
 * again. */
void book_on_derived_looked_up(void *owner, bool all_found)
{
        struct book *b = owner;
        if (b->der_after_raw) {
                b->der_after_raw = false;
                if (!all_found)
                        b->dest_etag[0] = 0;
                book_wait_download(b);
        } else if (!all_found) {
                book_lookup_begin(b);
        } else {
                book_set_stage(b, BOOK_IDLE);
                progress_count(b->r, OUTCOME_DELIVERED_BEFORE, 0);
                book_end(b);
        }
}

void book_lookup_begin(struct book *b)
{
        const struct sink *s = b->r->sink;
        if (s && s->ops->lookup && s->lookup_etag && !b->r->cfg.force) {
                book_set_stage(b, BOOK_LOOKUP);
                b->lookup = (struct lookup){
                    .barcode = b->item.barcode, .name = b->name, .done = on_lookup_done};
                s->ops->lookup(b->snk, &b->lookup);
                return;
        }
        book_wait_download(b);
}
