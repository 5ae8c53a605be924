/* The contents reader's work on the archive, on its thread: each member classified by
 * name (a page's text, checksum.md5, the METS .xml) and streamed into the OCR spill, the
 * MARC parser and the checksum table, with its MD5; the archive's outcome from
 * libarchive's errors; and at the end the outputs written through out_file. */
#include "reader_int.h"
#include "quire/base/util.h"

#include <archive_entry.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

void contents_archive_failed(struct contents *c, bool any_entry)
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

void contents_read_archive(struct contents *c)
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
                        contents_archive_failed(c, true);
                        return;
                }
        }
        if (r == ARCHIVE_EOF && any)
                set_archive(c, CONTENTS_OK, NULL);
        else if (r == ARCHIVE_EOF)
                set_archive(c, CONTENTS_NOT_TARGZ, "no members");
        else
                contents_archive_failed(c, any);
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

void contents_write_outputs(struct contents *c)
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
