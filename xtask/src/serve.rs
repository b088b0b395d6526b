//! The static file server behind `cargo xtask serve`: the built web app from `dist/`, models
//! from the model cache under `/models/`, with byte ranges (resumable model downloads), `ETag`
//! and `If-Range`, CORS, and fault injection ([`Faults`]) for end-to-end tests of downloads
//! that go wrong: connections cut at given offsets, then a server that ignores ranges, answers
//! at the wrong offset, or serves a changed file.
//!
//! Written on `std::net` with a thread per connection rather than on `tiny_http`: the fault
//! injection needs the socket itself (write N body bytes, then shut the connection down), and
//! `tiny_http` 0.12 hides it: it strips a `Connection` header set by the handler, keeps the
//! connection alive after a short body (the client then just waits) and sets no read timeouts.
//! The protocol subset needed here (GET/HEAD, one range, `Connection: close`) is small.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

/// Requests with a longer head (request line plus headers) get 431.
const MAX_HEAD: usize = 16 * 1024;
/// How long a connection may stay silent (and a write may block) before it is dropped.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
const EXPOSED: &str = "Content-Length, Content-Range, Accept-Ranges, ETag";
/// Connections served at once; more are answered 503 at once (each holds a thread).
pub const MAX_CONNECTIONS: usize = 64;
/// How far before the asked offset a `--after-cut wrong-offset` server starts its answer.
pub const WRONG_OFFSET_BY: u64 = 65536;

pub struct Config {
    /// Served at `/`.
    pub dist: PathBuf,
    /// Served at `/models/`.
    pub models: PathBuf,
    pub faults: Faults,
    pub quiet: bool,
    /// At most this many connections at once ([`MAX_CONNECTIONS`]).
    pub max_connections: usize,
    /// Who may embed the widget, instead of `dist/embed-allow.json` (`--embed-allow`).
    pub embed_allow: Option<crate::embed::AllowList>,
}

/// Faults injected into model responses (`/models/`), for tests.
#[derive(Debug, Default)]
pub struct Faults {
    /// File offsets: the first model response that reaches each one is cut there (its body
    /// ends early and the socket is shut), once per offset.
    pub cut_at: Vec<u64>,
    /// How model requests are answered once a cut has happened.
    pub after_cut: Option<AfterCut>,
    /// Model bodies are sent at most this fast (bytes per second), so a test can act in the
    /// middle of a download.
    pub rate: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterCut {
    /// Ranges are ignored: 200 and the whole file.
    IgnoreRange,
    /// A range from `a` is answered with the bytes from `a - WRONG_OFFSET_BY`, labelled so.
    WrongOffset,
    /// The file is replaced by this one (another ETag): it changed on the server.
    Change(PathBuf),
}

/// A bound server: `addr` is the real address (port 0 resolved).
pub struct Server {
    listener: TcpListener,
    pub addr: SocketAddr,
    state: Arc<State>,
}

struct State {
    config: Config,
    /// Connections being served now.
    open: AtomicUsize,
    /// One flag per `faults.cut_at` offset: that cut has been made.
    cut_done: Vec<AtomicBool>,
}

impl State {
    fn any_cut(&self) -> bool {
        self.cut_done.iter().any(|c| c.load(Ordering::SeqCst))
    }

    /// The first pending cut inside `start..end` (file offsets), claimed.
    fn claim_cut(&self, start: u64, end: u64) -> Option<u64> {
        let cuts = &self.config.faults.cut_at;
        let mut pending: Vec<usize> = (0..cuts.len()).filter(|&i| cuts[i] > start && cuts[i] < end).collect();
        pending.sort_by_key(|&i| cuts[i]);
        pending.into_iter().find(|&i| !self.cut_done[i].swap(true, Ordering::SeqCst)).map(|i| cuts[i])
    }
}

impl Server {
    pub fn bind(host: &str, port: u16, config: Config) -> Result<Server> {
        let listener = TcpListener::bind((host, port)).with_context(|| format!("listening on {host}:{port}"))?;
        let addr = listener.local_addr()?;
        let cut_done = config.faults.cut_at.iter().map(|_| AtomicBool::new(false)).collect();
        Ok(Server { listener, addr, state: Arc::new(State { config, open: AtomicUsize::new(0), cut_done }) })
    }

    /// Accepts connections forever, one thread each.
    pub fn run(self) -> Result<()> {
        for stream in self.listener.incoming() {
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("xtask serve: accept failed: {e}");
                    continue;
                }
            };
            if self.state.open.fetch_add(1, Ordering::SeqCst) >= self.state.config.max_connections {
                self.state.open.fetch_sub(1, Ordering::SeqCst);
                let mut stream = stream;
                let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = send_error(&mut stream, 503, "too many connections", &[("Retry-After", "1".into())]);
                let _ = stream.shutdown(Shutdown::Both);
                continue;
            }
            let state = Arc::clone(&self.state);
            std::thread::Builder::new()
                .name("xtask-serve-conn".into())
                .spawn(move || {
                    handle_connection(stream, &state);
                    state.open.fetch_sub(1, Ordering::SeqCst);
                })
                .context("spawning a connection thread")?;
        }
        Ok(())
    }
}

fn handle_connection(mut stream: TcpStream, state: &State) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let head = match read_head(&mut stream) {
        Ok(Some(head)) => head,
        Ok(None) => return, // closed or timed out before sending anything
        Err(HeadError::TooLarge) => {
            let _ = send_error(&mut stream, 431, "request header fields too large", &[]);
            close(stream);
            return;
        }
        Err(HeadError::Io) => return,
    };
    let request = match parse_head(&head) {
        Some(r) => r,
        None => {
            let _ = send_error(&mut stream, 400, "bad request", &[]);
            close(stream);
            return;
        }
    };
    let (status, sent, note) = respond(&mut stream, &request, state);
    if !state.config.quiet {
        let range = request.range.as_deref().unwrap_or("-");
        let if_range = if request.if_range.is_some() { " [If-Range]" } else { "" };
        let (method, target, range) = (printable(&request.method), printable(&request.target), printable(range));
        eprintln!("{method} {target} {range} → {status} {sent}{note}{if_range}");
    }
    close(stream);
}

/// Ends a response: half-close, then drain what the client still sends for a moment, so that
/// closing with unread bytes does not turn into a reset that could destroy the response.
fn close(mut stream: TcpStream) {
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = io::copy(&mut (&mut stream).take(64 * 1024), &mut io::sink());
}

/// `text` with control characters escaped, for the log: a request cannot rewrite the
/// terminal that shows it.
fn printable(text: &str) -> String {
    text.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect()
}

enum HeadError {
    TooLarge,
    Io,
}

/// Reads up to the blank line ending the request head. `Ok(None)`: the client sent nothing.
fn read_head(stream: &mut TcpStream) -> Result<Option<Vec<u8>>, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => return Err(HeadError::Io),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) if buf.is_empty() => return Ok(None),
            Err(_) => return Err(HeadError::Io),
        };
        // Only the new bytes (plus 3 before them) can complete the terminator.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        match find_head_end(&buf[from..]) {
            Some(end) if from + end > MAX_HEAD => return Err(HeadError::TooLarge),
            Some(end) => {
                buf.truncate(from + end);
                return Ok(Some(buf));
            }
            None => {}
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

/// The offset just past `\r\n\r\n` (or a bare `\n\n`), if present.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    (0..buf.len()).find_map(|i| {
        if buf[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if buf[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

#[derive(Debug)]
struct Request {
    method: String,
    target: String,
    range: Option<String>,
    if_range: Option<String>,
}

/// The request line and the one header we use. `None` if malformed.
fn parse_head(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let mut parts = lines.next()?.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || method.is_empty() || target.is_empty() || !version.starts_with("HTTP/1.") {
        return None;
    }
    let (mut range, mut if_range) = (None, None);
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case("range") {
            range = Some(value.trim().to_string());
        } else if name.eq_ignore_ascii_case("if-range") {
            if_range = Some(value.trim().to_string());
        }
    }
    Some(Request { method: method.to_string(), target: target.to_string(), range, if_range })
}

/// Answers one request; returns (status, body bytes sent, note for the log).
fn respond(stream: &mut TcpStream, request: &Request, state: &State) -> (u16, u64, String) {
    let head_only = match request.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        "OPTIONS" => {
            // CORS preflight (a cross-origin fetch with a non-simple Range header sends one).
            let extra = [
                ("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS".to_string()),
                ("Access-Control-Allow-Headers", "Range, If-Range".to_string()),
                ("Access-Control-Max-Age", "600".to_string()),
                ("Content-Length", "0".to_string()),
            ];
            let _ = write_head(stream, 204, &extra);
            return (204, 0, String::new());
        }
        _ => {
            let _ = send_error(stream, 405, "method not allowed", &[("Allow", "GET, HEAD, OPTIONS".into())]);
            return (405, 0, String::new());
        }
    };
    let config = &state.config;
    let Some((mut path, is_model)) = resolve(&request.target, &config.dist, &config.models) else {
        let _ = send_error(stream, 400, "bad path", &[]);
        return (400, 0, String::new());
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    if !is_model && name == "embed-allow.json" {
        if let Some(list) = &config.embed_allow {
            let body = list.to_json();
            let mut extra = crate::embed::headers(&name);
            extra.push(("Content-Type", "application/json".into()));
            extra.push(("Content-Length", body.len().to_string()));
            let sent = if head_only { 0 } else { body.len() as u64 };
            if write_head(stream, 200, &extra).is_ok() && !head_only {
                let _ = stream.write_all(body.as_bytes());
            }
            return (200, sent, " (--embed-allow)".into());
        }
    }
    let after_cut = config.faults.after_cut.as_ref().filter(|_| is_model && state.any_cut());
    if let Some(AfterCut::Change(other)) = after_cut {
        path = other.clone();
    }
    let opened = File::open(&path).and_then(|f| {
        let meta = f.metadata()?;
        Ok((f, meta))
    });
    let (mut file, meta) = match opened {
        Ok((f, meta)) if meta.is_file() => (f, meta),
        Ok(_) => {
            let _ = send_error(stream, 404, "not found", &[]);
            return (404, 0, String::new());
        }
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {
            let _ = send_error(stream, 404, "not found", &[]);
            return (404, 0, String::new());
        }
        Err(e) => {
            let _ = send_error(stream, 500, "cannot open file", &[]);
            return (500, 0, format!(" ({e})"));
        }
    };
    let total = meta.len();
    let etag = etag(&meta);

    let mut extra = vec![("Content-Type", content_type(&path).to_string()), ("ETag", etag.clone())];
    extra.extend(crate::embed::headers(&name));
    // A page's policy (its `<meta>`, written after the build) also as the header; the
    // widget's adds who may embed it (a `<meta>` policy cannot say that).
    if content_type(&path).starts_with("text/html") {
        let html = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(policy) = crate::csp::from_html(&html) {
            let mut policy = policy.to_string();
            if !is_model && name == "embed.html" {
                match embed_allow(config) {
                    Ok(list) => policy = format!("{policy}; {}", list.frame_ancestors()),
                    Err(e) => {
                        let _ = send_error(stream, 500, "embed-allow.json is not valid", &[]);
                        return (500, 0, format!(" ({e:#})"));
                    }
                }
            }
            extra.push(("Content-Security-Policy", policy));
        }
    }
    // `If-Range` with another validator: the file changed, so the whole new file (RFC 9110 §13.1.5).
    let range = request.range.as_deref().filter(|_| request.if_range.as_ref().is_none_or(|v| *v == etag));
    let range = range.filter(|_| after_cut != Some(&AfterCut::IgnoreRange));
    let (status, start, len) = match range.map(|r| parse_range(r, total)) {
        None | Some(RangeSpec::Full) => (200, 0, total),
        Some(RangeSpec::Partial { start, end }) => {
            let start =
                if after_cut == Some(&AfterCut::WrongOffset) { start.saturating_sub(WRONG_OFFSET_BY) } else { start };
            extra.push(("Content-Range", format!("bytes {start}-{end}/{total}")));
            (206, start, end - start + 1)
        }
        Some(RangeSpec::Unsatisfiable) => {
            let _ = send_error(stream, 416, "range not satisfiable", &[("Content-Range", format!("bytes */{total}"))]);
            return (416, 0, String::new());
        }
    };
    extra.push(("Content-Length", len.to_string()));
    if write_head(stream, status, &extra).is_err() || head_only {
        return (status, 0, String::new());
    }

    // Fault injection: the body ends early at a pending cut offset, then the socket is shut.
    let cut = if is_model { state.claim_cut(start, start + len) } else { None };
    let limit = cut.map_or(len, |at| at - start);
    let rate = config.faults.rate.filter(|_| is_model);
    if let Err(e) = file.seek(SeekFrom::Start(start)) {
        return (status, 0, format!(" (body not sent: {e})"));
    }
    match (copy_at(&mut (&mut file).take(limit), stream, rate), cut) {
        ((sent, None), Some(at)) => {
            let _ = stream.flush();
            let _ = stream.shutdown(Shutdown::Both);
            eprintln!("xtask serve: cut {} at byte {at} after {sent} bytes", printable(&request.target));
            (status, sent, " (cut)".into())
        }
        ((sent, None), None) => (status, sent, String::new()),
        ((sent, Some(e)), _) => (status, sent, format!(" (body ended early: {e})")),
    }
}

/// Who may embed the widget: `--embed-allow`, else `dist/embed-allow.json`.
fn embed_allow(config: &Config) -> Result<crate::embed::AllowList> {
    if let Some(list) = &config.embed_allow {
        return Ok(list.clone());
    }
    let path = config.dist.join("embed-allow.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    crate::embed::AllowList::from_json(&text)
}

/// Serves one page at every path (`cargo xtask serve`'s demo host: a page of another origin
/// that embeds the widget), until the process ends.
pub fn serve_page(listener: TcpListener, page: String) {
    let page = Arc::new(page);
    for stream in listener.incoming().flatten() {
        let page = Arc::clone(&page);
        let _ = std::thread::Builder::new().name("xtask-demo-conn".into()).spawn(move || {
            let mut stream = stream;
            let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
            let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
            if let Ok(Some(_)) = read_head(&mut stream) {
                let extra = [
                    ("Content-Type", "text/html; charset=utf-8".to_string()),
                    ("Content-Length", page.len().to_string()),
                ];
                if write_head(&mut stream, 200, &extra).is_ok() {
                    let _ = stream.write_all(page.as_bytes());
                }
            }
            close(stream);
        });
    }
}

/// Copies `from` to `to`, at most `rate` bytes per second when given; returns the bytes sent
/// and the error that ended it early, if one did.
fn copy_at(from: &mut impl Read, to: &mut TcpStream, rate: Option<u64>) -> (u64, Option<io::Error>) {
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return (sent, None),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return (sent, Some(e)),
        };
        if let Err(e) = to.write_all(&buf[..n]) {
            return (sent, Some(e));
        }
        sent += n as u64;
        if let Some(rate) = rate.filter(|&r| r > 0) {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
}

/// A strong validator from the file's identity, size and modification time, as Apache makes
/// it (the inode tells apart two files written within one tick of the file system's clock).
fn etag(meta: &std::fs::Metadata) -> String {
    let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).unwrap_or_default();
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let inode = 0u64;
    format!("\"{inode:x}-{:x}-{:x}\"", modified.as_nanos(), meta.len())
}

/// Maps a request target to a file: `/models/<file>` into `models`, anything else into `dist`,
/// a directory (`/`, `/a/`) to its `index.html`. `None` for a target that is not a plain
/// relative path after percent-decoding (`..`, `.`, empty or absolute segments, backslashes,
/// NUL, a non-UTF-8 name).
fn resolve(target: &str, dist: &Path, models: &Path) -> Option<(PathBuf, bool)> {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let path = path.strip_prefix('/')?;
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8().ok()?;
    let (root, rest, is_model) = match decoded.strip_prefix("models/") {
        Some(rest) => (models, rest, true),
        None => (dist, &*decoded, false),
    };
    let mut out = root.to_path_buf();
    let mut segments: Vec<&str> = rest.split('/').collect();
    if segments.last() == Some(&"") {
        segments.pop();
        segments.push("index.html");
    }
    for segment in segments {
        // No dotfiles (`.git`, `.env`, `..`): nothing a page needs starts with a dot.
        if segment.is_empty() || segment.starts_with('.') || segment.contains(['\\', '\0', ':']) {
            return None;
        }
        out.push(segment);
    }
    Some((out, is_model))
}

fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    /// No usable range (malformed, another unit, several ranges): send the whole file, 200.
    Full,
    /// Inclusive byte range within the file: 206.
    Partial { start: u64, end: u64 },
    /// 416.
    Unsatisfiable,
}

/// Parses a `Range` header against a file of `total` bytes (RFC 9110 §14.1.2). Syntax errors
/// make the header ignored (allowed by §14.2); a well-formed range that misses the file is 416.
fn parse_range(header: &str, total: u64) -> RangeSpec {
    let Some((unit, spec)) = header.trim().split_once('=') else { return RangeSpec::Full };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeSpec::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return RangeSpec::Full };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // bytes=-n: the last n bytes.
        (true, false) => match number(last) {
            Some(0) => RangeSpec::Unsatisfiable,
            Some(_) if total == 0 => RangeSpec::Unsatisfiable,
            Some(n) => RangeSpec::Partial { start: total.saturating_sub(n), end: total - 1 },
            None => RangeSpec::Full,
        },
        // bytes=a-
        (false, true) => match number(first) {
            Some(a) if a >= total => RangeSpec::Unsatisfiable,
            Some(a) => RangeSpec::Partial { start: a, end: total - 1 },
            None => RangeSpec::Full,
        },
        // bytes=a-b
        (false, false) => match (number(first), number(last)) {
            (Some(a), Some(b)) if a > b => RangeSpec::Full,
            (Some(a), Some(_)) if a >= total => RangeSpec::Unsatisfiable,
            (Some(a), Some(b)) => RangeSpec::Partial { start: a, end: b.min(total - 1) },
            _ => RangeSpec::Full,
        },
        (true, true) => RangeSpec::Full,
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        503 => "Service Unavailable",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
}

/// Writes the status line, the headers every response carries, then `extra`.
fn write_head(stream: &mut TcpStream, status: u16, extra: &[(&str, String)]) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nAccept-Ranges: bytes\r\nCache-Control: no-cache\r\n\
         Access-Control-Allow-Origin: *\r\nAccess-Control-Expose-Headers: {EXPOSED}\r\nConnection: close\r\n",
        reason(status)
    );
    for (name, value) in extra {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())
}

fn send_error(stream: &mut TcpStream, status: u16, message: &str, extra: &[(&str, String)]) -> io::Result<()> {
    let body = format!("{status} {message}\n");
    let mut headers = extra.to_vec();
    headers.push(("Content-Type", "text/plain; charset=utf-8".into()));
    headers.push(("Content-Length", body.len().to_string()));
    write_head(stream, status, &headers)?;
    stream.write_all(body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeSpec::*;
        let p = |start, end| Partial { start, end };
        assert_eq!(parse_range("bytes=10-19", 100), p(10, 19));
        assert_eq!(parse_range("bytes=0-0", 100), p(0, 0));
        assert_eq!(parse_range("bytes=90-200", 100), p(90, 99)); // end clamped
        assert_eq!(parse_range("bytes=10-", 100), p(10, 99));
        assert_eq!(parse_range("bytes=-10", 100), p(90, 99));
        assert_eq!(parse_range("bytes=-500", 100), p(0, 99)); // more than the file: all of it
        assert_eq!(parse_range("Bytes = 5 - 6 ", 100), p(5, 6));
        // Out of range.
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=100-200", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-5", 0), Unsatisfiable);
        // Malformed or unsupported: ignored, the whole file is sent.
        for bad in [
            "bytes=",
            "bytes=-",
            "bytes=abc",
            "bytes=a-b",
            "bytes=1-2-3",
            "bytes=+1-2",
            "bytes=20-10",
            "bytes=99999999999999999999-",
            "items=0-1",
            "0-1",
            "bytes=0-1,5-6",
        ] {
            assert_eq!(parse_range(bad, 100), Full, "{bad}");
        }
    }

    #[test]
    fn content_types() {
        let ct = |p: &str| content_type(Path::new(p));
        assert_eq!(ct("index.html"), "text/html; charset=utf-8");
        assert_eq!(ct("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(ct("worker.mjs"), "text/javascript; charset=utf-8");
        assert_eq!(ct("app_bg.wasm"), "application/wasm");
        assert_eq!(ct("style.CSS"), "text/css; charset=utf-8");
        assert_eq!(ct("x.json"), "application/json");
        assert_eq!(ct("logo.svg"), "image/svg+xml");
        assert_eq!(ct("logo.png"), "image/png");
        assert_eq!(ct("favicon.ico"), "image/x-icon");
        assert_eq!(ct("manifest.webmanifest"), "application/manifest+json");
        assert_eq!(ct("model.gguf"), "application/octet-stream");
        assert_eq!(ct("README"), "application/octet-stream");
    }

    #[test]
    fn paths() {
        let (dist, models) = (Path::new("/d"), Path::new("/m"));
        let ok = |t: &str| resolve(t, dist, models);
        assert_eq!(ok("/"), Some((PathBuf::from("/d/index.html"), false)));
        assert_eq!(ok("/app.js?v=1"), Some((PathBuf::from("/d/app.js"), false)));
        assert_eq!(ok("/sub/"), Some((PathBuf::from("/d/sub/index.html"), false)));
        assert_eq!(ok("/a%20b.txt"), Some((PathBuf::from("/d/a b.txt"), false)));
        assert_eq!(ok("/models/x.gguf"), Some((PathBuf::from("/m/x.gguf"), true)));
        assert_eq!(ok("/%6Dodels/x.gguf"), Some((PathBuf::from("/m/x.gguf"), true)));
        for bad in [
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/models/../secret",
            "/%2e%2e/etc/passwd",
            "/%2E%2E%2Fetc%2Fpasswd",
            "/models/%2e%2e%2fsecret",
            "//etc/passwd",
            "/%2Fetc/passwd",
            "/models//etc/passwd",
            "/a/./b",
            "/..%5c..%5cwindows",
            "/C:/x",
            "/a%00b",
            "/%ff",
            "/.env",
            "/.git/config",
            "/models/.hidden.gguf",
            "/sub/.htaccess",
            "etc/passwd",
            "http://example.com/x",
        ] {
            assert_eq!(ok(bad), None, "{bad}");
        }
    }

    #[test]
    fn heads() {
        let r = parse_head(b"GET /x HTTP/1.1\r\nHost: h\r\nrange: bytes=1-2\r\n\r\n").unwrap();
        assert_eq!((r.method.as_str(), r.target.as_str(), r.range.as_deref()), ("GET", "/x", Some("bytes=1-2")));
        assert!(parse_head(b"GET /x\r\n\r\n").is_none());
        assert!(parse_head(b"GET /x HTTP/2\r\n\r\n").is_none());
        assert!(parse_head(b"GET /x HTTP/1.1\r\nno colon\r\n\r\n").is_none());
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
    }

    /// Sends a raw request, returns (head, body).
    fn fetch(addr: SocketAddr, request: &str) -> (String, Vec<u8>) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all); // a cut connection may end in a reset
        let end = find_head_end(&all).expect("no response head");
        (String::from_utf8(all[..end].to_vec()).unwrap(), all[end..].to_vec())
    }

    #[test]
    fn serves_ranges_over_tcp() {
        let (dir, dist, models) = temp_tree("test");
        let data: Vec<u8> = (0..100u8).collect();
        std::fs::write(models.join("m.gguf"), &data).unwrap();
        let page = crate::csp::apply("<html><head><script>go()</script></head><body><p>hi</p></body></html>").unwrap();
        std::fs::write(dist.join("index.html"), &page).unwrap();
        std::fs::write(dist.join(".env"), "SECRET=1").unwrap();
        std::fs::write(dir.join("secret"), "no").unwrap();

        let faults = Faults { cut_at: vec![7, 50], ..Faults::default() };
        let addr = start(Config {
            dist: dist.clone(),
            models: models.clone(),
            faults,
            quiet: true,
            max_connections: 8,
            embed_allow: None,
        });

        let get = |path: &str, range: Option<&str>| {
            let range = range.map(|r| format!("Range: {r}\r\n")).unwrap_or_default();
            fetch(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{range}\r\n"))
        };

        // First model GET is cut after 7 bytes, with the full Content-Length announced; the
        // next one that reaches byte 50 is cut there.
        let (head, body) = get("/models/m.gguf", None);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Length: 100\r\n"), "{head}");
        assert_eq!(body, &data[..7]);
        let (head, body) = get("/models/m.gguf", Some("bytes=10-"));
        assert!(head.contains("Content-Range: bytes 10-99/100\r\n"), "{head}");
        assert_eq!(body, &data[10..50]);

        // Then served normally: a resumed range request.
        let (head, body) = get("/models/m.gguf", Some("bytes=10-19"));
        assert!(head.starts_with("HTTP/1.1 206 Partial Content\r\n"), "{head}");
        assert!(head.contains("Content-Range: bytes 10-19/100\r\n"), "{head}");
        assert!(head.contains("Content-Length: 10\r\n"), "{head}");
        assert!(head.contains("Content-Type: application/octet-stream\r\n"), "{head}");
        assert!(head.contains("Access-Control-Allow-Origin: *\r\n"), "{head}");
        assert_eq!(body, &data[10..20]);

        let (head, body) = get("/models/m.gguf", Some("bytes=-5"));
        assert!(head.contains("Content-Range: bytes 95-99/100\r\n"), "{head}");
        assert_eq!(body, &data[95..]);

        let (head, _) = get("/models/m.gguf", Some("bytes=100-"));
        assert!(head.starts_with("HTTP/1.1 416 "), "{head}");
        assert!(head.contains("Content-Range: bytes */100\r\n"), "{head}");

        let (head, body) = fetch(addr, "HEAD /models/m.gguf HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("Content-Length: 100\r\n"), "{head}");
        assert!(body.is_empty());

        let (head, body) = get("/", None);
        assert!(head.contains("Content-Type: text/html; charset=utf-8\r\n"), "{head}");
        assert_eq!(body, page.as_bytes());
        // The page's policy, as its header too.
        let policy = header(&head, "Content-Security-Policy");
        assert_eq!(Some(policy.as_str()), crate::csp::from_html(&page));
        assert!(get("/.env", None).0.starts_with("HTTP/1.1 400 "));

        assert!(get("/nope.js", None).0.starts_with("HTTP/1.1 404 "));
        assert!(get("/../secret", None).0.starts_with("HTTP/1.1 400 "));
        assert!(get("/models/%2e%2e/secret", None).0.starts_with("HTTP/1.1 400 "));
        assert!(fetch(addr, "garbage\r\n\r\n").0.starts_with("HTTP/1.1 400 "));
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD + 10));
        assert!(fetch(addr, &huge).0.starts_with("HTTP/1.1 431 "));

        // If-Range: the range only while the validator is the file's current ETag.
        let etag = header(&get("/models/m.gguf", None).0, "ETag");
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        let ranged = |if_range: &str| {
            fetch(addr, &format!("GET /models/m.gguf HTTP/1.1\r\nRange: bytes=90-\r\nIf-Range: {if_range}\r\n\r\n"))
        };
        let (head, body) = ranged(&etag);
        assert!(head.starts_with("HTTP/1.1 206 "), "{head}");
        assert_eq!(body, &data[90..]);
        let (head, body) = ranged("\"another\"");
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert_eq!(body, data);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_widget_is_framed_only_by_its_allow_list_and_loads_in_isolated_hosts() {
        let (dir, dist, models) = temp_tree("embed");
        let page = crate::csp::apply("<html><head><script>go()</script></head><body></body></html>").unwrap();
        std::fs::write(dist.join("embed.html"), &page).unwrap();
        std::fs::write(dist.join("index.html"), &page).unwrap();
        std::fs::write(dist.join("worker.js"), "x").unwrap();
        std::fs::write(dist.join("embed-allow.json"), r#"{"embedders": ["https://a.example"]}"#).unwrap();
        let config = |embed_allow| Config {
            dist: dist.clone(),
            models: models.clone(),
            faults: Faults::default(),
            quiet: true,
            max_connections: 8,
            embed_allow,
        };
        let get = |addr, path: &str| fetch(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));

        let addr = start(config(None));
        let (head, _) = get(addr, "/embed.html");
        let policy = header(&head, "Content-Security-Policy");
        assert!(policy.starts_with(crate::csp::from_html(&page).unwrap()), "{policy}");
        assert!(policy.ends_with("; frame-ancestors https://a.example"), "{policy}");
        assert_eq!(header(&head, "Cross-Origin-Embedder-Policy"), "require-corp");
        assert_eq!(header(&head, "Cross-Origin-Resource-Policy"), "cross-origin");
        assert_eq!(header(&get(addr, "/worker.js").0, "Cross-Origin-Embedder-Policy"), "require-corp");
        // The app itself: no frame-ancestors of the widget's, no COEP.
        let (head, _) = get(addr, "/");
        assert!(!head.contains("frame-ancestors") && !head.contains("Cross-Origin-Embedder-Policy"), "{head}");

        // The flag overrides the file, for the header and for the widget's own check.
        let list = crate::embed::AllowList::from_flag("http://localhost:9").unwrap();
        let addr = start(config(Some(list)));
        assert!(header(&get(addr, "/embed.html").0, "Content-Security-Policy")
            .ends_with("; frame-ancestors http://localhost:9"));
        let (head, body) = get(addr, "/embed-allow.json");
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert_eq!(String::from_utf8(body).unwrap(), r#"{"embedders":["http://localhost:9"]}"#);

        // A broken allow-list is an error, not a widget anyone may frame.
        std::fs::write(dist.join("embed-allow.json"), "{").unwrap();
        let addr = start(config(None));
        assert!(get(addr, "/embed.html").0.starts_with("HTTP/1.1 500 "));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A fresh temporary folder with `dist/` and `models/` in it.
    fn temp_tree(name: &str) -> (PathBuf, PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("xtask-serve-{name}-{}", std::process::id()));
        let (dist, models) = (dir.join("dist"), dir.join("models"));
        std::fs::create_dir_all(&dist).unwrap();
        std::fs::create_dir_all(&models).unwrap();
        (dir, dist, models)
    }

    fn start(config: Config) -> SocketAddr {
        let server = Server::bind("127.0.0.1", 0, config).unwrap();
        let addr = server.addr;
        std::thread::spawn(move || server.run());
        addr
    }

    fn header(head: &str, name: &str) -> String {
        let line =
            head.lines().find(|l| l.starts_with(&format!("{name}: "))).unwrap_or_else(|| panic!("no {name}: {head}"));
        line[name.len() + 2..].to_string()
    }

    /// After a cut, each `--after-cut` fault answers a resume as it says.
    #[test]
    fn faults_after_a_cut() {
        let (dir, dist, models) = temp_tree("faults");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(models.join("m.gguf"), &data).unwrap();
        let changed: Vec<u8> = data.iter().map(|b| b ^ 1).collect();
        std::fs::write(dir.join("changed.gguf"), &changed).unwrap();
        let resume = |addr, if_range: &str| {
            let if_range = if if_range.is_empty() { String::new() } else { format!("If-Range: {if_range}\r\n") };
            fetch(addr, &format!("GET /models/m.gguf HTTP/1.1\r\nRange: bytes=100000-\r\n{if_range}\r\n"))
        };
        let server = |after_cut| {
            let faults = Faults { cut_at: vec![1000], after_cut: Some(after_cut), rate: Some(1 << 30) };
            let addr = start(Config {
                dist: dist.clone(),
                models: models.clone(),
                faults,
                quiet: true,
                max_connections: 8,
                embed_allow: None,
            });
            // Served normally until the first cut.
            let (head, body) = resume(addr, "");
            assert!(head.starts_with("HTTP/1.1 206 ") && body == data[100_000..], "{head}");
            let (head, body) = fetch(addr, "GET /models/m.gguf HTTP/1.1\r\n\r\n");
            assert_eq!(body, &data[..1000]);
            (addr, header(&head, "ETag"))
        };

        let (addr, _) = server(AfterCut::IgnoreRange);
        let (head, body) = resume(addr, "");
        assert!(head.starts_with("HTTP/1.1 200 ") && body == data, "{head}");

        let (addr, _) = server(AfterCut::WrongOffset);
        let (head, body) = resume(addr, "");
        let from = 100_000 - WRONG_OFFSET_BY;
        assert!(head.contains(&format!("Content-Range: bytes {from}-199999/200000\r\n")), "{head}");
        assert_eq!(body, &data[from as usize..]);

        let (addr, etag) = server(AfterCut::Change(dir.join("changed.gguf")));
        let (head, body) = resume(addr, &etag);
        assert!(head.starts_with("HTTP/1.1 200 ") && body == changed, "{head}");
        assert_ne!(header(&head, "ETag"), etag);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn connections_over_the_cap_get_503() {
        let dir = std::env::temp_dir().join(format!("xtask-serve-cap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), "hi").unwrap();
        let config = Config {
            dist: dir.clone(),
            models: dir.clone(),
            faults: Faults::default(),
            quiet: true,
            max_connections: 3,
            embed_allow: None,
        };
        let addr = start(config);
        // Three silent connections hold every slot...
        let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(200));
        let (head, _) = fetch(addr, "GET / HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        // ...and once they go, requests are served again.
        drop(held);
        let served = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            fetch(addr, "GET / HTTP/1.1\r\n\r\n").0.starts_with("HTTP/1.1 200 ")
        });
        assert!(served);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn log_lines_escape_control_characters() {
        assert_eq!(printable("/a\x1b[2Jb\r\n\u{9b}"), "/a\\u{1b}[2Jb\\r\\n\\u{9b}");
        assert_eq!(printable("/plain/ü"), "/plain/ü");
    }
}
