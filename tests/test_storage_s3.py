"""Objects on S3 carry their Content-Type, and the endpoint comes from the AWS SDKs' standard variables."""

from __future__ import annotations

import boto3
import pytest

from hcd_pipeline.io.storage import Storage, StorageOptions


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "HCD_S3_ENDPOINT_URL"])
def test_content_types_and_endpoint_from_the_standard_variables(s3_server, monkeypatch, tmp_path, variable):
    for v in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "HCD_S3_ENDPOINT_URL"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv(variable, s3_server.url)  # no endpoint in the settings: the variable must be what finds the server
    client = boto3.client("s3", endpoint_url=s3_server.url, region_name="us-east-1")
    bucket = f"ct-{variable.lower().replace('_', '-')}"
    client.create_bucket(Bucket=bucket)
    out = Storage(f"s3://{bucket}/run", StorageOptions())
    out.write("lr/a.png.png", b"\x89PNG")
    out.write("lr/a.png.json", b"{}")
    out.write("lr/b.jpg.webp", b"RIFF")
    (tmp_path / "part").write_bytes(b"PAR1")
    out.put_file(str(tmp_path / "part"), "metrics.parquet")
    types = {k: client.head_object(Bucket=bucket, Key=f"run/{k}")["ContentType"]
             for k in ("lr/a.png.png", "lr/a.png.json", "lr/b.jpg.webp", "metrics.parquet")}  # fmt: skip
    assert types == {"lr/a.png.png": "image/png", "lr/a.png.json": "application/json", "lr/b.jpg.webp": "image/webp",
                     "metrics.parquet": "application/vnd.apache.parquet"}  # fmt: skip
