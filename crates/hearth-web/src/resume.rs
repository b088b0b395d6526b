//! What a download does with the server's answer to one request: the rules that keep a resumed
//! download from splicing two versions of a file together, from storing an error page, and
//! from asking past the end of a file that is already stored. Pure, so it is tested natively;
//! `worker::download` does the fetching and the storing.

/// What a download knows before it asks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Known {
    /// The file's size: published (`pinned`), or as the server first said.
    pub size: Option<u64>,
    /// `size` comes from the catalog: a server file of another size is refused, not followed.
    pub pinned: bool,
    /// The file's identity as first seen ([`validator`]); sent back as `If-Range`.
    pub validator: Option<String>,
}

/// The parts of a response that matter for resuming.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reply<'a> {
    pub status: u16,
    pub content_range: Option<&'a str>,
    pub content_length: Option<u64>,
    pub etag: Option<&'a str>,
    pub last_modified: Option<&'a str>,
}

/// The identity of the file a response came from, for `If-Range` and for comparing later
/// replies: a strong ETag, else Last-Modified (`If-Range` takes no weak ETag, RFC 9110 §13.1.5).
pub fn validator(etag: Option<&str>, last_modified: Option<&str>) -> Option<String> {
    strong_etag(etag).or(last_modified.map(str::trim).filter(|l| !l.is_empty())).map(str::to_string)
}

/// A strong ETag is a quoted string (a weak one starts `W/`).
fn strong_etag(etag: Option<&str>) -> Option<&str> {
    etag.map(str::trim).filter(|e| e.len() >= 2 && e.starts_with('"'))
}

/// Whether `reply` comes from another file than the one `stored` (from [`validator`])
/// identified, comparing like with like: a strong ETag with the reply's strong ETag, a date
/// with its Last-Modified. A reply without that validator says nothing (the sha256 decides).
fn changed(stored: &str, reply: &Reply) -> bool {
    let now = if stored.starts_with('"') { strong_etag(reply.etag) } else { reply.last_modified.map(str::trim) };
    now.is_some_and(|now| now != stored)
}

/// What to do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Store the body after the bytes already stored; the file is `total` bytes.
    Append { total: u64 },
    /// Delete what is stored and store the body from byte 0 (a 200: the server ignored the
    /// range, or `If-Range` found the file changed).
    Restart { total: u64 },
    /// Store nothing: the stored bytes are not a prefix of the file now on the server. Delete
    /// them and ask again from byte 0.
    Changed,
    /// Store nothing: every byte is already stored. Verify.
    Complete,
}

/// A response that must not be stored, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the server answered a request for the bytes from {asked} with the bytes from {got}: not storing them (its range support looks broken)")]
    WrongOffset { asked: u64, got: u64 },
    #[error("the server sent a bad Content-Range {0:?} (a server on another origin must also expose it to scripts: Access-Control-Expose-Headers)")]
    BadContentRange(String),
    #[error("the server's file is {server} bytes but the catalog says {expected}: not downloading a different file")]
    SizeMismatch { server: u64, expected: u64 },
    #[error("the server did not say how large the model is")]
    NoSize,
    #[error("the server answered {0}")]
    Status(u16),
}

/// Whether to ask at all: `None` means every byte is stored already (e.g. a reload during
/// "Verifying"), so verify without a request past the end of the file.
pub fn request_from(stored: u64, known: &Known) -> Option<u64> {
    match known.size {
        Some(size) if stored >= size => None,
        _ => Some(stored),
    }
}

/// Decides what to do with `reply`, the answer to a request for the bytes from `asked` on
/// (no `Range` when 0).
pub fn next(asked: u64, known: &Known, reply: &Reply) -> Result<Next, Refusal> {
    let check_pinned = |total: u64| match known.size {
        Some(expected) if known.pinned && expected != total => Err(Refusal::SizeMismatch { server: total, expected }),
        _ => Ok(()),
    };
    match reply.status {
        206 => {
            let range = reply.content_range.unwrap_or_default();
            let bad = || Refusal::BadContentRange(range.to_string());
            let (first, last, total) = parse_content_range(range).ok_or_else(bad)?;
            if first != asked {
                return Err(Refusal::WrongOffset { asked, got: first });
            }
            if last < first || last >= total {
                return Err(bad());
            }
            check_pinned(total)?;
            let changed_identity = known.validator.as_deref().is_some_and(|v| changed(v, reply));
            let changed_size = known.size.is_some_and(|s| s != total);
            Ok(if changed_identity || changed_size { Next::Changed } else { Next::Append { total } })
        }
        200 => {
            let total = reply.content_length.or(known.size.filter(|_| known.pinned)).ok_or(Refusal::NoSize)?;
            check_pinned(total)?;
            Ok(Next::Restart { total })
        }
        416 => {
            // "bytes */N": the file is N bytes, and `asked` is not within it.
            let total =
                reply.content_range.and_then(|r| r.strip_prefix("bytes */")).and_then(|n| n.trim().parse().ok());
            Ok(match total {
                Some(total) if total == asked && known.size.is_none_or(|s| s == total) => Next::Complete,
                Some(total) => {
                    check_pinned(total)?;
                    Next::Changed
                }
                None => Next::Changed,
            })
        }
        status => Err(Refusal::Status(status)),
    }
}

/// `bytes first-last/total` (RFC 9110 §14.4); `None` for anything else, `*` totals included.
fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let (unit, rest) = value.trim().split_once(' ')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (span, total) = rest.trim().split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let number = |s: &str| s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse::<u64>().ok()).flatten();
    Some((number(first)?, number(last)?, number(total)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: u64 = 98_362_432;
    const FROM: u64 = 8 << 20;

    fn catalog() -> Known {
        Known { size: Some(SIZE), pinned: true, validator: Some("\"v1\"".into()) }
    }

    fn partial(first: u64, etag: Option<&'static str>) -> (String, Option<&'static str>) {
        (format!("bytes {first}-{}/{SIZE}", SIZE - 1), etag)
    }

    fn reply(status: u16, range: Option<&str>, etag: Option<&'static str>) -> Result<Next, Refusal> {
        let reply = Reply { status, content_range: range, content_length: Some(SIZE), etag, last_modified: None };
        next(FROM, &catalog(), &reply)
    }

    #[test]
    fn a_206_is_stored_only_at_the_offset_asked_for() {
        let (range, etag) = partial(FROM, Some("\"v1\""));
        assert_eq!(reply(206, Some(&range), etag), Ok(Next::Append { total: SIZE }));
        for wrong in [FROM - 65536, FROM + 1, 0] {
            let (range, etag) = partial(wrong, Some("\"v1\""));
            assert_eq!(reply(206, Some(&range), etag), Err(Refusal::WrongOffset { asked: FROM, got: wrong }));
        }
        for bad in ["bytes */98362432", "bytes 8388608-/98362432", "bytes 8388608-98362432/98362432", "items 0-1/2", ""]
        {
            assert!(matches!(reply(206, Some(bad), None), Err(Refusal::BadContentRange(_))), "{bad}");
        }
        assert!(matches!(reply(206, None, None), Err(Refusal::BadContentRange(_))));
    }

    #[test]
    fn only_a_200_restarts_from_zero() {
        assert_eq!(reply(200, None, Some("\"v1\"")), Ok(Next::Restart { total: SIZE }));
        for status in [201, 203, 204, 301, 304, 403, 404, 500, 503] {
            assert_eq!(reply(status, None, None), Err(Refusal::Status(status)));
        }
        // A 200 without a length: the published size.
        let r = Reply { status: 200, ..Reply::default() };
        assert_eq!(next(0, &catalog(), &r), Ok(Next::Restart { total: SIZE }));
        assert_eq!(next(0, &Known::default(), &r), Err(Refusal::NoSize));
    }

    #[test]
    fn a_416_body_is_never_stored() {
        let all = Known { size: Some(SIZE), pinned: false, validator: None };
        let r = |range: Option<&'static str>| Reply { status: 416, content_range: range, ..Reply::default() };
        assert_eq!(next(SIZE, &all, &r(Some("bytes */98362432"))), Ok(Next::Complete));
        // Shorter than what is stored: the file changed.
        assert_eq!(next(FROM, &all, &r(Some("bytes */4096"))), Ok(Next::Changed));
        assert_eq!(next(FROM, &all, &r(None)), Ok(Next::Changed));
        assert_eq!(
            next(FROM, &catalog(), &r(Some("bytes */4096"))),
            Err(Refusal::SizeMismatch { server: 4096, expected: SIZE })
        );
    }

    #[test]
    fn every_byte_stored_asks_nothing() {
        assert_eq!(request_from(SIZE, &catalog()), None);
        assert_eq!(request_from(SIZE + 100, &catalog()), None); // the last chunk counts whole
        assert_eq!(request_from(FROM, &catalog()), Some(FROM));
        assert_eq!(request_from(FROM, &Known::default()), Some(FROM));
    }

    #[test]
    fn a_file_that_changed_is_restarted_not_spliced() {
        let (range, _) = partial(FROM, None);
        assert_eq!(reply(206, Some(&range), Some("\"v2\"")), Ok(Next::Changed));
        // No validator in the reply: nothing to compare; the sha256 decides later.
        assert_eq!(reply(206, Some(&range), None), Ok(Next::Append { total: SIZE }));
        // A custom URL's file grew.
        let custom = Known { size: Some(SIZE - 10), pinned: false, validator: None };
        let r = Reply { status: 206, content_range: Some(&range), ..Reply::default() };
        assert_eq!(next(FROM, &custom, &r), Ok(Next::Changed));
        // The catalog's file is pinned: another size is refused outright.
        let r = Reply { status: 200, content_length: Some(SIZE + 1), ..Reply::default() };
        assert_eq!(next(FROM, &catalog(), &r), Err(Refusal::SizeMismatch { server: SIZE + 1, expected: SIZE }));
    }

    #[test]
    fn validators_are_compared_like_with_like() {
        let lm = "Mon, 07 Dec 2026 04:00:00 GMT";
        let range = format!("bytes {FROM}-{}/{SIZE}", SIZE - 1);
        let reply = |etag, last_modified| Reply {
            status: 206,
            content_range: Some(&range),
            content_length: None,
            etag,
            last_modified,
        };
        let by_etag = Known { size: Some(SIZE), pinned: true, validator: Some("\"v1\"".into()) };
        let by_date = Known { validator: Some(lm.into()), ..by_etag.clone() };
        let append = Ok(Next::Append { total: SIZE });
        // A reply that shows only the other kind of validator says nothing.
        assert_eq!(next(FROM, &by_etag, &reply(None, Some(lm))), append);
        assert_eq!(next(FROM, &by_etag, &reply(Some("W/\"v2\""), Some(lm))), append);
        assert_eq!(next(FROM, &by_date, &reply(Some("\"v9\""), Some(lm))), append);
        // The same kind, another value: another file.
        assert_eq!(next(FROM, &by_etag, &reply(Some("\"v2\""), None)), Ok(Next::Changed));
        assert_eq!(next(FROM, &by_date, &reply(None, Some("Tue, 08 Dec 2026 04:00:00 GMT"))), Ok(Next::Changed));
    }

    #[test]
    fn validators_prefer_a_strong_etag() {
        let lm = Some("Mon, 07 Dec 2026 04:00:00 GMT");
        assert_eq!(validator(Some("\"abc\""), lm).as_deref(), Some("\"abc\""));
        assert_eq!(validator(Some("W/\"abc\""), lm), lm.map(String::from));
        assert_eq!(validator(None, lm), lm.map(String::from));
        assert_eq!(validator(Some(" "), None), None);
        assert_eq!(validator(Some("unquoted"), lm), lm.map(String::from));
        assert_eq!(validator(None, None), None);
    }
}
