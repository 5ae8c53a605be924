/* The plaintext's digests, computed while the bytes are hot: the SHA-256 of the whole
 * book (the journal's, S3's x-amz-content-sha256) and, with a part size, the SHA-256 of
 * each part (S3's per-part x-amz-checksum-sha256), so nothing is ever hashed twice. */
#ifndef QUIRE_ENGINE_DIGEST_H
#define QUIRE_ENGINE_DIGEST_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

struct digest {
        EVP_MD_CTX *whole, *part;
        uint64_t part_size; /* 0: no part digests */
        uint64_t len;       /* bytes hashed */
        uint8_t sha256[32];
        char sha256_hex[65];
        uint8_t (*parts)[32];
        unsigned nparts, parts_cap;
};

/* part_size 0: the whole digest only. Returns 0 or -ENOMEM. */
int digest_init(struct digest *d, uint64_t part_size);
void digest_destroy(struct digest *d);
void digest_reset(struct digest *d);
/* 0 or -ENOMEM (the parts table grows by doubling; a part is >= 5 MiB, so a 5 TiB book
 * needs at most 10,000 entries). */
int digest_update(struct digest *d, const uint8_t *p, size_t n);
/* Sets sha256, sha256_hex and the last (short or empty) part. 0 or -ENOMEM. */
int digest_final(struct digest *d);

#endif
