/* A run's figures in the Prometheus text exposition format (version 0.0.4), for
 * --metrics-file and node_exporter's textfile collector: a pure formatter from a snapshot,
 * and a writer that replaces the file atomically so a scrape never sees half of it.
 *
 * Metrics (every one with # HELP and # TYPE; units in the names):
 *   quire_books_total{outcome}            counter  books finished, by outcome: the
 *                                                  journal's (ok, failed, skipped,
 *                                                  duplicate), invalid (a list line that is
 *                                                  no barcode), delivered_before (the
 *                                                  journal had it)
 *   quire_retries_total{cause}            counter  retries by cause: 5xx, 429, 401,
 *                                                  timeout, reset, short, stall, slow,
 *                                                  connect, tls, network (source),
 *                                                  staging, upload, other
 *   quire_fetched_bytes_total             counter  ciphertext received from the source
 *   quire_delivered_bytes_total           counter  plaintext delivered
 *   quire_resumed_bytes_total             counter  ciphertext not fetched again (resumed)
 *   quire_download_busy_seconds_total     counter  sum over download slots of busy time
 *   quire_upload_busy_seconds_total       counter  same for upload slots
 *   quire_s2k_seconds_total               counter  key derivation time, all threads
 *   quire_books{stage}                    gauge    books in each stage now: queued,
 *                                                  waiting, downloading, finishing,
 *                                                  uploading, retrying
 *   quire_download_slots, quire_upload_slots  gauge  the limits (--downloads, --uploads)
 *   quire_books_listed                    gauge    books in the barcode list (absent when
 *                                                  unknown: a list read from stdin)
 *   quire_start_time_seconds              gauge    Unix time the run started
 *   quire_draining                        gauge    1 after the first signal, else 0
 *   quire_build_info{version}             gauge    1
 * Rates come from the counters (rate(quire_books_total[5m])); busy fraction is
 * rate(quire_download_busy_seconds_total[5m]) / quire_download_slots. */
#ifndef QUIRE_METRICS_H
#define QUIRE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Enough for the metrics above with a few dozen label values. */
#define METRICS_TEXT_MAX 16384

/* One labelled sample: label value (any bytes; escaped on output) and its value. */
struct metrics_count {
        const char *label;
        uint64_t value;
};

struct metrics_snap {
        const char *version;
        double start_time_s; /* Unix time, seconds */
        bool draining;
        const struct metrics_count *outcomes; /* quire_books_total{outcome=label} */
        size_t noutcomes;
        const struct metrics_count *retries; /* quire_retries_total{cause=label} */
        size_t nretries;
        const struct metrics_count *stages; /* quire_books{stage=label} */
        size_t nstages;
        uint64_t fetched_bytes, delivered_bytes, resumed_bytes;
        double download_busy_s, upload_busy_s, s2k_s;
        unsigned download_slots, upload_slots;
        int64_t books_listed; /* -1: unknown, the metric is left out */
};

/* Formats s into buf (NUL-terminated); *len is the text's length. Returns 0, or -ENOSPC
 * when cap is too small (buf then holds no usable text). */
int metrics_format(const struct metrics_snap *s, char *buf, size_t cap, size_t *len);

/* Replaces path with text: written to a hidden temporary file in path's directory
 * (".NAME.XXXXXX": not *.prom, so the textfile collector ignores it), made 0644 (the
 * collector runs as another user), fsynced, renamed over path. A reader sees the old file or the
 * new one, never a part. Returns 0 or -errno (the temporary file is removed). */
int metrics_write_atomic(const char *path, const char *text, size_t len);

#endif
