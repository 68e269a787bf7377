//! Typed flag values: clap parses each flag into its type before any work starts, so a
//! bad value is refused with clap's usage error naming the flag.
//!
//! Durations are Prometheus `model.Duration`s ([`strata::time::parse_duration_ms`]);
//! flags with a fixed set of values are [`ValueEnum`]s mapped onto the library's types.

use clap::ValueEnum;

use strata::time::DurationError;

/// Value parser for a duration flag, in milliseconds: `#[arg(value_parser = duration_ms)]`.
pub(crate) fn duration_ms(s: &str) -> Result<i64, DurationError> {
    strata::time::parse_duration_ms(s)
}

/// `strata gen --shape`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ShapeFlag {
    Counter,
    Gauge,
    /// Alternating counters and gauges.
    Mixed,
}

impl From<ShapeFlag> for strata::gen::Shape {
    fn from(s: ShapeFlag) -> Self {
        match s {
            ShapeFlag::Counter => strata::gen::Shape::Counter,
            ShapeFlag::Gauge => strata::gen::Shape::Gauge,
            ShapeFlag::Mixed => strata::gen::Shape::Mixed,
        }
    }
}

/// `strata dump --aggr`: which aggregate of a downsampled block to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum AggrFlag {
    Count,
    Sum,
    Min,
    Max,
    Counter,
}

impl From<AggrFlag> for strata::format::aggr::AggrType {
    fn from(a: AggrFlag) -> Self {
        use strata::format::aggr::AggrType;
        match a {
            AggrFlag::Count => AggrType::Count,
            AggrFlag::Sum => AggrType::Sum,
            AggrFlag::Min => AggrType::Min,
            AggrFlag::Max => AggrType::Max,
            AggrFlag::Counter => AggrType::Counter,
        }
    }
}

/// `--deduplication.func`: Thanos's names, the empty string for one sample per timestamp.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum DedupFuncFlag {
    /// Every timestamp of every replica, one sample each.
    #[default]
    #[value(name = "")]
    OneToOne,
    /// Follow one replica; switch to another only across a gap.
    Penalty,
}

impl From<DedupFuncFlag> for strata::compact::dedup::DedupFunc {
    fn from(f: DedupFuncFlag) -> Self {
        match f {
            DedupFuncFlag::OneToOne => strata::compact::dedup::DedupFunc::OneToOne,
            DedupFuncFlag::Penalty => strata::compact::dedup::DedupFunc::Penalty,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value clap offers maps to the library type of the same name.
    #[test]
    fn enum_names_match_the_library() {
        for a in AggrFlag::value_variants() {
            let name = a.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(strata::format::aggr::AggrType::parse(&name), Some((*a).into()), "{name}");
        }
        for f in DedupFuncFlag::value_variants() {
            let name = f.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(strata::compact::dedup::DedupFunc::parse(&name), Some((*f).into()), "{name:?}");
        }
    }
}

/// `--selector.relabel-config-file` / `--selector.relabel-config`: Prometheus relabel rules
/// (a YAML list) over each block's external labels and `__block_id`; blocks they drop are
/// left alone. Shared by `strata run` and `strata restore`.
#[derive(clap::Args, Clone, Debug, Default)]
pub(crate) struct RelabelFlags {
    /// Relabel rules (YAML file) over each block's external labels and `__block_id`;
    /// blocks they drop are left alone (another instance's, or not restored).
    #[arg(long = "selector.relabel-config-file", value_name = "FILE")]
    file: Option<std::path::PathBuf>,
    /// The same rules inline.
    #[arg(long = "selector.relabel-config", value_name = "YAML", allow_hyphen_values = true)]
    yaml: Option<String>,
}

impl RelabelFlags {
    /// The parsed rules (none when neither flag is set).
    pub(crate) fn rules(&self) -> anyhow::Result<Vec<strata::relabel::Rule>> {
        use anyhow::Context;
        use strata::job::selector::Selector;
        match (&self.file, &self.yaml) {
            (Some(_), Some(_)) => {
                anyhow::bail!("--selector.relabel-config-file and --selector.relabel-config are both set; use one")
            }
            (Some(f), None) => {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("--selector.relabel-config-file {}", f.display()))?;
                Selector::parse_relabel(&text)
                    .with_context(|| format!("--selector.relabel-config-file {}", f.display()))
            }
            (None, Some(y)) => Selector::parse_relabel(y).context("--selector.relabel-config"),
            (None, None) => Ok(Vec::new()),
        }
    }
}
