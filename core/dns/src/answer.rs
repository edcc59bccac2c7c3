//! The records that answer a question: from the catalog's instances to A, AAAA and SRV
//! records, cut to what the transport can carry.

use std::collections::BTreeSet;
use std::net::IpAddr;

use drover_catalog::ServiceLookup;
use drover_model::ServiceRegistration;
use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};

use crate::names::{Question, hex_addr};

/// The zone answered for.
pub(crate) struct Zone {
    /// The domain, lowercase, fully qualified.
    pub domain: Name,
    pub ttl: u32,
}

/// What the transport can carry of an answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// Bytes for the records (the message's limit less the header, question and OPT).
    pub bytes: usize,
    /// Over UDP a cut answer says so (TC); over TCP the limit is DNS's own.
    pub udp: bool,
}

/// A response's sections and code.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    pub additionals: Vec<Record>,
    /// The zone's SOA goes in the authority section (NXDOMAIN, no data).
    pub soa: Option<Record>,
    /// Some answers did not fit.
    pub truncated: bool,
}

/// Bytes of the fixed part of a resource record: type, class, TTL, RDATA length.
const RR_FIXED: usize = 10;
/// An owner name that repeats the question's is a 2-byte pointer.
const POINTER: usize = 2;

fn wire_len(n: &Name) -> usize {
    n.len() + 1
}

impl Zone {
    pub fn soa(&self, serial: u64) -> Record {
        let at = |label: &str| {
            Name::from_ascii(label)
                .and_then(|n| n.append_domain(&self.domain))
                .unwrap_or_else(|_| self.domain.clone())
        };
        let soa = SOA::new(
            at("ns"),
            at("hostmaster"),
            serial as u32,
            3600,
            600,
            86400,
            self.ttl,
        );
        Record::from_rdata(self.domain.clone(), self.ttl, RData::SOA(soa))
    }

    fn addr_name(&self, ip: IpAddr) -> Option<Name> {
        Name::from_ascii(format!("{}.addr", hex_addr(ip)))
            .ok()?
            .append_domain(&self.domain)
            .ok()
    }

    fn address_record(&self, owner: Name, ip: IpAddr) -> Record {
        let data = match ip {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        Record::from_rdata(owner, self.ttl, data)
    }

    /// Answers `question` (asked as `qname`, type `qtype`) from `lookup`; `rotation` turns
    /// the order of the instances so that clients taking the first spread over them.
    pub fn answer(
        &self,
        lookup: &dyn ServiceLookup,
        qname: &Name,
        qtype: RecordType,
        question: Question,
        budget: Budget,
        rotation: usize,
    ) -> Answer {
        let nx = || Answer {
            code: ResponseCode::NXDomain,
            soa: Some(self.soa(lookup.index())),
            ..Default::default()
        };
        let nodata = || Answer {
            soa: Some(self.soa(lookup.index())),
            ..Default::default()
        };
        match question {
            Question::Apex => match qtype {
                RecordType::SOA => Answer {
                    answers: vec![self.soa(lookup.index())],
                    ..Default::default()
                },
                _ => nodata(),
            },
            Question::Addr(ip) => {
                let fits = matches!(
                    (qtype, ip),
                    (RecordType::A | RecordType::ANY, IpAddr::V4(_))
                        | (RecordType::AAAA | RecordType::ANY, IpAddr::V6(_))
                );
                if fits {
                    Answer {
                        answers: vec![self.address_record(qname.clone(), ip)],
                        ..Default::default()
                    }
                } else {
                    nodata()
                }
            }
            Question::Service {
                namespace,
                name,
                tag,
            } => {
                // DNS names ignore case: so do the service, namespace and tag they name.
                let all = lookup.instances_any_case(&namespace, &name);
                let mut healthy: Vec<&ServiceRegistration> = all
                    .iter()
                    .map(|r| r.as_ref())
                    .filter(|r| r.health.is_healthy())
                    .filter(|r| {
                        tag.as_ref()
                            .is_none_or(|t| r.tags.iter().any(|x| x.eq_ignore_ascii_case(t)))
                    })
                    .collect();
                if healthy.is_empty() {
                    return nx();
                }
                let turn = rotation % healthy.len();
                healthy.rotate_left(turn);
                let answer = match qtype {
                    RecordType::A | RecordType::AAAA | RecordType::ANY => {
                        self.addresses(qname, qtype, &healthy, budget)
                    }
                    RecordType::SRV => self.srv(qname, &healthy, budget),
                    _ => Answer::default(),
                };
                if answer.answers.is_empty() {
                    return nodata();
                }
                answer
            }
        }
    }

    /// A/AAAA records of the instances' addresses (each once; host names are not answered).
    fn addresses(
        &self,
        qname: &Name,
        qtype: RecordType,
        instances: &[&ServiceRegistration],
        budget: Budget,
    ) -> Answer {
        let mut seen = BTreeSet::new();
        let mut out = Answer::default();
        let mut used = 0;
        for r in instances {
            let Ok(ip) = r.address.parse::<IpAddr>() else {
                continue;
            };
            let wanted = match ip {
                IpAddr::V4(_) => qtype != RecordType::AAAA,
                IpAddr::V6(_) => qtype != RecordType::A,
            };
            if !wanted || !seen.insert(ip) {
                continue;
            }
            let size = POINTER + RR_FIXED + if ip.is_ipv4() { 4 } else { 16 };
            if used + size > budget.bytes {
                out.truncated = budget.udp;
                break;
            }
            used += size;
            out.answers.push(self.address_record(qname.clone(), ip));
        }
        out
    }

    /// SRV records (priority 1, weight 1, the instance's port; the target is
    /// `<hex>.addr.<domain>` for an IP, else the address as a host name), with the targets'
    /// addresses as additional records when they fit.
    fn srv(&self, qname: &Name, instances: &[&ServiceRegistration], budget: Budget) -> Answer {
        let mut out = Answer::default();
        let mut used = 0;
        let mut targets: Vec<(Name, IpAddr)> = Vec::new();
        let mut seen = BTreeSet::new();
        for r in instances {
            let ip = r.address.parse::<IpAddr>().ok();
            let target = match ip {
                Some(ip) => self.addr_name(ip),
                None => Name::from_ascii(format!("{}.", r.address.trim_end_matches('.'))).ok(),
            };
            let Some(target) = target else {
                continue;
            };
            let size = POINTER + RR_FIXED + 6 + wire_len(&target);
            if used + size > budget.bytes {
                out.truncated = budget.udp;
                break;
            }
            used += size;
            if let Some(ip) = ip
                && seen.insert(ip)
            {
                targets.push((target.clone(), ip));
            }
            let srv = SRV::new(1, 1, r.port, target);
            out.answers
                .push(Record::from_rdata(qname.clone(), self.ttl, RData::SRV(srv)));
        }
        // Additional records only when all of them fit after the answers, and never in a cut
        // answer (the requester asks again over TCP).
        if !out.truncated {
            let extra: usize = targets
                .iter()
                .map(|(n, ip)| wire_len(n) + RR_FIXED + if ip.is_ipv4() { 4 } else { 16 })
                .sum();
            if used + extra <= budget.bytes {
                out.additionals = targets
                    .into_iter()
                    .map(|(n, ip)| self.address_record(n, ip))
                    .collect();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_catalog::{CatalogPart, ServiceCatalog};
    use drover_model::ServiceHealth;

    fn zone() -> Zone {
        Zone {
            domain: Name::from_ascii("drover.").unwrap(),
            ttl: 0,
        }
    }

    fn catalog(regs: Vec<ServiceRegistration>) -> ServiceCatalog {
        let c = ServiceCatalog::new();
        c.apply(CatalogPart {
            index: 7,
            reset: true,
            upserts: regs,
            complete: true,
            ..Default::default()
        });
        c
    }

    fn reg(
        id: &str,
        addr: &str,
        port: u16,
        health: ServiceHealth,
        tags: &[&str],
    ) -> ServiceRegistration {
        ServiceRegistration {
            id: id.into(),
            namespace: "default".into(),
            service_name: "web".into(),
            address: addr.into(),
            port,
            health,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        }
    }

    fn web(tag: Option<&str>) -> Question {
        Question::Service {
            namespace: "default".into(),
            name: "web".into(),
            tag: tag.map(str::to_string),
        }
    }

    const TCP: Budget = Budget {
        bytes: 65_000,
        udp: false,
    };

    fn srv_ports(a: &Answer) -> Vec<u16> {
        let mut p: Vec<u16> = a
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::SRV(s) => s.port,
                other => panic!("{other:?}"),
            })
            .collect();
        p.sort();
        p
    }

    #[test]
    fn srv_answers_name_healthy_instances_and_their_addresses() {
        use ServiceHealth::*;
        let c = catalog(vec![
            reg("a", "10.0.0.1", 8080, Passing, &["v1"]),
            reg("b", "10.0.0.2", 8081, Warning, &["v2"]),
            reg("c", "10.0.0.3", 8082, Critical, &["v2"]),
        ]);
        let q = Name::from_ascii("web.service.drover.").unwrap();
        let a = zone().answer(&c, &q, RecordType::SRV, web(None), TCP, 0);
        assert_eq!(a.code, ResponseCode::NoError);
        assert_eq!(srv_ports(&a), vec![8080, 8081]);
        assert_eq!(a.additionals.len(), 2);
        let RData::SRV(s) = &a.answers[0].data else {
            panic!()
        };
        assert!(
            s.target.to_ascii().ends_with(".addr.drover."),
            "{}",
            s.target
        );
        // By tag.
        let a = zone().answer(&c, &q, RecordType::SRV, web(Some("v2")), TCP, 0);
        assert_eq!(srv_ports(&a), vec![8081]);
        // A records.
        let a = zone().answer(&c, &q, RecordType::A, web(None), TCP, 1);
        assert_eq!(a.answers.len(), 2);
        // Only critical instances: no such name.
        let a = zone().answer(&c, &q, RecordType::SRV, web(Some("nope")), TCP, 0);
        assert_eq!(a.code, ResponseCode::NXDomain);
        assert!(a.soa.is_some());
        // AAAA of IPv4-only instances: the name exists, no data.
        let a = zone().answer(&c, &q, RecordType::AAAA, web(None), TCP, 0);
        assert_eq!(a.code, ResponseCode::NoError);
        assert!(a.answers.is_empty() && a.soa.is_some());
    }

    #[test]
    fn a_large_answer_is_cut_over_udp_and_whole_over_tcp() {
        let regs = (0..1000)
            .map(|i| {
                reg(
                    &format!("r{i}"),
                    "127.0.0.1",
                    20000 + i as u16,
                    ServiceHealth::Passing,
                    &[],
                )
            })
            .collect();
        let c = catalog(regs);
        let q = Name::from_ascii("web.service.drover.").unwrap();
        let udp = Budget {
            bytes: 1232 - 100,
            udp: true,
        };
        let a = zone().answer(&c, &q, RecordType::SRV, web(None), udp, 0);
        assert!(a.truncated);
        assert!(a.answers.len() < 1000 && !a.answers.is_empty());
        assert!(a.additionals.is_empty());
        let a = zone().answer(&c, &q, RecordType::SRV, web(None), TCP, 0);
        assert!(!a.truncated);
        assert_eq!(a.answers.len(), 1000);
        // One address for all of them: one additional record.
        assert_eq!(a.additionals.len(), 1);
    }

    #[test]
    fn addr_names_answer_their_address() {
        let c = catalog(vec![]);
        let q = Name::from_ascii("7f000001.addr.drover.").unwrap();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = zone().answer(&c, &q, RecordType::A, Question::Addr(ip), TCP, 0);
        assert_eq!(a.answers.len(), 1);
        let a = zone().answer(&c, &q, RecordType::AAAA, Question::Addr(ip), TCP, 0);
        assert!(a.answers.is_empty());
    }
}
