/* Barcodes in. The list may hold a million lines and come from a pipe, so it is read
 * through one fixed buffer; a line that does not fit is dropped on the way to its newline
 * and reported, never grown into. */
#include "quire/engine/feeder.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Far more than a barcode with generous padding; what does not fit is invalid anyway. */
#define FEEDER_BUF 65536

/* Reasons are static strings so a caller may keep them without copying. */
#define CTL(h) [0x##h] = "control byte 0x" #h
static const char *const ctl_reason[32] = {
    CTL(00), CTL(01), CTL(02), CTL(03), CTL(04), CTL(05), CTL(06), CTL(07),
    CTL(08), CTL(09), CTL(0a), CTL(0b), CTL(0c), CTL(0d), CTL(0e), CTL(0f),
    CTL(10), CTL(11), CTL(12), CTL(13), CTL(14), CTL(15), CTL(16), CTL(17),
    CTL(18), CTL(19), CTL(1a), CTL(1b), CTL(1c), CTL(1d), CTL(1e), CTL(1f),
};
#undef CTL

#define PUNCT(c, s) [c] = "contains '" s "'"
static const char *const punct_reason[128] = {
    PUNCT(' ', " "), PUNCT('!', "!"), PUNCT('"', "\""),  PUNCT('#', "#"), PUNCT('$', "$"),
    PUNCT('%', "%"), PUNCT('&', "&"), PUNCT('\'', "'"),  PUNCT('(', "("), PUNCT(')', ")"),
    PUNCT('*', "*"), PUNCT('+', "+"), PUNCT(',', ","),   PUNCT('/', "/"), PUNCT(':', ":"),
    PUNCT(';', ";"), PUNCT('<', "<"), PUNCT('=', "="),   PUNCT('>', ">"), PUNCT('?', "?"),
    PUNCT('@', "@"), PUNCT('[', "["), PUNCT('\\', "\\"), PUNCT(']', "]"), PUNCT('^', "^"),
    PUNCT('`', "`"), PUNCT('{', "{"), PUNCT('|', "|"),   PUNCT('}', "}"), PUNCT('~', "~"),
};
#undef PUNCT

static bool barcode_char(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_' || c == '.';
}

/* Length of the well-formed UTF-8 sequence at s (lead byte >= 0x80), 0 if malformed:
 * overlong forms, surrogates and code points past U+10FFFF count as malformed. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
        unsigned char c = s[0];
        size_t len;
        unsigned char lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
                len = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
                len = 3;
                lo = c == 0xe0 ? 0xa0 : 0x80;
                hi = c == 0xed ? 0x9f : 0xbf;
        } else if (c >= 0xf0 && c <= 0xf4) {
                len = 4;
                lo = c == 0xf0 ? 0x90 : 0x80;
                hi = c == 0xf4 ? 0x8f : 0xbf;
        } else {
                return 0;
        }
        if (n < len || s[1] < lo || s[1] > hi)
                return 0;
        for (size_t i = 2; i < len; i++)
                if (s[i] < 0x80 || s[i] > 0xbf)
                        return 0;
        return len;
}

static const char *byte_reason(const unsigned char *s, size_t n)
{
        unsigned char c = s[0];
        if (c < 0x20)
                return ctl_reason[c];
        if (c == 0x7f)
                return "control byte 0x7f";
        if (c >= 0x80)
                return utf8_len(s, n) ? "non-ASCII character" : "invalid UTF-8";
        return punct_reason[c] ? punct_reason[c] : "contains a character not allowed";
}

const char *feeder_barcode_invalid(const char *s, size_t n)
{
        const unsigned char *u = (const unsigned char *)s;
        if (n == 0)
                return "empty";
        /* What is wrong with the content says more than its length: a path in a 200-byte
         * line is reported as a path. */
        for (size_t i = 0; i < n; i++)
                if (!barcode_char(u[i]))
                        return byte_reason(u + i, n - i);
        if (u[0] == '.')
                return "starts with '.'";
        if (memmem(s, n, "..", 2))
                return "contains '..'";
        if (n > BARCODE_MAX)
                return "longer than 64 bytes";
        return NULL;
}

/* What a line too long for the buffer turns out to be, decided on its first non-blank
 * byte as it streams past. */
enum overflow { OVF_NONE, OVF_BLANK, OVF_COMMENT, OVF_LONG };

struct feeder {
        int fd;
        bool own_fd, eof, regular;
        bool files; /* lines may carry "<TAB>FILE" after the barcode */
        char file[FEEDER_FILE_MAX + 1];
        bool counting; /* a private copy counting the lines: reads by pread at off */
        uint64_t off;
        enum overflow ovf;
        uint64_t line; /* physical lines consumed */
        size_t start, end;
        char buf[FEEDER_BUF];
};

static int feeder_wrap(struct feeder **out, int fd, bool own)
{
        struct feeder *f = malloc(sizeof *f);
        if (!f)
                return -ENOMEM;
        memset(f, 0, offsetof(struct feeder, buf));
        f->fd = fd;
        f->own_fd = own;
        struct stat st;
        if (fstat(fd, &st) < 0) {
                int err = -errno;
                free(f);
                return err;
        }
        if (S_ISDIR(st.st_mode)) {
                free(f);
                return -EISDIR;
        }
        f->regular = S_ISREG(st.st_mode);
        *out = f;
        return 0;
}

int feeder_open_fd(struct feeder **out, int fd)
{
        return feeder_wrap(out, fd, true);
}

void feeder_accept_files(struct feeder *f)
{
        f->files = true;
}

const char *feeder_file(const struct feeder *f)
{
        return f->file[0] ? f->file : NULL;
}

int feeder_open(struct feeder **out, const char *path)
{
        if (!strcmp(path, "-"))
                return feeder_wrap(out, STDIN_FILENO, false);
        /* O_NONBLOCK: opening a FIFO would otherwise wait for its writer, deaf to
         * signals; the poll loop waits for it instead. */
        int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int err = feeder_wrap(out, fd, true);
        if (err)
                close(fd);
        return err;
}

void feeder_close(struct feeder *f)
{
        if (!f)
                return;
        if (f->own_fd)
                close(f->fd);
        free(f);
}

int feeder_fd(const struct feeder *f)
{
        return f->fd;
}

bool feeder_regular(const struct feeder *f)
{
        return f->regular;
}

static bool blank(char c)
{
        return c == ' ' || c == '\t';
}

/* Classifies one whole line (without its newline); FEED_EOF means it holds nothing (blank
 * or comment) and the caller reads on. */
/* "BARCODE<TAB>FILE": the file name at the source, checked as a barcode is (no '/', no
 * leading '.', no "..") and at most FEEDER_FILE_MAX bytes. n shrinks to the barcode. */
static const char *take_file(struct feeder *f, const char *s, size_t *n)
{
        f->file[0] = 0;
        const char *tab = f->files ? memchr(s, '\t', *n) : NULL;
        if (!tab)
                return NULL;
        const char *name = tab + 1;
        size_t len = (size_t)(s + *n - name);
        const char *end = memchr(name, '\t', len); /* more columns may follow: ignored */
        if (end)
                len = (size_t)(end - name);
        *n = (size_t)(tab - s);
        while (*n && blank(s[*n - 1]))
                (*n)--;
        if (len > FEEDER_FILE_MAX)
                return "file name longer than 96 bytes";
        const char *why = len ? feeder_barcode_invalid(name, len) : "empty file name";
        if (why && strcmp(why, "longer than 64 bytes"))
                return why;
        memcpy(f->file, name, len);
        f->file[len] = 0;
        return NULL;
}

static enum feeder_result take_line(struct feeder *f, char *s, size_t n, char out[BARCODE_MAX + 1],
                                    const char **why)
{
        while (n && (blank(s[n - 1]) || s[n - 1] == '\r'))
                n--;
        while (n && blank(*s)) {
                s++;
                n--;
        }
        if (n == 0 || *s == '#')
                return FEED_EOF;
        *why = take_file(f, s, &n);
        if (*why)
                return FEED_INVALID;
        *why = feeder_barcode_invalid(s, n);
        if (*why)
                return FEED_INVALID;
        memcpy(out, s, n);
        out[n] = 0;
        return FEED_BARCODE;
}

static enum overflow overflow_scan(enum overflow o, const char *s, size_t n)
{
        for (size_t i = 0; o == OVF_BLANK && i < n; i++)
                if (!blank(s[i]) && s[i] != '\r')
                        o = s[i] == '#' ? OVF_COMMENT : OVF_LONG;
        return o;
}

/* Drops buffered bytes of an overlong line; true when its end (newline or EOF) was seen,
 * with the line counted and *res set. */
static bool overflow_drain(struct feeder *f, enum feeder_result *res, const char **why)
{
        char *p = f->buf + f->start;
        size_t avail = f->end - f->start;
        char *nl = memchr(p, '\n', avail);
        size_t upto = nl ? (size_t)(nl - p) : avail;
        f->ovf = overflow_scan(f->ovf, p, upto);
        f->start += nl ? upto + 1 : upto;
        if (!nl && !f->eof)
                return false;
        f->line++;
        *res = f->ovf == OVF_LONG ? FEED_INVALID : FEED_EOF;
        *why = "longer than 64 bytes";
        f->ovf = OVF_NONE;
        return true;
}

int feeder_fill(struct feeder *f)
{
        if (f->eof)
                return 0;
        if (f->start) {
                memmove(f->buf, f->buf + f->start, f->end - f->start);
                f->end -= f->start;
                f->start = 0;
        }
        for (;;) {
                size_t room = sizeof f->buf - f->end;
                ssize_t r = f->counting ? pread(f->fd, f->buf + f->end, room, (off_t)f->off)
                                        : read(f->fd, f->buf + f->end, room);
                if (r > 0) {
                        f->end += (size_t)r;
                        f->off += (uint64_t)r;
                        return 0;
                }
                if (r == 0) {
                        f->eof = true;
                        return 0;
                }
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                        return -EAGAIN;
                if (errno != EINTR)
                        return -errno;
        }
}

enum feeder_result feeder_next(struct feeder *f, char out[BARCODE_MAX + 1], uint64_t *line,
                               const char **why)
{
        for (;;) {
                enum feeder_result res;
                if (f->ovf != OVF_NONE) {
                        if (!overflow_drain(f, &res, why))
                                return FEED_AGAIN;
                        if (res != FEED_EOF) {
                                *line = f->line;
                                return res;
                        }
                        continue;
                }
                char *p = f->buf + f->start;
                size_t avail = f->end - f->start;
                char *nl = memchr(p, '\n', avail);
                if (nl || (f->eof && avail)) {
                        size_t len = nl ? (size_t)(nl - p) : avail;
                        f->start += nl ? len + 1 : len;
                        f->line++;
                        res = take_line(f, p, len, out, why);
                        if (res != FEED_EOF) {
                                *line = f->line;
                                return res;
                        }
                        continue;
                }
                if (f->eof)
                        return FEED_EOF;
                if (avail == sizeof f->buf) {
                        f->ovf = OVF_BLANK; /* the line does not fit: stream the rest past */
                        continue;
                }
                return FEED_AGAIN;
        }
}

int64_t feeder_count(const struct feeder *list)
{
        if (!list->regular)
                return -1;
        struct feeder *f = malloc(sizeof *f);
        if (!f)
                return -1;
        memset(f, 0, offsetof(struct feeder, buf));
        f->fd = list->fd;
        f->regular = f->counting = true;
        char bc[BARCODE_MAX + 1];
        uint64_t line;
        const char *why;
        int64_t n = 0;
        for (;;) {
                enum feeder_result r = feeder_next(f, bc, &line, &why);
                if (r == FEED_BARCODE || r == FEED_INVALID) {
                        n++;
                } else if (r == FEED_AGAIN) {
                        if (feeder_fill(f) < 0) {
                                n = -1;
                                break;
                        }
                } else {
                        break;
                }
        }
        free(f);
        return n;
}
