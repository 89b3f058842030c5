//! Values on the command line: byte sizes, durations, users.

use std::time::Duration;

use crate::{Error, Result};

/// Bytes with an optional k/m/g/t suffix (powers of 1024); -1 means unlimited.
pub fn parse_bytes(flag: &str, text: &str) -> Result<i64> {
    let bad = || {
        Error::InvalidArgument(format!(
            "{flag} {text:?}: expected bytes, optionally with k, m, g or t (e.g. 512m), or -1"
        ))
    };
    if text == "-1" {
        return Ok(-1);
    }
    let lower = text.to_ascii_lowercase();
    let trimmed = lower.trim_end_matches('b');
    let (num, mult) = match trimmed.chars().last() {
        Some('k') => (&trimmed[..trimmed.len() - 1], 1i64 << 10),
        Some('m') => (&trimmed[..trimmed.len() - 1], 1 << 20),
        Some('g') => (&trimmed[..trimmed.len() - 1], 1 << 30),
        Some('t') => (&trimmed[..trimmed.len() - 1], 1 << 40),
        _ => (trimmed, 1),
    };
    let n: i64 = num.parse().map_err(|_| bad())?;
    if n < 0 {
        return Err(bad());
    }
    n.checked_mul(mult).ok_or_else(bad)
}

/// "5s", "500ms", "2m", "1h", or a bare number of seconds.
pub fn parse_duration(flag: &str, text: &str) -> Result<Duration> {
    let bad = || {
        Error::InvalidArgument(format!(
            "{flag} {text:?}: expected a duration such as 5s or 500ms"
        ))
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(bad());
    }
    // Deadlines are instants this far ahead: far more would overflow them
    // (and Duration itself), and means no limit, which is "0".
    if secs > MAX_DURATION_SECS {
        return Err(Error::InvalidArgument(format!(
            "{flag} {text:?}: at most a year (31536000s); 0 means no limit"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

const MAX_DURATION_SECS: f64 = 365.0 * 86400.0;

/// `UID` or `UID:GID` (numbers; the gid defaults to the uid), as `--user`.
pub fn parse_user(text: &str) -> Result<(u32, u32)> {
    let bad = || {
        Error::InvalidArgument(format!(
            "--user {text:?}: expected UID or UID:GID (numbers)"
        ))
    };
    let (uid, gid) = match text.split_once(':') {
        Some((u, g)) => (u.parse().map_err(|_| bad())?, g.parse().map_err(|_| bad())?),
        None => {
            let uid = text.parse().map_err(|_| bad())?;
            (uid, uid)
        }
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("--memory", "1024").unwrap(), 1024);
        assert_eq!(parse_bytes("--memory", "512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("--memory", "512M").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("--memory", "2G").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("--memory", "-1").unwrap(), -1);
        assert!(parse_bytes("--memory", "lots").is_err());
        assert!(parse_bytes("--memory", "-5").is_err());
    }

    #[test]
    fn users() {
        assert_eq!(parse_user("1000").unwrap(), (1000, 1000));
        assert_eq!(parse_user("1000:100").unwrap(), (1000, 100));
        for bad in ["bob", "1:x", ":1", ""] {
            assert!(
                parse_user(bad).unwrap_err().to_string().contains("--user"),
                "{bad}"
            );
        }
    }

    #[test]
    fn durations() {
        let d = |t| parse_duration("--timeout", t);
        assert_eq!(d("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(d("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(d("2").unwrap(), Duration::from_secs(2));
        assert_eq!(d("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(d("8760h").unwrap(), Duration::from_secs(31_536_000));
        // Found by the sandbox_spec fuzz target: Duration overflowed.
        for bad in [
            "",
            "0s",
            "fast",
            "5x",
            "-1s",
            "4444444444444444444444444444",
            "8761h",
        ] {
            let err = d(bad).unwrap_err().to_string();
            assert!(err.starts_with("--timeout"), "{bad}: {err}");
        }
    }
}
