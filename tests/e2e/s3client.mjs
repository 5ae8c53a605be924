// An S3 client independent of quire (the AWS SDK for JavaScript v3), for the tests to read
// back and set up what quire writes. Path-style; endpoint from S3RVER_ENDPOINT (straight
// to s3rver, so reads bypass any proxy a test put in front of it) or else S3_ENDPOINT;
// credentials and region from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION.
//
//   node s3client.mjs get BUCKET KEY OUT          object body to file OUT ("-": stdout)
//   node s3client.mjs head BUCKET KEY             JSON: ContentLength, ETag, ContentType,
//                                                 LastModified, Metadata {barcode: ...}
//   node s3client.mjs list BUCKET [PREFIX]        lines KEY<TAB>SIZE<TAB>ETAG
//   node s3client.mjs list-multipart BUCKET [PREFIX]
//                                                 lines KEY<TAB>UPLOAD_ID of unfinished
//                                                 multipart uploads; s3rver lacks the API,
//                                                 so then read from its store (S3RVER_DIR)
//   node s3client.mjs put BUCKET KEY FILE [NAME=VALUE...]   upload with x-amz-meta-NAME
//   node s3client.mjs delete BUCKET KEY
//   node s3client.mjs mb BUCKET                   create a bucket
//
// Exit status: 0 done, 4 no such key or bucket (NotFound/NoSuchKey/NoSuchBucket), 1 any
// other error (S3's error code on stderr), 2 usage.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
// The SDK warns about node 20 on every run; it says nothing the tests need.
process.removeAllListeners('warning');
const require = createRequire(path.join(here, '../../tools/package.json'));
const {
  S3Client, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand,
  DeleteObjectCommand, CreateBucketCommand, ListMultipartUploadsCommand,
} = require('@aws-sdk/client-s3');

const usage = () => {
  process.stderr.write('usage: s3client.mjs get|head|list|list-multipart|put|delete|mb ARGS (see the file)\n');
  process.exit(2);
};

const endpoint = process.env.S3RVER_ENDPOINT || process.env.S3_ENDPOINT;
if (!endpoint) {
  process.stderr.write('s3client: set S3_ENDPOINT (start_s3rver does)\n');
  process.exit(2);
}
const client = new S3Client({
  endpoint,
  forcePathStyle: true,
  region: process.env.AWS_REGION || 'us-east-1',
  credentials: {
    accessKeyId: process.env.AWS_ACCESS_KEY_ID || 'S3RVER',
    secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY || 'S3RVER',
  },
  // s3rver predates the SDK's default CRC32 checksums and aws-chunked uploads.
  requestChecksumCalculation: 'WHEN_REQUIRED',
  responseChecksumValidation: 'WHEN_REQUIRED',
});

// s3rver keeps unfinished uploads as BUCKET/._S3rver_uploads/UPLOAD_ID/{key,metadata,N}.
function storeUploads(bucket, prefix) {
  const dir = process.env.S3RVER_DIR && path.join(process.env.S3RVER_DIR, bucket, '._S3rver_uploads');
  if (!dir) throw new Error('ListMultipartUploads not implemented by the server and S3RVER_DIR unset');
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir)
    .map((id) => {
      const keyFile = path.join(dir, id, 'key');
      return fs.existsSync(keyFile) ? { Key: fs.readFileSync(keyFile, 'utf8'), UploadId: id } : null;
    })
    .filter((u) => u && u.Key.startsWith(prefix));
}

async function main(argv) {
  const [cmd, bucket, key, ...rest] = argv;
  if (!cmd || !bucket) usage();
  switch (cmd) {
    case 'get': {
      if (!key || rest.length !== 1) usage();
      const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      const out = rest[0] === '-' ? process.stdout : fs.createWriteStream(rest[0]);
      await pipeline(r.Body, out);
      return;
    }
    case 'head': {
      if (!key) usage();
      const r = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      process.stdout.write(JSON.stringify({
        ContentLength: r.ContentLength,
        ETag: r.ETag,
        ContentType: r.ContentType,
        LastModified: r.LastModified,
        Metadata: r.Metadata || {},
      }) + '\n');
      return;
    }
    case 'list': {
      let token;
      do {
        const r = await client.send(new ListObjectsV2Command({
          Bucket: bucket, Prefix: key || '', ContinuationToken: token,
        }));
        for (const o of r.Contents || []) process.stdout.write(`${o.Key}\t${o.Size}\t${o.ETag}\n`);
        token = r.IsTruncated ? r.NextContinuationToken : undefined;
      } while (token);
      return;
    }
    case 'list-multipart': {
      let uploads;
      try {
        const r = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key || '' }));
        uploads = r.Uploads || [];
      } catch (e) {
        if (e.name !== 'NotImplemented' && e.$metadata?.httpStatusCode !== 501) throw e;
        uploads = storeUploads(bucket, key || '');
      }
      for (const u of uploads) process.stdout.write(`${u.Key}\t${u.UploadId}\n`);
      return;
    }
    case 'put': {
      if (!key || rest.length < 1) usage();
      const [file, ...meta] = rest;
      const Metadata = Object.fromEntries(meta.map((kv) => {
        const i = kv.indexOf('=');
        if (i < 1) usage();
        return [kv.slice(0, i), kv.slice(i + 1)];
      }));
      await client.send(new PutObjectCommand({
        Bucket: bucket, Key: key, Body: fs.readFileSync(file), Metadata,
      }));
      return;
    }
    case 'delete':
      if (!key) usage();
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
      return;
    case 'mb':
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      return;
    default:
      usage();
  }
}

main(process.argv.slice(2)).catch((e) => {
  const code = e.Code || e.name || 'Error';
  process.stderr.write(`s3client: ${code}: ${e.message}\n`);
  process.exit(['NotFound', 'NoSuchKey', 'NoSuchBucket'].includes(code) ? 4 : 1);
});
