/* quire run --dry-run: opens and checks what a run would (the passphrase, GRIN's lists,
 * the source's credentials, the destination, the journal) and counts the books a run
 * would fetch, skip and request, writing nothing. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "cmd_run.h"
#include "quire/base/util.h"
#include "quire/engine/feeder.h"
#include "quire/engine/journal.h"
#include "quire/io/auth.h"
#include "quire/io/grin_set.h"

struct dry_counts {
        struct journal *journal;
        struct grin_catalog *catalog;
        struct grin_set *seen; /* the list's barcodes, for its repeats */
        uint64_t listed, fetch, skip, repeats, invalid, failed, in_process;
};

static void dry_count(struct dry_counts *d, const char *barcode)
{
        d->listed++;
        if (grin_set_add(d->seen, barcode, strlen(barcode)) == 0)
                d->repeats++;
        else if (journal_delivered(d->journal, barcode))
                d->skip++;
        else if (d->catalog && grin_catalog_known(d->catalog, barcode) == GRIN_KNOWN_FAILED)
                d->failed++;
        else if (d->catalog && grin_catalog_known(d->catalog, barcode) == GRIN_KNOWN_IN_PROCESS)
                d->in_process++;
        else
                d->fetch++;
}

static int dry_row(void *ud, const struct grin_row *row)
{
        if (run_interrupted())
                return -EINTR;
        dry_count(ud, row->barcode);
        return 0;
}

static int dry_columns(void *ud, unsigned n, const char *const *names)
{
        return 0;
}

/* The barcodes list, read to its end (a FIFO or a pipe waits for its writer). */
static int dry_list(struct dry_counts *d, const char *path, char *msg, size_t msglen)
{
        struct feeder *f;
        int err = feeder_open(&f, path);
        if (err) {
                snprintf(msg, msglen, "%s: %s", path, strerror(-err));
                return err;
        }
        char bc[BARCODE_MAX + 1];
        uint64_t line;
        const char *why;
        enum feeder_result fr;
        while (!err && (fr = feeder_next(f, bc, &line, &why)) != FEED_EOF) {
                if (fr == FEED_BARCODE) {
                        dry_count(d, bc);
                } else if (fr == FEED_INVALID) {
                        d->invalid++;
                } else if (run_interrupted()) {
                        err = -EINTR;
                } else {
                        struct pollfd pfd = {.fd = feeder_fd(f), .events = POLLIN};
                        err = feeder_regular(f) || poll(&pfd, 1, 200) > 0 ? feeder_fill(f) : 0;
                        if (err == -EAGAIN)
                                err = 0;
                        else if (err)
                                snprintf(msg, msglen, "%s: read: %s", path, strerror(-err));
                }
        }
        feeder_close(f);
        return err;
}

/* Everything a run would check, and the counts of what it would do; nothing written. */
int cmd_run_dry_run(struct run_opts *o)
{
        char msg[1024] = "";
        struct dry_counts d = {.seen = grin_set_new(UINT32_MAX)};
        struct source *src = NULL;
        struct sink *sink = NULL;
        struct auth *auth = NULL;
        int err = d.seen ? 0 : -ENOMEM;
        if (!err && o->grin.site.library) {
                o->grin.site.ca_file = o->source.ca_file;
                if ((o->source.header_file || o->source.oauth_file) &&
                    auth_open(&auth, o->source.header_file, o->source.oauth_file, o->source.ca_file,
                              msg, sizeof msg) < 0)
                        err = -EACCES;
                o->grin.site.auth = auth;
                o->source.auth = auth;
                if (!err && !o->source.tmpl)
                        err = grin_url(&o->grin.site, "{file}", o->grin.tmpl);
                if (!o->source.tmpl)
                        o->source.tmpl = o->grin.tmpl;
                if (!err)
                        err =
                            grin_catalog_open(&d.catalog, &o->grin.site, 1, true, msg, sizeof msg);
        }
        if (!err)
                err = source_open(&src, &o->source, msg, sizeof msg);
        o->sink.check_only = true;
        if (!err && o->sink.dest)
                err = sink_open(&sink, &o->sink, msg, sizeof msg);
        if (!err)
                err =
                    derived_sinks_open(&o->derived, &o->sink, sink, o->sink.dest, msg, sizeof msg);
        if (!err && (err = journal_open_readonly(&d.journal, o->run.journal_path)) < 0)
                snprintf(msg, sizeof msg, "--journal %s: %s", o->run.journal_path, strerror(-err));
        if (!err && o->grin.queue == RUN_GRIN_QUEUE_UNCONVERTED) {
                struct grin_sink gs = {dry_columns, dry_row, &d};
                err = grin_unconverted_fetch(&o->grin.site, &gs, msg, sizeof msg);
        } else if (!err && o->grin.queue == RUN_GRIN_QUEUE_CONVERTED) {
                struct grin_sink gs = {dry_columns, dry_row, &d};
                err = grin_list_fetch(&o->grin.site, GRIN_LIST_CONVERTED, &gs, msg, sizeof msg);
        } else if (!err) {
                err = dry_list(&d, o->run.barcodes_path, msg, sizeof msg);
        }
        if (err && err != -EINTR)
                qlog("%s", msg[0] ? msg : strerror(-err));
        if (!err && o->grin.queue == RUN_GRIN_QUEUE_UNCONVERTED)
                qlog("dry run: %llu books GRIN has not converted: a run would request %llu "
                     "conversions (%llu journaled already)",
                     (unsigned long long)d.listed, (unsigned long long)d.fetch,
                     (unsigned long long)d.skip);
        else if (!err)
                qlog("dry run: %llu books listed: %llu would be fetched, %llu skipped (delivered, "
                     "per the journal), %llu repeated, %llu invalid lines",
                     (unsigned long long)d.listed, (unsigned long long)d.fetch,
                     (unsigned long long)d.skip, (unsigned long long)d.repeats,
                     (unsigned long long)d.invalid);
        if (!err)
                qlog("dry run: the passphrase, the source's credentials and the destination check "
                     "out; nothing was changed");
        if (!err && d.catalog)
                qlog("dry run: GRIN: %llu of them failed to convert, %llu in process (not "
                     "fetched); the rest not converted yet would get a conversion request",
                     (unsigned long long)d.failed, (unsigned long long)d.in_process);
        if (d.journal)
                journal_close(d.journal);
        grin_catalog_close(d.catalog);
        grin_set_free(d.seen);
        derived_sinks_close(&o->derived);
        if (sink)
                sink->ops->close(sink);
        if (src)
                src->ops->close(src);
        auth_close(auth);
        return err == -EINTR ? RUN_EXIT_SIGNAL : err ? RUN_EXIT_USAGE : RUN_EXIT_OK;
}
