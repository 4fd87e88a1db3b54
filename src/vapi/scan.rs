//! A lexical walk over JSON that serde will validate anyway.
//!
//! Used to find the message object and its `type` before the one serde pass, to read a few
//! string fields out of a raw part, and (slow path only) to cut an offending field out of a
//! message. Every function here assumes the text is valid JSON or answers `None`; it never
//! decides validity — serde_json does, in the pass that follows.

use std::borrow::Cow;
use std::ops::Range;

fn ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = b.get(i) {
        i += 1;
    }
    i
}

/// The end (exclusive) of the string that opens at `i`.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        j = quote_or_backslash(b, j)?;
        if b[j] == b'"' {
            return Some(j + 1);
        }
        // An escape: the next byte cannot end the string (`\u` digits are plain bytes).
        j += 2;
    }
}

/// The first `"` or `\` at or after `j`.
fn quote_or_backslash(b: &[u8], mut j: usize) -> Option<usize> {
    // Most strings of a message are short: eight bytes at a time (as serde_json does) beats
    // memchr's setup there; long ones (transcripts) go to memchr.
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    if j >= b.len() {
        return None;
    }
    let stop = b.len().min(j + 64);
    while j + 8 <= stop {
        let word = u64::from_le_bytes(b[j..j + 8].try_into().expect("eight bytes"));
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        // A zero byte in either: the lowest flagged byte is the first match.
        let found =
            (quote.wrapping_sub(ONES) & !quote | backslash.wrapping_sub(ONES) & !backslash) & HIGHS;
        if found != 0 {
            return Some(j + (found.trailing_zeros() / 8) as usize);
        }
        j += 8;
    }
    if let Some(k) = b
        .get(j..stop)?
        .iter()
        .position(|&c| c == b'"' || c == b'\\')
    {
        return Some(j + k);
    }
    memchr::memchr2(b'"', b'\\', &b[stop..]).map(|k| stop + k)
}

/// What a byte means to [`value_end`] inside a container: 1 a string, 2 an opening bracket,
/// 3 a closing bracket, 0 nothing.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'"' as usize] = 1;
    t[b'{' as usize] = 2;
    t[b'[' as usize] = 2;
    t[b'}' as usize] = 3;
    t[b']' as usize] = 3;
    t
};

/// The end (exclusive) of the value that starts at `i`.
pub(crate) fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            // Brackets of either kind counted alike: in valid JSON they pair up.
            let mut depth = 0usize;
            let mut j = i;
            loop {
                while CLASS[usize::from(*b.get(j)?)] == 0 {
                    j += 1;
                }
                match CLASS[usize::from(b[j])] {
                    1 => j = string_end(b, j)?,
                    2 => {
                        depth += 1;
                        j += 1;
                    }
                    _ => {
                        depth -= 1;
                        j += 1;
                        if depth == 0 {
                            return Some(j);
                        }
                    }
                }
            }
        }
        _ => {
            let len = b[i..]
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'))
                .unwrap_or(b.len() - i);
            (len > 0).then_some(i + len)
        }
    }
}

/// One member of an object: the key's text between its quotes (still escaped), where the
/// member starts and where its value starts.
pub(crate) struct Member<'a> {
    b: &'a [u8],
    pub(crate) key: &'a [u8],
    pub(crate) key_start: usize,
    pub(crate) value_start: usize,
}

impl<'a> Member<'a> {
    /// The span of the value (walks it: the caller that only wants to stop at this member
    /// does not pay for a large value).
    pub(crate) fn value(&self) -> Option<Range<usize>> {
        Some(self.value_start..value_end(self.b, self.value_start)?)
    }

    /// The value if it is a string, unescaped only if it has escapes.
    pub(crate) fn string(&self) -> Option<Cow<'a, str>> {
        if self.b.get(self.value_start) != Some(&b'"') {
            return None;
        }
        string_at(self.b, self.value()?)
    }

    /// Whether the key is `name` (unescaping only keys that contain an escape).
    pub(crate) fn is(&self, name: &str) -> bool {
        if !self.key.contains(&b'\\') {
            return self.key == name.as_bytes();
        }
        decode_key(self.key).is_some_and(|k| k == name)
    }
}

fn decode_key(inner: &[u8]) -> Option<String> {
    let mut quoted = Vec::with_capacity(inner.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(inner);
    quoted.push(b'"');
    serde_json::from_slice(&quoted).ok()
}

/// Calls `f` with each member of the object that opens at `i`, until `f` says stop.
/// Returns the end of the object, or `None` if the text is not an object (or `f` stopped).
pub(crate) fn members<'a>(
    b: &'a [u8],
    i: usize,
    mut f: impl FnMut(&Member<'a>) -> bool,
) -> Option<usize> {
    if b.get(i) != Some(&b'{') {
        return None;
    }
    let mut j = ws(b, i + 1);
    if b.get(j) == Some(&b'}') {
        return Some(j + 1);
    }
    loop {
        if b.get(j) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(b, j)?;
        let colon = ws(b, key_end);
        if b.get(colon) != Some(&b':') {
            return None;
        }
        let start = ws(b, colon + 1);
        let member = Member {
            b,
            key: &b[j + 1..key_end - 1],
            key_start: j,
            value_start: start,
        };
        if !f(&member) {
            return None;
        }
        j = ws(b, value_end(b, start)?);
        match b.get(j) {
            Some(b',') => j = ws(b, j + 1),
            Some(b'}') => return Some(j + 1),
            _ => return None,
        }
    }
}

/// Calls `f` with the span of each element of the array that opens at `i`.
fn elements(b: &[u8], i: usize, mut f: impl FnMut(Range<usize>)) -> Option<usize> {
    if b.get(i) != Some(&b'[') {
        return None;
    }
    let mut j = ws(b, i + 1);
    if b.get(j) == Some(&b']') {
        return Some(j + 1);
    }
    loop {
        let end = value_end(b, j)?;
        f(j..end);
        j = ws(b, end);
        match b.get(j) {
            Some(b',') => j = ws(b, j + 1),
            Some(b']') => return Some(j + 1),
            _ => return None,
        }
    }
}

/// The string at `span`, unescaped only if it has escapes; `None` if the value is no string.
pub(crate) fn string_at(b: &[u8], span: Range<usize>) -> Option<Cow<'_, str>> {
    let text = b.get(span)?;
    let inner = text.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if inner.contains(&b'\\') {
        serde_json::from_slice::<String>(text).ok().map(Cow::Owned)
    } else {
        std::str::from_utf8(inner).ok().map(Cow::Borrowed)
    }
}

/// The first byte of the value at `i` (after whitespace), and its position.
pub(crate) fn first_byte(b: &[u8], i: usize) -> Option<(u8, usize)> {
    let i = ws(b, i);
    b.get(i).map(|c| (*c, i))
}

/// The string members `keys` of the object `json` (valid JSON): `None` for a key that is
/// absent, not a string, or present more than once (two readers must never disagree).
pub(crate) fn string_fields<const N: usize>(json: &str, keys: [&str; N]) -> [Option<String>; N] {
    let b = json.as_bytes();
    let mut out: [Option<String>; N] = std::array::from_fn(|_| None);
    let mut seen = [0u8; N];
    let Some((_, start)) = first_byte(b, 0) else {
        return out;
    };
    members(b, start, |m| {
        if let Some(k) = keys.iter().position(|k| m.is(k)) {
            seen[k] = seen[k].saturating_add(1);
            out[k] = m.string().map(Cow::into_owned);
        }
        true
    });
    for (slot, seen) in out.iter_mut().zip(seen) {
        if seen > 1 {
            *slot = None;
        }
    }
    out
}

/// A step of a path into a JSON value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
}

/// The span of the value at `path` in the value that starts at `i`.
fn find(b: &[u8], i: usize, path: &[Step]) -> Option<Range<usize>> {
    let (_, i) = first_byte(b, i)?;
    let Some((step, rest)) = path.split_first() else {
        return Some(i..value_end(b, i)?);
    };
    let mut found = None;
    match step {
        Step::Key(key) => {
            members(b, i, |m| {
                if m.is(key) {
                    found = Some(m.value_start);
                }
                found.is_none()
            });
        }
        Step::Index(index) => {
            let mut n = 0;
            elements(b, i, |span| {
                if n == *index {
                    found = Some(span.start);
                }
                n += 1;
            });
        }
    }
    find(b, found?, rest)
}

/// `json` without the member or element at `path` (the first one, for a repeated key), or
/// without every member named `all_of` in the object at `path`. `None` if there is no such
/// member or element, or `path` is empty and `all_of` is not given.
pub(crate) fn remove(json: &str, path: &[Step], all_of: Option<&str>) -> Option<String> {
    match all_of {
        Some(name) => {
            let step = Step::Key(name.to_owned());
            let mut out = remove_one(json, path, &step)?;
            while let Some(next) = remove_one(&out, path, &step) {
                out = next;
            }
            Some(out)
        }
        None => {
            let (last, parent) = path.split_last()?;
            remove_one(json, parent, last)
        }
    }
}

fn remove_one(json: &str, container: &[Step], step: &Step) -> Option<String> {
    let b = json.as_bytes();
    let span = find(b, 0, container)?;
    // Each member or element: (start, end of value).
    let mut items: Vec<(usize, usize)> = Vec::new();
    let mut target = None;
    match step {
        Step::Key(key) => {
            members(b, span.start, |m| {
                if target.is_none() && m.is(key) {
                    target = Some(items.len());
                }
                match m.value() {
                    Some(value) => items.push((m.key_start, value.end)),
                    None => return false,
                }
                true
            })?;
        }
        Step::Index(index) => {
            elements(b, span.start, |s| items.push((s.start, s.end)))?;
            target = (*index < items.len()).then_some(*index);
        }
    }
    let k = target?;
    // Take the comma on one side with the item.
    let cut = if k + 1 < items.len() {
        items[k].0..items[k + 1].0
    } else if k > 0 {
        items[k - 1].1..items[k].1
    } else {
        items[k].0..items[k].1
    };
    let mut out = json.to_owned();
    out.replace_range(cut, "");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Step {
        Step::Key(k.to_owned())
    }

    #[test]
    fn value_end_skips_strings_with_brackets_and_escapes() {
        let b = br#"{"a":"}\"]","b":[1,{"c":"\\"}]} tail"#;
        assert_eq!(value_end(b, 0), Some(b.len() - 5));
        assert_eq!(value_end(b"123,", 0), Some(3));
        assert_eq!(value_end(b"\"open", 0), None);
        // Escapes on both sides of the short-string cut-over, and long strings.
        for (pad, tail) in [(30, 40), (31, 40), (32, 0), (33, 100), (0, 200)] {
            let s = format!(
                "[\"{}\\\"{}\\\\\",\"]\"] x",
                "a".repeat(pad),
                "b".repeat(tail)
            );
            assert_eq!(value_end(s.as_bytes(), 0), Some(s.len() - 2), "{s}");
        }
        assert_eq!(
            value_end(format!("\"{}", "a".repeat(100)).as_bytes(), 0),
            None
        );
        for n in 0..80 {
            let open = format!("\"{}", "a".repeat(n));
            assert_eq!(value_end(open.as_bytes(), 0), None);
            assert_eq!(value_end(format!("{open}\\").as_bytes(), 0), None);
            let closed = format!("{open}\\\"\"");
            assert_eq!(value_end(closed.as_bytes(), 0), Some(closed.len()));
        }
    }

    #[test]
    fn string_fields_reads_first_level_only_and_drops_duplicates() {
        let json = r#"{"x":{"id":"inner"},"id":"a\u0062","name":7,"orgId":"o","orgId":"p"}"#;
        let [id, name, org, missing] = string_fields(json, ["id", "name", "orgId", "number"]);
        assert_eq!(id.as_deref(), Some("ab"));
        assert_eq!(name, None);
        assert_eq!(org, None, "duplicate");
        assert_eq!(missing, None);
    }

    #[test]
    fn escaped_keys_match() {
        let json = r#"{"typ\u0065":"hang"}"#;
        let [t] = string_fields(json, ["type"]);
        assert_eq!(t.as_deref(), Some("hang"));
    }

    #[test]
    fn remove_cuts_members_and_elements() {
        let j = r#"{"a":1, "b":{"c":2,"d":3},"e":[4,5,6]}"#;
        assert_eq!(
            remove(j, &[key("a")], None).unwrap(),
            r#"{"b":{"c":2,"d":3},"e":[4,5,6]}"#
        );
        assert_eq!(
            remove(j, &[key("b"), key("d")], None).unwrap(),
            r#"{"a":1, "b":{"c":2},"e":[4,5,6]}"#
        );
        assert_eq!(
            remove(j, &[key("e"), Step::Index(1)], None).unwrap(),
            r#"{"a":1, "b":{"c":2,"d":3},"e":[4,6]}"#
        );
        assert_eq!(
            remove(j, &[key("e"), Step::Index(2)], None).unwrap(),
            r#"{"a":1, "b":{"c":2,"d":3},"e":[4,5]}"#
        );
        assert_eq!(remove(j, &[key("zz")], None), None);
        assert_eq!(remove(j, &[], None), None);
        let dup = r#"{"k":1,"x":0,"k":2,"k":3}"#;
        assert_eq!(remove(dup, &[], Some("k")).unwrap(), r#"{"x":0}"#);
        let dup = r#"{"k":1,"k":2}"#;
        assert_eq!(remove(dup, &[], Some("k")).unwrap(), r#"{}"#);
        let only = r#"{"c":{"k":1}}"#;
        assert_eq!(
            remove(only, &[key("c"), key("k")], None).unwrap(),
            r#"{"c":{}}"#
        );
    }
}
