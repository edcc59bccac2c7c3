//! `choose=N|key` (Nomad's API, consul-template's `nomadService N key "name"`): the `n`
//! instances that rank highest for a key under rendezvous hashing, so that one key keeps
//! the same instances while others come and go.

use std::borrow::Borrow;

use drover_model::ServiceRegistration;

/// Why a `choose` value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("choose {0:?} is not of the form <number>|<key> (a number above 0 and a key)")]
pub struct ChooseError(pub String);

/// `N|key`: how many instances, and the key they are chosen for.
pub fn parse_choose(c: &str) -> Result<(usize, String), ChooseError> {
    let bad = || ChooseError(c.to_string());
    let (n, key) = c.split_once('|').ok_or_else(bad)?;
    let n: usize = n.parse().map_err(|_| bad())?;
    if n == 0 || key.is_empty() {
        return Err(bad());
    }
    Ok((n, key.to_string()))
}

/// The `n` instances that rank highest for `key`: each instance's weight is a hash of the
/// key and its id (stable per key, not Nomad's exact choice), highest first.
pub fn choose<R: Borrow<ServiceRegistration>>(mut regs: Vec<R>, n: usize, key: &str) -> Vec<R> {
    let weight = |r: &R| fnv1a(key.as_bytes(), r.borrow().id.as_bytes());
    regs.sort_by_cached_key(|r| std::cmp::Reverse(weight(r)));
    regs.truncate(n);
    regs
}

/// FNV-1a over two byte strings: stable across builds and machines (unlike std's hasher).
fn fnv1a(a: &[u8], b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in a.iter().chain([0u8].iter()).chain(b) {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: &str) -> ServiceRegistration {
        ServiceRegistration {
            id: id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn choose_keeps_a_keys_instances_while_others_come_and_go() {
        let all: Vec<ServiceRegistration> = (0..20).map(|i| reg(&format!("r{i}"))).collect();
        let picked: Vec<String> = choose(all.iter().collect(), 3, "client-a")
            .iter()
            .map(|r| r.id.clone())
            .collect();
        assert_eq!(picked.len(), 3);
        // Removing instances that were not picked changes nothing for this key.
        let fewer: Vec<&ServiceRegistration> = all
            .iter()
            .filter(|r| picked.contains(&r.id) || r.id.ends_with('7'))
            .collect();
        let again: Vec<String> = choose(fewer, 3, "client-a")
            .iter()
            .map(|r| r.id.clone())
            .collect();
        assert_eq!(again, picked);
        // Another key is spread elsewhere (not always the same three).
        let keys_pick_differently = (0..10).any(|k| {
            let other: Vec<String> = choose(all.iter().collect(), 3, &format!("k{k}"))
                .iter()
                .map(|r| r.id.clone())
                .collect();
            other != picked
        });
        assert!(keys_pick_differently);
        // Owned rows and shared ones choose alike.
        let owned: Vec<String> = choose(all.clone(), 3, "client-a")
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(owned, picked);
    }

    #[test]
    fn choose_is_parsed_strictly() {
        assert!(matches!(parse_choose("2|abc"), Ok((2, k)) if k == "abc"));
        for bad in ["2", "x|abc", "0|abc", "2|"] {
            assert!(parse_choose(bad).is_err(), "{bad}");
        }
    }
}
