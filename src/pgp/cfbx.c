/* AES-NI CFB decryption fused with the MDC's SHA-1 on the SHA extensions (see pgp_int.h).
 *
 * Why fused: one SHA-1 stream is bound by the latency of its SHA1RNDS4 chain (20 of them
 * per 64-byte block, each waiting for the one before): measured 2.1 GB/s on this
 * project's Xeon, where OpenSSL's SHA-1 gets the same, with the AES units idle all along.
 * OpenPGP CFB decryption has no chain at all (each keystream block is E(the ciphertext
 * block before), which is in hand), so a loop that decrypts 64 bytes and hashes 64 bytes
 * a turn gives the out-of-order core independent AES rounds to run in the SHA chain's
 * bubbles, on other ports: the decryption comes nearly free. The plaintext a turn hashes
 * was decrypted a turn or more before, so its loads never wait on a store in flight.
 *
 * The round keys come from FIPS 197's key expansion on 32-bit words, with SubWord taken
 * from AESKEYGENASSIST; the SHA-1 rounds use the register layout sha1x.c describes. */
#include "pgp_int.h"

#include <assert.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define CFBX_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

static const uint32_t sha1_iv[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};

static int forced_off, forced_no512;

void cfbx_force_off(bool off)
{
        __atomic_store_n(&forced_off, off, __ATOMIC_RELAXED);
}

void cfbx_force_no_avx512(bool off)
{
        __atomic_store_n(&forced_no512, off, __ATOMIC_RELAXED);
}

void cfbx_sha1_init(struct sha1s *s)
{
        memcpy(s->h, sha1_iv, sizeof s->h);
        s->len = 0;
        s->blen = 0;
}

#ifdef CFBX_X86

static bool cpu_has_aes_sha(void)
{
        unsigned a, b, c, d;
        if (__get_cpuid_max(0, NULL) < 7 || !__get_cpuid(1, &a, &b, &c, &d))
                return false;
        bool ssse3 = c & (1u << 9), sse41 = c & (1u << 19), aes = c & (1u << 25);
        __cpuid_count(7, 0, a, b, c, d);
        return ssse3 && sse41 && aes && (b & (1u << 29));
}

/* AVX-512F and VL, and an OS that saves their registers (XCR0: SSE, AVX, opmask, ZMM). */
static bool cpu_has_avx512vl(void)
{
        unsigned a, b, c, d;
        if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27)))
                return false;
        unsigned lo, hi;
        __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        if ((lo & 0xe6) != 0xe6)
                return false;
        __cpuid_count(7, 0, a, b, c, d);
        return (b & (1u << 16)) && (b & (1u << 31));
}

bool cfbx_available(void)
{
        /* 0 unknown, 1 no, 2 yes; every thread computes the same answer. */
        static int cached;
        int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
        if (!v) {
                v = cpu_has_aes_sha() ? 2 : 1;
                __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
        }
        return v == 2 && !__atomic_load_n(&forced_off, __ATOMIC_RELAXED);
}

#define X_TARGET __attribute__((target("aes,sha,sse4.1,ssse3")))
#define X_INLINE X_TARGET __attribute__((always_inline)) static inline

/* AESKEYGENASSIST's first dword is SubWord of its second. */
X_TARGET static uint32_t sub_word(uint32_t w)
{
        return (uint32_t)_mm_cvtsi128_si32(
            _mm_aeskeygenassist_si128(_mm_set_epi32(0, 0, (int)w, 0), 0));
}

int cfbx_aes_init(struct aesx *k, const uint8_t *key, unsigned keylen)
{
        if (!cfbx_available() || (keylen != 16 && keylen != 24 && keylen != 32))
                return -1;
        unsigned nk = keylen / 4, nr = nk + 6;
        /* Words as x86 loads them: byte 0 of a word is its low byte, so RotWord is a
         * right rotation by 8 and Rcon goes into the low byte. */
        uint32_t w[4 * (AESX_MAX_ROUNDS + 1)], rcon = 1;
        memcpy(w, key, keylen);
        for (unsigned i = nk; i < 4 * (nr + 1); i++) {
                uint32_t t = w[i - 1];
                if (i % nk == 0) {
                        t = sub_word(t);
                        t = ((t >> 8) | (t << 24)) ^ rcon;
                        rcon = (rcon << 1) ^ (rcon & 0x80 ? 0x11b : 0);
                } else if (nk > 6 && i % nk == 4) {
                        t = sub_word(t);
                }
                w[i] = w[i - nk] ^ t;
        }
        memcpy(k->rk, w, 16 * (nr + 1));
        k->rounds = nr;
        explicit_bzero(w, sizeof w);
        return 0;
}

X_INLINE __m128i load(const uint8_t *p)
{
        return _mm_loadu_si128((const __m128i *)(const void *)p);
}

X_INLINE void store(uint8_t *p, __m128i x)
{
        _mm_storeu_si128((__m128i *)(void *)p, x);
}

/* n blocks (n a constant after inlining) through nr rounds side by side. */
X_INLINE void encrypt_n(const unsigned n, const unsigned nr, const __m128i *rk, __m128i *x)
{
        _Pragma("GCC unroll 8") for (unsigned j = 0; j < n; j++) x[j] = _mm_xor_si128(x[j], rk[0]);
        _Pragma("GCC unroll 14") for (unsigned r = 1; r < nr; r++)
        {
                __m128i k = rk[r];
                _Pragma("GCC unroll 8") for (unsigned j = 0; j < n; j++) x[j] =
                    _mm_aesenc_si128(x[j], k);
        }
        _Pragma("GCC unroll 8") for (unsigned j = 0; j < n; j++) x[j] =
            _mm_aesenclast_si128(x[j], rk[nr]);
}

/* Round step r of nr (a constant after inlining) on n blocks: the key whitening, a full
 * round or the last one. */
X_INLINE void aes_step(const unsigned n, const unsigned nr, const unsigned r, const __m128i *rk,
                       __m128i *x)
{
        _Pragma("GCC unroll 8") for (unsigned j = 0; j < n; j++)
        {
                if (r == 0)
                        x[j] = _mm_xor_si128(x[j], rk[0]);
                else if (r < nr)
                        x[j] = _mm_aesenc_si128(x[j], rk[r]);
                else if (r == nr)
                        x[j] = _mm_aesenclast_si128(x[j], rk[nr]);
        }
}

X_INLINE void state_load(const uint32_t h[5], __m128i *abcd, __m128i *e)
{
        *abcd = _mm_set_epi32((int)h[0], (int)h[1], (int)h[2], (int)h[3]);
        *e = _mm_set_epi32((int)h[4], 0, 0, 0);
}

X_INLINE void state_store(uint32_t h[5], __m128i abcd, __m128i e)
{
        h[0] = (uint32_t)_mm_extract_epi32(abcd, 3);
        h[1] = (uint32_t)_mm_extract_epi32(abcd, 2);
        h[2] = (uint32_t)_mm_extract_epi32(abcd, 1);
        h[3] = (uint32_t)_mm_extract_epi32(abcd, 0);
        h[4] = (uint32_t)_mm_extract_epi32(e, 3);
}

#ifndef CFBX_PREFETCH
#define CFBX_PREFETCH 4096
#endif

/* Hash block j (at hs + 64 j) once the plaintext is decrypted this far past its end. */
#define CFBX_LAG 64

/* The kernels twice: for SHA-NI alone, and with the message schedule's later words on
 * AVX-512VL (cfbx_impl.h says why). */
#define X_KTARGET X_TARGET
#define X_K(name) name##_ni
#define X_AVX512  0
#include "cfbx_impl.h"
#undef X_KTARGET
#undef X_K
#undef X_AVX512
#define X_KTARGET __attribute__((target("aes,sha,sse4.1,ssse3,avx512f,avx512vl")))
#define X_K(name) name##_512
#define X_AVX512  1
#include "cfbx_impl.h"

static bool use_512(void)
{
        static int cached; /* 0 unknown, 1 no, 2 yes */
        int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
        if (!v) {
                v = cpu_has_avx512vl() ? 2 : 1;
                __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
        }
        return v == 2 && !__atomic_load_n(&forced_no512, __ATOMIC_RELAXED);
}

void cfbx_aes_cfb(const struct aesx *k, const uint8_t *in, uint8_t *out, size_t nblk, uint8_t *iv,
                  uint32_t *h, size_t lead, size_t nsha)
{
        /* The blocks hashed lie before the end of the blocks decrypted. */
        assert(!nsha || 64 * nsha <= 16 * nblk + lead);
        const uint8_t *hs = nsha ? out - lead : NULL;
        if (use_512())
                cfb_sha_512(k, in, out, nblk, iv, h, hs, lead, nsha);
        else
                cfb_sha_ni(k, in, out, nblk, iv, h, hs, lead, nsha);
}

X_TARGET void cfbx_aes_encrypt(const struct aesx *k, const uint8_t *in, uint8_t *out)
{
        const __m128i *rk = (const __m128i *)(const void *)k->rk;
        __m128i x = _mm_xor_si128(load(in), rk[0]);
        for (unsigned r = 1; r < k->rounds; r++)
                x = _mm_aesenc_si128(x, rk[r]);
        store(out, _mm_aesenclast_si128(x, rk[k->rounds]));
}

static void sha_blocks(uint32_t *h, const uint8_t *p, size_t n)
{
        if (use_512())
                sha_blocks_512(h, p, n);
        else
                sha_blocks_ni(h, p, n);
}

#else /* not x86 */

bool cfbx_available(void)
{
        return false;
}

int cfbx_aes_init(struct aesx *k, const uint8_t *key, unsigned keylen)
{
        return -1;
}

void cfbx_aes_cfb(const struct aesx *k, const uint8_t *in, uint8_t *out, size_t nblk, uint8_t *iv,
                  uint32_t *h, size_t lead, size_t nsha)
{
        assert(0 && "cfbx_aes_cfb without cfbx_aes_init");
}

void cfbx_aes_encrypt(const struct aesx *k, const uint8_t *in, uint8_t *out)
{
        assert(0 && "cfbx_aes_encrypt without cfbx_aes_init");
}

static void sha_blocks(uint32_t *h, const uint8_t *p, size_t n)
{
        assert(0 && "sha1s without cfbx_available");
}

#endif

void cfbx_sha1_update(struct sha1s *s, const uint8_t *p, size_t n)
{
        if (s->blen) {
                size_t k = 64 - s->blen < n ? 64 - s->blen : n;
                memcpy(s->buf + s->blen, p, k);
                s->blen += (unsigned)k;
                p += k;
                n -= k;
                if (s->blen < 64)
                        return;
                sha_blocks(s->h, s->buf, 1);
                s->len += 64;
                s->blen = 0;
        }
        size_t whole = n / 64;
        if (whole)
                sha_blocks(s->h, p, whole);
        s->len += 64 * whole;
        s->blen = (unsigned)(n % 64);
        memcpy(s->buf, p + 64 * whole, s->blen);
}

void cfbx_sha1_final(struct sha1s *s, const uint8_t *tail, size_t n, uint8_t *digest)
{
        uint8_t b[128];
        assert(s->blen < 64 && n <= 64 - 9);
        memcpy(b, s->buf, s->blen);
        if (n)
                memcpy(b + s->blen, tail, n);
        size_t r = s->blen + n, end = r < 56 ? 64 : 128;
        uint64_t bits = (s->len + r) * 8;
        b[r] = 0x80;
        memset(b + r + 1, 0, end - r - 1);
        for (int i = 0; i < 8; i++)
                b[end - 1 - i] = (uint8_t)(bits >> (8 * i));
        sha_blocks(s->h, b, end / 64);
        for (int i = 0; i < 20; i++)
                digest[i] = (uint8_t)(s->h[i / 4] >> (24 - 8 * (i % 4)));
        explicit_bzero(b, sizeof b);
}
