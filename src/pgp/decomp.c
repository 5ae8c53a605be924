/* Decompression of compressed data packets: ZIP (raw deflate), ZLIB and BZip2. */
#include "pgp_int.h"

#include <stdlib.h>
#include <string.h>

#include <bzlib.h>
#include <zlib.h>

/* bzip2 has no reset: every stream is BZ2_bzDecompressInit..End, which allocates up to
 * 3.7 MB (900k blocks). A bump arena, allocated once and rewound per stream, keeps that
 * off the per-message path; its pages are only touched when a message uses BZip2. */
#define BZ_ARENA (4u << 20)

struct decomp {
        int algo;
        bool zinit, bzinit;
        z_stream zs;
        bz_stream bz;
        uint8_t *arena;
        size_t arena_used;
};

static void *bz_alloc(void *opaque, int items, int size)
{
        struct decomp *z = opaque;
        size_t n = ((size_t)items * (size_t)size + 15) & ~(size_t)15;
        if (n > BZ_ARENA - z->arena_used)
                return NULL;
        void *p = z->arena + z->arena_used;
        z->arena_used += n;
        return p;
}

static void bz_free(void *opaque, void *p)
{
}

int decomp_new(struct decomp **out)
{
        struct decomp *z = calloc(1, sizeof *z);
        if (!z)
                return -1;
        z->arena = malloc(BZ_ARENA);
        /* Window bits 15 fit both raw deflate and zlib, so inflateReset2 switches between
         * them without freeing the window. */
        if (!z->arena || inflateInit2(&z->zs, 15) != Z_OK) {
                free(z->arena);
                free(z);
                return -1;
        }
        z->zinit = true;
        *out = z;
        return 0;
}

static void bz_end(struct decomp *z)
{
        if (z->bzinit)
                BZ2_bzDecompressEnd(&z->bz);
        z->bzinit = false;
        z->arena_used = 0;
}

void decomp_free(struct decomp *z)
{
        if (!z)
                return;
        bz_end(z);
        if (z->zinit)
                inflateEnd(&z->zs);
        free(z->arena);
        free(z);
}

int decomp_start(struct decomp *z, int algo)
{
        bz_end(z);
        z->algo = algo;
        if (algo == 1 || algo == 2)
                return inflateReset2(&z->zs, algo == 1 ? -15 : 15) == Z_OK ? 0 : -1;
        if (algo != 3)
                return -1;
        memset(&z->bz, 0, sizeof z->bz);
        z->bz.bzalloc = bz_alloc;
        z->bz.bzfree = bz_free;
        z->bz.opaque = z;
        if (BZ2_bzDecompressInit(&z->bz, 0, 0) != BZ_OK)
                return -1;
        z->bzinit = true;
        return 0;
}

static int step_zlib(struct decomp *z, const uint8_t *in, size_t len, size_t *used, uint8_t *out,
                     size_t cap, size_t *made, const char **why)
{
        z->zs.next_in = (Bytef *)in;
        z->zs.avail_in = (uInt)len;
        z->zs.next_out = out;
        z->zs.avail_out = (uInt)cap;
        int r = inflate(&z->zs, Z_NO_FLUSH);
        *used = len - z->zs.avail_in;
        *made = cap - z->zs.avail_out;
        if (r == Z_STREAM_END)
                return 1;
        if (r == Z_OK || r == Z_BUF_ERROR)
                return 0;
        *why = z->zs.msg ? z->zs.msg : "inflate failed";
        return -1;
}

static int step_bzip2(struct decomp *z, const uint8_t *in, size_t len, size_t *used, uint8_t *out,
                      size_t cap, size_t *made, const char **why)
{
        z->bz.next_in = (char *)in;
        z->bz.avail_in = (unsigned)len;
        z->bz.next_out = (char *)out;
        z->bz.avail_out = (unsigned)cap;
        int r = BZ2_bzDecompress(&z->bz);
        *used = len - z->bz.avail_in;
        *made = cap - z->bz.avail_out;
        if (r == BZ_STREAM_END)
                return 1;
        if (r == BZ_OK)
                return 0;
        *why = r == BZ_MEM_ERROR ? "bzip2 block too large" : "bzip2 data error";
        return -1;
}

int decomp_step(struct decomp *z, const uint8_t *in, size_t len, size_t *used, uint8_t *out,
                size_t cap, size_t *made, const char **why)
{
        if (z->algo == 3)
                return step_bzip2(z, in, len, used, out, cap, made, why);
        return step_zlib(z, in, len, used, out, cap, made, why);
}
