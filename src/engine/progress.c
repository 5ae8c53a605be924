/* Outcome accounting and status lines. Every finished book passes through
 * progress_count(), under one lock, so the line after the Nth book shows exactly N done
 * and the cadence holds however books finish in bursts across threads. */
#include "run_int.h"

#include <stdio.h>
#include <string.h>

#include "quire/engine/mpmc.h"
#include "quire/base/util.h"

void progress_init(struct run *r, int64_t total)
{
        pthread_mutex_init(&r->progress_lock, NULL);
        status_window_init(&r->window, 60.0);
        r->total = total;
}

/* Call with progress_lock held. */
static void print_locked(struct run *r, const char *event)
{
        struct status_snap snap;
        stats_snap(&r->stats, &snap);
        snap.download_limit = (int)r->cfg.downloads;
        snap.upload_limit = (int)r->cfg.uploads;
        snap.queued = r->queue ? mpmc_size(r->queue) : 0;
        snap.total = r->cfg.listed ? (int64_t)atomic_load(r->cfg.listed) : r->total;
        snap.elapsed_s = (double)(now_ns() - r->start_ns) / 1e9;
        status_window_update(&r->window, &snap);
        char line[1024];
        bool summary = !strcmp(event, "summary");
        if (r->cfg.status_json)
                status_format_json(line, sizeof line, event, &snap);
        else
                status_format_text(line, sizeof line, &snap);
        fprintf(stderr, "%s%s\n", summary && !r->cfg.status_json ? "summary: " : "", line);
}

void progress_print(struct run *r, const char *event)
{
        pthread_mutex_lock(&r->progress_lock);
        print_locked(r, event);
        pthread_mutex_unlock(&r->progress_lock);
}

void progress_count(struct run *r, enum outcome o, uint64_t bytes)
{
        pthread_mutex_lock(&r->progress_lock);
        if (o == OUTCOME_OK) {
                atomic_fetch_add(&r->stats.ok, 1);
                atomic_fetch_add(&r->stats.bytes_out, bytes);
        } else if (o == OUTCOME_FAILED) {
                atomic_fetch_add(&r->stats.failed, 1);
        } else if (o == OUTCOME_REQUESTED) {
                atomic_fetch_add(&r->stats.requested, 1);
        } else if (o == OUTCOME_IN_PROCESS) {
                atomic_fetch_add(&r->stats.in_process, 1);
        } else if (o == OUTCOME_CONVERSION_FAILED) {
                atomic_fetch_add(&r->stats.conversion_failed, 1);
                atomic_fetch_add(&r->stats.failed, 1);
        } else {
                atomic_fetch_add(&r->stats.skipped, 1);
        }
        uint64_t done = ++r->done;
        if (r->cfg.status_every && done % r->cfg.status_every == 0)
                print_locked(r, "status");
        pthread_mutex_unlock(&r->progress_lock);
}
