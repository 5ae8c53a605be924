/* Prometheus text exposition: a bounded appender into the caller's buffer, and the
 * write-then-rename that keeps scrapes whole. */
#include "quire/engine/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quire/base/util.h"

struct text {
        char *p;
        size_t len, cap;
        bool overflow;
};

static void add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct text *t, const char *fmt, ...)
{
        if (t->overflow)
                return;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= t->cap - t->len) {
                t->overflow = true;
                return;
        }
        t->len += (size_t)n;
}

static void header(struct text *t, const char *name, const char *type, const char *help)
{
        add(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value as the format wants it: backslash, double quote and newline escaped. */
static void add_label_value(struct text *t, const char *v)
{
        for (; *v && !t->overflow; v++) {
                if (*v == '\\' || *v == '"')
                        add(t, "\\%c", *v);
                else if (*v == '\n')
                        add(t, "\\n");
                else
                        add(t, "%c", *v);
        }
}

static void labelled(struct text *t, const char *name, const char *type, const char *help,
                     const char *label, const struct metrics_count *c, size_t n)
{
        header(t, name, type, help);
        for (size_t i = 0; i < n; i++) {
                add(t, "%s{%s=\"", name, label);
                add_label_value(t, c[i].label);
                add(t, "\"} %llu\n", (unsigned long long)c[i].value);
        }
}

static void scalar_u(struct text *t, const char *name, const char *type, const char *help,
                     uint64_t v)
{
        header(t, name, type, help);
        add(t, "%s %llu\n", name, (unsigned long long)v);
}

static void scalar_f(struct text *t, const char *name, const char *type, const char *help, double v)
{
        header(t, name, type, help);
        add(t, "%s %.3f\n", name, v);
}

int metrics_format(const struct metrics_snap *s, char *buf, size_t cap, size_t *len)
{
        struct text t = {buf, 0, cap, cap == 0};
        labelled(&t, "quire_books_total", "counter", "Books finished, by outcome.", "outcome",
                 s->outcomes, s->noutcomes);
        labelled(&t, "quire_retries_total", "counter", "Retries of a transient failure, by cause.",
                 "cause", s->retries, s->nretries);
        scalar_u(&t, "quire_fetched_bytes_total", "counter",
                 "Encrypted bytes received from the source.", s->fetched_bytes);
        scalar_u(&t, "quire_delivered_bytes_total", "counter",
                 "Decrypted bytes delivered to the destination.", s->delivered_bytes);
        scalar_u(&t, "quire_resumed_bytes_total", "counter",
                 "Encrypted bytes not fetched again: broken downloads resumed where they broke.",
                 s->resumed_bytes);
        scalar_f(&t, "quire_download_busy_seconds_total", "counter",
                 "Time download slots were busy, summed over the slots.", s->download_busy_s);
        scalar_f(&t, "quire_upload_busy_seconds_total", "counter",
                 "Time upload slots were busy, summed over the slots.", s->upload_busy_s);
        scalar_f(&t, "quire_s2k_seconds_total", "counter",
                 "Time spent deriving keys (S2K), summed over threads.", s->s2k_s);
        labelled(&t, "quire_books", "gauge", "Books in each stage now.", "stage", s->stages,
                 s->nstages);
        scalar_u(&t, "quire_download_slots", "gauge", "Concurrent downloads allowed (--downloads).",
                 s->download_slots);
        scalar_u(&t, "quire_upload_slots", "gauge", "Concurrent uploads allowed (--uploads).",
                 s->upload_slots);
        if (s->books_listed >= 0)
                scalar_u(&t, "quire_books_listed", "gauge", "Books in the barcode list.",
                         (uint64_t)s->books_listed);
        scalar_f(&t, "quire_start_time_seconds", "gauge", "Unix time the run started.",
                 s->start_time_s);
        scalar_u(&t, "quire_draining", "gauge",
                 "1 once a signal asked the run to finish what it holds and stop.", s->draining);
        header(&t, "quire_build_info", "gauge", "The quire build; always 1.");
        add(&t, "quire_build_info{version=\"");
        add_label_value(&t, s->version ? s->version : "unknown");
        add(&t, "\"} 1\n");
        if (t.overflow) {
                if (cap)
                        buf[0] = 0;
                return -ENOSPC;
        }
        *len = t.len;
        return 0;
}

int metrics_write_atomic(const char *path, const char *text, size_t len)
{
        char tmp[PATH_MAX];
        const char *slash = strrchr(path, '/');
        int dirlen = slash ? (int)(slash - path + 1) : 0;
        if (snprintf(tmp, sizeof tmp, "%.*s.%s.XXXXXX", dirlen, path, path + dirlen) >=
            (int)sizeof tmp)
                return -ENAMETOOLONG;
        int fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return -errno;
        /* Not the umask dance: umask() is process-wide and worker threads create files. */
        int rc = fchmod(fd, 0644) ? -errno : 0;
        if (!rc)
                rc = util_write_all(fd, text, len);
        if (!rc && fsync(fd))
                rc = -errno;
        if (close(fd) && !rc)
                rc = -errno;
        if (!rc && rename(tmp, path))
                rc = -errno;
        if (rc)
                unlink(tmp);
        return rc;
}
