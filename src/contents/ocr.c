/* The OCR output. Whether GRIN's pages come in name order is unconfirmed, so nothing here
 * relies on it: each page is escaped as it streams into an unnamed spill file (already in
 * its final JSON form), and an index of (page, offset, length) is sorted at the end and
 * read back in that order through zlib. Memory is the index and two fixed buffers; the
 * spill costs one write and one read of the text through the page cache, small beside the
 * archive's images. The rules are the Python pipeline's, made exact:
 *   - UTF-8 with each maximal invalid subpart replaced by one U+FFFD (CPython's decoder);
 *   - text-mode line ends: "\r\n" and a lone "\r" read as "\n";
 *   - json.dumps(ensure_ascii=False): \" \\ \n \t \b \f, other controls \u00xx (lower
 *     case hex), everything else as is. */
#include "contents_int.h"
#include "quire/base/util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define BUF_BYTES (256u * 1024)
/* Room an escaped byte may need: "\u00xx" is 6, U+FFFD and the pending prefix 3. */
#define ESC_MAX 8

struct page_ref {
        uint64_t off;
        uint32_t len;
        uint32_t page;
};

struct ocr {
        int spill;
        uint64_t spill_len; /* bytes in the file plus those in buf */
        uint8_t *buf;       /* spill write buffer */
        size_t blen;
        struct page_ref *index;
        size_t pages;
        const char *failed;
        /* the page being read */
        bool in_page;
        uint32_t page;
        uint64_t page_off;
        uint8_t pend[4]; /* an incomplete UTF-8 sequence */
        unsigned npend, need;
        uint8_t lo, hi; /* the range the next continuation byte must be in */
        bool after_cr;
};

static int open_spill(const char *dir)
{
        if (!dir)
                dir = getenv("TMPDIR");
        if (!dir || !*dir)
                dir = "/tmp";
        int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
                return fd < 0 ? -errno : fd;
        char path[4096];
        snprintf(path, sizeof path, "%s/.quire-spill-XXXXXX", dir);
        fd = mkostemp(path, O_CLOEXEC);
        if (fd < 0)
                return -errno;
        unlink(path);
        return fd;
}

int ocr_new(struct ocr **out, const char *spill_dir)
{
        struct ocr *o = calloc(1, sizeof *o);
        if (!o)
                return -ENOMEM;
        o->spill = -1;
        o->buf = malloc(BUF_BYTES);
        /* Virtual until used: a 5,000-page book touches 80 KB of it. */
        o->index = malloc((CONTENTS_MAX_PAGES + 1) * sizeof *o->index);
        int fd = open_spill(spill_dir);
        if (!o->buf || !o->index || fd < 0) {
                ocr_free(o);
                return fd < 0 ? fd : -ENOMEM;
        }
        o->spill = fd;
        *out = o;
        return 0;
}

void ocr_free(struct ocr *o)
{
        if (!o)
                return;
        if (o->spill >= 0)
                close(o->spill);
        free(o->buf);
        free(o->index);
        free(o);
}

static int flush_spill(struct ocr *o)
{
        int r = util_pwrite_all(o->spill, o->buf, o->blen, o->spill_len - o->blen);
        o->blen = 0;
        return r;
}

/* Makes room for ESC_MAX more bytes. */
static int room(struct ocr *o)
{
        if (o->blen + ESC_MAX <= BUF_BYTES)
                return 0;
        return flush_spill(o);
}

static void put(struct ocr *o, const void *p, size_t n)
{
        memcpy(o->buf + o->blen, p, n);
        o->blen += n;
        o->spill_len += n;
}

static void put_replacement(struct ocr *o)
{
        put(o, "\xef\xbf\xbd", 3);
        o->after_cr = false;
}

static void put_ascii(struct ocr *o, uint8_t b)
{
        static const char hex[] = "0123456789abcdef";
        char e[6] = {'\\', 0};
        if (b == '\n' && o->after_cr) {
                o->after_cr = false; /* the "\n" of "\r\n" was written at the "\r" */
                return;
        }
        o->after_cr = b == '\r';
        if (b == '\r')
                b = '\n';
        if (b >= 0x20 && b != '"' && b != '\\') {
                put(o, &b, 1);
                return;
        }
        switch (b) {
        case '"':
        case '\\':
                e[1] = (char)b;
                break;
        case '\n':
                e[1] = 'n';
                break;
        case '\t':
                e[1] = 't';
                break;
        case '\b':
                e[1] = 'b';
                break;
        case '\f':
                e[1] = 'f';
                break;
        default:
                memcpy(e + 1, "u00", 3);
                e[4] = hex[b >> 4];
                e[5] = hex[b & 15];
                put(o, e, 6);
                return;
        }
        put(o, e, 2);
}

/* Starts a sequence at lead byte b; false when b cannot start one. */
static bool start_sequence(struct ocr *o, uint8_t b)
{
        o->lo = 0x80;
        o->hi = 0xbf;
        if (b >= 0xc2 && b <= 0xdf)
                o->need = 1;
        else if (b >= 0xe0 && b <= 0xef)
                o->need = 2;
        else if (b >= 0xf0 && b <= 0xf4)
                o->need = 3;
        else
                return false;
        if (b == 0xe0)
                o->lo = 0xa0;
        else if (b == 0xed)
                o->hi = 0x9f;
        else if (b == 0xf0)
                o->lo = 0x90;
        else if (b == 0xf4)
                o->hi = 0x8f;
        o->pend[0] = b;
        o->npend = 1;
        return true;
}

static void decode_byte(struct ocr *o, uint8_t b)
{
        if (o->npend) {
                if (b >= o->lo && b <= o->hi) {
                        o->pend[o->npend++] = b;
                        o->lo = 0x80;
                        o->hi = 0xbf;
                        if (--o->need == 0) {
                                put(o, o->pend, o->npend);
                                o->npend = 0;
                                o->after_cr = false;
                        }
                        return;
                }
                /* The valid prefix so far is one maximal subpart: one U+FFFD, and b
                 * starts afresh. */
                o->npend = 0;
                put_replacement(o);
        }
        if (b < 0x80)
                put_ascii(o, b);
        else if (!start_sequence(o, b))
                put_replacement(o);
}

int ocr_page_begin(struct ocr *o, uint32_t page)
{
        if (o->failed)
                return 0;
        if (o->pages > CONTENTS_MAX_PAGES) {
                o->failed = "too many pages";
                return 0;
        }
        o->in_page = true;
        o->page = page;
        o->page_off = o->spill_len;
        o->npend = 0;
        o->after_cr = false;
        int r = room(o);
        if (!r)
                put(o, "\"", 1);
        return r;
}

int ocr_page_data(struct ocr *o, const uint8_t *p, size_t n)
{
        if (o->failed || !o->in_page)
                return 0;
        for (size_t i = 0; i < n; i++) {
                if (o->blen + ESC_MAX > BUF_BYTES) {
                        int r = flush_spill(o);
                        if (r)
                                return r;
                }
                decode_byte(o, p[i]);
        }
        /* Checked after the chunk: one chunk (a ring's worth at most) may overshoot. */
        if (o->spill_len - o->page_off > CONTENTS_MAX_PAGE_TEXT)
                o->failed = "page too large";
        else if (o->spill_len > CONTENTS_MAX_OCR_SPILL)
                o->failed = "OCR text too large";
        return 0;
}

int ocr_page_end(struct ocr *o)
{
        if (o->failed || !o->in_page)
                return 0;
        int r = room(o);
        if (r)
                return r;
        if (o->npend) {
                o->npend = 0;
                put_replacement(o);
        }
        put(o, "\"\n", 2);
        o->index[o->pages++] = (struct page_ref){
            .off = o->page_off, .len = (uint32_t)(o->spill_len - o->page_off), .page = o->page};
        o->in_page = false;
        return 0;
}

const char *ocr_failed(const struct ocr *o)
{
        return o->failed;
}

/* Page order; a page number seen twice keeps archive order (its spill offset). */
static int by_page(const void *a, const void *b)
{
        const struct page_ref *x = a, *y = b;
        if (x->page != y->page)
                return x->page < y->page ? -1 : 1;
        return x->off < y->off ? -1 : x->off > y->off;
}

struct gz {
        z_stream z;
        struct out_file *f;
        uint8_t *out;
};

static int gz_put(struct gz *g, const void *p, size_t n, int flush)
{
        g->z.next_in = (Bytef *)p;
        g->z.avail_in = (uInt)n;
        do {
                g->z.next_out = g->out;
                g->z.avail_out = BUF_BYTES;
                int zr = deflate(&g->z, flush);
                assert(zr != Z_STREAM_ERROR);
                (void)zr;
                size_t have = BUF_BYTES - g->z.avail_out;
                int r = contents_out_write(g->f, g->out, have);
                if (r)
                        return r;
        } while (g->z.avail_out == 0 || g->z.avail_in);
        return 0;
}

/* Copies spill bytes [off, off+len) into the gzip stream, through the spill buffer. */
static int gz_copy(struct ocr *o, struct gz *g, uint64_t off, uint64_t len)
{
        while (len) {
                size_t k = len < BUF_BYTES ? (size_t)len : BUF_BYTES;
                ssize_t r = pread(o->spill, o->buf, k, (off_t)off);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        return r < 0 ? -errno : -EIO;
                int w = gz_put(g, o->buf, (size_t)r, Z_NO_FLUSH);
                if (w)
                        return w;
                off += (uint64_t)r;
                len -= (uint64_t)r;
        }
        return 0;
}

static int write_pages(struct ocr *o, struct gz *g, uint64_t *lines)
{
        uint32_t expected = 1;
        size_t i = 0;
        while (i < o->pages) {
                for (; expected < o->index[i].page; expected++, (*lines)++) {
                        int r = gz_put(g, "\"\"\n", 3, Z_NO_FLUSH);
                        if (r)
                                return r;
                }
                /* Pages adjacent in the spill are read back in one go. */
                uint64_t off = o->index[i].off, len = 0;
                size_t j = i;
                while (j < o->pages && o->index[j].off == off + len &&
                       (j == i || o->index[j].page == o->index[j - 1].page + 1 ||
                        o->index[j].page == o->index[j - 1].page)) {
                        len += o->index[j].len;
                        j++;
                }
                int r = gz_copy(o, g, off, len);
                if (r)
                        return r;
                *lines += j - i;
                expected = o->index[j - 1].page + 1;
                i = j;
        }
        return gz_put(g, NULL, 0, Z_FINISH);
}

int ocr_write(struct ocr *o, struct out_file *f, uint64_t *lines)
{
        *lines = 0;
        if (o->failed)
                return 1;
        if (!o->pages) {
                o->failed = "no pages";
                return 1;
        }
        int r = flush_spill(o);
        if (r)
                return r;
        qsort(o->index, o->pages, sizeof *o->index, by_page);
        struct gz g = {.f = f, .out = malloc(BUF_BYTES)};
        /* gzip level 1, as the Python pipeline writes it (windowBits 15 + 16: a gzip
         * header and trailer). */
        if (!g.out || deflateInit2(&g.z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
                free(g.out);
                return -ENOMEM;
        }
        r = write_pages(o, &g, lines);
        deflateEnd(&g.z);
        free(g.out);
        return r;
}

enum page_kind ocr_page_kind_of(const char *base, uint32_t *num)
{
        uint32_t n = 0;
        for (int i = 0; i < 8; i++) {
                if (base[i] < '0' || base[i] > '9')
                        return PK_NONE;
                n = n * 10 + (uint32_t)(base[i] - '0');
        }
        *num = n;
        const char *ext = base + 8;
        if (!strcmp(ext, ".txt"))
                return PK_TEXT;
        if (!strcmp(ext, ".jp2") || !strcmp(ext, ".tif"))
                return PK_IMAGE;
        if (!strcmp(ext, ".html"))
                return PK_HOCR;
        return PK_NONE;
}
