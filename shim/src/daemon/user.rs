//! The task's user: its uid, primary gid and supplementary groups, looked up before fork.

use std::ffi::CString;

/// The task's credentials, resolved before fork.
pub(crate) struct Credentials {
    pub(crate) name: String,
    pub(crate) uid: libc::uid_t,
    pub(crate) gid: libc::gid_t,
    pub(crate) groups: Vec<libc::gid_t>,
}

pub(crate) fn resolve_user(name: &str) -> Result<Credentials, String> {
    let user = nix::unistd::User::from_name(name)
        .map_err(|e| format!("cannot look up user {name:?}: {e}"))?
        .ok_or_else(|| format!("user {name:?} does not exist on this node"))?;
    let cname = CString::new(name).map_err(|_| format!("bad user name {name:?}"))?;
    let groups = nix::unistd::getgrouplist(&cname, user.gid)
        .map_err(|e| format!("cannot list the groups of user {name:?}: {e}"))?;
    Ok(Credentials {
        name: name.to_string(),
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups: groups.into_iter().map(|g| g.as_raw()).collect(),
    })
}
