//! A bare HTTP/1.1 GET, enough for health and metrics endpoints without an HTTP client crate.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

/// How long a loopback endpoint may take to answer.
const TIMEOUT: Duration = Duration::from_secs(2);

/// `GET path` on `127.0.0.1:port`: the status code and the body.
pub fn get(port: u16, path: &str) -> io::Result<(u16, String)> {
    let mut conn = TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), TIMEOUT)?;
    conn.set_read_timeout(Some(TIMEOUT))?;
    request(&mut conn, path)
}

/// `GET path` over an open connection (plain TCP or TLS): the status code and the body.
pub fn request(conn: &mut (impl Read + Write), path: &str) -> io::Result<(u16, String)> {
    // One write: a server that reads the request in one go gets all of it.
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes())?;
    conn.flush()?;
    let mut response = Vec::new();
    if let Err(e) = conn.read_to_end(&mut response) {
        // Servers may close without a TLS close_notify; what arrived is still the answer.
        if response.is_empty() {
            return Err(e);
        }
    }
    let text = String::from_utf8_lossy(&response);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other(format!("not an HTTP response: {text:?}")))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok((code, body_of(head, body)?))
}

/// The body of a response with this head: as it came, or joined from its chunks when the
/// server sent it with `Transfer-Encoding: chunked` (as streamed `/metrics` are).
pub fn body_of(head: &str, body: &str) -> io::Result<String> {
    let chunked = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    if !chunked {
        return Ok(body.to_owned());
    }
    let bad = |what: &str| io::Error::other(format!("bad chunked body ({what}): {body:?}"));
    let (mut rest, mut out) = (body, String::new());
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or_else(|| bad("no size line"))?;
        let size = size.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| bad("size"))?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = after.get(..size).ok_or_else(|| bad("short chunk"))?;
        out.push_str(chunk);
        rest = after[size..]
            .strip_prefix("\r\n")
            .ok_or_else(|| bad("no chunk end"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_parses_status_and_body() {
        struct Canned(io::Cursor<&'static [u8]>, Vec<u8>);
        impl Read for Canned {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.0.read(buf)
            }
        }
        impl Write for Canned {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.1.write(buf)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut conn = Canned(
            io::Cursor::new(b"HTTP/1.1 500 Internal Server Error\r\nA: b\r\n\r\n[-]etcd failed"),
            Vec::new(),
        );
        let (code, body) = request(&mut conn, "/readyz").unwrap();
        assert_eq!((code, body.as_str()), (500, "[-]etcd failed"));
        assert!(conn.1.starts_with(b"GET /readyz HTTP/1.1\r\n"));
    }

    #[test]
    fn chunked_bodies_are_joined() {
        let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked";
        let body = body_of(head, "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n").unwrap();
        assert_eq!(body, "hello, world");
        assert_eq!(
            body_of("HTTP/1.1 200 OK", "5\r\nhello").unwrap(),
            "5\r\nhello"
        );
        assert!(body_of(head, "9\r\nhello\r\n0\r\n\r\n").is_err());
    }

    #[test]
    fn get_reaches_a_loopback_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            let mut chunk = [0u8; 1024];
            while !seen.ends_with(b"\r\n\r\n") {
                let n = conn.read(&mut chunk).unwrap();
                assert!(n > 0, "the request ended early: {seen:?}");
                seen.extend_from_slice(&chunk[..n]);
            }
            conn.write_all(b"HTTP/1.1 200 OK\r\n\r\nok").unwrap();
            String::from_utf8_lossy(&seen).into_owned()
        });
        assert_eq!(get(port, "/healthz").unwrap(), (200, "ok".to_owned()));
        assert!(
            server
                .join()
                .unwrap()
                .starts_with("GET /healthz HTTP/1.1\r\n")
        );
    }
}
