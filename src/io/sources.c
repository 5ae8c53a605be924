/* Choosing a source by its template. */
#include "quire/io/sources.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

int source_expand(const char *tmpl, const char *barcode, const char *file, char *out, size_t outlen)
{
        char deflt[128];
        if (!file) {
                snprintf(deflt, sizeof deflt, "%s.tar.gz.gpg", barcode);
                file = deflt;
        }
        size_t n = 0;
        for (const char *p = tmpl; *p;) {
                const char *piece = p;
                size_t len = 1;
                if (!strncmp(p, "{barcode}", 9)) {
                        piece = barcode;
                        len = strlen(barcode);
                        p += 9;
                } else if (!strncmp(p, "{file}", 6)) {
                        piece = file;
                        len = strlen(file);
                        p += 6;
                } else {
                        p++;
                }
                if (n + len >= outlen)
                        return -ENAMETOOLONG;
                memcpy(out + n, piece, len);
                n += len;
        }
        out[n] = 0;
        return 0;
}

int source_open(struct source **out, const struct source_config *cfg, char *msg, size_t msglen)
{
        if (!strstr(cfg->tmpl, "{barcode}") && !strstr(cfg->tmpl, "{file}")) {
                snprintf(msg, msglen, "--source '%s' has no {barcode}", cfg->tmpl);
                return -EINVAL;
        }
        if (!strncasecmp(cfg->tmpl, "http://", 7) || !strncasecmp(cfg->tmpl, "https://", 8))
                return source_http_open(out, cfg, msg, msglen);
        return source_file_open(out, cfg, msg, msglen);
}
