//! The argument splitter (inline commands on the Sentinel port, `sentinel.conf` import) reads
//! lines exactly as a real redis-server does: every line is sent inline to redis-server as
//! the arguments of an RPUSH, and the list it stored is compared with our split.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use raft_sentinel::model::args::split;
use support::RedisProcess;

/// What redis-server made of `RPUSH k <line>` sent inline: the pushed arguments, or the
/// error line it answered.
fn redis_split(addr: &str, line: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut con = redis::Client::open(format!("redis://{addr}"))
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("DEL").arg("k").query(&mut con).unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = b"RPUSH k ".to_vec();
    req.extend_from_slice(line);
    req.extend_from_slice(b"\r\n");
    s.write_all(&req).unwrap();
    let mut reply = Vec::new();
    BufReader::new(&s)
        .read_until(b'\n', &mut reply)
        .unwrap_or_else(|e| panic!("no reply to {:?}: {e}", String::from_utf8_lossy(line)));
    let reply = String::from_utf8_lossy(&reply);
    if reply.starts_with('-') {
        return Err(reply.trim_end().to_string());
    }
    Ok(redis::cmd("LRANGE")
        .arg("k")
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap())
}

#[test]
fn lines_split_as_redis_server_splits_them() {
    let r = RedisProcess::start(&[]);
    let addr = r.addr();
    // No NUL bytes: redis-server looks for an inline request's newline with strchr, so a
    // NUL hides it and the request never completes (the unit tests cover NUL as the end of
    // a sentinel.conf line).
    let cases: &[&[u8]] = &[
        b"a  b\t'c d' \"e\\x41\\n\"",
        b"'it\\'s' x",
        b"\"\\b\\a\\q\\\\\\\"\"",
        b"\"\\x4\" \"\\xff\\x00\" \"\\xZZ\"",
        b"'a\\nb' 'c\\\\d'",
        b"ab\"c d\" e'f g'",
        b"\"\" ''",
        b"caf\xc3\xa9 \xff\xfe",
        b"x \x0bv\x0bw",
        b"\"a\"\x0cb",
        b"\"open",
        b"'open",
        b"\"a\"b",
        b"'a'b",
        b"\"trailing\\",
    ];
    for line in cases {
        let ours = split(line);
        let theirs = redis_split(&addr, line);
        let shown = String::from_utf8_lossy(line);
        match (ours, theirs) {
            // redis-server's list holds the arguments after `RPUSH k`.
            (Ok(args), Ok(pushed)) => assert_eq!(args, pushed, "{shown:?}"),
            (Err(_), Err(e)) => assert!(e.contains("unbalanced quotes"), "{shown:?}: {e}"),
            (ours, theirs) => panic!("{shown:?}: ours {ours:?}, redis-server {theirs:?}"),
        }
    }
}
