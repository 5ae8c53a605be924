/* The run journal. Appends are single write()s of whole lines under a mutex on an
 * O_APPEND fd; durability is batched (fdatasync from the main thread's timer), since a lost
 * line only costs a recheck. On open the file is streamed through a fixed buffer and the
 * delivered barcodes go into an open-addressing set whose strings live in one arena, so a
 * million-book journal costs tens of megabytes, not a node per book. */
#include "quire/engine/journal.h"

#include "quire/engine/feeder.h"
#include "quire/base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Lines we write are at most this long; a longer line in the file is not ours. */
#define LINE_MAX_BYTES 4096
#define READ_BUF       (64 * 1024)

/* A slot is (hash tag << 32) | (arena offset + 1); 0 marks an empty slot. The tag settles
 * almost every probe without touching the arena. */
struct bset {
        uint64_t *slots;
        size_t mask, used;
        char *arena; /* NUL-terminated barcodes back to back */
        size_t alen, acap;
};

struct journal {
        int fd;
        bool need_newline; /* a failed write left a partial line at the end */
        pthread_mutex_t lock;
        struct bset set;
        atomic_uint_fast64_t appended; /* lines written, ever */
        uint64_t synced;               /* value of appended at the last fdatasync (main thread) */
        uint64_t last_sync_ns;
        size_t loaded_alen; /* the set's arena after loading: later entries are this run's */
};

static uint64_t hash_bytes(const char *s, size_t n)
{
        uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, then a finaliser to spread it */
        for (size_t i = 0; i < n; i++)
                h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 33;
        return h;
}

static int bset_init(struct bset *b)
{
        b->mask = 1023;
        b->slots = calloc(b->mask + 1, sizeof *b->slots);
        b->acap = 16 * 1024;
        b->arena = malloc(b->acap);
        if (!b->slots || !b->arena) {
                free(b->slots);
                free(b->arena);
                return -ENOMEM;
        }
        b->used = b->alen = 0;
        return 0;
}

static void bset_free(struct bset *b)
{
        free(b->slots);
        free(b->arena);
}

/* Index of s's slot, or of the empty slot where it would go. */
static size_t bset_find(const struct bset *b, const char *s, size_t n, uint64_t h)
{
        uint64_t tag = h >> 32;
        for (size_t i = h & b->mask;; i = (i + 1) & b->mask) {
                uint64_t e = b->slots[i];
                if (!e)
                        return i;
                if (e >> 32 != tag)
                        continue;
                const char *k = b->arena + (uint32_t)e - 1;
                if (!memcmp(k, s, n) && k[n] == 0)
                        return i;
        }
}

static int bset_grow_table(struct bset *b)
{
        size_t ncap = (b->mask + 1) * 2;
        uint64_t *ns = calloc(ncap, sizeof *ns);
        if (!ns)
                return -ENOMEM;
        for (size_t i = 0; i <= b->mask; i++) {
                uint64_t e = b->slots[i];
                if (!e)
                        continue;
                const char *k = b->arena + (uint32_t)e - 1;
                /* Rehash from the string: the tag holds only the high half. */
                size_t j = hash_bytes(k, strlen(k)) & (ncap - 1);
                while (ns[j])
                        j = (j + 1) & (ncap - 1);
                ns[j] = e;
        }
        free(b->slots);
        b->slots = ns;
        b->mask = ncap - 1;
        return 0;
}

/* line: NULL while loading the file; for a barcode delivered during this run, the list
 * line of its copy, kept after the string (8 bytes) so that a repeat can name it. */
static int bset_add(struct bset *b, const char *s, size_t n, const uint64_t *line)
{
        uint64_t h = hash_bytes(s, n);
        size_t i = bset_find(b, s, n, h);
        if (b->slots[i])
                return 0;
        size_t need = n + 1 + (line ? sizeof *line : 0);
        if (b->alen + need > b->acap) {
                size_t ncap = b->acap * 2;
                while (b->alen + need > ncap)
                        ncap *= 2;
                if (ncap > UINT32_MAX)
                        return -EFBIG; /* offsets are 32-bit: tens of millions of barcodes */
                char *na = realloc(b->arena, ncap);
                if (!na)
                        return -ENOMEM;
                b->arena = na;
                b->acap = ncap;
        }
        /* Keep the load under 3/4 so probe runs stay short. */
        if ((b->used + 1) * 4 > (b->mask + 1) * 3) {
                int r = bset_grow_table(b);
                if (r)
                        return r;
                i = bset_find(b, s, n, h);
        }
        memcpy(b->arena + b->alen, s, n);
        b->arena[b->alen + n] = 0;
        if (line)
                memcpy(b->arena + b->alen + n + 1, line, sizeof *line);
        b->slots[i] = (h >> 32) << 32 | (uint64_t)(b->alen + 1);
        b->alen += need;
        b->used++;
        return 0;
}

static bool bset_has(const struct bset *b, const char *s, size_t n)
{
        return b->slots[bset_find(b, s, n, hash_bytes(s, n))] != 0;
}

/* Takes one whole line (without its newline): TIME BARCODE OUTCOME BYTES SHA256 DETAIL
 * and, in journals since durations were added, SECONDS and perhaps more. Only BARCODE and
 * OUTCOME matter here; lines of fewer than six fields are not ours and are ignored. */
static int load_line(struct journal *j, const char *s, size_t n)
{
        const char *f[3];
        size_t len[3], k = 0;
        const char *end = s + n;
        for (const char *p = s;; k++) {
                const char *tab = memchr(p, '\t', (size_t)(end - p));
                if (k < 3) {
                        f[k] = p;
                        len[k] = (size_t)((tab ? tab : end) - p);
                }
                if (!tab)
                        break;
                p = tab + 1;
        }
        if (k + 1 < 6 || len[1] == 0 || len[1] > BARCODE_MAX)
                return 0;
        if (len[2] == 2 && !memcmp(f[2], "ok", 2))
                return bset_add(&j->set, f[1], len[1], NULL);
        return 0;
}

/* Streams the file, loading every whole line; *good_end is the offset just past the last
 * newline, so anything after it is a torn line. */
static int load(struct journal *j, char *buf, off_t *good_end, off_t *size)
{
        size_t have = 0;
        off_t off = 0;
        bool skipping = false; /* inside a line too long to be ours */
        *good_end = 0;
        for (;;) {
                ssize_t r = pread(j->fd, buf + have, READ_BUF - have, off);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r == 0)
                        break;
                off += r;
                have += (size_t)r;
                char *p = buf, *nl;
                while ((nl = memchr(p, '\n', have - (size_t)(p - buf)))) {
                        if (!skipping) {
                                int e = load_line(j, p, (size_t)(nl - p));
                                if (e)
                                        return e;
                        }
                        skipping = false;
                        p = nl + 1;
                }
                *good_end = off - (off_t)(have - (size_t)(p - buf));
                have -= (size_t)(p - buf);
                memmove(buf, p, have);
                if (have == READ_BUF) {
                        skipping = true;
                        have = 0;
                }
        }
        *size = off;
        return 0;
}

static int load_and_repair(struct journal *j)
{
        char *buf = malloc(READ_BUF);
        if (!buf)
                return -ENOMEM;
        off_t good_end = 0, size = 0;
        int r = load(j, buf, &good_end, &size);
        free(buf);
        if (r)
                return r;
        /* A torn last line (a crash mid-write) is dropped, so the next line starts on its
         * own; if it cannot be cut off, the next append ends it with a newline first. */
        if (size > good_end && ftruncate(j->fd, good_end) != 0)
                j->need_newline = true;
        return 0;
}

int journal_open(struct journal **out, const char *path)
{
        struct journal *j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        int r = bset_init(&j->set);
        if (r) {
                free(j);
                return r;
        }
        j->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (j->fd < 0) {
                r = -errno;
                goto fail;
        }
        /* Two runs on one journal would cut each other's lines when repairing it. */
        if (flock(j->fd, LOCK_EX | LOCK_NB) != 0) {
                r = -errno;
                goto fail;
        }
        r = load_and_repair(j);
        if (r)
                goto fail;
        j->loaded_alen = j->set.alen;
        pthread_mutex_init(&j->lock, NULL);
        atomic_init(&j->appended, 0);
        j->last_sync_ns = util_now_ns();
        *out = j;
        return 0;
fail:
        if (j->fd >= 0)
                close(j->fd);
        bset_free(&j->set);
        free(j);
        return r;
}

int journal_delivered_at(const struct journal *j, const char *barcode, uint64_t *line)
{
        struct journal *mj = (struct journal *)j; /* the lock only: see journal_delivered */
        size_t n = strlen(barcode);
        pthread_mutex_lock(&mj->lock);
        uint64_t e = j->set.slots[bset_find(&j->set, barcode, n, hash_bytes(barcode, n))];
        int at = 0;
        if (e) {
                size_t off = (uint32_t)e - 1;
                at = off >= j->loaded_alen ? 2 : 1;
                if (at == 2)
                        memcpy(line, j->set.arena + off + n + 1, sizeof *line);
        }
        pthread_mutex_unlock(&mj->lock);
        return at;
}

bool journal_delivered(const struct journal *j, const char *barcode)
{
        /* The set also grows during the run (journal_append of "ok"); the lock is not
         * part of the journal's observable state, so casting const away is sound. */
        struct journal *mj = (struct journal *)j;
        pthread_mutex_lock(&mj->lock);
        bool has = bset_has(&j->set, barcode, strlen(barcode));
        pthread_mutex_unlock(&mj->lock);
        return has;
}

uint64_t journal_delivered_count(const struct journal *j)
{
        struct journal *mj = (struct journal *)j;
        pthread_mutex_lock(&mj->lock);
        uint64_t n = j->set.used;
        pthread_mutex_unlock(&mj->lock);
        return n;
}

size_t journal_mem_bytes(const struct journal *j)
{
        struct journal *mj = (struct journal *)j;
        pthread_mutex_lock(&mj->lock);
        size_t n = sizeof *j + (j->set.mask + 1) * sizeof *j->set.slots + j->set.acap;
        pthread_mutex_unlock(&mj->lock);
        return n;
}

static bool has_tab_or_newline(const char *s)
{
        return strpbrk(s, "\t\n\r") != NULL;
}

/* Appends detail to line[len..cap) with tabs and line breaks turned into spaces, and
 * truncated to keep the line within cap. */
static size_t put_detail(char *line, size_t len, size_t cap, const char *detail)
{
        if (!detail || !*detail)
                detail = "-";
        for (; *detail && len < cap; detail++) {
                char c = *detail;
                line[len++] = c == '\t' || c == '\n' || c == '\r' ? ' ' : c;
        }
        return len;
}

/* "\t12.345" (seconds to the millisecond, rounded), or "\t-" when not timed. */
static int format_seconds(char *buf, size_t n, uint64_t ns)
{
        if (!ns)
                return snprintf(buf, n, "\t-");
        uint64_t ms = (ns + 500000) / 1000000;
        return snprintf(buf, n, "\t%llu.%03llu", (unsigned long long)(ms / 1000),
                        (unsigned long long)(ms % 1000));
}

static int write_all(int fd, const char *p, size_t n, bool *torn)
{
        size_t done = 0;
        while (done < n) {
                ssize_t w = write(fd, p + done, n - done);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0) {
                        *torn = done > 0;
                        return -errno;
                }
                done += (size_t)w;
        }
        return 0;
}

int journal_append(struct journal *j, const struct journal_rec *rec)
{
        if (!rec->barcode || !*rec->barcode || strlen(rec->barcode) > BARCODE_MAX ||
            has_tab_or_newline(rec->barcode) || !rec->outcome || has_tab_or_newline(rec->outcome))
                return -EINVAL;
        const char *sha = rec->sha256_hex ? rec->sha256_hex : "-";
        if (strlen(sha) > 128 || has_tab_or_newline(sha))
                return -EINVAL;
        char line[LINE_MAX_BYTES];
        char ts[21], secs[32];
        util_utc_iso8601(ts);
        int secs_len = format_seconds(secs, sizeof secs, rec->duration_ns);
        /* Room for a leading newline that ends a torn line, if one is needed. */
        size_t len = 1;
        len += (size_t)snprintf(line + len, sizeof line - len, "%s\t%s\t%s\t%llu\t%s\t", ts,
                                rec->barcode, rec->outcome, (unsigned long long)rec->bytes, sha);
        /* A long detail is cut, never the duration after it. */
        len = put_detail(line, len, sizeof line - 1 - (size_t)secs_len, rec->detail);
        memcpy(line + len, secs, (size_t)secs_len);
        len += (size_t)secs_len;
        line[len++] = '\n';

        pthread_mutex_lock(&j->lock);
        const char *p = line + 1;
        if (j->need_newline) {
                line[0] = '\n';
                p = line;
        }
        bool torn = false;
        int r = write_all(j->fd, p, (size_t)(line + len - p), &torn);
        if (r == 0) {
                j->need_newline = false;
                atomic_fetch_add_explicit(&j->appended, 1, memory_order_release);
                /* The set only speeds up skipping a barcode listed twice: running out of
                 * memory for it costs a recheck, not the line. */
                if (!strcmp(rec->outcome, "ok"))
                        (void)bset_add(&j->set, rec->barcode, strlen(rec->barcode), &rec->line);
        } else if (torn) {
                j->need_newline = true;
        }
        pthread_mutex_unlock(&j->lock);
        return r;
}

int journal_open_readonly(struct journal **out, const char *path)
{
        struct journal *j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        pthread_mutex_init(&j->lock, NULL);
        int r = bset_init(&j->set);
        if (r) {
                free(j);
                return r;
        }
        j->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (j->fd < 0 && errno != ENOENT) {
                r = -errno;
                bset_free(&j->set);
                free(j);
                return r;
        }
        char *buf = j->fd >= 0 ? malloc(READ_BUF) : NULL;
        off_t good_end = 0, size = 0;
        if (j->fd >= 0)
                r = buf ? load(j, buf, &good_end, &size) : -ENOMEM;
        free(buf);
        if (r) {
                journal_close(j);
                return r;
        }
        j->loaded_alen = j->set.alen;
        *out = j;
        return 0;
}

static void sync_now(struct journal *j)
{
        uint64_t n = atomic_load_explicit(&j->appended, memory_order_acquire);
        if (fdatasync(j->fd) != 0)
                qlog("journal: fdatasync: %s", strerror(errno));
        j->synced = n;
        j->last_sync_ns = util_now_ns();
}

void journal_sync_due(struct journal *j, int interval_ms)
{
        if (atomic_load_explicit(&j->appended, memory_order_relaxed) == j->synced)
                return;
        if (util_now_ns() - j->last_sync_ns < (uint64_t)interval_ms * 1000000u)
                return;
        sync_now(j);
}

void journal_close(struct journal *j)
{
        if (!j)
                return;
        if (atomic_load(&j->appended) != j->synced)
                sync_now(j);
        if (j->fd >= 0)
                close(j->fd);
        pthread_mutex_destroy(&j->lock);
        bset_free(&j->set);
        free(j);
}
