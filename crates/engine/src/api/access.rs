//! Who may do what. Tokens are random, shown once when made, and kept only as SHA-256
//! hashes in the tokens file (`[api] tokens_file`, by default `access.toml` under
//! `data_dir`). Each names a principal and one role; a role's reach over a policy comes from
//! the policy's `[owners]`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::EngineError;
use crate::policy::Policy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Runs approved restore requests; reads everything.
    Operator,
    /// Asks for restores of, and signs off drills of, the policies it owns.
    RecoveryOwner,
    /// Approves or rejects requests for the policies that name it, never its own.
    Approver,
    /// Reads everything, changes nothing.
    Auditor,
}

impl Role {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "operator" => Ok(Role::Operator),
            "recovery-owner" => Ok(Role::RecoveryOwner),
            "approver" => Ok(Role::Approver),
            "auditor" => Ok(Role::Auditor),
            other => Err(format!(
                "unknown role `{other}` (operator, recovery-owner, approver or auditor)"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::RecoveryOwner => "recovery-owner",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub principal: String,
    pub role: Role,
}

/// What a caller asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    RequestRestore,
    Decide,
    Run { requester: bool },
    SignOff,
}

/// Whether `caller` may do `action` on `policy`; the error says why not.
pub fn allowed(caller: &Caller, action: Action, policy: Option<&Policy>) -> Result<(), String> {
    let who = &caller.principal;
    let owns = |p: &Policy| {
        p.owners
            .recovery
            .as_deref()
            .is_some_and(|o| o.eq_ignore_ascii_case(who))
    };
    let approves = |p: &Policy| {
        p.owners
            .approvers
            .iter()
            .any(|a| a.eq_ignore_ascii_case(who))
    };
    let name = policy.map(|p| p.name.as_str()).unwrap_or("?");
    match (action, caller.role, policy) {
        (Action::Read, _, _) => Ok(()),
        (Action::RequestRestore | Action::SignOff, Role::RecoveryOwner, Some(p)) if owns(p) => {
            Ok(())
        }
        (Action::RequestRestore | Action::SignOff, Role::RecoveryOwner, _) => Err(format!(
            "{who} is not the recovery owner of policy `{name}`"
        )),
        (Action::Decide, Role::Approver, Some(p)) if approves(p) => Ok(()),
        (Action::Decide, Role::Approver, _) => {
            Err(format!("{who} is not an approver of policy `{name}`"))
        }
        (Action::Run { .. }, Role::Operator, _) => Ok(()),
        (Action::Run { requester: true }, Role::RecoveryOwner, Some(p)) if owns(p) => Ok(()),
        (action, role, _) => Err(format!(
            "the {} role may not {}",
            role.as_str(),
            match action {
                Action::Read => "read",
                Action::RequestRestore => "request restores",
                Action::Decide => "approve or reject requests",
                Action::Run { .. } => "run this request",
                Action::SignOff => "sign drills off",
            }
        )),
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensFile {
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub id: String,
    pub principal: String,
    pub role: Role,
    /// SHA-256 of the whole token, hex. The token itself is never stored.
    pub sha256: String,
    pub created_at: jiff::Timestamp,
}

/// `[api] tokens_file`, or `access.toml` under `data_dir`.
pub fn tokens_path(config: &Config) -> PathBuf {
    config
        .api
        .as_ref()
        .and_then(|a| a.tokens_file.as_ref())
        .map(|p| config.base_dir.join(p))
        .unwrap_or_else(|| config.data_dir.join("access.toml"))
}

pub fn load(path: &Path) -> Result<TokensFile, EngineError> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| {
            EngineError::Invalid(vec![crate::error::toml_problem(
                &path.display().to_string(),
                &text,
                &e,
            )])
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokensFile::default()),
        Err(e) => Err(EngineError::Read {
            path: path.display().to_string(),
            source: e,
        }),
    }
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Makes a token for `principal` with `role`, stores its hash, and returns the token (the
/// only time it exists outside the caller's hands) with its entry.
pub fn create(
    path: &Path,
    principal: &str,
    role: Role,
) -> Result<(String, TokenEntry), EngineError> {
    if principal.trim().is_empty() {
        return Err(EngineError::Refused("a token needs a principal".into()));
    }
    let mut file = load(path)?;
    let id = format!("tok_{}", hex::encode(rand::random::<[u8; 4]>()));
    let token = format!(
        "bst_{}_{}",
        &id[4..],
        hex::encode(rand::random::<[u8; 32]>())
    );
    let entry = TokenEntry {
        id,
        principal: principal.to_string(),
        role,
        sha256: hash(&token),
        created_at: jiff::Timestamp::now(),
    };
    file.tokens.push(entry.clone());
    save(path, &file)?;
    Ok((token, entry))
}

/// Takes the token `id` out of the file again (a creation that could not be audited is
/// undone).
pub fn remove(path: &Path, id: &str) -> Result<(), EngineError> {
    let mut file = load(path)?;
    file.tokens.retain(|t| t.id != id);
    save(path, &file)
}

/// Writes the tokens file whole to a temporary file (mode 0600) and renames it: a reader
/// never sees half a file.
fn save(path: &Path, file: &TokensFile) -> Result<(), EngineError> {
    let text = toml::to_string(file).map_err(|e| EngineError::Refused(e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::Read {
            path: dir.display().to_string(),
            source: e,
        })?;
    }
    let temp = path.with_extension("toml.tmp");
    std::fs::write(&temp, text)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600))
        })
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|e| EngineError::Read {
            path: path.display().to_string(),
            source: e,
        })
}

/// The caller a bearer token stands for.
pub fn authenticate(file: &TokensFile, token: &str) -> Option<Caller> {
    let digest = hash(token.trim());
    file.tokens
        .iter()
        .find(|t| t.sha256 == digest)
        .map(|t| Caller {
            principal: t.principal.clone(),
            role: t.role,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        let config = Config::embedded(Path::new("/tmp"));
        let text = "name = \"orders\"\nrepository = \"local\"\n[source]\nkind = \"files\"\npaths = [\"x\"]\n[owners]\nrecovery = \"dba@example.com\"\napprovers = [\"boss@example.com\", \"dba@example.com\"]\n";
        Policy::parse(Path::new("p.toml"), text, &config).unwrap()
    }

    #[test]
    fn the_role_matrix() {
        let p = policy();
        let caller = |who: &str, role| Caller {
            principal: who.into(),
            role,
        };
        let owner = caller("dba@example.com", Role::RecoveryOwner);
        let other_owner = caller("someone@example.com", Role::RecoveryOwner);
        let approver = caller("boss@example.com", Role::Approver);
        let stranger_approver = caller("stranger@example.com", Role::Approver);
        let operator = caller("ops@example.com", Role::Operator);
        let auditor = caller("audit@example.com", Role::Auditor);
        use Action::*;
        // (caller, action, allowed)
        let cases = [
            (&owner, Read, true),
            (&auditor, Read, true),
            (&owner, RequestRestore, true),
            (&other_owner, RequestRestore, false),
            (&approver, RequestRestore, false),
            (&operator, RequestRestore, false),
            (&auditor, RequestRestore, false),
            (&approver, Decide, true),
            (&stranger_approver, Decide, false),
            (&owner, Decide, false),
            (&operator, Decide, false),
            (&auditor, Decide, false),
            (&operator, Run { requester: false }, true),
            (&owner, Run { requester: true }, true),
            (&owner, Run { requester: false }, false),
            (&approver, Run { requester: false }, false),
            (&auditor, Run { requester: false }, false),
            (&owner, SignOff, true),
            (&other_owner, SignOff, false),
            (&approver, SignOff, false),
            (&auditor, SignOff, false),
        ];
        for (who, action, expected) in cases {
            assert_eq!(
                allowed(who, action, Some(&p)).is_ok(),
                expected,
                "{} as {:?}: {action:?}",
                who.principal,
                who.role
            );
        }
    }

    #[test]
    fn tokens_are_stored_hashed_and_authenticate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.toml");
        let (token, entry) = create(&path, "dba@example.com", Role::RecoveryOwner).unwrap();
        let stored = std::fs::read_to_string(&path).unwrap();
        assert!(!stored.contains(&token), "the token is never stored");
        assert!(!stored.contains(&token[token.len() - 20..]));
        assert!(stored.contains(&entry.sha256));
        let file = load(&path).unwrap();
        assert_eq!(
            authenticate(&file, &token),
            Some(Caller {
                principal: "dba@example.com".into(),
                role: Role::RecoveryOwner
            })
        );
        assert_eq!(authenticate(&file, "bst_guess"), None);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        // A removed token no longer authenticates; the others still do.
        let (other, _) = create(&path, "boss@example.com", Role::Approver).unwrap();
        remove(&path, &entry.id).unwrap();
        let file = load(&path).unwrap();
        assert_eq!(authenticate(&file, &token), None);
        assert_eq!(authenticate(&file, &other).unwrap().role, Role::Approver);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
