/* The run journal: one tab-separated line per finished book, appended with O_APPEND by
 * any thread, made durable by fdatasync at most about a second after it was written
 * (a lost line only costs a recheck, never a wrong skip). Format, one line per book:
 *   TIME<TAB>BARCODE<TAB>OUTCOME<TAB>BYTES<TAB>SHA256<TAB>DETAIL<TAB>SECONDS
 * TIME is UTC ISO 8601 (2026-11-29T02:40:00Z), OUTCOME is ok | failed | skipped |
 * duplicate (readers accept others), BYTES the plaintext size, SHA256 the plaintext's hex
 * digest or '-', DETAIL free text without tabs or newlines ('-' when empty), SECONDS the
 * book's duration from leaving the queue to this line, to the millisecond ("12.345"), or
 * '-' when it never left the queue. Journals written before SECONDS existed have six
 * columns and read the same. A torn last line is ignored when read, and cut off so the
 * next line starts on its own.
 *
 * Delivered means: some line for the barcode says "ok". A later "failed" line does not
 * undo it (a failed rerun never removes a delivered object), and "skipped" lines do not
 * make a barcode delivered (they cost a destination recheck at most, never a wrong skip). */
#ifndef QUIRE_JOURNAL_H
#define QUIRE_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct journal;

struct journal_rec {
        const char *barcode; /* 1..64 bytes, no tabs or newlines (else -EINVAL) */
        const char *outcome; /* "ok", "failed", "skipped", "duplicate", ... */
        uint64_t bytes;
        const char *sha256_hex; /* NULL → "-" */
        const char *detail;     /* NULL → "-"; tabs and newlines are replaced by spaces; cut
                                   so that the line stays within 4 KiB */
        uint64_t line;          /* the book's line in the list (not written): a repeat read
                                   later in the same run names it (journal_delivered_at) */
        uint64_t duration_ns;   /* the book's time since it left the queue; 0 → "-" */
};

/* Opens (creating 0644, as the umask allows), locks (flock: -EWOULDBLOCK when another
 * process has it open) and reads the journal with a fixed buffer, remembering every
 * barcode with an "ok" line (memory: the barcodes' bytes plus a table of 8 bytes a slot,
 * load <= 3/4; about 33 MB for 1,000,000 14-byte barcodes). Returns 0 or -errno. */
int journal_open(struct journal **out, const char *path);
/* For looking only (quire run --dry-run): no lock, no repair, no file made when there is
 * none (an empty journal); journal_append must not be called. 0 or -errno. */
int journal_open_readonly(struct journal **out, const char *path);
/* Thread-safe. Also true for barcodes appended as "ok" since the journal was opened. */
bool journal_delivered(const struct journal *j, const char *barcode);
/* 0: not delivered; 1: delivered by an earlier run; 2: delivered during this run, *line
 * then being the list line its journal_rec gave. Thread-safe. */
int journal_delivered_at(const struct journal *j, const char *barcode, uint64_t *line);
/* Thread-safe; appends one line with a single write(); returns 0 or -errno. After a
 * failed partial write the next append first ends the torn line. */
int journal_append(struct journal *j, const struct journal_rec *rec);
/* fdatasync if lines were written since the last sync and at least interval_ms passed;
 * called by the main thread's timer (one thread only). */
void journal_sync_due(struct journal *j, int interval_ms);
/* Syncs and closes. */
void journal_close(struct journal *j);
/* Thread-safe. */
uint64_t journal_delivered_count(const struct journal *j);
/* Bytes held for the delivered set (table and arena capacity). Thread-safe. */
size_t journal_mem_bytes(const struct journal *j);

#endif
