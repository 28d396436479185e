//! The rules of `vars scan`: their stable ids, levels, descriptions and hints. The content
//! rules are implemented in [`super::rules`], the store rules in [`super::store`].

use serde::Serialize;

/// Every rule `vars scan` reports, content rules first, then store rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// A PEM private key block: RSA, EC, DSA, PKCS#8 (also encrypted), OpenSSH, PGP.
    PrivateKey,
    /// An SSH2 (RFC 4716 style, ssh.com / PuTTY export) private key.
    Ssh2PrivateKey,
    /// A PuTTY `.ppk` private key.
    PuttyPrivateKey,
    /// An age X25519 (or post-quantum) identity with a valid bech32 checksum.
    AgeIdentity,
    /// Something shaped like an age identity whose checksum fails (a placeholder).
    AgeIdentityPlaceholder,
    /// A WireGuard private or preshared key assigned in a config.
    WireguardPrivateKey,
    /// A Nix binary cache signing key (`nix-store --generate-binary-cache-key`).
    NixSigningKey,
    /// A PKCS#12 file (`.p12`, `.pfx`): a private key with its certificate.
    Pkcs12File,
    /// `password = "…";` or `initialPassword = "…";` in a Nix file.
    NixPlaintextPassword,
    /// A crypt(3) password hash assigned to `hashedPassword` / `initialHashedPassword`.
    PasswordHash,
    /// A file named `*.age` outside the store that is not an age file.
    AgeExtensionNotAge,
    /// A secret in the store that is not a valid age file.
    StoreNotAge,
    /// A secret in the store that is not a valid sops file (sops backend).
    StoreNotSops,
    /// The plaintext of a secret beside (or instead of) its ciphertext.
    StorePlaintextSecret,
    /// A file in the store that no meta.json declares.
    StoreUndeclaredFile,
    /// A leftover of an interrupted vars run (a spare `.vars-swap-N`, a `.vars-tmp-*` file, a
    /// `.D.old` or `.D.removing` directory), which vars' own `.gitignore` keeps out of git.
    StoreLeftover,
    /// A symlink, submodule or other non-regular entry in the store.
    StoreNotRegular,
    /// A Git LFS pointer in the store (the content is not in the repository).
    StoreLfsPointer,
    /// A public file whose content differs from the hash in its meta.json.
    StorePublicHash,
}

/// How much a finding counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// Fails the scan (exit 3).
    Error,
    /// Fails the scan only with `--strict`.
    Warning,
}

impl Rule {
    /// Every rule, in the order of this enum.
    pub const ALL: [Rule; 19] = [
        Rule::PrivateKey,
        Rule::Ssh2PrivateKey,
        Rule::PuttyPrivateKey,
        Rule::AgeIdentity,
        Rule::AgeIdentityPlaceholder,
        Rule::WireguardPrivateKey,
        Rule::NixSigningKey,
        Rule::Pkcs12File,
        Rule::NixPlaintextPassword,
        Rule::PasswordHash,
        Rule::AgeExtensionNotAge,
        Rule::StoreNotAge,
        Rule::StoreNotSops,
        Rule::StorePlaintextSecret,
        Rule::StoreUndeclaredFile,
        Rule::StoreLeftover,
        Rule::StoreNotRegular,
        Rule::StoreLfsPointer,
        Rule::StorePublicHash,
    ];

    /// The stable id (`private-key`), used in output, `vars:allow` and `scan.allow`.
    pub fn id(self) -> &'static str {
        match self {
            Rule::PrivateKey => "private-key",
            Rule::Ssh2PrivateKey => "ssh2-private-key",
            Rule::PuttyPrivateKey => "putty-private-key",
            Rule::AgeIdentity => "age-identity",
            Rule::AgeIdentityPlaceholder => "age-identity-placeholder",
            Rule::WireguardPrivateKey => "wireguard-private-key",
            Rule::NixSigningKey => "nix-signing-key",
            Rule::Pkcs12File => "pkcs12-file",
            Rule::NixPlaintextPassword => "nix-plaintext-password",
            Rule::PasswordHash => "password-hash",
            Rule::AgeExtensionNotAge => "age-extension-not-age",
            Rule::StoreNotAge => "store-not-age",
            Rule::StoreNotSops => "store-not-sops",
            Rule::StorePlaintextSecret => "store-plaintext-secret",
            Rule::StoreUndeclaredFile => "store-undeclared-file",
            Rule::StoreLeftover => "store-leftover",
            Rule::StoreNotRegular => "store-not-regular",
            Rule::StoreLfsPointer => "store-lfs-pointer",
            Rule::StorePublicHash => "store-public-hash",
        }
    }

    /// The rule with this id.
    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.id() == id)
    }

    /// Store rules judge the vars store and cannot be allowed.
    pub fn is_store_rule(self) -> bool {
        self.id().starts_with("store-")
    }

    /// The level a finding of this rule has.
    pub fn level(self) -> Level {
        match self {
            Rule::AgeIdentityPlaceholder
            | Rule::NixPlaintextPassword
            | Rule::PasswordHash
            | Rule::StorePublicHash => Level::Warning,
            _ => Level::Error,
        }
    }

    /// One line saying what the rule finds (SARIF `shortDescription`).
    pub fn description(self) -> &'static str {
        match self {
            Rule::PrivateKey => "PEM private key (RSA, EC, DSA, PKCS#8, OpenSSH, PGP) in plaintext",
            Rule::Ssh2PrivateKey => "SSH2-format private key in plaintext",
            Rule::PuttyPrivateKey => "PuTTY private key file",
            Rule::AgeIdentity => "age identity (private key) in plaintext",
            Rule::AgeIdentityPlaceholder => {
                "text shaped like an age identity whose checksum fails (a placeholder?)"
            }
            Rule::WireguardPrivateKey => "WireGuard private or preshared key in a config",
            Rule::NixSigningKey => "Nix binary cache signing key in plaintext",
            Rule::Pkcs12File => "PKCS#12 file (private key and certificate)",
            Rule::NixPlaintextPassword => "plaintext password in a Nix configuration",
            Rule::PasswordHash => "password hash in a configuration (allows offline guessing)",
            Rule::AgeExtensionNotAge => "file named *.age that is not age-encrypted",
            Rule::StoreNotAge => "secret in the vars store that is not a valid age file",
            Rule::StoreNotSops => "secret in the vars store that is not a valid sops file",
            Rule::StorePlaintextSecret => "plaintext copy of a secret in the vars store",
            Rule::StoreUndeclaredFile => "file in the vars store that nothing declares",
            Rule::StoreLeftover => "leftover of an interrupted vars run committed in the store",
            Rule::StoreNotRegular => "symlink, submodule or special file in the vars store",
            Rule::StoreLfsPointer => "Git LFS pointer in the vars store",
            Rule::StorePublicHash => {
                "public file in the vars store differs from its meta.json hash"
            }
        }
    }

    /// What to do about a finding.
    pub fn hint(self) -> &'static str {
        match self {
            Rule::PrivateKey
            | Rule::Ssh2PrivateKey
            | Rule::PuttyPrivateKey
            | Rule::AgeIdentity
            | Rule::WireguardPrivateKey
            | Rule::NixSigningKey
            | Rule::Pkcs12File => {
                "unstage it (git rm --cached PATH), rotate the key if it was ever pushed, and keep it as a vars secret; a test fixture can be allowed in vars.yaml scan.allow with a reason"
            }
            Rule::AgeIdentityPlaceholder => {
                "if it is an example, write it so it does not look like a key, or allow it with vars:allow"
            }
            Rule::NixPlaintextPassword => {
                "use a generated secret instead (hashedPasswordFile = config.vars.generators.<gen>.files.<file>.path)"
            }
            Rule::PasswordHash => {
                "move the hash into a vars secret and point hashedPasswordFile at it"
            }
            Rule::AgeExtensionNotAge => {
                "encrypt it (age -e) or rename it; an age identity must never be committed"
            }
            Rule::StoreNotAge | Rule::StoreNotSops => {
                "restore it from version control or regenerate it with vars generate --regenerate"
            }
            Rule::StorePlaintextSecret => {
                "delete the plaintext (git rm --cached PATH) and rotate the secret: vars generate --regenerate"
            }
            Rule::StoreUndeclaredFile => {
                "remove it from the store; only vars writes there (vars generate, vars set)"
            }
            Rule::StoreLeftover => {
                "remove it from git (git rm -r --cached PATH): vars keeps these names out of git, so only a hand-made commit adds one"
            }
            Rule::StoreNotRegular => {
                "replace it with the regular file vars wrote, or regenerate the instance"
            }
            Rule::StoreLfsPointer => {
                "exclude the store from Git LFS (.gitattributes) and commit the real files"
            }
            Rule::StorePublicHash => {
                "restore it from version control or regenerate it with vars generate --regenerate"
            }
        }
    }
}
