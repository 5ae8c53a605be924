/* Placeholder until the S3 sink is rebuilt against engine/sink.h (branch s3). */
#include <errno.h>
#include <stdio.h>

#include "quire/io/sinks.h"

int sink_s3_open(struct sink **out, const struct sink_config *cfg, char *msg, size_t msglen)
{
        snprintf(msg, msglen, "--dest %s: S3 is not in this build yet", cfg->dest);
        return -ENOSYS;
}
