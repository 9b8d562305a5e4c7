//! jsonwebtoken's cryptography on ring, the provider rustls already uses here.
//!
//! jsonwebtoken ships providers on aws-lc-rs and on RustCrypto; neither is ring, and the first
//! adds a second C crypto library (and the longest C build of the workspace) next to the one
//! rustls brings. No crate provides jsonwebtoken on ring, so this module does: one verifier
//! and one signer, each dispatching on the algorithm to ring's own primitives.

use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair};
use ring::{digest, hmac};

/// jsonwebtoken's provider on ring (verifying and signing every JWS algorithm but `none`).
pub(crate) static RING: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    jwk_utils: JwkUtils {
        extract_rsa_public_key_components: rsa_components,
        extract_ec_public_key_coordinates: ec_coordinates,
        compute_digest: thumbprint_digest,
    },
};

/// Makes [`RING`] jsonwebtoken's provider for this process, unless one was chosen already.
pub(crate) fn install() {
    // A provider the application installed first stands.
    let _ = RING.install_default();
}

fn hmac_algorithm(alg: Algorithm) -> Option<hmac::Algorithm> {
    match alg {
        Algorithm::HS256 => Some(hmac::HMAC_SHA256),
        Algorithm::HS384 => Some(hmac::HMAC_SHA384),
        Algorithm::HS512 => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

/// The verification algorithm of an asymmetric `alg`.
fn public_algorithm(alg: Algorithm) -> Option<&'static dyn sig::VerificationAlgorithm> {
    if let Some(rsa) = rsa_parameters(alg) {
        return Some(rsa);
    }
    Some(match alg {
        Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &sig::ED25519,
        _ => return None,
    })
}

/// RSA's parameters for `alg`, when it is an RSA algorithm.
fn rsa_parameters(alg: Algorithm) -> Option<&'static sig::RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

enum Check {
    Hmac(hmac::Key),
    Public(&'static dyn sig::VerificationAlgorithm, Vec<u8>),
    RsaComponents(&'static sig::RsaParameters, Vec<u8>, Vec<u8>),
}

struct Verifier {
    alg: Algorithm,
    check: Check,
}

fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    let alg = *alg;
    let check = if let Some(hmac_alg) = hmac_algorithm(alg) {
        Check::Hmac(hmac::Key::new(hmac_alg, key.try_get_hmac_secret()?))
    } else {
        let Some(public) = public_algorithm(alg) else {
            return Err(ErrorKind::InvalidAlgorithm.into());
        };
        if key.family() != alg.family() {
            return Err(ErrorKind::InvalidKeyFormat.into());
        }
        match (key.kind(), rsa_parameters(alg)) {
            (DecodingKeyKind::RsaModulusExponent { n, e }, Some(params)) => {
                Check::RsaComponents(params, n.clone(), e.clone())
            }
            (DecodingKeyKind::RsaModulusExponent { .. }, None) => {
                return Err(ErrorKind::InvalidKeyFormat.into())
            }
            (DecodingKeyKind::SecretOrDer(der), _) => Check::Public(public, der.clone()),
        }
    };
    Ok(Box::new(Verifier { alg, check }))
}

impl signature::Verifier<Vec<u8>> for Verifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let verified = match &self.check {
            // Constant time.
            Check::Hmac(key) => hmac::verify(key, msg, signature),
            Check::Public(alg, key) => {
                sig::UnparsedPublicKey::new(*alg, key).verify(msg, signature)
            }
            Check::RsaComponents(params, n, e) => {
                sig::RsaPublicKeyComponents { n, e }.verify(params, msg, signature)
            }
        };
        verified.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Verifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

enum Sign {
    Hmac(hmac::Key),
    Rsa(&'static dyn sig::RsaEncoding, sig::RsaKeyPair),
    Ecdsa(sig::EcdsaKeyPair),
    Ed25519(sig::Ed25519KeyPair),
}

struct Signer {
    alg: Algorithm,
    sign: Sign,
}

fn ecdsa_signing(alg: Algorithm) -> Option<&'static sig::EcdsaSigningAlgorithm> {
    match alg {
        Algorithm::ES256 => Some(&sig::ECDSA_P256_SHA256_FIXED_SIGNING),
        Algorithm::ES384 => Some(&sig::ECDSA_P384_SHA384_FIXED_SIGNING),
        _ => None,
    }
}

fn signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    let alg = *alg;
    if let Some(hmac_alg) = hmac_algorithm(alg) {
        let sign = Sign::Hmac(hmac::Key::new(hmac_alg, key.try_get_hmac_secret()?));
        return Ok(Box::new(Signer { alg, sign }));
    }
    if key.family() != alg.family() {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let rsa = |encoding: &'static dyn sig::RsaEncoding| {
        sig::RsaKeyPair::from_der(key.inner())
            .map(|pair| Sign::Rsa(encoding, pair))
            .map_err(|e| Error::from(ErrorKind::InvalidRsaKey(e.to_string())))
    };
    let sign = match alg {
        Algorithm::RS256 => rsa(&sig::RSA_PKCS1_SHA256)?,
        Algorithm::RS384 => rsa(&sig::RSA_PKCS1_SHA384)?,
        Algorithm::RS512 => rsa(&sig::RSA_PKCS1_SHA512)?,
        Algorithm::PS256 => rsa(&sig::RSA_PSS_SHA256)?,
        Algorithm::PS384 => rsa(&sig::RSA_PSS_SHA384)?,
        Algorithm::PS512 => rsa(&sig::RSA_PSS_SHA512)?,
        Algorithm::ES256 | Algorithm::ES384 => {
            let signing = ecdsa_signing(alg).ok_or(ErrorKind::InvalidAlgorithm)?;
            Sign::Ecdsa(
                sig::EcdsaKeyPair::from_pkcs8(signing, key.inner(), &SystemRandom::new())
                    .map_err(|_| ErrorKind::InvalidEcdsaKey)?,
            )
        }
        Algorithm::EdDSA => Sign::Ed25519(
            sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(key.inner())
                .map_err(|_| ErrorKind::InvalidEddsaKey)?,
        ),
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(Box::new(Signer { alg, sign }))
}

impl signature::Signer<Vec<u8>> for Signer {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let rng = SystemRandom::new();
        Ok(match &self.sign {
            Sign::Hmac(key) => hmac::sign(key, msg).as_ref().to_vec(),
            Sign::Rsa(encoding, pair) => {
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(*encoding, &rng, msg, &mut out)
                    .map_err(|_| signature::Error::new())?;
                out
            }
            Sign::Ecdsa(pair) => pair
                .sign(&rng, msg)
                .map_err(|_| signature::Error::new())?
                .as_ref()
                .to_vec(),
            Sign::Ed25519(pair) => pair.sign(msg).as_ref().to_vec(),
        })
    }
}

impl JwtSigner for Signer {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn rsa_components(private_der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let pair = sig::RsaKeyPair::from_der(private_der)
        .map_err(|e| Error::from(ErrorKind::InvalidRsaKey(e.to_string())))?;
    let public = sig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    Ok((public.n, public.e))
}

fn ec_coordinates(
    private_pkcs8: &[u8],
    alg: Algorithm,
) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>), Error> {
    let (curve, width) = match alg {
        Algorithm::ES256 => (EllipticCurve::P256, 32),
        Algorithm::ES384 => (EllipticCurve::P384, 48),
        _ => return Err(ErrorKind::InvalidEcdsaKey.into()),
    };
    let signing = ecdsa_signing(alg).ok_or(ErrorKind::InvalidEcdsaKey)?;
    let pair = sig::EcdsaKeyPair::from_pkcs8(signing, private_pkcs8, &SystemRandom::new())
        .map_err(|_| ErrorKind::InvalidEcdsaKey)?;
    // An uncompressed point: 0x04, then x and y.
    match pair.public_key().as_ref() {
        [4, xy @ ..] if xy.len() == 2 * width => {
            let (x, y) = xy.split_at(width);
            Ok((curve, x.to_vec(), y.to_vec()))
        }
        _ => Err(ErrorKind::InvalidEcdsaKey.into()),
    }
}

fn thumbprint_digest(data: &[u8], hash: ThumbprintHash) -> Vec<u8> {
    let alg = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
    };
    digest::digest(alg, data).as_ref().to_vec()
}
