/* Barcodes in: reads a barcode list one line at a time from a file or stdin with a fixed
 * buffer (never the whole list), trims surrounding white space and a trailing CR, skips
 * blank and '#' lines, and validates each barcode. */
#ifndef QUIRE_FEEDER_H
#define QUIRE_FEEDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BARCODE_MAX 64

/* Returns NULL when s[0..n) is an acceptable barcode, else a reason ("contains '/'",
 * "longer than 64 bytes", "starts with '.'", "contains '..'", "control byte 0x01",
 * "invalid UTF-8", ...). Accepted: ASCII letters, digits, '-', '_', '.', not leading. */
const char *barcode_invalid(const char *s, size_t n);

struct feeder;

/* path "-" reads stdin. Returns 0 or -errno. */
int feeder_open(struct feeder **out, const char *path);
void feeder_close(struct feeder *f);

enum feeder_result { FEED_EOF = 0, FEED_BARCODE = 1, FEED_INVALID = 2, FEED_ERROR = -1 };

/* Next barcode into out (NUL-terminated). On FEED_INVALID, *why says what was wrong and
 * *line is its line number; the caller reports it and calls again. FEED_ERROR: read error
 * (errno set). Blocking read; the caller polls feeder_fd() first when it must not block. */
enum feeder_result feeder_next(struct feeder *f, char out[BARCODE_MAX + 1], uint64_t *line,
			       const char **why);
int feeder_fd(const struct feeder *f);

/* Counts the lines feeder_next would return as barcodes or invalid, by reading a regular
 * file once with a fixed buffer. -1 for stdin or a pipe (total unknown). */
int64_t feeder_count(const char *path);

#endif
