//! TLS with rustls (ring provider) for the database and, through
//! [`client_config`], for the broker too: one place that loads CA and client
//! certificates from PEM files and checks the peer as the chosen mode says.
//!
//! A refused certificate is reported with the option that gave the CA, so
//! an operator reading "UnknownIssuer" knows which file to look at.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

/// How much of the peer's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Encrypt only (libpq's `prefer`/`require` without a CA): the
    /// certificate is not checked, the handshake signature is.
    Nothing,
    /// Signed by the CA, for whatever host name (`verify-ca`).
    Chain,
    /// Signed by the CA and issued for the host connected to (`verify-full`,
    /// and always for `mqtts://`).
    Full,
}

/// Where the trust and the client identity come from. `*_option` name the
/// setting that gave each file, for error messages.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub verify: Verify,
    pub ca_file: Option<PathBuf>,
    pub ca_option: &'static str,
    /// Without a CA file, trust the Mozilla roots (a broker with a public
    /// certificate) instead of refusing to start.
    pub public_roots_by_default: bool,
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub client_option: &'static str,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_error(option: &str, path: &Path, what: &str, e: impl fmt::Display) -> String {
    format!("{option} {}: {what}: {e}", path.display())
}

fn load_roots(option: &str, path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| read_error(option, path, "cannot read it", e))?;
    for cert in certs {
        let cert = cert.map_err(|e| read_error(option, path, "not a PEM certificate", e))?;
        roots.add(cert).map_err(|e| read_error(option, path, "unusable certificate", e))?;
    }
    if roots.is_empty() {
        return Err(format!("{option} {}: no certificate in the file", path.display()));
    }
    Ok(roots)
}

/// A rustls client configuration as `files` says. Errors name the option.
pub fn client_config(files: &TlsFiles) -> Result<ClientConfig, String> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match (files.verify, &files.ca_file) {
        (Verify::Nothing, _) => Arc::new(Unchecked(provider.clone())),
        (_, None) if !files.public_roots_by_default => {
            return Err(format!("{} is needed to verify the server's certificate", files.ca_option));
        }
        (verify, path) => {
            let roots = match path {
                Some(path) => load_roots(files.ca_option, path)?,
                None => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
            };
            let roots = Arc::new(roots);
            let hint = match path {
                Some(path) => format!("checked against {} {}", files.ca_option, path.display()),
                None => format!("checked against the public CAs; set {} for a private one", files.ca_option),
            };
            let webpki = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| format!("{}: unusable CA: {e}", files.ca_option))?;
            Arc::new(Checked { webpki, roots, provider: provider.clone(), full: verify == Verify::Full, hint })
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match &files.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let option = files.client_option;
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| read_error(option, cert, "cannot read it", e))?
                .collect::<Result<_, _>>()
                .map_err(|e| read_error(option, cert, "not a PEM certificate", e))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| read_error(option, key, "not a PEM private key", e))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("{option}: {e}"))
        }
    }
}

/// Checks the chain (and the name, if `full`) and says where the CA came
/// from when it refuses.
#[derive(Debug)]
struct Checked {
    webpki: Arc<WebPkiServerVerifier>,
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    full: bool,
    hint: String,
}

impl ServerCertVerifier for Checked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = if self.full {
            self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        } else {
            rustls::server::ParsedCertificate::try_from(end_entity)
                .and_then(|cert| {
                    rustls::client::verify_server_cert_signed_by_trust_anchor(
                        &cert,
                        &self.roots,
                        intermediates,
                        now,
                        self.provider.signature_verification_algorithms.all,
                    )
                })
                .map(|()| ServerCertVerified::assertion())
        };
        result.map_err(|e| rustls::Error::General(format!("the server's certificate was refused ({}): {e}", self.hint)))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// libpq's `prefer`/`require`: encrypted, but any certificate is taken.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// tokio-postgres' TLS hook over tokio-rustls.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<ClientConfig>,
}

impl fmt::Debug for MakeRustls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MakeRustls").finish_non_exhaustive()
    }
}

impl MakeRustls {
    pub fn new(config: ClientConfig) -> MakeRustls {
        MakeRustls { config: Arc::new(config) }
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, io::Error> {
        // Unix sockets come with no host name; PostgreSQL never offers TLS
        // on them, so the placeholder is never used in a handshake.
        let name = ServerName::try_from(domain.to_string())
            .unwrap_or_else(|_| ServerName::try_from("localhost").expect("a valid name"));
        Ok(RustlsConnect { config: self.config.clone(), name })
    }
}

#[derive(Debug)]
pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move { Ok(RustlsStream(Box::new(connector.connect(self.name, stream).await?))) })
    }
}

/// An encrypted database connection.
pub struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S> fmt::Debug for RustlsStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RustlsStream").finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM without channel binding (tokio-postgres' `prefer` default).
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}
