# home-manager with vars, next to vars.homeManagerModules.default (examples/flake/flake.nix
# imports it): the user's git signing key from the `git-signing-key` generator of
# testdata/fleets/darwin2 (user seth).
#
# vars.secretsDir (default ~/.config/vars/secrets) is a real path, a symlink into
# $XDG_RUNTIME_DIR/vars.d/<generation> (macOS: DARWIN_USER_TEMP_DIR), so it can go into config
# files as it is. A systemd user service (macOS: a launchd agent) installs the secrets at login
# and after every `home-manager switch`.
{ config, ... }:
let
  signing = config.vars.generators.git-signing-key.files;
in
{
  # The keys vars decrypts with; these are the defaults.
  vars.identityPaths = [
    "${config.home.homeDirectory}/.ssh/id_ed25519"
    "${config.home.homeDirectory}/.config/vars/identity.txt"
  ];

  programs.git = {
    enable = true;
    signing = {
      format = "ssh";
      key = signing.signing-key.path; # the secret, installed for this user only
      signByDefault = true;
    };
    # A public file: its own store path, readable at evaluation time.
    extraConfig.gpg.ssh.allowedSignersFile = signing.allowed_signers.path;
  };

  # Restarted (systemctl --user try-restart) when the key's plaintext changes.
  vars.generators.git-signing-key.files.signing-key.restartUnits = [ "ssh-agent.service" ];
}
