/* A slot's deliveries and lookups. An object appears whole or not at all: up to the part
 * size it goes in one PUT; larger, by a multipart upload whose parts (S3_PARALLEL at once)
 * stream from the staging file through the worker's loop, and which is aborted on any
 * failure before the engine hears of it, so that a retry never races the abort of its
 * predecessor.
 *
 * Integrity: the engine computed the plaintext's SHA-256 (and each part's) while it
 * staged the object. The same digest serves twice: as x-amz-content-sha256, so the
 * signature covers the very bytes and S3 refuses a body that does not hash to it, and as
 * x-amz-checksum-sha256, stored with the object.
 *
 * Quitting (abort): transfers are dropped at once; an upload in progress gets its
 * AbortMultipartUpload sent on the worker's multi, every slot's at the same time, each
 * with a short timeout, the worker held meanwhile. What does not make it is aborted by
 * the next run's start-up sweep. */
#include "s3_int.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quire/base/util.h"

#define ABORT_TIMEOUT_MS 30000L /* AbortMultipartUpload after a failure */
#define QUIT_TIMEOUT_MS  2000L  /* AbortMultipartUpload when the run is quitting */

enum phase { IDLE, LOOKUP, PUT, CREATE, PARTS, COMPLETE, ABORTING, ENDING };

struct sink_slot {
        struct s3 *s3;
        struct worker *w;
        enum phase phase;
        struct delivery *d; /* or */
        struct lookup *lk;
        char key[S3_KEY_MAX + 1];
        char url[S3_URL_MAX]; /* the object's, without a query */
        char upload_id[S3_ID_MAX + 1];
        struct s3_req ctl; /* HEAD, Create..., Complete..., Abort... */
        struct s3_req parts[S3_PARALLEL];
        unsigned nparts, next_part, parts_done;
        char (*etags)[HTTP_ETAG_MAX];
        unsigned etags_cap;
        struct s3_doc doc;
        /* How it ends: the first failure (later ones are its consequences), told to the
         * engine from a loop turn of its own, never from inside deliver() or lookup(). */
        bool failing, transient;
        int rc;
        char detail[512];
        struct loop_op end_op;
        bool holding; /* a quit-time AbortMultipartUpload holds the worker */
};

uint64_t s3_max_size(uint64_t part_size)
{
        uint64_t max = part_size * S3_PARTS_MAX;
        return max < S3_OBJECT_MAX ? max : S3_OBJECT_MAX;
}

/* ---- endings ------------------------------------------------------------------------- */

static void fail(struct sink_slot *ss, int rc, bool transient, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(struct sink_slot *ss, int rc, bool transient, const char *fmt, ...)
{
        if (ss->failing)
                return;
        ss->failing = true;
        ss->rc = rc;
        ss->transient = transient;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ss->detail, sizeof ss->detail, fmt, ap);
        va_end(ap);
}

static void on_end(struct loop_op *op, int res)
{
        struct sink_slot *ss = container_of(op, struct sink_slot, end_op);
        struct delivery *d = ss->d;
        struct lookup *lk = ss->lk;
        int rc = ss->failing ? ss->rc : 0;
        ss->phase = IDLE;
        ss->d = NULL;
        ss->lk = NULL;
        if (d)
                d->done(d, rc, ss->failing && ss->transient, ss->failing ? ss->detail : NULL);
        else
                lk->done(lk, rc, ss->failing ? ss->detail : NULL);
}

static void end(struct sink_slot *ss)
{
        ss->phase = ENDING;
        loop_timer(worker_loop(ss->w), &ss->end_op, 0);
}

/* "s3 OP KEY: why" from a finished request; 0 when it succeeded. */
static int judge(struct sink_slot *ss, struct s3_req *q, CURLcode rc, const char *op)
{
        char why[400];
        bool transient;
        int err = s3_req_verdict(q, rc, why, sizeof why, &transient);
        if (err)
                fail(ss, err, transient, "s3 %s %.200s: %s", op, ss->key, why);
        return err;
}

/* ---- the failure path's abort -------------------------------------------------------- */

static void warn_abort(struct sink_slot *ss, struct s3_req *q, CURLcode rc)
{
        char why[400];
        bool transient;
        /* 404 NoSuchUpload: it is gone already, which is what we wanted. */
        if (rc == CURLE_OK && q->head.status == 404)
                return;
        if (s3_req_verdict(q, rc, why, sizeof why, &transient))
                qlog("s3 AbortMultipartUpload %.200s: %s; the next run's start aborts it", ss->key,
                     why);
}

/* Sends the AbortMultipartUpload of the slot's upload on ctl. False when it cannot go
 * (said in a log line): the upload is then left to the next run's start-up sweep. */
static bool abort_send(struct sink_slot *ss, long timeout_ms,
                       void (*done)(struct s3_req *q, CURLcode rc))
{
        char url[S3_URL_MAX];
        const char *query[] = {"uploadId", ss->upload_id, NULL};
        ss->ctl.done = done;
        int err = s3_url_query(url, sizeof url, ss->url, query);
        if (!err)
                err = s3_req_setup(&ss->ctl, "DELETE", url, S3_EMPTY_SHA);
        if (!err && curl_easy_setopt(ss->ctl.x.easy, CURLOPT_TIMEOUT_MS, timeout_ms) != CURLE_OK)
                err = -ENOMEM;
        if (!err)
                err = s3_req_start(&ss->ctl, ss->w);
        if (err) {
                qlog("s3 AbortMultipartUpload %.200s: %s; the next run's start aborts it", ss->key,
                     strerror(-err));
                ss->upload_id[0] = 0;
        }
        return !err;
}

static void on_abort_done(struct s3_req *q, CURLcode rc)
{
        struct sink_slot *ss = q->owner;
        warn_abort(ss, q, rc);
        ss->upload_id[0] = 0;
        end(ss);
}

static void abort_begin(struct sink_slot *ss)
{
        ss->phase = ABORTING;
        if (!abort_send(ss, worker_aborting(ss->w) ? QUIT_TIMEOUT_MS : ABORT_TIMEOUT_MS,
                        on_abort_done))
                end(ss);
}

/* ---- single PUT ---------------------------------------------------------------------- */

static void progress(struct sink_slot *ss);

static uint64_t rate_per_transfer(const struct sink_slot *ss)
{
        unsigned par = ss->nparts < S3_PARALLEL ? ss->nparts : S3_PARALLEL;
        uint64_t r = ss->s3->max_upload_rate;
        /* --max-upload-rate is per object: its parts in flight share it. */
        return r && r / par == 0 ? 1 : r / par;
}

/* PUT or UploadPart of [off, off+len) of the staging file, digest the SHA-256 of it. */
static int send_body(struct sink_slot *ss, struct s3_req *q, const char *url, uint64_t off,
                     uint64_t len, const uint8_t digest[32])
{
        char hex[65], b64[45];
        util_hex_encode(digest, 32, hex);
        int err = s3_req_setup(q, "PUT", url, hex);
        if (err)
                return err;
        EVP_EncodeBlock((unsigned char *)b64, digest, 32);
        s3_req_header(q, "x-amz-checksum-sha256: %s", b64);
        if (!q->part) {
                const struct delivery *d = ss->d;
                if (d->content_type)
                        s3_req_header(q, "Content-Type: %s", d->content_type);
                s3_req_meta(q, d->meta, d->nmeta);
        }
        err = s3_req_body(q, worker_loop(ss->w), ss->d->fd, off, len, rate_per_transfer(ss));
        return err ? err : s3_req_start(q, ss->w);
}

static void on_put_done(struct s3_req *q, CURLcode rc)
{
        struct sink_slot *ss = q->owner;
        judge(ss, q, rc, "PUT");
        progress(ss);
}

static void put_begin(struct sink_slot *ss)
{
        struct s3_req *q = &ss->parts[0];
        ss->phase = PUT;
        q->part = 0;
        q->done = on_put_done;
        int err = send_body(ss, q, ss->url, 0, ss->d->size, ss->d->sha256);
        if (err)
                fail(ss, err, true, "s3 PUT %.200s: %s", ss->key, strerror(-err));
        progress(ss);
}

/* ---- multipart ----------------------------------------------------------------------- */

static void on_part_done(struct s3_req *q, CURLcode rc)
{
        struct sink_slot *ss = q->owner;
        char op[32];
        snprintf(op, sizeof op, "UploadPart %u", q->part);
        /* The parts in flight are let finish (no new one starts): S3 may keep a part whose
         * upload was still running when the abort arrived. */
        if (judge(ss, q, rc, op) == 0) {
                if (q->head.etag[0]) {
                        memcpy(ss->etags[q->part - 1], q->head.etag, HTTP_ETAG_MAX);
                        ss->parts_done++;
                } else {
                        fail(ss, -EPROTO, true, "s3 %s %.200s: no ETag in the answer", op, ss->key);
                }
        }
        progress(ss);
}

static void part_begin(struct sink_slot *ss, struct s3_req *q, unsigned part)
{
        uint64_t size = ss->s3->sink.part_size, off = (uint64_t)(part - 1) * size;
        uint64_t len = ss->d->size - off < size ? ss->d->size - off : size;
        char url[S3_URL_MAX], num[16];
        snprintf(num, sizeof num, "%u", part);
        const char *query[] = {"partNumber", num, "uploadId", ss->upload_id, NULL};
        q->part = part;
        q->done = on_part_done;
        int err = s3_req_buffers(q);
        if (!err)
                err = s3_url_query(url, sizeof url, ss->url, query);
        if (!err)
                err = send_body(ss, q, url, off, len, ss->d->part_sha256[part - 1]);
        if (err)
                fail(ss, err, true, "s3 UploadPart %u %.200s: %s", part, ss->key, strerror(-err));
}

static void on_complete_done(struct s3_req *q, CURLcode rc)
{
        struct sink_slot *ss = q->owner;
        char raw[256], code[64];
        if (judge(ss, q, rc, "CompleteMultipartUpload") == 0) {
                const char *root = s3_xml_root(&q->xml);
                /* A 200 may still carry an <Error>: S3 answers before it has finished, and
                 * only the element that follows tells. */
                if (!strcmp(root, "CompleteMultipartUploadResult")) {
                        ss->upload_id[0] = 0;
                        end(ss);
                        return;
                }
                if (!strcmp(root, "Error") && s3_xml_child(&q->xml, "Code", raw, sizeof raw) == 0) {
                        snprintf(code, sizeof code, "%.63s", raw);
                        code[strspn(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")] =
                            0;
                        fail(ss, -EIO, s3_code_transient(code),
                             "s3 CompleteMultipartUpload %.200s: HTTP 200 then Error %s", ss->key,
                             code);
                } else {
                        fail(ss, -EPROTO, true,
                             "s3 CompleteMultipartUpload %.200s: HTTP 200 without a "
                             "CompleteMultipartUploadResult",
                             ss->key);
                }
        }
        abort_begin(ss);
}

static void complete_begin(struct sink_slot *ss)
{
        struct s3_req *q = &ss->ctl;
        char url[S3_URL_MAX], hex[65];
        uint8_t sha[32];
        size_t len = 0;
        const char *body = NULL;
        const char *query[] = {"uploadId", ss->upload_id, NULL};
        ss->phase = COMPLETE;
        q->done = on_complete_done;
        int err = s3_doc_complete(&ss->doc, ss->nparts, ss->etags, ss->d->part_sha256);
        if (!err) {
                body = s3_doc_data(&ss->doc, &len);
                err = EVP_Digest(body, len, sha, NULL, EVP_sha256(), NULL) ? 0 : -ENOMEM;
        }
        if (!err)
                err = s3_url_query(url, sizeof url, ss->url, query);
        if (!err) {
                util_hex_encode(sha, sizeof sha, hex);
                err = s3_req_setup(q, "POST", url, hex);
        }
        if (!err) {
                s3_req_header(q, "Content-Type: application/xml");
                err = s3_req_post(q, body, len);
        }
        if (!err)
                err = s3_req_start(q, ss->w);
        if (err) {
                fail(ss, err, true, "s3 CompleteMultipartUpload %.200s: %s", ss->key,
                     strerror(-err));
                abort_begin(ss);
        }
}

/* Starts parts while there are free transfers and parts to send; completes or aborts
 * the upload once every transfer has settled. */
static void parts_pump(struct sink_slot *ss)
{
        bool busy = false;
        for (unsigned i = 0; i < S3_PARALLEL; i++) {
                struct s3_req *q = &ss->parts[i];
                if (!s3_req_busy(q) && !ss->failing && ss->next_part <= ss->nparts)
                        part_begin(ss, q, ss->next_part++);
                busy |= s3_req_busy(q);
        }
        if (busy)
                return;
        if (ss->failing)
                abort_begin(ss);
        else if (ss->parts_done == ss->nparts)
                complete_begin(ss);
}

/* Moves a delivery on after any completion (transfer or staging read). */
static void progress(struct sink_slot *ss)
{
        if (ss->phase == PUT && !s3_req_busy(&ss->parts[0]))
                end(ss);
        else if (ss->phase == PARTS)
                parts_pump(ss);
}

static void on_idle(struct s3_req *q)
{
        progress(q->owner);
}

static void on_create_done(struct s3_req *q, CURLcode rc)
{
        struct sink_slot *ss = q->owner;
        if (judge(ss, q, rc, "CreateMultipartUpload")) {
                end(ss);
                return;
        }
        if (strcmp(s3_xml_root(&q->xml), "InitiateMultipartUploadResult") ||
            s3_xml_child(&q->xml, "UploadId", ss->upload_id, sizeof ss->upload_id) < 0 ||
            !ss->upload_id[0] || strlen(ss->upload_id) >= S3_ID_MAX) {
                ss->upload_id[0] = 0;
                fail(ss, -EPROTO, true,
                     "s3 CreateMultipartUpload %.200s: no UploadId in the answer", ss->key);
                end(ss);
                return;
        }
        ss->phase = PARTS;
        ss->next_part = 1;
        ss->parts_done = 0;
        parts_pump(ss);
}

static void create_begin(struct sink_slot *ss)
{
        struct s3_req *q = &ss->ctl;
        char url[S3_URL_MAX];
        const char *query[] = {"uploads", "", NULL};
        const struct delivery *d = ss->d;
        ss->phase = CREATE;
        q->done = on_create_done;
        int err = s3_url_query(url, sizeof url, ss->url, query);
        if (!err)
                err = s3_req_setup(q, "POST", url, S3_EMPTY_SHA);
        if (!err) {
                /* The parts carry SHA-256 checksums; S3 wants the algorithm named first. */
                s3_req_header(q, "x-amz-checksum-algorithm: SHA256");
                if (d->content_type)
                        s3_req_header(q, "Content-Type: %s", d->content_type);
                s3_req_meta(q, d->meta, d->nmeta);
                err = s3_req_post(q, "", 0);
        }
        if (!err)
                err = s3_req_start(q, ss->w);
        if (err) {
                fail(ss, err, true, "s3 CreateMultipartUpload %.200s: %s", ss->key, strerror(-err));
                end(ss);
        }
}

/* ---- deliver --------------------------------------------------------------------------- */

/* The key PREFIX/NAME and its URL; -EINVAL for a name that is no single path segment. */
static int target(struct sink_slot *ss, const char *name)
{
        const struct s3 *s3 = ss->s3;
        snprintf(ss->key, sizeof ss->key, "%.200s", name);
        if (!name[0] || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
                return -EINVAL;
        int n =
            snprintf(ss->key, sizeof ss->key, "%s%s%s", s3->prefix, s3->prefix[0] ? "/" : "", name);
        if (n < 0 || (size_t)n >= sizeof ss->key)
                return -ENAMETOOLONG;
        char *esc = s3_escape_path(ss->key);
        if (!esc)
                return -ENOMEM;
        n = snprintf(ss->url, sizeof ss->url, "%s/%s", s3->obj_base, esc);
        free(esc);
        return n < 0 || (size_t)n >= sizeof ss->url ? -ENAMETOOLONG : 0;
}

static int plan_parts(struct sink_slot *ss)
{
        const struct delivery *d = ss->d;
        uint64_t size = ss->s3->sink.part_size;
        ss->nparts = d->size > size ? (unsigned)((d->size + size - 1) / size) : 1;
        if (ss->nparts == 1)
                return 0;
        /* The engine hashed the object in exactly these pieces. */
        assert(d->part_sha256 && d->nparts == ss->nparts);
        if (ss->nparts > ss->etags_cap) {
                void *p = realloc(ss->etags, ss->nparts * sizeof *ss->etags);
                if (!p)
                        return -ENOMEM;
                ss->etags = p;
                ss->etags_cap = ss->nparts;
        }
        return 0;
}

static void s3_deliver(struct sink_slot *ss, struct delivery *d)
{
        assert(ss->phase == IDLE);
        char why[400];
        ss->d = d;
        ss->failing = false;
        ss->upload_id[0] = 0;
        int err = target(ss, d->name);
        if (err) {
                fail(ss, err, false, "s3 %.200s: %s", ss->key,
                     err == -EINVAL ? "not an object name" : "key longer than 1024 bytes");
        } else if (d->size > ss->s3->sink.max_size) {
                fail(ss, -EFBIG, false,
                     "s3 %.200s: %" PRIu64 " bytes; at --part-size %" PRIu64
                     " an object takes at most %" PRIu64,
                     ss->key, d->size, ss->s3->sink.part_size, ss->s3->sink.max_size);
        } else if (s3_meta_check(d->meta, d->nmeta, why, sizeof why) < 0) {
                fail(ss, -EINVAL, false, "s3 %.200s: %s", ss->key, why);
        } else if ((err = plan_parts(ss)) < 0 || (err = s3_req_buffers(&ss->parts[0])) < 0) {
                fail(ss, err, true, "s3 %.200s: out of memory", ss->key);
        }
        if (ss->failing) {
                end(ss);
                return;
        }
        /* Advice only: the reads are right without it. */
        (void)posix_fadvise(d->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        if (ss->nparts > 1)
                create_begin(ss);
        else
                put_begin(ss);
}

/* ---- lookup ---------------------------------------------------------------------------- */

static void on_head_done(struct s3_req *q, CURLcode rc)
{
        struct sink_slot *ss = q->owner;
        struct lookup *lk = ss->lk;
        if (rc == CURLE_OK && q->head.status == 404) {
                lk->found = false;
        } else if (judge(ss, q, rc, "HEAD") == 0) {
                lk->found = true;
                snprintf(lk->source_etag, sizeof lk->source_etag, "%s", q->meta_etag);
        }
        end(ss);
}

static void s3_lookup(struct sink_slot *ss, struct lookup *lk)
{
        assert(ss->phase == IDLE);
        struct s3_req *q = &ss->ctl;
        ss->lk = lk;
        ss->failing = false;
        lk->found = false;
        lk->source_etag[0] = 0;
        ss->phase = LOOKUP;
        q->done = on_head_done;
        int err = target(ss, lk->name);
        if (!err)
                err = s3_req_setup(q, "HEAD", ss->url, S3_EMPTY_SHA);
        if (!err)
                err = s3_req_start(q, ss->w);
        if (err) {
                fail(ss, err, err != -EINVAL && err != -ENAMETOOLONG, "s3 HEAD %.200s: %s", ss->key,
                     strerror(-err));
                end(ss);
        }
}

/* ---- abort (the run is quitting) --------------------------------------------------------- */

static void on_quit_abort_done(struct s3_req *q, CURLcode rc)
{
        struct sink_slot *ss = q->owner;
        warn_abort(ss, q, rc);
        ss->upload_id[0] = 0;
        ss->holding = false;
        worker_release(ss->w);
}

static void s3_abort(struct sink_slot *ss)
{
        struct loop *l = worker_loop(ss->w);
        loop_cancel(l, &ss->end_op);
        s3_req_drop(&ss->ctl, ss->w);
        for (unsigned i = 0; i < S3_PARALLEL; i++)
                s3_req_drop(&ss->parts[i], ss->w);
        /* Staging reads still queued must reach the kernel before the engine closes the
         * file; they land in buffers the slot keeps. */
        loop_flush(l);
        ss->phase = IDLE;
        ss->d = NULL;
        ss->lk = NULL;
        if (ss->upload_id[0] && abort_send(ss, QUIT_TIMEOUT_MS, on_quit_abort_done)) {
                ss->holding = true;
                worker_hold(ss->w);
        }
}

/* ---- slots ------------------------------------------------------------------------------- */

static void s3_slot_free(struct sink_slot *ss);

static int s3_slot_new(struct sink *s, struct worker *w, struct sink_slot **out)
{
        struct sink_slot *ss = calloc(1, sizeof *ss);
        if (!ss)
                return -ENOMEM;
        ss->s3 = container_of(s, struct s3, sink);
        ss->w = w;
        ss->end_op.fn = on_end;
        int err = s3_req_init(&ss->ctl, ss->s3);
        ss->ctl.owner = ss;
        for (unsigned i = 0; i < S3_PARALLEL; i++) {
                if (!err)
                        err = s3_req_init(&ss->parts[i], ss->s3);
                ss->parts[i].owner = ss;
                ss->parts[i].idle = on_idle;
        }
        if (err) {
                s3_slot_free(ss);
                return err;
        }
        *out = ss;
        return 0;
}

/* On the worker's thread, its loop and multi still there, no staging read in flight. */
static void s3_slot_free(struct sink_slot *ss)
{
        if (ss->end_op.timer_armed)
                loop_cancel(worker_loop(ss->w), &ss->end_op);
        s3_req_drop(&ss->ctl, ss->w);
        if (ss->holding)
                worker_release(ss->w);
        s3_req_free(&ss->ctl);
        for (unsigned i = 0; i < S3_PARALLEL; i++) {
                s3_req_drop(&ss->parts[i], ss->w);
                s3_req_free(&ss->parts[i]);
        }
        s3_doc_free(&ss->doc);
        free(ss->etags);
        free(ss);
}

const struct sink_ops s3_sink_ops = {
    .slot_new = s3_slot_new,
    .slot_free = s3_slot_free,
    .deliver = s3_deliver,
    .lookup = s3_lookup,
    .abort = s3_abort,
    .close = s3_sink_close,
};
