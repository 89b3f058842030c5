//! `cli::fast` against clap: every line the fast reader accepts must come
//! out exactly as clap reads it (compared through their Debug forms, which
//! show every field), and every line it does not know must be left to clap.

use std::ffi::OsString;

use clap::Parser;
use sbx_oci::cli::{Cli, fast};

fn argv(words: &[&str]) -> Vec<OsString> {
    std::iter::once("sbx-oci")
        .chain(words.iter().copied())
        .map(OsString::from)
        .collect()
}

fn by_clap(words: &[&str]) -> Option<String> {
    Cli::try_parse_from(argv(words))
        .ok()
        .map(|c| format!("{c:?}"))
}

fn by_fast(words: &[&str]) -> Option<String> {
    fast::parse(&argv(words)).map(|c| format!("{c:?}"))
}

/// Fails when the fast reader accepts `words` and clap reads them otherwise
/// or rejects them; returns whether the fast reader took them.
fn agree(words: &[&str]) -> bool {
    let Some(fast) = by_fast(words) else {
        return false;
    };
    match by_clap(words) {
        Some(clap) => assert_eq!(fast, clap, "{words:?}"),
        None => panic!("{words:?}: the fast reader accepts what clap rejects: {fast}"),
    }
    true
}

/// The lines callers send (../shared/reference/clients.md: podman's and
/// containerd's shim's; the API's; the benchmarks'), which must take the
/// fast way.
#[test]
fn the_lines_callers_send_are_read_without_clap_and_as_clap_reads_them() {
    let known = [
        // podman (through conmon)
        "create --bundle /b/userdata --pid-file /r/userdata/pidfile c1",
        "create --bundle /b --pid-file /r/pidfile --console-socket /tmp/conmon-term.1 c1",
        "start c1",
        "delete --force c1",
        "exec --pid-file /e/exec_pid --process /e/exec-process-1 --detach c1",
        "exec --pid-file /e/exec_pid --process /e/p --detach --tty --console-socket /tmp/t c1",
        "pause c1",
        "resume c1",
        "kill c1 10",
        "kill --all c1 15",
        "--log=/tmp/log create --bundle /b c1",
        // containerd's runc v2 shim
        "--root /run/containerd/runc/default --log /b/log.json --log-format json create --bundle /b --pid-file /b/init.pid t1",
        "--root /run/containerd/runc/default --log /b/log.json --log-format json start t1",
        "--root /run/containerd/runc/default --log /b/log.json --log-format json delete t1",
        "--root /run/containerd/runc/default --log /b/log.json --log-format json delete --force t1",
        "--root /r --log /b/log.json --log-format json exec --process /tmp/runc-process1 --detach --pid-file /b/e1.pid t3",
        "--root /r --log /b/log.json --log-format json exec --process /p --console-socket /tmp/pty.sock --detach --pid-file /b/e2.pid t3",
        "--root /r --log /b/log.json --log-format json kill t3 15",
        "--root /r --log /b/log.json --log-format json kill --all t3 9",
        "--root /r state t3",
        // runc's own forms
        "run --bundle /b c1",
        "run -d -b /b c1",
        "run --detach --keep --no-pivot c1",
        "--systemd-cgroup --debug run --bundle /b --pid-file /p --preserve-fds 3 c1",
        "create -b /b --no-new-keyring c1",
        "delete -f c1",
        "kill -a c1 KILL",
        "kill c1",
        "exec c1 sh -c echo",
        "exec -t c1 sh",
        "exec --env A=1 -e B=2 --cwd /w --user 1:1 c1 ls -la --color",
        // the API, the benchmarks, the network hook
        "--root /r --log /l --log-format json sandbox create --spec /dev/fd/3 box",
        "--root /r --log /l --log-format json sandbox run --spec /dev/fd/3 --name one --",
        "--root /r --log /l --log-format json sandbox run --spec /dev/fd/3 -- sh -c true",
        "--root /r sandbox run --name s1 -- true",
        "--root /r sandbox run -- busybox true",
        "sandbox run --tty --report /tmp/r.json -- sh",
        "--root /r sandbox exec --tty --console-socket=/tmp/s --timeout=10ms --env=A=1 --env=B= --clear-env --workdir=/w --user=1:2 box -- cat -",
        "sandbox exec box -- true",
        "sandbox exec --stdin /tmp/in box -- wc -l",
        "hook network --policy /b/network.json",
        "hook network --policy /b/network.json --down",
    ];
    for line in known {
        let words: Vec<&str> = line.split(' ').collect();
        assert!(agree(&words), "{line:?} went to clap");
    }
}

/// Lines for clap to read (or reject with its message): anything the fast
/// reader does not mirror exactly.
#[test]
fn every_other_line_is_left_to_clap() {
    let others: &[&[&str]] = &[
        &[],
        &["--version"],
        &["-v"],
        &["--help"],
        &["help"],
        &["run", "--help"],
        &["list"],
        &["features"],
        &["spec"],
        &["ps", "--format", "json", "c1"],
        &["update", "--resources=/tmp/r", "c1"],
        &["create", "--root", "/r", "c1"],
        &["state", "--debug", "c1"],
        &["create", "c1", "c2"],
        &["create"],
        &["create", "--bundle", "c1"],
        &["create", "--bundle=", "c1"],
        &["create", "--bundle", "", "c1"],
        &["create", "-b=/b", "c1"],
        &["create", "-b/b", "c1"],
        &["create", "--bundle", "/a", "--bundle", "/b", "c1"],
        &["create", "--preserve-fds", "x", "c1"],
        &["create", "--preserve-fds", "+3", "c1"],
        &["create", "--unknown", "c1"],
        &["create", "--", "c1"],
        &["run", "-dt", "c1"],
        &["run", "--detach=true", "c1"],
        &["delete", "--force", "--force", "c1"],
        &["kill", "c1", "-9"],
        &["kill", "c1", "9", "x"],
        &["start", ""],
        &["start", "-"],
        &["exec", "c1", "--", "sh"],
        &["exec", "--cap", "CAP_KILL", "c1", "sh"],
        &["exec", "c1", "-x"],
        &["exec", "c1", "--version"],
        &["--log-format", "yaml", "state", "c1"],
        &["--log-format", "JSON", "state", "c1"],
        &["--root"],
        &["--root", "--debug", "state", "c1"],
        &["--unknown", "state", "c1"],
        &["sandbox"],
        &["sandbox", "list"],
        &["sandbox", "rm", "-f", "box"],
        &["sandbox", "run", "true"],
        &["sandbox", "run", "--memory", "1G", "--", "true"],
        &["sandbox", "run", "--allow", "example.com:443", "--", "curl"],
        &["sandbox", "exec", "box"],
        &["sandbox", "exec", "box", "--"],
        &[
            "sandbox",
            "exec",
            "--console-socket",
            "/s",
            "box",
            "--",
            "sh",
        ],
        &["sandbox", "create", "--profile", "full", "box"],
        &["hook", "network", "--down"],
        &["hook", "sweep"],
        &["run-hook", "/bin/h"],
    ];
    for words in others {
        assert_eq!(by_fast(words), None, "{words:?} did not go to clap");
    }
}

/// Lines made at random from each command's options, values, identifiers
/// and traps (`--`, dashes, empty words, repeats, misplaced globals): the
/// fast reader may decline any of them, but what it accepts, clap reads the
/// same. Deterministic (a fixed seed), so a failure is reproducible.
#[test]
fn generated_lines_are_read_as_clap_reads_them() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let globals: &[&[&str]] = &[
        &[],
        &["--root", "/r"],
        &["--root=/r"],
        &["--log", "/l", "--log-format", "json"],
        &["--log-format=text"],
        &["--debug"],
        &["--systemd-cgroup", "--root", "/r"],
        &["--rootless", "false"],
        &["--criu", "x"],
    ];
    let commands: &[(&[&str], &[&str])] = &[
        (
            &["create"],
            &[
                "--bundle",
                "-b",
                "/b",
                "--pid-file",
                "--pid-file=/p",
                "--console-socket",
                "--console-socket=/s",
                "--no-pivot",
                "--no-new-keyring",
                "--preserve-fds",
                "2",
                "--preserve-fds=1",
                "c1",
            ],
        ),
        (
            &["run"],
            &[
                "--bundle=/b",
                "-b",
                "/b",
                "-d",
                "--detach",
                "--keep",
                "--no-subreaper",
                "--pid-file",
                "/p",
                "c1",
                "--preserve-fds",
                "0",
            ],
        ),
        (&["start"], &["c1", "c2"]),
        (&["state"], &["c1"]),
        (&["pause"], &["c1"]),
        (&["resume"], &["c1"]),
        (&["delete"], &["-f", "--force", "c1"]),
        (&["kill"], &["-a", "--all", "c1", "9", "SIGKILL"]),
        (
            &["exec"],
            &[
                "-p",
                "--process",
                "/p",
                "--detach",
                "-d",
                "-t",
                "--tty",
                "--console-socket",
                "/s",
                "--cwd=/w",
                "-e",
                "--env",
                "A=1",
                "--env=B=2",
                "-u",
                "--user",
                "0",
                "--pid-file",
                "c1",
                "sh",
                "-c",
                "ls",
            ],
        ),
        (
            &["sandbox", "run"],
            &[
                "--spec",
                "/s.json",
                "--name",
                "box",
                "--name=b2",
                "--report",
                "-",
                "/r",
                "-t",
                "--tty",
                "true",
                "sh",
            ],
        ),
        (
            &["sandbox", "exec"],
            &[
                "--timeout",
                "1s",
                "--env",
                "A=1",
                "--clear-env",
                "--workdir",
                "/w",
                "--user",
                "1:1",
                "--stdin",
                "/in",
                "-t",
                "--tty",
                "--console-socket",
                "/s",
                "box",
                "sh",
            ],
        ),
        (
            &["sandbox", "create"],
            &["--spec", "/s.json", "--spec=-", "box"],
        ),
        (
            &["hook", "network"],
            &["--policy", "/p.json", "--down", "--policy=/q"],
        ),
    ];
    let traps = [
        "--",
        "-",
        "",
        "-x",
        "--unknown",
        "--root",
        "/r",
        "--debug",
        "=",
        "-9",
        "a b",
        "--x=",
    ];
    let (mut accepted, mut total) = (0, 0);
    for _ in 0..20_000 {
        let mut words: Vec<&str> = globals[next(globals.len())].to_vec();
        let (name, vocabulary) = commands[next(commands.len())];
        words.extend_from_slice(name);
        for _ in 0..next(7) {
            let word = match next(10) {
                0 => traps[next(traps.len())],
                _ => vocabulary[next(vocabulary.len())],
            };
            words.push(word);
        }
        // Half of the lines end with a command after `--`.
        if next(2) == 0 {
            words.push("--");
            for _ in 0..next(3) {
                words.push(["true", "-c", "--tty", "x"][next(4)]);
            }
        }
        total += 1;
        if agree(&words) {
            accepted += 1;
        }
    }
    // Enough accepted lines for the comparison to mean something.
    assert!(accepted * 20 > total, "only {accepted} of {total} accepted");
}
