//! Every environment variable vars reads, as a documented constant, so that `grep VARS_` finds
//! them all and tests can clear them in one place.

/// Path of an admin or user identity file, tried after `--identity` (DESIGN §4).
pub const IDENTITY_FILE: &str = "VARS_IDENTITY_FILE";

/// Where sandbox working directories are created; must be a tmpfs. Default:
/// `$XDG_RUNTIME_DIR`, then `/dev/shm`.
pub const RUNTIME_DIR: &str = "VARS_RUNTIME_DIR";

/// The standard per-user runtime directory (a tmpfs on systemd machines).
pub const XDG_RUNTIME_DIR: &str = "XDG_RUNTIME_DIR";

/// Home directory, for `~/.config/vars/identity.txt` and `~/.ssh/id_ed25519`.
pub const HOME: &str = "HOME";

/// `XDG_CONFIG_HOME`, defaulting to `~/.config`.
pub const XDG_CONFIG_HOME: &str = "XDG_CONFIG_HOME";

/// Disable colour in terminal output (<https://no-color.org>).
pub const NO_COLOR: &str = "NO_COLOR";

/// A file holding the passphrase of a passphrase-protected age identity or ssh key (one
/// trailing newline is ignored); without it vars asks on the terminal.
pub const PASSPHRASE_FILE: &str = "VARS_PASSPHRASE_FILE";

/// `XDG_STATE_HOME`, defaulting to `~/.local/state`: where vars remembers each store's vault
/// recipient (DESIGN §4).
pub const XDG_STATE_HOME: &str = "XDG_STATE_HOME";

/// Set to `1` to run generator scripts without a sandbox, as `--no-sandbox` does (needed
/// together with `settings.sandbox: none`, which alone comes from the repository).
pub const NO_SANDBOX: &str = "VARS_NO_SANDBOX";

/// Set by NixOS's activation scripts (`switch`, `boot`, `test`, `dry-activate`);
/// `dry-activate` makes `vars install` a dry run, and its presence makes NixOS's activation
/// lists the default way to restart units.
pub const NIXOS_ACTION: &str = "NIXOS_ACTION";

/// How `vars install` restarts units of changed files when `--restart-via` is not given:
/// `systemctl`, `activation-list` or `none` (the NixOS module sets `systemctl` on its
/// systemd unit).
pub const RESTART_VIA: &str = "VARS_RESTART_VIA";

/// For tests only: the directory of NixOS's activation lists, instead of `/run/nixos`.
pub const ACTIVATION_DIR: &str = "VARS_ACTIVATION_DIR";

/// The user's D-Bus session bus, passed to `systemctl --user` by `vars install --user-mode`.
pub const DBUS_SESSION_BUS_ADDRESS: &str = "DBUS_SESSION_BUS_ADDRESS";
/// The sops program to run for `settings.backend: sops` (default: `sops` on `PATH`, a Python
/// wrapper script followed to the program it runs; see `src/sops/mod.rs`).
pub const SOPS: &str = "VARS_SOPS";

/// sops' age key file, which `vars import` also decrypts with when no `--identity` is given
/// (default `~/.config/sops/age/keys.txt`, where clan and sops-nix admins keep their key).
pub const SOPS_AGE_KEY_FILE: &str = "SOPS_AGE_KEY_FILE";
