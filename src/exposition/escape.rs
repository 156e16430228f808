//! Escaping and number formatting shared by both writers.
//!
//! Floats are written like Go's `strconv.FormatFloat(v, 'g', -1, 64)`, which is what
//! `client_golang` produces: the shortest representation that parses back to the same `f64`,
//! fixed notation for decimal exponents in `-4..6` and `d.ddde±XX` otherwise (`0.005`, `1`,
//! `100000`, `1e+06`, `1e-05`). The OpenMetrics flavour appends `.0` when the result has neither
//! a `.` nor an exponent, which is the canonical form the OpenMetrics spec asks for `le` values
//! (`1.0`, `0.005`, `1e+06`). Non-finite values are `NaN`, `+Inf` and `-Inf` in both formats.

/// Writes `s` with `\` and line feed escaped (`\\`, `\n`): HELP text of the text format.
pub(crate) fn write_help_text(out: &mut Vec<u8>, s: &str) {
    write_escaped(out, s.as_bytes(), false);
}

/// Writes `s` with `\`, `"` and line feed escaped: label values of both formats and HELP text
/// of OpenMetrics.
pub(crate) fn write_label_value(out: &mut Vec<u8>, s: &str) {
    write_escaped(out, s.as_bytes(), true);
}

/// Copies `bytes` to `out`, escaping backslash, line feed and (if `quote`) double quote.
///
/// All three are ASCII, so scanning bytes never splits a UTF-8 sequence.
#[inline]
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8], quote: bool) {
    // Most label values are short (a method, a route, a PID): a plain scan of those costs a
    // few instructions per byte, below memchr's set-up for vector search.
    const SHORT: usize = 24;
    if bytes.len() <= SHORT
        && !bytes
            .iter()
            .any(|&b| b == b'\\' || b == b'\n' || (quote && b == b'"'))
    {
        out.extend_from_slice(bytes);
        return;
    }
    // Most texts need no escaping: find the next byte that does (memchr scans a word or a
    // vector at a time) and copy the runs between them whole.
    let find = |s: &[u8]| {
        if quote {
            memchr::memchr3(b'\\', b'\n', b'"', s)
        } else {
            memchr::memchr2(b'\\', b'\n', s)
        }
    };
    let mut start = 0;
    while let Some(off) = find(&bytes[start..]) {
        let i = start + off;
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(match bytes[i] {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            _ => b"\\\"",
        });
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Writes an unsigned integer.
#[inline]
pub(crate) fn write_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Writes `v` in the text format's style (Go `%g`, shortest round-trip): `1`, `0.005`, `1e+06`.
#[inline]
pub(crate) fn write_f64_text(out: &mut Vec<u8>, v: f64) {
    write_f64(out, v, false);
}

/// Writes `v` in OpenMetrics canonical style: as [`write_f64_text`] plus `.0` on numbers that
/// would otherwise look like integers (`1.0`, `0.005`, `1e+06`).
#[inline]
pub(crate) fn write_f64_om(out: &mut Vec<u8>, v: f64) {
    write_f64(out, v, true);
}

/// Go `%g` formatting with an optional `.0` for integral-looking output.
fn write_f64(out: &mut Vec<u8>, v: f64, dot_zero: bool) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
        return;
    }
    // Fast path: integers below 1e6 print as themselves in Go's %g (-0.0 prints as 0 here).
    // The round trip through i64 tests for an integer without a call to `trunc`.
    if v.abs() < 1e6 && (v as i64) as f64 == v {
        out.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
        if dot_zero {
            out.extend_from_slice(b".0");
        }
        return;
    }
    let d = Digits::of(v);
    if d.neg {
        out.push(b'-');
    }
    let digits = &d.buf[..d.nd];
    let exp = d.dp - 1;
    if !(-4..6).contains(&exp) {
        // d.ddde±XX
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push(b'0');
        }
        out.extend_from_slice(itoa::Buffer::new().format(e).as_bytes());
        return;
    }
    // Fixed notation with exactly the significant digits.
    let nd = digits.len() as i32;
    let mut has_point = false;
    if d.dp > 0 {
        let int_len = d.dp.min(nd) as usize;
        out.extend_from_slice(&digits[..int_len]);
        for _ in nd..d.dp {
            out.push(b'0');
        }
        if nd > d.dp {
            out.push(b'.');
            out.extend_from_slice(&digits[int_len..]);
            has_point = true;
        }
    } else {
        out.extend_from_slice(b"0.");
        for _ in d.dp..0 {
            out.push(b'0');
        }
        out.extend_from_slice(digits);
        has_point = true;
    }
    if dot_zero && !has_point {
        out.extend_from_slice(b".0");
    }
}

/// The shortest round-trip decimal digits of a finite, non-zero `f64`: value is
/// `0.d1d2d3... × 10^dp` (Go's `decimalSlice` convention).
struct Digits {
    buf: [u8; 24],
    nd: usize,
    dp: i32,
    neg: bool,
}

impl Digits {
    /// Takes the shortest digits from `ryu` and normalises them (no leading or trailing zeros).
    fn of(v: f64) -> Digits {
        let mut ryu_buf = ryu::Buffer::new();
        let s = ryu_buf.format_finite(v).as_bytes();
        let mut d = Digits {
            buf: [0; 24],
            nd: 0,
            dp: 0,
            neg: false,
        };
        let mut i = 0;
        if s.first() == Some(&b'-') {
            d.neg = true;
            i = 1;
        }
        let mut int_len: i32 = 0;
        let mut seen_point = false;
        while i < s.len() {
            match s[i] {
                b'.' => seen_point = true,
                b'e' | b'E' => break,
                c => {
                    if d.nd == 0 && c == b'0' {
                        // Leading zero: shifts the decimal point left if after it.
                        if seen_point {
                            int_len -= 1;
                        }
                    } else {
                        if d.nd < d.buf.len() {
                            d.buf[d.nd] = c;
                            d.nd += 1;
                        }
                        if !seen_point {
                            int_len += 1;
                        }
                    }
                }
            }
            i += 1;
        }
        let mut exp: i32 = 0;
        if i < s.len() {
            // Exponent part: e[-]digits
            i += 1;
            let mut neg_exp = false;
            if i < s.len() && (s[i] == b'-' || s[i] == b'+') {
                neg_exp = s[i] == b'-';
                i += 1;
            }
            while i < s.len() {
                exp = exp * 10 + i32::from(s[i] - b'0');
                i += 1;
            }
            if neg_exp {
                exp = -exp;
            }
        }
        while d.nd > 1 && d.buf[d.nd - 1] == b'0' {
            d.nd -= 1;
        }
        d.dp = int_len + exp;
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: f64) -> String {
        let mut out = Vec::new();
        write_f64_text(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    fn om(v: f64) -> String {
        let mut out = Vec::new();
        write_f64_om(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_help_and_label_values() {
        let mut out = Vec::new();
        write_help_text(&mut out, "a\\b\n\"c\" ü");
        assert_eq!(out, b"a\\\\b\\n\"c\" \xc3\xbc");
        out.clear();
        write_label_value(&mut out, "a\\b\n\"c\" ü<script>");
        assert_eq!(out, "a\\\\b\\n\\\"c\\\" ü<script>".as_bytes());
        out.clear();
        write_label_value(&mut out, "");
        assert!(out.is_empty());
        write_label_value(&mut out, "\\\\\n\n\"");
        assert_eq!(out, b"\\\\\\\\\\n\\n\\\"");
    }

    #[test]
    fn go_g_formatting() {
        // Expected values are what Go's strconv.FormatFloat(v, 'g', -1, 64) prints.
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-1.0, "-1"),
            (42.0, "42"),
            (999_999.0, "999999"),
            (1e6, "1e+06"),
            (1_234_567.0, "1.234567e+06"),
            (-1_234_567.0, "-1.234567e+06"),
            (123_456.5, "123456.5"),
            (0.5, "0.5"),
            (0.005, "0.005"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e-10, "1e-10"),
            (1e100, "1e+100"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1_700_000_000.0, "1.7e+09"),
            (1_700_000_000.125, "1.700000000125e+09"),
            (9_007_199_254_740_993.0, "9.007199254740992e+15"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for &(v, want) in cases {
            assert_eq!(text(v), want, "text({v:?})");
        }
    }

    #[test]
    fn openmetrics_canonical_numbers() {
        // The examples listed in the OpenMetrics 1.0 spec, section "Canonical Numbers".
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (0.001, "0.001"),
            (0.002, "0.002"),
            (0.01, "0.01"),
            (0.1, "0.1"),
            (0.9, "0.9"),
            (0.95, "0.95"),
            (0.99, "0.99"),
            (0.999, "0.999"),
            (1.0, "1.0"),
            (1.7, "1.7"),
            (10.0, "10.0"),
            (1e-10, "1e-10"),
            (1e-9, "1e-09"),
            (1e-5, "1e-05"),
            (1e-4, "0.0001"),
            (1e5, "100000.0"),
            (1e6, "1e+06"),
            (1e10, "1e+10"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for &(v, want) in cases {
            assert_eq!(om(v), want, "om({v:?})");
        }
    }

    #[test]
    fn formatting_round_trips() {
        // Deterministic xorshift over raw bit patterns plus "human" values.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = if i % 2 == 0 {
                f64::from_bits(x)
            } else {
                (x % 10_000_000) as f64 / 1000.0
            };
            if !v.is_finite() {
                continue;
            }
            let t = text(v);
            assert_eq!(t.parse::<f64>().unwrap(), v, "{t}");
            let o = om(v);
            assert_eq!(o.parse::<f64>().unwrap(), v, "{o}");
            assert!(o.contains('.') || o.contains('e'), "{o}");
            // As short as Rust's own shortest formatting (the last digit may differ on exact
            // ties, where ryu rounds half to even).
            let rust = format!("{v:e}");
            let mant = rust.split('e').next().unwrap().replace(['.', '-'], "");
            let ours = t.split('e').next().unwrap().replace(['.', '-'], "");
            let ours = ours.trim_start_matches('0').trim_end_matches('0');
            let mant = mant.trim_end_matches('0');
            assert_eq!(ours.len(), mant.len(), "{v:e} vs {t}");
            assert_eq!(
                ours[..ours.len() - 1],
                mant[..mant.len() - 1],
                "{v:e} vs {t}"
            );
        }
    }

    #[test]
    fn integers() {
        let mut out = Vec::new();
        write_u64(&mut out, 0);
        out.push(b' ');
        write_u64(&mut out, u64::MAX);
        assert_eq!(out, b"0 18446744073709551615");
    }
}
