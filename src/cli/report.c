/* quire report's aggregation. Everything it keeps is allocated by report_new: a line
 * costs a split into fields, a timestamp parse (cached: consecutive lines mostly share
 * their second) and, for failures, a normalisation and a probe of a fixed hash table. */
#include "report_int.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_BUF     (256 * 1024)
#define LONG_LINE    8192 /* journal lines are at most 4 KiB; longer ones are not ours */
#define REASON_SLOTS (2 * REPORT_MAX_REASONS) /* load <= 1/2 */

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
