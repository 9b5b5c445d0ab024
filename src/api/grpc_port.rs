//! Counters of the gRPC API port for the metrics port: open connections, calls per method
//! and calls that ended with an error status.
//!
//! Methods are counted under `package.Service/Method` when the port serves them (known from
//! the services' descriptors, so every series exists from startup) and under `other` when
//! not, so a client sending made-up paths cannot grow the label set. An error is a call whose
//! response carries a non-OK `grpc-status` in its headers (every unary error, and a stream
//! refused before its first message) or an HTTP status other than 200; a stream that fails
//! after it started reports its status in trailers and is not counted.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::Service;
use tonic::server::NamedService;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Label of calls to a path the port does not serve.
pub const OTHER: &str = "other";

/// The port's counters.
#[derive(Debug)]
pub struct GrpcPortStats {
    connections: AtomicI64,
    errors: AtomicU64,
    /// Calls per served method (`package.Service/Method`), fixed at construction.
    calls: BTreeMap<String, AtomicU64>,
    other: AtomicU64,
}

impl GrpcPortStats {
    /// Counters for the methods of the services in `descriptor_sets` (encoded
    /// `FileDescriptorSet`s, as generated code embeds them).
    pub fn new(descriptor_sets: &[&[u8]]) -> GrpcPortStats {
        let mut calls = BTreeMap::new();
        for set in descriptor_sets {
            // Embedded at build time: a set that does not decode contributes no methods
            // (its calls count as `other`) rather than stopping the node.
            let Ok(set) = prost_types::FileDescriptorSet::decode(*set) else {
                continue;
            };
            for file in &set.file {
                let package = file.package();
                for svc in &file.service {
                    for m in &svc.method {
                        let service = if package.is_empty() {
                            svc.name().to_string()
                        } else {
                            format!("{package}.{}", svc.name())
                        };
                        calls.insert(format!("{service}/{}", m.name()), AtomicU64::new(0));
                    }
                }
            }
        }
        GrpcPortStats {
            connections: AtomicI64::new(0),
            errors: AtomicU64::new(0),
            calls,
            other: AtomicU64::new(0),
        }
    }

    /// Open connections.
    pub fn connections(&self) -> i64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Calls that ended with an error status.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Calls per method, `other` last.
    pub fn calls(&self) -> impl Iterator<Item = (&str, u64)> {
        self.calls
            .iter()
            .map(|(k, v)| (k.as_str(), v.load(Ordering::Relaxed)))
            .chain(std::iter::once((OTHER, self.other.load(Ordering::Relaxed))))
    }

    fn count_call(&self, path: &str) {
        let method = path.strip_prefix('/').unwrap_or(path);
        self.calls
            .get(method)
            .unwrap_or(&self.other)
            .fetch_add(1, Ordering::Relaxed);
    }

    fn count_response<B>(&self, res: &Response<B>) {
        let status_ok = res
            .headers()
            .get("grpc-status")
            .is_none_or(|v| v.as_bytes() == b"0");
        if res.status() != 200 || !status_ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A service of the port, counted.
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    stats: Arc<GrpcPortStats>,
}

impl<S> Counted<S> {
    /// Counts the calls of `inner` in `stats`.
    pub fn new(inner: S, stats: Arc<GrpcPortStats>) -> Counted<S> {
        Counted { inner, stats }
    }
}

impl<S: NamedService> NamedService for Counted<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, RB> Service<Request<B>> for Counted<S>
where
    S: Service<Request<B>, Response = Response<RB>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<RB>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.stats.count_call(req.uri().path());
        let stats = self.stats.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            if let Ok(r) = &res {
                stats.count_response(r);
            }
            res
        })
    }
}

/// A connection of the port, counted while open.
pub struct CountedStream {
    inner: TcpStream,
    stats: Option<Arc<GrpcPortStats>>,
}

impl CountedStream {
    /// Counts `inner` as open until dropped (no counting with `stats` None).
    pub fn new(inner: TcpStream, stats: Option<Arc<GrpcPortStats>>) -> CountedStream {
        if let Some(s) = &stats {
            s.connections.fetch_add(1, Ordering::Relaxed);
        }
        CountedStream { inner, stats }
    }
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        if let Some(s) = &self.stats {
            s.connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Connected for CountedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_come_from_the_descriptors_and_unknown_paths_count_as_other() {
        let s = GrpcPortStats::new(&[tonic_health::pb::FILE_DESCRIPTOR_SET, b"not protobuf"]);
        s.count_call("/grpc.health.v1.Health/Check");
        s.count_call("/made.up/Path");
        s.count_call("/grpc.health.v1.Health/NoSuchMethod");
        let calls: BTreeMap<&str, u64> = s.calls().collect();
        assert_eq!(calls["grpc.health.v1.Health/Check"], 1);
        assert_eq!(calls["grpc.health.v1.Health/Watch"], 0);
        assert_eq!(calls[OTHER], 2);
        assert_eq!(calls.len(), 3, "{calls:?}");

        let ok = Response::builder().status(200).body(()).unwrap();
        let trailers_only = Response::builder()
            .status(200)
            .header("grpc-status", "5")
            .body(())
            .unwrap();
        let http_error = Response::builder().status(503).body(()).unwrap();
        s.count_response(&ok);
        assert_eq!(s.errors(), 0);
        s.count_response(&trailers_only);
        s.count_response(&http_error);
        assert_eq!(s.errors(), 2);
    }
}
