//! Python semantics the templates rely on: how values print, and string methods.

use std::fmt::Write as _;

use minijinja::value::{from_args, Kwargs, Rest, ValueKind, ValueOrKwargs};
use minijinja::{Error, ErrorKind, State, Value};

/// Jinja2 prints `str(value)`; MiniJinja would print `true`, `none`, `["a"]`. Strings and
/// undefined values go through MiniJinja's own formatter unchanged.
pub(super) fn python_formatter(out: &mut minijinja::Output, state: &mut State, value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::String | ValueKind::Undefined | ValueKind::Plain | ValueKind::Invalid => {
            minijinja::escape_formatter(out, state, value)
        }
        _ => {
            let mut s = String::new();
            py_str(&mut s, value)?;
            out.write_str(&s).map_err(Error::from)
        }
    }
}

/// Jinja2's `string` filter is `str(value)`.
pub(super) fn string_filter(value: &Value) -> Result<Value, Error> {
    match value.kind() {
        ValueKind::String => Ok(value.clone()),
        ValueKind::Undefined => Ok(Value::from("")),
        _ => {
            let mut s = String::new();
            py_str(&mut s, value)?;
            Ok(Value::from(s))
        }
    }
}

/// Python's `str(value)`.
pub(super) fn py_str(out: &mut String, value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::String => out.push_str(value.as_str().unwrap_or_default()),
        ValueKind::Undefined => {}
        _ => py_repr(out, value, 0)?,
    }
    Ok(())
}

/// Python's `repr(value)`, as used for the items of printed lists and dicts.
pub(super) fn py_repr(out: &mut String, value: &Value, depth: usize) -> Result<(), Error> {
    if depth > 512 {
        return Err(Error::new(ErrorKind::InvalidOperation, "value nested too deeply to print"));
    }
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => push_py_number(out, value),
        ValueKind::String => py_repr_str(out, value.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            // Pairs from `items()`/`dictsort` are tuples in Python: `('a', 1)`, `('a',)`.
            let (open, close) = if value.is_tuple() { ('(', ")") } else { ('[', "]") };
            out.push(open);
            let mut n = 0;
            for item in value.try_iter()? {
                if n > 0 {
                    out.push_str(", ");
                }
                py_repr(out, &item, depth + 1)?;
                n += 1;
            }
            out.push_str(if open == '(' && n == 1 { ",)" } else { close });
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(out, &key, depth + 1)?;
                out.push_str(": ");
                py_repr(out, &value.get_item(&key)?, depth + 1)?;
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{value}");
        }
    }
    Ok(())
}

pub(super) fn push_py_number(out: &mut String, value: &Value) {
    if value.is_integer() {
        let _ = write!(out, "{value}");
    } else {
        match f64::try_from(value.clone()) {
            Ok(f) => out.push_str(&py_float_repr(f)),
            Err(_) => {
                let _ = write!(out, "{value}");
            }
        }
    }
}

/// Python's `repr(float)`: shortest round-trip digits, scientific notation outside 1e-4..1e16.
pub(super) fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-5".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut s = String::from(sign);
    if (-4..16).contains(&exp) {
        if exp < 0 {
            s.push_str("0.");
            s.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            s.push_str(&digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                s.push_str(&digits);
                s.extend(std::iter::repeat_n('0', int_len - digits.len()));
                s.push_str(".0");
            } else {
                s.push_str(&digits[..int_len]);
                s.push('.');
                s.push_str(&digits[int_len..]);
            }
        }
    } else {
        s.push_str(&digits[..1]);
        if digits.len() > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        let _ = write!(s, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    s
}

/// Python's `repr(str)`: single quotes unless the text has `'` and no `"`.
pub(super) fn py_repr_str(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !py_is_printable(c) => {
                let code = c as u32;
                let _ = if code < 0x100 {
                    write!(out, "\\x{code:02x}")
                } else if code < 0x10000 {
                    write!(out, "\\u{code:04x}")
                } else {
                    write!(out, "\\U{code:08x}")
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// An approximation of Python's `str.isprintable` (no Unicode tables here): control, format and
/// separator characters other than the ASCII space are not printable.
pub(super) fn py_is_printable(c: char) -> bool {
    !matches!(c as u32,
        0..=0x1f | 0x7f..=0xa0 | 0xad | 0x1680 | 0x180e | 0x2000..=0x200f | 0x2028..=0x202f
        | 0x205f..=0x2064 | 0x2066..=0x206f | 0x3000 | 0xfeff | 0xfff9..=0xfffb
        | 0xe000..=0xf8ff | 0xf0000..=0x10ffff)
}

// ---------------------------------------------------------------------------------------------
// Python string semantics

/// Python's `str.isspace()`: Unicode whitespace plus the ASCII separators 0x1c..=0x1f, which
/// Rust's `char::is_whitespace` leaves out.
pub(super) fn py_is_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

#[derive(Clone, Copy)]
pub(super) enum Strip {
    Both,
    Start,
    End,
}

pub(super) fn py_strip(s: &str, chars: Option<&str>, side: Strip) -> String {
    let matches = |c: char| match chars {
        Some(set) => set.contains(c),
        None => py_is_space(c),
    };
    match side {
        Strip::Both => s.trim_matches(matches),
        Strip::Start => s.trim_start_matches(matches),
        Strip::End => s.trim_end_matches(matches),
    }
    .to_string()
}

/// Jinja2's `map('filter', *args, **kwargs)` passes keyword arguments on to the filter (as in
/// `map('tojson', indent=2)`); MiniJinja's drops them, so that case is handled here.
pub(super) fn map_filter(state: &mut State, value: Value, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let args = args.into_values();
    let filter = match (args.first(), args.last()) {
        (Some(first), Some(last)) if last.is_kwargs() && !first.is_kwargs() => first.as_str(),
        _ => None,
    };
    let Some(filter) = filter else {
        let args = Rest(args.into_iter().map(ValueOrKwargs::from).collect());
        return minijinja::filters::map(state, value, args).map(Value::from);
    };
    let mut out = Vec::new();
    if !value.is_undefined() {
        for item in value.try_iter()? {
            let mut call = Vec::with_capacity(args.len());
            call.push(item);
            call.extend(args[1..].iter().cloned());
            out.push(state.apply_filter(filter, &call)?);
        }
    }
    Ok(Value::from(out))
}

/// Jinja2's `indent(s, width=4, first=False, blank=False)`, including its quirk of keeping a
/// trailing newline (`'{\n'|indent(4, first=true)` is `'    {\n'`; MiniJinja drops it).
pub(super) fn indent_filter(value: &Value, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let args = args.into_values();
    let (width, first, blank, kwargs): (Option<Value>, Option<Value>, Option<Value>, Kwargs) = from_args(&args)?;
    let pick = |positional: Option<Value>, name: &str| -> Result<Option<Value>, Error> {
        Ok(kwargs.get::<Option<Value>>(name)?.or(positional))
    };
    let indention = match pick(width, "width")? {
        None => "    ".to_string(),
        Some(w) => match (w.as_str(), w.as_i64()) {
            (Some(s), _) => s.to_string(),
            (None, Some(n)) => " ".repeat(n.clamp(0, 1024) as usize),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("indent width must be an int or a string, not {}", w.kind()),
                ))
            }
        },
    };
    let first = pick(first, "first")?.is_some_and(|v| v.is_true());
    let blank = pick(blank, "blank")?.is_some_and(|v| v.is_true());
    kwargs.assert_all_used()?;

    let mut s = String::new();
    py_str(&mut s, value)?;
    s.push('\n');
    let lines = py_splitlines(&s, false);
    let mut rv = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            rv.push('\n');
            if blank || !line.is_empty() {
                rv.push_str(&indention);
            }
        }
        rv.push_str(line);
    }
    if first {
        rv.insert_str(0, &indention);
    }
    Ok(Value::from(rv))
}

/// Python's `str.splitlines(keepends)`: splits on \n, \r\n, \r, \v, \f, \x1c-\x1e, \x85,
/// U+2028 and U+2029; no empty last line for a trailing separator.
pub(super) fn py_splitlines(s: &str, keepends: bool) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let is_break =
            matches!(c, '\n' | '\r' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\u{85}' | '\u{2028}' | '\u{2029}');
        if !is_break {
            continue;
        }
        let mut end = i + c.len_utf8();
        if c == '\r' {
            if let Some(&(j, '\n')) = chars.peek() {
                chars.next();
                end = j + 1;
            }
        }
        lines.push(&s[start..if keepends { end } else { i }]);
        start = end;
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// Jinja2's `iterable` test is Python's `iter(value)` succeeding: true for strings, lists,
/// dicts and undefined, false for none, numbers and booleans (MiniJinja iterates none as
/// empty). Templates guard with `tools is iterable and tools | length > 0`.
pub(super) fn is_iterable(value: &Value) -> bool {
    match value.kind() {
        ValueKind::None | ValueKind::Bool | ValueKind::Number => false,
        ValueKind::Plain => value.try_iter().is_ok(),
        _ => true,
    }
}

/// Jinja2's `wordcount`: the number of `\w+` runs.
pub(super) fn wordcount(value: &Value) -> Result<usize, Error> {
    let mut s = String::new();
    py_str(&mut s, value)?;
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    Ok(s.split(|c: char| !is_word(c)).filter(|w| !w.is_empty()).count())
}

/// Jinja2's `trim(value, chars=None)` is `str(value).strip(chars)`.
pub(super) fn trim_filter(value: &Value, chars: Option<String>) -> Result<Value, Error> {
    let mut s = String::new();
    py_str(&mut s, value)?;
    Ok(Value::from(py_strip(&s, chars.as_deref(), Strip::Both)))
}

/// Python methods on values: `strip`/`lstrip`/`rstrip` with Python's whitespace and
/// `splitlines` with Python's line breaks; everything else from minijinja-contrib's pycompat.
pub(super) fn unknown_method(state: &mut State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    if let (Some(s), Some(side)) = (
        value.as_str(),
        match method {
            "strip" => Some(Strip::Both),
            "lstrip" => Some(Strip::Start),
            "rstrip" => Some(Strip::End),
            _ => None,
        },
    ) {
        let chars = match args {
            [] => None,
            [v] if v.is_none() => None,
            [v] => Some(v.as_str().ok_or_else(|| {
                Error::new(ErrorKind::InvalidOperation, format!("{method} arg must be None or str, not {}", v.kind()))
            })?),
            _ => return Err(Error::new(ErrorKind::TooManyArguments, format!("{method} takes at most 1 argument"))),
        };
        return Ok(Value::from(py_strip(s, chars, side)));
    }
    if let (Some(s), "splitlines") = (value.as_str(), method) {
        let (keepends,): (Option<bool>,) = from_args(args)?;
        let lines = py_splitlines(s, keepends.unwrap_or(false));
        return Ok(lines.into_iter().map(Value::from).collect());
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}
