/* Internals shared by the decryptor's files (pgp.c, pgp_s2k.c, cfb.c, pgp_inflate.c);
 * nothing outside src/pgp*.c and src/cfb.c includes this. */
#ifndef QUIRE_PGP_INT_H
#define QUIRE_PGP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <bzlib.h>
#include <openssl/evp.h>
#include <zlib.h>

#define PGP_MAX_KEY   32
#define PGP_MAX_BLOCK 16

/* OpenPGP symmetric algorithm ids (RFC 4880 9.2). */
struct pgp_cipher {
        uint8_t id;
        uint8_t keylen;
        uint8_t blklen;
        const char *name; /* as gpg names it, for messages */
        const char *evp;  /* OpenSSL ECB name, NULL when OpenSSL has none */
};

/* NULL for ids that are not ciphers at all. */
const struct pgp_cipher *pgp_cipher_by_id(int id);
/* Fetches the ECB cipher (the caller frees it), loading OpenSSL's legacy provider the
 * first time a cipher is missing from the default one; NULL when OpenSSL has none. */
EVP_CIPHER *pgp_cipher_fetch(const struct pgp_cipher *c);

/* Hash name for an OpenPGP hash id (RFC 4880 9.4), NULL if unknown. */
const char *pgp_hash_name(int id);
/* Like pgp_cipher_fetch, for hashes. */
EVP_MD *pgp_md_fetch(int id);

struct pgp_s2k {
        uint8_t type; /* 0 simple, 1 salted, 3 iterated and salted */
        uint8_t hash;
        uint8_t salt[8];
        uint32_t count; /* bytes to hash, decoded */
};

/* Derives keylen bytes into key. scratch (scratch_len >= 8 + passlen) is reused for
 * the repeated salt||passphrase so the iterated hash runs in large updates; limit caps
 * the iterated byte count (0 = no cap, which is OpenPGP). Returns 0 or -1. */
int pgp_s2k_derive(const struct pgp_s2k *s, const EVP_MD *md, EVP_MD_CTX *ctx, uint8_t *scratch,
                   size_t scratch_len, const uint8_t *pass, size_t passlen, uint8_t *key,
                   size_t keylen, uint64_t limit);

/* OpenPGP CFB without resynchronisation (what SEIPD and SKESK session keys use), with a
 * zero IV. The keystream comes from ECB over whole runs of ciphertext, so it runs at the
 * cipher's parallel speed instead of EVP's block-at-a-time CFB. */
struct cfb {
        EVP_CIPHER_CTX *ecb;
        unsigned bs;
        unsigned pos;              /* bytes of the current block already used */
        uint8_t iv[PGP_MAX_BLOCK]; /* ciphertext block the next keystream comes from */
        uint8_t ks[PGP_MAX_BLOCK]; /* keystream of the current partial block */
};

int cfb_init(struct cfb *c, const EVP_CIPHER *ciph, const uint8_t *key, unsigned bs);
/* Decrypts n bytes of in to out (no overlap); any n, any split gives the same bytes. */
int cfb_decrypt(struct cfb *c, const uint8_t *in, uint8_t *out, size_t n);
/* dst ^= src over n bytes, written so the compiler emits wide vector code. */
void xor_into(uint8_t *restrict dst, const uint8_t *restrict src, size_t n);

/* Decompression of a compressed data packet (RFC 4880 5.6). The state is allocated once
 * by pz_new and reused; bzip2 draws from a preallocated arena since it has no reset. */
struct pz;
int pz_new(struct pz **out);
void pz_free(struct pz *z);
/* algo: 1 ZIP (raw deflate), 2 ZLIB, 3 BZip2. Returns 0 or -1. */
int pz_start(struct pz *z, int algo);
/* Decompresses in; *used gets the input consumed, *made the bytes written to out.
 * Returns 0 (more to come), 1 (stream end reached) or -1 with *why set. */
int pz_step(struct pz *z, const uint8_t *in, size_t len, size_t *used, uint8_t *out, size_t cap,
            size_t *made, const char **why);

#endif
