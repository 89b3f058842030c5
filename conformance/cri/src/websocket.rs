//! Just enough of a websocket client (RFC 6455) for one Exec through the
//! CRI streaming server, with the `v4.channel.k8s.io` subprotocol the
//! kubelet's streaming code (which containerd carries) serves: each binary
//! message starts with its channel (1 stdout, 2 stderr, 3 the final status
//! as JSON). Only loopback URLs are followed.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Default)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    /// From the status channel: 0 for Success, the ExitCode cause otherwise.
    pub exit_code: Option<i32>,
    pub status: String,
}

/// Runs the exec behind `url` (`http://127.0.0.1:PORT/exec/TOKEN`) to its end.
pub async fn exec(url: &str) -> Result<Output, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http URL: {url}"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: std::net::SocketAddr = authority
        .parse()
        .map_err(|e| format!("{authority:?} in {url}: {e}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("{url}: not a loopback address, not followed"));
    }
    let mut s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect {addr}: timed out"))?
        .map_err(|e| format!("connect {addr}: {e}"))?;
    // The key is the RFC's example nonce: it is only echoed back hashed.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n"
    );
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;

    // The response head, byte by byte up to its blank line (bounded).
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err("response head too long".into());
        }
        let mut b = [0u8; 1];
        s.read_exact(&mut b)
            .await
            .map_err(|e| format!("response: {e}"))?;
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    if !head.starts_with("HTTP/1.1 101") {
        return Err(format!(
            "no upgrade: {:?}",
            head.lines().next().unwrap_or("")
        ));
    }
    if !head
        .to_ascii_lowercase()
        .contains("sec-websocket-protocol: v4.channel.k8s.io")
    {
        return Err(format!(
            "subprotocol v4.channel.k8s.io not chosen: {head:?}"
        ));
    }

    let mut out = Output::default();
    let mut message: Vec<u8> = Vec::new();
    for _ in 0..10_000 {
        let mut h = [0u8; 2];
        match s.read_exact(&mut h).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(format!("frame: {e}")),
        }
        let fin = h[0] & 0x80 != 0;
        let opcode = h[0] & 0x0f;
        let masked = h[1] & 0x80 != 0;
        let mut len = u64::from(h[1] & 0x7f);
        if len == 126 {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await.map_err(|e| e.to_string())?;
            len = u64::from(u16::from_be_bytes(b));
        } else if len == 127 {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).await.map_err(|e| e.to_string())?;
            len = u64::from_be_bytes(b);
        }
        if len > 1 << 20 {
            return Err(format!("frame of {len} bytes"));
        }
        let mut mask = [0u8; 4];
        if masked {
            s.read_exact(&mut mask).await.map_err(|e| e.to_string())?;
        }
        let mut payload = vec![0u8; len as usize];
        s.read_exact(&mut payload)
            .await
            .map_err(|e| e.to_string())?;
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        match opcode {
            0x8 => break,          // close
            0x9 | 0xa => continue, // ping, pong: nothing to answer for so short a life
            0x0..=0x2 => message.extend_from_slice(&payload),
            _ => return Err(format!("unexpected opcode {opcode}")),
        }
        if !fin {
            continue;
        }
        let msg = std::mem::take(&mut message);
        let Some((&channel, data)) = msg.split_first() else {
            continue;
        };
        let text = String::from_utf8_lossy(data);
        match channel {
            1 => out.stdout.push_str(&text),
            2 => out.stderr.push_str(&text),
            3 => {
                out.status.push_str(&text);
                out.exit_code = exit_code(&out.status);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The exit code a v4 status carries: `"status":"Success"` is 0; a failure
/// names it in a cause `{"reason":"ExitCode","message":"N"}`.
fn exit_code(status: &str) -> Option<i32> {
    if status.contains("\"status\":\"Success\"") {
        return Some(0);
    }
    let at = status.find("\"reason\":\"ExitCode\"")?;
    let rest = &status[at..];
    let m = rest.find("\"message\":\"")? + "\"message\":\"".len();
    let digits: String = rest[m..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}
