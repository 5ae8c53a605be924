/* The run's shared state, private to the engine: what the main thread, the workers and
 * the book slots share. Everything a worker touches here is atomic, locked, or fixed
 * before the workers start. */
#ifndef QUIRE_ENGINE_RUN_INT_H
#define QUIRE_ENGINE_RUN_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "progress.h"
#include "quire/engine/derived.h"
#include "quire/engine/feeder.h"
#include "quire/engine/run.h"
#include "quire/engine/status.h"
#include "staging.h"

struct mpmc;
struct journal;
struct keypool;
struct worker;

/* What the queue carries: a validated barcode and the line it came from. */
struct queue_item {
        uint64_t line;
        char barcode[BARCODE_MAX + 1];
        char file[FEEDER_FILE_MAX + 1]; /* the name at the source; "": from the template */
        bool recheck; /* an earlier run delivered it: look at its derived outputs first */
};

/* A global limit shared by all workers (downloads in flight, uploads in flight). */
struct slots {
        atomic_int free;
};

/* Barcodes queued or in flight, so a repeat in the list is never run beside its first
 * copy. Bounded by the queue and the book slots; open addressing, under a lock taken once
 * per book. */
struct inflight {
        pthread_mutex_t lock;
        struct inflight_entry {
                char barcode[BARCODE_MAX + 1];
                uint64_t line;
                bool used;
        } * slots;
        unsigned cap;
};

struct run {
        struct run_config cfg;
        struct source *source;
        struct sink *sink; /* NULL with derived.plaintext_source: no raw delivery */
        struct derived_config derived;
        bool derived_on; /* derived_attach() was called */
        struct keypool *keypool;
        struct staging staging;
        struct mpmc *queue;
        struct journal *journal;
        struct feeder *feeder;
        struct inflight inflight;
        struct stats stats;
        struct slots downloads, uploads;
        atomic_bool intake_closed; /* no more barcodes will be queued */
        atomic_bool aborting;      /* second signal: drop everything in flight */
        atomic_uint consecutive_failures;
        atomic_bool failure_stop; /* too many run-level failures in a row */
        atomic_bool head_refused; /* the source refuses HEAD: books are fetched instead */
        char failure_reason[256];
        int main_wake_fd; /* eventfd: a book ended, a worker left, room in the queue */
        struct worker *workers;
        unsigned nworkers;
        atomic_uint workers_left;
        uint64_t start_ns;
        uint64_t abort_deadline_ns; /* after a second signal, cleanups end by then */
        bool draining;              /* main thread: a first signal asked to finish and stop */
        struct progress progress;   /* progress.c */
};

/* Wakes the main thread (an eventfd write; the fd outlives every worker). */
void run_wake_main(struct run *r);
/* Wakes the workers with books waiting for a download slot or staging room. */
void run_wake_download_waiters(struct run *r);
bool run_slots_try_acquire(struct slots *s);
/* Releases one slot and wakes the workers that wait for one. */
void run_slots_release(struct run *r, struct slots *s);
/* The set sized for entries barcodes at once: 0 or -ENOMEM. */
int run_inflight_init(struct inflight *in, unsigned entries);
void run_inflight_free(struct inflight *in);
/* Adds barcode unless it is queued or in flight already: then false, with the line of
 * that copy in *first_line. */
bool run_inflight_add(struct inflight *in, const char *barcode, uint64_t line,
                      uint64_t *first_line);
/* The book of this barcode has ended: a later copy in the list may run. */
void run_inflight_remove(struct inflight *in, const char *barcode);
/* Counts failures that point at the whole run (wrong passphrase, credentials, the
 * destination); after max in a row the run stops taking books. */
void run_note_outcome(struct run *r, bool ok, bool run_level, const char *detail);

#endif
