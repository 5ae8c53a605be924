/* Conversion requests: a bounded ring of barcodes, a thread with a curl multi, slots of
 * one request each. */
#include "quire/io/grin_request.h"

#include <assert.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "quire/base/util.h"
#include "quire/engine/feeder.h"
#include "quire/io/auth.h"
#include "quire/io/http.h"

#define BATCH_MAX       1000
#define TRIES           4 /* a broken transfer or a 5xx is sent again 3 times */
#define TOKEN_WAIT_NS   (30ull * 1000000000ull)
#define RECOUNT_NS      (600ull * 1000000000ull)
#define ANSWER_LINE_MAX 1024 /* GRIN's line for one barcode: barcode, status text */

enum slot_state { SLOT_FREE, SLOT_BUSY, SLOT_WAIT_TOKEN, SLOT_WAIT_RETRY };

struct slot {
        enum slot_state state;
        CURL *e;
        struct curl_slist *hdrs;
        unsigned gen;   /* token generation the request carried */
        bool refreshed; /* a new token was asked for this request already */
        unsigned tries;
        uint64_t deadline; /* WAIT_*: when to give up waiting / send again */
        struct http_head head;
        char *url;
        unsigned n; /* barcodes in this request */
        char (*barcode)[BARCODE_MAX + 1];
        char *body; /* GRIN's answer, cut at body_max */
        size_t body_len, body_max;
        char errbuf[CURL_ERROR_SIZE];
};

struct grin_req {
        const struct grin_site *site;
        struct grin_req_config c;
        pthread_t thread;
        CURLM *multi;
        struct slot *slots;

        pthread_mutex_t lock; /* ring, closing, stats */
        pthread_cond_t space;
        char (*ring)[BARCODE_MAX + 1];
        unsigned head, count;
        bool closing;
        struct grin_req_stats stats;
        uint64_t last_count_ns;
        char base[GRIN_URL_MAX]; /* .../LIBRARY/_process?barcodes= */
};

const char *grin_outcome_name(enum grin_outcome o)
{
        static const char *const names[] = {"requested", "already converted", "already in process",
                                            "refused",   "not requested",     "failed"};
        return names[o];
}

/* ---- counting _in_process --------------------------------------------------------- */

static int count_row(void *ud, const struct grin_row *row)
{
        (*(uint64_t *)ud)++;
        return 0;
}

/* Sets the room from a fresh count; the caller holds no lock (this blocks). */
static int recount(struct grin_req *r, char *msg, size_t msglen)
{
        uint64_t n = 0;
        struct grin_sink sink = {.row = count_row, .ud = &n};
        int err = grin_list_fetch(r->site, GRIN_LIST_IN_PROCESS, &sink, msg, msglen);
        pthread_mutex_lock(&r->lock);
        r->last_count_ns = util_now_ns();
        if (!err) {
                if (!r->stats.requests)
                        r->stats.in_process_at_open = n;
                r->stats.room = n < r->c.queue_max ? r->c.queue_max - n : 0;
        }
        pthread_mutex_unlock(&r->lock);
        return err;
}

/* ---- one request ------------------------------------------------------------------ */

static size_t on_header(char *line, size_t size, size_t n, void *ud)
{
        http_head_line(&((struct slot *)ud)->head, line, size * n);
        return size * n;
}

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
        struct slot *s = ud;
        size_t len = size * n, k = s->body_max - s->body_len;
        k = len < k ? len : k;
        memcpy(s->body + s->body_len, data, k);
        s->body_len += k;
        return len;
}

static void give_all(struct grin_req *r, struct slot *s, enum grin_outcome o, const char *detail)
{
        for (unsigned i = 0; i < s->n; i++)
                r->c.fn(r->c.ud, s->barcode[i], o, detail);
}

static int slot_send(struct grin_req *r, struct slot *s)
{
        struct http_baseline b = {.ca_file = r->site->ca_file, .errbuf = s->errbuf};
        int err = http_easy_reset(s->e, &b);
        if (err)
                return err;
        curl_slist_free_all(s->hdrs);
        s->hdrs = r->site->auth ? auth_headers(r->site->auth, &s->gen) : NULL;
        curl_easy_setopt(s->e, CURLOPT_URL, s->url);
        curl_easy_setopt(s->e, CURLOPT_HTTPHEADER, s->hdrs);
        curl_easy_setopt(s->e, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(s->e, CURLOPT_HEADERDATA, s);
        curl_easy_setopt(s->e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(s->e, CURLOPT_WRITEDATA, s);
        curl_easy_setopt(s->e, CURLOPT_PRIVATE, s);
        curl_easy_setopt(s->e, CURLOPT_TIMEOUT, 300L);
        http_head_init(&s->head);
        s->body_len = 0;
        if (curl_multi_add_handle(r->multi, s->e) != CURLM_OK)
                return -ENOMEM;
        s->state = SLOT_BUSY;
        pthread_mutex_lock(&r->lock);
        r->stats.requests++;
        pthread_mutex_unlock(&r->lock);
        return 0;
}

static void slot_start(struct grin_req *r, struct slot *s)
{
        size_t len = strlen(r->base);
        memcpy(s->url, r->base, len);
        for (unsigned i = 0; i < s->n; i++) {
                if (i)
                        s->url[len++] = ',';
                size_t k = strlen(s->barcode[i]);
                memcpy(s->url + len, s->barcode[i], k);
                len += k;
        }
        s->url[len] = 0;
        s->tries = 0;
        s->refreshed = false;
        if (slot_send(r, s) < 0) {
                give_all(r, s, GRIN_REQUEST_FAILED, "libcurl refused the request");
                s->state = SLOT_FREE;
        }
}

static void give_back_room(struct grin_req *r, unsigned n)
{
        pthread_mutex_lock(&r->lock);
        r->stats.room += n;
        pthread_mutex_unlock(&r->lock);
}

static enum grin_outcome classify(const char *status)
{
        if (!strcmp(status, "Success"))
                return GRIN_REQUESTED;
        if (strcasestr(status, "already") && strcasestr(status, "available for download"))
                return GRIN_ALREADY_CONVERTED;
        if (strcasestr(status, "already") && strcasestr(status, "process"))
                return GRIN_ALREADY_IN_PROCESS;
        return GRIN_REFUSED;
}

/* The line of GRIN's TSV answer for barcode b ("B<TAB>Status"), its status in out. */
static bool answer_for(const struct slot *s, const char *b, char *out, size_t outlen)
{
        size_t bl = strlen(b);
        for (const char *p = s->body, *end = s->body + s->body_len; p < end;) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                const char *le = nl ? nl : end;
                if ((size_t)(le - p) > bl && !memcmp(p, b, bl) && p[bl] == '\t') {
                        const char *v = p + bl + 1;
                        while (le > v && (le[-1] == '\r' || le[-1] == ' '))
                                le--;
                        snprintf(out, outlen, "%.*s", (int)(le - v), v);
                        return true;
                }
                p = le + 1;
        }
        return false;
}

static void answered(struct grin_req *r, struct slot *s)
{
        if (memmem(s->body, s->body_len, "<html", 5) || memmem(s->body, s->body_len, "<HTML", 5)) {
                give_back_room(r, s->n);
                give_all(r, s, GRIN_REQUEST_FAILED,
                         "GRIN answered an HTML page (a login or permission page?)");
                return;
        }
        unsigned requested = 0;
        for (unsigned i = 0; i < s->n; i++) {
                char status[ANSWER_LINE_MAX];
                if (!answer_for(s, s->barcode[i], status, sizeof status)) {
                        r->c.fn(r->c.ud, s->barcode[i], GRIN_REQUEST_FAILED,
                                "GRIN's answer has no line for this barcode");
                        continue;
                }
                enum grin_outcome o = classify(status);
                requested += o == GRIN_REQUESTED;
                r->c.fn(r->c.ud, s->barcode[i], o, o == GRIN_REQUESTED ? "" : status);
        }
        give_back_room(r, s->n - requested);
}

/* A finished transfer: an outcome for each barcode, or the slot waits to send again. */
static void slot_done(struct grin_req *r, struct slot *s, CURLcode rc)
{
        curl_multi_remove_handle(r->multi, s->e);
        s->state = SLOT_FREE;
        long st = s->head.status;
        char *loc = NULL, detail[CURL_ERROR_SIZE + GRIN_URL_MAX];
        if (rc == CURLE_OK && st >= 300 && st < 400)
                curl_easy_getinfo(s->e, CURLINFO_REDIRECT_URL, &loc);
        if (rc == CURLE_OK && st == 200) {
                answered(r, s);
        } else if (rc == CURLE_OK && (st == 401 || (loc && grin_login_redirect(loc)))) {
                if (!s->refreshed && r->site->auth && auth_unauthorized(r->site->auth, s->gen)) {
                        s->refreshed = true;
                        s->state = SLOT_WAIT_TOKEN;
                        s->deadline = util_now_ns() + TOKEN_WAIT_NS;
                        return;
                }
                give_back_room(r, s->n);
                give_all(r, s, GRIN_REQUEST_FAILED,
                         "GRIN wants a login; check --oauth or --header-file");
        } else if (rc == CURLE_OK && st == 429) {
                pthread_mutex_lock(&r->lock);
                bool first = !r->stats.queue_full;
                r->stats.queue_full = true;
                r->stats.room += s->n;
                pthread_mutex_unlock(&r->lock);
                if (first)
                        qlog("GRIN's conversion queue is full (HTTP 429): no more requests");
                give_all(r, s, GRIN_NOT_SENT, "GRIN's conversion queue is full (HTTP 429)");
        } else if ((rc != CURLE_OK || st >= 500) && ++s->tries < TRIES) {
                s->state = SLOT_WAIT_RETRY;
                s->deadline = util_now_ns() + (1000000000ull << (s->tries - 1));
        } else {
                if (rc != CURLE_OK)
                        snprintf(detail, sizeof detail, "%s",
                                 s->errbuf[0] ? s->errbuf : curl_easy_strerror(rc));
                else if (st == 403)
                        snprintf(detail, sizeof detail,
                                 "GRIN refused this account access to library %s (HTTP 403)",
                                 r->site->library);
                else if (loc)
                        snprintf(detail, sizeof detail, "GRIN redirected the request to %s", loc);
                else
                        snprintf(detail, sizeof detail, "GRIN answered HTTP %ld", st);
                give_back_room(r, s->n);
                give_all(r, s, GRIN_REQUEST_FAILED, detail);
        }
}

/* Slots waiting for a new token or for their retry time. */
static void slots_waiting(struct grin_req *r, uint64_t now)
{
        for (unsigned i = 0; i < r->c.in_flight; i++) {
                struct slot *s = &r->slots[i];
                if (s->state == SLOT_WAIT_TOKEN) {
                        unsigned gen;
                        curl_slist_free_all(auth_headers(r->site->auth, &gen));
                        if (gen == s->gen && now < s->deadline)
                                continue;
                        if (gen == s->gen) {
                                s->state = SLOT_FREE;
                                give_back_room(r, s->n);
                                give_all(r, s, GRIN_REQUEST_FAILED,
                                         "GRIN wants a login and no new token came within 30 s");
                                continue;
                        }
                } else if (s->state != SLOT_WAIT_RETRY || now < s->deadline) {
                        continue;
                }
                if (slot_send(r, s) < 0) {
                        s->state = SLOT_FREE;
                        give_back_room(r, s->n);
                        give_all(r, s, GRIN_REQUEST_FAILED, "libcurl refused the request");
                }
        }
}

/* ---- the thread ------------------------------------------------------------------ */

static struct slot *free_slot(struct grin_req *r)
{
        for (unsigned i = 0; i < r->c.in_flight; i++)
                if (r->slots[i].state == SLOT_FREE)
                        return &r->slots[i];
        return NULL;
}

static bool slots_idle(const struct grin_req *r)
{
        for (unsigned i = 0; i < r->c.in_flight; i++)
                if (r->slots[i].state != SLOT_FREE)
                        return false;
        return true;
}

/* Takes barcodes from the ring into free slots, or gives them NOT_SENT when nothing may be
 * sent. Called with the lock held; drops it around callbacks and counting. */
static void take_pending(struct grin_req *r)
{
        struct slot *s;
        while (r->count && (s = free_slot(r))) {
                if (!r->stats.queue_full && !r->stats.room &&
                    util_now_ns() - r->last_count_ns >= RECOUNT_NS) {
                        pthread_mutex_unlock(&r->lock);
                        char msg[GRIN_URL_MAX + 256];
                        if (recount(r, msg, sizeof msg))
                                qlog("counting GRIN's queue again: %s", msg);
                        pthread_mutex_lock(&r->lock);
                        continue;
                }
                bool none = r->stats.queue_full || !r->stats.room;
                unsigned n = r->count < r->c.batch ? r->count : r->c.batch;
                if (!none && n > r->stats.room)
                        n = (unsigned)r->stats.room;
                for (unsigned i = 0; i < n; i++) {
                        memcpy(s->barcode[i], r->ring[r->head], sizeof s->barcode[i]);
                        r->head = (r->head + 1) % r->c.pending_max;
                }
                r->count -= n;
                s->n = n;
                if (!none)
                        r->stats.room -= n;
                bool full = r->stats.queue_full;
                pthread_cond_broadcast(&r->space);
                pthread_mutex_unlock(&r->lock);
                if (!none)
                        slot_start(r, s);
                else
                        give_all(r, s, GRIN_NOT_SENT,
                                 full ? "GRIN's conversion queue is full (HTTP 429)"
                                      : "no room left in GRIN's conversion queue");
                pthread_mutex_lock(&r->lock);
        }
}

static void *req_thread(void *arg)
{
        struct grin_req *r = arg;
        pthread_mutex_lock(&r->lock);
        while (!(r->closing && !r->count && slots_idle(r))) {
                take_pending(r);
                pthread_mutex_unlock(&r->lock);
                int running;
                curl_multi_perform(r->multi, &running);
                CURLMsg *m;
                int left;
                while ((m = curl_multi_info_read(r->multi, &left)))
                        if (m->msg == CURLMSG_DONE) {
                                struct slot *s;
                                curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
                                slot_done(r, s, m->data.result);
                        }
                slots_waiting(r, util_now_ns());
                bool waiting = false;
                for (unsigned i = 0; i < r->c.in_flight; i++)
                        waiting |= r->slots[i].state >= SLOT_WAIT_TOKEN;
                curl_multi_poll(r->multi, NULL, 0, waiting ? 100 : 1000, NULL);
                pthread_mutex_lock(&r->lock);
        }
        pthread_mutex_unlock(&r->lock);
        return NULL;
}

/* ---- interface ------------------------------------------------------------------- */

static void req_free(struct grin_req *r)
{
        for (unsigned i = 0; r->slots && i < r->c.in_flight; i++) {
                struct slot *s = &r->slots[i];
                curl_easy_cleanup(s->e);
                curl_slist_free_all(s->hdrs);
                free(s->url);
                free(s->barcode);
                free(s->body);
        }
        free(r->slots);
        curl_multi_cleanup(r->multi);
        free(r->ring);
        pthread_mutex_destroy(&r->lock);
        pthread_cond_destroy(&r->space);
        free(r);
}

static int slots_alloc(struct grin_req *r)
{
        r->slots = calloc(r->c.in_flight, sizeof *r->slots);
        if (!r->slots)
                return -ENOMEM;
        size_t url_max = strlen(r->base) + (size_t)r->c.batch * (BARCODE_MAX + 1) + 1;
        for (unsigned i = 0; i < r->c.in_flight; i++) {
                struct slot *s = &r->slots[i];
                s->e = curl_easy_init();
                s->url = malloc(url_max);
                s->barcode = calloc(r->c.batch, sizeof *s->barcode);
                s->body_max = 4096 + (size_t)r->c.batch * ANSWER_LINE_MAX;
                s->body = malloc(s->body_max);
                if (!s->e || !s->url || !s->barcode || !s->body)
                        return -ENOMEM;
        }
        return 0;
}

int grin_req_open(struct grin_req **out, const struct grin_site *site,
                  const struct grin_req_config *c, char *msg, size_t msglen)
{
        assert(c->fn);
        struct grin_req *r = calloc(1, sizeof *r);
        if (!r) {
                snprintf(msg, msglen, "out of memory");
                return -ENOMEM;
        }
        r->site = site;
        r->c = *c;
        r->c.batch = c->batch ? c->batch : 1;
        r->c.in_flight = c->in_flight ? c->in_flight : 2;
        r->c.queue_max = c->queue_max ? c->queue_max : GRIN_QUEUE_MAX;
        r->c.pending_max = c->pending_max ? c->pending_max : 4096;
        assert(r->c.batch <= BATCH_MAX);
        pthread_mutex_init(&r->lock, NULL);
        pthread_cond_init(&r->space, NULL);
        r->multi = curl_multi_init();
        r->ring = calloc(r->c.pending_max, sizeof *r->ring);
        int err = grin_url(site, "_process?barcodes=", r->base);
        if (!err && (!r->multi || !r->ring || slots_alloc(r) < 0))
                err = -ENOMEM;
        if (!err)
                curl_multi_setopt(r->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)r->c.in_flight);
        if (err) {
                snprintf(msg, msglen, "%s", err == -ENOMEM ? "out of memory" : "URL too long");
        } else if (!(err = recount(r, msg, msglen)) &&
                   (err = -pthread_create(&r->thread, NULL, req_thread, r))) {
                snprintf(msg, msglen, "cannot start the request thread: %s", strerror(-err));
        }
        if (err) {
                req_free(r);
                return err;
        }
        *out = r;
        return 0;
}

int grin_req_submit(struct grin_req *r, const char *barcode, bool wait)
{
        assert(!feeder_barcode_invalid(barcode, strlen(barcode)));
        pthread_mutex_lock(&r->lock);
        while (r->count == r->c.pending_max && wait)
                pthread_cond_wait(&r->space, &r->lock);
        int ret = r->count == r->c.pending_max ? -EAGAIN : 0;
        if (!ret) {
                unsigned tail = (r->head + r->count) % r->c.pending_max;
                snprintf(r->ring[tail], sizeof r->ring[tail], "%s", barcode);
                r->count++;
        }
        pthread_mutex_unlock(&r->lock);
        if (!ret)
                curl_multi_wakeup(r->multi);
        return ret;
}

void grin_req_stats(struct grin_req *r, struct grin_req_stats *out)
{
        pthread_mutex_lock(&r->lock);
        *out = r->stats;
        pthread_mutex_unlock(&r->lock);
}

void grin_req_close(struct grin_req *r)
{
        pthread_mutex_lock(&r->lock);
        r->closing = true;
        pthread_mutex_unlock(&r->lock);
        curl_multi_wakeup(r->multi);
        pthread_join(r->thread, NULL);
        req_free(r);
}
