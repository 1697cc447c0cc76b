//! RESP2, the Redis serialization protocol: commands out, replies in.
//!
//! The parser is a pure function over a byte slice: it checks that a whole
//! reply is buffered, builds it, and says how many bytes it took, or says
//! "not yet" so the caller reads more and tries again. It never panics and
//! bounds what a hostile or broken server can make it allocate.

use bytes::Bytes;

use super::RedisError;

/// A reply, as RESP2 has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A null bulk string (`$-1`) or null array (`*-1`): GET of a missing key.
    Nil,
    Int(i64),
    Simple(String),
    /// The server refused this command; the other commands of a pipeline
    /// are unaffected.
    Error(String),
    Bulk(Bytes),
    Array(Vec<Value>),
}

impl Value {
    /// The bytes of a bulk or simple string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(b) => Some(b),
            Value::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }
}

/// How much a single reply may make the parser accept.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest reply, in bytes on the wire; a bulk string's declared length
    /// counts before its bytes arrive.
    pub max_bytes: usize,
    /// Deepest nesting of arrays. Commands the cache sends nest at most two.
    pub max_depth: usize,
}

/// Nesting deeper than this is not a reply to anything Sluice sends.
pub const MAX_DEPTH: usize = 8;

/// A command and its arguments, sent as a RESP array of bulk strings.
#[derive(Clone)]
pub struct Command {
    args: Vec<Vec<u8>>,
}

impl Command {
    pub fn new(name: impl AsRef<[u8]>) -> Command {
        Command {
            args: vec![name.as_ref().to_vec()],
        }
    }

    pub fn arg(mut self, arg: impl AsRef<[u8]>) -> Command {
        self.args.push(arg.as_ref().to_vec());
        self
    }

    /// The command's name, for logs (never its arguments: keys, values, passwords).
    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.args[0]).into_owned()
    }

    /// Appends the wire form: `*<n>\r\n` then `$<len>\r\n<arg>\r\n` per argument.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("*{}\r\n", self.args.len()).as_bytes());
        for arg in &self.args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Command({}, {} args)", self.name(), self.args.len() - 1)
    }
}

/// Parses one reply from the start of `buf`: `Ok(None)` when it is not all
/// there yet, `Ok(Some((value, bytes used)))` when it is.
pub fn parse_value(buf: &[u8], limits: &Limits) -> Result<Option<(Value, usize)>, RedisError> {
    let mut parser = Parser {
        buf,
        pos: 0,
        limits,
    };
    match parser.value(0)? {
        Some(_) if parser.pos > limits.max_bytes => Err(too_big(parser.pos, limits)),
        Some(value) => Ok(Some((value, parser.pos))),
        None if buf.len() > limits.max_bytes => Err(too_big(buf.len(), limits)),
        None => Ok(None),
    }
}

fn protocol(problem: impl Into<String>) -> RedisError {
    RedisError::Protocol(problem.into())
}

fn too_big(len: usize, limits: &Limits) -> RedisError {
    protocol(format!(
        "reply of at least {len} bytes is over the limit of {} bytes",
        limits.max_bytes
    ))
}

struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: &'a Limits,
}

impl<'a> Parser<'a> {
    fn value(&mut self, depth: usize) -> Result<Option<Value>, RedisError> {
        let Some(&kind) = self.buf.get(self.pos) else {
            return Ok(None);
        };
        if !b"+-:$*".contains(&kind) {
            return Err(protocol(format!("unexpected reply type byte 0x{kind:02x}")));
        }
        self.pos += 1;
        let Some(line) = self.line()? else {
            return Ok(None);
        };
        match kind {
            b'+' => Ok(Some(Value::Simple(text(line)))),
            b'-' => Ok(Some(Value::Error(text(line)))),
            b':' => Ok(Some(Value::Int(integer(line)?))),
            b'$' => self.bulk(line),
            _ => self.array(line, depth),
        }
    }

    /// The rest of the current line, without its CRLF, and moves past it.
    fn line(&mut self) -> Result<Option<&'a [u8]>, RedisError> {
        let rest: &'a [u8] = &self.buf[self.pos..];
        let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        if end > self.limits.max_bytes {
            return Err(too_big(end, self.limits));
        }
        self.pos += end + 2;
        Ok(Some(&rest[..end]))
    }

    fn bulk(&mut self, header: &[u8]) -> Result<Option<Value>, RedisError> {
        let Some(len) = self.length(header)? else {
            return Ok(Some(Value::Nil));
        };
        // Checked before any byte of it is waited for, so a huge declared
        // length fails now instead of filling memory.
        if len > self.limits.max_bytes {
            return Err(too_big(len, self.limits));
        }
        let rest = &self.buf[self.pos..];
        // Saturating: a limit near usize::MAX must not overflow here.
        if rest.len() < len.saturating_add(2) {
            return Ok(None);
        }
        if &rest[len..len + 2] != b"\r\n" {
            return Err(protocol("bulk string not followed by CRLF"));
        }
        self.pos += len + 2;
        Ok(Some(Value::Bulk(Bytes::copy_from_slice(&rest[..len]))))
    }

    fn array(&mut self, header: &[u8], depth: usize) -> Result<Option<Value>, RedisError> {
        let Some(count) = self.length(header)? else {
            return Ok(Some(Value::Nil));
        };
        if depth + 1 > self.limits.max_depth {
            return Err(protocol(format!(
                "arrays nested deeper than {}",
                self.limits.max_depth
            )));
        }
        // Each element takes at least 3 bytes ("+\r\n"), so a count the
        // limit cannot hold is refused before anything is allocated.
        if count > self.limits.max_bytes / 3 {
            return Err(too_big(count.saturating_mul(3), self.limits));
        }
        let mut items = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            match self.value(depth + 1)? {
                Some(item) => items.push(item),
                None => return Ok(None),
            }
        }
        Ok(Some(Value::Array(items)))
    }

    /// A bulk or array length: `None` for the null -1, an error for any other
    /// negative number.
    fn length(&self, header: &[u8]) -> Result<Option<usize>, RedisError> {
        match integer(header)? {
            -1 => Ok(None),
            n => usize::try_from(n)
                .map(Some)
                .map_err(|_| protocol(format!("negative length {n}"))),
        }
    }
}

/// Simple strings and errors are meant to be ASCII; anything else is kept
/// readable rather than refused, since it only ends up in logs.
fn text(line: &[u8]) -> String {
    String::from_utf8_lossy(line).into_owned()
}

/// A decimal integer, strictly: an optional minus and 1 to 19 digits, no
/// spaces or plus sign, no overflow.
fn integer(line: &[u8]) -> Result<i64, RedisError> {
    let bad = || protocol(format!("bad integer {:?}", text(line)));
    let digits = line.strip_prefix(b"-").unwrap_or(line);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    // All ASCII digits (checked above), so this is valid UTF-8.
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_bytes: 1024,
        max_depth: MAX_DEPTH,
    };

    fn parse(bytes: &[u8]) -> Result<Option<(Value, usize)>, RedisError> {
        parse_value(bytes, &LIMITS)
    }

    fn complete(bytes: &[u8]) -> Value {
        let (value, used) = parse(bytes).expect("valid").expect("complete");
        assert_eq!(used, bytes.len(), "{bytes:?}");
        value
    }

    fn malformed(bytes: &[u8]) -> String {
        match parse(bytes) {
            Err(RedisError::Protocol(problem)) => problem,
            other => panic!("{bytes:?}: expected a protocol error, got {other:?}"),
        }
    }

    fn bulk(s: &str) -> Value {
        Value::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn every_reply_type() {
        assert_eq!(complete(b"+OK\r\n"), Value::Simple("OK".into()));
        assert_eq!(complete(b"+\r\n"), Value::Simple(String::new()));
        assert_eq!(
            complete(b"-ERR wrong type\r\n"),
            Value::Error("ERR wrong type".into())
        );
        assert_eq!(complete(b":42\r\n"), Value::Int(42));
        assert_eq!(complete(b":-7\r\n"), Value::Int(-7));
        assert_eq!(complete(b":-9223372036854775808\r\n"), Value::Int(i64::MIN));
        assert_eq!(complete(b"$5\r\nhello\r\n"), bulk("hello"));
        assert_eq!(complete(b"$0\r\n\r\n"), bulk(""));
        assert_eq!(complete(b"$4\r\na\r\nb\r\n"), bulk("a\r\nb"));
        assert_eq!(complete(b"$-1\r\n"), Value::Nil);
        assert_eq!(complete(b"*-1\r\n"), Value::Nil);
        assert_eq!(complete(b"*0\r\n"), Value::Array(vec![]));
        assert_eq!(
            complete(b"*3\r\n$1\r\na\r\n$-1\r\n*1\r\n:1\r\n"),
            Value::Array(vec![
                bulk("a"),
                Value::Nil,
                Value::Array(vec![Value::Int(1)])
            ])
        );
    }

    #[test]
    fn leaves_the_next_reply_in_the_buffer() {
        let (value, used) = parse(b":1\r\n+OK\r\n").unwrap().unwrap();
        assert_eq!((value, used), (Value::Int(1), 4));
    }

    #[test]
    fn every_prefix_of_a_reply_is_incomplete_not_an_error() {
        let whole: &[u8] = b"*4\r\n$5\r\nhello\r\n:-12\r\n*2\r\n+OK\r\n-ERR no\r\n$-1\r\n";
        for cut in 0..whole.len() {
            assert!(
                parse(&whole[..cut])
                    .expect("a prefix is not malformed")
                    .is_none(),
                "cut at {cut}"
            );
        }
        assert_eq!(parse(whole).unwrap().unwrap().1, whole.len());
    }

    #[test]
    fn malformed_integers() {
        for line in [
            &b":\r\n"[..],
            b":-\r\n",
            b":+1\r\n",
            b": 1\r\n",
            b":1 \r\n",
            b":1a\r\n",
            b":--1\r\n",
            b":9223372036854775808\r\n",
            b":99999999999999999999999\r\n",
            b"$\r\n",
            b"$x\r\n",
            b"*1.5\r\n",
        ] {
            assert!(malformed(line).contains("bad integer"), "{line:?}");
        }
    }

    #[test]
    fn negative_lengths_other_than_minus_one() {
        assert!(malformed(b"$-2\r\n").contains("negative length"));
        assert!(malformed(b"*-5\r\n").contains("negative length"));
        assert!(malformed(b"$-9223372036854775808\r\n").contains("negative length"));
    }

    #[test]
    fn lengths_over_the_limit_fail_before_the_bytes_arrive() {
        assert!(malformed(b"$1025\r\n").contains("over the limit"));
        assert!(malformed(b"$9223372036854775807\r\n").contains("over the limit"));
        assert!(malformed(b"*342\r\n").contains("over the limit"));
        assert!(malformed(b"*9223372036854775807\r\n").contains("over the limit"));
        // The limit counts bytes on the wire: 7 + 1015 + 2 fit, one more does not.
        let at_limit = [b"$1015\r\n".as_slice(), &[b'x'; 1015], b"\r\n"].concat();
        assert_eq!(
            complete(&at_limit),
            Value::Bulk(Bytes::from(vec![b'x'; 1015]))
        );
        let over = [b"$1016\r\n".as_slice(), &[b'x'; 1016], b"\r\n"].concat();
        assert!(malformed(&over).contains("over the limit"));
    }

    #[test]
    fn a_line_without_end_fails_once_over_the_limit() {
        let mut long = b"+".to_vec();
        long.extend(std::iter::repeat_n(b'a', 1023));
        assert!(parse(&long).unwrap().is_none());
        long.push(b'a');
        assert!(malformed(&long).contains("over the limit"));
    }

    #[test]
    fn an_incomplete_reply_bigger_than_the_limit_fails() {
        let mut many = b"*300\r\n".to_vec();
        for _ in 0..200 {
            many.extend_from_slice(b":12345\r\n");
        }
        assert!(malformed(&many).contains("over the limit"));
    }

    #[test]
    fn bulk_without_its_crlf() {
        assert!(malformed(b"$3\r\nabcd\r\n").contains("CRLF"));
        assert!(malformed(b"$3\r\nabc\n\r").contains("CRLF"));
    }

    #[test]
    fn unknown_type_bytes() {
        for bytes in [&b"_\r\n"[..], b"%1\r\n", b"hello\r\n", b"\r\n", b"\0"] {
            assert!(malformed(bytes).contains("type byte"), "{bytes:?}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |depth: usize| {
            let mut bytes = b"*1\r\n".repeat(depth);
            bytes.extend_from_slice(b":1\r\n");
            bytes
        };
        assert!(parse(&nested(MAX_DEPTH)).unwrap().is_some());
        assert!(malformed(&nested(MAX_DEPTH + 1)).contains("nested"));
        assert!(malformed(&nested(10_000)).contains("nested"));
    }

    #[test]
    fn non_utf8_simple_strings_are_kept_readable() {
        assert_eq!(
            complete(b"-ERR \xff\r\n"),
            Value::Error("ERR \u{fffd}".into())
        );
    }

    #[test]
    fn commands_encode_as_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        Command::new("SET")
            .arg("k")
            .arg(b"v\r\n".as_slice())
            .arg(String::from("PX"))
            .encode(&mut out);
        assert_eq!(
            out,
            b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n$2\r\nPX\r\n"
        );
    }

    #[test]
    fn command_debug_hides_arguments() {
        let debug = format!("{:?}", Command::new("AUTH").arg("secret"));
        assert!(!debug.contains("secret"), "{debug}");
    }
}
