/* quire report's output: the summary as text for a reader, or as one JSON object, from
 * what report.c counted. Sorting is done on copies, so printing leaves the report as it is. */
#include "report_int.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

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
