/* The kernels of cfbx.c, included there twice: X_K(name) names this copy's functions,
 * X_KTARGET is their target and X_AVX512 says how the SHA-1 message schedule is made.
 *
 * Words 16-31 always come from SHA1MSG1/SHA1MSG2. With X_AVX512, words 32-79 come from
 * the equivalent recurrence W[t] = ROL2(W[t-6] ^ W[t-16] ^ W[t-28] ^ W[t-32]), which has no
 * dependency inside a vector of four, in three AVX-512VL instructions (VPTERNLOGD,
 * VPALIGNR plus a XOR, VPROLD) on the vector ALUs: SHA1MSG2 shares the SHA unit with
 * SHA1RNDS4, whose chain is the bound, and taking most of the schedule off that unit
 * measured SHA-1 alone at 2.4 GB/s instead of 2.1, fused with AES-256 at 2.15 instead of
 * 1.7, on this project's Xeon. Nothing outside cfbx.c includes this. */

/* One 64-byte block at p into (abcd, e), and with it the round steps of naes AES blocks
 * x: AES round step r goes beside SHA-1 round group r, so the two chains are interleaved
 * in program order and the scheduler, which a run of SHA-1 uops waiting on their chain
 * would fill, always holds AES work that is ready. The schedule is made four words at a
 * time just ahead of the rounds that take it (w[g % 8] holds words 4g..4g+3), so it stays
 * in registers. */
X_KTARGET __attribute__((always_inline)) static inline void
X_K(sha_block)(__m128i *abcd, __m128i *e, const uint8_t *p, const unsigned naes, const unsigned nr,
               const __m128i *rk, __m128i *x)
{
        const __m128i bswap = _mm_set_epi64x(0x0001020304050607LL, 0x08090a0b0c0d0e0fLL);
        __m128i w[8], a = *abcd, a0 = *abcd, e0 = *e, prev = *abcd;
        _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++) w[i] =
            _mm_shuffle_epi8(load(p + 16 * i), bswap);
        aes_step(naes, nr, 0, rk, x);
        a = _mm_sha1rnds4_epu32(a, _mm_add_epi32(e0, w[0]), 0);
        _Pragma("GCC unroll 20") for (unsigned g = 1; g < 20; g++)
        {
                aes_step(naes, nr, g, rk, x);
                if (g >= 4 && !(X_AVX512 && g >= 8))
                        w[g % 8] = _mm_sha1msg2_epu32(
                            _mm_xor_si128(_mm_sha1msg1_epu32(w[(g + 4) % 8], w[(g + 5) % 8]),
                                          w[(g + 6) % 8]),
                            w[(g + 7) % 8]);
#if X_AVX512
                if (g >= 8)
                        w[g % 8] = _mm_rol_epi32(
                            _mm_xor_si128(_mm_ternarylogic_epi32(w[(g + 4) % 8], w[(g + 1) % 8],
                                                                 w[g % 8], 0x96),
                                          _mm_alignr_epi8(w[(g + 6) % 8], w[(g + 7) % 8], 8)),
                            2);
#endif
                __m128i t = _mm_sha1nexte_epu32(prev, w[g % 8]);
                prev = a;
                /* The round function's immediate: 0 for rounds 0-19, 1, 2, 3 after. */
                switch (g / 5) {
                case 0:
                        a = _mm_sha1rnds4_epu32(a, t, 0);
                        break;
                case 1:
                        a = _mm_sha1rnds4_epu32(a, t, 1);
                        break;
                case 2:
                        a = _mm_sha1rnds4_epu32(a, t, 2);
                        break;
                default:
                        a = _mm_sha1rnds4_epu32(a, t, 3);
                        break;
                }
        }
        *e = _mm_sha1nexte_epu32(prev, e0);
        *abcd = _mm_add_epi32(a, a0);
}

/* The loop (see the top of cfbx.c) for nr rounds, a constant after inlining. */
X_KTARGET __attribute__((always_inline)) static inline void
X_K(cfb_sha_n)(const unsigned nr, const struct aesx *k, const uint8_t *in, uint8_t *out,
               size_t nblk, uint8_t *ivb, uint32_t *h, const uint8_t *hs, size_t lead, size_t nsha)
{
        const __m128i *rk = (const __m128i *)(const void *)k->rk;
        __m128i iv = load(ivb), abcd = _mm_setzero_si128(), e = _mm_setzero_si128();
        size_t i = 0, j = 0;
        if (nsha)
                state_load(h, &abcd, &e);
        for (; i + 4 <= nblk; i += 4) {
                __m128i c[4], x[4];
                _mm_prefetch((const char *)(in + 16 * i + CFBX_PREFETCH), _MM_HINT_T0);
                _Pragma("GCC unroll 4") for (unsigned b = 0; b < 4; b++) c[b] =
                    load(in + 16 * (i + b));
                x[0] = iv;
                x[1] = c[0];
                x[2] = c[1];
                x[3] = c[2];
                /* Block j ends 64 (j + 1) - lead bytes into out: hashed once decrypted. */
                if (j < nsha && 64 * (j + 1) + CFBX_LAG <= 16 * i + lead) {
                        X_K(sha_block)(&abcd, &e, hs + 64 * j, 4, nr, rk, x);
                        j++;
                } else {
                        encrypt_n(4, nr, rk, x);
                }
                _Pragma("GCC unroll 4") for (unsigned b = 0; b < 4; b++)
                    store(out + 16 * (i + b), _mm_xor_si128(c[b], x[b]));
                iv = c[3];
        }
        for (; i < nblk; i++) {
                __m128i c = load(in + 16 * i), x = iv;
                encrypt_n(1, nr, rk, &x);
                store(out + 16 * i, _mm_xor_si128(c, x));
                iv = c;
        }
        for (; j < nsha; j++)
                X_K(sha_block)(&abcd, &e, hs + 64 * j, 0, nr, rk, NULL);
        store(ivb, iv);
        if (nsha)
                state_store(h, abcd, e);
}

/* cfbx_aes_cfb's work, hs the first block to hash (NULL when nsha is 0). */
X_KTARGET static void X_K(cfb_sha)(const struct aesx *k, const uint8_t *in, uint8_t *out,
                                   size_t nblk, uint8_t *iv, uint32_t *h, const uint8_t *hs,
                                   size_t lead, size_t nsha)
{
        if (k->rounds == 10)
                X_K(cfb_sha_n)(10, k, in, out, nblk, iv, h, hs, lead, nsha);
        else if (k->rounds == 12)
                X_K(cfb_sha_n)(12, k, in, out, nblk, iv, h, hs, lead, nsha);
        else
                X_K(cfb_sha_n)(14, k, in, out, nblk, iv, h, hs, lead, nsha);
}

X_KTARGET static void X_K(sha_blocks)(uint32_t *h, const uint8_t *p, size_t n)
{
        __m128i abcd, e;
        state_load(h, &abcd, &e);
        for (size_t i = 0; i < n; i++) {
                /* The MDC thread hashes what the other core just wrote: fetch it early. */
                _mm_prefetch((const char *)(p + 64 * i + 1024), _MM_HINT_T0);
                X_K(sha_block)(&abcd, &e, p + 64 * i, 0, 10, NULL, NULL);
        }
        state_store(h, abcd, e);
}
