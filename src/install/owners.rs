//! Owners and groups of installed files, resolved through NSS (`getpwnam_r`/`getgrnam_r`, as
//! sops-nix does), so users from LDAP, `systemd-userdbd` or `nss-systemd` work as well as
//! `/etc/passwd`. `group: null` is the owner's primary group. On macOS a `root` group is
//! gid 0 (`wheel`): there is no group of that name there.
//!
//! Every unknown owner or group is a problem naming the file, reported with all the others
//! before anything is written. Dry runs, `--ignore-passwd` and `--user-mode` resolve nothing:
//! the first two use 0:0 (the users a dry activation would create may not exist yet, sops
//! #222), user mode changes no owner at all.

use std::collections::BTreeMap;

use super::Problem;
use super::manifest::Item;

/// A resolved owner and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ids {
    pub uid: u32,
    pub gid: u32,
}

/// How owners are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lookup {
    /// Through NSS.
    Nss,
    /// 0:0 for every file, nothing looked up (dry runs, `--ignore-passwd`).
    Root,
    /// No owner is changed (`--user-mode`).
    Keep,
}

/// The ids to give each of `items` (`None`: leave the owner alone).
pub(super) fn resolve_all(
    items: &[&Item],
    how: Lookup,
    problems: &mut Vec<Problem>,
) -> Vec<Option<Ids>> {
    match how {
        Lookup::Keep => return items.iter().map(|_| None).collect(),
        Lookup::Root => return items.iter().map(|_| Some(Ids { uid: 0, gid: 0 })).collect(),
        Lookup::Nss => {}
    }
    let mut users: BTreeMap<String, Result<(u32, u32), String>> = BTreeMap::new();
    let mut groups: BTreeMap<String, Result<u32, String>> = BTreeMap::new();
    items
        .iter()
        .map(|item| {
            let subject = format!("file {}", item.rel);
            let user = users
                .entry(item.owner.clone())
                .or_insert_with(|| user(&item.owner))
                .clone();
            let (uid, primary) = match user {
                Ok(ids) => ids,
                Err(e) => {
                    problems.push(Problem::new(&subject, e));
                    return None;
                }
            };
            let gid = match &item.group {
                None => primary,
                Some(g) => match groups.entry(g.clone()).or_insert_with(|| group(g)) {
                    Ok(gid) => *gid,
                    Err(e) => {
                        problems.push(Problem::new(&subject, e.clone()));
                        return None;
                    }
                },
            };
            Some(Ids { uid, gid })
        })
        .collect()
}

/// The uid and primary gid of `name`.
fn user(name: &str) -> Result<(u32, u32), String> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        Ok(None) => Err(format!(
            "owner {name:?} is not a user on this system (getpwnam found nothing)"
        )),
        Err(e) => Err(format!("cannot look up owner {name:?}: {e}")),
    }
}

/// The gid of `name`.
fn group(name: &str) -> Result<u32, String> {
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        // macOS has no group called root; gid 0 is `wheel` (DESIGN §2).
        Ok(None) if cfg!(target_os = "macos") && name == "root" => Ok(0),
        Ok(None) => Err(format!(
            "group {name:?} is not a group on this system (getgrnam found nothing)"
        )),
        Err(e) => Err(format!("cannot look up group {name:?}: {e}")),
    }
}

/// The group of the mount point and generation directories: `keys` (NixOS), else `nogroup`,
/// else 0. With mode 0751 services traverse them without being in it (sops #86).
pub(super) fn keys_gid() -> u32 {
    ["keys", "nogroup"]
        .iter()
        .find_map(|g| group(g).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::manifest::Source;
    use crate::spec::NeededFor;

    fn item(rel: &str, owner: &str, group: Option<&str>) -> Item {
        Item {
            rel: rel.into(),
            source: Source::Path("/nix/store/x".into()),
            secret: true,
            owner: owner.into(),
            group: group.map(Into::into),
            mode: 0o400,
            needed_for: NeededFor::Services,
            restart_units: vec![],
            reload_units: vec![],
            link: None,
        }
    }

    #[test]
    fn owners_resolve_through_nss_and_unknown_ones_are_all_named() {
        let items = [
            item("g/root", "root", Some("root")),
            item("g/primary", "root", None),
            item("g/nobody", "nobody", None),
            item("g/ghost", "no-such-user-vars", None),
            item("g/badgroup", "root", Some("no-such-group-vars")),
        ];
        let refs: Vec<&Item> = items.iter().collect();
        let mut problems = Vec::new();
        let ids = resolve_all(&refs, Lookup::Nss, &mut problems);
        assert_eq!(ids[0], Some(Ids { uid: 0, gid: 0 }));
        assert_eq!(ids[1], Some(Ids { uid: 0, gid: 0 }));
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        assert_eq!(
            ids[2],
            Some(Ids {
                uid: nobody.uid.as_raw(),
                gid: nobody.gid.as_raw()
            })
        );
        assert_eq!(ids[3], None);
        assert_eq!(ids[4], None);
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(
            text[0].starts_with("file g/ghost: owner \"no-such-user-vars\""),
            "{text:?}"
        );
        assert!(
            text[1].starts_with("file g/badgroup: group \"no-such-group-vars\""),
            "{text:?}"
        );

        let mut none = Vec::new();
        assert!(
            resolve_all(&refs, Lookup::Keep, &mut none)
                .iter()
                .all(Option::is_none)
        );
        let root = resolve_all(&refs, Lookup::Root, &mut none);
        assert!(root.iter().all(|i| *i == Some(Ids { uid: 0, gid: 0 })));
        assert!(none.is_empty(), "nothing is looked up");
    }
}
