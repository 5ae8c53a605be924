/* Staging: where a book's plaintext waits, on disk, until its MDC has verified and the
 * destination has taken it. The run has one staging directory (struct staging: private to
 * this user, locked, swept of what a killed run left, with the --staging-max account);
 * each book slot has a stage (struct stage) that writes one book's file through its
 * worker's loop from a few fixed buffers.
 *
 * A stage's file, BARCODE.tar.gz.quire-part, is made with O_CREAT|O_EXCL|O_NOFOLLOW, never
 * truncated over an existing path: two copies of a barcode, or a link planted in the
 * directory, can never share or redirect a file (the run keeps one copy of a barcode in
 * flight at a time; another writer's file makes the book fail instead). */
#ifndef QUIRE_ENGINE_STAGING_H
#define QUIRE_ENGINE_STAGING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quire/engine/loop.h"

#define STAGE_BUFS     4
#define STAGE_BUF_SIZE (256 * 1024)
#define STAGE_SUFFIX   ".tar.gz.quire-part" /* the sweep removes only these names */
/* O_DIRECT's alignment of buffers, lengths and offsets: the largest logical block size
 * in use (4096), so no per-device probe is needed. */
#define STAGE_ALIGN 4096

struct staging {
        int dirfd, lockfd;
        char path[4096];
        uint64_t max;      /* --staging-max: bytes staged by all books; 0: no bound */
        uint64_t max_book; /* --max-book-size: one book's plaintext; 0: no bound */
        atomic_uint_fast64_t used;
        atomic_bool full; /* the disk filled up while other books held space */
        /* Stage files are written around the page cache (O_DIRECT), set by the run when
         * the sink does not read them back (a directory renames them into place): the
         * cache's copy and its page allocations were the largest kernel cost of a run
         * (kernel-notes.md). Cleared for good when the filesystem refuses O_DIRECT. A
         * file is switched to it at its first whole buffer, so small books never are. */
        atomic_bool direct;
};

/* Opens (creating 0700), checks, locks and sweeps the staging directory. 0, or -errno
 * with a message naming --staging. */
int staging_open(struct staging *st, const char *path, uint64_t max, uint64_t max_book, char *msg,
                 size_t msglen);
void staging_close(struct staging *st);
/* Room for another download: below --staging-max and not waiting out a full disk (a
 * lone book may always start, so an undersized bound slows the run instead of stopping
 * it). */
bool staging_has_room(struct staging *st);

struct stage;
struct stage_buf {
        struct loop_op op;
        struct stage *stage;
        uint8_t *data;
        size_t len;
        uint64_t off;
};

struct stage {
        struct staging *st;
        struct loop *loop;
        int fd;        /* -1: no file */
        bool made;     /* this attempt created the file at path (so it may remove it) */
        bool direct;   /* fd has O_DIRECT: every write aligned, from aligned buffers */
        bool buffered; /* something unaligned was written: the file stays cached */
        char path[4096 + 128];
        uint64_t size;    /* bytes accepted so far */
        uint64_t counted; /* of those, in st->used */
        struct stage_buf bufs[STAGE_BUFS];
        unsigned cur, pending;
        int error; /* the first failed write; later writes stop */
        bool finishing, syncing;
        struct loop_op sync_op;
        /* The owner's callbacks, from the loop: a buffer became free (room may be back);
         * stage_finish() ended (0: every byte is on disk and synced). */
        void (*on_room)(void *owner);
        void (*on_synced)(void *owner, int rc);
        void *owner;
};

/* Allocates the buffers (touched only when used). 0 or -ENOMEM. */
int stage_init(struct stage *s, struct staging *st, struct loop *loop, void (*on_room)(void *),
               void (*on_synced)(void *, int), void *owner);
void stage_destroy(struct stage *s);
/* Names this book's staging file and resets the stage, without creating the file: a book
 * that fails before its source sends a byte of it (a 404, a refused request) costs no
 * create and unlink, which on an ext4 without a journal were a third of a run of 404s
 * (kernel-notes.md). 0 or -errno. */
int stage_open(struct stage *s, const char *barcode);
/* Creates the named file, empty, once (the owner calls it at the body's first byte;
 * stage_write() and stage_finish() make sure of it too). 0 or -errno (-EEXIST: another
 * writer's file, which is left alone). */
int stage_create(struct stage *s);
/* Bytes the buffers can take now without a synchronous write. */
size_t stage_room(const struct stage *s);
/* Takes plaintext (copies it into the buffers, submitting each full one; when every
 * buffer is in flight, writes synchronously rather than stall the transfer). 0, or
 * -errno (the file could not be created, e.g. -EEXIST; a failed earlier write; -EFBIG
 * over --max-book-size). */
int stage_write(struct stage *s, const uint8_t *p, size_t n);
/* Writes what is buffered, waits for every write, then fdatasync: on_synced() follows. */
void stage_finish(struct stage *s);
/* Closes and unlinks the file (unless taken: renamed into place by a sink) and leaves
 * the --staging-max account. Returns true when staged space came back that downloads
 * held by the bound or a full disk may wait for. */
bool stage_remove(struct stage *s, bool taken);
/* Writes are still in flight: the buffers (and the slot) must not be reused yet. */
bool stage_busy(const struct stage *s);
/* A full disk while other books hold staged space: downloads wait until one leaves. */
bool stage_disk_full_shared(const struct stage *s, int err);

#endif
