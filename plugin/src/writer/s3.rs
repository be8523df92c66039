//! The S3 writer (`WriterType=aws-s3`): the same object names as the file writer, in a
//! bucket of AWS S3 or any S3-compatible store (MinIO, Ceph, R2, moto...).
//!
//! - Credentials: the default AWS chain (environment, profile, web identity, IMDS), or an
//!   STS AssumeRole of `S3RoleARN` (optionally at `S3STSEndpoint`) on top of it. Unlike
//!   upstream (D-W1) neither the role nor an endpoint is required.
//! - A custom `S3Endpoint` is addressed path-style, as non-AWS stores expect.
//! - Objects below `S3MultipartThreshold` go up with one PutObject, larger ones in parts of
//!   `S3PartSize`; every request carries a CRC32 checksum; a failed multipart upload is
//!   aborted so no parts linger.
//! - With FileMaxAge, open files grow in `FileSpoolPath` and are uploaded from there, a
//!   part read from disk at a time, so a file of any size takes one part of memory.
//! - The SDK retries each request with backoff; the flusher's RecoveryAttempts and
//!   recovery store come on top. Object names derive from batch ids, so a retry
//!   overwrites, never duplicates.
//! - The async SDK runs on a runtime owned by the writer thread (`block_on` there), so
//!   nothing waits on S3 but that thread.

use super::file::{SPOOL_SUFFIX, TMP_LEFTOVER_AGE, spool_name, sweep_hidden};
use super::{Swept, WriteError, Writer};
use crate::config::{Config, S3Config};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ObjectCannedAcl,
    ServerSideEncryption, StorageClass,
};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::runtime::Runtime;

pub struct S3Writer {
    rt: Runtime,
    client: Client,
    cfg: S3Config,
    upload: UploadSettings,
    /// With FileMaxAge: where open files grow (FileSpoolPath), and the age past which a
    /// spool there is a crash's leftover.
    spool: Option<(PathBuf, Duration)>,
}

/// Where the parts of a multipart upload come from: a buffer, or a spooled file read
/// one part at a time.
enum Parts<'a> {
    Bytes(std::slice::Chunks<'a, u8>),
    File(std::fs::File, &'a Path),
}

impl Parts<'_> {
    /// The next part (at most `size` bytes), or `None` after the last.
    fn next(&mut self, size: usize) -> Result<Option<Vec<u8>>, WriteError> {
        match self {
            Parts::Bytes(c) => Ok(c.next().map(<[u8]>::to_vec)),
            Parts::File(f, path) => {
                let mut part = Vec::with_capacity(size);
                (&mut *f)
                    .take(size as u64)
                    .read_to_end(&mut part)
                    .map_err(|e| WriteError::io("read", path, e))?;
                Ok((!part.is_empty()).then_some(part))
            }
        }
    }
}

/// What every new object is stored with (S3ServerSideEncryption, S3KmsKeyId,
/// S3StorageClass, S3Acl), converted once for the SDK. `None` sends nothing, so the
/// bucket's defaults apply.
#[derive(Debug, Clone, Default)]
struct UploadSettings {
    encryption: Option<ServerSideEncryption>,
    kms_key_id: Option<String>,
    storage_class: Option<StorageClass>,
    acl: Option<ObjectCannedAcl>,
}

impl UploadSettings {
    fn from_config(s3: &S3Config) -> UploadSettings {
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        UploadSettings {
            encryption: s3.encryption.header().map(ServerSideEncryption::from),
            kms_key_id: nonempty(&s3.kms_key_id),
            storage_class: nonempty(&s3.storage_class).map(|s| StorageClass::from(s.as_str())),
            acl: nonempty(&s3.acl).map(|s| ObjectCannedAcl::from(s.as_str())),
        }
    }
}

/// Applies the upload settings to a request that creates an object: PutObject and
/// CreateMultipartUpload take the same four, on different builder types.
macro_rules! with_upload_settings {
    ($req:expr, $u:expr) => {
        $req.set_server_side_encryption($u.encryption.clone())
            .set_ssekms_key_id($u.kms_key_id.clone())
            .set_storage_class($u.storage_class.clone())
            .set_acl($u.acl.clone())
    };
}

/// The HTTPS client: rustls on ring, trusting the system's roots and, with `S3CaFile`,
/// the CA certificates of that file (an on-premises endpoint with a private CA).
fn http_client(s3: &S3Config) -> Result<aws_sdk_s3::config::SharedHttpClient, WriteError> {
    use aws_smithy_http_client::tls;
    let mut trust = tls::TrustStore::default();
    if let Some(path) = &s3.ca_file {
        let what = format!("S3CaFile {}", path.display());
        let pem = std::fs::read(path).map_err(|e| err(&what, e))?;
        // The SDK parses the file only at the first connection, and a file with no
        // certificate in it would then just fail every request as untrusted.
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let n = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(&what, e))?
            .len();
        if n == 0 {
            return Err(err(&what, "no PEM certificate in it"));
        }
        trust = trust.with_pem_certificate(pem);
    }
    let ctx = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| err("TLS settings", e))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(ctx)
        .build_https())
}

fn err(what: &str, e: impl std::fmt::Display) -> WriteError {
    WriteError::Remote(format!("S3 {what}: {e}"))
}

/// The full text of an SDK error, including its source chain (the top level often only
/// says "service error" or "dispatch failure").
pub(crate) fn describe<E: std::error::Error>(e: &E) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

impl S3Writer {
    pub fn new(cfg: &Config) -> Result<S3Writer, WriteError> {
        let s3 = cfg.s3.clone();
        let (rt, client) = runtime_and_client(&s3)?;
        let spool = match (&cfg.file_spool_path, cfg.spool_lifetime()) {
            (Some(dir), Some(age)) => Some((dir.clone(), age.saturating_add(TMP_LEFTOVER_AGE))),
            _ => None,
        };
        Ok(S3Writer {
            rt,
            client,
            upload: UploadSettings::from_config(&s3),
            cfg: s3,
            spool,
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn key(&self, name: &str) -> String {
        let p = self.cfg.key_prefix.trim_end_matches('/');
        if p.is_empty() {
            name.to_string()
        } else {
            format!("{p}/{name}")
        }
    }

    async fn put_multipart(&self, key: &str, mut source: Parts<'_>) -> Result<(), WriteError> {
        let c = &self.client;
        let bucket = &self.cfg.bucket;
        let up = with_upload_settings!(c.create_multipart_upload(), self.upload)
            .bucket(bucket)
            .key(key)
            .content_type("application/vnd.apache.parquet")
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .map_err(|e| err(&format!("CreateMultipartUpload {key}"), describe(&e)))?;
        let id = up
            .upload_id()
            .ok_or_else(|| err("CreateMultipartUpload", "no upload id"))?
            .to_string();
        let result = async {
            let mut parts = Vec::new();
            let size = self.cfg.part_size as usize;
            while let Some(part) = source.next(size)? {
                let n = parts.len() as i32 + 1;
                let r = c
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&id)
                    .part_number(n)
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .body(ByteStream::from(part))
                    .send()
                    .await
                    .map_err(|e| err(&format!("UploadPart {n} of {key}"), describe(&e)))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(n)
                        .set_e_tag(r.e_tag().map(str::to_string))
                        .set_checksum_crc32(r.checksum_crc32().map(str::to_string))
                        .build(),
                );
            }
            c.complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| err(&format!("CompleteMultipartUpload {key}"), describe(&e)))?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = c
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&id)
                .send()
                .await;
        }
        result
    }
}

/// The runtime a blocking user of the SDK runs its requests on (its own thread's), and
/// a client built on it: the writer's and the `s3://` input reader's.
pub(crate) fn runtime_and_client(s3: &S3Config) -> Result<(Runtime, Client), WriteError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| err("runtime", e))?;
    let client = rt.block_on(build_client(s3))?;
    Ok((rt, client))
}

/// Every object under `prefix` (key and size), in key order, through all pages of
/// ListObjectsV2.
pub(crate) async fn list_objects(
    c: &Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<(String, u64)>, WriteError> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let r = c
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| err("ListObjectsV2", describe(&e)))?;
        out.extend(r.contents().iter().filter_map(|o| {
            Some((
                o.key()?.to_string(),
                o.size().map_or(0, |s| s.max(0) as u64),
            ))
        }));
        match r.next_continuation_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    Ok(out)
}

/// A client with the configured credentials, region, endpoint and role (the bucket and
/// prefix are not its business).
async fn build_client(s3: &S3Config) -> Result<Client, WriteError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client(s3)?);
    if !s3.access_key.is_empty() {
        loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
            &s3.access_key,
            s3.secret_key.expose(),
            None,
            None,
            "data2parquet-config",
        ));
    }
    if !s3.region.is_empty() {
        loader = loader.region(Region::new(s3.region.clone()));
    }
    let base: SdkConfig = loader.load().await;
    let mut b = aws_sdk_s3::config::Builder::from(&base)
        // Two tries per request; longer outages are the recovery store's job.
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(120))
                .build(),
        );
    if base.region().is_none() {
        // Custom endpoints rarely care; AWS itself needs one, and says so clearly.
        b = b.region(Region::new("us-east-1"));
    }
    if !s3.endpoint.is_empty() {
        b = b.endpoint_url(&s3.endpoint).force_path_style(true);
    }
    if !s3.role_arn.is_empty() {
        let mut sts_base = base.clone().into_builder();
        if !s3.sts_endpoint.is_empty() {
            sts_base = sts_base.endpoint_url(&s3.sts_endpoint);
        }
        if base.region().is_none() {
            sts_base = sts_base.region(Region::new("us-east-1"));
        }
        let session = s3
            .role_arn
            .rsplit('/')
            .next()
            .unwrap_or("data2parquet")
            .to_string();
        let role = aws_config::sts::AssumeRoleProvider::builder(&s3.role_arn)
            .session_name(format!(
                "data2parquet-{}",
                session.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
            ))
            .configure(&sts_base.build())
            .build()
            .await;
        b = b.credentials_provider(role);
    }
    Ok(Client::from_conf(b.build()))
}

impl Writer for S3Writer {
    fn put(&mut self, name: &str, bytes: &[u8]) -> Result<(), WriteError> {
        let key = self.key(name);
        if (bytes.len() as u64) < self.cfg.multipart_threshold {
            let c = self.client.clone();
            let bucket = self.cfg.bucket.clone();
            let body = ByteStream::from(bytes.to_vec());
            let req = with_upload_settings!(c.put_object(), self.upload);
            self.rt.block_on(async move {
                req.bucket(bucket)
                    .key(&key)
                    .content_type("application/vnd.apache.parquet")
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .body(body)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| err(&format!("PutObject {key}"), describe(&e)))
            })
        } else {
            let parts = Parts::Bytes(bytes.chunks(self.cfg.part_size as usize));
            self.rt.block_on(self.put_multipart(&key, parts))
        }
    }

    /// Open files grow in FileSpoolPath (when set), flat: their object names are given
    /// only when they are uploaded.
    fn spool_path(&mut self, _folder: &str) -> Result<Option<PathBuf>, WriteError> {
        let Some((dir, _)) = &self.spool else {
            return Ok(None);
        };
        std::fs::create_dir_all(dir).map_err(|e| WriteError::io("create folder", dir, e))?;
        Ok(Some(dir.join(spool_name())))
    }

    /// A spooled file is uploaded from the disk a part at a time, so memory holds one
    /// part whatever the file's size.
    fn put_spooled(&mut self, name: &str, spool: &Path) -> Result<(), WriteError> {
        let file = std::fs::File::open(spool).map_err(|e| WriteError::io("open", spool, e))?;
        let len = file
            .metadata()
            .map_err(|e| WriteError::io("stat", spool, e))?
            .len();
        if len < self.cfg.multipart_threshold {
            drop(file);
            let bytes = std::fs::read(spool).map_err(|e| WriteError::io("read", spool, e))?;
            self.put(name, &bytes)?;
        } else {
            let key = self.key(name);
            self.rt
                .block_on(self.put_multipart(&key, Parts::File(file, spool)))?;
        }
        let _ = std::fs::remove_file(spool);
        Ok(())
    }

    fn check(&mut self) -> Result<(), WriteError> {
        let (c, bucket) = (self.client.clone(), self.cfg.bucket.clone());
        self.rt.block_on(async move {
            match c.head_bucket().bucket(&bucket).send().await {
                Ok(_) => Ok(()),
                Err(e) => {
                    let text = describe(&e);
                    let not_found = e.as_service_error().is_some_and(|s| s.is_not_found())
                        || e.raw_response().is_some_and(|r| r.status().as_u16() == 404);
                    if not_found {
                        Err(WriteError::Config(format!(
                            "S3 bucket `{bucket}` does not exist (S3BucketName); create it first"
                        )))
                    } else {
                        Err(err(&format!("bucket `{bucket}` is not reachable"), text))
                    }
                }
            }
        })
    }

    /// Aborts the incomplete multipart uploads of our objects older than
    /// S3AbortIncompleteAfter. Younger ones may be another node's uploads in progress.
    /// One abort that fails (another node may have aborted the upload a moment before)
    /// does not stop the others.
    fn sweep_leftovers(&mut self) -> Result<Swept, WriteError> {
        let mut spools = Swept::new("open-file spools");
        if let Some((dir, age)) = &self.spool {
            let now = std::time::SystemTime::now();
            sweep_hidden(dir, SPOOL_SUFFIX, false, now, *age, &mut spools);
        }
        let Some(age) = self.cfg.abort_incomplete_after else {
            return Ok(spools);
        };
        let stale = left_behind(
            self.incomplete_uploads()?,
            std::time::SystemTime::now(),
            age,
        );
        let (c, bucket) = (self.client.clone(), self.cfg.bucket.clone());
        let mut swept = self.rt.block_on(async move {
            let mut swept = Swept::new("incomplete uploads");
            for u in stale {
                match c
                    .abort_multipart_upload()
                    .bucket(&bucket)
                    .key(&u.key)
                    .upload_id(&u.id)
                    .send()
                    .await
                {
                    Ok(_) => swept.removed.push(u.key),
                    Err(e) => swept.failed.push(format!(
                        "AbortMultipartUpload {}: {}",
                        u.key,
                        describe(&e)
                    )),
                }
            }
            swept
        });
        if spools != Swept::new(spools.kind) {
            swept.kind = "incomplete uploads and open-file spools";
            swept.removed.append(&mut spools.removed);
            swept.failed.append(&mut spools.failed);
        }
        Ok(swept)
    }

    fn describe(&self) -> String {
        let where_ = if self.cfg.endpoint.is_empty() {
            "AWS".to_string()
        } else {
            self.cfg.endpoint.clone()
        };
        // The upload settings too: a bucket policy that refuses writes is easier to
        // diagnose when the log says what was sent.
        let mut with = Vec::new();
        if let Some(e) = self.cfg.encryption.header() {
            with.push(format!("SSE {e}"));
        }
        if !self.cfg.kms_key_id.is_empty() {
            with.push(format!("KMS key {}", self.cfg.kms_key_id));
        }
        if !self.cfg.storage_class.is_empty() {
            with.push(format!("storage class {}", self.cfg.storage_class));
        }
        if !self.cfg.acl.is_empty() {
            with.push(format!("ACL {}", self.cfg.acl));
        }
        let with = if with.is_empty() {
            String::new()
        } else {
            format!(" ({})", with.join(", "))
        };
        format!(
            "S3 writer to s3://{}/{} at {where_}{with}",
            self.cfg.bucket, self.cfg.key_prefix
        )
    }
}

/// A multipart upload begun and neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The full object key (with S3KeyPrefix).
    pub key: String,
    pub id: String,
    pub initiated: std::time::SystemTime,
}

/// Of `uploads`, those a crash left: of our objects, begun at least `age` before `now`.
fn left_behind(uploads: Vec<Upload>, now: std::time::SystemTime, age: Duration) -> Vec<Upload> {
    uploads
        .into_iter()
        .filter(|u| crate::partition::is_object_name(&u.key))
        .filter(|u| now.duration_since(u.initiated).is_ok_and(|d| d >= age))
        .collect()
}

/// How an object is stored, as S3 reports it: to check the upload settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredWith {
    pub encryption: Option<String>,
    pub kms_key_id: Option<String>,
    /// `None` when S3 reports none, which means STANDARD.
    pub storage_class: Option<String>,
    /// The object's ACL grants, each `PERMISSION grantee` (a group URI or an owner id).
    pub grants: Vec<String>,
}

/// Read access for tools and tests (the exactly-once verifier reads files back).
impl S3Writer {
    /// Every object key under `prefix`.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, WriteError> {
        let keys = self.rt.block_on(list_objects(
            &self.client,
            &self.cfg.bucket,
            &self.key(prefix),
        ))?;
        Ok(keys.into_iter().map(|(k, _)| k).collect())
    }

    /// The incomplete multipart uploads under S3KeyPrefix, whoever began them.
    pub fn incomplete_uploads(&self) -> Result<Vec<Upload>, WriteError> {
        let (c, bucket, prefix) = (self.client.clone(), self.cfg.bucket.clone(), self.key(""));
        self.rt.block_on(async move {
            let mut out = Vec::new();
            let (mut key_marker, mut id_marker) = (None, None);
            loop {
                let r = c
                    .list_multipart_uploads()
                    .bucket(&bucket)
                    .prefix(&prefix)
                    .set_key_marker(key_marker)
                    .set_upload_id_marker(id_marker)
                    .send()
                    .await
                    .map_err(|e| err("ListMultipartUploads", describe(&e)))?;
                for u in r.uploads() {
                    let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                        continue;
                    };
                    // An upload without a start time is taken as begun now: never stale.
                    let initiated = u
                        .initiated()
                        .and_then(|t| std::time::SystemTime::try_from(*t).ok())
                        .unwrap_or_else(std::time::SystemTime::now);
                    out.push(Upload {
                        key: key.to_string(),
                        id: id.to_string(),
                        initiated,
                    });
                }
                if r.is_truncated() != Some(true) {
                    break;
                }
                key_marker = r.next_key_marker().map(str::to_string);
                id_marker = r.next_upload_id_marker().map(str::to_string);
                if key_marker.is_none() && id_marker.is_none() {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// Begins a multipart upload of `key` (under S3KeyPrefix) with one part and leaves it
    /// incomplete, as a write cut short by a crash does (tests of the sweep).
    pub fn begin_upload(&self, key: &str, part: &[u8]) -> Result<String, WriteError> {
        let (c, bucket, key, part) = (
            self.client.clone(),
            self.cfg.bucket.clone(),
            self.key(key),
            part.to_vec(),
        );
        self.rt.block_on(async move {
            let up = c
                .create_multipart_upload()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| err("CreateMultipartUpload", describe(&e)))?;
            let id = up.upload_id().unwrap_or_default().to_string();
            c.upload_part()
                .bucket(&bucket)
                .key(&key)
                .upload_id(&id)
                .part_number(1)
                .body(ByteStream::from(part))
                .send()
                .await
                .map_err(|e| err("UploadPart", describe(&e)))?;
            Ok(id)
        })
    }

    /// An object's bytes and ETag.
    pub fn get(&self, key: &str) -> Result<(Vec<u8>, String), WriteError> {
        let (c, bucket, key) = (
            self.client.clone(),
            self.cfg.bucket.clone(),
            key.to_string(),
        );
        self.rt.block_on(async move {
            let r = c
                .get_object()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| err(&format!("GetObject {key}"), describe(&e)))?;
            let etag = r.e_tag().unwrap_or_default().to_string();
            let data = r
                .body
                .collect()
                .await
                .map_err(|e| err("GetObject body", e))?
                .into_bytes()
                .to_vec();
            Ok((data, etag))
        })
    }

    /// How an object is stored, as S3 reports it (HeadObject and GetObjectAcl).
    pub fn stored_with(&self, key: &str) -> Result<StoredWith, WriteError> {
        let (c, bucket, key) = (
            self.client.clone(),
            self.cfg.bucket.clone(),
            key.to_string(),
        );
        self.rt.block_on(async move {
            let head = c
                .head_object()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| err(&format!("HeadObject {key}"), describe(&e)))?;
            let acl = c
                .get_object_acl()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| err(&format!("GetObjectAcl {key}"), describe(&e)))?;
            let grants = acl
                .grants()
                .iter()
                .map(|g| {
                    let who = g.grantee().and_then(|w| w.uri().or(w.id())).unwrap_or("?");
                    let what = g.permission().map(|p| p.as_str()).unwrap_or("?");
                    format!("{what} {who}")
                })
                .collect();
            Ok(StoredWith {
                encryption: head
                    .server_side_encryption()
                    .map(|e| e.as_str().to_string()),
                kms_key_id: head.ssekms_key_id().map(str::to_string),
                storage_class: head.storage_class().map(|c| c.as_str().to_string()),
                grants,
            })
        })
    }

    /// Creates the bucket (tests and first-time setup; the writer itself never does).
    pub fn create_bucket(&self) -> Result<(), WriteError> {
        let (c, bucket) = (self.client.clone(), self.cfg.bucket.clone());
        self.rt.block_on(async move {
            c.create_bucket()
                .bucket(&bucket)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| err("CreateBucket", describe(&e)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigBuilder;

    /// moto reports every upload as begun in 2010, so the age rule is checked here: an
    /// upload younger than S3AbortIncompleteAfter may be another node's, in progress.
    #[test]
    fn only_our_uploads_older_than_the_age_are_left_behind() {
        let now = std::time::SystemTime::now();
        let hour = Duration::from_secs(3600);
        let ours = "p/a=b/01KB2S5Q8M3N4P5R6S7T8V9W0X-k.parquet";
        let up = |key: &str, ago: Duration| Upload {
            key: key.into(),
            id: format!("{key}@{ago:?}"),
            initiated: now - ago,
        };
        let found = left_behind(
            vec![
                up(ours, 2 * hour),
                up(ours, hour),
                up(ours, hour - Duration::from_secs(1)),
                up("p/a=b/report.parquet", 2 * hour),
            ],
            now,
            hour,
        );
        let ids: Vec<&str> = found.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, [format!("{ours}@7200s"), format!("{ours}@3600s")]);
        let future = Upload {
            initiated: now + hour,
            ..up(ours, Duration::ZERO)
        };
        assert!(
            left_behind(vec![future], now, hour).is_empty(),
            "clock skew"
        );
    }

    #[test]
    fn the_description_names_the_upload_settings() {
        let mut b = ConfigBuilder::new();
        b.set_all(&[
            ("WriterType", "aws-s3"),
            ("S3BucketName", "logs"),
            ("S3Region", "eu-west-1"),
            ("S3AccessKey", "a"),
            ("S3SecretKey", "b"),
            ("S3KeyPrefix", "p/"),
        ])
        .unwrap();
        let plain = S3Writer::new(&b.clone().build().unwrap()).unwrap();
        assert_eq!(plain.describe(), "S3 writer to s3://logs/p/ at AWS");
        b.set_all(&[
            ("S3ServerSideEncryption", "aws:kms"),
            ("S3KmsKeyId", "alias/k"),
            ("S3StorageClass", "standard_ia"),
            ("S3Acl", "bucket-owner-full-control"),
        ])
        .unwrap();
        let w = S3Writer::new(&b.build().unwrap()).unwrap();
        assert_eq!(
            w.describe(),
            "S3 writer to s3://logs/p/ at AWS (SSE aws:kms, KMS key alias/k, \
             storage class STANDARD_IA, ACL bucket-owner-full-control)"
        );
    }
}
