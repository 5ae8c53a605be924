/* The decryptor's private header: its state and what its files share. One file a concern:
 *   dec.c     lifetime, errors, counters
 *   packet.c  packet framing (old and new headers, partial lengths) as a byte stream
 *   outer.c   the message's packets: symmetric-key and encrypted data (SEIPD) packets
 *   keys.c    session keys: S2K parameters, the candidate bound, deferred derivation,
 *             unwrapping, the quick check
 *   mdc.c     the decrypted stream: slices, MDC hold-back, SHA-1 (maybe on its thread)
 *   inner.c   the packets inside: compressed and literal data, plaintext to the sink
 *   algos.c   OpenPGP algorithm ids and OpenSSL fetches; s2k.c the string-to-key;
 *   sha1x.c   SHA-NI SHA-1 for the S2K; cfb.c OpenPGP CFB; cfbx.c (and cfbx_impl.h) its
 *             AES-NI loop, fused with the MDC's SHA-1; decomp.c ZIP/ZLIB/BZip2;
 *   bench.c   include/quire/pgp/pgp_bench.h
 * Nothing outside src/pgp/ includes this but the decryptor's own unit tests. */
#ifndef QUIRE_PGP_INT_H
#define QUIRE_PGP_INT_H

#include "quire/pgp/pgp.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#define PGP_MAX_KEY   32
#define PGP_MAX_BLOCK 16
/* Plaintext is produced a slice at a time so keystream, XOR, SHA-1 and the sink all work
 * on data still in L2. */
#define PGP_SLICE (128u << 10)
#define PGP_ZOUT  (128u << 10)
/* Body pieces shorter than this (partial lengths of a few bytes) are gathered into a
 * buffer of PGP_GATHER bytes before they are decrypted, inflated or written out, so the
 * cost per piece is a copy, not a cipher call, an inflate call or a write(2). */
#define PGP_SMALL     4096u
#define PGP_GATHER    (64u << 10)
#define PGP_MDC_LEN   22 /* 0xD3 0x14 + SHA-1: the last bytes of every SEIPD plaintext */
#define PGP_PASS_MAX  4096
#define PGP_SCRATCH   (64u << 10)
#define PGP_SKESK_MAX 128
#define PGP_QC_LEN    (PGP_MAX_BLOCK + 2)
/* Each key derived can be a candidate session key. */
#define PGP_MAX_CANDS PGP_MAX_DERIVE
#define PGP_N_CIPHERS 14
#define PGP_N_HASHES  12
/* Slices in flight between the decrypting thread and the MDC thread. */
#define PGP_N_SLOTS 8
/* A slot's headroom in front of its slice: the held-back tail (PGP_MDC_LEN) and the
 * bytes of a partial SHA-1 block before it (< 64) go there, so the slice is hashed as one
 * contiguous run of whole blocks. */
#define PGP_HEAD 128
#define PGP_SLOT (PGP_HEAD + PGP_SLICE)

/* ---- packet.c: one reader per nesting level turns bytes into header, body and end
 * events, whatever the chunking. */
enum { PGP_RD_NEED, PGP_RD_HDR, PGP_RD_BODY, PGP_RD_END };

struct pgp_rd {
        uint8_t state, tag, nlen, hlen;
        bool newfmt, partial, indet, cont;
        uint8_t len[5];
        uint64_t remain;
};

/* Consumes input (p, n) up to the next event: RD_NEED (all consumed), RD_HDR (r->tag
 * holds the new packet's tag), RD_BODY (body, blen: the next piece of its body), RD_END
 * (the packet ended) or -1 (a byte that is no packet header, the one before p). */
int pgp_rd_step(struct pgp_rd *r, const uint8_t **p, size_t *n, const uint8_t **body, size_t *blen);
/* Copies the current packet's body from (p, n) into dst, at most cap bytes, through
 * one-octet partial lengths of pieces under PGP_SMALL: the tight loop for a stream cut in
 * tiny pieces. Stops where pgp_rd_step must take over (an end, a longer header, a large
 * piece); returns the bytes copied. */
size_t pgp_rd_copy(struct pgp_rd *r, const uint8_t **p, size_t *n, uint8_t *dst, size_t cap);
/* At the end of the data around it: 0 between packets, 1 inside a packet whose length
 * is "until the end" (which now ends), -1 inside any other packet. */
int pgp_rd_eof(const struct pgp_rd *r);

/* ---- algos.c, s2k.c ---- */
struct pgp_cipher {
        uint8_t id;
        uint8_t keylen;
        uint8_t blklen;
        const char *name; /* as gpg names it, for messages */
        const char *evp;  /* OpenSSL ECB name, NULL when OpenSSL has none */
};

/* NULL for ids that are not ciphers at all (RFC 9580 9.3). */
const struct pgp_cipher *pgp_cipher_by_id(int id);
/* Fetches the ECB cipher (the caller frees it), loading OpenSSL's legacy provider the
 * first time a cipher is missing from the default one; NULL when OpenSSL has none. */
EVP_CIPHER *pgp_cipher_fetch(const struct pgp_cipher *c);
/* Hash name for an OpenPGP hash id (RFC 9580 9.5), NULL if unknown. */
const char *pgp_hash_name(int id);
/* Like pgp_cipher_fetch, for hashes. */
EVP_MD *pgp_md_fetch(int id);

struct pgp_s2k {
        uint8_t type; /* 0 simple, 1 salted, 3 iterated and salted */
        uint8_t hash;
        uint8_t salt[8];
        uint32_t count; /* bytes to hash, decoded */
};

/* Derives keylen bytes into key. scratch (scratch_len >= 2 * (8 + passlen)) is reused
 * for the repeated salt||passphrase so the iterated hash runs in large updates; limit
 * caps the iterated byte count (0 = no cap, which is OpenPGP). Returns 0 or -1. */
int pgp_s2k_derive(const struct pgp_s2k *s, const EVP_MD *md, EVP_MD_CTX *ctx, uint8_t *scratch,
                   size_t scratch_len, const uint8_t *pass, size_t passlen, uint8_t *key,
                   size_t keylen, uint64_t limit);

/* ---- sha1x.c: SHA-1 of the iterated S2K's hash streams on the x86 SHA extensions, the
 * streams' rounds interleaved so their dependency chains overlap. */
#define SHA1X_MAX_STREAMS 4
#define SHA1X_DIGEST      20

/* True when the CPU has SHA-NI, SSSE3 and SSE4.1 (cpuid, checked once) and the path has
 * not been turned off by sha1x_force_off. */
bool sha1x_available(void);
/* Turns the SHA-NI path off (true) or back on (false), process-wide; for tests. */
void sha1x_force_off(bool off);
/* Bytes of work sha1x_s2k needs for a unit of unit_len bytes: about 321 per unit byte
 * (the message schedules of the up to unit_len distinct blocks). */
size_t sha1x_work_size(size_t unit_len);
/* Digest s (0 <= s < nstreams) is the SHA-1 of s zero bytes followed by the first count
 * bytes of unit repeated without end, which is what RFC 9580 3.7.1.3 hashes for the
 * s-th 20 bytes of a key. work holds copies of unit and their message schedules
 * afterwards: the caller wipes it. Returns 0, or -1 (nothing computed) when
 * sha1x_available() is false, unit_len is 0, nstreams is out of range or
 * work_len < sha1x_work_size(unit_len). */
int sha1x_s2k(const uint8_t *unit, size_t unit_len, uint64_t count, unsigned nstreams,
              uint8_t (*digests)[SHA1X_DIGEST], uint8_t *work, size_t work_len);

/* ---- cfbx.c: AES-NI CFB fused with the MDC's SHA-1 on the SHA extensions. A lone
 * SHA-1 stream waits on its SHA1RNDS4 chain; CFB decryption has no chain, so one loop
 * doing both runs the AES rounds in the SHA chain's bubbles. */
#define AESX_MAX_ROUNDS 14

/* AES round keys for AES-NI encryption. */
struct aesx {
        _Alignas(16) uint8_t rk[16 * (AESX_MAX_ROUNDS + 1)];
        unsigned rounds;
};

/* SHA-1 of a stream fed 64-byte blocks at a time: h after len bytes, then blen bytes
 * waiting in buf for the rest of their block. */
struct sha1s {
        uint32_t h[5];
        uint64_t len;
        unsigned blen;
        uint8_t buf[64];
};

/* True when the CPU has AES-NI, SHA-NI, SSSE3 and SSE4.1 (cpuid, checked once) and the
 * path has not been turned off by cfbx_force_off. */
bool cfbx_available(void);
/* Turns the AES-NI path off (true) or back on (false), process-wide, for keys expanded
 * afterwards; for tests and `quire bench decrypt`. */
void cfbx_force_off(bool off);
/* Makes the kernels use SHA1MSG1/SHA1MSG2 for the whole schedule even where AVX-512VL
 * could take most of it (true), or not (false); process-wide, for tests. */
void cfbx_force_no_avx512(bool off);
/* 0, or -1 when cfbx_available() is false or keylen is not 16, 24 or 32. */
int cfbx_aes_init(struct aesx *k, const uint8_t *key, unsigned keylen);
/* out = E(in), one block. */
void cfbx_aes_encrypt(const struct aesx *k, const uint8_t *in, uint8_t *out);
/* OpenPGP CFB over nblk whole blocks of in into out (no overlap), iv the ciphertext block
 * before them (updated); meanwhile hashes into h the nsha 64-byte blocks that start lead
 * bytes before out, which must lie inside the blocks decrypted or before them (64 nsha
 * <= 16 nblk + lead) and be plaintext already where they lie before out. */
void cfbx_aes_cfb(const struct aesx *k, const uint8_t *in, uint8_t *out, size_t nblk, uint8_t *iv,
                  uint32_t *h, size_t lead, size_t nsha);
void cfbx_sha1_init(struct sha1s *s);
/* Hashes n bytes (needs cfbx_available()). */
void cfbx_sha1_update(struct sha1s *s, const uint8_t *p, size_t n);
/* Hashes the n <= 55 bytes at tail after the stream and writes the digest (20 bytes). */
void cfbx_sha1_final(struct sha1s *s, const uint8_t *tail, size_t n, uint8_t *digest);

/* ---- cfb.c: OpenPGP CFB without resynchronisation (what SEIPD and SKESK session keys
 * use), with a zero IV. The keystream comes from ECB over whole runs of ciphertext, so it
 * runs at the cipher's parallel speed instead of EVP's block-at-a-time CFB. */
/* Keystream bytes made per cipher call: a run that stays in L1 until it is XORed. */
#define CFB_RUN (16u << 10)

struct cfb {
        EVP_CIPHER_CTX *ecb;
        struct aesx ax;
        bool fast; /* an AES key on AES-NI: ax, not ecb, makes the keystream */
        unsigned bs;
        unsigned pos;              /* bytes of the current block already used */
        uint8_t iv[PGP_MAX_BLOCK]; /* ciphertext block the next keystream comes from */
        uint8_t ks[PGP_MAX_BLOCK]; /* keystream of the current partial block */
        uint8_t run[CFB_RUN];
};

int cfb_init(struct cfb *c, const EVP_CIPHER *ciph, const uint8_t *key, unsigned bs);
/* Forgets the key (both EVP's and the AES-NI round keys) and the keystream in hand. */
void cfb_wipe(struct cfb *c);
/* Decrypts n bytes of in to out (no overlap); any n, any split gives the same bytes. */
int cfb_decrypt(struct cfb *c, const uint8_t *in, uint8_t *out, size_t n);
/* cfb_decrypt, and (c->fast only) the nsha 64-byte blocks from lead bytes before out
 * into s->h in the same loop; they must end PGP_MDC_LEN bytes or more before out + n, so
 * they never wait on the tail block's keystream. */
int cfb_decrypt_hash(struct cfb *c, const uint8_t *in, uint8_t *out, size_t n, struct sha1s *s,
                     size_t lead, size_t nsha);
/* out = a ^ b over n bytes (out may be a or b, no other overlap), in wide vectors. */
void cfb_xor(uint8_t *out, const uint8_t *a, const uint8_t *b, size_t n);

/* ---- decomp.c: decompression of a compressed data packet (RFC 9580 5.6). The state is
 * allocated once by decomp_new and reused; bzip2 draws from a preallocated arena. */
struct decomp;
int decomp_new(struct decomp **out);
void decomp_free(struct decomp *z);
/* algo: 1 ZIP (raw deflate), 2 ZLIB, 3 BZip2. Returns 0 or -1. */
int decomp_start(struct decomp *z, int algo);
/* Decompresses in; *used gets the input consumed, *made the bytes written to out.
 * Returns 0 (more to come), 1 (stream end reached) or -1 with *why set. */
int decomp_step(struct decomp *z, const uint8_t *in, size_t len, size_t *used, uint8_t *out,
                size_t cap, size_t *made, const char **why);

/* ---- the decryptor ---- */
enum { PGP_K_NONE, PGP_K_SKIP, PGP_K_SKESK, PGP_K_SEIPD, PGP_K_COMP, PGP_K_LIT };

struct pgp_cand {
        uint8_t algo;
        uint8_t key[PGP_MAX_KEY];
};

/* Up to PGP_GATHER bytes of small pieces, held until the next large one, a full buffer
 * or a flush hands them to `take` in one run. */
struct pgp_dec;
typedef int (*pgp_take_fn)(struct pgp_dec *d, const uint8_t *p, size_t n);
struct pgp_gather {
        uint8_t *buf;
        size_t len;
};

/* Everything that belongs to one message; pgp_reset wipes it in one go. */
struct pgp_msg {
        int err, ierr, sink_errno;
        char detail[160], idetail[160];
        uint64_t in, out;
        size_t consumed; /* of the last pgp_feed's input */
        struct pgp_rd ro, ri, rz;
        int okind, ikind, zkind;
        bool any_packet, saw_pkesk, saw_skesk, seipd_ver, keyed, seipd_done;
        /* keys.c: the symmetric-key packet being read, and the one waiting for its key */
        uint8_t pkt[PGP_SKESK_MAX];
        size_t pktlen, esk_off;
        struct pgp_key_job want;
        bool want_key, asked;
        unsigned nskesk, nderive;
        struct pgp_cand cand[PGP_MAX_CANDS];
        int ncand;
        uint8_t qc[PGP_QC_LEN];
        size_t qclen;
        /* mdc.c. own_sha: the MDC's SHA-1 is sha (cfbx.c), not EVP's; fused: it runs in
         * CFB's loop */
        bool own_sha, fused;
        struct sha1s sha;
        size_t prefix_left, holdlen;
        uint8_t hold[PGP_MDC_LEN];
        /* inner.c */
        int comp_algo; /* -1 until the packet's first byte arrives */
        bool comp_done, lit_seen;
        uint32_t lit_hpos, lit_hlen;
};

/* The optional MDC thread: SHA-1 is the slowest stage, so a lone stream can hash on a
 * second core while the first decrypts. Each slice is one queue entry (maybe empty); a
 * slot is rewritten only once its entry has been hashed. */
struct pgp_hasher {
        pthread_t th;
        pthread_mutex_t mu;
        pthread_cond_t work, done;
        struct {
                const uint8_t *p;
                size_t n;
        } q[PGP_N_SLOTS];
        uint64_t head, tail;
        uint64_t wake_at; /* signal `done` once this few slices are left to hash */
        bool on, quit, failed;
        const uint8_t *pend;
        size_t pend_n;
};

struct pgp_dec {
        uint8_t *ptbuf; /* PGP_N_SLOTS slots: PGP_HEAD of headroom, then PGP_SLICE */
        uint8_t *zout;
        /* small pieces of ciphertext (outer.c), compressed data and plaintext (inner.c) */
        struct pgp_gather gc, gz, go;
        uint8_t *scratch;
        struct decomp *z;
        struct cfb cfb;
        EVP_MD_CTX *mdc, *s2k;
        EVP_MD *sha1;
        EVP_CIPHER *ciph[PGP_N_CIPHERS];
        EVP_MD *md[PGP_N_HASHES];
        uint64_t s2k_limit;
        bool defer_keys;
        pgp_sink_fn sink;
        void *sink_ctx;
        uint8_t pass[PGP_PASS_MAX];
        size_t passlen;
        struct pgp_hasher h;
        struct pgp_msg m;
        struct pgp_key_job offer; /* the last key offered or derived, for this message */
};

/* dec.c: records the message's first error (code and a one-line reason) and returns it. */
__attribute__((format(printf, 3, 4))) int pgp_fail(struct pgp_dec *d, int code, const char *fmt,
                                                   ...);
/* Errors inside the decrypted data wait for the MDC: if the data was tampered with, that
 * is the reason to give, not the garbage it decrypted to. Returns code. */
__attribute__((format(printf, 3, 4))) int pgp_inner_fail(struct pgp_dec *d, int code,
                                                         const char *fmt, ...);
/* A piece of PGP_SMALL bytes or more goes to take at once, after what was gathered. */
int pgp_gather_put(struct pgp_dec *d, struct pgp_gather *g, const uint8_t *p, size_t n,
                   pgp_take_fn take);
int pgp_gather_flush(struct pgp_dec *d, struct pgp_gather *g, pgp_take_fn take);
/* After a small piece went into g: the packet's next small pieces follow it there, read
 * by pgp_rd_copy from (p, n). */
int pgp_gather_more(struct pgp_dec *d, struct pgp_gather *g, pgp_take_fn take, struct pgp_rd *r,
                    const uint8_t **p, size_t *n);
EVP_CIPHER *pgp_cipher_get(struct pgp_dec *d, const struct pgp_cipher *ci);
EVP_MD *pgp_md_get(struct pgp_dec *d, int id);

/* outer.c: the end of every packet of the message and of the message itself. */
int pgp_outer_end(struct pgp_dec *d);

/* keys.c. pgp_skesk_end: a symmetric-key packet (in m->pkt) is complete; 0, PGP_NEEDKEY
 * or an error. pgp_key_resume: the same once more after PGP_NEEDKEY. pgp_keys_choose:
 * picks the candidate the quick check (m->qc) accepts and starts CFB and the MDC. */
int pgp_skesk_end(struct pgp_dec *d);
int pgp_key_resume(struct pgp_dec *d);
int pgp_keys_choose(struct pgp_dec *d);

/* mdc.c. pgp_mdc_decrypt: decrypts n bytes of the SEIPD body after the quick check and
 * passes the plaintext on, all but the last PGP_MDC_LEN bytes, which may be the MDC.
 * pgp_mdc_check: at the end of the packet, 0 when the MDC matches. pgp_mdc_sync: waits
 * until the MDC thread has hashed everything queued; 0 or -1 when hashing failed. */
int pgp_mdc_begin(struct pgp_dec *d);
int pgp_mdc_decrypt(struct pgp_dec *d, const uint8_t *c, size_t n);
int pgp_mdc_check(struct pgp_dec *d);
int pgp_mdc_sync(struct pgp_dec *d);
void pgp_mdc_thread_stop(struct pgp_dec *d);

/* inner.c: the decrypted packets after the prefix, and their end; pgp_inner_end also
 * writes out the plaintext still gathered. */
int pgp_inner_feed(struct pgp_dec *d, const uint8_t *p, size_t n);
int pgp_inner_end(struct pgp_dec *d);

#endif
