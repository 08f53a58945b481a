#!/bin/sh
# One-shot MinIO setup for docker/compose.yml (service "minio-init"); safe to run again.
#  1. creates the bucket named by BRIGHTRUN_STORAGE_URL (s3://BUCKET),
#  2. creates the product's own user BRIGHTRUN_S3_ACCESS_KEY / BRIGHTRUN_S3_SECRET_KEY with a policy
#     limited to that bucket (skipped when the product uses the root account),
#  3. checks that the product's credentials can list the bucket,
#  4. writes /tmp/minio-init.done (the service's healthcheck) and exits 0.
# Needs: MINIO_URL, MINIO_ROOT_USER, MINIO_ROOT_PASSWORD, BRIGHTRUN_STORAGE_URL,
# BRIGHTRUN_S3_ACCESS_KEY, BRIGHTRUN_S3_SECRET_KEY. Secrets are never printed.
set -eu

: "${MINIO_URL:=http://minio:9000}"
: "${MINIO_ROOT_USER:?set MINIO_ROOT_USER in docker/.env}"
: "${MINIO_ROOT_PASSWORD:?set MINIO_ROOT_PASSWORD in docker/.env}"
: "${BRIGHTRUN_STORAGE_URL:?set BRIGHTRUN_STORAGE_URL in docker/.env}"
: "${BRIGHTRUN_S3_ACCESS_KEY:?set BRIGHTRUN_S3_ACCESS_KEY in docker/.env}"
: "${BRIGHTRUN_S3_SECRET_KEY:?set BRIGHTRUN_S3_SECRET_KEY in docker/.env}"

case "$BRIGHTRUN_STORAGE_URL" in
  s3://*) ;;
  *) echo "minio-init: BRIGHTRUN_STORAGE_URL=$BRIGHTRUN_STORAGE_URL is not s3://BUCKET" >&2; exit 1 ;;
esac
bucket=${BRIGHTRUN_STORAGE_URL#s3://}
bucket=${bucket%%/*}
if [ -z "$bucket" ]; then
  echo "minio-init: BRIGHTRUN_STORAGE_URL names no bucket; use s3://BUCKET" >&2
  exit 1
fi

mc alias set root "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null

mc mb --ignore-existing "root/$bucket"
echo "minio-init: bucket $bucket ready"

if [ "$BRIGHTRUN_S3_ACCESS_KEY" != "$MINIO_ROOT_USER" ]; then
  policy=/tmp/brightrun-policy.json
  cat >"$policy" <<EOF
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:*"],
     "Resource": ["arn:aws:s3:::$bucket", "arn:aws:s3:::$bucket/*"]}
  ]
}
EOF
  # `policy create` replaces an existing policy of that name; `user add` resets the secret. Attaching
  # fails when an earlier run attached it already; the listing check below catches real failures.
  mc admin policy create root brightrun-app "$policy" >/dev/null
  mc admin user add root "$BRIGHTRUN_S3_ACCESS_KEY" "$BRIGHTRUN_S3_SECRET_KEY" >/dev/null
  mc admin policy attach root brightrun-app --user "$BRIGHTRUN_S3_ACCESS_KEY" >/dev/null 2>&1 \
    || echo "minio-init: policy brightrun-app was already attached"
  echo "minio-init: user $BRIGHTRUN_S3_ACCESS_KEY may use bucket $bucket"
fi

# The product's credentials must work before the dashboard starts.
mc alias set app "$MINIO_URL" "$BRIGHTRUN_S3_ACCESS_KEY" "$BRIGHTRUN_S3_SECRET_KEY" >/dev/null
mc ls "app/$bucket" >/dev/null
echo "minio-init: BRIGHTRUN_S3_ACCESS_KEY can list s3://$bucket"

touch /tmp/minio-init.done
