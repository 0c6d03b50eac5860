//! A byte buffer for secrets: zeroized on drop, never shown by `Debug`.

use zeroize::Zeroizing;

/// Secret bytes (key material, plaintext data keys, API secret keys).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(Zeroizing::new(bytes))
    }

    /// `n` bytes from the operating system's CSPRNG.
    pub fn random(n: usize) -> Self {
        use rand::RngCore;
        let mut v = Zeroizing::new(vec![0u8; n]);
        rand::rngs::OsRng.fill_bytes(&mut v);
        Secret(v)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_bytes() {
        let s = Secret::new(b"super-secret-material".to_vec());
        let shown = format!("{s:?}");
        assert!(!shown.contains("super"), "{shown}");
        assert!(shown.contains("21 bytes"));
        assert_ne!(Secret::random(32).expose(), Secret::random(32).expose());
    }
}
