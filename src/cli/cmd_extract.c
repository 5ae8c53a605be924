/* quire extract: the contents reader over archives already stored (files, directories of
 * BARCODE.tar.gz, or S3 prefixes of them), without unpacking them: BARCODE_ocr.jsonl.gz,
 * BARCODE_marc.json and the checksum.md5 verdict, one journal line per book. It runs on
 * the engine of quire run (its queue, workers, status lines and journal) in the engine's
 * plaintext mode: the source's bytes are the archive itself, read through the worker's
 * loop, and only the derived outputs are delivered, each through its sink (a directory,
 * or S3).
 *
 * The list the engine reads is made as it goes by a producer thread that walks the
 * operands into a pipe, one "BARCODE<TAB>N" line a book (N: the operand it came from), so a
 * directory (or an S3 prefix, listed page by page) of a million archives costs the pipe's
 * bound, not a list in memory. The source wraps the file source and one S3 source per
 * s3:// operand, and turns N back into the archive's path or the operand's prefix.
 *
 * Outputs are staged as unnamed files in their destination (O_TMPFILE), synced, and only
 * then given their name: a crash leaves nothing half-written. A rerun skips a book whose
 * journal line says ok and whose outputs are all in their destinations, and reads the
 * others again. */
#include "cmds.h"
#include "derived_sinks.h"
#include "quire/base/util.h"
#include "quire/engine/feeder.h"
#include "quire/engine/run.h"
#include "quire/io/sources.h"

#include <assert.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_THREADS    64
#define ARCHIVE_SUFFIX ".tar.gz" /* the Python pipeline's stored name: BARCODE.tar.gz */

enum {
        EX_OCR = 256,
        EX_MARC,
        EX_VERIFY,
        EX_JOURNAL,
        EX_THREADS,
        EX_STATUS,
        EX_STAGING,
        EX_S3_ENDPOINT,
        EX_CA,
        EX_STALL,
};

static const struct opt extract_opts[] = {
    OPT("ocr-dest", EX_OCR, "DEST", NULL,
        "Receives BARCODE_ocr.jsonl.gz: the pages' OCR text, one JSON string a line, as the "
        "Python pipeline writes it. A directory or s3://BUCKET[/PREFIX].",
        .values = OPT_DIR),
    OPT("marc-dest", EX_MARC, "DEST", NULL,
        "Receives BARCODE_marc.json: the MARC fields of the METS file, null where absent.",
        .values = OPT_DIR),
    OPT("verify-contents", EX_VERIFY, NULL, NULL,
        "Checks every member against checksum.md5 (also implied by --ocr-dest and "
        "--marc-dest)."),
    OPT("journal", EX_JOURNAL, "FILE", "quire-extract.journal",
        "One line per book; the detail field holds the verdict as KEY=VALUE tokens "
        "(contents=, checksum=, member=, pages=, ...).",
        .values = OPT_FILE),
    OPT("threads", EX_THREADS, "N", "one per CPU", "Books read at once.", .section = "Tuning"),
    OPT("status-every", EX_STATUS, "N", "20", "A status line after every N books (0: none)."),
    OPT("staging", EX_STAGING, "DIR", "./quire-staging",
        "Where outputs bound for S3 wait (outputs for a directory wait in it, unnamed).",
        .values = OPT_DIR),
    OPT("s3-endpoint", EX_S3_ENDPOINT, "URL", "AWS",
        "S3-compatible endpoint, path-style, for s3:// sources and destinations; also "
        "$AWS_ENDPOINT_URL_S3 or $AWS_ENDPOINT_URL.",
        .section = "S3"),
    OPT("ca-file", EX_CA, "FILE", NULL,
        "Trust this CA bundle for HTTPS to S3 instead of the system's store.", .values = OPT_FILE),
    OPT("stall-timeout", EX_STALL, "SECONDS", "60",
        "A transfer with no byte for this long is retried."),
    {0},
};

const struct cmd_spec cmd_extract_spec = {
    .name = "extract",
    .operands = "SOURCE...",
    .operand_values = OPT_FILE,
    .min_operands = 1,
    .max_operands = 1 << 30,
    .summary = "OCR text, MARC record and checksum.md5 verdict of stored BARCODE.tar.gz",
    .description =
        "Reads stored archives (files, directories of BARCODE.tar.gz, or s3://BUCKET[/PREFIX] "
        "holding PREFIX/BARCODE.tar.gz, listed page by page with the credentials quire run's "
        "S3 destination uses) as they stream, without unpacking them to disk, and writes the "
        "outputs the Python pipeline's extract makes. Outputs appear whole or not at all. A "
        "book whose journal line says ok and whose outputs exist is skipped, so a rerun makes "
        "what is missing. Exit 0 all ok; 1 a book failed, did not match its checksum.md5, or "
        "a listing broke off; 2 usage, or an S3 source that cannot be read.",
    .opts = extract_opts,
    .main = cmd_extract,
};

struct opts {
        struct derived_sinks derived;
        const char *journal, *staging, *s3_endpoint, *ca_file;
        uint64_t threads, status_every, stall_timeout_s;
        char **sources;
        int nsources;
};

/* ---- the list: operands walked into a pipe ---------------------------------------------- */

enum operand_kind { OPERAND_FILE, OPERAND_DIR, OPERAND_S3 };

struct producer {
        char **sources;
        enum operand_kind *kind;
        struct source **s3; /* per operand: its S3 source, NULL for files and directories */
        int nsources;
        int pipe_w;
        pthread_t thread;
        atomic_int_fast64_t listed; /* lines written: the run's growing total */
        atomic_bool stop;           /* the run has ended: a listing in progress stops */
        bool list_failed;           /* a listing broke off: some archives were not read */
};

/* BARCODE from .../BARCODE.tar.gz (else the name up to its first dot, as the Python
 * pipeline takes it); "" when there is none. */
static void barcode_of(const char *path, char *out, size_t cap)
{
        const char *b = strrchr(path, '/');
        b = b ? b + 1 : path;
        size_t n = strlen(b);
        if (n > 7 && !strcmp(b + n - 7, ".tar.gz"))
                n -= 7;
        else if (strchr(b, '.'))
                n = (size_t)(strchr(b, '.') - b);
        if (n >= cap)
                n = 0;
        memcpy(out, b, n);
        out[n] = 0;
}

/* A name fit for one log line: control bytes (a file or key may hold any) as '?'. */
static void printable(const char *in, char *out, size_t cap)
{
        size_t n = 0;
        for (; *in && n + 1 < cap; in++)
                out[n++] = (unsigned char)*in < 0x20 || *in == 0x7f ? '?' : *in;
        out[n] = 0;
}

/* One book's line. A name without a good barcode is said here, by its path (in the
 * directory or prefix `where`, when not NULL), and still listed (with no barcode) so that
 * the run counts it failed. */
static int list_one(struct producer *p, const char *where, const char *path, int source)
{
        char bc[BARCODE_MAX + 2], line[BARCODE_MAX + 32];
        barcode_of(path, bc, sizeof bc);
        const char *why = feeder_barcode_invalid(bc, strlen(bc));
        if (why) {
                char name[512];
                printable(path, name, sizeof name);
                qlog("%s%s%s: no barcode in that name (%s)", where ? where : "", where ? "/" : "",
                     name, why);
                bc[0] = 0;
        }
        int n = snprintf(line, sizeof line, "%s\t%d\n", bc, source);
        int err = util_write_all(p->pipe_w, line, (size_t)n);
        if (!err)
                atomic_fetch_add(&p->listed, 1);
        return err;
}

static int list_dir(struct producer *p, int source)
{
        const char *dir = p->sources[source];
        DIR *d = opendir(dir);
        if (!d) {
                qlog("%s: %s", dir, strerror(errno));
                return 0;
        }
        int err = 0;
        struct dirent *e;
        while (!err && (e = readdir(d))) {
                size_t n = strlen(e->d_name);
                if (n > 7 && !strcmp(e->d_name + n - 7, ".tar.gz") && e->d_name[0] != '.')
                        err = list_one(p, dir, e->d_name, source);
        }
        closedir(d);
        return err;
}

/* One S3 listing's walk: what it found so far. */
struct s3_walk {
        struct producer *p;
        int source;
        uint64_t archives;
};

/* An object directly under the prefix named NAME.tar.gz is an archive; anything else
 * (a derived output, a listing file, a hidden name) is not ours to read. */
static int take_object(void *ctx, const char *name, uint64_t size)
{
        struct s3_walk *wk = ctx;
        size_t n = strlen(name), sl = strlen(ARCHIVE_SUFFIX);
        if (n <= sl || strcmp(name + n - sl, ARCHIVE_SUFFIX) || name[0] == '.' || strchr(name, '/'))
                return 0;
        wk->archives++;
        return list_one(wk->p, wk->p->sources[wk->source], name, wk->source);
}

static bool producer_stopped(void *ctx)
{
        const struct s3_walk *wk = ctx;
        return atomic_load(&wk->p->stop);
}

static int list_s3(struct producer *p, int source)
{
        struct s3_walk wk = {.p = p, .source = source};
        char msg[1024] = "";
        int err =
            source_s3_list(p->s3[source], take_object, producer_stopped, &wk, msg, sizeof msg);
        if (err == -EPIPE || err == -EINTR)
                return err; /* the run stopped reading (a signal) */
        if (err < 0) {
                qlog("%s; the archives after those listed are not read", msg);
                p->list_failed = true;
                return 0; /* the other operands still are */
        }
        if (!wk.archives)
                qlog("%s: no archives (NAME%s) under that prefix", p->sources[source],
                     ARCHIVE_SUFFIX);
        return err;
}

static void *producer_main(void *arg)
{
        struct producer *p = arg;
        int err = 0;
        for (int i = 0; i < p->nsources && !err; i++)
                err = p->kind[i] == OPERAND_DIR  ? list_dir(p, i)
                      : p->kind[i] == OPERAND_S3 ? list_s3(p, i)
                                                 : list_one(p, NULL, p->sources[i], i);
        if (err && err != -EPIPE && err != -EINTR) /* the run stopped reading (a signal) */
                qlog("listing the archives: %s", strerror(-err));
        close(p->pipe_w); /* the end of the list */
        p->pipe_w = -1;
        return NULL;
}

/* ---- the source: the file source or an operand's S3 source, by the list's operand numbers */

struct paths_source {
        struct source base;
        struct source *files; /* template "{file}": the path as given */
        const struct producer *list;
};

struct paths_slot {
        struct paths_source *ps;
        struct source_slot *file_slot;
        struct source_slot **s3_slots; /* per operand, as producer.s3 */
        struct source *cur_src;        /* the book's: the one begin() chose */
        struct source_slot *cur;
        char path[PATH_MAX];
};

static int paths_slot_new(struct source *s, struct worker *w, const struct source_events *ev,
                          void *owner, struct source_slot **out)
{
        struct paths_source *ps = (struct paths_source *)s;
        const struct producer *p = ps->list;
        struct paths_slot *sl = calloc(1, sizeof *sl);
        if (!sl)
                return -ENOMEM;
        sl->ps = ps;
        *out = (struct source_slot *)sl;
        sl->s3_slots = calloc((size_t)p->nsources, sizeof *sl->s3_slots);
        if (!sl->s3_slots)
                return -ENOMEM;
        int err = ps->files->ops->slot_new(ps->files, w, ev, owner, &sl->file_slot);
        for (int i = 0; i < p->nsources && !err; i++)
                if (p->s3[i])
                        err = p->s3[i]->ops->slot_new(p->s3[i], w, ev, owner, &sl->s3_slots[i]);
        return err;
}

static void paths_slot_free(struct source_slot *ss)
{
        struct paths_slot *sl = (struct paths_slot *)ss;
        const struct producer *p = sl->ps->list;
        if (sl->file_slot)
                sl->ps->files->ops->slot_free(sl->file_slot);
        for (int i = 0; sl->s3_slots && i < p->nsources; i++)
                if (sl->s3_slots[i])
                        p->s3[i]->ops->slot_free(sl->s3_slots[i]);
        free(sl->s3_slots);
        free(sl);
}

static void paths_begin(struct source_slot *ss, const struct source_request *req)
{
        struct paths_slot *sl = (struct paths_slot *)ss;
        const struct producer *p = sl->ps->list;
        int i = atoi(req->file); /* ours: the producer wrote it */
        assert(i >= 0 && i < p->nsources);
        struct source_request r = *req;
        if (p->kind[i] == OPERAND_S3) {
                sl->cur_src = p->s3[i];
                sl->cur = sl->s3_slots[i];
                r.file = NULL; /* PREFIX/BARCODE.tar.gz */
        } else {
                if (p->kind[i] == OPERAND_DIR)
                        snprintf(sl->path, sizeof sl->path, "%s/%s" ARCHIVE_SUFFIX, p->sources[i],
                                 req->barcode);
                else
                        snprintf(sl->path, sizeof sl->path, "%s", p->sources[i]);
                sl->cur_src = sl->ps->files;
                sl->cur = sl->file_slot;
                r.file = sl->path;
        }
        sl->cur_src->ops->begin(sl->cur, &r);
}

static void paths_resume(struct source_slot *ss)
{
        struct paths_slot *sl = (struct paths_slot *)ss;
        sl->cur_src->ops->resume(sl->cur);
}

static void paths_abort(struct source_slot *ss)
{
        struct paths_slot *sl = (struct paths_slot *)ss;
        if (sl->cur)
                sl->cur_src->ops->abort(sl->cur);
}

static void paths_close(struct source *s)
{
        struct paths_source *ps = (struct paths_source *)s;
        ps->files->ops->close(ps->files);
        free(ps);
}

static const struct source_ops paths_ops = {
    .slot_new = paths_slot_new,
    .slot_free = paths_slot_free,
    .begin = paths_begin,
    .resume = paths_resume,
    .abort = paths_abort,
    .close = paths_close,
};

static int paths_open(struct source **out, const struct producer *list, char *msg, size_t msglen)
{
        struct paths_source *ps = calloc(1, sizeof *ps);
        if (!ps) {
                snprintf(msg, msglen, "out of memory");
                return -ENOMEM;
        }
        ps->base = (struct source){.ops = &paths_ops, .kind = "file"};
        ps->list = list;
        struct source_config cfg = {.tmpl = "{file}"};
        int err = source_file_open(&ps->files, &cfg, msg, msglen);
        if (err) {
                free(ps);
                return err;
        }
        *out = &ps->base;
        return 0;
}

/* ---- the command -------------------------------------------------------------------------- */

static int set_option(void *ctx, int key, const char *arg)
{
        const struct cmd_spec *c = &cmd_extract_spec;
        struct opts *o = ctx;
        switch (key) {
        case EX_OCR:
                o->derived.ocr_dest = arg;
                break;
        case EX_MARC:
                o->derived.marc_dest = arg;
                break;
        case EX_VERIFY:
                o->derived.cfg.verify = true;
                break;
        case EX_JOURNAL:
                o->journal = arg;
                break;
        case EX_THREADS:
                return opts_count(c, key, arg, 1, MAX_THREADS, &o->threads);
        case EX_STATUS:
                return opts_count(c, key, arg, 0, UINT32_MAX, &o->status_every);
        case EX_STAGING:
                o->staging = arg;
                break;
        case EX_S3_ENDPOINT:
                o->s3_endpoint = arg;
                break;
        case EX_CA:
                o->ca_file = arg;
                return opts_readable_file(c, key, arg);
        case EX_STALL: /* quire run's bounds */
                return opts_count(c, key, arg, 1, 86400, &o->stall_timeout_s);
        }
        return 0;
}

static bool is_s3(const char *dest)
{
        return dest && !strncmp(dest, "s3://", 5);
}

/* The run's settings: --threads books at once, on at most one loop per CPU. */
static void run_settings(const struct opts *o, struct producer *p, int fd, struct run_config *cfg)
{
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        run_config_defaults(cfg);
        cfg->barcodes_path = "the archives listed";
        cfg->barcodes_fd = fd;
        cfg->list_has_files = true;
        cfg->listed = &p->listed;
        cfg->journal_path = o->journal;
        cfg->workers = cfg->downloads = cfg->uploads = (unsigned)o->threads;
        cfg->threads =
            cpus > 0 && (uint64_t)cpus < o->threads ? (unsigned)cpus : (unsigned)o->threads;
        cfg->status_every = (unsigned)o->status_every;
        /* Outputs for a directory wait in it, unnamed; only S3's need a staging directory. */
        if (is_s3(o->derived.ocr_dest) || is_s3(o->derived.marc_dest))
                cfg->staging = o->staging ? o->staging : "quire-staging";
}

/* The operands, each a directory, an archive or an S3 prefix. */
static int operands(struct producer *p, char **sources, int n)
{
        p->sources = sources;
        p->nsources = n;
        p->kind = calloc((size_t)n, sizeof *p->kind);
        p->s3 = calloc((size_t)n, sizeof *p->s3);
        if (!p->kind || !p->s3)
                return -ENOMEM;
        for (int i = 0; i < n; i++) {
                struct stat st;
                p->kind[i] = is_s3(sources[i])                                   ? OPERAND_S3
                             : stat(sources[i], &st) == 0 && S_ISDIR(st.st_mode) ? OPERAND_DIR
                                                                                 : OPERAND_FILE;
        }
        return 0;
}

/* Each s3:// operand's source, checked now (the endpoint answers, the bucket is there, the
 * credentials may list it), before anything is made. 0, or -errno with msg. */
static int open_s3_sources(const struct opts *o, struct producer *p, char *msg, size_t msglen)
{
        for (int i = 0; i < p->nsources; i++) {
                if (p->kind[i] != OPERAND_S3)
                        continue;
                struct source_s3_config cfg = {.url = p->sources[i],
                                               .endpoint = o->s3_endpoint,
                                               .ca_file = o->ca_file,
                                               .stall_timeout_s = (unsigned)o->stall_timeout_s,
                                               .interrupted = run_interrupted};
                int err = source_s3_open(&p->s3[i], &cfg, msg, msglen);
                if (err)
                        return err;
        }
        return 0;
}

static void close_s3_sources(struct producer *p)
{
        for (int i = 0; p->s3 && i < p->nsources; i++)
                if (p->s3[i])
                        p->s3[i]->ops->close(p->s3[i]);
}

/* A directory destination that is something else is said before anything is made (the
 * journal included). */
static bool dest_usable(const char *dest, const char *opt)
{
        struct stat st;
        if (!dest || is_s3(dest) || stat(dest, &st) < 0 || S_ISDIR(st.st_mode))
                return true;
        qlog("%s %s: %s", opt, dest, strerror(ENOTDIR));
        return false;
}

static int extract(struct opts *o, struct producer *p)
{
        char msg[1024] = "";
        if (open_s3_sources(o, p, msg, sizeof msg) < 0) {
                qlog("%s", msg);
                return RUN_EXIT_USAGE;
        }
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0) {
                qlog("pipe: %s", strerror(errno));
                return RUN_EXIT_USAGE;
        }
        p->pipe_w = pfd[1];
        struct run_config cfg;
        run_settings(o, p, pfd[0], &cfg);
        struct run *r = NULL;
        struct source *src = NULL;
        struct sink_config base = {.s3_endpoint = o->s3_endpoint,
                                   .ca_file = o->ca_file,
                                   .stall_timeout_s = (unsigned)o->stall_timeout_s,
                                   .interrupted = run_interrupted};
        int status = RUN_EXIT_USAGE;
        int err = run_new(&r, &cfg, msg, sizeof msg); /* takes the pipe's reading end */
        if (!err)
                err = paths_open(&src, p, msg, sizeof msg);
        if (!err)
                err = derived_sinks_open(&o->derived, &base, NULL, NULL, msg, sizeof msg);
        if (!err && pthread_create(&p->thread, NULL, producer_main, p)) {
                snprintf(msg, sizeof msg, "cannot start listing the archives");
                err = -EAGAIN;
        }
        bool producing = !err;
        if (err) {
                close(p->pipe_w);
                qlog("%s", msg);
        } else {
                o->derived.cfg.plaintext_source = true;
                o->derived.cfg.recheck_delivered = true;
                o->derived.cfg.spill_dir = is_s3(o->derived.ocr_dest) ? NULL : o->derived.ocr_dest;
                derived_attach(r, &o->derived.cfg);
                status = run_execute(r, src, NULL);
                atomic_store(&p->stop, true); /* a listing still paging ends now */
                if (status == RUN_EXIT_OK && derived_checksum_problems(r))
                        status = RUN_EXIT_FAILED;
        }
        run_free(r); /* also the pipe's reading end: a producer still writing stops */
        if (producing)
                pthread_join(p->thread, NULL);
        if (status == RUN_EXIT_OK && p->list_failed)
                status = RUN_EXIT_FAILED;
        derived_sinks_close(&o->derived);
        if (src)
                src->ops->close(src);
        return status;
}

int cmd_extract(int argc, char **argv)
{
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        struct opts o = {.journal = "quire-extract.journal",
                         .threads = cpus > 0 ? (uint64_t)cpus : 1,
                         .status_every = 20,
                         .stall_timeout_s = 60};
        /* Before any thread exists: they inherit the mask, the run reads the signals. */
        run_signals_block();
        int next = opts_parse(&cmd_extract_spec, argc, argv, set_option, &o);
        if (next < 0)
                return opts_exit_status(next);
        if (!derived_sinks_wanted(&o.derived))
                return opts_exit_status(opts_usage_error(
                    &cmd_extract_spec, 0,
                    "nothing to do: give --ocr-dest, --marc-dest or --verify-contents"));
        if (!dest_usable(o.derived.ocr_dest, "--ocr-dest") ||
            !dest_usable(o.derived.marc_dest, "--marc-dest"))
                return RUN_EXIT_USAGE;
        struct producer p = {.pipe_w = -1};
        if (operands(&p, argv + next, argc - next) < 0) {
                qlog("out of memory");
                return RUN_EXIT_USAGE;
        }
        curl_global_init(CURL_GLOBAL_DEFAULT);
        int status = extract(&o, &p);
        close_s3_sources(&p);
        curl_global_cleanup();
        free(p.kind);
        free(p.s3);
        return status;
}
