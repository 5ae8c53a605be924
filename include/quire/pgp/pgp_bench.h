/* What `quire bench decrypt` and the fuzzer need of the decryptor beyond pgp.h: a message
 * built in memory, the OpenSSL ciphers behind OpenPGP's ids, and switches no production
 * caller may use. */
#ifndef QUIRE_PGP_BENCH_H
#define QUIRE_PGP_BENCH_H

#include "quire/pgp/pgp.h"

#include <openssl/evp.h>

/* An in-memory message: SKESK (iterated S2K, SHA-1, count 65536) + SEIPD {prefix,
 * literal data of `size` pseudo-random bytes, MDC}, what `gpg --symmetric` writes for an
 * already-compressed file. The SEIPD's ciphertext starts at p + body_off. */
struct pgp_bench_msg {
        uint8_t *p;
        size_t len, body_off;
        int cipher;
        const char *name; /* of the cipher, as gpg says it */
        unsigned blklen, keylen;
        uint8_t key[32]; /* the session key */
};

/* 0, or -1 when the cipher id is unknown to OpenSSL or memory runs out. */
int pgp_bench_build(struct pgp_bench_msg *m, int cipher, size_t size, const char *pass);
void pgp_bench_free(struct pgp_bench_msg *m);
/* The OpenSSL cipher for an OpenPGP id, ECB or (cfb) CFB; the caller frees it. */
EVP_CIPHER *pgp_bench_cipher(int cipher, bool cfb);
/* Turns the SHA-NI S2K path on or off, process-wide (to compare it with EVP's). */
void pgp_bench_sha_ni(bool on);
/* Turns the AES-NI CFB path, fused with the MDC's SHA-1 on one thread, on or off for keys
 * set up afterwards, process-wide (to compare it with the EVP path it stands in for). */
void pgp_bench_fused(bool on);
/* True when the CPU has what the fused path needs (AES-NI, SHA-NI, SSSE3, SSE4.1); turns
 * the path back on. */
bool pgp_bench_fused_available(void);

/* For the fuzzer only: caps the iterated S2K at max_bytes hashed (0 = no cap, the
 * default). Keys derived under a cap differ from OpenPGP's, so never use it elsewhere;
 * pgp_set_s2k_limit survives pgp_reset. */
void pgp_set_s2k_limit(struct pgp_dec *d, uint64_t max_bytes);
int pgp_key_derive_limited(struct pgp_key_job *job, const char *pass, size_t passlen,
                           uint64_t max_bytes);

#endif
