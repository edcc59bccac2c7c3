//! Network namespaces made for a test with `ip netns` (iproute2), as the client's network
//! hook makes them: `/run/netns/<name>`.

use std::process::{Command, Stdio};

/// A named network namespace, deleted when dropped (even by a failed assertion).
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Makes `name` afresh (a leftover of an earlier run is deleted first).
    pub fn new(name: &str) -> NetNs {
        let _ = Command::new("ip")
            .args(["netns", "delete", name])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", name]);
        NetNs { name: name.into() }
    }

    /// Adds a bridge named `iface` inside, so the namespace has an interface of its own
    /// besides `lo`.
    pub fn with_bridge(self, iface: &str) -> NetNs {
        ip(&["-n", &self.name, "link", "add", iface, "type", "bridge"]);
        self
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `net:[<inode>]`: what `readlink /proc/self/ns/net` prints inside.
    pub fn link(&self) -> String {
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(self.path())
            .unwrap_or_else(|e| panic!("{}: {e}", self.path()))
            .ino();
        format!("net:[{ino}]")
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

fn ip(args: &[&str]) {
    let st = Command::new("ip")
        .args(args)
        .status()
        .expect("run ip (iproute2)");
    assert!(st.success(), "ip {args:?} failed: {st}");
}
