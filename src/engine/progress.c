/* Outcome accounting, status lines, the live view and the metrics file. Every finished
 * book passes through progress_count(), under one lock, so the line after the Nth book
 * shows exactly N done and the cadence holds however books finish in bursts across
 * threads. Only the main thread draws the live view and writes the metrics file (from
 * progress_tick(), between polls); a qlog line from any thread is printed above the live
 * view, which is drawn again below it in the same write. */
#include "run_int.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "quire/base/util.h"
#include "quire/engine/metrics.h"
#include "quire/engine/mpmc.h"
#include "quire/engine/source.h"

#define DRAW_INTERVAL_NS (500 * 1000000ull)
#define TICK_MAX_MS      1000
#define QLOG_LINE_MAX    1024 /* qlog's own bound */

/* Which of the status line's counts an outcome goes in (GRIN's conversion failures are
 * failures too). */
enum column {
        COL_OK,
        COL_SKIPPED,
        COL_FAILED,
        COL_REQUESTED,
        COL_IN_PROCESS,
        COL_CONVERSION_FAILED,
};

/* Each outcome's label in the metrics (the journal's outcome where a line is written). */
static const struct {
        const char *label;
        enum column column;
} outcome_info[OUTCOME_COUNT] = {
    [OUTCOME_OK] = {"ok", COL_OK},
    [OUTCOME_FAILED] = {"failed", COL_FAILED},
    [OUTCOME_SKIPPED] = {"skipped", COL_SKIPPED},
    [OUTCOME_DUPLICATE] = {"duplicate", COL_SKIPPED},
    [OUTCOME_INVALID] = {"invalid", COL_FAILED},
    [OUTCOME_DELIVERED_BEFORE] = {"delivered_before", COL_SKIPPED},
    [OUTCOME_REQUESTED] = {"requested", COL_REQUESTED},
    [OUTCOME_IN_PROCESS] = {"in-process", COL_IN_PROCESS},
    [OUTCOME_CONVERSION_FAILED] = {"conversion-failed", COL_CONVERSION_FAILED},
};

/* Listed from the start at 0, so that a dashboard's rate() sees each series begin. */
static const char *const known_causes[] = {
    "5xx",  "429",     "401", "timeout", "reset",   "short",  "stall",
    "slow", "connect", "tls", "network", "staging", "upload", "other",
};

/* ---- counting ----------------------------------------------------------------------- */

/* Call with the lock held. The names never change once added: a reader may keep a
 * pointer to one after unlocking. */
static struct progress_cause *cause_slot(struct progress *p, const char *name)
{
        for (unsigned i = 0; i < p->ncauses; i++)
                if (!strcmp(p->causes[i].name, name))
                        return &p->causes[i];
        if (p->ncauses == PROGRESS_CAUSES_MAX || strlen(name) >= PROGRESS_CAUSE_LEN)
                return strcmp(name, "other") ? cause_slot(p, "other") : NULL;
        struct progress_cause *c = &p->causes[p->ncauses++];
        snprintf(c->name, sizeof c->name, "%s", name);
        c->n = 0;
        return c;
}

void progress_retry(struct run *r, const char *cause)
{
        struct progress *p = &r->progress;
        pthread_mutex_lock(&p->lock);
        struct progress_cause *c = cause_slot(p, cause ? cause : "other");
        if (c)
                c->n++;
        pthread_mutex_unlock(&p->lock);
}

const char *progress_source_cause(const struct source_result *res)
{
        if (res->cause)
                return res->cause;
        long st = res->http_status;
        if (st == 429 || st == 401)
                return st == 429 ? "429" : "401";
        if (st == 408)
                return "timeout";
        return st >= 500 && st < 600 ? "5xx" : "other";
}

void progress_failure(struct run *r, const char *barcode, const char *detail)
{
        struct progress *p = &r->progress;
        pthread_mutex_lock(&p->lock);
        snprintf(p->last_failure, sizeof p->last_failure, "%s: %s", barcode,
                 detail && *detail ? detail : "failed");
        pthread_mutex_unlock(&p->lock);
}

/* Books in the list: a list that grows while the run reads it (GRIN's pages) says how
 * many so far. */
static int64_t listed(const struct run *r)
{
        return r->cfg.listed ? (int64_t)atomic_load(r->cfg.listed) : r->progress.total;
}

/* Call with the lock held: the counters as one status line shows them, rates included. */
static void snap_locked(struct run *r, struct status_snap *snap)
{
        struct progress *p = &r->progress;
        status_stats_snap(&r->stats, snap);
        snap->download_limit = (int)r->cfg.downloads;
        snap->upload_limit = (int)r->cfg.uploads;
        snap->queued = r->queue ? mpmc_size(r->queue) : 0;
        snap->total = listed(r);
        snap->elapsed_s = (double)(util_now_ns() - r->start_ns) / 1e9;
        snap->last_failure = p->last_failure[0] ? p->last_failure : NULL;
        status_window_update(&p->window, snap);
}

/* Call with the lock held. */
static void print_locked(struct run *r, const char *event)
{
        struct status_snap snap;
        snap_locked(r, &snap);
        char line[1024];
        bool summary = !strcmp(event, "summary");
        if (r->cfg.status_json)
                status_format_json(line, sizeof line, event, &snap);
        else
                status_format_text(line, sizeof line, &snap);
        fprintf(stderr, "%s%s\n", summary && !r->cfg.status_json ? "summary: " : "", line);
}

void progress_count(struct run *r, enum outcome o, uint64_t bytes)
{
        struct progress *p = &r->progress;
        pthread_mutex_lock(&p->lock);
        p->outcomes[o]++;
        atomic_fetch_add(&r->stats.bytes_out, bytes);
        switch (outcome_info[o].column) {
        case COL_OK:
                atomic_fetch_add(&r->stats.ok, 1);
                break;
        case COL_SKIPPED:
                atomic_fetch_add(&r->stats.skipped, 1);
                break;
        case COL_FAILED:
                atomic_fetch_add(&r->stats.failed, 1);
                break;
        case COL_REQUESTED:
                atomic_fetch_add(&r->stats.requested, 1);
                break;
        case COL_IN_PROCESS:
                atomic_fetch_add(&r->stats.in_process, 1);
                break;
        case COL_CONVERSION_FAILED:
                atomic_fetch_add(&r->stats.conversion_failed, 1);
                atomic_fetch_add(&r->stats.failed, 1);
                break;
        }
        uint64_t done = ++p->done;
        if (p->mode == PROGRESS_PLAIN && r->cfg.status_every && done % r->cfg.status_every == 0)
                print_locked(r, "status");
        pthread_mutex_unlock(&p->lock);
}

/* ---- the live view ------------------------------------------------------------------ */

/* stderr is where the view is: when it fails there is nowhere left to say so. */
static void put_stderr(const char *buf, size_t len)
{
        (void)util_write_all(STDERR_FILENO, buf, len);
}

/* Call with view_lock held: moves to the view's first line and clears from there down. */
static size_t view_erase(const struct progress *p, char *buf, size_t cap)
{
        if (!p->view_lines)
                return 0;
        int n = p->view_lines > 1 ? snprintf(buf, cap, "\r\033[%uA\033[J", p->view_lines - 1)
                                  : snprintf(buf, cap, "\r\033[J");
        return (size_t)n;
}

/* qlog's sink while the view is up: the line goes above the view, in one write, so lines
 * from the workers never land inside it. */
static void view_log(struct qlog_sink *sink, const char *line, size_t len)
{
        struct progress *p = container_of(sink, struct progress, sink);
        char buf[32 + QLOG_LINE_MAX + STATUS_LIVE_MAX];
        if (len > QLOG_LINE_MAX)
                len = QLOG_LINE_MAX;
        pthread_mutex_lock(&p->view_lock);
        size_t n = view_erase(p, buf, sizeof buf);
        memcpy(buf + n, line, len);
        n += len;
        size_t vl = p->view_lines ? strlen(p->view) : 0;
        memcpy(buf + n, p->view, vl);
        put_stderr(buf, n + vl);
        pthread_mutex_unlock(&p->view_lock);
}

static unsigned term_width(void)
{
        struct winsize ws;
        if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
                return ws.ws_col;
        return 80;
}

static void view_draw(struct run *r)
{
        struct progress *p = &r->progress;
        struct status_snap snap;
        char view[STATUS_LIVE_MAX];
        pthread_mutex_lock(&p->lock);
        snap_locked(r, &snap);
        unsigned lines = status_format_live(view, &snap, term_width(), p->color);
        pthread_mutex_unlock(&p->lock);

        char buf[32 + STATUS_LIVE_MAX];
        pthread_mutex_lock(&p->view_lock);
        size_t n = view_erase(p, buf, sizeof buf);
        size_t vl = strlen(view);
        memcpy(buf + n, view, vl);
        memcpy(p->view, view, vl + 1);
        p->view_lines = lines;
        put_stderr(buf, n + vl);
        pthread_mutex_unlock(&p->view_lock);
}

static void view_take_down(struct progress *p)
{
        qlog_set_sink(NULL);
        char buf[32];
        pthread_mutex_lock(&p->view_lock);
        put_stderr(buf, view_erase(p, buf, sizeof buf));
        p->view_lines = 0;
        p->view[0] = 0;
        pthread_mutex_unlock(&p->view_lock);
}

/* auto: live on a terminal that can move its cursor, unless JSON lines were asked for. */
static enum run_progress choose_mode(const struct run_config *cfg, bool *color)
{
        const char *term = getenv("TERM");
        const char *no_color = getenv("NO_COLOR");
        bool tty = isatty(STDERR_FILENO);
        bool dumb = !term || !*term || !strcmp(term, "dumb");
        enum run_progress m = cfg->progress;
        if (m == PROGRESS_AUTO)
                m = tty && !dumb && !cfg->status_json ? PROGRESS_LIVE : PROGRESS_PLAIN;
        if (m == PROGRESS_LIVE && !tty) {
                qlog("--progress live: standard error is not a terminal; printing plain status "
                     "lines instead");
                m = PROGRESS_PLAIN;
        }
        *color = m == PROGRESS_LIVE && !dumb && !(no_color && *no_color);
        return m;
}

/* ---- the metrics file --------------------------------------------------------------- */

static int metrics_write(struct run *r)
{
        struct progress *p = &r->progress;
        struct metrics_count outcomes[OUTCOME_COUNT], causes[PROGRESS_CAUSES_MAX];
        pthread_mutex_lock(&p->lock);
        for (unsigned i = 0; i < OUTCOME_COUNT; i++)
                outcomes[i] = (struct metrics_count){outcome_info[i].label, p->outcomes[i]};
        unsigned ncauses = p->ncauses;
        for (unsigned i = 0; i < ncauses; i++)
                causes[i] = (struct metrics_count){p->causes[i].name, p->causes[i].n};
        pthread_mutex_unlock(&p->lock);
        struct status_snap s;
        status_stats_snap(&r->stats, &s);
        struct metrics_count stages[] = {
            {"queued", r->queue ? mpmc_size(r->queue) : 0},
            {"waiting", (uint64_t)(s.waiting > 0 ? s.waiting : 0)},
            {"downloading", (uint64_t)(s.downloading > 0 ? s.downloading : 0)},
            {"finishing", (uint64_t)(s.finishing > 0 ? s.finishing : 0)},
            {"uploading", (uint64_t)(s.uploading > 0 ? s.uploading : 0)},
            {"retrying", (uint64_t)(s.retrying > 0 ? s.retrying : 0)},
        };
        struct metrics_snap m = {
            .version = util_version,
            .start_time_s = p->start_unix_s,
            .draining = r->draining,
            .outcomes = outcomes,
            .noutcomes = OUTCOME_COUNT,
            .retries = causes,
            .nretries = ncauses,
            .stages = stages,
            .nstages = sizeof stages / sizeof stages[0],
            .fetched_bytes = s.bytes_in,
            .delivered_bytes = s.bytes_out,
            .resumed_bytes = atomic_load(&r->stats.bytes_resumed),
            .download_busy_s = s.busy_download_s,
            .upload_busy_s = s.busy_upload_s,
            .s2k_s = s.s2k_s,
            .download_slots = r->cfg.downloads,
            .upload_slots = r->cfg.uploads,
            .books_listed = listed(r),
        };
        size_t len;
        int err = metrics_format(&m, p->metrics_text, sizeof p->metrics_text, &len);
        assert(!err); /* the text's size is bounded by the bounded label sets */
        p->metrics_draining = r->draining;
        return metrics_write_atomic(r->cfg.metrics_path, p->metrics_text, len);
}

/* A disk that refuses the file is told once, and again when it takes it back. */
static void metrics_rewrite(struct run *r)
{
        struct progress *p = &r->progress;
        int err = metrics_write(r);
        if (err && err != p->metrics_err)
                qlog("--metrics-file %s: %s (trying again every %u s)", r->cfg.metrics_path,
                     strerror(-err), r->cfg.metrics_interval_s);
        else if (!err && p->metrics_err)
                qlog("--metrics-file %s: written again", r->cfg.metrics_path);
        p->metrics_err = err;
}

/* ---- the run's course --------------------------------------------------------------- */

int progress_open(struct run *r, char *msg, size_t msglen)
{
        struct progress *p = &r->progress;
        pthread_mutex_init(&p->lock, NULL);
        pthread_mutex_init(&p->view_lock, NULL);
        status_stats_init(&r->stats);
        p->sink.write = view_log;
        status_window_init(&p->window, 60.0);
        p->total = feeder_count(r->feeder);
        for (size_t i = 0; i < sizeof known_causes / sizeof known_causes[0]; i++)
                cause_slot(p, known_causes[i]);
        p->mode = choose_mode(&r->cfg, &p->color);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        p->start_unix_s = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
        if (!r->cfg.metrics_path)
                return 0;
        int err = metrics_write(r);
        if (err)
                snprintf(msg, msglen, "--metrics-file %s: %s", r->cfg.metrics_path, strerror(-err));
        return err;
}

void progress_init(struct run *r, int64_t total)
{
        struct progress *p = &r->progress;
        p->total = total;
        status_window_init(&p->window, 60.0);
        p->next_draw_ns = 0; /* at the first tick */
        p->next_metrics_ns = util_now_ns() + (uint64_t)r->cfg.metrics_interval_s * 1000000000u;
        if (p->mode == PROGRESS_LIVE)
                qlog_set_sink(&p->sink);
}

int progress_tick(struct run *r)
{
        struct progress *p = &r->progress;
        uint64_t now = util_now_ns(), next = now + TICK_MAX_MS * 1000000ull;
        if (r->cfg.metrics_path) {
                if (now >= p->next_metrics_ns || r->draining != p->metrics_draining) {
                        metrics_rewrite(r);
                        p->next_metrics_ns =
                            now + (uint64_t)r->cfg.metrics_interval_s * 1000000000u;
                }
                if (p->next_metrics_ns < next)
                        next = p->next_metrics_ns;
        }
        if (p->mode == PROGRESS_LIVE) {
                if (now >= p->next_draw_ns) {
                        view_draw(r);
                        p->next_draw_ns = now + DRAW_INTERVAL_NS;
                }
                if (p->next_draw_ns < next)
                        next = p->next_draw_ns;
        }
        return (int)((next - now + 999999) / 1000000);
}

void progress_finish(struct run *r)
{
        struct progress *p = &r->progress;
        if (r->cfg.metrics_path)
                metrics_rewrite(r);
        if (p->mode == PROGRESS_LIVE)
                view_take_down(p);
        pthread_mutex_lock(&p->lock);
        print_locked(r, "summary");
        pthread_mutex_unlock(&p->lock);
}
