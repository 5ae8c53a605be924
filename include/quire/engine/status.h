/* Run counters shared by the workers (atomics, no locks) and the status lines the main
 * thread prints from them: text for people, one JSON object per line for machines. */
#ifndef QUIRE_STATUS_H
#define QUIRE_STATUS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Written by workers with relaxed atomics; read by the main thread. */
struct stats {
        atomic_uint_fast64_t ok, failed, skipped; /* finished books by outcome */
        /* GRIN: not at the source; conversion requested, in process, or failed (these
         * are also counted in failed) */
        atomic_uint_fast64_t requested, in_process, conversion_failed;
        atomic_uint_fast64_t bytes_in;      /* ciphertext received from the source */
        atomic_uint_fast64_t bytes_out;     /* plaintext delivered */
        atomic_uint_fast64_t bytes_resumed; /* not fetched again: broken downloads resumed */
        atomic_int waiting;                 /* taken by a worker, waiting for a download slot */
        atomic_int downloading;             /* GET in flight (decrypting inline) */
        atomic_int finishing;               /* verified or flushing staged plaintext */
        atomic_int uploading;               /* delivering to the destination */
        atomic_int retrying;                /* waiting out a backoff before a retry */
        /* Busy time of the download and upload slots (sum over slots, ns), and the span from
         * the first download start to the last download end (monotonic ns, 0 = none yet):
         * busy fraction = busy_download_ns / (downloads * span). */
        atomic_uint_fast64_t busy_download_ns, busy_upload_ns;
        atomic_uint_fast64_t first_download_ns, last_download_end_ns;
};

/* A consistent-enough copy of everything one status line shows. stats_snap fills what
 * struct stats holds and zeroes the rest (total = -1); the caller sets the limits, queued,
 * total and elapsed_s, then status_window_update sets the rates. */
struct status_snap {
        uint64_t ok, failed, skipped, bytes_in, bytes_out;
        uint64_t requested, in_process, conversion_failed; /* GRIN's (in failed: the last) */
        uint64_t bytes_resumed;
        int waiting, downloading, finishing, uploading, retrying;
        int download_limit, upload_limit;
        uint64_t queued;  /* barcodes in the MPMC queue */
        int64_t total;    /* books in the list, -1 when unknown (stdin) */
        double elapsed_s; /* since the run started */
        double busy_download_s, busy_upload_s, download_span_s;
        double books_per_s, bytes_per_s; /* over the sliding window; bytes are bytes_in */
};

void stats_snap(const struct stats *s, struct status_snap *out);
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
 *  ok: 19, skipped: 0, failed: 1]". Returns the length (truncated to n-1). */
size_t status_format_text(char *buf, size_t n, const struct status_snap *s);
/* {"event":"status"|"summary","done":..,"ok":..,"failed":..,"skipped":..,"total":..,
 *  "elapsed_s":..,"books_per_s":..,"bytes_per_s":..,"bytes_in":..,"bytes_out":..,
 *  "stages":{"waiting":..,"downloading":..,"download_limit":..,"finishing":..,
 *  "uploading":..,"upload_limit":..,"retrying":..,"queued":..},
 *  "busy":{"download_s":..,"upload_s":..,"download_span_s":..,"download_busy_fraction":..}}
 * without a newline; "total" is null when unknown. Returns the length (truncated to n-1). */
size_t status_format_json(char *buf, size_t n, const char *event, const struct status_snap *s);

/* "1h 2m", "3m 4s", "5s" */
void format_duration(char *buf, size_t n, double seconds);

#endif
