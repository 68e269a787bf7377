//! Thanos's objstore YAML (`--objstore.config-file` / `--objstore.config`), parsed as
//! strictly as Thanos parses it (`yaml.UnmarshalStrict`): an unknown key at any level is
//! an error naming the key and where it is, a missing required key is an error naming
//! it, and omitted keys keep Thanos's defaults. `docs/bucket.md` lists every key and
//! what strata does with it; `/work/shared/reference/formats.md` §14 is the source.
//!
//! Owns: turning YAML text into an [`ObjstoreConfig`], validating it the way
//! `thanos-io/objstore` does, and listing the keys strata accepts but cannot honour
//! ([`ObjstoreConfig::warnings`]). Must not: open connections or touch the bucket
//! (that is [`super::store`]), or ever put a secret's value into an error message.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde_yaml_ng::{Mapping, Value};

/// A key path (`config.http_config.tls_config.ca_file`) and what is wrong with it.
/// Its text never holds the value of a secret key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the key at fault; empty for the document as a whole.
    pub key: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "{}: {}", self.key, self.problem)
        }
    }
}

impl std::error::Error for ConfigError {}

fn err(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError { key: key.into(), problem: problem.into() }
}

type Result<T> = std::result::Result<T, ConfigError>;

/// A string that is never printed: `Debug` shows whether it is set, not its value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The value, for handing to the client library; never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "Secret(unset)" } else { "Secret(<redacted>)" })
    }
}

/// The whole objstore configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjstoreConfig {
    pub provider: Provider,
    /// `prefix` with its slashes trimmed; every key lives under `<prefix>/`. Empty: none.
    pub prefix: String,
}

/// `type` with its `config` block.
#[derive(Clone, Debug, PartialEq)]
pub enum Provider {
    S3(S3Config),
    Gcs(GcsConfig),
    Azure(AzureConfig),
    Filesystem(FilesystemConfig),
}

impl Provider {
    /// The `type` as Thanos spells it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Provider::S3(_) => "S3",
            Provider::Gcs(_) => "GCS",
            Provider::Azure(_) => "AZURE",
            Provider::Filesystem(_) => "FILESYSTEM",
        }
    }
}

/// `http_config` (S3, GCS, AZURE), with Thanos's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpConfig {
    pub idle_conn_timeout: Duration,
    pub response_header_timeout: Duration,
    pub insecure_skip_verify: bool,
    pub tls_handshake_timeout: Duration,
    pub expect_continue_timeout: Duration,
    pub max_idle_conns: i64,
    pub max_idle_conns_per_host: i64,
    pub max_conns_per_host: i64,
    pub disable_compression: bool,
    pub tls_config: TlsConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            idle_conn_timeout: Duration::from_secs(90),
            response_header_timeout: Duration::from_secs(120),
            insecure_skip_verify: false,
            tls_handshake_timeout: Duration::from_secs(10),
            expect_continue_timeout: Duration::from_secs(1),
            max_idle_conns: 100,
            max_idle_conns_per_host: 100,
            max_conns_per_host: 0,
            disable_compression: false,
            tls_config: TlsConfig::default(),
        }
    }
}

/// `http_config.tls_config`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
    pub server_name: String,
    pub insecure_skip_verify: bool,
}

/// `bucket_lookup_type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BucketLookup {
    /// Virtual-hosted for Amazon (and Aliyun, Google) endpoints, path style elsewhere,
    /// as minio-go decides.
    #[default]
    Auto,
    VirtualHosted,
    Path,
}

/// `sse_config`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseConfig {
    /// `""`, `SSE-S3`, `SSE-KMS` or `SSE-C`.
    pub kind: String,
    pub kms_key_id: String,
    pub kms_encryption_context: BTreeMap<String, String>,
    /// SSE-C: the path of a file holding the 32-byte key.
    pub encryption_key: String,
}

/// `type: S3`.
#[derive(Clone, Debug, PartialEq)]
pub struct S3Config {
    pub bucket: String,
    /// `host[:port]`, no scheme.
    pub endpoint: String,
    pub region: String,
    pub disable_dualstack: bool,
    pub aws_sdk_auth: bool,
    pub access_key: String,
    pub secret_key: Secret,
    pub session_token: Secret,
    pub insecure: bool,
    pub signature_version2: bool,
    pub put_user_metadata: BTreeMap<String, String>,
    pub http_config: HttpConfig,
    pub trace_enable: bool,
    pub list_objects_version: String,
    pub bucket_lookup_type: BucketLookup,
    pub send_content_md5: bool,
    pub disable_multipart: bool,
    pub part_size: u64,
    pub sse_config: SseConfig,
    pub sts_endpoint: String,
    pub max_retries: i64,
}

/// `type: GCS`.
#[derive(Clone, Debug, PartialEq)]
pub struct GcsConfig {
    pub bucket: String,
    /// The service account JSON itself (not a path); empty: Application Default Credentials.
    pub service_account: Secret,
    pub use_grpc: bool,
    pub grpc_conn_pool_size: i64,
    pub http_config: HttpConfig,
    pub chunk_size_bytes: i64,
    pub max_retries: i64,
}

/// `type: AZURE`.
#[derive(Clone, Debug, PartialEq)]
pub struct AzureConfig {
    pub storage_account: String,
    pub storage_account_key: Secret,
    pub storage_connection_string: Secret,
    pub container: String,
    pub endpoint: String,
    pub storage_create_container: bool,
    pub az_tenant_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub user_assigned_id: String,
    pub max_retries: i64,
    pub reader_max_retry_requests: i64,
    pub pipeline_max_tries: i64,
    pub pipeline_try_timeout: Duration,
    pub pipeline_retry_delay: Duration,
    pub pipeline_max_retry_delay: Duration,
    pub http_config: HttpConfig,
    pub msi_resource: String,
}

/// `type: FILESYSTEM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilesystemConfig {
    pub directory: String,
}

/// Bucket types Thanos supports and strata does not.
const THANOS_ONLY_TYPES: &[&str] = &["SWIFT", "COS", "ALIYUNOSS", "BOS", "OCI", "OBS"];

impl ObjstoreConfig {
    /// Parses and validates the YAML text of an objstore configuration.
    pub fn parse(yaml: &str) -> Result<ObjstoreConfig> {
        let doc: Value =
            serde_yaml_ng::from_str(yaml).map_err(|e| err("", format!("not valid YAML: {}", yaml_error(&e))))?;
        let top = Fields::new(&doc, "", &["type", "config", "prefix"])?;
        let ty = top.string("type")?;
        if ty.is_empty() {
            return Err(err("type", "missing required key (one of S3, GCS, AZURE, FILESYSTEM)"));
        }
        let config = top.get("config");
        let provider = match ty.to_ascii_uppercase().as_str() {
            "S3" => Provider::S3(parse_s3(config)?),
            "GCS" => Provider::Gcs(parse_gcs(config)?),
            "AZURE" => Provider::Azure(parse_azure(config)?),
            "FILESYSTEM" => Provider::Filesystem(parse_filesystem(config)?),
            t if THANOS_ONLY_TYPES.contains(&t) => {
                return Err(err(
                    "type",
                    format!(
                        "{ty} is a Thanos bucket type strata does not support (supported: S3, GCS, AZURE, FILESYSTEM)"
                    ),
                ))
            }
            _ => return Err(err("type", format!("unknown bucket type {ty:?} (want S3, GCS, AZURE or FILESYSTEM)"))),
        };
        let prefix = top.string("prefix")?.trim_matches('/').to_string();
        Ok(ObjstoreConfig { provider, prefix })
    }

    /// A configuration for a directory on local disk (`type: FILESYSTEM`).
    pub fn filesystem(directory: impl Into<String>) -> ObjstoreConfig {
        ObjstoreConfig {
            provider: Provider::Filesystem(FilesystemConfig { directory: directory.into() }),
            prefix: String::new(),
        }
    }

    /// Keys that are set to something strata accepts but cannot do, one sentence each.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let http = |w: &mut Vec<String>, h: &HttpConfig| {
            if h.max_conns_per_host != 0 {
                w.push("http_config.max_conns_per_host is ignored: concurrency is bounded by strata's own concurrency flags".into());
            }
        };
        match &self.provider {
            Provider::S3(c) => {
                if c.signature_version2 {
                    w.push("signature_version2 is set, but strata (object_store) signs every request with AWS Signature Version 4; stores that accept only V2 will refuse them".into());
                }
                if c.list_objects_version == "v1" {
                    w.push("list_objects_version v1 is ignored: strata lists with ListObjectsV2".into());
                }
                if c.trace_enable {
                    w.push("trace.enable is ignored: strata does not trace S3 requests".into());
                }
                if !c.sts_endpoint.is_empty() && !c.access_key.is_empty() {
                    w.push("sts_endpoint is only used for web-identity credentials from the environment; static keys are set".into());
                }
                http(&mut w, &c.http_config);
            }
            Provider::Gcs(c) => {
                if c.use_grpc {
                    w.push("use_grpc is ignored: strata talks to GCS over its JSON API".into());
                }
                http(&mut w, &c.http_config);
            }
            Provider::Azure(c) => {
                if c.storage_create_container {
                    // The default; only worth a note in the docs, not a warning each run.
                }
                if !c.msi_resource.is_empty() {
                    w.push("msi_resource is deprecated and ignored (as in Thanos)".into());
                }
                http(&mut w, &c.http_config);
            }
            Provider::Filesystem(_) => {}
        }
        w
    }

    /// A short description for messages: `s3://bucket/prefix (endpoint host:port)`,
    /// `gs://bucket`, `filesystem:/dir`; never a secret.
    pub fn describe(&self) -> String {
        let (base, endpoint) = match &self.provider {
            Provider::S3(c) => (format!("s3://{}", c.bucket), Some(c.endpoint.as_str())),
            Provider::Gcs(c) => (format!("gs://{}", c.bucket), None),
            Provider::Azure(c) => (format!("azure://{}/{}", c.storage_account, c.container), Some(c.endpoint.as_str())),
            Provider::Filesystem(c) => (format!("filesystem:{}", c.directory), None),
        };
        let mut s = base;
        if !self.prefix.is_empty() {
            s.push('/');
            s.push_str(&self.prefix);
        }
        if let Some(e) = endpoint {
            s.push_str(&format!(" (endpoint {e})"));
        }
        s
    }
}

fn yaml_error(e: &serde_yaml_ng::Error) -> String {
    // serde_yaml_ng's syntax errors name a position, never a value.
    e.to_string().replace('\n', " ")
}

/// Validates `http_config`.
fn parse_http(v: Option<&Value>, path: &str) -> Result<HttpConfig> {
    let f = Fields::new_opt(
        v,
        path,
        &[
            "idle_conn_timeout",
            "response_header_timeout",
            "insecure_skip_verify",
            "tls_handshake_timeout",
            "expect_continue_timeout",
            "max_idle_conns",
            "max_idle_conns_per_host",
            "max_conns_per_host",
            "disable_compression",
            "tls_config",
        ],
    )?;
    let d = HttpConfig::default();
    let tls = Fields::new_opt(
        f.get("tls_config"),
        &f.path("tls_config"),
        &["ca_file", "cert_file", "key_file", "server_name", "insecure_skip_verify"],
    )?;
    let tls_config = TlsConfig {
        ca_file: tls.string("ca_file")?,
        cert_file: tls.string("cert_file")?,
        key_file: tls.string("key_file")?,
        server_name: tls.string("server_name")?,
        insecure_skip_verify: tls.bool("insecure_skip_verify", false)?,
    };
    Ok(HttpConfig {
        idle_conn_timeout: f.duration("idle_conn_timeout", d.idle_conn_timeout)?,
        response_header_timeout: f.duration("response_header_timeout", d.response_header_timeout)?,
        insecure_skip_verify: f.bool("insecure_skip_verify", false)?,
        tls_handshake_timeout: f.duration("tls_handshake_timeout", d.tls_handshake_timeout)?,
        expect_continue_timeout: f.duration("expect_continue_timeout", d.expect_continue_timeout)?,
        max_idle_conns: f.int("max_idle_conns", d.max_idle_conns)?,
        max_idle_conns_per_host: f.int("max_idle_conns_per_host", d.max_idle_conns_per_host)?,
        max_conns_per_host: f.int("max_conns_per_host", d.max_conns_per_host)?,
        disable_compression: f.bool("disable_compression", false)?,
        tls_config,
    })
}

const S3_KEYS: &[&str] = &[
    "bucket",
    "endpoint",
    "region",
    "disable_dualstack",
    "aws_sdk_auth",
    "access_key",
    "insecure",
    "signature_version2",
    "secret_key",
    "session_token",
    "put_user_metadata",
    "http_config",
    "trace",
    "list_objects_version",
    "bucket_lookup_type",
    "send_content_md5",
    "disable_multipart",
    "part_size",
    "sse_config",
    "sts_endpoint",
    "max_retries",
];

fn parse_s3(v: Option<&Value>) -> Result<S3Config> {
    let f = Fields::new_opt(v, "config", S3_KEYS)?;
    let trace = Fields::new_opt(f.get("trace"), &f.path("trace"), &["enable"])?;
    let sse = Fields::new_opt(
        f.get("sse_config"),
        &f.path("sse_config"),
        &["type", "kms_key_id", "kms_encryption_context", "encryption_key"],
    )?;
    let lookup = parse_bucket_lookup(&f)?;
    let c = S3Config {
        bucket: f.string("bucket")?,
        endpoint: f.string("endpoint")?,
        region: f.string("region")?,
        disable_dualstack: f.bool("disable_dualstack", false)?,
        aws_sdk_auth: f.bool("aws_sdk_auth", false)?,
        access_key: f.string("access_key")?,
        secret_key: Secret(f.string("secret_key")?),
        session_token: Secret(f.string("session_token")?),
        insecure: f.bool("insecure", false)?,
        signature_version2: f.bool("signature_version2", false)?,
        put_user_metadata: f.string_map("put_user_metadata")?,
        http_config: parse_http(f.get("http_config"), &f.path("http_config"))?,
        trace_enable: trace.bool("enable", false)?,
        list_objects_version: f.string("list_objects_version")?,
        bucket_lookup_type: lookup,
        send_content_md5: f.bool("send_content_md5", true)?,
        disable_multipart: f.bool("disable_multipart", false)?,
        part_size: f.uint("part_size", 64 << 20)?,
        sse_config: SseConfig {
            kind: sse.string("type")?,
            kms_key_id: sse.string("kms_key_id")?,
            kms_encryption_context: sse.string_map("kms_encryption_context")?,
            encryption_key: sse.string("encryption_key")?,
        },
        sts_endpoint: f.string("sts_endpoint")?,
        max_retries: f.int("max_retries", 0)?,
    };
    validate_s3(&c)?;
    Ok(c)
}

fn parse_bucket_lookup(f: &Fields) -> Result<BucketLookup> {
    Ok(match f.string("bucket_lookup_type")?.as_str() {
        "" | "auto" => BucketLookup::Auto,
        "virtual-hosted" => BucketLookup::VirtualHosted,
        "path" => BucketLookup::Path,
        other => {
            return Err(err(
                f.path("bucket_lookup_type"),
                format!("unsupported bucket lookup type {other:?} (want auto, virtual-hosted or path)"),
            ))
        }
    })
}

/// Thanos's checks (providers/s3/s3.go validate), plus a required bucket.
fn validate_s3(c: &S3Config) -> Result<()> {
    if c.bucket.is_empty() {
        return Err(err("config.bucket", "missing required key (the S3 bucket name)"));
    }
    if c.endpoint.is_empty() {
        return Err(err(
            "config.endpoint",
            "missing required key (host[:port] of the S3 API, e.g. s3.us-east-1.amazonaws.com)",
        ));
    }
    if c.endpoint.contains("://") || c.endpoint.contains('/') {
        return Err(err(
            "config.endpoint",
            "want host[:port] without a scheme or path (for plain HTTP set insecure: true)",
        ));
    }
    if c.aws_sdk_auth && !c.access_key.is_empty() {
        return Err(err("config.aws_sdk_auth", "aws_sdk_auth and access_key are mutually exclusive"));
    }
    if c.access_key.is_empty() && !c.secret_key.is_empty() {
        return Err(err(
            "config.access_key",
            "missing while secret_key is set; set both, or neither to use the environment / instance credentials",
        ));
    }
    if !c.access_key.is_empty() && c.secret_key.is_empty() {
        return Err(err(
            "config.secret_key",
            "missing while access_key is set; set both, or neither to use the environment / instance credentials",
        ));
    }
    match c.sse_config.kind.as_str() {
        "" | "SSE-S3" => {}
        "SSE-KMS" if c.sse_config.kms_key_id.is_empty() => {
            return Err(err("config.sse_config.kms_key_id", "must be set when sse_config.type is SSE-KMS"))
        }
        "SSE-KMS" => {}
        "SSE-C" if c.sse_config.encryption_key.is_empty() => {
            return Err(err("config.sse_config.encryption_key", "must be set when sse_config.type is SSE-C"))
        }
        "SSE-C" => {}
        other => {
            return Err(err(
                "config.sse_config.type",
                format!("unsupported type {other:?} (want SSE-S3, SSE-KMS or SSE-C)"),
            ))
        }
    }
    if !matches!(c.list_objects_version.as_str(), "" | "v1" | "v2") {
        return Err(err(
            "config.list_objects_version",
            format!("unsupported version {:?} (want v1 or v2)", c.list_objects_version),
        ));
    }
    if c.max_retries < 0 {
        return Err(err("config.max_retries", "must not be negative"));
    }
    Ok(())
}

fn parse_gcs(v: Option<&Value>) -> Result<GcsConfig> {
    let f = Fields::new_opt(
        v,
        "config",
        &[
            "bucket",
            "service_account",
            "use_grpc",
            "grpc_conn_pool_size",
            "http_config",
            "chunk_size_bytes",
            "max_retries",
        ],
    )?;
    let c = GcsConfig {
        bucket: f.string("bucket")?,
        service_account: Secret(f.string("service_account")?),
        use_grpc: f.bool("use_grpc", false)?,
        grpc_conn_pool_size: f.int("grpc_conn_pool_size", 0)?,
        http_config: parse_http(f.get("http_config"), &f.path("http_config"))?,
        chunk_size_bytes: f.int("chunk_size_bytes", 0)?,
        max_retries: f.int("max_retries", 0)?,
    };
    if c.bucket.is_empty() {
        return Err(err("config.bucket", "missing required key (the Google Cloud Storage bucket name)"));
    }
    if c.max_retries < 0 || c.chunk_size_bytes < 0 {
        return Err(err(
            if c.max_retries < 0 { "config.max_retries" } else { "config.chunk_size_bytes" },
            "must not be negative",
        ));
    }
    Ok(c)
}

fn parse_azure(v: Option<&Value>) -> Result<AzureConfig> {
    let f = Fields::new_opt(
        v,
        "config",
        &[
            "storage_account",
            "storage_account_key",
            "storage_connection_string",
            "container",
            "endpoint",
            "storage_create_container",
            "az_tenant_id",
            "client_id",
            "client_secret",
            "user_assigned_id",
            "max_retries",
            "reader_config",
            "pipeline_config",
            "http_config",
            "msi_resource",
        ],
    )?;
    let reader = Fields::new_opt(f.get("reader_config"), &f.path("reader_config"), &["max_retry_requests"])?;
    let pipeline = Fields::new_opt(
        f.get("pipeline_config"),
        &f.path("pipeline_config"),
        &["max_tries", "try_timeout", "retry_delay", "max_retry_delay"],
    )?;
    let mut c = AzureConfig {
        storage_account: f.string("storage_account")?,
        storage_account_key: Secret(f.string("storage_account_key")?),
        storage_connection_string: Secret(f.string("storage_connection_string")?),
        container: f.string("container")?,
        endpoint: f.string("endpoint")?,
        storage_create_container: f.bool("storage_create_container", true)?,
        az_tenant_id: f.string("az_tenant_id")?,
        client_id: f.string("client_id")?,
        client_secret: Secret(f.string("client_secret")?),
        user_assigned_id: f.string("user_assigned_id")?,
        max_retries: f.int("max_retries", 0)?,
        reader_max_retry_requests: reader.int("max_retry_requests", 0)?,
        pipeline_max_tries: pipeline.int("max_tries", 0)?,
        pipeline_try_timeout: pipeline.duration("try_timeout", Duration::ZERO)?,
        pipeline_retry_delay: pipeline.duration("retry_delay", Duration::ZERO)?,
        pipeline_max_retry_delay: pipeline.duration("max_retry_delay", Duration::ZERO)?,
        http_config: parse_http(f.get("http_config"), &f.path("http_config"))?,
        msi_resource: f.string("msi_resource")?,
    };
    if c.endpoint.is_empty() {
        c.endpoint = "blob.core.windows.net".into();
    }
    // Thanos's checks (providers/azure/azure.go validate), first failure first.
    let checks: [(bool, &str, &str); 9] = [
        (
            !c.user_assigned_id.is_empty() && !c.storage_account_key.is_empty(),
            "config.user_assigned_id",
            "cannot be set when using storage_account_key authentication",
        ),
        (
            !c.user_assigned_id.is_empty() && !c.storage_connection_string.is_empty(),
            "config.user_assigned_id",
            "cannot be set when using storage_connection_string authentication",
        ),
        (
            !c.user_assigned_id.is_empty() && !c.client_id.is_empty(),
            "config.user_assigned_id",
            "cannot be set when using client_id authentication",
        ),
        (
            (!c.az_tenant_id.is_empty() || !c.client_secret.is_empty() || !c.client_id.is_empty())
                && (c.az_tenant_id.is_empty() || c.client_secret.is_empty() || c.client_id.is_empty()),
            "config.az_tenant_id",
            "az_tenant_id, client_id and client_secret must be set together",
        ),
        (
            !c.storage_account_key.is_empty() && !c.storage_connection_string.is_empty(),
            "config.storage_account_key",
            "storage_account_key and storage_connection_string cannot both be set",
        ),
        (c.storage_account.is_empty(), "config.storage_account", "missing required key (the storage account name)"),
        (c.container.is_empty(), "config.container", "missing required key (the blob container name)"),
        (c.pipeline_max_tries < 0, "config.pipeline_config.max_tries", "must be greater than or equal to 0"),
        (
            c.reader_max_retry_requests < 0,
            "config.reader_config.max_retry_requests",
            "must be greater than or equal to 0",
        ),
    ];
    if let Some((_, key, problem)) = checks.iter().find(|(bad, _, _)| *bad) {
        return Err(err(*key, *problem));
    }
    if c.max_retries < 0 {
        return Err(err("config.max_retries", "must not be negative"));
    }
    Ok(c)
}

fn parse_filesystem(v: Option<&Value>) -> Result<FilesystemConfig> {
    let f = Fields::new_opt(v, "config", &["directory"])?;
    let directory = f.string("directory")?;
    if directory.is_empty() {
        return Err(err("config.directory", "missing required key (the directory holding the bucket)"));
    }
    Ok(FilesystemConfig { directory })
}

/// One YAML mapping being read: its path, and every key checked against the known ones
/// up front, so an unknown key is reported before anything else in that mapping.
struct Fields<'a> {
    path: String,
    map: Option<&'a Mapping>,
}

impl<'a> Fields<'a> {
    fn new(v: &'a Value, path: &str, known: &[&str]) -> Result<Fields<'a>> {
        Fields::new_opt(Some(v), path, known)
    }

    /// `None` and YAML `null` read as an empty mapping (every key at its default).
    fn new_opt(v: Option<&'a Value>, path: &str, known: &[&str]) -> Result<Fields<'a>> {
        let map = match v {
            None | Some(Value::Null) => None,
            Some(Value::Mapping(m)) => Some(m),
            Some(other) => {
                let what = if path.is_empty() { "the document" } else { path };
                return Err(err(path, format!("{what} must be a mapping of keys, not {}", kind(other))));
            }
        };
        if let Some(m) = map {
            for k in m.keys() {
                let Some(name) = k.as_str() else {
                    return Err(err(path, format!("keys must be strings, found {}", kind(k))));
                };
                if !known.contains(&name) {
                    let full = join(path, name);
                    let mut sorted: Vec<&str> = known.to_vec();
                    sorted.sort_unstable();
                    let place = if path.is_empty() { "at the top level".to_string() } else { format!("in {path}") };
                    return Err(err(full, format!("unknown key {name:?} {place} (known keys: {})", sorted.join(", "))));
                }
            }
        }
        Ok(Fields { path: path.to_string(), map })
    }

    fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.and_then(|m| m.get(key)).filter(|v| !v.is_null())
    }

    /// A string key; like yaml.v2, any scalar is taken as its text. Missing: "".
    fn string(&self, key: &str) -> Result<String> {
        match self.get(key) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(Value::Bool(b)) => Ok(b.to_string()),
            Some(other) => Err(err(self.path(key), format!("want a string, found {}", kind(other)))),
        }
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            // YAML 1.1 spellings that Go's yaml.v2 reads as booleans.
            Some(Value::String(s)) => match s.as_str() {
                "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => Ok(true),
                "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => Ok(false),
                _ => Err(err(self.path(key), "want true or false")),
            },
            Some(other) => Err(err(self.path(key), format!("want true or false, found {}", kind(other)))),
        }
    }

    fn int(&self, key: &str, default: i64) -> Result<i64> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Number(n)) => n.as_i64().ok_or_else(|| err(self.path(key), "want a whole number")),
            Some(Value::String(s)) => s.trim().parse().map_err(|_| err(self.path(key), "want a whole number")),
            Some(other) => Err(err(self.path(key), format!("want a whole number, found {}", kind(other)))),
        }
    }

    fn uint(&self, key: &str, default: u64) -> Result<u64> {
        let v = self.int(key, default as i64)?;
        u64::try_from(v).map_err(|_| err(self.path(key), "must not be negative"))
    }

    fn duration(&self, key: &str, default: Duration) -> Result<Duration> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::String(s)) => crate::time::parse_duration(s).map_err(|e| err(self.path(key), e.to_string())),
            Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(Duration::ZERO),
            Some(other) => {
                Err(err(self.path(key), format!("want a duration such as 90s, 2m or 1h30m, found {}", kind(other))))
            }
        }
    }

    fn string_map(&self, key: &str) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        match self.get(key) {
            None => {}
            Some(Value::Mapping(m)) => {
                for (k, v) in m {
                    let Some(k) = k.as_str() else {
                        return Err(err(self.path(key), format!("keys must be strings, found {}", kind(k))));
                    };
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Null => String::new(),
                        other => {
                            return Err(err(join(&self.path(key), k), format!("want a string, found {}", kind(other))))
                        }
                    };
                    out.insert(k.to_string(), v);
                }
            }
            Some(other) => {
                return Err(err(self.path(key), format!("want a mapping of strings, found {}", kind(other))))
            }
        }
        Ok(out)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// What a YAML value is, for messages (never the value itself: it may be a secret).
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(yaml: &str) -> ConfigError {
        ObjstoreConfig::parse(yaml).expect_err(yaml)
    }

    #[test]
    fn s3_with_every_key_keeps_values_and_defaults() {
        let c = ObjstoreConfig::parse(
            r#"
type: s3
prefix: /tenant-a/
config:
  bucket: thanos
  endpoint: 127.0.0.1:9000
  region: eu-west-1
  disable_dualstack: true
  aws_sdk_auth: false
  access_key: AKIA
  secret_key: hunter2
  session_token: tok
  insecure: true
  signature_version2: true
  put_user_metadata: {X-Amz-Storage-Class: STANDARD_IA, team: obs}
  http_config:
    idle_conn_timeout: 1m30s
    response_header_timeout: 5m
    insecure_skip_verify: true
    tls_handshake_timeout: 10s
    expect_continue_timeout: 1s
    max_idle_conns: 10
    max_idle_conns_per_host: 5
    max_conns_per_host: 0
    disable_compression: true
    tls_config: {ca_file: /ca.pem, cert_file: "", key_file: "", server_name: "", insecure_skip_verify: false}
  trace: {enable: false}
  list_objects_version: v2
  bucket_lookup_type: path
  send_content_md5: false
  disable_multipart: false
  part_size: 16777216
  sse_config: {type: SSE-KMS, kms_key_id: key, kms_encryption_context: {a: b}, encryption_key: ""}
  sts_endpoint: https://sts.example
  max_retries: 3
"#,
        )
        .unwrap();
        assert_eq!(c.prefix, "tenant-a");
        let Provider::S3(s3) = c.provider else { panic!("want S3") };
        assert_eq!(s3.bucket, "thanos");
        assert_eq!(s3.secret_key.expose(), "hunter2");
        assert_eq!(s3.http_config.idle_conn_timeout, Duration::from_secs(90));
        assert_eq!(s3.http_config.response_header_timeout, Duration::from_secs(300));
        assert_eq!(s3.http_config.tls_config.ca_file, "/ca.pem");
        assert_eq!(s3.bucket_lookup_type, BucketLookup::Path);
        assert_eq!(s3.part_size, 16 << 20);
        assert_eq!(s3.sse_config.kms_encryption_context.get("a").map(String::as_str), Some("b"));
        assert_eq!(s3.max_retries, 3);
        assert!(!format!("{s3:?}").contains("hunter2"), "Debug never shows secrets");
    }

    #[test]
    fn omitted_keys_keep_thanos_defaults() {
        let c = ObjstoreConfig::parse("type: S3\nconfig:\n  bucket: b\n  endpoint: s3.amazonaws.com\n").unwrap();
        let Provider::S3(s3) = c.provider else { panic!() };
        assert_eq!(s3.http_config, HttpConfig::default());
        assert_eq!(s3.part_size, 64 << 20);
        assert!(s3.send_content_md5);
        assert_eq!(s3.bucket_lookup_type, BucketLookup::Auto);
        assert_eq!(c.prefix, "");
    }

    #[test]
    fn type_is_case_insensitive() {
        for t in ["FILESYSTEM", "filesystem", "FileSystem"] {
            let c = ObjstoreConfig::parse(&format!("type: {t}\nconfig:\n  directory: /tmp/x\n")).unwrap();
            assert_eq!(c.provider, Provider::Filesystem(FilesystemConfig { directory: "/tmp/x".into() }));
        }
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let cases = [
            ("type: S3\nconfig: {bucket: b, endpoint: e}\nextra: 1\n", "extra"),
            ("type: S3\nconfig: {bucket: b, endpoint: e, buckets: c}\n", "config.buckets"),
            (
                "type: S3\nconfig: {bucket: b, endpoint: e, http_config: {idle_timeout: 1s}}\n",
                "config.http_config.idle_timeout",
            ),
            (
                "type: S3\nconfig: {bucket: b, endpoint: e, http_config: {tls_config: {ca: x}}}\n",
                "config.http_config.tls_config.ca",
            ),
            ("type: S3\nconfig: {bucket: b, endpoint: e, sse_config: {kind: x}}\n", "config.sse_config.kind"),
            ("type: S3\nconfig: {bucket: b, endpoint: e, trace: {on: true}}\n", "config.trace.on"),
            ("type: GCS\nconfig: {bucket: b, no_auth: true}\n", "config.no_auth"),
            (
                "type: AZURE\nconfig: {storage_account: a, container: c, pipeline_config: {tries: 1}}\n",
                "config.pipeline_config.tries",
            ),
            ("type: FILESYSTEM\nconfig: {directory: d, dir: e}\n", "config.dir"),
        ];
        for (yaml, key) in cases {
            let e = parse_err(yaml);
            assert_eq!(e.key, key, "{yaml}: {e}");
            assert!(e.to_string().contains("unknown key"), "{e}");
        }
    }

    #[test]
    fn missing_required_keys_are_named() {
        let cases = [
            ("config: {bucket: b}\n", "type"),
            ("type: S3\nconfig: {endpoint: e}\n", "config.bucket"),
            ("type: S3\nconfig: {bucket: b}\n", "config.endpoint"),
            ("type: S3\n", "config.bucket"),
            ("type: GCS\nconfig: {}\n", "config.bucket"),
            ("type: AZURE\nconfig: {container: c}\n", "config.storage_account"),
            ("type: AZURE\nconfig: {storage_account: a}\n", "config.container"),
            ("type: FILESYSTEM\nconfig: {}\n", "config.directory"),
            ("type: S3\nconfig: {bucket: b, endpoint: e, access_key: a}\n", "config.secret_key"),
            ("type: S3\nconfig: {bucket: b, endpoint: e, secret_key: s}\n", "config.access_key"),
            (
                "type: S3\nconfig: {bucket: b, endpoint: e, sse_config: {type: SSE-C}}\n",
                "config.sse_config.encryption_key",
            ),
            (
                "type: S3\nconfig: {bucket: b, endpoint: e, sse_config: {type: SSE-KMS}}\n",
                "config.sse_config.kms_key_id",
            ),
        ];
        for (yaml, key) in cases {
            let e = parse_err(yaml);
            assert_eq!(e.key, key, "{yaml}: {e}");
        }
    }

    #[test]
    fn bad_values_are_rejected_by_key() {
        let cases = [
            ("type: SWIFT\nconfig: {}\n", "type", "does not support"),
            ("type: floppy\n", "type", "unknown bucket type"),
            ("type: S3\nconfig: {bucket: b, endpoint: 'http://host:9000'}\n", "config.endpoint", "without a scheme"),
            ("type: S3\nconfig: {bucket: b, endpoint: e, insecure: maybe}\n", "config.insecure", "true or false"),
            ("type: S3\nconfig: {bucket: b, endpoint: e, part_size: -1}\n", "config.part_size", "negative"),
            ("type: S3\nconfig: {bucket: b, endpoint: e, bucket_lookup_type: dns}\n", "config.bucket_lookup_type", "unsupported"),
            ("type: S3\nconfig: {bucket: b, endpoint: e, list_objects_version: v3}\n", "config.list_objects_version", "unsupported"),
            ("type: S3\nconfig: {bucket: b, endpoint: e, sse_config: {type: AES}}\n", "config.sse_config.type", "unsupported"),
            ("type: S3\nconfig: {bucket: b, endpoint: e, http_config: {idle_conn_timeout: 90}}\n", "config.http_config.idle_conn_timeout", "duration"),
            ("type: S3\nconfig: {bucket: b, endpoint: e, http_config: {idle_conn_timeout: 1h2h}}\n", "config.http_config.idle_conn_timeout", "duration"),
            ("type: S3\nconfig: {bucket: b, endpoint: e, aws_sdk_auth: true, access_key: a, secret_key: s}\n", "config.aws_sdk_auth", "mutually exclusive"),
            ("type: S3\nconfig: [1, 2]\n", "config", "mapping"),
            ("type: AZURE\nconfig: {storage_account: a, container: c, client_id: x}\n", "config.az_tenant_id", "together"),
            ("type: AZURE\nconfig: {storage_account: a, container: c, storage_account_key: k, storage_connection_string: s}\n", "config.storage_account_key", "cannot both"),
            ("type: AZURE\nconfig: {storage_account: a, container: c, user_assigned_id: u, client_id: x}\n", "config.user_assigned_id", "client_id"),
            ("- a\n- b\n", "", "mapping"),
        ];
        for (yaml, key, want) in cases {
            let e = parse_err(yaml);
            assert_eq!(e.key, key, "{yaml}: {e}");
            assert!(e.to_string().contains(want), "{yaml}: {e}");
        }
    }

    #[test]
    fn errors_never_show_secret_values() {
        for yaml in [
            "type: S3\nconfig: {bucket: b, endpoint: e, secret_key: [TOPSECRET]}\n",
            "type: S3\nconfig: {bucket: b, endpoint: e, secret_key: {TOPSECRET: 1}}\n",
            "type: S3\nconfig: {bucket: b, endpoint: e, secret_key: TOPSECRET}\n",
            "type: S3\nconfig: {bucket: b, endpoint: e, access_key: a, secret_key: TOPSECRET, insecure: TOPSECRET}\n",
            "type: AZURE\nconfig: {storage_account: a, container: c, storage_account_key: TOPSECRET, storage_connection_string: TOPSECRET}\n",
            "type: GCS\nconfig: {bucket: b, service_account: TOPSECRET, max_retries: -1}\n",
        ] {
            let e = parse_err(yaml);
            assert!(!e.to_string().contains("TOPSECRET"), "{yaml}: {e}");
        }
    }

    #[test]
    fn gcs_azure_defaults() {
        let c = ObjstoreConfig::parse(
            "type: GCS\nconfig:\n  bucket: b\n  service_account: '{\"type\": \"service_account\"}'\n",
        )
        .unwrap();
        let Provider::Gcs(g) = c.provider else { panic!() };
        assert_eq!(g.service_account.expose(), "{\"type\": \"service_account\"}");
        let c = ObjstoreConfig::parse("type: azure\nconfig: {storage_account: acct, container: blocks}\n").unwrap();
        let Provider::Azure(a) = c.provider else { panic!() };
        assert_eq!(a.endpoint, "blob.core.windows.net");
        assert!(a.storage_create_container);
    }

    #[test]
    fn warnings_name_what_strata_cannot_do() {
        let c = ObjstoreConfig::parse(
            "type: S3\nconfig: {bucket: b, endpoint: e, signature_version2: true, list_objects_version: v1}\n",
        )
        .unwrap();
        let w = c.warnings();
        assert!(w.iter().any(|w| w.contains("signature_version2")), "{w:?}");
        assert!(w.iter().any(|w| w.contains("ListObjectsV2")), "{w:?}");
    }
}
