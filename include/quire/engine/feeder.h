/* Barcodes in: reads a barcode list one line at a time from a file or stdin with a fixed
 * buffer (never the whole list), trims surrounding spaces and tabs and a trailing CR, skips
 * blank and '#' lines, and validates each barcode. */
#ifndef QUIRE_FEEDER_H
#define QUIRE_FEEDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BARCODE_MAX 64

/* Returns NULL when s[0..n) is an acceptable barcode, else a static string saying why
 * not: "contains '/'", "control byte 0x01", "invalid UTF-8", "non-ASCII character",
 * "starts with '.'", "contains '..'", "longer than 64 bytes", "empty". Accepted: ASCII
 * letters, digits, '-', '_', '.', not leading, no "..", at most BARCODE_MAX bytes. The
 * first bad byte is reported before the length. */
const char *barcode_invalid(const char *s, size_t n);

struct feeder;

/* path "-" reads stdin (not closed by feeder_close). Returns 0 or -errno. */
int feeder_open(struct feeder **out, const char *path);
void feeder_close(struct feeder *f);

enum feeder_result { FEED_EOF = 0, FEED_BARCODE = 1, FEED_INVALID = 2, FEED_ERROR = -1 };

/* Next barcode into out (NUL-terminated); *line is its line number, counting every
 * physical line from 1 (blank and comment lines too). On FEED_INVALID, *why (a static
 * string) says what was wrong; the caller reports it and calls again. A line longer than
 * the internal buffer (4 KiB) is read past to its newline and reported as "longer than 64
 * bytes" (or skipped when it is blank or a comment). A last line without a newline counts.
 * FEED_ERROR: read error, errno set (EAGAIN on a non-blocking fd); calling again resumes
 * where it stopped. Blocking read otherwise: the caller polls feeder_fd() first when it
 * must not block (a partial line may still block until its newline arrives). */
enum feeder_result feeder_next(struct feeder *f, char out[BARCODE_MAX + 1], uint64_t *line,
                               const char **why);
int feeder_fd(const struct feeder *f);

/* Counts the lines feeder_next would return as barcodes or invalid, by reading a regular
 * file once with a fixed buffer. -1 for stdin, a pipe or any error (total unknown). */
int64_t feeder_count(const char *path);

#endif
