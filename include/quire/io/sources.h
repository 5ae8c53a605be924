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

/* Fills out with the template, {barcode} replaced by the barcode and {file} by the file
 * name (NULL: BARCODE.tar.gz.gpg). 0 or -ENAMETOOLONG. */
int source_expand(const char *tmpl, const char *barcode, const char *file, char *out,
                  size_t outlen);

#endif
