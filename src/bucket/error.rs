//! The bucket layer's error: one line each, naming the bucket, the operation and the
//! object, saying what kind of failure it is, and never holding a secret.
//!
//! object_store's own errors are long (they embed the request URL and the whole XML
//! body of the response); [`StoreError::from_object_store`] boils them down to the kind
//! of failure plus the provider's error code and message.

use std::fmt;

use ulid::Ulid;

use super::config::ConfigError;

/// What kind of failure a bucket operation hit. Retrying makes sense only for
/// [`ErrorKind::Transient`] and [`ErrorKind::Unreachable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The object does not exist.
    NotFound,
    /// The bucket (or container) itself does not exist.
    NoSuchBucket,
    /// Credentials missing, wrong or without the permission needed.
    AccessDenied,
    /// No connection could be made (DNS, refused, TLS handshake).
    Unreachable,
    /// Timeouts, 5xx, throttling: still failing after object_store's retries.
    Transient,
    /// Anything else (a 4xx the server explains, an unsupported operation, ...).
    Other,
}

impl ErrorKind {
    fn text(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::NoSuchBucket => "the bucket does not exist",
            ErrorKind::AccessDenied => "access denied (check the credentials and their permissions)",
            ErrorKind::Unreachable => "endpoint unreachable",
            ErrorKind::Transient => "transient failure that persisted through retries",
            ErrorKind::Other => "failed",
        }
    }
}

/// A failed operation against the bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError {
    /// The bucket, as [`super::ObjstoreConfig::describe`] names it.
    pub bucket: String,
    /// What strata was doing: `get`, `put`, `list`, `delete`, `head`.
    pub op: &'static str,
    /// The object key (relative to the configured prefix), or the listed prefix.
    pub key: String,
    pub kind: ErrorKind,
    /// The provider's explanation, on one line (error code and message), if any.
    pub detail: String,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = if self.key.is_empty() { "/".to_string() } else { self.key.clone() };
        write!(f, "{}: {} {}: {}", self.bucket, self.op, key, self.kind.text())?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl StoreError {
    /// Classifies an object_store error and keeps only its one-line essence.
    pub fn from_object_store(
        bucket: &str,
        op: &'static str,
        key: &str,
        e: &object_store::Error,
        redact: &dyn Fn(String) -> String,
    ) -> StoreError {
        let (kind, detail) = classify(e);
        StoreError { bucket: bucket.to_string(), op, key: key.to_string(), kind, detail: redact(detail) }
    }
}

/// The bucket layer's error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BucketError {
    /// The objstore configuration is invalid.
    #[error("objstore config: {0}")]
    Config(#[from] ConfigError),

    /// The client could not be built from a valid configuration (bad CA file, ...).
    #[error("objstore config: {0}")]
    Setup(String),

    /// An operation on the bucket failed.
    #[error("{0}")]
    Store(StoreError),

    /// Local disk or a local block (reading a block to upload, writing a download).
    #[error(transparent)]
    Local(#[from] crate::Error),

    /// A block in the bucket or on disk is not what the protocol needs (no meta.json,
    /// an object of the wrong size after upload, a block already there, ...).
    #[error("block {id}: {problem}")]
    Block { id: Ulid, problem: String },
}

impl BucketError {
    /// The store failure kind, if this is one.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            BucketError::Store(s) => Some(s.kind),
            _ => None,
        }
    }

    /// Worth retrying later (the next iteration of a job loop).
    pub fn is_transient(&self) -> bool {
        matches!(self.kind(), Some(ErrorKind::Transient | ErrorKind::Unreachable))
    }

    pub(crate) fn block(id: Ulid, problem: impl Into<String>) -> BucketError {
        BucketError::Block { id, problem: problem.into() }
    }
}

pub type Result<T> = std::result::Result<T, BucketError>;

fn classify(e: &object_store::Error) -> (ErrorKind, String) {
    use object_store::Error as E;
    // Every object_store error's text, with the request URL cut out (it can carry a
    // SAS signature) and the provider's XML/JSON error reduced to code and message.
    let text = chain_text(e);
    let detail = provider_detail(&text);
    let status = http_status(&text);
    let code = detail.split(':').next().unwrap_or("").trim().to_string();
    let http_kind = http_error_kind(e);
    let kind = match e {
        _ if code == "NoSuchBucket"
            || code == "ContainerNotFound"
            || (status == Some(404) && text.contains("The specified bucket does not exist")) =>
        {
            ErrorKind::NoSuchBucket
        }
        E::NotFound { .. } => ErrorKind::NotFound,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => ErrorKind::AccessDenied,
        _ if matches!(status, Some(401 | 403)) => ErrorKind::AccessDenied,
        _ if matches!(status, Some(s) if s >= 500 || s == 429 || s == 408) => ErrorKind::Transient,
        _ if http_kind == Some(object_store::client::HttpErrorKind::Connect) || is_connect_failure(&text) => {
            ErrorKind::Unreachable
        }
        // A transport failure object_store gave up on (its `HttpError`'s own text).
        _ if http_kind.is_some() || text.contains("HTTP error:") => ErrorKind::Transient,
        _ => ErrorKind::Other,
    };
    let detail = if !detail.is_empty() {
        match status {
            Some(s) => format!("{detail} (HTTP {s})"),
            None => detail,
        }
    } else if let Some(s) = status {
        format!("HTTP {s}")
    } else if let Some(i) = text.rfind("(Connect): ") {
        text[i + "(Connect): ".len()..].to_string()
    } else {
        // No HTTP response: say what the connection did, without the URL.
        strip_urls(&innermost(e)).replace('\n', " ")
    };
    let detail = match retries(&text) {
        Some(n) if n > 0 => format!("{detail} (after {n} retries)"),
        _ => detail,
    };
    (kind, detail)
}

/// reqwest's words for a connection that could not be made.
fn is_connect_failure(text: &str) -> bool {
    text.contains("HTTP error:")
        && (text.contains("(Connect)") || text.contains("tcp connect error") || text.contains("dns error"))
}

/// object_store's "after N retries".
fn retries(text: &str) -> Option<u32> {
    let i = text.find("after ")? + "after ".len();
    let rest = &text[i..];
    let n = rest.split(' ').next()?;
    rest[n.len()..].starts_with(" retries").then(|| n.parse().ok()).flatten()
}

/// The `HttpErrorKind` of the transport error at the bottom of the chain, if any.
fn http_error_kind(e: &object_store::Error) -> Option<object_store::client::HttpErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(h) = c.downcast_ref::<object_store::client::HttpError>() {
            return Some(h.kind());
        }
        cur = c.source();
    }
    None
}

fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// The most specific message in the chain (e.g. "Connection refused (os error 111)").
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !t.is_empty() {
            last = t;
        }
        cur = c.source();
    }
    last
}

fn strip_urls(s: &str) -> String {
    s.split_whitespace()
        .map(
            |w| {
                if w.starts_with("http://") || w.starts_with("https://") || w.starts_with("(http") {
                    "<url>"
                } else {
                    w
                }
            },
        )
        .collect::<Vec<_>>()
        .join(" ")
}

/// `Server returned non-2xx status code: 403 Forbidden` → 403.
fn http_status(text: &str) -> Option<u16> {
    let i = text.find("status code: ")? + "status code: ".len();
    text[i..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// The provider's error code and message: S3/Azure XML `<Code>`/`<Message>`, GCS JSON
/// `"message"`. Empty when the body has neither.
fn provider_detail(text: &str) -> String {
    let tag = |name: &str| -> Option<String> {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let i = text.find(&open)? + open.len();
        let j = text[i..].find(&close)? + i;
        Some(text[i..j].trim().to_string())
    };
    let mut out = String::new();
    if let Some(code) = tag("Code") {
        out.push_str(&code);
    }
    if let Some(msg) = tag("Message") {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(msg.lines().next().unwrap_or(""));
    }
    if out.is_empty() {
        if let Some(i) = text.find("\"message\":") {
            let rest = text[i + 10..].trim_start();
            if let Some(rest) = rest.strip_prefix('"') {
                if let Some(j) = rest.find('"') {
                    out.push_str(&rest[..j]);
                }
            }
        }
    }
    out.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_detail_reads_s3_xml_and_gcs_json() {
        let s3 = "Generic S3 error: Error performing GET http://h/b?list-type=2 in 1ms - Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?><Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist in our records.</Message><AWSAccessKeyId>x</AWSAccessKeyId></Error>";
        assert_eq!(
            provider_detail(s3),
            "InvalidAccessKeyId: The AWS Access Key Id you provided does not exist in our records."
        );
        assert_eq!(http_status(s3), Some(403));
        let gcs = r#"Server returned non-2xx status code: 404 Not Found: {"error": {"code": 404, "message": "The specified bucket does not exist."}}"#;
        assert_eq!(provider_detail(gcs), "The specified bucket does not exist.");
        assert_eq!(http_status(gcs), Some(404));
        assert_eq!(provider_detail("no body"), "");
    }

    #[test]
    fn transport_failures_and_retries_are_read_from_object_store_text() {
        let refused = "Generic S3 error: Error performing list request: Error performing GET http://127.0.0.1:1/b?list-type=2 in 257ms, after 2 retries, max_retries: 2, retry_timeout: 180s  - HTTP error: error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)";
        assert!(is_connect_failure(refused));
        assert_eq!(retries(refused), Some(2));
        let dns = "HTTP error: error sending request: client error (Connect): dns error: failed to lookup address information";
        assert!(is_connect_failure(dns));
        assert_eq!(retries(dns), None);
        assert!(!is_connect_failure("Server returned non-2xx status code: 503 Service Unavailable"));
        assert_eq!(strip_urls("GET http://h/b?sig=x failed"), "GET <url> failed");
    }

    #[test]
    fn store_error_is_one_line() {
        let e = StoreError {
            bucket: "s3://b".into(),
            op: "list",
            key: String::new(),
            kind: ErrorKind::AccessDenied,
            detail: "SignatureDoesNotMatch: x (HTTP 403)".into(),
        };
        let s = e.to_string();
        assert!(!s.contains('\n'));
        assert_eq!(s, "s3://b: list /: access denied (check the credentials and their permissions): SignatureDoesNotMatch: x (HTTP 403)");
    }
}
