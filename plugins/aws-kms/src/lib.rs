//! `aws-kms`: a keybroker backend whose keys live in AWS KMS (work in progress).
