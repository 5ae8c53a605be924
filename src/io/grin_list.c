/* GRIN over HTTP: one GET with GRIN's login rules, lists page by page, the unconverted
 * set difference, and lists written to a feeder's pipe. */
#include "quire/io/grin.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "quire/base/util.h"
#include "quire/engine/feeder.h"
#include "quire/io/auth.h"
#include "quire/io/grin_page.h"
#include "quire/io/grin_set.h"
#include "quire/io/http.h"

#define GET_TRIES     4 /* one and three retries of a failed transfer or a 5xx */
#define REDIRECTS_MAX 5
#define TOKEN_WAIT_MS 30000
#define SET_MAX       (64ull << 20) /* barcodes in the unconverted set, far past GRIN */
#define STALL_S       60

int grin_list_kind_parse(const char *name, enum grin_list_kind *out)
{
        static const char *const names[] = {"converted", "all", "in-process", "failed"};
        for (int i = 0; i < 4; i++)
                if (!strcmp(name, names[i])) {
                        *out = (enum grin_list_kind)i;
                        return 0;
                }
        return -EINVAL;
}

const char *grin_list_path(enum grin_list_kind kind)
{
        switch (kind) {
        case GRIN_LIST_CONVERTED:
                return "_converted?result_count=50000";
        case GRIN_LIST_ALL:
                return "_all_books?result_count=10000";
        case GRIN_LIST_IN_PROCESS:
                return "_in_process?format=text";
        case GRIN_LIST_FAILED:
                return "_failed?result_count=-1";
        }
        return NULL;
}

int grin_url(const struct grin_site *site, const char *path, char *out)
{
        const char *base = site->url ? site->url : GRIN_URL_DEFAULT;
        size_t bl = strlen(base);
        while (bl && base[bl - 1] == '/')
                bl--;
        char *lib = curl_easy_escape(NULL, site->library, 0);
        if (!lib)
                return -ENOMEM;
        int n = snprintf(out, GRIN_URL_MAX, "%.*s/%s/%s", (int)bl, base, lib, path);
        curl_free(lib);
        return n < 0 || n >= GRIN_URL_MAX ? -ENAMETOOLONG : 0;
}

/* ---- one GET --------------------------------------------------------------------- */

struct get_ctx {
        CURL *e;
        struct grin_get *g;
        struct http_head head;
        int body_rc;
};

static size_t on_header(char *line, size_t size, size_t n, void *ud)
{
        struct get_ctx *c = ud;
        http_head_line(&c->head, line, size * n);
        return size * n;
}

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
        struct get_ctx *c = ud;
        if (c->head.status != 200)
                return size * n; /* an error page: its status says enough */
        char *ctype = NULL;
        curl_easy_getinfo(c->e, CURLINFO_CONTENT_TYPE, &ctype);
        c->body_rc = c->g->body(c->g->ud, data, size * n, ctype ? ctype : "");
        return c->body_rc ? 0 : size * n;
}

bool grin_login_redirect(const char *location)
{
        return strstr(location, "accounts.google.com") && strstr(location, "ServiceLogin");
}

static void sleep_ms(unsigned ms)
{
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Asks for a new token and waits until auth hands one out. Whoever refreshes tokens for
 * this process (auth_tick on the main thread today) does the work. */
static int new_token(struct auth *a, unsigned gen)
{
        if (!a || !auth_unauthorized(a, gen))
                return -EACCES;
        for (unsigned waited = 0; waited < TOKEN_WAIT_MS; waited += 100) {
                unsigned now_gen;
                curl_slist_free_all(auth_headers(a, &now_gen));
                if (now_gen != gen)
                        return 0;
                sleep_ms(100);
        }
        return -ETIMEDOUT;
}

static int perform(struct get_ctx *c, const struct grin_site *site, const char *url,
                   struct curl_slist *hdrs, char *errbuf)
{
        struct http_baseline b = {.ca_file = site->ca_file, .errbuf = errbuf};
        int err = http_easy_reset(c->e, &b);
        if (err)
                return err;
        curl_easy_setopt(c->e, CURLOPT_URL, url);
        curl_easy_setopt(c->e, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(c->e, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c->e, CURLOPT_HEADERDATA, c);
        curl_easy_setopt(c->e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c->e, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(c->e, CURLOPT_ACCEPT_ENCODING, "");
        curl_easy_setopt(c->e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c->e, CURLOPT_LOW_SPEED_TIME, (long)STALL_S);
        http_head_init(&c->head);
        c->body_rc = 0;
        if (c->g->begin && (c->body_rc = c->g->begin(c->g->ud, url)))
                return c->body_rc;
        CURLcode rc = curl_easy_perform(c->e);
        if (c->body_rc)
                return c->body_rc;
        return rc == CURLE_OK ? 0 : -EIO;
}

int grin_http_get(const struct grin_site *site, const char *url, struct grin_get *g, char *msg,
                  size_t msglen)
{
        struct get_ctx c = {.e = g->e ? g->e : curl_easy_init(), .g = g};
        if (!c.e) {
                snprintf(msg, msglen, "out of memory");
                return -ENOMEM;
        }
        char cur[GRIN_URL_MAX], errbuf[CURL_ERROR_SIZE];
        snprintf(cur, sizeof cur, "%s", url);
        bool creds = true, refreshed = false;
        unsigned redirects = 0, tries = 0;
        int ret;
        for (;;) {
                unsigned gen = 0;
                struct curl_slist *hdrs =
                    creds && site->auth ? auth_headers(site->auth, &gen) : NULL;
                ret = perform(&c, site, cur, hdrs, errbuf);
                curl_slist_free_all(hdrs);
                g->status = c.head.status;
                g->retry_after_s = c.head.retry_after_s;
                long st = c.head.status;
                if (ret == -EIO) {
                        if (++tries < GET_TRIES) {
                                qlog("%s: %s; retrying", cur,
                                     errbuf[0] ? errbuf : "transfer failed");
                                sleep_ms(1000u << (tries - 1));
                                continue;
                        }
                        snprintf(msg, msglen, "%s: %s", cur,
                                 errbuf[0] ? errbuf : "transfer failed");
                        break;
                }
                if (ret || st == 200)
                        break;
                char *loc = NULL;
                if (st >= 300 && st < 400)
                        curl_easy_getinfo(c.e, CURLINFO_REDIRECT_URL, &loc);
                if (st == 401 || (loc && grin_login_redirect(loc))) {
                        int err = refreshed || !creds ? -EACCES : new_token(site->auth, gen);
                        refreshed = true;
                        if (!err)
                                continue;
                        snprintf(msg, msglen,
                                 "%s: GRIN wants a login (%s)%s; check --oauth or --header-file",
                                 cur, st == 401 ? "HTTP 401" : "a redirect to ServiceLogin",
                                 err == -ETIMEDOUT ? " and no new token came within 30 s" : "");
                        ret = -EACCES;
                        break;
                }
                if (loc) {
                        bool keep;
                        const char *why = "";
                        if (http_redirect_check(cur, loc, &keep, &why) < 0 ||
                            ++redirects > REDIRECTS_MAX || strlen(loc) >= sizeof cur) {
                                snprintf(msg, msglen, "%s: redirect to %s not followed: %s", cur,
                                         loc, redirects > REDIRECTS_MAX ? "too many" : why);
                                ret = -EPROTO;
                                break;
                        }
                        creds = creds && keep;
                        snprintf(cur, sizeof cur, "%s", loc);
                        continue;
                }
                if (st == 403) {
                        snprintf(msg, msglen,
                                 "%s: GRIN refused this account access to library %s (HTTP 403; a "
                                 "new permission can take up to 12 hours to apply)",
                                 cur, site->library);
                        ret = -EACCES;
                        break;
                }
                if ((st >= 500 || (st == 429 && g->retry_429)) && ++tries < GET_TRIES) {
                        unsigned ms = c.head.retry_after_s ? c.head.retry_after_s * 1000u
                                                           : 1000u << (tries - 1);
                        qlog("%s: HTTP %ld; retrying in %u s", cur, st, ms / 1000);
                        sleep_ms(ms);
                        continue;
                }
                snprintf(msg, msglen, "%s: GRIN answered HTTP %ld", cur, st);
                ret = -EIO;
                break;
        }
        if (!g->e)
                curl_easy_cleanup(c.e);
        return ret;
}

/* ---- lists ----------------------------------------------------------------------- */

struct list_ctx {
        struct grin_page *page;
        bool text;
        bool begun; /* the page was begun before: a later attempt is a retry */
        char *msg;
        size_t msglen;
};

static int list_begin(void *ud, const char *url)
{
        struct list_ctx *l = ud;
        int err = grin_page_begin(l->page, url, l->begun);
        l->begun = true;
        return err;
}

static int list_body(void *ud, const char *data, size_t len, const char *ctype)
{
        struct list_ctx *l = ud;
        if (l->text && strcasestr(ctype, "html")) {
                snprintf(l->msg, l->msglen,
                         "GRIN answered an HTML page where a text list was expected (a login "
                         "or permission page?)");
                return -EACCES;
        }
        int rc = grin_page_feed(l->page, data, len);
        if (rc < 0)
                snprintf(l->msg, l->msglen, "%s", grin_page_error(l->page));
        return rc;
}

/* Whether the page's Next link may be followed with the list's credentials. */
static int next_ok(const char *cur, const char *next, char *msg, size_t msglen)
{
        bool keep;
        const char *why = "it goes to another host";
        if (http_redirect_check(cur, next, &keep, &why) < 0 || !keep) {
                snprintf(msg, msglen, "%s: Next link %s not followed: %s", cur, next, why);
                return -EPROTO;
        }
        if (!strcmp(cur, next)) {
                snprintf(msg, msglen, "%s: the Next link leads to the same page", cur);
                return -EPROTO;
        }
        return 0;
}

int grin_list_fetch(const struct grin_site *site, enum grin_list_kind kind,
                    const struct grin_sink *sink, char *msg, size_t msglen)
{
        char *url = malloc(GRIN_URL_MAX);
        struct grin_page_info *info = malloc(sizeof *info);
        struct list_ctx l = {.text = kind == GRIN_LIST_IN_PROCESS, .msg = msg, .msglen = msglen};
        CURL *e = curl_easy_init(); /* one handle, so that pages reuse its connection */
        int ret = !url || !info || !e ? -ENOMEM : grin_page_open(&l.page, sink, l.text);
        if (!ret && (ret = grin_url(site, grin_list_path(kind), url)) < 0)
                snprintf(msg, msglen, "--grin-url and --grin make a URL too long");
        for (unsigned pageno = 1; !ret; pageno++) {
                struct grin_get g = {.e = e, .begin = list_begin, .body = list_body, .ud = &l};
                l.begun = false;
                msg[0] = 0;
                ret = grin_http_get(site, url, &g, msg, msglen);
                int end = grin_page_end(l.page, info);
                if (ret) {
                        if (ret < 0 && !msg[0])
                                snprintf(msg, msglen, "%s: %s", url,
                                         grin_page_error(l.page)[0] ? grin_page_error(l.page)
                                                                    : strerror(-ret));
                        break;
                }
                if ((ret = end) != 0) {
                        if (ret < 0)
                                snprintf(msg, msglen, "%s", grin_page_error(l.page));
                        break;
                }
                if (info->unavailable) {
                        qlog("%s: GRIN says \"Your request is unavailable\"; the list ends at "
                             "page %u",
                             url, pageno);
                        break;
                }
                if (!info->is_list) {
                        snprintf(msg, msglen,
                                 "%s: GRIN answered an HTML page without a list (a login or "
                                 "permission page?)%s%s%s",
                                 url, info->title[0] ? ": \"" : "", info->title,
                                 info->title[0] ? "\"" : "");
                        ret = -EACCES;
                        break;
                }
                if (!info->next[0])
                        break;
                if ((ret = next_ok(url, info->next, msg, msglen)) < 0)
                        break;
                snprintf(url, GRIN_URL_MAX, "%s", info->next);
        }
        if (!ret)
                ret = grin_page_finish(l.page);
        if (ret == -ENOMEM)
                snprintf(msg, msglen, "out of memory");
        grin_page_close(l.page);
        curl_easy_cleanup(e);
        free(info);
        free(url);
        return ret;
}

/* ---- unconverted ---------------------------------------------------------------- */

struct known {
        struct grin_set *set;
        int err;
};

/* A prefixed file name's barcode ("NLI_X") may be listed by _all_books as "X", or the
 * other way round: the set holds barcodes without such a prefix (upper-case letters and
 * '_'), one entry a book, and every look-up strips it too. */
static const char *unprefixed(const char *b)
{
        const char *us = strchr(b, '_');
        if (!us || us == b || !us[1])
                return b;
        for (const char *c = b; c < us; c++)
                if (*c < 'A' || *c > 'Z')
                        return b;
        return us + 1;
}

static int known_add(void *ud, const struct grin_row *r)
{
        struct known *k = ud;
        const char *b = unprefixed(r->barcode);
        int rc = grin_set_add(k->set, b, strlen(b));
        return rc < 0 ? (k->err = rc) : 0;
}

struct unconverted {
        const struct grin_sink *out;
        const struct grin_set *set;
};

static int unconverted_columns(void *ud, unsigned n, const char *const *names)
{
        const struct unconverted *u = ud;
        return u->out->columns ? u->out->columns(u->out->ud, n, names) : 0;
}

static int unconverted_row(void *ud, const struct grin_row *r)
{
        const struct unconverted *u = ud;
        const char *b = unprefixed(r->barcode);
        if (grin_set_has(u->set, b, strlen(b)))
                return 0;
        return u->out->row(u->out->ud, r);
}

int grin_unconverted_fetch(const struct grin_site *site, const struct grin_sink *sink, char *msg,
                           size_t msglen)
{
        static const enum grin_list_kind known_lists[] = {GRIN_LIST_CONVERTED, GRIN_LIST_IN_PROCESS,
                                                          GRIN_LIST_FAILED};
        struct known k = {.set = grin_set_new(SET_MAX)};
        if (!k.set) {
                snprintf(msg, msglen, "out of memory");
                return -ENOMEM;
        }
        struct grin_sink add = {.row = known_add, .ud = &k};
        int ret = 0;
        for (size_t i = 0; i < 3 && !ret; i++) {
                ret = grin_list_fetch(site, known_lists[i], &add, msg, msglen);
                if (ret > 0 || k.err)
                        snprintf(msg, msglen, "the set of known books: %s", strerror(-k.err));
        }
        if (!ret) {
                qlog("%llu books converted, in process or failed (%zu KiB of hashes); "
                     "reading _all_books",
                     (unsigned long long)grin_set_count(k.set), grin_set_bytes(k.set) >> 10);
                struct unconverted u = {sink, k.set};
                struct grin_sink filter = {unconverted_columns, unconverted_row, &u};
                ret = grin_list_fetch(site, GRIN_LIST_ALL, &filter, msg, msglen);
        }
        grin_set_free(k.set);
        return ret;
}

/* ---- to a feeder's pipe ----------------------------------------------------------- */

struct fd_out {
        int fd;
        size_t len;
        char buf[64 * 1024];
};

static int fd_flush(struct fd_out *o)
{
        for (size_t off = 0; off < o->len;) {
                ssize_t n = write(o->fd, o->buf + off, o->len - off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                off += (size_t)n;
        }
        o->len = 0;
        return 0;
}

static int fd_row(void *ud, const struct grin_row *r)
{
        struct fd_out *o = ud;
        char line[2 * BARCODE_MAX + sizeof GRIN_SUFFIX + 4];
        int n = r->filename ? snprintf(line, sizeof line, "%s\t%s\n", r->barcode, r->filename)
                            : snprintf(line, sizeof line, "%s\t%s%s\n", r->barcode, r->barcode,
                                       GRIN_SUFFIX);
        if (o->len + (size_t)n > sizeof o->buf) {
                int err = fd_flush(o);
                if (err)
                        return err;
        }
        memcpy(o->buf + o->len, line, (size_t)n);
        o->len += (size_t)n;
        return 0;
}

int grin_list_to_fd(const struct grin_site *site, int kind, int fd, char *msg, size_t msglen)
{
        struct fd_out *o = malloc(sizeof *o);
        if (!o) {
                snprintf(msg, msglen, "out of memory");
                return -ENOMEM;
        }
        o->fd = fd;
        o->len = 0;
        struct grin_sink sink = {.row = fd_row, .ud = o};
        int ret = kind < 0 ? grin_unconverted_fetch(site, &sink, msg, msglen)
                           : grin_list_fetch(site, (enum grin_list_kind)kind, &sink, msg, msglen);
        if (ret >= 0) {
                int err = fd_flush(o);
                ret = ret ? ret : err;
        }
        if (ret < 0 && !msg[0])
                snprintf(msg, msglen, "writing the list: %s", strerror(-ret));
        free(o);
        return ret;
}
