/* Reading inside the book during a run: while a book's plaintext streams to its stage, it
 * also goes to a contents reader (contents.h), and once the book has verified its derived
 * outputs are delivered beside the raw archive, each through its own sink:
 *
 *   run_new(&r, &cfg, ...);  ... open the source, the sink and the derived sinks ...
 *   derived_attach(r, &(struct derived_config){.ocr = ocr_sink, .marc = marc_sink, ...});
 *   status = run_execute(r, source, sink);
 *
 * Without derived_attach() none of this runs. */
#ifndef QUIRE_ENGINE_DERIVED_H
#define QUIRE_ENGINE_DERIVED_H

#include <stdbool.h>
#include <stdint.h>

struct run;
struct sink;

struct derived_config {
        struct sink *ocr;  /* receives BARCODE_ocr.jsonl.gz; NULL: not made */
        struct sink *marc; /* receives BARCODE_marc.json; NULL: not made */
        bool verify;       /* check every member against checksum.md5 */
        /* A verdict other than checksum=ok (a mismatch, no list, an unreadable archive)
         * fails the book: nothing of it is delivered. */
        bool require_checksums;
        /* quire extract: the source's bytes are the archive itself (no decryptor, no stage)
         * and nothing but the derived outputs is delivered; an archive that cannot be read
         * fails its book. run_execute's sink may then be NULL. */
        bool plaintext_source;
        /* A barcode an earlier run journaled ok is not skipped outright: its derived
         * outputs are looked up at their destinations, and the book is read again when one
         * is missing (quire extract's rerun). Off: the journal's ok line is the truth. */
        bool recheck_delivered;
        /* Where the OCR pages spill while a book is read when the run has no staging
         * directory (NULL: $TMPDIR). */
        const char *spill_dir;
};

/* Before run_execute(); the sinks are borrowed like run_execute's and closed by the caller
 * after run_free(). verify is implied by either sink. */
void derived_attach(struct run *r, const struct derived_config *cfg);
/* After run_execute(): books whose checksum.md5 verdict was not ok (or whose archive could
 * not be read), with verify on. */
uint64_t derived_checksum_problems(const struct run *r);

#endif
