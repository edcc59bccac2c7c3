//! Image references: `[registry/]repo[:tag][@digest]`, checked before the engine sees them.

use super::ImageError;

/// Docker Hub's key in a docker config's `auths`.
pub const DOCKER_HUB: &str = "https://index.docker.io/v1/";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Everything before the tag or digest (`registry:5000/team/app`).
    pub repo: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, ImageError> {
        let bad = |why: &str| ImageError::InvalidReference(format!("{s:?}: {why}"));
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if s.len() > 512 {
            return Err(bad("longer than 512 characters"));
        }
        if let Some(c) = s.chars().find(|c| {
            !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@'))
        }) {
            return Err(bad(&format!("{c:?} is not allowed in an image reference")));
        }
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) => {
                if !d.starts_with("sha256:") || d.len() != 71 {
                    return Err(bad("a digest is sha256: and 64 hex digits"));
                }
                (n, Some(d.to_string()))
            }
            None => (s, None),
        };
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (
                &name[..last_slash + i],
                Some(name[last_slash + i + 1..].to_string()),
            ),
            None => (name, None),
        };
        if repo.is_empty()
            || repo.starts_with(['/', '.', '-', ':'])
            || repo.ends_with('/')
            || repo.contains("//")
        {
            return Err(bad("not a repository name"));
        }
        if repo
            .split('/')
            .skip(1)
            .any(|p| p.chars().any(|c| c.is_ascii_uppercase()))
        {
            return Err(bad("repository names are lower case"));
        }
        if let Some(t) = &tag
            && (t.is_empty() || t.len() > 128 || t.starts_with(['.', '-']) || t.contains(':'))
        {
            return Err(bad("not a valid tag"));
        }
        Ok(Reference {
            repo: repo.to_string(),
            tag,
            digest,
        })
    }

    /// Nomad pulls every time when the tag is omitted or `latest` (and no digest pins it).
    pub fn always_pull(&self) -> bool {
        self.digest.is_none() && self.tag.as_deref().is_none_or(|t| t == "latest")
    }

    /// The tag (or digest) to pull.
    pub fn pull_tag(&self) -> String {
        self.digest
            .clone()
            .or_else(|| self.tag.clone())
            .unwrap_or_else(|| "latest".into())
    }

    /// The registry the image comes from (`host[:port]`), or Docker Hub's key.
    pub fn registry(&self) -> String {
        match self.repo.split_once('/') {
            Some((first, _))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                first.to_string()
            }
            _ => DOCKER_HUB.to_string(),
        }
    }

    /// The full reference, with `latest` when no tag was given.
    pub fn full(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}@{d}", self.repo),
            None => format!("{}:{}", self.repo, self.tag.as_deref().unwrap_or("latest")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = Reference::parse("127.0.0.1:5000/drover/busybox:1.0").unwrap();
        assert_eq!(r.repo, "127.0.0.1:5000/drover/busybox");
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert!(!r.always_pull());
        let r = Reference::parse("redis").unwrap();
        assert_eq!(r.registry(), DOCKER_HUB);
        assert!(r.always_pull());
        assert_eq!(r.full(), "redis:latest");
        assert!(
            Reference::parse("localhost/x:latest")
                .unwrap()
                .always_pull()
        );
        assert_eq!(
            Reference::parse("localhost/x:latest").unwrap().registry(),
            "localhost"
        );
        let d = format!("app@sha256:{}", "a".repeat(64));
        let r = Reference::parse(&d).unwrap();
        assert!(!r.always_pull());
        assert_eq!(r.pull_tag(), format!("sha256:{}", "a".repeat(64)));
        for bad in [
            "",
            "Bad Image!!",
            "a b",
            "x@md5:1",
            "/abs",
            "a//b",
            "a:",
            "a/B/c",
            "x:-t",
            "a\nb",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
    }
}
