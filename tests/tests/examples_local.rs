//! Each example's README, run as written: the commands of its "Run it locally" section
//! (`scripts/local`, `cargo lambda watch`, `cargo lambda invoke`), taken from the README itself so
//! that the two can never drift apart, and its "Build for Lambda (arm64)" section.
//!
//! A README's blocks are bash blocks whose first line is a comment naming the terminal; a block
//! marked `(keeps running)` is started in the background and stopped at the end, the others run
//! to completion. Each block starts at the repository root, as the READMEs say, in an
//! environment without the test services' variables (`AWS_*`, `OTEL_*`, `POWERTOOLS_*`): what the
//! function gets comes from the README's commands alone.

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const EXAMPLES: [&str; 4] = ["orders-api", "payment", "bake-queue", "http-axum"];

/// Where `cargo lambda watch` listens when given no port, as the READMEs run it.
const EMULATOR_PORT: u16 = 9000;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the repository root")
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|value| !value.is_empty())
}

/// Says why the test can't run here; fails instead in CI, where it must.
fn skip(why: &str) {
    assert!(!in_ci(), "{why}");
    eprintln!("skipping: {why}");
}

/// The text of the section under `## {heading}`, up to the next `## `.
fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let title = format!("\n## {heading}\n");
    let Some(start) = readme.find(&title) else {
        panic!("no \"## {heading}\" section");
    };
    let rest = &readme[start + title.len()..];
    rest.find("\n## ").map_or(rest, |end| &rest[..end])
}

/// One ```bash block of a README.
#[derive(Debug)]
struct Block {
    /// Its first line, the comment that says what it is.
    title: String,
    /// The whole block, comments included, as bash runs it.
    script: String,
}

impl Block {
    fn keeps_running(&self) -> bool {
        self.title.contains("(keeps running)")
    }

    /// The commands, without comments and blank lines.
    fn commands(&self) -> Vec<&str> {
        self.script
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .collect()
    }
}

fn bash_blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```bash" {
            continue;
        }
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|line| line.trim() != "```")
            .collect();
        let title = body.first().copied().unwrap_or_default().to_owned();
        blocks.push(Block {
            title,
            script: body.join("\n"),
        });
    }
    blocks
}

fn readme(example: &str) -> String {
    let path = repo_root().join("examples").join(example).join("README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// `bash` running `script` at the repository root, without the test services' variables.
fn bash(script: &str) -> Command {
    let mut command = Command::new("bash");
    command
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(repo_root())
        .stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if ["AWS_", "OTEL_", "POWERTOOLS_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            command.env_remove(&*name);
        }
    }
    command
}

/// A block that keeps running, in a process group of its own, stopped (group and all) when
/// dropped.
struct Background {
    child: Child,
    log: PathBuf,
    title: String,
}

impl Background {
    fn start(block: &Block, log_name: &str) -> Self {
        let log = std::env::temp_dir().join(format!(
            "examples-local-{}-{log_name}.log",
            std::process::id()
        ));
        let file = std::fs::File::create(&log).expect("a log file");
        let child = bash(&block.script)
            .stdout(file.try_clone().expect("a log file"))
            .stderr(file)
            .process_group(0)
            .spawn()
            .expect("bash starts");
        Background {
            child,
            log,
            title: block.title.clone(),
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `ready` says so, failing if the block stops first or takes longer than `limit`.
    fn wait_until(&mut self, limit: Duration, what: &str, ready: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + limit;
        while !ready(self) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "`{}` stopped ({status}) before {what}; its output:\n{}",
                    self.title,
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "`{}`: no {what} within {limit:?}; its output:\n{}",
                self.title,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // As Ctrl-C in a terminal would: the whole group (cargo lambda and the function it
        // started, scripts/local and its servers).
        let group = format!("-{}", self.child.id());
        let kill = |signal: &str| {
            let _ = Command::new("kill")
                .args([signal, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        kill("-TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever of the group is left (the leader may have gone before its children).
        kill("-KILL");
        let _ = self.child.wait();
        let output = self.output();
        let _ = std::fs::remove_file(&self.log);
        // Every EMF document the function wrote under watch is checked against the specification.
        if !std::thread::panicking() {
            powertools_tests::emf::valid_documents(output.lines());
        }
    }
}

fn port_open(port: u16) -> bool {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
}

/// The JSON values `cargo lambda invoke` printed, one per invocation.
fn json_values(stdout: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|error| {
            panic!("invoke printed something that is not JSON ({error}): {stdout}")
        })
}

/// An API Gateway response's status and JSON body.
fn http(response: &Value) -> (i64, Value) {
    let body = response["body"].as_str().unwrap_or("null");
    (
        response["statusCode"].as_i64().unwrap_or_default(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// What each example's README says its invocations answer.
fn check_answers(example: &str, answers: &[Value]) {
    match example {
        "orders-api" => {
            let [first, again, refused, corrected] = answers else {
                panic!("four invocations: {answers:?}");
            };
            assert_eq!(http(first).0, 201, "{first}");
            assert_eq!(again, first, "replayed");
            let (status, body) = http(refused);
            assert_eq!(
                (status, body["error"].as_str()),
                (400, Some("InvalidOrder"))
            );
            assert_eq!(
                http(corrected).0,
                201,
                "the same key, corrected: {corrected}"
            );
        }
        "payment" => {
            let [first, again] = answers else {
                panic!("two invocations: {answers:?}");
            };
            assert_eq!(first["payment_id"], "pay-5001", "{first}");
            assert_eq!(again, first, "replayed, not charged again");
        }
        "bake-queue" => {
            let [first, again] = answers else {
                panic!("two deliveries: {answers:?}");
            };
            assert_eq!(
                first["batchItemFailures"].as_array().map(Vec::len),
                Some(2),
                "{first}"
            );
            assert_eq!(again, first);
        }
        "http-axum" => {
            let [first, again, other, health] = answers else {
                panic!("four invocations: {answers:?}");
            };
            assert_eq!(http(first).0, 201, "{first}");
            assert_eq!(again, first, "replayed, not placed again");
            let (status, body) = http(other);
            assert_eq!(
                (status, body["error"].as_str()),
                (422, Some("IdempotencyKeyReused"))
            );
            assert_eq!(http(health), (200, serde_json::json!({"status": "ok"})));
        }
        other => panic!("no expectations for {other}"),
    }
}

fn run_to_completion(block: &Block) -> Output {
    let output = bash(&block.script).output().expect("bash runs");
    assert!(
        output.status.success(),
        "`{}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
        block.title,
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn each_example_runs_locally_with_the_commands_of_its_readme() {
    // The same tools the emulator tests need; scripts/local installs its servers itself.
    let cargo_lambda = Command::new("cargo")
        .args(["lambda", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !cargo_lambda {
        skip("cargo lambda is not installed: run through scripts/with-test-services");
        return;
    }
    let port_free =
        TcpListener::bind(("127.0.0.1", EMULATOR_PORT)).is_ok() && !port_open(EMULATOR_PORT);
    if !port_free {
        skip(&format!(
            "port {EMULATOR_PORT}, where the READMEs run the emulator, is taken"
        ));
        return;
    }

    for example in EXAMPLES {
        let readme = readme(example);
        let blocks = bash_blocks(section(&readme, "Run it locally"));
        let [services, function, invocations @ ..] = blocks.as_slice() else {
            panic!("{example}: the services, the function, then invocations: {blocks:?}");
        };
        assert!(
            services.keeps_running() && services.commands() == ["scripts/local"],
            "{services:?}"
        );
        assert!(
            function.keeps_running()
                && function
                    .commands()
                    .iter()
                    .any(|line| line.starts_with("cargo lambda watch")),
            "{function:?}"
        );
        assert!(!invocations.is_empty(), "{example}: invocations");

        let mut services = Background::start(services, &format!("{example}-services"));
        services.wait_until(Duration::from_secs(300), "ready line", |services| {
            services.output().contains("[local] ready")
        });
        let mut function = Background::start(function, &format!("{example}-watch"));
        function.wait_until(Duration::from_secs(120), "emulator", |_| {
            port_open(EMULATOR_PORT)
        });

        let mut answers = Vec::new();
        for block in invocations {
            assert!(!block.keeps_running(), "{block:?}");
            let invokes = block
                .commands()
                .iter()
                .filter(|line| line.starts_with("cargo lambda invoke"))
                .count();
            let output = run_to_completion(block);
            let values = json_values(&String::from_utf8_lossy(&output.stdout));
            assert_eq!(
                values.len(),
                invokes,
                "one answer per invocation: {values:?}"
            );
            answers.extend(values);
        }
        check_answers(example, &answers);
        let logged = function.output();
        assert!(
            logged.contains("\"function_request_id\""),
            "{example}: the function's log lines appear under watch:\n{logged}"
        );
        drop(function);
        drop(services);
        // Stopped: the emulator's port is free for the next example.
        let deadline = Instant::now() + Duration::from_secs(15);
        while port_open(EMULATOR_PORT) {
            assert!(Instant::now() < deadline, "the emulator did not stop");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The "Build for Lambda (arm64)" block of a README.
fn build_block(readme: &str) -> Block {
    let mut blocks = bash_blocks(section(readme, "Build for Lambda (arm64)"));
    assert_eq!(blocks.len(), 1, "one block of build commands");
    blocks.remove(0)
}

#[test]
fn each_readme_builds_for_arm64_with_the_zig_that_pip_brings() {
    for example in EXAMPLES {
        let block = build_block(&readme(example));
        let commands = block.commands();
        let pip = commands
            .iter()
            .find(|line| line.contains("pip install") && line.contains("cargo-lambda"))
            .unwrap_or_else(|| panic!("{example}: cargo-lambda from PyPI: {commands:?}"));
        assert!(
            !pip.contains("--no-deps"),
            "{example}: the dependencies bring Zig: {pip}"
        );
        assert!(
            commands.contains(&"rustup target add aarch64-unknown-linux-gnu"),
            "{example}: {commands:?}"
        );
        // The workspace's deployment profile, whose panics unwind: `--release` would get
        // cargo-lambda's `panic = "abort"`.
        assert_eq!(
            commands.last().copied(),
            Some(format!("cargo lambda build --profile lambda --arm64 -p {example}").as_str()),
            "{example}"
        );
    }
}

/// Whether `path` is an ELF executable for AArch64 (`e_machine` 183).
fn is_aarch64_elf(path: &Path) -> bool {
    let mut header = [0u8; 20];
    std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut header))
        .is_ok_and(|()| {
            header[..4] == *b"\x7fELF" && u16::from_le_bytes([header[18], header[19]]) == 183
        })
}

/// The README's build commands, as written, in a fresh home directory (so the virtualenv is new):
/// optimized builds of tens of minutes, hence ignored; run it with
/// `cargo test -p powertools-tests --test examples_local -- --ignored`.
#[test]
#[ignore = "cross-compiles three functions with fat LTO: tens of minutes on 2 cores"]
fn cross_compiles_with_the_readme_commands() {
    let home = std::env::temp_dir().join(format!("examples-local-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).expect("a home directory");
    let real_home = std::env::var("HOME").expect("HOME");
    for example in EXAMPLES {
        let block = build_block(&readme(example));
        let mut command = bash(&block.script);
        // rustup and cargo keep their own homes.
        command
            .env("HOME", &home)
            .env(
                "RUSTUP_HOME",
                std::env::var("RUSTUP_HOME").unwrap_or(format!("{real_home}/.rustup")),
            )
            .env(
                "CARGO_HOME",
                std::env::var("CARGO_HOME").unwrap_or(format!("{real_home}/.cargo")),
            );
        let output = command.output().expect("bash runs");
        assert!(
            output.status.success(),
            "{example}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let bootstrap = repo_root()
            .join("target/lambda")
            .join(example)
            .join("bootstrap");
        assert!(is_aarch64_elf(&bootstrap), "{}", bootstrap.display());
    }
    let _ = std::fs::remove_dir_all(&home);
}
