//! A minimal JSON value and writer (RFC 8259): enough for the CLI's `--json` outputs.

use std::fmt::Write;

#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    /// Written with Rust's shortest round-trip formatting; NaN and infinities become `null`.
    Num(f64),
    Int(i64),
    Str(String),
    Arr(Vec<Json>),
    /// Keys keep their insertion order.
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// An object from `(key, value)` pairs.
    pub fn obj<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Json)>) -> Json {
        Json::Obj(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    pub fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }

    /// An f32 written as its shortest decimal form (0.1f32 as `0.1`, not `0.10000000149011612`).
    pub fn f32(x: f32) -> Json {
        Json::Num(x.to_string().parse::<f64>().unwrap_or(f64::NAN))
    }

    pub fn uint(x: usize) -> Json {
        i64::try_from(x).map(Json::Int).unwrap_or(Json::Num(x as f64))
    }

    pub fn uints(xs: &[usize]) -> Json {
        Json::Arr(xs.iter().map(|&x| Json::uint(x)).collect())
    }

    /// Pretty-printed with two-space indents, plus a final newline.
    pub fn pretty(&self) -> String {
        let mut s = String::new();
        self.write(&mut s, 0);
        s.push('\n');
        s
    }

    fn write(&self, out: &mut String, indent: usize) {
        match self {
            Json::Num(x) if x.is_finite() => {
                let _ = write!(out, "{x}");
            }
            Json::Num(_) => out.push_str("null"),
            Json::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Json::Str(s) => escape_into(out, s),
            Json::Arr(items) => {
                // Arrays of scalars stay on one line (shapes, probability rows).
                if items.iter().all(|v| !matches!(v, Json::Arr(_) | Json::Obj(_))) {
                    out.push('[');
                    for (i, v) in items.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        v.write(out, indent);
                    }
                    out.push(']');
                    return;
                }
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    out.push_str(if i > 0 { ",\n" } else { "\n" });
                    pad(out, indent + 1);
                    v.write(out, indent + 1);
                }
                out.push('\n');
                pad(out, indent);
                out.push(']');
            }
            Json::Obj(pairs) => {
                if pairs.is_empty() {
                    out.push_str("{}");
                    return;
                }
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    out.push_str(if i > 0 { ",\n" } else { "\n" });
                    pad(out, indent + 1);
                    escape_into(out, k);
                    out.push_str(": ");
                    v.write(out, indent + 1);
                }
                out.push('\n');
                pad(out, indent);
                out.push('}');
            }
        }
    }
}

fn pad(out: &mut String, indent: usize) {
    for _ in 0..indent {
        out.push_str("  ");
    }
}

/// Writes `s` as a JSON string literal: quotes, backslashes and control characters escaped
/// (U+2028/U+2029 too, so the output is also safe to embed in JavaScript).
pub fn escape_into(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        let mut o = String::new();
        escape_into(&mut o, s);
        o
    }

    #[test]
    fn escapes_strings() {
        assert_eq!(esc("plain"), r#""plain""#);
        assert_eq!(esc("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(esc("l1\nl2\r\t"), r#""l1\nl2\r\t""#);
        assert_eq!(esc("\u{1}\u{1f}\u{7f}"), r#""\u0001\u001f\u007f""#);
        assert_eq!(esc("\u{8}\u{c}"), r#""\b\f""#);
        assert_eq!(esc("é猫\u{2028}"), "\"é猫\\u2028\"");
    }

    #[test]
    fn writes_values() {
        let v = Json::obj([
            ("name", Json::str("r\"20")),
            ("dims", Json::uints(&[1, 3, 32, 32])),
            ("p", Json::f32(0.1)),
            ("nan", Json::Num(f64::NAN)),
            ("rows", Json::Arr(vec![Json::obj([("i", Json::Int(-2))])])),
            ("empty", Json::obj::<String>([])),
        ]);
        let s = v.pretty();
        assert_eq!(
            s,
            "{\n  \"name\": \"r\\\"20\",\n  \"dims\": [1, 3, 32, 32],\n  \"p\": 0.1,\n  \"nan\": null,\n  \
             \"rows\": [\n    {\n      \"i\": -2\n    }\n  ],\n  \"empty\": {}\n}\n"
        );
    }
}
