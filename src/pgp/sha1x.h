/* SHA-1 of the OpenPGP iterated+salted S2K's hash streams with the x86 SHA extensions,
 * the streams' rounds interleaved so their dependency chains overlap (one SHA-1 stream
 * is bound by the latency of sha1rnds4, not by the unit's throughput). Used by
 * pgp_s2k_derive (src/pgp_s2k.c); everything else goes through EVP. */
#ifndef QUIRE_SHA1X_H
#define QUIRE_SHA1X_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
 * bytes of unit repeated without end, which is what RFC 4880 3.7.1 hashes for the s-th
 * 20 bytes of a key. work holds copies of unit and their message schedules afterwards:
 * the caller wipes it. Returns
 * 0, or -1 (nothing computed) when sha1x_available() is false, unit_len is 0, nstreams
 * is out of range or work_len < sha1x_work_size(unit_len). */
int sha1x_s2k(const uint8_t *unit, size_t unit_len, uint64_t count, unsigned nstreams,
              uint8_t (*digests)[SHA1X_DIGEST], uint8_t *work, size_t work_len);

#endif
