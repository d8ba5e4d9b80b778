//! `GET /ui`, its login and logout, and `GET /v1/status`: who is let in is `ca::authorize`'s call.

use axum::extract::{Extension, Form, FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use time::OffsetDateTime;

use super::error::{ApiError, ErrorCode};
use super::handlers::{AppState, PeerCert, bearer};
use super::page;
use super::session::{self, Session};
use super::status::{self, StatusView};
use crate::ca::authorize::Viewer;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/status", get(status_json))
        .route("/ui", get(ui))
        .route("/ui/login", post(login_form))
        .route("/ui/login/{token}", get(login_link))
        .route("/ui/logout", post(logout))
        .with_state(state)
}

/// Who is looking: a bearer `admin` token (not spent), else the session cookie, else the
/// client certificate. The session, when that is what let them in, carries the CSRF token.
async fn viewer(
    st: &AppState,
    headers: &HeaderMap,
    peer: PeerCert,
) -> Result<Option<Session>, ApiError> {
    let now = OffsetDateTime::now_utc();
    let token = bearer(headers)?;
    let session = st.sessions.find(headers, now);
    let (ca, found, by_token) = (st.ca.clone(), session.is_some(), token.is_some());
    tokio::task::spawn_blocking(move || {
        let who = match (&token, found, &peer.0) {
            (Some(secret), _, _) => Viewer::AdminToken(secret),
            (None, true, _) => Viewer::Session,
            (None, false, Some(der)) => Viewer::Certificate(der),
            (None, false, None) => return Err(ApiError::MissingCredentials),
        };
        Ok(ca.authorize_view(who, now)?)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("worker task: {e}")))??;
    Ok(session.filter(|_| !by_token))
}

async fn collect(st: &AppState) -> Result<StatusView, ApiError> {
    let ca = st.ca.clone();
    tokio::task::spawn_blocking(move || Ok(status::collect(&ca, OffsetDateTime::now_utc())?))
        .await
        .map_err(|e| ApiError::Internal(format!("worker task: {e}")))?
}

async fn status_json(
    State(st): State<AppState>,
    Extension(peer): Extension<PeerCert>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    viewer(&st, &headers, peer).await?;
    let view = collect(&st).await?;
    let mut resp = Json(view).into_response();
    no_store(resp.headers_mut());
    Ok(resp)
}

/// The page to an admin; the login form (401, or 403 for a refused credential) to anyone else.
async fn ui(
    State(st): State<AppState>,
    Extension(peer): Extension<PeerCert>,
    headers: HeaderMap,
) -> Response {
    let session = match viewer(&st, &headers, peer).await {
        Ok(session) => session,
        Err(e) => return login_page(&e),
    };
    match collect(&st).await {
        Ok(view) => {
            let now = OffsetDateTime::now_utc();
            html(StatusCode::OK, |nonce| {
                page::status(&view, session.as_ref(), nonce, now)
            })
        }
        Err(e) => e.into_response(),
    }
}

fn login_page(e: &ApiError) -> Response {
    let (status, code) = e.classify();
    let message = if status.is_server_error() {
        "the CA failed to check the credential; see its log".to_string()
    } else {
        e.to_string()
    };
    // Someone who sent nothing needs the form, not an error.
    let shown = (!matches!(e, ApiError::MissingCredentials)).then_some(message.as_str());
    let mut resp = html(status, |nonce| page::login(shown, nonce));
    resp.extensions_mut().insert(ErrorCode(code));
    resp
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

/// A form posted by a page: the form (or why it does not parse), and the request's headers
/// (the session cookie, and whether it came from a page of this origin).
struct PagePost<T> {
    form: Result<T, String>,
    headers: HeaderMap,
}

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for PagePost<T> {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let form = Form::<T>::from_request(req, state)
            .await
            .map(|Form(f)| f)
            .map_err(|e| e.body_text());
        Ok(Self { form, headers })
    }
}

impl<T> PagePost<T> {
    /// A browser's form post came from a page of this origin.
    fn same_origin(&self) -> bool {
        same_origin(&self.headers)
    }
}

/// The login form: spends an admin token for a session.
async fn login_form(State(st): State<AppState>, post: PagePost<LoginForm>) -> Response {
    let same_origin = post.same_origin();
    let form = match post.form {
        Ok(form) => form,
        Err(e) => return login_page(&ApiError::BadRequest(e)),
    };
    if !same_origin {
        return login_page(&ApiError::BadRequest("cross-site form".into()));
    }
    start_session(&st, form.token).await
}

/// A one-time login link (`https://CA/ui/login/<admin token>`): the same exchange as the form,
/// for a link pasted from `certdock token create --kind admin`. The token in the path is spent
/// on first use and expires quickly, so a copy in history or a log opens nothing.
async fn login_link(State(st): State<AppState>, Path(token): Path<String>) -> Response {
    start_session(&st, token).await
}

async fn start_session(st: &AppState, token: String) -> Response {
    let ca = st.ca.clone();
    let now = OffsetDateTime::now_utc();
    let spent = tokio::task::spawn_blocking(move || ca.authorize_login(&token, now))
        .await
        .map_err(|e| ApiError::Internal(format!("worker task: {e}")))
        .and_then(|r| r.map_err(ApiError::from));
    if let Err(e) = spent {
        return login_page(&e);
    }
    let (id, _) = st.sessions.create(now);
    redirect_to_ui(&session::set_cookie(&id))
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf: String,
}

/// Ends the session: needs the cookie and the session's CSRF token, from this origin.
async fn logout(State(st): State<AppState>, post: PagePost<LogoutForm>) -> Response {
    let now = OffsetDateTime::now_utc();
    let csrf = post
        .form
        .as_ref()
        .map(|f| f.csrf.as_str())
        .unwrap_or_default();
    let valid = !csrf.is_empty()
        && st
            .sessions
            .find(&post.headers, now)
            .is_some_and(|s| session::same_secret(&s.csrf, csrf));
    if !valid || !post.same_origin() {
        let mut resp = (
            StatusCode::FORBIDDEN,
            "refused: no session or a bad CSRF token",
        )
            .into_response();
        resp.extensions_mut().insert(ErrorCode("csrf"));
        return resp;
    }
    st.sessions.end(&post.headers);
    redirect_to_ui(&session::clear_cookie())
}

/// A browser's form post came from a page of this origin: `Origin` (when sent) names this
/// host, and `Sec-Fetch-Site` (when sent) is not cross-site.
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |h| headers.get(h).and_then(|v: &HeaderValue| v.to_str().ok());
    let origin_ok = match (text(header::ORIGIN), text(header::HOST)) {
        (Some(origin), Some(host)) => origin == format!("https://{host}"),
        (Some(_), None) => false,
        (None, _) => true,
    };
    let fetch_ok = text(header::HeaderName::from_static("sec-fetch-site"))
        .is_none_or(|site| site == "same-origin" || site == "none");
    origin_ok && fetch_ok
}

fn redirect_to_ui(cookie: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    let h = resp.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static("/ui"));
    if let Ok(v) = HeaderValue::from_str(cookie) {
        h.insert(header::SET_COOKIE, v);
    }
    no_store(h);
    resp
}

fn no_store(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// An HTML answer whose inline script and style run only with this response's nonce: nothing
/// else, and nothing from another origin, may load.
fn html(status: StatusCode, body: impl FnOnce(&str) -> String) -> Response {
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; \
         base-uri 'none'"
    );
    let mut resp = (status, body(&nonce)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    no_store(h);
    resp
}
