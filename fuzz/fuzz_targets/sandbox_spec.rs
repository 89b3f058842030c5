//! A SandboxSpec and the command-line flags over it, from hostile input:
//! the first line is flags (split at spaces), the rest the spec's JSON.
//! Parsing, flags, defaults and validation never panic.
#![no_main]

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use sbx_oci::cli::{Cli, Command, Sandbox};
use sbx_oci::sandbox::{SandboxSpec, flags, validate};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (line, json) = text.split_once('\n').unwrap_or((text, "{}"));
    let Ok(spec) = serde_json::from_str::<SandboxSpec>(json) else {
        return;
    };
    let mut argv = vec!["sbx-oci", "sandbox", "run"];
    argv.extend(line.split(' ').filter(|a| !a.is_empty()));
    argv.extend(["--", "true"]);
    let Ok(cli) = Cli::try_parse_from(argv) else {
        return;
    };
    let Some(Command::Sandbox(Sandbox::Run(run))) = cli.command else {
        return;
    };
    if let Ok(spec) = flags::apply(spec, &run.spec) {
        let _ = validate::validate(&spec.resolve());
    }
});
