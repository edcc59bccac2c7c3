//! Glob matching as Nomad's policies use it (ryanuber/go-glob): `*` matches any run of
//! characters, nothing else is special.

/// Whether `name` matches `pattern`.
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) {
        return false;
    }
    let mut rest = &name[first.len()..];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// How far a matching glob is from `name` (Nomad's "difference": the characters the
/// stars stand for, plus the number of stars); the smallest is the closest.
pub(crate) fn difference(pattern: &str, name: &str) -> i64 {
    name.len() as i64 - pattern.len() as i64 + pattern.matches('*').count() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_nomads() {
        assert!(matches("*", "anything"));
        assert!(matches("prod-*", "prod-web"));
        assert!(!matches("prod-*", "dev-web"));
        assert!(matches("*-web", "prod-web"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxc"));
        assert!(!matches("ab*ba", "aba"));
        assert!(matches("exact", "exact") && !matches("exact", "exactly"));
        assert!(difference("prod-*", "prod-web") < difference("*", "prod-web"));
    }
}
