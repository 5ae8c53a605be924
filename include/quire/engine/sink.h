/* Destinations as the engine drives them. A sink (a directory, an S3 bucket) is opened by
 * the io layer before the run and handed to the engine, which only calls its ops table.
 * A sink never sees a book: it sees a delivery (a verified, synced staging file and what
 * is known about it) or a lookup, and answers through their done() callbacks.
 *
 * Threads: slot_new, slot_free, deliver, lookup and abort run on the worker thread that
 * owns the slot (one slot per book slot); close runs on the main thread after every
 * worker has ended. done() callbacks are called from the worker's loop, never from inside
 * deliver() or lookup() themselves. */
#ifndef QUIRE_ENGINE_SINK_H
#define QUIRE_ENGINE_SINK_H

#include <stdbool.h>
#include <stdint.h>

#define SINK_ETAG_MAX 128

struct worker;
struct sink_slot; /* a sink's per-book-slot state, opaque to the engine */
struct sink_ops;

/* Implementations embed this first and fill it in at open. */
struct sink {
        const struct sink_ops *ops;
        const char *kind;   /* "directory", "s3": for messages */
        uint64_t part_size; /* objects larger than this go in parts of this size, and the
                               engine gives each part's SHA-256; 0: whole objects only */
        uint64_t max_size;  /* the largest object the destination takes; 0: no limit */
        /* lookup() answers the source ETag stored with an object, so the engine can skip a
         * book unchanged at the source; false: it only says whether the name is taken. */
        bool lookup_etag;
        /* deliver() reads the staging file's bytes (an upload): the engine then keeps them
         * in the page cache; false (a directory renames the file into place): it writes
         * them with O_DIRECT, since nobody reads them again soon. */
        bool reads_staging;
};

/* One user-metadata entry stored with the object (S3: x-amz-meta-NAME). */
struct delivery_meta {
        const char *name, *value;
};

/* One object to deliver. The engine fills everything but staging_taken and keeps it valid
 * until done() is called. */
struct delivery {
        const char *barcode;
        const char *name;         /* file or object name, e.g. BARCODE.tar.gz */
        const char *content_type; /* e.g. application/gzip */
        int fd;                   /* the staging file: complete, synced, open read-write */
        /* Its path (a directory sink renames it into place), or NULL for an unnamed file
         * (made by stage_file, or O_TMPFILE elsewhere: the sink links or copies it in). */
        const char *staging_path;
        uint64_t size;
        uint8_t sha256[32];
        /* With part_size set: the SHA-256 of each part_size piece of the file, in order,
         * the last one shorter (nparts = ceil(size / part_size), at least 1). */
        const uint8_t (*part_sha256)[32];
        unsigned nparts;
        const struct delivery_meta *meta;
        unsigned nmeta;
        /* Set by the sink when the staging file is no longer at staging_path (renamed
         * into place): the engine then does not remove it. */
        bool staging_taken;
        /* Called once per deliver(): rc 0 when the object is durably in place; else
         * -errno with a one-line detail naming what failed, and whether a retry may help
         * (network, 5xx, a full disk). After abort() it is not called. */
        void (*done)(struct delivery *d, int rc, bool transient, const char *detail);
};

/* Does the destination hold an object of this name, and with which source ETag? */
struct lookup {
        const char *barcode;
        const char *name;
        bool found;                      /* set by the sink */
        char source_etag[SINK_ETAG_MAX]; /* set by the sink: the ETag stored with it, or "" */
        /* rc 0: found and source_etag are the answer; -errno: the lookup itself failed
         * (the engine fetches the book anyway). Not called after abort(). */
        void (*done)(struct lookup *lk, int rc, const char *detail);
};

struct sink_ops {
        /* One per book slot, when the worker starts. Returns 0 or -errno. */
        int (*slot_new)(struct sink *s, struct worker *w, struct sink_slot **out);
        /* When the worker ends: its loop has no request in flight any more (staging reads
         * land in the slot's buffers), its multi handle is still there. */
        void (*slot_free)(struct sink_slot *ss);
        void (*deliver)(struct sink_slot *ss, struct delivery *d);
        /* Optional (NULL: the engine never skips by looking at the destination). */
        void (*lookup)(struct sink_slot *ss, struct lookup *lk);
        /* Drops the delivery or lookup in progress, leaving nothing partial; done() is not
         * called. A cleanup that needs the network (abort a multipart upload) keeps the
         * worker running with worker_hold() and ends before the abort deadline. The run is
         * quitting: the slot takes no new delivery or lookup, only slot_free. */
        void (*abort)(struct sink_slot *ss);
        /* Optional: an unnamed file on the destination's own filesystem (a directory's
         * O_TMPFILE) to stage an object in, so that its delivery (staging_path NULL) is a
         * link, not a copy. Any worker thread. The fd, open read-write, or -errno;
         * -EOPNOTSUPP or NULL: the engine stages in its own directory. */
        int (*stage_file)(struct sink *s);
        void (*close)(struct sink *s);
};

#endif
