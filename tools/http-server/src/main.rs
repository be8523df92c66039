//! http-server: REST ingest into the data2parquet pipeline, for applications that cannot
//! run Fluent Bit. Same library, same configuration (Address, Port, and every other key).
//!
//! Records are acknowledged only once the buffer holds them (with Redis: once Redis
//! confirmed). A buffer still full after BufferFullWait answers 429 with Retry-After.
//! SIGTERM and SIGINT stop the listener, let requests in progress finish, then write
//! every pending record.

mod body;
mod encoding;
mod hec;
mod idempotent;
mod otlp;
mod probe;
mod routes;
mod tls;

use anyhow::{Context, Result};
use clap::Parser;
use data2parquet::config::{Config, ConfigBuilder};
use data2parquet::ingest::IngestSpec;
use data2parquet::logging::{Level, Logger, StderrLogger};
use data2parquet::receiver::Receiver;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "http-server",
    version,
    about = "REST ingest of log records into Parquet"
)]
struct Args {
    /// JSON config file (snake_case keys); also accepted as the first argument, as upstream.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Upstream's positional config file.
    #[arg(value_name = "CONFIG")]
    positional: Option<PathBuf>,
}

fn load(args: &Args) -> Result<Config> {
    let mut b = ConfigBuilder::new();
    if let Some(p) = args.config.as_ref().or(args.positional.as_ref()) {
        b.merge_json_file(p)?;
    }
    b.apply_env(std::env::vars())?;
    Ok(b.build()?)
}

fn main() {
    data2parquet::standalone::no_huge_pages();
    if let Err(e) = run() {
        eprintln!("http-server: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    let cfg = load(&args)?;
    let log = StderrLogger::new("http-server", cfg.debug, cfg.log_formatter);
    let spec: &'static IngestSpec = Box::leak(Box::new(IngestSpec::from_config(&cfg)?));
    spec.log_notices(&*log);
    let receiver = Arc::new(Receiver::start(&cfg, log.clone()).context("starting the pipeline")?);
    let probe = probe::Probe::new(&cfg);
    let state = Arc::new(routes::State::new(
        cfg.clone(),
        spec,
        receiver.clone(),
        probe,
        log.clone(),
    ));
    let host = if cfg.address.is_empty() {
        "0.0.0.0"
    } else {
        cfg.address.as_str()
    };
    let addr: SocketAddr = format!("{host}:{}", cfg.port)
        .parse()
        .or_else(|_| {
            use std::net::ToSocketAddrs;
            format!("{host}:{}", cfg.port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| std::io::Error::other("no address"))
        })
        .with_context(|| format!("bad listen address {host}:{}", cfg.port))?;
    // Read before serving, so that a missing or mismatched certificate stops the start.
    let tls = match &cfg.http_tls {
        Some(files) => Some(
            tls::acceptor(files, cfg.http_tls_client_ca.as_deref(), log.clone())
                .context("setting up HTTPS")?,
        ),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("d2p-http")
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        log.log(
            Level::Info,
            &format!(
                "listening on {}://{local} ({} buffer, {})",
                if tls.is_some() { "https" } else { "http" },
                format!("{:?}", cfg.buffer_type).to_lowercase(),
                receiver.writer_description()
            ),
        );
        let app = routes::router(state);
        match tls {
            Some(acceptor) => {
                let listener = tls::TlsListener::start(listener, acceptor, log.clone())?;
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown_signal())
                    .await
            }
            None => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown_signal())
                    .await
            }
        }
        .context("serving")
    })?;
    log.log(Level::Info, "shutting down: writing every pending record");
    let report = receiver.close();
    log.log(
        Level::Info,
        &format!(
            "stopped: {} rows in {} files at shutdown, {} kept for recovery, {} lost",
            report.rows, report.files, report.recovered, report.lost
        ),
    );
    if report.lost > 0 {
        std::process::exit(2);
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, only Ctrl-C (handled by the default) stops us.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
