/* quire run's GRIN side (run_grin.c): the source's URL, the catalog answering 404s, the
 * producer feeding --queue converted, and --queue unconverted's requests. */
#ifndef QUIRE_CLI_RUN_GRIN_H
#define QUIRE_CLI_RUN_GRIN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "quire/engine/run.h"
#include "quire/io/grin.h"
#include "quire/io/grin_catalog.h"
#include "quire/io/sources.h"

enum run_grin_queue { RUN_GRIN_QUEUE_LIST, RUN_GRIN_QUEUE_CONVERTED, RUN_GRIN_QUEUE_UNCONVERTED };

struct run_grin {
        struct grin_site site; /* url and library set by the options */
        enum run_grin_queue queue;
        unsigned request_batch;
        struct auth *auth;
        struct grin_catalog *catalog;
        char tmpl[GRIN_URL_MAX];
        /* --queue converted */
        int pipe_w;
        pthread_t producer;
        bool producing;
        atomic_int_fast64_t listed; /* rows of _converted so far: the run's growing total */
        atomic_bool list_failed;
};

/* Before run_new(): credentials, the source's template (GRIN_URL/LIBRARY/{file}) unless
 * --source gave one, the catalog (reads _failed and _in_process), and for --queue
 * converted the pipe the run reads its list from. 0, or -errno with a message. */
int run_grin_open(struct run_grin *g, struct source_config *src, struct run_config *run, char *msg,
                  size_t msglen);
/* After run_new(): starts the producer of --queue converted. 0 or -errno. */
int run_grin_start(struct run_grin *g);
/* After run_free() (which closed the pipe's reading end). */
void run_grin_close(struct run_grin *g);
/* --queue unconverted: no download; the conversion of every book GRIN has not converted,
 * in process or failed is requested, one journal line a book. Returns the exit status. */
int run_grin_request_unconverted(struct run_grin *g, const struct source_config *src,
                                 const char *journal_path, bool dry_run);

#endif
