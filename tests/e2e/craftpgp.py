#!/usr/bin/env python3
"""OpenPGP messages crafted from RFC 9580's packet formats, for the cases gpg will not make."""
import hashlib, os, subprocess, sys, zlib
# craftpgp.py partial1 PASS PLAIN OUT [zlib]: SEIPD, the compressed packet (with zlib) and the
#   literal packet, each framed in 1-byte partial lengths (4.2.1.4).
# craftpgp.py skesks N PASS PLAIN OUT: N SKESKs (5.3), the first N-1 with S2K parameters of
#   their own and a session key that does not unwrap with PASS, the last one right.
def s2k(pw, salt, cbyte=0x60):
    count = (16 + (cbyte & 15)) << ((cbyte >> 4) + 6)
    unit = salt + pw
    return hashlib.sha1((unit * (count // len(unit) + 1))[:max(count, len(unit))]).digest()[:16]
def aes(mode, key, data):
    return subprocess.run(['openssl', 'enc', mode, '-K', key.hex(), '-iv', '00' * 16, '-nosalt',
                           '-nopad'], input=data, capture_output=True, check=True).stdout
def hdr(tag, n):
    if n < 192: return bytes([0xC0 | tag, n])
    if n < 8384: return bytes([0xC0 | tag, ((n - 192) >> 8) + 192, (n - 192) & 255])
    return bytes([0xC0 | tag, 255]) + n.to_bytes(4, 'big')
def whole(tag, body):
    return hdr(tag, len(body)) + body
def partial1(tag, body):
    out = bytearray([0xC0 | tag])
    for b in body[:-1]:
        out += bytes([0xE0, b])
    return bytes(out + bytes([1, body[-1]]))
def seipd(key, inner, frame):
    prefix = os.urandom(16)
    pt = prefix + prefix[-2:] + inner + b'\xd3\x14'
    pt += hashlib.sha1(pt).digest()
    return frame(18, b'\x01' + aes('-aes-128-cfb', key, pt))
def skesk(salt, esk=b''):
    return hdr(3, 13 + len(esk)) + bytes([4, 7, 3, 2]) + salt + bytes([0x60]) + esk
mode, args = sys.argv[1], sys.argv[2:]
if mode == 'partial1':
    pw, plain, out = args[0].encode(), open(args[1], 'rb').read(), args[2]
    salt = os.urandom(8)
    inner = partial1(11, b'b\0\0\0\0\0' + plain)
    if args[3:] == ['zlib']:
        inner = partial1(8, b'\x02' + zlib.compress(inner))
    msg = skesk(salt) + seipd(s2k(pw, salt), inner, partial1)
else:
    n, pw, plain, out = int(args[0]), args[1].encode(), open(args[2], 'rb').read(), args[3]
    sk, msg = os.urandom(16), b''
    for i in range(n - 1):
        salt = os.urandom(8)
        e0 = aes('-aes-128-ecb', s2k(pw, salt), bytes(16))[0]
        msg += skesk(salt, bytes([e0 ^ 0]) + os.urandom(16))  # unwraps to algorithm 0
    salt = os.urandom(8)
    msg += skesk(salt, aes('-aes-128-cfb', s2k(pw, salt), b'\x07' + sk))
    lit = b'b\0\0\0\0\0' + plain
    msg += seipd(sk, whole(11, lit), whole)
open(out, 'wb').write(msg)
