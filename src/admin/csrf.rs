//! CSRF tokens for the admin page's forms.
//!
//! A token is `<unix seconds>.<hex HMAC-SHA256(secret, user, time)>`: bound to the user the
//! web server authenticated and valid for [`TOKEN_LIFETIME`]. The 32-byte secret is made from
//! the kernel's random source on first use and kept in the shared segment (cache key
//! [`SECRET_SLOT`]), so every exporter process (FastCGI workers, CGI processes) accepts the
//! tokens of the others. Clearing the segment makes a new secret: open forms then need a
//! reload.

use std::io::Read;
use std::time::Duration;

use hmac::{KeyInit, Mac};

use crate::segment::{now_unix, Segment};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Segment cache key of the secret.
pub const SECRET_SLOT: &str = "admin:csrf-secret";
/// How long a token is accepted, seconds.
pub const TOKEN_LIFETIME: f64 = 12.0 * 3600.0;

/// The token secret of this segment (created on first use).
pub fn secret(seg: &Segment) -> Result<Vec<u8>, String> {
    let slot = seg.cache_slot(SECRET_SLOT).map_err(|e| e.to_string())?;
    for _ in 0..100 {
        if let Some(c) = slot.get().map_err(|e| e.to_string())? {
            if c.bytes.len() == 32 {
                return Ok(c.bytes);
            }
        }
        if slot.try_lease(Duration::from_secs(2)) {
            // Nobody stored one between our read and the lease?
            let existing = slot.get().map_err(|e| e.to_string())?;
            let r = match existing {
                Some(c) if c.bytes.len() == 32 => Ok(c.bytes),
                _ => random32().and_then(|s| {
                    slot.put(&s).map_err(|e| e.to_string())?;
                    Ok(s)
                }),
            };
            slot.release();
            return r;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err("another process is creating the CSRF secret; try again".into())
}

fn random32() -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(buf)
}

fn mac(secret: &[u8], user: &str, at: u64) -> String {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(b"otrs-exporter admin csrf\0");
    m.update(user.as_bytes());
    m.update(b"\0");
    m.update(at.to_string().as_bytes());
    hex(&m.finalize().into_bytes())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A fresh token for `user`.
pub fn token(secret: &[u8], user: &str) -> String {
    let at = now_unix() as u64;
    format!("{at}.{}", mac(secret, user, at))
}

/// Whether `token` was issued to `user` with `secret` and has not expired.
pub fn verify(secret: &[u8], user: &str, token: &str) -> bool {
    let Some((at, sig)) = token.split_once('.') else {
        return false;
    };
    let Ok(at) = at.parse::<u64>() else {
        return false;
    };
    let age = now_unix() - at as f64;
    if !(-300.0..=TOKEN_LIFETIME).contains(&age) {
        return false;
    }
    let want = mac(secret, user, at);
    // Constant time: compare every byte.
    want.len() == sig.len()
        && want
            .bytes()
            .zip(sig.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_bind_user_secret_and_time() {
        let s = random32().unwrap();
        let t = token(&s, "alice");
        assert!(verify(&s, "alice", &t));
        assert!(!verify(&s, "bob", &t));
        assert!(!verify(&random32().unwrap(), "alice", &t));
        assert!(!verify(&s, "alice", ""));
        assert!(!verify(&s, "alice", "123.abc"));
        let old = now_unix() as u64 - 13 * 3600;
        assert!(!verify(
            &s,
            "alice",
            &format!("{old}.{}", mac(&s, "alice", old))
        ));
        let mut bad = t.clone();
        bad.pop();
        bad.push('x');
        assert!(!verify(&s, "alice", &bad));
    }
}
