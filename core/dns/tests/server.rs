//! The DNS server on real sockets: names are found whatever their case, and TCP connections
//! are bounded in number and in idle time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use drover_catalog::{CatalogPart, ServiceCatalog};
use drover_dns::{DnsConfig, limits};
use drover_model::{ServiceHealth, ServiceRegistration};
use hickory_server::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

async fn server(regs: Vec<ServiceRegistration>) -> drover_dns::DnsServer {
    let catalog = ServiceCatalog::new();
    catalog.apply(CatalogPart {
        index: 3,
        reset: true,
        upserts: regs,
        complete: true,
        ..Default::default()
    });
    drover_dns::serve(
        &DnsConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            domain: "drover".into(),
            ttl: Duration::ZERO,
        },
        Arc::new(catalog),
    )
    .await
    .unwrap()
}

fn reg(id: &str, ns: &str, name: &str, port: u16, tags: &[&str]) -> ServiceRegistration {
    ServiceRegistration {
        id: id.into(),
        namespace: ns.into(),
        service_name: name.into(),
        address: "127.0.0.1".into(),
        port,
        health: ServiceHealth::Passing,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

async fn ask_udp(addr: SocketAddr, name: &str) -> Message {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(&query(name, RecordType::SRV), addr)
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.recv(&mut buf))
        .await
        .expect("an answer over UDP")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

/// One query on an open connection; None when the server closed it.
async fn ask_tcp(s: &mut TcpStream, name: &str) -> Option<Message> {
    let q = query(name, RecordType::SRV);
    let mut out = (q.len() as u16).to_be_bytes().to_vec();
    out.extend(q);
    s.write_all(&out).await.ok()?;
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut len))
        .await
        .expect("an answer or a close over TCP")
        .ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).await.ok()?;
    Some(Message::from_vec(&buf).unwrap())
}

fn srv_ports(m: &Message) -> Vec<u16> {
    let mut p: Vec<u16> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some(s.port),
            _ => None,
        })
        .collect();
    p.sort();
    p
}

#[tokio::test]
async fn a_service_registered_with_capitals_is_found_by_any_casing() {
    let dns = server(vec![
        reg("a", "default", "Backend", 8080, &["V1"]),
        reg("b", "Team", "Api", 9090, &[]),
    ])
    .await;
    let addr = dns.local_addr();
    for name in [
        "backend.service.drover.",
        "BACKEND.service.drover.",
        "Backend.Service.Drover.",
        "v1.backend.service.drover.",
        "_backend._V1.service.drover.",
        "api.service.team.ns.drover.",
        "API.service.TEAM.ns.drover.",
    ] {
        let m = ask_udp(addr, name).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert_eq!(srv_ports(&m).len(), 1, "{name}: {m:?}");
    }
    let m = ask_udp(addr, "v2.backend.service.drover.").await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let mut s = TcpStream::connect(addr).await.unwrap();
    let m = ask_tcp(&mut s, "BackEnd.service.drover.").await.unwrap();
    assert_eq!(srv_ports(&m), vec![8080]);
}

#[tokio::test]
async fn tcp_connections_are_bounded_and_idle_ones_close() {
    let dns = server(vec![reg("a", "default", "web", 8080, &[])]).await;
    let addr = dns.local_addr();
    // Every slot taken by a connection that answers.
    let mut held = Vec::new();
    for _ in 0..limits::MAX_TCP_CONNECTIONS {
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert!(ask_tcp(&mut s, "web.service.drover.").await.is_some());
        held.push(s);
    }
    // One more is closed without an answer.
    let mut extra = TcpStream::connect(addr).await.unwrap();
    assert!(
        ask_tcp(&mut extra, "web.service.drover.").await.is_none(),
        "a connection beyond the limit is refused"
    );
    // The held ones still answer; UDP is not starved.
    assert!(ask_tcp(&mut held[0], "web.service.drover.").await.is_some());
    assert_eq!(
        srv_ports(&ask_udp(addr, "web.service.drover.").await),
        vec![8080]
    );
    // Closing one frees its slot.
    drop(held.pop());
    let mut again = None;
    for _ in 0..50 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if ask_tcp(&mut s, "web.service.drover.").await.is_some() {
            again = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "a freed slot takes a new connection");
    drop(held);
    // A connection that sends nothing is closed after the idle time.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(limits::TCP_IDLE * 3, idle.read(&mut buf))
        .await
        .expect("the server closes an idle connection")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() >= limits::TCP_IDLE - Duration::from_millis(500));
    // Half a query is no better than none.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(&[0, 40, 1, 2]).await.unwrap();
    let n = tokio::time::timeout(limits::TCP_IDLE * 3, slow.read(&mut buf))
        .await
        .expect("the server closes a connection stuck in a query")
        .unwrap_or(0);
    assert_eq!(n, 0);
}
