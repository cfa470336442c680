//! ECDSA keys whose private scalar is shorter than its curve.
//!
//! OpenSSH writes the scalar as an mpint, without leading zero bytes, so about one P-256 key in
//! 256 has a 31-byte scalar. ssh-key 0.7.0-rc.11, which russh pins, refuses anything shorter
//! than 32 bytes ("length invalid"). A site with such a key could never use it. This module
//! rewrites such a key in memory, decrypting it first if it is encrypted, with the scalar padded
//! to the curve's size, which ssh-key reads as the same number. Nothing is written anywhere.

use base64::Engine as _;
use russh::keys::ssh_key::{Cipher, Kdf};
use secrecy::zeroize::Zeroizing;

const BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
const END: &str = "-----END OPENSSH PRIVATE KEY-----";
const MAGIC: &[u8] = b"openssh-key-v1\0";

/// An SSH wire-format reader over a byte slice.
struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    fn u32(&mut self) -> Option<u32> {
        let (head, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_be_bytes(*head))
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        if len > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(head)
    }
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// The scalar size of an ECDSA curve, by its SSH name.
fn scalar_size(curve: &[u8]) -> Option<usize> {
    match curve {
        b"nistp256" => Some(32),
        b"nistp384" => Some(48),
        b"nistp521" => Some(66),
        _ => None,
    }
}

/// `text` (an OpenSSH private key) as an unencrypted OpenSSH key with its ECDSA scalar padded,
/// when it is an ECDSA key whose scalar is short; `None` for any other key, a wrong passphrase,
/// or anything this reader does not understand (the caller then reports the original error).
pub fn padded(text: &str, passphrase: Option<&str>) -> Option<Zeroizing<String>> {
    let start = text.find(BEGIN)? + BEGIN.len();
    let end = text.find(END)?;
    let body: String = text
        .get(start..end)?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let raw = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .ok()?,
    );
    let mut w = Wire(raw.strip_prefix(MAGIC)?);
    let cipher_name = w.string()?;
    let kdf_name = w.string()?;
    let kdf_options = w.string()?;
    if w.u32()? != 1 {
        return None;
    }
    let public = w.string()?;
    let sealed = w.string()?;
    let mut private = Zeroizing::new(sealed.to_vec());
    if cipher_name != b"none" {
        let cipher = Cipher::new(std::str::from_utf8(cipher_name).ok()?).ok()?;
        if cipher.has_tag() || kdf_name != b"bcrypt" {
            return None;
        }
        let mut options = Wire(kdf_options);
        let kdf = Kdf::Bcrypt {
            salt: options.string()?.to_vec(),
            rounds: options.u32()?,
        };
        let (key, iv) = kdf.derive_key_and_iv(cipher, passphrase?).ok()?;
        cipher.decrypt(&key, &iv, &mut private, None).ok()?;
    }
    let mut p = Wire(&private);
    let (check1, check2) = (p.u32()?, p.u32()?);
    if check1 != check2 {
        return None;
    }
    let key_type = p.string()?;
    if !key_type.starts_with(b"ecdsa-sha2-") {
        return None;
    }
    let curve = p.string()?;
    let point = p.string()?;
    let scalar = p.string()?;
    let comment = p.string()?;
    let size = scalar_size(curve)?;
    if scalar.is_empty() || scalar.len() >= size {
        return None;
    }
    let mut padded_scalar = Zeroizing::new(vec![0u8; size - scalar.len()]);
    padded_scalar.extend_from_slice(scalar);

    let mut section = Zeroizing::new(Vec::new());
    section.extend_from_slice(&check1.to_be_bytes());
    section.extend_from_slice(&check2.to_be_bytes());
    put_string(&mut section, key_type);
    put_string(&mut section, curve);
    put_string(&mut section, point);
    put_string(&mut section, &padded_scalar);
    put_string(&mut section, comment);
    // An unencrypted section is padded 1, 2, 3, ... to a multiple of 8.
    let mut pad = 1u8;
    while section.len() % 8 != 0 {
        section.push(pad);
        pad += 1;
    }
    let mut out = Zeroizing::new(MAGIC.to_vec());
    put_string(&mut out, b"none");
    put_string(&mut out, b"none");
    put_string(&mut out, b"");
    out.extend_from_slice(&1u32.to_be_bytes());
    put_string(&mut out, public);
    put_string(&mut out, &section);
    let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*out));
    let mut pem = Zeroizing::new(String::from(BEGIN));
    pem.push('\n');
    for line in encoded.as_bytes().chunks(70) {
        pem.push_str(std::str::from_utf8(line).ok()?);
        pem.push('\n');
    }
    pem.push_str(END);
    pem.push('\n');
    Some(pem)
}
