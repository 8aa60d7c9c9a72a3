//! Organizations, their members and roles, and their Open Chat Studio API keys.

use super::{Call, wire};
use crate::admin::{self, roles};
use crate::http::error::{ApiError, ApiResult};
use crate::http::request::JsonFields;
use crate::http::response::{Body, json_response, no_content, ok_json};
use crate::store::Role;
use hyper::{Response, StatusCode};
use serde_json::json;

/// `GET /orgs`: the caller's organizations with role and bot count.
pub(super) async fn list(call: Call<'_>) -> ApiResult<Response<Body>> {
    let uid = call.user()?.id.clone();
    let rows = call.store(move |s| s.user_orgs_with_counts(&uid)).await?;
    Ok(ok_json(
        &rows
            .iter()
            .map(|(o, r, bots)| {
                json!({"id": o.id, "name": o.name, "is_default": o.is_default, "created_at": o.created_at,
                       "role": r.as_str(), "bots": bots})
            })
            .collect::<Vec<_>>(),
    ))
}

/// `POST /orgs {name}`: any admin may create one and becomes its owner.
pub(super) async fn create(call: Call<'_>) -> ApiResult<Response<Body>> {
    let name = call.body.req_nonempty_str("name")?.trim().to_string();
    let uid = call.user()?.id.clone();
    let org = call
        .store(move |s| {
            let o = s.create_org(&name, false)?;
            s.set_membership(&o.id, &uid, Role::Owner)?;
            Ok(o)
        })
        .await?;
    Ok(json_response(StatusCode::CREATED, &wire::org(&org)))
}

pub(super) async fn members(call: Call<'_>) -> ApiResult<Response<Body>> {
    let org = call.org()?;
    let members = call.store(move |s| s.list_members(&org)).await?;
    Ok(ok_json(&wire::list(&members, wire::member)))
}

fn role_field(call: &Call<'_>) -> ApiResult<Role> {
    let r = call.body.req_str("role")?;
    Role::parse(r)
        .ok_or_else(|| ApiError::bad_request("field role must be owner, editor or viewer"))
}

/// `POST /orgs/:org/members {email, role, password?}`: adds an existing account, or creates
/// one (then `password` is required).
pub(super) async fn add_member(call: Call<'_>) -> ApiResult<Response<Body>> {
    let org = call.org()?;
    let email = admin::check_email(call.body.req_str("email")?).map_err(ApiError::bad_request)?;
    let role = role_field(&call)?;
    let password = call
        .body
        .opt_str("password")?
        .filter(|p| !p.is_empty())
        .map(str::to_string);
    let e2 = email.clone();
    let existing = call.store(move |s| s.find_user_by_email(&e2)).await?;
    let user_id = match existing {
        Some(u) => u.id,
        None => {
            let pw = password.ok_or_else(|| {
                ApiError::bad_request(format!(
                    "no account `{email}` yet: give a password to create it"
                ))
            })?;
            admin::check_password(&pw).map_err(ApiError::bad_request)?;
            let hash = call
                .state
                .passwords
                .hash(pw)
                .await
                .map_err(super::auth::busy)?;
            call.store(move |s| s.create_user(&email, &hash)).await?.id
        }
    };
    let (o, u) = (org.clone(), user_id.clone());
    call.store(move |s| s.set_membership(&o, &u, role)).await?;
    let members = call.store(move |s| s.list_members(&org)).await?;
    let m = members
        .into_iter()
        .find(|m| m.user_id == user_id)
        .ok_or_else(|| ApiError::internal("member vanished"))?;
    Ok(json_response(StatusCode::CREATED, &wire::member(&m)))
}

/// `PUT /orgs/:org/members/:user {role}`.
pub(super) async fn set_member(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, user) = (call.org()?, call.param("user")?);
    let role = role_field(&call)?;
    change_member(&call, org, user, Some(role)).await?;
    Ok(ok_json(&json!({"ok": true})))
}

/// `DELETE /orgs/:org/members/:user`.
pub(super) async fn remove_member(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, user) = (call.org()?, call.param("user")?);
    change_member(&call, org, user, None).await?;
    Ok(no_content())
}

async fn change_member(
    call: &Call<'_>,
    org: String,
    user: String,
    role: Option<Role>,
) -> ApiResult<()> {
    let (o, u) = (org.clone(), user.clone());
    let members = call.store(move |s| s.list_members(&o)).await?;
    if !members.iter().any(|m| m.user_id == u) {
        return Err(ApiError::not_found("member not found"));
    }
    roles::check_owner_kept(&members, &user, role).map_err(ApiError::conflict)?;
    call.store(move |s| match role {
        Some(r) => s.set_membership(&org, &user, r),
        None => s.remove_membership(&org, &user),
    })
    .await
}

pub(super) async fn api_keys(call: Call<'_>) -> ApiResult<Response<Body>> {
    let org = call.org()?;
    let keys = call.store(move |s| s.list_api_keys(&org)).await?;
    Ok(ok_json(&wire::list(&keys, wire::api_key)))
}

/// `POST /orgs/:org/apikeys {name, read_only}`: the key is in the answer, once.
pub(super) async fn create_api_key(call: Call<'_>) -> ApiResult<Response<Body>> {
    let org = call.org()?;
    let name = call
        .body
        .opt_str("name")?
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or("API key")
        .to_string();
    let read_only = call.body.opt_bool("read_only")?.unwrap_or(false);
    let (k, key) = call
        .store(move |s| s.create_api_key(&org, &name, read_only))
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"key": key, "api_key": wire::api_key(&k)}),
    ))
}

pub(super) async fn revoke_api_key(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, key) = (call.org()?, call.param("key")?);
    let k = call.store(move |s| s.revoke_api_key(&org, &key)).await?;
    Ok(ok_json(&wire::api_key(&k)))
}
