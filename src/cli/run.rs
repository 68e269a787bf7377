//! `strata run`: the compactor job against a bucket, with `thanos compact`'s flags.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};

use super::bucket::ObjstoreFlags;
use super::parse_duration_ms;
use strata::bucket::sync::{CleanupOptions, SyncOptions};
use strata::compact::merge::MergeOptions;
use strata::compact::plan::Policy;
use strata::job::http::{serve, Status};
use strata::job::run::{run_job, IterationReport, JobOptions};
use strata::job::selector::Selector;

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    objstore: ObjstoreFlags,
    /// Scratch space for downloaded and compacted blocks.
    #[arg(long = "data-dir", default_value = "./data")]
    data_dir: PathBuf,
    /// Blocks younger than this are not touched yet (uploads may be in flight).
    #[arg(long = "consistency-delay", default_value = "30m")]
    consistency_delay: String,
    /// Blocks marked for deletion are deleted this long after the mark.
    #[arg(long = "delete-delay", default_value = "48h")]
    delete_delay: String,
    #[arg(long = "block-meta-fetch-concurrency", default_value_t = 32)]
    meta_fetch_concurrency: usize,
    #[arg(long = "compact.blocks-fetch-concurrency", default_value_t = 4)]
    blocks_fetch_concurrency: usize,
    /// Compactions run at once.
    #[arg(long = "compact.concurrency", default_value_t = 1)]
    compact_concurrency: usize,
    #[arg(long = "block-ranges", default_value = "2h,8h,2d,14d", value_delimiter = ',', hide = true)]
    block_ranges: Vec<String>,
    #[command(flatten)]
    dedup: super::DedupFlags,
    /// Merge overlapping blocks even without replica labels.
    #[arg(long = "compact.enable-vertical-compaction", default_value_t = false, action = clap::ArgAction::Set)]
    vertical: bool,
    #[command(flatten)]
    retention: super::RetentionFlags,
    /// Keep running, one iteration every --wait-interval.
    #[arg(long)]
    wait: bool,
    #[arg(long = "wait-interval", default_value = "5m")]
    wait_interval: String,
    /// Stop at the first bad block (Thanos's behaviour) instead of marking it no-compact.
    #[arg(long = "halt-on-error")]
    halt_on_error: bool,
    /// Do not write 5m and 1h downsampled blocks.
    #[arg(long = "downsampling.disable")]
    downsampling_disable: bool,
    /// Where /metrics, /-/healthy and /-/ready are served.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    http_address: String,
    /// logfmt or json.
    #[arg(long = "log.format", default_value = "logfmt")]
    log_format: String,
    /// Prometheus relabel rules (YAML list) over each block's external labels and
    /// `__block_id`; blocks they drop belong to another instance.
    #[arg(long = "selector.relabel-config-file", value_name = "FILE")]
    relabel_file: Option<PathBuf>,
    #[arg(long = "selector.relabel-config", value_name = "YAML", allow_hyphen_values = true)]
    relabel: Option<String>,
    /// Only blocks that overlap [--min-time, --max-time]: ms, RFC 3339, or a duration before now (-3d).
    #[arg(long = "min-time", allow_hyphen_values = true)]
    min_time: Option<String>,
    #[arg(long = "max-time", allow_hyphen_values = true)]
    max_time: Option<String>,
}

/// One structured log line (logfmt or JSON) on stderr.
struct Log {
    json: bool,
}

impl Log {
    fn line(&self, level: &str, msg: &str, kv: &[(&str, String)]) {
        let ts = strata::gofmt::rfc3339_ms(strata::compact::run::now_ms());
        if self.json {
            let mut m = serde_json::Map::new();
            m.insert("ts".into(), ts.into());
            m.insert("level".into(), level.into());
            m.insert("msg".into(), msg.into());
            for (k, v) in kv {
                m.insert((*k).into(), v.clone().into());
            }
            eprintln!("{}", serde_json::Value::Object(m));
        } else {
            let mut s = format!("ts={ts} level={level} msg={msg:?}");
            for (k, v) in kv {
                if v.chars().any(|c| c.is_whitespace() || c == '"' || c == '=') {
                    s.push_str(&format!(" {k}={v:?}"));
                } else {
                    s.push_str(&format!(" {k}={v}"));
                }
            }
            eprintln!("{s}");
        }
    }
}

pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let log = Log {
        json: match a.log_format.as_str() {
            "logfmt" => false,
            "json" => true,
            f => bail!("--log.format {f:?}: want logfmt or json"),
        },
    };
    let dur = |s: &str, flag: &str| parse_duration_ms(s).with_context(|| flag.to_string());
    let mut ranges = Vec::new();
    for r in &a.block_ranges {
        ranges.push(dur(r, "--block-ranges")?);
    }
    let (replica_labels, dedup) = a.dedup.parse()?;
    let consistency_delay_ms = dur(&a.consistency_delay, "--consistency-delay")?;
    let delete_delay_ms = dur(&a.delete_delay, "--delete-delay")?;
    let opts = JobOptions {
        data_dir: a.data_dir.clone(),
        sync: SyncOptions {
            concurrency: a.meta_fetch_concurrency.max(1),
            consistency_delay_ms,
            delete_delay_ms,
            deduplicate: false,
            now_ms: None,
        },
        policy: Policy { ranges, vertical: a.vertical || !replica_labels.is_empty() },
        replica_labels,
        dedup,
        merge: MergeOptions::default(),
        compact_concurrency: a.compact_concurrency.max(1),
        fetch_concurrency: a.blocks_fetch_concurrency.max(1),
        retention: a.retention.parse()?,
        cleanup: CleanupOptions { delete_delay_ms, consistency_delay_ms },
        halt_on_error: a.halt_on_error,
        downsampling: !a.downsampling_disable,
        selector: Selector::default(),
    };
    let rules = match (&a.relabel_file, &a.relabel) {
        (Some(_), Some(_)) => {
            bail!("--selector.relabel-config-file and --selector.relabel-config are both set; use one")
        }
        (Some(f), None) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("--selector.relabel-config-file {}", f.display()))?;
            Selector::parse_relabel(&text).with_context(|| format!("--selector.relabel-config-file {}", f.display()))?
        }
        (None, Some(y)) => Selector::parse_relabel(y).context("--selector.relabel-config")?,
        (None, None) => Vec::new(),
    };
    let now = strata::compact::run::now_ms();
    let time = |v: &Option<String>, flag: &str| -> anyhow::Result<Option<i64>> {
        v.as_deref().map(|s| super::bucket::parse_time_arg(s, now).with_context(|| flag.to_string())).transpose()
    };
    let mut opts = opts;
    opts.selector = Selector::new(rules, time(&a.min_time, "--min-time")?, time(&a.max_time, "--max-time")?);
    let wait = if a.wait {
        Some(std::time::Duration::from_millis(dur(&a.wait_interval, "--wait-interval")? as u64))
    } else {
        None
    };

    let status = Arc::new(Status::default());
    let server = serve(&a.http_address, status.clone())?;
    log.line("info", "serving", &[("address", server.addr.to_string())]);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    let stop = Arc::new(AtomicBool::new(false));
    let result = rt.block_on(async {
        let bucket = a.objstore.open().await?;
        let cfg_desc = a.objstore.load().map(|c| c.describe()).unwrap_or_default();
        log.line(
            "info",
            "starting compactor",
            &[("bucket", cfg_desc), ("mode", if wait.is_some() { "wait".into() } else { "one-shot".into() })],
        );
        {
            let stop = stop.clone();
            tokio::spawn(async move {
                if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    term.recv().await;
                    stop.store(true, Ordering::Relaxed);
                }
            });
        }
        let report = |r: &Result<IterationReport, strata::job::run::JobError>| match r {
            Ok(rep) => {
                for (group, sources, output) in &rep.compacted {
                    let ids: Vec<String> = sources.iter().map(|u| u.to_string()).collect();
                    let out = output.map(|u| u.to_string()).unwrap_or_else(|| "none (every series deleted)".into());
                    log.line(
                        "info",
                        "compacted, sources marked for deletion",
                        &[
                            ("phase", "compact".into()),
                            ("group", group.clone()),
                            ("sources", ids.join(",")),
                            ("output", out),
                        ],
                    );
                }
                for (src, new, res) in &rep.downsampled {
                    log.line(
                        "info",
                        "downsampled",
                        &[
                            ("phase", "downsample".into()),
                            ("source", src.to_string()),
                            ("output", new.to_string()),
                            ("resolution", strata::gofmt::go_duration_ms(*res)),
                        ],
                    );
                }
                for w in &rep.warnings {
                    log.line("warn", w, &[]);
                }
                for line in &rep.refused {
                    log.line("warn", line, &[]);
                }
                for (id, why) in &rep.no_compact_marked {
                    log.line(
                        "error",
                        "bad block marked no-compact; the other groups went on",
                        &[("block", id.to_string()), ("reason", why.clone())],
                    );
                }
                log.line(
                    "info",
                    "iteration done",
                    &[
                        ("compactions", rep.compactions.to_string()),
                        ("downsampled", rep.downsampled.len().to_string()),
                        ("garbage_collected", rep.garbage_collected.len().to_string()),
                        ("no_compact_marked", rep.no_compact_marked.len().to_string()),
                        ("retention_marked", rep.expired.len().to_string()),
                        ("deleted", rep.cleaned.to_string()),
                    ],
                );
            }
            Err(e) if e.is_transient() => {
                log.line("warn", "transient bucket error, retrying", &[("err", e.to_string())])
            }
            Err(e) => log.line("error", "iteration failed", &[("err", e.to_string())]),
        };
        let r = run_job(&bucket, &opts, status.clone(), wait, stop.clone(), report).await.map_err(anyhow::Error::from);
        let st = bucket.stats();
        log.line(
            "info",
            "bucket requests",
            &[
                ("http_requests", st.http_requests.to_string()),
                ("retried_failures", st.transient_failures.to_string()),
                ("server_errors", st.server_errors.to_string()),
                ("throttled", st.throttled.to_string()),
                ("timeouts", st.timeouts.to_string()),
                ("network_errors", st.network_errors.to_string()),
            ],
        );
        r
    });
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            if std::io::stderr().is_terminal() {
                eprintln!("strata run: {e:#}");
            }
            log.line("error", "compactor stopped", &[("err", format!("{e:#}"))]);
            Ok(ExitCode::from(1))
        }
    }
}
