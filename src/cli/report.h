/* A journal's summary (quire report): counts by outcome, failures grouped by reason, bytes,
 * books per hour, the slowest books. Lines stream through in any number; memory is fixed
 * when the report is made (REPORT_MAX_REASONS groups, REPORT_MAX_OUTCOMES outcomes, the
 * top N slowest), about 1 MiB whatever the journal's length.
 *
 * A line is TIME BARCODE OUTCOME BYTES SHA256 DETAIL [SECONDS [...]], tab-separated
 * (journal.h). Unknown outcomes are counted under their own name; columns after DETAIL are
 * optional: the 7th, when it is a number, is the book's duration in seconds; others are
 * ignored. A line of another shape is counted as malformed, never fatal. */
#ifndef QUIRE_CLI_REPORT_H
#define QUIRE_CLI_REPORT_H

#include <stddef.h>
#include <stdio.h>

#define REPORT_MAX_OUTCOMES 32   /* distinct outcomes; more are counted as "other" */
#define REPORT_MAX_REASONS  1024 /* distinct failure reasons; more are counted together */
#define REPORT_MAX_TOP      1000
#define REPORT_KEY_MAX      160 /* a normalised reason is cut at this many bytes */

struct report;

/* top: how many slowest books to keep (0..REPORT_MAX_TOP); gap_s: a pause between two
 * lines longer than this is left out of the active time books/hour is computed over. */
int report_new(struct report **out, unsigned top, double gap_s);
void report_free(struct report *r);

/* One line, without its newline. */
void report_line(struct report *r, const char *line, size_t len);
/* Streams fd to its end through a fixed buffer; a last line without a newline is torn
 * (a crash mid-append) and ignored, as journal_open does. Returns 0 or -errno. */
int report_read_fd(struct report *r, int fd);

/* name: what to call the journal in the text (its path, or "stdin"). */
void report_print_text(const struct report *r, const char *name, FILE *out);
/* One JSON object and a newline; returns 0 or -EIO. */
int report_print_json(const struct report *r, const char *name, FILE *out);

/* The group a failure's detail belongs to, in out (NUL-terminated, at most cap - 1 bytes):
 * variants of one failure map to one key. Tokens (runs of letters, digits and '_') that
 * start with a digit lose their leading digits to "N" ("5 retries", "4096 bytes", "64MiB"
 * to "NMiB"), except a 3-digit number right after "HTTP " (the status is the reason);
 * tokens of 8 or more hex digits with a digit among them become "HEX" (ETags, digests,
 * request ids); the book's own barcode becomes "BARCODE" (S3 keys); white space runs
 * become one space; a final " (after N retries)" or " (after N retry)" is dropped. */
void report_normalize(const char *detail, size_t len, const char *barcode, char *out, size_t cap);

#endif
