/* Choosing a destination by its name. */
#include "quire/io/sinks.h"

#include <string.h>

int sink_open(struct sink **out, const struct sink_config *cfg, char *msg, size_t msglen)
{
        if (!strncmp(cfg->dest, "s3://", 5))
                return sink_s3_open(out, cfg, msg, msglen);
        return sink_dir_open(out, cfg, msg, msglen);
}
