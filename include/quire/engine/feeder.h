/* Barcodes in: reads a barcode list one line at a time from a file or stdin with a fixed
 * buffer (never the whole list), trims surrounding spaces and tabs and a trailing CR, skips
 * blank and '#' lines, and validates each barcode. */
#ifndef QUIRE_FEEDER_H
#define QUIRE_FEEDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BARCODE_MAX     64
#define FEEDER_FILE_MAX 96

/* Returns NULL when s[0..n) is an acceptable barcode, else a static string saying why
 * not: "contains '/'", "control byte 0x01", "invalid UTF-8", "non-ASCII character",
 * "starts with '.'", "contains '..'", "longer than 64 bytes", "empty". Accepted: ASCII
 * letters, digits, '-', '_', '.', not leading, no "..", at most BARCODE_MAX bytes. The
 * first bad byte is reported before the length. */
const char *feeder_barcode_invalid(const char *s, size_t n);

struct feeder;

/* path "-" reads stdin (not closed by feeder_close); anything else is opened without
 * blocking (a FIFO without its writer yet). A directory is refused (-EISDIR). Returns 0
 * or -errno. */
int feeder_open(struct feeder **out, const char *path);
void feeder_close(struct feeder *f);
/* A list already open (a pipe a producer thread writes): closed by feeder_close. */
int feeder_open_fd(struct feeder **out, int fd);
/* Lines may then be "BARCODE<TAB>FILE[<TAB>...]": the file name the source knows the book
 * by (GRIN's lists), given by feeder_file() after each barcode. Off by default: a tab in
 * a list a person wrote is a mistake worth naming. */
void feeder_accept_files(struct feeder *f);
/* The file name of the barcode feeder_next() returned last, or NULL. */
const char *feeder_file(const struct feeder *f);

enum feeder_result {
        FEED_EOF = 0,
        FEED_BARCODE = 1,
        FEED_INVALID = 2,
        FEED_AGAIN = 3,
};

/* Next barcode into out (NUL-terminated), from what is buffered: it never reads. *line is
 * its line number, counting every physical line from 1 (blank and comment lines too). On
 * FEED_INVALID, *why (a static string) says what was wrong; the caller reports it and
 * calls again. A line longer than the buffer (64 KiB) is dropped on the way to its newline
 * and reported as "longer than 64 bytes" (or skipped when it is blank or a comment). A
 * last line without a newline counts. FEED_AGAIN: more input is needed: call
 * feeder_fill() once feeder_fd() is readable (poll), then again. */
enum feeder_result feeder_next(struct feeder *f, char out[BARCODE_MAX + 1], uint64_t *line,
                               const char **why);
/* One read(2) into the buffer: 0 (bytes, or the end of the list), -EAGAIN (nothing yet,
 * poll again), or -errno (a read error: the list cannot be read further). */
int feeder_fill(struct feeder *f);
int feeder_fd(const struct feeder *f);
/* A regular file: always readable, so no poll is needed before feeder_fill(). */
bool feeder_regular(const struct feeder *f);

/* Counts the lines feeder_next would return as barcodes or invalid, by reading a regular
 * list once more on the same descriptor (pread, so the feeder's place is kept). -1 for
 * stdin, a pipe, a FIFO or any error (the total is unknown): those are read once. */
int64_t feeder_count(const struct feeder *f);

#endif
