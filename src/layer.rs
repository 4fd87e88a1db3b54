//! The shape every layer of this crate has: buffer the body, run an async check, then call the
//! inner service.
//!
//! [`RawBodyLayer`], [`OrgResolveLayer`](crate::OrgResolveLayer) and
//! [`SignatureVerifyLayer`](crate::SignatureVerifyLayer) differ only in their [`RequestCheck`];
//! [`CheckService`] and its [`ResponseFuture`] are written once, after tower-http's
//! `AsyncRequireAuthorization`:
//!
//! 1. the body is buffered once ([`buffer_request`]: any `http_body::Body`, the check's
//!    [`body_limit`](RequestCheck::body_limit), a [`RawBody`](crate::RawBody) left by an earlier
//!    stage is reused);
//! 2. the check runs; a [`Rejection`] is answered through the layer's [`OnReject`] and the inner
//!    service is not called;
//! 3. the inner service is called with the request, its body now [`Buffered`];
//! 4. the check learns the inner service's status ([`RequestCheck::on_response`]) and may finish
//!    some work before the response goes out. If the inner service fails, or the response
//!    future is dropped first (a timeout around the layer, a client gone), the check's
//!    [`Admission`](RequestCheck::Admission) is dropped instead.
//!
//! Only the check's own work is boxed (it runs before the inner call); the inner service's
//! future is polled in place.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

use tower_layer::Layer;

use crate::body::{Buffered, DEFAULT_BODY_LIMIT, buffer_request};
use crate::error::BoxError;
use crate::org::OrgContext;
use crate::reject::{DefaultOnReject, OnReject, Rejection, respond};

/// An asynchronous check of a buffered request, run by [`CheckService`] before the inner call.
pub trait RequestCheck: Clone + Send + Sync + 'static {
    /// What a passed request leaves behind until its response is known (e.g. a replay guard's
    /// hold on the delivery). Dropped without [`on_response`](Self::on_response) when the
    /// inner service fails or the response future is dropped.
    type Admission: Send + 'static;

    /// The most bytes of body this check accepts (413 above it).
    fn body_limit(&self) -> usize {
        DEFAULT_BODY_LIMIT
    }

    /// Checks `req`, whose buffered body is `body`: the request to pass on (extensions added),
    /// or why it is refused.
    fn check(
        &self,
        req: Request<Buffered>,
        body: Bytes,
    ) -> impl Future<Output = Result<(Request<Buffered>, Self::Admission), Rejection>> + Send + 'static;

    /// Called with the inner service's status once it answered; work it returns is awaited
    /// before the response is.
    fn on_response(&self, admission: Self::Admission, status: StatusCode) -> Option<BoxFuture> {
        let _ = (admission, status);
        None
    }
}

/// Closures are checks too: `Fn(Request<Buffered>, Bytes) -> Future<Output = Result<Request<
/// Buffered>, Rejection>>`, with nothing kept until the response. Put one in a [`CheckLayer`].
///
/// ```
/// use bytes::Bytes;
/// use http::Request;
/// use vapi_webhooks::body::Buffered;
/// use vapi_webhooks::error::{Rejection, VerifyError};
/// use vapi_webhooks::layer::CheckLayer;
///
/// // Only JSON bodies, with the crate's uniform 401 otherwise.
/// let json_only = CheckLayer::new(|req: Request<Buffered>, body: Bytes| async move {
///     match body.first() {
///         Some(b'{') => Ok(req),
///         _ => Err(Rejection::new(VerifyError::InvalidSignature, None)),
///     }
/// });
/// # let _ = json_only;
/// ```
impl<F, Fut> RequestCheck for F
where
    F: Fn(Request<Buffered>, Bytes) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Request<Buffered>, Rejection>> + Send + 'static,
{
    type Admission = ();

    fn check(
        &self,
        req: Request<Buffered>,
        body: Bytes,
    ) -> impl Future<Output = Result<(Request<Buffered>, ()), Rejection>> + Send + 'static {
        let checked = self(req, body);
        async move { checked.await.map(|req| (req, ())) }
    }
}

/// A layer running any [`RequestCheck`] (a closure, say) in the crate's skeleton: the body
/// buffered once within a limit ([`DEFAULT_BODY_LIMIT`]), the check, then the inner service;
/// refusals answered by the [`OnReject`] ([`DefaultOnReject`] unless replaced).
#[derive(Clone, Debug)]
pub struct CheckLayer<C, R = DefaultOnReject> {
    check: C,
    on_reject: R,
}

impl<C: RequestCheck> CheckLayer<C> {
    /// A layer running `check`.
    pub fn new(check: C) -> Self {
        Self {
            check,
            on_reject: DefaultOnReject,
        }
    }
}

impl<C, R> CheckLayer<C, R> {
    /// Builds rejection responses with `on_reject` instead of [`DefaultOnReject`].
    pub fn on_reject<R2>(self, on_reject: R2) -> CheckLayer<C, R2> {
        CheckLayer {
            check: self.check,
            on_reject,
        }
    }
}

impl<S, C: Clone, R: Clone> Layer<S> for CheckLayer<C, R> {
    type Service = CheckService<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        CheckService::new(inner, self.check.clone(), self.on_reject.clone())
    }
}

/// A service that runs a [`RequestCheck`] before its inner service; see the
/// [module docs](self).
///
/// Built by the crate's layers: [`OrgResolve`](crate::resolve::OrgResolve),
/// [`SignatureVerify`](crate::verify::SignatureVerify) and
/// [`RawBodyService`] are this type with their check.
#[derive(Clone)]
pub struct CheckService<S, C, R> {
    inner: S,
    check: C,
    on_reject: R,
}

impl<S, C, R> CheckService<S, C, R> {
    pub(crate) fn new(inner: S, check: C, on_reject: R) -> Self {
        Self {
            inner,
            check,
            on_reject,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug, C: fmt::Debug, R: fmt::Debug> fmt::Debug for CheckService<S, C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckService")
            .field("inner", &self.inner)
            .field("check", &self.check)
            .field("on_reject", &self.on_reject)
            .finish()
    }
}

impl<S, C, R, ReqBody, ResBody> Service<Request<ReqBody>> for CheckService<S, C, R>
where
    S: Service<Request<Buffered>, Response = Response<ResBody>> + Clone + Send + 'static,
    C: RequestCheck,
    R: OnReject<ResBody>,
    ReqBody: Body + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, S::Future, C, R, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The service driven to readiness goes into the future; its clone serves the next call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let check = self.check.clone();
        let checking = {
            let check = check.clone();
            Box::pin(async move {
                let org = req.extensions().get::<OrgContext>().map(|ctx| ctx.org_id);
                let (req, body) = buffer_request(req, check.body_limit())
                    .await
                    .map_err(|err| Rejection::new(err, org))?;
                check.check(req, body).await
            })
        };
        ResponseFuture {
            state: State::Checking {
                future: checking,
                inner: Some(inner),
            },
            check,
            on_reject: self.on_reject.clone(),
        }
    }
}

type CheckFuture<A> =
    Pin<Box<dyn Future<Output = Result<(Request<Buffered>, A), Rejection>> + Send>>;

/// Work a [`RequestCheck`] finishes after the inner service answered.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

pin_project_lite::pin_project! {
    /// The response future of [`CheckService`]: the check, then the inner service's future.
    pub struct ResponseFuture<S, F, C: RequestCheck, R, ResBody> {
        #[pin]
        state: State<S, F, C::Admission, ResBody>,
        check: C,
        on_reject: R,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<S, F, A, ResBody> {
        Checking {
            future: CheckFuture<A>,
            inner: Option<S>,
        },
        Calling {
            #[pin]
            future: F,
            admission: Option<A>,
        },
        Finishing {
            future: BoxFuture,
            response: Option<Response<ResBody>>,
        },
        Done,
    }
}

impl<S, F, C, R, ResBody, E> Future for ResponseFuture<S, F, C, R, ResBody>
where
    S: Service<Request<Buffered>, Response = Response<ResBody>, Future = F, Error = E>,
    F: Future<Output = Result<Response<ResBody>, E>>,
    C: RequestCheck,
    R: OnReject<ResBody>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Checking { future, inner } => match ready!(future.as_mut().poll(cx)) {
                    Ok((req, admission)) => {
                        let mut inner = inner.take().expect("inner service taken once");
                        let future = inner.call(req);
                        this.state.set(State::Calling {
                            future,
                            admission: Some(admission),
                        });
                    }
                    Err(rejection) => {
                        this.state.set(State::Done);
                        return Poll::Ready(Ok(respond(this.on_reject, rejection)));
                    }
                },
                StateProj::Calling { future, admission } => {
                    let result = ready!(future.poll(cx));
                    let finishing = match (&result, admission.take()) {
                        (Ok(res), Some(admission)) => {
                            this.check.on_response(admission, res.status())
                        }
                        _ => None,
                    };
                    match (finishing, result) {
                        (Some(future), Ok(res)) => this.state.set(State::Finishing {
                            future,
                            response: Some(res),
                        }),
                        (_, result) => {
                            this.state.set(State::Done);
                            return Poll::Ready(result);
                        }
                    }
                }
                StateProj::Finishing { future, response } => {
                    ready!(future.as_mut().poll(cx));
                    let response = response.take().expect("response kept until finished");
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(response));
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

impl<S, F, C: RequestCheck, R, ResBody> fmt::Debug for ResponseFuture<S, F, C, R, ResBody> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// Buffers the body once, within a limit, for every later stage; see [`crate::body`].
///
/// Requests go on with a [`Buffered`] body and a [`RawBody`](crate::RawBody) extension; a body over the limit
/// is answered 413 (a body that fails mid-stream, 400) through the layer's
/// [`OnReject`].
#[derive(Clone, Debug)]
pub struct RawBodyLayer<R = DefaultOnReject> {
    check: Buffer,
    on_reject: R,
}

impl RawBodyLayer {
    /// Buffers bodies of up to `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            check: Buffer { limit },
            on_reject: DefaultOnReject,
        }
    }
}

impl Default for RawBodyLayer {
    /// [`DEFAULT_BODY_LIMIT`].
    fn default() -> Self {
        Self::new(DEFAULT_BODY_LIMIT)
    }
}

impl<R> RawBodyLayer<R> {
    /// Builds rejection responses with `on_reject` instead of [`DefaultOnReject`].
    pub fn on_reject<R2>(self, on_reject: R2) -> RawBodyLayer<R2> {
        RawBodyLayer {
            check: self.check,
            on_reject,
        }
    }
}

impl<S, R: Clone> Layer<S> for RawBodyLayer<R> {
    type Service = RawBodyService<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        CheckService::new(inner, self.check, self.on_reject.clone())
    }
}

/// The service built by [`RawBodyLayer`].
pub type RawBodyService<S, R = DefaultOnReject> = CheckService<S, Buffer, R>;

/// The check of [`RawBodyLayer`]: buffering only, nothing refused for its content.
#[derive(Clone, Copy, Debug)]
pub struct Buffer {
    limit: usize,
}

impl RequestCheck for Buffer {
    type Admission = ();

    fn body_limit(&self) -> usize {
        self.limit
    }

    fn check(
        &self,
        req: Request<Buffered>,
        _body: Bytes,
    ) -> impl Future<Output = Result<(Request<Buffered>, ()), Rejection>> + Send + 'static {
        std::future::ready(Ok((req, ())))
    }
}
