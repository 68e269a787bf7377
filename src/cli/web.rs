//! `strata bucket web`: the bucket viewer alone (Thanos's `tools bucket web`): the
//! blocks page, its API and the mark buttons, refreshed from the bucket every
//! `--refresh`, with `/metrics` and the health endpoints.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context;

use super::bucket::ObjstoreFlags;
use super::flags::duration_ms;
use strata::bucket::SyncOptions;
use strata::job::http::{serve, BlocksView, Status};

#[derive(clap::Args)]
pub struct WebArgs {
    /// Where the viewer, /metrics, /-/healthy and /-/ready are served.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    http_address: String,
    /// How often the blocks are read from the bucket again.
    #[arg(long, default_value = "30m", value_parser = duration_ms)]
    refresh: i64,
    /// Longest one refresh may take.
    #[arg(long, default_value = "5m", value_parser = duration_ms)]
    timeout: i64,
    /// An external label whose value titles each timeline (as Thanos's --label).
    #[arg(long, default_value = "")]
    label: String,
    /// Refuse POST /api/v1/blocks/mark (the mark buttons).
    #[arg(long = "disable-admin-operations")]
    disable_admin_operations: bool,
}

pub async fn run(objstore: &ObjstoreFlags, sync: SyncOptions, a: WebArgs) -> anyhow::Result<ExitCode> {
    let refresh = a.refresh.max(1000) as u64;
    let timeout = a.timeout.max(1000) as u64;
    let bucket = objstore.open().await?;
    let status = Arc::new(Status::bare());
    status.admin_disabled.store(a.disable_admin_operations, Ordering::Relaxed);
    status.enable_marks(bucket.clone());
    let server = serve(&a.http_address, status.clone())?;
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("cannot handle SIGTERM")?;
    tracing::info!(address = %server.addr, bucket = bucket.name(), "serving the bucket viewer");
    loop {
        let r =
            tokio::time::timeout(std::time::Duration::from_millis(timeout), strata::bucket::sync::sync(&bucket, &sync))
                .await;
        match r {
            Ok(Ok(synced)) => {
                tracing::info!(blocks = synced.blocks.len(), partial = synced.partial.len(), "blocks refreshed");
                status.set_blocks(BlocksView::from_synced(&synced, &a.label));
                status.ready.store(true, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                tracing::error!(err = %e, "refreshing the blocks failed; the viewer keeps the last ones");
                status.set_blocks_error(e.to_string());
            }
            Err(_) => {
                tracing::error!(timeout = strata::time::go_duration_ms(a.timeout), "refreshing the blocks timed out");
                status.set_blocks_error(format!("refresh timed out after {}", strata::time::go_duration_ms(a.timeout)));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(refresh)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            _ = term.recv() => return Ok(ExitCode::SUCCESS),
        }
    }
}
