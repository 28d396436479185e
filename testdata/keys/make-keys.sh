#!/usr/bin/env bash
# (Re)create the TEST-ONLY keys under testdata/keys/ — see README.md in this folder.
#
# Every key is derived from a fixed, public seed:
#     seed = sha256("vars-testdata-insecure/<fleet>/<hosts|users>/<name>")
# so running this script again rewrites byte-identical files (no churn in git) and anybody
# can recompute every private key from this script. That is the point: THESE KEYS PROTECT
# NOTHING. Never use them, or anything encrypted to them, outside the test suite.
#
# Layout written (for each fleet below):
#   <fleet>/hosts/<host>          ssh-ed25519 private key, OpenSSH format, no passphrase, comment root@<host>
#   <fleet>/hosts/<host>.pub      its public key line
#   <fleet>/users/<user>.age      age X25519 identity file (# created / # public key / AGE-SECRET-KEY-1…)
#   <fleet>/users/<user>.pub      its age1… recipient
#   <fleet>/users/<user>_ssh      extra ssh-ed25519 user key (one user per fleet), comment <user>@vars-test
#   <fleet>/users/<user>_ssh.pub
#
# Needs: bash, coreutils, openssl (for the curve arithmetic) and xxd. Verifies its own output
# with ssh-keygen -y and age-keygen -y when those are installed.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)

# fleet -> hosts / users / the one user that also gets an ssh key
declare -A HOSTS USERS SSH_USER
HOSTS[clan8]="stibnite blackphos rosegold argentum cinnabar electrum galena scheelite"
USERS[clan8]="crs58 cameron raquel janettesmith christophersmith"
SSH_USER[clan8]=crs58
HOSTS[darwin2]="megabookpro air13"
USERS[darwin2]="seth maya"
SSH_USER[darwin2]=seth
HOSTS[mesh17]="cortex-alpha cortex-beta cortex-gamma cortex-delta cortex-epsilon cortex-zeta
  cortex-eta cortex-theta cortex-iota cortex-kappa cortex-lambda cortex-mu cortex-nu cortex-xi
  cortex-omicron cortex-pi cortex-rho"
USERS[mesh17]="ada"
SSH_USER[mesh17]=ada
FLEETS="clan8 darwin2 mesh17"

seed_hex() { printf '%s' "vars-testdata-insecure/$1" | sha256sum | cut -c1-64; }

# Raw 32-byte public key (hex) for a 32-byte private seed (hex), via PKCS#8 DER.
# PKCS#8 for Ed25519 / X25519 is a fixed 16-byte prefix followed by the raw key.
pub_hex() { # alg-oid-byte seed-hex   (0x70 = Ed25519, 0x6e = X25519)
  printf '302e020100300506032b65%s04220420%s' "$1" "$2" | xxd -r -p |
    openssl pkey -inform DER -pubout -outform DER | tail -c 32 | xxd -p -c 64
}

u32() { printf '%08x' "$1"; }
sshstr_hex() { # hex payload -> ssh string (uint32 length + bytes), hex
  u32 $(( ${#1} / 2 )); printf '%s' "$1"
}
txt_hex() { printf '%s' "$1" | xxd -p -c 1000 | tr -d '\n'; }

# OpenSSH "openssh-key-v1" unencrypted ed25519 private key. The two check integers are
# normally random; here they come from the seed so the file is reproducible.
write_ssh_key() { # path seed-label comment
  local path=$1 seed pk comment=$3 blob priv check i
  seed=$(seed_hex "$2")
  pk=$(pub_hex 70 "$seed")
  blob=$(sshstr_hex "$(txt_hex ssh-ed25519)")$(sshstr_hex "$pk")
  check=$(printf '%s' "$seed" | cut -c1-8)
  priv=$check$check$(sshstr_hex "$(txt_hex ssh-ed25519)")$(sshstr_hex "$pk")
  priv+=$(sshstr_hex "$seed$pk")$(sshstr_hex "$(txt_hex "$comment")")
  i=1
  while (( (${#priv} / 2) % 8 != 0 )); do priv+=$(printf '%02x' "$i"); i=$((i + 1)); done
  {
    echo "-----BEGIN OPENSSH PRIVATE KEY-----"
    { txt_hex openssh-key-v1; printf '00'
      sshstr_hex "$(txt_hex none)"; sshstr_hex "$(txt_hex none)"; sshstr_hex ""
      u32 1; sshstr_hex "$blob"; sshstr_hex "$priv"
    } | xxd -r -p | base64 -w 70
    echo "-----END OPENSSH PRIVATE KEY-----"
  } > "$path"
  chmod 0600 "$path"
  printf 'ssh-ed25519 %s %s\n' "$(printf '%s' "$blob" | xxd -r -p | base64 -w 0)" "$comment" > "$path.pub"
  chmod 0644 "$path.pub"
  if command -v ssh-keygen >/dev/null; then
    [[ "$(ssh-keygen -y -f "$path" | cut -d' ' -f1,2)" == "$(cut -d' ' -f1,2 "$path.pub")" ]] ||
      { echo "make-keys: ssh-keygen disagrees about $path" >&2; exit 1; }
  fi
}

# Bech32 (BIP 173, as used by age) of a hex payload.
bech32() { # hrp hex
  local hrp=$1 hex=$2 charset=qpzry9x8gf2tvdw0s3jn54khce6mua7l
  local -a v=() d=() gen=(0x3b6a57b2 0x26508e6d 0x1ea119fa 0x3d4233dd 0x2a1462b3)
  local i c acc=0 bits=0 chk=1 top j out=""
  for ((i = 0; i < ${#hrp}; i++)); do printf -v c '%d' "'${hrp:i:1}"; v+=($((c >> 5))); done
  v+=(0)
  for ((i = 0; i < ${#hrp}; i++)); do printf -v c '%d' "'${hrp:i:1}"; v+=($((c & 31))); done
  for ((i = 0; i < ${#hex}; i += 2)); do   # 8-bit -> 5-bit groups
    acc=$(( ((acc << 8) | 16#${hex:i:2}) & 0xfff )); bits=$((bits + 8))
    while ((bits >= 5)); do bits=$((bits - 5)); d+=($(( (acc >> bits) & 31 ))); done
  done
  ((bits > 0)) && d+=($(( (acc << (5 - bits)) & 31 )))
  for c in "${v[@]}" "${d[@]}" 0 0 0 0 0 0; do
    top=$((chk >> 25)); chk=$(( ((chk & 0x1ffffff) << 5) ^ c ))
    for j in 0 1 2 3 4; do (( (top >> j) & 1 )) && chk=$(( chk ^ gen[j] )); done
  done
  chk=$((chk ^ 1))
  for c in "${d[@]}"; do out+=${charset:c:1}; done
  for j in 0 1 2 3 4 5; do out+=${charset:$(( (chk >> (5 * (5 - j))) & 31 )):1}; done
  printf '%s1%s' "$hrp" "$out"
}

write_age_identity() { # path-without-.age seed-label
  local base=$1 sk pk recipient secret
  sk=$(seed_hex "$2")
  pk=$(pub_hex 6e "$sk")
  recipient=$(bech32 age "$pk")
  secret=$(bech32 age-secret-key- "$sk" | tr a-z A-Z)
  # A fixed date keeps the file reproducible; age ignores comment lines.
  printf '# created: 2025-01-01T00:00:00Z\n# public key: %s\n%s\n' "$recipient" "$secret" > "$base.age"
  chmod 0600 "$base.age"
  printf '%s\n' "$recipient" > "$base.pub"
  chmod 0644 "$base.pub"
  if command -v age-keygen >/dev/null; then
    [[ "$(age-keygen -y "$base.age")" == "$recipient" ]] ||
      { echo "make-keys: age-keygen disagrees about $base.age" >&2; exit 1; }
  fi
}

for fleet in $FLEETS; do
  rm -rf "${here:?}/$fleet"
  mkdir -p "$here/$fleet/hosts" "$here/$fleet/users"
  for host in ${HOSTS[$fleet]}; do
    write_ssh_key "$here/$fleet/hosts/$host" "$fleet/hosts/$host" "root@$host"
  done
  for user in ${USERS[$fleet]}; do
    write_age_identity "$here/$fleet/users/$user" "$fleet/users/$user"
  done
  u=${SSH_USER[$fleet]}
  write_ssh_key "$here/$fleet/users/${u}_ssh" "$fleet/users/${u}_ssh" "$u@vars-test"
done
echo "make-keys: wrote test keys for: $FLEETS (deterministic, INSECURE, tests only)" >&2
