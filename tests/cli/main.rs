//! Integration tests: drive the `strata` binary and compare with promtool 2.42, the
//! oracle (`scripts/install-test-deps.sh` installs it; these tests fail, not skip, when
//! it is missing, because the test command always installs it).

mod backup;
mod bucket;
mod compact;
mod dedup;
mod downsample;
mod format;
mod fuzz;
mod run;
mod tools;
mod web;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
pub use std::process::{Command, Output};

use strata::block::{list_blocks, Block};

pub const STRATA: &str = env!("CARGO_BIN_EXE_strata");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn testdata(name: &str) -> PathBuf {
    repo().join("testdata").join(name)
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    out
}

pub fn strata(args: &[&str]) -> Output {
    run(Command::new(STRATA).args(args))
}

/// `strata gen --output OUT EXTRA...`, which must succeed.
pub fn gen(out: &Path, extra: &[&str]) {
    let mut args = vec!["gen", "--output", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let g = strata(&args);
    assert!(g.status.success(), "gen: {}", String::from_utf8_lossy(&g.stderr));
}

/// `strata gen` flags for 16 days of 20 series from a 14-day-aligned start: enough for a
/// 14d compaction and both downsampling passes.
pub const SIXTEEN_DAYS: [&str; 8] =
    ["--series", "20", "--duration", "16d", "--scrape-interval", "60s", "--start", "1699488000000"];

pub fn ok_stdout(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf8 output")
}

/// Copies a data directory's blocks into a fresh temp dir with an empty `wal/` (which
/// promtool's dump needs); returns the temp dir guard.
pub fn scratch_copy(src: &Path) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for b in list_blocks(src).unwrap() {
        let name =
            if b.ulid.is_nil() { Block::open(&b.path).unwrap().meta.ulid.to_string() } else { b.ulid.to_string() };
        copy_dir(&b.path, &tmp.path().join(name));
    }
    std::fs::create_dir_all(tmp.path().join("wal")).unwrap();
    tmp
}

pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
            let mut p = std::fs::metadata(&to).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            p.set_readonly(false);
            std::fs::set_permissions(&to, p).unwrap();
        }
    }
}

pub fn promtool(args: &[&str]) -> Output {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("promtool is required (scripts/install-test-deps.sh installs it): {e}"));
    out
}

pub fn promtool_dump(dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["tsdb", "dump"];
    args.extend_from_slice(extra);
    let d = dir.to_str().unwrap();
    args.push(d);
    ok_stdout(promtool(&args), "promtool tsdb dump")
}

/// A parsed dump: series text -> samples (timestamp, value bits with all NaNs equal).
pub type Parsed = BTreeMap<String, Vec<(i64, u64)>>;

pub fn parse_dump(text: &str) -> Parsed {
    let mut m: Parsed = BTreeMap::new();
    for line in text.lines() {
        let (rest, ts) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad dump line {line:?}"));
        let (labels, val) = rest.rsplit_once(' ').unwrap_or_else(|| panic!("bad dump line {line:?}"));
        let v: f64 = match val {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let bits = if v.is_nan() { f64::NAN.to_bits() } else { v.to_bits() };
        m.entry(labels.to_string()).or_default().push((ts.parse().unwrap(), bits));
    }
    m
}

pub fn assert_same_samples(ours: &str, theirs: &str, what: &str) {
    let (a, b) = (parse_dump(ours), parse_dump(theirs));
    assert!(!b.is_empty(), "{what}: the reference dump is empty");
    assert_eq!(a.len(), b.len(), "{what}: series counts differ");
    for ((la, sa), (lb, sb)) in a.iter().zip(&b) {
        assert_eq!(la, lb, "{what}: series differ");
        assert_eq!(sa, sb, "{what}: samples of {la} differ");
    }
}

/// Starts a server command (`strata run --wait`, `bucket web`, ...) and returns it with the
/// HTTP address it logged, once a line containing `ready_msg` came; the rest of its log is
/// drained on a thread so the child never blocks on a full pipe.
pub fn start_server(cmd: &mut std::process::Command, ready_msg: &str) -> (std::process::Child, String) {
    let mut child = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    let mut addr = None;
    let mut seen = String::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        seen.push_str(&l);
        seen.push('\n');
        if let Some(a) = l.split("address=").nth(1) {
            addr = Some(a.split_whitespace().next().unwrap().to_string());
        }
        if l.contains(ready_msg) {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let addr = addr.unwrap_or_else(|| panic!("no address logged:\n{seen}"));
    (child, addr.replace("0.0.0.0", "127.0.0.1"))
}
