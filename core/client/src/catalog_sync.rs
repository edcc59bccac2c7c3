//! The client's copy of the service catalog, fed by the servers' `ServicesPush` parts on
//! the node stream (see drover-catalog).

use drover_catalog::{CatalogPart, ServiceCatalog};
use drover_model::ServiceRegistration;
use drover_proto::node::ServicesPush;

/// The largest registration taken from a push (the servers accept 16 KiB).
pub(crate) const MAX_ROW_BYTES: usize = 64 * 1024;

/// Applies one part pushed by the server; a row that does not decode or is too large is
/// skipped with an error in the log (the rest of the change still applies).
pub(crate) fn apply(catalog: &ServiceCatalog, p: ServicesPush) {
    let mut upserts = Vec::with_capacity(p.upserts_json.len());
    for row in &p.upserts_json {
        if row.len() > MAX_ROW_BYTES {
            tracing::error!(
                bytes = row.len(),
                max = MAX_ROW_BYTES,
                "the server pushed a service registration above the size limit; skipped"
            );
            continue;
        }
        match serde_json::from_slice::<ServiceRegistration>(row) {
            Ok(r) => upserts.push(r),
            Err(e) => {
                tracing::error!(error = %e, "the server pushed a malformed service registration; skipped")
            }
        }
    }
    catalog.apply(CatalogPart {
        index: p.index,
        reset: p.reset,
        upserts,
        deletes: p.delete_ids,
        complete: p.complete,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_catalog::ServiceLookup;

    #[test]
    fn bad_rows_are_skipped_and_the_rest_applies() {
        let c = ServiceCatalog::new();
        let good = ServiceRegistration {
            id: "x".into(),
            namespace: "default".into(),
            service_name: "web".into(),
            port: 8080,
            ..Default::default()
        };
        apply(
            &c,
            ServicesPush {
                index: 4,
                reset: true,
                upserts_json: vec![
                    b"{\"Port\": \"not a number\"}".to_vec(),
                    vec![b' '; MAX_ROW_BYTES + 1],
                    serde_json::to_vec(&good).unwrap(),
                ],
                delete_ids: vec![],
                complete: true,
            },
        );
        let got = c.instances("default", "web");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].port, 8080);
        assert_eq!(c.index(), 4);
    }
}
