/* Run counters shared by the workers (atomics, no locks) and the status lines the main
 * thread prints from them: text for people, one JSON object per line for machines. */
#ifndef QUIRE_STATUS_H
#define QUIRE_STATUS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Busy time of a set of slots (the download or the upload slots), exact at any moment:
 * the finished intervals summed, plus the open ones up to now, so a counter made from it
 * grows smoothly even while a download lasts hours. Touched once when a slot is taken and
 * once when it is released, under its own lock. Call slot_time_init first. */
struct slot_time {
        pthread_mutex_t lock;
        uint64_t closed_ns;   /* sum of the finished intervals */
        uint64_t open_sum_ns; /* sum of the open intervals' start times (mod 2^64) */
        unsigned open;        /* intervals open now */
};
void slot_time_init(struct slot_time *t);
void slot_time_open(struct slot_time *t, uint64_t start_ns);
void slot_time_close(struct slot_time *t, uint64_t start_ns, uint64_t end_ns);
/* Busy time up to now_ns (monotonic ns, not before any open interval's start). */
uint64_t slot_time_busy_ns(struct slot_time *t, uint64_t now_ns);

/* Written by workers with relaxed atomics; read by the main thread. */
struct stats {
        atomic_uint_fast64_t ok, failed, skipped; /* finished books by outcome */
        /* GRIN: not at the source; conversion requested, in process, or failed (these
         * are also counted in failed) */
        atomic_uint_fast64_t requested, in_process, conversion_failed;
        /* Reading inside the books (derived.h): read to the end with checksum.md5 ok (or
         * not checked); read, with a checksum verdict other than ok; not readable as a
         * tar.gz. Each finished book counts in one of them at most. */
        atomic_uint_fast64_t contents_read, checksum_problems, contents_unreadable;
        atomic_uint_fast64_t bytes_in;      /* ciphertext received from the source */
        atomic_uint_fast64_t bytes_out;     /* plaintext delivered */
        atomic_uint_fast64_t bytes_resumed; /* not fetched again: broken downloads resumed */
        atomic_int waiting;                 /* taken by a worker, waiting for a download slot */
        atomic_int downloading;             /* GET in flight (decrypting inline) */
        atomic_int finishing;               /* verified or flushing staged plaintext */
        atomic_int uploading;               /* delivering to the destination */
        atomic_int retrying;                /* waiting out a backoff before a retry */
        /* Busy time of the download and upload slots (summed over the slots), and the span
         * from the first download start to the last download end (monotonic ns, 0 = none
         * yet): busy fraction = download busy time / (downloads * span). */
        struct slot_time download_time, upload_time;
        atomic_uint_fast64_t first_download_ns, last_download_end_ns;
        atomic_uint_fast64_t s2k_ns; /* key derivation time, summed over the pool's threads */
};

/* Initialises what struct stats holds besides zeroed atomics (its slot times' locks). */
void status_stats_init(struct stats *s);

/* A consistent-enough copy of everything one status line shows. status_stats_snap fills what
 * struct stats holds (busy times up to now) and zeroes the rest (total = -1,
 * last_failure NULL); the caller sets the limits, queued, total, elapsed_s and
 * last_failure, then status_window_update sets the rates. */
struct status_snap {
        uint64_t ok, failed, skipped, bytes_in, bytes_out;
        uint64_t requested, in_process, conversion_failed; /* GRIN's (in failed: the last) */
        uint64_t contents_read, checksum_problems, contents_unreadable;
        uint64_t bytes_resumed;
        int waiting, downloading, finishing, uploading, retrying;
        int download_limit, upload_limit;
        uint64_t queued;  /* barcodes in the MPMC queue */
        int64_t total;    /* books in the list, -1 when unknown (stdin) */
        double elapsed_s; /* since the run started */
        double busy_download_s, busy_upload_s, download_span_s, s2k_s;
        double books_per_s, bytes_per_s; /* over the sliding window; bytes are bytes_in */
        const char *last_failure;        /* "BARCODE: why", or NULL; the live view shows it */
};

void status_stats_snap(struct stats *s, struct status_snap *out);
/* Books finished, whatever their outcome (conversion-failed ones are in failed). */
uint64_t status_done(const struct status_snap *s);

/* Sliding-window rates: a fixed ring of (elapsed_s, done, bytes_in) samples, the first
 * being the run's start. Rates are measured from the newest sample at least span_s old
 * (the oldest while the run is younger), and samples are stored at most every
 * span_s / STATUS_WINDOW_SAMPLES, so the window spans span_s however often lines come. */
#define STATUS_WINDOW_SAMPLES 64
struct status_window {
        double t[STATUS_WINDOW_SAMPLES];
        uint64_t done[STATUS_WINDOW_SAMPLES], bytes[STATUS_WINDOW_SAMPLES];
        unsigned head, count;
        double span_s; /* how far back the window reaches, e.g. 60 s */
};
void status_window_init(struct status_window *w, double span_s);
/* Adds a sample and sets snap->books_per_s and snap->bytes_per_s from the window. */
void status_window_update(struct status_window *w, struct status_snap *snap);

/* One line without the trailing newline; numbers with thousands separators, MB = 10^6
 * bytes; with an unknown total "20 done" and neither percent nor ETA; "(ETA: unknown)"
 * while the rate is 0; "retrying: N, " before "ok:" only when N > 0. E.g.
 * "20/36,048 (0.1%) - 0.3 books/s - 2.1 MB/s - elapsed: 1m 6s (ETA: 32h 54m)
 *  [downloads: 1/5, uploads: 0/10, finishing: 0, waiting to download: 3, queued: 100,
 *  ok: 19, skipped: 0, failed: 1]"; with books read inside, ", contents read: N,
 *  checksum problems: N, unreadable: N" before the "]". Returns the length (truncated to
 *  n-1). */
size_t status_format_text(char *buf, size_t n, const struct status_snap *s);
/* {"event":"status"|"summary","done":..,"ok":..,"failed":..,"skipped":..,"total":..,
 *  "elapsed_s":..,"books_per_s":..,"bytes_per_s":..,"bytes_in":..,"bytes_out":..,
 *  "stages":{"waiting":..,"downloading":..,"download_limit":..,"finishing":..,
 *  "uploading":..,"upload_limit":..,"retrying":..,"queued":..},
 *  "busy":{"download_s":..,"upload_s":..,"download_span_s":..,"download_busy_fraction":..},
 *  "contents":{"read":..,"checksum_problems":..,"unreadable":..}}
 * without a newline; "total" is null when unknown. Returns the length (truncated to n-1). */
size_t status_format_json(char *buf, size_t n, const char *event, const struct status_snap *s);

/* The live view on a terminal (--progress live), redrawn in place like rclone -P:
 *   Books:    20/36,048 (0.1%) - 2.3 books/s - 57.1 MB/s - ETA 4h 21m - elapsed 8s
 *   Slots:    downloads 5/5, uploads 2/10 - finishing 1, waiting 12, retrying 1, queued 100
 *   Outcomes: ok 19, skipped 0, failed 1 - last failure: TEST9999: not available ...
 * Lines are separated by '\n' with none after the last, each cut to width - 1 visible
 * characters (so none wraps and a carriage return reaches its start); only printable
 * ASCII is shown (anything else in a failure's text becomes '?'). With color, the
 * failures are red (SGR escapes, not counted in the width). Returns the number of lines
 * (STATUS_LIVE_LINES); buf must hold STATUS_LIVE_MAX bytes. */
#define STATUS_LIVE_LINES 3
#define STATUS_LIVE_WIDTH 400 /* wider terminals get lines this long */
#define STATUS_LIVE_MAX   (STATUS_LIVE_LINES * (STATUS_LIVE_WIDTH + 32))
unsigned status_format_live(char *buf, const struct status_snap *s, unsigned width, bool color);

/* "1h 2m", "3m 4s", "5s" */
void status_format_duration(char *buf, size_t n, double seconds);

#endif
