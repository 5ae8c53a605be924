/* Opening the S3 destination, on the main thread before any worker: credentials, region
 * and endpoint from the environment and the options, a check that the bucket is there
 * and ours to use, and a sweep of the multipart uploads a killed run left.
 *
 * These requests are synchronous but short and interruptible: each runs on a private
 * multi handle woken every 100 ms to ask sink_config.interrupted(), with a few seconds'
 * timeout, so a Ctrl-C during a stalled start ends it at once.
 *
 * Ownership: quire assumes it is the only writer of its prefix. The sweep aborts every
 * unfinished upload under PREFIX/ whose key looks like one of its own (s3_key_ours): two
 * quire processes on one prefix would abort each other's uploads. */
#include "s3_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quire/base/util.h"
#include "quire/io/sinks.h"

#define POLL_MS          100
#define CHECK_TIMEOUT_MS 10000L /* bucket check, one page of the listing */
#define ABORT_TIMEOUT_MS 5000L  /* one leftover's AbortMultipartUpload */
#define CONNECT_MS       5000L
#define PAGE_UPLOADS     "100"
#define PAGES_MAX        10000

struct admin {
        struct s3 *s3;
        struct s3_sync sync; /* the private multi, and where messages go */
        struct s3_req req;   /* the check, then the listing's pages */
        struct s3_req del;   /* the aborts, which must not overwrite the page they walk */
        unsigned aborted;
        int stop; /* why the sweep stopped early: -EINTR, or -EIO (logged) */
};

/* Whether the caller asked to stop: its own test, else the sink's (a pending signal). */
static bool sync_stopped(const struct s3_sync *y, const struct s3 *s3)
{
        if (y->stop)
                return y->stop(y->stop_ctx);
        return s3->interrupted && s3->interrupted();
}

/* Runs q to its end on the private multi; *rc is libcurl's verdict. 0, -EINTR when the
 * user asked to stop, -ENOMEM. */
static int perform(struct s3_sync *y, struct s3_req *q, long timeout_ms, CURLcode *rc)
{
        CURL *e = q->x.easy;
        *rc = CURLE_OK;
        if (q->hdr_oom || curl_easy_setopt(e, CURLOPT_HTTPHEADER, q->hdrs) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_MS) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms) != CURLE_OK ||
            curl_multi_add_handle(y->multi, e) != CURLM_OK)
                return -ENOMEM;
        int err = 0, running = 1;
        while (running) {
                if (sync_stopped(y, q->s3)) {
                        err = -EINTR;
                        break;
                }
                CURLMcode mc = curl_multi_perform(y->multi, &running);
                if (mc == CURLM_OK && running)
                        mc = curl_multi_poll(y->multi, NULL, 0, POLL_MS, NULL);
                if (mc != CURLM_OK) {
                        err = -ENOMEM; /* a multi handle fails only for want of memory */
                        break;
                }
        }
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(y->multi, &left)))
                if (m->msg == CURLMSG_DONE)
                        *rc = m->data.result;
        curl_multi_remove_handle(y->multi, e);
        s3_req_settle(q);
        return err;
}

int s3_sync_request(struct s3_sync *y, struct s3_req *q, const char *method, const char *url,
                    long timeout_ms, const char *what)
{
        CURLcode rc;
        char why[400];
        y->transient = false;
        int err = s3_req_setup(q, method, url, S3_EMPTY_SHA);
        if (!err)
                err = perform(y, q, timeout_ms, &rc);
        if (err == -EINTR) {
                snprintf(y->msg, y->msglen, "%s: interrupted", what);
                return err;
        }
        if (err) {
                snprintf(y->msg, y->msglen, "%s: %s", what, strerror(-err));
                return err;
        }
        if (rc == CURLE_SSL_CACERT_BADFILE) { /* ours to fix, not the endpoint's */
                snprintf(y->msg, y->msglen, "%s: cannot use the CA file: %s", what,
                         q->errbuf[0] ? q->errbuf : curl_easy_strerror(rc));
                return -EINVAL;
        }
        if (rc == CURLE_WRITE_ERROR && q->xml_err) {
                /* Our refusal of the answer (past S3_XML_MAX, or no memory), not the
                 * network's: named as that. A too large answer comes the same again. */
                (void)s3_req_verdict(q, rc, why, sizeof why, &y->transient);
                y->transient = q->xml_err == -ENOMEM;
                snprintf(y->msg, y->msglen, "%s: %s", what, why);
                return -EIO;
        }
        if (rc != CURLE_OK) {
                y->transient = true;
                snprintf(y->msg, y->msglen, "%s: cannot reach %s: %s", what, url,
                         q->errbuf[0] ? q->errbuf : curl_easy_strerror(rc));
                return -EHOSTUNREACH;
        }
        if (s3_req_verdict(q, rc, why, sizeof why, &y->transient)) {
                snprintf(y->msg, y->msglen, "%s: %s", what, why);
                return -EIO;
        }
        return 0;
}

static int sync_request(struct admin *a, struct s3_req *q, const char *method, const char *url,
                        long timeout_ms, const char *what)
{
        return s3_sync_request(&a->sync, q, method, url, timeout_ms, what);
}

/* "PREFIX/", or "" for the whole bucket. */
static void listing_prefix(const struct s3 *s3, char *out, size_t len)
{
        snprintf(out, len, "%s%s", s3->prefix, s3->prefix[0] ? "/" : "");
}

/* The bucket exists and these credentials may use it: one listing of at most one key under
 * the prefix names any problem with S3's own error code. */
static int check_bucket(struct admin *a)
{
        char pfx[S3_PREFIX_MAX + 2], url[S3_URL_MAX], what[S3_PREFIX_MAX + 128];
        listing_prefix(a->s3, pfx, sizeof pfx);
        const char *query[] = {"max-keys", "1", "prefix", pfx, NULL};
        snprintf(what, sizeof what, "--dest %s", a->s3->dest);
        int err = s3_url_query(url, sizeof url, a->s3->bucket_url, query);
        if (err) {
                snprintf(a->sync.msg, a->sync.msglen, "%s: %s", what, strerror(-err));
                return err;
        }
        return sync_request(a, &a->req, "GET", url, CHECK_TIMEOUT_MS, what);
}

/* s3_xml_uploads' callback: aborts one upload a killed run left. */
static int abort_leftover(void *ctx, const char *key, const char *id)
{
        struct admin *a = ctx;
        char *esc = s3_key_ours(a->s3->prefix, key) ? s3_escape_path(key) : NULL;
        if (!esc)
                return 0; /* another tool's upload (or no memory to name it: left for later) */
        char base[S3_URL_MAX], url[S3_URL_MAX];
        const char *query[] = {"uploadId", id, NULL};
        int n = snprintf(base, sizeof base, "%s/%s", a->s3->obj_base, esc);
        free(esc);
        if (n < 0 || (size_t)n >= sizeof base || s3_url_query(url, sizeof url, base, query) < 0)
                return 0;
        int err = sync_request(a, &a->del, "DELETE", url, ABORT_TIMEOUT_MS, "AbortMultipartUpload");
        if (!err || (err == -EIO && a->del.head.status == 404)) {
                a->aborted += !err;
                return 0;
        }
        if (err != -EINTR)
                qlog("%s (%.200s); stopping the sweep, the next run tries again", a->sync.msg, key);
        a->stop = err == -EINTR ? err : -EIO;
        return 1;
}

/* The query of one page of ListMultipartUploads, its parameters sorted by name. */
static int page_url(struct admin *a, char *url, size_t len, const char *pfx, const char *kmark,
                    const char *umark)
{
        const char *query[16];
        unsigned n = 0;
        query[n++] = "encoding-type";
        query[n++] = "url";
        if (kmark[0]) {
                query[n++] = "key-marker";
                query[n++] = kmark;
        }
        query[n++] = "max-uploads";
        query[n++] = PAGE_UPLOADS;
        query[n++] = "prefix";
        query[n++] = pfx;
        if (kmark[0]) {
                query[n++] = "upload-id-marker";
                query[n++] = umark;
        }
        query[n++] = "uploads";
        query[n++] = "";
        query[n] = NULL;
        return s3_url_query(url, len, a->s3->bucket_url, query);
}

/* Uploads a killed run left unfinished under our prefix would be billed forever and never
 * completed: abort them. A server without the API (s3rver) or one that fails earns a
 * notice, not a refusal: the run can go on. -EINTR when the user asked to stop. */
static int sweep(struct admin *a)
{
        char kmark[S3_KEY_MAX * 3 + 1] = "", umark[S3_ID_MAX + 1] = "";
        char next_k[sizeof kmark], next_u[sizeof umark];
        char pfx[S3_PREFIX_MAX + 2], url[S3_URL_MAX], trunc[16];
        listing_prefix(a->s3, pfx, sizeof pfx);
        for (unsigned page = 0; page < PAGES_MAX; page++) {
                int err = page_url(a, url, sizeof url, pfx, kmark, umark);
                if (!err)
                        err = sync_request(a, &a->req, "GET", url, CHECK_TIMEOUT_MS,
                                           "ListMultipartUploads");
                if (err == -EINTR)
                        return err;
                if (!err && strcmp(s3_xml_root(&a->req.xml), "ListMultipartUploadsResult")) {
                        snprintf(
                            a->sync.msg, a->sync.msglen,
                            "ListMultipartUploads: the answer is no ListMultipartUploadsResult");
                        err = -EPROTO;
                }
                if (err) {
                        qlog("notice: %s; unfinished uploads a killed run left under s3://%s/%s "
                             "are not cleaned up",
                             a->sync.msg, a->s3->bucket, pfx);
                        return 0;
                }
                if (s3_xml_uploads(&a->req.xml, abort_leftover, a) && a->stop == -EINTR)
                        return -EINTR;
                bool more =
                    s3_xml_child(&a->req.xml, "IsTruncated", trunc, sizeof trunc) == 0 &&
                    !strcmp(trunc, "true") &&
                    s3_xml_next_key_marker(&a->req.xml, next_k, sizeof next_k) == 0 &&
                    s3_xml_child(&a->req.xml, "NextUploadIdMarker", next_u, sizeof next_u) == 0;
                /* A page that points at itself would never end. */
                if (a->stop || !more || (!strcmp(next_k, kmark) && !strcmp(next_u, umark)))
                        break;
                memcpy(kmark, next_k, sizeof kmark);
                memcpy(umark, next_u, sizeof umark);
        }
        if (a->aborted)
                qlog("aborted %u unfinished multipart upload%s under s3://%s/%s left by an earlier "
                     "run",
                     a->aborted, a->aborted == 1 ? "" : "s", a->s3->bucket, pfx);
        return 0;
}

static const char *env(const char *name)
{
        const char *v = getenv(name);
        return v && *v ? v : NULL;
}

int s3_configure(struct s3 *s3, const char *endpoint, char *msg, size_t msglen)
{
        const char *key = env("AWS_ACCESS_KEY_ID"), *secret = env("AWS_SECRET_ACCESS_KEY");
        const char *token = env("AWS_SESSION_TOKEN");
        if (!key || !secret) {
                snprintf(msg, msglen,
                         "--dest %s: no S3 credentials: set AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones)",
                         s3->dest);
                return -EINVAL;
        }
        const char *region = env("AWS_REGION");
        if (!region)
                region = env("AWS_DEFAULT_REGION");
        if (!region)
                region = "us-east-1";
        const char *ep = endpoint && *endpoint ? endpoint : NULL;
        if (!ep)
                ep = env("AWS_ENDPOINT_URL_S3");
        if (!ep)
                ep = env("AWS_ENDPOINT_URL");
        int err =
            s3_endpoint_urls(ep, s3->bucket, region, &s3->obj_base, &s3->bucket_url, msg, msglen);
        if (err)
                return err;
        if (asprintf(&s3->sigv4, "aws:amz:%s:s3", region) < 0)
                s3->sigv4 = NULL;
        if (asprintf(&s3->userpwd, "%s:%s", key, secret) < 0)
                s3->userpwd = NULL;
        if (token && asprintf(&s3->token_hdr, "x-amz-security-token: %s", token) < 0)
                s3->token_hdr = NULL;
        if (!s3->sigv4 || !s3->userpwd || (token && !s3->token_hdr)) {
                snprintf(msg, msglen, "out of memory");
                return -ENOMEM;
        }
        return 0;
}

static int check_part_size(struct s3 *s3, uint64_t part_size, char *msg, size_t msglen)
{
        if (!part_size)
                part_size = 64ull << 20;
        if (part_size < S3_PART_MIN || part_size > S3_PART_MAX) {
                snprintf(msg, msglen,
                         "--part-size %" PRIu64 " bytes: S3 takes parts of 5MiB to 5GiB",
                         part_size);
                return -EINVAL;
        }
        s3->sink.part_size = part_size;
        s3->sink.max_size = s3_max_size(part_size);
        return 0;
}

static int start_checks(struct s3 *s3, char *msg, size_t msglen)
{
        struct admin a = {.s3 = s3, .sync = {.msg = msg, .msglen = msglen}};
        int err = s3_req_init(&a.req, s3);
        if (!err)
                err = s3_req_init(&a.del, s3);
        if (!err && !(a.sync.multi = curl_multi_init()))
                err = -ENOMEM;
        if (err)
                snprintf(msg, msglen, "out of memory");
        if (!err)
                err = check_bucket(&a);
        if (!err && !s3->cfg_check_only) /* a dry run changes nothing */
                err = sweep(&a);
        s3_req_free(&a.req);
        s3_req_free(&a.del);
        if (a.sync.multi)
                curl_multi_cleanup(a.sync.multi);
        return err;
}

void s3_name_option(char *msg, size_t msglen, const char *what)
{
        size_t k = strlen("--dest");
        if (!what || strncmp(msg, "--dest ", k + 1))
                return;
        size_t w = strlen(what), n = strlen(msg);
        if (n - k + w >= msglen)
                n = msglen - 1 - w + k;
        memmove(msg + w, msg + k, n - k);
        memcpy(msg, what, w);
        msg[n - k + w] = 0;
}

int sink_s3_open(struct sink **out, const struct sink_config *cfg, char *msg, size_t msglen)
{
        struct s3 *s3 = calloc(1, sizeof *s3);
        if (!s3) {
                snprintf(msg, msglen, "out of memory");
                return -ENOMEM;
        }
        s3->sink.ops = &s3_sink_ops;
        s3->sink.kind = "s3";
        s3->sink.lookup_etag = true;
        s3->sink.reads_staging = true; /* uploaded from the staging file */
        s3->stall_s = cfg->stall_timeout_s ? (long)cfg->stall_timeout_s : 60L;
        s3->max_upload_rate = cfg->max_upload_rate;
        s3->interrupted = cfg->interrupted;
        s3->cfg_check_only = cfg->check_only;
        s3->dest = strdup(cfg->dest);
        s3->ca_file = cfg->ca_file ? strdup(cfg->ca_file) : NULL;
        int err = !s3->dest || (cfg->ca_file && !s3->ca_file) ? -ENOMEM : 0;
        if (err)
                snprintf(msg, msglen, "out of memory");
        if (!err)
                err = s3_dest_parse(cfg->dest, &s3->bucket, &s3->prefix, msg, msglen);
        if (!err)
                err = check_part_size(s3, cfg->part_size, msg, msglen);
        if (!err)
                err = s3_configure(s3, cfg->s3_endpoint, msg, msglen);
        if (!err) {
                s3_xml_init();
                err = start_checks(s3, msg, msglen);
        }
        if (err) {
                s3_name_option(msg, msglen, cfg->what);
                s3_sink_close(&s3->sink);
                return err;
        }
        *out = &s3->sink;
        return 0;
}

void s3_sink_close(struct sink *s)
{
        struct s3 *s3 = container_of(s, struct s3, sink);
        s3_clear(s3);
        free(s3);
}

void s3_clear(struct s3 *s3)
{
        util_free_secret(s3->userpwd);
        util_free_secret(s3->token_hdr);
        free(s3->sigv4);
        free(s3->dest);
        free(s3->bucket);
        free(s3->prefix);
        free(s3->obj_base);
        free(s3->bucket_url);
        free(s3->ca_file);
        memset(s3, 0, sizeof *s3);
}
