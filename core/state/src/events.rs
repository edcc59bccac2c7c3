//! The event stream: every applied command yields events (topic, type, key, the object
//! after the change), broadcast to subscribers and kept in a bounded buffer so a reader can
//! resume from an index.

use std::collections::VecDeque;
use std::sync::Arc;

use drover_model::{Allocation, Evaluation, Index, Job, Node, ServiceRegistration};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Topic {
    Job,
    Allocation,
    Evaluation,
    Node,
    Service,
}

impl Topic {
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Job => "Job",
            Topic::Allocation => "Allocation",
            Topic::Evaluation => "Evaluation",
            Topic::Node => "Node",
            Topic::Service => "Service",
        }
    }

    pub fn parse(s: &str) -> Option<Topic> {
        Some(match s {
            "Job" => Topic::Job,
            "Allocation" => Topic::Allocation,
            "Evaluation" => Topic::Evaluation,
            "Node" => Topic::Node,
            "Service" => Topic::Service,
            _ => return None,
        })
    }
}

/// The object an event carries, as it is after the change.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Job(Arc<Job>),
    Allocation(Arc<Allocation>),
    Evaluation(Arc<Evaluation>),
    Node(Arc<Node>),
    Service(Arc<ServiceRegistration>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub index: Index,
    pub topic: Topic,
    /// Nomad's event type: "JobRegistered", "AllocationUpdated", "PlanResult", ...
    pub kind: &'static str,
    pub key: String,
    pub namespace: String,
    pub payload: Payload,
}

impl Event {
    pub fn job(index: Index, kind: &'static str, j: &Arc<Job>) -> Event {
        Event {
            index,
            topic: Topic::Job,
            kind,
            key: j.id.clone(),
            namespace: j.namespace.clone(),
            payload: Payload::Job(j.clone()),
        }
    }
    pub fn alloc(index: Index, kind: &'static str, a: &Arc<Allocation>) -> Event {
        Event {
            index,
            topic: Topic::Allocation,
            kind,
            key: a.id.clone(),
            namespace: a.namespace.clone(),
            payload: Payload::Allocation(a.clone()),
        }
    }
    pub fn eval(index: Index, e: &Arc<Evaluation>) -> Event {
        Event {
            index,
            topic: Topic::Evaluation,
            kind: "EvaluationUpdated",
            key: e.id.clone(),
            namespace: e.namespace.clone(),
            payload: Payload::Evaluation(e.clone()),
        }
    }
    pub fn node(index: Index, kind: &'static str, n: &Arc<Node>) -> Event {
        Event {
            index,
            topic: Topic::Node,
            kind,
            key: n.id.clone(),
            namespace: String::new(),
            payload: Payload::Node(n.clone()),
        }
    }
}

impl Event {
    /// Nomad's `Service` topic: keyed by the registration's id.
    pub fn service(index: Index, kind: &'static str, r: &Arc<ServiceRegistration>) -> Event {
        Event {
            index,
            topic: Topic::Service,
            kind,
            key: r.id.clone(),
            namespace: r.namespace.clone(),
            payload: Payload::Service(r.clone()),
        }
    }
}

/// Recent events, for readers resuming from an index.
pub struct EventBuffer {
    events: VecDeque<Event>,
    capacity: usize,
}

impl EventBuffer {
    pub fn new(capacity: usize) -> Self {
        EventBuffer {
            events: VecDeque::new(),
            capacity,
        }
    }

    pub fn push(&mut self, e: Event) {
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// Events after `index` still in the buffer.
    pub fn since(&self, index: Index) -> Vec<Event> {
        self.events
            .iter()
            .filter(|e| e.index > index)
            .cloned()
            .collect()
    }
}
