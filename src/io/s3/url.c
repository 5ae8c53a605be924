/* URLs and keys. Encoding is libcurl's (curl_easy_escape: RFC 3986, what SigV4's
 * canonical form wants), parsing of the endpoint libcurl's URL API. */
#include "s3_int.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The names quire gives objects: books, and the derived outputs beside them. */
static const char *const our_suffixes[] = {".tar.gz", "_ocr.jsonl.gz", "_marc.json"};

/* S3's bucket naming rule: 3 to 63 of a-z 0-9 . -, starting and ending alphanumeric. */
static bool bucket_name_ok(const char *b, size_t n)
{
        if (n < 3 || n > 63 || b[0] == '.' || b[0] == '-' || b[n - 1] == '.' || b[n - 1] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789.-", b[i]))
                        return false;
        return true;
}

/* Why a prefix cannot name keys as typed, or NULL. */
static const char *prefix_problem(const char *p, size_t n)
{
        if (n > S3_PREFIX_MAX)
                return "the prefix is longer than 900 bytes";
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
                        return "the prefix holds a control character";
        for (size_t i = 0; i < n;) {
                size_t j = i;
                while (j < n && p[j] != '/')
                        j++;
                /* A URL resolves these segments away: the keys would land elsewhere. */
                if ((j - i == 1 && p[i] == '.') || (j - i == 2 && p[i] == '.' && p[i + 1] == '.'))
                        return "a \".\" or \"..\" segment in the prefix would be resolved by the "
                               "URL, "
                               "putting the keys outside it; write the prefix without it";
                i = j + 1;
        }
        return NULL;
}

int s3_dest_parse(const char *dest, char **bucket, char **prefix, char *msg, size_t msglen)
{
        *bucket = *prefix = NULL;
        if (strncmp(dest, "s3://", 5)) {
                snprintf(msg, msglen, "--dest %s: expected s3://BUCKET[/PREFIX]", dest);
                return -EINVAL;
        }
        const char *b = dest + 5, *slash = strchr(b, '/');
        size_t bl = slash ? (size_t)(slash - b) : strlen(b);
        if (!bucket_name_ok(b, bl)) {
                snprintf(msg, msglen,
                         "--dest %s: the bucket name must be 3 to 63 characters of a-z, 0-9, '.' "
                         "and '-' (S3's rule)",
                         dest);
                return -EINVAL;
        }
        const char *p = slash ? slash : "";
        while (*p == '/')
                p++;
        size_t pl = strlen(p);
        while (pl && p[pl - 1] == '/')
                pl--;
        const char *why = prefix_problem(p, pl);
        if (why) {
                snprintf(msg, msglen, "--dest %s: %s", dest, why);
                return -EINVAL;
        }
        *bucket = strndup(b, bl);
        *prefix = strndup(p, pl);
        if (!*bucket || !*prefix) {
                free(*bucket);
                free(*prefix);
                *bucket = *prefix = NULL;
                snprintf(msg, msglen, "out of memory");
                return -ENOMEM;
        }
        return 0;
}

char *s3_escape_path(const char *key)
{
        size_t n = strlen(key);
        /* Every byte may become %XX. */
        char *out = malloc(3 * n + 1);
        if (!out)
                return NULL;
        size_t o = 0;
        for (const char *seg = key;;) {
                const char *end = strchr(seg, '/');
                size_t sl = end ? (size_t)(end - seg) : strlen(seg);
                if (sl) {
                        char *e = curl_easy_escape(NULL, seg, (int)sl);
                        if (!e) {
                                free(out);
                                return NULL;
                        }
                        size_t el = strlen(e);
                        memcpy(out + o, e, el);
                        o += el;
                        curl_free(e);
                }
                if (!end)
                        break;
                out[o++] = '/';
                seg = end + 1;
        }
        out[o] = 0;
        return out;
}

int s3_url_query(char *out, size_t outlen, const char *base, const char *const *pairs)
{
        int n = snprintf(out, outlen, "%s", base);
        if (n < 0 || (size_t)n >= outlen)
                return -ENAMETOOLONG;
        size_t o = (size_t)n;
        for (unsigned i = 0; pairs[i]; i += 2) {
                assert(i == 0 || strcmp(pairs[i - 2], pairs[i]) < 0);
                char *v = curl_easy_escape(NULL, pairs[i + 1], 0);
                if (!v)
                        return -ENOMEM;
                n = snprintf(out + o, outlen - o, "%c%s=%s", i ? '&' : '?', pairs[i], v);
                curl_free(v);
                if (n < 0 || (size_t)n >= outlen - o)
                        return -ENAMETOOLONG;
                o += (size_t)n;
        }
        return 0;
}

static bool region_ok(const char *r)
{
        size_t n = strlen(r);
        return n > 0 && n < 64 && strspn(r, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

/* scheme://host[:port][/path] of a path-style endpoint, checked by libcurl's parser. */
static int endpoint_base(const char *ep, char **base, char *msg, size_t msglen)
{
        char *with_scheme = NULL;
        if (!strstr(ep, "://") && asprintf(&with_scheme, "https://%s", ep) < 0)
                return -ENOMEM;
        CURLU *u = curl_url();
        char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *extra = NULL;
        const char *why = NULL;
        int err = 0;
        if (!u) {
                err = -ENOMEM;
        } else if (curl_url_set(u, CURLUPART_URL, with_scheme ? with_scheme : ep, 0) ||
                   curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) ||
                   curl_url_get(u, CURLUPART_HOST, &host, 0) ||
                   curl_url_get(u, CURLUPART_PATH, &path, 0)) {
                why = "not a URL";
        } else if (strcmp(scheme, "http") && strcmp(scheme, "https")) {
                why = "only http:// and https:// endpoints are supported";
        } else if (!curl_url_get(u, CURLUPART_QUERY, &extra, 0) ||
                   !curl_url_get(u, CURLUPART_FRAGMENT, &extra, 0) ||
                   !curl_url_get(u, CURLUPART_USER, &extra, 0)) {
                why = "an endpoint carries no query, fragment or credentials (credentials come "
                      "from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)";
        } else {
                (void)curl_url_get(u, CURLUPART_PORT, &port, 0); /* absent: the default */
                size_t pl = strlen(path);
                while (pl && path[pl - 1] == '/')
                        pl--;
                if (asprintf(base, "%s://%s%s%s%.*s", scheme, host, port ? ":" : "",
                             port ? port : "", (int)pl, path) < 0)
                        err = -ENOMEM;
        }
        if (why) {
                snprintf(msg, msglen, "--s3-endpoint %s: %s", ep, why);
                err = -EINVAL;
        } else if (err == -ENOMEM) {
                snprintf(msg, msglen, "out of memory");
        }
        curl_free(scheme);
        curl_free(host);
        curl_free(port);
        curl_free(path);
        curl_free(extra);
        curl_url_cleanup(u);
        free(with_scheme);
        return err;
}

int s3_endpoint_urls(const char *endpoint, const char *bucket, const char *region, char **obj_base,
                     char **bucket_url, char *msg, size_t msglen)
{
        *obj_base = *bucket_url = NULL;
        if (!region_ok(region)) {
                snprintf(msg, msglen, "AWS_REGION %.64s: not a region name (e.g. us-east-1)",
                         region);
                return -EINVAL;
        }
        int err = 0;
        if (endpoint) {
                /* Path-style: what MinIO, R2 and s3rver want. */
                char *base = NULL;
                err = endpoint_base(endpoint, &base, msg, msglen);
                if (!err && asprintf(obj_base, "%s/%s", base, bucket) < 0)
                        err = -ENOMEM;
                free(base);
                if (!err && !(*bucket_url = strdup(*obj_base)))
                        err = -ENOMEM;
        } else {
                if (asprintf(obj_base, "https://%s.s3.%s.amazonaws.com", bucket, region) < 0 ||
                    asprintf(bucket_url, "%s/", *obj_base) < 0)
                        err = -ENOMEM;
        }
        if (err) {
                if (err == -ENOMEM)
                        snprintf(msg, msglen, "out of memory");
                free(*obj_base);
                free(*bucket_url);
                *obj_base = *bucket_url = NULL;
        }
        return err;
}

bool s3_key_ours(const char *prefix, const char *key)
{
        size_t pl = strlen(prefix);
        if (pl && (strncmp(key, prefix, pl) || key[pl] != '/'))
                return false;
        const char *name = key + pl + (pl ? 1 : 0);
        size_t nl = strlen(name);
        if (strchr(name, '/'))
                return false;
        for (size_t i = 0; i < sizeof our_suffixes / sizeof our_suffixes[0]; i++) {
                size_t sl = strlen(our_suffixes[i]);
                if (nl > sl && !strcmp(name + nl - sl, our_suffixes[i]))
                        return true;
        }
        return false;
}
