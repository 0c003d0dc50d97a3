//! `expect` of a sql check: `">= 1000"`, `"= 0"` (also `>`, `<`, `<=`, `!=`), `"true"` or
//! `"false"`, or a regular expression between slashes (`"/^ok$/"`). A value that fits none
//! of these is a policy error, located when the policy is loaded.

use std::fmt;

#[derive(Debug, Clone)]
pub enum Expect {
    Compare(Op, Number),
    Bool(bool),
    Matches(regex::Regex),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
    Ne,
}

/// Integers compare exactly; anything else as a float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(i128),
    Float(f64),
}

impl Number {
    fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        text.parse::<i128>().map(Number::Int).ok().or_else(|| {
            text.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Number::Float)
        })
    }

    fn compare(self, other: Self) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Int(i) => write!(f, "{i}"),
            Number::Float(x) => write!(f, "{x}"),
        }
    }
}

impl Expect {
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let forms =
            "expected `>= N`, `> N`, `<= N`, `< N`, `= N`, `!= N`, `true`, `false` or `/regex/`";
        if trimmed.eq_ignore_ascii_case("true") || trimmed.eq_ignore_ascii_case("false") {
            return Ok(Expect::Bool(trimmed.eq_ignore_ascii_case("true")));
        }
        if let Some(pattern) = trimmed
            .strip_prefix('/')
            .and_then(|rest| rest.strip_suffix('/'))
        {
            return regex::Regex::new(pattern)
                .map(Expect::Matches)
                .map_err(|e| format!("expect `{text}`: {e}"));
        }
        for (token, op) in [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("!=", Op::Ne),
            ("==", Op::Eq),
            (">", Op::Gt),
            ("<", Op::Lt),
            ("=", Op::Eq),
        ] {
            if let Some(rest) = trimmed.strip_prefix(token) {
                return Number::parse(rest)
                    .map(|n| Expect::Compare(op, n))
                    .ok_or_else(|| format!("expect `{text}`: `{}` is not a number", rest.trim()));
            }
        }
        Err(format!("expect `{text}`: {forms}"))
    }

    /// Whether the query's value meets the expectation; the error says why not.
    pub fn check(&self, value: Option<&str>) -> Result<(), String> {
        let shown = value.unwrap_or("NULL");
        match self {
            Expect::Compare(op, wanted) => {
                let Some(actual) = value.and_then(Number::parse) else {
                    return Err(format!("got {shown}, not a number"));
                };
                let ordering = actual
                    .compare(*wanted)
                    .ok_or_else(|| format!("got {shown}, which cannot be compared"))?;
                use std::cmp::Ordering::*;
                let holds = match op {
                    Op::Ge => ordering != Less,
                    Op::Gt => ordering == Greater,
                    Op::Le => ordering != Greater,
                    Op::Lt => ordering == Less,
                    Op::Eq => ordering == Equal,
                    Op::Ne => ordering != Equal,
                };
                if holds {
                    Ok(())
                } else {
                    Err(format!("got {shown}, expected {self}"))
                }
            }
            Expect::Bool(wanted) => {
                let actual = value.map(|v| v.trim().to_ascii_lowercase());
                let actual = match actual.as_deref() {
                    Some("t" | "true" | "1" | "yes" | "on") => Some(true),
                    Some("f" | "false" | "0" | "no" | "off") => Some(false),
                    _ => None,
                };
                match actual {
                    Some(a) if a == *wanted => Ok(()),
                    _ => Err(format!("got {shown}, expected {wanted}")),
                }
            }
            Expect::Matches(re) => match value {
                Some(v) if re.is_match(v) => Ok(()),
                _ => Err(format!(
                    "got {shown}, expected a match for /{}/",
                    re.as_str()
                )),
            },
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Compare(op, n) => {
                let op = match op {
                    Op::Ge => ">=",
                    Op::Gt => ">",
                    Op::Le => "<=",
                    Op::Lt => "<",
                    Op::Eq => "=",
                    Op::Ne => "!=",
                };
                write!(f, "{op} {n}")
            }
            Expect::Bool(b) => write!(f, "{b}"),
            Expect::Matches(re) => write!(f, "/{}/", re.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_hold_or_say_why_not() {
        // (expect, value, holds)
        let cases: &[(&str, Option<&str>, bool)] = &[
            (">= 1000", Some("1000"), true),
            (">= 1000", Some("999"), false),
            (">1000", Some("1001"), true),
            ("= 0", Some("0"), true),
            ("= 0", Some("1"), false),
            ("== 2.5", Some("2.50"), true),
            ("!= 0", Some("3"), true),
            ("< 10", Some("9.99"), true),
            ("<= 10", Some("10"), true),
            (
                "= 170141183460469231731687303715884105727",
                Some("170141183460469231731687303715884105727"),
                true,
            ),
            (">= 1", None, false),
            (">= 1", Some("many"), false),
            ("true", Some("t"), true),
            ("true", Some("1"), true),
            ("TRUE", Some("true"), true),
            ("true", Some("f"), false),
            ("false", Some("0"), true),
            ("true", None, false),
            ("/^ok/", Some("ok: 3 rows"), true),
            ("/^ok$/", Some("not ok"), false),
            ("/^ok$/", None, false),
        ];
        for (text, value, holds) in cases {
            let expect = Expect::parse(text).unwrap();
            let result = expect.check(*value);
            assert_eq!(result.is_ok(), *holds, "{text} on {value:?}: {result:?}");
            if let Err(why) = result {
                assert!(why.contains(value.unwrap_or("NULL")), "{why}");
            }
        }
    }

    #[test]
    fn malformed_expectations_are_refused() {
        for (text, says) in [
            (">= lots", "is not a number"),
            ("about 5", "expected `>= N`"),
            ("/(unclosed/", "unclosed"),
            ("", "expected `>= N`"),
        ] {
            let err = Expect::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
