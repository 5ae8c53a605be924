/* Streaming decryptor for OpenPGP messages made by `gpg --symmetric`
 * (RFC 4880 / RFC 9580: v4 SKESK + SEIPD v1 with MDC, optional compression).
 *
 * Usage: pgp_new() once per slot (allocates everything the decryptor will ever need);
 * for each message pgp_reset(), then pgp_feed() with ciphertext in any chunking, then
 * pgp_finish(). Literal-data bytes go to the sink as they are produced; they are NOT
 * authenticated until pgp_finish() returns 0, so a caller must stage them and publish
 * only after that. pgp_reset() may be called at any time to start over (a retry).
 * Functions return 0 or a negative PGP_E* code; pgp_detail() gives a one-line reason
 * that names what was wrong (never the passphrase or key material). */
#ifndef QUIRE_PGP_H
#define QUIRE_PGP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
        PGP_EBADPASS = -1000, /* session key quick check failed: wrong passphrase */
        PGP_EMDC,             /* modification detection code mismatch: tampered data */
        PGP_ETRUNC,           /* input ended inside a packet */
        PGP_ENOMDC,           /* symmetrically encrypted data without integrity (tag 9) */
        PGP_EPUBKEY,          /* message is encrypted to a public key only */
        PGP_ENOTPGP,          /* input is not an OpenPGP message */
        PGP_EUNSUPPORTED,     /* algorithm or packet version quire does not implement */
        PGP_ECORRUPT,         /* malformed packet or compressed stream */
        PGP_ESINK,            /* the sink returned an error (pgp_sink_errno: its positive errno) */
        PGP_ENOMEM,
};

/* Receives plaintext; returns 0, or a negative errno to stop decryption. */
typedef int (*pgp_sink_fn)(void *ctx, const uint8_t *buf, size_t len);

struct pgp_dec;

int pgp_new(struct pgp_dec **out);
void pgp_free(struct pgp_dec *d);

/* Starts a new message. The passphrase is copied into the decryptor and wiped by the
 * next reset or free. */
void pgp_reset(struct pgp_dec *d, const char *pass, size_t passlen, pgp_sink_fn sink,
               void *sink_ctx);

int pgp_feed(struct pgp_dec *d, const uint8_t *buf, size_t len);

/* Ends the message: 0 only when every packet was complete and the MDC matched. */
int pgp_finish(struct pgp_dec *d);

const char *pgp_strerror(int err);
/* The last error with its specifics, e.g. "unsupported cipher algorithm 10 (Twofish)". */
const char *pgp_detail(const struct pgp_dec *d);
int pgp_sink_errno(const struct pgp_dec *d);

/* Hashes the MDC (SHA-1, the slowest stage) on a helper thread the decryptor owns until
 * pgp_free, so one stream uses two cores. For a lone stream (`quire decrypt`); the engine,
 * which already runs a decryptor per core, leaves it off. Call once, before the first
 * message. Returns 0 or PGP_ENOMEM. */
int pgp_set_mdc_thread(struct pgp_dec *d);

/* For the fuzzer only: caps the iterated S2K at max_bytes hashed (0 = no cap, the
 * default). Keys derived under a cap differ from OpenPGP's, so never use it elsewhere;
 * it survives pgp_reset. */
void pgp_set_s2k_limit(struct pgp_dec *d, uint64_t max_bytes);

/* Deriving the key beside the decryptor. The iterated S2K costs ~40 ms of a core per book
 * at gpg's default count; an event loop that derives inline stops serving its other
 * transfers meanwhile. So: pgp_key_peek() reads the S2K of a message's leading
 * symmetric-key packet from its first bytes, pgp_key_derive() computes the key on any
 * thread, and pgp_key_offer() hands it to the decryptor (after pgp_reset), which then uses
 * it instead of deriving when the packet it parses matches. Without an offer, or when it
 * does not match, the decryptor derives the key itself: the offer only saves time. */
struct pgp_key_job {
        uint8_t s2k_type, hash, cipher, keylen;
        uint8_t salt[8];
        uint32_t count;
        uint8_t key[32];
        bool ready;
};
/* 0 when buf starts with a v4 symmetric-key packet quire can derive for, else -1. */
int pgp_key_peek(const uint8_t *buf, size_t len, struct pgp_key_job *job);
/* Sets job->key and job->ready; 0 or -1. Thread-safe. */
int pgp_key_derive(struct pgp_key_job *job, const char *pass, size_t passlen);
void pgp_key_offer(struct pgp_dec *d, const struct pgp_key_job *job);

/* Counters of the current message. */
uint64_t pgp_bytes_in(const struct pgp_dec *d);
uint64_t pgp_bytes_out(const struct pgp_dec *d);

#endif
