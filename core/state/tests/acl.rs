//! ACL policies, tokens and roles in the state store: the bootstrap once (and again at the
//! reset index), tokens found by the hash of their secret only, role names unique,
//! snapshots, restores, and the server version the commands need.

use drover_model::{AclPolicy, AclRole, AclRolePolicyLink, AclToken, AclTokenType, Index};
use drover_state::{ACL_VERSION, Command, Entry, StateSnapshot, StateStore, Table};

fn write(store: &StateStore, index: Index, command: Command) -> drover_state::Response {
    store.apply(index, &Entry { time: 9, command })
}

fn token(accessor: &str, hash: &str, t: AclTokenType) -> AclToken {
    AclToken {
        accessor_id: accessor.into(),
        secret_hash: hash.into(),
        token_type: t,
        // A secret sent along is never stored.
        secret_id: "plain-secret".into(),
        ..Default::default()
    }
}

fn bootstrap(
    store: &StateStore,
    index: Index,
    accessor: &str,
    reset: Option<Index>,
) -> Option<String> {
    let token = token(accessor, &format!("h-{accessor}"), AclTokenType::Management);
    write(
        store,
        index,
        Command::AclBootstrap {
            token,
            reset_index: reset,
        },
    )
    .error
}

#[test]
fn the_bootstrap_happens_once_unless_reset_at_its_index() {
    let st = StateStore::new();
    assert_eq!(bootstrap(&st, 5, "a", None), None);
    let e = bootstrap(&st, 6, "b", None).unwrap();
    assert_eq!(e, "ACL bootstrap already done (reset index: 5)");
    // A stale reset index does not reopen it; the bootstrap's own index does.
    assert!(bootstrap(&st, 7, "b", Some(4)).is_some());
    assert_eq!(bootstrap(&st, 8, "b", Some(5)), None);
    let snap = st.snapshot();
    assert_eq!(snap.acl_bootstrap_index(), Some(8));
    assert!(snap.acl_token("a").is_some() && snap.acl_token("b").is_some());
    // A client token cannot be the bootstrap token.
    let st = StateStore::new();
    let t = token("c", "h-c", AclTokenType::Client);
    let r = write(
        &st,
        1,
        Command::AclBootstrap {
            token: t,
            reset_index: None,
        },
    );
    assert!(r.error.is_some() && st.snapshot().acl_bootstrap_index().is_none());
}

#[test]
fn tokens_are_found_by_their_secret_hash_and_keep_it_on_update() {
    let st = StateStore::new();
    let t = token("acc", "hash-1", AclTokenType::Client);
    assert_eq!(
        write(
            &st,
            1,
            Command::AclTokenUpsert {
                tokens: vec![t.clone()]
            }
        )
        .error,
        None
    );
    let snap = st.snapshot();
    let stored = snap.acl_token_by_secret_hash("hash-1").unwrap();
    assert_eq!(stored.accessor_id, "acc");
    assert_eq!(stored.secret_id, "", "a secret is never stored");
    // An update cannot swap the secret.
    let mut upd = t.clone();
    upd.secret_hash = "hash-2".into();
    upd.name = "renamed".into();
    write(&st, 2, Command::AclTokenUpsert { tokens: vec![upd] });
    let snap = st.snapshot();
    assert!(snap.acl_token_by_secret_hash("hash-2").is_none());
    let t1 = snap.acl_token_by_secret_hash("hash-1").unwrap();
    assert_eq!(
        (t1.name.as_str(), t1.create_index, t1.modify_index),
        ("renamed", 1, 2)
    );
    // Another token with the same secret, or none, is refused and changes nothing.
    let dup = token("other", "hash-1", AclTokenType::Client);
    assert!(
        write(&st, 3, Command::AclTokenUpsert { tokens: vec![dup] })
            .error
            .is_some()
    );
    let none = token("none", "", AclTokenType::Client);
    assert!(
        write(&st, 4, Command::AclTokenUpsert { tokens: vec![none] })
            .error
            .is_some()
    );
    assert_eq!(st.snapshot().acl_tokens().count(), 1);
    assert_eq!(st.snapshot().table_index(Table::AclTokens), 2);
    write(
        &st,
        5,
        Command::AclTokenDelete {
            accessors: vec!["acc".into()],
        },
    );
    assert!(st.snapshot().acl_token_by_secret_hash("hash-1").is_none());
}

#[test]
fn role_names_are_unique() {
    let st = StateStore::new();
    let role = |id: &str, name: &str| AclRole {
        id: id.into(),
        name: name.into(),
        policies: vec![AclRolePolicyLink { name: "p".into() }],
        ..Default::default()
    };
    assert_eq!(
        write(
            &st,
            1,
            Command::AclRoleUpsert {
                roles: vec![role("1", "ops")]
            }
        )
        .error,
        None
    );
    assert!(
        write(
            &st,
            2,
            Command::AclRoleUpsert {
                roles: vec![role("2", "ops")]
            }
        )
        .error
        .is_some()
    );
    // Renaming frees the old name.
    write(
        &st,
        3,
        Command::AclRoleUpsert {
            roles: vec![role("1", "dev")],
        },
    );
    assert_eq!(
        write(
            &st,
            4,
            Command::AclRoleUpsert {
                roles: vec![role("2", "ops")]
            }
        )
        .error,
        None
    );
    let snap = st.snapshot();
    assert_eq!(snap.acl_role_by_name("dev").unwrap().id, "1");
    assert_eq!(snap.acl_role_by_name("ops").unwrap().id, "2");
}

fn populated() -> StateStore {
    let st = StateStore::new();
    bootstrap(&st, 1, "root", None);
    let policy = AclPolicy {
        name: "read".into(),
        rules: "namespace \"*\" { policy = \"read\" }".into(),
        ..Default::default()
    };
    write(
        &st,
        2,
        Command::AclPolicyUpsert {
            policies: vec![policy],
        },
    );
    let role = AclRole {
        id: "r1".into(),
        name: "readers".into(),
        policies: vec![AclRolePolicyLink {
            name: "read".into(),
        }],
        ..Default::default()
    };
    write(&st, 3, Command::AclRoleUpsert { roles: vec![role] });
    st
}

#[test]
fn acl_tables_survive_snapshots_and_restores() {
    let st = populated();
    let back = StateSnapshot::from_bytes(&st.snapshot().to_bytes()).unwrap();
    assert_eq!(back.acl_bootstrap_index(), Some(1));
    assert!(
        back.acl_token_by_secret_hash("h-root").is_some(),
        "the secondary index is rebuilt"
    );
    assert!(back.acl_policy("read").is_some());
    assert_eq!(back.acl_role_by_name("readers").unwrap().id, "r1");
    // A backup restored (in chunks) into a fresh cluster brings its tokens, and the
    // bootstrap stays closed.
    let chunks = st.snapshot().restore_chunks(1 << 20).unwrap();
    let fresh = StateStore::new();
    for (seq, rows) in chunks.iter().enumerate() {
        let c = Command::RestoreChunk {
            id: "r".into(),
            seq: seq as u32,
            rows: rows.clone(),
        };
        assert_eq!(write(&fresh, 10 + seq as Index, c).error, None);
    }
    let swap = Command::RestoreSwap {
        id: "r".into(),
        chunks: chunks.len() as u32,
    };
    assert_eq!(write(&fresh, 20, swap).error, None);
    let s = fresh.snapshot();
    assert!(s.acl_token_by_secret_hash("h-root").is_some());
    assert!(s.acl_policy("read").is_some() && s.acl_role("r1").is_some());
    assert!(
        bootstrap(&fresh, 21, "again", None).is_some(),
        "a restore reopened the bootstrap"
    );
}

#[test]
fn acl_commands_need_acl_servers() {
    let c = Command::AclTokenDelete { accessors: vec![] };
    assert_eq!(c.min_version(), ACL_VERSION);
    const { assert!(drover_state::SERVER_VERSION >= ACL_VERSION) };
    // A state written before ACLs loads with none.
    let old = serde_json::json!({
        "v": 2, "index": 3, "table_index": {}, "jobs": [], "job_versions": [],
        "allocs": [], "evals": [], "nodes": []
    });
    let s = StateSnapshot::from_value(old).unwrap();
    assert_eq!(s.acl_tokens().count(), 0);
    assert_eq!(s.acl_bootstrap_index(), None);
}
