/* checksum.md5 against the members. The list is believed to come last, so every member's
 * digest is kept until the end: one entry of 40 bytes and the name per member (15,001
 * members for a 5,000-page book: about 1 MB), in an open-addressing table whose bound is
 * fixed (CONTENTS_MAX_MEMBERS, CONTENTS_NAME_ARENA). Lines are "MD5HEX  NAME" (md5sum's
 * format; " *NAME", its binary mark, is taken too). */
#include "contents_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LINE_CAP 4096

struct entry {
        uint32_t name;      /* arena offset */
        uint32_t order;     /* archive order, or UINT32_MAX when only listed */
        uint32_t list_line; /* 1-based line in checksum.md5, 0 when not listed */
        uint8_t md5[16], listed[16];
        bool in_archive, conflict; /* conflict: two members of that name differ */
};

struct sums {
        struct entry *e;
        size_t n, cap;
        uint32_t *slot; /* entry index + 1; 0 empty */
        size_t mask;
        char *arena;
        size_t alen, acap;
        char line[LINE_CAP];
        size_t llen;
        uint32_t lines;
        uint32_t members; /* distinct member names seen, for archive order */
        bool have_list, bad_list, full;
};

int sums_new(struct sums **out)
{
        struct sums *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->cap = 1024;
        s->mask = 2047;
        s->acap = 64 * 1024;
        s->e = malloc(s->cap * sizeof *s->e);
        s->slot = calloc(s->mask + 1, sizeof *s->slot);
        s->arena = malloc(s->acap);
        if (!s->e || !s->slot || !s->arena) {
                sums_free(s);
                return -ENOMEM;
        }
        *out = s;
        return 0;
}

void sums_free(struct sums *s)
{
        if (!s)
                return;
        free(s->e);
        free(s->slot);
        free(s->arena);
        free(s);
}

static uint64_t hash(const char *p, size_t n)
{
        uint64_t h = 0xcbf29ce484222325ull;
        for (size_t i = 0; i < n; i++)
                h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
        return h ^ (h >> 29);
}

static int grow(struct sums *s)
{
        size_t cap = s->cap * 2;
        struct entry *e = realloc(s->e, cap * sizeof *e);
        if (!e)
                return -ENOMEM;
        s->e = e;
        s->cap = cap;
        size_t mask = s->mask * 2 + 1;
        uint32_t *slot = calloc(mask + 1, sizeof *slot);
        if (!slot)
                return -ENOMEM;
        for (size_t i = 0; i < s->n; i++) {
                const char *nm = s->arena + s->e[i].name;
                size_t h = hash(nm, strlen(nm)) & mask;
                while (slot[h])
                        h = (h + 1) & mask;
                slot[h] = (uint32_t)i + 1;
        }
        free(s->slot);
        s->slot = slot;
        s->mask = mask;
        return 0;
}

/* The entry for name, made when absent; NULL past the bounds. */
static struct entry *lookup(struct sums *s, const char *name, size_t len)
{
        size_t h = hash(name, len) & s->mask;
        for (; s->slot[h]; h = (h + 1) & s->mask) {
                struct entry *e = &s->e[s->slot[h] - 1];
                const char *nm = s->arena + e->name;
                if (!strncmp(nm, name, len) && !nm[len])
                        return e;
        }
        if (s->n >= CONTENTS_MAX_MEMBERS || s->alen + len + 1 > CONTENTS_NAME_ARENA) {
                s->full = true;
                return NULL;
        }
        if (s->alen + len + 1 > s->acap) {
                size_t cap = s->acap * 2;
                while (cap < s->alen + len + 1)
                        cap *= 2;
                char *a = realloc(s->arena, cap);
                if (!a)
                        return NULL;
                s->arena = a;
                s->acap = cap;
        }
        if (s->n == s->cap) {
                if (grow(s))
                        return NULL;
                return lookup(s, name, len);
        }
        memcpy(s->arena + s->alen, name, len);
        s->arena[s->alen + len] = 0;
        struct entry *e = &s->e[s->n];
        *e = (struct entry){.name = (uint32_t)s->alen, .order = UINT32_MAX};
        s->alen += len + 1;
        s->slot[h] = (uint32_t)++s->n;
        return e;
}

int sums_member(struct sums *s, const char *name, const uint8_t md5[16])
{
        struct entry *e = lookup(s, name, strlen(name));
        if (!e)
                return s->full ? -E2BIG : -ENOMEM;
        if (e->in_archive && memcmp(e->md5, md5, 16))
                e->conflict = true;
        if (!e->in_archive)
                e->order = s->members++;
        e->in_archive = true;
        memcpy(e->md5, md5, 16);
        return 0;
}

static int unhex(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

static int list_line(struct sums *s, char *l, size_t n)
{
        s->lines++;
        if (n && l[n - 1] == '\r')
                n--;
        if (!n)
                return 0;
        if (n < 35 || l[32] != ' ' || (l[33] != ' ' && l[33] != '*')) {
                s->bad_list = true;
                return 0;
        }
        uint8_t md5[16];
        for (int i = 0; i < 16; i++) {
                int hi = unhex(l[2 * i]), lo = unhex(l[2 * i + 1]);
                if (hi < 0 || lo < 0) {
                        s->bad_list = true;
                        return 0;
                }
                md5[i] = (uint8_t)(hi << 4 | lo);
        }
        char *name = l + 34;
        size_t len = n - 34;
        if (len >= 2 && name[0] == '.' && name[1] == '/') {
                name += 2;
                len -= 2;
        }
        struct entry *e = lookup(s, name, len);
        if (!e)
                return s->full ? -E2BIG : -ENOMEM;
        if (!e->list_line) {
                e->list_line = s->lines;
                memcpy(e->listed, md5, 16);
        }
        return 0;
}

int sums_list_data(struct sums *s, const uint8_t *p, size_t n)
{
        s->have_list = true;
        for (size_t i = 0; i < n; i++) {
                if (p[i] == '\n') {
                        int r = list_line(s, s->line, s->llen);
                        s->llen = 0;
                        if (r)
                                return r;
                } else if (s->llen < LINE_CAP) {
                        s->line[s->llen++] = (char)p[i];
                } else {
                        s->bad_list = true;
                }
        }
        return 0;
}

int sums_list_end(struct sums *s)
{
        s->have_list = true;
        int r = s->llen ? list_line(s, s->line, s->llen) : 0;
        s->llen = 0;
        return r;
}

enum contents_check sums_verdict(const struct sums *s, const char **member)
{
        *member = NULL;
        if (!s->have_list)
                return CHECK_NO_LIST;
        if (s->bad_list)
                return CHECK_BAD_LIST;
        const struct entry *first_unlisted = NULL, *first_missing = NULL, *first_bad = NULL;
        for (size_t i = 0; i < s->n; i++) {
                const struct entry *e = &s->e[i];
                if (e->in_archive && e->list_line &&
                    (e->conflict || memcmp(e->md5, e->listed, 16)) &&
                    (!first_bad || e->order < first_bad->order))
                        first_bad = e;
                if (e->in_archive && !e->list_line &&
                    (!first_unlisted || e->order < first_unlisted->order))
                        first_unlisted = e;
                if (!e->in_archive && e->list_line &&
                    (!first_missing || e->list_line < first_missing->list_line))
                        first_missing = e;
        }
        const struct entry *e = first_bad        ? first_bad
                                : first_unlisted ? first_unlisted
                                                 : first_missing;
        if (e)
                *member = s->arena + e->name;
        return first_bad        ? CHECK_MISMATCH
               : first_unlisted ? CHECK_UNLISTED
               : first_missing  ? CHECK_MISSING
                                : CHECK_OK;
}
