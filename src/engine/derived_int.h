/* One book slot's derived outputs (derived.c): its contents reader, the outputs' unnamed
 * staging files and digests, and their sink slots. The book slot drives it and hears back
 * through struct derived_events, always from the worker's loop, never from inside a call.
 *
 * An attempt: derived_begin() ─ derived_feed() for every plaintext byte (derived_has_room()
 * before taking more from the source) ─ derived_finish() once the MDC has verified ─ done()
 * ─ derived_deliver() ─ delivered() ─ derived_drop(). */
#ifndef QUIRE_ENGINE_DERIVED_INT_H
#define QUIRE_ENGINE_DERIVED_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct derived;
struct worker;

struct derived_events {
        /* derived_has_room() said no; bytes may be fed again. */
        void (*room)(void *owner);
        /* derived_finish() ended: the verdict and the outputs are final. */
        void (*done)(void *owner);
        /* derived_deliver() ended: rc 0 when every output is in place, else the first
         * failure's -errno, whether a retry may help, and a one-line detail. */
        void (*delivered)(void *owner, int rc, bool transient, const char *detail);
        /* derived_lookup() ended: every output was found at its destination. */
        void (*looked_up)(void *owner, bool all_found);
};

/* On the worker's thread, when the run has derived outputs (r->derived_on). 0 or -errno. */
int derived_new(struct derived **out, struct worker *w, const struct derived_events *ev,
                void *owner);
void derived_free(struct derived *d);
/* A new attempt at barcode's book: fresh staging files for the outputs, a fresh reader.
 * keep_found: after derived_lookup() for this book, the outputs it found are not
 * delivered again. 0, or -errno when the outputs cannot be staged or the reader cannot
 * start. */
int derived_begin(struct derived *d, const char *barcode, bool keep_found);
/* Plaintext, in order. Never blocks for long: what the reader's ring does not take waits
 * in a fixed buffer (beyond it, the reader is waited for). */
void derived_feed(struct derived *d, const uint8_t *p, size_t n);
/* True when n more bytes of plaintext can be fed without waiting; else room() follows. */
bool derived_has_room(struct derived *d, size_t n);
/* The plaintext is complete and verified: the reader writes the outputs; done() follows. */
void derived_finish(struct derived *d);
/* Stops the attempt, drops its outputs. Harmless without one. */
void derived_drop(struct derived *d);
/* Second Ctrl-C: stops deliveries and lookups in flight too (their done() never comes). */
void derived_abort(struct derived *d);

/* After done(): */
/* The verdict for the journal's detail: "contents=ok checksum=ok pages=..." and, for an
 * output not made, "ocr=no-pages" (the reason, a token). */
const char *derived_detail(const struct derived *d);
/* The reader could not write an output or its page spill (a disk's trouble, not the
 * archive's): the attempt failed and may be retried; why in derived_detail(). */
bool derived_io_failed(const struct derived *d);
/* The archive was read to its end as gzip + tar. */
bool derived_readable(const struct derived *d);
/* The checksum.md5 verdict is ok (false without verify). */
bool derived_checksums_ok(const struct derived *d);
/* Adds this attempt's verdict to the run's contents counts (once per book). */
void derived_count(struct derived *d);

/* Delivers the outputs made and not yet delivered (a retry redoes only what failed), each
 * with metadata barcode, acquisition_date (acquired) and, for the OCR, page_count. False
 * when there is nothing to deliver (delivered() does not follow). */
bool derived_deliver(struct derived *d, const char *acquired);
/* Asks each output's destination whether it holds barcode's output; looked_up() follows. */
void derived_lookup(struct derived *d, const char *barcode);

#endif
