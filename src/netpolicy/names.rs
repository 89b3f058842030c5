//! Name patterns of allowlist entries (pure): `example.com` (that name),
//! `*.example.com` (exactly one more label) and `**.example.com` (one label
//! or more); never the apex under a wildcard, never a mere suffix match.
//! [`NameSet`] finds every pattern a queried name matches in time that does
//! not grow with the number of patterns.

use std::collections::HashMap;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NamePattern {
    Exact(String),
    /// `*.base`
    OneLabel(String),
    /// `**.base`
    AnyDepth(String),
}

impl NamePattern {
    /// Parses a name or a wildcard; lowercases it and drops one trailing
    /// dot. The error says what is wrong (the caller quotes the entry).
    pub fn parse(s: &str) -> Result<NamePattern, String> {
        if !s.is_ascii() {
            return Err(format!(
                "{s:?} is not ASCII: give an international name in punycode (xn--...)"
            ));
        }
        let lower = s.to_ascii_lowercase();
        let name = lower.strip_suffix('.').unwrap_or(&lower);
        let (kind, base): (fn(String) -> NamePattern, &str) =
            if let Some(b) = name.strip_prefix("**.") {
                (NamePattern::AnyDepth, b)
            } else if let Some(b) = name.strip_prefix("*.") {
                (NamePattern::OneLabel, b)
            } else {
                (NamePattern::Exact, name)
            };
        if base.contains('*') {
            return Err(format!(
                "{s:?}: a wildcard is allowed only as the first label, as \"*.\" (one label) \
                 or \"**.\" (any depth)"
            ));
        }
        check_name(base).map_err(|why| format!("{s:?} is not a host name ({why})"))?;
        let pattern = kind(base.to_owned());
        if !matches!(pattern, NamePattern::Exact(_)) {
            if !base.contains('.') {
                return Err(format!(
                    "{s:?} is a wildcard over the top-level domain {base:?}; name a domain \
                     under it"
                ));
            }
            if is_public_suffix(base) {
                return Err(format!(
                    "{s:?} is a wildcard over the public suffix {base:?}, under which \
                     unrelated owners register names; name a domain under it"
                ));
            }
        }
        Ok(pattern)
    }

    /// The name the pattern is anchored on.
    pub fn base(&self) -> &str {
        match self {
            NamePattern::Exact(b) | NamePattern::OneLabel(b) | NamePattern::AnyDepth(b) => b,
        }
    }

    /// Whether `qname` (lowercase, no trailing dot) matches.
    pub fn matches(&self, qname: &str) -> bool {
        match self {
            NamePattern::Exact(b) => qname == b,
            NamePattern::OneLabel(b) => {
                under(qname, b).is_some_and(|prefix| !prefix.is_empty() && !prefix.contains('.'))
            }
            NamePattern::AnyDepth(b) => under(qname, b).is_some_and(|prefix| !prefix.is_empty()),
        }
    }
}

/// The labels of `qname` before `.base`, when it ends so.
fn under<'a>(qname: &'a str, base: &str) -> Option<&'a str> {
    qname.strip_suffix(base)?.strip_suffix('.')
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamePattern::Exact(b) => write!(f, "{b}"),
            NamePattern::OneLabel(b) => write!(f, "*.{b}"),
            NamePattern::AnyDepth(b) => write!(f, "**.{b}"),
        }
    }
}

/// RFC 1123 labels: letters, digits and inner hyphens, 1 to 63 characters;
/// 253 characters in all.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty".into());
    }
    if name.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "label {label:?}: letters, digits and inner '-', 1 to 63 characters"
            ));
        }
    }
    Ok(())
}

/// Whether `name` (lower-case ASCII) is itself a public suffix (`co.uk`,
/// `github.io`): a rule of the Public Suffix List names it, or a wildcard
/// rule names its parent (`*.ck` makes `a.ck` one) and no exception rule
/// takes it out (`!www.ck`). The list is kept as text (~120 KB of read-only
/// data, scanned only when a wildcard entry is checked) rather than as
/// compiled code: the psl crate's ~630 KB of match arms sat in the binary's
/// text, mapped into every run.
fn is_public_suffix(name: &str) -> bool {
    let has = |rule: &str| PUBLIC_SUFFIXES.lines().any(|l| l == rule);
    let wildcard = name
        .split_once('.')
        .is_some_and(|(_, parent)| has(&format!("*.{parent}")));
    (has(name) || wildcard) && !has(&format!("!{name}"))
}

/// tools/public-suffixes.py makes it from the Public Suffix List.
const PUBLIC_SUFFIXES: &str = include_str!("public_suffixes.txt");

/// Patterns with a value each; a name finds every pattern it matches by
/// looking up itself and each of its parent names, so the cost grows with
/// the name's labels, not with the patterns.
#[derive(Clone, Debug, Default)]
pub struct NameSet<T> {
    entries: Vec<(NamePattern, T)>,
    exact: HashMap<String, Vec<usize>>,
    one: HashMap<String, Vec<usize>>,
    any: HashMap<String, Vec<usize>>,
}

impl<T> NameSet<T> {
    pub fn new(entries: Vec<(NamePattern, T)>) -> NameSet<T> {
        let mut set = NameSet {
            entries: Vec::new(),
            exact: HashMap::new(),
            one: HashMap::new(),
            any: HashMap::new(),
        };
        for (i, (p, _)) in entries.iter().enumerate() {
            let map = match p {
                NamePattern::Exact(_) => &mut set.exact,
                NamePattern::OneLabel(_) => &mut set.one,
                NamePattern::AnyDepth(_) => &mut set.any,
            };
            map.entry(p.base().to_owned()).or_default().push(i);
        }
        set.entries = entries;
        set
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The pattern and value of entry `i`.
    pub fn get(&self, i: usize) -> Option<&(NamePattern, T)> {
        self.entries.get(i)
    }

    /// The value of entry `i`.
    pub fn value(&self, i: usize) -> Option<&T> {
        self.entries.get(i).map(|(_, v)| v)
    }

    /// The indexes of the entries `qname` (lowercase, no trailing dot)
    /// matches, in order.
    pub fn lookup(&self, qname: &str) -> Vec<usize> {
        let mut out: Vec<usize> = self.exact.get(qname).cloned().unwrap_or_default();
        // Each parent: `a.b.c` → `b.c` (depth 1), `c` (depth 2).
        let mut rest = qname;
        let mut depth = 0;
        while let Some((_, parent)) = rest.split_once('.') {
            depth += 1;
            if depth == 1
                && let Some(v) = self.one.get(parent)
            {
                out.extend(v);
            }
            if let Some(v) = self.any.get(parent) {
                out.extend(v);
            }
            rest = parent;
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_parse_and_print_canonically() {
        for (s, want) in [
            ("PyPI.org", "pypi.org"),
            ("pypi.org.", "pypi.org"),
            ("*.Example.COM", "*.example.com"),
            ("**.example.com.", "**.example.com"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("localhost", "localhost"),
            ("*.user.github.io", "*.user.github.io"),
        ] {
            let p = NamePattern::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(p.to_string(), want, "{s}");
            assert_eq!(NamePattern::parse(&p.to_string()).unwrap(), p);
        }
    }

    #[test]
    fn bad_patterns_say_why() {
        for (s, want) in [
            ("*.com", "wildcard over the top-level domain \"com\""),
            ("**.org", "top-level domain"),
            ("*.co.uk", "public suffix \"co.uk\""),
            ("**.github.io", "public suffix \"github.io\""),
            ("a.*.example.com", "only as the first label"),
            ("*foo.example.com", "only as the first label"),
            ("***.example.com", "only as the first label"),
            ("*", "only as the first label"),
            ("bücher.example", "punycode"),
            ("-bad.org", "label \"-bad\""),
            ("a..b", "label \"\""),
            ("under_score.org", "label \"under_score\""),
            ("*.", "only as the first label"),
        ] {
            let err = NamePattern::parse(s).unwrap_err();
            assert!(err.contains(want), "{s:?}: {err}");
        }
    }

    #[test]
    fn public_suffixes_follow_the_lists_rules() {
        for (name, public) in [
            ("com", true),
            ("co.uk", true),
            ("github.io", true),     // the list's private section
            ("a.ck", true),          // *.ck
            ("www.ck", false),       // !www.ck
            ("xn--55qx5d.cn", true), // 公司.cn, as punycode
            ("example.com", false),
            ("bbc.co.uk", false),
            ("a.b.ck", false), // *.ck reaches one label only
            ("notatld", false),
            (
                "// the public suffix list (https://publicsuffix.org/), mozilla public license 2.0:",
                false,
            ),
        ] {
            assert_eq!(is_public_suffix(name), public, "{name}");
        }
    }

    #[test]
    fn wildcards_match_one_label_or_any_depth_never_the_apex() {
        let one = NamePattern::parse("*.x.test").unwrap();
        let any = NamePattern::parse("**.x.test").unwrap();
        let exact = NamePattern::parse("x.test").unwrap();
        for (q, o, a, e) in [
            ("a.x.test", true, true, false),
            ("a.b.x.test", false, true, false),
            ("x.test", false, false, true),
            ("evilx.test", false, false, false),
            ("a.evilx.test", false, false, false),
            ("x.test.evil", false, false, false),
            ("", false, false, false),
        ] {
            assert_eq!(one.matches(q), o, "*.x.test ~ {q}");
            assert_eq!(any.matches(q), a, "**.x.test ~ {q}");
            assert_eq!(exact.matches(q), e, "x.test ~ {q}");
        }
    }

    #[test]
    fn the_set_finds_every_matching_pattern() {
        let pats = [
            "x.test",
            "*.x.test",
            "**.x.test",
            "a.x.test",
            "**.b.x.test",
            "y.test",
        ];
        let set = NameSet::new(
            pats.iter()
                .map(|p| (NamePattern::parse(p).unwrap(), *p))
                .collect(),
        );
        let hits = |q: &str| -> Vec<&str> {
            set.lookup(q)
                .into_iter()
                .map(|i| *set.value(i).unwrap())
                .collect()
        };
        assert_eq!(hits("x.test"), ["x.test"]);
        assert_eq!(hits("a.x.test"), ["*.x.test", "**.x.test", "a.x.test"]);
        assert_eq!(hits("c.b.x.test"), ["**.x.test", "**.b.x.test"]);
        assert_eq!(hits("b.x.test"), ["*.x.test", "**.x.test"]);
        assert!(hits("z.test").is_empty());
        assert!(hits("test").is_empty());
        // Brute force agrees with the index.
        for q in [
            "a.x.test",
            "q.a.x.test",
            "x.test",
            "b.x.test",
            "y.test",
            "a.y.test",
        ] {
            let brute: Vec<usize> = (0..pats.len())
                .filter(|i| set.get(*i).unwrap().0.matches(q))
                .collect();
            assert_eq!(set.lookup(q), brute, "{q}");
        }
    }
}
