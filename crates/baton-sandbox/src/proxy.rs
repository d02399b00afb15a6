//! The only way out of a sandbox: an HTTP proxy on the host that connects to allow-listed hosts and
//! refuses, and records, everything else. The sandbox reaches it through a Unix socket mounted at
//! [`SOCKET_INSIDE`]; inside, pid 1 relays `127.0.0.1:3128` to that socket, and the usual proxy
//! variables point there. Both `CONNECT host:port` (HTTPS) and absolute-URI requests (plain HTTP,
//! one request per connection) are served.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Where the proxy socket appears inside the sandbox.
pub const SOCKET_INSIDE: &str = "/run/baton/proxy.sock";
/// Where pid 1 listens inside the sandbox, for the proxy variables.
pub const LISTEN_INSIDE: &str = "127.0.0.1:3128";

/// Which hosts a task may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// `host`, `host:port` or `*.domain`; compared without regard to case.
    pub allow: Vec<String>,
    /// Fixed addresses for names, consulted before DNS (like curl's `--resolve`).
    pub resolve: Vec<(String, SocketAddr)>,
}

impl EgressPolicy {
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allow.iter().any(|rule| {
            let rule = rule.to_ascii_lowercase();
            let (pattern, rule_port) = match rule.rsplit_once(':') {
                Some((pattern, p)) if p.parse::<u16>().is_ok() => (pattern.to_owned(), p.parse::<u16>().ok()),
                _ => (rule.clone(), None),
            };
            let host_matches = match pattern.strip_prefix("*.") {
                Some(domain) => host.ends_with(&format!(".{domain}")),
                None => host == pattern,
            };
            host_matches && rule_port.is_none_or(|p| p == port)
        })
    }

    /// Where to connect for an allowed `host`. A fixed address, or an address the rule names
    /// itself, is taken as it is; a name is resolved, and only to public addresses: an allowed
    /// name whose DNS answer points at the host's loopback, a link-local metadata service or a
    /// private network (a rebinding, or a careless wildcard) does not reach it.
    fn address(&self, host: &str, port: u16) -> io::Result<SocketAddr> {
        if let Some((_, address)) = self.resolve.iter().find(|(name, _)| name.eq_ignore_ascii_case(host)) {
            return Ok(*address);
        }
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let resolved: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
        resolved.iter().copied().find(|address| is_public(address.ip())).ok_or_else(|| match resolved.first() {
            Some(address) => io::Error::other(format!(
                "{host} resolves to {}, which is not a public address; name it in the allow-list by address to reach it",
                address.ip()
            )),
            None => io::Error::other(format!("{host} has no address")),
        })
    }
}

/// Whether `ip` is on the public internet: not loopback, unspecified, link-local, private,
/// shared (CGNAT), multicast, broadcast or documentation space.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_link_local()
                || v4.is_private()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80)
            }
        },
    }
}

/// A connection the proxy refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedConnection {
    pub host: String,
    pub port: u16,
    pub at: SystemTime,
}

/// The host side of a sandbox's network: a thread accepting on a Unix socket. Stops when dropped.
#[derive(Debug)]
pub struct EgressProxy {
    socket: PathBuf,
    refused: Arc<Mutex<Vec<RefusedConnection>>>,
    stopping: Arc<AtomicBool>,
}

/// Connections a proxy serves at once; more wait their turn by being refused.
const MAX_CONNECTIONS: usize = 64;
/// Bytes of a request head the proxy reads before giving up on it.
const MAX_HEAD: usize = 16 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

impl EgressProxy {
    pub fn start(socket: &Path, policy: EgressPolicy) -> io::Result<EgressProxy> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        let refused = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let (log, stop) = (refused.clone(), stopping.clone());
        let policy = Arc::new(policy);
        let open = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for connection in listener.incoming() {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let Ok(mut connection) = connection else { continue };
                // A thread per connection, and a bound on them: a sandbox that opens connections in
                // a loop must not exhaust baton's threads.
                if open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    open.fetch_sub(1, Ordering::AcqRel);
                    let _ = reply(&mut connection, "503 Service Unavailable", "baton proxy: too many connections\n");
                    continue;
                }
                let (policy, log, open) = (policy.clone(), log.clone(), open.clone());
                std::thread::spawn(move || {
                    let _ = serve(connection, &policy, &log);
                    open.fetch_sub(1, Ordering::AcqRel);
                });
            }
        });
        Ok(EgressProxy { socket: socket.to_owned(), refused, stopping })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The connections refused since the last call.
    pub fn take_refused(&self) -> Vec<RefusedConnection> {
        self.refused.lock().map(|mut r| std::mem::take(&mut *r)).unwrap_or_default()
    }
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        // Wake the accepting thread so it sees the flag.
        let _ = UnixStream::connect(&self.socket);
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// `host:port` of a CONNECT target or an absolute URI's authority.
fn split_authority(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':').map_or(Some(default_port), |p| p.parse().ok())?;
        return Some((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((authority.to_owned(), default_port)),
    }
}

fn reply(stream: &mut UnixStream, status: &str, body: &str) -> io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn serve(client: UnixStream, policy: &EgressPolicy, refused: &Mutex<Vec<RefusedConnection>>) -> io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut writer = client;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        let read = reader.by_ref().take((MAX_HEAD - head.len()) as u64).read_until(b'\n', &mut head)?;
        if read == 0 || head.len() >= MAX_HEAD {
            return reply(&mut writer, "400 Bad Request", "baton proxy: incomplete or oversized request head\n");
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (method, target, version) =
        (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or("HTTP/1.1"));

    let (host, port, forward) = if method.eq_ignore_ascii_case("CONNECT") {
        let Some((host, port)) = split_authority(target, 443) else {
            return reply(&mut writer, "400 Bad Request", "baton proxy: CONNECT needs host:port\n");
        };
        (host, port, None)
    } else if let Some(rest) = target.strip_prefix("http://") {
        let (authority, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
        let Some((host, port)) = split_authority(authority, 80) else {
            return reply(&mut writer, "400 Bad Request", "baton proxy: bad URL\n");
        };
        // One request per connection: a kept-alive connection could name another host next. The
        // `Host` header is the one the allow-list judged, not whatever the client wrote: a different
        // one would reach another site behind the same server (domain fronting).
        let named = if host.contains(':') { format!("[{host}]") } else { host.clone() };
        let host_header = if port == 80 { named } else { format!("{named}:{port}") };
        let mut request = format!("{method} {path} {version}\r\nHost: {host_header}\r\n");
        for line in lines.filter(|l| !l.is_empty()) {
            let name = line.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
            if !matches!(
                name.as_str(),
                "host" | "connection" | "proxy-connection" | "keep-alive" | "proxy-authorization"
            ) {
                request.push_str(line);
                request.push_str("\r\n");
            }
        }
        request.push_str("Connection: close\r\n\r\n");
        (host, port, Some(request))
    } else {
        return reply(&mut writer, "400 Bad Request", "baton proxy: only CONNECT and http:// requests are proxied\n");
    };

    if !policy.allows(&host, port) {
        if let Ok(mut log) = refused.lock() {
            log.push(RefusedConnection { host: host.clone(), port, at: SystemTime::now() });
        }
        return reply(
            &mut writer,
            "403 Forbidden",
            &format!("baton proxy: {host}:{port} is not on this task's network allow-list\n"),
        );
    }
    let upstream = match policy
        .address(&host, port)
        .and_then(|address| TcpStream::connect_timeout(&address, CONNECT_TIMEOUT))
    {
        Ok(upstream) => upstream,
        Err(e) => {
            return reply(&mut writer, "502 Bad Gateway", &format!("baton proxy: cannot reach {host}:{port}: {e}\n"));
        }
    };
    let mut upstream_writer = upstream.try_clone()?;
    match forward {
        None => writer.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?,
        Some(request) => upstream_writer.write_all(request.as_bytes())?,
    }
    // Whatever the client sends next (a TLS handshake, a request body) goes upstream as it is.
    let buffered = reader.buffer().to_vec();
    upstream_writer.write_all(&buffered)?;
    let mut client_reader = reader.into_inner();
    let to_upstream = std::thread::spawn(move || {
        let _ = io::copy(&mut client_reader, &mut upstream_writer);
        let _ = upstream_writer.shutdown(std::net::Shutdown::Write);
    });
    let mut upstream_reader = upstream;
    let _ = io::copy(&mut upstream_reader, &mut writer);
    let _ = writer.shutdown(std::net::Shutdown::Write);
    let _ = to_upstream.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_rules() {
        let policy = EgressPolicy {
            allow: vec!["pypi.org".into(), "*.pythonhosted.org".into(), "deb.debian.org:80".into()],
            resolve: vec![],
        };
        assert!(policy.allows("pypi.org", 443));
        assert!(policy.allows("PyPI.org.", 443));
        assert!(policy.allows("files.pythonhosted.org", 443));
        assert!(!policy.allows("pythonhosted.org", 443));
        assert!(!policy.allows("evilpythonhosted.org", 443));
        assert!(policy.allows("deb.debian.org", 80));
        assert!(!policy.allows("deb.debian.org", 443));
        assert!(!policy.allows("pypi.org.evil.com", 443));
    }

    #[test]
    fn only_public_addresses_are_reached_by_name() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "151.101.0.223"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        let policy = EgressPolicy { allow: vec!["localhost".into(), "127.0.0.1".into()], resolve: vec![] };
        let refused = policy.address("localhost", 80).unwrap_err().to_string();
        assert!(refused.contains("not a public address"), "{refused}");
        assert_eq!(policy.address("127.0.0.1", 80).unwrap(), "127.0.0.1:80".parse().unwrap());
    }

    #[test]
    fn authorities_split() {
        assert_eq!(split_authority("pypi.org:443", 80), Some(("pypi.org".into(), 443)));
        assert_eq!(split_authority("pypi.org", 80), Some(("pypi.org".into(), 80)));
        assert_eq!(split_authority("user:pw@host:8080", 80), Some(("host".into(), 8080)));
        assert_eq!(split_authority("[::1]:8443", 80), Some(("::1".into(), 8443)));
        assert_eq!(split_authority("host:notaport", 80), None);
    }
}
