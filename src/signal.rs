//! Signal names and numbers as runc accepts them: "9", "KILL", "SIGKILL", "kill".

use nix::sys::signal::Signal;

use crate::{Error, Result};

pub fn parse(input: &str) -> Result<Signal> {
    let bad = || {
        Error::InvalidArgument(format!(
            "invalid signal {input:?}: give a number (e.g. 15) or a name (e.g. TERM or SIGTERM)"
        ))
    };
    if let Ok(n) = input.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = input.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names() {
        assert_eq!(parse("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse("15").unwrap(), Signal::SIGTERM);
        assert_eq!(parse("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse("sigusr1").unwrap(), Signal::SIGUSR1);
        assert_eq!(parse("SIGHUP").unwrap(), Signal::SIGHUP);
    }

    #[test]
    fn rejects_unknown() {
        for bad in ["0", "99", "-1", "FOO", ""] {
            let msg = parse(bad).unwrap_err().to_string();
            assert!(msg.contains("invalid signal"), "{msg}");
        }
    }
}
