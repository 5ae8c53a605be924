// A proxy in front of s3rver (which accepts any SigV4 signature) that checks each request's
// signature independently, with the AWS SDK's own signer (@smithy/signature-v4), then
// forwards the request unchanged.
//
//   node sigv4check.mjs --upstream http://127.0.0.1:PORT [--port 0] [--ready-file F]
//                       [--log F] [--access-key K] [--secret S] [--region R]
//                       [--lie-complete SUBSTRING] [--start-log F]
//
// Key, secret and region default to AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION
// (else S3RVER, S3RVER, us-east-1). Once listening on 127.0.0.1 it writes "PORT PID" to
// the ready file. For every request, before forwarding it, one line is appended to the log:
//   OK METHOD URL payload=P md5=M[ checksum=C]
//   BAD METHOD URL payload=P md5=M[ checksum=C]: WHY
// where P is "ok" (x-amz-content-sha256 equals the body's SHA-256), "unsigned"
// (UNSIGNED-PAYLOAD), "streaming" (STREAMING-*: only the seed signature is checked),
// "absent" or "mismatch", M is "ok", "absent" or "mismatch" (Content-MD5 against the
// body) and C, only for a request with x-amz-checksum-sha256, "ok" or "mismatch" (base64
// of the body's SHA-256). A payload, MD5 or checksum mismatch makes the line BAD, and so
// do a missing or malformed Authorization header, another access key, region or service,
// x-amz-date not matching the scope's date, a signed header missing from the request, or
// a signature differing from the one the SDK's signer computes from the method, path,
// query, signed headers and payload hash of the request as received.
//
// --lie-complete SUBSTRING: a CompleteMultipartUpload (POST ?uploadId=) whose URL contains
// SUBSTRING is checked and logged as above but not forwarded: the answer is what S3 sends
// when the completion fails after its 200 went out, a 200, 8 KiB of keep-alive blanks
// in pieces, then an <Error> InternalError. The upload stays unfinished upstream.
//
// --start-log F: also one line "START METHOD URL" in F as each request's headers arrive
// (the log above waits for the whole body), so a test can see an upload under way.
//
// SIGV4CHECK_LIE_COMPLETE and SIGV4CHECK_START_LOG in the environment are these options'
// defaults (start_sigv4check passes none).
import { createRequire } from 'node:module';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
// The SDK warns about node 20 on every run; it says nothing the tests need.
process.removeAllListeners('warning');
const require = createRequire(path.join(here, '../../tools/package.json'));
const { SignatureV4 } = require('@smithy/signature-v4');
const { Sha256 } = require('@aws-crypto/sha256-js');

const opt = {
  upstream: '', port: 0, 'ready-file': '', log: '',
  'lie-complete': process.env.SIGV4CHECK_LIE_COMPLETE || '',
  'start-log': process.env.SIGV4CHECK_START_LOG || '',
  'access-key': process.env.AWS_ACCESS_KEY_ID || 'S3RVER',
  secret: process.env.AWS_SECRET_ACCESS_KEY || 'S3RVER',
  region: process.env.AWS_REGION || 'us-east-1',
};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const k = argv[i].replace(/^--/, '');
  if (!(k in opt) || i + 1 >= argv.length) {
    process.stderr.write(`sigv4check: bad argument ${argv[i]}\n`);
    process.exit(2);
  }
  opt[k] = argv[i + 1];
}
if (!opt.upstream) {
  process.stderr.write('sigv4check: --upstream URL is required\n');
  process.exit(2);
}
const upstream = new URL(opt.upstream);

const log = (line) => {
  if (opt.log) fs.appendFileSync(opt.log, line + '\n');
  else process.stdout.write(line + '\n');
};

// S3's canonical URI: each segment of the decoded path encoded once, RFC 3986 strictly.
const strictEncode = (s) =>
  encodeURIComponent(s).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
const canonicalPath = (raw) =>
  raw.split('/').map((seg) => strictEncode(decodeURIComponent(seg))).join('/');

function parseQuery(raw) {
  const query = {};
  if (!raw) return query;
  for (const pair of raw.split('&')) {
    if (!pair) continue;
    const i = pair.indexOf('=');
    const k = decodeURIComponent(i < 0 ? pair : pair.slice(0, i));
    const v = i < 0 ? '' : decodeURIComponent(pair.slice(i + 1));
    if (k in query) query[k] = [].concat(query[k], v);
    else query[k] = v;
  }
  return query;
}

function amzDate(s) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s || '');
  return m ? new Date(Date.UTC(+m[1], m[2] - 1, +m[3], +m[4], +m[5], +m[6])) : null;
}

const AUTH_RE = /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/([^/,\s]+)\/aws4_request,\s*SignedHeaders=([a-z0-9;_.-]+),\s*Signature=([0-9a-f]{64})$/;

// Returns [problems, payloadState, md5State, checksumState].
async function check(req, body) {
  const h = req.headers;
  const bad = [];
  const bodySha = crypto.createHash('sha256').update(body).digest('hex');
  let payload = 'absent';
  const declared = h['x-amz-content-sha256'];
  if (declared === 'UNSIGNED-PAYLOAD') payload = 'unsigned';
  else if (declared && declared.startsWith('STREAMING-')) payload = 'streaming';
  else if (declared) payload = declared === bodySha ? 'ok' : 'mismatch';
  if (payload === 'mismatch') bad.push(`x-amz-content-sha256 ${declared} but the body hashes to ${bodySha}`);
  let md5 = 'absent';
  if (h['content-md5']) {
    md5 = h['content-md5'] === crypto.createHash('md5').update(body).digest('base64') ? 'ok' : 'mismatch';
    if (md5 === 'mismatch') bad.push('Content-MD5 does not match the body');
  }
  let checksum = 'absent';
  if (h['x-amz-checksum-sha256']) {
    const want = crypto.createHash('sha256').update(body).digest('base64');
    checksum = h['x-amz-checksum-sha256'] === want ? 'ok' : 'mismatch';
    if (checksum === 'mismatch') bad.push(`x-amz-checksum-sha256 ${h['x-amz-checksum-sha256']} but the body's is ${want}`);
  }

  const auth = h.authorization;
  const m = auth && AUTH_RE.exec(auth);
  if (!m) {
    bad.push(auth ? `malformed Authorization: ${auth}` : 'no Authorization header');
    return [bad, payload, md5, checksum];
  }
  const [, keyId, scopeDate, region, service, signedList, signature] = m;
  if (keyId !== opt['access-key']) bad.push(`access key ${keyId}, expected ${opt['access-key']}`);
  if (region !== opt.region) bad.push(`region ${region}, expected ${opt.region}`);
  if (service !== 's3') bad.push(`service ${service}, expected s3`);
  const signedNames = signedList.split(';');
  if (!signedNames.includes('host')) bad.push('host is not signed');
  const date = amzDate(h['x-amz-date']);
  if (!date) bad.push('no valid x-amz-date header');
  else if (h['x-amz-date'].slice(0, 8) !== scopeDate) bad.push(`x-amz-date ${h['x-amz-date']} is not of the scope's day ${scopeDate}`);
  const headers = {};
  for (const name of signedNames) {
    if (h[name] === undefined) bad.push(`signed header ${name} is not in the request`);
    else headers[name] = Array.isArray(h[name]) ? h[name].join(',') : h[name];
  }
  if (bad.length && !date) return [bad, payload, md5, checksum];

  const [rawPath, rawQuery] = req.url.split(/\?(.*)/s);
  const signer = new SignatureV4({
    credentials: {
      accessKeyId: keyId,
      secretAccessKey: opt.secret,
      sessionToken: signedNames.includes('x-amz-security-token') ? h['x-amz-security-token'] : undefined,
    },
    region,
    service,
    sha256: Sha256,
    uriEscapePath: false,
    applyChecksum: false,
  });
  let expected;
  try {
    const signed = await signer.sign({
      method: req.method,
      protocol: 'http:',
      hostname: (h.host || '').replace(/:\d+$/, ''),
      path: canonicalPath(rawPath),
      query: parseQuery(rawQuery),
      headers,
      body,
    }, { signingDate: date, signableHeaders: new Set(signedNames) });
    expected = AUTH_RE.exec(signed.headers.authorization);
  } catch (e) {
    bad.push(`signer failed: ${e.message}`);
    return [bad, payload, md5, checksum];
  }
  if (!expected) bad.push('signer produced no signature');
  else {
    if (expected[5] !== signedList) bad.push(`SignedHeaders ${signedList}, signer would sign ${expected[5]}`);
    if (expected[6] !== signature) {
      bad.push(`signature ${signature}, expected ${expected[6]}`);
      if (rawQuery && asSentSignature(req, rawPath, rawQuery, signedNames, scopeDate, region, service, body) === signature) {
        bad.push('it matches a canonical query taken as sent (unsorted, "uploads" without "="): ' +
          "libcurl 7.88's SigV4 does that; write the URL's query sorted and with '=' (?uploads=)");
      }
    }
  }
  return [bad, payload, md5, checksum];
}

// Only for the diagnosis above: the signature over the query string exactly as sent.
function asSentSignature(req, rawPath, rawQuery, names, day, region, service, body) {
  const h = req.headers;
  const hmac = (k, d) => crypto.createHmac('sha256', k).update(d).digest();
  const key = hmac(hmac(hmac(hmac('AWS4' + opt.secret, day), region), service), 'aws4_request');
  const hash = h['x-amz-content-sha256'] || crypto.createHash('sha256').update(body).digest('hex');
  const creq = [req.method, canonicalPath(rawPath), rawQuery,
    ...names.map((n) => `${n}:${String(h[n] ?? '').trim().replace(/\s+/g, ' ')}`), '', names.join(';'), hash].join('\n');
  const sts = ['AWS4-HMAC-SHA256', h['x-amz-date'], `${day}/${region}/${service}/aws4_request`,
    crypto.createHash('sha256').update(creq).digest('hex')].join('\n');
  return hmac(key, sts).toString('hex');
}

// S3's way of failing a CompleteMultipartUpload it has already answered 200 to.
function lieComplete(res) {
  res.writeHead(200, { 'content-type': 'application/xml' });
  res.write('<?xml version="1.0" encoding="UTF-8"?>\n');
  let sent = 0;
  const blanks = () => {
    if (sent < 8192) {
      res.write(' '.repeat(1024));
      sent += 1024;
      setTimeout(blanks, 5);
      return;
    }
    res.end('<Error><Code>InternalError</Code><Message>We encountered an internal error. ' +
      'Please try again.</Message></Error>');
  };
  blanks();
}

const HOP = new Set(['connection', 'keep-alive', 'expect', 'transfer-encoding', 'te', 'upgrade',
  'proxy-connection', 'trailer']);

const server = http.createServer((req, res) => {
  if (opt['start-log']) fs.appendFileSync(opt['start-log'], `START ${req.method} ${req.url}\n`);
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    const body = Buffer.concat(chunks);
    let verdict;
    try {
      const [bad, payload, md5, checksum] = await check(req, body);
      verdict = `${bad.length ? 'BAD' : 'OK'} ${req.method} ${req.url} payload=${payload} md5=${md5}` +
        (checksum === 'absent' ? '' : ` checksum=${checksum}`) +
        (bad.length ? `: ${bad.join('; ')}` : '');
    } catch (e) {
      verdict = `BAD ${req.method} ${req.url}: checker error ${e.message}`;
    }
    log(verdict.replace(/[\r\n]+/g, ' '));
    if (opt['lie-complete'] && req.method === 'POST' && /[?&]uploadId=/.test(req.url) &&
        req.url.includes(opt['lie-complete'])) {
      lieComplete(res);
      return;
    }

    const headers = {};
    for (const [k, v] of Object.entries(req.headers)) if (!HOP.has(k)) headers[k] = v;
    headers['content-length'] = String(body.length);
    const up = http.request({
      hostname: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers,
    }, (ur) => {
      const out = {};
      for (const [k, v] of Object.entries(ur.headers)) if (!HOP.has(k)) out[k] = v;
      res.writeHead(ur.statusCode, out);
      ur.pipe(res);
    });
    up.on('error', (e) => {
      log(`ERR ${req.method} ${req.url}: upstream ${e.message}`);
      res.destroy();
    });
    up.end(body);
  });
  req.on('error', () => res.destroy());
});

server.keepAliveTimeout = 65000;
server.listen(Number(opt.port), '127.0.0.1', () => {
  const { port } = server.address();
  if (opt['ready-file']) {
    fs.writeFileSync(opt['ready-file'] + '.tmp', `${port} ${process.pid}\n`);
    fs.renameSync(opt['ready-file'] + '.tmp', opt['ready-file']);
  } else {
    process.stdout.write(`sigv4check listening on 127.0.0.1:${port}\n`);
  }
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
