/* quire decrypt: one OpenPGP message from a file or stdin to a file or stdout. */
#include "cmds.h"
#include "quire/pgp/pgp.h"
#include "quire/base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define READ_BUF (128u << 10)

enum { DEC_OUT = 'o', DEC_PASSFILE = 256, DEC_THREADS, DEC_FEED };

static const struct opt decrypt_opts[] = {
    OPT("passphrase-file", DEC_PASSFILE, "FILE", NULL,
        "The passphrase is the first line of FILE (else $QUIRE_PASSPHRASE).", .values = OPT_FILE),
    OPT("output", DEC_OUT, "OUT", "stdout",
        "Where the literal data goes; it appears only once the integrity check (MDC) has "
        "passed, and a refused message leaves nothing behind.",
        .values = OPT_FILE),
    OPT("threads", DEC_THREADS, "N", "2 on a machine with two CPUs or more",
        "1, or 2: the MDC's SHA-1 on a second core (helps only where two cores really run at "
        "once).",
        .values = "1 2"),
    OPT("feed-size", DEC_FEED, "SIZE", "128KiB",
        "Feeds the decryptor in pieces of SIZE, at most 128KiB, the read size (tests: any "
        "chunking must decrypt the same)."),
    {0},
};

const struct cmd_spec cmd_decrypt_spec = {
    .name = "decrypt",
    .operands = "[IN|-]",
    .operand_values = OPT_FILE,
    .max_operands = 1,
    .summary = "one message, like gpg --decrypt",
    .description = "Decrypts a message made by `gpg --symmetric` from IN (standard input by "
                   "default) and writes its literal data, byte-identical to `gpg --decrypt`.",
    .opts = decrypt_opts,
    .main = cmd_decrypt,
};

struct out {
        int fd;
        const char *path; /* NULL: stdout */
        bool tmpfile;     /* fd is an O_TMPFILE to link as path once verified */
        char tmpname[PATH_MAX];
        char dir[PATH_MAX]; /* holding path, synced once the name is in place */
};

static int write_all(void *ctx, const uint8_t *p, size_t n)
{
        struct out *o = ctx;
        while (n) {
                ssize_t w = write(o->fd, p, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -errno;
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

/* Plaintext is unverified until the MDC passes, so a regular OUT is written as a file
 * with no name (O_TMPFILE: nothing is left even if we are killed) or, where the file
 * system lacks that, under a temporary name beside OUT. Devices such as /dev/null are
 * written directly. */
static int out_open(struct out *o, const char *path)
{
        struct stat st;
        o->path = path;
        if (!path || !strcmp(path, "-")) {
                o->path = NULL;
                o->fd = STDOUT_FILENO;
                return 0;
        }
        if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
                o->fd = open(path, O_WRONLY | O_CLOEXEC);
                return o->fd < 0 ? -errno : 0;
        }
        char dirbuf[PATH_MAX], basebuf[PATH_MAX];
        snprintf(dirbuf, sizeof dirbuf, "%s", path);
        snprintf(basebuf, sizeof basebuf, "%s", path);
        const char *dir = dirname(dirbuf);
        snprintf(o->dir, sizeof o->dir, "%s", dir);
        o->fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
        if (o->fd >= 0) {
                o->tmpfile = true;
                return 0;
        }
        snprintf(o->tmpname, sizeof o->tmpname, "%s/.%s.quire-XXXXXX", dir, basename(basebuf));
        o->fd = mkostemp(o->tmpname, O_CLOEXEC);
        if (o->fd < 0)
                return -errno;
        mode_t mask = umask(0);
        umask(mask);
        return fchmod(o->fd, 0666 & ~mask) ? -errno : 0;
}

static int link_tmpfile(struct out *o)
{
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", o->fd);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, o->path, AT_SYMLINK_FOLLOW) == 0)
                return 0;
        if (errno != EEXIST)
                return -errno;
        /* OUT exists: link under a fresh name beside it, then rename over it atomically. */
        for (int i = 0; i < 100; i++) {
                snprintf(o->tmpname, sizeof o->tmpname, "%s.quire-%d-%d", o->path, (int)getpid(),
                         i);
                if (linkat(AT_FDCWD, proc, AT_FDCWD, o->tmpname, AT_SYMLINK_FOLLOW) == 0)
                        return rename(o->tmpname, o->path) ? -errno : 0;
                if (errno != EEXIST)
                        return -errno;
        }
        return -EEXIST;
}

static int sync_dir(const char *dir)
{
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int rc = fsync(fd) ? -errno : 0;
        close(fd);
        return rc;
}

/* The data reaches the disk before the name does, and the name (its directory synced)
 * before quire says it is done: a crash never leaves OUT named but empty or short. */
static int out_publish(struct out *o)
{
        if (fdatasync(o->fd))
                return -errno;
        int rc = o->tmpfile ? link_tmpfile(o) : rename(o->tmpname, o->path) ? -errno : 0;
        return rc ? rc : sync_dir(o->dir);
}

/* ok: the message verified, so OUT may appear; otherwise whatever was written goes. */
static int out_close(struct out *o, bool ok)
{
        int rc = 0;
        if (ok && (o->tmpfile || o->tmpname[0]))
                rc = out_publish(o);
        if ((!ok || rc) && o->tmpname[0])
                unlink(o->tmpname);
        if (o->path && close(o->fd) && ok && !rc)
                rc = -errno;
        return rc;
}

static int read_full(int fd, uint8_t *buf, size_t cap)
{
        size_t n = 0;
        while (n < cap) {
                ssize_t r = read(fd, buf + n, cap - n);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r == 0)
                        break;
                n += (size_t)r;
        }
        return (int)n;
}

/* A read error: 1 with its errno in *rerr; a mapped input cut short while being read. */
#define READ_FAILED 1
#define INPUT_CUT   2

/* Feeds what read(2) gives from fd's offset on; 0 or a PGP_E* code, or READ_FAILED. */
static int decrypt_fd(struct pgp_dec *d, int fd, uint8_t *buf, size_t feed, int *rerr)
{
        for (;;) {
                int n = read_full(fd, buf, READ_BUF);
                if (n < 0) {
                        *rerr = -n;
                        return READ_FAILED;
                }
                if (n == 0)
                        return pgp_finish(d);
                for (size_t off = 0; off < (size_t)n; off += feed) {
                        size_t k = (size_t)n - off < feed ? (size_t)n - off : feed;
                        int r = pgp_feed(d, buf + off, k);
                        if (r)
                                return r;
                }
        }
}

/* A regular file is mapped rather than read: the decryptor reads the page cache itself,
 * which saves the kernel's copy into a buffer (measured ~100 of ~400 ms for 512 MiB on
 * this project's VM). A file cut short meanwhile faults with SIGBUS on the pages gone:
 * caught here, where nothing but the decryptor's own reading of the map can fault, and
 * reported (INPUT_CUT); the message is refused. Whatever the file grew by after fstat is
 * read as usual. */
static sigjmp_buf bus_jmp;

static void on_sigbus(int sig)
{
        siglongjmp(bus_jmp, 1);
}

static int feed_map(struct pgp_dec *d, const uint8_t *p, size_t size, size_t feed)
{
        for (size_t off = 0; off < size; off += feed) {
                int r = pgp_feed(d, p + off, size - off < feed ? size - off : feed);
                if (r)
                        return r;
        }
        return 0;
}

static int decrypt_in(struct pgp_dec *d, int fd, uint8_t *buf, size_t feed, int *rerr)
{
        struct stat st;
        if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
            lseek(fd, 0, SEEK_CUR) != 0)
                return decrypt_fd(d, fd, buf, feed, rerr);
        size_t size = (size_t)st.st_size;
        void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED)
                return decrypt_fd(d, fd, buf, feed, rerr);
        madvise(map, size, MADV_SEQUENTIAL);
        struct sigaction sa = {.sa_handler = on_sigbus}, old;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGBUS, &sa, &old);
        int r;
        if (sigsetjmp(bus_jmp, 0)) {
                r = INPUT_CUT;
        } else {
                r = feed_map(d, map, size, feed);
        }
        sigaction(SIGBUS, &old, NULL);
        munmap(map, size);
        if (r || lseek(fd, (off_t)size, SEEK_SET) < 0)
                return r;
        return decrypt_fd(d, fd, buf, feed, rerr);
}

struct opts {
        const char *passfile, *out, *in;
        uint64_t feed, threads;
};

static int set_option(void *ctx, int key, const char *arg)
{
        const struct cmd_spec *c = &cmd_decrypt_spec;
        struct opts *o = ctx;
        unsigned threads;
        switch (key) {
        case DEC_PASSFILE:
                o->passfile = arg;
                return 0;
        case DEC_OUT:
                o->out = arg;
                return 0;
        case DEC_FEED:
                return opts_size(c, key, arg, 1, READ_BUF, &o->feed);
        case DEC_THREADS:
                if (opts_choice(c, key, arg, &threads))
                        return OPTS_USAGE;
                o->threads = threads + 1;
                return 0;
        }
        return 0;
}

static int run(struct pgp_dec *d, const struct opts *op, int in, const char *name, uint8_t *buf)
{
        struct out o = {0};
        int r = out_open(&o, op->out);
        if (r) {
                qlog("%s: %s", op->out, strerror(-r));
                return 1;
        }
        size_t plen = 0;
        char *pass = util_read_passphrase(op->passfile, &plen);
        if (!pass) {
                out_close(&o, false);
                return 1;
        }
        pgp_reset(d, pass, plen, write_all, &o);
        explicit_bzero(pass, plen);
        free(pass);
        int rerr = 0;
        r = decrypt_in(d, in, buf, op->feed ? op->feed : READ_BUF, &rerr);
        if (r == READ_FAILED)
                qlog("%s: %s", name, strerror(rerr));
        else if (r == INPUT_CUT)
                qlog("%s: could not be read while mapped (cut short, or an I/O error)", name);
        else if (r == PGP_ESINK)
                qlog("%s: %s", op->out ? op->out : "stdout", strerror(pgp_sink_errno(d)));
        else if (r)
                qlog("%s: %s", name, pgp_detail(d));
        int c = out_close(&o, r == 0);
        if (c) {
                qlog("%s: %s", op->out, strerror(-c));
                r = c;
        }
        return r ? 1 : 0;
}

int cmd_decrypt(int argc, char **argv)
{
        struct opts op = {.threads = sysconf(_SC_NPROCESSORS_ONLN) > 1 ? 2 : 1};
        int next = opts_parse(&cmd_decrypt_spec, argc, argv, set_option, &op);
        if (next < 0)
                return opts_exit_status(next);
        op.in = next < argc ? argv[next] : "-";
        if (!op.passfile && !getenv("QUIRE_PASSPHRASE")) {
                qlog("no passphrase: give --passphrase-file FILE or set QUIRE_PASSPHRASE");
                return 2;
        }
        bool std_in = !strcmp(op.in, "-");
        const char *name = std_in ? "stdin" : op.in;
        int in = std_in ? STDIN_FILENO : open(op.in, O_RDONLY | O_CLOEXEC);
        if (in < 0) {
                qlog("%s: %s", name, strerror(errno));
                return 1;
        }
        posix_fadvise(in, 0, 0, POSIX_FADV_SEQUENTIAL);
        struct pgp_dec *d = NULL;
        uint8_t *buf = malloc(READ_BUF);
        int rc = 1;
        if (!buf || pgp_new(&d) || (op.threads == 2 && pgp_set_mdc_thread(d)))
                qlog("out of memory");
        else
                rc = run(d, &op, in, name, buf);
        pgp_free(d);
        free(buf);
        if (!std_in)
                close(in);
        return rc;
}
