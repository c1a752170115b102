//! HS256, the one algorithm this service signs and checks, as jsonwebtoken's crypto provider.
//!
//! jsonwebtoken's own `rust_crypto` provider brings every algorithm with it, among them the `rsa`
//! crate and its unfixed timing advisory (RUSTSEC-2023-0071), which HS256 never needs.

use hmac::{Hmac, Mac};
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey,
    crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils},
    errors::{Error, ErrorKind},
};
use sha2::Sha256;
use signature::{Signer, Verifier};

struct HmacSha256(Hmac<Sha256>);

impl HmacSha256 {
    fn new(algorithm: &Algorithm, key: &[u8]) -> Result<Self, Error> {
        if *algorithm != Algorithm::HS256 {
            return Err(ErrorKind::InvalidAlgorithm.into());
        }
        Hmac::new_from_slice(key)
            .map(HmacSha256)
            .map_err(|_| ErrorKind::InvalidKeyFormat.into())
    }
}

impl Signer<Vec<u8>> for HmacSha256 {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let mut mac = self.0.clone();
        mac.update(message);
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

impl Verifier<Vec<u8>> for HmacSha256 {
    fn verify(&self, message: &[u8], tag: &Vec<u8>) -> Result<(), signature::Error> {
        let mut mac = self.0.clone();
        mac.update(message);
        // Constant-time comparison.
        mac.verify_slice(tag).map_err(signature::Error::from_source)
    }
}

impl JwtSigner for HmacSha256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for HmacSha256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: |algorithm, key: &EncodingKey| {
        Ok(Box::new(HmacSha256::new(algorithm, key.as_bytes())?))
    },
    verifier_factory: |algorithm, key: &DecodingKey| {
        Ok(Box::new(HmacSha256::new(
            algorithm,
            key.try_get_as_bytes()?,
        )?))
    },
    // No JWKs: keys are one shared secret.
    key_utils: KeyUtils::new_unimplemented(),
};

/// Makes HS256 the process's provider; later calls find it installed and change nothing.
pub fn install() {
    let _ = PROVIDER.install_default();
}
