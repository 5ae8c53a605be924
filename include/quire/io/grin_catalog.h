/* What GRIN knows of the books it did not serve: loaded at the start of a run (the
 * reasons of _failed, the barcodes of _in_process) and kept up to date, plus the
 * conversion requests a run sends for the rest. It answers the engine's question about a
 * book the source answered 404 for (engine/source.h, struct source_missing), the way the
 * Python pipeline does: failed at GRIN (with GRIN's reason), in process, or requested now. */
#ifndef QUIRE_IO_GRIN_CATALOG_H
#define QUIRE_IO_GRIN_CATALOG_H

#include <stdbool.h>
#include <stddef.h>

#include "quire/engine/source.h"
#include "quire/io/grin.h"

struct grin_catalog;

/* Reads _failed and _in_process (blocking, on the caller's thread) and, unless
 * look_only, starts the requester (grin_request.h) with batches of request_batch. site
 * must outlive the catalog. 0, or -errno with a one-line message. */
int grin_catalog_open(struct grin_catalog **out, const struct grin_site *site,
                      unsigned request_batch, bool look_only, char *msg, size_t msglen);
/* What GRIN's lists say of a barcode, without requesting anything. */
enum grin_known { GRIN_UNKNOWN, GRIN_KNOWN_FAILED, GRIN_KNOWN_IN_PROCESS };
enum grin_known grin_catalog_known(struct grin_catalog *c, const char *barcode);
/* sources.h's missing(): thread-safe, never blocks on the network. */
void grin_catalog_missing(void *ctx, const char *barcode, struct source_missing *m);
/* Waits for the requests still under way (each has its outcome logged), then frees. */
void grin_catalog_close(struct grin_catalog *c);

#endif
