/* Status lines. Workers only bump relaxed atomics; the main thread snapshots them, turns
 * the snapshot into rates over a sliding window (a fixed ring, so nothing grows over a
 * days-long run) and formats a line, or the live view's few lines. */
#include "quire/engine/status.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "quire/base/util.h"

void slot_time_init(struct slot_time *t)
{
        *t = (struct slot_time){0};
        pthread_mutex_init(&t->lock, NULL);
}

void slot_time_open(struct slot_time *t, uint64_t start_ns)
{
        pthread_mutex_lock(&t->lock);
        t->open_sum_ns += start_ns;
        t->open++;
        pthread_mutex_unlock(&t->lock);
}

void slot_time_close(struct slot_time *t, uint64_t start_ns, uint64_t end_ns)
{
        pthread_mutex_lock(&t->lock);
        assert(t->open > 0);
        t->open_sum_ns -= start_ns;
        t->open--;
        t->closed_ns += end_ns - start_ns;
        pthread_mutex_unlock(&t->lock);
}

uint64_t slot_time_busy_ns(struct slot_time *t, uint64_t now)
{
        pthread_mutex_lock(&t->lock);
        /* The start times' sum may have wrapped; the difference is right modulo 2^64. */
        uint64_t busy = t->closed_ns + (uint64_t)t->open * now - t->open_sum_ns;
        pthread_mutex_unlock(&t->lock);
        return busy;
}

void status_stats_init(struct stats *s)
{
        slot_time_init(&s->download_time);
        slot_time_init(&s->upload_time);
}

void status_stats_snap(struct stats *s, struct status_snap *out)
{
        memset(out, 0, sizeof *out);
        out->ok = atomic_load_explicit(&s->ok, memory_order_relaxed);
        out->failed = atomic_load_explicit(&s->failed, memory_order_relaxed);
        out->skipped = atomic_load_explicit(&s->skipped, memory_order_relaxed);
        out->bytes_in = atomic_load_explicit(&s->bytes_in, memory_order_relaxed);
        out->bytes_out = atomic_load_explicit(&s->bytes_out, memory_order_relaxed);
        out->requested = atomic_load_explicit(&s->requested, memory_order_relaxed);
        out->in_process = atomic_load_explicit(&s->in_process, memory_order_relaxed);
        out->conversion_failed = atomic_load_explicit(&s->conversion_failed, memory_order_relaxed);
        out->bytes_resumed = atomic_load_explicit(&s->bytes_resumed, memory_order_relaxed);
        out->contents_read = atomic_load_explicit(&s->contents_read, memory_order_relaxed);
        out->checksum_problems = atomic_load_explicit(&s->checksum_problems, memory_order_relaxed);
        out->contents_unreadable =
            atomic_load_explicit(&s->contents_unreadable, memory_order_relaxed);
        out->waiting = atomic_load_explicit(&s->waiting, memory_order_relaxed);
        out->downloading = atomic_load_explicit(&s->downloading, memory_order_relaxed);
        out->finishing = atomic_load_explicit(&s->finishing, memory_order_relaxed);
        out->uploading = atomic_load_explicit(&s->uploading, memory_order_relaxed);
        out->retrying = atomic_load_explicit(&s->retrying, memory_order_relaxed);
        uint64_t now = util_now_ns();
        out->busy_download_s = (double)slot_time_busy_ns(&s->download_time, now) / 1e9;
        out->busy_upload_s = (double)slot_time_busy_ns(&s->upload_time, now) / 1e9;
        out->s2k_s = (double)atomic_load_explicit(&s->s2k_ns, memory_order_relaxed) / 1e9;
        uint64_t first = atomic_load_explicit(&s->first_download_ns, memory_order_relaxed);
        uint64_t last = atomic_load_explicit(&s->last_download_end_ns, memory_order_relaxed);
        if (first && last > first)
                out->download_span_s = (double)(last - first) / 1e9;
        out->total = -1;
}

void status_window_init(struct status_window *w, double span_s)
{
        memset(w, 0, sizeof *w);
        w->span_s = span_s > 0 ? span_s : 60;
        /* The run's start is the first sample: early lines show the rate since then. */
        w->count = 1;
        w->head = 0;
}

static unsigned ring_index(const struct status_window *w, unsigned age)
{
        return (w->head + STATUS_WINDOW_SAMPLES - age) % STATUS_WINDOW_SAMPLES;
}

/* The newest sample at least span_s old, so the rate covers the whole span even when
 * lines are sparse; the oldest one while the run is younger than the span. */
static unsigned window_base(const struct status_window *w, double now)
{
        unsigned i = ring_index(w, 0);
        for (unsigned age = 0; age < w->count; age++) {
                i = ring_index(w, age);
                if (w->t[i] <= now - w->span_s)
                        break;
        }
        return i;
}

void status_window_update(struct status_window *w, struct status_snap *snap)
{
        double now = snap->elapsed_s;
        uint64_t done = snap->ok + snap->failed + snap->skipped;
        unsigned b = window_base(w, now);
        double dt = now - w->t[b];
        snap->books_per_s = dt > 0 ? (double)(done - w->done[b]) / dt : 0;
        snap->bytes_per_s = dt > 0 ? (double)(snap->bytes_in - w->bytes[b]) / dt : 0;
        /* Samples are kept at least span/N apart so the ring always reaches back over the
         * whole span however often lines are printed. */
        double newest = w->t[ring_index(w, 0)];
        if (now - newest < w->span_s / STATUS_WINDOW_SAMPLES)
                return;
        w->head = (w->head + 1) % STATUS_WINDOW_SAMPLES;
        w->t[w->head] = now;
        w->done[w->head] = done;
        w->bytes[w->head] = snap->bytes_in;
        if (w->count < STATUS_WINDOW_SAMPLES)
                w->count++;
}

/* snprintf that appends and never overruns: b->len stays <= b->cap - 1. */
struct out {
        char *buf;
        size_t cap, len;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
        if (o->cap == 0 || o->len >= o->cap - 1)
                return;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n > 0)
                o->len += (size_t)n < o->cap - o->len ? (size_t)n : o->cap - o->len - 1;
}

static void put_thousands(struct out *o, uint64_t v)
{
        char digits[32];
        int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)v);
        char grouped[48];
        size_t g = 0;
        for (int i = 0; i < n; i++) {
                if (i && (n - i) % 3 == 0)
                        grouped[g++] = ',';
                grouped[g++] = digits[i];
        }
        grouped[g] = 0;
        put(o, "%s", grouped);
}

void status_format_duration(char *buf, size_t n, double seconds)
{
        if (!(seconds >= 0)) /* also NaN */
                seconds = 0;
        if (seconds > 1e12)
                seconds = 1e12;
        uint64_t s = (uint64_t)(seconds + 0.5);
        if (s >= 3600)
                snprintf(buf, n, "%lluh %llum", (unsigned long long)(s / 3600),
                         (unsigned long long)(s / 60 % 60));
        else if (s >= 60)
                snprintf(buf, n, "%llum %llus", (unsigned long long)(s / 60),
                         (unsigned long long)(s % 60));
        else
                snprintf(buf, n, "%llus", (unsigned long long)s);
}

/* Slow runs still show a nonzero rate: 0.04 books/s is not "0.0". */
static void put_rate(struct out *o, double r)
{
        put(o, r > 0 && r < 0.1 ? "%.2f" : "%.1f", r);
}

uint64_t status_done(const struct status_snap *s)
{
        return s->ok + s->failed + s->skipped + s->requested + s->in_process;
}

size_t status_format_text(char *buf, size_t n, const struct status_snap *s)
{
        struct out o = {buf, n, 0};
        if (n)
                buf[0] = 0;
        uint64_t done = status_done(s);
        char d[32];
        put_thousands(&o, done);
        if (s->total >= 0) {
                put(&o, "/");
                put_thousands(&o, (uint64_t)s->total);
                double pct = s->total ? 100.0 * (double)done / (double)s->total : 100.0;
                put(&o, " (%.1f%%)", pct);
        } else {
                put(&o, " done");
        }
        put(&o, " - ");
        put_rate(&o, s->books_per_s);
        put(&o, " books/s - %.1f MB/s - elapsed: ", s->bytes_per_s / 1e6);
        status_format_duration(d, sizeof d, s->elapsed_s);
        put(&o, "%s", d);
        if (s->total >= 0 && (uint64_t)s->total > done) {
                if (s->books_per_s > 0) {
                        status_format_duration(
                            d, sizeof d, (double)((uint64_t)s->total - done) / s->books_per_s);
                        put(&o, " (ETA: %s)", d);
                } else {
                        put(&o, " (ETA: unknown)");
                }
        }
        put(&o,
            " [downloads: %d/%d, uploads: %d/%d, finishing: %d, waiting to download: %d, "
            "queued: %llu, ",
            s->downloading, s->download_limit, s->uploading, s->upload_limit, s->finishing,
            s->waiting, (unsigned long long)s->queued);
        if (s->retrying)
                put(&o, "retrying: %d, ", s->retrying);
        put(&o, "ok: %llu, skipped: %llu, failed: %llu", (unsigned long long)s->ok,
            (unsigned long long)s->skipped, (unsigned long long)s->failed);
        if (s->requested || s->in_process || s->conversion_failed)
                put(&o, ", requested: %llu, in process: %llu, conversion failed: %llu",
                    (unsigned long long)s->requested, (unsigned long long)s->in_process,
                    (unsigned long long)s->conversion_failed);
        if (s->contents_read || s->checksum_problems || s->contents_unreadable)
                put(&o, ", contents read: %llu, checksum problems: %llu, unreadable: %llu",
                    (unsigned long long)s->contents_read, (unsigned long long)s->checksum_problems,
                    (unsigned long long)s->contents_unreadable);
        put(&o, "]");
        return o.len;
}

/* JSON has no NaN or infinity. */
static double finite_or_zero(double v)
{
        return isfinite(v) ? v : 0;
}

static void put_json_string(struct out *o, const char *s)
{
        put(o, "\"");
        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;
                if (c == '"' || c == '\\')
                        put(o, "\\%c", c);
                else if (c < 0x20)
                        put(o, "\\u%04x", c);
                else
                        put(o, "%c", c);
        }
        put(o, "\"");
}

size_t status_format_json(char *buf, size_t n, const char *event, const struct status_snap *s)
{
        struct out o = {buf, n, 0};
        if (n)
                buf[0] = 0;
        uint64_t done = status_done(s);
        put(&o, "{\"event\":");
        put_json_string(&o, event);
        put(&o, ",\"done\":%llu,\"ok\":%llu,\"failed\":%llu,\"skipped\":%llu,",
            (unsigned long long)done, (unsigned long long)s->ok, (unsigned long long)s->failed,
            (unsigned long long)s->skipped);
        put(&o, "\"requested\":%llu,\"in_process\":%llu,\"conversion_failed\":%llu,",
            (unsigned long long)s->requested, (unsigned long long)s->in_process,
            (unsigned long long)s->conversion_failed);
        if (s->total >= 0)
                put(&o, "\"total\":%lld,", (long long)s->total);
        else
                put(&o, "\"total\":null,");
        put(&o,
            "\"elapsed_s\":%.3f,\"books_per_s\":%.3f,\"bytes_per_s\":%.0f,\"bytes_in\":%llu,"
            "\"bytes_out\":%llu,\"bytes_resumed\":%llu,",
            finite_or_zero(s->elapsed_s), finite_or_zero(s->books_per_s),
            finite_or_zero(s->bytes_per_s), (unsigned long long)s->bytes_in,
            (unsigned long long)s->bytes_out, (unsigned long long)s->bytes_resumed);
        put(&o,
            "\"stages\":{\"waiting\":%d,\"downloading\":%d,\"download_limit\":%d,"
            "\"finishing\":%d,\"uploading\":%d,\"upload_limit\":%d,\"retrying\":%d,"
            "\"queued\":%llu},",
            s->waiting, s->downloading, s->download_limit, s->finishing, s->uploading,
            s->upload_limit, s->retrying, (unsigned long long)s->queued);
        double cap = (double)s->download_limit * s->download_span_s;
        double frac = cap > 0 ? s->busy_download_s / cap : 0;
        put(&o,
            "\"busy\":{\"download_s\":%.3f,\"upload_s\":%.3f,\"download_span_s\":%.3f,"
            "\"download_busy_fraction\":%.4f},",
            finite_or_zero(s->busy_download_s), finite_or_zero(s->busy_upload_s),
            finite_or_zero(s->download_span_s), finite_or_zero(frac));
        put(&o, "\"contents\":{\"read\":%llu,\"checksum_problems\":%llu,\"unreadable\":%llu}}",
            (unsigned long long)s->contents_read, (unsigned long long)s->checksum_problems,
            (unsigned long long)s->contents_unreadable);
        return o.len;
}

/* ---- the live view ------------------------------------------------------------------ */

/* One line of the live view: bytes in o, visible characters counted against max. */
struct live_line {
        struct out *o;
        unsigned vis, max;
        bool color;
};

/* Appends printable ASCII only (a failure's text comes from servers and files), up to the
 * line's width; sgr, when color is on, wraps the piece in that SGR color. */
static void live_put(struct live_line *l, const char *sgr, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void live_put(struct live_line *l, const char *sgr, const char *fmt, ...)
{
        char piece[STATUS_LIVE_WIDTH + 1];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(piece, sizeof piece, fmt, ap);
        va_end(ap);
        if (n <= 0 || l->vis >= l->max)
                return;
        size_t len = strlen(piece);
        if (len > l->max - l->vis)
                len = l->max - l->vis;
        for (size_t i = 0; i < len; i++)
                if (piece[i] < 0x20 || piece[i] > 0x7e)
                        piece[i] = '?';
        piece[len] = 0;
        bool paint = l->color && sgr;
        put(l->o, "%s%s%s", paint ? sgr : "", piece, paint ? "\033[0m" : "");
        l->vis += (unsigned)len;
}

static void thousands(char *buf, size_t n, uint64_t v)
{
        struct out o = {buf, n, 0};
        buf[0] = 0;
        put_thousands(&o, v);
}

static void live_books(struct live_line *l, const struct status_snap *s)
{
        uint64_t done = status_done(s);
        char d[32], t[32], rate[16];
        thousands(d, sizeof d, done);
        live_put(l, NULL, "Books:    %s", d);
        if (s->total >= 0) {
                thousands(t, sizeof t, (uint64_t)s->total);
                live_put(l, NULL, "/%s (%.1f%%)", t,
                         s->total ? 100.0 * (double)done / (double)s->total : 100.0);
        } else {
                live_put(l, NULL, " done");
        }
        snprintf(rate, sizeof rate, s->books_per_s > 0 && s->books_per_s < 0.1 ? "%.2f" : "%.1f",
                 finite_or_zero(s->books_per_s));
        live_put(l, NULL, " - %s books/s - %.1f MB/s", rate, finite_or_zero(s->bytes_per_s) / 1e6);
        if (s->total >= 0 && (uint64_t)s->total > done) {
                if (s->books_per_s > 0) {
                        status_format_duration(
                            t, sizeof t, (double)((uint64_t)s->total - done) / s->books_per_s);
                        live_put(l, NULL, " - ETA %s", t);
                } else {
                        live_put(l, NULL, " - ETA unknown");
                }
        }
        status_format_duration(t, sizeof t, s->elapsed_s);
        live_put(l, NULL, " - elapsed %s", t);
}

static void live_slots(struct live_line *l, const struct status_snap *s)
{
        live_put(l, NULL,
                 "Slots:    downloads %d/%d, uploads %d/%d - finishing %d, waiting %d, retrying "
                 "%d, queued %llu",
                 s->downloading, s->download_limit, s->uploading, s->upload_limit, s->finishing,
                 s->waiting, s->retrying, (unsigned long long)s->queued);
}

static void live_outcomes(struct live_line *l, const struct status_snap *s)
{
        live_put(l, NULL, "Outcomes: ok %llu, skipped %llu, ", (unsigned long long)s->ok,
                 (unsigned long long)s->skipped);
        live_put(l, s->failed ? "\033[31m" : NULL, "failed %llu", (unsigned long long)s->failed);
        if (s->requested || s->in_process || s->conversion_failed)
                live_put(l, NULL,
                         " (GRIN: requested %llu, in process %llu, conversion failed %llu)",
                         (unsigned long long)s->requested, (unsigned long long)s->in_process,
                         (unsigned long long)s->conversion_failed);
        if (s->contents_read || s->checksum_problems || s->contents_unreadable)
                live_put(l, s->checksum_problems ? "\033[33m" : NULL,
                         " (contents: read %llu, checksum problems %llu, unreadable %llu)",
                         (unsigned long long)s->contents_read,
                         (unsigned long long)s->checksum_problems,
                         (unsigned long long)s->contents_unreadable);
        if (s->last_failure && *s->last_failure) {
                live_put(l, NULL, " - last failure: ");
                live_put(l, "\033[31m", "%s", s->last_failure);
        }
}

unsigned status_format_live(char *buf, const struct status_snap *s, unsigned width, bool color)
{
        struct out o = {buf, STATUS_LIVE_MAX, 0};
        buf[0] = 0;
        if (width > STATUS_LIVE_WIDTH + 1)
                width = STATUS_LIVE_WIDTH + 1;
        unsigned max = width > 1 ? width - 1 : 1;
        void (*const lines[STATUS_LIVE_LINES])(struct live_line *, const struct status_snap *) = {
            live_books, live_slots, live_outcomes};
        for (unsigned i = 0; i < STATUS_LIVE_LINES; i++) {
                if (i)
                        put(&o, "\n");
                struct live_line l = {&o, 0, max, color};
                lines[i](&l, s);
        }
        return STATUS_LIVE_LINES;
}
