//! The account over the API: its position, top-ups, its spending rules and its ledger. Amounts
//! are decimal strings of credits (`"2.5"`), as in a new task's budget.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use baton_core::{AutoReload, Credits, EntryKind, Policy, Position, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{Api, ApiError, Body, Params, now};

/// The account as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AccountView {
    pub balance: String,
    /// Held by actions in flight.
    pub reserved: String,
    /// What new work may hold: the balance less what is held.
    pub available: String,
    /// `YYYY-MM` (UTC), the month of the two figures after it.
    pub month: String,
    pub spent_this_month: String,
    pub reloads_this_month: u32,
    pub policy: PolicyView,
}

/// The account's spending rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyView {
    /// Most credits a calendar month (UTC) may spend; none without.
    pub monthly_cap: Option<String>,
    pub auto_reload: Option<AutoReloadView>,
    /// Whether work may go on once the balance is spent (billed afterwards).
    pub overage: bool,
}

/// Refill the balance to `target` when what is available falls below `threshold`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoReloadView {
    pub threshold: String,
    pub target: String,
    pub max_per_month: u32,
}

impl AccountView {
    fn of(position: &Position) -> AccountView {
        let reload = position.policy.auto_reload.map(|reload| AutoReloadView {
            threshold: reload.threshold.to_string(),
            target: reload.target.to_string(),
            max_per_month: reload.max_per_month,
        });
        AccountView {
            balance: position.balance.to_string(),
            reserved: position.reserved.to_string(),
            available: position.available().to_string(),
            month: format!("{:04}-{:02}", position.month.year, position.month.month),
            spent_this_month: position.spent_this_month.to_string(),
            reloads_this_month: position.reloads_this_month,
            policy: PolicyView {
                monthly_cap: position.policy.monthly_cap.map(|cap| cap.to_string()),
                auto_reload: reload,
                overage: position.policy.overage,
            },
        }
    }
}

fn credits(text: &str, what: &str) -> Result<Credits, ApiError> {
    text.parse::<Credits>()
        .map_err(|error| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount", format!("{what}: {error}")))
}

impl PolicyView {
    pub(crate) fn to_policy(&self) -> Result<Policy, ApiError> {
        let auto_reload = match &self.auto_reload {
            Some(reload) => Some(AutoReload {
                threshold: credits(&reload.threshold, "auto_reload.threshold")?,
                target: credits(&reload.target, "auto_reload.target")?,
                max_per_month: reload.max_per_month,
            }),
            None => None,
        };
        let monthly_cap = self.monthly_cap.as_deref().map(|cap| credits(cap, "monthly_cap")).transpose()?;
        let policy = Policy { monthly_cap, auto_reload, overage: self.overage };
        policy.check().map_err(|message| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_policy", message))?;
        Ok(policy)
    }
}

/// The account's position and rules.
#[utoipa::path(get, path = "/api/v1/account", tag = "account", operation_id = "show_account", responses((status = 200, body = AccountView)))]
pub(crate) async fn show(State(api): State<Api>) -> Result<Json<AccountView>, ApiError> {
    Ok(Json(AccountView::of(&api.store.account(now()).await?)))
}

/// Credits added to the account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TopUp {
    /// How many, like `"20"` or `"0.5"`.
    pub credits: String,
    /// Credits given rather than bought.
    #[serde(default)]
    pub grant: bool,
    #[serde(default)]
    pub note: String,
}

/// Adds credits to the account (admin).
#[utoipa::path(post, path = "/api/v1/account/topup", tag = "account", request_body = TopUp,
    responses((status = 200, body = AccountView)))]
pub(crate) async fn top_up(State(api): State<Api>, Body(body): Body<TopUp>) -> Result<Json<AccountView>, ApiError> {
    credit(&api, body).await.map(Json)
}

/// Adds the credits of `body` to the account: its position after.
pub(crate) async fn credit(api: &Api, body: TopUp) -> Result<AccountView, ApiError> {
    let amount = credits(&body.credits, "credits")?;
    if amount <= Credits::ZERO {
        let message = format!("a top-up must be more than zero credits, not {amount}");
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount", message));
    }
    let kind = if body.grant { EntryKind::Grant } else { EntryKind::TopUp };
    Ok(AccountView::of(&api.store.credit(now(), kind, amount, &body.note).await?))
}

/// Replaces the account's spending rules (admin).
#[utoipa::path(put, path = "/api/v1/account/policy", tag = "account", request_body = PolicyView,
    responses((status = 200, body = AccountView)))]
pub(crate) async fn set_policy(
    State(api): State<Api>,
    Body(body): Body<PolicyView>,
) -> Result<Json<AccountView>, ApiError> {
    api.store.set_policy(body.to_policy()?).await?;
    Ok(Json(AccountView::of(&api.store.account(now()).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EntriesQuery {
    /// The newest this many (default 50, at most 1000).
    limit: Option<u32>,
}

/// One entry of the account's ledger.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EntryView {
    #[schema(value_type = i64)]
    pub at: Timestamp,
    /// `grant`, `top_up`, `auto_reload`, or `{"charge": "input"}` and the other kinds of charge.
    #[schema(value_type = Object)]
    pub kind: EntryKind,
    /// Credits, negative for a charge.
    pub amount: String,
    /// The task a charge is for.
    pub task: Option<String>,
    /// The action a charge settles.
    pub key: Option<String>,
    pub note: String,
}

/// The newest entries of the ledger, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EntriesPage {
    pub entries: Vec<EntryView>,
}

/// The account's ledger, newest first.
#[utoipa::path(get, path = "/api/v1/account/entries", tag = "account", params(EntriesQuery),
    responses((status = 200, body = EntriesPage)))]
pub(crate) async fn entries(
    State(api): State<Api>,
    Params(query): Params<EntriesQuery>,
) -> Result<Json<EntriesPage>, ApiError> {
    let limit = query.limit.unwrap_or(50).clamp(1, 1000);
    let entries = api.store.entries(limit).await?;
    let entries = entries
        .into_iter()
        .map(|entry| EntryView {
            at: entry.at,
            kind: entry.kind,
            amount: entry.amount.to_string(),
            task: entry.task,
            key: entry.key,
            note: entry.note,
        })
        .collect();
    Ok(Json(EntriesPage { entries }))
}
