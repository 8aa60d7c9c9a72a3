//! Setup (first admin through the one-time link), login with throttling, logout, and the
//! session document the UI boots from.

use super::{Call, with_cookies};
use crate::admin::{self, session};
use crate::http::error::{ApiError, ApiResult};
use crate::http::request::JsonFields;
use crate::http::response::{Body, json_response, ok_json};
use crate::store::User;
use crate::store::ids::now_millis;
use hyper::{Response, StatusCode};
use serde_json::json;

/// `GET /setup`: is the first admin still to be created, and is a link active?
pub(super) async fn setup_state(call: Call<'_>) -> ApiResult<Response<Body>> {
    let users = call.store(|s| s.count_users()).await?;
    Ok(ok_json(&json!({
        "needed": users == 0,
        "has_token": users == 0 && admin::global().setup.active(now_millis()),
    })))
}

/// `POST /setup {token, email, password}`: creates the first admin (owner of every
/// organization) and logs them in.
pub(super) async fn setup(call: Call<'_>) -> ApiResult<Response<Body>> {
    let token = call.body.req_str("token")?.to_string();
    let email = admin::check_email(call.body.req_str("email")?).map_err(ApiError::bad_request)?;
    let password = call.body.req_str("password")?.to_string();
    admin::check_password(&password).map_err(ApiError::bad_request)?;
    let setup = &admin::global().setup;
    if !setup.valid(&token, now_millis()) {
        return Err(ApiError::forbidden(
            "this setup link is not valid (used, expired, or from an earlier start)",
        ));
    }
    let hash = call.state.passwords.hash(password).await.map_err(busy)?;
    let user = call
        .store(move |s| s.create_owner_of_all(&email, &hash, true))
        .await?;
    setup.consume();
    tracing::info!(user = %user.email, "first admin created through the setup link");
    start_session(&call, &user, StatusCode::CREATED).await
}

/// `POST /login {email, password}`. The attempt is reserved with the throttle before the
/// password is checked (see `crate::admin::throttle`), and checked on the bounded pool.
pub(super) async fn login(call: Call<'_>) -> ApiResult<Response<Body>> {
    let email = call.body.req_str("email")?.trim().to_string();
    let password = call.body.req_str("password")?.to_string();
    if password.len() > admin::MAX_PASSWORD {
        return Err(ApiError::bad_request("password too long"));
    }
    let throttle = &admin::global().throttle;
    let attempt = match throttle.begin(call.ctx.client_ip, &email, now_millis()) {
        Ok(a) => a,
        Err(secs) => {
            tarpit().await;
            return Err(ApiError::too_many_requests(
                format!("too many failed logins: try again in {secs} s"),
                secs,
            ));
        }
    };
    let e2 = email.clone();
    let user = call.store(move |s| s.find_user_by_email(&e2)).await?;
    // Unknown e-mails still cost one argon2 computation, so timing does not reveal accounts.
    let phc = user.as_ref().map(|u| u.password_hash.clone());
    let ok = match call.state.passwords.verify(password, phc).await {
        Ok(ok) => ok,
        Err(e) => {
            throttle.release(&attempt);
            tarpit().await;
            return Err(busy(e));
        }
    };
    match user {
        Some(u) if ok => {
            throttle.succeeded(&attempt, now_millis());
            start_session(&call, &u, StatusCode::OK).await
        }
        _ => {
            tracing::info!(email = %email, client = %call.ctx.client_ip, "failed admin login");
            Err(ApiError::unauthorized("wrong e-mail or password"))
        }
    }
}

/// How long a refused login (throttled, or the password pool full) waits before its answer.
/// A client that ignores `Retry-After` and asks again at once would otherwise cost the server
/// a request parse and an answer thousands of times a second; held here (a sleeping task on a
/// connection that the per-address connection cap bounds), a flood of N parallel clients
/// costs N requests a second.
const TARPIT: std::time::Duration = std::time::Duration::from_secs(1);

async fn tarpit() {
    tokio::time::sleep(TARPIT).await;
}

/// The password pool is full: 503 with `Retry-After`, the caller may retry in a second.
pub(super) fn busy(e: crate::secrets::PoolBusy) -> ApiError {
    let mut err = ApiError::service_unavailable(e.to_string());
    err.headers.push((
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from(1),
    ));
    err
}

async fn start_session(
    call: &Call<'_>,
    user: &User,
    status: StatusCode,
) -> ApiResult<Response<Body>> {
    let now = now_millis();
    let s = session::new_session(&user.id, now);
    let row = s.row.clone();
    let ua = call
        .headers
        .get(hyper::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(200).collect());
    let ip = Some(call.ctx.client_ip.to_string());
    call.store(move |st| st.create_admin_session(row, ip, ua))
        .await?;
    let doc = session_doc(call, user, &s.row.csrf).await?;
    Ok(with_cookies(
        json_response(status, &doc),
        &session::set_cookies(&s.token, &s.row.csrf, call.secure()),
    ))
}

/// `POST /logout`: ends this session.
pub(super) async fn logout(call: Call<'_>) -> ApiResult<Response<Body>> {
    if let Some(s) = &call.session {
        let h = s.token_hash.clone();
        call.store(move |st| st.delete_admin_session(&h)).await?;
    }
    Ok(with_cookies(
        ok_json(&json!({"ok": true})),
        &session::clear_cookies(),
    ))
}

/// `GET /session`: the user, their organizations and roles, the CSRF token.
pub(super) async fn session(call: Call<'_>) -> ApiResult<Response<Body>> {
    let user = call.user()?.clone();
    let csrf = call
        .session
        .as_ref()
        .map(|s| s.csrf.clone())
        .unwrap_or_default();
    Ok(ok_json(&session_doc(&call, &user, &csrf).await?))
}

async fn session_doc(call: &Call<'_>, user: &User, csrf: &str) -> ApiResult<serde_json::Value> {
    let uid = user.id.clone();
    let orgs = call.store(move |s| s.user_orgs(&uid)).await?;
    Ok(json!({
        "user": {"id": user.id, "email": user.email},
        "csrf": csrf,
        "orgs": orgs.iter().map(|(o, r)| json!({
            "id": o.id, "name": o.name, "role": r.as_str(), "is_default": o.is_default,
        })).collect::<Vec<_>>(),
    }))
}
