//! The typed control protocol against the transcript recorded from the shim and client as
//! they were before it (fixtures/control-protocol.transcript, see
//! plugins/raw_exec/tests/shim_protocol.rs): every request line parses and is written back
//! byte for byte, every reply line parses as the reply to its request and is written back
//! byte for byte, refusals of unreadable requests say what the shim said, and the exit
//! record reads and writes back the same.

use drover_shim::protocol::{ExitRecord, Reply, Request, RequestError};

const TRANSCRIPT: &str = include_str!("fixtures/control-protocol.transcript");

/// The (request, reply) pairs of the transcript, and its exit record.
fn exchanges() -> (Vec<(&'static str, &'static str)>, &'static str) {
    let mut pairs = Vec::new();
    let mut exit = None;
    let mut lines = TRANSCRIPT.lines();
    while let Some(line) = lines.next() {
        if let Some(req) = line.strip_prefix("> ") {
            let reply = lines.next().and_then(|l| l.strip_prefix("< "));
            pairs.push((req, reply.expect("every request has its reply")));
        } else if let Some(record) = line.strip_prefix("@ exit.json ") {
            exit = Some(record);
        }
    }
    (pairs, exit.expect("the transcript has the exit record"))
}

#[test]
fn the_transcript_covers_every_request_and_reply() {
    let (pairs, _) = exchanges();
    assert!(pairs.len() >= 30, "{}", pairs.len());
    let parsed: Vec<_> = pairs.iter().map(|(q, _)| Request::parse(q)).collect();
    for kind in [
        "Hello", "Wait", "Signal", "Stop", "Inspect", "Stats", "Exec",
    ] {
        assert!(
            parsed
                .iter()
                .any(|r| r.as_ref().is_ok_and(|r| format!("{r:?}").starts_with(kind))),
            "no {kind} request in the transcript"
        );
    }
}

#[test]
fn requests_parse_and_are_written_back_byte_for_byte() {
    let (pairs, _) = exchanges();
    let mut checked = 0;
    for (line, _) in pairs {
        if let Ok(req) = Request::parse(line) {
            assert_eq!(req.line().unwrap(), line.trim(), "{line:?}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked}");
}

#[test]
fn replies_parse_and_are_written_back_byte_for_byte() {
    let (pairs, _) = exchanges();
    let mut checked = 0;
    for (req, reply) in pairs {
        let Ok(request) = Request::parse(req) else {
            continue;
        };
        let parsed = Reply::parse(&request, reply).unwrap();
        assert_eq!(parsed.line(), reply, "reply to {req:?}");
        checked += 1;
    }
    assert!(checked >= 20, "{checked}");
}

#[test]
fn refusals_of_unreadable_requests_are_the_shims_words() {
    let (pairs, _) = exchanges();
    let mut checked = 0;
    for (req, reply) in pairs {
        match Request::parse(req) {
            // The shim names an unreadable exec only when the task could take one; these
            // transcripts' task is not isolated, so it said that instead.
            Err(RequestError::BadExec(_)) | Ok(_) => {}
            Err(e) => {
                assert_eq!(Reply::Refused(e.to_string()).line(), reply, "{req:?}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 6, "{checked}");
}

#[test]
fn the_exit_record_reads_and_is_written_back_byte_for_byte() {
    let (_, record) = exchanges();
    let parsed = ExitRecord::parse(record.as_bytes()).unwrap();
    assert_eq!(parsed.exit.exit_code, 143);
    assert_eq!(parsed.exit.signal, 15);
    assert_eq!(String::from_utf8(parsed.bytes()).unwrap(), record);
}
