//! An OTLP/HTTP-protobuf receiver in the test process, over plain HTTP or TLS (a certificate made
//! at test time), that answers, never answers, or holds its answers until the test releases them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::timeline::Timeline;

/// What the receiver does with an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Decodes the spans and answers at once.
    Answer,
    /// Reads the request and never answers (a collector that hangs).
    Hang,
    /// Decodes the spans, then holds the answer until [`Receiver::release`].
    Hold,
    /// Answers its even requests `500` with a body of its own, and closes the connection on its
    /// odd ones without an answer: two causes, for warnings to name their own.
    RefuseOrClose,
}

/// A span as the receiver decoded it.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub name: String,
    pub attributes: HashMap<String, String>,
}

#[derive(Debug)]
struct State {
    behaviour: Mutex<Behaviour>,
    released: watch::Sender<bool>,
    spans: Mutex<Vec<ReceivedSpan>>,
    requests: AtomicUsize,
    connections: AtomicUsize,
    timeline: Timeline,
}

/// The receiver, listening on a free loopback port until the test's runtime ends.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// `http://127.0.0.1:<port>/v1/traces`, or `https://localhost:<port>/v1/traces`.
    pub endpoint: String,
    /// With TLS, the PEM file of the certificate authority that signed the receiver's
    /// certificate.
    pub ca_file: Option<PathBuf>,
    state: Arc<State>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Receiver {
    /// A plain HTTP receiver.
    pub async fn start(behaviour: Behaviour, timeline: &Timeline) -> Receiver {
        Self::listen(behaviour, timeline, None).await
    }

    /// A receiver behind TLS, with a certificate for `localhost` and `127.0.0.1` signed by a
    /// certificate authority made now, whose PEM is in [`ca_file`](Self::ca_file).
    pub async fn start_tls(behaviour: Behaviour, timeline: &Timeline) -> Receiver {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let certificate =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
        let ca_file = std::env::temp_dir().join(format!(
            "powertools-test-ca-{}-{}.pem",
            std::process::id(),
            uuid_like()
        ));
        std::fs::write(&ca_file, ca.pem()).unwrap();

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![certificate.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let mut receiver = Self::listen(behaviour, timeline, Some(acceptor)).await;
        receiver.ca_file = Some(ca_file);
        receiver
    }

    async fn listen(
        behaviour: Behaviour,
        timeline: &Timeline,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            behaviour: Mutex::new(behaviour),
            released: watch::channel(false).0,
            spans: Mutex::new(Vec::new()),
            requests: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            timeline: timeline.clone(),
        });
        let accepting = Arc::clone(&state);
        let scheme_tls = tls.is_some();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                accepting.connections.fetch_add(1, Ordering::SeqCst);
                let state = Arc::clone(&accepting);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(Arc::clone(&state), request));
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            // A handshake the client refuses (an untrusted certificate) ends here.
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        let endpoint = if scheme_tls {
            format!("https://localhost:{port}/v1/traces")
        } else {
            format!("http://127.0.0.1:{port}/v1/traces")
        };
        Receiver {
            endpoint,
            ca_file: None,
            state,
        }
    }

    /// Changes what the receiver does with the next exports.
    pub fn set(&self, behaviour: Behaviour) {
        *lock(&self.state.behaviour) = behaviour;
    }

    /// Answers the held exports, and every later one at once.
    pub fn release(&self) {
        self.state.released.send_replace(true);
    }

    /// The spans received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        lock(&self.state.spans).clone()
    }

    /// The export requests received so far (empty probes included).
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// The connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Waits until `count` spans named `name` have arrived, at most `limit`.
    pub async fn wait_for(&self, name: &str, count: usize, limit: Duration) -> Vec<ReceivedSpan> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let spans: Vec<_> = self
                .spans()
                .into_iter()
                .filter(|span| span.name == name)
                .collect();
            if spans.len() >= count || tokio::time::Instant::now() > deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let body = request.into_body().collect().await?.to_bytes();
    let request_number = state.requests.fetch_add(1, Ordering::SeqCst);
    let behaviour = *lock(&state.behaviour);
    if behaviour == Behaviour::RefuseOrClose {
        if request_number % 2 == 1 {
            // An error from the service: hyper closes the connection without an answer.
            return Err("closed without an answer".into());
        }
        return Ok(Response::builder()
            .status(500)
            .body(Full::new(Bytes::from_static(b"refused by the test")))?);
    }
    if behaviour == Behaviour::Hang {
        state.timeline.record("export held forever by the receiver");
        std::future::pending::<()>().await;
    }
    let export = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
    let spans: Vec<ReceivedSpan> = export
        .resource_spans
        .iter()
        .flat_map(|resource| &resource.scope_spans)
        .flat_map(|scope| &scope.spans)
        .map(|span| ReceivedSpan {
            name: span.name.clone(),
            attributes: span
                .attributes
                .iter()
                .map(|attribute| {
                    let value = match attribute.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(any_value::Value::StringValue(text)) => text.clone(),
                        Some(any_value::Value::BoolValue(flag)) => flag.to_string(),
                        Some(any_value::Value::IntValue(number)) => number.to_string(),
                        Some(other) => format!("{other:?}"),
                        None => String::new(),
                    };
                    (attribute.key.clone(), value)
                })
                .collect(),
        })
        .collect();
    if !spans.is_empty() {
        let ids: Vec<&str> = spans
            .iter()
            .filter_map(|span| {
                span.attributes
                    .get("faas.invocation_id")
                    .map(String::as_str)
            })
            .collect();
        state.timeline.record(&format!(
            "export received: {} spans of {ids:?}",
            spans.len()
        ));
    }
    lock(&state.spans).extend(spans.iter().cloned());
    if behaviour == Behaviour::Hold {
        let mut released = state.released.subscribe();
        let _ = released.wait_for(|released| *released).await;
    }
    if !spans.is_empty() {
        state.timeline.record("export answered");
    }
    Ok(Response::builder()
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::new()))
        .unwrap())
}
