#!/usr/bin/env python3
"""Create the MLflow artifact bucket on the S3 endpoint if it does not exist yet.

Idempotent; waits up to a minute for the endpoint. Reads MLFLOW_S3_ENDPOINT_URL,
MLFLOW_BUCKET (default mlflow-artifacts) and the AWS_* credentials.
"""

import os
import sys
import time

import boto3
from botocore.exceptions import ClientError, EndpointConnectionError

bucket = os.environ.get("MLFLOW_BUCKET", "mlflow-artifacts")
s3 = boto3.client("s3", endpoint_url=os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None)
for _ in range(30):
    try:
        s3.head_bucket(Bucket=bucket)
        print(f"bucket {bucket} exists")
        sys.exit(0)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
        s3.create_bucket(Bucket=bucket)
        print(f"bucket {bucket} created")
        sys.exit(0)
    except EndpointConnectionError:
        time.sleep(2)
sys.exit(f"S3 endpoint {os.environ.get('MLFLOW_S3_ENDPOINT_URL')} not reachable")
