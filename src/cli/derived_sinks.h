/* The derived outputs' destinations, as quire run and quire extract open them: --ocr-dest
 * and --marc-dest, each a directory or s3://BUCKET[/PREFIX] opened like --dest (its S3
 * endpoint, CA, part size and stall timeout), one sink per distinct destination so that
 * two options naming the same place share it (and its locks). */
#ifndef QUIRE_CLI_DERIVED_SINKS_H
#define QUIRE_CLI_DERIVED_SINKS_H

#include <stdbool.h>
#include <stddef.h>

#include "quire/engine/derived.h"
#include "quire/io/sinks.h"

struct derived_sinks {
        const char *ocr_dest, *marc_dest; /* the options; NULL: not given */
        struct derived_config cfg;        /* what the run is told (sinks set by open) */
        struct sink *opened[2];           /* the sinks this opened, closed by close */
};

/* True when the run reads inside its books at all. */
bool derived_sinks_wanted(const struct derived_sinks *ds);
/* Opens each destination with base's settings (raw: the --dest sink, shared when a
 * destination names the same place; NULL for none). 0, or -errno with a message. */
int derived_sinks_open(struct derived_sinks *ds, const struct sink_config *base, struct sink *raw,
                       const char *raw_dest, char *msg, size_t msglen);
void derived_sinks_close(struct derived_sinks *ds);

#endif
