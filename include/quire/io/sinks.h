/* Opening a destination: a directory or s3://BUCKET[/PREFIX]. The engine then drives it
 * through struct sink (engine/sink.h). */
#ifndef QUIRE_IO_SINKS_H
#define QUIRE_IO_SINKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quire/engine/sink.h"

struct sink_config {
        const char *dest;         /* a directory, or s3://BUCKET[/PREFIX] */
        const char *what;         /* the option that named it, for messages; NULL: "--dest" */
        const char *s3_endpoint;  /* path-style endpoint (MinIO, R2, s3rver); NULL: the
                                     environment's AWS_ENDPOINT_URL_S3 / _URL, else AWS */
        const char *ca_file;      /* trust this CA bundle instead of the system's */
        uint64_t part_size;       /* S3: objects above this go by multipart; 0: 64 MiB */
        uint64_t max_upload_rate; /* S3: bytes/s per transfer; 0: unlimited */
        unsigned stall_timeout_s; /* a transfer without a byte either way this long fails */
        /* Asked during the checks at open (which are synchronous, on the main thread):
         * true when the user asked to stop (a pending SIGINT/SIGTERM), which ends them at
         * once with -EINTR. NULL: never. */
        bool (*interrupted)(void);
        /* Only check (quire run --dry-run): create nothing, sweep nothing. */
        bool check_only;
};

/* Opens the destination cfg->dest names: checks it (credentials, the bucket, a writable
 * directory), sweeps what a killed run left there, and returns the sink. 0, or -errno
 * with a one-line message in msg naming the option and what is wrong. */
int sink_open(struct sink **out, const struct sink_config *cfg, char *msg, size_t msglen);

/* The two implementations, for sink_open() and tests. */
int sink_dir_open(struct sink **out, const struct sink_config *cfg, char *msg, size_t msglen);
int sink_s3_open(struct sink **out, const struct sink_config *cfg, char *msg, size_t msglen);

#endif
