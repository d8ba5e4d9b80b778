//! The CA's http-01 request (RFC 8555 §8.3): one GET over a blocking socket, on the blocking
//! thread that also records the outcome.
//!
//! A validation is a single request to a host the CA talks to once. A general HTTP client
//! (connection pool, a resolver task, a task per connection, timers) costs more thread
//! hand-offs and wake-ups than the request itself; here the name is resolved, the connection
//! opened, the request written and the answer read on one thread, each step within the
//! validation's deadline.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use super::problem::Problem;
use crate::core::names::San;

/// The key authorization is ~87 bytes; a larger answer is not one.
pub const MAX_BODY: usize = 8 * 1024;
/// The status line and headers of an answer.
const MAX_HEAD: usize = 16 * 1024;
/// Headers an answer may have.
const MAX_HEADERS: usize = 64;

fn problem(kind: &str, detail: String) -> Problem {
    Problem::new(kind, StatusCode::BAD_REQUEST, detail)
}

/// GET http://NAME:PORT/.well-known/acme-challenge/TOKEN; the body (trailing white space
/// trimmed) must be the key authorization. Redirects are not followed: the answer must come
/// from the name itself. Fails with `connection` once `deadline` has passed.
pub fn check(
    name: &str,
    port: u16,
    token: &str,
    key_auth: &str,
    deadline: Instant,
) -> Result<(), Problem> {
    let ip = match San::parse(name) {
        Ok(San::Ip(ip)) => Some(ip),
        _ => None,
    };
    let host = match ip {
        Some(IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => name.to_string(),
    };
    let authority = if port == 80 {
        host.clone()
    } else {
        format!("{host}:{port}")
    };
    let url = format!("http://{host}:{port}/.well-known/acme-challenge/{token}");
    let failed = |e: std::io::Error| {
        let kind = e.kind();
        if matches!(
            kind,
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ) {
            problem(
                "connection",
                format!("GET {url}: no answer within the validation's time"),
            )
        } else {
            problem("connection", format!("GET {url}: {e}"))
        }
    };
    let addrs: Vec<SocketAddr> = match ip {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => (name, port)
            .to_socket_addrs()
            .map_err(|e| problem("dns", format!("resolving {name:?}: {e}")))?
            .collect(),
    };
    let mut stream = connect(&addrs, deadline).map_err(failed)?;
    let request = format!(
        "GET /.well-known/acme-challenge/{token} HTTP/1.1\r\nHost: {authority}\r\n\
         User-Agent: certdock-acme-validator\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .set_write_timeout(Some(left(deadline).map_err(failed)?))
        .map_err(failed)?;
    stream.write_all(request.as_bytes()).map_err(failed)?;
    let answer = read_answer(&mut stream, deadline).map_err(|e| match e {
        Answer::Io(e) => failed(e),
        Answer::Bad(why) => problem("incorrectResponse", format!("GET {url}: {why}")),
    })?;
    if answer.status != 200 {
        return Err(problem(
            "incorrectResponse",
            format!(
                "GET {url} answered {} (redirects are not followed)",
                answer.status
            ),
        ));
    }
    let got = String::from_utf8_lossy(&answer.body);
    if got.trim_end() != key_auth {
        return Err(problem(
            "incorrectResponse",
            format!(
                "GET {url}: the body is not the key authorization (got {:?})",
                got.chars().take(100).collect::<String>()
            ),
        ));
    }
    Ok(())
}

/// Time left before `deadline`; a timeout error once it has passed.
fn left(deadline: Instant) -> std::io::Result<Duration> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        Err(std::io::ErrorKind::TimedOut.into())
    } else {
        Ok(d)
    }
}

/// The first address (in the resolver's order) that accepts; each gets an equal share of the
/// time left, so one that never answers does not use up another's.
fn connect(addrs: &[SocketAddr], deadline: Instant) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no address");
    for (i, addr) in addrs.iter().enumerate() {
        let share = left(deadline)? / u32::try_from(addrs.len() - i).unwrap_or(u32::MAX);
        match TcpStream::connect_timeout(addr, share.max(Duration::from_millis(1))) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

struct Response {
    status: u16,
    body: Vec<u8>,
}

enum Answer {
    Io(std::io::Error),
    Bad(String),
}

impl From<std::io::Error> for Answer {
    fn from(e: std::io::Error) -> Self {
        Answer::Io(e)
    }
}

/// Reads `stream` until the answer is whole: a body of Content-Length bytes, chunked, or
/// everything until the peer closes (the request said `Connection: close`).
fn read_answer(stream: &mut TcpStream, deadline: Instant) -> Result<Response, Answer> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let mut eof = false;
    let mut fill = |buf: &mut Vec<u8>, eof: &mut bool| -> Result<(), Answer> {
        stream.set_read_timeout(Some(left(deadline)?))?;
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            *eof = true;
        }
        buf.extend_from_slice(&chunk[..n]);
        Ok(())
    };
    // The head.
    let (status, head_len, length, chunked) = loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let mut length = None;
                let mut chunked = false;
                for h in resp.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        let v = std::str::from_utf8(h.value).ok();
                        length =
                            Some(v.and_then(|v| v.trim().parse::<usize>().ok()).ok_or_else(
                                || Answer::Bad("an unreadable Content-Length".into()),
                            )?);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = String::from_utf8_lossy(h.value)
                            .to_ascii_lowercase()
                            .contains("chunked");
                    }
                }
                break (resp.code.unwrap_or(0), n, length, chunked);
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD && !eof => {
                fill(&mut buf, &mut eof)?
            }
            Ok(httparse::Status::Partial) if eof => {
                return Err(Answer::Bad(
                    "the connection closed before the answer".into(),
                ));
            }
            Ok(httparse::Status::Partial) => {
                return Err(Answer::Bad(format!(
                    "the answer's headers are larger than {MAX_HEAD} bytes"
                )));
            }
            Err(e) => return Err(Answer::Bad(format!("not an HTTP answer: {e}"))),
        }
    };
    if status != 200 {
        return Ok(Response {
            status,
            body: Vec::new(),
        });
    }
    buf.drain(..head_len);
    let too_large = || Answer::Bad(format!("the answer is larger than {MAX_BODY} bytes"));
    let body = if chunked {
        loop {
            match dechunk(&buf).map_err(Answer::Bad)? {
                Some(body) => break body,
                None if eof => {
                    return Err(Answer::Bad("the chunked body ends early".into()));
                }
                // Chunk framing around at most MAX_BODY bytes of data.
                None if buf.len() > 2 * MAX_BODY => return Err(too_large()),
                None => fill(&mut buf, &mut eof)?,
            }
        }
    } else if let Some(length) = length {
        if length > MAX_BODY {
            return Err(too_large());
        }
        while buf.len() < length && !eof {
            fill(&mut buf, &mut eof)?;
        }
        if buf.len() < length {
            return Err(Answer::Bad(
                "the body ends before its Content-Length".into(),
            ));
        }
        buf.truncate(length);
        buf
    } else {
        while !eof {
            if buf.len() > MAX_BODY {
                return Err(too_large());
            }
            fill(&mut buf, &mut eof)?;
        }
        buf
    };
    if body.len() > MAX_BODY {
        return Err(too_large());
    }
    Ok(Response { status, body })
}

/// The body of a whole chunked encoding (RFC 9112 §7.1): `Ok(None)` while more is needed.
/// Chunk extensions are ignored; nothing after the last chunk is read (the connection closes).
fn dechunk(mut data: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size = std::str::from_utf8(&data[..line_end])
            .ok()
            .and_then(|l| l.split(';').next())
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .ok_or("an unreadable chunk size")?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(Some(body));
        }
        if body.len().saturating_add(size) > MAX_BODY {
            return Err(format!("the answer is larger than {MAX_BODY} bytes"));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-connection server on 127.0.0.1 that reads the request and writes `answer`;
    /// returns its port and the request it read.
    fn serve(answer: &'static [u8]) -> (u16, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut b).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&b[..n]);
            }
            s.write_all(answer).unwrap();
            String::from_utf8(req).unwrap()
        });
        (port, t)
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[test]
    fn a_body_of_content_length_bytes_is_the_key_authorization() {
        let (port, t) = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ntok.kA");
        check("127.0.0.1", port, "tok", "tok.kA", soon()).unwrap();
        let req = t.join().unwrap();
        assert!(
            req.starts_with("GET /.well-known/acme-challenge/tok HTTP/1.1\r\n"),
            "{req}"
        );
        assert!(
            req.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
            "{req}"
        );
    }

    #[test]
    fn a_chunked_body_and_one_read_to_the_close_are_understood() {
        let (port, _t) = serve(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\ntok.\r\n3\r\nkA\n\r\n0\r\n\r\n",
        );
        check("127.0.0.1", port, "tok", "tok.kA", soon()).unwrap();
        let (port, _t) = serve(b"HTTP/1.0 200 OK\r\n\r\ntok.kA\r\n");
        check("127.0.0.1", port, "tok", "tok.kA", soon()).unwrap();
    }

    #[test]
    fn a_redirect_a_wrong_body_and_a_large_one_are_incorrect_responses() {
        let (port, _t) = serve(b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n");
        let e = check("127.0.0.1", port, "tok", "tok.kA", soon()).unwrap_err();
        assert_eq!(e.short(), "incorrectResponse");
        assert!(e.detail.contains("302"), "{}", e.detail);
        let (port, _t) = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nother");
        let e = check("127.0.0.1", port, "tok", "tok.kA", soon()).unwrap_err();
        assert_eq!(e.short(), "incorrectResponse");
        assert!(e.detail.contains("\"other\""), "{}", e.detail);
        let (port, _t) = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
        let e = check("127.0.0.1", port, "tok", "tok.kA", soon()).unwrap_err();
        assert!(e.detail.contains("larger than"), "{}", e.detail);
        let (port, _t) = serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
        let e = check("127.0.0.1", port, "tok", "tok.kA", soon()).unwrap_err();
        assert!(e.detail.contains("chunk size"), "{}", e.detail);
    }

    #[test]
    fn nothing_listening_and_a_passed_deadline_are_connection_problems() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = check("127.0.0.1", port, "tok", "tok.kA", soon()).unwrap_err();
        assert_eq!(e.short(), "connection");
        // A server that accepts and never answers: the deadline (already passed) ends it.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let e = check("127.0.0.1", port, "tok", "tok.kA", Instant::now()).unwrap_err();
        assert_eq!(e.short(), "connection");
        drop(l);
    }
}
