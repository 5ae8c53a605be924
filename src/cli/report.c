/* quire report's aggregation. Everything it keeps is allocated by report_new: a line
 * costs a split into fields, a timestamp parse (cached: consecutive lines mostly share
 * their second) and, for failures, a normalisation and a probe of a fixed hash table. */
#include "report.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define READ_BUF     (256 * 1024)
#define LONG_LINE    8192 /* journal lines are at most 4 KiB; longer ones are not ours */
#define BARCODE_LEN  64
#define OUTCOME_LEN  32
#define SAMPLE_LEN   160
#define REASON_SLOTS (2 * REPORT_MAX_REASONS) /* load <= 1/2 */
#define EXAMPLES     2

struct outcome_count {
        char name[OUTCOME_LEN + 1];
        uint64_t lines, bytes;
};

struct reason {
        char key[REPORT_KEY_MAX];
        char outcome[OUTCOME_LEN + 1];
        char sample[SAMPLE_LEN]; /* the first detail as it was written */
        char example[EXAMPLES][BARCODE_LEN + 1];
        uint64_t count;
        uint64_t hash;
};

struct slow {
        double seconds;
        char barcode[BARCODE_LEN + 1];
        char outcome[OUTCOME_LEN + 1];
};

struct report {
        uint64_t lines, malformed, first_malformed, finished;
        bool torn;
        struct outcome_count outcomes[REPORT_MAX_OUTCOMES];
        unsigned noutcomes;
        uint64_t other_outcome_lines;
        uint64_t failures, bytes_all;
        struct reason *reasons; /* REPORT_MAX_REASONS, filled in order of first sight */
        uint32_t *slots;        /* REASON_SLOTS: index + 1 into reasons, 0 = empty */
        unsigned nreasons;
        uint64_t other_reason_failures;
        /* time */
        time_t first_t, last_t;
        time_t prev_t; /* the previous line's time, and its text: parse_time's cache */
        char prev_ts[21];
        bool have_t;
        double active_s, gap_s;
        uint64_t gaps;
        /* durations (7th column) */
        struct slow *slowest; /* a min-heap of the top slowest, by seconds */
        unsigned top, nslow;
        uint64_t timed;
        double timed_sum;
};

int report_new(struct report **out, unsigned top, double gap_s)
{
        struct report *r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        r->reasons = calloc(REPORT_MAX_REASONS, sizeof *r->reasons);
        r->slots = calloc(REASON_SLOTS, sizeof *r->slots);
        r->slowest = calloc(top ? top : 1, sizeof *r->slowest);
        if (!r->reasons || !r->slots || !r->slowest) {
                report_free(r);
                return -ENOMEM;
        }
        r->top = top;
        r->gap_s = gap_s;
        *out = r;
        return 0;
}

void report_free(struct report *r)
{
        if (!r)
                return;
        free(r->reasons);
        free(r->slots);
        free(r->slowest);
        free(r);
}

static uint64_t fnv1a(const char *s, size_t n, uint64_t h)
{
        for (size_t i = 0; i < n; i++)
                h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
        return h;
}

/* ---- normalisation ---------------------------------------------------------------- */

static bool is_word(char c)
{
        return isalnum((unsigned char)c) || c == '_';
}

struct out {
        char *p;
        size_t len, cap;
};

static void put(struct out *o, const char *s, size_t n)
{
        if (n > o->cap - 1 - o->len)
                n = o->cap - 1 - o->len;
        memcpy(o->p + o->len, s, n);
        o->len += n;
}

static bool ends_with(const struct out *o, const char *s)
{
        size_t n = strlen(s);
        return o->len >= n && !memcmp(o->p + o->len - n, s, n);
}

static bool all_hex_with_digit(const char *s, size_t n)
{
        bool digit = false;
        for (size_t i = 0; i < n; i++) {
                if (!isxdigit((unsigned char)s[i]))
                        return false;
                digit |= isdigit((unsigned char)s[i]) != 0;
        }
        return digit;
}

static void put_token(struct out *o, const char *t, size_t n, const char *barcode, size_t blen)
{
        if (blen && n == blen && !memcmp(t, barcode, n)) {
                put(o, "BARCODE", 7);
                return;
        }
        if (n >= 8 && all_hex_with_digit(t, n)) {
                put(o, "HEX", 3);
                return;
        }
        if (!isdigit((unsigned char)t[0])) {
                put(o, t, n);
                return;
        }
        size_t digits = 0;
        while (digits < n && isdigit((unsigned char)t[digits]))
                digits++;
        if (digits == n && n == 3 && ends_with(o, "HTTP ")) {
                put(o, t, n);
                return;
        }
        put(o, "N", 1);
        put(o, t + digits, n - digits);
}

static void drop_suffix(struct out *o, const char *s)
{
        if (ends_with(o, s))
                o->len -= strlen(s);
}

void report_normalize(const char *detail, size_t len, const char *barcode, char *out, size_t cap)
{
        struct out o = {out, 0, cap};
        size_t blen = barcode ? strlen(barcode) : 0;
        for (size_t i = 0; i < len;) {
                if (is_word(detail[i])) {
                        size_t j = i;
                        while (j < len && is_word(detail[j]))
                                j++;
                        put_token(&o, detail + i, j - i, barcode, blen);
                        i = j;
                } else if (isspace((unsigned char)detail[i])) {
                        while (i < len && isspace((unsigned char)detail[i]))
                                i++;
                        if (o.len)
                                put(&o, " ", 1);
                } else {
                        put(&o, detail + i++, 1);
                }
        }
        while (o.len && out[o.len - 1] == ' ')
                o.len--;
        drop_suffix(&o, " (after N retries)");
        drop_suffix(&o, " (after N retry)");
        out[o.len] = 0;
}

/* ---- one line ---------------------------------------------------------------------- */

struct fields {
        const char *f[7];
        size_t len[7];
        unsigned n;
};

/* Splits off the first seven tab-separated fields; the 7th ends at the next tab. */
static void split(const char *s, size_t n, struct fields *fl)
{
        const char *end = s + n;
        fl->n = 0;
        while (fl->n < 7) {
                const char *tab = memchr(s, '\t', (size_t)(end - s));
                fl->f[fl->n] = s;
                fl->len[fl->n] = (size_t)((tab ? tab : end) - s);
                fl->n++;
                if (!tab)
                        break;
                s = tab + 1;
        }
}

static bool valid_outcome(const char *s, size_t n)
{
        if (n == 0 || n > OUTCOME_LEN)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!islower((unsigned char)s[i]) && !isdigit((unsigned char)s[i]) && s[i] != '-' &&
                    s[i] != '_')
                        return false;
        return true;
}

static bool valid_barcode(const char *s, size_t n)
{
        if (n == 0 || n > BARCODE_LEN)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)s[i] <= ' ')
                        return false;
        return true;
}

static bool parse_u64(const char *s, size_t n, uint64_t *out)
{
        uint64_t v = 0;
        if (n == 0 || n > 19)
                return false;
        for (size_t i = 0; i < n; i++) {
                if (!isdigit((unsigned char)s[i]))
                        return false;
                v = v * 10 + (uint64_t)(s[i] - '0');
        }
        *out = v;
        return true;
}

static bool parse_time(struct report *r, const char *s, size_t n, time_t *t)
{
        if (n != 20)
                return false;
        if (r->have_t && !memcmp(s, r->prev_ts, 20)) {
                *t = r->prev_t;
                return true;
        }
        char buf[21];
        memcpy(buf, s, 20);
        buf[20] = 0;
        struct tm tm = {0};
        const char *end = strptime(buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
        if (!end || *end)
                return false;
        *t = timegm(&tm);
        return true;
}

/* Seconds: a plain decimal number, as the proposed 7th column writes it ("12.345"). */
static bool parse_seconds(const char *s, size_t n, double *out)
{
        char buf[32];
        if (n == 0 || n >= sizeof buf || !isdigit((unsigned char)s[0]))
                return false;
        memcpy(buf, s, n);
        buf[n] = 0;
        char *end;
        double v = strtod(buf, &end);
        if (*end || !isfinite(v))
                return false;
        *out = v;
        return true;
}

/* Active time grows only when a line is later than every line before it: threads append
 * slightly out of order, and a journal pieced together from others may jump back. */
static void count_time(struct report *r, const char *ts, time_t t)
{
        if (!r->have_t) {
                r->first_t = r->last_t = t;
        } else {
                double d = difftime(t, r->last_t);
                if (d > r->gap_s)
                        r->gaps++;
                else if (d > 0)
                        r->active_s += d;
                r->first_t = t < r->first_t ? t : r->first_t;
                r->last_t = t > r->last_t ? t : r->last_t;
        }
        r->have_t = true;
        r->prev_t = t;
        memcpy(r->prev_ts, ts, 20);
}

static void count_outcome(struct report *r, const char *s, size_t n, uint64_t bytes)
{
        for (unsigned i = 0; i < r->noutcomes; i++) {
                struct outcome_count *o = &r->outcomes[i];
                if (strlen(o->name) == n && !memcmp(o->name, s, n)) {
                        o->lines++;
                        o->bytes += bytes;
                        return;
                }
        }
        if (r->noutcomes == REPORT_MAX_OUTCOMES) {
                r->other_outcome_lines++;
                return;
        }
        struct outcome_count *o = &r->outcomes[r->noutcomes++];
        memcpy(o->name, s, n);
        o->name[n] = 0;
        o->lines = 1;
        o->bytes = bytes;
}

static bool is_failure(const char *s, size_t n)
{
        return (n == 6 && !memcmp(s, "failed", 6)) || (n > 7 && !memcmp(s + n - 7, "-failed", 7));
}

/* Outcomes that say where a book is, not how it ended. */
static bool is_finished(const char *s, size_t n)
{
        return !(n == 9 && !memcmp(s, "requested", 9)) &&
               !(n == 10 && !memcmp(s, "in-process", 10));
}

static void copy_field(char *dst, size_t cap, const char *s, size_t n)
{
        if (n > cap - 1)
                n = cap - 1;
        memcpy(dst, s, n);
        dst[n] = 0;
}

static struct reason *find_reason(struct report *r, const char *key, const char *outcome)
{
        uint64_t h =
            fnv1a(outcome, strlen(outcome), fnv1a(key, strlen(key), 0xcbf29ce484222325ull));
        for (size_t i = h % REASON_SLOTS;; i = (i + 1) % REASON_SLOTS) {
                uint32_t e = r->slots[i];
                if (!e) {
                        if (r->nreasons == REPORT_MAX_REASONS)
                                return NULL;
                        struct reason *g = &r->reasons[r->nreasons++];
                        r->slots[i] = r->nreasons;
                        snprintf(g->key, sizeof g->key, "%s", key);
                        snprintf(g->outcome, sizeof g->outcome, "%s", outcome);
                        g->hash = h;
                        return g;
                }
                struct reason *g = &r->reasons[e - 1];
                if (g->hash == h && !strcmp(g->key, key) && !strcmp(g->outcome, outcome))
                        return g;
        }
}

static void count_failure(struct report *r, const struct fields *fl)
{
        char barcode[BARCODE_LEN + 1], outcome[OUTCOME_LEN + 1], key[REPORT_KEY_MAX];
        copy_field(barcode, sizeof barcode, fl->f[1], fl->len[1]);
        copy_field(outcome, sizeof outcome, fl->f[2], fl->len[2]);
        report_normalize(fl->f[5], fl->len[5], barcode, key, sizeof key);
        r->failures++;
        struct reason *g = find_reason(r, key, outcome);
        if (!g) {
                r->other_reason_failures++;
                return;
        }
        if (g->count < EXAMPLES)
                snprintf(g->example[g->count], sizeof g->example[0], "%s", barcode);
        if (!g->count)
                copy_field(g->sample, sizeof g->sample, fl->f[5], fl->len[5]);
        g->count++;
}

static void heap_swap(struct slow *a, struct slow *b)
{
        struct slow t = *a;
        *a = *b;
        *b = t;
}

static void heap_sift_down(struct slow *h, unsigned n, unsigned i)
{
        for (;;) {
                unsigned m = i, l = 2 * i + 1, rt = l + 1;
                if (l < n && h[l].seconds < h[m].seconds)
                        m = l;
                if (rt < n && h[rt].seconds < h[m].seconds)
                        m = rt;
                if (m == i)
                        return;
                heap_swap(&h[i], &h[m]);
                i = m;
        }
}

static void count_duration(struct report *r, const struct fields *fl, double s)
{
        r->timed++;
        r->timed_sum += s;
        if (!r->top || (r->nslow == r->top && s <= r->slowest[0].seconds))
                return;
        struct slow *e;
        if (r->nslow < r->top) {
                unsigned i = r->nslow++;
                /* sift up */
                r->slowest[i].seconds = s;
                e = &r->slowest[i];
                copy_field(e->barcode, sizeof e->barcode, fl->f[1], fl->len[1]);
                copy_field(e->outcome, sizeof e->outcome, fl->f[2], fl->len[2]);
                while (i && r->slowest[(i - 1) / 2].seconds > r->slowest[i].seconds) {
                        heap_swap(&r->slowest[i], &r->slowest[(i - 1) / 2]);
                        i = (i - 1) / 2;
                }
                return;
        }
        e = &r->slowest[0];
        e->seconds = s;
        copy_field(e->barcode, sizeof e->barcode, fl->f[1], fl->len[1]);
        copy_field(e->outcome, sizeof e->outcome, fl->f[2], fl->len[2]);
        heap_sift_down(r->slowest, r->nslow, 0);
}

void report_line(struct report *r, const char *line, size_t len)
{
        struct fields fl;
        uint64_t bytes;
        time_t t;
        r->lines++;
        split(line, len, &fl);
        if (fl.n < 6 || !valid_barcode(fl.f[1], fl.len[1]) || !valid_outcome(fl.f[2], fl.len[2]) ||
            !parse_u64(fl.f[3], fl.len[3], &bytes) || !parse_time(r, fl.f[0], fl.len[0], &t)) {
                if (!r->malformed++)
                        r->first_malformed = r->lines;
                return;
        }
        count_time(r, fl.f[0], t);
        count_outcome(r, fl.f[2], fl.len[2], bytes);
        r->bytes_all += bytes;
        r->finished += is_finished(fl.f[2], fl.len[2]);
        if (is_failure(fl.f[2], fl.len[2]))
                count_failure(r, &fl);
        double s;
        if (fl.n == 7 && parse_seconds(fl.f[6], fl.len[6], &s))
                count_duration(r, &fl, s);
}

int report_read_fd(struct report *r, int fd)
{
        char *buf = malloc(READ_BUF);
        if (!buf)
                return -ENOMEM;
        size_t have = 0;
        bool skipping = false; /* inside a line longer than LONG_LINE: not ours */
        int rc = 0;
        for (;;) {
                ssize_t n = read(fd, buf + have, READ_BUF - have);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        rc = -errno;
                        break;
                }
                if (n == 0)
                        break;
                have += (size_t)n;
                char *p = buf, *nl;
                while ((nl = memchr(p, '\n', have - (size_t)(p - buf)))) {
                        if (skipping)
                                r->lines++;
                        else
                                report_line(r, p, (size_t)(nl - p));
                        skipping = false;
                        p = nl + 1;
                }
                have -= (size_t)(p - buf);
                memmove(buf, p, have);
                if (have >= LONG_LINE) {
                        if (!skipping && !r->malformed++)
                                r->first_malformed = r->lines + 1;
                        skipping = true;
                        have = 0;
                }
        }
        r->torn = have > 0 || skipping;
        free(buf);
        return rc;
}

/* ---- output ------------------------------------------------------------------------ */

/* 1234567 → "1,234,567" */
static const char *grouped(char buf[32], uint64_t v)
{
        char digits[24];
        int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)v), o = 0;
        for (int i = 0; i < n; i++) {
                if (i && (n - i) % 3 == 0)
                        buf[o++] = ',';
                buf[o++] = digits[i];
        }
        buf[o] = 0;
        return buf;
}

static void human_bytes(char *buf, size_t n, uint64_t v)
{
        static const char *const unit[] = {"B", "kB", "MB", "GB", "TB", "PB"};
        double d = (double)v;
        unsigned u = 0;
        while (d >= 1000 && u < 5) {
                d /= 1000;
                u++;
        }
        snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", d, unit[u]);
}

static void human_duration(char *buf, size_t n, double s)
{
        uint64_t t = (uint64_t)(s + 0.5);
        if (t >= 86400)
                snprintf(buf, n, "%llud %lluh", (unsigned long long)(t / 86400),
                         (unsigned long long)(t % 86400 / 3600));
        else if (t >= 3600)
                snprintf(buf, n, "%lluh %llum", (unsigned long long)(t / 3600),
                         (unsigned long long)(t % 3600 / 60));
        else if (t >= 60)
                snprintf(buf, n, "%llum %llus", (unsigned long long)(t / 60),
                         (unsigned long long)(t % 60));
        else
                snprintf(buf, n, "%llus", (unsigned long long)t);
}

static void iso(char buf[21], time_t t)
{
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(buf, 21, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static uint64_t delivered_bytes(const struct report *r)
{
        for (unsigned i = 0; i < r->noutcomes; i++)
                if (!strcmp(r->outcomes[i].name, "ok"))
                        return r->outcomes[i].bytes;
        return 0;
}

static uint64_t outcome_lines(const struct report *r, const char *name)
{
        for (unsigned i = 0; i < r->noutcomes; i++)
                if (!strcmp(r->outcomes[i].name, name))
                        return r->outcomes[i].lines;
        return 0;
}

/* Books per hour over the active time; negative when there is no time to divide by. */
static double per_hour(const struct report *r, uint64_t n)
{
        return r->active_s > 0 ? (double)n * 3600.0 / r->active_s : -1;
}

/* Reasons by count, most first; ties in order of first sight. */
static int by_count(const void *a, const void *b)
{
        const struct reason *x = *(const struct reason *const *)a,
                            *y = *(const struct reason *const *)b;
        if (x->count != y->count)
                return x->count < y->count ? 1 : -1;
        return x < y ? -1 : 1;
}

static int by_seconds(const void *a, const void *b)
{
        const struct slow *x = a, *y = b;
        return x->seconds < y->seconds ? 1 : x->seconds > y->seconds ? -1 : 0;
}

/* Sorted views of what the report holds, in scratch the caller frees. */
static const struct reason **sorted_reasons(const struct report *r)
{
        const struct reason **v = malloc((r->nreasons + 1) * sizeof *v);
        if (!v)
                return NULL;
        for (unsigned i = 0; i < r->nreasons; i++)
                v[i] = &r->reasons[i];
        qsort(v, r->nreasons, sizeof *v, by_count);
        return v;
}

static struct slow *sorted_slowest(const struct report *r)
{
        struct slow *v = malloc((r->nslow + 1) * sizeof *v);
        if (!v)
                return NULL;
        memcpy(v, r->slowest, r->nslow * sizeof *v);
        qsort(v, r->nslow, sizeof *v, by_seconds);
        return v;
}

static void text_header(const struct report *r, const char *name, FILE *out)
{
        char a[32], b[32];
        fprintf(out, "journal %s: %s lines", name, grouped(a, r->lines));
        if (r->malformed)
                fprintf(out, " (%s not in the journal's format, the first at line %s)",
                        grouped(a, r->malformed), grouped(b, r->first_malformed));
        if (r->torn)
                fputs(" (a torn last line ignored)", out);
        fputs("\noutcomes:", out);
        for (unsigned i = 0; i < r->noutcomes; i++)
                fprintf(out, "%s %s %s", i ? "," : "", r->outcomes[i].name,
                        grouped(a, r->outcomes[i].lines));
        if (r->other_outcome_lines)
                fprintf(out, ", other %s", grouped(a, r->other_outcome_lines));
        if (!r->noutcomes)
                fputs(" none", out);
        char hb[32];
        human_bytes(hb, sizeof hb, delivered_bytes(r));
        fprintf(out, "\nbytes delivered: %s (%s bytes)\n", hb, grouped(a, delivered_bytes(r)));
}

static void text_time(const struct report *r, FILE *out)
{
        if (!r->have_t)
                return;
        char first[21], last[21], span[32], active[32], gap[32], a[32], b[32];
        iso(first, r->first_t);
        iso(last, r->last_t);
        human_duration(span, sizeof span, difftime(r->last_t, r->first_t));
        human_duration(active, sizeof active, r->active_s);
        human_duration(gap, sizeof gap, r->gap_s);
        fprintf(out, "time: %s to %s (%s; active %s, %s pause%s over %s left out)\n", first, last,
                span, active, grouped(a, r->gaps), r->gaps == 1 ? "" : "s", gap);
        double all = per_hour(r, r->finished), ok = per_hour(r, outcome_lines(r, "ok"));
        if (all < 0)
                fputs("rate: unknown (no time passed between lines)\n", out);
        else
                fprintf(out, "rate: %s books/hour, %s delivered/hour (over the active time)\n",
                        grouped(a, (uint64_t)(all + 0.5)), grouped(b, (uint64_t)(ok + 0.5)));
}

static void text_failures(const struct report *r, FILE *out)
{
        char a[32];
        if (!r->failures)
                return;
        fprintf(out, "failures by reason (%s):\n", grouped(a, r->failures));
        const struct reason **v = sorted_reasons(r);
        for (unsigned i = 0; v && i < r->nreasons; i++) {
                const struct reason *g = v[i];
                fprintf(out, "  %10s  %s%s%s  e.g. %s%s%s\n", grouped(a, g->count),
                        strcmp(g->outcome, "failed") ? g->outcome : "",
                        strcmp(g->outcome, "failed") ? ": " : "", g->key, g->example[0],
                        g->count > 1 ? ", " : "", g->count > 1 ? g->example[1] : "");
        }
        free(v);
        if (r->other_reason_failures)
                fprintf(out, "  %10s  (other reasons: more than %d distinct)\n",
                        grouped(a, r->other_reason_failures), REPORT_MAX_REASONS);
}

static void text_slowest(const struct report *r, FILE *out)
{
        if (!r->timed) {
                fputs("slowest books: unknown (no line has a duration, the optional 7th "
                      "column in seconds)\n",
                      out);
                return;
        }
        char a[32];
        fprintf(out, "durations: %s books, mean %.1f s; slowest:\n", grouped(a, r->timed),
                r->timed_sum / (double)r->timed);
        struct slow *v = sorted_slowest(r);
        for (unsigned i = 0; v && i < r->nslow; i++)
                fprintf(out, "  %10.1f s  %s  %s\n", v[i].seconds, v[i].barcode, v[i].outcome);
        free(v);
}

void report_print_text(const struct report *r, const char *name, FILE *out)
{
        text_header(r, name, out);
        text_time(r, out);
        text_failures(r, out);
        text_slowest(r, out);
}

static json_t *json_rate(double v)
{
        return v < 0 ? json_null() : json_real((double)(int64_t)(v * 10 + 0.5) / 10);
}

static json_t *json_time(const struct report *r)
{
        if (!r->have_t)
                return json_null();
        char first[21], last[21];
        iso(first, r->first_t);
        iso(last, r->last_t);
        return json_pack("{s:s, s:s, s:f, s:f, s:I, s:f}", "first", first, "last", last, "span_s",
                         difftime(r->last_t, r->first_t), "active_s", r->active_s, "pauses",
                         (json_int_t)r->gaps, "pause_over_s", r->gap_s);
}

static json_t *json_failures(const struct report *r)
{
        json_t *a = json_array();
        const struct reason **v = sorted_reasons(r);
        for (unsigned i = 0; v && i < r->nreasons; i++) {
                const struct reason *g = v[i];
                json_t *ex = json_array();
                for (unsigned k = 0; k < EXAMPLES && k < g->count; k++)
                        json_array_append_new(ex, json_string(g->example[k]));
                json_array_append_new(a,
                                      json_pack("{s:s, s:s, s:I, s:o, s:s}", "outcome", g->outcome,
                                                "reason", g->key, "count", (json_int_t)g->count,
                                                "examples", ex, "sample", g->sample));
        }
        free(v);
        return a;
}

static json_t *json_slowest(const struct report *r)
{
        if (!r->timed)
                return json_null();
        json_t *a = json_array();
        struct slow *v = sorted_slowest(r);
        for (unsigned i = 0; v && i < r->nslow; i++)
                json_array_append_new(a,
                                      json_pack("{s:s, s:s, s:f}", "barcode", v[i].barcode,
                                                "outcome", v[i].outcome, "seconds", v[i].seconds));
        free(v);
        return a;
}

int report_print_json(const struct report *r, const char *name, FILE *out)
{
        json_t *outcomes = json_object();
        for (unsigned i = 0; i < r->noutcomes; i++)
                json_object_set_new(outcomes, r->outcomes[i].name,
                                    json_integer((json_int_t)r->outcomes[i].lines));
        if (r->other_outcome_lines)
                json_object_set_new(outcomes, "other",
                                    json_integer((json_int_t)r->other_outcome_lines));
        json_t *o = json_pack(
            "{s:s, s:I, s:I, s:I, s:b, s:o, s:{s:I, s:I}, s:o, s:{s:o, s:o}, s:I, s:o, s:I, "
            "s:o, s:I, s:o}",
            "journal", name, "lines", (json_int_t)r->lines, "malformed", (json_int_t)r->malformed,
            "first_malformed_line", r->malformed ? (json_int_t)r->first_malformed : 0,
            "torn_last_line", r->torn, "outcomes", outcomes, "bytes", "delivered",
            (json_int_t)delivered_bytes(r), "all", (json_int_t)r->bytes_all, "time", json_time(r),
            "per_hour", "books", json_rate(per_hour(r, r->finished)), "delivered",
            json_rate(per_hour(r, outcome_lines(r, "ok"))), "failures", (json_int_t)r->failures,
            "by_reason", json_failures(r), "other_reason_failures",
            (json_int_t)r->other_reason_failures, "slowest", json_slowest(r), "timed",
            (json_int_t)r->timed, "mean_s",
            r->timed ? json_real(r->timed_sum / (double)r->timed) : json_null());
        if (!o)
                return -ENOMEM;
        int rc = json_dumpf(o, out, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
        return rc || fputc('\n', out) == EOF ? -EIO : 0;
}
