/* The S3 sink's private parts, one concern a file:
 *   url.c     s3://BUCKET[/PREFIX], the endpoint, object URLs, sorted query strings
 *   xml.c     every XML answer S3 gives (libxml2's push parser), the Complete document
 *   req.c     one request: libcurl baseline, SigV4, header lines, answers, the verdict,
 *             bodies streamed from the staging file through the worker's loop
 *   upload.c  a slot's state machine: lookup, single PUT, multipart, abort
 *   admin.c   sink_s3_open: credentials, endpoint, bucket check, sweeping leftovers
 *
 * Threads: struct s3 is written by sink_s3_open on the main thread and only read after;
 * a slot and its requests belong to one worker thread. */
#ifndef QUIRE_IO_S3_INT_H
#define QUIRE_IO_S3_INT_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quire/base/util.h"
#include "quire/engine/loop.h"
#include "quire/engine/sink.h"
#include "quire/engine/source.h"
#include "quire/engine/worker.h"
#include "quire/io/http.h"

#ifndef container_of
#endif

/* S3's own limits. */
#define S3_KEY_MAX    1024 /* bytes of an object key */
#define S3_PART_MIN   (5ull << 20)
#define S3_PART_MAX   (5ull << 30)
#define S3_PARTS_MAX  10000u
#define S3_OBJECT_MAX (5ull << 40)
#define S3_META_MAX   2048 /* user metadata: names and values, in bytes */

#define S3_PREFIX_MAX 900          /* leaves room for the object's own name */
#define S3_URL_MAX    8192         /* a URL with an encoded key and upload id */
#define S3_ID_MAX     1024         /* an upload id as S3 gives it */
#define S3_XML_MAX    (1u << 20)   /* bytes of one answer's body we parse */
#define S3_PARALLEL   4            /* parts of one object in flight at once */
#define S3_BUF_SIZE   (256 * 1024) /* one staging read; two per transfer */
#define S3_EMPTY_SHA  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* The sink: read-only once sink_s3_open has returned. */
struct s3 {
        struct sink sink; /* first: the engine holds a struct sink * */
        char *dest;       /* as typed, for messages */
        char *bucket;
        char *prefix;     /* without surrounding '/'; may be "" */
        char *obj_base;   /* an object's URL is this, '/', then its encoded key */
        char *bucket_url; /* bucket-level requests: this, then '?' and a query */
        char *sigv4;      /* "aws:amz:REGION:s3" */
        char *userpwd;    /* KEY:SECRET, handed to libcurl only, never printed */
        char *token_hdr;  /* "x-amz-security-token: ..." or NULL */
        char *ca_file;
        long stall_s;
        uint64_t max_upload_rate;
        bool (*interrupted)(void);
        bool cfg_check_only; /* a dry run: the start-up sweep is skipped */
};

/* ---- url.c -------------------------------------------------------------------------- */

/* s3://BUCKET[/PREFIX] into bucket and prefix (malloc'd). A prefix with a "." or ".."
 * segment is refused: libcurl would resolve it and the keys would land outside it. 0, or
 * -EINVAL / -ENOMEM with msg "--dest ...: why". */
int s3_dest_parse(const char *dest, char **bucket, char **prefix, char *msg, size_t msglen);
/* The object and bucket URLs for bucket on endpoint (path-style; NULL: AWS's
 * virtual-hosted https://BUCKET.s3.REGION.amazonaws.com). 0, or -EINVAL with msg. */
int s3_endpoint_urls(const char *endpoint, const char *bucket, const char *region, char **obj_base,
                     char **bucket_url, char *msg, size_t msglen);
/* A key's segments URL-encoded, '/' kept (malloc'd), or NULL when out of memory. */
char *s3_escape_path(const char *key);
/* out = base "?" name=value&... from pairs {name, value, ..., NULL}, each value encoded
 * as SigV4 wants (RFC 3986). Names must come sorted: libcurl 7.88 signs the query as
 * written. 0, -ENAMETOOLONG or -ENOMEM. */
int s3_url_query(char *out, size_t outlen, const char *base, const char *const *pairs);
/* Whether an unfinished upload's key looks like one of ours: PREFIX/NAME.tar.gz (or a
 * derived output's NAME_ocr.jsonl.gz, NAME_marc.json) with no further '/' (the start-up
 * sweep aborts only those). */
bool s3_key_ours(const char *prefix, const char *key);

/* ---- xml.c ---------------------------------------------------------------------------- */

struct _xmlParserCtxt;
struct _xmlDoc;

/* One answer's body, parsed as it arrives. Whitespace before the document (S3's
 * keep-alive bytes on a slow CompleteMultipartUpload) is skipped. */
struct s3_xml {
        struct _xmlParserCtxt *ctxt;
        struct _xmlDoc *doc;
        size_t fed;
};

/* Call once on the main thread before any worker parses (libxml2's rule). */
void s3_xml_init(void);
void s3_xml_reset(struct s3_xml *x);
/* 0, -EMSGSIZE past S3_XML_MAX bytes, -ENOMEM. */
int s3_xml_feed(struct s3_xml *x, const char *p, size_t n);
/* Ends the document: 0 when well-formed (and without a DTD), -ENODATA when the body was
 * empty or blank, -EBADMSG otherwise. Idempotent. */
int s3_xml_end(struct s3_xml *x);
/* The root element's local name, or "" without a document. */
const char *s3_xml_root(const struct s3_xml *x);
/* The text of the root's child element `name`, cut to outlen-1 bytes. 0, -ENOENT. */
int s3_xml_child(const struct s3_xml *x, const char *name, char *out, size_t outlen);
/* Calls fn for every <Upload> of a ListMultipartUploadsResult with its Key and UploadId
 * (S3's url-encoding undone when the answer says EncodingType url); stops at fn's first
 * non-zero return, which it returns. */
int s3_xml_uploads(const struct s3_xml *x, int (*fn)(void *ctx, const char *key, const char *id),
                   void *ctx);
/* Calls fn for every <Contents> of a ListBucketResult (ListObjectsV2) with its Key
 * (decoded as above) and Size (UINT64_MAX when absent or unreadable); stops at fn's first
 * non-zero return, which it returns. */
int s3_xml_objects(const struct s3_xml *x, int (*fn)(void *ctx, const char *key, uint64_t size),
                   void *ctx);
/* The NextKeyMarker of a listing page, decoded like the keys. 0, -ENOENT, -ENOMEM. */
int s3_xml_next_key_marker(const struct s3_xml *x, char *out, size_t outlen);

/* The CompleteMultipartUpload document: parts 1..n with their ETags and SHA-256s. */
struct s3_doc {
        void *buf; /* xmlBuffer */
};
int s3_doc_complete(struct s3_doc *d, unsigned n, const char (*etags)[HTTP_ETAG_MAX],
                    const uint8_t (*sha256)[32]);
const char *s3_doc_data(const struct s3_doc *d, size_t *len);
void s3_doc_free(struct s3_doc *d);

/* ---- req.c ---------------------------------------------------------------------------- */

struct s3_req;

/* One staging read in flight or ready to be sent. */
struct s3_rbuf {
        struct loop_op op;
        struct s3_req *req;
        uint8_t *data;
        uint64_t file_off;
        size_t want, fill, pos;
        bool ready;
};

/* One HTTP request and, for PUT and UploadPart, its body streamed from the staging file
 * by two alternating buffers: libcurl sends one while the loop reads the next. */
struct s3_req {
        struct xfer x;
        const struct s3 *s3;
        /* Called from the loop when the transfer ends (active is false by then), and
         * idle() when the last staging read of a transfer that ended lands. */
        void (*done)(struct s3_req *q, CURLcode rc);
        void (*idle)(struct s3_req *q);
        void *owner;
        unsigned part; /* UploadPart's number; 0 for other requests */
        struct curl_slist *hdrs;
        bool hdr_oom;
        bool active; /* on a multi handle */
        char errbuf[CURL_ERROR_SIZE];
        struct http_head head;
        char meta_etag[SINK_ETAG_MAX]; /* the source ETag stored with a HEAD's object */
        int meta_rank;                 /* 0 none, 1 encrypted-etag, 2 encrypted_etag */
        struct s3_xml xml;
        int xml_err; /* a body that could not be taken (too large, no memory) */
        /* body from the staging file */
        struct loop *loop;
        int fd;
        uint64_t off, len;  /* range of the file */
        uint64_t next, fed; /* next offset to read, bytes handed to libcurl (relative) */
        struct s3_rbuf buf[2];
        unsigned cur, reads_pending;
        int read_error;
        bool paused, rewinding;
        uint64_t rewind_to;
};

/* 0 or -ENOMEM. */
int s3_req_init(struct s3_req *q, const struct s3 *s3);
void s3_req_free(struct s3_req *q);
/* The two staging buffers, allocated on first use and kept. 0 or -ENOMEM. */
int s3_req_buffers(struct s3_req *q);
bool s3_req_busy(const struct s3_req *q);
/* Resets the handle for method on url: the baseline, SigV4, the payload's SHA-256 (hex),
 * the session token, stall detection. 0 or -ENOMEM / -EINVAL. */
int s3_req_setup(struct s3_req *q, const char *method, const char *url, const char *payload_sha);
void s3_req_header(struct s3_req *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* x-amz-meta-NAME for every entry (empty values are left out: libcurl would drop the line
 * yet sign it). Run s3_meta_check first. */
void s3_req_meta(struct s3_req *q, const struct delivery_meta *meta, unsigned n);
/* A POST of a small body in memory that must outlive the transfer. */
int s3_req_post(struct s3_req *q, const char *body, size_t len);
/* A PUT whose body is bytes [off, off+len) of fd, read through loop; rate 0: no limit. */
int s3_req_body(struct s3_req *q, struct loop *loop, int fd, uint64_t off, uint64_t len,
                uint64_t rate);
/* Hands the request to the worker's multi handle. 0 or -errno (then done() never comes). */
int s3_req_start(struct s3_req *q, struct worker *w);
/* Stops the transfer (done() is not called); staging reads in flight still land. */
void s3_req_drop(struct s3_req *q, struct worker *w);
/* Ends the answer's body; for transfers not run through a worker (start-up). */
void s3_req_settle(struct s3_req *q);
/* The verdict on a finished request: 0 for a 2xx answer, else -EIO with why ("HTTP 403
 * AccessDenied: ...", libcurl's message) and whether a retry may help. */
int s3_req_verdict(struct s3_req *q, CURLcode rc, char *why, size_t len, bool *transient);
/* Whether metadata can travel as HTTP header lines and fits S3's 2 KB: 0, or -EINVAL
 * with why. */
int s3_meta_check(const struct delivery_meta *meta, unsigned n, char *why, size_t len);
/* An S3 error code that says "try again". */
bool s3_code_transient(const char *code);

/* ---- admin.c: what the sink's start and the source share --------------------------- */

/* Synchronous requests on a private multi handle (start-up checks, listings), woken every
 * 100 ms to ask stop(stop_ctx) (NULL: s3->interrupted). */
struct s3_sync {
        CURLM *multi;
        bool (*stop)(void *ctx);
        void *stop_ctx;
        char *msg; /* "WHAT: why" of the last failure */
        size_t msglen;
        bool transient; /* the last failure may pass if tried again */
};

/* Credentials, region and addressing from the environment and the endpoint option (NULL:
 * AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS virtual-hosted) into s3, whose bucket
 * and dest are set. 0, or -EINVAL / -ENOMEM with msg "--dest DEST: why". */
int s3_configure(struct s3 *s3, const char *endpoint, char *msg, size_t msglen);
/* One request run to its end with an empty body: 0, or -EINTR / -EHOSTUNREACH / -EIO with
 * y->msg "WHAT: why" (the URL named when it could not be reached) and y->transient. */
int s3_sync_request(struct s3_sync *y, struct s3_req *q, const char *method, const char *url,
                    long timeout_ms, const char *what);
/* Messages name "--dest"; put what (another option, or a word) in its place. */
void s3_name_option(char *msg, size_t msglen, const char *what);
/* Frees what struct s3 holds (secrets wiped), not s3 itself. */
void s3_clear(struct s3 *s3);

/* ---- source.c, list.c: archives already stored, read back (quire extract) ---------- */

struct s3_source {
        struct source base; /* first: the engine holds a struct source * */
        struct s3 s3;       /* the bucket, prefix and signing, as the sink has them */
        char *url;          /* s3://BUCKET[/PREFIX] as typed, for messages */
};

/* ---- upload.c ------------------------------------------------------------------------- */

extern const struct sink_ops s3_sink_ops;
/* admin.c: frees what sink_s3_open made, after every slot is gone. */
void s3_sink_close(struct sink *s);
/* The largest object at this part size: 10,000 parts, at most S3's 5 TiB. */
uint64_t s3_max_size(uint64_t part_size);

#endif
