"""01_minio: the object store's keys and the learner's S3 client (`mc` lines)."""
