/* The contents reader: where the caller's push meets libarchive's pull. Each context owns
 * one thread that runs libarchive over a byte ring the caller fills with contents_feed().
 * A thread per book in flight, not a pool: libarchive's read callback must return data
 * or block, so a reader whose input has not arrived yet holds its stack, and the number of
 * such readers is the number of books in flight anyway (bounded by the caller). The ring
 * is handed to libarchive in place (the block it was given stays valid until its next
 * call, as libarchive requires), so bytes are copied once, on the caller's side. */
#include "contents_int.h"
#include "quire/base/util.h"

#include <archive.h>
#include <archive_entry.h>
#include <assert.h>
#include <errno.h>
#include <libxml/parser.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RING_DEFAULT (1u << 20)
#define XML_CHUNK    (64 * 1024)

struct contents {
        struct contents_cfg cfg;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t wake; /* to the reader: data, finish or abort */
        pthread_cond_t done_cond;
        pthread_cond_t room; /* to a feeder waiting in contents_feed_all */
        /* the ring, under lock: [tail, tail+count) holds data, of which the first
         * `lent` bytes are libarchive's until its next read call */
        uint8_t *ring;
        size_t cap, tail, count, lent;
        bool finished, aborting, settled, done, want_ready;
        struct contents_result res;
        /* the reader thread's own */
        struct archive *a;
        EVP_MD_CTX *md5;
        struct ocr *ocr;
        struct marc *marc;
        struct sums *sums;
        bool marc_tried, marc_found, eof_seen, list_seen;
        uint32_t max_page; /* the highest page text number */
        const char *marc_why;
        uint64_t xml_bytes;
        bool xml_bad_utf8;
        unsigned u8_need; /* continuation bytes the XML member still owes */
        uint8_t *xml_buf;
};

static void call_ready(struct contents *c)
{
        if (c->cfg.ready)
                c->cfg.ready(c->cfg.arg);
}

size_t contents_feed(struct contents *c, const void *p, size_t n)
{
        pthread_mutex_lock(&c->lock);
        assert(!c->finished);
        if (c->settled) {
                pthread_mutex_unlock(&c->lock);
                return n;
        }
        size_t k = c->cap - c->count < n ? c->cap - c->count : n;
        size_t head = (c->tail + c->count) % c->cap;
        if (k < n)
                c->want_ready = true;
        pthread_mutex_unlock(&c->lock);
        /* [head, head+k) is ours: the reader only reads up to count. */
        size_t first = c->cap - head < k ? c->cap - head : k;
        memcpy(c->ring + head, p, first);
        memcpy(c->ring, (const uint8_t *)p + first, k - first);
        pthread_mutex_lock(&c->lock);
        c->count += k;
        pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->lock);
        return k;
}

bool contents_has_room(struct contents *c, size_t n)
{
        pthread_mutex_lock(&c->lock);
        bool room = c->settled || c->cap - c->count >= (n < c->cap ? n : c->cap);
        if (!room)
                c->want_ready = true;
        pthread_mutex_unlock(&c->lock);
        return room;
}

void contents_feed_all(struct contents *c, const void *p, size_t n)
{
        const uint8_t *b = p;
        for (;;) {
                size_t k = contents_feed(c, b, n);
                b += k;
                n -= k;
                if (!n)
                        return;
                pthread_mutex_lock(&c->lock);
                while (c->count == c->cap && !c->settled)
                        pthread_cond_wait(&c->room, &c->lock);
                pthread_mutex_unlock(&c->lock);
        }
}

void contents_finish(struct contents *c)
{
        pthread_mutex_lock(&c->lock);
        c->finished = true;
        pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->lock);
}

bool contents_done(struct contents *c)
{
        pthread_mutex_lock(&c->lock);
        bool d = c->done;
        pthread_mutex_unlock(&c->lock);
        return d;
}

void contents_wait(struct contents *c)
{
        pthread_mutex_lock(&c->lock);
        while (!c->done)
                pthread_cond_wait(&c->done_cond, &c->lock);
        pthread_mutex_unlock(&c->lock);
}

const struct contents_result *contents_result(const struct contents *c)
{
        return &c->res;
}

/* libarchive's read callback: gives back the block lent last time, then lends the next
 * contiguous run of the ring, waiting for one. */
static la_ssize_t ring_read(struct archive *a, void *arg, const void **buf)
{
        struct contents *c = arg;
        pthread_mutex_lock(&c->lock);
        c->tail = (c->tail + c->lent) % c->cap;
        c->count -= c->lent;
        bool wake_feeder = c->lent && c->want_ready;
        if (wake_feeder)
                c->want_ready = false;
        if (c->lent)
                pthread_cond_broadcast(&c->room);
        c->lent = 0;
        while (!c->count && !c->finished && !c->aborting) {
                if (wake_feeder) {
                        pthread_mutex_unlock(&c->lock);
                        call_ready(c);
                        wake_feeder = false;
                        pthread_mutex_lock(&c->lock);
                        continue;
                }
                pthread_cond_wait(&c->wake, &c->lock);
        }
        la_ssize_t n;
        if (c->aborting) {
                archive_set_error(a, ECANCELED, "stopped");
                n = -1;
        } else {
                c->lent = c->count < c->cap - c->tail ? c->count : c->cap - c->tail;
                *buf = c->ring + c->tail;
                n = (la_ssize_t)c->lent;
                c->eof_seen = n == 0;
        }
        pthread_mutex_unlock(&c->lock);
        if (wake_feeder)
                call_ready(c);
        return n;
}

static const char *strip_dot_slash(const char *name)
{
        while (name[0] == '.' && name[1] == '/')
                name += 2;
        return name;
}

static const char *base_of(const char *path)
{
        const char *s = strrchr(path, '/');
        return s ? s + 1 : path;
}

static bool ends_with(const char *s, const char *suffix)
{
        size_t n = strlen(s), k = strlen(suffix);
        return n >= k && !memcmp(s + n - k, suffix, k);
}

static void set_archive(struct contents *c, enum contents_archive v, const char *why)
{
        if (c->res.archive != CONTENTS_READING)
                return;
        c->res.archive = v;
        if (why)
                snprintf(c->res.detail, sizeof c->res.detail, "%s", why);
}

static void set_ioerr(struct contents *c, int err)
{
        if (!c->res.err)
                c->res.err = err;
        char msg[128];
        snprintf(msg, sizeof msg, "cannot write: %s", strerror(-err));
        set_archive(c, CONTENTS_IOERR, msg);
}

/* Tracks whether the XML member is valid UTF-8 (Python reads it strictly, and moves on to
 * the next .xml file when it is not); a coarse check of lead and continuation bytes. */
static void xml_utf8(struct contents *c, const uint8_t *p, size_t n)
{
        for (size_t i = 0; i < n && !c->xml_bad_utf8; i++) {
                uint8_t b = p[i];
                if (c->u8_need) {
                        c->xml_bad_utf8 = (b & 0xc0) != 0x80;
                        c->u8_need--;
                } else if (b >= 0x80) {
                        c->u8_need = b >= 0xc2 && b <= 0xdf   ? 1
                                     : b >= 0xe0 && b <= 0xef ? 2
                                     : b >= 0xf0 && b <= 0xf4 ? 3
                                                              : 0;
                        c->xml_bad_utf8 = !c->u8_need;
                }
        }
}

struct member {
        enum { M_OTHER, M_PAGE, M_LIST, M_XML } kind;
        const char *name;
        uint64_t bytes;
};

static int consume(struct contents *c, struct member *m, const void *p, size_t n)
{
        m->bytes += n;
        if (c->cfg.verify)
                EVP_DigestUpdate(c->md5, p, n);
        switch (m->kind) {
        case M_PAGE:
                return ocr_page_data(c->ocr, p, n);
        case M_LIST:
                return sums_list_data(c->sums, p, n);
        case M_XML:
                xml_utf8(c, p, n);
                return 0;
        default:
                return 0;
        }
}

/* Reads the rest of the current member. Returns 0, -errno (a write), or 1 with the
 * archive's error set. */
static int drain(struct contents *c, struct member *m)
{
        for (;;) {
                const void *p;
                size_t n;
                la_int64_t off;
                int r = archive_read_data_block(c->a, &p, &n, &off);
                if (r == ARCHIVE_EOF)
                        return 0;
                if (r < ARCHIVE_WARN)
                        return 1;
                if ((uint64_t)off != m->bytes) {
                        archive_set_error(c->a, EINVAL, "sparse member %s", m->name);
                        return 1;
                }
                int w = consume(c, m, p, n);
                if (w)
                        return w;
        }
}

struct xml_in {
        struct contents *c;
        struct member *m;
        int err; /* set when the archive failed under the XML parser */
};

static int xml_read(void *arg, char *buf, int len)
{
        struct xml_in *x = arg;
        struct contents *c = x->c;
        if (c->xml_bytes >= CONTENTS_MAX_XML) {
                c->marc_why = "METS too large";
                return -1;
        }
        la_ssize_t n = archive_read_data(c->a, buf, (size_t)len);
        if (n < 0) {
                x->err = 1;
                return -1;
        }
        c->xml_bytes += (uint64_t)n;
        int r = consume(c, x->m, buf, (size_t)n);
        if (r) {
                x->err = r;
                return -1;
        }
        return (int)n;
}

static int read_xml(struct contents *c, struct member *m)
{
        struct xml_in x = {c, m, 0};
        const char *why;
        c->xml_bytes = 0;
        c->xml_bad_utf8 = false;
        c->u8_need = 0;
        c->marc_why = NULL;
        int found = marc_parse(c->marc, xml_read, &x, &why, c->res.detail, sizeof c->res.detail);
        if (x.err)
                return x.err;
        int r = drain(c, m);
        if (r)
                return r;
        if (c->xml_bad_utf8 || c->u8_need)
                return 0; /* not this one: Python tries the next .xml */
        c->marc_tried = true;
        c->marc_found = found == 0;
        c->marc_why = c->marc_why ? c->marc_why : why;
        return 0;
}

static int classify(struct contents *c, struct member *m, const char *base)
{
        uint32_t num = 0;
        enum page_kind pk = ocr_page_kind_of(base, &num);
        c->res.images += pk == PK_IMAGE;
        c->res.texts += pk == PK_TEXT;
        c->res.hocr += pk == PK_HOCR;
        if (c->cfg.verify && !c->list_seen && !strcmp(base, "checksum.md5")) {
                m->kind = M_LIST;
                c->list_seen = true;
        } else if (pk == PK_TEXT && num >= 1 && num <= 999999) {
                c->max_page = num > c->max_page ? num : c->max_page;
                if (!c->ocr)
                        return 0;
                m->kind = M_PAGE;
                return ocr_page_begin(c->ocr, num);
        } else if (c->marc && !c->marc_tried && ends_with(base, ".xml")) {
                m->kind = M_XML;
        }
        return 0;
}

static int read_member(struct contents *c, struct archive_entry *e)
{
        const char *path = archive_entry_pathname(e);
        struct member m = {.name = strip_dot_slash(path ? path : "")};
        int r = classify(c, &m, base_of(m.name));
        if (r)
                return r;
        if (c->cfg.verify)
                EVP_DigestInit_ex(c->md5, EVP_md5(), NULL);
        r = m.kind == M_XML ? read_xml(c, &m) : drain(c, &m);
        if (r)
                return r;
        c->res.members++;
        c->res.bytes += m.bytes;
        if (m.kind == M_PAGE)
                r = ocr_page_end(c->ocr);
        if (!r && m.kind == M_LIST)
                return sums_list_end(c->sums);
        if (!r && c->cfg.verify) {
                uint8_t md[EVP_MAX_MD_SIZE];
                unsigned len;
                EVP_DigestFinal_ex(c->md5, md, &len);
                r = sums_member(c->sums, m.name, md);
        }
        return r;
}

static void archive_failed(struct contents *c, bool any_entry)
{
        const char *msg = archive_error_string(c->a);
        char why[200];
        snprintf(why, sizeof why, "%s", msg ? msg : "unreadable");
        /* libarchive has no codes for these; its messages say "Truncated ..." */
        if (strstr(why, "runcated"))
                set_archive(c, CONTENTS_TRUNCATED, why);
        else if (!any_entry && (archive_filter_code(c->a, 0) != ARCHIVE_FILTER_GZIP ||
                                strstr(why, "Unrecognized archive format")))
                set_archive(c, CONTENTS_NOT_TARGZ, why);
        else if (c->eof_seen)
                set_archive(c, CONTENTS_TRUNCATED, why);
        else
                set_archive(c, CONTENTS_CORRUPT, why);
}

static void read_archive(struct contents *c)
{
        struct archive_entry *e;
        bool any = false;
        int r;
        while ((r = archive_read_next_header(c->a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
                if (!any && archive_filter_code(c->a, 0) != ARCHIVE_FILTER_GZIP) {
                        set_archive(c, CONTENTS_NOT_TARGZ, "a tar, but not gzip-compressed");
                        return;
                }
                any = true;
                if (archive_entry_filetype(e) != AE_IFREG)
                        continue;
                int m = read_member(c, e);
                if (m == -E2BIG) {
                        set_archive(c, CONTENTS_LIMIT, "too many members");
                        return;
                }
                if (m < 0) {
                        set_ioerr(c, m);
                        return;
                }
                if (m > 0) {
                        archive_failed(c, true);
                        return;
                }
        }
        if (r == ARCHIVE_EOF && any)
                set_archive(c, CONTENTS_OK, NULL);
        else if (r == ARCHIVE_EOF)
                set_archive(c, CONTENTS_NOT_TARGZ, "no members");
        else
                archive_failed(c, any);
}

/* Once the archive's outcome is known the rest of the input is dropped, so a caller that
 * is still streaming (the raw delivery) never waits on us. */
static void settle(struct contents *c)
{
        pthread_mutex_lock(&c->lock);
        c->settled = true;
        c->count = c->lent = 0;
        pthread_cond_broadcast(&c->room);
        bool wake = c->want_ready;
        c->want_ready = false;
        pthread_mutex_unlock(&c->lock);
        if (wake)
                call_ready(c);
}

int contents_out_write(struct out_file *f, const void *p, size_t n)
{
        int r = util_pwrite_all(f->fd, p, n, f->off);
        if (r)
                return r;
        f->off += n;
        if (f->wrote)
                f->wrote(f->arg, f->fd, p, n);
        return 0;
}

/* Writes one output through f; synced when asked for. 0, 1 (nothing to write), -errno. */
static int output_done(struct contents *c, struct out_file *f, int r)
{
        if (r == 0 && c->cfg.sync && fdatasync(f->fd) < 0)
                return -errno;
        return r;
}

static void write_outputs(struct contents *c)
{
        struct contents_result *res = &c->res;
        struct out_file ocr = {c->cfg.ocr_fd, 0, c->cfg.wrote, c->cfg.arg};
        struct out_file marc = {c->cfg.marc_fd, 0, c->cfg.wrote, c->cfg.arg};
        if (res->archive != CONTENTS_OK) {
                res->ocr_skipped = c->ocr ? "archive unreadable" : NULL;
                res->marc_skipped = c->marc ? "archive unreadable" : NULL;
                return;
        }
        if (c->cfg.verify) {
                const char *member;
                res->check = sums_verdict(c->sums, &member);
                if (res->check == CHECK_OK &&
                    (res->images != res->texts || res->texts != res->hocr))
                        res->check = CHECK_PAGE_COUNTS;
                if (member)
                        snprintf(res->member, sizeof res->member, "%s", member);
        }
        if (c->ocr) {
                int r = output_done(c, &ocr, ocr_write(c->ocr, &ocr, &res->pages));
                if (r < 0)
                        set_ioerr(c, r);
                res->ocr_written = r == 0;
                res->ocr_skipped = ocr_failed(c->ocr);
                if (r < 0)
                        res->pages = 0;
        } else {
                res->pages = c->max_page;
        }
        if (c->marc) {
                int r = c->marc_found ? output_done(c, &marc, marc_write(c->marc, &marc)) : 1;
                if (r < 0)
                        set_ioerr(c, r);
                res->marc_written = r == 0;
                if (r)
                        res->marc_skipped = !c->marc_tried ? "no .xml member"
                                            : r < 0        ? "cannot write"
                                                           : c->marc_why;
        }
}

static void *reader_main(void *arg)
{
        struct contents *c = arg;
        if (archive_read_open(c->a, c, NULL, ring_read, NULL) == ARCHIVE_OK)
                read_archive(c);
        else
                archive_failed(c, false);
        settle(c);
        pthread_mutex_lock(&c->lock);
        while (!c->finished && !c->aborting)
                pthread_cond_wait(&c->wake, &c->lock);
        bool abort = c->aborting;
        pthread_mutex_unlock(&c->lock);
        if (!abort)
                write_outputs(c);
        pthread_mutex_lock(&c->lock);
        c->done = true;
        pthread_cond_broadcast(&c->done_cond);
        pthread_mutex_unlock(&c->lock);
        if (!abort)
                call_ready(c);
        return NULL;
}

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

static void xml_init(void)
{
        xmlInitParser();
}

static int setup(struct contents *c)
{
        c->cap = c->cfg.ring_bytes ? c->cfg.ring_bytes : RING_DEFAULT;
        c->ring = malloc(c->cap);
        c->a = archive_read_new();
        c->md5 = EVP_MD_CTX_new();
        if (!c->ring || !c->a || !c->md5)
                return -ENOMEM;
        if (archive_read_support_filter_gzip(c->a) != ARCHIVE_OK ||
            archive_read_support_format_tar(c->a) != ARCHIVE_OK)
                return -ENOMEM;
        int r = 0;
        if (c->cfg.ocr_fd >= 0)
                r = ocr_new(&c->ocr, c->cfg.spill_dir);
        if (!r && c->cfg.marc_fd >= 0) {
                pthread_once(&xml_once, xml_init);
                r = marc_new(&c->marc);
        }
        if (!r && c->cfg.verify)
                r = sums_new(&c->sums);
        return r;
}

static void release(struct contents *c)
{
        if (c->a)
                archive_read_free(c->a);
        EVP_MD_CTX_free(c->md5);
        ocr_free(c->ocr);
        marc_free(c->marc);
        sums_free(c->sums);
        free(c->ring);
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->wake);
        pthread_cond_destroy(&c->done_cond);
        pthread_cond_destroy(&c->room);
        free(c);
}

int contents_new(struct contents **out, const struct contents_cfg *cfg)
{
        struct contents *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->cfg = *cfg;
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->wake, NULL);
        pthread_cond_init(&c->done_cond, NULL);
        pthread_cond_init(&c->room, NULL);
        int r = setup(c);
        if (!r && pthread_create(&c->thread, NULL, reader_main, c))
                r = -EAGAIN;
        if (r) {
                release(c);
                return r;
        }
        *out = c;
        return 0;
}

void contents_free(struct contents *c)
{
        if (!c)
                return;
        pthread_mutex_lock(&c->lock);
        c->aborting = true;
        pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->thread, NULL);
        release(c);
}

const char *contents_archive_name(enum contents_archive a)
{
        static const char *const names[] = {
            [CONTENTS_READING] = "reading",      [CONTENTS_OK] = "ok",
            [CONTENTS_NOT_TARGZ] = "not-tar-gz", [CONTENTS_TRUNCATED] = "truncated",
            [CONTENTS_CORRUPT] = "corrupt",      [CONTENTS_LIMIT] = "limit",
            [CONTENTS_IOERR] = "write-error",
        };
        return names[a];
}

const char *contents_check_name(enum contents_check k)
{
        static const char *const names[] = {
            [CHECK_NONE] = "none",         [CHECK_OK] = "ok",
            [CHECK_MISMATCH] = "mismatch", [CHECK_UNLISTED] = "unlisted",
            [CHECK_MISSING] = "missing",   [CHECK_NO_LIST] = "no-list",
            [CHECK_BAD_LIST] = "bad-list", [CHECK_PAGE_COUNTS] = "page-counts",
        };
        return names[k];
}

static size_t escape_name(const char *s, char *out, size_t cap)
{
        static const char hex[] = "0123456789ABCDEF";
        size_t n = 0;
        for (; *s && n + 4 < cap; s++) {
                unsigned char b = (unsigned char)*s;
                if (b <= 0x20 || b >= 0x7f || b == '%' || b == '=') {
                        out[n++] = '%';
                        out[n++] = hex[b >> 4];
                        out[n++] = hex[b & 15];
                } else {
                        out[n++] = (char)b;
                }
        }
        out[n] = 0;
        return n;
}

struct out {
        char *buf;
        size_t cap, n;
};

static void outf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(struct out *o, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(o->buf + o->n, o->cap - o->n, fmt, ap);
        va_end(ap);
        if (k > 0)
                o->n = o->n + (size_t)k < o->cap ? o->n + (size_t)k : o->cap - 1;
}

size_t contents_format_detail(const struct contents_result *r, char *buf, size_t cap)
{
        char esc[3 * sizeof r->member + 1];
        struct out o = {buf, cap, 0};
        assert(cap > 0);
        buf[0] = 0;
        outf(&o, "contents=%s", contents_archive_name(r->archive));
        if (r->archive != CONTENTS_OK) {
                escape_name(r->detail, esc, sizeof esc);
                outf(&o, " why=%s", esc);
                return o.n;
        }
        outf(&o, " checksum=%s", contents_check_name(r->check));
        if (r->member[0]) {
                escape_name(r->member, esc, sizeof esc);
                outf(&o, " member=%s", esc);
        }
        outf(&o, " pages=%llu images=%llu texts=%llu hocr=%llu members=%llu",
             (unsigned long long)r->pages, (unsigned long long)r->images,
             (unsigned long long)r->texts, (unsigned long long)r->hocr,
             (unsigned long long)r->members);
        return o.n;
}
