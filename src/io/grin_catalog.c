/* GRIN's failed and in-process books, and the conversion requests of a run. */
#include "quire/io/grin_catalog.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quire/base/util.h"
#include "quire/io/grin_request.h"
#include "quire/io/grin_set.h"

/* _failed is one page of a few thousand rows at most; kept whole, a reason a barcode. */
struct failed_entry {
        char *barcode, *reason;
};

struct grin_catalog {
        pthread_mutex_t lock;
        struct failed_entry *failed; /* open addressing, cap a power of two */
        size_t failed_cap, failed_n;
        struct grin_set *in_process; /* grows with the requests of this run */
        struct grin_req *req;
};

static size_t hash_str(const char *s)
{
        size_t h = 1469598103934665603ull;
        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ull;
        return h;
}

static struct failed_entry *failed_slot(struct failed_entry *t, size_t cap, const char *barcode)
{
        for (size_t i = hash_str(barcode) & (cap - 1);; i = (i + 1) & (cap - 1))
                if (!t[i].barcode || !strcmp(t[i].barcode, barcode))
                        return &t[i];
}

static int failed_grow(struct grin_catalog *c)
{
        size_t cap = c->failed_cap ? c->failed_cap * 2 : 1024;
        struct failed_entry *t = calloc(cap, sizeof *t);
        if (!t)
                return -ENOMEM;
        for (size_t i = 0; i < c->failed_cap; i++)
                if (c->failed[i].barcode)
                        *failed_slot(t, cap, c->failed[i].barcode) = c->failed[i];
        free(c->failed);
        c->failed = t;
        c->failed_cap = cap;
        return 0;
}

/* The reason GRIN gives: the detailed column when it has one, else the short one. */
static const char *failed_reason(const struct grin_row *row)
{
        const char *brief = NULL, *detailed = NULL;
        for (unsigned i = 0; i < row->ncols; i++) {
                if (!row->values[i][0])
                        continue;
                if (!strcasecmp(row->names[i], "Detailed Convert Failed Info"))
                        detailed = row->values[i];
                else if (!strcasecmp(row->names[i], "Convert Failed Info"))
                        brief = row->values[i];
        }
        return detailed ? detailed : brief ? brief : "no reason given";
}

static int on_failed_row(void *ud, const struct grin_row *row)
{
        struct grin_catalog *c = ud;
        if ((c->failed_n + 1) * 4 > c->failed_cap * 3 && failed_grow(c) < 0)
                return -ENOMEM;
        struct failed_entry *e = failed_slot(c->failed, c->failed_cap, row->barcode);
        if (e->barcode)
                return 0;
        e->barcode = strdup(row->barcode);
        e->reason = strdup(failed_reason(row));
        if (!e->barcode || !e->reason)
                return -ENOMEM;
        c->failed_n++;
        return 0;
}

static int on_in_process_row(void *ud, const struct grin_row *row)
{
        struct grin_catalog *c = ud;
        int r = grin_set_add(c->in_process, row->barcode, strlen(row->barcode));
        return r < 0 ? r : 0;
}

static int no_columns(void *ud, unsigned n, const char *const *names)
{
        return 0;
}

/* The requester's word on each barcode: only what went wrong needs saying, since the
 * journal said "requested" when the book ended. */
static void on_outcome(void *ud, const char *barcode, enum grin_outcome o, const char *detail)
{
        if (o == GRIN_REQUESTED || o == GRIN_ALREADY_IN_PROCESS)
                return;
        qlog("%s: conversion request: %s%s%s", barcode, grin_outcome_name(o), detail[0] ? ": " : "",
             detail);
}

int grin_catalog_open(struct grin_catalog **out, const struct grin_site *site,
                      unsigned request_batch, bool look_only, char *msg, size_t msglen)
{
        struct grin_catalog *c = calloc(1, sizeof *c);
        if (!c) {
                snprintf(msg, msglen, "out of memory");
                return -ENOMEM;
        }
        *out = c;
        pthread_mutex_init(&c->lock, NULL);
        c->in_process = grin_set_new(2 * GRIN_QUEUE_MAX);
        int err = c->in_process ? failed_grow(c) : -ENOMEM;
        if (err) {
                snprintf(msg, msglen, "out of memory");
                return err;
        }
        struct grin_sink failed = {no_columns, on_failed_row, c};
        struct grin_sink in_process = {no_columns, on_in_process_row, c};
        err = grin_list_fetch(site, GRIN_LIST_FAILED, &failed, msg, msglen);
        if (!err)
                err = grin_list_fetch(site, GRIN_LIST_IN_PROCESS, &in_process, msg, msglen);
        if (err || look_only)
                return err;
        struct grin_req_config rc = {.batch = request_batch, .fn = on_outcome, .ud = c};
        return grin_req_open(&c->req, site, &rc, msg, msglen);
}

static bool queue_full(struct grin_catalog *c)
{
        struct grin_req_stats st;
        grin_req_stats(c->req, &st);
        return st.queue_full || st.room == 0;
}

enum grin_known grin_catalog_known(struct grin_catalog *c, const char *barcode)
{
        pthread_mutex_lock(&c->lock);
        enum grin_known k =
            failed_slot(c->failed, c->failed_cap, barcode)->barcode ? GRIN_KNOWN_FAILED
            : grin_set_has(c->in_process, barcode, strlen(barcode)) ? GRIN_KNOWN_IN_PROCESS
                                                                    : GRIN_UNKNOWN;
        pthread_mutex_unlock(&c->lock);
        return k;
}

void grin_catalog_missing(void *ctx, const char *barcode, struct source_missing *m)
{
        struct grin_catalog *c = ctx;
        size_t len = strlen(barcode);
        pthread_mutex_lock(&c->lock);
        struct failed_entry *e = failed_slot(c->failed, c->failed_cap, barcode);
        if (e->barcode) {
                m->outcome = "conversion-failed";
                snprintf(m->detail, sizeof m->detail, "GRIN: %s", e->reason);
        } else if (grin_set_has(c->in_process, barcode, len)) {
                m->outcome = "in-process";
                snprintf(m->detail, sizeof m->detail, "GRIN is converting it");
        } else if (queue_full(c)) {
                /* A 429 stops the requests for this run without failing a book. */
                m->outcome = "not-requested";
                snprintf(m->detail, sizeof m->detail,
                         "not converted yet; GRIN's conversion queue is full (HTTP 429)");
        } else if (grin_req_submit(c->req, barcode, false) == 0) {
                grin_set_add(c->in_process, barcode, len); /* never asked twice */
                m->outcome = "requested";
                snprintf(m->detail, sizeof m->detail, "not converted yet: conversion requested");
        } else {
                m->outcome = "not-requested";
                snprintf(m->detail, sizeof m->detail,
                         "not converted yet; too many conversion requests wait to be sent");
        }
        pthread_mutex_unlock(&c->lock);
}

void grin_catalog_close(struct grin_catalog *c)
{
        if (!c)
                return;
        if (c->req)
                grin_req_close(c->req);
        for (size_t i = 0; i < c->failed_cap; i++) {
                free(c->failed[i].barcode);
                free(c->failed[i].reason);
        }
        free(c->failed);
        grin_set_free(c->in_process);
        pthread_mutex_destroy(&c->lock);
        free(c);
}
