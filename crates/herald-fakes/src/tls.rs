//! A throwaway certificate authority and the server certificates it signs, so clients under test
//! verify the fakes' TLS exactly as they verify real providers: by trusting one extra CA.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Names every fake's certificate is valid for.
const DEFAULT_SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// A self-signed CA plus one server certificate it signed.
pub struct TestCa {
    ca: CertifiedIssuer<'static, KeyPair>,
    server_cert: CertificateDer<'static>,
    server_key_der: Vec<u8>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    /// A new CA whose server certificate is valid for `localhost` and `127.0.0.1`.
    pub fn new() -> Self {
        Self::with_server_names(&[])
    }

    /// Like [`TestCa::new`], with extra DNS names or IP addresses in the server certificate
    /// (a staging fake reached by a host name).
    pub fn with_server_names(extra_names: &[&str]) -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Herald fake providers test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");

        let names: Vec<String> = DEFAULT_SERVER_NAMES
            .iter()
            .chain(extra_names)
            .map(|name| name.to_string())
            .collect();
        let mut server_params = CertificateParams::new(names).expect("server name is invalid");
        server_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().expect("server key");
        let server_cert = server_params
            .signed_by(&server_key, &*ca)
            .expect("server certificate");

        Self {
            ca,
            server_cert: server_cert.der().clone(),
            server_key_der: server_key.serialize_der(),
        }
    }

    /// The CA certificate in PEM: what a client adds to its trusted roots.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// Writes [`TestCa::ca_pem`] to `path` (for a process under test that reads a CA file).
    pub fn write_ca_pem(&self, path: impl AsRef<Path>) -> io::Result<()> {
        std::fs::write(path, self.ca_pem())
    }

    /// A server configuration presenting the CA-signed certificate and offering `alpn`
    /// (e.g. `&[b"h2", b"http/1.1"]`), on the ring provider whatever the process default is.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.server_cert.clone(), self.ca.der().clone()], key)
            .expect("the server certificate matches its key");
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Arc::new(config)
    }

    /// A client configuration trusting only this CA and offering `alpn`: for tests' own clients.
    pub fn client_config(&self, alpn: &[&[u8]]) -> rustls::ClientConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca.der().clone())
            .expect("the CA certificate parses");
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        config
    }
}
