//! The command lines OCI callers send on every container's way (containerd's
//! shim and podman's `create`, `start`, `state`, `kill`, `delete`, `exec`;
//! the API's and agents' `sandbox run`, `exec` and `create`; the network
//! hook), read without building clap's parser.
//!
//! clap builds its whole `Command` tree, with every argument's metadata, on
//! each call before it parses: ~80 µs of work and, in a process that has just
//! started, ~200 µs more of first touches (page faults on its code and heap).
//! A runtime is a new process per call, so that was paid by every call:
//! `state` took 1.10 ms with clap and 0.87 ms without (A/B, 400 runs), and a
//! container's life through a shim is four or more calls.
//!
//! This reader accepts only a strict subset of what clap accepts, and
//! builds exactly the `Cli` clap would build for it; anything else (help,
//! errors, rare options, globals after the subcommand, `-abc` clusters,
//! empty or dash-leading values) returns `None`, and clap parses the line
//! as it always did, with its messages. tests/cli.rs checks the agreement
//! on every form listed there and on thousands of generated lines.

use std::ffi::OsString;
use std::path::PathBuf;

use super::{
    Cli, Command, Create, Delete, Exec, Global, Hooks, Id, Kill, NetworkHook, Run, Sandbox,
    SandboxCreate, SandboxExec, SandboxRun, SpecFlags,
};
use crate::logging::Format;
use crate::store::DEFAULT_ROOT;

/// How an option takes its value.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Flag,
    /// One value, given once.
    Value,
    /// One value per use, repeatable.
    Values,
}

#[derive(Clone, Copy)]
struct Opt {
    long: &'static str,
    short: Option<char>,
    kind: Kind,
}

const fn opt(long: &'static str, short: Option<char>, kind: Kind) -> Opt {
    Opt { long, short, kind }
}

/// How the words after a command's options are read.
#[derive(Clone, Copy, PartialEq)]
enum Tail {
    /// Positionals only, between `min` and `max` of them.
    Positionals { min: usize, max: usize },
    /// One positional, then the first word that is not an option starts the
    /// command, which takes every word after it as it is (runc's `exec`).
    Command,
    /// `n` positionals, then `--` and the command (clap's `last = true`);
    /// `required`: at least one word after `--`.
    AfterDashes { n: usize, required: bool },
}

const GLOBALS: &[Opt] = &[
    opt("root", None, Kind::Value),
    opt("log", None, Kind::Value),
    opt("log-format", None, Kind::Value),
    opt("debug", None, Kind::Flag),
    opt("systemd-cgroup", None, Kind::Flag),
    opt("rootless", None, Kind::Value),
    opt("criu", None, Kind::Value),
];

const CREATE: &[Opt] = &[
    opt("bundle", Some('b'), Kind::Value),
    opt("pid-file", None, Kind::Value),
    opt("console-socket", None, Kind::Value),
    opt("no-pivot", None, Kind::Flag),
    opt("no-new-keyring", None, Kind::Flag),
    opt("preserve-fds", None, Kind::Value),
];

/// `run`'s options beyond `create`'s.
const RUN_ONLY: &[Opt] = &[
    opt("detach", Some('d'), Kind::Flag),
    opt("keep", None, Kind::Flag),
    opt("no-subreaper", None, Kind::Flag),
];

const EXEC: &[Opt] = &[
    opt("process", Some('p'), Kind::Value),
    opt("detach", Some('d'), Kind::Flag),
    opt("pid-file", None, Kind::Value),
    opt("tty", Some('t'), Kind::Flag),
    opt("console-socket", None, Kind::Value),
    opt("cwd", None, Kind::Value),
    opt("env", Some('e'), Kind::Values),
    opt("user", Some('u'), Kind::Value),
];

const SANDBOX_RUN: &[Opt] = &[
    opt("spec", None, Kind::Value),
    opt("name", None, Kind::Value),
    opt("report", None, Kind::Value),
    opt("tty", Some('t'), Kind::Flag),
];

const SANDBOX_EXEC: &[Opt] = &[
    opt("timeout", None, Kind::Value),
    opt("env", None, Kind::Values),
    opt("clear-env", None, Kind::Flag),
    opt("workdir", None, Kind::Value),
    opt("user", None, Kind::Value),
    opt("stdin", None, Kind::Value),
    opt("tty", Some('t'), Kind::Flag),
    opt("console-socket", None, Kind::Value),
];

/// The words of one command, sorted out.
#[derive(Default)]
struct Words {
    /// Options given, in order, with their values (flags: none).
    opts: Vec<(&'static str, Option<String>)>,
    positionals: Vec<String>,
    command: Vec<String>,
}

impl Words {
    fn flag(&self, long: &str) -> bool {
        self.opts.iter().any(|(l, _)| *l == long)
    }

    fn value(&self, long: &str) -> Option<String> {
        self.opts
            .iter()
            .find(|(l, _)| *l == long)
            .and_then(|(_, v)| v.clone())
    }

    fn path(&self, long: &str) -> Option<PathBuf> {
        self.value(long).map(PathBuf::from)
    }

    fn values(&self, long: &str) -> Vec<String> {
        self.opts
            .iter()
            .filter(|(l, _)| *l == long)
            .filter_map(|(_, v)| v.clone())
            .collect()
    }
}

/// The option `word` names in `table`, and its value when written
/// `--long=VALUE`. `None` for anything else.
fn lookup<'t>(table: &'t [Opt], word: &str) -> Option<(&'t Opt, Option<String>)> {
    if let Some(long) = word.strip_prefix("--") {
        let (name, value) = match long.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (long, None),
        };
        return table.iter().find(|o| o.long == name).map(|o| (o, value));
    }
    let mut chars = word.strip_prefix('-')?.chars();
    let short = chars.next()?;
    if chars.next().is_some() {
        return None;
    }
    table
        .iter()
        .find(|o| o.short == Some(short))
        .map(|o| (o, None))
}

/// Reads options from `table` and the tail from `words`; `None` on
/// anything clap might read otherwise or reject.
fn read(words: &[&str], table: &[Opt], tail: Tail) -> Option<Words> {
    let mut out = Words::default();
    let mut i = 0;
    while i < words.len() {
        let word = words[i];
        i += 1;
        if word == "--" {
            let Tail::AfterDashes { required, .. } = tail else {
                return None;
            };
            out.command = words[i..].iter().map(|w| (*w).to_owned()).collect();
            if required && out.command.is_empty() {
                return None;
            }
            break;
        }
        if word.starts_with('-') {
            let (o, mut value) = lookup(table, word)?;
            if o.kind != Kind::Values && out.opts.iter().any(|(l, _)| *l == o.long) {
                return None;
            }
            match (o.kind, &value) {
                (Kind::Flag, Some(_)) => return None,
                (Kind::Flag, None) => {}
                (_, None) => {
                    let next = *words.get(i)?;
                    i += 1;
                    value = Some(next.to_owned());
                }
                (_, Some(_)) => {}
            }
            if let Some(v) = &value
                && (v.is_empty() || v.starts_with('-'))
            {
                return None;
            }
            out.opts.push((o.long, value));
            continue;
        }
        if word.is_empty() {
            return None;
        }
        match tail {
            Tail::Command if !out.positionals.is_empty() => {
                out.command = words[i - 1..].iter().map(|w| (*w).to_owned()).collect();
                break;
            }
            Tail::AfterDashes { n, .. } if out.positionals.len() == n => return None,
            Tail::Positionals { max, .. } if out.positionals.len() == max => return None,
            _ => out.positionals.push(word.to_owned()),
        }
    }
    let enough = match tail {
        Tail::Positionals { min, .. } => out.positionals.len() >= min,
        Tail::Command => out.positionals.len() == 1,
        // A required command needs `--` and a word after it.
        Tail::AfterDashes { n, required } => {
            out.positionals.len() == n && (!required || !out.command.is_empty())
        }
    };
    enough.then_some(out)
}

/// A number as clap reads an `i32` option, when it is plainly one.
fn count(value: Option<String>) -> Option<i32> {
    match value {
        None => Some(0),
        Some(v) if v.bytes().all(|b| b.is_ascii_digit()) => v.parse().ok(),
        Some(_) => None,
    }
}

/// The `Cli` clap would give for `args` (argv, program name first), when
/// the line is one this reader knows; `None` otherwise.
pub fn parse(args: &[OsString]) -> Option<Cli> {
    let words: Vec<&str> = args
        .iter()
        .skip(1)
        .map(|a| a.to_str())
        .collect::<Option<_>>()?;
    // The global options, before the command: a value given apart
    // (`--root X`) is taken with its option, not as the command.
    let mut i = 0;
    while let Some(w) = words.get(i).filter(|w| w.starts_with('-')) {
        let (o, inline) = lookup(GLOBALS, w)?;
        i += if o.kind == Kind::Flag || inline.is_some() {
            1
        } else {
            2
        };
    }
    let globals = words.get(..i)?;
    let g = read(globals, GLOBALS, Tail::Positionals { min: 0, max: 0 })?;
    let log_format = match g.value("log-format").as_deref() {
        None | Some("text") => Format::Text,
        Some("json") => Format::Json,
        Some(_) => return None,
    };
    let global = Global {
        root: g
            .path("root")
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT)),
        log: g.path("log"),
        log_format,
        debug: g.flag("debug"),
        systemd_cgroup: g.flag("systemd-cgroup"),
        rootless: g.value("rootless"),
        criu: g.value("criu"),
        version: false,
    };
    let (name, rest) = words[i..].split_first()?;
    let command = command(name, rest)?;
    Some(Cli {
        global,
        command: Some(command),
    })
}

fn command(name: &str, rest: &[&str]) -> Option<Command> {
    let one = Tail::Positionals { min: 1, max: 1 };
    let id = |w: Words| w.positionals.into_iter().next();
    Some(match name {
        "create" => Command::Create(create(read(rest, CREATE, one)?)?),
        "run" => {
            let w = read(rest, &[CREATE, RUN_ONLY].concat(), one)?;
            Command::Run(Run {
                detach: w.flag("detach"),
                keep: w.flag("keep"),
                no_subreaper: w.flag("no-subreaper"),
                create: create(w)?,
            })
        }
        "start" | "state" | "pause" | "resume" => {
            let container_id = id(read(rest, &[], one)?)?;
            let id = Id { container_id };
            match name {
                "start" => Command::Start(id),
                "state" => Command::State(id),
                "pause" => Command::Pause(id),
                _ => Command::Resume(id),
            }
        }
        "delete" => {
            let w = read(rest, &[opt("force", Some('f'), Kind::Flag)], one)?;
            Command::Delete(Delete {
                force: w.flag("force"),
                container_id: id(w)?,
            })
        }
        "kill" => {
            let table = [opt("all", Some('a'), Kind::Flag)];
            let w = read(rest, &table, Tail::Positionals { min: 1, max: 2 })?;
            let all = w.flag("all");
            let mut p = w.positionals.into_iter();
            Command::Kill(Kill {
                all,
                container_id: p.next()?,
                signal: p.next().unwrap_or_else(|| "SIGTERM".to_owned()),
            })
        }
        "exec" => Command::Exec(exec(read(rest, EXEC, Tail::Command)?)?),
        "sandbox" => Command::Sandbox(sandbox(rest)?),
        "hook" => {
            let (sub, rest) = rest.split_first()?;
            if *sub != "network" {
                return None;
            }
            let table = [
                opt("policy", None, Kind::Value),
                opt("down", None, Kind::Flag),
            ];
            let w = read(rest, &table, Tail::Positionals { min: 0, max: 0 })?;
            Command::Hooks(Hooks::Network(NetworkHook {
                policy: w.path("policy")?,
                down: w.flag("down"),
            }))
        }
        _ => return None,
    })
}

fn create(w: Words) -> Option<Create> {
    Some(Create {
        bundle: w.path("bundle").unwrap_or_else(|| PathBuf::from(".")),
        pid_file: w.path("pid-file"),
        console_socket: w.path("console-socket"),
        no_pivot: w.flag("no-pivot"),
        no_new_keyring: w.flag("no-new-keyring"),
        preserve_fds: count(w.value("preserve-fds"))?,
        container_id: w.positionals.into_iter().next()?,
    })
}

fn exec(w: Words) -> Option<Exec> {
    Some(Exec {
        process: w.path("process"),
        detach: w.flag("detach"),
        pid_file: w.path("pid-file"),
        tty: w.flag("tty"),
        console_socket: w.path("console-socket"),
        cwd: w.path("cwd"),
        env: w.values("env"),
        user: w.value("user"),
        additional_gids: Vec::new(),
        cap: Vec::new(),
        no_new_privs: false,
        preserve_fds: 0,
        ignore_paused: false,
        cgroup: None,
        process_label: None,
        apparmor: None,
        clear_env: false,
        container_id: w.positionals.into_iter().next()?,
        command: w.command,
    })
}

fn sandbox(words: &[&str]) -> Option<Sandbox> {
    let (sub, rest) = words.split_first()?;
    Some(match *sub {
        "run" => {
            let tail = Tail::AfterDashes {
                n: 0,
                required: false,
            };
            let w = read(rest, SANDBOX_RUN, tail)?;
            Sandbox::Run(SandboxRun {
                spec: SpecFlags {
                    spec: w.path("spec"),
                    ..SpecFlags::default()
                },
                report: w.path("report"),
                name: w.value("name"),
                tty: w.flag("tty"),
                command: w.command,
            })
        }
        "exec" => {
            let tail = Tail::AfterDashes {
                n: 1,
                required: true,
            };
            let w = read(rest, SANDBOX_EXEC, tail)?;
            // clap's `requires = "tty"`, with its error.
            if w.flag("console-socket") && !w.flag("tty") {
                return None;
            }
            Sandbox::Exec(SandboxExec {
                timeout: w.value("timeout"),
                env: w.values("env"),
                clear_env: w.flag("clear-env"),
                workdir: w.path("workdir"),
                user: w.value("user"),
                stdin: w.path("stdin"),
                tty: w.flag("tty"),
                console_socket: w.path("console-socket"),
                name: w.positionals.into_iter().next()?,
                command: w.command,
            })
        }
        "create" => {
            let table = [opt("spec", None, Kind::Value)];
            let w = read(rest, &table, Tail::Positionals { min: 1, max: 1 })?;
            Sandbox::Create(SandboxCreate {
                spec: SpecFlags {
                    spec: w.path("spec"),
                    ..SpecFlags::default()
                },
                name: w.positionals.into_iter().next()?,
            })
        }
        _ => return None,
    })
}
