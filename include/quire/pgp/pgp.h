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
        PGP_ELIMIT, /* more symmetric-key packets to derive keys for than PGP_MAX_DERIVE */
};

/* Not an error: pgp_feed stopped for a key (see "Deferred keys" below). */
#define PGP_NEEDKEY 1

/* Receives plaintext; returns 0, or a negative errno to stop decryption. */
typedef int (*pgp_sink_fn)(void *ctx, const uint8_t *buf, size_t len);

struct pgp_dec;

int pgp_new(struct pgp_dec **out);
void pgp_free(struct pgp_dec *d);

/* Starts a new message. The passphrase is copied into the decryptor and wiped by the
 * next reset or free; so is any key offered. */
void pgp_reset(struct pgp_dec *d, const char *pass, size_t passlen, pgp_sink_fn sink,
               void *sink_ctx);

/* Takes the next bytes of the message: 0 when it took all of them, PGP_NEEDKEY (only
 * with deferred keys) or a PGP_E* code. */
int pgp_feed(struct pgp_dec *d, const uint8_t *buf, size_t len);

/* Ends the message: 0 only when every packet was complete and the MDC matched (a key
 * still asked for means the input ended before the encrypted data: PGP_ETRUNC). */
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

/* ---- Keys ----
 * The iterated S2K costs ~35 ms of a core per key at gpg's default count (SHA-1; 0.4 s
 * with RIPEMD-160 for a 32-byte key), so an event loop must never derive one inline.
 * A message may carry several symmetric-key packets (SKESK, one per passphrase it was
 * made for); each with S2K parameters of its own needs a derivation of its own. At most
 * PGP_MAX_DERIVE are derived per message: one more fails the message with PGP_ELIMIT
 * ("S2K bomb": hundreds of packets whose keys never unwrap would cost a core for
 * minutes). gpg itself derives only for the first packet; four still opens a message
 * made for a few passphrases (OpenPGP.js, Sequoia write one packet per passphrase) and
 * bounds a hostile one at 4 derivations (at most ~1.6 s of a key thread). Packets with the same S2K
 * parameters share one derivation.
 *
 * Deferred keys: after pgp_set_defer_keys(d, true) the decryptor never derives inline.
 * When it has read an SKESK whose key it does not hold, pgp_feed returns PGP_NEEDKEY,
 * having consumed pgp_consumed(d) bytes (the SKESK's last byte included). Then:
 *     struct pgp_key_job job;
 *     pgp_key_wanted(d, &job);                   // the S2K parameters, job.ready false
 *     pgp_key_derive(&job, pass, passlen);       // on any thread, with the passphrase
 *     pgp_key_offer(d, &job);                    // back on the decryptor's thread
 *     explicit_bzero(&job, sizeof job);
 *     pgp_feed(d, buf + consumed, len - consumed);   // may stop again for the next one
 * Between PGP_NEEDKEY and the offer the caller keeps the unconsumed bytes. With libcurl:
 * return CURL_WRITEFUNC_PAUSE (nothing of that chunk taken); after unpausing, libcurl
 * delivers the same data again, maybe cut differently, so count the bytes the callback
 * has taken (`accepted`) and skip the first pgp_bytes_in(d) - accepted bytes of each
 * chunk: those are inside the decryptor already. A feed before the offer takes
 * nothing and returns PGP_NEEDKEY again; a failed derivation (job.ready false) offered
 * makes the message fail. pgp_reset abandons a wait at any time. The mode survives
 * pgp_reset. Without it the decryptor derives inline (fine for `quire decrypt`).
 *
 * pgp_key_peek (older, for an engine not using deferred keys): reads the S2K of a
 * message's leading SKESK from its first bytes, so the key can be derived before the
 * first pgp_feed and offered after pgp_reset. Any key offered is used by every SKESK whose
 * parameters match it; others are derived inline or asked for. */
#define PGP_MAX_DERIVE 4

struct pgp_key_job {
        uint8_t s2k_type, hash, cipher, keylen;
        uint8_t salt[8];
        uint32_t count;
        uint8_t key[32];
        bool ready;
};

void pgp_set_defer_keys(struct pgp_dec *d, bool on);
/* Bytes of its input the last pgp_feed took: all of them unless it returned PGP_NEEDKEY. */
size_t pgp_consumed(const struct pgp_dec *d);
/* After PGP_NEEDKEY: the job to derive. */
void pgp_key_wanted(const struct pgp_dec *d, struct pgp_key_job *job);
/* 0 when buf starts with a v4 symmetric-key packet quire can derive for, else -1. */
int pgp_key_peek(const uint8_t *buf, size_t len, struct pgp_key_job *job);
/* Sets job->key and job->ready; 0 or -1. Thread-safe, allocates. */
int pgp_key_derive(struct pgp_key_job *job, const char *pass, size_t passlen);
void pgp_key_offer(struct pgp_dec *d, const struct pgp_key_job *job);

/* Counters of the current message. */
uint64_t pgp_bytes_in(const struct pgp_dec *d);
uint64_t pgp_bytes_out(const struct pgp_dec *d);

#endif
