//! Workload identities (issue 22): RS256 JWTs signed with a root key's RSA key, Nomad's
//! claims, verification pinned to RS256 against the keyring's public keys, the JWKS that
//! publishes those keys, and the implicit variable access the default identity grants.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use drover_model::RootKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};

use crate::{KeyringError, RootKeyMaterial};

/// The only algorithm identities are signed and verified with.
pub const ALGORITHM: &str = "RS256";
/// The audience of the default identity (Nomad's).
pub const DEFAULT_AUDIENCE: &str = "nomadproject.io";
/// The name of a task's default identity.
pub const DEFAULT_IDENTITY: &str = "default";
/// The longest token looked at: anything longer is not an identity (bounds what a caller
/// makes the server decode).
pub const MAX_TOKEN: usize = 16 * 1024;

/// What went wrong verifying an identity. The message says which check failed, never
/// echoes the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("the token is not a JWT (three base64url parts, at most {MAX_TOKEN} bytes)")]
    Malformed,
    #[error("the token's algorithm {0:?} is refused: workload identities are RS256")]
    Algorithm(String),
    #[error("the token names signing key {0:?}, which is not in the keyring")]
    UnknownKey(String),
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token carries no workload claims")]
    NotAWorkload,
}

/// The audience claim: one string or a list (RFC 7519 allows both; one is written as a
/// string, as Nomad does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(untagged)]
pub enum Audience {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn from_list(mut aud: Vec<String>) -> Audience {
        match aud.len() {
            0 => Audience::None,
            1 => Audience::One(aud.remove(0)),
            _ => Audience::Many(aud),
        }
    }

    pub fn contains(&self, a: &str) -> bool {
        match self {
            Audience::None => false,
            Audience::One(x) => x == a,
            Audience::Many(xs) => xs.iter().any(|x| x == a),
        }
    }

    fn is_none(&self) -> bool {
        matches!(self, Audience::None)
    }
}

/// A workload identity's claims: Nomad's names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WorkloadClaims {
    /// `region:namespace:job:group:task:identity`.
    pub sub: String,
    #[serde(default, skip_serializing_if = "Audience::is_none")]
    pub aud: Audience,
    /// Unix seconds.
    pub iat: i64,
    pub nbf: i64,
    /// Unix seconds; none: the identity lives as long as its allocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    pub jti: String,
    #[serde(default)]
    pub nomad_namespace: String,
    #[serde(default)]
    pub nomad_job_id: String,
    #[serde(default)]
    pub nomad_allocation_id: String,
    #[serde(default)]
    pub nomad_task: String,
}

impl WorkloadClaims {
    /// The identity's name: the last field of `sub`.
    pub fn identity_name(&self) -> &str {
        self.sub.rsplit(':').next().unwrap_or("")
    }
}

/// `region:namespace:job:group:task:identity`, Nomad's subject.
pub fn subject(
    region: &str,
    namespace: &str,
    job: &str,
    group: &str,
    task: &str,
    identity: &str,
) -> String {
    format!("{region}:{namespace}:{job}:{group}:{task}:{identity}")
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    typ: String,
}

/// Signs `claims` with `key` (RS256, `kid` = the key's id). CPU-bound (an RSA signature):
/// call it off the async runtime.
pub fn sign(key: &RootKeyMaterial, claims: &WorkloadClaims) -> Result<String, KeyringError> {
    let header = Header {
        alg: ALGORITHM.into(),
        kid: key.key_id.clone(),
        typ: "JWT".into(),
    };
    let signing_input = format!("{}.{}", b64_json(&header), b64_json(claims));
    let pair = ring::signature::RsaKeyPair::from_pkcs8(key.signing_key_pkcs8()).map_err(|e| {
        KeyringError::Corrupt {
            what: format!("root key {}'s signing key", key.key_id),
            reason: e.to_string(),
        }
    })?;
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut sig,
    )
    .map_err(|_| KeyringError::Generate("RSA signature".into()))?;
    Ok(format!("{signing_input}.{}", B64URL.encode(sig)))
}

fn b64_json(v: &impl Serialize) -> String {
    B64URL.encode(serde_json::to_vec(v).expect("a JWT header or claims serialize"))
}

/// A root key's public key as RSA modulus and exponent (big-endian bytes).
fn public_parts(key: &RootKey) -> Option<(Vec<u8>, Vec<u8>)> {
    use base64::engine::general_purpose::STANDARD;
    let der = STANDARD.decode(&key.public_key).ok()?;
    let public = rsa::RsaPublicKey::from_public_key_der(&der).ok()?;
    Some((public.n().to_bytes_be(), public.e().to_bytes_be()))
}

/// Verifies `token` against `keys` (every root key the keyring holds: a key removed from
/// the keyring no longer verifies what it signed) at `now` (unix seconds): RS256 only, the
/// `kid` names the key, the signature, `nbf` and `exp`. Returns the claims.
pub fn verify<'a>(
    token: &str,
    keys: impl IntoIterator<Item = &'a RootKey>,
    now: i64,
) -> Result<WorkloadClaims, IdentityError> {
    if token.len() > MAX_TOKEN {
        return Err(IdentityError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdentityError::Malformed);
    };
    let decode = |p: &str| B64URL.decode(p).map_err(|_| IdentityError::Malformed);
    let header: Header =
        serde_json::from_slice(&decode(h)?).map_err(|_| IdentityError::Malformed)?;
    if header.alg != ALGORITHM {
        return Err(IdentityError::Algorithm(header.alg));
    }
    let key = keys
        .into_iter()
        .find(|k| k.key_id == header.kid)
        .ok_or_else(|| IdentityError::UnknownKey(header.kid.clone()))?;
    let (n, e) = public_parts(key).ok_or_else(|| IdentityError::UnknownKey(header.kid.clone()))?;
    let signed = &token[..h.len() + 1 + c.len()];
    ring::signature::RsaPublicKeyComponents { n, e }
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            signed.as_bytes(),
            &decode(s)?,
        )
        .map_err(|_| IdentityError::Signature)?;
    let claims: WorkloadClaims =
        serde_json::from_slice(&decode(c)?).map_err(|_| IdentityError::NotAWorkload)?;
    if claims.nomad_allocation_id.is_empty() || claims.nomad_job_id.is_empty() {
        return Err(IdentityError::NotAWorkload);
    }
    if claims.nbf > now {
        return Err(IdentityError::NotYetValid);
    }
    if claims.exp.is_some_and(|exp| exp <= now) {
        return Err(IdentityError::Expired);
    }
    Ok(claims)
}

/// Whether `token` looks like a JWT rather than an ACL token's secret (a UUID): the API
/// tries it as a workload identity then.
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|b| *b == b'.').count() == 2
}

/// One key of the JWKS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub usage: String,
    pub n: String,
    pub e: String,
}

/// The JSON Web Key Set of `keys` (`/.well-known/jwks.json`): their RSA public keys.
pub fn jwks<'a>(keys: impl IntoIterator<Item = &'a RootKey>) -> serde_json::Value {
    let keys: Vec<Jwk> = keys
        .into_iter()
        .filter_map(|k| {
            let (n, e) = public_parts(k)?;
            Some(Jwk {
                kty: "RSA".into(),
                kid: k.key_id.clone(),
                alg: ALGORITHM.into(),
                usage: "sig".into(),
                n: B64URL.encode(n),
                e: B64URL.encode(e),
            })
        })
        .collect();
    serde_json::json!({ "keys": keys })
}

/// The variables a workload's default identity may read and list without any ACL policy
/// (Nomad's implicit policy): `nomad/jobs/<job>`, `nomad/jobs/<job>/<group>` and
/// `nomad/jobs/<job>/<group>/<task>` in its namespace.
///
/// The path is compared segment by segment (split on `/`), each segment whole. A job id,
/// group or task name that itself contains `/` therefore never matches its own paths: the
/// path `nomad/jobs/a/web` is only ever job `a`'s group `web`, never job `a/web`'s (which
/// has no implicit variable access; give it an ACL policy instead).
pub fn implicit_variable_access(
    claims: &WorkloadClaims,
    group: &str,
    namespace: &str,
    path: &str,
) -> bool {
    if namespace != claims.nomad_namespace {
        return false;
    }
    let own = [
        "nomad",
        "jobs",
        claims.nomad_job_id.as_str(),
        group,
        claims.nomad_task.as_str(),
    ];
    let parts: Vec<&str> = path.split('/').collect();
    (3..=own.len()).contains(&parts.len()) && parts.iter().zip(own).all(|(p, o)| *p == o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root_key::{new_root_key, tests::kek};

    fn claims(job: &str, task: &str) -> WorkloadClaims {
        WorkloadClaims {
            sub: subject("global", "default", job, "web", task, "default"),
            aud: Audience::One(DEFAULT_AUDIENCE.into()),
            iat: 100,
            nbf: 100,
            exp: Some(200),
            jti: "j".into(),
            nomad_namespace: "default".into(),
            nomad_job_id: job.into(),
            nomad_allocation_id: "a1".into(),
            nomad_task: task.into(),
        }
    }

    #[test]
    fn identities_verify_with_their_key_only_rs256_and_within_their_time() {
        let (key, m) = new_root_key(&kek(1), "k1".into(), 1).unwrap();
        let (other, _) = new_root_key(&kek(1), "k2".into(), 1).unwrap();
        let c = claims("j", "t");
        let jwt = sign(&m, &c).unwrap();
        assert!(looks_like_jwt(&jwt));
        assert_eq!(verify(&jwt, [&other, &key], 150).unwrap(), c);
        assert_eq!(verify(&jwt, [&key], 99), Err(IdentityError::NotYetValid));
        assert_eq!(verify(&jwt, [&key], 200), Err(IdentityError::Expired));
        // A removed key verifies nothing.
        assert_eq!(
            verify(&jwt, [&other], 150),
            Err(IdentityError::UnknownKey("k1".into()))
        );
        // Another key under the same kid: the signature fails.
        let renamed = RootKey {
            key_id: "k1".into(),
            ..other.clone()
        };
        assert_eq!(verify(&jwt, [&renamed], 150), Err(IdentityError::Signature));
        // Altered claims fail; so does alg "none" or HS256.
        let parts: Vec<&str> = jwt.split('.').collect();
        let forged = B64URL.encode(serde_json::to_vec(&claims("other", "t")).unwrap());
        let altered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(verify(&altered, [&key], 150), Err(IdentityError::Signature));
        for alg in ["none", "HS256"] {
            let h = B64URL.encode(format!(r#"{{"alg":"{alg}","kid":"k1"}}"#));
            let t = format!("{h}.{}.{}", parts[1], parts[2]);
            assert_eq!(
                verify(&t, [&key], 150),
                Err(IdentityError::Algorithm(alg.into()))
            );
        }
        assert_eq!(verify("a.b", [&key], 150), Err(IdentityError::Malformed));
        // No exp: valid as long as the allocation (checked by the caller).
        let forever = WorkloadClaims { exp: None, ..c };
        let jwt = sign(&m, &forever).unwrap();
        assert_eq!(verify(&jwt, [&key], i64::MAX).unwrap(), forever);
    }

    #[test]
    fn the_jwks_carries_each_keys_modulus() {
        let (key, _) = new_root_key(&kek(1), "k1".into(), 1).unwrap();
        let set = jwks([&key]);
        let k = &set["keys"][0];
        assert_eq!(k["kid"], "k1");
        assert_eq!(k["alg"], "RS256");
        assert_eq!(k["use"], "sig");
        assert_eq!(k["e"], "AQAB");
        assert_eq!(B64URL.decode(k["n"].as_str().unwrap()).unwrap().len(), 256);
    }

    #[test]
    fn the_implicit_policy_is_the_jobs_own_paths_segment_by_segment() {
        let a = claims("a", "t");
        let ok = |c: &WorkloadClaims, p: &str| implicit_variable_access(c, "web", "default", p);
        assert!(ok(&a, "nomad/jobs/a"));
        assert!(ok(&a, "nomad/jobs/a/web"));
        assert!(ok(&a, "nomad/jobs/a/web/t"));
        assert!(!ok(&a, "nomad/jobs"));
        assert!(!ok(&a, "nomad/jobs/ab"));
        assert!(!ok(&a, "nomad/jobs/a/web/t/x"));
        assert!(!ok(&a, "nomad/jobs/a/db"));
        assert!(!ok(&a, "nomad/jobs/b"));
        assert!(!implicit_variable_access(
            &a,
            "web",
            "other",
            "nomad/jobs/a"
        ));
        // Job "a/web" does not reach job "a"'s group "web", nor anything of its own.
        let slash = claims("a/web", "t");
        assert!(!ok(&slash, "nomad/jobs/a/web"));
        assert!(!ok(&slash, "nomad/jobs/a"));
        assert!(!ok(&slash, "nomad/jobs/a/web/web"));
    }
}
