//! `strata demo`: the compactor job on an embedded default. A FILESYSTEM bucket in a
//! local directory gets sample blocks from two HA replicas (as two Thanos sidecars
//! would upload them); then one iteration of `strata run` compacts and deduplicates
//! them, exactly as it would run against S3.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use super::bucket::BucketArgs;
use super::run::RunArgs;

fn parse<T: clap::Args>(args: &[&str]) -> T {
    #[derive(Parser)]
    struct Wrap<A: clap::Args> {
        #[command(flatten)]
        a: A,
    }
    let mut v = vec!["strata"];
    v.extend_from_slice(args);
    Wrap::<T>::parse_from(v).a
}

pub fn run(dir: &Path) -> anyhow::Result<ExitCode> {
    use strata::gen::{generate, GenOptions};
    let bucket_dir = dir.join("bucket");
    let config = dir.join("bucket.yaml");
    std::fs::create_dir_all(&bucket_dir).with_context(|| format!("{}", bucket_dir.display()))?;
    let abs = std::fs::canonicalize(&bucket_dir)?;
    std::fs::write(&config, format!("type: FILESYSTEM\nconfig:\n  directory: {}\n", abs.display()))
        .with_context(|| format!("{}", config.display()))?;
    let cfg = config.to_str().context("demo directory path is not UTF-8")?;
    let empty = std::fs::read_dir(&bucket_dir)?.next().is_none();
    if empty {
        // Two replicas' sidecars: 26 hours of 2h blocks each, scrapes a second apart.
        let incoming = dir.join("incoming");
        let _ = std::fs::remove_dir_all(&incoming);
        let opts = GenOptions {
            series: 2000,
            duration_ms: 26 * 3_600_000,
            replicas: 2,
            replica_label: Some("replica".into()),
            labels: [("cluster".to_string(), "demo".to_string())].into(),
            histogram_every: 40,
            ..Default::default()
        };
        let paths = generate(&incoming, &opts)?;
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        rt.block_on(async {
            let bucket = strata::bucket::Bucket::open(&strata::bucket::ObjstoreConfig::parse(
                &std::fs::read_to_string(&config)?,
            )?)
            .await?;
            for p in &paths {
                bucket.upload_block(p, &Default::default()).await?;
            }
            anyhow::Ok(())
        })?;
        std::fs::remove_dir_all(&incoming)?;
        println!(
            "demo: uploaded {} sample blocks (2 replicas, 26h, 2000 series, cluster=\"demo\") to the bucket in {}",
            paths.len(),
            bucket_dir.display()
        );
    }
    println!("== the bucket before (`strata bucket inspect --objstore.config-file {cfg}`)");
    super::bucket::run(parse::<BucketArgs>(&["--objstore.config-file", cfg, "inspect"]))?;
    let data = dir.join("data");
    let data_s = data.to_str().context("demo directory path is not UTF-8")?;
    println!("== one iteration of `strata run --objstore.config-file {cfg} --deduplication.replica-label replica --consistency-delay 0s --delete-delay 0s`");
    let code = super::run::run(parse::<RunArgs>(&[
        "--objstore.config-file",
        cfg,
        "--data-dir",
        data_s,
        "--consistency-delay",
        "0s",
        "--delete-delay",
        "0s",
        "--deduplication.replica-label",
        "replica",
        "--http-address",
        "127.0.0.1:0",
    ]))?;
    println!("== the bucket after");
    super::bucket::run(parse::<BucketArgs>(&["--objstore.config-file", cfg, "inspect"]))?;
    Ok(code)
}
