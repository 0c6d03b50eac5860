//! The two secret containers: [`Secret`] bytes and [`SecretString`] text. Both are zeroized on
//! drop and never shown by `Debug`; every other type holding a secret holds one of these and
//! derives `Debug`, so no hand-written redacting `Debug` is needed anywhere else.

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

/// Secret text (the cluster secret, an API secret key): zeroized on drop, `<redacted>` in
/// `Debug`, serialized as the plain string where a wire or config format needs it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(text: String) -> Self {
        SecretString(Zeroizing::new(text))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(text: String) -> Self {
        SecretString::new(text)
    }
}

impl From<&str> for SecretString {
    fn from(text: &str) -> Self {
        SecretString::new(text.to_string())
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl serde::Serialize for SecretString {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretString::new)
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

    #[test]
    fn secret_strings_are_redacted_but_serialize_plainly() {
        #[derive(Debug, serde::Serialize, serde::Deserialize)]
        struct Holder {
            name: String,
            key: SecretString,
        }
        let h: Holder = serde_json::from_str(r#"{"name":"n","key":"hunter2-hunter2"}"#).unwrap();
        assert_eq!(h.key.expose(), "hunter2-hunter2");
        let shown = format!("{h:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("<redacted>"),
            "{shown}"
        );
        assert!(serde_json::to_string(&h)
            .unwrap()
            .contains("hunter2-hunter2"));
    }
}
