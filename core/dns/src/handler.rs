//! hickory-server's request handler: checks the query, answers it from the catalog.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use drover_catalog::ServiceLookup;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::{DNSClass, Name};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::answer::{Answer, Budget, Zone};
use crate::limits::{MAX_QUERY_BYTES, MAX_UDP_PAYLOAD};
use crate::{DnsConfig, DnsError};

pub(crate) struct Handler {
    lookup: Arc<dyn ServiceLookup>,
    zone: Zone,
    /// Turns the order of answers from one query to the next.
    rotation: AtomicUsize,
}

/// Room kept for the header (12), the question (name + 4) and an OPT record (11 + options).
const OVERHEAD: usize = 12 + 4 + 64;

impl Handler {
    pub(crate) fn new(
        config: &DnsConfig,
        lookup: Arc<dyn ServiceLookup>,
    ) -> Result<Handler, DnsError> {
        let bad = |e: String| DnsError::Domain(config.domain.clone(), e);
        let domain = config.domain.trim_end_matches('.').to_ascii_lowercase();
        if domain.is_empty() {
            return Err(bad("it is empty".into()));
        }
        let domain = Name::from_ascii(format!("{domain}.")).map_err(|e| bad(e.to_string()))?;
        Ok(Handler {
            lookup,
            zone: Zone {
                domain,
                ttl: config.ttl.as_secs().min(u64::from(u32::MAX)) as u32,
            },
            rotation: AtomicUsize::new(0),
        })
    }

    /// The answer to a well-formed single question.
    fn answer(&self, request: &Request, udp_payload: usize) -> Answer {
        let query = &request.queries.queries()[0];
        let qname: &Name = query.original().name();
        let lower: Name = query.name().clone().into();
        if query.query_class() != DNSClass::IN || !self.zone.domain.zone_of(&lower) {
            return Answer {
                code: ResponseCode::Refused,
                ..Default::default()
            };
        }
        let own = lower.num_labels() - self.zone.domain.num_labels();
        let labels: Vec<&str> = lower
            .iter()
            .take(usize::from(own))
            .map(|l| std::str::from_utf8(l).unwrap_or("\u{0}"))
            .collect();
        let Some(question) = crate::names::parse_labels(&labels) else {
            return Answer {
                code: ResponseCode::NXDomain,
                soa: Some(self.zone.soa(self.lookup.index())),
                ..Default::default()
            };
        };
        let udp = request.protocol() == Protocol::Udp;
        let limit = if udp {
            udp_payload
        } else {
            usize::from(u16::MAX)
        };
        let budget = Budget {
            bytes: limit.saturating_sub(OVERHEAD + qname.len()),
            udp,
        };
        let turn = self.rotation.fetch_add(1, Ordering::Relaxed);
        self.zone.answer(
            self.lookup.as_ref(),
            qname,
            query.query_type(),
            question,
            budget,
            turn,
        )
    }
}

/// One handler shared by the UDP server (hickory-server's) and the TCP loop (ours).
pub(crate) struct Shared(pub Arc<Handler>);

#[async_trait::async_trait]
impl RequestHandler for Shared {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        self.0
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        // The requester's payload, within what is answered at all (512 without EDNS).
        let edns = request.edns.as_ref().map(|e| {
            let mut ours = Edns::new();
            ours.set_max_payload(e.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            ours.set_version(0);
            ours
        });
        let payload = edns.as_ref().map_or(512, |e| usize::from(e.max_payload()));
        let malformed = request.as_slice().len() > MAX_QUERY_BYTES
            || request.metadata.message_type != MessageType::Query
            || request.queries.len() != 1;
        let code = if malformed {
            Some(ResponseCode::FormErr)
        } else if request.metadata.op_code != OpCode::Query {
            Some(ResponseCode::NotImp)
        } else {
            None
        };
        let answer = match code {
            Some(code) => Answer {
                code,
                ..Default::default()
            },
            None => self.answer(request, payload),
        };
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.authoritative = answer.code != ResponseCode::Refused;
        meta.recursion_available = false;
        meta.response_code = answer.code;
        meta.truncation = answer.truncated;
        let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            meta,
            answer.answers.iter(),
            answer.soa.iter(),
            std::iter::empty(),
            answer.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "DNS answer not sent");
                let mut h = Metadata::response_from_request(&request.metadata);
                h.response_code = ResponseCode::ServFail;
                ResponseInfo::from(hickory_server::proto::op::Header {
                    metadata: h,
                    counts: Default::default(),
                })
            }
        }
    }
}
