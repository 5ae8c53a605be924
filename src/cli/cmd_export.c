/* quire export: the journal as CSV (RFC 4180: CRLF line ends, fields quoted when they hold
 * a comma, a quote or a line end), one row per book, with the contents verdict parsed
 * from the detail field and the MARC fields of DIR/BARCODE_marc.json. A barcode with
 * several lines (reruns) gets the row of its last "ok" line, else of its last line; so the
 * journal is read twice, the first time only to remember which line each barcode's row
 * comes from (an open-addressing table: 16 bytes a barcode plus its bytes). Rows stream
 * out in journal order. */
#include "cmds.h"
#include "quire/base/util.h"
#include "quire/contents/contents.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LINE_CAP  8192
#define MARC_MAX  (16 << 20)
#define NCOLS_MAX 8

enum { EXP_MARC = 256 };

static const struct opt export_opts[] = {
    OPT("marc-dest", EXP_MARC, "DIR", NULL,
        "Where quire extract put BARCODE_marc.json: its fields fill the MARC columns (empty "
        "without).",
        .values = OPT_DIR),
    {0},
};

const struct cmd_spec cmd_export_spec = {
    .name = "export",
    .operands = "JOURNAL",
    .operand_values = OPT_FILE,
    .min_operands = 1,
    .max_operands = 1,
    .summary = "one CSV row per book of a journal, with the MARC fields",
    .description =
        "Writes RFC 4180 CSV on standard output: barcode, time, outcome, bytes, sha256, "
        "contents, checksum, checksum_member, pages, images, texts, hocr, detail, then the "
        "MARC fields. A barcode with several journal lines gets the row of its last ok line, "
        "else of its last line. Streamed: memory holds one table of barcodes.",
    .opts = export_opts,
    .main = cmd_export,
};

struct slot {
        uint64_t line; /* 1-based journal line whose row is kept; 0: empty slot */
        uint32_t name; /* arena offset */
        bool ok;
};

struct table {
        struct slot *s;
        size_t mask, used;
        char *arena;
        size_t alen, acap;
};

static uint64_t hash(const char *p)
{
        uint64_t h = 0xcbf29ce484222325ull;
        for (; *p; p++)
                h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
        return h ^ (h >> 31);
}

static struct slot *find(struct table *t, const char *bc)
{
        size_t i = hash(bc) & t->mask;
        while (t->s[i].line && strcmp(t->arena + t->s[i].name, bc))
                i = (i + 1) & t->mask;
        return &t->s[i];
}

static int grow(struct table *t)
{
        struct table n = *t;
        n.mask = t->mask * 2 + 1;
        n.s = calloc(n.mask + 1, sizeof *n.s);
        if (!n.s)
                return -ENOMEM;
        for (size_t i = 0; i <= t->mask; i++)
                if (t->s[i].line)
                        *find(&n, t->arena + t->s[i].name) = t->s[i];
        free(t->s);
        *t = n;
        return 0;
}

/* Remembers line for barcode bc: an ok line wins over any other, a later one over an
 * earlier one of the same kind. */
static int remember(struct table *t, const char *bc, uint64_t line, bool ok)
{
        if ((t->used + 1) * 4 > (t->mask + 1) * 3 && grow(t))
                return -ENOMEM;
        struct slot *s = find(t, bc);
        if (s->line) {
                if (ok || !s->ok) {
                        s->line = line;
                        s->ok = ok;
                }
                return 0;
        }
        size_t n = strlen(bc) + 1;
        if (t->alen + n > t->acap) {
                size_t cap = t->acap ? t->acap * 2 : 1 << 16;
                while (cap < t->alen + n)
                        cap *= 2;
                char *a = realloc(t->arena, cap);
                if (!a)
                        return -ENOMEM;
                t->arena = a;
                t->acap = cap;
        }
        memcpy(t->arena + t->alen, bc, n);
        *s = (struct slot){.line = line, .name = (uint32_t)t->alen, .ok = ok};
        t->alen += n;
        t->used++;
        return 0;
}

/* Reads one line into buf; a longer line is read to its end and flagged. Returns false
 * at the end of the file; a last line without "\n" is torn and not returned. */
static bool read_line(FILE *f, char *buf, size_t cap, bool *too_long)
{
        *too_long = false;
        size_t n = 0;
        int ch;
        while ((ch = getc(f)) != EOF) {
                if (ch == '\n') {
                        buf[n < cap ? n : cap - 1] = 0;
                        return true;
                }
                if (n + 1 < cap)
                        buf[n] = (char)ch;
                else
                        *too_long = true;
                n++;
        }
        return false;
}

/* Splits a journal line at its tabs: TIME BARCODE OUTCOME BYTES SHA256 DETAIL. */
static int split(char *line, char **col)
{
        int n = 0;
        col[n++] = line;
        for (char *p = line; *p && n < NCOLS_MAX; p++)
                if (*p == '\t') {
                        *p = 0;
                        col[n++] = p + 1;
                }
        return n;
}

static void csv_field(const char *s, size_t n, bool first)
{
        if (!first)
                putchar(',');
        if (!s)
                return;
        if (!strpbrk(s, ",\"\r\n")) {
                fwrite(s, 1, n, stdout);
                return;
        }
        putchar('"');
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '"')
                        putchar('"');
                putchar(s[i]);
        }
        putchar('"');
}

static void csv(const char *s)
{
        csv_field(s, s ? strlen(s) : 0, false);
}

static int unhex(char c)
{
        return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The value of token key= in a detail field, %XX-unescaped, or "" when absent. */
static void token(const char *detail, const char *key, char *out, size_t cap)
{
        size_t k = strlen(key), n = 0;
        out[0] = 0;
        for (const char *p = detail; p && *p; p = strchr(p, ' '), p = p ? p + 1 : NULL) {
                if (strncmp(p, key, k) || p[k] != '=')
                        continue;
                for (p += k + 1; *p && *p != ' ' && n + 1 < cap; p++) {
                        int hi, lo;
                        if (*p == '%' && (hi = unhex(p[1])) >= 0 && (lo = unhex(p[2])) >= 0) {
                                out[n++] = (char)(hi << 4 | lo);
                                p += 2;
                        } else {
                                out[n++] = *p;
                        }
                }
                out[n] = 0;
                return;
        }
}

static json_t *load_marc(const char *dir, const char *barcode)
{
        char path[PATH_MAX];
        struct stat st;
        if ((size_t)snprintf(path, sizeof path, "%s/%s_marc.json", dir, barcode) >= sizeof path ||
            stat(path, &st) || st.st_size > MARC_MAX)
                return NULL;
        json_error_t err;
        json_t *j = json_load_file(path, 0, &err);
        if (!j)
                qlog("%s: %s (line %d)", path, err.text, err.line);
        return j;
}

static void header(void)
{
        fputs("barcode,time,outcome,bytes,sha256,contents,checksum,checksum_member,pages,images,"
              "texts,hocr,detail",
              stdout);
        for (size_t i = 0; contents_marc_keys[i]; i++)
                printf(",%s", contents_marc_keys[i]);
        fputs("\r\n", stdout);
}

static void row(char **col, int ncol, const char *marc_dest)
{
        static const char *const tokens[] = {"contents", "checksum", "member", "pages",
                                             "images",   "texts",    "hocr"};
        char v[1024];
        const char *detail = ncol > 5 ? col[5] : "";
        csv_field(col[1], strlen(col[1]), true);
        csv(col[0]);
        for (int i = 2; i < 5; i++)
                csv(i < ncol ? col[i] : NULL);
        for (size_t i = 0; i < sizeof tokens / sizeof *tokens; i++) {
                token(detail, tokens[i], v, sizeof v);
                csv_field(v, strlen(v), false);
        }
        csv(detail);
        json_t *m = marc_dest ? load_marc(marc_dest, col[1]) : NULL;
        for (size_t i = 0; contents_marc_keys[i]; i++) {
                json_t *f = m ? json_object_get(m, contents_marc_keys[i]) : NULL;
                if (json_is_string(f))
                        csv_field(json_string_value(f), json_string_length(f), false);
                else
                        csv(NULL);
        }
        json_decref(m);
        fputs("\r\n", stdout);
}

static int first_pass(FILE *f, struct table *t, char *buf)
{
        char *col[NCOLS_MAX];
        bool too_long;
        for (uint64_t line = 1; read_line(f, buf, LINE_CAP, &too_long); line++) {
                if (too_long || split(buf, col) < 5 || !col[1][0])
                        continue;
                if (remember(t, col[1], line, !strcmp(col[2], "ok")))
                        return -ENOMEM;
        }
        return ferror(f) ? -EIO : 0;
}

static int second_pass(FILE *f, struct table *t, char *buf, const char *marc_dest)
{
        char *col[NCOLS_MAX];
        bool too_long;
        header();
        for (uint64_t line = 1; read_line(f, buf, LINE_CAP, &too_long); line++) {
                int n;
                if (too_long || (n = split(buf, col)) < 5 || !col[1][0])
                        continue;
                if (find(t, col[1])->line == line)
                        row(col, n, marc_dest);
        }
        return ferror(f) ? -EIO : 0;
}

static int set_option(void *ctx, int key, const char *arg)
{
        if (key == EXP_MARC)
                *(const char **)ctx = arg;
        return 0;
}

int cmd_export(int argc, char **argv)
{
        const char *marc_dest = NULL;
        int next = opts_parse(&cmd_export_spec, argc, argv, set_option, &marc_dest);
        if (next < 0)
                return opts_exit_status(next);
        const char *path = argv[next];
        FILE *f = fopen(path, "r");
        if (!f) {
                qlog("%s: %s", path, strerror(errno));
                return 2;
        }
        struct table t = {.mask = 1023};
        t.s = calloc(t.mask + 1, sizeof *t.s);
        char *buf = malloc(LINE_CAP);
        int r = !t.s || !buf ? -ENOMEM : first_pass(f, &t, buf);
        if (!r)
                r = fseek(f, 0, SEEK_SET) ? -errno : second_pass(f, &t, buf, marc_dest);
        if (!r && fflush(stdout))
                r = -errno;
        if (r)
                qlog("export %s: %s", path, strerror(-r));
        fclose(f);
        free(buf);
        free(t.s);
        free(t.arena);
        return r ? 1 : 0;
}
