/* The S3 sink without the engine: this program is the worker (worker.h's calls over a real
 * loop and a curl multi driven by curl_multi_socket_action, as engine/worker.c does) and
 * the engine's side of sink.h (real staging files, their SHA-256 and part digests, a slot
 * per job), so that tests/e2e/test_s3_sink.sh can run the sink against s3rver and check
 * what it did with an independent client and the SigV4 checker.
 *
 *   test_s3_sink --dest s3://BUCKET[/PREFIX] --endpoint URL [--part-size N]
 *                [--max-upload-rate N] [--stall-timeout S] [--io uring|epoll]
 *                [--abort-deadline-ms N] JOBFILE
 *
 * JOBFILE: one job a line, all started at once, each on its own slot:
 *   deliver NAME FILE [META_NAME=VALUE ...]
 *   lookup NAME
 * An empty file only opens the sink (the start-up checks and sweep) and closes it.
 *
 * Prints, one line each: "open rc=R part_size=N max_size=N" (or "open rc=R msg=..."),
 * "added N" whenever a transfer joins the multi (N counts them), "deliver NAME rc=R
 * transient=T detail=D", "lookup NAME rc=R found=F etag=E detail=D". SIGINT or SIGTERM
 * while jobs run is the second Ctrl-C: every slot is aborted, then "abort: N transfers in
 * flight after abort()" and "abort: holds released after N ms" or "abort: deadline passed
 * with N holds". Exit 0 when every job succeeded, 1 when one failed, 2 when the sink did
 * not open, 130 after a signal.
 *
 * Run without arguments (make check-unit) it has no server to talk to: it records one
 * skipped test saying so. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "quire/engine/loop.h"
#include "quire/engine/worker.h"
#include "quire/io/sinks.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "quire/base/util.h"

#define MAX_JOBS  64
#define MAX_META  8
#define MAX_SOCKS 256

/* ---- the worker ------------------------------------------------------------------------ */

struct sock {
        struct loop_op op;
        struct worker *w;
        curl_socket_t fd;
        unsigned events;
        struct sock *next_free;
};

struct worker {
        struct loop *loop;
        CURLM *multi;
        struct loop_op curl_timer;
        struct sock socks[MAX_SOCKS], *free_socks;
        unsigned holds, in_flight, added;
        bool aborting;
};

struct loop *worker_loop(struct worker *w)
{
        return w->loop;
}

int worker_add_xfer(struct worker *w, struct xfer *x)
{
        curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
        CURLMcode mc = curl_multi_add_handle(w->multi, x->easy);
        if (mc != CURLM_OK)
                return mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
        w->in_flight++;
        printf("added %u\n", ++w->added);
        return 0;
}

void worker_remove_xfer(struct worker *w, struct xfer *x)
{
        if (curl_multi_remove_handle(w->multi, x->easy) == CURLM_OK)
                w->in_flight--;
}

void worker_hold(struct worker *w)
{
        w->holds++;
}

void worker_release(struct worker *w)
{
        assert_true(w->holds > 0);
        w->holds--;
}

bool worker_aborting(const struct worker *w)
{
        return w->aborting;
}

static void process_done(struct worker *w)
{
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(w->multi, &left))) {
                if (m->msg != CURLMSG_DONE)
                        continue;
                struct xfer *x;
                CURLcode rc = m->data.result;
                curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
                curl_multi_remove_handle(w->multi, m->easy_handle);
                w->in_flight--;
                x->done(x, rc);
        }
}

static void socket_action(struct worker *w, curl_socket_t fd, int flags)
{
        int running;
        curl_multi_socket_action(w->multi, fd, flags, &running);
        process_done(w);
}

static void on_sock_ready(struct loop_op *op, int res)
{
        struct sock *s = container_of(op, struct sock, op);
        int flags = 0;
        if (res < 0 || (res & (POLLERR | POLLHUP)))
                flags |= CURL_CSELECT_ERR;
        if (res > 0 && (res & POLLIN))
                flags |= CURL_CSELECT_IN;
        if (res > 0 && (res & POLLOUT))
                flags |= CURL_CSELECT_OUT;
        loop_poll(s->w->loop, &s->op, s->fd, s->events);
        socket_action(s->w, s->fd, flags);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
        struct worker *w = userp;
        struct sock *s = socketp;
        if (what == CURL_POLL_REMOVE) {
                if (s) {
                        loop_cancel(w->loop, &s->op);
                        curl_multi_assign(w->multi, fd, NULL);
                        s->next_free = w->free_socks;
                        w->free_socks = s;
                }
                return 0;
        }
        if (!s) {
                s = w->free_socks;
                assert_non_null(s);
                w->free_socks = s->next_free;
                s->fd = fd;
                curl_multi_assign(w->multi, fd, s);
        }
        unsigned events = (what & CURL_POLL_IN ? POLLIN : 0) | (what & CURL_POLL_OUT ? POLLOUT : 0);
        if (s->op.pending && s->events == events)
                return 0;
        loop_cancel(w->loop, &s->op);
        s->events = events;
        loop_poll(w->loop, &s->op, fd, events);
        return 0;
}

static void on_curl_timer_fired(struct loop_op *op, int res)
{
        socket_action(container_of(op, struct worker, curl_timer), CURL_SOCKET_TIMEOUT, 0);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
        struct worker *w = userp;
        loop_cancel(w->loop, &w->curl_timer);
        if (timeout_ms >= 0)
                loop_timer(w->loop, &w->curl_timer, (uint64_t)timeout_ms * 1000000u);
        return 0;
}

static int worker_init(struct worker *w, enum loop_kind kind)
{
        const char *why = NULL;
        int err = loop_new(&w->loop, kind, 256, &why);
        if (err)
                return err;
        w->multi = curl_multi_init();
        if (!w->multi)
                return -ENOMEM;
        curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
        curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
        curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
        curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
        w->curl_timer.fn = on_curl_timer_fired;
        for (unsigned i = 0; i < MAX_SOCKS; i++) {
                w->socks[i].w = w;
                w->socks[i].op.fn = on_sock_ready;
                w->socks[i].next_free = i + 1 < MAX_SOCKS ? &w->socks[i + 1] : NULL;
        }
        w->free_socks = w->socks;
        return 0;
}

/* ---- the engine's side: jobs ---------------------------------------------------------- */

struct job {
        bool lookup, done;
        int rc;
        char name[256], path[1024];
        struct delivery_meta meta[MAX_META];
        char *meta_text[MAX_META];
        unsigned nmeta;
        struct delivery d;
        struct lookup lk;
        struct sink_slot *ss;
        uint8_t (*parts)[32];
};

static struct job jobs[MAX_JOBS];
static unsigned njobs, left;

static void on_delivered(struct delivery *d, int rc, bool transient, const char *detail)
{
        struct job *j = container_of(d, struct job, d);
        assert_false(j->done);
        j->done = true;
        j->rc = rc;
        left--;
        printf("deliver %s rc=%d transient=%d detail=%s\n", j->name, rc, transient,
               detail ? detail : "-");
}

static void on_looked_up(struct lookup *lk, int rc, const char *detail)
{
        struct job *j = container_of(lk, struct job, lk);
        assert_false(j->done);
        j->done = true;
        j->rc = rc;
        left--;
        printf("lookup %s rc=%d found=%d etag=%s detail=%s\n", j->name, rc, lk->found,
               lk->source_etag, detail ? detail : "-");
}

/* What the engine computes while it stages: the whole file's SHA-256 and each part's. */
static int hash_file(struct job *j, uint64_t part_size)
{
        struct stat st;
        if (fstat(j->d.fd, &st) < 0)
                return -errno;
        uint64_t size = (uint64_t)st.st_size;
        unsigned n = size > part_size ? (unsigned)((size + part_size - 1) / part_size) : 1;
        j->parts = calloc(n, 32);
        uint8_t *buf = malloc(1 << 20);
        EVP_MD_CTX *all = EVP_MD_CTX_new(), *part = EVP_MD_CTX_new();
        assert_true(j->parts && buf && all && part);
        EVP_DigestInit_ex(all, EVP_sha256(), NULL);
        uint64_t off = 0;
        for (unsigned i = 0; i < n; i++) {
                EVP_DigestInit_ex(part, EVP_sha256(), NULL);
                uint64_t end = off + part_size < size ? off + part_size : size;
                while (off < end) {
                        size_t want = end - off < (1 << 20) ? (size_t)(end - off) : (1 << 20);
                        ssize_t r = pread(j->d.fd, buf, want, (off_t)off);
                        assert_true(r > 0);
                        EVP_DigestUpdate(all, buf, (size_t)r);
                        EVP_DigestUpdate(part, buf, (size_t)r);
                        off += (uint64_t)r;
                }
                EVP_DigestFinal_ex(part, j->parts[i], NULL);
        }
        EVP_DigestFinal_ex(all, j->d.sha256, NULL);
        EVP_MD_CTX_free(all);
        EVP_MD_CTX_free(part);
        free(buf);
        j->d.size = size;
        j->d.part_sha256 = (const uint8_t(*)[32])j->parts;
        j->d.nparts = n;
        return 0;
}

static int read_jobs(const char *path)
{
        FILE *f = fopen(path, "r");
        if (!f)
                return -errno;
        char line[8192];
        while (fgets(line, sizeof line, f)) {
                line[strcspn(line, "\n")] = 0;
                char *save, *kind = strtok_r(line, " \t", &save);
                if (!kind)
                        continue;
                assert_true(njobs < MAX_JOBS);
                struct job *j = &jobs[njobs++];
                j->lookup = !strcmp(kind, "lookup");
                char *name = strtok_r(NULL, " \t", &save);
                assert_non_null(name);
                snprintf(j->name, sizeof j->name, "%s", name);
                if (!j->lookup) {
                        char *file = strtok_r(NULL, " \t", &save);
                        assert_non_null(file);
                        snprintf(j->path, sizeof j->path, "%s", file);
                        for (char *kv; (kv = strtok_r(NULL, " \t", &save));) {
                                char *eq = strchr(kv, '=');
                                assert_true(eq && j->nmeta < MAX_META);
                                j->meta_text[j->nmeta] = strdup(kv);
                                char *t = j->meta_text[j->nmeta];
                                t[eq - kv] = 0;
                                j->meta[j->nmeta++] = (struct delivery_meta){t, t + (eq - kv) + 1};
                        }
                }
        }
        fclose(f);
        return 0;
}

static int start_jobs(struct sink *s, struct worker *w)
{
        for (unsigned i = 0; i < njobs; i++) {
                struct job *j = &jobs[i];
                int err = s->ops->slot_new(s, w, &j->ss);
                if (err)
                        return err;
                if (j->lookup) {
                        j->lk = (struct lookup){
                            .barcode = j->name, .name = j->name, .done = on_looked_up};
                        s->ops->lookup(j->ss, &j->lk);
                        continue;
                }
                j->d = (struct delivery){.barcode = j->name,
                                         .name = j->name,
                                         .content_type = "application/gzip",
                                         .staging_path = j->path,
                                         .meta = j->meta,
                                         .nmeta = j->nmeta,
                                         .done = on_delivered};
                j->d.fd = open(j->path, O_RDWR | O_CLOEXEC);
                if (j->d.fd < 0 || hash_file(j, s->part_size) < 0)
                        return -errno;
                s->ops->deliver(j->ss, &j->d);
        }
        return 0;
}

/* ---- a run -------------------------------------------------------------------------------- */

static bool pending_signal(void)
{
        sigset_t s;
        return sigpending(&s) == 0 &&
               (sigismember(&s, SIGINT) == 1 || sigismember(&s, SIGTERM) == 1);
}

struct sigwatch {
        struct loop_op op;
        int fd;
        bool fired;
};

static void on_signal(struct loop_op *op, int res)
{
        container_of(op, struct sigwatch, op)->fired = true;
}

static void abort_all(struct sink *s, struct worker *w, uint64_t deadline_ms)
{
        w->aborting = true;
        for (unsigned i = 0; i < njobs; i++)
                if (!jobs[i].done)
                        s->ops->abort(jobs[i].ss);
        printf("abort: %u transfers in flight after abort()\n", w->in_flight);
        uint64_t start = util_now_ns(), end = start + deadline_ms * 1000000u;
        while (w->holds && util_now_ns() < end)
                loop_run(w->loop, end - util_now_ns());
        if (w->holds)
                printf("abort: deadline passed with %u holds\n", w->holds);
        else
                printf("abort: holds released after %llu ms\n",
                       (unsigned long long)((util_now_ns() - start) / 1000000u));
}

static int usage(void)
{
        fprintf(stderr, "usage: test_s3_sink --dest s3://B[/P] --endpoint URL [--part-size N] "
                        "[--max-upload-rate N] [--stall-timeout S] [--io uring|epoll] "
                        "[--abort-deadline-ms N] JOBFILE\n");
        return 2;
}

static int drive(int argc, char **argv)
{
        static const struct option opts[] = {{"dest", required_argument, NULL, 'd'},
                                             {"endpoint", required_argument, NULL, 'e'},
                                             {"part-size", required_argument, NULL, 'p'},
                                             {"max-upload-rate", required_argument, NULL, 'r'},
                                             {"stall-timeout", required_argument, NULL, 's'},
                                             {"io", required_argument, NULL, 'i'},
                                             {"abort-deadline-ms", required_argument, NULL, 'a'},
                                             {NULL, 0, NULL, 0}};
        struct sink_config cfg = {.interrupted = pending_signal};
        enum loop_kind kind = LOOP_AUTO;
        uint64_t deadline_ms = 5000;
        for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
                if (c == 'd')
                        cfg.dest = optarg;
                else if (c == 'e')
                        cfg.s3_endpoint = optarg;
                else if (c == 'p' && util_parse_size(optarg, &cfg.part_size) == 0)
                        continue;
                else if (c == 'r' && util_parse_size(optarg, &cfg.max_upload_rate) == 0)
                        continue;
                else if (c == 's')
                        cfg.stall_timeout_s = (unsigned)atoi(optarg);
                else if (c == 'i')
                        kind = !strcmp(optarg, "epoll") ? LOOP_EPOLL : LOOP_URING;
                else if (c == 'a')
                        deadline_ms = strtoull(optarg, NULL, 10);
                else
                        return usage();
        }
        if (!cfg.dest || optind != argc - 1 || read_jobs(argv[optind]) < 0)
                return usage();
        setvbuf(stdout, NULL, _IOLBF, 0);
        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGINT);
        sigaddset(&sigs, SIGTERM);
        sigprocmask(SIG_BLOCK, &sigs, NULL);
        curl_global_init(CURL_GLOBAL_DEFAULT);

        struct sink *s = NULL;
        char msg[512];
        int err = sink_s3_open(&s, &cfg, msg, sizeof msg);
        if (err) {
                printf("open rc=%d msg=%s\n", err, msg);
                return err == -EINTR ? 130 : 2;
        }
        printf("open rc=0 part_size=%llu max_size=%llu\n", (unsigned long long)s->part_size,
               (unsigned long long)s->max_size);
        static struct worker w;
        struct sigwatch sw = {.op.fn = on_signal, .fd = signalfd(-1, &sigs, SFD_CLOEXEC)};
        if (sw.fd < 0 || worker_init(&w, kind) < 0 || start_jobs(s, &w) < 0) {
                printf("setup failed: %s\n", strerror(errno));
                return 2;
        }
        left = njobs;
        loop_poll(w.loop, &sw.op, sw.fd, POLLIN);
        while (left && !sw.fired)
                loop_run(w.loop, 1000000000u);
        if (sw.fired)
                abort_all(s, &w, deadline_ms);
        loop_cancel(w.loop, &sw.op);
        /* Every staging read lands before the slots and their buffers go. */
        while (loop_inflight(w.loop))
                loop_run(w.loop, 100000000u);
        int failed = 0;
        for (unsigned i = 0; i < njobs; i++) {
                s->ops->slot_free(jobs[i].ss);
                failed |= jobs[i].done && jobs[i].rc;
                if (!jobs[i].lookup)
                        close(jobs[i].d.fd);
                free(jobs[i].parts);
                for (unsigned k = 0; k < jobs[i].nmeta; k++)
                        free(jobs[i].meta_text[k]);
        }
        assert_int_equal(w.holds, 0);
        s->ops->close(s);
        curl_multi_cleanup(w.multi);
        loop_free(w.loop);
        close(sw.fd);
        curl_global_cleanup();
        return sw.fired ? 130 : failed ? 1 : 0;
}

static void test_needs_peers(void **state)
{
        skip(); /* the sink's live tests: tests/e2e/test_s3_sink.sh runs this program */
}

int main(int argc, char **argv)
{
        if (argc > 1)
                return drive(argc, argv);
        fprintf(stderr, "test_s3_sink: skipped: drives the S3 sink against s3rver, which "
                        "tests/e2e/test_s3_sink.sh starts (run that suite)\n");
        const struct CMUnitTest tests[] = {cmocka_unit_test(test_needs_peers)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
