/* Open addressing over 64-bit hashes, linear probing, at most three quarters full. */
#include "quire/io/grin_set.h"

#include <errno.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#define INITIAL_SLOTS 1024

struct grin_set {
        uint64_t *slot; /* 0 is an empty slot; no hash is 0 */
        uint64_t mask, count, max;
        uint64_t seed;
};

static uint64_t mix(uint64_t x)
{
        x ^= x >> 30;
        x *= 0xbf58476d1ce4e5b9ULL;
        x ^= x >> 27;
        x *= 0x94d049bb133111ebULL;
        return x ^ (x >> 31);
}

/* FNV-1a over the bytes, started from the seed and finished by splitmix64's mixer. */
static uint64_t hash(const struct grin_set *s, const char *b, size_t n)
{
        uint64_t h = 0xcbf29ce484222325ULL ^ s->seed;
        for (size_t i = 0; i < n; i++) {
                h ^= (unsigned char)b[i];
                h *= 0x100000001b3ULL;
        }
        h = mix(h ^ n);
        return h ? h : 1;
}

struct grin_set *grin_set_new(uint64_t max)
{
        struct grin_set *s = calloc(1, sizeof *s);
        if (!s)
                return NULL;
        s->slot = calloc(INITIAL_SLOTS, sizeof *s->slot);
        if (!s->slot || RAND_bytes((unsigned char *)&s->seed, sizeof s->seed) != 1) {
                free(s->slot);
                free(s);
                return NULL;
        }
        s->mask = INITIAL_SLOTS - 1;
        s->max = max;
        return s;
}

void grin_set_free(struct grin_set *s)
{
        if (!s)
                return;
        free(s->slot);
        free(s);
}

static void place(uint64_t *slot, uint64_t mask, uint64_t h)
{
        uint64_t i = h & mask;
        while (slot[i])
                i = (i + 1) & mask;
        slot[i] = h;
}

static int grow(struct grin_set *s)
{
        uint64_t n = (s->mask + 1) * 2;
        uint64_t *slot = calloc(n, sizeof *slot);
        if (!slot)
                return -ENOMEM;
        for (uint64_t i = 0; i <= s->mask; i++)
                if (s->slot[i])
                        place(slot, n - 1, s->slot[i]);
        free(s->slot);
        s->slot = slot;
        s->mask = n - 1;
        return 0;
}

int grin_set_add(struct grin_set *s, const char *barcode, size_t len)
{
        uint64_t h = hash(s, barcode, len), i = h & s->mask;
        for (; s->slot[i]; i = (i + 1) & s->mask)
                if (s->slot[i] == h)
                        return 0;
        if (s->count >= s->max)
                return -ENOSPC;
        if ((s->count + 1) * 4 > (s->mask + 1) * 3) {
                if (grow(s) < 0)
                        return -ENOMEM;
                place(s->slot, s->mask, h);
        } else {
                s->slot[i] = h;
        }
        s->count++;
        return 1;
}

bool grin_set_has(const struct grin_set *s, const char *barcode, size_t len)
{
        uint64_t h = hash(s, barcode, len);
        for (uint64_t i = h & s->mask; s->slot[i]; i = (i + 1) & s->mask)
                if (s->slot[i] == h)
                        return true;
        return false;
}

uint64_t grin_set_count(const struct grin_set *s)
{
        return s->count;
}

size_t grin_set_bytes(const struct grin_set *s)
{
        return (size_t)(s->mask + 1) * sizeof *s->slot;
}
