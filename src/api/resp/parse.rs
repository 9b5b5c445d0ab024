//! A cursor over one request's arguments, as mini-redis's `Parse` is over one array frame.
//! Commands take their arguments in order and call [`Parse::finish`] when done.

use bytes::Bytes;

/// Why an argument could not be taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Fewer arguments than the command needs.
    #[error("missing argument")]
    EndOfStream,
    /// More arguments than the command takes.
    #[error("syntax error")]
    Trailing,
    /// Not an integer Redis would accept.
    #[error("value is not an integer or out of range")]
    NotInteger,
}

/// Cursor over the arguments that follow the command name (and subcommand).
#[derive(Debug)]
pub struct Parse {
    args: std::vec::IntoIter<Bytes>,
}

impl Parse {
    /// A cursor over `args`.
    pub fn new(args: Vec<Bytes>) -> Parse {
        Parse {
            args: args.into_iter(),
        }
    }

    /// Arguments not taken yet.
    pub fn remaining(&self) -> usize {
        self.args.len()
    }

    /// The next argument as raw bytes.
    pub fn next_bytes(&mut self) -> Result<Bytes, ParseError> {
        self.args.next().ok_or(ParseError::EndOfStream)
    }

    /// The next argument as text (invalid UTF-8 is replaced, as names and options are ASCII).
    pub fn next_string(&mut self) -> Result<String, ParseError> {
        self.next_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// The next argument as an integer, parsed as strictly as Redis does.
    pub fn next_int(&mut self) -> Result<i64, ParseError> {
        let b = self.next_bytes()?;
        parse_int(&b).ok_or(ParseError::NotInteger)
    }

    /// Fails if any argument is left.
    pub fn finish(&mut self) -> Result<(), ParseError> {
        if self.args.len() == 0 {
            Ok(())
        } else {
            Err(ParseError::Trailing)
        }
    }
}

/// Redis's `string2ll`: optional `-`, digits only, no leading zeros, fits in i64.
pub fn parse_int(s: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(s).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty()
        || !digits.bytes().all(|c| c.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
        || text == "-0"
    {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_takes_in_order_and_finishes() {
        let mut p = Parse::new(vec![Bytes::from("a"), Bytes::from("12")]);
        assert_eq!(p.remaining(), 2);
        assert_eq!(p.next_string().unwrap(), "a");
        assert_eq!(p.next_int().unwrap(), 12);
        p.finish().unwrap();
        assert_eq!(p.next_bytes(), Err(ParseError::EndOfStream));
    }

    #[test]
    fn integers_are_strict() {
        assert_eq!(parse_int(b"-5"), Some(-5));
        assert_eq!(parse_int(b"0"), Some(0));
        for bad in [
            &b"+1"[..],
            b" 1",
            b"01",
            b"-0",
            b"1.0",
            b"",
            b"-",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_int(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn trailing_arguments_are_an_error() {
        let mut p = Parse::new(vec![Bytes::from("a"), Bytes::from("b")]);
        p.next_bytes().unwrap();
        assert_eq!(p.finish(), Err(ParseError::Trailing));
    }
}
