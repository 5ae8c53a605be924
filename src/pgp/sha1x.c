/* Interleaved SHA-1 for the S2K (see sha1x.h), written from FIPS 180-4 and Intel's
 * descriptions of SHA1RNDS4, SHA1NEXTE, SHA1MSG1 and SHA1MSG2.
 *
 * Register layout (Intel's): ABCD is one vector with A in the top dword; the E input of
 * a 4-round group rides in the top dword of that group's message vector W[4g..4g+3]
 * (W[4g] on top). The E of group g > 0 is ROL30 of A as group g-1 started, which
 * SHA1NEXTE adds to the message vector.
 *
 * The S2K input of a stream is unit (salt||passphrase, L bytes) repeated, so each of its
 * 64-byte blocks is 64 consecutive bytes of ext (unit repeated to L + 63 bytes) from
 * an offset below L that advances by 64 mod L per block: there are at most L distinct
 * blocks. Their message schedules (20 vectors each) are computed once into a table
 * indexed by offset, and the rounds then read them from there. That matters more than
 * the interleaving alone: measured on an Emerald Rapids core, SHA1MSG2 issues only
 * every ~4.5 cycles and SHA1RNDS4 every ~3, so with the schedule computed per block
 * two interleaved streams are bound by the SHA unit's throughput (~1.85 GB/s in all,
 * no gain over one stream's ~1.75 GB/s); without it, SHA1RNDS4 alone is the bound and two
 * streams run at ~3.5 GB/s. */
#include "pgp_int.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define SHA1X_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

static int forced_off;

void sha1x_force_off(bool off)
{
        __atomic_store_n(&forced_off, off, __ATOMIC_RELAXED);
}

/* ext, up to 15 bytes to align the table, and the table of 20 vectors per offset. */
size_t sha1x_work_size(size_t unit_len)
{
        return unit_len + 63 + 15 + unit_len * 20 * 16;
}

#ifdef SHA1X_X86

static bool cpu_has_sha(void)
{
        unsigned a, b, c, d;
        if (__get_cpuid_max(0, NULL) < 7 || !__get_cpuid(1, &a, &b, &c, &d))
                return false;
        bool ssse3 = c & (1u << 9), sse41 = c & (1u << 19);
        __cpuid_count(7, 0, a, b, c, d);
        return ssse3 && sse41 && (b & (1u << 29));
}

bool sha1x_available(void)
{
        /* 0 unknown, 1 no, 2 yes; every thread computes the same answer. */
        static int cached;
        int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
        if (!v) {
                v = cpu_has_sha() ? 2 : 1;
                __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
        }
        return v == 2 && !__atomic_load_n(&forced_off, __ATOMIC_RELAXED);
}

#define SHA_TARGET __attribute__((target("sha,sse4.1,ssse3")))
#define SHA_INLINE SHA_TARGET __attribute__((always_inline)) static inline

/* A stream's next block is the table's entry off (< len); off advances by step. */
struct cursor {
        size_t off, step, len;
};

/* W[0..79] of the 64 bytes at p, as the 20 vectors SHA1NEXTE/SHA1RNDS4 take. */
SHA_TARGET static void schedule(const uint8_t *p, __m128i *w)
{
        const __m128i bswap = _mm_set_epi64x(0x0001020304050607LL, 0x08090a0b0c0d0e0fLL);
        for (int i = 0; i < 4; i++)
                w[i] = _mm_shuffle_epi8(
                    _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * i)), bswap);
        for (int g = 4; g < 20; g++)
                w[g] = _mm_sha1msg2_epu32(
                    _mm_xor_si128(_mm_sha1msg1_epu32(w[g - 4], w[g - 3]), w[g - 2]), w[g - 1]);
}

#define LANES _Pragma("GCC unroll 4") for (unsigned s = 0; s < n; s++)

/* Rounds 4g..4g+3 of every lane with round function and constant f. */
#define GROUP(g, f)                                                                                \
        LANES                                                                                      \
        {                                                                                          \
                __m128i x = _mm_sha1nexte_epu32(prev[s], w[s][g]);                                 \
                prev[s] = abcd[s];                                                                 \
                abcd[s] = _mm_sha1rnds4_epu32(abcd[s], x, f);                                      \
        }

/* Compresses nblocks blocks into each of n lanes, the lanes' rounds interleaved; lane s
 * takes its schedules from tab as c[s] walks it. n is a constant after inlining, so the
 * lane loops unroll. */
SHA_INLINE void blocks(const unsigned n, __m128i *abcd, __m128i *e, struct cursor *c,
                       const __m128i *tab, uint64_t nblocks)
{
        for (uint64_t b = 0; b < nblocks; b++) {
                const __m128i *w[SHA1X_MAX_STREAMS];
                __m128i prev[SHA1X_MAX_STREAMS], abcd0[SHA1X_MAX_STREAMS], e0[SHA1X_MAX_STREAMS];
                LANES
                {
                        w[s] = tab + 20 * c[s].off;
                        c[s].off += c[s].step;
                        if (c[s].off >= c[s].len)
                                c[s].off -= c[s].len;
                        abcd0[s] = abcd[s];
                        e0[s] = e[s];
                        prev[s] = abcd[s];
                        abcd[s] = _mm_sha1rnds4_epu32(abcd[s], _mm_add_epi32(e[s], w[s][0]), 0);
                }
                GROUP(1, 0)
                GROUP(2, 0)
                GROUP(3, 0)
                GROUP(4, 0)
                GROUP(5, 1)
                GROUP(6, 1)
                GROUP(7, 1)
                GROUP(8, 1)
                GROUP(9, 1)
                GROUP(10, 2)
                GROUP(11, 2)
                GROUP(12, 2)
                GROUP(13, 2)
                GROUP(14, 2)
                GROUP(15, 3)
                GROUP(16, 3)
                GROUP(17, 3)
                GROUP(18, 3)
                GROUP(19, 3)
                LANES
                {
                        e[s] = _mm_sha1nexte_epu32(prev[s], e0[s]);
                        abcd[s] = _mm_add_epi32(abcd[s], abcd0[s]);
                }
        }
}

SHA_TARGET static void blocks1(__m128i *abcd, __m128i *e, struct cursor *c, const __m128i *tab,
                               uint64_t nblocks)
{
        blocks(1, abcd, e, c, tab, nblocks);
}

SHA_TARGET static void blocks2(__m128i *abcd, __m128i *e, struct cursor *c, const __m128i *tab,
                               uint64_t nblocks)
{
        blocks(2, abcd, e, c, tab, nblocks);
}

/* The nblocks blocks in buf; w receives their schedules (the caller wipes it). */
SHA_TARGET static void compress_buf(__m128i *abcd, __m128i *e, const uint8_t *buf, unsigned nblocks,
                                    __m128i *w)
{
        for (unsigned i = 0; i < nblocks; i++) {
                struct cursor c = {0, 0, 1};
                schedule(buf + 64 * i, w);
                blocks1(abcd, e, &c, w, 1);
        }
}

/* Stream s's byte at position p: s zero bytes, then unit repeated. */
static uint8_t stream_byte(const uint8_t *unit, size_t len, unsigned s, uint64_t p)
{
        return p < s ? 0 : unit[(p - s) % len];
}

/* Streams first .. first+n-1 (n is 1 or 2) into their digests. */
SHA_TARGET static void s2k_streams(const uint8_t *unit, const uint8_t *ext, size_t len,
                                   __m128i *tab, uint64_t count, unsigned first, unsigned n,
                                   uint8_t (*digests)[SHA1X_DIGEST])
{
        __m128i abcd[2], e[2], w[20];
        struct cursor c[2];
        uint64_t body[2]; /* blocks of each stream that come from the table */
        uint8_t buf[128];
        size_t period = len; /* len / gcd(len, 64): the distinct blocks of a stream */
        while (period % 2 == 0 && len / period < 64)
                period /= 2;
        for (unsigned k = 0; k < n; k++) {
                unsigned s = first + k; /* zero bytes in front */
                abcd[k] = _mm_set_epi32(0x67452301, (int)0xefcdab89, (int)0x98badcfe, 0x10325476);
                e[k] = _mm_set_epi32((int)0xc3d2e1f0, 0, 0, 0);
                body[k] = (s + count) / 64;
                c[k] = (struct cursor){0, 64 % len, len};
                /* The block holding the zero bytes goes alone, through buf. */
                if (s && body[k]) {
                        memset(buf, 0, s);
                        memcpy(buf + s, ext, 64 - s);
                        compress_buf(&abcd[k], &e[k], buf, 1, w);
                        c[k].off = (64 - s) % len;
                        body[k]--;
                }
                /* The schedules this stream will read: at most one period of them. */
                struct cursor t = c[k];
                for (uint64_t j = 0; j < body[k] && j < period; j++) {
                        schedule(ext + t.off, tab + 20 * t.off);
                        t.off += t.step;
                        if (t.off >= t.len)
                                t.off -= t.len;
                }
        }
        uint64_t both = n == 2 ? (body[0] < body[1] ? body[0] : body[1]) : 0;
        if (both)
                blocks2(abcd, e, c, tab, both);
        for (unsigned k = 0; k < n; k++) {
                unsigned s = first + k;
                blocks1(&abcd[k], &e[k], &c[k], tab, body[k] - both);
                /* The partial block and the padding: 0x80, zeros, the length in bits. */
                uint64_t total = s + count, at = total / 64 * 64;
                unsigned r = (unsigned)(total - at), i = 0;
                for (; i < r; i++)
                        buf[i] = stream_byte(unit, len, s, at + i);
                buf[i++] = 0x80;
                unsigned end = r < 56 ? 64 : 128;
                memset(buf + i, 0, end - i);
                for (int j = 0; j < 8; j++)
                        buf[end - 1 - j] = (uint8_t)((total * 8) >> (8 * j));
                compress_buf(&abcd[k], &e[k], buf, end / 64, w);
                const __m128i bswap = _mm_set_epi64x(0x0001020304050607LL, 0x08090a0b0c0d0e0fLL);
                _mm_storeu_si128((__m128i *)(void *)digests[s], _mm_shuffle_epi8(abcd[k], bswap));
                uint32_t h4 = (uint32_t)_mm_extract_epi32(e[k], 3);
                for (int j = 0; j < 4; j++)
                        digests[s][16 + j] = (uint8_t)(h4 >> (24 - 8 * j));
        }
        explicit_bzero(buf, sizeof buf);
        explicit_bzero(w, sizeof w);
}

int sha1x_s2k(const uint8_t *unit, size_t unit_len, uint64_t count, unsigned nstreams,
              uint8_t (*digests)[SHA1X_DIGEST], uint8_t *work, size_t work_len)
{
        if (!sha1x_available() || !unit_len || !nstreams || nstreams > SHA1X_MAX_STREAMS ||
            work_len < sha1x_work_size(unit_len))
                return -1;
        size_t ext_len = unit_len + 63;
        for (size_t i = 0; i < ext_len; i += unit_len)
                memcpy(work + i, unit, ext_len - i < unit_len ? ext_len - i : unit_len);
        __m128i *tab = (__m128i *)(void *)(work + ext_len + (-(uintptr_t)(work + ext_len) & 15));
        for (unsigned s = 0; s < nstreams; s += 2)
                s2k_streams(unit, work, unit_len, tab, count, s, nstreams - s < 2 ? 1 : 2, digests);
        return 0;
}

#else /* not x86 */

bool sha1x_available(void)
{
        return false;
}

int sha1x_s2k(const uint8_t *unit, size_t unit_len, uint64_t count, unsigned nstreams,
              uint8_t (*digests)[SHA1X_DIGEST], uint8_t *work, size_t work_len)
{
        return -1;
}

#endif
