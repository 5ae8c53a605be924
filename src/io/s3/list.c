/* The objects under a source's prefix, by ListObjectsV2 page by page (continuation
 * token), each page handed out as it arrives and dropped before the next is asked: a
 * prefix of a million objects costs one page (at most S3_XML_MAX bytes), not a list.
 *
 * The listing runs on its caller's thread (quire extract's producer) with a private multi
 * handle, synchronous like the sink's start-up checks (admin.c), beside the workers. */
#include "s3_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quire/base/util.h"
#include "quire/io/sources.h"

#define PAGE_KEYS       "1000"
#define PAGE_TIMEOUT_MS 30000L
#define PAGE_ATTEMPTS   5      /* a page that fails for a transient reason, in all */
#define TOKEN_MAX       4096   /* bytes of a continuation token (S3's are ~200) */
#define PAGES_MAX       100000 /* 100 million objects: past that, a server going round */

struct listing {
        struct s3_source *src;
        struct s3_sync sync;
        struct s3_req req;
        char pfx[S3_PREFIX_MAX + 2]; /* "PREFIX/", or "" for the whole bucket */
        int (*fn)(void *ctx, const char *name, uint64_t size);
        void *ctx;
};

/* The query of one page, its parameters sorted by name (libcurl signs it as written). */
static int page_url(struct listing *l, char *url, size_t len, const char *token)
{
        const char *query[16];
        unsigned n = 0;
        if (token[0]) {
                query[n++] = "continuation-token";
                query[n++] = token;
        }
        query[n++] = "delimiter";
        query[n++] = "/";
        query[n++] = "encoding-type";
        query[n++] = "url";
        query[n++] = "list-type";
        query[n++] = "2";
        query[n++] = "max-keys";
        query[n++] = PAGE_KEYS;
        query[n++] = "prefix";
        query[n++] = l->pfx;
        query[n] = NULL;
        return s3_url_query(url, len, l->src->s3.bucket_url, query);
}

/* Waits ms, asking stop every 100 ms: false when asked to stop. */
static bool pause_ms(struct listing *l, unsigned ms)
{
        for (unsigned waited = 0; waited < ms; waited += 100) {
                if (l->sync.stop && l->sync.stop(l->sync.stop_ctx))
                        return false;
                struct timespec ts = {0, 100 * 1000000L};
                nanosleep(&ts, NULL);
        }
        return true;
}

/* One page, asked again after 1, 2, 4, 8 s while it fails for a reason that may pass. */
static int fetch_page(struct listing *l, const char *token, const char *what)
{
        char url[S3_URL_MAX];
        int err = page_url(l, url, sizeof url, token);
        if (err) {
                snprintf(l->sync.msg, l->sync.msglen, "%s: %s", what, strerror(-err));
                return err;
        }
        for (unsigned attempt = 1;; attempt++) {
                err = s3_sync_request(&l->sync, &l->req, "GET", url, PAGE_TIMEOUT_MS, what);
                if (!err && strcmp(s3_xml_root(&l->req.xml), "ListBucketResult")) {
                        snprintf(l->sync.msg, l->sync.msglen,
                                 "%s: the answer to a listing is no ListBucketResult", what);
                        return -EPROTO;
                }
                if (!err || err == -EINTR || !l->sync.transient || attempt == PAGE_ATTEMPTS)
                        return err;
                qlog("%s; asking again", l->sync.msg);
                if (!pause_ms(l, 1000u << (attempt - 1)))
                        return -EINTR;
        }
}

/* s3_xml_objects' callback: the name below the prefix. */
static int take_object(void *ctx, const char *key, uint64_t size)
{
        struct listing *l = ctx;
        size_t pl = strlen(l->pfx);
        if (strncmp(key, l->pfx, pl) || !key[pl])
                return 0; /* not under the prefix (a server ignoring it), or the prefix itself */
        return l->fn(l->ctx, key + pl, size);
}

/* Whether next was given before: Brent's cycle finding, next compared with the token
 * saved at the last power of two of pages. A server that goes round (t1, t2, t1, ...; a
 * token equal to the one before is refused on its own) is caught within twice the
 * round's length plus the pages before it, in the memory of one token. */
struct rounds {
        char saved[TOKEN_MAX];
        unsigned since, power;
};

static bool goes_round(struct rounds *r, const char *next)
{
        if (!strcmp(next, r->saved))
                return true;
        if (++r->since == r->power) {
                snprintf(r->saved, sizeof r->saved, "%s", next);
                r->power *= 2;
                r->since = 0;
        }
        return false;
}

static int walk(struct listing *l, const char *what)
{
        char token[TOKEN_MAX], next[TOKEN_MAX], trunc[16];
        struct rounds rounds = {.power = 1};
        token[0] = 0;
        for (unsigned page = 0; page < PAGES_MAX; page++) {
                int err = fetch_page(l, token, what);
                if (err)
                        return err;
                int r = s3_xml_objects(&l->req.xml, take_object, l);
                if (r)
                        return r;
                bool more = s3_xml_child(&l->req.xml, "IsTruncated", trunc, sizeof trunc) == 0 &&
                            !strcmp(trunc, "true");
                if (!more)
                        return 0;
                if (s3_xml_child(&l->req.xml, "NextContinuationToken", next, sizeof next) < 0 ||
                    !next[0] || strlen(next) >= sizeof next - 1 || !strcmp(next, token)) {
                        /* Without a fresh token the next page would be this one again. */
                        snprintf(l->sync.msg, l->sync.msglen,
                                 "%s: a truncated page without a usable NextContinuationToken",
                                 what);
                        return -EPROTO;
                }
                if (goes_round(&rounds, next)) {
                        /* Past here the same pages again and again, their objects listed anew. */
                        snprintf(l->sync.msg, l->sync.msglen,
                                 "%s: the continuation tokens go round (a NextContinuationToken "
                                 "given before)",
                                 what);
                        return -EPROTO;
                }
                memcpy(token, next, sizeof token);
        }
        snprintf(l->sync.msg, l->sync.msglen, "%s: more than %d pages", what, PAGES_MAX);
        return -E2BIG;
}

int source_s3_list(struct source *s, int (*fn)(void *ctx, const char *name, uint64_t size),
                   bool (*stop)(void *ctx), void *ctx, char *msg, size_t msglen)
{
        struct s3_source *src = (struct s3_source *)s;
        const struct s3 *s3 = &src->s3;
        struct listing l = {.src = src,
                            .sync = {.stop = stop, .stop_ctx = ctx, .msg = msg, .msglen = msglen},
                            .fn = fn,
                            .ctx = ctx};
        char what[S3_PREFIX_MAX + 128];
        snprintf(what, sizeof what, "listing %s", src->url);
        snprintf(l.pfx, sizeof l.pfx, "%s%s", s3->prefix, s3->prefix[0] ? "/" : "");
        int err = s3_req_init(&l.req, s3);
        if (!err && !(l.sync.multi = curl_multi_init()))
                err = -ENOMEM;
        if (err)
                snprintf(msg, msglen, "out of memory");
        else
                err = walk(&l, what);
        s3_req_free(&l.req);
        if (l.sync.multi)
                curl_multi_cleanup(l.sync.multi);
        return err;
}
