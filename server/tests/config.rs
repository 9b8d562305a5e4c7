//! The binary's configuration: precedence (flag > environment > file > default), start-up
//! failures (one line, exit code 2, nothing served), `--check-config`, `--print-stack`,
//! `--print-config`, and serving with the example file.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("callnext-cfg-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn callnext(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_callnext"));
    command.args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("CALLNEXT_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied()).output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `[table] key = value` line of `--print-config` output.
fn printed(config: &str, table: &str, key: &str) -> String {
    let mut in_table = false;
    for line in config.lines() {
        if line.starts_with('[') {
            in_table = line == format!("[{table}]");
        } else if in_table {
            if let Some(value) = line.strip_prefix(&format!("{key} = ")) {
                return value.to_owned();
            }
        }
    }
    panic!("no {table}.{key} in:\n{config}")
}

#[test]
fn flags_beat_the_environment_which_beats_the_file_which_beats_defaults() {
    let dir = Dir::new("precedence");
    let file = dir.file(
        "c.toml",
        "[server]\nkeep_alive_timeout = \"7s\"\ndrain_timeout = \"3s\"\nport = 9100\n\n[seed]\nsome_option = \"from-file\"\n",
    );
    let config = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["--config", file.as_str(), "--print-config"];
        all.extend_from_slice(args);
        let out = callnext(&all, env);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let file_only = config(&[], &[]);
    assert_eq!(
        printed(&file_only, "server", "keep_alive_timeout"),
        "\"7s\""
    );
    assert_eq!(
        printed(&file_only, "server", "header_read_timeout"),
        "\"30s\""
    );
    assert_eq!(printed(&file_only, "seed", "some_option"), "\"from-file\"");

    let env = [
        ("CALLNEXT_KEEP_ALIVE_TIMEOUT", "8s"),
        ("CALLNEXT_PORT", "9200"),
        ("CALLNEXT_SOME_OPTION", "from-env"),
        ("CALLNEXT_HTTP1_ONLY", "true"),
    ];
    let with_env = config(&[], &env);
    assert_eq!(printed(&with_env, "server", "keep_alive_timeout"), "\"8s\"");
    assert_eq!(printed(&with_env, "server", "port"), "9200");
    assert_eq!(printed(&with_env, "server", "drain_timeout"), "\"3s\"");
    assert_eq!(printed(&with_env, "server", "http1_only"), "true");
    assert_eq!(printed(&with_env, "seed", "some_option"), "\"from-env\"");

    // A bare number keeps the flag's old unit (seconds here, milliseconds for the threshold).
    let flags = config(
        &[
            "--keep-alive-timeout",
            "9",
            "--port",
            "9300",
            "--some-option",
            "from-flag",
            "--blocking-threshold-ms",
            "25",
        ],
        &env,
    );
    assert_eq!(printed(&flags, "server", "keep_alive_timeout"), "\"9s\"");
    assert_eq!(printed(&flags, "server", "port"), "9300");
    assert_eq!(printed(&flags, "seed", "some_option"), "\"from-flag\"");
    assert_eq!(printed(&flags, "stack", "blocking_threshold"), "\"25ms\"");

    // The file may come from the environment too.
    let out = callnext(&["--print-config"], &[("CALLNEXT_CONFIG", &file)]);
    assert_eq!(printed(&stdout(&out), "server", "port"), "9100");
}

#[test]
fn each_kind_of_configuration_error_exits_2_with_one_line() {
    let dir = Dir::new("errors");
    let cases = [
        ("unknown table", "[sever]\nport = 1\n", "1: `sever`: unknown table, expected one of `server`, `log`, `admin`, `stack`, `middleware`, `telemetry`, `seed`"),
        ("unknown key", "[server]\nprot = 1\n", "2: `server.prot`: unknown field `prot`, expected one of `host`, `port`,"),
        ("wrong type", "[server]\nport = \"x\"\n", "2: `server.port`: invalid type: string \"x\", expected u16"),
        ("invalid value", "[server]\nkeep_alive_timeout = \"5\"\n", "2: `server.keep_alive_timeout`: expected a duration with a unit such as \"30s\" or \"10ms\", got \"5\""),
        ("order without table", "[stack]\norder = [\"another\", \"bouncer\"]\n", "2: `stack.order`: `bouncer` has no [middleware.bouncer] table and is not a middleware of the application"),
        ("table not in order", "[stack]\norder = [\"timing\"]\n[middleware.another]\nsome_option = \"x\"\n", "3: `middleware.another`: this table is not in [stack] order"),
        ("application section", "[seed]\nsimulated = false\n", "2: `seed.simulated`: unknown field `simulated`, expected `simulated_io` or `some_option`"),
        ("middleware setting", "[middleware.timing]\nfast = true\n", "2: `middleware.timing.fast`: unknown field `fast`, there are no fields"),
        ("log filter", "[log]\nlevel = \"info,[\"\n", "2: `log.level`: not a log filter"),
        ("tls file", "[server]\ntls_cert = \"missing.pem\"\ntls_key = \"missing.pem\"\n", "2: `server.tls_cert`: invalid `tls_cert`: missing.pem: "),
    ];
    for (name, text, expected) in cases {
        let file = dir.file(&format!("{}.toml", name.replace(' ', "_")), text);
        for mode in [&["--check-config"][..], &["--port", "0"][..]] {
            let mut args = vec!["--config", file.as_str()];
            args.extend_from_slice(mode);
            let out = callnext(&args, &[]);
            assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
            let err = stderr(&out);
            assert_eq!(err.lines().count(), 1, "{name}: {err}");
            assert!(
                err.starts_with(&format!("error: {file}:{expected}")),
                "{name}: {err}"
            );
            assert!(
                stdout(&out).is_empty(),
                "{name}: nothing is served or printed"
            );
        }
    }
    // A flag's bad value is a usage error, also code 2.
    let out = callnext(&["--keep-alive-timeout", "soon", "--check-config"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("expected a duration with a unit"),
        "{}",
        stderr(&out)
    );
    let out = callnext(
        &["--trusted-proxies", "10.0.0.0/8,nope", "--check-config"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`nope` is not an IP address or CIDR network"));
}

#[test]
fn check_config_and_print_stack() {
    let dir = Dir::new("print");
    let file = dir.file(
        "c.toml",
        "[stack]\norder = [\"took\", \"another\", \"timing\"]\n\n[middleware.took]\nkind = \"process_time\"\nheader = \"x-took\"\n\n[middleware.another]\nsome_option = \"redis://app:hunter2@cache:6379/0\"\n",
    );
    let out = callnext(&["--config", &file, "--check-config"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("configuration ok ({file}): 3 middlewares\n")
    );

    let out = callnext(&["--config", &file, "--print-stack"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["0", "took", "process_time", "hook", "header=\"x-took\""]
    );
    assert_eq!(
        lines[1],
        [
            "1",
            "another",
            "another",
            "struct",
            "some_option=\"redis://app:***@cache:6379/0\""
        ]
    );
    assert_eq!(
        lines[2],
        ["2", "timing", "timing", "function", "(defaults)"]
    );
    assert_eq!(lines[3], ["-", "app", "seed", "endpoint"]);
    assert!(!text.contains("hunter2"));
}

#[test]
fn the_example_file_runs_the_server() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../callnext.example.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_callnext"))
        .args(["--config", example, "--port", "0", "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut addr = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        if let Some(rest) = json["message"]
            .as_str()
            .and_then(|m| m.strip_prefix("listening on http://"))
        {
            addr = Some(rest.split(' ').next().unwrap().to_owned());
            break;
        }
    }
    let addr = addr.expect("the server says where it listens");
    let response = {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream
            .write_all(b"GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        out
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(r#"{"status":"ok"}"#), "{response}");
    assert!(response.contains("x-another-middleware: Processed by class-based middleware"));
}

#[test]
fn print_stack_shows_the_order_linters_warnings() {
    let dir = Dir::new("lint");
    let file = dir.file(
        "c.toml",
        "[stack]\norder = [\"another\", \"request_id\", \"timing\"]\n\n[middleware.request_id]\n",
    );
    let out = callnext(&["--config", &file, "--print-stack"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.lines().any(|l| l
            == "warning: `request_id` runs after `another`: put the request id first, so every entry, log line and response carries it [request-id-first]"),
        "{text}"
    );
    let strict = dir.file(
        "s.toml",
        "[stack]\norder = [\"another\", \"request_id\", \"timing\"]\nstrict_order = true\n\n[middleware.request_id]\n",
    );
    let out = callnext(&["--config", &strict, "--check-config"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with(&format!(
        "error: {strict}:2: `stack.order`: `request_id` runs after `another`"
    )));
}
