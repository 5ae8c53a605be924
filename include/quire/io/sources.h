/* Opening a source of books: an http(s):// URL template, or a file:// or plain path
 * template. The engine then drives it through struct source (engine/source.h). */
#ifndef QUIRE_IO_SOURCES_H
#define QUIRE_IO_SOURCES_H

#include <stddef.h>
#include <stdint.h>

#include "quire/engine/source.h"

struct auth;

struct source_config {
        const char *tmpl;        /* with {barcode}: http(s)://..., file://..., /dir/... */
        const char *ca_file;     /* trust this CA bundle instead of the system's */
        const char *header_file; /* request headers, reread when the file changes */
        const char *oauth_file;  /* OAuth2 credentials: a token kept fresh */
        struct auth *auth;       /* credentials opened already (shared with GRIN's lists): borrowed,
                                    used instead of the two files */
        unsigned stall_timeout_s; /* no byte for this long: the transfer is retried */
        /* Slower than min_rate bytes/s over a window of min_rate_window_s seconds, or
         * longer than download_timeout_s in all: retried like a stall. 0: no bound. */
        uint64_t min_rate;
        unsigned min_rate_window_s;
        unsigned download_timeout_s;
        /* With a catalog (GRIN): the source's ops->missing asks it. */
        void (*missing)(void *ctx, const char *barcode, struct source_missing *m);
        void *missing_ctx;
};

/* 0, or -errno with a one-line message naming the option at fault. */
int source_open(struct source **out, const struct source_config *cfg, char *msg, size_t msglen);

/* The implementations, for source_open() and tests. */
int source_http_open(struct source **out, const struct source_config *cfg, char *msg,
                     size_t msglen);
int source_file_open(struct source **out, const struct source_config *cfg, char *msg,
                     size_t msglen);

/* Archives already stored in S3 as PREFIX/BARCODE.tar.gz (quire extract s3://...): signed
 * like the S3 sink's requests, with its credentials and endpoint (AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION / AWS_DEFAULT_REGION; the endpoint
 * option, else AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS). A book is requested by
 * barcode (key PREFIX/BARCODE.tar.gz) or by file (key PREFIX/FILE). */
struct source_s3_config {
        const char *url;          /* s3://BUCKET[/PREFIX] */
        const char *endpoint;     /* path-style endpoint (MinIO, R2, s3rver); NULL: above */
        const char *ca_file;      /* trust this CA bundle instead of the system's */
        unsigned stall_timeout_s; /* no byte for this long: the transfer is retried */
        /* Asked during the check at open: true ends it at once (a pending signal). */
        bool (*interrupted)(void);
};

/* Opens the source and checks, with a listing of one key, that the endpoint answers, the
 * bucket exists and the credentials may read it. 0, or -errno with a one-line message
 * naming the bucket and prefix (and the endpoint when it does not answer). */
int source_s3_open(struct source **out, const struct source_s3_config *cfg, char *msg,
                   size_t msglen);

/* Lists the objects directly under the prefix (ListObjectsV2, delimiter '/', page by page
 * as they arrive: nothing is held past one page), calling fn with each one's name below
 * the prefix and its size; fn's non-zero return stops the listing and is returned. A page
 * that fails for a transient reason is asked again a few times. stop(ctx) is asked while
 * a page is awaited (NULL: never). 0 at the end, fn's value, -EINTR when stopped, or
 * another -errno with msg naming the bucket and prefix. Any thread; one listing at a time
 * per thread (it has its own connection), beside the workers' transfers. */
int source_s3_list(struct source *s, int (*fn)(void *ctx, const char *name, uint64_t size),
                   bool (*stop)(void *ctx), void *ctx, char *msg, size_t msglen);

/* Fills out with the template, {barcode} replaced by the barcode and {file} by the file
 * name (NULL: BARCODE.tar.gz.gpg). 0 or -ENAMETOOLONG. */
int source_expand(const char *tmpl, const char *barcode, const char *file, char *out,
                  size_t outlen);

#endif
