/* What a run tells while it runs, private to the engine: outcome and retry counts, the
 * status lines (--progress plain), the live view on a terminal (--progress live), the
 * Prometheus textfile (--metrics-file) and the summary line. Workers count (thread-safe);
 * the main thread draws and writes, from progress_tick() in its poll loop.
 *
 *   run_new:      progress_open()      mode chosen, the metrics file written once
 *   run_execute:  progress_init()      the clock starts, the live view takes stderr
 *                 progress_tick()      each turn of the main loop: redraw, rewrite
 *                 progress_finish()    the metrics file's last state, the summary */
#ifndef QUIRE_ENGINE_PROGRESS_H
#define QUIRE_ENGINE_PROGRESS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quire/base/util.h"
#include "quire/engine/metrics.h"
#include "quire/engine/run.h"
#include "quire/engine/status.h"

struct run;
struct source_result;

/* How a book (or a line of the list) ended. The status line counts ok; skipped
 * (SKIPPED, DUPLICATE, DELIVERED_BEFORE); failed (FAILED, INVALID, CONVERSION_FAILED);
 * and GRIN's requested, in process and conversion failed when there are any. The
 * metrics count each on its own (progress.c names them: the journal's outcome where it
 * writes a line). A new outcome is one line here and one in progress.c's table. */
enum outcome {
        OUTCOME_OK,
        OUTCOME_FAILED,
        OUTCOME_SKIPPED,          /* the destination holds it with the source's ETag */
        OUTCOME_DUPLICATE,        /* listed again while its first copy was in flight or
                                     after it was delivered in this run */
        OUTCOME_INVALID,          /* not a barcode: no journal line */
        OUTCOME_DELIVERED_BEFORE, /* an earlier run's journal line says ok: no line */
        /* GRIN: the source lacks the book and its conversion was requested now, is in
         * process, or failed (a failure for the exit status; the first two are not). */
        OUTCOME_REQUESTED,
        OUTCOME_IN_PROCESS,
        OUTCOME_CONVERSION_FAILED,
        OUTCOME_COUNT
};

/* Retry causes the metrics file lists, counted or not; others are added as they come, up
 * to the bound, and then counted as "other". */
#define PROGRESS_CAUSES_MAX 24
#define PROGRESS_CAUSE_LEN  16

struct progress {
        pthread_mutex_t lock; /* everything down to view_lock */
        struct status_window window;
        int64_t total; /* books in the list, -1 when unknown */
        uint64_t done;
        uint64_t outcomes[OUTCOME_COUNT];
        struct progress_cause {
                char name[PROGRESS_CAUSE_LEN];
                uint64_t n;
        } causes[PROGRESS_CAUSES_MAX];
        unsigned ncauses;
        char last_failure[192]; /* "BARCODE: detail" */
        /* main thread only */
        enum run_progress mode; /* PLAIN, LIVE or NONE once opened */
        bool color;
        double start_unix_s;
        uint64_t next_draw_ns, next_metrics_ns;
        bool metrics_draining; /* what the file last said */
        int metrics_err;       /* the last write's error, so a failing disk is told once */
        char metrics_text[METRICS_TEXT_MAX];
        /* The live view, under view_lock: taken last, by the main thread drawing and by
         * any thread's qlog line, which is printed above the view. */
        struct qlog_sink sink;
        pthread_mutex_t view_lock;
        char view[STATUS_LIVE_MAX];
        unsigned view_lines; /* lines of the view on the screen now; 0: none drawn */
};

/* From run_new: chooses the mode (auto: live on a terminal) and writes the metrics file a
 * first time, so a path that cannot be written is a configuration error. 0, or -errno
 * with one line in msg. */
int progress_open(struct run *r, char *msg, size_t msglen);
/* From run_execute before the workers start: the run's clock and rates start now. */
void progress_init(struct run *r, int64_t total);
/* Counts a finished book (bytes: plaintext delivered) and, in plain mode, prints the
 * status line when it completes a multiple of --status-every. Any thread. */
void progress_count(struct run *r, enum outcome o, uint64_t bytes);
/* The live view's "last failure". Any thread. */
void progress_failure(struct run *r, const char *barcode, const char *detail);
/* A transient failure is being retried; cause is a short label ("5xx", "stall", ...).
 * Any thread. */
void progress_retry(struct run *r, const char *cause);
/* The retry label of a source's transient failure: its own cause, else by HTTP status. */
const char *progress_source_cause(const struct source_result *res);
/* Main thread, each turn of its loop: redraws the live view, rewrites the metrics file
 * when due. Returns how many ms it may sleep before the next is due (at most 1000). */
int progress_tick(struct run *r);
/* Main thread, after the workers and the key pool have stopped: the metrics file's last
 * state, the live view taken down, the summary line. */
void progress_finish(struct run *r);

#endif
