/* quire run --grin: the source is GRIN_URL/LIBRARY/FILE; a 404 asks GRIN's catalog
 * (failed, in process, or request the conversion now); --queue converted feeds the run
 * from _converted as its pages arrive, through a pipe a producer thread writes, so
 * memory stays bounded by the pipe; --queue unconverted requests the conversion of every
 * book GRIN has not converted, in process or failed. */
#include "run_grin.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quire/base/util.h"
#include "quire/engine/journal.h"
#include "quire/io/auth.h"
#include "quire/io/grin_request.h"

/* ---- the producer of --queue converted ----------------------------------------------- */

static int no_columns(void *ud, unsigned n, const char *const *names)
{
        return 0;
}

static int write_row(void *ud, const struct grin_row *row)
{
        struct run_grin *g = ud;
        char line[256];
        int n = row->filename ? snprintf(line, sizeof line, "%s\t%s\n", row->barcode, row->filename)
                              : snprintf(line, sizeof line, "%s\n", row->barcode);
        if (n < 0 || (size_t)n >= sizeof line)
                return 0; /* cannot be: both are bounded by the list's checks */
        /* A full pipe waits here: the run reads at its own pace. */
        int err = util_write_all(g->pipe_w, line, (size_t)n);
        if (err)
                return err;
        atomic_fetch_add(&g->listed, 1);
        return 0;
}

static void *producer_main(void *arg)
{
        struct run_grin *g = arg;
        struct grin_sink sink = {no_columns, write_row, g};
        char msg[512];
        int err = grin_list_fetch(&g->site, GRIN_LIST_CONVERTED, &sink, msg, sizeof msg);
        if (err && err != -EPIPE) { /* -EPIPE: the run stopped reading (a signal) */
                qlog("--queue converted: %s", msg[0] ? msg : strerror(-err));
                atomic_store(&g->list_failed, true);
        }
        close(g->pipe_w); /* the end of the list */
        g->pipe_w = -1;
        return NULL;
}

/* ---- open and close ------------------------------------------------------------------ */

static int credentials(struct run_grin *g, const struct source_config *src, char *msg,
                       size_t msglen)
{
        if (!src->header_file && !src->oauth_file)
                return 0;
        if (auth_open(&g->auth, src->header_file, src->oauth_file, src->ca_file, msg, msglen) < 0)
                return -EACCES;
        g->site.auth = g->auth;
        return 0;
}

int run_grin_open(struct run_grin *g, struct source_config *src, struct run_config *run, char *msg,
                  size_t msglen)
{
        g->pipe_w = -1;
        g->site.ca_file = src->ca_file;
        int err = credentials(g, src, msg, msglen);
        if (err)
                return err;
        if (!src->tmpl) {
                err = grin_url(&g->site, "{file}", g->tmpl);
                if (err) {
                        snprintf(msg, msglen, "--grin-url: longer than %d bytes", GRIN_URL_MAX);
                        return err;
                }
                src->tmpl = g->tmpl;
        }
        src->auth = g->auth;
        if (g->queue == RUN_GRIN_QUEUE_CONVERTED) {
                int p[2];
                if (pipe2(p, O_CLOEXEC) < 0) {
                        snprintf(msg, msglen, "pipe: %s", strerror(errno));
                        return -errno;
                }
                run->barcodes_fd = p[0];
                run->list_has_files = true;
                run->listed = &g->listed;
                g->pipe_w = p[1];
        }
        /* What GRIN says of the books it will not serve, before the first 404. */
        err = grin_catalog_open(&g->catalog, &g->site, g->request_batch, false, msg, msglen);
        if (err)
                return err;
        src->missing = grin_catalog_missing;
        src->missing_ctx = g->catalog;
        return 0;
}

int run_grin_start(struct run_grin *g)
{
        if (g->pipe_w < 0)
                return 0;
        int err = pthread_create(&g->producer, NULL, producer_main, g);
        if (err)
                return -err;
        g->producing = true;
        return 0;
}

void run_grin_close(struct run_grin *g)
{
        if (g->producing)
                pthread_join(g->producer, NULL); /* the run closed the pipe's other end */
        if (g->pipe_w >= 0)
                close(g->pipe_w);
        grin_catalog_close(g->catalog);
        auth_close(g->auth);
}

/* ---- --queue unconverted ------------------------------------------------------------- */

struct requesting {
        struct journal *journal;
        struct grin_req *req;
        atomic_uint_fast64_t by[GRIN_REQUEST_FAILED + 1];
        uint64_t listed;
        bool dry_run;
};

static const char *const request_outcome_word[] = {
    [GRIN_REQUESTED] = "requested",           [GRIN_ALREADY_CONVERTED] = "skipped",
    [GRIN_ALREADY_IN_PROCESS] = "in-process", [GRIN_REFUSED] = "conversion-failed",
    [GRIN_NOT_SENT] = "not-requested",        [GRIN_REQUEST_FAILED] = "failed",
};

/* The requester's thread: one journal line per barcode. */
static void on_request_outcome(void *ud, const char *barcode, enum grin_outcome o,
                               const char *detail)
{
        struct requesting *q = ud;
        atomic_fetch_add(&q->by[o], 1);
        char why[300];
        snprintf(why, sizeof why, "GRIN: %s%s%s", grin_outcome_name(o), detail[0] ? ": " : "",
                 detail);
        struct journal_rec rec = {
            .barcode = barcode, .outcome = request_outcome_word[o], .detail = why};
        int err = journal_append(q->journal, &rec);
        if (err < 0)
                qlog("%s: the journal: %s", barcode, strerror(-err));
}

static int submit_row(void *ud, const struct grin_row *row)
{
        struct requesting *q = ud;
        if (run_interrupted()) /* the signals are blocked for the run: look for them */
                return -EINTR;
        q->listed++;
        if (q->dry_run || journal_delivered(q->journal, row->barcode))
                return 0;
        return grin_req_submit(q->req, row->barcode, true);
}

static int unconverted_open(struct run_grin *g, struct requesting *q, const char *journal_path,
                            char *msg, size_t msglen)
{
        int err = journal_open(&q->journal, journal_path);
        if (err) {
                snprintf(msg, msglen, "--journal %s: %s", journal_path,
                         err == -EWOULDBLOCK ? "another quire is using it" : strerror(-err));
                return err;
        }
        struct grin_req_config rc = {.batch = g->request_batch, .fn = on_request_outcome, .ud = q};
        return q->dry_run ? 0 : grin_req_open(&q->req, &g->site, &rc, msg, msglen);
}

static void unconverted_summary(struct requesting *q)
{
        if (q->dry_run) {
                qlog("dry run: %llu books not converted, in process or failed: a run would "
                     "request their conversion",
                     (unsigned long long)q->listed);
                return;
        }
        qlog("summary: %llu unconverted books: requested %llu, already converted %llu, "
             "in process %llu, refused %llu, not requested %llu, failed %llu",
             (unsigned long long)q->listed, (unsigned long long)atomic_load(&q->by[GRIN_REQUESTED]),
             (unsigned long long)atomic_load(&q->by[GRIN_ALREADY_CONVERTED]),
             (unsigned long long)atomic_load(&q->by[GRIN_ALREADY_IN_PROCESS]),
             (unsigned long long)atomic_load(&q->by[GRIN_REFUSED]),
             (unsigned long long)atomic_load(&q->by[GRIN_NOT_SENT]),
             (unsigned long long)atomic_load(&q->by[GRIN_REQUEST_FAILED]));
}

int run_grin_request_unconverted(struct run_grin *g, const struct source_config *src,
                                 const char *journal_path, bool dry_run)
{
        char msg[1024] = "";
        struct requesting q = {.dry_run = dry_run};
        g->site.ca_file = src->ca_file;
        int err = credentials(g, src, msg, sizeof msg);
        if (!err)
                err = unconverted_open(g, &q, journal_path, msg, sizeof msg);
        if (!err) {
                struct grin_sink sink = {no_columns, submit_row, &q};
                err = grin_unconverted_fetch(&g->site, &sink, msg, sizeof msg);
        }
        if (q.req)
                grin_req_close(q.req); /* every outcome journaled */
        if (err == -EINTR)
                qlog("interrupted: no more conversion requests");
        else if (err)
                qlog("--queue unconverted: %s", msg[0] ? msg : strerror(-err));
        unconverted_summary(&q);
        if (q.journal)
                journal_close(q.journal);
        auth_close(g->auth);
        g->auth = NULL;
        if (err)
                return err == -EINTR ? RUN_EXIT_SIGNAL : RUN_EXIT_USAGE;
        bool failed = atomic_load(&q.by[GRIN_REQUEST_FAILED]) || atomic_load(&q.by[GRIN_REFUSED]);
        return failed ? RUN_EXIT_FAILED : RUN_EXIT_OK;
}
