/* A run of the streaming engine, as the program (cli) drives it:
 *
 *   run_signals_block();           first, before any thread exists
 *   run_new(&r, &cfg, msg)         staging and journal locked, the list opened
 *   ... open the source and the sink (io), which may now sweep what a killed run left ...
 *   status = run_execute(r, source, sink);
 *   run_free(r);
 *
 * main thread ── feeder ──▶ mpmc queue ──▶ worker threads (one per CPU, each its own
 * event loop and curl multi) ──▶ book slots: [lookup] ─▶ download + decrypt inline ─▶
 * stage ─▶ verify ─▶ deliver ─▶ journal. */
#ifndef QUIRE_ENGINE_RUN_H
#define QUIRE_ENGINE_RUN_H

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quire/engine/loop.h"

#define RUN_EXIT_OK     0
#define RUN_EXIT_FAILED 1   /* some books failed */
#define RUN_EXIT_USAGE  2   /* usage or configuration */
#define RUN_EXIT_SIGNAL 130 /* stopped by SIGINT, SIGTERM or SIGHUP */

struct source;
struct sink;
struct run;

/* What the run shows on stderr while it runs (the summary line at the end always). */
enum run_progress {
        PROGRESS_AUTO,  /* live when stderr is a terminal (not TERM=dumb) and the status
                           format is text; else plain */
        PROGRESS_PLAIN, /* a status line every status_every books */
        PROGRESS_LIVE,  /* a few lines redrawn in place; plain when stderr is no terminal */
        PROGRESS_NONE,
};

struct run_config {
        const char *barcodes_path; /* a file, a FIFO, or "-" (stdin) */
        int barcodes_fd;           /* >= 0: read the list from this fd instead (taken) */
        bool list_has_files;       /* lines may be BARCODE<TAB>FILE (feeder_accept_files) */
        /* A list that grows while the run reads it (GRIN's pages): the books listed so
         * far, for the status line's total; NULL: counted from a regular file, or unknown. */
        const atomic_int_fast64_t *listed;
        const char *staging; /* a directory only this user may use (created 0700) */
        const char *journal_path;
        const char *passphrase; /* borrowed: outlives the run; never logged */
        size_t passlen;
        unsigned queue_size, workers, downloads, uploads, threads;
        int cpus[CPU_SETSIZE]; /* pin worker i to cpus[i % ncpus]; ncpus 0: not pinned */
        unsigned ncpus;
        unsigned status_every;
        bool status_json;
        enum run_progress progress;
        const char *metrics_path;    /* Prometheus textfile, rewritten atomically; NULL: none */
        unsigned metrics_interval_s; /* how often it is rewritten (and at the end) */
        enum loop_kind io;
        unsigned retries;
        unsigned max_consecutive_failures;
        uint64_t staging_max;   /* bytes staged by all books; 0: no bound */
        uint64_t max_book_size; /* one book's plaintext; 0: no bound */
        unsigned batch;         /* benchmark only: the old design's batches; 0: streaming */
        bool force;             /* fetch even when the destination holds the same ETag */
};

/* The defaults of every field (quire run --help lists them). */
void run_config_defaults(struct run_config *cfg);

/* Blocks SIGINT, SIGTERM and SIGHUP in the calling thread, so every thread started after
 * inherits the mask and the run reads them from a signalfd. Call first. */
void run_signals_block(void);
/* True when SIGINT, SIGTERM or SIGHUP is pending: for synchronous work before the run
 * starts (the sink's checks at open), so that Ctrl-C is answered at once. */
bool run_interrupted(void);

/* Locks and sweeps the staging directory, opens (and locks) the journal, opens the
 * barcode list: nothing is touched before the locks are held. 0, or -errno with a
 * one-line message in msg. */
int run_new(struct run **out, const struct run_config *cfg, char *msg, size_t msglen);
/* Runs until every book is done or the run is stopped; returns the exit status. The
 * source and sink are borrowed: the caller closes them after run_free(). */
int run_execute(struct run *r, struct source *src, struct sink *sink);
void run_free(struct run *r);

#endif
