#!/usr/bin/python3
"""Debian's python3 and python3-boto3 (tools/deps.sh), not a pyenv's.

Writes objects into a bucket the way the Python pipeline does (boto3's put_object with
its user metadata, underscores in the names), so that a test can check that quire takes
such a bucket over.

  python_pipeline_put.py ENDPOINT BUCKET KEY FILE BARCODE ETAG FILENAME

ETAG is GRIN's ETag as the pipeline stored it (the header's value, quotes and all)."""
import datetime
import sys

import boto3
from botocore.config import Config


def main():
    endpoint, bucket, key, path, barcode, etag, filename = sys.argv[1:8]
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="S3RVER", aws_secret_access_key="S3RVER",
                      config=Config(s3={"addressing_style": "path"}))
    with open(path, "rb") as f:
        s3.put_object(Bucket=bucket, Key=key, Body=f, Metadata={
            "barcode": barcode,
            "acquisition_date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "encrypted_etag": etag,
            "original_filename": filename,
        })


main()
