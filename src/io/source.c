/* The source side of a book: GET over HTTP(S) with libcurl, or reads of a local file. */
#include "quire/io/source.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "quire/io/auth.h"
#include "quire/engine/engine.h"
#include "quire/base/util.h"

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

/* Plaintext out can exceed ciphertext in by the decryptor's held-back MDC tail. */
#define STAGING_SLACK 64

int expand_template(const char *tmpl, const char *barcode, char *out, size_t outlen)
{
        size_t n = 0, blen = strlen(barcode);
        for (const char *p = tmpl; *p;) {
                const char *piece = p;
                size_t len = 1;
                if (!strncmp(p, "{barcode}", 9)) {
                        piece = barcode;
                        len = blen;
                        p += 9;
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

static bool source_is_http(const char *tmpl)
{
        return !strncasecmp(tmpl, "http://", 7) || !strncasecmp(tmpl, "https://", 8);
}

/* ---- key derivation beside the loop -------------------------------------------------- */

/* The first bytes of a message name its S2K: when they do, the key is derived by the
 * key pool while this worker serves its other transfers, and these bytes wait. */
static bool key_beside(struct book *b, const uint8_t *p, size_t len)
{
        if (b->key_tried)
                return false;
        b->key_tried = true;
        if (!b->w->run->keypool || pgp_key_peek(p, len, &b->key_job) < 0)
                return false; /* the decryptor derives it inline */
        b->key_waiting = true;
        keypool_submit(b);
        return true;
}

/* ---- HTTP(S) ----------------------------------------------------------------------- */

/* Header lines: the status of each response (redirects and 100 Continue come first),
 * its ETag and Retry-After. */
static size_t on_http_header(char *line, size_t size, size_t nitems, void *ud)
{
        struct book *b = ud;
        size_t len = size * nitems;
        if (len > 5 && !strncmp(line, "HTTP/", 5)) {
                const char *sp = memchr(line, ' ', len);
                b->http_status = sp ? strtol(sp + 1, NULL, 10) : 0;
                b->etag[0] = 0;
                b->retry_after_s = 0;
        } else if (len > 12 && !strncasecmp(line, "Retry-After:", 12)) {
                long v = strtol(line + 12, NULL, 10);
                b->retry_after_s = v > 0 && v < 3600 ? (unsigned)v : 0;
        } else if (len > 5 && !strncasecmp(line, "ETag:", 5)) {
                const char *p = line + 5, *end = line + len;
                while (p < end &&
                       (isspace((unsigned char)*p) || *p == '"' || *p == 'W' || *p == '/'))
                        p++;
                while (end > p && (isspace((unsigned char)end[-1]) || end[-1] == '"'))
                        end--;
                size_t n =
                    (size_t)(end - p) < sizeof b->etag - 1 ? (size_t)(end - p) : sizeof b->etag - 1;
                memcpy(b->etag, p, n);
                b->etag[n] = 0;
        }
        return len;
}

static size_t on_http_body(char *p, size_t size, size_t nmemb, void *ud)
{
        struct book *b = ud;
        size_t len = size * nmemb;
        b->last_byte_ns = now_ns();
        if (b->http_status != 200)
                return len; /* an error page: read and dropped, the status decides */
        if (key_beside(b, (const uint8_t *)p, len))
                return CURL_WRITEFUNC_PAUSE; /* handed over again by source_key_ready() */
        if (book_staging_room(b) < len + STAGING_SLACK) {
                /* Staging writes still in flight: libcurl keeps these bytes, stops reading
                 * the socket, and hands them over again once source_resume() unpauses. */
                b->src_waiting = true;
                b->src_wait_len = len + STAGING_SLACK;
                return CURL_WRITEFUNC_PAUSE;
        }
        return book_feed(b, (const uint8_t *)p, len) ? 0 : len;
}

/* libcurl's own low-speed check averages over about 5 s, so a burst before a stall
 * hides it that long: this callback, called at least once a second while the transfer
 * lives, measures the silence itself. A transfer paused by staging is not stalled. */
static int on_http_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                            curl_off_t ulnow)
{
        struct book *b = ud;
        uint64_t limit = (uint64_t)b->w->run->cfg.stall_timeout_s * 1000000000u;
        if (b->src_waiting || b->key_waiting) {
                b->last_byte_ns = now_ns();
                return 0;
        }
        if (now_ns() - b->last_byte_ns < limit)
                return 0;
        b->stalled = true;
        return 1;
}

static void http_result(struct book *b, CURLcode rc, struct source_result *res)
{
        static __thread char msg[CURL_ERROR_SIZE + 64];
        *res = (struct source_result){0};
        if (rc == CURLE_WRITE_ERROR && b->feed_error)
                return; /* the decryptor stopped it: book_download_done reports why */
        if (rc == CURLE_ABORTED_BY_CALLBACK && b->stalled) {
                snprintf(msg, sizeof msg, "source: stalled: no byte for %u s",
                         b->w->run->cfg.stall_timeout_s);
                res->error = msg;
                res->transient = true;
                return;
        }
        if (rc != CURLE_OK) {
                snprintf(msg, sizeof msg, "source: %s",
                         b->errbuf[0] ? b->errbuf : curl_easy_strerror(rc));
                res->error = msg;
                res->transient = true;
                return;
        }
        long st = b->http_status;
        if (st == 200)
                return;
        res->error = msg;
        if (st == 404 || st == 410) {
                snprintf(msg, sizeof msg, "not available from the source (HTTP %ld)", st);
                return;
        }
        snprintf(msg, sizeof msg, "source: HTTP %ld", st);
        res->transient = st == 408 || st == 429 || st >= 500;
        res->run_level = st == 401 || st == 403;
        if (st == 401 && b->w->run->auth && auth_unauthorized(b->w->run->auth, b->auth_gen)) {
                /* The token may have expired early: the main thread refreshes it; retry. */
                res->transient = true;
                uint64_t one = 1;
                ssize_t n = write(b->w->run->main_wake_fd, &one, sizeof one);
                (void)n;
        }
}

static void on_http_done(struct xfer *x, CURLcode rc)
{
        struct book *b = container_of(x, struct book, dl);
        struct source_result res;
        http_result(b, rc, &res);
        if (b->source_head)
                book_head_done(b, &res);
        else
                book_download_done(b, &res);
}

static void http_begin(struct book *b, const char *url)
{
        const struct run_config *cfg = &b->w->run->cfg;
        CURL *e = b->dl.easy;
        curl_easy_reset(e);
        b->http_status = 0;
        b->errbuf[0] = 0;
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
        curl_easy_setopt(e, CURLOPT_USERAGENT, "quire/" QUIRE_VERSION);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, b->errbuf);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_http_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, b);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_http_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, b);
        curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 30L);
        /* A stall: no byte for --stall-timeout seconds (on_http_progress). libcurl's own
         * check stays as a backstop; it also keeps a one-second timer ticking. */
        b->stalled = false;
        b->last_byte_ns = now_ns();
        curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_http_progress);
        curl_easy_setopt(e, CURLOPT_XFERINFODATA, b);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)cfg->stall_timeout_s);
        curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
        if (b->source_head)
                curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        curl_slist_free_all(b->req_headers);
        b->req_headers = NULL;
        if (b->w->run->auth) {
                b->req_headers = auth_headers(b->w->run->auth, &b->auth_gen);
                curl_easy_setopt(e, CURLOPT_HTTPHEADER, b->req_headers);
        }
        if (cfg->ca_file) {
                /* Adds a CA: OpenSSL loads both the file and the system's directory. */
                curl_easy_setopt(e, CURLOPT_CAINFO, cfg->ca_file);
                curl_easy_setopt(e, CURLOPT_CAPATH, "/etc/ssl/certs");
        }
        worker_add_xfer(b->w, &b->dl);
}

/* ---- local files ------------------------------------------------------------------- */

static void file_read_next(struct book *b)
{
        if (book_staging_room(b) < BOOK_RBUF_SIZE + STAGING_SLACK) {
                b->src_waiting = true;
                b->src_wait_len = BOOK_RBUF_SIZE + STAGING_SLACK;
                return;
        }
        loop_read(b->w->loop, &b->src_op, b->src_fd, b->rbuf, BOOK_RBUF_SIZE, b->src_off);
}

static void file_close(struct book *b)
{
        if (b->src_fd >= 0) {
                loop_flush(b->w->loop);
                close(b->src_fd);
                b->src_fd = -1;
        }
}

static void on_file_read(struct loop_op *op, int res)
{
        struct book *b = container_of(op, struct book, src_op);
        static __thread char msg[160];
        struct source_result end = {0};
        if (res > 0) {
                b->src_off += (uint64_t)res;
                if (key_beside(b, b->rbuf, (size_t)res)) {
                        b->key_wait_len = (size_t)res;
                        return;
                }
                if (book_feed(b, b->rbuf, (size_t)res) == 0) {
                        file_read_next(b);
                        return;
                }
        } else if (res < 0) {
                snprintf(msg, sizeof msg, "source: read: %s", strerror(-res));
                end.error = msg;
                end.transient = res == -EIO || res == -EAGAIN || res == -EINTR;
        }
        file_close(b);
        book_download_done(b, &end);
}

static void file_begin(struct book *b, const char *path)
{
        static __thread char msg[160];
        b->src_off = 0;
        b->src_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (b->src_fd < 0) {
                int err = errno;
                struct source_result end = {.error = msg};
                if (err == ENOENT)
                        snprintf(msg, sizeof msg, "not available from the source (no such file)");
                else
                        snprintf(msg, sizeof msg, "source: %s", strerror(err));
                end.transient = err == EMFILE || err == ENFILE || err == EINTR;
                book_download_done(b, &end);
                return;
        }
        posix_fadvise(b->src_fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        file_read_next(b);
}

/* ---- interface --------------------------------------------------------------------- */

void source_begin(struct book *b)
{
        const char *tmpl = b->w->run->cfg.source;
        char where[4096];
        if (!strncmp(tmpl, "file://", 7))
                tmpl += 7;
        if (expand_template(tmpl, b->item.barcode, where, sizeof where) < 0) {
                struct source_result end = {.error = "source: URL too long"};
                book_download_done(b, &end);
                return;
        }
        if (source_is_http(tmpl)) {
                http_begin(b, where);
        } else if (b->source_head) {
                struct source_result none = {0}; /* files have no ETag: always fetch */
                b->etag[0] = 0;
                book_head_done(b, &none);
        } else {
                file_begin(b, where);
        }
}

void source_key_ready(struct book *b)
{
        b->key_waiting = false;
        if (b->key_job.ready)
                pgp_key_offer(b->dec, &b->key_job);
        explicit_bzero(&b->key_job, sizeof b->key_job);
        if (source_is_http(b->w->run->cfg.source)) {
                curl_easy_pause(b->dl.easy, CURLPAUSE_CONT);
                return;
        }
        if (book_feed(b, b->rbuf, b->key_wait_len) == 0) {
                file_read_next(b);
                return;
        }
        struct source_result end = {0};
        file_close(b);
        book_download_done(b, &end);
}

void source_resume(struct book *b)
{
        if (source_is_http(b->w->run->cfg.source))
                curl_easy_pause(b->dl.easy, CURLPAUSE_CONT);
        else
                file_read_next(b);
}

void source_abort(struct book *b)
{
        b->key_waiting = false;
        if (source_is_http(b->w->run->cfg.source)) {
                worker_remove_xfer(b->w, &b->dl);
        } else {
                loop_cancel(b->w->loop, &b->src_op);
                file_close(b);
        }
}

int source_init(struct book *b)
{
        b->dl.done = on_http_done;
        b->src_op.fn = on_file_read;
        if (source_is_http(b->w->run->cfg.source)) {
                b->dl.easy = curl_easy_init();
                return b->dl.easy ? 0 : -ENOMEM;
        }
        /* Touched only when used: a page costs nothing until then. */
        b->rbuf = malloc(BOOK_RBUF_SIZE);
        return b->rbuf ? 0 : -ENOMEM;
}

void source_destroy(struct book *b)
{
        if (b->dl.easy)
                curl_easy_cleanup(b->dl.easy);
        curl_slist_free_all(b->req_headers);
        free(b->rbuf);
}
