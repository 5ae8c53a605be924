/* The engine driven end to end through its own interfaces, with a fake source and a fake
 * sink: every book delivered byte-exact through staging, retries counted exactly, a
 * repeated barcode never run beside its first copy, and a source faster than the staging
 * disk held back (SOURCE_PAUSE) instead of buffered without bound.
 *
 * The fake source serves one gpg-made message for every barcode, in chunks of varying
 * size from the worker's loop; the fake sink checks each staged file against the
 * plaintext. Both live in this file and use only engine/source.h, engine/sink.h and
 * engine/worker.h, as the io layer does. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "quire/base/util.h"
#include "quire/engine/loop.h"
#include "quire/engine/run.h"
#include "quire/engine/sink.h"
#include "quire/engine/source.h"
#include "quire/engine/worker.h"

#include "../../src/engine/staging.h" /* STAGE_BUF_SIZE */

static const char pass[] = "quire-fuzz";

struct blob {
        uint8_t *p;
        size_t len;
};

static struct blob read_file(const char *path)
{
        struct blob b = {0};
        FILE *f = fopen(path, "rb");
        if (!f)
                fail_msg("cannot open %s", path);
        fseek(f, 0, SEEK_END);
        b.len = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        b.p = malloc(b.len ? b.len : 1);
        assert_int_equal(fread(b.p, 1, b.len, f), b.len);
        fclose(f);
        return b;
}

static struct blob fixture(const char *name)
{
        const char *dir = getenv("QUIRE_FIXTURES");
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/fuzz/corpus", name);
        return read_file(path);
}

/* What `seq 1 3000` prints: the plaintext of the corpus' seq-*.gpg. */
static struct blob seq_text(void)
{
        struct blob b = {malloc(16 * 3000), 0};
        for (int i = 1; i <= 3000; i++)
                b.len += (size_t)sprintf((char *)b.p + b.len, "%d\n", i);
        return b;
}

/* ---- the fake source ----------------------------------------------------------------- */

#define MAX_BOOKS 64

struct fake_source {
        struct source base;
        struct blob msg;
        size_t chunk;            /* bytes per delivery (varied a little per call) */
        unsigned fail_first;     /* transient failures per barcode before it is served */
        unsigned first_delay_ms; /* before a transfer's first byte */
        pthread_mutex_t lock;
        struct {
                char barcode[70];
                unsigned begins;
        } seen[MAX_BOOKS];
        unsigned nseen, pauses, concurrent, max_concurrent;
};

struct fake_slot {
        struct fake_source *fs;
        struct worker *w;
        const struct source_events *ev;
        void *owner;
        struct loop_op tick;
        uint64_t off, calls;
        bool head, active, fail;
};

static unsigned note_begin(struct fake_source *fs, const char *barcode)
{
        pthread_mutex_lock(&fs->lock);
        unsigned i = 0;
        while (i < fs->nseen && strcmp(fs->seen[i].barcode, barcode))
                i++;
        if (i == fs->nseen) {
                assert_true(fs->nseen < MAX_BOOKS);
                snprintf(fs->seen[fs->nseen++].barcode, sizeof fs->seen[0].barcode, "%s", barcode);
        }
        unsigned n = ++fs->seen[i].begins;
        if (++fs->concurrent > fs->max_concurrent)
                fs->max_concurrent = fs->concurrent;
        pthread_mutex_unlock(&fs->lock);
        return n;
}

static void slot_done(struct fake_slot *s, const struct source_result *res)
{
        pthread_mutex_lock(&s->fs->lock);
        s->fs->concurrent--;
        pthread_mutex_unlock(&s->fs->lock);
        s->active = false;
        s->ev->done(s->owner, res);
}

static void on_tick(struct loop_op *op, int res)
{
        struct fake_slot *s = container_of(op, struct fake_slot, tick);
        struct source_result r = {.status = SOURCE_OK, .length = -1, .detail = ""};
        if (s->fail) {
                r.status = SOURCE_TRANSIENT;
                r.retry_after_s = 1;
                r.detail = "fake: HTTP 503";
                slot_done(s, &r);
                return;
        }
        if (s->head || s->off == s->fs->msg.len) {
                slot_done(s, &r);
                return;
        }
        size_t n = s->fs->chunk + (size_t)(s->calls++ % 7);
        if (n > s->fs->msg.len - s->off)
                n = s->fs->msg.len - s->off;
        int rc = s->ev->data(s->owner, s->off, s->fs->msg.p + s->off, n);
        if (rc == SOURCE_PAUSE) {
                pthread_mutex_lock(&s->fs->lock);
                s->fs->pauses++;
                pthread_mutex_unlock(&s->fs->lock);
                return; /* resume() re-arms the tick; the same bytes come again */
        }
        if (rc < 0) {
                r.status = SOURCE_STOPPED;
                slot_done(s, &r);
                return;
        }
        s->off += n;
        loop_timer(worker_loop(s->w), &s->tick, 0);
}

static int fake_slot_new(struct source *src, struct worker *w, const struct source_events *ev,
                         void *owner, struct source_slot **out)
{
        struct fake_slot *s = calloc(1, sizeof *s);
        assert_non_null(s);
        *s = (struct fake_slot){.fs = (struct fake_source *)src, .w = w, .ev = ev, .owner = owner};
        s->tick.fn = on_tick;
        *out = (struct source_slot *)s;
        return 0;
}

static void fake_slot_free(struct source_slot *ss)
{
        free(ss);
}

static void fake_begin(struct source_slot *ss, const struct source_request *req)
{
        struct fake_slot *s = (struct fake_slot *)ss;
        assert_false(s->active);
        s->active = true;
        s->off = 0;
        s->head = req->head;
        s->fail = note_begin(s->fs, req->barcode) <= s->fs->fail_first;
        loop_timer(worker_loop(s->w), &s->tick, (uint64_t)s->fs->first_delay_ms * 1000000u);
}

static void fake_resume(struct source_slot *ss)
{
        struct fake_slot *s = (struct fake_slot *)ss;
        if (s->active && !s->tick.timer_armed)
                loop_timer(worker_loop(s->w), &s->tick, 0);
}

static void fake_abort(struct source_slot *ss)
{
        struct fake_slot *s = (struct fake_slot *)ss;
        loop_cancel(worker_loop(s->w), &s->tick);
        s->active = false;
}

static void fake_source_close(struct source *src)
{
}

static const struct source_ops fake_source_ops = {
    .slot_new = fake_slot_new,
    .slot_free = fake_slot_free,
    .begin = fake_begin,
    .resume = fake_resume,
    .abort = fake_abort,
    .close = fake_source_close,
};

/* ---- the fake sink --------------------------------------------------------------------- */

struct fake_sink {
        struct sink base;
        struct blob want; /* every delivery must hold exactly this */
        pthread_mutex_t lock;
        unsigned delivered, bad;
        char names[MAX_BOOKS][80];
};

struct fake_sink_slot {
        struct fake_sink *fk;
        struct worker *w;
        struct delivery *d;
        struct loop_op later;
};

static void on_later(struct loop_op *op, int res)
{
        struct fake_sink_slot *s = container_of(op, struct fake_sink_slot, later);
        s->d->done(s->d, 0, false, NULL);
}

static bool file_holds(int fd, const struct blob *want, uint64_t size)
{
        if (size != want->len)
                return false;
        uint8_t *got = malloc(want->len ? want->len : 1);
        bool same =
            pread(fd, got, want->len, 0) == (ssize_t)want->len && !memcmp(got, want->p, want->len);
        free(got);
        return same;
}

static void fake_deliver(struct sink_slot *ss, struct delivery *d)
{
        struct fake_sink_slot *s = (struct fake_sink_slot *)ss;
        struct fake_sink *fk = s->fk;
        uint8_t sum[32];
        EVP_Digest(fk->want.p, fk->want.len, sum, NULL, EVP_sha256(), NULL);
        bool ok = file_holds(d->fd, &fk->want, d->size) && !memcmp(sum, d->sha256, 32);
        pthread_mutex_lock(&fk->lock);
        if (ok && fk->delivered < MAX_BOOKS)
                snprintf(fk->names[fk->delivered], sizeof fk->names[0], "%s", d->name);
        fk->delivered += ok;
        fk->bad += !ok;
        pthread_mutex_unlock(&fk->lock);
        s->d = d;
        loop_timer(worker_loop(s->w), &s->later, 0); /* never from inside deliver() */
}

static void fake_sink_abort(struct sink_slot *ss)
{
        struct fake_sink_slot *s = (struct fake_sink_slot *)ss;
        loop_cancel(worker_loop(s->w), &s->later);
}

static int fake_sink_slot_new(struct sink *sk, struct worker *w, struct sink_slot **out)
{
        struct fake_sink_slot *s = calloc(1, sizeof *s);
        assert_non_null(s);
        s->fk = (struct fake_sink *)sk;
        s->w = w;
        s->later.fn = on_later;
        *out = (struct sink_slot *)s;
        return 0;
}

static void fake_sink_slot_free(struct sink_slot *ss)
{
        free(ss);
}

static void fake_sink_close(struct sink *sk)
{
}

static const struct sink_ops fake_sink_ops = {
    .slot_new = fake_sink_slot_new,
    .slot_free = fake_sink_slot_free,
    .deliver = fake_deliver,
    .abort = fake_sink_abort,
    .close = fake_sink_close,
};

/* ---- a run ----------------------------------------------------------------------------- */

struct scene {
        char dir[64], list[96], staging[96], journal[96];
        struct fake_source src;
        struct fake_sink sink;
        struct run_config cfg;
};

static void scene_init(struct scene *sc, const char *list_text, struct blob msg, struct blob plain)
{
        memset(sc, 0, sizeof *sc);
        snprintf(sc->dir, sizeof sc->dir, "/tmp/quire-run-XXXXXX");
        assert_non_null(mkdtemp(sc->dir));
        snprintf(sc->list, sizeof sc->list, "%s/list", sc->dir);
        snprintf(sc->staging, sizeof sc->staging, "%s/staging", sc->dir);
        snprintf(sc->journal, sizeof sc->journal, "%s/journal", sc->dir);
        FILE *f = fopen(sc->list, "w");
        assert_non_null(f);
        fputs(list_text, f);
        fclose(f);
        sc->src = (struct fake_source){
            .base = {.ops = &fake_source_ops, .kind = "fake"}, .msg = msg, .chunk = 1000};
        pthread_mutex_init(&sc->src.lock, NULL);
        sc->sink =
            (struct fake_sink){.base = {.ops = &fake_sink_ops, .kind = "fake"}, .want = plain};
        pthread_mutex_init(&sc->sink.lock, NULL);
        run_config_defaults(&sc->cfg);
        sc->cfg.barcodes_path = sc->list;
        sc->cfg.staging = sc->staging;
        sc->cfg.journal_path = sc->journal;
        sc->cfg.passphrase = pass;
        sc->cfg.passlen = strlen(pass);
        sc->cfg.status_every = 0;
}

static int scene_run(struct scene *sc)
{
        struct run *r;
        char msg[512];
        int err = run_new(&r, &sc->cfg, msg, sizeof msg);
        if (err)
                fail_msg("run_new: %s", msg);
        int status = run_execute(r, &sc->src.base, &sc->sink.base);
        run_free(r);
        return status;
}

/* Lines of the journal whose outcome column is `outcome`. */
static unsigned journal_count(const struct scene *sc, const char *outcome)
{
        FILE *f = fopen(sc->journal, "r");
        assert_non_null(f);
        char line[4096], want[64];
        snprintf(want, sizeof want, "\t%s\t", outcome);
        unsigned n = 0;
        while (fgets(line, sizeof line, f))
                n += strstr(line, want) != NULL;
        fclose(f);
        return n;
}

static void scene_done(struct scene *sc)
{
        free(sc->src.msg.p);
        free(sc->sink.want.p);
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", sc->dir);
        assert_int_equal(system(cmd), 0);
}

static void test_books_delivered_exactly(void **state)
{
        struct scene sc;
        scene_init(&sc, "A1\nA2\nA3\nA4\nA5\nA6\nA7\nA8\n", fixture("seq-plain.gpg"), seq_text());
        sc.cfg.threads = 2;
        sc.cfg.workers = 4;
        sc.cfg.downloads = 3;
        assert_int_equal(scene_run(&sc), RUN_EXIT_OK);
        assert_int_equal(sc.sink.delivered, 8);
        assert_int_equal(sc.sink.bad, 0);
        assert_int_equal(journal_count(&sc, "ok"), 8);
        for (unsigned i = 0; i < sc.src.nseen; i++)
                assert_int_equal(sc.src.seen[i].begins, 1);
        assert_true(sc.src.max_concurrent <= 3); /* --downloads holds across threads */
        scene_done(&sc);
}

/* Issue 9 bug 1's shape, without libcurl: many books in backoff on one thread at once. */
static void test_retries_counted_exactly(void **state)
{
        char list[40 * 8 + 1] = "";
        for (int i = 0; i < 40; i++)
                sprintf(list + strlen(list), "R%03d\n", i);
        struct scene sc;
        scene_init(&sc, list, fixture("seq-plain.gpg"), seq_text());
        sc.src.fail_first = 3;
        sc.cfg.threads = 1;
        sc.cfg.workers = 40;
        sc.cfg.downloads = 20;
        assert_int_equal(scene_run(&sc), RUN_EXIT_OK);
        assert_int_equal(sc.sink.delivered, 40);
        assert_int_equal(sc.src.nseen, 40);
        for (unsigned i = 0; i < sc.src.nseen; i++)
                assert_int_equal(sc.src.seen[i].begins, 4);
        assert_int_equal(journal_count(&sc, "ok"), 40);
        scene_done(&sc);
}

/* Issue 9 bug 2: repeats never run beside their first copy, and are journaled. */
static void test_duplicates(void **state)
{
        struct scene sc;
        scene_init(&sc, "D1\nD1\nD2\nD1\nD3\nD2\n", fixture("seq-plain.gpg"), seq_text());
        sc.cfg.threads = 1;
        sc.cfg.workers = 6;
        /* The list (a regular file) is read whole in microseconds; the first copies are
         * still in flight when the repeats come. */
        sc.src.first_delay_ms = 300;
        assert_int_equal(scene_run(&sc), RUN_EXIT_OK);
        assert_int_equal(sc.sink.bad, 0);
        assert_int_equal(journal_count(&sc, "ok"), 3);
        assert_int_equal(journal_count(&sc, "duplicate"), 3);
        assert_int_equal(sc.sink.delivered, 3);
        for (unsigned i = 0; i < sc.src.nseen; i++)
                assert_int_equal(sc.src.seen[i].begins, 1);
        scene_done(&sc);
}

/* A message of size random bytes made by gpg (no compression) in dir: false when gpg
 * cannot make it. */
static bool make_message(const char *dir, size_t size, struct blob *msg, struct blob *plain)
{
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "head -c %zu /dev/urandom > %s/plain && "
                 "gpg --batch -q --yes --homedir %s --pinentry-mode loopback --passphrase %s "
                 "--s2k-count 65536 --compress-algo none -o %s/big.gpg -c %s/plain "
                 "2>/dev/null",
                 size, dir, dir, pass, dir, dir);
        if (system(cmd) != 0)
                return false;
        char path[128];
        snprintf(path, sizeof path, "%s/big.gpg", dir);
        *msg = read_file(path);
        snprintf(path, sizeof path, "%s/plain", dir);
        *plain = read_file(path);
        return true;
}

static void remove_dir(const char *dir)
{
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
}

/* The staging writer under backpressure: a source delivering 512 KiB at a time into a
 * stage of four 256 KiB buffers must be paused, and every byte still arrive in order. */
static void test_staging_backpressure(void **state)
{
        char dir[] = "/tmp/quire-big-XXXXXX";
        assert_non_null(mkdtemp(dir));
        struct blob msg, plain;
        if (!make_message(dir, 12000000, &msg, &plain)) {
                fprintf(stderr, "SKIP test_staging_backpressure: gpg could not make the "
                                "message (is gnupg installed?)\n");
                remove_dir(dir);
                skip();
        }
        struct scene sc;
        scene_init(&sc, "BIG1\nBIG2\n", msg, plain);
        sc.src.chunk = 512 * 1024;
        sc.cfg.threads = 1;
        assert_int_equal(scene_run(&sc), RUN_EXIT_OK);
        assert_int_equal(sc.sink.delivered, 2);
        assert_int_equal(sc.sink.bad, 0);
        assert_true(sc.src.pauses > 0);
        scene_done(&sc);
        remove_dir(dir);
}

/* Staging files are written with O_DIRECT in whole aligned buffers and the rest through
 * the page cache: books whose length ends on a buffer, on a block, or anywhere else all
 * arrive whole, and the sink can read each back through the delivery's fd. */
static void test_staging_direct_lengths(void **state)
{
        static const size_t sizes[] = {1,
                                       4095,
                                       4096,
                                       STAGE_BUF_SIZE - 1,
                                       STAGE_BUF_SIZE,
                                       4 * STAGE_BUF_SIZE,
                                       4 * STAGE_BUF_SIZE + 4096,
                                       5 * STAGE_BUF_SIZE + 17};
        for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
                char dir[] = "/tmp/quire-dio-XXXXXX";
                assert_non_null(mkdtemp(dir));
                struct blob msg, plain;
                if (!make_message(dir, sizes[i], &msg, &plain)) {
                        fprintf(stderr, "SKIP test_staging_direct_lengths: gpg could not make "
                                        "the message (is gnupg installed?)\n");
                        remove_dir(dir);
                        skip();
                }
                struct scene sc;
                scene_init(&sc, "L1\nL2\n", msg, plain);
                sc.src.chunk = 100000 + 7 * i; /* buffers fill across deliveries */
                sc.cfg.threads = 1;
                assert_int_equal(scene_run(&sc), RUN_EXIT_OK);
                if (sc.sink.delivered != 2 || sc.sink.bad)
                        fail_msg("a book of %zu bytes: %u delivered, %u not byte-exact", sizes[i],
                                 sc.sink.delivered, sc.sink.bad);
                scene_done(&sc);
                remove_dir(dir);
        }
}

static void no_room(void *owner)
{
}
static void no_synced(void *owner, int rc)
{
}

/* A stage names its file when the attempt starts and makes it only when the body begins
 * (stage_create at its first byte, or the first write): a book that fails before, a 404,
 * costs no create and unlink. A file another writer put at the name is refused (-EEXIST)
 * and never removed. */
static void test_stage_file_made_late(void **state)
{
        char dir[] = "/tmp/quire-late-XXXXXX";
        assert_non_null(mkdtemp(dir));
        char sdir[64], path[128], msg[256];
        snprintf(sdir, sizeof sdir, "%s/staging", dir);
        snprintf(path, sizeof path, "%s/A%s", sdir, STAGE_SUFFIX);
        struct staging st;
        assert_int_equal(staging_open(&st, sdir, 0, 0, msg, sizeof msg), 0);
        struct loop *l = NULL;
        const char *why = NULL;
        assert_int_equal(loop_new(&l, LOOP_AUTO, 8, &why), 0);
        struct stage s;
        assert_int_equal(stage_init(&s, &st, l, no_room, no_synced, NULL), 0);

        assert_int_equal(stage_open(&s, "A"), 0);
        assert_int_equal(access(path, F_OK), -1); /* named, not made */
        stage_remove(&s, false);
        assert_int_equal(access(path, F_OK), -1);

        int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0600); /* another writer's */
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(stage_open(&s, "A"), 0);
        assert_int_equal(stage_write(&s, (const uint8_t *)"x", 1), -EEXIST);
        assert_int_equal(stage_create(&s), -EEXIST);
        stage_remove(&s, false);
        assert_int_equal(access(path, F_OK), 0); /* left alone */
        assert_int_equal(unlink(path), 0);

        assert_int_equal(stage_open(&s, "A"), 0);
        assert_int_equal(stage_create(&s), 0);
        assert_int_equal(stage_create(&s), 0); /* once */
        assert_int_equal(access(path, F_OK), 0);
        stage_remove(&s, false);
        assert_int_equal(access(path, F_OK), -1);

        stage_destroy(&s);
        loop_free(l);
        staging_close(&st);
        remove_dir(dir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_books_delivered_exactly),
            cmocka_unit_test(test_retries_counted_exactly),
            cmocka_unit_test(test_duplicates),
            cmocka_unit_test(test_staging_backpressure),
            cmocka_unit_test(test_staging_direct_lengths),
            cmocka_unit_test(test_stage_file_made_late),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
