//! `hearth serve`: the native engine behind OpenAI's chat-completions API, for tools that
//! speak it and for desktops whose browser has no WebGPU.
//!
//! HTTP is axum on tokio; the model runs on a thread of its own ([`engine`]), one request at a
//! time from a bounded queue. A local server is reachable from every page the user visits, so
//! it binds to 127.0.0.1 unless told otherwise, answers only requests whose `Host` is its own
//! (a DNS-rebinding page names another), reads bodies only as `application/json` up to
//! [`MAX_BODY`], sends no CORS headers unless `--cors-origin` names an origin, and checks
//! `--api-key` when one is set.

mod engine;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Args;
use futures_util::stream::{self, StreamExt};
use hearth_gpu::GpuOptions;
use hearth_model::chat::Conversation;
use hearth_model::openai::{self, parse_request, ApiError, Chunk, ErrorCode, Meta};
use hearth_model::Config;
use serde_json::{json, Value};
use tokio_stream::wrappers::UnboundedReceiverStream;

use self::engine::{EngineHandle, Event};
use crate::{ModelArgs, SamplingArgs};

/// Largest request body read (a long conversation is tens of kilobytes).
pub const MAX_BODY: usize = 1 << 20;

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Address to listen on. Anything but loopback makes the API reachable from the network.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The model's id in the API (default: the file name without `.gguf`).
    #[arg(long)]
    alias: Option<String>,
    /// Requests that may wait while one runs; more get 503.
    #[arg(long, default_value_t = 8)]
    queue: usize,
    /// Require `Authorization: Bearer KEY` on the API (or set HEARTH_API_KEY).
    #[arg(long, env = "HEARTH_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Let pages of this origin call the API from a browser (repeatable; e.g.
    /// `http://localhost:5173`; `*` for any page). Without it no CORS header is sent.
    #[arg(long)]
    cors_origin: Vec<String>,
    /// Accept this `Host` name too (repeatable), e.g. the machine's name when --host is not
    /// loopback. Loopback names and the bound address are always accepted.
    #[arg(long)]
    allow_host: Vec<String>,
    /// Serve the Hearth chat UI from this built app folder (`dist/`, from `trunk build
    /// --release` or `cargo xtask desktop`) at `/`, talking to this engine.
    #[arg(long, value_name = "DIR")]
    ui: Option<std::path::PathBuf>,
    /// Defaults for requests that do not set them (a request's own values win).
    #[command(flatten)]
    sampling: SamplingArgs,
}

struct Server {
    engine: EngineHandle,
    model_id: String,
    created: u64,
    api_key: Option<String>,
    hosts: Vec<String>,
    /// The UI's `index.html`, marked for the native engine.
    ui_index: Option<String>,
}

pub fn run(a: ServeArgs) -> Result<()> {
    let loaded = crate::load::open(&a.model.model)?;
    let format = loaded.chat_format()?;
    let config = Config::from_gguf(&loaded.index).with_context(|| format!("loading {}", a.model.model.display()))?;
    let ctx = crate::load::context_size(config.max_context, a.sampling.ctx)?;
    let base = a.sampling.params()?;
    let model_id = match &a.alias {
        Some(alias) => alias.clone(),
        None => a.model.model.file_stem().map_or("model".into(), |s| s.to_string_lossy().into_owned()),
    };
    if a.queue == 0 {
        anyhow::bail!("--queue must be at least 1");
    }
    let ui_index = match &a.ui {
        Some(dir) => {
            let path = dir.join("index.html");
            let html = std::fs::read_to_string(&path).with_context(|| {
                format!("--ui {}: no built app there (cargo xtask desktop builds one)", dir.display())
            })?;
            Some(mark_native(&html)?)
        }
        None => None,
    };

    let crate::load::Loaded { index, tokenizer, src, .. } = loaded;
    let (backend, shown) = (a.model.backend, a.model.model.display().to_string());
    let load: engine::Loader = Box::new(move || {
        crate::load::engine_for(backend, &index, &src, ctx, &GpuOptions::default())
            .with_context(|| format!("loading {shown}"))
    });
    let handle = engine::start(load, Conversation::new(format, tokenizer), base, a.queue)?;

    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]"].map(String::from).into();
    hosts.push(match a.host {
        IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    });
    hosts.extend(a.allow_host.iter().map(|h| h.to_ascii_lowercase()));
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let server = Arc::new(Server { engine: handle, model_id, created, api_key: a.api_key.clone(), hosts, ui_index });
    let app = router(server.clone(), &a.cors_origin, a.ui.as_deref())?;

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let addr = SocketAddr::new(a.host, a.port);
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let bound = listener.local_addr()?;
        // One line on stdout with the address (scripts and tests read it), the rest on stderr.
        println!("listening on http://{bound}");
        eprintln!(
            "hearth serve: model {:?}, context {} tokens; OpenAI API at http://{bound}/v1 (Ctrl-C stops)",
            server.model_id, server.engine.context
        );
        if !a.host.is_loopback() && server.api_key.is_none() {
            eprintln!(
                "hearth serve: warning: listening on {} without --api-key: anyone on the network can use it",
                a.host
            );
        }
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("the HTTP server failed")
    })
}

fn router(server: Arc<Server>, cors_origins: &[String], ui: Option<&std::path::Path>) -> Result<Router> {
    let api = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .layer(middleware::from_fn_with_state(server.clone(), require_key));
    let app =
        Router::new().route("/", get(index)).route("/index.html", get(index)).route("/health", get(health)).merge(api);
    let app = match ui {
        // The app's files; anything else under /v1 is the API's 404 above.
        Some(dir) => app.fallback_service(tower_http::services::ServeDir::new(dir)),
        None => app.fallback(not_found),
    };
    let mut app = app.layer(middleware::from_fn_with_state(server.clone(), require_host)).with_state(server);
    if !cors_origins.is_empty() {
        use tower_http::cors::AllowOrigin;
        // `*` means any page may call the API (tower-http's list refuses it).
        let origins = if cors_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            let list = cors_origins
                .iter()
                .map(|o| HeaderValue::from_str(o).with_context(|| format!("--cors-origin {o:?} is not a valid origin")))
                .collect::<Result<Vec<_>>>()?;
            AllowOrigin::list(list)
        };
        app = app.layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION]),
        );
    }
    Ok(app)
}

fn error(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(e.body())).into_response()
}

/// Refuses any `Host` but the server's own: a page on another site that re-points its DNS
/// name at 127.0.0.1 still sends its own name.
async fn require_host(State(s): State<Arc<Server>>, req: Request, next: Next) -> Response {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map(host_name);
    match host {
        Some(h) if s.hosts.contains(&h) => next.run(req).await,
        _ => error(&ApiError::new(
            ErrorCode::InvalidHost,
            None,
            "this server answers only to its own address (Host: localhost or 127.0.0.1); start it with --allow-host NAME for another name",
        )),
    }
}

/// `Host` without its port, lowercased: `[::1]:8080` → `[::1]`, `LocalHost:80` → `localhost`.
fn host_name(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    let end = match host.rfind(']') {
        Some(close) => close + 1,
        None => host.find(':').unwrap_or(host.len()),
    };
    host[..end].to_string()
}

async fn require_key(State(s): State<Arc<Server>>, req: Request, next: Next) -> Response {
    if let Some(key) = &s.api_key {
        let given = req.headers().get(header::AUTHORIZATION).and_then(|h| h.to_str().ok());
        let given = given.and_then(|h| h.strip_prefix("Bearer ")).unwrap_or("");
        if !same_secret(given.as_bytes(), key.as_bytes()) {
            return error(&ApiError::new(
                ErrorCode::InvalidApiKey,
                None,
                "missing or wrong API key: send 'Authorization: Bearer <key>' with the key hearth serve was given",
            ));
        }
    }
    next.run(req).await
}

/// Compares in time that depends only on the lengths, not on where the bytes differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The chat UI, or (without `--ui`) what is here and how to get the UI.
async fn index(State(s): State<Arc<Server>>) -> Html<String> {
    if let Some(page) = &s.ui_index {
        return Html(page.clone());
    }
    Html(format!(
        "<!doctype html><meta charset=utf-8><title>Hearth</title>\
         <h1>Hearth is serving {}</h1>\
         <p>OpenAI-compatible API: <code>POST /v1/chat/completions</code>, <code>GET /v1/models</code>. \
         Point an OpenAI client at <code>/v1</code> on this address.</p>\
         <p>For the chat UI here, build it and pass it: <code>cargo xtask desktop</code> does both, \
         or <code>trunk build --release</code> then <code>hearth serve --ui dist</code>.</p>",
        html_escape(&s.model_id)
    ))
}

/// The app's page, marked so that it talks to this server (`hearth-web`'s `native` module)
/// instead of starting an engine worker.
fn mark_native(html: &str) -> Result<String> {
    let head = html.find("<head>").context("the UI's index.html has no <head>")? + "<head>".len();
    Ok(format!("{}\n    <meta name=\"hearth-engine\" content=\"native\" />{}", &html[..head], &html[head..]))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

async fn not_found() -> Response {
    let e = ApiError::new(ErrorCode::InvalidValue, None, "no such endpoint: see /v1/models and /v1/chat/completions");
    (StatusCode::NOT_FOUND, Json(e.body())).into_response()
}

async fn health(State(s): State<Arc<Server>>) -> Json<Value> {
    let c = &s.engine.counters;
    Json(json!({
        "status": "ok",
        "model": s.model_id,
        "context": s.engine.context,
        "queued": c.queued.load(Ordering::SeqCst),
        "busy": c.busy.load(Ordering::SeqCst),
        "completed": c.completed.load(Ordering::SeqCst),
        "interrupted": c.interrupted.load(Ordering::SeqCst),
        "generated_tokens": c.generated_tokens.load(Ordering::SeqCst),
        "last_tokens": c.last_tokens.load(Ordering::SeqCst),
    }))
}

async fn models(State(s): State<Arc<Server>>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{ "id": s.model_id, "object": "model", "created": s.created, "owned_by": "hearth",
                   "hearth": { "context": s.engine.context, "can_think": s.engine.can_think } }],
    }))
}

async fn chat_completions(State(s): State<Arc<Server>>, headers: HeaderMap, body: Body) -> Response {
    match chat(&s, &headers, body).await {
        Ok(response) => response,
        Err(e) => error(&e),
    }
}

async fn chat(s: &Server, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return Err(ApiError::new(ErrorCode::InvalidBody, None, "send the request as Content-Type: application/json"));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::new(ErrorCode::InvalidBody, None, format!("the request body is over {} KiB", MAX_BODY >> 10))
    })?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(ErrorCode::InvalidBody, None, format!("the request body is not JSON: {e}")))?;
    let request = parse_request(&value)?;
    if let Some(m) = request.model.as_deref().filter(|m| *m != s.model_id) {
        return Err(ApiError::new(
            ErrorCode::ModelNotFound,
            Some("model"),
            format!("the model {m:?} is not served here; this server has {:?} (see /v1/models)", s.model_id),
        ));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let entropy = now.as_nanos() as u64 ^ (s.engine.counters.completed.load(Ordering::SeqCst) << 48);
    let meta = Meta::new(entropy, now.as_secs(), &s.model_id);
    let (stream, include_usage, ext) = (request.stream, request.include_usage, request.hearth);
    let mut events = s.engine.submit(request, entropy)?;

    // Wait for the first event, so that a request refused by the engine (a prompt longer
    // than the context) gets its HTTP status rather than a stream that says it.
    let first = events.recv().await.ok_or_else(engine_stopped)?;
    if let Event::Done(Err(e)) = first {
        return Err(e);
    }
    if !stream {
        let mut text = String::new();
        let mut event = first;
        let turn = loop {
            match event {
                Event::Text(t) => text.push_str(&t),
                Event::Done(done) => break done?,
            }
            event = events.recv().await.ok_or_else(engine_stopped)?;
        };
        return Ok(Json(openai::turn_completion(&meta, &text, &turn, ext.as_ref())).into_response());
    }
    let data = |v: Value| Ok::<_, Infallible>(SseEvent::default().data(v.to_string()));
    let head = stream::iter([data(openai::chunk(&meta, Chunk::Role))]);
    let rest = stream::iter([first]).chain(UnboundedReceiverStream::new(events)).flat_map(move |event| {
        let out: Vec<Value> = match event {
            Event::Text(t) => vec![openai::chunk(&meta, Chunk::Content(&t))],
            Event::Done(Ok(turn)) => openai::closing_chunks(&meta, &turn, include_usage, ext.as_ref()),
            // Mid-stream the status is sent already: the error goes in the stream, as
            // OpenAI's does.
            Event::Done(Err(e)) => vec![e.body()],
        };
        stream::iter(out.into_iter().map(data))
    });
    let done = stream::iter([Ok::<_, Infallible>(SseEvent::default().data("[DONE]"))]);
    Ok(Sse::new(head.chain(rest).chain(done)).into_response())
}

fn engine_stopped() -> ApiError {
    ApiError::new(ErrorCode::EngineError, None, "the engine stopped while answering")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ui_page_is_marked_for_the_native_engine() {
        let page = mark_native("<html><head><title>t</title></head></html>").unwrap();
        assert!(page.starts_with("<html><head>\n    <meta name=\"hearth-engine\" content=\"native\" /><title>"));
        assert!(mark_native("<html></html>").is_err());
    }

    #[test]
    fn any_cors_origin_is_allowed_by_star_without_a_panic() {
        let router = |origins: &[&str]| {
            let origins: Vec<String> = origins.iter().map(|o| o.to_string()).collect();
            let handle = engine::EngineHandle::detached();
            let server = Arc::new(Server {
                engine: handle,
                model_id: "m".into(),
                created: 0,
                api_key: None,
                hosts: Vec::new(),
                ui_index: None,
            });
            router(server, &origins, None).map(drop)
        };
        router(&["*"]).unwrap();
        router(&["http://localhost:5173", "*"]).unwrap();
        router(&["http://localhost:5173"]).unwrap();
        assert!(router(&["bad\norigin"]).is_err());
    }

    #[test]
    fn host_names_lose_their_port_and_case() {
        assert_eq!(host_name("LocalHost:8080"), "localhost");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_name("[::1]:80"), "[::1]");
        assert_eq!(host_name("evil.example:8080"), "evil.example");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
    }
}
