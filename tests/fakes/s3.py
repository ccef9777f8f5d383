"""A local S3-compatible server for the object-storage tests: moto in server mode on
127.0.0.1, an ephemeral port, speaking real HTTP, with a bucket and an IAM user whose access
key may use it.

moto checks SigV4 signatures only once IAM authentication is switched on (it is off by default:
any signature passes). `moto_s3()` switches it on after the setup, so every request the code
under test makes is verified: a wrong secret or a badly built canonical request is refused with
403 SignatureDoesNotMatch, as AWS, MinIO, OSS and COS would refuse it.

boto3 (a dependency of moto, dev only) sets the server up; the app itself never uses it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
from moto.server import ThreadedMotoServer

from app.core.config import AttachmentSettings

REGION = "us-east-1"
_SETUP_CREDENTIALS = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup"}  # unchecked before auth is on
_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    region: str = REGION

    def settings(self, **overrides: Any) -> AttachmentSettings:
        """Attachment settings for the s3 backend on this server (path-style, as for MinIO)."""
        values: dict[str, Any] = {
            "backend": "s3",
            "s3_endpoint_url": self.endpoint_url,
            "s3_bucket": self.bucket,
            "s3_region": self.region,
            "s3_access_key_id": self.access_key_id,
            "s3_secret_access_key": self.secret_access_key,
            "s3_addressing": "path",
            "s3_timeout_seconds": 10,
        }
        values.update(overrides)
        return AttachmentSettings(**values)

    def client(self) -> Any:
        """A boto3 client with the user's key: the tests' independent view of the bucket."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )


@contextmanager
def moto_s3(bucket: str = "helpdesk-attachments") -> Iterator[S3Server]:
    """Run the server for the duration of the block (about a second to start)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION, **_SETUP_CREDENTIALS)
        iam.create_user(UserName="helpdesk")
        iam.put_user_policy(UserName="helpdesk", PolicyName="attachments", PolicyDocument=json.dumps(_POLICY))
        key = iam.create_access_key(UserName="helpdesk")["AccessKey"]
        boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **_SETUP_CREDENTIALS).create_bucket(Bucket=bucket)
        # From here on every request must carry a valid signature of a known key.
        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"0").raise_for_status()
        yield S3Server(
            endpoint_url=endpoint,
            bucket=bucket,
            access_key_id=key["AccessKeyId"],
            secret_access_key=key["SecretAccessKey"],
        )
    finally:
        # moto's state and its authentication switch are global to the process: leave them clean.
        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"inf")
        httpx.post(f"{endpoint}/moto-api/reset")
        server.stop()
