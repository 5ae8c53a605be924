/* Opening --ocr-dest and --marc-dest. */
#include "derived_sinks.h"

#include <string.h>

bool derived_sinks_wanted(const struct derived_sinks *ds)
{
        return ds->ocr_dest || ds->marc_dest || ds->cfg.verify || ds->cfg.require_checksums;
}

/* The sink for dest: one already open for the same name, or a new one. */
static int sink_for(struct derived_sinks *ds, const char *dest, const char *what,
                    const struct sink_config *base, struct sink *raw, const char *raw_dest,
                    struct sink **out, char *msg, size_t msglen)
{
        if (raw && raw_dest && !strcmp(dest, raw_dest)) {
                *out = raw;
                return 0;
        }
        if (ds->opened[0] && ds->ocr_dest && !strcmp(dest, ds->ocr_dest)) {
                *out = ds->opened[0];
                return 0;
        }
        struct sink_config cfg = *base;
        cfg.dest = dest;
        cfg.what = what;
        unsigned i = ds->opened[0] ? 1 : 0;
        int err = sink_open(&ds->opened[i], &cfg, msg, msglen);
        *out = ds->opened[i];
        return err;
}

int derived_sinks_open(struct derived_sinks *ds, const struct sink_config *base, struct sink *raw,
                       const char *raw_dest, char *msg, size_t msglen)
{
        int err = 0;
        if (ds->ocr_dest)
                err = sink_for(ds, ds->ocr_dest, "--ocr-dest", base, raw, raw_dest, &ds->cfg.ocr,
                               msg, msglen);
        if (!err && ds->marc_dest)
                err = sink_for(ds, ds->marc_dest, "--marc-dest", base, raw, raw_dest, &ds->cfg.marc,
                               msg, msglen);
        /* Asking for the verdict to be required is asking for the verdict. */
        ds->cfg.verify |= ds->cfg.require_checksums;
        return err;
}

void derived_sinks_close(struct derived_sinks *ds)
{
        for (unsigned i = 0; i < 2; i++)
                if (ds->opened[i])
                        ds->opened[i]->ops->close(ds->opened[i]);
        ds->opened[0] = ds->opened[1] = NULL;
}
