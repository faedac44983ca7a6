//! Who may connect and how the connection is protected: SCRAM-SHA-256 password authentication
//! (`--password`) and TLS (`--tls-cert`, `--tls-key`), each off unless turned on.

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::{ClientInfo, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::QueryHandler;

/// The one user clients authenticate as when passwords are on.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl Debug for Credentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A certificate chain and its private key, both PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// What the server needs at every connection, prepared once at start.
pub(super) struct Security {
    /// The salted password SCRAM compares against, salted once: salting costs thousands of
    /// hash rounds.
    password: Option<Arc<SaltedPassword>>,
    pub(super) tls: Option<pgwire::tokio::TlsAcceptor>,
    /// The certificate in PEM, for SCRAM-SHA-256-PLUS's channel binding.
    certificate_pem: Option<Arc<Vec<u8>>>,
}

impl Security {
    pub(super) fn new(
        credentials: Option<&Credentials>,
        tls: Option<&TlsFiles>,
    ) -> std::io::Result<Self> {
        let password = credentials.map(|credentials| Arc::new(SaltedPassword::new(credentials)));
        let (tls, certificate_pem) = match tls {
            Some(files) => {
                let (acceptor, pem) = tls_acceptor(files)?;
                (Some(acceptor), Some(Arc::new(pem)))
            }
            None => (None, None),
        };
        Ok(Self {
            password,
            tls,
            certificate_pem,
        })
    }

    /// The startup handler for one connection: SCRAM when passwords are on, none otherwise.
    pub(super) fn startup(&self, handler: Arc<QueryHandler>) -> Startup {
        Startup {
            handler,
            password: self.password.clone(),
            certificate_pem: self.certificate_pem.clone(),
            scram: OnceLock::new(),
        }
    }
}

fn tls_acceptor(files: &TlsFiles) -> std::io::Result<(pgwire::tokio::TlsAcceptor, Vec<u8>)> {
    let invalid = |what: &str, path: &PathBuf, error: &dyn std::fmt::Display| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("TLS {what} {}: {error}", path.display()),
        )
    };
    let pem = std::fs::read(&files.certificate)
        .map_err(|error| invalid("certificate", &files.certificate, &error))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid("certificate", &files.certificate, &error))?;
    if chain.is_empty() {
        return Err(invalid(
            "certificate",
            &files.certificate,
            &"no certificate in the file",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|error| invalid("key", &files.key, &error))?;
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| invalid("configuration for", &files.certificate, &error))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|error| invalid("certificate and key", &files.certificate, &error))?;
    // libpq 17's direct TLS negotiation asks for this protocol name.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), pem))
}

/// The password SCRAM checks: the configured one salted once, for the configured user. Any
/// other user name gets a password no one knows, so that a wrong user fails exactly like a wrong
/// password (28P01) and says nothing about which users exist.
struct SaltedPassword {
    user: String,
    salt: Vec<u8>,
    salted: Vec<u8>,
    unknowable: Vec<u8>,
}

impl Debug for SaltedPassword {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SaltedPassword")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl SaltedPassword {
    fn new(credentials: &Credentials) -> Self {
        let salt: [u8; 16] = rand_bytes();
        let iterations = pgwire::api::auth::sasl::scram::SCRAM_ITERATIONS;
        let unknowable: [u8; 32] = rand_bytes();
        Self {
            user: credentials.user.clone(),
            salted: gen_salted_password(&credentials.password, &salt, iterations),
            unknowable: unknowable.to_vec(),
            salt: salt.to_vec(),
        }
    }
}

/// Random bytes from the operating system, through the crypto provider TLS uses.
fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    let provider = tokio_rustls::rustls::crypto::ring::default_provider();
    if provider.secure_random.fill(&mut bytes).is_err() {
        // Without an operating system source nothing here is safe; refuse to run.
        panic!("no source of secure random bytes");
    }
    bytes
}

#[async_trait]
impl AuthSource for SaltedPassword {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let password = if login.user() == Some(self.user.as_str()) {
            &self.salted
        } else {
            &self.unknowable
        };
        Ok(Password::new(Some(self.salt.clone()), password.clone()))
    }
}

/// One connection's startup: SCRAM (when on) then Tributary's own steps (the session learns who
/// connected; cancel requests can find the connection).
pub(super) struct Startup {
    handler: Arc<QueryHandler>,
    password: Option<Arc<SaltedPassword>>,
    certificate_pem: Option<Arc<Vec<u8>>>,
    /// This connection's SCRAM exchange, made at its first message, once it is known whether
    /// the connection is encrypted: channel binding (SCRAM-SHA-256-PLUS) is offered only over
    /// TLS, where libpq accepts it.
    scram: OnceLock<SASLAuthStartupHandler<DefaultServerParameterProvider>>,
}

impl Startup {
    fn scram(
        &self,
        password: &Arc<SaltedPassword>,
        secure: bool,
    ) -> &SASLAuthStartupHandler<DefaultServerParameterProvider> {
        self.scram.get_or_init(|| {
            let mut scram = ScramAuth::new(Arc::clone(password) as Arc<dyn AuthSource>);
            if secure
                && let Some(pem) = &self.certificate_pem
                && let Err(error) = scram.configure_certificate(pem)
            {
                tracing::warn!(%error, "SCRAM channel binding is off: the certificate did not parse");
            }
            SASLAuthStartupHandler::new(Arc::new(DefaultServerParameterProvider::default()))
                .with_scram(scram)
        })
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match &self.password {
            None => self.handler.on_startup(client, message).await,
            Some(password) => {
                let scram = self.scram(password, client.is_secure());
                if let Err(error) = scram.on_startup(client, message).await {
                    let user = client
                        .metadata()
                        .get(pgwire::api::METADATA_USER)
                        .cloned()
                        .unwrap_or_default();
                    return Err(authentication_failed(&user, error));
                }
                if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
                    self.handler.connected(client);
                }
                Ok(())
            }
        }
    }
}

/// Every error during authentication ends the connection (pgwire would let a connection whose
/// error is not FATAL carry on to queries), and a wrong password reads as in Postgres.
fn authentication_failed(user: &str, error: PgWireError) -> PgWireError {
    let info = match error {
        PgWireError::InvalidPassword(_) => ErrorInfo::new(
            "FATAL".to_owned(),
            "28P01".to_owned(),
            format!("password authentication failed for user \"{user}\""),
        ),
        other => {
            let mut info = ErrorInfo::from(other);
            info.severity = "FATAL".to_owned();
            info
        }
    };
    PgWireError::UserError(Box::new(info))
}
