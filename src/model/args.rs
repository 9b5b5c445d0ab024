//! Redis's argument syntax (`sdssplitargs`), used by inline commands on the Sentinel port
//! and by `sentinel.conf` lines on import: one splitter, so both read a line the way Redis
//! does.
//!
//! The rules, byte for byte:
//! - arguments are separated by spaces (`isspace`: space, `\t \n \v \f \r`);
//! - the input ends at the first NUL byte (Redis splits a C string);
//! - `"..."` takes `\xHH` (two hex digits) and `\n \r \t \b \a` escapes; any other escaped
//!   byte stands for itself;
//! - `'...'` takes only `\'`;
//! - a quote may open in the middle of an argument (`a"b c"` is `ab c`), but a closing quote
//!   must be followed by a space or the end of the line;
//! - an unquoted argument ends at a space, tab, CR or LF only.

/// A quoted argument that is not closed, or a closing quote followed by something else
/// than a space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unbalanced quotes")]
pub struct UnbalancedQuotes;

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

/// A closing quote at `i` must end the argument: a space or the end of the line follows.
fn closing_quote_ends(line: &[u8], i: usize) -> Result<(), UnbalancedQuotes> {
    match line.get(i + 1) {
        Some(&c) if !is_space(c) => Err(UnbalancedQuotes),
        _ => Ok(()),
    }
}

/// Splits `line` into arguments (see the module docs).
pub fn split(line: &[u8]) -> Result<Vec<Vec<u8>>, UnbalancedQuotes> {
    let line = match line.iter().position(|&c| c == 0) {
        Some(nul) => &line[..nul],
        None => line,
    };
    let n = line.len();
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < n && is_space(line[i]) {
            i += 1;
        }
        if i >= n {
            return Ok(args);
        }
        let mut cur = Vec::new();
        let (mut in_dq, mut in_sq) = (false, false);
        loop {
            if in_dq {
                let c = *line.get(i).ok_or(UnbalancedQuotes)?;
                if c == b'\\'
                    && i + 3 < n
                    && line[i + 1] == b'x'
                    && line[i + 2].is_ascii_hexdigit()
                    && line[i + 3].is_ascii_hexdigit()
                {
                    cur.push(hex(line[i + 2]) * 16 + hex(line[i + 3]));
                    i += 3;
                } else if c == b'\\' && i + 1 < n {
                    i += 1;
                    cur.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    closing_quote_ends(line, i)?;
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else if in_sq {
                let c = *line.get(i).ok_or(UnbalancedQuotes)?;
                if c == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    i += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    closing_quote_ends(line, i)?;
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else {
                let Some(&c) = line.get(i) else { break };
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' => {
                        i += 1;
                        break;
                    }
                    b'"' => in_dq = true,
                    b'\'' => in_sq = true,
                    c => cur.push(c),
                }
            }
            i += 1;
        }
        args.push(cur);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(line: &[u8]) -> Result<Vec<Vec<u8>>, UnbalancedQuotes> {
        split(line)
    }

    fn v(args: &[&[u8]]) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.to_vec()).collect()
    }

    #[test]
    fn redis_rules() {
        // Each case is what Redis's sdssplitargs makes of the line.
        let ok: &[(&[u8], &[&[u8]])] = &[
            (b"", &[]),
            (b"  \t ", &[]),
            (b"PING", &[b"PING"]),
            (b"a  b\t'c d' \"e\\x41\\n\"", &[b"a", b"b", b"c d", b"eA\n"]),
            (b"set k 'it\\'s'", &[b"set", b"k", b"it's"]),
            (b"\"\\b\\a\\q\\\\\\\"\"", &[b"\x08\x07q\\\""]),
            // \x needs two hex digits; otherwise the x stands for itself.
            (b"\"\\x4\"", &[b"x4"]),
            (b"\"\\xff\\x00\"", &[b"\xff\x00"]),
            // Single quotes know only \'.
            (b"'a\\nb'", &[b"a\\nb"]),
            // A quote may open mid-argument.
            (b"ab\"c d\"", &[b"abc d"]),
            (b"\"\"", &[b""]),
            // Bytes above 127 pass through as they are.
            (b"caf\xc3\xa9 \xff", &[b"caf\xc3\xa9", b"\xff"]),
            // The line ends at NUL, as a C string does.
            (b"a b\0c d", &[b"a", b"b"]),
            // \v and \f separate only between arguments.
            (b"\x0ba\x0bb", &[b"a\x0bb"]),
            (b"\"a\"\x0cb", &[b"a", b"b"]),
        ];
        for (line, want) in ok {
            assert_eq!(s(line), Ok(v(want)), "{:?}", String::from_utf8_lossy(line));
        }
        for bad in [
            &b"\"open"[..],
            b"'open",
            b"\"a\"b",
            b"'a'b",
            b"\"ends with backslash\\",
            b"\"a\0\"",
        ] {
            assert_eq!(
                s(bad),
                Err(UnbalancedQuotes),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
