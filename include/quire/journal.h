/* The run journal: one tab-separated line per finished book, appended with O_APPEND by
 * any thread, made durable by fdatasync at most about a second after it was written
 * (a lost line only costs a recheck, never a wrong skip). Format, one line per book:
 *   TIME<TAB>BARCODE<TAB>OUTCOME<TAB>BYTES<TAB>SHA256<TAB>DETAIL
 * TIME is UTC ISO 8601 (2026-11-29T02:40:00Z), OUTCOME is ok | failed | skipped, BYTES
 * the plaintext size, SHA256 the plaintext's hex digest or '-', DETAIL free text without
 * tabs or newlines ('-' when empty). A torn last line is ignored when read. */
#ifndef QUIRE_JOURNAL_H
#define QUIRE_JOURNAL_H

#include <stdbool.h>
#include <stdint.h>

struct journal;

struct journal_rec {
	const char *barcode;
	const char *outcome; /* "ok", "failed", "skipped" */
	uint64_t bytes;
	const char *sha256_hex; /* NULL → "-" */
	const char *detail;     /* NULL → "-"; tabs and newlines are replaced by spaces */
};

/* Opens (creating 0644, as the umask allows) and reads the journal, remembering every
 * barcode whose last line says "ok" (memory: the barcodes' bytes plus a small table).
 * Returns 0 or -errno. */
int journal_open(struct journal **out, const char *path);
/* Thread-safe. */
bool journal_delivered(const struct journal *j, const char *barcode);
/* Thread-safe; appends one line; returns 0 or -errno. */
int journal_append(struct journal *j, const struct journal_rec *rec);
/* fdatasync if lines were written since the last sync and at least interval_ms passed;
 * called by the main thread's timer. */
void journal_sync_due(struct journal *j, int interval_ms);
/* Syncs and closes. */
void journal_close(struct journal *j);
uint64_t journal_delivered_count(const struct journal *j);

#endif
