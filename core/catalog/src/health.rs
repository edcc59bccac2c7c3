//! consul-template's health filters (`service "web|passing,warning"`, `service "web" "any"`).

use drover_model::ServiceHealth;

/// Consul's word for a health.
pub fn health_word(h: ServiceHealth) -> &'static str {
    match h {
        ServiceHealth::Passing => "passing",
        ServiceHealth::Warning => "warning",
        ServiceHealth::Critical => "critical",
    }
}

/// Which instances a consul-template `service` query returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HealthFilter {
    /// No filter given: passing instances only (consul-template asks Consul for
    /// `passingOnly`).
    #[default]
    Passing,
    /// `any`: every instance.
    Any,
    /// A list of healths (`passing,warning`).
    Only(Vec<ServiceHealth>),
}

/// Why a health filter is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthFilterError {
    #[error("health filter {0:?} is not one of any, passing, warning, critical (comma-separated)")]
    Unknown(String),
    #[error("health filter \"any\" cannot be combined with other healths")]
    AnyWithOthers,
}

impl HealthFilter {
    /// Parses consul-template's filter: empty (passing only), `any`, or healths separated by
    /// commas. `unknown` is accepted (Consul's word) and matches nothing Drover reports.
    pub fn parse(s: &str) -> Result<HealthFilter, HealthFilterError> {
        let words: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .collect();
        if words.is_empty() {
            return Ok(HealthFilter::Passing);
        }
        if words.contains(&"any") {
            return if words.len() == 1 {
                Ok(HealthFilter::Any)
            } else {
                Err(HealthFilterError::AnyWithOthers)
            };
        }
        let mut only = Vec::new();
        for w in words {
            match w {
                "passing" => only.push(ServiceHealth::Passing),
                "warning" => only.push(ServiceHealth::Warning),
                "critical" => only.push(ServiceHealth::Critical),
                "unknown" => {}
                other => return Err(HealthFilterError::Unknown(other.to_string())),
            }
        }
        Ok(HealthFilter::Only(only))
    }

    pub fn accepts(&self, h: ServiceHealth) -> bool {
        match self {
            HealthFilter::Passing => h == ServiceHealth::Passing,
            HealthFilter::Any => true,
            HealthFilter::Only(list) => list.contains(&h),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServiceHealth::*;

    #[test]
    fn filters_read_like_consul_templates() {
        let f = HealthFilter::parse("").unwrap();
        assert!(f.accepts(Passing) && !f.accepts(Warning) && !f.accepts(Critical));
        let f = HealthFilter::parse("any").unwrap();
        assert!(f.accepts(Passing) && f.accepts(Warning) && f.accepts(Critical));
        let f = HealthFilter::parse("passing, warning").unwrap();
        assert!(f.accepts(Passing) && f.accepts(Warning) && !f.accepts(Critical));
        let f = HealthFilter::parse("critical").unwrap();
        assert!(!f.accepts(Passing) && f.accepts(Critical));
        assert_eq!(
            HealthFilter::parse("any,passing"),
            Err(HealthFilterError::AnyWithOthers)
        );
        let e = HealthFilter::parse("healthy").unwrap_err();
        assert!(e.to_string().contains("\"healthy\""), "{e}");
    }
}
