//! Label sets: the identity of a series.
//!
//! Owns: [`Labels`] (sorted name/value pairs over raw bytes, ordered exactly like
//! Prometheus's `labels.Compare`), Go-compatible printing (`{a="b", c="d"}` with values
//! quoted as Go's `strconv.Quote` does), and series selectors for `--match`.
//! Must not: touch files. Names and values are bytes because the index does not promise
//! UTF-8; printing escapes invalid bytes the way Go does.

use std::fmt;

/// One label pair.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Label {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

/// A sorted set of labels with unique names. The derived order (pair by pair, name then
/// value, bytewise; a prefix sorts first) is Prometheus's series order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Labels(pub Vec<Label>);

impl Labels {
    pub fn new() -> Self {
        Labels(Vec::new())
    }

    /// Builds a set from pairs, sorting by name. Later duplicates of a name win.
    pub fn from_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: impl IntoIterator<Item = (N, V)>) -> Self {
        let mut v: Vec<Label> =
            pairs.into_iter().map(|(n, v)| Label { name: n.as_ref().to_vec(), value: v.as_ref().to_vec() }).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out: Vec<Label> = Vec::with_capacity(v.len());
        for l in v {
            match out.last_mut() {
                Some(last) if last.name == l.name => *last = l,
                _ => out.push(l),
            }
        }
        Labels(out)
    }

    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.0.iter().find(|l| l.name == name).map(|l| l.value.as_slice())
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn clear(&mut self) {
        self.0.clear()
    }
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        self.0.push(Label { name: name.to_vec(), value: value.to_vec() })
    }
}

/// Anything that lists label pairs in order: owned [`Labels`], or pairs borrowed from an
/// index (`[(&[u8], &[u8])]`), which the merge uses to avoid copying strings.
pub trait LabelPairs {
    fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_;

    fn count(&self) -> usize {
        self.pairs().count()
    }

    /// Prometheus's series order (see [`Labels`]).
    fn cmp_pairs<O: LabelPairs + ?Sized>(&self, other: &O) -> std::cmp::Ordering {
        self.pairs().cmp(other.pairs())
    }

    /// `{a="b", c="d"}` as Go prints it.
    fn to_label_string(&self) -> String {
        let mut s = String::with_capacity(64);
        s.push('{');
        for (i, (n, v)) in self.pairs().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(&String::from_utf8_lossy(n));
            s.push('=');
            go_quote_into(&mut s, v);
        }
        s.push('}');
        s
    }

    /// Copies the pairs into `out`, reusing its allocations.
    fn copy_into(&self, out: &mut Labels) {
        let mut n = 0;
        for (name, value) in self.pairs() {
            if n < out.0.len() {
                let l = &mut out.0[n];
                l.name.clear();
                l.name.extend_from_slice(name);
                l.value.clear();
                l.value.extend_from_slice(value);
            } else {
                out.0.push(Label { name: name.to_vec(), value: value.to_vec() });
            }
            n += 1;
        }
        out.0.truncate(n);
    }
}

impl LabelPairs for Labels {
    fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.0.iter().map(|l| (l.name.as_slice(), l.value.as_slice()))
    }
    fn count(&self) -> usize {
        self.0.len()
    }
}

impl LabelPairs for [(&[u8], &[u8])] {
    fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.iter().copied()
    }
    fn count(&self) -> usize {
        self.len()
    }
}

impl LabelPairs for Vec<(&[u8], &[u8])> {
    fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.iter().copied()
    }
    fn count(&self) -> usize {
        self.len()
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(64);
        s.push('{');
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(&String::from_utf8_lossy(&l.name));
            s.push('=');
            go_quote_into(&mut s, &l.value);
        }
        s.push('}');
        f.write_str(&s)
    }
}

/// Quotes bytes as Go's `strconv.Quote` does: printable Unicode as is, `\"`, `\\`, the
/// C escapes, `\xNN` for other control bytes and invalid UTF-8, `\uNNNN`/`\UNNNNNNNN`
/// for non-printable code points.
pub fn go_quote_into(out: &mut String, bytes: &[u8]) {
    out.push('"');
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                quote_str(out, s);
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                quote_str(out, std::str::from_utf8(good).expect("valid prefix"));
                let n = e.error_len().unwrap_or(bad.len()).max(1);
                for b in &bad[..n] {
                    out.push_str(&format!("\\x{b:02x}"));
                }
                rest = &bad[n..];
            }
        }
    }
    out.push('"');
}

fn quote_str(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_ascii() => out.push(c),
            c if is_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
}

/// Unicode printability as Go's `unicode.IsPrint` sees it (letters, marks, numbers,
/// punctuation, symbols; no spaces but U+0020). Rust's debug escaping uses the same
/// categories; a non-leading position keeps it from escaping combining marks.
fn is_printable(c: char) -> bool {
    let mut buf = [0u8; 8];
    buf[0] = b'a';
    let n = c.encode_utf8(&mut buf[1..]).len();
    let s = std::str::from_utf8(&buf[..1 + n]).expect("utf8");
    s.escape_debug().count() == s.chars().count()
}

/// How a matcher compares a label value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

/// One label matcher of a series selector.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: Vec<u8>,
    pub op: MatchOp,
    pub value: String,
    regex: Option<regex::bytes::Regex>,
}

impl Matcher {
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.name).unwrap_or(b"");
        match self.op {
            MatchOp::Equal => v == self.value.as_bytes(),
            MatchOp::NotEqual => v != self.value.as_bytes(),
            MatchOp::Regex => self.regex.as_ref().expect("regex").is_match(v),
            MatchOp::NotRegex => !self.regex.as_ref().expect("regex").is_match(v),
        }
    }
}

/// A parsed series selector such as `up{job="api", instance=~"a|b"}`.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    pub matchers: Vec<Matcher>,
}

impl Selector {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }

    /// Parses `name`, `{matchers}` or `name{matchers}`.
    pub fn parse(s: &str) -> Result<Selector, String> {
        let s = s.trim();
        let mut matchers = Vec::new();
        let (name, rest) = match s.find('{') {
            Some(i) => (s[..i].trim(), &s[i..]),
            None => (s, ""),
        };
        if !name.is_empty() {
            if !valid_name(name, true) {
                return Err(format!("invalid metric name {name:?} in selector {s:?}"));
            }
            matchers.push(Matcher {
                name: b"__name__".to_vec(),
                op: MatchOp::Equal,
                value: name.to_string(),
                regex: None,
            });
        }
        if !rest.is_empty() {
            let inner = rest
                .strip_prefix('{')
                .and_then(|r| r.strip_suffix('}'))
                .ok_or_else(|| format!("selector {s:?}: unbalanced braces"))?;
            let mut p = inner.trim_start();
            while !p.is_empty() {
                let end = p.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(p.len());
                let lname = &p[..end];
                if lname.is_empty() {
                    return Err(format!("selector {s:?}: expected a label name at {p:?}"));
                }
                p = p[end..].trim_start();
                let (op, oplen) = if p.starts_with("!=") {
                    (MatchOp::NotEqual, 2)
                } else if p.starts_with("=~") {
                    (MatchOp::Regex, 2)
                } else if p.starts_with("!~") {
                    (MatchOp::NotRegex, 2)
                } else if p.starts_with('=') {
                    (MatchOp::Equal, 1)
                } else {
                    return Err(format!("selector {s:?}: expected =, !=, =~ or !~ after {lname:?}"));
                };
                p = p[oplen..].trim_start();
                let (value, used) =
                    parse_quoted(p).ok_or_else(|| format!("selector {s:?}: expected a quoted value for {lname:?}"))?;
                p = p[used..].trim_start();
                let regex = match op {
                    MatchOp::Regex | MatchOp::NotRegex => Some(
                        regex::bytes::Regex::new(&format!("^(?:{value})$"))
                            .map_err(|e| format!("selector {s:?}: bad regex: {e}"))?,
                    ),
                    _ => None,
                };
                matchers.push(Matcher { name: lname.as_bytes().to_vec(), op, value, regex });
                if let Some(r) = p.strip_prefix(',') {
                    p = r.trim_start();
                } else if !p.is_empty() {
                    return Err(format!("selector {s:?}: expected ',' or '}}' at {p:?}"));
                }
            }
        }
        if matchers.is_empty() {
            return Err(format!("selector {s:?} has no matchers"));
        }
        Ok(Selector { matchers })
    }
}

fn valid_name(s: &str, metric: bool) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || (metric && c == ':') => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (metric && c == ':'))
}

/// Parses a double-, single- or back-quoted string at the start of `p`; returns the
/// unescaped value and the bytes consumed.
fn parse_quoted(p: &str) -> Option<(String, usize)> {
    let q = p.chars().next()?;
    if q != '"' && q != '\'' && q != '`' {
        return None;
    }
    let mut out = String::new();
    let mut it = p.char_indices().skip(1);
    while let Some((i, c)) = it.next() {
        if c == q {
            return Some((out, i + 1));
        }
        if c == '\\' && q != '`' {
            let (_, e) = it.next()?;
            out.push(match e {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '\\' => '\\',
                '"' => '"',
                '\'' => '\'',
                other => other,
            });
        } else {
            out.push(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_go() {
        let l = Labels::from_pairs([("b", "h\u{e9}llo"), ("a", "x\"y\\z\nw"), ("__name__", "c_total")]);
        assert_eq!(l.to_string(), r#"{__name__="c_total", a="x\"y\\z\nw", b="héllo"}"#);
        let mut s = String::new();
        go_quote_into(&mut s, b"\xff\x01\x7f\xc2\xa0\xe2\x80\x8b\xcc\x81");
        assert_eq!(s, r#""\xff\x01\x7f\u00a0\u200b́""#);
    }

    #[test]
    fn order_is_prometheus_order() {
        let a = Labels::from_pairs([("a", "1")]);
        let b = Labels::from_pairs([("a", "1"), ("b", "0")]);
        let c = Labels::from_pairs([("a", "2")]);
        let d = Labels::from_pairs([("Z", "9")]);
        let mut v = vec![c.clone(), b.clone(), a.clone(), d.clone()];
        v.sort();
        assert_eq!(v, vec![d, a, b, c]);
    }

    #[test]
    fn selectors() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "api"), ("instance", "a:9090")]);
        for (sel, want) in [
            ("up", true),
            ("down", false),
            (r#"{job="api"}"#, true),
            (r#"up{job!="api"}"#, false),
            (r#"{instance=~"a:.*"}"#, true),
            (r#"{instance=~"b.*|a:9090"}"#, true),
            (r#"{instance!~"a.*"}"#, false),
            (r#"{missing=""}"#, true),
            (r#"{job=~"ap"}"#, false),
            (r#"{job=~"[a-c]p+i?"}"#, true),
        ] {
            assert_eq!(Selector::parse(sel).unwrap().matches(&l), want, "{sel}");
        }
        assert!(Selector::parse("{job=api}").is_err());
        assert!(Selector::parse(r#"{a=~"(x"}"#).is_err());
    }
}
