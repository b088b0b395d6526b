//! The typed messages between the UI thread and the engine's Web Worker. Both sides are this
//! crate, so the types are shared; on the wire they are plain JS objects
//! (`serde-wasm-bindgen`), plus a transferred `File` for a local import.

use serde::{Deserialize, Serialize};

/// One model of `web/catalog.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub id: String,
    pub name: String,
    /// Absolute, or relative to the app.
    pub url: String,
    /// Published size in bytes; `None` when it could not be verified.
    pub size: Option<u64>,
    /// Published sha256 (lowercase hex); `None` when it could not be verified.
    pub sha256: Option<String>,
    pub quant: String,
    #[serde(default)]
    pub params: String,
    pub context_length: u32,
    pub license: String,
    #[serde(default)]
    pub license_url: String,
    #[serde(default)]
    pub source: String,
    /// Estimated GPU bytes at `default_context`.
    pub gpu_memory: u64,
    pub default_context: u32,
    /// Size and sha256 were checked against a published source.
    pub verified: bool,
    #[serde(default)]
    pub notes: String,
    /// What the model is good for, in one line (the picker shows it).
    #[serde(default)]
    pub summary: String,
    /// The languages it covers, in one line.
    #[serde(default)]
    pub languages: String,
    /// Text its license requires shown with it ("Built with Llama", Gemma's terms notice).
    #[serde(default)]
    pub license_notice: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub version: u32,
    pub models: Vec<CatalogEntry>,
}

/// Where a model comes from, as its id says. Models the catalog does not list have ids with
/// a prefix no catalog id has ([`check_id`]), so a custom URL or a local file can never
/// overwrite or shadow a catalog model in storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Catalog,
    Url,
    File,
}

impl Origin {
    pub const fn prefix(self) -> &'static str {
        match self {
            Origin::Catalog => "",
            Origin::Url => "url-",
            Origin::File => "file-",
        }
    }

    pub fn of(id: &str) -> Origin {
        [Origin::Url, Origin::File].into_iter().find(|o| id.starts_with(o.prefix())).unwrap_or(Origin::Catalog)
    }
}

/// Most stop strings one request may give (OpenAI's limit), and the longest one.
pub const MAX_STOP: usize = hearth_model::openai::MAX_STOP;
pub const MAX_STOP_LEN: usize = hearth_model::openai::MAX_STOP_LEN;

/// Checks the stop strings of a request (the worker does; the page's checks can be skipped).
pub fn check_stop(stop: &[String]) -> Result<(), String> {
    if stop.len() > MAX_STOP {
        return Err(format!("at most {MAX_STOP} stop strings"));
    }
    match stop.iter().find(|s| s.is_empty() || s.len() > MAX_STOP_LEN) {
        Some(s) => Err(format!("a stop string must be 1 to {MAX_STOP_LEN} bytes (got {})", s.len())),
        None => Ok(()),
    }
}

/// Longest model id accepted.
pub const MAX_ID: usize = 128;

/// Checks a model id a request names: 1 to [`MAX_ID`] characters of `a-z 0-9 . _ -` (no `/`:
/// chunk keys are `"<id>/<index>"`, and one id must not be a key prefix of another's chunks),
/// in `origin`'s namespace.
pub fn check_id(id: &str, origin: Origin) -> Result<(), String> {
    let well_formed = !id.is_empty()
        && id.len() <= MAX_ID
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    if !well_formed {
        return Err(format!("{id:?} is not a model id (1 to {MAX_ID} of a-z, 0-9, '.', '_', '-')"));
    }
    if Origin::of(id) != origin {
        return Err(format!("{id:?} is not in the {origin:?} models' namespace (ids starting {:?})", origin.prefix()));
    }
    Ok(())
}

/// What the adapter can do, for "does this model fit".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterSummary {
    /// e.g. "google swiftshader" or "nvidia ampere".
    pub name: String,
    pub max_buffer_size: u64,
    pub max_storage_binding: u64,
    pub shader_f16: bool,
    /// The kernel strategy chosen for it ("reduce" or "tile").
    pub strategy: String,
    /// A software adapter (SwiftShader, WARP, llvmpipe): it works, slowly.
    pub software: bool,
    /// Not a GPU in this browser: `hearth serve`'s native engine (`crate::native`).
    #[serde(default)]
    pub native: bool,
}

/// A model in IndexedDB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredModel {
    pub id: String,
    pub name: String,
    pub url: String,
    /// Total bytes (known from the server or the file).
    pub size: u64,
    /// Bytes stored so far.
    pub stored: u64,
    /// Downloaded completely and the sha256 checked.
    pub complete: bool,
    /// The sha256 of the bytes stored, once complete.
    pub sha256: Option<String>,
    /// The sha256 matched a published one (catalog); false for custom URLs and files.
    pub verified: bool,
    /// The engine's memory plan for this model on this adapter, once it is stored.
    #[serde(default)]
    pub plan: Option<PlanSummary>,
    /// Served from a checked file of the browser's shared storage, not from this store.
    #[serde(default)]
    pub shared: bool,
}

/// `hearth_gpu::MemoryPlan` for a stored model at its default context, on the open adapter:
/// exactly the GPU buffers a load makes there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSummary {
    pub context: u32,
    pub total: u64,
    /// Why a load would be refused on this adapter (a buffer past its limits), if it would.
    pub problem: Option<String>,
}

/// Sampling settings the UI offers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// 0 = greedy.
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub max_tokens: u32,
    pub seed: Option<u64>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.7,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            max_tokens: 512,
            seed: None,
        }
    }
}

impl Sampling {
    /// The engine's parameters, or why these settings are refused. The worker checks them
    /// itself: the page's form checks can be skipped (stored settings, other pages).
    pub fn params(&self, seed: u64) -> Result<hearth_model::SamplingParams, String> {
        if self.max_tokens == 0 {
            return Err("max tokens must be at least 1".into());
        }
        let params = hearth_model::SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k as usize,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            seed,
            ..hearth_model::SamplingParams::default()
        };
        params.validate()?;
        Ok(params)
    }
}

/// A message's role: the API's own type (`system`, `user`, `assistant` on the wire).
pub use hearth_model::openai::Role;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

/// UI → worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ToWorker {
    /// Open the GPU and the database; answered by `Ready` then `Stored`.
    Init,
    /// Download (or resume) a model into IndexedDB. A custom URL is an entry with no sha256.
    Download {
        entry: Box<CatalogEntry>,
    },
    /// Import the `File` sent beside this message (a local .gguf).
    ImportFile {
        id: String,
        name: String,
    },
    /// Stop a download; what is stored stays, to resume later.
    Cancel {
        id: String,
    },
    Delete {
        id: String,
    },
    ListStored,
    /// Load a stored model onto the GPU with a KV cache of `context` positions.
    Load {
        id: String,
        context: u32,
    },
    /// Reply to the conversation. The worker keeps the KV cache of what it already saw and
    /// prefills only what is new.
    Generate {
        messages: Vec<ChatMessage>,
        sampling: Sampling,
        /// Strings that end the reply (not included in it), at most [`MAX_STOP`].
        #[serde(default)]
        stop: Vec<String>,
        /// The template's thinking switch (`enable_thinking`), for models that have one;
        /// `None`: the template's default.
        #[serde(default)]
        think: Option<bool>,
    },
    /// Stop generating; the reply so far stands.
    Stop,
    /// An OpenAI chat-completions request from the JS API (`sdk/hearth.js`), as its JSON
    /// text: read by `hearth_model::openai::parse_request`, queued first in first out, and
    /// answered with `Chat*` events carrying the same `request_id`.
    Chat {
        request_id: u32,
        body: String,
    },
    /// Drop a queued request, or stop a running one after the token in flight.
    Abort {
        request_id: u32,
    },
    /// Are you alive? Answered with `Pong` straight from the message handler, busy or not.
    Ping {
        seq: u32,
    },
    /// The API key for `hearth serve` (the UI on the native engine; the worker refuses it).
    ApiKey {
        key: String,
    },
    /// Destroys the GPU device, as a driver reset would: the end-to-end tests use it to
    /// check that a lost device is reported and the worker re-initializes. Test builds only.
    #[cfg(feature = "test-hooks")]
    SimulateDeviceLoss,
    /// Panics in the worker, for the tests of the page's recovery. Test builds only.
    #[cfg(feature = "test-hooks")]
    Panic,
    /// From now on keep models in the store the page holds (the widget's page, once the
    /// visitor granted it Hearth's first-party storage): every store call goes to the page
    /// as `StoreCall`.
    UseWindowStore,
    /// The model file sent beside this message (from the browser's Cross-Origin Storage) is
    /// this catalog model: check it against the entry's size and sha256, then serve its loads
    /// from it, with no copy in storage. Answered by `Stored` (listing it) or an error.
    UseFile {
        entry: Box<CatalogEntry>,
    },
    /// The page's answer to `StoreCall` number `seq`.
    StoreReply {
        seq: u32,
        reply: crate::store::StoreReply,
    },
}

/// Bytes as a `Uint8Array` across `postMessage` (serde's default would be an array of
/// numbers, four million of them per chunk). `#[serde(with = "bytes")]`.
pub mod bytes {
    use serde::{de, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub struct Visitor;

    impl<'de> de::Visitor<'de> for Visitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(Visitor)
    }
}

/// [`bytes`] for an `Option<Vec<u8>>`.
pub mod opt_bytes {
    use serde::{de, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&Bytes(b)),
            None => s.serialize_none(),
        }
    }

    struct Bytes<'a>(&'a [u8]);

    impl serde::Serialize for Bytes<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    struct Visitor;

    impl<'de> de::Visitor<'de> for Visitor {
        type Value = Option<Vec<u8>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes or nothing")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_byte_buf(super::bytes::Visitor).map(Some)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        d.deserialize_option(Visitor)
    }
}

/// What the worker is doing, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Downloading,
    Verifying,
    Loading,
}

/// Errors by what a person can do about them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No WebGPU: use another browser or the native `hearth` CLI.
    NoWebGpu,
    /// The GPU device was lost; the worker re-initializes.
    DeviceLost,
    /// Out of GPU memory: a smaller model or context.
    OutOfMemory,
    /// Browser storage is full.
    Quota,
    /// This page may not use browser storage at all (a cross-site frame whose browser blocks
    /// third-party storage, a private window that refuses it): models cannot be kept.
    NoStorage,
    /// The network failed; the download can resume.
    Network,
    /// Stored bytes did not match their hash.
    Corrupt,
    /// The model file is not one Hearth can run.
    BadModel,
    /// The conversation does not fit the context.
    ContextFull,
    /// The engine worker died and the page started a fresh one.
    EngineRestarted,
    Other,
}

/// Numbers after a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenStats {
    pub prompt_tokens: u32,
    /// Tokens prefilled this turn (the rest came from the KV cache).
    pub prefilled: u32,
    pub new_tokens: u32,
    pub first_token_ms: f64,
    pub decode_tok_s: f64,
    pub prefill_tok_s: f64,
    pub context_used: u32,
    pub context_max: u32,
    /// `hearth_model::StopReason::as_str`: "eos", "stop_string", "max_tokens",
    /// "context_full" or "interrupted".
    pub stop_reason: String,
    /// Older messages were dropped to fit the context.
    pub truncated: bool,
    /// Token ids of the reply, for tests against the oracle.
    pub tokens: Vec<u32>,
}

/// A loaded model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadedInfo {
    pub id: String,
    pub name: String,
    pub context: u32,
    pub load_ms: f64,
    /// Bytes read from IndexedDB (each chunk checked against its sha256) ...
    pub bytes: u64,
    /// ... and the milliseconds spent on that (the rest of `load_ms` is GPU upload and
    /// pipeline compilation).
    #[serde(default)]
    pub read_ms: f64,
    /// wasm linear memory after loading: it never shrinks, so this is the peak.
    pub wasm_memory: u64,
    pub has_template: bool,
    /// Compute pipelines this load built (on SwiftShader, compiling them is most of the
    /// load).
    #[serde(default)]
    pub pipelines: u32,
    /// The chat template has a thinking switch (`enable_thinking`: Qwen3, SmolLM3).
    #[serde(default)]
    pub can_think: bool,
}

/// Worker → UI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum FromWorker {
    /// The worker's wasm is running and listening.
    Booted,
    /// The GPU is open (`adapter`), or not (`error`, with `kind` NoWebGpu).
    Ready {
        adapter: Option<AdapterSummary>,
        error: Option<String>,
    },
    Stored {
        models: Vec<StoredModel>,
        quota: Option<u64>,
        usage: Option<u64>,
        persisted: bool,
    },
    Progress {
        id: String,
        phase: Phase,
        done: u64,
        total: u64,
        bytes_per_sec: f64,
    },
    /// A download finished and its sha256 was checked.
    Downloaded {
        id: String,
    },
    /// A download stopped before the end (cancel, network); it can resume.
    Paused {
        id: String,
        stored: u64,
        total: u64,
    },
    Loaded {
        info: LoadedInfo,
    },
    /// Reply text, as it streams.
    Token {
        text: String,
    },
    Done {
        stats: GenStats,
    },
    /// Something to tell the person; `id` names the model it concerns, if one.
    Error {
        kind: ErrorKind,
        message: String,
        id: Option<String>,
    },
    /// Informational notes (e.g. "re-fetched chunk 3: it was corrupt").
    Notice {
        message: String,
    },
    /// A streamed request's chunk (`chat.completion.chunk` JSON).
    ChatChunk {
        request_id: u32,
        json: String,
    },
    /// A request's whole reply (`chat.completion` JSON).
    ChatCompletion {
        request_id: u32,
        json: String,
    },
    /// A request refused or failed: OpenAI's error fields (`kind` is its `type`), and the
    /// HTTP status `hearth serve` would answer with.
    ChatError {
        request_id: u32,
        status: u16,
        message: String,
        kind: String,
        code: String,
        param: Option<String>,
    },
    /// A request is over, however it ended (the last event for its id): tokens it decoded,
    /// and how many it had decoded when its abort arrived, if one did.
    ChatEnded {
        request_id: u32,
        decoded: u32,
        decoded_at_abort: Option<u32>,
    },
    /// `hearth serve` wants an API key (`--api-key`): the UI asks for it. `wrong` when one
    /// was sent and refused.
    NeedsApiKey {
        wrong: bool,
    },
    /// The answer to `Ping`.
    Pong {
        seq: u32,
    },
    /// The worker's wasm panicked (its panic hook's message): it cannot go on, and the page
    /// starts a fresh one.
    Panicked {
        message: String,
    },
    /// Run this on the store the page holds for the worker (after `UseWindowStore`), and
    /// answer with `StoreReply` and the same `seq`.
    StoreCall {
        seq: u32,
        call: crate::store::StoreCall,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every download is pinned to a commit (`/resolve/<40 hex>/`, so a file changed upstream
    /// cannot slip in under a published hash), verified entries carry size and sha256, each
    /// entry says what it is for and in which languages, and the licenses that require a
    /// notice carry it.
    #[test]
    fn catalog_urls_are_pinned_and_entries_complete() {
        let catalog: Catalog = serde_json::from_str(include_str!("../../../web/catalog.json")).unwrap();
        let mut ids = std::collections::HashSet::new();
        for m in &catalog.models {
            assert!(ids.insert(&m.id), "{}: duplicate id", m.id);
            if m.url.starts_with("https://") {
                let after =
                    m.url.split("/resolve/").nth(1).unwrap_or_else(|| panic!("{}: no /resolve/ in {}", m.id, m.url));
                let commit = after.split('/').next().unwrap();
                assert!(
                    commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                    "{}: {} is not pinned to a commit",
                    m.id,
                    m.url
                );
            } else {
                assert!(!m.url.contains("://"), "{}: {} must be https or app-relative", m.id, m.url);
            }
            if m.verified {
                let sha = m.sha256.as_deref().unwrap_or_else(|| panic!("{}: verified without sha256", m.id));
                assert!(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()), "{}: sha256 {sha}", m.id);
                assert!(m.size.is_some_and(|s| s > 0), "{}: verified without size", m.id);
            }
            assert!(!m.summary.is_empty() && !m.languages.is_empty(), "{}: summary and languages", m.id);
            if m.license.starts_with("Llama") {
                assert!(m.license_notice.contains("Meta Platforms"), "{}: Llama's notice", m.id);
            }
            if m.license.starts_with("Llama-3") {
                assert!(m.license_notice.contains("Built with Llama"), "{}: Built with Llama", m.id);
            }
            if m.license.contains("Gemma") {
                assert!(m.license_notice.contains("Gemma Terms of Use"), "{}: Gemma's notice", m.id);
            }
        }
        // What issue 13 asked for.
        for id in [
            "qwen2.5-0.5b-instruct-q4_k_m",
            "qwen2.5-1.5b-instruct-q4_k_m",
            "qwen3-0.6b-q8_0",
            "qwen3-1.7b-q8_0",
            "qwen3-4b-q4_k_m",
            "gemma-3-1b-it-q4_k_m",
            "smollm3-3b-q4_k_m",
            "mistral-7b-instruct-v0.3-q4_k_m",
        ] {
            let m = catalog.models.iter().find(|m| m.id == id).unwrap_or_else(|| panic!("{id} missing"));
            assert!(m.verified && m.notes.contains("inferred"), "{id}: published hash, tensor types noted as inferred");
        }
    }

    #[test]
    fn catalog_ids_are_outside_the_custom_namespaces() {
        let catalog: Catalog = serde_json::from_str(include_str!("../../../web/catalog.json")).unwrap();
        assert!(!catalog.models.is_empty());
        for m in &catalog.models {
            check_id(&m.id, Origin::Catalog).unwrap();
        }
    }

    #[test]
    fn the_worker_refuses_sampling_settings_with_no_meaning() {
        let ok = Sampling::default();
        assert_eq!(ok.params(7).unwrap().seed, 7);
        let bad = [
            Sampling { temperature: -0.5, ..ok },
            Sampling { temperature: f32::NAN, ..ok },
            Sampling { temperature: f32::INFINITY, ..ok },
            Sampling { top_p: 1.5, ..ok },
            Sampling { top_p: f32::NAN, ..ok },
            Sampling { min_p: -0.1, ..ok },
            Sampling { repeat_penalty: 0.0, ..ok },
            Sampling { repeat_penalty: f32::NAN, ..ok },
            Sampling { max_tokens: 0, ..ok },
        ];
        for s in bad {
            assert!(s.params(0).is_err(), "{s:?}");
        }
        assert!(Sampling { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, ..ok }.params(0).is_ok());
    }

    #[test]
    fn stop_strings_are_bounded() {
        check_stop(&[]).unwrap();
        check_stop(&["\n\n".into(), "END".into()]).unwrap();
        assert!(check_stop(&vec!["a".to_string(); MAX_STOP + 1]).is_err());
        assert!(check_stop(&["".into()]).is_err());
        assert!(check_stop(&["x".repeat(MAX_STOP_LEN + 1)]).is_err());
        // Old pages send no stop field: none.
        let old = serde_json::json!({ "type": "Generate", "messages": [], "sampling": Sampling::default() });
        assert!(
            matches!(serde_json::from_value::<ToWorker>(old).unwrap(), ToWorker::Generate { stop, .. } if stop.is_empty())
        );
    }

    /// The hooks the browser tests use are refused by the builds people get.
    #[cfg(not(feature = "test-hooks"))]
    #[test]
    fn brokered_store_calls_survive_the_message_shapes() {
        use crate::store::{StoreCall, StoreError, StoreReply};
        let bytes: Vec<u8> = (0..=255).collect();
        for reply in [
            StoreReply::Chunk(Some(bytes.clone())),
            StoreReply::Chunk(Some(Vec::new())),
            StoreReply::Chunk(None),
            StoreReply::Done,
            StoreReply::Failed(StoreError::Quota("full".into())),
        ] {
            let msg = ToWorker::StoreReply { seq: 7, reply: reply.clone() };
            let back: ToWorker = serde_json::from_str(&serde_json::to_string(&msg).unwrap()).unwrap();
            assert_eq!(back, msg);
        }
        let meta = crate::store::ModelMeta {
            id: "m".into(),
            name: "m.gguf".into(),
            url: "models/m.gguf".into(),
            size: Some(256),
            size_pinned: true,
            validator: None,
            expected_sha256: None,
            chunk_sha: vec!["ab".repeat(32)],
            complete: false,
            sha256: None,
            verified: false,
            default_context: 2048,
        };
        for call in [
            StoreCall::Chunk { id: "m".into(), index: 3 },
            StoreCall::PutChunk { meta, index: 0, bytes },
            StoreCall::Models,
        ] {
            let msg = FromWorker::StoreCall { seq: 1, call };
            let back: FromWorker = serde_json::from_str(&serde_json::to_string(&msg).unwrap()).unwrap();
            assert_eq!(back, msg);
        }
    }

    #[test]
    fn release_builds_refuse_test_hooks() {
        for hook in ["SimulateDeviceLoss", "Panic"] {
            let msg = serde_json::json!({ "type": hook });
            assert!(serde_json::from_value::<ToWorker>(msg).is_err(), "{hook}");
        }
        let ping = serde_json::json!({ "type": "Ping", "seq": 3 });
        assert_eq!(serde_json::from_value::<ToWorker>(ping).unwrap(), ToWorker::Ping { seq: 3 });
    }

    #[test]
    fn ids_name_their_namespace() {
        assert_eq!(Origin::of("url-a.gguf-1234"), Origin::Url);
        assert_eq!(Origin::of("file-a"), Origin::File);
        assert_eq!(Origin::of("smollm2-135m-instruct-q4_1"), Origin::Catalog);
        assert!(check_id("url-a", Origin::Catalog).is_err());
        assert!(check_id("file-a", Origin::Url).is_err());
        assert!(check_id("a", Origin::File).is_err());
        for bad in ["", "a/b", "A", "a b", "ü", &"a".repeat(MAX_ID + 1)] {
            assert!(check_id(bad, Origin::Catalog).is_err(), "{bad:?}");
        }
        check_id(&"a".repeat(MAX_ID), Origin::Catalog).unwrap();
    }
}
