//! HTTPS for the listener (`HttpTlsCertFile`, `HttpTlsKeyFile`).
//!
//! Tokens (`Authorization: Bearer`, `Splunk`) and log records must not cross a network
//! in clear text, and HEC and OTLP clients expect HTTPS. Terminating TLS here spares a
//! proxy in front of every node.
//!
//! Handshakes run in tasks of their own, each with a deadline, and only finished
//! connections reach the server: a client that connects and sends nothing (or speaks
//! plain HTTP to the TLS port) holds one task until its deadline, never the listener.
//! The certificate is read again when its files change, so a rotated certificate
//! (cert-manager, certbot) is served without a restart.

use anyhow::{Context, Result, anyhow};
use data2parquet::config::TlsFiles;
use data2parquet::log_at;
use data2parquet::logging::{Level, SharedLogger};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the certificate files are checked for a change: two `stat` calls at
/// most this often, and only at a handshake, so an idle server does no work for it.
const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// The PEM certificates of `path` (at least one).
fn read_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("reading certificates from {}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no PEM certificate in {}", path.display());
    }
    Ok(certs)
}

/// Reads the certificate chain and its key, checking that they belong together.
fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>> {
    let certs = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("reading the private key from {}", files.key.display()))?;
    let certified = CertifiedKey::from_der(certs, key, provider).with_context(|| {
        format!(
            "the key in {} does not fit the certificate in {}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    Ok(Arc::new(certified))
}

/// What tells that a file changed: its time, size and inode, so that a copy that
/// keeps the old time (`cp -p`) is still seen. Links are followed, as Kubernetes
/// swaps a secret's `..data` link to new files. `None` for a file that cannot be
/// read, so a rotation that removes and then writes a file shows as a change too.
type Stamp = [Option<(SystemTime, u64, u64)>; 2];

fn stamp(files: &TlsFiles) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let of = |p: &std::path::Path| {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len(), m.ino()))
    };
    [of(&files.cert), of(&files.key)]
}

struct Current {
    key: Arc<CertifiedKey>,
    stamp: Stamp,
    checked: Instant,
}

/// Serves the certificate last read, reading the files again after they change.
struct Reloading {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: Mutex<Current>,
    log: SharedLogger,
}

impl std::fmt::Debug for Reloading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur.checked.elapsed() >= RELOAD_CHECK {
            cur.checked = Instant::now();
            let now = stamp(&self.files);
            if now != cur.stamp {
                // Said once per change; a half-written pair (the certificate renewed,
                // its key not yet) is read again at the key's own change.
                cur.stamp = now;
                match load(&self.files, &self.provider) {
                    Ok(key) => {
                        cur.key = key;
                        log_at!(
                            self.log,
                            Level::Info,
                            "TLS certificate {} read again after it changed",
                            self.files.cert.display()
                        );
                    }
                    Err(e) => log_at!(
                        self.log,
                        Level::Warn,
                        "TLS certificate changed but cannot be used, still serving the previous one: {e:#}"
                    ),
                }
            }
        }
        Some(cur.key.clone())
    }
}

/// The verifier of client certificates for mutual TLS: those signed by a CA of `path`.
fn client_verifier(
    path: &std::path::Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs(path).context("the client CA file")? {
        roots
            .add(c)
            .with_context(|| format!("a client CA certificate in {}", path.display()))?;
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .with_context(|| format!("client CA certificates of {}", path.display()))
}

/// The TLS settings: HTTP/1.1 only (the server speaks nothing else), TLS 1.2 and 1.3;
/// with `client_ca`, only clients with a certificate from it.
pub fn acceptor(
    files: &TlsFiles,
    client_ca: Option<&std::path::Path>,
    log: SharedLogger,
) -> Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = load(files, &provider)?;
    let resolver = Reloading {
        files: files.clone(),
        provider: provider.clone(),
        current: Mutex::new(Current {
            key,
            stamp: stamp(files),
            checked: Instant::now(),
        }),
        log,
    };
    let versions = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let clients = match client_ca {
        Some(path) => versions.with_client_cert_verifier(client_verifier(path, provider)?),
        None => versions.with_no_client_auth(),
    };
    let mut cfg = clients.with_cert_resolver(Arc::new(resolver));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// A listener that yields connections whose TLS handshake has completed.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp` (inside the runtime), handshaking each connection in
    /// a task of its own.
    pub fn start(tcp: TcpListener, acceptor: TlsAcceptor, log: SharedLogger) -> Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            while !tx.is_closed() {
                let (sock, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        log_at!(log, Level::Warn, "accepting a connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, tx, log) = (acceptor.clone(), tx.clone(), log.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => {
                            log_at!(log, Level::Debug, "TLS handshake with {peer} failed: {e}")
                        }
                        Err(_) => log_at!(
                            log,
                            Level::Debug,
                            "TLS handshake with {peer} took over {HANDSHAKE_TIMEOUT:?}; closed"
                        ),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task ended (the runtime is shutting down): no more clients.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
