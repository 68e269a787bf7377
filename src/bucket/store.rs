//! Building an `object_store` client from an [`ObjstoreConfig`], and counting what it
//! does on the wire.
//!
//! Owns: the mapping from Thanos's keys to object_store's builders (see the table in
//! `docs/bucket.md`), the retry policy, and [`HttpCounters`]: every HTTP attempt the
//! client makes, and every one that failed in a way object_store retries (5xx,
//! throttling, timeouts, dropped connections). object_store retries with exponential
//! backoff and jitter (100 ms doubling up to 15 s, `max_retries` attempts, at most 3
//! minutes per request, resuming interrupted downloads from where they stopped).
//! Must not: know about blocks.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{Attribute, AttributeValue, Attributes, ClientOptions, ObjectStore, RetryConfig};

use super::config::{AzureConfig, BucketLookup, GcsConfig, HttpConfig, ObjstoreConfig, Provider, S3Config};
use super::error::{BucketError, Result};
use super::filesystem::FsBucket;

/// Counters of HTTP attempts, shared by every request of one client. Cheap to read at
/// any time (`/metrics`).
#[derive(Debug, Default)]
pub struct HttpCounters {
    /// Every HTTP request sent, retries included.
    pub requests: AtomicU64,
    /// Responses with status 5xx other than 503.
    pub server_errors: AtomicU64,
    /// 429 Too Many Requests and 503 Slow Down / Service Unavailable.
    pub throttled: AtomicU64,
    /// Requests that timed out (including 408 responses).
    pub timeouts: AtomicU64,
    /// Connections refused, reset or dropped.
    pub network_errors: AtomicU64,
}

impl HttpCounters {
    /// Attempts that failed in a retryable way; each one was retried unless it was the
    /// last attempt allowed.
    pub fn transient_failures(&self) -> u64 {
        self.server_errors.load(Ordering::Relaxed)
            + self.throttled.load(Ordering::Relaxed)
            + self.timeouts.load(Ordering::Relaxed)
            + self.network_errors.load(Ordering::Relaxed)
    }
}

/// Wraps object_store's reqwest client to count attempts and failures.
#[derive(Debug)]
struct CountingConnector {
    counters: Arc<HttpCounters>,
}

impl HttpConnector for CountingConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(CountingService { inner, counters: self.counters.clone() }))
    }
}

#[derive(Debug)]
struct CountingService {
    inner: HttpClient,
    counters: Arc<HttpCounters>,
}

#[async_trait::async_trait]
impl HttpService for CountingService {
    async fn call(&self, req: HttpRequest) -> std::result::Result<HttpResponse, HttpError> {
        let c = &self.counters;
        c.requests.fetch_add(1, Ordering::Relaxed);
        let r = self.inner.execute(req).await;
        match &r {
            Ok(resp) => {
                let s = resp.status().as_u16();
                if s == 429 || s == 503 {
                    c.throttled.fetch_add(1, Ordering::Relaxed);
                } else if s == 408 {
                    c.timeouts.fetch_add(1, Ordering::Relaxed);
                } else if s >= 500 {
                    c.server_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => match e.kind() {
                HttpErrorKind::Timeout => {
                    c.timeouts.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    c.network_errors.fetch_add(1, Ordering::Relaxed);
                }
            },
        }
        r
    }
}

/// What the bucket client needs besides the store: upload settings from the config.
#[derive(Clone, Debug)]
pub struct UploadSettings {
    /// Files up to this size go up in one PUT; larger ones as multipart uploads with
    /// parts of this size.
    pub part_size: u64,
    pub multipart: bool,
    /// Attributes set on every object written (S3 `put_user_metadata`, storage class).
    pub attributes: Attributes,
}

impl Default for UploadSettings {
    fn default() -> Self {
        UploadSettings { part_size: 64 << 20, multipart: true, attributes: Attributes::new() }
    }
}

/// A built client: the store (prefix applied), its settings, the values to scrub from
/// any message (secrets), and for a FILESYSTEM bucket its files, for direct copies.
pub struct Built {
    pub store: Arc<dyn ObjectStore>,
    pub upload: UploadSettings,
    pub secrets: Vec<String>,
    pub filesystem: Option<FsBucket>,
}

/// Builds the object_store client the configuration describes. The S3 region is looked
/// up over the network when it is neither configured nor in the endpoint's name.
pub async fn build(cfg: &ObjstoreConfig, counters: Arc<HttpCounters>) -> Result<Built> {
    let mut filesystem = None;
    let (store, upload, secrets): (Arc<dyn ObjectStore>, UploadSettings, Vec<String>) = match &cfg.provider {
        Provider::S3(c) => {
            let (s, u) = build_s3(c, counters).await?;
            (s, u, vec![c.secret_key.expose().to_string(), c.session_token.expose().to_string()])
        }
        Provider::Gcs(c) => {
            let s = build_gcs(c, counters)?;
            let part = if c.chunk_size_bytes > 0 { c.chunk_size_bytes as u64 } else { 16 << 20 };
            (s, UploadSettings { part_size: part, ..Default::default() }, vec![c.service_account.expose().to_string()])
        }
        Provider::Azure(c) => {
            let s = build_azure(c, counters)?;
            (
                s,
                UploadSettings::default(),
                vec![
                    c.storage_account_key.expose().to_string(),
                    c.storage_connection_string.expose().to_string(),
                    c.client_secret.expose().to_string(),
                ],
            )
        }
        Provider::Filesystem(c) => {
            let dir = PathBuf::from(&c.directory);
            std::fs::create_dir_all(&dir)
                .map_err(|e| BucketError::Setup(format!("config.directory {}: cannot create: {e}", dir.display())))?;
            let fs = LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| BucketError::Setup(format!("config.directory {}: {e}", dir.display())))?
                .with_automatic_cleanup(true);
            let fs = Arc::new(fs);
            filesystem = Some(FsBucket::new(fs.clone(), &cfg.prefix));
            (fs, UploadSettings::default(), Vec::new())
        }
    };
    let store: Arc<dyn ObjectStore> =
        if cfg.prefix.is_empty() { store } else { Arc::new(PrefixStore::new(store, cfg.prefix.as_str())) };
    Ok(Built { store, upload, secrets: secrets.into_iter().filter(|s| s.len() >= 4).collect(), filesystem })
}

fn retry_config(max_retries: i64) -> RetryConfig {
    let mut r = RetryConfig::default();
    if max_retries > 0 {
        r.max_retries = max_retries as usize;
    }
    r
}

/// `http_config` → reqwest options through object_store.
fn client_options(h: &HttpConfig, allow_http: bool) -> Result<ClientOptions> {
    let mut o = ClientOptions::new().with_allow_http(allow_http);
    // object_store has no response-header timeout; the closest is a whole-request
    // timeout. Interrupted downloads resume by range, so a long transfer is not lost.
    if !h.response_header_timeout.is_zero() {
        o = o.with_timeout(h.response_header_timeout.max(Duration::from_secs(30)));
    } else {
        o = o.with_timeout_disabled();
    }
    if !h.tls_handshake_timeout.is_zero() {
        o = o.with_connect_timeout(h.tls_handshake_timeout);
    }
    if !h.idle_conn_timeout.is_zero() {
        o = o.with_pool_idle_timeout(h.idle_conn_timeout);
    }
    if h.max_idle_conns_per_host > 0 {
        o = o.with_pool_max_idle_per_host(h.max_idle_conns_per_host as usize);
    }
    if h.insecure_skip_verify || h.tls_config.insecure_skip_verify {
        o = o.with_allow_invalid_certificates(true);
    }
    let t = &h.tls_config;
    if !t.ca_file.is_empty() {
        let pem = std::fs::read(&t.ca_file)
            .map_err(|e| BucketError::Setup(format!("http_config.tls_config.ca_file {}: {e}", t.ca_file)))?;
        let certs = object_store::Certificate::from_pem_bundle(&pem).map_err(|e| {
            BucketError::Setup(format!(
                "http_config.tls_config.ca_file {}: not a PEM certificate bundle: {e}",
                t.ca_file
            ))
        })?;
        for c in certs {
            o = o.with_root_certificate(c);
        }
    }
    if !t.cert_file.is_empty() || !t.key_file.is_empty() {
        return Err(BucketError::Setup("http_config.tls_config.cert_file/key_file: client certificates (mutual TLS) are not supported by strata's object_store client".into()));
    }
    if !t.server_name.is_empty() {
        return Err(BucketError::Setup("http_config.tls_config.server_name: overriding the TLS server name is not supported by strata's object_store client".into()));
    }
    Ok(o)
}

/// minio-go's `auto` lookup: virtual-hosted style for Amazon, Aliyun and Google
/// endpoints (when the bucket name is DNS-safe), path style elsewhere.
pub fn virtual_hosted(c: &S3Config) -> bool {
    match c.bucket_lookup_type {
        BucketLookup::VirtualHosted => true,
        BucketLookup::Path => false,
        BucketLookup::Auto => {
            let host = c.endpoint.split(':').next().unwrap_or("").to_ascii_lowercase();
            let known = host.ends_with(".amazonaws.com")
                || host.ends_with(".amazonaws.com.cn")
                || host.ends_with(".aliyuncs.com")
                || host == "storage.googleapis.com";
            // A dotted name breaks the wildcard certificate of `*.s3.amazonaws.com`.
            known && (c.insecure || !c.bucket.contains('.'))
        }
    }
}

/// The region named in an Amazon endpoint: `s3.eu-west-1.amazonaws.com`,
/// `s3-eu-west-1.amazonaws.com`, `s3.dualstack.eu-west-1.amazonaws.com`.
pub fn region_from_endpoint(endpoint: &str) -> Option<String> {
    let host = endpoint.split(':').next()?.to_ascii_lowercase();
    let rest = host.strip_suffix(".amazonaws.com").or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let parts: Vec<&str> = rest.split('.').collect();
    let region = match parts.as_slice() {
        ["s3"] => return None,
        ["s3", "dualstack", r] | ["s3", r] | [_, "s3", r] => r.to_string(),
        [single] => single.strip_prefix("s3-").filter(|r| *r != "external-1")?.to_string(),
        _ => return None,
    };
    (!region.is_empty()).then_some(region)
}

async fn build_s3(c: &S3Config, counters: Arc<HttpCounters>) -> Result<(Arc<dyn ObjectStore>, UploadSettings)> {
    // The environment first (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
    // AWS_REGION, web identity, ECS/EKS container credentials, then instance metadata),
    // then the config file's keys on top.
    let options = client_options(&c.http_config, c.insecure)?;
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(&c.bucket)
        .with_client_options(options.clone())
        .with_retry(retry_config(c.max_retries))
        .with_http_connector(CountingConnector { counters });
    let scheme = if c.insecure { "http" } else { "https" };
    if virtual_hosted(c) {
        b = b.with_endpoint(format!("{scheme}://{}.{}", c.bucket, c.endpoint)).with_virtual_hosted_style_request(true);
    } else {
        b = b.with_endpoint(format!("{scheme}://{}", c.endpoint)).with_virtual_hosted_style_request(false);
    }
    b = b.with_allow_http(c.insecure);
    if !c.access_key.is_empty() {
        b = b.with_access_key_id(&c.access_key).with_secret_access_key(c.secret_key.expose());
        if !c.session_token.is_empty() {
            b = b.with_token(c.session_token.expose());
        }
    }
    let region = if !c.region.is_empty() {
        Some(c.region.clone())
    } else if std::env::var_os("AWS_REGION").is_some() || std::env::var_os("AWS_DEFAULT_REGION").is_some() {
        None // from_env took it
    } else if let Some(r) = region_from_endpoint(&c.endpoint) {
        Some(r)
    } else if c.endpoint.to_ascii_lowercase().ends_with("amazonaws.com") {
        // s3.amazonaws.com: ask Amazon where the bucket lives, as minio-go does.
        let r = object_store::aws::resolve_bucket_region(&c.bucket, &options).await.map_err(|e| {
            BucketError::Setup(format!(
                "cannot find the region of bucket {:?} (set config.region): {}",
                c.bucket,
                e.to_string().replace('\n', " ")
            ))
        })?;
        Some(r)
    } else {
        Some("us-east-1".to_string())
    };
    if let Some(r) = region {
        b = b.with_region(r);
    }
    if !c.sts_endpoint.is_empty() {
        b = b.with_config(object_store::aws::AmazonS3ConfigKey::StsEndpoint, &c.sts_endpoint);
    }
    match c.sse_config.kind.as_str() {
        "SSE-KMS" => {
            if !c.sse_config.kms_encryption_context.is_empty() {
                return Err(BucketError::Setup("sse_config.kms_encryption_context: not supported by strata's object_store client; remove it or use a key policy instead".into()));
            }
            b = b.with_sse_kms_encryption(&c.sse_config.kms_key_id);
        }
        "SSE-C" => {
            let key = std::fs::read(&c.sse_config.encryption_key).map_err(|e| {
                BucketError::Setup(format!("sse_config.encryption_key {}: {e}", c.sse_config.encryption_key))
            })?;
            if key.len() != 32 {
                return Err(BucketError::Setup(format!(
                    "sse_config.encryption_key {}: an SSE-C key is 32 bytes, the file holds {}",
                    c.sse_config.encryption_key,
                    key.len()
                )));
            }
            b = b.with_ssec_encryption(base64_encode(&key));
        }
        "SSE-S3" => {
            let key: object_store::aws::AmazonS3ConfigKey =
                "aws_server_side_encryption".parse().map_err(|e| BucketError::Setup(format!("sse_config: {e}")))?;
            b = b.with_config(key, "AES256");
        }
        _ => {}
    }
    let store =
        b.build().map_err(|e| BucketError::Setup(format!("S3 client: {}", e.to_string().replace('\n', " "))))?;
    let mut attributes = Attributes::new();
    for (k, v) in &c.put_user_metadata {
        if k.eq_ignore_ascii_case("X-Amz-Storage-Class") {
            attributes.insert(Attribute::StorageClass, AttributeValue::from(v.clone()));
        } else {
            attributes.insert(Attribute::Metadata(k.clone().into()), AttributeValue::from(v.clone()));
        }
    }
    Ok((
        Arc::new(store),
        UploadSettings { part_size: c.part_size.max(5 << 20), multipart: !c.disable_multipart, attributes },
    ))
}

fn build_gcs(c: &GcsConfig, counters: Arc<HttpCounters>) -> Result<Arc<dyn ObjectStore>> {
    // GOOGLE_SERVICE_ACCOUNT(_PATH/_KEY), GOOGLE_APPLICATION_CREDENTIALS, gcloud's
    // application default credentials, then the metadata server.
    let mut b = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(&c.bucket)
        .with_client_options(client_options(&c.http_config, false)?)
        .with_retry(retry_config(c.max_retries))
        .with_http_connector(CountingConnector { counters });
    if !c.service_account.is_empty() {
        b = b.with_service_account_key(c.service_account.expose());
    }
    let store =
        b.build().map_err(|e| BucketError::Setup(format!("GCS client: {}", e.to_string().replace('\n', " "))))?;
    Ok(Arc::new(store))
}

/// The fields of an Azure connection string strata uses.
#[derive(Default)]
struct ConnectionString {
    account: Option<String>,
    key: Option<String>,
    blob_endpoint: Option<String>,
    sas: Option<String>,
    protocol: Option<String>,
    suffix: Option<String>,
    dev: bool,
}

fn parse_connection_string(s: &str) -> ConnectionString {
    let mut c = ConnectionString::default();
    for part in s.split(';') {
        let Some((k, v)) = part.split_once('=') else { continue };
        let v = v.trim().to_string();
        match k.trim() {
            "AccountName" => c.account = Some(v),
            "AccountKey" => c.key = Some(v),
            "BlobEndpoint" => c.blob_endpoint = Some(v),
            "SharedAccessSignature" => c.sas = Some(v),
            "DefaultEndpointsProtocol" => c.protocol = Some(v),
            "EndpointSuffix" => c.suffix = Some(v),
            "UseDevelopmentStorage" => c.dev = v.eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    c
}

fn build_azure(c: &AzureConfig, counters: Arc<HttpCounters>) -> Result<Arc<dyn ObjectStore>> {
    let max_retries = if c.pipeline_max_tries > 0 { c.pipeline_max_tries - 1 } else { c.max_retries };
    let mut retry = retry_config(max_retries);
    if !c.pipeline_retry_delay.is_zero() {
        retry.backoff.init_backoff = c.pipeline_retry_delay;
    }
    if !c.pipeline_max_retry_delay.is_zero() {
        retry.backoff.max_backoff = c.pipeline_max_retry_delay;
    }
    let mut options = client_options(&c.http_config, false)?;
    if !c.pipeline_try_timeout.is_zero() {
        options = options.with_timeout(c.pipeline_try_timeout);
    }
    // AZURE_STORAGE_ACCOUNT_KEY, AZURE_CLIENT_ID/SECRET, AZURE_TENANT_ID, federated
    // token files, ... then managed identity.
    let mut b = MicrosoftAzureBuilder::from_env()
        .with_account(&c.storage_account)
        .with_container_name(&c.container)
        .with_retry(retry)
        .with_http_connector(CountingConnector { counters });
    let mut endpoint = format!("https://{}.{}", c.storage_account, c.endpoint);
    if !c.storage_connection_string.is_empty() {
        let cs = parse_connection_string(c.storage_connection_string.expose());
        if cs.dev {
            b = b.with_use_emulator(true);
        }
        if let Some(a) = &cs.account {
            b = b.with_account(a);
        }
        if let Some(k) = &cs.key {
            b = b.with_access_key(k);
        }
        if let Some(sas) = &cs.sas {
            let pairs: Vec<(String, String)> = sas
                .trim_start_matches('?')
                .split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            b = b.with_sas_authorization(pairs);
        }
        if let Some(e) = &cs.blob_endpoint {
            endpoint = e.trim_end_matches('/').to_string();
            if endpoint.starts_with("http://") {
                options = options.with_allow_http(true);
            }
        } else if let Some(suffix) = &cs.suffix {
            let account = cs.account.as_deref().unwrap_or(&c.storage_account);
            endpoint = format!("{}://{account}.blob.{suffix}", cs.protocol.as_deref().unwrap_or("https"));
        }
    }
    if !c.storage_account_key.is_empty() {
        b = b.with_access_key(c.storage_account_key.expose());
    }
    if !c.client_id.is_empty() {
        b = b.with_client_id(&c.client_id).with_client_secret(c.client_secret.expose()).with_tenant_id(&c.az_tenant_id);
    }
    if !c.user_assigned_id.is_empty() {
        // A managed identity chosen by its client ID.
        b = b.with_client_id(&c.user_assigned_id);
    }
    b = b.with_endpoint(endpoint).with_client_options(options);
    let store =
        b.build().map_err(|e| BucketError::Setup(format!("Azure client: {}", e.to_string().replace('\n', " "))))?;
    Ok(Arc::new(store))
}

fn base64_encode(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if c.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_from_amazon_endpoints() {
        for (e, want) in [
            ("s3.eu-west-1.amazonaws.com", Some("eu-west-1")),
            ("s3-eu-west-1.amazonaws.com", Some("eu-west-1")),
            ("s3.dualstack.us-east-2.amazonaws.com", Some("us-east-2")),
            ("s3.amazonaws.com", None),
            ("s3-external-1.amazonaws.com", None),
            ("minio:9000", None),
            ("s3.cn-north-1.amazonaws.com.cn", Some("cn-north-1")),
        ] {
            assert_eq!(region_from_endpoint(e).as_deref(), want, "{e}");
        }
    }

    #[test]
    fn auto_lookup_is_virtual_hosted_only_for_known_clouds() {
        let cfg = |endpoint: &str, bucket: &str, lookup| {
            let y = format!(
                "type: S3\nconfig: {{bucket: {bucket}, endpoint: '{endpoint}', bucket_lookup_type: {lookup}}}\n"
            );
            match ObjstoreConfig::parse(&y).unwrap().provider {
                Provider::S3(c) => c,
                _ => unreachable!(),
            }
        };
        assert!(virtual_hosted(&cfg("s3.eu-west-1.amazonaws.com", "b", "auto")));
        assert!(
            !virtual_hosted(&cfg("s3.eu-west-1.amazonaws.com", "a.b", "auto")),
            "dotted names break TLS wildcard certs"
        );
        assert!(!virtual_hosted(&cfg("127.0.0.1:9000", "b", "auto")));
        assert!(virtual_hosted(&cfg("minio:9000", "b", "virtual-hosted")));
        assert!(!virtual_hosted(&cfg("s3.amazonaws.com", "b", "path")));
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(i.as_bytes()), o);
        }
    }

    #[test]
    fn every_provider_builds_without_touching_the_network() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        for yaml in [
            "type: S3\nconfig: {bucket: b, endpoint: 's3.eu-west-1.amazonaws.com', access_key: a, secret_key: s, put_user_metadata: {X-Amz-Storage-Class: STANDARD_IA, team: obs}, sse_config: {type: SSE-S3}}\nprefix: p\n".to_string(),
            "type: S3\nconfig: {bucket: b, endpoint: 'minio:9000', insecure: true, sse_config: {type: SSE-KMS, kms_key_id: k}}\n".to_string(),
            "type: GCS\nconfig: {bucket: b, chunk_size_bytes: 8388608}\n".to_string(),
            "type: AZURE\nconfig: {storage_account: acct, container: c, storage_account_key: a2V5}\n".to_string(),
            "type: AZURE\nconfig: {storage_account: acct, container: c, storage_connection_string: 'DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net'}\n".to_string(),
            "type: AZURE\nconfig: {storage_account: acct, container: c, az_tenant_id: t, client_id: i, client_secret: s}\n".to_string(),
            format!("type: FILESYSTEM\nconfig: {{directory: '{}'}}\n", dir.path().join("fs").display()),
        ] {
            let cfg = ObjstoreConfig::parse(&yaml).unwrap();
            let built = rt.block_on(build(&cfg, Arc::default())).unwrap_or_else(|e| panic!("{yaml}: {e}"));
            if yaml.contains("X-Amz-Storage-Class") {
                assert_eq!(built.upload.attributes.len(), 2);
            }
        }
        let cfg =
            ObjstoreConfig::parse("type: GCS\nconfig: {bucket: b, service_account: 'not json TOPSECRET'}\n").unwrap();
        let e = rt.block_on(build(&cfg, Arc::default())).err().expect("a bad service account is an error");
        assert!(!e.to_string().contains("TOPSECRET"), "{e}");
        let cfg = ObjstoreConfig::parse("type: S3\nconfig: {bucket: b, endpoint: e, http_config: {tls_config: {cert_file: c.pem, key_file: k.pem}}}\n").unwrap();
        let e = rt.block_on(build(&cfg, Arc::default())).err().expect("client certificates are refused");
        assert!(e.to_string().contains("not supported"), "{e}");
    }

    /// A one-thread HTTP server answering each request with the next canned status and
    /// body (then 200 with `last`), closing every connection. Returns its port.
    fn fake_s3(mut statuses: Vec<u16>, last: &'static str) -> u16 {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            statuses.reverse();
            for conn in listener.incoming() {
                let Ok(mut c) = conn else { return };
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let (status, body) = match statuses.pop() {
                    Some(s) => {
                        (s, "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>")
                    }
                    None => (200, last),
                };
                let _ = write!(
                    c,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        port
    }

    const EMPTY_LIST: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><Name>b</Name><Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><Delimiter>/</Delimiter><IsTruncated>false</IsTruncated></ListBucketResult>";

    #[test]
    fn transient_failures_are_retried_and_counted() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // Throttled twice, a server error once, then the answer: the listing succeeds.
        let port = fake_s3(vec![503, 429, 500], EMPTY_LIST);
        let cfg = ObjstoreConfig::parse(&format!("type: S3\nconfig: {{bucket: b, endpoint: '127.0.0.1:{port}', insecure: true, access_key: a, secret_key: s}}\n")).unwrap();
        let b = rt.block_on(crate::bucket::Bucket::open(&cfg)).unwrap();
        rt.block_on(b.check()).unwrap();
        let s = b.stats();
        assert_eq!((s.http_requests, s.throttled, s.server_errors, s.transient_failures), (4, 2, 1, 3), "{s:?}");
        assert_eq!(s.operations.iter().find(|o| o.0 == "iter").map(|o| (o.1, o.2)), Some((1, 0)));

        // More failures than max_retries allows: one transient error naming the code.
        let port = fake_s3(vec![503; 10], EMPTY_LIST);
        let cfg = ObjstoreConfig::parse(&format!("type: S3\nconfig: {{bucket: b, endpoint: '127.0.0.1:{port}', insecure: true, access_key: a, secret_key: s, max_retries: 2}}\n")).unwrap();
        let b = rt.block_on(crate::bucket::Bucket::open(&cfg)).unwrap();
        let e = rt.block_on(b.check()).unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert_eq!(e.kind(), Some(crate::bucket::ErrorKind::Transient));
        assert_eq!(b.stats().http_requests, 3, "the first attempt and two retries");
        let msg = e.to_string();
        assert!(msg.contains("HTTP 503") && msg.contains("after 2 retries") && !msg.contains('\n'), "{msg}");
    }

    #[test]
    fn connection_strings() {
        let c = parse_connection_string(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net",
        );
        assert_eq!(c.account.as_deref(), Some("acct"));
        assert_eq!(c.key.as_deref(), Some("a2V5"));
        assert_eq!(c.suffix.as_deref(), Some("core.windows.net"));
    }
}
