/* quire extract: the contents reader over archives already stored (files, or directories
 * of BARCODE.tar.gz), without unpacking them: BARCODE_ocr.jsonl.gz, BARCODE_marc.json and
 * the checksum.md5 verdict, one journal line per book. A fixed number of threads each
 * takes the next archive, reads it in 1 MiB blocks and feeds the book's contents reader
 * (its own thread); the engine's queue and workers take this over later.
 *
 * Outputs are written as unnamed files in their destination (O_TMPFILE), synced, and only
 * then given their name (linkat to a unique name, rename over the final one, directory
 * sync): a crash leaves nothing half-written, and a rerun makes what is missing. */
#include "cmds.h"
#include "quire/base/util.h"
#include "quire/contents/contents.h"
#include "quire/engine/journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define READ_BUF    (1u << 20)
#define MAX_THREADS 64

enum { EX_OCR = 256, EX_MARC, EX_VERIFY, EX_JOURNAL, EX_THREADS, EX_STATUS };

static const struct opt extract_opts[] = {
    OPT("ocr-dest", EX_OCR, "DIR", NULL,
        "Receives BARCODE_ocr.jsonl.gz: the pages' OCR text, one JSON string a line, as the "
        "Python pipeline writes it.",
        .values = OPT_DIR),
    OPT("marc-dest", EX_MARC, "DIR", NULL,
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
        "Reads stored archives (files, or directories of BARCODE.tar.gz) as they stream, "
        "without unpacking them to disk, and writes the outputs the Python pipeline's extract "
        "makes. Outputs appear whole or not at all. A book whose journal line says ok and "
        "whose outputs exist is skipped, so a rerun makes what is missing. Exit 0 all ok; 1 a "
        "book failed or did not match its checksum.md5; 2 usage.",
    .opts = extract_opts,
    .main = cmd_extract,
};

struct opts {
        const char *ocr_dest, *marc_dest, *journal;
        bool verify;
        uint64_t threads, status_every;
        char **sources;
        int nsources;
};

struct run {
        const struct opts *o;
        struct journal *j;
        pthread_mutex_t lock; /* the source cursor */
        int next_source;
        DIR *dir;
        char dir_path[PATH_MAX];
        atomic_uint_fast64_t ok, failed, skipped, unmatched, bytes, done;
        uint64_t start_ns;
};

/* The next archive's path into out; false when none is left. */
static bool next_path(struct run *r, char *out, size_t cap)
{
        bool got = false;
        pthread_mutex_lock(&r->lock);
        while (!got) {
                if (r->dir) {
                        struct dirent *e = readdir(r->dir);
                        if (!e) {
                                closedir(r->dir);
                                r->dir = NULL;
                                continue;
                        }
                        size_t n = strlen(e->d_name);
                        if (n > 7 && !strcmp(e->d_name + n - 7, ".tar.gz") && e->d_name[0] != '.')
                                got = (size_t)snprintf(out, cap, "%s/%s", r->dir_path, e->d_name) <
                                      cap;
                        continue;
                }
                if (r->next_source >= r->o->nsources)
                        break;
                const char *s = r->o->sources[r->next_source++];
                struct stat st;
                if (stat(s, &st) == 0 && S_ISDIR(st.st_mode)) {
                        r->dir = opendir(s);
                        if (!r->dir)
                                qlog("%s: %s", s, strerror(errno));
                        snprintf(r->dir_path, sizeof r->dir_path, "%s", s);
                        continue;
                }
                snprintf(out, cap, "%s", s);
                got = true;
        }
        pthread_mutex_unlock(&r->lock);
        return got;
}

/* BARCODE from .../BARCODE.tar.gz (else the name up to its first dot, as the Python
 * pipeline takes it). */
static bool barcode_of(const char *path, char *out, size_t cap)
{
        const char *b = strrchr(path, '/');
        b = b ? b + 1 : path;
        size_t n = strlen(b);
        if (n > 7 && !strcmp(b + n - 7, ".tar.gz"))
                n -= 7;
        else if (strchr(b, '.'))
                n = (size_t)(strchr(b, '.') - b);
        if (!n || n >= cap || n > 64 || memchr(b, '\t', n) || memchr(b, '\n', n))
                return false;
        memcpy(out, b, n);
        out[n] = 0;
        return true;
}

struct output {
        const char *dir;
        char name[128];
        int fd;
};

static int output_open(struct output *out, const char *dir, const char *barcode, const char *suffix)
{
        out->dir = dir;
        out->fd = -1;
        if (!dir)
                return 0;
        snprintf(out->name, sizeof out->name, "%s%s", barcode, suffix);
        out->fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
        return out->fd < 0 ? -errno : 0;
}

static bool output_exists(const char *dir, const char *barcode, const char *suffix)
{
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s%s", dir, barcode, suffix);
        return access(path, F_OK) == 0;
}

/* Names the synced unnamed file: linkat to a unique name, then rename over the final one,
 * so a reader sees the old file or the whole new one. */
static int output_publish(struct output *out)
{
        char proc[64], tmp[PATH_MAX], path[PATH_MAX];
        if (fsync(out->fd))
                return -errno;
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", out->fd);
        snprintf(path, sizeof path, "%s/%s", out->dir, out->name);
        static atomic_uint seq;
        snprintf(tmp, sizeof tmp, "%s/.%s.%d-%u.quire-part", out->dir, out->name, (int)getpid(),
                 atomic_fetch_add(&seq, 1));
        if (linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW))
                return -errno;
        if (rename(tmp, path)) {
                int e = -errno;
                unlink(tmp);
                return e;
        }
        int d = open(out->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d < 0)
                return -errno;
        int r = fsync(d) ? -errno : 0;
        close(d);
        return r;
}

static void output_close(struct output *out)
{
        if (out->fd >= 0)
                close(out->fd);
        out->fd = -1;
}

static void on_ready(void *arg)
{
        sem_post(arg);
}

/* Feeds the whole file; returns 0 or -errno from reading it. */
static int feed_file(struct contents *c, sem_t *ready, int fd, uint8_t *buf, EVP_MD_CTX *sha,
                     uint64_t *bytes)
{
        for (;;) {
                ssize_t n = read(fd, buf, READ_BUF);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return 0;
                EVP_DigestUpdate(sha, buf, (size_t)n);
                *bytes += (uint64_t)n;
                for (size_t off = 0; off < (size_t)n;) {
                        size_t k = contents_feed(c, buf + off, (size_t)n - off);
                        off += k;
                        if (off < (size_t)n && !k)
                                while (sem_wait(ready) && errno == EINTR)
                                        ;
                }
        }
}

struct book {
        char barcode[72];
        struct output ocr, marc;
        uint64_t bytes;
        char sha_hex[65];
        char detail[512];
        bool ok;
};

static void append_why(char *detail, size_t cap, const char *key, const char *why)
{
        size_t n = strlen(detail);
        snprintf(detail + n, cap - n, " %s=%s", key, why);
        /* a token per output: spaces in the reason become '-' */
        for (char *p = detail + n + 1 + strlen(key) + 1; *p; p++)
                if (*p == ' ')
                        *p = '-';
}

static void publish(struct run *r, struct book *b, const struct contents_result *res)
{
        struct {
                struct output *out;
                bool written;
                const char *skipped, *key;
        } outs[] = {{&b->ocr, res->ocr_written, res->ocr_skipped, "ocr"},
                    {&b->marc, res->marc_written, res->marc_skipped, "marc"}};
        for (size_t i = 0; i < 2; i++) {
                if (!outs[i].out->dir)
                        continue;
                if (!outs[i].written) {
                        append_why(b->detail, sizeof b->detail, outs[i].key,
                                   outs[i].skipped ? outs[i].skipped : "none");
                        continue;
                }
                int e = output_publish(outs[i].out);
                if (e) {
                        qlog("%s/%s: %s", outs[i].out->dir, outs[i].out->name, strerror(-e));
                        append_why(b->detail, sizeof b->detail, outs[i].key, strerror(-e));
                        b->ok = false;
                }
        }
        if (res->check != CHECK_NONE && res->check != CHECK_OK)
                atomic_fetch_add(&r->unmatched, 1);
}

static void read_book(struct run *r, struct book *b, int fd, uint8_t *buf, EVP_MD_CTX *sha)
{
        sem_t ready;
        sem_init(&ready, 0, 0);
        struct contents_cfg cfg = {
            .ocr_fd = b->ocr.fd,
            .marc_fd = b->marc.fd,
            .verify = r->o->verify,
            .spill_dir = r->o->ocr_dest,
            .ready = on_ready,
            .arg = &ready,
        };
        struct contents *c;
        int e = contents_new(&c, &cfg);
        if (e) {
                snprintf(b->detail, sizeof b->detail, "contents reader: %s", strerror(-e));
                sem_destroy(&ready);
                return;
        }
        EVP_DigestInit_ex(sha, EVP_sha256(), NULL);
        e = feed_file(c, &ready, fd, buf, sha, &b->bytes);
        contents_finish(c);
        contents_wait(c);
        const struct contents_result *res = contents_result(c);
        if (e) {
                snprintf(b->detail, sizeof b->detail, "read: %s", strerror(-e));
        } else {
                uint8_t md[32];
                EVP_DigestFinal_ex(sha, md, NULL);
                hex_encode(md, 32, b->sha_hex);
                contents_format_detail(res, b->detail, sizeof b->detail);
                b->ok = res->archive == CONTENTS_OK;
                if (b->ok)
                        publish(r, b, res);
        }
        contents_free(c);
        sem_destroy(&ready);
}

static bool already_done(struct run *r, const char *barcode)
{
        const struct opts *o = r->o;
        return journal_delivered(r->j, barcode) &&
               (!o->ocr_dest || output_exists(o->ocr_dest, barcode, "_ocr.jsonl.gz")) &&
               (!o->marc_dest || output_exists(o->marc_dest, barcode, "_marc.json"));
}

static void status_line(struct run *r, bool summary)
{
        double s = (double)(now_ns() - r->start_ns) / 1e9;
        qlog("%s%llu books (ok %llu, failed %llu, skipped %llu, checksum problems %llu) - %.1f "
             "MB/s - elapsed %.1fs",
             summary ? "done: " : "", (unsigned long long)atomic_load(&r->done),
             (unsigned long long)atomic_load(&r->ok), (unsigned long long)atomic_load(&r->failed),
             (unsigned long long)atomic_load(&r->skipped),
             (unsigned long long)atomic_load(&r->unmatched),
             s > 0 ? (double)atomic_load(&r->bytes) / 1e6 / s : 0.0, s);
}

static void one_book(struct run *r, const char *path, uint8_t *buf, EVP_MD_CTX *sha)
{
        struct book b = {.ocr.fd = -1, .marc.fd = -1};
        if (!barcode_of(path, b.barcode, sizeof b.barcode)) {
                qlog("%s: no barcode in that name", path);
                atomic_fetch_add(&r->failed, 1);
                return;
        }
        if (already_done(r, b.barcode)) {
                atomic_fetch_add(&r->skipped, 1);
                return;
        }
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        int e = fd < 0 ? -errno : 0;
        if (!e)
                e = output_open(&b.ocr, r->o->ocr_dest, b.barcode, "_ocr.jsonl.gz");
        if (!e)
                e = output_open(&b.marc, r->o->marc_dest, b.barcode, "_marc.json");
        if (e) {
                snprintf(b.detail, sizeof b.detail, "%s", strerror(-e));
        } else {
                posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
                read_book(r, &b, fd, buf, sha);
        }
        if (fd >= 0)
                close(fd);
        output_close(&b.ocr);
        output_close(&b.marc);
        if (!b.ok)
                qlog("%s: %s", path, b.detail);
        struct journal_rec rec = {
            .barcode = b.barcode,
            .outcome = b.ok ? "ok" : "failed",
            .bytes = b.bytes,
            .sha256_hex = b.sha_hex[0] ? b.sha_hex : NULL,
            .detail = b.detail,
        };
        e = journal_append(r->j, &rec);
        if (e)
                qlog("journal: %s", strerror(-e));
        atomic_fetch_add(b.ok ? &r->ok : &r->failed, 1);
        atomic_fetch_add(&r->bytes, b.bytes);
        uint64_t done = atomic_fetch_add(&r->done, 1) + 1;
        if (r->o->status_every && done % r->o->status_every == 0)
                status_line(r, false);
}

static void *worker_main(void *arg)
{
        struct run *r = arg;
        uint8_t *buf = malloc(READ_BUF);
        EVP_MD_CTX *sha = EVP_MD_CTX_new();
        char path[PATH_MAX];
        if (!buf || !sha) {
                qlog("out of memory");
                atomic_fetch_add(&r->failed, 1);
        } else {
                while (next_path(r, path, sizeof path))
                        one_book(r, path, buf, sha);
        }
        EVP_MD_CTX_free(sha);
        free(buf);
        return NULL;
}

static int set_option(void *ctx, int key, const char *arg)
{
        const struct cmd_spec *c = &cmd_extract_spec;
        struct opts *o = ctx;
        switch (key) {
        case EX_OCR:
                o->ocr_dest = arg;
                break;
        case EX_MARC:
                o->marc_dest = arg;
                break;
        case EX_VERIFY:
                o->verify = true;
                break;
        case EX_JOURNAL:
                o->journal = arg;
                break;
        case EX_THREADS:
                return opts_count(c, key, arg, 1, MAX_THREADS, &o->threads);
        case EX_STATUS:
                return opts_count(c, key, arg, 0, UINT32_MAX, &o->status_every);
        }
        return 0;
}

/* A destination must be a directory we can write; leftovers of a killed run go. */
static bool dest_ok(const char *dir, const char *opt)
{
        struct stat st;
        if (!dir)
                return true;
        if (stat(dir, &st) || !S_ISDIR(st.st_mode) || access(dir, W_OK)) {
                qlog("%s %s: not a writable directory", opt, dir);
                return false;
        }
        remove_quire_parts(dir);
        return true;
}

int cmd_extract(int argc, char **argv)
{
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        struct opts o = {.journal = "quire-extract.journal",
                         .threads = cpus > 0 ? (uint64_t)cpus : 1,
                         .status_every = 20};
        int next = opts_parse(&cmd_extract_spec, argc, argv, set_option, &o);
        if (next < 0)
                return opts_exit_status(next);
        o.sources = argv + next;
        o.nsources = argc - next;
        if (o.ocr_dest || o.marc_dest)
                o.verify = true;
        if (!o.verify)
                return opts_exit_status(opts_usage_error(
                    &cmd_extract_spec, 0,
                    "nothing to do: give --ocr-dest, --marc-dest or --verify-contents"));
        if (!dest_ok(o.ocr_dest, "--ocr-dest") || !dest_ok(o.marc_dest, "--marc-dest"))
                return 2;
        struct run r = {.o = &o, .start_ns = now_ns()};
        int e = journal_open(&r.j, o.journal);
        if (e) {
                qlog("--journal %s: %s", o.journal,
                     e == -EWOULDBLOCK ? "in use by another quire" : strerror(-e));
                return 2;
        }
        pthread_mutex_init(&r.lock, NULL);
        pthread_t th[MAX_THREADS];
        unsigned started = 0;
        for (; started < o.threads; started++)
                if (pthread_create(&th[started], NULL, worker_main, &r))
                        break;
        if (!started)
                worker_main(&r);
        for (unsigned i = 0; i < started; i++)
                pthread_join(th[i], NULL);
        if (r.dir)
                closedir(r.dir);
        pthread_mutex_destroy(&r.lock);
        status_line(&r, true);
        journal_close(r.j);
        return atomic_load(&r.failed) || atomic_load(&r.unmatched) ? 1 : 0;
}
