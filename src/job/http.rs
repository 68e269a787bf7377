//! The HTTP endpoint of the compactor and of `strata bucket web`: `/metrics`,
//! `/-/healthy`, `/-/ready`, the bucket viewer (`/`, `/blocks`, its embedded assets) and
//! its API (`GET /api/v1/blocks[?view=loaded]`, `POST /api/v1/blocks/mark`) in Thanos's
//! shapes.
//!
//! Owns: the [`Status`] shared between the job and the server (the metrics registry,
//! readiness, the last synced blocks, the bucket the mark API writes to) and an axum
//! server on its own thread and single-threaded runtime, so scrapes are answered while
//! the job keeps every core busy.
//! Must not: do any work of the job; handlers read the shared state or call one library
//! function (writing a marker).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use axum::extract::{Form, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::registry::{Metric, Registry};
use serde_json::{json, Value};
use ulid::Ulid;

use super::metrics::Metrics;
use crate::bucket::sync::Synced;
use crate::bucket::Bucket;
use crate::error::{Error, Result};

/// What the endpoint reports, shared with the job.
pub struct Status {
    /// The compactor's metrics (registered by [`Status::default`], not by [`Status::bare`]).
    pub metrics: Metrics,
    registry: Mutex<Registry>,
    /// Ready once the first bucket sync succeeded.
    pub ready: AtomicBool,
    /// The blocks the viewer shows, from the last sync.
    blocks: RwLock<BlocksView>,
    /// Where `POST /api/v1/blocks/mark` writes; unset: refused.
    bucket: OnceLock<Bucket>,
    /// `--disable-admin-operations`.
    pub admin_disabled: AtomicBool,
}

impl Default for Status {
    /// The compactor's: every `thanos_compact_*` metric registered.
    fn default() -> Self {
        let s = Status::bare();
        s.metrics.register(&mut s.registry.lock().expect("registry lock"));
        s
    }
}

/// The viewer's data: Thanos's `{blocks, label, refreshedAt, err}`, with every block
/// (`blocks`) and those the job loaded after its filters (`loaded`), plus the markers
/// each block carries.
#[derive(Clone, Debug, Default)]
pub struct BlocksView {
    pub label: String,
    pub blocks: Vec<Value>,
    pub loaded: Vec<Value>,
    /// ULID → marker files present.
    pub markers: BTreeMap<String, Vec<String>>,
    pub refreshed_at: Option<String>,
    pub err: Option<String>,
}

impl BlocksView {
    /// From a sync: `blocks` is every block with a usable meta.json, `loaded` those the
    /// filters kept.
    pub fn from_synced(s: &Synced, label: &str) -> BlocksView {
        let to_json = |b: &crate::bucket::BlockInfo| serde_json::to_value(&b.meta).unwrap_or(Value::Null);
        let mut markers = BTreeMap::new();
        for b in s.all_blocks() {
            let mut m = Vec::new();
            if b.deletion_mark.is_some() {
                m.push(crate::format::meta::DELETION_MARK.to_string());
            }
            if b.no_compact_mark.is_some() {
                m.push(crate::format::meta::NO_COMPACT_MARK.to_string());
            }
            if b.no_downsample_mark.is_some() {
                m.push(crate::format::meta::NO_DOWNSAMPLE_MARK.to_string());
            }
            if !m.is_empty() {
                markers.insert(b.id().to_string(), m);
            }
        }
        let mut all: Vec<&crate::bucket::BlockInfo> = s.all_blocks().collect();
        all.sort_by_key(|b| b.id());
        BlocksView {
            label: label.to_string(),
            blocks: all.into_iter().map(to_json).collect(),
            loaded: s.blocks.iter().map(to_json).collect(),
            markers,
            refreshed_at: Some(crate::time::rfc3339_ms(s.now_ms)),
            err: None,
        }
    }
}

impl Status {
    /// An empty registry (for commands other than the compactor: register their own
    /// metrics with [`Status::register`]).
    pub fn bare() -> Status {
        Status {
            metrics: Metrics::new(),
            registry: Mutex::new(Registry::default()),
            ready: AtomicBool::new(false),
            blocks: RwLock::new(BlocksView::default()),
            bucket: OnceLock::new(),
            admin_disabled: AtomicBool::new(false),
        }
    }

    /// Adds a metric to `/metrics` (counters get the `_total` suffix). Keep a clone of
    /// `metric` to update it.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry.lock().expect("registry lock").register(name, help, metric);
    }

    /// The `/metrics` body.
    pub fn render_metrics(&self) -> String {
        super::metrics::render(&self.registry.lock().expect("registry lock"))
    }

    /// Replaces what the viewer shows.
    pub fn set_blocks(&self, view: BlocksView) {
        *self.blocks.write().expect("blocks lock") = view;
    }

    /// Records a failed refresh: the old blocks stay, with the error shown.
    pub fn set_blocks_error(&self, err: String) {
        self.blocks.write().expect("blocks lock").err = Some(err);
    }

    /// Lets `POST /api/v1/blocks/mark` write markers into `bucket`.
    pub fn enable_marks(&self, bucket: Bucket) {
        let _ = self.bucket.set(bucket);
    }
}

/// A running server; it lives as long as the process.
pub struct Server {
    pub addr: SocketAddr,
}

/// Binds `addr` and serves on a background thread.
pub fn serve(addr: &str, status: Arc<Status>) -> Result<Server> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| Error::Listen { addr: addr.to_string(), source })?;
    let local = listener.local_addr().map_err(|source| Error::Listen { addr: addr.to_string(), source })?;
    listener.set_nonblocking(true).map_err(|source| Error::Listen { addr: addr.to_string(), source })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Task { what: "the HTTP runtime", problem: e.to_string() })?;
    std::thread::Builder::new()
        .name("strata-http".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(err = %e, "HTTP server cannot start");
                        return;
                    }
                };
                if let Err(e) = axum::serve(listener, router(status)).await {
                    tracing::error!(err = %e, "HTTP server stopped");
                }
            })
        })
        .map_err(|e| Error::Task { what: "the HTTP thread", problem: e.to_string() })?;
    Ok(Server { addr: local })
}

const INDEX_HTML: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const APP_CSS: &str = include_str!("web/app.css");

fn router(status: Arc<Status>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "Healthy.\n" }))
        .route("/-/ready", get(ready))
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .route("/blocks", get(|| async { Html(INDEX_HTML) }))
        .route("/static/app.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], APP_JS) }))
        .route("/static/app.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS) }))
        .route("/api/v1/blocks", get(blocks))
        .route("/api/v1/blocks/mark", post(mark))
        .with_state(status)
}

async fn metrics(State(s): State<Arc<Status>>) -> Response {
    ([(header::CONTENT_TYPE, prometheus_client::encoding::prometheus_text::CONTENT_TYPE)], s.render_metrics())
        .into_response()
}

async fn ready(State(s): State<Arc<Status>>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "Ready.\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Not ready: waiting for the first bucket sync.\n").into_response()
    }
}

#[derive(serde::Deserialize)]
struct BlocksQuery {
    view: Option<String>,
}

async fn blocks(State(s): State<Arc<Status>>, Query(q): Query<BlocksQuery>) -> Response {
    let v = s.blocks.read().expect("blocks lock").clone();
    let list = match q.view.as_deref() {
        Some("loaded") => v.loaded,
        _ => v.blocks,
    };
    Json(json!({
        "status": "success",
        "data": {
            "blocks": list,
            "label": v.label,
            "refreshedAt": v.refreshed_at,
            "err": v.err,
            "markers": v.markers,
        }
    }))
    .into_response()
}

fn api_error(code: StatusCode, kind: &str, msg: String) -> Response {
    (code, Json(json!({"status": "error", "errorType": kind, "error": msg}))).into_response()
}

#[derive(serde::Deserialize)]
struct MarkForm {
    id: Option<String>,
    action: Option<String>,
    #[serde(default)]
    detail: String,
}

/// Thanos's `markBlock`: `id`, `action` (`DELETION` or `NO_COMPACTION`), `detail`.
async fn mark(State(s): State<Arc<Status>>, Form(f): Form<MarkForm>) -> Response {
    if s.admin_disabled.load(Ordering::Relaxed) {
        return api_error(StatusCode::FORBIDDEN, "forbidden", "Admin operations are disabled".into());
    }
    let Some(bucket) = s.bucket.get() else {
        return api_error(StatusCode::FORBIDDEN, "forbidden", "this server does not write markers".into());
    };
    let id = match f.id.as_deref().map(Ulid::from_string) {
        Some(Ok(id)) => id,
        Some(Err(e)) => {
            return api_error(StatusCode::BAD_REQUEST, "bad_data", format!("ULID provided is invalid: {e}"))
        }
        None => return api_error(StatusCode::BAD_REQUEST, "bad_data", "ID field is empty".into()),
    };
    let (written, marker) = match f.action.as_deref() {
        Some("DELETION") => (bucket.mark_for_deletion(id, &f.detail).await, crate::format::meta::DELETION_MARK),
        Some("NO_COMPACTION") => {
            (bucket.mark_no_compact(id, "manual", &f.detail).await, crate::format::meta::NO_COMPACT_MARK)
        }
        Some(other) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "bad_data",
                format!("not supported marker {other:?}: use DELETION or NO_COMPACTION"),
            )
        }
        None => return api_error(StatusCode::BAD_REQUEST, "bad_data", "Action field is empty".into()),
    };
    match written {
        Ok(new) => {
            tracing::info!(block = %id, marker, detail = f.detail.as_str(), already = !new, "marker written through the API");
            let mut v = s.blocks.write().expect("blocks lock");
            let m = v.markers.entry(id.to_string()).or_default();
            if !m.iter().any(|x| x == marker) {
                m.push(marker.to_string());
            }
            Json(json!({"status": "success"})).into_response()
        }
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn request(addr: SocketAddr, head: &str) -> (u16, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "{head}").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let code = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
        (code, resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
    }

    fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        request(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    }

    #[test]
    fn serves_metrics_health_readiness_and_refuses_marks_without_a_bucket() {
        let status = Arc::new(Status::default());
        let srv = serve("127.0.0.1:0", status.clone()).unwrap();
        assert_eq!(get(srv.addr, "/-/healthy").0, 200);
        assert_eq!(get(srv.addr, "/-/ready").0, 503);
        status.ready.store(true, Ordering::Relaxed);
        assert_eq!(get(srv.addr, "/-/ready").0, 200);
        status.metrics.iterations.inc();
        let (code, body) = get(srv.addr, "/metrics");
        assert_eq!(code, 200);
        assert!(body.contains("thanos_compact_iterations_total 1"), "{body}");
        assert_eq!(get(srv.addr, "/nope").0, 404);
        let (code, body) = get(srv.addr, "/api/v1/blocks");
        assert_eq!(code, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "success");
        assert!(v["data"]["blocks"].as_array().unwrap().is_empty());
        let form = "id=01ARZ3NDEKTSV4RRFFQ69G5FAV&action=DELETION&detail=x";
        let (code, _) = request(
            srv.addr,
            &format!("POST /api/v1/blocks/mark HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}", form.len()),
        );
        assert_eq!(code, 403);
    }

    #[test]
    fn a_bare_status_exports_only_what_is_registered() {
        let status = Status::bare();
        let c: prometheus_client::metrics::counter::Counter = Default::default();
        status.register("strata_shipper_uploads", "Blocks uploaded", c.clone());
        c.inc();
        let t = status.render_metrics();
        assert!(t.contains("strata_shipper_uploads_total 1"), "{t}");
        assert!(!t.contains("thanos_compact"), "{t}");
    }
}
