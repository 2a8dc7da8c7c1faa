//! A minimal HTTP/1.1 client over plain TCP, for what the server calls itself: health
//! probes (`GET`) and alert webhooks (`POST`). Only `http://` URLs: both talk to local
//! services (an `https://` receiver sits behind a local relay).

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A parsed `http://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpUrl {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl HttpUrl {
    /// Parses `url`; `what` names it in errors ("probe web", "webhook").
    pub fn parse(url: &str, what: &str) -> Result<HttpUrl, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            if url.starts_with("https://") {
                format!("{what}: https is not supported, only http:// URLs")
            } else {
                format!("{what}: {url:?} is not an http:// URL")
            }
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(format!(
                "{what}: user information in {url:?} is not supported"
            ));
        }
        let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
            // `[v6]` or `[v6]:port`.
            let (h, tail) = rest
                .split_once(']')
                .ok_or_else(|| format!("{what}: unclosed `[` in {url:?}"))?;
            let port = match tail.strip_prefix(':') {
                Some(p) => p
                    .parse::<u16>()
                    .map_err(|_| format!("{what}: bad port {p:?} in {url:?}"))?,
                None if tail.is_empty() => 80,
                None => return Err(format!("{what}: {tail:?} after the address in {url:?}")),
            };
            (h, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h,
                    p.parse::<u16>()
                        .map_err(|_| format!("{what}: bad port {p:?} in {url:?}"))?,
                ),
                None => (authority, 80),
            }
        };
        if host.is_empty() {
            return Err(format!("{what}: no host in {url:?}"));
        }
        if path.contains(['\r', '\n', ' ']) {
            return Err(format!(
                "{what}: the path of {url:?} has spaces or line breaks"
            ));
        }
        Ok(HttpUrl {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Sends one request (`Connection: close`) and returns the status code of the answer; the
/// body of the answer is not read. No timeout of its own: wrap it in one.
pub(crate) async fn request(
    url: &HttpUrl,
    method: &str,
    content_type: Option<&str>,
    body: &[u8],
    user_agent: &str,
) -> Result<u16, String> {
    let mut stream = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("cannot connect to {}:{}: {e}", url.host, url.port))?;
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {user_agent}\r\nAccept: */*\r\nConnection: close\r\n",
        url.path,
        url.host_header()
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if method != "GET" || !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    stream
        .write_all(&bytes)
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("cannot read the answer: {e}"))?;
        if n == 0 {
            return Err("the connection closed before a status line".into());
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.len() > 8192 {
            return Err("no HTTP status line in the first 8 KiB".into());
        }
    }
    let line = String::from_utf8_lossy(&answer);
    let line = line.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    match (
        parts.next(),
        parts.next().and_then(|c| c.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => Ok(code),
        _ => Err(format!("not an HTTP answer: {line:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::HttpUrl;

    #[test]
    fn urls_parse_with_names_v4_and_v6_hosts() {
        for (url, host, port, path) in [
            ("http://localhost/hook", "localhost", 80, "/hook"),
            ("http://127.0.0.1:9093", "127.0.0.1", 9093, "/"),
            ("http://[::1]/hook", "::1", 80, "/hook"),
            ("http://[::1]:8080/a?b=c", "::1", 8080, "/a?b=c"),
        ] {
            let u = HttpUrl::parse(url, "webhook").expect(url);
            assert_eq!(
                (u.host.as_str(), u.port, u.path.as_str()),
                (host, port, path)
            );
        }
        for (url, says) in [
            ("http://[::1/x", "unclosed"),
            ("http://[::1]x/", "after the address"),
            ("http://h:99999/", "bad port"),
            ("http://u:p@h/", "user information"),
            ("http://h/a b", "spaces"),
        ] {
            let e = HttpUrl::parse(url, "webhook").expect_err(url);
            assert!(e.contains(says), "{url}: {e}");
        }
    }
}
