/* Reading inside a book: a BARCODE.tar.gz's plaintext in, derived files and a verdict out.
 * It knows nothing of engines, books, sources or sinks.
 *
 * From the bytes of a GRIN archive (gzip + tar, read by libarchive as they stream; no
 * member is ever written to disk) it makes:
 *   - the OCR text as BARCODE_ocr.jsonl.gz, exactly as the Python pipeline writes it: every
 *     member whose base name matches ^[0-9]{8}\.txt$ (pages 1..999999, any folder), in page
 *     order (a page number seen twice gives two lines, in archive order), a missing number
 *     as "", each page decoded as UTF-8 with invalid bytes replaced by U+FFFD the way
 *     Python's errors="replace" does and its line ends read the way Python's text mode
 *     reads them ("\r\n" and "\r" become "\n"), one json.dumps(ensure_ascii=False) string
 *     and "\n" per page, gzip level 1;
 *   - the MARC record of the first .xml member (METS, libxml2's streaming reader,
 *     namespace-aware, entities never expanded) as one JSON object with exactly the keys of
 *     contents_marc_keys[], null where absent;
 *   - a check of every member against checksum.md5 (MD5 of each member, a member the list
 *     lacks, a listed name the archive lacks, page counts differing between images, texts
 *     and hOCR), and counts for a status line.
 *
 * Threads: push and pull meet here. The caller pushes bytes with contents_feed(); libarchive
 * pulls them on a reader thread that each context owns, through a ring of ring_bytes fixed
 * at start. contents_feed() never blocks: it takes what fits and returns the count; when it
 * took less than offered, ready() is called (from the reader thread) once there is room
 * again. After contents_finish(), ready() is called once more when the result is final
 * (contents_done() true). So an event loop calls feed() from its own thread and keeps
 * serving its other transfers, as it does with the key pool.
 *
 * Memory, fixed at start: the ring, libarchive's and zlib's state, a 256 KiB output buffer,
 * a table of member digests (CONTENTS_MAX_MEMBERS entries, names in an arena of
 * CONTENTS_NAME_ARENA bytes) and a page index (CONTENTS_MAX_PAGES entries of 16 bytes).
 * Pages are spilled, already JSON-escaped, to an unnamed file in spill_dir and read back in
 * page order at the end, so pages out of order cost no memory (a 5,000-page book: about
 * 80 KB of index and the pages' text once in the page cache).
 *
 * Verdicts: an input that is not gzip + tar ("not a tar.gz", e.g. random bytes) or stops
 * early is a clear outcome, never a crash; once the outcome is settled, the rest of the
 * input is taken and dropped, so the caller can go on streaming the raw archive. */
#ifndef QUIRE_CONTENTS_H
#define QUIRE_CONTENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONTENTS_MAX_MEMBERS (1u << 20)
#define CONTENTS_NAME_ARENA  (64u << 20)
#define CONTENTS_MAX_PAGES   999999u
/* Bounds on what one book may make us hold or spill; past them the output concerned is
 * not made (the outcome says why) and the archive is still read and checked. */
#define CONTENTS_MAX_PAGE_TEXT (64ull << 20)  /* one page's escaped JSON */
#define CONTENTS_MAX_OCR_SPILL (4ull << 30)   /* all pages' escaped JSON */
#define CONTENTS_MAX_XML       (256ull << 20) /* the METS member read by the XML parser */
#define CONTENTS_MAX_MARC_TEXT (1u << 20)     /* one MARC value */

/* How reading the archive itself went. */
enum contents_archive {
        CONTENTS_READING = 0, /* not finished yet */
        CONTENTS_OK,
        CONTENTS_NOT_TARGZ, /* not gzip, or gzip but not tar */
        CONTENTS_TRUNCATED, /* the stream ended inside the archive */
        CONTENTS_CORRUPT,   /* a damaged gzip stream or tar header */
        CONTENTS_LIMIT,     /* past CONTENTS_MAX_MEMBERS / CONTENTS_NAME_ARENA */
        CONTENTS_IOERR,     /* writing an output or the spill failed (err says why) */
};

/* The checksum.md5 verdict; only CHECK_OK means every member was listed and matched. */
enum contents_check {
        CHECK_NONE = 0,    /* not asked for, or the archive could not be read */
        CHECK_OK,          /* every member listed and matching, page counts equal */
        CHECK_MISMATCH,    /* member: the first (in archive order) whose MD5 differs */
        CHECK_UNLISTED,    /* member: the first the list lacks */
        CHECK_MISSING,     /* member: the first listed name the archive lacks */
        CHECK_NO_LIST,     /* no checksum.md5 member */
        CHECK_BAD_LIST,    /* a line of checksum.md5 is not "MD5HEX  NAME" */
        CHECK_PAGE_COUNTS, /* images, texts and hOCR counts differ */
};

struct contents_result {
        enum contents_archive archive;
        enum contents_check check;
        int err;                      /* -errno for CONTENTS_IOERR */
        char member[256];             /* the member the check verdict names (may be cut) */
        char detail[256];             /* libarchive's or the parser's words, for a log line */
        uint64_t members;             /* regular-file members read */
        uint64_t bytes;               /* their bytes, decompressed */
        uint64_t images, texts, hocr; /* members named NNNNNNNN.jp2|.tif, .txt, .html */
        uint64_t pages;               /* lines of the OCR output (0: none made) */
        bool ocr_written;             /* ocr_fd holds a whole BARCODE_ocr.jsonl.gz */
        const char *ocr_skipped;      /* else why not: "no pages", "page too large", ... */
        bool marc_written;            /* marc_fd holds the record's JSON and "\n" */
        const char *marc_skipped;     /* else why not: "no .xml member", "no MARC record", ... */
};

struct contents_cfg {
        int ocr_fd;            /* -1: no OCR output; else written from offset 0 (a staging file) */
        int marc_fd;           /* -1: no MARC output; else written from offset 0 */
        bool verify;           /* check checksum.md5 */
        const char *spill_dir; /* where the unnamed page spill lives (default $TMPDIR or /tmp) */
        size_t ring_bytes;     /* 0: 1 MiB */
        void (*ready)(void *arg); /* room again after a short feed, or the result is final */
        void *arg;
        /* Optional: every byte written to ocr_fd or marc_fd, in order, as it is written (on
         * the reader thread): to hash an output while it is made, not read it back. */
        void (*wrote)(void *arg, int fd, const void *p, size_t n);
        bool sync; /* each output is fdatasync'ed before the result is final */
};

struct contents;

/* Starts a reader thread. Returns 0 or -errno (-ENOMEM, -EAGAIN, the spill's open). */
int contents_new(struct contents **out, const struct contents_cfg *cfg);
/* Takes up to n bytes, never blocking; returns how many it took (0 when the ring is full:
 * ready() follows when there is room). Call from one thread at a time. */
size_t contents_feed(struct contents *c, const void *p, size_t n);
/* True when contents_feed() would take all n bytes now (n beyond the ring: when it is
 * empty; always, once the verdict is settled and input is dropped); when not, ready()
 * follows once the reader frees some. A caller asks before it accepts input it could not
 * hold back. */
bool contents_has_room(struct contents *c, size_t n);
/* Takes all n bytes, waiting for room when the ring is full (for a caller that cannot
 * hold bytes back: the reader thread drains the ring on its own, so the wait is short). */
void contents_feed_all(struct contents *c, const void *p, size_t n);
/* The input is complete. ready() follows when the result is final. */
void contents_finish(struct contents *c);
/* True once the result is final (after contents_finish()). */
bool contents_done(struct contents *c);
/* Blocks until the result is final (for callers without a loop: commands, tests). */
void contents_wait(struct contents *c);
/* The result; complete once contents_done(). */
const struct contents_result *contents_result(const struct contents *c);
/* Stops the reader (at once, when the input is not finished) and frees everything. */
void contents_free(struct contents *c);

/* The verdict as tokens for a journal's detail field, space-separated KEY=VALUE with no
 * tabs or newlines: "contents=ok checksum=ok pages=367 images=367 texts=367 hocr=367" or
 * "contents=truncated", "checksum=mismatch member=00000003.txt ..."; a member name is
 * %-escaped (space, %, =, control bytes and non-ASCII as %XX). Returns the length. */
size_t contents_format_detail(const struct contents_result *r, char *buf, size_t cap);
/* Names used in those tokens. */
const char *contents_archive_name(enum contents_archive a);
const char *contents_check_name(enum contents_check k);

/* The MARC JSON's keys, in the order written (the Python pipeline's); NULL-terminated. */
extern const char *const contents_marc_keys[];

#endif
