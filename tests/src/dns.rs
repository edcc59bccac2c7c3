//! A minimal DNS client for the benchmarks: one question out, the header back (id, code,
//! TC, answer count) — enough to time a server without a resolver library in the way —
//! and `dig` (Debian's bind9-dnsutils) against an agent, for the tests.

/// A query for `name` (dotted, no trailing dot) of `qtype` (1 A, 33 SRV), with an EDNS0 OPT
/// record advertising `payload` bytes (0: no EDNS).
pub fn query(id: u16, name: &str, qtype: u16, payload: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend(id.to_be_bytes());
    m.extend([0x01, 0x00]); // RD
    m.extend(1u16.to_be_bytes());
    m.extend([0, 0, 0, 0]);
    m.extend(u16::from(payload > 0).to_be_bytes());
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend(label.as_bytes());
    }
    m.push(0);
    m.extend(qtype.to_be_bytes());
    m.extend(1u16.to_be_bytes()); // IN
    if payload > 0 {
        m.push(0); // root
        m.extend(41u16.to_be_bytes()); // OPT
        m.extend(payload.to_be_bytes());
        m.extend([0, 0, 0, 0, 0, 0]); // TTL (rcode, version, flags), RDLEN
    }
    m
}

/// A response's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub rcode: u8,
    pub truncated: bool,
    pub answers: u16,
}

pub fn header(m: &[u8]) -> Option<Header> {
    if m.len() < 12 {
        return None;
    }
    Some(Header {
        id: u16::from_be_bytes([m[0], m[1]]),
        rcode: m[3] & 0x0f,
        truncated: m[2] & 0x02 != 0,
        answers: u16::from_be_bytes([m[6], m[7]]),
    })
}

/// Asks `server` over UDP once (1 s timeout).
pub fn ask(server: std::net::SocketAddr, name: &str, qtype: u16) -> Option<Header> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .ok()?;
    let id = (std::process::id() as u16) ^ 0x5a5a;
    s.send_to(&query(id, name, qtype, 1232), server).ok()?;
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).ok()?;
    header(&buf[..n]).filter(|h| h.id == id)
}

/// `dig @127.0.0.1 -p PORT ARGS...`: its output.
pub fn dig(agent: &crate::Agent, args: &[&str]) -> String {
    let out = std::process::Command::new("dig")
        .arg("@127.0.0.1")
        .args(["-p", &agent.dns_port.to_string()])
        .args(["+time=3", "+tries=1"])
        .args(args)
        .output()
        .expect("dig (Debian's bind9-dnsutils) runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The status word of dig's header (NOERROR, NXDOMAIN, REFUSED, ...).
pub fn status(dig_out: &str) -> String {
    dig_out
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("")
        .to_string()
}

/// The ports of `+short` SRV lines ("1 1 PORT TARGET").
pub fn srv_ports(short: &str) -> Vec<u16> {
    let mut p: Vec<u16> = short
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect();
    p.sort();
    p
}
