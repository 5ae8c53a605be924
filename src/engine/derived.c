/* A book slot's derived outputs: the plaintext's tee into a contents reader, and the
 * outputs' way to their destinations.
 *
 * Backpressure: the reader takes bytes into its own ring on its own thread. Before the
 * book takes a chunk from its source it asks for room for it in the ring, and stops the
 * source (SOURCE_PAUSE) until the reader says it has freed some; that word comes from
 * the reader's thread, so it is sent to the worker's loop (loop_async), never acted on
 * there. Plaintext can outgrow its ciphertext (a compressed OpenPGP message): what the
 * ring cannot take then waits in a buffer of OVER_CAP bytes fixed per slot (touched only
 * then), and a chunk that outgrows even that is handed over synchronously, the way a
 * stage writes synchronously when its buffers are all in flight: the reader drains the
 * ring on its own.
 *
 * Staging: each output is written by the reader into an unnamed file (the destination's
 * own, when its sink can make one: a directory's O_TMPFILE; else one in the run's staging
 * directory), hashed as it is written (the tap of contents_cfg.wrote) and synced before it
 * counts as made. A crash leaves nothing of an output that was not delivered whole. */
#include "derived_int.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "digest.h"
#include "quire/base/util.h"
#include "quire/contents/contents.h"
#include "quire/engine/sink.h"
#include "run_int.h"
#include "worker_int.h"

#define OVER_CAP   (1u << 20)
#define RING_BYTES (512u << 10) /* two of libcurl's reads: the reader keeps pace or pauses */

enum { OUT_OCR, OUT_MARC, NOUT };

struct output {
        struct derived *d;
        struct sink *sink; /* NULL: this output is not made */
        struct sink_slot *slot;
        const char *suffix, *content_type, *flag;
        int fd;
        struct digest dg; /* updated on the reader's thread until the result is final */
        int dg_err;
        bool made, delivered, delivering, looking;
        char name[BARCODE_MAX + 32];
        struct delivery del;
        struct delivery_meta meta[3];
        struct lookup lk;
};

struct derived {
        struct run *r;
        struct worker *w;
        const struct derived_events *ev;
        void *owner;
        struct loop_async wake; /* the reader's ready(), on the worker's loop */
        struct contents *c;     /* this attempt's reader; NULL between attempts */
        uint8_t *over;          /* plaintext the ring did not take yet */
        size_t over_len;
        bool room_wanted, finishing, finish_called, done, counted;
        bool report_lookup; /* derived_lookup() had nothing to ask: say so from the loop */
        struct output out[NOUT];
        char barcode[BARCODE_MAX + 1];
        char page_count[24];
        char detail[768];
        bool io_failed;
        /* the deliveries' ending */
        int fail_rc;
        bool fail_transient;
        char fail_detail[512];
};

void derived_attach(struct run *r, const struct derived_config *cfg)
{
        r->derived = *cfg;
        r->derived.verify |= cfg->ocr || cfg->marc;
        r->derived_on = true;
}

uint64_t derived_checksum_problems(const struct run *r)
{
        return atomic_load(&r->stats.checksum_problems) +
               atomic_load(&r->stats.contents_unreadable);
}

/* ---- the reader's side (its thread) ---------------------------------------------------- */

static void on_ready(void *arg)
{
        struct derived *d = arg;
        loop_async_send(&d->wake);
}

static void on_wrote(void *arg, int fd, const void *p, size_t n)
{
        struct derived *d = arg;
        for (unsigned i = 0; i < NOUT; i++) {
                struct output *o = &d->out[i];
                if (o->sink && o->fd == fd && !o->dg_err)
                        o->dg_err = digest_update(&o->dg, p, n);
        }
}

/* ---- the loop's side -------------------------------------------------------------------- */

static void flush(struct derived *d)
{
        if (!d->over_len)
                return;
        size_t k = contents_feed(d->c, d->over, d->over_len);
        memmove(d->over, d->over + k, d->over_len - k);
        d->over_len -= k;
}

/* A token for the journal's detail: spaces become '-'. */
static void append_token(struct derived *d, const char *key, const char *why)
{
        size_t n = strlen(d->detail), value = n + strlen(key) + 2;
        snprintf(d->detail + n, sizeof d->detail - n, " %s=%s", key, why);
        size_t end = strlen(d->detail); /* cut when the detail is full */
        for (char *p = d->detail + (value < end ? value : end); *p; p++)
                if (*p == ' ')
                        *p = '-';
}

/* The reader has finished: which outputs are made, and the words for the journal. */
static void settle(struct derived *d)
{
        const struct contents_result *res = contents_result(d->c);
        contents_format_detail(res, d->detail, sizeof d->detail);
        d->io_failed = res->archive == CONTENTS_IOERR || res->err;
        bool written[NOUT] = {res->ocr_written, res->marc_written};
        const char *skipped[NOUT] = {res->ocr_skipped, res->marc_skipped};
        for (unsigned i = 0; i < NOUT; i++) {
                struct output *o = &d->out[i];
                if (!o->sink)
                        continue;
                if (written[i] && !o->dg_err)
                        o->dg_err = digest_final(&o->dg);
                o->made = written[i] && !o->dg_err;
                d->io_failed |= o->dg_err != 0;
                if (!o->made)
                        append_token(d, o->flag,
                                     o->dg_err      ? "out of memory"
                                     : skipped[i]   ? skipped[i]
                                     : d->io_failed ? "cannot write"
                                                    : "none");
        }
        if (res->err)
                append_token(d, "error", strerror(-res->err));
        snprintf(d->page_count, sizeof d->page_count, "%llu", (unsigned long long)res->pages);
}

static void report_delivered(struct derived *d)
{
        for (unsigned i = 0; i < NOUT; i++)
                if (d->out[i].delivering)
                        return;
        int rc = d->fail_rc;
        d->fail_rc = 0;
        d->ev->delivered(d->owner, rc, d->fail_transient, rc ? d->fail_detail : NULL);
}

static void report_lookup(struct derived *d)
{
        bool all = true;
        for (unsigned i = 0; i < NOUT; i++) {
                if (d->out[i].looking)
                        return;
                if (d->out[i].sink && !d->out[i].lk.found)
                        all = false;
        }
        d->ev->looked_up(d->owner, all);
}

/* Whatever changed since the last turn: room in the ring, the reader's end. */
static void pump(struct derived *d)
{
        if (d->report_lookup) {
                d->report_lookup = false;
                report_lookup(d);
        }
        if (!d->c)
                return;
        flush(d);
        if (d->room_wanted && !d->over_len) { /* the book asks again, for what it holds */
                d->room_wanted = false;
                d->ev->room(d->owner);
        }
        if (d->finishing && !d->finish_called && !d->over_len) {
                d->finish_called = true;
                contents_finish(d->c);
        }
        if (d->finish_called && !d->done && contents_done(d->c)) {
                d->done = true;
                settle(d);
                d->ev->done(d->owner);
        }
}

static void on_wake(struct loop_async *a)
{
        pump(container_of(a, struct derived, wake));
}

void derived_feed(struct derived *d, const uint8_t *p, size_t n)
{
        assert(d->c && !d->finishing);
        if (!d->over_len) {
                size_t k = contents_feed(d->c, p, n);
                p += k;
                n -= k;
        }
        if (d->over_len + n > OVER_CAP) {
                flush(d);
                contents_feed_all(d->c, d->over, d->over_len);
                d->over_len = 0;
                contents_feed_all(d->c, p, n);
                return;
        }
        memcpy(d->over + d->over_len, p, n);
        d->over_len += n;
}

bool derived_has_room(struct derived *d, size_t n)
{
        flush(d);
        /* A short flush, or a ring without room for n, asked the reader for a ready(). */
        if (!d->over_len && contents_has_room(d->c, n))
                return true;
        d->room_wanted = true;
        return false;
}

void derived_finish(struct derived *d)
{
        d->finishing = true;
        loop_async_send(&d->wake); /* from the loop: done() never comes from in here */
}

/* ---- attempts ----------------------------------------------------------------------------- */

/* An unnamed file for an output: on the destination's filesystem when its sink can make
 * one, else in the staging directory (named for the sweep only until it is unlinked). */
static int stage_file(struct derived *d, struct output *o)
{
        struct sink *s = o->sink;
        int fd = s->ops->stage_file ? s->ops->stage_file(s) : -EOPNOTSUPP;
        if (fd != -EOPNOTSUPP)
                return fd;
        int dirfd = d->r->staging.dirfd;
        assert(dirfd >= 0); /* the program gives a staging directory to sinks without one */
        fd = openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
                return fd < 0 ? -errno : fd;
        char name[BARCODE_MAX + 64];
        snprintf(name, sizeof name, "%s%s", d->barcode, ".derived.tar.gz.quire-part");
        fd = openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        unlinkat(dirfd, name, 0);
        return fd;
}

void derived_drop(struct derived *d)
{
        if (d->c)
                contents_free(d->c); /* stops the reader and joins it */
        d->c = NULL;
        for (unsigned i = 0; i < NOUT; i++) {
                struct output *o = &d->out[i];
                if (o->fd >= 0)
                        close(o->fd);
                o->fd = -1;
                o->made = o->delivered = false;
        }
        d->over_len = 0;
        d->room_wanted = d->finishing = d->finish_called = d->done = false;
        d->io_failed = false;
        d->detail[0] = 0;
}

int derived_begin(struct derived *d, const char *barcode, bool keep_found)
{
        derived_drop(d);
        snprintf(d->barcode, sizeof d->barcode, "%s", barcode);
        d->counted = false;
        for (unsigned i = 0; i < NOUT; i++) {
                struct output *o = &d->out[i];
                if (!o->sink)
                        continue;
                snprintf(o->name, sizeof o->name, "%s%s", barcode, o->suffix);
                o->fd = stage_file(d, o);
                if (o->fd < 0) {
                        int err = o->fd;
                        derived_drop(d);
                        return err;
                }
                digest_reset(&o->dg);
                o->dg_err = 0;
                /* What a recheck found in place stays as it is: only the missing go. */
                o->delivered = keep_found && o->lk.found;
        }
        const struct run *r = d->r;
        struct contents_cfg cfg = {
            .ocr_fd = d->out[OUT_OCR].fd,
            .marc_fd = d->out[OUT_MARC].fd,
            .verify = r->derived.verify,
            .spill_dir = r->staging.dirfd >= 0 ? r->staging.path : r->derived.spill_dir,
            .ring_bytes = RING_BYTES,
            .ready = on_ready,
            .arg = d,
            .wrote = on_wrote,
            .sync = true,
        };
        int err = contents_new(&d->c, &cfg);
        if (err) {
                d->c = NULL;
                derived_drop(d);
        }
        return err;
}

/* ---- after the verdict ------------------------------------------------------------------------
 */

const char *derived_detail(const struct derived *d)
{
        return d->detail;
}

bool derived_io_failed(const struct derived *d)
{
        return d->io_failed;
}

bool derived_readable(const struct derived *d)
{
        return d->done && contents_result(d->c)->archive == CONTENTS_OK;
}

bool derived_checksums_ok(const struct derived *d)
{
        return derived_readable(d) && contents_result(d->c)->check == CHECK_OK;
}

void derived_count(struct derived *d)
{
        if (!d->done || d->counted)
                return;
        d->counted = true;
        struct stats *s = &d->r->stats;
        if (!derived_readable(d))
                atomic_fetch_add(&s->contents_unreadable, 1);
        else if (d->r->derived.verify && !derived_checksums_ok(d))
                atomic_fetch_add(&s->checksum_problems, 1);
        else
                atomic_fetch_add(&s->contents_read, 1);
}

static void on_delivered(struct delivery *del, int rc, bool transient, const char *detail)
{
        struct output *o = container_of(del, struct output, del);
        struct derived *d = o->d;
        o->delivering = false;
        if (rc == 0) {
                o->delivered = true;
        } else if (!d->fail_rc) {
                d->fail_rc = rc;
                d->fail_transient = transient;
                snprintf(d->fail_detail, sizeof d->fail_detail, "%s", detail ? detail : "failed");
        }
        report_delivered(d);
}

static void add_meta(struct output *o, const char *name, const char *value)
{
        assert(o->del.nmeta < sizeof o->meta / sizeof o->meta[0]);
        o->meta[o->del.nmeta++] = (struct delivery_meta){name, value};
}

bool derived_deliver(struct derived *d, const char *acquired)
{
        assert(d->done);
        unsigned started = 0;
        for (unsigned i = 0; i < NOUT; i++) {
                struct output *o = &d->out[i];
                if (!o->made || o->delivered)
                        continue;
                o->del = (struct delivery){
                    .barcode = d->barcode,
                    .name = o->name,
                    .content_type = o->content_type,
                    .fd = o->fd,
                    .staging_path = NULL,
                    .size = o->dg.len,
                    .part_sha256 = (const uint8_t(*)[32])o->dg.parts,
                    .nparts = o->dg.nparts,
                    .meta = o->meta,
                    .done = on_delivered,
                };
                memcpy(o->del.sha256, o->dg.sha256, sizeof o->del.sha256);
                add_meta(o, "barcode", d->barcode);
                add_meta(o, "acquisition_date", acquired);
                if (i == OUT_OCR)
                        add_meta(o, "page_count", d->page_count);
                o->delivering = true;
                started++;
        }
        d->fail_rc = 0;
        /* Started only once all are marked: a sink's done() comes from the loop, but the
         * last one must find the others already counted. */
        for (unsigned i = 0; i < NOUT; i++)
                if (d->out[i].delivering)
                        d->out[i].sink->ops->deliver(d->out[i].slot, &d->out[i].del);
        return started > 0;
}

static void on_looked_up(struct lookup *lk, int rc, const char *detail)
{
        struct output *o = container_of(lk, struct output, lk);
        o->looking = false;
        if (rc < 0)
                lk->found = false; /* a failed lookup only costs reading the book again */
        report_lookup(o->d);
}

void derived_lookup(struct derived *d, const char *barcode)
{
        bool asked = false;
        for (unsigned i = 0; i < NOUT; i++) {
                struct output *o = &d->out[i];
                if (!o->sink)
                        continue;
                snprintf(o->name, sizeof o->name, "%s%s", barcode, o->suffix);
                o->lk = (struct lookup){.barcode = barcode, .name = o->name, .done = on_looked_up};
                o->looking = o->sink->ops->lookup != NULL;
                asked |= o->looking;
        }
        for (unsigned i = 0; i < NOUT; i++)
                if (d->out[i].looking)
                        d->out[i].sink->ops->lookup(d->out[i].slot, &d->out[i].lk);
        if (!asked) {
                d->report_lookup = true;
                loop_async_send(&d->wake);
        }
}

void derived_abort(struct derived *d)
{
        for (unsigned i = 0; i < NOUT; i++) {
                struct output *o = &d->out[i];
                if (o->delivering || o->looking)
                        o->sink->ops->abort(o->slot);
                o->delivering = o->looking = false;
        }
        d->report_lookup = false;
        derived_drop(d);
}

/* ---- the slot ---------------------------------------------------------------------------------
 */

int derived_new(struct derived **out, struct worker *w, const struct derived_events *ev,
                void *owner)
{
        struct derived *d = calloc(1, sizeof *d);
        if (!d)
                return -ENOMEM;
        *out = d;
        struct run *r = w->run;
        d->r = r;
        d->w = w;
        d->ev = ev;
        d->owner = owner;
        loop_async_init(worker_loop(w), &d->wake, on_wake);
        struct sink *sinks[NOUT] = {r->derived.ocr, r->derived.marc};
        static const char *const suffix[NOUT] = {"_ocr.jsonl.gz", "_marc.json"};
        static const char *const type[NOUT] = {"application/gzip", "application/json"};
        static const char *const flag[NOUT] = {"ocr", "marc"};
        for (unsigned i = 0; i < NOUT; i++)
                d->out[i] = (struct output){.d = d,
                                            .sink = sinks[i],
                                            .suffix = suffix[i],
                                            .content_type = type[i],
                                            .flag = flag[i],
                                            .fd = -1};
        /* Touched only when a book outruns its reader. */
        d->over = malloc(OVER_CAP);
        if (!d->over)
                return -ENOMEM;
        for (unsigned i = 0; i < NOUT; i++) {
                struct output *o = &d->out[i];
                if (!o->sink)
                        continue;
                int err = digest_init(&o->dg, o->sink->part_size);
                if (!err)
                        err = o->sink->ops->slot_new(o->sink, w, &o->slot);
                if (err)
                        return err;
        }
        return 0;
}

void derived_free(struct derived *d)
{
        if (!d)
                return;
        derived_drop(d);
        for (unsigned i = 0; i < NOUT; i++) {
                struct output *o = &d->out[i];
                if (o->slot)
                        o->sink->ops->slot_free(o->slot);
                if (o->sink)
                        digest_destroy(&o->dg);
        }
        loop_async_close(&d->wake); /* after the reader's join: no send is left */
        free(d->over);
        free(d);
}
