/* What GRIN knows of the books it did not serve: loaded at the start of a run (the
 * reasons of _failed, the barcodes of _in_process) and kept up to date, plus the
 * conversion requests a run sends for the rest. It answers the engine's question about a
 * book the source answered 404 for (engine/source.h, struct source_missing), the way the
 * Python pipeline does: failed at GRIN (with GRIN's reason), in process, or requested now. */
#ifndef QUIRE_IO_GRIN_CATALOG_H
#define QUIRE_IO_GRIN_CATALOG_H

#include <stddef.h>

#include "quire/engine/source.h"
#include "quire/io/grin.h"

struct grin_catalog;

/* Reads _failed and _in_process (blocking, on the caller's thread) and starts the
 * requester (grin_request.h) with batches of request_batch. site must outlive the
 * catalog. 0, or -errno with a one-line message. */
int grin_catalog_open(struct grin_catalog **out, const struct grin_site *site,
                      unsigned request_batch, char *msg, size_t msglen);
/* sources.h's missing(): thread-safe, never blocks on the network. */
void grin_catalog_missing(void *ctx, const char *barcode, struct source_missing *m);
/* Waits for the requests still under way (each has its outcome logged), then frees. */
void grin_catalog_close(struct grin_catalog *c);

#endif
