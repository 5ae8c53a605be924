/* The contents result in words: the names of its outcomes, and the journal's detail line
 * (contents=... checksum=... pages=...), member names escaped to one token each. */
#include "quire/contents/contents.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>

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
