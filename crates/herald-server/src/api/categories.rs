//! Categories (API key): defaults and rules for every notification of a kind.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use herald_core::Category;
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::{JsonBody, Publisher};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;

/// Most categories a server keeps; they are read on every fan-out.
pub const MAX_CATEGORIES: usize = 1000;

#[derive(Serialize, ToSchema)]
pub struct CategoryList {
    /// By name.
    pub categories: Vec<Category>,
}

/// Create or replace a category.
///
/// Publishes that name the category and leave out `channels`, `priority` or `ttl_seconds`
/// take them from it; its caps, opt-out rule, quiet-hours rule and collapse window apply to
/// every user it reaches. Other nodes see a change within two seconds.
#[utoipa::path(
    put, path = "/v1/categories/{name}", tag = "policy", params(("name" = String, Path)),
    request_body = Category,
    responses((status = 200, body = Category), (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn put_category(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path(name): Path<String>,
    JsonBody(mut category): JsonBody<Category>,
) -> ApiResult<Json<Category>> {
    category.validate(&name, &state.config.limits)?;
    category.name = name;
    let known = state.categories.all().await?;
    if !known.contains_key(&category.name) && known.len() >= MAX_CATEGORIES {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too-many-categories",
            format!("a server keeps at most {MAX_CATEGORIES} categories; delete one first"),
        ));
    }
    state.store.put_category(&category).await?;
    state.categories.invalidate();
    Ok(Json(category))
}

/// Every category.
#[utoipa::path(
    get, path = "/v1/categories", tag = "policy",
    responses((status = 200, body = CategoryList)),
    security(("api_key" = []))
)]
pub async fn list_categories(
    State(state): State<AppState>,
    _publisher: Publisher,
) -> ApiResult<Json<CategoryList>> {
    Ok(Json(CategoryList {
        categories: state.store.categories().await?,
    }))
}

/// One category.
#[utoipa::path(
    get, path = "/v1/categories/{name}", tag = "policy", params(("name" = String, Path)),
    responses((status = 200, body = Category), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn get_category(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path(name): Path<String>,
) -> ApiResult<Json<Category>> {
    state
        .store
        .categories()
        .await?
        .into_iter()
        .find(|c| c.name == name)
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("no category named {name:?}")))
}

/// Delete a category. Notifications that name it are then published with the server's defaults.
#[utoipa::path(
    delete, path = "/v1/categories/{name}", tag = "policy", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn delete_category(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    if !state.store.delete_category(&name).await? {
        return Err(Problem::not_found(format!("no category named {name:?}")));
    }
    state.categories.invalidate();
    Ok(StatusCode::NO_CONTENT)
}
