//! [`TestClient`]: send requests to an app and its stack in-process, no socket needed.

mod jar;
mod response;

pub use response::{TestResponse, TestStream};

use std::convert::Infallible;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tower::{Service, ServiceExt};

use crate::battery::StoreScope;
use crate::{Request, Response};

/// An in-process client for tests, like Starlette's `TestClient`.
///
/// ```
/// use callnext::{Stack, TestClient};
/// use axum::{routing::{get, post}, Json, Router};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let app = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .route("/echo", post(|Json(v): Json<serde_json::Value>| async move { Json(v) }));
/// let client = TestClient::new(Stack::new().service(app));
///
/// let res = client.get("/").header("x-trace", "1").bearer("token").await;
/// assert_eq!(res.status(), 200);
/// assert_eq!(res.text(), "hello");
/// assert_eq!(client.get("/nope").await.text(), r#"{"detail":"Not Found"}"#);
///
/// let res = client.post("/echo").json(&serde_json::json!({"n": 1})).await;
/// #[derive(serde::Deserialize)]
/// struct Echo { n: u32 }
/// assert_eq!(res.json::<Echo>().n, 1);
/// # });
/// ```
#[derive(Clone)]
pub struct TestClient<S> {
    service: S,
    peer: SocketAddr,
    /// The cookie jar, when [`TestClient::cookies`] turned it on (shared by the clones).
    jar: Option<Arc<Mutex<jar::Jar>>>,
    /// The scope of its requests' keys in shared stores (shared by the clones).
    scope: Option<StoreScope>,
}

impl<S> fmt::Debug for TestClient<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestClient").finish_non_exhaustive()
    }
}

impl<S> TestClient<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    /// A client for `service` (a [`StackService`](crate::StackService), a `Router`, …).
    ///
    /// Its requests come from `127.0.0.1:50000`, as axum's `ConnectInfo<SocketAddr>` (and so
    /// as the [`ClientIp`](crate::ClientIp) a stack sets), unless [`TestClient::peer`] says
    /// otherwise. Its requests carry a [`StoreScope`] of their own: the keys they leave in a
    /// shared store (a Redis rate limit's buckets) are not those of another client, another
    /// test or another run ([`TestClient::store_scope`], [`TestClient::shared_store_keys`]).
    pub fn new(service: S) -> Self {
        Self {
            service,
            peer: SocketAddr::from(([127, 0, 0, 1], 50000)),
            jar: None,
            scope: Some(StoreScope::random()),
        }
    }

    /// Scopes the keys its requests leave in shared stores by `name` instead of a random
    /// scope: clients given the same name (over two stacks standing for two instances of an
    /// app, say) share their counters.
    #[must_use]
    pub fn store_scope(mut self, name: impl Into<String>) -> Self {
        self.scope = Some(StoreScope::new(name.into()));
        self
    }

    /// Its requests leave the keys a server's would, unscoped: what another process (a
    /// server under test, `redis-cli`) sees.
    #[must_use]
    pub fn shared_store_keys(mut self) -> Self {
        self.scope = None;
        self
    }

    /// Keeps the cookies answers set, as a browser (and Starlette's `TestClient`) does, and
    /// sends them with every later request that has no `Cookie` header of its own; a cookie
    /// an answer expires (`Max-Age=0`) is dropped. Clones share the jar.
    ///
    /// ```
    /// use callnext::middleware::session::{Session, Sessions};
    /// use callnext::{HttpError, Stack, TestClient};
    /// use axum::{routing::{get, post}, Router};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let app = Router::new()
    ///     .route("/login", post(|s: Session| async move {
    ///         s.insert("user", "ann").await?;
    ///         s.cycle_id().await?;
    ///         Ok::<_, HttpError>("in")
    ///     }))
    ///     .route("/me", get(|s: Session| async move {
    ///         Ok::<_, HttpError>(s.get::<String>("user").await?.unwrap_or_default())
    ///     }))
    ///     .route("/logout", post(|s: Session| async move {
    ///         s.destroy().await?;
    ///         Ok::<_, HttpError>("out")
    ///     }));
    /// let sessions = Sessions::builder().secret([1u8; 64]).build().unwrap();
    /// let client = TestClient::new(Stack::new().hook(sessions).service(app)).cookies();
    ///
    /// client.post("/login").send().await;
    /// assert!(client.cookie("id").is_some());
    /// assert_eq!(client.get("/me").await.text(), "ann");
    /// client.post("/logout").send().await;
    /// assert_eq!(client.cookie("id"), None);
    /// assert_eq!(client.get("/me").await.text(), "");
    /// # });
    /// ```
    #[must_use]
    pub fn cookies(mut self) -> Self {
        self.jar.get_or_insert_with(Arc::default);
        self
    }

    /// The value of the cookie `name` in the jar (see [`TestClient::cookies`]).
    pub fn cookie(&self, name: &str) -> Option<String> {
        let jar = self.jar.as_ref()?;
        let jar = jar.lock().unwrap_or_else(PoisonError::into_inner);
        jar.get(name).map(str::to_owned)
    }

    /// Sends the requests as if from `peer` (a client address for rate limits, allow-lists,
    /// trusted proxies).
    ///
    /// ```
    /// use callnext::{ClientIp, Stack, TestClient};
    /// use axum::{routing::get, Router};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let app = Router::new().route("/", get(|ip: ClientIp| async move { ip.to_string() }));
    /// let client = TestClient::new(Stack::new().service(app)).peer("203.0.113.9:4000".parse().unwrap());
    /// assert_eq!(client.get("/").await.text(), "203.0.113.9");
    /// # });
    /// ```
    #[must_use]
    pub fn peer(mut self, peer: SocketAddr) -> Self {
        self.peer = peer;
        self
    }

    /// Sends `req` and buffers the whole response.
    pub fn request(&self, req: Request) -> impl Future<Output = TestResponse> + Send {
        let call = self.call(req);
        async move { TestResponse::buffer(call.await).await }
    }

    fn call(&self, mut req: Request) -> impl Future<Output = Response> + Send {
        let service = self.service.clone();
        if req.extensions().get::<ConnectInfo<SocketAddr>>().is_none() {
            req.extensions_mut().insert(ConnectInfo(self.peer));
        }
        if let Some(scope) = &self.scope {
            if req.extensions().get::<StoreScope>().is_none() {
                req.extensions_mut().insert(scope.clone());
            }
        }
        let jar = self.jar.clone();
        if let Some(jar) = &jar {
            if !req.headers().contains_key(header::COOKIE) {
                let jar = jar.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(cookies) = jar.header() {
                    req.headers_mut().insert(header::COOKIE, cookies);
                }
            }
        }
        async move {
            let res = match service.oneshot(req).await {
                Ok(res) => res,
                Err(never) => match never {},
            };
            if let Some(jar) = jar {
                jar.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .store(res.headers());
            }
            res
        }
    }

    /// A request with `method` to `path`; add headers and a body, then `.await` it.
    pub fn method(&self, method: Method, path: &str) -> TestRequest<S> {
        TestRequest {
            client: self.clone(),
            builder: http::Request::builder().method(method).uri(path),
            body: Body::empty(),
        }
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> TestRequest<S> {
        self.method(Method::GET, path)
    }

    /// `POST path`.
    pub fn post(&self, path: &str) -> TestRequest<S> {
        self.method(Method::POST, path)
    }

    /// `PUT path`.
    pub fn put(&self, path: &str) -> TestRequest<S> {
        self.method(Method::PUT, path)
    }

    /// `PATCH path`.
    pub fn patch(&self, path: &str) -> TestRequest<S> {
        self.method(Method::PATCH, path)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> TestRequest<S> {
        self.method(Method::DELETE, path)
    }

    /// `HEAD path`.
    pub fn head(&self, path: &str) -> TestRequest<S> {
        self.method(Method::HEAD, path)
    }

    /// `OPTIONS path`.
    pub fn options(&self, path: &str) -> TestRequest<S> {
        self.method(Method::OPTIONS, path)
    }
}

/// A request being built by a [`TestClient`]; `.await` it for a [`TestResponse`], or call
/// [`TestRequest::stream`] to read the response body as it comes.
///
/// # Panics
///
/// Awaiting panics (failing the test) when a header name or value given to it was invalid.
#[must_use = "a test request does nothing until it is awaited"]
pub struct TestRequest<S> {
    client: TestClient<S>,
    builder: http::request::Builder,
    body: Body,
}

impl<S> fmt::Debug for TestRequest<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestRequest")
            .field("method", &self.builder.method_ref())
            .field("uri", &self.builder.uri_ref())
            .finish_non_exhaustive()
    }
}

impl<S> TestRequest<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    /// Adds a header (repeated names are all sent).
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        K: TryInto<HeaderName>,
        K::Error: Into<http::Error>,
        V: TryInto<HeaderValue>,
        V::Error: Into<http::Error>,
    {
        self.builder = self.builder.header(name, value);
        self
    }

    /// Adds `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header(header::AUTHORIZATION, format!("Bearer {token}"))
    }

    /// Sends `value` as a JSON body, with `Content-Type: application/json`.
    ///
    /// # Panics
    ///
    /// When `value` cannot be serialised (a map with non-string keys).
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        let bytes = serde_json::to_vec(value)
            .unwrap_or_else(|err| panic!("test request body is not JSON: {err}"));
        self.builder = self
            .builder
            .header(header::CONTENT_TYPE, "application/json");
        self.body = Body::from(bytes);
        self
    }

    /// Sends `body` as it is (add a content type with [`TestRequest::header`]); for malformed
    /// input, say.
    pub fn body(mut self, body: impl Into<Body>) -> Self {
        self.body = body.into();
        self
    }

    fn build(self) -> (TestClient<S>, Request) {
        let uri = format!("{:?}", self.builder.uri_ref());
        let req = self
            .builder
            .body(self.body)
            .unwrap_or_else(|err| panic!("invalid test request for {uri}: {err}"));
        (self.client, req)
    }

    /// Sends the request and buffers the whole response.
    pub fn send(self) -> impl Future<Output = TestResponse> + Send {
        let (client, req) = self.build();
        client.request(req)
    }

    /// Sends the request and returns as soon as the response head arrives; the body is read
    /// chunk by chunk with [`TestStream::next_chunk`], so an endless stream (server-sent events)
    /// can be tested.
    pub async fn stream(self) -> TestStream {
        let (client, req) = self.build();
        let call = client.call(req);
        let (parts, body) = call.await.into_parts();
        TestStream {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}

impl<S> IntoFuture for TestRequest<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Output = TestResponse;
    type IntoFuture = Pin<Box<dyn Future<Output = TestResponse> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}
