//! Pure helpers for the UI: sizes, times, "does it fit", custom entries. No web calls, so
//! they are tested natively.

use sha2::Digest;

use crate::protocol::{AdapterSummary, CatalogEntry, Origin, StoredModel, MAX_ID};

/// Decimal units, as download sizes are usually quoted: "98 MB", "1.06 GB".
pub fn bytes(n: u64) -> String {
    const KB: f64 = 1e3;
    const MB: f64 = 1e6;
    const GB: f64 = 1e9;
    let f = n as f64;
    if f >= GB {
        format!("{:.2} GB", f / GB)
    } else if f >= 100.0 * MB {
        format!("{:.0} MB", f / MB)
    } else if f >= MB {
        format!("{:.1} MB", f / MB)
    } else if f >= KB {
        format!("{:.0} kB", f / KB)
    } else {
        format!("{n} B")
    }
}

/// "1 min 05 s", "42 s", "1 h 03 min".
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "—".into();
    }
    let s = secs.round() as u64;
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FitLevel {
    Fits,
    MayNotFit,
    TooLarge,
    Unknown,
}

impl FitLevel {
    pub fn class(self) -> &'static str {
        match self {
            FitLevel::Fits => "fit-ok",
            FitLevel::MayNotFit => "fit-maybe",
            FitLevel::TooLarge => "fit-no",
            FitLevel::Unknown => "fit-unknown",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            FitLevel::Fits => "fits",
            FitLevel::MayNotFit => "may not fit",
            FitLevel::TooLarge => "too large for this GPU",
            FitLevel::Unknown => "fit unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    pub level: FitLevel,
    pub reason: String,
}

/// A verdict: WebGPU does not report device memory, so the budget is a heuristic.
///
/// - A stored model has the engine's own memory plan for this adapter (`stored.plan`): every
///   buffer a load makes, exactly, and whether one passes the adapter's limits (then it is
///   too large, for the reason the engine would give).
/// - Otherwise the catalog's estimate (`gpu_memory`), and its largest tensor (usually the
///   token embedding or the output matrix), which must fit one storage binding: the catalog
///   does not list tensor sizes, so about 30% of the weight bytes stands in (SmolLM2-135M: 30
///   MB of 98 MB).
/// - The whole model against a device budget of four times the largest buffer the adapter
///   allows: adapters that allow 1–4 GiB buffers tend to have 4–16 GiB behind them.
pub fn fit(entry: &CatalogEntry, adapter: Option<&AdapterSummary>, stored: Option<&StoredModel>) -> Fit {
    let Some(a) = adapter else {
        return Fit { level: FitLevel::Unknown, reason: "the GPU is not open yet".into() };
    };
    let plan = stored.and_then(|s| s.plan.as_ref());
    if let Some(problem) = plan.and_then(|p| p.problem.as_ref()) {
        return Fit { level: FitLevel::TooLarge, reason: problem.clone() };
    }
    let (needed, how) = match plan {
        Some(p) => (p.total, format!("needs {} of GPU memory at context {}", bytes(p.total), p.context)),
        None => {
            (entry.gpu_memory, format!("needs about {} of GPU memory at its default context", bytes(entry.gpu_memory)))
        }
    };
    if needed == 0 {
        return Fit { level: FitLevel::Unknown, reason: "the model's memory needs are unknown".into() };
    }
    let binding = a.max_storage_binding.min(a.max_buffer_size).max(1);
    let budget = a.max_buffer_size.max(a.max_storage_binding).saturating_mul(4);
    if needed > budget {
        return Fit {
            level: FitLevel::TooLarge,
            reason: format!(
                "{how}; this adapter's buffers (up to {}) suggest roughly {} in all",
                bytes(a.max_buffer_size),
                bytes(budget)
            ),
        };
    }
    // The plan has checked every buffer against the limits already.
    let largest = entry.size.unwrap_or(entry.gpu_memory) * 3 / 10;
    if plan.is_none() && largest > binding {
        return Fit {
            level: FitLevel::MayNotFit,
            reason: format!(
                "its largest tensor (about {}) may exceed this GPU's {} storage-binding limit",
                bytes(largest),
                bytes(binding)
            ),
        };
    }
    if needed > budget / 2 {
        return Fit {
            level: FitLevel::MayNotFit,
            reason: format!("{how}, close to this GPU's estimated {} budget", bytes(budget)),
        };
    }
    Fit { level: FitLevel::Fits, reason: how }
}

/// The file name of a URL's path, without query or fragment.
pub fn url_file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or("");
    path.trim_end_matches('/').rsplit('/').next().unwrap_or("").to_string()
}

/// A stable id from a file name: lowercase, `.gguf` dropped, other characters → '-'.
pub fn id_from_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let stem = lower.strip_suffix(".gguf").unwrap_or(&lower);
    let mut id = String::with_capacity(stem.len());
    for c in stem.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            id.push(c);
        } else if !id.ends_with('-') {
            id.push('-');
        }
    }
    let id = id.trim_matches('-').to_string();
    if id.is_empty() {
        "custom-model".into()
    } else {
        id
    }
}

/// A quantization name found in a file name ("Q4_K_M", "Q8_0", "F16"), if any.
fn quant_in(name: &str) -> Option<String> {
    let upper = name.to_ascii_uppercase();
    for part in upper.split(['.', '-']) {
        let p = part.trim_end_matches(".GGUF");
        if (p.starts_with('Q') || p.starts_with("IQ")) && p.chars().any(|c| c.is_ascii_digit()) && p.len() <= 8 {
            return Some(p.to_string());
        }
        if p == "F16" || p == "F32" || p == "BF16" {
            return Some(p.to_string());
        }
    }
    None
}

/// An entry for a model the catalog does not list (a URL, or a local file when `url` is
/// empty): nothing verified. Its id is in the URL or file namespace ([`Origin`]); a URL's id
/// also carries a hash of the whole URL, so two files of one name at two addresses stay apart.
pub fn custom_entry(url: &str, file_name: &str, notes: &str) -> CatalogEntry {
    let name = file_name.strip_suffix(".gguf").unwrap_or(file_name).to_string();
    let mut slug = id_from_name(file_name);
    slug.truncate(MAX_ID - 20); // ASCII; room for the prefix and the hash
    let id = if url.is_empty() {
        format!("{}{slug}", Origin::File.prefix())
    } else {
        let hash = sha2::Sha256::digest(url.as_bytes());
        let tag: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}{slug}-{tag}", Origin::Url.prefix())
    };
    CatalogEntry {
        id,
        name: if name.is_empty() { "Custom model".into() } else { name },
        url: url.to_string(),
        size: None,
        sha256: None,
        quant: quant_in(file_name).unwrap_or_else(|| "?".into()),
        params: String::new(),
        context_length: 4096,
        license: "unknown".into(),
        license_url: String::new(),
        source: String::new(),
        gpu_memory: 0,
        default_context: 2048,
        verified: false,
        notes: notes.to_string(),
        summary: String::new(),
        languages: String::new(),
        license_notice: String::new(),
    }
}

/// Whether a card or a storage row may say "verified". Once stored, only when the stored
/// bytes' sha256 is exactly the one the catalog publishes now (a catalog that changed its
/// file, or a custom model, is not); before, the catalog's word on its published file.
pub fn verified(entry: &CatalogEntry, stored: Option<&StoredModel>) -> bool {
    match stored {
        Some(s) if s.complete => {
            s.sha256.is_some()
                && s.sha256.as_deref().map(str::to_lowercase) == entry.sha256.as_deref().map(str::to_lowercase)
        }
        _ => entry.verified && entry.sha256.is_some(),
    }
}

/// The context to load with: the choice, capped by the model; else the model's default.
pub fn context_for(entry: &CatalogEntry, choice: Option<u32>) -> u32 {
    match choice {
        Some(c) => c.min(entry.context_length.max(512)),
        None => entry.default_context.min(entry.context_length.max(512)),
    }
}

/// A conversation's title: the first user message, trimmed to one short line.
pub fn title_from(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = line.chars().take(60).collect();
    if line.chars().count() > 60 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::PlanSummary;

    fn adapter(binding: u64) -> AdapterSummary {
        AdapterSummary {
            name: "google swiftshader".into(),
            max_buffer_size: binding,
            max_storage_binding: binding,
            shader_f16: false,
            strategy: "reduce".into(),
            software: true,
            native: false,
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes(98_362_432), "98.4 MB");
        assert_eq!(bytes(386_405_280), "386 MB");
        assert_eq!(bytes(1_055_609_824), "1.06 GB");
        assert_eq!(bytes(5_300_000), "5.3 MB");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(duration(65.0), "1 min 05 s");
        assert_eq!(duration(f64::INFINITY), "—");
    }

    #[test]
    fn ids_from_urls() {
        let url = "https://huggingface.co/x/y/resolve/main/SmolLM2-360M-Instruct.Q8_0.gguf?download=true";
        assert_eq!(url_file_name(url), "SmolLM2-360M-Instruct.Q8_0.gguf");
        assert_eq!(id_from_name("SmolLM2-360M-Instruct.Q8_0.gguf"), "smollm2-360m-instruct.q8_0");
        assert_eq!(id_from_name("my model (1).gguf"), "my-model-1");
        assert_eq!(id_from_name(""), "custom-model");
        let e = custom_entry(url, "SmolLM2-360M-Instruct.Q8_0.gguf", "");
        assert!(e.id.starts_with("url-smollm2-360m-instruct.q8_0-"), "{}", e.id);
        assert_eq!(e.quant, "Q8_0");
        assert_eq!(e.gpu_memory, 0);
        assert!(!e.verified && e.sha256.is_none() && e.size.is_none());
        assert_eq!(e.default_context, 2048);
    }

    #[test]
    fn custom_ids_never_meet_catalog_ids() {
        // A URL or a file named exactly like a catalog model gets an id of its own namespace.
        let catalog = "smollm2-135m-instruct-q4_1";
        let url =
            custom_entry("https://example.com/smollm2-135m-instruct-q4_1.gguf", "smollm2-135m-instruct-q4_1.gguf", "");
        let file = custom_entry("", "smollm2-135m-instruct-q4_1.gguf", "");
        assert_eq!(file.id, format!("file-{catalog}"));
        crate::protocol::check_id(&url.id, Origin::Url).unwrap();
        crate::protocol::check_id(&file.id, Origin::File).unwrap();
        // One file name at two addresses: two models.
        let other = custom_entry(
            "https://mirror.example/smollm2-135m-instruct-q4_1.gguf",
            "smollm2-135m-instruct-q4_1.gguf",
            "",
        );
        assert_ne!(url.id, other.id);
        // Long names still make valid ids.
        let long = custom_entry("https://x/y", &format!("{}.gguf", "a".repeat(300)), "");
        crate::protocol::check_id(&long.id, Origin::Url).unwrap();
    }

    #[test]
    fn verified_means_the_stored_bytes_are_the_catalogs() {
        let mut e = custom_entry("u", "m.gguf", "");
        e.sha256 = Some("ab".repeat(32));
        e.verified = true;
        let stored = |sha: Option<String>, complete| StoredModel {
            id: e.id.clone(),
            name: "m".into(),
            url: "u".into(),
            size: 1,
            stored: 1,
            complete,
            sha256: sha,
            verified: true,
            plan: None,
            shared: false,
        };
        assert!(verified(&e, None));
        assert!(verified(&e, Some(&stored(Some("AB".repeat(32)), true))));
        assert!(!verified(&e, Some(&stored(Some("cd".repeat(32)), true))), "the catalog's file changed");
        assert!(!verified(&e, Some(&stored(None, true))));
        e.sha256 = None;
        assert!(!verified(&e, Some(&stored(Some("ab".repeat(32)), true))), "nothing published to match");
        assert!(!verified(&e, None));
    }

    #[test]
    fn fit_verdicts() {
        let gib = 1u64 << 30;
        let mut e = custom_entry("u", "m.gguf", "");
        assert_eq!(fit(&e, Some(&adapter(gib)), None).level, FitLevel::Unknown);
        e.gpu_memory = 166_519_872;
        e.size = Some(98_362_432);
        assert_eq!(fit(&e, Some(&adapter(gib)), None).level, FitLevel::Fits);
        e.gpu_memory = 4_634_455_744;
        e.size = Some(4_081_004_224);
        assert_eq!(fit(&e, Some(&adapter(gib)), None).level, FitLevel::TooLarge);
        assert_eq!(fit(&e, Some(&adapter(2 * gib)), None).level, FitLevel::MayNotFit);
        assert_eq!(fit(&e, Some(&adapter(8 * gib)), None).level, FitLevel::Fits);
        assert_eq!(fit(&e, None, None).level, FitLevel::Unknown);
        // A stored model: the engine's plan decides, exactly.
        let mut stored = StoredModel {
            id: e.id.clone(),
            name: "m".into(),
            url: "u".into(),
            size: 1,
            stored: 1,
            complete: true,
            sha256: None,
            verified: false,
            plan: Some(PlanSummary { context: 2048, total: 3 * gib, problem: None }),
            shared: false,
        };
        let verdict = fit(&e, Some(&adapter(2 * gib)), Some(&stored));
        assert_eq!(verdict.level, FitLevel::Fits, "{verdict:?}");
        assert!(verdict.reason.contains("3.22 GB") && verdict.reason.contains("2048"), "{verdict:?}");
        let problem = "the KV cache for a context of 2048 tokens (per layer) needs 9 bytes".to_string();
        stored.plan = Some(PlanSummary { context: 2048, total: gib, problem: Some(problem.clone()) });
        assert_eq!(fit(&e, Some(&adapter(8 * gib)), Some(&stored)), Fit { level: FitLevel::TooLarge, reason: problem });
    }

    #[test]
    fn contexts() {
        let mut e = custom_entry("u", "m.gguf", "");
        e.context_length = 2048;
        assert_eq!(context_for(&e, Some(4096)), 2048);
        assert_eq!(context_for(&e, None), 2048);
        e.default_context = 1024;
        assert_eq!(context_for(&e, None), 1024);
    }

    #[test]
    fn titles() {
        assert_eq!(title_from("  hello\n  world "), "hello world");
        assert_eq!(title_from(&"x".repeat(70)).chars().count(), 61);
    }
}
