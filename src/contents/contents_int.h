/* The contents layer's private parts: the page spill (ocr.c), the MARC reader (marc.c)
 * and the checksum table (sums.c), driven by the reader thread (reader.c, members.c). */
#ifndef QUIRE_CONTENTS_INT_H
#define QUIRE_CONTENTS_INT_H

#include "quire/contents/contents.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Base names GRIN gives a page's files: NNNNNNNN.txt, .jp2 or .tif, .html. */
enum page_kind { PK_NONE, PK_TEXT, PK_IMAGE, PK_HOCR };
/* The kind of base, and its page number (1..99999999) in *num. */
enum page_kind ocr_page_kind_of(const char *base, uint32_t *num);

/* An output file being written from offset 0, and who hears of every byte (the caller's
 * wrote(), e.g. a digest). */
struct out_file {
        int fd;
        uint64_t off;
        void (*wrote)(void *arg, int fd, const void *p, size_t n);
        void *arg;
};
/* Appends p[0..n) at f->off. 0 or -errno. */
int contents_out_write(struct out_file *f, const void *p, size_t n);

/* OCR: pages JSON-escaped into an unnamed spill file as they come, indexed by page, read
 * back in page order through gzip at the end. */
struct ocr;
int ocr_new(struct ocr **out, const char *spill_dir);
void ocr_free(struct ocr *o);
/* One page member's bytes: begin, data (any chunking), end. Returns 0 or -errno (spill
 * writes); a page past the limits turns the OCR output off (ocr_failed says why). */
int ocr_page_begin(struct ocr *o, uint32_t page);
int ocr_page_data(struct ocr *o, const uint8_t *p, size_t n);
int ocr_page_end(struct ocr *o);
const char *ocr_failed(const struct ocr *o);
/* Writes BARCODE_ocr.jsonl.gz to f; *lines gets the page count. Returns 0, 1 when there
 * is nothing to write (no pages, or ocr_failed), or -errno. */
int ocr_write(struct ocr *o, struct out_file *f, uint64_t *lines);

/* MARC: parses one METS member through read(), the first MARC record only, and keeps the
 * fields; marc_write() writes the JSON object and "\n" to f. */
struct marc;
typedef int (*marc_read_fn)(void *arg, char *buf, int len); /* bytes, 0 at end, -1 error */
int marc_new(struct marc **out);
void marc_free(struct marc *m);
/* Returns 0 when a record was found and read; 1 when not (*why says why). Resets first. */
int marc_parse(struct marc *m, marc_read_fn read, void *arg, const char **why, char *detail,
               size_t dcap);
int marc_write(const struct marc *m, struct out_file *f);

/* checksum.md5 against the members' MD5s, in whichever order they come. */
struct sums;
int sums_new(struct sums **out);
void sums_free(struct sums *s);
/* A member's MD5 (archive order). Returns 0, or -E2BIG past the table's bounds. */
int sums_member(struct sums *s, const char *name, const uint8_t md5[16]);
/* checksum.md5's bytes, any chunking; sums_list_end() after the last. */
int sums_list_data(struct sums *s, const uint8_t *p, size_t n);
int sums_list_end(struct sums *s);
/* The verdict; *member gets the member it names (NULL for none). */
enum contents_check sums_verdict(const struct sums *s, const char **member);

#endif
