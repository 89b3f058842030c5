//! The sbx-oci binary: parse runc's command line, dispatch to `ops`, and turn
//! an error into one line on stderr and one JSON `error` line in `--log`.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use sbx_oci::cli::{Cli, Command, Hooks, Sandbox};
use sbx_oci::ops::{self, Context};
use sbx_oci::{Result, logging};

// The ELF entry point (build.rs): linked in for its symbol alone.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
extern crate sbx_oci_early;

fn main() -> ExitCode {
    sbx_oci::selfexe::mark_runtime();
    // The common lines without building clap's parser (see cli::fast).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = sbx_oci::cli::fast::parse(&args).unwrap_or_else(|| Cli::parse_from(args));
    if cli.global.version {
        println!(
            "sbx-oci version {}\nspec: {}\nlibcontainer: 0.7",
            env!("CARGO_PKG_VERSION"),
            oci_spec::runtime::VERSION
        );
        return ExitCode::SUCCESS;
    }
    let Some(command) = cli.command else {
        eprintln!("sbx-oci: error: no command given; see `sbx-oci --help`");
        return ExitCode::from(2);
    };
    let g = &cli.global;
    let sink = match logging::init(g.log.as_deref(), g.log_format, g.debug) {
        Ok(sink) => sink,
        Err(err) => {
            eprintln!("sbx-oci: error: {err}");
            return ExitCode::FAILURE;
        }
    };
    match dispatch(&cli.global, command) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        // The reader of our output went away (`list | head`): no message,
        // as from runc (which SIGPIPE kills), and the status a shell shows
        // for a command that SIGPIPE killed.
        Err(sbx_oci::Error::Io { context, source })
            if context == sbx_oci::error::OUTPUT_LOST
                && source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            ExitCode::from(128 + libc::SIGPIPE as u8)
        }
        Err(err) => {
            let msg = err.to_string();
            if let Some(sink) = &sink {
                sink.error(&msg);
            }
            // "error" in the line: test harnesses and tools grep for it, as
            // runc and youki print it.
            eprintln!("sbx-oci: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(g: &sbx_oci::cli::Global, command: Command) -> Result<i32> {
    // Not locked for the whole call: forked container processes must not
    // inherit a held lock.
    let stdout = &mut std::io::stdout();
    // `spec`, `features`, `sandbox bundle` and `hook` need no state root.
    match &command {
        Command::Sandbox(Sandbox::Bundle(args)) => {
            return ops::sandbox::bundle::bundle(args).map(|_| 0);
        }
        Command::Spec(args) => return ops::spec::spec(args).map(|_| 0),
        Command::Hook(args) => return ops::hook::hook(args),
        Command::Hooks(Hooks::Network(args)) => return ops::network_hook::hook(args),
        Command::Hooks(Hooks::Sweep) => return sbx_oci::nft::host_sweep().map(|_| 0),
        Command::Features => {
            let doc = serde_json::to_string_pretty(&ops::features::features()).unwrap_or_default();
            let _ = writeln!(stdout, "{doc}");
            return Ok(0);
        }
        _ => {}
    }
    // Commands that put a runtime process into a container re-execute
    // themselves from a protected binary first, before any side effect.
    if matches!(
        command,
        Command::Create(_)
            | Command::Run(_)
            | Command::Exec(_)
            | Command::Sandbox(Sandbox::Run(_) | Sandbox::Create(_) | Sandbox::Exec(_))
    ) {
        sbx_oci::selfexe::ensure_protected()?;
    }
    let ctx = Context::new(&g.root, g.systemd_cgroup)?;
    match command {
        Command::Create(args) => ops::create::create(&ctx, &args, false).map(|_| 0),
        Command::Start(args) => ops::start::start(&ctx, &args).map(|_| 0),
        Command::Run(args) => ops::run::run(&ctx, &args),
        Command::State(args) => {
            let state = ops::state::state(&ctx, &args)?;
            let json = serde_json::to_string_pretty(&state).unwrap_or_default();
            let _ = writeln!(stdout, "{json}");
            Ok(0)
        }
        Command::Kill(args) => ops::kill::kill(&ctx, &args).map(|_| 0),
        Command::Delete(args) => ops::delete::delete(&ctx, &args).map(|_| 0),
        Command::Exec(args) => ops::exec::exec(&ctx, &args),
        Command::Ps(args) => ops::ps::ps(&ctx, &args, stdout).map(|_| 0),
        Command::List(args) => ops::list::list(&ctx, &args, stdout).map(|_| 0),
        Command::Pause(args) => ops::pause::pause(&ctx, &args).map(|_| 0),
        Command::Resume(args) => ops::resume::resume(&ctx, &args).map(|_| 0),
        Command::Events(args) => ops::events::events(&ctx, &args, stdout).map(|_| 0),
        Command::Update(args) => ops::update::update(&ctx, &args).map(|_| 0),
        Command::Sandbox(cmd) => sandbox(&ctx, cmd, stdout),
        Command::Gc => ops::gc::gc(&ctx, stdout).map(|_| 0),
        Command::Spec(_) | Command::Features | Command::Hook(_) | Command::Hooks(_) => {
            unreachable!("handled above")
        }
    }
}

fn sandbox(ctx: &Context, command: Sandbox, stdout: &mut dyn Write) -> Result<i32> {
    use ops::sandbox as sb;
    match command {
        Sandbox::Run(args) => sb::run::run(ctx, &args),
        Sandbox::Create(args) => sb::create::create(ctx, &args).map(|_| 0),
        Sandbox::Exec(args) => sb::exec::exec(ctx, &args),
        Sandbox::Stats(args) => {
            let stats = sb::stats::stats(ctx, &args.name)?;
            let json = serde_json::to_string_pretty(&stats).unwrap_or_default();
            let _ = writeln!(stdout, "{json}");
            Ok(0)
        }
        Sandbox::Snapshot(args) => sb::snapshot::snapshot(ctx, &args).map(|_| 0),
        Sandbox::Restore(args) => sb::snapshot::restore(ctx, &args).map(|_| 0),
        Sandbox::List(args) => sb::list::list(ctx, args.json, stdout).map(|_| 0),
        Sandbox::Rm(args) => sb::rm::rm(ctx, &args).map(|_| 0),
        Sandbox::Probe(args) => sb::probe::print(&sb::probe::probe(), args.json, stdout).map(|_| 0),
        Sandbox::Bundle(_) => unreachable!("handled in dispatch"),
    }
}
