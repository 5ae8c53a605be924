/* A run, on the main thread: sets up what the workers share, feeds barcodes from the
 * list into the queue as a stream, reads signals from a signalfd, syncs the journal, and
 * drains (first signal) or aborts (second). Every input of the main thread goes through
 * one poll(): the list, the signals, the workers' wake-ups; nothing here ever blocks on
 * one of them. */
#include "quire/engine/run.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "keypool.h"
#include "quire/base/util.h"
#include "quire/engine/journal.h"
#include "quire/engine/mpmc.h"
#include "quire/engine/sink.h"
#include "quire/engine/source.h"
#include "run_int.h"
#include "worker_int.h"

/* After a second signal, cleanups that need the network (aborting multipart uploads)
 * get this long before the workers leave anyway; the next run's start-up sweep finishes
 * them. */
#define ABORT_GRACE_NS (3 * 1000000000ull)

void run_config_defaults(struct run_config *cfg)
{
        *cfg = (struct run_config){
            .barcodes_path = "-",
            .barcodes_fd = -1,
            .journal_path = "quire.journal",
            .queue_size = 100,
            .workers = 20,
            .downloads = 5,
            .uploads = 10,
            .status_every = 20,
            .metrics_interval_s = 15,
            .io = LOOP_AUTO,
            .retries = 5,
            .max_consecutive_failures = 10,
        };
}

/* ---- signals ----------------------------------------------------------------------- */

static void stop_signals(sigset_t *set)
{
        sigemptyset(set);
        sigaddset(set, SIGINT);
        sigaddset(set, SIGTERM);
        sigaddset(set, SIGHUP); /* a closed ssh session: drain, do not die mid-book */
}

void run_signals_block(void)
{
        sigset_t set;
        stop_signals(&set);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        /* A shell starts background jobs with SIGINT ignored; blocked, it still queues. */
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGPIPE, SIG_IGN);
}

bool run_interrupted(void)
{
        sigset_t pending;
        if (sigpending(&pending) < 0)
                return false;
        return sigismember(&pending, SIGINT) || sigismember(&pending, SIGTERM) ||
               sigismember(&pending, SIGHUP);
}

/* ---- shared helpers ------------------------------------------------------------------ */

void run_wake_main(struct run *r)
{
        uint64_t one = 1;
        if (write(r->main_wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
                qlog("wake-up of the main thread: %s", strerror(errno));
}

bool run_slots_try_acquire(struct slots *s)
{
        int n = atomic_load(&s->free);
        while (n > 0)
                if (atomic_compare_exchange_weak(&s->free, &n, n - 1))
                        return true;
        return false;
}

static void wake_waiters(struct run *r, bool downloads)
{
        /* Pairs with the waiter's increment of waiting_* before its acquire attempt: either
         * the waiter sees the slot or we see the waiter. */
        for (unsigned i = 0; i < r->nworkers; i++) {
                struct worker *w = &r->workers[i];
                int waiting = downloads ? atomic_load(&w->waiting_dl) : atomic_load(&w->waiting_ul);
                if (waiting > 0)
                        worker_kick(w);
        }
}

void run_wake_download_waiters(struct run *r)
{
        wake_waiters(r, true);
}

void run_slots_release(struct run *r, struct slots *s)
{
        atomic_fetch_add(&s->free, 1);
        wake_waiters(r, s == &r->downloads);
}

void run_note_outcome(struct run *r, bool ok, bool run_level, const char *detail)
{
        if (ok) {
                atomic_store(&r->consecutive_failures, 0);
                return;
        }
        if (!run_level)
                return;
        unsigned n = atomic_fetch_add(&r->consecutive_failures, 1) + 1;
        if (r->cfg.max_consecutive_failures && n == r->cfg.max_consecutive_failures) {
                snprintf(r->failure_reason, sizeof r->failure_reason,
                         "%u books in a row failed for a reason that concerns the whole run "
                         "(last: %s)",
                         n, detail);
                atomic_store(&r->failure_stop, true);
                run_wake_main(r);
        }
}

/* ---- barcodes in flight -------------------------------------------------------------- */

int run_inflight_init(struct inflight *in, unsigned entries)
{
        unsigned cap = 16;
        while (cap < 2 * entries)
                cap *= 2;
        in->slots = calloc(cap, sizeof *in->slots);
        in->cap = cap;
        pthread_mutex_init(&in->lock, NULL);
        return in->slots ? 0 : -ENOMEM;
}

void run_inflight_free(struct inflight *in)
{
        if (!in->slots)
                return;
        free(in->slots);
        pthread_mutex_destroy(&in->lock);
}

static unsigned inflight_hash(const char *s)
{
        unsigned h = 2166136261u;
        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 16777619u;
        return h;
}

/* The slot holding barcode, or NULL with *free_slot at the empty slot that ends its probe
 * run (where it would go). Linear probing without tombstones (removal shifts back), so a
 * probe stops at the first empty slot: with cap >= 2x the entries, a few slots a book. */
static struct inflight_entry *inflight_find(struct inflight *in, const char *barcode,
                                            struct inflight_entry **free_slot)
{
        *free_slot = NULL;
        for (unsigned i = 0, h = inflight_hash(barcode); i < in->cap; i++) {
                struct inflight_entry *e = &in->slots[(h + i) & (in->cap - 1)];
                if (!e->used) {
                        *free_slot = e;
                        return NULL;
                }
                if (!strcmp(e->barcode, barcode))
                        return e;
        }
        return NULL;
}

/* Adds barcode unless it is queued or in flight already: then returns false with the
 * line of that copy. */
bool run_inflight_add(struct inflight *in, const char *barcode, uint64_t line, uint64_t *first_line)
{
        pthread_mutex_lock(&in->lock);
        struct inflight_entry *slot, *e = inflight_find(in, barcode, &slot);
        if (e) {
                *first_line = e->line;
        } else if (slot) { /* always: at most queue_size + workers entries, cap >= 2x */
                *slot = (struct inflight_entry){.used = true, .line = line};
                snprintf(slot->barcode, sizeof slot->barcode, "%s", barcode);
        }
        pthread_mutex_unlock(&in->lock);
        return e == NULL;
}

/* Empties slot at and moves later entries of the run back into the hole, each only to a
 * slot at or after its home, so every remaining entry stays reachable from its home. */
static void inflight_delete_at(struct inflight *in, unsigned hole)
{
        unsigned mask = in->cap - 1;
        for (unsigned j = (hole + 1) & mask; in->slots[j].used; j = (j + 1) & mask) {
                unsigned home = inflight_hash(in->slots[j].barcode) & mask;
                /* j's entry may fill the hole unless its home lies cyclically in (hole, j]. */
                bool home_after_hole = ((j - home) & mask) < ((j - hole) & mask);
                if (home_after_hole)
                        continue;
                in->slots[hole] = in->slots[j];
                hole = j;
        }
        in->slots[hole].used = false;
}

void run_inflight_remove(struct inflight *in, const char *barcode)
{
        pthread_mutex_lock(&in->lock);
        struct inflight_entry *slot, *e = inflight_find(in, barcode, &slot);
        if (e)
                inflight_delete_at(in, (unsigned)(e - in->slots));
        pthread_mutex_unlock(&in->lock);
}

/* ---- setup ------------------------------------------------------------------------- */

int run_new(struct run **out, const struct run_config *cfg, char *msg, size_t msglen)
{
        struct run *r = calloc(1, sizeof *r);
        if (!r) {
                snprintf(msg, msglen, "out of memory");
                return -ENOMEM;
        }
        *out = r;
        r->cfg = *cfg;
        r->main_wake_fd = -1;
        r->staging.dirfd = r->staging.lockfd = -1;
        /* The locks first: nothing of another run's may be touched before they are ours.
         * No staging directory: nothing is staged there (quire extract into directories). */
        int err = cfg->staging ? staging_open(&r->staging, cfg->staging, cfg->staging_max,
                                              cfg->max_book_size, msg, msglen)
                               : 0;
        if (err)
                return err;
        err = journal_open(&r->journal, cfg->journal_path);
        if (err) {
                snprintf(msg, msglen, "--journal %s: %s", cfg->journal_path,
                         err == -EWOULDBLOCK ? "another quire is using it (it is locked)"
                                             : strerror(-err));
                return err;
        }
        err = cfg->barcodes_fd >= 0 ? feeder_open_fd(&r->feeder, cfg->barcodes_fd)
                                    : feeder_open(&r->feeder, cfg->barcodes_path);
        if (!err && cfg->list_has_files)
                feeder_accept_files(r->feeder);
        if (err) {
                snprintf(msg, msglen, "%s: %s", cfg->barcodes_path, strerror(-err));
                return err;
        }
        r->queue = mpmc_new(cfg->queue_size, sizeof(struct queue_item));
        r->main_wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        err = !r->queue || r->main_wake_fd < 0 ? -ENOMEM : 0;
        if (!err)
                err = run_inflight_init(&r->inflight, cfg->queue_size + cfg->workers + 1);
        if (err) {
                snprintf(msg, msglen, "out of memory");
                return err;
        }
        return progress_open(r, msg, msglen);
}

void run_free(struct run *r)
{
        if (!r)
                return;
        workers_free(r);
        if (r->journal)
                journal_close(r->journal);
        feeder_close(r->feeder);
        mpmc_free(r->queue);
        run_inflight_free(&r->inflight);
        if (r->main_wake_fd >= 0)
                close(r->main_wake_fd);
        staging_close(&r->staging);
        free(r);
}

/* ---- the main loop ----------------------------------------------------------------- */

struct main_state {
        struct run *r;
        int sfd;
        int signals;
        uint64_t invalid, pushed, duplicates;
        bool list_readable; /* the last poll said so (or a regular file) */
        bool want_list;     /* feed() waits for the list to become readable */
        bool read_any;      /* a line was read (a later read error is then exit 1, not 2) */
        int list_error;
        struct queue_item pending;
        bool have_pending;
};

static void close_intake(struct run *r)
{
        if (atomic_exchange(&r->intake_closed, true))
                return;
        workers_kick_all(r);
}

/* A barcode repeated while its first copy is queued or in flight: never run beside it. */
static void note_duplicate(struct main_state *m, const struct queue_item *it, uint64_t first,
                           const char *state)
{
        char detail[128];
        snprintf(detail, sizeof detail, "listed again at line %llu; line %llu %s",
                 (unsigned long long)it->line, (unsigned long long)first, state);
        struct journal_rec rec = {.barcode = it->barcode, .outcome = "duplicate", .detail = detail};
        journal_append(m->r->journal, &rec);
        qlog("%s (line %llu): duplicate of line %llu, which %s; skipped", it->barcode,
             (unsigned long long)it->line, (unsigned long long)first, state);
        m->duplicates++;
        progress_count(m->r, OUTCOME_DUPLICATE, 0);
}

/* The next barcode worth queueing into m->pending; false when the list has none now. */
static bool next_barcode(struct main_state *m)
{
        struct run *r = m->r;
        struct queue_item *it = &m->pending;
        for (;;) {
                const char *why = NULL;
                enum feeder_result fr = feeder_next(r->feeder, it->barcode, &it->line, &why);
                if (fr == FEED_AGAIN) {
                        if (!m->list_readable && !feeder_regular(r->feeder)) {
                                m->want_list = true;
                                return false;
                        }
                        m->list_readable = false; /* one read per readiness: never block */
                        int err = feeder_fill(r->feeder);
                        if (err == -EAGAIN) {
                                m->want_list = true;
                                return false;
                        }
                        if (err < 0) {
                                qlog("%s: read: %s", r->cfg.barcodes_path, strerror(-err));
                                m->list_error = err;
                                close_intake(r);
                                return false;
                        }
                        continue;
                }
                if (fr == FEED_EOF) {
                        close_intake(r);
                        return false;
                }
                m->read_any = true;
                const char *file = feeder_file(r->feeder);
                snprintf(it->file, sizeof it->file, "%s", file ? file : "");
                if (fr == FEED_INVALID) {
                        qlog("%s:%llu: invalid barcode: %s", r->cfg.barcodes_path,
                             (unsigned long long)it->line, why);
                        m->invalid++;
                        char where[32];
                        snprintf(where, sizeof where, "line %llu", (unsigned long long)it->line);
                        progress_failure(r, where, why);
                        progress_count(r, OUTCOME_INVALID, 0);
                        continue;
                }
                uint64_t first;
                int at = journal_delivered_at(r->journal, it->barcode, &first);
                if (at == 2) {
                        note_duplicate(m, it, first, "was delivered"); /* earlier in this list */
                        continue;
                }
                if (at == 1 && !r->derived.recheck_delivered) {
                        /* an earlier run: counted, not journaled again */
                        progress_count(r, OUTCOME_DELIVERED_BEFORE, 0);
                        continue;
                }
                it->recheck = at == 1;
                if (!run_inflight_add(&r->inflight, it->barcode, it->line, &first)) {
                        note_duplicate(m, it, first, "is in flight");
                        continue;
                }
                return true;
        }
}

/* In --batch mode (the old design, for benchmarks) the whole batch must finish first. */
static bool batch_full(const struct main_state *m)
{
        const struct run *r = m->r;
        if (!r->cfg.batch || m->pushed == 0 || m->pushed % r->cfg.batch)
                return false;
        uint64_t finished = atomic_load(&r->stats.ok) + atomic_load(&r->stats.failed) +
                            atomic_load(&r->stats.skipped) + atomic_load(&r->stats.requested) +
                            atomic_load(&r->stats.in_process);
        return finished - m->invalid - m->duplicates < m->pushed;
}

/* Moves barcodes from the list into the queue until it is full or the list has nothing
 * ready. */
static void feed(struct main_state *m)
{
        struct run *r = m->r;
        bool pushed = false;
        m->want_list = false;
        while (!atomic_load(&r->intake_closed)) {
                if (atomic_load(&r->failure_stop) || atomic_load(&r->aborting)) {
                        close_intake(r);
                        break;
                }
                if (!m->have_pending && (batch_full(m) || !next_barcode(m)))
                        break;
                m->have_pending = true;
                /* The queue's capacity is a power of two: hold to --queue-size. */
                if (mpmc_size(r->queue) >= r->cfg.queue_size ||
                    !mpmc_try_push(r->queue, &m->pending))
                        break;
                m->have_pending = false;
                m->pushed++;
                pushed = true;
        }
        if (pushed)
                workers_kick_hungry(r);
}

static void on_signal(struct main_state *m)
{
        struct signalfd_siginfo si;
        if (read(m->sfd, &si, sizeof si) != sizeof si)
                return;
        struct run *r = m->r;
        if (++m->signals == 1) {
                const char *name = si.ssi_signo == SIGTERM  ? "SIGTERM"
                                   : si.ssi_signo == SIGHUP ? "SIGHUP"
                                                            : "interrupted";
                qlog("%s: finishing %u books in flight and %zu queued; taking no new ones. "
                     "Press Ctrl-C again to abort.",
                     name, workers_busy_books(r), mpmc_size(r->queue));
                r->draining = true;
                close_intake(r);
        } else if (m->signals == 2) {
                qlog("aborting: dropping the books in flight");
                r->abort_deadline_ns = util_now_ns() + ABORT_GRACE_NS;
                atomic_store(&r->aborting, true);
                workers_kick_all(r);
        }
}

static void main_loop(struct main_state *m)
{
        struct run *r = m->r;
        while (atomic_load(&r->workers_left) > 0) {
                feed(m);
                journal_sync_due(r->journal, 1000);
                int timeout_ms = progress_tick(r);
                if (atomic_load(&r->failure_stop))
                        close_intake(r);
                struct pollfd pfd[3] = {{.fd = m->sfd, .events = POLLIN},
                                        {.fd = r->main_wake_fd, .events = POLLIN},
                                        {.fd = feeder_fd(r->feeder), .events = POLLIN}};
                nfds_t n = m->want_list && !atomic_load(&r->intake_closed) ? 3 : 2;
                if (poll(pfd, n, timeout_ms) < 0) {
                        if (errno == EINTR)
                                continue;
                        qlog("poll: %s", strerror(errno));
                        break;
                }
                if (pfd[0].revents & POLLIN)
                        on_signal(m);
                if (pfd[1].revents & POLLIN) {
                        uint64_t v;
                        if (read(r->main_wake_fd, &v, sizeof v) < 0 && errno != EAGAIN)
                                qlog("wake-up of the main thread: %s", strerror(errno));
                }
                if (n == 3 && pfd[2].revents)
                        m->list_readable = true;
        }
}

static int exit_status(const struct main_state *m)
{
        struct run *r = m->r;
        if (m->signals)
                return RUN_EXIT_SIGNAL;
        if (m->list_error)
                return m->read_any ? RUN_EXIT_FAILED : RUN_EXIT_USAGE;
        for (unsigned i = 0; i < r->nworkers; i++)
                if (r->workers[i].exit_error)
                        return RUN_EXIT_FAILED;
        if (atomic_load(&r->failure_stop)) {
                qlog("stopped early: %s", r->failure_reason);
                return RUN_EXIT_FAILED;
        }
        return atomic_load(&r->stats.failed) ? RUN_EXIT_FAILED : RUN_EXIT_OK;
}

/* A backend the kernel refuses is a configuration error, found before any book. */
static int probe_backend(const struct run *r)
{
        struct loop *probe;
        const char *why = NULL;
        int err = loop_new(&probe, r->cfg.io, 8, &why);
        if (err < 0) {
                qlog("--io %s: %s", r->cfg.io == LOOP_URING ? "uring" : "auto",
                     err == -EPERM ? "io_uring_setup: not permitted (seccomp profile or "
                                     "kernel.io_uring_disabled); use --io epoll or auto"
                                   : strerror(-err));
                return err;
        }
        loop_free(probe);
        return 0;
}

static unsigned default_threads(void)
{
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof set, &set) < 0)
                return 1;
        int n = CPU_COUNT(&set);
        return n > 0 ? (unsigned)n : 1;
}

int run_execute(struct run *r, struct source *src, struct sink *sink)
{
        r->source = src;
        r->sink = sink;
        atomic_store(&r->staging.direct, sink && !sink->reads_staging);
        /* One book's bound is the least of --max-book-size, --staging-max (a book larger
         * than all the staging space could never be staged) and the destination's (none
         * without a raw delivery). */
        uint64_t limits[] = {r->cfg.staging_max, sink ? sink->max_size : 0};
        for (unsigned i = 0; i < 2; i++)
                if (limits[i] && (!r->staging.max_book || limits[i] < r->staging.max_book))
                        r->staging.max_book = limits[i];
        if (probe_backend(r) < 0)
                return RUN_EXIT_USAGE;
        unsigned threads = r->cfg.threads ? r->cfg.threads
                           : r->cfg.ncpus ? r->cfg.ncpus
                                          : default_threads();
        r->nworkers = threads < r->cfg.workers ? threads : r->cfg.workers;
        atomic_store(&r->downloads.free, (int)r->cfg.downloads);
        atomic_store(&r->uploads.free, (int)r->cfg.uploads);
        sigset_t set;
        stop_signals(&set);
        struct main_state m = {.r = r, .sfd = signalfd(-1, &set, SFD_CLOEXEC)};
        if (m.sfd < 0) {
                qlog("signalfd: %s", strerror(errno));
                return RUN_EXIT_USAGE;
        }
        progress_init(r, feeder_count(r->feeder));
        r->start_ns = util_now_ns();
        int err = keypool_start(&r->keypool, r->nworkers, r->cfg.workers, r->cfg.passphrase,
                                r->cfg.passlen, &r->aborting);
        if (!err)
                err = workers_start(r);
        if (err) {
                qlog("cannot start the run's threads: %s", strerror(-err));
                atomic_store(&r->aborting, true);
                close_intake(r);
        }
        main_loop(&m);
        workers_join(r);
        keypool_stop(r->keypool);
        r->keypool = NULL;
        progress_finish(r);
        int status = err ? RUN_EXIT_USAGE : exit_status(&m);
        close(m.sfd);
        return status;
}
