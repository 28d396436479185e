//! Passphrase encryption (age's scrypt recipient): what `age -p` writes, used to protect identity
//! files. [`super::identities`] decrypts protected identity files with it.

use std::io::{self, Read as _, Write as _};

use super::CryptoError;
use crate::secret::SecretBytes;

/// The largest scrypt work factor (`log2 N`) accepted when decrypting.
const MAX_WORK_FACTOR: u8 = 22;

/// Decrypt a passphrase-protected age file (`age -p` output). `Ok(None)` means the passphrase
/// is wrong; errors mean the file is damaged or asks for more scrypt work than is reasonable.
pub fn decrypt_with_passphrase(
    ciphertext: &[u8],
    passphrase: &SecretBytes,
) -> Result<Option<SecretBytes>, CryptoError> {
    let mut identity = age::scrypt::Identity::new(passphrase_string(passphrase)?);
    // age caps the work at 16× what this machine does in a second *now*, so a loaded machine
    // (a parallel test run, a busy CI) refused files it wrote itself a moment earlier. A fixed
    // cap instead, at the bound age's documentation calls large (N = 2^22, 4 GiB): the files
    // are the user's own identity files, and `age -p` writes about 2^18 on today's machines.
    identity.set_max_work_factor(MAX_WORK_FACTOR);
    let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(ciphertext))
        .map_err(|e| CryptoError::Decrypt(e.to_string()))?;
    let mut r = match decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity)) {
        Ok(r) => r,
        Err(age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys) => {
            return Ok(None);
        }
        Err(e) => return Err(CryptoError::Decrypt(e.to_string())),
    };
    let mut out = Vec::with_capacity(ciphertext.len());
    match r.read_to_end(&mut out) {
        Ok(_) => Ok(Some(SecretBytes::new(out))),
        Err(e) => {
            let _ = SecretBytes::new(out); // zeroize the partial plaintext
            Err(CryptoError::Decrypt(e.to_string()))
        }
    }
}

/// Encrypt `plaintext` with a passphrase (what `age -p` does), e.g. to protect an identity file.
pub fn encrypt_with_passphrase(
    plaintext: &SecretBytes,
    passphrase: &SecretBytes,
    armor: bool,
) -> Result<Vec<u8>, CryptoError> {
    let encryptor = age::Encryptor::with_user_passphrase(passphrase_string(passphrase)?);
    let mut out = Vec::with_capacity(plaintext.len() + 256);
    let fail = |e: io::Error| CryptoError::Encrypt(e.to_string());
    if armor {
        let armored =
            age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
                .map_err(fail)?;
        let mut w = encryptor.wrap_output(armored).map_err(fail)?;
        w.write_all(plaintext.expose()).map_err(fail)?;
        w.finish().and_then(|a| a.finish()).map_err(fail)?;
    } else {
        let mut w = encryptor.wrap_output(&mut out).map_err(fail)?;
        w.write_all(plaintext.expose()).map_err(fail)?;
        w.finish().map_err(fail)?;
    }
    Ok(out)
}

/// The passphrase as the text age wants.
pub(super) fn passphrase_string(
    passphrase: &SecretBytes,
) -> Result<age::secrecy::SecretString, CryptoError> {
    let text = std::str::from_utf8(passphrase.expose())
        .map_err(|_| CryptoError::Decrypt("the passphrase is not UTF-8 text".into()))?;
    Ok(age::secrecy::SecretString::from(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_a_wrong_passphrase_is_none() {
        let plain = SecretBytes::new(b"AGE-SECRET-KEY-1...".to_vec());
        let pass = SecretBytes::new(b"pw".to_vec());
        // One round (scrypt takes about a second each way); armor is covered in tests/it.
        let ct = encrypt_with_passphrase(&plain, &pass, false).unwrap();
        let back = decrypt_with_passphrase(&ct, &pass).unwrap().unwrap();
        assert_eq!(back.expose(), plain.expose());
        let wrong = SecretBytes::new(b"no".to_vec());
        assert!(decrypt_with_passphrase(&ct, &wrong).unwrap().is_none());
    }
}
