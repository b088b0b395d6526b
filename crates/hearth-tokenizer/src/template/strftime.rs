//! `strftime_now`: Python's `strftime` on Linux.

use super::*;

pub(super) const WEEKDAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
pub(super) const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Python's `datetime.now().strftime(format)` on Linux: glibc's `strftime` in the C locale, for
/// a naive datetime (so `%z`/`%Z` are empty), with Python's own `%f`. glibc extensions that
/// templates use are supported: flags `-` `_` `0` `^` `#`, a field width, and the `E`/`O`
/// modifiers (ignored in the C locale). Unknown conversions are copied through.
pub fn strftime(format: &str, t: &DateTime) -> String {
    let mut out = String::new();
    let mut rest = format;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let spec = &rest[pos..];
        let consumed = conversion(&mut out, spec, t);
        rest = &spec[consumed..];
    }
    out.push_str(rest);
    out
}

pub(super) enum Field {
    /// A number with its default width and padding character.
    Num(i64, usize, char),
    Text(String),
}

/// Writes one `%...` conversion starting at `spec[0] == '%'`; returns the bytes consumed.
pub(super) fn conversion(out: &mut String, spec: &str, t: &DateTime) -> usize {
    let bytes = spec.as_bytes();
    let mut i = 1;
    let mut flag = None;
    while i < bytes.len() && matches!(bytes[i], b'-' | b'_' | b'0' | b'^' | b'#') {
        flag = Some(bytes[i]);
        i += 1;
    }
    let width_start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let width: Option<usize> = spec[width_start..i].parse().ok().map(|w: usize| w.min(1024));
    while i < bytes.len() && matches!(bytes[i], b'E' | b'O') {
        i += 1;
    }
    let Some(conv) = spec[i..].chars().next() else {
        out.push_str(spec);
        return spec.len();
    };
    let end = i + conv.len_utf8();
    let plain = end == 2; // no flags, width or modifiers

    let wday = t.weekday().to_sunday_zero_offset() as usize;
    let yday0 = i64::from(t.day_of_year()) - 1;
    let hour12 = match t.hour() % 12 {
        0 => 12,
        h => h,
    };
    let month = (t.month().clamp(1, 12) - 1) as usize;
    let field = match conv {
        'a' => Field::Text(WEEKDAYS[wday % 7][..3].to_string()),
        'A' => Field::Text(WEEKDAYS[wday % 7].to_string()),
        'b' | 'h' => Field::Text(MONTHS[month][..3].to_string()),
        'B' => Field::Text(MONTHS[month].to_string()),
        'c' => Field::Text(strftime("%a %b %e %H:%M:%S %Y", t)),
        'C' => Field::Num(i64::from(t.year()).div_euclid(100), 2, '0'),
        'd' => Field::Num(t.day().into(), 2, '0'),
        'D' | 'x' => Field::Text(strftime("%m/%d/%y", t)),
        'e' => Field::Num(t.day().into(), 2, ' '),
        'F' => Field::Text(strftime("%Y-%m-%d", t)),
        'f' if plain => Field::Text(format!("{:06}", t.subsec_nanosecond() / 1000)),
        'G' => Field::Num(t.iso_week_date().year().into(), 1, '0'),
        'g' => Field::Num(i64::from(t.iso_week_date().year()).rem_euclid(100), 2, '0'),
        'H' => Field::Num(t.hour().into(), 2, '0'),
        'I' => Field::Num(hour12.into(), 2, '0'),
        'j' => Field::Num(yday0 + 1, 3, '0'),
        'k' => Field::Num(t.hour().into(), 2, ' '),
        'l' => Field::Num(hour12.into(), 2, ' '),
        'm' => Field::Num(t.month().into(), 2, '0'),
        'M' => Field::Num(t.minute().into(), 2, '0'),
        'n' => Field::Text("\n".into()),
        'p' => Field::Text(if t.hour() < 12 { "AM" } else { "PM" }.into()),
        'P' => Field::Text(if t.hour() < 12 { "am" } else { "pm" }.into()),
        'r' => Field::Text(strftime("%I:%M:%S %p", t)),
        'R' => Field::Text(strftime("%H:%M", t)),
        's' => Field::Num(epoch_seconds(t), 1, '0'),
        'S' => Field::Num(t.second().into(), 2, '0'),
        't' => Field::Text("\t".into()),
        'T' | 'X' => Field::Text(strftime("%H:%M:%S", t)),
        'u' => Field::Num(if wday == 0 { 7 } else { wday as i64 }, 1, '0'),
        'U' => Field::Num((yday0 + 7 - wday as i64) / 7, 2, '0'),
        'V' => Field::Num(t.iso_week_date().week().into(), 2, '0'),
        'w' => Field::Num(wday as i64, 1, '0'),
        'W' => Field::Num((yday0 + 7 - ((wday as i64 + 6) % 7)) / 7, 2, '0'),
        'y' => Field::Num(i64::from(t.year()).rem_euclid(100), 2, '0'),
        'Y' => Field::Num(t.year().into(), 1, '0'),
        // Python replaces these itself for a naive datetime: no zone, so empty.
        'z' | 'Z' if plain => Field::Text(String::new()),
        '%' => Field::Text("%".into()),
        _ => {
            out.push_str(&spec[..end]);
            return end;
        }
    };

    let text = match field {
        Field::Num(n, default_width, default_pad) => {
            let (w, pad) = match flag {
                Some(b'-') => (width.unwrap_or(1), ' '),
                Some(b'_') => (width.unwrap_or(default_width), ' '),
                Some(b'0') => (width.unwrap_or(default_width), '0'),
                _ => (width.unwrap_or(default_width), default_pad),
            };
            let digits = n.unsigned_abs().to_string();
            let sign = if n < 0 { "-" } else { "" };
            let fill = w.saturating_sub(digits.len() + sign.len());
            let mut s = String::new();
            if pad == '0' {
                s.push_str(sign);
                s.extend(std::iter::repeat_n('0', fill));
            } else {
                s.extend(std::iter::repeat_n(' ', fill));
                s.push_str(sign);
            }
            s.push_str(&digits);
            s
        }
        Field::Text(text) => {
            let text = match flag {
                Some(b'^') => text.to_uppercase(),
                Some(b'#') if conv == 'p' => text.to_lowercase(),
                Some(b'#') if matches!(conv, 'a' | 'A' | 'b' | 'B' | 'h') => text.to_uppercase(),
                _ => text,
            };
            let fill = width.unwrap_or(0).saturating_sub(text.chars().count());
            let pad = if flag == Some(b'0') { '0' } else { ' ' };
            let mut s: String = std::iter::repeat_n(pad, fill).collect();
            s.push_str(&text);
            s
        }
    };
    out.push_str(&text);
    end
}

/// `%s`: seconds since the epoch, reading the naive time as local time like `mktime`.
pub(super) fn epoch_seconds(t: &DateTime) -> i64 {
    t.to_zoned(jiff::tz::TimeZone::system()).map(|z| z.timestamp().as_second()).unwrap_or(0)
}
